//! Intel 8042 PS/2 keyboard controller with a keyboard and a mouse (IntelliMouse wheel).
//!
//! Ports are **absolute**: 0x60 data, 0x64 status (read) / command (write). The keyboard
//! speaks scan code set 2 to the controller, which translates to set 1 when bit 6 of the
//! command byte is set, as on a PC. Host input arrives as PC/XT set-1 bytes
//! ([`I8042::key_event_set1`]) and mouse motion ([`I8042::mouse_event`]); all queues are
//! bounded. After the guest reads the data port the next byte is loaded only on the next
//! port access or at [`I8042::next_deadline`], so the board always sees IRQ1/IRQ12 drop
//! before they rise again (a fresh edge for the PIC).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{Snapshot, StateError, VirtTime};

/// Data port.
pub const PORT_DATA: u16 = 0x60;
/// Status (read) and command (write) port.
pub const PORT_STATUS: u16 = 0x64;

/// Status: output buffer full.
pub const STATUS_OBF: u8 = 0x01;
/// Status: system flag (self-test passed).
pub const STATUS_SYS: u8 = 0x04;
/// Status: last write was to the command port.
pub const STATUS_A2: u8 = 0x08;
/// Status: keyboard not inhibited.
pub const STATUS_UNLOCKED: u8 = 0x10;
/// Status: the output buffer holds mouse data.
pub const STATUS_AUX_OBF: u8 = 0x20;

/// Command byte: keyboard interrupt (IRQ1) enable.
pub const CB_KBD_INT: u8 = 0x01;
/// Command byte: mouse interrupt (IRQ12) enable.
pub const CB_AUX_INT: u8 = 0x02;
/// Command byte: system flag.
pub const CB_SYS: u8 = 0x04;
/// Command byte: keyboard interface disabled.
pub const CB_KBD_DISABLE: u8 = 0x10;
/// Command byte: mouse interface disabled.
pub const CB_AUX_DISABLE: u8 = 0x20;
/// Command byte: translate set 2 to set 1.
pub const CB_XLATE: u8 = 0x40;

/// Output port: system reset line (active low).
pub const OUT_RESET: u8 = 0x01;
/// Output port: A20 gate.
pub const OUT_A20: u8 = 0x02;

/// Controller command: read command byte (0x20-0x3F read internal RAM).
const CMD_READ_RAM: u8 = 0x20;
/// Controller command: write command byte (0x60-0x7F write internal RAM).
const CMD_WRITE_RAM: u8 = 0x60;
/// Disable the mouse interface.
const CMD_AUX_DISABLE: u8 = 0xA7;
/// Enable the mouse interface.
const CMD_AUX_ENABLE: u8 = 0xA8;
/// Mouse interface test.
const CMD_AUX_TEST: u8 = 0xA9;
/// Controller self-test.
const CMD_SELF_TEST: u8 = 0xAA;
/// Keyboard interface test.
const CMD_KBD_TEST: u8 = 0xAB;
/// Disable the keyboard interface.
const CMD_KBD_DISABLE: u8 = 0xAD;
/// Enable the keyboard interface.
const CMD_KBD_ENABLE: u8 = 0xAE;
/// Read input port.
const CMD_READ_INPUT: u8 = 0xC0;
/// Read output port.
const CMD_READ_OUTPUT: u8 = 0xD0;
/// Write output port.
const CMD_WRITE_OUTPUT: u8 = 0xD1;
/// Write keyboard output buffer.
const CMD_WRITE_KBD_OBUF: u8 = 0xD2;
/// Write mouse output buffer.
const CMD_WRITE_AUX_OBUF: u8 = 0xD3;
/// Send the next data byte to the mouse.
const CMD_WRITE_AUX: u8 = 0xD4;
/// Disable A20.
const CMD_A20_OFF: u8 = 0xDD;
/// Enable A20.
const CMD_A20_ON: u8 = 0xDF;
/// Read test inputs.
const CMD_READ_TEST: u8 = 0xE0;
/// Pulse output lines (0xF0-0xFF; a clear bit 0 pulses reset).
const CMD_PULSE: u8 = 0xF0;

/// Device reply: acknowledge.
const ACK: u8 = 0xFA;
/// Device reply: resend / error.
const RESEND: u8 = 0xFE;
/// Device reply: self-test passed (basic assurance test).
const BAT_OK: u8 = 0xAA;
/// Keyboard reply to echo.
const ECHO: u8 = 0xEE;
/// Set-2 break prefix.
const BREAK_PREFIX: u8 = 0xF0;

/// Bytes a device may hold for the controller.
pub const DEVICE_QUEUE_CAP: usize = 256;
/// Controller replies waiting for the output buffer.
const CTRL_QUEUE_CAP: usize = 16;
/// Delay before the next byte is loaded after a data-port read, when no port access comes.
pub const REFILL_NS: u64 = 1_000;

/// The 8042's set-2 to set-1 translation table (index: set-2 code, value: set-1 code).
const XLATE: [u8; 128] = [
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
];

/// Translates one set-2 byte (not F0) to set 1, as the controller does.
fn xlate(b: u8) -> u8 {
    match b {
        0x00..=0x7F => XLATE[usize::from(b)],
        0x83 => 0x41, // F7
        0x84 => 0x54, // SysRq
        _ => b,
    }
}

