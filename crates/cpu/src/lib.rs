//! The wasm86 x86 CPU: an interpreter of a 32-bit P6-class processor (family 6, model 7).
//!
//! The CPU holds no global state: everything lives in [`Cpu`], and the board is reached
//! through the [`Bus`] trait (port I/O, MMIO, interrupt line, time stamp counter). Guest
//! memory is [`wasm86_memory::Memory`]: plain RAM/ROM accesses go through a direct-mapped
//! TLB straight to the memory store; everything else (code pages, dirty-logged pages, ROM,
//! MMIO) takes the slow path. Faults are `Result<_, Fault>` and become x86 exceptions.
//!
//! Module map: `flags` (EFLAGS, lazy arithmetic flags), `mmu` (TLB, paging, linear and
//! physical access), `seg` (descriptors, segment loads, far transfers, interrupt delivery,
//! task switches), `exec` (run loop, decoder and instruction semantics), `state` (register
//! view, migration state), [`fpu`] (x87), [`testbus`] (a flat test board).
//!
//! Execution model: a decoded-block cache in front of the interpreter (`block`). A block is
//! a straight run of pre-decoded ops inside one 4 KiB page, keyed by the store offset of its
//! first byte and CS.D; it ends at a branch, at the page end, or after an instruction that
//! may change the mode, CS, segments, IF, control registers or do I/O. Common instructions
//! have their own handlers; the rest run through the interpreter's `step` (decode-and-execute
//! with a 16-byte prefetch through the TLB), which also runs whenever no block applies (TLB
//! miss on the code page, TF/RF/instruction breakpoints, interrupt shadow, code outside RAM or
//! ROM). Blocks chain without returning to the run loop while nothing it checks can have
//! changed. A page that holds blocks is marked with `Memory::mark_code`, so it never gets a
//! fast write TLB entry: every write to it takes the one write path, which records an
//! invalidation; invalidations are drained before each block lookup and after slow-path
//! writes, and a write to the running block's page ends the block after that instruction
//! (self-modifying code, also through alias mappings). Instruction counting is exact (a block
//! stops at the limit; REP string iterations count one each); a fault restores the EIP of
//! its own instruction. Forward REP MOVS/STOS run in page-sized chunks straight on the store
//! when both pages have fast TLB entries.

#![deny(missing_docs)]
// Host differential tests inside the crate run instructions natively (`asm!`): only they
// may allow unsafe code.
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]

mod block;
mod exec;
pub mod flags;
pub mod fpu;
mod mmu;
mod seg;
mod simd;
mod state;
pub mod testbus;

pub use state::{CpuState, CpuStateError, Registers, SegmentView, TableView};

use flags::Lazy;
use fpu as fpu_impl;

/// What the CPU sees of the board. The machine implements it; every call is meant to be
/// inlined.
pub trait Bus {
    /// Guest physical memory (RAM/ROM store, A20, PAM, page flags).
    fn memory(&mut self) -> &mut wasm86_memory::Memory;
    /// Port input of `size` 1, 2 or 4 bytes; `icount` = instructions retired before this one.
    fn io_read(&mut self, port: u16, size: u8, icount: u64) -> u32;
    /// Port output.
    fn io_write(&mut self, port: u16, size: u8, value: u32, icount: u64);
    /// Read of a physical address that `Memory::classify` calls `Target::Mmio` (size 1/2/4).
    fn mmio_read(&mut self, addr: u32, size: u8, icount: u64) -> u32;
    /// Write to such an address.
    fn mmio_write(&mut self, addr: u32, size: u8, value: u32, icount: u64);
    /// Level of the INTR line (the PIC has an unmasked request).
    fn intr_pending(&mut self) -> bool;
    /// INTA cycle: the vector to deliver (None if the request went away).
    fn intr_ack(&mut self) -> Option<u8>;
    /// Value of the time-stamp counter at instruction count `icount`.
    fn rdtsc(&mut self, icount: u64) -> u64;
    /// Whether the machine wants `run` to return now. Polled after every I/O or MMIO
    /// instruction.
    fn exit_requested(&mut self) -> bool;
    /// The FERR# output changed (PC-style x87 error reporting with CR0.NE = 0). `true`: a
    /// waiting x87 or MMX instruction found an unmasked exception pending (the PC routes
    /// this to IRQ13); `false`: the FPU's ES bit went back to 0 (FNCLEX, FNINIT, FNSAVE,
    /// FRSTOR/FLDENV/FXRSTOR of a clean status, FLDCW masking the exception). Called only on
    /// changes.
    fn ferr(&mut self, level: bool);
}

