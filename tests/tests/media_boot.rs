//! Guests booted by SeaBIOS from emulated media: Debian's Linux from the IDE hard disk to a
//! shell on the serial port, and memtest86+ from the floppy, watched on the text screen.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wasm86_tests::bootimg::GuestVm;
use wasm86_tests::guest;

/// Linux reaches `GUEST-READY` within this much host time.
const BOOT: Duration = Duration::from_secs(900);
/// A shell command answers within this much host time.
const CMD: Duration = Duration::from_secs(120);

fn blockstats(vm: &mut GuestVm, device: &str) -> Value {
    let r = vm.qmp.cmd(json!({"execute": "query-blockstats"}));
    r["return"]
        .as_array()
        .unwrap_or_else(|| panic!("query-blockstats: {r}"))
        .iter()
        .find(|b| b["device"] == device)
        .unwrap_or_else(|| panic!("no {device} in {r}"))
        .clone()
}

#[test]
fn linux_from_the_hard_disk_to_a_shell() {
    let hd = guest("linux/linux-hd.img");
    let hd = hd.to_str().expect("utf-8 path");
    let start = Instant::now();
    let mut vm = GuestVm::start(
        "linux-hd",
        &[],
        "stdio",
        &["-hda", hd, "-boot", "c", "-m", "256"],
    );
    vm.wait_serial(0, "GUEST-READY", BOOT);
    eprintln!(
        "linux-hd: GUEST-READY after {:.1} s of host time",
        start.elapsed().as_secs_f64()
    );
    // SeaBIOS booted the disk (its log is on the debug console).
    let log = String::from_utf8_lossy(&vm.debugcon()).into_owned();
    assert!(log.contains("Booting from Hard Disk"), "{log}");
    // A shell answers on the serial console.
    assert_eq!(vm.shell("echo $((6*7))", CMD), "42");
    // The root of the running system is the IDE disk, seen through ata_piix.
    let parts = vm.shell("cat /proc/partitions", CMD);
    assert!(parts.contains("sda"), "/proc/partitions:\n{parts}");
    // The block layer counted the guest's reads of ide0-hd0.
    let hd0 = blockstats(&mut vm, "ide0-hd0");
    let stats = &hd0["stats"];
    let ops = stats["rd_operations"].as_u64().unwrap_or(0);
    let bytes = stats["rd_bytes"].as_u64().unwrap_or(0);
    assert!(ops > 0, "{hd0}");
    assert!(bytes >= 512 * ops, "{hd0}");
    // Reading the whole disk from the guest adds at least its size to the counters.
    let size: u64 = vm
        .shell("cat /sys/block/sda/size", CMD)
        .parse()
        .expect("sectors");
    assert_eq!(size * 512, 64 << 20, "linux-hd.img is 64 MiB");
    vm.shell(
        "dd if=/dev/sda of=/dev/null bs=64k iflag=direct 2>/dev/null || dd if=/dev/sda of=/dev/null bs=64k",
        CMD,
    );
    let after = blockstats(&mut vm, "ide0-hd0");
    let more = after["stats"]["rd_bytes"].as_u64().unwrap_or(0) - bytes;
    assert!(more >= size * 512, "read {more} bytes more: {after}");
    eprintln!(
        "linux-hd: done after {:.1} s of host time",
        start.elapsed().as_secs_f64()
    );
}

/// What memtest86+ shows in its status area (read from `info screen`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Memtest {
    /// Progress of the current pass in percent (`Pass 37%`).
    percent: u64,
    /// Completed passes (`Pass:  0`).
    passes: u64,
    /// Errors found (`Errors: 0`).
    errors: u64,
    /// The test in progress (`Test #6  [Moving inversions, 32 bit pattern]`).
    test: String,
}