/// The inverse of the translation for set-1 make codes 0x00-0x7F.
const SET1_TO_SET2: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let s1 = XLATE[i];
        if s1 < 0x80 {
            t[s1 as usize] = i as u8;
        }
        i += 1;
    }
    t[0x41] = 0x83;
    t[0x54] = 0x84;
    t
};

/// Saved state of the keyboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyboardState {
    /// Bytes waiting for the controller.
    pub queue: Vec<u8>,
    /// Scanning enabled.
    pub scan_enabled: bool,
    /// Scan code set (1-3; set 3 is sent as set 2).
    pub set: u8,
    /// LED state (bit 0 scroll, 1 num, 2 caps).
    pub leds: u8,
    /// Typematic rate/delay byte.
    pub typematic: u8,
    /// Command waiting for its argument byte.
    pub expect: Option<u8>,
}

/// Saved state of the mouse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MouseState {
    /// Bytes waiting for the controller.
    pub queue: Vec<u8>,
    /// Data reporting enabled.
    pub enabled: bool,
    /// Remote (polled) mode.
    pub remote: bool,
    /// Wrap (echo) mode.
    pub wrap: bool,
    /// 2:1 scaling.
    pub scaling21: bool,
    /// Resolution code (0-3).
    pub resolution: u8,
    /// Sample rate.
    pub rate: u8,
    /// Device ID (0 standard, 3 wheel, 4 five-button wheel).
    pub id: u8,
    /// Last three sample rates set (wheel detection).
    pub rate_history: Vec<u8>,
    /// Command waiting for its argument byte.
    pub expect: Option<u8>,
    /// Buttons held (bit 0 left, 1 right, 2 middle, 3 side, 4 extra).
    pub buttons: u8,
    /// Buttons as last reported.
    pub sent_buttons: u8,
    /// Unreported motion, PS/2 orientation (y up).
    pub dx: i32,
    /// Unreported motion, PS/2 orientation (y up).
    pub dy: i32,
    /// Unreported wheel motion (positive = down).
    pub dz: i32,
}

/// Saved state of the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct I8042State {
    /// Command byte (internal RAM 0).
    pub command: u8,
    /// Internal RAM 1-31.
    pub ram: Vec<u8>,
    /// Output port.
    pub outport: u8,
    /// Last write was to the command port.
    pub a2: bool,
    /// Controller command waiting for its data byte.
    pub pending_cmd: Option<u8>,
    /// Output buffer: byte and whether it came from the mouse.
    pub obuf: Option<(u8, bool)>,
    /// The last byte read from the data port (stale reads repeat it).
    pub last_data: u8,
    /// A byte will be loaded at this time (after a data-port read).
    pub refill_at: Option<VirtTime>,
    /// Controller output waiting: byte and whether it goes out as mouse data.
    pub ctrl_queue: Vec<(u8, bool)>,
    /// A translated F0 prefix was consumed; the next byte gets bit 7.
    pub xlate_break: bool,
    /// Keyboard.
    pub kbd: KeyboardState,
    /// Mouse.
    pub mouse: MouseState,
    /// A20 change not yet taken by the board.
    pub a20_change: Option<bool>,
    /// Reset requested and not yet taken by the board.
    pub reset_request: bool,
}

fn push_bounded(q: &mut VecDeque<u8>, b: u8) {
    if q.len() < DEVICE_QUEUE_CAP {
        q.push_back(b);
    }
}

#[derive(Clone, Debug)]
struct Keyboard {
    s: KeyboardState,
    q: VecDeque<u8>,
}

impl Keyboard {
    fn new() -> Keyboard {
        Keyboard {
            s: KeyboardState {
                queue: Vec::new(),
                scan_enabled: true,
                set: 2,
                leds: 0,
                typematic: 0x2B,
                expect: None,
            },
            q: VecDeque::new(),
        }
    }

    fn defaults(&mut self) {
        self.s.set = 2;
        self.s.leds = 0;
        self.s.typematic = 0x2B;
        self.s.expect = None;
    }

    fn push(&mut self, b: u8) {
        push_bounded(&mut self.q, b);
    }

    fn write(&mut self, v: u8) {
        if let Some(cmd) = self.s.expect.take() {
            // Argument bytes have bit 7 clear; a byte with bit 7 set is a new command.
            if v & 0x80 == 0 {
                match cmd {
                    0xED => self.s.leds = v & 7,
                    0xF3 => self.s.typematic = v,
                    _ => match v {
                        0 => {
                            self.push(ACK);
                            self.push(self.s.set);
                            return;
                        }
                        1..=3 => self.s.set = v,
                        _ => {
                            self.push(RESEND);
                            return;
                        }
                    },
                }
                self.push(ACK);
                return;
            }
        }
        match v {
            0xED | 0xF3 | 0xF0 => {
                self.push(ACK);
                self.s.expect = Some(v);
            }
            0xEE => self.push(ECHO),
            0xF2 => {
                self.push(ACK);
                self.push(0xAB);
                self.push(0x83);
            }
            0xF4 => {
                self.s.scan_enabled = true;
                self.push(ACK);
            }
            0xF5 => {
                self.defaults();
                self.s.scan_enabled = false;
                self.push(ACK);
            }
            0xF6 => {
                self.defaults();
                self.s.scan_enabled = true;
                self.push(ACK);
            }
            0xF7..=0xFE => self.push(ACK),
            0xFF => {
                self.q.clear();
                self.defaults();
                self.s.scan_enabled = true;
                self.push(ACK);
                self.push(BAT_OK);
            }
            _ => self.push(RESEND),
        }
    }

