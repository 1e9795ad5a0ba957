//! Compile: a validated [`PolicySet`] -> ipcache prefixes + POLICY map entries.
//!
//! Second stage of a push, after `parse`. The compiler is pure: it returns a
//! [`CompiledPolicy`] (or an error) and writes nothing; the datapath loader installs the
//! result as the next generation. It runs in four steps:
//!
//! 1. **Identities.** Every endpoint label set, and every CIDR prefix a rule names, gets a
//!    number from the [`IdentityAllocator`]; the ipcache maps each prefix to its number, and
//!    the default routes to `world`.
//! 2. **Resolution.** Selectors, entities and CIDR peers become sets of identities (ANY for
//!    "everything"), port items become port matches (`PortMatch`, `ResolvedRule`).
//! 3. **Atoms.** Each rule x local x peer x port block is an *atom*: a key region and what it
//!    contributes (an allow, a deny, isolation, failsafe). Isolated locals get a catch-all
//!    atom, and `(any, any, any protocol)` is always present so every lookup hits.
//! 4. **Closure and merge.** The kernel stops at the first key it finds, most specific first
//!    (`zt_common::policy`). That first key must carry the verdict of *every* rule that covers
//!    the packet, so the key set is closed under intersection and every key stores the merged
//!    verdict of all atoms that cover it. Why that suffices: let K be the key the kernel hits
//!    for packet x and A any atom covering x. A ∩ K is in the closure and covers x; it is at
//!    least as specific as K in identities (so the kernel tries its identity pair no later
//!    than K's) and, with the same pair, at least as long a prefix. Since K was the first
//!    hit, A ∩ K = K, i.e. A covers K, so K's merged verdict includes A.
//!
//! Keys whose verdict equals that of their LPM parent in the same identity pair are then
//! dropped: removing one leaves the parent as the hit, with the same answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Serialize;
use zt_common::identity::{ANY, HOST, WORLD};
use zt_common::ipcache::IPCACHE_MAX_ENTRIES;
use zt_common::policy::{POLICY_MAX_ENTRIES, POLICY_NONE, PolicyKey, PolicyValue, RULE_NONE};
use zt_common::reason;

use super::error::CompileError;
use super::model::{
    Action, Direction, Entity, Mode, Origin, Peer, PolicySet, PortRule, Protocol, Selector,
};
use super::ports::{PortBlock, decompose_range};
use crate::identity::{IdentityAllocator, Labels};

/// Upper bound on keys the closure may produce before merging and pruning; beyond it the
/// push is rejected rather than making the agent spend minutes and gigabytes.
pub const MAX_CLOSURE_KEYS: usize = 2_000_000;
/// POLICY entries one generation may use: the map holds the live and the next generation
/// side by side during a swap.
pub const MAX_POLICY_ENTRIES: usize = (POLICY_MAX_ENTRIES / 2) as usize;
/// ipcache prefixes per address family one generation may use (same reason).
pub const MAX_IPCACHE_PREFIXES: usize = (IPCACHE_MAX_ENTRIES / 2) as usize;

/// The size guards, as one value so tests can trip them without building millions of keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub closure_keys: usize,
    pub policy_entries: usize,
}

impl Limits {
    pub(crate) const DEFAULT: Limits = Limits {
        closure_keys: MAX_CLOSURE_KEYS,
        policy_entries: MAX_POLICY_ENTRIES,
    };
}

/// `0.0.0.0/0` and `::/0`: always in the ipcache as world, so every address resolves.
pub const DEFAULT_ROUTES: [IpNet; 2] = [
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
];

/// Agent settings that shape compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileSettings {
    /// Isolate every local identity in both directions, whether or not a policy selects it
    /// (zero trust; the native-mode default).
    pub default_deny: bool,
    /// Traffic to or from this host that is always allowed, whatever the policy says.
    pub failsafe: Vec<FailsafeRule>,
    /// The operator's labels for this host (`--labels`); `reserved:host` is added.
    pub host_labels: Labels,
    /// This host's addresses. The agent maps them to `host` in the ipcache itself; given
    /// here, they let CIDR peers that contain them match the host, and keep policy prefixes
    /// equal to one of them from getting a CIDR identity the agent would shadow anyway.
    pub host_addresses: Vec<IpAddr>,
}

impl Default for CompileSettings {
    fn default() -> Self {
        Self {
            default_deny: true,
            failsafe: vec![FailsafeRule::SSH],
            host_labels: Labels::new(),
            host_addresses: Vec::new(),
        }
    }
}

