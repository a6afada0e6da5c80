//! 80-bit extended-precision arithmetic in software, as an x87 of the P6 family computes it.
//!
//! Every operation works on integers only (no host `f32`/`f64`): operands are unpacked into a
//! sign, an unbiased exponent and a 128-bit significand, the exact (or exactly sticky) result is
//! formed, and [`round_pack`] rounds it once under the precision control (24/53/64 bits) and
//! rounding control of the control word, with the x87's masked and unmasked responses to
//! overflow and underflow.
//!
//! Exception results are returned as status-word bits ([`IE`], [`DE`], [`ZE`], [`OE`], [`UE`],
//! [`PE`]) together with [`C1`] ("the result was rounded up in magnitude").

use core::cmp::Ordering;

/// Invalid operation.
pub const IE: u16 = 0x0001;
/// Denormal operand.
pub const DE: u16 = 0x0002;
/// Zero divide.
pub const ZE: u16 = 0x0004;
/// Overflow.
pub const OE: u16 = 0x0008;
/// Underflow.
pub const UE: u16 = 0x0010;
/// Precision (inexact result).
pub const PE: u16 = 0x0020;
/// Stack fault (only raised by the register-stack layer).
pub const SF: u16 = 0x0040;
/// Condition code C1: here "the result was rounded up".
pub const C1: u16 = 0x0200;

/// Exponent adjustment applied to the result of an unmasked overflow or underflow.
pub const BIAS_ADJUST: i32 = 24576;

/// An x87 register value: sign and 15-bit exponent, and the 64-bit significand with its
/// explicit integer bit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct F80 {
    /// Sign (bit 15) and biased exponent (bits 0..15).
    pub se: u16,
    /// Significand, integer bit at bit 63.
    pub m: u64,
}

/// The class of an [`F80`] encoding.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// ±0.
    Zero,
    /// A denormal or pseudo-denormal (exponent field 0, significand non-zero).
    Denormal,
    /// A normal number.
    Normal,
    /// ±∞.
    Infinity,
    /// A quiet NaN.
    QNaN,
    /// A signalling NaN.
    SNaN,
    /// An encoding the P6 does not support (unnormal, pseudo-NaN, pseudo-infinity).
    Unsupported,
}

impl F80 {
    /// +0.
    pub const ZERO: F80 = F80 { se: 0, m: 0 };
    /// +1.
    pub const ONE: F80 = F80 {
        se: 0x3FFF,
        m: 1 << 63,
    };
    /// +∞.
    pub const INFINITY: F80 = F80 {
        se: 0x7FFF,
        m: 1 << 63,
    };
    /// The "real indefinite" QNaN the x87 produces for invalid operations.
    pub const INDEFINITE: F80 = F80 {
        se: 0xFFFF,
        m: 0xC000_0000_0000_0000,
    };

    /// Decodes the 10-byte little-endian memory format.
    pub fn from_bytes(b: [u8; 10]) -> F80 {
        let mut m = [0u8; 8];
        m.copy_from_slice(&b[..8]);
        F80 {
            se: u16::from_le_bytes([b[8], b[9]]),
            m: u64::from_le_bytes(m),
        }
    }

    /// Encodes to the 10-byte little-endian memory format.
    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.m.to_le_bytes());
        b[8..].copy_from_slice(&self.se.to_le_bytes());
        b
    }

    /// Builds a value from its parts.
    pub fn new(sign: bool, bexp: u16, m: u64) -> F80 {
        F80 {
            se: (u16::from(sign) << 15) | (bexp & 0x7FFF),
            m,
        }
    }

    /// True when the sign bit is set.
    pub fn sign(self) -> bool {
        self.se & 0x8000 != 0
    }

    /// The biased exponent field.
    pub fn bexp(self) -> u16 {
        self.se & 0x7FFF
    }

    /// The same value with the sign flipped.
    pub fn negate(self) -> F80 {
        F80 {
            se: self.se ^ 0x8000,
            m: self.m,
        }
    }

    /// The same value with the sign cleared.
    pub fn abs(self) -> F80 {
        F80 {
            se: self.se & 0x7FFF,
            m: self.m,
        }
    }

    /// A zero of the given sign.
    pub fn zero(sign: bool) -> F80 {
        F80::new(sign, 0, 0)
    }

    /// An infinity of the given sign.
    pub fn inf(sign: bool) -> F80 {
        F80::new(sign, 0x7FFF, 1 << 63)
    }

    /// Classifies the encoding as a P6 does.
    pub fn class(self) -> Class {
        let e = self.bexp();
        let j = self.m >> 63 != 0;
        match e {
            0 if self.m == 0 => Class::Zero,
            0 => Class::Denormal,
            0x7FFF if !j => Class::Unsupported,
            0x7FFF if self.m << 1 == 0 => Class::Infinity,
            0x7FFF if self.m & (1 << 62) != 0 => Class::QNaN,
            0x7FFF => Class::SNaN,
            _ if !j => Class::Unsupported,
            _ => Class::Normal,
        }
    }

    /// True for QNaN and SNaN.
    pub fn is_nan(self) -> bool {
        matches!(self.class(), Class::QNaN | Class::SNaN)
    }

    /// The NaN with its quiet bit set.
    pub fn quiet(self) -> F80 {
        F80 {
            se: self.se,
            m: self.m | (1 << 62),
        }
    }
}

/// Rounding control.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rc {
    /// Round to nearest, ties to even.
    Nearest,
    /// Round toward −∞.
    Down,
    /// Round toward +∞.
    Up,
    /// Round toward zero.
    Zero,
}

/// The rounding environment taken from the control word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Env {
    /// Significand precision for register results: 24, 53 or 64.
    pub prec: u32,
    /// Rounding control.
    pub rc: Rc,
    /// Overflow exception masked.
    pub oe_masked: bool,
    /// Underflow exception masked.
    pub ue_masked: bool,
}

impl Env {
    /// The environment described by an x87 control word. The reserved precision setting 01
    /// behaves as 64 bits.
    pub fn from_cw(cw: u16) -> Env {
        Env {
            prec: match (cw >> 8) & 3 {
                0 => 24,
                2 => 53,
                _ => 64,
            },
            rc: match (cw >> 10) & 3 {
                0 => Rc::Nearest,
                1 => Rc::Down,
                2 => Rc::Up,
                _ => Rc::Zero,
            },
            oe_masked: cw & OE != 0,
            ue_masked: cw & UE != 0,
        }
    }

