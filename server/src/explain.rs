//! `GET /api/v1/explain?zone=&hour=[&as_of=]`: one zone and hour — the stored figures with
//! their units, each contribution, the formula of the configured model (v1 or v2) step by step
//! from the stored figures, v2's criticality, fluidity and confidence, the score's revisions,
//! and the records behind the hour.
//!
//! The records come from the engine's index of recent records
//! ([`vigie_queries::recent::RecentRecords`]), found by [`records_behind`] with the model's
//! own windows and recomputed by it; each recomputed contribution is set beside the stored one
//! (`checks`). The index keeps the horizon's records only: the records behind the baseline
//! (the same hour of the week over the past year) are not kept live, so it is not checked
//! here (`vigie query explain` on the replay's files cites them).

use crate::error::ApiError;
use crate::query::{clock, only, time_param, zone_param};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use vigie_config::{ModelParams, Zone};
use vigie_model::time::format_ts;
use vigie_model::{Body, Missing, Record};
use vigie_queries::explain::records_behind;
use vigie_queries::formula;
use vigie_queries::read::{self, HOUR_MS};

/// The unit of each figure (what the wall writes beside a value).
pub fn unit(field: &str) -> &'static str {
    match field {
        "risk_score" => "score 0–100",
        "risk_level" | "criticality" | "fluidity_level" => "level 1–4",
        "protection_rate" => "share of required agents (0–1)",
        "required_agents" | "deployed_agents" => "agents",
        "trend" | "load_trend" | "fluidity_trend" => "−1 falling, 0 stable, 1 rising",
        "crowd" => "people",
        "load" => "crowd ÷ capacity",
        "incidents" => "incidents in the hour",
        "calls" => "hotline calls in the hour",
        "baseline" => "severity points a week (mean)",
        "recent" => "severity points over 3 hours",
        "events" => "attendees",
        "weather" => "factor (1 neutral)",
        "demonstration" => "0 or 1",
        "traffic" => "vehicles per hour",
        "fluidity" => "share of free-flow speed (0–1)",
        "confidence" => "0 low, 1 reduced, 2 high",
        "missing" => "flags: 1 density, 2 incident, 4 weather",
        "exposure" | "spill" | "surge" => "exposure points",
        _ => "",
    }
}

/// The figures as stored: a value per field, null where undefined.
fn figures(values: &BTreeMap<&'static str, f64>) -> Value {
    Value::Object(
        values
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.is_finite().then_some(*v))))
            .collect(),
    )
}

/// The formula, step by step, from the stored figures.
pub fn formula_steps(m: &ModelParams, z: &Zone, v: &dyn Fn(&str) -> f64) -> Value {
    let load_term = m.overload_weight * (v("load") - 1.0).max(0.0);
    let weather = v("weather");
    let demo = 1.0 + m.demonstration_weight * v("demonstration");
    let (base, crowd, mut steps) = if m.v2() {
        let exposure = v("exposure");
        let own = exposure - v("spill") - v("surge");
        let base = v("baseline") + m.recent_weight * v("recent") + exposure;
        let steps = vec![
            json!({"name": "exposure", "value": exposure,
                   "text": format!("exposure = events' own {own:.3} + spill {:.3} + surge {:.3}", v("spill"), v("surge"))}),
            json!({"name": "base", "value": base,
                   "text": format!("base = baseline {:.3} + {}·recent {:.3} + exposure {exposure:.3}", v("baseline"), m.recent_weight, v("recent"))}),
        ];
        (base, 1.0 + load_term, steps)
    } else {
        let base = v("baseline") + m.recent_weight * v("recent");
        let event_term = m.event_weight * v("events") / z.capacity;
        let steps = vec![json!({"name": "base", "value": base,
            "text": format!("base = baseline {:.3} + {}·recent {:.3}", v("baseline"), m.recent_weight, v("recent"))})];
        (base, 1.0 + load_term + event_term, steps)
    };
    let raw = base * crowd * weather * demo;
    let score = 100.0 * (1.0 - (-raw / z.scale).exp());
    let crowd_text = if m.v2() {
        format!(
            "crowd factor = 1 + {}·max(0, load {:.3} − 1)",
            m.overload_weight,
            v("load")
        )
    } else {
        format!(
            "crowd factor = 1 + {}·max(0, load {:.3} − 1) + {}·events {:.0} / capacity {:.0}",
            m.overload_weight,
            v("load"),
            m.event_weight,
            v("events"),
            z.capacity
        )
    };
    steps.extend([
        json!({"name": "crowd_factor", "value": crowd, "text": crowd_text}),
        json!({"name": "weather_factor", "value": weather, "text": "f_w: heat, wind and rain (1 neutral)"}),
        json!({"name": "demonstration_factor", "value": demo,
               "text": format!("1 + {}·demonstration {}", m.demonstration_weight, v("demonstration"))}),
        json!({"name": "raw", "value": raw, "text": "raw = base · crowd factor · weather factor · demonstration factor"}),
        json!({"name": "risk_score", "value": score,
               "text": format!("risk score = 100·(1 − exp(−raw / scale {}))", z.scale)}),
        json!({"name": "risk_level", "value": formula::risk_level(m, score),
               "text": format!("level 1 below {}, 2 below {}, 3 below {}, else 4", m.level_thresholds[0], m.level_thresholds[1], m.level_thresholds[2])}),
    ]);
    let text = if m.v2() {
        "risk_score = 100·(1 − exp(−raw/scale)), raw = (baseline + recent_weight·recent + exposure) · crowd_factor · weather_factor · demonstration_factor"
    } else {
        "risk_score = 100·(1 − exp(−raw/scale)), raw = base · crowd_factor · weather_factor · demonstration_factor"
    };
    json!({
        "model": m.version,
        "steps": steps,
        "base": base, "crowd_factor": crowd, "weather_factor": weather,
        "demonstration_factor": demo, "raw": raw, "scale": z.scale, "risk_score": score,
        "text": text,
    })
}