/// Traffic of the host that no policy can remove, so an operator cannot lock themselves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FailsafeRule {
    pub direction: Direction,
    pub protocol: Protocol,
    /// `None`: every port of the protocol (the only choice for ICMP).
    pub port: Option<u16>,
}

impl FailsafeRule {
    /// The default: inbound SSH from anywhere.
    pub const SSH: FailsafeRule = FailsafeRule {
        direction: Direction::Ingress,
        protocol: Protocol::Tcp,
        port: Some(22),
    };

    fn port_match(&self) -> PortMatch {
        match self.port {
            Some(port) => PortMatch::Range {
                proto: self.protocol.number(),
                start: port,
                end: port,
            },
            None => PortMatch::Protocol(self.protocol.number()),
        }
    }

    /// What is wrong with this rule, as the end of a sentence that starts with the rule
    /// (the config file and the compiler both report it, each with its own location).
    pub fn problem(&self) -> Option<&'static str> {
        match self.port {
            Some(_) if !self.protocol.has_ports() => {
                Some("gives a port, but only TCP, UDP and SCTP have ports; remove the port")
            }
            Some(0) => Some("has port 0; use a port in 1-65535"),
            _ => None,
        }
    }

    fn validate(&self) -> Result<(), CompileError> {
        match self.problem() {
            None => Ok(()),
            Some(reason) => Err(CompileError::InvalidFailsafe {
                rule: self.to_string(),
                reason,
            }),
        }
    }
}

/// `ingress TCP 22`, `ingress ICMP`: how start-up reports the failsafe rules.
impl fmt::Display for FailsafeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.direction, self.protocol)?;
        match self.port {
            Some(port) => write!(f, " {port}"),
            None => Ok(()),
        }
    }
}

/// One POLICY key before it is given a slot. Identity 0 (`ANY`) is the wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyEntryKey {
    /// `reason::DIR_INGRESS` or `reason::DIR_EGRESS`.
    pub direction: u8,
    /// The protected identity: destination on ingress, source on egress.
    pub local: u32,
    /// The other side.
    pub peer: u32,
    /// `None`: every protocol.
    pub proto: Option<u8>,
    pub port: u16,
    /// Leading port bits that must match (0..=16).
    pub port_prefix_len: u8,
}

impl PolicyEntryKey {
    fn new(direction: u8, local: u32, peer: u32, block: PortBlock) -> Self {
        Self {
            direction,
            local,
            peer,
            proto: block.proto,
            port: block.port,
            port_prefix_len: block.prefix_len,
        }
    }

    /// The protocol/port part as a block (port bits beyond the prefix cleared).
    pub fn block(&self) -> PortBlock {
        match self.proto {
            None => PortBlock::ANY,
            Some(proto) => PortBlock::new(proto, self.port, self.port_prefix_len),
        }
    }

    /// The LPM trie key for generation slot `slot`: (prefix length, key data).
    pub fn to_lpm(&self, slot: u8) -> (u32, PolicyKey) {
        let block = self.block();
        let key = PolicyKey::new(
            slot,
            self.direction,
            self.local,
            self.peer,
            block.proto.unwrap_or(0),
            block.port,
        );
        (block.lpm_prefix_len(), key)
    }
}

/// What flow logs and `ztctl explain` need to know about a compiled policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    /// The `policy_id` in POLICY values: 1-based in name order (0 is "no policy").
    pub id: u32,
    pub name: String,
    pub mode: Mode,
    pub origin: Origin,
    /// Local identities the selector resolved to (`[0]` = every identity).
    pub selected: Vec<u32>,
}

/// The compiler's output: everything the loader writes for one generation.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    /// Prefix -> identity for IPCACHE_V4/V6, sorted. Always holds `0.0.0.0/0` and `::/0` ->
    /// world; the agent adds this host's own addresses -> host.
    pub ipcache: Vec<(IpNet, u32)>,
    /// POLICY entries, sorted by key.
    pub entries: Vec<(PolicyEntryKey, PolicyValue)>,
    /// Indexed by `id - 1`.
    pub policies: Vec<PolicyInfo>,
    /// Labels of every identity in use, including host and world.
    pub identities: BTreeMap<u32, Labels>,
    /// Things that are valid but probably not what the author meant.
    pub warnings: Vec<String>,
    /// `(direction, local, peer)` -> blocks, longest prefix first: what one kernel lookup sees.
    index: HashMap<(u8, u32, u32), Vec<(PortBlock, PolicyValue)>>,
}

