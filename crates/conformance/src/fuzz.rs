//! Random instruction fuzzer.
//!
//! Random instruction streams (biased to valid opcodes, prefixes and ModR/M forms) run in
//! real mode, 16-bit and 32-bit protected mode and 32-bit protected mode with paging. Each
//! mode is entered once by a small guest boot stub (LGDT/LIDT, CR0, far jump, segment loads,
//! paging on); its CPU state is saved and restored before every random stream, together with
//! the low system area (IVT, GDT, IDT, page tables, handlers, stack). Every exception vector
//! has a handler that counts it and returns (IRET) into the next 64-byte chunk of random code,
//! so exceptions are delivered and execution continues; a stream ends at its instruction
//! budget, a HLT, a triple fault (the state is reset for the next stream) or an exit request.
//!
//! Random events join in: an interrupt request waiting on INTR, an NMI, a bus that asks
//! `run` to return.
//!
//! Checked: no panic (caught and reported with the bytes), `run` never retires more than
//! its limit, the instruction count never goes backwards, and every state reached survives
//! a `state()`/`restore()` round trip, and `ExitRequested` comes only when the bus asked.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasm86_cpu::{sreg, Bus, CpuExit, CpuState};

use crate::harness::Harness;
use crate::singlestep::hex_bytes;

/// Execution modes the fuzzer covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Real mode, CS = DS = SS = 0.
    Real,
    /// 16-bit protected mode, CPL 0.
    Pm16,
    /// 32-bit flat protected mode, CPL 0.
    Pm32,
    /// 32-bit flat protected mode with paging (4 KiB and 4 MiB pages, some absent or
    /// read-only), CR0.WP and CR4.PGE on.
    Paged,
    /// Virtual-8086 mode (IOPL 3) under a 32-bit TSS; exceptions go to the ring-0 handlers.
    /// Skipped (reported as unsupported) when the CPU does not enter V86 mode.
    V86,
}

impl Mode {
    /// All modes, in the order the fuzzer rotates through them.
    pub const ALL: [Mode; 5] = [Mode::Real, Mode::Pm16, Mode::Pm32, Mode::Paged, Mode::V86];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Real => "real",
            Mode::Pm16 => "pm16",
            Mode::Pm32 => "pm32",
            Mode::Paged => "paged",
            Mode::V86 => "v86",
        }
    }

    /// Whether the random code runs as 32-bit code.
    fn code32(self) -> bool {
        matches!(self, Mode::Pm32 | Mode::Paged)
    }

    /// Whether the boot stub ends in 32-bit protected mode (before V86 entry).
    fn stub32(self) -> bool {
        matches!(self, Mode::Pm32 | Mode::Paged | Mode::V86)
    }
}

/// Physical layout of the system area (restored before every stream). Every exception
/// handler counts its vector, then returns (IRET) into the next chunk of random code, so a
/// stream goes on after exceptions.
mod layout {
    /// Real-mode IVT (256 far pointers).
    pub const IVT: u32 = 0x0000;
    /// GDT (8 descriptors).
    pub const GDT: u32 = 0x0800;
    /// GDTR pseudo-descriptor (limit, base).
    pub const GDTR: u32 = 0x0F00;
    /// IDTR pseudo-descriptor for protected mode.
    pub const IDTR: u32 = 0x0F08;
    /// IDTR pseudo-descriptor for real mode (the IVT).
    pub const IVTR: u32 = 0x0F10;
    /// IDT (256 gates).
    pub const IDT: u32 = 0x1000;
    /// Per-vector counters (u32) that the handlers increment.
    pub const COUNTS: u32 = 0x0400;
    /// Offset of the current chunk of random code, advanced by every handler.
    pub const NEXT: u32 = 0x0F20;
    /// Common tail of the 32-bit (protected-mode and V86) handlers.
    pub const TAIL32: u32 = 0x0E00;
    /// Common tail of the real-mode handlers.
    pub const TAIL16: u32 = 0x0E80;
    /// 32-bit handler stubs: vector `v` at `HANDLERS + 16 * v`.
    pub const HANDLERS: u32 = 0x2000;
    /// Real-mode handler stubs: vector `v` at `HANDLERS16 + 16 * v` (above the stack).
    pub const HANDLERS16: u32 = 0x7000;
    /// Size of one chunk of random code: an exception resumes at the next chunk.
    pub const CHUNK: u32 = 64;
    /// Page directory.
    pub const PD: u32 = 0x3000;
    /// 32-bit TSS (ESP0/SS0 for interrupts from V86 mode).
    pub const TSS: u32 = 0x0C00;
    /// Stack pointer of the V86 code.
    pub const V86_STACK: u32 = 0x6800;
    /// Page table for 0..4 MiB.
    pub const PT: u32 = 0x4000;
    /// Boot stubs.
    pub const STUB: u32 = 0x5000;
    /// Initial stack pointer.
    pub const STACK_TOP: u32 = 0x7000;
    /// End of the system area.
    pub const SYSTEM_END: u32 = 0x8000;
    /// Random code.
    pub const CODE: u32 = 0x8000;
    /// Bytes of random code per stream.
    pub const CODE_LEN: usize = 512;
}

/// GDT selectors.
mod sel {
    pub const CODE32: u16 = 0x08;
    pub const DATA32: u16 = 0x10;
    pub const CODE16: u16 = 0x18;
    pub const DATA16: u16 = 0x20;
    pub const TSS: u16 = 0x28;
}

