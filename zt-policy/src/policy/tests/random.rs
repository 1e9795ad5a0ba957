//! Randomized equivalence: `CompiledPolicy::lookup` against a brute-force evaluator that reads
//! the resolved rules directly, without atoms, blocks or closure.

use std::sync::Arc;

use super::*;
use crate::policy::model::PodPorts;

/// Tiny deterministic PRNG (xorshift64*), so failures reproduce from the printed seed.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(super) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const LABEL_KEYS: [&str; 3] = ["app", "env", "tier"];
const LABEL_VALUES: [&str; 3] = ["a", "b", "c"];
const ADDRESSES: [&str; 12] = [
    "10.0.0.1/32",
    "10.0.0.2/32",
    "10.0.1.0/24",
    "10.0.1.7/32",
    "10.1.0.0/16",
    "10.1.2.3/32",
    "192.168.1.1/32",
    "192.168.0.0/24",
    "172.16.0.5/32",
    "fd00::1/128",
    "fd00::/120",
    "fd00:1::/64",
];
const CIDRS: [&str; 10] = [
    "10.0.0.0/8",
    "10.0.0.0/16",
    "10.0.1.0/24",
    "10.1.0.0/16",
    "192.168.0.0/16",
    "0.0.0.0/0",
    "fd00::/16",
    "::/0",
    "10.0.0.0/30",
    "172.16.0.0/12",
];
const PORTS: [u16; 8] = [22, 53, 80, 443, 1000, 5000, 8080, 65535];

fn random_labels(rng: &mut Rng, max: usize) -> Labels {
    let mut labels = Labels::new();
    for _ in 0..rng.below(max + 1) {
        labels.insert(rng.pick(&LABEL_KEYS), rng.pick(&LABEL_VALUES));
    }
    labels
}

fn random_peer(rng: &mut Rng) -> Peer {
    match rng.below(3) {
        0 => Peer::Selector(Selector::new(random_labels(rng, 1))),
        1 => Peer::Entity(rng.pick(&[Entity::Host, Entity::World, Entity::Any])),
        _ => {
            let cidr: IpNet = rng.pick(&CIDRS).parse().unwrap();
            let inside: Vec<IpNet> = CIDRS
                .iter()
                .chain(&ADDRESSES)
                .map(|net| net.parse::<IpNet>().unwrap())
                .filter(|net| cidr.contains(net) && net.prefix_len() > cidr.prefix_len())
                .collect();
            let except = (0..rng.below(3)).filter(|_| !inside.is_empty()).map(|_| rng.pick(&inside)).collect();
            Peer::Cidr { cidr, except }
        }
    }
}

fn random_port_rule(rng: &mut Rng) -> PortRule {
    let protocol =
        rng.pick(&[Protocol::Tcp, Protocol::Tcp, Protocol::Udp, Protocol::Sctp, Protocol::Icmp, Protocol::IcmpV6]);
    if !protocol.has_ports() || rng.chance(20) {
        return PortRule { protocol, port: None, end_port: None };
    }
    let port = rng.pick(&PORTS).max(1);
    let end_port = rng.chance(40).then(|| port.saturating_add(rng.below(300) as u16));
    PortRule { protocol, port: Some(port), end_port }
}

fn random_rules(rng: &mut Rng) -> Option<Vec<Rule>> {
    if rng.chance(35) {
        return None;
    }
    let rules = (0..rng.below(4))
        .map(|_| Rule {
            action: if rng.chance(25) { Action::Deny } else { Action::Allow },
            peers: if rng.chance(30) { vec![] } else { (0..1 + rng.below(3)).map(|_| random_peer(rng)).collect() },
            ports: if rng.chance(30) { vec![] } else { (0..1 + rng.below(3)).map(|_| random_port_rule(rng)).collect() },
            rate_limit: None,
            named_ports: vec![],
        })
        .collect();
    Some(rules)
}

