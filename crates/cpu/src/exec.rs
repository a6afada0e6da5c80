//! The run loop, the instruction decoder and the semantics of every instruction.

use crate::block::BlockExit;
use crate::flags::{
    parity, sign_bit, size_mask, Lazy, AC, AF, ARITH, CF, DF, ID, IF, IOPL, K_ADD, K_LOGIC, K_SUB,
    NT, OF, PF, RF, SF, TF, VIF, VIP, VM, ZF,
};
use crate::fpu_impl::{FpuContext, FpuError, FpuMemory, FpuOutcome};
use crate::mmu::{CR0_PE, CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, CR4_PVI, CR4_VME};
use crate::seg::is_double;
use crate::{fault, gp, sreg, ud, vec, Bus, Cpu, CpuExit, Fault, Res, CPUID_SIGNATURE};

/// Instruction prefixes and sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pfx {
    pub op32: bool,
    pub a32: bool,
    /// Segment override (0xFF: none).
    pub seg: u8,
    /// 0, 0xF2 or 0xF3.
    pub rep: u8,
    pub lock: bool,
}

/// A decoded r/m operand.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Opnd {
    Reg(u8),
    Mem(u8, u32),
}

const NO_SEG: u8 = 0xFF;
/// Most iterations of a REP string instruction done in one step.
const REP_CHUNK: u64 = 1 << 16;

const CR0_MP: u32 = 1 << 1;
const CR0_EM: u32 = 1 << 2;
const CR0_TS: u32 = 1 << 3;
const CR0_NE: u32 = 1 << 5;
const CR0_NW: u32 = 1 << 29;
const CR0_CD: u32 = 1 << 30;
const CR0_VALID: u32 = 0xE005_003F;
const CR4_TSD: u32 = 1 << 2;
const CR4_DE: u32 = 1 << 3;
/// CR4 bits of this CPU: VME, PVI, TSD, DE, PSE, PGE, OSFXSR, OSXMMEXCPT (no PAE, MCE, PCE).
const CR4_VALID: u32 = CR4_VME
    | CR4_PVI
    | CR4_TSD
    | CR4_DE
    | CR4_PSE
    | CR4_PGE
    | crate::simd::CR4_OSFXSR
    | crate::simd::CR4_OSXMMEXCPT;

/// Memory seen by the FPU: offsets in one segment.
struct FpuMem<'a, B: Bus> {
    cpu: &'a mut Cpu,
    bus: &'a mut B,
    seg: usize,
    /// Alignment the instruction's memory operand needs for #AC (0: none or already
    /// checked). Checked at the first access, after its own segment and page checks.
    align: u32,
}

impl<B: Bus> FpuMem<'_, B> {
    fn align_check(&mut self, offset: u32) -> Result<(), Fault> {
        if self.align > 1 {
            let a = std::mem::take(&mut self.align);
            self.cpu.align_check(self.seg, offset, a)?;
        }
        Ok(())
    }
}

/// Alignment of an x87 memory operand for #AC (SDM vol. 3 table 6-7): m16 2, m32 4, m64 and
/// m80 8, FLDENV/FSTENV/FRSTOR/FSAVE images 4 (32-bit operand size) or 2.
fn fpu_align(op: u8, modrm: u8, op32: bool) -> u32 {
    if modrm >= 0xC0 {
        return 0;
    }
    let env = if op32 { 4 } else { 2 };
    match (op, (modrm >> 3) & 7) {
        (0xD8 | 0xDA, _) | (0xD9, 0..=3) | (0xDB, 0..=3) => 4,
        (0xDC, _) | (0xDD, 0..=3) | (0xDB, 5 | 7) | (0xDF, 4..=7) => 8,
        (0xDE, _) | (0xD9, 5 | 7) | (0xDD, 7) | (0xDF, 0..=3) => 2,
        (0xD9, 4 | 6) | (0xDD, 4 | 6) => env,
        _ => 0,
    }
}

impl<B: Bus> FpuMemory for FpuMem<'_, B> {
    type Fault = Fault;
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Fault> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self
                .cpu
                .rd(self.bus, self.seg, offset.wrapping_add(i as u32), 1)? as u8;
        }
        self.align_check(offset)
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Fault> {
        if data.is_empty() {
            return Ok(());
        }
        // Probe both ends so a fault leaves memory untouched.
        self.cpu.probe_write(self.bus, self.seg, offset, 1)?;
        self.cpu.probe_write(
            self.bus,
            self.seg,
            offset.wrapping_add(data.len() as u32 - 1),
            1,
        )?;
        self.align_check(offset)?;
        for (i, b) in data.iter().enumerate() {
            self.cpu.wr(
                self.bus,
                self.seg,
                offset.wrapping_add(i as u32),
                1,
                *b as u32,
            )?;
        }
        Ok(())
    }
}

impl Cpu {
    /// Runs until `icount()` reaches `limit`, the CPU halts, a triple fault happens, or the
    /// bus asks for an exit after an I/O or MMIO instruction.
    pub fn run<B: Bus>(&mut self, bus: &mut B, limit: u64) -> CpuExit {
        self.check_mem_generation(bus.memory());
        loop {
            // Events at the instruction boundary.
            if self.nmi_pending && !self.nmi_blocked && !self.shadow {
                self.nmi_pending = false;
                self.nmi_blocked = true;
                self.halted = false;
                if !self.raise(bus, Fault::new(vec::NMI, None), false, true) {
                    return CpuExit::TripleFault;
                }
            } else if !self.shadow && self.eflags & IF != 0 && bus.intr_pending() {
                if let Some(v) = bus.intr_ack() {
                    self.halted = false;
                    if !self.raise(bus, Fault::new(v, None), false, true) {
                        return CpuExit::TripleFault;
                    }
                }
            }
            if self.halted {
                return CpuExit::Halted;
            }
            if self.icount >= limit {
                return CpuExit::Limit;
            }
            let shadowed = self.shadow;
            self.shadow = false;
            self.run_limit = limit;
            let tf = self.eflags & TF != 0;
            if !shadowed && !tf && !self.dbp_exec && self.eflags & RF == 0 {
                match self.run_block(bus, limit) {
                    BlockExit::NoBlock => {}
                    BlockExit::Done => {
                        if self.io_done {
                            self.io_done = false;
                            self.report_ferr(bus);
                            self.check_mem_generation(bus.memory());
                            if bus.exit_requested() {
                                return CpuExit::ExitRequested;
                            }
                        }
                        if self.halted {
                            return CpuExit::Halted;
                        }
                        continue;
                    }
                    BlockExit::Fault(f) => {
                        self.eip = self.start_eip;
                        self.icount += 1;
                        if !self.raise(bus, f, false, false) {
                            return CpuExit::TripleFault;
                        }
                        if self.io_done {
                            self.io_done = false;
                            self.report_ferr(bus);
                            self.check_mem_generation(bus.memory());
                            if bus.exit_requested() {
                                return CpuExit::ExitRequested;
                            }
                        }
                        continue;
                    }
                }
            }
            if self.dbp_exec && self.eflags & RF == 0 {
                if let Some(hit) = self.exec_breakpoint() {
                    self.dr[6] |= hit as u32;
                    self.start_eip = self.eip;
                    // A delivered exception takes one slot of the budget (see `Err` below).
                    self.icount += 1;
                    if !self.raise(bus, Fault::new(vec::DB, None), false, false) {
                        return CpuExit::TripleFault;
                    }
                    continue;
                }
            }
            self.rf_keep = false;
            match self.step(bus) {
                Ok(()) => {
                    self.icount += 1;
                    if self.eflags & RF != 0 && !self.rf_keep {
                        self.eflags &= !RF;
                    }
                    if self.db_hit != 0 || tf && !self.halted {
                        if tf {
                            self.dr[6] |= 1 << 14;
                        }
                        self.dr[6] |= self.db_hit as u32;
                        self.db_hit = 0;
                        if !self.raise(bus, Fault::new(vec::DB, None), false, false) {
                            return CpuExit::TripleFault;
                        }
                    }
                }
                Err(f) => {
                    self.db_hit = 0;
                    self.eip = self.start_eip;
                    // The faulting instruction does not retire, but its exception takes one
                    // slot of the budget: a handler that faults again at once (a fault loop)
                    // must not keep `run` from reaching its limit.
                    self.icount += 1;
                    if !self.raise(bus, f, false, false) {
                        return CpuExit::TripleFault;
                    }
                }
            }
            if self.io_done {
                self.io_done = false;
                self.report_ferr(bus);
                self.check_mem_generation(bus.memory());
                if bus.exit_requested() {
                    return CpuExit::ExitRequested;
                }
            }
            if self.halted {
                return CpuExit::Halted;
            }
        }
    }

    /// The DR6 B bits of instruction breakpoints that match CS:EIP.
    fn exec_breakpoint(&self) -> Option<u8> {
        let lin = self.segs[sreg::CS].base.wrapping_add(self.eip);
        let dr7 = self.dr[7];
        let mut hit = 0u8;
        for i in 0..4 {
            if (dr7 >> (2 * i)) & 3 != 0 && (dr7 >> (16 + 4 * i)) & 3 == 0 && self.dr[i] == lin {
                hit |= 1 << i;
            }
        }
        (hit != 0).then_some(hit)
    }

    /// Delivers an event, escalating to #DF and triple fault. Returns false on triple fault.
    fn raise<B: Bus>(&mut self, bus: &mut B, f: Fault, soft: bool, ext: bool) -> bool {
        let mut cur = f;
        let mut ext = ext;
        let mut soft = soft;
        for _ in 0..4 {
            let eip = self.eip;
            match self.deliver(bus, cur.vector, cur.code(), soft, ext) {
                Ok(()) => return true,
                Err(f2) => {
                    self.eip = eip;
                    if cur.vector == vec::DF {
                        return false;
                    }
                    cur = if is_double(cur.vector, f2.vector) {
                        Fault::new(vec::DF, Some(0))
                    } else {
                        f2
                    };
                    ext = true;
                    soft = false;
                }
            }
        }
        false
    }

    // ---- registers and flags ----

    #[inline(always)]
    pub(crate) fn rreg(&self, r: u8, n: u32) -> u32 {
        let r = r as usize & 7;
        match n {
            1 => {
                if r < 4 {
                    self.regs[r] & 0xFF
                } else {
                    (self.regs[r - 4] >> 8) & 0xFF
                }
            }
            2 => self.regs[r] & 0xFFFF,
            _ => self.regs[r],
        }
    }

    #[inline(always)]
    pub(crate) fn wreg(&mut self, r: u8, n: u32, v: u32) {
        let r = r as usize & 7;
        match n {
            1 => {
                if r < 4 {
                    self.regs[r] = (self.regs[r] & !0xFF) | (v & 0xFF);
                } else {
                    self.regs[r - 4] = (self.regs[r - 4] & !0xFF00) | ((v & 0xFF) << 8);
                }
            }
            2 => self.regs[r] = (self.regs[r] & !0xFFFF) | (v & 0xFFFF),
            _ => self.regs[r] = v,
        }
    }

    #[inline(always)]
    pub(crate) fn set_lazy(&mut self, kind: u8, n: u32, a: u32, b: u32, res: u32, mask: u32) {
        let old = self.lf.mask & !mask;
        if old == CF {
            // INC/DEC after an ALU op: only CF must be kept.
            self.eflags = (self.eflags & !CF) | self.lf.cf() as u32;
        } else if old != 0 {
            self.eflags = (self.eflags & !old) | self.lf.compute(old);
        }
        let m = size_mask(n);
        self.lf = Lazy {
            a: a & m,
            b: b & m,
            res: res & m,
            mask,
            kind,
            size: n as u8,
        };
    }

