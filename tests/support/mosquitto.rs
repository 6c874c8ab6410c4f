//! A real Mosquitto broker for tests (Debian's `mosquitto`), on a free loopback port with a
//! persistence folder of its own, killed when dropped; and `mosquitto_pub`. Shared by the MQTT
//! source's tests (`connectors/tests/mqtt_mosquitto.rs`) and the binary's (`tests/e2e.rs`).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn binary(name: &str, dir: &str) -> PathBuf {
    let p = Path::new(dir).join(name);
    if p.is_file() {
        return p;
    }
    panic!(
        "{} is not installed: these tests need a real Mosquitto broker and its clients. \
         tests/run installs them (apt-get install mosquitto mosquitto-clients)",
        p.display()
    );
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().unwrap().port()
}

/// A Mosquitto process, killed when dropped.
pub struct Broker {
    child: Option<Child>,
    dir: PathBuf,
}

impl Broker {
    pub fn start(dir: &Path, port: u16) -> Broker {
        Broker::start_with(dir, port, "allow_anonymous true\n")
    }

    /// With `access` as its access lines (`allow_anonymous`, `password_file`, `acl_file`).
    pub fn start_with(dir: &Path, port: u16, access: &str) -> Broker {
        Broker::start_plain(
            dir,
            port,
            &format!("{access}persistence true\nmax_queued_messages 100000\n"),
        )
    }

    /// Mosquitto as Debian configures it (its defaults, persistence in `dir`) and `lines`:
    /// nothing else set for queued messages.
    pub fn start_plain(dir: &Path, port: u16, lines: &str) -> Broker {
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\npersistence_location {}/\n\
                 # Do not drop privileges when the tests run as root: the folder is ours.\n\
                 user root\nlog_dest file {}\nlog_type all\n{lines}",
                dir.display(),
                dir.join("mosquitto.log").display()
            ),
        )
        .unwrap();
        let child = Command::new(binary("mosquitto", "/usr/sbin"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let broker = Broker {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen on {port}; its log: {}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops it with SIGTERM, on which it saves its persistence file.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .expect("run kill");
            assert!(status.success());
            let t0 = Instant::now();
            while child.try_wait().unwrap().is_none() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "mosquitto ignores SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `mosquitto_pub` at QoS 1, one message.
pub fn mosquitto_pub(port: u16, topic: &str, payload: &str) {
    if let Err(e) = mosquitto_pub_as(port, None, topic, payload) {
        panic!("mosquitto_pub: {e}");
    }
}

/// `mosquitto_pub` at QoS 1, one message, logged in as `login` (user, password) if given;
/// the error is its standard error.
pub fn mosquitto_pub_as(
    port: u16,
    login: Option<(&str, &str)>,
    topic: &str,
    payload: &str,
) -> Result<(), String> {
    // The message is stdin, as is: several lines make one NDJSON message.
    mosquitto_pub_stdin(port, login, topic, "-s", payload)
}

/// `mosquitto_pub -l` at QoS 1, logged in as `login` if given: each line of `lines` one
/// message, over one connection.
pub fn mosquitto_pub_lines(
    port: u16,
    login: Option<(&str, &str)>,
    topic: &str,
    lines: &[String],
) -> Result<(), String> {
    let mut text = lines.join("\n");
    text.push('\n');
    mosquitto_pub_stdin(port, login, topic, "-l", &text)
}

/// `mosquitto_pub` at QoS 1 reading `stdin` as `mode` says (`-s`: one message, `-l`: one a
/// line); the error is its standard error.
fn mosquitto_pub_stdin(
    port: u16,
    login: Option<(&str, &str)>,
    topic: &str,
    mode: &str,
    stdin: &str,
) -> Result<(), String> {
    let mut cmd = Command::new(binary("mosquitto_pub", "/usr/bin"));
    if let Some((user, password)) = login {
        cmd.args(["-u", user, "-P", password]);
    }
    let mut child = cmd
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            mode,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mosquitto_pub");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}