impl CompiledPolicy {
    /// The verdict the kernel reaches for a new flow, computed the way the kernel does: the
    /// identity pairs (local, peer), (local, any), (any, peer), (any, any) in that order,
    /// longest protocol/port prefix within each, first hit wins. `None` only for a policy
    /// without a catch-all, which `compile` never produces.
    pub fn lookup(
        &self,
        direction: u8,
        local: u32,
        peer: u32,
        proto: u8,
        port: u16,
    ) -> Option<PolicyValue> {
        [(local, peer), (local, ANY), (ANY, peer), (ANY, ANY)]
            .into_iter()
            .find_map(|(local, peer)| {
                let blocks = self.index.get(&(direction, local, peer))?;
                blocks
                    .iter()
                    .find(|(block, _)| block.covers(proto, port))
                    .map(|&(_, value)| value)
            })
    }

    /// The policy a POLICY value names.
    pub fn policy(&self, id: u32) -> Option<&PolicyInfo> {
        self.policies.get(usize::try_from(id).ok()?.checked_sub(1)?)
    }
}

/// Compiles a validated policy set. New label sets and CIDR prefixes get identities from
/// `allocator`, which is only updated when compilation succeeds.
pub fn compile(
    set: &PolicySet,
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
) -> Result<CompiledPolicy, CompileError> {
    compile_resolved(set, settings, allocator, Limits::DEFAULT).map(|(compiled, _)| compiled)
}

/// [`compile`], also returning the resolved rules (the tests' reference evaluator reads them).
pub(crate) fn compile_resolved(
    set: &PolicySet,
    settings: &CompileSettings,
    allocator: &mut IdentityAllocator,
    limits: Limits,
) -> Result<(CompiledPolicy, Resolved), CompileError> {
    for rule in &settings.failsafe {
        rule.validate()?;
    }
    let mut next_allocator = allocator.clone();
    let mut warnings = Vec::new();
    let universe = Universe::build(set, settings, &mut next_allocator, &mut warnings)?;
    let (resolved, policies) = resolve(set, settings, &universe, &mut warnings);
    let entries = build_entries(&atoms(&resolved), limits)?;

    let mut index: HashMap<(u8, u32, u32), Vec<(PortBlock, PolicyValue)>> = HashMap::new();
    for (key, value) in &entries {
        index
            .entry((key.direction, key.local, key.peer))
            .or_default()
            .push((key.block(), *value));
    }
    for blocks in index.values_mut() {
        blocks.sort_by_key(|(block, _)| std::cmp::Reverse(block.lpm_prefix_len()));
    }

    *allocator = next_allocator;
    let compiled = CompiledPolicy {
        ipcache: universe.ipcache.into_iter().collect(),
        entries,
        policies,
        identities: universe.identities,
        warnings,
        index,
    };
    Ok((compiled, resolved))
}

/// Every identity of a push, and how addresses map to them.
struct Universe {
    /// What selectors choose from: endpoint identities and the host, with their labels.
    selectable: BTreeMap<u32, Labels>,
    /// key -> value -> selectable identities carrying that label: selecting by the rarest
    /// label of a selector keeps resolution proportional to the answer, not to rules times
    /// identities (which made 100k-rule policies take seconds).
    by_label: HashMap<String, HashMap<String, Vec<u32>>>,
    /// The prefixes that resolve to each identity (host: its addresses); CIDR peers are
    /// judged by these. World's default routes are left out: only a /0 peer matches world.
    prefixes: BTreeMap<u32, BTreeSet<IpNet>>,
    /// Endpoint names per identity, to name them in warnings.
    names: BTreeMap<u32, Vec<String>>,
    ipcache: BTreeMap<IpNet, u32>,
    identities: BTreeMap<u32, Labels>,
}

