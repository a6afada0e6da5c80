//! The allow-list: classes of mismatches that are real differences between the 80286 that
//! captured the single-step tests and the P6-class CPU wasm86 emulates.
//!
//! A test whose every difference is covered by some class counts as "allowed" (neither
//! passed nor failed). The file is TOML, one `[[class]]` table per class:
//!
//! ```toml
//! [[class]]
//! name = "flags-iopl-nt"
//! reason = "why the two CPUs differ"
//! opcodes = ["*"]              # file keys ("9C", "F6.4") or an opcode ("80" covers "80.x")
//! lock = "invalid"             # optional: only tests with a LOCK prefix a P6 refuses (#UD)
//! modrm = "register"           # optional: only tests whose ModR/M has mod = 3
//! flags = 0xF000               # FLAGS bits excused in the register
//! pushed_flags = 0xF000        # FLAGS bits excused in the FLAGS image pushed to the stack
//! ram = true                   # any difference in RAM (including stray writes) excused
//! regs = ["sp"]                # these registers excused entirely
//! any = true                   # every difference excused
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::diff::{Diff, RamKind};
use crate::insn::Head;
use crate::moo::Reg;

/// Errors loading the allow-list.
#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not valid TOML of the expected shape.
    #[error("invalid allow-list: {0}")]
    Toml(#[from] toml::de::Error),
    /// A class is malformed.
    #[error("allow-list class {name:?}: {problem}")]
    Class {
        /// Class name.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    class: Vec<RawClass>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    name: String,
    reason: String,
    opcodes: Vec<String>,
    #[serde(default)]
    lock: Option<String>,
    #[serde(default)]
    modrm: Option<String>,
    #[serde(default)]
    flags: Option<u16>,
    #[serde(default)]
    pushed_flags: Option<u16>,
    #[serde(default)]
    ram: bool,
    #[serde(default)]
    regs: Vec<String>,
    #[serde(default)]
    any: bool,
}

/// One class of allowed mismatches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    /// Short name, shown in reports.
    pub name: String,
    /// Why a P6 legitimately differs from the 286 here.
    pub reason: String,
    /// File keys or opcodes this class applies to (`"*"`: all).
    pub opcodes: Vec<String>,
    /// Only tests with a LOCK prefix that a P6 refuses.
    pub lock_invalid: bool,
    /// Only tests whose ModR/M selects a register.
    pub modrm_register: bool,
    /// FLAGS register bits excused.
    pub flags: u16,
    /// Pushed FLAGS image bits excused.
    pub pushed_flags: u16,
    /// RAM differences excused.
    pub ram: bool,
    /// Registers excused entirely.
    pub regs: Vec<Reg>,
    /// Every difference excused.
    pub any: bool,
}

impl Class {
    /// Whether the class applies to a test of file key `key` with instruction head `head`.
    pub fn applies(&self, key: &str, head: &Head) -> bool {
        let op = key.split('.').next().unwrap_or(key);
        let key_ok = self
            .opcodes
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(key) || o.eq_ignore_ascii_case(op));
        key_ok
            && (!self.lock_invalid || (head.has_lock() && !head.lock_legal_on_p6()))
            && (!self.modrm_register || head.modrm_is_register())
    }

    /// Whether the class excuses `d` (assuming it applies to the test).
    pub fn covers(&self, d: &Diff) -> bool {
        if self.any {
            return true;
        }
        match d {
            Diff::Reg { .. } => {
                let Some((reg, bits)) = d.reg_bits() else {
                    return false;
                };
                self.regs.contains(&reg) || (reg == Reg::Flags && bits & !self.flags == 0)
            }
            Diff::Ram {
                kind: RamKind::PushedFlags { high },
                expected,
                got,
                ..
            } => {
                let mask = if *high {
                    self.pushed_flags >> 8
                } else {
                    self.pushed_flags & 0xFF
                };
                self.ram || (expected ^ got) & !(mask as u8) == 0
            }
            Diff::Ram { .. } => self.ram,
            Diff::High { .. } | Diff::Exit { .. } => false,
        }
    }
}

/// The loaded allow-list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Classes in file order.
    pub classes: Vec<Class>,
}

/// The verdict on a test with differences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every difference is excused; the indices of the classes used.
    Allowed(Vec<usize>),
    /// These differences are not excused.
    Failed(Vec<Diff>),
}

impl AllowList {
    /// Loads a TOML allow-list file.
    pub fn load(path: &Path) -> Result<AllowList, AllowError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<AllowList, AllowError> {
        let raw: RawFile = toml::from_str(text)?;
        let mut classes = Vec::new();
        for c in raw.class {
            let bad = |problem: &str| AllowError::Class {
                name: c.name.clone(),
                problem: problem.into(),
            };
            if c.reason.trim().is_empty() {
                return Err(bad("a reason is required"));
            }
            if c.opcodes.is_empty() {
                return Err(bad("opcodes is empty"));
            }
            let lock_invalid = match c.lock.as_deref() {
                None => false,
                Some("invalid") => true,
                Some(_) => return Err(bad("lock must be \"invalid\"")),
            };
            let modrm_register = match c.modrm.as_deref() {
                None => false,
                Some("register") => true,
                Some(_) => return Err(bad("modrm must be \"register\"")),
            };
            let mut regs = Vec::new();
            for r in &c.regs {
                regs.push(
                    Reg::from_name(r).ok_or_else(|| bad(&format!("unknown register {r:?}")))?,
                );
            }
            let excuses =
                c.any || c.ram || !regs.is_empty() || c.flags.is_some() || c.pushed_flags.is_some();
            if !excuses {
                return Err(bad("the class excuses nothing"));
            }
            classes.push(Class {
                name: c.name,
                reason: c.reason,
                opcodes: c.opcodes,
                lock_invalid,
                modrm_register,
                flags: c.flags.unwrap_or(0),
                pushed_flags: c.pushed_flags.unwrap_or(0),
                ram: c.ram,
                regs,
                any: c.any,
            });
        }
        Ok(AllowList { classes })
    }

