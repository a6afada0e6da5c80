//! Boots Debian's i386 686 kernel with its busybox initramfs on the flat test bus (no
//! devices: serial output is read from the port log, a fake periodic timer interrupt stands in
//! for the PIT) until user space runs `/init`. Slow (billions of instructions): ignored by
//! default; skipped when `guest-images/linux` is absent.
//!
//! `cargo test -p wasm86-cpu --test cpu_linux -- --ignored --nocapture`

use wasm86_cpu::testbus::TestBus;
use wasm86_cpu::{Cpu, CpuExit};

const BOOT_PARAMS: u32 = 0x1_0000;
const CMDLINE: u32 = 0x2_0000;
const INITRD: u32 = 0x800_0000;
const RAM: u64 = 256 << 20;

/// Loads the kernel with the 32-bit boot protocol; None when the images are missing.
fn load_linux(b: &mut TestBus) -> Option<Cpu> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-images/linux");
    let k = std::fs::read(dir.join("bzImage")).ok()?;
    let initrd = std::fs::read(dir.join("initrd.img")).ok()?;
    let setup_sects = match k.get(0x1F1)? {
        0 => 4,
        &n => n as usize,
    };
    b.load(0x10_0000, k.get((setup_sects + 1) * 512..)?);
    let hdr_end = 0x202 + *k.get(0x201)? as usize;
    b.load(BOOT_PARAMS + 0x1F1, k.get(0x1F1..hdr_end)?);
    b.load(BOOT_PARAMS + 0x210, &[0xFF]); // type_of_loader: undefined
    b.load(BOOT_PARAMS + 0x211, &[*k.get(0x211)? | 0x80]); // CAN_USE_HEAP
    b.load(
        CMDLINE,
        b"console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 lpj=1000000\0",
    );
    b.write_u32(BOOT_PARAMS + 0x228, CMDLINE);
    b.load(INITRD, &initrd);
    b.write_u32(BOOT_PARAMS + 0x218, INITRD);
    b.write_u32(BOOT_PARAMS + 0x21C, initrd.len() as u32);
    let e820 = [(0u64, 0x9_FC00u64), (0x10_0000, RAM - 0x10_0000)];
    b.load(BOOT_PARAMS + 0x1E8, &[e820.len() as u8]);
    for (i, (addr, size)) in e820.iter().enumerate() {
        let o = BOOT_PARAMS + 0x2D0 + 20 * i as u32;
        b.load(o, &addr.to_le_bytes());
        b.load(o + 8, &size.to_le_bytes());
        b.load(o + 16, &1u32.to_le_bytes());
    }
    // Boot GDT: __BOOT_CS = 0x10, __BOOT_DS = 0x18.
    for (i, d) in [0u64, 0, 0x00CF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF]
        .iter()
        .enumerate()
    {
        b.load(0x5000 + 8 * i as u32, &d.to_le_bytes());
    }
    let mut c = Cpu::new();
    c.setup_flat32(0x10_0000);
    c.set_gdtr(0x5000, 0x1F);
    let mut s = c.state();
    for (i, sg) in s.segs.iter_mut().enumerate() {
        sg.selector = if i == 1 { 0x10 } else { 0x18 };
    }
    c.restore(&s).ok()?;
    c.set_reg32(6, BOOT_PARAMS);
    Some(c)
}

#[test]
#[ignore = "boots Linux: billions of instructions"]
fn linux_reaches_user_space() {
    let mut b = TestBus::new(RAM).unwrap();
    b.io_values.insert(0x3FD, 0x60); // 16550 LSR: transmitter empty
    let Some(mut c) = load_linux(&mut b) else {
        eprintln!("guest-images/linux not present: skipped");
        return;
    };
    let mut console = String::new();
    let mut ticks = 0u64;
    let t0 = std::time::Instant::now();
    // WASM86_LINUX_ICOUNT stops earlier (profiling); the assertions then do not apply.
    let cap: u64 = std::env::var("WASM86_LINUX_ICOUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000_000);
    while c.icount() < cap && !console.contains("Run /init as init process") {
        // A timer tick (IRQ0 = vector 0x30 as Linux programs the PIC) every 2M instructions
        // once the kernel runs with interrupts on.
        if b.pending_irqs.is_empty() && c.icount() / 2_000_000 > ticks {
            ticks = c.icount() / 2_000_000;
            b.pending_irqs.push_back(0x30);
        }
        let lim = c.icount() + 1_000_000;
        let exit = c.run(&mut b, lim);
        for a in b.io_log.drain(..) {
            if a.write && a.port == 0x3F8 {
                console.push(a.value as u8 as char);
            }
        }
        assert_ne!(
            exit,
            CpuExit::TripleFault,
            "triple fault; console:\n{console}"
        );
        if exit == CpuExit::Halted && b.pending_irqs.is_empty() {
            b.pending_irqs.push_back(0x30);
        }
    }
    println!("{console}");
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "{} instructions in {dt:.2}s: {:.1} MIPS",
        c.icount(),
        c.icount() as f64 / dt / 1e6
    );
    if cap < 20_000_000_000 {
        return;
    }
    assert!(console.contains("Linux version"), "{console}");
    assert!(console.contains("x86/fpu: x87 FPU will use FSAVE"));
    assert!(
        console.contains("Run /init as init process"),
        "stopped at icount {}",
        c.icount()
    );
}
