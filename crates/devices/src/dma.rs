//! Intel 8237 DMA controller pair of the PC: channels 0-3 (8-bit, ports 0x00-0x0F) and 4-7
//! (16-bit, ports 0xC0-0xDE, even addresses), with the page registers at 0x80-0x8F.
//!
//! Ports given to [`Dma::read`]/[`Dma::write`] are **absolute**. Devices (the floppy
//! controller) move data with [`Dma::write_memory`] and [`Dma::read_memory`]; every guest
//! memory write goes through [`Memory::write_phys`]. Channel 4 is the cascade and never
//! transfers. Port 0x80 is accepted as a plain page-range register; the board may route
//! it to the POST port instead.

use serde::{Deserialize, Serialize};
use wasm86_memory::Memory;

use crate::{Snapshot, StateError};

/// First port of the 8-bit controller.
pub const PORT_DMA1: u16 = 0x00;
/// First port of the 16-bit controller (registers at even addresses).
pub const PORT_DMA2: u16 = 0xC0;
/// First page register port.
pub const PORT_PAGE: u16 = 0x80;

/// Controller register: status (read) / command (write).
const REG_STATUS_CMD: u16 = 8;
/// Controller register: request.
const REG_REQUEST: u16 = 9;
/// Controller register: single mask bit.
const REG_SINGLE_MASK: u16 = 10;
/// Controller register: mode.
const REG_MODE: u16 = 11;
/// Controller register: clear byte-pointer flip-flop.
const REG_CLEAR_FF: u16 = 12;
/// Controller register: temporary (read) / master clear (write).
const REG_TEMP_MASTER_CLEAR: u16 = 13;
/// Controller register: clear mask register.
const REG_CLEAR_MASK: u16 = 14;
/// Controller register: write all mask bits (reads back the mask).
const REG_ALL_MASK: u16 = 15;

/// Command register: controller disable.
const CMD_DISABLE: u8 = 0x04;
/// Mode: transfer type field (bits 3-2): 0 verify, 1 write to memory, 2 read from memory.
const MODE_TYPE_SHIFT: u8 = 2;
/// Mode: autoinitialisation.
const MODE_AUTOINIT: u8 = 0x10;
/// Mode: address decrement.
const MODE_DECREMENT: u8 = 0x20;
/// Mode: cascade (bits 7-6 = 3).
const MODE_CASCADE: u8 = 0xC0;
/// Request/mask register: set (bit 2) rather than clear.
const SET_BIT: u8 = 0x04;

/// Page register port of each channel (channel 4's is the refresh page register).
const PAGE_PORTS: [u16; 8] = [0x87, 0x83, 0x81, 0x82, 0x8F, 0x8B, 0x89, 0x8A];

/// Saved state of one channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// Base address (bytes for 8-bit channels, words for 16-bit ones).
    pub base_addr: u16,
    /// Base count (transfers - 1).
    pub base_count: u16,
    /// Current address.
    pub cur_addr: u16,
    /// Current count.
    pub cur_count: u16,
    /// Mode register.
    pub mode: u8,
}

/// Saved state of one 8237.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    /// The four channels.
    pub channels: Vec<ChannelState>,
    /// Byte-pointer flip-flop (true: the high byte is next).
    pub flip_flop: bool,
    /// Terminal count bits (0-3); request bits come from `request`.
    pub tc: u8,
    /// Command register.
    pub command: u8,
    /// Mask bits (0-3).
    pub mask: u8,
    /// Software request bits (0-3).
    pub request: u8,
    /// Temporary register.
    pub temp: u8,
}

impl ControllerState {
    fn new() -> ControllerState {
        ControllerState {
            channels: vec![ChannelState::default(); 4],
            flip_flop: false,
            tc: 0,
            command: 0,
            mask: 0x0F,
            request: 0,
            temp: 0,
        }
    }
}

/// Saved state of the DMA pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmaState {
    /// Controller 1 (channels 0-3) and controller 2 (channels 4-7).
    pub controllers: Vec<ControllerState>,
    /// Page registers 0x80-0x8F.
    pub pages: Vec<u8>,
}

/// Direction a device asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToMemory,
    FromMemory,
}

/// The two 8237s and the page registers.
#[derive(Clone, Debug)]
pub struct Dma {
    s: DmaState,
}

impl Dma {
    /// The pair after reset: all channels masked.
    pub fn new() -> Dma {
        Dma {
            s: DmaState {
                controllers: vec![ControllerState::new(), ControllerState::new()],
                pages: vec![0; 16],
            },
        }
    }

