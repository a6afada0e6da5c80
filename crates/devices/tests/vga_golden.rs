//! Golden-image tests of the VGA: each test programs a mode through the registers as a BIOS
//! would, draws a known pattern through the guest-visible memory paths and compares the
//! SHA-256 of `screendump_ppm` with `tests/golden/vga.txt`.
//!
//! `UPDATE_SNAPSHOT=1 cargo test -p wasm86-devices --test vga_golden` re-records the hashes;
//! `VGA_DUMP_DIR=/tmp/x` also writes each PPM there for inspection.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasm86_devices::vga::*;

static GOLDEN_LOCK: Mutex<()> = Mutex::new(());

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/vga.txt")
}

fn read_golden() -> BTreeMap<String, String> {
    std::fs::read_to_string(golden_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn check_golden(name: &str, ppm: &[u8]) {
    let hash: String = Sha256::digest(ppm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if let Ok(dir) = std::env::var("VGA_DUMP_DIR") {
        std::fs::create_dir_all(&dir).expect("dump dir");
        std::fs::write(PathBuf::from(dir).join(format!("{name}.ppm")), ppm).expect("dump");
    }
    let _guard = GOLDEN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut golden = read_golden();
    if std::env::var("UPDATE_SNAPSHOT").is_ok_and(|v| v == "1") {
        golden.insert(name.to_string(), hash);
        let mut text =
            String::from("# VGA screendump SHA-256 hashes (UPDATE_SNAPSHOT=1 re-records)\n");
        for (k, v) in &golden {
            text.push_str(&format!("{k} {v}\n"));
        }
        std::fs::create_dir_all(golden_path().parent().unwrap()).unwrap();
        std::fs::write(golden_path(), text).expect("write golden file");
        return;
    }
    let want = golden
        .get(name)
        .unwrap_or_else(|| panic!("no golden hash for {name}; run with UPDATE_SNAPSHOT=1"));
    assert_eq!(&hash, want, "screendump of {name} changed");
}

/// Register set of one mode: misc output, sequencer 1–4, CRTC 0–0x18, GC 0–8, AR 0–0x14.
struct ModeRegs {
    misc: u8,
    seq: [u8; 4],
    crtc: [u8; 25],
    gc: [u8; 9],
    ar: [u8; 21],
}

/// The 16-colour text/planar attribute palette (EGA-compatible DAC indices).
const AR_EGA: [u8; 16] = [
    0, 1, 2, 3, 4, 5, 0x14, 7, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F,
];

fn ar_regs(palette: [u8; 16], mode: u8, plane_enable: u8, panning: u8) -> [u8; 21] {
    let mut a = [0u8; 21];
    a[..16].copy_from_slice(&palette);
    a[16] = mode;
    a[17] = 0;
    a[18] = plane_enable;
    a[19] = panning;
    a[20] = 0;
    a
}

fn mode_03() -> ModeRegs {
    ModeRegs {
        misc: 0x67,
        seq: [0x00, 0x03, 0x00, 0x02],
        crtc: [
            0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00,
            0x00, 0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF,
        ],
        gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF],
        ar: ar_regs(AR_EGA, 0x0C, 0x0F, 0x08),
    }
}

fn mode_12() -> ModeRegs {
    ModeRegs {
        misc: 0xE3,
        seq: [0x01, 0x0F, 0x00, 0x06],
        crtc: [
            0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0x0B, 0x3E, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xEA, 0x8C, 0xDF, 0x28, 0x00, 0xE7, 0x04, 0xE3, 0xFF,
        ],
        gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0F, 0xFF],
        ar: ar_regs(AR_EGA, 0x01, 0x0F, 0x00),
    }
}

fn mode_13() -> ModeRegs {
    let ident: [u8; 16] = std::array::from_fn(|i| i as u8);
    ModeRegs {
        misc: 0x63,
        seq: [0x01, 0x0F, 0x00, 0x0E],
        crtc: [
            0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0xBF, 0x1F, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x40, 0x96, 0xB9, 0xA3, 0xFF,
        ],
        gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0F, 0xFF],
        ar: ar_regs(ident, 0x41, 0x0F, 0x00),
    }
}

