//! Differential test of the software x87 against the host's x87.
//!
//! Each case runs the same short instruction sequence natively (`asm!`: FNINIT, FLDCW, FLD
//! tbyte operands, the operation, FNSTSW AX, FNCLEX, FSTP tbyte) and through `Fpu::execute`
//! over a small byte-array memory, then compares the stored bytes, the whole status word
//! (C0–C3, TOP, exception flags, SF, ES/B) and, for FCOMI, ZF/PF/CF, bit for bit.
//!
//! Operands come from a fixed-seed xorshift generator biased towards special values,
//! exponent boundaries, denormals, pseudo-denormals, unsupported encodings and rounding ties;
//! every control word combines one of the four precision settings (including the reserved
//! one), one of the four rounding modes and, for one case in eight, unmasked exceptions.
//! `WASM86_FPU_CASES` sets the number of cases per class (default 100 000).
#![cfg(target_arch = "x86_64")]

use std::arch::asm;
use wasm86_cpu::fpu::{Fpu, FpuContext, FpuMemory, FpuOutcome};

/// Flat test memory.
struct Mem([u8; 64]);

impl FpuMemory for Mem {
    type Fault = ();
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ()> {
        let o = offset as usize;
        let src = self.0.get(o..o + buf.len()).ok_or(())?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), ()> {
        let o = offset as usize;
        self.0
            .get_mut(o..o + data.len())
            .ok_or(())?
            .copy_from_slice(data);
        Ok(())
    }
}

const CW: u32 = 0;
const A: u32 = 16;
const B: u32 = 32;
const OUT: u32 = 48;
const FILL: u8 = 0xA5;
/// Control word with every exception masked, loaded before reading results back.
static MASKED: u16 = 0x037F;
const MASKED_AT: u32 = 2;

struct Emu {
    fpu: Fpu,
    mem: Mem,
    ctx: FpuContext,
}

impl Emu {
    fn new(cw: u16, a: &[u8], b: &[u8]) -> Emu {
        let mut mem = Mem([0; 64]);
        mem.0[0..2].copy_from_slice(&cw.to_le_bytes());
        mem.0[2..4].copy_from_slice(&MASKED.to_le_bytes());
        mem.0[16..16 + a.len()].copy_from_slice(a);
        mem.0[32..32 + b.len()].copy_from_slice(b);
        mem.0[48..58].fill(FILL);
        let mut e = Emu {
            fpu: Fpu::new(),
            mem,
            ctx: FpuContext {
                op32: true,
                protected: true,
                ..FpuContext::default()
            },
        };
        e.x(0xDB, 0xE3, None); // FNINIT
        e.x(0xD9, 0x28, Some(CW)); // FLDCW
        e
    }
    fn x(&mut self, op: u8, modrm: u8, ea: Option<u32>) -> FpuOutcome {
        match self.fpu.execute(op, modrm, ea, &self.ctx, &mut self.mem) {
            Ok(o) => o,
            Err(e) => panic!("{op:02x} {modrm:02x}: {e}"),
        }
    }
    fn fnstsw(&mut self) -> u16 {
        match self.x(0xDF, 0xE0, None) {
            FpuOutcome::StoreAx(v) => v,
            o => panic!("FNSTSW gave {o:?}"),
        }
    }
    /// FNSTSW AX, FNCLEX, FLDCW with everything masked.
    fn status_then_mask(&mut self) -> u16 {
        let sw = self.fnstsw();
        self.x(0xDB, 0xE2, None);
        self.x(0xD9, 0x28, Some(MASKED_AT));
        sw
    }
    fn out(&self) -> [u8; 10] {
        let mut o = [0u8; 10];
        o.copy_from_slice(&self.mem.0[48..58]);
        o
    }
}

/// Result of one case: stored bytes (2 values for FXTRACT), status word, EFLAGS bits.
type Res = ([u8; 10], [u8; 10], u16, u8);

