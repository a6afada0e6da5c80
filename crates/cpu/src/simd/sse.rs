//! SSE/SSE2 floating-point instructions and the XMM moves, shuffles and logic of the
//! PS/PD/SS/SD space: each lane goes through [`super::fp`] with the current MXCSR, the flags
//! of all lanes are ORed, and an unmasked one faults before anything is written.

use super::fp::{self, Arith};
use super::int::{sign_mask, unpack};
use super::{mem_of, Mp, Need};
use crate::exec::Opnd;
use crate::flags::{ARITH, CF, PF, ZF};
use crate::{ud, Bus, Cpu, Res};

/// Applies `f` to the 32-bit (`!double`) or 64-bit lanes of `a` and `b`: every lane, or lane
/// 0 only when `scalar` (the others are `a`'s). Returns the result and the ORed flags.
fn fp_lanes(
    a: u128,
    b: u128,
    double: bool,
    scalar: bool,
    mut f: impl FnMut(u64, u64) -> (u64, u32),
) -> (u128, u32) {
    let w = if double { 64 } else { 32 };
    let mask = if double { u64::MAX } else { 0xFFFF_FFFF };
    let n = if scalar { 1 } else { 128 / w };
    let mut r = a;
    let mut flags = 0;
    for i in 0..n {
        let sh = i * w;
        let (v, fl) = f((a >> sh) as u64 & mask, (b >> sh) as u64 & mask);
        r = (r & !((mask as u128) << sh)) | (((v & mask) as u128) << sh);
        flags |= fl;
    }
    (r, flags)
}

/// The arithmetic operation of opcodes 58–5F.
fn arith_of(op: u8) -> Option<Arith> {
    Some(match op {
        0x58 => Arith::Add,
        0x59 => Arith::Mul,
        0x5C => Arith::Sub,
        0x5D => Arith::Min,
        0x5E => Arith::Div,
        0x5F => Arith::Max,
        _ => return None,
    })
}

/// Sets lane `i` of 32-bit lanes of `v` to `x`.
fn set32(v: u128, i: u32, x: u32) -> u128 {
    (v & !(0xFFFF_FFFFu128 << (32 * i))) | ((x as u128) << (32 * i))
}

