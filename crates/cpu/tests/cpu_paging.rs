//! Paging tests: 4 KiB and 4 MiB pages, accessed/dirty bits, #PF error codes and CR2, WP,
//! U/S, INVLPG inside a 4 MiB page, PGE, and self-modifying code across a page boundary
//! (also through an alias mapping).

mod common;

use wasm86_cpu::testbus::TestBus;
use wasm86_cpu::{Cpu, CpuExit};

const EAX: usize = 0;
const ECX: usize = 1;
const EDX: usize = 2;
const EBX: usize = 3;
const ESP: usize = 4;
const ESI: usize = 6;

const GDT: u32 = 0x1000;
const IDT: u32 = 0x2000;
const TSS: u32 = 0x3000;
const PD: u32 = 0x10000;
const PT: u32 = 0x11000;

fn setup(pte_flags: u32) -> (Cpu, TestBus) {
    let mut b = TestBus::new(16 << 20).unwrap();
    common::load_gdt(&mut b, GDT, TSS);
    for v in 0..=255u32 {
        let off = 0x5000u32;
        b.write_u32(IDT + 8 * v, (0x08 << 16) | (off & 0xFFFF));
        b.write_u32(IDT + 8 * v + 4, (off & 0xFFFF_0000) | 0x8E00);
    }
    // pop eax (error code); pop ebx (eip); hlt
    b.load(0x5000, &[0x58, 0x5B, 0xF4]);
    // PDE0 -> PT (4 KiB pages, identity), PDE1 -> 4 MiB page at 4 MiB.
    b.write_u32(PD, PT | 7);
    b.write_u32(PD + 4, 0x40_0000 | 0x87);
    for i in 0..1024u32 {
        b.write_u32(PT + 4 * i, (i << 12) | pte_flags);
    }
    let mut c = Cpu::new();
    c.setup_flat32(0x4000);
    c.set_gdtr(GDT, 0x3F);
    c.set_idtr(IDT, 0x7FF);
    c.set_reg32(ESP, 0x9000);
    c.set_cr3(PD);
    c.set_cr4(0x10); // PSE
    let cr0 = c.registers().cr0;
    c.set_cr0(cr0 | 0x8000_0000);
    (c, b)
}

fn run(cpu: &mut Cpu, bus: &mut TestBus) -> CpuExit {
    let lim = cpu.icount() + 100_000;
    cpu.run(bus, lim)
}

#[test]
fn accessed_and_dirty_bits_4k_and_4m() {
    let (mut c, mut b) = setup(3);
    b.load(
        0x4000,
        &[
            0xA1, 0x00, 0x30, 0x00, 0x00, // mov eax, [0x3000]
            0xC7, 0x05, 0x00, 0x60, 0x00, 0x00, 1, 0, 0, 0, // mov dword [0x6000], 1
            0x8B, 0x1D, 0x00, 0x10, 0x40, 0x00, // mov ebx, [0x401000]
            0xF4,
        ],
    );
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.read_u32(PT + 3 * 4) & 0x60, 0x20, "read: A only");
    assert_eq!(b.read_u32(PT + 6 * 4) & 0x60, 0x60, "write: A and D");
    assert_eq!(b.read_u32(PT + 8 * 4) & 0x60, 0, "untouched page");
    assert_ne!(b.read_u32(PD) & 0x20, 0, "PDE accessed");
    assert_eq!(b.read_u32(PD + 4) & 0x60, 0x20, "4 MiB page read: A only");
    b.load(0x4100, &[0x89, 0x1D, 0x00, 0x20, 0x40, 0x00, 0xF4]); // mov [0x402000], ebx
    c.set_eip(0x4100);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.read_u32(PD + 4) & 0x60, 0x60, "4 MiB page written: D");
    // A write through a TLB entry filled by a read must still set D.
    b.load(
        0x4200,
        &[0xC7, 0x05, 0x00, 0x30, 0x00, 0x00, 9, 0, 0, 0, 0xF4],
    );
    c.set_eip(0x4200);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(b.read_u32(PT + 3 * 4) & 0x60, 0x60);
    assert_eq!(b.read_u32(0x3000), 9);
}