    /// Sets the flags in `mask` to the bits of `val` (other lazy flags are kept).
    pub(crate) fn set_flags(&mut self, mask: u32, val: u32) {
        let lazy = self.lf.mask & !mask;
        if lazy != 0 {
            self.eflags = (self.eflags & !lazy) | self.lf.compute(lazy);
        }
        self.lf.mask = 0;
        self.eflags = (self.eflags & !mask) | (val & mask);
    }

    #[inline(always)]
    fn zf(&self) -> bool {
        if self.lf.mask & ZF != 0 {
            self.lf.res == 0
        } else {
            self.eflags & ZF != 0
        }
    }

    #[inline(always)]
    fn flag(&self, f: u32) -> bool {
        if self.lf.mask & f != 0 {
            match f {
                CF => self.lf.cf(),
                SF => self.lf.sf(),
                OF => self.lf.of(),
                ZF => self.lf.zf(),
                _ => self.lf.compute(f) != 0,
            }
        } else {
            self.eflags & f != 0
        }
    }

    #[inline(always)]
    pub(crate) fn cond(&self, cc: u8) -> bool {
        let r = match (cc >> 1) & 7 {
            0 => self.flag(OF),
            1 => self.flag(CF),
            2 => self.zf(),
            3 => self.flag(CF) || self.zf(),
            4 => self.flag(SF),
            5 => self.flag(PF),
            6 => self.flag(SF) != self.flag(OF),
            _ => self.zf() || (self.flag(SF) != self.flag(OF)),
        };
        r ^ (cc & 1 != 0)
    }

    fn iopl(&self) -> u8 {
        ((self.eflags & IOPL) >> 12) as u8
    }

    /// Effective CPL for privilege checks (real mode: 0).
    fn cpl_eff(&self) -> u8 {
        if self.pe() {
            self.cpl
        } else {
            0
        }
    }

    fn need_cpl0(&self) -> Res<()> {
        if self.pe() && (self.cpl != 0 || self.v86()) {
            gp(0)
        } else {
            Ok(())
        }
    }

    // ---- operands ----

    #[inline(never)]
    pub(crate) fn modrm<B: Bus>(&mut self, bus: &mut B, p: &Pfx) -> Res<(u8, Opnd)> {
        self.modrm_inline(bus, p)
    }

    #[inline(always)]
    fn modrm_inline<B: Bus>(&mut self, bus: &mut B, p: &Pfx) -> Res<(u8, Opnd)> {
        let m = self.fetch8(bus)?;
        let md = m >> 6;
        let rm = m & 7;
        if md == 3 {
            return Ok((m, Opnd::Reg(rm)));
        }
        let mut seg = sreg::DS as u8;
        let off;
        if !p.a32 {
            let r = &self.regs;
            let (base, ss) = match rm {
                0 => (r[3].wrapping_add(r[6]), false),
                1 => (r[3].wrapping_add(r[7]), false),
                2 => (r[5].wrapping_add(r[6]), true),
                3 => (r[5].wrapping_add(r[7]), true),
                4 => (r[6], false),
                5 => (r[7], false),
                6 => {
                    if md == 0 {
                        (0, false)
                    } else {
                        (r[5], true)
                    }
                }
                _ => (r[3], false),
            };
            let disp = match md {
                0 => {
                    if rm == 6 {
                        self.fetch16(bus)? as u32
                    } else {
                        0
                    }
                }
                1 => self.fetch8(bus)? as i8 as u32,
                _ => self.fetch16(bus)? as u32,
            };
            if ss {
                seg = sreg::SS as u8;
            }
            off = base.wrapping_add(disp) & 0xFFFF;
        } else {
            let mut base;
            if rm == 4 {
                let sib = self.fetch8(bus)?;
                let scale = sib >> 6;
                let idx = (sib >> 3) & 7;
                let b = sib & 7;
                let index = if idx == 4 {
                    0
                } else {
                    self.regs[idx as usize] << scale
                };
                if b == 5 && md == 0 {
                    base = self.fetch32(bus)?;
                } else {
                    base = self.regs[b as usize];
                    if b == 4 || b == 5 {
                        seg = sreg::SS as u8;
                    }
                }
                base = base.wrapping_add(index);
            } else if rm == 5 && md == 0 {
                base = self.fetch32(bus)?;
            } else {
                base = self.regs[rm as usize];
                if rm == 5 {
                    seg = sreg::SS as u8;
                }
            }
            let disp = match md {
                0 => 0,
                1 => self.fetch8(bus)? as i8 as u32,
                _ => self.fetch32(bus)?,
            };
            off = base.wrapping_add(disp);
        }
        if p.seg != NO_SEG {
            seg = p.seg;
        }
        Ok((m, Opnd::Mem(seg, off)))
    }

    /// Whether a LOCK prefix is valid on the instruction starting with `op` (EIP is just
    /// past it): a read-modify-write with a memory destination of ADD ADC AND BTC BTR BTS
    /// CMPXCHG CMPXCHG8B DEC INC NEG NOT OR SBB SUB XOR XADD XCHG.
    fn lock_allowed<B: Bus>(&mut self, bus: &mut B, op: u8) -> Res<bool> {
        let (eip, ipos) = (self.eip, self.ipos);
        let r = (|| -> Res<bool> {
            let (op2, m) = if op == 0x0F {
                let o2 = self.fetch8(bus)?;
                (Some(o2), self.fetch8(bus)?)
            } else {
                (None, self.fetch8(bus)?)
            };
            if m >> 6 == 3 {
                return Ok(false);
            }
            let reg = (m >> 3) & 7;
            Ok(match op2 {
                None => match op {
                    0x00..=0x37 => op & 7 < 2,
                    0x80..=0x83 => reg != 7,
                    0x86 | 0x87 => true,
                    0xF6 | 0xF7 => reg == 2 || reg == 3,
                    0xFE | 0xFF => reg < 2,
                    _ => false,
                },
                Some(o2) => match o2 {
                    0xAB | 0xB3 | 0xBB | 0xB0 | 0xB1 | 0xC0 | 0xC1 => true,
                    0xBA => reg >= 5,
                    0xC7 => reg == 1,
                    _ => false,
                },
            })
        })();
        self.eip = eip;
        self.ipos = ipos;
        r
    }

    /// The reg field of the ModR/M byte at EIP, without consuming it.
    fn peek_modrm_reg<B: Bus>(&mut self, bus: &mut B) -> Res<u8> {
        let (eip, ipos) = (self.eip, self.ipos);
        let m = self.fetch8(bus)?;
        self.eip = eip;
        self.ipos = ipos;
        Ok((m >> 3) & 7)
    }

    #[inline(always)]
    fn rop<B: Bus>(&mut self, bus: &mut B, o: Opnd, n: u32) -> Res<u32> {
        match o {
            Opnd::Reg(r) => Ok(self.rreg(r, n)),
            Opnd::Mem(s, off) => self.rd(bus, s as usize, off, n),
        }
    }

    #[inline(always)]
    fn wop<B: Bus>(&mut self, bus: &mut B, o: Opnd, n: u32, v: u32) -> Res<()> {
        match o {
            Opnd::Reg(r) => {
                self.wreg(r, n, v);
                Ok(())
            }
            Opnd::Mem(s, off) => self.wr(bus, s as usize, off, n, v),
        }
    }

    fn mem_only(o: Opnd) -> Res<(usize, u32)> {
        match o {
            Opnd::Mem(s, off) => Ok((s as usize, off)),
            Opnd::Reg(_) => ud(),
        }
    }

    fn imm<B: Bus>(&mut self, bus: &mut B, n: u32) -> Res<u32> {
        Ok(match n {
            1 => self.fetch8(bus)? as u32,
            2 => self.fetch16(bus)? as u32,
            _ => self.fetch32(bus)?,
        })
    }

    // ---- stack ----

    #[inline]
    pub(crate) fn push<B: Bus>(&mut self, bus: &mut B, v: u32, n: u32) -> Res<()> {
        let mut sp = self.regs[4];
        self.push_at(bus, &mut sp, v, n)?;
        self.regs[4] = sp;
        Ok(())
    }

    #[inline]
    pub(crate) fn pop<B: Bus>(&mut self, bus: &mut B, n: u32) -> Res<u32> {
        let mut sp = self.regs[4];
        let v = self.pop_at(bus, &mut sp, n)?;
        self.regs[4] = sp;
        Ok(v)
    }

    pub(crate) fn sp_mask(&self) -> u32 {
        if self.segs[sreg::SS].big {
            0xFFFF_FFFF
        } else {
            0xFFFF
        }
    }

    // ---- ALU ----

    #[inline(always)]
    pub(crate) fn alu(&mut self, op: u8, a: u32, b: u32, n: u32) -> u32 {
        let m = size_mask(n);
        match op & 7 {
            0 => {
                let r = a.wrapping_add(b) & m;
                self.set_lazy(K_ADD, n, a, b, r, ARITH);
                r
            }
            1 => {
                let r = (a | b) & m;
                self.set_lazy(K_LOGIC, n, 0, 0, r, ARITH);
                r
            }
            2 => {
                let c = self.flag(CF) as u32;
                let r = a.wrapping_add(b).wrapping_add(c) & m;
                self.set_lazy(K_ADD, n, a, b, r, ARITH);
                r
            }
            3 => {
                let c = self.flag(CF) as u32;
                let r = a.wrapping_sub(b).wrapping_sub(c) & m;
                self.set_lazy(K_SUB, n, a, b, r, ARITH);
                r
            }
            4 => {
                let r = a & b & m;
                self.set_lazy(K_LOGIC, n, 0, 0, r, ARITH);
                r
            }
            6 => {
                let r = (a ^ b) & m;
                self.set_lazy(K_LOGIC, n, 0, 0, r, ARITH);
                r
            }
            _ => {
                let r = a.wrapping_sub(b) & m;
                self.set_lazy(K_SUB, n, a, b, r, ARITH);
                r
            }
        }
    }

    pub(crate) fn shift(&mut self, op: u8, v: u32, cnt: u32, n: u32) -> u32 {
        let cnt = cnt & 0x1F;
        if cnt == 0 {
            return v;
        }
        let bits = n * 8;
        let m = size_mask(n);
        let s = sign_bit(n);
        let v = v & m;
        let cf_in = self.flag(CF) as u64;
        let (res, cf, of) = match op & 7 {
            0 => {
                let c = cnt % bits;
                let r = ((v << c) | if c == 0 { 0 } else { v >> (bits - c) }) & m;
                let cf = r & 1 != 0;
                (r, cf, (r & s != 0) ^ cf)
            }
            1 => {
                let c = cnt % bits;
                let r = ((v >> c) | if c == 0 { 0 } else { v << (bits - c) }) & m;
                let cf = r & s != 0;
                (r, cf, (r & s != 0) ^ (r & (s >> 1) != 0))
            }
            2 => {
                let c = cnt % (bits + 1);
                let w = (cf_in << bits) | v as u64;
                let full = (1u64 << (bits + 1)) - 1;
                let r = ((w << c) | (w >> (bits + 1 - c))) & full;
                let cf = (r >> bits) & 1 != 0;
                let r = r as u32 & m;
                (r, cf, (r & s != 0) ^ cf)
            }
            3 => {
                let c = cnt % (bits + 1);
                let w = (cf_in << bits) | v as u64;
                let full = (1u64 << (bits + 1)) - 1;
                let r = ((w >> c) | (w << (bits + 1 - c))) & full;
                let cf = (r >> bits) & 1 != 0;
                let r = r as u32 & m;
                (r, cf, (r ^ (r << 1)) & s != 0)
            }
            4 | 6 => {
                let r = ((v as u64) << cnt) as u32 & m;
                let cf = if cnt <= bits {
                    (v as u64 >> (bits - cnt)) & 1 != 0
                } else {
                    false
                };
                let r2 = r;
                self.set_flags(
                    CF | OF | AF,
                    (cf as u32) | (((r2 & s != 0) ^ cf) as u32) << 11,
                );
                self.set_lazy(K_LOGIC, n, 0, 0, r, ZF | SF | PF);
                return r;
            }
            5 => {
                let r = ((v as u64) >> cnt) as u32 & m;
                let cf = (v as u64 >> (cnt - 1)) & 1 != 0;
                // OF: the top two bits of the result differ (the original MSB for count 1).
                let of = ((r ^ (r << 1)) & s != 0) as u32;
                self.set_flags(CF | OF | AF, (cf as u32) | of << 11);
                self.set_lazy(K_LOGIC, n, 0, 0, r, ZF | SF | PF);
                return r;
            }
            _ => {
                let sx = ((v << (32 - bits)) as i32 >> (32 - bits)) as i64;
                let r = (sx >> cnt) as u32 & m;
                let cf = (sx >> (cnt - 1)) & 1 != 0;
                self.set_flags(CF | OF | AF, cf as u32);
                self.set_lazy(K_LOGIC, n, 0, 0, r, ZF | SF | PF);
                return r;
            }
        };
        self.set_flags(CF | OF, (cf as u32) | (of as u32) << 11);
        res
    }

