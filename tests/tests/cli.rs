//! The `wasm86` command line, as a user meets it.

use std::process::Command;
use std::time::Duration;
use wasm86_tests::{bin, run};

const T: Duration = Duration::from_secs(20);

#[test]
fn help_and_version() {
    let (code, out, _) = run(Command::new(bin("wasm86")).arg("--help"), T);
    assert_eq!(code, 0);
    for opt in ["-kernel", "-qmp", "-serial", "-no-shutdown", "-incoming"] {
        assert!(out.contains(opt), "--help lacks {opt}");
    }
    let (code, out, _) = run(Command::new(bin("wasm86")).arg("--version"), T);
    assert_eq!(code, 0);
    assert!(out.starts_with("wasm86 "), "{out}");
}

#[test]
fn bad_options_are_one_line_errors_with_status_1() {
    let cases: &[&[&str]] = &[
        &["-frobnicate"],
        &["-m"],
        &["-m", "huge"],
        &["-serial", "pty"],
        &["-qmp", "unix:/tmp/x"],
        &["-device", "e1000"],
        &["-incoming", "tcp:0:4444"],
    ];
    for args in cases {
        let (code, out, err) = run(Command::new(bin("wasm86")).args(*args), T);
        assert_eq!(code, 1, "{args:?}: status");
        assert!(out.is_empty(), "{args:?}: stdout {out:?}");
        let lines: Vec<_> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err:?}");
        assert!(lines[0].starts_with("wasm86: -"), "{args:?}: {err:?}");
    }
}
