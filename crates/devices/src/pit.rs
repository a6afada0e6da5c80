//! Intel 8254 programmable interval timer at 1.193182 MHz on the virtual clock, with the
//! port 0x61 bits it drives (gate 2, speaker data, refresh toggle, OUT2).
//!
//! Everything is computed from the virtual time passed in: a counter's value and OUT level are
//! functions of the ticks elapsed since its count was loaded, so reads at any `now` are exact.
//! A written count is loaded on the first clock edge after the write, as on hardware (so in
//! mode 0 OUT rises N+1 clock edges after the count is written). IRQ0 is reported to the board
//! as a number of OUT0 rising edges by [`Pit::advance`]; [`Pit::next_deadline`] gives the time
//! of the next one. A count rewritten while modes 2/3 are counting takes effect at the end
//! of the current period (the 8254 switches mode 3 at the end of a half-cycle; this model
//! waits for the period). Ports given to [`Pit::read`]/[`Pit::write`] are **absolute**
//! (0x40-0x43 and 0x61).

use serde::{Deserialize, Serialize};

use crate::{Snapshot, StateError, VirtTime, NS_PER_SEC};

/// Input clock of the counters, in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// Counter 0 data port (the others follow).
pub const PORT_COUNTER0: u16 = 0x40;
/// Counter 2 data port.
pub const PORT_COUNTER2: u16 = 0x42;
/// Control word port (mode, latch, read-back).
pub const PORT_CONTROL: u16 = 0x43;
/// System control port B (speaker gate and data, refresh toggle, OUT2).
pub const PORT_61: u16 = 0x61;

/// Port 0x61 bit 0: gate of counter 2.
pub const P61_GATE2: u8 = 0x01;
/// Port 0x61 bit 1: speaker data enable.
pub const P61_SPEAKER: u8 = 0x02;
/// Port 0x61 bit 4: toggles with every DRAM refresh cycle (read only).
pub const P61_REFRESH: u8 = 0x10;
/// Port 0x61 bit 5: counter 2 OUT (read only).
pub const P61_OUT2: u8 = 0x20;
/// Period of the refresh toggle in ns (about 15 µs, as on PCs).
const REFRESH_NS: u64 = 15_085;

/// Control word: counter select bits 7-6 equal to 3 mean read-back.
const CW_READBACK: u8 = 3;
/// Read-back: do NOT latch the count (bit 5, active low).
const RB_NO_COUNT: u8 = 0x20;
/// Read-back: do NOT latch the status (bit 4, active low).
const RB_NO_STATUS: u8 = 0x10;
/// Access mode: low byte only.
const ACCESS_LO: u8 = 1;
/// Access mode: high byte only.
const ACCESS_HI: u8 = 2;
/// Access mode: low byte then high byte.
const ACCESS_WORD: u8 = 3;

/// Converts virtual time to the index of the last clock edge at or before it.
fn ticks_at(now: VirtTime) -> u64 {
    (u128::from(now) * u128::from(PIT_HZ) / u128::from(NS_PER_SEC)) as u64
}

/// The virtual time of clock edge `tick` (first nanosecond at which it has happened).
fn time_of_tick(tick: u64) -> VirtTime {
    let ns = (u128::from(tick) * u128::from(NS_PER_SEC)).div_ceil(u128::from(PIT_HZ));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn from_bcd(raw: u16) -> u32 {
    let mut v = 0u32;
    for shift in [12, 8, 4, 0] {
        v = v * 10 + u32::from((raw >> shift) & 0xF);
    }
    v
}

fn to_bcd(v: u32) -> u16 {
    let v = v % 10_000;
    ((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10)) as u16
}

/// Saved state of one counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Mode bits as written in the control word (0-7; 6 and 7 act as 2 and 3).
    pub mode_bits: u8,
    /// Access mode: 1 low byte, 2 high byte, 3 low then high.
    pub access: u8,
    /// BCD counting.
    pub bcd: bool,
    /// Gate input level.
    pub gate: bool,
    /// Reload value in counts (1..=65536, or 1..=10000 in BCD).
    pub count: u32,
    /// Clock edge at which `count` was loaded into the counting element.
    pub load_tick: u64,
    /// Counting has started (a count was loaded, or a trigger seen in modes 1 and 5).
    pub armed: bool,
    /// Counting suspended by the gate, with the ticks elapsed when it stopped.
    pub frozen: Option<u64>,
    /// A count written while counting in modes 2/3: (count, clock edge where it loads).
    pub next: Option<(u32, u64)>,
    /// Low byte of a two-byte count write, waiting for the high byte.
    pub write_low: Option<u8>,
    /// The next unlatched read returns the high byte (access mode 3).
    pub read_hi: bool,
    /// Latched count and whether its high byte is next.
    pub latch: Option<(u16, bool)>,
    /// Latched status byte.
    pub status: Option<u8>,
}

