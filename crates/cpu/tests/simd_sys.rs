//! MMX/SSE/SSE2 system behaviour: availability (CR0.EM/TS, CR4.OSFXSR), alignment, MXCSR,
//! SIMD floating-point exceptions, faults in the middle of a store, MMX/x87 aliasing,
//! FXSAVE/FXRSTOR and the CPU state with XMM contents.

use wasm86_cpu::testbus::TestBus;
use wasm86_cpu::{Cpu, CpuExit, CpuState};

const GDT: u32 = 0x1000;
const IDT: u32 = 0x2000;
/// Handler of vector v at HANDLERS + 16 v: hlt.
const HANDLERS: u32 = 0x3000;
const PD: u32 = 0xA000;
const PT: u32 = 0xB000;
const CODE: u32 = 0x1_0000;
/// 16-byte aligned data.
const D: u32 = 0x2_0000;
const D2: u32 = 0x2_1000;
const D3: u32 = 0x2_2000;
/// A page that is not present when paging is on.
const HOLE: u32 = 0x5_0000;

const CR4_OSFXSR: u32 = 1 << 9;
const CR4_OSXMMEXCPT: u32 = 1 << 10;
const NO_FAULT: Option<u8> = None;

const EAX: usize = 0;

fn d32(a: u32) -> [u8; 4] {
    a.to_le_bytes()
}

/// `insn` with ModR/M `reg` field `r` and the absolute address `a` (mod 00, r/m 101).
fn abs(insn: &[u8], r: u8, a: u32) -> Vec<u8> {
    let mut v = insn.to_vec();
    v.push((r << 3) | 5);
    v.extend(d32(a));
    v
}

struct Vm {
    cpu: Cpu,
    bus: TestBus,
}

impl Vm {
    /// Flat 32-bit protected mode, CPL 0, every vector to its own HLT.
    fn new(cr4: u32) -> Vm {
        let mut bus = TestBus::new(16 << 20).unwrap();
        let gdt: [u64; 3] = [0, 0x00CF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF];
        for (i, v) in gdt.iter().enumerate() {
            bus.load(GDT + 8 * i as u32, &v.to_le_bytes());
        }
        for v in 0..32u32 {
            let off = HANDLERS + 16 * v;
            bus.load(off, &[0xF4]);
            let lo = (0x08 << 16) | (off & 0xFFFF);
            let hi = (off & 0xFFFF_0000) | 0x8E00;
            bus.write_u32(IDT + 8 * v, lo);
            bus.write_u32(IDT + 8 * v + 4, hi);
        }
        let mut cpu = Cpu::new();
        cpu.setup_flat32(CODE);
        cpu.set_gdtr(GDT, 0x17);
        cpu.set_idtr(IDT, 0xFF);
        cpu.set_reg32(4, 0x9000);
        cpu.set_cr4(cr4);
        Vm { cpu, bus }
    }

    /// Runs `code` (a HLT is appended) at CODE; returns the exception vector raised, if any.
    fn run(&mut self, code: &[u8]) -> Option<u8> {
        let mut c = code.to_vec();
        c.push(0xF4);
        self.bus.load(CODE, &c);
        self.cpu.set_reg32(4, 0x9000);
        self.cpu.set_eip(CODE);
        let exit = self.cpu.run(&mut self.bus, self.cpu.icount() + 10_000);
        assert_eq!(exit, CpuExit::Halted);
        let eip = self.cpu.eip();
        if eip == CODE + c.len() as u32 {
            None
        } else {
            assert!(
                (HANDLERS..HANDLERS + 16 * 32).contains(&eip),
                "stopped at {eip:#x}"
            );
            Some(((eip - 1 - HANDLERS) / 16) as u8)
        }
    }

    /// The address of the faulting instruction (pushed by the exception; no error code).
    fn fault_eip(&self, with_code: bool) -> u32 {
        let sp = self.cpu.reg32(4);
        self.bus.read_u32(if with_code { sp + 4 } else { sp })
    }

    fn xmm(&self, i: usize) -> u128 {
        let [lo, hi] = self.cpu.registers().xmm[i];
        (hi as u128) << 64 | lo as u128
    }

    fn load128(&mut self, a: u32, v: u128) {
        self.bus.load(a, &v.to_le_bytes());
    }

    fn read128(&self, a: u32) -> u128 {
        let mut b = [0u8; 16];
        self.bus.read(a, &mut b);
        u128::from_le_bytes(b)
    }

