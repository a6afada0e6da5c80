//! The wasm86 PC board: memory, CPUs and devices wired together on one virtual clock.
//!
//! The machine API: [`Machine::run`] executes until a [`RunExit`]; typed
//! [`MachineEvent`]s are drained by the owner ([`Machine::take_events`]); queries return typed
//! structs; controls are plain methods (stop/cont live in the owner: a stopped machine is one
//! whose `run` is not called). The machine knows no JSON and no host.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod board;
pub mod clock;
pub mod cmos;
pub mod linux;

use board::{Board, Requests};
use clock::Clock;
use wasm86_block::BlockDevice;
use wasm86_cpu::{Cpu, CpuExit};
use wasm86_devices::dma::Dma;
use wasm86_devices::fdc::Fdc;
use wasm86_devices::fw_cfg::FwCfg;
use wasm86_devices::i8042::I8042;
use wasm86_devices::ide::Ide;
use wasm86_devices::misc::{DebugCon, DebugExit, Port92, PostPort};
use wasm86_devices::pci::PciBus;
use wasm86_devices::pic::DualPic;
use wasm86_devices::pit::Pit;
use wasm86_devices::rtc::Rtc;
use wasm86_devices::uart::Uart;
use wasm86_devices::vga::Vga;
use wasm86_memory::Memory;

/// Default TSC frequency: 1 GHz.
pub const DEFAULT_TSC_HZ: u64 = 1_000_000_000;

/// Images for a direct Linux boot.
#[derive(Debug, Clone, Default)]
pub struct DirectBoot {
    /// The bzImage.
    pub kernel: Vec<u8>,
    /// The initrd, if any.
    pub initrd: Option<Vec<u8>>,
    /// Kernel command line.
    pub cmdline: String,
    /// The option ROM that loads them (`linuxboot_dma.bin`).
    pub option_rom: Vec<u8>,
}

/// How to build a machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// RAM in bytes.
    pub ram_size: u64,
    /// SeaBIOS `bios.bin`.
    pub bios: Vec<u8>,
    /// `vgabios-stdvga.bin`, served by the VGA's PCI ROM BAR.
    pub vga_bios: Option<Vec<u8>>,
    /// Direct kernel boot.
    pub direct_boot: Option<DirectBoot>,
    /// Boot order letters (a, c, d).
    pub boot_order: String,
    /// Show SeaBIOS's boot menu prompt.
    pub boot_menu: bool,
    /// Picoseconds per instruction of the virtual clock.
    pub ps_per_insn: u64,
    /// TSC frequency.
    pub tsc_hz: u64,
    /// Host wall-clock time (Unix seconds) at power-on, for the RTC.
    pub rtc_base: u64,
    /// Floppy drive 0 type for CMOS (0 none, 4 1.44 MB, 5 2.88 MB).
    pub floppy0_type: u8,
    /// IDE disks present on the primary channel (for CMOS).
    pub hd_present: [bool; 2],
}

impl MachineConfig {
    /// A configuration with `ram_size` bytes and the given BIOS, defaults elsewhere.
    pub fn new(ram_size: u64, bios: Vec<u8>) -> MachineConfig {
        MachineConfig {
            ram_size,
            bios,
            vga_bios: None,
            direct_boot: None,
            boot_order: "cad".into(),
            boot_menu: false,
            ps_per_insn: clock::DEFAULT_PS_PER_INSN,
            tsc_hz: DEFAULT_TSC_HZ,
            rtc_base: 946_684_800,
            floppy0_type: 0,
            hd_present: [false, false],
        }
    }
}

