//! The decoded-block cache: straight runs of pre-decoded instructions, keyed by the store
//! offset of their first byte and the code segment's default size.
//!
//! A block holds [`Op`]s (operand registers, immediates, displacement, the ModR/M
//! effective-address form, a kind that selects the handler, the instruction length) for a run
//! of instructions inside one 4 KiB page. It ends at a branch, before an instruction that
//! would cross the page end, at [`MAX_OPS`], or after an instruction that may change the
//! mode, CS, a segment, IF, control/debug registers, or do I/O (those kinds are
//! [`K::SlowEnd`]). MMX/SSE/SSE2 instructions are decoded ops run by the SIMD unit
//! ([`K::Simd`]); the remaining instructions without a fast handler run through the
//! interpreter's `step` ([`K::Slow`]: the block goes on after them). A run of up to
//! [`MAX_CNT`] PUSH or POP r32 is one op ([`K::PushRegs`], [`K::PopRegs`]; function prologues
//! and epilogues), and so is a compare, test or other flag-setting ALU instruction with the
//! conditional branch after it (`K::*Jcc`, e.g. [`K::AluMIJcc`]). Such an op counts its
//! instructions ([`Op::cnt`]), retires those before one that faults, and stops after one
//! that must end the chain.
//!
//! Blocks run in chains (`Cpu::run_block`): one block follows the next while nothing the run
//! loop checks between instructions can have changed. What only I/O or MMIO can change (the
//! memory map, pending code invalidations from devices) is checked once per chain, and a
//! block in the same linear page as the one before reuses its code translation and page
//! generation. In flat 32-bit code the op a block is left at (a taken branch, a direct JMP or
//! CALL, the end of the block) links to the block that followed it in the same page, which
//! the chain then runs without a lookup.
//!
//! Invalidation is per physical page through `Memory`: building a block marks its page as
//! code (which drops fast write TLB entries to it, so every write to the page takes the slow
//! path and records an invalidation); invalidations are drained before each chain and after
//! every slow-path write, and bump the page's generation, which the lookup compares. A write
//! to the page of the running chain ends the chain after that instruction.
//!
//! Memory is bounded: a two-way table of [`TABLE_SIZE`] blocks, a direct-mapped jump cache
//! of [`JUMP_SIZE`] copies in front of it (hot loops find their blocks there), and an
//! arena of at most [`ARENA_OPS`] ops; when the arena is full everything is dropped.

use crate::exec::{Opnd, Pfx};
use crate::flags::{size_mask, ARITH, CF, K_ADD, K_SUB, RF};
use crate::simd::Mp;
use crate::{sreg, Bus, Cpu, Res};

/// log2 of the number of blocks in the table.
const TABLE_BITS: u32 = 16;
/// Blocks in the table (two-way sets of adjacent entries).
const TABLE_SIZE: usize = 1 << TABLE_BITS;
/// Ops in the arena before a full flush.
const ARENA_OPS: usize = 1 << 19;
/// [`CodeCache::exit`]: end the chain of blocks (back to the run loop's checks).
pub(crate) const EXIT_STOP: u8 = 1;
/// [`CodeCache::exit`]: leave this block for the next one (a taken branch).
const EXIT_LEAVE: u8 = 2;
/// Most ops in one block.
const MAX_OPS: usize = 64;
/// Most instructions in one op ([`Op::cnt`]).
const MAX_CNT: u8 = 8;
/// Direct jumps and calls a block follows to targets in its page ([`CodeCache::follows`]):
/// in V8 following, measured together with the 4096-entry jump cache, made the ash loop 7 %
/// faster (19.1 / 19.5 s against 21.4 / 20.6 s, `bench.mjs --only wasm86` alternated) and
/// left boot and md5 as they were; natively the same pair made the boot 8 % slower
/// (38.4 / 38.0 s CPU against 35.1 / 35.4 s, run side by side).
#[cfg(target_arch = "wasm32")]
const DEFAULT_FOLLOWS: u32 = 4;
#[cfg(not(target_arch = "wasm32"))]
const DEFAULT_FOLLOWS: u32 = 0;
/// `Op::rm` value for a memory operand.
const MEM: u8 = 8;
/// `Op::base` / `Op::index` value for "no register".
const NOREG: u8 = 8;

/// What an op does (selects its handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum K {
    /// Run by the interpreter's `step`; the block goes on.
    Slow,
    /// Run by `step`; the block ends after it.
    SlowEnd,
    /// `rm = rm OP reg` (ALU op in `aux`; CMP does not write).
    AluMR,
    /// `reg = reg OP rm`.
    AluRM,
    /// `rm = rm OP imm`.
    AluMI,
    /// TEST rm, reg.
    TestMR,
    /// TEST rm, imm.
    TestMI,
    /// MOV rm, reg.
    MovMR,
    /// MOV reg, rm.
    MovRM,
    /// MOV rm, imm.
    MovMI,
    /// LEA reg, m (the effective address into a register).
    Lea,
    /// INC (aux 0) / DEC (aux 1) rm.
    IncDec,
    /// PUSH reg (in `rm`) or rm.
    PushM,
    /// PUSH imm.
    PushI,
    /// POP reg.
    PopR,
    /// Jcc rel (condition in `aux`).
    Jcc,
    /// Jcc right after a CMP/SUB (`lazy` = `K_SUB`), a logic op or TEST (`K_LOGIC`) or an
    /// INC/DEC (`K_ADD`/`K_SUB`, conditions that do not read CF) of size `n` in the same
    /// block: the condition (`cc`) comes straight from the remembered operands, never from
    /// EFLAGS; the displacement is in `rel`.
    JccFused,
    /// JMP rel.
    Jmp,
    /// CALL rel.
    Call,
    /// RET imm16 (imm 0 for C3).
    Ret,
    /// JMP rm.
    JmpM,
    /// CALL rm.
    CallM,
    /// MOVZX (aux 0) / MOVSX (aux 1) reg, rm of size `n`.
    Movx,
    /// XCHG rm, reg.
    Xchg,
    /// Shift/rotate group 2 (op in `aux`) by imm.
    ShiftI,
    /// Shift/rotate group 2 by CL.
    ShiftCl,
    /// SETcc rm8.
    Setcc,
    /// CMOVcc reg, rm.
    Cmov,
    /// IMUL reg, rm, imm.
    Imul3,
    /// IMUL reg, rm.
    Imul2,
    /// LEAVE.
    Leave,
    /// NOP (and PAUSE).
    Nop,
    /// CBW/CWDE.
    Cbw,
    /// CWD/CDQ.
    Cwd,
    /// MOV between registers: `rm = reg`.
    MovRR,
    /// 32-bit load: `reg = [ea]`.
    Load32,
    /// 32-bit store: `[ea] = reg`.
    Store32,
    /// 32-bit ALU between registers: `rm = rm OP reg`.
    AluRR32,
    /// 32-bit ALU with an immediate on a register: `rm = rm OP imm`.
    AluRI32,
    /// 32-bit INC/DEC of a register.
    IncDec32,
    /// ROL/ROR/SHL/SHR/SAR (op in `aux`) of a 32-bit register by an immediate count of 1 to
    /// 31.
    Shift32RI,
    /// An MMX/SSE/SSE2 instruction: second opcode byte in `aux`, mandatory prefix in `n`
    /// (`Mp as u8`), `imm` 1 when an immediate byte ends it.
    Simd,
    /// JMP rel to a target in the same page that the block goes on at (`imm`: the target's
    /// offset from the block's first byte).
    JmpIn,
    /// CALL rel to a target in the same page that the block goes on at (`imm` as for
    /// [`K::JmpIn`]).
    CallIn,
    /// A run of `cnt` consecutive PUSH r32 (one byte each): the registers in `imm`, four
    /// bits each, the first in the low bits.
    PushRegs,
    /// A run of `cnt` consecutive POP r32 (as [`K::PushRegs`]).
    PopRegs,
    /// [`K::AluMR`] and the conditional branch after it ([`Op::cc`]).
    AluMRJcc,
    /// [`K::AluRM`] and a conditional branch.
    AluRMJcc,
    /// [`K::AluMI`] and a conditional branch.
    AluMIJcc,
    /// [`K::TestMR`] and a conditional branch.
    TestMRJcc,
    /// [`K::TestMI`] and a conditional branch.
    TestMIJcc,
    /// [`K::AluRR32`] and a conditional branch.
    AluRR32Jcc,
    /// [`K::AluRI32`] and a conditional branch.
    AluRI32Jcc,
    /// [`K::IncDec32`] and a conditional branch.
    IncDec32Jcc,
}

/// One pre-decoded instruction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op {
    pub kind: K,
    /// Length in bytes.
    pub len: u8,
    /// Offset of the instruction from the start of its block (EIP = block EIP + `off`).
    pub off: u16,
    /// Operand size (1, 2, 4).
    pub n: u8,
    /// ModR/M reg field (or the register of a short form).
    pub reg: u8,
    /// Register operand, or [`MEM`].
    pub rm: u8,
    /// ALU/shift op or condition code.
    pub aux: u8,
    /// Effective address: base register or [`NOREG`].
    pub base: u8,
    /// Index register or [`NOREG`].
    pub index: u8,
    pub scale: u8,
    /// Segment of the memory operand.
    pub seg: u8,
    /// 16-bit addressing (the offset wraps at 64 KiB).
    pub a16: bool,
    /// 32-bit operand size (branch targets are not truncated).
    pub op32: bool,
    pub disp: u32,
    pub imm: u32,
    /// Instructions in the op: 1, 2 for an ALU op and the conditional branch after it
    /// (`K::*Jcc`), or up to [`MAX_CNT`] for the runs of one-byte instructions that build
    /// up one op ([`K::PushRegs`], [`K::PopRegs`]).
    pub cnt: u8,
    /// The condition code of a fused branch ([`K::JccFused`], `K::*Jcc`).
    pub cc: u8,
    /// The lazy-flags kind a fused branch's condition is computed from.
    pub lazy: u8,
    /// The length of the ALU instruction of a `K::*Jcc` (the branch's offset in the op).
    pub first_len: u8,
    /// The displacement of a fused branch, from the end of the op.
    pub rel: u32,
}

impl Op {
    const fn empty(kind: K) -> Op {
        Op {
            kind,
            len: 0,
            off: 0,
            n: 4,
            reg: 0,
            rm: 0,
            aux: 0,
            base: NOREG,
            index: NOREG,
            scale: 0,
            seg: sreg::DS as u8,
            a16: false,
            op32: true,
            disp: 0,
            imm: 0,
            cnt: 1,
            cc: 0,
            lazy: 0,
            first_len: 0,
            rel: 0,
        }
    }
}

/// A block in the table (16 bytes).
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Store offset of the first byte.
    key: u32,
    /// [`tag`] of the page generation the block was built under and the CS.D it was
    /// decoded with.
    tag: u32,
    /// First op in the arena (bits 0 to 23) and number of ops (bits 24 to 31).
    ops: u32,
    /// Bytes from the first byte to the end of the last (the block's instructions lie in
    /// `[EIP - back, EIP + ahead)`: the CS limit check).
    ahead: u16,
    /// Bytes before the first byte that the block reaches (a followed jump or call
    /// backwards).
    back: u16,
}

impl Entry {
    #[inline(always)]
    fn start(&self) -> usize {
        op_range(self.ops).start
    }
}

/// Packs the arena range of a block's ops ([`Entry::ops`]).
#[inline(always)]
fn pack_ops(start: usize, count: usize) -> u32 {
    start as u32 | (count as u32) << 24
}

/// The arena range of packed ops ([`Entry::ops`]).
#[inline(always)]
fn op_range(ops: u32) -> std::ops::Range<usize> {
    let start = (ops & 0xFF_FFFF) as usize;
    start..start + (ops >> 24) as usize
}

/// The tag of a block built under page generation `gen` with CS.D `big`.
#[inline(always)]
fn tag(gen: u32, big: bool) -> u32 {
    gen << 1 | big as u32
}

/// No block: a real block would need a first byte at store offset 2^32 - 1 and its page
/// at generation 2^31 - 1 at once.
const EMPTY: Entry = Entry {
    key: u32::MAX,
    tag: u32::MAX,
    ops: 0,
    ahead: 0,
    back: 0,
};

/// The code page of the running chain: its linear page, store offset and generation
/// ([`CodePage::NONE`]: none yet).
struct CodePage {
    lin: u32,
    page_off: usize,
    gen: u32,
}

impl CodePage {
    /// No page: `lin` 1 is never a page address, so the first block of a chain always
    /// looks its page up.
    const NONE: CodePage = CodePage {
        lin: 1,
        page_off: 0,
        gen: 0,
    };
}

/// How one block ended.
enum Chain {
    /// Left normally: the next block may follow at once.
    Go,
    /// Stopped: back to the run loop.
    Stop,
    /// Nothing ran: the first op has more instructions than the budget allows.
    Empty,
    /// An op faulted.
    Fault(crate::Fault),
}

/// The decoded ops of every block, and per op the block that came next the last time the
/// chain left a block at that op (`Entry::ops`; 0: none yet).
#[derive(Default)]
struct Arena {
    ops: Vec<Op>,
    links: Vec<u32>,
}

impl Arena {
    fn clear(&mut self) {
        self.ops.clear();
        self.links.clear();
    }
}

/// The cache.
pub(crate) struct CodeCache {
    table: Vec<Entry>,
    /// A small direct-mapped cache in front of `table` (hot loops stay in the L1 cache;
    /// the table is a megabyte of random accesses). Its entries are copies: valid while
    /// the arena is not flushed and their page generation matches.
    jump: Vec<Entry>,
    arena: Arena,
    /// How many times the arena was cleared (a link is recorded only if the arena was not
    /// cleared between the block it leads from and the lookup of the block it leads to).
    arena_clears: u32,
    /// Generation per store page (bumped by code invalidations).
    page_gen: Vec<u32>,
    /// Memory map generation the cache was filled under.
    mem_gen: u64,
    /// Store page of the running block.
    cur_page: usize,
    /// Why the running block must end after the current op: [`EXIT_STOP`] (a write hit
    /// its page, MMIO, a slow op that did not fall through) and/or [`EXIT_LEAVE`] (a taken
    /// conditional branch). One byte so the op loop tests it once.
    pub exit: u8,
    /// Set by an op of several instructions that faults after the first: how many of its
    /// instructions retired and how many bytes they take (the faulting instruction's
    /// offset in the op). Read and cleared by the block loop.
    partial: (u8, u8),
    /// Blocks built (statistics).
    pub built: u64,
    /// How many direct JMP/CALL rel a block follows to targets in its own page (a block
    /// then goes on at the target instead of ending).
    pub(crate) follows: u32,
}