    fn read_bytes(&self, a: u32, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.bus.read(a, &mut b);
        b
    }

    /// Identity-maps the first 4 MiB except the page at HOLE, and turns paging on.
    fn paging(&mut self) {
        self.bus.write_u32(PD, PT | 7);
        for i in 0..1024u32 {
            let pte = if i << 12 == HOLE { 0 } else { (i << 12) | 7 };
            self.bus.write_u32(PT + 4 * i, pte);
        }
        self.cpu.set_cr3(PD);
        let regs = self.cpu.registers();
        self.cpu.set_cr0(regs.cr0 | 0x8000_0000);
    }
}

const MOVDQU_LOAD: &[u8] = &[0xF3, 0x0F, 0x6F];
const MOVDQU_STORE: &[u8] = &[0xF3, 0x0F, 0x7F];
const MOVAPS_LOAD: &[u8] = &[0x0F, 0x28];
const MOVUPS_LOAD: &[u8] = &[0x0F, 0x10];
const MOVQ_MM_LOAD: &[u8] = &[0x0F, 0x6F];
const GRP15: &[u8] = &[0x0F, 0xAE];
const ADDPS_X0_X1: &[u8] = &[0x0F, 0x58, 0xC1];
const PADDB_MM0_MM1: &[u8] = &[0x0F, 0xFC, 0xC1];
const EMMS: &[u8] = &[0x0F, 0x77];

#[test]
fn availability_follows_cr0_and_cr4() {
    // SSE needs CR4.OSFXSR; MMX does not.
    let mut vm = Vm::new(0);
    assert_eq!(vm.run(ADDPS_X0_X1), Some(6));
    assert_eq!(vm.run(&abs(GRP15, 2, D)), Some(6), "LDMXCSR without OSFXSR");
    assert_eq!(vm.run(PADDB_MM0_MM1), NO_FAULT);
    // PSHUFW (an SSE MMX extension) needs no OSFXSR either.
    assert_eq!(vm.run(&[0x0F, 0x70, 0xC1, 0x1B]), NO_FAULT);
    // CVTPI2PS touches XMM: it does.
    assert_eq!(vm.run(&[0x0F, 0x2A, 0xC1]), Some(6));

    let mut vm = Vm::new(CR4_OSFXSR);
    assert_eq!(vm.run(ADDPS_X0_X1), NO_FAULT);
    // CR0.TS: #NM for SSE, MMX, FXSAVE.
    let cr0 = vm.cpu.registers().cr0;
    vm.cpu.set_cr0(cr0 | 8);
    assert_eq!(vm.run(ADDPS_X0_X1), Some(7));
    assert_eq!(vm.run(PADDB_MM0_MM1), Some(7));
    assert_eq!(vm.run(EMMS), Some(7));
    assert_eq!(vm.run(&abs(GRP15, 0, D)), Some(7));
    // Fences and PREFETCH do not care.
    assert_eq!(
        vm.run(&[0x0F, 0xAE, 0xF8, 0x0F, 0x18, 0x05, 0, 0, 2, 0]),
        NO_FAULT
    );
    // CR0.EM: #UD for SSE and MMX, #NM for FXSAVE.
    vm.cpu.set_cr0(cr0 | 4);
    assert_eq!(vm.run(ADDPS_X0_X1), Some(6));
    assert_eq!(vm.run(PADDB_MM0_MM1), Some(6));
    assert_eq!(vm.run(&abs(GRP15, 0, D)), Some(7));
}

#[test]
fn undefined_prefix_combinations_are_ud() {
    let mut vm = Vm::new(CR4_OSFXSR);
    // F3 0F 60 (PUNPCKLBW has no F3 form), 0F 6C (PUNPCKLQDQ has no MMX form), F2 0F 5B,
    // 0F E6, F2 0F 54 (ANDPS has no SD form), 0F D6, SSE3 F2 0F F0 (LDDQU), 66 0F 77.
    for code in [
        &[0xF3, 0x0F, 0x60, 0xC1][..],
        &[0x0F, 0x6C, 0xC1],
        &[0xF2, 0x0F, 0x5B, 0xC1],
        &[0x0F, 0xE6, 0xC1],
        &[0xF2, 0x0F, 0x54, 0xC1],
        &[0x0F, 0xD6, 0xC1],
        &[0xF2, 0x0F, 0xF0, 0x05, 0, 0, 2, 0],
        &[0x66, 0x0F, 0x77],
        &[0x0F, 0x7A, 0xC1],
        // Register forms of memory-only instructions: MOVLPD, MOVNTPS, MOVNTQ, MOVNTI.
        &[0x66, 0x0F, 0x12, 0xC1],
        &[0x0F, 0x2B, 0xC1],
        &[0x0F, 0xE7, 0xC1],
        &[0x0F, 0xC3, 0xC1],
    ] {
        assert_eq!(vm.run(code), Some(6), "{code:02x?}");
    }
}

