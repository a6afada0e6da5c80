//! Legacy CPU features: x87 error reporting through FERR# with CR0.NE = 0 (IRQ13 on a PC),
//! the alignment-check exception (#AC), and the virtual-8086 mode extensions (VME, PVI).

use wasm86_cpu::testbus::TestBus;
use wasm86_cpu::{sreg, Cpu, CpuExit};

const ESP: usize = 4;

fn bus() -> TestBus {
    TestBus::new(16 << 20).unwrap()
}

fn real_cpu(ip: u32) -> Cpu {
    let mut c = Cpu::new();
    c.set_segment_real(sreg::CS, 0);
    c.set_eip(ip);
    c.set_reg32(ESP, 0x7000);
    c
}

/// Runs exactly `n` more instructions (or until HLT).
fn step(cpu: &mut Cpu, bus: &mut TestBus, n: u64) -> CpuExit {
    let lim = cpu.icount() + n;
    cpu.run(bus, lim)
}

fn run(cpu: &mut Cpu, bus: &mut TestBus) -> CpuExit {
    step(cpu, bus, 100_000)
}

// ---- FERR# (CR0.NE = 0) ----

/// fninit; fldcw [0x500] (ZE unmasked); fld1; fldz; fdivp (1/0: ZE pending).
const DIV_BY_ZERO: &[u8] = &[
    0xDB, 0xE3, 0xD9, 0x2E, 0x00, 0x05, 0xD9, 0xE8, 0xD9, 0xEE, 0xDE, 0xF9,
];

fn ferr_setup(code_after: &[u8]) -> (Cpu, TestBus) {
    let mut b = bus();
    b.load(0x500, &0x037Bu16.to_le_bytes());
    b.load(0x502, &0x037Fu16.to_le_bytes());
    // #MF (vector 16) handler at 0x8000: hlt.
    b.write_u32(16 * 4, 0x0000_8000);
    b.load(0x8000, &[0xF4]);
    let mut code = DIV_BY_ZERO.to_vec();
    code.extend_from_slice(code_after);
    b.load(0x7C00, &code);
    (real_cpu(0x7C00), b)
}

#[test]
fn ferr_asserted_at_next_waiting_instruction_and_dropped_by_fnclex() {
    // fwait; fld1; fnclex; hlt
    let (mut c, mut b) = ferr_setup(&[0x9B, 0xD9, 0xE8, 0xDB, 0xE2, 0xF4]);
    assert_eq!(c.registers().cr0 & 0x20, 0, "NE is 0 after reset");
    step(&mut c, &mut b, 5);
    assert!(
        b.ferr_log.is_empty(),
        "the faulting FDIVP itself does not signal"
    );
    assert_ne!(c.registers().fpu_sw & 0x80, 0, "ES set");
    step(&mut c, &mut b, 1);
    assert_eq!(b.ferr_log, [true], "FWAIT asserts FERR#");
    let top = (c.registers().fpu_sw >> 11) & 7;
    step(&mut c, &mut b, 1);
    assert_eq!(b.ferr_log, [true], "FERR# stays high, reported once");
    // The FLD1 after FWAIT executed (not faulted).
    assert_eq!((c.registers().fpu_sw >> 11) & 7, (top + 7) & 7);
    step(&mut c, &mut b, 1);
    assert_eq!(b.ferr_log, [true, false], "FNCLEX drops FERR#");
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.eip(), 0x7C00 + 18, "no #MF was taken");
}

#[test]
fn ferr_from_arithmetic_instruction_and_fldcw_masking_drops_it() {
    // fld1 (waiting: asserts FERR# and proceeds); fldcw [0x502] (masks ZE: ES = 0); hlt
    let (mut c, mut b) = ferr_setup(&[0xD9, 0xE8, 0xD9, 0x2E, 0x02, 0x05, 0xF4]);
    step(&mut c, &mut b, 5);
    let top = (c.registers().fpu_sw >> 11) & 7;
    step(&mut c, &mut b, 1);
    assert_eq!(b.ferr_log, [true]);
    assert_eq!(
        (c.registers().fpu_sw >> 11) & 7,
        (top + 7) & 7,
        "FLD1 executed"
    );
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.ferr_log, [true, false]);
    assert_eq!(c.registers().fpu_sw & 0x80, 0);
}

#[test]
fn ferr_new_error_after_clear_reasserts() {
    // fwait; fninit; fldcw; fld1; fldz; fdivp; fwait; hlt
    let mut after = vec![0x9B];
    after.extend_from_slice(DIV_BY_ZERO);
    after.extend_from_slice(&[0x9B, 0xF4]);
    let (mut c, mut b) = ferr_setup(&after);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.ferr_log, [true, false, true]);
}

#[test]
fn ferr_from_mmx_instruction() {
    // pxor mm0, mm0; hlt
    let (mut c, mut b) = ferr_setup(&[0x0F, 0xEF, 0xC0, 0xF4]);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.ferr_log, [true]);
    assert_eq!(c.eip(), 0x7C00 + 16, "PXOR executed, no #MF");
}

#[test]
fn ne_set_raises_mf_and_leaves_ferr_alone() {
    let (mut c, mut b) = ferr_setup(&[0x9B, 0xF4]);
    c.set_cr0(0x6000_0030);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert!(b.ferr_log.is_empty());
    assert_eq!(c.eip(), 0x8001, "#MF handler ran");
}

#[test]
fn ferr_level_is_saved_in_the_state() {
    let (mut c, mut b) = ferr_setup(&[0x9B, 0xDB, 0xE2, 0xF4]);
    step(&mut c, &mut b, 6);
    assert_eq!(b.ferr_log, [true]);
    let s = c.state();
    assert!(s.ferr);
    let mut c2 = Cpu::new();
    c2.restore(&s).unwrap();
    assert_eq!(run(&mut c2, &mut b), CpuExit::Halted);
    assert_eq!(
        b.ferr_log,
        [true, false],
        "the restored CPU knows FERR# was high"
    );
}
