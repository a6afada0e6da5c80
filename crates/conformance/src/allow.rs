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
//! p6_fault = [12, 13]          # optional: only tests where the CPU raised one of these
//!                              # vectors and the 286 did not
//! cpu286_exception = [6]       # optional: only tests where the 286 raised one of these
//! modrm_reg = [4, 5]           # optional: only tests whose ModR/M reg field is one of these
//! min_length = 11              # optional: only instructions at least this long (bytes)
//! flags = 0xF000               # FLAGS bits excused in the register
//! pushed_flags = 0xF000        # FLAGS bits excused in the FLAGS image pushed to the stack
//! ram = true                   # any difference in RAM (including stray writes) excused
//! regs = ["sp"]                # these registers excused entirely
//! eip_high = true              # EIP bits 16-31 excused
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
    p6_fault: Vec<u8>,
    #[serde(default)]
    cpu286_exception: Vec<u8>,
    #[serde(default)]
    modrm_reg: Vec<u8>,
    #[serde(default)]
    min_length: Option<usize>,
    #[serde(default)]
    flags: Option<u16>,
    #[serde(default)]
    eip_high: bool,
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
    /// Only tests where the CPU raised one of these vectors unexpectedly (empty: any test).
    pub p6_fault: Vec<u8>,
    /// Only tests where the 286 raised one of these vectors (empty: any test).
    pub cpu286_exception: Vec<u8>,
    /// Only tests whose ModR/M reg field is one of these (empty: any test).
    pub modrm_reg: Vec<u8>,
    /// Only instructions of at least this many bytes.
    pub min_length: usize,
    /// EIP bits 16-31 excused.
    pub eip_high: bool,
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
    /// Whether the class applies to the test.
    pub fn applies(&self, t: &TestInfo<'_>) -> bool {
        let op = t.key.split('.').next().unwrap_or(t.key);
        let key_ok = self
            .opcodes
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(t.key) || o.eq_ignore_ascii_case(op));
        let head = t.head;
        key_ok
            && (!self.lock_invalid || (head.has_lock() && !head.lock_legal_on_p6()))
            && (!self.modrm_register || head.modrm_is_register())
            && (self.p6_fault.is_empty()
                || t.diffs
                    .iter()
                    .any(|d| matches!(d, Diff::Fault { vector } if self.p6_fault.contains(vector))))
            && (self.cpu286_exception.is_empty()
                || t.exception_286
                    .is_some_and(|v| self.cpu286_exception.contains(&v)))
            && (self.modrm_reg.is_empty()
                || head
                    .reg_field()
                    .is_some_and(|r| self.modrm_reg.contains(&r)))
            && t.insn_len >= self.min_length
    }

    /// The FLAGS bits this class excuses in `d`, for a FLAGS register or pushed FLAGS byte
    /// difference (None for other differences).
    fn flag_bits(&self, d: &Diff) -> Option<u16> {
        match d {
            Diff::Reg {
                reg: Reg::Flags, ..
            } => Some(self.flags),
            Diff::Ram {
                kind: RamKind::PushedFlags { high },
                ..
            } => Some(if *high {
                self.pushed_flags >> 8
            } else {
                self.pushed_flags & 0xFF
            }),
            _ => None,
        }
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
                mask,
                ..
            } => {
                let excused = if *high {
                    self.pushed_flags >> 8
                } else {
                    self.pushed_flags & 0xFF
                };
                self.ram || (expected ^ got) & mask & !(excused as u8) == 0
            }
            Diff::Ram { .. } => self.ram,
            Diff::High { name, .. } => self.eip_high && *name == "eip",
            Diff::Fault { .. } | Diff::Missing { .. } | Diff::Exit { .. } => false,
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
            if c.modrm_reg.iter().any(|r| *r > 7) {
                return Err(bad("modrm_reg values are 0..=7"));
            }
            let excuses = c.any
                || c.ram
                || c.eip_high
                || !regs.is_empty()
                || c.flags.is_some()
                || c.pushed_flags.is_some();
            if !excuses {
                return Err(bad("the class excuses nothing"));
            }
            classes.push(Class {
                name: c.name,
                reason: c.reason,
                opcodes: c.opcodes,
                lock_invalid,
                modrm_register,
                p6_fault: c.p6_fault,
                cpu286_exception: c.cpu286_exception,
                modrm_reg: c.modrm_reg,
                min_length: c.min_length.unwrap_or(0),
                eip_high: c.eip_high,
                flags: c.flags.unwrap_or(0),
                pushed_flags: c.pushed_flags.unwrap_or(0),
                ram: c.ram,
                regs,
                any: c.any,
            });
        }
        Ok(AllowList { classes })
    }

    /// Judges a test's differences (non-empty). A FLAGS difference may be covered bit by
    /// bit by several classes together.
    pub fn judge(&self, t: &TestInfo<'_>) -> Verdict {
        let applicable: Vec<usize> = (0..self.classes.len())
            .filter(|&i| self.classes[i].applies(t))
            .collect();
        let mut used = Vec::new();
        let mut failed = Vec::new();
        let note = |i: usize, used: &mut Vec<usize>| {
            if !used.contains(&i) {
                used.push(i);
            }
        };
        for d in t.diffs {
            if let Some(&i) = applicable.iter().find(|&&i| self.classes[i].covers(d)) {
                note(i, &mut used);
                continue;
            }
            let bits = match d {
                Diff::Reg {
                    reg: Reg::Flags, ..
                } => d.reg_bits().map(|(_, b)| b),
                Diff::Ram {
                    kind: RamKind::PushedFlags { .. },
                    expected,
                    got,
                    mask,
                    ..
                } => Some(((expected ^ got) & mask) as u16),
                _ => None,
            };
            let Some(bits) = bits else {
                failed.push(d.clone());
                continue;
            };
            let mut left = bits;
            let mut helpers = Vec::new();
            for &i in &applicable {
                let b = self.classes[i].flag_bits(d).unwrap_or(0) & left;
                if b != 0 {
                    left &= !b;
                    helpers.push(i);
                }
            }
            if left == 0 {
                for i in helpers {
                    note(i, &mut used);
                }
            } else {
                failed.push(d.clone());
            }
        }
        if failed.is_empty() {
            Verdict::Allowed(used)
        } else {
            Verdict::Failed(failed)
        }
    }
}

