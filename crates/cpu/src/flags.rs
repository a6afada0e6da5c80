//! EFLAGS bits and lazy evaluation of the arithmetic flags.
//!
//! The last ALU operation is remembered (`kind`, operand size, both inputs and the result);
//! CF, PF, AF, ZF, SF and OF are computed only when something reads them. `mask` says which
//! of the six flags are currently lazy; the others live in `Cpu::eflags`. ADC/SBB share the
//! ADD/SUB kinds: the carry-in is recovered from `res - a - b`.

use serde::{Deserialize, Serialize};

/// Carry flag.
pub const CF: u32 = 1 << 0;
/// Parity flag.
pub const PF: u32 = 1 << 2;
/// Auxiliary carry flag.
pub const AF: u32 = 1 << 4;
/// Zero flag.
pub const ZF: u32 = 1 << 6;
/// Sign flag.
pub const SF: u32 = 1 << 7;
/// Trap flag.
pub const TF: u32 = 1 << 8;
/// Interrupt enable flag.
pub const IF: u32 = 1 << 9;
/// Direction flag.
pub const DF: u32 = 1 << 10;
/// Overflow flag.
pub const OF: u32 = 1 << 11;
/// I/O privilege level (two bits).
pub const IOPL: u32 = 3 << 12;
/// Nested task flag.
pub const NT: u32 = 1 << 14;
/// Resume flag.
pub const RF: u32 = 1 << 16;
/// Virtual-8086 mode flag.
pub const VM: u32 = 1 << 17;
/// Alignment check flag.
pub const AC: u32 = 1 << 18;
/// Virtual interrupt flag (VME/PVI).
pub const VIF: u32 = 1 << 19;
/// Virtual interrupt pending (VME/PVI).
pub const VIP: u32 = 1 << 20;
/// CPUID-detection flag.
pub const ID: u32 = 1 << 21;
/// The six arithmetic flags.
pub const ARITH: u32 = CF | PF | AF | ZF | SF | OF;
/// Bits that software can change at all on this CPU (VIF/VIP only through IRETD at CPL 0,
/// task switches and the VME/PVI forms of CLI, STI, POPF, IRET and INT n).
pub const WRITABLE: u32 = ARITH | TF | IF | DF | IOPL | NT | RF | VM | AC | VIF | VIP | ID;

/// Kind of the last flag-setting operation.
pub(crate) const K_ADD: u8 = 0;
pub(crate) const K_SUB: u8 = 1;
pub(crate) const K_LOGIC: u8 = 2;

/// Remembered last ALU operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[repr(C)]
pub(crate) struct Lazy {
    /// First operand (masked to the size).
    pub a: u32,
    /// Second operand (masked).
    pub b: u32,
    /// Result (masked).
    pub res: u32,
    /// Which arithmetic flags are lazy.
    pub mask: u32,
    /// K_ADD, K_SUB or K_LOGIC.
    pub kind: u8,
    /// Size in bytes: 1, 2 or 4.
    pub size: u8,
}

/// All-ones mask of an operand size in bytes.
#[inline(always)]
pub(crate) fn size_mask(size: u32) -> u32 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    }
}

/// Sign bit of an operand size in bytes.
#[inline(always)]
pub(crate) fn sign_bit(size: u32) -> u32 {
    match size {
        1 => 0x80,
        2 => 0x8000,
        _ => 0x8000_0000,
    }
}

/// PF for a result: set when the low byte has an even number of ones.
#[inline(always)]
pub(crate) fn parity(v: u32) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

impl Lazy {
    #[inline(always)]
    pub(crate) fn cf(&self) -> bool {
        let m = size_mask(self.size as u32);
        match self.kind {
            K_ADD => {
                let cin = self.res.wrapping_sub(self.a).wrapping_sub(self.b) & m;
                if cin != 0 {
                    self.res <= self.a
                } else {
                    self.res < self.a
                }
            }
            K_SUB => {
                let bin = self.a.wrapping_sub(self.b).wrapping_sub(self.res) & m;
                if bin != 0 {
                    self.a <= self.b
                } else {
                    self.a < self.b
                }
            }
            _ => false,
        }
    }

    #[inline(always)]
    pub(crate) fn of(&self) -> bool {
        let s = sign_bit(self.size as u32);
        match self.kind {
            K_ADD => (self.a ^ self.res) & (self.b ^ self.res) & s != 0,
            K_SUB => (self.a ^ self.b) & (self.a ^ self.res) & s != 0,
            _ => false,
        }
    }

    #[inline(always)]
    pub(crate) fn af(&self) -> bool {
        match self.kind {
            K_ADD | K_SUB => (self.a ^ self.b ^ self.res) & 0x10 != 0,
            _ => false,
        }
    }

    #[inline(always)]
    pub(crate) fn zf(&self) -> bool {
        self.res == 0
    }

    #[inline(always)]
    pub(crate) fn sf(&self) -> bool {
        self.res & sign_bit(self.size as u32) != 0
    }

    #[inline(always)]
    pub(crate) fn pf(&self) -> bool {
        parity(self.res)
    }

    /// Computes the flags in `which` (a subset of ARITH).
    pub(crate) fn compute(&self, which: u32) -> u32 {
        let mut f = 0;
        if which & CF != 0 && self.cf() {
            f |= CF;
        }
        if which & PF != 0 && self.pf() {
            f |= PF;
        }
        if which & AF != 0 && self.af() {
            f |= AF;
        }
        if which & ZF != 0 && self.zf() {
            f |= ZF;
        }
        if which & SF != 0 && self.sf() {
            f |= SF;
        }
        if which & OF != 0 && self.of() {
            f |= OF;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lz(kind: u8, size: u8, a: u32, b: u32, res: u32) -> Lazy {
        Lazy {
            a,
            b,
            res,
            mask: ARITH,
            kind,
            size,
        }
    }

    #[test]
    fn add_carry_and_overflow() {
        let l = lz(K_ADD, 1, 0xFF, 0x01, 0x00);
        assert!(l.cf() && l.zf() && !l.of() && l.af());
        let l = lz(K_ADD, 1, 0x7F, 0x01, 0x80);
        assert!(!l.cf() && l.of() && l.sf());
        // ADC with carry in: 0xFF + 0xFF + 1 = 0x1FF.
        let l = lz(K_ADD, 1, 0xFF, 0xFF, 0xFF);
        assert!(l.cf());
        // ADC 0 + 0 + 1.
        let l = lz(K_ADD, 4, 0, 0, 1);
        assert!(!l.cf());
    }

    #[test]
    fn sub_borrow() {
        let l = lz(K_SUB, 2, 0, 1, 0xFFFF);
        assert!(l.cf() && l.sf() && !l.of());
        let l = lz(K_SUB, 1, 0x80, 1, 0x7F);
        assert!(l.of() && !l.cf());
        // SBB 5 - 5 - 1 = -1: borrow.
        let l = lz(K_SUB, 1, 5, 5, 0xFF);
        assert!(l.cf());
        assert!(lz(K_SUB, 1, 3, 3, 0).zf());
    }
}
