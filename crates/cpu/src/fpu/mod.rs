//! The x87 FPU of a P6-class CPU, in software with 80-bit extended precision.
//!
//! The CPU decodes an escape opcode (`D8`..`DF`), its ModRM byte and (for memory forms) the
//! effective offset, and calls [`Fpu::execute`]. Memory is reached through [`FpuMemory`], so
//! segmentation, paging and faults stay with the CPU. No host floating point is used anywhere:
//! [`f80`] holds the exactly rounded arithmetic core, `trans` the transcendental functions.
//!
//! Behaviour follows the P6: masked responses (real indefinite, integer and BCD indefinites,
//! bias-adjusted results for unmasked overflow/underflow), stack overflow/underflow as IE+SF
//! with C1, pseudo-denormals accepted as denormals, unnormals/pseudo-NaNs/pseudo-infinities
//! rejected as invalid, the undocumented forms (`D9 D8+i` FSTPNCE: FSTP without the
//! stack-underflow check; `DC D0+i` FCOM2,
//! `DC D8+i` FCOMP3, `DD C8+i` FXCH4, `DE D0+i` FCOMP5, `DF C0+i` FFREEP, `DF C8+i` FXCH7,
//! `DF D0+i`/`DF D8+i` FSTP8/9) and FENI/FDISI/FSETPM as no-ops. FISTTP (SSE3) is #UD.
//!
//! Transcendental accuracy: F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN, FSIN, FCOS and FSINCOS are
//! evaluated in a 128-bit-significand software format (internal relative error about
//! 2^-120, with the direction of neglected series tails kept for the final rounding) and
//! rounded once under RC at 64 bits (PC does not apply, as on the hardware). They agree with a
//! host x87 to within 2 ulp on random operands (usually exactly). The trigonometric argument
//! is reduced exactly modulo the x87's own 66-bit π/2, so large arguments carry the same
//! error as on real hardware; |x| ≥ 2^63 sets C2 and leaves the operand unchanged. Where the
//! hardware departs from the architectural description outside the documented domains
//! (F2XM1 with |x| > 1 and FYL2XP1 with x ≤ −1 return x, reporting PE) the host is followed.

pub mod f80;
mod trans;

use core::cmp::Ordering;
use f80::{Class, Env, C1, DE, F80, IE, OE, SF, UE, ZE};
use serde::{Deserialize, Serialize};

/// Guest memory as seen by an FPU instruction: offsets are relative to the instruction's
/// effective address segment, already computed by the CPU.
pub trait FpuMemory {
    /// The fault the CPU raises on a failed access.
    type Fault;
    /// Reads `buf.len()` bytes starting at `offset`.
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Self::Fault>;
    /// Writes `data` starting at `offset`.
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Self::Fault>;
}

/// What the CPU tells the FPU about the instruction being executed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FpuContext {
    /// 32-bit operand size (selects the FSTENV/FSAVE layout).
    pub op32: bool,
    /// Protected mode (selects the FSTENV/FSAVE layout).
    pub protected: bool,
    /// Offset of the instruction (including prefixes), recorded as FIP.
    pub ip: u32,
    /// Code segment selector, recorded as FCS.
    pub cs: u16,
    /// Offset of the memory operand, recorded as FDP.
    pub dp: u32,
    /// Segment selector of the memory operand, recorded as FDS.
    pub ds: u16,
    /// The opcode for FOP; the FPU records `((op & 7) << 8) | modrm` itself, so this field is
    /// informational.
    pub opcode: u16,
    /// EFLAGS, for FCMOVcc.
    pub eflags: u32,
}

/// What the CPU must do after a successful FPU instruction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FpuOutcome {
    /// Nothing more.
    Done,
    /// FNSTSW AX: store this value in AX.
    StoreAx(u16),
    /// FCOMI/FCOMIP/FUCOMI/FUCOMIP: set ZF, PF and CF to these values (and clear OF, SF, AF).
    SetFlags {
        /// Zero flag.
        zf: bool,
        /// Parity flag.
        pf: bool,
        /// Carry flag.
        cf: bool,
    },
}

/// Why an FPU instruction did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FpuError<F> {
    /// A memory access faulted; the FPU state is unchanged.
    #[error("memory fault during an FPU access")]
    Fault(F),
    /// A waiting instruction found an unmasked exception pending: the CPU raises #MF (or
    /// asserts FERR#).
    #[error("unmasked x87 exception pending")]
    PendingException,
    /// The encoding is undefined: the CPU raises #UD.
    #[error("undefined x87 encoding")]
    Undefined,
}

/// The saved state of the FPU.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FpuState {
    /// Control word.
    pub cw: u16,
    /// Status word, including TOP.
    pub sw: u16,
    /// Tag word (two bits per physical register; only "empty" (11) is significant on restore).
    pub tw: u16,
    /// Physical registers R0..R7 in the 10-byte memory format.
    pub regs: [[u8; 10]; 8],
    /// Last instruction offset.
    pub fip: u32,
    /// Last instruction selector.
    pub fcs: u16,
    /// Last data offset.
    pub fdp: u32,
    /// Last data selector.
    pub fds: u16,
    /// Last opcode (11 bits).
    pub fop: u16,
}

/// Status word bits.
const SW_ES: u16 = 0x0080;
const SW_C0: u16 = 0x0100;
const SW_C1: u16 = 0x0200;
const SW_C2: u16 = 0x0400;
const SW_C3: u16 = 0x4000;
const SW_B: u16 = 0x8000;
const SW_CC: u16 = SW_C0 | SW_C1 | SW_C2 | SW_C3;
/// Exception flag bits of the status word, and the mask bits of the control word.
const EXC: u16 = 0x3F;
/// Control word after FNINIT.
const CW_INIT: u16 = 0x037F;

/// EFLAGS bits read by FCMOVcc.
const CF: u32 = 1;
const PF: u32 = 1 << 2;
const ZF: u32 = 1 << 6;

/// The x87 FPU.
#[derive(Clone, Debug)]
pub struct Fpu {
    regs: [F80; 8],
    top: u8,
    cw: u16,
    /// Status word without TOP.
    sw: u16,
    /// Bit i set: physical register i is empty.
    empty: u8,
    fip: u32,
    fcs: u16,
    fdp: u32,
    fds: u16,
    fop: u16,
}

