//! `explain`: the verdict the kernel reaches for the first packet of a flow, and why — one
//! implementation for the agent's API (the active generation) and `ztctl`'s offline
//! commands (a generation compiled from files).
//!
//! It uses exactly what the kernel uses: both addresses are resolved in the generation's
//! ipcache (longest prefix, else world; this host's addresses are `host`), and the
//! (direction, local, peer, protocol, port) question goes to [`CompiledPolicy::lookup`],
//! which answers from the very entries written to POLICY. Quarantine is checked first, as
//! in the kernel, and like the kernel it never cuts failsafe traffic; it is runtime state,
//! so the caller says which addresses are quarantined (offline: none). Established flows,
//! replies and rate limits are outside its question: it explains how a *new* flow is judged.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use ipnet::IpNet;
use zt_api::protocol::{ExplainQuery, ExplainedPeer, Explanation};
use zt_common::{
    identity::{HOST, WORLD, reserved_name},
    policy::{POLICY_NONE, RULE_NONE},
    proto,
    reason::{self, DIR_EGRESS, DIR_INGRESS, direction_name, reason_name, verdict_name},
};

use crate::policy::CompiledPolicy;

/// What is wrong with a question; each problem names the option (`--port`) or, in a cases
/// file, the field (`port`) — see [`QueryError::sentence`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// `from` and `to` are of different address families.
    MixedFamilies,
    UnknownProtocol(String),
    /// A protocol with ports, and no port.
    PortNeeded(String),
    /// A port for a protocol without ports.
    NoPorts(String),
    UnknownDirection(String),
}

impl QueryError {
    /// The sentence, with fields named as `name` spells them: `|f| format!("--{f}")` for
    /// command-line options, `|f| f.to_string()` for the fields of a cases file.
    pub fn sentence(&self, name: impl Fn(&str) -> String) -> String {
        match self {
            QueryError::MixedFamilies => {
                format!("{} and {} must both be IPv4 or both IPv6 addresses", name("from"), name("to"))
            }
            QueryError::UnknownProtocol(p) => {
                format!("{} {p} is not one of tcp, udp, sctp, icmp, icmpv6", name("proto"))
            }
            QueryError::PortNeeded(p) => format!("{} is needed for {} {p}", name("port"), name("proto")),
            QueryError::NoPorts(p) => format!("{} {p} has no ports; leave out {}", name("proto"), name("port")),
            QueryError::UnknownDirection(d) => format!("{} {d} is not ingress or egress", name("direction")),
        }
    }
}

/// As the command-line options name the fields (`--port is needed for tcp`).
impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sentence(|field| format!("--{field}")))
    }
}

impl std::error::Error for QueryError {}

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

/// The identity `ip` resolves to in `ipcache`: the longest matching prefix, else world.
pub fn resolve(ipcache: &[(IpNet, u32)], ip: IpAddr) -> (u32, Option<IpNet>) {
    let ip = ip.to_canonical();
    ipcache
        .iter()
        .filter(|(net, _)| net.contains(&ip))
        .max_by_key(|(net, _)| net.prefix_len())
        .map_or((WORLD, None), |&(net, id)| (id, Some(net)))
}

/// The labels of `identity` in `compiled`: its label set, or `reserved=<name>` for a
/// reserved one.
pub fn labels_of(compiled: &CompiledPolicy, identity: u32) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = compiled
        .identities
        .get(&identity)
        .map(|l| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        .unwrap_or_default();
    if labels.is_empty()
        && let Some(name) = reserved_name(identity)
    {
        labels.insert("reserved".to_string(), name.to_string());
    }
    labels
}

/// A question's flow as the kernel keys it, once [`check`] found it well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub proto: u8,
    /// 0 for protocols without ports, as in the kernel's policy key.
    pub port: u16,
    /// `None`: explain's default, decided once both addresses are resolved.
    pub direction: Option<u8>,
}

