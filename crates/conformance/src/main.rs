//! `wasm86-conformance`: runs the single-step suite or the fuzzer against the wasm86 CPU.
//!
//! ```text
//! wasm86-conformance singlestep DIR [--only OPCODE] [--verbose] [--allow-list FILE] [--report FILE]
//! wasm86-conformance fuzz [--count N] [--seed S] [--time-limit SECS] [--report FILE]
//! ```
//! Exit status: 0 when the run completed (even with failures), 2 on bad usage or unreadable
//! data.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use wasm86_conformance::allow::AllowList;
use wasm86_conformance::{fuzz, report, singlestep};

/// The committed allow-list, used unless `--allow-list` names another.
const DEFAULT_ALLOW_LIST: &str = include_str!("../allow-list.toml");

const USAGE: &str = "usage: wasm86-conformance singlestep DIR [--only OPCODE] [--verbose] \
[--allow-list FILE] [--report FILE]\n       wasm86-conformance fuzz [--count N] [--seed S] \
[--time-limit SECS] [--report FILE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("wasm86-conformance: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Takes the value of option `name` at `args[*i]`.
fn value<'a>(args: &'a [String], i: &mut usize, name: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(|s| s.as_str())
        .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
}

fn number<T: std::str::FromStr>(s: &str, name: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{name}: not a number: {s:?}"))
}

fn report_path(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| std::env::var_os(report::REPORT_ENV).map(PathBuf::from))
}

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(|s| s.as_str()) {
        Some("singlestep") => run_singlestep(&args[1..]),
        Some("fuzz") => run_fuzz(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    }
}

fn run_singlestep(args: &[String]) -> Result<(), String> {
    let mut dir = None;
    let mut opts = singlestep::Options::default();
    let mut allow_path = None;
    let mut report_to = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--only" => opts.only = Some(value(args, &mut i, "--only")?.to_string()),
            "--verbose" | "-v" => opts.verbose = true,
            "--allow-list" => {
                allow_path = Some(PathBuf::from(value(args, &mut i, "--allow-list")?))
            }
            "--report" => report_to = Some(PathBuf::from(value(args, &mut i, "--report")?)),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s if dir.is_none() => dir = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}\n{USAGE}")),
        }
        i += 1;
    }
    let dir = dir.ok_or_else(|| format!("singlestep needs a directory\n{USAGE}"))?;
    opts.allow = match &allow_path {
        Some(p) => AllowList::load(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => {
            AllowList::parse(DEFAULT_ALLOW_LIST).map_err(|e| format!("built-in allow-list: {e}"))?
        }
    };
    let mut stdout = std::io::stdout().lock();
    let summary = singlestep::run_dir(&dir, &opts, &mut stdout).map_err(|e| e.to_string())?;
    let text = summary.render(&opts.allow);
    // A closed stdout (a pager quit early) is not an error of the run.
    let _ = write!(stdout, "{text}");
    drop(stdout);
    if let Some(p) = report_path(report_to) {
        let title = format!("Single-step (80286 real mode, {})", dir.display());
        let body = summary.report_body(&opts.allow, &title);
        report::update(&p, "singlestep", &body).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

fn run_fuzz(args: &[String]) -> Result<(), String> {
    let mut cfg = fuzz::Config {
        count: 10_000_000,
        time_limit: Some(Duration::from_secs(120)),
        ..Default::default()
    };
    let mut report_to = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--count" => cfg.count = number(value(args, &mut i, "--count")?, "--count")?,
            "--seed" => cfg.seed = number(value(args, &mut i, "--seed")?, "--seed")?,
            "--time-limit" => {
                let secs: u64 = number(value(args, &mut i, "--time-limit")?, "--time-limit")?;
                cfg.time_limit = Some(Duration::from_secs(secs));
            }
            "--report" => report_to = Some(PathBuf::from(value(args, &mut i, "--report")?)),
            s => return Err(format!("unknown argument {s}\n{USAGE}")),
        }
        i += 1;
    }
    let report_to = report_path(report_to);
    cfg.report = report_to.clone();
    let mut f = fuzz::Fuzzer::new();
    let stats = f.run(&cfg);
    let text = stats.render(&cfg);
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{text}");
    let _ = writeln!(stdout, "{} instructions executed", stats.instructions);
    drop(stdout);
    if let Some(p) = report_to {
        report::update(
            &p,
            "fuzz",
            &format!(
                "## Fuzzer (`fuzz --count {} --seed {}`)\n\n{text}",
                cfg.count, cfg.seed
            ),
        )
        .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}