/// v2's criticality, fluidity and confidence, from the stored figures.
fn v2_parts(m: &ModelParams, z: &Zone, v: &dyn Fn(&str) -> f64) -> Value {
    let level = v("risk_level") as u8;
    let (required, deployed) = (v("required_agents") as u64, v("deployed_agents") as u64);
    let shortfall = required as i64 - deployed as i64;
    let crit = formula::criticality(level, required, deployed);
    let traffic = v("traffic");
    let fluidity = if traffic.is_finite() {
        match z.road_capacity {
            Some(cap) => {
                let vc = traffic / cap;
                let f = 1.0 / (1.0 + m.bpr_alpha * vc.powf(m.bpr_beta));
                json!({"traffic": traffic, "road_capacity": cap, "vc": vc, "fluidity": f,
                       "level": formula::fluidity_level(m, f),
                       "text": format!("fluidity = 1 / (1 + {}·(traffic {traffic:.0} / road capacity {cap:.0})^{})", m.bpr_alpha, m.bpr_beta)})
            }
            None => json!({"traffic": traffic, "road_capacity": null, "fluidity": null,
                           "text": "the zone has no road capacity: no fluidity"}),
        }
    } else {
        json!({"traffic": null, "road_capacity": z.road_capacity, "fluidity": null,
               "text": "no traffic counted nor typical for this hour: no fluidity"})
    };
    let missing = Missing(if v("missing").is_finite() {
        v("missing") as u8
    } else {
        0
    });
    let names: Vec<&str> = missing.names().collect();
    let confidence = missing.confidence().name();
    json!({
        "criticality": {
            "value": crit, "risk_level": level, "shortfall": shortfall,
            "text": format!("criticality {crit}: risk level {level}, shortfall {shortfall} agents (required {required} − deployed {deployed})"),
        },
        "fluidity": fluidity,
        "confidence": {
            "value": confidence, "missing": names,
            "text": if names.is_empty() { "every input is there".to_string() } else { format!("{confidence}: missing {}", names.join(", ")) },
        },
    })
}

