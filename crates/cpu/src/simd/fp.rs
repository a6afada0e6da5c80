//! IEEE-754 binary32/binary64 arithmetic as SSE and SSE2 perform it, in integers only, so
//! that results (NaN payloads included) are the same on every host.
//!
//! Every operation takes the guest's MXCSR (rounding control in bits 13–14, DAZ in bit 6, FZ
//! in bit 15, exception masks in bits 7–12) and returns the result bits together with the
//! exception flags it raises (MXCSR bits 0–5). The caller ORs the flags into MXCSR and, when a
//! raised flag is unmasked, faults without writing the destination; so the result returned is
//! always the *masked* response.
//!
//! The flags are those the processor sets, for unmasked exceptions too (the host tests check
//! both against the processor, the unmasked ones by catching its #XM as SIGFPE):
//! - An unmasked pre-computation exception (IE, DE, ZE) stops the instruction before the
//!   computation: only IE, DE and ZE are then reported (see [`reported_flags`]).
//! - Masked overflow raises OE and PE. Unmasked, it raises OE, plus PE only when rounding the
//!   significand (exponent unbounded) was inexact.
//! - Masked underflow (tiny and inexact) raises UE and PE; a tiny exact result raises nothing.
//!   Unmasked, a tiny result raises UE even when exact, plus PE only when rounding the
//!   significand (exponent unbounded) was inexact; FZ does not apply.
//!
//! The result returned alongside unmasked flags is the masked response; the caller does not
//! write it.
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
/// Overflow mask bit.
const OM: u32 = 1 << 10;
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
    /// The operand as read: a denormal under DAZ becomes a zero of the same sign.
    fn read_bits(&self, fmt: Fmt) -> u64 {
        if self.kind == Kind::Zero {
            fmt.zero(self.sign)
        } else {
            self.bits
        }
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
            // Unmasked, the instruction faults with OE, and PE when the significand's rounding
            // (with the exponent unbounded) was inexact.
            let flags = if mxcsr & OM != 0 || inexact {
                OE | PE
            } else {
                OE
            };
            return (bits, flags);
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
    let flags = match (tiny, ue_masked) {
        // Unmasked, a tiny result faults with UE, exact or not, and PE when the significand's
        // rounding (with the exponent unbounded) was inexact.
        (true, false) if inexact => UE | PE,
        (true, false) => UE,
        (true, true) if inexact2 => UE | PE,
        _ if inexact2 => PE,
        _ => 0,
    };
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
            let ((sa, ta), (sb, tb)) = (int_sig(fmt, a), int_sig(fmt, b));
            // Two 24-bit significands multiply in 64 bits; two 53-bit ones need 128.
            let p = if fmt.frac <= 23 {
                (sa * sb) as u128
            } else {
                sa as u128 * sb as u128
            };
            let (r, f) = round_pack(fmt, sign, ta + tb, p, mxcsr);
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
        // Division by zero takes precedence over a denormal dividend.
        (_, Kind::Zero) => (fmt.inf(sign), ZE),
        _ => {
            // Long division in 64-bit steps until the quotient has p + 2 bits or more; the
            // remainder becomes the sticky bit.
            let ((sa, ta), (sb, tb)) = (int_sig(fmt, a), int_sig(fmt, b));
            let p = fmt.frac + 1;
            let step = 64 - p; // remainder < sb < 2^p, so remainder · 2^step fits
            let (mut q, mut rem, mut bits) = (sa / sb, sa % sb, 0);
            while bits < p + 2 {
                let x = rem << step;
                q = (q << step) | (x / sb);
                rem = x % sb;
                bits += step;
            }
            let q = q | (rem != 0) as u64;
            let (r, f) = round_pack(fmt, sign, ta - tb - bits as i32, q as u128, mxcsr);
            (r, f | de)
        }
    }
}

