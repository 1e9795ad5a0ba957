//! Quarantine: addresses cut off from all traffic, in both directions, established flows
//! included (the kernel checks QUARANTINE before conntrack), until released or expired.
//!
//! The kernel skips the QUARANTINE lookup unless CONFIG has `FLAG_QUARANTINE_ACTIVE`, so the
//! agent keeps that flag set exactly while the map has entries: set after the first insert,
//! cleared after the last removal, and re-checked every second by the expiry task (which
//! also repairs the flag for entries an earlier agent left in the pinned map).

use std::{net::IpAddr, time::Duration};

use zt_common::{
    addr::Addr,
    config::FLAG_QUARANTINE_ACTIVE,
    detect::detector_name,
    quarantine::{ORIGIN_MANUAL, QuarantineValue},
};

use super::{AgentState, SharedState};
use crate::{datapath::DatapathError, flows::clock::monotonic_ns};

/// How often expired entries are removed.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);
const NS_PER_SEC: u64 = 1_000_000_000;

/// The datapath's key for `ip` (IPv4 in the first four bytes).
pub fn addr_of(ip: IpAddr) -> Addr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => Addr::from_v4(v4.octets()),
        IpAddr::V6(v6) => Addr::from_v6(v6.octets()),
    }
}

/// The address a key stands for. The map does not store the family: a key whose last 12
/// bytes are zero is read as IPv4 (the IPv6 addresses that look the same end in 96 zero
/// bits — subnet-router anycast, never a host that sends traffic).
pub fn ip_of(addr: &Addr) -> IpAddr {
    if addr.bytes[4..].iter().all(|&b| b == 0) { IpAddr::from(addr.v4_octets()) } else { IpAddr::from(addr.bytes) }
}

/// An address cut off now, for how much longer (`None`: until released), by whom and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    pub ip: IpAddr,
    pub expires_in_seconds: Option<u64>,
    /// `manual` or the detector's name.
    pub origin: String,
    pub reason: Option<String>,
}

/// The longest `--reason` text.
pub const MAX_REASON_CHARS: usize = 200;

/// Who an entry's `origin` byte names.
pub fn origin_name(origin: u8) -> &'static str {
    if origin == ORIGIN_MANUAL { "manual" } else { detector_name(origin) }
}

/// Why a quarantine change failed; each reads as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("a quarantine --ttl must be at least 1s")]
    ZeroTtl,
    #[error("a quarantine --reason must be one line of at most {MAX_REASON_CHARS} characters")]
    BadReason,
    #[error("{ip} is not quarantined; see ztctl quarantine list")]
    NotQuarantined { ip: IpAddr },
    #[error("cannot quarantine {ip}: the QUARANTINE map refused the entry: {error}")]
    Insert { ip: IpAddr, error: String },
    #[error("cannot release {ip} from the QUARANTINE map: {error}")]
    Remove { ip: IpAddr, error: String },
    #[error("cannot update the quarantine flag in CONFIG: {0}")]
    Flag(DatapathError),
}

