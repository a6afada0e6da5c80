//! Linear and physical memory access: the direct-mapped TLB, the page walk (4 KiB and
//! 4 MiB pages, PGE, WP, accessed/dirty bits), segment checks, and the slow path through
//! `Memory` and the bus.
//!
//! A TLB entry holds one tag per access kind (read/fetch, write) and the store offset of the
//! page. A tag matches only when that kind of access may go straight to the store, so a hit
//! is one compare. Pages that hold code, are dirty-logged, ROM (for writes) or MMIO never
//! get the tag, and every access to them takes the slow path. Two halves: one for
//! supervisor accesses and one for user (CPL 3) accesses.

use crate::flags::size_mask;
use crate::{fault, sreg, vec, Bus, Cpu, Fault, Res};
use wasm86_memory::{Memory, Target};

/// Entries per TLB half.
pub(crate) const TLB_SIZE: usize = 1024;
/// A tag that never matches (page-aligned addresses have bit 0 clear).
pub(crate) const NO_TAG: u32 = 1;

const PTE_P: u32 = 1;
const PTE_W: u32 = 2;
const PTE_U: u32 = 4;
const PTE_A: u32 = 0x20;
const PTE_D: u32 = 0x40;
const PTE_PS: u32 = 0x80;
const PTE_G: u32 = 0x100;

pub(crate) const CR0_PE: u32 = 1;
pub(crate) const CR0_WP: u32 = 1 << 16;
/// Alignment mask: #AC for misaligned user data accesses when EFLAGS.AC is set too.
pub(crate) const CR0_AM: u32 = 1 << 18;
pub(crate) const CR0_PG: u32 = 1 << 31;
/// Virtual-8086 mode extensions.
pub(crate) const CR4_VME: u32 = 1 << 0;
/// Protected-mode virtual interrupts.
pub(crate) const CR4_PVI: u32 = 1 << 1;
pub(crate) const CR4_PSE: u32 = 1 << 4;
pub(crate) const CR4_PGE: u32 = 1 << 7;

/// Kind of access for the page walk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Acc {
    Read,
    Write,
}

impl Cpu {
    /// Drops every TLB entry.
    pub(crate) fn flush_tlb_all(&mut self) {
        for e in self.tlb.iter_mut() {
            e.rtag = NO_TAG;
            e.wtag = NO_TAG;
            e.global = false;
        }
        self.large_regions = [0; 32];
    }

    /// Drops non-global entries (MOV CR3 with PGE on).
    pub(crate) fn flush_tlb_nonglobal(&mut self) {
        if self.cr4 & CR4_PGE == 0 {
            self.flush_tlb_all();
            return;
        }
        for e in self.tlb.iter_mut() {
            if !e.global {
                e.rtag = NO_TAG;
                e.wtag = NO_TAG;
            }
        }
    }

    /// INVLPG: drops the entries for `lin`, and for every page of its 4 MiB region when a
    /// large page was cached there.
    pub(crate) fn invlpg(&mut self, lin: u32) {
        let region = (lin >> 22) as usize;
        if self.large_regions[region / 32] & (1 << (region % 32)) != 0 {
            self.large_regions[region / 32] &= !(1 << (region % 32));
            for e in self.tlb.iter_mut() {
                if e.rtag != NO_TAG && (e.rtag >> 22) as usize == region
                    || e.wtag != NO_TAG && (e.wtag >> 22) as usize == region
                {
                    e.rtag = NO_TAG;
                    e.wtag = NO_TAG;
                    e.global = false;
                }
            }
        }
        let i = ((lin >> 12) as usize) & (TLB_SIZE - 1);
        for half in [0, TLB_SIZE] {
            let e = &mut self.tlb[i + half];
            e.rtag = NO_TAG;
            e.wtag = NO_TAG;
            e.global = false;
        }
    }

    /// Flushes the TLB if the memory map changed since it was filled.
    #[inline]
    pub(crate) fn check_mem_generation(&mut self, mem: &Memory) {
        let g = mem.generation();
        if g != self.mem_gen {
            self.mem_gen = g;
            self.flush_tlb_all();
        }
    }

