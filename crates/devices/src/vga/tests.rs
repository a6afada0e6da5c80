use super::*;

fn color_vga() -> Vga {
    let mut v = Vga::new();
    v.io_write(PORT_MISC_WRITE, 1, 0x67);
    v
}

fn seq(v: &mut Vga, i: u8, x: u8) {
    v.io_write(PORT_SEQ_INDEX, 2, u32::from(i) | u32::from(x) << 8);
}

fn gc(v: &mut Vga, i: u8, x: u8) {
    v.io_write(PORT_GC_INDEX, 2, u32::from(i) | u32::from(x) << 8);
}

fn planar(v: &mut Vga) {
    seq(v, SR_MEMORY_MODE as u8, 0x06);
    seq(v, SR_MAP_MASK as u8, 0x0F);
    gc(v, GR_MISC as u8, 0x05);
    gc(v, GR_MODE as u8, 0x00);
}

fn plane_bytes(v: &Vga, off: usize) -> [u8; 4] {
    let s = &v.vram()[off * 4..off * 4 + 4];
    [s[0], s[1], s[2], s[3]]
}

#[test]
fn dac_round_trip() {
    let mut v = color_vga();
    v.io_write(PORT_DAC_WRITE_INDEX, 1, 5);
    for x in [0x3F, 0x20, 0x01, 0x11, 0x22, 0x33] {
        v.io_write(PORT_DAC_DATA, 1, x);
    }
    assert_eq!(v.io_read(PORT_DAC_WRITE_INDEX, 1, 0), 7);
    assert_eq!(v.io_read(PORT_DAC_READ_INDEX, 1, 0), 0, "write mode");
    v.io_write(PORT_DAC_READ_INDEX, 1, 5);
    assert_eq!(v.io_read(PORT_DAC_READ_INDEX, 1, 0), 3, "read mode");
    let got: Vec<u32> = (0..6).map(|_| v.io_read(PORT_DAC_DATA, 1, 0)).collect();
    assert_eq!(got, vec![0x3F, 0x20, 0x01, 0x11, 0x22, 0x33]);
    // 6-bit DAC masks the values.
    v.io_write(PORT_DAC_WRITE_INDEX, 1, 0);
    for _ in 0..3 {
        v.io_write(PORT_DAC_DATA, 1, 0xFF);
    }
    v.io_write(PORT_DAC_READ_INDEX, 1, 0);
    assert_eq!(v.io_read(PORT_DAC_DATA, 1, 0), 0x3F);
    v.io_write(PORT_PEL_MASK, 1, 0x0F);
    assert_eq!(v.io_read(PORT_PEL_MASK, 1, 0), 0x0F);
}

#[test]
fn attribute_flip_flop_reset_by_status_read() {
    let mut v = color_vga();
    v.io_read(PORT_STATUS1_COLOR, 1, 0);
    v.io_write(PORT_AR_INDEX, 1, 0x10);
    v.io_write(PORT_AR_INDEX, 1, 0x0C);
    assert_eq!(v.io_read(PORT_AR_INDEX, 1, 0), 0x10);
    assert_eq!(v.io_read(PORT_AR_DATA_READ, 1, 0), 0x0C);
    // Flip-flop is at "index" now; write index 1, then reset halfway through.
    v.io_write(PORT_AR_INDEX, 1, 0x01);
    v.io_read(PORT_STATUS1_COLOR, 1, 0);
    v.io_write(PORT_AR_INDEX, 1, 0x12);
    v.io_write(PORT_AR_INDEX, 1, 0x0F);
    assert_eq!(v.io_read(PORT_AR_INDEX, 1, 0), 0x12);
    assert_eq!(v.io_read(PORT_AR_DATA_READ, 1, 0), 0x0F);
    assert_eq!(v.ar[1], 0, "palette 1 untouched");
    // In mono mode 0x3DA is not decoded, 0x3BA is.
    v.io_write(PORT_MISC_WRITE, 1, 0x66);
    assert_eq!(v.io_read(PORT_STATUS1_COLOR, 1, 0), 0xFF);
    assert_eq!(v.io_read(PORT_STATUS1_MONO, 1, 0) & 0xF6, 0);
}

