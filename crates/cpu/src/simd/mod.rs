//! MMX, SSE and SSE2: the XMM register file, the packed-integer and move instructions, and
//! the plumbing that runs the floating-point lanes through [`fp`].
//!
//! Everything enters through [`Cpu::simd_op`], called by the two-byte opcode decoder for
//! 0F 10–17, 28–2F, 50–7F, AE, C2–C6 and D0–FE. The mandatory prefix (none, 66, F3, F2;
//! F3/F2 win over 66, the last of F3/F2 wins) selects the form; a combination the
//! instruction set does not define raises #UD.
//!
//! MMn is the significand of physical x87 register n (see the `mmx_*` methods of the FPU):
//! an instruction that touches an MMX register checks for a pending x87 exception (#MF) and,
//! once it has completed, sets TOP = 0 and every tag valid. XMM values are `u128` with lane
//! 0 in the low bits; memory is little endian, so a 128-bit load is the plain value.

pub(crate) mod fp;
mod int;
mod sse;

use crate::exec::{Opnd, Pfx};
use crate::mmu::Acc;
use crate::{fault, gp, sreg, ud, vec, Bus, Cpu, Res};

/// CR4.OSFXSR: the OS saves XMM state with FXSAVE; SSE instructions are enabled.
pub(crate) const CR4_OSFXSR: u32 = 1 << 9;
/// CR4.OSXMMEXCPT: unmasked SIMD floating-point exceptions raise #XM instead of #UD.
pub(crate) const CR4_OSXMMEXCPT: u32 = 1 << 10;
/// MXCSR after reset: every exception masked, round to nearest.
pub(crate) const MXCSR_RESET: u32 = 0x1F80;
/// Writable MXCSR bits (DAZ included), also the MXCSR_MASK stored by FXSAVE.
pub(crate) const MXCSR_MASK: u32 = 0xFFFF;

/// SIMD floating-point exception vector.
const XM: u8 = 19;
const CR0_EM: u32 = 1 << 2;
const CR0_TS: u32 = 1 << 3;
const CR0_NE: u32 = 1 << 5;
/// `Pfx::seg` when no segment override prefix was seen.
const NO_SEG: u8 = 0xFF;

/// Whether 0F `op` is an MMX/SSE/SSE2 opcode: [`Cpu::simd_op`] runs it. All have a ModR/M
/// byte but EMMS (0F 77).
pub(crate) const fn is_simd_op(op: u8) -> bool {
    matches!(op, 0x10..=0x17 | 0x28..=0x2F | 0x50..=0x7F | 0xAE | 0xC2..=0xC6 | 0xD0..=0xFE)
}

/// Whether the MMX/SSE/SSE2 opcode 0F `op` ends with an immediate byte after its operand.
pub(crate) const fn simd_has_imm8(op: u8) -> bool {
    matches!(op, 0x70..=0x73 | 0xC2 | 0xC4..=0xC6)
}

/// The mandatory prefix of an SSE instruction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Mp {
    /// No prefix: packed single (PS) and MMX forms.
    None = 0,
    /// 66: packed double (PD) and 128-bit integer forms.
    P66 = 1,
    /// F3: scalar single (SS).
    F3 = 2,
    /// F2: scalar double (SD).
    F2 = 3,
}

impl Mp {
    /// The mandatory prefix of an instruction with repeat prefix `rep` (0, F2h or F3h) and,
    /// when `size_override`, a 66h prefix.
    pub(crate) fn of(rep: u8, size_override: bool) -> Mp {
        match rep {
            0xF3 => Mp::F3,
            0xF2 => Mp::F2,
            _ if size_override => Mp::P66,
            _ => Mp::None,
        }
    }
}

/// What an instruction needs before it may run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Need {
    /// Touches MMX registers only: CR0.EM → #UD, CR0.TS → #NM, pending x87 exception → #MF.
    Mmx,
    /// Touches XMM registers or MXCSR: CR0.EM or !CR4.OSFXSR → #UD, CR0.TS → #NM.
    Sse,
    /// Both (CVTPI2PS with a register source, MOVQ2DQ, ...).
    SseMmx,
}

