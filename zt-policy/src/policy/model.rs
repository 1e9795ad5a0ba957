//! The validated policy model: what the compiler consumes.
//!
//! `parse` turns `zt/v1` YAML into these types and rejects anything the model cannot state,
//! so every value here is already known to be well formed: addresses are prefixes without
//! host bits, ports are in range, label keys follow the Kubernetes syntax, `except` lies
//! inside its `cidr`. Each object remembers its [`Origin`] so later warnings can point at it.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use zt_common::{proto, reason};

use crate::identity::Labels;
use crate::identity::labels::K8S_FAMILY;

/// Where a document came from: the source name (usually a file path) and the document's
/// 1-based position in that source's YAML stream (empty documents count).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    pub source: String,
    pub document: usize,
}

impl Origin {
    pub fn new(source: impl Into<String>, document: usize) -> Self {
        Self { source: source.into(), document }
    }

    /// `db.yaml, document 2`, for pointing at another object inside a message.
    pub fn location(&self) -> String {
        format!("{}, document {}", self.source, self.document)
    }
}

/// `policy db.yaml, document 2`: how every message about a document starts.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source name is the operator's file name: kept to one line in every message.
        write!(f, "policy {}, document {}", zt_api::text::one_line(&self.source), self.document)
    }
}

/// Everything one push contains, in input order. Endpoints and policies are shared, not
/// copied, between the parse cache and the pushes that reuse them: a one-rule change to a
/// 100k-rule policy spent a quarter of its time copying and freeing the unchanged ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySet {
    pub endpoints: Vec<Arc<Endpoint>>,
    pub policies: Vec<Arc<Policy>>,
}

/// `kind: Endpoint`: labels for a set of addresses (local workloads or remote peers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub namespace: Option<String>,
    /// Distinct prefixes; a bare IP became a /32 or /128.
    pub addresses: Vec<IpNet>,
    pub labels: Labels,
    /// Set for a Kubernetes Pod: isolated only by policies that select it (never by the
    /// agent's default deny), and its container ports give named ports their numbers.
    pub pod: Option<PodPorts>,
    pub origin: Origin,
}

/// A pod's named container ports, which NetworkPolicy ports may name instead of a number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodPorts {
    pub named: Vec<NamedPort>,
}

impl PodPorts {
    /// The port number `name` stands for on this pod with `protocol`, if it has one.
    pub fn resolve(&self, protocol: Protocol, name: &str) -> Option<u16> {
        self.named.iter().find(|p| p.protocol == protocol && p.name == name).map(|p| p.port)
    }
}

/// One named container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

impl Endpoint {
    /// The labels of the identity `address` resolves to: the endpoint's labels, plus, for a
    /// pod with addresses of both families, its family (`k8s:family`), so that each family
    /// of the pod is its own identity and an ipBlock of one family matches that family's
    /// traffic only.
    pub fn identity_labels(&self, address: &IpNet) -> Labels {
        self.identity_labels_of(address).into_owned()
    }

    /// [`Self::identity_labels`], borrowing the endpoint's own labels when they are the
    /// identity's (all but a dual-stack pod's).
    pub fn identity_labels_of(&self, address: &IpNet) -> Cow<'_, Labels> {
        let dual_stack = self.addresses.iter().any(|a| matches!(a, IpNet::V4(_)))
            && self.addresses.iter().any(|a| matches!(a, IpNet::V6(_)));
        if self.pod.is_some() && dual_stack {
            let mut labels = self.labels.clone();
            labels.insert(K8S_FAMILY, if matches!(address, IpNet::V4(_)) { "ipv4" } else { "ipv6" });
            Cow::Owned(labels)
        } else {
            Cow::Borrowed(&self.labels)
        }
    }

    /// Every label set this endpoint's identities have (its labels alone when it has no
    /// address).
    pub fn identity_label_sets(&self) -> BTreeSet<Labels> {
        if self.addresses.is_empty() {
            return BTreeSet::from([self.labels.clone()]);
        }
        self.addresses.iter().map(|address| self.identity_labels(address)).collect()
    }

    /// `namespace/name`, or `name` without a namespace: unique within a push.
    pub fn qualified_name(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// `kind: Policy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub mode: Mode,
    /// The local identities the policy applies to.
    pub selector: Selector,
    /// `None`: the policy says nothing about ingress. `Some([])`: it isolates the selected
    /// identities for ingress and allows nothing (the Kubernetes meaning of an empty list).
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    pub origin: Origin,
    /// The kind of document it was written as, so messages name the fields the author wrote.
    pub written: Written,
}