fn random_setup(rng: &mut Rng) -> (PolicySet, CompileSettings) {
    let origin = Origin::new("random.yaml", 1);
    let mut set = PolicySet::default();
    let mut claimed: Vec<(IpNet, Labels)> = Vec::new();
    for i in 0..1 + rng.below(6) {
        let mut labels = random_labels(rng, 2);
        // Some endpoints are Kubernetes pods, exempt from default deny; their labels always
        // name them, as the translation of a Pod does.
        let pod = rng.chance(30).then(PodPorts::default);
        if pod.is_some() {
            labels.insert(zt_api::labels::K8S_POD, format!("e{i}"));
        }
        let mut addresses = Vec::new();
        for _ in 0..rng.below(3) {
            let address: IpNet = rng.pick(&ADDRESSES).parse().unwrap();
            // One address, one label set (the parser enforces it).
            if claimed.iter().all(|(net, l)| *net != address || *l == labels) {
                claimed.push((address, labels.clone()));
                addresses.push(address);
            }
        }
        set.endpoints.push(Arc::new(Endpoint {
            name: format!("e{i}"),
            namespace: None,
            addresses,
            labels,
            pod,
            origin: origin.clone(),
        }));
    }
    for i in 0..rng.below(5) {
        set.policies.push(Arc::new(Policy {
            name: format!("p{i}"),
            mode: if rng.chance(30) { Mode::Audit } else { Mode::Enforce },
            selector: Selector::new(if rng.chance(25) { Labels::new() } else { random_labels(rng, 1) }),
            ingress: random_rules(rng),
            egress: random_rules(rng),
            origin: origin.clone(),
            written: Default::default(),
        }));
    }
    let failsafe = match rng.below(3) {
        0 => vec![],
        1 => vec![FailsafeRule::SSH],
        _ => vec![
            FailsafeRule { direction: Direction::Egress, protocol: Protocol::Udp, port: Some(53) },
            FailsafeRule { direction: Direction::Ingress, protocol: Protocol::Icmp, port: None },
        ],
    };
    let settings = CompileSettings {
        default_deny: match rng.below(5) {
            0 | 1 => DefaultDeny::On,
            2 => DefaultDeny::Audit,
            _ => DefaultDeny::Off,
        },
        failsafe,
        host_labels: random_labels(rng, 2),
        host_addresses: if rng.chance(50) { vec!["10.0.0.1".parse().unwrap()] } else { vec![] },
    };
    (set, settings)
}

