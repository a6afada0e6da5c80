//! The board: memory and devices behind the CPU's [`Bus`], port and MMIO dispatch, interrupt
//! routing and timers on the one virtual clock.

use crate::clock::Clock;
use wasm86_block::{BlockDevice, BlockError, BlockRequest};
use wasm86_cpu::Bus;
use wasm86_devices::dma::Dma;
use wasm86_devices::fdc::{Fdc, FloppyDma};
use wasm86_devices::fw_cfg::FwCfg;
use wasm86_devices::i8042::I8042;
use wasm86_devices::ide::{Ide, IdeRequestKind, IoError};
use wasm86_devices::misc::{DebugCon, DebugExit, Port92, PostPort};
use wasm86_devices::pci::{PciBus, PciEvent, DEVFN_VGA, VGA_LFB_BAR, VGA_LFB_SIZE, VGA_MMIO_BAR};
use wasm86_devices::pic::DualPic;
use wasm86_devices::pit::Pit;
use wasm86_devices::rtc::Rtc;
use wasm86_devices::uart::Uart;
use wasm86_devices::vga::Vga;
use wasm86_devices::VirtTime;
use wasm86_memory::Memory;

/// I/O bases of COM1..COM4 and their IRQs.
pub const UART_PORTS: [(u16, u8); 4] = [(0x3F8, 4), (0x2F8, 3), (0x3E8, 4), (0x2E8, 3)];

/// A drive request as the block layer takes it.
fn to_block(kind: IdeRequestKind) -> BlockRequest {
    match kind {
        IdeRequestKind::Read { offset, len } => BlockRequest::Read { offset, len },
        IdeRequestKind::Write { offset, data } => BlockRequest::Write { offset, data },
        IdeRequestKind::Flush => BlockRequest::Flush,
    }
}

fn block_to_io(e: BlockError) -> IoError {
    match e {
        BlockError::OutOfRange { .. } => IoError::OutOfRange,
        BlockError::ReadOnly => IoError::ReadOnly,
        _ => IoError::Io,
    }
}

/// The 8237 as the floppy controller sees it.
struct DmaPort<'a>(&'a mut Dma);

impl FloppyDma for DmaPort<'_> {
    fn channel_ready(&self, ch: usize) -> bool {
        self.0.channel_ready(ch)
    }
    fn write_memory(&mut self, ch: usize, mem: &mut Memory, data: &[u8]) -> usize {
        self.0.write_memory(ch, mem, data)
    }
    fn read_memory(&mut self, ch: usize, mem: &Memory, buf: &mut [u8]) -> usize {
        self.0.read_memory(ch, mem, buf)
    }
    fn terminal_count(&self, ch: usize) -> bool {
        self.0.terminal_count(ch)
    }
}

/// Requests devices make of the machine, acted on between CPU slices.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Requests {
    /// A reset (port 0x92, i8042 0xFE, 0xCF9).
    pub reset: bool,
    /// isa-debug-exit: exit status.
    pub debug_exit: Option<i32>,
}

