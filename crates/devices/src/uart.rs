//! National Semiconductor 16550A UART with 16-byte FIFOs (one instance per COM port).
//!
//! [`Uart::read`]/[`Uart::write`] take a register **offset 0..=7** from the port base
//! (0x3F8, 0x2F8 ...). Transmission completes at once: bytes go to a bounded output buffer
//! the host drains with [`Uart::take_output`] (or, in loopback mode, into the receive FIFO).
//! The host feeds input with [`Uart::receive`], which accepts only what fits in the FIFO.
//! The interrupt output is the level [`Uart::irq_level`] (gated by MCR OUT2, as on PCs).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{Snapshot, StateError};

/// Receive buffer (read) / transmit holding register (write); divisor latch low with DLAB.
pub const REG_DATA: u16 = 0;
/// Interrupt enable; divisor latch high with DLAB.
pub const REG_IER: u16 = 1;
/// Interrupt identification (read) / FIFO control (write).
pub const REG_IIR_FCR: u16 = 2;
/// Line control.
pub const REG_LCR: u16 = 3;
/// Modem control.
pub const REG_MCR: u16 = 4;
/// Line status.
pub const REG_LSR: u16 = 5;
/// Modem status.
pub const REG_MSR: u16 = 6;
/// Scratch.
pub const REG_SCR: u16 = 7;

/// IER: received data available.
pub const IER_RDI: u8 = 0x01;
/// IER: transmit holding register empty.
pub const IER_THRI: u8 = 0x02;
/// IER: receiver line status.
pub const IER_RLSI: u8 = 0x04;
/// IER: modem status.
pub const IER_MSI: u8 = 0x08;

/// IIR: no interrupt pending.
pub const IIR_NO_INT: u8 = 0x01;
/// IIR: modem status change.
pub const IIR_MSI: u8 = 0x00;
/// IIR: transmit holding register empty.
pub const IIR_THRI: u8 = 0x02;
/// IIR: received data available.
pub const IIR_RDI: u8 = 0x04;
/// IIR: receiver line status.
pub const IIR_RLSI: u8 = 0x06;
/// IIR: character timeout (FIFO mode).
pub const IIR_CTI: u8 = 0x0C;
/// IIR: FIFOs enabled.
pub const IIR_FIFO: u8 = 0xC0;

/// FCR: enable FIFOs.
pub const FCR_ENABLE: u8 = 0x01;
/// FCR: clear the receive FIFO.
pub const FCR_CLEAR_RX: u8 = 0x02;
/// FCR: clear the transmit FIFO.
pub const FCR_CLEAR_TX: u8 = 0x04;

/// LCR: divisor latch access.
pub const LCR_DLAB: u8 = 0x80;
/// LCR: set break.
pub const LCR_BREAK: u8 = 0x40;

/// MCR: data terminal ready.
pub const MCR_DTR: u8 = 0x01;
/// MCR: request to send.
pub const MCR_RTS: u8 = 0x02;
/// MCR: OUT1.
pub const MCR_OUT1: u8 = 0x04;
/// MCR: OUT2 (enables the IRQ line on PCs).
pub const MCR_OUT2: u8 = 0x08;
/// MCR: loopback.
pub const MCR_LOOP: u8 = 0x10;

/// LSR: data ready.
pub const LSR_DR: u8 = 0x01;
/// LSR: overrun error.
pub const LSR_OE: u8 = 0x02;
/// LSR: parity error.
pub const LSR_PE: u8 = 0x04;
/// LSR: framing error.
pub const LSR_FE: u8 = 0x08;
/// LSR: break interrupt.
pub const LSR_BI: u8 = 0x10;
/// LSR: transmit holding register empty.
pub const LSR_THRE: u8 = 0x20;
/// LSR: transmitter empty.
pub const LSR_TEMT: u8 = 0x40;
/// LSR: error in the receive FIFO.
pub const LSR_FIFO_ERR: u8 = 0x80;
/// LSR bits cleared by reading LSR.
const LSR_ERRORS: u8 = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

