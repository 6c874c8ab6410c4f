//! `vigie check-config`: loads and validates a configuration, and says what it holds.

use anyhow::Context;

/// Prints what the configuration at `path` holds; the error names the key at fault.
pub fn run(path: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    let c = vigie_config::Config::from_file(path)
        .with_context(|| format!("loading {}", path.display()))?;
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
