//! `status`: what the agent enforces, where, and how busy it is — interfaces and their
//! ingress hook, revision and generation, failsafe rules, map occupancy and memory, the datapath's
//! counters by (verdict, reason) and the flow pipeline's counters.

use std::sync::atomic::Ordering;

use zt_common::{
    map_names,
    reason::{reason_name, verdict_name},
};

use super::protocol::{
    ApiError, CounterRow, InterfaceStatus, MapMemoryRow, MapOccupancy, PipelineCounters, Reply, StatusReport,
};
use crate::{
    agent::SharedState,
    policy::compile::{MAX_IPCACHE_PREFIXES, MAX_POLICY_ENTRIES},
};

pub fn report(shared: &SharedState) -> Result<Reply, ApiError> {
    let s = shared.lock().expect("agent state");
    let stats = s.stats().map_err(|e| ApiError::failed(format!("cannot read the datapath counters: {e}")))?;
    let map =
        |name: &str, entries: usize, max: u64| MapOccupancy { map: name.to_string(), entries: entries as u64, max };
    let maps = vec![
        map("conntrack", s.conntrack_len(), s.options().map_sizes.entries(map_names::CONNTRACK).into()),
        // A generation may use half of POLICY and IPCACHE: the next one is written beside it.
        map("policy", s.active().tables.policy.len(), MAX_POLICY_ENTRIES as u64),
        map("ipcache", s.active().tables.ipcache.len(), MAX_IPCACHE_PREFIXES as u64),
        map("quarantine", s.quarantine_len(), s.options().map_sizes.entries(map_names::QUARANTINE).into()),
    ];
    let counters = stats
        .nonzero()
        .map(|(v, r, c)| CounterRow {
            verdict: verdict_name(v).to_string(),
            reason: reason_name(r).to_string(),
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect();
    let report = StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: s.uptime().as_secs(),
        interfaces: s
            .attachments()
            .iter()
            .map(|a| InterfaceStatus {
                iface: a.iface.clone(),
                ifindex: a.ifindex,
                ingress: a.ingress.to_string(),
                why: a.why.clone(),
            })
            .collect(),
        revision: s.revision(),
        generation: s.generation(),
        policies: s.active().compiled.policies.len(),
        identities: s.active().compiled.identities.len(),
        default_deny: s.settings().default_deny.enforces(),
        default_deny_audit: s.settings().default_deny == crate::policy::DefaultDeny::Audit,
        failsafe: s.settings().failsafe.iter().map(ToString::to_string).collect(),
        clock: s.clock().to_string(),
        maps,
        memory: crate::datapath::memory::maps_of_this_process()
            .into_iter()
            .map(|m| MapMemoryRow { map: m.name, max_entries: m.max_entries, bytes: m.bytes })
            .collect(),
        counters,
        pipeline: PipelineCounters {
            events_read: s.pipeline().events_read.load(Ordering::Relaxed),
            events_malformed: s.pipeline().events_malformed.load(Ordering::Relaxed),
            records_dropped: s.pipeline().records_dropped.load(Ordering::Relaxed),
        },
        kubernetes_objects_rejected: s.telemetry().kubernetes.get().map(|k| k.set_aside.load(Ordering::Relaxed)),
    };
    Ok(Reply::Status(Box::new(report)))
}
