//! IEEE-754 binary32/binary64 arithmetic as SSE and SSE2 perform it, in integers only, so
//! that results (NaN payloads included) are the same on every host.
//!
//! Every operation takes the guest's MXCSR (rounding control in bits 13–14, DAZ in bit 6, FZ
//! in bit 15, exception masks in bits 7–12) and returns the result bits together with the
//! exception flags it raises (MXCSR bits 0–5). The caller ORs the flags into MXCSR and, when a
//! raised flag is unmasked, faults without writing the destination; so the result returned is
//! always the *masked* response.
//!
//! Flags follow the masked response too, with one difference: when underflow is unmasked, a
//! tiny result raises UE even when it is exact (the SDM's unmasked underflow condition), and
//! FZ does not apply. With overflow unmasked the flags are those of the masked case (OE, and PE
//! when inexact); the destination is not written in either case, so only the flags matter.
//!
//! Rules, as the SDM states them and as the host tests check them against the processor:
//! - Tininess is detected after rounding. FZ (with UE masked) turns a tiny result into a zero
//!   of the same sign and raises UE and PE.
//! - DAZ reads denormal operands as zeros of the same sign and then raises no DE; without DAZ a
//!   denormal operand raises DE unless the operation stops earlier (a NaN operand, or an
//!   invalid operation).
//! - NaN operands: an SNaN raises IE; the result is the first operand (the destination) made
//!   quiet if it is a NaN, otherwise the second made quiet. Invalid operations (∞−∞, 0·∞, 0/0,
//!   ∞/∞, √negative) give the default NaN (sign set) and IE.
//! - MIN/MAX return the second operand, unchanged, when either operand is a NaN (IE for QNaN
//!   and SNaN alike) or both are zeros.
//! - Conversions to int32 give 0x8000_0000 and IE for NaN, infinity and out-of-range values.

use core::cmp::Ordering;

/// Invalid-operation flag.
pub(crate) const IE: u32 = 0x01;
/// Denormal-operand flag.
pub(crate) const DE: u32 = 0x02;
/// Divide-by-zero flag.
pub(crate) const ZE: u32 = 0x04;
/// Overflow flag.
pub(crate) const OE: u32 = 0x08;
/// Underflow flag.
pub(crate) const UE: u32 = 0x10;
/// Precision (inexact) flag.
pub(crate) const PE: u32 = 0x20;
/// Denormals-are-zeros control bit.
const DAZ: u32 = 1 << 6;
/// Underflow mask bit.
const UM: u32 = 1 << 11;
/// Flush-to-zero control bit.
const FZ: u32 = 1 << 15;

/// The two-operand arithmetic instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arith {
    /// ADDPS/ADDSS/ADDPD/ADDSD: a + b.
    Add,
    /// SUBxx: a − b.
    Sub,
    /// MULxx: a · b.
    Mul,
    /// DIVxx: a / b.
    Div,
    /// MINxx: a < b ? a : b (b when either is a NaN or both are zeros).
    Min,
    /// MAXxx: a > b ? a : b (b when either is a NaN or both are zeros).
    Max,
}

/// Rounding control, MXCSR bits 13–14.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rc {
    Nearest,
    Down,
    Up,
    Zero,
}

fn rc_of(mxcsr: u32) -> Rc {
    match (mxcsr >> 13) & 3 {
        0 => Rc::Nearest,
        1 => Rc::Down,
        2 => Rc::Up,
        _ => Rc::Zero,
    }
}

/// A binary interchange format: fraction and exponent field widths.
#[derive(Clone, Copy)]
struct Fmt {
    frac: u32,
    exp: u32,
}

const F32: Fmt = Fmt { frac: 23, exp: 8 };
const F64: Fmt = Fmt { frac: 52, exp: 11 };

