//! The conntrack sweep: flows that end by silence (UDP, ICMP, abandoned TCP) never show the
//! kernel a closing packet, so the agent walks CONNTRACK periodically, reports the end of
//! expired flows from their counters, and deletes them. Closed TCP flows whose end the
//! kernel already reported are deleted once their closing timeout passes.

use aya::maps::{HashMap, MapData};
use zt_common::{
    config::Config,
    conntrack::{self, CT_AUDIT, CT_END_REPORTED, CtKey, CtValue},
    event::{FlowEvent, KIND_END},
    reason::{VERDICT_ALLOWED, VERDICT_AUDIT},
};

/// The END event of a flow, as the kernel would have written it.
pub fn end_event(key: &CtKey, ct: &CtValue, now_ns: u64) -> FlowEvent {
    FlowEvent {
        time_ns: now_ns,
        packets: ct.fwd_packets,
        bytes: ct.fwd_bytes,
        rev_packets: ct.rev_packets,
        rev_bytes: ct.rev_bytes,
        src: key.src,
        dst: key.dst,
        src_port: key.src_port,
        dst_port: key.dst_port,
        src_identity: ct.src_identity,
        dst_identity: ct.dst_identity,
        policy_id: ct.policy_id,
        rule: ct.rule,
        ifindex: ct.ifindex,
        generation: ct.ingress_gen.max(ct.egress_gen),
        kind: KIND_END,
        verdict: if ct.flags & CT_AUDIT != 0 { VERDICT_AUDIT } else { VERDICT_ALLOWED },
        reason: ct.reason,
        direction: ct.direction,
        proto: key.proto,
        family: key.family,
        tcp_flags: ct.state,
        _pad: 0,
    }
}

/// Removes expired flows; returns END events for those whose end was not yet reported.
pub fn sweep(conntrack: &mut HashMap<MapData, CtKey, CtValue>, cfg: &Config, now_ns: u64) -> Vec<FlowEvent> {
    let mut expired = Vec::new();
    for item in conntrack.iter() {
        let Ok((key, ct)) = item else { continue };
        if conntrack::expired(&ct, key.proto, cfg, now_ns) {
            expired.push((key, ct));
        }
    }
    let mut ends = Vec::new();
    for (key, ct) in expired {
        // Re-read: the flow may have seen a packet since the walk.
        match conntrack.get(&key, 0) {
            Ok(now_ct) if now_ct.last_seen_ns == ct.last_seen_ns => {}
            _ => continue,
        }
        if conntrack.remove(&key).is_ok() && ct.flags & CT_END_REPORTED == 0 {
            ends.push(end_event(&key, &ct, now_ns));
        }
    }
    ends
}