impl Counter {
    fn power_on(gate: bool) -> Counter {
        Counter {
            mode_bits: 3,
            access: ACCESS_WORD,
            bcd: false,
            gate,
            count: 0x1_0000,
            load_tick: 1,
            armed: true,
            frozen: if gate { None } else { Some(0) },
            next: None,
            write_low: None,
            read_hi: false,
            latch: None,
            status: None,
        }
    }

    fn mode(&self) -> u8 {
        if self.mode_bits >= 6 {
            self.mode_bits - 4
        } else {
            self.mode_bits
        }
    }

    fn modulus(&self) -> i64 {
        if self.bcd {
            10_000
        } else {
            0x1_0000
        }
    }

    /// Applies a pending modes 2/3 reload once its clock edge has passed.
    fn settle(&mut self, t: u64) {
        if let Some((n, at)) = self.next {
            if t >= at {
                self.count = n;
                self.load_tick = at;
                self.next = None;
            }
        }
    }

    /// Ticks elapsed since the load (0 before the load edge, or the frozen value).
    fn elapsed(&self, t: u64) -> u64 {
        self.frozen
            .unwrap_or_else(|| t.saturating_sub(self.load_tick))
    }

    /// Counter value at clock edge `t` (after `settle`).
    fn value(&self, t: u64) -> u32 {
        let n = self.count;
        if !self.armed {
            return n;
        }
        let d = self.elapsed(t);
        match self.mode() {
            2 => n - (d % u64::from(n)) as u32,
            3 => {
                let p = (d % u64::from(n)) as u32;
                if n & 1 == 0 {
                    let half = n / 2;
                    n - 2 * (p % half)
                } else {
                    // Odd counts (8254 data sheet): N-1 is loaded and counted down by two;
                    // OUT falls one clock after it expires (so the high half reads N-1 ...
                    // 2, 0) and rises as it expires in the low half (N-1 ... 2).
                    let high = n.div_ceil(2);
                    let q = if p < high { p } else { p - high };
                    n - 1 - 2 * q
                }
            }
            _ => (i64::from(n) - (d % self.modulus() as u64) as i64).rem_euclid(self.modulus())
                as u32,
        }
    }

    /// OUT level at clock edge `t` (after `settle`).
    fn out(&self, t: u64) -> bool {
        if !self.armed {
            return self.mode() != 0;
        }
        let n = u64::from(self.count);
        let d = self.elapsed(t);
        match self.mode() {
            0 | 1 => d >= n,
            2 => d % n != n - 1,
            3 => d % n < n.div_ceil(2),
            _ => d != n,
        }
    }

    /// Rising edges of OUT at elapsed ticks 1..=d (the cumulative count).
    fn edges_upto(&self, d: u64) -> u64 {
        let n = u64::from(self.count);
        match self.mode() {
            0 | 1 => u64::from(d >= n),
            2 | 3 if n >= 2 => d / n,
            2 | 3 => 0,
            _ => u64::from(d > n),
        }
    }

    /// Rising edges of OUT at clock edges in (a, b], with no pending reload before b.
    fn edges_simple(&self, a: u64, b: u64) -> u64 {
        if !self.armed || self.frozen.is_some() || b <= a {
            return 0;
        }
        let da = a.saturating_sub(self.load_tick);
        let db = b.saturating_sub(self.load_tick);
        self.edges_upto(db).saturating_sub(self.edges_upto(da))
    }

