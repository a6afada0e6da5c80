//! Differential tests of the MMX/SSE2 integer instructions (and a few SSE/SSE2 floating-point
//! ones) against the host processor.
//!
//! For each instruction the guest runs a loop over `WASM86_SIMD_CASES` (default 10 000)
//! random operand pairs: the register form (`op xmm0, xmm1` / `op mm0, mm1`) and the memory
//! form (`op xmm2, [esi+16]`), storing both results. The host runs the register form through
//! `asm!` on the same operands; all three values must agree bit for bit.
#![cfg(target_arch = "x86_64")]

use std::arch::asm;
use wasm86_cpu::testbus::TestBus;
use wasm86_cpu::{Cpu, CpuExit};

const CODE: u32 = 0x1_0000;
const DATA: u32 = 0x10_0000;
const OUT: u32 = 0x40_0000;

type HostFn = fn(u128, u128) -> u128;

/// One instruction under test.
struct Op {
    name: &'static str,
    /// Mandatory prefix (0 = none).
    pfx: u8,
    opc: u8,
    /// `Some(r)`: a group instruction with an immediate and a register operand only (`/r`).
    group: Option<u8>,
    imm: Option<u8>,
    /// Operates on MMX registers (otherwise XMM).
    mmx: bool,
    host: HostFn,
}

macro_rules! host_xmm {
    ($t:expr) => {{
        fn f(a: u128, b: u128) -> u128 {
            let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
            let mut o = [0u8; 16];
            // SAFETY: reads 16 bytes from `a` and `b`, writes 16 bytes to `o`; clobbers are
            // declared.
            unsafe {
                asm!(
                    "movdqu xmm0, [{a}]",
                    "movdqu xmm1, [{b}]",
                    $t,
                    "movdqu [{o}], xmm0",
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    o = in(reg) o.as_mut_ptr(),
                    out("xmm0") _,
                    out("xmm1") _,
                    options(nostack),
                );
            }
            u128::from_le_bytes(o)
        }
        f as HostFn
    }};
}

macro_rules! host_mmx {
    ($t:expr) => {{
        fn f(a: u128, b: u128) -> u128 {
            let (a, b) = ((a as u64).to_le_bytes(), (b as u64).to_le_bytes());
            let mut o = [0u8; 8];
            // SAFETY: reads 8 bytes from `a` and `b`, writes 8 bytes to `o`; EMMS leaves the
            // x87 stack empty as the ABI requires.
            unsafe {
                asm!(
                    "movq mm0, [{a}]",
                    "movq mm1, [{b}]",
                    $t,
                    "movq [{o}], mm0",
                    "emms",
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    o = in(reg) o.as_mut_ptr(),
                    out("mm0") _,
                    out("mm1") _,
                    options(nostack),
                );
            }
            u64::from_le_bytes(o) as u128
        }
        f as HostFn
    }};
}

/// Two-operand instructions with both an MMX and an XMM (66) form.
macro_rules! both {
    ($($n:literal $opc:literal),* $(,)?) => {
        vec![$(
            Op { name: $n, pfx: 0, opc: $opc, group: None, imm: None, mmx: true,
                 host: host_mmx!(concat!($n, " mm0, mm1")) },
            Op { name: $n, pfx: 0x66, opc: $opc, group: None, imm: None, mmx: false,
                 host: host_xmm!(concat!($n, " xmm0, xmm1")) },
        )*]
    };
}

/// Shifts by immediate (0F 71/72/73 /r ib), MMX and XMM forms.
macro_rules! shift_imm {
    ($($n:literal $opc:literal $r:literal [$($i:literal)*]),* $(,)?) => {
        vec![$($(
            Op { name: $n, pfx: 0, opc: $opc, group: Some($r), imm: Some($i), mmx: true,
                 host: host_mmx!(concat!($n, " mm0, ", $i)) },
            Op { name: $n, pfx: 0x66, opc: $opc, group: Some($r), imm: Some($i), mmx: false,
                 host: host_xmm!(concat!($n, " xmm0, ", $i)) },
        )*)*]
    };
}