/// Unchained 320×240 256-colour mode ("mode X"): mode 13h with chain-4 off, byte addressing
/// and 480-line (double-scanned 240) timing.
fn mode_x() -> ModeRegs {
    let mut m = mode_13();
    m.misc = 0xE3;
    m.seq[3] = 0x06;
    m.crtc[0x06] = 0x0D;
    m.crtc[0x07] = 0x3E;
    m.crtc[0x09] = 0x41;
    m.crtc[0x10] = 0xEA;
    m.crtc[0x11] = 0xAC;
    m.crtc[0x12] = 0xDF;
    m.crtc[0x14] = 0x00;
    m.crtc[0x15] = 0xE7;
    m.crtc[0x16] = 0x06;
    m.crtc[0x17] = 0xE3;
    m
}

fn out8(v: &mut Vga, port: u16, x: u8) {
    v.io_write(port, 1, u32::from(x));
}

fn outw(v: &mut Vga, port: u16, index: u8, x: u8) {
    v.io_write(port, 2, u32::from(index) | u32::from(x) << 8);
}

/// Programs a mode the way a BIOS mode set does.
fn set_mode(v: &mut Vga, m: &ModeRegs) {
    outw(v, PORT_SEQ_INDEX, 0, 0x01); // synchronous reset
    out8(v, PORT_MISC_WRITE, m.misc);
    for (i, &x) in m.seq.iter().enumerate() {
        outw(v, PORT_SEQ_INDEX, i as u8 + 1, x);
    }
    outw(v, PORT_SEQ_INDEX, 0, 0x03);
    outw(v, PORT_CRTC_INDEX_COLOR, 0x11, m.crtc[0x11] & 0x7F); // unprotect CR0–7
    for (i, &x) in m.crtc.iter().enumerate() {
        outw(v, PORT_CRTC_INDEX_COLOR, i as u8, x);
    }
    for (i, &x) in m.gc.iter().enumerate() {
        outw(v, PORT_GC_INDEX, i as u8, x);
    }
    v.io_read(PORT_STATUS1_COLOR, 1, 0);
    for (i, &x) in m.ar.iter().enumerate() {
        out8(v, PORT_AR_INDEX, i as u8);
        out8(v, PORT_AR_INDEX, x);
    }
    out8(v, PORT_AR_INDEX, 0x20); // palette address source: display on
}

/// Loads the 64-colour EGA palette into DAC entries 0–63.
fn load_ega_dac(v: &mut Vga) {
    out8(v, PORT_PEL_MASK, 0xFF);
    out8(v, PORT_DAC_WRITE_INDEX, 0);
    for i in 0..64u8 {
        let c = |hi: u8, lo: u8| ((i >> hi) & 1) * 0x2A + ((i >> lo) & 1) * 0x15;
        // Bits 2/5 red, 1/4 green, 0/3 blue (primary / secondary intensity).
        out8(v, PORT_DAC_DATA, c(2, 5));
        out8(v, PORT_DAC_DATA, c(1, 4));
        out8(v, PORT_DAC_DATA, c(0, 3));
    }
}

/// A 5×7 pixel font for the characters the text test shows, drawn at rows 4–10 of a 16-line
/// cell (columns 1–5).
const FONT5X7: &[(u8, [&str; 7])] = &[
    (
        b'A',
        [
            " ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #",
        ],
    ),
    (
        b'D',
        [
            "#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### ",
        ],
    ),
    (
        b'E',
        [
            "#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####",
        ],
    ),
    (
        b'G',
        [
            " ####", "#    ", "#    ", "#  ##", "#   #", "#   #", " ### ",
        ],
    ),
    (
        b'M',
        [
            "#   #", "## ##", "# # #", "#   #", "#   #", "#   #", "#   #",
        ],
    ),
    (
        b'O',
        [
            " ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### ",
        ],
    ),
    (
        b'S',
        [
            " ####", "#    ", "#    ", " ### ", "    #", "    #", "#### ",
        ],
    ),
    (
        b'T',
        [
            "#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ",
        ],
    ),
    (
        b'V',
        [
            "#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  ",
        ],
    ),
    (
        b'W',
        [
            "#   #", "#   #", "#   #", "# # #", "# # #", "## ##", "#   #",
        ],
    ),
    (
        b'X',
        [
            "#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #",
        ],
    ),
    (
        b'6',
        [
            " ### ", "#    ", "#    ", "#### ", "#   #", "#   #", " ### ",
        ],
    ),
    (
        b'8',
        [
            " ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### ",
        ],
    ),
];

