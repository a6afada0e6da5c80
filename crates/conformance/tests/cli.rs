//! The command-line runner: usage errors, unreadable or corrupt data (exit status 2 with a
//! one-line message, never a panic), and the summary line of a real run.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasm86-conformance"))
}

fn suite_file(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/singlestep/80286/v1_real_mode")
        .join(name);
    assert!(
        p.is_file(),
        "single-step test data missing: {}",
        p.display()
    );
    p
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wasm86-conformance-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_clean_error(code: i32, stderr: &str) {
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(
        stderr.starts_with("wasm86-conformance: "),
        "stderr: {stderr}"
    );
}

#[test]
fn bad_usage_exits_2() {
    let (code, _, err) = run(&[]);
    assert_clean_error(code, &err);
    let (code, _, err) = run(&["singlestep"]);
    assert_clean_error(code, &err);
    let (code, _, err) = run(&["singlestep", ".", "--bogus"]);
    assert_clean_error(code, &err);
    let (code, _, err) = run(&["fuzz", "--count", "many"]);
    assert_clean_error(code, &err);
}

#[test]
fn missing_directory_exits_2() {
    let (code, _, err) = run(&["singlestep", "/nonexistent/wasm86/singlestep"]);
    assert_clean_error(code, &err);
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
}

fn corrupt_case(tag: &str, data: &[u8]) {
    let d = temp_dir(tag);
    std::fs::write(d.join("00.MOO.gz"), data).unwrap();
    let (code, out, err) = run(&["singlestep", d.to_str().unwrap()]);
    assert_clean_error(code, &err);
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    assert!(err.contains("00.MOO.gz"), "the error names the file: {err}");
    assert!(
        !out.contains("passed"),
        "no summary for unreadable data: {out}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

fn gunzip(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap())
        .read_to_end(&mut v)
        .unwrap();
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn truncated_gzip_exits_2() {
    let gz = std::fs::read(suite_file("00.MOO.gz")).unwrap();
    corrupt_case("truncgz", &gz[..gz.len() / 2]);
}

#[test]
fn truncated_and_corrupt_moo_exit_2() {
    let raw = gunzip(&suite_file("00.MOO.gz"));
    // Cut in the middle of a test.
    corrupt_case("truncmoo", &gzip(&raw[..raw.len() / 3]));
    // A chunk length pointing far past the end: the first TEST chunk's length.
    let mut bad = raw.clone();
    let pos = bad.windows(4).position(|w| w == b"TEST").unwrap();
    bad[pos + 4..pos + 8].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    corrupt_case("badlen", &gzip(&bad));
    // Not a MOO file at all.
    corrupt_case("notmoo", &gzip(b"this is not a MOO file"));
}

#[test]
fn real_run_ends_with_summary_line() {
    let d = temp_dir("real");
    std::fs::copy(suite_file("90.MOO.gz"), d.join("90.MOO.gz")).unwrap();
    let (code, out, err) = run(&["singlestep", d.to_str().unwrap(), "--only", "90"]);
    assert_eq!(code, 0, "stderr: {err}");
    let last = out.lines().last().unwrap_or("");
    let parts: Vec<&str> = last.split(' ').collect();
    assert!(
        parts.len() == 4
            && parts[1] == "passed,"
            && parts[3] == "failed"
            && parts[0].parse::<u64>().is_ok()
            && parts[2].parse::<u64>().is_ok(),
        "last line {last:?}"
    );
    let n: u64 = parts[0].parse::<u64>().unwrap() + parts[2].parse::<u64>().unwrap();
    assert!(n <= 1000);
    // --only that matches nothing is a usage error.
    let (code, _, err) = run(&["singlestep", d.to_str().unwrap(), "--only", "91"]);
    assert_clean_error(code, &err);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn fuzz_subcommand_prints_the_count_reached() {
    let (code, out, err) = run(&[
        "fuzz",
        "--count",
        "20000",
        "--seed",
        "5",
        "--time-limit",
        "60",
    ]);
    assert_eq!(code, 0, "stderr: {err}");
    let last = out.lines().last().unwrap_or("");
    let n: u64 = last
        .strip_suffix(" instructions executed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("last line {last:?}"));
    assert!(n >= 20_000, "{n}");
    assert!(out.contains("0 problems"), "{out}");
}

#[test]
fn revoked_tests_are_skipped() {
    // A suite layout like the real one: the list above the folder of the files.
    let d = temp_dir("revoked");
    let sub = d.join("v1_real_mode");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::copy(suite_file("90.MOO.gz"), sub.join("90.MOO.gz")).unwrap();
    let moo = wasm86_conformance::moo::read_gz(&sub.join("90.MOO.gz")).unwrap();
    let (a, b) = (moo.tests[0].hash_hex(), moo.tests[5].hash_hex());
    assert_eq!(a.len(), 40);
    std::fs::write(
        d.join("revocation_list.txt"),
        format!("# bad tests\n{a}\n{}\n", b.to_uppercase()),
    )
    .unwrap();
    let (code, out, err) = run(&["singlestep", d.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("998 tests in 1 files"), "{out}");
    assert!(out.contains(", 2 revoked skipped"), "{out}");
    std::fs::remove_dir_all(&d).unwrap();
}