impl Universe {
    fn build(
        set: &PolicySet,
        settings: &CompileSettings,
        allocator: &mut IdentityAllocator,
        warnings: &mut Vec<String>,
    ) -> Result<Self, CompileError> {
        let host_labels = Labels::host(&settings.host_labels);
        let host_prefixes: BTreeSet<IpNet> = settings
            .host_addresses
            .iter()
            .map(|&addr| IpNet::from(addr))
            .collect();
        let mut universe = Universe {
            selectable: BTreeMap::from([(HOST, host_labels.clone())]),
            by_label: HashMap::new(),
            prefixes: BTreeMap::new(),
            names: BTreeMap::new(),
            ipcache: BTreeMap::new(),
            identities: BTreeMap::from([(HOST, host_labels), (WORLD, Labels::world())]),
        };
        if !host_prefixes.is_empty() {
            universe.prefixes.insert(HOST, host_prefixes.clone());
        }

        // Allocate in label order, not file order, so a first push numbers identically
        // however its files are named.
        let label_sets: BTreeSet<&Labels> = set.endpoints.iter().map(|e| &e.labels).collect();
        for labels in label_sets {
            let id = allocator.allocate(labels)?;
            universe.selectable.insert(id, labels.clone());
            universe.identities.insert(id, labels.clone());
        }
        for endpoint in &set.endpoints {
            let id = allocator.get(&endpoint.labels).expect("allocated above");
            universe
                .names
                .entry(id)
                .or_default()
                .push(endpoint.qualified_name());
            if endpoint.addresses.is_empty() {
                let name = endpoint.qualified_name();
                warnings.push(format!(
                    "{}: spec.addresses is empty, so endpoint {name} matches no traffic",
                    endpoint.origin
                ));
            }
            for (i, &address) in endpoint.addresses.iter().enumerate() {
                if host_prefixes.contains(&address) {
                    warnings.push(format!(
                        "{}: spec.addresses[{i}] {address} is an address of this host, so its traffic has the host \
                         identity, not the labels of endpoint {}",
                        endpoint.origin,
                        endpoint.qualified_name()
                    ));
                    continue;
                }
                universe.ipcache.insert(address, id);
                universe.prefixes.entry(id).or_default().insert(address);
            }
        }

        // A policy prefix gets its own identity unless something already owns exactly that
        // prefix: an endpoint, the host, or world (the default routes).
        let mut policy_prefixes = BTreeSet::new();
        for policy in &set.policies {
            for direction in Direction::BOTH {
                for rule in policy.rules(direction).unwrap_or_default() {
                    for peer in &rule.peers {
                        if let Peer::Cidr { cidr, except } = peer {
                            policy_prefixes.insert(*cidr);
                            policy_prefixes.extend(except.iter().copied());
                        }
                    }
                }
            }
        }
        for prefix in policy_prefixes {
            if prefix.prefix_len() == 0
                || universe.ipcache.contains_key(&prefix)
                || host_prefixes.contains(&prefix)
            {
                continue;
            }
            let labels = Labels::cidr(prefix);
            let id = allocator.allocate(&labels)?;
            universe.ipcache.insert(prefix, id);
            universe.prefixes.entry(id).or_default().insert(prefix);
            universe.identities.insert(id, labels);
        }

        for default_route in DEFAULT_ROUTES {
            universe.ipcache.insert(default_route, WORLD);
        }
        for (family, v4) in [("IPv4", true), ("IPv6", false)] {
            let count = universe
                .ipcache
                .keys()
                .filter(|net| matches!(net, IpNet::V4(_)) == v4)
                .count();
            if count > MAX_IPCACHE_PREFIXES {
                return Err(CompileError::TooManyPrefixes {
                    family,
                    count,
                    limit: MAX_IPCACHE_PREFIXES,
                });
            }
        }
        for (&id, labels) in &universe.selectable {
            for (key, value) in labels.iter() {
                universe
                    .by_label
                    .entry(key.to_string())
                    .or_default()
                    .entry(value.to_string())
                    .or_default()
                    .push(id);
            }
        }
        Ok(universe)
    }

    /// Identities a selector matches among endpoints and the host.
    fn select(&self, selector: &Selector) -> BTreeSet<u32> {
        let mut rarest: Option<&Vec<u32>> = None;
        for (key, value) in selector.match_labels.iter() {
            let Some(ids) = self.by_label.get(key).and_then(|values| values.get(value)) else {
                return BTreeSet::new();
            };
            if rarest.is_none_or(|r| ids.len() < r.len()) {
                rarest = Some(ids);
            }
        }
        match rarest {
            // `{}`: every selectable identity.
            None => self.selectable.keys().copied().collect(),
            Some(ids) => ids
                .iter()
                .copied()
                .filter(|id| self.selectable.get(id).is_some_and(|l| selector.matches(l)))
                .collect(),
        }
    }

