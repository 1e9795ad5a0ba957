//! CLOCK: how the kernel programs read the time on every packet.
//!
//! Every packet needs the time (conntrack expiry and last-seen, rate-limit buckets,
//! quarantine expiry, event budgets). `bpf_ktime_get_coarse_ns` is a helper call, about
//! 17 ns of an established packet's 101 on the benchmark machine; `bpf_jiffies64` is
//! inlined by the verifier into a single load. Jiffies count the kernel's ticks, and the
//! kernel advances them from CLOCK_MONOTONIC in steps of exactly its tick length
//! (`TICK_NSEC`, from `CONFIG_HZ`), so `jiffies × tick_ns + base_ns` is CLOCK_MONOTONIC to
//! within a tick — the coarse clock's own resolution — and does not drift from it.
//!
//! Neither the tick length nor the offset can be read from userspace, so the agent measures
//! them when it loads the programs, before it attaches them: it runs the sampling program
//! (`program_names::CLOCK_SAMPLE`), which stores jiffies and the coarse clock read together,
//! until two ticks and [`MIN_SAMPLE_NS`] have passed, takes the tick length from the two samples (snapped to the
//! tick of a known `CONFIG_HZ`) and the offset from the last one. While `tick_ns` is 0 (not
//! measured, or a tick length no known `CONFIG_HZ` has) the programs call the helper.
//!
//! The map is not pinned: programs left running by an earlier agent keep their own
//! calibrated map, and each agent measures again for the programs it loads.

/// The one entry of CLOCK.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// Nanoseconds per jiffy; 0 until measured (the programs then call the helper).
    pub tick_ns: u64,
    /// CLOCK_MONOTONIC minus `jiffies × tick_ns`, wrapping (jiffies start near 2^32).
    pub base_ns: u64,
    /// Written by the sampling program: jiffies and the coarse clock, read together.
    pub sample_jiffies: u64,
    pub sample_ns: u64,
}
crate::assert_size!(Clock, 32);
crate::user_pod!(Clock);

/// The agent's two samples are at least two ticks and this long apart, so that a late tick
/// handler (tens of µs) moves the measured tick length by well under 1%.
pub const MIN_SAMPLE_NS: u64 = 10_000_000;

/// `CONFIG_HZ` values Linux can be built with (every architecture's Kconfig choices).
pub const KNOWN_HZ: &[u64] = &[24, 32, 48, 64, 100, 128, 250, 256, 300, 1000, 1024];

/// The kernel's `TICK_NSEC` for `hz`.
pub const fn tick_nsec(hz: u64) -> u64 {
    (1_000_000_000 + hz / 2) / hz
}

impl Clock {
    /// The time at `jiffies` (in the kernel programs: `bpf_jiffies64()`).
    #[inline(always)]
    pub fn at(&self, jiffies: u64) -> u64 {
        jiffies.wrapping_mul(self.tick_ns).wrapping_add(self.base_ns)
    }

    /// The calibration from two samples `(jiffies, coarse ns)`; `None` when they are less
    /// than two ticks or [`MIN_SAMPLE_NS`] apart, or their tick length is not within 1% of
    /// a known `CONFIG_HZ`'s (the nearest candidates, 1000 and 1024 Hz, differ by 2.4%).
    pub fn calibrated(first: (u64, u64), last: (u64, u64)) -> Option<Clock> {
        let ticks = last.0.checked_sub(first.0).filter(|&t| t >= 2)?;
        let elapsed = last.1.checked_sub(first.1).filter(|&e| e >= MIN_SAMPLE_NS)?;
        let measured = elapsed / ticks;
        let tick_ns = KNOWN_HZ
            .iter()
            .map(|&hz| tick_nsec(hz))
            .min_by_key(|&tick| tick.abs_diff(measured))
            .filter(|&tick| tick.abs_diff(measured) * 100 <= tick)?;
        let base_ns = last.1.wrapping_sub(last.0.wrapping_mul(tick_ns));
        Some(Clock { tick_ns, base_ns, sample_jiffies: last.0, sample_ns: last.1 })
    }

    /// `CONFIG_HZ` of a calibrated clock.
    pub fn hz(&self) -> Option<u64> {
        KNOWN_HZ.iter().copied().find(|&hz| tick_nsec(hz) == self.tick_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jiffies as the kernel starts them (`INITIAL_JIFFIES`, 300 s before wrapping 32 bits).
    fn initial(hz: u64) -> u64 {
        (u32::MAX as u64 + 1) - 300 * hz
    }

    #[test]
    fn every_known_hz_is_recognised_from_two_ticks_with_jitter() {
        for &hz in KNOWN_HZ {
            let tick = tick_nsec(hz);
            let j = initial(hz) + 12_345;
            let t = 987_654_321_000;
            // The last sample's tick handler ran 20 µs late.
            // As the agent samples: at least two ticks and MIN_SAMPLE_NS apart.
            let n = MIN_SAMPLE_NS.div_ceil(tick).max(2);
            let c = Clock::calibrated((j, t), (j + n, t + n * tick + 20_000)).expect("recognised");
            assert_eq!(c.tick_ns, tick, "{hz} Hz");
            assert_eq!(c.hz(), Some(hz));
            // The time at the last sample is the sample; a tick later, one tick later.
            assert_eq!(c.at(j + n), t + n * tick + 20_000);
            assert_eq!(c.at(j + n + 1), t + (n + 1) * tick + 20_000);
        }
    }

    #[test]
    fn a_tick_no_hz_has_or_too_few_ticks_is_refused() {
        let t = 1_000_000_000;
        // 2 ms ticks: halfway between 1000 and 250/300 Hz.
        assert_eq!(Clock::calibrated((100, t), (110, t + 20_000_000)), None);
        // Fewer than two ticks or MIN_SAMPLE_NS apart, or going backwards.
        assert_eq!(Clock::calibrated((100, t), (102, t + 2_000_000)), None);
        assert_eq!(Clock::calibrated((100, t), (101, t + 4_000_000)), None);
        assert_eq!(Clock::calibrated((100, t), (99, t + 4_000_000)), None);
        assert_eq!(Clock::calibrated((100, t), (102, t - 1)), None);
    }

    #[test]
    fn the_time_follows_jiffies_across_the_32_bit_wrap() {
        let hz = 250;
        let j = initial(hz);
        let t = 5_000_000_000;
        let c = Clock::calibrated((j, t), (j + 4, t + 4 * tick_nsec(hz))).unwrap();
        // 600 s later jiffies have passed 2^32; the time is 600 s later still.
        assert_eq!(c.at(j + 4 + 600 * hz), t + 4 * tick_nsec(hz) + 600_000_000_000);
    }
}
