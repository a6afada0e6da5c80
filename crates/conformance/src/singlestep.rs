//! Runner for the hardware-captured 80286 real-mode single-step tests.
//!
//! Each test puts the CPU in real mode with the test's initial registers and memory, runs
//! exactly one instruction (a REP string instruction runs until it completes, one iteration
//! per step), and compares registers and memory with the captured final state, after
//! applying the metadata flag masks and the `RMSK` undefined-bit masks. Differences that
//! the allow-list attributes to a real 286-versus-P6 difference make a test "allowed".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wasm86_cpu::{Bus, CpuExit};
use wasm86_memory::{PAGE_SHIFT, PAGE_SIZE};

use crate::allow::{AllowList, TestInfo, Verdict};
use crate::diff::{Diff, RamKind};
use crate::harness::{Harness, GPR32_NAMES};
use crate::insn::Head;
use crate::metadata::Metadata;
use crate::moo::{self, MooError, Reg, Regs16, Test};

/// Most steps one REP string instruction may take (CX is 16 bits).
const MAX_REP_STEPS: u32 = 0x1_0001;

/// Segment of the sentinel handlers: vector `v` is handled at `SENTINEL_CS:v` by a HLT, so
/// an exception the test does not expect is recognised by the final CS:IP.
const SENTINEL_CS: u16 = 0xE000;

/// Vectors given a sentinel handler (when the test does not provide the IVT entry).
const SENTINEL_VECTORS: u8 = 32;

/// Errors that stop a run (unreadable data).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The test directory is missing or unreadable.
    #[error("{path}: {source}")]
    Dir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// No test files were found.
    #[error("{0}: no *.MOO.gz files found")]
    Empty(PathBuf),
    /// `--only` matched no file.
    #[error("no test file matches opcode {0:?}")]
    NoMatch(String),
    /// A test file is unreadable or corrupt.
    #[error("{path}: {source}")]
    Moo {
        /// File.
        path: PathBuf,
        /// Cause.
        source: MooError,
    },
    /// `metadata.json` is unreadable.
    #[error("{path}: {source}")]
    Metadata {
        /// File.
        path: PathBuf,
        /// Cause.
        source: crate::metadata::MetadataError,
    },
    /// The revocation list is unreadable.
    #[error("{path}: {source}")]
    Revocation {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Run options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Run only files whose key is this opcode ("F6" runs every "F6.x"; "F6.4" one file).
    pub only: Option<String>,
    /// Print every failing test, not only the first per opcode.
    pub verbose: bool,
    /// Classes of allowed mismatches.
    pub allow: AllowList,
}

/// One test file found under the suite directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteFile {
    /// Key: the file name without `.MOO.gz` ("80.1").
    pub key: String,
    /// Path.
    pub path: PathBuf,
}

/// A failing test kept as an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// File key.
    pub key: String,
    /// Signature of its differences (see [`crate::diff::signature`]).
    pub signature: String,
    /// Test index in its file.
    pub index: u32,
    /// Disassembly.
    pub name: String,
    /// Instruction bytes.
    pub bytes: Vec<u8>,
    /// Unexcused differences.
    pub diffs: Vec<Diff>,
    /// Initial registers, for reproducing.
    pub init: String,
}

/// Initial registers as text ("ax=1234 bx=...").
pub fn regs_text(r: &Regs16) -> String {
    Reg::ALL
        .iter()
        .map(|x| format!("{}={:04x}", x.name(), r.values[*x as usize]))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Examples kept per file.
pub const MAX_EXAMPLES: usize = 4;

/// Results for one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileResult {
    /// File key.
    pub key: String,
    /// Tests run (revoked ones excluded).
    pub total: u64,
    /// Tests with no difference.
    pub passed: u64,
    /// Tests whose differences are all excused by the allow-list.
    pub allowed: u64,
    /// Failing tests.
    pub failed: u64,
    /// Revoked tests skipped.
    pub revoked: u64,
    /// The first failing test of each distinct signature (at most [`MAX_EXAMPLES`]).
    pub examples: Vec<Failure>,
    /// Failing tests per signature.
    pub signatures: BTreeMap<String, u64>,
    /// Tests per allow-list class name.
    pub allowed_by: BTreeMap<String, u64>,
}