    /// `endpoint db-1`, `endpoints db-1, db-2` or `this host`, for warnings.
    fn describe(&self, id: u32) -> String {
        if id == HOST {
            return "this host".to_string();
        }
        match self.names.get(&id).map(Vec::as_slice) {
            Some([name]) => format!("endpoint {name}"),
            Some(names) => format!("endpoints {}", names.join(", ")),
            None => format!("identity {id}"),
        }
    }
}

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
    fn from_rule(rule: &PortRule) -> Self {
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
            PortMatch::Range {
                proto: p,
                start,
                end,
            } => p == proto && (start..=end).contains(&port),
        }
    }

    fn blocks(&self) -> Vec<PortBlock> {
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
    pub locals: BTreeSet<u32>,
    pub peers: BTreeSet<u32>,
    pub ports: Vec<PortMatch>,
}

/// A local identity isolated for a direction by a policy that has rules for it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Isolation {
    pub direction: u8,
    pub local: u32,
    pub enforcing: bool,
}

/// Everything the verdict of a packet depends on, in identity terms.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub rules: Vec<ResolvedRule>,
    pub isolations: Vec<Isolation>,
    pub failsafe: Vec<(u8, PortMatch)>,
    pub default_deny: bool,
    /// Identities that are only ever peers (world and CIDR prefixes): they have no policy
    /// of their own, so traffic judged with one of them as the local side — the egress hook
    /// forwarding a packet *from* world, the ingress hook forwarding one *to* world — is not
    /// isolated; the workload's side of the flow is judged at its own hook.
    pub not_local: BTreeSet<u32>,
}

/// Step 2: selectors, entities and CIDRs -> identities; policies get their ids.
fn resolve(
    set: &PolicySet,
    settings: &CompileSettings,
    universe: &Universe,
    warnings: &mut Vec<String>,
) -> (Resolved, Vec<PolicyInfo>) {
    let mut resolved = Resolved {
        rules: Vec::new(),
        isolations: Vec::new(),
        failsafe: settings
            .failsafe
            .iter()
            .map(|f| (f.direction.to_u8(), f.port_match()))
            .collect(),
        default_deny: settings.default_deny,
        not_local: universe
            .identities
            .keys()
            .filter(|id| !universe.selectable.contains_key(id))
            .copied()
            .collect(),
    };
    let mut policies: Vec<_> = set.policies.iter().collect();
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let mut infos = Vec::new();

    for (index, policy) in policies.into_iter().enumerate() {
        let policy_id = index as u32 + 1;
        let origin = &policy.origin;
        let locals = if policy.selector.is_all() {
            BTreeSet::from([ANY])
        } else {
            universe.select(&policy.selector)
        };
        if locals.is_empty() {
            warnings.push(format!(
                "{origin}: spec.selector {} selects no endpoint and not this host, so policy {} has no effect",
                policy.selector, policy.name
            ));
        }
        let enforcing = policy.mode == Mode::Enforce;
        for direction in Direction::BOTH {
            let Some(rules) = policy.rules(direction) else {
                continue;
            };
            let dir = direction.to_u8();
            resolved
                .isolations
                .extend(locals.iter().map(|&local| Isolation {
                    direction: dir,
                    local,
                    enforcing,
                }));
            if !rules.is_empty()
                && rules.iter().all(|r| r.action == Action::Deny)
                && !settings.default_deny
            {
                warnings.push(format!(
                    "{origin}: every {direction} rule of policy {} is a deny rule, yet the policy still isolates what \
                     it selects, so {direction} traffic it does not deny is dropped too unless another policy allows it",
                    policy.name
                ));
            }
            for (i, rule) in rules.iter().enumerate() {
                let rule_path = format!("spec.{direction}[{i}]");
                let peers = if rule.peers.is_empty() {
                    BTreeSet::from([ANY])
                } else {
                    let mut peers = BTreeSet::new();
                    for (j, peer) in rule.peers.iter().enumerate() {
                        let path = format!("{rule_path}.{}[{j}]", direction.peer_field());
                        peers.extend(resolve_peer(universe, peer, origin, &path, warnings));
                    }
                    peers
                };
                let ports = if rule.ports.is_empty() {
                    vec![PortMatch::AnyProtocol]
                } else {
                    rule.ports.iter().map(PortMatch::from_rule).collect()
                };
                resolved.rules.push(ResolvedRule {
                    direction: dir,
                    policy_id,
                    rule: i as u32,
                    action: rule.action,
                    enforcing,
                    locals: locals.clone(),
                    peers,
                    ports,
                });
            }
        }
        infos.push(PolicyInfo {
            id: policy_id,
            name: policy.name.clone(),
            mode: policy.mode,
            origin: origin.clone(),
            selected: locals.into_iter().collect(),
        });
    }
    (resolved, infos)
}