fn glyph(ch: u8) -> [u8; 32] {
    let mut g = [0u8; 32];
    match ch {
        0xDB => g[..16].fill(0xFF), // full block
        0xC4 => g[7] = 0xFF,        // horizontal line (line graphics)
        0xB3 => g[..16].fill(0x18), // vertical line
        0xB1 => (0..16).for_each(|r| g[r] = if r % 2 == 0 { 0xAA } else { 0x55 }), // medium shade
        _ => {
            if let Some((_, rows)) = FONT5X7.iter().find(|(c, _)| *c == ch) {
                for (r, row) in rows.iter().enumerate() {
                    g[4 + r] = row.bytes().enumerate().fold(0, |acc, (i, b)| {
                        if b == b'#' {
                            acc | (0x40 >> i)
                        } else {
                            acc
                        }
                    });
                }
            }
        }
    }
    g
}

/// Loads the font into plane 2 through the planar path, as a BIOS does.
fn load_font(v: &mut Vga) {
    outw(v, PORT_SEQ_INDEX, 2, 0x04);
    outw(v, PORT_SEQ_INDEX, 4, 0x07);
    outw(v, PORT_GC_INDEX, 4, 0x02);
    outw(v, PORT_GC_INDEX, 5, 0x00);
    outw(v, PORT_GC_INDEX, 6, 0x04);
    for ch in 0..=255u8 {
        for (r, &b) in glyph(ch).iter().enumerate() {
            v.mem_write(u32::from(ch) * 32 + r as u32, b);
        }
    }
    outw(v, PORT_SEQ_INDEX, 2, 0x03);
    outw(v, PORT_SEQ_INDEX, 4, 0x02);
    outw(v, PORT_GC_INDEX, 4, 0x00);
    outw(v, PORT_GC_INDEX, 5, 0x10);
    outw(v, PORT_GC_INDEX, 6, 0x0E);
}

fn put_text(v: &mut Vga, row: u32, col: u32, s: &[u8], attr: u8) {
    for (i, &c) in s.iter().enumerate() {
        let a = 0x1_8000 + (row * 80 + col + i as u32) * 2;
        v.mem_write(a, c);
        v.mem_write(a + 1, attr);
    }
}

#[test]
fn text_80x25_with_cursor() {
    let mut v = Vga::new();
    set_mode(&mut v, &mode_03());
    load_ega_dac(&mut v);
    load_font(&mut v);
    // Clear to grey on blue.
    for i in 0..80 * 25 {
        v.mem_write(0x1_8000 + 2 * i, b' ');
        v.mem_write(0x1_8000 + 2 * i + 1, 0x17);
    }
    put_text(&mut v, 1, 2, b"WASM86 VGA TEXT MODE", 0x1E);
    put_text(&mut v, 3, 2, &[0xC4; 30], 0x1F);
    put_text(&mut v, 5, 2, b"DOS", 0x4F);
    put_text(&mut v, 5, 6, b"MEGA", 0xA0);
    put_text(&mut v, 5, 11, b"SEAM", 0x8E); // blinking (visible at t=0)
    for c in 0..16u8 {
        put_text(
            &mut v,
            7,
            2 + u32::from(c) * 2,
            &[0xDB, 0xB1],
            c | (15 - c) << 4 & 0x70,
        );
    }
    for r in 9..24 {
        put_text(&mut v, r, 0, &[0xB3], 0x1B);
        put_text(&mut v, r, 79, &[0xB3], 0x1B);
    }
    // Cursor at row 5, column 16, lines 13–14 (the BIOS default shape).
    let cursor = 5 * 80 + 16u16;
    outw(&mut v, PORT_CRTC_INDEX_COLOR, 0x0E, (cursor >> 8) as u8);
    outw(&mut v, PORT_CRTC_INDEX_COLOR, 0x0F, cursor as u8);
    assert_eq!(
        v.mode_info(),
        ModeInfo {
            width: 720,
            height: 400,
            text: true,
            bpp: 4,
            cols: 80,
            rows: 25
        }
    );
    let lines = v.text_lines().expect("text mode");
    assert_eq!(lines.len(), 25);
    assert_eq!(lines[1], "  WASM86 VGA TEXT MODE");
    assert_eq!(lines[5], "  DOS MEGA SEAM");
    assert!(lines[3].starts_with("  ─────"));
    let ppm = v.screendump_ppm(0);
    assert!(ppm.starts_with(b"P6\n720 400\n255\n"));
    // Cursor pixels: bright white (attribute 0x1F of no character: fg grey 7) on lines 13-14.
    let px = |ppm: &[u8], x: usize, y: usize| {
        let o = 15 + (y * 720 + x) * 3;
        [ppm[o], ppm[o + 1], ppm[o + 2]]
    };
    assert_eq!(
        px(&ppm, 16 * 9 + 3, 5 * 16 + 13),
        [0xAA, 0xAA, 0xAA],
        "cursor line in fg colour"
    );
    assert_eq!(
        px(&ppm, 16 * 9 + 3, 5 * 16 + 12),
        [0, 0, 0xAA],
        "above the cursor: background"
    );
    // Blink phase off hides blinking text and the cursor.
    let later = v.screendump_ppm(FRAME_NS * 48);
    assert_eq!(px(&later, 16 * 9 + 3, 5 * 16 + 13), [0, 0, 0xAA]);
    assert_ne!(ppm, later);
    check_golden("text80x25_cursor", &ppm);
}