/// How an instruction relates to pending exceptions and the last-instruction pointers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Waits for pending exceptions and records FIP/FOP (and FDP for memory forms).
    Arith,
    /// Waits, but is a control instruction (does not touch FIP/FDP/FOP).
    Control,
    /// A no-wait control instruction.
    NoWait,
}

/// Memory operand formats of the arithmetic groups.
#[derive(Clone, Copy)]
enum MemOp {
    F32,
    F64,
    I16,
    I32,
}

impl Default for Fpu {
    fn default() -> Fpu {
        Fpu::new()
    }
}

impl Fpu {
    /// An FPU in its FNINIT state.
    pub fn new() -> Fpu {
        Fpu {
            regs: [F80::ZERO; 8],
            top: 0,
            cw: CW_INIT,
            sw: 0,
            empty: 0xFF,
            fip: 0,
            fcs: 0,
            fdp: 0,
            fds: 0,
            fop: 0,
        }
    }

    /// FNINIT: control word 037F, status 0, all registers empty, pointers cleared. Register
    /// contents are kept (use [`Fpu::new`] for the power-on state).
    pub fn reset(&mut self) {
        self.cw = CW_INIT;
        self.sw = 0;
        self.top = 0;
        self.empty = 0xFF;
        self.fip = 0;
        self.fcs = 0;
        self.fdp = 0;
        self.fds = 0;
        self.fop = 0;
    }

    /// True when an unmasked exception is pending: WAIT/FWAIT must raise #MF.
    pub fn wait_check(&self) -> bool {
        self.sw & SW_ES != 0
    }

    /// The status word, including TOP.
    pub fn status_word(&self) -> u16 {
        (self.sw & !0x3800) | (u16::from(self.top & 7) << 11)
    }

    /// The control word.
    pub fn control_word(&self) -> u16 {
        self.cw
    }

    /// The full tag word (00 valid, 01 zero, 10 special, 11 empty), by physical register.
    pub fn tag_word(&self) -> u16 {
        (0..8).fold(0u16, |tw, i| tw | (self.tag_of(i) << (2 * i)))
    }

    /// ST(i) (i taken modulo 8) in the 10-byte memory format.
    pub fn st(&self, i: usize) -> [u8; 10] {
        self.regs[self.phys(i)].to_bytes()
    }

    /// Saves the complete state.
    pub fn state(&self) -> FpuState {
        FpuState {
            cw: self.cw,
            sw: self.status_word(),
            tw: self.tag_word(),
            regs: self.regs.map(F80::to_bytes),
            fip: self.fip,
            fcs: self.fcs,
            fdp: self.fdp,
            fds: self.fds,
            fop: self.fop,
        }
    }

    /// Restores a saved state, refusing values no FPU can hold.
    pub fn restore(&mut self, s: &FpuState) -> Result<(), String> {
        if s.fop > 0x7FF {
            return Err(format!("FPU opcode {:#x} wider than 11 bits", s.fop));
        }
        let mut empty = 0u8;
        for i in 0..8 {
            if (s.tw >> (2 * i)) & 3 == 3 {
                empty |= 1 << i;
            }
        }
        self.regs = s.regs.map(F80::from_bytes);
        self.top = ((s.sw >> 11) & 7) as u8;
        self.cw = s.cw;
        self.sw = s.sw & !0x3800;
        self.empty = empty;
        self.fip = s.fip;
        self.fcs = s.fcs;
        self.fdp = s.fdp;
        self.fds = s.fds;
        self.fop = s.fop;
        self.update_es();
        Ok(())
    }

    // ----- MMX aliasing -----

    /// MMn: the significand of physical register `n` (taken modulo 8).
    pub(crate) fn mmx_get(&self, n: usize) -> u64 {
        self.regs[n & 7].m
    }

    /// Writes MMn: significand `v`, sign and exponent all ones.
    pub(crate) fn mmx_set(&mut self, n: usize, v: u64) {
        self.regs[n & 7] = F80 { se: 0xFFFF, m: v };
    }

    /// The x87 side of every MMX instruction except EMMS: TOP = 0, every register valid.
    pub(crate) fn mmx_enter(&mut self) {
        self.top = 0;
        self.empty = 0;
    }

    /// EMMS: every register empty.
    pub(crate) fn emms(&mut self) {
        self.empty = 0xFF;
    }

    // ----- register stack -----

    fn phys(&self, i: usize) -> usize {
        usize::from(self.top).wrapping_add(i) & 7
    }

    fn tag_of(&self, phys: usize) -> u16 {
        if self.empty & (1 << phys) != 0 {
            return 3;
        }
        match self.regs[phys].class() {
            Class::Normal => 0,
            Class::Zero => 1,
            _ => 2,
        }
    }

    fn is_empty(&self, i: usize) -> bool {
        self.empty & (1 << self.phys(i)) != 0
    }

    /// ST(i), or `None` when empty.
    fn get(&self, i: usize) -> Option<F80> {
        if self.is_empty(i) {
            None
        } else {
            Some(self.regs[self.phys(i)])
        }
    }

    fn set(&mut self, i: usize, v: F80) {
        let p = self.phys(i);
        self.regs[p] = v;
        self.empty &= !(1 << p);
    }

    fn push(&mut self, v: F80) {
        self.top = self.top.wrapping_sub(1) & 7;
        self.set(0, v);
    }

    fn pop(&mut self) {
        let p = self.phys(0);
        self.empty |= 1 << p;
        self.top = (self.top + 1) & 7;
    }

    // ----- status -----

    fn env(&self) -> Env {
        Env::from_cw(self.cw)
    }

    fn unmasked(&self, flags: u16) -> bool {
        flags & EXC & !self.cw != 0
    }

    fn update_es(&mut self) {
        if self.sw & EXC & !self.cw != 0 {
            self.sw |= SW_ES | SW_B;
        } else {
            self.sw &= !(SW_ES | SW_B);
        }
    }

    /// ORs exception bits (and SF) into the status word.
    fn raise(&mut self, flags: u16) {
        self.sw |= flags & (EXC | SF);
        self.update_es();
    }

