//! One difference between the expected and the observed final state of a test.

use std::fmt;

use crate::moo::Reg;

/// Why a RAM byte is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamKind {
    /// Listed in the test's final state.
    Expected,
    /// Byte of the FLAGS image pushed to the stack (by the exception in `EXCP`, or PUSHF);
    /// `high` is the upper byte (FLAGS bits 8..15).
    PushedFlags {
        /// Upper byte.
        high: bool,
    },
    /// Written by the CPU although the test expects the initial value (or zero) there.
    Stray,
}

/// A difference between expected and observed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diff {
    /// A 16-bit register differs in the compared bits.
    Reg {
        /// Register.
        reg: Reg,
        /// Expected value.
        expected: u16,
        /// Observed value.
        got: u16,
        /// Bits that were compared.
        mask: u16,
    },
    /// The upper half of a 32-bit register (EAX..EDI, EIP) is no longer zero.
    High {
        /// Register name ("eax", "eip").
        name: &'static str,
        /// Observed 32-bit value.
        got: u32,
    },
    /// A RAM byte differs.
    Ram {
        /// Physical address.
        addr: u32,
        /// Expected value.
        expected: u8,
        /// Observed value.
        got: u8,
        /// Bits that were compared.
        mask: u8,
        /// Why it was compared.
        kind: RamKind,
    },
    /// The CPU delivered an exception that the test does not expect (it reached the
    /// runner's sentinel handler for `vector`).
    Fault {
        /// Exception vector.
        vector: u8,
    },
    /// The CPU did not raise an exception that a P6 must raise (whatever the 286 did).
    Missing {
        /// Exception vector.
        vector: u8,
        /// Why a P6 raises it.
        why: &'static str,
    },
    /// The CPU did not finish the instruction normally (triple fault, exit request, or an
    /// instruction that never completed).
    Exit {
        /// What happened.
        what: String,
    },
}

/// The signature of a failing test: the sorted kinds of its differences joined with `+`
/// ("ax+flags", "missing-exception-6"). Tests with the same signature usually share a cause.
pub fn signature(diffs: &[Diff]) -> String {
    let mut kinds: Vec<String> = diffs.iter().map(Diff::kind_name).collect();
    kinds.sort();
    kinds.dedup();
    kinds.join("+")
}

impl Diff {
    /// A short name of the kind of difference ("ax", "stray-write", "unexpected-exception-13").
    pub fn kind_name(&self) -> String {
        match self {
            Diff::Reg { reg, .. } => reg.name().to_string(),
            Diff::High { name, .. } => format!("{name}[31:16]"),
            Diff::Ram {
                kind: RamKind::Expected,
                ..
            } => "ram".into(),
            Diff::Ram {
                kind: RamKind::PushedFlags { .. },
                ..
            } => "pushed-flags".into(),
            Diff::Ram {
                kind: RamKind::Stray,
                ..
            } => "stray-write".into(),
            Diff::Fault { vector } => format!("unexpected-exception-{vector}"),
            Diff::Missing { vector, .. } => format!("missing-exception-{vector}"),
            Diff::Exit { .. } => "exit".into(),
        }
    }

    /// Bits that differ, for register diffs.
    pub fn reg_bits(&self) -> Option<(Reg, u16)> {
        match self {
            Diff::Reg {
                reg,
                expected,
                got,
                mask,
            } => Some((*reg, (expected ^ got) & mask)),
            _ => None,
        }
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diff::Reg {
                reg,
                expected,
                got,
                mask,
            } => {
                write!(f, "{}: expected {expected:#06x} got {got:#06x}", reg.name())?;
                if *mask != 0xFFFF {
                    write!(f, " (mask {mask:#06x})")?;
                }
                Ok(())
            }
            Diff::High { name, got } => write!(f, "{name}[31:16] not zero: {got:#010x}"),
            Diff::Ram {
                addr,
                expected,
                got,
                mask,
                kind,
            } => {
                let k = match kind {
                    RamKind::Expected => "",
                    RamKind::PushedFlags { high: false } => " (pushed FLAGS low)",
                    RamKind::PushedFlags { high: true } => " (pushed FLAGS high)",
                    RamKind::Stray => " (stray write)",
                };
                write!(
                    f,
                    "RAM[{addr:#07x}]: expected {expected:#04x} got {got:#04x}{k}"
                )?;
                if *mask != 0xFF {
                    write!(f, " (mask {mask:#04x})")?;
                }
                Ok(())
            }
            Diff::Fault { vector } => {
                let name = match vector {
                    0 => "#DE",
                    1 => "#DB",
                    3 => "#BP",
                    4 => "#OF",
                    5 => "#BR",
                    6 => "#UD",
                    7 => "#NM",
                    8 => "#DF",
                    12 => "#SS",
                    13 => "#GP",
                    16 => "#MF",
                    _ => "vector",
                };
                write!(f, "unexpected exception {name} ({vector})")
            }
            Diff::Missing { vector, why } => {
                write!(f, "no exception {vector} although a P6 raises it: {why}")
            }
            Diff::Exit { what } => write!(f, "exit: {what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_group_kinds() {
        let a = Diff::Reg {
            reg: Reg::Si,
            expected: 1,
            got: 2,
            mask: 0xFFFF,
        };
        let b = Diff::Fault { vector: 13 };
        assert_eq!(
            signature(&[b.clone(), a.clone(), a]),
            "si+unexpected-exception-13"
        );
        assert_eq!(signature(&[b]), "unexpected-exception-13");
    }

    #[test]
    fn display_is_readable() {
        let d = Diff::Reg {
            reg: Reg::Flags,
            expected: 0x0002,
            got: 0x3002,
            mask: 0xFFEF,
        };
        assert_eq!(
            d.to_string(),
            "flags: expected 0x0002 got 0x3002 (mask 0xffef)"
        );
        assert_eq!(d.reg_bits(), Some((Reg::Flags, 0x3000)));
        let r = Diff::Ram {
            addr: 0x1234,
            expected: 1,
            got: 2,
            mask: 0xFF,
            kind: RamKind::Stray,
        };
        assert_eq!(
            r.to_string(),
            "RAM[0x01234]: expected 0x01 got 0x02 (stray write)"
        );
    }
}