    /// Walks the page tables for `lin`. Sets accessed/dirty bits, raises #PF, fills the TLB
    /// and returns the physical address (A20 not applied).
    pub(crate) fn translate<B: Bus>(
        &mut self,
        bus: &mut B,
        lin: u32,
        acc: Acc,
        user: bool,
    ) -> Res<u32> {
        let write = acc == Acc::Write;
        if self.cr0 & CR0_PG == 0 {
            self.tlb_fill(bus.memory(), lin, lin, write, true, false, false, user);
            return Ok(lin);
        }
        let mem = bus.memory();
        let pf = |cpu: &mut Cpu, present: bool| -> Res<u32> {
            cpu.cr2 = lin;
            let code = present as u32 | (write as u32) << 1 | (user as u32) << 2;
            fault(vec::PF, Some(code))
        };
        let pde_addr = (self.cr3 & 0xFFFF_F000) | ((lin >> 22) << 2);
        let pde = mem.read_u32(pde_addr);
        if pde & PTE_P == 0 {
            return pf(self, false);
        }
        let wp = self.cr0 & CR0_WP != 0;
        if pde & PTE_PS != 0 && self.cr4 & CR4_PSE != 0 {
            let uok = pde & PTE_U != 0;
            let wok = pde & PTE_W != 0;
            if user && !uok || write && !wok && (user || wp) {
                return pf(self, true);
            }
            let mut npde = pde | PTE_A;
            if write {
                npde |= PTE_D;
            }
            if npde != pde {
                mem.write_u32(pde_addr, npde);
            }
            let phys = (pde & 0xFFC0_0000) | (lin & 0x003F_FFFF);
            let can_write = npde & PTE_D != 0 && (wok || !user && !wp);
            let global = pde & PTE_G != 0 && self.cr4 & CR4_PGE != 0;
            self.tlb_fill(
                bus.memory(),
                lin,
                phys,
                write,
                can_write,
                global,
                true,
                user,
            );
            return Ok(phys);
        }
        let pte_addr = (pde & 0xFFFF_F000) | (((lin >> 12) & 0x3FF) << 2);
        let pte = mem.read_u32(pte_addr);
        if pte & PTE_P == 0 {
            return pf(self, false);
        }
        let uok = pde & pte & PTE_U != 0;
        let wok = pde & pte & PTE_W != 0;
        if user && !uok || write && !wok && (user || wp) {
            return pf(self, true);
        }
        if pde & PTE_A == 0 {
            mem.write_u32(pde_addr, pde | PTE_A);
        }
        let mut npte = pte | PTE_A;
        if write {
            npte |= PTE_D;
        }
        if npte != pte {
            mem.write_u32(pte_addr, npte);
        }
        let phys = (pte & 0xFFFF_F000) | (lin & 0xFFF);
        let can_write = npte & PTE_D != 0 && (wok || !user && !wp);
        let global = pte & PTE_G != 0 && self.cr4 & CR4_PGE != 0;
        self.tlb_fill(
            bus.memory(),
            lin,
            phys,
            write,
            can_write,
            global,
            false,
            user,
        );
        Ok(phys)
    }

    #[allow(clippy::too_many_arguments)]
    fn tlb_fill(
        &mut self,
        mem: &Memory,
        lin: u32,
        phys: u32,
        write: bool,
        can_write: bool,
        global: bool,
        large: bool,
        user: bool,
    ) {
        let g = mem.generation();
        if g != self.mem_gen {
            self.mem_gen = g;
            self.flush_tlb_all();
        }
        if self.dbp_data {
            return;
        }
        let page = mem.a20_mask(phys) & 0xFFFF_F000;
        let Some(off) = mem.fast_read_page(page) else {
            return;
        };
        let Ok(off32) = u32::try_from(off) else {
            return;
        };
        let woff = if write || can_write {
            mem.fast_write_page(page)
        } else {
            None
        };
        let idx = ((lin >> 12) as usize & (TLB_SIZE - 1)) + if user { TLB_SIZE } else { 0 };
        let tag = lin & 0xFFFF_F000;
        if large {
            let r = (lin >> 22) as usize;
            self.large_regions[r / 32] |= 1 << (r % 32);
        }
        let e = &mut self.tlb[idx];
        e.rtag = tag;
        e.off = off32;
        e.global = global;
        e.wtag = if woff == Some(off) && can_write {
            tag
        } else {
            NO_TAG
        };
    }

    // ---- linear access ----