/// Asynchronous events offered to the CPU during a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// A vector waiting on the INTR line (delivered once the code sets IF).
    pub irq: Option<u8>,
    /// An NMI raised before the stream.
    pub nmi: bool,
    /// The bus asks `run` to return (`run` polls it at least after every I/O or MMIO access).
    pub exit_request: bool,
}

impl Events {
    fn random(rng: &mut Rng) -> Events {
        Events {
            irq: rng.chance(10).then(|| 0x20 + rng.below(0xE0) as u8),
            nmi: rng.chance(2),
            exit_request: rng.chance(5),
        }
    }
}

/// Fuzzer settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Seed of the random generator.
    pub seed: u64,
    /// Instructions to execute (approximately: streams run to completion).
    pub count: u64,
    /// Stop early after this much wall time.
    pub time_limit: Option<Duration>,
    /// Instructions per random stream before it is replaced.
    pub stream_budget: u64,
    /// A stream that runs longer than this is a hang: a watchdog thread prints the stream
    /// (mode, registers, code) to stderr and ends the process with status 3, since `run`
    /// cannot be interrupted from outside. `None`: no watchdog.
    pub hang_timeout: Option<Duration>,
    /// Report file whose `fuzz` section the watchdog fills in before it ends the process.
    pub report: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hang_timeout: Some(Duration::from_secs(10)),
            report: None,
            seed: 1,
            count: 1_000_000,
            time_limit: None,
            stream_budget: 256,
        }
    }
}

/// A problem found by the fuzzer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Mode.
    pub mode: Mode,
    /// Stream number.
    pub stream: u64,
    /// The start of the random code.
    pub bytes: Vec<u8>,
    /// What went wrong.
    pub what: String,
}

/// Fuzzer statistics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Instructions retired.
    pub instructions: u64,
    /// Streams run.
    pub streams: u64,
    /// Exits: limit, halted, triple fault, exit requested.
    pub exits: [u64; 4],
    /// Streams per mode (in [`Mode::ALL`] order).
    pub per_mode: [u64; 5],
    /// Streams whose handler counters the random code overwrote (not in `vectors`).
    pub counts_lost: u64,
    /// How often each exception handler ran (counted by the handlers themselves).
    pub vectors: Vec<u64>,
    /// Problems (at most [`MAX_FINDINGS`] kept).
    pub findings: Vec<Finding>,
    /// Problems found in total.
    pub finding_count: u64,
    /// Whether the time limit stopped the run.
    pub timed_out: bool,
    /// Modes that could not be entered (the boot stub did not reach its end).
    pub mode_errors: Vec<String>,
    /// Modes the CPU does not support (skipped).
    pub unsupported: Vec<String>,
}

/// Findings kept in [`Stats::findings`].
pub const MAX_FINDINGS: usize = 20;

impl Stats {
    fn add_finding(&mut self, f: Finding) {
        self.finding_count += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(f);
        }
    }

    /// A Markdown summary for the report.
    pub fn render(&self, cfg: &Config) -> String {
        let per_mode: Vec<String> = Mode::ALL
            .iter()
            .zip(self.per_mode)
            .map(|(m, n)| format!("{} {n}", m.name()))
            .collect();
        let mut s = format!(
            "fuzz seed {}: {} instructions in {} streams{}; exits: limit {}, halted {}, \
             triple fault {}, exit requested {}; streams per mode: {}; {} problems\n",
            cfg.seed,
            self.instructions,
            self.streams,
            if self.timed_out {
                " (time limit reached)"
            } else {
                ""
            },
            self.exits[0],
            self.exits[1],
            self.exits[2],
            self.exits[3],
            per_mode.join(", "),
            self.finding_count,
        );
        for u in &self.unsupported {
            s.push_str(&format!("\nmode skipped (not supported by the CPU): {u}\n"));
        }
        let vecs: Vec<String> = self
            .vectors
            .iter()
            .enumerate()
            .take(32)
            .filter(|(_, n)| **n > 0)
            .map(|(v, n)| format!("{v}:{n}"))
            .collect();
        let soft: u64 = self.vectors.iter().skip(32).sum();
        if !vecs.is_empty() || soft > 0 {
            s.push_str(&format!(
                "\nhandlers run (vector:count): {}; vectors 32-255 (INT n): {soft}; \
                 streams with overwritten counters: {}\n",
                vecs.join(" "),
                self.counts_lost
            ));
        }
        for e in &self.mode_errors {
            s.push_str(&format!("\nmode setup failed: {e}\n"));
        }
        if !self.findings.is_empty() {
            s.push_str("\n| mode | stream | code bytes | problem |\n|---|---|---|---|\n");
            for f in &self.findings {
                s.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    f.mode.name(),
                    f.stream,
                    hex_bytes(&f.bytes),
                    f.what.replace('|', "/").replace('\n', " ")
                ));
            }
        }
        s
    }
}

/// xorshift64* generator (deterministic for a seed).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator; seed 0 is replaced by a fixed non-zero value.
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        ((self.next_u32() as u64 * n as u64) >> 32) as u32
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u32() as u8
    }
}

/// One-byte opcodes that are valid on a P6 (prefixes and 0x0F excluded).
fn valid_one_byte(op: u8) -> bool {
    !matches!(
        op,
        0x0F | 0x26 | 0x2E | 0x36 | 0x3E | 0x64..=0x67 | 0xD6 | 0xF0 | 0xF1 | 0xF2 | 0xF3
    )
}

