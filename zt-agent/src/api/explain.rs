//! `explain`: the verdict the kernel reaches for the first packet of a flow, and why.
//!
//! It uses exactly what the kernel uses: both addresses are resolved in the active
//! generation's ipcache (longest prefix; this host's addresses are `host`), and the
//! (direction, local, peer, protocol, port) question goes to `CompiledPolicy::lookup`, which
//! answers from the very entries written to POLICY. Quarantine is checked first, as in the
//! kernel, and like the kernel it never cuts failsafe traffic. Established flows, replies and rate limits are outside its question: it explains
//! how a *new* flow is judged.

use std::net::IpAddr;

use ipnet::IpNet;
use zt_common::{
    identity::HOST,
    policy::{POLICY_NONE, RULE_NONE},
    proto,
    reason::{self, DIR_EGRESS, DIR_INGRESS, direction_name, reason_name, verdict_name},
};

use super::protocol::{ApiError, ExplainQuery, ExplainedPeer, Explanation, Reply};
use crate::{
    agent::{AgentState, SharedState},
    flows::record::protocol_name,
};

/// `tcp`, `UDP`, `icmpv6`, ... -> protocol number.
pub fn protocol_number(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "tcp" => Some(proto::TCP),
        "udp" => Some(proto::UDP),
        "sctp" => Some(proto::SCTP),
        "icmp" => Some(proto::ICMP),
        "icmpv6" => Some(proto::ICMPV6),
        _ => None,
    }
}

/// The direction explain assumes without `--direction`: traffic to this host is ingress,
/// from it egress; between two other addresses (a routed or bridged path), ingress.
pub fn default_direction(src_identity: u32, dst_identity: u32) -> u8 {
    if dst_identity == HOST {
        DIR_INGRESS
    } else if src_identity == HOST {
        DIR_EGRESS
    } else {
        DIR_INGRESS
    }
}

pub fn explain(shared: &SharedState, q: &ExplainQuery) -> Result<Reply, ApiError> {
    if q.from.to_canonical().is_ipv4() != q.to.to_canonical().is_ipv4() {
        return Err(ApiError::bad_request("--from and --to must both be IPv4 or both IPv6 addresses"));
    }
    let proto = protocol_number(&q.protocol).ok_or_else(|| {
        ApiError::bad_request(format!("--proto {} is not one of tcp, udp, sctp, icmp, icmpv6", q.protocol))
    })?;
    let port = match (proto::has_ports(proto), q.port) {
        (true, Some(port)) => port,
        (true, None) => {
            return Err(ApiError::bad_request(format!("--port is needed for {}", q.protocol)));
        }
        (false, Some(_)) => {
            return Err(ApiError::bad_request(format!("{} has no ports; leave out --port", q.protocol)));
        }
        // The kernel's policy key for port-less protocols carries port 0.
        (false, None) => 0,
    };
    let s = shared.lock().expect("agent state");
    let (src_id, src_prefix) = s.identity_of(q.from);
    let (dst_id, dst_prefix) = s.identity_of(q.to);
    let direction = match q.direction.as_deref() {
        None => default_direction(src_id, dst_id),
        Some("ingress") => DIR_INGRESS,
        Some("egress") => DIR_EGRESS,
        Some(other) => {
            return Err(ApiError::bad_request(format!("--direction {other} is not ingress or egress")));
        }
    };
    let (local, peer) = if direction == DIR_INGRESS { (dst_id, src_id) } else { (src_id, dst_id) };
    let source = peer_of(&s, q.from, src_id, src_prefix);
    let destination = peer_of(&s, q.to, dst_id, dst_prefix);
    let found = s.active().compiled.lookup(direction, local, peer, proto, port);
    let failsafe = found.is_some_and(|v| v.reason == reason::FAILSAFE && v.verdict == reason::VERDICT_ALLOWED);
    let (verdict, why, policy_id, rule) = if (source.quarantined || destination.quarantined) && !failsafe {
        (reason::VERDICT_DENIED, reason::QUARANTINE, POLICY_NONE, RULE_NONE)
    } else {
        match found {
            Some(v) => (v.verdict, v.reason, v.policy_id, v.rule),
            None => (reason::VERDICT_DENIED, reason::NO_POLICY, POLICY_NONE, RULE_NONE),
        }
    };
    let policy = s.active().compiled.policy(policy_id).filter(|_| policy_id != POLICY_NONE);
    Ok(Reply::Explain(Explanation {
        direction: direction_name(direction).to_string(),
        protocol: protocol_name(proto),
        port: proto::has_ports(proto).then_some(port),
        verdict: verdict_name(verdict).to_string(),
        reason: reason_name(why).to_string(),
        source,
        destination,
        local: if direction == DIR_INGRESS { "destination" } else { "source" }.to_string(),
        policy: policy.map(|p| p.name.clone()),
        policy_origin: policy.map(|p| p.origin.location()),
        rule: (policy.is_some() && rule != RULE_NONE).then_some(rule),
        generation: s.generation(),
    }))
}

fn peer_of(s: &AgentState, ip: IpAddr, identity: u32, prefix: Option<IpNet>) -> ExplainedPeer {
    ExplainedPeer {
        ip,
        prefix: prefix.map(|p| p.to_string()),
        identity,
        labels: s.labels_of(identity),
        quarantined: s.is_quarantined(ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_direction_protects_this_host() {
        assert_eq!(default_direction(300, HOST), DIR_INGRESS);
        assert_eq!(default_direction(HOST, 300), DIR_EGRESS);
        assert_eq!(default_direction(300, 301), DIR_INGRESS);
    }

    #[test]
    fn protocol_names_are_case_insensitive() {
        assert_eq!(protocol_number("TCP"), Some(6));
        assert_eq!(protocol_number("icmpv6"), Some(58));
        assert_eq!(protocol_number("gre"), None);
    }
}
