//! An observed edge: every flow the agent saw between one local identity and one peer on
//! one protocol and port, with one verdict, aggregated. The agent keeps a bounded, persistent
//! table of them (independent of the flow-record history); `ztctl policy suggest` writes
//! least-privilege policy from them and `ztctl flows map` draws them.

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

/// One aggregated edge. Local and peer are named the way policy names them: by labels when
/// the address belongs to a labelled identity (an Endpoint, a pod, the host as
/// `reserved=host`), by address otherwise (`peer_ip`, with empty `peer_labels`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObservedEdge {
    /// ingress | egress: the hook that judged the flow's first packet, from the local side.
    pub direction: String,
    /// The local identity's labels.
    pub local_labels: BTreeMap<String, String>,
    /// The peer identity's labels; empty when the peer is an unlabelled address.
    pub peer_labels: BTreeMap<String, String>,
    /// The peer's address when it has no labels (world); null for a labelled peer.
    pub peer_ip: Option<IpAddr>,
    /// TCP | UDP | SCTP | ICMP | ICMPv6 | other protocol number
    pub protocol: String,
    /// The destination port (the local port for ingress, the peer's for egress); null for
    /// protocols without ports.
    pub port: Option<u16>,
    /// allowed | denied | audit
    pub verdict: String,
    /// The reason of the most recent flow of the edge (policy, default-deny, ...).
    pub reason: String,
    /// The deciding policy of the most recent flow, or for default-deny the policy that
    /// isolates the local identity, if one does.
    pub policy: Option<String>,
    /// New flows (allowed) or denied/audited first packets seen on this edge.
    pub flows: u64,
    /// RFC 3339 times of the first and the most recent flow.
    pub first_seen: String,
    pub last_seen: String,
}
