//! The browser page end to end: `tests/browser/run.mjs` drives one headless Chromium session
//! (playwright-core, `/usr/bin/chromium`) against a `wasm86-bridge` started here on a free
//! loopback port, with a unix QMP endpoint for the `qemu.qmp` check.
//!
//! Needs `target/release/wasm86-bridge`, `pkg/` (`scripts/build-pkg.sh`), the guest images
//! and `tests/browser/node_modules` (`scripts/setup.sh --browser`). The checks that need the
//! guest to boot Linux run only with `WASM86_BOOT_TESTS=1`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use wasm86_tests::{bin, guest, root, run, Guard};

fn require(path: &std::path::Path, how: &str) {
    assert!(path.exists(), "{} is missing: {how}", path.display());
}

#[test]
fn browser_page_end_to_end() {
    let root = root();
    require(
        &root.join("pkg/wasm86_web_bg.wasm"),
        "build it with scripts/build-pkg.sh",
    );
    require(
        &root.join("tests/browser/node_modules/playwright-core"),
        "install it with scripts/setup.sh --browser",
    );
    require(
        &root.join("www/node_modules/@xterm/xterm"),
        "install it with scripts/setup.sh",
    );
    require(
        std::path::Path::new("/usr/bin/chromium"),
        "install it with scripts/setup.sh --browser",
    );
    guest("bios/bios.bin");
    guest("linux/bzImage");

    let dir = std::env::temp_dir().join(format!("wasm86-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sock = dir.join("qmp.sock");
    let mut child = Command::new(bin("wasm86-bridge"))
        .current_dir(&root)
        .args(["--listen", "127.0.0.1:0", "--www", "www", "--pkg", "pkg"])
        .args(["--images", "guest-images"])
        .arg("--qmp")
        .arg(format!("unix:{}", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wasm86-bridge");
    let stdout = child.stdout.take().expect("bridge stdout");
    let _bridge = Guard(child);

    // "listening on http://127.0.0.1:PORT" comes first; the rest is drained in the background.
    let (tx, rx) = mpsc::channel();
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