/// Shuffles with an immediate.
macro_rules! shuffles {
    ($($n:literal $pfx:literal $mmx:ident [$($i:literal)*]),* $(,)?) => {
        vec![$($(
            Op { name: $n, pfx: $pfx, opc: 0x70, group: None, imm: Some($i),
                 mmx: shuffles!(@m $mmx), host: shuffles!(@h $mmx $n $i) },
        )*)*]
    };
    (@m mm) => { true };
    (@m xmm) => { false };
    (@h mm $n:literal $i:literal) => { host_mmx!(concat!($n, " mm0, mm1, ", $i)) };
    (@h xmm $n:literal $i:literal) => { host_xmm!(concat!($n, " xmm0, xmm1, ", $i)) };
}

fn integer_ops() -> Vec<Op> {
    let mut v = both!(
        "punpcklbw" 0x60, "punpcklwd" 0x61, "punpckldq" 0x62, "packsswb" 0x63,
        "pcmpgtb" 0x64, "pcmpgtw" 0x65, "pcmpgtd" 0x66, "packuswb" 0x67,
        "punpckhbw" 0x68, "punpckhwd" 0x69, "punpckhdq" 0x6A, "packssdw" 0x6B,
        "pcmpeqb" 0x74, "pcmpeqw" 0x75, "pcmpeqd" 0x76,
        "psrlw" 0xD1, "psrld" 0xD2, "psrlq" 0xD3, "paddq" 0xD4, "pmullw" 0xD5,
        "psubusb" 0xD8, "psubusw" 0xD9, "pminub" 0xDA, "pand" 0xDB,
        "paddusb" 0xDC, "paddusw" 0xDD, "pmaxub" 0xDE, "pandn" 0xDF,
        "pavgb" 0xE0, "psraw" 0xE1, "psrad" 0xE2, "pavgw" 0xE3, "pmulhuw" 0xE4, "pmulhw" 0xE5,
        "psubsb" 0xE8, "psubsw" 0xE9, "pminsw" 0xEA, "por" 0xEB,
        "paddsb" 0xEC, "paddsw" 0xED, "pmaxsw" 0xEE, "pxor" 0xEF,
        "psllw" 0xF1, "pslld" 0xF2, "psllq" 0xF3, "pmuludq" 0xF4, "pmaddwd" 0xF5, "psadbw" 0xF6,
        "psubb" 0xF8, "psubw" 0xF9, "psubd" 0xFA, "psubq" 0xFB,
        "paddb" 0xFC, "paddw" 0xFD, "paddd" 0xFE,
    );
    v.push(Op {
        name: "punpcklqdq",
        pfx: 0x66,
        opc: 0x6C,
        group: None,
        imm: None,
        mmx: false,
        host: host_xmm!("punpcklqdq xmm0, xmm1"),
    });
    v.push(Op {
        name: "punpckhqdq",
        pfx: 0x66,
        opc: 0x6D,
        group: None,
        imm: None,
        mmx: false,
        host: host_xmm!("punpckhqdq xmm0, xmm1"),
    });
    v.extend(shift_imm!(
        "psrlw" 0x71 2 [0 1 7 15 16 200], "psraw" 0x71 4 [0 3 15 16 255],
        "psllw" 0x71 6 [0 1 9 15 16 100],
        "psrld" 0x72 2 [0 5 31 32 64], "psrad" 0x72 4 [0 1 31 32 128],
        "pslld" 0x72 6 [0 13 31 32 33],
        "psrlq" 0x73 2 [0 1 33 63 64 255], "psllq" 0x73 6 [0 7 32 63 64 65],
    ));
    for i in [0u8, 1, 5, 8, 15, 16, 200] {
        macro_rules! dq {
            ($($i:literal)*) => {
                match i {
                    $($i => (
                        host_xmm!(concat!("psrldq xmm0, ", $i)),
                        host_xmm!(concat!("pslldq xmm0, ", $i)),
                    ),)*
                    _ => unreachable!(),
                }
            };
        }
        let (r, l) = dq!(0 1 5 8 15 16 200);
        for (name, sub, host) in [("psrldq", 3, r), ("pslldq", 7, l)] {
            v.push(Op {
                name,
                pfx: 0x66,
                opc: 0x73,
                group: Some(sub),
                imm: Some(i),
                mmx: false,
                host,
            });
        }
    }
    v.extend(shuffles!(
        "pshufw" 0 mm [0x00 0x1B 0x4E 0xE4 0x93 0xFF],
        "pshufd" 0x66 xmm [0x00 0x1B 0x4E 0xE4 0x93 0xFF],
        "pshufhw" 0xF3 xmm [0x00 0x1B 0x4E 0xE4 0x93 0xFF],
        "pshuflw" 0xF2 xmm [0x00 0x1B 0x4E 0xE4 0x93 0xFF],
    ));
    v
}