    /// Queues a key event given as set-1 bytes, converted to the keyboard's set.
    fn key(&mut self, set1: &[u8]) {
        if !self.s.scan_enabled {
            return;
        }
        let mut out = Vec::with_capacity(set1.len() * 2);
        for &b in set1 {
            if self.s.set == 1 || b == 0xE0 || b == 0xE1 {
                out.push(b);
                continue;
            }
            let code = SET1_TO_SET2[usize::from(b & 0x7F)];
            if b & 0x80 != 0 {
                out.push(BREAK_PREFIX);
            }
            out.push(code);
        }
        // A whole event or nothing: never half a sequence.
        if self.q.len() + out.len() <= DEVICE_QUEUE_CAP {
            self.q.extend(out);
        }
    }
}

#[derive(Clone, Debug)]
struct Mouse {
    s: MouseState,
    q: VecDeque<u8>,
}

impl Mouse {
    fn new() -> Mouse {
        Mouse {
            s: MouseState {
                queue: Vec::new(),
                enabled: false,
                remote: false,
                wrap: false,
                scaling21: false,
                resolution: 2,
                rate: 100,
                id: 0,
                rate_history: Vec::new(),
                expect: None,
                buttons: 0,
                sent_buttons: 0,
                dx: 0,
                dy: 0,
                dz: 0,
            },
            q: VecDeque::new(),
        }
    }

    fn defaults(&mut self) {
        self.s.enabled = false;
        self.s.remote = false;
        self.s.scaling21 = false;
        self.s.resolution = 2;
        self.s.rate = 100;
        self.s.expect = None;
        self.s.dx = 0;
        self.s.dy = 0;
        self.s.dz = 0;
    }

    fn push(&mut self, b: u8) {
        push_bounded(&mut self.q, b);
    }

    fn packet_len(&self) -> usize {
        if self.s.id == 0 {
            3
        } else {
            4
        }
    }

    /// Queues one movement packet from the accumulated motion.
    fn send_packet(&mut self) {
        let dx = self.s.dx.clamp(-255, 255);
        let dy = self.s.dy.clamp(-255, 255);
        let b = self.s.buttons;
        let mut b0 = 0x08 | (b & 7);
        if dx < 0 {
            b0 |= 0x10;
        }
        if dy < 0 {
            b0 |= 0x20;
        }
        self.push(b0);
        self.push(dx as u8);
        self.push(dy as u8);
        self.s.dx -= dx;
        self.s.dy -= dy;
        match self.s.id {
            3 => {
                let dz = self.s.dz.clamp(-127, 127);
                self.push(dz as u8);
                self.s.dz -= dz;
            }
            4 => {
                let dz = self.s.dz.clamp(-8, 7);
                self.push((dz as u8 & 0x0F) | (b & 0x18) << 1);
                self.s.dz -= dz;
            }
            _ => self.s.dz = 0,
        }
        self.s.sent_buttons = b;
    }

    fn flush_stream(&mut self) {
        if !self.s.enabled || self.s.remote {
            return;
        }
        for _ in 0..8 {
            let moved = self.s.dx != 0 || self.s.dy != 0 || self.s.dz != 0;
            if !moved && self.s.buttons == self.s.sent_buttons {
                break;
            }
            if self.q.len() + self.packet_len() > DEVICE_QUEUE_CAP {
                break;
            }
            self.send_packet();
        }
    }

