//! Small helpers for benchmarks that drive a running `vigie run` over loopback: free ports,
//! one-shot HTTP/1.1 requests, `/metrics` values, and a child process killed when dropped.

use anyhow::Context;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;

/// A free TCP port on loopback (0 if none could be had).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request on a new connection, with a bearer token unless `token` is empty:
/// status and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    let auth = if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").context("an HTTP answer")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("a status")?;
    Ok((code, body.to_string()))
}

/// The value of the first `/metrics` sample named `name` (with or without labels: pass the
/// labels in `name` to pick one).
pub fn metric(port: u16, name: &str) -> anyhow::Result<Option<f64>> {
    let (_, body) = http(port, "GET", "/metrics", "", "")?;
    Ok(body.lines().find_map(|l| {
        l.strip_prefix(name)
            .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            .and_then(|rest| rest.rsplit(' ').next()?.parse().ok())
    }))
}
