//! The decoded-block cache: self-modifying code inside a block and across runs, code
//! rewritten behind the CPU's back (DMA-style writes), exact instruction counting inside a
//! block, and precise EIPs for faults in the middle of a block.

use wasm86_cpu::testbus::TestBus;
use wasm86_cpu::{sreg, Cpu, CpuExit};

const EAX: usize = 0;
const ECX: usize = 1;
const EDX: usize = 2;
const EBX: usize = 3;
const ESP: usize = 4;

fn flat(b: &mut TestBus, code: &[u8]) -> Cpu {
    b.load(0x4000, code);
    let mut c = Cpu::new();
    c.setup_flat32(0x4000);
    c.set_reg32(ESP, 0x9000);
    c
}

#[test]
fn a_store_into_the_running_block_is_seen_by_the_next_instruction() {
    let mut b = TestBus::new(16 << 20).unwrap();
    let mut c = flat(
        &mut b,
        &[
            0xB9, 0x03, 0x00, 0x00, 0x00, // mov ecx, 3
            0x31, 0xD2, // xor edx, edx
            0x88, 0x0D, 0x0F, 0x40, 0x00, 0x00, // loop: mov [0x400F], cl
            0x90, // nop
            0xB8, 0x99, 0x00, 0x00, 0x00, // mov eax, imm (imm patched above)
            0x01, 0xC2, // add edx, eax
            0x49, // dec ecx
            0x75, 0xEF, // jnz loop
            0xF4,
        ],
    );
    assert_eq!(c.run(&mut b, 1000), CpuExit::Halted);
    assert_eq!(c.reg32(EDX), 3 + 2 + 1);
}

#[test]
fn code_rewritten_between_runs_is_decoded_again() {
    let mut b = TestBus::new(16 << 20).unwrap();
    // A loop that adds 1 to eax 100 times.
    let prog = |imm: u8| {
        vec![
            0xB9, 100, 0, 0, 0, // mov ecx, 100
            0x31, 0xC0, // xor eax, eax
            0x83, 0xC0, imm,  // add eax, imm
            0x49, // dec ecx
            0x75, 0xFA, // jnz -6
            0xF4,
        ]
    };
    let mut c = flat(&mut b, &prog(1));
    assert_eq!(c.run(&mut b, 10_000), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 100);
    // A device writes new code (the write path records the invalidation).
    b.load(0x4000, &prog(3));
    c.set_eip(0x4000);
    assert_eq!(c.run(&mut b, 20_000), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 300);
}

#[test]
fn the_limit_stops_inside_a_block_exactly() {
    let mut b = TestBus::new(16 << 20).unwrap();
    let mut code = vec![0x40u8; 10]; // inc eax x 10
    code.push(0xF4);
    let mut c = flat(&mut b, &code);
    assert_eq!(c.run(&mut b, 3), CpuExit::Limit);
    assert_eq!((c.icount(), c.reg32(EAX), c.eip()), (3, 3, 0x4003));
    assert_eq!(c.run(&mut b, 7), CpuExit::Limit);
    assert_eq!((c.icount(), c.reg32(EAX), c.eip()), (7, 7, 0x4007));
    assert_eq!(c.run(&mut b, 100), CpuExit::Halted);
    assert_eq!((c.icount(), c.reg32(EAX)), (11, 10));
}

#[test]
fn a_loop_limit_counts_every_iteration() {
    let mut b = TestBus::new(16 << 20).unwrap();
    let mut c = flat(
        &mut b,
        &[
            0xB9, 0xE8, 0x03, 0, 0,    // mov ecx, 1000
            0x40, // inc eax
            0x49, // dec ecx
            0x75, 0xFC, // jnz -4
            0xF4,
        ],
    );
    // 1 + 3 * 333 + 1: the limit falls after the inc of iteration 334.
    assert_eq!(c.run(&mut b, 1001), CpuExit::Limit);
    assert_eq!(c.icount(), 1001);
    assert_eq!(c.reg32(EAX), 334);
    assert_eq!(c.reg32(ECX), 1000 - 333);
    assert_eq!(c.run(&mut b, u64::MAX), CpuExit::Halted);
    assert_eq!(c.icount(), 1 + 3 * 1000 + 1);
}

#[test]
fn a_fault_in_the_middle_of_a_real_mode_block_reports_its_own_ip() {
    let mut b = TestBus::new(16 << 20).unwrap();
    // IVT vector 13 -> 0000:8000: pop bx; hlt.
    b.load(13 * 4, &[0x00, 0x80, 0x00, 0x00]);
    b.load(0x8000, &[0x5B, 0xF4]);
    b.load(
        0x7C00,
        &[
            0x40, // inc ax
            0x40, // inc ax
            0xA1, 0xFF, 0xFF, // mov ax, [0xFFFF]: the word crosses the DS limit -> #GP
            0x40, 0xF4,
        ],
    );
    let mut c = Cpu::new();
    c.set_segment_real(sreg::CS, 0);
    c.set_eip(0x7C00);
    c.set_reg32(ESP, 0x7000);
    assert_eq!(c.run(&mut b, 1000), CpuExit::Halted);
    assert_eq!(c.reg32(EAX) & 0xFFFF, 2);
    assert_eq!(c.reg32(EBX) & 0xFFFF, 0x7C02);
}

#[test]
fn a_divide_error_after_fast_instructions_reports_the_div() {
    let mut b = TestBus::new(16 << 20).unwrap();
    // A GDT at 0x1000 and an IDT at 0x2000 with vector 0 -> 0x08:0x6000 (pop ebx; hlt).
    let gdt: [u64; 3] = [0, 0x00CF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF];
    for (i, d) in gdt.iter().enumerate() {
        b.load(0x1000 + 8 * i as u32, &d.to_le_bytes());
    }
    b.write_u32(0x2000, (0x08 << 16) | 0x6000);
    b.write_u32(0x2004, 0x8E00);
    b.load(0x6000, &[0x5B, 0xF4]);
    let mut c = flat(
        &mut b,
        &[
            0x40, // inc eax
            0x40, // inc eax
            0x31, 0xC9, // xor ecx, ecx
            0xF7, 0xF1, // div ecx
            0xF4,
        ],
    );
    c.set_gdtr(0x1000, 0x17);
    c.set_idtr(0x2000, 0x7FF);
    assert_eq!(c.run(&mut b, 1000), CpuExit::Halted);
    assert_eq!(c.reg32(EBX), 0x4004);
    assert_eq!(c.reg32(EAX), 2);
    assert_eq!(c.reg32(ECX), 0);
}