impl CodeCache {
    pub(crate) fn new() -> CodeCache {
        CodeCache {
            table: Vec::new(),
            jump: Vec::new(),
            arena: Arena::default(),
            arena_clears: 0,
            page_gen: Vec::new(),
            mem_gen: u64::MAX,
            cur_page: usize::MAX,
            exit: 0,
            partial: (0, 0),
            built: 0,
            follows: DEFAULT_FOLLOWS,
        }
    }

    /// Drops every block from the tables and empties the arena. An op that flushes ends the
    /// running chain: the chain holds the arena meanwhile and puts it back when it ends, its
    /// ops unreachable from the tables.
    pub(crate) fn flush(&mut self) {
        self.table.iter_mut().for_each(|e| *e = EMPTY);
        self.jump.iter_mut().for_each(|e| *e = EMPTY);
        self.arena.clear();
        self.arena_clears = self.arena_clears.wrapping_add(1);
        self.exit |= EXIT_STOP;
    }

    /// Records that the code of store page `page` changed.
    pub(crate) fn invalidate_page(&mut self, page: usize) {
        if let Some(g) = self.page_gen.get_mut(page) {
            *g = g.wrapping_add(1);
        }
        if page == self.cur_page {
            self.exit |= EXIT_STOP;
        }
    }
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCache")
            .field("ops", &self.arena.ops.len())
            .field("built", &self.built)
            .finish_non_exhaustive()
    }
}

/// Entries in the jump cache: natively 1024 (16 KiB; 4096 was no faster side by side:
/// boot 37.5 / 37.6 s CPU against 36.3 / 35.2 s), in the wasm build 4096 (the
/// configuration measured with jump following in V8).
#[cfg(not(target_arch = "wasm32"))]
const JUMP_SIZE: usize = 1024;
#[cfg(target_arch = "wasm32")]
const JUMP_SIZE: usize = 4096;

/// The jump cache entry of store offset `off`.
#[inline(always)]
fn jump_slot(off: u32) -> usize {
    (off ^ (off >> 10)) as usize & (JUMP_SIZE - 1)
}

/// First entry of the two-way set for store offset `off` (a multiplicative hash: block
/// starts of hot code in different pages must not collide in patterns).
#[inline(always)]
fn slot(off: usize) -> usize {
    ((off as u32).wrapping_mul(0x9E37_79B1) >> (32 - TABLE_BITS)) as usize & !1
}

/// Reads instruction bytes from a page slice.
struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Rd<'_> {
    #[inline]
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    fn u16(&mut self) -> Option<u32> {
        Some(self.u8()? as u32 | (self.u8()? as u32) << 8)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(self.u16()? | self.u16()? << 16)
    }
    fn imm(&mut self, n: u8) -> Option<u32> {
        match n {
            1 => self.u8().map(u32::from),
            2 => self.u16(),
            _ => self.u32(),
        }
    }
    fn simm8(&mut self) -> Option<u32> {
        Some(self.u8()? as i8 as u32)
    }
}

/// Decodes the ModR/M operand into `o` (`rm`, or the effective-address form). Returns the
/// ModR/M byte.
fn modrm(r: &mut Rd, o: &mut Op, a32: bool, seg_ovr: Option<u8>) -> Option<u8> {
    let m = r.u8()?;
    let md = m >> 6;
    let rm = m & 7;
    o.reg = (m >> 3) & 7;
    if md == 3 {
        o.rm = rm;
        return Some(m);
    }
    o.rm = MEM;
    let mut seg = sreg::DS as u8;
    if !a32 {
        o.a16 = true;
        let (b, i, ss) = match rm {
            0 => (3, 6, false),
            1 => (3, 7, false),
            2 => (5, 6, true),
            3 => (5, 7, true),
            4 => (6, NOREG, false),
            5 => (7, NOREG, false),
            6 if md == 0 => (NOREG, NOREG, false),
            6 => (5, NOREG, true),
            _ => (3, NOREG, false),
        };
        o.base = b;
        o.index = i;
        o.disp = match md {
            0 if rm == 6 => r.u16()?,
            0 => 0,
            1 => r.simm8()?,
            _ => r.u16()?,
        };
        if ss {
            seg = sreg::SS as u8;
        }
    } else {
        o.a16 = false;
        let mut disp = 0;
        if rm == 4 {
            let sib = r.u8()?;
            let idx = (sib >> 3) & 7;
            let b = sib & 7;
            o.scale = sib >> 6;
            o.index = if idx == 4 { NOREG } else { idx };
            if b == 5 && md == 0 {
                o.base = NOREG;
                disp = r.u32()?;
            } else {
                o.base = b;
                if b == 4 || b == 5 {
                    seg = sreg::SS as u8;
                }
            }
        } else if rm == 5 && md == 0 {
            o.base = NOREG;
            disp = r.u32()?;
        } else {
            o.base = rm;
            if rm == 5 {
                seg = sreg::SS as u8;
            }
        }
        o.disp = match md {
            0 => disp,
            1 => r.simm8()?,
            _ => r.u32()?,
        };
    }
    o.seg = seg_ovr.unwrap_or(seg);
    Some(m)
}

/// Decodes one instruction at the start of `bytes`. None: it does not fit in the slice (the
/// block must end before it).
fn decode(bytes: &[u8], big: bool) -> Option<Op> {
    let mut r = Rd { b: bytes, pos: 0 };
    let mut op32 = big;
    let mut a32 = big;
    let mut seg: Option<u8> = None;
    let mut rep = 0u8;
    let mut npfx = 0;
    let mut o = Op::empty(K::SlowEnd);
    let b = loop {
        let b = r.u8()?;
        match b {
            0x26 | 0x2E | 0x36 | 0x3E => seg = Some((b >> 3) & 3),
            0x64 => seg = Some(4),
            0x65 => seg = Some(5),
            0x66 => op32 = !big,
            0x67 => a32 = !big,
            0xF2 | 0xF3 => rep = b,
            // LOCK and long prefix runs: the interpreter checks them.
            _ => break b,
        }
        npfx += 1;
        if npfx > 4 {
            return Some(o);
        }
    };
    if b == 0xF0 {
        return Some(o);
    }
    let nv: u8 = if op32 { 4 } else { 2 };
    o.op32 = op32;
    o.n = nv;
    let sz = |b: u8| if b & 1 == 0 { 1 } else { nv };
    match b {
        0x00..=0x3F if b & 7 < 6 => {
            let aop = (b >> 3) & 7;
            o.aux = aop;
            match b & 7 {
                0..=3 => {
                    o.n = sz(b);
                    modrm(&mut r, &mut o, a32, seg)?;
                    o.kind = if b & 2 == 0 { K::AluMR } else { K::AluRM };
                }
                _ => {
                    o.n = sz(b);
                    o.rm = 0;
                    o.imm = r.imm(o.n)?;
                    o.kind = K::AluMI;
                }
            }
        }
        0x27 | 0x2F | 0x37 | 0x3F | 0x60 | 0x61 | 0x9E | 0x9F | 0xF5 | 0xF8 | 0xF9 | 0xFC
        | 0xFD | 0xD6 | 0xD7 | 0x9B => o.kind = K::Slow,
        0x40..=0x4F => {
            o.kind = K::IncDec;
            o.rm = b & 7;
            o.aux = (b >> 3) & 1;
        }
        0x50..=0x57 => {
            o.kind = K::PushM;
            o.rm = b & 7;
        }
        0x58..=0x5F => {
            o.kind = K::PopR;
            o.reg = b & 7;
        }
        0x62 | 0x8C | 0xD8..=0xDF => {
            modrm(&mut r, &mut o, a32, seg)?;
            o.kind = K::Slow;
        }
        0x68 => {
            o.kind = K::PushI;
            o.imm = r.imm(nv)?;
        }
        0x6A => {
            o.kind = K::PushI;
            o.imm = r.simm8()?;
        }
        0x69 | 0x6B => {
            modrm(&mut r, &mut o, a32, seg)?;
            o.imm = if b == 0x69 { r.imm(nv)? } else { r.simm8()? };
            o.kind = K::Imul3;
        }
        0x70..=0x7F => {
            o.kind = K::Jcc;
            o.aux = b & 0xF;
            o.imm = r.simm8()?;
        }
        0x80..=0x83 => {
            o.n = sz(b);
            modrm(&mut r, &mut o, a32, seg)?;
            o.aux = o.reg;
            o.imm = if b == 0x81 { r.imm(o.n)? } else { r.simm8()? };
            o.kind = K::AluMI;
        }
        0x84 | 0x85 => {
            o.n = sz(b);
            modrm(&mut r, &mut o, a32, seg)?;
            o.kind = K::TestMR;
        }
        0x86 | 0x87 => {
            o.n = sz(b);
            modrm(&mut r, &mut o, a32, seg)?;
            o.kind = K::Xchg;
        }
        0x88..=0x8B => {
            o.n = sz(b);
            modrm(&mut r, &mut o, a32, seg)?;
            o.kind = if b & 2 == 0 { K::MovMR } else { K::MovRM };
        }
        0x8D => {
            modrm(&mut r, &mut o, a32, seg)?;
            o.kind = if o.rm == MEM { K::Lea } else { K::SlowEnd };
        }
        0x90 => o.kind = K::Nop,
        0x91..=0x97 => {
            o.kind = K::Xchg;
            o.rm = b & 7;
            o.reg = 0;
        }
        0x98 => o.kind = K::Cbw,
        0x99 => o.kind = K::Cwd,
        0xA0..=0xA3 => {
            o.n = sz(b);
            o.reg = 0;
            o.rm = MEM;
            o.disp = if a32 { r.u32()? } else { r.u16()? };
            o.seg = seg.unwrap_or(sreg::DS as u8);
            o.kind = if b < 0xA2 { K::MovRM } else { K::MovMR };
        }
        0xA4..=0xA7 | 0xAA..=0xAF => o.kind = if rep == 0 { K::Slow } else { K::SlowEnd },
        0xA8 | 0xA9 => {
            o.n = sz(b);
            o.rm = 0;
            o.imm = r.imm(o.n)?;
            o.kind = K::TestMI;
        }
        0xB0..=0xB7 => {
            o.n = 1;
            o.rm = b & 7;
            o.imm = r.u8()? as u32;
            o.kind = K::MovMI;
        }
        0xB8..=0xBF => {
            o.rm = b & 7;
            o.imm = r.imm(nv)?;
            o.kind = K::MovMI;
        }
        0xC0 | 0xC1 | 0xD0..=0xD3 => {
            o.n = sz(b);
            modrm(&mut r, &mut o, a32, seg)?;
            o.aux = o.reg;
            o.kind = match b {
                0xC0 | 0xC1 => {
                    o.imm = r.u8()? as u32;
                    K::ShiftI
                }
                0xD0 | 0xD1 => {
                    o.imm = 1;
                    K::ShiftI
                }
                _ => K::ShiftCl,
            };
        }
        0xC2 => {
            o.imm = r.u16()?;
            o.kind = K::Ret;
        }
        0xC3 => o.kind = K::Ret,
        0xC6 | 0xC7 => {
            o.n = sz(b);
            let m = modrm(&mut r, &mut o, a32, seg)?;
            if m & 0x38 != 0 {
                o.kind = K::SlowEnd;
                return Some(o);
            }
            o.imm = r.imm(o.n)?;
            o.kind = K::MovMI;
        }
        0xC8 => {
            r.u16()?;
            r.u8()?;
            o.kind = K::Slow;
        }
        0xC9 => o.kind = K::Leave,
        0xD4 | 0xD5 => {
            r.u8()?;
            o.kind = K::Slow;
        }
        0xE8 => {
            o.imm = r.imm(nv)?;
            o.kind = K::Call;
        }
        0xE9 => {
            o.imm = r.imm(nv)?;
            o.kind = K::Jmp;
        }
        0xEB => {
            o.imm = r.simm8()?;
            o.kind = K::Jmp;
        }
        0xF6 | 0xF7 => {
            o.n = sz(b);
            modrm(&mut r, &mut o, a32, seg)?;
            if o.reg < 2 {
                o.imm = r.imm(o.n)?;
                o.kind = K::TestMI;
            } else {
                o.kind = K::Slow;
            }
        }
        0xFE => {
            o.n = 1;
            modrm(&mut r, &mut o, a32, seg)?;
            if o.reg < 2 {
                o.aux = o.reg;
                o.kind = K::IncDec;
            }
        }
        0xFF => {
            modrm(&mut r, &mut o, a32, seg)?;
            o.kind = match o.reg {
                0 | 1 => {
                    o.aux = o.reg;
                    K::IncDec
                }
                2 => K::CallM,
                4 => K::JmpM,
                6 => K::PushM,
                _ => K::SlowEnd,
            };
        }
        0x0F => {
            let b2 = r.u8()?;
            match b2 {
                0x40..=0x4F => {
                    modrm(&mut r, &mut o, a32, seg)?;
                    o.aux = b2 & 0xF;
                    o.kind = K::Cmov;
                }
                0x80..=0x8F => {
                    o.aux = b2 & 0xF;
                    o.imm = r.imm(nv)?;
                    o.kind = K::Jcc;
                }
                0x90..=0x9F => {
                    o.n = 1;
                    modrm(&mut r, &mut o, a32, seg)?;
                    o.aux = b2 & 0xF;
                    o.kind = K::Setcc;
                }
                0xAF => {
                    modrm(&mut r, &mut o, a32, seg)?;
                    o.kind = K::Imul2;
                }
                0xB6 | 0xB7 | 0xBE | 0xBF => {
                    modrm(&mut r, &mut o, a32, seg)?;
                    o.n = if b2 & 1 == 0 { 1 } else { 2 };
                    o.aux = (b2 >= 0xBE) as u8;
                    o.kind = K::Movx;
                }
                0xA3 | 0xAB | 0xB3 | 0xBB | 0xBC | 0xBD | 0xA5 | 0xAD | 0xB0 | 0xB1 | 0xC0
                | 0xC1 => {
                    modrm(&mut r, &mut o, a32, seg)?;
                    o.kind = K::Slow;
                }
                0xBA | 0xA4 | 0xAC => {
                    modrm(&mut r, &mut o, a32, seg)?;
                    r.u8()?;
                    o.kind = K::Slow;
                }
                0xC8..=0xCF => o.kind = K::Slow,
                // MMX, SSE and SSE2: decoded here, run by the SIMD unit (EMMS, which has no
                // ModR/M, and MASKMOVQ/MASKMOVDQU, which address DS:EDI, through the
                // interpreter).
                b2 if crate::simd::is_simd_op(b2) => {
                    if b2 != 0x77 {
                        modrm(&mut r, &mut o, a32, seg)?;
                    }
                    let imm8 = crate::simd::simd_has_imm8(b2);
                    if imm8 {
                        r.u8()?;
                    }
                    if b2 == 0x77 || b2 == 0xF7 {
                        o.kind = K::Slow;
                    } else {
                        o.kind = K::Simd;
                        o.aux = b2;
                        o.n = Mp::of(rep, op32 != big) as u8;
                        o.imm = imm8 as u32;
                    }
                }
                _ => return Some(o),
            }
        }
        _ => return Some(o),
    }
    o.len = r.pos as u8;
    specialize(&mut o);
    Some(o)
}