    /// Controller and register index for a port, if it is one of ours.
    fn decode(port: u16) -> Option<(usize, u16)> {
        match port {
            0x00..=0x0F => Some((0, port)),
            0xC0..=0xDF if port & 1 == 0 => Some((1, (port - PORT_DMA2) >> 1)),
            _ => None,
        }
    }

    /// Port read (absolute port). Unknown ports read 0xFF.
    pub fn read(&mut self, port: u16) -> u8 {
        if (PORT_PAGE..PORT_PAGE + 16).contains(&port) {
            return self
                .s
                .pages
                .get(usize::from(port - PORT_PAGE))
                .copied()
                .unwrap_or(0xFF);
        }
        let Some((c, reg)) = Dma::decode(port) else {
            return 0xFF;
        };
        let Some(ctl) = self.s.controllers.get_mut(c) else {
            return 0xFF;
        };
        match reg {
            0..=7 => {
                let Some(ch) = ctl.channels.get(usize::from(reg >> 1)) else {
                    return 0xFF;
                };
                let v = if reg & 1 == 0 {
                    ch.cur_addr
                } else {
                    ch.cur_count
                };
                let hi = ctl.flip_flop;
                ctl.flip_flop = !hi;
                if hi {
                    (v >> 8) as u8
                } else {
                    v as u8
                }
            }
            REG_STATUS_CMD => {
                let v = ctl.tc | (ctl.request & 0x0F) << 4;
                ctl.tc = 0;
                v
            }
            REG_TEMP_MASTER_CLEAR => ctl.temp,
            REG_ALL_MASK => 0xF0 | ctl.mask,
            _ => 0xFF,
        }
    }

    /// Port write (absolute port). Unknown ports are ignored.
    pub fn write(&mut self, port: u16, v: u8) {
        if (PORT_PAGE..PORT_PAGE + 16).contains(&port) {
            if let Some(p) = self.s.pages.get_mut(usize::from(port - PORT_PAGE)) {
                *p = v;
            }
            return;
        }
        let Some((c, reg)) = Dma::decode(port) else {
            return;
        };
        let Some(ctl) = self.s.controllers.get_mut(c) else {
            return;
        };
        let sel = usize::from(v & 3);
        match reg {
            0..=7 => {
                let hi = ctl.flip_flop;
                ctl.flip_flop = !hi;
                let Some(ch) = ctl.channels.get_mut(usize::from(reg >> 1)) else {
                    return;
                };
                let set = |old: u16| {
                    if hi {
                        (old & 0x00FF) | u16::from(v) << 8
                    } else {
                        (old & 0xFF00) | u16::from(v)
                    }
                };
                if reg & 1 == 0 {
                    ch.base_addr = set(ch.base_addr);
                    ch.cur_addr = ch.base_addr;
                } else {
                    ch.base_count = set(ch.base_count);
                    ch.cur_count = ch.base_count;
                }
            }
            REG_STATUS_CMD => ctl.command = v,
            REG_REQUEST => {
                if v & SET_BIT != 0 {
                    ctl.request |= 1 << sel;
                } else {
                    ctl.request &= !(1 << sel);
                }
            }
            REG_SINGLE_MASK => {
                if v & SET_BIT != 0 {
                    ctl.mask |= 1 << sel;
                } else {
                    ctl.mask &= !(1 << sel);
                }
            }
            REG_MODE => {
                if let Some(ch) = ctl.channels.get_mut(sel) {
                    ch.mode = v;
                }
            }
            REG_CLEAR_FF => ctl.flip_flop = false,
            REG_TEMP_MASTER_CLEAR => {
                ctl.command = 0;
                ctl.tc = 0;
                ctl.request = 0;
                ctl.temp = 0;
                ctl.flip_flop = false;
                ctl.mask = 0x0F;
            }
            REG_CLEAR_MASK => ctl.mask = 0,
            REG_ALL_MASK => ctl.mask = v & 0x0F,
            _ => {}
        }
    }

    fn channel(&self, ch: usize) -> Option<(&ControllerState, &ChannelState)> {
        let ctl = self.s.controllers.get(ch / 4)?;
        Some((ctl, ctl.channels.get(ch % 4)?))
    }

    /// Whether channel `ch` (0-7) can transfer: controller enabled, channel unmasked and not
    /// programmed as the cascade.
    pub fn channel_ready(&self, ch: usize) -> bool {
        self.channel(ch).is_some_and(|(ctl, c)| {
            ch != 4
                && ctl.command & CMD_DISABLE == 0
                && ctl.mask & (1 << (ch % 4)) == 0
                && c.mode & MODE_CASCADE != MODE_CASCADE
        })
    }