#[test]
fn alignment_of_128_bit_operands() {
    let mut vm = Vm::new(CR4_OSFXSR);
    vm.load128(D + 8, 0x0011_2233_4455_6677_8899_AABB_CCDD_EEFF);
    // MOVAPS from D+8: #GP(0) and the register is unchanged.
    assert_eq!(vm.run(&abs(MOVAPS_LOAD, 0, D + 8)), Some(13));
    assert_eq!(vm.bus.read_u32(vm.cpu.reg32(4)), 0, "error code");
    assert_eq!(vm.fault_eip(true), CODE);
    assert_eq!(vm.xmm(0), 0);
    // MOVUPS and MOVDQU are fine.
    assert_eq!(vm.run(&abs(MOVUPS_LOAD, 0, D + 8)), NO_FAULT);
    assert_eq!(vm.xmm(0), 0x0011_2233_4455_6677_8899_AABB_CCDD_EEFF);
    assert_eq!(vm.run(&abs(MOVDQU_LOAD, 1, D + 8)), NO_FAULT);
    assert_eq!(vm.xmm(1), vm.xmm(0));
    // Packed arithmetic and integer ops with a misaligned m128: #GP; scalar forms: fine.
    assert_eq!(vm.run(&abs(&[0x0F, 0x58], 0, D + 4)), Some(13)); // ADDPS
    assert_eq!(vm.run(&abs(&[0x66, 0x0F, 0xFC], 0, D + 4)), Some(13)); // PADDB xmm
    assert_eq!(vm.run(&abs(&[0xF3, 0x0F, 0x58], 0, D + 4)), NO_FAULT); // ADDSS
    assert_eq!(vm.run(&abs(&[0x0F, 0xFC], 0, D + 4)), NO_FAULT); // PADDB mm
    assert_eq!(vm.run(&abs(&[0x0F, 0x29], 0, D + 0x18)), Some(13)); // MOVAPS store
    assert_eq!(vm.run(&abs(&[0x0F, 0xAE], 0, D + 8)), Some(13)); // FXSAVE
}

#[test]
fn ldmxcsr_stmxcsr() {
    let mut vm = Vm::new(CR4_OSFXSR);
    vm.bus.write_u32(D, 0x0001_1F80);
    assert_eq!(vm.run(&abs(GRP15, 2, D)), Some(13));
    assert_eq!(vm.cpu.registers().mxcsr, 0x1F80);
    vm.bus.write_u32(D, 0xFFC0);
    assert_eq!(vm.run(&abs(GRP15, 2, D)), NO_FAULT);
    assert_eq!(vm.cpu.registers().mxcsr, 0xFFC0);
    assert_eq!(vm.run(&abs(GRP15, 3, D + 4)), NO_FAULT);
    assert_eq!(vm.bus.read_u32(D + 4), 0xFFC0);
}

/// divps xmm0, xmm1 with lanes (1, 1, 3, 2) / (0, 1, 1, 3).
fn divide_setup(vm: &mut Vm) -> Vec<u8> {
    let one = 1.0f32.to_bits() as u128;
    let a = one | one << 32 | (3.0f32.to_bits() as u128) << 64 | (2.0f32.to_bits() as u128) << 96;
    let b = one << 32 | one << 64 | (3.0f32.to_bits() as u128) << 96;
    vm.load128(D, a);
    vm.load128(D + 16, b);
    let mut code = abs(MOVDQU_LOAD, 0, D);
    code.extend(abs(MOVDQU_LOAD, 1, D + 16));
    code
}

