//! Standard VGA with the Bochs VBE ("DISPI") extension, as QEMU's `-device VGA` (1234:1111),
//! compatible with SeaBIOS's `vgabios-stdvga.bin`.
//!
//! The device holds its 16 MiB of video memory. Access paths:
//!
//! - ports 0x3B0–0x3DF ([`Vga::io_read`]/[`Vga::io_write`]): sequencer, graphics controller,
//!   CRTC, attribute controller, DAC, misc output; 16-bit accesses are split into index and
//!   data bytes, as on hardware;
//! - ports 0x1CE/0x1CF: the DISPI index and data registers (16-bit);
//! - the legacy window 0xA0000–0xBFFFF ([`Vga::mem_read`]/[`Vga::mem_write`]) through the
//!   planar logic (write modes 0–3, read modes 0–1, latches, chain-4, odd/even), or banked
//!   linear video memory when DISPI is enabled;
//! - PCI BAR0, the linear framebuffer ([`Vga::lfb_read`]/[`Vga::lfb_write`]);
//! - PCI BAR2 ([`Vga::mmio_read`]/[`Vga::mmio_write`]): VGA ports at 0x400, DISPI at 0x500.
//!
//! Planar video memory is stored interleaved: byte `o` of plane `p` is `vram[4 * o + p]`, so
//! a latch fetch is one 4-byte read. [`Vga::render`] draws the displayed picture into an
//! internal RGBA frame and reports the changed rows; writes are tracked per 4 KiB page of
//! video memory, so unchanged rows are not redrawn.

mod cp437;
mod render;

use serde::{Deserialize, Serialize};

use crate::{Snapshot, StateError, VirtTime};

pub use render::{Frame, ModeInfo};

/// Size of the video memory (16 MiB, QEMU's default `vgamem_mb`).
pub const VRAM_SIZE: usize = 16 << 20;
/// Bytes of each plane addressable through the legacy planar logic (64 KiB per plane).
pub const PLANE_SIZE: usize = 0x1_0000;

/// Port: attribute controller index/data write (flip-flop).
pub const PORT_AR_INDEX: u16 = 0x3C0;
/// Port: attribute controller data read.
pub const PORT_AR_DATA_READ: u16 = 0x3C1;
/// Port: misc output write / input status 0 read.
pub const PORT_MISC_WRITE: u16 = 0x3C2;
/// Port: VGA enable.
pub const PORT_VGA_ENABLE: u16 = 0x3C3;
/// Port: sequencer index.
pub const PORT_SEQ_INDEX: u16 = 0x3C4;
/// Port: sequencer data.
pub const PORT_SEQ_DATA: u16 = 0x3C5;
/// Port: DAC pixel mask.
pub const PORT_PEL_MASK: u16 = 0x3C6;
/// Port: DAC read index (write) / DAC state (read).
pub const PORT_DAC_READ_INDEX: u16 = 0x3C7;
/// Port: DAC write index.
pub const PORT_DAC_WRITE_INDEX: u16 = 0x3C8;
/// Port: DAC data (three 6-bit components per entry).
pub const PORT_DAC_DATA: u16 = 0x3C9;
/// Port: feature control read.
pub const PORT_FEATURE_READ: u16 = 0x3CA;
/// Port: misc output read.
pub const PORT_MISC_READ: u16 = 0x3CC;
/// Port: graphics controller index.
pub const PORT_GC_INDEX: u16 = 0x3CE;
/// Port: graphics controller data.
pub const PORT_GC_DATA: u16 = 0x3CF;
/// Port: CRTC index (colour; mono is 0x3B4).
pub const PORT_CRTC_INDEX_COLOR: u16 = 0x3D4;
/// Port: CRTC data (colour; mono is 0x3B5).
pub const PORT_CRTC_DATA_COLOR: u16 = 0x3D5;
/// Port: input status 1 read / feature control write (colour; mono is 0x3BA).
pub const PORT_STATUS1_COLOR: u16 = 0x3DA;
/// Port: CRTC index (mono).
pub const PORT_CRTC_INDEX_MONO: u16 = 0x3B4;
/// Port: CRTC data (mono).
pub const PORT_CRTC_DATA_MONO: u16 = 0x3B5;
/// Port: input status 1 / feature control (mono).
pub const PORT_STATUS1_MONO: u16 = 0x3BA;
/// Port: DISPI index.
pub const PORT_DISPI_INDEX: u16 = 0x1CE;
/// Port: DISPI data.
pub const PORT_DISPI_DATA: u16 = 0x1CF;

/// Misc output bit 0: CRTC at 0x3Dx (colour) rather than 0x3Bx.
pub const MISC_COLOR: u8 = 1 << 0;

/// Sequencer: reset.
pub const SR_RESET: usize = 0;
/// Sequencer: clocking mode (bit 0: 8-dot chars, bit 3: dot clock / 2, bit 5: screen off).
pub const SR_CLOCKING: usize = 1;
/// Sequencer: map mask (planes written).
pub const SR_MAP_MASK: usize = 2;
/// Sequencer: character map select.
pub const SR_CHAR_MAP: usize = 3;
/// Sequencer: memory mode (bit 2: odd/even disable, bit 3: chain-4).
pub const SR_MEMORY_MODE: usize = 4;
/// Clocking mode bit: 8-dot characters (9 when clear).
pub const SR01_DOT8: u8 = 1 << 0;
/// Clocking mode bit: dot clock divided by 2 (320/360-wide modes).
pub const SR01_DOT_CLOCK_DIV2: u8 = 1 << 3;
/// Clocking mode bit: screen off.
pub const SR01_SCREEN_OFF: u8 = 1 << 5;
/// Memory mode bit: odd/even addressing disabled (sequential).
pub const SR04_SEQUENTIAL: u8 = 1 << 2;
/// Memory mode bit: chain-4.
pub const SR04_CHAIN4: u8 = 1 << 3;