#[test]
fn status_bits_follow_the_virtual_clock() {
    let mut v = color_vga();
    let line = FRAME_NS / TOTAL_LINES;
    assert_eq!(v.io_read(PORT_STATUS1_COLOR, 1, 0) & 9, 0, "active display");
    assert_eq!(
        v.io_read(PORT_STATUS1_COLOR, 1, line * 9 / 10) & 9,
        1,
        "horizontal blank"
    );
    assert_eq!(
        v.io_read(PORT_STATUS1_COLOR, 1, line * 405) & 9,
        1,
        "vertical blank"
    );
    assert_eq!(
        v.io_read(PORT_STATUS1_COLOR, 1, line * 412 + 1) & 9,
        9,
        "retrace"
    );
    assert_eq!(
        v.io_read(PORT_STATUS1_COLOR, 1, FRAME_NS + line * 412 + 1) & 9,
        9,
        "next frame"
    );
    // A polling loop sees retrace begin and end.
    let seen: Vec<u8> = (0..2000)
        .map(|i| v.port_read(PORT_STATUS1_COLOR, i * FRAME_NS / 1000) & 8)
        .collect();
    assert!(seen.windows(2).any(|w| w == [0, 8]) && seen.windows(2).any(|w| w == [8, 0]));
}

#[test]
fn word_writes_split_into_index_and_data() {
    let mut v = color_vga();
    v.io_write(PORT_SEQ_INDEX, 2, 0x0204);
    assert_eq!(v.seq[SR_MEMORY_MODE], 0x02);
    v.io_write(PORT_CRTC_INDEX_COLOR, 2, 0x4F09);
    assert_eq!(v.crtc[CR_MAX_SCAN], 0x4F);
    v.io_write(PORT_GC_INDEX, 2, 0xFF08);
    assert_eq!(v.gc[GR_BIT_MASK], 0xFF);
    assert_eq!(
        v.io_read(PORT_GC_INDEX, 2, 0),
        0xFF08,
        "word read of index+data"
    );
    // Mono CRTC is ignored while the colour one is selected.
    v.io_write(PORT_CRTC_INDEX_MONO, 2, 0x550A);
    assert_eq!(v.crtc[CR_CURSOR_START], 0);
    assert_eq!(v.io_read(PORT_MISC_READ, 1, 0), 0x67);
}

#[test]
fn crtc_write_protect() {
    let mut v = color_vga();
    v.io_write(PORT_CRTC_INDEX_COLOR, 2, 0x8011);
    v.io_write(PORT_CRTC_INDEX_COLOR, 2, 0x5F00);
    assert_eq!(v.crtc[0], 0);
    v.io_write(PORT_CRTC_INDEX_COLOR, 2, 0xFF07);
    assert_eq!(v.crtc[CR_OVERFLOW], 0x10, "only line compare bit 8");
    v.io_write(PORT_CRTC_INDEX_COLOR, 2, 0x0011);
    v.io_write(PORT_CRTC_INDEX_COLOR, 2, 0x5F00);
    assert_eq!(v.crtc[0], 0x5F);
}