impl Cpu {
    /// Runs the floating-point, XMM move, shuffle and logic instructions; #UD for anything
    /// else. Returns whether an MMX register was involved.
    pub(super) fn sse_op<B: Bus>(
        &mut self,
        bus: &mut B,
        op: u8,
        mp: Mp,
        m: u8,
        o: Opnd,
    ) -> Res<bool> {
        let reg = ((m >> 3) & 7) as usize;
        let packed = matches!(mp, Mp::None | Mp::P66);
        let double = matches!(mp, Mp::P66 | Mp::F2);
        // Memory width of the usual xmm/mNN source: 16 (packed), 4 (SS), 8 (SD).
        let width = match mp {
            Mp::None | Mp::P66 => 16,
            Mp::F3 => 4,
            Mp::F2 => 8,
        };
        match op {
            // MOVUPS/MOVUPD/MOVSS/MOVSD load
            0x10 => {
                self.simd_need(Need::Sse)?;
                let v = self.xsrc(bus, o, width, false)?;
                self.xmm[reg] = match (o, mp) {
                    (_, Mp::None | Mp::P66) | (Opnd::Mem(..), _) => v,
                    (Opnd::Reg(_), Mp::F3) => set32(self.xmm[reg], 0, v as u32),
                    (Opnd::Reg(_), _) => (self.xmm[reg] >> 64 << 64) | v as u64 as u128,
                };
            }
            // MOVUPS/MOVUPD/MOVSS/MOVSD store
            0x11 => {
                self.simd_need(Need::Sse)?;
                let v = self.xmm[reg];
                match o {
                    Opnd::Mem(s, off) => self.vwrite(bus, s as usize, off, width, v, false)?,
                    Opnd::Reg(r) => {
                        let d = &mut self.xmm[r as usize & 7];
                        *d = match mp {
                            Mp::None | Mp::P66 => v,
                            Mp::F3 => set32(*d, 0, v as u32),
                            Mp::F2 => (*d >> 64 << 64) | v as u64 as u128,
                        };
                    }
                }
            }
            // MOVLPS/MOVHLPS, MOVLPD; MOVHPS/MOVLHPS, MOVHPD (loads)
            0x12 | 0x16 if packed => {
                if mp == Mp::P66 {
                    mem_of(o)?;
                }
                self.simd_need(Need::Sse)?;
                let (src, hi_half) = match o {
                    Opnd::Reg(r) => (self.xmm[r as usize & 7], op == 0x12),
                    Opnd::Mem(s, off) => (self.vread(bus, s as usize, off, 8, false)?, false),
                };
                let q = if hi_half {
                    (src >> 64) as u64
                } else {
                    src as u64
                };
                let d = self.xmm[reg];
                self.xmm[reg] = if op == 0x12 {
                    (d >> 64 << 64) | q as u128
                } else {
                    (d as u64 as u128) | (q as u128) << 64
                };
            }
            // MOVLPS/MOVLPD, MOVHPS/MOVHPD (stores)
            0x13 | 0x17 if packed => {
                let (s, off) = mem_of(o)?;
                self.simd_need(Need::Sse)?;
                let v = self.xmm[reg];
                let q = if op == 0x13 {
                    v as u64
                } else {
                    (v >> 64) as u64
                };
                self.vwrite(bus, s, off, 8, q as u128, false)?;
            }
            // UNPCKLPS/PD, UNPCKHPS/PD
            0x14 | 0x15 if packed => {
                self.simd_need(Need::Sse)?;
                let b = self.xsrc(bus, o, 16, true)?;
                let w = if double { 64 } else { 32 };
                self.xmm[reg] = unpack(self.xmm[reg], b, w, 128, op == 0x15);
            }
            // MOVAPS/MOVAPD load and store, MOVNTPS/MOVNTPD
            0x28 if packed => {
                self.simd_need(Need::Sse)?;
                self.xmm[reg] = self.xsrc(bus, o, 16, true)?;
            }
            0x29 | 0x2B if packed => {
                if op == 0x2B {
                    mem_of(o)?;
                }
                self.simd_need(Need::Sse)?;
                let v = self.xmm[reg];
                match o {
                    Opnd::Mem(s, off) => self.vwrite(bus, s as usize, off, 16, v, true)?,
                    Opnd::Reg(r) => self.xmm[r as usize & 7] = v,
                }
            }
            // CVTPI2PS, CVTPI2PD, CVTSI2SS, CVTSI2SD
            0x2A => return self.cvt_from_int(bus, mp, reg, o),
            // CVTTPS2PI/CVTPS2PI, CVTTPD2PI/CVTPD2PI, CVT(T)SS2SI, CVT(T)SD2SI
            0x2C | 0x2D => return self.cvt_to_int(bus, mp, reg, o, op == 0x2C),
            // UCOMISS/UCOMISD, COMISS/COMISD
            0x2E | 0x2F if packed => {
                self.simd_need(Need::Sse)?;
                let b = self.xsrc(bus, o, if double { 8 } else { 4 }, false)?;
                let a = self.xmm[reg];
                let mx = self.mxcsr;
                let quiet = op == 0x2E;
                let ((z, p, c), fl) = if double {
                    fp::f64_comi(a as u64, b as u64, quiet, mx)
                } else {
                    fp::f32_comi(a as u32, b as u32, quiet, mx)
                };
                self.simd_fp_flags(fl)?;
                let v = if z { ZF } else { 0 } | if p { PF } else { 0 } | if c { CF } else { 0 };
                self.set_flags(ARITH, v);
            }
            // MOVMSKPS, MOVMSKPD
            0x50 if packed => {
                let Opnd::Reg(r) = o else { return ud() };
                self.simd_need(Need::Sse)?;
                let w = if double { 64 } else { 32 };
                self.regs[reg] = sign_mask(self.xmm[r as usize & 7], w, 128);
            }
            // SQRTPS/SS/PD/SD, RSQRTPS/SS, RCPPS/SS
            0x51..=0x53 => {
                if op != 0x51 && double {
                    return ud();
                }
                self.simd_need(Need::Sse)?;
                let b = self.xsrc(bus, o, width, true)?;
                let a = self.xmm[reg];
                let mx = self.mxcsr;
                // The packed forms read every lane of the source; the scalar ones keep the
                // destination's upper lanes.
                let base = if packed { b } else { a };
                let (r, fl) = fp_lanes(base, b, double, !packed, |_, y| match (op, double) {
                    (0x51, true) => fp::f64_sqrt(y, mx),
                    (0x51, false) => {
                        let (v, f) = fp::f32_sqrt(y as u32, mx);
                        (v as u64, f)
                    }
                    (0x52, _) => (fp::f32_rsqrt(y as u32, mx) as u64, 0),
                    _ => (fp::f32_rcp(y as u32, mx) as u64, 0),
                });
                self.simd_fp_flags(fl)?;
                self.xmm[reg] = r;
            }
            // ANDPS/PD, ANDNPS/PD, ORPS/PD, XORPS/PD
            0x54..=0x57 if packed => {
                self.simd_need(Need::Sse)?;
                let b = self.xsrc(bus, o, 16, true)?;
                let a = self.xmm[reg];
                self.xmm[reg] = match op {
                    0x54 => a & b,
                    0x55 => !a & b,
                    0x56 => a | b,
                    _ => a ^ b,
                };
            }
            // ADD, MUL, SUB, MIN, DIV, MAX
            0x58 | 0x59 | 0x5C..=0x5F => {
                let Some(ar) = arith_of(op) else {
                    return ud();
                };
                self.simd_need(Need::Sse)?;
                let b = self.xsrc(bus, o, width, true)?;
                let mx = self.mxcsr;
                let (r, fl) = fp_lanes(self.xmm[reg], b, double, !packed, |x, y| {
                    if double {
                        fp::f64_arith(ar, x, y, mx)
                    } else {
                        let (v, f) = fp::f32_arith(ar, x as u32, y as u32, mx);
                        (v as u64, f)
                    }
                });
                self.simd_fp_flags(fl)?;
                self.xmm[reg] = r;
            }
            // CVTPS2PD, CVTPD2PS, CVTSS2SD, CVTSD2SS
            0x5A => {
                self.simd_need(Need::Sse)?;
                let n = match mp {
                    Mp::None | Mp::F2 => 8,
                    Mp::P66 => 16,
                    Mp::F3 => 4,
                };
                let b = self.xsrc(bus, o, n, true)?;
                let a = self.xmm[reg];
                let mx = self.mxcsr;
                let (r, fl) = match mp {
                    Mp::None => {
                        let (l0, f0) = fp::f32_to_f64(b as u32, mx);
                        let (l1, f1) = fp::f32_to_f64((b >> 32) as u32, mx);
                        ((l1 as u128) << 64 | l0 as u128, f0 | f1)
                    }
                    Mp::P66 => {
                        let (l0, f0) = fp::f64_to_f32(b as u64, mx);
                        let (l1, f1) = fp::f64_to_f32((b >> 64) as u64, mx);
                        ((l1 as u128) << 32 | l0 as u128, f0 | f1)
                    }
                    Mp::F3 => {
                        let (l0, f0) = fp::f32_to_f64(b as u32, mx);
                        ((a >> 64 << 64) | l0 as u128, f0)
                    }
                    Mp::F2 => {
                        let (l0, f0) = fp::f64_to_f32(b as u64, mx);
                        (set32(a, 0, l0), f0)
                    }
                };
                self.simd_fp_flags(fl)?;
                self.xmm[reg] = r;
            }
            // CVTDQ2PS, CVTPS2DQ, CVTTPS2DQ
            0x5B if mp != Mp::F2 => {
                self.simd_need(Need::Sse)?;
                let b = self.xsrc(bus, o, 16, true)?;
                let mx = self.mxcsr;
                let (r, fl) = fp_lanes(b, b, false, false, |_, y| {
                    let (v, f) = match mp {
                        Mp::None => fp::i32_to_f32(y as u32 as i32, mx),
                        _ => fp::f32_to_i32(y as u32, mp == Mp::F3, mx),
                    };
                    (v as u64, f)
                });
                self.simd_fp_flags(fl)?;
                self.xmm[reg] = r;
            }
            // CMPPS/PD/SS/SD xmm, xmm/m, imm8
            0xC2 => {
                self.simd_need(Need::Sse)?;
                let b = self.xsrc(bus, o, width, true)?;
                let pred = self.fetch8(bus)? & 7;
                let mx = self.mxcsr;
                let (r, fl) = fp_lanes(self.xmm[reg], b, double, !packed, |x, y| {
                    let (t, f) = if double {
                        fp::f64_cmp(x, y, pred, mx)
                    } else {
                        fp::f32_cmp(x as u32, y as u32, pred, mx)
                    };
                    (if t { u64::MAX } else { 0 }, f)
                });
                self.simd_fp_flags(fl)?;
                self.xmm[reg] = r;
            }
            // SHUFPS, SHUFPD
            0xC6 if packed => {
                self.simd_need(Need::Sse)?;
                let b = self.xsrc(bus, o, 16, true)?;
                let imm = self.fetch8(bus)?;
                let a = self.xmm[reg];
                self.xmm[reg] = if double {
                    let lo = (a >> (64 * (imm & 1) as u32)) as u64;
                    let hi = (b >> (64 * ((imm >> 1) & 1) as u32)) as u64;
                    (hi as u128) << 64 | lo as u128
                } else {
                    let pick = |v: u128, i: u8| (v >> (32 * ((imm >> (2 * i)) & 3))) as u32;
                    let mut r = 0u128;
                    for (i, x) in [pick(a, 0), pick(a, 1), pick(b, 2), pick(b, 3)]
                        .into_iter()
                        .enumerate()
                    {
                        r = set32(r, i as u32, x);
                    }
                    r
                };
            }
            // CVTTPD2DQ, CVTDQ2PD, CVTPD2DQ
            0xE6 if mp != Mp::None => {
                self.simd_need(Need::Sse)?;
                let b = self.xsrc(bus, o, if mp == Mp::F3 { 8 } else { 16 }, true)?;
                let mx = self.mxcsr;
                let (r, fl) = if mp == Mp::F3 {
                    let l0 = fp::i32_to_f64(b as u32 as i32);
                    let l1 = fp::i32_to_f64((b >> 32) as u32 as i32);
                    ((l1 as u128) << 64 | l0 as u128, 0)
                } else {
                    let t = mp == Mp::P66;
                    let (l0, f0) = fp::f64_to_i32(b as u64, t, mx);
                    let (l1, f1) = fp::f64_to_i32((b >> 64) as u64, t, mx);
                    ((l1 as u128) << 32 | l0 as u128, f0 | f1)
                };
                self.simd_fp_flags(fl)?;
                self.xmm[reg] = r;
            }
            _ => return ud(),
        }
        Ok(false)
    }