/// Graphics controller: set/reset.
pub const GR_SET_RESET: usize = 0;
/// Graphics controller: enable set/reset.
pub const GR_ENABLE_SET_RESET: usize = 1;
/// Graphics controller: colour compare.
pub const GR_COLOR_COMPARE: usize = 2;
/// Graphics controller: data rotate (bits 2:0 count, 4:3 function).
pub const GR_DATA_ROTATE: usize = 3;
/// Graphics controller: read map select.
pub const GR_READ_MAP: usize = 4;
/// Graphics controller: mode (bits 1:0 write mode, bit 3 read mode, bit 4 odd/even,
/// bit 5 shift interleave, bit 6 256-colour shift).
pub const GR_MODE: usize = 5;
/// Graphics controller: miscellaneous (bit 0 graphics, bit 1 chain odd/even, bits 3:2 map).
pub const GR_MISC: usize = 6;
/// Graphics controller: colour don't care.
pub const GR_COLOR_DONT_CARE: usize = 7;
/// Graphics controller: bit mask.
pub const GR_BIT_MASK: usize = 8;

/// CRTC: horizontal display end (characters − 1).
pub const CR_H_DISPLAY_END: usize = 0x01;
/// CRTC: overflow.
pub const CR_OVERFLOW: usize = 0x07;
/// CRTC: preset row scan.
pub const CR_PRESET_ROW: usize = 0x08;
/// CRTC: maximum scan line (bits 4:0), line compare bit 9 (bit 6), double scan (bit 7).
pub const CR_MAX_SCAN: usize = 0x09;
/// CRTC: cursor start (bits 4:0, bit 5 disables the cursor).
pub const CR_CURSOR_START: usize = 0x0A;
/// CRTC: cursor end.
pub const CR_CURSOR_END: usize = 0x0B;
/// CRTC: start address high.
pub const CR_START_HI: usize = 0x0C;
/// CRTC: start address low.
pub const CR_START_LO: usize = 0x0D;
/// CRTC: cursor location high.
pub const CR_CURSOR_HI: usize = 0x0E;
/// CRTC: cursor location low.
pub const CR_CURSOR_LO: usize = 0x0F;
/// CRTC: vertical retrace end (bit 7 protects CR00–CR07).
pub const CR_V_RETRACE_END: usize = 0x11;
/// CRTC: vertical display end (low 8 bits).
pub const CR_V_DISPLAY_END: usize = 0x12;
/// CRTC: offset (row pitch / 2 in character clocks).
pub const CR_OFFSET: usize = 0x13;
/// CRTC: underline location (bit 6: doubleword addressing).
pub const CR_UNDERLINE: usize = 0x14;
/// CRTC: mode control (bit 6: byte mode, bit 5: address wrap, bits 1:0 CGA/Hercules compat).
pub const CR_MODE_CONTROL: usize = 0x17;
/// CRTC: line compare (low 8 bits).
pub const CR_LINE_COMPARE: usize = 0x18;
/// Number of CRTC registers.
pub const CRTC_REGS: usize = 0x19;

/// Attribute controller: mode control (bit 0 graphics, bit 2 line graphics, bit 3 blink,
/// bit 6 8-bit pixels, bit 7 P5/P4 select).
pub const AR_MODE: usize = 0x10;
/// Attribute controller: overscan colour.
pub const AR_OVERSCAN: usize = 0x11;
/// Attribute controller: colour plane enable.
pub const AR_PLANE_ENABLE: usize = 0x12;
/// Attribute controller: horizontal pixel panning.
pub const AR_PANNING: usize = 0x13;
/// Attribute controller: colour select.
pub const AR_COLOR_SELECT: usize = 0x14;
/// Number of attribute controller registers.
pub const AR_REGS: usize = 0x15;
/// Attribute index bit: palette address source (0 blanks the screen while programming).
pub const AR_INDEX_PAS: u8 = 0x20;

/// DISPI register: ID.
pub const DISPI_INDEX_ID: u16 = 0;
/// DISPI register: horizontal resolution.
pub const DISPI_INDEX_XRES: u16 = 1;
/// DISPI register: vertical resolution.
pub const DISPI_INDEX_YRES: u16 = 2;
/// DISPI register: bits per pixel.
pub const DISPI_INDEX_BPP: u16 = 3;
/// DISPI register: enable.
pub const DISPI_INDEX_ENABLE: u16 = 4;
/// DISPI register: 64 KiB bank in the 0xA0000 window.
pub const DISPI_INDEX_BANK: u16 = 5;
/// DISPI register: virtual width.
pub const DISPI_INDEX_VIRT_WIDTH: u16 = 6;
/// DISPI register: virtual height.
pub const DISPI_INDEX_VIRT_HEIGHT: u16 = 7;
/// DISPI register: X offset.
pub const DISPI_INDEX_X_OFFSET: u16 = 8;
/// DISPI register: Y offset.
pub const DISPI_INDEX_Y_OFFSET: u16 = 9;
/// DISPI register: video memory in 64 KiB units (read-only).
pub const DISPI_INDEX_VIDEO_MEMORY_64K: u16 = 0x0A;
/// Number of DISPI registers.
pub const DISPI_REGS: usize = 0x0B;
/// First DISPI ID value.
pub const DISPI_ID0: u16 = 0xB0C0;
/// Newest DISPI ID value supported.
pub const DISPI_ID5: u16 = 0xB0C5;
/// DISPI enable bit: enabled.
pub const DISPI_ENABLED: u16 = 0x01;
/// DISPI enable bit: reads of XRES/YRES/BPP return the maxima.
pub const DISPI_GETCAPS: u16 = 0x02;
/// DISPI enable bit: 8-bit DAC.
pub const DISPI_8BIT_DAC: u16 = 0x20;
/// DISPI enable bit: linear framebuffer enabled.
pub const DISPI_LFB_ENABLED: u16 = 0x40;
/// DISPI enable bit: do not clear video memory on enable.
pub const DISPI_NOCLEARMEM: u16 = 0x80;
/// Largest DISPI horizontal resolution.
pub const DISPI_MAX_XRES: u16 = 2560;
/// Largest DISPI vertical resolution.
pub const DISPI_MAX_YRES: u16 = 1600;
/// Largest DISPI depth.
pub const DISPI_MAX_BPP: u16 = 32;

