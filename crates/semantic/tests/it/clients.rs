//! Slow and greedy clients (issue 19): a client that never finishes its headers is closed after
//! `--header-timeout-secs`; one that trickles its body gets a 408 in the OpenAI shape after
//! `--body-timeout-secs`; past `--max-connections` a new connection gets a 503 with Retry-After,
//! and the server serves again once they go.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{http, Server};

/// Reads until the server closes the connection (bounded by `limit`); what it sent.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> String {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection within {limit:?} ({e}); got {got:?}"),
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn unfinished_headers_are_cut_and_a_trickled_body_gets_408() {
    let server = Server::start(&["--header-timeout-secs", "1", "--body-timeout-secs", "2"]);
    let started = Instant::now();
    let mut headers = TcpStream::connect(server.addr).unwrap();
    headers.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ").unwrap();
    let said = read_until_closed(&mut headers, Duration::from_secs(30));
    assert!(started.elapsed() >= Duration::from_secs(1), "closed before the timeout");
    assert!(!said.contains("200 OK"), "{said}");

    let started = Instant::now();
    let mut body = TcpStream::connect(server.addr).unwrap();
    body.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 200\r\n\r\n{\"messages\"",
    )
    .unwrap();
    let said = read_until_closed(&mut body, Duration::from_secs(30));
    assert!(started.elapsed() >= Duration::from_secs(2), "cut before the deadline: {said}");
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("\"code\":\"body_timeout\""), "{said}");

    assert_eq!(http(server.addr, "GET", "/health/live", &[], None).status, 200, "still serving");
}

#[test]
fn connections_past_the_cap_get_503_and_the_server_recovers() {
    let server = Server::start(&["--max-connections", "16", "--header-timeout-secs", "60"]);
    // 16 clients that connect and say nothing hold every slot (the header timeout is long).
    let idle: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    // The server takes slots as it accepts: poll until a new connection is refused (bounded).
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let reply = http(server.addr, "GET", "/health/live", &[], None);
        if reply.status == 503 {
            break reply;
        }
        assert!(Instant::now() < deadline, "no connection was refused with 16 held");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.json()["error"]["code"], "too_many_connections", "{}", refused.body);
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(server.addr, "GET", "/health/live", &[], None).status != 200 {
        assert!(Instant::now() < deadline, "the server did not serve again once the clients left");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.stderr().contains("--max-connections reached"), "the refusal is logged");
}