    /// 0F 2A: CVTPI2PS, CVTPI2PD (from MMX or m64), CVTSI2SS, CVTSI2SD (from r/m32).
    fn cvt_from_int<B: Bus>(&mut self, bus: &mut B, mp: Mp, reg: usize, o: Opnd) -> Res<bool> {
        let mm = matches!(mp, Mp::None | Mp::P66) && matches!(o, Opnd::Reg(_));
        self.simd_need(if mm { Need::SseMmx } else { Need::Sse })?;
        let mx = self.mxcsr;
        let a = self.xmm[reg];
        let (r, fl) = match mp {
            Mp::None | Mp::P66 => {
                let v = self.msrc(bus, o)?;
                let (x0, x1) = (v as u32 as i32, (v >> 32) as u32 as i32);
                if mp == Mp::None {
                    let (l0, f0) = fp::i32_to_f32(x0, mx);
                    let (l1, f1) = fp::i32_to_f32(x1, mx);
                    (set32(set32(a, 0, l0), 1, l1), f0 | f1)
                } else {
                    let (l0, l1) = (fp::i32_to_f64(x0), fp::i32_to_f64(x1));
                    ((l1 as u128) << 64 | l0 as u128, 0)
                }
            }
            Mp::F3 => {
                let v = self.gsrc32(bus, o)?;
                let (l0, f0) = fp::i32_to_f32(v as i32, mx);
                (set32(a, 0, l0), f0)
            }
            Mp::F2 => {
                let v = self.gsrc32(bus, o)?;
                ((a >> 64 << 64) | fp::i32_to_f64(v as i32) as u128, 0)
            }
        };
        self.simd_fp_flags(fl)?;
        self.xmm[reg] = r;
        Ok(mm)
    }