/// Two-byte (0x0F xx) opcodes of the P6 integer set.
const TWO_BYTE: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x06, 0x08, 0x09, 0x0B, 0x20, 0x22, 0x30, 0x31, 0x32, 0x34, 0x35, 0x40,
    0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F, 0x80,
    0x84, 0x85, 0x8F, 0x90, 0x94, 0x9F, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA8, 0xA9, 0xAB, 0xAC,
    0xAD, 0xAF, 0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xBA, 0xBB, 0xBC, 0xBD, 0xBE, 0xBF,
    0xC0, 0xC1, 0xC7, 0xC8, 0xCB,
];

/// Whether a 0x0F opcode takes a ModR/M byte.
fn two_byte_has_modrm(op: u8) -> bool {
    !matches!(op, 0x06 | 0x08 | 0x09 | 0x0B | 0x30..=0x35 | 0x80..=0x8F | 0xA0..=0xA2 | 0xA8..=0xAA | 0xC8..=0xCF)
}

/// Immediate bytes of a one-byte opcode (operand size `osz` 2 or 4).
fn imm_len(op: u8, modrm: u8, osz: usize) -> usize {
    match op {
        0x04
        | 0x0C
        | 0x14
        | 0x1C
        | 0x24
        | 0x2C
        | 0x34
        | 0x3C
        | 0x6A
        | 0x6B
        | 0x70..=0x7F
        | 0x80
        | 0x82
        | 0x83
        | 0xA8
        | 0xB0..=0xB7
        | 0xC0
        | 0xC1
        | 0xC6
        | 0xCD
        | 0xD4
        | 0xD5
        | 0xE0..=0xE7
        | 0xEB => 1,
        0xC2 | 0xCA => 2,
        0xC8 => 3,
        0x05
        | 0x0D
        | 0x15
        | 0x1D
        | 0x25
        | 0x2D
        | 0x35
        | 0x3D
        | 0x68
        | 0x69
        | 0x81
        | 0xA9
        | 0xB8..=0xBF
        | 0xC7
        | 0xE8
        | 0xE9 => osz,
        0x9A | 0xEA => osz + 2,
        0xA0..=0xA3 => osz,
        0xF6 if modrm >> 3 & 7 < 2 => 1,
        0xF7 if modrm >> 3 & 7 < 2 => osz,
        _ => 0,
    }
}

/// Appends one random, mostly well-formed instruction for a default operand size of
/// 32 bits (`d32`) or 16 bits.
fn gen_insn(rng: &mut Rng, d32: bool, out: &mut Vec<u8>) {
    const PREFIXES: [u8; 11] = [
        0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65,
    ];
    let mut osz32 = d32;
    let mut asz32 = d32;
    if rng.chance(30) {
        for _ in 0..1 + rng.below(2) {
            let p = PREFIXES[rng.below(PREFIXES.len() as u32) as usize];
            osz32 ^= p == 0x66;
            asz32 ^= p == 0x67;
            out.push(p);
        }
    }
    let osz = if osz32 { 4 } else { 2 };
    let roll = rng.below(100);
    let (modrm_needed, imm) = if roll < 5 {
        // Any byte at all.
        out.push(rng.byte());
        (rng.chance(50), rng.below(5) as usize)
    } else if roll < 25 {
        let op = TWO_BYTE[rng.below(TWO_BYTE.len() as u32) as usize];
        out.extend_from_slice(&[0x0F, op]);
        let imm = match op {
            0x80..=0x8F => osz,
            0xA4 | 0xAC | 0xBA => 1,
            _ => 0,
        };
        (two_byte_has_modrm(op), imm)
    } else {
        let mut op = rng.byte();
        while !valid_one_byte(op) {
            op = rng.byte();
        }
        out.push(op);
        let modrm_needed = crate::insn::has_modrm(op);
        // The immediate length may depend on the ModR/M byte (F6/F7 TEST): peek by
        // generating the ModR/M here.
        if modrm_needed {
            let m = gen_modrm(rng, asz32, out);
            out.extend((0..imm_len(op, m, osz)).map(|_| rng.byte()));
            return;
        }
        let asz = if asz32 { 4 } else { 2 };
        let imm = if matches!(op, 0xA0..=0xA3) {
            asz
        } else {
            imm_len(op, 0, osz)
        };
        (false, imm)
    };
    if modrm_needed {
        gen_modrm(rng, asz32, out);
    }
    out.extend((0..imm).map(|_| rng.byte()));
}

/// Appends a ModR/M byte with its SIB and displacement; returns the ModR/M byte.
fn gen_modrm(rng: &mut Rng, asz32: bool, out: &mut Vec<u8>) -> u8 {
    // Bias to register operands and simple memory forms.
    let md = match rng.below(10) {
        0..=3 => 3,
        4..=5 => 0,
        6..=7 => 1,
        _ => 2,
    };
    let m = (md << 6) as u8 | (rng.byte() & 0x3F);
    out.push(m);
    let rm = m & 7;
    if md == 3 {
        return m;
    }
    if asz32 {
        let mut disp = match md {
            1 => 1,
            2 => 4,
            _ => 0,
        };
        if rm == 4 {
            let sib = rng.byte();
            out.push(sib);
            if md == 0 && sib & 7 == 5 {
                disp = 4;
            }
        } else if md == 0 && rm == 5 {
            disp = 4;
        }
        out.extend((0..disp).map(|_| rng.byte()));
    } else {
        let disp = match md {
            1 => 1,
            2 => 2,
            _ if rm == 6 => 2,
            _ => 0,
        };
        out.extend((0..disp).map(|_| rng.byte()));
    }
    m
}