/// BAR2 offset of the VGA port block (ports 0x3C0–0x3DF).
pub const MMIO_VGA_PORTS: u32 = 0x400;
/// BAR2 offset of the DISPI registers (index × 2).
pub const MMIO_DISPI: u32 = 0x500;
/// BAR2 offset of QEMU's extension registers (size at +0, byte order at +4).
pub const MMIO_QEXT: u32 = 0x600;

/// Frame period of the modelled 70 Hz display (ns).
pub const FRAME_NS: u64 = 14_268_000;
/// Scanlines per frame (including blanking) of the modelled display.
const TOTAL_LINES: u64 = 449;
/// First scanline of vertical retrace.
const RETRACE_START: u64 = 412;
/// Scanlines of vertical retrace.
const RETRACE_LINES: u64 = 2;
/// Visible scanlines.
const DISPLAY_LINES: u64 = 400;

/// Input status 1 bit 0: display disabled (horizontal or vertical blanking).
pub const ST1_DISPLAY_DISABLED: u8 = 1 << 0;
/// Input status 1 bit 3: vertical retrace.
pub const ST1_VRETRACE: u8 = 1 << 3;

/// Bytes of video memory covered by one dirty bit.
const DIRTY_PAGE: usize = 4096;

/// Target of a CPU access to the legacy window.
enum Window {
    Unmapped,
    Linear(usize),
    Planar(usize, usize),
}

/// The std VGA device.
pub struct Vga {
    vram: Vec<u8>,
    misc: u8,
    feature: u8,
    seq_index: u8,
    seq: [u8; 8],
    gc_index: u8,
    gc: [u8; 16],
    crtc_index: u8,
    crtc: [u8; CRTC_REGS],
    ar_index: u8,
    ar: [u8; AR_REGS],
    ar_flip: bool,
    dac_read_index: u8,
    dac_write_index: u8,
    dac_sub: u8,
    dac_reading: bool,
    dac_latch: [u8; 3],
    pel_mask: u8,
    dac: [u8; 768],
    latch: [u8; 4],
    dispi_index: u16,
    dispi: [u16; DISPI_REGS],
    /// Dirty bit per 4 KiB of video memory.
    dirty: Vec<u64>,
    render: render::RenderCache,
}

impl Vga {
    /// A VGA in its power-on state (all registers zero, as before the BIOS runs).
    pub fn new() -> Vga {
        let mut v = Vga {
            vram: vec![0; VRAM_SIZE],
            misc: 0,
            feature: 0,
            seq_index: 0,
            seq: [0; 8],
            gc_index: 0,
            gc: [0; 16],
            crtc_index: 0,
            crtc: [0; CRTC_REGS],
            ar_index: 0,
            ar: [0; AR_REGS],
            ar_flip: false,
            dac_read_index: 0,
            dac_write_index: 0,
            dac_sub: 0,
            dac_reading: false,
            dac_latch: [0; 3],
            pel_mask: 0xFF,
            dac: [0; 768],
            latch: [0; 4],
            dispi_index: 0,
            dispi: [0; DISPI_REGS],
            dirty: vec![0; VRAM_SIZE / DIRTY_PAGE / 64],
            render: render::RenderCache::default(),
        };
        v.reset();
        v
    }

    /// Resets registers (not video memory) to power-on values.
    pub fn reset(&mut self) {
        self.misc = 0;
        self.feature = 0;
        self.seq_index = 0;
        self.seq = [0; 8];
        self.gc_index = 0;
        self.gc = [0; 16];
        self.gc[GR_BIT_MASK] = 0xFF;
        self.crtc_index = 0;
        self.crtc = [0; CRTC_REGS];
        self.ar_index = 0;
        self.ar = [0; AR_REGS];
        self.ar_flip = false;
        self.dac_read_index = 0;
        self.dac_write_index = 0;
        self.dac_sub = 0;
        self.dac_reading = false;
        self.pel_mask = 0xFF;
        self.latch = [0; 4];
        self.dispi_index = 0;
        self.dispi = [0; DISPI_REGS];
        self.dispi[DISPI_INDEX_ID as usize] = DISPI_ID0;
        self.dispi[DISPI_INDEX_BPP as usize] = 8;
        self.dispi[DISPI_INDEX_XRES as usize] = 640;
        self.dispi[DISPI_INDEX_YRES as usize] = 480;
        self.dispi[DISPI_INDEX_VIDEO_MEMORY_64K as usize] = (VRAM_SIZE >> 16) as u16;
        self.render.invalidate();
    }

    /// The whole video memory (for debugging and tests).
    pub fn vram(&self) -> &[u8] {
        &self.vram
    }

