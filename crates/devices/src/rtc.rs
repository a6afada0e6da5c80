//! Motorola MC146818 real-time clock and 128-byte CMOS NVRAM (ports 0x70/0x71, absolute).
//!
//! The clock starts at the host time given to [`Rtc::new`] and then advances only with the
//! virtual clock. Everything time-dependent (time registers, UIP, the periodic, alarm and
//! update-ended flags) is computed lazily from the `now` passed to each access, on the
//! 32.768 kHz divider chain whose phase is set at power-on and at divider reset. IRQ8 is the
//! level [`Rtc::irq_level`]; the board calls [`Rtc::advance`] at [`Rtc::next_deadline`].

use serde::{Deserialize, Serialize};

use crate::{Snapshot, StateError, VirtTime, NS_PER_SEC};

/// Index port (bit 7 = NMI disable).
pub const PORT_INDEX: u16 = 0x70;
/// Data port.
pub const PORT_DATA: u16 = 0x71;

/// Seconds.
pub const REG_SECONDS: u8 = 0x00;
/// Seconds alarm.
pub const REG_SECONDS_ALARM: u8 = 0x01;
/// Minutes.
pub const REG_MINUTES: u8 = 0x02;
/// Minutes alarm.
pub const REG_MINUTES_ALARM: u8 = 0x03;
/// Hours.
pub const REG_HOURS: u8 = 0x04;
/// Hours alarm.
pub const REG_HOURS_ALARM: u8 = 0x05;
/// Day of week (1 = Sunday).
pub const REG_DAY_OF_WEEK: u8 = 0x06;
/// Day of month.
pub const REG_DAY_OF_MONTH: u8 = 0x07;
/// Month.
pub const REG_MONTH: u8 = 0x08;
/// Year within the century.
pub const REG_YEAR: u8 = 0x09;
/// Register A: UIP (bit 7), divider (6-4), rate select (3-0).
pub const REG_A: u8 = 0x0A;
/// Register B: SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE.
pub const REG_B: u8 = 0x0B;
/// Register C: interrupt flags (read clears).
pub const REG_C: u8 = 0x0C;
/// Register D: valid RAM and time.
pub const REG_D: u8 = 0x0D;
/// Shutdown status byte.
pub const REG_SHUTDOWN: u8 = 0x0F;
/// Century (QEMU/SeaBIOS convention).
pub const REG_CENTURY: u8 = 0x32;

/// Register A: update in progress.
pub const A_UIP: u8 = 0x80;
/// Register A: divider bits.
const A_DV_MASK: u8 = 0x70;
/// Register A: divider value for a 32.768 kHz time base (clock running).
const A_DV_32K: u8 = 0x20;
/// Register A: rate select bits.
const A_RS_MASK: u8 = 0x0F;
/// Register B: updates inhibited, time may be set.
pub const B_SET: u8 = 0x80;
/// Register B: periodic interrupt enable.
pub const B_PIE: u8 = 0x40;
/// Register B: alarm interrupt enable.
pub const B_AIE: u8 = 0x20;
/// Register B: update-ended interrupt enable.
pub const B_UIE: u8 = 0x10;
/// Register B: square-wave output enable.
pub const B_SQWE: u8 = 0x08;
/// Register B: binary (not BCD) data mode.
pub const B_DM_BINARY: u8 = 0x04;
/// Register B: 24-hour mode.
pub const B_24H: u8 = 0x02;
/// Register C: interrupt request flag.
pub const C_IRQF: u8 = 0x80;
/// Register C: periodic flag.
pub const C_PF: u8 = 0x40;
/// Register C: alarm flag.
pub const C_AF: u8 = 0x20;
/// Register C: update-ended flag.
pub const C_UF: u8 = 0x10;
/// Register D: valid RAM and time.
pub const D_VRT: u8 = 0x80;
/// Hours register bit 7 in 12-hour mode: PM.
const HOUR_PM: u8 = 0x80;
/// Alarm "don't care" marker (bits 7-6 both set).
const ALARM_ANY: u8 = 0xC0;

/// NVRAM size.
pub const CMOS_SIZE: usize = 128;
/// UIP is set this long before each update.
pub const UIP_NS: u64 = 244_000;
/// Divider chain frequency.
const DIVIDER_HZ: u64 = 32_768;
/// After a divider reset, the first update comes this much later.
const FIRST_UPDATE_NS: u64 = 500_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// Bound on the clock base accepted from a saved state (about ±285 million years).
const MAX_GUEST_SECS: i64 = 1 << 53;