    fn shld(&mut self, dst: u32, src: u32, cnt: u32, n: u32, left: bool) -> u32 {
        let cnt = cnt & 0x1F;
        if cnt == 0 {
            return dst;
        }
        let bits = n * 8;
        let m = size_mask(n);
        let s = sign_bit(n);
        let (r, cf) = if n == 4 || cnt <= bits {
            if left {
                let w = ((dst as u64 & m as u64) << bits) | (src as u64 & m as u64);
                let r = ((w << cnt) >> bits) as u32 & m;
                (r, (dst as u64 >> (bits - cnt)) & 1 != 0)
            } else {
                let w = ((src as u64 & m as u64) << bits) | (dst as u64 & m as u64);
                let r = (w >> cnt) as u32 & m;
                (r, (dst as u64 >> (cnt - 1)) & 1 != 0)
            }
        } else {
            // 16-bit with count > 16: undefined; use a 48-bit rotate like real hardware.
            let w = ((dst as u64) << 32) | ((src as u64) << 16) | dst as u64;
            if left {
                (((w << cnt) >> 32) as u32 & m, false)
            } else {
                ((w >> cnt) as u32 & m, false)
            }
        };
        let of = (r ^ dst) & s != 0;
        self.set_flags(CF | OF | AF, cf as u32 | (of as u32) << 11);
        self.set_lazy(K_LOGIC, n, 0, 0, r, ZF | SF | PF);
        r
    }

    /// Sets SF/ZF/PF from a result and CF/OF explicitly (MUL/IMUL).
    fn mul_flags(&mut self, res: u32, n: u32, over: bool) {
        self.set_flags(CF | OF | AF, if over { CF | OF } else { 0 });
        self.set_lazy(K_LOGIC, n, 0, 0, res, ZF | SF | PF);
    }

    pub(crate) fn imul2(&mut self, a: u32, b: u32, n: u32) -> u32 {
        let bits = n * 8;
        let sa = ((a << (32 - bits)) as i32 >> (32 - bits)) as i64;
        let sb = ((b << (32 - bits)) as i32 >> (32 - bits)) as i64;
        let p = sa * sb;
        let r = p as u32 & size_mask(n);
        let back = ((r << (32 - bits)) as i32 >> (32 - bits)) as i64;
        self.mul_flags(r, n, back != p);
        r
    }

    pub(crate) fn control_transfer_near(&mut self, target: u32, op32: bool) -> Res<()> {
        let t = if op32 { target } else { target & 0xFFFF };
        if t > self.segs[sreg::CS].limit && self.pm() {
            return gp(0);
        }
        self.eip = t;
        Ok(())
    }

    // ---- the instruction ----

    /// Decodes and executes one instruction.
    pub(crate) fn step<B: Bus>(&mut self, bus: &mut B) -> Res<()> {
        self.start_eip = self.eip;
        self.prefetch(bus);
        let d = self.segs[sreg::CS].big;
        let mut p = Pfx {
            op32: d,
            a32: d,
            seg: NO_SEG,
            rep: 0,
            lock: false,
        };
        let mut count = 0;
        let op = loop {
            let b = self.fetch8(bus)?;
            match b {
                0x26 | 0x2E | 0x36 | 0x3E => p.seg = (b >> 3) & 3,
                0x64 => p.seg = 4,
                0x65 => p.seg = 5,
                0x66 => p.op32 = !d,
                0x67 => p.a32 = !d,
                0xF0 => p.lock = true,
                0xF2 | 0xF3 => p.rep = b,
                _ => break b,
            }
            count += 1;
            if count >= 15 {
                return gp(0);
            }
        };
        if p.lock && !self.lock_allowed(bus, op)? {
            return ud();
        }
        self.exec(bus, op, &p)
    }