/// The document a [`Policy`] was written as: compile warnings quote its field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Written {
    /// `zt/v1` `kind: Policy`.
    #[default]
    Zt,
    /// A Kubernetes NetworkPolicy; `prefix` places it inside a List (`items[3].`).
    NetworkPolicy { prefix: String },
}

impl Written {
    /// The path of the policy's own selector.
    pub fn selector_path(&self) -> String {
        match self {
            Written::Zt => "spec.selector".to_string(),
            Written::NetworkPolicy { prefix } => format!("{prefix}spec.podSelector"),
        }
    }

    /// The path of rule `index` of `direction`.
    pub fn rule_path(&self, direction: Direction, index: usize) -> String {
        let prefix = match self {
            Written::Zt => "",
            Written::NetworkPolicy { prefix } => prefix,
        };
        format!("{prefix}spec.{direction}[{index}]")
    }

    /// The field of a peer (at `peer_path`) that holds a selector or a CIDR.
    pub fn peer_field(&self, peer_path: &str, peer: &Peer) -> String {
        match (self, peer) {
            (Written::Zt, Peer::Selector(_)) => format!("{peer_path}.selector"),
            (Written::Zt, _) => format!("{peer_path}.cidr"),
            (Written::NetworkPolicy { .. }, Peer::Selector(_)) => peer_path.to_string(),
            (Written::NetworkPolicy { .. }, _) => format!("{peer_path}.ipBlock.cidr"),
        }
    }

    /// What a selector that selects nothing failed to find.
    pub fn selectable(&self) -> &'static str {
        match self {
            Written::Zt => "no endpoint and not this host",
            Written::NetworkPolicy { .. } => "no pod",
        }
    }
}

impl Policy {
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

/// One entry of `ingress` or `egress`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    /// `from` (ingress) or `to` (egress); empty means any peer.
    pub peers: Vec<Peer>,
    /// Empty (together with `named_ports`) means every protocol and port.
    pub ports: Vec<PortRule>,
    /// Ingress allow rules only: a per-source limit on the new flows the rule admits.
    pub rate_limit: Option<RateLimit>,
    /// Ports named by a destination pod's container port (Kubernetes `port: http`): each
    /// stands for the port that pod gives the name, and for nothing at a pod without it.
    pub named_ports: Vec<NamedPortRule>,
}

impl Rule {
    /// True when the rule names no port at all: it matches every protocol and port.
    pub fn all_ports(&self) -> bool {
        self.ports.is_empty() && self.named_ports.is_empty()
    }
}

/// A port item that names a container port instead of giving a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPortRule {
    pub protocol: Protocol,
    pub name: String,
}

/// `rateLimit: {newFlowsPerSecond: N, burst: M}`: each source address may open N new flows
/// a second through the rule, and M at once (a token bucket per source). Both are in
/// `1..=zt_common::ratelimit::RATE_MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub new_flows_per_second: u32,
    pub burst: u32,
}

impl RateLimit {
    /// The kernel's form of the limit.
    pub const fn to_kernel(self) -> zt_common::ratelimit::RateLimit {
        zt_common::ratelimit::RateLimit::new(self.new_flows_per_second, self.burst)
    }
}