/// MSR: delta CTS.
pub const MSR_DCTS: u8 = 0x01;
/// MSR: delta DSR.
pub const MSR_DDSR: u8 = 0x02;
/// MSR: trailing edge of RI.
pub const MSR_TERI: u8 = 0x04;
/// MSR: delta DCD.
pub const MSR_DDCD: u8 = 0x08;
/// MSR: clear to send.
pub const MSR_CTS: u8 = 0x10;
/// MSR: data set ready.
pub const MSR_DSR: u8 = 0x20;
/// MSR: ring indicator.
pub const MSR_RI: u8 = 0x40;
/// MSR: data carrier detect.
pub const MSR_DCD: u8 = 0x80;
/// MSR delta bits.
const MSR_DELTAS: u8 = 0x0F;

/// Receive FIFO depth.
pub const FIFO_SIZE: usize = 16;
/// Bytes of transmitted output kept until the host drains them; later bytes are dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// Saved state of a UART.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UartState {
    /// Divisor latch.
    pub divisor: u16,
    /// IER.
    pub ier: u8,
    /// FCR as last written (bit 0: FIFOs on; bits 7-6: trigger level).
    pub fcr: u8,
    /// LCR.
    pub lcr: u8,
    /// MCR.
    pub mcr: u8,
    /// LSR error bits (OE, PE, FE, BI) not yet read.
    pub lsr_errors: u8,
    /// MSR (inputs and delta bits).
    pub msr: u8,
    /// Scratch register.
    pub scr: u8,
    /// Receive FIFO (or holding register in 16450 mode).
    pub rx: Vec<u8>,
    /// A THR-empty interrupt is pending.
    pub thr_pending: bool,
    /// Modem inputs from the host when not in loopback (CTS, DSR, RI, DCD in MSR positions).
    pub host_lines: u8,
    /// Transmitted bytes not yet taken by the host.
    pub output: Vec<u8>,
}

/// One 16550A.
#[derive(Clone, Debug)]
pub struct Uart {
    s: UartState,
    rx: VecDeque<u8>,
    dropped: u64,
}

impl Uart {
    /// A UART at reset, with CTS, DSR and DCD asserted by the (virtual) host side.
    pub fn new() -> Uart {
        let host_lines = MSR_CTS | MSR_DSR | MSR_DCD;
        Uart {
            s: UartState {
                divisor: 12,
                ier: 0,
                fcr: 0,
                lcr: 0,
                mcr: 0,
                lsr_errors: 0,
                msr: host_lines,
                scr: 0,
                rx: Vec::new(),
                thr_pending: false,
                host_lines,
                output: Vec::new(),
            },
            rx: VecDeque::with_capacity(FIFO_SIZE),
            dropped: 0,
        }
    }

    fn fifo_on(&self) -> bool {
        self.s.fcr & FCR_ENABLE != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_on() {
            FIFO_SIZE
        } else {
            1
        }
    }

