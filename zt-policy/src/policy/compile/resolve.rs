//! Step 2, resolution: selectors, entities and CIDR peers become sets of identities (`ANY`
//! for "everything"), port items become port matches, and each policy gets its id.

use std::collections::BTreeSet;
use std::sync::Arc;

use ipnet::IpNet;
use zt_common::identity::{ANY, HOST, WORLD};

use super::universe::{Ids, Universe};
use super::{CompileSettings, DefaultDeny, PolicyInfo};
use crate::parallel;
use crate::policy::model::{
    Action, Direction, Entity, Mode, NamedPortRule, Origin, Peer, Policy, PolicySet, PortRule, RateLimit, Written,
};
use crate::policy::ports::{PortBlock, decompose_range};

/// How precisely a rule names the port of a packet; the most precise allow (or deny) is
/// the one a verdict reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PortSpecificity {
    AnyProtocol,
    AllPorts,
    Range,
    Exact,
}

/// A port item after validation: which (protocol, port) pairs it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PortMatch {
    AnyProtocol,
    Protocol(u8),
    Range { proto: u8, start: u16, end: u16 },
}

impl PortMatch {
    pub(super) fn from_rule(rule: &PortRule) -> Self {
        let proto = rule.protocol.number();
        match rule.range() {
            Some((start, end)) => PortMatch::Range { proto, start, end },
            None => PortMatch::Protocol(proto),
        }
    }

    pub(crate) fn specificity(&self) -> PortSpecificity {
        match *self {
            PortMatch::AnyProtocol => PortSpecificity::AnyProtocol,
            PortMatch::Protocol(_) => PortSpecificity::AllPorts,
            PortMatch::Range { start, end, .. } if start == end => PortSpecificity::Exact,
            PortMatch::Range { .. } => PortSpecificity::Range,
        }
    }

    /// True when a packet with this protocol and destination port matches (the reference
    /// evaluator's test; the compiler itself works on blocks).
    #[cfg(test)]
    pub(crate) fn matches(&self, proto: u8, port: u16) -> bool {
        match *self {
            PortMatch::AnyProtocol => true,
            PortMatch::Protocol(p) => p == proto,
            PortMatch::Range { proto: p, start, end } => p == proto && (start..=end).contains(&port),
        }
    }

    pub(super) fn blocks(&self) -> Vec<PortBlock> {
        match *self {
            PortMatch::AnyProtocol => vec![PortBlock::ANY],
            PortMatch::Protocol(proto) => vec![PortBlock::protocol(proto)],
            PortMatch::Range { proto, start, end } => decompose_range(proto, start, end),
        }
    }
}

/// One rule with its selectors resolved to identities. `ANY` (0) in `locals` or `peers`
/// means every identity.
#[derive(Clone, Debug)]
pub(crate) struct ResolvedRule {
    pub direction: u8,
    pub policy_id: u32,
    /// Index within the policy's rules for this direction.
    pub rule: u32,
    pub action: Action,
    /// False for audit-mode policies.
    pub enforcing: bool,
    pub locals: Ids,
    pub peers: Ids,
    pub ports: Vec<PortMatch>,
    /// Ingress allow rules only.
    pub rate_limit: Option<RateLimit>,
}

/// A local identity isolated for a direction by a policy that has rules for it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Isolation {
    pub direction: u8,
    pub local: u32,
    pub enforcing: bool,
    /// The isolating policy: a `default-deny` verdict names it.
    pub policy_id: u32,
}