/// Errors building a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Memory configuration.
    #[error(transparent)]
    Memory(#[from] wasm86_memory::MemoryError),
    /// Direct boot images.
    #[error(transparent)]
    Linux(#[from] linux::LinuxBootError),
    /// A medium could not be inserted.
    #[error("{0}")]
    Media(String),
    /// fw_cfg rejected an item.
    #[error("fw_cfg: {0}")]
    FwCfg(String),
}

/// Why [`Machine::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunExit {
    /// The instruction budget is spent.
    BudgetSpent,
    /// Every CPU is halted; nothing happens before virtual time `until` (None: never, until
    /// outside input).
    Halted {
        /// The next timer deadline.
        until: Option<u64>,
    },
    /// The guest reset the machine (the machine has already reset itself).
    Reset,
    /// The guest asked to exit through isa-debug-exit.
    DebugExit(i32),
}

/// Something that happened in the machine, for the owner to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineEvent {
    /// The machine was reset by the guest (triple fault, reset port) or by a control.
    Reset {
        /// True when the guest caused it.
        guest: bool,
    },
}

/// A CPU's state for `query-cpus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    /// Index.
    pub index: usize,
    /// Linear address of the next instruction (CS base + EIP).
    pub pc: u64,
    /// Halted.
    pub halted: bool,
}

/// The PC.
pub struct Machine {
    cpus: Vec<Cpu>,
    board: Board,
    config: MachineConfig,
    events: Vec<MachineEvent>,
}

fn new_board(config: &MachineConfig, mem: Memory) -> Board {
    Board {
        mem,
        clock: Clock::new(0, config.ps_per_insn),
        tsc_hz: config.tsc_hz,
        pic: DualPic::new(),
        pit: Pit::new(),
        rtc: Rtc::new(config.rtc_base as i64),
        uarts: [Uart::new(), Uart::new(), Uart::new(), Uart::new()],
        kbc: I8042::new(),
        dma: Dma::new(),
        port92: Port92::new(),
        post: PostPort::new(),
        debugcon: DebugCon::new(),
        debug_exit: DebugExit::new(),
        fw_cfg: FwCfg::new(),
        pci: PciBus::pc(),
        vga: Vga::new(),
        ide: Ide::new(),
        fdc: Fdc::new(),
        drives: [None, None, None, None],
        floppies: [None, None],
        vga_rom: None,
        requests: Requests::default(),
        exit_now: false,
        ide_bm: None,
        vga_lfb: None,
        vga_mmio: None,
        kbc_a20: true,
        port92_a20: false,
        ferr: false,
        ignne: false,
    }
}

impl Machine {
    /// Builds and powers on a machine.
    pub fn new(config: MachineConfig) -> Result<Machine, MachineError> {
        let mut mem = Memory::new(config.ram_size)?;
        mem.load_bios(&config.bios)?;
        let mut board = new_board(&config, mem);
        if let Some(rom) = &config.vga_bios {
            board.vga_rom = Some(board.mem.add_rom(None, rom)?);
        }
        let mut m = Machine {
            cpus: vec![Cpu::new()],
            board,
            config,
            events: Vec::new(),
        };
        m.setup_firmware()?;
        m.board.apply_pci_events();
        Ok(m)
    }

    fn setup_firmware(&mut self) -> Result<(), MachineError> {
        let c = &self.config;
        let b = &mut self.board;
        for (i, v) in cmos::cmos_values(&cmos::CmosConfig {
            ram_size: c.ram_size,
            boot_order: c.boot_order.clone(),
            floppy0_type: c.floppy0_type,
            cpus: self.cpus.len() as u8,
            hd_present: c.hd_present,
        }) {
            b.rtc.set_cmos(i as usize, v);
        }
        let fw = &mut b.fw_cfg;
        let err = |e: wasm86_devices::fw_cfg::FwCfgError| MachineError::FwCfg(e.to_string());
        fw.set_u16(0x05, self.cpus.len() as u16).map_err(err)?; // NB_CPUS
        fw.set_u16(0x0F, self.cpus.len() as u16).map_err(err)?; // MAX_CPUS
        fw.set_u16(0x0E, c.boot_menu as u16).map_err(err)?; // BOOT_MENU
        fw.set_u64(0x03, c.ram_size).map_err(err)?; // RAM_SIZE
        let mut e820 = Vec::with_capacity(20);
        e820.extend_from_slice(&0u64.to_le_bytes());
        e820.extend_from_slice(&c.ram_size.min(0xE000_0000).to_le_bytes());
        e820.extend_from_slice(&1u32.to_le_bytes());
        fw.add_file("etc/e820", e820).map_err(err)?;
        if let Some(db) = &c.direct_boot {
            let boot = linux::prepare(
                &db.kernel,
                db.initrd.as_deref(),
                &db.cmdline,
                c.ram_size as u32,
            )?;
            for (key, data) in boot.items {
                fw.set_item(key, data).map_err(err)?;
            }
            fw.add_file("genroms/linuxboot_dma.bin", db.option_rom.clone())
                .map_err(err)?;
            fw.add_file("bootorder", b"/rom@genroms/linuxboot_dma.bin\n".to_vec())
                .map_err(err)?;
        }
        Ok(())
    }