/// Why [`Cpu::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuExit {
    /// The instruction limit was reached.
    Limit,
    /// The CPU executed HLT and has nothing to deliver.
    Halted,
    /// A fault while delivering a double fault: the machine must reset.
    TripleFault,
    /// `Bus::exit_requested` returned true after an I/O or MMIO instruction.
    ExitRequested,
}

/// An x86 exception raised by an instruction: vector and optional error code. Four bytes,
/// so that `Result<u32, Fault>` travels in a register (every error code fits in 16 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    pub vector: u8,
    has_code: bool,
    code16: u16,
}

impl Fault {
    #[inline(always)]
    pub(crate) const fn new(vector: u8, code: Option<u32>) -> Fault {
        match code {
            Some(c) => Fault {
                vector,
                has_code: true,
                code16: c as u16,
            },
            None => Fault {
                vector,
                has_code: false,
                code16: 0,
            },
        }
    }

    /// The error code, if the exception pushes one.
    pub(crate) fn code(&self) -> Option<u32> {
        self.has_code.then_some(self.code16 as u32)
    }
}

/// Exception vectors.
pub(crate) mod vec {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
}

pub(crate) type Res<T> = Result<T, Fault>;

#[inline]
pub(crate) fn gp<T>(code: u32) -> Res<T> {
    Err(Fault::new(vec::GP, Some(code)))
}
#[inline]
pub(crate) fn ud<T>() -> Res<T> {
    Err(Fault::new(vec::UD, None))
}
#[inline]
pub(crate) fn fault<T>(vector: u8, code: Option<u32>) -> Res<T> {
    Err(Fault::new(vector, code))
}

/// Segment register indices in x86 order.
pub mod sreg {
    /// ES.
    pub const ES: usize = 0;
    /// CS.
    pub const CS: usize = 1;
    /// SS.
    pub const SS: usize = 2;
    /// DS.
    pub const DS: usize = 3;
    /// FS.
    pub const FS: usize = 4;
    /// GS.
    pub const GS: usize = 5;
}

/// A segment register with its hidden descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Seg {
    pub base: u32,
    pub limit: u32,
    pub sel: u16,
    /// Descriptor access byte (P, DPL, S, type) in bits 0-7, flags nibble (AVL, L, D/B, G)
    /// in bits 12-15 (as in the descriptor's high word).
    pub attr: u16,
    /// Reads allowed (present, not null, readable).
    pub rd: bool,
    /// Writes allowed.
    pub wr: bool,
    /// Expand-down data segment.
    pub down: bool,
    /// D/B bit.
    pub big: bool,
    /// Reads of `n` bytes at `off` are in the limit and allowed when `off + n <= rlim`
    /// (expand-up readable segments: limit + 1; 0 sends every read to the full check).
    pub rlim: u64,
    /// The same for writes.
    pub wlim: u64,
}

impl Seg {
    pub(crate) fn from_cache(sel: u16, base: u32, limit: u32, attr: u16) -> Seg {
        let mut s = Seg {
            sel,
            base,
            limit,
            attr,
            ..Default::default()
        };
        s.derive();
        s
    }

    /// Recomputes the derived permission bits from `attr`.
    pub(crate) fn derive(&mut self) {
        let a = self.attr;
        let present = a & 0x80 != 0;
        let code_data = a & 0x10 != 0;
        let code = a & 0x08 != 0;
        let rw = a & 0x02 != 0;
        self.rd = present && code_data && (!code || rw);
        self.wr = present && code_data && !code && rw;
        self.down = code_data && !code && a & 0x04 != 0;
        self.big = a & 0x4000 != 0;
        let end = self.limit as u64 + 1;
        self.rlim = if self.rd && !self.down { end } else { 0 };
        self.wlim = if self.wr && !self.down { end } else { 0 };
    }

    pub(crate) fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
}

/// A descriptor-table register (GDTR, IDTR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Dtr {
    pub base: u32,
    pub limit: u32,
}

/// One TLB entry for a 4 KiB linear page. Tags hold the page-aligned linear address when
/// the access kind may take the fast path, [`mmu::NO_TAG`] otherwise.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlbEntry {
    pub rtag: u32,
    pub wtag: u32,
    pub global: bool,
    /// Store offset of the page.
    pub off: u32,
}