/// Picks a narrower kind for the common register and 32-bit forms.
fn specialize(o: &mut Op) {
    let reg_rm = o.rm != MEM;
    match o.kind {
        K::MovMR if reg_rm => o.kind = K::MovRR,
        K::MovRM if reg_rm => {
            std::mem::swap(&mut o.rm, &mut o.reg);
            o.kind = K::MovRR;
        }
        K::MovMR if o.n == 4 => o.kind = K::Store32,
        K::MovRM if o.n == 4 => o.kind = K::Load32,
        K::AluMR if reg_rm && o.n == 4 => o.kind = K::AluRR32,
        K::AluRM if reg_rm && o.n == 4 => {
            std::mem::swap(&mut o.rm, &mut o.reg);
            o.kind = K::AluRR32;
        }
        K::AluMI if reg_rm && o.n == 4 => o.kind = K::AluRI32,
        K::IncDec if reg_rm && o.n == 4 => o.kind = K::IncDec32,
        K::ShiftI if reg_rm && o.n == 4 && matches!(o.aux, 0 | 1 | 4..=7) && o.imm & 0x1F != 0 => {
            o.imm &= 0x1F;
            o.kind = K::Shift32RI;
        }
        _ => {}
    }
}

/// Turns Jcc `o` into [`K::JccFused`] when `prev`, the op before it in the block, leaves
/// flags the condition can be computed from directly.
fn fuse(o: &mut Op, prev: &Op) {
    use crate::flags::{K_ADD, K_LOGIC};
    let alu = matches!(
        prev.kind,
        K::AluMR | K::AluRM | K::AluMI | K::AluRR32 | K::AluRI32
    );
    let kind = match prev.kind {
        _ if alu && matches!(prev.aux, 5 | 7) => K_SUB,
        _ if alu && matches!(prev.aux, 1 | 4 | 6) => K_LOGIC,
        K::TestMR | K::TestMI => K_LOGIC,
        // INC/DEC keep CF: only the conditions that do not read it.
        K::IncDec | K::IncDec32 if !matches!(o.aux >> 1, 1 | 3) => {
            if prev.aux == 0 {
                K_ADD
            } else {
                K_SUB
            }
        }
        _ => return,
    };
    o.kind = K::JccFused;
    o.cc = o.aux;
    o.lazy = kind;
    o.rel = o.imm;
    o.n = prev.n;
}

/// Whether `o` starts where `prev` ends (after a followed jump it does not).
fn continues(prev: &Op, o: &Op) -> bool {
    prev.off.wrapping_add(prev.len as u16) == o.off
}

/// The register of a PUSH or POP of a 32-bit register (one byte, no prefix), and the kind
/// of the run it starts.
fn push_pop_reg(o: &Op) -> Option<(K, u8)> {
    match o.kind {
        K::PushM if o.rm != MEM && o.n == 4 && o.len == 1 => Some((K::PushRegs, o.rm)),
        K::PopR if o.n == 4 && o.len == 1 => Some((K::PopRegs, o.reg)),
        _ => None,
    }
}

/// Adds `o` to the run of PUSH or POP r32 that the block's last op (at or after `start`)
/// is or starts, if `o` continues it; returns whether it did.
fn merge(ops: &mut [Op], start: usize, o: &Op) -> bool {
    let Some((run, reg)) = push_pop_reg(o) else {
        return false;
    };
    let Some(last) = ops.get_mut(start..).and_then(|b| b.last_mut()) else {
        return false;
    };
    if !continues(last, o) || last.cnt >= MAX_CNT {
        return false;
    }
    if last.kind != run {
        let Some((k, first)) = push_pop_reg(last) else {
            return false;
        };
        if k != run {
            return false;
        }
        last.kind = run;
        last.imm = first as u32;
    }
    last.imm |= (reg as u32) << (4 * last.cnt as u32);
    last.cnt += 1;
    last.len += 1;
    true
}

/// Makes `prev`, an ALU op, and `o`, the conditional branch after it fused to it
/// ([`K::JccFused`]), one op if there is a kind for the pair; returns whether it did.
fn merge_branch(prev: &mut Op, o: &Op) -> bool {
    let kind = match prev.kind {
        K::AluMR => K::AluMRJcc,
        K::AluRM => K::AluRMJcc,
        K::AluMI => K::AluMIJcc,
        K::TestMR => K::TestMRJcc,
        K::TestMI => K::TestMIJcc,
        K::AluRR32 => K::AluRR32Jcc,
        K::AluRI32 => K::AluRI32Jcc,
        K::IncDec32 => K::IncDec32Jcc,
        _ => return false,
    };
    if o.kind != K::JccFused
        || prev.cnt != 1
        || !continues(prev, o)
        || prev.len as usize + o.len as usize > u8::MAX as usize
    {
        return false;
    }
    prev.kind = kind;
    prev.cnt = 2;
    prev.cc = o.cc;
    prev.lazy = o.lazy;
    prev.first_len = prev.len;
    prev.len += o.len;
    prev.rel = o.rel;
    // (The ALU handlers do not read `op32`; the branch does.)
    prev.op32 = o.op32;
    true
}

/// Condition `cc` after an op of lazy kind `kind` and size `n` with operands `a`, `b` and
/// result `res` (all masked to the size), as [`Cpu::cond`] computes it from the flags.
#[inline(always)]
fn fused_cond(cc: u8, kind: u8, n: u32, a: u32, b: u32, res: u32) -> bool {
    use crate::flags::{parity, sign_bit, K_ADD, K_LOGIC};
    let s = sign_bit(n);
    let sh = 32 - 8 * n;
    let r = match (kind, (cc >> 1) & 7) {
        (_, 2) => res == 0,
        (_, 4) => res & s != 0,
        (_, 5) => parity(res),
        (K_LOGIC, 0 | 1) => false,
        (K_LOGIC, 3) => res == 0,
        (K_LOGIC, 6) => res & s != 0,
        (K_LOGIC, _) => res == 0 || res & s != 0,
        (K_ADD, 0) => (a ^ res) & (b ^ res) & s != 0,
        (K_ADD, 6) => (res & s != 0) != ((a ^ res) & (b ^ res) & s != 0),
        (K_ADD, _) => res == 0 || (res & s != 0) != ((a ^ res) & (b ^ res) & s != 0),
        (_, 0) => (a ^ b) & (a ^ res) & s != 0,
        (_, 1) => a < b,
        (_, 3) => a <= b,
        (_, 6) => (((a << sh) as i32) >> sh) < (((b << sh) as i32) >> sh),
        _ => (((a << sh) as i32) >> sh) <= (((b << sh) as i32) >> sh),
    };
    r ^ (cc & 1 != 0)
}

/// Whether the block ends after an op of this kind.
#[inline(always)]
fn ends_block(k: K) -> bool {
    matches!(
        k,
        K::SlowEnd | K::Jmp | K::Call | K::Ret | K::JmpM | K::CallM
    )
}

/// Whether ops of this kind write EIP themselves.
#[inline(always)]
fn sets_eip(k: K) -> bool {
    matches!(
        k,
        K::Slow
            | K::SlowEnd
            | K::Jcc
            | K::JccFused
            | K::Jmp
            | K::Call
            | K::Ret
            | K::JmpM
            | K::CallM
            | K::JmpIn
            | K::CallIn
            | K::AluMRJcc
            | K::AluRMJcc
            | K::AluMIJcc
            | K::TestMRJcc
            | K::TestMIJcc
            | K::AluRR32Jcc
            | K::AluRI32Jcc
            | K::IncDec32Jcc
    )
}

/// How a block run ended.
pub(crate) enum BlockExit {
    /// No block could be used at CS:EIP: single-step.
    NoBlock,
    /// The block (or part of it) ran.
    Done,
    /// An op faulted (EIP is not yet restored; the op did not retire).
    Fault(crate::Fault),
}

impl Cpu {
    /// Drops every cached block.
    pub(crate) fn flush_code_cache(&mut self) {
        self.code.flush();
    }

    /// Drains the code invalidations recorded by `Memory`.
    #[inline]
    pub(crate) fn drain_code_invalidations(&mut self, mem: &mut wasm86_memory::Memory) {
        if mem.has_code_invalidations() {
            for a in mem.take_code_invalidations() {
                self.code.invalidate_page(a as usize >> 12);
            }
        }
    }

    /// Runs cached blocks from CS:EIP on, chaining from one block to the next while nothing
    /// that the run loop checks between instructions can have changed (only ops that keep
    /// IF, TF, RF, the interrupt shadow, the mode and CS ran, and there was no I/O), at most
    /// up to instruction count `limit`.
    ///
    /// In flat 32-bit code a block left through a direct branch (or at its end) records the
    /// block that came next in the same page (its op's link); the next time the chain leaves
    /// it there, it goes on at that block without a lookup. A link stays right as long as its
    /// block does: both lie in one page, so they were built under the same page generation,
    /// and the target is the same physical offset whatever the paging (the block it starts
    /// from was found under the current translation); with a 4 GiB code segment the CS limit
    /// check of the linked block depends on its EIP alone, which the link fixes.
    #[inline(never)]
    pub(crate) fn run_block<B: Bus>(&mut self, bus: &mut B, limit: u64) -> BlockExit {
        // What a chain cannot change is checked once here: the memory map changes only
        // through I/O or MMIO (both end the chain), and RAM writes drain the code
        // invalidations themselves (`phys_write`).
        let mem = bus.memory();
        if mem.generation() != self.code.mem_gen {
            self.code.mem_gen = mem.generation();
            self.code.flush();
        }
        self.drain_code_invalidations(mem);
        if self.code.table.is_empty() {
            self.code.table = vec![EMPTY; TABLE_SIZE];
            self.code.jump = vec![EMPTY; JUMP_SIZE];
        }
        let cs = &self.segs[sreg::CS];
        let flat = cs.big && cs.limit == u32::MAX;
        let mut at = CodePage::NONE;
        let mut ran = false;
        // The arena op the chain left its last block at, when that exit can be linked.
        let mut from: Option<usize> = None;
        // The arena is moved out while the chain runs (the ops run with `&mut self`; nothing
        // an op does builds blocks, and a flush meanwhile only clears the tables and ends
        // the chain).
        let mut arena = std::mem::take(&mut self.code.arena);
        let exit = loop {
            let link = match from {
                Some(i) if flat => arena.links.get(i).copied().unwrap_or(0),
                _ => 0,
            };
            let range = if link != 0 {
                link
            } else {
                let page = at.lin;
                let clears = self.code.arena_clears;
                let Some(range) = self.find_block(bus, &mut at, &mut arena) else {
                    break if ran {
                        BlockExit::Done
                    } else {
                        BlockExit::NoBlock
                    };
                };
                if let (true, Some(i)) = (flat, from) {
                    if at.lin == page && self.code.arena_clears == clears {
                        if let Some(l) = arena.links.get_mut(i) {
                            *l = range;
                        }
                    }
                }
                range
            };
            match self.run_ops(bus, limit, range, &arena.ops) {
                (Chain::Go, next) => {
                    ran = true;
                    from = next;
                    if self.icount >= limit {
                        break BlockExit::Done;
                    }
                }
                (Chain::Stop, _) => break BlockExit::Done,
                (Chain::Empty, _) => {
                    break if ran {
                        BlockExit::Done
                    } else {
                        BlockExit::NoBlock
                    }
                }
                (Chain::Fault(f), _) => break BlockExit::Fault(f),
            }
        };
        self.code.arena = arena;
        self.code.cur_page = usize::MAX;
        exit
    }

