//! The read-only register view for monitors and the serialisable CPU state for migration.

use crate::fpu_impl::FpuState;
use crate::{Cpu, Dtr, Seg};
use serde::{Deserialize, Serialize};

/// A segment register as shown to monitors and saved in the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentView {
    /// Selector.
    pub selector: u16,
    /// Cached base.
    pub base: u32,
    /// Cached limit (byte granular).
    pub limit: u32,
    /// Access byte in bits 0-7, flags nibble (AVL, L, D/B, G) in bits 12-15.
    pub attr: u16,
}

/// A descriptor-table register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableView {
    /// Linear base.
    pub base: u32,
    /// Limit.
    pub limit: u32,
}

/// Everything a monitor shows about the CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registers {
    /// EAX ECX EDX EBX ESP EBP ESI EDI.
    pub gpr: [u32; 8],
    /// Instruction pointer.
    pub eip: u32,
    /// EFLAGS.
    pub eflags: u32,
    /// ES CS SS DS FS GS.
    pub segs: [SegmentView; 6],
    /// LDTR.
    pub ldtr: SegmentView,
    /// TR.
    pub tr: SegmentView,
    /// GDTR.
    pub gdtr: TableView,
    /// IDTR.
    pub idtr: TableView,
    /// CR0.
    pub cr0: u32,
    /// CR2.
    pub cr2: u32,
    /// CR3.
    pub cr3: u32,
    /// CR4.
    pub cr4: u32,
    /// DR0-DR7.
    pub dr: [u32; 8],
    /// Current privilege level.
    pub cpl: u8,
    /// "real", "protected" or "vm86".
    pub mode: &'static str,
    /// Whether the CPU is halted.
    pub halted: bool,
    /// FPU control word.
    pub fpu_cw: u16,
    /// FPU status word.
    pub fpu_sw: u16,
    /// FPU tag word.
    pub fpu_tw: u16,
    /// FPU stack registers ST0-ST7, 80-bit little endian.
    pub fpu_st: [[u8; 10]; 8],
    /// XMM0-XMM7, each as (low 64 bits, high 64 bits).
    pub xmm: [[u64; 2]; 8],
    /// MXCSR.
    pub mxcsr: u32,
}

/// Serialisable CPU state (migration, snapshots).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuState {
    /// Format version of this struct.
    pub version: u32,
    /// General registers.
    pub gpr: [u32; 8],
    /// EIP.
    pub eip: u32,
    /// EFLAGS.
    pub eflags: u32,
    /// Segment registers.
    pub segs: [SegmentView; 6],
    /// LDTR.
    pub ldtr: SegmentView,
    /// TR.
    pub tr: SegmentView,
    /// GDTR.
    pub gdtr: TableView,
    /// IDTR.
    pub idtr: TableView,
    /// CR0, CR2, CR3, CR4.
    pub cr: [u32; 4],
    /// DR0-DR7.
    pub dr: [u32; 8],
    /// CPL.
    pub cpl: u8,
    /// HLT state.
    pub halted: bool,
    /// NMI waiting for delivery.
    pub nmi_pending: bool,
    /// NMIs blocked until the next IRET.
    pub nmi_blocked: bool,
    /// Interrupt shadow for the next instruction.
    pub shadow: bool,
    /// Retired instructions.
    pub icount: u64,
    /// TSC offset from the machine's clock.
    pub tsc_offset: u64,
    /// SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP.
    pub sysenter: [u32; 3],
    /// MSR 0x8B.
    pub msr_bios_sign: u64,
    /// MSR 0x1D9.
    pub msr_debugctl: u64,
    /// x87 state (MMX registers included).
    pub fpu: FpuState,
    /// XMM0-XMM7, each as (low 64 bits, high 64 bits).
    pub xmm: [[u64; 2]; 8],
    /// MXCSR.
    pub mxcsr: u32,
    /// FERR# level (CR0.NE = 0 error reporting): the board's IRQ13 latch follows it.
    pub ferr: bool,
}

/// Current [`CpuState::version`]. Version 2 added `xmm` and `mxcsr`, version 3 `ferr`; older
/// states are refused (postcard could not read them into this struct anyway).
pub const CPU_STATE_VERSION: u32 = 3;

fn xmm_view(x: &[u128; 8]) -> [[u64; 2]; 8] {
    x.map(|v| [v as u64, (v >> 64) as u64])
}

/// Errors restoring a [`CpuState`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuStateError {
    /// Unknown format version.
    #[error("unsupported CPU state version {0}")]
    Version(u32),
    /// A value is out of range.
    #[error("invalid CPU state: {0}")]
    Invalid(&'static str),
    /// The FPU refused its state.
    #[error("invalid FPU state: {0}")]
    Fpu(String),
}

fn view(s: &Seg) -> SegmentView {
    SegmentView {
        selector: s.sel,
        base: s.base,
        limit: s.limit,
        attr: s.attr,
    }
}

fn unview(v: &SegmentView) -> Seg {
    Seg::from_cache(v.selector, v.base, v.limit, v.attr)
}