/// The devices and memory of the PC.
pub struct Board {
    /// Guest physical memory.
    pub mem: Memory,
    /// The virtual clock.
    pub clock: Clock,
    /// TSC frequency in Hz.
    pub tsc_hz: u64,
    /// 8259 pair.
    pub pic: DualPic,
    /// 8254.
    pub pit: Pit,
    /// MC146818.
    pub rtc: Rtc,
    /// COM1..COM4.
    pub uarts: [Uart; 4],
    /// Keyboard controller.
    pub kbc: I8042,
    /// 8237 pair.
    pub dma: Dma,
    /// Port 0x92.
    pub port92: Port92,
    /// Port 0x80.
    pub post: PostPort,
    /// Port 0x402.
    pub debugcon: DebugCon,
    /// Port 0xf4.
    pub debug_exit: DebugExit,
    /// fw_cfg.
    pub fw_cfg: FwCfg,
    /// PCI bus 0.
    pub pci: PciBus,
    /// Standard VGA.
    pub vga: Vga,
    /// PIIX3 IDE.
    pub ide: Ide,
    /// Floppy controller.
    pub fdc: Fdc,
    /// Images behind the IDE drives (0 ide0-hd0, 1 ide0-hd1, 2 ide1-cd0, 3 ide1-hd1).
    pub drives: [Option<BlockDevice>; 4],
    /// Images behind the floppy drives (floppy0, floppy1).
    pub floppies: [Option<BlockDevice>; 2],
    /// Memory ROM id of the VGA BIOS (PCI ROM BAR), if any.
    pub vga_rom: Option<usize>,
    /// Device requests.
    pub requests: Requests,
    /// Set when `run` must return after the current instruction.
    pub exit_now: bool,
    /// Cached: the IDE bus-master base.
    pub(crate) ide_bm: Option<u16>,
    /// Cached: VGA BAR0 and BAR2 bases.
    pub(crate) vga_lfb: Option<u32>,
    pub(crate) vga_mmio: Option<u32>,
    /// Last A20 from the i8042 output port.
    pub(crate) kbc_a20: bool,
    /// Last A20 from port 0x92.
    pub(crate) port92_a20: bool,
    /// FERR# from the CPU (an unmasked x87 error reported with CR0.NE = 0).
    pub ferr: bool,
    /// IGNNE# latch: set by a write to port 0xF0 while FERR# is asserted, dropped when FERR#
    /// goes low. IRQ13 = FERR# and not IGNNE#.
    pub ignne: bool,
}

impl Board {
    /// Virtual time at instruction count `icount`.
    #[inline]
    pub fn time(&self, icount: u64) -> VirtTime {
        self.clock.time_at(icount)
    }

    /// Whether `port` belongs to the IDE bus-master block; returns the offset.
    fn ide_bm_offset(&self, port: u16) -> Option<u16> {
        let base = self.ide_bm?;
        (port >= base && port < base.wrapping_add(16)).then(|| port - base)
    }

    /// Acts on PCI configuration changes: PAM, BAR moves, ROM BAR.
    pub fn apply_pci_events(&mut self) {
        for ev in self.pci.take_events() {
            match ev {
                PciEvent::PamChanged(pam) => self.mem.set_pam(pam),
                PciEvent::ResetRequested { .. } => {
                    self.requests.reset = true;
                    self.exit_now = true;
                }
                PciEvent::RomBarMoved {
                    dev: 2,
                    func: 0,
                    base,
                } => {
                    if let Some(id) = self.vga_rom {
                        // A base that overlaps RAM or is misaligned is refused: the ROM stays
                        // unmapped, as a real bridge would not decode it.
                        if self.mem.move_rom(id, base).is_err() {
                            let _ = self.mem.move_rom(id, None);
                        }
                    }
                }
                _ => {}
            }
        }
        self.ide_bm = self.pci.ide_bm_base();
        self.vga_lfb = self.pci.bar_base(DEVFN_VGA, VGA_LFB_BAR);
        self.vga_mmio = self.pci.bar_base(DEVFN_VGA, VGA_MMIO_BAR);
    }

    /// Updates the A20 gate from port 0x92 and the keyboard controller.
    fn update_a20(&mut self) {
        if let Some(a) = self.kbc.take_a20_change() {
            self.kbc_a20 = a;
        }
        if let Some(a) = self.port92.take_a20_change() {
            self.port92_a20 = a;
        }
        let on = self.kbc_a20 || self.port92_a20;
        self.mem.set_a20(on);
    }

