//! Legacy CPU features: x87 error reporting through FERR# with CR0.NE = 0 (IRQ13 on a PC),
//! the alignment-check exception (#AC), and the virtual-8086 mode extensions (VME, PVI).

mod common;

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

/// GDT (`common::load_gdt`: flat ring 0 and ring 3 code/data, a 32-bit TSS at selector
/// 0x38), an IDT whose vector v handler stores v at [SEEN] and halts (gates 3 and 0x21 open
/// to ring 3).
fn pm_tables(b: &mut TestBus) {
    common::load_gdt(b, GDT, TSS);
    b.write_u32(TSS + 4, 0x9000);
    b.write_u32(TSS + 8, 0x10);
    for v in 0..=255u32 {
        let h = HANDLERS + 16 * v;
        // ss: mov byte [SEEN], v; hlt (DS is null after an interrupt from V86 mode)
        b.load(
            h,
            &[0x36, 0xC6, 0x05, 0x00, 0x60, 0x00, 0x00, v as u8, 0xF4],
        );
        b.write_u32(IDT + 8 * v, (0x08 << 16) | (h & 0xFFFF));
        let dpl3 = if v == 3 || v == 0x21 { 0x6000 } else { 0 };
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

// ---- VME / PVI ----

const CR4_VME: u32 = 1;
const CR4_PVI: u32 = 2;
const IF: u32 = 1 << 9;
const VM: u32 = 1 << 17;
const VIF: u32 = 1 << 19;
const VIP: u32 = 1 << 20;
/// I/O map base in the TSS: the redirection bitmap is the 32 bytes below it.
const IOMAP: u32 = 0x88;
/// The V86 task's IVT handler for INT 0x21 (at 0000:4800): records the flags image its
/// PUSHF sees at [0x6102], marks [0x6100], IRET.
const V86_HANDLER: u32 = 0x4800;
/// Frame of an exception from V86 mode on the ring-0 stack (ESP0 0x9000, error code).
const FRAME_EIP: u32 = 0x9000 - 36;
const FRAME_EFLAGS: u32 = 0x9000 - 28;

struct V86 {
    cpu: Cpu,
    bus: TestBus,
}

impl V86 {
    /// V86 mode at 0000:CODE (SS:SP 0000:7000), IOPL `iopl`, CR4 `cr4`, extra EFLAGS bits
    /// `fl` (IF is set), INT 0x21 redirected unless `bitmap_set`.
    fn new(code: &[u8], iopl: u32, cr4: u32, fl: u32, bitmap_set: bool) -> V86 {
        let mut b = bus();
        pm_tables(&mut b);
        // A TSS with ESP0/SS0, the I/O map base, a redirection bitmap and an all-open I/O
        // bitmap.
        b.write_u32(TSS + 0x64, IOMAP << 16);
        let mut redir = [0u8; 32];
        if bitmap_set {
            redir[0x21 / 8] = 1 << (0x21 % 8);
        }
        b.load(TSS + IOMAP - 32, &redir);
        b.load(CODE, code);
        b.write_u32(0x21 * 4, V86_HANDLER);
        b.load(
            V86_HANDLER,
            &[
                0xC6, 0x06, 0x00, 0x61, 0x21, // mov byte [0x6100], 0x21
                0x9C, 0x58, 0xA3, 0x02, 0x61, // pushf; pop ax; mov [0x6102], ax
                0xCF, // iret
            ],
        );
        let mut c = Cpu::new();
        c.setup_flat32(CODE);
        c.set_gdtr(GDT, 0x3F);
        c.set_idtr(IDT, 0x7FF);
        let mut s = c.state();
        for seg in s.segs.iter_mut() {
            seg.selector = 0;
            seg.base = 0;
            seg.limit = 0xFFFF;
            seg.attr = 0xF3;
        }
        s.cpl = 3;
        s.tr.selector = 0x38;
        s.tr.base = TSS;
        s.tr.limit = IOMAP + 0x2000;
        s.tr.attr = 0x8B;
        s.cr[0] = 0x31;
        s.cr[3] = cr4;
        s.eflags = 2 | VM | IF | (iopl << 12) | fl;
        s.eip = CODE;
        s.gpr[4] = 0x7000;
        c.restore(&s).unwrap();
        V86 { cpu: c, bus: b }
    }

    /// Runs to the HLT that ends every snippet (a #GP from V86 mode) or another exception;
    /// returns the vector, the faulting EIP and the EFLAGS in the frame.
    fn run(&mut self) -> (u8, u32, u32) {
        assert_eq!(run(&mut self.cpu, &mut self.bus), CpuExit::Halted);
        let mut seen = [0u8];
        self.bus.read(SEEN, &mut seen);
        (
            seen[0],
            self.bus.read_u32(FRAME_EIP),
            self.bus.read_u32(FRAME_EFLAGS),
        )
    }
}

/// Runs `code` + HLT in V86 mode and returns the EFLAGS at the HLT (asserting it was the
/// HLT that trapped).
fn v86_flags(code: &[u8], iopl: u32, cr4: u32, fl: u32) -> u32 {
    let mut full = code.to_vec();
    full.push(0xF4);
    let mut v = V86::new(&full, iopl, cr4, fl, false);
    let (vector, eip, flags) = v.run();
    assert_eq!((vector, eip), (13, CODE + code.len() as u32), "{code:02x?}");
    flags
}

/// Runs `code` in V86 mode and returns the vector and EIP of its first exception.
fn v86_fault(code: &[u8], iopl: u32, cr4: u32, fl: u32) -> (u8, u32) {
    let mut full = code.to_vec();
    full.push(0xF4);
    let mut v = V86::new(&full, iopl, cr4, fl, false);
    let (vector, eip, _) = v.run();
    (vector, eip)
}

#[test]
fn vme_cli_sti_act_on_vif() {
    let f = v86_flags(&[0xFA], 0, CR4_VME, VIF);
    assert_eq!(f & (VIF | IF), IF, "CLI clears VIF, not IF");
    let f = v86_flags(&[0xFB], 0, CR4_VME, 0);
    assert_eq!(f & (VIF | IF), VIF | IF, "STI sets VIF");
    // STI with VIP set: #GP at the STI.
    assert_eq!(v86_fault(&[0xFB], 0, CR4_VME, VIP), (13, CODE));
    // IOPL 3: the real IF.
    let f = v86_flags(&[0xFA], 3, CR4_VME, VIF);
    assert_eq!(f & (VIF | IF), VIF);
    // VME off: #GP as before.
    assert_eq!(v86_fault(&[0xFA], 0, 0, 0), (13, CODE));
}

#[test]
fn vme_pushf_popf() {
    // pushf; pop ax: IF shows VIF (0 here although IF = 1), IOPL shows 3.
    let mut v = V86::new(&[0x9C, 0x58, 0xF4], 0, CR4_VME, 0, false);
    v.run();
    assert_eq!(v.cpu.reg32(0) & (IF | 0x3000), 0x3000);
    let mut v = V86::new(&[0x9C, 0x58, 0xF4], 0, CR4_VME, VIF, false);
    v.run();
    assert_eq!(v.cpu.reg32(0) & (IF | 0x3000), IF | 0x3000);
    // PUSHFD/POPFD keep trapping.
    assert_eq!(v86_fault(&[0x66, 0x9C], 0, CR4_VME, 0), (13, CODE));
    assert_eq!(v86_fault(&[0x66, 0x9D], 0, CR4_VME, 0), (13, CODE));
    // push 0x3201 (IF, IOPL 3, CF); popf: VIF set, IF and IOPL unchanged, CF loaded.
    let f = v86_flags(&[0x68, 0x01, 0x32, 0x9D], 0, CR4_VME, 0);
    assert_eq!(f & (VIF | IF | 0x3000 | 1), VIF | IF | 1);
    // push 0; popf: VIF cleared, IF stays.
    let f = v86_flags(&[0x6A, 0x00, 0x9D], 0, CR4_VME, VIF);
    assert_eq!(f & (VIF | IF), IF);
    // TF in the image, or IF while VIP is set: #GP and SP unchanged.
    assert_eq!(
        v86_fault(&[0x68, 0x00, 0x01, 0x9D], 0, CR4_VME, 0),
        (13, CODE + 3)
    );
    let mut v = V86::new(&[0x68, 0x00, 0x02, 0x9D], 0, CR4_VME, VIP, false);
    assert_eq!(v.run().0, 13);
    assert_eq!(v.cpu.reg32(ESP), 0x9000 - 40, "ring-0 stack");
    assert_eq!(v.bus.read_u32(0x9000 - 24), 0x6FFE, "V86 SP not popped");
    // VME off: POPF traps.
    assert_eq!(v86_fault(&[0x6A, 0x00, 0x9D], 0, 0, 0), (13, CODE + 2));
}

#[test]
fn vme_iret16() {
    // push flags 0x0200; push cs 0; push ip (CODE+9); iret; hlt at CODE+9.
    let code = [0x68, 0x00, 0x02, 0x6A, 0x00, 0x68, 0x0A, 0x40, 0xCF, 0x90];
    let f = v86_flags(&code, 0, CR4_VME, 0);
    assert_eq!(
        f & (VIF | IF),
        VIF | IF,
        "IRET loads VIF from the image's IF"
    );
    let mut v = V86::new(&code, 0, CR4_VME, VIP, false);
    assert_eq!(v.run().0, 13);
    assert_eq!(
        v.bus.read_u32(FRAME_EIP),
        CODE + 8,
        "#GP at the IRET (IF with VIP)"
    );
    // IRETD traps.
    assert_eq!(
        v86_fault(
            &[0x68, 0x00, 0x02, 0x6A, 0x00, 0x68, 0x0B, 0x40, 0x66, 0xCF],
            0,
            CR4_VME,
            0
        ),
        (13, CODE + 8)
    );
}

#[test]
fn vme_int_n_methods() {
    // Method 6 (IOPL < 3, bit clear): to the V86 IVT handler; VIF cleared inside (PUSHF
    // shows IF 0), restored by its IRET.
    let mut v = V86::new(&[0xCD, 0x21, 0xF4], 0, CR4_VME, VIF, false);
    let (vector, eip, fl) = v.run();
    assert_eq!((vector, eip), (13, CODE + 2));
    assert_eq!(v.bus.read_u16(0x6100) & 0xFF, 0x21);
    assert_eq!(v.bus.read_u16(0x6102) as u32 & (IF | 0x3000), 0x3000);
    assert_eq!(fl & (VIF | IF), VIF | IF);
    // Method 5 (IOPL 3, bit clear): to the V86 IVT handler with IF cleared.
    let mut v = V86::new(&[0xCD, 0x21, 0xF4], 3, CR4_VME, 0, false);
    let (vector, eip, fl) = v.run();
    assert_eq!((vector, eip), (13, CODE + 2));
    assert_eq!(v.bus.read_u16(0x6102) as u32 & (IF | 0x3000), 0x3000);
    assert_eq!(fl & IF, IF);
    // Method 3 (IOPL < 3, bit set): #GP.
    let mut v = V86::new(&[0xCD, 0x21, 0xF4], 0, CR4_VME, 0, true);
    assert_eq!(v.run().0, 13);
    assert_eq!(v.bus.read_u16(0x6100), 0, "IVT handler not run");
    assert_eq!(v.bus.read_u32(FRAME_EIP), CODE);
    // Method 4 (IOPL 3, bit set): the protected-mode handler.
    let mut v = V86::new(&[0xCD, 0x21, 0xF4], 3, CR4_VME, 0, true);
    assert_eq!(v.run().0, 0x21);
    // VME off (methods 1 and 2): bitmap ignored.
    let mut v = V86::new(&[0xCD, 0x21, 0xF4], 3, 0, 0, false);
    assert_eq!(v.run().0, 0x21);
    let mut v = V86::new(&[0xCD, 0x21, 0xF4], 0, 0, 0, false);
    assert_eq!(v.run().0, 13);
    assert_eq!(v.bus.read_u16(0x6100), 0);
}

#[test]
fn vme_external_interrupts_ignore_vif() {
    // VIF clear, IF set: an external interrupt is delivered to the protected-mode handler.
    let mut v = V86::new(&[0x90, 0x90, 0xF4], 0, CR4_VME, 0, false);
    v.bus.pending_irqs.push_back(0x30);
    assert_eq!(v.run().0, 0x30);
}

#[test]
fn ac_in_v86_mode() {
    // mov ax, [0x7001] with CR0.AM and EFLAGS.AC in V86 mode (CPL 3).
    let mut v = V86::new(&[0xA1, 0x01, 0x70, 0xF4], 0, 0, EFLAGS_AC, false);
    let mut s = v.cpu.state();
    s.cr[0] |= CR0_AM;
    v.cpu.restore(&s).unwrap();
    assert_eq!(v.run().0, 17);
    let mut v = V86::new(&[0xA1, 0x02, 0x70, 0xF4], 0, 0, EFLAGS_AC, false);
    let mut s = v.cpu.state();
    s.cr[0] |= CR0_AM;
    v.cpu.restore(&s).unwrap();
    assert_eq!(v.run().0, 13, "aligned: reaches the HLT");
}

/// Runs `code` + INT3 at CPL 3 in protected mode with IOPL 0, CR4 `cr4` and extra EFLAGS
/// `fl`; returns the vector seen and the EFLAGS of the last frame.
fn pvi_case(code: &[u8], cr4: u32, fl: u32) -> (u8, u32) {
    let mut b = bus();
    let mut full = code.to_vec();
    full.push(0xCC);
    let mut c = pm_at(&mut b, 3, false, false, &full, 0);
    let mut s = c.state();
    s.cr[3] = cr4;
    s.eflags |= fl;
    c.restore(&s).unwrap();
    run(&mut c, &mut b);
    let mut seen = [0u8];
    b.read(SEEN, &mut seen);
    // EFLAGS in the frame of the interrupt from ring 3.
    (seen[0], b.read_u32(0x9000 - 12))
}

#[test]
fn pvi_cli_sti_at_cpl3() {
    let (v, f) = pvi_case(&[0xFA], CR4_PVI, IF | VIF);
    assert_eq!(v, 3);
    assert_eq!(f & (IF | VIF), IF, "CLI cleared VIF only");
    let (v, f) = pvi_case(&[0xFB], CR4_PVI, 0);
    assert_eq!(v, 3);
    assert_eq!(f & (IF | VIF), VIF);
    assert_eq!(pvi_case(&[0xFB], CR4_PVI, VIP).0, 13, "STI with VIP");
    assert_eq!(
        pvi_case(&[0xFA], 0, IF).0,
        13,
        "PVI off: CLI at CPL 3 > IOPL traps"
    );
    // PUSHF/POPF are unchanged by PVI: POPF silently keeps IF.
    let (v, f) = pvi_case(&[0x6A, 0x00, 0x9D], CR4_PVI, IF | VIF);
    assert_eq!(v, 3);
    assert_eq!(f & (IF | VIF), IF | VIF);
}

#[test]
fn cr4_accepts_vme_and_pvi() {
    let mut b = bus();
    // mov eax, 3; mov cr4, eax; mov eax, cr4; hlt
    b.load(
        0x4000,
        &[0xB8, 3, 0, 0, 0, 0x0F, 0x22, 0xE0, 0x0F, 0x20, 0xE0, 0xF4],
    );
    let mut c = Cpu::new();
    c.setup_flat32(0x4000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(0), 3);
    let s = c.state();
    let mut c2 = Cpu::new();
    c2.restore(&s).unwrap();
    assert_eq!(c2.registers().cr4, 3);
}