/// Everything the verdict of a packet depends on, in identity terms.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    /// Each policy's resolution, in id order: shared with the memo, not copied out of it
    /// (a 100k-rule policy's rules are read by [`Resolved::rules`] where they are).
    pub policies: Vec<Arc<PolicyResolution>>,
    pub isolations: Vec<Isolation>,
    pub failsafe: Vec<(u8, PortMatch)>,
    pub default_deny: DefaultDeny,
    /// Identities that are only ever peers (world and CIDR prefixes): they have no policy
    /// of their own, so traffic judged with one of them as the local side — the egress hook
    /// forwarding a packet *from* world, the ingress hook forwarding one *to* world — is not
    /// isolated; the workload's side of the flow is judged at its own hook.
    pub not_local: BTreeSet<u32>,
    /// Kubernetes pods: isolated only by the policies that select them, never by
    /// `default_deny` (the upstream NetworkPolicy model).
    pub pods: BTreeSet<u32>,
}

impl Resolved {
    /// Every resolved rule, policy by policy.
    pub fn rules(&self) -> impl Iterator<Item = &ResolvedRule> {
        self.policies.iter().flat_map(|p| p.rules.iter())
    }
}

/// What one policy resolves to under one universe: its rules, the locals it isolates, its
/// warnings and what `explain` and the flow log name it by.
#[derive(Debug)]
pub(crate) struct PolicyResolution {
    pub rules: Vec<ResolvedRule>,
    pub isolations: Vec<Isolation>,
    pub warnings: Vec<String>,
    pub info: PolicyInfo,
}

/// Every policy of a compile with its resolution, in id order.
pub(crate) type Resolutions = Vec<(Arc<Policy>, Arc<PolicyResolution>)>;

/// Fewer policies than this per thread are resolved on the calling thread.
const POLICIES_PER_THREAD: usize = 256;

/// A policy with its id and the earlier resolution `reuse` offered for it, if any.
type Offered<'a> = (u32, &'a Arc<Policy>, Option<Arc<PolicyResolution>>);

/// Offers an earlier resolution of a policy as the given id (see [`resolve`]).
pub(super) type Reuse<'a> = dyn FnMut(&Arc<Policy>, u32) -> Option<Arc<PolicyResolution>> + 'a;

/// Step 2: selectors, entities and CIDRs -> identities; policies get their ids (1-based, in
/// name order). `reuse` offers a policy's resolution from an earlier compile against this
/// same universe and settings (see [`super::memo`]); with `keep`, every policy is returned
/// with the resolution used, in id order, for the memo.
pub(super) fn resolve(
    set: &PolicySet,
    settings: &CompileSettings,
    universe: &Universe,
    warnings: &mut Vec<String>,
    reuse: &mut Reuse,
    keep: bool,
) -> (Resolved, Vec<PolicyInfo>, Resolutions) {
    let mut resolved = Resolved {
        policies: Vec::with_capacity(set.policies.len()),
        isolations: Vec::new(),
        failsafe: settings.failsafe.iter().map(|f| (f.direction.to_u8(), f.port_match())).collect(),
        default_deny: settings.default_deny,
        not_local: universe.identities.keys().filter(|id| !universe.selectable.contains(id)).copied().collect(),
        pods: universe.pods().collect(),
    };
    let mut policies: Vec<_> = set.policies.iter().collect();
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let any: Ids = Arc::new(BTreeSet::from([ANY]));
    let mut infos = Vec::with_capacity(policies.len());
    let mut used = Vec::with_capacity(policies.len());
    // Earlier resolutions first (`reuse` is the caller's), then the others resolved on all
    // cores: a policy's resolution reads only the universe and the settings.
    let offered: Vec<Offered> = policies
        .into_iter()
        .enumerate()
        .map(|(index, policy)| {
            let policy_id = index as u32 + 1;
            (policy_id, policy, reuse(policy, policy_id))
        })
        .collect();
    let resolutions = parallel::chunks(&offered, POLICIES_PER_THREAD, |part| {
        part.iter()
            .map(|(policy_id, policy, offered)| {
                offered
                    .clone()
                    .unwrap_or_else(|| Arc::new(resolve_policy(policy, *policy_id, settings, universe, &any)))
            })
            .collect::<Vec<_>>()
    });
    for ((_, policy, _), one) in offered.iter().zip(resolutions.into_iter().flatten()) {
        resolved.isolations.extend(one.isolations.iter().copied());
        warnings.extend(one.warnings.iter().cloned());
        infos.push(one.info.clone());
        if keep {
            used.push(((*policy).clone(), one.clone()));
        }
        resolved.policies.push(one);
    }
    (resolved, infos, used)
}