    fn set_c1(&mut self, on: bool) {
        if on {
            self.sw |= SW_C1;
        } else {
            self.sw &= !SW_C1;
        }
    }

    fn set_cc(&mut self, c3: bool, c2: bool, c1: bool, c0: bool) {
        self.sw &= !SW_CC;
        if c3 {
            self.sw |= SW_C3;
        }
        if c2 {
            self.sw |= SW_C2;
        }
        if c1 {
            self.sw |= SW_C1;
        }
        if c0 {
            self.sw |= SW_C0;
        }
    }

    /// Reports the masked/unmasked result of an operation whose result goes to a register.
    /// Returns true when the result is to be committed.
    fn finish(&mut self, flags: u16) -> bool {
        let stop = self.unmasked(flags & (IE | DE | ZE));
        if stop {
            self.raise(flags & (IE | DE | ZE | SF));
            self.set_c1(false);
        } else {
            self.raise(flags);
            self.set_c1(flags & C1 != 0);
        }
        !stop
    }

    /// Stack underflow: IE+SF with C1 = 0; true when masked (the caller stores the indefinite).
    fn underflow(&mut self) -> bool {
        self.raise(IE | SF);
        self.set_c1(false);
        self.cw & IE != 0
    }

    /// Stack overflow: IE+SF with C1 = 1; true when masked.
    fn overflow(&mut self) -> bool {
        self.raise(IE | SF);
        self.set_c1(true);
        self.cw & IE != 0
    }

    /// Pushes `v` (with `flags` from producing it), handling stack overflow.
    fn push_checked(&mut self, v: F80, flags: u16) {
        if !self.is_empty(7) {
            if self.overflow() {
                self.push(F80::INDEFINITE);
            }
            return;
        }
        if self.finish(flags) {
            self.push(v);
        }
    }

    /// FLD m32/m64: an unmasked denormal-operand exception does not stop the load, an
    /// unmasked invalid operation (SNaN) does.
    fn push_load(&mut self, v: F80, flags: u16) {
        if !self.is_empty(7) {
            if self.overflow() {
                self.push(F80::INDEFINITE);
            }
            return;
        }
        self.raise(flags);
        self.set_c1(false);
        if !self.unmasked(flags & IE) {
            self.push(v);
        }
    }

    // ----- execution -----

    /// Executes one x87 instruction: `op` is the escape opcode (`D8`..`DF`), `modrm` its ModRM
    /// byte, `ea` the effective offset for memory forms.
    pub fn execute<M: FpuMemory>(
        &mut self,
        op: u8,
        modrm: u8,
        ea: Option<u32>,
        ctx: &FpuContext,
        mem: &mut M,
    ) -> Result<FpuOutcome, FpuError<M::Fault>> {
        self.execute_checked(op, modrm, ea, ctx, mem, true)
    }

    /// [`Fpu::execute`] with IGNNE# asserted: a waiting instruction proceeds even when an
    /// unmasked exception is pending (the exception stays pending).
    pub fn execute_ignne<M: FpuMemory>(
        &mut self,
        op: u8,
        modrm: u8,
        ea: Option<u32>,
        ctx: &FpuContext,
        mem: &mut M,
    ) -> Result<FpuOutcome, FpuError<M::Fault>> {
        self.execute_checked(op, modrm, ea, ctx, mem, false)
    }

    fn execute_checked<M: FpuMemory>(
        &mut self,
        op: u8,
        modrm: u8,
        ea: Option<u32>,
        ctx: &FpuContext,
        mem: &mut M,
        check_pending: bool,
    ) -> Result<FpuOutcome, FpuError<M::Fault>> {
        let kind = classify(op, modrm).ok_or(FpuError::Undefined)?;
        let is_mem = modrm < 0xC0;
        let addr = match (is_mem, ea) {
            (true, Some(a)) => a,
            (true, None) => return Err(FpuError::Undefined),
            _ => 0,
        };
        if check_pending && kind != Kind::NoWait && self.wait_check() {
            return Err(FpuError::PendingException);
        }
        let out = if is_mem {
            self.exec_mem(op, modrm, addr, ctx, mem)?
        } else {
            self.exec_reg(op, modrm, ctx)
        };
        if kind == Kind::Arith {
            self.fip = ctx.ip;
            self.fcs = ctx.cs;
            self.fop = (u16::from(op & 7) << 8) | u16::from(modrm);
            if is_mem {
                self.fdp = ctx.dp;
                self.fds = ctx.ds;
            }
        }
        Ok(out)
    }