    fn trigger(&self) -> usize {
        match self.s.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    fn loopback(&self) -> bool {
        self.s.mcr & MCR_LOOP != 0
    }

    /// Interrupt identification (without the FIFO bits).
    fn iir_id(&self) -> u8 {
        let ier = self.s.ier;
        if ier & IER_RLSI != 0 && self.s.lsr_errors != 0 {
            IIR_RLSI
        } else if ier & IER_RDI != 0 && !self.rx.is_empty() {
            if !self.fifo_on() || self.rx.len() >= self.trigger() {
                IIR_RDI
            } else {
                IIR_CTI
            }
        } else if ier & IER_THRI != 0 && self.s.thr_pending {
            IIR_THRI
        } else if ier & IER_MSI != 0 && self.s.msr & MSR_DELTAS != 0 {
            IIR_MSI
        } else {
            IIR_NO_INT
        }
    }

    /// Interrupt output level (the chip's INTR gated by MCR OUT2; off in loopback).
    pub fn irq_level(&self) -> bool {
        self.iir_id() != IIR_NO_INT && self.s.mcr & MCR_OUT2 != 0 && !self.loopback()
    }

    fn lsr(&self) -> u8 {
        let mut v = self.s.lsr_errors | LSR_THRE | LSR_TEMT;
        if !self.rx.is_empty() {
            v |= LSR_DR;
        }
        if self.fifo_on() && self.s.lsr_errors & (LSR_PE | LSR_FE | LSR_BI) != 0 {
            v |= LSR_FIFO_ERR;
        }
        v
    }

    /// Puts a byte into the receive FIFO; overrun if full.
    fn push_rx(&mut self, b: u8) -> bool {
        if self.rx.len() < self.rx_capacity() {
            self.rx.push_back(b);
            true
        } else {
            self.s.lsr_errors |= LSR_OE;
            false
        }
    }

    /// Updates the modem input bits, setting the delta bits for changes.
    fn set_msr_inputs(&mut self, inputs: u8) {
        let old = self.s.msr;
        let changed = (old ^ inputs) & 0xF0;
        let mut deltas = old & MSR_DELTAS;
        if changed & MSR_CTS != 0 {
            deltas |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            deltas |= MSR_DDSR;
        }
        if changed & MSR_DCD != 0 {
            deltas |= MSR_DDCD;
        }
        if old & MSR_RI != 0 && inputs & MSR_RI == 0 {
            deltas |= MSR_TERI;
        }
        self.s.msr = (inputs & 0xF0) | deltas;
    }

    /// The MSR inputs as seen now: MCR outputs in loopback, else the host lines.
    fn current_inputs(&self) -> u8 {
        if self.loopback() {
            let m = self.s.mcr;
            (if m & MCR_RTS != 0 { MSR_CTS } else { 0 })
                | (if m & MCR_DTR != 0 { MSR_DSR } else { 0 })
                | (if m & MCR_OUT1 != 0 { MSR_RI } else { 0 })
                | (if m & MCR_OUT2 != 0 { MSR_DCD } else { 0 })
        } else {
            self.s.host_lines
        }
    }

    fn transmit(&mut self, b: u8) {
        if self.loopback() {
            self.push_rx(b);
        } else if self.s.output.len() < OUTPUT_CAP {
            self.s.output.push(b);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
        // Transmission is instantaneous: THR is empty again.
        self.s.thr_pending = true;
    }

    /// Register read at `offset` (0..=7 from the port base; higher offsets read 0xFF).
    pub fn read(&mut self, offset: u16) -> u8 {
        let dlab = self.s.lcr & LCR_DLAB != 0;
        match offset {
            REG_DATA if dlab => self.s.divisor as u8,
            REG_DATA => self.rx.pop_front().unwrap_or(0),
            REG_IER if dlab => (self.s.divisor >> 8) as u8,
            REG_IER => self.s.ier,
            REG_IIR_FCR => {
                let id = self.iir_id();
                if id == IIR_THRI {
                    self.s.thr_pending = false;
                }
                id | if self.fifo_on() { IIR_FIFO } else { 0 }
            }
            REG_LCR => self.s.lcr,
            REG_MCR => self.s.mcr,
            REG_LSR => {
                let v = self.lsr();
                self.s.lsr_errors = 0;
                v
            }
            REG_MSR => {
                let v = self.s.msr;
                self.s.msr &= !MSR_DELTAS;
                v
            }
            REG_SCR => self.s.scr,
            _ => 0xFF,
        }
    }

    /// Register write at `offset` (0..=7 from the port base; higher offsets are ignored).
    pub fn write(&mut self, offset: u16, v: u8) {
        let dlab = self.s.lcr & LCR_DLAB != 0;
        match offset {
            REG_DATA if dlab => self.s.divisor = (self.s.divisor & 0xFF00) | u16::from(v),
            REG_DATA => {
                self.s.thr_pending = false;
                self.transmit(v);
            }
            REG_IER if dlab => self.s.divisor = (self.s.divisor & 0x00FF) | u16::from(v) << 8,
            REG_IER => {
                let old = self.s.ier;
                self.s.ier = v & 0x0F;
                // Enabling THRI with THR empty raises the interrupt at once (16550A).
                if old & IER_THRI == 0 && v & IER_THRI != 0 {
                    self.s.thr_pending = true;
                }
            }
            REG_IIR_FCR => {
                let was_on = self.fifo_on();
                self.s.fcr = v & 0xC1;
                if was_on != self.fifo_on() || v & FCR_CLEAR_RX != 0 {
                    self.rx.clear();
                }
                // FCR_CLEAR_TX: the transmit FIFO is always empty.
            }
            REG_LCR => {
                let was_break = self.s.lcr & LCR_BREAK != 0;
                self.s.lcr = v;
                if !was_break && v & LCR_BREAK != 0 && self.loopback() {
                    self.s.lsr_errors |= LSR_BI;
                    self.push_rx(0);
                }
            }
            REG_MCR => {
                self.s.mcr = v & 0x1F;
                let inputs = self.current_inputs();
                self.set_msr_inputs(inputs);
            }
            REG_LSR => {} // factory test register: writes ignored
            REG_MSR => {}
            REG_SCR => self.s.scr = v,
            _ => {}
        }
    }

    /// Takes the bytes the guest transmitted since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.s.output)
    }

    /// Output bytes dropped because the host did not drain [`Uart::take_output`] in time.
    pub fn dropped_output(&self) -> u64 {
        self.dropped
    }

    /// Feeds received bytes from the host; returns how many fit into the receive FIFO (the
    /// host keeps the rest for later). Nothing is accepted in loopback mode.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        if self.loopback() {
            return 0;
        }
        let room = self.rx_capacity().saturating_sub(self.rx.len());
        let n = room.min(bytes.len());
        self.rx.extend(&bytes[..n]);
        n
    }

    /// Room left in the receive FIFO (0 in loopback mode).
    pub fn receive_room(&self) -> usize {
        if self.loopback() {
            0
        } else {
            self.rx_capacity().saturating_sub(self.rx.len())
        }
    }

    /// The host signals a break condition on the line.
    pub fn receive_break(&mut self) {
        if !self.loopback() {
            self.s.lsr_errors |= LSR_BI;
            self.push_rx(0);
        }
    }

    /// Sets the modem inputs from the host (outside loopback): CTS, DSR, RI, DCD.
    pub fn set_modem_lines(&mut self, cts: bool, dsr: bool, ri: bool, dcd: bool) {
        self.s.host_lines = (if cts { MSR_CTS } else { 0 })
            | (if dsr { MSR_DSR } else { 0 })
            | (if ri { MSR_RI } else { 0 })
            | (if dcd { MSR_DCD } else { 0 });
        if !self.loopback() {
            self.set_msr_inputs(self.s.host_lines);
        }
    }

    /// The programmed divisor (baud = 115200 / divisor).
    pub fn divisor(&self) -> u16 {
        self.s.divisor
    }
}