    fn mark_dirty(&mut self, off: usize, len: usize) {
        if len == 0 {
            return;
        }
        let first = off / DIRTY_PAGE;
        let last = (off + len - 1) / DIRTY_PAGE;
        for p in first..=last {
            if let Some(w) = self.dirty.get_mut(p / 64) {
                *w |= 1 << (p % 64);
            }
        }
    }

    fn is_color(&self) -> bool {
        self.misc & MISC_COLOR != 0
    }

    // ------------------------------------------------------------------ ports

    /// Port read of `size` bytes (1, 2 or 4) at `port`; `now` drives the retrace bits.
    /// Wider accesses to the VGA ports read consecutive ports; unhandled ports read all-ones.
    pub fn io_read(&mut self, port: u16, size: u8, now: VirtTime) -> u32 {
        match port {
            PORT_DISPI_INDEX => u32::from(self.dispi_index) & size_mask(size),
            PORT_DISPI_DATA => u32::from(self.dispi_read()) & size_mask(size),
            _ => {
                let mut v = 0u32;
                for i in 0..size.clamp(1, 4) {
                    let b = self.port_read(port.wrapping_add(u16::from(i)), now);
                    v |= u32::from(b) << (8 * i);
                }
                v
            }
        }
    }

    /// Port write of `size` bytes (1, 2 or 4); a 16-bit write to an index port writes the
    /// index then the data port, as `outw` does on hardware.
    pub fn io_write(&mut self, port: u16, size: u8, val: u32) {
        match port {
            PORT_DISPI_INDEX => self.dispi_index = val as u16,
            PORT_DISPI_DATA => self.dispi_write(val as u16),
            _ => {
                for i in 0..size.clamp(1, 4) {
                    self.port_write(port.wrapping_add(u16::from(i)), (val >> (8 * i)) as u8);
                }
            }
        }
    }

    /// Whether `port` belongs to the CRTC/status block not selected by misc output bit 0.
    fn port_inactive(&self, port: u16) -> bool {
        match port {
            0x3B0..=0x3BF => self.is_color(),
            0x3D0..=0x3DF => !self.is_color(),
            _ => false,
        }
    }

    /// Byte read of one VGA port.
    pub fn port_read(&mut self, port: u16, now: VirtTime) -> u8 {
        if self.port_inactive(port) {
            return 0xFF;
        }
        match port {
            PORT_AR_INDEX => self.ar_index,
            PORT_AR_DATA_READ => self
                .ar
                .get(usize::from(self.ar_index & 0x1F))
                .copied()
                .unwrap_or(0),
            PORT_MISC_WRITE => 0x10, // input status 0: switch sense
            PORT_VGA_ENABLE => 1,
            PORT_SEQ_INDEX => self.seq_index,
            PORT_SEQ_DATA => self
                .seq
                .get(usize::from(self.seq_index))
                .copied()
                .unwrap_or(0xFF),
            PORT_PEL_MASK => self.pel_mask,
            PORT_DAC_READ_INDEX => {
                if self.dac_reading {
                    3
                } else {
                    0
                }
            }
            PORT_DAC_WRITE_INDEX => self.dac_write_index,
            PORT_DAC_DATA => {
                let i = usize::from(self.dac_read_index) * 3 + usize::from(self.dac_sub);
                let v = self.dac[i];
                self.dac_sub += 1;
                if self.dac_sub == 3 {
                    self.dac_sub = 0;
                    self.dac_read_index = self.dac_read_index.wrapping_add(1);
                }
                v
            }
            PORT_FEATURE_READ => self.feature,
            PORT_MISC_READ => self.misc,
            PORT_GC_INDEX => self.gc_index,
            PORT_GC_DATA => self
                .gc
                .get(usize::from(self.gc_index))
                .copied()
                .unwrap_or(0xFF),
            PORT_CRTC_INDEX_MONO | PORT_CRTC_INDEX_COLOR => self.crtc_index,
            PORT_CRTC_DATA_MONO | PORT_CRTC_DATA_COLOR => self
                .crtc
                .get(usize::from(self.crtc_index))
                .copied()
                .unwrap_or(0xFF),
            PORT_STATUS1_MONO | PORT_STATUS1_COLOR => {
                self.ar_flip = false;
                status1(now)
            }
            _ => 0xFF,
        }
    }

