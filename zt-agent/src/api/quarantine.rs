//! `quarantine`: addresses cut off from all traffic, in both directions, established flows
//! included (the kernel checks QUARANTINE before conntrack), until released or expired.
//!
//! The kernel skips the QUARANTINE lookup unless CONFIG has `FLAG_QUARANTINE_ACTIVE`, so the
//! agent keeps that flag set exactly while the map has entries: set after the first insert,
//! cleared after the last removal, and re-checked every second by the expiry task (which
//! also repairs the flag for entries an earlier agent left in the pinned map).

use std::{net::IpAddr, time::Duration};

use zt_common::{addr::Addr, config::FLAG_QUARANTINE_ACTIVE, quarantine::QuarantineValue};

use super::protocol::{ApiError, QuarantineEntry, Reply};
use crate::{
    agent::{AgentState, SharedState},
    datapath::DatapathError,
    flows::clock::monotonic_ns,
};

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
    if addr.bytes[4..].iter().all(|&b| b == 0) {
        IpAddr::from(addr.v4_octets())
    } else {
        IpAddr::from(addr.bytes)
    }
}

pub fn add(shared: &SharedState, ip: IpAddr, ttl_seconds: Option<u64>) -> Result<Reply, ApiError> {
    let expires_ns = match ttl_seconds {
        None => 0,
        Some(0) => {
            return Err(ApiError::bad_request(
                "a quarantine --ttl must be at least 1s",
            ));
        }
        Some(ttl) => monotonic_ns().saturating_add(ttl.saturating_mul(NS_PER_SEC)),
    };
    let mut s = shared.lock().expect("agent state");
    s.maps
        .quarantine
        .insert(addr_of(ip), QuarantineValue::new(expires_ns, crate::flows::clock::monotonic_ns(), zt_common::quarantine::ORIGIN_MANUAL), 0)
        .map_err(|e| {
            ApiError::failed(format!(
                "cannot quarantine {ip}: the QUARANTINE map refused the entry: {e}"
            ))
        })?;
    sync_flag(&mut s).map_err(flag_error)?;
    log::info!("quarantined {ip}");
    Ok(Reply::Quarantine {
        entries: entries(&s),
    })
}

pub fn release(shared: &SharedState, ip: IpAddr) -> Result<Reply, ApiError> {
    let mut s = shared.lock().expect("agent state");
    let key = addr_of(ip);
    if s.maps.quarantine.get(&key, 0).is_err() {
        return Err(ApiError::not_found(format!(
            "{ip} is not quarantined; see ztctl quarantine list"
        )));
    }
    s.maps.quarantine.remove(&key).map_err(|e| {
        ApiError::failed(format!("cannot release {ip} from the QUARANTINE map: {e}"))
    })?;
    sync_flag(&mut s).map_err(flag_error)?;
    log::info!("released {ip} from quarantine");
    Ok(Reply::Quarantine {
        entries: entries(&s),
    })
}

pub fn list(shared: &SharedState) -> Result<Reply, ApiError> {
    let s = shared.lock().expect("agent state");
    Ok(Reply::Quarantine {
        entries: entries(&s),
    })
}

/// The entries still in force, sorted by address.
fn entries(s: &AgentState) -> Vec<QuarantineEntry> {
    let now = monotonic_ns();
    let mut out: Vec<QuarantineEntry> = s
        .maps
        .quarantine
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, v)| v.expires_ns == 0 || v.expires_ns > now)
        .map(|(k, v)| QuarantineEntry {
            ip: ip_of(&k),
            expires_in_seconds: (v.expires_ns != 0)
                .then(|| (v.expires_ns - now).div_ceil(NS_PER_SEC)),
        })
        .collect();
    out.sort_by_key(|e| e.ip);
    out
}

/// Sets `FLAG_QUARANTINE_ACTIVE` in CONFIG (and the agent's copy) iff the map has entries.
/// CONFIG is read, modified and written under the state lock, like every generation switch.
fn sync_flag(s: &mut AgentState) -> Result<(), DatapathError> {
    let occupied = s.maps.quarantine.keys().next().is_some_and(|k| k.is_ok());
    let mut cfg = s.maps.read_config()?;
    let flags = if occupied {
        cfg.flags | FLAG_QUARANTINE_ACTIVE
    } else {
        cfg.flags & !FLAG_QUARANTINE_ACTIVE
    };
    if flags != cfg.flags {
        cfg.flags = flags;
        s.maps.write_config(&cfg)?;
    }
    s.cfg.flags = flags;
    Ok(())
}

fn flag_error(e: DatapathError) -> ApiError {
    ApiError::failed(format!("cannot update the quarantine flag in CONFIG: {e}"))
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
    for key in expired {
        match s.maps.quarantine.remove(&key) {
            Ok(()) => log::info!("quarantine of {} expired", ip_of(&key)),
            Err(e) => log::warn!(
                "cannot remove the expired quarantine of {}: {e}",
                ip_of(&key)
            ),
        }
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
        let _ =
            tokio::task::spawn_blocking(move || expire(&mut shared.lock().expect("agent state")))
                .await;
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
        assert_eq!(
            ip_of(&addr_of(mapped)),
            "198.18.0.9".parse::<IpAddr>().unwrap(),
            "v4-mapped is the v4 address"
        );
    }
}
