//! CPU tests with hand-encoded instructions on the flat test bus: real mode, mode switches,
//! far calls between 16- and 32-bit code, exceptions, interrupts, REP, CPUID/MSRs, state.

mod common;

use wasm86_cpu::testbus::TestBus;
use wasm86_cpu::{sreg, Cpu, CpuExit};

const EAX: usize = 0;
const ECX: usize = 1;
const EDX: usize = 2;
const EBX: usize = 3;
const ESP: usize = 4;
const ESI: usize = 6;
const EDI: usize = 7;

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

fn run(cpu: &mut Cpu, bus: &mut TestBus) -> CpuExit {
    let lim = cpu.icount() + 100_000;
    cpu.run(bus, lim)
}

/// GDT at 0x1000: null, code32, data32, code16, data16, code32 DPL3, data32 DPL3, TSS32.
const GDT: u32 = 0x1000;
const IDT: u32 = 0x2000;
const TSS: u32 = 0x3000;

fn gate(bus: &mut TestBus, v: u8, sel: u16, off: u32, typ: u8, dpl: u8) {
    let lo = ((sel as u32) << 16) | (off & 0xFFFF);
    let hi = (off & 0xFFFF_0000) | ((typ as u32 | 0x80 | (dpl as u32) << 5) << 8);
    bus.write_u32(IDT + 8 * v as u32, lo);
    bus.write_u32(IDT + 8 * v as u32 + 4, hi);
}

/// Flat 32-bit CPU with GDT/IDT installed, stack at 0x9000, every vector to `handler`.
fn pm_cpu(bus: &mut TestBus, eip: u32, handler: u32) -> Cpu {
    common::load_gdt(bus, GDT, TSS);
    for v in 0..=255u8 {
        gate(bus, v, 0x08, handler, 0xE, 0);
    }
    let mut c = Cpu::new();
    c.setup_flat32(eip);
    c.set_gdtr(GDT, 0x3F);
    c.set_idtr(IDT, 0x7FF);
    c.set_reg32(ESP, 0x9000);
    c
}

/// Handler: pop eax (error code); pop ebx (eip); hlt.
const ERR_HANDLER: &[u8] = &[0x58, 0x5B, 0xF4];
/// Handler: pop ebx (eip); hlt.
const NOERR_HANDLER: &[u8] = &[0x5B, 0xF4];

#[test]
fn real_mode_arith_and_loop() {
    let mut b = bus();
    b.load(
        0x7C00,
        &[
            0xB8, 0x34, 0x12, // mov ax, 0x1234
            0xBB, 0x01, 0x00, // mov bx, 1
            0x01, 0xD8, // add ax, bx
            0xB9, 0x05, 0x00, // mov cx, 5
            0x40, // inc ax
            0xE2, 0xFD, // loop -3
            0xF4, // hlt
        ],
    );
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX) & 0xFFFF, 0x123A);
    assert_eq!(c.reg32(ECX) & 0xFFFF, 0);
    assert_eq!(c.eip(), 0x7C0F);
    // 4 + 5 * 2 + hlt
    assert_eq!(c.icount(), 4 + 10 + 1);
}

#[test]
fn real_mode_flags_after_sub_and_jcc() {
    let mut b = bus();
    b.load(
        0x7C00,
        &[
            0xB0, 0x05, // mov al, 5
            0x2C, 0x06, // sub al, 6  -> 0xFF, CF=1 SF=1
            0x72, 0x02, // jc +2
            0xB3, 0x01, // mov bl, 1 (skipped)
            0x9C, // pushf
            0x5A, // pop dx
            0xF4,
        ],
    );
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX) & 0xFF, 0xFF);
    assert_eq!(c.reg32(EBX) & 0xFF, 0);
    let f = c.reg32(EDX) & 0xFFFF;
    assert_eq!(f & 0x8D5, 0x1 | 0x4 | 0x10 | 0x80, "flags {f:#x}"); // CF PF AF SF
}

#[test]
fn real_mode_divide_error_goes_through_ivt() {
    let mut b = bus();
    b.load(0, &0x0000_8000u32.to_le_bytes()); // IVT[0] = 0000:8000
    b.load(0x8000, &[0xF4]);
    b.load(0x7C00, &[0x31, 0xC9, 0xF7, 0xF1, 0xF4]); // xor cx,cx; div cx
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.eip(), 0x8001);
    let sp = c.reg32(ESP);
    assert_eq!(sp, 0x7000 - 6);
    assert_eq!(b.read_u16(sp), 0x7C02, "pushed IP of the faulting DIV");
    assert_eq!(b.read_u16(sp + 2), 0, "pushed CS");
}

#[test]
fn real_mode_int_and_iret() {
    let mut b = bus();
    b.load(0x40, &0x0000_8000u32.to_le_bytes()); // IVT[0x10]
    b.load(0x8000, &[0xBB, 0x99, 0x00, 0xCF]); // mov bx, 0x99; iret
    b.load(0x7C00, &[0xCD, 0x10, 0x41, 0xF4]); // int 0x10; inc cx; hlt
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EBX) & 0xFFFF, 0x99);
    assert_eq!(c.reg32(ECX) & 0xFFFF, 1);
    assert_eq!(c.reg32(ESP), 0x7000);
}