/// The identities one `from`/`to` item stands for.
fn resolve_peer(
    universe: &Universe,
    peer: &Peer,
    origin: &Origin,
    path: &str,
    warnings: &mut Vec<String>,
) -> BTreeSet<u32> {
    match peer {
        Peer::Entity(Entity::Host) => BTreeSet::from([HOST]),
        Peer::Entity(Entity::World) => BTreeSet::from([WORLD]),
        Peer::Entity(Entity::Any) => BTreeSet::from([ANY]),
        Peer::Selector(selector) => {
            let ids = universe.select(selector);
            if ids.is_empty() {
                warnings.push(format!(
                    "{origin}: {path}.selector {selector} matches no endpoint and not this host, so it adds no peer \
                     to the rule"
                ));
            }
            ids
        }
        Peer::Cidr { cidr, except } => {
            // An identity matches when every prefix that resolves to it lies in the cidr and
            // in no except. Prefixes that merely contain an except are fine: the except has
            // its own, longer ipcache entry, so its addresses never resolve to them.
            let inside =
                |net: &IpNet| cidr.contains(net) && !except.iter().any(|e| e.contains(net));
            let mut ids = BTreeSet::new();
            for (&id, prefixes) in &universe.prefixes {
                let count = prefixes.iter().filter(|net| inside(net)).count();
                if count == prefixes.len() {
                    ids.insert(id);
                } else if count > 0 {
                    let who = universe.describe(id);
                    warnings.push(format!(
                        "{origin}: {path}.cidr {cidr} covers only some addresses of {who}, so traffic of {who} does \
                         not match it; cover all of its addresses or none"
                    ));
                }
            }
            // World is everything no longer prefix claims: inside any /0 peer. (World is one
            // identity for both families, so 0.0.0.0/0 also matches IPv6 world traffic.)
            if cidr.prefix_len() == 0 {
                ids.insert(WORLD);
            }
            ids
        }
    }
}

/// Which rule a verdict names. Ordered so that the *preferred* attribution is the greatest:
/// most precise port, then a named peer over "any", then the lowest policy id and rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attribution {
    pub specificity: PortSpecificity,
    pub peer_specific: bool,
    pub policy_id: u32,
    pub rule: u32,
}

impl Attribution {
    fn preference(&self) -> impl Ord {
        (
            self.specificity,
            self.peer_specific,
            std::cmp::Reverse(self.policy_id),
            std::cmp::Reverse(self.rule),
        )
    }

    fn best(current: Option<Self>, candidate: Self) -> Option<Self> {
        match current {
            Some(current) if current.preference() >= candidate.preference() => Some(current),
            _ => Some(candidate),
        }
    }
}

/// What an atom adds to the verdict of the keys it covers.
#[derive(Clone, Copy, Debug)]
enum Contribution {
    /// The catch-all that guarantees a hit; adds nothing.
    Neutral,
    Isolate {
        enforcing: bool,
    },
    Rule {
        action: Action,
        enforcing: bool,
        attribution: Attribution,
    },
    Failsafe,
    /// The local side is world or a CIDR prefix: never isolated.
    NotLocal,
}

/// One policy evaluation: either enforce-mode policies only, or all policies treated as
/// enforcing (which is what audit mode reports against).
#[derive(Clone, Copy, Debug, Default)]
struct Layer {
    isolated: bool,
    allow: Option<Attribution>,
    deny: Option<Attribution>,
}

impl Layer {
    fn add(&mut self, contribution: &Contribution) {
        match *contribution {
            Contribution::Isolate { .. } => self.isolated = true,
            Contribution::Rule {
                action: Action::Allow,
                attribution,
                ..
            } => self.allow = Attribution::best(self.allow, attribution),
            Contribution::Rule {
                action: Action::Deny,
                attribution,
                ..
            } => self.deny = Attribution::best(self.deny, attribution),
            Contribution::Neutral | Contribution::Failsafe | Contribution::NotLocal => {}
        }
    }