    fn exec_mem<M: FpuMemory>(
        &mut self,
        op: u8,
        modrm: u8,
        a: u32,
        ctx: &FpuContext,
        mem: &mut M,
    ) -> Result<FpuOutcome, FpuError<M::Fault>> {
        let reg = (modrm >> 3) & 7;
        match (op, reg) {
            (0xD8, r) => self.arith_mem(r, MemOp::F32, a, mem)?,
            (0xDC, r) => self.arith_mem(r, MemOp::F64, a, mem)?,
            (0xDA, r) => self.arith_mem(r, MemOp::I32, a, mem)?,
            (0xDE, r) => self.arith_mem(r, MemOp::I16, a, mem)?,
            (0xD9, 0) => {
                let b = read::<4, M>(mem, a)?;
                let (v, f) = f80::from_f32(u32::from_le_bytes(b));
                self.push_load(v, f);
            }
            (0xDD, 0) => {
                let b = read::<8, M>(mem, a)?;
                let (v, f) = f80::from_f64(u64::from_le_bytes(b));
                self.push_load(v, f);
            }
            (0xDB, 5) => {
                let b = read::<10, M>(mem, a)?;
                self.push_checked(F80::from_bytes(b), 0);
            }
            (0xDF, 0) => {
                let b = read::<2, M>(mem, a)?;
                self.push_checked(f80::from_i64(i64::from(i16::from_le_bytes(b))), 0);
            }
            (0xDB, 0) => {
                let b = read::<4, M>(mem, a)?;
                self.push_checked(f80::from_i64(i64::from(i32::from_le_bytes(b))), 0);
            }
            (0xDF, 5) => {
                let b = read::<8, M>(mem, a)?;
                self.push_checked(f80::from_i64(i64::from_le_bytes(b)), 0);
            }
            (0xDF, 4) => {
                let b = read::<10, M>(mem, a)?;
                self.push_checked(f80::from_bcd(b), 0);
            }
            (0xD9, 2 | 3) | (0xDD, 2 | 3) | (0xDB, 7) => self.store_float(op, reg, a, mem)?,
            (0xDF, 2 | 3 | 7) | (0xDB, 2 | 3) | (0xDF, 6) => self.store_int(op, reg, a, mem)?,
            (0xD9, 4) => {
                let env = self.read_env(ctx, a, mem)?;
                self.load_env(&env);
            }
            (0xD9, 5) => {
                let b = read::<2, M>(mem, a)?;
                self.cw = u16::from_le_bytes(b) & 0x1F7F | 0x0040;
                self.update_es();
            }
            (0xD9, 6) => {
                let env = self.env_image(ctx);
                let n = env_len(ctx);
                mem.write(a, &env[..n]).map_err(FpuError::Fault)?;
                self.cw |= EXC;
                self.update_es();
            }
            (0xD9, 7) => {
                mem.write(a, &self.cw.to_le_bytes())
                    .map_err(FpuError::Fault)?;
            }
            (0xDD, 4) => {
                let env = self.read_env(ctx, a, mem)?;
                let n = env_len(ctx);
                let mut regs = [[0u8; 10]; 8];
                for (i, r) in regs.iter_mut().enumerate() {
                    *r = read::<10, M>(mem, a.wrapping_add((n + 10 * i) as u32))?;
                }
                self.load_env(&env);
                for (i, r) in regs.iter().enumerate() {
                    let p = self.phys(i);
                    self.regs[p] = F80::from_bytes(*r);
                }
            }
            (0xDD, 6) => {
                let env = self.env_image(ctx);
                let n = env_len(ctx);
                let mut image = [0u8; 108];
                image[..n].copy_from_slice(&env[..n]);
                for i in 0..8 {
                    let o = n + 10 * i;
                    image[o..o + 10].copy_from_slice(&self.st(i));
                }
                mem.write(a, &image[..n + 80]).map_err(FpuError::Fault)?;
                self.reset();
            }
            (0xDD, 7) => {
                mem.write(a, &self.status_word().to_le_bytes())
                    .map_err(FpuError::Fault)?;
            }
            _ => return Err(FpuError::Undefined),
        }
        Ok(FpuOutcome::Done)
    }

    fn arith_mem<M: FpuMemory>(
        &mut self,
        kind: u8,
        fmt: MemOp,
        a: u32,
        mem: &mut M,
    ) -> Result<(), FpuError<M::Fault>> {
        let (y, conv_de) = match fmt {
            MemOp::F32 => raw_f32(u32::from_le_bytes(read::<4, M>(mem, a)?)),
            MemOp::F64 => raw_f64(u64::from_le_bytes(read::<8, M>(mem, a)?)),
            MemOp::I16 => (
                f80::from_i64(i64::from(i16::from_le_bytes(read::<2, M>(mem, a)?))),
                0,
            ),
            MemOp::I32 => (
                f80::from_i64(i64::from(i32::from_le_bytes(read::<4, M>(mem, a)?))),
                0,
            ),
        };
        match kind {
            2 | 3 => self.compare_into_cc(self.get(0), Some(y), conv_de, false, kind - 2),
            _ => self.arith(kind, 0, self.get(0), Some(y), conv_de, false),
        }
        Ok(())
    }

    /// `dst := x OP y` for kinds 0 add, 1 mul, 4 sub, 5 subr, 6 div, 7 divr.
    fn arith(
        &mut self,
        kind: u8,
        dst: usize,
        x: Option<F80>,
        y: Option<F80>,
        extra: u16,
        pop: bool,
    ) {
        let (Some(x), Some(y)) = (x, y) else {
            if self.underflow() {
                self.set(dst, F80::INDEFINITE);
                if pop {
                    self.pop();
                }
            }
            return;
        };
        let env = self.env();
        let (r, mut f) = match kind {
            0 => f80::add(x, y, &env),
            1 => f80::mul(x, y, &env),
            4 => f80::sub(x, y, &env),
            5 => f80::sub(y, x, &env),
            6 => f80::div(x, y, &env),
            _ => f80::div(y, x, &env),
        };
        if !nan_or_unsupported(x) && !nan_or_unsupported(y) {
            f |= extra;
        }
        if self.finish(f) {
            self.set(dst, r);
            if pop {
                self.pop();
            }
        }
    }

    /// FCOM-family comparison of `x` with `y` setting C3/C2/C0.
    fn compare_into_cc(
        &mut self,
        x: Option<F80>,
        y: Option<F80>,
        extra: u16,
        quiet: bool,
        pops: u8,
    ) {
        let (Some(x), Some(y)) = (x, y) else {
            let masked = self.underflow();
            self.set_cc(true, true, false, true);
            if masked {
                for _ in 0..pops {
                    self.pop();
                }
            }
            return;
        };
        let (ord, mut f) = f80::compare(x, y, quiet);
        if !nan_or_unsupported(x) && !nan_or_unsupported(y) {
            f |= extra;
        }
        // The condition codes are written even when the exception is unmasked; only the pops
        // are suppressed.
        self.raise(f);
        let (c3, c2, c0) = cc_of(ord);
        self.set_cc(c3, c2, false, c0);
        if !self.unmasked(f) {
            for _ in 0..pops {
                self.pop();
            }
        }
    }

    /// FCOMI-family comparison of ST(0) with ST(i).
    fn compare_into_flags(&mut self, i: usize, quiet: bool, pop: bool) -> FpuOutcome {
        let unordered = FpuOutcome::SetFlags {
            zf: true,
            pf: true,
            cf: true,
        };
        let (Some(x), Some(y)) = (self.get(0), self.get(i)) else {
            if self.underflow() && pop {
                self.pop();
            }
            return unordered;
        };
        // FCOMI and friends leave C1 alone.
        let (ord, f) = f80::compare(x, y, quiet);
        self.raise(f);
        if pop && !self.unmasked(f) {
            self.pop();
        }
        let (zf, pf, cf) = cc_of(ord);
        FpuOutcome::SetFlags { zf, pf, cf }
    }

