//! Temporary stand-in for `crate::fpu` with the same interface, used until the x87 FPU
//! module provides `Fpu`. It keeps the control, status and tag words (so FPU detection,
//! FNINIT, FNSTSW, FNSTCW, FLDCW and FNCLEX behave) and treats arithmetic as no-ops.

#![allow(dead_code, missing_docs)]

use serde::{Deserialize, Serialize};

/// Memory of the operand's segment, as seen by the FPU.
pub trait FpuMemory {
    /// Fault type of the CPU.
    type Fault;
    /// Reads `buf.len()` bytes at `offset` of the operand's segment.
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Self::Fault>;
    /// Writes `data` at `offset`.
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Self::Fault>;
}

/// Context of an FPU instruction.
#[derive(Clone, Copy, Debug, Default)]
pub struct FpuContext {
    pub op32: bool,
    pub protected: bool,
    pub ip: u32,
    pub cs: u16,
    pub dp: u32,
    pub ds: u16,
    pub opcode: u16,
}

/// Result of an FPU instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpuOutcome {
    Done,
    StoreAx(u16),
}

/// Failure of an FPU instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpuError<F> {
    Fault(F),
    PendingException,
}

/// Saved FPU state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FpuState {
    pub cw: u16,
    pub sw: u16,
    pub tw: u16,
}

/// The stand-in FPU.
#[derive(Clone, Debug)]
pub struct Fpu {
    cw: u16,
    sw: u16,
    tw: u16,
}

impl Fpu {
    pub fn new() -> Fpu {
        Fpu { cw: 0x37F, sw: 0, tw: 0xFFFF }
    }

    pub fn reset(&mut self) {
        *self = Fpu::new();
    }

    pub fn execute<M: FpuMemory>(
        &mut self,
        op: u8,
        modrm: u8,
        ea: Option<u32>,
        _ctx: &FpuContext,
        mem: &mut M,
    ) -> Result<FpuOutcome, FpuError<M::Fault>> {
        let reg = (modrm >> 3) & 7;
        match (op, ea) {
            (0xDB, None) if modrm == 0xE3 => self.reset(),
            (0xDB, None) if modrm == 0xE2 => self.sw &= 0x7F00,
            (0xDF, None) if modrm == 0xE0 => return Ok(FpuOutcome::StoreAx(self.sw)),
            (0xD9, Some(a)) if reg == 7 => {
                mem.write(a, &self.cw.to_le_bytes()).map_err(FpuError::Fault)?
            }
            (0xD9, Some(a)) if reg == 5 => {
                let mut b = [0; 2];
                mem.read(a, &mut b).map_err(FpuError::Fault)?;
                self.cw = u16::from_le_bytes(b);
            }
            (0xDD, Some(a)) if reg == 7 => {
                mem.write(a, &self.sw.to_le_bytes()).map_err(FpuError::Fault)?
            }
            _ => {}
        }
        Ok(FpuOutcome::Done)
    }

    pub fn wait_check(&self) -> bool {
        false
    }

    pub fn state(&self) -> FpuState {
        FpuState { cw: self.cw, sw: self.sw, tw: self.tw }
    }

    pub fn restore(&mut self, s: &FpuState) -> Result<(), String> {
        self.cw = s.cw;
        self.sw = s.sw;
        self.tw = s.tw;
        Ok(())
    }

    pub fn status_word(&self) -> u16 {
        self.sw
    }

    pub fn control_word(&self) -> u16 {
        self.cw
    }

    pub fn tag_word(&self) -> u16 {
        self.tw
    }

    pub fn st(&self, _i: usize) -> [u8; 10] {
        [0; 10]
    }
}