/// A few floating-point instructions of each class: the lane plumbing, not the arithmetic.
fn fp_ops() -> Vec<Op> {
    macro_rules! fp {
        ($($n:literal $pfx:literal $opc:literal),* $(,)?) => {
            vec![$(
                Op { name: $n, pfx: $pfx, opc: $opc, group: None, imm: None, mmx: false,
                     host: host_xmm!(concat!($n, " xmm0, xmm1")) },
            )*]
        };
    }
    let mut v = fp!(
        "addps" 0 0x58, "addsd" 0xF2 0x58, "mulss" 0xF3 0x59, "subpd" 0x66 0x5C,
        "minps" 0 0x5D, "maxsd" 0xF2 0x5F, "divps" 0 0x5E, "sqrtpd" 0x66 0x51,
        "cvtps2pd" 0 0x5A, "cvtpd2ps" 0x66 0x5A, "cvtss2sd" 0xF3 0x5A, "cvtsd2ss" 0xF2 0x5A,
        "cvtdq2ps" 0 0x5B, "cvtps2dq" 0x66 0x5B, "cvttps2dq" 0xF3 0x5B,
        "cvttpd2dq" 0x66 0xE6, "cvtdq2pd" 0xF3 0xE6, "cvtpd2dq" 0xF2 0xE6,
        "unpcklps" 0 0x14, "unpckhpd" 0x66 0x15, "andnps" 0 0x55, "xorpd" 0x66 0x57,
    );
    for (name, pfx, host) in [
        ("cmpltps", 0u8, host_xmm!("cmpps xmm0, xmm1, 1")),
        ("cmpunordpd", 0x66, host_xmm!("cmppd xmm0, xmm1, 3")),
        ("cmpnless", 0xF3, host_xmm!("cmpss xmm0, xmm1, 6")),
        ("cmpeqsd", 0xF2, host_xmm!("cmpsd xmm0, xmm1, 0")),
    ] {
        let imm = match name {
            "cmpltps" => 1,
            "cmpunordpd" => 3,
            "cmpnless" => 6,
            _ => 0,
        };
        v.push(Op {
            name,
            pfx,
            opc: 0xC2,
            group: None,
            imm: Some(imm),
            mmx: false,
            host,
        });
    }
    for (name, pfx, imm, host) in [
        ("shufps", 0u8, 0x1B, host_xmm!("shufps xmm0, xmm1, 0x1B")),
        ("shufpd", 0x66, 0x02, host_xmm!("shufpd xmm0, xmm1, 0x02")),
    ] {
        v.push(Op {
            name,
            pfx,
            opc: 0xC6,
            group: None,
            imm: Some(imm),
            mmx: false,
            host,
        });
    }
    v
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Random bytes, a quarter of them from boundary values.
    fn int_operand(&mut self) -> u128 {
        let mut b = [0u8; 16];
        for x in b.iter_mut() {
            let r = self.next();
            *x = if r.is_multiple_of(4) {
                [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE][(r >> 8) as usize % 6]
            } else {
                (r >> 16) as u8
            };
        }
        let v = u128::from_le_bytes(b);
        // Small values half of the time: shift counts in range.
        if self.next().is_multiple_of(2) {
            v & 0x7F
        } else {
            v
        }
    }

    /// Random floats: lanes of random bits, ordinary numbers, specials and integers.
    fn fp_operand(&mut self, double: bool) -> u128 {
        let mut v = 0u128;
        let (w, n) = if double { (64, 2) } else { (32, 4) };
        for i in 0..n {
            let r = self.next();
            let lane = match r % 8 {
                0 => r >> 8,
                1 => {
                    let specials = [0, 1u64 << (w - 1), 0x7FF0 << (w - 16), u64::MAX >> (65 - w)];
                    specials[(r >> 3) as usize % 4]
                }
                2 => {
                    let k = (r >> 8) as i32 as f64;
                    if double {
                        k.to_bits()
                    } else {
                        (k as f32).to_bits() as u64
                    }
                }
                _ => {
                    let x = (r >> 11) as f64 / (1u64 << 53) as f64 * 1e6 - 5e5;
                    if double {
                        x.to_bits()
                    } else {
                        (x as f32).to_bits() as u64
                    }
                }
            };
            let lane = if w == 32 { lane & 0xFFFF_FFFF } else { lane };
            v |= (lane as u128) << (i * w);
        }
        v
    }
}

