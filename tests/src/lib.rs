//! Helpers for wasm86's integration tests: locating the release binaries, the guest images and
//! the shared test data, and running processes with timeouts.

#![deny(missing_docs)]

pub mod bootimg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A release binary of the workspace; panics with instructions when it is not built.
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let p = target.join("release").join(name);
    assert!(
        p.exists(),
        "{} is missing: build it first with `cargo build --release` (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A file under `guest-images/`; panics with instructions when the images are not built.
pub fn guest(rel: &str) -> PathBuf {
    let p = root().join("guest-images").join(rel);
    assert!(
        p.exists(),
        "{} is missing: build the guest images with scripts/build-guests.sh",
        p.display()
    );
    p
}

/// Runs a command to completion with a timeout; returns (status code, stdout, stderr).
pub fn run(cmd: &mut Command, timeout: Duration) -> (i32, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (
                status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts that what the browser tests need is there: `pkg/`, playwright-core, xterm.js and
/// Chromium, each with the command that provides it.
pub fn require_browser() {
    let root = root();
    for (path, how) in [
        (
            root.join("pkg/wasm86_web_bg.wasm"),
            "build it with scripts/build-pkg.sh",
        ),
        (
            root.join("tests/browser/node_modules/playwright-core"),
            "install it with scripts/setup.sh --browser",
        ),
        (
            root.join("www/node_modules/@xterm/xterm"),
            "install it with scripts/setup.sh",
        ),
        (
            PathBuf::from("/usr/bin/chromium"),
            "install it with scripts/setup.sh --browser",
        ),
    ] {
        assert!(path.exists(), "{} is missing: {how}", path.display());
    }
}

/// A `wasm86-bridge` serving `www/`, `pkg/` and `guest-images/` on a free loopback port,
/// stopped when dropped.
pub struct Bridge {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _child: Guard,
}

impl Bridge {
    /// Starts the bridge with `extra` arguments after the serving ones and waits for its
    /// "listening on" line (the rest of its output is drained in the background).
    pub fn start<I, S>(extra: I) -> Bridge
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(bin("wasm86-bridge"))
            .current_dir(root())
            .args(["--listen", "127.0.0.1:0", "--www", "www", "--pkg", "pkg"])
            .args(["--images", "guest-images"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wasm86-bridge");
        let stdout = child.stdout.take().expect("bridge stdout");
        let child = Guard(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the bridge did not start");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the bridge: {line:?}"))
            .to_string();
        Bridge { url, _child: child }
    }
}