    /// Byte write of one VGA port.
    pub fn port_write(&mut self, port: u16, val: u8) {
        if self.port_inactive(port) {
            return;
        }
        match port {
            PORT_AR_INDEX => {
                if !self.ar_flip {
                    if (self.ar_index ^ val) & AR_INDEX_PAS != 0 {
                        self.render.invalidate();
                    }
                    self.ar_index = val & 0x3F;
                } else {
                    let i = usize::from(self.ar_index & 0x1F);
                    if let Some(r) = self.ar.get_mut(i) {
                        let v = match i {
                            0..=0x0F => val & 0x3F,
                            AR_MODE => val & 0xEF,
                            AR_PLANE_ENABLE => val & 0x3F,
                            AR_PANNING => val & 0x0F,
                            AR_COLOR_SELECT => val & 0x0F,
                            _ => val,
                        };
                        *r = v;
                    }
                }
                self.ar_flip = !self.ar_flip;
            }
            PORT_MISC_WRITE => self.misc = val,
            PORT_SEQ_INDEX => self.seq_index = val & 0x07,
            PORT_SEQ_DATA => {
                let i = usize::from(self.seq_index);
                if let Some(r) = self.seq.get_mut(i) {
                    *r = val & [0x03, 0x3D, 0x0F, 0x3F, 0x0E, 0, 0, 0][i];
                }
            }
            PORT_PEL_MASK => self.pel_mask = val,
            PORT_DAC_READ_INDEX => {
                self.dac_read_index = val;
                self.dac_sub = 0;
                self.dac_reading = true;
            }
            PORT_DAC_WRITE_INDEX => {
                self.dac_write_index = val;
                self.dac_sub = 0;
                self.dac_reading = false;
            }
            PORT_DAC_DATA => {
                let mask = if self.dispi[DISPI_INDEX_ENABLE as usize] & DISPI_8BIT_DAC != 0 {
                    0xFF
                } else {
                    0x3F
                };
                self.dac_latch[usize::from(self.dac_sub)] = val & mask;
                self.dac_sub += 1;
                if self.dac_sub == 3 {
                    let i = usize::from(self.dac_write_index) * 3;
                    self.dac[i..i + 3].copy_from_slice(&self.dac_latch);
                    self.dac_sub = 0;
                    self.dac_write_index = self.dac_write_index.wrapping_add(1);
                    self.render.palette_changed();
                }
            }
            PORT_GC_INDEX => self.gc_index = val & 0x0F,
            PORT_GC_DATA => {
                let i = usize::from(self.gc_index);
                if i <= GR_BIT_MASK {
                    self.gc[i] = val & [0x0F, 0x0F, 0x0F, 0x1F, 0x03, 0x7B, 0x0F, 0x0F, 0xFF][i];
                }
            }
            PORT_CRTC_INDEX_MONO | PORT_CRTC_INDEX_COLOR => self.crtc_index = val & 0x3F,
            PORT_CRTC_DATA_MONO | PORT_CRTC_DATA_COLOR => {
                let i = usize::from(self.crtc_index);
                let protected = self.crtc[CR_V_RETRACE_END] & 0x80 != 0;
                if protected && i <= CR_OVERFLOW {
                    if i == CR_OVERFLOW {
                        // Only the line compare bit 8 stays writable.
                        let o = &mut self.crtc[CR_OVERFLOW];
                        *o = (*o & !0x10) | (val & 0x10);
                    }
                    return;
                }
                if let Some(r) = self.crtc.get_mut(i) {
                    *r = val;
                }
            }
            PORT_STATUS1_MONO | PORT_STATUS1_COLOR => self.feature = val,
            _ => {}
        }
    }

    // ------------------------------------------------------------------ DISPI

    fn dispi_enabled(&self) -> bool {
        self.dispi[DISPI_INDEX_ENABLE as usize] & DISPI_ENABLED != 0
    }

    fn dispi_read(&self) -> u16 {
        let en = self.dispi[DISPI_INDEX_ENABLE as usize];
        let caps = en & DISPI_GETCAPS != 0;
        match self.dispi_index {
            DISPI_INDEX_XRES if caps => DISPI_MAX_XRES,
            DISPI_INDEX_YRES if caps => DISPI_MAX_YRES,
            DISPI_INDEX_BPP if caps => DISPI_MAX_BPP,
            i => self.dispi.get(usize::from(i)).copied().unwrap_or(0),
        }
    }

    /// Bytes per scanline of the DISPI mode with `width` pixels.
    fn dispi_pitch(&self, width: u16) -> usize {
        let bpp = self.dispi[DISPI_INDEX_BPP as usize];
        if bpp == 4 {
            usize::from(width) / 2
        } else {
            usize::from(width) * usize::from(bpp).div_ceil(8)
        }
    }

    fn dispi_write(&mut self, val: u16) {
        let idx = self.dispi_index;
        match idx {
            DISPI_INDEX_ID if (DISPI_ID0..=DISPI_ID5).contains(&val) => self.dispi[0] = val,
            DISPI_INDEX_XRES if val <= DISPI_MAX_XRES && val.is_multiple_of(8) => {
                self.dispi[1] = val
            }
            DISPI_INDEX_YRES if val <= DISPI_MAX_YRES => self.dispi[2] = val,
            DISPI_INDEX_BPP => {
                let v = if val == 0 { 8 } else { val };
                if matches!(v, 4 | 8 | 15 | 16 | 24 | 32) {
                    self.dispi[3] = v;
                }
            }
            DISPI_INDEX_BANK => {
                let banks = (VRAM_SIZE >> 16) as u16;
                self.dispi[5] = val % banks;
            }
            DISPI_INDEX_ENABLE => {
                let was = self.dispi_enabled();
                self.dispi[4] = val
                    & (DISPI_ENABLED
                        | DISPI_GETCAPS
                        | DISPI_8BIT_DAC
                        | DISPI_LFB_ENABLED
                        | DISPI_NOCLEARMEM);
                if val & DISPI_ENABLED != 0 && !was {
                    let xres = self.dispi[1];
                    let yres = self.dispi[2];
                    let pitch = self.dispi_pitch(xres).max(1);
                    self.dispi[DISPI_INDEX_VIRT_WIDTH as usize] = xres;
                    self.dispi[DISPI_INDEX_VIRT_HEIGHT as usize] =
                        (VRAM_SIZE / pitch).min(0xFFFF) as u16;
                    self.dispi[DISPI_INDEX_X_OFFSET as usize] = 0;
                    self.dispi[DISPI_INDEX_Y_OFFSET as usize] = 0;
                    self.dispi[DISPI_INDEX_BANK as usize] = 0;
                    if val & DISPI_NOCLEARMEM == 0 {
                        let len = (pitch * usize::from(yres)).min(VRAM_SIZE);
                        self.vram[..len].fill(0);
                        self.mark_dirty(0, len);
                    }
                    // Make the legacy registers describe a graphics mode with a 64 KiB window
                    // at 0xA0000, as a mode set through the VBE BIOS expects.
                    self.gc[GR_MISC] = (self.gc[GR_MISC] & !0x0C) | 0x05;
                    if self.dispi[DISPI_INDEX_BPP as usize] != 4 {
                        self.seq[SR_MEMORY_MODE] |= SR04_CHAIN4 | SR04_SEQUENTIAL;
                    }
                }
                self.render.invalidate();
            }
            DISPI_INDEX_VIRT_WIDTH if val <= DISPI_MAX_XRES.saturating_mul(4) => {
                let pitch = self.dispi_pitch(val).max(1);
                self.dispi[6] = val;
                self.dispi[7] = (VRAM_SIZE / pitch).min(0xFFFF) as u16;
            }
            DISPI_INDEX_X_OFFSET | DISPI_INDEX_Y_OFFSET => self.dispi[usize::from(idx)] = val,
            _ => {}
        }
        self.render.invalidate();
    }