/// Days since 1970-01-01 for a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) for a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Saved state of the RTC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcState {
    /// The 128 bytes of CMOS (registers and NVRAM). Register C holds the flags without IRQF.
    pub cmos: Vec<u8>,
    /// Selected index.
    pub index: u8,
    /// NMI disabled (bit 7 of the last index write).
    pub nmi_masked: bool,
    /// Virtual time at which the divider chain started (second boundaries follow it).
    pub divider_start: VirtTime,
    /// Guest time (Unix seconds) at `divider_start` while the clock runs.
    pub base_secs: i64,
    /// Virtual time up to which the flags have been computed.
    pub last_sync: VirtTime,
}

/// The MC146818 RTC with its NVRAM.
#[derive(Clone, Debug)]
pub struct Rtc {
    s: RtcState,
}

impl Rtc {
    /// An RTC at power-on whose clock reads `host_unix_seconds` at virtual time 0.
    pub fn new(host_unix_seconds: i64) -> Rtc {
        let mut cmos = vec![0u8; CMOS_SIZE];
        cmos[REG_A as usize] = A_DV_32K | 0x06;
        cmos[REG_B as usize] = B_24H;
        cmos[REG_D as usize] = D_VRT;
        let mut rtc = Rtc {
            s: RtcState {
                cmos,
                index: 0,
                nmi_masked: false,
                divider_start: 0,
                base_secs: host_unix_seconds,
                last_sync: 0,
            },
        };
        rtc.refresh_regs(0);
        rtc
    }

    /// System reset (the chip's RESET pin): interrupt enables and flags are cleared; the
    /// time, the divider and the NVRAM are kept.
    pub fn reset(&mut self, now: VirtTime) {
        self.sync(now);
        let b = self.reg(REG_B) & !(B_PIE | B_AIE | B_UIE | B_SQWE);
        self.set_reg(REG_B, b);
        self.set_reg(REG_C, 0);
    }

    fn reg(&self, r: u8) -> u8 {
        self.s.cmos.get(usize::from(r)).copied().unwrap_or(0)
    }

    fn set_reg(&mut self, r: u8, v: u8) {
        if let Some(b) = self.s.cmos.get_mut(usize::from(r)) {
            *b = v;
        }
    }

    fn divider_on(&self) -> bool {
        self.reg(REG_A) & A_DV_MASK == A_DV_32K
    }

    fn running(&self) -> bool {
        self.divider_on() && self.reg(REG_B) & B_SET == 0
    }

    /// Divider ticks (32.768 kHz) since the divider started.
    fn div_ticks(&self, now: VirtTime) -> u64 {
        let ns = now.saturating_sub(self.s.divider_start);
        (u128::from(ns) * u128::from(DIVIDER_HZ) / u128::from(NS_PER_SEC)) as u64
    }

    /// Virtual time of divider tick `k`.
    fn time_of_div_tick(&self, k: u64) -> VirtTime {
        let ns = (u128::from(k) * u128::from(NS_PER_SEC)).div_ceil(u128::from(DIVIDER_HZ));
        self.s
            .divider_start
            .saturating_add(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn whole_secs(&self, now: VirtTime) -> i64 {
        (self.div_ticks(now) / DIVIDER_HZ) as i64
    }

    /// Guest time in Unix seconds at `now` (only meaningful while running).
    fn secs_at(&self, now: VirtTime) -> i64 {
        self.s.base_secs.saturating_add(self.whole_secs(now))
    }

    /// Periodic interrupt period in divider ticks, from register A's rate select.
    fn periodic_ticks(&self) -> Option<u64> {
        match self.reg(REG_A) & A_RS_MASK {
            0 => None,
            1 => Some(128),
            2 => Some(256),
            rs => Some(1 << (rs - 1)),
        }
    }

    fn encode(&self, v: u8) -> u8 {
        if self.reg(REG_B) & B_DM_BINARY != 0 {
            v
        } else {
            (v / 10) << 4 | (v % 10)
        }
    }

    fn decode(&self, v: u8) -> i64 {
        if self.reg(REG_B) & B_DM_BINARY != 0 {
            i64::from(v)
        } else {
            i64::from(v >> 4) * 10 + i64::from(v & 0xF)
        }
    }

    fn encode_hour(&self, h: u8) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            self.encode(h)
        } else {
            let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
            self.encode(h12) | if h >= 12 { HOUR_PM } else { 0 }
        }
    }

