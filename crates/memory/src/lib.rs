//! Guest physical memory of a wasm86 PC: RAM, ROM images, the PAM shadow window, the A20 gate,
//! per-page flags and the dirty log.
//!
//! RAM and every ROM image live in one byte store, so that a CPU TLB entry can be a single
//! offset into [`Memory::store`] for both. [`Memory::classify`] tells what a physical address
//! is; the CPU keeps only fast entries for pages where [`Memory::fast_read_page`] /
//! [`Memory::fast_write_page`] say so and routes everything else through the slow path
//! ([`Memory::write_phys`], or the bus for MMIO).
//!
//! One write path: a RAM page that holds decoded code or that is dirty-logged and still clean
//! never gets a fast write entry. [`Memory::write_phys`] (used by the CPU's slow path and by
//! device DMA) records the write, drops the page's code (queued in
//! [`Memory::take_code_invalidations`]) and marks it dirty. Whenever the map changes (PAM,
//! A20, ROM mappings) [`Memory::generation`] increments and every cached translation must be
//! dropped.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// Size of a page, the unit of translation, code tracking and dirty logging.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Start of the legacy VGA window (always MMIO).
pub const VGA_WINDOW_START: u32 = 0xA_0000;
/// End (exclusive) of the legacy VGA window.
pub const VGA_WINDOW_END: u32 = 0xC_0000;
/// Start of the PAM-controlled shadow area.
pub const PAM_START: u32 = 0xC_0000;
/// End (exclusive) of the PAM-controlled shadow area.
pub const PAM_END: u32 = 0x10_0000;
/// Size of the part of the BIOS image that is aliased below 1 MiB (at 0xE0000).
pub const ISA_BIOS_SIZE: u32 = 0x2_0000;
/// Largest supported RAM size. Addresses from 0xE000_0000 up are the PCI/ROM hole.
pub const MAX_RAM: u32 = 0xE000_0000;

/// Page flag: the page holds decoded code (writes must invalidate it).
pub const PAGE_CODE: u8 = 1 << 0;
/// Page flag: dirty logging is on and the page has not been written since the last sync.
pub const PAGE_LOG_CLEAN: u8 = 1 << 1;

/// What lies at a physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Guest RAM at this offset of the store (readable and writable).
    Ram(usize),
    /// ROM (or write-protected shadow RAM) at this offset of the store: reads only, writes
    /// are dropped.
    Rom(usize),
    /// Shadow RAM that reads from ROM/PCI but writes go to RAM (PAM mode 2 is approximated by
    /// QEMU as RAM; this is PAM write-only: reads from `read`, writes to `write`).
    Split {
        /// Where reads come from (`None`: unassigned, reads all-ones).
        read: Option<usize>,
        /// Where writes go (`None`: dropped).
        write: Option<usize>,
    },
    /// Device memory: the bus handles it (VGA window, PCI BARs, unassigned space).
    Mmio,
}

/// Errors when configuring memory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemoryError {
    /// RAM size out of range.
    #[error("RAM size {0} bytes is out of range (1 MiB to 3584 MiB, a multiple of 4 KiB)")]
    BadRamSize(u64),
    /// BIOS image of a bad size.
    #[error("BIOS image size {0} is invalid: it must be a multiple of 64 KiB, 64 KiB to 16 MiB")]
    BadBiosSize(usize),
    /// A ROM mapping that overlaps RAM or is misaligned.
    #[error("ROM mapping at {0:#x} of {1} bytes is invalid")]
    BadRomMapping(u32, usize),
    /// Saved state does not fit this memory.
    #[error("memory state does not match: {0}")]
    BadState(String),
}

/// A ROM image placed in the physical address space (outside RAM).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct RomMap {
    base: u32,
    len: u32,
    store_offset: usize,
}