    /// The TLB entry that maps linear address `lin` for the current privilege (a hit still
    /// needs its tag compared).
    #[inline(always)]
    pub(crate) fn tlb_entry(&self, lin: u32) -> &crate::TlbEntry {
        &self.tlb[((lin >> 12) as usize & (TLB_SIZE - 1)) + self.tlb_user]
    }

    /// Reads `n` (1, 2, 4) bytes at linear address `lin` with the current privilege.
    #[inline(always)]
    pub(crate) fn rd_lin<B: Bus>(&mut self, bus: &mut B, lin: u32, n: u32) -> Res<u32> {
        let e = self.tlb_entry(lin);
        // One compare: the page's tag and natural alignment (an aligned access never crosses
        // the page; unaligned ones take the slow path, which has its own TLB fast case).
        if e.rtag == lin & (0xFFFF_F000 | (n - 1)) {
            let o = e.off as usize + (lin & 0xFFF) as usize;
            let s = bus.memory().store();
            if let Some(b) = s.get(o..o + n as usize) {
                return Ok(match n {
                    1 => b[0] as u32,
                    2 => u16::from_le_bytes([b[0], b[1]]) as u32,
                    _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                });
            }
        }
        let user = self.cpl == 3;
        if self.dbp_data {
            self.check_data_breakpoints(lin, n, false);
        }
        self.rd_lin_slow(bus, lin, n, user)
    }

    /// Writes `n` bytes at linear address `lin` with the current privilege.
    #[inline(always)]
    pub(crate) fn wr_lin<B: Bus>(&mut self, bus: &mut B, lin: u32, n: u32, v: u32) -> Res<()> {
        let e = self.tlb_entry(lin);
        if e.wtag == lin & (0xFFFF_F000 | (n - 1)) {
            let o = e.off as usize + (lin & 0xFFF) as usize;
            let s = bus.memory().store_mut();
            match n {
                1 => {
                    if let Some(b) = s.get_mut(o) {
                        *b = v as u8;
                        return Ok(());
                    }
                }
                2 => {
                    if let Some(b) = s.get_mut(o..o + 2) {
                        b.copy_from_slice(&(v as u16).to_le_bytes());
                        return Ok(());
                    }
                }
                _ => {
                    if let Some(b) = s.get_mut(o..o + 4) {
                        b.copy_from_slice(&v.to_le_bytes());
                        return Ok(());
                    }
                }
            }
        }
        let user = self.cpl == 3;
        if self.dbp_data {
            self.check_data_breakpoints(lin, n, true);
        }
        self.wr_lin_slow(bus, lin, n, v, user)
    }

    /// Whether misaligned data accesses raise #AC now: CR0.AM, EFLAGS.AC, CPL 3 (V86
    /// included), and not inside event delivery (its stack pushes are implicit accesses).
    #[inline]
    pub(crate) fn ac_armed(&self) -> bool {
        self.cr0 & CR0_AM != 0
            && self.eflags & crate::flags::AC != 0
            && self.cpl == 3
            && !self.no_ac
    }

    /// #AC(0) for an operand of `size` (2, 4, 8) bytes at `seg:off` that is accessed in
    /// several naturally aligned pieces (m64, far pointers, FPU environments): callers check
    /// it after the pieces' own #GP/#SS/#PF checks.
    pub(crate) fn align_check(&self, s: usize, off: u32, size: u32) -> Res<()> {
        if self.ac_armed() && self.segs[s].base.wrapping_add(off) & (size - 1) != 0 {
            return fault(vec::AC, Some(0));
        }
        Ok(())
    }

    /// A misaligned user access with alignment checking on: the page checks come first,
    /// then #AC(0).
    #[cold]
    #[inline(never)]
    fn ac_fault<B: Bus>(&mut self, bus: &mut B, lin: u32, n: u32, acc: Acc, user: bool) -> Fault {
        if let Err(f) = self.translate(bus, lin, acc, user) {
            return f;
        }
        if (lin & 0xFFF) + n > 0x1000 {
            if let Err(f) = self.translate(bus, (lin | 0xFFF).wrapping_add(1), acc, user) {
                return f;
            }
        }
        Fault::new(vec::AC, Some(0))
    }

