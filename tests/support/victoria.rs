//! A real VictoriaMetrics server for tests (Debian's `victoria-metrics`), started on a free
//! loopback port with its own data folder and killed when dropped; shared by the sink's tests
//! (`connectors/tests/influx_victoria.rs`) and the binary's (`tests/e2e.rs`). Flags and what
//! VictoriaMetrics 1.79 does with them: see `connectors/tests/influx_victoria.rs`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn binary() -> PathBuf {
    let given = std::env::var_os("VIGIE_VICTORIA_METRICS").map(PathBuf::from);
    let path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = match given {
        Some(p) => p.is_file().then_some(p),
        None => path
            .iter()
            .map(PathBuf::as_path)
            .chain([Path::new("/usr/bin")])
            .map(|dir| dir.join("victoria-metrics"))
            .find(|p| p.is_file()),
    };
    if let Some(p) = found {
        return p;
    }
    panic!(
        "victoria-metrics is not installed: these tests need a real VictoriaMetrics server. \
         tests/run installs it (apt-get install victoria-metrics); or set VIGIE_VICTORIA_METRICS \
         to its binary"
    );
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().unwrap().port()
}

/// A VictoriaMetrics process, killed when dropped.
pub struct Vm {
    child: Option<Child>,
    pub port: u16,
    data: PathBuf,
}

impl Vm {
    pub fn start(data: &Path, port: u16) -> Vm {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.with_extension("log"))
            .unwrap();
        let child = Command::new(binary())
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", data.display()))
            .arg("-retentionPeriod=100y")
            .arg("-dedup.minScrapeInterval=1ms")
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .arg("-memory.allowedPercent=5")
            .arg("-loggerLevel=WARN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start victoria-metrics");
        let vm = Vm {
            child: Some(child),
            port,
            data: data.to_path_buf(),
        };
        let t0 = Instant::now();
        while get(port, "/health").is_none_or(|(code, _)| code != 200) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "victoria-metrics did not answer on port {port}; its log: {}",
                std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        vm
    }

    /// Stops it as an operator would (SIGTERM: it writes its in-memory buffer out).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let t0 = Instant::now();
            while c.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        *self = Vm::start(&self.data.clone(), self.port);
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP/1.0 GET on loopback: status and body.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}