    // ------------------------------------------------------------------ memory

    /// Resolves a legacy-window offset (`addr` relative to 0xA0000) through the graphics
    /// controller's memory map select; `None` when outside the mapped window.
    fn window_offset(&self, addr: u32) -> Option<u32> {
        let (base, size) = match (self.gc[GR_MISC] >> 2) & 3 {
            0 => (0, 0x2_0000),
            1 => (0, 0x1_0000),
            2 => (0x1_0000, 0x8000),
            _ => (0x1_8000, 0x8000),
        };
        addr.checked_sub(base).filter(|&o| o < size)
    }

    /// Where a CPU access to the legacy window goes: banked linear video memory (DISPI with
    /// 8 bpp and more), the planar logic (with the offset mask of the planes), or nowhere.
    fn decode_window(&self, addr: u32) -> Window {
        if self.dispi_enabled() {
            if addr >= 0x1_0000 {
                return Window::Unmapped;
            }
            let off = usize::from(self.dispi[DISPI_INDEX_BANK as usize]) * 0x1_0000 + addr as usize;
            return if self.dispi[DISPI_INDEX_BPP as usize] == 4 {
                Window::Planar(off, VRAM_SIZE / 4 - 1)
            } else {
                Window::Linear(off)
            };
        }
        match self.window_offset(addr) {
            Some(a) => Window::Planar(a as usize, PLANE_SIZE - 1),
            None => Window::Unmapped,
        }
    }

    /// Reads the byte at `addr` (offset from 0xA0000, 0–0x1FFFF) of the legacy window,
    /// through the planar read logic (loads the latches). Unmapped parts read 0xFF.
    pub fn mem_read(&mut self, addr: u32) -> u8 {
        let (a, mask) = match self.decode_window(addr) {
            Window::Unmapped => return 0xFF,
            Window::Linear(off) => return self.vram.get(off).copied().unwrap_or(0xFF),
            Window::Planar(a, mask) => (a, mask),
        };
        let mm = self.seq[SR_MEMORY_MODE];
        if mm & SR04_CHAIN4 != 0 {
            let off = a & mask & !3;
            self.load_latch(off);
            return self.latch[a & 3];
        }
        if self.gc[GR_MODE] & 0x10 != 0 {
            // Odd/even: address bit 0 selects plane 0/1 (or 2/3).
            let plane = (usize::from(self.gc[GR_READ_MAP]) & 2) | (a & 1);
            let off = a & mask & !1;
            self.load_latch(off);
            return self.latch[plane];
        }
        let off = a & mask;
        self.load_latch(off);
        if self.gc[GR_MODE] & 0x08 == 0 {
            self.latch[usize::from(self.gc[GR_READ_MAP] & 3)]
        } else {
            // Read mode 1: colour compare.
            let cc = self.gc[GR_COLOR_COMPARE];
            let dc = self.gc[GR_COLOR_DONT_CARE];
            let mut r = 0xFFu8;
            for p in 0..4 {
                if dc & (1 << p) != 0 {
                    let want = if cc & (1 << p) != 0 { 0xFF } else { 0x00 };
                    r &= !(self.latch[p] ^ want);
                }
            }
            r
        }
    }

    fn load_latch(&mut self, off: usize) {
        let i = off * 4;
        if let Some(s) = self.vram.get(i..i + 4) {
            self.latch.copy_from_slice(s);
        }
    }

    /// Writes the byte at `addr` (offset from 0xA0000) of the legacy window through the
    /// planar write logic (write modes 0–3, map mask, chain-4, odd/even).
    pub fn mem_write(&mut self, addr: u32, val: u8) {
        let (a, mask) = match self.decode_window(addr) {
            Window::Unmapped => return,
            Window::Linear(off) => {
                if let Some(b) = self.vram.get_mut(off) {
                    *b = val;
                    self.mark_dirty(off, 1);
                }
                return;
            }
            Window::Planar(a, mask) => (a, mask),
        };
        let mm = self.seq[SR_MEMORY_MODE];
        let map_mask = self.seq[SR_MAP_MASK];
        if mm & SR04_CHAIN4 != 0 {
            let plane = a & 3;
            if map_mask & (1 << plane) != 0 {
                let i = (a & mask & !3) * 4 + plane;
                self.vram[i] = val;
                self.mark_dirty(i, 1);
            }
            return;
        }
        if mm & SR04_SEQUENTIAL == 0 {
            // Odd/even: even addresses go to planes 0 and 2, odd ones to planes 1 and 3.
            let i = (a & mask & !1) * 4;
            for plane in [a & 1, (a & 1) | 2] {
                if map_mask & (1 << plane) != 0 {
                    self.vram[i + plane] = val;
                }
            }
            self.mark_dirty(i, 4);
            return;
        }
        let off = a & mask;
        let data = self.planar_data(val);
        let i = off * 4;
        for (p, &d) in data.iter().enumerate() {
            if map_mask & (1 << p) != 0 {
                self.vram[i + p] = d;
            }
        }
        self.mark_dirty(i, 4);
    }