    /// Finds (or builds) the block at CS:EIP and returns its ops (`Entry::ops`), or `None`
    /// when no block can run there. `at` is the code page of the block before it in the
    /// chain: a block in the same linear page reuses its translation and generation (CS,
    /// paging and the page's code do not change inside a chain: whatever changes them ends
    /// it).
    #[inline(always)]
    fn find_block<B: Bus>(
        &mut self,
        bus: &mut B,
        at: &mut CodePage,
        arena: &mut Arena,
    ) -> Option<u32> {
        let cs = &self.segs[sreg::CS];
        let big = cs.big;
        let eip = self.eip;
        let cs_limit = cs.limit;
        let lin = cs.base.wrapping_add(eip);
        if lin & 0xFFFF_F000 != at.lin {
            let e = self.tlb_entry(lin);
            if e.rtag != lin & 0xFFFF_F000 {
                return None;
            }
            let page_off = e.off as usize;
            let page = page_off >> 12;
            if self.code.page_gen.len() <= page {
                let pages = bus.memory().store().len().div_ceil(4096);
                self.code.page_gen.resize(pages.max(page + 1), 0);
            }
            *at = CodePage {
                lin: lin & 0xFFFF_F000,
                page_off,
                gen: self.code.page_gen.get(page).copied().unwrap_or(0),
            };
            // A write to this page from now on ends the chain.
            self.code.cur_page = page;
        }
        let page_off = at.page_off;
        let gen = at.gen;
        let off = page_off + (lin & 0xFFF) as usize;
        let key = u32::try_from(off).ok()?;
        let s = slot(off);
        let want = tag(gen, big);
        let hit = |e: &Entry| e.key == key && e.tag == want;
        let js = jump_slot(key);
        let mut ent = self.code.jump.get(js).copied().unwrap_or(EMPTY);
        let in_jump = hit(&ent);
        if !in_jump {
            ent = self.code.table.get(s).copied().unwrap_or(EMPTY);
        }
        if !hit(&ent) {
            let other = self.code.table.get(s + 1).copied().unwrap_or(EMPTY);
            if hit(&other) {
                ent = other;
            } else {
                let new = self.build_block(bus, arena, page_off, off, big, key, gen)?;
                // The set's first entry is the most recently built: the one it replaces
                // moves to the second (whose old block is dropped).
                // (A build that flushed the arena starts at 0: the old block is gone.)
                let old = if new.start() == 0 { EMPTY } else { ent };
                ent = new;
                if let Some(t) = self.code.table.get_mut(s..s + 2) {
                    t[1] = old;
                    t[0] = ent;
                }
            }
        }
        if !in_jump {
            if let Some(j) = self.code.jump.get_mut(js) {
                *j = ent;
            }
        }
        // The whole block must lie inside the CS limit (and before a 16-bit IP wrap);
        // otherwise the interpreter raises the fault at the right instruction.
        let last = eip as u64 + ent.ahead as u64 - 1;
        if last > cs_limit as u64 || !big && last > 0xFFFF || eip < ent.back as u32 {
            return None;
        }
        Some(ent.ops)
    }

    /// Runs the ops `range` (`Entry::ops`) of the block at EIP, at most up to instruction
    /// count `limit`. Returns how the block ended and, when the chain may go on, the arena
    /// index of the op it left the block at if that exit always leads to the same EIP (a
    /// taken conditional branch, a direct JMP or CALL, the end of a block that falls
    /// through): the op whose link the next block fills in.
    #[inline(always)]
    fn run_ops<B: Bus>(
        &mut self,
        bus: &mut B,
        limit: u64,
        range: u32,
        ops: &[Op],
    ) -> (Chain, Option<usize>) {
        self.code.exit = 0;
        let range = op_range(range);
        let start = range.start;
        let all = ops.get(range).unwrap_or(&[]);
        let budget = limit.saturating_sub(self.icount);
        let run = if all.len() as u64 * MAX_CNT as u64 > budget {
            // The ops whose instructions all fit in the budget (an op of several
            // instructions that does not fit is left to the next block or the interpreter).
            let mut left = budget;
            let fit = all
                .iter()
                .take_while(|o| {
                    let fits = o.cnt as u64 <= left;
                    left = left.saturating_sub(o.cnt as u64);
                    fits
                })
                .count();
            all.get(..fit).unwrap_or(&[])
        } else {
            all
        };
        // EIP is written back only by branches, by slow ops, after a fault (from the op's
        // offset) and after the last op.
        let base = self.eip;
        let mut done = 0usize;
        for op in run {
            if let Err(f) = self.exec_op(bus, op, base) {
                // The instructions of the op before the one that faulted retired.
                let (retired, skip) = std::mem::take(&mut self.code.partial);
                self.icount += retired as u64;
                self.start_eip = op_eip(op, base).wrapping_add(skip as u32);
                return (Chain::Fault(f), None);
            }
            done += 1;
            self.icount += op.cnt as u64;
            // MMIO and code invalidations stop the chain; I/O and HLT are `SlowEnd`. A taken
            // conditional branch leaves the block (one not taken falls through to the next
            // op: blocks go on past conditional branches).
            if self.code.exit != 0 {
                break;
            }
        }
        let Some(last) = done.checked_sub(1).and_then(|i| run.get(i)) else {
            return (Chain::Empty, None);
        };
        if !sets_eip(last.kind) {
            self.eip = next_eip(last, base);
        }
        let at = start + done - 1;
        match self.code.exit {
            0 => {}
            EXIT_LEAVE => return (Chain::Go, Some(at)),
            _ => {
                let (retired, skip) = std::mem::take(&mut self.code.partial);
                if retired != 0 {
                    // An op of several instructions stopped after `retired` of them.
                    self.icount -= (last.cnt - retired) as u64;
                    self.eip = op_eip(last, base).wrapping_add(skip as u32);
                }
                return (Chain::Stop, None);
            }
        }
        if done < all.len() || last.kind == K::SlowEnd {
            return (Chain::Stop, None);
        }
        let fixed =
            !sets_eip(last.kind) || matches!(last.kind, K::Jmp | K::Call | K::JmpIn | K::CallIn);
        (Chain::Go, fixed.then_some(at))
    }

    /// Decodes the block at store offset `off` into the arena (out of line: it is not hot,
    /// and the block loop it would be inlined into is short of registers already).
    #[cold]
    #[inline(never)]
    fn build_block<B: Bus>(
        &mut self,
        bus: &mut B,
        arena: &mut Arena,
        page_off: usize,
        off: usize,
        big: bool,
        key: u32,
        gen: u32,
    ) -> Option<Entry> {
        let mem = bus.memory();
        let page = mem.store().get(page_off..page_off + 4096)?;
        if arena.ops.len() + MAX_OPS > ARENA_OPS {
            // (The flush counts the clear.)
            self.code.flush();
            arena.clear();
        }
        let ops = &mut arena.ops;
        let start = ops.len();
        // Positions in the page: where decoding is, the first byte, and the range covered.
        let first = off - page_off;
        let mut pos = first;
        let (mut lo, mut hi) = (first, first);
        let mut follows = 0;
        while ops.len() - start < MAX_OPS {
            let Some(mut o) = page.get(pos..).and_then(|b| decode(b, big)) else {
                break;
            };
            o.off = (pos as i32 - first as i32) as i16 as u16;
            lo = lo.min(pos);
            if o.kind == K::SlowEnd {
                // Its length is unknown here: it must be the last op (the interpreter decodes
                // it), and it must fit in the page, which only the interpreter knows; keep
                // it if at least one byte remains, the interpreter crosses pages itself.
                ops.push(o);
                hi = hi.max(pos + 1);
                break;
            }
            pos += o.len as usize;
            hi = hi.max(pos);
            if o.kind == K::Jcc && ops.len() > start {
                if let Some(prev) = ops.last_mut() {
                    fuse(&mut o, prev);
                    if merge_branch(prev, &o) {
                        continue;
                    }
                }
            }
            // A direct JMP or CALL of 32-bit code to a target in the same page: the block
            // goes on at the target (a few times per block, so that loops are not unrolled
            // far). 16-bit code and operand-size overrides wrap IP at 64 KiB: not followed.
            if matches!(o.kind, K::Jmp | K::Call) && big && o.op32 && follows < self.code.follows {
                let t = pos as i64 + o.imm as i32 as i64;
                if (0..4096).contains(&t) {
                    let t = t as usize;
                    follows += 1;
                    o.kind = if o.kind == K::Jmp {
                        K::JmpIn
                    } else {
                        K::CallIn
                    };
                    o.imm = (t as i32 - first as i32) as u32;
                    // The target is inside the checked range even if nothing decodes there.
                    lo = lo.min(t);
                    hi = hi.max(t + 1);
                    ops.push(o);
                    pos = t;
                    continue;
                }
            }
            if !merge(ops, start, &o) {
                ops.push(o);
            }
            if ends_block(o.kind) {
                break;
            }
        }
        let count = ops.len() - start;
        arena.links.resize(arena.ops.len(), 0);
        if count == 0 {
            return None;
        }
        if mem.mark_code(page_off) {
            // Writes to this page must now take the slow path.
            for t in self.tlb.iter_mut() {
                if t.off as usize == page_off {
                    t.wtag = crate::mmu::NO_TAG;
                }
            }
        }
        self.code.built += 1;
        Some(Entry {
            key,
            tag: tag(gen, big),
            ops: pack_ops(start, count),
            ahead: (hi - first) as u16,
            back: (first - lo) as u16,
        })
    }

    #[inline(always)]
    fn ea(&self, o: &Op) -> u32 {
        let b = match self.regs.get(o.base as usize) {
            Some(&v) => v,
            None => 0,
        };
        let i = match self.regs.get(o.index as usize) {
            Some(&v) => v << o.scale,
            None => 0,
        };
        let a = b.wrapping_add(i).wrapping_add(o.disp);
        if o.a16 {
            a & 0xFFFF
        } else {
            a
        }
    }

    #[inline(always)]
    fn rd_op<B: Bus>(&mut self, bus: &mut B, o: &Op, n: u32) -> Res<u32> {
        if o.rm != MEM {
            Ok(self.rreg(o.rm, n))
        } else {
            let a = self.ea(o);
            self.rd(bus, o.seg as usize, a, n)
        }
    }

    #[inline(always)]
    fn wr_op<B: Bus>(&mut self, bus: &mut B, o: &Op, n: u32, v: u32) -> Res<()> {
        if o.rm != MEM {
            self.wreg(o.rm, n, v);
            Ok(())
        } else {
            let a = self.ea(o);
            self.wr(bus, o.seg as usize, a, n, v)
        }
    }

    /// PUSH for block ops: the 32-bit stack inline, the rest through [`Cpu::push`].
    #[inline(always)]
    fn bpush<B: Bus>(&mut self, bus: &mut B, v: u32, n: u32) -> Res<()> {
        if self.segs[sreg::SS].big {
            let sp = self.regs[4].wrapping_sub(n);
            self.wr(bus, sreg::SS, sp, n, v)?;
            self.regs[4] = sp;
            Ok(())
        } else {
            self.push(bus, v, n)
        }
    }

    /// POP for block ops (see [`Cpu::bpush`]).
    #[inline(always)]
    fn bpop<B: Bus>(&mut self, bus: &mut B, n: u32) -> Res<u32> {
        if self.segs[sreg::SS].big {
            let sp = self.regs[4];
            let v = self.rd(bus, sreg::SS, sp, n)?;
            self.regs[4] = sp.wrapping_add(n);
            Ok(v)
        } else {
            self.pop(bus, n)
        }
    }

    /// Executes one op of the block that starts at EIP `base`. Only branches and slow ops
    /// write EIP.
    ///
    /// Dispatch: a `match` on [`Op::kind`] (the default) or, with the `fn-table` feature, an
    /// indirect call through [`Table::TABLE`]. Both call the same handlers (`h_*` below).
    ///
    /// Measured 2026-11-25 on the Linux guest (2 host cores; load average 0.5 to 1.1 during
    /// every run), two runs each, alternating:
    /// - V8 (Chromium 150, `node tests/browser/bench.mjs --only wasm86`, seconds (MIPS) for
    ///   boot / md5 / md5 / ash loop): match 56.4 (131) / 12.8 (111) / 13.0 (109) / 22.0 (82)
    ///   and 53.6 (137) / 12.8 (111) / 12.6 (112) / 20.8 (87); table 98.9 (75) / 21.6 (66) /
    ///   21.5 (66) / 32.5 (56) and 99.3 (74) / 21.6 (66) / 22.3 (64) / 32.7 (56).
    /// - natively (`python3 /tmp/wl.py`, CPU seconds for boot / ash loop / md5): match 42.0 /
    ///   17.0 / 10.8 and 39.7 / 15.4 / 9.9; table 50.7 / 18.7 / 11.3 and 45.6 / 18.6 / 11.3.
    ///
    /// The `match` is 1.5 to 1.8 times as fast in V8 and 10 to 20 % faster natively (the
    /// handlers inline into the block loop; through the table every op is an indirect call
    /// that can be neither inlined nor specialised), so it is the default.
    ///
    /// Inlining is decided per target: natively the rare kinds (XCHG, SETcc, CMOVcc, IMUL,
    /// LEAVE, CBW/CWD, indirect JMP/CALL, 8/16-bit INC/DEC, other shifts) are calls, which
    /// leaves the block loop more registers (ash loop 15.45 / 14.65 / 15.78 s CPU against
    /// 16.30 / 15.54 / 17.81 s inlined, run side by side); in V8 the same change made the boot
    /// 10 % slower (57.6 / 58.6 s against 52.8 s, `bench.mjs --only wasm86` alternated), so
    /// the wasm build inlines every handler.
    #[inline(always)]
    fn exec_op<B: Bus>(&mut self, bus: &mut B, o: &Op, base: u32) -> Res<()> {
        #[cfg(feature = "fn-table")]
        {
            match Table::<B>::TABLE.get(o.kind as usize) {
                Some(h) => h(self, bus, o, base),
                None => Ok(()),
            }
        }
        #[cfg(not(feature = "fn-table"))]
        {
            dispatch_match(self, bus, o, base)
        }
    }
}

/// A block-op handler: runs `o`, an op of the block that starts at EIP `base`.
type Handler<B> = fn(&mut Cpu, &mut B, &Op, u32) -> Res<()>;

/// Declares the handler of every [`K`] once, in `K`'s order, and from that list builds both
/// dispatchers: `dispatch_match` (a `match`) and [`Table::TABLE`] (indexed by `kind as
/// usize`; a compile-time check keeps the list in `K`'s order).
macro_rules! handlers {
    ($($k:ident => $f:ident),* $(,)?) => {
        /// The handler table, one per `Bus` type.
        struct Table<B>(std::marker::PhantomData<B>);

        impl<B: Bus> Table<B> {
            /// `TABLE[k as usize]` is the handler of kind `k`.
            #[cfg_attr(not(feature = "fn-table"), allow(dead_code))]
            const TABLE: [Handler<B>; [$(K::$k),*].len()] = [$($f::<B>),*];
        }

        const _: () = {
            let ks = [$(K::$k),*];
            let mut i = 0;
            while i < ks.len() {
                assert!(ks[i] as usize == i, "handlers! is not in K's order");
                i += 1;
            }
        };

        /// Runs `o` through a `match` on its kind.
        #[cfg_attr(feature = "fn-table", allow(dead_code))]
        #[inline(always)]
        fn dispatch_match<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, base: u32) -> Res<()> {
            match o.kind {
                $(K::$k => $f(c, bus, o, base),)*
            }
        }
    };
}

