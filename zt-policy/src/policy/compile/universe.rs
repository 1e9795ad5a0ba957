//! Step 1, identities: every endpoint label set and every CIDR prefix a rule names gets a
//! number from the [`IdentityAllocator`](crate::identity::IdentityAllocator); the ipcache maps each prefix to its number and the
//! default routes to `world`. The [`Universe`] is what the later steps resolve against.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use foldhash::HashMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use zt_common::identity::{HOST, WORLD};

use super::{CompileSettings, DEFAULT_ROUTES, MAX_IPCACHE_PREFIXES};
use crate::identity::{Allocation, Labels};
use crate::policy::error::CompileError;
use crate::policy::model::{Direction, Peer, PodPorts, PolicySet, Selector};

/// Every identity of a push, and how addresses map to them.
pub(super) struct Universe {
    /// What selectors choose from: endpoint identities and the host, with their labels.
    pub(super) selectable: BTreeMap<u32, Labels>,
    /// key -> value -> selectable identities carrying that label: selecting by the rarest
    /// label of a selector keeps resolution proportional to the answer, not to rules times
    /// identities (which made 100k-rule policies take seconds).
    pub(super) by_label: HashMap<String, HashMap<String, Vec<u32>>>,
    /// The prefixes that resolve to each identity (host: its addresses); CIDR peers are
    /// judged by these. World's default routes are left out: only a /0 peer matches world.
    pub(super) prefixes: BTreeMap<u32, BTreeSet<IpNet>>,
    /// Endpoint names per identity, to name them in warnings.
    pub(super) names: BTreeMap<u32, Vec<String>>,
    pub(super) ipcache: BTreeMap<IpNet, u32>,
    pub(super) identities: BTreeMap<u32, Labels>,
    /// The identities of Kubernetes pods, with their named container ports. (A pod's labels
    /// include its namespace and name, so each pod is its own identity.)
    pub(super) pods: BTreeMap<u32, PodPorts>,
}

/// Every prefix a policy names as a CIDR peer or one of its exceptions.
pub(super) fn policy_prefixes(set: &PolicySet) -> BTreeSet<IpNet> {
    let mut prefixes = BTreeSet::new();
    for policy in &set.policies {
        for direction in Direction::BOTH {
            for rule in policy.rules(direction).unwrap_or_default() {
                for peer in &rule.peers {
                    if let Peer::Cidr { cidr, except } = peer {
                        prefixes.insert(*cidr);
                        prefixes.extend(except.iter().copied());
                    }
                }
            }
        }
    }
    prefixes
}

/// A set of identities, shared between the rules that name the same ones.
pub(crate) type Ids = Arc<BTreeSet<u32>>;