    /// Supervisor-mode (system) read: descriptor tables, TSS.
    pub(crate) fn rd_sys<B: Bus>(&mut self, bus: &mut B, lin: u32, n: u32) -> Res<u32> {
        self.rd_lin_slow(bus, lin, n, false)
    }

    /// Supervisor-mode (system) write.
    pub(crate) fn wr_sys<B: Bus>(&mut self, bus: &mut B, lin: u32, n: u32, v: u32) -> Res<()> {
        self.wr_lin_slow(bus, lin, n, v, false)
    }

    #[inline(never)]
    pub(crate) fn rd_lin_slow<B: Bus>(
        &mut self,
        bus: &mut B,
        lin: u32,
        n: u32,
        user: bool,
    ) -> Res<u32> {
        // Every misaligned access comes here (the fast path's tag compare includes natural
        // alignment); system accesses pass `user` false and fetches are single bytes.
        if user && lin & (n - 1) != 0 && self.ac_armed() {
            return Err(self.ac_fault(bus, lin, n, Acc::Read, user));
        }
        let e = self.tlb_entry(lin);
        if e.rtag == lin & 0xFFFF_F000 && (lin & 0xFFF) <= 0x1000 - n {
            // Unaligned inside a page the TLB maps.
            let o = e.off as usize + (lin & 0xFFF) as usize;
            if let Some(b) = bus.memory().store().get(o..o + n as usize) {
                return Ok(b.iter().rev().fold(0, |v, &x| (v << 8) | x as u32));
            }
        }
        if (lin & 0xFFF) + n > 0x1000 {
            // Crosses a page: translate both pages before touching anything.
            let p0 = self.translate(bus, lin, Acc::Read, user)?;
            let next = (lin | 0xFFF).wrapping_add(1);
            let p1 = self.translate(bus, next, Acc::Read, user)?;
            let mut v = 0;
            for i in 0..n {
                let a = lin.wrapping_add(i);
                let pa = if a & 0xFFF >= lin & 0xFFF {
                    p0.wrapping_add(i)
                } else {
                    p1 + (a & 0xFFF)
                };
                v |= self.phys_read(bus, pa, 1) << (8 * i);
            }
            return Ok(v);
        }
        let pa = self.translate(bus, lin, Acc::Read, user)?;
        Ok(self.phys_read(bus, pa, n))
    }

    #[inline(never)]
    pub(crate) fn wr_lin_slow<B: Bus>(
        &mut self,
        bus: &mut B,
        lin: u32,
        n: u32,
        v: u32,
        user: bool,
    ) -> Res<()> {
        if user && lin & (n - 1) != 0 && self.ac_armed() {
            return Err(self.ac_fault(bus, lin, n, Acc::Write, user));
        }
        let e = self.tlb_entry(lin);
        if e.wtag == lin & 0xFFFF_F000 && (lin & 0xFFF) <= 0x1000 - n {
            // Unaligned inside a page the TLB maps for writing.
            let o = e.off as usize + (lin & 0xFFF) as usize;
            if let Some(b) = bus.memory().store_mut().get_mut(o..o + n as usize) {
                for (i, x) in b.iter_mut().enumerate() {
                    *x = (v >> (8 * i)) as u8;
                }
                return Ok(());
            }
        }
        if (lin & 0xFFF) + n > 0x1000 {
            let p0 = self.translate(bus, lin, Acc::Write, user)?;
            let next = (lin | 0xFFF).wrapping_add(1);
            let p1 = self.translate(bus, next, Acc::Write, user)?;
            for i in 0..n {
                let a = lin.wrapping_add(i);
                let pa = if a & 0xFFF >= lin & 0xFFF {
                    p0.wrapping_add(i)
                } else {
                    p1 + (a & 0xFFF)
                };
                self.phys_write(bus, pa, 1, v >> (8 * i));
            }
            return Ok(());
        }
        let pa = self.translate(bus, lin, Acc::Write, user)?;
        self.phys_write(bus, pa, n, v);
        Ok(())
    }

