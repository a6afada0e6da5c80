//! Video modes set through SeaBIOS's VGA BIOS by small boot floppies built in-tree
//! (`wasm86_tests::bootimg`): each program draws a deterministic picture, the test takes a
//! `screendump` and compares its SHA-256 with `tests/golden/vga_boot.txt`, and checks the
//! picture's structure pixel by pixel. Re-record the hashes with `UPDATE_SNAPSHOT=1` (the PPMs
//! are then kept in the temporary directory for viewing). Also: SeaBIOS's banner and boot
//! messages read from the text screen with `info screen`.

use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wasm86_tests::bootimg::{
    halt_with_pending_interrupt, sha256_hex, GuestVm, Ppm, VideoTest, VBE_MODE_ADDR,
};

/// The program has finished drawing within this much host time.
const DONE: Duration = Duration::from_secs(120);

fn golden_path() -> PathBuf {
    wasm86_tests::root().join("tests/golden/vga_boot.txt")
}

/// Serializes updates of the golden file between the tests of this binary.
static GOLDEN: Mutex<()> = Mutex::new(());

fn golden() -> HashMap<String, String> {
    let text = std::fs::read_to_string(golden_path()).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

fn updating() -> bool {
    std::env::var_os("UPDATE_SNAPSHOT").is_some_and(|v| v == "1")
}

/// Compares `hash` with the golden entry `key`, or records it when `UPDATE_SNAPSHOT=1` (and
/// keeps the PPM next to the temporary directory for viewing).
fn check_golden(key: &str, hash: &str, ppm: &[u8]) {
    let _lock = GOLDEN.lock().unwrap_or_else(|e| e.into_inner());
    if updating() {
        let keep = std::env::temp_dir().join(format!("wasm86-golden-{key}.ppm"));
        std::fs::write(&keep, ppm).expect("keep the PPM");
        eprintln!("{key}: {hash} (picture in {})", keep.display());
        let mut entries: Vec<(String, String)> = golden().into_iter().collect();
        entries.retain(|(k, _)| k != key);
        entries.push((key.to_string(), hash.to_string()));
        entries.sort();
        let mut text = String::from(
            "# SHA-256 of wasm86's screendump (binary PPM) for each picture of tests/vga_boot.rs.\n\
             # Re-record: UPDATE_SNAPSHOT=1 cargo test -p wasm86-tests --release --test vga_boot\n",
        );
        for (k, h) in entries {
            text.push_str(&format!("{k} {h}\n"));
        }
        std::fs::create_dir_all(golden_path().parent().unwrap()).unwrap();
        std::fs::write(golden_path(), text).expect("write the golden file");
        return;
    }
    let want = golden()
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("no golden hash for {key}: record it with UPDATE_SNAPSHOT=1"));
    if want != hash {
        let keep = std::env::temp_dir().join(format!("wasm86-failed-{key}.ppm"));
        let _ = std::fs::write(&keep, ppm);
        panic!(
            "{key}: screendump hash {hash}, golden {want}; the picture is in {}",
            keep.display()
        );
    }
}

/// Boots the test's floppy and waits for the done byte.
fn boot(t: VideoTest) -> GuestVm {
    let img = t.image().expect("assemble the boot image");
    let vm = GuestVm::start(
        t.name(),
        &[("boot.img", &img)],
        "none",
        &["-fda", "{dir}/boot.img", "-boot", "a", "-m", "32"],
    );
    let waited = vm.wait_done(DONE);
    eprintln!("{}: done after {:.1} s", t.name(), waited.as_secs_f64());
    vm
}

/// Boots, waits, takes one screendump, checks its size and the golden hash.
fn dump(t: VideoTest) -> (GuestVm, Ppm) {
    let mut vm = boot(t);
    let path = vm.dir.join("screen.ppm");
    let (data, ppm) = vm.qmp.screendump(&path);
    let (w, h) = t.screen_size();
    assert_eq!((ppm.width, ppm.height), (w, h), "{}", t.name());
    let header = format!("P6\n{w} {h}\n255\n");
    assert_eq!(&data[..header.len()], header.as_bytes());
    assert_eq!(data.len(), header.len() + w * h * 3);
    check_golden(t.name(), &sha256_hex(&data), &data);
    (vm, ppm)
}

