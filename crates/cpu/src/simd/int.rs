//! MMX and SSE2 integer instructions and the integer-register moves (0F 60–7F, C4, C5,
//! D1–FE): one lane engine for the 64-bit MMX and the 128-bit XMM forms.

use super::{maskmov_target, Mp, Need};
use crate::exec::{Opnd, Pfx};
use crate::{ud, Bus, Cpu, Res};

/// Lane-wise `f` over the `total`-bit values `a` and `b` with `w`-bit lanes (lanes passed
/// zero-extended, results truncated to `w` bits).
fn lanes(a: u128, b: u128, w: u32, total: u32, f: impl Fn(u64, u64) -> u64) -> u128 {
    let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
    let mut r = 0u128;
    for i in 0..total / w {
        let sh = i * w;
        let x = (a >> sh) as u64 & mask;
        let y = (b >> sh) as u64 & mask;
        r |= ((f(x, y) & mask) as u128) << sh;
    }
    r
}

/// Lane `i` of width `w` of `v`.
fn lane(v: u128, w: u32, i: u32) -> u64 {
    let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
    (v >> (i * w)) as u64 & mask
}

/// Sign-extends the low `w` bits of `v`.
fn sx(v: u64, w: u32) -> i64 {
    ((v << (64 - w)) as i64) >> (64 - w)
}

/// Signed saturation of `v` to `w` bits.
fn sat_s(v: i64, w: u32) -> u64 {
    let max = (1i64 << (w - 1)) - 1;
    v.clamp(-max - 1, max) as u64
}

/// Unsigned saturation of `v` to `w` bits.
fn sat_u(v: i64, w: u32) -> u64 {
    v.clamp(0, (1i64 << w) - 1) as u64
}

/// PACKSS/PACKUS: the `from`-bit lanes of `a` then of `b`, saturated to `from / 2` bits.
fn pack(a: u128, b: u128, from: u32, total: u32, signed: bool) -> u128 {
    let n = total / from;
    let to = from / 2;
    let mut r = 0u128;
    for i in 0..2 * n {
        let src = if i < n { a } else { b };
        let v = sx(lane(src, from, i % n), from);
        let s = if signed { sat_s(v, to) } else { sat_u(v, to) };
        r |= ((s & ((1u64 << to) - 1)) as u128) << (i * to);
    }
    r
}

/// PUNPCKL/PUNPCKH: interleaves the `w`-bit lanes of the low (or high) halves.
pub(super) fn unpack(a: u128, b: u128, w: u32, total: u32, high: bool) -> u128 {
    let half = total / w / 2;
    let base = if high { half } else { 0 };
    let mut r = 0u128;
    for i in 0..half {
        r |= (lane(a, w, base + i) as u128) << (2 * i * w);
        r |= (lane(b, w, base + i) as u128) << ((2 * i + 1) * w);
    }
    r
}

/// Logical shift left / right or arithmetic shift right of `w`-bit lanes by `count`.
fn shift(v: u128, w: u32, total: u32, count: u64, kind: u8) -> u128 {
    lanes(v, 0, w, total, |x, _| match kind {
        0 => {
            if count >= w as u64 {
                0
            } else {
                x << count
            }
        }
        1 => {
            if count >= w as u64 {
                0
            } else {
                x >> count
            }
        }
        _ => (sx(x, w) >> count.min(w as u64 - 1)) as u64,
    })
}

