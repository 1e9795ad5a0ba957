//! A flow record: one line of the flow log, decoded from a kernel `FlowEvent` and enriched
//! with names. Field names and meanings are the flow-log contract (docs/observability.md).

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use serde::{Deserialize, Serialize};
use zt_common::{
    addr::{Addr, FAMILY_V4},
    event::{FlowEvent, kind_name},
    identity,
    policy::{POLICY_NONE, RULE_NONE},
    proto,
    reason::{direction_name, reason_name, verdict_name},
};

use crate::{clock, labels::Labels};

/// Names for the numbers in one policy generation: what enrichment needs to turn a kernel
/// event's identities, policy id and ifindex into names.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// identity -> labels, shared with the compiled policy they come from.
    pub identities: HashMap<u32, Arc<Labels>>,
    /// policy id -> policy name.
    pub policies: HashMap<u32, String>,
    /// ifindex -> interface name.
    pub interfaces: HashMap<u32, String>,
}

/// One flow-log line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FlowRecord {
    /// RFC 3339 time of the event.
    pub time: String,
    /// allowed | denied | audit
    pub verdict: String,
    /// policy | default-deny | deny-rule | established | failsafe | malformed | ...
    pub reason: String,
    /// What produced the line: start | update | end | deny | audit.
    pub event: String,
    /// ingress | egress (hook direction of the flow's first packet)
    pub direction: String,
    pub iface: Option<String>,
    /// TCP | UDP | SCTP | ICMP | ICMPv6 | other protocol number
    pub protocol: String,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub src_identity: u32,
    pub dst_identity: u32,
    pub src_labels: BTreeMap<String, String>,
    pub dst_labels: BTreeMap<String, String>,
    /// Name of the deciding policy, if a policy decided.
    pub policy: Option<String>,
    /// Index of the deciding rule within that policy's direction.
    pub rule: Option<u32>,
    /// Packets and bytes in the flow's original direction (the packet itself for deny/audit).
    pub packets: u64,
    pub bytes: u64,
    /// Packets and bytes of replies.
    pub reply_packets: u64,
    pub reply_bytes: u64,
    /// Policy generation in force.
    pub generation: u32,
}

pub fn ip_of(addr: &Addr, family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::from(addr.v4_octets()))
    } else {
        IpAddr::V6(Ipv6Addr::from(addr.bytes))
    }
}

pub fn protocol_name(p: u8) -> String {
    proto::name(p).map(str::to_string).unwrap_or_else(|| p.to_string())
}

/// The labels of identity `id`: its label set, or `reserved=<name>` for a reserved one.
pub fn labels_of(names: &Names, id: u32) -> BTreeMap<String, String> {
    if let Some(l) = names.identities.get(&id) {
        return l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }
    let mut l = BTreeMap::new();
    if let Some(r) = identity::reserved_name(id) {
        l.insert("reserved".to_string(), r.to_string());
    }
    l
}

impl FlowRecord {
    /// Decodes and enriches one kernel event.
    pub fn from_event(ev: &FlowEvent, names: &Names) -> FlowRecord {
        let known = ev.family != 0;
        // ICMP has no ports (the datapath tracks echoes by identifier, which is not logged).
        let ports = known && proto::has_ports(ev.proto);
        FlowRecord {
            time: clock::rfc3339(clock::to_system_time(ev.time_ns)),
            verdict: verdict_name(ev.verdict).to_string(),
            reason: reason_name(ev.reason).to_string(),
            event: kind_name(ev.kind).to_string(),
            direction: direction_name(ev.direction).to_string(),
            iface: names.interfaces.get(&ev.ifindex).cloned(),
            protocol: protocol_name(ev.proto),
            src_ip: known.then(|| ip_of(&ev.src, ev.family)),
            src_port: ports.then_some(ev.src_port),
            dst_ip: known.then(|| ip_of(&ev.dst, ev.family)),
            dst_port: ports.then_some(ev.dst_port),
            src_identity: ev.src_identity,
            dst_identity: ev.dst_identity,
            src_labels: labels_of(names, ev.src_identity),
            dst_labels: labels_of(names, ev.dst_identity),
            policy: (ev.policy_id != POLICY_NONE)
                .then(|| names.policies.get(&ev.policy_id).cloned().unwrap_or_else(|| format!("#{}", ev.policy_id))),
            rule: (ev.rule != RULE_NONE && ev.policy_id != POLICY_NONE).then_some(ev.rule),
            packets: ev.packets,
            bytes: ev.bytes,
            reply_packets: ev.rev_packets,
            reply_bytes: ev.rev_bytes,
            generation: ev.generation,
        }
    }

    /// Decodes a raw ring-buffer record; `None` if it is not a whole event.
    pub fn decode(bytes: &[u8]) -> Option<FlowEvent> {
        if bytes.len() < std::mem::size_of::<FlowEvent>() {
            return None;
        }
        // SAFETY: length checked; FlowEvent is plain old data, read unaligned.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const FlowEvent) })
    }

    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("flow records always serialize")
    }
}
