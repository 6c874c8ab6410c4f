//! `vigie check-config`: loads and validates a configuration, reads every secret and file a
//! run would read at start (tokens, passwords, keys, certificates), and says what it holds.
//! What it refuses is what `vigie run` would refuse; secrets are never printed.

use anyhow::Context;

/// Prints what the configuration at `path` holds; the error names the key at fault.
pub fn run(path: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    let c = vigie_config::Config::from_file(path)
        .with_context(|| format!("loading {}", path.display()))?;
    let problems = secrets(&c);
    if !problems.is_empty() {
        let mut text = format!(
            "{}: a run would refuse {} of what it reads at start:",
            path.display(),
            problems.len()
        );
        for p in &problems {
            text.push_str("\n  - ");
            text.push_str(p);
        }
        anyhow::bail!(text);
    }
    println!("{}: valid", path.display());
    println!("  time zone: {}", c.timezone);
    let located = c.zones.iter().filter(|z| z.polygon.is_some()).count();
    println!("  zones: {} ({} with a polygon)", c.zones.len(), located);
    println!(
        "  model: W = {} weeks, horizon {} h back and {} h ahead",
        c.model.weeks, c.model.past_hours, c.model.future_hours
    );
    for (name, m) in &c.mappings {
        println!("  mapping {name}: CSV to feed {}", m.feed);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Reads what `vigie run` reads at start besides the configuration file, in the order it does:
/// one line per secret or file it would stop on.
fn secrets(c: &vigie_config::Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = vigie_server::Tokens::load(c) {
        problems.push(e);
    }
    for s in &c.sources {
        if let Err(e) = s.read_mqtt_password() {
            problems.push(format!("source {}: its MQTT password: {e}", s.name));
        }
    }
    if let Some(m) = &c.ingest.mqtt {
        if let Err(e) = vigie_connectors::ingest::mqtt::check_options(m) {
            problems.push(e);
        }
    }
    if let Some(i) = &c.outputs.influxdb {
        if let Err(e) = vigie_connectors::influx::sink::check_token(i) {
            problems.push(format!("outputs.influxdb: {e}"));
        }
    }
    if let Err(e) = c.privacy.read_keys() {
        problems.push(format!("privacy: {e}"));
    }
    problems
}