handlers! {
    Slow => h_slow,
    SlowEnd => h_slow,
    AluMR => h_alu_mr,
    AluRM => h_alu_rm,
    AluMI => h_alu_mi,
    TestMR => h_test_mr,
    TestMI => h_test_mi,
    MovMR => h_mov_mr,
    MovRM => h_mov_rm,
    MovMI => h_mov_mi,
    Lea => h_lea,
    IncDec => h_inc_dec,
    PushM => h_push_m,
    PushI => h_push_i,
    PopR => h_pop_r,
    Jcc => h_jcc,
    JccFused => h_jcc_fused,
    Jmp => h_jmp,
    Call => h_call,
    Ret => h_ret,
    JmpM => h_jmp_m,
    CallM => h_call_m,
    Movx => h_movx,
    Xchg => h_xchg,
    ShiftI => h_shift,
    ShiftCl => h_shift,
    Setcc => h_setcc,
    Cmov => h_cmov,
    Imul3 => h_imul3,
    Imul2 => h_imul2,
    Leave => h_leave,
    Nop => h_nop,
    Cbw => h_cbw,
    Cwd => h_cwd,
    MovRR => h_mov_rr,
    Load32 => h_load32,
    Store32 => h_store32,
    AluRR32 => h_alu_rr32,
    AluRI32 => h_alu_ri32,
    IncDec32 => h_inc_dec32,
    Shift32RI => h_shift32_ri,
    Simd => h_simd,
    JmpIn => h_jmp_in,
    CallIn => h_call_in,
    PushRegs => h_push_regs,
    PopRegs => h_pop_regs,
    AluMRJcc => h_alu_mr_jcc,
    AluRMJcc => h_alu_rm_jcc,
    AluMIJcc => h_alu_mi_jcc,
    TestMRJcc => h_test_mr_jcc,
    TestMIJcc => h_test_mi_jcc,
    AluRR32Jcc => h_alu_rr32_jcc,
    AluRI32Jcc => h_alu_ri32_jcc,
    IncDec32Jcc => h_inc_dec32_jcc,
}

/// EIP of the instruction after `o`.
#[inline(always)]
fn next_eip(o: &Op, base: u32) -> u32 {
    op_eip(o, base).wrapping_add(o.len as u32)
}

/// EIP of `o` (its offset from the block's first byte is signed: a followed jump or call
/// can lead backwards).
#[inline(always)]
fn op_eip(o: &Op, base: u32) -> u32 {
    base.wrapping_add(o.off as i16 as u32)
}

/// [`K::Slow`] and [`K::SlowEnd`]: one instruction through the interpreter's `step`.
#[inline(always)]
fn h_slow<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, base: u32) -> Res<()> {
    let at = op_eip(o, base);
    c.eip = at;
    c.rf_keep = false;
    c.step(bus)?;
    if c.eflags & RF != 0 && !c.rf_keep {
        c.eflags &= !RF;
    }
    if o.kind == K::Slow && c.eip != at.wrapping_add(o.len as u32) {
        // A REP instruction that must resume, or anything unexpected: end here.
        c.code.exit |= EXIT_STOP;
    }
    Ok(())
}

/// [`K::Simd`].
#[inline(never)]
fn h_simd<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, base: u32) -> Res<()> {
    let (m, opnd) = if o.rm == MEM {
        (o.reg << 3, Opnd::Mem(o.seg, c.ea(o)))
    } else {
        (0xC0 | o.reg << 3 | o.rm, Opnd::Reg(o.rm))
    };
    if o.imm != 0 {
        // The immediate is fetched from the last byte.
        c.eip = next_eip(o, base).wrapping_sub(1);
        c.ipos = 0;
        c.iavail = 0;
    }
    let mp = match o.n {
        0 => Mp::None,
        1 => Mp::P66,
        2 => Mp::F3,
        _ => Mp::F2,
    };
    // Only MASKMOVQ/MASKMOVDQU read the prefixes, and they are not block ops.
    let p = Pfx {
        op32: o.op32,
        a32: !o.a16,
        seg: o.seg,
        rep: 0,
        lock: false,
    };
    c.simd_exec(bus, o.aux, mp, m, opnd, &p)
}

/// [`K::AluMR`].
#[inline(always)]
fn h_alu_mr<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let a = c.rd_op(bus, o, n)?;
    let b = c.rreg(o.reg, n);
    let r = c.alu(o.aux, a, b, n);
    if o.aux != 7 {
        c.wr_op(bus, o, n, r)?;
    }
    Ok(())
}

/// [`K::AluRM`].
#[inline(always)]
fn h_alu_rm<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let b = c.rd_op(bus, o, n)?;
    let a = c.rreg(o.reg, n);
    let r = c.alu(o.aux, a, b, n);
    if o.aux != 7 {
        c.wreg(o.reg, n, r);
    }
    Ok(())
}

/// [`K::AluMI`].
#[inline(always)]
fn h_alu_mi<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let a = c.rd_op(bus, o, n)?;
    let r = c.alu(o.aux, a, o.imm, n);
    if o.aux != 7 {
        c.wr_op(bus, o, n, r)?;
    }
    Ok(())
}

/// [`K::TestMR`].
#[inline(always)]
fn h_test_mr<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let a = c.rd_op(bus, o, n)?;
    let b = c.rreg(o.reg, n);
    c.alu(4, a, b, n);
    Ok(())
}

/// [`K::TestMI`].
#[inline(always)]
fn h_test_mi<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let a = c.rd_op(bus, o, n)?;
    c.alu(4, a, o.imm, n);
    Ok(())
}

/// [`K::MovMR`].
#[inline(always)]
fn h_mov_mr<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let v = c.rreg(o.reg, n);
    c.wr_op(bus, o, n, v)
}

/// [`K::MovRM`].
#[inline(always)]
fn h_mov_rm<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let v = c.rd_op(bus, o, n)?;
    c.wreg(o.reg, n, v);
    Ok(())
}

/// [`K::MovMI`].
#[inline(always)]
fn h_mov_mi<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    c.wr_op(bus, o, o.n as u32, o.imm)
}

/// [`K::Lea`].
#[inline(always)]
fn h_lea<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, _: u32) -> Res<()> {
    let a = c.ea(o);
    c.wreg(o.reg, o.n as u32, a);
    Ok(())
}

/// [`K::IncDec`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_inc_dec<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let a = c.rd_op(bus, o, n)?;
    let (res, kind) = if o.aux == 0 {
        (a.wrapping_add(1), K_ADD)
    } else {
        (a.wrapping_sub(1), K_SUB)
    };
    c.wr_op(bus, o, n, res)?;
    c.set_lazy(kind, n, a, 1, res, ARITH & !CF);
    Ok(())
}

/// [`K::PushM`].
#[inline(always)]
fn h_push_m<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let v = c.rd_op(bus, o, n)?;
    c.bpush(bus, v, n)
}

/// [`K::PushI`].
#[inline(always)]
fn h_push_i<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    c.bpush(bus, o.imm, o.n as u32)
}

/// [`K::PopR`].
#[inline(always)]
fn h_pop_r<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let v = c.bpop(bus, n)?;
    c.wreg(o.reg, n, v);
    Ok(())
}

/// [`K::PushRegs`] (a call on every target: it runs several instructions).
#[inline(never)]
fn h_push_regs<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    each_reg(c, bus, o, |c, bus, r| {
        let v = c.regs[r];
        c.bpush(bus, v, 4)
    })
}

/// [`K::PopRegs`] (as [`h_push_regs`]).
#[inline(never)]
fn h_pop_regs<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    each_reg(c, bus, o, |c, bus, r| {
        c.regs[r] = c.bpop(bus, 4)?;
        Ok(())
    })
}

/// Runs `one` for each register of a PUSH or POP run `o`, one instruction each (one byte
/// each). A fault leaves the instructions before it retired; an instruction after which
/// the chain must end (a write to the running code page, MMIO) ends the op there, as it
/// would end a block after a single instruction. Both record how far the op got in
/// [`CodeCache::partial`].
#[inline(always)]
fn each_reg<B: Bus>(
    c: &mut Cpu,
    bus: &mut B,
    o: &Op,
    one: impl Fn(&mut Cpu, &mut B, usize) -> Res<()>,
) -> Res<()> {
    let mut regs = o.imm;
    for i in 0..o.cnt {
        if let Err(f) = one(c, bus, (regs & 7) as usize) {
            c.code.partial = (i, i);
            return Err(f);
        }
        if c.code.exit & EXIT_STOP != 0 && i + 1 < o.cnt {
            c.code.partial = (i + 1, i + 1);
            break;
        }
        regs >>= 4;
    }
    Ok(())
}

/// [`K::Jcc`].
#[inline(always)]
fn h_jcc<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, base: u32) -> Res<()> {
    let next = next_eip(o, base);
    if c.cond(o.aux) {
        c.control_transfer_near(next.wrapping_add(o.imm), o.op32)?;
        c.code.exit |= EXIT_LEAVE;
    } else {
        c.eip = next;
    }
    Ok(())
}

/// [`K::JccFused`].
#[inline(always)]
fn h_jcc_fused<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, base: u32) -> Res<()> {
    fused_branch(c, o, next_eip(o, base))
}

/// The branch of a [`K::JccFused`] or `K::*Jcc` op `o` (`next`: the EIP after it), taken
/// or not from the lazy flags.
#[inline(always)]
fn fused_branch(c: &mut Cpu, o: &Op, next: u32) -> Res<()> {
    let l = &c.lf;
    if fused_cond(o.cc, o.lazy, o.n as u32, l.a, l.b, l.res) {
        c.control_transfer_near(next.wrapping_add(o.rel), o.op32)?;
        c.code.exit |= EXIT_LEAVE;
    } else {
        c.eip = next;
    }
    Ok(())
}

/// The branch of an ALU op and a conditional branch, after the ALU op ran.
#[inline(always)]
fn then_jcc(c: &mut Cpu, o: &Op, base: u32) -> Res<()> {
    // A write to the running code page or MMIO ends the chain after the ALU instruction.
    if c.code.exit & EXIT_STOP != 0 {
        c.code.partial = (1, o.first_len);
        return Ok(());
    }
    fused_branch(c, o, next_eip(o, base)).inspect_err(|_| {
        // The ALU instruction retired.
        c.code.partial = (1, o.first_len);
    })
}

/// Declares the handler of an ALU op and a conditional branch from the ALU op's handler.
macro_rules! alu_jcc {
    ($($name:ident => $alu:ident),* $(,)?) => {$(
        #[doc = concat!("[`", stringify!($alu), "`] and a conditional branch.")]
        #[inline(always)]
        fn $name<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, base: u32) -> Res<()> {
            $alu(c, bus, o, base)?;
            then_jcc(c, o, base)
        }
    )*};
}

alu_jcc! {
    h_alu_mr_jcc => h_alu_mr,
    h_alu_rm_jcc => h_alu_rm,
    h_alu_mi_jcc => h_alu_mi,
    h_test_mr_jcc => h_test_mr,
    h_test_mi_jcc => h_test_mi,
    h_alu_rr32_jcc => h_alu_rr32,
    h_alu_ri32_jcc => h_alu_ri32,
    h_inc_dec32_jcc => h_inc_dec32,
}

/// [`K::Jmp`].
#[inline(always)]
fn h_jmp<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, base: u32) -> Res<()> {
    c.control_transfer_near(next_eip(o, base).wrapping_add(o.imm), o.op32)
}

/// [`K::JmpIn`]: the target lies inside the block's checked range.
#[inline(always)]
fn h_jmp_in<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, base: u32) -> Res<()> {
    c.eip = base.wrapping_add(o.imm);
    Ok(())
}

/// [`K::CallIn`] (see [`h_jmp_in`]).
#[inline(always)]
fn h_call_in<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, base: u32) -> Res<()> {
    c.bpush(bus, next_eip(o, base), 4)?;
    c.eip = base.wrapping_add(o.imm);
    Ok(())
}

/// [`K::Call`].
#[inline(always)]
fn h_call<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, base: u32) -> Res<()> {
    let next = next_eip(o, base);
    let t = next.wrapping_add(o.imm);
    let t = if o.op32 { t } else { t & 0xFFFF };
    if t > c.segs[sreg::CS].limit && c.pm() {
        return crate::gp(0);
    }
    c.bpush(bus, next, o.n as u32)?;
    c.eip = t;
    Ok(())
}

/// [`K::Ret`].
#[inline(always)]
fn h_ret<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    if c.segs[sreg::SS].big {
        let sp = c.regs[4];
        let t = c.rd(bus, sreg::SS, sp, n)?;
        c.control_transfer_near(t, o.op32)?;
        c.regs[4] = sp.wrapping_add(n).wrapping_add(o.imm);
    } else {
        let mut sp = c.regs[4];
        let t = c.pop_at(bus, &mut sp, n)?;
        c.control_transfer_near(t, o.op32)?;
        let m = c.sp_mask();
        c.regs[4] = (sp & !m) | (sp.wrapping_add(o.imm) & m);
    }
    Ok(())
}

/// [`K::JmpM`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_jmp_m<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let t = c.rd_op(bus, o, o.n as u32)?;
    c.control_transfer_near(t, o.op32)
}

/// [`K::CallM`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_call_m<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, base: u32) -> Res<()> {
    let n = o.n as u32;
    let t = c.rd_op(bus, o, n)?;
    let t = if o.op32 { t } else { t & 0xFFFF };
    if t > c.segs[sreg::CS].limit && c.pm() {
        return crate::gp(0);
    }
    c.bpush(bus, next_eip(o, base), n)?;
    c.eip = t;
    Ok(())
}

/// [`K::Movx`].
#[inline(always)]
fn h_movx<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let v = c.rd_op(bus, o, n)?;
    let v = match (o.aux, n) {
        (0, _) => v,
        (_, 1) => v as u8 as i8 as i32 as u32,
        _ => v as u16 as i16 as i32 as u32,
    };
    let nv = if o.op32 { 4 } else { 2 };
    c.wreg(o.reg, nv, v);
    Ok(())
}

