//! The `/qmp` WebSocket and the relay to unix/TCP QMP endpoints, against the real
//! binary, with a fake worker speaking the relay protocol.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{read_line_crlf, ws_handshake, Bridge, TempDir, Ws, GREETING};
use serde_json::json;

const SHORT: Duration = Duration::from_millis(400);

fn unix_bridge(dir: &TempDir) -> (Bridge, std::path::PathBuf) {
    let sock = dir.path().join("qmp.sock");
    let b = Bridge::start(&[
        "--www",
        dir.path().to_str().unwrap(),
        "--qmp",
        &format!("unix:{}", sock.display()),
    ]);
    assert_eq!(b.qmp, vec![format!("unix:{}", sock.display())]);
    (b, sock)
}

fn connect_unix(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Asserts that nothing arrives on `s` within [`SHORT`].
fn assert_silent<R: Read>(s: &mut R) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected silence, got {other:?}"),
    }
}

/// Worker side of opening a session: expects `open`, sends the greeting in two frames.
fn worker_greets(w: &mut Ws, client: u64) {
    assert_eq!(w.read_control(), json!({"type": "open", "client": client}));
    let (a, b) = GREETING.as_bytes().split_at(20);
    w.send_binary(a);
    w.send_binary(b);
}

#[test]
fn foreign_origin_is_refused() {
    let dir = TempDir::new("origin");
    let b = Bridge::start(&[
        "--www",
        dir.path().to_str().unwrap(),
        "--allow-origin",
        "https://app.example",
    ]);
    for origin in [
        Some("http://evil.example"),
        Some("null"),
        None,
        Some("http://127.0.0.1:1"),
    ] {
        let (r, _, _) = ws_handshake(b.addr, origin);
        assert_eq!(r.status, 403, "{origin:?}");
    }
    for origin in [
        b.origin(),
        format!("http://localhost:{}", b.addr.port()),
        "https://app.example".into(),
    ] {
        let (r, _, _) = ws_handshake(b.addr, Some(&origin));
        assert_eq!(r.status, 101, "{origin}");
        assert_eq!(r.header("sec-websocket-accept"), Some(common::WS_ACCEPT));
        assert_eq!(
            r.header("upgrade").map(str::to_ascii_lowercase).as_deref(),
            Some("websocket")
        );
    }
    b.wait_stderr("refused a VM connection from origin \"http://evil.example\"");
}