/// One record as an explanation cites it.
fn cite(r: &Record) -> Value {
    let mut o = Map::new();
    o.insert("feed".into(), json!(r.feed.name()));
    o.insert("ts".into(), json!(format_ts(r.ts)));
    o.insert("seq".into(), json!(r.seq));
    o.insert("id".into(), json!(r.id));
    match &r.body {
        Some(Body::Incident { severity, .. }) => {
            o.insert("severity".into(), json!(severity));
        }
        Some(Body::Density { people, sensor, .. }) => {
            o.insert("people".into(), json!(people.get()));
            o.insert("sensor".into(), json!(sensor));
        }
        Some(Body::Event {
            start,
            end,
            attendance,
            kind,
            ..
        }) => {
            o.insert("start".into(), json!(format_ts(*start)));
            o.insert("end".into(), json!(format_ts(*end)));
            o.insert("attendance".into(), json!(attendance.get()));
            o.insert("kind".into(), json!(kind.name()));
        }
        Some(Body::Deployment {
            start, end, agents, ..
        }) => {
            o.insert("start".into(), json!(format_ts(*start)));
            o.insert("end".into(), json!(format_ts(*end)));
            o.insert("agents".into(), json!(agents));
        }
        Some(Body::Weather {
            temperature_c,
            precip_mm,
            wind_kmh,
            ..
        }) => {
            o.insert(
                "temperature_c".into(),
                json!(temperature_c.map(|t| t.get())),
            );
            o.insert("precip_mm".into(), json!(precip_mm.map(|t| t.get())));
            o.insert("wind_kmh".into(), json!(wind_kmh.map(|t| t.get())));
        }
        Some(Body::Traffic { volume, sensor, .. }) => {
            o.insert("volume".into(), json!(volume.get()));
            o.insert("sensor".into(), json!(sensor));
        }
        Some(Body::Call { .. }) | None => {}
    }
    Value::Object(o)
}

/// The records behind `zone` at `hour` from the engine's recent records, and each
/// contribution recomputed from them beside the stored one.
fn records(
    state: &AppState,
    zone: u32,
    hour: i64,
    clock: i64,
    stored: &BTreeMap<&'static str, f64>,
) -> Value {
    let config = state.config();
    state.recent().read(|window| {
        let complete = hour - 2 >= window.complete_from;
        let ev = records_behind(&window.counted, zone, hour, clock, config);
        let re = ev.recompute(config);
        // The figures the window's records give whole: the hour's own records and those of the
        // two hours before. The baseline and the typical crowd and traffic (hence a crowd or a
        // surge without a count, and the missing inputs) read weeks the window does not keep.
        let mut fields = vec![
            "incidents",
            "recent",
            "events",
            "demonstration",
            "deployed_agents",
            "weather",
        ];
        if config.model.v2() {
            fields.push("calls");
        }
        let again: BTreeMap<&str, Option<f64>> = re.figures().into_iter().collect();
        let checks: Vec<Value> = fields
            .into_iter()
            .map(|f| {
                let s = stored.get(f).copied().filter(|v| !v.is_nan());
                let v = again.get(f).copied().flatten();
                let agree = match (s, v) {
                    (Some(s), Some(v)) => (s - v).abs() <= 1e-9 * s.abs().max(1.0),
                    (None, None) => true,
                    _ => false,
                };
                json!({"field": f, "stored": s, "recomputed": v, "agree": agree})
            })
            .collect();
        let mut evidence = ev.to_json(&re, config, &|r: &Record| cite(r));
        if let Value::Object(o) = &mut evidence {
            // The cited records, by figure, at the top of the answer; the weather record is
            // one (or none).
            if let Some(Value::Object(records)) = o.remove("records") {
                for (k, v) in records {
                    let v = match (k.as_str(), v) {
                        ("weather", Value::Array(mut list)) => list.pop().unwrap_or(Value::Null),
                        (_, v) => v,
                    };
                    o.insert(k, v);
                }
            }
            o.insert("complete".into(), json!(complete));
            o.insert(
                "complete_from".into(),
                json!(format_ts(window.complete_from.saturating_mul(3_600_000_000))),
            );
            o.insert("baseline".into(), json!({"cited": false, "why": "the records behind the baseline (the same hour of the week over the past weeks) are older than the horizon, which is all the running engine keeps at hand; `vigie query explain` cites them from the replay's files"}));
            o.insert(
                "agree".into(),
                json!(complete && checks.iter().all(|c| c["agree"] == true)),
            );
            o.insert("checks".into(), json!(checks));
        }
        evidence
    })
}