    fn decode_hour(&self, v: u8) -> i64 {
        if self.reg(REG_B) & B_24H != 0 {
            self.decode(v)
        } else {
            let h = self.decode(v & !HOUR_PM) % 12;
            if v & HOUR_PM != 0 {
                h + 12
            } else {
                h
            }
        }
    }

    /// Writes the calendar registers for the current time.
    fn refresh_regs(&mut self, now: VirtTime) {
        let secs = self.secs_at(now);
        let days = secs.div_euclid(SECS_PER_DAY);
        let tod = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let dow = (days + 4).rem_euclid(7) + 1;
        let year = y.rem_euclid(100) as u8;
        let century = y.div_euclid(100).rem_euclid(100) as u8;
        let fields = [
            (REG_SECONDS, self.encode((tod % 60) as u8)),
            (REG_MINUTES, self.encode((tod / 60 % 60) as u8)),
            (REG_HOURS, self.encode_hour((tod / 3600) as u8)),
            (REG_DAY_OF_WEEK, self.encode(dow as u8)),
            (REG_DAY_OF_MONTH, self.encode(d as u8)),
            (REG_MONTH, self.encode(m as u8)),
            (REG_YEAR, self.encode(year)),
            (REG_CENTURY, self.encode(century)),
        ];
        for (r, v) in fields {
            self.set_reg(r, v);
        }
    }

    /// The time the calendar registers hold, in Unix seconds.
    fn secs_from_regs(&self) -> i64 {
        let sec = self.decode(self.reg(REG_SECONDS));
        let min = self.decode(self.reg(REG_MINUTES));
        let hour = self.decode_hour(self.reg(REG_HOURS));
        let day = self.decode(self.reg(REG_DAY_OF_MONTH)).clamp(1, 31);
        let month = self.decode(self.reg(REG_MONTH)).clamp(1, 12);
        let year = self.decode(self.reg(REG_CENTURY)) * 100 + self.decode(self.reg(REG_YEAR));
        days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + min * 60 + sec
    }

    /// Restarts the clock from the registers, keeping the divider phase.
    fn resume_from_regs(&mut self, now: VirtTime) {
        self.s.base_secs = self.secs_from_regs().saturating_sub(self.whole_secs(now));
    }

    fn alarm_matches(&self, secs: i64) -> bool {
        let tod = secs.rem_euclid(SECS_PER_DAY);
        let hit = |reg: u8, value: u8, hour: bool| {
            let a = self.reg(reg);
            a & ALARM_ANY == ALARM_ANY
                || a == if hour {
                    self.encode_hour(value)
                } else {
                    self.encode(value)
                }
        };
        hit(REG_SECONDS_ALARM, (tod % 60) as u8, false)
            && hit(REG_MINUTES_ALARM, (tod / 60 % 60) as u8, false)
            && hit(REG_HOURS_ALARM, (tod / 3600) as u8, true)
    }

    /// Brings the interrupt flags up to `now`.
    fn sync(&mut self, now: VirtTime) {
        let now = now.max(self.s.last_sync);
        let last = self.s.last_sync;
        let mut flags = self.reg(REG_C);
        if self.divider_on() {
            let (k0, k1) = (self.div_ticks(last), self.div_ticks(now));
            if let Some(p) = self.periodic_ticks() {
                if k1 / p > k0 / p {
                    flags |= C_PF;
                }
            }
            if self.running() && k1 / DIVIDER_HZ > k0 / DIVIDER_HZ {
                flags |= C_UF;
                let (old, new) = (self.secs_at(last), self.secs_at(now));
                let first = old
                    .saturating_add(1)
                    .max(new.saturating_sub(SECS_PER_DAY - 1));
                if (first..=new).any(|s| self.alarm_matches(s)) {
                    flags |= C_AF;
                }
            }
        }
        self.set_reg(REG_C, flags & (C_PF | C_AF | C_UF));
        self.s.last_sync = now;
    }