#[test]
fn code_in_high_mmio_region_runs() {
    let mut b = bus();
    // F000:0100 is in the array-backed region.
    b.load(0xF0100, &[0xB8, 0x78, 0x56, 0xA3, 0x00, 0x05, 0xF4]); // mov ax,0x5678; mov [0x500],ax
    let mut c = Cpu::new();
    c.set_segment_real(sreg::CS, 0xF000);
    c.set_segment_real(sreg::DS, 0xF000);
    c.set_eip(0x100);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.read_u16(0xF0500), 0x5678);
}

#[test]
fn reset_state() {
    let c = Cpu::new();
    let r = c.registers();
    assert_eq!(r.eip, 0xFFF0);
    assert_eq!(r.segs[sreg::CS].selector, 0xF000);
    assert_eq!(r.segs[sreg::CS].base, 0xFFFF_0000);
    assert_eq!(r.gpr[EDX] >> 4 & 0xFF, 0x67);
    assert_eq!(r.mode, "real");
    assert_eq!(r.eflags, 2);
}

/// Real mode -> 32-bit PM -> far call into 16-bit code -> far call back into 32-bit code.
#[test]
fn mode_switch_and_far_calls_16_32() {
    let mut b = bus();
    common::load_gdt(&mut b, GDT, TSS);
    // GDT pointer at 0x7D00.
    b.load(0x7D00, &[0x3F, 0x00, 0x00, 0x10, 0x00, 0x00]);
    b.load(
        0x7C00,
        &[
            0xFA, // cli
            0x0F, 0x01, 0x16, 0x00, 0x7D, // lgdt [0x7d00]
            0x0F, 0x20, 0xC0, // mov eax, cr0
            0x0C, 0x01, // or al, 1
            0x0F, 0x22, 0xC0, // mov cr0, eax
            0x66, 0xEA, 0x40, 0x7C, 0x00, 0x00, 0x08, 0x00, // jmp dword 0x08:0x7c40
        ],
    );
    b.load(
        0x7C40,
        &[
            0xB8, 0x10, 0x00, 0x00, 0x00, // mov eax, 0x10
            0x8E, 0xD8, // mov ds, ax
            0x8E, 0xD0, // mov ss, ax
            0xBC, 0x00, 0x90, 0x00, 0x00, // mov esp, 0x9000
            0xC7, 0x05, 0x00, 0x60, 0x00, 0x00, 0xEF, 0xBE, 0xAD, 0xDE, // mov [0x6000], imm
            0x9A, 0x80, 0x7C, 0x00, 0x00, 0x18, 0x00, // call far 0x18:0x7c80
            0xA3, 0x04, 0x60, 0x00, 0x00, // mov [0x6004], eax
            0x89, 0x1D, 0x08, 0x60, 0x00, 0x00, // mov [0x6008], ebx
            0xF4,
        ],
    );
    // 16-bit code: mov ax, 0x1122; call dword far 0x08:0x7cc0; retfd
    b.load(
        0x7C80,
        &[
            0xB8, 0x22, 0x11, 0x66, 0x9A, 0xC0, 0x7C, 0x00, 0x00, 0x08, 0x00, 0x66, 0xCB,
        ],
    );
    // 32-bit code: mov ebx, 0x3344; retf
    b.load(0x7CC0, &[0xBB, 0x44, 0x33, 0x00, 0x00, 0xCB]);
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.read_u32(0x6000), 0xDEAD_BEEF);
    assert_eq!(b.read_u32(0x6004), 0x1122);
    assert_eq!(b.read_u32(0x6008), 0x3344);
    assert_eq!(c.reg32(ESP), 0x9000);
    let r = c.registers();
    assert_eq!(r.mode, "protected");
    assert_eq!(r.segs[sreg::CS].selector, 0x08);
}

/// 32-bit PM -> 16-bit PM -> real mode with big (4 GiB) data limits kept ("unreal" mode).
#[test]
fn unreal_mode_keeps_limits() {
    let mut b = bus();
    let mut c = pm_cpu(&mut b, 0x7C00, 0x5000);
    let flat = 0x00CF_9200_0000_FFFFu64;
    b.load(GDT + 0x20, &flat.to_le_bytes()); // 16-bit code uses a big data segment
    b.load(0x200000, &[0x5A, 0xA5]);
    b.load(
        0x7C00,
        &[
            0xEA, 0x10, 0x7C, 0x00, 0x00, 0x18, 0x00, // jmp 0x18:0x7c10 (16-bit code)
        ],
    );
    b.load(
        0x7C10,
        &[
            0xB8, 0x20, 0x00, // mov ax, 0x20
            0x8E, 0xD8, // mov ds, ax (4 GiB limit)
            0x0F, 0x20, 0xC0, // mov eax, cr0
            0x24, 0xFE, // and al, 0xfe
            0x0F, 0x22, 0xC0, // mov cr0, eax
            0xEA, 0x30, 0x7C, 0x00, 0x00, // jmp 0000:7c30
        ],
    );
    b.load(
        0x7C30,
        &[
            0x31, 0xC0, // xor ax, ax
            0x8E, 0xD8, // mov ds, ax (real mode: limit stays)
            0x66, 0xBE, 0x00, 0x00, 0x20, 0x00, // mov esi, 0x200000
            0x67, 0x8B, 0x1E, // mov bx, [esi]
            0xF4,
        ],
    );
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.registers().mode, "real");
    assert_eq!(c.reg32(EBX) & 0xFFFF, 0xA55A);
}