/// What the allow-list needs to know about a test.
#[derive(Clone, Copy, Debug)]
pub struct TestInfo<'a> {
    /// File key ("80.1").
    pub key: &'a str,
    /// Decoded instruction head.
    pub head: &'a Head,
    /// Differences found.
    pub diffs: &'a [Diff],
    /// Vector of the exception the 286 raised, if any.
    pub exception_286: Option<u8>,
    /// Instruction length in bytes (prefixes included, the suite's HLT excluded).
    pub insn_len: usize,
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
        name = "wrap"
        reason = "P6 raises #GP/#SS"
        opcodes = ["*"]
        p6_fault = [12, 13]
        any = true

        [[class]]
        name = "ip-wrap"
        reason = "EIP"
        opcodes = ["*"]
        eip_high = true

        [[class]]
        name = "lea-reg"
        reason = "P6 raises #UD"
        opcodes = ["8D"]
        modrm = "register"
        regs = ["ip", "sp"]
        ram = true
    "#;

    fn judge(a: &AllowList, key: &str, head: &Head, diffs: &[Diff]) -> Verdict {
        a.judge(&TestInfo {
            key,
            head,
            diffs,
            exception_286: None,
            insn_len: 2,
        })
    }

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
        assert_eq!(a.classes.len(), 5);
        let add = Head::decode(&[0x00, 0x07]);
        assert_eq!(
            judge(&a, "00", &add, &[flags_diff(0x0002, 0x3002)]),
            Verdict::Allowed(vec![0])
        );
        let d = flags_diff(0x0002, 0x3003);
        assert_eq!(
            judge(&a, "00", &add, std::slice::from_ref(&d)),
            Verdict::Failed(vec![d])
        );
        let pushed = Diff::Ram {
            addr: 5,
            expected: 0x00,
            got: 0x30,
            mask: 0xFF,
            kind: RamKind::PushedFlags { high: true },
        };
        assert_eq!(judge(&a, "CD", &add, &[pushed]), Verdict::Allowed(vec![0]));
        let pushed_low = Diff::Ram {
            addr: 4,
            expected: 0x00,
            got: 0x30,
            mask: 0xFF,
            kind: RamKind::PushedFlags { high: false },
        };
        assert!(matches!(
            judge(&a, "CD", &add, &[pushed_low]),
            Verdict::Failed(_)
        ));

        let lock_int3 = Head::decode(&[0xF0, 0xCC]);
        let exit = Diff::Exit { what: "x".into() };
        assert_eq!(
            judge(&a, "CC", &lock_int3, std::slice::from_ref(&exit)),
            Verdict::Allowed(vec![1])
        );
        assert!(matches!(
            judge(&a, "CC", &Head::decode(&[0xCC]), &[exit]),
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
            judge(&a, "8D", &lea_reg, std::slice::from_ref(&ip)),
            Verdict::Allowed(vec![4])
        );
        // p6_fault: only when the CPU raised one of the listed vectors.
        let gp = Diff::Fault { vector: 13 };
        let ud = Diff::Fault { vector: 6 };
        assert_eq!(
            judge(&a, "A5", &add, &[gp, ip.clone()]),
            Verdict::Allowed(vec![2])
        );
        assert!(matches!(
            judge(&a, "A5", &add, &[ud, ip.clone()]),
            Verdict::Failed(_)
        ));
        let eip = Diff::High {
            name: "eip",
            got: 0x10000,
        };
        let eax = Diff::High {
            name: "eax",
            got: 0x10000,
        };
        assert_eq!(judge(&a, "C3", &add, &[eip]), Verdict::Allowed(vec![3]));
        assert!(matches!(judge(&a, "C3", &add, &[eax]), Verdict::Failed(_)));
        // Flags bits covered by two classes together.
        let two = AllowList::parse(
            "[[class]]\nname='a'\nreason='r'\nopcodes=['*']\nflags=0xF000\n\
             [[class]]\nname='b'\nreason='r'\nopcodes=['F6.6']\nflags=0x0001\n",
        )
        .unwrap();
        let both = flags_diff(0x0000, 0x1001);
        assert_eq!(
            judge(&two, "F6.6", &add, std::slice::from_ref(&both)),
            Verdict::Allowed(vec![0, 1])
        );
        assert!(matches!(
            judge(&two, "F6.5", &add, &[both]),
            Verdict::Failed(_)
        ));
        // Conditions on the 286's exception, the ModR/M reg field and the length.
        let cond = AllowList::parse(
            "[[class]]\nname='c'\nreason='r'\nopcodes=['*']\nany=true\n\
             cpu286_exception=[6]\nmodrm_reg=[4,5]\nmin_length=2\n",
        )
        .unwrap();
        fn info(exc: Option<u8>, len: usize, head: &Head) -> TestInfo<'_> {
            TestInfo {
                key: "8E",
                head,
                diffs: &[],
                exception_286: exc,
                insn_len: len,
            }
        }
        let fs = &Head::decode(&[0x8E, 0xE0]);
        let es = &Head::decode(&[0x8E, 0xC0]);
        assert!(cond.classes[0].applies(&info(Some(6), 2, fs)));
        assert!(!cond.classes[0].applies(&info(None, 2, fs)));
        assert!(!cond.classes[0].applies(&info(Some(6), 1, fs)));
        assert!(!cond.classes[0].applies(&info(Some(6), 2, es)));
        assert!(matches!(
            judge(&a, "8D", &lea_mem, std::slice::from_ref(&ip)),
            Verdict::Failed(_)
        ));
        assert!(matches!(
            judge(&a, "8C", &lea_reg, &[ip]),
            Verdict::Failed(_)
        ));
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
        let bad_modrm = "[[class]]\nname='x'\nreason='r'\nopcodes=['*']\nany=true\nmodrm_reg=[8]\n";
        assert!(AllowList::parse(bad_modrm).is_err());
        assert!(AllowList::parse(unknown).is_err());
    }
}
