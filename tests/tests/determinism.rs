//! Deterministic mode: two runs of the same guest give byte-identical serial output, the same
//! instruction count and the same memory, instruction for instruction.

use sha2::{Digest, Sha256};
use wasm86_machine::{DirectBoot, Machine, MachineConfig};
use wasm86_tests::guest;
use wasm86_vmm::{Host, Step, Vm, VmConfig};

struct NoHost;

impl Host for NoHost {
    fn wall_clock_us(&self) -> i64 {
        0
    }
    fn write_file(&mut self, _: &str, _: &[u8]) -> Result<(), String> {
        Err("no files".into())
    }
    fn thread_id(&self) -> i64 {
        0
    }
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(guest(rel)).expect("guest image")
}

/// Runs the default guest for `budget` instructions; returns (serial output, icount, RAM hash).
fn run(budget: u64) -> (Vec<u8>, u64, [u8; 32]) {
    let mut cfg = MachineConfig::new(128 << 20, read("bios/bios.bin"));
    cfg.vga_bios = Some(read("bios/vgabios-stdvga.bin"));
    cfg.direct_boot = Some(DirectBoot {
        kernel: read("linux/bzImage"),
        initrd: Some(read("linux/initrd.img")),
        cmdline: "console=ttyS0".into(),
        option_rom: read("bios/linuxboot_dma.bin"),
    });
    let m = Machine::new(cfg).expect("machine");
    let config = VmConfig {
        deterministic: true,
        ..VmConfig::default()
    };
    let mut vm = Vm::new(m, config, Box::new(NoHost));
    let mut serial = Vec::new();
    while vm.machine_mut().icount() < budget {
        let left = budget - vm.machine_mut().icount();
        match vm.step(left.min(5_000_000)) {
            Step::Ran => {}
            other => panic!("unexpected {other:?}"),
        }
        serial.extend(vm.machine_mut().take_serial_output(0));
    }
    let icount = vm.machine_mut().icount();
    let ram = Sha256::digest(vm.machine_mut().board().mem.ram()).into();
    (serial, icount, ram)
}

#[test]
fn two_deterministic_runs_are_identical() {
    // Far enough for SeaBIOS, the option ROM, the decompressor and the kernel's console.
    let budget = 2_500_000_000;
    let a = run(budget);
    let b = run(budget);
    assert!(
        String::from_utf8_lossy(&a.0).contains("Linux version"),
        "the kernel did not start within the budget"
    );
    assert_eq!(a.1, b.1, "instruction counts");
    assert!(a.0 == b.0, "serial output differs");
    assert_eq!(a.2, b.2, "RAM differs");
}