    /// Whether channel `ch` reached terminal count (since the status register was last read).
    pub fn terminal_count(&self, ch: usize) -> bool {
        self.channel(ch)
            .is_some_and(|(ctl, _)| ctl.tc & (1 << (ch % 4)) != 0)
    }

    /// Bytes left before terminal count on channel `ch` (0 for a bad channel).
    pub fn remaining(&self, ch: usize) -> usize {
        let unit = if ch >= 4 { 2 } else { 1 };
        self.channel(ch)
            .map_or(0, |(_, c)| (usize::from(c.cur_count) + 1) * unit)
    }

    /// Moves up to `len` bytes on channel `ch`, calling `op(phys, offset, bytes)` for each
    /// contiguous piece; advances address and count and handles terminal count.
    fn transfer(
        &mut self,
        ch: usize,
        dir: Dir,
        len: usize,
        mut op: impl FnMut(u32, usize, usize),
    ) -> usize {
        if !self.channel_ready(ch) {
            return 0;
        }
        let unit = if ch >= 4 { 2 } else { 1 };
        let page = self
            .s
            .pages
            .get(usize::from(PAGE_PORTS[ch] - PORT_PAGE))
            .copied()
            .unwrap_or(0);
        let (ci, idx) = (ch / 4, ch % 4);
        let Some(ctl) = self.s.controllers.get_mut(ci) else {
            return 0;
        };
        let Some(c) = ctl.channels.get_mut(idx) else {
            return 0;
        };
        let kind = (c.mode >> MODE_TYPE_SHIFT) & 3;
        let verify = kind == 0;
        let wanted = match dir {
            Dir::ToMemory => 1,
            Dir::FromMemory => 2,
        };
        if !verify && kind != wanted {
            return 0;
        }
        let left = u32::from(c.cur_count) + 1;
        let units = left.min(u32::try_from(len / unit).unwrap_or(u32::MAX));
        let phys = |addr: u16| -> u32 {
            if unit == 1 {
                u32::from(page) << 16 | u32::from(addr)
            } else {
                u32::from(page & 0xFE) << 16 | u32::from(addr) << 1
            }
        };
        let mut done = 0u32;
        if c.mode & MODE_DECREMENT != 0 {
            while done < units {
                if !verify {
                    op(phys(c.cur_addr), done as usize * unit, unit);
                }
                c.cur_addr = c.cur_addr.wrapping_sub(1);
                done += 1;
            }
        } else {
            while done < units {
                let to_wrap = 0x1_0000 - u32::from(c.cur_addr);
                let n = (units - done).min(to_wrap);
                if !verify {
                    op(phys(c.cur_addr), done as usize * unit, n as usize * unit);
                }
                c.cur_addr = c.cur_addr.wrapping_add(n as u16);
                done += n;
            }
        }
        c.cur_count = c.cur_count.wrapping_sub(units as u16);
        if units == left {
            ctl.tc |= 1 << idx;
            ctl.request &= !(1 << idx);
            if c.mode & MODE_AUTOINIT != 0 {
                c.cur_addr = c.base_addr;
                c.cur_count = c.base_count;
            } else {
                ctl.mask |= 1 << idx;
            }
        }
        units as usize * unit
    }

    /// Device → memory (a read from the disk). Copies up to the remaining count, advances
    /// address/count, sets TC (status) when exhausted; returns bytes moved. Nothing moves
    /// unless the channel is ready and programmed for a write to memory (or verify, which
    /// counts without touching memory). 16-bit channels move whole words only.
    pub fn write_memory(&mut self, ch: usize, mem: &mut Memory, data: &[u8]) -> usize {
        self.transfer(ch, Dir::ToMemory, data.len(), |phys, off, n| {
            if let Some(src) = data.get(off..off + n) {
                mem.write_phys(phys, src);
            }
        })
    }

    /// Memory → device. Fills up to buf.len() bytes; returns bytes moved (see
    /// [`Dma::write_memory`]; a verify transfer leaves `buf` untouched).
    pub fn read_memory(&mut self, ch: usize, mem: &Memory, buf: &mut [u8]) -> usize {
        let len = buf.len();
        self.transfer(ch, Dir::FromMemory, len, |phys, off, n| {
            if let Some(dst) = buf.get_mut(off..off + n) {
                mem.read_phys(phys, dst);
            }
        })
    }
}