    /// Full 64-bit precision, everything masked, with the given rounding control.
    pub fn full(rc: Rc) -> Env {
        Env {
            prec: 64,
            rc,
            oe_masked: true,
            ue_masked: true,
        }
    }
}

/// A destination format for rounding.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fmt {
    /// Significand bits, including the integer bit.
    pub prec: u32,
    /// Smallest normal unbiased exponent.
    pub emin: i32,
    /// Largest unbiased exponent (also the bias).
    pub emax: i32,
    /// True for the register format, where unmasked overflow/underflow deliver a
    /// bias-adjusted result.
    pub ext: bool,
}

impl Fmt {
    /// The register format at a given precision.
    pub const fn ext(prec: u32) -> Fmt {
        Fmt {
            prec,
            emin: -16382,
            emax: 16383,
            ext: true,
        }
    }
    /// IEEE single.
    pub const SINGLE: Fmt = Fmt {
        prec: 24,
        emin: -126,
        emax: 127,
        ext: false,
    };
    /// IEEE double.
    pub const DOUBLE: Fmt = Fmt {
        prec: 53,
        emin: -1022,
        emax: 1023,
        ext: false,
    };
}

/// A finite non-zero value: `sig * 2^(exp - 127)`, `sig` normalised (bit 127 set); bit 0 may
/// hold a sticky bit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Unp {
    /// Sign.
    pub sign: bool,
    /// Unbiased exponent of the leading bit.
    pub exp: i32,
    /// Significand.
    pub sig: u128,
}

impl Unp {
    /// Normalises a raw (non-zero) significand.
    pub fn norm(sign: bool, exp: i32, sig: u128) -> Unp {
        let lz = sig.leading_zeros();
        Unp {
            sign,
            exp: exp - lz as i32,
            sig: sig.checked_shl(lz).unwrap_or(0),
        }
    }
}

/// Unpacks a finite non-zero value (normal, denormal or pseudo-denormal).
pub fn unpack(a: F80) -> Unp {
    let e = i32::from(a.bexp().max(1)) - 16383;
    Unp::norm(a.sign(), e, u128::from(a.m) << 64)
}

/// Shifts right, ORing every lost bit into bit 0.
pub fn jam(x: u128, d: u32) -> u128 {
    if d == 0 {
        x
    } else if d >= 128 {
        u128::from(x != 0)
    } else {
        (x >> d) | u128::from(x << (128 - d) != 0)
    }
}

/// Rounds `sig >> drop` to an integer under `rc`. Returns the rounded integer (which may carry
/// one bit beyond the kept width), whether bits were lost, and whether it was rounded up.
pub fn round_sig(sig: u128, drop: u32, sign: bool, rc: Rc) -> (u128, bool, bool) {
    if drop == 0 {
        return (sig, false, false);
    }
    let (kept, lost_nonzero, round_bit, sticky) = if drop > 128 {
        (0, sig != 0, false, sig != 0)
    } else if drop == 128 {
        (0, sig != 0, sig >> 127 != 0, sig << 1 != 0)
    } else {
        let lost = sig & ((1u128 << drop) - 1);
        let half = 1u128 << (drop - 1);
        (
            sig >> drop,
            lost != 0,
            lost & half != 0,
            lost & (half - 1) != 0,
        )
    };
    let up = match rc {
        Rc::Nearest => round_bit && (sticky || kept & 1 != 0),
        Rc::Zero => false,
        Rc::Up => !sign && lost_nonzero,
        Rc::Down => sign && lost_nonzero,
    };
    (kept + u128::from(up), lost_nonzero, up)
}

/// True: the x87 detects tininess after rounding (as on the P6 and its successors).
const TINY_AFTER_ROUNDING: bool = true;

/// A rounded result: sign, biased exponent of the target format and significand with its
/// integer bit at bit 63 (clear for denormals), and the exception bits raised.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rounded {
    /// Sign.
    pub sign: bool,
    /// Biased exponent in the destination format.
    pub bexp: i32,
    /// Significand, integer bit at 63.
    pub m: u64,
    /// Exception bits (and [`C1`]).
    pub flags: u16,
}

impl Rounded {
    /// As a register value (only meaningful for [`Fmt::ext`]).
    pub fn f80(self) -> F80 {
        F80::new(self.sign, (self.bexp & 0x7FFF) as u16, self.m)
    }
    /// As an IEEE single.
    pub fn f32_bits(self) -> u32 {
        (u32::from(self.sign) << 31)
            | ((self.bexp as u32 & 0xFF) << 23)
            | ((self.m >> 40) as u32 & 0x7F_FFFF)
    }
    /// As an IEEE double.
    pub fn f64_bits(self) -> u64 {
        (u64::from(self.sign) << 63)
            | ((self.bexp as u64 & 0x7FF) << 52)
            | ((self.m >> 11) & ((1 << 52) - 1))
    }
}