    /// Rising edges at clock edges in (a, b], applying a pending reload on the way.
    fn edges(&mut self, a: u64, b: u64) -> u64 {
        let mut total = 0;
        let mut a = a;
        if let Some((_, at)) = self.next {
            if at <= b {
                total += self.edges_simple(a, at);
                a = a.max(at);
                self.settle(at);
            }
        }
        total + self.edges_simple(a, b)
    }

    /// The first clock edge after `a` where OUT rises (no pending reload considered).
    fn next_rise_simple(&self, a: u64) -> Option<u64> {
        if !self.armed || self.frozen.is_some() {
            return None;
        }
        let n = u64::from(self.count);
        let base = self.load_tick;
        let da = a.checked_sub(base);
        let rel = match self.mode() {
            0 | 1 => match da {
                Some(d) if d >= n => return None,
                _ => n,
            },
            2 | 3 if n >= 2 => match da {
                Some(d) => (d / n + 1) * n,
                None => n,
            },
            2 | 3 => return None,
            _ => match da {
                Some(d) if d > n => return None,
                _ => n + 1,
            },
        };
        base.checked_add(rel)
    }

    fn next_rise(&self, a: u64) -> Option<u64> {
        if let Some((_, at)) = self.next {
            if let Some(e) = self.next_rise_simple(a) {
                if e <= at {
                    return Some(e);
                }
            }
            let mut c = self.clone();
            c.settle(at);
            return c.next_rise_simple(a.max(at));
        }
        self.next_rise_simple(a)
    }

    fn status_byte(&self, t: u64) -> u8 {
        let null = !self.armed || t < self.load_tick || self.next.is_some();
        u8::from(self.out(t)) << 7
            | u8::from(null) << 6
            | self.access << 4
            | self.mode_bits << 1
            | u8::from(self.bcd)
    }

    fn latch_count(&mut self, t: u64) {
        if self.latch.is_none() {
            let v = self.value(t);
            let raw = if self.bcd { to_bcd(v) } else { v as u16 };
            self.latch = Some((raw, self.access == ACCESS_HI));
        }
    }

    fn read(&mut self, t: u64) -> u8 {
        if let Some(s) = self.status.take() {
            return s;
        }
        if let Some((v, hi)) = self.latch {
            if hi {
                self.latch = None;
                return (v >> 8) as u8;
            }
            if self.access == ACCESS_WORD {
                self.latch = Some((v, true));
            } else {
                self.latch = None;
            }
            return v as u8;
        }
        let v = self.value(t);
        let raw = if self.bcd { to_bcd(v) } else { v as u16 };
        match self.access {
            ACCESS_LO => raw as u8,
            ACCESS_HI => (raw >> 8) as u8,
            _ => {
                self.read_hi = !self.read_hi;
                if self.read_hi {
                    raw as u8
                } else {
                    (raw >> 8) as u8
                }
            }
        }
    }

    fn control(&mut self, access: u8, mode_bits: u8, bcd: bool) {
        self.access = access;
        self.mode_bits = mode_bits;
        self.bcd = bcd;
        self.armed = false;
        self.frozen = None;
        self.next = None;
        self.write_low = None;
        self.read_hi = false;
        self.latch = None;
        self.status = None;
    }

    fn write(&mut self, v: u8, t: u64) {
        let raw = match self.access {
            ACCESS_LO => u16::from(v),
            ACCESS_HI => u16::from(v) << 8,
            _ => match self.write_low.take() {
                None => {
                    self.write_low = Some(v);
                    if self.mode() == 0 {
                        // Writing the first byte stops counting in mode 0; OUT goes low.
                        self.armed = false;
                    }
                    return;
                }
                Some(lo) => u16::from(lo) | u16::from(v) << 8,
            },
        };
        self.load(raw, t);
    }