impl Cpu {
    /// Executes the MMX/SSE/SSE2 instruction with second opcode byte `op` (EIP is just past
    /// it).
    pub(crate) fn simd_op<B: Bus>(&mut self, bus: &mut B, op: u8, p: &Pfx) -> Res<()> {
        let mp = Mp::of(p.rep, p.op32 != self.segs[sreg::CS].big);
        if op == 0x77 {
            // EMMS
            if mp != Mp::None {
                return ud();
            }
            self.simd_need(Need::Mmx)?;
            self.fpu.emms();
            return Ok(());
        }
        let (m, o) = self.modrm(bus, p)?;
        self.simd_exec(bus, op, mp, m, o, p)
    }

    /// Executes the MMX/SSE/SSE2 instruction `op` (not EMMS) with mandatory prefix `mp`,
    /// ModR/M byte `m` (only its reg field is read) and r/m operand `o`; an immediate byte
    /// is fetched at EIP.
    pub(crate) fn simd_exec<B: Bus>(
        &mut self,
        bus: &mut B,
        op: u8,
        mp: Mp,
        m: u8,
        o: Opnd,
        p: &Pfx,
    ) -> Res<()> {
        match op {
            0xAE => return self.grp15(bus, mp, m, o),
            0xC3 => {
                // MOVNTI m32, r32
                if mp != Mp::None {
                    return ud();
                }
                let (s, off) = mem_of(o)?;
                let v = self.regs[((m >> 3) & 7) as usize];
                return self.wr(bus, s, off, 4, v);
            }
            _ => {}
        }
        let mm = self.int_op(bus, op, mp, m, o, p)?;
        let mm = match mm {
            Some(mm) => mm,
            None => self.sse_op(bus, op, mp, m, o)?,
        };
        if mm {
            self.fpu.mmx_enter();
        }
        Ok(())
    }

    /// Raises the exceptions `need` calls for, in the processor's order.
    /// With CR0.NE = 0 a pending x87 exception asserts FERR# instead (IRQ13 on a PC) and the
    /// instruction proceeds; the run loop reports the change to the bus after the
    /// instruction.
    pub(crate) fn simd_need(&mut self, need: Need) -> Res<()> {
        if self.cr0 & CR0_EM != 0 || need != Need::Mmx && self.cr4 & CR4_OSFXSR == 0 {
            return ud();
        }
        if self.cr0 & CR0_TS != 0 {
            return fault(vec::NM, None);
        }
        if need != Need::Sse {
            let pending = self.fpu.wait_check();
            if pending && self.cr0 & CR0_NE != 0 {
                return fault(vec::MF, None);
            }
            if pending != self.ferr {
                self.ferr = pending;
                self.ferr_notify = true;
                self.io_done = true;
                self.code.exit |= crate::block::EXIT_STOP;
            }
        }
        Ok(())
    }

    /// Accumulates SIMD floating-point exception flags into MXCSR and raises #XM (or #UD
    /// without CR4.OSXMMEXCPT) when one of them is unmasked. Callers write their destination
    /// only after this returned `Ok`.
    /// When an unmasked pre-computation exception (IE, DE, ZE) is detected in any lane, the
    /// post-computation ones (OE, UE, PE) are not checked and not recorded.
    pub(crate) fn simd_fp_flags(&mut self, flags: u32) -> Res<()> {
        let unmasked = !(self.mxcsr >> 7) & 0x3F;
        let flags = fp::reported_flags(flags & 0x3F, self.mxcsr);
        self.mxcsr |= flags;
        if flags & unmasked != 0 {
            if self.cr4 & CR4_OSXMMEXCPT != 0 {
                return fault(XM, None);
            }
            return ud();
        }
        Ok(())
    }

    /// Reads `n` (1, 2, 4, 8 or 16) bytes at `seg:off`; `align`: the linear address must be
    /// a multiple of 16 (#GP(0) otherwise).
    pub(crate) fn vread<B: Bus>(
        &mut self,
        bus: &mut B,
        s: usize,
        off: u32,
        n: u32,
        align: bool,
    ) -> Res<u128> {
        if align && self.segs[s].base.wrapping_add(off) & 15 != 0 {
            return gp(0);
        }
        if n < 4 {
            return Ok(self.rd(bus, s, off, n)? as u128);
        }
        // The whole access must be inside the segment before any part is read.
        self.seg_check(s, off, n, false)?;
        let mut v = 0u128;
        for i in 0..n / 4 {
            let w = self.rd(bus, s, off.wrapping_add(4 * i), 4)?;
            v |= (w as u128) << (32 * i);
        }
        // m64 (and unaligned m128, whose #AC the SDM leaves to the implementation) must be
        // 8-byte aligned under alignment checking; the 4-byte pieces checked only 4.
        if n >= 8 && !align {
            self.align_check(s, off, 8)?;
        }
        Ok(v)
    }