impl Snapshot for Dma {
    type State = DmaState;

    fn save(&self) -> DmaState {
        self.s.clone()
    }

    fn restore(&mut self, state: &DmaState) -> Result<(), StateError> {
        let bad = |r: &str| Err(StateError::new("dma", r));
        if state.controllers.len() != 2 || state.pages.len() != 16 {
            return bad("expected 2 controllers and 16 page registers");
        }
        for c in &state.controllers {
            if c.channels.len() != 4 {
                return bad("expected 4 channels per controller");
            }
            if (c.tc | c.mask | c.request) & 0xF0 != 0 {
                return bad("status bits out of range");
            }
        }
        self.s = state.clone();
        Ok(())
    }
}

crate::snapshot_tests!(dma_snapshot, Dma::new, |d: &mut Dma| {
    d.write(0x0A, 0x06);
    d.write(0x0C, 0);
    d.write(0x04, 0x00);
    d.write(0x04, 0x10);
    d.write(0x05, 0xFF);
    d.write(0x05, 0x01);
    d.write(0x0B, 0x46);
    d.write(0x81, 0x02);
    d.write(0x0A, 0x02);
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Programs channel 2 as SeaBIOS's floppy code does.
    fn setup_ch2(d: &mut Dma, addr: u32, count: u16, mode: u8) {
        d.write(0x0A, 0x06);
        d.write(0x0C, 0);
        d.write(0x04, addr as u8);
        d.write(0x04, (addr >> 8) as u8);
        d.write(0x0C, 0);
        d.write(0x05, (count - 1) as u8);
        d.write(0x05, ((count - 1) >> 8) as u8);
        d.write(0x0B, mode);
        d.write(0x81, (addr >> 16) as u8);
        d.write(0x0A, 0x02);
    }

    fn mem() -> Memory {
        Memory::new(2 << 20).expect("memory")
    }

    #[test]
    fn floppy_read_into_memory_with_tc() {
        let mut d = Dma::new();
        let mut m = mem();
        assert!(!d.channel_ready(2));
        setup_ch2(&mut d, 0x1_2000, 1024, 0x46);
        assert!(d.channel_ready(2));
        let sector: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
        assert_eq!(d.write_memory(2, &mut m, &sector), 512);
        assert!(!d.terminal_count(2));
        assert_eq!(d.remaining(2), 512);
        assert_eq!(d.write_memory(2, &mut m, &sector), 512);
        assert!(d.terminal_count(2));
        assert_eq!(d.write_memory(2, &mut m, &sector), 0, "masked after TC");
        let mut back = vec![0u8; 1024];
        m.read_phys(0x1_2000, &mut back);
        assert_eq!(&back[..512], &sector[..]);
        assert_eq!(&back[512..], &sector[..]);
        // Current address/count read back through the flip-flop.
        d.write(0x0C, 0);
        assert_eq!(d.read(0x04), 0x00);
        assert_eq!(d.read(0x04), 0x24);
        assert_eq!(d.read(0x05), 0xFF);
        assert_eq!(d.read(0x05), 0xFF);
        // Status: TC of channel 2, cleared by the read.
        assert_eq!(d.read(0x08) & 0x0F, 0x04);
        assert_eq!(d.read(0x08) & 0x0F, 0x00);
        assert!(!d.terminal_count(2));
    }

    #[test]
    fn memory_to_device_and_direction_check() {
        let mut d = Dma::new();
        let mut m = mem();
        m.write_phys(0x8000, b"hello dma");
        setup_ch2(&mut d, 0x8000, 5, 0x4A);
        let mut buf = [0u8; 16];
        assert_eq!(d.write_memory(2, &mut m, b"zzzz"), 0, "wrong direction");
        assert_eq!(d.read_memory(2, &m, &mut buf), 5);
        assert_eq!(&buf[..5], b"hello");
        assert!(d.terminal_count(2));
    }

    #[test]
    fn autoinit_reloads() {
        let mut d = Dma::new();
        let mut m = mem();
        setup_ch2(&mut d, 0x4000, 4, 0x56); // write, autoinit
        assert_eq!(d.write_memory(2, &mut m, b"abcd"), 4);
        assert!(d.terminal_count(2));
        assert!(d.channel_ready(2), "autoinit keeps the channel unmasked");
        assert_eq!(d.write_memory(2, &mut m, b"efgh"), 4);
        let mut back = [0u8; 4];
        m.read_phys(0x4000, &mut back);
        assert_eq!(&back, b"efgh");
    }

    #[test]
    fn decrement_mode() {
        let mut d = Dma::new();
        let mut m = mem();
        setup_ch2(&mut d, 0x5003, 4, 0x66); // write, decrement
        assert_eq!(d.write_memory(2, &mut m, b"abcd"), 4);
        let mut back = [0u8; 4];
        m.read_phys(0x5000, &mut back);
        assert_eq!(&back, b"dcba");
    }

    #[test]
    fn address_wraps_within_the_page() {
        let mut d = Dma::new();
        let mut m = mem();
        setup_ch2(&mut d, 0x1_FFFE, 4, 0x46);
        assert_eq!(d.write_memory(2, &mut m, b"wxyz"), 4);
        let mut a = [0u8; 2];
        m.read_phys(0x1_FFFE, &mut a);
        assert_eq!(&a, b"wx");
        m.read_phys(0x1_0000, &mut a);
        assert_eq!(&a, b"yz", "the page register does not increment");
    }

    #[test]
    fn sixteen_bit_channel_uses_word_addresses() {
        let mut d = Dma::new();
        let mut m = mem();
        // Channel 5: address port 0xC4, count 0xC6, page 0x8B.
        d.write(0xD8, 0); // clear flip-flop
        d.write(0xC4, 0x00);
        d.write(0xC4, 0x08); // word 0x0800 = byte 0x1000
        d.write(0xC6, 0x01);
        d.write(0xC6, 0x00); // 2 words
        d.write(0xD6, 0x45); // channel 1 of controller 2: write
        d.write(0x8B, 0x03); // bit 0 ignored for 16-bit: 0x20000
        d.write(0xD4, 0x01); // unmask
        assert!(d.channel_ready(5));
        assert_eq!(d.write_memory(5, &mut m, b"ABCDE"), 4);
        let mut back = [0u8; 4];
        m.read_phys(0x2_1000, &mut back);
        assert_eq!(&back, b"ABCD");
        assert!(d.terminal_count(5));
        assert!(!d.channel_ready(4), "channel 4 is the cascade");
    }

    #[test]
    fn masks_master_clear_and_disable() {
        let mut d = Dma::new();
        d.write(0x0E, 0); // clear mask
        assert_eq!(d.read(0x0F), 0xF0);
        d.write(0x0F, 0x05);
        assert_eq!(d.read(0x0F), 0xF5);
        d.write(0x0D, 0); // master clear
        assert_eq!(d.read(0x0F), 0xFF);
        d.write(0x0E, 0);
        d.write(0x08, CMD_DISABLE);
        assert!(!d.channel_ready(1));
        d.write(0x08, 0);
        assert!(d.channel_ready(1));
        d.write(0x09, 0x05); // request channel 1
        assert_eq!(d.read(0x08), 0x20);
        d.write(0x0D, 0);
        assert_eq!(d.read(0x08), 0);
        assert_eq!(d.read(0xC1), 0xFF, "odd ports are not decoded");
    }

    #[test]
    fn restore_rejects_bad_states() {
        let mut d = Dma::new();
        let good = d.save();
        let mut bad = good.clone();
        bad.controllers.pop();
        assert!(d.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.controllers[1].channels.push(ChannelState::default());
        assert!(d.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.pages.push(0);
        assert!(d.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.controllers[0].mask = 0x10;
        assert!(d.restore(&bad).is_err());
        assert_eq!(d.save(), good);
    }

    /// Deterministic pseudo-random bytes for the robustness tests.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    #[test]
    fn random_io_never_panics() {
        let mut d = Dma::new();
        let mut m = mem();
        let mut r = 6u64;
        let buf = [0x5Au8; 700];
        for _ in 0..50_000 {
            let port = match lcg(&mut r) % 3 {
                0 => (lcg(&mut r) % 0x10) as u16,
                1 => 0xC0 + (lcg(&mut r) % 0x20) as u16,
                _ => 0x80 + (lcg(&mut r) % 0x10) as u16,
            };
            match lcg(&mut r) % 5 {
                0 | 1 => d.write(port, lcg(&mut r) as u8),
                2 => {
                    d.read(port);
                }
                3 => {
                    let ch = (lcg(&mut r) % 9) as usize;
                    let n = d.write_memory(ch, &mut m, &buf[..(lcg(&mut r) % 700) as usize]);
                    assert!(n <= 700);
                }
                _ => {
                    let ch = (lcg(&mut r) % 9) as usize;
                    let mut out = [0u8; 300];
                    assert!(d.read_memory(ch, &m, &mut out) <= 300);
                }
            }
        }
    }
}