    fn load(&mut self, raw: u16, t: u64) {
        let n = match (self.bcd, raw) {
            (true, _) => match from_bcd(raw) {
                0 => 10_000,
                n => n,
            },
            (false, 0) => 0x1_0000,
            (false, n) => u32::from(n),
        };
        let load_at = t + 1;
        match self.mode() {
            2 | 3 if self.armed && self.frozen.is_none() && t >= self.load_tick => {
                // A new count takes effect at the end of the current period.
                let period = u64::from(self.count);
                let d = t - self.load_tick;
                let at = self.load_tick + (d / period + 1) * period;
                self.next = Some((n, at));
            }
            1 | 5 => {
                self.count = n;
                self.next = None;
            }
            _ => {
                self.count = n;
                self.next = None;
                self.armed = true;
                self.load_tick = load_at;
                self.frozen = if self.gate { None } else { Some(0) };
            }
        }
    }

    fn set_gate(&mut self, level: bool, t: u64) {
        let rising = level && !self.gate;
        let falling = !level && self.gate;
        self.gate = level;
        match self.mode() {
            0 | 4 => {
                if falling && self.armed && self.frozen.is_none() {
                    self.frozen = Some(self.elapsed(t));
                } else if rising {
                    if let Some(d) = self.frozen.take() {
                        self.load_tick = (t + 1).saturating_sub(d);
                    }
                }
            }
            1 | 5 => {
                if rising {
                    self.armed = true;
                    self.load_tick = t + 1;
                    self.frozen = None;
                }
            }
            _ => {
                if falling && self.armed {
                    self.settle(t);
                    self.next = None;
                    self.frozen = Some(0);
                } else if rising && self.armed {
                    self.frozen = None;
                    self.load_tick = t + 1;
                }
            }
        }
    }

    fn validate(&self) -> Result<(), StateError> {
        let bad = |r: &str| Err(StateError::new("pit", r));
        if self.mode_bits > 7 {
            return bad("mode out of range");
        }
        if !(ACCESS_LO..=ACCESS_WORD).contains(&self.access) {
            return bad("access mode out of range");
        }
        let max = if self.bcd { 10_000 } else { 0x1_0000 };
        if !(1..=max).contains(&self.count) {
            return bad("count out of range");
        }
        if let Some((n, _)) = self.next {
            if !(1..=max).contains(&n) {
                return bad("pending count out of range");
            }
        }
        Ok(())
    }
}

/// The 8254 with its three counters and the port 0x61 speaker bits.
#[derive(Clone, Debug)]
pub struct Pit {
    s: PitState,
}

/// Saved state of the PIT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitState {
    /// The three counters.
    pub counters: Vec<Counter>,
    /// Port 0x61 bit 1.
    pub speaker_data: bool,
    /// Clock edge up to which IRQ0 edges have been counted.
    pub last_tick: u64,
    /// OUT0 rising edges counted but not yet returned by `advance`.
    pub pending_edges: u64,
}

impl Pit {
    /// A PIT in its power-on state: every counter in mode 3 with count 65536, gate 2 low.
    pub fn new() -> Pit {
        Pit {
            s: PitState {
                counters: vec![
                    Counter::power_on(true),
                    Counter::power_on(true),
                    Counter::power_on(false),
                ],
                speaker_data: false,
                last_tick: 0,
                pending_edges: 0,
            },
        }
    }

    fn counter(&mut self, i: usize) -> Option<&mut Counter> {
        self.s.counters.get_mut(i)
    }

    /// Counts OUT0 edges up to `t` before counter 0 is reconfigured.
    fn catch_up(&mut self, t: u64) {
        if t > self.s.last_tick {
            let last = self.s.last_tick;
            if let Some(c) = self.s.counters.get_mut(0) {
                let e = c.edges(last, t);
                self.s.pending_edges = self.s.pending_edges.saturating_add(e);
            }
            self.s.last_tick = t;
        }
    }

    /// Port read (absolute port). Unknown ports and the control port read 0xFF.
    pub fn read(&mut self, port: u16, now: VirtTime) -> u8 {
        let t = ticks_at(now);
        match port {
            PORT_COUNTER0..=PORT_COUNTER2 => {
                match self.counter(usize::from(port - PORT_COUNTER0)) {
                    Some(c) => {
                        c.settle(t);
                        c.read(t)
                    }
                    None => 0xFF,
                }
            }
            PORT_61 => {
                let out2 = self.out(2, now);
                let gate2 = self.s.counters.get(2).is_some_and(|c| c.gate);
                u8::from(gate2)
                    | u8::from(self.s.speaker_data) << 1
                    | if (now / REFRESH_NS) & 1 == 1 {
                        P61_REFRESH
                    } else {
                        0
                    }
                    | if out2 { P61_OUT2 } else { 0 }
            }
            _ => 0xFF,
        }
    }