    /// Writes the low `n` (4, 8 or 16) bytes of `v` at `seg:off`, all or nothing.
    pub(crate) fn vwrite<B: Bus>(
        &mut self,
        bus: &mut B,
        s: usize,
        off: u32,
        n: u32,
        v: u128,
        align: bool,
    ) -> Res<()> {
        if align && self.segs[s].base.wrapping_add(off) & 15 != 0 {
            return gp(0);
        }
        self.probe_write(bus, s, off, n)?;
        if n >= 8 && !align {
            self.align_check(s, off, 8)?;
        }
        for i in 0..n / 4 {
            self.wr(bus, s, off.wrapping_add(4 * i), 4, (v >> (32 * i)) as u32)?;
        }
        Ok(())
    }

    /// An XMM source operand of `n` bytes (a register, or memory; 16-byte memory operands
    /// aligned when `align`). Bits above `8 * n` are zero for memory, the register's for
    /// registers.
    pub(crate) fn xsrc<B: Bus>(&mut self, bus: &mut B, o: Opnd, n: u32, align: bool) -> Res<u128> {
        match o {
            Opnd::Reg(r) => Ok(self.xmm[r as usize & 7]),
            Opnd::Mem(s, off) => self.vread(bus, s as usize, off, n, align && n == 16),
        }
    }

    /// An MMX source operand (register or m64).
    pub(crate) fn msrc<B: Bus>(&mut self, bus: &mut B, o: Opnd) -> Res<u64> {
        match o {
            Opnd::Reg(r) => Ok(self.fpu.mmx_get(r as usize)),
            Opnd::Mem(s, off) => Ok(self.vread(bus, s as usize, off, 8, false)? as u64),
        }
    }

    /// 0F AE: FXSAVE, FXRSTOR, LDMXCSR, STMXCSR, CLFLUSH (memory); LFENCE, MFENCE, SFENCE
    /// (register).
    fn grp15<B: Bus>(&mut self, bus: &mut B, mp: Mp, m: u8, o: Opnd) -> Res<()> {
        if mp == Mp::F2 || mp == Mp::F3 {
            return ud();
        }
        let r = (m >> 3) & 7;
        let (s, off) = match o {
            // LFENCE, MFENCE, SFENCE: this CPU retires accesses in order.
            Opnd::Reg(_) if r >= 5 => return Ok(()),
            Opnd::Reg(_) => return ud(),
            Opnd::Mem(s, off) => (s as usize, off),
        };
        match r {
            0 | 1 => {
                if self.cr0 & (CR0_EM | CR0_TS) != 0 {
                    return fault(vec::NM, None);
                }
                if self.segs[s].base.wrapping_add(off) & 15 != 0 {
                    return gp(0);
                }
                if r == 0 {
                    self.fxsave(bus, s, off)
                } else {
                    self.fxrstor(bus, s, off)
                }
            }
            2 => {
                self.simd_need(Need::Sse)?;
                let v = self.rd(bus, s, off, 4)?;
                if v & !MXCSR_MASK != 0 {
                    return gp(0);
                }
                self.mxcsr = v;
                Ok(())
            }
            3 => {
                self.simd_need(Need::Sse)?;
                let v = self.mxcsr;
                self.wr(bus, s, off, 4, v)
            }
            7 => {
                // CLFLUSH: caches are not modelled; the address is still checked.
                let lin = self.seg_check(s, off, 1, false)?;
                let user = self.cpl == 3;
                self.translate(bus, lin, Acc::Read, user)?;
                Ok(())
            }
            _ => ud(),
        }
    }

