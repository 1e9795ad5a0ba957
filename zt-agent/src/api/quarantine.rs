//! `quarantine add | release | list`: translates the requests into the agent core's
//! quarantine calls (`agent::quarantine`, which owns the map, the flag and expiry) and its
//! answers into replies.

use std::net::IpAddr;

use super::protocol::{ApiError, QuarantineEntry, Reply};
use crate::agent::{QuarantineError, Quarantined, SharedState};

fn reply(entries: Vec<Quarantined>) -> Reply {
    Reply::Quarantine {
        entries: entries
            .into_iter()
            .map(|q| QuarantineEntry {
                ip: q.ip,
                expires_in_seconds: q.expires_in_seconds,
                origin: q.origin,
                reason: q.reason,
            })
            .collect(),
    }
}

fn error(e: QuarantineError) -> ApiError {
    match e {
        QuarantineError::ZeroTtl | QuarantineError::BadReason => ApiError::bad_request(e.to_string()),
        QuarantineError::NotQuarantined { .. } => ApiError::not_found(e.to_string()),
        _ => ApiError::failed(e.to_string()),
    }
}

pub fn add(
    shared: &SharedState,
    ip: IpAddr,
    ttl_seconds: Option<u64>,
    reason: Option<String>,
) -> Result<Reply, ApiError> {
    let mut s = shared.lock().expect("agent state");
    s.quarantine(ip, ttl_seconds, reason).map(reply).map_err(error)
}

pub fn release(shared: &SharedState, ip: IpAddr) -> Result<Reply, ApiError> {
    let mut s = shared.lock().expect("agent state");
    s.release(ip).map(reply).map_err(error)
}

pub fn list(shared: &SharedState) -> Result<Reply, ApiError> {
    let s = shared.lock().expect("agent state");
    Ok(reply(s.quarantined()))
}