/// Random code of `len` bytes for a mode.
pub fn gen_code(rng: &mut Rng, d32: bool, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        gen_insn(rng, d32, &mut v);
    }
    v.truncate(len);
    v
}

fn descriptor(base: u32, limit: u32, access: u8, flags: u8) -> [u8; 8] {
    [
        limit as u8,
        (limit >> 8) as u8,
        base as u8,
        (base >> 8) as u8,
        (base >> 16) as u8,
        access,
        (flags << 4) | ((limit >> 16) as u8 & 0x0F),
        (base >> 24) as u8,
    ]
}

fn gate32(offset: u32, selector: u16) -> [u8; 8] {
    [
        offset as u8,
        (offset >> 8) as u8,
        selector as u8,
        (selector >> 8) as u8,
        0,
        0x8E,
        (offset >> 16) as u8,
        (offset >> 24) as u8,
    ]
}

/// Tail of the 32-bit handlers (ring 0, flat code). On entry: [esp] = the interrupted EAX,
/// [esp+4] = the return EIP, EAX = vector. Counts the vector, advances NEXT and returns into
/// that chunk.
fn tail32() -> Vec<u8> {
    let mut c = vec![
        0x1E, // push ds
        0x50, // push eax (vector)
        0x66,
        0xB8,
        sel::DATA32 as u8,
        0, // mov ax,DATA32
        0x8E,
        0xD8, // mov ds,ax
        0x58, // pop eax
        0xFF,
        0x04,
        0x85, // inc dword [COUNTS+eax*4]
    ];
    c.extend_from_slice(&layout::COUNTS.to_le_bytes());
    c.push(0xA1);
    c.extend_from_slice(&layout::NEXT.to_le_bytes()); // mov eax,[NEXT]
    c.extend_from_slice(&[0x83, 0xC0, layout::CHUNK as u8]); // add eax,CHUNK
    c.push(0x25);
    c.extend_from_slice(&(layout::CODE_LEN as u32 - 1).to_le_bytes()); // and eax,CODE_LEN-1
    c.push(0xA3);
    c.extend_from_slice(&layout::NEXT.to_le_bytes()); // mov [NEXT],eax
    c.push(0x05);
    c.extend_from_slice(&layout::CODE.to_le_bytes()); // add eax,CODE
    c.extend_from_slice(&[0x89, 0x44, 0x24, 0x08]); // mov [esp+8],eax (return EIP)
    c.extend_from_slice(&[0x1F, 0x58, 0xCF]); // pop ds; pop eax; iretd
    c
}

/// Tail of the real-mode handlers. On entry: [sp] = the interrupted AX, then IP, CS, FLAGS;
/// AX = vector. Counts the vector and returns to 0000:CODE+NEXT.
fn tail16() -> Vec<u8> {
    let counts = (layout::COUNTS as u16).to_le_bytes();
    let next = (layout::NEXT as u16).to_le_bytes();
    let code = (layout::CODE as u16).to_le_bytes();
    vec![
        0x1E, // push ds
        0x53, // push bx
        0x89,
        0xC3, // mov bx,ax
        0x31,
        0xC0, // xor ax,ax
        0x8E,
        0xD8, // mov ds,ax
        0xC1,
        0xE3,
        0x02, // shl bx,2
        0x66,
        0xFF,
        0x87,
        counts[0],
        counts[1], // inc dword [bx+COUNTS]
        0xA1,
        next[0],
        next[1], // mov ax,[NEXT]
        0x83,
        0xC0,
        layout::CHUNK as u8, // add ax,CHUNK
        0x25,
        (layout::CODE_LEN - 1) as u8,
        ((layout::CODE_LEN - 1) >> 8) as u8, // and ax,LEN-1
        0xA3,
        next[0],
        next[1], // mov [NEXT],ax
        0x05,
        code[0],
        code[1], // add ax,CODE
        0x89,
        0xE3, // mov bx,sp
        0x36,
        0x89,
        0x47,
        0x06, // mov [ss:bx+6],ax (IP)
        0x36,
        0xC7,
        0x47,
        0x08,
        0,
        0, // mov word [ss:bx+8],0 (CS)
        0x5B,
        0x1F,
        0x58,
        0xCF, // pop bx; pop ds; pop ax; iret
    ]
}