    /// Physical read of `n` bytes within one page (A20 applied here).
    pub(crate) fn phys_read<B: Bus>(&mut self, bus: &mut B, pa: u32, n: u32) -> u32 {
        let mem = bus.memory();
        let pa = mem.a20_mask(pa);
        let src = match mem.classify(pa) {
            Target::Ram(o) | Target::Rom(o) => Some(o),
            Target::Split { read, .. } => match read {
                Some(o) => Some(o),
                None => return size_mask(n),
            },
            Target::Mmio => None,
        };
        match src {
            Some(o) => {
                let mut b = [0u8; 4];
                match mem.store().get(o..o + n as usize) {
                    Some(s) => b[..n as usize].copy_from_slice(s),
                    None => return size_mask(n),
                }
                u32::from_le_bytes(b)
            }
            None => {
                self.io_done = true;
                self.code.exit |= crate::block::EXIT_STOP;
                bus.mmio_read(pa, n as u8, self.icount) & size_mask(n)
            }
        }
    }

    /// Physical write of `n` bytes within one page, through the one write path.
    pub(crate) fn phys_write<B: Bus>(&mut self, bus: &mut B, pa: u32, n: u32, v: u32) {
        let mem = bus.memory();
        let pa = mem.a20_mask(pa);
        match mem.classify(pa) {
            Target::Ram(_) | Target::Split { .. } => {
                mem.write_phys(pa, &v.to_le_bytes()[..n as usize]);
                self.drain_code_invalidations(mem);
            }
            Target::Rom(_) => {}
            Target::Mmio => {
                self.io_done = true;
                self.code.exit |= crate::block::EXIT_STOP;
                bus.mmio_write(pa, n as u8, v & size_mask(n), self.icount);
            }
        }
    }

    // ---- segmented access ----

    /// Checks a data access of `n` bytes at `off` in segment `s` and returns the linear
    /// address.
    #[inline(always)]
    pub(crate) fn seg_check(&self, s: usize, off: u32, n: u32, write: bool) -> Res<u32> {
        let sg = &self.segs[s];
        // One compare for the common case: an expand-up segment that allows the access.
        let lim = if write { sg.wlim } else { sg.rlim };
        if off as u64 + n as u64 <= lim {
            return Ok(sg.base.wrapping_add(off));
        }
        self.seg_check_full(s, off, n, write)
    }

    /// [`Cpu::seg_check`] for everything but the fast case: expand-down segments, access
    /// rights, real mode, and the faults.
    #[inline(never)]
    fn seg_check_full(&self, s: usize, off: u32, n: u32, write: bool) -> Res<u32> {
        let sg = &self.segs[s];
        let ok = if write { sg.wr } else { sg.rd };
        let last = off.wrapping_add(n - 1);
        let in_limit = if !sg.down {
            off <= sg.limit && last <= sg.limit && last >= off
        } else {
            let top = if sg.big { 0xFFFF_FFFF } else { 0xFFFF };
            off > sg.limit && last <= top && last >= off
        };
        if ok && in_limit {
            return Ok(sg.base.wrapping_add(off));
        }
        // Real mode checks the cached limit but not the access rights (a CS override may
        // write).
        if in_limit && !self.pe() {
            return Ok(sg.base.wrapping_add(off));
        }
        self.seg_fault(s)
    }

    #[cold]
    fn seg_fault(&self, s: usize) -> Res<u32> {
        if s == sreg::SS {
            fault(vec::SS, Some(0))
        } else {
            fault(vec::GP, Some(0))
        }
    }

    /// Reads `n` bytes at `seg:off`.
    #[inline(always)]
    pub(crate) fn rd<B: Bus>(&mut self, bus: &mut B, s: usize, off: u32, n: u32) -> Res<u32> {
        let lin = self.seg_check(s, off, n, false)?;
        self.rd_lin(bus, lin, n)
    }

    /// Writes `n` bytes at `seg:off`.
    #[inline(always)]
    pub(crate) fn wr<B: Bus>(
        &mut self,
        bus: &mut B,
        s: usize,
        off: u32,
        n: u32,
        v: u32,
    ) -> Res<()> {
        let lin = self.seg_check(s, off, n, true)?;
        self.wr_lin(bus, lin, n, v)
    }

    /// Checks that a write of `n` bytes at `seg:off` would succeed (segment and page), without
    /// writing. Used before multi-part updates that must not be half done.
    pub(crate) fn probe_write<B: Bus>(
        &mut self,
        bus: &mut B,
        s: usize,
        off: u32,
        n: u32,
    ) -> Res<()> {
        let lin = self.seg_check(s, off, n, true)?;
        let user = self.cpl == 3;
        self.translate(bus, lin, Acc::Write, user)?;
        if (lin & 0xFFF) + n > 0x1000 {
            self.translate(bus, (lin | 0xFFF).wrapping_add(1), Acc::Write, user)?;
        }
        Ok(())
    }