#[test]
fn masked_flags_accumulate_over_lanes() {
    let mut vm = Vm::new(CR4_OSFXSR);
    let mut code = divide_setup(&mut vm);
    code.extend([0x0F, 0x5E, 0xC1]);
    assert_eq!(vm.run(&code), NO_FAULT);
    // Lane 0: 1/0 (ZE); lane 3: 2/3 (PE).
    assert_eq!(vm.cpu.registers().mxcsr, 0x1F80 | 0x04 | 0x20);
    let r = vm.xmm(0);
    assert_eq!(r as u32, f32::INFINITY.to_bits());
    assert_eq!((r >> 96) as u32, (2.0f32 / 3.0).to_bits());
}

#[test]
fn unmasked_exception_is_xm_or_ud_and_leaves_destination() {
    for (cr4, vector) in [(CR4_OSFXSR | CR4_OSXMMEXCPT, 19), (CR4_OSFXSR, 6)] {
        let mut vm = Vm::new(cr4);
        // Unmask divide-by-zero.
        vm.bus.write_u32(D2, 0x1F80 & !(1 << 9));
        let mut code = abs(GRP15, 2, D2);
        code.extend(divide_setup(&mut vm));
        let before = vm.read128(D);
        let at = CODE + code.len() as u32;
        code.extend([0x0F, 0x5E, 0xC1]);
        assert_eq!(vm.run(&code), Some(vector));
        assert_eq!(vm.fault_eip(false), at);
        assert_eq!(vm.xmm(0), before, "destination written");
        // An unmasked pre-computation exception (ZE in lane 0) stops the post-computation
        // checks: lane 3's PE is not recorded.
        assert_eq!(vm.cpu.registers().mxcsr & 0x3F, 0x04);
    }
}

#[test]
fn comisd_sets_zf_pf_cf_and_clears_of_sf_af() {
    let mut vm = Vm::new(CR4_OSFXSR);
    let cases = [
        (1.0f64, 2.0f64, 0x01), // less: CF
        (2.0, 1.0, 0x00),       // greater
        (2.0, 2.0, 0x40),       // equal: ZF
        (f64::NAN, 1.0, 0x45),  // unordered: ZF PF CF
    ];
    for (a, b, flags) in cases {
        vm.bus.load(D, &a.to_bits().to_le_bytes());
        vm.bus.load(D + 16, &b.to_bits().to_le_bytes());
        let mut code = abs(MOVDQU_LOAD, 0, D);
        code.extend(abs(MOVDQU_LOAD, 1, D + 16));
        // Set OF SF AF first: mov eax, 0x8D4; push eax; popfd.
        code.extend([0xB8, 0xD4, 0x08, 0, 0, 0x50, 0x9D]);
        code.extend([0x66, 0x0F, 0x2F, 0xC1]); // comisd xmm0, xmm1
        code.extend([0x9C, 0x58]); // pushfd; pop eax
        assert_eq!(vm.run(&code), NO_FAULT);
        assert_eq!(vm.cpu.reg32(EAX) & 0x8D5, flags, "{a} vs {b}");
    }
    // COMISD with a QNaN raises IE (masked here); UCOMISD does not.
    assert_eq!(vm.cpu.registers().mxcsr & 1, 1);
}

#[test]
fn page_fault_in_the_middle_of_a_16_byte_store_changes_nothing() {
    let mut vm = Vm::new(CR4_OSFXSR);
    vm.paging();
    let dst = HOLE - 8;
    vm.bus.load(dst, &[0x5A; 8]);
    vm.load128(D, u128::MAX);
    let mut code = abs(MOVDQU_LOAD, 0, D);
    let at = CODE + code.len() as u32;
    code.extend(abs(MOVDQU_STORE, 0, dst));
    assert_eq!(vm.run(&code), Some(14));
    assert_eq!(vm.cpu.registers().cr2, HOLE);
    assert_eq!(vm.fault_eip(true), at);
    assert_eq!(vm.read_bytes(dst, 8), vec![0x5A; 8]);
    // The same for MOVQ m64 across the boundary, MASKMOVDQU and FXSAVE.
    assert_eq!(vm.run(&abs(&[0x66, 0x0F, 0xD6], 0, HOLE - 4)), Some(14));
    assert_eq!(vm.read_bytes(dst, 8), vec![0x5A; 8]);
    let fx = HOLE - 0x100;
    vm.bus.load(fx, &[0x77; 0x100]);
    assert_eq!(vm.run(&abs(GRP15, 0, fx)), Some(14));
    assert_eq!(vm.read_bytes(fx, 0x100), vec![0x77; 0x100]);
    // MASKMOVDQU xmm0, xmm0 to [edi] = HOLE - 8 (every mask byte set).
    vm.bus.load(dst, &[0x5A; 8]);
    let mut code = vec![0xBF];
    code.extend(d32(dst));
    code.extend([0x66, 0x0F, 0xF7, 0xC0]);
    assert_eq!(vm.run(&code), Some(14));
    assert_eq!(vm.read_bytes(dst, 8), vec![0x5A; 8]);
}