/// The system area image (IVT, GDT, IDT, handlers, page tables) shared by every mode.
fn system_image() -> Vec<u8> {
    let mut m = vec![0u8; layout::SYSTEM_END as usize];
    let put = |m: &mut Vec<u8>, at: u32, b: &[u8]| {
        m[at as usize..at as usize + b.len()].copy_from_slice(b);
    };
    for v in 0..256u32 {
        let h32 = layout::HANDLERS + 16 * v;
        let h16 = layout::HANDLERS16 + 16 * v;
        put(
            &mut m,
            layout::IVT + 4 * v,
            &[h16 as u8, (h16 >> 8) as u8, 0, 0],
        );
        put(&mut m, layout::IDT + 8 * v, &gate32(h32, sel::CODE32));
        // 32-bit stub: drop the error code, push eax, eax = vector, jmp TAIL32.
        let mut stub = Vec::new();
        if matches!(v, 8 | 10..=14 | 17) {
            stub.extend_from_slice(&[0x83, 0xC4, 0x04]); // add esp,4
        }
        stub.push(0x50); // push eax
        stub.push(0xB8);
        stub.extend_from_slice(&v.to_le_bytes()); // mov eax,v
        let rel = layout::TAIL32.wrapping_sub(h32 + stub.len() as u32 + 5);
        stub.push(0xE9);
        stub.extend_from_slice(&rel.to_le_bytes()); // jmp TAIL32
        put(&mut m, h32, &stub);
        // Real-mode stub: push ax, ax = vector, jmp TAIL16.
        let mut stub = vec![0x50, 0xB8, v as u8, 0];
        let rel = (layout::TAIL16 as u16).wrapping_sub(h16 as u16 + stub.len() as u16 + 3);
        stub.push(0xE9);
        stub.extend_from_slice(&rel.to_le_bytes());
        put(&mut m, h16, &stub);
    }
    put(&mut m, layout::TAIL32, &tail32());
    put(&mut m, layout::TAIL16, &tail16());
    let gdt = [
        [0u8; 8],
        descriptor(0, 0xFFFFF, 0x9A, 0xC),
        descriptor(0, 0xFFFFF, 0x92, 0xC),
        descriptor(0, 0xFFFF, 0x9A, 0x0),
        descriptor(0, 0xFFFF, 0x92, 0x0),
        descriptor(layout::TSS, 0x67, 0x89, 0x0),
    ];
    for (i, d) in gdt.iter().enumerate() {
        put(&mut m, layout::GDT + 8 * i as u32, d);
    }
    let dtr = |limit: u16, base: u32| {
        let mut b = limit.to_le_bytes().to_vec();
        b.extend_from_slice(&base.to_le_bytes());
        b
    };
    put(
        &mut m,
        layout::GDTR,
        &dtr((gdt.len() * 8 - 1) as u16, layout::GDT),
    );
    put(&mut m, layout::IDTR, &dtr(256 * 8 - 1, layout::IDT));
    put(&mut m, layout::IVTR, &dtr(0x3FF, layout::IVT));
    // TSS: ESP0, SS0; the I/O map base beyond the limit (no bitmap).
    put(&mut m, layout::TSS + 4, &layout::STACK_TOP.to_le_bytes());
    put(&mut m, layout::TSS + 8, &(sel::DATA32 as u32).to_le_bytes());
    put(&mut m, layout::TSS + 0x66, &0x68u16.to_le_bytes());
    // Paging: 0..4 MiB in 4 KiB pages (system pages global; 64..80 KiB absent; 80..96 KiB
    // read-only), 4..8 MiB as one 4 MiB page, the rest absent.
    put(&mut m, layout::PD, &(layout::PT | 0x7).to_le_bytes());
    put(&mut m, layout::PD + 4, &(0x40_0000u32 | 0x87).to_le_bytes());
    for i in 0..1024u32 {
        let flags = match i {
            0x10..=0x13 => 0,
            0x14..=0x17 => 0x5,
            0..=7 => 0x107,
            _ => 0x7,
        };
        let pte = if flags == 0 { 0 } else { (i << 12) | flags };
        put(&mut m, layout::PT + 4 * i, &pte.to_le_bytes());
    }
    m
}

/// Boot stub for a mode (runs in real mode at `layout::STUB`); ends in `JMP $`. Returns the
/// code and the offset of the final `JMP $`.
fn boot_stub(mode: Mode) -> (Vec<u8>, u32) {
    let mut c: Vec<u8> = vec![
        0xFA, // cli
        0x31, 0xC0, // xor ax,ax
        0x8E, 0xD0, // mov ss,ax
        0x8E, 0xD8, // mov ds,ax
        0x8E, 0xC0, // mov es,ax
        0xBC, 0x00, 0x70, // mov sp,0x7000
    ];
    let lidt = |c: &mut Vec<u8>, at: u32| {
        c.extend_from_slice(&[0x0F, 0x01, 0x1E, at as u8, (at >> 8) as u8])
    };
    if mode == Mode::Real {
        lidt(&mut c, layout::IVTR);
    } else {
        c.extend_from_slice(&[
            0x0F,
            0x01,
            0x16,
            layout::GDTR as u8,
            (layout::GDTR >> 8) as u8,
        ]); // lgdt
        lidt(&mut c, layout::IDTR);
        c.extend_from_slice(&[0x0F, 0x20, 0xC0, 0x0C, 0x01, 0x0F, 0x22, 0xC0]); // cr0.PE
        let next = layout::STUB + c.len() as u32;
        if mode == Mode::Pm16 {
            let entry = next + 5;
            c.extend_from_slice(&[0xEA, entry as u8, (entry >> 8) as u8, sel::CODE16 as u8, 0]);
            c.extend_from_slice(&[0xB8, sel::DATA16 as u8, 0]); // mov ax,DATA16
        } else {
            let entry = next + 8; // 32-bit code from here
            c.extend_from_slice(&[0x66, 0xEA]);
            c.extend_from_slice(&entry.to_le_bytes());
            c.extend_from_slice(&[sel::CODE32 as u8, 0]);
            c.extend_from_slice(&[0x66, 0xB8, sel::DATA32 as u8, 0]); // mov ax,DATA32 (32-bit code)
        }
        // mov ds/es/ss/fs/gs, ax
        c.extend_from_slice(&[0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0, 0x8E, 0xE0, 0x8E, 0xE8]);
        if mode.stub32() {
            c.push(0xBC);
            c.extend_from_slice(&layout::STACK_TOP.to_le_bytes()); // mov esp,imm32
        } else {
            c.extend_from_slice(&[0xBC, 0x00, 0x70]); // mov sp,0x7000
        }
        if mode == Mode::Paged {
            c.push(0xB8);
            c.extend_from_slice(&layout::PD.to_le_bytes()); // mov eax,PD
            c.extend_from_slice(&[0x0F, 0x22, 0xD8]); // mov cr3,eax
            c.extend_from_slice(&[0x0F, 0x20, 0xE0, 0x0D, 0x90, 0, 0, 0, 0x0F, 0x22, 0xE0]); // cr4 |= PSE|PGE
            c.extend_from_slice(&[
                0x0F, 0x20, 0xC0, 0x0D, 0x00, 0x00, 0x01, 0x80, 0x0F, 0x22, 0xC0,
            ]); // PG|WP
        }
    }
    if mode == Mode::V86 {
        c.extend_from_slice(&[0x66, 0xB8, sel::TSS as u8, 0, 0x0F, 0x00, 0xD8]); // ltr ax
        c.extend_from_slice(&[0x6A, 0, 0x6A, 0, 0x6A, 0, 0x6A, 0, 0x6A, 0]); // gs fs ds es ss
        c.push(0x68);
        c.extend_from_slice(&layout::V86_STACK.to_le_bytes()); // esp
        c.push(0x68);
        c.extend_from_slice(&0x0002_3002u32.to_le_bytes()); // eflags: VM, IOPL 3
        c.extend_from_slice(&[0x6A, 0]); // cs
        let target = layout::STUB + c.len() as u32 + 6;
        c.push(0x68);
        c.extend_from_slice(&target.to_le_bytes()); // eip
        c.push(0xCF); // iretd
    }
    let end = layout::STUB + c.len() as u32;
    c.extend_from_slice(&[0xEB, 0xFE]);
    (c, end)
}

