//! `getfd` / `closefd` against the release `wasm86` binary: file descriptors passed with
//! SCM_RIGHTS on the unix QMP socket (sent by Python's `socket.send_fds`), their lifetime
//! observed through pipes (a pipe's read end sees POLLHUP once every copy of its write end is
//! closed), QEMU 1.1's errors, and `FdNotSupplied` over TCP.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wasm86_tests::{bin, guest, Guard};

fn start(qmp: &str) -> Guard {
    let child = Command::new(bin("wasm86"))
        .args([
            "-S", "-m", "32", "-serial", "none", "-display", "none", "-L",
        ])
        .arg(guest("bios"))
        .args(["-qmp", qmp])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wasm86");
    Guard(child)
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ready() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what} never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sock_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wasm86-getfd-{}-{tag}.sock", std::process::id()))
}

/// The client side, in Python: every step sends one command (some with pipe write ends
/// attached), reads the reply, and records whether each pipe's write end is still open
/// somewhere (that is, in wasm86) right after the reply. The Rust test asserts on the record.
const CLIENT: &str = r#"
import json, os, select, socket, sys

path = sys.argv[1]
record = {}

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    f = s.makefile("rb")
    greeting = json.loads(f.readline())
    return s, f, greeting

def reply(f):
    while True:
        line = f.readline()
        if not line:
            return None
        v = json.loads(line)
        if "event" not in v:
            return v

def cmd(s, f, name, args=None, fds=()):
    req = {"execute": name}
    if args is not None:
        req["arguments"] = args
    data = json.dumps(req).encode()
    if fds:
        socket.send_fds(s, [data], list(fds))
    else:
        s.sendall(data)
    return reply(f)

def pipe():
    r, w = os.pipe()
    return r, w

def writer_open(r, timeout_ms=0):
    # POLLHUP on a pipe's read end: no write end is open anywhere.
    p = select.poll()
    p.register(r, select.POLLIN)
    ev = p.poll(timeout_ms)
    return not any(e & select.POLLHUP for _, e in ev)

def send_pipe(s, f, name, args):
    r, w = pipe()
    rep = cmd(s, f, name, args, fds=[w])
    os.close(w)
    return r, rep

s, f, greeting = connect()
record["greeting"] = greeting
record["caps"] = cmd(s, f, "qmp_capabilities")
names = [c["name"] for c in cmd(s, f, "query-commands")["return"]]
record["listed"] = ["getfd" in names, "closefd" in names]

record["no_fd"] = cmd(s, f, "getfd", {"fdname": "fdA"})

ra, rep = send_pipe(s, f, "getfd", {"fdname": "fdA"})
record["getfd_a"] = rep
record["a_held"] = writer_open(ra)

rb, rep = send_pipe(s, f, "getfd", {"fdname": "1bad"})
record["digit"] = rep
record["b_held"] = writer_open(rb)

rc, rep = send_pipe(s, f, "query-status", None)
record["unclaimed_reply"] = rep
record["c_held"] = writer_open(rc)

rd, rep = send_pipe(s, f, "getfd", {"fdname": "fdA"})
record["replace"] = rep
record["a_held_after_replace"] = writer_open(ra)
record["d_held"] = writer_open(rd)

re_, we = pipe()
rf, wf = pipe()
record["two_fds"] = cmd(s, f, "getfd", {"fdname": "two"}, fds=[we, wf])
os.close(we)
os.close(wf)
record["e_held"] = writer_open(re_)
record["f_held"] = writer_open(rf)

record["closefd"] = cmd(s, f, "closefd", {"fdname": "fdA"})
record["d_held_after_close"] = writer_open(rd)
record["closefd_again"] = cmd(s, f, "closefd", {"fdname": "fdA"})
record["closefd_unknown"] = cmd(s, f, "closefd", {"fdname": "nope"})
record["f_held_before_disconnect"] = writer_open(rf)

f.close()
s.close()
# The session's remaining fd ("two") is closed when the connection goes away.
record["f_held_after_disconnect"] = writer_open(rf, 5000)

s, f, _ = connect()
cmd(s, f, "qmp_capabilities")
record["other_session_closefd"] = cmd(s, f, "closefd", {"fdname": "two"})
record["quit"] = cmd(s, f, "quit")
print(json.dumps(record))
"#;