    #[inline(always)]
    fn exec<B: Bus>(&mut self, bus: &mut B, op: u8, p: &Pfx) -> Res<()> {
        let nv = if p.op32 { 4 } else { 2 };
        // Decode the ModR/M operand once, here, for every one-byte opcode that has one
        // (except 8F, whose address uses the incremented ESP, and the x87 escapes).
        let (mm, oo) = if HAS_MODRM[op as usize] {
            self.modrm_inline(bus, p)?
        } else {
            (0, Opnd::Reg(0))
        };
        match op {
            // ALU
            0x00..=0x05
            | 0x08..=0x0D
            | 0x10..=0x15
            | 0x18..=0x1D
            | 0x20..=0x25
            | 0x28..=0x2D
            | 0x30..=0x35
            | 0x38..=0x3D => {
                let aop = op >> 3;
                match op & 7 {
                    0..=3 => {
                        let n = if op & 1 == 0 { 1 } else { nv };
                        let (m, o) = (mm, oo);
                        let r = (m >> 3) & 7;
                        if op & 2 == 0 {
                            let a = self.rop(bus, o, n)?;
                            let b = self.rreg(r, n);
                            let res = self.alu(aop, a, b, n);
                            if aop != 7 {
                                self.wop(bus, o, n, res)?;
                            }
                        } else {
                            let b = self.rop(bus, o, n)?;
                            let a = self.rreg(r, n);
                            let res = self.alu(aop, a, b, n);
                            if aop != 7 {
                                self.wreg(r, n, res);
                            }
                        }
                    }
                    4 => {
                        let b = self.fetch8(bus)? as u32;
                        let a = self.rreg(0, 1);
                        let res = self.alu(aop, a, b, 1);
                        if aop != 7 {
                            self.wreg(0, 1, res);
                        }
                    }
                    _ => {
                        let b = self.imm(bus, nv)?;
                        let a = self.rreg(0, nv);
                        let res = self.alu(aop, a, b, nv);
                        if aop != 7 {
                            self.wreg(0, nv, res);
                        }
                    }
                }
            }
            0x06 | 0x0E | 0x16 | 0x1E => {
                let s = self.segs[(op >> 3) as usize].sel as u32;
                self.push(bus, s, nv)?;
            }
            0x07 | 0x17 | 0x1F => {
                let s = (op >> 3) as usize;
                let mut sp = self.regs[4];
                let v = self.pop_at(bus, &mut sp, nv)?;
                self.load_seg(bus, s, v as u16)?;
                self.regs[4] = sp;
                if s == sreg::SS {
                    self.shadow = true;
                }
            }
            0x0F => return self.exec0f(bus, p),
            0x27 => self.daa_das(false),
            0x2F => self.daa_das(true),
            0x37 => self.aaa_aas(false),
            0x3F => self.aaa_aas(true),
            0x40..=0x4F => {
                let r = op & 7;
                let a = self.rreg(r, nv);
                let (res, kind) = if op < 0x48 {
                    (a.wrapping_add(1), K_ADD)
                } else {
                    (a.wrapping_sub(1), K_SUB)
                };
                self.set_lazy(kind, nv, a, 1, res, ARITH & !CF);
                self.wreg(r, nv, res);
            }
            0x50..=0x57 => {
                let v = self.rreg(op & 7, nv);
                self.push(bus, v, nv)?;
            }
            0x58..=0x5F => {
                let v = self.pop(bus, nv)?;
                self.wreg(op & 7, nv, v);
            }
            0x60 => {
                let mut sp = self.regs[4];
                let old = self.regs[4];
                for i in 0..8 {
                    let v = if i == 4 { old } else { self.regs[i] };
                    self.push_at(bus, &mut sp, v, nv)?;
                }
                self.regs[4] = sp;
            }
            0x61 => {
                let mut sp = self.regs[4];
                let mut vals = [0u32; 8];
                for i in (0..8).rev() {
                    vals[i] = self.pop_at(bus, &mut sp, nv)?;
                }
                for (i, &v) in vals.iter().enumerate() {
                    if i != 4 {
                        self.wreg(i as u8, nv, v);
                    }
                }
                self.regs[4] = sp;
            }
            0x62 => {
                let (m, o) = (mm, oo);
                let (s, off) = Self::mem_only(o)?;
                let lo = self.rd(bus, s, off, nv)?;
                let hi = self.rd(bus, s, off.wrapping_add(nv), nv)?;
                let bits = nv * 8;
                let sx = |v: u32| ((v << (32 - bits)) as i32) >> (32 - bits);
                let idx = sx(self.rreg((m >> 3) & 7, nv));
                if idx < sx(lo) || idx > sx(hi) {
                    return fault(vec::BR, None);
                }
            }
            0x63 => {
                if !self.pm() {
                    return ud();
                }
                let (m, o) = (mm, oo);
                let dst = self.rop(bus, o, 2)?;
                let src = self.rreg((m >> 3) & 7, 2);
                if dst & 3 < src & 3 {
                    self.wop(bus, o, 2, (dst & !3) | (src & 3))?;
                    self.set_flags(ZF, ZF);
                } else {
                    self.set_flags(ZF, 0);
                }
            }
            0x68 => {
                let v = self.imm(bus, nv)?;
                self.push(bus, v, nv)?;
            }
            0x6A => {
                let v = self.fetch8(bus)? as i8 as u32;
                self.push(bus, v, nv)?;
            }
            0x69 | 0x6B => {
                let (m, o) = (mm, oo);
                let a = self.rop(bus, o, nv)?;
                let b = if op == 0x69 {
                    self.imm(bus, nv)?
                } else {
                    self.fetch8(bus)? as i8 as u32
                };
                let r = self.imul2(a, b, nv);
                self.wreg((m >> 3) & 7, nv, r);
            }
            0x6C..=0x6F | 0xA4..=0xA7 | 0xAA..=0xAF => return self.string(bus, op, p),
            0x70..=0x7F => {
                let rel = self.fetch8(bus)? as i8 as u32;
                if self.cond(op & 0xF) {
                    let t = self.eip.wrapping_add(rel);
                    self.control_transfer_near(t, p.op32)?;
                }
            }
            0x80..=0x83 => {
                let n = if op & 1 == 0 { 1 } else { nv };
                let (m, o) = (mm, oo);
                let a = self.rop(bus, o, n)?;
                let b = if op == 0x81 {
                    self.imm(bus, n)?
                } else {
                    self.fetch8(bus)? as i8 as u32
                };
                let aop = (m >> 3) & 7;
                let r = self.alu(aop, a, b, n);
                if aop != 7 {
                    self.wop(bus, o, n, r)?;
                }
            }
            0x84 | 0x85 => {
                let n = if op & 1 == 0 { 1 } else { nv };
                let (m, o) = (mm, oo);
                let a = self.rop(bus, o, n)?;
                let b = self.rreg((m >> 3) & 7, n);
                self.alu(4, a, b, n);
            }
            0x86 | 0x87 => {
                let n = if op & 1 == 0 { 1 } else { nv };
                let (m, o) = (mm, oo);
                let a = self.rop(bus, o, n)?;
                let b = self.rreg((m >> 3) & 7, n);
                self.wop(bus, o, n, b)?;
                self.wreg((m >> 3) & 7, n, a);
            }
            0x88..=0x8B => {
                let n = if op & 1 == 0 { 1 } else { nv };
                let (m, o) = (mm, oo);
                let r = (m >> 3) & 7;
                if op & 2 == 0 {
                    let v = self.rreg(r, n);
                    self.wop(bus, o, n, v)?;
                } else {
                    let v = self.rop(bus, o, n)?;
                    self.wreg(r, n, v);
                }
            }
            0x8C => {
                let (m, o) = (mm, oo);
                let s = (m >> 3) & 7;
                if s > 5 {
                    return ud();
                }
                let v = self.segs[s as usize].sel as u32;
                match o {
                    Opnd::Reg(r) => self.wreg(r, nv, v),
                    Opnd::Mem(..) => self.wop(bus, o, 2, v)?,
                }
            }
            0x8D => {
                let (m, o) = (mm, oo);
                let (_, off) = Self::mem_only(o)?;
                self.wreg((m >> 3) & 7, nv, off);
            }
            0x8E => {
                let (m, o) = (mm, oo);
                let s = ((m >> 3) & 7) as usize;
                if s == sreg::CS || s > 5 {
                    return ud();
                }
                let v = self.rop(bus, o, 2)?;
                self.load_seg(bus, s, v as u16)?;
                if s == sreg::SS {
                    self.shadow = true;
                }
            }
            0x8F => {
                if self.peek_modrm_reg(bus)? != 0 {
                    return ud();
                }
                let mut sp = self.regs[4];
                let v = self.pop_at(bus, &mut sp, nv)?;
                let old = self.regs[4];
                // The address is computed with ESP already incremented.
                self.regs[4] = sp;
                let r = self
                    .modrm(bus, p)
                    .and_then(|(_, o)| self.wop(bus, o, nv, v));
                if let Err(e) = r {
                    self.regs[4] = old;
                    return Err(e);
                }
            }
            0x90 => {}
            0x91..=0x97 => {
                let r = op & 7;
                let a = self.rreg(0, nv);
                let b = self.rreg(r, nv);
                self.wreg(0, nv, b);
                self.wreg(r, nv, a);
            }
            0x98 => {
                if p.op32 {
                    self.regs[0] = self.regs[0] as i16 as i32 as u32;
                } else {
                    let v = self.regs[0] as i8 as i16 as u16 as u32;
                    self.wreg(0, 2, v);
                }
            }
            0x99 => {
                if p.op32 {
                    self.regs[2] = if self.regs[0] & 0x8000_0000 != 0 {
                        !0
                    } else {
                        0
                    };
                } else {
                    let v = if self.regs[0] & 0x8000 != 0 {
                        0xFFFF
                    } else {
                        0
                    };
                    self.wreg(2, 2, v);
                }
            }
            0x9A => {
                let off = self.imm(bus, nv)?;
                let sel = self.fetch16(bus)?;
                self.far_transfer(bus, sel, off, p.op32, true)?;
            }
            0x9B => {
                if self.cr0 & (CR0_TS | CR0_MP) == (CR0_TS | CR0_MP) {
                    return fault(vec::NM, None);
                }
                self.ferr_sync(bus);
                if self.fpu.wait_check() {
                    if self.cr0 & CR0_NE != 0 {
                        return fault(vec::MF, None);
                    }
                    self.ferr_assert(bus);
                }
            }
            0x9C => {
                if self.v86() && self.iopl() < 3 {
                    // VME: 16-bit PUSHF shows VIF as IF and IOPL as 3.
                    if self.cr4 & CR4_VME == 0 || p.op32 {
                        return gp(0);
                    }
                    let f = self.get_eflags();
                    let vif = if f & VIF != 0 { IF } else { 0 };
                    self.push(bus, (f & 0xFFFF & !IF) | IOPL | vif, 2)?;
                } else {
                    let f = self.get_eflags() & !(VM | RF);
                    self.push(bus, f, nv)?;
                }
            }
            0x9D => {
                if self.v86() && self.iopl() < 3 {
                    // VME: 16-bit POPF loads IF into VIF; IF and IOPL stay.
                    if self.cr4 & CR4_VME == 0 || p.op32 {
                        return gp(0);
                    }
                    let mut sp = self.regs[4];
                    let v = self.pop_at(bus, &mut sp, 2)?;
                    self.vme_flags16(v)?;
                    self.regs[4] = sp;
                } else {
                    let v = self.pop(bus, nv)?;
                    self.popf(v, p.op32);
                }
            }
            0x9E => {
                let ah = (self.regs[0] >> 8) & 0xFF;
                self.set_flags(CF | PF | AF | ZF | SF, ah);
            }
            0x9F => {
                let f = self.get_eflags() & 0xFF;
                self.wreg(4, 1, f);
            }
            0xA0..=0xA3 => {
                let n = if op & 1 == 0 { 1 } else { nv };
                let off = if p.a32 {
                    self.fetch32(bus)?
                } else {
                    self.fetch16(bus)? as u32
                };
                let s = if p.seg == NO_SEG {
                    sreg::DS
                } else {
                    p.seg as usize
                };
                if op < 0xA2 {
                    let v = self.rd(bus, s, off, n)?;
                    self.wreg(0, n, v);
                } else {
                    let v = self.rreg(0, n);
                    self.wr(bus, s, off, n, v)?;
                }
            }
            0xA8 => {
                let b = self.fetch8(bus)? as u32;
                let a = self.rreg(0, 1);
                self.alu(4, a, b, 1);
            }
            0xA9 => {
                let b = self.imm(bus, nv)?;
                let a = self.rreg(0, nv);
                self.alu(4, a, b, nv);
            }
            0xB0..=0xB7 => {
                let v = self.fetch8(bus)? as u32;
                self.wreg(op & 7, 1, v);
            }
            0xB8..=0xBF => {
                let v = self.imm(bus, nv)?;
                self.wreg(op & 7, nv, v);
            }
            0xC0 | 0xC1 | 0xD0..=0xD3 => {
                let n = if op & 1 == 0 { 1 } else { nv };
                let (m, o) = (mm, oo);
                let cnt = match op {
                    0xC0 | 0xC1 => self.fetch8(bus)? as u32,
                    0xD0 | 0xD1 => 1,
                    _ => self.regs[1] & 0xFF,
                };
                let v = self.rop(bus, o, n)?;
                let r = self.shift((m >> 3) & 7, v, cnt, n);
                if cnt & 0x1F != 0 {
                    self.wop(bus, o, n, r)?;
                }
            }
            0xC2 | 0xC3 => {
                let imm = if op == 0xC2 {
                    self.fetch16(bus)? as u32
                } else {
                    0
                };
                let mut sp = self.regs[4];
                let t = self.pop_at(bus, &mut sp, nv)?;
                self.control_transfer_near(t, p.op32)?;
                let m = self.sp_mask();
                self.regs[4] = (sp & !m) | (sp.wrapping_add(imm) & m);
            }
            0xC4 | 0xC5 => {
                let (m, o) = (mm, oo);
                let s = if op == 0xC4 { sreg::ES } else { sreg::DS };
                self.load_far_ptr(bus, o, m, s, nv)?;
            }
            0xC6 | 0xC7 => {
                let n = if op & 1 == 0 { 1 } else { nv };
                let (m, o) = (mm, oo);
                if m & 0x38 != 0 {
                    return ud();
                }
                let v = self.imm(bus, n)?;
                self.wop(bus, o, n, v)?;
            }
            0xC8 => {
                let size = self.fetch16(bus)? as u32;
                let level = (self.fetch8(bus)? & 0x1F) as u32;
                self.enter(bus, size, level, nv)?;
            }
            0xC9 => {
                let m = self.sp_mask();
                let mut sp = (self.regs[4] & !m) | (self.regs[5] & m);
                let v = self.pop_at(bus, &mut sp, nv)?;
                self.regs[4] = sp;
                self.wreg(5, nv, v);
            }
            0xCA | 0xCB => {
                let imm = if op == 0xCA { self.fetch16(bus)? } else { 0 };
                self.far_ret(bus, p.op32, imm)?;
            }
            0xCC => self.soft_int(bus, vec::BP)?,
            0xCD => {
                let v = self.fetch8(bus)?;
                // VME: the TSS's redirection bitmap may send INT n to the V86 task's own IVT.
                if !(self.v86() && self.cr4 & CR4_VME != 0 && self.v86_int_redirect(bus, v)?) {
                    self.soft_int(bus, v)?;
                }
            }
            0xCE => {
                if self.flag(OF) {
                    self.soft_int(bus, vec::OF)?;
                }
            }
            0xCF => self.iret(bus, p.op32)?,
            0xD4 => {
                let b = self.fetch8(bus)? as u32;
                if b == 0 {
                    return fault(vec::DE, None);
                }
                let al = self.regs[0] & 0xFF;
                let r = (al % b) | ((al / b) << 8);
                self.wreg(0, 2, r);
                self.set_lazy(K_LOGIC, 1, 0, 0, r & 0xFF, ARITH);
            }
            0xD5 => {
                let b = self.fetch8(bus)? as u32;
                let al = self.regs[0] & 0xFF;
                let ah = (self.regs[0] >> 8) & 0xFF;
                let r = (al + ah * b) & 0xFF;
                self.wreg(0, 2, r);
                self.set_lazy(K_LOGIC, 1, 0, 0, r, ARITH);
            }
            0xD6 => {
                let v = if self.flag(CF) { 0xFF } else { 0 };
                self.wreg(0, 1, v);
            }
            0xD7 => {
                let base = if p.a32 {
                    self.regs[3]
                } else {
                    self.regs[3] & 0xFFFF
                };
                let mut off = base.wrapping_add(self.regs[0] & 0xFF);
                if !p.a32 {
                    off &= 0xFFFF;
                }
                let s = if p.seg == NO_SEG {
                    sreg::DS
                } else {
                    p.seg as usize
                };
                let v = self.rd(bus, s, off, 1)?;
                self.wreg(0, 1, v);
            }
            0xD8..=0xDF => self.fpu_op(bus, op, p)?,
            0xE0..=0xE3 => {
                let rel = self.fetch8(bus)? as i8 as u32;
                let cn = if p.a32 { 4 } else { 2 };
                let take = if op == 0xE3 {
                    self.rreg(1, cn) == 0
                } else {
                    let c = self.rreg(1, cn).wrapping_sub(1) & size_mask(cn);
                    self.wreg(1, cn, c);
                    c != 0
                        && match op {
                            0xE0 => !self.flag(ZF),
                            0xE1 => self.flag(ZF),
                            _ => true,
                        }
                };
                if take {
                    let t = self.eip.wrapping_add(rel);
                    self.control_transfer_near(t, p.op32)?;
                }
            }
            0xE4..=0xE7 | 0xEC..=0xEF => {
                let n = if op & 1 == 0 { 1 } else { nv };
                let port = if op < 0xE8 {
                    self.fetch8(bus)? as u16
                } else {
                    self.regs[2] as u16
                };
                self.io_check(bus, port, n)?;
                self.io_done = true;
                if op & 2 == 0 {
                    let v = bus.io_read(port, n as u8, self.icount) & size_mask(n);
                    self.wreg(0, n, v);
                } else {
                    let v = self.rreg(0, n);
                    bus.io_write(port, n as u8, v, self.icount);
                }
            }
            0xE8 => {
                let rel = self.imm(bus, nv)?;
                let t = self.eip.wrapping_add(rel);
                let ret = self.eip;
                let t = if p.op32 { t } else { t & 0xFFFF };
                if t > self.segs[sreg::CS].limit && self.pm() {
                    return gp(0);
                }
                self.push(bus, ret, nv)?;
                self.eip = t;
            }
            0xE9 => {
                let rel = self.imm(bus, nv)?;
                let t = self.eip.wrapping_add(rel);
                self.control_transfer_near(t, p.op32)?;
            }
            0xEA => {
                let off = self.imm(bus, nv)?;
                let sel = self.fetch16(bus)?;
                self.far_transfer(bus, sel, off, p.op32, false)?;
            }
            0xEB => {
                let rel = self.fetch8(bus)? as i8 as u32;
                let t = self.eip.wrapping_add(rel);
                self.control_transfer_near(t, p.op32)?;
            }
            0xF1 => {
                self.dr[6] |= 1 << 15;
                self.deliver(bus, vec::DB, None, false, false)?;
            }
            0xF4 => {
                self.need_cpl0()?;
                self.halted = true;
            }
            0xF5 => {
                let c = self.flag(CF);
                self.set_flags(CF, if c { 0 } else { CF });
            }
            0xF6 | 0xF7 => {
                let n = if op & 1 == 0 { 1 } else { nv };
                let (m, o) = (mm, oo);
                self.grp3(bus, (m >> 3) & 7, o, n)?;
            }
            0xF8 => self.set_flags(CF, 0),
            0xF9 => self.set_flags(CF, CF),
            0xFA | 0xFB => {
                // VME (V86, IOPL < 3) and PVI (protected mode, CPL 3, IOPL < 3): CLI/STI act
                // on VIF; STI with VIP set raises #GP.
                let virt = if self.v86() {
                    self.iopl() < 3 && self.cr4 & CR4_VME != 0
                } else {
                    self.pe() && self.cpl == 3 && self.iopl() < 3 && self.cr4 & CR4_PVI != 0
                };
                if virt {
                    if op == 0xFA {
                        self.eflags &= !VIF;
                    } else if self.eflags & VIP != 0 {
                        return gp(0);
                    } else {
                        self.eflags |= VIF;
                    }
                    return Ok(());
                }
                if self.pe() && self.cpl_eff() > self.iopl() || self.v86() && self.iopl() < 3 {
                    return gp(0);
                }
                if op == 0xFA {
                    self.eflags &= !IF;
                } else {
                    if self.eflags & IF == 0 {
                        self.shadow = true;
                    }
                    self.eflags |= IF;
                }
            }
            0xFC => self.eflags &= !DF,
            0xFD => self.eflags |= DF,
            0xFE => {
                let (m, o) = (mm, oo);
                let r = (m >> 3) & 7;
                if r > 1 {
                    return ud();
                }
                let a = self.rop(bus, o, 1)?;
                let (res, kind) = if r == 0 {
                    (a.wrapping_add(1), K_ADD)
                } else {
                    (a.wrapping_sub(1), K_SUB)
                };
                self.wop(bus, o, 1, res)?;
                self.set_lazy(kind, 1, a, 1, res, ARITH & !CF);
            }
            0xFF => {
                let (m, o) = (mm, oo);
                match (m >> 3) & 7 {
                    0 | 1 => {
                        let a = self.rop(bus, o, nv)?;
                        let (res, kind) = if m & 0x38 == 0 {
                            (a.wrapping_add(1), K_ADD)
                        } else {
                            (a.wrapping_sub(1), K_SUB)
                        };
                        self.wop(bus, o, nv, res)?;
                        self.set_lazy(kind, nv, a, 1, res, ARITH & !CF);
                    }
                    2 => {
                        let t = self.rop(bus, o, nv)?;
                        let t = if p.op32 { t } else { t & 0xFFFF };
                        if t > self.segs[sreg::CS].limit && self.pm() {
                            return gp(0);
                        }
                        let ret = self.eip;
                        self.push(bus, ret, nv)?;
                        self.eip = t;
                    }
                    4 => {
                        let t = self.rop(bus, o, nv)?;
                        self.control_transfer_near(t, p.op32)?;
                    }
                    3 | 5 => {
                        let (s, off) = Self::mem_only(o)?;
                        let t = self.rd(bus, s, off, nv)?;
                        let sel = self.rd(bus, s, off.wrapping_add(nv), 2)? as u16;
                        self.far_transfer(bus, sel, t, p.op32, m & 0x38 == 0x18)?;
                    }
                    6 => {
                        let v = self.rop(bus, o, nv)?;
                        self.push(bus, v, nv)?;
                    }
                    _ => return ud(),
                }
            }
            _ => return ud(),
        }
        Ok(())
    }

