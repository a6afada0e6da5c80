//! The browser page end to end: `tests/browser/run.mjs` drives one headless Chromium session
//! (playwright-core, `/usr/bin/chromium`) against a `wasm86-bridge` started here on a free
//! loopback port, with a unix QMP endpoint for the `qemu.qmp` check.
//!
//! Needs `target/release/wasm86-bridge`, `pkg/` (`scripts/build-pkg.sh`), the guest images
//! and `tests/browser/node_modules` (`scripts/setup.sh --browser`). The checks that need the
//! guest to boot Linux run only with `WASM86_BOOT_TESTS=1`.

use std::io::Write;
use std::process::Command;
use std::time::Duration;
use wasm86_tests::{guest, require_browser, root, run, Bridge};

#[test]
fn browser_page_end_to_end() {
    let root = root();
    require_browser();
    guest("bios/bios.bin");
    guest("linux/bzImage");

    let dir = std::env::temp_dir().join(format!("wasm86-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sock = dir.join("qmp.sock");
    let qmp = format!("unix:{}", sock.display());
    let bridge = Bridge::start(["--qmp", qmp.as_str()]);
    let url = bridge.url.clone();

    let boot = std::env::var("WASM86_BOOT_TESTS").as_deref() == Ok("1");
    let timeout = Duration::from_secs(if boot { 1200 } else { 300 });
    let (code, out, err) = run(
        Command::new("node")
            .arg(root.join("tests/browser/run.mjs"))
            .current_dir(root.join("tests/browser"))
            .env("WASM86_URL", &url)
            .env("WASM86_QMP_SOCK", &sock)
            .env("WASM86_BOOT_TESTS", if boot { "1" } else { "0" }),
        timeout,
    );
    println!("{out}");
    eprintln!("{err}");
    let _ = std::fs::remove_dir_all(&dir);
    if !boot {
        // Straight to stderr, past the test harness's capture, so that it is always seen.
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: the browser boot checks (GUEST-READY, shell answer, canvas keyboard) were NOT \
             run; set WASM86_BOOT_TESTS=1 to run them"
        );
    }
    assert_eq!(code, 0, "browser checks failed:\n{out}\n{err}");
    assert!(out.contains(" passed, 0 failed"), "no summary line:\n{out}");
}
