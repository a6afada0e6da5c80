//! Guests booting natively: Debian's Linux by direct kernel boot and from the CD-ROM, to
//! `GUEST-READY` and a working shell on the serial port.

use std::io::{Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use wasm86_tests::{bin, guest, Guard};

/// A guest whose serial port is the process's stdio.
struct Serial {
    _vm: Guard,
    input: ChildStdin,
    rx: Receiver<Vec<u8>>,
    seen: String,
}

impl Serial {
    fn start(args: &[&str]) -> Serial {
        let mut child = Command::new(bin("wasm86"))
            .args([
                "-serial",
                "stdio",
                "-display",
                "none",
                "-clock",
                "deterministic",
                "-L",
            ])
            .arg(guest("bios"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wasm86");
        let mut out = child.stdout.take().unwrap();
        let input = child.stdin.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Serial {
            _vm: Guard(child),
            input,
            rx,
            seen: String::new(),
        }
    }

    /// Waits until the output (since `from`) contains `pat`; returns the offset after it.
    fn wait_for(&mut self, from: usize, pat: &str, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            if let Some(i) = self.seen.get(from..).and_then(|s| s.find(pat)) {
                return from + i + pat.len();
            }
            let left = timeout.checked_sub(start.elapsed()).unwrap_or_else(|| {
                let tail: String = self
                    .seen
                    .chars()
                    .rev()
                    .take(3000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                panic!("{pat:?} not seen within {timeout:?}; output ends with:\n{tail}")
            });
            if let Ok(b) = self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                self.seen.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        self.input.write_all(line.as_bytes()).unwrap();
        self.input.write_all(b"\n").unwrap();
        self.input.flush().unwrap();
    }

    /// Runs a shell command and returns what was printed between two markers.
    fn shell(&mut self, cmd: &str, timeout: Duration) -> String {
        let from = self.seen.len();
        self.type_line(&format!("echo BEGIN-$((1+1)); {cmd}; echo END-$((2+2))"));
        let a = self.wait_for(from, "BEGIN-2", timeout);
        let b = self.wait_for(a, "END-4", timeout);
        self.seen[a..b - "END-4".len()].trim().to_string()
    }
}

const BOOT: Duration = Duration::from_secs(900);
const CMD: Duration = Duration::from_secs(120);

#[test]
fn linux_direct_boot_to_a_shell() {
    let kernel = guest("linux/bzImage");
    let initrd = guest("linux/initrd.img");
    let mut s = Serial::start(&[
        "-m",
        "256",
        "-kernel",
        kernel.to_str().unwrap(),
        "-initrd",
        initrd.to_str().unwrap(),
        "-append",
        "console=ttyS0",
    ]);
    let t = Instant::now();
    s.wait_for(0, "GUEST-READY 6.", BOOT);
    eprintln!(
        "GUEST-READY after {:.1} s of host time",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(s.shell("echo $((6*7))", CMD), "42");
    // The board runs in PIC mode: no local APIC, interrupts through the XT-PIC.
    let irqs = s.shell("cat /proc/interrupts", CMD);
    assert!(irqs.contains("XT-PIC"), "/proc/interrupts:\n{irqs}");
    assert!(!irqs.contains("IO-APIC"), "/proc/interrupts:\n{irqs}");
    let dmesg = s.shell("dmesg", CMD);
    assert!(dmesg.contains("APIC: disable apic facility"), "{dmesg}");
    // The TSC is calibrated against the PIT on the one virtual clock: 1000 MHz within 0.1%.
    let mhz: f64 = dmesg
        .lines()
        .find_map(|l| l.split("tsc: Detected ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no TSC calibration line in dmesg:\n{dmesg}"));
    assert!((mhz - 1000.0).abs() <= 1.0, "TSC detected at {mhz} MHz");
    assert!(!dmesg.contains("calibration failed"), "{dmesg}");
    // The CD-ROM drive is seen and the empty channel probe of ata_piix returns at once.
    assert!(dmesg.contains("ATAPI: QEMU DVD-ROM"), "{dmesg}");
}
