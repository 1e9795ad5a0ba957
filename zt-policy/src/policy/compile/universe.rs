//! Step 1, identities: every endpoint label set and every CIDR prefix a rule names gets a
//! number from the [`IdentityAllocator`](crate::identity::IdentityAllocator); the ipcache maps each prefix to its number and the
//! default routes to `world`. The [`Universe`] is what the later steps resolve against.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use foldhash::HashMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use zt_common::identity::{HOST, WORLD};

use super::{CompileSettings, DEFAULT_ROUTES, MAX_IPCACHE_PREFIXES};
use crate::identity::{Allocation, Labels};
use crate::parallel;
use crate::policy::error::CompileError;
use crate::policy::model::{Direction, Endpoint, Peer, PodPorts, PolicySet, Selector};

/// Every identity of a push, and how addresses map to them.
pub(super) struct Universe {
    /// What selectors choose from: endpoint identities and the host (their labels are in
    /// `identities`).
    pub(super) selectable: BTreeSet<u32>,
    /// Per label key a selector names: value -> selectable identities carrying that label.
    /// Selecting by the rarest label of a selector keeps resolution proportional to the
    /// answer, not to rules times identities (which made 100k-rule policies take seconds).
    /// Built per key when a selector first names it: a pod's labels include its own name and
    /// its namespace's labels, most of which no selector reads, and indexing every label of
    /// 10,000 pods was a fifth of a cluster's compile.
    by_label: Mutex<HashMap<String, Arc<ByValue>>>,
    /// The prefixes that resolve to each identity (host: its addresses); CIDR peers are
    /// judged by these. World's default routes are left out: only a /0 peer matches world.
    pub(super) prefixes: BTreeMap<u32, BTreeSet<IpNet>>,
    /// The endpoints of each identity, to name them in warnings (shared with the policy
    /// set: naming 10,000 pods up front cost a tenth of a cluster's identity step).
    names: BTreeMap<u32, Vec<Arc<Endpoint>>>,
    pub(super) ipcache: BTreeMap<IpNet, u32>,
    pub(super) identities: BTreeMap<u32, Arc<Labels>>,
    /// The identities of Kubernetes pods, with the pod (whose named container ports give
    /// named ports their numbers). A pod's labels include its namespace and name, so each
    /// pod is its own identity.
    pods: BTreeMap<u32, Arc<Endpoint>>,
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

/// One label key's index: value -> the selectable identities with that value, ascending.
type ByValue = HashMap<String, Vec<u32>>;

/// Fewer endpoints than this per thread are looked up on the calling thread.
const ENDPOINTS_PER_THREAD: usize = 1024;

/// A label set's identity and the allocator's copy of the labels, once numbered.
type Numbered = Option<(u32, Arc<Labels>)>;

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
            selectable: BTreeSet::from([HOST]),
            by_label: Mutex::default(),
            prefixes: BTreeMap::new(),
            names: BTreeMap::new(),
            ipcache: BTreeMap::new(),
            identities: BTreeMap::from([(HOST, Arc::new(host_labels)), (WORLD, Arc::new(Labels::world()))]),
            pods: BTreeMap::new(),
        };
        if !host_prefixes.is_empty() {
            universe.prefixes.insert(HOST, host_prefixes.clone());
        }

        // Each endpoint's identity labels, per address (its labels alone without one),
        // computed once; most are allocated already, so only the new ones are sorted and
        // numbered — in label order, not file order, so a first push numbers identically
        // however its files are named. Each label set is hashed once here (the allocator's
        // lookup, for the endpoints on all cores); the new ones, few after the first push,
        // once more when they are numbered.
        let shared = |allocator: &Allocation, labels: &Labels| {
            allocator.get_shared(labels).map(|(id, labels)| (id, labels.clone()))
        };
        let known: &Allocation = allocator;
        let labelled = parallel::chunks(&set.endpoints, ENDPOINTS_PER_THREAD, |endpoints| {
            endpoints
                .iter()
                .map(|endpoint| {
                    let labels: Vec<Cow<Labels>> = match endpoint.addresses.as_slice() {
                        [] => vec![Cow::Borrowed(&endpoint.labels)],
                        addresses => addresses.iter().map(|address| endpoint.identity_labels_of(address)).collect(),
                    };
                    let ids: Vec<Numbered> = labels.iter().map(|labels| shared(known, labels)).collect();
                    (labels, ids)
                })
                .collect::<Vec<_>>()
        });
        let (endpoint_labels, mut endpoint_ids): (Vec<Vec<Cow<Labels>>>, Vec<Vec<Numbered>>) =
            labelled.into_iter().flatten().unzip();
        let new: BTreeSet<&Labels> = endpoint_labels
            .iter()
            .zip(&endpoint_ids)
            .flat_map(|(labels, ids)| labels.iter().zip(ids).filter(|(_, id)| id.is_none()).map(|(l, _)| l.as_ref()))
            .collect();
        if !new.is_empty() {
            for labels in &new {
                allocator.allocate(labels)?;
            }
            for (labels, ids) in endpoint_labels.iter().zip(&mut endpoint_ids) {
                for (labels, id) in labels.iter().zip(ids) {
                    if id.is_none() {
                        *id = shared(allocator, labels);
                    }
                }
            }
        }
        let mut numbered = |ids: Vec<Numbered>| -> Vec<u32> {
            ids.into_iter()
                .map(|id| {
                    let (id, labels) = id.expect("every label set was numbered");
                    if universe.selectable.insert(id) {
                        universe.identities.insert(id, labels);
                    }
                    id
                })
                .collect()
        };
        let endpoint_ids: Vec<Vec<u32>> = endpoint_ids.into_iter().map(&mut numbered).collect();
        for (endpoint, ids) in set.endpoints.iter().zip(&endpoint_ids) {
            let mut own: Vec<u32> = ids.clone();
            own.sort_unstable();
            own.dedup();
            for id in own {
                universe.names.entry(id).or_default().push(endpoint.clone());
                if endpoint.pod.is_some() {
                    universe.pods.entry(id).or_insert_with(|| endpoint.clone());
                }
            }
            if endpoint.addresses.is_empty() {
                let name = endpoint.qualified_name();
                warnings.push(format!(
                    "{}: spec.addresses is empty, so endpoint {name} matches no traffic",
                    endpoint.origin
                ));
            }
            for (i, (&address, &id)) in endpoint.addresses.iter().zip(ids).enumerate() {
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
        for &prefix in policy_prefixes {
            if prefix.prefix_len() == 0 || universe.ipcache.contains_key(&prefix) || host_prefixes.contains(&prefix) {
                continue;
            }
            let labels = Labels::cidr(prefix);
            let id = allocator.allocate(&labels)?;
            let labels = shared(allocator, &labels).map_or_else(|| Arc::new(labels), |(_, labels)| labels);
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
        Ok(universe)
    }

    /// The labels of a selectable identity.
    fn selectable_labels(&self) -> impl Iterator<Item = (u32, &Labels)> {
        self.selectable.iter().map(|id| (*id, &*self.identities[id]))
    }

    /// The index of label `key` (see `by_label`), built on first use.
    fn index_of(&self, key: &str) -> Arc<ByValue> {
        let mut by_label = self.by_label.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(index) = by_label.get(key) {
            return index.clone();
        }
        let mut index = ByValue::default();
        for (id, labels) in self.selectable_labels() {
            if let Some(value) = labels.get(key) {
                match index.get_mut(value) {
                    Some(ids) => ids.push(id),
                    None => {
                        index.insert(value.to_string(), vec![id]);
                    }
                }
            }
        }
        let index = Arc::new(index);
        by_label.insert(key.to_string(), index.clone());
        index
    }

    /// Identities a selector matches among endpoints and the host.
    pub(super) fn select(&self, selector: &Selector) -> BTreeSet<u32> {
        if selector.match_labels.is_empty() {
            // Every selectable identity the expressions admit (`{}`: all).
            return self.selectable_labels().filter(|(_, l)| selector.matches(l)).map(|(id, _)| id).collect();
        }
        let indexes: Vec<(Arc<ByValue>, &str)> =
            selector.match_labels.iter().map(|(key, value)| (self.index_of(key), value)).collect();
        let mut lists: Vec<&[u32]> = Vec::with_capacity(indexes.len());
        for (index, value) in &indexes {
            match index.get(*value) {
                Some(ids) => lists.push(ids),
                None => return BTreeSet::new(),
            }
        }
        // The identities on every list (each ascending), from the shortest: the matchLabels
        // part of the selector without comparing label strings; then the expressions.
        lists.sort_unstable_by_key(|ids| ids.len());
        let (rarest, others) = lists.split_first().expect("a selector with matchLabels has a list");
        rarest
            .iter()
            .copied()
            .filter(|id| others.iter().all(|ids| ids.binary_search(id).is_ok()))
            .filter(|id| {
                selector.match_expressions.is_empty()
                    || selector.match_expressions.iter().all(|e| e.matches(&self.identities[id]))
            })
            .collect()
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

    /// The identities of pods.
    pub(super) fn pods(&self) -> impl Iterator<Item = u32> + '_ {
        self.pods.keys().copied()
    }

    /// Whether `id` is a pod's identity.
    pub(super) fn is_pod(&self, id: u32) -> bool {
        self.pods.contains_key(&id)
    }

    /// The named container ports of pod identity `id`.
    pub(super) fn pod_ports(&self, id: u32) -> Option<&PodPorts> {
        self.pods.get(&id).and_then(|endpoint| endpoint.pod.as_ref())
    }

    /// `endpoint db-1`, `endpoints db-1, db-2` or `this host`, for warnings.
    pub(super) fn describe(&self, id: u32) -> String {
        if id == HOST {
            return "this host".to_string();
        }
        let names: Option<Vec<String>> = self.names.get(&id).map(|e| e.iter().map(|e| e.qualified_name()).collect());
        match names.as_deref() {
            Some([name]) if self.pods.contains_key(&id) => format!("pod {name}"),
            Some([name]) => format!("endpoint {name}"),
            Some(names) => format!("endpoints {}", names.join(", ")),
            None => format!("identity {id}"),
        }
    }
}