/// The guest loop: for ECX cases at ESI (a, b pairs), results of both forms at EDI.
fn guest_code(op: &Op) -> Vec<u8> {
    let mut c = vec![
        0xBE, 0, 0, 0, 0, // mov esi, DATA
        0xBF, 0, 0, 0, 0, // mov edi, OUT
    ];
    c[1..5].copy_from_slice(&DATA.to_le_bytes());
    c[6..10].copy_from_slice(&OUT.to_le_bytes());
    // ECX is set by the test.
    let top = c.len();
    let (ld, st, half): (&[u8], &[u8], u8) = if op.mmx {
        (&[0x0F, 0x6F], &[0x0F, 0x7F], 8)
    } else {
        (&[0xF3, 0x0F, 0x6F], &[0xF3, 0x0F, 0x7F], 16)
    };
    let insn = |c: &mut Vec<u8>, modrm: &[u8]| {
        if op.pfx != 0 {
            c.push(op.pfx);
        }
        c.extend([0x0F, op.opc]);
        c.extend(modrm);
        if let Some(i) = op.imm {
            c.push(i);
        }
    };
    // r0 <- [esi]; r1 <- [esi+half]; r2 <- [esi]
    c.extend(ld);
    c.push(0x06);
    c.extend(ld);
    c.extend([0x4E, half]);
    c.extend(ld);
    c.push(0x16);
    match op.group {
        Some(r) => insn(&mut c, &[0xC0 | (r << 3)]),
        None => {
            insn(&mut c, &[0xC1]);
            insn(&mut c, &[0x56, half]);
        }
    }
    // [edi] <- r0; [edi+half] <- r2
    c.extend(st);
    c.push(0x07);
    c.extend(st);
    c.extend([0x57, half]);
    let stride = 2 * half;
    c.extend([0x83, 0xC6, stride, 0x83, 0xC7, stride, 0x49]);
    let rel = top as i32 - (c.len() as i32 + 2);
    c.extend([0x75, rel as i8 as u8, 0xF4]);
    c
}