#[test]
fn write_mode_0_set_reset_rotate_function_bit_mask() {
    let mut v = color_vga();
    planar(&mut v);
    // Plain write to all planes.
    v.mem_write(0x10, 0xA5);
    assert_eq!(plane_bytes(&v, 0x10), [0xA5; 4]);
    // Set/reset on planes 0 and 2 (value 0b0001: plane 0 set, plane 2 reset).
    gc(&mut v, GR_SET_RESET as u8, 0x01);
    gc(&mut v, GR_ENABLE_SET_RESET as u8, 0x05);
    v.mem_write(0x11, 0x3C);
    assert_eq!(plane_bytes(&v, 0x11), [0xFF, 0x3C, 0x00, 0x3C]);
    gc(&mut v, GR_ENABLE_SET_RESET as u8, 0);
    // Rotate by 4.
    gc(&mut v, GR_DATA_ROTATE as u8, 0x04);
    v.mem_write(0x12, 0x1E);
    assert_eq!(plane_bytes(&v, 0x12), [0xE1; 4]);
    // XOR with latches, bit mask 0x0F.
    v.mem_read(0x10); // latches = A5
    gc(&mut v, GR_DATA_ROTATE as u8, 0x18);
    gc(&mut v, GR_BIT_MASK as u8, 0x0F);
    v.mem_write(0x13, 0xFF);
    assert_eq!(
        plane_bytes(&v, 0x13),
        [0xAA; 4],
        "low nibble A5^FF=5A, high nibble from latch A"
    );
    // AND and OR.
    gc(&mut v, GR_BIT_MASK as u8, 0xFF);
    gc(&mut v, GR_DATA_ROTATE as u8, 0x08);
    v.mem_write(0x14, 0x0F);
    assert_eq!(plane_bytes(&v, 0x14), [0x05; 4]);
    gc(&mut v, GR_DATA_ROTATE as u8, 0x10);
    v.mem_write(0x15, 0x0F);
    assert_eq!(plane_bytes(&v, 0x15), [0xAF; 4]);
    // Map mask.
    gc(&mut v, GR_DATA_ROTATE as u8, 0);
    seq(&mut v, SR_MAP_MASK as u8, 0x02);
    v.mem_write(0x16, 0x77);
    assert_eq!(plane_bytes(&v, 0x16), [0, 0x77, 0, 0]);
}

#[test]
fn write_modes_1_2_3_and_latches() {
    let mut v = color_vga();
    planar(&mut v);
    seq(&mut v, SR_MAP_MASK as u8, 0x01);
    v.mem_write(0x20, 0x11);
    seq(&mut v, SR_MAP_MASK as u8, 0x02);
    v.mem_write(0x20, 0x22);
    seq(&mut v, SR_MAP_MASK as u8, 0x0F);
    // Write mode 1 copies the latches (a 4-plane copy in one byte move).
    gc(&mut v, GR_MODE as u8, 0x01);
    v.mem_read(0x20);
    v.mem_write(0x30, 0x00);
    assert_eq!(plane_bytes(&v, 0x30), [0x11, 0x22, 0, 0]);
    // Write mode 2: colour 0b1010 with bit mask 0xF0.
    gc(&mut v, GR_MODE as u8, 0x02);
    gc(&mut v, GR_BIT_MASK as u8, 0xF0);
    v.mem_read(0x30);
    v.mem_write(0x30, 0x0A);
    assert_eq!(plane_bytes(&v, 0x30), [0x01, 0xF2, 0x00, 0xF0]);
    // Write mode 3: set/reset colour 0b0101, CPU data (rotated) ANDed with bit mask.
    gc(&mut v, GR_MODE as u8, 0x03);
    gc(&mut v, GR_BIT_MASK as u8, 0xFF);
    gc(&mut v, GR_SET_RESET as u8, 0x05);
    v.mem_read(0x40);
    v.mem_write(0x40, 0x3C);
    assert_eq!(plane_bytes(&v, 0x40), [0x3C, 0x00, 0x3C, 0x00]);
}

#[test]
fn read_modes_0_and_1() {
    let mut v = color_vga();
    planar(&mut v);
    gc(&mut v, GR_MODE as u8, 0x02);
    v.mem_write(0x50, 0x06); // planes 1 and 2 all-ones
    gc(&mut v, GR_MODE as u8, 0x00);
    gc(&mut v, GR_READ_MAP as u8, 2);
    assert_eq!(v.mem_read(0x50), 0xFF);
    gc(&mut v, GR_READ_MAP as u8, 0);
    assert_eq!(v.mem_read(0x50), 0x00);
    // Read mode 1: colour compare.
    gc(&mut v, GR_MODE as u8, 0x08);
    gc(&mut v, GR_COLOR_COMPARE as u8, 0x06);
    gc(&mut v, GR_COLOR_DONT_CARE as u8, 0x0F);
    assert_eq!(v.mem_read(0x50), 0xFF);
    gc(&mut v, GR_COLOR_COMPARE as u8, 0x07);
    assert_eq!(v.mem_read(0x50), 0x00);
    gc(&mut v, GR_COLOR_DONT_CARE as u8, 0x06);
    assert_eq!(v.mem_read(0x50), 0xFF, "plane 0 ignored");
}

