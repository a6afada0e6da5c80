//! Small ISA devices: port 0x92 (fast A20 and reset), the POST code port 0x80, the Bochs/QEMU
//! debug console at 0x402 and QEMU's `isa-debug-exit` at 0xF4.
//!
//! Each device decodes a single port, so its `read`/`write` take no port argument; the board
//! routes the port to it.

use serde::{Deserialize, Serialize};

use crate::{Snapshot, StateError};

/// Port of the system control port A.
pub const PORT_92: u16 = 0x92;
/// Port 0x92 bit 0: fast reset (a 0 → 1 transition resets the CPU).
pub const P92_RESET: u8 = 0x01;
/// Port 0x92 bit 1: A20 gate.
pub const P92_A20: u8 = 0x02;

/// Port of the POST code register.
pub const PORT_POST: u16 = 0x80;
/// Port of the debug console.
pub const PORT_DEBUGCON: u16 = 0x402;
/// What a debug console read returns (SeaBIOS checks it).
pub const DEBUGCON_READBACK: u8 = 0xE9;
/// Port of `isa-debug-exit`.
pub const PORT_DEBUG_EXIT: u16 = 0xF4;

/// Bytes of debug console output kept until the host drains them; later bytes are dropped.
pub const DEBUGCON_CAP: usize = 64 * 1024;

/// System control port A (0x92).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port92 {
    /// Last value written (bits 0 and 1 are meaningful).
    pub value: u8,
    /// A20 change not yet taken by the board.
    pub a20_change: Option<bool>,
    /// Reset requested and not yet taken by the board.
    pub reset_request: bool,
}

impl Port92 {
    /// The port at reset: A20 off, no reset.
    pub fn new() -> Port92 {
        Port92 {
            value: 0,
            a20_change: None,
            reset_request: false,
        }
    }

    /// Port read: the A20 bit (bit 0 reads as 0).
    pub fn read(&self) -> u8 {
        self.value & P92_A20
    }

    /// Port write: bit 1 sets A20, a rising bit 0 requests a reset.
    pub fn write(&mut self, v: u8) {
        if (v ^ self.value) & P92_A20 != 0 {
            self.a20_change = Some(v & P92_A20 != 0);
        }
        if v & P92_RESET != 0 && self.value & P92_RESET == 0 {
            self.reset_request = true;
        }
        self.value = v & (P92_A20 | P92_RESET);
    }

    /// Keeps the A20 bit in step when another source (the i8042) changed the line.
    pub fn set_a20(&mut self, on: bool) {
        if on {
            self.value |= P92_A20;
        } else {
            self.value &= !P92_A20;
        }
    }

    /// Takes an A20 change requested through this port.
    pub fn take_a20_change(&mut self) -> Option<bool> {
        self.a20_change.take()
    }

    /// Takes a reset request.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset_request)
    }
}

impl Snapshot for Port92 {
    type State = Port92;

    fn save(&self) -> Port92 {
        self.clone()
    }

    fn restore(&mut self, state: &Port92) -> Result<(), StateError> {
        if state.value & !(P92_A20 | P92_RESET) != 0 {
            return Err(StateError::new("port92", "reserved bits set"));
        }
        *self = state.clone();
        Ok(())
    }
}

/// The POST code port (0x80): remembers the last code written, has no other effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostPort {
    /// Last code written.
    pub last: u8,
}

impl PostPort {
    /// A port that has seen no code yet (last code 0).
    pub fn new() -> PostPort {
        PostPort { last: 0 }
    }

    /// Port read: 0xFF, as QEMU (the port is write-only).
    pub fn read(&self) -> u8 {
        0xFF
    }

    /// Port write: records the code.
    pub fn write(&mut self, v: u8) {
        self.last = v;
    }

    /// The last POST code written.
    pub fn last_code(&self) -> u8 {
        self.last
    }
}

impl Snapshot for PostPort {
    type State = PostPort;

    fn save(&self) -> PostPort {
        self.clone()
    }

    fn restore(&mut self, state: &PostPort) -> Result<(), StateError> {
        *self = state.clone();
        Ok(())
    }
}

/// The debug console (port 0x402): bytes written go to a bounded buffer for the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugCon {
    /// Bytes not yet taken by the host.
    pub output: Vec<u8>,
    /// Bytes dropped because the buffer was full.
    pub dropped: u64,
}

impl DebugCon {
    /// An empty console.
    pub fn new() -> DebugCon {
        DebugCon {
            output: Vec::new(),
            dropped: 0,
        }
    }

    /// Port read: 0xE9, the value SeaBIOS expects from a debug console.
    pub fn read(&self) -> u8 {
        DEBUGCON_READBACK
    }

    /// Port write: one byte of output (dropped when the buffer is full).
    pub fn write(&mut self, v: u8) {
        if self.output.len() < DEBUGCON_CAP {
            self.output.push(v);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Takes the output written since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }
}

impl Snapshot for DebugCon {
    type State = DebugCon;