/// Results of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per file, in key order.
    pub files: Vec<FileResult>,
}

impl Summary {
    fn sum(&self, f: impl Fn(&FileResult) -> u64) -> u64 {
        self.files.iter().map(f).sum()
    }

    /// Tests that passed outright.
    pub fn passed(&self) -> u64 {
        self.sum(|f| f.passed)
    }

    /// Tests excused by the allow-list.
    pub fn allowed(&self) -> u64 {
        self.sum(|f| f.allowed)
    }

    /// Tests that failed.
    pub fn failed(&self) -> u64 {
        self.sum(|f| f.failed)
    }

    /// Tests run.
    pub fn total(&self) -> u64 {
        self.sum(|f| f.total)
    }

    /// Revoked tests skipped.
    pub fn revoked(&self) -> u64 {
        self.sum(|f| f.revoked)
    }

    /// Share of tests that did not fail ((passed + allowed) / total); 0 for an empty run.
    pub fn pass_ratio(&self) -> f64 {
        let t = self.total();
        if t == 0 {
            0.0
        } else {
            (self.passed() + self.allowed()) as f64 / t as f64
        }
    }

    /// Tests per allow-list class.
    pub fn allowed_by(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for f in &self.files {
            for (k, v) in &f.allowed_by {
                *m.entry(k.clone()).or_insert(0) += v;
            }
        }
        m
    }

    /// The exact closing line: `N passed, M failed`.
    pub fn summary_line(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }

    /// Failing tests per signature over all files: (signature, count, files, first example),
    /// most frequent first.
    pub fn by_signature(&self) -> Vec<(String, u64, usize, Option<&Failure>)> {
        let mut m: BTreeMap<&str, (u64, usize, Option<&Failure>)> = BTreeMap::new();
        for f in &self.files {
            for (sig, n) in &f.signatures {
                let e = m.entry(sig.as_str()).or_insert((0, 0, None));
                e.0 += n;
                e.1 += 1;
                if e.2.is_none() {
                    e.2 = f.examples.iter().find(|x| &x.signature == sig);
                }
            }
        }
        let mut v: Vec<_> = m
            .into_iter()
            .map(|(k, (n, files, ex))| (k.to_string(), n, files, ex))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The failure table (Markdown): per file with failures, the first failing test of each
    /// distinct signature.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "| opcode | failed/total | allowed | failing test (tests with this signature) | differences | initial registers |\n",
        );
        s.push_str("|---|---|---|---|---|---|\n");
        for f in self.files.iter().filter(|f| f.failed > 0) {
            for (i, x) in f.examples.iter().enumerate() {
                let (count, allowed) = if i == 0 {
                    (format!("{}/{}", f.failed, f.total), f.allowed.to_string())
                } else {
                    (String::new(), String::new())
                };
                let n = f.signatures.get(&x.signature).copied().unwrap_or(0);
                let diffs: Vec<String> = x.diffs.iter().map(|d| d.to_string()).collect();
                let _ = writeln!(
                    s,
                    "| {} | {count} | {allowed} | #{} `{}` [{}] ({n}) | {} | {} |",
                    f.key,
                    x.index,
                    x.name,
                    hex_bytes(&x.bytes),
                    diffs.join("; "),
                    x.init
                );
            }
        }
        s
    }

    /// The failure signatures, allowed classes, counts and the summary line last.
    pub fn render_summary(&self, allow: &AllowList) -> String {
        let mut s = String::new();
        let sigs = self.by_signature();
        if !sigs.is_empty() {
            s.push_str("failures by signature (tests, files, first example):\n");
            for (sig, n, files, ex) in &sigs {
                let ex = ex
                    .map(|x| format!("{} #{} {}", x.key, x.index, x.name))
                    .unwrap_or_default();
                let _ = writeln!(s, "  {sig:<40} {n:>7} {files:>4}  {ex}");
            }
        }
        let by = self.allowed_by();
        if !by.is_empty() {
            s.push_str("allowed classes (tests may count in several):\n");
            for c in &allow.classes {
                if let Some(n) = by.get(&c.name) {
                    let _ = writeln!(
                        s,
                        "  {:<24} {:>8}  {}",
                        c.name,
                        n,
                        c.reason.lines().next().unwrap_or("")
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "{} tests in {} files: {} passed, {} allowed, {} failed, {} revoked skipped; pass ratio {:.4}%",
            self.total(),
            self.files.len(),
            self.passed(),
            self.allowed(),
            self.failed(),
            self.revoked(),
            100.0 * self.pass_ratio()
        );
        s.push_str(&self.summary_line());
        s.push('\n');
        s
    }

    /// The report body for the Markdown file: summary in a code block, then the table.
    pub fn report_body(&self, allow: &AllowList, title: &str) -> String {
        format!(
            "## {title}\n\n```\n{}```\n\n{}",
            self.render_summary(allow),
            self.table()
        )
    }

    /// The full text report: table, then [`Summary::render_summary`] (summary line last).
    pub fn render(&self, allow: &AllowList) -> String {
        let mut s = String::new();
        if self.failed() > 0 {
            s.push_str(&self.table());
            s.push('\n');
        }
        s.push_str(&self.render_summary(allow));
        s
    }
}

/// Instruction bytes as hex.
pub fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds every `*.MOO.gz` under `dir` (recursively), sorted by key then path.
pub fn discover(dir: &Path) -> Result<Vec<SuiteFile>, RunError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| RunError::Dir {
            path: d.clone(),
            source: e,
        })?;
        for e in rd {
            let e = e.map_err(|e| RunError::Dir {
                path: d.clone(),
                source: e,
            })?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                if let Some(key) = name
                    .strip_suffix(".MOO.gz")
                    .or_else(|| name.strip_suffix(".moo.gz"))
                {
                    out.push(SuiteFile {
                        key: key.to_ascii_uppercase(),
                        path: p.clone(),
                    });
                }
            }
        }
    }
    if out.is_empty() {
        return Err(RunError::Empty(dir.to_path_buf()));
    }
    out.sort_by(|a, b| a.key.cmp(&b.key).then(a.path.cmp(&b.path)));
    Ok(out)
}