    fn soft_int<B: Bus>(&mut self, bus: &mut B, v: u8) -> Res<()> {
        self.deliver(bus, v, None, true, false)
    }

    /// The VME form of a 16-bit POPF/IRET flags image in V86 mode with IOPL < 3: #GP(0) if
    /// it sets TF, or sets IF while VIP is set; otherwise IF goes to VIF and IF and IOPL stay.
    pub(crate) fn vme_flags16(&mut self, v: u32) -> Res<()> {
        if v & TF != 0 || v & IF != 0 && self.eflags & VIP != 0 {
            return gp(0);
        }
        let cur = self.get_eflags();
        let mask = 0xFFFF & !(IF | IOPL);
        let vif = if v & IF != 0 { VIF } else { 0 };
        self.put_eflags((cur & !mask & !VIF) | (v & mask) | vif);
        Ok(())
    }

    fn popf(&mut self, v: u32, op32: bool) {
        let cur = self.get_eflags();
        // POPF never changes VM, RF, VIF or VIP.
        let mut mask = crate::flags::WRITABLE & !(VM | RF | VIF | VIP);
        if self.pe() {
            if self.cpl_eff() > 0 || self.v86() {
                mask &= !IOPL;
            }
            if self.cpl_eff() > self.iopl() && !self.v86() {
                mask &= !IF;
            }
        }
        if !op32 {
            mask &= 0xFFFF;
        }
        self.put_eflags((cur & !mask) | (v & mask));
    }

    fn load_far_ptr<B: Bus>(&mut self, bus: &mut B, o: Opnd, m: u8, s: usize, nv: u32) -> Res<()> {
        let (sg, off) = Self::mem_only(o)?;
        let v = self.rd(bus, sg, off, nv)?;
        let sel = self.rd(bus, sg, off.wrapping_add(nv), 2)? as u16;
        self.load_seg(bus, s, sel)?;
        self.wreg((m >> 3) & 7, nv, v);
        Ok(())
    }

    fn enter<B: Bus>(&mut self, bus: &mut B, size: u32, level: u32, nv: u32) -> Res<()> {
        let m = self.sp_mask();
        let mut sp = self.regs[4];
        let ebp = self.regs[5];
        self.push_at(bus, &mut sp, ebp, nv)?;
        let frame = sp;
        if level > 0 {
            let mut bp = ebp;
            for _ in 1..level {
                bp = (bp & !m) | (bp.wrapping_sub(nv) & m);
                let v = self.rd(bus, sreg::SS, bp & m, nv)?;
                self.push_at(bus, &mut sp, v, nv)?;
            }
            self.push_at(bus, &mut sp, frame, nv)?;
        }
        let nsp = (sp & !m) | (sp.wrapping_sub(size) & m);
        self.probe_write(bus, sreg::SS, nsp & m, 1)?;
        self.wreg(5, nv, frame);
        self.regs[4] = nsp;
        Ok(())
    }

    fn grp3<B: Bus>(&mut self, bus: &mut B, r: u8, o: Opnd, n: u32) -> Res<()> {
        let m = size_mask(n);
        let bits = n * 8;
        match r {
            0 | 1 => {
                let a = self.rop(bus, o, n)?;
                let b = self.imm(bus, n)?;
                self.alu(4, a, b, n);
            }
            2 => {
                let a = self.rop(bus, o, n)?;
                self.wop(bus, o, n, !a & m)?;
            }
            3 => {
                let a = self.rop(bus, o, n)?;
                let res = 0u32.wrapping_sub(a) & m;
                self.wop(bus, o, n, res)?;
                self.set_lazy(K_SUB, n, 0, a, res, ARITH);
            }
            4 | 5 => {
                let b = self.rop(bus, o, n)?;
                let a = self.rreg(0, n);
                let (lo, hi, over) = if r == 4 {
                    let p = a as u64 * b as u64;
                    (p as u32 & m, (p >> bits) as u32 & m, (p >> bits) != 0)
                } else {
                    let sa = ((a << (32 - bits)) as i32 >> (32 - bits)) as i64;
                    let sb = ((b << (32 - bits)) as i32 >> (32 - bits)) as i64;
                    let p = sa * sb;
                    let lo = p as u32 & m;
                    let back = ((lo << (32 - bits)) as i32 >> (32 - bits)) as i64;
                    (lo, (p >> bits) as u32 & m, back != p)
                };
                match n {
                    1 => self.wreg(0, 2, lo | (hi << 8)),
                    _ => {
                        self.wreg(0, n, lo);
                        self.wreg(2, n, hi);
                    }
                }
                self.mul_flags(lo, n, over);
            }
            _ => {
                let b = self.rop(bus, o, n)? as u64;
                if b == 0 {
                    return fault(vec::DE, None);
                }
                let num: u64 = match n {
                    1 => (self.regs[0] & 0xFFFF) as u64,
                    2 => ((self.regs[2] & 0xFFFF) as u64) << 16 | (self.regs[0] & 0xFFFF) as u64,
                    _ => (self.regs[2] as u64) << 32 | self.regs[0] as u64,
                };
                let (q, rem) = if r == 6 {
                    let q = num / b;
                    if q > m as u64 {
                        return fault(vec::DE, None);
                    }
                    (q as u32, (num % b) as u32)
                } else {
                    let sn = ((num << (64 - 2 * bits)) as i64) >> (64 - 2 * bits);
                    let sb = ((b << (64 - bits)) as i64) >> (64 - bits);
                    if sn == i64::MIN && sb == -1 {
                        return fault(vec::DE, None);
                    }
                    let q = sn / sb;
                    let lim = 1i64 << (bits - 1);
                    if q >= lim || q < -lim {
                        return fault(vec::DE, None);
                    }
                    (q as u32 & m, (sn % sb) as u32 & m)
                };
                match n {
                    1 => self.wreg(0, 2, q | (rem << 8)),
                    _ => {
                        self.wreg(0, n, q);
                        self.wreg(2, n, rem);
                    }
                }
            }
        }
        Ok(())
    }

    fn daa_das(&mut self, sub: bool) {
        let old_al = self.regs[0] & 0xFF;
        let old_cf = self.flag(CF);
        let mut al = old_al;
        let mut cf = false;
        let af = (al & 0xF) > 9 || self.flag(AF);
        if af {
            if sub {
                cf = old_cf || al < 6;
                al = al.wrapping_sub(6) & 0xFF;
            } else {
                cf = old_cf || al > 0xF9;
                al = (al + 6) & 0xFF;
            }
        }
        if old_al > 0x99 || old_cf {
            al = if sub {
                al.wrapping_sub(0x60) & 0xFF
            } else {
                (al + 0x60) & 0xFF
            };
            cf = true;
        }
        self.wreg(0, 1, al);
        let f = (cf as u32) | if af { AF } else { 0 };
        self.set_flags(CF | AF | OF, f);
        self.set_lazy(K_LOGIC, 1, 0, 0, al, ZF | SF | PF);
    }