    fn write(&mut self, v: u8) {
        if self.s.wrap && v != 0xEC && v != 0xFF {
            self.push(v);
            return;
        }
        if let Some(cmd) = self.s.expect.take() {
            if cmd == 0xF3 {
                self.s.rate = v;
                self.s.rate_history.push(v);
                if self.s.rate_history.len() > 3 {
                    self.s.rate_history.remove(0);
                }
                match self.s.rate_history.as_slice() {
                    [200, 100, 80] if self.s.id == 0 => self.s.id = 3,
                    [200, 200, 80] if self.s.id == 3 => self.s.id = 4,
                    _ => {}
                }
            } else {
                self.s.resolution = v & 3;
            }
            self.push(ACK);
            return;
        }
        match v {
            0xE6 => {
                self.s.scaling21 = false;
                self.push(ACK);
            }
            0xE7 => {
                self.s.scaling21 = true;
                self.push(ACK);
            }
            0xE8 | 0xF3 => {
                self.s.expect = Some(v);
                self.push(ACK);
            }
            0xE9 => {
                self.push(ACK);
                let b = self.s.buttons;
                let status = u8::from(self.s.remote) << 6
                    | u8::from(self.s.enabled) << 5
                    | u8::from(self.s.scaling21) << 4
                    | (b & 1) << 2
                    | (b & 4) >> 1
                    | (b & 2) >> 1;
                self.push(status);
                self.push(self.s.resolution);
                self.push(self.s.rate);
            }
            0xEA => {
                self.s.remote = false;
                self.push(ACK);
            }
            0xF0 => {
                self.s.remote = true;
                self.push(ACK);
            }
            0xEB => {
                self.push(ACK);
                self.send_packet();
            }
            0xEC => {
                self.s.wrap = false;
                self.push(ACK);
            }
            0xEE => {
                self.s.wrap = true;
                self.push(ACK);
            }
            0xF2 => {
                self.push(ACK);
                self.push(self.s.id);
            }
            0xF4 => {
                self.s.enabled = true;
                self.push(ACK);
            }
            0xF5 => {
                self.s.enabled = false;
                self.push(ACK);
            }
            0xF6 => {
                self.defaults();
                self.push(ACK);
            }
            0xFF => {
                self.q.clear();
                self.defaults();
                self.s.wrap = false;
                self.s.id = 0;
                self.s.rate_history.clear();
                self.push(ACK);
                self.push(BAT_OK);
                self.push(0x00);
            }
            _ => self.push(RESEND),
        }
    }
}

/// The keyboard controller with its keyboard and mouse.
#[derive(Clone, Debug)]
pub struct I8042 {
    s: I8042State,
    ctrl: VecDeque<(u8, bool)>,
    kbd: Keyboard,
    mouse: Mouse,
}

impl I8042 {
    /// A controller at power-on: keyboard and mouse IRQs enabled, no translation, A20 on.
    pub fn new() -> I8042 {
        I8042 {
            s: I8042State {
                command: CB_KBD_INT | CB_AUX_INT,
                ram: vec![0; 31],
                outport: OUT_RESET | OUT_A20,
                a2: false,
                pending_cmd: None,
                obuf: None,
                last_data: 0,
                refill_at: None,
                ctrl_queue: Vec::new(),
                xlate_break: false,
                kbd: Keyboard::new().s,
                mouse: Mouse::new().s,
                a20_change: None,
                reset_request: false,
            },
            ctrl: VecDeque::new(),
            kbd: Keyboard::new(),
            mouse: Mouse::new(),
        }
    }

    fn ctrl_reply(&mut self, b: u8) {
        if self.ctrl.len() < CTRL_QUEUE_CAP {
            self.ctrl.push_back((b, false));
        }
    }

    /// Loads the next byte into the output buffer if it is empty.
    fn refill(&mut self) {
        self.s.refill_at = None;
        if self.s.obuf.is_some() {
            return;
        }
        if let Some(entry) = self.ctrl.pop_front() {
            self.s.obuf = Some(entry);
            return;
        }
        if self.s.command & CB_KBD_DISABLE == 0 {
            while let Some(b) = self.kbd.q.pop_front() {
                if self.s.command & CB_XLATE == 0 {
                    self.s.obuf = Some((b, false));
                    return;
                }
                if b == BREAK_PREFIX {
                    self.s.xlate_break = true;
                    continue;
                }
                let mut t = xlate(b);
                if self.s.xlate_break {
                    t |= 0x80;
                    self.s.xlate_break = false;
                }
                self.s.obuf = Some((t, false));
                return;
            }
        }
        if self.s.command & CB_AUX_DISABLE == 0 {
            if let Some(b) = self.mouse.q.pop_front() {
                self.s.obuf = Some((b, true));
            }
        }
    }

    /// Refills now unless a refill is already scheduled after a read.
    fn refill_if_idle(&mut self) {
        if self.s.refill_at.is_none() {
            self.refill();
        }
    }

    fn status(&self) -> u8 {
        let mut v = STATUS_UNLOCKED;
        if let Some((_, aux)) = self.s.obuf {
            v |= STATUS_OBF;
            if aux {
                v |= STATUS_AUX_OBF;
            }
        }
        if self.s.command & CB_SYS != 0 {
            v |= STATUS_SYS;
        }
        if self.s.a2 {
            v |= STATUS_A2;
        }
        v
    }

    fn write_outport(&mut self, v: u8) {
        if (v ^ self.s.outport) & OUT_A20 != 0 {
            self.s.a20_change = Some(v & OUT_A20 != 0);
        }
        if v & OUT_RESET == 0 {
            self.s.reset_request = true;
        }
        self.s.outport = v | OUT_RESET;
    }

    /// IRQ1 level: keyboard (or controller) data in the output buffer, IRQ enabled.
    pub fn irq1_level(&self) -> bool {
        matches!(self.s.obuf, Some((_, false))) && self.s.command & CB_KBD_INT != 0
    }

    /// IRQ12 level: mouse data in the output buffer, IRQ enabled.
    pub fn irq12_level(&self) -> bool {
        matches!(self.s.obuf, Some((_, true))) && self.s.command & CB_AUX_INT != 0
    }

    /// Takes a change of the A20 line requested through the output port.
    pub fn take_a20_change(&mut self) -> Option<bool> {
        self.s.a20_change.take()
    }