/// Finds `name` in `dir` or one of its ancestors.
fn find_up(dir: &Path, name: &str) -> Option<PathBuf> {
    dir.ancestors().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Reads a revocation list: one hex hash per line, `#` comments.
pub fn parse_revocations(text: &str) -> HashSet<String> {
    text.lines()
        .map(|l| {
            l.split('#')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether `key` is selected by `--only`.
fn selected(only: &Option<String>, key: &str) -> bool {
    match only {
        None => true,
        Some(o) => {
            let o = o.to_ascii_uppercase();
            key == o || key.split('.').next() == Some(o.as_str())
        }
    }
}

/// Runs the suite under `dir`, printing progress lines (verbose failures) to `log`.
pub fn run_dir(
    dir: &Path,
    opts: &Options,
    log: &mut dyn std::io::Write,
) -> Result<Summary, RunError> {
    let files: Vec<SuiteFile> = discover(dir)?
        .into_iter()
        .filter(|f| selected(&opts.only, &f.key))
        .collect();
    if files.is_empty() {
        return Err(RunError::NoMatch(opts.only.clone().unwrap_or_default()));
    }
    // Revocation lists and metadata are looked up from each file's folder upwards (the
    // suite keeps them beside or above its files, below the directory given).
    let mut revocations: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut metas: HashMap<PathBuf, Metadata> = HashMap::new();
    let mut runner = Runner::new();
    let mut summary = Summary::default();
    for f in &files {
        let fdir = f.path.parent().unwrap_or(dir).to_path_buf();
        if !metas.contains_key(&fdir) {
            let m = match find_up(&fdir, "metadata.json") {
                Some(p) => {
                    Metadata::load(&p).map_err(|e| RunError::Metadata { path: p, source: e })?
                }
                None => Metadata::default(),
            };
            metas.insert(fdir.clone(), m);
        }
        let meta = &metas[&fdir];
        if !revocations.contains_key(&fdir) {
            let r = match find_up(&fdir, "revocation_list.txt") {
                Some(p) => {
                    let t = std::fs::read_to_string(&p).map_err(|e| RunError::Revocation {
                        path: p.clone(),
                        source: e,
                    })?;
                    parse_revocations(&t)
                }
                None => HashSet::new(),
            };
            revocations.insert(fdir.clone(), r);
        }
        let revoked = &revocations[&fdir];
        let moo = moo::read_gz(&f.path).map_err(|e| RunError::Moo {
            path: f.path.clone(),
            source: e,
        })?;
        let mut res = FileResult {
            key: f.key.clone(),
            ..Default::default()
        };
        let flags_mask = meta.flags_mask(&f.key);
        for t in &moo.tests {
            if !revoked.is_empty() && revoked.contains(&t.hash_hex()) {
                res.revoked += 1;
                continue;
            }
            res.total += 1;
            let diffs = runner.run_test(t, flags_mask, moo.rmsk.as_ref());
            if diffs.is_empty() {
                res.passed += 1;
                continue;
            }
            let head = Head::decode(&t.bytes);
            let info = TestInfo {
                key: &f.key,
                head: &head,
                diffs: &diffs,
                exception_286: t.exception.map(|e| e.vector),
                insn_len: t.bytes.len().saturating_sub(1),
            };
            match opts.allow.judge(&info) {
                Verdict::Allowed(classes) => {
                    res.allowed += 1;
                    for c in classes {
                        *res.allowed_by
                            .entry(opts.allow.classes[c].name.clone())
                            .or_insert(0) += 1;
                    }
                }
                Verdict::Failed(bad) => {
                    res.failed += 1;
                    if opts.verbose {
                        let d: Vec<String> = bad.iter().map(|d| d.to_string()).collect();
                        let _ = writeln!(
                            log,
                            "FAIL {} #{} {} [{}]: {} | initial {}",
                            f.key,
                            t.index,
                            t.name,
                            hex_bytes(&t.bytes),
                            d.join("; "),
                            regs_text(&t.init.regs)
                        );
                    }
                    let sig = crate::diff::signature(&bad);
                    let seen = res.signatures.contains_key(&sig);
                    *res.signatures.entry(sig.clone()).or_insert(0) += 1;
                    if !seen && res.examples.len() < MAX_EXAMPLES {
                        res.examples.push(Failure {
                            key: f.key.clone(),
                            signature: sig,
                            index: t.index,
                            name: t.name.clone(),
                            bytes: t.bytes.clone(),
                            diffs: bad,
                            init: regs_text(&t.init.regs),
                        });
                    }
                }
            }
        }
        summary.files.push(res);
    }
    Ok(summary)
}

/// Whether the instruction is a REP-prefixed string instruction (runs several steps).
fn is_rep_string(head: &Head) -> bool {
    head.prefixes.iter().any(|p| *p == 0xF2 || *p == 0xF3)
        && matches!(head.opcode, Some(0x6C..=0x6F | 0xA4..=0xA7 | 0xAA..=0xAF))
}

/// Executes tests on one CPU and bus, restoring memory to all-zero between tests.
pub struct Runner {
    h: Harness,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl Runner {
    /// A runner with a fresh CPU and zeroed 16 MiB bus, dirty logging on (to find stray
    /// writes).
    pub fn new() -> Runner {
        let mut h = Harness::new();
        h.bus.memory().start_dirty_log();
        Runner { h }
    }

    /// Runs one test; returns the differences after masks (empty: passed).
    pub fn run_test(&mut self, t: &Test, flags_mask: u16, file_rmsk: Option<&Regs16>) -> Vec<Diff> {
        let h = &mut self.h;
        for &(a, v) in &t.init.ram {
            h.write_byte(a, v);
        }
        // Sentinel handlers for the vectors whose IVT entry the test leaves free.
        let listed: HashSet<u32> = t.init.ram.iter().map(|&(a, _)| a).collect();
        let mut sentinels: Vec<(u32, u8)> = Vec::new();
        for v in 0..SENTINEL_VECTORS {
            let ivt = 4 * v as u32;
            let handler = ((SENTINEL_CS as u32) << 4) + v as u32;
            if (ivt..ivt + 4).chain([handler]).any(|a| listed.contains(&a)) {
                continue;
            }
            let cs = SENTINEL_CS.to_le_bytes();
            for (a, b) in [
                (ivt, v),
                (ivt + 1, 0),
                (ivt + 2, cs[0]),
                (ivt + 3, cs[1]),
                (handler, 0xF4),
            ] {
                h.write_byte(a, b);
                sentinels.push((a, b));
            }
        }
        h.bus.memory().sync_dirty();
        h.load_real_mode(&t.init.regs);
        let head = Head::decode(&t.bytes);
        let mut diffs = Vec::new();

        let (mut exit, mut n) = h.step();
        if is_rep_string(&head) {
            let (cs0, ip0) = (
                t.init.regs.values[Reg::Cs as usize],
                t.init.regs.values[Reg::Ip as usize],
            );
            let mut steps = 1;
            while exit == CpuExit::Limit && n == 1 && steps < MAX_REP_STEPS {
                let (r, _) = h.read_regs();
                if r[Reg::Cs as usize] != cs0 || r[Reg::Ip as usize] != ip0 {
                    break;
                }
                (exit, n) = h.step();
                steps += 1;
            }
        }
        // The suite places a HLT after the instruction (and at every jump target and
        // handler); the captured final state is after that HLT. When the instruction halts
        // (HLT itself, or a fault delivered to a handler that starts with the HLT, within the
        // same step), the state is complete; otherwise one more step must run the HLT.
        match exit {
            CpuExit::Halted => {}
            CpuExit::Limit if n <= 1 => {
                // One more step runs the HLT; a delivered exception may have used a step of
                // its own without retiring an instruction, so allow one extra.
                let mut e2 = h.step().0;
                if e2 == CpuExit::Limit && n == 0 {
                    e2 = h.step().0;
                }
                if e2 != CpuExit::Halted {
                    let (r, _) = h.read_regs();
                    diffs.push(Diff::Exit {
                        what: format!(
                            "{e2:?} instead of halting at the HLT that follows (now at {:04x}:{:04x})",
                            r[Reg::Cs as usize],
                            r[Reg::Ip as usize]
                        ),
                    });
                }
            }
            _ => diffs.push(Diff::Exit {
                what: format!("{exit:?} after {n} instructions"),
            }),
        }

        // An exception the 286 did not raise ends at a sentinel handler.
        let (fin, _) = h.read_regs();
        if fin[Reg::Cs as usize] == SENTINEL_CS {
            let v = fin[Reg::Ip as usize].wrapping_sub(1);
            let installed = sentinels
                .iter()
                .any(|&(a, _)| a == ((SENTINEL_CS as u32) << 4) + v as u32);
            if v < SENTINEL_VECTORS as u16 && installed {
                diffs.push(Diff::Fault { vector: v as u8 });
            }
        }

        // A P6 must refuse LOCK on anything but a read-modify-write of memory (#UD),
        // whatever the 286 did.
        let ud_sentinel = sentinels
            .iter()
            .any(|&(a, _)| a == ((SENTINEL_CS as u32) << 4) + 6);
        if head.has_lock()
            && !head.lock_legal_on_p6()
            && ud_sentinel
            && !diffs.contains(&Diff::Fault { vector: 6 })
        {
            diffs.push(Diff::Missing {
                vector: 6,
                why: "LOCK prefix on an instruction that is not a read-modify-write of memory",
            });
        }

        // Registers.
        let rmsk = t.fina.rmsk.as_ref().or(file_rmsk);
        let (got, wide) = h.read_regs();
        for r in Reg::ALL {
            let i = r as usize;
            let expected = t.fina.regs.get(r).unwrap_or(t.init.regs.values[i]);
            let undefined = rmsk.and_then(|m| m.get(r)).unwrap_or(0);
            let mut mask = !undefined;
            if r == Reg::Flags {
                mask &= flags_mask;
            }
            if (expected ^ got[i]) & mask != 0 {
                diffs.push(Diff::Reg {
                    reg: r,
                    expected,
                    got: got[i],
                    mask,
                });
            }
        }
        for (i, w) in wide.iter().enumerate() {
            if w >> 16 != 0 {
                diffs.push(Diff::High {
                    name: GPR32_NAMES.get(i).copied().unwrap_or("eip"),
                    got: *w,
                });
            }
        }

        // Memory: expected bytes, with the pushed FLAGS image masked like FLAGS. The image
        // lies just above the final stack pointer: SS:SP+4 after an interrupt or exception
        // (IP, CS, FLAGS), SS:SP after PUSHF. (Computed here: the EXCP address of the suite
        // is off by one when SP is odd.)
        let fin_reg = |r: Reg| t.fina.regs.get(r).unwrap_or(t.init.regs.values[r as usize]) as u32;
        let flags_at = match (t.exception, head.opcode) {
            (Some(_), _) => Some(4),
            (None, Some(0x9C)) => Some(0),
            _ => None,
        }
        .map(|off| {
            let (ss, sp) = (fin_reg(Reg::Ss) << 4, fin_reg(Reg::Sp));
            (ss + ((sp + off) & 0xFFFF), ss + ((sp + off + 1) & 0xFFFF))
        });
        let fmask = flags_mask & !rmsk.and_then(|m| m.get(Reg::Flags)).unwrap_or(0);
        let mut expected_at: HashMap<u32, u8> =
            HashMap::with_capacity(t.init.ram.len() + t.fina.ram.len());
        for &(a, v) in t.init.ram.iter().chain(&sentinels) {
            expected_at.insert(a, v);
        }
        let mut checked: HashSet<u32> = HashSet::with_capacity(t.fina.ram.len());
        for &(a, v) in &t.fina.ram {
            expected_at.insert(a, v);
            checked.insert(a);
            let g = h.read_byte(a);
            let (kind, m) = match flags_at {
                Some((lo, _)) if a == lo => (RamKind::PushedFlags { high: false }, fmask as u8),
                Some((_, hi)) if a == hi => {
                    (RamKind::PushedFlags { high: true }, (fmask >> 8) as u8)
                }
                _ => (RamKind::Expected, 0xFF),
            };
            if (g ^ v) & m != 0 {
                diffs.push(Diff::Ram {
                    addr: a,
                    expected: v,
                    got: g,
                    mask: m,
                    kind,
                });
            }
        }

        // Stray writes: pages the CPU wrote must hold only the expected bytes (zero where
        // the test lists nothing).
        let dirty = h.bus.memory().sync_dirty();
        let mut buf = vec![0u8; PAGE_SIZE];
        for &page in &dirty {
            let base = page << PAGE_SHIFT;
            h.bus.memory().read_phys(base, &mut buf);
            for (i, &g) in buf.iter().enumerate() {
                let a = base + i as u32;
                if g != 0 && !checked.contains(&a) {
                    let e = expected_at.get(&a).copied().unwrap_or(0);
                    if g != e {
                        diffs.push(Diff::Ram {
                            addr: a,
                            expected: e,
                            got: g,
                            mask: 0xFF,
                            kind: RamKind::Stray,
                        });
                    }
                }
            }
        }
        for (&a, &e) in &expected_at {
            if e != 0
                && !checked.contains(&a)
                && dirty.contains(&(a >> PAGE_SHIFT))
                && h.read_byte(a) == 0
            {
                diffs.push(Diff::Ram {
                    addr: a,
                    expected: e,
                    got: 0,
                    mask: 0xFF,
                    kind: RamKind::Stray,
                });
            }
        }

        // Restore all-zero memory for the next test.
        for &(a, _) in t.init.ram.iter().chain(&t.fina.ram).chain(&sentinels) {
            h.write_byte(a, 0);
        }
        let zeros = [0u8; PAGE_SIZE];
        for page in dirty {
            h.bus.memory().write_phys(page << PAGE_SHIFT, &zeros);
        }
        h.bus.memory().sync_dirty();
        diffs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_list_parsing() {
        let r = parse_revocations("# comment\n\nABCDEF # bad\n  0123  \n");
        assert!(r.contains("abcdef") && r.contains("0123"));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn only_selection() {
        assert!(selected(&None, "00"));
        assert!(selected(&Some("f6".into()), "F6.4"));
        assert!(selected(&Some("F6.4".into()), "F6.4"));
        assert!(!selected(&Some("F6.4".into()), "F6.5"));
        assert!(!selected(&Some("F".into()), "F6.5"));
    }

    #[test]
    fn rep_detection() {
        assert!(is_rep_string(&Head::decode(&[0xF3, 0xA4])));
        assert!(is_rep_string(&Head::decode(&[0x26, 0xF2, 0xAE])));
        assert!(!is_rep_string(&Head::decode(&[0xA4])));
        assert!(!is_rep_string(&Head::decode(&[0xF3, 0x90])));
    }

    #[test]
    fn summary_lines() {
        let s = Summary {
            files: vec![FileResult {
                key: "00".into(),
                total: 10,
                passed: 7,
                allowed: 1,
                failed: 2,
                examples: vec![Failure {
                    key: "00".into(),
                    signature: "ax".into(),
                    index: 3,
                    name: "add al,bl".into(),
                    bytes: vec![0, 0xD8],
                    diffs: vec![Diff::Reg {
                        reg: Reg::Ax,
                        expected: 1,
                        got: 2,
                        mask: 0xFFFF,
                    }],
                    init: "ax=0001".into(),
                }],
                signatures: [("ax".to_string(), 2)].into_iter().collect(),
                ..Default::default()
            }],
        };
        assert_eq!(s.summary_line(), "7 passed, 2 failed");
        assert!((s.pass_ratio() - 0.8).abs() < 1e-9);
        let text = s.render(&AllowList::default());
        assert!(text.ends_with("7 passed, 2 failed\n"));
        assert!(text.contains("  ax "), "{text}");
        assert_eq!(s.by_signature()[0].1, 2);
        assert!(text.contains(
            "| 00 | 2/10 | 1 | #3 `add al,bl` [00 D8] (2) | ax: expected 0x0001 got 0x0002 | ax=0001 |"
        ));
    }
    /// A real-mode test at 0000:0100 with SS:SP = 0000:FFFE and the given code (a HLT is
    /// appended); `fina` lists the registers expected to change.
    fn synthetic(
        code: &[u8],
        init: &[(Reg, u16)],
        fina: &[(Reg, u16)],
        fina_ram: &[(u32, u8)],
    ) -> Test {
        let mut regs = Regs16 {
            present: 0x3FFF,
            values: [0; 14],
        };
        regs.values[Reg::Sp as usize] = 0xFFFE;
        regs.values[Reg::Ip as usize] = 0x100;
        regs.values[Reg::Flags as usize] = 0x0002;
        for &(r, v) in init {
            regs.values[r as usize] = v;
        }
        let mut bytes = code.to_vec();
        bytes.push(0xF4);
        let ram = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| (0x100 + i as u32, *b))
            .collect();
        let mut f = Regs16::default();
        for &(r, v) in fina {
            f.present |= 1 << r as u8;
            f.values[r as usize] = v;
        }
        Test {
            index: 0,
            name: "synthetic".into(),
            bytes,
            init: moo::State {
                regs,
                ram,
                rmsk: None,
            },
            fina: moo::State {
                regs: f,
                ram: fina_ram.to_vec(),
                rmsk: None,
            },
            exception: None,
            hash: None,
        }
    }

    #[test]
    fn runner_passes_a_correct_test_and_reports_register_differences() {
        let mut r = Runner::new();
        // INC AX; the final IP is past the HLT that follows.
        let ok = synthetic(
            &[0x40],
            &[(Reg::Ax, 1)],
            &[(Reg::Ax, 2), (Reg::Ip, 0x102)],
            &[],
        );
        assert_eq!(r.run_test(&ok, 0xFFFF, None), vec![]);
        let wrong = synthetic(
            &[0x40],
            &[(Reg::Ax, 1)],
            &[(Reg::Ax, 3), (Reg::Ip, 0x102)],
            &[],
        );
        let d = r.run_test(&wrong, 0xFFFF, None);
        assert_eq!(
            d,
            vec![Diff::Reg {
                reg: Reg::Ax,
                expected: 3,
                got: 2,
                mask: 0xFFFF
            }]
        );
        // The same correct test again: the runner left no state behind.
        assert_eq!(r.run_test(&ok, 0xFFFF, None), vec![]);
    }

    #[test]
    fn runner_finds_stray_writes_and_unexpected_exceptions() {
        let mut r = Runner::new();
        // MOV [0200h],AL writes a byte the test does not list.
        let t = synthetic(
            &[0xA2, 0x00, 0x02],
            &[(Reg::Ax, 0x55)],
            &[(Reg::Ip, 0x104)],
            &[],
        );
        let d = r.run_test(&t, 0xFFFF, None);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(matches!(
            d[0],
            Diff::Ram {
                addr: 0x200,
                got: 0x55,
                kind: RamKind::Stray,
                ..
            }
        ));
        // Listed, it passes.
        let t = synthetic(
            &[0xA2, 0x00, 0x02],
            &[(Reg::Ax, 0x55)],
            &[(Reg::Ip, 0x104)],
            &[(0x200, 0x55)],
        );
        assert_eq!(r.run_test(&t, 0xFFFF, None), vec![]);
        // INT3 whose IVT entry the test does not give reaches the sentinel handler.
        let t = synthetic(&[0xCC], &[], &[(Reg::Ip, 0x102)], &[]);
        let d = r.run_test(&t, 0xFFFF, None);
        assert!(d.contains(&Diff::Fault { vector: 3 }), "{d:?}");
    }

    #[test]
    fn runner_completes_rep_string_instructions() {
        let mut r = Runner::new();
        // REP STOSB with CX=3 at ES:DI = 0000:0300.
        let t = synthetic(
            &[0xF3, 0xAA],
            &[(Reg::Ax, 0x11), (Reg::Cx, 3), (Reg::Di, 0x300)],
            &[(Reg::Cx, 0), (Reg::Di, 0x303), (Reg::Ip, 0x103)],
            &[(0x300, 0x11), (0x301, 0x11), (0x302, 0x11)],
        );
        assert_eq!(r.run_test(&t, 0xFFFF, None), vec![]);
    }
}