/// Rounds a finite non-zero value into `fmt` under `env`'s rounding control and overflow and
/// underflow masks. For non-register formats an unmasked overflow/underflow only reports the
/// flag (the caller must not store); the returned value is then the masked response.
pub fn round_pack(u: Unp, fmt: Fmt, env: &Env) -> Rounded {
    let p = fmt.prec;
    let sign = u.sign;
    let bias = fmt.emax;
    let (mut k, inexact, up) = round_sig(u.sig, 128 - p, sign, env.rc);
    let mut e = u.exp;
    if k >> p != 0 {
        k >>= 1;
        e += 1;
    }
    let tiny = if TINY_AFTER_ROUNDING {
        e < fmt.emin
    } else {
        u.exp < fmt.emin
    };
    let mut flags = 0;
    if inexact {
        flags |= PE;
    }
    if up {
        flags |= C1;
    }
    if tiny {
        if !env.ue_masked {
            if !fmt.ext {
                // A memory destination is left alone; only UE is reported.
                return Rounded {
                    sign,
                    bexp: 0,
                    m: 0,
                    flags: UE,
                };
            }
            if e + BIAS_ADJUST < fmt.emin {
                // Beyond the bias-adjustment range (FSCALE): a signed zero.
                return Rounded {
                    sign,
                    bexp: 0,
                    m: 0,
                    flags: UE | PE,
                };
            }
            return Rounded {
                sign,
                bexp: e + BIAS_ADJUST + bias,
                m: (k as u64) << (64 - p),
                flags: flags | UE,
            };
        }
        let shift = (fmt.emin - u.exp).max(0) as u32;
        let (k2, inexact2, up2) = round_sig(u.sig, (128 - p).saturating_add(shift), sign, env.rc);
        let m = (k2 as u64) << (64 - p);
        let mut flags = 0;
        if inexact2 {
            flags |= PE | UE;
        }
        if up2 {
            flags |= C1;
        }
        return Rounded {
            sign,
            bexp: if m >> 63 != 0 { 1 } else { 0 },
            m,
            flags,
        };
    }
    if e > fmt.emax {
        if !env.oe_masked {
            if !fmt.ext {
                return Rounded {
                    sign,
                    bexp: 0,
                    m: 0,
                    flags: OE,
                };
            }
            if e - BIAS_ADJUST > fmt.emax {
                // Beyond the bias-adjustment range (FSCALE): an infinity.
                return Rounded {
                    sign,
                    bexp: 2 * bias + 1,
                    m: 1 << 63,
                    flags: OE | PE | C1,
                };
            }
            return Rounded {
                sign,
                bexp: e - BIAS_ADJUST + bias,
                m: (k as u64) << (64 - p),
                flags: flags | OE,
            };
        }
        let to_inf = match env.rc {
            Rc::Nearest => true,
            Rc::Zero => false,
            Rc::Up => !sign,
            Rc::Down => sign,
        };
        let flags = OE | PE | if to_inf { C1 } else { 0 };
        return if to_inf {
            Rounded {
                sign,
                bexp: 2 * bias + 1,
                m: 1 << 63,
                flags,
            }
        } else {
            Rounded {
                sign,
                bexp: 2 * bias,
                m: (u64::MAX >> (64 - p)) << (64 - p),
                flags,
            }
        };
    }
    Rounded {
        sign,
        bexp: e + bias,
        m: (k as u64) << (64 - p),
        flags,
    }
}

/// Rounds to a register value at the environment's precision.
pub fn round_ext(u: Unp, env: &Env) -> (F80, u16) {
    let r = round_pack(u, Fmt::ext(env.prec), env);
    (r.f80(), r.flags)
}

/// The x87 rule for a result from two operands of which at least one is a NaN.
pub fn propagate_nan(a: F80, b: F80) -> (F80, u16) {
    let (ca, cb) = (a.class(), b.class());
    let flags = if ca == Class::SNaN || cb == Class::SNaN {
        IE
    } else {
        0
    };
    let an = matches!(ca, Class::QNaN | Class::SNaN);
    let bn = matches!(cb, Class::QNaN | Class::SNaN);
    let r = match (an, bn) {
        (true, false) => a,
        (false, true) => b,
        _ => {
            if ca == Class::SNaN && cb == Class::QNaN {
                b
            } else if ca == Class::QNaN && cb == Class::SNaN {
                a
            } else {
                let (qa, qb) = (a.quiet(), b.quiet());
                match (qa.m << 1).cmp(&(qb.m << 1)) {
                    Ordering::Greater => a,
                    Ordering::Less => b,
                    Ordering::Equal => {
                        if a.se < b.se {
                            a
                        } else {
                            b
                        }
                    }
                }
            }
        }
    };
    (r.quiet(), flags)
}

/// Handles unsupported encodings and NaNs for a two-operand arithmetic instruction; otherwise
/// returns the denormal-operand flag.
fn pre2(a: F80, b: F80) -> Result<u16, (F80, u16)> {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return Err((F80::INDEFINITE, IE));
    }
    if a.is_nan() || b.is_nan() {
        return Err(propagate_nan(a, b));
    }
    Ok(if ca == Class::Denormal || cb == Class::Denormal {
        DE
    } else {
        0
    })
}

/// Handles unsupported encodings and NaNs for one operand; otherwise the denormal flag.
fn pre1(a: F80) -> Result<u16, (F80, u16)> {
    match a.class() {
        Class::Unsupported => Err((F80::INDEFINITE, IE)),
        Class::SNaN => Err((a.quiet(), IE)),
        Class::QNaN => Err((a, 0)),
        Class::Denormal => Ok(DE),
        _ => Ok(0),
    }
}

/// The masked response to an invalid operation. A P6 reports IE alone: the denormal-operand
/// check comes after the invalid-operation check.
fn invalid(_flags: u16) -> (F80, u16) {
    (F80::INDEFINITE, IE)
}

fn is_zero(a: F80) -> bool {
    a.class() == Class::Zero
}

fn is_inf(a: F80) -> bool {
    a.class() == Class::Infinity
}

/// `a + b`.
pub fn add(a: F80, b: F80, env: &Env) -> (F80, u16) {
    let fl = match pre2(a, b) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match (is_inf(a), is_inf(b)) {
        (true, true) if a.sign() != b.sign() => return invalid(fl),
        (true, _) => return (a, fl),
        (_, true) => return (b, fl),
        _ => {}
    }
    let (za, zb) = (is_zero(a), is_zero(b));
    if za && zb {
        let s = if a.sign() == b.sign() {
            a.sign()
        } else {
            env.rc == Rc::Down
        };
        return (F80::zero(s), fl);
    }
    if za || zb {
        let u = unpack(if za { b } else { a });
        let (r, f) = round_ext(u, env);
        return (r, fl | f);
    }
    let (mut x, mut y) = (unpack(a), unpack(b));
    if x.exp < y.exp || (x.exp == y.exp && x.sig < y.sig) {
        core::mem::swap(&mut x, &mut y);
    }
    let d = (x.exp - y.exp) as u32;
    let sx = x.sig >> 1;
    let sy = jam(y.sig >> 1, d);
    let s = if x.sign == y.sign { sx + sy } else { sx - sy };
    if s == 0 {
        return (F80::zero(env.rc == Rc::Down), fl);
    }
    let (r, f) = round_ext(Unp::norm(x.sign, x.exp + 1, s), env);
    (r, fl | f)
}

/// `a - b`.
pub fn sub(a: F80, b: F80, env: &Env) -> (F80, u16) {
    if b.is_nan() || b.class() == Class::Unsupported {
        return add(a, b, env);
    }
    add(a, b.negate(), env)
}