    /// (verdict, reason, policy id, rule) of this layer alone. A deny only ever comes from
    /// a policy that also isolates the local identity, so checking it first merely makes
    /// "deny always wins" explicit.
    fn decide(&self) -> (u8, u8, u32, u32) {
        if let Some(deny) = self.deny {
            (
                reason::VERDICT_DENIED,
                reason::DENY_RULE,
                deny.policy_id,
                deny.rule,
            )
        } else if !self.isolated {
            (
                reason::VERDICT_ALLOWED,
                reason::NOT_ISOLATED,
                POLICY_NONE,
                RULE_NONE,
            )
        } else if let Some(allow) = self.allow {
            (
                reason::VERDICT_ALLOWED,
                reason::POLICY,
                allow.policy_id,
                allow.rule,
            )
        } else {
            (
                reason::VERDICT_DENIED,
                reason::DEFAULT_DENY,
                POLICY_NONE,
                RULE_NONE,
            )
        }
    }
}

/// The merged verdict of every atom covering a key.
#[derive(Clone, Copy, Debug, Default)]
struct Decision {
    not_local: bool,
    failsafe: bool,
    enforce: Layer,
    all: Layer,
}

impl Decision {
    fn add(&mut self, contribution: &Contribution) {
        let enforcing = match *contribution {
            Contribution::Failsafe => {
                self.failsafe = true;
                return;
            }
            Contribution::NotLocal => {
                self.not_local = true;
                return;
            }
            Contribution::Isolate { enforcing } | Contribution::Rule { enforcing, .. } => enforcing,
            Contribution::Neutral => return,
        };
        self.all.add(contribution);
        if enforcing {
            self.enforce.add(contribution);
        }
    }

    /// Failsafe beats everything; an enforce-mode drop is a drop; a drop that only audit
    /// policies cause is an audit verdict carrying what enforcement would have said.
    fn value(&self) -> PolicyValue {
        let (verdict, reason, policy_id, rule) = if self.not_local {
            (
                reason::VERDICT_ALLOWED,
                reason::NOT_ISOLATED,
                POLICY_NONE,
                RULE_NONE,
            )
        } else if self.failsafe {
            (
                reason::VERDICT_ALLOWED,
                reason::FAILSAFE,
                POLICY_NONE,
                RULE_NONE,
            )
        } else {
            let enforce = self.enforce.decide();
            let all = self.all.decide();
            if enforce.0 == reason::VERDICT_DENIED {
                enforce
            } else if all.0 == reason::VERDICT_DENIED {
                (reason::VERDICT_AUDIT, all.1, all.2, all.3)
            } else {
                enforce
            }
        };
        PolicyValue::new(verdict, reason, policy_id, rule)
    }
}

/// A key region and its contribution.
#[derive(Clone, Copy, Debug)]
struct Atom {
    local: u32,
    peer: u32,
    block: PortBlock,
    contribution: Contribution,
}

/// Step 3: atoms per direction (indexed by `DIR_INGRESS`/`DIR_EGRESS`).
fn atoms(resolved: &Resolved) -> [Vec<Atom>; 2] {
    let mut atoms: [Vec<Atom>; 2] = [Vec::new(), Vec::new()];
    let catch_all = |contribution| Atom {
        local: ANY,
        peer: ANY,
        block: PortBlock::ANY,
        contribution,
    };
    for direction in Direction::BOTH {
        let out = &mut atoms[usize::from(direction.to_u8())];
        out.push(catch_all(Contribution::Neutral));
        if resolved.default_deny {
            out.push(catch_all(Contribution::Isolate { enforcing: true }));
        }
    }
    for isolation in &resolved.isolations {
        let contribution = Contribution::Isolate {
            enforcing: isolation.enforcing,
        };
        let atom = Atom {
            local: isolation.local,
            ..catch_all(contribution)
        };
        atoms[usize::from(isolation.direction)].push(atom);
    }
    for &local in &resolved.not_local {
        for out in atoms.iter_mut() {
            out.push(Atom {
                local,
                ..catch_all(Contribution::NotLocal)
            });
        }
    }
    for (direction, ports) in &resolved.failsafe {
        for block in ports.blocks() {
            let atom = Atom {
                local: HOST,
                peer: ANY,
                block,
                contribution: Contribution::Failsafe,
            };
            atoms[usize::from(*direction)].push(atom);
        }
    }
    for rule in &resolved.rules {
        for ports in &rule.ports {
            let blocks = ports.blocks();
            for &local in &rule.locals {
                for &peer in &rule.peers {
                    let attribution = Attribution {
                        specificity: ports.specificity(),
                        peer_specific: peer != ANY,
                        policy_id: rule.policy_id,
                        rule: rule.rule,
                    };
                    let contribution = Contribution::Rule {
                        action: rule.action,
                        enforcing: rule.enforcing,
                        attribution,
                    };
                    let out = &mut atoms[usize::from(rule.direction)];
                    out.extend(blocks.iter().map(|&block| Atom {
                        local,
                        peer,
                        block,
                        contribution,
                    }));
                }
            }
        }
    }
    atoms
}

