//! The worker's run loop: [`Vm::step`] for about a slice of host time, the realtime clock, the
//! MIPS meter, and the serial input queue.
//!
//! Platform-free: host time comes from a closure, so tests drive it with a fake clock.
//!
//! Realtime mode (DESIGN.md "One virtual clock"): while the VM runs, virtual time is pulled
//! toward host time at every chunk end, never backwards. The mapping is anchored when the VM
//! starts running and dropped when it stops, so time spent paused does not pass for the guest
//! (QEMU's virtual clock also stops with the VM). When the guest runs ahead of host time (an
//! interpreter faster than the nominal instruction rate), the loop yields until host time
//! catches up, so guest timers never fire early in host terms.

use std::collections::VecDeque;
use wasm86_vmm::{Step, Vm};

/// How far virtual time may run ahead of host time before the loop yields, in ns.
pub const MAX_AHEAD_NS: u64 = 2_000_000;
/// How long to wait when the guest halted with no timer armed (input wakes it sooner), in ms.
pub const IDLE_NO_DEADLINE_MS: f64 = 50.0;
/// Shortest halt worth returning to the worker for, in ms; nearer deadlines are waited for
/// in the loop.
pub const MIN_SLEEP_MS: f64 = 0.5;
/// Instructions of the first chunk, before the MIPS meter knows the speed.
pub const FIRST_CHUNK: u64 = 100_000;
/// Host time one chunk aims at, in ms (the loop checks the clock between chunks).
pub const CHUNK_MS: f64 = 1.0;
/// The MIPS meter's window, in ms of host time spent running.
pub const MIPS_WINDOW_MS: f64 = 500.0;
/// Cap on serial input waiting for the UART, in bytes.
pub const SERIAL_QUEUE_CAP: usize = 1 << 20;

/// What one [`Runner::run`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run state's QMP name (`running`, `paused`...).
    pub state: &'static str,
    /// Guest speed over the last window, in millions of instructions per host second.
    pub mips: f64,
    /// Host ms until the guest has something to do; 0 means "call again at once".
    pub idle_ms: f64,
    /// Nothing will happen until outside input (a stopped VM, or a halt with no timer): the
    /// worker waits for a message instead of polling.
    pub wait_input: bool,
    /// The VM has ended: flush the outputs and stop.
    pub quit: bool,
}

/// Serial input the UART could not take yet, bounded.
#[derive(Debug, Default)]
pub struct SerialQueue {
    bytes: VecDeque<u8>,
}

/// The serial input queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "serial input refused: {waiting} bytes already wait for the guest (cap {SERIAL_QUEUE_CAP})"
)]
pub struct SerialFull {
    /// Bytes waiting.
    pub waiting: usize,
}

impl SerialQueue {
    /// Queues bytes; refuses all of them when the queue would exceed [`SERIAL_QUEUE_CAP`].
    pub fn push(&mut self, data: &[u8]) -> Result<(), SerialFull> {
        if self.bytes.len().saturating_add(data.len()) > SERIAL_QUEUE_CAP {
            return Err(SerialFull {
                waiting: self.bytes.len(),
            });
        }
        self.bytes.extend(data);
        Ok(())
    }