fn python_client(sock: &Path) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(sock)
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client record")
}

#[test]
fn getfd_and_closefd_over_a_unix_socket() {
    let sock = sock_path("unix");
    let _ = std::fs::remove_file(&sock);
    let mut vm = start(&format!("unix:{},server,nowait", sock.display()));
    wait_for("QMP socket", || sock.exists());
    let r = python_client(&sock);

    assert_eq!(r["greeting"]["QMP"]["version"]["qemu"]["major"], 1);
    assert_eq!(r["caps"], json!({"return": {}}));
    assert_eq!(r["listed"], json!([true, true]));

    assert_eq!(
        r["no_fd"],
        json!({"error": {"class": "FdNotSupplied",
            "desc": "No file descriptor supplied via SCM_RIGHTS", "data": {}}})
    );

    assert_eq!(r["getfd_a"], json!({"return": {}}));
    assert_eq!(r["a_held"], true, "wasm86 keeps the named fd open");

    assert_eq!(r["digit"]["error"]["class"], "InvalidParameterValue");
    assert_eq!(
        r["digit"]["error"]["data"],
        json!({"name": "fdname", "expected": "a name not starting with a digit"})
    );
    assert_eq!(r["b_held"], false, "a refused fd is closed");

    assert_eq!(r["unclaimed_reply"]["return"]["status"], "prelaunch");
    assert_eq!(r["c_held"], false, "an fd no getfd claimed is closed");

    assert_eq!(r["replace"], json!({"return": {}}));
    assert_eq!(
        r["a_held_after_replace"], false,
        "getfd of a used name closes the old fd"
    );
    assert_eq!(r["d_held"], true);

    assert_eq!(r["two_fds"], json!({"return": {}}));
    assert_eq!(r["e_held"], false, "only the last fd of a message is kept");
    assert_eq!(r["f_held"], true);

    assert_eq!(r["closefd"], json!({"return": {}}));
    assert_eq!(r["d_held_after_close"], false, "closefd closes it");
    assert_eq!(
        r["closefd_again"],
        json!({"error": {"class": "FdNotFound",
            "desc": "File descriptor named 'fdA' not found", "data": {"name": "fdA"}}})
    );
    assert_eq!(
        r["closefd_unknown"]["error"]["desc"],
        "File descriptor named 'nope' not found"
    );

    assert_eq!(r["f_held_before_disconnect"], true);
    assert_eq!(
        r["f_held_after_disconnect"], false,
        "a session's fds are closed with it"
    );
    assert_eq!(r["other_session_closefd"]["error"]["class"], "FdNotFound");
    assert_eq!(r["quit"], json!({"return": {}}));

    let t = Instant::now();
    while vm.0.try_wait().expect("wait").is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "quit did not end wasm86"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&sock);
}

#[test]
fn getfd_over_tcp_is_not_supplied() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let _vm = start(&format!("tcp:127.0.0.1:{port},server,nowait"));
    let mut stream = None;
    wait_for("QMP TCP listener", || {
        stream = TcpStream::connect(("127.0.0.1", port)).ok();
        stream.is_some()
    });
    let w = stream.expect("connected");
    w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(w.try_clone().unwrap());
    let mut w = w;
    let mut next = || -> Value {
        loop {
            let mut l = String::new();
            r.read_line(&mut l).expect("read");
            let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            if v.get("event").is_none() {
                return v;
            }
        }
    };
    assert!(next().get("QMP").is_some(), "greeting");
    w.write_all(br#"{"execute":"qmp_capabilities"}"#).unwrap();
    assert_eq!(next(), json!({"return": {}}));
    w.write_all(br#"{"execute":"getfd","arguments":{"fdname":"fd0"},"id":1}"#)
        .unwrap();
    assert_eq!(
        next(),
        json!({"error": {"class": "FdNotSupplied",
            "desc": "No file descriptor supplied via SCM_RIGHTS", "data": {}}, "id": 1})
    );
    w.write_all(br#"{"execute":"closefd","arguments":{"fdname":"fd0"}}"#)
        .unwrap();
    assert_eq!(next()["error"]["class"], "FdNotFound");
}