/// Host: FLD b; FLD a; insn; FNSTSW; FNCLEX; FSTP out; FSTP out2.
macro_rules! host2 {
    ($name:ident, $insn:literal) => {
        fn $name(cw: u16, a: &[u8; 10], b: &[u8; 10]) -> Res {
            let mut out = [FILL; 10];
            let mut out2 = [FILL; 10];
            let sw: u16;
            let mut old: u16 = 0;
            // SAFETY: the sequence only touches the x87 state (saved control word restored,
            // stack emptied by FNINIT) and the local buffers passed as pointers.
            unsafe {
                asm!(
                    "fnstcw [{old}]",
                    "fninit",
                    "fldcw [{cw}]",
                    "fld tbyte ptr [{b}]",
                    "fld tbyte ptr [{a}]",
                    $insn,
                    "fnstsw ax",
                    "fnclex",
                    "fldcw [{masked}]",
                    "fstp tbyte ptr [{out}]",
                    "fstp tbyte ptr [{out2}]",
                    "fninit",
                    "fldcw [{old}]",
                    old = in(reg) &mut old,
                    cw = in(reg) &cw,
                    masked = in(reg) &MASKED,
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    out = in(reg) out.as_mut_ptr(),
                    out2 = in(reg) out2.as_mut_ptr(),
                    out("ax") sw,
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                );
            }
            (out, out2, sw, 0)
        }
    };
}

/// Host: FLD a; insn (a store to [out] or a load from [a]); FNSTSW; FNCLEX; FSTP out2.
macro_rules! host1 {
    ($name:ident, $insn:literal, $post:literal) => {
        fn $name(cw: u16, a: &[u8; 10], _b: &[u8; 10]) -> Res {
            let mut out = [FILL; 10];
            let mut out2 = [FILL; 10];
            let sw: u16;
            let mut old: u16 = 0;
            // SAFETY: as in `host2`.
            unsafe {
                asm!(
                    "fnstcw [{old}]",
                    "fninit",
                    "fldcw [{cw}]",
                    $insn,
                    "fnstsw ax",
                    "fnclex",
                    "fldcw [{masked}]",
                    $post,
                    "fstp tbyte ptr [{out2}]",
                    "fninit",
                    "fldcw [{old}]",
                    old = in(reg) &mut old,
                    cw = in(reg) &cw,
                    masked = in(reg) &MASKED,
                    a = in(reg) a.as_ptr(),
                    out = in(reg) out.as_mut_ptr(),
                    out2 = in(reg) out2.as_mut_ptr(),
                    out("ax") sw,
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                );
            }
            (out, out2, sw, 0)
        }
    };
}

host2!(h_fadd, "fadd st(0), st(1)");
host2!(h_fsub, "fsub st(0), st(1)");
host2!(h_fsubr, "fsubr st(0), st(1)");
host2!(h_fmul, "fmul st(0), st(1)");
host2!(h_fdiv, "fdiv st(0), st(1)");
host2!(h_fdivr, "fdivr st(0), st(1)");
host2!(h_fdivp, "fdivp st(1), st(0)");
host2!(h_fsqrt, "fsqrt");
host2!(h_fcom, "fcom st(1)");
host2!(h_fucomp, "fucomp st(1)");
host2!(h_frndint, "frndint");
host2!(h_fscale, "fscale");
host2!(h_fxtract, "fxtract");
host2!(h_fprem, "fprem");
host2!(h_fprem1, "fprem1");
host2!(h_ftst, "ftst");
host2!(h_fxam, "fxam");
host1!(
    h_fst32,
    "fld tbyte ptr [{a}]\nfstp dword ptr [{out}]",
    "nop"
);
host1!(
    h_fst64,
    "fld tbyte ptr [{a}]\nfstp qword ptr [{out}]",
    "nop"
);
host1!(
    h_fld32,
    "fld dword ptr [{a}]",
    "fld st(0)\nfstp tbyte ptr [{out}]"
);
host1!(
    h_fld64,
    "fld qword ptr [{a}]",
    "fld st(0)\nfstp tbyte ptr [{out}]"
);
host1!(
    h_fistp16,
    "fld tbyte ptr [{a}]\nfistp word ptr [{out}]",
    "nop"
);
host1!(
    h_fistp32,
    "fld tbyte ptr [{a}]\nfistp dword ptr [{out}]",
    "nop"
);
host1!(
    h_fistp64,
    "fld tbyte ptr [{a}]\nfistp qword ptr [{out}]",
    "nop"
);
host1!(
    h_fild16,
    "fild word ptr [{a}]",
    "fld st(0)\nfstp tbyte ptr [{out}]"
);
host1!(
    h_fild32,
    "fild dword ptr [{a}]",
    "fld st(0)\nfstp tbyte ptr [{out}]"
);
host1!(
    h_fild64,
    "fild qword ptr [{a}]",
    "fld st(0)\nfstp tbyte ptr [{out}]"
);
host1!(
    h_fbstp,
    "fld tbyte ptr [{a}]\nfbstp tbyte ptr [{out}]",
    "nop"
);
host1!(
    h_fbld,
    "fbld tbyte ptr [{a}]",
    "fld st(0)\nfstp tbyte ptr [{out}]"
);