/// Step 4: the intersection closure of the atoms, each key with its merged verdict.
///
/// Identities and blocks are both trees under containment (ANY above every identity; any
/// protocol above a protocol above its port blocks), so the intersection of atoms is
/// computed per component: a key (l, p, b) is in the closure exactly when some covering atom
/// has local l, some has peer p and some has block b. That bounds the candidates: pairs
/// (l, p) that are an atom pair or combine an (l, any) with an (any, p), and per pair the
/// blocks of the atoms that cover the pair.
fn build_entries(
    atoms: &[Vec<Atom>; 2],
    limits: Limits,
) -> Result<Vec<(PolicyEntryKey, PolicyValue)>, CompileError> {
    let mut entries = Vec::new();
    let mut closure_keys = 0usize;
    for (direction, atoms) in atoms.iter().enumerate() {
        let direction = direction as u8;
        let mut groups: BTreeMap<(u32, u32), Vec<&Atom>> = BTreeMap::new();
        for atom in atoms {
            groups
                .entry((atom.local, atom.peer))
                .or_default()
                .push(atom);
        }
        let locals_with_any_peer: Vec<u32> = groups
            .keys()
            .filter(|(l, p)| *l != ANY && *p == ANY)
            .map(|k| k.0)
            .collect();
        let peers_with_any_local: Vec<u32> = groups
            .keys()
            .filter(|(l, p)| *l == ANY && *p != ANY)
            .map(|k| k.1)
            .collect();
        let mut pairs: BTreeSet<(u32, u32)> = groups.keys().copied().collect();
        for &local in &locals_with_any_peer {
            pairs.extend(peers_with_any_local.iter().map(|&peer| (local, peer)));
        }

        for (local, peer) in pairs {
            let mut covering_groups = vec![(local, peer), (local, ANY), (ANY, peer), (ANY, ANY)];
            covering_groups.sort_unstable();
            covering_groups.dedup();
            let covering: Vec<&Atom> = covering_groups
                .iter()
                .filter_map(|g| groups.get(g))
                .flatten()
                .copied()
                .collect();
            let blocks: BTreeSet<PortBlock> = covering.iter().map(|a| a.block).collect();
            let mut class = Vec::new();
            for block in blocks {
                let mut decision = Decision::default();
                let (mut exact_local, mut exact_peer) = (local == ANY, peer == ANY);
                for atom in covering.iter().filter(|a| a.block.contains(&block)) {
                    decision.add(&atom.contribution);
                    exact_local |= atom.local == local;
                    exact_peer |= atom.peer == peer;
                }
                if !(exact_local && exact_peer) {
                    continue; // a less specific key already gives this answer
                }
                closure_keys += 1;
                if closure_keys > limits.closure_keys {
                    return Err(CompileError::TooManyKeys {
                        limit: limits.closure_keys,
                    });
                }
                class.push((block, decision.value()));
            }
            for (block, value) in prune_redundant(class) {
                entries.push((PolicyEntryKey::new(direction, local, peer, block), value));
            }
        }
    }
    if entries.len() > limits.policy_entries {
        return Err(CompileError::TooManyEntries {
            count: entries.len(),
            limit: limits.policy_entries,
        });
    }
    entries.sort_by_key(|(key, _)| *key);
    Ok(entries)
}

/// Drops keys of one identity pair whose verdict equals that of the nearest kept key
/// containing them: the kernel's LPM lookup then lands on that key with the same answer.
/// Keys without a containing key stay, since without them the lookup would move on to the
/// next identity pair.
fn prune_redundant(mut class: Vec<(PortBlock, PolicyValue)>) -> Vec<(PortBlock, PolicyValue)> {
    class.sort_by_key(|(block, _)| (block.lpm_prefix_len(), *block));
    let mut kept: Vec<(PortBlock, PolicyValue)> = Vec::with_capacity(class.len());
    for (block, value) in class {
        // `kept` is ordered by prefix length, so the last container is the nearest.
        let parent = kept.iter().rev().find(|(outer, _)| outer.contains(&block));
        if parent.is_none_or(|(_, parent_value)| *parent_value != value) {
            kept.push((block, value));
        }
    }
    kept
}
