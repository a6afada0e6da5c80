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

// ---- #AC ----

const GDT: u32 = 0x1000;
const IDT: u32 = 0x2000;
const TSS: u32 = 0x3000;
const HANDLERS: u32 = 0x5000;
/// The vector of the last exception (0xFF: none).
const SEEN: u32 = 0x6000;
const CODE: u32 = 0x4000;
const CR0_AM: u32 = 1 << 18;
const EFLAGS_AC: u32 = 1 << 18;
const NONE: u8 = 0xFF;

/// GDT (flat ring 0 and ring 3 code/data, a 32-bit TSS at selector 0x38), an IDT whose
/// vector v handler stores v at [SEEN] and halts.
fn pm_tables(b: &mut TestBus) {
    let d: [u64; 8] = [
        0,
        0x00CF_9A00_0000_FFFF,
        0x00CF_9200_0000_FFFF,
        0,
        0,
        0x00CF_FA00_0000_FFFF,
        0x00CF_F200_0000_FFFF,
        0x0000_8900_0000_0067 | ((TSS as u64) << 16),
    ];
    for (i, v) in d.iter().enumerate() {
        b.load(GDT + 8 * i as u32, &v.to_le_bytes());
    }
    b.write_u32(TSS + 4, 0x9000);
    b.write_u32(TSS + 8, 0x10);
    for v in 0..=255u32 {
        let h = HANDLERS + 16 * v;
        b.load(h, &[0xC6, 0x05, 0x00, 0x60, 0x00, 0x00, v as u8, 0xF4]);
        b.write_u32(IDT + 8 * v, (0x08 << 16) | (h & 0xFFFF));
        let dpl3 = if v == 3 { 0x6000 } else { 0 };
        b.write_u32(IDT + 8 * v + 4, (h & 0xFFFF_0000) | 0x8E00 | dpl3);
    }
    b.load(SEEN, &[NONE]);
}

/// A flat protected-mode CPU at `cpl` (0 or 3) running `code` at CODE, with `cr0_am` and
/// `eflags_ac` as given, EBX = `ebx`, ESP = 0x8000.
fn pm_at(b: &mut TestBus, cpl: u8, am: bool, ac: bool, code: &[u8], ebx: u32) -> Cpu {
    pm_tables(b);
    b.load(CODE, code);
    let mut c = Cpu::new();
    c.setup_flat32(CODE);
    c.set_gdtr(GDT, 0x3F);
    c.set_idtr(IDT, 0x7FF);
    let mut s = c.state();
    let (cs, ds) = if cpl == 3 { (0x2B, 0x33) } else { (0x08, 0x10) };
    let dpl = (cpl as u16) << 5;
    for (i, seg) in s.segs.iter_mut().enumerate() {
        let code_seg = i == sreg::CS;
        seg.selector = if code_seg { cs } else { ds };
        seg.base = 0;
        seg.limit = 0xFFFF_FFFF;
        seg.attr = if code_seg { 0xC09B } else { 0xC093 } | dpl;
    }
    s.cpl = cpl;
    s.tr.selector = 0x38;
    s.tr.base = TSS;
    s.tr.limit = 0x67;
    s.tr.attr = 0x8B;
    s.cr[0] = 0x31 | if am { CR0_AM } else { 0 };
    s.eflags = 2 | if ac { EFLAGS_AC } else { 0 };
    s.gpr[3] = ebx;
    s.gpr[4] = 0x8000;
    c.restore(&s).unwrap();
    c
}

/// Runs `code` (followed by INT3, whose gate is open to ring 3) at `cpl` with alignment
/// checking as given and returns the vector of the exception raised (NONE if the code
/// reached its INT3).
fn ac_case(cpl: u8, am: bool, ac: bool, code: &[u8], ebx: u32) -> u8 {
    let mut b = bus();
    let mut full = code.to_vec();
    full.push(0xCC);
    let mut c = pm_at(&mut b, cpl, am, ac, &full, ebx);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    let mut seen = [0u8];
    b.read(SEEN, &mut seen);
    if seen[0] == 3 {
        // The INT3 frame: its return EIP is the end of the code.
        let esp = if cpl == 3 { 0x9000 - 20 } else { c.reg32(ESP) };
        assert_eq!(b.read_u32(esp), CODE + full.len() as u32, "ran to the end");
        return NONE;
    }
    seen[0]
}

/// `code` at a misaligned `bad` address raises #AC at CPL 3 with AM and AC, and nothing at
/// CPL 0, without AM, without AC, or at the aligned `good` address.
fn ac_class(code: &[u8], bad: u32, good: u32) {
    assert_eq!(
        ac_case(3, true, true, code, bad),
        17,
        "{code:02x?} at {bad:#x}"
    );
    assert_eq!(ac_case(0, true, true, code, bad), NONE, "CPL 0");
    assert_eq!(ac_case(3, false, true, code, bad), NONE, "AM = 0");
    assert_eq!(ac_case(3, true, false, code, bad), NONE, "AC = 0");
    assert_eq!(
        ac_case(3, true, true, code, good),
        NONE,
        "aligned {good:#x}"
    );
}