impl Memtest {
    fn parse(screen: &str) -> Option<Memtest> {
        // The value after `name` on the first line that has it.
        let field = |name: &str| -> Option<u64> {
            screen.lines().find_map(|l| {
                let rest = l.split(name).nth(1)?;
                rest.trim_start()
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
        };
        let test = screen
            .lines()
            .find_map(|l| l.split("│ ").nth(1).filter(|t| t.starts_with("Test #")))?
            .trim()
            .to_string();
        Some(Memtest {
            percent: field("│ Pass ")?,
            passes: field("Pass:")?,
            errors: field("Errors:")?,
            test,
        })
    }
}

/// Boots memtest86+ from its floppy and polls the screen every 2 s until `enough` says so or
/// `limit` passes; asserts 0 errors at every look. Returns the last status and screen, and
/// the tests seen in order.
fn run_memtest(
    limit: Duration,
    enough: impl Fn(&Memtest) -> bool,
) -> (Memtest, String, Vec<String>) {
    let img = guest("memtest/memtest.img");
    let img = img.to_str().expect("utf-8 path");
    let start = Instant::now();
    let mut vm = GuestVm::start(
        "memtest",
        &[],
        "none",
        &["-fda", img, "-boot", "a", "-m", "16"],
    );
    let mut tests: Vec<String> = Vec::new();
    let mut last: Option<Memtest> = None;
    let mut next_report = Duration::from_secs(60);
    loop {
        let screen = vm.qmp.hmp("info screen");
        if let Some(m) = Memtest::parse(&screen) {
            assert_eq!(m.errors, 0, "memtest86+ reports errors:\n{screen}");
            if tests.last() != Some(&m.test) || start.elapsed() >= next_report {
                next_report = start.elapsed() + Duration::from_secs(60);
                let guest_time = screen
                    .lines()
                    .find_map(|l| l.split("Time:").nth(1)?.split_whitespace().next())
                    .unwrap_or("?");
                eprintln!(
                    "memtest: {:4.0} s (guest clock {guest_time}): pass {}%, {}",
                    start.elapsed().as_secs_f64(),
                    m.percent,
                    m.test
                );
                if tests.last() != Some(&m.test) {
                    tests.push(m.test.clone());
                }
            }
            if let Some(prev) = &last {
                assert!(
                    (m.passes, m.percent) >= (prev.passes, prev.percent),
                    "progress went back: {prev:?} then {m:?}"
                );
            }
            last = Some(m.clone());
            if enough(&m) {
                eprintln!(
                    "memtest: stopped after {:.0} s of host time at {m:?}",
                    start.elapsed().as_secs_f64()
                );
                return (m, screen, tests);
            }
        }
        assert!(
            start.elapsed() < limit,
            "memtest86+ did not get there within {limit:?}; the screen shows:\n{screen}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// memtest86+ starts from the floppy, finds 16 MB and completes its first pass with 0 errors:
/// tests #0 to #10 in ascending order, bit fade included (the bit fade test waits minutes of
/// guest time per pattern). A complete pass took 412 s of host time on a loaded 2-core machine.
#[test]
fn memtest86plus_from_the_floppy_completes_a_pass_without_errors() {
    let (m, screen, tests) = run_memtest(Duration::from_secs(1500), |m| m.passes >= 1);
    assert!(screen.contains("Memtest86+ v6.10"), "{screen}");
    assert!(screen.contains("Memory  :   16MB"), "{screen}");
    assert!(screen.contains("Pass:  1"), "{screen}");
    assert_eq!(m.errors, 0);
    // The tests of the first pass ran in ascending order up to #10 (after it, pass 2 starts
    // again from a low number).
    let numbers: Vec<u32> = tests
        .iter()
        .filter_map(|t| {
            t.split_whitespace()
                .nth(1)?
                .trim_start_matches('#')
                .parse()
                .ok()
        })
        .collect();
    let first_pass = numbers
        .windows(2)
        .position(|w| w[1] < w[0])
        .map_or(numbers.len(), |i| i + 1);
    let first = numbers.get(..first_pass).unwrap_or(&[]);
    assert!(first.len() >= 5, "{tests:?}");
    assert_eq!(first.last(), Some(&10), "{tests:?}");
}

#[test]
fn memtest_status_area_is_read_from_the_screen() {
    let screen = "      Memtest86+ v6.10      │ Pentium III
CLK/Temp: 1000MHz           │ Pass 13% #####
L1 Cache:   32KB            │ Test 86% ##################################
L2 Cache:  512KB            │ Test #5  [Moving inversions, random pattern]
L3 Cache:   N/A             │ Testing: 4MB - 16MB [12MB of 15.6MB]
Memory  :   16MB            │ Pattern: 0xffffffff
────────────────────────────┴─────────────┬─────────────────────────────────────
CPU: 1 Cores 1 Threads    SMP: Disabled   │ Time:  0:00:01  Status: Testing  /
Using: All Cores                          │ Pass:  2        Errors: 17
──────────────────────────────────────────┴─────────────────────────────────────
";
    assert_eq!(
        Memtest::parse(screen),
        Some(Memtest {
            percent: 13,
            passes: 2,
            errors: 17,
            test: "Test #5  [Moving inversions, random pattern]".into(),
        })
    );
    assert_eq!(
        Memtest::parse("SeaBIOS (version 1.16.2)\nBooting from Floppy..."),
        None
    );
}