#[test]
fn page_fault_not_present_read_and_write() {
    let (mut c, mut b) = setup(3);
    b.load(0x4000, &[0x90, 0x8B, 0x0D, 0x00, 0x00, 0x80, 0x00]); // nop; mov ecx, [0x800000]
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 0, "not present, read, supervisor");
    assert_eq!(c.reg32(EBX), 0x4001);
    assert_eq!(c.registers().cr2, 0x80_0000);
    b.load(0x4100, &[0x89, 0x0D, 0x34, 0x12, 0x80, 0x00]); // mov [0x801234], ecx
    c.set_eip(0x4100);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 2, "not present, write");
    assert_eq!(c.registers().cr2, 0x80_1234);
}

#[test]
fn write_protect_applies_to_supervisor_only_with_cr0_wp() {
    let (mut c, mut b) = setup(3);
    b.write_u32(PT + 7 * 4, 0x7000 | 1); // read-only page
    b.load(
        0x4000,
        &[0xC7, 0x05, 0x00, 0x70, 0x00, 0x00, 5, 0, 0, 0, 0xF4],
    );
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(
        b.read_u32(0x7000),
        5,
        "WP=0: supervisor writes read-only pages"
    );
    let cr0 = c.registers().cr0;
    c.set_cr0(cr0 | 1 << 16);
    c.set_eip(0x4000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 3, "protection, write, supervisor");
    assert_eq!(c.reg32(EBX), 0x4000);
}

#[test]
fn user_access_to_supervisor_page_faults() {
    let (mut c, mut b) = setup(7);
    b.write_u32(PT + 0xA * 4, 0xA000 | 3); // supervisor-only page
    b.write_u32(TSS + 4, 0x8800);
    b.write_u32(TSS + 8, 0x10);
    // mov ax, 0x33; mov ds, ax; mov ecx, [0xa010]
    b.load(
        0x4100,
        &[
            0x66, 0xB8, 0x33, 0x00, 0x8E, 0xD8, 0x8B, 0x0D, 0x10, 0xA0, 0x00, 0x00,
        ],
    );
    b.load(
        0x4000,
        &[
            0x66, 0xB8, 0x38, 0x00, 0x0F, 0x00, 0xD8, // ltr 0x38
            0x6A, 0x33, 0x68, 0x00, 0x70, 0x00, 0x00, 0x6A, 0x02, 0x6A, 0x2B, // frame
            0x68, 0x00, 0x41, 0x00, 0x00, 0xCF, // push 0x4100; iretd
        ],
    );
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 5, "protection, read, user");
    assert_eq!(c.reg32(EBX), 0x4106);
    assert_eq!(c.registers().cr2, 0xA010);
    // The same page is readable at CPL 0.
    b.write_u32(0xA010, 0x5A5A);
    b.load(0x4200, &[0x8B, 0x0D, 0x10, 0xA0, 0x00, 0x00, 0xF4]);
    c.set_eip(0x4200);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(ECX), 0x5A5A);
}

#[test]
fn invlpg_anywhere_in_a_4m_page_drops_all_its_entries() {
    let (mut c, mut b) = setup(3);
    b.write_u32(0x40_0000, 0x1111_1111);
    b.write_u32(0x7F_F000, 0x2222_2222);
    b.write_u32(0x80_0000, 0x3333_3333);
    b.write_u32(0xBF_F000, 0x4444_4444);
    b.load(
        0x4000,
        &[
            0xA1, 0x00, 0x00, 0x40, 0x00, // mov eax, [0x400000]
            0x8B, 0x1D, 0x00, 0xF0, 0x7F, 0x00, // mov ebx, [0x7ff000]
            0xC7, 0x05, 0x04, 0x00, 0x01, 0x00, 0x87, 0x00, 0x80, 0x00, // PDE1 = 0x800087
            0x0F, 0x01, 0x3D, 0x00, 0x00, 0x40, 0x00, // invlpg [0x400000]
            0x8B, 0x15, 0x00, 0xF0, 0x7F, 0x00, // mov edx, [0x7ff000]
            0xF4,
        ],
    );
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 0x1111_1111);
    assert_eq!(c.reg32(EBX), 0x2222_2222);
    assert_eq!(c.reg32(EDX), 0x4444_4444);
}