/// The two-operand integer operations that work lane by lane or on the whole value:
/// `a` = destination, `b` = source, `total` = 64 (MMX) or 128 (XMM). `None` for opcodes
/// that are not of this kind.
pub(crate) fn int_alu(op: u8, a: u128, b: u128, total: u32) -> Option<u128> {
    let bool_lane = |c: bool| if c { u64::MAX } else { 0 };
    Some(match op {
        0x60 => unpack(a, b, 8, total, false),
        0x61 => unpack(a, b, 16, total, false),
        0x62 => unpack(a, b, 32, total, false),
        0x63 => pack(a, b, 16, total, true),
        0x64 => lanes(a, b, 8, total, |x, y| bool_lane(sx(x, 8) > sx(y, 8))),
        0x65 => lanes(a, b, 16, total, |x, y| bool_lane(sx(x, 16) > sx(y, 16))),
        0x66 => lanes(a, b, 32, total, |x, y| bool_lane(sx(x, 32) > sx(y, 32))),
        0x67 => pack(a, b, 16, total, false),
        0x68 => unpack(a, b, 8, total, true),
        0x69 => unpack(a, b, 16, total, true),
        0x6A => unpack(a, b, 32, total, true),
        0x6B => pack(a, b, 32, total, true),
        0x6C => unpack(a, b, 64, total, false),
        0x6D => unpack(a, b, 64, total, true),
        0x74 => lanes(a, b, 8, total, |x, y| bool_lane(x == y)),
        0x75 => lanes(a, b, 16, total, |x, y| bool_lane(x == y)),
        0x76 => lanes(a, b, 32, total, |x, y| bool_lane(x == y)),
        0xD1 => shift(a, 16, total, b as u64, 1),
        0xD2 => shift(a, 32, total, b as u64, 1),
        0xD3 => shift(a, 64, total, b as u64, 1),
        0xD4 => lanes(a, b, 64, total, u64::wrapping_add),
        0xD5 => lanes(a, b, 16, total, |x, y| x.wrapping_mul(y)),
        0xD8 => lanes(a, b, 8, total, |x, y| x.saturating_sub(y)),
        0xD9 => lanes(a, b, 16, total, |x, y| x.saturating_sub(y)),
        0xDA => lanes(a, b, 8, total, u64::min),
        0xDB => a & b,
        0xDC => lanes(a, b, 8, total, |x, y| sat_u((x + y) as i64, 8)),
        0xDD => lanes(a, b, 16, total, |x, y| sat_u((x + y) as i64, 16)),
        0xDE => lanes(a, b, 8, total, u64::max),
        0xDF => !a & b,
        0xE0 => lanes(a, b, 8, total, |x, y| (x + y + 1) >> 1),
        0xE1 => shift(a, 16, total, b as u64, 2),
        0xE2 => shift(a, 32, total, b as u64, 2),
        0xE3 => lanes(a, b, 16, total, |x, y| (x + y + 1) >> 1),
        0xE4 => lanes(a, b, 16, total, |x, y| (x * y) >> 16),
        0xE5 => lanes(a, b, 16, total, |x, y| {
            ((sx(x, 16) * sx(y, 16)) >> 16) as u64
        }),
        0xE8 => lanes(a, b, 8, total, |x, y| sat_s(sx(x, 8) - sx(y, 8), 8)),
        0xE9 => lanes(a, b, 16, total, |x, y| sat_s(sx(x, 16) - sx(y, 16), 16)),
        0xEA => lanes(a, b, 16, total, |x, y| sx(x, 16).min(sx(y, 16)) as u64),
        0xEB => a | b,
        0xEC => lanes(a, b, 8, total, |x, y| sat_s(sx(x, 8) + sx(y, 8), 8)),
        0xED => lanes(a, b, 16, total, |x, y| sat_s(sx(x, 16) + sx(y, 16), 16)),
        0xEE => lanes(a, b, 16, total, |x, y| sx(x, 16).max(sx(y, 16)) as u64),
        0xEF => a ^ b,
        0xF1 => shift(a, 16, total, b as u64, 0),
        0xF2 => shift(a, 32, total, b as u64, 0),
        0xF3 => shift(a, 64, total, b as u64, 0),
        0xF4 => lanes(a, b, 64, total, |x, y| {
            (x & 0xFFFF_FFFF) * (y & 0xFFFF_FFFF)
        }),
        0xF5 => lanes(a, b, 32, total, |x, y| {
            let p0 = sx(x & 0xFFFF, 16) * sx(y & 0xFFFF, 16);
            let p1 = sx(x >> 16, 16) * sx(y >> 16, 16);
            p0.wrapping_add(p1) as u64
        }),
        0xF6 => lanes(a, b, 64, total, |x, y| {
            (0..8)
                .map(|i| ((x >> (8 * i)) as u8).abs_diff((y >> (8 * i)) as u8) as u64)
                .sum()
        }),
        0xF8 => lanes(a, b, 8, total, u64::wrapping_sub),
        0xF9 => lanes(a, b, 16, total, u64::wrapping_sub),
        0xFA => lanes(a, b, 32, total, u64::wrapping_sub),
        0xFB => lanes(a, b, 64, total, u64::wrapping_sub),
        0xFC => lanes(a, b, 8, total, u64::wrapping_add),
        0xFD => lanes(a, b, 16, total, u64::wrapping_add),
        0xFE => lanes(a, b, 32, total, u64::wrapping_add),
        _ => return None,
    })
}