#[test]
fn chain4_odd_even_and_memory_map() {
    let mut v = color_vga();
    // Chain-4 (mode 13h): address bits 0-1 select the plane.
    seq(&mut v, SR_MEMORY_MODE as u8, 0x0E);
    seq(&mut v, SR_MAP_MASK as u8, 0x0F);
    gc(&mut v, GR_MISC as u8, 0x05);
    gc(&mut v, GR_MODE as u8, 0x40);
    for a in 0..8u32 {
        v.mem_write(0x100 + a, a as u8 + 1);
    }
    assert_eq!(plane_bytes(&v, 0x100), [1, 2, 3, 4]);
    assert_eq!(plane_bytes(&v, 0x104), [5, 6, 7, 8]);
    assert_eq!(v.mem_read(0x106), 7);
    // Odd/even text window at 0xB8000.
    seq(&mut v, SR_MEMORY_MODE as u8, 0x02);
    seq(&mut v, SR_MAP_MASK as u8, 0x03);
    gc(&mut v, GR_MISC as u8, 0x0E);
    gc(&mut v, GR_MODE as u8, 0x10);
    v.mem_write(0x1_8000 + 2 * 3, b'X');
    v.mem_write(0x1_8000 + 2 * 3 + 1, 0x1F);
    assert_eq!(plane_bytes(&v, 6)[..2], [b'X', 0x1F]);
    assert_eq!(v.mem_read(0x1_8000 + 7), 0x1F);
    // 0xA0000 is not mapped with memory map 3.
    assert_eq!(v.mem_read(0x10), 0xFF);
    v.mem_write(0x10, 1);
    assert_eq!(plane_bytes(&v, 0x10), [0, 0, 0, 0]);
}

#[test]
fn dispi_probe_caps_enable_and_banks() {
    let mut v = color_vga();
    let w = |v: &mut Vga, i: u16, x: u16| {
        v.io_write(PORT_DISPI_INDEX, 2, u32::from(i));
        v.io_write(PORT_DISPI_DATA, 2, u32::from(x));
    };
    let r = |v: &mut Vga, i: u16| {
        v.io_write(PORT_DISPI_INDEX, 2, u32::from(i));
        v.io_read(PORT_DISPI_DATA, 2, 0) as u16
    };
    w(&mut v, DISPI_INDEX_ID, 0xB0C0);
    assert_eq!(r(&mut v, DISPI_INDEX_ID), 0xB0C0);
    w(&mut v, DISPI_INDEX_ID, 0xB0C5);
    assert_eq!(r(&mut v, DISPI_INDEX_ID), 0xB0C5);
    w(&mut v, DISPI_INDEX_ID, 0x1234);
    assert_eq!(r(&mut v, DISPI_INDEX_ID), 0xB0C5, "bad IDs ignored");
    assert_eq!(r(&mut v, DISPI_INDEX_VIDEO_MEMORY_64K), 256);
    w(&mut v, DISPI_INDEX_ENABLE, DISPI_GETCAPS);
    assert_eq!(r(&mut v, DISPI_INDEX_XRES), DISPI_MAX_XRES);
    assert_eq!(r(&mut v, DISPI_INDEX_BPP), 32);
    w(&mut v, DISPI_INDEX_ENABLE, 0);
    // Mode set 800x600x16 with LFB; the first bytes are cleared.
    v.lfb_write(0, 4, 0xDEAD_BEEF);
    w(&mut v, DISPI_INDEX_BPP, 16);
    w(&mut v, DISPI_INDEX_XRES, 800);
    w(&mut v, DISPI_INDEX_YRES, 600);
    w(&mut v, DISPI_INDEX_BANK, 0);
    w(
        &mut v,
        DISPI_INDEX_ENABLE,
        DISPI_ENABLED | DISPI_LFB_ENABLED,
    );
    assert_eq!(v.lfb_read(0, 4), 0);
    assert_eq!(r(&mut v, DISPI_INDEX_VIRT_WIDTH), 800);
    assert_eq!(
        r(&mut v, DISPI_INDEX_VIRT_HEIGHT),
        (VRAM_SIZE / 1600) as u16
    );
    assert_eq!(
        v.mode_info(),
        ModeInfo {
            width: 800,
            height: 600,
            text: false,
            bpp: 16,
            cols: 0,
            rows: 0
        }
    );
    // Banked window.
    w(&mut v, DISPI_INDEX_BANK, 3);
    v.mem_write(0x10, 0x5A);
    assert_eq!(v.lfb_read(3 * 0x1_0000 + 0x10, 1), 0x5A);
    assert_eq!(v.mem_read(0x10), 0x5A);
    // XRES must be a multiple of 8; LFB accesses past the end read all-ones.
    w(&mut v, DISPI_INDEX_XRES, 801);
    assert_eq!(r(&mut v, DISPI_INDEX_XRES), 800);
    assert_eq!(v.lfb_read(VRAM_SIZE as u32 - 2, 4), 0xFFFF_0000);
    v.lfb_write(u32::MAX, 4, 0x1234_5678);
    // NOCLEARMEM keeps memory.
    w(&mut v, DISPI_INDEX_ENABLE, 0);
    v.lfb_write(0, 4, 0x0102_0304);
    w(&mut v, DISPI_INDEX_ENABLE, DISPI_ENABLED | DISPI_NOCLEARMEM);
    assert_eq!(v.lfb_read(0, 4), 0x0102_0304);
}