/// Guest physical memory.
#[derive(Clone)]
pub struct Memory {
    store: Vec<u8>,
    ram_size: u32,
    /// Offset and length of the BIOS image in the store (mapped at 4 GiB - len).
    bios: Option<(usize, u32)>,
    /// Extra ROM images (expansion ROM BARs) mapped in the hole.
    roms: Vec<RomMap>,
    /// PAM nibbles for the 13 shadow segments: index 0 = 0xF0000 (64 KiB), then 0xC0000,
    /// 0xC4000, ... 0xEC000 (16 KiB each). Bit 0: reads from RAM, bit 1: writes to RAM.
    pam: [u8; 13],
    a20: bool,
    page_flags: Vec<u8>,
    dirty: Vec<u64>,
    logging: bool,
    code_invalidations: Vec<u32>,
    generation: u64,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("ram_size", &self.ram_size)
            .field("a20", &self.a20)
            .field("pam", &self.pam)
            .finish_non_exhaustive()
    }
}

/// Saved state of the memory map (RAM contents are saved separately, page by page).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MapState {
    /// RAM size in bytes.
    pub ram_size: u32,
    /// PAM nibbles.
    pub pam: [u8; 13],
    /// A20 gate.
    pub a20: bool,
}

impl Memory {
    /// Creates memory with `ram_size` bytes of zeroed RAM.
    pub fn new(ram_size: u64) -> Result<Memory, MemoryError> {
        if !(0x10_0000..=MAX_RAM as u64).contains(&ram_size)
            || !ram_size.is_multiple_of(PAGE_SIZE as u64)
        {
            return Err(MemoryError::BadRamSize(ram_size));
        }
        let pages = (ram_size as usize) >> PAGE_SHIFT;
        Ok(Memory {
            store: vec![0; ram_size as usize],
            ram_size: ram_size as u32,
            bios: None,
            roms: Vec::new(),
            pam: [0; 13],
            a20: true,
            page_flags: vec![0; pages],
            dirty: vec![0; pages.div_ceil(64)],
            logging: false,
            code_invalidations: Vec::new(),
            generation: 0,
        })
    }

    /// RAM size in bytes.
    pub fn ram_size(&self) -> u32 {
        self.ram_size
    }

    /// Installs the system BIOS image: mapped at 4 GiB - size, its last 128 KiB also at
    /// 0xE0000 while PAM routes reads there to ROM.
    pub fn load_bios(&mut self, image: &[u8]) -> Result<(), MemoryError> {
        let len = image.len();
        if !(0x1_0000..=0x100_0000).contains(&len) || !len.is_multiple_of(0x1_0000) {
            return Err(MemoryError::BadBiosSize(len));
        }
        let offset = self.append_store(image);
        self.bios = Some((offset, len as u32));
        self.generation += 1;
        Ok(())
    }

    /// Adds a ROM image (padded to whole pages with 0xFF), mapped at `base` (page aligned,
    /// above RAM) or not mapped yet (`None`). Returns its id for [`Memory::move_rom`].
    pub fn add_rom(&mut self, base: Option<u32>, image: &[u8]) -> Result<usize, MemoryError> {
        let padded = image.len().div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if image.is_empty() || padded > 0x100_0000 {
            return Err(MemoryError::BadRomMapping(base.unwrap_or(0), image.len()));
        }
        let offset = self.append_store(image);
        self.store.resize(offset + padded, 0xFF);
        self.roms.push(RomMap {
            base: 0,
            len: padded as u32,
            store_offset: offset,
        });
        let id = self.roms.len() - 1;
        self.move_rom(id, base)?;
        Ok(id)
    }

    /// Moves ROM `id` to `base` (`None` unmaps it), as when a guest programs a ROM BAR.
    pub fn move_rom(&mut self, id: usize, base: Option<u32>) -> Result<(), MemoryError> {
        let Some(rom) = self.roms.get(id) else {
            return Err(MemoryError::BadRomMapping(base.unwrap_or(0), 0));
        };
        let len = rom.len;
        let new_base = match base {
            Some(b) => {
                let end = b as u64 + len as u64;
                if b % PAGE_SIZE as u32 != 0 || (b as u64) < self.ram_size as u64 || end > 1 << 32 {
                    return Err(MemoryError::BadRomMapping(b, len as usize));
                }
                b
            }
            None => 0,
        };
        self.roms[id].base = new_base;
        self.generation += 1;
        Ok(())
    }

    fn append_store(&mut self, image: &[u8]) -> usize {
        let offset = self.store.len();
        self.store.extend_from_slice(image);
        offset
    }