    fn store_float<M: FpuMemory>(
        &mut self,
        op: u8,
        reg: u8,
        a: u32,
        mem: &mut M,
    ) -> Result<(), FpuError<M::Fault>> {
        let pop = reg == 3 || op == 0xDB;
        let env = self.env();
        let src = self.get(0);
        let (bytes, len, flags): ([u8; 10], usize, u16) = match (op, src) {
            (0xDB, Some(v)) => (v.to_bytes(), 10, 0),
            (0xDB, None) => (F80::INDEFINITE.to_bytes(), 10, IE | SF),
            (0xD9, v) => {
                let n = match v {
                    Some(v) => f80::to_f32(v, &env),
                    None => f80::Narrow {
                        bits: 0xFFC0_0000,
                        flags: IE | SF,
                    },
                };
                (pad(&n.bits.to_le_bytes()), 4, n.flags)
            }
            (_, v) => {
                let n = match v {
                    Some(v) => f80::to_f64(v, &env),
                    None => f80::Narrow {
                        bits: 0xFFF8_0000_0000_0000,
                        flags: IE | SF,
                    },
                };
                (pad(&n.bits.to_le_bytes()), 8, n.flags)
            }
        };
        self.store_result(&bytes[..len], flags, pop, a, mem)
    }

    /// Writes a memory result unless an unmasked exception forbids it, then reports flags and
    /// pops.
    fn store_result<M: FpuMemory>(
        &mut self,
        bytes: &[u8],
        flags: u16,
        pop: bool,
        a: u32,
        mem: &mut M,
    ) -> Result<(), FpuError<M::Fault>> {
        let stop = self.unmasked(flags & (IE | DE | OE | UE));
        if !stop {
            mem.write(a, bytes).map_err(FpuError::Fault)?;
        }
        if flags & SF != 0 {
            self.raise(flags);
            self.set_c1(false);
        } else {
            self.raise(flags);
            self.set_c1(!stop && flags & C1 != 0);
        }
        if !stop && pop {
            self.pop();
        }
        Ok(())
    }

    fn store_int<M: FpuMemory>(
        &mut self,
        op: u8,
        reg: u8,
        a: u32,
        mem: &mut M,
    ) -> Result<(), FpuError<M::Fault>> {
        let env = self.env();
        let src = self.get(0);
        let pop = reg != 2;
        if (op, reg) == (0xDF, 6) {
            let (b, f) = match src {
                Some(v) => f80::to_bcd(v, &env),
                None => (f80::BCD_INDEFINITE, IE | SF),
            };
            return self.store_result(&b, f, pop, a, mem);
        }
        let bits = match (op, reg) {
            (0xDF, 7) => 64,
            (0xDF, _) => 16,
            _ => 32,
        };
        let (v, f) = match src {
            Some(v) => f80::to_int(v, bits, &env),
            None => (i64::MIN >> (64 - bits), IE | SF),
        };
        let b = v.to_le_bytes();
        self.store_result(&b[..(bits / 8) as usize], f, pop, a, mem)
    }

    fn exec_reg(&mut self, op: u8, modrm: u8, ctx: &FpuContext) -> FpuOutcome {
        let reg = (modrm >> 3) & 7;
        let i = usize::from(modrm & 7);
        match (op, reg) {
            (0xD8, 2 | 3) | (0xDC, 2 | 3) => {
                self.compare_into_cc(self.get(0), self.get(i), 0, false, reg - 2);
            }
            (0xD8, r) => self.arith(r, 0, self.get(0), self.get(i), 0, false),
            (0xDC, r) | (0xDE, r) if r != 2 && r != 3 => {
                let k = if r >= 4 { r ^ 1 } else { r };
                self.arith(k, i, self.get(i), self.get(0), 0, op == 0xDE);
            }
            (0xDE, 2) => self.compare_into_cc(self.get(0), self.get(i), 0, false, 1),
            // FCOMPP (DE D9), FUCOMPP (DA E9).
            (0xDE, 3) => self.compare_into_cc(self.get(0), self.get(1), 0, false, 2),
            (0xDA, 5) => self.compare_into_cc(self.get(0), self.get(1), 0, true, 2),
            (0xDD, 4 | 5) => self.compare_into_cc(self.get(0), self.get(i), 0, true, reg - 4),
            (0xDA, c) | (0xDB, c) if c < 4 => self.fcmov(op, c, i, ctx.eflags),
            (0xDB, 5) => return self.compare_into_flags(i, true, false),
            (0xDB, 6) => return self.compare_into_flags(i, false, false),
            (0xDF, 5) => return self.compare_into_flags(i, true, true),
            (0xDF, 6) => return self.compare_into_flags(i, false, true),
            (0xDB, 4) => match modrm {
                0xE2 => {
                    self.sw &= !(EXC | SF | SW_ES | SW_B);
                }
                0xE3 => self.reset(),
                _ => {} // FENI, FDISI, FSETPM: no-ops on a P6.
            },
            (0xDF, 4) => return FpuOutcome::StoreAx(self.status_word()),
            (0xD9, 0) => match self.get(i) {
                Some(v) => self.push_checked(v, 0),
                None => {
                    // An empty source is an underflow even when the stack is also full.
                    if self.underflow() {
                        self.push(F80::INDEFINITE);
                    }
                }
            },
            (0xD9, 1) | (0xDD, 1) | (0xDF, 1) => self.fxch(i),
            (0xD9, 2) => {} // FNOP
            (0xD9, 3) => {
                // FSTPNCE (the undocumented D9 D8+i): ST(i) := ST(0) and pop, without the
                // stack-underflow check: an empty ST(0) is simply popped.
                if let Some(v) = self.get(0) {
                    self.set(i, v);
                }
                self.set_c1(false);
                self.pop();
            }
            (0xDD, 3) | (0xDF, 2 | 3) => self.fst_reg(i, true),
            (0xDD, 2) => self.fst_reg(i, false),
            (0xDD, 0) => {
                let p = self.phys(i);
                self.empty |= 1 << p;
                self.set_c1(false);
            }
            (0xDF, 0) => {
                let p = self.phys(i);
                self.empty |= 1 << p;
                self.set_c1(false);
                self.pop();
            }
            (0xD9, 4) => self.group_d9_e0(modrm),
            (0xD9, 5) => self.load_const(modrm),
            (0xD9, 6 | 7) => self.group_d9_f0(modrm),
            _ => {}
        }
        FpuOutcome::Done
    }

