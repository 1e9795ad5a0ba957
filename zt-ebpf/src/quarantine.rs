//! Quarantined addresses: all traffic from or to them is dropped until the entry expires.

use zt_common::{addr::Addr, quarantine::QuarantineValue};

use crate::maps::QUARANTINE;

/// The entry that quarantines `addr` at `now`, if any.
#[inline(always)]
pub fn quarantined(addr: &Addr, now: u64) -> Option<&'static mut QuarantineValue> {
    let q = QUARANTINE.get_ptr_mut(addr)?;
    // SAFETY: hash map values stay valid while the program runs; the agent rewrites an
    // entry whole, so a racing read at worst sees the old expiry or report epoch.
    let q = unsafe { &mut *q };
    (q.expires_ns == 0 || now < q.expires_ns).then_some(q)
}
