//! Synthetic kernel tables for the datapath cost measurements: N exact-port policy entries
//! spread over many identity pairs, the catch-alls a compiled policy always has, and a
//! large ipcache of /32, /24, /128 and /64 prefixes — so the LPM tries really hold them —
//! plus the few entries the probe packets are meant to hit.
//!
//! Probe addresses: clients in 198.18.0.0/25 and fd00::/121 (identity [`PROBE_PEER`]), the
//! protected server 198.18.0.200 / fd00::c8 (identity [`PROBE_LOCAL`]). No synthetic prefix
//! covers them: synthetic IPv4 prefixes live in 198.18.1.0–198.18.255.255 and 198.19.0.0/16,
//! IPv6 ones in fd00:1::/32 and fd00:2::/32.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use zt_agent::datapath::Tables;
use zt_common::{
    identity::{ANY, FIRST_ALLOCATED, WORLD},
    policy::{PREFIX_ANY_PROTO, PREFIX_PORT, PolicyKey, PolicyValue, RULE_NONE},
    ratelimit::{RATE_MAX, RateLimit},
    reason::{DEFAULT_DENY, DIR_EGRESS, DIR_INGRESS, POLICY, VERDICT_ALLOWED, VERDICT_DENIED},
};

/// The protected workload the probes are addressed to.
pub const PROBE_LOCAL: u32 = FIRST_ALLOCATED;
/// The probes' senders.
pub const PROBE_PEER: u32 = 900_000;
/// The port the probe peer may reach; every other port is denied by default.
pub const ALLOWED_PORT: u16 = 5000;
pub const DENIED_PORT: u16 = 6000;
/// The port the probe peer may reach under a per-source rate limit (index 1) of
/// [`RATE_MAX`] new flows a second: a bucket is charged but never runs dry by itself.
pub const LIMITED_PORT: u16 = 5001;
/// Local identities the synthetic entries protect (PROBE_LOCAL is the first).
const LOCALS: u32 = 64;
/// Peer identities the synthetic entries and prefixes are spread over.
const PEERS: u32 = 4096;
const FIRST_PEER: u32 = 1000;
const UDP: u8 = 17;

pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xc8);

/// Client address `host` (1..=126) of the probe peer's prefix.
pub fn client(v6: bool, host: u8) -> IpAddr {
    debug_assert!((1..=126).contains(&host));
    if v6 {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(host)).into()
    } else {
        Ipv4Addr::new(198, 18, 0, host).into()
    }
}

pub fn server(v6: bool) -> IpAddr {
    if v6 { SERVER_V6.into() } else { SERVER_V4.into() }
}

