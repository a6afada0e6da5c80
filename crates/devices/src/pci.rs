//! PCI bus 0 of a QEMU `pc`: configuration mechanism #1 and the i440FX/PIIX3 chipset functions.
//!
//! The host programs configuration space through ports 0xCF8 (address, 32-bit, readable) and
//! 0xCFC–0xCFF (data, byte/word/dword at any offset). Each function is a [`PciConfig`]: 256
//! bytes with per-byte write masks, write-1-to-clear status bits and BARs described by kind
//! and size, so size probing with all-ones writes works as on hardware.
//!
//! [`PciBus::pc`] builds the functions of a QEMU `pc` machine:
//!
//! | address | device | what the board reads from it |
//! |---|---|---|
//! | 00:00.0 | i440FX host bridge 8086:1237 | [`PciBus::pam`], [`PciBus::smram`] |
//! | 00:01.0 | PIIX3 ISA bridge 8086:7000 | [`PciBus::pirq_route`], [`PciBus::irq_for`] |
//! | 00:01.1 | PIIX3 IDE 8086:7010 | [`PciBus::ide_bm_base`], [`PciBus::ide_command`] |
//! | 00:02.0 | std VGA 1234:1111 | [`PciBus::bar_base`] (LFB, MMIO), [`PciBus::rom_base`] |
//!
//! Writes that change what the board maps queue a [`PciEvent`]; the board drains them with
//! [`PciBus::take_events`] after each port write. [`PciBus::query`] describes the live
//! configuration for QMP `query-pci`.

use serde::{Deserialize, Serialize};

use crate::{Snapshot, StateError};

/// Configuration address register port (32-bit, readable).
pub const CONFIG_ADDRESS_PORT: u16 = 0xCF8;
/// PIIX3 reset control register (byte port inside the 0xCF8 dword).
pub const RESET_CONTROL_PORT: u16 = 0xCF9;
/// Reset control bit 1: system (hard) reset when a reset is triggered.
pub const RCR_SYS_RST: u8 = 1 << 1;
/// Reset control bit 2: writing 1 triggers the reset.
pub const RCR_RST_CPU: u8 = 1 << 2;
/// First configuration data port (0xCFC–0xCFF).
pub const CONFIG_DATA_PORT: u16 = 0xCFC;

/// Size of a conventional configuration space.
pub const CONFIG_SPACE_SIZE: usize = 256;

/// Config offset: vendor ID (16-bit).
pub const REG_VENDOR_ID: usize = 0x00;
/// Config offset: device ID (16-bit).
pub const REG_DEVICE_ID: usize = 0x02;
/// Config offset: command register (16-bit).
pub const REG_COMMAND: usize = 0x04;
/// Config offset: status register (16-bit).
pub const REG_STATUS: usize = 0x06;
/// Config offset: revision ID.
pub const REG_REVISION: usize = 0x08;
/// Config offset: programming interface.
pub const REG_PROG_IF: usize = 0x09;
/// Config offset: sub-class (class code is 16 bits at 0x0A: sub-class, base class).
pub const REG_CLASS: usize = 0x0A;
/// Config offset: cache line size.
pub const REG_CACHE_LINE_SIZE: usize = 0x0C;
/// Config offset: header type (bit 7: multifunction).
pub const REG_HEADER_TYPE: usize = 0x0E;
/// Config offset: first base address register.
pub const REG_BAR0: usize = 0x10;
/// Config offset: subsystem vendor ID.
pub const REG_SUBSYSTEM_VENDOR_ID: usize = 0x2C;
/// Config offset: subsystem ID.
pub const REG_SUBSYSTEM_ID: usize = 0x2E;
/// Config offset: expansion ROM base address.
pub const REG_ROM_ADDRESS: usize = 0x30;
/// Config offset: interrupt line (written by firmware).
pub const REG_INTERRUPT_LINE: usize = 0x3C;
/// Config offset: interrupt pin (1 = INTA … 4 = INTD, 0 = none).
pub const REG_INTERRUPT_PIN: usize = 0x3D;
/// End of the standard type-0 header; device-specific registers follow.
pub const HEADER_SIZE: usize = 0x40;

/// Command bit: I/O space decode enable.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command bit: memory space decode enable.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command bit: bus master enable.
pub const COMMAND_MASTER: u16 = 1 << 2;
/// Command bit: parity error response.
pub const COMMAND_PARITY: u16 = 1 << 6;
/// Command bit: SERR# enable.
pub const COMMAND_SERR: u16 = 1 << 8;
/// Command bit: INTx disable.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Command bits a guest may change.
const COMMAND_WRITABLE: u16 = COMMAND_IO
    | COMMAND_MEMORY
    | COMMAND_MASTER
    | COMMAND_PARITY
    | COMMAND_SERR
    | COMMAND_INTX_DISABLE;
/// Status bits that are cleared by writing 1 (parity, SERR, aborts, master data parity).
const STATUS_W1C: u16 = 0xF900;

/// BAR bit 0: the BAR is an I/O BAR.
pub const BAR_IO: u32 = 1;
/// Memory BAR bit 3: prefetchable.
pub const BAR_MEM_PREFETCH: u32 = 1 << 3;
/// Memory BAR bits 2:1 = 2: 64-bit BAR.
pub const BAR_MEM_TYPE_64: u32 = 2 << 1;
/// Expansion ROM BAR bit 0: decode enable.
pub const ROM_ENABLE: u32 = 1;
/// Expansion ROM BAR address bits.
const ROM_ADDRESS_MASK: u32 = 0xFFFF_F800;

/// i440FX: first PAM register (PAM0 at 0x59; SeaBIOS writes dwords at 0x58 and 0x5C).
pub const I440FX_PAM0: usize = 0x59;
/// i440FX: number of PAM registers.
pub const I440FX_PAM_COUNT: usize = 7;
/// i440FX: SMRAM control register.
pub const I440FX_SMRAM: usize = 0x72;
/// SMRAM bit: D_OPEN (SMRAM visible outside SMM).
pub const SMRAM_D_OPEN: u8 = 1 << 6;
/// SMRAM bit: D_CLS.
pub const SMRAM_D_CLS: u8 = 1 << 5;
/// SMRAM bit: D_LCK (locks D_OPEN and G_SMRAME until reset).
pub const SMRAM_D_LCK: u8 = 1 << 4;
/// SMRAM bit: G_SMRAME (global SMRAM enable).
pub const SMRAM_G_SMRAME: u8 = 1 << 3;
/// SMRAM: C_BASE_SEG field, hard-wired to 0b010 (0xA0000).
pub const SMRAM_C_BASE_SEG: u8 = 0x02;

/// PIIX3: first PIRQ route control register (PIRQA at 0x60 … PIRQD at 0x63).
pub const PIIX3_PIRQRC: usize = 0x60;
/// PIIX3 PIRQ route bit 7: routing disabled.
pub const PIRQ_DISABLE: u8 = 0x80;

/// Device/function number of the host bridge (00:00.0).
pub const DEVFN_HOST_BRIDGE: u8 = devfn(0, 0);
/// Device/function number of the ISA bridge (00:01.0).
pub const DEVFN_ISA_BRIDGE: u8 = devfn(1, 0);
/// Device/function number of the IDE function (00:01.1).
pub const DEVFN_IDE: u8 = devfn(1, 1);
/// Device/function number of the VGA (00:02.0).
pub const DEVFN_VGA: u8 = devfn(2, 0);

/// PIIX3 IDE bus-master BAR index (16 bytes of I/O).
pub const IDE_BM_BAR: usize = 4;
/// VGA BAR index of the linear framebuffer.
pub const VGA_LFB_BAR: usize = 0;
/// VGA BAR index of the MMIO block (VGA ports at 0x400, DISPI at 0x500).
pub const VGA_MMIO_BAR: usize = 2;
/// Size of the VGA linear framebuffer BAR (16 MiB).
pub const VGA_LFB_SIZE: u32 = 16 << 20;
/// Size of the VGA MMIO BAR.
pub const VGA_MMIO_SIZE: u32 = 4096;
/// Size of the VGA expansion ROM BAR.
pub const VGA_ROM_SIZE: u32 = 64 << 10;