    /// The whole store: RAM at offset 0, then ROM images. Fast-path accesses index it with
    /// offsets from [`Memory::fast_read_page`] / [`Memory::fast_write_page`].
    #[inline]
    pub fn store(&self) -> &[u8] {
        &self.store
    }

    /// The store, writable. Only for fast-path writes to pages that
    /// [`Memory::fast_write_page`] allowed.
    #[inline]
    pub fn store_mut(&mut self) -> &mut [u8] {
        &mut self.store
    }

    /// Guest RAM.
    pub fn ram(&self) -> &[u8] {
        &self.store[..self.ram_size as usize]
    }

    /// Increments whenever the map changes: every cached translation must then be dropped.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the A20 gate is open.
    pub fn a20(&self) -> bool {
        self.a20
    }

    /// Opens or closes the A20 gate (closed: bit 20 of every physical address reads as 0).
    pub fn set_a20(&mut self, on: bool) {
        if self.a20 != on {
            self.a20 = on;
            self.generation += 1;
        }
    }

    /// Applies the A20 gate to a physical address.
    #[inline]
    pub fn a20_mask(&self, addr: u32) -> u32 {
        if self.a20 {
            addr
        } else {
            addr & !(1 << 20)
        }
    }

    /// Sets the PAM registers from the i440FX config bytes 0x59..=0x5F.
    pub fn set_pam(&mut self, regs: [u8; 7]) {
        let mut pam = [0u8; 13];
        pam[0] = regs[0] >> 4;
        for i in 0..6 {
            pam[1 + 2 * i] = regs[1 + i] & 3;
            pam[2 + 2 * i] = (regs[1 + i] >> 4) & 3;
        }
        if pam != self.pam {
            self.pam = pam;
            self.generation += 1;
        }
    }

    fn pam_mode(&self, addr: u32) -> u8 {
        if addr >= 0xF_0000 {
            self.pam[0] & 3
        } else {
            self.pam[1 + ((addr - PAM_START) >> 14) as usize] & 3
        }
    }

    /// ROM content that shows through the PAM window when reads are not routed to RAM.
    fn pam_rom(&self, addr: u32) -> Option<usize> {
        let (off, len) = self.bios?;
        let isa = len.min(ISA_BIOS_SIZE);
        let start = PAM_END - isa;
        (addr >= start).then(|| off + (len - isa) as usize + (addr - start) as usize)
    }

    /// What lies at physical address `addr` (A20 already applied by the caller via
    /// [`Memory::a20_mask`]).
    #[inline]
    pub fn classify(&self, addr: u32) -> Target {
        if addr < VGA_WINDOW_START || (addr >= PAM_END && addr < self.ram_size) {
            return Target::Ram(addr as usize);
        }
        if addr < VGA_WINDOW_END {
            return Target::Mmio;
        }
        if addr < PAM_END {
            let ram = (addr < self.ram_size).then_some(addr as usize);
            return match self.pam_mode(addr) {
                0 => match self.pam_rom(addr) {
                    Some(o) => Target::Rom(o),
                    None => Target::Mmio,
                },
                1 => match ram {
                    Some(o) => Target::Rom(o),
                    None => Target::Mmio,
                },
                2 => Target::Split {
                    read: self.pam_rom(addr),
                    write: ram,
                },
                _ => match ram {
                    Some(o) => Target::Ram(o),
                    None => Target::Mmio,
                },
            };
        }
        if let Some((off, len)) = self.bios {
            let base = (1u64 << 32) - len as u64;
            if addr as u64 >= base {
                return Target::Rom(off + (addr as u64 - base) as usize);
            }
        }
        for rom in &self.roms {
            if rom.base != 0 && addr >= rom.base && ((addr - rom.base) as u64) < rom.len as u64 {
                return Target::Rom(rom.store_offset + (addr - rom.base) as usize);
            }
        }
        Target::Mmio
    }

    /// Store offset of the page at `page_addr` (page aligned, A20 applied) when plain reads
    /// of the whole page may use the store directly.
    #[inline]
    pub fn fast_read_page(&self, page_addr: u32) -> Option<usize> {
        match self.classify(page_addr) {
            Target::Ram(o) | Target::Rom(o) => Some(o),
            _ => None,
        }
    }