#[test]
fn gp_on_bad_selector_has_error_code_and_eip() {
    let mut b = bus();
    b.load(0x5000, ERR_HANDLER);
    b.load(0x4000, &[0x66, 0xB8, 0x43, 0x00, 0x8E, 0xD8, 0xF4]); // mov ax,0x43; mov ds,ax
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 0x40);
    assert_eq!(c.reg32(EBX), 0x4004);
}

#[test]
fn ud_on_undefined_opcode() {
    let mut b = bus();
    b.load(0x5000, NOERR_HANDLER);
    b.load(0x5100, &[0xB9, 0xEE, 0, 0, 0, 0xF4]);
    b.load(0x4000, &[0x90, 0x0F, 0x0B]); // nop; ud2
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    gate(&mut b, 13, 0x08, 0x5100, 0xE, 0); // would catch a wrong #GP
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EBX), 0x4001);
    assert_eq!(c.reg32(ECX), 0);
}

#[test]
fn int_n_with_gate_dpl_check_from_ring3_and_stack_switch() {
    let mut b = bus();
    b.load(0x5000, ERR_HANDLER);
    // TSS: esp0 = 0x8800, ss0 = 0x10.
    b.write_u32(TSS + 4, 0x8800);
    b.write_u32(TSS + 8, 0x10);
    // Ring-3 code at 0x4100: int 0x80 (gate DPL 3), then int 0x81 (gate DPL 0 -> #GP).
    b.load(
        0x5200,
        &[0x8B, 0x4C, 0x24, 0x04, 0x8B, 0x54, 0x24, 0x0C, 0xCF],
    ); // mov ecx,[esp+4]; mov edx,[esp+12]; iretd
    b.load(0x4100, &[0xCD, 0x80, 0xCD, 0x81]);
    // Ring-0 start: ltr, then iret to ring 3.
    b.load(
        0x4000,
        &[
            0x66, 0xB8, 0x38, 0x00, // mov ax, 0x38
            0x0F, 0x00, 0xD8, // ltr ax
            0x6A, 0x33, // push 0x33 (ss)
            0x68, 0x00, 0x70, 0x00, 0x00, // push 0x7000 (esp)
            0x6A, 0x02, // push 2 (eflags)
            0x6A, 0x2B, // push 0x2b (cs)
            0x68, 0x00, 0x41, 0x00, 0x00, // push 0x4100
            0xCF, // iretd
        ],
    );
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    gate(&mut b, 0x80, 0x08, 0x5200, 0xE, 3);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    // First INT 0x80: handler saw CS=0x2b and ESP=0x7000 on its frame.
    assert_eq!(c.reg32(ECX), 0x2B);
    assert_eq!(c.reg32(EDX), 0x7000);
    // Then INT 0x81 -> #GP(0x81*8+2) with EIP at the INT.
    assert_eq!(c.reg32(EAX), 0x81 * 8 + 2);
    assert_eq!(c.reg32(EBX), 0x4102);
    assert_eq!(c.registers().cpl, 0);
    // The stack was switched to the TSS stack (5 dwords + error code popped 2).
    assert_eq!(c.reg32(ESP), 0x8800 - 6 * 4 + 2 * 4);
}

#[test]
fn triple_fault_when_idt_is_empty() {
    let mut b = bus();
    b.load(0x4000, &[0x0F, 0x0B]);
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    c.set_idtr(IDT, 0);
    assert_eq!(run(&mut c, &mut b), CpuExit::TripleFault);
}

#[test]
fn double_fault_on_gp_during_gp_delivery() {
    let mut b = bus();
    b.load(0x5000, ERR_HANDLER);
    b.load(0x4000, &[0x66, 0xB8, 0x43, 0x00, 0x8E, 0xD8]);
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    gate(&mut b, 13, 0x99, 0x5000, 0xE, 0); // bad selector: delivering #GP faults with #GP
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 0, "#DF error code is 0");
    assert_eq!(c.reg32(EBX), 0x4004);
}

#[test]
fn cpuid_leaves() {
    let mut b = bus();
    b.load(0x4000, &[0x31, 0xC0, 0x0F, 0xA2, 0xF4]);
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    run(&mut c, &mut b);
    let s = [c.reg32(EBX), c.reg32(EDX), c.reg32(ECX)];
    let bytes: Vec<u8> = s.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(&bytes, b"GenuineIntel");
    b.load(0x4000, &[0xB8, 1, 0, 0, 0, 0x0F, 0xA2, 0xF4]);
    c.set_eip(0x4000);
    run(&mut c, &mut b);
    assert_eq!(c.reg32(EAX), 0x673);
    assert_eq!(
        c.reg32(EDX),
        0x0780_A93F,
        "FPU VME DE PSE TSC MSR CX8 SEP PGE CMOV MMX FXSR SSE SSE2"
    );
    assert_ne!(c.reg32(ECX) & (1 << 31), 0, "hypervisor bit");
}

#[test]
fn msrs_and_precise_gp() {
    let mut b = bus();
    b.load(0x5000, ERR_HANDLER);
    b.load(
        0x4000,
        &[
            0xB9, 0x8B, 0, 0, 0, // mov ecx, 0x8b
            0xB8, 0x11, 0x22, 0x33, 0x44, // mov eax, 0x44332211
            0xBA, 0x55, 0, 0, 0, // mov edx, 0x55
            0x0F, 0x30, // wrmsr
            0x31, 0xC0, 0x31, 0xD2, // xor eax,eax; xor edx,edx
            0x0F, 0x32, // rdmsr
            0x89, 0xC6, // mov esi, eax
            0x89, 0xD7, // mov edi, edx
            0xB9, 0x1B, 0, 0, 0, // mov ecx, 0x1b (APIC base: not implemented)
            0x0F, 0x32, // rdmsr -> #GP(0) at 0x4021
        ],
    );
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(ESI), 0x4433_2211);
    assert_eq!(c.reg32(EDI), 0x55);
    assert_eq!(c.reg32(EAX), 0);
    assert_eq!(c.reg32(EBX), 0x4020);
}