/// The CPU.
#[repr(C)]
pub struct Cpu {
    /// General registers in x86 order: EAX ECX EDX EBX ESP EBP ESI EDI.
    pub(crate) regs: [u32; 8],
    pub(crate) eip: u32,
    /// EFLAGS bits that are not lazy (see `lf.mask`).
    pub(crate) eflags: u32,
    pub(crate) lf: Lazy,
    pub(crate) segs: [Seg; 6],
    pub(crate) ldtr: Seg,
    pub(crate) tr: Seg,
    pub(crate) gdtr: Dtr,
    pub(crate) idtr: Dtr,
    pub(crate) cr0: u32,
    pub(crate) cr2: u32,
    pub(crate) cr3: u32,
    pub(crate) cr4: u32,
    pub(crate) dr: [u32; 8],
    pub(crate) cpl: u8,
    pub(crate) halted: bool,
    pub(crate) nmi_pending: bool,
    pub(crate) nmi_blocked: bool,
    /// Interrupts are inhibited for one instruction (after MOV SS/POP SS/STI).
    pub(crate) shadow: bool,
    pub(crate) icount: u64,
    pub(crate) tsc_offset: u64,
    pub(crate) sysenter_cs: u32,
    pub(crate) sysenter_esp: u32,
    pub(crate) sysenter_eip: u32,
    pub(crate) msr_bios_sign: u64,
    pub(crate) msr_debugctl: u64,
    /// EIP of the instruction being executed (faults restore it).
    pub(crate) start_eip: u32,
    /// Instruction bytes prefetched at the start of the instruction (fast fetch path).
    pub(crate) ibuf: [u8; 16],
    /// Next byte of `ibuf` to consume.
    pub(crate) ipos: u8,
    /// Valid bytes in `ibuf` (0: fetch through the slow path).
    pub(crate) iavail: u8,
    /// A data breakpoint is armed in DR7: the TLB stays empty so every data access takes
    /// the checked slow path.
    pub(crate) dbp_data: bool,
    /// An instruction breakpoint is armed in DR7.
    pub(crate) dbp_exec: bool,
    /// Data breakpoints hit by the current instruction (DR6 B0-B3 bits).
    pub(crate) db_hit: u8,
    /// The current instruction loaded RF (IRET): do not clear it afterwards.
    pub(crate) rf_keep: bool,
    /// Set by I/O or MMIO: the run loop checks the memory generation and exit request.
    pub(crate) io_done: bool,
    /// The `limit` of the current `run` call (REP chunks stop there).
    pub(crate) run_limit: u64,
    /// Memory generation the TLB was filled under.
    pub(crate) mem_gen: u64,
    /// Index offset of the TLB half in use by ordinary accesses (0 supervisor, TLB_SIZE user).
    pub(crate) tlb_user: usize,
    pub(crate) tlb: Box<[TlbEntry]>,
    /// One bit per 4 MiB region that has TLB entries from a large page.
    pub(crate) large_regions: [u32; 32],
    pub(crate) fpu: fpu_impl::Fpu,
    /// XMM0-XMM7 (bit 0 of each value is bit 0 of the register).
    pub(crate) xmm: [u128; 8],
    /// MXCSR.
    pub(crate) mxcsr: u32,
    /// Decoded blocks.
    pub(crate) code: block::CodeCache,
    /// FERR# level as last reported to the bus.
    pub(crate) ferr: bool,
    /// FERR# was asserted where the bus was out of reach (MMX instructions): the run loop
    /// reports it after the instruction (set together with `io_done`).
    pub(crate) ferr_notify: bool,
    /// Event delivery in progress: its stack accesses never raise #AC.
    pub(crate) no_ac: bool,
}

impl std::fmt::Debug for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpu")
            .field("regs", &self.regs)
            .field("eip", &self.eip)
            .field("cs", &self.segs[sreg::CS].sel)
            .field("icount", &self.icount)
            .finish_non_exhaustive()
    }
}

impl Cpu {
    /// A CPU in its power-on reset state.
    pub fn new() -> Cpu {
        let mut c = Cpu {
            regs: [0; 8],
            eip: 0,
            eflags: 2,
            lf: Lazy::default(),
            segs: [Seg::default(); 6],
            ldtr: Seg::default(),
            tr: Seg::default(),
            gdtr: Dtr::default(),
            idtr: Dtr::default(),
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            dr: [0; 8],
            cpl: 0,
            halted: false,
            nmi_pending: false,
            nmi_blocked: false,
            shadow: false,
            icount: 0,
            tsc_offset: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            msr_bios_sign: 0,
            msr_debugctl: 0,
            start_eip: 0,
            ibuf: [0; 16],
            ipos: 0,
            iavail: 0,
            dbp_data: false,
            dbp_exec: false,
            db_hit: 0,
            rf_keep: false,
            io_done: false,
            run_limit: 0,
            mem_gen: u64::MAX,
            tlb_user: 0,
            tlb: vec![
                TlbEntry {
                    rtag: mmu::NO_TAG,
                    wtag: mmu::NO_TAG,
                    global: false,
                    off: 0
                };
                2 * mmu::TLB_SIZE
            ]
            .into_boxed_slice(),
            large_regions: [0; 32],
            fpu: fpu_impl::Fpu::new(),
            xmm: [0; 8],
            mxcsr: simd::MXCSR_RESET,
            code: block::CodeCache::new(),
            ferr: false,
            ferr_notify: false,
            no_ac: false,
        };
        c.reset();
        c
    }