/// FCOMI/FUCOMIP on the host, returning ZF/PF/CF in bits 0..2.
fn h_fcomi(cw: u16, a: &[u8; 10], b: &[u8; 10], quiet_pop: bool) -> Res {
    let mut out = [FILL; 10];
    let mut out2 = [FILL; 10];
    let sw: u16;
    let mut old: u16 = 0;
    let (z, p, c): (u8, u8, u8);
    // SAFETY: as in `host2`.
    unsafe {
        if quiet_pop {
            asm!(
                "fnstcw [{old}]", "fninit", "fldcw [{cw}]",
                "fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]",
                "mov ax, 0", "sahf",
                "fucomip st, st(1)",
                "setz {z}", "setp {p}", "setc {c}",
                "fnstsw ax", "fnclex", "fldcw [{masked}]",
                "fstp tbyte ptr [{out}]", "fstp tbyte ptr [{out2}]", "fninit", "fldcw [{old}]",
                old = in(reg) &mut old, cw = in(reg) &cw, a = in(reg) a.as_ptr(), masked = in(reg) &MASKED,
                b = in(reg) b.as_ptr(), out = in(reg) out.as_mut_ptr(),
                out2 = in(reg) out2.as_mut_ptr(),
                z = out(reg_byte) z, p = out(reg_byte) p, c = out(reg_byte) c,
                out("ax") sw,
                out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
            );
        } else {
            asm!(
                "fnstcw [{old}]", "fninit", "fldcw [{cw}]",
                "fld tbyte ptr [{b}]", "fld tbyte ptr [{a}]",
                "mov ax, 0", "sahf",
                "fcomi st, st(1)",
                "setz {z}", "setp {p}", "setc {c}",
                "fnstsw ax", "fnclex", "fldcw [{masked}]",
                "fstp tbyte ptr [{out}]", "fstp tbyte ptr [{out2}]", "fninit", "fldcw [{old}]",
                old = in(reg) &mut old, cw = in(reg) &cw, a = in(reg) a.as_ptr(), masked = in(reg) &MASKED,
                b = in(reg) b.as_ptr(), out = in(reg) out.as_mut_ptr(),
                out2 = in(reg) out2.as_mut_ptr(),
                z = out(reg_byte) z, p = out(reg_byte) p, c = out(reg_byte) c,
                out("ax") sw,
                out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
            );
        }
    }
    (out, out2, sw, z | (p << 1) | (c << 2))
}

/// The emulated counterpart of `host2`: FLD b; FLD a; op; FNSTSW; FNCLEX; FSTP; FSTP.
fn e2(op: u8, modrm: u8) -> impl Fn(u16, &[u8; 10], &[u8; 10]) -> Res {
    move |cw, a, b| {
        let mut e = Emu::new(cw, a, b);
        e.x(0xDB, 0x28, Some(B));
        e.x(0xDB, 0x28, Some(A));
        let flags = match e.x(op, modrm, None) {
            FpuOutcome::SetFlags { zf, pf, cf } => {
                u8::from(zf) | u8::from(pf) << 1 | u8::from(cf) << 2
            }
            _ => 0,
        };
        let sw = e.status_then_mask();
        e.x(0xDB, 0x38, Some(OUT));
        let out = e.out();
        e.mem.0[48..58].fill(FILL);
        e.x(0xDB, 0x38, Some(OUT));
        (out, e.out(), sw, flags)
    }
}

/// Emulated: FLD a (unless `load` is the operation itself); op with memory operand; FNSTSW;
/// FNCLEX; FSTP out2. For loads the pushed value is duplicated and stored to `out` first.
fn e1(
    op: u8,
    modrm: u8,
    ea: u32,
    preload: bool,
    dup: bool,
) -> impl Fn(u16, &[u8; 10], &[u8; 10]) -> Res {
    move |cw, a, _b| {
        let mut e = Emu::new(cw, a, &[]);
        if preload {
            e.x(0xDB, 0x28, Some(A));
        }
        e.x(op, modrm, Some(ea));
        let sw = e.status_then_mask();
        if dup {
            e.x(0xD9, 0xC0, None); // FLD ST(0)
            e.x(0xDB, 0x38, Some(OUT));
        }
        let out = e.out();
        e.mem.0[48..58].fill(FILL);
        e.x(0xDB, 0x38, Some(OUT));
        (out, e.out(), sw, 0)
    }
}

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

