//! Command-line behaviour of the real binary.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::process::Command;

use common::{bin, Bridge, TempDir};

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_options_give_one_line_and_exit_1() {
    for args in [
        &["--frobnicate"][..],
        &["--listen"],
        &["--listen", "localhost"],
        &["--qmp", "stdio"],
        &["--qmp", "tcp:127.0.0.1:notaport"],
        &["--allow-origin", "*"],
        &["--www", "a", "--www", "b"],
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(1), "{args:?}");
        assert!(stdout.is_empty(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("wasm86-bridge: "), "{stderr:?}");
    }
}

#[test]
fn help_and_version() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--qmp unix:PATH"));
    assert!(stdout.contains("--allow-origin"));
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout.trim(),
        format!("wasm86-bridge {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn address_in_use_exits_1() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let (code, _, stderr) = run(&["--listen", &addr, "--www", "."]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[test]
fn unix_socket_paths_are_handled_with_care() {
    let dir = TempDir::new("cli-unix");
    // A regular file is never removed.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "data").unwrap();
    let (code, _, stderr) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--qmp",
        &format!("unix:{}", file.display()),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");

    // A stale socket is replaced; a live one is refused.
    let sock = dir.path().join("q.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let b = Bridge::start(&["--www", ".", "--qmp", &format!("unix:{}", sock.display())]);
    assert!(std::fs::symlink_metadata(&sock)
        .unwrap()
        .file_type()
        .is_socket());
    std::os::unix::net::UnixStream::connect(&sock).expect("the new socket accepts");
    let (code, _, stderr) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--qmp",
        &format!("unix:{}", sock.display()),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("another server is listening"), "{stderr}");
    drop(b);
}

#[test]
fn missing_directories_warn_but_serve() {
    let dir = TempDir::new("cli-missing");
    let missing = dir.path().join("nope");
    let b = Bridge::start(&["--www", missing.to_str().unwrap()]);
    b.wait_stderr("is not a directory");
    assert_eq!(common::get(b.addr, "/", "").status, 404);
}