impl Fmt {
    fn bias(self) -> i32 {
        (1 << (self.exp - 1)) - 1
    }
    fn sign_bit(self) -> u64 {
        1 << (self.frac + self.exp)
    }
    fn frac_mask(self) -> u64 {
        (1 << self.frac) - 1
    }
    fn exp_field(self, bits: u64) -> u64 {
        (bits >> self.frac) & ((1 << self.exp) - 1)
    }
    fn exp_max(self) -> u64 {
        (1 << self.exp) - 1
    }
    fn quiet_bit(self) -> u64 {
        1 << (self.frac - 1)
    }
    fn inf(self, sign: bool) -> u64 {
        self.sign(sign) | (self.exp_max() << self.frac)
    }
    fn max_finite(self, sign: bool) -> u64 {
        self.sign(sign) | (((self.exp_max() - 1) << self.frac) | self.frac_mask())
    }
    fn zero(self, sign: bool) -> u64 {
        self.sign(sign)
    }
    fn sign(self, sign: bool) -> u64 {
        if sign {
            self.sign_bit()
        } else {
            0
        }
    }
    /// The default QNaN ("real indefinite"): sign set, quiet bit set, payload zero.
    fn default_nan(self) -> u64 {
        self.inf(true) | self.quiet_bit()
    }
}

/// Operand classes after DAZ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Zero,
    Finite,
    Inf,
    QNan,
    SNan,
}

/// An unpacked operand. For `Finite`, value = `sig` · 2^(`exp` − 62) with bit 62 of `sig`
/// set.
#[derive(Clone, Copy, Debug)]
struct Op {
    bits: u64,
    sign: bool,
    kind: Kind,
    exp: i32,
    sig: u64,
    /// A denormal read as such (DAZ off).
    denormal: bool,
}

impl Op {
    fn is_nan(&self) -> bool {
        matches!(self.kind, Kind::QNan | Kind::SNan)
    }
}

fn unpack(fmt: Fmt, bits: u64, mxcsr: u32) -> Op {
    let sign = bits & fmt.sign_bit() != 0;
    let e = fmt.exp_field(bits);
    let f = bits & fmt.frac_mask();
    let mut op = Op {
        bits,
        sign,
        kind: Kind::Zero,
        exp: 0,
        sig: 0,
        denormal: false,
    };
    if e == fmt.exp_max() {
        op.kind = if f == 0 {
            Kind::Inf
        } else if f & fmt.quiet_bit() != 0 {
            Kind::QNan
        } else {
            Kind::SNan
        };
    } else if e == 0 {
        if f != 0 && mxcsr & DAZ == 0 {
            // value = f · 2^(1 − bias − frac)
            let lz = f.leading_zeros() as i32; // f < 2^frac
            let shift = lz - 1; // top bit to 62
            op.kind = Kind::Finite;
            op.sig = f << shift;
            op.exp = 1 - fmt.bias() - fmt.frac as i32 + (63 - lz);
            op.denormal = true;
        }
    } else {
        op.kind = Kind::Finite;
        op.sig = ((1 << fmt.frac) | f) << (62 - fmt.frac);
        op.exp = e as i32 - fmt.bias();
    }
    op
}

/// Shifts right by `n`, ORing every bit shifted out into bit 0.
fn jam128(x: u128, n: u32) -> u128 {
    if n == 0 {
        x
    } else if n >= 128 {
        (x != 0) as u128
    } else {
        (x >> n) | ((x & ((1u128 << n) - 1)) != 0) as u128
    }
}

/// Rounds `s` (< 2^63) to an integer after dropping its `sh` ≥ 1 low bits. Returns the
/// rounded value and whether anything was dropped.
fn round_bits(s: u64, sh: u32, sign: bool, rc: Rc) -> (u64, bool) {
    let (q, rem, half) = if sh >= 64 {
        (0, s, u64::MAX) // half = 2^(sh−1) > s
    } else {
        (s >> sh, s & ((1u64 << sh) - 1), 1u64 << (sh - 1))
    };
    let inexact = rem != 0;
    let up = match rc {
        Rc::Nearest => rem > half || (rem == half && q & 1 == 1),
        Rc::Down => inexact && sign,
        Rc::Up => inexact && !sign,
        Rc::Zero => false,
    };
    (q + up as u64, inexact)
}