#[test]
fn mmio_bar_forwards_to_ports_and_dispi() {
    let mut v = color_vga();
    v.mmio_write(0x500 + 2 * u32::from(DISPI_INDEX_XRES), 2, 1024);
    assert_eq!(v.dispi[DISPI_INDEX_XRES as usize], 1024);
    assert_eq!(
        v.mmio_read(0x500 + 2 * u32::from(DISPI_INDEX_ID), 2, 0),
        0xB0C0
    );
    v.mmio_write(0x400 + 0x04, 2, 0x0F02);
    assert_eq!(v.seq[SR_MAP_MASK], 0x0F);
    assert_eq!(v.mmio_read(0x400 + 0x0C, 1, 0), 0x67);
    assert_eq!(v.mmio_read(0x604, 4, 0), 0x1E1E_1E1E);
    assert_eq!(v.mmio_read(0x0, 4, 0), 0);
}

#[test]
fn render_tracks_dirty_rows() {
    let mut v = color_vga();
    let w = |v: &mut Vga, i: u16, x: u16| {
        v.io_write(PORT_DISPI_INDEX, 2, u32::from(i));
        v.io_write(PORT_DISPI_DATA, 2, u32::from(x));
    };
    w(&mut v, DISPI_INDEX_BPP, 32);
    w(&mut v, DISPI_INDEX_XRES, 64);
    w(&mut v, DISPI_INDEX_YRES, 48);
    w(
        &mut v,
        DISPI_INDEX_ENABLE,
        DISPI_ENABLED | DISPI_LFB_ENABLED,
    );
    let f = v.render(0).expect("first frame");
    assert_eq!((f.width, f.height, f.dirty_rows.clone()), (64, 48, 0..48));
    assert!(v.render(0).is_none(), "nothing changed");
    v.lfb_write(20 * 64 * 4 + 8, 4, 0x00FF_0000);
    let f = v.render(0).expect("changed");
    assert_eq!(f.dirty_rows, 20..21);
    assert_eq!(
        f.pixels[20 * 64 + 2],
        u32::from_le_bytes([0xFF, 0, 0, 0xFF])
    );
    // Writing the same value again redraws the row but reports no change.
    v.lfb_write(20 * 64 * 4 + 8, 4, 0x00FF_0000);
    assert!(v.render(0).is_none());
}

#[test]
fn restore_rejects_bad_states() {
    let v = color_vga();
    let good = v.save();
    let mut other = Vga::new();
    let mut s = good.clone();
    s.crtc.push(0);
    assert!(other.restore(&s).is_err());
    let mut s = good.clone();
    s.vram = vec![1; VRAM_SIZE + 1];
    assert!(other.restore(&s).is_err());
    let mut s = good.clone();
    s.dispi[DISPI_INDEX_BPP as usize] = 7;
    assert!(other.restore(&s).is_err());
    let mut s = good.clone();
    s.dac_sub = 3;
    assert!(other.restore(&s).is_err());
    let mut s = good;
    s.dac.truncate(5);
    assert!(other.restore(&s).is_err());
    assert_eq!(other.save(), Vga::new().save());
}