    /// The four plane bytes produced by the write mode logic for CPU byte `val`.
    fn planar_data(&self, val: u8) -> [u8; 4] {
        let rot = self.gc[GR_DATA_ROTATE];
        let rotated = val.rotate_right(u32::from(rot & 7));
        let sr = self.gc[GR_SET_RESET];
        let esr = self.gc[GR_ENABLE_SET_RESET];
        let expand = |bit: u8| if bit != 0 { 0xFFu8 } else { 0 };
        let mut mask = self.gc[GR_BIT_MASK];
        let src: [u8; 4] = match self.gc[GR_MODE] & 3 {
            0 => std::array::from_fn(|p| {
                if esr & (1 << p) != 0 {
                    expand(sr & (1 << p))
                } else {
                    rotated
                }
            }),
            1 => return self.latch,
            2 => std::array::from_fn(|p| expand(val & (1 << p))),
            _ => {
                mask &= rotated;
                std::array::from_fn(|p| expand(sr & (1 << p)))
            }
        };
        let func = (rot >> 3) & 3;
        std::array::from_fn(|p| {
            let l = self.latch[p];
            let r = match func {
                0 => src[p],
                1 => src[p] & l,
                2 => src[p] | l,
                _ => src[p] ^ l,
            };
            (r & mask) | (l & !mask)
        })
    }

    /// Reads `size` (1, 2 or 4) bytes of video memory at `offset` of the linear framebuffer
    /// (BAR0); outside the video memory reads all-ones.
    pub fn lfb_read(&self, offset: u32, size: u8) -> u32 {
        let mut v = 0u32;
        for i in 0..u32::from(size.clamp(1, 4)) {
            let b = offset
                .checked_add(i)
                .and_then(|o| self.vram.get(o as usize))
                .copied()
                .unwrap_or(0xFF);
            v |= u32::from(b) << (8 * i);
        }
        v
    }

    /// Writes `size` (1, 2 or 4) bytes of video memory at `offset` of the linear framebuffer.
    pub fn lfb_write(&mut self, offset: u32, size: u8, val: u32) {
        let n = usize::from(size.clamp(1, 4));
        let start = offset as usize;
        let Some(dst) = start
            .checked_add(n)
            .and_then(|end| self.vram.get_mut(start..end))
        else {
            // Partly outside: write what fits.
            for i in 0..n {
                if let Some(b) = start.checked_add(i).and_then(|o| self.vram.get_mut(o)) {
                    *b = (val >> (8 * i)) as u8;
                }
            }
            self.mark_dirty(start.min(VRAM_SIZE), n.min(VRAM_SIZE.saturating_sub(start)));
            return;
        };
        dst.copy_from_slice(&val.to_le_bytes()[..n]);
        self.mark_dirty(start, n);
    }

    /// Reads `size` bytes at `offset` of the BAR2 MMIO block.
    pub fn mmio_read(&mut self, offset: u32, size: u8, now: VirtTime) -> u32 {
        match offset {
            0x400..=0x41F => self.io_read(0x3C0 + (offset - MMIO_VGA_PORTS) as u16, size, now),
            0x500..=0x515 => {
                self.dispi_index = ((offset - MMIO_DISPI) / 2) as u16;
                u32::from(self.dispi_read())
            }
            0x600 => 8,
            0x604 => 0x1E1E_1E1E,
            _ => 0,
        }
    }

    /// Writes `size` bytes at `offset` of the BAR2 MMIO block.
    pub fn mmio_write(&mut self, offset: u32, size: u8, val: u32) {
        match offset {
            0x400..=0x41F => self.io_write(0x3C0 + (offset - MMIO_VGA_PORTS) as u16, size, val),
            0x500..=0x515 => {
                self.dispi_index = ((offset - MMIO_DISPI) / 2) as u16;
                self.dispi_write(val as u16);
            }
            _ => {}
        }
    }
}

fn size_mask(size: u8) -> u32 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    }
}

/// Input status 1 at virtual time `now`: 70 Hz frames of 449 lines, 400 displayed, retrace
/// on lines 412–413, horizontal blanking in the last fifth of each line.
fn status1(now: VirtTime) -> u8 {
    let in_frame = now % FRAME_NS;
    let line_ns = FRAME_NS / TOTAL_LINES;
    let line = in_frame / line_ns;
    let in_line = in_frame % line_ns;
    let mut v = 0;
    if line >= DISPLAY_LINES || in_line >= line_ns * 4 / 5 {
        v |= ST1_DISPLAY_DISABLED;
    }
    if (RETRACE_START..RETRACE_START + RETRACE_LINES).contains(&line) {
        v |= ST1_VRETRACE;
    }
    v
}