/// One item of `from`/`to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    Selector(Selector),
    Cidr { cidr: IpNet, except: Vec<IpNet> },
    Entity(Entity),
}

/// One item of `ports`. `port`/`end_port` are only present for protocols with ports, and
/// `end_port >= port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRule {
    pub protocol: Protocol,
    pub port: Option<u16>,
    pub end_port: Option<u16>,
}

impl PortRule {
    /// The inclusive port range this item matches, or `None` for every port.
    pub fn range(&self) -> Option<(u16, u16)> {
        self.port.map(|start| (start, self.end_port.unwrap_or(start)))
    }
}

/// A label selector: every label of `match_labels` and every expression must hold; `{}`
/// selects all. `zt/v1` writes only matchLabels; Kubernetes selectors add expressions, and
/// their namespace and "is a pod" conditions are expressions on reserved labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Expression>,
}

impl Selector {
    pub fn new(match_labels: Labels) -> Self {
        Self { match_labels, match_expressions: Vec::new() }
    }

    pub fn is_all(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        labels.contains_all(&self.match_labels) && self.match_expressions.iter().all(|e| e.matches(labels))
    }
}

/// Written the way the YAML spells it, `{app: db, env: prod}`, so messages quote the input;
/// expressions follow as `key In (a, b)`.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (key, value)) in self.match_labels.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{key}: {value}")?;
        }
        for (i, expression) in self.match_expressions.iter().enumerate() {
            if i > 0 || !self.match_labels.is_empty() {
                f.write_str(", ")?;
            }
            write!(f, "{expression}")?;
        }
        f.write_str("}")
    }
}

/// One matchExpressions requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expression {
    pub key: String,
    pub operator: Operator,
    /// For `In`/`NotIn` (never empty there); empty for `Exists`/`DoesNotExist`.
    pub values: BTreeSet<String>,
}

impl Expression {
    /// Kubernetes' rules: `NotIn` and `DoesNotExist` also hold when the key is absent.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.key, self.operator)?;
        if !self.values.is_empty() {
            let values: Vec<&str> = self.values.iter().map(String::as_str).collect();
            write!(f, " ({})", values.join(", "))?;
        }
        Ok(())
    }
}

/// matchExpressions operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Drops what the policy does not allow.
    #[default]
    Enforce,
    /// Reports would-drops (verdict `audit`) and lets them pass.
    Audit,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Allow,
    Deny,
}

/// Reserved peers named by `entity:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entity {
    /// This machine (identity 1).
    Host,
    /// Addresses no endpoint or policy prefix claims (identity 2).
    World,
    /// Every peer, like omitting `from`/`to`.
    Any,
}

/// Protocols a port item may name, spelled as the flow log spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
    #[serde(rename = "ICMP")]
    Icmp,
    #[serde(rename = "ICMPv6")]
    IcmpV6,
}

impl Protocol {
    /// IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => proto::TCP,
            Protocol::Udp => proto::UDP,
            Protocol::Sctp => proto::SCTP,
            Protocol::Icmp => proto::ICMP,
            Protocol::IcmpV6 => proto::ICMPV6,
        }
    }

    /// True for protocols whose policy keys carry a destination port.
    pub const fn has_ports(self) -> bool {
        proto::has_ports(self.number())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(proto::name(self.number()).unwrap_or("?"))
    }
}

/// Traffic direction as policy sees it: ingress protects the destination, egress the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// `reason::DIR_INGRESS` / `reason::DIR_EGRESS`, as stored in policy keys.
    pub const fn to_u8(self) -> u8 {
        match self {
            Direction::Ingress => reason::DIR_INGRESS,
            Direction::Egress => reason::DIR_EGRESS,
        }
    }

    /// The YAML field that lists this direction's rules.
    pub const fn field(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The YAML field that lists a rule's peers in this direction.
    pub const fn peer_field(self) -> &'static str {
        match self {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}