/// Maximum number of queued events before they are collapsed into [`PciEvent::Resync`].
const MAX_EVENTS: usize = 256;

/// Builds a device/function number (`dev` 0–31, `func` 0–7).
pub const fn devfn(dev: u8, func: u8) -> u8 {
    ((dev & 0x1F) << 3) | (func & 7)
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarKind {
    /// I/O space.
    Io,
    /// 32-bit memory space.
    Memory {
        /// Prefetchable memory.
        prefetchable: bool,
    },
}

/// Description of one implemented BAR: kind and size (a power of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarDesc {
    /// I/O or memory.
    pub kind: BarKind,
    /// Size in bytes (power of two, at least 4 for I/O and 16 for memory).
    pub size: u32,
}

/// Errors building a configuration space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PciError {
    /// BAR index out of range 0–5.
    #[error("BAR index {0} out of range")]
    BadBarIndex(usize),
    /// BAR or ROM size is not a power of two or is too small.
    #[error("bad BAR size {0:#x}")]
    BadBarSize(u32),
    /// A function already exists at this device/function number.
    #[error("PCI function {0:02x}.{1} already present")]
    Occupied(u8, u8),
}

/// The configuration space of one PCI function.
#[derive(Clone, Debug)]
pub struct PciConfig {
    data: [u8; CONFIG_SPACE_SIZE],
    /// Contents at power-on (captured when the function is added to a bus).
    power_on: [u8; CONFIG_SPACE_SIZE],
    wmask: [u8; CONFIG_SPACE_SIZE],
    w1c: [u8; CONFIG_SPACE_SIZE],
    bars: [Option<BarDesc>; 6],
    rom_size: u32,
}

impl PciConfig {
    /// A type-0 header with the given identity. `class` is base class << 8 | sub-class.
    /// The command register, cache line size, interrupt line and everything from 0x40 up are
    /// writable (QEMU's default); the rest is read-only.
    pub fn new(vendor: u16, device: u16, class: u16, prog_if: u8, revision: u8) -> PciConfig {
        let mut c = PciConfig {
            data: [0; CONFIG_SPACE_SIZE],
            power_on: [0; CONFIG_SPACE_SIZE],
            wmask: [0; CONFIG_SPACE_SIZE],
            w1c: [0; CONFIG_SPACE_SIZE],
            bars: [None; 6],
            rom_size: 0,
        };
        c.set_u16(REG_VENDOR_ID, vendor);
        c.set_u16(REG_DEVICE_ID, device);
        c.data[REG_REVISION] = revision;
        c.data[REG_PROG_IF] = prog_if;
        c.set_u16(REG_CLASS, class);
        c.wmask[REG_COMMAND..REG_COMMAND + 2].copy_from_slice(&COMMAND_WRITABLE.to_le_bytes());
        c.w1c[REG_STATUS..REG_STATUS + 2].copy_from_slice(&STATUS_W1C.to_le_bytes());
        c.wmask[REG_CACHE_LINE_SIZE] = 0xFF;
        c.wmask[REG_INTERRUPT_LINE] = 0xFF;
        c.wmask[HEADER_SIZE..].fill(0xFF);
        c
    }

    /// Sets the header type byte (0x80 marks a multifunction device).
    pub fn set_header_type(&mut self, v: u8) {
        self.data[REG_HEADER_TYPE] = v;
    }

    /// Sets the subsystem vendor and subsystem IDs.
    pub fn set_subsystem(&mut self, vendor: u16, id: u16) {
        self.set_u16(REG_SUBSYSTEM_VENDOR_ID, vendor);
        self.set_u16(REG_SUBSYSTEM_ID, id);
    }

    /// Sets the interrupt pin (1 = INTA … 4 = INTD, 0 = none).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.data[REG_INTERRUPT_PIN] = pin.min(4);
    }

    /// Declares BAR `index` (0–5) with its kind and size; it reads as an unassigned BAR.
    pub fn set_bar(&mut self, index: usize, desc: BarDesc) -> Result<(), PciError> {
        if index >= 6 {
            return Err(PciError::BadBarIndex(index));
        }
        let min = match desc.kind {
            BarKind::Io => 4,
            BarKind::Memory { .. } => 16,
        };
        if !desc.size.is_power_of_two() || desc.size < min {
            return Err(PciError::BadBarSize(desc.size));
        }
        let off = REG_BAR0 + 4 * index;
        let (low, addr_mask) = match desc.kind {
            BarKind::Io => (BAR_IO, !(desc.size - 1) & 0xFFFF_FFFC),
            BarKind::Memory { prefetchable } => (
                if prefetchable { BAR_MEM_PREFETCH } else { 0 },
                !(desc.size - 1) & 0xFFFF_FFF0,
            ),
        };
        self.set_u32(off, low);
        self.wmask[off..off + 4].copy_from_slice(&addr_mask.to_le_bytes());
        self.bars[index] = Some(desc);
        Ok(())
    }

    /// Declares an expansion ROM of `size` bytes (a power of two, at least 2 KiB).
    pub fn set_rom(&mut self, size: u32) -> Result<(), PciError> {
        if !size.is_power_of_two() || size < 0x800 {
            return Err(PciError::BadBarSize(size));
        }
        let mask = (!(size - 1) & ROM_ADDRESS_MASK) | ROM_ENABLE;
        self.wmask[REG_ROM_ADDRESS..REG_ROM_ADDRESS + 4].copy_from_slice(&mask.to_le_bytes());
        self.rom_size = size;
        Ok(())
    }

    /// Makes the bytes `off..off+len` read-only (for device-specific registers).
    pub fn set_read_only(&mut self, off: usize, len: usize) {
        let end = off.saturating_add(len).min(CONFIG_SPACE_SIZE);
        if let Some(m) = self.wmask.get_mut(off..end) {
            m.fill(0);
        }
    }

    /// Sets the write mask of one byte.
    pub fn set_wmask(&mut self, off: usize, mask: u8) {
        if let Some(m) = self.wmask.get_mut(off) {
            *m = mask;
        }
    }

    /// Sets a byte directly (device-side, ignoring write masks).
    pub fn set_u8(&mut self, off: usize, v: u8) {
        if let Some(b) = self.data.get_mut(off) {
            *b = v;
        }
    }

    /// Sets a 16-bit value directly (device-side).
    pub fn set_u16(&mut self, off: usize, v: u16) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            self.set_u8(off + i, b);
        }
    }

    /// Sets a 32-bit value directly (device-side).
    pub fn set_u32(&mut self, off: usize, v: u32) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            self.set_u8(off + i, b);
        }
    }

    /// Reads one byte (0 beyond the space).
    pub fn u8_at(&self, off: usize) -> u8 {
        self.data.get(off).copied().unwrap_or(0)
    }

    /// Reads a 16-bit little-endian value.
    pub fn u16_at(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.u8_at(off), self.u8_at(off + 1)])
    }

    /// Reads a 32-bit little-endian value.
    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_le_bytes([
            self.u8_at(off),
            self.u8_at(off + 1),
            self.u8_at(off + 2),
            self.u8_at(off + 3),
        ])
    }

    /// Guest read of `size` (1, 2 or 4) bytes at `off`; bytes past 0xFF read as 0xFF.
    pub fn read(&self, off: usize, size: usize) -> u32 {
        let mut v = 0u32;
        for i in 0..size.min(4) {
            let b = self.data.get(off + i).copied().unwrap_or(0xFF);
            v |= u32::from(b) << (8 * i);
        }
        v
    }

    /// Guest write of `size` (1, 2 or 4) bytes at `off`, honouring the write masks and the
    /// write-1-to-clear bits.
    pub fn write(&mut self, off: usize, size: usize, val: u32) {
        for i in 0..size.min(4) {
            let Some(idx) = off.checked_add(i).filter(|&x| x < CONFIG_SPACE_SIZE) else {
                return;
            };
            let b = (val >> (8 * i)) as u8;
            let m = self.wmask[idx];
            let c = self.w1c[idx];
            let old = self.data[idx];
            self.data[idx] = ((old & !m) | (b & m)) & !(b & c);
        }
    }

    /// The raw 256 bytes.
    pub fn bytes(&self) -> &[u8; CONFIG_SPACE_SIZE] {
        &self.data
    }

    /// Vendor ID.
    pub fn vendor(&self) -> u16 {
        self.u16_at(REG_VENDOR_ID)
    }

    /// Device ID.
    pub fn device(&self) -> u16 {
        self.u16_at(REG_DEVICE_ID)
    }

    /// Class code (base class << 8 | sub-class).
    pub fn class(&self) -> u16 {
        self.u16_at(REG_CLASS)
    }

    /// Command register.
    pub fn command(&self) -> u16 {
        self.u16_at(REG_COMMAND)
    }

    /// The description of BAR `index`, if implemented.
    pub fn bar_desc(&self, index: usize) -> Option<BarDesc> {
        self.bars.get(index).copied().flatten()
    }

    /// Size of the expansion ROM (0: none).
    pub fn rom_size(&self) -> u32 {
        self.rom_size
    }

    /// Address programmed into BAR `index` (without the type bits), whether or not decoded.
    pub fn bar_address(&self, index: usize) -> Option<u32> {
        let desc = self.bar_desc(index)?;
        let raw = self.u32_at(REG_BAR0 + 4 * index);
        Some(match desc.kind {
            BarKind::Io => raw & !3,
            BarKind::Memory { .. } => raw & !0xF,
        })
    }

    /// Where BAR `index` is decoded now: `None` when unimplemented, when its space is
    /// disabled in the command register, or when the address is 0 or reaches past the end of
    /// its space (as during size probing).
    pub fn bar_base(&self, index: usize) -> Option<u32> {
        let desc = self.bar_desc(index)?;
        let addr = self.bar_address(index)?;
        let cmd = self.command();
        let (enabled, limit) = match desc.kind {
            BarKind::Io => (cmd & COMMAND_IO != 0, 0x1_0000u64),
            BarKind::Memory { .. } => (cmd & COMMAND_MEMORY != 0, 0xFFFF_FFFFu64),
        };
        let last = u64::from(addr) + u64::from(desc.size) - 1;
        (enabled && addr != 0 && last < limit).then_some(addr)
    }

    /// Where the expansion ROM is decoded now (enable bit and memory decode both on).
    pub fn rom_base(&self) -> Option<u32> {
        if self.rom_size == 0 {
            return None;
        }
        let raw = self.u32_at(REG_ROM_ADDRESS);
        let addr = raw & ROM_ADDRESS_MASK & !(self.rom_size - 1);
        let last = u64::from(addr) + u64::from(self.rom_size) - 1;
        let on = raw & ROM_ENABLE != 0 && self.command() & COMMAND_MEMORY != 0;
        (on && addr != 0 && last < 0xFFFF_FFFF).then_some(addr)
    }

    /// Replaces the writable bits with those of `saved`, refusing a state whose read-only
    /// bits differ from this function's.
    fn load(&mut self, saved: &[u8]) -> Result<(), String> {
        if saved.len() != CONFIG_SPACE_SIZE {
            return Err(format!("config space of {} bytes", saved.len()));
        }
        for (i, &b) in saved.iter().enumerate() {
            let ro = !(self.wmask[i] | self.w1c[i]);
            if b & ro != self.data[i] & ro {
                return Err(format!("read-only config byte {i:#04x} differs"));
            }
        }
        self.data.copy_from_slice(saved);
        Ok(())
    }
}