    /// Power-on/RESET: F000:FFF0 with CS base 0xFFFF0000, EDX = CPU signature.
    pub fn reset(&mut self) {
        self.regs = [0; 8];
        self.regs[2] = CPUID_SIGNATURE;
        self.eip = 0xFFF0;
        self.eflags = 2;
        self.lf = Lazy::default();
        let data = Seg::from_cache(0, 0, 0xFFFF, 0x93);
        self.segs = [data; 6];
        self.segs[sreg::CS] = Seg::from_cache(0xF000, 0xFFFF_0000, 0xFFFF, 0x9B);
        self.ldtr = Seg::from_cache(0, 0, 0xFFFF, 0x82);
        self.tr = Seg::from_cache(0, 0, 0xFFFF, 0x8B);
        self.gdtr = Dtr {
            base: 0,
            limit: 0xFFFF,
        };
        self.idtr = Dtr {
            base: 0,
            limit: 0xFFFF,
        };
        self.cr0 = 0x6000_0010;
        self.cr2 = 0;
        self.cr3 = 0;
        self.cr4 = 0;
        self.dr = [0, 0, 0, 0, 0, 0, 0xFFFF_0FF0, 0x400];
        self.update_breakpoints();
        self.cpl = 0;
        self.halted = false;
        self.nmi_pending = false;
        self.nmi_blocked = false;
        self.shadow = false;
        self.tsc_offset = 0;
        self.sysenter_cs = 0;
        self.sysenter_esp = 0;
        self.sysenter_eip = 0;
        self.msr_bios_sign = 0;
        self.msr_debugctl = 0;
        self.fpu.reset();
        // The board drops its FERR#/IGNNE# latch on its own reset.
        self.ferr = false;
        self.ferr_notify = false;
        self.xmm = [0; 8];
        self.mxcsr = simd::MXCSR_RESET;
        self.tlb_user = 0;
        self.flush_tlb_all();
        self.flush_code_cache();
    }

    /// Instructions retired since creation. A delivered exception also counts as one (so
    /// that a guest stuck in a fault loop still advances time and `run` returns).
    pub fn icount(&self) -> u64 {
        self.icount
    }

    /// Sets the retired-instruction count (machine bookkeeping).
    pub fn set_icount(&mut self, n: u64) {
        self.icount = n;
    }

    /// Whether the CPU is halted (HLT, waiting for an interrupt).
    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// Requests an NMI, delivered at the next instruction boundary.
    pub fn raise_nmi(&mut self) {
        self.nmi_pending = true;
    }

    /// Test/loader helper: flat 32-bit protected mode at CPL0, paging off, all segments base
    /// 0 and limit 4 GiB, 32-bit code, execution at `eip`.
    pub fn setup_flat32(&mut self, eip: u32) {
        self.cr0 |= 1;
        self.cr0 &= !0x8000_0000;
        let data = Seg::from_cache(0x10, 0, 0xFFFF_FFFF, 0xC093);
        self.segs = [data; 6];
        self.segs[sreg::CS] = Seg::from_cache(0x08, 0, 0xFFFF_FFFF, 0xC09B);
        self.cpl = 0;
        self.tlb_user = 0;
        self.eip = eip;
        self.halted = false;
        self.flush_tlb_all();
    }

    /// Sets general register `index` (x86 order: EAX ECX EDX EBX ESP EBP ESI EDI).
    /// Out-of-range indices are ignored.
    pub fn set_reg32(&mut self, index: usize, v: u32) {
        if let Some(r) = self.regs.get_mut(index) {
            *r = v;
        }
    }

    /// General register `index` (0 for out-of-range indices).
    pub fn reg32(&self, index: usize) -> u32 {
        self.regs.get(index).copied().unwrap_or(0)
    }

    /// Sets EIP (and wakes a halted CPU: execution continues there).
    pub fn set_eip(&mut self, eip: u32) {
        self.eip = eip;
        self.halted = false;
    }

