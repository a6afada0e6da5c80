//! The native QMP transports with real clients: raw sockets for framing and bad input, the
//! Python `qemu.qmp` client and `qmp-shell`, unmodified.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wasm86_tests::{bin, guest, Guard};

fn sock_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wasm86-test-{}-{tag}.sock", std::process::id()))
}

fn start(extra: &[&str], sock: &PathBuf) -> Guard {
    let _ = std::fs::remove_file(sock);
    let child = Command::new(bin("wasm86"))
        .args(["-m", "32", "-serial", "none", "-display", "none", "-L"])
        .arg(guest("bios"))
        .arg("-qmp")
        .arg(format!("unix:{},server,nowait", sock.display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wasm86");
    let t = Instant::now();
    while !sock.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "QMP socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Guard(child)
}

struct Client {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Client {
    fn connect(sock: &PathBuf) -> Client {
        let s = UnixStream::connect(sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }
    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read");
        assert!(l.ends_with("\r\n"), "CRLF: {l:?}");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
    }
    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }
    /// Next line that is not an event.
    fn reply(&mut self) -> Value {
        loop {
            let v = self.line();
            if v.get("event").is_none() {
                return v;
            }
        }
    }
}

#[test]
fn raw_socket_framing_and_bad_input() {
    let sock = sock_path("raw");
    let _vm = start(&["-S"], &sock);
    let mut c = Client::connect(&sock);
    let g = c.line();
    assert_eq!(g["QMP"]["capabilities"], json!([]));
    // Negotiation mode: only qmp_capabilities.
    c.send(br#"{"execute": "query-status", "id": 1}"#);
    let e = c.reply();
    assert_eq!(e["error"]["class"], "CommandNotFound", "{e}");
    assert_eq!(e["id"], 1);
    // No newline, split across writes.
    c.send(br#"{"execute": "qmp_capa"#);
    std::thread::sleep(Duration::from_millis(50));
    c.send(br#"bilities"}"#);
    assert_eq!(c.reply(), json!({"return": {}}));
    // Several objects in one write, odd ids echoed verbatim.
    c.send(br#"{"execute":"query-status","id":{"a":[1,2]}}{"execute":"query-name","id":"x"}"#);
    let r1 = c.reply();
    assert_eq!(r1["id"], json!({"a": [1, 2]}));
    assert_eq!(r1["return"]["status"], "prelaunch");
    assert_eq!(c.reply(), json!({"return": {}, "id": "x"}));
    // Bad JSON: an id-less JSONParsing error, then the session still works.
    c.send(b"{\"execute\": ]\n");
    let e = c.reply();
    assert_eq!(e["error"]["class"], "JSONParsing", "{e}");
    assert!(e.get("id").is_none());
    c.send(br#"{"execute": "query-kvm", "id": 7}"#);
    assert_eq!(
        c.reply(),
        json!({"return": {"enabled": false, "present": false}, "id": 7})
    );
    // Missing argument / wrong type.
    c.send(br#"{"execute": "cpu", "id": 8}"#);
    assert_eq!(c.reply()["error"]["class"], "MissingParameter");
    c.send(br#"{"execute": "cpu", "arguments": {"index": "zero"}, "id": 9}"#);
    assert_eq!(c.reply()["error"]["class"], "InvalidParameterType");
    // quit: the reply is flushed, then the connection ends.
    c.send(br#"{"execute": "quit", "id": "bye"}"#);
    assert_eq!(c.reply(), json!({"return": {}, "id": "bye"}));
    let mut rest = Vec::new();
    let _ = c.r.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.lines().all(|l| l.contains("\"event\"")),
        "after quit: {rest:?}"
    );
}

#[test]
fn second_client_waits_and_gets_a_fresh_session() {
    let sock = sock_path("two");
    let _vm = start(&["-S"], &sock);
    let mut a = Client::connect(&sock);
    a.line();
    let mut b = Client::connect(&sock);
    b.w.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut one = [0u8; 1];
    assert!(
        b.r.get_mut().read(&mut one).is_err(),
        "second client must wait"
    );
    drop(a);
    b.w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let g = b.line();
    assert!(g.get("QMP").is_some(), "fresh greeting: {g}");
    b.send(br#"{"execute": "qmp_capabilities"}"#);
    assert_eq!(b.reply(), json!({"return": {}}));
    b.send(br#"{"execute": "quit"}"#);
    b.reply();
}

fn python_has_qemu_qmp() -> bool {
    Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn python_qemu_qmp_client() {
    assert!(
        python_has_qemu_qmp(),
        "the Python qemu.qmp package is missing: scripts/setup.sh --browser installs it"
    );
    let sock = sock_path("py");
    let _vm = start(&[], &sock);
    let script = wasm86_tests::root().join("tests/py/qmp_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&sock)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{text}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "greeting ok wasm86",
        "query-version ok",
        "events",
        "unknown command refused",
        "hmp ok",
        "quit ok",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn qmp_shell() {
    assert!(
        python_has_qemu_qmp(),
        "qmp-shell comes with the Python qemu.qmp package (scripts/setup.sh --browser)"
    );
    let sock = sock_path("shell");
    let _vm = start(&["-S", "-name", "shelltest"], &sock);
    let mut child = Command::new("qmp-shell")
        .arg(&sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qmp-shell");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"query-status\nquery-name\ncpu index=0\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"status\": \"prelaunch\""), "{text}");
    assert!(text.contains("\"name\": \"shelltest\""), "{text}");
}