#[test]
fn ac_word_and_dword_accesses() {
    ac_class(&[0x66, 0x8B, 0x03], 0x7001, 0x7002); // mov ax, [ebx]
    ac_class(&[0x8B, 0x03], 0x7002, 0x7004); // mov eax, [ebx]
    ac_class(&[0x89, 0x03], 0x7003, 0x7008); // mov [ebx], eax
    ac_class(&[0x66, 0x01, 0x03], 0x7005, 0x7006); // add [ebx], ax
                                                   // Bytes are never misaligned.
    assert_eq!(ac_case(3, true, true, &[0x8A, 0x03], 0x7001), NONE);
}

#[test]
fn ac_write_leaves_memory_untouched() {
    let mut b = bus();
    let mut c = pm_at(&mut b, 3, true, true, &[0x89, 0x03, 0xCC], 0x7001);
    c.set_reg32(0, 0xDEAD_BEEF);
    run(&mut c, &mut b);
    assert_eq!(b.read_u32(SEEN) & 0xFF, 17);
    assert_eq!(b.read_u32(0x7001), 0);
}

#[test]
fn ac_stack_accesses() {
    // mov esp, ebx; push eax
    ac_class(&[0x89, 0xDC, 0x50], 0x8002, 0x8004);
    // mov esp, ebx; pop eax
    ac_class(&[0x89, 0xDC, 0x58], 0x7FFE, 0x7FFC);
}

#[test]
fn ac_x87_operands() {
    ac_class(&[0xD9, 0x03], 0x7002, 0x7004); // fld dword [ebx]
    ac_class(&[0xDD, 0x03], 0x7004, 0x7008); // fld qword [ebx]
    ac_class(&[0xDF, 0x2B], 0x7004, 0x7008); // fild qword [ebx]
    ac_class(&[0xDF, 0x03], 0x7001, 0x7002); // fild word [ebx]
    ac_class(&[0xD9, 0xEE, 0xDB, 0x3B], 0x7004, 0x7008); // fldz; fstp tword [ebx]
    ac_class(&[0xD9, 0xEE, 0xDD, 0x1B], 0x7004, 0x7008); // fldz; fstp qword [ebx]
    ac_class(&[0xDC, 0x03], 0x7004, 0x7010); // fadd qword [ebx]
    ac_class(&[0xD9, 0x3B], 0x7001, 0x7002); // fnstcw [ebx]
    ac_class(&[0xD9, 0x33], 0x7002, 0x7004); // fnstenv [ebx] (32-bit: 4)
    ac_class(&[0x66, 0xD9, 0x33], 0x7001, 0x7002); // fnstenv [ebx] (16-bit: 2)
    ac_class(&[0xDD, 0x33], 0x7002, 0x7004); // fnsave [ebx]
                                             // FRSTOR reads its registers at offsets 28 + 10 i: only the image start counts.
    ac_class(&[0xDD, 0x23], 0x7002, 0x7004); // frstor [ebx]
}

#[test]
fn ac_multi_piece_operands() {
    ac_class(&[0x0F, 0xC7, 0x0B], 0x7004, 0x7008); // cmpxchg8b [ebx]
    ac_class(&[0xC4, 0x03], 0x7002, 0x7004); // les eax, [ebx] (m16:32: 4)
    ac_class(&[0x66, 0xC4, 0x03], 0x7001, 0x7002); // les ax, [ebx] (m16:16: 2)
    ac_class(&[0x0F, 0x6F, 0x03], 0x7004, 0x7008); // movq mm0, [ebx]
    ac_class(&[0x0F, 0x7F, 0x03], 0x7004, 0x7008); // movq [ebx], mm0
    ac_class(&[0x0F, 0xFE, 0x03], 0x7004, 0x7008); // paddd mm0, [ebx]
                                                   // SGDT stores a word then a dword: only addresses 2 modulo 4 pass.
    ac_class(&[0x0F, 0x01, 0x03], 0x7000, 0x7002);
    // rep movsw with a misaligned source (the bulk copy must not skip the check).
    ac_class(
        &[
            0x89, 0xDE, 0xBF, 0x00, 0x71, 0, 0, 0xB9, 8, 0, 0, 0, 0xF3, 0x66, 0xA5,
        ],
        0x7201,
        0x7200,
    );
}

#[test]
fn ac_comes_after_page_fault() {
    // Paging on, the page at 0x7000 not present: a misaligned access there is #PF.
    let mut b = bus();
    let mut c = pm_at(&mut b, 3, true, true, &[0x8B, 0x03, 0xCC], 0x7002);
    let pd = 0x10_0000u32;
    let pt = 0x10_1000u32;
    b.write_u32(pd, pt | 7);
    for i in 0..1024u32 {
        b.write_u32(pt + 4 * i, if i == 7 { 0 } else { (i << 12) | 7 });
    }
    let mut s = c.state();
    s.cr[0] |= 0x8000_0000;
    s.cr[2] = 0;
    s.cr[3] = 0;
    c.restore(&s).unwrap();
    c.set_cr3(pd);
    run(&mut c, &mut b);
    assert_eq!(b.read_u32(SEEN) & 0xFF, 14);
    assert_eq!(c.registers().cr2, 0x7002);
}