    /// Takes a system reset request (output port bit 0 pulsed low).
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.s.reset_request)
    }

    /// The output buffer's next load, scheduled after a data-port read.
    pub fn next_deadline(&self) -> Option<VirtTime> {
        self.s.refill_at
    }

    /// Performs a scheduled load of the output buffer once `now` reaches it.
    pub fn advance(&mut self, now: VirtTime) {
        if self.s.refill_at.is_some_and(|t| now >= t) {
            self.refill();
        }
    }

    /// Port read (absolute port). Other ports read 0xFF.
    pub fn read(&mut self, port: u16, now: VirtTime) -> u8 {
        match port {
            PORT_DATA => {
                self.refill();
                match self.s.obuf.take() {
                    Some((b, _)) => {
                        self.s.last_data = b;
                        self.s.refill_at = Some(now.saturating_add(REFILL_NS));
                        b
                    }
                    None => self.s.last_data,
                }
            }
            PORT_STATUS => {
                // A guest polling the status port gets the next byte at once.
                self.refill();
                self.status()
            }
            _ => 0xFF,
        }
    }

    /// Port write (absolute port). Other ports are ignored.
    pub fn write(&mut self, port: u16, v: u8, _now: VirtTime) {
        match port {
            PORT_DATA => {
                self.s.a2 = false;
                match self.s.pending_cmd.take() {
                    Some(c @ CMD_WRITE_RAM..=0x7F) => {
                        let i = usize::from(c - CMD_WRITE_RAM);
                        if i == 0 {
                            self.s.command = v;
                        } else if let Some(r) = self.s.ram.get_mut(i - 1) {
                            *r = v;
                        }
                    }
                    Some(CMD_WRITE_OUTPUT) => self.write_outport(v),
                    Some(CMD_WRITE_KBD_OBUF) => {
                        if self.ctrl.len() < CTRL_QUEUE_CAP {
                            self.ctrl.push_back((v, false));
                        }
                    }
                    Some(CMD_WRITE_AUX_OBUF) => {
                        if self.ctrl.len() < CTRL_QUEUE_CAP {
                            self.ctrl.push_back((v, true));
                        }
                    }
                    Some(CMD_WRITE_AUX) => self.mouse.write(v),
                    _ => self.kbd.write(v),
                }
            }
            PORT_STATUS => {
                self.s.a2 = true;
                self.s.pending_cmd = None;
                match v {
                    CMD_READ_RAM => self.ctrl_reply(self.s.command),
                    0x21..=0x3F => {
                        let b = self.s.ram.get(usize::from(v - 0x21)).copied().unwrap_or(0);
                        self.ctrl_reply(b);
                    }
                    CMD_WRITE_RAM..=0x7F
                    | CMD_WRITE_OUTPUT
                    | CMD_WRITE_KBD_OBUF
                    | CMD_WRITE_AUX_OBUF
                    | CMD_WRITE_AUX => self.s.pending_cmd = Some(v),
                    CMD_AUX_DISABLE => self.s.command |= CB_AUX_DISABLE,
                    CMD_AUX_ENABLE => self.s.command &= !CB_AUX_DISABLE,
                    CMD_AUX_TEST | CMD_KBD_TEST => self.ctrl_reply(0x00),
                    CMD_SELF_TEST => {
                        self.s.command |= CB_SYS;
                        self.ctrl_reply(0x55);
                    }
                    CMD_KBD_DISABLE => self.s.command |= CB_KBD_DISABLE,
                    CMD_KBD_ENABLE => self.s.command &= !CB_KBD_DISABLE,
                    CMD_READ_INPUT => self.ctrl_reply(0x80),
                    CMD_READ_OUTPUT => {
                        let mut o = self.s.outport & !0x30;
                        match self.s.obuf {
                            Some((_, false)) => o |= 0x10,
                            Some((_, true)) => o |= 0x20,
                            None => {}
                        }
                        self.ctrl_reply(o);
                    }
                    CMD_A20_OFF => self.write_outport(self.s.outport & !OUT_A20),
                    CMD_A20_ON => self.write_outport(self.s.outport | OUT_A20),
                    CMD_READ_TEST => self.ctrl_reply(0x00),
                    CMD_PULSE..=0xFF if v & OUT_RESET == 0 => self.s.reset_request = true,
                    _ => {}
                }
            }
            _ => return,
        }
        self.refill_if_idle();
    }

    /// A key event from the host as PC/XT set-1 bytes (0xE0/0xE1 prefixes, break = make |
    /// 0x80), as QEMU's `sendkey` produces. Dropped while the keyboard does not scan or its
    /// queue is full.
    pub fn key_event_set1(&mut self, bytes: &[u8]) {
        self.kbd.key(bytes);
        self.refill_if_idle();
    }

    /// Mouse input from the host: relative motion (`dy` > 0 is downwards on screen, `dz` > 0
    /// is the wheel turned towards the user) and the buttons held (bit 0 left, 1 right,
    /// 2 middle, 3 side, 4 extra).
    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        let m = &mut self.mouse.s;
        if !m.enabled && !m.remote {
            return;
        }
        m.dx = m.dx.saturating_add(dx).clamp(-0x10000, 0x10000);
        m.dy = m.dy.saturating_sub(dy).clamp(-0x10000, 0x10000);
        m.dz = m.dz.saturating_add(dz).clamp(-0x10000, 0x10000);
        m.buttons = buttons & 0x1F;
        self.mouse.flush_stream();
        self.refill_if_idle();
    }

    /// Keyboard LED state set by the guest (bit 0 scroll, 1 num, 2 caps lock).
    pub fn leds(&self) -> u8 {
        self.kbd.s.leds
    }

    /// Whether the guest enabled mouse data reporting.
    pub fn mouse_enabled(&self) -> bool {
        self.mouse.s.enabled
    }
}

