//! The CPU under test on a flat test bus, with the helpers every tool needs: physical
//! byte access that also reaches the test bus's MMIO-backed window, register access in the
//! single-step suite's order, and single-instruction execution.

use wasm86_cpu::testbus::TestBus;
use wasm86_cpu::{sreg, Bus, Cpu, CpuExit};
use wasm86_memory::Target;

use crate::moo::{Reg, Regs16};

/// RAM given to the test bus: the 286 tests assume 16 MiB (24 address lines).
pub const RAM_SIZE: u64 = 16 << 20;

/// Index into the CPU's x86-ordered register file (EAX ECX EDX EBX ESP EBP ESI EDI) of the
/// general registers in suite order (AX BX CX DX, then SP BP SI DI).
const GPR_INDEX: [(Reg, usize); 8] = [
    (Reg::Ax, 0),
    (Reg::Bx, 3),
    (Reg::Cx, 1),
    (Reg::Dx, 2),
    (Reg::Sp, 4),
    (Reg::Bp, 5),
    (Reg::Si, 6),
    (Reg::Di, 7),
];

/// Segment registers in suite order and their x86 index.
const SEG_INDEX: [(Reg, usize); 4] = [
    (Reg::Cs, sreg::CS),
    (Reg::Ss, sreg::SS),
    (Reg::Ds, sreg::DS),
    (Reg::Es, sreg::ES),
];

/// Names of the 32-bit registers in x86 order.
pub const GPR32_NAMES: [&str; 8] = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];

/// A CPU and its test bus.
pub struct Harness {
    /// The CPU under test.
    pub cpu: Cpu,
    /// Its bus.
    pub bus: TestBus,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("cpu", &self.cpu)
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// A reset CPU on a 16 MiB test bus with A20 on.
    pub fn new() -> Harness {
        let mut bus = TestBus::new(RAM_SIZE).expect("16 MiB is a valid RAM size");
        bus.memory().set_a20(true);
        Harness {
            cpu: Cpu::new(),
            bus,
        }
    }

    /// Writes one byte of physical memory (RAM through the memory write path, the MMIO
    /// window through the bus).
    pub fn write_byte(&mut self, addr: u32, v: u8) {
        match self.bus.memory().classify(addr) {
            Target::Mmio => self.bus.mmio_write(addr, 1, v as u32, 0),
            _ => {
                self.bus.memory().write_phys(addr, &[v]);
            }
        }
    }

    /// Reads one byte of physical memory, as [`Harness::write_byte`] writes it.
    pub fn read_byte(&mut self, addr: u32) -> u8 {
        match self.bus.memory().classify(addr) {
            Target::Mmio => self.bus.mmio_read(addr, 1, 0) as u8,
            _ => {
                let mut b = [0];
                self.bus.memory().read_phys(addr, &mut b);
                b[0]
            }
        }
    }

    /// Writes a block of physical memory.
    pub fn write_block(&mut self, addr: u32, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.write_byte(addr.wrapping_add(i as u32), *b);
        }
    }

    /// Resets the CPU and loads real-mode registers (all 14 present in `regs`).
    pub fn load_real_mode(&mut self, regs: &Regs16) {
        let cpu = &mut self.cpu;
        cpu.reset();
        for (r, i) in GPR_INDEX {
            cpu.set_reg32(i, regs.values[r as usize] as u32);
        }
        for (r, i) in SEG_INDEX {
            cpu.set_segment_real(i, regs.values[r as usize]);
        }
        cpu.set_segment_real(sreg::FS, 0);
        cpu.set_segment_real(sreg::GS, 0);
        cpu.set_eip(regs.values[Reg::Ip as usize] as u32);
        cpu.set_eflags(regs.values[Reg::Flags as usize] as u32);
    }

    /// The CPU's registers in suite order (16-bit views), and the 32-bit values of
    /// EAX..EDI and EIP (x86 order, EIP last) for upper-half checks.
    pub fn read_regs(&self) -> ([u16; 14], [u32; 9]) {
        let cpu = &self.cpu;
        let mut out = [0u16; 14];
        let mut wide = [0u32; 9];
        for (i, w) in wide.iter_mut().take(8).enumerate() {
            *w = cpu.reg32(i);
        }
        wide[8] = cpu.eip();
        for (r, i) in GPR_INDEX {
            out[r as usize] = wide[i] as u16;
        }
        let view = cpu.registers();
        for (r, i) in SEG_INDEX {
            out[r as usize] = view.segs[i].selector;
        }
        out[Reg::Ip as usize] = wide[8] as u16;
        out[Reg::Flags as usize] = cpu.eflags() as u16;
        (out, wide)
    }

    /// Runs exactly one instruction: returns the exit and the instructions retired.
    pub fn step(&mut self) -> (CpuExit, u64) {
        self.bus.io_log.clear();
        let start = self.cpu.icount();
        let exit = self.cpu.run(&mut self.bus, start + 1);
        (exit, self.cpu.icount().wrapping_sub(start))
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}
