//! `vigie mqtt-acl`: the access rules of an external Mosquitto broker, from the configuration.
//!
//! Each `[[sources]]` entry with `mqtt_username` may log in with its password and publish on
//! the topic filters of `[ingest.mqtt] topics` that name it, nothing else; vigie's own user
//! (`[ingest.mqtt] username`) may subscribe to every filter and publish nothing. The command
//! writes two files for Mosquitto 2:
//!
//! - `passwd`: `user:hash` lines, the passwords (read from `mqtt_password_env` /
//!   `mqtt_password_file`) hashed by `mosquitto_passwd -U` (Mosquitto's own PBKDF2-SHA512);
//!   the file is owner-only and never holds a clear password once the command succeeded.
//! - `acl`: `user NAME` followed by `topic write FILTER` (sources) or `topic read FILTER`
//!   (vigie) lines. Mosquitto denies whatever the file does not grant: a source publishing on
//!   another source's topics gets its PUBACK (MQTT 3.1.1 cannot refuse a publish) but the
//!   message is dropped, so it never reaches vigie.
//!
//! - `vigie.conf`: the Mosquitto settings for vigie, to include from `mosquitto.conf`
//!   (Debian: `include_dir DIR`, or copy it into `/etc/mosquitto/conf.d/`):
//!   `allow_anonymous false`, the two files above, and what keeps the QoS 1 messages published
//!   while vigie is away until it comes back ([`broker_settings`]): persistence, a queue per
//!   client far above Mosquitto's default of 1,000 messages (with which 2,000 of 3,000
//!   messages published during a restart of vigie were lost), and more messages in flight to
//!   vigie than the default 20, which otherwise caps how many vigie commits per fsync.
//!   Queued messages are kept only for a persistent session: vigie connects with
//!   `clean_session = false` under a fixed `client_id` (both the defaults of
//!   `[ingest.mqtt]`); the command warns when the configuration says otherwise.

use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vigie_config::Config;

#[derive(clap::Args, Debug)]
pub struct MqttAclArgs {
    /// The configuration whose `[[sources]]` and `[ingest.mqtt]` give users and topics.
    #[arg(long)]
    config: PathBuf,
    /// Folder to write `passwd` and `acl` into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The `mosquitto_passwd` program that hashes the password file.
    #[arg(long, value_name = "PATH", default_value = "mosquitto_passwd")]
    mosquitto_passwd: PathBuf,
    /// Messages Mosquitto queues for vigie while it is away (`max_queued_messages`); beyond
    /// them it drops new ones.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_QUEUED)]
    max_queued_messages: u64,
    /// Bytes of payload it queues at most for one client (`max_queued_bytes`; 0: no limit
    /// but the count): the memory bound of an absence.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_QUEUED_BYTES)]
    max_queued_bytes: u64,
}

/// Default of `--max-queued-messages`: at 100 messages a second, almost three hours of
/// absence.
pub const DEFAULT_MAX_QUEUED: u64 = 1_000_000;
/// Default of `--max-queued-bytes`: 1 GiB.
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 1 << 30;
/// QoS 1 messages Mosquitto sends vigie before their acknowledgements (vigie acknowledges
/// after its fsync and commits the messages waiting together).
pub const MAX_INFLIGHT: u64 = 1_000;

/// The Mosquitto settings of `vigie.conf`: logins and ACL in `dir`, and what keeps vigie's
/// queued messages while it is away.
pub fn broker_settings(dir: &Path, max_queued: u64, max_queued_bytes: u64) -> String {
    format!(
        "# Written by `vigie mqtt-acl`; include it from mosquitto.conf (Debian: copy it into\n\
         # /etc/mosquitto/conf.d/, or `include_dir {dir}`).\n\
         # Who may connect, and what each may publish or read:\n\
         allow_anonymous false\n\
         password_file {dir}/passwd\n\
         acl_file {dir}/acl\n\
         # Keep vigie's persistent session and the QoS 1 messages queued for it while it is\n\
         # away, across a restart of Mosquitto too (saved every 60 s and on stop; set\n\
         # persistence_location where Mosquitto may write, Debian's /var/lib/mosquitto/ does):\n\
         persistence true\n\
         autosave_interval 60\n\
         # Mosquitto's default of 1000 queued messages loses the rest of an absence:\n\
         max_queued_messages {max_queued}\n\
         max_queued_bytes {max_queued_bytes}\n\
         # Messages in flight to vigie before their acknowledgements (default 20):\n\
         max_inflight_messages {MAX_INFLIGHT}\n",
        dir = dir.display()
    )
}

/// The ACL file's text for `config`: vigie's user first, then each source with MQTT
/// credentials.
pub fn acl_text(config: &Config) -> anyhow::Result<String> {
    let mqtt = config.ingest.mqtt.as_ref().context(
        "the configuration has no [ingest.mqtt]: the ACL gives each source the topics of its entries there",
    )?;
    let vigie_user = mqtt.username.as_ref().context(
        "[ingest.mqtt] has no username: with a password file, vigie must log in too (username and password_env)",
    )?;
    let mut out = String::from(
        "# Written by `vigie mqtt-acl`: each source may publish on its own topics only;\n\
         # vigie may subscribe to them all. Whatever is not granted here is denied.\n",
    );
    out.push_str(&format!("\nuser {vigie_user}\n"));
    for t in &mqtt.topics {
        out.push_str(&format!("topic read {}\n", t.filter));
    }
    for s in &config.sources {
        let Some(user) = &s.mqtt_username else {
            continue;
        };
        out.push_str(&format!(
            "\n# source {} (feeds: {})\nuser {user}\n",
            s.name,
            s.feeds.join(", ")
        ));
        let mut any = false;
        for t in mqtt.topics.iter().filter(|t| t.source == s.name) {
            out.push_str(&format!("topic write {}\n", t.filter));
            any = true;
        }
        if !any {
            out.push_str(
                "# (no topic of [ingest.mqtt] names this source: it may publish nothing)\n",
            );
        }
    }
    Ok(out)
}