    /// IRQ8 level: some enabled flag is set in register C.
    pub fn irq_level(&self) -> bool {
        self.reg(REG_C) & self.reg(REG_B) & (C_PF | C_AF | C_UF) != 0
    }

    /// Whether NMIs are disabled through bit 7 of port 0x70.
    pub fn nmi_masked(&self) -> bool {
        self.s.nmi_masked
    }

    /// Brings the clock and its interrupt flags up to `now`.
    pub fn advance(&mut self, now: VirtTime) {
        self.sync(now);
    }

    /// When IRQ8 could next rise (`None` while it is already raised or nothing is enabled).
    pub fn next_deadline(&self) -> Option<VirtTime> {
        if self.irq_level() || !self.divider_on() {
            return None;
        }
        let b = self.reg(REG_B);
        let k = self.div_ticks(self.s.last_sync);
        let mut best: Option<VirtTime> = None;
        let mut consider = |t: VirtTime| best = Some(best.map_or(t, |b| b.min(t)));
        if b & B_PIE != 0 {
            if let Some(p) = self.periodic_ticks() {
                consider(self.time_of_div_tick((k / p + 1) * p));
            }
        }
        if self.running() && b & (B_UIE | B_AIE) != 0 {
            consider(self.time_of_div_tick((k / DIVIDER_HZ + 1) * DIVIDER_HZ));
        }
        best
    }

    /// Whether an update is in progress (or about to be) at `now`.
    fn uip(&self, now: VirtTime) -> bool {
        if !self.running() {
            return false;
        }
        let next = self.time_of_div_tick((self.div_ticks(now) / DIVIDER_HZ + 1) * DIVIDER_HZ);
        next.saturating_sub(now) <= UIP_NS
    }

    /// Port read (absolute port). Port 0x70 reads 0xFF, as on QEMU.
    pub fn read(&mut self, port: u16, now: VirtTime) -> u8 {
        if port != PORT_DATA {
            return 0xFF;
        }
        self.sync(now);
        let i = self.s.index;
        match i {
            REG_A => self.reg(REG_A) | if self.uip(now) { A_UIP } else { 0 },
            REG_C => {
                let v = self.reg(REG_C);
                let irqf = if self.irq_level() { C_IRQF } else { 0 };
                self.set_reg(REG_C, 0);
                v | irqf
            }
            REG_D => D_VRT,
            REG_SECONDS..=REG_YEAR | REG_CENTURY if self.running() => {
                self.refresh_regs(now);
                self.reg(i)
            }
            _ => self.reg(i),
        }
    }

    /// Port write (absolute port).
    pub fn write(&mut self, port: u16, v: u8, now: VirtTime) {
        match port {
            PORT_INDEX => {
                self.s.index = v & 0x7F;
                self.s.nmi_masked = v & 0x80 != 0;
            }
            PORT_DATA => {
                self.sync(now);
                let i = self.s.index;
                match i {
                    REG_A => {
                        let was_on = self.divider_on();
                        let was_running = self.running();
                        if was_running {
                            self.refresh_regs(now);
                        }
                        self.set_reg(REG_A, v & !A_UIP);
                        if !was_on && self.divider_on() {
                            // Divider restarted: first update half a second later.
                            self.s.divider_start = now.saturating_sub(NS_PER_SEC - FIRST_UPDATE_NS);
                            self.s.last_sync = now;
                        }
                        if self.running() && !was_running {
                            self.resume_from_regs(now);
                        }
                    }
                    REG_B => {
                        let was_running = self.running();
                        if was_running {
                            self.refresh_regs(now);
                        }
                        let v = if v & B_SET != 0 { v & !B_UIE } else { v };
                        self.set_reg(REG_B, v);
                        if self.running() && !was_running {
                            self.resume_from_regs(now);
                        }
                    }
                    REG_C | REG_D => {}
                    REG_SECONDS..=REG_YEAR | REG_CENTURY => {
                        let running = self.running();
                        if running {
                            self.refresh_regs(now);
                        }
                        self.set_reg(i, v);
                        if running {
                            self.resume_from_regs(now);
                        }
                    }
                    _ => self.set_reg(i, v),
                }
            }
            _ => {}
        }
    }