    /// Attaches the drive images of a `pc`: disks on ide0 (master, slave), the CD-ROM drive
    /// on ide1 master (always present, empty without an image, as QEMU's `pc`), and floppy
    /// drive 0.
    pub fn attach_drives(
        &mut self,
        hda: Option<BlockDevice>,
        hdb: Option<BlockDevice>,
        cdrom: Option<BlockDevice>,
        fda: Option<BlockDevice>,
    ) -> Result<(), MachineError> {
        let b = &mut self.board;
        for (i, d) in [(0usize, hda), (1, hdb)] {
            if let Some(d) = d {
                b.ide.attach_disk(i, d.size(), d.read_only());
                b.drives[i] = Some(d);
            }
        }
        b.ide.attach_cdrom(2);
        if let Some(cd) = cdrom {
            b.ide
                .insert_medium(2, cd.size(), true)
                .map_err(|e| MachineError::Media(e.to_string()))?;
            b.drives[2] = Some(cd);
        }
        b.ide.take_tray_events();
        if let Some(f) = fda {
            b.fdc
                .insert_medium(0, f.size(), f.read_only())
                .map_err(|e| MachineError::Media(e.to_string()))?;
            b.floppies[0] = Some(f);
        }
        Ok(())
    }

    /// The board (memory and devices).
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// The board, mutably (host input, media, debug writes).
    pub fn board_mut(&mut self) -> &mut Board {
        &mut self.board
    }

    /// The CPUs.
    pub fn cpus(&self) -> &[Cpu] {
        &self.cpus
    }

    /// A CPU, mutably.
    pub fn cpu_mut(&mut self, index: usize) -> Option<&mut Cpu> {
        self.cpus.get_mut(index)
    }

    /// Current virtual time in ns.
    pub fn now(&self) -> u64 {
        self.board.clock.time_at(self.cpus[0].icount())
    }

    /// Instructions retired by CPU 0.
    pub fn icount(&self) -> u64 {
        self.cpus[0].icount()
    }

    /// Moves virtual time forward to `t` (HLT skips in deterministic mode; realtime
    /// catch-up). Never backwards.
    pub fn skip_to(&mut self, t: u64) {
        let ic = self.cpus[0].icount();
        self.board.clock.skip_to(t, ic);
        let now = self.now();
        self.board.advance(now);
    }