/// A change the board must act on, queued by configuration writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciEvent {
    /// The i440FX PAM registers 0x59–0x5F changed (pass to `Memory::set_pam`).
    PamChanged([u8; 7]),
    /// The decoded address of a BAR changed (`None`: no longer decoded).
    BarMoved {
        /// Device number.
        dev: u8,
        /// Function number.
        func: u8,
        /// BAR index.
        bar: u8,
        /// New decoded base.
        base: Option<u32>,
    },
    /// The decoded address of an expansion ROM changed.
    RomBarMoved {
        /// Device number.
        dev: u8,
        /// Function number.
        func: u8,
        /// New decoded base.
        base: Option<u32>,
    },
    /// A function's command register changed.
    CommandChanged {
        /// Device number.
        dev: u8,
        /// Function number.
        func: u8,
        /// New command register value.
        command: u16,
    },
    /// The i440FX SMRAM register changed.
    SmramChanged(u8),
    /// A PIIX3 PIRQ route register changed.
    PirqChanged,
    /// A device-specific register (offset 0x40 and up) of a function other than the i440FX
    /// and the PIIX3 ISA bridge was written (e.g. IDE timing 0x40/0x42, PM base): the device
    /// model reads what it needs from [`PciBus::function`].
    ConfigWritten {
        /// Device number.
        dev: u8,
        /// Function number.
        func: u8,
        /// Register offset written.
        reg: u8,
        /// Access size in bytes.
        size: u8,
    },
    /// The guest asked for a reset through port 0xCF9 (bit 2 written as 1).
    ResetRequested {
        /// Bit 1 was set: a system (hard) reset rather than a CPU-only reset.
        hard: bool,
    },
    /// Too many changes queued, or the state was restored: re-read everything.
    Resync,
}

/// One BAR region for `query-pci`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciRegionInfo {
    /// BAR number (6 for the expansion ROM, as QEMU reports it).
    pub bar: u8,
    /// True for I/O, false for memory.
    pub io: bool,
    /// Decoded address; `None` when not decoded (QEMU prints -1).
    pub address: Option<u64>,
    /// Size in bytes.
    pub size: u64,
    /// Prefetchable memory.
    pub prefetch: bool,
    /// 64-bit memory BAR.
    pub mem_type_64: bool,
}

/// A memory or I/O window of a PCI bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciRange {
    /// Base address.
    pub base: u64,
    /// Limit address.
    pub limit: u64,
}

/// Bridge information for `query-pci` (only for PCI-to-PCI bridges, class 0x0604).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciBridgeInfo {
    /// Primary bus number.
    pub bus: u8,
    /// Secondary bus number.
    pub secondary: u8,
    /// Subordinate bus number.
    pub subordinate: u8,
    /// I/O window.
    pub io_range: PciRange,
    /// Memory window.
    pub memory_range: PciRange,
    /// Prefetchable memory window.
    pub prefetchable_range: PciRange,
}

/// One function for `query-pci`, built from the live configuration space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDeviceInfo {
    /// Bus number.
    pub bus: u8,
    /// Slot (device) number.
    pub slot: u8,
    /// Function number.
    pub function: u8,
    /// Class code (base << 8 | sub-class).
    pub class: u16,
    /// Class description, when QEMU has one.
    pub class_desc: Option<&'static str>,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
    /// Revision.
    pub revision: u8,
    /// Interrupt line, when the function has an interrupt pin.
    pub irq: Option<u8>,
    /// Implemented BARs (and the expansion ROM as BAR 6).
    pub regions: Vec<PciRegionInfo>,
    /// Bridge windows, for PCI bridges.
    pub bridge: Option<PciBridgeInfo>,
}

/// Class descriptions QEMU prints in `query-pci` / `info pci`.
pub fn class_description(class: u16) -> Option<&'static str> {
    Some(match class {
        0x0100 => "SCSI controller",
        0x0101 => "IDE controller",
        0x0102 => "Floppy controller",
        0x0106 => "SATA controller",
        0x0180 => "Storage controller",
        0x0200 => "Ethernet controller",
        0x0280 => "Network controller",
        0x0300 => "VGA controller",
        0x0380 => "Display controller",
        0x0401 => "Audio controller",
        0x0500 => "RAM controller",
        0x0600 => "Host bridge",
        0x0601 => "ISA bridge",
        0x0604 => "PCI bridge",
        0x0680 => "Bridge",
        0x0C03 => "USB controller",
        0x00FF => "Unclassified device",
        _ => return None,
    })
}