/// Why a mode could not be entered.
enum Enter {
    /// The CPU does not implement the mode.
    Unsupported(String),
    /// The boot stub went wrong.
    Failed(String),
}

/// A mode's entry state.
struct Entered {
    mode: Mode,
    state: CpuState,
}

/// The fuzzer: one harness, the entry state of every mode.
pub struct Fuzzer {
    h: Harness,
    system: Vec<u8>,
    modes: Vec<Entered>,
    mode_errors: Vec<String>,
    unsupported: Vec<String>,
}

impl std::fmt::Debug for Fuzzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fuzzer")
            .field("modes", &self.modes.len())
            .finish_non_exhaustive()
    }
}

impl Default for Fuzzer {
    fn default() -> Self {
        Self::new()
    }
}

impl Fuzzer {
    /// Builds the harness and enters every mode through its boot stub.
    pub fn new() -> Fuzzer {
        let system = system_image();
        let mut f = Fuzzer {
            h: Harness::new(),
            system,
            modes: Vec::new(),
            mode_errors: Vec::new(),
            unsupported: Vec::new(),
        };
        f.enter_modes();
        f
    }

    fn enter_modes(&mut self) {
        for mode in Mode::ALL {
            match catch_unwind(AssertUnwindSafe(|| {
                Self::enter(&mut self.h, &self.system, mode)
            })) {
                Ok(Ok(state)) => self.modes.push(Entered { mode, state }),
                Ok(Err(Enter::Unsupported(e))) => {
                    self.unsupported.push(format!("{}: {e}", mode.name()))
                }
                Ok(Err(Enter::Failed(e))) => self.mode_errors.push(format!("{}: {e}", mode.name())),
                Err(p) => {
                    self.mode_errors
                        .push(format!("{}: panic: {}", mode.name(), panic_text(&p)))
                }
            }
        }
    }

    fn enter(h: &mut Harness, system: &[u8], mode: Mode) -> Result<CpuState, Enter> {
        h.bus.memory().write_phys(0, system);
        let (stub, end) = boot_stub(mode);
        h.bus.memory().write_phys(layout::STUB, &stub);
        h.cpu.reset();
        h.cpu.set_segment_real(sreg::CS, 0);
        h.cpu.set_eip(layout::STUB);
        let limit = h.cpu.icount() + 100;
        let exit = h.cpu.run(&mut h.bus, limit);
        let in_v86 = h.cpu.registers().mode == "vm86";
        if mode == Mode::V86 && !in_v86 {
            return Err(Enter::Unsupported(format!(
                "IRETD with EFLAGS.VM=1 did not enter V86 mode ({exit:?} at EIP {:#x})",
                h.cpu.eip()
            )));
        }
        if exit != CpuExit::Limit || h.cpu.eip() != end {
            return Err(Enter::Failed(format!(
                "boot stub stopped with {exit:?} at EIP {:#x} (expected the final JMP $ at {end:#x})",
                h.cpu.eip()
            )));
        }
        Ok(h.cpu.state())
    }

    /// Modes that the CPU does not support (V86 before it is implemented), with the reason.
    pub fn unsupported(&self) -> &[String] {
        &self.unsupported
    }

    /// Modes entered successfully.
    pub fn modes(&self) -> Vec<Mode> {
        self.modes.iter().map(|m| m.mode).collect()
    }

