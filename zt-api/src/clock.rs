//! Kernel timestamps (CLOCK_MONOTONIC, the kernel programs' clock) to wall-clock time.

use std::time::{Duration, SystemTime};

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The kernel's monotonic clock now, in the units BPF programs see.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Converts a monotonic timestamp to wall-clock time (using the current offset between the
/// clocks, so a wall-clock step after the event shifts it; fine for logs).
pub fn to_system_time(mono_ns: u64) -> SystemTime {
    let now_mono = monotonic_ns();
    let now = SystemTime::now();
    if mono_ns <= now_mono {
        now - Duration::from_nanos(now_mono - mono_ns)
    } else {
        now + Duration::from_nanos(mono_ns - now_mono)
    }
}

/// RFC 3339 with millisecond precision, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