#[test]
fn mode_12h_planar_16_colours() {
    let mut v = Vga::new();
    set_mode(&mut v, &mode_12());
    load_ega_dac(&mut v);
    // 16 vertical bars with write mode 2 (bars 40 pixels = 5 bytes wide), rows 0–399.
    outw(&mut v, PORT_GC_INDEX, 5, 0x02);
    for y in 0..400u32 {
        for bx in 0..80u32 {
            v.mem_read(y * 80 + bx);
            v.mem_write(y * 80 + bx, (bx / 5) as u8);
        }
    }
    // Diagonal lines with write mode 0, set/reset colour 15 and a one-bit mask.
    outw(&mut v, PORT_GC_INDEX, 5, 0x00);
    outw(&mut v, PORT_GC_INDEX, 0, 0x0F);
    outw(&mut v, PORT_GC_INDEX, 1, 0x0F);
    for y in 0..480u32 {
        for x in [y, 639 - y] {
            outw(&mut v, PORT_GC_INDEX, 8, 0x80 >> (x % 8));
            let a = y * 80 + x / 8;
            v.mem_read(a);
            v.mem_write(a, 0xFF);
        }
    }
    // Bottom band: XOR (function 3) of colour 9 over the lower rows.
    outw(&mut v, PORT_GC_INDEX, 0, 0x09);
    outw(&mut v, PORT_GC_INDEX, 3, 0x18);
    outw(&mut v, PORT_GC_INDEX, 8, 0xFF);
    for a in 420 * 80..460 * 80 {
        v.mem_read(a);
        v.mem_write(a, 0xFF);
    }
    assert_eq!(
        v.mode_info(),
        ModeInfo {
            width: 640,
            height: 480,
            text: false,
            bpp: 4,
            cols: 0,
            rows: 0
        }
    );
    assert!(v.text_lines().is_none());
    let ppm = v.screendump_ppm(0);
    assert!(ppm.starts_with(b"P6\n640 480\n255\n"));
    // Bar 4 (red, DAC 4 = 2A 00 00) at (170, 10).
    let o = 15 + (10 * 640 + 170) * 3;
    assert_eq!(&ppm[o..o + 3], &[0xAA, 0, 0]);
    check_golden("mode12h_640x480x16", &ppm);
}

/// A 256-entry palette: 0–15 EGA-like, then hue ramps, then a grey ramp.
fn load_256_dac(v: &mut Vga) {
    out8(v, PORT_DAC_WRITE_INDEX, 0);
    for i in 0..=255u8 {
        let (r, g, b) = match i {
            0..=15 => (
                ((i >> 2) & 1) * 0x2A + (i >> 3) * 0x15,
                ((i >> 1) & 1) * 0x2A + (i >> 3) * 0x15,
                (i & 1) * 0x2A + (i >> 3) * 0x15,
            ),
            16..=79 => (i - 16, 0, 63 - (i - 16)),
            80..=143 => (0, i - 80, 0),
            144..=207 => (63, i - 144, i - 144),
            _ => ((i - 208) * 4 / 3, (i - 208) * 4 / 3, (i - 208) * 4 / 3),
        };
        out8(v, PORT_DAC_DATA, r);
        out8(v, PORT_DAC_DATA, g);
        out8(v, PORT_DAC_DATA, b);
    }
}

#[test]
fn mode_13h_chain4_256_colours() {
    let mut v = Vga::new();
    set_mode(&mut v, &mode_13());
    load_256_dac(&mut v);
    for y in 0..200u32 {
        for x in 0..320u32 {
            let c = if (100..220).contains(&x) && (60..140).contains(&y) {
                if x == 100 || x == 219 || y == 60 || y == 139 {
                    15
                } else {
                    80 + (y - 60) as u8 / 2
                }
            } else {
                16 + ((x + y) % 64) as u8
            };
            v.mem_write(y * 320 + x, c);
        }
    }
    assert_eq!(v.mem_read(61 * 320 + 101), 80);
    assert_eq!(
        v.mode_info(),
        ModeInfo {
            width: 320,
            height: 200,
            text: false,
            bpp: 8,
            cols: 0,
            rows: 0
        }
    );
    let ppm = v.screendump_ppm(0);
    assert!(ppm.starts_with(b"P6\n320 200\n255\n"));
    check_golden("mode13h_320x200x256", &ppm);
}