/// Saved state of the bus: the address register and each function's configuration bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PciBusState {
    /// Configuration address register (0xCF8).
    pub address: u32,
    /// PIIX3 reset control register (0xCF9), bit 1 only.
    pub reset_control: u8,
    /// (devfn, 256 configuration bytes) for each function, in bus order.
    pub functions: Vec<(u8, Vec<u8>)>,
}

/// Bus 0 with configuration mechanism #1.
#[derive(Clone, Debug)]
pub struct PciBus {
    address: u32,
    reset_control: u8,
    functions: Vec<(u8, PciConfig)>,
    events: Vec<PciEvent>,
}

impl PciBus {
    /// An empty bus.
    pub fn new() -> PciBus {
        PciBus {
            address: 0,
            reset_control: 0,
            functions: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The bus of a QEMU `pc`: i440FX, PIIX3 ISA and IDE, std VGA.
    pub fn pc() -> PciBus {
        let mut bus = PciBus::new();
        let mut host = PciConfig::new(0x8086, 0x1237, 0x0600, 0, 0x02);
        host.set_subsystem(0x1AF4, 0x1100);
        host.set_u8(I440FX_SMRAM, SMRAM_C_BASE_SEG);
        host.set_wmask(
            I440FX_SMRAM,
            SMRAM_D_OPEN | SMRAM_D_CLS | SMRAM_D_LCK | SMRAM_G_SMRAME,
        );

        let mut isa = PciConfig::new(0x8086, 0x7000, 0x0601, 0, 0);
        isa.set_header_type(0x80);
        isa.set_subsystem(0x1AF4, 0x1100);
        for i in 0..4 {
            isa.set_u8(PIIX3_PIRQRC + i, PIRQ_DISABLE);
        }
        // Other PIIX3 reset values that firmware may read back.
        isa.set_u16(REG_COMMAND, COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER);
        isa.set_u16(REG_STATUS, 0x0200);
        isa.set_u8(0x4C, 0x4D); // ISA I/O recovery timer
        isa.set_u8(0x4E, 0x03); // X-bus chip select
        isa.set_u8(0x69, 0x02); // top of memory
        isa.set_u8(0x70, 0x80); // MBIRQ0 disabled
        isa.set_u8(0x76, 0x0C); // MBDMA0
        isa.set_u8(0x77, 0x0C); // MBDMA1
        isa.set_u8(0x78, 0x02); // programmable chip select
        isa.set_u8(0xA0, 0x08); // SMI control

        let mut ide = PciConfig::new(0x8086, 0x7010, 0x0101, 0x80, 0);
        ide.set_subsystem(0x1AF4, 0x1100);
        ide.set_u16(REG_STATUS, 0x0280);
        ide.set_bar(
            IDE_BM_BAR,
            BarDesc {
                kind: BarKind::Io,
                size: 16,
            },
        )
        .ok();

        let mut vga = PciConfig::new(0x1234, 0x1111, 0x0300, 0, 0x02);
        vga.set_subsystem(0x1AF4, 0x1100);
        vga.set_bar(
            VGA_LFB_BAR,
            BarDesc {
                kind: BarKind::Memory { prefetchable: true },
                size: VGA_LFB_SIZE,
            },
        )
        .ok();
        vga.set_bar(
            VGA_MMIO_BAR,
            BarDesc {
                kind: BarKind::Memory {
                    prefetchable: false,
                },
                size: VGA_MMIO_SIZE,
            },
        )
        .ok();
        vga.set_rom(VGA_ROM_SIZE).ok();

        for (df, cfg) in [
            (DEVFN_HOST_BRIDGE, host),
            (DEVFN_ISA_BRIDGE, isa),
            (DEVFN_IDE, ide),
            (DEVFN_VGA, vga),
        ] {
            bus.add(df, cfg).ok();
        }
        bus
    }

    /// Adds a function at `devfn` (see [`devfn`]).
    /// Its current contents become its power-on state for [`PciBus::reset`].
    pub fn add(&mut self, devfn: u8, mut config: PciConfig) -> Result<(), PciError> {
        config.power_on = config.data;
        if self.functions.iter().any(|(d, _)| *d == devfn) {
            return Err(PciError::Occupied(devfn >> 3, devfn & 7));
        }
        let pos = self.functions.partition_point(|(d, _)| *d < devfn);
        self.functions.insert(pos, (devfn, config));
        Ok(())
    }

    /// The function at `devfn`.
    pub fn function(&self, devfn: u8) -> Option<&PciConfig> {
        self.functions
            .iter()
            .find(|(d, _)| *d == devfn)
            .map(|(_, c)| c)
    }

    /// The function at `devfn`, mutably (device-side changes; queue no events).
    pub fn function_mut(&mut self, devfn: u8) -> Option<&mut PciConfig> {
        self.functions
            .iter_mut()
            .find(|(d, _)| *d == devfn)
            .map(|(_, c)| c)
    }

    /// Resets every function to its power-on configuration (system reset) and clears the
    /// address register. Queues [`PciEvent::Resync`]: the board re-reads PAM, BARs and routes.
    pub fn reset(&mut self) {
        self.address = 0;
        self.reset_control = 0;
        for (_, c) in &mut self.functions {
            c.data = c.power_on;
        }
        self.events.clear();
        self.events.push(PciEvent::Resync);
    }

    /// Port read (`size` 1, 2 or 4). Ports other than 0xCF8 (dword) and 0xCFC–0xCFF read
    /// all-ones.
    pub fn io_read(&mut self, port: u16, size: u8) -> u32 {
        let ones = size_mask(size);
        match port {
            CONFIG_ADDRESS_PORT if size == 4 => self.address,
            RESET_CONTROL_PORT if size == 1 => u32::from(self.reset_control),
            CONFIG_DATA_PORT..=0xCFF => {
                let Some((devfn, reg)) = self.target(port) else {
                    return ones;
                };
                match self.function(devfn) {
                    Some(c) => c.read(reg, usize::from(size)) & ones,
                    None => ones,
                }
            }
            _ => ones,
        }
    }

    /// Port write (`size` 1, 2 or 4). Queues [`PciEvent`]s for the board.
    pub fn io_write(&mut self, port: u16, size: u8, val: u32) {
        match port {
            CONFIG_ADDRESS_PORT if size == 4 => self.address = val & 0x80FF_FFFC,
            RESET_CONTROL_PORT if size == 1 => {
                let v = val as u8;
                self.reset_control = v & RCR_SYS_RST;
                if v & RCR_RST_CPU != 0 {
                    self.push_event(PciEvent::ResetRequested {
                        hard: v & RCR_SYS_RST != 0,
                    });
                }
            }
            CONFIG_DATA_PORT..=0xCFF => {
                if let Some((devfn, reg)) = self.target(port) {
                    self.config_write(devfn, reg, usize::from(size), val & size_mask(size));
                }
            }
            _ => {}
        }
    }

    /// Decodes the address register for an access at data port `port`: (devfn, register).
    fn target(&self, port: u16) -> Option<(u8, usize)> {
        let a = self.address;
        if a & 0x8000_0000 == 0 || (a >> 16) & 0xFF != 0 {
            return None;
        }
        let devfn = (a >> 8) as u8;
        let reg = (a & 0xFC) as usize + usize::from(port & 3);
        Some((devfn, reg))
    }

    /// Config read of function `devfn` (all-ones when absent).
    pub fn config_read(&self, devfn: u8, reg: usize, size: usize) -> u32 {
        let ones = size_mask(size as u8);
        self.function(devfn)
            .map_or(ones, |c| c.read(reg, size) & ones)
    }

    /// Config write to function `devfn`, queueing the resulting events.
    pub fn config_write(&mut self, devfn: u8, reg: usize, size: usize, val: u32) {
        let (dev, func) = (devfn >> 3, devfn & 7);
        let Some(cfg) = self.function_mut(devfn) else {
            return;
        };
        let before = Decoded::of(cfg);
        let smram_before = cfg.u8_at(I440FX_SMRAM);
        let pirq_before = cfg.u32_at(PIIX3_PIRQRC);
        cfg.write(reg, size, val);
        if devfn == DEVFN_HOST_BRIDGE {
            // D_LCK locks D_OPEN and itself until reset.
            let s = cfg.u8_at(I440FX_SMRAM);
            if smram_before & SMRAM_D_LCK != 0 {
                let locked = (s & !(SMRAM_D_OPEN | SMRAM_D_LCK | SMRAM_G_SMRAME))
                    | (smram_before & (SMRAM_D_LCK | SMRAM_G_SMRAME));
                cfg.set_u8(I440FX_SMRAM, locked);
            } else if s & SMRAM_D_LCK != 0 {
                cfg.set_u8(I440FX_SMRAM, s & !SMRAM_D_OPEN);
            }
        }
        let after = Decoded::of(cfg);
        let smram_after = cfg.u8_at(I440FX_SMRAM);
        let pirq_after = cfg.u32_at(PIIX3_PIRQRC);
        let pam = pam_of(cfg);
        let mut ev: Vec<PciEvent> = Vec::new();
        if before.command != after.command {
            ev.push(PciEvent::CommandChanged {
                dev,
                func,
                command: after.command,
            });
        }
        for (i, (b, a)) in before.bars.iter().zip(after.bars.iter()).enumerate() {
            if b != a {
                ev.push(PciEvent::BarMoved {
                    dev,
                    func,
                    bar: i as u8,
                    base: *a,
                });
            }
        }
        if before.rom != after.rom {
            ev.push(PciEvent::RomBarMoved {
                dev,
                func,
                base: after.rom,
            });
        }
        if devfn == DEVFN_HOST_BRIDGE {
            if before.pam != pam {
                ev.push(PciEvent::PamChanged(pam));
            }
            if smram_before != smram_after {
                ev.push(PciEvent::SmramChanged(smram_after));
            }
        }
        if devfn == DEVFN_ISA_BRIDGE && pirq_before != pirq_after {
            ev.push(PciEvent::PirqChanged);
        }
        if reg >= HEADER_SIZE && devfn != DEVFN_HOST_BRIDGE && devfn != DEVFN_ISA_BRIDGE {
            ev.push(PciEvent::ConfigWritten {
                dev,
                func,
                reg: reg as u8,
                size: size as u8,
            });
        }
        for e in ev {
            self.push_event(e);
        }
    }

    fn push_event(&mut self, e: PciEvent) {
        if self.events.first() == Some(&PciEvent::Resync) {
            return;
        }
        if self.events.len() >= MAX_EVENTS {
            self.events.clear();
            self.events.push(PciEvent::Resync);
            return;
        }
        self.events.push(e);
    }

    /// Takes the queued events, oldest first.
    pub fn take_events(&mut self) -> Vec<PciEvent> {
        std::mem::take(&mut self.events)
    }

    /// The i440FX PAM registers 0x59–0x5F.
    pub fn pam(&self) -> [u8; 7] {
        self.function(DEVFN_HOST_BRIDGE).map_or([0; 7], pam_of)
    }

    /// The i440FX SMRAM control register.
    pub fn smram(&self) -> u8 {
        self.function(DEVFN_HOST_BRIDGE)
            .map_or(0, |c| c.u8_at(I440FX_SMRAM))
    }

    /// The IRQ that PIIX3 PIRQ line `pirq` (0 = PIRQA … 3 = PIRQD) is routed to, or `None`
    /// when routing is disabled or the IRQ is not routable (0–2, 8, 13).
    pub fn pirq_route(&self, pirq: u8) -> Option<u8> {
        if pirq > 3 {
            return None;
        }
        let r = self
            .function(DEVFN_ISA_BRIDGE)?
            .u8_at(PIIX3_PIRQRC + usize::from(pirq));
        let irq = r & 0x0F;
        (r & PIRQ_DISABLE == 0 && !matches!(irq, 0..=2 | 8 | 13)).then_some(irq)
    }

    /// The PIRQ line that INTx `pin` (1 = INTA … 4 = INTD) of slot `dev` on bus 0 drives.
    pub fn pirq_for(dev: u8, pin: u8) -> Option<u8> {
        (1..=4)
            .contains(&pin)
            .then(|| (pin - 1).wrapping_add(dev.wrapping_sub(1)) & 3)
    }

    /// The ISA IRQ that INTx `pin` (1–4) of slot `dev` reaches through the PIRQ routers.
    pub fn irq_for(&self, dev: u8, pin: u8) -> Option<u8> {
        self.pirq_route(Self::pirq_for(dev, pin)?)
    }

    /// Decoded base of BAR `bar` of function `devfn`.
    pub fn bar_base(&self, devfn: u8, bar: usize) -> Option<u32> {
        self.function(devfn)?.bar_base(bar)
    }

    /// Decoded base of the expansion ROM of function `devfn`.
    pub fn rom_base(&self, devfn: u8) -> Option<u32> {
        self.function(devfn)?.rom_base()
    }

    /// The PIIX3 IDE bus-master I/O base (BAR4), when I/O decode is on.
    pub fn ide_bm_base(&self) -> Option<u16> {
        self.bar_base(DEVFN_IDE, IDE_BM_BAR)
            .and_then(|b| u16::try_from(b).ok())
    }

    /// The PIIX3 IDE command register (I/O enable bit 0, bus master bit 2).
    pub fn ide_command(&self) -> u16 {
        self.function(DEVFN_IDE).map_or(0, PciConfig::command)
    }

    /// Whether the PIIX3 IDE function may master the bus (command bit 2).
    pub fn ide_bus_master_enabled(&self) -> bool {
        self.ide_command() & COMMAND_MASTER != 0
    }

    /// Describes every function for QMP `query-pci`.
    pub fn query(&self) -> Vec<PciDeviceInfo> {
        self.functions
            .iter()
            .map(|(df, c)| describe(*df, c))
            .collect()
    }
}

/// What the board maps for one function, compared before and after a write.
#[derive(PartialEq)]
struct Decoded {
    command: u16,
    bars: [Option<u32>; 6],
    rom: Option<u32>,
    pam: [u8; 7],
}

impl Decoded {
    fn of(c: &PciConfig) -> Decoded {
        Decoded {
            command: c.command(),
            bars: std::array::from_fn(|i| c.bar_base(i)),
            rom: c.rom_base(),
            pam: pam_of(c),
        }
    }
}

fn pam_of(c: &PciConfig) -> [u8; 7] {
    std::array::from_fn(|i| c.u8_at(I440FX_PAM0 + i))
}

fn size_mask(size: u8) -> u32 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    }
}