    /// Recomputes every level-triggered interrupt line into the PIC.
    pub fn sync_irqs(&mut self) {
        self.pic.set_irq(1, self.kbc.irq1_level());
        self.pic.set_irq(12, self.kbc.irq12_level());
        let mut com = [false; 16];
        for (i, (_, irq)) in UART_PORTS.iter().enumerate() {
            com[*irq as usize] |= self.uarts[i].irq_level();
        }
        self.pic.set_irq(3, com[3]);
        self.pic.set_irq(4, com[4]);
        self.pic.set_irq(6, self.fdc.irq_level());
        self.pic.set_irq(8, self.rtc.irq_level());
        self.pic.set_irq(13, self.ferr && !self.ignne);
        self.pic.set_irq(14, self.ide.irq_level(0));
        self.pic.set_irq(15, self.ide.irq_level(1));
    }

    /// Runs device timers up to `now`.
    pub fn advance(&mut self, now: VirtTime) {
        let edges = self.pit.advance(now);
        if edges > 0 {
            self.pic.set_irq(0, false);
            self.pic.set_irq(0, true);
            self.pic.set_irq(0, false);
        }
        self.rtc.advance(now);
        self.kbc.advance(now);
        self.pump_storage(now);
        self.sync_irqs();
    }

    /// Earliest device deadline after `now`.
    pub fn next_deadline(&self) -> Option<VirtTime> {
        let storage = self.drives.iter().chain(self.floppies.iter()).flatten();
        [
            self.pit.next_deadline(),
            self.rtc.next_deadline(),
            self.kbc.next_deadline(),
        ]
        .into_iter()
        .chain(storage.map(BlockDevice::next_deadline))
        .flatten()
        .min()
    }

    fn io_read8(&mut self, port: u16, now: VirtTime) -> u8 {
        match port {
            0x00..=0x0F | 0x81..=0x8F | 0xC0..=0xDF => self.dma.read(port),
            0x80 => self.post.read(),
            0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => self.pic.read(port),
            0x40..=0x43 | 0x61 => self.pit.read(port, now),
            0x60 | 0x64 => self.kbc.read(port, now),
            0x70 | 0x71 => self.rtc.read(port, now),
            0x92 => self.port92.read(),
            0x3F0..=0x3F5 | 0x3F7 => self.fdc.read(port),
            0x402 => self.debugcon.read(),
            _ => {
                for (i, (base, _)) in UART_PORTS.iter().enumerate() {
                    if (*base..*base + 8).contains(&port) {
                        return self.uarts[i].read(port - base);
                    }
                }
                0xFF
            }
        }
    }

    fn io_write8(&mut self, port: u16, v: u8, now: VirtTime) {
        match port {
            0x00..=0x0F | 0x81..=0x8F | 0xC0..=0xDF => self.dma.write(port, v),
            0x80 => self.post.write(v),
            0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => self.pic.write(port, v),
            0x40..=0x43 | 0x61 => {
                self.pit.write(port, v, now);
                // The next timer deadline may have moved: let the run loop recompute it.
                self.exit_now = true;
            }
            0x60 | 0x64 => {
                self.kbc.write(port, v, now);
                self.update_a20();
                if self.kbc.take_reset_request() {
                    self.requests.reset = true;
                    self.exit_now = true;
                }
            }
            0x70 | 0x71 => {
                self.rtc.write(port, v, now);
                self.exit_now = true;
            }
            0x92 => {
                self.port92.write(v);
                if self.port92.take_reset_request() {
                    self.requests.reset = true;
                    self.exit_now = true;
                }
                self.update_a20();
            }
            0x3F0..=0x3F5 | 0x3F7 => {
                self.fdc.write(port, v);
                self.fdc.pump(&mut DmaPort(&mut self.dma), &mut self.mem);
            }
            0x402 => self.debugcon.write(v),
            // Coprocessor error acknowledge (any value): drops IRQ13 and asserts IGNNE#
            // until FERR# goes low (sync_irqs after the access updates the line).
            0xF0 => self.ignne = self.ferr,
            0xF4 => {
                self.debug_exit.write(v as u32);
                if let Some(code) = self.debug_exit.take_exit_request() {
                    self.requests.debug_exit = Some(code as i32);
                    self.exit_now = true;
                }
            }
            _ => {
                for (i, (base, _)) in UART_PORTS.iter().enumerate() {
                    if (*base..*base + 8).contains(&port) {
                        self.uarts[i].write(port - base, v);
                        return;
                    }
                }
            }
        }
    }