/// Rounds the nonzero value `sig` · 2^`e2` (bit 0 of `sig` may be a sticky bit) to `fmt`
/// under `mxcsr`, with overflow, underflow, FZ and precision handling.
fn round_pack(fmt: Fmt, sign: bool, e2: i32, sig: u128, mxcsr: u32) -> (u64, u32) {
    let rc = rc_of(mxcsr);
    let pos = 127 - sig.leading_zeros() as i32;
    let e = e2 + pos; // value in [2^e, 2^(e+1))
    let s = if pos > 62 {
        jam128(sig, (pos - 62) as u32) as u64
    } else {
        (sig << (62 - pos)) as u64
    };
    let p = fmt.frac + 1;
    let drop = 62 - fmt.frac;
    let emin = 1 - fmt.bias();
    let emax = fmt.bias();
    let (r, inexact) = round_bits(s, drop, sign, rc);
    if e >= emin {
        let (r, e) = if r >> p != 0 { (r >> 1, e + 1) } else { (r, e) };
        if e > emax {
            let bits = match (rc, sign) {
                (Rc::Nearest, _) | (Rc::Up, false) | (Rc::Down, true) => fmt.inf(sign),
                _ => fmt.max_finite(sign),
            };
            return (bits, OE | PE);
        }
        let bits = fmt.sign(sign) | (((e + fmt.bias()) as u64) << fmt.frac) | (r & fmt.frac_mask());
        return (bits, if inexact { PE } else { 0 });
    }
    // Tiny before rounding; tiny after rounding unless rounding to the format's precision
    // with an unbounded exponent reaches 2^emin.
    let tiny = !(r >> p != 0 && e + 1 == emin);
    let ue_masked = mxcsr & UM != 0;
    if tiny && ue_masked && mxcsr & FZ != 0 {
        return (fmt.zero(sign), UE | PE);
    }
    let sh = drop + (emin - e) as u32;
    let (r2, inexact2) = round_bits(s, sh, sign, rc);
    // A carry out of the denormal fraction lands in the exponent field as 1: the smallest
    // normal, as it should.
    let bits = fmt.sign(sign) | r2;
    let mut flags = if inexact2 { PE } else { 0 };
    if tiny && (inexact2 || !ue_masked) {
        flags |= UE;
    }
    (bits, flags)
}

/// A finite operand passed through unchanged except for FZ on a denormal result.
fn pass(fmt: Fmt, op: &Op, mxcsr: u32) -> (u64, u32) {
    round_pack(fmt, op.sign, op.exp - 62, op.sig as u128, mxcsr)
}

fn quiet(fmt: Fmt, bits: u64) -> u64 {
    bits | fmt.quiet_bit()
}

/// NaN result of a two-operand instruction with at least one NaN operand: the first operand
/// if it is a NaN, else the second, made quiet; IE when either is an SNaN.
fn nan2(fmt: Fmt, a: &Op, b: &Op) -> (u64, u32) {
    let flags = if a.kind == Kind::SNan || b.kind == Kind::SNan {
        IE
    } else {
        0
    };
    let r = if a.is_nan() { a.bits } else { b.bits };
    (quiet(fmt, r), flags)
}

fn denormal_flag(a: &Op, b: &Op) -> u32 {
    if a.denormal || b.denormal {
        DE
    } else {
        0
    }
}

/// Signed, ordered key of a non-NaN operand (zeros of both signs equal).
fn key(fmt: Fmt, op: &Op) -> i128 {
    match op.kind {
        Kind::Zero => 0,
        _ => {
            let mag = (op.bits & !fmt.sign_bit()) as i128;
            if op.sign {
                -mag
            } else {
                mag
            }
        }
    }
}