pub(crate) async fn explain(
    State(state): State<AppState>,
    _c: crate::auth::Caller,
    Query(p): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    only(&p, &["zone", "hour", "as_of"])?;
    let (z, zone) = zone_param(&state, &p)?;
    let hour_ms = time_param(&p, "hour")?
        .ok_or_else(|| ApiError::bad("hour", "give an hour (RFC 3339 or Unix seconds)"))?
        .div_euclid(HOUR_MS)
        * HOUR_MS;
    let as_of = time_param(&p, "as_of")?;
    let (stored, revisions) = {
        let store = state.store().read().unwrap_or_else(|e| e.into_inner());
        let stored = read::zone_hour(&store, &zone, hour_ms, as_of);
        let revisions = read::revisions(&store, &zone, "risk_score", hour_ms);
        (stored, revisions)
    };
    let stored = stored
        .map_err(|e| {
            ApiError::unavailable(format!(
                "reading the store: {}",
                crate::error::failure("reading the store", &e)
            ))
        })?
        .ok_or_else(|| {
            ApiError::not_found(
                "hour",
                format!(
                    "no figures for zone {zone} at {}",
                    format_ts(hour_ms * 1000)
                ),
            )
        })?;
    let revisions: Vec<Value> = revisions
        .unwrap_or_default()
        .into_iter()
        .filter(|(rev, _)| as_of.is_none_or(|a| *rev <= a))
        .map(|(rev, v)| json!({ "known_at": format_ts(rev * 1000), "risk_score": v }))
        .collect();
    let values = &stored.values;
    let v = |f: &str| values.get(f).copied().unwrap_or(0.0);
    let config = state.config();
    let m = &config.model;
    let zc = config.zones.get(z);
    let mut contributions = vec![
        json!({"name": "baseline", "value": v("baseline"), "unit": unit("baseline"), "part": "base",
               "what": "mean severity at this hour of the week over the past weeks"}),
        json!({"name": "recent", "value": v("recent"), "weight": m.recent_weight, "unit": unit("recent"), "part": "base",
               "what": if m.v2() { "severity of incidents, and weighted hotline calls, in this hour and the two before" } else { "severity of incidents in this hour and the two before" }}),
    ];
    if m.v2() {
        let own = v("exposure") - v("spill") - v("surge");
        contributions.extend([
            json!({"name": "exposure", "value": v("exposure"), "unit": unit("exposure"), "part": "base",
                   "what": "events' own exposure + spill from neighbours + crowd surge"}),
            json!({"name": "events_exposure", "value": own, "unit": unit("exposure"), "part": "exposure",
                   "what": "attendance of the zone's events ÷ 1000 × the rate of their kind"}),
            json!({"name": "spill", "value": v("spill"), "unit": unit("spill"), "part": "exposure",
                   "what": "a share of the neighbouring zones' events' exposure"}),
            json!({"name": "surge", "value": v("surge"), "unit": unit("surge"), "part": "exposure",
                   "what": "crowd observed above its typical level"}),
        ]);
    }
    contributions.extend([
        json!({"name": "crowd", "value": v("crowd"), "load": v("load"), "unit": unit("crowd"), "part": "crowd_factor",
               "what": "people expected against the zone's capacity"}),
        json!({"name": "events", "value": v("events"), "unit": unit("events"),
               "part": if m.v2() { "exposure" } else { "crowd_factor" },
               "what": "attendance of events overlapping the hour"}),
        json!({"name": "weather", "value": v("weather"), "unit": unit("weather"), "part": "weather_factor",
               "what": "heat, wind and rain factor"}),
        json!({"name": "demonstration", "value": v("demonstration"), "unit": unit("demonstration"), "part": "demonstration_factor",
               "what": "a demonstration overlaps the hour"}),
    ]);
    let units: Map<String, Value> = values
        .keys()
        .map(|k| (k.to_string(), json!(unit(k))))
        .collect();
    let mut answer = json!({
        "zone": zone,
        "name": zc.name,
        "hour": format_ts(hour_ms * 1000),
        "model": m.version,
        "figures": figures(values),
        "units": units,
        "contributions": contributions,
        "formula": formula_steps(m, zc, &v),
        "bands": {"risk_level": m.level_thresholds, "fluidity_level": m.fluidity_thresholds},
        "revisions": revisions,
    });
    if m.v2() {
        answer["v2"] = v2_parts(m, zc, &|f| values.get(f).copied().unwrap_or(f64::NAN));
    }
    if let Ok(clock) = clock(&state) {
        answer["records"] = records(&state, z, hour_ms / HOUR_MS, clock, values);
    }
    Ok(Json(answer))
}