#[test]
fn sysenter_sysexit_round_trip() {
    let mut b = bus();
    b.load(0x5000, NOERR_HANDLER);
    b.load(
        0x4000,
        &[
            0xB9, 0x74, 0x01, 0, 0, 0x31, 0xD2, // ecx=0x174, edx=0
            0xB8, 0x08, 0, 0, 0, 0x0F, 0x30, // SYSENTER_CS = 8
            0x41, 0xB8, 0x00, 0x88, 0, 0, 0x0F, 0x30, // SYSENTER_ESP = 0x8800
            0x41, 0xB8, 0x00, 0x43, 0, 0, 0x0F, 0x30, // SYSENTER_EIP = 0x4300
            0xBA, 0x00, 0x42, 0, 0, // edx = 0x4200 (user eip)
            0xB9, 0x00, 0x70, 0, 0, // ecx = 0x7000 (user esp)
            0x0F, 0x35, // sysexit
        ],
    );
    // User code: mov esi, cs; sysenter
    b.load(0x4200, &[0x8C, 0xCE, 0x0F, 0x34]);
    // Kernel entry: mov edi, ss; hlt
    b.load(0x4300, &[0x8C, 0xD7, 0xF4]);
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(ESI) & 0xFFFF, 0x1B);
    assert_eq!(c.reg32(EDI) & 0xFFFF, 0x10);
    assert_eq!(c.reg32(ESP), 0x8800);
    assert_eq!(c.registers().cpl, 0);
}

#[test]
fn rep_movsb_stops_exactly_at_limit_and_resumes() {
    let mut b = bus();
    let src: Vec<u8> = (0..100u8).collect();
    b.load(0x6000, &src);
    b.load(0x4000, &[0xF3, 0xA4, 0xF4]);
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    c.set_reg32(ESI, 0x6000);
    c.set_reg32(EDI, 0x7000);
    c.set_reg32(ECX, 100);
    assert_eq!(c.run(&mut b, 10), CpuExit::Limit);
    assert_eq!(c.icount(), 10);
    assert_eq!(c.reg32(ECX), 90);
    assert_eq!(c.eip(), 0x4000);
    assert_eq!(c.run(&mut b, 1000), CpuExit::Halted);
    assert_eq!(c.icount(), 101);
    assert_eq!(c.reg32(ECX), 0);
    let mut out = vec![0; 100];
    b.read(0x7000, &mut out);
    assert_eq!(out, src);
}

#[test]
fn run_never_retires_more_than_limit() {
    let mut b = bus();
    b.load(0x4000, &[0x40, 0xEB, 0xFD]); // inc eax; jmp -3
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    for lim in [1u64, 2, 7, 1000] {
        assert_eq!(c.run(&mut b, lim), CpuExit::Limit);
        assert_eq!(c.icount(), lim);
    }
    assert_eq!(c.reg32(EAX), 500);
}

#[test]
fn sti_shadow_delays_interrupt_by_one_instruction() {
    let mut b = bus();
    b.load(0x80, &0x0000_8000u32.to_le_bytes()); // IVT[0x20]
    b.load(0x8000, &[0xF4]);
    b.load(0x7C00, &[0xFB, 0x90, 0x90, 0xF4]); // sti; nop; nop; hlt
    b.pending_irqs.push_back(0x20);
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.eip(), 0x8001);
    assert_eq!(
        b.read_u16(c.reg32(ESP)),
        0x7C02,
        "interrupt after the NOP that follows STI"
    );
}

#[test]
fn hlt_wakes_on_interrupt() {
    let mut b = bus();
    b.load(0x80, &0x0000_8000u32.to_le_bytes());
    b.load(0x8000, &[0xBB, 0x07, 0x00, 0xCF]); // mov bx, 7; iret
    b.load(0x7C00, &[0xFB, 0xF4, 0x41, 0xF4]); // sti; hlt; inc cx; hlt
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert!(c.is_halted());
    assert_eq!(
        run(&mut c, &mut b),
        CpuExit::Halted,
        "nothing pending: stays halted"
    );
    b.pending_irqs.push_back(0x20);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EBX) & 0xFFFF, 7);
    assert_eq!(c.reg32(ECX) & 0xFFFF, 1);
}

#[test]
fn nmi_is_delivered() {
    let mut b = bus();
    b.load(0x08, &0x0000_8000u32.to_le_bytes()); // IVT[2]
    b.load(0x8000, &[0xBA, 0x02, 0x00, 0xF4]);
    b.load(0x7C00, &[0xF4]);
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    c.raise_nmi();
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EDX) & 0xFFFF, 2);
}

#[test]
fn io_instructions_and_exit_request() {
    let mut b = bus();
    b.io_values.insert(0x71, 0x42);
    b.load(0x7C00, &[0xB0, 0x0F, 0xE6, 0x70, 0xE4, 0x71, 0x90, 0xF4]);
    let mut c = real_cpu(0x7C00);
    b.exit = true;
    assert_eq!(run(&mut c, &mut b), CpuExit::ExitRequested);
    assert_eq!(b.io_log.len(), 1);
    assert!(b.io_log[0].write && b.io_log[0].port == 0x70 && b.io_log[0].value == 0x0F);
    assert_eq!(b.io_log[0].icount, 1);
    b.exit = false;
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX) & 0xFF, 0x42);
}