impl AgentState {
    /// Cuts `ip` off by hand, for `ttl_seconds` or until released; returns the entries in
    /// force.
    pub fn quarantine(
        &mut self,
        ip: IpAddr,
        ttl_seconds: Option<u64>,
        reason: Option<String>,
    ) -> Result<Vec<Quarantined>, QuarantineError> {
        if reason.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON_CHARS || r.chars().any(char::is_control)) {
            return Err(QuarantineError::BadReason);
        }
        self.quarantine_as(ip, ttl_seconds, ORIGIN_MANUAL, reason)?;
        Ok(self.quarantined())
    }

    /// Cuts `ip` off on behalf of `origin` (manual or a detector). The kernel judges the
    /// expiry against its own clock, so the entry holds with no agent running.
    pub(super) fn quarantine_as(
        &mut self,
        ip: IpAddr,
        ttl_seconds: Option<u64>,
        origin: u8,
        reason: Option<String>,
    ) -> Result<(), QuarantineError> {
        let now = monotonic_ns();
        let expires_ns = match ttl_seconds {
            None => 0,
            Some(0) => return Err(QuarantineError::ZeroTtl),
            Some(ttl) => now.saturating_add(ttl.saturating_mul(NS_PER_SEC)),
        };
        self.maps
            .quarantine
            .insert(addr_of(ip), QuarantineValue::new(expires_ns, now, origin), 0)
            .map_err(|e| QuarantineError::Insert { ip, error: e.to_string() })?;
        sync_flag(self).map_err(QuarantineError::Flag)?;
        self.quarantine_notes.set_reason(ip, reason);
        self.quarantine_notes.save();
        log::info!("quarantined {ip} ({})", origin_name(origin));
        Ok(())
    }

    /// The entry in force for `ip`, if any: (expires_ns, 0 = never).
    pub(super) fn quarantine_entry(&self, ip: IpAddr) -> Option<QuarantineValue> {
        let now = monotonic_ns();
        self.maps.quarantine.get(&addr_of(ip), 0).ok().filter(|v| v.expires_ns == 0 || v.expires_ns > now)
    }

    /// Lets `ip` through again; returns the entries still in force.
    pub fn release(&mut self, ip: IpAddr) -> Result<Vec<Quarantined>, QuarantineError> {
        let key = addr_of(ip);
        if self.maps.quarantine.get(&key, 0).is_err() {
            return Err(QuarantineError::NotQuarantined { ip });
        }
        self.maps.quarantine.remove(&key).map_err(|e| QuarantineError::Remove { ip, error: e.to_string() })?;
        sync_flag(self).map_err(QuarantineError::Flag)?;
        self.quarantine_notes.set_reason(ip, None);
        self.quarantine_notes.save();
        log::info!("released {ip} from quarantine");
        Ok(self.quarantined())
    }

    /// The entries still in force, sorted by address.
    pub fn quarantined(&self) -> Vec<Quarantined> {
        let now = monotonic_ns();
        let mut out: Vec<Quarantined> = self
            .maps
            .quarantine
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.expires_ns == 0 || v.expires_ns > now)
            .map(|(k, v)| {
                let ip = ip_of(&k);
                Quarantined {
                    ip,
                    expires_in_seconds: (v.expires_ns != 0).then(|| (v.expires_ns - now).div_ceil(NS_PER_SEC)),
                    origin: origin_name(v.origin).to_string(),
                    reason: self.quarantine_notes.reason(ip).map(str::to_string),
                }
            })
            .collect();
        out.sort_by_key(|e| e.ip);
        out
    }

    /// Entries in the QUARANTINE map, expired or not (map occupancy).
    pub fn quarantine_len(&self) -> usize {
        self.maps.quarantine.keys().filter(Result::is_ok).count()
    }

    /// As the kernel judges it: only while the flag is armed, and only unexpired entries.
    pub fn is_quarantined(&self, ip: IpAddr) -> bool {
        self.cfg.flags & FLAG_QUARANTINE_ACTIVE != 0
            && self
                .maps
                .quarantine
                .get(&addr_of(ip), 0)
                .is_ok_and(|v| v.expires_ns == 0 || v.expires_ns > monotonic_ns())
    }
}

/// Sets `FLAG_QUARANTINE_ACTIVE` in CONFIG (and the agent's copy) iff the map has entries.
/// CONFIG is read, modified and written under the state lock, like every generation switch.
fn sync_flag(s: &mut AgentState) -> Result<(), DatapathError> {
    let occupied = s.maps.quarantine.keys().next().is_some_and(|k| k.is_ok());
    let mut cfg = s.maps.read_config()?;
    let flags = if occupied { cfg.flags | FLAG_QUARANTINE_ACTIVE } else { cfg.flags & !FLAG_QUARANTINE_ACTIVE };
    if flags != cfg.flags {
        cfg.flags = flags;
        s.maps.write_config(&cfg)?;
    }
    s.cfg.flags = flags;
    Ok(())
}

/// Removes expired entries (the kernel already ignores them) and keeps the flag in step.
fn expire(s: &mut AgentState) {
    let now = monotonic_ns();
    let expired: Vec<Addr> = s
        .maps
        .quarantine
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, v)| v.expires_ns != 0 && v.expires_ns <= now)
        .map(|(k, _)| k)
        .collect();
    let any = !expired.is_empty();
    for key in expired {
        match s.maps.quarantine.remove(&key) {
            Ok(()) => log::info!("quarantine of {} expired", ip_of(&key)),
            Err(e) => log::warn!("cannot remove the expired quarantine of {}: {e}", ip_of(&key)),
        }
        s.quarantine_notes.set_reason(ip_of(&key), None);
    }
    if any {
        s.quarantine_notes.save();
    }
    if let Err(e) = sync_flag(s) {
        log::warn!("cannot update the quarantine flag in CONFIG: {e}");
    }
}

/// Runs [`expire`] every second until the runtime stops.
pub async fn expire_loop(shared: SharedState) {
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        tick.tick().await;
        let shared = shared.clone();
        let _ = tokio::task::spawn_blocking(move || expire(&mut shared.lock().expect("agent state"))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_the_trip_through_the_map_key() {
        for ip in ["198.18.0.9", "fd00::9", "fd00:1:2:3::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_of(&addr_of(ip)), ip);
        }
        let mapped: IpAddr = "::ffff:198.18.0.9".parse().unwrap();
        assert_eq!(ip_of(&addr_of(mapped)), "198.18.0.9".parse::<IpAddr>().unwrap(), "v4-mapped is the v4 address");
    }
}