    /// Port write (absolute port). Unknown ports are ignored.
    pub fn write(&mut self, port: u16, v: u8, now: VirtTime) {
        let t = ticks_at(now);
        match port {
            PORT_COUNTER0..=PORT_COUNTER2 => {
                let i = usize::from(port - PORT_COUNTER0);
                if i == 0 {
                    self.catch_up(t);
                }
                if let Some(c) = self.counter(i) {
                    c.settle(t);
                    c.write(v, t);
                }
            }
            PORT_CONTROL => {
                let sel = v >> 6;
                if sel == CW_READBACK {
                    for i in 0..3 {
                        if v & (2 << i) == 0 {
                            continue;
                        }
                        if let Some(c) = self.counter(i) {
                            c.settle(t);
                            if v & RB_NO_COUNT == 0 {
                                c.latch_count(t);
                            }
                            if v & RB_NO_STATUS == 0 && c.status.is_none() {
                                c.status = Some(c.status_byte(t));
                            }
                        }
                    }
                    return;
                }
                let i = usize::from(sel);
                let access = (v >> 4) & 3;
                if i == 0 && access != 0 {
                    self.catch_up(t);
                }
                if let Some(c) = self.counter(i) {
                    c.settle(t);
                    if access == 0 {
                        c.latch_count(t);
                    } else {
                        c.control(access, (v >> 1) & 7, v & 1 != 0);
                    }
                }
            }
            PORT_61 => {
                self.s.speaker_data = v & P61_SPEAKER != 0;
                self.set_gate(2, v & P61_GATE2 != 0, now);
            }
            _ => {}
        }
    }

    /// Drives the gate input of counter `ch` (counters 0 and 1 are wired high on a PC).
    pub fn set_gate(&mut self, ch: usize, level: bool, now: VirtTime) {
        let t = ticks_at(now);
        if ch == 0 {
            self.catch_up(t);
        }
        if let Some(c) = self.counter(ch) {
            c.settle(t);
            c.set_gate(level, t);
        }
    }

    /// OUT level of counter `ch` at `now` (false for a bad index).
    pub fn out(&self, ch: usize, now: VirtTime) -> bool {
        let t = ticks_at(now);
        self.s.counters.get(ch).is_some_and(|c| {
            let mut c = c.clone();
            c.settle(t);
            c.out(t)
        })
    }

    /// Whether the speaker is sounding (gate 2 and speaker data both on).
    pub fn speaker_on(&self) -> bool {
        self.s.speaker_data && self.s.counters.get(2).is_some_and(|c| c.gate)
    }

    /// Counts the OUT0 rising edges (IRQ0 pulses) since the last call, up to `now`.
    pub fn advance(&mut self, now: VirtTime) -> u32 {
        self.catch_up(ticks_at(now));
        let e = self.s.pending_edges;
        self.s.pending_edges = 0;
        u32::try_from(e).unwrap_or(u32::MAX)
    }

    /// Virtual time of the next OUT0 rising edge not yet returned by [`Pit::advance`].
    pub fn next_deadline(&self) -> Option<VirtTime> {
        if self.s.pending_edges > 0 {
            return Some(time_of_tick(self.s.last_tick));
        }
        let c = self.s.counters.first()?;
        c.next_rise(self.s.last_tick).map(time_of_tick)
    }
}

impl Snapshot for Pit {
    type State = PitState;

    fn save(&self) -> PitState {
        self.s.clone()
    }

    fn restore(&mut self, state: &PitState) -> Result<(), StateError> {
        if state.counters.len() != 3 {
            return Err(StateError::new("pit", "expected 3 counters"));
        }
        for c in &state.counters {
            c.validate()?;
        }
        self.s = state.clone();
        Ok(())
    }
}