    /// Port input of 1, 2 or 4 bytes at time `now`.
    pub fn port_read(&mut self, port: u16, size: u8, now: VirtTime) -> u32 {
        let v = match port {
            0x1F0..=0x1F7 | 0x3F6 | 0x170..=0x177 | 0x376 => self.ide.read(port, size),
            0x3B0..=0x3DF | 0x1CE | 0x1CF => self.vga.io_read(port, size, now),
            0xCF8..=0xCFF => self.pci.io_read(port, size),
            0x510..=0x51B => self.fw_cfg.read(port, size),
            _ => {
                if let Some(off) = self.ide_bm_offset(port) {
                    self.ide.bm_read(off, size)
                } else {
                    let mut v = 0u32;
                    for i in 0..size as u16 {
                        v |= (self.io_read8(port.wrapping_add(i), now) as u32) << (8 * i);
                    }
                    v
                }
            }
        };
        self.after_io(port, now);
        v
    }

    /// Port output of 1, 2 or 4 bytes at time `now`.
    pub fn port_write(&mut self, port: u16, size: u8, v: u32, now: VirtTime) {
        match port {
            0x1F0..=0x1F7 | 0x3F6 | 0x170..=0x177 | 0x376 => {
                self.ide.write(port, size, v);
                self.ide.run_dma(&mut self.mem);
            }
            0x3B0..=0x3DF | 0x1CE | 0x1CF => self.vga.io_write(port, size, v),
            0xCF8..=0xCFF => {
                self.pci.io_write(port, size, v);
                self.apply_pci_events();
            }
            0x510..=0x51B => self.fw_cfg.write(port, size, v, &mut self.mem),
            _ => {
                if let Some(off) = self.ide_bm_offset(port) {
                    self.ide.bm_write(off, size, v, &mut self.mem);
                } else {
                    for i in 0..size as u16 {
                        self.io_write8(port.wrapping_add(i), (v >> (8 * i)) as u8, now);
                    }
                }
            }
        }
        self.after_io(port, now);
    }

    /// Ports whose accesses can start storage requests or let a DMA transfer proceed: the
    /// IDE and floppy controllers, their bus-master block and the 8237.
    fn is_storage_port(&self, port: u16) -> bool {
        matches!(port, 0x00..=0x0F | 0x80..=0x8F | 0xC0..=0xDF | 0x170..=0x177 | 0x1F0..=0x1F7)
            || matches!(port, 0x376 | 0x3F0..=0x3F7)
            || self.ide_bm_offset(port).is_some()
    }

    /// After every port access: storage requests (for storage ports), interrupt lines.
    fn after_io(&mut self, port: u16, now: VirtTime) {
        if self.is_storage_port(port) {
            self.pump_storage(now);
        }
        self.sync_irqs();
    }

    /// Forwards drive requests to their block devices and feeds completions back.
    pub fn pump_storage(&mut self, now: VirtTime) {
        for req in self.ide.take_requests() {
            let breq = to_block(req.kind);
            match self.drives.get_mut(req.drive).and_then(Option::as_mut) {
                Some(dev) => dev.submit(req.id, breq, now),
                None => self
                    .ide
                    .complete(req.id, Err(IoError::NoMedium), &mut self.mem),
            }
        }
        for req in self.fdc.take_requests() {
            let breq = to_block(req.kind);
            match self.floppies.get_mut(req.drive).and_then(Option::as_mut) {
                Some(dev) => dev.submit(req.id, breq, now),
                None => self.fdc.complete(
                    req.id,
                    Err(IoError::NoMedium),
                    &mut DmaPort(&mut self.dma),
                    &mut self.mem,
                ),
            }
        }
        for i in 0..self.floppies.len() {
            let done = match self.floppies[i].as_mut() {
                Some(dev) if dev.pending() > 0 => dev.poll(now),
                _ => continue,
            };
            for c in done {
                let result = c.result.map_err(block_to_io);
                self.fdc
                    .complete(c.id, result, &mut DmaPort(&mut self.dma), &mut self.mem);
            }
        }
        if self.fdc.needs_pump() {
            self.fdc.pump(&mut DmaPort(&mut self.dma), &mut self.mem);
        }
        for i in 0..self.drives.len() {
            let done = match self.drives[i].as_mut() {
                Some(dev) if dev.pending() > 0 => dev.poll(now),
                _ => continue,
            };
            for c in done {
                let result = c.result.map_err(block_to_io);
                self.ide.complete(c.id, result, &mut self.mem);
            }
        }
    }