#[test]
fn global_pages_survive_cr3_reload_until_pge_toggles() {
    let (mut c, mut b) = setup(3);
    b.write_u32(PT + 0xA * 4, 0xA000 | 0x103); // global
    b.write_u32(0xA000, 0xAAAA);
    b.write_u32(0xB000, 0xBBBB);
    c.set_cr4(0x10 | 0x80);
    b.load(
        0x4000,
        &[
            0xA1, 0x00, 0xA0, 0x00, 0x00, // mov eax, [0xa000]
            0xC7, 0x05, 0x28, 0x10, 0x01, 0x00, 0x03, 0xB1, 0x00, 0x00, // PTE[10] = 0xb103
            0x0F, 0x20, 0xD9, // mov ecx, cr3
            0x0F, 0x22, 0xD9, // mov cr3, ecx
            0x8B, 0x1D, 0x00, 0xA0, 0x00, 0x00, // mov ebx, [0xa000]
            0x0F, 0x20, 0xE1, // mov ecx, cr4
            0x80, 0xE1, 0x7F, // and cl, 0x7f
            0x0F, 0x22, 0xE1, // mov cr4, ecx
            0x80, 0xC9, 0x80, // or cl, 0x80
            0x0F, 0x22, 0xE1, // mov cr4, ecx
            0x8B, 0x15, 0x00, 0xA0, 0x00, 0x00, // mov edx, [0xa000]
            0xF4,
        ],
    );
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 0xAAAA);
    assert_eq!(c.reg32(EBX), 0xAAAA, "global entry kept across MOV CR3");
    assert_eq!(c.reg32(EDX), 0xBBBB, "CR4.PGE toggle flushed it");
}

fn smc_program(b: &mut TestBus, patch_addr: u32) {
    // 0xCFFD: mov eax, 0x44332211 (crosses into the page at 0xD000); ret
    b.load(0xCFFD, &[0xB8, 0x11, 0x22, 0x33, 0x44, 0xC3]);
    let p = patch_addr.to_le_bytes();
    b.load(
        0x4000,
        &[
            0xE8, 0xF8, 0x8F, 0x00, 0x00, // call 0xcffd
            0x89, 0xC6, // mov esi, eax
            0xC6, 0x05, p[0], p[1], p[2], p[3], 0x77, // mov byte [patch], 0x77
            0xE8, 0xEA, 0x8F, 0x00, 0x00, // call 0xcffd
            0xF4,
        ],
    );
}

#[test]
fn self_modifying_code_across_a_page_boundary() {
    let mut b = TestBus::new(16 << 20).unwrap();
    smc_program(&mut b, 0xD000);
    let mut c = Cpu::new();
    c.setup_flat32(0x4000);
    c.set_reg32(ESP, 0x9000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(ESI), 0x4433_2211);
    assert_eq!(c.reg32(EAX), 0x4477_2211);
}

#[test]
fn self_modifying_code_through_an_alias_mapping() {
    let (mut c, mut b) = setup(3);
    // Linear 8 MiB..12 MiB aliases physical 0..4 MiB.
    b.write_u32(PD + 8, 0x83);
    smc_program(&mut b, 0x80_D000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(ESI), 0x4433_2211);
    assert_eq!(c.reg32(EAX), 0x4477_2211);
}

#[test]
fn translate_debug_has_no_side_effects() {
    let (c, b) = setup(3);
    assert_eq!(c.translate_debug(&b.mem, 0x3123), Some(0x3123));
    assert_eq!(c.translate_debug(&b.mem, 0x40_1234), Some(0x40_1234));
    assert_eq!(c.translate_debug(&b.mem, 0x80_0000), None);
    assert_eq!(b.read_u32(PT + 3 * 4) & 0x20, 0, "no accessed bit");
}

#[test]
fn a20_gate_wraps_at_1m_in_real_mode() {
    let mut b = TestBus::new(16 << 20).unwrap();
    b.load(0x10_0010, &[0x22]);
    b.load(0x10, &[0x11]);
    // FFFF:0020 = 0x100010
    b.load(
        0x7C00,
        &[0xB8, 0xFF, 0xFF, 0x8E, 0xD8, 0xA0, 0x20, 0x00, 0xF4],
    );
    let mut c = Cpu::new();
    c.set_segment_real(1, 0);
    c.set_eip(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX) & 0xFF, 0x22);
    b.mem.set_a20(false);
    c.set_eip(0x7C00);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX) & 0xFF, 0x11, "A20 off: wraps to 0x10");
}

