//! Boots from each removable medium in the browser (full tier): `tests/browser/media.mjs` opens
//! the page in headless Chromium against a `wasm86-bridge` started here and
//! - boots `guest-images/linux/linux.iso` from ide1-cd0 (`?guest=cdrom`, boot order `d`:
//!   SeaBIOS El Torito -> isolinux -> Linux) to GUEST-READY on serial, gets 42 from
//!   `echo $((6*7))` and finds /dev/sr0 holding the disc;
//! - boots `guest-images/memtest/memtest.img` from floppy0 (`?guest=floppy&mem=16`, boot order
//!   `a`) and reads memtest86+'s screen through QMP `info screen` until it reaches test #2 with
//!   0 errors.
//!
//! About 1.5 minutes (both guests run in the browser's wasm). Needs
//! `target/release/wasm86-bridge`, `pkg/` (`scripts/build-pkg.sh`), the guest images and
//! `tests/browser/node_modules` (`scripts/setup.sh --browser`).

use std::process::Command;
use std::time::{Duration, Instant};
use wasm86_tests::{guest, require_browser, root, run, Bridge};

#[test]
fn cdrom_and_floppy_boot_in_the_browser() {
    let root = root();
    require_browser();
    guest("bios/bios.bin");
    guest("linux/linux.iso");
    guest("memtest/memtest.img");

    let bridge = Bridge::start(std::iter::empty::<&str>());
    let url = bridge.url.clone();

    let start = Instant::now();
    let (code, out, err) = run(
        Command::new("node")
            .arg(root.join("tests/browser/media.mjs"))
            .current_dir(root.join("tests/browser"))
            .env("WASM86_URL", &url),
        Duration::from_secs(1500),
    );
    println!("{out}");
    eprintln!("{err}");
    println!("media.mjs took {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(code, 0, "checks failed:\n{out}\n{err}");
    assert!(
        out.contains("6 passed, 0 failed"),
        "not all checks ran:\n{out}"
    );
    assert!(
        out.contains("GUEST-READY ") && out.contains("memtest86+ at Test #"),
        "a guest did not get there:\n{out}"
    );
}