/// `a * b`.
pub fn mul(a: F80, b: F80, env: &Env) -> (F80, u16) {
    let fl = match pre2(a, b) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let sign = a.sign() != b.sign();
    let (ia, ib, za, zb) = (is_inf(a), is_inf(b), is_zero(a), is_zero(b));
    if (ia && zb) || (ib && za) {
        return invalid(fl);
    }
    if ia || ib {
        return (F80::inf(sign), fl);
    }
    if za || zb {
        return (F80::zero(sign), fl);
    }
    let (x, y) = (unpack(a), unpack(b));
    let p = (x.sig >> 64) * (y.sig >> 64);
    let (r, f) = round_ext(Unp::norm(sign, x.exp + y.exp + 1, p), env);
    (r, fl | f)
}

/// Exact quotient of two normalised 64-bit significands: `q * 2^-126 ≈ a/b`, with sticky.
fn div_sig(a: u64, b: u64) -> u128 {
    let (a, b) = (u128::from(a), u128::from(b));
    let q_hi = (a << 64) / b;
    let r = (a << 64) % b;
    let q_lo = (r << 64) / b;
    let r2 = (r << 64) % b;
    (q_hi << 62) | (q_lo >> 2) | u128::from(q_lo & 3 != 0 || r2 != 0)
}

/// `a / b`.
pub fn div(a: F80, b: F80, env: &Env) -> (F80, u16) {
    let fl = match pre2(a, b) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let sign = a.sign() != b.sign();
    let (ia, ib, za, zb) = (is_inf(a), is_inf(b), is_zero(a), is_zero(b));
    if (ia && ib) || (za && zb) {
        return invalid(fl);
    }
    if ia {
        return (F80::inf(sign), fl);
    }
    if ib {
        return (F80::zero(sign), fl);
    }
    if zb {
        // Zero divide takes precedence over a denormal dividend.
        return (F80::inf(sign), ZE);
    }
    if za {
        return (F80::zero(sign), fl);
    }
    let (x, y) = (unpack(a), unpack(b));
    let q = div_sig((x.sig >> 64) as u64, (y.sig >> 64) as u64);
    let (r, f) = round_ext(Unp::norm(sign, x.exp - y.exp + 1, q), env);
    (r, fl | f)
}

/// Square root of a normalised significand `m` (value `m * 2^(e-63)`): returns the unpacked
/// root with a sticky bit.
pub(crate) fn sqrt_unp(e: i32, m: u64) -> Unp {
    let odd = e.rem_euclid(2) == 1;
    let radicand: u128 = if odd {
        u128::from(m) << 64
    } else {
        u128::from(m) << 63
    };
    let half_e = if odd { (e - 1) / 2 } else { e / 2 };
    // Digit-by-digit square root over 68 bit pairs (128 radicand bits, then 8 zero bits).
    let mut root: u128 = 0;
    let mut rem: u128 = 0;
    for i in 0..68 {
        let pair = if i < 64 {
            (radicand >> (126 - 2 * i)) & 3
        } else {
            0
        };
        rem = (rem << 2) | pair;
        let trial = (root << 2) | 1;
        if rem >= trial {
            rem -= trial;
            root = (root << 1) | 1;
        } else {
            root <<= 1;
        }
    }
    // root in [2^67, 2^68): value root * 2^(half_e - 67).
    Unp::norm(false, half_e + 59, (root << 1) | u128::from(rem != 0))
}

/// Square root, exactly rounded.
pub fn sqrt(a: F80, env: &Env) -> (F80, u16) {
    let fl = match pre1(a) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if is_zero(a) {
        return (a, fl);
    }
    if a.sign() {
        return invalid(fl);
    }
    if is_inf(a) {
        return (a, fl);
    }
    let u = unpack(a);
    let (r, f) = round_ext(sqrt_unp(u.exp, (u.sig >> 64) as u64), env);
    (r, fl | f)
}

/// Compares `a` with `b`. `None` means unordered. `quiet` selects the FUCOM rule (only SNaN
/// raises IE).
pub fn compare(a: F80, b: F80, quiet: bool) -> (Option<Ordering>, u16) {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return (None, IE);
    }
    if a.is_nan() || b.is_nan() {
        let sn = ca == Class::SNaN || cb == Class::SNaN;
        return (None, if sn || !quiet { IE } else { 0 });
    }
    let fl = if ca == Class::Denormal || cb == Class::Denormal {
        DE
    } else {
        0
    };
    (Some(total_cmp(a, b)), fl)
}

/// Ordered comparison of two non-NaN supported values.
fn total_cmp(a: F80, b: F80) -> Ordering {
    let key = |x: F80| -> (i32, u128) {
        match x.class() {
            Class::Zero => (i32::MIN, 0),
            Class::Infinity => (i32::MAX, 0),
            _ => {
                let u = unpack(x);
                (u.exp, u.sig)
            }
        }
    };
    let (za, zb) = (is_zero(a), is_zero(b));
    if za && zb {
        return Ordering::Equal;
    }
    let (sa, sb) = (a.sign() && !za, b.sign() && !zb);
    match (sa, sb) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => key(a).cmp(&key(b)),
        (true, true) => key(b).cmp(&key(a)),
    }
}

/// Converts an IEEE single to a register value (exact).
pub fn from_f32(bits: u32) -> (F80, u16) {
    let sign = bits >> 31 != 0;
    let e = (bits >> 23) & 0xFF;
    let f = u64::from(bits & 0x7F_FFFF);
    from_ieee(sign, e as i32, f << 40, 0xFF, 127)
}

/// Converts an IEEE double to a register value (exact).
pub fn from_f64(bits: u64) -> (F80, u16) {
    let sign = bits >> 63 != 0;
    let e = ((bits >> 52) & 0x7FF) as i32;
    let f = bits & ((1 << 52) - 1);
    from_ieee(sign, e, f << 11, 0x7FF, 1023)
}

/// `frac` is the fraction aligned so that its top bit is bit 62.
fn from_ieee(sign: bool, e: i32, frac: u64, emax_field: i32, bias: i32) -> (F80, u16) {
    if e == emax_field {
        if frac == 0 {
            return (F80::inf(sign), 0);
        }
        let r = F80::new(sign, 0x7FFF, (1 << 63) | frac);
        return if frac & (1 << 62) == 0 {
            (r.quiet(), IE)
        } else {
            (r, 0)
        };
    }
    if e == 0 {
        if frac == 0 {
            return (F80::zero(sign), 0);
        }
        let u = Unp::norm(sign, 1 - bias - 1 + 64, u128::from(frac) << 1);
        return (
            F80::new(sign, (u.exp + 16383) as u16, (u.sig >> 64) as u64),
            DE,
        );
    }
    (
        F80::new(sign, (e - bias + 16383) as u16, (1 << 63) | frac),
        0,
    )
}