#[test]
fn bad_upgrades_are_refused() {
    let dir = TempDir::new("upgrade");
    let b = Bridge::start(&["--www", dir.path().to_str().unwrap()]);
    let r = common::get(b.addr, "/qmp", "");
    assert_eq!(r.status, 426);
    let r = common::raw_request(
        b.addr,
        &format!(
            "GET /qmp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 8\r\nOrigin: {}\r\n\r\n",
            common::WS_KEY,
            b.origin()
        ),
    );
    assert_eq!(
        (r.status, r.header("sec-websocket-version")),
        (426, Some("13"))
    );
    let r = common::raw_request(
        b.addr,
        &format!(
            "GET /qmp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\nOrigin: {}\r\n\r\n",
            b.origin()
        ),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn full_relay_over_unix_socket_with_waiting_second_client() {
    let dir = TempDir::new("relay");
    let (b, sock) = unix_bridge(&dir);
    let mut w = Ws::connect(&b);
    b.wait_stderr("VM connected");

    // Client 1: greeting, negotiation, reply.
    let mut c1 = connect_unix(&sock);
    worker_greets(&mut w, 1);
    assert_eq!(read_line_crlf(&mut c1), GREETING);
    let cmd = b"{\"execute\": \"qmp_capabilities\"}";
    c1.write_all(&cmd[..10]).unwrap();
    c1.write_all(&cmd[10..]).unwrap();
    assert_eq!(w.read_bytes(cmd.len()), cmd);
    w.send_binary(b"{\"return\": {}}\r\n");
    assert_eq!(read_line_crlf(&mut c1), "{\"return\": {}}\r\n");

    // Client 2 connects while client 1 is open: no greeting, no `open` for it.
    let mut c2 = connect_unix(&sock);
    c2.set_read_timeout(Some(SHORT)).unwrap();
    assert_silent(&mut c2);
    assert_eq!(
        w.try_read(SHORT),
        None,
        "the worker must not hear of client 2 yet"
    );
    // Client 2 may already send; its bytes wait with it.
    c2.write_all(b"{\"execute\": \"qmp_capabilities\"}")
        .unwrap();

    // Client 1 leaves: `close 1`, then `open 2` and client 2's early bytes.
    drop(c1);
    assert_eq!(w.read_control(), json!({"type": "close", "client": 1}));
    worker_greets(&mut w, 2);
    c2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_line_crlf(&mut c2), GREETING);
    assert_eq!(w.read_bytes(cmd.len()), cmd);
    w.send_binary(b"{\"return\": {}}\r\n{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n");
    assert_eq!(read_line_crlf(&mut c2), "{\"return\": {}}\r\n");
    assert!(read_line_crlf(&mut c2).contains("\"STOP\""));
    drop(c2);
    assert_eq!(w.read_control(), json!({"type": "close", "client": 2}));

    // A large write crosses frames intact.
    let mut c3 = connect_unix(&sock);
    worker_greets(&mut w, 3);
    assert_eq!(read_line_crlf(&mut c3), GREETING);
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    c3.write_all(&big).unwrap();
    assert_eq!(w.read_bytes(big.len()), big);
    let reply: Vec<u8> = (0..200_000u32).map(|i| b'A' + (i % 26) as u8).collect();
    for chunk in reply.chunks(70_000) {
        w.send_binary(chunk);
    }
    let mut got = vec![0u8; reply.len()];
    c3.read_exact(&mut got).unwrap();
    assert_eq!(got, reply);
}

#[test]
fn client_waits_for_the_vm() {
    let dir = TempDir::new("wait");
    let (b, sock) = unix_bridge(&dir);
    let mut c = connect_unix(&sock);
    c.write_all(b"{\"execute\":\"qmp_capabilities\"}").unwrap();
    b.wait_stderr("waits for a VM");
    c.set_read_timeout(Some(SHORT)).unwrap();
    assert_silent(&mut c);
    let mut w = Ws::connect(&b);
    worker_greets(&mut w, 1);
    // What the client sent while waiting is delivered after `open`.
    let early = b"{\"execute\":\"qmp_capabilities\"}";
    assert_eq!(w.read_bytes(early.len()), early);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_line_crlf(&mut c), GREETING);
}

#[test]
fn client_that_leaves_while_waiting_is_forgotten() {
    let dir = TempDir::new("leave");
    let (b, sock) = unix_bridge(&dir);
    let c = connect_unix(&sock);
    b.wait_stderr("waits for a VM");
    drop(c);
    std::thread::sleep(SHORT);
    let mut w = Ws::connect(&b);
    assert_eq!(w.try_read(SHORT), None, "no `open` for a client that left");
    // Numbers are given when a client is opened, so the next client is still 1.
    let mut c2 = connect_unix(&sock);
    worker_greets(&mut w, 1);
    assert_eq!(read_line_crlf(&mut c2), GREETING);
}

#[test]
fn vm_disconnect_closes_the_client_and_a_new_vm_serves_the_next() {
    let dir = TempDir::new("vmgone");
    let (b, sock) = unix_bridge(&dir);
    let mut w = Ws::connect(&b);
    let mut c = connect_unix(&sock);
    worker_greets(&mut w, 1);
    assert_eq!(read_line_crlf(&mut c), GREETING);
    drop(w);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    b.wait_stderr("VM connection from");
    let mut w2 = Ws::connect(&b);
    let mut c2 = connect_unix(&sock);
    worker_greets(&mut w2, 2);
    assert_eq!(read_line_crlf(&mut c2), GREETING);
}

#[test]
fn second_vm_replaces_the_first() {
    let dir = TempDir::new("replace");
    let (b, sock) = unix_bridge(&dir);
    let mut w1 = Ws::connect(&b);
    let mut c = connect_unix(&sock);
    worker_greets(&mut w1, 1);
    assert_eq!(read_line_crlf(&mut c), GREETING);
    let mut w2 = Ws::connect(&b);
    let close = w1.read();
    assert_eq!(close.opcode, 8);
    assert_eq!(&close.payload[..2], &1001u16.to_be_bytes());
    // The client's session lived in the old VM: it is disconnected.
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let mut c2 = connect_unix(&sock);
    worker_greets(&mut w2, 2);
    assert_eq!(read_line_crlf(&mut c2), GREETING);
}