/// Significand patterns that sit on or next to rounding boundaries at 24, 53 and 64 bits.
fn mantissa(r: &mut Rng) -> u64 {
    let j = 1u64 << 63;
    match r.below(10) {
        0 => u64::MAX,
        1 => j,
        2 => j | r.next() & 0xFFFF_FF00_0000_0000 | (r.below(4) << 38),
        3 => j | r.next() & !0x7FF | (r.below(4) << 9),
        4 => j | (r.next() & !0xFF_FFFF_FFFF) | 0x80_0000_0000,
        5 => j | (r.next() & !0x7FF) | 0x400,
        6 => j | 1,
        7 => j | (r.next() >> r.below(64)),
        _ => j | r.next(),
    }
}

fn exponent(r: &mut Rng) -> u16 {
    match r.below(8) {
        0 => r.below(0x7FFF) as u16,
        1 => r.below(70) as u16,
        2 => 0x7FFE - r.below(70) as u16,
        3 => 0x3FFF - 20 + r.below(100) as u16,
        4 => (0x3FFF - 16445 / 2 + r.below(400)) as u16,
        5 => (0x3FFF + 16383 / 2 - 200 + r.below(400)) as u16,
        6 => 0x3FFF + (r.below(130) as u16) - 65,
        _ => (0x3FFF - 130 + r.below(260)) as u16,
    }
}

/// A random extended value, biased towards specials.
fn gen(r: &mut Rng) -> [u8; 10] {
    let s = (r.below(2) as u16) << 15;
    let (e, m): (u16, u64) = match r.below(40) {
        0 => (0, 0),
        1 => (0x7FFF, 1 << 63),
        2 => (0x7FFF, 0xC000_0000_0000_0000 | r.next() >> r.below(64) >> 2),
        3 => (0x7FFF, 0x8000_0000_0000_0000 | (r.next() >> 2).max(1)),
        4 | 5 => (0, r.next() >> r.below(64) >> 1),
        6 => (0, (1 << 63) | r.next() >> 1),
        7 => (r.below(0x7FFF) as u16, r.next() >> 1),
        8 => (0x7FFF, r.next() >> 1),
        9 => (0x3FFF + r.below(64) as u16, 1 << 63),
        10 => {
            // An integer in the common range.
            let v = (r.next() >> r.below(64)).max(1);
            let lz = v.leading_zeros();
            (0x3FFF + 63 - lz as u16, v << lz)
        }
        _ => (exponent(r), mantissa(r)),
    };
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&m.to_le_bytes());
    b[8..].copy_from_slice(&(s | e).to_le_bytes());
    b
}

/// A second operand, often close to the first (cancellation, equal exponents, ties).
fn gen_near(r: &mut Rng, a: &[u8; 10]) -> [u8; 10] {
    let mut b = gen(r);
    match r.below(4) {
        0 => {
            b[8..].copy_from_slice(&a[8..]);
            if r.below(2) == 0 {
                b[9] ^= 0x80;
            }
        }
        1 => {
            let e = u16::from_le_bytes([a[8], a[9]]);
            let d = r.below(140) as u16;
            let e2 = (e & 0x8000) | ((e & 0x7FFF).wrapping_sub(d).wrapping_add(70) & 0x7FFF);
            b[8..].copy_from_slice(&e2.to_le_bytes());
        }
        _ => {}
    }
    b
}

fn control_word(r: &mut Rng) -> u16 {
    let pc = r.below(4) as u16;
    let rc = r.below(4) as u16;
    let masks = if r.below(8) == 0 {
        r.below(64) as u16
    } else {
        0x3F
    };
    0x40 | masks | (pc << 8) | (rc << 10)
}