    fn aaa_aas(&mut self, sub: bool) {
        let mut ax = self.regs[0] & 0xFFFF;
        let adj = (ax & 0xF) > 9 || self.flag(AF);
        if adj {
            if sub {
                // AX - 6 (a borrow reaches AH), then AH - 1.
                ax = ax.wrapping_sub(6).wrapping_sub(0x100) & 0xFFFF;
            } else {
                ax = ax.wrapping_add(0x106) & 0xFFFF;
            }
        }
        ax &= 0xFF0F;
        self.wreg(0, 2, ax);
        let f = if adj { CF | AF } else { 0 };
        self.set_flags(
            ARITH,
            f | if parity(ax) { PF } else { 0 } | if ax & 0xFF == 0 { ZF } else { 0 },
        );
    }

    // ---- strings ----

    fn string<B: Bus>(&mut self, bus: &mut B, op: u8, p: &Pfx) -> Res<()> {
        let n: u32 = if op & 1 == 0 {
            1
        } else if p.op32 {
            4
        } else {
            2
        };
        let am = if p.a32 { 0xFFFF_FFFF } else { 0xFFFF };
        let delta = if self.eflags & DF != 0 {
            n.wrapping_neg()
        } else {
            n
        };
        let src_seg = if p.seg == NO_SEG {
            sreg::DS
        } else {
            p.seg as usize
        };
        let rep = p.rep != 0;
        let mut iters: u64 = 0;
        let budget = if rep {
            (self.run_limit.saturating_sub(self.icount)).clamp(1, REP_CHUNK)
        } else {
            1
        };
        if rep && self.regs[1] & am == 0 {
            return Ok(());
        }
        if matches!(op, 0x6C..=0x6F) {
            let port = self.regs[2] as u16;
            self.io_check(bus, port, n)?;
        }
        let bulk = rep && delta == n && !self.dbp_data && matches!(op, 0xA4 | 0xA5 | 0xAA | 0xAB);
        loop {
            if bulk {
                let k = self.rep_chunk(bus, op, n, am, src_seg, budget - iters);
                if k > 0 {
                    iters += k;
                    if self.regs[1] & am == 0 {
                        self.icount += iters - 1;
                        return Ok(());
                    }
                    if iters >= budget {
                        self.icount += iters - 1;
                        self.eip = self.start_eip;
                        return Ok(());
                    }
                    continue;
                }
            }
            let si = self.regs[6] & am;
            let di = self.regs[7] & am;
            let mut stop = false;
            match op {
                0xA4 | 0xA5 => {
                    let v = self.rd(bus, src_seg, si, n)?;
                    self.wr(bus, sreg::ES, di, n, v)?;
                    self.adv(6, delta, am);
                    self.adv(7, delta, am);
                }
                0xAA | 0xAB => {
                    let v = self.rreg(0, n);
                    self.wr(bus, sreg::ES, di, n, v)?;
                    self.adv(7, delta, am);
                }
                0xAC | 0xAD => {
                    let v = self.rd(bus, src_seg, si, n)?;
                    self.wreg(0, n, v);
                    self.adv(6, delta, am);
                }
                0xA6 | 0xA7 => {
                    let a = self.rd(bus, src_seg, si, n)?;
                    let b = self.rd(bus, sreg::ES, di, n)?;
                    self.alu(7, a, b, n);
                    self.adv(6, delta, am);
                    self.adv(7, delta, am);
                    stop = self.lf.zf() != (p.rep == 0xF3);
                }
                0xAE | 0xAF => {
                    let a = self.rreg(0, n);
                    let b = self.rd(bus, sreg::ES, di, n)?;
                    self.alu(7, a, b, n);
                    self.adv(7, delta, am);
                    stop = self.lf.zf() != (p.rep == 0xF3);
                }
                0x6C | 0x6D => {
                    self.probe_write(bus, sreg::ES, di, n)?;
                    let port = self.regs[2] as u16;
                    self.io_done = true;
                    let v = bus.io_read(port, n as u8, self.icount + iters) & size_mask(n);
                    self.wr(bus, sreg::ES, di, n, v)?;
                    self.adv(7, delta, am);
                }
                _ => {
                    let v = self.rd(bus, src_seg, si, n)?;
                    let port = self.regs[2] as u16;
                    self.io_done = true;
                    bus.io_write(port, n as u8, v, self.icount + iters);
                    self.adv(6, delta, am);
                }
            }
            if !rep {
                return Ok(());
            }
            let c = self.regs[1].wrapping_sub(1) & am;
            self.regs[1] = (self.regs[1] & !am) | c;
            iters += 1;
            if c == 0 || stop {
                self.icount += iters - 1;
                return Ok(());
            }
            if iters >= budget || (self.io_done && bus.exit_requested()) {
                // Resume later: the instruction is not finished.
                self.icount += iters - 1;
                self.eip = self.start_eip;
                return Ok(());
            }
        }
    }

    /// Elements of a forward REP MOVS/STOS that can be done at once from `seg:off` on:
    /// within the segment limit, without address wrap, inside one page, through a fast TLB
    /// entry of kind `write`. Returns (store offset, element count), count 0 if none.
    fn bulk_span<B: Bus>(
        &self,
        bus: &mut B,
        s: usize,
        off: u32,
        n: u32,
        am: u32,
        write: bool,
    ) -> (usize, u64) {
        let sg = &self.segs[s];
        let ok = if write { sg.wr } else { sg.rd } || !self.pe();
        if !ok || sg.down || off > sg.limit {
            return (0, 0);
        }
        let lin = sg.base.wrapping_add(off);
        let in_seg = (sg.limit.min(am) - off) as u64 + 1;
        let in_page = (0x1000 - (lin & 0xFFF)) as u64;
        let e = self.tlb_entry(lin);
        let tag = if write { e.wtag } else { e.rtag };
        if tag != lin & 0xFFFF_F000 {
            return (0, 0);
        }
        let o = e.off as usize + (lin & 0xFFF) as usize;
        let k = in_seg.min(in_page) / n as u64;
        if o + (k as usize) * (n as usize) > bus.memory().store().len() {
            return (0, 0);
        }
        (o, k)
    }

    /// Does up to `max` iterations of a forward REP MOVS/STOS straight on the memory store
    /// (both pages plain RAM with fast entries). Returns the iterations done (0: take the
    /// per-element path, which also fills the TLB).
    fn rep_chunk<B: Bus>(
        &mut self,
        bus: &mut B,
        op: u8,
        n: u32,
        am: u32,
        src_seg: usize,
        max: u64,
    ) -> u64 {
        if n > 1 && self.ac_armed() {
            // Misaligned elements must raise #AC: the per-element path checks them.
            return 0;
        }
        let count = (self.regs[1] & am) as u64;
        let di = self.regs[7] & am;
        let (dst, kd) = self.bulk_span(bus, sreg::ES, di, n, am, true);
        let mut k = count.min(max).min(kd);
        if k == 0 {
            return 0;
        }
        let nb = n as usize;
        if op >= 0xAA {
            let v = self.rreg(0, n).to_le_bytes();
            let Some(d) = bus.memory().store_mut().get_mut(dst..dst + k as usize * nb) else {
                return 0;
            };
            for c in d.chunks_exact_mut(nb) {
                c.copy_from_slice(&v[..nb]);
            }
        } else {
            let si = self.regs[6] & am;
            let (src, ks) = self.bulk_span(bus, src_seg, si, n, am, false);
            k = k.min(ks);
            let len = k as usize * nb;
            // Overlap with the destination ahead of the source replicates data element by
            // element: leave that to the per-element path.
            if k == 0 || (dst > src && dst < src + len) {
                return 0;
            }
            let store = bus.memory().store_mut();
            if src + len > store.len() || dst + len > store.len() {
                return 0;
            }
            store.copy_within(src..src + len, dst);
            let adv = (k as u32).wrapping_mul(n);
            self.regs[6] = (self.regs[6] & !am) | (si.wrapping_add(adv) & am);
        }
        let adv = (k as u32).wrapping_mul(n);
        self.regs[7] = (self.regs[7] & !am) | (di.wrapping_add(adv) & am);
        let c = (count - k) as u32;
        self.regs[1] = (self.regs[1] & !am) | (c & am);
        k
    }

    #[inline(always)]
    fn adv(&mut self, r: usize, delta: u32, am: u32) {
        self.regs[r] = (self.regs[r] & !am) | (self.regs[r].wrapping_add(delta) & am);
    }

    fn io_check<B: Bus>(&mut self, bus: &mut B, port: u16, n: u32) -> Res<()> {
        if !self.pe() || (!self.v86() && self.cpl <= self.iopl()) {
            return Ok(());
        }
        let t = self.tr.attr & 0xF;
        if (t != 9 && t != 0xB) || self.tr.limit < 0x67 {
            return gp(0);
        }
        let base = self.rd_sys(bus, self.tr.base.wrapping_add(0x66), 2)?;
        let off = base + (port as u32 >> 3);
        if off + 1 > self.tr.limit {
            return gp(0);
        }
        let bits = self.rd_sys(bus, self.tr.base.wrapping_add(off), 2)?;
        let mask = ((1u32 << n) - 1) << (port & 7);
        if bits & mask != 0 {
            return gp(0);
        }
        Ok(())
    }

    // ---- FPU ----

    fn fpu_op<B: Bus>(&mut self, bus: &mut B, op: u8, p: &Pfx) -> Res<()> {
        if self.cr0 & (CR0_EM | CR0_TS) != 0 {
            return fault(vec::NM, None);
        }
        let (m, o) = self.modrm(bus, p)?;
        let (seg, ea) = match o {
            Opnd::Mem(s, off) => (s as usize, Some(off)),
            Opnd::Reg(_) => (sreg::DS, None),
        };
        let ctx = FpuContext {
            op32: p.op32,
            protected: self.pm(),
            ip: self.start_eip,
            cs: self.segs[sreg::CS].sel,
            dp: ea.unwrap_or(0),
            ds: self.segs[seg].sel,
            opcode: (((op & 7) as u16) << 8) | m as u16,
            eflags: self.get_eflags(),
        };
        self.ferr_sync(bus);
        let ne = self.cr0 & CR0_NE != 0;
        let mut fpu = std::mem::take(&mut self.fpu);
        let mut signal = false;
        let r = {
            let mut mem = FpuMem {
                cpu: self,
                bus,
                seg,
                align: fpu_align(op, m, p.op32),
            };
            match fpu.execute(op, m, ea, &ctx, &mut mem) {
                // CR0.NE = 0: FERR# goes out and the instruction proceeds (PC chipsets route
                // FERR# to IRQ13 and assert IGNNE# once software writes port F0; this CPU
                // never freezes at the waiting instruction).
                Err(FpuError::PendingException) if !ne => {
                    signal = true;
                    fpu.execute_ignne(op, m, ea, &ctx, &mut mem)
                }
                r => r,
            }
        };
        self.fpu = fpu;
        if signal {
            self.ferr_assert(bus);
        }
        self.ferr_sync(bus);
        match r {
            Ok(FpuOutcome::Done) => Ok(()),
            Ok(FpuOutcome::StoreAx(v)) => {
                self.wreg(0, 2, v as u32);
                Ok(())
            }
            Ok(FpuOutcome::SetFlags { zf, pf, cf }) => {
                let v = if zf { ZF } else { 0 } | if pf { PF } else { 0 } | if cf { CF } else { 0 };
                self.set_flags(ARITH, v);
                Ok(())
            }
            Err(FpuError::Undefined) => ud(),
            Err(FpuError::Fault(f)) => Err(f),
            Err(FpuError::PendingException) => fault(vec::MF, None),
        }
    }