/// The UDP 5-tuple as the datapath keys flows (ports in host order).
pub fn tuple(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> zt_common::conntrack::CtKey {
    let addr = |ip: IpAddr| match ip {
        IpAddr::V4(a) => (zt_common::addr::Addr::from_v4(a.octets()), zt_common::addr::FAMILY_V4),
        IpAddr::V6(a) => (zt_common::addr::Addr::from_v6(a.octets()), zt_common::addr::FAMILY_V6),
    };
    let ((src, family), (dst, _)) = (addr(src), addr(dst));
    zt_common::conntrack::CtKey { src, dst, src_port: sport, dst_port: dport, proto: UDP, family, _pad: [0; 2] }
}

fn value(verdict: u8, reason: u8, policy_id: u32, rule: u32) -> PolicyValue {
    PolicyValue::new(verdict, reason, policy_id, rule)
}

/// Tables with `rules` exact-port allow entries (one of them the probe's) and
/// `prefixes` synthetic ipcache prefixes (half IPv4, half IPv6).
pub fn tables(rules: usize, prefixes: usize) -> Tables {
    let mut t = Tables::default();
    let deny = value(VERDICT_DENIED, DEFAULT_DENY, 0, RULE_NONE);
    let allow = |rule: usize| value(VERDICT_ALLOWED, POLICY, 1, rule as u32);
    let key = |dir, local, peer, port| PolicyKey::new(0, dir, local, peer, UDP, port);
    // Zero trust: everything is isolated; then each protected local is isolated explicitly,
    // as the compiler does for identities a policy selects.
    for dir in [DIR_INGRESS, DIR_EGRESS] {
        t.policy.push((PREFIX_ANY_PROTO, PolicyKey::new(0, dir, ANY, ANY, 0, 0), deny));
    }
    let locals = LOCALS.min(rules.max(1) as u32);
    for l in 0..locals {
        t.policy.push((PREFIX_ANY_PROTO, PolicyKey::new(0, DIR_INGRESS, PROBE_LOCAL + l, ANY, 0, 0), deny));
    }
    t.policy.push((PREFIX_PORT, key(DIR_INGRESS, PROBE_LOCAL, PROBE_PEER, ALLOWED_PORT), allow(0)));
    let limited = allow(rules).with_rate_limit(1);
    t.policy.push((PREFIX_PORT, key(DIR_INGRESS, PROBE_LOCAL, PROBE_PEER, LIMITED_PORT), limited));
    t.rate_limits.push(RateLimit::new(RATE_MAX, RATE_MAX));
    for i in 1..rules as u32 {
        let local = PROBE_LOCAL + i % locals;
        let peer = FIRST_PEER + (i / locals) % PEERS;
        let port = 10_000 + (i / (locals * PEERS)) as u16;
        t.policy.push((PREFIX_PORT, key(DIR_INGRESS, local, peer, port), allow(i as usize)));
    }

    t.ipcache.push(("0.0.0.0/0".parse().unwrap(), WORLD));
    t.ipcache.push(("::/0".parse().unwrap(), WORLD));
    t.ipcache.push(("198.18.0.0/25".parse().unwrap(), PROBE_PEER));
    t.ipcache.push(("fd00::/121".parse().unwrap(), PROBE_PEER));
    t.ipcache.push((IpNet::from(IpAddr::from(SERVER_V4)), PROBE_LOCAL));
    t.ipcache.push((IpNet::from(IpAddr::from(SERVER_V6)), PROBE_LOCAL));
    let identity = |i: usize| FIRST_PEER + (i as u32 % PEERS);
    let v4 = prefixes / 2;
    for i in 0..v4 {
        // 255 /24s in 198.18.1.0–198.18.255.0, then /32s in 198.19.0.0/16.
        let net = if i < 255 {
            IpNet::new(Ipv4Addr::new(198, 18, (i + 1) as u8, 0).into(), 24)
        } else {
            let j = i - 255;
            IpNet::new(Ipv4Addr::new(198, 19, (j >> 8) as u8, j as u8).into(), 32)
        };
        t.ipcache.push((net.expect("valid prefix"), identity(i)));
    }
    for i in 0..prefixes - v4 {
        let j = (i / 2) as u16;
        let net = if i % 2 == 0 {
            IpNet::new(Ipv6Addr::new(0xfd00, 1, 0, j, 0, 0, 0, 0).into(), 64)
        } else {
            IpNet::new(Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, j).into(), 128)
        };
        t.ipcache.push((net.expect("valid prefix"), identity(i)));
    }
    t
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn policy_entries_are_distinct_and_include_the_probe() {
        let t = tables(100_000, 0);
        let keys: HashSet<_> = t.policy.iter().map(|(p, k, _)| (*p, *k)).collect();
        assert_eq!(keys.len(), t.policy.len(), "no entry overwrites another");
        let exact = t.policy.iter().filter(|(p, _, _)| *p == PREFIX_PORT).count();
        assert_eq!(exact, 100_000 + 1, "the synthetic entries and the rate-limited probe port");
        let probe = PolicyKey::new(0, DIR_INGRESS, PROBE_LOCAL, PROBE_PEER, UDP, ALLOWED_PORT);
        assert!(keys.contains(&(PREFIX_PORT, probe)));
        let denied = PolicyKey::new(0, DIR_INGRESS, PROBE_LOCAL, PROBE_PEER, UDP, DENIED_PORT);
        assert!(!keys.contains(&(PREFIX_PORT, denied)));
    }

    #[test]
    fn synthetic_prefixes_are_distinct_and_never_cover_the_probes() {
        let t = tables(10, 100_000);
        let nets: HashSet<_> = t.ipcache.iter().map(|(n, _)| *n).collect();
        assert_eq!(nets.len(), t.ipcache.len());
        assert_eq!(t.ipcache.len(), 100_000 + 6);
        let probes = [client(false, 1), client(false, 126), client(true, 1), server(false), server(true)];
        for (net, id) in &t.ipcache {
            if net.prefix_len() == 0 || *id == PROBE_PEER || *id == PROBE_LOCAL {
                continue;
            }
            for p in probes {
                assert!(!net.contains(&p), "{net} covers probe {p}");
            }
        }
    }
}