    fn fcmov(&mut self, op: u8, c: u8, i: usize, eflags: u32) {
        let base = match c {
            0 => eflags & CF != 0,
            1 => eflags & ZF != 0,
            2 => eflags & (CF | ZF) != 0,
            _ => eflags & PF != 0,
        };
        let cond = if op == 0xDA { base } else { !base };
        match (self.get(0), self.get(i)) {
            (Some(_), Some(v)) => {
                // C1 is left alone.
                if cond {
                    self.set(0, v);
                }
            }
            _ => {
                if self.underflow() {
                    self.set(0, F80::INDEFINITE);
                }
            }
        }
    }

    fn fxch(&mut self, i: usize) {
        let (a, b) = (self.get(0), self.get(i));
        if a.is_none() || b.is_none() {
            if !self.underflow() {
                return;
            }
        } else {
            self.set_c1(false);
        }
        let a = a.unwrap_or(F80::INDEFINITE);
        let b = b.unwrap_or(F80::INDEFINITE);
        self.set(0, b);
        self.set(i, a);
    }

    fn fst_reg(&mut self, i: usize, pop: bool) {
        match self.get(0) {
            Some(v) => {
                self.set_c1(false);
                self.set(i, v);
                if pop {
                    self.pop();
                }
            }
            None => {
                if self.underflow() {
                    self.set(i, F80::INDEFINITE);
                    if pop {
                        self.pop();
                    }
                }
            }
        }
    }

    /// `D9 E0..E7`: FCHS, FABS, FTST, FXAM.
    fn group_d9_e0(&mut self, modrm: u8) {
        match modrm {
            0xE0 | 0xE1 => match self.get(0) {
                Some(v) => {
                    self.set_c1(false);
                    self.set(0, if modrm == 0xE0 { v.negate() } else { v.abs() });
                }
                None => {
                    if self.underflow() {
                        self.set(0, F80::INDEFINITE);
                    }
                }
            },
            0xE4 => self.compare_into_cc(self.get(0), Some(F80::ZERO), 0, false, 0),
            0xE5 => {
                let p = self.phys(0);
                let v = self.regs[p];
                let (c3, c2, c0) = if self.is_empty(0) {
                    (true, false, true)
                } else {
                    match v.class() {
                        Class::Unsupported => (false, false, false),
                        Class::QNaN | Class::SNaN => (false, false, true),
                        Class::Normal => (false, true, false),
                        Class::Infinity => (false, true, true),
                        Class::Zero => (true, false, false),
                        Class::Denormal => (true, true, false),
                    }
                };
                self.set_cc(c3, c2, v.sign(), c0);
            }
            _ => {}
        }
    }

    /// `D9 E8..EE`: FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, FLDZ.
    fn load_const(&mut self, modrm: u8) {
        let v = trans::constant(modrm & 7, self.env().rc);
        self.push_checked(v, 0);
    }

    /// `D9 F0..FF`.
    fn group_d9_f0(&mut self, modrm: u8) {
        let env = self.env();
        match modrm {
            0xF6 => {
                self.top = self.top.wrapping_sub(1) & 7;
                self.set_c1(false);
            }
            0xF7 => {
                self.top = (self.top + 1) & 7;
                self.set_c1(false);
            }
            // One operand, result in ST(0).
            0xF0 | 0xFA | 0xFC => {
                let Some(x) = self.get(0) else {
                    if self.underflow() {
                        self.set(0, F80::INDEFINITE);
                    }
                    return;
                };
                let (r, f) = match modrm {
                    0xF0 => trans::f2xm1(x, &env),
                    0xFA => f80::sqrt(x, &env),
                    _ => f80::round_int(x, &env),
                };
                if self.finish(f) {
                    self.set(0, r);
                }
            }
            // FSIN, FCOS: C2 set for out-of-range operands.
            0xFE | 0xFF => {
                let Some(x) = self.get(0) else {
                    if self.underflow() {
                        self.set(0, F80::INDEFINITE);
                    }
                    return;
                };
                match trans::sin_cos(x, &env) {
                    None => {
                        self.sw |= SW_C2;
                        self.set_c1(false);
                    }
                    Some((s, c, f)) => {
                        self.sw &= !SW_C2;
                        let (r, f) = if modrm == 0xFE { (s, f.0) } else { (c, f.1) };
                        if self.finish(f) {
                            self.set(0, r);
                        }
                    }
                }
            }
            // FPTAN, FSINCOS: replace ST(0) and push.
            0xF2 | 0xFB => {
                let Some(x) = self.get(0) else {
                    if self.underflow() {
                        self.set(0, F80::INDEFINITE);
                        self.push(F80::INDEFINITE);
                    }
                    return;
                };
                if !self.is_empty(7) {
                    if self.overflow() {
                        self.set(0, F80::INDEFINITE);
                        self.push(F80::INDEFINITE);
                    }
                    return;
                }
                let res = if modrm == 0xF2 {
                    trans::tan(x, &env).map(|(t, pushed, f)| (t, pushed, f, 0))
                } else {
                    trans::sin_cos(x, &env).map(|(s, c, f)| (s, c, f.0, f.1))
                };
                match res {
                    None => {
                        self.sw |= SW_C2;
                        self.set_c1(false);
                    }
                    Some((r0, r1, f0, f1)) => {
                        self.sw &= !SW_C2;
                        let f = f0 | f1;
                        if self.finish(f) {
                            // The pushed value's rounding decides C1 (as for FSINCOS).
                            self.set_c1((if modrm == 0xF2 { f0 } else { f1 }) & C1 != 0);
                            self.set(0, r0);
                            self.push(r1);
                        }
                    }
                }
            }
            // Two operands: ST(1) := f(ST(0), ST(1)), pop.
            0xF1 | 0xF3 | 0xF9 => {
                let (Some(x), Some(y)) = (self.get(0), self.get(1)) else {
                    if self.underflow() {
                        self.set(1, F80::INDEFINITE);
                        self.pop();
                    }
                    return;
                };
                let (r, f) = match modrm {
                    0xF1 => trans::yl2x(x, y, &env),
                    0xF9 => trans::yl2xp1(x, y, &env),
                    _ => trans::atan2(y, x, &env),
                };
                if self.finish(f) {
                    self.set(1, r);
                    self.pop();
                }
            }
            // FSCALE: ST(0) := scale(ST(0), ST(1)).
            0xFD => {
                let (Some(x), Some(y)) = (self.get(0), self.get(1)) else {
                    if self.underflow() {
                        self.set(0, F80::INDEFINITE);
                    }
                    return;
                };
                let (r, f) = f80::scale(x, y, &env);
                if self.finish(f) {
                    self.set(0, r);
                }
            }
            // FXTRACT: ST(0) := exponent, push significand.
            0xF4 => {
                let Some(x) = self.get(0) else {
                    if self.underflow() {
                        self.set(0, F80::INDEFINITE);
                        self.push(F80::INDEFINITE);
                    }
                    return;
                };
                if !self.is_empty(7) {
                    if self.overflow() {
                        self.set(0, F80::INDEFINITE);
                        self.push(F80::INDEFINITE);
                    }
                    return;
                }
                let ((e, s), f) = f80::xtract(x);
                if self.finish(f) {
                    self.set(0, e);
                    self.push(s);
                }
            }
            // FPREM1, FPREM.
            0xF5 | 0xF8 => {
                let (Some(x), Some(y)) = (self.get(0), self.get(1)) else {
                    self.sw &= !SW_C2;
                    if self.underflow() {
                        self.set(0, F80::INDEFINITE);
                    }
                    return;
                };
                let r = f80::rem(x, y, modrm == 0xF5, &env);
                if self.unmasked(r.flags & (IE | DE)) {
                    self.raise(r.flags & (IE | DE));
                    self.sw &= !(SW_C1 | SW_C2);
                    return;
                }
                self.raise(r.flags);
                if r.value.is_nan() {
                    // NaN results (propagated or invalid) clear C1 and C2, leave C0 and C3.
                    self.sw &= !(SW_C1 | SW_C2);
                } else if r.complete {
                    let q = r.q;
                    self.set_cc(q & 2 != 0, false, q & 1 != 0, q & 4 != 0);
                } else {
                    self.set_cc(false, true, false, false);
                }
                self.set(0, r.value);
            }
            _ => {}
        }
    }