#[test]
fn worker_close_message_ends_the_client_after_its_bytes() {
    let dir = TempDir::new("quit");
    let (b, sock) = unix_bridge(&dir);
    let mut w = Ws::connect(&b);
    let mut c = connect_unix(&sock);
    worker_greets(&mut w, 1);
    assert_eq!(read_line_crlf(&mut c), GREETING);
    c.write_all(b"{\"execute\": \"quit\"}").unwrap();
    assert_eq!(w.read_bytes(19), b"{\"execute\": \"quit\"}");
    w.send_binary(b"{\"return\": {}}\r\n");
    w.send_text("{\"type\":\"close\",\"client\":1}");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"{\"return\": {}}\r\n");
    assert_eq!(w.read_control(), json!({"type": "close", "client": 1}));
    // Unknown control messages and pings do not disturb the relay.
    w.send_text("{\"type\":\"hello\"}");
    w.send_frame(0x89, b"p1");
    let pong = w.read();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (0xA, &b"p1"[..]));
}

#[test]
fn relay_over_tcp_endpoint() {
    let dir = TempDir::new("tcp");
    let b = Bridge::start(&[
        "--www",
        dir.path().to_str().unwrap(),
        "--qmp",
        "tcp:127.0.0.1:0",
    ]);
    let addr = b.qmp[0].strip_prefix("tcp:").unwrap().to_string();
    let mut w = Ws::connect(&b);
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    worker_greets(&mut w, 1);
    assert_eq!(read_line_crlf(&mut c), GREETING);
    c.write_all(b"{\"execute\":\"query-status\",\"id\":7}")
        .unwrap();
    assert_eq!(w.read_bytes(33), b"{\"execute\":\"query-status\",\"id\":7}");
    let mut c2 = TcpStream::connect(&addr).unwrap();
    c2.set_read_timeout(Some(SHORT)).unwrap();
    assert_silent(&mut c2);
    drop(c);
    assert_eq!(w.read_control(), json!({"type": "close", "client": 1}));
    worker_greets(&mut w, 2);
    c2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_line_crlf(&mut c2), GREETING);
}

#[test]
fn bad_frames_from_the_worker_close_it_without_harm() {
    let dir = TempDir::new("badframe");
    std::fs::write(dir.path().join("index.html"), "ok").unwrap();
    let (mut b, _sock) = unix_bridge(&dir);
    // Unmasked frame: protocol error 1002.
    let mut w = Ws::connect(&b);
    w.stream.write_all(&[0x82, 0x01, 0x41]).unwrap();
    let f = w.read();
    assert_eq!((f.opcode, &f.payload[..2]), (8, &1002u16.to_be_bytes()[..]));
    // A frame announcing 2^40 bytes: 1009 before anything is allocated.
    let mut w = Ws::connect(&b);
    let mut huge = vec![0x82, 0xFF];
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    w.stream.write_all(&huge).unwrap();
    let f = w.read();
    assert_eq!((f.opcode, &f.payload[..2]), (8, &1009u16.to_be_bytes()[..]));
    // Garbage text control message: ignored, connection stays.
    let mut w = Ws::connect(&b);
    w.send_text("not json at all");
    w.send_frame(0x89, b"still");
    assert_eq!(w.read().opcode, 0xA);
    // A close frame is answered.
    w.send_frame(0x88, &1000u16.to_be_bytes());
    assert_eq!(w.read().opcode, 8);
    assert!(b.is_running());
    assert_eq!(common::get(b.addr, "/", "").status, 200);
}

#[test]
fn late_output_of_a_closed_session_does_not_reach_the_next_client() {
    let dir = TempDir::new("late");
    let (b, sock) = unix_bridge(&dir);
    let mut w = Ws::connect(&b);
    let mut c1 = connect_unix(&sock);
    worker_greets(&mut w, 1);
    assert_eq!(read_line_crlf(&mut c1), GREETING);
    let mut c2 = connect_unix(&sock);
    drop(c1);
    assert_eq!(w.read_control(), json!({"type": "close", "client": 1}));
    // Output of session 1 that was in flight when `close 1` was sent arrives now,
    // after the bridge released the slot but before client 2 is opened.
    w.send_binary(b"{\"event\": \"LATE\"}\r\n");
    worker_greets(&mut w, 2);
    assert_eq!(read_line_crlf(&mut c2), GREETING);
}