    /// 0F 2C/2D: CVT(T)PS2PI, CVT(T)PD2PI (to MMX), CVT(T)SS2SI, CVT(T)SD2SI (to r32).
    fn cvt_to_int<B: Bus>(
        &mut self,
        bus: &mut B,
        mp: Mp,
        reg: usize,
        o: Opnd,
        truncate: bool,
    ) -> Res<bool> {
        let mm = matches!(mp, Mp::None | Mp::P66);
        self.simd_need(if mm { Need::SseMmx } else { Need::Sse })?;
        let mx = self.mxcsr;
        let n = match mp {
            Mp::None | Mp::F2 => 8,
            Mp::P66 => 16,
            Mp::F3 => 4,
        };
        let b = self.xsrc(bus, o, n, true)?;
        let (lo, hi, fl) = match mp {
            Mp::None => {
                let (l0, f0) = fp::f32_to_i32(b as u32, truncate, mx);
                let (l1, f1) = fp::f32_to_i32((b >> 32) as u32, truncate, mx);
                (l0, l1, f0 | f1)
            }
            Mp::P66 => {
                let (l0, f0) = fp::f64_to_i32(b as u64, truncate, mx);
                let (l1, f1) = fp::f64_to_i32((b >> 64) as u64, truncate, mx);
                (l0, l1, f0 | f1)
            }
            Mp::F3 => {
                let (l0, f0) = fp::f32_to_i32(b as u32, truncate, mx);
                (l0, 0, f0)
            }
            Mp::F2 => {
                let (l0, f0) = fp::f64_to_i32(b as u64, truncate, mx);
                (l0, 0, f0)
            }
        };
        self.simd_fp_flags(fl)?;
        if mm {
            self.fpu.mmx_set(reg, (hi as u64) << 32 | lo as u64);
        } else {
            self.regs[reg] = lo;
        }
        Ok(mm)
    }
}
