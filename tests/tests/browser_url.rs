//! A disk image by URL in the browser, read on demand with HTTP range requests (the full tier's
//! acceptance test of lazy drives): `tests/browser/url_disk.mjs` opens the page with
//! `?guest=hd&lazy=1` in headless Chromium against a `wasm86-bridge` started here with
//! `--access-log`, waits for Linux, booted by SeaBIOS from `guest-images/linux/linux-hd.img`, to
//! print GUEST-READY on serial, and then checks from the bridge's record that under 40% of the
//! image was sent and that no block was sent twice.
//!
//! Needs `target/release/wasm86-bridge`, `pkg/` (`scripts/build-pkg.sh`), the guest images and
//! `tests/browser/node_modules` (`scripts/setup.sh --browser`). Takes a few minutes: the disk
//! boot runs in the browser's wasm.

use std::process::Command;
use std::time::{Duration, Instant};
use wasm86_tests::{guest, require_browser, root, run, Bridge};

#[test]
fn disk_by_url_boots_with_range_requests() {
    let root = root();
    require_browser();
    guest("bios/bios.bin");
    let image = guest("linux/linux-hd.img");

    let dir = std::env::temp_dir().join(format!("wasm86-browser-url-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("access.log");
    let _ = std::fs::remove_file(&log);
    let bridge = Bridge::start([std::ffi::OsStr::new("--access-log"), log.as_os_str()]);
    let url = bridge.url.clone();

    let start = Instant::now();
    let (code, out, err) = run(
        Command::new("node")
            .arg(root.join("tests/browser/url_disk.mjs"))
            .current_dir(root.join("tests/browser"))
            .env("WASM86_URL", &url)
            .env("WASM86_ACCESS_LOG", &log)
            .env("WASM86_IMAGE", &image),
        Duration::from_secs(900),
    );
    println!("{out}");
    eprintln!("{err}");
    println!("url_disk.mjs took {:.1} s", start.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "checks failed:\n{out}\n{err}");
    assert!(out.contains(" passed, 0 failed"), "no summary line:\n{out}");
    assert!(
        out.contains("GUEST-READY after"),
        "the guest did not boot:\n{out}"
    );
}