/// Asserts that the colour of every pixel is a function of `index(x, y)` and returns the
/// palette seen (index to RGB).
fn palette_of(ppm: &Ppm, index: impl Fn(usize, usize) -> usize) -> HashMap<usize, [u8; 3]> {
    let mut seen: HashMap<usize, [u8; 3]> = HashMap::new();
    for y in 0..ppm.height {
        for x in 0..ppm.width {
            let c = ppm.pixel(x, y).unwrap();
            let i = index(x, y);
            let first = *seen.entry(i).or_insert(c);
            assert_eq!(first, c, "pixel ({x}, {y}) of colour index {i}");
        }
    }
    seen
}

#[test]
fn text_80x25_with_cursor() {
    let t = VideoTest::Text80x25;
    let mut vm = boot(t);
    // The text as the BIOS left it: the cell pattern and the teletype line.
    let screen = vm.qmp.hmp("info screen");
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines.len() >= 25, "{screen}");
    assert!(
        lines[20].contains("wasm86 text mode 80x25"),
        "row 20: {:?}",
        lines[20]
    );
    // Cell 65 is 'A' (cells hold their own number as the character).
    assert_eq!(lines[0].chars().nth(65), Some('A'), "row 0: {:?}", lines[0]);
    let regs = vm.qmp.hmp("info registers");
    assert!(regs.contains("HLT=1"), "{regs}");

    // The cursor blinks with the virtual clock: collect both phases.
    let (w, h) = t.screen_size();
    let (col, row) = t.cursor().unwrap();
    let (cw, ch) = (w / 80, h / 25);
    let path = vm.dir.join("screen.ppm");
    let mut pictures: Vec<(String, Vec<u8>, Ppm)> = Vec::new();
    let start = Instant::now();
    while pictures.len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the cursor never blinked: {} distinct picture(s)",
            pictures.len()
        );
        let (data, ppm) = vm.qmp.screendump(&path);
        assert_eq!((ppm.width, ppm.height), (w, h));
        let hash = sha256_hex(&data);
        if pictures.iter().all(|(h, _, _)| *h != hash) {
            pictures.push((hash, data, ppm));
        }
        assert!(pictures.len() <= 2, "more than two distinct pictures");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The two pictures differ only inside the cursor cell, in its bottom scanlines.
    let (a, b) = (&pictures[0].2, &pictures[1].2);
    let mut diff = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if a.pixel(x, y) != b.pixel(x, y) {
                diff.push((x, y));
            }
        }
    }
    assert!(!diff.is_empty());
    for &(x, y) in &diff {
        assert!(
            x / cw == col && y / ch == row && y % ch >= ch / 2,
            "pixel ({x}, {y}) differs outside the cursor's lines"
        );
    }
    // The phase with the cursor shows the cell's foreground colour on the cursor lines:
    // cell 12*80+40 = 1000 has attribute 1000/8 = 0x7D, foreground 0xD (light magenta).
    let (cx, cy) = diff[0];
    let magenta = [0xFF, 0x55, 0xFF];
    let (on, off) = if a.pixel(cx, cy) == Some(magenta) {
        (0, 1)
    } else {
        (1, 0)
    };
    assert_eq!(pictures[on].2.pixel(cx, cy), Some(magenta));
    // Background 7: light grey.
    assert_eq!(pictures[off].2.pixel(cx, cy), Some([0xAA, 0xAA, 0xAA]));
    for (i, phase) in [(on, "cursor-on"), (off, "cursor-off")] {
        check_golden(
            &format!("{}.{phase}", t.name()),
            &pictures[i].0,
            &pictures[i].1,
        );
    }
}

#[test]
fn vga_mode_12h_640x480x16() {
    let (_vm, ppm) = dump(VideoTest::Vga12h);
    let pal = palette_of(&ppm, |x, y| (x / 8 + y / 16) % 16);
    assert_eq!(pal.len(), 16);
    // The default EGA palette: 0 black, 1 blue, 4 red, 15 white.
    assert_eq!(pal[&0], [0, 0, 0]);
    assert_eq!(pal[&1], [0, 0, 0xAA]);
    assert_eq!(pal[&4], [0xAA, 0, 0]);
    assert_eq!(pal[&15], [0xFF, 0xFF, 0xFF]);
}

