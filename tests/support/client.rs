//! What the binary's end-to-end tests (`tests/e2e.rs`, `tests/alerts.rs`, `tests/wall.rs`) do
//! to a running vigie: pick free loopback ports, send a raw HTTP/1.1 request, wait for a
//! condition, read the clock.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The indicator row of `zone` in an answer of `GET /api/v1/indicators`, if it has one.
pub fn zone_row(answer: &serde_json::Value, zone: &str) -> Option<serde_json::Value> {
    answer["indicators"]
        .as_array()?
        .iter()
        .find(|r| r["zone"] == zone)
        .cloned()
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().unwrap().port()
}

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One request on a fresh connection: `token` as a bearer token, `extra` header lines (each
/// ending in CRLF), the body sent as `content_type`. `None` if vigie does not answer.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    extra: &str,
    body: &str,
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Polls `ok` every 50 ms; fails the test after `secs` seconds, naming `what`.
pub fn wait_for(secs: u64, what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed().as_secs() < secs,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to 30 s for `vigie run` on `port` to answer `/health` with 200; on failure, the
/// message carries the process's log at `log`, if given.
pub fn wait_healthy(port: u16, log: Option<&std::path::Path>) {
    let started = Instant::now();
    while request(port, "GET", "/health", None, "text/plain", "", "").is_none_or(|(c, _)| c != 200)
    {
        let shown = log
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default();
        assert!(
            started.elapsed().as_secs() < 30,
            "vigie run did not answer /health:\n{shown}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, as an operator stops vigie; waits for the exit and asserts it is clean.
pub fn stop_cleanly(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "vigie run exited with {status}");
}

/// The API viewer's token of the harness (`vigie::VIEWER`): `/metrics` takes one when API
/// tokens are configured, as the harness's configuration does.
pub const METRICS_TOKEN: &str = "wall-viewer-token";

/// The sum of a metric's samples on `/metrics` whose labels contain `labels` (0 when vigie
/// does not answer).
pub fn metric(port: u16, name: &str, labels: &str) -> f64 {
    // With the harness's viewer token; a vigie without API tokens (the demo's) takes none, and
    // refuses one it does not know.
    let get = |token| request(port, "GET", "/metrics", token, "text/plain", "", "");
    let Some((200, text)) = get(Some(METRICS_TOKEN))
        .filter(|(code, _)| *code == 200)
        .or_else(|| get(None))
    else {
        return 0.0;
    };
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']) && rest.contains(labels))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
