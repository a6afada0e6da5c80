//! Guests booting natively: Debian's Linux by direct kernel boot and from the CD-ROM, to
//! `GUEST-READY` and a working shell on the serial port.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
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
    fn start(clock: &str, args: &[&str]) -> Serial {
        let mut child = Command::new(bin("wasm86"))
            .args([
                "-serial", "stdio", "-display", "none", "-clock", clock, "-L",
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
        self.seen[a..b - "END-4".len()]
            .replace("\r\n", "\n")
            .trim()
            .to_string()
    }
}

/// A negotiated QMP connection.
struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
    events: Vec<Value>,
}

impl Qmp {
    fn connect(path: &std::path::Path) -> Qmp {
        let t = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if t.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("QMP connect: {e}"),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut q = Qmp {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            events: Vec::new(),
        };
        q.line();
        q.cmd(json!({"execute": "qmp_capabilities"}));
        q
    }
    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("QMP read");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
    }
    fn cmd(&mut self, req: Value) -> Value {
        self.w.write_all(req.to_string().as_bytes()).unwrap();
        loop {
            let v = self.line();
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return v;
            }
        }
    }
}

const BOOT: Duration = Duration::from_secs(900);
const CMD: Duration = Duration::from_secs(120);

#[test]
fn linux_direct_boot_to_a_shell() {
    let kernel = guest("linux/bzImage");
    let initrd = guest("linux/initrd.img");
    let iso = guest("linux/linux.iso");
    let second = guest("linux/second.iso");
    let sock = std::env::temp_dir().join(format!("wasm86-boot-{}.sock", std::process::id()));
    let qmp_arg = format!("unix:{},server,nowait", sock.display());
    // Realtime clock: the guest's timers follow host time (the sleep check below).
    let mut s = Serial::start(
        "realtime",
        &[
            "-cdrom",
            iso.to_str().unwrap(),
            "-qmp",
            &qmp_arg,
            "-m",
            "256",
            "-kernel",
            kernel.to_str().unwrap(),
            "-initrd",
            initrd.to_str().unwrap(),
            "-append",
            "console=ttyS0",
        ],
    );
    let t = Instant::now();
    s.wait_for(0, "GUEST-READY 6.", BOOT);
    eprintln!(
        "GUEST-READY after {:.1} s of host time",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(s.shell("echo $((6*7))", CMD), "42");
    // In realtime mode a guest `sleep 5` takes 5 s of host time (± 0.25 s).
    let t = Instant::now();
    s.shell("sleep 5", CMD);
    let slept = t.elapsed().as_secs_f64();
    assert!((slept - 5.0).abs() <= 0.25, "sleep 5 took {slept:.3} s");
    // The board runs in PIC mode: no local APIC, interrupts through the XT-PIC.
    let irqs = s.shell("cat /proc/interrupts", CMD);
    assert!(irqs.contains("XT-PIC"), "/proc/interrupts:\n{irqs}");
    assert!(!irqs.contains("IO-APIC"), "/proc/interrupts:\n{irqs}");
    let dmesg = s.shell("dmesg", CMD);
    assert!(dmesg.contains("APIC: disable apic facility"), "{dmesg}");
    // MMX, FXSR, SSE and SSE2 are advertised: the kernel saves FPU state with FXSAVE, and
    // busybox's static glibc picks its SSE2 string and memory routines (every command below
    // runs through them).
    assert!(dmesg.contains("x87 FPU will use FXSAVE"), "{dmesg}");
    let flags = s.shell("grep -m1 ^flags /proc/cpuinfo", CMD);
    for f in ["mmx", "fxsr", "sse", "sse2"] {
        assert!(flags.split_whitespace().any(|w| w == f), "no {f}: {flags}");
    }
    assert_eq!(
        s.shell(
            "dd if=/dev/zero bs=1024 count=4096 2>/dev/null | md5sum",
            CMD
        ),
        "b5cfa9d6c8febd618f91ac2843d50a1c  -"
    );
    // The TSC is calibrated against the PIT on the one virtual clock: 1000 MHz within 0.1%.
    let mhz: f64 = dmesg
        .lines()
        .find_map(|l| l.split("tsc: Detected ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no TSC calibration line in dmesg:\n{dmesg}"));
    assert!((mhz - 1000.0).abs() <= 1.0, "TSC detected at {mhz} MHz");
    assert!(!dmesg.contains("calibration failed"), "{dmesg}");
    // The CD-ROM drive is seen and the probe of the empty primary channel returns at once.
    assert!(dmesg.contains("ATAPI: QEMU DVD-ROM"), "{dmesg}");
    let stamp = |pat: &str| -> f64 {
        dmesg
            .lines()
            .find(|l| l.contains(pat))
            .and_then(|l| l.trim_start_matches('[').split(']').next())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {pat:?} in dmesg:\n{dmesg}"))
    };
    let probe = stamp("ATAPI: QEMU DVD-ROM") - stamp("scsi host0: ata_piix");
    assert!(probe < 1.0, "ata_piix probing took {probe} s of guest time");

    // The CD is readable; mounting it locks the tray, so eject without force is refused.
    let mut q = Qmp::connect(&sock);
    assert_eq!(
        s.shell(
            "mkdir -p /mnt && mount -t iso9660 /dev/sr0 /mnt && ls -1 /mnt/isolinux",
            CMD
        ),
        "boot.cat\nisolinux.bin\nisolinux.cfg\nldlinux.c32"
    );
    let r = q.cmd(json!({"execute": "eject", "arguments": {"device": "ide1-cd0"}, "id": 1}));
    assert_eq!(r["error"]["class"], "DeviceLocked", "{r}");
    assert_eq!(r["error"]["desc"], "Device 'ide1-cd0' is locked");
    let blocks = q.cmd(json!({"execute": "query-block"}));
    let cd = blocks["return"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["device"] == "ide1-cd0")
        .unwrap()
        .clone();
    assert_eq!(cd["locked"], true, "{cd}");
    assert!(
        cd["inserted"]["file"]
            .as_str()
            .unwrap()
            .ends_with("linux.iso"),
        "{cd}"
    );
    let stats = q.cmd(json!({"execute": "query-blockstats"}));
    let cds = stats["return"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["device"] == "ide1-cd0")
        .unwrap()
        .clone();
    assert!(cds["stats"]["rd_operations"].as_u64().unwrap() > 0, "{cds}");
    assert!(cds["stats"]["rd_bytes"].as_u64().unwrap() >= 2048, "{cds}");
    assert!(
        cds["parent"]["stats"]["rd_operations"].as_u64().unwrap() > 0,
        "{cds}"
    );
    s.shell("umount /mnt", CMD);

    // change: a new disc; the tray opens and closes; the running guest reads the new medium.
    let r = q.cmd(json!({"execute": "change", "arguments": {"device": "ide1-cd0", "target": second.to_str().unwrap()}}));
    assert_eq!(r, json!({"return": {}}));
    let trays: Vec<Value> = q
        .events
        .iter()
        .filter(|e| e["event"] == "DEVICE_TRAY_MOVED")
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(
        trays,
        vec![
            json!({"device": "ide1-cd0", "tray-open": true}),
            json!({"device": "ide1-cd0", "tray-open": false})
        ]
    );
    let id = s.shell(
        "mount -t iso9660 /dev/sr0 /mnt 2>/dev/null || mount -t iso9660 /dev/sr0 /mnt; cat /mnt/ID",
        CMD,
    );
    assert!(id.ends_with("WASM86-SECOND-DISC"), "{id}");
}