fn add(fmt: Fmt, a: &Op, b: &Op, mxcsr: u32) -> (u64, u32) {
    let de = denormal_flag(a, b);
    match (a.kind, b.kind) {
        (Kind::Inf, Kind::Inf) => {
            if a.sign == b.sign {
                (fmt.inf(a.sign), 0)
            } else {
                (fmt.default_nan(), IE)
            }
        }
        (Kind::Inf, _) => (fmt.inf(a.sign), de),
        (_, Kind::Inf) => (fmt.inf(b.sign), de),
        (Kind::Zero, Kind::Zero) => {
            let sign = if a.sign == b.sign {
                a.sign
            } else {
                rc_of(mxcsr) == Rc::Down
            };
            (fmt.zero(sign), 0)
        }
        (Kind::Zero, _) => {
            let (r, f) = pass(fmt, b, mxcsr);
            (r, f | de)
        }
        (_, Kind::Zero) => {
            let (r, f) = pass(fmt, a, mxcsr);
            (r, f | de)
        }
        _ => {
            // Larger magnitude first.
            let (x, y) = if (a.exp, a.sig) >= (b.exp, b.sig) {
                (a, b)
            } else {
                (b, a)
            };
            let d = (x.exp - y.exp) as u32;
            let ys = jam128(y.sig as u128, d) as u64;
            let sum = if x.sign == y.sign {
                x.sig + ys
            } else {
                x.sig - ys
            };
            if sum == 0 {
                return (fmt.zero(rc_of(mxcsr) == Rc::Down), de);
            }
            let (r, f) = round_pack(fmt, x.sign, x.exp - 62, sum as u128, mxcsr);
            (r, f | de)
        }
    }
}

fn mul(fmt: Fmt, a: &Op, b: &Op, mxcsr: u32) -> (u64, u32) {
    let de = denormal_flag(a, b);
    let sign = a.sign != b.sign;
    match (a.kind, b.kind) {
        (Kind::Inf, Kind::Zero) | (Kind::Zero, Kind::Inf) => (fmt.default_nan(), IE),
        (Kind::Inf, _) | (_, Kind::Inf) => (fmt.inf(sign), de),
        (Kind::Zero, _) | (_, Kind::Zero) => (fmt.zero(sign), de),
        _ => {
            let p = a.sig as u128 * b.sig as u128;
            let (r, f) = round_pack(fmt, sign, a.exp + b.exp - 124, p, mxcsr);
            (r, f | de)
        }
    }
}

fn div(fmt: Fmt, a: &Op, b: &Op, mxcsr: u32) -> (u64, u32) {
    let de = denormal_flag(a, b);
    let sign = a.sign != b.sign;
    match (a.kind, b.kind) {
        (Kind::Inf, Kind::Inf) | (Kind::Zero, Kind::Zero) => (fmt.default_nan(), IE),
        (Kind::Inf, _) => (fmt.inf(sign), de),
        (_, Kind::Inf) => (fmt.zero(sign), de),
        (Kind::Zero, _) => (fmt.zero(sign), de),
        (_, Kind::Zero) => (fmt.inf(sign), ZE | de),
        _ => {
            let n = (a.sig as u128) << 64;
            let d = b.sig as u128;
            let q = n / d;
            let q = q | (n % d != 0) as u128;
            let (r, f) = round_pack(fmt, sign, a.exp - b.exp - 64, q, mxcsr);
            (r, f | de)
        }
    }
}

fn min_max(fmt: Fmt, a: &Op, b: &Op, max: bool) -> (u64, u32) {
    if a.is_nan() || b.is_nan() {
        return (b.bits, IE);
    }
    let de = denormal_flag(a, b);
    let (ka, kb) = (key(fmt, a), key(fmt, b));
    let take_a = if max { ka > kb } else { ka < kb };
    (if take_a { a.bits } else { b.bits }, de)
}

fn arith(fmt: Fmt, op: Arith, a: u64, b: u64, mxcsr: u32) -> (u64, u32) {
    let x = unpack(fmt, a, mxcsr);
    let mut y = unpack(fmt, b, mxcsr);
    match op {
        Arith::Min => return min_max(fmt, &x, &y, false),
        Arith::Max => return min_max(fmt, &x, &y, true),
        _ => {}
    }
    if x.is_nan() || y.is_nan() {
        return nan2(fmt, &x, &y);
    }
    match op {
        Arith::Add => add(fmt, &x, &y, mxcsr),
        Arith::Sub => {
            y.sign = !y.sign;
            add(fmt, &x, &y, mxcsr)
        }
        Arith::Mul => mul(fmt, &x, &y, mxcsr),
        _ => div(fmt, &x, &y, mxcsr),
    }
}