/// Result of a store to a narrower memory format.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Narrow<T> {
    /// The encoded value.
    pub bits: T,
    /// Exception bits and C1.
    pub flags: u16,
}

/// Converts to IEEE single (FST m32).
pub fn to_f32(a: F80, env: &Env) -> Narrow<u32> {
    let sign = u32::from(a.sign()) << 31;
    match a.class() {
        Class::Unsupported => Narrow {
            bits: 0xFFC0_0000,
            flags: IE,
        },
        Class::QNaN | Class::SNaN => Narrow {
            bits: sign | 0x7FC0_0000 | ((a.m >> 40) as u32 & 0x7F_FFFF),
            flags: if a.class() == Class::SNaN { IE } else { 0 },
        },
        Class::Infinity => Narrow {
            bits: sign | 0x7F80_0000,
            flags: 0,
        },
        Class::Zero => Narrow {
            bits: sign,
            flags: 0,
        },
        Class::Denormal | Class::Normal => {
            let r = round_pack(unpack(a), Fmt::SINGLE, env);
            Narrow {
                bits: r.f32_bits(),
                flags: r.flags,
            }
        }
    }
}

/// Converts to IEEE double (FST m64).
pub fn to_f64(a: F80, env: &Env) -> Narrow<u64> {
    let sign = u64::from(a.sign()) << 63;
    match a.class() {
        Class::Unsupported => Narrow {
            bits: 0xFFF8_0000_0000_0000,
            flags: IE,
        },
        Class::QNaN | Class::SNaN => Narrow {
            bits: sign | 0x7FF8_0000_0000_0000 | ((a.m >> 11) & ((1 << 52) - 1)),
            flags: if a.class() == Class::SNaN { IE } else { 0 },
        },
        Class::Infinity => Narrow {
            bits: sign | 0x7FF0_0000_0000_0000,
            flags: 0,
        },
        Class::Zero => Narrow {
            bits: sign,
            flags: 0,
        },
        Class::Denormal | Class::Normal => {
            let r = round_pack(unpack(a), Fmt::DOUBLE, env);
            Narrow {
                bits: r.f64_bits(),
                flags: r.flags,
            }
        }
    }
}

/// Converts a signed integer to a register value (exact).
pub fn from_i64(v: i64) -> F80 {
    if v == 0 {
        return F80::ZERO;
    }
    let mag = v.unsigned_abs();
    let lz = mag.leading_zeros();
    F80::new(v < 0, (16383 + 63 - lz) as u16, mag << lz)
}

/// Rounds a finite value to an integer magnitude under `rc`: `(magnitude, inexact, up)`.
/// `None` when the magnitude does not fit in 64 bits.
fn round_to_int(a: F80, rc: Rc) -> Option<(u64, bool, bool)> {
    if is_zero(a) {
        return Some((0, false, false));
    }
    let u = unpack(a);
    if u.exp > 63 {
        return None;
    }
    let drop = (127 - u.exp) as u32;
    let (k, inexact, up) = round_sig(u.sig, drop, u.sign, rc);
    if k >> 64 != 0 {
        return None;
    }
    Some((k as u64, inexact, up))
}

/// Converts to a signed integer of `bits` bits (16, 32 or 64), FIST-style: an out-of-range,
/// NaN or infinite source raises IE and gives the integer indefinite.
pub fn to_int(a: F80, bits: u32, env: &Env) -> (i64, u16) {
    let indefinite = i64::MIN >> (64 - bits);
    // Stores never report DE.
    let de = match a.class() {
        Class::Unsupported | Class::QNaN | Class::SNaN | Class::Infinity => {
            return (indefinite, IE);
        }
        _ => 0,
    };
    let Some((mag, inexact, up)) = round_to_int(a, env.rc) else {
        return (indefinite, IE | de);
    };
    let limit_pos = (1u64 << (bits - 1)) - 1;
    let v = if a.sign() {
        if mag > limit_pos + 1 {
            return (indefinite, IE | de);
        }
        (mag as i64).wrapping_neg()
    } else {
        if mag > limit_pos {
            return (indefinite, IE | de);
        }
        mag as i64
    };
    let mut f = de;
    if inexact {
        f |= PE;
    }
    if up {
        f |= C1;
    }
    (v, f)
}

/// Rounds to an integral value (FRNDINT).
pub fn round_int(a: F80, env: &Env) -> (F80, u16) {
    let fl = match pre1(a) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match a.class() {
        Class::Zero | Class::Infinity => return (a, fl),
        _ => {}
    }
    let u = unpack(a);
    if u.exp >= 63 {
        return (a, fl);
    }
    let (k, inexact, up) = round_sig(u.sig, (127 - u.exp) as u32, u.sign, env.rc);
    let mut f = fl;
    if inexact {
        f |= PE;
    }
    if up {
        f |= C1;
    }
    if k == 0 {
        return (F80::zero(u.sign), f);
    }
    let r = Unp::norm(u.sign, 127, k);
    (
        F80::new(u.sign, (r.exp + 16383) as u16, (r.sig >> 64) as u64),
        f,
    )
}

/// Decodes packed BCD (FBLD). Invalid digits are taken at face value.
pub fn from_bcd(b: [u8; 10]) -> F80 {
    let mut v: u64 = 0;
    for i in (0..9).rev() {
        let byte = b[i];
        v = v * 10 + u64::from(byte >> 4);
        v = v * 10 + u64::from(byte & 0xF);
    }
    let sign = b[9] & 0x80 != 0;
    if v == 0 {
        return F80::zero(sign);
    }
    let lz = v.leading_zeros();
    F80::new(sign, (16383 + 63 - lz) as u16, v << lz)
}

/// The packed-BCD indefinite.
pub const BCD_INDEFINITE: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF];

