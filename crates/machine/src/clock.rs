//! The machine's one virtual clock.
//!
//! Virtual time advances with retired instructions: `now = base_ns + (icount - base_icount) *
//! ps_per_insn / 1000`. It only ever moves forward. Two ways to move it besides executing:
//! [`Clock::skip_to`] (HLT in deterministic mode jumps to the next deadline; in realtime mode
//! the host pulls the clock toward host time) rebases the mapping so that the current
//! instruction count maps to the new time.

use serde::{Deserialize, Serialize};

/// Default instruction rate of the virtual CPU: 5 ns per instruction (200 MIPS).
pub const DEFAULT_PS_PER_INSN: u64 = 5_000;

/// Virtual clock: maps instruction counts to nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    base_ns: u64,
    base_icount: u64,
    ps_per_insn: u64,
}

impl Clock {
    /// A clock at time 0 for instruction count `icount`, at `ps_per_insn` picoseconds per
    /// instruction (clamped to at least 1).
    pub fn new(icount: u64, ps_per_insn: u64) -> Clock {
        Clock {
            base_ns: 0,
            base_icount: icount,
            ps_per_insn: ps_per_insn.max(1),
        }
    }

    /// Picoseconds per instruction.
    pub fn ps_per_insn(&self) -> u64 {
        self.ps_per_insn
    }

    /// Virtual time at instruction count `icount`.
    #[inline]
    pub fn time_at(&self, icount: u64) -> u64 {
        let d = icount.saturating_sub(self.base_icount) as u128;
        self.base_ns + (d * self.ps_per_insn as u128 / 1000) as u64
    }

    /// The smallest instruction count at which the time is at least `t` (at least `icount`).
    pub fn icount_at(&self, t: u64, icount: u64) -> u64 {
        if t <= self.time_at(icount) {
            return icount;
        }
        let dt = (t - self.base_ns) as u128 * 1000;
        let d = dt.div_ceil(self.ps_per_insn as u128);
        let n = self.base_icount as u128 + d;
        n.min(u64::MAX as u128) as u64
    }

    /// Moves time forward to `t` at instruction count `icount` (never backwards).
    pub fn skip_to(&mut self, t: u64, icount: u64) {
        let now = self.time_at(icount);
        self.base_ns = now.max(t);
        self.base_icount = icount;
    }

    /// Validates a restored clock.
    pub fn validate(&self) -> Result<(), String> {
        if self.ps_per_insn == 0 {
            return Err("clock rate is zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_instructions_to_time() {
        let c = Clock::new(100, 5_000);
        assert_eq!(c.time_at(100), 0);
        assert_eq!(c.time_at(300), 1000);
        assert_eq!(c.icount_at(1000, 100), 300);
        assert_eq!(c.icount_at(1001, 100), 301);
        assert_eq!(c.icount_at(0, 150), 150);
    }

    #[test]
    fn skips_forward_only() {
        let mut c = Clock::new(0, 2_500);
        c.skip_to(1_000_000, 400);
        assert_eq!(c.time_at(400), 1_000_000);
        assert_eq!(c.time_at(800), 1_001_000);
        c.skip_to(5, 800);
        assert_eq!(c.time_at(800), 1_001_000);
    }

    #[test]
    fn sub_ns_rates_are_exact_over_many_instructions() {
        let c = Clock::new(0, 333);
        assert_eq!(c.time_at(3_000_000), 999_000);
        let n = c.icount_at(999_000, 0);
        assert!(c.time_at(n) >= 999_000 && c.time_at(n - 1) < 999_000);
    }
}