crate::snapshot_tests!(pit_snapshot, Pit::new, |p: &mut Pit| {
    p.write(0x43, 0x34, 1000);
    p.write(0x40, 0x9C, 1000);
    p.write(0x40, 0x2E, 1000);
    p.write(0x61, 0x01, 2000);
    p.write(0x43, 0xB0, 3000);
    p.write(0x42, 0x00, 3000);
    let _ = p.advance(50_000_000);
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Time of clock edge `k` (in ns).
    fn at(k: u64) -> VirtTime {
        time_of_tick(k)
    }

    fn read_word(p: &mut Pit, port: u16, now: VirtTime) -> u16 {
        let lo = p.read(port, now);
        let hi = p.read(port, now);
        u16::from_le_bytes([lo, hi])
    }

    #[test]
    fn tick_conversion_round_trips() {
        for k in [0u64, 1, 2, 1193, 1_193_182, 123_456_789_012] {
            assert_eq!(ticks_at(time_of_tick(k)), k);
            assert_eq!(
                ticks_at(time_of_tick(k).saturating_sub(1)),
                k.saturating_sub(1)
            );
        }
    }

    #[test]
    fn mode2_period_and_reload() {
        let mut p = Pit::new();
        let t0 = at(100);
        p.advance(t0);
        p.write(0x43, 0x34, t0); // ch0, lo/hi, mode 2
        p.write(0x40, 100, t0);
        p.write(0x40, 0, t0); // count 100, loaded at edge 101
                              // Counts down 100..1 then reloads.
        assert_eq!(p.advance(at(101)), 0);
        p.write(0x43, 0x00, at(101));
        assert_eq!(read_word(&mut p, 0x40, at(101)), 100);
        p.write(0x43, 0x00, at(150));
        assert_eq!(read_word(&mut p, 0x40, at(150)), 51);
        p.write(0x43, 0x00, at(200));
        assert_eq!(read_word(&mut p, 0x40, at(200)), 1);
        assert!(!p.out(0, at(200)), "OUT low for one clock at count 1");
        assert!(p.out(0, at(199)));
        assert!(p.out(0, at(201)));
        p.write(0x43, 0x00, at(201));
        assert_eq!(read_word(&mut p, 0x40, at(201)), 100, "reloaded");
        assert_eq!(p.next_deadline(), Some(at(201)));
        assert_eq!(p.advance(at(200)), 0);
        assert_eq!(p.advance(at(201)), 1);
        assert_eq!(p.next_deadline(), Some(at(301)));
        assert_eq!(p.advance(at(1201)), 10);
        assert_eq!(p.advance(at(1300)), 0);
        assert_eq!(p.advance(at(1301)), 1);
    }

    #[test]
    fn mode2_new_count_waits_for_period_end() {
        let mut p = Pit::new();
        p.write(0x43, 0x34, at(0));
        p.write(0x40, 100, at(0));
        p.write(0x40, 0, at(0)); // load at 1, edges at 101, 201, ...
        p.write(0x40, 50, at(130));
        p.write(0x40, 0, at(130)); // takes effect at 201
        assert_eq!(p.advance(at(130)), 1);
        assert_eq!(p.next_deadline(), Some(at(201)));
        assert_eq!(p.advance(at(201)), 1);
        assert_eq!(p.next_deadline(), Some(at(251)));
        assert_eq!(p.advance(at(401)), 4);
    }

    #[test]
    fn mode0_out_timing_on_counter2() {
        let mut p = Pit::new();
        // SeaBIOS/Linux style: gate on, speaker off, ch2 mode 0 count 0x800.
        p.write(0x61, 0x01, at(10));
        p.write(0x43, 0xB0, at(10));
        assert_eq!(
            p.read(0x61, at(10)) & P61_OUT2,
            0,
            "OUT2 low after mode 0 control word"
        );
        p.write(0x42, 0x00, at(10));
        p.write(0x42, 0x08, at(10)); // loaded at edge 11, OUT high at 11 + 0x800
        let high = 11 + 0x800;
        assert_eq!(p.read(0x61, at(high) - 1) & P61_OUT2, 0);
        assert_eq!(p.read(0x61, at(high)) & P61_OUT2, P61_OUT2);
        assert_eq!(p.read(0x61, at(high)) & P61_GATE2, P61_GATE2);
        // The counter wraps and keeps counting; OUT stays high.
        p.write(0x43, 0x80, at(high + 5));
        assert_eq!(read_word(&mut p, 0x42, at(high + 5)), 0xFFFB);
        assert_eq!(p.read(0x61, at(high + 100_000)) & P61_OUT2, P61_OUT2);
    }

    #[test]
    fn mode0_gate_suspends_counting() {
        let mut p = Pit::new();
        p.write(0x61, 0x00, at(0));
        p.write(0x43, 0xB0, at(0));
        p.write(0x42, 10, at(0));
        p.write(0x42, 0, at(0));
        // Gate low: nothing counts.
        assert!(!p.out(2, at(1000)));
        p.write(0x61, 0x01, at(1000)); // counting starts at edge 1001
        assert!(!p.out(2, at(1010)));
        assert!(p.out(2, at(1011)));
        p.write(0x61, 0x00, at(1011));
        assert!(p.out(2, at(5000)));
    }

    #[test]
    fn mode0_irq0_single_edge() {
        let mut p = Pit::new();
        p.advance(at(0));
        p.write(0x43, 0x30, at(0));
        p.write(0x40, 0x10, at(0));
        assert!(!p.out(0, at(5)));
        p.write(0x40, 0x00, at(0)); // count 16, OUT rises at edge 17
        assert_eq!(p.next_deadline(), Some(at(17)));
        assert_eq!(p.advance(at(16)), 0);
        assert_eq!(p.advance(at(1000)), 1);
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn mode3_square_wave() {
        let mut p = Pit::new();
        p.write(0x43, 0x36, at(0)); // ch0 mode 3
        p.write(0x40, 10, at(0));
        p.write(0x40, 0, at(0)); // load at 1
        for d in 0..5 {
            assert!(p.out(0, at(1 + d)), "high half at {d}");
        }
        for d in 5..10 {
            assert!(!p.out(0, at(1 + d)), "low half at {d}");
        }
        assert!(p.out(0, at(11)));
        p.write(0x43, 0x00, at(3));
        assert_eq!(read_word(&mut p, 0x40, at(3)), 6); // decrements by 2
        p.write(0x43, 0x00, at(8));
        assert_eq!(read_word(&mut p, 0x40, at(8)), 6);
        assert_eq!(p.advance(at(101)), 10);
        // Odd count: high for (N+1)/2.
        p.write(0x43, 0x36, at(200));
        p.write(0x40, 5, at(200));
        p.write(0x40, 0, at(200));
        assert!(p.out(0, at(203)));
        assert!(!p.out(0, at(204)));
        assert!(p.out(0, at(206)));
        let values: Vec<u16> = (201..207)
            .map(|k| {
                p.write(0x43, 0x00, at(k));
                read_word(&mut p, 0x40, at(k))
            })
            .collect();
        assert_eq!(values, [4, 2, 0, 4, 2, 4]);
    }

    #[test]
    fn mode4_strobe() {
        let mut p = Pit::new();
        p.advance(at(0));
        p.write(0x43, 0x38, at(0));
        p.write(0x40, 5, at(0));
        p.write(0x40, 0, at(0)); // load at 1, OUT low at edge 6 for one clock
        assert!(p.out(0, at(5)));
        assert!(!p.out(0, at(6)));
        assert!(p.out(0, at(7)));
        assert_eq!(p.next_deadline(), Some(at(7)));
        assert_eq!(p.advance(at(100)), 1);
    }

    #[test]
    fn latch_freezes_value_until_read() {
        let mut p = Pit::new();
        p.write(0x43, 0x34, at(0));
        p.write(0x40, 0, at(0));
        p.write(0x40, 0, at(0)); // 65536
        p.write(0x43, 0x00, at(11)); // latch: value 65536 - 10 = 0xFFF6
        p.write(0x43, 0x00, at(20)); // a second latch is ignored
        assert_eq!(p.read(0x40, at(500)), 0xF6);
        assert_eq!(p.read(0x40, at(900)), 0xFF);
        // Unlatched reads follow the clock.
        assert_eq!(
            read_word(&mut p, 0x40, at(1001)),
            0x1_0000u32.wrapping_sub(1000) as u16
        );
    }

    #[test]
    fn lobyte_and_hibyte_access() {
        let mut p = Pit::new();
        p.write(0x43, 0x54, at(0)); // ch1, lobyte only, mode 2
        p.write(0x41, 18, at(0));
        assert_eq!(p.read(0x41, at(1)), 18);
        assert_eq!(p.read(0x41, at(1)), 18);
        p.write(0x43, 0x64, at(0)); // ch1, hibyte only
        p.write(0x41, 0x01, at(0)); // count 256
        assert_eq!(p.read(0x41, at(1)), 0x01);
        assert_eq!(p.read(0x41, at(2)), 0x00); // 255
    }

    #[test]
    fn read_back_status_and_count() {
        let mut p = Pit::new();
        p.write(0x43, 0x34, at(0));
        // Status before a count: null count set, OUT high in mode 2.
        p.write(0x43, 0xE2, at(0)); // read-back status only, ch0
        assert_eq!(p.read(0x40, at(0)), 0b1111_0100);
        p.write(0x40, 0x00, at(0));
        p.write(0x40, 0x10, at(0)); // 4096, load at 1
        p.write(0x43, 0xC2, at(5)); // count + status
        assert_eq!(
            p.read(0x40, at(5)),
            0b1011_0100,
            "status first, null count clear"
        );
        assert_eq!(read_word(&mut p, 0x40, at(9)), 4096 - 4);
    }

    #[test]
    fn bcd_counting() {
        let mut p = Pit::new();
        p.write(0x43, 0x31, at(0)); // ch0 mode 0 BCD
        p.write(0x40, 0x00, at(0));
        p.write(0x40, 0x10, at(0)); // 1000 decimal
        p.write(0x43, 0x00, at(2));
        assert_eq!(read_word(&mut p, 0x40, at(2)), 0x0999);
        assert!(p.out(0, at(1001)));
        assert!(!p.out(0, at(1000)));
    }

    #[test]
    fn refresh_toggle_and_speaker() {
        let mut p = Pit::new();
        p.write(0x61, 0x03, 0);
        assert!(p.speaker_on());
        assert_eq!(p.read(0x61, 0) & 0x13, 0x03);
        assert_eq!(p.read(0x61, REFRESH_NS) & P61_REFRESH, P61_REFRESH);
        assert_eq!(p.read(0x61, 2 * REFRESH_NS) & P61_REFRESH, 0);
    }

    #[test]
    fn power_on_counter0_runs_at_18_hz() {
        let mut p = Pit::new();
        assert_eq!(p.advance(NS_PER_SEC), 18);
    }

    #[test]
    fn restore_rejects_bad_states() {
        let mut p = Pit::new();
        let good = p.save();
        let mut bad = good.clone();
        bad.counters.pop();
        assert!(p.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.counters[0].count = 0;
        assert!(p.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.counters[1].access = 0;
        assert!(p.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.counters[2].bcd = true; // count 65536 is not a BCD count
        assert!(p.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.counters[0].mode_bits = 8;
        assert!(p.restore(&bad).is_err());
        assert_eq!(p.save(), good);
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
        let mut p = Pit::new();
        let mut r = 2u64;
        let mut now = 0u64;
        let ports = [0x40, 0x41, 0x42, 0x43, 0x61, 0x44];
        for _ in 0..100_000 {
            now += lcg(&mut r) % 5_000;
            let port = ports[lcg(&mut r) as usize % ports.len()];
            match lcg(&mut r) % 4 {
                0 | 1 => p.write(port, lcg(&mut r) as u8, now),
                2 => {
                    p.read(port, now);
                }
                _ => {
                    if let Some(t) = p.next_deadline() {
                        assert!(t <= now.max(t));
                    }
                    p.advance(now);
                }
            }
        }
    }
}
