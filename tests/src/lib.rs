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