    /// Runs the fuzzer.
    pub fn run(&mut self, cfg: &Config) -> Stats {
        let mut stats = Stats {
            vectors: vec![0; 256],
            mode_errors: self.mode_errors.clone(),
            unsupported: self.unsupported.clone(),
            ..Default::default()
        };
        if self.modes.is_empty() {
            return stats;
        }
        let mut rng = Rng::new(cfg.seed);
        let start = Instant::now();
        let mut stream = 0u64;
        let current: Arc<Mutex<Option<(String, Instant)>>> = Arc::new(Mutex::new(None));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = cfg.hang_timeout.map(|limit| {
            let (current, done) = (Arc::clone(&current), Arc::clone(&done));
            let report = cfg.report.clone();
            std::thread::spawn(move || watch(current, done, limit, report))
        });
        while stats.instructions < cfg.count {
            if stream.is_multiple_of(64) && cfg.time_limit.is_some_and(|t| start.elapsed() >= t) {
                stats.timed_out = true;
                break;
            }
            let mi = (stream % self.modes.len() as u64) as usize;
            let mode = self.modes[mi].mode;
            let code = gen_code(&mut rng, mode.code32(), layout::CODE_LEN);
            let regs: [u32; 8] = std::array::from_fn(|_| random_reg(&mut rng));
            let events = Events::random(&mut rng);
            if watchdog.is_some() {
                let what = format!(
                    "seed {} stream {stream} mode {} registers {:08x?} {events:?} code [{}]",
                    cfg.seed,
                    mode.name(),
                    regs,
                    hex_bytes(&code)
                );
                if let Ok(mut c) = current.lock() {
                    *c = Some((what, Instant::now()));
                }
            }
            let result = catch_unwind(AssertUnwindSafe(|| {
                self.stream(mi, &code, &regs, &events, cfg.stream_budget)
            }));
            stats.streams += 1;
            stats.per_mode[Mode::ALL.iter().position(|m| *m == mode).unwrap_or(0)] += 1;
            match result {
                Ok(Ok((exit, n, counts))) => {
                    stats.instructions += n;
                    let i = match exit {
                        CpuExit::Limit => 0,
                        CpuExit::Halted => 1,
                        CpuExit::TripleFault => 2,
                        CpuExit::ExitRequested => 3,
                    };
                    stats.exits[i] += 1;
                    // The counters live in guest memory that the random code may overwrite:
                    // keep them only when they are plausible (each handler run retires
                    // several instructions).
                    let sum: u64 = counts.iter().map(|c| *c as u64).sum();
                    if sum <= n {
                        for (total, c) in stats.vectors.iter_mut().zip(counts.iter()) {
                            *total += *c as u64;
                        }
                    } else {
                        stats.counts_lost += 1;
                    }
                }
                Ok(Err(what)) => {
                    stats.add_finding(Finding {
                        mode,
                        stream,
                        bytes: code[..32].to_vec(),
                        what,
                    });
                }
                Err(p) => {
                    stats.add_finding(Finding {
                        mode,
                        stream,
                        bytes: code[..32].to_vec(),
                        what: format!("panic: {}", panic_text(&p)),
                    });
                    // The CPU may be inconsistent after a panic: start again.
                    self.h = Harness::new();
                    self.modes.clear();
                    self.mode_errors.clear();
                    self.unsupported.clear();
                    self.enter_modes();
                    if self.modes.is_empty() {
                        break;
                    }
                }
            }
            stream += 1;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = watchdog {
            let _ = w.join();
        }
        stats
    }

    /// Runs one stream of `code` in `mode` (which must have been entered) with the given
    /// EAX..EDI (ESP excluded) for at most `budget` instructions: the exit, the instructions
    /// retired and how often each vector's handler ran. For reproducing a finding.
    pub fn run_stream(
        &mut self,
        mode: Mode,
        code: &[u8],
        regs: &[u32; 8],
        events: &Events,
        budget: u64,
    ) -> Result<(CpuExit, u64, Vec<u32>), String> {
        let mi = self
            .modes
            .iter()
            .position(|m| m.mode == mode)
            .ok_or_else(|| format!("mode {} was not entered", mode.name()))?;
        self.stream(mi, code, regs, events, budget)
    }

    /// Runs one stream; returns the exit, the instructions retired and the handler counts.
    fn stream(
        &mut self,
        mi: usize,
        code: &[u8],
        regs: &[u32; 8],
        events: &Events,
        budget: u64,
    ) -> Result<(CpuExit, u64, Vec<u32>), String> {
        let h = &mut self.h;
        h.cpu
            .restore(&self.modes[mi].state)
            .map_err(|e| format!("restore of the entry state failed: {e}"))?;
        h.bus.memory().write_phys(0, &self.system);
        h.bus.memory().write_phys(layout::CODE, code);
        for (i, v) in regs.iter().enumerate() {
            if i != 4 {
                h.cpu.set_reg32(i, *v);
            }
        }
        h.cpu.set_eip(layout::CODE);
        h.bus.io_log.clear();
        h.bus.pending_irqs.clear();
        h.bus.pending_irqs.extend(events.irq);
        h.bus.exit = events.exit_request;
        if events.nmi {
            h.cpu.raise_nmi();
        }
        let before = h.cpu.icount();
        let limit = before + budget;
        let exit = h.cpu.run(&mut h.bus, limit);
        let after = h.cpu.icount();
        h.bus.exit = false;
        h.bus.pending_irqs.clear();
        if exit == CpuExit::ExitRequested && !events.exit_request {
            return Err("run returned ExitRequested although the bus never asked".into());
        }
        if after > limit {
            return Err(format!(
                "run retired {} instructions with a limit of {budget}",
                after - before
            ));
        }
        if after < before {
            return Err(format!("icount went backwards: {before} -> {after}"));
        }
        if exit == CpuExit::Limit && after != limit {
            return Err(format!(
                "run returned Limit after {} of {budget} instructions",
                after - before
            ));
        }
        // Whatever state the stream reached must survive a save/restore round trip
        // (migration and snapshots depend on it).
        // Exceptions the handlers counted.
        let mut raw = vec![0u8; 1024];
        h.bus.memory().read_phys(layout::COUNTS, &mut raw);
        let counts: Vec<u32> = raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let saved = h.cpu.state();
        h.cpu
            .restore(&saved)
            .map_err(|e| format!("restore() refused the state() saved after the stream: {e}"))?;
        if h.cpu.state() != saved {
            return Err("state() differs after a state()/restore() round trip".into());
        }
        Ok((exit, after - before, counts))
    }
}

/// Watchdog: ends the process when one stream runs longer than `limit`, after printing the
/// stream and recording it in the report.
fn watch(
    current: Arc<Mutex<Option<(String, Instant)>>>,
    done: Arc<std::sync::atomic::AtomicBool>,
    limit: Duration,
    report: Option<std::path::PathBuf>,
) {
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let hung = current.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(_, t)| t.elapsed() > limit)
                .map(|(w, _)| w.clone())
        });
        if let Some(what) = hung {
            let msg = format!("hang: Cpu::run did not return within {limit:?}: {what}");
            eprintln!("fuzz: {msg}");
            if let Some(p) = report {
                let body = format!("## Fuzzer\n\n**{msg}**\n");
                if let Err(e) = crate::report::update(&p, "fuzz", &body) {
                    eprintln!("could not update report {}: {e}", p.display());
                }
            }
            std::process::exit(3);
        }
    }
}