/// The opcodes [`int_alu`] defines, found once from `int_alu` itself (so the list is not
/// written twice and no instruction computes its result twice).
static INT_ALU_OPS: std::sync::LazyLock<[bool; 256]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|i| int_alu(i as u8, 0, 0, 64).is_some()));

/// PSHUFW/PSHUFD: lane `i` of `w`-bit lanes (4 of them) = source lane `imm[2i+1:2i]`.
fn shuf4(v: u128, w: u32, imm: u8) -> u128 {
    let mut r = 0u128;
    for i in 0..4 {
        let sel = ((imm >> (2 * i)) & 3) as u32;
        r |= (lane(v, w, sel) as u128) << (i * w);
    }
    r
}

/// Bit `i` = top bit of `w`-bit lane `i`.
pub(crate) fn sign_mask(v: u128, w: u32, total: u32) -> u32 {
    (0..total / w).fold(0, |m, i| m | (((lane(v, w, i) >> (w - 1)) as u32 & 1) << i))
}

impl Cpu {
    /// Runs the integer and integer-move instructions. `Ok(None)`: not one of them;
    /// `Ok(Some(mm))`: done, `mm` = an MMX register was involved.
    pub(super) fn int_op<B: Bus>(
        &mut self,
        bus: &mut B,
        op: u8,
        mp: Mp,
        m: u8,
        o: Opnd,
        p: &Pfx,
    ) -> Res<Option<bool>> {
        let reg = ((m >> 3) & 7) as usize;
        let is_alu = INT_ALU_OPS[op as usize];
        let xmm = match (op, mp) {
            (0x6C | 0x6D, Mp::None) => return ud(),
            (0x60..=0x7F | 0xC4 | 0xC5 | 0xD0..=0xFE, Mp::None) if is_alu => false,
            (0x60..=0x7F | 0xC4 | 0xC5 | 0xD0..=0xFE, Mp::P66) if is_alu => true,
            _ => return self.int_move(bus, op, mp, m, o, p),
        };
        if xmm {
            self.simd_need(Need::Sse)?;
            let a = self.xmm[reg];
            let b = self.xsrc(bus, o, 16, true)?;
            // PSLL/PSRL/PSRA count: the low 64 bits of the source.
            let r = int_alu(op, a, b, 128).unwrap_or(a);
            self.xmm[reg] = r;
            Ok(Some(false))
        } else {
            self.simd_need(Need::Mmx)?;
            let a = self.fpu.mmx_get(reg) as u128;
            let b = self.msrc(bus, o)? as u128;
            let r = int_alu(op, a, b, 64).unwrap_or(a);
            self.fpu.mmx_set(reg, r as u64);
            Ok(Some(true))
        }
    }

