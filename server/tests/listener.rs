//! The listener's limits over real loopback sockets: the first request head's timeout, the
//! body timeout (408 in the JSON error shape), the cap on connections (the oldest idle one
//! makes room; a newcomer is closed at once when all are busy), and their counters.

mod support;

use std::time::{Duration, Instant};
use support::{Harness, POLICE, VIEWER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vigie_server::listener::{serve_with_limits, Limits};

/// Serves the harness's router with `limits` on a loopback port; the address.
async fn serve(h: &Harness, limits: Limits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = h.state.clone();
    tokio::spawn(serve_with_limits(
        listener,
        vigie_server::app(state.clone()),
        state,
        limits,
    ));
    addr
}

fn limits(max_connections: usize) -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(1),
        max_connections,
    }
}

/// Reads until the server closes (or `secs` pass); what was read and whether it closed.
async fn read_to_close(s: &mut TcpStream, secs: u64) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET /health` on a new connection; the status line.
async fn health(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_to_close(&mut s, 5).await;
    text.lines().next().unwrap_or("").to_string()
}

fn metric_line(metrics: &str, name: &str) -> String {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .to_string()
}

#[tokio::test]
async fn a_half_request_line_is_closed_after_the_header_timeout() {
    let h = Harness::start(10, |_| String::new());
    let addr = serve(&h, limits(100)).await;
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /health HT").await.unwrap();
    let t0 = Instant::now();
    let (text, closed) = read_to_close(&mut half, 5).await;
    let took = t0.elapsed();
    assert!(closed, "a half request line held its connection 5 s");
    assert!(text.is_empty(), "{text}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "closed after {took:?}, the timeout is 1 s"
    );
    // A connection that sent nothing at all: the same.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(read_to_close(&mut silent, 5).await.1);
    assert_eq!(health(addr).await, "HTTP/1.1 200 OK");
    let m = h.get("/metrics", Some(VIEWER)).await.text;
    assert_eq!(
        metric_line(
            &m,
            "vigie_http_connections_closed_total{reason=\"header_timeout\"}"
        ),
        "vigie_http_connections_closed_total{reason=\"header_timeout\"} 2"
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let h = Harness::start(10, |_| String::new());
    let addr = serve(&h, limits(100)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/records HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {POLICE}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{{\"feed\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let (text, _) = read_to_close(&mut s, 5).await;
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "after {:?}: {text}",
        t0.elapsed()
    );
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(json["field"], "body");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("body_timeout_secs"),
        "{json}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn at_the_cap_an_idle_connection_makes_room_and_busy_ones_keep_theirs() {
    let h = Harness::start(10, |_| String::new());
    let mut l = limits(4);
    // Long enough that the header clock closes nothing during the test.
    l.header_read_timeout = Duration::from_secs(30);
    let addr = serve(&h, l).await;
    // Four idle connections fill the cap…
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // …yet /health answers: its connection takes the place of the oldest idle one.
    assert_eq!(health(addr).await, "HTTP/1.1 200 OK");
    let (_, closed) = read_to_close(&mut idle[0], 2).await;
    assert!(closed, "the oldest idle connection was not closed");
    // Four live streams (requests under way) fill the cap: a newcomer is closed at once.
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "GET /api/v1/stream HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {VIEWER}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        streams.push(s);
    }
    let mut late = TcpStream::connect(addr).await.unwrap();
    late.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_to_close(&mut late, 2).await;
    assert!(closed && text.is_empty(), "{closed} {text}");
    // Every stream still flows.
    let m = h.get("/metrics", Some(VIEWER)).await.text;
    assert_eq!(
        metric_line(
            &m,
            "vigie_http_connections_closed_total{reason=\"refused_at_cap\"}"
        ),
        "vigie_http_connections_closed_total{reason=\"refused_at_cap\"} 1"
    );
    let replaced = metric_line(
        &m,
        "vigie_http_connections_closed_total{reason=\"replaced_at_cap\"}",
    );
    // The /health connection and the streams' took the idle ones' places.
    assert!(replaced.ends_with(" 4"), "{replaced}");
    assert_eq!(
        metric_line(&m, "vigie_http_connections_open "),
        "vigie_http_connections_open 4"
    );
    drop(streams);
}

#[test]
fn the_cap_leaves_the_reserve_of_file_descriptors() {
    let mut http = vigie_config::HttpConfig::default();
    assert_eq!(Limits::of(&http, Some(20_000)).max_connections, 10_000);
    assert_eq!(Limits::of(&http, Some(4_096)).max_connections, 4_096 - 512);
    assert_eq!(Limits::of(&http, Some(256)).max_connections, 128);
    http.max_connections = 50_000;
    assert_eq!(Limits::of(&http, Some(20_000)).max_connections, 19_488);
    assert_eq!(Limits::of(&http, None).max_connections, 50_000);
}
