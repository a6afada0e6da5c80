//! QMP against a real (paused or briefly running) machine, in process: run states and their
//! events, queries, HMP, memsave/pmemsave/screendump through the Host.

use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use wasm86_machine::{Machine, MachineConfig};
use wasm86_vmm::runstate::RunState;
use wasm86_vmm::{Host, Step, Vm, VmConfig};

type Files = Rc<RefCell<HashMap<String, Vec<u8>>>>;

struct TestHost(Files);

impl Host for TestHost {
    fn wall_clock_us(&self) -> i64 {
        1_700_000_000_123_456
    }
    fn write_file(&mut self, name: &str, data: &[u8]) -> Result<(), String> {
        if name.starts_with("/nonexistent/") {
            return Err("no such directory".into());
        }
        self.0.borrow_mut().insert(name.to_string(), data.to_vec());
        Ok(())
    }
    fn thread_id(&self) -> i64 {
        4242
    }
}

fn bios() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../guest-images/bios/bios.bin");
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the guest images with scripts/build-guests.sh",
            p.display()
        )
    })
}

fn vm(paused: bool) -> (Vm, Files) {
    let mut cfg = MachineConfig::new(32 << 20, bios());
    cfg.vga_bios = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../guest-images/bios/vgabios-stdvga.bin"),
    )
    .ok();
    let m = Machine::new(cfg).expect("machine");
    let files: Files = Rc::default();
    let config = VmConfig {
        name: Some("demo".into()),
        uuid: Some("550e8400-e29b-41d4-a716-446655440000".into()),
        start_paused: paused,
        deterministic: true,
        chardevs: vec![("serial0".into(), "stdio".into())],
        ..VmConfig::default()
    };
    (Vm::new(m, config, Box::new(TestHost(files.clone()))), files)
}

/// Sends one request on session `s` and returns every line it produced.
fn send(vm: &mut Vm, s: usize, req: Value) -> Vec<Value> {
    vm.feed(s, req.to_string().as_bytes());
    lines(vm, s)
}

fn lines(vm: &mut Vm, s: usize) -> Vec<Value> {
    let out = vm.take_output(s);
    assert!(
        out.is_empty() || out.ends_with("\r\n"),
        "CRLF line ends: {out:?}"
    );
    out.lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON"))
        .collect()
}

fn ret(vm: &mut Vm, s: usize, cmd: &str, args: Value) -> Value {
    let out = send(vm, s, json!({"execute": cmd, "arguments": args, "id": cmd}));
    let r = out
        .iter()
        .find(|v| v.get("id") == Some(&json!(cmd)))
        .expect("reply")
        .clone();
    assert!(r.get("return").is_some(), "{cmd}: {r}");
    r["return"].clone()
}

fn negotiated(vm: &mut Vm) -> usize {
    let s = vm.open_session(true);
    let greeting = lines(vm, s);
    assert_eq!(
        greeting[0]["QMP"]["version"]["qemu"],
        json!({"micro": 0, "minor": 1, "major": 1})
    );
    ret(vm, s, "qmp_capabilities", json!({}));
    s
}

#[test]
fn prelaunch_stop_cont_and_events() {
    let (mut vm, _) = vm(true);
    let a = negotiated(&mut vm);
    let b = negotiated(&mut vm);
    assert_eq!(
        ret(&mut vm, a, "query-status", json!({}))["status"],
        "prelaunch"
    );
    // stop in prelaunch: {} and no STOP event, status unchanged.
    let out = send(&mut vm, a, json!({"execute": "stop"}));
    assert_eq!(out, vec![json!({"return": {}})]);
    assert!(lines(&mut vm, b).is_empty());
    assert_eq!(
        ret(&mut vm, a, "query-status", json!({}))["status"],
        "prelaunch"
    );
    // cont: RESUME before the return, on both sessions.
    let out = send(&mut vm, a, json!({"execute": "cont", "id": 1}));
    assert_eq!(out[0]["event"], "RESUME");
    assert_eq!(
        out[0]["timestamp"],
        json!({"seconds": 1_700_000_000i64, "microseconds": 123_456})
    );
    assert_eq!(out[1], json!({"return": {}, "id": 1}));
    assert_eq!(lines(&mut vm, b)[0]["event"], "RESUME");
    assert_eq!(vm.step(100_000), Step::Ran);
    // cont while running: no event.
    assert_eq!(
        send(&mut vm, a, json!({"execute": "cont"})),
        vec![json!({"return": {}})]
    );
    // stop: STOP before the return; the VM no longer steps.
    let out = send(&mut vm, a, json!({"execute": "stop"}));
    assert_eq!(out[0]["event"], "STOP");
    assert_eq!(out[1], json!({"return": {}}));
    assert_eq!(vm.state(), RunState::Paused);
    assert_eq!(vm.step(1000), Step::Stopped);
    let status = ret(&mut vm, a, "query-status", json!({}));
    assert_eq!(
        status,
        json!({"status": "paused", "singlestep": false, "running": false})
    );
}