    /// Judges a test's differences (non-empty).
    pub fn judge(&self, key: &str, head: &Head, diffs: &[Diff]) -> Verdict {
        let applicable: Vec<usize> = (0..self.classes.len())
            .filter(|&i| self.classes[i].applies(key, head))
            .collect();
        let mut used = Vec::new();
        let mut failed = Vec::new();
        for d in diffs {
            match applicable.iter().find(|&&i| self.classes[i].covers(d)) {
                Some(&i) => {
                    if !used.contains(&i) {
                        used.push(i);
                    }
                }
                None => failed.push(d.clone()),
            }
        }
        if failed.is_empty() {
            Verdict::Allowed(used)
        } else {
            Verdict::Failed(failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        [[class]]
        name = "flags-high"
        reason = "bits 12-15"
        opcodes = ["*"]
        flags = 0xF000
        pushed_flags = 0xF000

        [[class]]
        name = "lock-ud"
        reason = "P6 raises #UD"
        opcodes = ["*"]
        lock = "invalid"
        any = true

        [[class]]
        name = "lea-reg"
        reason = "P6 raises #UD"
        opcodes = ["8D"]
        modrm = "register"
        regs = ["ip", "sp"]
        ram = true
    "#;

    fn flags_diff(e: u16, g: u16) -> Diff {
        Diff::Reg {
            reg: Reg::Flags,
            expected: e,
            got: g,
            mask: 0xFFFF,
        }
    }

    #[test]
    fn parses_and_judges() {
        let a = AllowList::parse(SAMPLE).unwrap();
        assert_eq!(a.classes.len(), 3);
        let add = Head::decode(&[0x00, 0x07]);
        assert_eq!(
            a.judge("00", &add, &[flags_diff(0x0002, 0x3002)]),
            Verdict::Allowed(vec![0])
        );
        let d = flags_diff(0x0002, 0x3003);
        assert_eq!(
            a.judge("00", &add, std::slice::from_ref(&d)),
            Verdict::Failed(vec![d])
        );
        let pushed = Diff::Ram {
            addr: 5,
            expected: 0x00,
            got: 0x30,
            kind: RamKind::PushedFlags { high: true },
        };
        assert_eq!(a.judge("CD", &add, &[pushed]), Verdict::Allowed(vec![0]));
        let pushed_low = Diff::Ram {
            addr: 4,
            expected: 0x00,
            got: 0x30,
            kind: RamKind::PushedFlags { high: false },
        };
        assert!(matches!(
            a.judge("CD", &add, &[pushed_low]),
            Verdict::Failed(_)
        ));

        let lock_int3 = Head::decode(&[0xF0, 0xCC]);
        let exit = Diff::Exit { what: "x".into() };
        assert_eq!(
            a.judge("CC", &lock_int3, std::slice::from_ref(&exit)),
            Verdict::Allowed(vec![1])
        );
        assert!(matches!(
            a.judge("CC", &Head::decode(&[0xCC]), &[exit]),
            Verdict::Failed(_)
        ));

        let ip = Diff::Reg {
            reg: Reg::Ip,
            expected: 1,
            got: 2,
            mask: 0xFFFF,
        };
        let lea_reg = Head::decode(&[0x8D, 0xC0]);
        let lea_mem = Head::decode(&[0x8D, 0x00]);
        assert_eq!(
            a.judge("8D", &lea_reg, std::slice::from_ref(&ip)),
            Verdict::Allowed(vec![2])
        );
        assert!(matches!(
            a.judge("8D", &lea_mem, std::slice::from_ref(&ip)),
            Verdict::Failed(_)
        ));
        assert!(matches!(a.judge("8C", &lea_reg, &[ip]), Verdict::Failed(_)));
    }

    #[test]
    fn rejects_bad_classes() {
        let no_reason = "[[class]]\nname='x'\nreason=''\nopcodes=['*']\nany=true\n";
        assert!(AllowList::parse(no_reason).is_err());
        let nothing = "[[class]]\nname='x'\nreason='r'\nopcodes=['*']\n";
        assert!(AllowList::parse(nothing).is_err());
        let bad_reg = "[[class]]\nname='x'\nreason='r'\nopcodes=['*']\nregs=['zz']\n";
        assert!(AllowList::parse(bad_reg).is_err());
        let unknown = "[[class]]\nname='x'\nreason='r'\nopcodes=['*']\nany=true\nfoo=1\n";
        assert!(AllowList::parse(unknown).is_err());
    }
}