/// Integer square root of `n` and whether it was inexact.
fn isqrt(n: u128) -> (u128, bool) {
    let mut x = n;
    let mut res = 0u128;
    let mut bit = 1u128 << 126;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if x >= res + bit {
            x -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    (res, x != 0)
}

fn sqrt(fmt: Fmt, a: u64, mxcsr: u32) -> (u64, u32) {
    let x = unpack(fmt, a, mxcsr);
    match x.kind {
        Kind::QNan => (a, 0),
        Kind::SNan => (quiet(fmt, a), IE),
        Kind::Zero => (fmt.zero(x.sign), 0),
        _ if x.sign => (fmt.default_nan(), IE),
        Kind::Inf => (a, 0),
        Kind::Finite => {
            let de = if x.denormal { DE } else { 0 };
            let t = x.exp - 62;
            let (m, t2) = if t & 1 != 0 {
                ((x.sig as u128) << 65, t - 65)
            } else {
                ((x.sig as u128) << 64, t - 64)
            };
            let (r, inexact) = isqrt(m);
            let (bits, f) = round_pack(fmt, false, t2 / 2, r | inexact as u128, mxcsr);
            (bits, f | de)
        }
    }
}

fn ordering(fmt: Fmt, a: &Op, b: &Op) -> Option<Ordering> {
    if a.is_nan() || b.is_nan() {
        None
    } else {
        Some(key(fmt, a).cmp(&key(fmt, b)))
    }
}

fn cmp(fmt: Fmt, a: u64, b: u64, pred: u8, mxcsr: u32) -> (bool, u32) {
    let x = unpack(fmt, a, mxcsr);
    let y = unpack(fmt, b, mxcsr);
    let ord = ordering(fmt, &x, &y);
    let signalling = matches!(pred & 7, 1 | 2 | 5 | 6);
    let snan = x.kind == Kind::SNan || y.kind == Kind::SNan;
    let flags = match ord {
        None if snan || signalling => IE,
        None => 0,
        Some(_) => denormal_flag(&x, &y),
    };
    let r = match (pred & 7, ord) {
        (0, o) => o == Some(Ordering::Equal),
        (1, o) => o == Some(Ordering::Less),
        (2, o) => matches!(o, Some(Ordering::Less | Ordering::Equal)),
        (3, o) => o.is_none(),
        (4, o) => o != Some(Ordering::Equal),
        (5, o) => o != Some(Ordering::Less),
        (6, o) => !matches!(o, Some(Ordering::Less | Ordering::Equal)),
        (_, o) => o.is_some(),
    };
    (r, flags)
}

fn comi(fmt: Fmt, a: u64, b: u64, quiet: bool, mxcsr: u32) -> ((bool, bool, bool), u32) {
    let x = unpack(fmt, a, mxcsr);
    let y = unpack(fmt, b, mxcsr);
    match ordering(fmt, &x, &y) {
        None => {
            let snan = x.kind == Kind::SNan || y.kind == Kind::SNan;
            ((true, true, true), if snan || !quiet { IE } else { 0 })
        }
        Some(o) => {
            let f = match o {
                Ordering::Greater => (false, false, false),
                Ordering::Less => (false, false, true),
                Ordering::Equal => (true, false, false),
            };
            (f, denormal_flag(&x, &y))
        }
    }
}

fn to_i32(fmt: Fmt, a: u64, truncate: bool, mxcsr: u32) -> (u32, u32) {
    const INDEFINITE: u32 = 0x8000_0000;
    let x = unpack(fmt, a, mxcsr);
    match x.kind {
        Kind::Zero => (0, 0),
        Kind::Inf | Kind::QNan | Kind::SNan => (INDEFINITE, IE),
        Kind::Finite => {
            if x.exp > 40 {
                return (INDEFINITE, IE);
            }
            let rc = if truncate { Rc::Zero } else { rc_of(mxcsr) };
            let (r, inexact) = round_bits(x.sig, (62 - x.exp) as u32, x.sign, rc);
            let limit = if x.sign { 1u64 << 31 } else { (1u64 << 31) - 1 };
            if r > limit {
                return (INDEFINITE, IE);
            }
            let v = if x.sign {
                (r as u32).wrapping_neg()
            } else {
                r as u32
            };
            (v, if inexact { PE } else { 0 })
        }
    }
}

/// Converts a finite-or-special operand of `from` into `to`, rounding when narrower.
fn convert(from: Fmt, to: Fmt, a: u64, mxcsr: u32) -> (u64, u32) {
    let x = unpack(from, a, mxcsr);
    match x.kind {
        Kind::Zero => (to.zero(x.sign), 0),
        Kind::Inf => (to.inf(x.sign), 0),
        Kind::QNan | Kind::SNan => {
            let flags = if x.kind == Kind::SNan { IE } else { 0 };
            let f = a & from.frac_mask();
            let f = if to.frac >= from.frac {
                f << (to.frac - from.frac)
            } else {
                f >> (from.frac - to.frac)
            };
            (to.inf(x.sign) | to.quiet_bit() | f, flags)
        }
        Kind::Finite => {
            let de = if x.denormal { DE } else { 0 };
            let (r, f) = round_pack(to, x.sign, x.exp - 62, x.sig as u128, mxcsr);
            (r, f | de)
        }
    }
}

/// ADDSS/SUBSS/MULSS/DIVSS/MINSS/MAXSS on one binary32 lane: `a` is the destination.
pub(crate) fn f32_arith(op: Arith, a: u32, b: u32, mxcsr: u32) -> (u32, u32) {
    let (r, f) = arith(F32, op, a as u64, b as u64, mxcsr);
    (r as u32, f)
}

/// ADDSD/SUBSD/MULSD/DIVSD/MINSD/MAXSD on one binary64 lane: `a` is the destination.
pub(crate) fn f64_arith(op: Arith, a: u64, b: u64, mxcsr: u32) -> (u64, u32) {
    arith(F64, op, a, b, mxcsr)
}

/// SQRTSS on one lane.
pub(crate) fn f32_sqrt(a: u32, mxcsr: u32) -> (u32, u32) {
    let (r, f) = sqrt(F32, a as u64, mxcsr);
    (r as u32, f)
}

/// SQRTSD on one lane.
pub(crate) fn f64_sqrt(a: u64, mxcsr: u32) -> (u64, u32) {
    sqrt(F64, a, mxcsr)
}

/// CMPPS/CMPSS predicate 0..=7 (imm & 7).
pub(crate) fn f32_cmp(a: u32, b: u32, pred: u8, mxcsr: u32) -> (bool, u32) {
    cmp(F32, a as u64, b as u64, pred, mxcsr)
}

/// CMPPD/CMPSD predicate 0..=7 (imm & 7).
pub(crate) fn f64_cmp(a: u64, b: u64, pred: u8, mxcsr: u32) -> (bool, u32) {
    cmp(F64, a, b, pred, mxcsr)
}

/// COMISS (`quiet` false) / UCOMISS (`quiet` true): ZF, PF, CF as hardware sets them
/// (unordered 1,1,1; greater 0,0,0; less 0,0,1; equal 1,0,0).
pub(crate) fn f32_comi(a: u32, b: u32, quiet: bool, mxcsr: u32) -> ((bool, bool, bool), u32) {
    comi(F32, a as u64, b as u64, quiet, mxcsr)
}

/// COMISD (`quiet` false) / UCOMISD (`quiet` true), as [`f32_comi`].
pub(crate) fn f64_comi(a: u64, b: u64, quiet: bool, mxcsr: u32) -> ((bool, bool, bool), u32) {
    comi(F64, a, b, quiet, mxcsr)
}

/// CVTSS2SD: exact, except that an SNaN is made quiet (IE) and a denormal raises DE.
pub(crate) fn f32_to_f64(a: u32, mxcsr: u32) -> (u64, u32) {
    convert(F32, F64, a as u64, mxcsr)
}

/// CVTSD2SS: rounds per RC (OE, UE, PE; FZ applies).
pub(crate) fn f64_to_f32(a: u64, mxcsr: u32) -> (u32, u32) {
    let (r, f) = convert(F64, F32, a, mxcsr);
    (r as u32, f)
}

/// CVTSI2SS: rounds per RC (PE when inexact).
pub(crate) fn i32_to_f32(a: i32, mxcsr: u32) -> (u32, u32) {
    if a == 0 {
        return (0, 0);
    }
    let (r, f) = round_pack(F32, a < 0, 0, a.unsigned_abs() as u128, mxcsr);
    (r as u32, f)
}

/// CVTSI2SD: always exact.
pub(crate) fn i32_to_f64(a: i32) -> u64 {
    if a == 0 {
        return 0;
    }
    // Every int32 fits in 53 bits: round_pack is exact and raises nothing.
    round_pack(F64, a < 0, 0, a.unsigned_abs() as u128, 0x1F80).0
}

/// CVTSS2SI (`truncate` false, rounds per RC) / CVTTSS2SI (`truncate` true).
pub(crate) fn f32_to_i32(a: u32, truncate: bool, mxcsr: u32) -> (u32, u32) {
    to_i32(F32, a as u64, truncate, mxcsr)
}

/// CVTSD2SI / CVTTSD2SI, as [`f32_to_i32`].
pub(crate) fn f64_to_i32(a: u64, truncate: bool, mxcsr: u32) -> (u32, u32) {
    to_i32(F64, a, truncate, mxcsr)
}

/// Whether a finite binary32 result of RCP/RSQRT is tiny (below 2^−126): such results are
/// flushed to a zero of the operand's sign, as the SDM describes.
fn flush_tiny(r: u64, sign: bool) -> u32 {
    if F32.exp_field(r) == 0 {
        F32.zero(sign) as u32
    } else {
        r as u32
    }
}

/// RCPSS: an approximation of 1/a. This one is 1/a correctly rounded to nearest (well within
/// the architectural relative error of 1.5 · 2^−12), tiny results flushed to zero; denormal
/// operands are read as zeros (giving ±∞), as hardware does. Raises no flags.
pub(crate) fn f32_rcp(a: u32, mxcsr: u32) -> u32 {
    let x = unpack(F32, a as u64, mxcsr | DAZ);
    match x.kind {
        Kind::QNan | Kind::SNan => quiet(F32, a as u64) as u32,
        Kind::Zero => F32.inf(x.sign) as u32,
        Kind::Inf => F32.zero(x.sign) as u32,
        Kind::Finite => {
            let n = 1u128 << 126;
            let d = x.sig as u128;
            let q = n / d | (n % d != 0) as u128;
            // 1/a = 2^(62 − exp) / sig = q · 2^(−64 − exp)
            let (r, _) = round_pack(F32, x.sign, -64 - x.exp, q, 0x1F80);
            flush_tiny(r, x.sign)
        }
    }
}

/// RSQRTSS: an approximation of 1/√a, computed as [`f32_rcp`] (correctly rounded, denormal
/// operands read as zeros); negative operands give the default NaN. Raises no flags.
pub(crate) fn f32_rsqrt(a: u32, mxcsr: u32) -> u32 {
    let x = unpack(F32, a as u64, mxcsr | DAZ);
    match x.kind {
        Kind::QNan | Kind::SNan => quiet(F32, a as u64) as u32,
        Kind::Zero => F32.inf(x.sign) as u32,
        _ if x.sign => F32.default_nan() as u32,
        Kind::Inf => 0,
        Kind::Finite => {
            // a = sig · 2^t; make t even, then 1/√a = 2^(−t/2) / √sig'.
            let t = x.exp - 62;
            let (s, t) = if t & 1 != 0 {
                ((x.sig as u128) << 1, t - 1)
            } else {
                (x.sig as u128, t)
            };
            // √s to 64+ bits: isqrt(s · 2^64) = √s · 2^32.
            let (root, inexact) = isqrt(s << 64);
            // 1/√s = 2^32 / root, to 64 bits: 2^(32+96) / root · 2^−96.
            let n = 1u128 << 127;
            let q = n / root | ((n % root != 0) || inexact) as u128;
            // value = q · 2^(−95) · 2^(−t/2)
            let (r, _) = round_pack(F32, false, -95 - t / 2, q, 0x1F80);
            flush_tiny(r, false)
        }
    }
}