fn describe(df: u8, c: &PciConfig) -> PciDeviceInfo {
    let mut regions = Vec::new();
    for i in 0..6 {
        if let Some(d) = c.bar_desc(i) {
            let (io, prefetch) = match d.kind {
                BarKind::Io => (true, false),
                BarKind::Memory { prefetchable } => (false, prefetchable),
            };
            regions.push(PciRegionInfo {
                bar: i as u8,
                io,
                address: c.bar_base(i).map(u64::from),
                size: u64::from(d.size),
                prefetch,
                mem_type_64: false,
            });
        }
    }
    if c.rom_size() != 0 {
        regions.push(PciRegionInfo {
            bar: 6,
            io: false,
            address: c.rom_base().map(u64::from),
            size: u64::from(c.rom_size()),
            prefetch: false,
            mem_type_64: false,
        });
    }
    let bridge = (c.class() == 0x0604).then(|| PciBridgeInfo {
        bus: c.u8_at(0x18),
        secondary: c.u8_at(0x19),
        subordinate: c.u8_at(0x1A),
        io_range: PciRange {
            base: u64::from(c.u8_at(0x1C) & 0xF0) << 8,
            limit: (u64::from(c.u8_at(0x1D) & 0xF0) << 8) | 0xFFF,
        },
        memory_range: PciRange {
            base: u64::from(c.u16_at(0x20) & 0xFFF0) << 16,
            limit: (u64::from(c.u16_at(0x22) & 0xFFF0) << 16) | 0xF_FFFF,
        },
        prefetchable_range: PciRange {
            base: u64::from(c.u16_at(0x24) & 0xFFF0) << 16,
            limit: (u64::from(c.u16_at(0x26) & 0xFFF0) << 16) | 0xF_FFFF,
        },
    });
    PciDeviceInfo {
        bus: 0,
        slot: df >> 3,
        function: df & 7,
        class: c.class(),
        class_desc: class_description(c.class()),
        vendor: c.vendor(),
        device: c.device(),
        subsystem_vendor: c.u16_at(REG_SUBSYSTEM_VENDOR_ID),
        subsystem: c.u16_at(REG_SUBSYSTEM_ID),
        revision: c.u8_at(REG_REVISION),
        irq: (c.u8_at(REG_INTERRUPT_PIN) != 0).then(|| c.u8_at(REG_INTERRUPT_LINE)),
        regions,
        bridge,
    }
}