    /// A waiting x87/MMX instruction found an unmasked exception pending with CR0.NE = 0:
    /// FERR# goes high (once; it stays high while the exception is pending).
    fn ferr_assert<B: Bus>(&mut self, bus: &mut B) {
        if !self.ferr {
            self.ferr = true;
            // The interrupt line may have changed: end the running block here.
            self.code.exit |= crate::block::EXIT_STOP;
            bus.ferr(true);
        }
    }

    /// FERR# follows the FPU's ES bit down: FNCLEX, FNINIT, FNSAVE, FRSTOR/FLDENV of a clean
    /// status, FLDCW masking the pending exception (checked after every x87 instruction), and
    /// FXRSTOR (noticed at the next x87, WAIT or MMX instruction).
    fn ferr_sync<B: Bus>(&mut self, bus: &mut B) {
        if self.ferr && !self.fpu.wait_check() {
            self.ferr = false;
            self.ferr_notify = false;
            self.code.exit |= crate::block::EXIT_STOP;
            bus.ferr(false);
        }
    }

    /// Reports a FERR# change made where the bus was out of reach (`simd_need`).
    #[inline]
    fn report_ferr<B: Bus>(&mut self, bus: &mut B) {
        if self.ferr_notify {
            self.ferr_notify = false;
            bus.ferr(self.ferr);
        }
    }

    // ---- two-byte opcodes ----

    fn exec0f<B: Bus>(&mut self, bus: &mut B, p: &Pfx) -> Res<()> {
        let op = self.fetch8(bus)?;
        let nv = if p.op32 { 4 } else { 2 };
        match op {
            0x00 => {
                if !self.pm() {
                    return ud();
                }
                let (m, o) = self.modrm(bus, p)?;
                match (m >> 3) & 7 {
                    0 | 1 => {
                        let v = if m & 0x38 == 0 {
                            self.ldtr.sel
                        } else {
                            self.tr.sel
                        } as u32;
                        match o {
                            Opnd::Reg(r) => self.wreg(r, nv, v),
                            _ => self.wop(bus, o, 2, v)?,
                        }
                    }
                    2 => {
                        self.need_cpl0()?;
                        let sel = self.rop(bus, o, 2)? as u16;
                        self.lldt(bus, sel)?;
                    }
                    3 => {
                        self.need_cpl0()?;
                        let sel = self.rop(bus, o, 2)? as u16;
                        self.ltr(bus, sel)?;
                    }
                    4 | 5 => {
                        let sel = self.rop(bus, o, 2)? as u16;
                        let ok = self.verify(bus, sel, m & 0x38 == 0x28)?;
                        self.set_flags(ZF, if ok { ZF } else { 0 });
                    }
                    _ => return ud(),
                }
            }
            0x01 => {
                let (m, o) = self.modrm(bus, p)?;
                match (m >> 3) & 7 {
                    r @ (0 | 1) => {
                        let (s, off) = Self::mem_only(o)?;
                        let t = if r == 0 { self.gdtr } else { self.idtr };
                        self.probe_write(bus, s, off, 6)?;
                        // A word then a dword: with alignment checking only an address
                        // that is 2 modulo 4 passes (SDM vol. 3 §3.5.1); checked before
                        // either store.
                        self.align_check(s, off.wrapping_add(2), 4)?;
                        self.wr(bus, s, off, 2, t.limit)?;
                        let base = if p.op32 { t.base } else { t.base & 0x00FF_FFFF };
                        self.wr(bus, s, off.wrapping_add(2), 4, base)?;
                    }
                    r @ (2 | 3) => {
                        self.need_cpl0()?;
                        let (s, off) = Self::mem_only(o)?;
                        let limit = self.rd(bus, s, off, 2)?;
                        let mut base = self.rd(bus, s, off.wrapping_add(2), 4)?;
                        if !p.op32 {
                            base &= 0x00FF_FFFF;
                        }
                        let t = crate::Dtr { base, limit };
                        if r == 2 {
                            self.gdtr = t;
                        } else {
                            self.idtr = t;
                        }
                    }
                    4 => {
                        let v = self.cr0;
                        match o {
                            Opnd::Reg(r) => self.wreg(r, nv, v),
                            _ => self.wop(bus, o, 2, v)?,
                        }
                    }
                    6 => {
                        self.need_cpl0()?;
                        let v = self.rop(bus, o, 2)?;
                        // LMSW: PE can be set but not cleared.
                        let nv = (self.cr0 & !0xE) | (v & 0xE) | (self.cr0 & 1) | (v & 1);
                        self.write_cr0(nv)?;
                    }
                    7 => {
                        self.need_cpl0()?;
                        let (s, off) = Self::mem_only(o)?;
                        let lin = self.segs[s].base.wrapping_add(off);
                        self.invlpg(lin);
                    }
                    _ => return ud(),
                }
            }
            0x02 | 0x03 => {
                if !self.pm() {
                    return ud();
                }
                let (m, o) = self.modrm(bus, p)?;
                let sel = self.rop(bus, o, 2)? as u16;
                match self.lar_lsl(bus, sel, op == 0x03)? {
                    Some(v) => {
                        self.wreg((m >> 3) & 7, nv, v);
                        self.set_flags(ZF, ZF);
                    }
                    None => self.set_flags(ZF, 0),
                }
            }
            0x06 => {
                self.need_cpl0()?;
                self.cr0 &= !CR0_TS;
            }
            0x08 | 0x09 => self.need_cpl0()?,
            0x0B | 0xB9 | 0xFF => return ud(),
            // MMX, SSE, SSE2.
            op if crate::simd::is_simd_op(op) => return self.simd_op(bus, op, p),
            0x18..=0x1F => {
                self.modrm(bus, p)?;
            }
            0x20 | 0x22 => {
                self.need_cpl0()?;
                let m = self.fetch8(bus)?;
                let cr = (m >> 3) & 7;
                let r = m & 7;
                if op == 0x20 {
                    let v = match cr {
                        0 => self.cr0,
                        2 => self.cr2,
                        3 => self.cr3,
                        4 => self.cr4,
                        _ => return ud(),
                    };
                    self.regs[r as usize] = v;
                } else {
                    let v = self.regs[r as usize];
                    match cr {
                        0 => self.write_cr0(v)?,
                        2 => self.cr2 = v,
                        3 => {
                            self.cr3 = v & 0xFFFF_F018;
                            self.flush_tlb_nonglobal();
                        }
                        4 => {
                            if v & !CR4_VALID != 0 {
                                return gp(0);
                            }
                            if (v ^ self.cr4) & (CR4_PGE | CR4_PSE) != 0 {
                                self.flush_tlb_all();
                            }
                            self.cr4 = v;
                        }
                        _ => return ud(),
                    }
                }
            }
            0x21 | 0x23 => {
                self.need_cpl0()?;
                let m = self.fetch8(bus)?;
                let mut dr = ((m >> 3) & 7) as usize;
                let r = (m & 7) as usize;
                if dr == 4 || dr == 5 {
                    if self.cr4 & CR4_DE != 0 {
                        return ud();
                    }
                    dr += 2;
                }
                if op == 0x21 {
                    self.regs[r] = self.dr[dr];
                } else {
                    let v = self.regs[r];
                    self.dr[dr] = match dr {
                        6 => (v & 0xE00F) | 0xFFFF_0FF0,
                        7 => (v & 0xFFFF_2BFF) | 0x400,
                        _ => v,
                    };
                    self.update_breakpoints();
                }
            }
            0x30 => {
                self.need_cpl0()?;
                let v = (self.regs[2] as u64) << 32 | self.regs[0] as u64;
                self.wrmsr(bus, self.regs[1], v)?;
            }
            0x31 => {
                if self.cr4 & CR4_TSD != 0 && self.cpl_eff() != 0 {
                    return gp(0);
                }
                let t = bus.rdtsc(self.icount).wrapping_add(self.tsc_offset);
                self.regs[0] = t as u32;
                self.regs[2] = (t >> 32) as u32;
            }
            0x32 => {
                self.need_cpl0()?;
                let v = self.rdmsr(bus, self.regs[1])?;
                self.regs[0] = v as u32;
                self.regs[2] = (v >> 32) as u32;
            }
            0x34 => self.sysenter()?,
            0x35 => self.sysexit()?,
            0x40..=0x4F => {
                let (m, o) = self.modrm(bus, p)?;
                let v = self.rop(bus, o, nv)?;
                if self.cond(op & 0xF) {
                    self.wreg((m >> 3) & 7, nv, v);
                }
            }
            0x80..=0x8F => {
                let rel = self.imm(bus, nv)?;
                if self.cond(op & 0xF) {
                    let t = self.eip.wrapping_add(rel);
                    self.control_transfer_near(t, p.op32)?;
                }
            }
            0x90..=0x9F => {
                let (_, o) = self.modrm(bus, p)?;
                let v = self.cond(op & 0xF) as u32;
                self.wop(bus, o, 1, v)?;
            }
            0xA0 | 0xA8 => {
                let s = self.segs[if op == 0xA0 { sreg::FS } else { sreg::GS }].sel as u32;
                self.push(bus, s, nv)?;
            }
            0xA1 | 0xA9 => {
                let s = if op == 0xA1 { sreg::FS } else { sreg::GS };
                let mut sp = self.regs[4];
                let v = self.pop_at(bus, &mut sp, nv)?;
                self.load_seg(bus, s, v as u16)?;
                self.regs[4] = sp;
            }
            0xA2 => self.cpuid(),
            0xA3 | 0xAB | 0xB3 | 0xBB => {
                let (m, o) = self.modrm(bus, p)?;
                let bit = self.rreg((m >> 3) & 7, nv);
                let kind = match op {
                    0xA3 => 0,
                    0xAB => 1,
                    0xB3 => 2,
                    _ => 3,
                };
                let o = match o {
                    Opnd::Mem(s, off) => {
                        let sbit = if nv == 4 {
                            bit as i32
                        } else {
                            bit as i16 as i32
                        };
                        let disp = (sbit >> (if nv == 4 { 5 } else { 4 })) * nv as i32;
                        let mut a = off.wrapping_add(disp as u32);
                        if !p.a32 {
                            a &= 0xFFFF;
                        }
                        Opnd::Mem(s, a)
                    }
                    r => r,
                };
                self.bit_op(bus, o, bit & (nv * 8 - 1), kind, nv)?;
            }
            0xBA => {
                let (m, o) = self.modrm(bus, p)?;
                let bit = self.fetch8(bus)? as u32 & (nv * 8 - 1);
                let r = (m >> 3) & 7;
                if r < 4 {
                    return ud();
                }
                self.bit_op(bus, o, bit, r - 4, nv)?;
            }
            0xA4 | 0xA5 | 0xAC | 0xAD => {
                let (m, o) = self.modrm(bus, p)?;
                let cnt = if op & 1 == 0 {
                    self.fetch8(bus)? as u32
                } else {
                    self.regs[1] & 0xFF
                };
                let dst = self.rop(bus, o, nv)?;
                let src = self.rreg((m >> 3) & 7, nv);
                if cnt & 0x1F != 0 {
                    let r = self.shld(dst, src, cnt, nv, op < 0xA8);
                    self.wop(bus, o, nv, r)?;
                }
            }
            0xAF => {
                let (m, o) = self.modrm(bus, p)?;
                let a = self.rop(bus, o, nv)?;
                let b = self.rreg((m >> 3) & 7, nv);
                let r = self.imul2(b, a, nv);
                self.wreg((m >> 3) & 7, nv, r);
            }
            0xB0 | 0xB1 => {
                let n = if op == 0xB0 { 1 } else { nv };
                let (m, o) = self.modrm(bus, p)?;
                let dst = self.rop(bus, o, n)?;
                let acc = self.rreg(0, n);
                self.alu(7, acc, dst, n);
                if acc == dst {
                    let src = self.rreg((m >> 3) & 7, n);
                    self.wop(bus, o, n, src)?;
                } else {
                    self.wop(bus, o, n, dst)?;
                    self.wreg(0, n, dst);
                }
            }
            0xB2 | 0xB4 | 0xB5 => {
                let (m, o) = self.modrm(bus, p)?;
                let s = match op {
                    0xB2 => sreg::SS,
                    0xB4 => sreg::FS,
                    _ => sreg::GS,
                };
                self.load_far_ptr(bus, o, m, s, nv)?;
            }
            0xB6 | 0xB7 | 0xBE | 0xBF => {
                let (m, o) = self.modrm(bus, p)?;
                let n = if op & 1 == 0 { 1 } else { 2 };
                let v = self.rop(bus, o, n)?;
                let v = if op >= 0xBE {
                    if n == 1 {
                        v as u8 as i8 as i32 as u32
                    } else {
                        v as u16 as i16 as i32 as u32
                    }
                } else {
                    v
                };
                self.wreg((m >> 3) & 7, nv, v);
            }
            0xBC | 0xBD => {
                let (m, o) = self.modrm(bus, p)?;
                let v = self.rop(bus, o, nv)?;
                if v == 0 {
                    self.set_flags(ZF, ZF);
                } else {
                    let i = if op == 0xBC {
                        v.trailing_zeros()
                    } else {
                        31 - v.leading_zeros()
                    };
                    self.wreg((m >> 3) & 7, nv, i);
                    self.set_flags(ZF, 0);
                }
            }
            0xC0 | 0xC1 => {
                let n = if op == 0xC0 { 1 } else { nv };
                let (m, o) = self.modrm(bus, p)?;
                let r = (m >> 3) & 7;
                let dst = self.rop(bus, o, n)?;
                let src = self.rreg(r, n);
                let sum = self.alu(0, dst, src, n);
                self.wreg(r, n, dst);
                self.wop(bus, o, n, sum)?;
            }
            0xC7 => {
                let (m, o) = self.modrm(bus, p)?;
                if (m >> 3) & 7 != 1 {
                    return ud();
                }
                let (s, off) = Self::mem_only(o)?;
                let lo = self.rd(bus, s, off, 4)?;
                let hi = self.rd(bus, s, off.wrapping_add(4), 4)?;
                self.probe_write(bus, s, off, 8)?;
                self.align_check(s, off, 8)?;
                if lo == self.regs[0] && hi == self.regs[2] {
                    let (b, c) = (self.regs[3], self.regs[1]);
                    self.wr(bus, s, off, 4, b)?;
                    self.wr(bus, s, off.wrapping_add(4), 4, c)?;
                    self.set_flags(ZF, ZF);
                } else {
                    self.wr(bus, s, off, 4, lo)?;
                    self.wr(bus, s, off.wrapping_add(4), 4, hi)?;
                    self.regs[0] = lo;
                    self.regs[2] = hi;
                    self.set_flags(ZF, 0);
                }
            }
            0xC8..=0xCF => {
                let r = (op & 7) as usize;
                if p.op32 {
                    self.regs[r] = self.regs[r].swap_bytes();
                } else {
                    self.regs[r] &= 0xFFFF_0000;
                }
            }
            _ => return ud(),
        }
        Ok(())
    }