fn cases() -> u64 {
    std::env::var("WASM86_FPU_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Which second operand a class uses.
#[derive(Clone, Copy)]
enum Operands {
    Two,
    One,
    /// A 4-byte value (FLD m32, FILD m32) in the first operand slot.
    Bits32,
    Bits64,
    Bits16,
    Bcd,
    /// Extended operand followed by a 4/8-byte memory operand.
    ExtThen32,
    ExtThen64,
}

fn operands(r: &mut Rng, kind: Operands) -> ([u8; 10], [u8; 10]) {
    let a = gen(r);
    let b = gen_near(r, &a);
    match kind {
        Operands::Two | Operands::One => (a, b),
        Operands::Bits32 => {
            let v: u32 = match r.below(6) {
                0 => r.next() as u32 & 0x807F_FFFF,
                1 => 0x7F80_0000 | r.next() as u32,
                2 => (r.next() >> r.below(64)) as u32,
                _ => r.next() as u32,
            };
            let mut x = [0u8; 10];
            x[..4].copy_from_slice(&v.to_le_bytes());
            (x, b)
        }
        Operands::Bits64 => {
            let v: u64 = match r.below(6) {
                0 => r.next() & 0x800F_FFFF_FFFF_FFFF,
                1 => 0x7FF0_0000_0000_0000 | r.next(),
                2 => r.next() >> r.below(64),
                _ => r.next(),
            };
            let mut x = [0u8; 10];
            x[..8].copy_from_slice(&v.to_le_bytes());
            (x, b)
        }
        Operands::Bits16 => {
            let mut x = [0u8; 10];
            x[..2].copy_from_slice(&(r.next() as u16 >> r.below(16)).to_le_bytes());
            (x, b)
        }
        Operands::Bcd => {
            let mut x = [0u8; 10];
            let digits = r.below(19);
            for i in 0..digits as usize {
                let d = if r.below(50) == 0 {
                    10 + r.below(6)
                } else {
                    r.below(10)
                } as u8;
                x[i / 2] |= d << (4 * (i % 2));
            }
            x[9] = (r.below(2) as u8) << 7;
            (x, b)
        }
        Operands::ExtThen32 => {
            let (w, _) = operands(r, Operands::Bits32);
            let mut y = [0u8; 10];
            y[..4].copy_from_slice(&w[..4]);
            (a, y)
        }
        Operands::ExtThen64 => {
            let (w, _) = operands(r, Operands::Bits64);
            let mut y = [0u8; 10];
            y[..8].copy_from_slice(&w[..8]);
            (a, y)
        }
    }
}

fn hex(b: &[u8; 10]) -> String {
    let se = u16::from_le_bytes([b[8], b[9]]);
    let m = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    format!("{se:04x}:{m:016x}")
}

type Case = dyn Fn(u16, &[u8; 10], &[u8; 10]) -> Res;

fn run(name: &str, seed: u64, kind: Operands, host: &Case, emu: &Case, ignore_c013_when_c2: bool) {
    let mut r = Rng(seed);
    let n = cases();
    let mut failures = Vec::new();
    for i in 0..n {
        let cw = control_word(&mut r);
        let (a, b) = operands(&mut r, kind);
        let mut h = host(cw, &a, &b);
        let mut e = emu(cw, &a, &b);
        if ignore_c013_when_c2 && h.2 & 0x0400 != 0 {
            h.2 &= !0x4300;
            e.2 &= !0x4300;
        }
        if h != e {
            failures.push(format!(
                "#{i} cw={cw:04x} a={} b={}\n   host: {} {} sw={:04x} fl={}\n   emu:  {} {} sw={:04x} fl={}",
                hex(&a),
                hex(&b),
                hex(&h.0),
                hex(&h.1),
                h.2,
                h.3,
                hex(&e.0),
                hex(&e.1),
                e.2,
                e.3
            ));
            if failures.len() >= 12 {
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} mismatches (first shown):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

macro_rules! diff_test {
    ($test:ident, $seed:expr, $kind:expr, $host:expr, $emu:expr) => {
        #[test]
        fn $test() {
            run(stringify!($test), $seed, $kind, &$host, &$emu, false);
        }
    };
    ($test:ident, $seed:expr, $kind:expr, $host:expr, $emu:expr, prem) => {
        #[test]
        fn $test() {
            run(stringify!($test), $seed, $kind, &$host, &$emu, true);
        }
    };
}

diff_test!(host_fadd, 1, Operands::Two, h_fadd, e2(0xD8, 0xC1));
diff_test!(host_fsub, 2, Operands::Two, h_fsub, e2(0xD8, 0xE1));
diff_test!(host_fsubr, 3, Operands::Two, h_fsubr, e2(0xD8, 0xE9));
diff_test!(host_fmul, 4, Operands::Two, h_fmul, e2(0xD8, 0xC9));
diff_test!(host_fdiv, 5, Operands::Two, h_fdiv, e2(0xD8, 0xF1));
diff_test!(host_fdivr, 6, Operands::Two, h_fdivr, e2(0xD8, 0xF9));
diff_test!(host_fdivp, 7, Operands::Two, h_fdivp, e2(0xDE, 0xF9));
diff_test!(host_fsqrt, 8, Operands::One, h_fsqrt, e2(0xD9, 0xFA));
diff_test!(host_fcom, 9, Operands::Two, h_fcom, e2(0xD8, 0xD1));
diff_test!(host_fucomp, 10, Operands::Two, h_fucomp, e2(0xDD, 0xE9));
diff_test!(host_ftst, 11, Operands::One, h_ftst, e2(0xD9, 0xE4));
diff_test!(host_fxam, 12, Operands::One, h_fxam, e2(0xD9, 0xE5));
diff_test!(host_frndint, 13, Operands::One, h_frndint, e2(0xD9, 0xFC));
diff_test!(host_fscale, 14, Operands::Two, h_fscale, e2(0xD9, 0xFD));
diff_test!(host_fxtract, 15, Operands::One, h_fxtract, e2(0xD9, 0xF4));
diff_test!(host_fprem, 16, Operands::Two, h_fprem, e2(0xD9, 0xF8), prem);
diff_test!(
    host_fprem1,
    17,
    Operands::Two,
    h_fprem1,
    e2(0xD9, 0xF5),
    prem
);
diff_test!(
    host_fcomi,
    18,
    Operands::Two,
    |c, a, b| h_fcomi(c, a, b, false),
    e2(0xDB, 0xF1)
);
diff_test!(
    host_fucomip,
    19,
    Operands::Two,
    |c, a, b| h_fcomi(c, a, b, true),
    e2(0xDF, 0xE9)
);
diff_test!(
    host_fst_m32,
    20,
    Operands::One,
    h_fst32,
    e1(0xD9, 0x18, OUT, true, false)
);
diff_test!(
    host_fst_m64,
    21,
    Operands::One,
    h_fst64,
    e1(0xDD, 0x18, OUT, true, false)
);
diff_test!(
    host_fld_m32,
    22,
    Operands::Bits32,
    h_fld32,
    e1(0xD9, 0x00, A, false, true)
);
diff_test!(
    host_fld_m64,
    23,
    Operands::Bits64,
    h_fld64,
    e1(0xDD, 0x00, A, false, true)
);
diff_test!(
    host_fadd_m32,
    24,
    Operands::ExtThen32,
    h_fadd32_split,
    e_split(0xD8, 0x00)
);
diff_test!(
    host_fmul_m64,
    25,
    Operands::ExtThen64,
    h_fmul64_split,
    e_split(0xDC, 0x08)
);
diff_test!(
    host_fidivr_m32,
    26,
    Operands::ExtThen32,
    h_fidivr32_split,
    e_split(0xDA, 0x38)
);
diff_test!(
    host_fistp_m16,
    27,
    Operands::One,
    h_fistp16,
    e1(0xDF, 0x18, OUT, true, false)
);
diff_test!(
    host_fistp_m32,
    28,
    Operands::One,
    h_fistp32,
    e1(0xDB, 0x18, OUT, true, false)
);
diff_test!(
    host_fistp_m64,
    29,
    Operands::One,
    h_fistp64,
    e1(0xDF, 0x38, OUT, true, false)
);
diff_test!(
    host_fild_m16,
    30,
    Operands::Bits16,
    h_fild16,
    e1(0xDF, 0x00, A, false, true)
);
diff_test!(
    host_fild_m32,
    31,
    Operands::Bits32,
    h_fild32,
    e1(0xDB, 0x00, A, false, true)
);
diff_test!(
    host_fild_m64,
    32,
    Operands::Bits64,
    h_fild64,
    e1(0xDF, 0x28, A, false, true)
);
diff_test!(
    host_fbstp,
    33,
    Operands::One,
    h_fbstp,
    e1(0xDF, 0x30, OUT, true, false)
);
diff_test!(
    host_fbld,
    34,
    Operands::Bcd,
    h_fbld,
    e1(0xDF, 0x20, A, false, true)
);

/// Host side of the extended-then-memory-operand classes: the memory operand follows the
/// 10 extended bytes in one 20-byte buffer.
macro_rules! host_mem {
    ($name:ident, $insn:literal) => {
        fn $name(cw: u16, a: &[u8; 10], b: &[u8; 10]) -> Res {
            let mut buf = [0u8; 20];
            buf[..10].copy_from_slice(a);
            buf[10..].copy_from_slice(b);
            let mut out = [FILL; 10];
            let mut out2 = [FILL; 10];
            let sw: u16;
            let mut old: u16 = 0;
            // SAFETY: as in `host2`; every access stays inside `buf`, `out` and `out2`.
            unsafe {
                asm!(
                    "fnstcw [{old}]",
                    "fninit",
                    "fldcw [{cw}]",
                    "fld tbyte ptr [{a}]",
                    $insn,
                    "fnstsw ax",
                    "fnclex",
                    "fldcw [{masked}]",
                    "fld st(0)",
                    "fstp tbyte ptr [{out}]",
                    "fstp tbyte ptr [{out2}]",
                    "fninit",
                    "fldcw [{old}]",
                    old = in(reg) &mut old,
                    cw = in(reg) &cw,
                    masked = in(reg) &MASKED,
                    a = in(reg) buf.as_ptr(),
                    out = in(reg) out.as_mut_ptr(),
                    out2 = in(reg) out2.as_mut_ptr(),
                    out("ax") sw,
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                );
            }
            (out, out2, sw, 0)
        }
    };
}

host_mem!(h_fadd32_split, "fadd dword ptr [{a} + 10]");
host_mem!(h_fmul64_split, "fmul qword ptr [{a} + 10]");
host_mem!(h_fidivr32_split, "fidivr dword ptr [{a} + 10]");

/// Emulated: FLD a (m80 at A); op with the memory operand at A + 16 (slot B); then as `e1`.
fn e_split(op: u8, modrm: u8) -> impl Fn(u16, &[u8; 10], &[u8; 10]) -> Res {
    move |cw, a, b| {
        let mut e = Emu::new(cw, a, b);
        e.x(0xDB, 0x28, Some(A));
        e.x(op, modrm, Some(B));
        let sw = e.status_then_mask();
        e.x(0xD9, 0xC0, None);
        e.x(0xDB, 0x38, Some(OUT));
        let out = e.out();
        e.mem.0[48..58].fill(FILL);
        e.x(0xDB, 0x38, Some(OUT));
        (out, e.out(), sw, 0)
    }
}

macro_rules! host_const {
    ($cw:expr, $insn:literal) => {{
        let cw: u16 = $cw;
        let mut out = [0u8; 10];
        let mut old: u16 = 0;
        // SAFETY: as in `host2`.
        unsafe {
            asm!(
                "fnstcw [{old}]", "fninit", "fldcw [{cw}]", $insn,
                "fstp tbyte ptr [{out}]", "fninit", "fldcw [{old}]",
                old = in(reg) &mut old, cw = in(reg) &cw, out = in(reg) out.as_mut_ptr(),
                out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
            );
        }
        out
    }};
}

#[test]
fn host_constants_every_rounding() {
    let hosts: [fn(u16) -> [u8; 10]; 7] = [
        |cw| host_const!(cw, "fld1"),
        |cw| host_const!(cw, "fldl2t"),
        |cw| host_const!(cw, "fldl2e"),
        |cw| host_const!(cw, "fldpi"),
        |cw| host_const!(cw, "fldlg2"),
        |cw| host_const!(cw, "fldln2"),
        |cw| host_const!(cw, "fldz"),
    ];
    for pc in 0..4u16 {
        for rc in 0..4u16 {
            let cw = 0x7F | (pc << 8) | (rc << 10);
            for (k, h) in hosts.iter().enumerate() {
                let mut e = Emu::new(cw, &[], &[]);
                e.x(0xD9, 0xE8 + k as u8, None);
                e.x(0xDB, 0x38, Some(OUT));
                assert_eq!(hex(&e.out()), hex(&h(cw)), "constant {k} cw={cw:04x}");
            }
        }
    }
}