impl Snapshot for PciBus {
    type State = PciBusState;

    fn save(&self) -> PciBusState {
        PciBusState {
            address: self.address,
            reset_control: self.reset_control,
            functions: self
                .functions
                .iter()
                .map(|(d, c)| (*d, c.data.to_vec()))
                .collect(),
        }
    }

    fn restore(&mut self, s: &PciBusState) -> Result<(), StateError> {
        let err = |r: String| StateError::new("pci", r);
        if s.reset_control & !RCR_SYS_RST != 0 {
            return Err(err(format!("bad reset control {:#x}", s.reset_control)));
        }
        if s.address & !0x80FF_FFFC != 0 {
            return Err(err(format!("bad address register {:#x}", s.address)));
        }
        if s.functions.len() != self.functions.len() {
            return Err(err(format!(
                "{} functions, expected {}",
                s.functions.len(),
                self.functions.len()
            )));
        }
        let mut next = self.functions.clone();
        for ((df, cfg), (sdf, bytes)) in next.iter_mut().zip(s.functions.iter()) {
            if df != sdf {
                return Err(err(format!("function {sdf:#04x} where {df:#04x} expected")));
            }
            cfg.load(bytes)
                .map_err(|r| err(format!("function {df:#04x}: {r}")))?;
        }
        self.functions = next;
        self.address = s.address;
        self.reset_control = s.reset_control;
        self.events.clear();
        self.events.push(PciEvent::Resync);
        Ok(())
    }
}