/// One policy's resolution with id `policy_id`.
fn resolve_policy(
    policy: &Policy,
    policy_id: u32,
    settings: &CompileSettings,
    universe: &Universe,
    any: &Ids,
) -> PolicyResolution {
    let mut out = PolicyResolution {
        rules: Vec::new(),
        isolations: Vec::new(),
        warnings: Vec::new(),
        info: PolicyInfo {
            id: policy_id,
            name: policy.name.clone(),
            mode: policy.mode,
            origin: policy.origin.clone(),
            selected: Vec::new(),
        },
    };
    let warnings = &mut out.warnings;
    let origin = &policy.origin;
    let locals = if policy.selector.is_all() { any.clone() } else { Arc::new(universe.select(&policy.selector)) };
    let written = &policy.written;
    if locals.is_empty() {
        warnings.push(format!(
            "{origin}: {} {} selects {}, so policy {} has no effect",
            written.selector_path(),
            policy.selector,
            written.selectable(),
            policy.name
        ));
    }
    let enforcing = policy.mode == Mode::Enforce;
    for direction in Direction::BOTH {
        let Some(rules) = policy.rules(direction) else {
            continue;
        };
        let dir = direction.to_u8();
        out.isolations.extend(locals.iter().map(|&local| Isolation { direction: dir, local, enforcing, policy_id }));
        if !rules.is_empty() && rules.iter().all(|r| r.action == Action::Deny) && !settings.default_deny.enforces() {
            warnings.push(format!(
                "{origin}: every {direction} rule of policy {} is a deny rule, yet the policy still isolates what \
                 it selects, so {direction} traffic it does not deny is dropped too unless another policy allows it",
                policy.name
            ));
        }
        for (i, rule) in rules.iter().enumerate() {
            // Paths only name things in warnings: built when one is given, since a large
            // policy has hundreds of thousands of rules and peers and almost no warnings.
            let rule_path = || written.rule_path(direction, i);
            let peer = |j: usize, peer: &Peer, warnings: &mut Vec<String>| {
                let path = || written.peer_field(&format!("{}.{}[{j}]", rule_path(), direction.peer_field()), peer);
                resolve_peer(universe, peer, origin, (&path, written), warnings)
            };
            let peers = match rule.peers.as_slice() {
                [] => any.clone(),
                [one] => peer(0, one, warnings),
                several => {
                    let mut peers = BTreeSet::new();
                    for (j, one) in several.iter().enumerate() {
                        peers.extend(peer(j, one, warnings).iter().copied());
                    }
                    Arc::new(peers)
                }
            };
            if rule.rate_limit.is_some() && !enforcing {
                let rule_path = rule_path();
                warnings.push(format!(
                    "{origin}: {rule_path}.rateLimit has no effect because policy {} is in audit mode, which \
                     never drops; set mode: enforce to limit",
                    policy.name
                ));
            }
            let ports = if rule.all_ports() {
                vec![PortMatch::AnyProtocol]
            } else {
                rule.ports.iter().map(PortMatch::from_rule).collect()
            };
            let resolved_rule = ResolvedRule {
                direction: dir,
                policy_id,
                rule: i as u32,
                action: rule.action,
                enforcing,
                locals: locals.clone(),
                peers,
                ports,
                rate_limit: rule.rate_limit,
            };
            let named = resolve_named_ports(universe, direction, &resolved_rule, &rule.named_ports);
            if !resolved_rule.ports.is_empty() {
                out.rules.push(resolved_rule);
            }
            out.rules.extend(named);
        }
    }
    out.info.selected = locals.iter().copied().collect();
    out
}