    /// The moves, shuffles, shifts by immediate, inserts/extracts and masked stores of the
    /// integer space.
    fn int_move<B: Bus>(
        &mut self,
        bus: &mut B,
        op: u8,
        mp: Mp,
        m: u8,
        o: Opnd,
        p: &Pfx,
    ) -> Res<Option<bool>> {
        let reg = ((m >> 3) & 7) as usize;
        match (op, mp) {
            // MOVD mm, r/m32
            (0x6E, Mp::None) => {
                self.simd_need(Need::Mmx)?;
                let v = self.gsrc32(bus, o)?;
                self.fpu.mmx_set(reg, v as u64);
                Ok(Some(true))
            }
            // MOVD xmm, r/m32
            (0x6E, Mp::P66) => {
                self.simd_need(Need::Sse)?;
                let v = self.gsrc32(bus, o)?;
                self.xmm[reg] = v as u128;
                Ok(Some(false))
            }
            // MOVD r/m32, mm
            (0x7E, Mp::None) => {
                self.simd_need(Need::Mmx)?;
                let v = self.fpu.mmx_get(reg) as u32;
                self.gdst32(bus, o, v)?;
                Ok(Some(true))
            }
            // MOVD r/m32, xmm
            (0x7E, Mp::P66) => {
                self.simd_need(Need::Sse)?;
                let v = self.xmm[reg] as u32;
                self.gdst32(bus, o, v)?;
                Ok(Some(false))
            }
            // MOVQ xmm, xmm/m64
            (0x7E, Mp::F3) => {
                self.simd_need(Need::Sse)?;
                let v = self.xsrc(bus, o, 8, false)?;
                self.xmm[reg] = v as u64 as u128;
                Ok(Some(false))
            }
            // MOVQ mm, mm/m64
            (0x6F, Mp::None) => {
                self.simd_need(Need::Mmx)?;
                let v = self.msrc(bus, o)?;
                self.fpu.mmx_set(reg, v);
                Ok(Some(true))
            }
            // MOVDQA / MOVDQU xmm, xmm/m128
            (0x6F, Mp::P66 | Mp::F3) => {
                self.simd_need(Need::Sse)?;
                let v = self.xsrc(bus, o, 16, mp == Mp::P66)?;
                self.xmm[reg] = v;
                Ok(Some(false))
            }
            // MOVQ mm/m64, mm; MOVNTQ m64, mm
            (0x7F | 0xE7, Mp::None) => {
                self.simd_need(Need::Mmx)?;
                let v = self.fpu.mmx_get(reg);
                match o {
                    Opnd::Reg(r) => {
                        if op == 0xE7 {
                            return ud();
                        }
                        self.fpu.mmx_set(r as usize, v);
                    }
                    Opnd::Mem(s, off) => self.vwrite(bus, s as usize, off, 8, v as u128, false)?,
                }
                Ok(Some(true))
            }
            // MOVDQA / MOVDQU xmm/m128, xmm; MOVNTDQ m128, xmm
            (0x7F, Mp::P66 | Mp::F3) | (0xE7, Mp::P66) => {
                self.simd_need(Need::Sse)?;
                let v = self.xmm[reg];
                match o {
                    Opnd::Reg(r) => {
                        if op == 0xE7 {
                            return ud();
                        }
                        self.xmm[r as usize] = v;
                    }
                    Opnd::Mem(s, off) => {
                        self.vwrite(bus, s as usize, off, 16, v, mp == Mp::P66)?;
                    }
                }
                Ok(Some(false))
            }
            // MOVQ xmm/m64, xmm
            (0xD6, Mp::P66) => {
                self.simd_need(Need::Sse)?;
                let v = self.xmm[reg] as u64;
                match o {
                    Opnd::Reg(r) => self.xmm[r as usize] = v as u128,
                    Opnd::Mem(s, off) => self.vwrite(bus, s as usize, off, 8, v as u128, false)?,
                }
                Ok(Some(false))
            }
            // MOVQ2DQ xmm, mm
            (0xD6, Mp::F3) => {
                let Opnd::Reg(r) = o else { return ud() };
                self.simd_need(Need::SseMmx)?;
                self.xmm[reg] = self.fpu.mmx_get(r as usize) as u128;
                Ok(Some(true))
            }
            // MOVDQ2Q mm, xmm
            (0xD6, Mp::F2) => {
                let Opnd::Reg(r) = o else { return ud() };
                self.simd_need(Need::SseMmx)?;
                self.fpu.mmx_set(reg, self.xmm[r as usize] as u64);
                Ok(Some(true))
            }
            // PSHUFW mm, mm/m64, imm8
            (0x70, Mp::None) => {
                self.simd_need(Need::Mmx)?;
                let v = self.msrc(bus, o)?;
                let imm = self.fetch8(bus)?;
                self.fpu.mmx_set(reg, shuf4(v as u128, 16, imm) as u64);
                Ok(Some(true))
            }
            // PSHUFD / PSHUFHW / PSHUFLW xmm, xmm/m128, imm8
            (0x70, _) => {
                self.simd_need(Need::Sse)?;
                let v = self.xsrc(bus, o, 16, true)?;
                let imm = self.fetch8(bus)?;
                self.xmm[reg] = match mp {
                    Mp::P66 => shuf4(v, 32, imm),
                    Mp::F3 => (shuf4(v >> 64, 16, imm) << 64) | (v as u64 as u128),
                    _ => (v >> 64 << 64) | shuf4(v as u64 as u128, 16, imm),
                };
                Ok(Some(false))
            }
            // Shifts by immediate: 71 /2 /4 /6 (W), 72 /2 /4 /6 (D), 73 /2 /6 (Q), 66 73 /3 /7
            // (DQ, bytes).
            (0x71..=0x73, Mp::None | Mp::P66) => {
                let Opnd::Reg(r) = o else { return ud() };
                let sub = (m >> 3) & 7;
                let w = 16u32 << (op - 0x71);
                let kind = match (op, sub) {
                    (_, 2) => 1,
                    (0x71 | 0x72, 4) => 2,
                    (_, 6) => 0,
                    (0x73, 3 | 7) if mp == Mp::P66 => 3,
                    _ => return ud(),
                };
                let xmm = mp == Mp::P66;
                self.simd_need(if xmm { Need::Sse } else { Need::Mmx })?;
                let imm = self.fetch8(bus)? as u64;
                let r = r as usize;
                if xmm {
                    let v = self.xmm[r];
                    self.xmm[r] = if kind == 3 {
                        let bytes = imm.min(16) as u32 * 8;
                        match bytes {
                            128 => 0,
                            _ if sub == 3 => v >> bytes,
                            _ => v << bytes,
                        }
                    } else {
                        shift(v, w, 128, imm, kind)
                    };
                    Ok(Some(false))
                } else {
                    let v = self.fpu.mmx_get(r) as u128;
                    self.fpu.mmx_set(r, shift(v, w, 64, imm, kind) as u64);
                    Ok(Some(true))
                }
            }
            // PINSRW mm/xmm, r32/m16, imm8
            (0xC4, Mp::None | Mp::P66) => {
                let xmm = mp == Mp::P66;
                self.simd_need(if xmm { Need::Sse } else { Need::Mmx })?;
                let v = match o {
                    Opnd::Reg(r) => self.regs[r as usize & 7] & 0xFFFF,
                    Opnd::Mem(s, off) => self.rd(bus, s as usize, off, 2)?,
                };
                let imm = self.fetch8(bus)? as u32;
                if xmm {
                    let sh = 16 * (imm & 7);
                    self.xmm[reg] = (self.xmm[reg] & !(0xFFFFu128 << sh)) | ((v as u128) << sh);
                    Ok(Some(false))
                } else {
                    let sh = 16 * (imm & 3);
                    let old = self.fpu.mmx_get(reg);
                    self.fpu
                        .mmx_set(reg, (old & !(0xFFFFu64 << sh)) | ((v as u64) << sh));
                    Ok(Some(true))
                }
            }
            // PEXTRW r32, mm/xmm, imm8
            (0xC5, Mp::None | Mp::P66) => {
                let Opnd::Reg(r) = o else { return ud() };
                let xmm = mp == Mp::P66;
                self.simd_need(if xmm { Need::Sse } else { Need::Mmx })?;
                let imm = self.fetch8(bus)? as u32;
                let v = if xmm {
                    lane(self.xmm[r as usize], 16, imm & 7)
                } else {
                    lane(self.fpu.mmx_get(r as usize) as u128, 16, imm & 3)
                };
                self.regs[reg] = v as u32;
                Ok(Some(!xmm))
            }
            // PMOVMSKB r32, mm/xmm
            (0xD7, Mp::None | Mp::P66) => {
                let Opnd::Reg(r) = o else { return ud() };
                let xmm = mp == Mp::P66;
                self.simd_need(if xmm { Need::Sse } else { Need::Mmx })?;
                self.regs[reg] = if xmm {
                    sign_mask(self.xmm[r as usize], 8, 128)
                } else {
                    sign_mask(self.fpu.mmx_get(r as usize) as u128, 8, 64)
                };
                Ok(Some(!xmm))
            }
            // MASKMOVQ mm, mm / MASKMOVDQU xmm, xmm
            (0xF7, Mp::None | Mp::P66) => {
                let Opnd::Reg(r) = o else { return ud() };
                let xmm = mp == Mp::P66;
                self.simd_need(if xmm { Need::Sse } else { Need::Mmx })?;
                let (data, mask, n) = if xmm {
                    (self.xmm[reg], self.xmm[r as usize], 16)
                } else {
                    let d = self.fpu.mmx_get(reg) as u128;
                    (d, self.fpu.mmx_get(r as usize) as u128, 8)
                };
                let (s, off) = maskmov_target(self, p);
                let sel = sign_mask(mask, 8, n * 8);
                if sel != 0 {
                    self.probe_write(bus, s, off, n)?;
                    for i in 0..n {
                        if sel & (1 << i) != 0 {
                            let b = lane(data, 8, i) as u32;
                            self.wr(bus, s, off.wrapping_add(i), 1, b)?;
                        }
                    }
                }
                Ok(Some(!xmm))
            }
            (0x60..=0x7F | 0xC4 | 0xC5 | 0xD0..=0xE5 | 0xE7..=0xFE, _) => ud(),
            _ => Ok(None),
        }
    }