#[test]
fn verw_verr_lar_lsl() {
    let mut b = bus();
    b.load(
        0x4000,
        &[
            0x66, 0xB8, 0x10, 0x00, // mov ax, 0x10
            0x0F, 0x00, 0xE8, // verw ax
            0x0F, 0x94, 0xC3, // setz bl
            0x66, 0xB8, 0x08, 0x00, // mov ax, 8
            0x0F, 0x00, 0xE8, // verw ax (code: not writable)
            0x0F, 0x94, 0xC7, // setz bh
            0x0F, 0x00, 0xE0, // verr ax (readable code)
            0x0F, 0x94, 0xC1, // setz cl
            0x0F, 0x02, 0xD0, // lar edx, eax
            0x0F, 0x03, 0xF0, // lsl esi, eax
            0xF4,
        ],
    );
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EBX) & 0xFFFF, 0x0001);
    assert_eq!(c.reg32(ECX) & 0xFF, 1);
    assert_eq!(c.reg32(EDX), 0x00C0_9A00);
    assert_eq!(c.reg32(ESI), 0xFFFF_FFFF);
}

#[test]
fn cmpxchg8b_xadd_bswap_bsf() {
    let mut b = bus();
    b.write_u32(0x6000, 1);
    b.write_u32(0x6004, 2);
    b.load(
        0x4000,
        &[
            0xB8, 1, 0, 0, 0, 0xBA, 2, 0, 0, 0, // eax=1 edx=2
            0xBB, 0xAA, 0, 0, 0, 0xB9, 0xBB, 0, 0, 0, // ebx=0xaa ecx=0xbb
            0x0F, 0xC7, 0x0D, 0x00, 0x60, 0, 0, // cmpxchg8b [0x6000]
            0x0F, 0x94, 0xC0, // setz al
            0xBE, 0x05, 0, 0, 0, // esi = 5
            0x0F, 0xC1, 0x35, 0x00, 0x60, 0, 0, // xadd [0x6000], esi
            0xBF, 0x78, 0x56, 0x34, 0x12, 0x0F, 0xCF, // mov edi, 0x12345678; bswap edi
            0xBD, 0x00, 0x01, 0, 0, 0x0F, 0xBC, 0xED, // mov ebp, 0x100; bsf ebp, ebp
            0xF4,
        ],
    );
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX) & 0xFF, 1);
    assert_eq!(b.read_u32(0x6000), 0xAA + 5);
    assert_eq!(b.read_u32(0x6004), 0xBB);
    assert_eq!(c.reg32(ESI), 0xAA);
    assert_eq!(c.reg32(EDI), 0x7856_3412);
    assert_eq!(c.reg32(5), 8);
}

#[test]
fn state_round_trip_and_validation() {
    let mut b = bus();
    b.load(0x4000, &[0x40, 0x43, 0xF4]);
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    run(&mut c, &mut b);
    let s = c.state();
    let bytes = postcard::to_allocvec(&s).unwrap();
    let s2: wasm86_cpu::CpuState = postcard::from_bytes(&bytes).unwrap();
    let mut c2 = Cpu::new();
    c2.restore(&s2).unwrap();
    assert_eq!(c2.state(), s);
    assert_eq!(c2.registers(), c.registers());
    let mut bad = s.clone();
    bad.cpl = 7;
    assert!(c2.restore(&bad).is_err());
    let mut bad = s.clone();
    bad.version = 99;
    assert!(c2.restore(&bad).is_err());
    let mut bad = s;
    bad.cr[0] = 0x8000_0000;
    assert!(c2.restore(&bad).is_err());
}

#[test]
fn string_ops_16bit_with_direction_flag() {
    let mut b = bus();
    b.load(0x600, b"abcd");
    b.load(
        0x7C00,
        &[
            0xBE, 0x03, 0x06, // mov si, 0x603
            0xBF, 0x03, 0x07, // mov di, 0x703
            0xB9, 0x04, 0x00, // mov cx, 4
            0xFD, // std
            0xF3, 0xA4, // rep movsb
            0xFC, // cld
            0xBF, 0x00, 0x07, // mov di, 0x700
            0xB0, 0x63, // mov al, 'c'
            0xB9, 0x04, 0x00, // mov cx, 4
            0xF2, 0xAE, // repne scasb
            0xF4,
        ],
    );
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    let mut out = [0; 4];
    b.read(0x700, &mut out);
    assert_eq!(&out, b"abcd");
    assert_eq!(c.reg32(EDI) & 0xFFFF, 0x703);
    assert_eq!(c.reg32(ECX) & 0xFFFF, 1);
}

#[test]
fn real_mode_cs_override_write_and_ip_wrap() {
    let mut b = bus();
    // At 1000:FFFC: mov [cs:0x10], al (2E A2 10 00) ends exactly at 64 KiB; IP wraps to 0.
    b.load(0x1FFFC, &[0x2E, 0xA2, 0x10, 0x00]);
    b.load(0x10000, &[0xF4]);
    let mut c = Cpu::new();
    c.set_segment_real(sreg::CS, 0x1000);
    c.set_eip(0xFFFC);
    c.set_reg32(EAX, 0x5A);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.eip(), 1);
    let mut x = [0u8];
    b.read(0x10010, &mut x);
    assert_eq!(
        x[0], 0x5A,
        "real mode ignores the code segment's write protection"
    );
}