/// A minimal 320×200 chain-4 256-colour setup written straight into the registers.
fn chain4_320x200(v: &mut Vga) {
    v.io_write(PORT_MISC_WRITE, 1, 0x63);
    v.seq[SR_MEMORY_MODE] = 0x0E;
    v.seq[SR_MAP_MASK] = 0x0F;
    v.gc[GR_MISC] = 0x05;
    v.gc[GR_MODE] = 0x40;
    v.crtc[CR_H_DISPLAY_END] = 0x4F;
    v.crtc[CR_V_DISPLAY_END] = 0x8F;
    v.crtc[CR_OVERFLOW] = 0x1F;
    v.crtc[CR_MAX_SCAN] = 0x41;
    v.crtc[CR_OFFSET] = 0x28;
    v.crtc[CR_UNDERLINE] = 0x40;
    v.crtc[CR_MODE_CONTROL] = 0xA3;
    v.crtc[CR_LINE_COMPARE] = 0xFF;
    v.ar[AR_MODE] = 0x41;
    v.ar[AR_PLANE_ENABLE] = 0x0F;
    v.ar_index = AR_INDEX_PAS;
    v.io_write(PORT_DAC_WRITE_INDEX, 1, 9);
    for c in [0x3F, 0, 0] {
        v.io_write(PORT_DAC_DATA, 1, c);
    }
}

#[test]
fn panning_shifts_graphics_pixels() {
    let mut v = color_vga();
    chain4_320x200(&mut v);
    v.mem_write(10 * 320 + 6, 9);
    let red = u32::from_le_bytes([0xFF, 0, 0, 0xFF]);
    let f = v.render(0).expect("frame");
    assert_eq!((f.width, f.height), (320, 200));
    assert_eq!(f.pixels[10 * 320 + 6], red);
    v.ar[AR_PANNING] = 4; // two pixels in 256-colour modes
    let f = v.render(0).expect("panned");
    assert_eq!(f.pixels[10 * 320 + 4], red);
    assert_eq!(f.pixels[10 * 320 + 6], 0xFF00_0000);
}

#[test]
fn line_compare_splits_the_screen() {
    let mut v = color_vga();
    chain4_320x200(&mut v);
    v.mem_write(5, 9); // row 0 of memory
    v.crtc[CR_START_HI] = 0x01; // start address 0x100 (MA) = byte 0x400
    v.crtc[CR_LINE_COMPARE] = 99; // scanline 99: rows from scanline 100 (pixel row 50) show memory from 0
    v.crtc[CR_OVERFLOW] &= !0x10;
    v.crtc[CR_MAX_SCAN] &= !0x40;
    let red = u32::from_le_bytes([0xFF, 0, 0, 0xFF]);
    let f = v.render(0).expect("frame");
    assert_ne!(f.pixels[5], red, "top half starts at 0x400");
    assert_eq!(f.pixels[50 * 320 + 5], red, "split shows memory row 0");
}

#[test]
fn dispi_4bpp_is_planar_through_the_bank_window() {
    let mut v = color_vga();
    let w = |v: &mut Vga, i: u16, x: u16| {
        v.io_write(PORT_DISPI_INDEX, 2, u32::from(i));
        v.io_write(PORT_DISPI_DATA, 2, u32::from(x));
    };
    planar(&mut v);
    for i in 0..16u8 {
        v.ar[usize::from(i)] = i;
    }
    v.ar[AR_PLANE_ENABLE] = 0x0F;
    v.ar_index = AR_INDEX_PAS;
    v.io_write(PORT_DAC_WRITE_INDEX, 1, 5);
    for c in [0, 0x3F, 0] {
        v.io_write(PORT_DAC_DATA, 1, c);
    }
    w(&mut v, DISPI_INDEX_BPP, 4);
    w(&mut v, DISPI_INDEX_XRES, 1024);
    w(&mut v, DISPI_INDEX_YRES, 768);
    w(&mut v, DISPI_INDEX_ENABLE, DISPI_ENABLED);
    assert_eq!(
        v.seq[SR_MEMORY_MODE] & SR04_CHAIN4,
        0,
        "planar modes stay unchained"
    );
    // Pixel (8, 700): plane offset 700 * 128 + 1 = 89601 = bank 1, offset 0x5E01.
    gc(&mut v, GR_MODE as u8, 0x02);
    gc(&mut v, GR_BIT_MASK as u8, 0x80);
    w(&mut v, DISPI_INDEX_BANK, 1);
    v.mem_read(0x5E01);
    v.mem_write(0x5E01, 5);
    assert_eq!(plane_bytes(&v, 89601), [0x80, 0, 0x80, 0]);
    let f = v.render(0).expect("frame");
    assert_eq!((f.width, f.height), (1024, 768));
    assert_eq!(
        f.pixels[700 * 1024 + 8],
        u32::from_le_bytes([0, 0xFF, 0, 0xFF])
    );
    assert_eq!(f.pixels[700 * 1024 + 9], 0xFF00_0000);
}