/// [`K::Xchg`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_xchg<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let a = c.rd_op(bus, o, n)?;
    let b = c.rreg(o.reg, n);
    c.wr_op(bus, o, n, b)?;
    c.wreg(o.reg, n, a);
    Ok(())
}

/// [`K::ShiftI`] and [`K::ShiftCl`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_shift<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let cnt = if o.kind == K::ShiftI {
        o.imm
    } else {
        c.regs[1] & 0xFF
    };
    let v = c.rd_op(bus, o, n)?;
    let r = c.shift(o.aux, v, cnt, n);
    if cnt & 0x1F != 0 {
        c.wr_op(bus, o, n, r)?;
    }
    Ok(())
}

/// [`K::Setcc`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_setcc<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let v = c.cond(o.aux) as u32;
    c.wr_op(bus, o, 1, v)
}

/// [`K::Cmov`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_cmov<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let v = c.rd_op(bus, o, n)?;
    if c.cond(o.aux) {
        c.wreg(o.reg, n, v);
    }
    Ok(())
}

/// [`K::Imul3`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_imul3<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let a = c.rd_op(bus, o, n)?;
    let r = c.imul2(a, o.imm, n);
    c.wreg(o.reg, n, r);
    Ok(())
}

/// [`K::Imul2`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_imul2<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let a = c.rd_op(bus, o, n)?;
    let b = c.rreg(o.reg, n);
    let r = c.imul2(b, a, n);
    c.wreg(o.reg, n, r);
    Ok(())
}

/// [`K::Leave`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_leave<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let m = c.sp_mask();
    let mut sp = (c.regs[4] & !m) | (c.regs[5] & m);
    let v = c.pop_at(bus, &mut sp, n)?;
    c.regs[4] = sp;
    c.wreg(5, n, v);
    Ok(())
}

/// [`K::Nop`].
#[inline(always)]
fn h_nop<B: Bus>(_: &mut Cpu, _: &mut B, _: &Op, _: u32) -> Res<()> {
    Ok(())
}

/// [`K::Cbw`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_cbw<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, _: u32) -> Res<()> {
    if o.op32 {
        c.regs[0] = c.regs[0] as i16 as i32 as u32;
    } else {
        let v = c.regs[0] as i8 as i16 as u16 as u32;
        c.wreg(0, 2, v);
    }
    Ok(())
}

/// [`K::Cwd`].
#[cfg_attr(target_arch = "wasm32", inline(always))]
#[cfg_attr(not(target_arch = "wasm32"), inline(never))]
fn h_cwd<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let sign = if o.op32 {
        c.regs[0] & 0x8000_0000
    } else {
        c.regs[0] & 0x8000
    };
    let v = if sign != 0 { size_mask(n) } else { 0 };
    c.wreg(2, n, v);
    Ok(())
}

/// [`K::MovRR`].
#[inline(always)]
fn h_mov_rr<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, _: u32) -> Res<()> {
    let n = o.n as u32;
    let v = c.rreg(o.reg, n);
    c.wreg(o.rm, n, v);
    Ok(())
}

/// [`K::Load32`].
#[inline(always)]
fn h_load32<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let a = c.ea(o);
    let v = c.rd(bus, o.seg as usize, a, 4)?;
    c.regs[o.reg as usize & 7] = v;
    Ok(())
}

/// [`K::Store32`].
#[inline(always)]
fn h_store32<B: Bus>(c: &mut Cpu, bus: &mut B, o: &Op, _: u32) -> Res<()> {
    let a = c.ea(o);
    let v = c.regs[o.reg as usize & 7];
    c.wr(bus, o.seg as usize, a, 4, v)
}

/// [`K::AluRR32`].
#[inline(always)]
fn h_alu_rr32<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, _: u32) -> Res<()> {
    let a = c.regs[o.rm as usize & 7];
    let b = c.regs[o.reg as usize & 7];
    let r = c.alu(o.aux, a, b, 4);
    if o.aux != 7 {
        c.regs[o.rm as usize & 7] = r;
    }
    Ok(())
}

/// [`K::AluRI32`].
#[inline(always)]
fn h_alu_ri32<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, _: u32) -> Res<()> {
    let a = c.regs[o.rm as usize & 7];
    let r = c.alu(o.aux, a, o.imm, 4);
    if o.aux != 7 {
        c.regs[o.rm as usize & 7] = r;
    }
    Ok(())
}

/// [`K::IncDec32`].
#[inline(always)]
fn h_inc_dec32<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, _: u32) -> Res<()> {
    let r = o.rm as usize & 7;
    let a = c.regs[r];
    let (res, kind) = if o.aux == 0 {
        (a.wrapping_add(1), K_ADD)
    } else {
        (a.wrapping_sub(1), K_SUB)
    };
    c.regs[r] = res;
    c.set_lazy(kind, 4, a, 1, res, ARITH & !CF);
    Ok(())
}