fn owner_only(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: MqttAclArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_file(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let acl = acl_text(&config)?;
    let mqtt = config.ingest.mqtt.as_ref().expect("checked by acl_text");
    let mut users: Vec<(String, String)> = Vec::new();
    let vigie_password = mqtt
        .read_password()
        .map_err(|e| anyhow::anyhow!("[ingest.mqtt] password: {e}"))?
        .filter(|p| !p.is_empty())
        .context("[ingest.mqtt] has a username but no password (password_env or password_file)")?;
    users.push((mqtt.username.clone().expect("checked"), vigie_password));
    for s in &config.sources {
        if let Some(user) = &s.mqtt_username {
            let p = s
                .read_mqtt_password()
                .map_err(|e| anyhow::anyhow!("source {}: {e}", s.name))?
                .unwrap_or_default();
            users.push((user.clone(), p));
        }
    }
    if users.len() == 1 {
        bail!("no [[sources]] entry has mqtt_username: there is nobody to let publish");
    }
    for (u, p) in &users {
        if p.contains(['\n', '\r']) {
            bail!("the MQTT password of user {u} holds a line break");
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let passwd = args.out.join("passwd");
    {
        let mut f = owner_only(&passwd)?;
        for (u, p) in &users {
            writeln!(f, "{u}:{p}")?;
        }
        f.sync_all()?;
    }
    // Hash in place; a clear password file is not left behind if that fails.
    let hashed = std::process::Command::new(&args.mosquitto_passwd)
        .arg("-U")
        .arg(&passwd)
        .output();
    match hashed {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let _ = std::fs::remove_file(&passwd);
            bail!(
                "{} -U failed: {}",
                args.mosquitto_passwd.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Err(e) => {
            let _ = std::fs::remove_file(&passwd);
            bail!(
                "cannot run {} (apt-get install mosquitto): {e}",
                args.mosquitto_passwd.display()
            );
        }
    }
    let acl_path = args.out.join("acl");
    owner_only(&acl_path)?.write_all(acl.as_bytes())?;
    // Mosquitto reads the files by the paths written in vigie.conf: make them absolute.
    let dir = std::fs::canonicalize(&args.out)
        .with_context(|| format!("resolving {}", args.out.display()))?;
    let conf_path = args.out.join("vigie.conf");
    let conf = broker_settings(&dir, args.max_queued_messages, args.max_queued_bytes);
    owner_only(&conf_path)?.write_all(conf.as_bytes())?;
    println!(
        "wrote {} ({} users), {} and {}",
        passwd.display(),
        users.len(),
        acl_path.display(),
        conf_path.display()
    );
    println!(
        "include it from mosquitto.conf: `include_dir {}` (or copy vigie.conf into /etc/mosquitto/conf.d/)",
        dir.display()
    );
    if mqtt.clean_session {
        eprintln!(
            "warning: [ingest.mqtt] clean_session = true: Mosquitto keeps no session for vigie, \
             and messages published while it is away are lost; set clean_session = false"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_writes_its_own_topics_and_vigie_reads_them_all() {
        let text = "zones = \"zones/marseille.geojson\"\n\
            [[sources]]\nname = \"police\"\nfeeds = [\"incident\"]\nmqtt_username = \"police\"\nmqtt_password_env = \"P\"\n\
            [[sources]]\nname = \"sensors\"\nfeeds = [\"density\"]\nmqtt_username = \"sensors\"\nmqtt_password_env = \"S\"\n\
            [[sources]]\nname = \"web\"\nfeeds = [\"event\"]\ntoken_env = \"T\"\n\
            [ingest.mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nusername = \"vigie\"\npassword_env = \"V\"\n\
            topics = [{ filter = \"city/incident/+\", feed = \"incident\", source = \"police\", zone_from_topic = 2 },\
                      { filter = \"city/density/#\", feed = \"density\", source = \"sensors\" }]\n";
        let config = Config::parse(text, "t.toml", None).unwrap();
        let acl = acl_text(&config).unwrap();
        let grants: Vec<&str> = acl
            .lines()
            .filter(|l| l.starts_with("user ") || l.starts_with("topic "))
            .collect();
        assert_eq!(
            grants,
            [
                "user vigie",
                "topic read city/incident/+",
                "topic read city/density/#",
                "user police",
                "topic write city/incident/+",
                "user sensors",
                "topic write city/density/#",
            ]
        );
    }

    #[test]
    fn the_broker_settings_keep_queued_messages_for_vigie() {
        let text = broker_settings(Path::new("/etc/mosquitto/vigie"), 5000, 0);
        let settings: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(
            settings,
            [
                "allow_anonymous false",
                "password_file /etc/mosquitto/vigie/passwd",
                "acl_file /etc/mosquitto/vigie/acl",
                "persistence true",
                "autosave_interval 60",
                "max_queued_messages 5000",
                "max_queued_bytes 0",
                "max_inflight_messages 1000",
            ]
        );
    }
}