#[test]
fn vga_mode_13h_320x200x256() {
    let (_vm, ppm) = dump(VideoTest::Vga13h);
    let pal = palette_of(&ppm, |x, y| (x ^ y) & 0xFF);
    assert_eq!(pal.len(), 256);
    assert_eq!(pal[&0], [0, 0, 0]);
    assert_eq!(pal[&1], [0, 0, 0xAA]);
    assert_eq!(pal[&15], [0xFF, 0xFF, 0xFF]);
    // The grey ramp of the default 256-colour palette: 16..31 rise from black to white.
    assert_eq!(pal[&31], [0xFF, 0xFF, 0xFF]);
    assert!(pal[&20][0] < pal[&24][0]);
}

#[test]
fn vga_mode_x_320x240x256() {
    let (_vm, ppm) = dump(VideoTest::ModeX);
    let pal = palette_of(&ppm, |x, y| ((x ^ y) + y / 4) & 0xFF);
    assert_eq!(pal.len(), 256);
    assert_eq!(pal[&0], [0, 0, 0]);
    assert_eq!(pal[&15], [0xFF, 0xFF, 0xFF]);
}

#[test]
fn vbe_1024x768x32_linear_frame_buffer() {
    let (mut vm, ppm) = dump(VideoTest::Vbe1024x768x32);
    // The mode the program found in the VGA BIOS's list (0x118 is 1024×768×24 there).
    let mode = vm.qmp.hmp(&format!("xp /1xh {VBE_MODE_ADDR:#x}"));
    assert!(mode.contains(": 0x0144"), "{mode}");
    for y in 0..768 {
        for x in 0..1024 {
            let want = [(x & 0xFF) as u8, (y & 0xFF) as u8, ((x ^ y) & 0xFF) as u8];
            assert_eq!(ppm.pixel(x, y), Some(want), "pixel ({x}, {y})");
        }
    }
}

#[test]
fn seabios_banner_and_boot_messages() {
    let mut vm = GuestVm::start("banner", &[], "none", &["-m", "32"]);
    let start = Instant::now();
    let screen = loop {
        let s = vm.qmp.hmp("info screen");
        if s.contains("No bootable device") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no 'No bootable device' on the screen; it shows:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "banner: 'No bootable device' after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let lines: Vec<&str> = screen.lines().collect();
    let banner = lines
        .iter()
        .find(|l| l.starts_with("SeaBIOS (version"))
        .unwrap_or_else(|| panic!("no SeaBIOS banner:\n{screen}"));
    assert!(banner.contains("1.16.2"), "{banner}");
    // With no media every device of the default order (cad) is tried and fails.
    for dev in ["Booting from Floppy...", "Booting from Hard Disk..."] {
        assert!(lines.iter().any(|l| l.starts_with(dev)), "{dev}:\n{screen}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("No bootable device.  Retrying in 60 seconds.")),
        "{screen}"
    );
    // The same messages went to SeaBIOS's log on the debug console.
    let log = String::from_utf8_lossy(&vm.debugcon()).into_owned();
    assert!(log.contains("SeaBIOS (version"), "{log}");
    assert!(log.contains("No bootable device."), "{log}");
}

/// `cli; hlt` with the timer's interrupt request pending: the CPU stays halted (as on real
/// hardware), and the VM must keep answering QMP and keep its virtual clock going.
#[test]
fn cli_hlt_with_a_pending_interrupt_keeps_qmp_responsive() {
    let img = halt_with_pending_interrupt().expect("assemble");
    let mut vm = GuestVm::start(
        "clihlt",
        &[("boot.img", &img)],
        "none",
        &["-fda", "{dir}/boot.img", "-boot", "a", "-m", "32"],
    );
    vm.wait_done(DONE);
    for _ in 0..3 {
        let r = vm
            .qmp
            .cmd_within(json!({"execute": "query-status"}), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no QMP reply while the guest halts with IF=0: {e}"));
        assert_eq!(r["return"]["status"], "running", "{r}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let regs = vm.qmp.hmp("info registers");
    assert!(regs.contains("HLT=1"), "{regs}");
}