    /// A 32-bit general-register-or-memory source.
    pub(crate) fn gsrc32<B: Bus>(&mut self, bus: &mut B, o: Opnd) -> Res<u32> {
        match o {
            Opnd::Reg(r) => Ok(self.regs[r as usize & 7]),
            Opnd::Mem(s, off) => self.rd(bus, s as usize, off, 4),
        }
    }

    /// A 32-bit general-register-or-memory destination.
    fn gdst32<B: Bus>(&mut self, bus: &mut B, o: Opnd, v: u32) -> Res<()> {
        match o {
            Opnd::Reg(r) => {
                self.regs[r as usize & 7] = v;
                Ok(())
            }
            Opnd::Mem(s, off) => self.wr(bus, s as usize, off, 4, v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_and_packing() {
        assert_eq!(sat_s(200, 8), 127);
        assert_eq!(sat_s(-200, 8) as u8, 0x80);
        assert_eq!(sat_u(-5, 8), 0);
        assert_eq!(sat_u(300, 8), 255);
        // PACKSSWB of words 0x0100, 0xFF00, 0x0005, 0x8000 (a) and 0 (b).
        let a = 0x8000_0005_FF00_0100u128;
        assert_eq!(pack(a, 0, 16, 64, true), 0x0000_0000_8005_807F);
        assert_eq!(pack(a, 0, 16, 64, false), 0x0000_0000_0005_00FF);
    }

    #[test]
    fn unpack_and_shuffle() {
        assert_eq!(
            unpack(0x0403_0201, 0x0807_0605, 8, 64, false),
            0x0804_0703_0602_0501
        );
        assert_eq!(
            shuf4(0x0004_0003_0002_0001, 16, 0x1B),
            0x0001_0002_0003_0004
        );
        assert_eq!(sign_mask(0x80FF_0000_0000_0080, 8, 64), 0b1100_0001);
    }

    #[test]
    fn shifts_saturate_their_count() {
        assert_eq!(shift(0x8000_0001, 32, 64, 31, 2), 0xFFFF_FFFF);
        assert_eq!(shift(0x8000_0001, 32, 64, 99, 2), 0xFFFF_FFFF);
        assert_eq!(shift(0x8000_0001, 32, 64, 32, 0), 0);
        assert_eq!(shift(0x8000_0001, 32, 64, 1, 1), 0x4000_0000);
    }
}