    /// EIP.
    pub fn eip(&self) -> u32 {
        self.eip
    }

    /// Sets EFLAGS (reserved bits are forced to their fixed values).
    pub fn set_eflags(&mut self, v: u32) {
        self.eflags = (v & flags::WRITABLE) | 2;
        self.lf.mask = 0;
    }

    /// EFLAGS with the lazy flags computed.
    pub fn eflags(&self) -> u32 {
        self.get_eflags()
    }

    /// Loads segment register `index` (ES CS SS DS FS GS) real-mode style: selector `sel`,
    /// base `sel * 16`; the cached limit and attributes stay. Out-of-range indices are ignored.
    pub fn set_segment_real(&mut self, index: usize, sel: u16) {
        if let Some(s) = self.segs.get_mut(index) {
            s.sel = sel;
            s.base = (sel as u32) << 4;
        }
    }

    /// Sets CR0 directly (loaders and tests; the TLB is flushed).
    pub fn set_cr0(&mut self, v: u32) {
        self.cr0 = v | 0x10;
        self.flush_tlb_all();
    }

    /// Sets CR3 directly (the TLB is flushed).
    pub fn set_cr3(&mut self, v: u32) {
        self.cr3 = v;
        self.flush_tlb_all();
    }

    /// Sets CR4 directly (the TLB is flushed).
    pub fn set_cr4(&mut self, v: u32) {
        self.cr4 = v;
        self.flush_tlb_all();
    }

    /// Sets the GDTR.
    pub fn set_gdtr(&mut self, base: u32, limit: u16) {
        self.gdtr = Dtr {
            base,
            limit: limit as u32,
        };
    }

    /// Sets the IDTR.
    pub fn set_idtr(&mut self, base: u32, limit: u16) {
        self.idtr = Dtr {
            base,
            limit: limit as u32,
        };
    }

    /// Full EFLAGS value.
    #[inline]
    pub(crate) fn get_eflags(&self) -> u32 {
        let m = self.lf.mask;
        (self.eflags & !m) | self.lf.compute(m) | 2
    }

    /// Sets the stored EFLAGS and drops lazy state.
    #[inline]
    pub(crate) fn put_eflags(&mut self, v: u32) {
        self.eflags = v | 2;
        self.lf.mask = 0;
    }

    /// True in protected mode (PE=1), including virtual-8086 mode.
    #[inline]
    pub(crate) fn pe(&self) -> bool {
        self.cr0 & 1 != 0
    }

    /// True in virtual-8086 mode.
    #[inline]
    pub(crate) fn v86(&self) -> bool {
        self.eflags & flags::VM != 0
    }

    /// Protected mode, not V86.
    #[inline]
    pub(crate) fn pm(&self) -> bool {
        self.pe() && !self.v86()
    }

    /// Recomputes the armed-breakpoint flags from DR7 (after MOV DR7 or a restore).
    pub(crate) fn update_breakpoints(&mut self) {
        let dr7 = self.dr[7];
        let (mut data, mut exec) = (false, false);
        for i in 0..4 {
            if (dr7 >> (2 * i)) & 3 != 0 {
                match (dr7 >> (16 + 4 * i)) & 3 {
                    0 => exec = true,
                    1 | 3 => data = true,
                    _ => {}
                }
            }
        }
        if data != self.dbp_data {
            self.flush_tlb_all();
        }
        self.dbp_data = data;
        self.dbp_exec = exec;
    }

    /// Records data breakpoints matched by an access of `n` bytes at `lin`.
    pub(crate) fn check_data_breakpoints(&mut self, lin: u32, n: u32, write: bool) {
        let dr7 = self.dr[7];
        for i in 0..4 {
            if (dr7 >> (2 * i)) & 3 == 0 {
                continue;
            }
            let rw = (dr7 >> (16 + 4 * i)) & 3;
            if !(rw == 3 || rw == 1 && write) {
                continue;
            }
            let len = match (dr7 >> (18 + 4 * i)) & 3 {
                0 => 1u64,
                1 => 2,
                _ => 4,
            };
            let start = (self.dr[i] as u64) & !(len - 1);
            let a = lin as u64;
            if a < start + len && start < a + n as u64 {
                self.db_hit |= 1 << i;
            }
        }
    }

    pub(crate) fn set_cpl(&mut self, cpl: u8) {
        self.cpl = cpl;
        self.tlb_user = if cpl == 3 { mmu::TLB_SIZE } else { 0 };
    }
}

/// EDX after reset and CPUID.1 EAX: family 6, model 7, stepping 3.
pub const CPUID_SIGNATURE: u32 = 0x0000_0673;