#[test]
fn mmx_registers_alias_the_x87_significands() {
    let mut vm = Vm::new(0);
    vm.bus.load(D, &0x0123_4567_89AB_CDEFu64.to_le_bytes());
    vm.bus.load(D2, &[0xAA; 512]);
    // fninit; fld1; fld1 (TOP = 6); movq mm3, [D]; fnstsw ax
    let mut code = vec![0xDB, 0xE3, 0xD9, 0xE8, 0xD9, 0xE8];
    code.extend(abs(MOVQ_MM_LOAD, 3, D));
    code.extend([0xDF, 0xE0]);
    // fxsave [D2]
    code.extend(abs(GRP15, 0, D2));
    assert_eq!(vm.run(&code), NO_FAULT);
    let r = vm.cpu.registers();
    assert_eq!((r.fpu_sw >> 11) & 7, 0, "TOP after an MMX instruction");
    assert!(
        (0..8).all(|i| (r.fpu_tw >> (2 * i)) & 3 != 3),
        "tags {:#06x}",
        r.fpu_tw
    );
    let img = vm.read_bytes(D2, 512);
    assert_eq!(img[4], 0xFF, "abridged tag word");
    // ST3 = R3 (TOP = 0): the significand, exponent field all ones.
    assert_eq!(
        &img[32 + 48..32 + 48 + 8],
        &0x0123_4567_89AB_CDEFu64.to_le_bytes()
    );
    assert_eq!(&img[32 + 48 + 8..32 + 48 + 10], &[0xFF, 0xFF]);
    // Without OSFXSR neither MXCSR nor the XMM area is written.
    assert_eq!(&img[24..32], &[0xAA; 8]);
    assert_eq!(&img[160..288], &[0xAA; 128]);
    // FSTP m80 stores MM0 as it is: movq mm0, [D]; fstp tword [D3].
    let code = [abs(MOVQ_MM_LOAD, 0, D), abs(&[0xDB], 7, D3)].concat();
    assert_eq!(vm.run(&code), NO_FAULT);
    let st = vm.read_bytes(D3, 10);
    assert_eq!(&st[..8], &0x0123_4567_89AB_CDEFu64.to_le_bytes());
    assert_eq!(&st[8..], &[0xFF, 0xFF]);
    // EMMS: every tag empty.
    let code = [EMMS.to_vec(), abs(GRP15, 0, D2)].concat();
    assert_eq!(vm.run(&code), NO_FAULT);
    assert_eq!(vm.read_bytes(D2, 8)[4], 0);
    assert_eq!(vm.cpu.registers().fpu_tw, 0xFFFF);
}

#[test]
fn mmx_instruction_with_pending_x87_exception_is_mf() {
    let mut vm = Vm::new(0);
    let cr0 = vm.cpu.registers().cr0;
    vm.cpu.set_cr0(cr0 | 0x20);
    vm.bus.load(D, &0x037Eu16.to_le_bytes());
    // fninit; fldcw [D] (IE unmasked); fld1; fchs; fsqrt (pending IE)
    let mut code = vec![0xDB, 0xE3];
    code.extend(abs(&[0xD9], 5, D));
    code.extend([0xD9, 0xE8, 0xD9, 0xE0, 0xD9, 0xFA]);
    let at = CODE + code.len() as u32;
    code.extend(PADDB_MM0_MM1);
    assert_eq!(vm.run(&code), Some(16));
    assert_eq!(vm.fault_eip(false), at);
    // TOP is unchanged: the MMX instruction did not run.
    assert_eq!((vm.cpu.registers().fpu_sw >> 11) & 7, 7);
}