    /// Offers the queued bytes to `sink`, which returns how many it took; drops those.
    pub fn drain_into(&mut self, sink: impl FnOnce(&[u8]) -> usize) {
        if self.bytes.is_empty() {
            return;
        }
        let taken = sink(self.bytes.make_contiguous()).min(self.bytes.len());
        self.bytes.drain(..taken);
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Measures guest speed over windows of running host time.
#[derive(Debug, Default, Clone)]
pub struct MipsMeter {
    insns: u64,
    ms: f64,
    last: f64,
}

impl MipsMeter {
    /// Adds `insns` instructions retired in `ms` of host time.
    pub fn add(&mut self, insns: u64, ms: f64) {
        self.insns = self.insns.saturating_add(insns);
        self.ms += ms.max(0.0);
        if self.ms >= MIPS_WINDOW_MS {
            self.last = self.insns as f64 / (self.ms * 1000.0);
            self.insns = 0;
            self.ms = 0.0;
        }
    }

    /// The last full window's speed in MIPS (0 before the first window ends).
    pub fn mips(&self) -> f64 {
        self.last
    }

    /// Instructions per [`CHUNK_MS`] at the last measured speed.
    pub fn chunk(&self) -> u64 {
        let estimate = if self.last > 0.0 {
            self.last
        } else if self.ms > 0.0 {
            self.insns as f64 / (self.ms * 1000.0)
        } else {
            0.0
        };
        if estimate <= 0.0 {
            return FIRST_CHUNK;
        }
        ((estimate * 1000.0 * CHUNK_MS) as u64).clamp(10_000, 10_000_000)
    }
}

/// Drives a [`Vm`] in host-time slices.
#[derive(Debug, Default)]
pub struct Runner {
    /// (host ms, virtual ns) when the VM last started running; `None` while it does not run.
    anchor: Option<(f64, u64)>,
    meter: MipsMeter,
    /// Serial input for COM1.
    pub serial_in: SerialQueue,
}

impl Runner {
    /// A runner with no anchor yet.
    pub fn new() -> Runner {
        Runner::default()
    }

    /// The last measured speed.
    pub fn mips(&self) -> f64 {
        self.meter.mips()
    }

    /// Pulls virtual time toward host time `now_ms`. Returns the host ms to wait when the
    /// guest is ahead by more than [`MAX_AHEAD_NS`].
    fn pace(&mut self, vm: &mut Vm, now_ms: f64) -> Option<f64> {
        let m = vm.machine_mut();
        let virt = m.now();
        let (h0, v0) = *self.anchor.get_or_insert((now_ms, virt));
        let target = v0.saturating_add(((now_ms - h0).max(0.0) * 1e6) as u64);
        if virt < target {
            m.skip_to(target);
            None
        } else if virt - target > MAX_AHEAD_NS {
            Some((virt - target) as f64 / 1e6)
        } else {
            None
        }
    }

    /// Runs the VM for about `budget_ms` of host time as told by `clock` (host ms, monotonic).
    /// In deterministic mode the clock is not pulled (the VM's own HLT skips keep time).
    pub fn run(
        &mut self,
        vm: &mut Vm,
        budget_ms: f64,
        clock: &mut dyn FnMut() -> f64,
    ) -> RunReport {
        let start = clock();
        let realtime = !vm.ctx().config.deterministic;
        let mut report = RunReport {
            state: "",
            mips: 0.0,
            idle_ms: 0.0,
            wait_input: false,
            quit: false,
        };
        loop {
            let t = clock();
            if !vm.state().is_running() {
                self.anchor = None;
            }
            {
                let m = vm.machine_mut();
                self.serial_in.drain_into(|b| m.serial_input(0, b));
            }
            if realtime && vm.state().is_running() {
                if let Some(wait) = self.pace(vm, t) {
                    report.idle_ms = wait;
                    break;
                }
            }
            let before = vm.machine_mut().icount();
            let step = vm.step(self.meter.chunk());
            let after_t = clock();
            let ran = vm.machine_mut().icount().wrapping_sub(before);
            if ran > 0 {
                self.meter.add(ran, after_t - t);
            }
            match step {
                Step::Ran => {}
                Step::Idle {
                    until: Some(deadline),
                } => {
                    let now = vm.machine_mut().now();
                    let idle = deadline.saturating_sub(now) as f64 / 1e6;
                    // A host timer cannot wait less than about a millisecond: nearer deadlines
                    // are met by going round the loop (the clock is pulled at its top).
                    if idle >= MIN_SLEEP_MS {
                        report.idle_ms = idle;
                        break;
                    }
                }
                Step::Idle { until: None } => {
                    report.idle_ms = IDLE_NO_DEADLINE_MS;
                    report.wait_input = true;
                    break;
                }
                Step::Stopped => {
                    self.anchor = None;
                    report.wait_input = true;
                    break;
                }
                Step::Quit => {
                    report.quit = true;
                    break;
                }
            }
            if after_t - start >= budget_ms {
                break;
            }
        }
        {
            let m = vm.machine_mut();
            self.serial_in.drain_into(|b| m.serial_input(0, b));
        }
        report.state = vm.state().as_str();
        report.mips = self.meter.mips();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, Images, WebConfig};
    use crate::files::FileStore;
    use crate::host::WebHost;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// 64 KiB BIOS: masks both PICs, writes "OK\n" to COM1, then halts with interrupts off.
    fn ok_bios() -> Vec<u8> {
        let mut rom = vec![0xFF; 0x1_0000];
        let code = [
            0xB0, 0xFF, 0xE6, 0x21, 0xE6, 0xA1, 0xBA, 0xF8, 0x03, 0xB0, b'O', 0xEE, 0xB0, b'K',
            0xEE, 0xB0, b'\n', 0xEE, 0xFA, 0xF4, 0xEB, 0xFD,
        ];
        rom[..code.len()].copy_from_slice(&code);
        rom[0xFFF0..0xFFF5].copy_from_slice(&[0xEA, 0x00, 0x00, 0x00, 0xF0]);
        rom
    }

    fn vm(deterministic: bool) -> Vm {
        let cfg = WebConfig {
            memory_mib: Some(16),
            deterministic: Some(deterministic),
            ..WebConfig::default()
        };
        let images = Images {
            bios: Some(ok_bios()),
            ..Images::default()
        };
        let (machine, vc) = build(&cfg, images, 0.0).unwrap();
        let host = WebHost::new(
            Box::new(|| 0.0),
            Rc::new(RefCell::new(FileStore::default())),
            Default::default(),
        );
        Vm::new(machine, vc, Box::new(host))
    }

    /// A host clock that advances 0.25 ms at every reading, from `start`.
    fn clock(start: f64) -> impl FnMut() -> f64 {
        let mut t = start - 0.25;
        move || {
            t += 0.25;
            t
        }
    }

    #[test]
    fn runs_the_guest_and_waits_for_input_when_halted() {
        let mut vm = vm(false);
        let mut r = Runner::new();
        let rep = r.run(&mut vm, 10.0, &mut clock(0.0));
        assert_eq!(vm.machine_mut().take_serial_output(0), b"OK\n");
        assert_eq!(rep.state, "running");
        // Halted: the next event is the (unprogrammed) PIT's wrap, at most 55 ms away.
        assert!(!rep.wait_input && !rep.quit, "{rep:?}");
        assert!(rep.idle_ms > 0.0 && rep.idle_ms <= 55.0, "{rep:?}");
    }

    #[test]
    fn realtime_clock_follows_host_time_but_not_while_paused() {
        let mut vm = vm(false);
        let mut r = Runner::new();
        r.run(&mut vm, 1.0, &mut clock(1000.0));
        let v0 = vm.machine_mut().now();
        // 100 ms of host time later the guest's clock has caught up (it was halted meanwhile).
        r.run(&mut vm, 1.0, &mut clock(1100.0));
        let v1 = vm.machine_mut().now();
        assert!(
            v1 >= v0 + 99_000_000 && v1 <= v0 + 102_000_000,
            "{v0} -> {v1}"
        );
        // Paused for 10 s of host time: the guest does not see those seconds.
        let page = vm.open_session(false);
        vm.feed(page, b"{\"execute\": \"stop\"}");
        let rep = r.run(&mut vm, 1.0, &mut clock(1200.0));
        assert_eq!(rep.state, "paused");
        assert!(rep.wait_input);
        vm.feed(page, b"{\"execute\": \"cont\"}");
        r.run(&mut vm, 1.0, &mut clock(11_200.0));
        let v2 = vm.machine_mut().now();
        assert!(
            v2 < v1 + 10_000_000,
            "paused time leaked into the guest: {v1} -> {v2}"
        );
        r.run(&mut vm, 1.0, &mut clock(11_250.0));
        let v3 = vm.machine_mut().now();
        assert!(
            v3 >= v2 + 49_000_000,
            "the clock runs again after cont: {v2} -> {v3}"
        );
    }

    fn spin_vm(deterministic: bool) -> Vm {
        let mut rom = vec![0xFF; 0x1_0000];
        rom[..2].copy_from_slice(&[0xEB, 0xFE]); // jmp $
        rom[0xFFF0..0xFFF5].copy_from_slice(&[0xEA, 0x00, 0x00, 0x00, 0xF0]);
        let images = Images {
            bios: Some(rom),
            ..Images::default()
        };
        let cfg = WebConfig {
            memory_mib: Some(16),
            deterministic: Some(deterministic),
            ..WebConfig::default()
        };
        let (machine, vc) = build(&cfg, images, 0.0).unwrap();
        let files = Rc::new(RefCell::new(FileStore::default()));
        let host = WebHost::new(Box::new(|| 0.0), files, Default::default());
        Vm::new(machine, vc, Box::new(host))
    }

    #[test]
    fn a_busy_guest_runs_for_the_budget_and_is_measured() {
        let mut vm = spin_vm(true);
        let mut r = Runner::new();
        let mut reads = 0;
        let mut t = 0.0;
        let mut clk = || {
            reads += 1;
            t += 50.0;
            t
        };
        let rep = r.run(&mut vm, 1200.0, &mut clk);
        assert!(
            !rep.wait_input && !rep.quit && rep.idle_ms == 0.0,
            "{rep:?}"
        );
        // Two readings per chunk, 100 ms of fake host time per chunk: 12 chunks.
        assert_eq!(reads, 25, "clock readings");
        assert!(rep.mips > 0.0, "a full MIPS window was measured");
        // 100 000 instructions first, then chunks sized from the measured speed (clamped).
        assert_eq!(vm.machine_mut().icount(), FIRST_CHUNK + 11 * 10_000);
    }

    #[test]
    fn realtime_yields_when_the_guest_runs_ahead_of_host_time() {
        // The fake host clock advances 0.25 ms per reading, far slower than the guest runs:
        // virtual time gets ahead, and the loop gives the host the difference to sleep.
        let mut vm = spin_vm(false);
        let mut r = Runner::new();
        let mut c = clock(0.0);
        let rep = r.run(&mut vm, 600.0, &mut c);
        assert!(rep.idle_ms > 0.0 && !rep.wait_input, "{rep:?}");
        let host_ns = (c() * 1e6) as u64;
        let virt = vm.machine_mut().now();
        assert!(virt > host_ns, "{virt} <= {host_ns}");
        assert!(
            virt - host_ns <= (rep.idle_ms * 1e6) as u64 + 1_000_000,
            "ahead by {} ns, idle {} ms",
            virt - host_ns,
            rep.idle_ms
        );
    }

    #[test]
    fn deterministic_mode_does_not_follow_host_time() {
        let (mut a, mut b) = (vm(true), vm(true));
        let (mut ra, mut rb) = (Runner::new(), Runner::new());
        ra.run(&mut a, 1.0, &mut clock(0.0));
        rb.run(&mut b, 1.0, &mut clock(0.0));
        ra.run(&mut a, 1.0, &mut clock(10.0));
        rb.run(&mut b, 1.0, &mut clock(50_000.0));
        let (ta, tb) = (a.machine_mut().now(), b.machine_mut().now());
        assert_eq!(ta, tb, "virtual time depends on host time");
        assert!(ta > 0, "HLT skips to the next deadline");
    }

    #[test]
    fn serial_input_reaches_the_uart_and_quit_is_reported() {
        let mut vm = vm(false);
        let mut r = Runner::new();
        r.serial_in.push(b"xy").unwrap();
        r.run(&mut vm, 1.0, &mut clock(0.0));
        assert!(r.serial_in.len() < 2, "the UART took input");
        let page = vm.open_session(false);
        vm.feed(page, b"{\"execute\": \"quit\"}");
        let rep = r.run(&mut vm, 1.0, &mut clock(10.0));
        assert!(rep.quit);
    }

    #[test]
    fn serial_queue_keeps_what_the_uart_refused() {
        let mut q = SerialQueue::default();
        q.push(b"hello").unwrap();
        q.drain_into(|b| {
            assert_eq!(b, b"hello");
            2
        });
        assert_eq!(q.len(), 3);
        q.drain_into(|b| {
            assert_eq!(b, b"llo");
            99 // a sink claiming more than offered takes just what there is
        });
        assert!(q.is_empty());
        q.drain_into(|_| panic!("not called when empty"));
    }

    #[test]
    fn serial_queue_is_bounded() {
        let mut q = SerialQueue::default();
        q.push(&vec![0; SERIAL_QUEUE_CAP - 1]).unwrap();
        assert_eq!(
            q.push(b"ab"),
            Err(SerialFull {
                waiting: SERIAL_QUEUE_CAP - 1
            })
        );
        q.push(b"a").unwrap();
        assert_eq!(q.len(), SERIAL_QUEUE_CAP);
    }

    #[test]
    fn mips_meter_windows_and_chunks() {
        let mut m = MipsMeter::default();
        assert_eq!(m.chunk(), FIRST_CHUNK);
        m.add(50_000_000, 250.0); // 200 MIPS, half a window
        assert_eq!(m.mips(), 0.0);
        assert_eq!(m.chunk(), 200_000);
        m.add(25_000_000, 250.0);
        assert!((m.mips() - 150.0).abs() < 1e-9, "{}", m.mips());
        assert_eq!(m.chunk(), 150_000);
        let mut slow = MipsMeter::default();
        slow.add(1, 600.0);
        assert_eq!(slow.chunk(), 10_000);
    }
}