    // ----- environment -----

    /// The environment image for FSTENV/FSAVE in the layout selected by `ctx`.
    fn env_image(&self, ctx: &FpuContext) -> [u8; 28] {
        let mut b = [0u8; 28];
        let cw = self.cw;
        let sw = self.status_word();
        let tw = self.tag_word();
        let fop = self.fop & 0x7FF;
        let w16 =
            |b: &mut [u8; 28], o: usize, v: u16| b[o..o + 2].copy_from_slice(&v.to_le_bytes());
        let w32 =
            |b: &mut [u8; 28], o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_le_bytes());
        match (ctx.op32, ctx.protected) {
            (true, true) => {
                w32(&mut b, 0, 0xFFFF_0000 | u32::from(cw));
                w32(&mut b, 4, 0xFFFF_0000 | u32::from(sw));
                w32(&mut b, 8, 0xFFFF_0000 | u32::from(tw));
                w32(&mut b, 12, self.fip);
                w32(&mut b, 16, u32::from(self.fcs) | (u32::from(fop) << 16));
                w32(&mut b, 20, self.fdp);
                w32(&mut b, 24, 0xFFFF_0000 | u32::from(self.fds));
            }
            (true, false) => {
                let ip = self.linear_ip();
                let dp = self.linear_dp();
                w32(&mut b, 0, 0xFFFF_0000 | u32::from(cw));
                w32(&mut b, 4, 0xFFFF_0000 | u32::from(sw));
                w32(&mut b, 8, 0xFFFF_0000 | u32::from(tw));
                w32(&mut b, 12, 0xFFFF_0000 | (ip & 0xFFFF));
                w32(
                    &mut b,
                    16,
                    ((ip >> 16) << 12) & 0x0FFF_F000 | u32::from(fop),
                );
                w32(&mut b, 20, 0xFFFF_0000 | (dp & 0xFFFF));
                w32(&mut b, 24, ((dp >> 16) << 12) & 0x0FFF_F000);
            }
            (false, true) => {
                w16(&mut b, 0, cw);
                w16(&mut b, 2, sw);
                w16(&mut b, 4, tw);
                w16(&mut b, 6, self.fip as u16);
                w16(&mut b, 8, self.fcs);
                w16(&mut b, 10, self.fdp as u16);
                w16(&mut b, 12, self.fds);
            }
            (false, false) => {
                let ip = self.linear_ip();
                let dp = self.linear_dp();
                w16(&mut b, 0, cw);
                w16(&mut b, 2, sw);
                w16(&mut b, 4, tw);
                w16(&mut b, 6, ip as u16);
                w16(&mut b, 8, (((ip >> 16) & 0xF) << 12) as u16 | fop);
                w16(&mut b, 10, dp as u16);
                w16(&mut b, 12, (((dp >> 16) & 0xF) << 12) as u16);
            }
        }
        b
    }

    fn linear_ip(&self) -> u32 {
        (u32::from(self.fcs) << 4).wrapping_add(self.fip)
    }

    fn linear_dp(&self) -> u32 {
        (u32::from(self.fds) << 4).wrapping_add(self.fdp)
    }

    fn read_env<M: FpuMemory>(
        &self,
        ctx: &FpuContext,
        a: u32,
        mem: &mut M,
    ) -> Result<LoadedEnv, FpuError<M::Fault>> {
        let n = env_len(ctx);
        let mut b = [0u8; 28];
        mem.read(a, &mut b[..n]).map_err(FpuError::Fault)?;
        let r16 = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let r32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Ok(match (ctx.op32, ctx.protected) {
            (true, true) => LoadedEnv {
                cw: r16(0),
                sw: r16(4),
                tw: r16(8),
                fip: r32(12),
                fcs: r16(16),
                fop: r16(18) & 0x7FF,
                fdp: r32(20),
                fds: r16(24),
            },
            (true, false) => LoadedEnv {
                cw: r16(0),
                sw: r16(4),
                tw: r16(8),
                fip: (r32(12) & 0xFFFF) | ((r32(16) >> 12) & 0xFFFF) << 16,
                fcs: 0,
                fop: r16(16) & 0x7FF,
                fdp: (r32(20) & 0xFFFF) | ((r32(24) >> 12) & 0xFFFF) << 16,
                fds: 0,
            },
            (false, true) => LoadedEnv {
                cw: r16(0),
                sw: r16(2),
                tw: r16(4),
                fip: u32::from(r16(6)),
                fcs: r16(8),
                fop: self.fop,
                fdp: u32::from(r16(10)),
                fds: r16(12),
            },
            (false, false) => LoadedEnv {
                cw: r16(0),
                sw: r16(2),
                tw: r16(4),
                fip: u32::from(r16(6)) | u32::from(r16(8) >> 12) << 16,
                fcs: 0,
                fop: r16(8) & 0x7FF,
                fdp: u32::from(r16(10)) | u32::from(r16(12) >> 12) << 16,
                fds: 0,
            },
        })
    }

    fn load_env(&mut self, e: &LoadedEnv) {
        self.cw = e.cw & 0x1F7F | 0x0040;
        self.top = ((e.sw >> 11) & 7) as u8;
        self.sw = e.sw & !0x3800;
        let mut empty = 0u8;
        for i in 0..8 {
            if (e.tw >> (2 * i)) & 3 == 3 {
                empty |= 1 << i;
            }
        }
        self.empty = empty;
        self.fip = e.fip;
        self.fcs = e.fcs;
        self.fop = e.fop;
        self.fdp = e.fdp;
        self.fds = e.fds;
        self.update_es();
    }
}