impl Universe {
    /// The universe of `set`; `policy_prefixes` are [`policy_prefixes`] of it.
    pub(super) fn build(
        set: &PolicySet,
        settings: &CompileSettings,
        policy_prefixes: &BTreeSet<IpNet>,
        allocator: &mut Allocation,
        warnings: &mut Vec<String>,
    ) -> Result<Self, CompileError> {
        let host_labels = Labels::host(&settings.host_labels);
        let host_prefixes: BTreeSet<IpNet> = settings.host_addresses.iter().map(|&addr| IpNet::from(addr)).collect();
        let mut universe = Universe {
            selectable: BTreeMap::from([(HOST, host_labels.clone())]),
            by_label: HashMap::default(),
            prefixes: BTreeMap::new(),
            names: BTreeMap::new(),
            ipcache: BTreeMap::new(),
            identities: BTreeMap::from([(HOST, host_labels), (WORLD, Labels::world())]),
            pods: BTreeMap::new(),
        };
        if !host_prefixes.is_empty() {
            universe.prefixes.insert(HOST, host_prefixes.clone());
        }

        // Each endpoint's identity labels, per address (its labels alone without one),
        // computed once; most are allocated already, so only the new ones are sorted and
        // numbered — in label order, not file order, so a first push numbers identically
        // however its files are named.
        let endpoint_labels: Vec<Vec<Labels>> = set
            .endpoints
            .iter()
            .map(|endpoint| match endpoint.addresses.as_slice() {
                [] => vec![endpoint.labels.clone()],
                addresses => addresses.iter().map(|address| endpoint.identity_labels(address)).collect(),
            })
            .collect();
        let mut ids: HashMap<&Labels, u32> = HashMap::default();
        let mut new: BTreeSet<&Labels> = BTreeSet::new();
        for labels in endpoint_labels.iter().flatten() {
            match allocator.get(labels) {
                Some(id) => {
                    ids.insert(labels, id);
                }
                None => {
                    new.insert(labels);
                }
            }
        }
        for labels in new {
            ids.insert(labels, allocator.allocate(labels)?);
        }
        for (labels, &id) in &ids {
            if let std::collections::btree_map::Entry::Vacant(slot) = universe.selectable.entry(id) {
                slot.insert((*labels).clone());
                universe.identities.insert(id, (*labels).clone());
            }
        }
        for (endpoint, labels) in set.endpoints.iter().zip(&endpoint_labels) {
            let mut own: Vec<u32> = labels.iter().map(|l| ids[l]).collect();
            own.sort_unstable();
            own.dedup();
            for id in own {
                universe.names.entry(id).or_default().push(endpoint.qualified_name());
                if let Some(ports) = &endpoint.pod {
                    universe.pods.entry(id).or_insert_with(|| ports.clone());
                }
            }
            if endpoint.addresses.is_empty() {
                let name = endpoint.qualified_name();
                warnings.push(format!(
                    "{}: spec.addresses is empty, so endpoint {name} matches no traffic",
                    endpoint.origin
                ));
            }
            for (i, (&address, labels)) in endpoint.addresses.iter().zip(labels).enumerate() {
                if host_prefixes.contains(&address) {
                    warnings.push(format!(
                        "{}: spec.addresses[{i}] {address} is an address of this host, so its traffic has the host \
                         identity, not the labels of endpoint {}",
                        endpoint.origin,
                        endpoint.qualified_name()
                    ));
                    continue;
                }
                let id = ids[labels];
                universe.ipcache.insert(address, id);
                universe.prefixes.entry(id).or_default().insert(address);
            }
        }

        // A policy prefix gets its own identity unless something already owns exactly that
        // prefix: an endpoint, the host, or world (the default routes).
        for &prefix in policy_prefixes {
            if prefix.prefix_len() == 0 || universe.ipcache.contains_key(&prefix) || host_prefixes.contains(&prefix) {
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
            let count = universe.ipcache.keys().filter(|net| matches!(net, IpNet::V4(_)) == v4).count();
            if count > MAX_IPCACHE_PREFIXES {
                return Err(CompileError::TooManyPrefixes { family, count, limit: MAX_IPCACHE_PREFIXES });
            }
        }
        for (&id, labels) in &universe.selectable {
            for (key, value) in labels.iter() {
                universe.by_label.entry(key.to_string()).or_default().entry(value.to_string()).or_default().push(id);
            }
        }
        Ok(universe)
    }

    /// Identities a selector matches among endpoints and the host.
    pub(super) fn select(&self, selector: &Selector) -> BTreeSet<u32> {
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
            // No matchLabels: every selectable identity the expressions admit (`{}`: all).
            None => self.selectable.iter().filter(|(_, l)| selector.matches(l)).map(|(id, _)| *id).collect(),
            Some(ids) => {
                ids.iter().copied().filter(|id| self.selectable.get(id).is_some_and(|l| selector.matches(l))).collect()
            }
        }
    }

    /// Every identity with a prefix inside `cidr` (the host: always), in numeric order. The
    /// prefixes inside `cidr` have their addresses between its first and last, so they are
    /// one range of the ordered ipcache: a CIDR peer no longer scans every identity, which
    /// made a policy of 10,000 CIDR peers 10,000 x 10,000 prefix checks.
    pub(super) fn owners_within(&self, cidr: &IpNet) -> BTreeSet<u32> {
        let range = match cidr {
            IpNet::V4(net) => {
                IpNet::V4(Ipv4Net::new_assert(net.network(), 0))..=IpNet::V4(Ipv4Net::new_assert(net.broadcast(), 32))
            }
            IpNet::V6(net) => {
                IpNet::V6(Ipv6Net::new_assert(net.network(), 0))..=IpNet::V6(Ipv6Net::new_assert(net.broadcast(), 128))
            }
        };
        let mut owners: BTreeSet<u32> =
            self.ipcache.range(range).filter(|(net, _)| cidr.contains(*net)).map(|(_, &id)| id).collect();
        if self.prefixes.contains_key(&HOST) {
            owners.insert(HOST);
        }
        owners
    }

    /// `endpoint db-1`, `endpoints db-1, db-2` or `this host`, for warnings.
    pub(super) fn describe(&self, id: u32) -> String {
        if id == HOST {
            return "this host".to_string();
        }
        match self.names.get(&id).map(Vec::as_slice) {
            Some([name]) if self.pods.contains_key(&id) => format!("pod {name}"),
            Some([name]) => format!("endpoint {name}"),
            Some(names) => format!("endpoints {}", names.join(", ")),
            None => format!("identity {id}"),
        }
    }
}