/// Encodes as packed BCD (FBSTP), rounding per RC.
pub fn to_bcd(a: F80, env: &Env) -> ([u8; 10], u16) {
    let de = match a.class() {
        Class::Unsupported | Class::QNaN | Class::SNaN | Class::Infinity => {
            return (BCD_INDEFINITE, IE);
        }
        _ => 0,
    };
    let Some((mut mag, inexact, up)) = round_to_int(a, env.rc) else {
        return (BCD_INDEFINITE, IE | de);
    };
    if mag >= 1_000_000_000_000_000_000 {
        return (BCD_INDEFINITE, IE | de);
    }
    let mut out = [0u8; 10];
    for byte in out.iter_mut().take(9) {
        let lo = (mag % 10) as u8;
        mag /= 10;
        let hi = (mag % 10) as u8;
        mag /= 10;
        *byte = (hi << 4) | lo;
    }
    if a.sign() {
        out[9] = 0x80;
    }
    let mut f = de;
    if inexact {
        f |= PE;
    }
    if up {
        f |= C1;
    }
    (out, f)
}

/// FSCALE: `a * 2^trunc(b)`.
pub fn scale(a: F80, b: F80, env: &Env) -> (F80, u16) {
    let fl = match pre2(a, b) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (ia, ib, za, zb) = (is_inf(a), is_inf(b), is_zero(a), is_zero(b));
    if ib {
        return match (b.sign(), za, ia) {
            (false, true, _) => invalid(fl),
            (true, _, true) => invalid(fl),
            (false, _, _) => (F80::inf(a.sign()), fl),
            (true, _, _) => (F80::zero(a.sign()), fl),
        };
    }
    if ia || za {
        return (a, fl);
    }
    let n: i32 = if zb {
        0
    } else {
        let u = unpack(b);
        if u.exp < 0 {
            0
        } else if u.exp > 20 {
            if u.sign {
                -(1 << 20)
            } else {
                1 << 20
            }
        } else {
            let mag = (u.sig >> (127 - u.exp)) as i32;
            if u.sign {
                -mag
            } else {
                mag
            }
        }
    };
    let mut u = unpack(a);
    u.exp += n;
    // Precision control does not apply to FSCALE.
    let (r, f) = round_ext(u, &Env { prec: 64, ..*env });
    (r, fl | f)
}

/// FXTRACT: `(exponent, significand)`.
pub fn xtract(a: F80) -> ((F80, F80), u16) {
    match a.class() {
        Class::Unsupported => ((F80::INDEFINITE, F80::INDEFINITE), IE),
        Class::SNaN => ((a.quiet(), a.quiet()), IE),
        Class::QNaN => ((a, a), 0),
        Class::Zero => ((F80::inf(true), a), ZE),
        Class::Infinity => ((F80::INFINITY, a), 0),
        c => {
            let u = unpack(a);
            let sig = F80::new(u.sign, 0x3FFF, (u.sig >> 64) as u64);
            let e = from_i64(i64::from(u.exp));
            ((e, sig), if c == Class::Denormal { DE } else { 0 })
        }
    }
}

/// Result of FPREM/FPREM1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rem {
    /// The (partial) remainder.
    pub value: F80,
    /// Low three bits of the quotient (valid when complete).
    pub q: u64,
    /// False when only a partial reduction was done (C2 = 1).
    pub complete: bool,
    /// Exception bits.
    pub flags: u16,
}