#[test]
fn mode_x_unchained_320x240() {
    let mut v = Vga::new();
    set_mode(&mut v, &mode_x());
    load_256_dac(&mut v);
    // Clear all planes, then draw: pixel (x, y) lives in plane x & 3 at offset y*80 + x/4.
    outw(&mut v, PORT_SEQ_INDEX, 2, 0x0F);
    for a in 0..0x1_0000 {
        v.mem_write(a, 0);
    }
    for plane in 0..4u32 {
        outw(&mut v, PORT_SEQ_INDEX, 2, 1 << plane);
        for y in 0..240u32 {
            for xb in 0..80u32 {
                let x = xb * 4 + plane;
                let c = if y == 0 || y == 239 || x == 0 || x == 319 {
                    15
                } else if (x / 40 + y / 40) % 2 == 0 {
                    144 + (y / 4) as u8
                } else {
                    208 + (x / 8) as u8
                };
                v.mem_write(y * 80 + xb, c);
            }
        }
    }
    // Latched copy of the top 20 lines to lines 100–119 with write mode 1, all planes at once.
    outw(&mut v, PORT_SEQ_INDEX, 2, 0x0F);
    outw(&mut v, PORT_GC_INDEX, 5, 0x41);
    for a in 0..20 * 80 {
        v.mem_read(a);
        v.mem_write(100 * 80 + a, 0);
    }
    outw(&mut v, PORT_GC_INDEX, 5, 0x40);
    assert_eq!(
        v.mode_info(),
        ModeInfo {
            width: 320,
            height: 240,
            text: false,
            bpp: 8,
            cols: 0,
            rows: 0
        }
    );
    let ppm = v.screendump_ppm(0);
    assert!(ppm.starts_with(b"P6\n320 240\n255\n"));
    // The copied border line (line 100) is white.
    let o = 15 + (100 * 320 + 50) * 3;
    assert_eq!(&ppm[o..o + 3], &[0xFF, 0xFF, 0xFF]);
    check_golden("modeX_320x240x256", &ppm);
}

#[test]
fn vbe_1024x768x32() {
    let mut v = Vga::new();
    v.io_write(PORT_MISC_WRITE, 1, 0x67);
    let dispi = |v: &mut Vga, i: u16, x: u16| {
        v.io_write(PORT_DISPI_INDEX, 2, u32::from(i));
        v.io_write(PORT_DISPI_DATA, 2, u32::from(x));
    };
    dispi(&mut v, DISPI_INDEX_ENABLE, 0);
    dispi(&mut v, DISPI_INDEX_BPP, 32);
    dispi(&mut v, DISPI_INDEX_XRES, 1024);
    dispi(&mut v, DISPI_INDEX_YRES, 768);
    dispi(&mut v, DISPI_INDEX_BANK, 0);
    dispi(
        &mut v,
        DISPI_INDEX_ENABLE,
        DISPI_ENABLED | DISPI_LFB_ENABLED,
    );
    for y in 0..768u32 {
        for x in 0..1024u32 {
            let (r, g, b) = (x & 0xFF, y & 0xFF, (x ^ y) >> 2 & 0xFF);
            v.lfb_write((y * 1024 + x) * 4, 4, b | g << 8 | r << 16);
        }
    }
    // A white square written through the banked window (bank 24 = row 384 on).
    dispi(&mut v, DISPI_INDEX_BANK, 24);
    for row in 0..16u32 {
        for col in 0..64u32 {
            v.mem_write(row * 4096 + 2048 + col, 0xFF);
        }
    }
    assert_eq!(
        v.mode_info(),
        ModeInfo {
            width: 1024,
            height: 768,
            text: false,
            bpp: 32,
            cols: 0,
            rows: 0
        }
    );
    let ppm = v.screendump_ppm(0);
    assert!(ppm.starts_with(b"P6\n1024 768\n255\n"));
    let o = 16 + (5 * 1024 + 300) * 3;
    assert_eq!(
        &ppm[o..o + 3],
        &[(300 & 0xFF) as u8, 5, ((300 ^ 5) >> 2 & 0xFF) as u8]
    );
    check_golden("vbe_1024x768x32", &ppm);
}