impl Snapshot for I8042 {
    type State = I8042State;

    fn save(&self) -> I8042State {
        let mut s = self.s.clone();
        s.ctrl_queue = self.ctrl.iter().copied().collect();
        s.kbd = KeyboardState {
            queue: self.kbd.q.iter().copied().collect(),
            ..self.kbd.s.clone()
        };
        s.mouse = MouseState {
            queue: self.mouse.q.iter().copied().collect(),
            ..self.mouse.s.clone()
        };
        s
    }

    fn restore(&mut self, state: &I8042State) -> Result<(), StateError> {
        let bad = |r: &str| Err(StateError::new("i8042", r));
        if state.ram.len() != 31 {
            return bad("internal RAM must be 31 bytes");
        }
        if state.ctrl_queue.len() > CTRL_QUEUE_CAP
            || state.kbd.queue.len() > DEVICE_QUEUE_CAP
            || state.mouse.queue.len() > DEVICE_QUEUE_CAP
        {
            return bad("queue too long");
        }
        if let Some(c) = state.pending_cmd {
            if !matches!(c, CMD_WRITE_RAM..=0x7F | CMD_WRITE_OUTPUT..=CMD_WRITE_AUX) {
                return bad("invalid pending command");
            }
        }
        if !(1..=3).contains(&state.kbd.set) {
            return bad("invalid scan code set");
        }
        if !matches!(state.kbd.expect, None | Some(0xED | 0xF3 | 0xF0)) {
            return bad("invalid keyboard command state");
        }
        let m = &state.mouse;
        if m.resolution > 3 || !matches!(m.id, 0 | 3 | 4) || m.rate_history.len() > 3 {
            return bad("invalid mouse settings");
        }
        if !matches!(m.expect, None | Some(0xE8 | 0xF3)) {
            return bad("invalid mouse command state");
        }
        let lim = -0x10000..=0x10000;
        if !lim.contains(&m.dx) || !lim.contains(&m.dy) || !lim.contains(&m.dz) {
            return bad("mouse motion out of range");
        }
        self.s = state.clone();
        self.ctrl = state.ctrl_queue.iter().copied().collect();
        self.kbd = Keyboard {
            s: state.kbd.clone(),
            q: state.kbd.queue.iter().copied().collect(),
        };
        self.mouse = Mouse {
            s: state.mouse.clone(),
            q: state.mouse.queue.iter().copied().collect(),
        };
        Ok(())
    }
}

