//! A flat test board: RAM from a [`Memory`], the 0xA0000–0xFFFFF region backed by a plain
//! array (so real-mode tests can use the whole first MiB, with no BIOS image), a log of port
//! I/O, and no interrupts unless a test queues some.

use crate::Bus;
use wasm86_memory::{Memory, MemoryError};

/// Start of the array-backed MMIO region.
pub const HIGH_START: u32 = 0xA_0000;
/// End (exclusive) of the array-backed MMIO region.
pub const HIGH_END: u32 = 0x10_0000;

/// One logged port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    /// Port.
    pub port: u16,
    /// Size in bytes.
    pub size: u8,
    /// Value read or written.
    pub value: u32,
    /// True for OUT, false for IN.
    pub write: bool,
    /// Instruction count passed by the CPU.
    pub icount: u64,
}

/// The flat test bus.
#[derive(Debug)]
pub struct TestBus {
    /// Guest memory.
    pub mem: Memory,
    /// Contents of 0xA0000–0xFFFFF.
    pub high: Vec<u8>,
    /// Every port access, in order.
    pub io_log: Vec<IoAccess>,
    /// Values returned by port reads (by port); unknown ports read all-ones.
    pub io_values: std::collections::HashMap<u16, u32>,
    /// Interrupt vectors waiting on the INTR line (front first).
    pub pending_irqs: std::collections::VecDeque<u8>,
    /// TSC value = icount * `tsc_per_insn`.
    pub tsc_per_insn: u64,
    /// Returned by `exit_requested`.
    pub exit: bool,
    /// Number of MMIO accesses.
    pub mmio_count: u64,
    /// Every FERR# change reported by the CPU, in order.
    pub ferr_log: Vec<bool>,
}

impl TestBus {
    /// A bus with `ram_size` bytes of RAM.
    pub fn new(ram_size: u64) -> Result<TestBus, MemoryError> {
        Ok(TestBus {
            mem: Memory::new(ram_size)?,
            high: vec![0; (HIGH_END - HIGH_START) as usize],
            io_log: Vec::new(),
            io_values: Default::default(),
            pending_irqs: Default::default(),
            tsc_per_insn: 1,
            exit: false,
            mmio_count: 0,
            ferr_log: Vec::new(),
        })
    }

    /// Writes bytes at a physical address: RAM through the write path, the high region into
    /// its array. Bytes elsewhere are dropped.
    pub fn load(&mut self, addr: u32, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let a = addr.wrapping_add(i as u32);
            if (HIGH_START..HIGH_END).contains(&a) {
                self.high[(a - HIGH_START) as usize] = b;
            } else {
                self.mem.write_phys(a, &[b]);
            }
        }
    }

    /// Reads bytes at a physical address (RAM or the high region; elsewhere 0xFF).
    pub fn read(&self, addr: u32, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr.wrapping_add(i as u32);
            *b = if (HIGH_START..HIGH_END).contains(&a) {
                self.high[(a - HIGH_START) as usize]
            } else {
                let mut x = [0xFF];
                self.mem.read_phys(a, &mut x);
                x[0]
            };
        }
    }

    /// Reads a little-endian u32.
    pub fn read_u32(&self, addr: u32) -> u32 {
        let mut b = [0; 4];
        self.read(addr, &mut b);
        u32::from_le_bytes(b)
    }

    /// Reads a little-endian u16.
    pub fn read_u16(&self, addr: u32) -> u16 {
        let mut b = [0; 2];
        self.read(addr, &mut b);
        u16::from_le_bytes(b)
    }

    /// Writes a little-endian u32.
    pub fn write_u32(&mut self, addr: u32, v: u32) {
        self.load(addr, &v.to_le_bytes());
    }
}

impl Bus for TestBus {
    #[inline]
    fn memory(&mut self) -> &mut Memory {
        &mut self.mem
    }

    fn io_read(&mut self, port: u16, size: u8, icount: u64) -> u32 {
        let mask = match size {
            1 => 0xFF,
            2 => 0xFFFF,
            _ => 0xFFFF_FFFF,
        };
        let value = self.io_values.get(&port).copied().unwrap_or(0xFFFF_FFFF) & mask;
        self.io_log.push(IoAccess {
            port,
            size,
            value,
            write: false,
            icount,
        });
        value
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, icount: u64) {
        self.io_log.push(IoAccess {
            port,
            size,
            value,
            write: true,
            icount,
        });
    }

    fn mmio_read(&mut self, addr: u32, size: u8, _icount: u64) -> u32 {
        self.mmio_count += 1;
        let mut v = 0u32;
        for i in 0..size as u32 {
            let a = addr.wrapping_add(i);
            let b = if (HIGH_START..HIGH_END).contains(&a) {
                self.high[(a - HIGH_START) as usize]
            } else {
                0xFF
            };
            v |= (b as u32) << (8 * i);
        }
        v
    }

    fn mmio_write(&mut self, addr: u32, size: u8, value: u32, _icount: u64) {
        self.mmio_count += 1;
        for i in 0..size as u32 {
            let a = addr.wrapping_add(i);
            if (HIGH_START..HIGH_END).contains(&a) {
                self.high[(a - HIGH_START) as usize] = (value >> (8 * i)) as u8;
            }
        }
    }

    fn intr_pending(&mut self) -> bool {
        !self.pending_irqs.is_empty()
    }

    fn intr_ack(&mut self) -> Option<u8> {
        self.pending_irqs.pop_front()
    }

    fn rdtsc(&mut self, icount: u64) -> u64 {
        icount.wrapping_mul(self.tsc_per_insn)
    }

    fn exit_requested(&mut self) -> bool {
        self.exit
    }

    fn ferr(&mut self, level: bool) {
        self.ferr_log.push(level);
    }
}