fn cases() -> usize {
    std::env::var("WASM86_SIMD_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

/// Runs every op of `ops` over `n` random cases and reports the mismatches.
fn check(ops: &[Op], n: usize, fp: bool) {
    let mut bus = TestBus::new(16 << 20).unwrap();
    let mut cpu = Cpu::new();
    cpu.set_cr4(1 << 9);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut failures = Vec::new();
    for op in ops {
        let code = guest_code(op);
        bus.load(CODE, &code);
        let half = if op.mmx { 8 } else { 16 };
        let double = matches!(op.pfx, 0x66 | 0xF2);
        let mut ins = Vec::with_capacity(n);
        let mut data = Vec::with_capacity(n * 2 * half);
        for _ in 0..n {
            let (mut a, mut b) = if fp {
                (rng.fp_operand(double), rng.fp_operand(double))
            } else {
                (rng.int_operand(), rng.int_operand())
            };
            if op.mmx {
                a = a as u64 as u128;
                b = b as u64 as u128;
            }
            ins.push((a, b));
            data.extend_from_slice(&a.to_le_bytes()[..half]);
            data.extend_from_slice(&b.to_le_bytes()[..half]);
        }
        bus.load(DATA, &data);
        cpu.setup_flat32(CODE);
        cpu.set_reg32(1, n as u32);
        let exit = cpu.run(&mut bus, cpu.icount() + 20 * n as u64 + 100);
        assert_eq!(exit, CpuExit::Halted, "{}: guest did not finish", op.name);
        assert_eq!(
            cpu.eip(),
            CODE + code.len() as u32,
            "{} {:02x} {:02x}: guest faulted",
            op.name,
            op.pfx,
            op.opc
        );
        let mut out = vec![0u8; n * 2 * half];
        bus.read(OUT, &mut out);
        for (i, &(a, b)) in ins.iter().enumerate() {
            let mut want = (op.host)(a, b);
            if op.mmx {
                want = want as u64 as u128;
            }
            let at = i * 2 * half;
            let mut r = [0u8; 16];
            r[..half].copy_from_slice(&out[at..at + half]);
            let reg = u128::from_le_bytes(r);
            r[..half].copy_from_slice(&out[at + half..at + 2 * half]);
            let mem = u128::from_le_bytes(r);
            let forms = if op.group.is_some() {
                vec![("reg", reg)]
            } else {
                vec![("reg", reg), ("mem", mem)]
            };
            for (form, got) in forms {
                if got != want && failures.len() < 40 {
                    failures.push(format!(
                        "{} ({}{}, imm {:?}) {form}: a={a:032x} b={b:032x} got {got:032x} want {want:032x}",
                        op.name,
                        if op.mmx { "mm" } else { "xmm" },
                        if op.pfx != 0 { format!(" {:02x}", op.pfx) } else { String::new() },
                        op.imm,
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn integer_ops_match_host() {
    check(&integer_ops(), cases(), false);
}

#[test]
fn fp_lane_plumbing_matches_host() {
    check(&fp_ops(), cases() / 4, true);
}

/// What a floating-point case leaves behind: XMM0, MXCSR, the arithmetic flags, EAX.
type FpOut = (u128, u32, u32, u32);
type FpHostFn = fn(u128, u128, u32) -> FpOut;

/// Host run: MXCSR = `mx`, xmm0 = a, xmm1 = b, eax = low 32 bits of b, then `$t`.
macro_rules! host_fp {
    ($t:expr) => {{
        fn f(a: u128, b: u128, mx: u32) -> FpOut {
            let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
            let mut o = [0u8; 16];
            let mut mxcsr = [mx, 0, 0];
            let mut eax: u32 = b[0] as u32
                | (b[1] as u32) << 8
                | (b[2] as u32) << 16
                | (b[3] as u32) << 24;
            let flags: u64;
            // SAFETY: reads/writes the local buffers only; MXCSR is saved and restored around
            // the instruction; every exception stays masked; clobbers are declared.
            unsafe {
                asm!(
                    "stmxcsr [{m} + 4]",
                    "ldmxcsr [{m}]",
                    "movdqu xmm0, [{a}]",
                    "movdqu xmm1, [{b}]",
                    $t,
                    "pushfq",
                    "pop {fl}",
                    "stmxcsr [{m} + 8]",
                    "ldmxcsr [{m} + 4]",
                    "movdqu [{o}], xmm0",
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    o = in(reg) o.as_mut_ptr(),
                    m = in(reg) mxcsr.as_mut_ptr(),
                    fl = out(reg) flags,
                    inout("eax") eax,
                    out("xmm0") _,
                    out("xmm1") _,
                );
            }
            (u128::from_le_bytes(o), mxcsr[2], flags as u32 & 0x8D5, eax)
        }
        f as FpHostFn
    }};
}

#[test]
fn fp_results_mxcsr_and_flags_match_host() {
    // (name, guest bytes of the instruction on xmm0/xmm1/eax, lanes are f64, host)
    let ops: Vec<(&str, &[u8], bool, FpHostFn)> = vec![
        (
            "addps",
            &[0x0F, 0x58, 0xC1],
            false,
            host_fp!("addps xmm0, xmm1"),
        ),
        (
            "addsd",
            &[0xF2, 0x0F, 0x58, 0xC1],
            true,
            host_fp!("addsd xmm0, xmm1"),
        ),
        (
            "mulps",
            &[0x0F, 0x59, 0xC1],
            false,
            host_fp!("mulps xmm0, xmm1"),
        ),
        (
            "divsd",
            &[0xF2, 0x0F, 0x5E, 0xC1],
            true,
            host_fp!("divsd xmm0, xmm1"),
        ),
        (
            "sqrtss",
            &[0xF3, 0x0F, 0x51, 0xC1],
            false,
            host_fp!("sqrtss xmm0, xmm1"),
        ),
        (
            "maxpd",
            &[0x66, 0x0F, 0x5F, 0xC1],
            true,
            host_fp!("maxpd xmm0, xmm1"),
        ),
        (
            "cmpleps",
            &[0x0F, 0xC2, 0xC1, 2],
            false,
            host_fp!("cmpps xmm0, xmm1, 2"),
        ),
        (
            "cmpneqsd",
            &[0xF2, 0x0F, 0xC2, 0xC1, 4],
            true,
            host_fp!("cmpsd xmm0, xmm1, 4"),
        ),
        (
            "cvtpd2ps",
            &[0x66, 0x0F, 0x5A, 0xC1],
            true,
            host_fp!("cvtpd2ps xmm0, xmm1"),
        ),
        (
            "cvtsd2ss",
            &[0xF2, 0x0F, 0x5A, 0xC1],
            true,
            host_fp!("cvtsd2ss xmm0, xmm1"),
        ),
        (
            "cvtps2dq",
            &[0x66, 0x0F, 0x5B, 0xC1],
            false,
            host_fp!("cvtps2dq xmm0, xmm1"),
        ),
        (
            "cvtpd2dq",
            &[0xF2, 0x0F, 0xE6, 0xC1],
            true,
            host_fp!("cvtpd2dq xmm0, xmm1"),
        ),
        (
            "comisd",
            &[0x66, 0x0F, 0x2F, 0xC1],
            true,
            host_fp!("comisd xmm0, xmm1"),
        ),
        (
            "ucomiss",
            &[0x0F, 0x2E, 0xC1],
            false,
            host_fp!("ucomiss xmm0, xmm1"),
        ),
        (
            "comiss",
            &[0x0F, 0x2F, 0xC1],
            false,
            host_fp!("comiss xmm0, xmm1"),
        ),
        (
            "cvtss2si",
            &[0xF3, 0x0F, 0x2D, 0xC1],
            false,
            host_fp!("cvtss2si eax, xmm1"),
        ),
        (
            "cvttsd2si",
            &[0xF2, 0x0F, 0x2C, 0xC1],
            true,
            host_fp!("cvttsd2si eax, xmm1"),
        ),
        (
            "cvtsi2ss",
            &[0xF3, 0x0F, 0x2A, 0xC0],
            false,
            host_fp!("cvtsi2ss xmm0, eax"),
        ),
        (
            "cvtsi2sd",
            &[0xF2, 0x0F, 0x2A, 0xC0],
            true,
            host_fp!("cvtsi2sd xmm0, eax"),
        ),
    ];
    let n = cases() / 4;
    let mut bus = TestBus::new(16 << 20).unwrap();
    let mut cpu = Cpu::new();
    cpu.set_cr4(1 << 9);
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let mut failures = Vec::new();
    for (name, insn, double, host) in ops {
        // Per case at ESI: a (16), b (16), MXCSR (4), pad; out at EDI: xmm0, MXCSR, flags,
        // EAX, pad.
        let mut c = vec![0xBE];
        c.extend(DATA.to_le_bytes());
        c.push(0xBF);
        c.extend(OUT.to_le_bytes());
        let top = c.len();
        c.extend([0x0F, 0xAE, 0x56, 0x20]); // ldmxcsr [esi+32]
        c.extend([0xF3, 0x0F, 0x6F, 0x06]); // movdqu xmm0, [esi]
        c.extend([0xF3, 0x0F, 0x6F, 0x4E, 0x10]); // movdqu xmm1, [esi+16]
        c.extend([0x8B, 0x46, 0x10]); // mov eax, [esi+16]
        c.extend(insn);
        c.extend([0x9C, 0x5B]); // pushfd; pop ebx
        c.extend([0x0F, 0xAE, 0x5F, 0x10]); // stmxcsr [edi+16]
        c.extend([0x89, 0x5F, 0x14, 0x89, 0x47, 0x18]); // mov [edi+20], ebx; mov [edi+24], eax
        c.extend([0xF3, 0x0F, 0x7F, 0x07]); // movdqu [edi], xmm0
        c.extend([0x83, 0xC6, 0x30, 0x83, 0xC7, 0x20, 0x49]);
        let rel = top as i32 - (c.len() as i32 + 2);
        c.extend([0x75, rel as i8 as u8, 0xF4]);
        bus.load(CODE, &c);
        let mut ins = Vec::with_capacity(n);
        let mut data = Vec::with_capacity(n * 48);
        for _ in 0..n {
            let (a, b) = (rng.fp_operand(double), rng.fp_operand(double));
            // Every exception masked; random rounding, DAZ and FZ.
            let r = rng.next();
            let mx = 0x1F80
                | ((r as u32 & 3) << 13)
                | ((r >> 2) as u32 & 1) << 6
                | ((r >> 3) as u32 & 1) << 15;
            ins.push((a, b, mx));
            data.extend(a.to_le_bytes());
            data.extend(b.to_le_bytes());
            data.extend(mx.to_le_bytes());
            data.extend([0; 12]);
        }
        bus.load(DATA, &data);
        cpu.setup_flat32(CODE);
        cpu.set_reg32(1, n as u32);
        cpu.set_reg32(4, 0x9000);
        let exit = cpu.run(&mut bus, cpu.icount() + 20 * n as u64 + 100);
        assert_eq!(exit, CpuExit::Halted);
        assert_eq!(cpu.eip(), CODE + c.len() as u32, "{name}: guest faulted");
        let mut out = vec![0u8; n * 32];
        bus.read(OUT, &mut out);
        for (i, &(a, b, mx)) in ins.iter().enumerate() {
            let o = &out[32 * i..32 * i + 32];
            let word = |k: usize| u32::from_le_bytes(o[k..k + 4].try_into().unwrap());
            let got = (
                u128::from_le_bytes(o[..16].try_into().unwrap()),
                word(16),
                word(20) & 0x8D5,
                word(24),
            );
            let mut want = host(a, b, mx);
            if !name.contains("comis") {
                // Only COMISS/UCOMISS/COMISD write the arithmetic flags.
                want.2 = got.2;
            }
            if got != want && failures.len() < 40 {
                failures.push(format!(
                    "{name} mxcsr {mx:04x}: a={a:032x} b={b:032x}\n  got  {:032x} {:04x} {:03x} {:08x}\n  want {:032x} {:04x} {:03x} {:08x}",
                    got.0, got.1, got.2, got.3, want.0, want.1, want.2, want.3
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