#[test]
fn shr_and_rcr_overflow_flag_for_multi_bit_counts() {
    let mut b = bus();
    // mov al, 0xC0; shr al, 2 -> 0x30: OF = bit7 ^ bit6 of the result = 0
    // mov bl, 0x80; shr bl, 1 -> OF = 1 (original MSB)
    b.load(
        0x7C00,
        &[
            0xB0, 0xC0, 0xC0, 0xE8, 0x02, 0x9C, 0x5A, 0xB3, 0x80, 0xD0, 0xEB, 0x9C, 0x59, 0xF4,
        ],
    );
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX) & 0xFF, 0x30);
    assert_eq!(c.reg32(EDX) & 0x800, 0);
    assert_eq!(c.reg32(ECX) & 0x801, 0x800);
}

#[test]
fn aas_borrows_into_ah_and_bad_group_encodings_are_ud() {
    let mut b = bus();
    b.load(0x18, &0x0000_8000u32.to_le_bytes()); // IVT[6] -> 0000:8000
    b.load(0x8000, &[0xF4]);
    // mov ax, 0x1d04; stc; sahf-free: set AF via sub: mov bl,0x0f; sub bl,0x01? use
    // mov ah,0x10 / sahf to set AF, then restore AH.
    b.load(
        0x7C00,
        &[
            0xB4, 0x10, 0x9E, // mov ah, 0x10; sahf (AF=1)
            0xB8, 0x04, 0x1D, // mov ax, 0x1d04
            0x3F, // aas
            0x8F, 0xC8, // pop with reg=1: #UD
        ],
    );
    let mut c = real_cpu(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX) & 0xFFFF, 0x1B0E);
    assert_eq!(b.read_u16(c.reg32(ESP)), 0x7C07, "#UD at the 8F /1");
}

/// Runs `code` at 0x4000 in flat PM with vector `v` routed to the (pop eax; pop ebx; hlt)
/// handler at 0x5000, or to (pop ebx; hlt) at 0x5100 when `has_code` is false.
fn fault_case(
    code: &[u8],
    v: u8,
    has_code: bool,
    setup: impl FnOnce(&mut Cpu, &mut TestBus),
) -> Cpu {
    let mut b = bus();
    b.load(0x5000, ERR_HANDLER);
    b.load(0x5100, NOERR_HANDLER);
    b.load(0x5200, &[0xB9, 0xEE, 0xEE, 0, 0, 0xF4]); // wrong vector: ecx=0xeeee
    b.load(0x4000, code);
    let mut c = pm_cpu(&mut b, 0x4000, 0x5200);
    gate(
        &mut b,
        v,
        0x08,
        if has_code { 0x5000 } else { 0x5100 },
        0xE,
        0,
    );
    setup(&mut c, &mut b);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_ne!(c.reg32(ECX), 0xEEEE, "delivered through the wrong vector");
    c
}

#[test]
fn not_present_segment_raises_np_with_selector() {
    let c = fault_case(&[0x66, 0xB8, 0x20, 0x00, 0x8E, 0xD8], 11, true, |_, b| {
        b.load(GDT + 0x20, &0x0000_1200_0000_FFFFu64.to_le_bytes()); // P=0 data
    });
    assert_eq!(c.reg32(EAX), 0x20);
    assert_eq!(c.reg32(EBX), 0x4004);
}

#[test]
fn not_present_stack_segment_raises_ss() {
    // SS = 16-bit data segment with limit 0xFFFF; ESP = 0x20000 is beyond it.
    // Loading SS with a not-present segment raises #SS(selector).
    let c = fault_case(&[0x66, 0xB8, 0x20, 0x00, 0x8E, 0xD0], 12, true, |_, b| {
        b.load(GDT + 0x20, &0x00CF_1200_0000_FFFFu64.to_le_bytes());
    });
    assert_eq!(c.reg32(EAX), 0x20);
    assert_eq!(c.reg32(EBX), 0x4004);
}

#[test]
fn fpu_with_ts_raises_nm_and_fnstsw_works_after_clts() {
    let c = fault_case(&[0xDB, 0xE3], 7, false, |c, _| {
        let cr0 = c.registers().cr0;
        c.set_cr0(cr0 | 8);
    });
    assert_eq!(c.reg32(EBX), 0x4000);
    let mut b = bus();
    b.load(0x4000, &[0x0F, 0x06, 0xDB, 0xE3, 0xDF, 0xE0, 0xF4]); // clts; fninit; fnstsw ax
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    c.set_reg32(EAX, 0xFFFF_FFFF);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 0xFFFF_0000);
}

#[test]
fn bound_raises_br() {
    let c = fault_case(
        &[0xB8, 0x10, 0, 0, 0, 0x62, 0x05, 0x00, 0x60, 0, 0],
        5,
        false,
        |_, b| {
            b.write_u32(0x6000, 0);
            b.write_u32(0x6004, 0xF);
        },
    );
    assert_eq!(c.reg32(EBX), 0x4005);
}

#[test]
fn int3_and_into_are_traps() {
    let c = fault_case(&[0x90, 0xCC], 3, false, |_, _| {});
    assert_eq!(c.reg32(EBX), 0x4002, "INT3 pushes the next EIP");
    let c = fault_case(&[0xB0, 0x7F, 0x04, 0x01, 0xCE], 4, false, |_, _| {});
    assert_eq!(c.reg32(EBX), 0x4005, "INTO after an overflow");
}