#[test]
fn cga_mode_04_interleaved_banks_and_2bpp_pixels() {
    let mut v = Vga::new();
    v.io_write(PORT_MISC_WRITE, 1, 0x63);
    for (i, x) in [0x01u8, 0x09, 0x03, 0x00, 0x02].into_iter().enumerate() {
        seq(&mut v, i as u8, x);
    }
    seq(&mut v, 0, 0x03);
    let crtc: [u8; 25] = [
        0x2D, 0x27, 0x28, 0x90, 0x2B, 0x80, 0xBF, 0x1F, 0x00, 0xC1, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x9C, 0x8E, 0x8F, 0x14, 0x00, 0x96, 0xB9, 0xA2, 0xFF,
    ];
    for (i, &x) in crtc.iter().enumerate() {
        v.io_write(PORT_CRTC_INDEX_COLOR, 2, i as u32 | u32::from(x) << 8);
    }
    for (i, &x) in [0u8, 0, 0, 0, 0, 0x30, 0x0F, 0, 0xFF].iter().enumerate() {
        gc(&mut v, i as u8, x);
    }
    let ar = [
        0x00u8, 0x13, 0x15, 0x17, 2, 4, 6, 7, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
    ];
    v.io_read(PORT_STATUS1_COLOR, 1, 0);
    for (i, &x) in ar.iter().enumerate() {
        v.io_write(PORT_AR_INDEX, 1, i as u32);
        v.io_write(PORT_AR_INDEX, 1, u32::from(x));
    }
    for (i, x) in [(0x10u32, 0x01u32), (0x12, 0x03)] {
        v.io_write(PORT_AR_INDEX, 1, i);
        v.io_write(PORT_AR_INDEX, 1, x);
    }
    v.io_write(PORT_AR_INDEX, 1, 0x20);
    for i in 0..64u32 {
        v.io_write(PORT_DAC_WRITE_INDEX, 1, i);
        for c in [i, 63 - i, i / 2] {
            v.io_write(PORT_DAC_DATA, 1, c);
        }
    }
    // Row 0 pixels 0–3 = 3,2,1,0 (even bank); row 1 pixels 0–3 = 0,1,2,3 (odd bank at +8K).
    // Pixels 4–7 of row 0 come from the next byte.
    v.mem_write(0x1_8000, 0xE4);
    v.mem_write(0x1_8001, 0xFF);
    v.mem_write(0x1_A000, 0x1B);
    let info = v.mode_info();
    assert_eq!((info.width, info.height, info.bpp), (320, 200, 2));
    let pal = v.palette16();
    let f = v.render(0).expect("frame");
    let px = |x: usize, y: usize| f.pixels[y * 320 + x];
    assert_eq!(
        [px(0, 0), px(1, 0), px(2, 0), px(3, 0)],
        [pal[3], pal[2], pal[1], pal[0]]
    );
    assert_eq!(px(4, 0), pal[3]);
    assert_eq!(
        [px(0, 1), px(1, 1), px(2, 1), px(3, 1)],
        [pal[0], pal[1], pal[2], pal[3]]
    );
    assert_ne!(pal[1], pal[2]);
}