/// Saved state of the VGA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VgaState {
    /// Misc output.
    pub misc: u8,
    /// Feature control.
    pub feature: u8,
    /// Sequencer index and registers.
    pub seq_index: u8,
    /// Sequencer registers.
    pub seq: Vec<u8>,
    /// Graphics controller index.
    pub gc_index: u8,
    /// Graphics controller registers.
    pub gc: Vec<u8>,
    /// CRTC index.
    pub crtc_index: u8,
    /// CRTC registers.
    pub crtc: Vec<u8>,
    /// Attribute controller index.
    pub ar_index: u8,
    /// Attribute controller registers.
    pub ar: Vec<u8>,
    /// Attribute flip-flop (true: next 0x3C0 write is data).
    pub ar_flip: bool,
    /// DAC read index.
    pub dac_read_index: u8,
    /// DAC write index.
    pub dac_write_index: u8,
    /// DAC component step (0–2).
    pub dac_sub: u8,
    /// DAC in read mode.
    pub dac_reading: bool,
    /// Partially written DAC entry.
    pub dac_latch: [u8; 3],
    /// Pixel mask.
    pub pel_mask: u8,
    /// DAC palette, 768 bytes.
    pub dac: Vec<u8>,
    /// Planar latches.
    pub latch: [u8; 4],
    /// DISPI index.
    pub dispi_index: u16,
    /// DISPI registers.
    pub dispi: Vec<u16>,
    /// Video memory up to its last non-zero byte (the rest is zero).
    pub vram: Vec<u8>,
}

impl Snapshot for Vga {
    type State = VgaState;

    fn save(&self) -> VgaState {
        let used = self.vram.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        VgaState {
            misc: self.misc,
            feature: self.feature,
            seq_index: self.seq_index,
            seq: self.seq.to_vec(),
            gc_index: self.gc_index,
            gc: self.gc.to_vec(),
            crtc_index: self.crtc_index,
            crtc: self.crtc.to_vec(),
            ar_index: self.ar_index,
            ar: self.ar.to_vec(),
            ar_flip: self.ar_flip,
            dac_read_index: self.dac_read_index,
            dac_write_index: self.dac_write_index,
            dac_sub: self.dac_sub,
            dac_reading: self.dac_reading,
            dac_latch: self.dac_latch,
            pel_mask: self.pel_mask,
            dac: self.dac.to_vec(),
            latch: self.latch,
            dispi_index: self.dispi_index,
            dispi: self.dispi.to_vec(),
            vram: self.vram[..used].to_vec(),
        }
    }

    fn restore(&mut self, s: &VgaState) -> Result<(), StateError> {
        fn arr<const N: usize, T: Copy + Default>(
            v: &[T],
            what: &str,
        ) -> Result<[T; N], StateError> {
            <[T; N]>::try_from(v).map_err(|_| {
                StateError::new("vga", format!("{what}: {} entries, expected {N}", v.len()))
            })
        }
        let seq = arr::<8, u8>(&s.seq, "sequencer")?;
        let gc = arr::<16, u8>(&s.gc, "graphics controller")?;
        let crtc = arr::<CRTC_REGS, u8>(&s.crtc, "CRTC")?;
        let ar = arr::<AR_REGS, u8>(&s.ar, "attribute controller")?;
        let dac = arr::<768, u8>(&s.dac, "DAC")?;
        let dispi = arr::<DISPI_REGS, u16>(&s.dispi, "DISPI")?;
        if s.vram.len() > VRAM_SIZE {
            return Err(StateError::new(
                "vga",
                format!("{} bytes of video memory", s.vram.len()),
            ));
        }
        if s.dac_sub > 2
            || s.seq_index > 7
            || s.gc_index > 0x0F
            || s.crtc_index > 0x3F
            || s.ar_index > 0x3F
        {
            return Err(StateError::new("vga", "register index out of range"));
        }
        let bpp = dispi[DISPI_INDEX_BPP as usize];
        if !matches!(bpp, 4 | 8 | 15 | 16 | 24 | 32)
            || dispi[DISPI_INDEX_XRES as usize] > DISPI_MAX_XRES
            || dispi[DISPI_INDEX_YRES as usize] > DISPI_MAX_YRES
            || usize::from(dispi[DISPI_INDEX_BANK as usize]) >= VRAM_SIZE >> 16
        {
            return Err(StateError::new("vga", "DISPI registers out of range"));
        }
        self.misc = s.misc;
        self.feature = s.feature;
        self.seq_index = s.seq_index;
        self.seq = seq;
        self.gc_index = s.gc_index;
        self.gc = gc;
        self.crtc_index = s.crtc_index;
        self.crtc = crtc;
        self.ar_index = s.ar_index;
        self.ar = ar;
        self.ar_flip = s.ar_flip;
        self.dac_read_index = s.dac_read_index;
        self.dac_write_index = s.dac_write_index;
        self.dac_sub = s.dac_sub;
        self.dac_reading = s.dac_reading;
        self.dac_latch = s.dac_latch;
        self.pel_mask = s.pel_mask;
        self.dac = dac;
        self.latch = s.latch;
        self.dispi_index = s.dispi_index;
        self.dispi = dispi;
        self.vram[..s.vram.len()].copy_from_slice(&s.vram);
        self.vram[s.vram.len()..].fill(0);
        self.render.invalidate();
        Ok(())
    }
}

crate::snapshot_tests!(vga_snapshot, Vga::new, |v: &mut Vga| {
    v.io_write(PORT_MISC_WRITE, 1, 0x67);
    v.io_write(PORT_SEQ_INDEX, 2, 0x0F02);
    v.io_write(PORT_CRTC_INDEX_COLOR, 2, 0x550E);
    v.io_write(PORT_DAC_WRITE_INDEX, 1, 7);
    v.io_write(PORT_DAC_DATA, 1, 0x2A);
    v.mem_write(0x1_8000, 0x41);
    v.io_write(PORT_DISPI_INDEX, 2, u32::from(DISPI_INDEX_XRES));
    v.io_write(PORT_DISPI_DATA, 2, 800);
});

#[cfg(test)]
mod tests;