impl Cpu {
    /// Register view for monitors.
    pub fn registers(&self) -> Registers {
        let mut st = [[0u8; 10]; 8];
        for (i, s) in st.iter_mut().enumerate() {
            *s = self.fpu.st(i);
        }
        Registers {
            gpr: self.regs,
            eip: self.eip,
            eflags: self.get_eflags(),
            segs: [0, 1, 2, 3, 4, 5].map(|i| view(&self.segs[i])),
            ldtr: view(&self.ldtr),
            tr: view(&self.tr),
            gdtr: TableView {
                base: self.gdtr.base,
                limit: self.gdtr.limit,
            },
            idtr: TableView {
                base: self.idtr.base,
                limit: self.idtr.limit,
            },
            cr0: self.cr0,
            cr2: self.cr2,
            cr3: self.cr3,
            cr4: self.cr4,
            dr: self.dr,
            cpl: self.cpl,
            mode: if !self.pe() {
                "real"
            } else if self.v86() {
                "vm86"
            } else {
                "protected"
            },
            halted: self.halted,
            fpu_cw: self.fpu.control_word(),
            fpu_sw: self.fpu.status_word(),
            fpu_tw: self.fpu.tag_word(),
            fpu_st: st,
            xmm: xmm_view(&self.xmm),
            mxcsr: self.mxcsr,
        }
    }

    /// Serialisable state.
    pub fn state(&self) -> CpuState {
        CpuState {
            version: CPU_STATE_VERSION,
            gpr: self.regs,
            eip: self.eip,
            eflags: self.get_eflags(),
            segs: [0, 1, 2, 3, 4, 5].map(|i| view(&self.segs[i])),
            ldtr: view(&self.ldtr),
            tr: view(&self.tr),
            gdtr: TableView {
                base: self.gdtr.base,
                limit: self.gdtr.limit,
            },
            idtr: TableView {
                base: self.idtr.base,
                limit: self.idtr.limit,
            },
            cr: [self.cr0, self.cr2, self.cr3, self.cr4],
            dr: self.dr,
            cpl: self.cpl,
            halted: self.halted,
            nmi_pending: self.nmi_pending,
            nmi_blocked: self.nmi_blocked,
            shadow: self.shadow,
            icount: self.icount,
            tsc_offset: self.tsc_offset,
            sysenter: [self.sysenter_cs, self.sysenter_esp, self.sysenter_eip],
            msr_bios_sign: self.msr_bios_sign,
            msr_debugctl: self.msr_debugctl,
            fpu: self.fpu.state(),
            xmm: xmm_view(&self.xmm),
            mxcsr: self.mxcsr,
            ferr: self.ferr,
        }
    }

    /// Restores a saved state after validating it. On error the CPU is unchanged.
    pub fn restore(&mut self, s: &CpuState) -> Result<(), CpuStateError> {
        if s.version != CPU_STATE_VERSION {
            return Err(CpuStateError::Version(s.version));
        }
        if s.cpl > 3 {
            return Err(CpuStateError::Invalid("CPL above 3"));
        }
        let cr0 = s.cr[0];
        if cr0 & 0x8000_0000 != 0 && cr0 & 1 == 0 {
            return Err(CpuStateError::Invalid("CR0.PG without CR0.PE"));
        }
        if s.cr[3] & !(0x9F | crate::simd::CR4_OSFXSR | crate::simd::CR4_OSXMMEXCPT) != 0 {
            return Err(CpuStateError::Invalid("CR4 bits this CPU does not have"));
        }
        if s.cr[0] & 1 == 0 && s.cpl != 0 {
            return Err(CpuStateError::Invalid("non-zero CPL in real mode"));
        }
        if s.mxcsr & !crate::simd::MXCSR_MASK != 0 {
            return Err(CpuStateError::Invalid("reserved MXCSR bits"));
        }
        let mut fpu = self.fpu.clone();
        fpu.restore(&s.fpu).map_err(CpuStateError::Fpu)?;
        self.fpu = fpu;
        self.regs = s.gpr;
        self.eip = s.eip;
        self.put_eflags((s.eflags & crate::flags::WRITABLE) | 2);
        for i in 0..6 {
            self.segs[i] = unview(&s.segs[i]);
        }
        self.ldtr = unview(&s.ldtr);
        self.tr = unview(&s.tr);
        self.gdtr = Dtr {
            base: s.gdtr.base,
            limit: s.gdtr.limit,
        };
        self.idtr = Dtr {
            base: s.idtr.base,
            limit: s.idtr.limit,
        };
        self.cr0 = s.cr[0] | 0x10;
        self.cr2 = s.cr[1];
        self.cr3 = s.cr[2];
        self.cr4 = s.cr[3];
        self.dr = s.dr;
        self.set_cpl(s.cpl);
        self.halted = s.halted;
        self.nmi_pending = s.nmi_pending;
        self.nmi_blocked = s.nmi_blocked;
        self.shadow = s.shadow;
        self.icount = s.icount;
        self.tsc_offset = s.tsc_offset;
        self.sysenter_cs = s.sysenter[0];
        self.sysenter_esp = s.sysenter[1];
        self.sysenter_eip = s.sysenter[2];
        self.msr_bios_sign = s.msr_bios_sign;
        self.msr_debugctl = s.msr_debugctl;
        self.xmm = s.xmm.map(|[lo, hi]| (hi as u128) << 64 | lo as u128);
        self.mxcsr = s.mxcsr;
        self.ferr = s.ferr;
        self.ferr_notify = false;
        self.flush_tlb_all();
        self.flush_code_cache();
        self.update_breakpoints();
        self.mem_gen = u64::MAX;
        Ok(())
    }
}