    fn bit_op<B: Bus>(&mut self, bus: &mut B, o: Opnd, bit: u32, kind: u8, n: u32) -> Res<()> {
        let v = self.rop(bus, o, n)?;
        let m = 1u32 << bit;
        let cf = v & m != 0;
        let nv = match kind {
            0 => v,
            1 => v | m,
            2 => v & !m,
            _ => v ^ m,
        };
        if kind != 0 {
            self.wop(bus, o, n, nv)?;
        }
        self.set_flags(CF, cf as u32);
        Ok(())
    }

    fn write_cr0(&mut self, v: u32) -> Res<()> {
        if v & CR0_PG != 0 && v & CR0_PE == 0 || v & CR0_NW != 0 && v & CR0_CD == 0 {
            return gp(0);
        }
        let v = (v & CR0_VALID) | 0x10;
        let changed = self.cr0 ^ v;
        self.cr0 = v;
        if changed & (CR0_PG | CR0_WP | CR0_PE) != 0 {
            self.flush_tlb_all();
        }
        if v & CR0_PE == 0 {
            self.set_cpl(0);
        }
        Ok(())
    }

    fn lldt<B: Bus>(&mut self, bus: &mut B, sel: u16) -> Res<()> {
        if sel & 0xFFFC == 0 {
            self.ldtr = crate::Seg {
                sel,
                ..Default::default()
            };
            return Ok(());
        }
        if sel & 4 != 0 {
            return gp((sel & 0xFFFC) as u32);
        }
        let d = self.fetch_desc(bus, sel, vec::GP)?;
        if d.is_cd() || d.typ() != 2 {
            return gp((sel & 0xFFFC) as u32);
        }
        if !d.present() {
            return fault(vec::NP, Some((sel & 0xFFFC) as u32));
        }
        self.ldtr = d.seg(sel);
        Ok(())
    }

    fn ltr<B: Bus>(&mut self, bus: &mut B, sel: u16) -> Res<()> {
        if sel & 0xFFFC == 0 || sel & 4 != 0 {
            return gp((sel & 0xFFFC) as u32);
        }
        let d = self.fetch_desc(bus, sel, vec::GP)?;
        if d.is_cd() || (d.typ() != 1 && d.typ() != 9) {
            return gp((sel & 0xFFFC) as u32);
        }
        if !d.present() {
            return fault(vec::NP, Some((sel & 0xFFFC) as u32));
        }
        if let Some(a) = self.desc_addr(sel) {
            self.wr_sys(bus, a.wrapping_add(4), 4, d.hi | 0x200)?;
        }
        let mut nd = d;
        nd.hi |= 0x200;
        self.tr = nd.seg(sel);
        Ok(())
    }

    /// VERR (`write` false) / VERW.
    fn verify<B: Bus>(&mut self, bus: &mut B, sel: u16, write: bool) -> Res<bool> {
        if sel & 0xFFFC == 0 {
            return Ok(false);
        }
        let Some(d) = self.read_desc(bus, sel)? else {
            return Ok(false);
        };
        if !d.is_cd() {
            return Ok(false);
        }
        if !d.conforming() && (d.dpl() < self.cpl || d.dpl() < (sel & 3) as u8) {
            return Ok(false);
        }
        Ok(if write {
            d.writable_data()
        } else {
            d.readable()
        })
    }

    fn lar_lsl<B: Bus>(&mut self, bus: &mut B, sel: u16, lsl: bool) -> Res<Option<u32>> {
        if sel & 0xFFFC == 0 {
            return Ok(None);
        }
        let Some(d) = self.read_desc(bus, sel)? else {
            return Ok(None);
        };
        if !d.is_cd() {
            let ok = if lsl {
                matches!(d.typ(), 1 | 2 | 3 | 9 | 0xB)
            } else {
                matches!(d.typ(), 1 | 2 | 3 | 4 | 5 | 9 | 0xB | 0xC)
            };
            if !ok {
                return Ok(None);
            }
        }
        if !d.conforming() && (d.dpl() < self.cpl || d.dpl() < (sel & 3) as u8) {
            return Ok(None);
        }
        Ok(Some(if lsl { d.limit() } else { d.hi & 0x00F0_FF00 }))
    }

    fn sysenter(&mut self) -> Res<()> {
        if !self.pe() || self.sysenter_cs & 0xFFFC == 0 {
            return gp(0);
        }
        let cs = (self.sysenter_cs & 0xFFFC) as u16;
        self.put_eflags(self.get_eflags() & !(VM | IF | RF));
        self.segs[sreg::CS] = crate::Seg::from_cache(cs, 0, 0xFFFF_FFFF, 0xC09B);
        self.segs[sreg::SS] = crate::Seg::from_cache(cs.wrapping_add(8), 0, 0xFFFF_FFFF, 0xC093);
        self.set_cpl(0);
        self.regs[4] = self.sysenter_esp;
        self.eip = self.sysenter_eip;
        Ok(())
    }

    fn sysexit(&mut self) -> Res<()> {
        if !self.pm() || self.cpl != 0 || self.sysenter_cs & 0xFFFC == 0 {
            return gp(0);
        }
        let cs = ((self.sysenter_cs as u16) & 0xFFFC).wrapping_add(16) | 3;
        self.segs[sreg::CS] = crate::Seg::from_cache(cs, 0, 0xFFFF_FFFF, 0xC0FB);
        self.segs[sreg::SS] = crate::Seg::from_cache(cs.wrapping_add(8), 0, 0xFFFF_FFFF, 0xC0F3);
        self.set_cpl(3);
        self.regs[4] = self.regs[1];
        self.eip = self.regs[2];
        Ok(())
    }

    fn cpuid(&mut self) {
        let leaf = self.regs[0];
        let (a, b, c, d) = match leaf {
            0 => (2, 0x756E_6547, 0x6C65_746E, 0x4965_6E69),
            1 => (CPUID_SIGNATURE, 0, 1 << 31, CPUID_FEATURES_EDX),
            // Leaf 2 and every out-of-range leaf: cache descriptors of a P6.
            _ => (0x0302_0101, 0, 0, 0x0C04_0843),
        };
        self.regs[0] = a;
        self.regs[3] = b;
        self.regs[1] = c;
        self.regs[2] = d;
    }

    fn rdmsr<B: Bus>(&mut self, bus: &mut B, msr: u32) -> Res<u64> {
        Ok(match msr {
            0x10 => bus.rdtsc(self.icount).wrapping_add(self.tsc_offset),
            0x17 => 0,
            0x8B => self.msr_bios_sign,
            0x174 => self.sysenter_cs as u64,
            0x175 => self.sysenter_esp as u64,
            0x176 => self.sysenter_eip as u64,
            0x1D9 => self.msr_debugctl,
            _ => return gp(0),
        })
    }

    fn wrmsr<B: Bus>(&mut self, bus: &mut B, msr: u32, v: u64) -> Res<()> {
        match msr {
            0x10 => self.tsc_offset = v.wrapping_sub(bus.rdtsc(self.icount)),
            0x17 => {}
            0x8B => self.msr_bios_sign = v,
            0x174 => self.sysenter_cs = v as u32 & 0xFFFF,
            0x175 => self.sysenter_esp = v as u32,
            0x176 => self.sysenter_eip = v as u32,
            0x1D9 => self.msr_debugctl = v & 0x7F,
            _ => return gp(0),
        }
        Ok(())
    }
}

/// One-byte opcodes whose ModR/M operand `exec` decodes up front.
const HAS_MODRM: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let op = i as u8;
        t[i] = (op < 0x40 && op & 7 < 4)
            || matches!(op, 0x62 | 0x63 | 0x69 | 0x6B | 0x80..=0x8E | 0xC0 | 0xC1 | 0xC4..=0xC7)
            || matches!(op, 0xD0..=0xD3 | 0xF6 | 0xF7 | 0xFE | 0xFF);
        i += 1;
    }
    t
};

/// CPUID.1 EDX: FPU VME DE PSE TSC MSR CX8 SEP PGE CMOV MMX FXSR SSE SSE2.
pub const CPUID_FEATURES_EDX: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 8)
    | (1 << 11)
    | (1 << 13)
    | (1 << 15)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26);

#[allow(dead_code)]
const _: u32 = AC | ID | NT | CR0_WP;