    /// Runs at most `budget` instructions.
    pub fn run(&mut self, budget: u64) -> RunExit {
        let end = self.cpus[0].icount().saturating_add(budget);
        loop {
            let ic = self.cpus[0].icount();
            let now = self.board.clock.time_at(ic);
            self.board.advance(now);
            if let Some(exit) = self.take_requests() {
                return exit;
            }
            if ic >= end {
                return RunExit::BudgetSpent;
            }
            let mut stop = end;
            if let Some(t) = self.board.next_deadline() {
                stop = stop.min(self.board.clock.icount_at(t, ic).max(ic + 1));
            }
            match self.cpus[0].run(&mut self.board, stop) {
                CpuExit::Limit | CpuExit::ExitRequested => {}
                CpuExit::Halted => {
                    let now = self.now();
                    self.board.advance(now);
                    // Only an interrupt the CPU can take wakes it: with IF=0 (`cli; hlt`) a
                    // pending request must not spin this loop.
                    let can_take = self.cpus[0].eflags() & 0x200 != 0;
                    if can_take && self.board.pic.intr_pending() {
                        continue;
                    }
                    if let Some(exit) = self.take_requests() {
                        return exit;
                    }
                    return RunExit::Halted {
                        until: self.board.next_deadline(),
                    };
                }
                CpuExit::TripleFault => {
                    self.reset(true);
                    return RunExit::Reset;
                }
            }
        }
    }

    fn take_requests(&mut self) -> Option<RunExit> {
        let r = std::mem::take(&mut self.board.requests);
        if let Some(code) = r.debug_exit {
            return Some(RunExit::DebugExit(code));
        }
        if r.reset {
            self.reset(true);
            return Some(RunExit::Reset);
        }
        None
    }

    /// Resets the machine: CPUs and devices to power-on state, RAM and inserted media kept.
    pub fn reset(&mut self, guest: bool) {
        for c in &mut self.cpus {
            c.reset();
        }
        let b = &mut self.board;
        b.mem.reset();
        b.pic = DualPic::new();
        b.pit = Pit::new();
        b.kbc = I8042::new();
        b.dma = Dma::new();
        b.port92 = Port92::new();
        b.pci = PciBus::pc();
        b.vga.reset();
        b.ide.reset();
        b.fdc.reset();
        for u in &mut b.uarts {
            *u = Uart::new();
        }
        b.fw_cfg.reset();
        self.events.push(MachineEvent::Reset { guest });
        let b = &mut self.board;
        b.kbc_a20 = true;
        b.port92_a20 = false;
        b.ferr = false;
        b.ignne = false;
        b.requests = Requests::default();
        if let Some(id) = b.vga_rom {
            let _ = b.mem.move_rom(id, None);
        }
        b.apply_pci_events();
    }

    /// Drains the machine's events.
    pub fn take_events(&mut self) -> Vec<MachineEvent> {
        std::mem::take(&mut self.events)
    }

    /// Per-CPU state for `query-cpus`.
    pub fn query_cpus(&self) -> Vec<CpuInfo> {
        self.cpus
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let r = c.registers();
                CpuInfo {
                    index,
                    pc: r.segs[1].base as u64 + r.eip as u64,
                    halted: c.is_halted(),
                }
            })
            .collect()
    }

    /// Output of serial port `n` since the last call.
    pub fn take_serial_output(&mut self, n: usize) -> Vec<u8> {
        self.board
            .uarts
            .get_mut(n)
            .map(|u| u.take_output())
            .unwrap_or_default()
    }

    /// Feeds host input to serial port `n`; returns how many bytes it took.
    pub fn serial_input(&mut self, n: usize, bytes: &[u8]) -> usize {
        let taken = self
            .board
            .uarts
            .get_mut(n)
            .map(|u| u.receive(bytes))
            .unwrap_or(0);
        self.board.sync_irqs();
        taken
    }

    /// Bytes written to the debug console (port 0x402) since the last call.
    pub fn take_debugcon_output(&mut self) -> Vec<u8> {
        self.board.debugcon.take_output()
    }

    /// Keyboard input: PC/XT set-1 scancode bytes.
    pub fn key_event(&mut self, set1: &[u8]) {
        self.board.kbc.key_event_set1(set1);
        self.board.sync_irqs();
    }

    /// Mouse input.
    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.board.kbc.mouse_event(dx, dy, dz, buttons);
        self.board.sync_irqs();
    }

    /// Delivers an NMI to every CPU.
    pub fn inject_nmi(&mut self) {
        for c in &mut self.cpus {
            c.raise_nmi();
        }
    }
}