impl Snapshot for Uart {
    type State = UartState;

    fn save(&self) -> UartState {
        UartState {
            rx: self.rx.iter().copied().collect(),
            ..self.s.clone()
        }
    }

    fn restore(&mut self, state: &UartState) -> Result<(), StateError> {
        let bad = |r: &str| Err(StateError::new("uart", r));
        let cap = if state.fcr & FCR_ENABLE != 0 {
            FIFO_SIZE
        } else {
            1
        };
        if state.rx.len() > cap {
            return bad("receive FIFO holds too many bytes");
        }
        if state.output.len() > OUTPUT_CAP {
            return bad("output buffer too large");
        }
        if state.ier & 0xF0 != 0 || state.fcr & !0xC1 != 0 || state.mcr & !0x1F != 0 {
            return bad("reserved register bits set");
        }
        if state.lsr_errors & !LSR_ERRORS != 0 || state.host_lines & 0x0F != 0 {
            return bad("invalid status bits");
        }
        self.s = UartState {
            rx: Vec::new(),
            ..state.clone()
        };
        self.rx = state.rx.iter().copied().collect();
        Ok(())
    }
}

crate::snapshot_tests!(uart_snapshot, Uart::new, |u: &mut Uart| {
    u.write(REG_IIR_FCR, 0xC7);
    u.write(REG_IER, 0x03);
    u.receive(b"abc");
    u.write(REG_DATA, b'x');
    u.write(REG_MCR, 0x0B);
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's 8250 autoconfig probe, step by step, as `autoconfig()` does it.
    #[test]
    fn linux_autoconfig_detects_16550a() {
        let mut u = Uart::new();
        // IER test: write 0, read 0; write 0x0F, read 0x0F.
        u.write(REG_IER, 0);
        assert_eq!(u.read(REG_IER) & 0x0F, 0);
        u.write(REG_IER, 0x0F);
        assert_eq!(u.read(REG_IER) & 0x0F, 0x0F);
        u.write(REG_IER, 0);
        // Loopback check: MSR must show CTS|DCD for RTS|OUT2.
        let save_mcr = u.read(REG_MCR);
        u.write(REG_MCR, MCR_LOOP | 0x0A);
        assert_eq!(u.read(REG_MSR) & 0xF0, 0x90);
        u.write(REG_MCR, save_mcr);
        // FIFO probe: FCR=enable, IIR top bits = 0xC0 means 16550A.
        u.write(REG_IIR_FCR, FCR_ENABLE);
        assert_eq!(u.read(REG_IIR_FCR) >> 6, 3);
        // 16550A vs 16750: with DLAB set and FCR bit 5, IIR bit 5 stays clear.
        u.write(REG_LCR, LCR_DLAB);
        u.write(REG_IIR_FCR, FCR_ENABLE | 0x20);
        let iir1 = u.read(REG_IIR_FCR);
        u.write(REG_LCR, 0);
        assert_eq!(iir1 & 0x20, 0);
        // Scratch register works.
        u.write(REG_SCR, 0xA5);
        assert_eq!(u.read(REG_SCR), 0xA5);
        // Divisor latch.
        u.write(REG_LCR, LCR_DLAB);
        u.write(REG_DATA, 0x01);
        u.write(REG_IER, 0x00);
        assert_eq!(u.read(REG_DATA), 0x01);
        u.write(REG_LCR, 0x03);
        assert_eq!(u.divisor(), 1);
    }

    #[test]
    fn loopback_tx_to_rx_and_no_external_io() {
        let mut u = Uart::new();
        u.write(REG_IIR_FCR, FCR_ENABLE);
        u.write(REG_MCR, MCR_LOOP);
        assert_eq!(u.receive(b"zz"), 0);
        u.write(REG_DATA, 0x55);
        assert_eq!(u.read(REG_LSR) & LSR_DR, LSR_DR);
        assert_eq!(u.read(REG_DATA), 0x55);
        assert!(u.take_output().is_empty());
        // MCR outputs appear as MSR inputs, with delta bits.
        u.write(REG_MCR, MCR_LOOP | MCR_DTR | MCR_OUT1);
        let msr = u.read(REG_MSR);
        assert_eq!(msr & 0xF0, MSR_DSR | MSR_RI);
        assert_ne!(msr & MSR_DDSR, 0);
        u.write(REG_MCR, MCR_LOOP);
        assert_eq!(u.read(REG_MSR) & MSR_TERI, MSR_TERI);
        // Overrun when the loopback fills the FIFO.
        for i in 0..17 {
            u.write(REG_DATA, i);
        }
        assert_eq!(u.read(REG_LSR) & LSR_OE, LSR_OE);
        assert_eq!(u.read(REG_LSR) & LSR_OE, 0, "LSR read clears OE");
    }

    #[test]
    fn transmit_completes_at_once_with_thre_interrupt() {
        let mut u = Uart::new();
        u.write(REG_MCR, MCR_OUT2 | MCR_RTS | MCR_DTR);
        assert!(!u.irq_level());
        u.write(REG_IER, IER_THRI);
        assert!(u.irq_level(), "enabling THRI with THR empty interrupts");
        assert_eq!(u.read(REG_IIR_FCR), IIR_THRI);
        assert!(!u.irq_level(), "reading IIR clears a THRE interrupt");
        assert_eq!(u.read(REG_IIR_FCR), IIR_NO_INT);
        u.write(REG_DATA, b'h');
        u.write(REG_DATA, b'i');
        assert!(u.irq_level());
        assert_eq!(u.read(REG_LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
        assert_eq!(u.take_output(), b"hi");
        assert!(u.take_output().is_empty());
        // Without OUT2 the line stays low.
        u.write(REG_MCR, 0);
        assert!(!u.irq_level());
    }

    #[test]
    fn receive_is_bounded_by_the_fifo() {
        let mut u = Uart::new();
        assert_eq!(u.receive(b"abc"), 1, "16450 mode holds one byte");
        u.write(REG_IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        let data = [7u8; 40];
        assert_eq!(u.receive(&data), 16);
        assert_eq!(u.receive_room(), 0);
        assert_eq!(u.receive(&data), 0);
        assert_eq!(u.read(REG_LSR) & LSR_OE, 0, "host input never overruns");
        for _ in 0..16 {
            assert_eq!(u.read(REG_DATA), 7);
        }
        assert_eq!(u.read(REG_LSR) & LSR_DR, 0);
    }

    #[test]
    fn rx_interrupt_trigger_and_timeout() {
        let mut u = Uart::new();
        u.write(REG_MCR, MCR_OUT2);
        u.write(REG_IIR_FCR, 0x81 | FCR_CLEAR_RX); // trigger at 8
        u.write(REG_IER, IER_RDI);
        assert!(!u.irq_level());
        u.receive(b"abc");
        assert!(u.irq_level());
        assert_eq!(u.read(REG_IIR_FCR), IIR_FIFO | IIR_CTI);
        u.receive(b"defgh");
        assert_eq!(u.read(REG_IIR_FCR), IIR_FIFO | IIR_RDI);
        for _ in 0..8 {
            u.read(REG_DATA);
        }
        assert_eq!(u.read(REG_IIR_FCR), IIR_FIFO | IIR_NO_INT);
        assert!(!u.irq_level());
    }

    #[test]
    fn interrupt_priorities() {
        let mut u = Uart::new();
        u.write(REG_MCR, MCR_OUT2);
        u.write(REG_IER, 0x0F);
        u.set_modem_lines(false, true, false, true); // CTS drops: DCTS
        u.receive(b"x");
        u.receive_break(); // 16450 mode: FIFO full, overrun too
        assert_eq!(u.read(REG_IIR_FCR), IIR_RLSI);
        let lsr = u.read(REG_LSR);
        assert_eq!(lsr & (LSR_BI | LSR_OE | LSR_DR), LSR_BI | LSR_OE | LSR_DR);
        assert_eq!(u.read(REG_IIR_FCR), IIR_RDI);
        u.read(REG_DATA);
        assert_eq!(u.read(REG_IIR_FCR), IIR_THRI);
        assert_eq!(u.read(REG_IIR_FCR), IIR_MSI);
        assert_eq!(u.read(REG_MSR) & MSR_DCTS, MSR_DCTS);
        assert_eq!(u.read(REG_IIR_FCR), IIR_NO_INT);
    }

    #[test]
    fn output_is_capped() {
        let mut u = Uart::new();
        for _ in 0..OUTPUT_CAP + 10 {
            u.write(REG_DATA, b'a');
        }
        assert_eq!(u.take_output().len(), OUTPUT_CAP);
        assert_eq!(u.dropped_output(), 10);
    }

    #[test]
    fn restore_rejects_bad_states() {
        let mut u = Uart::new();
        let good = u.save();
        let bad = UartState {
            rx: vec![1, 2],
            ..good.clone()
        };
        assert!(u.restore(&bad).is_err(), "two bytes without FIFO");
        let bad = UartState {
            fcr: 0x01,
            rx: vec![0; 17],
            ..good.clone()
        };
        assert!(u.restore(&bad).is_err());
        let bad = UartState {
            output: vec![0; OUTPUT_CAP + 1],
            ..good.clone()
        };
        assert!(u.restore(&bad).is_err());
        let bad = UartState {
            ier: 0x10,
            ..good.clone()
        };
        assert!(u.restore(&bad).is_err());
        assert_eq!(u.save(), good);
    }

    /// Deterministic pseudo-random bytes for the robustness tests.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    #[test]
    fn random_io_never_panics() {
        let mut u = Uart::new();
        let mut r = 4u64;
        for _ in 0..100_000 {
            let off = (lcg(&mut r) % 9) as u16;
            match lcg(&mut r) % 4 {
                0 => u.write(off, lcg(&mut r) as u8),
                1 => {
                    u.read(off);
                }
                2 => {
                    let n = u.receive(&[lcg(&mut r) as u8; 5]);
                    assert!(n <= 5);
                }
                _ => {
                    u.take_output();
                }
            }
        }
    }
}