    /// Store offset of the page at `page_addr` when plain writes of the whole page may go
    /// straight to the store: RAM with no code and not awaiting a dirty-log record.
    #[inline]
    pub fn fast_write_page(&self, page_addr: u32) -> Option<usize> {
        match self.classify(page_addr) {
            Target::Ram(o) if self.page_flags[o >> PAGE_SHIFT] == 0 => Some(o),
            _ => None,
        }
    }

    /// Flags of the RAM page holding store offset `ram_offset` (0 for non-RAM).
    #[inline]
    pub fn page_flags(&self, ram_offset: usize) -> u8 {
        self.page_flags
            .get(ram_offset >> PAGE_SHIFT)
            .copied()
            .unwrap_or(0)
    }

    /// Marks the RAM page at `ram_offset` as holding decoded code. Returns true when the
    /// flag was newly set (the caller must then drop fast write entries to that page).
    pub fn mark_code(&mut self, ram_offset: usize) -> bool {
        match self.page_flags.get_mut(ram_offset >> PAGE_SHIFT) {
            Some(f) if *f & PAGE_CODE == 0 => {
                *f |= PAGE_CODE;
                true
            }
            _ => false,
        }
    }

    /// Records a write to RAM page `page` (index): dirty log, code invalidation.
    #[inline]
    fn note_write(&mut self, page: usize) {
        let f = &mut self.page_flags[page];
        if *f != 0 {
            if *f & PAGE_CODE != 0 {
                self.code_invalidations.push((page << PAGE_SHIFT) as u32);
            }
            *f = 0;
        }
        self.dirty[page / 64] |= 1 << (page % 64);
    }