/// An environment read from memory.
struct LoadedEnv {
    cw: u16,
    sw: u16,
    tw: u16,
    fip: u32,
    fcs: u16,
    fop: u16,
    fdp: u32,
    fds: u16,
}

fn env_len(ctx: &FpuContext) -> usize {
    if ctx.op32 {
        28
    } else {
        14
    }
}

fn pad(b: &[u8]) -> [u8; 10] {
    let mut out = [0u8; 10];
    out[..b.len()].copy_from_slice(b);
    out
}

fn read<const N: usize, M: FpuMemory>(mem: &mut M, a: u32) -> Result<[u8; N], FpuError<M::Fault>> {
    let mut b = [0u8; N];
    mem.read(a, &mut b).map_err(FpuError::Fault)?;
    Ok(b)
}

fn nan_or_unsupported(x: F80) -> bool {
    matches!(x.class(), Class::QNaN | Class::SNaN | Class::Unsupported)
}

/// A memory float operand for arithmetic: converted exactly, SNaNs kept signalling so that the
/// two-operand NaN rules see them; the second value is the denormal-operand flag.
fn raw_f32(bits: u32) -> (F80, u16) {
    let (v, f) = f80::from_f32(bits);
    if (bits >> 23) & 0xFF == 0xFF && bits & 0x7F_FFFF != 0 {
        return (
            F80 {
                se: v.se,
                m: v.m & !(1 << 62) | (u64::from(bits & 0x40_0000) << 40),
            },
            0,
        );
    }
    (v, f & DE)
}

fn raw_f64(bits: u64) -> (F80, u16) {
    let (v, f) = f80::from_f64(bits);
    if (bits >> 52) & 0x7FF == 0x7FF && bits & ((1 << 52) - 1) != 0 {
        return (
            F80 {
                se: v.se,
                m: v.m & !(1 << 62) | ((bits & (1 << 51)) << 11),
            },
            0,
        );
    }
    (v, f & DE)
}

/// (C3, C2, C0) — equally (ZF, PF, CF) — for a comparison result.
fn cc_of(ord: Option<Ordering>) -> (bool, bool, bool) {
    match ord {
        Some(Ordering::Greater) => (false, false, false),
        Some(Ordering::Less) => (false, false, true),
        Some(Ordering::Equal) => (true, false, false),
        None => (true, true, true),
    }
}

/// Decodes which kind of instruction an encoding is; `None` for #UD encodings.
fn classify(op: u8, modrm: u8) -> Option<Kind> {
    let reg = (modrm >> 3) & 7;
    if modrm < 0xC0 {
        return match (op, reg) {
            (0xD9, 1) | (0xDB, 1 | 4 | 6) | (0xDD, 1 | 5) | (0xDF, 1) => None,
            (0xD9, 4 | 5) | (0xDD, 4) => Some(Kind::Control),
            (0xD9, 6 | 7) | (0xDD, 6 | 7) => Some(Kind::NoWait),
            (0xD8..=0xDF, _) => Some(Kind::Arith),
            _ => None,
        };
    }
    match (op, reg) {
        (0xD9, 2) if modrm != 0xD0 => None,
        (0xD9, 4) if !matches!(modrm, 0xE0 | 0xE1 | 0xE4 | 0xE5) => None,
        (0xD9, 5) if modrm == 0xEF => None,
        (0xDA, 4 | 6 | 7) => None,
        (0xDA, 5) if modrm != 0xE9 => None,
        (0xDB, 4) if modrm > 0xE4 => None,
        (0xDB, 4) if modrm == 0xE2 || modrm == 0xE3 => Some(Kind::NoWait),
        (0xDB, 4) => Some(Kind::NoWait),
        (0xDB, 7) | (0xDD, 6 | 7) | (0xDF, 7) => None,
        (0xDE, 3) if modrm != 0xD9 => None,
        (0xDF, 4) if modrm != 0xE0 => None,
        (0xDF, 4) => Some(Kind::NoWait),
        (0xD8..=0xDF, _) => Some(Kind::Arith),
        _ => None,
    }
}
