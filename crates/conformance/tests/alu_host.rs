//! Host-differential ALU test: every integer ALU instruction form runs natively on the host
//! CPU (x86-64, through `asm!`) and on the wasm86 CPU in flat 32-bit protected mode, with the
//! same random operands and input flags. Results and the flags the Intel SDM defines for the
//! instruction (and operands) must agree.
//!
//! `WASM86_ALU_CASES` sets the cases per instruction form (default 100 000).
#![cfg(target_arch = "x86_64")]

use std::arch::asm;
use std::fmt::Write as _;

use wasm86_conformance::fuzz::Rng;
use wasm86_conformance::harness::Harness;
use wasm86_conformance::report;
use wasm86_cpu::CpuExit;

/// CF PF AF ZF SF OF.
const CF: u32 = 1;
const PF: u32 = 1 << 2;
const AF: u32 = 1 << 4;
const ZF: u32 = 1 << 6;
const SF: u32 = 1 << 7;
const OF: u32 = 1 << 11;
const ARITH: u32 = CF | PF | AF | ZF | SF | OF;

/// Where the instruction is placed in guest memory.
const CODE: u32 = 0x1000;

/// Registers the instructions use: EAX (destination/accumulator), ECX (count, divisor,
/// CMPXCHG destination), EDX (source, high half), and the arithmetic flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct St {
    eax: u32,
    ecx: u32,
    edx: u32,
    flags: u32,
}