#[test]
fn reset_and_quit_events_come_after_the_return() {
    let (mut vm, _) = vm(false);
    let a = negotiated(&mut vm);
    let out = send(&mut vm, a, json!({"execute": "system_reset"}));
    assert_eq!(out[0], json!({"return": {}}));
    assert_eq!(out[1]["event"], "RESET");
    let out = send(&mut vm, a, json!({"execute": "quit"}));
    assert_eq!(out[0], json!({"return": {}}));
    assert_eq!(out[1]["event"], "SHUTDOWN");
    assert!(vm.quit_requested());
    assert_eq!(vm.step(1000), Step::Quit);
}

#[test]
fn identity_queries() {
    let (mut vm, _) = vm(true);
    let a = negotiated(&mut vm);
    assert_eq!(
        ret(&mut vm, a, "query-name", json!({})),
        json!({"name": "demo"})
    );
    assert_eq!(
        ret(&mut vm, a, "query-uuid", json!({})),
        json!({"UUID": "550e8400-e29b-41d4-a716-446655440000"})
    );
    assert_eq!(
        ret(&mut vm, a, "query-kvm", json!({})),
        json!({"enabled": false, "present": false})
    );
    let v = ret(&mut vm, a, "query-version", json!({}));
    assert_eq!(v["qemu"], json!({"micro": 0, "minor": 1, "major": 1}));
    assert!(v["package"].as_str().unwrap().starts_with("wasm86 "));
    let cpus = ret(&mut vm, a, "query-cpus", json!({}));
    assert_eq!(cpus[0]["CPU"], 0);
    assert_eq!(cpus[0]["current"], true);
    assert_eq!(cpus[0]["pc"], 0xFFFF_FFF0u64, "reset vector");
    assert_eq!(cpus[0]["thread_id"], 4242);
    assert_eq!(
        ret(&mut vm, a, "query-chardev", json!({})),
        json!([{"label": "serial0", "filename": "stdio"}])
    );
    assert_eq!(
        ret(&mut vm, a, "query-mice", json!({}))[0]["name"],
        "QEMU PS/2 Mouse"
    );
    let cmds = ret(&mut vm, a, "query-commands", json!({}));
    let names: Vec<&str> = cmds
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in [
        "qmp_capabilities",
        "query-status",
        "human-monitor-command",
        "screendump",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    // A seed command that is not built answers CommandNotFound.
    let out = send(
        &mut vm,
        a,
        json!({"execute": "migrate", "arguments": {"uri": "tcp:0:1"}, "id": 9}),
    );
    assert_eq!(out[0]["error"]["class"], "CommandNotFound");
    assert_eq!(out[0]["id"], 9);
}

#[test]
fn pci_after_seabios_assigns_bars() {
    let (mut vm, _) = vm(false);
    let a = negotiated(&mut vm);
    // Run SeaBIOS through PCI init (well under a second of guest time).
    for _ in 0..300 {
        vm.step(1_000_000);
    }
    let pci = ret(&mut vm, a, "query-pci", json!({}));
    let devs = pci[0]["devices"].as_array().unwrap();
    let ids: Vec<(u64, u64)> = devs
        .iter()
        .map(|d| {
            (
                d["id"]["vendor"].as_u64().unwrap(),
                d["id"]["device"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            (0x8086, 0x1237),
            (0x8086, 0x7000),
            (0x8086, 0x7010),
            (0x1234, 0x1111)
        ]
    );
    let vga = &devs[3];
    assert_eq!(vga["class_info"]["class"], 0x0300);
    let bar0 = vga["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["bar"] == 0)
        .unwrap();
    assert_eq!(bar0["size"], 16 << 20);
    assert_eq!(bar0["prefetch"], true);
    assert_ne!(bar0["address"], -1, "SeaBIOS assigned the LFB");
    let text = ret(
        &mut vm,
        a,
        "human-monitor-command",
        json!({"command-line": "info pci"}),
    );
    assert!(
        text.as_str()
            .unwrap()
            .contains("VGA controller: PCI device 1234:1111"),
        "{text}"
    );
}

#[test]
fn hmp_commands() {
    let (mut vm, _) = vm(true);
    let a = negotiated(&mut vm);
    let hmp = |vm: &mut Vm, line: &str| -> String {
        ret(
            vm,
            a,
            "human-monitor-command",
            json!({"command-line": line}),
        )
        .as_str()
        .unwrap()
        .to_string()
    };
    assert_eq!(
        hmp(&mut vm, "info status"),
        "VM status: paused (prelaunch)\r\n"
    );
    let regs = hmp(&mut vm, "info registers");
    assert!(
        regs.starts_with("EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000"),
        "{regs}"
    );
    assert!(regs.contains("\r\nEIP=0000fff0 "), "{regs}");
    assert!(
        regs.contains("\r\nCS =f000 ffff0000 0000ffff 00009b00\r\n"),
        "{regs}"
    );
    assert_eq!(hmp(&mut vm, "p $eip"), "0xfff0\r\n");
    // The reset vector holds a far jump (0xEA) in SeaBIOS.
    let x = hmp(&mut vm, "xp /1xb 0xfffffff0");
    assert_eq!(x, "00000000fffffff0: 0xea\r\n");
    assert!(hmp(&mut vm, "info cpus").starts_with("* CPU #0: pc=0x00000000fffffff0 thread_id=4242"));
    assert_eq!(
        hmp(&mut vm, "info version"),
        format!("1.1.0 ({})\r\n", wasm86_vmm::package())
    );
    assert!(hmp(&mut vm, "help").contains("info [subcommand]"));
    // HMP stop/cont raise events for the QMP sessions.
    let b = negotiated(&mut vm);
    hmp(&mut vm, "cont");
    assert_eq!(lines(&mut vm, b)[0]["event"], "RESUME");
    hmp(&mut vm, "stop");
    assert_eq!(lines(&mut vm, b)[0]["event"], "STOP");
}

#[test]
fn dumps_go_through_the_host() {
    let (mut vm, files) = vm(false);
    let a = negotiated(&mut vm);
    for _ in 0..2000 {
        vm.step(1_000_000);
    }
    ret(
        &mut vm,
        a,
        "pmemsave",
        json!({"val": 0xFFFF0, "size": 16, "filename": "/tmp/p"}),
    );
    let p = files.borrow()["/tmp/p"].clone();
    assert_eq!(p.len(), 16);
    ret(
        &mut vm,
        a,
        "memsave",
        json!({"val": 0, "size": 100, "filename": "/tmp/v"}),
    );
    assert_eq!(files.borrow()["/tmp/v"].len(), 100);
    ret(&mut vm, a, "screendump", json!({"filename": "/tmp/s.ppm"}));
    let ppm = files.borrow()["/tmp/s.ppm"].clone();
    let header = b"P6\n720 400\n255\n";
    assert_eq!(
        &ppm[..header.len()],
        header,
        "SeaBIOS is in 80x25 text mode"
    );
    assert_eq!(ppm.len(), header.len() + 720 * 400 * 3);
    let out = send(
        &mut vm,
        a,
        json!({"execute": "pmemsave", "arguments": {"val": 0, "size": 1, "filename": "/nonexistent/x"}}),
    );
    assert_eq!(out[0]["error"]["class"], "OpenFileFailed");
    assert_eq!(out[0]["error"]["desc"], "Could not open '/nonexistent/x'");
    let out = send(
        &mut vm,
        a,
        json!({"execute": "memsave", "arguments": {"val": 0, "size": -1, "filename": "/tmp/x"}}),
    );
    assert_eq!(out[0]["error"]["class"], "InvalidParameterValue");
    let out = send(
        &mut vm,
        a,
        json!({"execute": "cpu", "arguments": {"index": 3}}),
    );
    assert_eq!(out[0]["error"]["class"], "InvalidParameterValue");
    ret(&mut vm, a, "cpu", json!({"index": 0}));
    ret(&mut vm, a, "inject-nmi", json!({}));
}

struct MediaHost;

impl Host for MediaHost {
    fn wall_clock_us(&self) -> i64 {
        0
    }
    fn write_file(&mut self, _: &str, _: &[u8]) -> Result<(), String> {
        Err("read-only host".into())
    }
    fn thread_id(&self) -> i64 {
        1
    }
    fn open_block(
        &mut self,
        name: &str,
        read_only: bool,
    ) -> Result<Box<dyn wasm86_block::BlockBackend>, wasm86_block::BlockError> {
        if name == "second.iso" {
            Ok(Box::new(wasm86_block::MemBackend::new(
                vec![0; 2048 * 16],
                read_only,
                name,
            )))
        } else {
            Err(wasm86_block::BlockError::OpenFileFailed {
                filename: name.into(),
                reason: "absent".into(),
            })
        }
    }
}

#[test]
fn block_devices_eject_and_change() {
    let mut m = Machine::new(MachineConfig::new(32 << 20, bios())).expect("machine");
    let disk = wasm86_block::BlockDevice::new(Box::new(wasm86_block::MemBackend::new(
        vec![0; 1 << 20],
        false,
        "disk.img",
    )));
    m.attach_drives(Some(disk), None, None, None).unwrap();
    let config = VmConfig {
        start_paused: true,
        ..VmConfig::default()
    };
    let mut vm = Vm::new(m, config, Box::new(MediaHost));
    let a = negotiated(&mut vm);
    let blocks = ret(&mut vm, a, "query-block", json!({}));
    let names: Vec<&str> = blocks
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["device"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["ide0-hd0", "ide1-cd0", "floppy0", "sd0"]);
    let hd = &blocks[0];
    assert_eq!(hd["removable"], false);
    assert!(hd.get("tray-open").is_none());
    assert_eq!(hd["io-status"], "ok");
    assert_eq!(hd["inserted"]["file"], "disk.img");
    assert_eq!(hd["inserted"]["drv"], "raw");
    assert_eq!(hd["inserted"]["ro"], false);
    assert_eq!(hd["inserted"]["bps"], 0);
    let cd = &blocks[1];
    assert_eq!(cd["removable"], true);
    assert_eq!(cd["tray-open"], false);
    assert!(cd.get("inserted").is_none());
    // Errors as 1.1 reports them.
    let err = |vm: &mut Vm, req: Value| {
        send(vm, a, req)[0]["error"]["class"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        err(
            &mut vm,
            json!({"execute": "eject", "arguments": {"device": "nope"}})
        ),
        "DeviceNotFound"
    );
    assert_eq!(
        err(
            &mut vm,
            json!({"execute": "eject", "arguments": {"device": "ide0-hd0"}})
        ),
        "DeviceNotRemovable"
    );
    assert_eq!(
        err(
            &mut vm,
            json!({"execute": "change", "arguments": {"device": "ide1-cd0", "target": "missing.iso"}})
        ),
        "OpenFileFailed"
    );
    assert_eq!(
        err(
            &mut vm,
            json!({"execute": "change", "arguments": {"device": "ide1-cd0", "target": "second.iso", "arg": "vmdk9"}})
        ),
        "InvalidBlockFormat"
    );
    // change: the medium goes in, the tray closes (it was opened by the failed change's eject).
    let out = send(
        &mut vm,
        a,
        json!({"execute": "change", "arguments": {"device": "ide1-cd0", "target": "second.iso"}, "id": 5}),
    );
    let last = out.last().unwrap();
    assert_eq!(last, &json!({"return": {}, "id": 5}));
    let trays: Vec<&Value> = out
        .iter()
        .filter(|v| v["event"] == "DEVICE_TRAY_MOVED")
        .collect();
    assert_eq!(
        trays.last().unwrap()["data"],
        json!({"device": "ide1-cd0", "tray-open": false})
    );
    let blocks = ret(&mut vm, a, "query-block", json!({}));
    assert_eq!(blocks[1]["inserted"]["file"], "second.iso");
    assert_eq!(blocks[1]["inserted"]["ro"], true);
    assert_eq!(blocks[1]["tray-open"], false);
    // eject: the tray opens (event before the return), the medium is gone.
    let out = send(
        &mut vm,
        a,
        json!({"execute": "eject", "arguments": {"device": "ide1-cd0"}}),
    );
    assert_eq!(
        out[0]["data"],
        json!({"device": "ide1-cd0", "tray-open": true})
    );
    assert_eq!(out[1], json!({"return": {}}));
    let blocks = ret(&mut vm, a, "query-block", json!({}));
    assert!(blocks[1].get("inserted").is_none());
    assert_eq!(blocks[1]["tray-open"], true);
    // Throttling is stored and reported; a total with a read limit is refused.
    ret(
        &mut vm,
        a,
        "block_set_io_throttle",
        json!({"device": "ide0-hd0", "bps": 1000000, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0}),
    );
    assert_eq!(
        ret(&mut vm, a, "query-block", json!({}))[0]["inserted"]["bps"],
        1_000_000
    );
    assert_eq!(
        err(
            &mut vm,
            json!({"execute": "block_set_io_throttle", "arguments": {"device": "ide0-hd0", "bps": 1, "bps_rd": 1, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0}})
        ),
        "InvalidParameterCombination"
    );
    assert_eq!(
        err(
            &mut vm,
            json!({"execute": "block_passwd", "arguments": {"device": "ide0-hd0", "password": "x"}})
        ),
        "DeviceNotEncrypted"
    );
    let stats = ret(&mut vm, a, "query-blockstats", json!({}));
    assert_eq!(stats[0]["device"], "ide0-hd0");
    assert_eq!(stats[0]["stats"]["rd_operations"], 0);
    let hmp = ret(
        &mut vm,
        a,
        "human-monitor-command",
        json!({"command-line": "info block"}),
    );
    let hmp = hmp.as_str().unwrap();
    assert!(
        hmp.contains(
            "ide0-hd0: removable=0 io-status=ok file=disk.img ro=0 drv=raw encrypted=0 bps=1000000"
        ),
        "{hmp}"
    );
    assert!(
        hmp.contains("ide1-cd0: removable=1 locked=0 tray-open=1 io-status=ok [not inserted]"),
        "{hmp}"
    );
}

#[test]
fn cli_hlt_with_a_pending_interrupt_does_not_hang() {
    // A 64 KiB "BIOS": at the reset vector, unmask IRQ0 on the master PIC, then cli; hlt.
    // The PIT's power-on tick raises IRQ0, which the halted CPU cannot take.
    let mut bios = vec![0xF4u8; 0x1_0000];
    let code: &[u8] = &[
        0xB0, 0xFE, // mov al, 0xfe
        0xE6, 0x21, // out 0x21, al (OCW1: only IRQ0 unmasked)
        0xFA, // cli
        0xF4, // hlt
        0xEB, 0xFD, // jmp back to hlt
    ];
    bios[0xFFF0..0xFFF0 + code.len()].copy_from_slice(code);
    let m = Machine::new(MachineConfig::new(16 << 20, bios)).expect("machine");
    let mut vm = Vm::new(
        m,
        VmConfig {
            deterministic: true,
            ..VmConfig::default()
        },
        Box::new(MediaHost),
    );
    for _ in 0..50 {
        // Every step returns: time advances to the next deadline while the CPU stays halted.
        vm.step(1_000_000);
    }
    assert!(
        vm.machine_mut().now() > 100_000_000,
        "virtual time advanced while halted"
    );
    assert!(vm.machine_mut().cpus()[0].is_halted());
}