#[test]
fn trap_flag_single_steps() {
    // pushf; or dword [esp], 0x100; popf; nop (TF now set: #DB after it); ...
    let c = fault_case(
        &[
            0x9C, 0x81, 0x0C, 0x24, 0x00, 0x01, 0x00, 0x00, 0x9D, 0x90, 0x90,
        ],
        1,
        false,
        |_, _| {},
    );
    assert_eq!(
        c.reg32(EBX),
        0x400A,
        "#DB after the first instruction run with TF=1"
    );
    assert_ne!(c.registers().dr[6] & (1 << 14), 0, "DR6.BS");
}

#[test]
fn task_switch_by_call_and_back_by_iret() {
    let mut b = bus();
    // Second TSS at 0x3100 (GDT slot 0x40); the GDT limit grows to 0x4F.
    b.load(
        0x4000,
        &[0x9A, 0, 0, 0, 0, 0x40, 0x00, 0xBE, 0x11, 0, 0, 0, 0xF4],
    ); // call 0x40:0; mov esi,0x11; hlt
    b.load(0x4400, &[0xC7, 0x05, 0x00, 0x60, 0, 0, 0x22, 0, 0, 0, 0xCF]); // new task: mov [0x6000], 0x22; iret
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    b.load(
        GDT + 0x40,
        &(0x0000_8900_0000_0067u64 | (0x3100u64 << 16)).to_le_bytes(),
    );
    c.set_gdtr(GDT, 0x4F);
    // The new task's state.
    b.write_u32(0x3100 + 0x20, 0x4400); // eip
    b.write_u32(0x3100 + 0x24, 2); // eflags
    b.write_u32(0x3100 + 0x38, 0x8800); // esp
    for (i, sel) in [0x10u32, 0x08, 0x10, 0x10, 0x10, 0x10].iter().enumerate() {
        b.write_u32(0x3100 + 0x48 + 4 * i as u32, *sel);
    }
    // Current task: load TR with the TSS at slot 0x38.
    b.load(
        0x3F00,
        &[
            0x66, 0xB8, 0x38, 0x00, 0x0F, 0x00, 0xD8, 0xE9, 0xF4, 0x00, 0x00, 0x00,
        ],
    ); // ltr; jmp 0x4000
    c.set_eip(0x3F00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.read_u32(0x6000), 0x22, "ran in the new task");
    assert_eq!(b.read_u32(0x3000 + 0x20), 0x4007, "old task EIP saved");
    assert_eq!(c.reg32(ESI), 0x11, "returned to the old task");
    assert_eq!(c.reg32(ESP), 0x9000);
    assert_eq!(c.registers().tr.selector, 0x38);
    assert_eq!(b.read_u16(0x3100), 0x38, "back link");
    assert_eq!(
        c.registers().eflags & (1 << 14),
        0,
        "NT clear after the return"
    );
}

#[test]
fn v86_mode_round_trip_through_a_gp_handler() {
    let mut b = bus();
    b.write_u32(TSS + 4, 0x8800);
    b.write_u32(TSS + 8, 0x10);
    // V86 code at 0x1000:0x0000 (linear 0x10000): mov ax, 0x1234; int 0x21 (IOPL 0 -> #GP)
    b.load(0x10000, &[0xB8, 0x34, 0x12, 0xCD, 0x21]);
    // Start: ltr; push gs fs ds es ss esp eflags(VM) cs eip; iretd
    b.load(
        0x4000,
        &[
            0x66, 0xB8, 0x38, 0x00, 0x0F, 0x00, 0xD8, // ltr 0x38
            0x6A, 0x00, 0x6A, 0x00, 0x6A, 0x00, 0x6A, 0x00, // gs fs ds es
            0x68, 0x00, 0x20, 0x00, 0x00, // ss = 0x2000
            0x68, 0x00, 0x01, 0x00, 0x00, // esp = 0x100
            0x68, 0x02, 0x00, 0x02, 0x00, // eflags = VM
            0x68, 0x00, 0x10, 0x00, 0x00, // cs = 0x1000
            0x6A, 0x00, // eip = 0
            0xCF,
        ],
    );
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    b.load(0x5000, ERR_HANDLER);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 0, "#GP(0) from INT n in V86 with IOPL < 3");
    assert_eq!(c.reg32(EBX), 0x0003, "V86 IP of the INT");
    // Frame on the ring-0 stack after the two pops: cs, eflags, esp, ss, es, ds, fs, gs.
    let sp = c.reg32(ESP);
    assert_eq!(b.read_u32(sp), 0x1000);
    assert_ne!(b.read_u32(sp + 4) & (1 << 17), 0, "VM in the pushed EFLAGS");
    assert_eq!(b.read_u32(sp + 12), 0x2000);
    assert_eq!(sp + 8 * 4, 0x8800);
    assert_eq!(c.registers().mode, "protected");
    assert_eq!(
        c.registers().segs[sreg::DS].selector,
        0,
        "data segments nulled"
    );
}