    /// Prefetches up to 16 instruction bytes at EIP when they lie in one page reachable
    /// through the TLB and inside the CS limit (and before a 16-bit IP wrap).
    #[inline(always)]
    pub(crate) fn prefetch<B: Bus>(&mut self, bus: &mut B) {
        self.ipos = 0;
        self.iavail = 0;
        let cs = &self.segs[sreg::CS];
        let off = self.eip;
        let lin = cs.base.wrapping_add(off);
        if lin & 0xFFF > 0x1000 - 16
            || off > cs.limit
            || cs.limit - off < 15
            || (!cs.big && off > 0xFFFF - 15)
        {
            return;
        }
        let e = self.tlb_entry(lin);
        if e.rtag == lin & 0xFFFF_F000 {
            let o = e.off as usize + (lin & 0xFFF) as usize;
            if let Some(s) = bus.memory().store().get(o..o + 16) {
                if let Ok(b) = <[u8; 16]>::try_from(s) {
                    self.ibuf = b;
                    self.iavail = 16;
                }
            }
        }
    }

    /// Fetches one instruction byte at EIP and advances EIP.
    #[inline(always)]
    pub(crate) fn fetch8<B: Bus>(&mut self, bus: &mut B) -> Res<u8> {
        if self.ipos < self.iavail {
            let b = self.ibuf[self.ipos as usize & 15];
            self.ipos += 1;
            self.eip = self.eip.wrapping_add(1);
            return Ok(b);
        }
        self.fetch8_slow(bus)
    }

    #[inline(never)]
    fn fetch8_slow<B: Bus>(&mut self, bus: &mut B) -> Res<u8> {
        let cs = &self.segs[sreg::CS];
        let off = self.eip;
        if off > cs.limit {
            return Err(Fault::new(vec::GP, Some(0)));
        }
        let lin = cs.base.wrapping_add(off);
        // 16-bit code: IP wraps at 64 KiB.
        self.eip = if cs.big {
            off.wrapping_add(1)
        } else {
            off.wrapping_add(1) & 0xFFFF
        };
        let e = self.tlb_entry(lin);
        if e.rtag == lin & 0xFFFF_F000 {
            if let Some(&b) = bus
                .memory()
                .store()
                .get(e.off as usize + (lin & 0xFFF) as usize)
            {
                return Ok(b);
            }
        }
        let user = self.cpl == 3;
        Ok(self.rd_lin_slow(bus, lin, 1, user)? as u8)
    }

    /// Fetches a 16-bit immediate.
    #[inline(always)]
    pub(crate) fn fetch16<B: Bus>(&mut self, bus: &mut B) -> Res<u16> {
        let lo = self.fetch8(bus)? as u16;
        Ok(lo | (self.fetch8(bus)? as u16) << 8)
    }

    /// Fetches a 32-bit immediate.
    #[inline(always)]
    pub(crate) fn fetch32<B: Bus>(&mut self, bus: &mut B) -> Res<u32> {
        let lo = self.fetch16(bus)? as u32;
        Ok(lo | (self.fetch16(bus)? as u32) << 16)
    }

    /// Debug translation: no A/D updates, no faults, A20 applied.
    pub fn translate_debug(&self, mem: &Memory, linear: u32) -> Option<u32> {
        let phys = if self.cr0 & CR0_PG == 0 {
            linear
        } else {
            let pde = mem.read_u32((self.cr3 & 0xFFFF_F000) | ((linear >> 22) << 2));
            if pde & PTE_P == 0 {
                return None;
            }
            if pde & PTE_PS != 0 && self.cr4 & CR4_PSE != 0 {
                (pde & 0xFFC0_0000) | (linear & 0x003F_FFFF)
            } else {
                let pte = mem.read_u32((pde & 0xFFFF_F000) | (((linear >> 12) & 0x3FF) << 2));
                if pte & PTE_P == 0 {
                    return None;
                }
                (pte & 0xFFFF_F000) | (linear & 0xFFF)
            }
        };
        Some(mem.a20_mask(phys))
    }
}