crate::snapshot_tests!(pci_snapshot, PciBus::pc, |b: &mut PciBus| {
    b.io_write(CONFIG_ADDRESS_PORT, 4, 0x8000_0058);
    b.io_write(CONFIG_DATA_PORT, 4, 0x3333_3000);
    b.io_write(CONFIG_ADDRESS_PORT, 4, 0x8000_1010);
    b.io_write(CONFIG_DATA_PORT, 4, 0xFD00_0000);
    b.io_write(RESET_CONTROL_PORT, 1, 0x02);
});

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_addr(df: u8, reg: u8) -> u32 {
        0x8000_0000 | (u32::from(df) << 8) | u32::from(reg & 0xFC)
    }

    fn rd(b: &mut PciBus, df: u8, reg: u8, size: u8) -> u32 {
        b.io_write(CONFIG_ADDRESS_PORT, 4, cfg_addr(df, reg));
        let port = match size {
            1 => CONFIG_DATA_PORT + u16::from(reg & 3),
            2 => CONFIG_DATA_PORT + u16::from(reg & 2),
            _ => CONFIG_DATA_PORT,
        };
        b.io_read(port, size)
    }

    fn wr(b: &mut PciBus, df: u8, reg: u8, size: u8, v: u32) {
        b.io_write(CONFIG_ADDRESS_PORT, 4, cfg_addr(df, reg));
        let port = match size {
            1 => CONFIG_DATA_PORT + u16::from(reg & 3),
            2 => CONFIG_DATA_PORT + u16::from(reg & 2),
            _ => CONFIG_DATA_PORT,
        };
        b.io_write(port, size, v);
    }

    #[test]
    fn address_register_reads_back() {
        let mut b = PciBus::pc();
        b.io_write(CONFIG_ADDRESS_PORT, 4, 0x8000_0000);
        assert_eq!(b.io_read(CONFIG_ADDRESS_PORT, 4), 0x8000_0000);
        b.io_write(CONFIG_ADDRESS_PORT, 4, 0x8000_1013);
        assert_eq!(b.io_read(CONFIG_ADDRESS_PORT, 4), 0x8000_1010);
        assert_eq!(
            b.io_read(CONFIG_ADDRESS_PORT, 1),
            0xFF,
            "byte access to 0xCF8 is not the register"
        );
    }

    #[test]
    fn identities_of_the_pc_functions() {
        let mut b = PciBus::pc();
        assert_eq!(rd(&mut b, DEVFN_HOST_BRIDGE, 0, 4), 0x1237_8086);
        assert_eq!(rd(&mut b, DEVFN_HOST_BRIDGE, 8, 4), 0x0600_0002);
        assert_eq!(rd(&mut b, DEVFN_HOST_BRIDGE, 0x2C, 4), 0x1100_1AF4);
        assert_eq!(rd(&mut b, DEVFN_ISA_BRIDGE, 0, 4), 0x7000_8086);
        assert_eq!(rd(&mut b, DEVFN_ISA_BRIDGE, 0x0A, 2), 0x0601);
        assert_eq!(rd(&mut b, DEVFN_IDE, 0, 4), 0x7010_8086);
        assert_eq!(rd(&mut b, DEVFN_IDE, 8, 4), 0x0101_8000);
        assert_eq!(rd(&mut b, DEVFN_VGA, 0, 4), 0x1111_1234);
        assert_eq!(rd(&mut b, DEVFN_VGA, 8, 4), 0x0300_0002);
    }

    #[test]
    fn header_type_multifunction_only_on_isa_bridge() {
        let mut b = PciBus::pc();
        assert_eq!(rd(&mut b, DEVFN_ISA_BRIDGE, 0x0E, 1), 0x80);
        assert_eq!(rd(&mut b, DEVFN_HOST_BRIDGE, 0x0E, 1), 0x00);
        assert_eq!(rd(&mut b, DEVFN_VGA, 0x0E, 1), 0x00);
        // Dword read containing the header type.
        assert_eq!(rd(&mut b, DEVFN_ISA_BRIDGE, 0x0C, 4) >> 16 & 0xFF, 0x80);
    }

    #[test]
    fn absent_functions_read_all_ones() {
        let mut b = PciBus::pc();
        assert_eq!(rd(&mut b, devfn(3, 0), 0, 4), 0xFFFF_FFFF);
        assert_eq!(rd(&mut b, devfn(1, 2), 0, 2), 0xFFFF);
        assert_eq!(rd(&mut b, devfn(0, 1), 0, 1), 0xFF);
        // Enable bit clear: nothing answers.
        b.io_write(CONFIG_ADDRESS_PORT, 4, 0x0000_0000);
        assert_eq!(b.io_read(CONFIG_DATA_PORT, 4), 0xFFFF_FFFF);
        // Bus 1 does not exist.
        b.io_write(CONFIG_ADDRESS_PORT, 4, 0x8001_0000);
        assert_eq!(b.io_read(CONFIG_DATA_PORT, 4), 0xFFFF_FFFF);
        // Writes to absent functions are ignored.
        wr(&mut b, devfn(5, 0), 0x10, 4, 0x1234_5678);
        assert!(b.take_events().is_empty());
    }

    #[test]
    fn unaligned_data_port_accesses() {
        let mut b = PciBus::pc();
        b.io_write(CONFIG_ADDRESS_PORT, 4, cfg_addr(DEVFN_VGA, 0));
        assert_eq!(b.io_read(0xCFC, 1), 0x34);
        assert_eq!(b.io_read(0xCFD, 1), 0x12);
        assert_eq!(b.io_read(0xCFE, 1), 0x11);
        assert_eq!(b.io_read(0xCFF, 1), 0x11);
        assert_eq!(b.io_read(0xCFE, 2), 0x1111);
        assert_eq!(b.io_read(0xCFD, 2), 0x1112);
        assert_eq!(b.io_read(0xCFC, 2), 0x1234);
        // Byte writes at 0xCFD touch only that byte of the interrupt line dword.
        b.io_write(CONFIG_ADDRESS_PORT, 4, cfg_addr(DEVFN_VGA, 0x3C));
        b.io_write(0xCFC, 1, 0x0B);
        assert_eq!(b.io_read(0xCFC, 4) & 0xFF, 0x0B);
        b.io_write(0xCFD, 1, 0x04);
        assert_eq!(b.io_read(0xCFD, 1), 0x00, "interrupt pin is read-only");
        // Word write at 0xCFE of the command/status dword goes to status (w1c, nothing set).
        b.io_write(CONFIG_ADDRESS_PORT, 4, cfg_addr(DEVFN_VGA, 0x04));
        b.io_write(0xCFC, 2, 0x0103);
        b.io_write(0xCFE, 2, 0xFFFF);
        assert_eq!(b.io_read(0xCFC, 4), 0x0000_0103);
        assert_eq!(b.io_read(0xCFD, 1), 0x01);
    }

    #[test]
    fn bar_sizing_like_seabios() {
        let mut b = PciBus::pc();
        let mut sizes = Vec::new();
        for bar in 0..6u8 {
            let reg = 0x10 + 4 * bar;
            let old = rd(&mut b, DEVFN_VGA, reg, 4);
            wr(&mut b, DEVFN_VGA, reg, 4, 0xFFFF_FFFF);
            let mask = rd(&mut b, DEVFN_VGA, reg, 4);
            wr(&mut b, DEVFN_VGA, reg, 4, old);
            assert_eq!(rd(&mut b, DEVFN_VGA, reg, 4), old);
            sizes.push(mask);
        }
        assert_eq!(sizes, vec![0xFF00_0008, 0, 0xFFFF_F000, 0, 0, 0]);
        // IDE: BAR0–3 size 0, BAR4 16 bytes of I/O.
        for bar in 0..5u8 {
            let reg = 0x10 + 4 * bar;
            wr(&mut b, DEVFN_IDE, reg, 4, 0xFFFF_FFFF);
            let want = if bar == 4 { 0xFFFF_FFF1 } else { 0 };
            assert_eq!(rd(&mut b, DEVFN_IDE, reg, 4), want, "IDE BAR{bar}");
        }
        // Assignment and decode.
        wr(&mut b, DEVFN_VGA, 0x10, 4, 0xFD00_0000);
        wr(&mut b, DEVFN_VGA, 0x18, 4, 0xFEBF_0000);
        wr(&mut b, DEVFN_IDE, 0x20, 4, 0xC040);
        b.take_events();
        assert_eq!(b.bar_base(DEVFN_VGA, 0), None, "memory decode still off");
        wr(&mut b, DEVFN_VGA, 0x04, 2, 0x0103);
        assert_eq!(b.bar_base(DEVFN_VGA, 0), Some(0xFD00_0000));
        assert_eq!(b.bar_base(DEVFN_VGA, 2), Some(0xFEBF_0000));
        let ev = b.take_events();
        assert!(ev.contains(&PciEvent::CommandChanged {
            dev: 2,
            func: 0,
            command: 0x0103
        }));
        assert!(ev.contains(&PciEvent::BarMoved {
            dev: 2,
            func: 0,
            bar: 0,
            base: Some(0xFD00_0000)
        }));
        assert!(ev.contains(&PciEvent::BarMoved {
            dev: 2,
            func: 0,
            bar: 2,
            base: Some(0xFEBF_0000)
        }));
        // Sizing with decode on unmaps (all-ones is not a valid address) and restores.
        wr(&mut b, DEVFN_VGA, 0x10, 4, 0xFFFF_FFFF);
        assert_eq!(
            b.take_events(),
            vec![PciEvent::BarMoved {
                dev: 2,
                func: 0,
                bar: 0,
                base: None
            }]
        );
        wr(&mut b, DEVFN_VGA, 0x10, 4, 0xFD00_0000);
        assert_eq!(
            b.take_events(),
            vec![PciEvent::BarMoved {
                dev: 2,
                func: 0,
                bar: 0,
                base: Some(0xFD00_0000)
            }]
        );
        assert_eq!(b.ide_bm_base(), None);
        wr(&mut b, DEVFN_IDE, 0x04, 2, 0x0105);
        assert_eq!(b.ide_bm_base(), Some(0xC040));
        assert_eq!(b.ide_command() & (COMMAND_IO | COMMAND_MASTER), 0x5);
    }

    #[test]
    fn rom_bar_sizing_and_enable() {
        let mut b = PciBus::pc();
        wr(&mut b, DEVFN_VGA, 0x30, 4, 0xFFFF_F800);
        assert_eq!(rd(&mut b, DEVFN_VGA, 0x30, 4), 0xFFFF_0000);
        wr(&mut b, DEVFN_VGA, 0x30, 4, 0xFFFF_FFFE);
        assert_eq!(rd(&mut b, DEVFN_VGA, 0x30, 4), 0xFFFF_0000);
        wr(&mut b, DEVFN_VGA, 0x30, 4, 0xFEBE_0000);
        wr(&mut b, DEVFN_VGA, 0x04, 2, 0x0103);
        b.take_events();
        assert_eq!(b.rom_base(DEVFN_VGA), None, "enable bit clear");
        wr(&mut b, DEVFN_VGA, 0x30, 4, 0xFEBE_0001);
        assert_eq!(rd(&mut b, DEVFN_VGA, 0x30, 4), 0xFEBE_0001);
        assert_eq!(b.rom_base(DEVFN_VGA), Some(0xFEBE_0000));
        assert_eq!(
            b.take_events(),
            vec![PciEvent::RomBarMoved {
                dev: 2,
                func: 0,
                base: Some(0xFEBE_0000)
            }]
        );
        wr(&mut b, DEVFN_VGA, 0x30, 4, 0xFEBE_0000);
        assert_eq!(
            b.take_events(),
            vec![PciEvent::RomBarMoved {
                dev: 2,
                func: 0,
                base: None
            }]
        );
        // Functions without a ROM read 0 there.
        wr(&mut b, DEVFN_IDE, 0x30, 4, 0xFFFF_F800);
        assert_eq!(rd(&mut b, DEVFN_IDE, 0x30, 4), 0);
    }

    #[test]
    fn pam_dword_writes_like_seabios() {
        let mut b = PciBus::pc();
        assert_eq!(rd(&mut b, DEVFN_HOST_BRIDGE, 0x59, 1), 0);
        let d58 = rd(&mut b, DEVFN_HOST_BRIDGE, 0x58, 4);
        wr(
            &mut b,
            DEVFN_HOST_BRIDGE,
            0x58,
            4,
            (d58 & 0xFF) | 0x3333_3000,
        );
        wr(&mut b, DEVFN_HOST_BRIDGE, 0x5C, 4, 0x3333_3333);
        assert_eq!(b.pam(), [0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33]);
        let ev = b.take_events();
        assert_eq!(
            ev.last(),
            Some(&PciEvent::PamChanged([
                0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33
            ]))
        );
        assert_eq!(ev.len(), 2);
        // Lock sequence.
        wr(&mut b, DEVFN_HOST_BRIDGE, 0x58, 4, 0x1111_1000);
        wr(&mut b, DEVFN_HOST_BRIDGE, 0x5C, 4, 0x3111_1111);
        assert_eq!(b.pam(), [0x10, 0x11, 0x11, 0x11, 0x11, 0x11, 0x31]);
        assert_eq!(rd(&mut b, DEVFN_HOST_BRIDGE, 0x5C, 4), 0x3111_1111);
        // Same value again: no event.
        b.take_events();
        wr(&mut b, DEVFN_HOST_BRIDGE, 0x5C, 4, 0x3111_1111);
        assert!(b.take_events().is_empty());
    }

    #[test]
    fn smram_lock() {
        let mut b = PciBus::pc();
        assert_eq!(b.smram(), 0x02);
        wr(&mut b, DEVFN_HOST_BRIDGE, 0x72, 1, 0x4A);
        assert_eq!(b.smram(), 0x4A);
        wr(&mut b, DEVFN_HOST_BRIDGE, 0x72, 1, 0x0A);
        assert_eq!(b.smram(), 0x0A);
        wr(&mut b, DEVFN_HOST_BRIDGE, 0x72, 1, 0x1A);
        assert_eq!(b.smram(), 0x1A);
        wr(&mut b, DEVFN_HOST_BRIDGE, 0x72, 1, 0x42);
        assert_eq!(b.smram(), 0x1A, "D_OPEN, D_LCK and G_SMRAME locked");
    }

    #[test]
    fn pirq_routing() {
        let mut b = PciBus::pc();
        for i in 0..4 {
            assert_eq!(rd(&mut b, DEVFN_ISA_BRIDGE, 0x60 + i, 1), 0x80);
            assert_eq!(b.pirq_route(i), None);
        }
        for (i, irq) in [10u32, 10, 11, 11].into_iter().enumerate() {
            wr(&mut b, DEVFN_ISA_BRIDGE, 0x60 + i as u8, 1, irq);
        }
        assert!(b.take_events().contains(&PciEvent::PirqChanged));
        assert_eq!(b.pirq_route(0), Some(10));
        assert_eq!(b.pirq_route(3), Some(11));
        assert_eq!(b.pirq_route(4), None);
        // Slot 3 INTA -> PIRQC -> 11 (SeaBIOS's example); slot 1 INTA -> PIRQA.
        assert_eq!(PciBus::pirq_for(3, 1), Some(2));
        assert_eq!(b.irq_for(3, 1), Some(11));
        assert_eq!(PciBus::pirq_for(1, 1), Some(0));
        assert_eq!(PciBus::pirq_for(2, 4), Some(0));
        assert_eq!(PciBus::pirq_for(4, 2), Some(0));
        assert_eq!(PciBus::pirq_for(0, 1), Some(3));
        assert_eq!(b.irq_for(2, 0), None);
        assert_eq!(b.irq_for(2, 5), None);
        wr(&mut b, DEVFN_ISA_BRIDGE, 0x61, 1, 0x8A);
        assert_eq!(
            b.irq_for(2, 1),
            None,
            "slot 2 INTA uses PIRQB, now disabled"
        );
    }

    #[test]
    fn status_bits_write_one_to_clear() {
        let mut b = PciBus::pc();
        b.function_mut(DEVFN_VGA)
            .unwrap()
            .set_u16(REG_STATUS, 0x2000 | 0x0200);
        wr(&mut b, DEVFN_VGA, 0x06, 2, 0x0200);
        assert_eq!(
            rd(&mut b, DEVFN_VGA, 0x06, 2),
            0x2200,
            "DEVSEL is read-only, 0 does not clear"
        );
        wr(&mut b, DEVFN_VGA, 0x06, 2, 0x2000);
        assert_eq!(rd(&mut b, DEVFN_VGA, 0x06, 2), 0x0200);
        // Read-only identity.
        wr(&mut b, DEVFN_VGA, 0x00, 4, 0);
        assert_eq!(rd(&mut b, DEVFN_VGA, 0, 4), 0x1111_1234);
    }

    #[test]
    fn query_pci_reflects_live_config() {
        let mut b = PciBus::pc();
        wr(&mut b, DEVFN_VGA, 0x10, 4, 0xFD00_0008);
        wr(&mut b, DEVFN_VGA, 0x04, 2, 0x0103);
        let q = b.query();
        assert_eq!(q.len(), 4);
        let vga = q.iter().find(|d| d.slot == 2).unwrap();
        assert_eq!(vga.class_desc, Some("VGA controller"));
        assert_eq!(
            (vga.vendor, vga.device, vga.subsystem_vendor, vga.subsystem),
            (0x1234, 0x1111, 0x1AF4, 0x1100)
        );
        assert_eq!(vga.irq, None);
        assert_eq!(vga.regions.len(), 3);
        assert_eq!(
            vga.regions[0],
            PciRegionInfo {
                bar: 0,
                io: false,
                address: Some(0xFD00_0000),
                size: 16 << 20,
                prefetch: true,
                mem_type_64: false
            }
        );
        assert_eq!(vga.regions[2].bar, 6);
        assert_eq!(vga.regions[2].address, None);
        let ide = q.iter().find(|d| d.slot == 1 && d.function == 1).unwrap();
        assert_eq!(ide.class, 0x0101);
        assert_eq!(ide.regions.len(), 1);
        assert!(ide.regions[0].io);
        assert!(q.iter().all(|d| d.bridge.is_none()));
    }

    #[test]
    fn reset_restores_power_on_config() {
        let mut b = PciBus::pc();
        wr(&mut b, DEVFN_HOST_BRIDGE, 0x5C, 4, 0x3333_3333);
        wr(&mut b, DEVFN_ISA_BRIDGE, 0x60, 1, 10);
        wr(&mut b, DEVFN_VGA, 0x10, 4, 0xFD00_0000);
        b.reset();
        assert_eq!(b.io_read(CONFIG_ADDRESS_PORT, 4), 0);
        assert_eq!(b.pam(), [0; 7]);
        assert_eq!(b.pirq_route(0), None);
        assert_eq!(b.take_events(), vec![PciEvent::Resync]);
        assert_eq!(b.save(), PciBus::pc().save());
        assert_eq!(rd(&mut b, DEVFN_VGA, 0x10, 4), 0x0000_0008);
    }

    #[test]
    fn device_specific_writes_are_reported() {
        let mut b = PciBus::pc();
        wr(&mut b, DEVFN_IDE, 0x40, 2, 0x8000);
        assert_eq!(rd(&mut b, DEVFN_IDE, 0x40, 2), 0x8000);
        assert_eq!(
            b.take_events(),
            vec![PciEvent::ConfigWritten {
                dev: 1,
                func: 1,
                reg: 0x40,
                size: 2
            }]
        );
        wr(&mut b, DEVFN_IDE, 0x04, 2, 0x0005);
        assert!(b.ide_bus_master_enabled());
    }

    #[test]
    fn reset_control_port_like_seabios_reboot() {
        let mut b = PciBus::pc();
        b.io_write(RESET_CONTROL_PORT, 1, 0x02);
        assert!(b.take_events().is_empty());
        assert_eq!(b.io_read(RESET_CONTROL_PORT, 1), 0x02);
        b.io_write(RESET_CONTROL_PORT, 1, 0x06);
        assert_eq!(
            b.take_events(),
            vec![PciEvent::ResetRequested { hard: true }]
        );
        // The dword register at 0xCF8 is unaffected.
        b.io_write(CONFIG_ADDRESS_PORT, 4, 0x8000_0000);
        assert_eq!(b.io_read(CONFIG_ADDRESS_PORT, 4), 0x8000_0000);
        assert_eq!(b.io_read(RESET_CONTROL_PORT, 1), 0x02);
        b.reset();
        assert_eq!(b.io_read(RESET_CONTROL_PORT, 1), 0);
    }

    #[test]
    fn event_queue_is_bounded() {
        let mut b = PciBus::pc();
        for i in 0..1000u32 {
            wr(&mut b, DEVFN_HOST_BRIDGE, 0x59, 1, i & 0x33);
        }
        let ev = b.take_events();
        assert!(ev.len() <= MAX_EVENTS);
        assert_eq!(ev, vec![PciEvent::Resync]);
    }

    #[test]
    fn restore_rejects_bad_states() {
        let b = PciBus::pc();
        let good = b.save();
        let mut other = PciBus::pc();
        let mut s = good.clone();
        s.functions[0].1[0] = 0x00; // vendor ID is read-only
        assert!(other.restore(&s).is_err());
        let mut s = good.clone();
        s.functions[1].1.truncate(10);
        assert!(other.restore(&s).is_err());
        let mut s = good.clone();
        s.functions.pop();
        assert!(other.restore(&s).is_err());
        let mut s = good.clone();
        s.functions[2].0 = 0x77;
        assert!(other.restore(&s).is_err());
        let mut s = good;
        s.address = 0x1;
        assert!(other.restore(&s).is_err());
        assert_eq!(
            other.save(),
            PciBus::pc().save(),
            "unchanged after rejected restores"
        );
    }
}