    fn save(&self) -> DebugCon {
        self.clone()
    }

    fn restore(&mut self, state: &DebugCon) -> Result<(), StateError> {
        if state.output.len() > DEBUGCON_CAP {
            return Err(StateError::new("debugcon", "output buffer too large"));
        }
        *self = state.clone();
        Ok(())
    }
}

/// QEMU's `isa-debug-exit` (port 0xF4): writing `v` asks the host to exit with status
/// `(v << 1) | 1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugExit {
    /// Exit status requested and not yet taken.
    pub request: Option<u32>,
}

impl DebugExit {
    /// A device with no request.
    pub fn new() -> DebugExit {
        DebugExit { request: None }
    }

    /// Port read: 0, as QEMU.
    pub fn read(&self) -> u8 {
        0
    }

    /// Port write of `v` (as wide as the guest's access).
    pub fn write(&mut self, v: u32) {
        self.request = Some(v.wrapping_shl(1) | 1);
    }

    /// Takes the requested exit status.
    pub fn take_exit_request(&mut self) -> Option<u32> {
        self.request.take()
    }
}

impl Snapshot for DebugExit {
    type State = DebugExit;

    fn save(&self) -> DebugExit {
        self.clone()
    }

    fn restore(&mut self, state: &DebugExit) -> Result<(), StateError> {
        if state.request.is_some_and(|s| s & 1 == 0) {
            return Err(StateError::new("debug-exit", "exit status must be odd"));
        }
        *self = state.clone();
        Ok(())
    }
}

crate::snapshot_tests!(port92_snapshot, Port92::new, |p: &mut Port92| p.write(0x03));
crate::snapshot_tests!(post_snapshot, PostPort::new, |p: &mut PostPort| p
    .write(0x42));
crate::snapshot_tests!(debugcon_snapshot, DebugCon::new, |d: &mut DebugCon| d
    .write(b'x'));
crate::snapshot_tests!(debug_exit_snapshot, DebugExit::new, |d: &mut DebugExit| d
    .write(1));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port92_a20_and_reset_pulse() {
        let mut p = Port92::new();
        assert_eq!(p.read(), 0x00);
        // SeaBIOS: read, OR in bit 1, write back.
        let v = p.read();
        p.write(v | P92_A20);
        assert_eq!(p.read(), P92_A20);
        assert_eq!(p.take_a20_change(), Some(true));
        assert_eq!(p.take_a20_change(), None);
        p.write(P92_A20); // no change
        assert_eq!(p.take_a20_change(), None);
        assert!(!p.take_reset_request());
        p.write(P92_A20 | P92_RESET);
        assert!(p.take_reset_request());
        assert_eq!(p.read(), P92_A20, "bit 0 reads as 0");
        p.write(P92_A20 | P92_RESET); // no new rising edge
        assert!(!p.take_reset_request());
        p.set_a20(false);
        assert_eq!(p.read(), 0);
    }

    #[test]
    fn post_port_remembers() {
        let mut p = PostPort::new();
        p.write(0x12);
        p.write(0x34);
        assert_eq!(p.last_code(), 0x34);
        assert_eq!(p.read(), 0xFF);
    }

    #[test]
    fn debugcon_buffer_bounded() {
        let mut d = DebugCon::new();
        assert_eq!(d.read(), 0xE9);
        for b in b"SeaBIOS" {
            d.write(*b);
        }
        assert_eq!(d.take_output(), b"SeaBIOS");
        assert!(d.take_output().is_empty());
        for _ in 0..DEBUGCON_CAP + 3 {
            d.write(b'.');
        }
        assert_eq!(d.take_output().len(), DEBUGCON_CAP);
        assert_eq!(d.dropped, 3);
    }

    #[test]
    fn debug_exit_status() {
        let mut d = DebugExit::new();
        assert_eq!(d.take_exit_request(), None);
        d.write(0x10);
        assert_eq!(d.take_exit_request(), Some(0x21));
        d.write(0);
        assert_eq!(d.take_exit_request(), Some(1));
        d.write(0x8000_0001);
        assert_eq!(d.take_exit_request(), Some(3));
    }

    #[test]
    fn restore_rejects_bad_states() {
        let mut p = Port92::new();
        assert!(p
            .restore(&Port92 {
                value: 0x80,
                ..Port92::new()
            })
            .is_err());
        let mut d = DebugCon::new();
        let big = DebugCon {
            output: vec![0; DEBUGCON_CAP + 1],
            dropped: 0,
        };
        assert!(d.restore(&big).is_err());
        let mut e = DebugExit::new();
        assert!(e.restore(&DebugExit { request: Some(2) }).is_err());
        assert_eq!(p, Port92::new());
        assert_eq!(e, DebugExit::new());
    }
}