/// FPREM (`ieee == false`, truncated quotient) and FPREM1 (`ieee == true`, nearest).
pub fn rem(a: F80, b: F80, ieee: bool, env: &Env) -> Rem {
    let done = |value: F80, flags: u16| Rem {
        value,
        q: 0,
        complete: true,
        flags,
    };
    let fl = match pre2(a, b) {
        Ok(f) => f,
        Err((v, f)) => return done(v, f),
    };
    if is_inf(a) || is_zero(b) {
        let (v, f) = invalid(fl);
        return done(v, f);
    }
    if is_zero(a) {
        return done(a, fl);
    }
    let x = unpack(a);
    if is_inf(b) {
        // The dividend comes back through the (exact) rounding: a pseudo-denormal is
        // re-encoded with exponent 1 and a denormal meets the unmasked-underflow rule.
        let (v, f) = round_ext(x, &Env { prec: 64, ..*env });
        return done(v, fl | (f & !(PE | C1)));
    }
    let y = unpack(b);
    let (am, bm) = ((x.sig >> 64) as u64, (y.sig >> 64) as u64);
    let d = x.exp - y.exp;
    let mut q: u64;
    let rem_m: u128;
    let mut sign = x.sign;
    let rexp: i32;
    if d >= 64 {
        let n = ((d & 31) | 32) as u32;
        let num = u128::from(am) << n;
        rem_m = num % u128::from(bm);
        // remainder value: rem_m * 2^(x.exp - n - 63)
        rexp = x.exp - n as i32;
        let u = if rem_m == 0 {
            return Rem {
                value: F80::zero(sign),
                q: 0,
                complete: false,
                flags: fl,
            };
        } else {
            Unp::norm(sign, rexp + 64, rem_m)
        };
        let (v, f) = round_ext(u, &Env { prec: 64, ..*env });
        return Rem {
            value: v,
            q: 0,
            complete: false,
            flags: fl | (f & !(PE | C1)),
        };
    }
    // value = r * 2^(y.exp - 63 - s) with s = 1 when d == -1 (a kept one bit finer).
    let (num, s): (u128, i32) = if d < 0 {
        if d < -1 {
            // |a| < |b|/2: both quotients are 0; a tiny `a` still meets the underflow rules.
            let (v, f) = round_ext(x, &Env { prec: 64, ..*env });
            return done(v, fl | (f & !(PE | C1)));
        }
        (u128::from(am), 1)
    } else {
        (u128::from(am) << d, 0)
    };
    let den = u128::from(bm) << s;
    q = (num / den) as u64;
    let mut r = num % den;
    if ieee {
        let twice = r << 1;
        if twice > den || (twice == den && q & 1 == 1) {
            r = den - r;
            q = q.wrapping_add(1);
            sign = !sign;
        }
    }
    rexp = y.exp - s;
    if r == 0 {
        return Rem {
            value: F80::zero(x.sign),
            q,
            complete: true,
            flags: fl,
        };
    }
    let (v, f) = round_ext(Unp::norm(sign, rexp + 64, r), &Env { prec: 64, ..*env });
    Rem {
        value: v,
        q,
        complete: true,
        flags: fl | (f & !(PE | C1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(se: u16, m: u64) -> F80 {
        F80 { se, m }
    }
    const NEAR: Env = Env {
        prec: 64,
        rc: Rc::Nearest,
        oe_masked: true,
        ue_masked: true,
    };
    fn env(prec: u32, rc: Rc) -> Env {
        Env {
            prec,
            rc,
            oe_masked: true,
            ue_masked: true,
        }
    }
    fn int(v: i64) -> F80 {
        from_i64(v)
    }

    #[test]
    fn classify() {
        assert_eq!(F80::ZERO.class(), Class::Zero);
        assert_eq!(f(0, 1).class(), Class::Denormal);
        assert_eq!(f(0, 1 << 63).class(), Class::Denormal);
        assert_eq!(F80::ONE.class(), Class::Normal);
        assert_eq!(f(0x3FFF, 1 << 62).class(), Class::Unsupported);
        assert_eq!(F80::INFINITY.class(), Class::Infinity);
        assert_eq!(f(0x7FFF, 0).class(), Class::Unsupported);
        assert_eq!(F80::INDEFINITE.class(), Class::QNaN);
        assert_eq!(f(0x7FFF, (1 << 63) | 1).class(), Class::SNaN);
    }

    #[test]
    fn small_integers_add_mul_div() {
        assert_eq!(add(int(2), int(3), &NEAR), (int(5), 0));
        assert_eq!(sub(int(2), int(3), &NEAR), (int(-1), 0));
        assert_eq!(mul(int(-7), int(6), &NEAR), (int(-42), 0));
        assert_eq!(div(int(42), int(-6), &NEAR), (int(-7), 0));
        assert_eq!(sqrt(int(144), &NEAR), (int(12), 0));
    }

    #[test]
    fn one_third_every_rounding() {
        // 1/3 = 0.010101...: the 64-bit significand AAAA...AAAA, remainder < half.
        let third = |rc| div(int(1), int(3), &env(64, rc));
        assert_eq!(
            third(Rc::Nearest),
            (f(0x3FFD, 0xAAAA_AAAA_AAAA_AAAB), PE | C1)
        );
        assert_eq!(third(Rc::Zero), (f(0x3FFD, 0xAAAA_AAAA_AAAA_AAAA), PE));
        assert_eq!(third(Rc::Down), (f(0x3FFD, 0xAAAA_AAAA_AAAA_AAAA), PE));
        assert_eq!(third(Rc::Up), (f(0x3FFD, 0xAAAA_AAAA_AAAA_AAAB), PE | C1));
        // At 24 bits: AAAAAA|AA... → round bit 1, sticky → nearest rounds up.
        let (r, fl) = div(int(1), int(3), &env(24, Rc::Nearest));
        assert_eq!(r, f(0x3FFD, 0xAAAA_AB00_0000_0000));
        assert_eq!(fl, PE | C1);
        let (r, _) = div(int(-1), int(3), &env(53, Rc::Down));
        assert_eq!(r, f(0xBFFD, 0xAAAA_AAAA_AAAA_B000));
    }

    #[test]
    fn ties_to_even() {
        // 1 + 2^-64 is a tie at 64 bits: stays 1. 1 + 3*2^-64 rounds up to 1 + 2^-62.
        let tiny = f(0x3FFF - 64, 1 << 63);
        assert_eq!(add(F80::ONE, tiny, &NEAR).0, F80::ONE);
        let x = f(0x3FFF, (1 << 63) | 1);
        assert_eq!(add(x, tiny, &NEAR).0, f(0x3FFF, (1 << 63) | 2));
        assert_eq!(add(F80::ONE, tiny, &env(64, Rc::Up)).0, x);
    }

    #[test]
    fn zeros_and_signs() {
        let z = F80::ZERO;
        let nz = z.negate();
        assert_eq!(add(z, nz, &NEAR).0, z);
        assert_eq!(add(z, nz, &env(64, Rc::Down)).0, nz);
        assert_eq!(add(nz, nz, &NEAR).0, nz);
        assert_eq!(sub(int(3), int(3), &NEAR).0, z);
        assert_eq!(sub(int(3), int(3), &env(64, Rc::Down)).0, nz);
        assert_eq!(sqrt(nz, &NEAR), (nz, 0));
        assert_eq!(mul(nz, int(5), &NEAR).0, nz);
    }

    #[test]
    fn invalid_and_zero_divide() {
        let inf = F80::INFINITY;
        assert_eq!(add(inf, inf.negate(), &NEAR), (F80::INDEFINITE, IE));
        assert_eq!(mul(inf, F80::ZERO, &NEAR), (F80::INDEFINITE, IE));
        assert_eq!(div(F80::ZERO, F80::ZERO, &NEAR), (F80::INDEFINITE, IE));
        assert_eq!(div(int(1), F80::ZERO.negate(), &NEAR), (inf.negate(), ZE));
        assert_eq!(sqrt(int(-1), &NEAR), (F80::INDEFINITE, IE));
        assert_eq!(add(f(0x3FFF, 0), int(1), &NEAR), (F80::INDEFINITE, IE));
    }

    #[test]
    fn nan_propagation() {
        let q1 = f(0x7FFF, 0xC000_0000_0000_0001);
        let q2 = f(0x7FFF, 0xC000_0000_0000_0002);
        let s2 = f(0x7FFF, 0x8000_0000_0000_0002);
        assert_eq!(add(q1, q2, &NEAR), (q2, 0));
        assert_eq!(add(s2, int(1), &NEAR), (s2.quiet(), IE));
        assert_eq!(mul(s2, q1, &NEAR), (q1, IE));
        assert_eq!(div(int(1), q1, &NEAR), (q1, 0));
    }

    #[test]
    fn overflow_masked_and_unmasked() {
        let max = f(0x7FFE, u64::MAX);
        assert_eq!(add(max, max, &NEAR), (F80::INFINITY, OE | PE | C1));
        assert_eq!(add(max, max, &env(64, Rc::Zero)), (max, OE | PE));
        assert_eq!(
            add(max.negate(), max.negate(), &env(64, Rc::Up)),
            (max.negate(), OE | PE)
        );
        let max24 = f(0x7FFE, 0xFFFF_FF00_0000_0000);
        assert_eq!(mul(max, int(2), &env(24, Rc::Zero)).0, max24);
        let e = Env {
            oe_masked: false,
            ..NEAR
        };
        let (r, fl) = mul(max, int(2), &e);
        assert_eq!(r, f(0x7FFF - BIAS_ADJUST as u16, u64::MAX));
        assert_eq!(fl, OE);
    }

    #[test]
    fn underflow_denormals() {
        let min_norm = f(1, 1 << 63);
        // min_norm / 2 is an exact denormal: no UE when masked.
        assert_eq!(div(min_norm, int(2), &NEAR), (f(0, 1 << 62), 0));
        // min_norm / 3 is inexact and tiny.
        let (r, fl) = div(min_norm, int(3), &NEAR);
        assert_eq!(r, f(0, 0x2AAA_AAAA_AAAA_AAAB));
        assert_eq!(fl, UE | PE | C1);
        // Denormal operand.
        assert_eq!(add(f(0, 1), F80::ZERO, &NEAR), (f(0, 1), DE));
        // Unmasked underflow: bias-adjusted result.
        let e = Env {
            ue_masked: false,
            ..NEAR
        };
        let (r, fl) = div(min_norm, int(2), &e);
        assert_eq!(r, f(BIAS_ADJUST as u16, 1 << 63));
        assert_eq!(fl, UE);
        // Pseudo-denormal operand behaves as the normal with exponent 1.
        assert_eq!(add(f(0, 1 << 63), F80::ZERO, &NEAR), (min_norm, DE));
    }

    #[test]
    fn compares() {
        assert_eq!(compare(int(1), int(2), false), (Some(Ordering::Less), 0));
        assert_eq!(
            compare(F80::ZERO, F80::ZERO.negate(), false),
            (Some(Ordering::Equal), 0)
        );
        assert_eq!(compare(int(-3), int(-2), false).0, Some(Ordering::Less));
        assert_eq!(compare(F80::INDEFINITE, int(1), true), (None, 0));
        assert_eq!(compare(F80::INDEFINITE, int(1), false), (None, IE));
        assert_eq!(
            compare(F80::INFINITY, f(0x7FFE, u64::MAX), false).0,
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn conversions() {
        assert_eq!(from_f32(0x3F80_0000), (F80::ONE, 0));
        assert_eq!(from_f64(0xC000_0000_0000_0000), (int(-2), 0));
        assert_eq!(from_f32(1), (f(0x3FFF - 149, 1 << 63), DE));
        assert_eq!(from_f32(0x7F80_0001).1, IE);
        assert_eq!(to_f32(F80::ONE, &NEAR).bits, 0x3F80_0000);
        let third = div(int(1), int(3), &NEAR).0;
        assert_eq!(to_f32(third, &NEAR).bits, 0x3EAA_AAAB);
        assert_eq!(to_f64(third, &NEAR).bits, 0x3FD5_5555_5555_5555);
        assert_eq!(to_f32(f(0x7FFE, 1 << 63), &NEAR).bits, 0x7F80_0000);
        let tiny = to_f32(f(0x3FFF - 149, 3 << 62), &NEAR);
        assert_eq!(tiny.bits, 2);
        assert_eq!(tiny.flags, UE | PE | C1);
        assert_eq!(to_int(int(-32768), 16, &NEAR), (-32768, 0));
        assert_eq!(to_int(int(32768), 16, &NEAR), (-32768, IE));
        let half = f(0x3FFE, 1 << 63);
        assert_eq!(to_int(half, 32, &NEAR), (0, PE));
        assert_eq!(to_int(half, 32, &env(64, Rc::Up)), (1, PE | C1));
        assert_eq!(to_int(f(0x3FFF, 3 << 62), 64, &NEAR), (2, PE | C1));
        assert_eq!(
            to_int(f(0x403E, 1 << 63).negate(), 64, &NEAR),
            (i64::MIN, 0)
        );
        assert_eq!(round_int(f(0x4000, 5 << 61), &NEAR), (int(2), PE));
        assert_eq!(
            round_int(half.negate(), &env(64, Rc::Down)),
            (int(-1), PE | C1)
        );
    }

    #[test]
    fn bcd_roundtrip() {
        let v = from_i64(-123_456_789_012_345_678);
        let (b, fl) = to_bcd(v, &NEAR);
        assert_eq!(fl, 0);
        assert_eq!(
            b,
            [0x78, 0x56, 0x34, 0x12, 0x90, 0x78, 0x56, 0x34, 0x12, 0x80]
        );
        assert_eq!(from_bcd(b), v);
        assert_eq!(to_bcd(from_i64(1_000_000_000_000_000_000), &NEAR).1, IE);
    }

    #[test]
    fn scale_xtract_rem() {
        assert_eq!(scale(int(3), int(4), &NEAR), (int(48), 0));
        assert_eq!(
            scale(int(3), f(0xBFFF, 3 << 62), &NEAR).0,
            f(0x3FFF, 3 << 62)
        );
        let ((e, s), fl) = xtract(int(48));
        assert_eq!((e, s, fl), (int(5), f(0x3FFF, 3 << 62), 0));
        assert_eq!(xtract(F80::ZERO).0 .0, F80::inf(true));
        let r = rem(int(17), int(5), false, &NEAR);
        assert_eq!((r.value, r.q, r.complete), (int(2), 3, true));
        let r = rem(int(17), int(5), true, &NEAR);
        assert_eq!((r.value, r.q, r.complete), (int(2), 3, true));
        let r = rem(int(18), int(5), true, &NEAR);
        assert_eq!((r.value, r.q), (int(-2), 4));
        let r = rem(int(-18), int(5), false, &NEAR);
        assert_eq!((r.value, r.q), (int(-3), 3));
        let big = f(0x3FFF + 100, 1 << 63);
        let r = rem(big, int(3), false, &NEAR);
        assert!(!r.complete);
    }

    #[test]
    fn sqrt_rounding() {
        // sqrt(2) = 1.6A09E667F3BCC908B2FB...: nearest rounds up in the last place.
        let (r, fl) = sqrt(int(2), &NEAR);
        assert_eq!(r, f(0x3FFF, 0xB504_F333_F9DE_6484));
        assert_eq!(fl, PE);
        assert_eq!(
            sqrt(int(2), &env(64, Rc::Up)).0,
            f(0x3FFF, 0xB504_F333_F9DE_6485)
        );
        assert_eq!(
            sqrt(int(2), &env(24, Rc::Nearest)).0,
            f(0x3FFF, 0xB504_F300_0000_0000)
        );
        assert_eq!(
            sqrt(f(0x3FFF + 1, 1 << 63), &NEAR).0,
            f(0x3FFF, 0xB504_F333_F9DE_6484)
        );
        assert_eq!(sqrt(f(0, 2), &NEAR), (f(0x3FFF - 8222, 1 << 63), DE));
    }
}