/// Checks a question without judging it: both addresses of one family, a known protocol,
/// a port exactly when the protocol has ports, a known direction. Clients run it before
/// asking an agent, so a malformed question is a usage error even without one.
pub fn check(q: &ExplainQuery) -> Result<Flow, QueryError> {
    if q.from.to_canonical().is_ipv4() != q.to.to_canonical().is_ipv4() {
        return Err(QueryError::MixedFamilies);
    }
    let proto = protocol_number(&q.protocol).ok_or_else(|| QueryError::UnknownProtocol(q.protocol.clone()))?;
    let port = match (proto::has_ports(proto), q.port) {
        (true, Some(port)) => port,
        (true, None) => return Err(QueryError::PortNeeded(q.protocol.clone())),
        (false, Some(_)) => return Err(QueryError::NoPorts(q.protocol.clone())),
        // The kernel's policy key for port-less protocols carries port 0.
        (false, None) => 0,
    };
    let direction = match q.direction.as_deref() {
        None => None,
        Some("ingress") => Some(DIR_INGRESS),
        Some("egress") => Some(DIR_EGRESS),
        Some(other) => return Err(QueryError::UnknownDirection(other.to_string())),
    };
    Ok(Flow { proto, port, direction })
}

/// What explain judges by: a compiled policy, the ipcache written with it, and which
/// addresses are quarantined now.
pub struct Judge<'a, Q: Fn(IpAddr) -> bool> {
    pub compiled: &'a CompiledPolicy,
    pub ipcache: &'a [(IpNet, u32)],
    pub quarantined: Q,
    /// The generation to report; 0 for a policy compiled offline.
    pub generation: u32,
}

/// A judge of files compiled offline: no quarantine, generation 0.
pub fn offline<'a>(compiled: &'a CompiledPolicy, ipcache: &'a [(IpNet, u32)]) -> Judge<'a, fn(IpAddr) -> bool> {
    Judge { compiled, ipcache, quarantined: |_| false, generation: 0 }
}

impl<Q: Fn(IpAddr) -> bool> Judge<'_, Q> {
    /// The verdict of the first packet of the flow `q` asks about, and why.
    pub fn explain(&self, q: &ExplainQuery) -> Result<Explanation, QueryError> {
        let Flow { proto, port, direction } = check(q)?;
        let (src_id, src_prefix) = resolve(self.ipcache, q.from);
        let (dst_id, dst_prefix) = resolve(self.ipcache, q.to);
        let direction = direction.unwrap_or_else(|| default_direction(src_id, dst_id));
        let (local, peer) = if direction == DIR_INGRESS { (dst_id, src_id) } else { (src_id, dst_id) };
        let source = self.peer(q.from, src_id, src_prefix);
        let destination = self.peer(q.to, dst_id, dst_prefix);
        let found = self.compiled.lookup(direction, local, peer, proto, port);
        let failsafe = found.is_some_and(|v| v.reason == reason::FAILSAFE && v.verdict == reason::VERDICT_ALLOWED);
        let (verdict, why, policy_id, rule) = if (source.quarantined || destination.quarantined) && !failsafe {
            (reason::VERDICT_DENIED, reason::QUARANTINE, POLICY_NONE, RULE_NONE)
        } else {
            match found {
                Some(v) => (v.verdict, v.reason, v.policy_id, v.rule),
                None => (reason::VERDICT_DENIED, reason::NO_POLICY, POLICY_NONE, RULE_NONE),
            }
        };
        let policy = self.compiled.policy(policy_id).filter(|_| policy_id != POLICY_NONE);
        Ok(Explanation {
            direction: direction_name(direction).to_string(),
            protocol: zt_api::record::protocol_name(proto),
            port: proto::has_ports(proto).then_some(port),
            verdict: verdict_name(verdict).to_string(),
            reason: reason_name(why).to_string(),
            source,
            destination,
            local: if direction == DIR_INGRESS { "destination" } else { "source" }.to_string(),
            policy: policy.map(|p| p.name.clone()),
            policy_origin: policy.map(|p| p.origin.location()),
            rule: (policy.is_some() && rule != RULE_NONE).then_some(rule),
            generation: self.generation,
        })
    }

    fn peer(&self, ip: IpAddr, identity: u32, prefix: Option<IpNet>) -> ExplainedPeer {
        ExplainedPeer {
            ip,
            prefix: prefix.map(|p| p.to_string()),
            identity,
            labels: labels_of(self.compiled, identity),
            quarantined: (self.quarantined)(ip),
        }
    }
}

#[cfg(test)]
mod tests;