#[test]
#[ignore = "benchmark: prints MIPS"]
fn bench_tight_loop_mips() {
    let mut b = TestBus::new(16 << 20).unwrap();
    // loop: add eax, ecx; mov [0x6000], eax; dec ecx; jnz loop
    b.load(
        0x4000,
        &[
            0x01, 0xC8, 0xA3, 0x00, 0x60, 0x00, 0x00, 0x49, 0x75, 0xF6, 0xF4,
        ],
    );
    let mut c = Cpu::new();
    c.setup_flat32(0x4000);
    let iters = std::env::var("WASM86_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok());
    c.set_reg32(ECX, iters.unwrap_or(50_000_000));
    let t = std::time::Instant::now();
    let exit = c.run(&mut b, u64::MAX);
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(exit, CpuExit::Halted);
    println!(
        "{} instructions in {:.3}s: {:.1} MIPS",
        c.icount(),
        dt,
        c.icount() as f64 / dt / 1e6
    );
}

#[test]
fn rep_movsd_and_stosb_across_pages_and_into_mmio() {
    let mut b = TestBus::new(16 << 20).unwrap();
    let src: Vec<u8> = (0..0x3000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    b.load(0x10_0000, &src);
    // rep movsd 0x3000 bytes from 0x100000 to 0x200800 (crosses pages, not page aligned),
    // then rep stosb 0x100 bytes at 0x9FF80: from RAM into the MMIO window at 0xA0000.
    b.load(
        0x4000,
        &[
            0xBE, 0x00, 0x00, 0x10, 0x00, 0xBF, 0x00, 0x08, 0x20, 0x00, 0xB9, 0x00, 0x0C, 0, 0,
            0xF3, 0xA5, // rep movsd
            0xBF, 0x80, 0xFF, 0x09, 0x00, 0xB9, 0x00, 0x01, 0, 0, 0xB0, 0xAB, 0xF3,
            0xAA, // rep stosb
            0xF4,
        ],
    );
    let mut c = Cpu::new();
    c.setup_flat32(0x4000);
    c.set_reg32(ESP, 0x9000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    let mut out = vec![0; 0x3000];
    b.read(0x20_0800, &mut out);
    assert!(out == src, "bulk copy");
    assert_eq!(c.reg32(ESI), 0x10_3000);
    assert_eq!(c.reg32(ECX), 0);
    let mut tail = [0u8; 0x100];
    b.read(0x9_FF80, &mut tail);
    assert!(
        tail.iter().all(|&x| x == 0xAB),
        "RAM part and MMIO part both filled"
    );
    assert_eq!(
        c.icount(),
        0x0C00 + 0x100 + 7,
        "one instruction per iteration"
    );
}

#[test]
fn rep_movsb_overlapping_forward_replicates() {
    let mut b = TestBus::new(16 << 20).unwrap();
    b.load(0x6000, &[1, 2, 3]);
    // rep movsb from 0x6000 to 0x6001, 8 bytes: replicates byte 1.
    b.load(
        0x4000,
        &[
            0xBE, 0x00, 0x60, 0, 0, 0xBF, 0x01, 0x60, 0, 0, 0xB9, 8, 0, 0, 0, 0xF3, 0xA4, 0xF4,
        ],
    );
    let mut c = Cpu::new();
    c.setup_flat32(0x4000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    let mut out = [0u8; 9];
    b.read(0x6000, &mut out);
    assert_eq!(out, [1; 9]);
}

/// A caller whose callee's page is mapped elsewhere between two runs runs the new callee
/// (blocks link only to blocks in their own page; a link across pages would have to see the
/// new translation).
#[test]
fn a_remapped_call_target_is_not_followed_through_its_old_link() {
    let (mut c, mut b) = setup(3);
    // mov ecx, 10; l: call 0x8000; dec ecx; jnz l; hlt
    b.load(
        0x4000,
        &[
            0xB9, 0x0A, 0, 0, 0, 0xE8, 0xF6, 0x3F, 0, 0, 0x49, 0x75, 0xF8, 0xF4,
        ],
    );
    // Two versions of the function at linear 0x8000: add eax, 1 / add eax, 100; ret
    b.load(0xA000, &[0x83, 0xC0, 0x01, 0xC3]);
    b.load(0xB000, &[0x83, 0xC0, 0x64, 0xC3]);
    b.write_u32(PT + 4 * 8, 0xA000 | 3);
    c.set_reg32(EAX, 0);
    // The stack away from the code (0x9000 would push into linear page 8).
    c.set_reg32(ESP, 0x7000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 10);
    // The same caller, the callee's page mapped elsewhere.
    b.write_u32(PT + 4 * 8, 0xB000 | 3);
    c.set_cr3(PD);
    c.set_eip(0x4000);
    assert_eq!(run(&mut c, &mut b), CpuExit::Halted);
    assert_eq!(c.reg32(EAX), 10 + 10 * 100);
}
