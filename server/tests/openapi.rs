//! The OpenAPI description (`assets/openapi.json`, served at `/api/openapi.json`): valid
//! OpenAPI 3.1 by a real validator — `openapi-spec-validator` (PyPI), which checks a
//! document against the official 3.1 JSON Schema and more; taken from the system's Python
//! when it has it, else installed by this test in a virtual environment under the target
//! folder (`target/openapi-venv`) — with the security of every operation declared, every
//! routed path described, and every described operation routed.

mod support;

use axum::body::Body;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::Harness;

fn openapi() -> Value {
    serde_json::from_str(vigie_server::assets::OPENAPI).expect("openapi.json is JSON")
}

/// A Python with `openapi_spec_validator`.
fn python() -> PathBuf {
    let system = PathBuf::from("python3");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import openapi_spec_validator"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has(&system) {
        return system;
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("openapi-venv");
    let py = venv.join("bin/python");
    if !has(&py) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 -m venv {} failed (Debian: apt-get install python3-venv)",
            venv.display()
        );
        let pip = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "openapi-spec-validator"])
            .status();
        assert!(
            pip.is_ok_and(|s| s.success()),
            "pip install openapi-spec-validator failed"
        );
    }
    py
}

/// Validates `doc` as OpenAPI 3.1: `Ok` or the validator's message.
fn validate(doc: &Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = Command::new(python())
        .args([
            "-c",
            "import sys\n\
             from openapi_spec_validator import validate, OpenAPIV31SpecValidator\n\
             from openapi_spec_validator.readers import read_from_filename\n\
             spec, _ = read_from_filename(sys.argv[1])\n\
             validate(spec, cls=OpenAPIV31SpecValidator)\n",
        ])
        .arg(&file)
        .output()
        .expect("python runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

#[test]
fn the_description_is_valid_openapi_3_1_and_a_broken_one_is_not() {
    let doc = openapi();
    assert_eq!(doc["openapi"], "3.1.0");
    validate(&doc).unwrap_or_else(|e| panic!("openapi.json is not valid OpenAPI 3.1: {e}"));
    // The validator does refuse: a parameter that does not say where it goes, a reference to
    // nothing.
    let mut broken = doc.clone();
    broken["paths"]["/api/v1/zones"]["get"]["parameters"][0]
        .as_object_mut()
        .unwrap()
        .remove("in");
    assert!(
        validate(&broken).is_err(),
        "a parameter without `in` passed"
    );
    let mut dangling = doc.clone();
    dangling["paths"]["/api/v1/zones"]["get"]["responses"]["400"] =
        serde_json::json!({"$ref": "#/components/responses/Nothing"});
    assert!(validate(&dangling).is_err(), "a dangling reference passed");
}

/// Every operation of the description: `(method, path, operation)`.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            out.push((method.clone(), path.clone(), op.clone()));
        }
    }
    out
}

#[test]
fn every_operation_declares_its_security() {
    let doc = openapi();
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for (method, path, op) in operations(&doc) {
        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} declares no security"));
        for requirement in security {
            for name in requirement.as_object().unwrap().keys() {
                assert!(
                    schemes.contains_key(name),
                    "{method} {path}: unknown scheme {name}"
                );
            }
        }
        // Sources write, the API reads: each route takes the kind of token it checks.
        let names: Vec<&str> = security
            .iter()
            .flat_map(|r| r.as_object().unwrap().keys())
            .map(String::as_str)
            .collect();
        let ingest = [
            "/api/v1/records",
            "/api/v1/csv/{mapping}",
            "/api/v2/write",
            "/api/v1/dead-letters",
        ];
        if ingest.contains(&path.as_str()) {
            assert_eq!(names, ["source"], "{method} {path}");
        } else if path.starts_with("/api/v1/") || path == "/metrics" {
            assert!(names.contains(&"api"), "{method} {path}");
        } else {
            assert!(security.is_empty(), "{method} {path} needs no token");
        }
    }
}

#[tokio::test]
async fn every_described_operation_is_routed_and_every_route_is_described() {
    let doc = openapi();
    let h = Harness::start(10, |_| String::new());
    for (method, path, _) in operations(&doc) {
        let uri = path
            .replace("{mapping}", "incidents_csv")
            .replace("{id}", "1")
            .replace("{name}", "x");
        let req = axum::http::Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let a = h.send(req).await;
        assert_ne!(a.status, 405, "{method} {path} is not routed for {method}");
        assert!(
            !(a.status == 404 && a.json["field"] == "path"),
            "{method} {path} is not routed"
        );
    }
    // The paths of the router (in `app`, literally or as the ingest module's constants).
    let lib = include_str!("../src/lib.rs");
    let ingest = include_str!("../src/ingest.rs");
    let app = &lib[lib.find("pub fn app(").unwrap()..];
    let app = &app[..app.find("\n}\n").unwrap()];
    let mut routed: Vec<String> = Vec::new();
    for call in app.split(concat!(".rou", "te(")).skip(1) {
        let arg = call.trim_start();
        if let Some(rest) = arg.strip_prefix('"') {
            routed.push(rest.split('"').next().unwrap().to_string());
        } else if let Some(name) = arg.strip_prefix("ingest::") {
            let name = name.split(',').next().unwrap().trim();
            let def = ingest
                .split(&format!("const {name}: &str = \""))
                .nth(1)
                .unwrap();
            routed.push(def.split('"').next().unwrap().to_string());
        }
    }
    assert!(routed.len() >= 25, "{routed:?}");
    for path in routed {
        assert!(
            doc["paths"].get(&path).is_some(),
            "{path} is routed but not in openapi.json"
        );
    }
}
