//! Random instruction streams in every mode: no panic, `run` keeps its contract.

use wasm86_conformance::fuzz::{Config, Fuzzer, Mode};
use wasm86_conformance::report;

#[test]
fn fuzz_one_million_instructions() {
    let mut f = Fuzzer::new();
    let cfg = Config {
        seed: 0x5EED_0001,
        count: 1_000_000,
        report: std::env::var_os(report::REPORT_ENV).map(Into::into),
        ..Default::default()
    };
    let stats = f.run(&cfg);
    let text = stats.render(&cfg);
    println!("{text}");
    report::update_from_env(
        "fuzz",
        &format!("## Fuzzer (test, {} instructions)\n\n{text}", cfg.count),
    );
    assert!(
        stats.mode_errors.is_empty(),
        "modes not entered: {:?}",
        stats.mode_errors
    );
    // Every mode is fuzzed; only V86 may be missing, while the CPU does not implement it.
    assert!(
        f.unsupported().iter().all(|u| u.starts_with("v86:")),
        "unsupported modes: {:?}",
        f.unsupported()
    );
    let expected: Vec<Mode> = Mode::ALL
        .into_iter()
        .filter(|m| *m != Mode::V86 || f.unsupported().is_empty())
        .collect();
    assert_eq!(f.modes(), expected);
    assert!(stats
        .per_mode
        .iter()
        .zip(Mode::ALL)
        .all(|(n, m)| *n > 0 || !expected.contains(&m)));
    assert!(stats.findings.is_empty(), "fuzzer findings:\n{text}");
    assert!(
        stats.instructions >= cfg.count,
        "only {} instructions ran",
        stats.instructions
    );
    // Exceptions were raised and delivered to the handlers.
    assert!(
        stats.exits[1] > 0,
        "no stream reached an exception handler or HLT"
    );
    assert!(
        stats.vectors.iter().filter(|n| **n > 0).count() >= 3,
        "few exception vectors seen: {text}"
    );
}