#[test]
fn fxsave_fxrstor_round_trip() {
    let mut vm = Vm::new(CR4_OSFXSR);
    for i in 0..8u32 {
        vm.load128(
            D + 16 * i,
            0x1111_1111_1111_1111_1111_1111_1111_1111u128 * (i as u128 + 1),
        );
    }
    vm.bus.write_u32(D3, 0x3F80 | 0x22);
    let mut code = Vec::new();
    for i in 0..8u8 {
        code.extend(abs(MOVDQU_LOAD, i, D + 16 * i as u32));
    }
    code.extend(abs(GRP15, 2, D3)); // ldmxcsr
    code.extend([0xDB, 0xE3, 0xD9, 0xE8, 0xD9, 0xEB, 0xD9, 0xEE]); // fninit; fld1; fldpi; fldz
    code.extend(abs(GRP15, 0, D2)); // fxsave [D2]
    assert_eq!(vm.run(&code), NO_FAULT);
    let img = vm.read_bytes(D2, 512);
    assert_eq!(u16::from_le_bytes([img[0], img[1]]), 0x037F);
    assert_eq!((u16::from_le_bytes([img[2], img[3]]) >> 11) & 7, 5);
    assert_eq!(img[4], 0xE0, "R5-R7 valid");
    assert_eq!(u32::from_le_bytes(img[24..28].try_into().unwrap()), 0x3FA2);
    assert_eq!(u32::from_le_bytes(img[28..32].try_into().unwrap()), 0xFFFF);
    assert_eq!(&img[32..42], &[0; 10], "ST0 = +0");
    assert_eq!(&img[64 + 8..64 + 10], &[0xFF, 0x3F], "ST2 = 1.0");
    for i in 0..8 {
        let x = u128::from_le_bytes(img[160 + 16 * i..176 + 16 * i].try_into().unwrap());
        assert_eq!(x, vm.xmm(i));
    }
    let saved = vm.cpu.state();

    // Clobber everything, then FXRSTOR and FXSAVE again.
    let mut code = vec![0xDB, 0xE3, 0xD9, 0xE8]; // fninit; fld1
    for i in 0..8u8 {
        code.extend([0x66, 0x0F, 0xEF, 0xC0 | (i << 3) | i]); // pxor xmmi, xmmi
    }
    code.extend(abs(GRP15, 1, D2)); // fxrstor [D2]
    code.extend(abs(GRP15, 0, D3 + 0x200)); // fxsave [D3 + 0x200]
    assert_eq!(vm.run(&code), NO_FAULT);
    assert_eq!(vm.read_bytes(D3 + 0x200, 288), img[..288].to_vec());
    let now = vm.cpu.state();
    assert_eq!(now.xmm, saved.xmm);
    assert_eq!(now.mxcsr, saved.mxcsr);
    assert_eq!(now.fpu.regs, saved.fpu.regs);
    assert_eq!(now.fpu.sw, saved.fpu.sw);
    assert_eq!(
        now.fpu.tw, saved.fpu.tw,
        "full tag word rebuilt from the abridged one"
    );
    assert_eq!(
        now.fpu.tw, 0x07FF,
        "R5 zero, R6 and R7 valid, the rest empty"
    );

    // FXRSTOR with reserved MXCSR bits: #GP, nothing restored.
    vm.bus.write_u32(D2 + 24, 0x1_0000);
    assert_eq!(vm.run(&abs(GRP15, 1, D2)), Some(13));
}

#[test]
fn state_round_trip_with_xmm() {
    let mut vm = Vm::new(CR4_OSFXSR | CR4_OSXMMEXCPT);
    vm.load128(D, 0xDEAD_BEEF_0123_4567_89AB_CDEF_F00D_CAFE);
    vm.bus.write_u32(D2, 0x9FC0);
    let mut code = abs(MOVDQU_LOAD, 5, D);
    code.extend(abs(GRP15, 2, D2));
    assert_eq!(vm.run(&code), NO_FAULT);
    let s = vm.cpu.state();
    assert_eq!(s.xmm[5], [0x89AB_CDEF_F00D_CAFE, 0xDEAD_BEEF_0123_4567]);
    assert_eq!(s.mxcsr, 0x9FC0);
    let bytes = postcard::to_allocvec(&s).unwrap();
    let back: CpuState = postcard::from_bytes(&bytes).unwrap();
    let mut other = Cpu::new();
    other.restore(&back).unwrap();
    assert_eq!(other.state(), s);
    assert_eq!(other.registers().xmm[5], s.xmm[5]);
    // Reserved MXCSR bits and version 1 are refused.
    let mut bad = s.clone();
    bad.mxcsr |= 1 << 16;
    assert!(other.restore(&bad).is_err());
    let mut old = s.clone();
    old.version = 1;
    assert!(other.restore(&old).is_err());
}

