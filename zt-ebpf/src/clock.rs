//! The programs' clock: CLOCK_MONOTONIC at tick resolution from the inlined jiffies load
//! and the agent's calibration (see `zt_common::clock`), or the coarse clock's helper while
//! no calibration is written.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

use crate::maps::CLOCK;

/// Now, in CLOCK_MONOTONIC nanoseconds at tick resolution (the scale userspace compares
/// conntrack, quarantine and event times with).
#[inline(always)]
pub fn now() -> u64 {
    if let Some(clock) = CLOCK.get(0)
        && clock.tick_ns != 0
    {
        // SAFETY: helper without arguments (the verifier inlines it into one load).
        return clock.at(unsafe { bpf_jiffies64() });
    }
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Stores jiffies and the coarse clock, read back to back, for the agent's calibration.
#[inline(always)]
pub fn sample() {
    if let Some(clock) = CLOCK.get_ptr_mut(0) {
        // SAFETY: helpers without arguments; the one entry of an array map is valid while
        // the program runs, and only the agent's calibration runs this program.
        unsafe {
            (*clock).sample_jiffies = bpf_jiffies64();
            (*clock).sample_ns = bpf_ktime_get_coarse_ns();
        }
    }
}