    /// Takes the list of RAM addresses of pages whose code was invalidated by writes.
    pub fn take_code_invalidations(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.code_invalidations)
    }

    /// Whether any code invalidation is pending.
    #[inline]
    pub fn has_code_invalidations(&self) -> bool {
        !self.code_invalidations.is_empty()
    }

    /// Records that the fast path wrote the RAM page at `ram_offset` (only needed for pages
    /// that had flags, which never get fast entries: this is for completeness of DMA users).
    pub fn note_ram_write(&mut self, ram_offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        let first = ram_offset >> PAGE_SHIFT;
        let last = (ram_offset + len - 1) >> PAGE_SHIFT;
        for p in first..=last.min(self.page_flags.len().saturating_sub(1)) {
            self.note_write(p);
        }
    }

    /// Reads physical memory that is RAM or ROM into `buf`. Bytes at MMIO or unassigned
    /// addresses read as 0xFF (a DMA or debug read never touches devices). The A20 gate is
    /// applied.
    pub fn read_phys(&self, addr: u32, buf: &mut [u8]) {
        let mut a = addr;
        let mut i = 0;
        while i < buf.len() {
            let pa = self.a20_mask(a);
            let in_page = PAGE_SIZE - (pa as usize & (PAGE_SIZE - 1));
            let n = in_page.min(buf.len() - i);
            let read = match self.classify(pa) {
                Target::Ram(o) | Target::Rom(o) => Some(o),
                Target::Split { read, .. } => read,
                Target::Mmio => None,
            };
            match read {
                Some(o) => buf[i..i + n].copy_from_slice(&self.store[o..o + n]),
                None => buf[i..i + n].fill(0xFF),
            }
            i += n;
            a = a.wrapping_add(n as u32);
        }
    }

    /// Writes RAM through the one write path (dirty log, code invalidation). Bytes that fall
    /// on ROM, write-protected shadow RAM, MMIO or unassigned addresses are dropped; returns
    /// the number of bytes that reached RAM. The A20 gate is applied.
    pub fn write_phys(&mut self, addr: u32, data: &[u8]) -> usize {
        let mut a = addr;
        let mut i = 0;
        let mut done = 0;
        while i < data.len() {
            let pa = self.a20_mask(a);
            let in_page = PAGE_SIZE - (pa as usize & (PAGE_SIZE - 1));
            let n = in_page.min(data.len() - i);
            let write = match self.classify(pa) {
                Target::Ram(o) => Some(o),
                Target::Split { write, .. } => write,
                Target::Rom(_) | Target::Mmio => None,
            };
            if let Some(o) = write {
                self.store[o..o + n].copy_from_slice(&data[i..i + n]);
                self.note_write(o >> PAGE_SHIFT);
                done += n;
            }
            i += n;
            a = a.wrapping_add(n as u32);
        }
        done
    }

    /// Reads a little-endian u32 of physical memory (see [`Memory::read_phys`]).
    pub fn read_u32(&self, addr: u32) -> u32 {
        let mut b = [0; 4];
        self.read_phys(addr, &mut b);
        u32::from_le_bytes(b)
    }

    /// Writes a little-endian u32 through the write path.
    pub fn write_u32(&mut self, addr: u32, v: u32) {
        self.write_phys(addr, &v.to_le_bytes());
    }

    /// Starts dirty logging: every RAM page is marked clean, and every page is reported
    /// dirty again by the next [`Memory::sync_dirty`] once written.
    pub fn start_dirty_log(&mut self) {
        self.logging = true;
        for f in &mut self.page_flags {
            *f |= PAGE_LOG_CLEAN;
        }
        self.dirty.fill(0);
        self.generation += 1;
    }

    /// Stops dirty logging.
    pub fn stop_dirty_log(&mut self) {
        self.logging = false;
        for f in &mut self.page_flags {
            *f &= !PAGE_LOG_CLEAN;
        }
        self.generation += 1;
    }

    /// Whether dirty logging is on.
    pub fn dirty_logging(&self) -> bool {
        self.logging
    }

    /// Returns the indices of pages written since the last sync and re-arms logging for
    /// them. The caller must drop its fast write entries afterwards
    /// ([`Memory::generation`] increments when any page was re-armed).
    pub fn sync_dirty(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        for (w, word) in self.dirty.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let page = w * 64 + b;
                out.push(page as u32);
                if self.logging {
                    self.page_flags[page] |= PAGE_LOG_CLEAN;
                }
            }
        }
        if self.logging && !out.is_empty() {
            self.generation += 1;
        }
        out
    }

    /// Saved map state.
    pub fn map_state(&self) -> MapState {
        MapState {
            ram_size: self.ram_size,
            pam: self.pam,
            a20: self.a20,
        }
    }

    /// Restores the map state (RAM size must match).
    pub fn restore_map_state(&mut self, s: &MapState) -> Result<(), MemoryError> {
        if s.ram_size != self.ram_size {
            return Err(MemoryError::BadState(format!(
                "RAM size {} in the stream, {} here",
                s.ram_size, self.ram_size
            )));
        }
        if s.pam.iter().any(|&p| p > 3) {
            return Err(MemoryError::BadState("PAM value out of range".into()));
        }
        self.pam = s.pam;
        self.a20 = s.a20;
        self.generation += 1;
        Ok(())
    }

    /// Resets the map to its power-on state (PAM all ROM, A20 open). RAM keeps its contents.
    pub fn reset(&mut self) {
        self.pam = [0; 13];
        self.a20 = true;
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bios() -> Vec<u8> {
        let mut b = vec![0u8; 0x4_0000];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i >> 12) as u8;
        }
        b
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(Memory::new(1000).is_err());
        assert!(Memory::new(0x1000).is_err());
        let mut m = Memory::new(0x100_0000).unwrap();
        assert_eq!(m.load_bios(&[0; 100]), Err(MemoryError::BadBiosSize(100)));
    }

    #[test]
    fn bios_visible_high_and_low_then_shadowed() {
        let mut m = Memory::new(0x100_0000).unwrap();
        m.load_bios(&bios()).unwrap();
        // High alias: last byte of image at 0xFFFFFFFF.
        let mut b = [0u8; 1];
        m.read_phys(0xFFFF_FFFF, &mut b);
        assert_eq!(b[0], 0x3F);
        // Low alias: 0xFFFFF is the image's last byte too.
        m.read_phys(0xF_FFFF, &mut b);
        assert_eq!(b[0], 0x3F);
        m.read_phys(0xE_0000, &mut b);
        assert_eq!(b[0], 0x20);
        // Writes to ROM are dropped.
        assert_eq!(m.write_phys(0xF_0000, &[0xAA]), 0);
        // PAM 0x30/0x33: RAM read/write; contents start zeroed.
        let g = m.generation();
        m.set_pam([0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33]);
        assert!(m.generation() > g);
        m.read_phys(0xF_0000, &mut b);
        assert_eq!(b[0], 0);
        assert_eq!(m.write_phys(0xF_0000, &[0xAB]), 1);
        // Read-only shadow (mode 1): reads RAM, drops writes.
        m.set_pam([0x10, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11]);
        assert_eq!(m.write_phys(0xF_0000, &[0x00]), 0);
        m.read_phys(0xF_0000, &mut b);
        assert_eq!(b[0], 0xAB);
        assert_eq!(m.classify(0xC_0000), Target::Rom(0xC_0000));
    }

    #[test]
    fn vga_window_and_hole_are_mmio() {
        let m = Memory::new(0x100_0000).unwrap();
        assert_eq!(m.classify(0xA_0000), Target::Mmio);
        assert_eq!(m.classify(0xB_8000), Target::Mmio);
        assert_eq!(m.classify(0x100_0000), Target::Mmio);
        let mut b = [0u8; 2];
        m.read_phys(0x0FF_FFFF, &mut b);
        assert_eq!(b, [0, 0xFF]);
    }

    #[test]
    fn a20_wraps() {
        let mut m = Memory::new(0x200_0000).unwrap();
        m.write_phys(0x10_0000, &[7]);
        m.set_a20(false);
        let mut b = [0u8];
        m.read_phys(0x10_0000, &mut b);
        assert_eq!(b[0], 0);
        m.set_a20(true);
        m.read_phys(0x10_0000, &mut b);
        assert_eq!(b[0], 7);
    }

    #[test]
    fn code_pages_have_no_fast_write_and_invalidate() {
        let mut m = Memory::new(0x100_0000).unwrap();
        assert_eq!(m.fast_write_page(0x5000), Some(0x5000));
        assert!(m.mark_code(0x5000));
        assert!(!m.mark_code(0x5123));
        assert_eq!(m.fast_write_page(0x5000), None);
        assert_eq!(m.fast_read_page(0x5000), Some(0x5000));
        m.write_phys(0x5FFF, &[1, 2]);
        assert_eq!(m.take_code_invalidations(), vec![0x5000]);
        assert_eq!(m.fast_write_page(0x5000), Some(0x5000));
    }

    #[test]
    fn dirty_log() {
        let mut m = Memory::new(0x100_0000).unwrap();
        m.start_dirty_log();
        assert_eq!(m.fast_write_page(0x3000), None);
        m.write_phys(0x3004, &[1]);
        m.write_phys(0x8000, &[1; 5000]);
        assert_eq!(m.fast_write_page(0x3000), Some(0x3000));
        assert_eq!(m.sync_dirty(), vec![3, 8, 9]);
        assert_eq!(m.fast_write_page(0x3000), None);
        assert!(m.sync_dirty().is_empty());
        m.stop_dirty_log();
        assert_eq!(m.fast_write_page(0x3000), Some(0x3000));
    }

    #[test]
    fn rom_bar_mapping() {
        let mut m = Memory::new(0x100_0000).unwrap();
        let id = m.add_rom(Some(0xFEB0_0000), &[0x55, 0xAA, 3]).unwrap();
        let mut b = [0u8; 4];
        m.read_phys(0xFEB0_0000, &mut b);
        assert_eq!(b, [0x55, 0xAA, 3, 0xFF]);
        m.move_rom(id, None).unwrap();
        m.read_phys(0xFEB0_0000, &mut b);
        assert_eq!(b, [0xFF; 4]);
        assert!(m.move_rom(id, Some(0x1000)).is_err());
        assert!(m.move_rom(9, Some(0xFEB0_0000)).is_err());
    }

    #[test]
    fn map_state_round_trip_and_rejection() {
        let mut m = Memory::new(0x100_0000).unwrap();
        m.set_pam([0x10, 0x31, 0, 0, 0, 0, 0]);
        m.set_a20(false);
        let s = m.map_state();
        let mut n = Memory::new(0x100_0000).unwrap();
        n.restore_map_state(&s).unwrap();
        assert_eq!(n.map_state(), s);
        let mut bad = s.clone();
        bad.pam[3] = 9;
        assert!(n.restore_map_state(&bad).is_err());
        assert!(Memory::new(0x200_0000)
            .unwrap()
            .restore_map_state(&s)
            .is_err());
    }
}