    /// MMIO read at `addr` (never RAM/ROM: those go through the memory store).
    pub fn mmio_read_at(&mut self, addr: u32, size: u8, now: VirtTime) -> u32 {
        if (0xA_0000..0xC_0000).contains(&addr) {
            let mut v = 0;
            for i in 0..size as u32 {
                v |= (self.vga.mem_read(addr + i - 0xA_0000) as u32) << (8 * i);
            }
            return v;
        }
        if let Some(base) = self.vga_lfb {
            if addr >= base && addr - base < VGA_LFB_SIZE {
                return self.vga.lfb_read(addr - base, size);
            }
        }
        if let Some(base) = self.vga_mmio {
            if addr >= base && addr - base < 4096 {
                return self.vga.mmio_read(addr - base, size, now);
            }
        }
        match size {
            1 => 0xFF,
            2 => 0xFFFF,
            _ => u32::MAX,
        }
    }

    /// MMIO write at `addr`.
    pub fn mmio_write_at(&mut self, addr: u32, size: u8, v: u32) {
        if (0xA_0000..0xC_0000).contains(&addr) {
            for i in 0..size as u32 {
                self.vga
                    .mem_write(addr + i - 0xA_0000, (v >> (8 * i)) as u8);
            }
            return;
        }
        if let Some(base) = self.vga_lfb {
            if addr >= base && addr - base < VGA_LFB_SIZE {
                self.vga.lfb_write(addr - base, size, v);
                return;
            }
        }
        if let Some(base) = self.vga_mmio {
            if addr >= base && addr - base < 4096 {
                self.vga.mmio_write(addr - base, size, v);
            }
        }
    }
}

impl Bus for Board {
    #[inline]
    fn memory(&mut self) -> &mut Memory {
        &mut self.mem
    }

    fn io_read(&mut self, port: u16, size: u8, icount: u64) -> u32 {
        let now = self.time(icount);
        self.port_read(port, size, now)
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, icount: u64) {
        let now = self.time(icount);
        self.port_write(port, size, value, now);
    }

    fn mmio_read(&mut self, addr: u32, size: u8, icount: u64) -> u32 {
        let now = self.time(icount);
        self.mmio_read_at(addr, size, now)
    }

    fn mmio_write(&mut self, addr: u32, size: u8, value: u32, _icount: u64) {
        self.mmio_write_at(addr, size, value)
    }

    #[inline]
    fn intr_pending(&mut self) -> bool {
        self.pic.intr_pending()
    }

    fn intr_ack(&mut self) -> Option<u8> {
        let v = self.pic.acknowledge();
        self.sync_irqs();
        v
    }

    fn rdtsc(&mut self, icount: u64) -> u64 {
        let ns = self.time(icount) as u128;
        (ns * self.tsc_hz as u128 / 1_000_000_000) as u64
    }

    fn exit_requested(&mut self) -> bool {
        std::mem::take(&mut self.exit_now)
    }

    fn ferr(&mut self, level: bool) {
        self.ferr = level;
        if !level {
            self.ignne = false;
        }
        self.pic.set_irq(13, level && !self.ignne);
    }
}