fn min_max(fmt: Fmt, a: &Op, b: &Op, max: bool) -> (u64, u32) {
    // The operand returned is the one read, so DAZ shows in it.
    if a.is_nan() || b.is_nan() {
        return (b.read_bits(fmt), IE);
    }
    let de = denormal_flag(a, b);
    let (ka, kb) = (key(fmt, a), key(fmt, b));
    let take_a = if max { ka > kb } else { ka < kb };
    let r = if take_a { a } else { b };
    (r.read_bits(fmt), de)
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

/// Integer square root of `n` (digit by digit) and whether it was inexact.
fn isqrt64(n: u64) -> (u64, bool) {
    if n == 0 {
        return (0, false);
    }
    let (mut x, mut res) = (n, 0u64);
    let mut bit = 1u64 << ((63 - n.leading_zeros()) & !1);
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

/// [`isqrt64`] for 128-bit operands: an estimate from the high half, then Newton's iteration
/// from above, which ends on the floor of the root.
fn isqrt128(n: u128) -> (u128, bool) {
    if n >> 64 == 0 {
        let (r, inexact) = isqrt64(n as u64);
        return (r as u128, inexact);
    }
    let (r0, _) = isqrt64((n >> 64) as u64); // ≥ 1
    let mut x = (r0 as u128) << 32;
    // One step lands at or above ⌊√n⌋; the next ones descend to it.
    x = (x + n / x) >> 1;
    loop {
        let y = (x + n / x) >> 1;
        if y >= x {
            break;
        }
        x = y;
    }
    (x, x.checked_mul(x) != Some(n))
}

/// The operand's significand as a `frac + 1`-bit integer `s` and `t` with value = s · 2^t.
fn int_sig(fmt: Fmt, x: &Op) -> (u64, i32) {
    (x.sig >> (62 - fmt.frac), x.exp - fmt.frac as i32)
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
            let (s, t) = int_sig(fmt, &x);
            // √(s · 2^k) with k ≥ p + 4 and t − k even has p + 2 bits or more: enough, with
            // a sticky bit, to round correctly.
            let p = fmt.frac as i32 + 1;
            let k = p + 4 + ((t - p - 4) & 1);
            let (r, inexact) = if k + p <= 64 {
                let (r, i) = isqrt64(s << k);
                (r as u128, i)
            } else {
                isqrt128((s as u128) << k)
            };
            let (bits, f) = round_pack(fmt, false, (t - k) / 2, r | inexact as u128, mxcsr);
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

/// The pre-computation exceptions: invalid operation, denormal operand, divide by zero.
pub(crate) const PRE_COMPUTATION: u32 = IE | DE | ZE;

/// The flags hardware reports for `flags` raised under `mxcsr`: when an unmasked
/// pre-computation exception (IE, DE, ZE) is raised, the instruction stops before computing
/// and reports no OE, UE or PE. The operations below already apply this to their own lane;
/// for a packed instruction, apply it to the OR of every lane's flags (hardware checks the
/// pre-computation exceptions of all lanes first).
pub(crate) fn reported_flags(flags: u32, mxcsr: u32) -> u32 {
    let unmasked = !(mxcsr >> 7) & 0x3F;
    if flags & PRE_COMPUTATION & unmasked != 0 {
        flags & PRE_COMPUTATION
    } else {
        flags
    }
}

/// ADDSS/SUBSS/MULSS/DIVSS/MINSS/MAXSS on one binary32 lane: `a` is the destination.
pub(crate) fn f32_arith(op: Arith, a: u32, b: u32, mxcsr: u32) -> (u32, u32) {
    let (r, f) = arith(F32, op, a as u64, b as u64, mxcsr);
    (r as u32, reported_flags(f, mxcsr))
}

/// ADDSD/SUBSD/MULSD/DIVSD/MINSD/MAXSD on one binary64 lane: `a` is the destination.
pub(crate) fn f64_arith(op: Arith, a: u64, b: u64, mxcsr: u32) -> (u64, u32) {
    let (r, f) = arith(F64, op, a, b, mxcsr);
    (r, reported_flags(f, mxcsr))
}

/// SQRTSS on one lane.
pub(crate) fn f32_sqrt(a: u32, mxcsr: u32) -> (u32, u32) {
    let (r, f) = sqrt(F32, a as u64, mxcsr);
    (r as u32, reported_flags(f, mxcsr))
}

/// SQRTSD on one lane.
pub(crate) fn f64_sqrt(a: u64, mxcsr: u32) -> (u64, u32) {
    let (r, f) = sqrt(F64, a, mxcsr);
    (r, reported_flags(f, mxcsr))
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
    (r as u32, reported_flags(f, mxcsr))
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
            // 1/(s · 2^t) = 2^63 / s · 2^(−63 − t), the quotient with 40 bits and a sticky bit.
            let (s, t) = int_sig(F32, &x);
            let n = 1u64 << 63;
            let q = (n / s) | !n.is_multiple_of(s) as u64;
            let (r, _) = round_pack(F32, x.sign, -63 - t, q as u128, 0x1F80);
            flush_tiny(r, x.sign)
        }
    }
}

/// RSQRTSS: an approximation of 1/√a: 1/√a from a 32-bit intermediate, rounded to nearest
/// (relative error below 2^−23), tiny results flushed to zero, denormal operands read as
/// zeros (giving ±∞); negative operands give the default NaN. Raises no flags.
pub(crate) fn f32_rsqrt(a: u32, mxcsr: u32) -> u32 {
    let x = unpack(F32, a as u64, mxcsr | DAZ);
    match x.kind {
        Kind::QNan | Kind::SNan => quiet(F32, a as u64) as u32,
        Kind::Zero => F32.inf(x.sign) as u32,
        _ if x.sign => F32.default_nan() as u32,
        Kind::Inf => 0,
        Kind::Finite => {
            // a = s · 2^t = m · 2^(t − k) with m = s · 2^k < 2^63 and t − k even; then
            // 1/√a = 2^−((t − k)/2) / √m ≈ (2^63 / ⌊√m⌋) · 2^(−63 − (t − k)/2), with √m ≥ 2^30.
            let (s, t) = int_sig(F32, &x);
            let k = 38 + (t & 1);
            let (root, inexact) = isqrt64(s << k);
            let n = 1u64 << 63;
            let q = (n / root) | (!n.is_multiple_of(root) || inexact) as u64;
            let (r, _) = round_pack(F32, false, -63 - (t - k) / 2, q as u128, 0x1F80);
            flush_tiny(r, false)
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-checked bit patterns: NaN propagation, default NaN, signed zeros, rounding and the
    //! flags, independent of the host's floating point.
    use super::*;

    const M: u32 = 0x1F80;
    const RD: u32 = M | 1 << 13;
    const RU: u32 = M | 2 << 13;
    const RZ: u32 = M | 3 << 13;

    #[test]
    fn nan_propagation_and_default_nan() {
        let snan_a = 0x7F80_1234;
        let qnan_b = 0xFFC0_5678;
        // First operand NaN wins and is made quiet; SNaN anywhere raises IE.
        assert_eq!(f32_arith(Arith::Add, snan_a, qnan_b, M), (0x7FC0_1234, IE));
        assert_eq!(f32_arith(Arith::Mul, qnan_b, snan_a, M), (0xFFC0_5678, IE));
        assert_eq!(
            f32_arith(Arith::Sub, 0x3F80_0000, qnan_b, M),
            (0xFFC0_5678, 0)
        );
        assert_eq!(
            f32_arith(Arith::Div, 0x3F80_0000, snan_a, M),
            (0x7FC0_1234, IE)
        );
        // Invalid operations give the default NaN.
        assert_eq!(
            f32_arith(Arith::Sub, 0x7F80_0000, 0x7F80_0000, M),
            (0xFFC0_0000, IE)
        );
        assert_eq!(
            f32_arith(Arith::Mul, 0x8000_0000, 0x7F80_0000, M),
            (0xFFC0_0000, IE)
        );
        assert_eq!(
            f64_arith(Arith::Div, 0, 0x8000_0000_0000_0000, M),
            (0xFFF8 << 48, IE)
        );
        assert_eq!(f64_sqrt(0xBFF0 << 48, M), (0xFFF8 << 48, IE));
        assert_eq!(f64_sqrt(0x8000 << 48, M), (0x8000 << 48, 0));
        // MIN/MAX return the source unchanged, SNaN included.
        assert_eq!(f32_arith(Arith::Min, qnan_b, snan_a, M), (snan_a, IE));
        assert_eq!(f32_arith(Arith::Max, 0x8000_0000, 0, M), (0, 0));
        assert_eq!(f32_arith(Arith::Min, 0, 0x8000_0000, M), (0x8000_0000, 0));
        // Conversions keep the payload's top bits.
        assert_eq!(f32_to_f64(0x7F80_0001, M), (0x7FF8_0000_2000_0000, IE));
        assert_eq!(f64_to_f32(0xFFF0_0000_2000_0001, M), (0xFFC0_0001, IE));
        assert_eq!(f32_to_i32(0x7FC0_0000, false, M), (0x8000_0000, IE));
        assert_eq!(f64_to_i32(0x41E0 << 48, true, M), (0x8000_0000, IE)); // 2^31
        assert_eq!(f64_to_i32(0xC1E0 << 48, true, M), (0x8000_0000, 0)); // −2^31
    }

    #[test]
    fn rounding_signed_zero_and_flags() {
        // 1 + 2^−24 is a tie: to even (1.0), up (1 + 2^−23).
        let tie = 0x3380_0000;
        assert_eq!(
            f32_arith(Arith::Add, 0x3F80_0000, tie, M),
            (0x3F80_0000, PE)
        );
        assert_eq!(
            f32_arith(Arith::Add, 0x3F80_0000, tie, RU),
            (0x3F80_0001, PE)
        );
        // x − x is +0, or −0 when rounding down.
        assert_eq!(f32_arith(Arith::Sub, 0x4000_0000, 0x4000_0000, M), (0, 0));
        assert_eq!(
            f32_arith(Arith::Sub, 0x4000_0000, 0x4000_0000, RD),
            (0x8000_0000, 0)
        );
        // Overflow: ∞ to nearest, the largest finite toward zero.
        assert_eq!(
            f32_arith(Arith::Mul, 0x7F00_0000, 0x4000_0000, M),
            (0x7F80_0000, OE | PE)
        );
        assert_eq!(
            f32_arith(Arith::Mul, 0x7F00_0000, 0x4000_0000, RZ),
            (0x7F7F_FFFF, OE | PE)
        );
        // Underflow to a denormal (inexact), exact denormal (no flag), FZ, DAZ.
        assert_eq!(
            f32_arith(Arith::Mul, 0x0080_0001, 0x3F00_0000, M),
            (0x0040_0000, UE | PE)
        );
        assert_eq!(
            f32_arith(Arith::Mul, 0x0080_0000, 0x3F00_0000, M),
            (0x0040_0000, 0)
        );
        assert_eq!(
            f32_arith(Arith::Mul, 0x0080_0000, 0x3F00_0000, M | FZ),
            (0, UE | PE)
        );
        // Unmasked underflow: UE even when exact.
        assert_eq!(
            f32_arith(Arith::Mul, 0x0080_0000, 0x3F00_0000, M & !UM),
            (0x0040_0000, UE)
        );
        assert_eq!(f32_arith(Arith::Add, 0x0000_0001, 0, M), (1, DE));
        assert_eq!(f32_arith(Arith::Add, 0x0000_0001, 0, M | DAZ), (0, 0));
        // A denormal operand with an inexact result: DE and PE, or DE alone when DE is
        // unmasked (the computation does not happen).
        let third = 0x3EAA_AAAB;
        assert_eq!(
            f32_arith(Arith::Add, 0x0000_0001, third, M),
            (third, DE | PE)
        );
        assert_eq!(
            f32_arith(Arith::Add, 0x0000_0001, third, M & !(1 << 8)),
            (third, DE)
        );
        assert_eq!(reported_flags(ZE | PE, M & !(1 << 9)), ZE);
        assert_eq!(reported_flags(DE | PE, M & !(1 << 12)), DE | PE);
        // Division by zero.
        assert_eq!(f32_arith(Arith::Div, 0xBF80_0000, 0, M), (0xFF80_0000, ZE));
        // Exact square root and a correctly rounded one.
        assert_eq!(f64_sqrt(0x4022 << 48, M), (0x4008 << 48, 0)); // √9 = 3
        assert_eq!(f32_sqrt(0x4000_0000, M), (0x3FB5_04F3, PE)); // √2
        assert_eq!(i32_to_f32(0x0100_0001, M), (0x4B80_0000, PE));
        assert_eq!(i32_to_f32(0x0100_0001, RU), (0x4B80_0001, PE));
        assert_eq!(i32_to_f64(-3), 0xC008 << 48);
        assert_eq!(f32_to_i32(0x3FC0_0000, false, M), (2, PE)); // 1.5 → 2
        assert_eq!(f32_to_i32(0x4020_0000, false, M), (2, PE)); // 2.5 → 2
        assert_eq!(f32_to_i32(0xBFC0_0000, true, M), (0xFFFF_FFFF, PE)); // −1.5 → −1
    }

    #[test]
    fn compares() {
        let q = 0x7FC0_0000;
        let s = 0x7F80_0001;
        assert_eq!(f32_cmp(q, 0, 0, M), (false, 0));
        assert_eq!(f32_cmp(q, 0, 1, M), (false, IE));
        assert_eq!(f32_cmp(s, 0, 4, M), (true, IE));
        assert_eq!(f32_cmp(0x8000_0000, 0, 0, M), (true, 0));
        assert_eq!(f32_cmp(1, 0, 6, M | DAZ), (false, 0)); // NLE: the denormal reads as 0
        assert_eq!(f32_comi(q, 0, true, M), ((true, true, true), 0));
        assert_eq!(f32_comi(q, 0, false, M), ((true, true, true), IE));
        assert_eq!(f64_comi(0, 1, false, M), ((false, false, true), DE));
        assert_eq!(f64_comi(0, 1, false, M | DAZ), ((true, false, false), 0));
    }

    #[test]
    fn integer_square_roots() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = ((x as u128) << 64 | x.rotate_left(17) as u128) >> (i % 128);
            let (r, inexact) = isqrt128(n);
            assert!(
                r * r <= n && (r + 1) * (r + 1) > n,
                "isqrt128({n:#x}) = {r:#x}"
            );
            assert_eq!(inexact, r * r != n);
            let m = n as u64;
            let (r, inexact) = isqrt64(m);
            let (r, m) = (r as u128, m as u128);
            assert!(
                r * r <= m && (r + 1) * (r + 1) > m,
                "isqrt64({m:#x}) = {r:#x}"
            );
            assert_eq!(inexact, r * r != m);
        }
        assert_eq!(isqrt128(u128::MAX), (u64::MAX as u128, true));
        assert_eq!(isqrt128(1 << 100), (1 << 50, false));
    }

    #[test]
    fn reciprocal_specials() {
        assert_eq!(f32_rcp(0x8000_0000, M), 0xFF80_0000);
        assert_eq!(f32_rcp(0x7F80_0000, M), 0);
        assert_eq!(f32_rcp(0x3F80_0000, M), 0x3F80_0000);
        assert_eq!(f32_rcp(0x7F80_0001, M), 0x7FC0_0001);
        assert_eq!(f32_rsqrt(0xBF80_0000, M), 0xFFC0_0000);
        assert_eq!(f32_rsqrt(0x4080_0000, M), 0x3F00_0000); // 1/√4
        assert_eq!(f32_rsqrt(0, M), 0x7F80_0000);
    }
}

/// Differential tests against the host processor's SSE/SSE2 (`asm!`): every case loads
/// MXCSR = all exceptions masked | RC | FZ | DAZ, runs the scalar instruction, reads MXCSR
/// back and compares the result bits and the six exception flags with this module's.
///
/// Each instruction class runs `WASM86_SSE_CASES` cases under each of the 16 MXCSR settings
/// (4 rounding modes × FZ × DAZ): by default 62 500 per setting (10^6 per class; about 5 s
/// for everything) in builds with debug assertions, as `cargo test` makes them, and 10^6 per
/// setting (1.6 · 10^7 per class; about 50 s) with `--release`. Operands come from a
/// fixed-seed xorshift generator biased towards zeros, denormals, infinities, NaNs with
/// payloads, exponents near overflow and underflow, operand pairs whose product, quotient, sum
/// or difference lands on those thresholds, and significands on rounding ties. A last test
/// unmasks exceptions and catches the host's faults (Linux).
#[cfg(all(test, target_arch = "x86_64"))]
#[allow(unsafe_code)]
mod host_tests {
    use super::*;
    use std::arch::asm;

    const MASKS: u32 = 0x1F80;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Cases per MXCSR setting for one instruction class.
    fn cases() -> usize {
        let default = if cfg!(debug_assertions) {
            1_000_000 / 16
        } else {
            1_000_000
        };
        std::env::var("WASM86_SSE_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// The 16 MXCSR settings: RC in bits 13–14, FZ, DAZ, every exception masked.
    fn mxcsr_of(i: usize) -> u32 {
        let i = i as u32;
        MASKS | ((i & 3) << 13) | if i & 4 != 0 { FZ } else { 0 } | if i & 8 != 0 { DAZ } else { 0 }
    }

    /// Fraction patterns on or next to rounding boundaries, or random.
    fn frac(r: &mut Rng, fmt: Fmt) -> u64 {
        let m = fmt.frac_mask();
        let x = r.next();
        match r.below(10) {
            0 => 0,
            1 => m,
            2 => 1,
            3 => m - 1,
            4 => 1 << (fmt.frac - 1),
            5 => (x & m) | ((1 << r.below(fmt.frac as u64)) - 1), // low ones
            6 => (x & m) & !((1 << r.below(fmt.frac as u64)) - 1), // low zeros
            7 => (x >> 20 & m) & !0xFFFF, // few significant bits: exact products
            _ => x & m,
        }
    }

    fn with_exp(fmt: Fmt, sign: bool, e: i64, f: u64) -> u64 {
        let e = e.clamp(0, fmt.exp_max() as i64) as u64;
        fmt.sign(sign) | e << fmt.frac | (f & fmt.frac_mask())
    }

    fn gen(r: &mut Rng, fmt: Fmt) -> u64 {
        let sign = r.next() & 1 != 0;
        let f = frac(r, fmt);
        let emax = fmt.exp_max() as i64;
        let bias = fmt.bias() as i64;
        let q = fmt.quiet_bit();
        match r.below(20) {
            0 => fmt.zero(sign),
            1 | 2 => fmt.sign(sign) | (f & fmt.frac_mask()).max(1),
            3 => fmt.inf(sign),
            4 => fmt.inf(sign) | q | (f & (q - 1)),
            5 => fmt.inf(sign) | (f & (q - 1)).max(1),
            6 => with_exp(fmt, sign, emax - 1 - r.below(3) as i64, f),
            7 => with_exp(fmt, sign, 1 + r.below(3) as i64, f),
            8 | 9 => with_exp(fmt, sign, bias - 4 + r.below(9) as i64, f),
            10 => with_exp(fmt, sign, bias / 2 + r.below(5) as i64, f),
            11 => with_exp(fmt, sign, bias + bias / 2 - 2 + r.below(5) as i64, f),
            12 => with_exp(fmt, sign, bias + 20 + r.below(20) as i64, f), // near int32 range
            // binary32's underflow range and overflow threshold (for CVTSD2SS)
            13 => with_exp(fmt, sign, bias - 126 - r.below(26) as i64, f),
            14 => with_exp(fmt, sign, bias + 127 + r.below(2) as i64, f),
            _ => with_exp(fmt, sign, 1 + r.below(emax as u64 - 1) as i64, f),
        }
    }

    /// A second operand: independent, close to `a`, or with an exponent that puts a·b or a/b
    /// near the overflow or underflow threshold.
    fn gen_b(r: &mut Rng, fmt: Fmt, a: u64) -> u64 {
        let ea = fmt.exp_field(a) as i64;
        let bias = fmt.bias() as i64;
        let emax = fmt.exp_max() as i64;
        let sign = r.next() & 1 != 0;
        match r.below(12) {
            0 => a ^ fmt.sign(sign),
            1 => {
                (a & !fmt.sign_bit())
                    .wrapping_add(r.below(5))
                    .wrapping_sub(2)
                    | fmt.sign(sign)
            }
            2 => with_exp(
                fmt,
                sign,
                ea - r.below(fmt.frac as u64 + 3) as i64,
                frac(r, fmt),
            ),
            3 | 4 => {
                // ea + eb − bias ≈ 0 or ≈ emax (products), ea − eb + bias likewise (quotients).
                let target = match r.below(4) {
                    0 => 1 - r.below(fmt.frac as u64 + 2) as i64,
                    1 => 1 + r.below(2) as i64,
                    2 => emax - 1 - r.below(2) as i64,
                    _ => emax,
                };
                let eb = if r.next() & 1 != 0 {
                    target - ea + bias
                } else {
                    ea - target + bias
                };
                with_exp(fmt, sign, eb.clamp(1, emax - 1), frac(r, fmt))
            }
            5 | 6 => near_threshold(r, fmt, a),
            _ => gen(r, fmt),
        }
    }

    /// A second operand that makes a·b, a/b, a+b or a−b land within a few ulps of the
    /// smallest normal, inside the denormal range, or at the overflow threshold (found with
    /// the host's binary64 arithmetic: only the test's operands depend on it).
    fn near_threshold(r: &mut Rng, fmt: Fmt, a: u64) -> u64 {
        let single = fmt.frac == 23;
        let to_f = |x: u64| {
            if single {
                f32::from_bits(x as u32) as f64
            } else {
                f64::from_bits(x)
            }
        };
        let from_f = |x: f64| {
            if single {
                (x as f32).to_bits() as u64
            } else {
                x.to_bits()
            }
        };
        let p = fmt.frac as i32 + 1;
        let emin = 1 - fmt.bias();
        let ulp = 2f64.powi(-p);
        let (base, ulp) = match r.below(3) {
            0 => (2f64.powi(emin), ulp),
            1 => (2f64.powi(emin - 1 - r.below(p as u64) as i32), ulp),
            // Overflow: the largest finite value and the half-ulp above it.
            _ => (2f64.powi(fmt.bias()) * (2.0 - 2.0 * ulp), ulp),
        };
        let t = base * (1.0 + (r.below(9) as f64 - 4.0) * ulp / 2.0);
        let t = if r.next() & 1 != 0 { -t } else { t };
        let av = to_f(a);
        let b = match r.below(4) {
            0 => t / av,
            1 => av / t,
            2 => t - av,
            _ => av - t,
        };
        from_f(b)
    }

    /// Collects mismatches; panics at the end with the first few.
    struct Check {
        name: &'static str,
        cases: u64,
        fails: u64,
        first: Vec<String>,
    }

    impl Check {
        fn new(name: &'static str) -> Check {
            Check {
                name,
                cases: 0,
                fails: 0,
                first: Vec::new(),
            }
        }
        fn case(&mut self, ok: bool, msg: impl FnOnce() -> String) {
            self.cases += 1;
            if !ok {
                self.fails += 1;
                if self.first.len() < 12 {
                    self.first.push(msg());
                }
            }
        }
        fn finish(self) {
            assert!(
                self.fails == 0,
                "{}: {} of {} cases differ from the host:\n{}",
                self.name,
                self.fails,
                self.cases,
                self.first.join("\n")
            );
            assert!(self.cases > 0);
        }
    }

    thread_local! {
        /// Where the current [`host!`] block resumes after a fault.
        static RESUME: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
        /// Whether the last [`host!`] block faulted.
        static FAULTED: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    }

    /// Runs the instructions between loading `mx` into MXCSR and reading it back; returns the
    /// flags.
    ///
    /// With an exception unmasked the instruction faults (#XM, SIGFPE on Linux): the
    /// handler `trap::on_fpe` resumes at the label after the instructions, whose address the
    /// block leaves in [`RESUME`] beforehand, and sets [`FAULTED`]; MXCSR then holds the flags
    /// the processor set before faulting.
    macro_rules! host {
        ($mx:expr, [$($insn:expr),+], $($ops:tt)*) => {{
            let mx: u32 = $mx;
            let mut saved: u32 = 0;
            let mut out: u32 = 0;
            let resume = RESUME.with(|c| c.as_ptr());
            // SAFETY: the instructions only read and write the named registers and the local
            // words passed by pointer; the caller's MXCSR is restored before the end, also
            // after a fault (the handler only moves the instruction pointer to label 2).
            unsafe {
                asm!(
                    "lea {tmp}, [rip + 2f]",
                    "mov [{resume}], {tmp}",
                    "stmxcsr [{saved}]",
                    "ldmxcsr [{mx}]",
                    $($insn,)+
                    "2:",
                    "stmxcsr [{out}]",
                    "ldmxcsr [{saved}]",
                    mx = in(reg) &mx as *const u32,
                    saved = in(reg) &mut saved as *mut u32,
                    out = in(reg) &mut out as *mut u32,
                    resume = in(reg) resume,
                    tmp = out(reg) _,
                    $($ops)*
                    options(nostack),
                );
            }
            RESUME.with(|c| c.set(0));
            out & 0x3F
        }};
    }

    macro_rules! host_bin {
        ($name:ident, $insn:literal, $t:ty) => {
            fn $name(a: $t, b: $t, mx: u32) -> ($t, u32) {
                let mut x = a;
                let f = host!(mx, [concat!($insn, " {x}, {y}")], x = inout(xmm_reg) x, y = in(xmm_reg) b,);
                (x, f)
            }
        };
    }

    macro_rules! host_un {
        ($name:ident, $insn:literal, $t:ty => $u:ty) => {
            fn $name(a: $t, mx: u32) -> ($u, u32) {
                let x: $u;
                let f = host!(mx, [concat!($insn, " {x}, {y}")], x = out(xmm_reg) x, y = in(xmm_reg) a,);
                (x, f)
            }
        };
    }

    host_bin!(h_addss, "addss", u32);
    host_bin!(h_subss, "subss", u32);
    host_bin!(h_mulss, "mulss", u32);
    host_bin!(h_divss, "divss", u32);
    host_bin!(h_minss, "minss", u32);
    host_bin!(h_maxss, "maxss", u32);
    host_bin!(h_addsd, "addsd", u64);
    host_bin!(h_subsd, "subsd", u64);
    host_bin!(h_mulsd, "mulsd", u64);
    host_bin!(h_divsd, "divsd", u64);
    host_bin!(h_minsd, "minsd", u64);
    host_bin!(h_maxsd, "maxsd", u64);
    host_un!(h_sqrtss, "sqrtss", u32 => u32);
    host_un!(h_sqrtsd, "sqrtsd", u64 => u64);
    host_un!(h_cvtss2sd, "cvtss2sd", u32 => u64);
    host_un!(h_cvtsd2ss, "cvtsd2ss", u64 => u32);
    host_un!(h_rcpss, "rcpss", u32 => u32);
    host_un!(h_rsqrtss, "rsqrtss", u32 => u32);

    macro_rules! host_to_int {
        ($name:ident, $insn:literal, $t:ty) => {
            fn $name(a: $t, mx: u32) -> (u32, u32) {
                let x: u32;
                let f = host!(mx, [concat!($insn, " {x:e}, {y}")], x = out(reg) x, y = in(xmm_reg) a,);
                (x, f)
            }
        };
    }
    host_to_int!(h_cvtss2si, "cvtss2si", u32);
    host_to_int!(h_cvttss2si, "cvttss2si", u32);
    host_to_int!(h_cvtsd2si, "cvtsd2si", u64);
    host_to_int!(h_cvttsd2si, "cvttsd2si", u64);

    fn h_cvtsi2ss(a: i32, mx: u32) -> (u32, u32) {
        let x: u32;
        let f = host!(mx, ["cvtsi2ss {x}, {y:e}"], x = out(xmm_reg) x, y = in(reg) a,);
        (x, f)
    }

    fn h_cvtsi2sd(a: i32, mx: u32) -> (u64, u32) {
        let x: u64;
        let f = host!(mx, ["cvtsi2sd {x}, {y:e}"], x = out(xmm_reg) x, y = in(reg) a,);
        (x, f)
    }

    macro_rules! host_cmp {
        ($name:ident, $insn:literal, $t:ty) => {
            fn $name(a: $t, b: $t, pred: u8, mx: u32) -> (bool, u32) {
                let mut x = a;
                let f = match pred & 7 {
                    0 => host!(mx, [concat!($insn, " {x}, {y}, 0")], x = inout(xmm_reg) x, y = in(xmm_reg) b,),
                    1 => host!(mx, [concat!($insn, " {x}, {y}, 1")], x = inout(xmm_reg) x, y = in(xmm_reg) b,),
                    2 => host!(mx, [concat!($insn, " {x}, {y}, 2")], x = inout(xmm_reg) x, y = in(xmm_reg) b,),
                    3 => host!(mx, [concat!($insn, " {x}, {y}, 3")], x = inout(xmm_reg) x, y = in(xmm_reg) b,),
                    4 => host!(mx, [concat!($insn, " {x}, {y}, 4")], x = inout(xmm_reg) x, y = in(xmm_reg) b,),
                    5 => host!(mx, [concat!($insn, " {x}, {y}, 5")], x = inout(xmm_reg) x, y = in(xmm_reg) b,),
                    6 => host!(mx, [concat!($insn, " {x}, {y}, 6")], x = inout(xmm_reg) x, y = in(xmm_reg) b,),
                    _ => host!(mx, [concat!($insn, " {x}, {y}, 7")], x = inout(xmm_reg) x, y = in(xmm_reg) b,),
                };
                (x != 0, f)
            }
        };
    }
    host_cmp!(h_cmpss, "cmpss", u32);
    host_cmp!(h_cmpsd, "cmpsd", u64);

    macro_rules! host_comi {
        ($name:ident, $insn:literal, $t:ty) => {
            fn $name(a: $t, b: $t, mx: u32) -> ((bool, bool, bool), u32) {
                let (z, p, c): (u8, u8, u8);
                let f = host!(
                    mx,
                    [concat!($insn, " {x}, {y}"), "setz {z}", "setp {p}", "setc {c}"],
                    x = in(xmm_reg) a, y = in(xmm_reg) b,
                    z = out(reg_byte) z, p = out(reg_byte) p, c = out(reg_byte) c,
                );
                ((z != 0, p != 0, c != 0), f)
            }
        };
    }
    host_comi!(h_comiss, "comiss", u32);
    host_comi!(h_ucomiss, "ucomiss", u32);
    host_comi!(h_comisd, "comisd", u64);
    host_comi!(h_ucomisd, "ucomisd", u64);

    /// Runs `n` cases per MXCSR setting of a two-operand class.
    fn diff2<T: Copy + PartialEq + core::fmt::LowerHex, R: Copy + PartialEq + core::fmt::Debug>(
        name: &'static str,
        fmt: Fmt,
        seed: u64,
        to_t: impl Fn(u64) -> T,
        emu: impl Fn(T, T, u32) -> R,
        host: impl Fn(T, T, u32) -> R,
    ) {
        let mut r = Rng(seed);
        let mut c = Check::new(name);
        for m in 0..16 {
            let mx = mxcsr_of(m);
            for _ in 0..cases() {
                let a = gen(&mut r, fmt);
                let b = gen_b(&mut r, fmt, a);
                let (a, b) = if r.next() & 1 != 0 { (a, b) } else { (b, a) };
                let (a, b) = (to_t(a), to_t(b));
                let (e, h) = (emu(a, b, mx), host(a, b, mx));
                c.case(e == h, || {
                    format!("a={a:#x} b={b:#x} mxcsr={mx:#06x}: emulated {e:x?} host {h:x?}")
                });
            }
        }
        c.finish();
    }

    fn diff1<T: Copy + PartialEq + core::fmt::LowerHex, R: Copy + PartialEq + core::fmt::Debug>(
        name: &'static str,
        fmt: Fmt,
        seed: u64,
        to_t: impl Fn(u64) -> T,
        emu: impl Fn(T, u32) -> R,
        host: impl Fn(T, u32) -> R,
    ) {
        let mut r = Rng(seed);
        let mut c = Check::new(name);
        for m in 0..16 {
            let mx = mxcsr_of(m);
            for _ in 0..cases() {
                let a = to_t(gen(&mut r, fmt));
                let (e, h) = (emu(a, mx), host(a, mx));
                c.case(e == h, || {
                    format!("a={a:#x} mxcsr={mx:#06x}: emulated {e:x?} host {h:x?}")
                });
            }
        }
        c.finish();
    }

    fn t32(x: u64) -> u32 {
        x as u32
    }
    fn t64(x: u64) -> u64 {
        x
    }

    macro_rules! arith_tests {
        ($($test:ident: $op:ident, $h32:ident, $h64:ident;)*) => {$(
            #[test]
            fn $test() {
                diff2(concat!(stringify!($op), "ss"), F32, 0x5EED_0001 ^ Arith::$op as u64, t32,
                    |a, b, m| f32_arith(Arith::$op, a, b, m), $h32);
                diff2(concat!(stringify!($op), "sd"), F64, 0x5EED_0101 ^ Arith::$op as u64, t64,
                    |a, b, m| f64_arith(Arith::$op, a, b, m), $h64);
            }
        )*};
    }

    arith_tests! {
        add_matches_host: Add, h_addss, h_addsd;
        sub_matches_host: Sub, h_subss, h_subsd;
        mul_matches_host: Mul, h_mulss, h_mulsd;
        div_matches_host: Div, h_divss, h_divsd;
        min_matches_host: Min, h_minss, h_minsd;
        max_matches_host: Max, h_maxss, h_maxsd;
    }

    #[test]
    fn sqrt_matches_host() {
        diff1("sqrtss", F32, 0x5EED_0201, t32, f32_sqrt, h_sqrtss);
        diff1("sqrtsd", F64, 0x5EED_0202, t64, f64_sqrt, h_sqrtsd);
    }

    #[test]
    fn cmp_matches_host() {
        for pred in 0..8u8 {
            diff2(
                "cmpss",
                F32,
                0x5EED_0300 + pred as u64,
                t32,
                |a, b, m| f32_cmp(a, b, pred, m),
                |a, b, m| h_cmpss(a, b, pred, m),
            );
            diff2(
                "cmpsd",
                F64,
                0x5EED_0310 + pred as u64,
                t64,
                |a, b, m| f64_cmp(a, b, pred, m),
                |a, b, m| h_cmpsd(a, b, pred, m),
            );
        }
    }

    #[test]
    fn comi_matches_host() {
        diff2(
            "comiss",
            F32,
            0x5EED_0401,
            t32,
            |a, b, m| f32_comi(a, b, false, m),
            h_comiss,
        );
        diff2(
            "ucomiss",
            F32,
            0x5EED_0402,
            t32,
            |a, b, m| f32_comi(a, b, true, m),
            h_ucomiss,
        );
        diff2(
            "comisd",
            F64,
            0x5EED_0403,
            t64,
            |a, b, m| f64_comi(a, b, false, m),
            h_comisd,
        );
        diff2(
            "ucomisd",
            F64,
            0x5EED_0404,
            t64,
            |a, b, m| f64_comi(a, b, true, m),
            h_ucomisd,
        );
    }

    #[test]
    fn float_conversions_match_host() {
        diff1("cvtss2sd", F32, 0x5EED_0501, t32, f32_to_f64, h_cvtss2sd);
        diff1("cvtsd2ss", F64, 0x5EED_0502, t64, f64_to_f32, h_cvtsd2ss);
    }

    #[test]
    fn to_int_conversions_match_host() {
        diff1(
            "cvtss2si",
            F32,
            0x5EED_0601,
            t32,
            |a, m| f32_to_i32(a, false, m),
            h_cvtss2si,
        );
        diff1(
            "cvttss2si",
            F32,
            0x5EED_0602,
            t32,
            |a, m| f32_to_i32(a, true, m),
            h_cvttss2si,
        );
        diff1(
            "cvtsd2si",
            F64,
            0x5EED_0603,
            t64,
            |a, m| f64_to_i32(a, false, m),
            h_cvtsd2si,
        );
        diff1(
            "cvttsd2si",
            F64,
            0x5EED_0604,
            t64,
            |a, m| f64_to_i32(a, true, m),
            h_cvttsd2si,
        );
    }

    #[test]
    fn int_to_float_conversions_match_host() {
        let mut r = Rng(0x5EED_0701);
        let mut c = Check::new("cvtsi2ss/cvtsi2sd");
        for m in 0..16 {
            let mx = mxcsr_of(m);
            for _ in 0..cases() {
                let v = r.next();
                let a = match r.below(4) {
                    0 => (v as i32) >> r.below(32), // every magnitude
                    1 => [0, 1, -1, i32::MIN, i32::MAX, 0x0100_0001, -0x0100_0003]
                        [r.below(7) as usize],
                    _ => v as i32,
                };
                let (e, h) = (i32_to_f32(a, mx), h_cvtsi2ss(a, mx));
                c.case(e == h, || {
                    format!("cvtsi2ss {a:#x} mxcsr={mx:#06x}: emulated {e:x?} host {h:x?}")
                });
                let (e, h) = ((i32_to_f64(a), 0), h_cvtsi2sd(a, mx));
                c.case(e == h, || {
                    format!("cvtsi2sd {a:#x} mxcsr={mx:#06x}: emulated {e:x?} host {h:x?}")
                });
            }
        }
        c.finish();
    }

    /// RCPSS/RSQRTSS: the special values as the host gives them, and the architectural bound
    /// (relative error ≤ 1.5 · 2^−12) against the exact value, which the host must meet too.
    #[test]
    fn reciprocal_approximations() {
        let mut r = Rng(0x5EED_0801);
        let mut c = Check::new("rcpss/rsqrtss");
        let bound = 1.5 / 4096.0;
        for m in 0..16 {
            let mx = mxcsr_of(m);
            for _ in 0..cases() {
                let a = gen(&mut r, F32) as u32;
                let x = f32::from_bits(a) as f64;
                let special = F32.exp_field(a as u64) == 0 || F32.exp_field(a as u64) == 0xFF;
                for rsqrt in [false, true] {
                    let (e, h, exact) = if rsqrt {
                        (f32_rsqrt(a, mx), h_rsqrtss(a, mx), 1.0 / x.sqrt())
                    } else {
                        (f32_rcp(a, mx), h_rcpss(a, mx), 1.0 / x)
                    };
                    let h = (h.0, h.1);
                    c.case(h.1 == 0, || format!("host flags {a:#x} {h:x?}"));
                    if special || (rsqrt && x < 0.0) {
                        c.case(e == h.0, || format!("rsqrt={rsqrt} a={a:#x} mxcsr={mx:#06x}: emulated {e:#x} host {:#x}", h.0));
                        continue;
                    }
                    // Results near 2^−126 may or may not be flushed by hardware.
                    let tiny = 2f64.powi(-126);
                    if exact.abs() < tiny * 1.01 && exact.abs() > tiny * 0.99 {
                        continue;
                    }
                    for (who, v) in [("emulated", e), ("host", h.0)] {
                        let v = f32::from_bits(v) as f64;
                        let ok = if exact.abs() < tiny {
                            v == 0.0 && v.is_sign_negative() == exact.is_sign_negative()
                        } else {
                            ((v - exact) / exact).abs() <= bound
                        };
                        c.case(ok, || {
                            format!("rsqrt={rsqrt} a={a:#x}: {who} {v:e}, exact {exact:e}")
                        });
                    }
                }
            }
        }
        c.finish();
    }

    /// A SIGFPE handler installed with raw `rt_sigaction` (no libc in this crate) that skips
    /// the faulting SSE instruction of a [`host!`] block.
    #[cfg(target_os = "linux")]
    mod trap {
        use super::{FAULTED, RESUME};
        use std::arch::{asm, global_asm};
        use std::sync::Once;

        const SIGFPE: usize = 8;
        const SA_SIGINFO: u64 = 4;
        const SA_RESTORER: u64 = 0x0400_0000;
        /// Offset of the saved RIP in `ucontext_t` (uc_mcontext.gregs[REG_RIP]).
        const UC_RIP: usize = 40 + 16 * 8;

        #[repr(C)]
        struct KernelSigaction {
            handler: usize,
            flags: u64,
            restorer: usize,
            mask: u64,
        }

        global_asm!(
            ".globl wasm86_sse_fp_test_sigreturn",
            "wasm86_sse_fp_test_sigreturn:",
            "mov eax, 15", // rt_sigreturn
            "syscall",
        );
        extern "C" {
            fn wasm86_sse_fp_test_sigreturn();
        }

        extern "C" fn on_fpe(_sig: i32, _info: *mut u8, ctx: *mut u8) {
            let resume = RESUME.with(|c| c.replace(0));
            if resume == 0 {
                std::process::abort();
            }
            FAULTED.with(|c| c.set(true));
            // SAFETY: the kernel passes a valid ucontext_t; its saved RIP is a u64 at UC_RIP.
            unsafe { (ctx.add(UC_RIP) as *mut u64).write_unaligned(resume) };
        }

        pub(super) fn install() {
            static ONCE: Once = Once::new();
            ONCE.call_once(|| {
                let act = KernelSigaction {
                    handler: on_fpe as extern "C" fn(i32, *mut u8, *mut u8) as usize,
                    flags: SA_SIGINFO | SA_RESTORER,
                    restorer: wasm86_sse_fp_test_sigreturn as unsafe extern "C" fn() as usize,
                    mask: 0,
                };
                let ret: isize;
                // SAFETY: rt_sigaction(SIGFPE, &act, NULL, 8) with a valid structure.
                unsafe {
                    asm!(
                        "syscall",
                        inlateout("rax") 13isize => ret,
                        in("rdi") SIGFPE,
                        in("rsi") &act as *const KernelSigaction,
                        in("rdx") 0usize,
                        in("r10") 8usize,
                        lateout("rcx") _,
                        lateout("r11") _,
                        options(nostack),
                    );
                }
                assert_eq!(ret, 0, "rt_sigaction");
            });
        }
    }

    /// Unmasked exceptions (Linux only: the host's #XM arrives as SIGFPE): the flags the
    /// processor sets before faulting, against the flags computed here, whether both fault,
    /// and the result when neither does. 10^5 cases per class (6 250 per setting).
    #[cfg(target_os = "linux")]
    #[test]
    fn unmasked_exceptions_match_host() {
        type Lane = (u64, u32);
        type Class = (
            &'static str,
            Fmt,
            fn(u64, u64, u32) -> Lane,
            fn(u64, u64, u32) -> Lane,
        );
        fn f(x: (u32, u32)) -> Lane {
            (x.0 as u64, x.1)
        }
        let classes: [Class; 21] = [
            (
                "addss",
                F32,
                |a, b, m| f(f32_arith(Arith::Add, a as u32, b as u32, m)),
                |a, b, m| f(h_addss(a as u32, b as u32, m)),
            ),
            (
                "subss",
                F32,
                |a, b, m| f(f32_arith(Arith::Sub, a as u32, b as u32, m)),
                |a, b, m| f(h_subss(a as u32, b as u32, m)),
            ),
            (
                "mulss",
                F32,
                |a, b, m| f(f32_arith(Arith::Mul, a as u32, b as u32, m)),
                |a, b, m| f(h_mulss(a as u32, b as u32, m)),
            ),
            (
                "divss",
                F32,
                |a, b, m| f(f32_arith(Arith::Div, a as u32, b as u32, m)),
                |a, b, m| f(h_divss(a as u32, b as u32, m)),
            ),
            (
                "minss",
                F32,
                |a, b, m| f(f32_arith(Arith::Min, a as u32, b as u32, m)),
                |a, b, m| f(h_minss(a as u32, b as u32, m)),
            ),
            (
                "maxss",
                F32,
                |a, b, m| f(f32_arith(Arith::Max, a as u32, b as u32, m)),
                |a, b, m| f(h_maxss(a as u32, b as u32, m)),
            ),
            (
                "addsd",
                F64,
                |a, b, m| f64_arith(Arith::Add, a, b, m),
                h_addsd,
            ),
            (
                "subsd",
                F64,
                |a, b, m| f64_arith(Arith::Sub, a, b, m),
                h_subsd,
            ),
            (
                "mulsd",
                F64,
                |a, b, m| f64_arith(Arith::Mul, a, b, m),
                h_mulsd,
            ),
            (
                "divsd",
                F64,
                |a, b, m| f64_arith(Arith::Div, a, b, m),
                h_divsd,
            ),
            (
                "minsd",
                F64,
                |a, b, m| f64_arith(Arith::Min, a, b, m),
                h_minsd,
            ),
            (
                "maxsd",
                F64,
                |a, b, m| f64_arith(Arith::Max, a, b, m),
                h_maxsd,
            ),
            (
                "sqrtss",
                F32,
                |a, _, m| f(f32_sqrt(a as u32, m)),
                |a, _, m| f(h_sqrtss(a as u32, m)),
            ),
            (
                "sqrtsd",
                F64,
                |a, _, m| f64_sqrt(a, m),
                |a, _, m| h_sqrtsd(a, m),
            ),
            (
                "cvtss2sd",
                F32,
                |a, _, m| f32_to_f64(a as u32, m),
                |a, _, m| h_cvtss2sd(a as u32, m),
            ),
            (
                "cvtsd2ss",
                F64,
                |a, _, m| f(f64_to_f32(a, m)),
                |a, _, m| f(h_cvtsd2ss(a, m)),
            ),
            (
                "cvtss2si",
                F32,
                |a, _, m| f(f32_to_i32(a as u32, false, m)),
                |a, _, m| f(h_cvtss2si(a as u32, m)),
            ),
            (
                "cvttss2si",
                F32,
                |a, _, m| f(f32_to_i32(a as u32, true, m)),
                |a, _, m| f(h_cvttss2si(a as u32, m)),
            ),
            (
                "cvtsd2si",
                F64,
                |a, _, m| f(f64_to_i32(a, false, m)),
                |a, _, m| f(h_cvtsd2si(a, m)),
            ),
            (
                "cvttsd2si",
                F64,
                |a, _, m| f(f64_to_i32(a, true, m)),
                |a, _, m| f(h_cvttsd2si(a, m)),
            ),
            (
                "cvtsi2ss",
                F32,
                |a, _, m| f(i32_to_f32(a as i32, m)),
                |a, _, m| f(h_cvtsi2ss(a as i32, m)),
            ),
        ];
        trap::install();
        let per_setting = cases().min(6_250);
        let mut r = Rng(0x5EED_0901);
        for (name, fmt, emu, host) in classes {
            let mut c = Check::new(name);
            for m in 0..16 {
                for _ in 0..per_setting {
                    // One exception unmasked, or a random set of them.
                    let unmask = if r.next() & 1 != 0 {
                        1 << r.below(6)
                    } else {
                        r.next() as u32 & 0x3F
                    };
                    let mx = mxcsr_of(m) & !(unmask << 7);
                    let a = gen(&mut r, fmt);
                    let b = gen_b(&mut r, fmt, a);
                    let a = if name == "cvtsi2ss" {
                        r.next() >> r.below(64)
                    } else {
                        a
                    };
                    let (er, ef) = emu(a, b, mx);
                    let e_fault = ef & unmask != 0;
                    FAULTED.with(|c| c.set(false));
                    let (hr, hf) = host(a, b, mx);
                    let h_fault = FAULTED.with(|c| c.get());
                    let ok = ef == hf && e_fault == h_fault && (h_fault || er == hr);
                    c.case(ok, || {
                        format!(
                            "a={a:#x} b={b:#x} mxcsr={mx:#06x}: emulated {er:#x} flags {ef:#x} \
                             fault {e_fault}, host {hr:#x} flags {hf:#x} fault {h_fault}"
                        )
                    });
                }
            }
            c.finish();
        }
    }
}