crate::snapshot_tests!(i8042_snapshot, I8042::new, |k: &mut I8042| {
    k.write(0x64, 0x60, 0);
    k.write(0x60, 0x47, 0);
    k.key_event_set1(&[0x1E, 0x9E]);
    k.write(0x64, 0xD4, 0);
    k.write(0x60, 0xF4, 0);
    k.mouse_event(5, -3, 1, 1);
    let _ = k.read(0x60, 10);
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads everything the guest can read now (polling status like SeaBIOS).
    fn drain(k: &mut I8042) -> Vec<u8> {
        let mut out = Vec::new();
        let mut t = 0;
        while k.read(PORT_STATUS, t) & STATUS_OBF != 0 && out.len() < 1000 {
            out.push(k.read(PORT_DATA, t));
            t += 10;
        }
        out
    }

    fn cmd(k: &mut I8042, c: u8) {
        k.write(PORT_STATUS, c, 0);
    }

    fn data(k: &mut I8042, v: u8) {
        k.write(PORT_DATA, v, 0);
    }

    #[test]
    fn translation_table_round_trips_set1() {
        for s1 in 1u8..0x80 {
            let s2 = SET1_TO_SET2[usize::from(s1)];
            if s2 != 0 {
                assert_eq!(xlate(s2), s1, "set-1 {s1:#x} via set-2 {s2:#x}");
            }
        }
        assert_eq!(SET1_TO_SET2[0x01], 0x76); // Esc
        assert_eq!(SET1_TO_SET2[0x1E], 0x1C); // A
        assert_eq!(SET1_TO_SET2[0x41], 0x83); // F7
    }

    #[test]
    fn seabios_init_sequence() {
        let mut k = I8042::new();
        cmd(&mut k, 0xAD);
        cmd(&mut k, 0xA7);
        assert!(drain(&mut k).is_empty());
        cmd(&mut k, 0xAA);
        assert_eq!(drain(&mut k), [0x55]);
        assert_ne!(k.read(PORT_STATUS, 0) & STATUS_SYS, 0);
        cmd(&mut k, 0xAB);
        assert_eq!(drain(&mut k), [0x00]);
        // CTR 0x30: keyboard and mouse interfaces off, IRQs off.
        cmd(&mut k, 0x60);
        data(&mut k, 0x30);
        data(&mut k, 0xFF);
        assert!(drain(&mut k).is_empty(), "keyboard interface disabled");
        cmd(&mut k, 0x60);
        data(&mut k, 0x20);
        assert_eq!(drain(&mut k), [0xFA, 0xAA]);
        data(&mut k, 0xF5);
        assert_eq!(drain(&mut k), [0xFA]);
        data(&mut k, 0xF0);
        data(&mut k, 0x02);
        assert_eq!(drain(&mut k), [0xFA, 0xFA]);
        data(&mut k, 0xF4);
        assert_eq!(drain(&mut k), [0xFA]);
        cmd(&mut k, 0x60);
        data(&mut k, 0x61);
        cmd(&mut k, 0x20);
        assert_eq!(drain(&mut k), [0x61]);
        // Esc arrives as set 1 with IRQ1.
        k.key_event_set1(&[0x01, 0x81]);
        assert!(k.irq1_level());
        assert_eq!(k.read(PORT_DATA, 0), 0x01);
        assert!(!k.irq1_level(), "IRQ1 drops after the read");
        k.advance(REFILL_NS - 1);
        assert!(!k.irq1_level());
        assert_eq!(k.next_deadline(), Some(REFILL_NS));
        k.advance(REFILL_NS);
        assert!(k.irq1_level(), "next byte loaded at the deadline");
        assert_eq!(k.read(PORT_DATA, REFILL_NS), 0x81);
    }

    #[test]
    fn untranslated_set2_and_extended_keys() {
        let mut k = I8042::new();
        // Right Ctrl make/break, then Pause.
        k.key_event_set1(&[0xE0, 0x1D, 0xE0, 0x9D]);
        assert_eq!(drain(&mut k), [0xE0, 0x14, 0xE0, 0xF0, 0x14]);
        k.key_event_set1(&[0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5]);
        assert_eq!(
            drain(&mut k),
            [0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77]
        );
        // With translation the guest sees the original set-1 bytes.
        cmd(&mut k, 0x60);
        data(&mut k, 0x61);
        let keys = [0xE0, 0x48, 0xE0, 0xC8, 0x2A, 0x1E, 0x9E, 0xAA, 0x41, 0xC1];
        k.key_event_set1(&keys);
        assert_eq!(drain(&mut k), keys);
    }

    #[test]
    fn keyboard_commands() {
        let mut k = I8042::new();
        data(&mut k, 0xF2);
        assert_eq!(drain(&mut k), [0xFA, 0xAB, 0x83]);
        cmd(&mut k, 0x60);
        data(&mut k, 0x43); // translation on: the ID reads AB 41
        data(&mut k, 0xF2);
        assert_eq!(drain(&mut k), [0xFA, 0xAB, 0x41]);
        cmd(&mut k, 0x60);
        data(&mut k, 0x03);
        data(&mut k, 0xED);
        data(&mut k, 0x05);
        assert_eq!(drain(&mut k), [0xFA, 0xFA]);
        assert_eq!(k.leds(), 5);
        data(&mut k, 0xF3);
        data(&mut k, 0x20);
        data(&mut k, 0xEE);
        assert_eq!(drain(&mut k), [0xFA, 0xFA, 0xEE]);
        data(&mut k, 0xF0);
        data(&mut k, 0x00);
        assert_eq!(drain(&mut k), [0xFA, 0xFA, 0x02]);
        data(&mut k, 0xF0);
        data(&mut k, 0x01);
        drain(&mut k);
        k.key_event_set1(&[0x10, 0x90]);
        assert_eq!(drain(&mut k), [0x10, 0x90], "set 1 is sent as is");
        data(&mut k, 0xF5);
        drain(&mut k);
        k.key_event_set1(&[0x10]);
        assert!(drain(&mut k).is_empty(), "no scanning after F5");
        data(&mut k, 0x12);
        assert_eq!(drain(&mut k), [0xFE]);
    }

    #[test]
    fn mouse_reset_and_wheel_detection() {
        let mut k = I8042::new();
        let send = |k: &mut I8042, v: u8| {
            k.write(PORT_STATUS, 0xD4, 0);
            k.write(PORT_DATA, v, 0);
        };
        send(&mut k, 0xFF);
        assert!(k.irq12_level());
        assert_ne!(k.read(PORT_STATUS, 0) & STATUS_AUX_OBF, 0);
        assert_eq!(drain(&mut k), [0xFA, 0xAA, 0x00]);
        send(&mut k, 0xF2);
        assert_eq!(drain(&mut k), [0xFA, 0x00]);
        for r in [200, 100, 80] {
            send(&mut k, 0xF3);
            send(&mut k, r);
        }
        send(&mut k, 0xF2);
        assert_eq!(drain(&mut k)[6..], [0xFA, 0x03]);
        send(&mut k, 0xE8);
        send(&mut k, 0x03);
        send(&mut k, 0xE9);
        assert_eq!(drain(&mut k), [0xFA, 0xFA, 0xFA, 0x00, 0x03, 80]);
        // Disabled: no packets.
        k.mouse_event(3, 3, 0, 0);
        assert!(drain(&mut k).is_empty());
        send(&mut k, 0xF4);
        drain(&mut k);
        k.mouse_event(5, 2, 1, 1);
        assert_eq!(drain(&mut k), [0x08 | 0x20 | 0x01, 5, 0xFE, 0x01]);
        // Large motion is split into several packets.
        k.mouse_event(-600, 0, 0, 0);
        let d = drain(&mut k);
        assert_eq!(d.len(), 12);
        assert_eq!(d[0] & 0x10, 0x10);
        let total: i32 = d.chunks(4).map(|p| i32::from(p[1]) - 256).sum();
        assert_eq!(total, -600);
    }

    #[test]
    fn mouse_interface_disable_holds_data() {
        let mut k = I8042::new();
        k.write(PORT_STATUS, 0xD4, 0);
        k.write(PORT_DATA, 0xF4, 0);
        drain(&mut k);
        cmd(&mut k, 0xA7);
        k.mouse_event(1, 0, 0, 0);
        assert!(drain(&mut k).is_empty());
        cmd(&mut k, 0xA8);
        assert_eq!(drain(&mut k), [0x08, 1, 0]);
        cmd(&mut k, 0xA9);
        assert_eq!(drain(&mut k), [0x00]);
    }

    #[test]
    fn output_port_a20_and_reset() {
        let mut k = I8042::new();
        cmd(&mut k, 0xD0);
        assert_eq!(drain(&mut k), [0x03]);
        cmd(&mut k, 0xD1);
        data(&mut k, 0x01); // A20 off
        assert_eq!(k.take_a20_change(), Some(false));
        assert_eq!(k.take_a20_change(), None);
        assert!(!k.take_reset_request());
        cmd(&mut k, 0xDF);
        assert_eq!(k.take_a20_change(), Some(true));
        cmd(&mut k, 0xDD);
        assert_eq!(k.take_a20_change(), Some(false));
        cmd(&mut k, 0xD1);
        data(&mut k, 0x02); // bit 0 low: reset
        assert!(k.take_reset_request());
        assert_eq!(k.take_a20_change(), Some(true));
        cmd(&mut k, 0xFE);
        assert!(k.take_reset_request());
        assert!(!k.take_reset_request());
        cmd(&mut k, 0xFF);
        assert!(!k.take_reset_request());
    }

    #[test]
    fn write_output_buffers_and_status_bits() {
        let mut k = I8042::new();
        cmd(&mut k, 0xD2);
        assert_ne!(k.read(PORT_STATUS, 0) & STATUS_A2, 0);
        data(&mut k, 0x42);
        assert_eq!(
            k.read(PORT_STATUS, 0) & (STATUS_A2 | STATUS_OBF),
            STATUS_OBF
        );
        assert!(k.irq1_level());
        assert_eq!(drain(&mut k), [0x42]);
        cmd(&mut k, 0xD3);
        data(&mut k, 0x43);
        assert!(k.irq12_level());
        assert_eq!(drain(&mut k), [0x43]);
        // IRQ enables gate the levels.
        cmd(&mut k, 0x60);
        data(&mut k, 0x00);
        cmd(&mut k, 0xD2);
        data(&mut k, 0x44);
        assert!(!k.irq1_level());
        assert_eq!(k.read(PORT_DATA, 0), 0x44);
        assert_eq!(k.read(PORT_DATA, 0), 0x44, "stale read repeats");
    }

    #[test]
    fn host_input_is_bounded() {
        let mut k = I8042::new();
        for _ in 0..1000 {
            k.key_event_set1(&[0x1E]);
        }
        assert_eq!(drain(&mut k).len(), DEVICE_QUEUE_CAP + 1);
    }

    #[test]
    fn restore_rejects_bad_states() {
        let mut k = I8042::new();
        let good = k.save();
        let mut bad = good.clone();
        bad.kbd.queue = vec![0; DEVICE_QUEUE_CAP + 1];
        assert!(k.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.kbd.set = 0;
        assert!(k.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.pending_cmd = Some(0xAA);
        assert!(k.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.mouse.id = 7;
        assert!(k.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.ram.pop();
        assert!(k.restore(&bad).is_err());
        assert_eq!(k.save(), good);
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
        let mut k = I8042::new();
        let mut r = 5u64;
        let mut now = 0;
        for _ in 0..100_000 {
            now += lcg(&mut r) % 3_000;
            match lcg(&mut r) % 6 {
                0 => k.write(PORT_STATUS, lcg(&mut r) as u8, now),
                1 => k.write(PORT_DATA, lcg(&mut r) as u8, now),
                2 => {
                    k.read(PORT_DATA, now);
                }
                3 => k.key_event_set1(&[lcg(&mut r) as u8, lcg(&mut r) as u8]),
                4 => k.mouse_event(lcg(&mut r) as i32, lcg(&mut r) as i32, 1, lcg(&mut r) as u8),
                _ => k.advance(now),
            }
            k.take_reset_request();
            k.take_a20_change();
        }
    }
}