/// Builds a function that runs one instruction natively on `St`.
macro_rules! native {
    ($insn:literal) => {{
        fn run(s: &mut St) {
            let mut fl: u64 = (s.flags & ARITH) as u64 | 2;
            // SAFETY: the block only loads arithmetic flags (DF, TF, AC stay clear), runs one
            // register-only ALU instruction on EAX/ECX/EDX, and restores the stack pointer
            // (one push and one pop around each of POPFQ and PUSHFQ).
            unsafe {
                asm!(
                    "push {fl}",
                    "popfq",
                    $insn,
                    "pushfq",
                    "pop {fl}",
                    fl = inout(reg) fl,
                    inout("eax") s.eax,
                    inout("ecx") s.ecx,
                    inout("edx") s.edx,
                );
            }
            s.flags = fl as u32 & ARITH;
        }
        run as fn(&mut St)
    }};
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Count {
    /// CL.
    Cl,
    /// An immediate (1 for the D0/D1 forms).
    Imm(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// All six arithmetic flags defined.
    Arith,
    /// AF undefined (logic ops).
    Logic,
    /// SHL/SHR/SAR; `shx` is true for SHL/SHR (CF undefined when count >= size).
    Shift { count: Count, shx: bool },
    /// ROL/ROR/RCL/RCR.
    Rotate { count: Count },
    /// SHLD/SHRD.
    DoubleShift { count: Count },
    /// MUL/IMUL: only CF and OF defined.
    Mul,
    /// DIV/IDIV: no flag defined; skipped when it would fault.
    Div { signed: bool },
    /// BT/BTS/BTR/BTC: CF defined, ZF unchanged.
    BitTest,
    /// BSF/BSR: ZF defined; destination undefined for a zero source.
    BitScan,
    /// CMPXCHG (operands made equal half of the time).
    Cmpxchg,
}

struct Case {
    name: &'static str,
    bytes: &'static [u8],
    native: fn(&mut St),
    size: u32,
    kind: Kind,
}

macro_rules! case {
    ($name:literal, $insn:literal, $size:expr, $kind:expr, [$($b:expr),*]) => {
        Case { name: $name, bytes: &[$($b),*], native: native!($insn), size: $size, kind: $kind }
    };
}

fn cases() -> Vec<Case> {
    use Count::*;
    use Kind::*;
    let shl = |c| Shift {
        count: c,
        shx: true,
    };
    let sar = |c| Shift {
        count: c,
        shx: false,
    };
    let rot = |c| Rotate { count: c };
    let shd = |c| DoubleShift { count: c };
    vec![
        // Two-operand arithmetic and logic, r/m = EAX, reg = EDX.
        case!("add8", "add al, dl", 8, Arith, [0x00, 0xD0]),
        case!("add16", "add ax, dx", 16, Arith, [0x66, 0x01, 0xD0]),
        case!("add32", "add eax, edx", 32, Arith, [0x01, 0xD0]),
        case!("add32_imm8", "add eax, -128", 32, Arith, [0x83, 0xC0, 0x80]),
        case!(
            "add16_imm16",
            "add ax, 0x7fff",
            16,
            Arith,
            [0x66, 0x05, 0xFF, 0x7F]
        ),
        case!("adc8", "adc al, dl", 8, Arith, [0x10, 0xD0]),
        case!("adc16", "adc ax, dx", 16, Arith, [0x66, 0x11, 0xD0]),
        case!("adc32", "adc eax, edx", 32, Arith, [0x11, 0xD0]),
        case!("sub8", "sub al, dl", 8, Arith, [0x28, 0xD0]),
        case!("sub16", "sub ax, dx", 16, Arith, [0x66, 0x29, 0xD0]),
        case!("sub32", "sub eax, edx", 32, Arith, [0x29, 0xD0]),
        case!(
            "sub32_imm32",
            "sub eax, 0x80000001",
            32,
            Arith,
            [0x2D, 0x01, 0x00, 0x00, 0x80]
        ),
        case!("sbb8", "sbb al, dl", 8, Arith, [0x18, 0xD0]),
        case!("sbb16", "sbb ax, dx", 16, Arith, [0x66, 0x19, 0xD0]),
        case!("sbb32", "sbb eax, edx", 32, Arith, [0x19, 0xD0]),
        case!("cmp8", "cmp al, dl", 8, Arith, [0x38, 0xD0]),
        case!("cmp16", "cmp ax, dx", 16, Arith, [0x66, 0x39, 0xD0]),
        case!("cmp32", "cmp eax, edx", 32, Arith, [0x39, 0xD0]),
        case!("cmp8_imm", "cmp al, 0x80", 8, Arith, [0x3C, 0x80]),
        case!("and8", "and al, dl", 8, Logic, [0x20, 0xD0]),
        case!("and16", "and ax, dx", 16, Logic, [0x66, 0x21, 0xD0]),
        case!("and32", "and eax, edx", 32, Logic, [0x21, 0xD0]),
        case!("or8", "or al, dl", 8, Logic, [0x08, 0xD0]),
        case!("or16", "or ax, dx", 16, Logic, [0x66, 0x09, 0xD0]),
        case!("or32", "or eax, edx", 32, Logic, [0x09, 0xD0]),
        case!("xor8", "xor al, dl", 8, Logic, [0x30, 0xD0]),
        case!("xor16", "xor ax, dx", 16, Logic, [0x66, 0x31, 0xD0]),
        case!("xor32", "xor eax, edx", 32, Logic, [0x31, 0xD0]),
        case!("test8", "test al, dl", 8, Logic, [0x84, 0xD0]),
        case!("test16", "test ax, dx", 16, Logic, [0x66, 0x85, 0xD0]),
        case!("test32", "test eax, edx", 32, Logic, [0x85, 0xD0]),
        case!(
            "test32_imm",
            "test eax, 0x80000001",
            32,
            Logic,
            [0xA9, 0x01, 0x00, 0x00, 0x80]
        ),
        // One-operand.
        case!("inc8", "inc al", 8, Arith, [0xFE, 0xC0]),
        case!("inc16", "inc ax", 16, Arith, [0x66, 0xFF, 0xC0]),
        case!("inc32", "inc eax", 32, Arith, [0xFF, 0xC0]),
        case!("inc32_short", "inc eax", 32, Arith, [0x40]),
        case!("dec8", "dec al", 8, Arith, [0xFE, 0xC8]),
        case!("dec16", "dec ax", 16, Arith, [0x66, 0xFF, 0xC8]),
        case!("dec16_short", "dec ax", 16, Arith, [0x66, 0x48]),
        case!("dec32", "dec eax", 32, Arith, [0xFF, 0xC8]),
        case!("neg8", "neg al", 8, Arith, [0xF6, 0xD8]),
        case!("neg16", "neg ax", 16, Arith, [0x66, 0xF7, 0xD8]),
        case!("neg32", "neg eax", 32, Arith, [0xF7, 0xD8]),
        case!("not8", "not al", 8, Arith, [0xF6, 0xD0]),
        case!("not16", "not ax", 16, Arith, [0x66, 0xF7, 0xD0]),
        case!("not32", "not eax", 32, Arith, [0xF7, 0xD0]),
        // Shifts by CL, by 1 and by an immediate.
        case!("shl8_cl", "shl al, cl", 8, shl(Cl), [0xD2, 0xE0]),
        case!("shl16_cl", "shl ax, cl", 16, shl(Cl), [0x66, 0xD3, 0xE0]),
        case!("shl32_cl", "shl eax, cl", 32, shl(Cl), [0xD3, 0xE0]),
        case!("shl32_1", "shl eax, 1", 32, shl(Imm(1)), [0xD1, 0xE0]),
        case!("shl8_imm", "shl al, 7", 8, shl(Imm(7)), [0xC0, 0xE0, 0x07]),
        case!("shr8_cl", "shr al, cl", 8, shl(Cl), [0xD2, 0xE8]),
        case!("shr16_cl", "shr ax, cl", 16, shl(Cl), [0x66, 0xD3, 0xE8]),
        case!("shr32_cl", "shr eax, cl", 32, shl(Cl), [0xD3, 0xE8]),
        case!("shr16_1", "shr ax, 1", 16, shl(Imm(1)), [0x66, 0xD1, 0xE8]),
        case!(
            "shr32_imm",
            "shr eax, 31",
            32,
            shl(Imm(31)),
            [0xC1, 0xE8, 0x1F]
        ),
        case!("sar8_cl", "sar al, cl", 8, sar(Cl), [0xD2, 0xF8]),
        case!("sar16_cl", "sar ax, cl", 16, sar(Cl), [0x66, 0xD3, 0xF8]),
        case!("sar32_cl", "sar eax, cl", 32, sar(Cl), [0xD3, 0xF8]),
        case!("sar8_1", "sar al, 1", 8, sar(Imm(1)), [0xD0, 0xF8]),
        case!(
            "sar16_imm",
            "sar ax, 9",
            16,
            sar(Imm(9)),
            [0x66, 0xC1, 0xF8, 0x09]
        ),
        // Rotates.
        case!("rol8_cl", "rol al, cl", 8, rot(Cl), [0xD2, 0xC0]),
        case!("rol16_cl", "rol ax, cl", 16, rot(Cl), [0x66, 0xD3, 0xC0]),
        case!("rol32_cl", "rol eax, cl", 32, rot(Cl), [0xD3, 0xC0]),
        case!("rol32_1", "rol eax, 1", 32, rot(Imm(1)), [0xD1, 0xC0]),
        case!("ror8_cl", "ror al, cl", 8, rot(Cl), [0xD2, 0xC8]),
        case!("ror16_cl", "ror ax, cl", 16, rot(Cl), [0x66, 0xD3, 0xC8]),
        case!("ror32_cl", "ror eax, cl", 32, rot(Cl), [0xD3, 0xC8]),
        case!("ror8_1", "ror al, 1", 8, rot(Imm(1)), [0xD0, 0xC8]),
        case!("rcl8_cl", "rcl al, cl", 8, rot(Cl), [0xD2, 0xD0]),
        case!("rcl16_cl", "rcl ax, cl", 16, rot(Cl), [0x66, 0xD3, 0xD0]),
        case!("rcl32_cl", "rcl eax, cl", 32, rot(Cl), [0xD3, 0xD0]),
        case!("rcl16_1", "rcl ax, 1", 16, rot(Imm(1)), [0x66, 0xD1, 0xD0]),
        case!("rcr8_cl", "rcr al, cl", 8, rot(Cl), [0xD2, 0xD8]),
        case!("rcr16_cl", "rcr ax, cl", 16, rot(Cl), [0x66, 0xD3, 0xD8]),
        case!("rcr32_cl", "rcr eax, cl", 32, rot(Cl), [0xD3, 0xD8]),
        case!(
            "rcr32_imm",
            "rcr eax, 5",
            32,
            rot(Imm(5)),
            [0xC1, 0xD8, 0x05]
        ),
        // Double shifts: SHLD/SHRD r/m = EAX, reg = EDX.
        case!(
            "shld16_cl",
            "shld ax, dx, cl",
            16,
            shd(Cl),
            [0x66, 0x0F, 0xA5, 0xD0]
        ),
        case!(
            "shld32_cl",
            "shld eax, edx, cl",
            32,
            shd(Cl),
            [0x0F, 0xA5, 0xD0]
        ),
        case!(
            "shld32_imm",
            "shld eax, edx, 1",
            32,
            shd(Imm(1)),
            [0x0F, 0xA4, 0xD0, 0x01]
        ),
        case!(
            "shrd16_cl",
            "shrd ax, dx, cl",
            16,
            shd(Cl),
            [0x66, 0x0F, 0xAD, 0xD0]
        ),
        case!(
            "shrd32_cl",
            "shrd eax, edx, cl",
            32,
            shd(Cl),
            [0x0F, 0xAD, 0xD0]
        ),
        case!(
            "shrd16_imm",
            "shrd ax, dx, 12",
            16,
            shd(Imm(12)),
            [0x66, 0x0F, 0xAC, 0xD0, 0x0C]
        ),
        // Multiply and divide by ECX.
        case!("mul8", "mul cl", 8, Mul, [0xF6, 0xE1]),
        case!("mul16", "mul cx", 16, Mul, [0x66, 0xF7, 0xE1]),
        case!("mul32", "mul ecx", 32, Mul, [0xF7, 0xE1]),
        case!("imul8", "imul cl", 8, Mul, [0xF6, 0xE9]),
        case!("imul16", "imul cx", 16, Mul, [0x66, 0xF7, 0xE9]),
        case!("imul32", "imul ecx", 32, Mul, [0xF7, 0xE9]),
        case!(
            "imul16_2op",
            "imul ax, dx",
            16,
            Mul,
            [0x66, 0x0F, 0xAF, 0xC2]
        ),
        case!("imul32_2op", "imul eax, edx", 32, Mul, [0x0F, 0xAF, 0xC2]),
        case!(
            "imul16_3op_imm8",
            "imul ax, dx, -3",
            16,
            Mul,
            [0x66, 0x6B, 0xC2, 0xFD]
        ),
        case!(
            "imul32_3op_imm8",
            "imul eax, edx, 127",
            32,
            Mul,
            [0x6B, 0xC2, 0x7F]
        ),
        case!(
            "imul16_3op_imm16",
            "imul ax, dx, 0x1234",
            16,
            Mul,
            [0x66, 0x69, 0xC2, 0x34, 0x12]
        ),
        case!(
            "imul32_3op_imm32",
            "imul eax, edx, -0x12345",
            32,
            Mul,
            [0x69, 0xC2, 0xBB, 0xDC, 0xFE, 0xFF]
        ),
        case!("div8", "div cl", 8, Div { signed: false }, [0xF6, 0xF1]),
        case!(
            "div16",
            "div cx",
            16,
            Div { signed: false },
            [0x66, 0xF7, 0xF1]
        ),
        case!("div32", "div ecx", 32, Div { signed: false }, [0xF7, 0xF1]),
        case!("idiv8", "idiv cl", 8, Div { signed: true }, [0xF6, 0xF9]),
        case!(
            "idiv16",
            "idiv cx",
            16,
            Div { signed: true },
            [0x66, 0xF7, 0xF9]
        ),
        case!("idiv32", "idiv ecx", 32, Div { signed: true }, [0xF7, 0xF9]),
        // Bit tests (register bit offset modulo the size; immediates).
        case!("bt16", "bt ax, dx", 16, BitTest, [0x66, 0x0F, 0xA3, 0xD0]),
        case!("bt32", "bt eax, edx", 32, BitTest, [0x0F, 0xA3, 0xD0]),
        case!("bts16", "bts ax, dx", 16, BitTest, [0x66, 0x0F, 0xAB, 0xD0]),
        case!("bts32", "bts eax, edx", 32, BitTest, [0x0F, 0xAB, 0xD0]),
        case!("btr16", "btr ax, dx", 16, BitTest, [0x66, 0x0F, 0xB3, 0xD0]),
        case!("btr32", "btr eax, edx", 32, BitTest, [0x0F, 0xB3, 0xD0]),
        case!("btc16", "btc ax, dx", 16, BitTest, [0x66, 0x0F, 0xBB, 0xD0]),
        case!("btc32", "btc eax, edx", 32, BitTest, [0x0F, 0xBB, 0xD0]),
        case!(
            "bt32_imm",
            "bt eax, 37",
            32,
            BitTest,
            [0x0F, 0xBA, 0xE0, 0x25]
        ),
        case!(
            "bts16_imm",
            "bts ax, 15",
            16,
            BitTest,
            [0x66, 0x0F, 0xBA, 0xE8, 0x0F]
        ),
        case!(
            "btr32_imm",
            "btr eax, 31",
            32,
            BitTest,
            [0x0F, 0xBA, 0xF0, 0x1F]
        ),
        case!(
            "btc32_imm",
            "btc eax, 3",
            32,
            BitTest,
            [0x0F, 0xBA, 0xF8, 0x03]
        ),
        // Bit scans: destination EAX, source EDX.
        case!("bsf16", "bsf ax, dx", 16, BitScan, [0x66, 0x0F, 0xBC, 0xC2]),
        case!("bsf32", "bsf eax, edx", 32, BitScan, [0x0F, 0xBC, 0xC2]),
        case!("bsr16", "bsr ax, dx", 16, BitScan, [0x66, 0x0F, 0xBD, 0xC2]),
        case!("bsr32", "bsr eax, edx", 32, BitScan, [0x0F, 0xBD, 0xC2]),
        case!("bswap32", "bswap eax", 32, Arith, [0x0F, 0xC8]),
        // Exchanges.
        case!("xadd8", "xadd al, dl", 8, Arith, [0x0F, 0xC0, 0xD0]),
        case!("xadd16", "xadd ax, dx", 16, Arith, [0x66, 0x0F, 0xC1, 0xD0]),
        case!("xadd32", "xadd eax, edx", 32, Arith, [0x0F, 0xC1, 0xD0]),
        case!("cmpxchg8", "cmpxchg cl, dl", 8, Cmpxchg, [0x0F, 0xB0, 0xD1]),
        case!(
            "cmpxchg16",
            "cmpxchg cx, dx",
            16,
            Cmpxchg,
            [0x66, 0x0F, 0xB1, 0xD1]
        ),
        case!(
            "cmpxchg32",
            "cmpxchg ecx, edx",
            32,
            Cmpxchg,
            [0x0F, 0xB1, 0xD1]
        ),
    ]
}

/// What to compare for one input.
struct Check {
    flags: u32,
    /// Bits of EAX to compare.
    eax: u32,
}

/// The defined flags and result bits for `kind` with input `s` (None: skip the input).
fn check(c: &Case, s: &St) -> Option<Check> {
    let all = Check {
        flags: ARITH,
        eax: !0,
    };
    let low_mask = match c.size {
        8 => 0xFF,
        16 => 0xFFFF,
        _ => !0u32,
    };
    let count = |k: Count| match k {
        Count::Cl => s.ecx & 0x1F,
        Count::Imm(n) => n as u32 & 0x1F,
    };
    Some(match c.kind {
        Kind::Arith | Kind::Cmpxchg => all,
        Kind::Logic => Check {
            flags: ARITH & !AF,
            ..all
        },
        Kind::Shift { count: k, shx } => {
            let n = count(k);
            if n == 0 {
                return Some(all);
            }
            let mut f = SF | ZF | PF | CF;
            if n == 1 {
                f |= OF;
            }
            if shx && n >= c.size {
                f &= !CF;
            }
            Check { flags: f, ..all }
        }
        Kind::Rotate { count: k } => {
            let n = count(k);
            if n == 0 {
                return Some(all);
            }
            let mut f = ARITH & !OF;
            if n == 1 {
                f |= OF;
            }
            Check { flags: f, ..all }
        }
        Kind::DoubleShift { count: k } => {
            let n = count(k);
            if n == 0 {
                return Some(all);
            }
            if n > c.size {
                // Result and flags undefined; the upper half of EAX must be kept.
                return Some(Check {
                    flags: 0,
                    eax: !low_mask,
                });
            }
            let mut f = SF | ZF | PF | CF;
            if n == 1 {
                f |= OF;
            }
            Check { flags: f, ..all }
        }
        Kind::Mul => Check {
            flags: CF | OF,
            ..all
        },
        Kind::Div { signed } => {
            let (lo, hi, d) = (s.eax, s.edx, s.ecx);
            let ok = match (c.size, signed) {
                (8, false) => d as u8 != 0 && (lo as u16 / d as u8 as u16) <= 0xFF,
                (16, false) => {
                    let n = ((hi as u16 as u32) << 16) | lo as u16 as u32;
                    d as u16 != 0 && n / d as u16 as u32 <= 0xFFFF
                }
                (_, false) => {
                    let n = ((hi as u64) << 32) | lo as u64;
                    d != 0 && n / d as u64 <= 0xFFFF_FFFF
                }
                (8, true) => {
                    let dv = d as u8 as i8 as i32;
                    dv != 0 && (-128..=127).contains(&(lo as u16 as i16 as i32 / dv))
                }
                (16, true) => {
                    let n = (((hi as u16 as u32) << 16) | lo as u16 as u32) as i32 as i64;
                    let dv = d as u16 as i16 as i64;
                    dv != 0 && (-32768..=32767).contains(&(n / dv))
                }
                (_, true) => {
                    let n = (((hi as u64) << 32) | lo as u64) as i64 as i128;
                    let dv = d as i32 as i128;
                    dv != 0 && (i32::MIN as i128..=i32::MAX as i128).contains(&(n / dv))
                }
            };
            if !ok {
                return None;
            }
            Check { flags: 0, ..all }
        }
        Kind::BitTest => Check {
            flags: CF | ZF,
            ..all
        },
        Kind::BitScan => {
            let src = s.edx & low_mask;
            Check {
                flags: ZF,
                eax: if src == 0 { !low_mask } else { !0 },
            }
        }
    })
}

/// Operand values biased to edge cases.
fn operand(rng: &mut Rng) -> u32 {
    const EDGES: [u32; 14] = [
        0,
        1,
        2,
        0x7F,
        0x80,
        0xFF,
        0x100,
        0x7FFF,
        0x8000,
        0xFFFF,
        0x7FFF_FFFF,
        0x8000_0000,
        0xFFFF_FFFE,
        0xFFFF_FFFF,
    ];
    match rng.below(8) {
        0 => EDGES[rng.below(EDGES.len() as u32) as usize],
        1 => rng.below(0x40),
        2 => rng.next_u32() | 0xFFFF_FF00,
        _ => rng.next_u32(),
    }
}

fn input(c: &Case, rng: &mut Rng) -> St {
    let mut s = St {
        eax: operand(rng),
        ecx: operand(rng),
        edx: operand(rng),
        flags: (rng.next_u32() & ARITH) | 2,
    };
    match c.kind {
        Kind::Div { signed: true } if rng.chance(10) => {
            // The most negative quotient (-128, -32768, -2^31) is valid, not a divide error.
            let d = (rng.below(200) as i64 - 100).max(1) * if rng.chance(50) { 1 } else { -1 };
            let q = -(1i64 << (c.size - 1));
            let r = if d > 0 {
                -(rng.below(d as u32) as i64)
            } else {
                0
            };
            let n = q * d + r;
            match c.size {
                8 => {
                    s.eax = (s.eax & !0xFFFF) | (n as u16 as u32);
                    s.ecx = (s.ecx & !0xFF) | (d as u8 as u32);
                }
                16 => {
                    s.eax = (s.eax & !0xFFFF) | (n as u16 as u32);
                    s.edx = (s.edx & !0xFFFF) | ((n >> 16) as u16 as u32);
                    s.ecx = (s.ecx & !0xFFFF) | (d as u16 as u32);
                }
                _ => {
                    s.eax = n as u32;
                    s.edx = (n >> 32) as u32;
                    s.ecx = d as u32;
                }
            }
        }
        Kind::Div { .. } if rng.chance(70) => {
            // Keep the high half below the divisor so most divisions do not fault.
            let d = match c.size {
                8 => s.ecx & 0xFF,
                16 => s.ecx & 0xFFFF,
                _ => s.ecx,
            };
            if d != 0 {
                match c.size {
                    8 => s.eax = (s.eax & !0xFF00) | ((((s.eax >> 8) & 0xFF) % d) << 8),
                    16 => s.edx = (s.edx & !0xFFFF) | ((s.edx & 0xFFFF) % d),
                    _ => s.edx %= d,
                }
            }
        }
        Kind::Cmpxchg if rng.chance(50) => s.ecx = s.eax,
        Kind::Shift { .. } | Kind::Rotate { .. } | Kind::DoubleShift { .. } if rng.chance(60) => {
            s.ecx = (s.ecx & !0xFF) | rng.below(40);
        }
        _ => {}
    }
    s
}

/// One mismatch.
struct Mismatch {
    case: &'static str,
    bytes: &'static [u8],
    input: St,
    native: St,
    emulated: St,
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Results of one instruction form.
struct CaseResult {
    ran: u64,
    bad: u64,
    first: Vec<Mismatch>,
}

/// Runs `per_case` random inputs of `c` natively and on the emulator.
fn run_case(h: &mut Harness, c: &Case, per_case: u64, rng: &mut Rng) -> CaseResult {
    let mut code = c.bytes.to_vec();
    code.push(0xF4);
    h.write_block(CODE, &code);
    let mut r = CaseResult {
        ran: 0,
        bad: 0,
        first: Vec::new(),
    };
    for _ in 0..per_case {
        let inp = input(c, rng);
        let Some(chk) = check(c, &inp) else { continue };
        r.ran += 1;
        let mut nat = inp;
        (c.native)(&mut nat);
        h.cpu.set_reg32(0, inp.eax);
        h.cpu.set_reg32(1, inp.ecx);
        h.cpu.set_reg32(2, inp.edx);
        h.cpu.set_eflags(inp.flags);
        h.cpu.set_eip(CODE);
        let (exit, n) = h.step();
        let emu = St {
            eax: h.cpu.reg32(0),
            ecx: h.cpu.reg32(1),
            edx: h.cpu.reg32(2),
            flags: h.cpu.eflags() & ARITH,
        };
        let eip_ok = exit == CpuExit::Limit && n == 1 && h.cpu.eip() == CODE + c.bytes.len() as u32;
        let same = eip_ok
            && (emu.eax ^ nat.eax) & chk.eax == 0
            && emu.ecx == nat.ecx
            && emu.edx == nat.edx
            && (emu.flags ^ nat.flags) & chk.flags == 0;
        if !same {
            r.bad += 1;
            if r.first.len() < 3 {
                r.first.push(Mismatch {
                    case: c.name,
                    bytes: c.bytes,
                    input: inp,
                    native: nat,
                    emulated: emu,
                });
            }
        }
    }
    r
}

fn flat32() -> Harness {
    let mut h = Harness::new();
    h.cpu.setup_flat32(CODE);
    h
}

#[test]
fn alu_matches_host() {
    let per_case: u64 = std::env::var("WASM86_ALU_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut h = flat32();
    let mut rng = Rng::new(0xA1B2_C3D4_E5F6_0718);
    let mut mismatches: Vec<Mismatch> = Vec::new();
    let mut failing_cases: Vec<(&'static str, u64, u64)> = Vec::new();
    let mut total_run = 0u64;
    for c in cases() {
        let r = run_case(&mut h, &c, per_case, &mut rng);
        total_run += r.ran;
        assert!(
            r.ran >= per_case / 4,
            "{}: only {} of {per_case} inputs usable",
            c.name,
            r.ran
        );
        if r.bad > 0 {
            failing_cases.push((c.name, r.bad, r.ran));
            mismatches.extend(r.first);
        }
    }
    let mut text = format!(
        "{} forms x {per_case} inputs ({total_run} run): {} forms differ from the host\n",
        cases().len(),
        failing_cases.len()
    );
    if !failing_cases.is_empty() {
        text.push_str("\n| form | bytes | failed/run | input eax ecx edx flags | host eax ecx edx flags | wasm86 eax ecx edx flags |\n|---|---|---|---|---|---|\n");
        for (name, bad, ran) in &failing_cases {
            for m in mismatches.iter().filter(|m| m.case == *name).take(1) {
                let f =
                    |s: &St| format!("{:08x} {:08x} {:08x} {:03x}", s.eax, s.ecx, s.edx, s.flags);
                let _ = writeln!(
                    text,
                    "| {name} | {} | {bad}/{ran} | {} | {} | {} |",
                    hex(m.bytes),
                    f(&m.input),
                    f(&m.native),
                    f(&m.emulated)
                );
            }
        }
    }
    println!("{text}");
    report::update_from_env(
        "alu",
        &format!("## ALU differential (host x86-64 vs wasm86)\n\n{text}"),
    );
    assert!(failing_cases.is_empty(), "ALU differences:\n{text}");
}

#[test]
fn a_wrong_emulation_is_detected() {
    // Native ADD against the bytes of SUB: the comparison must catch it.
    let wrong = case!("add_vs_sub", "add eax, edx", 32, Kind::Arith, [0x29, 0xD0]);
    let right = case!("add", "add eax, edx", 32, Kind::Arith, [0x01, 0xD0]);
    let mut h = flat32();
    let mut rng = Rng::new(3);
    let bad = run_case(&mut h, &wrong, 1000, &mut rng);
    assert_eq!(bad.ran, 1000);
    assert!(bad.bad > 900, "only {} of 1000 mismatches found", bad.bad);
    let good = run_case(&mut h, &right, 1000, &mut rng);
    assert_eq!((good.ran, good.bad), (1000, 0));
    // Undefined flags are masked, defined ones are not: MUL leaves SF undefined.
    let mul = &cases().into_iter().find(|c| c.name == "mul32").unwrap();
    let chk = check(mul, &St::default()).unwrap();
    assert_eq!(chk.flags, CF | OF);
}

#[test]
fn native_harness_sanity() {
    // The native side itself: known results.
    let c = cases();
    let find = |n: &str| c.iter().find(|x| x.name == n).unwrap();
    let mut s = St {
        eax: 0xFFFF_FFFF,
        ecx: 0,
        edx: 1,
        flags: 2,
    };
    (find("add32").native)(&mut s);
    assert_eq!(s.eax, 0);
    assert_eq!(s.flags & (CF | ZF), CF | ZF);
    let mut s = St {
        eax: 0x1234_00FF,
        ecx: 0,
        edx: 0x01,
        flags: 2,
    };
    (find("add8").native)(&mut s);
    assert_eq!(s.eax, 0x1234_0000, "8-bit ops keep the upper bits");
    let mut s = St {
        eax: 100,
        ecx: 7,
        edx: 0,
        flags: 2,
    };
    (find("div32").native)(&mut s);
    assert_eq!((s.eax, s.edx), (14, 2));
    assert!(
        check(
            find("div8"),
            &St {
                eax: 0x1000,
                ecx: 1,
                edx: 0,
                flags: 2
            }
        )
        .is_none(),
        "overflow is skipped"
    );
}