    /// The 512-byte FXSAVE image of the current state. Without CR4.OSFXSR the MXCSR and XMM
    /// fields are left out (`None` bytes are not written).
    fn fxsave_image(&self) -> [Option<u8>; 512] {
        let mut img = [None; 512];
        let mut put = |at: usize, bytes: &[u8]| {
            for (i, b) in bytes.iter().enumerate() {
                if let Some(slot) = img.get_mut(at + i) {
                    *slot = Some(*b);
                }
            }
        };
        let st = self.fpu.state();
        let top = ((st.sw >> 11) & 7) as usize;
        let mut ftw = 0u8;
        for i in 0..8 {
            if (st.tw >> (2 * i)) & 3 != 3 {
                ftw |= 1 << i;
            }
        }
        put(0, &st.cw.to_le_bytes());
        put(2, &st.sw.to_le_bytes());
        put(4, &[ftw, 0]);
        put(6, &(st.fop & 0x7FF).to_le_bytes());
        put(8, &st.fip.to_le_bytes());
        put(12, &st.fcs.to_le_bytes());
        put(14, &[0, 0]);
        put(16, &st.fdp.to_le_bytes());
        put(20, &st.fds.to_le_bytes());
        put(22, &[0, 0]);
        if self.cr4 & CR4_OSFXSR != 0 {
            put(24, &self.mxcsr.to_le_bytes());
            put(28, &MXCSR_MASK.to_le_bytes());
            for (i, x) in self.xmm.iter().enumerate() {
                put(160 + 16 * i, &x.to_le_bytes());
            }
        }
        for i in 0..8 {
            put(32 + 16 * i, &st.regs[(top + i) & 7]);
            put(42 + 16 * i, &[0; 6]);
        }
        img
    }

    fn fxsave<B: Bus>(&mut self, bus: &mut B, s: usize, off: u32) -> Res<()> {
        let img = self.fxsave_image();
        self.probe_write(bus, s, off, 512)?;
        for (i, b) in img.iter().enumerate() {
            if let Some(b) = b {
                self.wr(bus, s, off.wrapping_add(i as u32), 1, *b as u32)?;
            }
        }
        Ok(())
    }

    fn fxrstor<B: Bus>(&mut self, bus: &mut B, s: usize, off: u32) -> Res<()> {
        self.seg_check(s, off, 512, false)?;
        let n = if self.cr4 & CR4_OSFXSR != 0 { 288 } else { 160 };
        let mut img = [0u8; 288];
        for i in (0..n).step_by(4) {
            let w = self.rd(bus, s, off.wrapping_add(i as u32), 4)?;
            img[i..i + 4].copy_from_slice(&w.to_le_bytes());
        }
        let u16_at = |i: usize| u16::from_le_bytes([img[i], img[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([img[i], img[i + 1], img[i + 2], img[i + 3]]);
        let mxcsr = u32_at(24);
        if n == 288 && mxcsr & !MXCSR_MASK != 0 {
            return gp(0);
        }
        let sw = u16_at(2);
        let top = ((sw >> 11) & 7) as usize;
        let ftw = img[4];
        let mut st = self.fpu.state();
        st.cw = u16_at(0);
        st.sw = sw;
        st.fop = u16_at(6) & 0x7FF;
        st.fip = u32_at(8);
        st.fcs = u16_at(12);
        st.fdp = u32_at(16);
        st.fds = u16_at(20);
        st.tw = 0;
        for i in 0..8 {
            if ftw & (1 << i) == 0 {
                st.tw |= 3 << (2 * i);
            }
            let at = 32 + 16 * i;
            let mut r = [0u8; 10];
            r.copy_from_slice(&img[at..at + 10]);
            st.regs[(top + i) & 7] = r;
        }
        // Every value above is one the FPU can hold (FOP masked to 11 bits).
        self.fpu
            .restore(&st)
            .map_err(|_| crate::Fault::new(vec::GP, Some(0)))?;
        if n == 288 {
            self.mxcsr = mxcsr;
            for (i, x) in self.xmm.iter_mut().enumerate() {
                let at = 160 + 16 * i;
                let mut b = [0u8; 16];
                b.copy_from_slice(&img[at..at + 16]);
                *x = u128::from_le_bytes(b);
            }
        }
        Ok(())
    }
}

/// The memory operand, or #UD for a register.
pub(crate) fn mem_of(o: Opnd) -> Res<(usize, u32)> {
    match o {
        Opnd::Mem(s, off) => Ok((s as usize, off)),
        Opnd::Reg(_) => ud(),
    }
}

/// The segment and offset of the implicit DS:(E)DI operand of MASKMOVQ/MASKMOVDQU.
pub(crate) fn maskmov_target(cpu: &Cpu, p: &Pfx) -> (usize, u32) {
    let s = if p.seg == NO_SEG {
        sreg::DS
    } else {
        p.seg as usize
    };
    let di = cpu.regs[7];
    (s, if p.a32 { di } else { di & 0xFFFF })
}