/// [`K::Shift32RI`].
#[inline(always)]
fn h_shift32_ri<B: Bus>(c: &mut Cpu, _: &mut B, o: &Op, _: u32) -> Res<()> {
    let r = o.rm as usize & 7;
    let v = c.regs[r];
    if o.aux < 2 {
        // As `shift` for ROL/ROR of a dword by 1..=31: only CF and OF change.
        let (res, cf, of) = if o.aux == 0 {
            let res = v.rotate_left(o.imm);
            (res, res & 1, (res >> 31) ^ (res & 1))
        } else {
            let res = v.rotate_right(o.imm);
            (res, res >> 31, (res >> 31) ^ ((res >> 30) & 1))
        };
        c.regs[r] = res;
        c.set_flags(crate::flags::OF | CF, cf | of << 11);
        return Ok(());
    }
    // As `shift` for SHL/SHR/SAR of a dword by 1..=31.
    let cnt = o.imm;
    let (res, cf, of) = match o.aux {
        4 | 6 => {
            let res = v << cnt;
            let cf = (v >> (32 - cnt)) & 1;
            (res, cf, (res >> 31) ^ cf)
        }
        5 => {
            let res = v >> cnt;
            (res, (v >> (cnt - 1)) & 1, ((res ^ (res << 1)) >> 31) & 1)
        }
        _ => {
            let res = ((v as i32) >> cnt) as u32;
            (res, ((v as i32) >> (cnt - 1)) as u32 & 1, 0)
        }
    };
    c.regs[r] = res;
    c.set_flags(crate::flags::OF | CF | crate::flags::AF, cf | of << 11);
    c.set_lazy(
        crate::flags::K_LOGIC,
        4,
        0,
        0,
        res,
        crate::flags::ZF | crate::flags::SF | crate::flags::PF,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testbus::TestBus;

    /// Followed jumps per block in the tests that exercise following (the native default is
    /// none, the wasm build's four).
    const FOLLOWS: u32 = 4;
    use crate::CpuExit;

    #[test]
    fn a_hot_loop_is_decoded_once() {
        let mut b = TestBus::new(16 << 20).unwrap();
        // mov ecx, 10000; loop: add eax, ecx; dec ecx; jnz loop; hlt
        b.load(
            0x4000,
            &[0xB9, 0x10, 0x27, 0, 0, 0x01, 0xC8, 0x49, 0x75, 0xFB, 0xF4],
        );
        let mut c = Cpu::new();
        c.setup_flat32(0x4000);
        assert_eq!(c.run(&mut b, u64::MAX), CpuExit::Halted);
        assert_eq!(c.regs[0], (1..=10000u32).sum::<u32>());
        assert!(c.code.built <= 3, "{} blocks built", c.code.built);
        assert_eq!(b.mem.page_flags(0x4000) & wasm86_memory::PAGE_CODE, 1);
    }

    /// Two passes of a loop, the code between them patching the loop's immediate: the
    /// second pass must run the new code although the first linked the loop's blocks.
    const PATCHED_LOOP: &[u8] = &[
        0xB9, 0x32, 0, 0, 0, // 4000: mov ecx, 50
        0x83, 0xC0, 0x01, // 4005: add eax, 1 (immediate at 4007)
        0x49, // 4008: dec ecx
        0x75, 0xFA, // 4009: jnz 4005
        0x42, // 400B: inc edx
        0x83, 0xFA, 0x02, // 400C: cmp edx, 2
        0x74, 0x10, // 400F: je 4021
        0xC6, 0x05, 0x07, 0x40, 0, 0, 0x03, // 4011: mov byte [4007], 3
        0xB9, 0x32, 0, 0, 0, // 4018: mov ecx, 50
        0xEB, 0xE6, // 401D: jmp 4005
        0x90, 0x90, // 401F
        0xF4, // 4021: hlt
    ];

    #[test]
    fn linked_blocks_see_code_changes_in_their_page() {
        let mut b = TestBus::new(1 << 20).unwrap();
        b.load(0x4000, PATCHED_LOOP);
        let mut c = Cpu::new();
        c.setup_flat32(0x4000);
        c.regs = [0; 8];
        assert_eq!(c.run(&mut b, u64::MAX), CpuExit::Halted);
        assert_eq!(c.regs[0], 50 + 50 * 3);
        assert_eq!(c.regs[2], 2);
        assert_eq!(c.icount(), 2 + 2 * 50 * 3 + 2 * 3 + 3);
        let links = c.code.arena.links.iter().filter(|&&l| l != 0).count();
        assert!(links >= 2, "{links} links");
    }

    /// A function in the page of its two callers: its return is not linked to either.
    #[test]
    fn a_return_goes_on_at_its_own_caller() {
        let mut b = TestBus::new(1 << 20).unwrap();
        b.load(
            0x4000,
            &[
                0xB9, 0x14, 0, 0, 0, // 4000: mov ecx, 20
                0xE8, 0xF6, 0, 0, 0, // 4005: call 4100
                0x83, 0xC0, 0x01, // 400A: add eax, 1
                0xE8, 0xEE, 0, 0, 0, // 400D: call 4100
                0x83, 0xC0, 0x64, // 4012: add eax, 100
                0x49, // 4015: dec ecx
                0x75, 0xED, // 4016: jnz 4005
                0xF4, // 4018: hlt
            ],
        );
        b.load(0x4100, &[0x42, 0xC3]); // inc edx; ret
        let mut c = Cpu::new();
        c.setup_flat32(0x4000);
        c.regs = [0; 8];
        c.regs[4] = 0x9000;
        assert_eq!(c.run(&mut b, 10_000), CpuExit::Halted);
        assert_eq!(c.regs[0], 20 * 101);
        assert_eq!(c.regs[2], 40);
        assert_eq!(c.icount(), 1 + 20 * 10 + 1);
    }

    #[test]
    fn blocks_are_not_linked_under_a_cs_limit() {
        let mut b = TestBus::new(1 << 20).unwrap();
        b.load(0x4000, PATCHED_LOOP);
        let mut c = Cpu::new();
        c.setup_flat32(0x4000);
        c.segs[sreg::CS] = crate::Seg::from_cache(0x08, 0, 0x000F_FFFF, 0x409B);
        c.regs = [0; 8];
        assert_eq!(c.run(&mut b, u64::MAX), CpuExit::Halted);
        assert_eq!(c.regs[0], 50 + 50 * 3);
        assert!(c.code.arena.links.iter().all(|&l| l == 0));
    }

    #[test]
    fn blocks_go_on_past_conditional_branches_not_taken() {
        let mut b = TestBus::new(1 << 20).unwrap();
        // xor eax,eax; cmp eax,1; je +2; inc eax; inc eax; cmp eax,2; je +1; hlt; hlt
        let code = [
            0x31, 0xC0, 0x83, 0xF8, 0x01, 0x74, 0x02, 0x40, 0x40, 0x83, 0xF8, 0x02, 0x74, 0x01,
            0xF4, 0xF4,
        ];
        b.load(0x4000, &code);
        let mut c = Cpu::new();
        c.setup_flat32(0x4000);
        assert_eq!(c.run(&mut b, u64::MAX), CpuExit::Halted);
        assert_eq!(c.regs[0], 2);
        // The taken branch skipped the first HLT.
        assert_eq!(c.eip, 0x4000 + code.len() as u32);
        assert_eq!(c.icount(), 8);
        // One block up to the HLT after the not-taken JE, one for the final HLT.
        assert!(c.code.built <= 2, "{} blocks built", c.code.built);
    }

    /// nop / call 0x4020 / jmp 0x4040 at 0x4000 (the first instruction of a page runs
    /// through the interpreter: a TLB miss); inc eax / ret at 0x4010; mov eax, 7 / jmp 0x4010
    /// at 0x4020; push eax / hlt at 0x4040.
    fn follow_program(b: &mut TestBus) {
        b.load(0x4000, &[0x90, 0xE8, 0x1A, 0, 0, 0, 0xE9, 0x35, 0, 0, 0]);
        b.load(0x4010, &[0x40, 0xC3]);
        b.load(0x4020, &[0xB8, 7, 0, 0, 0, 0xEB, 0xE9]);
        b.load(0x4040, &[0x50, 0xF4]);
    }

    #[test]
    fn blocks_follow_jumps_and_calls_in_their_page() {
        let mut b = TestBus::new(1 << 20).unwrap();
        follow_program(&mut b);
        let mut c = Cpu::new();
        c.code.follows = FOLLOWS;
        c.setup_flat32(0x4000);
        c.regs[4] = 0x8000;
        assert_eq!(c.run(&mut b, u64::MAX), CpuExit::Halted);
        assert_eq!(c.regs[0], 8);
        assert_eq!(c.regs[4], 0x7FFC);
        assert_eq!(b.read_u32(0x7FFC), 8);
        assert_eq!(c.eip, 0x4042);
        assert_eq!(c.icount(), 9);
        // call-mov-jmp-inc-ret, then jmp-push-hlt.
        assert!(c.code.built <= 2, "{} blocks built", c.code.built);
        let ops = &c.code.arena.ops;
        assert_eq!(ops.iter().filter(|o| o.kind == K::CallIn).count(), 1);
        assert_eq!(ops.iter().filter(|o| o.kind == K::JmpIn).count(), 2);

        // Stopped after every instruction count, EIP is the one after that instruction
        // (the budget cuts blocks after followed transfers too).
        let trace = [
            0x4001, 0x4020, 0x4025, 0x4010, 0x4011, 0x4006, 0x4040, 0x4041, 0x4042,
        ];
        for (k, &want) in trace.iter().enumerate() {
            let mut c = Cpu::new();
            c.code.follows = FOLLOWS;
            c.setup_flat32(0x4000);
            c.regs[4] = 0x8000;
            c.run(&mut b, k as u64 + 1);
            assert_eq!(c.eip, want, "after {} instructions", k + 1);
            if k == 1 {
                // The return address the followed CALL pushed.
                assert_eq!(b.read_u32(0x7FFC), 0x4006);
                assert_eq!(c.regs[4], 0x7FFC);
            }
        }
    }

    #[test]
    fn a_followed_call_that_wraps_eip_keeps_the_cs_limit() {
        // CS base 0x4800, EIP 0x10: NOP (the page's first instruction, interpreted) and a
        // CALL to 0x4400 (same page), to EIP 0xFFFFFC00.
        let mut b = TestBus::new(1 << 20).unwrap();
        let rel = 0xFFFF_FC00u32.wrapping_sub(0x16);
        let mut code = vec![0x90, 0xE8];
        code.extend_from_slice(&rel.to_le_bytes());
        b.load(0x4810, &code);
        b.load(0x4400, &[0x40, 0xF4]); // inc eax; hlt
        for (limit, halts) in [(0xFFFF_FFFF, true), (0xFFFF_F000, false)] {
            let mut c = Cpu::new();
            c.code.follows = FOLLOWS;
            c.setup_flat32(0x10);
            c.segs[sreg::CS] = crate::Seg::from_cache(0x08, 0x4800, limit, 0xC09B);
            c.regs[4] = 0x8000;
            let exit = c.run(&mut b, 10);
            assert_eq!(exit == CpuExit::Halted, halts, "limit {limit:#x}: {exit:?}");
            if halts {
                assert_eq!(c.eip, 0xFFFF_FC02);
                assert_eq!(c.regs[0], 1);
                assert_eq!(b.read_u32(0x7FFC), 0x16);
            } else {
                // #GP at the CALL (no IDT here: it ends in a triple fault); nothing past
                // the limit ran.
                assert_eq!(c.regs[0], 0);
            }
        }
    }

    #[test]
    fn simd_ops_in_blocks_match_the_interpreter() {
        let prog: &[&[u8]] = &[
            &[0x90],                                     // nop
            &[0xF3, 0x0F, 0x6F, 0x05, 0x00, 0x60, 0, 0], // movdqu xmm0, [0x6000]
            &[0x66, 0x0F, 0x6E, 0xC8],                   // movd xmm1, eax
            &[0x66, 0x0F, 0x70, 0xC9, 0x1B],             // pshufd xmm1, xmm1, 0x1B
            &[0x66, 0x0F, 0x60, 0xC1],                   // punpcklbw xmm0, xmm1
            &[0x66, 0x0F, 0x74, 0x4C, 0x8B, 0x10],       // pcmpeqb xmm1, [ebx+ecx*4+16]
            &[0x66, 0x0F, 0xD7, 0xD1],                   // pmovmskb edx, xmm1
            &[0x66, 0x0F, 0xEF, 0xD2],                   // pxor xmm2, xmm2
            &[0x66, 0x0F, 0x71, 0xD0, 0x03],             // psrlw xmm0, 3
            &[0x0F, 0xC6, 0xC0, 0x4E],                   // shufps xmm0, xmm0, 0x4E
            &[0x0F, 0x6F, 0x05, 0x08, 0x60, 0, 0],       // movq mm0, [0x6008]
            &[0x0F, 0xFC, 0xC0],                         // paddb mm0, mm0
            &[0x0F, 0x7E, 0xC6],                         // movd esi, mm0
            &[0x0F, 0xC2, 0xD0, 0x01],                   // cmpltps xmm2, xmm0
            &[0xF3, 0x0F, 0x7F, 0x05, 0x10, 0x60, 0, 0], // movdqu [0x6010], xmm0
            &[0x66, 0x0F, 0xC5, 0xF8, 0x03],             // pextrw edi, xmm0, 3
            &[0x67, 0x66, 0x0F, 0xDB, 0x07],             // pand xmm0, [bx]
            &[0xF3, 0x0F, 0x58, 0x05, 0x04, 0x60, 0, 0], // addss xmm0, [0x6004]
            &[0x66, 0x0F, 0xD6, 0x05, 0x20, 0x60, 0, 0], // movq [0x6020], xmm0
            &[0x0F, 0x77],                               // emms
            &[0x66, 0x0F, 0x7E, 0x15, 0x28, 0x60, 0, 0], // movd [0x6028], xmm2
            &[0x0F, 0xAE, 0x1D, 0x30, 0x60, 0, 0],       // stmxcsr [0x6030]
            &[0xF4],                                     // hlt
        ];
        let code: Vec<u8> = prog.concat();
        let mut seen = Vec::new();
        for blocks in [true, false] {
            let mut b = TestBus::new(1 << 20).unwrap();
            b.load(0x4000, &code);
            let data: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
            b.load(0x6000, &data);
            let mut c = Cpu::new();
            c.setup_flat32(0x4000);
            c.set_cr4(1 << 9);
            c.regs = [0x8123_45FE, 0, 0, 0x5FF0, 0x9000, 0, 0, 0];
            c.dbp_exec = !blocks;
            assert_eq!(c.run(&mut b, 100), CpuExit::Halted);
            let simd_ops = c
                .code
                .arena
                .ops
                .iter()
                .filter(|o| o.kind == K::Simd)
                .count();
            assert_eq!(simd_ops >= 19, blocks, "{simd_ops} SIMD block ops");
            let mut mem = vec![0; 64];
            b.read(0x6000, &mut mem);
            seen.push((c.regs, c.eip, c.icount, c.xmm, c.mxcsr, c.fpu.st(0), mem));
        }
        assert_eq!(seen[0], seen[1]);
    }

    #[test]
    fn simd_instructions_stay_inside_blocks() {
        let mut b = TestBus::new(1 << 20).unwrap();
        let code = [
            0x66, 0x0F, 0xEF, 0xC0, // pxor xmm0, xmm0
            0x66, 0x0F, 0x6E, 0xC8, // movd xmm1, eax
            0x66, 0x0F, 0x70, 0xD1, 0x00, // pshufd xmm2, xmm1, 0
            0x0F, 0x77, // emms
            0x66, 0x0F, 0x73, 0xD8, 0x04, // psrldq xmm0, 4
            0x66, 0x0F, 0x7E, 0xD3, // movd ebx, xmm2
            0xF3, 0x0F, 0x7E, 0x1D, 0x00, 0x60, 0x00, 0x00, // movq xmm3, [0x6000]
            0x66, 0x0F, 0xC5, 0xCB, 0x01, // pextrw ecx, xmm3, 1
            0x0F, 0xAE, 0xF8, // sfence
            0x0F, 0xC2, 0xD3, 0x00, // cmpeqps xmm2, xmm3
            0xF4, // hlt
        ];
        b.load(0x4000, &code);
        b.load(0x6000, &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        let mut c = Cpu::new();
        c.setup_flat32(0x4000);
        c.set_cr4(1 << 9);
        c.regs[0] = 0x1234_5678;
        assert_eq!(c.run(&mut b, u64::MAX), CpuExit::Halted);
        assert_eq!(c.regs[3], 0x1234_5678);
        assert_eq!(c.regs[1], 0x4433);
        assert_eq!(c.eip, 0x4000 + code.len() as u32);
        assert_eq!(c.icount(), 11);
        // Every instruction decoded to its length: one block.
        assert_eq!(c.code.built, 1);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut b = TestBus::new(16 << 20).unwrap();
        // `jmp $+2` over and over: every block follows `FOLLOWS` of them and ends at the
        // next.
        let code: Vec<u8> = [0xEB, 0x00].repeat(ARENA_OPS * 2 + 2000);
        b.load(0x10_0000, &code);
        let mut c = Cpu::new();
        c.code.follows = FOLLOWS;
        c.setup_flat32(0x10_0000);
        let n = ARENA_OPS as u64 * 2 + 1000;
        assert_eq!(c.run(&mut b, n), CpuExit::Limit);
        assert_eq!(c.eip, 0x10_0000 + 2 * n as u32);
        // Every block but the first of each page (a TLB miss: single-stepped) was built
        // (the arena of ARENA_OPS ops filled up twice over).
        let pages = 2 * n / 4096 + 1;
        let per_block = FOLLOWS as u64 + 1;
        assert!(
            (c.code.built + pages) * per_block >= n,
            "{} blocks built",
            c.code.built
        );
        assert!(c.code.arena.ops.len() <= ARENA_OPS);
        assert!(c.code.arena.ops.capacity() <= 2 * ARENA_OPS);
        assert_eq!(c.code.arena.links.len(), c.code.arena.ops.len());
        assert_eq!(c.code.table.len(), TABLE_SIZE);
    }

    /// Encodings (32-bit code) that the block handlers cover, with their special forms.
    fn encodings() -> Vec<Vec<u8>> {
        let m = [0x00, 0x60, 0, 0]; // [0x6000]
        let mut v: Vec<Vec<u8>> = Vec::new();
        for op in [0x00u8, 0x01, 0x02, 0x03, 0x04, 0x05] {
            for alu in 0..8u8 {
                let o = op | alu << 3;
                match op {
                    4 => v.push(vec![o, 0x85]),
                    5 => v.push(vec![o, 0x85, 0x96, 0xA7, 0xF8]),
                    _ => {
                        v.push(vec![o, 0xC8]);
                        v.push(vec![o, 0xE5]);
                        v.push(vec![0x66, o, 0xD3]);
                        v.push([&[o, 0x05][..], &m].concat());
                    }
                }
            }
        }
        for r in 0..8u8 {
            v.push(vec![0x83, 0xC1 | r << 3, 0x85]);
            v.push(vec![0x81, 0xC2 | r << 3, 0x01, 0x80, 0x00, 0xF0]);
            v.push([&[0x80, 0x05 | r << 3][..], &m, &[0x7F]].concat());
            v.push([&[0x66, 0x83, 0x05 | r << 3][..], &m, &[0xFE]].concat());
            for cnt in [0u8, 1, 5, 16, 31, 33] {
                v.push(vec![0xC1, 0xC0 | r << 3, cnt]);
                v.push(vec![0xC0, 0xC4 | r << 3, cnt]);
                v.push([&[0x66, 0xC1, 0x05 | r << 3][..], &m, &[cnt]].concat());
            }
            v.push(vec![0xD1, 0xC3 | r << 3]);
            v.push(vec![0xD3, 0xC6 | r << 3]);
        }
        for b in 0x40..0x50u8 {
            v.push(vec![b]);
            v.push(vec![0x66, b]);
        }
        for cc in 0..16u8 {
            v.push(vec![0x0F, 0x90 | cc, 0xC4]);
            v.push(vec![0x0F, 0x40 | cc, 0xC1]);
            v.push(vec![0x66, 0x0F, 0x40 | cc, 0xC1]);
            v.push(vec![0x70 | cc, 0x05]);
            v.push(vec![0x0F, 0x80 | cc, 0x05, 0, 0, 0]);
        }
        v.extend([
            [&[0xFE, 0x05][..], &m].concat(),
            [&[0xFF, 0x0D][..], &m].concat(),
            vec![0x0F, 0xB6, 0xC5],
            vec![0x0F, 0xBF, 0xC1],
            vec![0x66, 0x0F, 0xBE, 0xC1],
            [&[0x0F, 0xBE, 0x05][..], &m].concat(),
            vec![0x6B, 0xC1, 0x85],
            vec![0x69, 0xC1, 0x78, 0x56, 0x34, 0x92],
            vec![0x0F, 0xAF, 0xC1],
            vec![0x66, 0x0F, 0xAF, 0xC1],
            vec![0x87, 0xC1],
            vec![0x86, 0xE1],
            vec![0x93],
            vec![0x8D, 0x44, 0x8D, 0x10],
            vec![0x67, 0x8D, 0x40, 0x10],
            vec![0x66, 0x8D, 0x84, 0x88, 0x00, 0x01, 0x00, 0x00],
            [&[0xA1][..], &m].concat(),
            [&[0xA3][..], &m].concat(),
            [&[0xA2][..], &m].concat(),
            [&[0x89, 0x1D][..], &m].concat(),
            [&[0x8B, 0x1D][..], &m].concat(),
            [&[0xC7, 0x05][..], &m, &[1, 2, 3, 4]].concat(),
            vec![0x88, 0xE0],
            vec![0x8A, 0xE1],
            vec![0x89, 0xC8],
            vec![0x66, 0x8B, 0xC8],
            vec![0xB4, 0x12],
            vec![0x66, 0xBB, 0x34, 0x12],
            vec![0x85, 0xC1],
            vec![0x84, 0xE0],
            vec![0xA9, 0x00, 0x00, 0x00, 0x80],
            vec![0xF7, 0xC1, 0xFF, 0x00, 0x00, 0x00],
            vec![0xF6, 0xC4, 0x81],
            vec![0x98],
            vec![0x99],
            vec![0x66, 0x98],
            vec![0x66, 0x99],
            vec![0x50],
            vec![0x66, 0x53],
            vec![0x5B],
            vec![0x66, 0x5D],
            vec![0x6A, 0x85],
            vec![0x68, 1, 2, 3, 4],
            [&[0xFF, 0x35][..], &m].concat(),
            vec![0xC9],
            vec![0x90],
            vec![0xEB, 0x05],
            vec![0xE9, 0x05, 0, 0, 0],
            vec![0xE8, 0x05, 0, 0, 0],
        ]);
        v
    }

    /// Runs `code` + HLT once with blocks and once single-stepped by the interpreter (an
    /// armed instruction breakpoint keeps blocks off) and returns what each left behind.
    fn both_ways(code: &[u8], regs: [u32; 8], flags: u32) -> [(Vec<u32>, Vec<u8>); 2] {
        let mut out: [(Vec<u32>, Vec<u8>); 2] = Default::default();
        for (i, slot) in out.iter_mut().enumerate() {
            let mut b = TestBus::new(1 << 20).unwrap();
            // A NOP first: single-stepped, it fills the TLB entry of the code page so that
            // the instruction under test runs from a block.
            let mut prog = vec![0x90];
            prog.extend(code);
            prog.extend([0xF4; 8]);
            b.load(0x4000, &prog);
            b.load(0x6000, &[0x81, 0xFF, 0x7F, 0x80, 0x00, 0x01, 0xFE, 0x80]);
            b.load(0x4090, &[0x42, 0x13, 0x37, 0x99]);
            let mut c = Cpu::new();
            c.setup_flat32(0x4000);
            for (r, &val) in regs.iter().enumerate() {
                c.set_reg32(r, val);
            }
            c.set_reg32(4, 0x9000);
            c.set_reg32(5, 0x8F00);
            c.set_eflags(flags);
            if i == 1 {
                c.dbp_exec = true;
            }
            assert_eq!(c.run(&mut b, 1), CpuExit::Limit);
            let built = c.code.built;
            let exit = c.run(&mut b, 2);
            assert_eq!(c.code.built, built + 1 - i as u64, "{code:02X?}");
            let mut st: Vec<u32> = c.regs.to_vec();
            st.extend([c.eip, c.get_eflags(), c.icount as u32, exit as u32]);
            let mut mem = vec![0; 16];
            b.read(0x6000, &mut mem);
            let mut stack = vec![0; 32];
            b.read(0x9000 - 16, &mut stack);
            mem.extend(stack);
            *slot = (st, mem);
        }
        out
    }

    /// What a run left behind: registers, EIP, icount, how `run` ended, and the stack and
    /// code memory.
    type Trace = (Vec<u32>, Vec<u8>);

    /// Loads `code` at 0x4001 (after a NOP that the interpreter runs first, which fills the
    /// code page's TLB entry) and HLTs after it, sets ESP to `esp` and the other registers to
    /// `regs`, applies `tweak`, then runs to instruction count `limit` once with blocks and
    /// once single-stepped by the interpreter. Returns both traces and how many ops of
    /// several instructions the blocks held.
    fn two_ways(
        code: &[u8],
        regs: [u32; 8],
        esp: u32,
        limit: u64,
        tweak: impl Fn(&mut Cpu),
    ) -> ([Trace; 2], usize) {
        let mut out: [Trace; 2] = Default::default();
        let mut runs = 0;
        for (i, slot) in out.iter_mut().enumerate() {
            let mut b = TestBus::new(1 << 20).unwrap();
            b.load(0x3F00, &[0xF4; 0x200]);
            let mut prog = vec![0x90];
            prog.extend(code);
            b.load(0x4000, &prog);
            let mut c = Cpu::new();
            c.setup_flat32(0x4000);
            for (r, &v) in regs.iter().enumerate() {
                c.set_reg32(r, v);
            }
            c.set_reg32(4, esp);
            tweak(&mut c);
            c.dbp_exec = i == 1;
            let exit = if limit > 1 {
                assert_eq!(c.run(&mut b, 1), CpuExit::Limit);
                c.run(&mut b, limit)
            } else {
                c.run(&mut b, limit)
            };
            runs += c.code.arena.ops.iter().filter(|o| o.cnt > 1).count();
            let mut st = c.regs.to_vec();
            st.extend([c.eip, c.icount as u32, exit as u32]);
            let mut mem = vec![0; 0x100];
            b.read(0x3F80, &mut mem);
            let mut stack = vec![0; 0x40];
            b.read(esp.wrapping_sub(0x20) & 0xF_FFFF, &mut stack);
            mem.extend(stack);
            *slot = (st, mem);
        }
        (out, runs)
    }

    #[test]
    fn push_and_pop_runs_match_the_interpreter() {
        // push eax, ecx, edx, ebx, esp, ebp, esi, edi (a run of 8), push eax (a second run);
        // pop edi, esi, ebp; pop esp; pop ebx, edx; mov eax, ebx (ends the run); pop ecx
        let code = [
            0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x50, 0x5F, 0x5E, 0x5D, 0x5C, 0x5B,
            0x5A, 0x89, 0xD8, 0x59,
        ];
        let regs = [
            0x1111_1111,
            0x2222_2222,
            0x3333_3333,
            0x4444_4444,
            0,
            0x6666_6666,
            0x7777_7777,
            0x8888_8888,
        ];
        // The NOP in front and the 17 instructions.
        let total = 18;
        let mut runs = 0;
        // Every budget: those that end inside a run leave its instructions to the next
        // block or to the interpreter.
        for limit in 1..=total + 2 {
            let ([blk, int], n) = two_ways(&code, regs, 0x9000, limit, |_| {});
            assert_eq!(blk, int, "limit {limit}");
            runs += n;
        }
        assert!(runs > 0, "no run was merged");
        // 16-bit stack: the same ops go through the general push and pop.
        let ([blk, int], _) = two_ways(&code, regs, 0x9000, total + 2, |c| {
            c.segs[sreg::SS] = crate::Seg::from_cache(0x10, 0, 0xFFFF, 0x0093);
        });
        assert_eq!(blk, int);
    }

    #[test]
    fn a_push_or_pop_run_that_faults_midway_retires_the_instructions_before() {
        // An SS limit of 64 KiB: the third push wraps ESP below 0, the third pop reads past
        // the limit. No IDT: the #SS becomes a triple fault that leaves the state as it was
        // at the fault.
        let ss = |c: &mut Cpu| c.segs[sreg::SS] = crate::Seg::from_cache(0x10, 0, 0xFFFF, 0x4093);
        let pushes = [0x50, 0x51, 0x52, 0x53];
        let ([blk, int], runs) = two_ways(&pushes, [1, 2, 3, 4, 0, 6, 7, 8], 8, 100, ss);
        assert_eq!(blk, int);
        assert!(runs > 0);
        assert_eq!(blk.0[4], 0, "ESP after two pushes");
        assert_eq!(blk.0[8], 0x4003, "EIP of the third push");
        let pops = [0x58, 0x59, 0x5A, 0x5B];
        let ([blk, int], runs) = two_ways(&pops, [1, 2, 3, 4, 0, 6, 7, 8], 0xFFF8, 100, ss);
        assert_eq!(blk, int);
        assert!(runs > 0);
        assert_eq!(blk.0[4], 0x1_0000, "ESP after two pops");
        assert_eq!(blk.0[8], 0x4003, "EIP of the third pop");
    }

    #[test]
    fn a_push_run_that_writes_its_own_code_stops_there() {
        // The stack runs into the code: the first push (EAX, four INC ECX) overwrites the HLT
        // after the run and the second (ECX, four NOPs) the run's own last pushes, which must
        // not run as they were decoded.
        let code = [0x50, 0x51, 0x52, 0x53, 0x55, 0x56, 0x57, 0x50];
        let regs = [0x4141_4141, 0x9090_9090, 0x9090_9090, 3, 0, 5, 6, 7];
        let ([blk, int], runs) = two_ways(&code, regs, 0x400D, 200, |_| {});
        assert_eq!(blk, int);
        assert!(runs > 0);
    }

    #[test]
    fn fused_branches_match_the_interpreter() {
        let firsts: [&[u8]; 16] = [
            &[0x39, 0xD8],          // cmp eax, ebx
            &[0x38, 0xD8],          // cmp al, bl
            &[0x66, 0x39, 0xD8],    // cmp ax, bx
            &[0x29, 0xD8],          // sub eax, ebx
            &[0x83, 0xF8, 0x80],    // cmp eax, -128
            &[0x3C, 0x7F],          // cmp al, 0x7F
            &[0x85, 0xD8],          // test eax, ebx
            &[0x84, 0xC0],          // test al, al
            &[0x21, 0xD8],          // and eax, ebx
            &[0x09, 0xD8],          // or eax, ebx
            &[0x31, 0xD8],          // xor eax, ebx
            &[0xA9, 0, 0x80, 0, 0], // test eax, 0x8000
            &[0x48],                // dec eax
            &[0x40],                // inc eax
            &[0x66, 0x48],          // dec ax
            &[0xFE, 0xC0],          // inc al
        ];
        let values = [
            0u32,
            1,
            2,
            0x7F,
            0x80,
            0xFF,
            0x7FFF,
            0x8000,
            0xFFFF,
            0x7FFF_FFFF,
            0x8000_0000,
            0xFFFF_FFFF,
            0x1234_5678,
            0x8765_4321,
        ];
        let (mut fused, mut merged) = (0, 0);
        for first in firsts {
            for cc in 0..16u8 {
                for &a in &values {
                    for &b in &values[..6] {
                        // first; jcc +1; inc ecx; hlt
                        let mut code = first.to_vec();
                        code.extend([0x70 | cc, 0x01, 0x41]);
                        let mut out = Vec::new();
                        for interp in [false, true] {
                            let mut bus = TestBus::new(1 << 20).unwrap();
                            let mut prog = vec![0x90];
                            prog.extend(&code);
                            prog.extend([0xF4; 8]);
                            bus.load(0x4000, &prog);
                            let mut c = Cpu::new();
                            c.setup_flat32(0x4000);
                            c.set_reg32(0, a);
                            c.set_reg32(3, b.rotate_right(cc as u32));
                            c.set_eflags(crate::flags::CF);
                            c.dbp_exec = interp;
                            assert_eq!(c.run(&mut bus, u64::MAX), CpuExit::Halted);
                            let ops = &c.code.arena.ops;
                            fused += ops.iter().filter(|o| o.kind == K::JccFused).count();
                            merged += ops.iter().filter(|o| o.cnt == 2).count();
                            out.push((c.regs, c.eip, c.get_eflags(), c.icount));
                        }
                        assert_eq!(out[0], out[1], "{code:02X?} eax {a:08X} ebx {b:08X}");
                    }
                }
            }
        }
        assert!(fused > 0, "no branch was fused");
        assert!(merged > 0, "no branch was merged into its ALU op");
    }

    #[test]
    fn a_merged_branch_that_faults_retires_its_alu_instruction() {
        // cmp eax, eax; je +0x7F: the target lies past a CS limit of 0x4040 (#GP at the je,
        // after the cmp retired; no IDT: a triple fault that leaves the state at the fault).
        let code = [0x39, 0xC0, 0x74, 0x7F];
        let cs = |c: &mut Cpu| {
            c.segs[sreg::CS] = crate::Seg::from_cache(0x08, 0, 0x4040, 0x409B);
        };
        let ([blk, int], merged) = two_ways(&code, [0; 8], 0x9000, 100, cs);
        assert_eq!(blk, int);
        assert!(merged > 0);
        assert_eq!(blk.0[8], 0x4003, "EIP of the je");
        assert_eq!(blk.0[10], CpuExit::TripleFault as u32);
    }

    #[test]
    fn a_merged_branch_after_a_write_to_it_runs_as_written() {
        // sub byte [0x4009], 5 turns the jnz +7 after it into jnz +2: the branch must run as
        // written, to the INC EDX at 0x400C (+7 leads to the INC EBX at 0x4011).
        let code = [
            0x80, 0x2D, 0x09, 0x40, 0, 0, 0x05, 0x75, 0x07, 0x41, 0x41, 0x42, 0xF4, 0xF4, 0xF4,
            0xF4, 0x43, 0xF4,
        ];
        let ([blk, int], merged) = two_ways(&code, [0; 8], 0x9000, 100, |_| {});
        assert_eq!(blk, int);
        assert!(merged > 0);
        assert_eq!((blk.0[2], blk.0[3]), (1, 0), "EDX, EBX");
    }

    #[test]
    fn block_handlers_match_the_interpreter() {
        let mut seed = 0x1234_5678_9ABC_DEF1u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u32
        };
        let encs = encodings();
        for e in &encs {
            for k in 0..24 {
                let mut regs = [0u32; 8];
                for r in regs.iter_mut() {
                    *r = match k % 4 {
                        0 => rnd(),
                        1 => rnd() & 0xFF,
                        2 => rnd() | 0x8000_0000,
                        _ => rnd() & 0x8000_80FF,
                    };
                }
                let flags = rnd() & (crate::flags::ARITH | crate::flags::DF);
                let [blk, int] = both_ways(e, regs, flags);
                assert_eq!(blk, int, "{e:02X?} regs {regs:08X?} flags {flags:03X}");
            }
        }
    }

    /// Runs the first instruction of `code` (32-bit code at 0x4000), decoded and specialised
    /// as in a block, through the `match` or the function table.
    fn one_op(code: &[u8], regs: [u32; 8], flags: u32, table: bool) -> (Vec<u32>, Vec<u8>) {
        let mut b = TestBus::new(1 << 20).unwrap();
        b.load(0x4000, code);
        b.load(0x6000, &[0x81, 0xFF, 0x7F, 0x80, 0x00, 0x01, 0xFE, 0x80]);
        let mut c = Cpu::new();
        c.setup_flat32(0x4000);
        for (r, &val) in regs.iter().enumerate() {
            c.set_reg32(r, val);
        }
        c.set_reg32(4, 0x9000);
        c.set_reg32(5, 0x8F00);
        c.set_eflags(flags);
        let mut o = decode(code, true).expect("decodes");
        specialize(&mut o);
        let r = if table {
            Table::<TestBus>::TABLE[o.kind as usize](&mut c, &mut b, &o, 0x4000)
        } else {
            dispatch_match(&mut c, &mut b, &o, 0x4000)
        };
        let mut st: Vec<u32> = c.regs.to_vec();
        st.extend([c.eip, c.get_eflags(), r.is_ok() as u32, o.kind as u32]);
        let mut mem = vec![0; 16];
        b.read(0x6000, &mut mem);
        let mut stack = vec![0; 32];
        b.read(0x9000 - 16, &mut stack);
        mem.extend(stack);
        (st, mem)
    }

    #[test]
    fn the_function_table_runs_ops_as_the_match_does() {
        let mut kinds = std::collections::BTreeSet::new();
        for (i, e) in encodings().iter().enumerate() {
            let regs = [
                0x8000_00F1,
                0x6000 + i as u32,
                0x7F,
                0xFFFF_FFFF,
                0,
                0,
                0x10,
                0x1234_5678,
            ];
            let m = one_op(e, regs, crate::flags::CF, false);
            let t = one_op(e, regs, crate::flags::CF, true);
            assert_eq!(m, t, "{e:02X?}");
            kinds.insert(m.0[11]);
        }
        assert!(kinds.len() >= 20, "only {} kinds covered", kinds.len());
    }
}
