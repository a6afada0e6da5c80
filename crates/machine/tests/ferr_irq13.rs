//! PC-style x87 error reporting: with CR0.NE = 0 an unmasked x87 exception asserts FERR#,
//! which the board routes to IRQ13 of the slave 8259; a write to port 0xF0 drops IRQ13
//! (IGNNE#) until the FPU's error is cleared.

use wasm86_cpu::sreg;
use wasm86_machine::{Machine, MachineConfig, RunExit};

const COUNT: u32 = 0x600;
const WRITE_F0: u32 = 0x604;

/// Machine with real-mode code at 0x7C00: PICs at 0x08/0x70 with only IRQ13 (and the
/// cascade) unmasked, IRQ13 edge-triggered (the PIIX ELCR cannot make it level), an FDIV by zero with ZE unmasked, then
/// FWAIT, FLD1, HLT. The IRQ13 handler (vector 0x75) counts, writes port 0xF0 when
/// [WRITE_F0] is set, sends EOIs and returns; it halts with IF=0 at the fifth entry.
fn machine(write_f0: bool) -> Machine {
    let mut m = Machine::new(MachineConfig::new(16 << 20, vec![0xF4; 0x10000])).unwrap();
    let mut code = vec![];
    for (port, v) in [
        (0x20u8, 0x11u8),
        (0x21, 0x08),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xA0, 0x11),
        (0xA1, 0x70),
        (0xA1, 0x02),
        (0xA1, 0x01),
        (0x21, 0xFB),
        (0xA1, 0xDF),
    ] {
        code.extend_from_slice(&[0xB0, v, 0xE6, port]);
    }
    code.push(0xFB); // sti
    code.extend_from_slice(&[
        0xDB, 0xE3, // fninit
        0xD9, 0x2E, 0x00, 0x05, // fldcw [0x500]
        0xD9, 0xE8, // fld1
        0xD9, 0xEE, // fldz
        0xDE, 0xF9, // fdivp
        0x9B, // fwait
        0xD9, 0xE8, // fld1
        0xF4, // hlt
    ]);
    let handler = [
        0xFF, 0x06, 0x00, 0x06, // inc word [0x600]
        0x83, 0x3E, 0x00, 0x06, 0x05, // cmp word [0x600], 5
        0x72, 0x01, // jb +1
        0xF4, // hlt
        0x80, 0x3E, 0x04, 0x06, 0x00, // cmp byte [0x604], 0
        0x74, 0x02, // je +2
        0xE6, 0xF0, // out 0xF0, al
        0xB0, 0x20, 0xE6, 0xA0, 0xE6, 0x20, // EOI slave, master
        0xCF, // iret
    ];
    let b = m.board_mut();
    b.mem.write_phys(0x500, &0x037Bu16.to_le_bytes());
    b.mem.write_phys(WRITE_F0, &[write_f0 as u8]);
    b.mem.write_phys(0x75 * 4, &0x0000_8000u32.to_le_bytes());
    b.mem.write_phys(0x8000, &handler);
    b.mem.write_phys(0x7C00, &code);
    let c = m.cpu_mut(0).unwrap();
    c.set_segment_real(sreg::CS, 0);
    c.set_eip(0x7C00);
    c.set_reg32(4, 0x7000);
    m
}

fn count(m: &Machine) -> u16 {
    let mut b = [0u8; 2];
    m.board().mem.read_phys(COUNT, &mut b);
    u16::from_le_bytes(b)
}

#[test]
fn fdiv_by_zero_with_ne_clear_raises_irq13_and_port_f0_drops_it() {
    let mut m = machine(true);
    assert!(matches!(m.run(10_000), RunExit::Halted { .. }));
    assert_eq!(count(&m), 1, "IRQ13 delivered once");
    let r = m.cpus()[0].registers();
    assert_eq!(
        r.eip,
        0x7C00 + 57,
        "main code reached its HLT (FLD1 ran, no #MF)"
    );
    assert_ne!(r.fpu_sw & 0x80, 0, "the x87 error stays pending");
    let b = m.board();
    assert!(b.ferr, "FERR# still asserted");
    assert!(b.ignne, "port 0xF0 asserted IGNNE#");
    assert_eq!(b.pic.irr() & (1 << 13), 0, "IRQ13 no longer requested");
    assert_eq!(b.pic.isr(), 0, "both EOIs done");
}

#[test]
fn without_the_port_f0_write_irq13_stays_asserted() {
    let mut m = machine(false);
    assert!(matches!(m.run(10_000), RunExit::Halted { .. }));
    assert_eq!(count(&m), 1);
    let b = m.board();
    assert!(b.ferr && !b.ignne, "the IRQ13 line is still high");
}

#[test]
fn fnclex_drops_ferr_and_ignne() {
    let mut m = machine(true);
    assert!(matches!(m.run(10_000), RunExit::Halted { .. }));
    // Continue after the HLT at 0x7C00+56 with: fnclex; hlt (interrupts off).
    m.board_mut()
        .mem
        .write_phys(0x7C00 + 57, &[0xFA, 0xDB, 0xE2, 0xF4]);
    m.cpu_mut(0).unwrap().set_eip(0x7C00 + 57);
    assert!(matches!(m.run(10_000), RunExit::Halted { .. }));
    let b = m.board();
    assert!(!b.ferr && !b.ignne);
}