#[test]
fn lock_prefix_rules() {
    // lock add [0x6000], eax is fine; lock mov eax, ebx is #UD.
    let mut b = bus();
    b.load(0x5100, NOERR_HANDLER);
    b.load(
        0x4000,
        &[
            0xB8, 3, 0, 0, 0, 0xF0, 0x01, 0x05, 0x00, 0x60, 0, 0, 0xF0, 0x89, 0xD8,
        ],
    );
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    gate(&mut b, 6, 0x08, 0x5100, 0xE, 0);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.read_u32(0x6000), 3);
    assert_eq!(c.reg32(EBX), 0x400C);
}

#[test]
fn sysenter_with_top_selector_does_not_panic() {
    let mut b = bus();
    b.load(0x4000, &[0x0F, 0x34]);
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    let mut s = c.state();
    s.sysenter[0] = 0xFFFC;
    c.restore(&s).unwrap();
    c.run(&mut b, 10);
}

#[test]
fn data_breakpoint_traps_after_the_write() {
    // dr0 = 0x6002, dr7 = L0 | RW0=write | LEN0=4 bytes; then mov [0x6000], ecx (overlaps).
    let c = fault_case(
        &[
            0xB8, 0x02, 0x60, 0, 0, 0x0F, 0x23, 0xC0, // mov dr0, eax
            0xBB, 0x01, 0x00, 0x0D, 0x00, 0x0F, 0x23, 0xFB, // mov dr7, ebx
            0xA1, 0x00, 0x60, 0, 0, // mov eax, [0x6000] (read: no hit)
            0x89, 0x0D, 0x00, 0x60, 0, 0, // mov [0x6000], ecx
            0x90,
        ],
        1,
        false,
        |c, _| c.set_reg32(ECX, 0x77),
    );
    assert_eq!(
        c.reg32(EBX),
        0x401B,
        "trap: EIP after the writing instruction"
    );
    assert_eq!(c.registers().dr[6] & 0xF, 1);
}

#[test]
fn instruction_breakpoint_faults_before_the_instruction() {
    // dr1 = 0x4014, dr7 = L1 (execute); the nop at 0x4014 must not run.
    let c = fault_case(
        &[
            0xB8, 0x14, 0x40, 0, 0, 0x0F, 0x23, 0xC8, // mov dr1, eax
            0xBB, 0x04, 0x00, 0x00, 0x00, 0x0F, 0x23, 0xFB, // mov dr7, ebx
            0x90, 0x90, 0x90, 0x90, 0x41, // nops; inc ecx at 0x4014
        ],
        1,
        false,
        |_, _| {},
    );
    assert_eq!(c.reg32(EBX), 0x4014);
    assert_eq!(c.reg32(ECX), 0);
    assert_eq!(c.registers().dr[6] & 0xF, 2);
}

#[test]
fn cr4_bits_without_a_feature_raise_gp() {
    // mov eax, 0x20 (PAE); mov cr4, eax -> #GP(0)
    let c = fault_case(
        &[0xB8, 0x20, 0, 0, 0, 0x0F, 0x22, 0xE0],
        13,
        true,
        |_, _| {},
    );
    assert_eq!(c.reg32(EAX), 0);
    assert_eq!(c.reg32(EBX), 0x4005);
    assert_eq!(c.registers().cr4, 0);
}

#[test]
fn fault_loop_cannot_stall_run() {
    // Flat PM, then pop ds (null), mov cr0, esp (PE=0, PG=0), mov edx, [eax]: #GP in real
    // mode through an IVT that points at garbage that faults again, forever.
    let mut b = bus();
    b.load(0x4000, &[0x1F, 0x0F, 0x22, 0xC4, 0x8B, 0x10, 0xF4]);
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    c.set_reg32(ESP, 0x7000);
    b.write_u32(0x7000, 0);
    let exit = c.run(&mut b, 10_000);
    assert!(
        matches!(
            exit,
            CpuExit::Limit | CpuExit::Halted | CpuExit::TripleFault
        ),
        "{exit:?}"
    );
    assert!(c.icount() <= 10_000);
    // The same with a handler that faults on its first byte: every delivery counts.
    let mut b = bus();
    b.load(0x4000, &[0x0F, 0x0B]); // ud2
    let mut c = pm_cpu(&mut b, 0x4000, 0x4000); // every vector -> the ud2 again
    assert_eq!(c.run(&mut b, 500), CpuExit::Limit);
    assert_eq!(c.icount(), 500);
}

#[test]
fn bit_ops_with_register_offsets_address_memory_beyond_the_operand() {
    let mut b = bus();
    b.write_u32(0x6010, 0);
    b.load(
        0x4000,
        &[
            0xB8, 0x85, 0, 0, 0, // mov eax, 133 (dword 4, bit 5)
            0xF0, 0x0F, 0xAB, 0x05, 0x00, 0x60, 0, 0, // lock bts [0x6000], eax
            0x0F, 0x92, 0xC1, // setc cl (old bit: 0)
            0x0F, 0xA3, 0x05, 0x00, 0x60, 0, 0, // bt [0x6000], eax
            0x0F, 0x92, 0xC5, // setc ch (now 1)
            0xB8, 0xFF, 0xFF, 0xFF, 0xFF, // mov eax, -1 (dword -1, bit 31)
            0x0F, 0xAB, 0x05, 0x10, 0x60, 0,
            0, // bts [0x6010], eax -> sets bit 31 of [0x600c]
            0xF4,
        ],
    );
    let mut c = pm_cpu(&mut b, 0x4000, 0x5000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.read_u32(0x6010), 1 << 5);
    assert_eq!(c.reg32(ECX) & 0xFFFF, 0x0100);
    assert_eq!(b.read_u32(0x600C), 1 << 31);
}