#[test]
fn integer_moves_and_extracts() {
    let mut vm = Vm::new(CR4_OSFXSR);
    vm.load128(D, 0x8000_7FFF_0102_F0F0_0000_FFFF_8080_0001);
    let mut code = abs(MOVDQU_LOAD, 1, D);
    code.extend([0xB8, 0x44, 0x33, 0x22, 0x11]); // mov eax, 0x11223344
    code.extend([0x66, 0x0F, 0x6E, 0xD0]); // movd xmm2, eax
    code.extend([0x66, 0x0F, 0xC5, 0xD9, 0x06]); // pextrw ebx, xmm1, 6
    code.extend([0x66, 0x0F, 0xD7, 0xC9]); // pmovmskb ecx, xmm1
    code.extend([0x66, 0x0F, 0xC4, 0xD0, 0x07]); // pinsrw xmm2, eax, 7
    code.extend([0x0F, 0x50, 0xD1]); // movmskps edx, xmm1
    code.extend([0xF3, 0x0F, 0x7E, 0xD9]); // movq xmm3, xmm1
    code.extend([0xF2, 0x0F, 0xD6, 0xE1]); // movdq2q mm4, xmm1
    code.extend([0xF3, 0x0F, 0xD6, 0xE4]); // movq2dq xmm4, mm4
    code.extend([0x0F, 0x7E, 0xE6]); // movd esi, mm4
    assert_eq!(vm.run(&code), NO_FAULT);
    assert_eq!(vm.xmm(2), 0x3344 << 112 | 0x1122_3344);
    assert_eq!(vm.cpu.reg32(3), 0x7FFF);
    assert_eq!(vm.cpu.reg32(1), 0x933C);
    assert_eq!(vm.cpu.reg32(2), 0b1001);
    assert_eq!(vm.xmm(3), 0x0000_FFFF_8080_0001);
    assert_eq!(vm.xmm(4), 0x0000_FFFF_8080_0001);
    assert_eq!(vm.cpu.reg32(6), 0x8080_0001);
}

#[test]
fn real_mode_16_bit_addressing() {
    let mut bus = TestBus::new(16 << 20).unwrap();
    let mut cpu = Cpu::new();
    cpu.set_segment_real(wasm86_cpu::sreg::CS, 0);
    cpu.set_segment_real(wasm86_cpu::sreg::DS, 0x100);
    cpu.set_eip(0x7C00);
    cpu.set_reg32(3, 0x40); // BX: data at 0x1040 (16-byte aligned)
    cpu.set_cr4(CR4_OSFXSR);
    bus.load(
        0x1040,
        &0x0F0E_0D0C_0B0A_0908_0706_0504_0302_0100u128.to_le_bytes(),
    );
    bus.load(0x1050, &u128::from_le_bytes([0x10; 16]).to_le_bytes());
    let code = [
        0xF3, 0x0F, 0x6F, 0x07, // movdqu xmm0, [bx]
        0x66, 0x0F, 0xFC, 0x47, 0x10, // paddb xmm0, [bx+16]
        0x0F, 0xFC, 0x47, 0x10, // paddb mm0, [bx+16]
        0xF3, 0x0F, 0x7F, 0x47, 0x20, // movdqu [bx+32], xmm0
        0x66, 0x0F, 0xFC, 0x47, 0x08, // paddb xmm0, [bx+8]: misaligned, #GP
        0xF4,
    ];
    bus.load(0x7C00, &code);
    // Real-mode IVT: #GP (13) to 0:0x600, a HLT.
    bus.write_u32(13 * 4, 0x0600);
    bus.load(0x600, &[0xF4]);
    let exit = cpu.run(&mut bus, 100);
    assert_eq!(exit, CpuExit::Halted);
    assert_eq!(cpu.eip(), 0x601, "misaligned packed operand: #GP");
    let mut out = [0u8; 16];
    bus.read(0x1060, &mut out);
    assert_eq!(
        u128::from_le_bytes(out),
        0x1F1E_1D1C_1B1A_1918_1716_1514_1312_1110
    );
    // mm0 = 0 + 0x10 per byte: R0's significand after an MMX instruction, TOP = 0.
    assert_eq!(&cpu.registers().fpu_st[0][..8], &[0x10; 8]);
}