/// A rule's named ports, per destination pod: the destination is the local side on ingress
/// and the peer on egress, and each pod gives the names its own numbers, so the rule splits
/// into one rule per destination pod that has any of the names. Pods without them, and
/// destinations that are not pods, match none of the named ports.
fn resolve_named_ports(
    universe: &Universe,
    direction: Direction,
    rule: &ResolvedRule,
    named: &[NamedPortRule],
) -> Vec<ResolvedRule> {
    if named.is_empty() {
        return Vec::new();
    }
    let destinations = match direction {
        Direction::Ingress => &rule.locals,
        Direction::Egress => &rule.peers,
    };
    let pods: Vec<u32> = if destinations.contains(&ANY) {
        universe.pods().collect()
    } else {
        destinations.iter().copied().filter(|&id| universe.is_pod(id)).collect()
    };
    let mut out = Vec::new();
    for pod in pods {
        let ports: Vec<PortMatch> = named
            .iter()
            .filter_map(|n| {
                let port = universe.pod_ports(pod)?.resolve(n.protocol, &n.name)?;
                Some(PortMatch::Range { proto: n.protocol.number(), start: port, end: port })
            })
            .collect();
        if ports.is_empty() {
            continue;
        }
        let only = Arc::new(BTreeSet::from([pod]));
        let (locals, peers) = match direction {
            Direction::Ingress => (only, rule.peers.clone()),
            Direction::Egress => (rule.locals.clone(), only),
        };
        out.push(ResolvedRule { locals, peers, ports, ..rule.clone() });
    }
    out
}

/// The identities one `from`/`to` item stands for; `field` gives the path of its selector
/// or CIDR, as written, for warnings.
pub(super) fn resolve_peer(
    universe: &Universe,
    peer: &Peer,
    origin: &Origin,
    (field, written): (&dyn Fn() -> String, &Written),
    warnings: &mut Vec<String>,
) -> Ids {
    match peer {
        Peer::Entity(Entity::Host) => Arc::new(BTreeSet::from([HOST])),
        Peer::Entity(Entity::World) => Arc::new(BTreeSet::from([WORLD])),
        Peer::Entity(Entity::Any) => Arc::new(BTreeSet::from([ANY])),
        Peer::Selector(selector) => {
            let ids = Arc::new(universe.select(selector));
            if ids.is_empty() {
                let (nothing, field) = (written.selectable(), field());
                warnings
                    .push(format!("{origin}: {field} {selector} matches {nothing}, so it adds no peer to the rule"));
            }
            ids
        }
        Peer::Cidr { cidr, except } => {
            // An identity matches when every prefix that resolves to it lies in the cidr and
            // in no except. Prefixes that merely contain an except are fine: the except has
            // its own, longer ipcache entry, so its addresses never resolve to them.
            let inside = |net: &IpNet| cidr.contains(net) && !except.iter().any(|e| e.contains(net));
            let mut ids = BTreeSet::new();
            for id in universe.owners_within(cidr) {
                let Some(prefixes) = universe.prefixes.get(&id) else {
                    continue; // world: only a /0 peer matches it (below)
                };
                let count = prefixes.iter().filter(|net| inside(net)).count();
                if count == prefixes.len() {
                    ids.insert(id);
                } else if count > 0 {
                    let (who, field) = (universe.describe(id), field());
                    warnings.push(format!(
                        "{origin}: {field} {cidr} covers only some addresses of {who}, so traffic of {who} does \
                         not match it; cover all of its addresses or none"
                    ));
                }
            }
            // World is everything no longer prefix claims: inside any /0 peer. (World is one
            // identity for both families, so 0.0.0.0/0 also matches IPv6 world traffic.)
            if cidr.prefix_len() == 0 {
                ids.insert(WORLD);
            }
            Arc::new(ids)
        }
    }
}