    /// Sets a CMOS byte directly (the board's configuration: RAM sizes, boot order, CPU
    /// count ...). No side effects; indices of 128 and above are ignored.
    pub fn set_cmos(&mut self, index: usize, value: u8) {
        if let Some(b) = self.s.cmos.get_mut(index) {
            *b = value;
        }
    }

    /// Reads a CMOS byte directly, without side effects (0 for indices of 128 and above).
    pub fn cmos(&self, index: usize) -> u8 {
        self.s.cmos.get(index).copied().unwrap_or(0)
    }

    /// The guest's clock in Unix seconds at `now` (as its registers would read).
    pub fn guest_time(&mut self, now: VirtTime) -> i64 {
        if self.running() {
            self.secs_at(now.max(self.s.last_sync))
        } else {
            self.secs_from_regs()
        }
    }
}

impl Snapshot for Rtc {
    type State = RtcState;

    fn save(&self) -> RtcState {
        self.s.clone()
    }

    fn restore(&mut self, state: &RtcState) -> Result<(), StateError> {
        let bad = |r: &str| Err(StateError::new("rtc", r));
        if state.cmos.len() != CMOS_SIZE {
            return bad("CMOS must be 128 bytes");
        }
        if state.index >= CMOS_SIZE as u8 {
            return bad("index out of range");
        }
        if !(-MAX_GUEST_SECS..=MAX_GUEST_SECS).contains(&state.base_secs) {
            return bad("clock base out of range");
        }
        if state.divider_start > state.last_sync {
            return bad("divider start after last sync");
        }
        if state.cmos[usize::from(REG_C)] & !(C_PF | C_AF | C_UF) != 0 {
            return bad("register C has invalid bits");
        }
        if state.cmos[usize::from(REG_A)] & A_UIP != 0 {
            return bad("register A stores UIP");
        }
        self.s = state.clone();
        Ok(())
    }
}