/// The specification, evaluated directly on the resolved rules for one packet.
fn brute_force(r: &Resolved, direction: u8, local: u32, peer: u32, proto: u8, port: u16) -> PolicyValue {
    let value = PolicyValue::new;
    if r.not_local.contains(&local) {
        return value(reason::VERDICT_ALLOWED, reason::NOT_ISOLATED, POLICY_NONE, RULE_NONE);
    }
    if local == HOST && r.failsafe.iter().any(|(d, ports)| *d == direction && ports.matches(proto, port)) {
        return value(reason::VERDICT_ALLOWED, reason::FAILSAFE, POLICY_NONE, RULE_NONE);
    }
    let names = |set: &BTreeSet<u32>, id: u32| set.contains(&ANY) || (id != ANY && set.contains(&id));
    let evaluate = |with_audit: bool| {
        let counts = |enforcing: bool| enforcing || with_audit;
        let isolating = r
            .isolations
            .iter()
            .filter(|i| i.direction == direction && counts(i.enforcing) && (i.local == ANY || i.local == local))
            .map(|i| i.policy_id)
            .min();
        let isolated = (r.default_deny.isolates() && counts(r.default_deny.enforces()) && !r.pods.contains(&local))
            || isolating.is_some();
        let (mut allow, mut deny) = (None, None);
        for rule in r.rules() {
            if rule.direction != direction || !counts(rule.enforcing) || !names(&rule.locals, local) {
                continue;
            }
            let peer_specific = if peer != ANY && rule.peers.contains(&peer) {
                true
            } else if rule.peers.contains(&ANY) {
                false
            } else {
                continue;
            };
            let Some(specificity) = rule.ports.iter().filter(|p| p.matches(proto, port)).map(|p| p.specificity()).max()
            else {
                continue;
            };
            let rank = (specificity, peer_specific, std::cmp::Reverse(rule.policy_id), std::cmp::Reverse(rule.rule));
            let best = if rule.action == Action::Allow { &mut allow } else { &mut deny };
            if best.as_ref().is_none_or(|(b, _, _)| rank > *b) {
                *best = Some((rank, rule.policy_id, rule.rule));
            }
        }
        if !isolated {
            (reason::VERDICT_ALLOWED, reason::NOT_ISOLATED, POLICY_NONE, RULE_NONE)
        } else if let Some((_, policy_id, rule)) = deny {
            (reason::VERDICT_DENIED, reason::DENY_RULE, policy_id, rule)
        } else if let Some((_, policy_id, rule)) = allow {
            (reason::VERDICT_ALLOWED, reason::POLICY, policy_id, rule)
        } else {
            (reason::VERDICT_DENIED, reason::DEFAULT_DENY, isolating.unwrap_or(POLICY_NONE), RULE_NONE)
        }
    };
    let enforced = evaluate(false);
    let audited = evaluate(true);
    let (verdict, reason, policy_id, rule) = if enforced.0 == reason::VERDICT_DENIED {
        enforced
    } else if audited.0 == reason::VERDICT_DENIED {
        (reason::VERDICT_AUDIT, audited.1, audited.2, audited.3)
    } else {
        enforced
    };
    value(verdict, reason, policy_id, rule)
}

/// Ports worth probing: every rule boundary and its neighbours, plus a few random ones.
fn probe_ports(r: &Resolved, rng: &mut Rng) -> Vec<u16> {
    let mut ports: BTreeSet<u16> = [0, 1, 65535].into_iter().collect();
    for rule in r.rules() {
        for port in &rule.ports {
            if let super::compile::PortMatch::Range { start, end, .. } = *port {
                for p in [start, end] {
                    ports.extend([p.saturating_sub(1), p, p.saturating_add(1)]);
                }
            }
        }
    }
    ports.extend((0..4).map(|_| rng.next() as u16));
    ports.into_iter().collect()
}

#[test]
fn lookup_agrees_with_brute_force_on_random_policies() {
    const SEED: u64 = 0x5eed_2024_0001;
    const CASES: usize = 400;
    let mut rng = Rng(SEED);
    let mut probes = 0usize;
    for case in 0..CASES {
        let (set, settings) = random_setup(&mut rng);
        let (compiled, resolved) =
            compile_resolved(&set, &settings, &mut IdentityAllocator::new(), Limits::DEFAULT, None).unwrap();
        let mut identities: Vec<u32> = compiled.identities.keys().copied().collect();
        identities.push(ANY);
        let ports = probe_ports(&resolved, &mut rng);
        for direction in [DIR_INGRESS, DIR_EGRESS] {
            for &local in &identities {
                for &peer in &identities {
                    for proto in [TCP, UDP, SCTP, ICMP, ICMPV6, 47] {
                        // Only TCP, UDP and SCTP keys have port bits; one port shows the rest.
                        let ports = if zt_common::proto::has_ports(proto) { &ports[..] } else { &ports[..1] };
                        for &port in ports {
                            let want = brute_force(&resolved, direction, local, peer, proto, port);
                            let got = compiled.lookup(direction, local, peer, proto, port);
                            assert_eq!(
                                got,
                                Some(want),
                                "case {case} (seed {SEED:#x}): direction {direction} local {local} peer {peer} \
                                 proto {proto} port {port}\nset: {set:#?}\nsettings: {settings:#?}\nentries: {:#?}",
                                compiled.entries
                            );
                            probes += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(probes > 100_000, "only {probes} probes");
}
