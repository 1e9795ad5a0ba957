//! Quarantined addresses: all traffic from or to them is dropped until the entry expires.

use zt_common::addr::Addr;

use crate::maps::QUARANTINE;

#[inline(always)]
pub fn is_quarantined(addr: &Addr, now: u64) -> bool {
    // SAFETY: the value is read once; a concurrent update at worst yields the old expiry.
    match unsafe { QUARANTINE.get(addr) } {
        Some(q) => q.expires_ns == 0 || now < q.expires_ns,
        None => false,
    }
}