crate::snapshot_tests!(rtc_snapshot, || Rtc::new(1_700_000_000), |r: &mut Rtc| {
    r.write(0x70, 0x0B, 0);
    r.write(0x71, 0x42, 0);
    r.set_cmos(0x5F, 3);
    let _ = r.read(0x71, 3_000_000_000);
    r.advance(5_000_000_000);
});

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC, a Tuesday

    fn rd(r: &mut Rtc, idx: u8, now: VirtTime) -> u8 {
        r.write(0x70, 0x80 | idx, now);
        r.read(0x71, now)
    }

    fn wr(r: &mut Rtc, idx: u8, v: u8, now: VirtTime) {
        r.write(0x70, 0x80 | idx, now);
        r.write(0x71, v, now);
    }

    #[test]
    fn calendar_round_trip() {
        for days in [-1000, 0, 1, 59, 365, 10_957, 19_675, 47_482] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
    }

    #[test]
    fn bcd_time_at_power_on_and_advancing() {
        let mut r = Rtc::new(T0);
        assert_eq!(rd(&mut r, REG_SECONDS, 0), 0x20);
        assert_eq!(rd(&mut r, REG_MINUTES, 0), 0x13);
        assert_eq!(rd(&mut r, REG_HOURS, 0), 0x22);
        assert_eq!(rd(&mut r, REG_DAY_OF_WEEK, 0), 3);
        assert_eq!(rd(&mut r, REG_DAY_OF_MONTH, 0), 0x14);
        assert_eq!(rd(&mut r, REG_MONTH, 0), 0x11);
        assert_eq!(rd(&mut r, REG_YEAR, 0), 0x23);
        assert_eq!(rd(&mut r, REG_CENTURY, 0), 0x20);
        assert_eq!(rd(&mut r, REG_SECONDS, 999_999_999), 0x20);
        assert_eq!(rd(&mut r, REG_SECONDS, NS_PER_SEC), 0x21);
        assert_eq!(rd(&mut r, REG_MINUTES, 40 * NS_PER_SEC), 0x14);
        assert!(r.nmi_masked());
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut r = Rtc::new(T0);
        wr(&mut r, REG_B, B_DM_BINARY, 0); // binary, 12-hour
        assert_eq!(rd(&mut r, REG_HOURS, 0), 0x80 | 10); // 10 PM
        assert_eq!(rd(&mut r, REG_MINUTES, 0), 13);
        assert_eq!(rd(&mut r, REG_YEAR, 0), 23);
        wr(&mut r, REG_B, B_DM_BINARY | B_24H, 0);
        assert_eq!(rd(&mut r, REG_HOURS, 0), 22);
    }

    #[test]
    fn set_bit_freezes_and_guest_sets_time() {
        let mut r = Rtc::new(T0);
        wr(&mut r, REG_B, B_SET | B_24H | B_UIE, 0);
        assert_eq!(rd(&mut r, REG_B, 0) & B_UIE, 0, "SET clears UIE");
        wr(&mut r, REG_HOURS, 0x05, 0);
        wr(&mut r, REG_MINUTES, 0x00, 0);
        wr(&mut r, REG_SECONDS, 0x00, 0);
        // Frozen while SET.
        assert_eq!(rd(&mut r, REG_SECONDS, 10 * NS_PER_SEC), 0x00);
        assert!(!r.irq_level());
        wr(&mut r, REG_B, B_24H, 10 * NS_PER_SEC + 300_000_000);
        // The divider phase is kept: the next update is at 11 s.
        assert_eq!(rd(&mut r, REG_SECONDS, 11 * NS_PER_SEC - 1), 0x00);
        assert_eq!(rd(&mut r, REG_SECONDS, 11 * NS_PER_SEC), 0x01);
        assert_eq!(rd(&mut r, REG_HOURS, 11 * NS_PER_SEC), 0x05);
        assert_eq!(
            r.guest_time(11 * NS_PER_SEC),
            T0 - (22 * 3600 + 13 * 60 + 20) + 5 * 3600 + 1
        );
    }

    #[test]
    fn uip_window_before_each_update() {
        let mut r = Rtc::new(T0);
        let s = NS_PER_SEC;
        assert_eq!(rd(&mut r, REG_A, s - UIP_NS - 1) & A_UIP, 0);
        assert_eq!(rd(&mut r, REG_A, s - UIP_NS) & A_UIP, A_UIP);
        assert_eq!(rd(&mut r, REG_A, s - 1) & A_UIP, A_UIP);
        assert_eq!(rd(&mut r, REG_A, s), 0x26);
        // No UIP while SET.
        wr(&mut r, REG_B, B_SET | B_24H, s);
        assert_eq!(rd(&mut r, REG_A, 2 * s - 1) & A_UIP, 0);
    }

    #[test]
    fn register_c_read_clears_and_irq8_level() {
        let mut r = Rtc::new(T0);
        wr(&mut r, REG_A, 0x20, 0); // no periodic flag
        wr(&mut r, REG_B, B_24H | B_UIE, 0);
        assert_eq!(r.next_deadline(), Some(NS_PER_SEC));
        r.advance(NS_PER_SEC - 1);
        assert!(!r.irq_level());
        r.advance(NS_PER_SEC);
        assert!(r.irq_level());
        assert_eq!(r.next_deadline(), None);
        assert_eq!(rd(&mut r, REG_C, NS_PER_SEC), C_IRQF | C_UF);
        assert!(!r.irq_level());
        assert_eq!(rd(&mut r, REG_C, NS_PER_SEC), 0);
        // Flags are set even when not enabled, without IRQF.
        wr(&mut r, REG_B, B_24H, NS_PER_SEC);
        assert_eq!(rd(&mut r, REG_C, 3 * NS_PER_SEC), C_UF);
    }

    #[test]
    fn periodic_interrupt_rate() {
        let mut r = Rtc::new(T0);
        wr(&mut r, REG_A, 0x26, 0); // 1024 Hz: 32 divider ticks = 976562.5 ns
        wr(&mut r, REG_B, B_24H | B_PIE, 0);
        assert_eq!(r.next_deadline(), Some(976_563));
        r.advance(976_562);
        assert!(!r.irq_level());
        r.advance(976_563);
        assert!(r.irq_level());
        assert_eq!(rd(&mut r, REG_C, 976_563), C_IRQF | C_PF);
        assert_eq!(r.next_deadline(), Some(1_953_125));
        wr(&mut r, REG_A, 0x2F, 976_563); // 2 Hz
        assert_eq!(r.next_deadline(), Some(500_000_000));
        wr(&mut r, REG_A, 0x20, 976_563); // rate 0: off
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn alarm_interrupt() {
        let mut r = Rtc::new(T0); // 22:13:20
        wr(&mut r, REG_A, 0x20, 0); // no periodic flag
        wr(&mut r, REG_SECONDS_ALARM, 0x25, 0);
        wr(&mut r, REG_MINUTES_ALARM, 0xC0, 0); // any minute
        wr(&mut r, REG_HOURS_ALARM, 0x22, 0);
        wr(&mut r, REG_B, B_24H | B_AIE, 0);
        r.advance(4 * NS_PER_SEC);
        assert!(!r.irq_level());
        r.advance(5 * NS_PER_SEC);
        assert!(r.irq_level());
        assert_eq!(rd(&mut r, REG_C, 5 * NS_PER_SEC), C_IRQF | C_AF | C_UF);
        // A long gap still notices the next match (one minute later).
        r.advance(200 * NS_PER_SEC);
        assert!(r.irq_level());
    }

    #[test]
    fn divider_reset_delays_first_update() {
        let mut r = Rtc::new(T0);
        let t = 10 * NS_PER_SEC + 123;
        wr(&mut r, REG_A, 0x76, t); // divider reset: clock stops
        let frozen = rd(&mut r, REG_SECONDS, t + 5 * NS_PER_SEC);
        assert_eq!(frozen, 0x30);
        wr(&mut r, REG_A, 0x26, t + 5 * NS_PER_SEC);
        let restart = t + 5 * NS_PER_SEC;
        assert_eq!(rd(&mut r, REG_SECONDS, restart + FIRST_UPDATE_NS - 1), 0x30);
        assert_eq!(rd(&mut r, REG_SECONDS, restart + FIRST_UPDATE_NS), 0x31);
    }

    #[test]
    fn reset_clears_enables_keeps_time_and_nvram() {
        let mut r = Rtc::new(T0);
        r.set_cmos(0x40, 0x99);
        wr(&mut r, REG_B, B_24H | B_UIE | B_PIE, 0);
        r.advance(2 * NS_PER_SEC);
        assert!(r.irq_level());
        r.reset(2 * NS_PER_SEC);
        assert!(!r.irq_level());
        assert_eq!(rd(&mut r, REG_B, 2 * NS_PER_SEC), B_24H);
        assert_eq!(rd(&mut r, REG_SECONDS, 2 * NS_PER_SEC), 0x22);
        assert_eq!(r.cmos(0x40), 0x99);
    }

    #[test]
    fn nvram_and_board_bytes() {
        let mut r = Rtc::new(T0);
        r.set_cmos(0x5F, 1);
        r.set_cmos(0x3D, 0x12);
        r.set_cmos(500, 7); // ignored
        assert_eq!(rd(&mut r, 0x5F, 0), 1);
        assert_eq!(rd(&mut r, 0x3D, 0), 0x12);
        wr(&mut r, 0x0F, 0x00, 0);
        wr(&mut r, 0x7F, 0xAB, 0);
        assert_eq!(r.cmos(0x7F), 0xAB);
        r.write(0x70, 0x0D, 0);
        assert!(!r.nmi_masked());
        assert_eq!(r.read(0x71, 0), D_VRT);
        assert_eq!(r.read(0x70, 0), 0xFF);
        wr(&mut r, REG_D, 0x00, 0);
        assert_eq!(rd(&mut r, REG_D, 0), D_VRT);
    }

    #[test]
    fn restore_rejects_bad_states() {
        let mut r = Rtc::new(T0);
        let good = r.save();
        let mut bad = good.clone();
        bad.cmos.push(0);
        assert!(r.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.index = 128;
        assert!(r.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.divider_start = 5;
        assert!(r.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.cmos[REG_C as usize] = 0x81;
        assert!(r.restore(&bad).is_err());
        let mut bad = good.clone();
        bad.base_secs = i64::MAX;
        assert!(r.restore(&bad).is_err());
        assert_eq!(r.save(), good);
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
        let mut rtc = Rtc::new(T0);
        let mut r = 3u64;
        let mut now = 0u64;
        for _ in 0..100_000 {
            now += lcg(&mut r) % 50_000_000;
            match lcg(&mut r) % 4 {
                0 => rtc.write(0x70, lcg(&mut r) as u8, now),
                1 => rtc.write(0x71, lcg(&mut r) as u8, now),
                2 => {
                    rtc.read(0x71, now);
                }
                _ => rtc.advance(now),
            }
        }
    }
}