/// A register value biased to small addresses (so memory operands often hit RAM).
fn random_reg(rng: &mut Rng) -> u32 {
    match rng.below(4) {
        0 => rng.next_u32(),
        1 => rng.below(0x2_0000),
        2 => rng.below(0x100),
        _ => 0x9000 + rng.below(0x1000),
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic() {
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        assert_eq!(
            (0..10).map(|_| a.next_u64()).collect::<Vec<_>>(),
            (0..10).map(|_| b.next_u64()).collect::<Vec<_>>()
        );
        assert!((0..1000).all(|_| a.below(7) < 7));
    }

    #[test]
    fn generated_code_has_the_requested_length_and_mostly_valid_opcodes() {
        let mut r = Rng::new(9);
        let c = gen_code(&mut r, true, 4096);
        assert_eq!(c.len(), 4096);
        let zero = c.iter().filter(|b| **b == 0x0F).count();
        assert!(zero > 100, "two-byte opcodes are generated ({zero})");
    }

    #[test]
    fn system_image_layout() {
        let m = system_image();
        // #DE stub: push eax; mov eax,0; jmp TAIL32.
        let rel = (layout::TAIL32 as i64 - (0x2000 + 11)) as u32;
        let mut de = vec![0x50, 0xB8, 0, 0, 0, 0, 0xE9];
        de.extend_from_slice(&rel.to_le_bytes());
        assert_eq!(&m[0x2000..0x200B], &de[..]);
        // #PF (error code) stub starts by dropping it.
        assert_eq!(
            &m[0x2000 + 16 * 14..0x2000 + 16 * 14 + 4],
            &[0x83, 0xC4, 0x04, 0x50]
        );
        assert_eq!(&m[0x0C..0x10], &[0x30, 0x70, 0, 0]); // IVT[3] -> 0000:7030
        assert_eq!(&m[0x1000 + 8 * 14..0x1000 + 8 * 15], &gate32(0x20E0, 0x08));
        assert_eq!(
            u32::from_le_bytes(m[0x4000 + 0x10 * 4..0x4000 + 0x11 * 4].try_into().unwrap()),
            0
        );
        assert_eq!(&m[0x808..0x810], &[0xFF, 0xFF, 0, 0, 0, 0x9A, 0xCF, 0]);
    }

    #[test]
    fn handlers_count_and_resume_at_the_next_chunk() {
        let mut f = Fuzzer::new();
        assert!(f.mode_errors.is_empty(), "{:?}", f.mode_errors);
        // UD2 in chunk 0; chunk 1 holds a HLT.
        let mut code = vec![0x90; 2 * layout::CHUNK as usize];
        code[0..2].copy_from_slice(&[0x0F, 0x0B]);
        code[layout::CHUNK as usize] = 0xF4;
        let regs = [0u32; 8];
        for mode in f.modes() {
            let (exit, _, counts) = f
                .run_stream(mode, &code, &regs, &Events::default(), 50)
                .unwrap();
            assert_eq!(counts[6], 1, "{mode:?}: #UD counted once");
            if mode == Mode::V86 {
                // HLT is privileged in V86 mode: #GP, and on to the next chunk.
                assert!(counts[13] >= 1, "{mode:?}");
            } else {
                assert_eq!(
                    exit,
                    CpuExit::Halted,
                    "{mode:?}: resumed at chunk 1 and halted"
                );
            }
        }
    }
}
