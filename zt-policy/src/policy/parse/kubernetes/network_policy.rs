//! `networking.k8s.io/v1 NetworkPolicy` -> a [`Policy`] named `namespace/name`, with the
//! upstream semantics carried into the model:
//!
//! - `spec.podSelector` selects pods of the policy's namespace;
//! - the policy isolates a direction exactly when `policyTypes` lists it; without
//!   `policyTypes`, Ingress always and Egress when `egress` has rules (the API server's
//!   default), so `ingress: []` or no `ingress` at all isolates with no allow;
//! - a peer's podSelector alone means pods of the policy's namespace, namespaceSelector
//!   alone every pod of the selected namespaces, both together the pods matching both;
//!   peers of a rule, rules and policies add up (OR);
//! - a missing or empty `from`/`to` is every peer, missing or empty `ports` every port;
//! - a port is a number (with `endPort`, a range) or a container port name, resolved per
//!   destination pod; protocol defaults to TCP.

use zt_api::labels::{K8S_NAMESPACE, K8S_POD};

use super::schema::{IntOrString, NetworkPolicyDoc, PeerDoc, PolicyRule, PortDoc};
use super::selector::{self, Scope};
use super::{Checker, namespaced_name};
use crate::policy::error::Problem;
use crate::policy::model::{
    Action, Direction, Expression, Mode, NamedPortRule, Operator, Peer, Policy, PortRule, Protocol, Rule, Selector,
    Written,
};

pub(super) fn translate(check: &mut Checker, prefix: &str, doc: NetworkPolicyDoc) -> Option<Policy> {
    let errors_before = check.errors.len();
    let (namespace, name) = namespaced_name(check, prefix, &doc.metadata)?;
    let spec = doc.spec;
    let mut pods = in_namespace(&namespace);
    let pod_selector = spec.pod_selector.unwrap_or_default();
    selector::add(check, &format!("{prefix}spec.podSelector"), &pod_selector, Scope::Pod, &mut pods);

    let (mut ingress_type, mut egress_type) = (false, spec.egress.as_ref().is_some_and(|rules| !rules.is_empty()));
    ingress_type |= spec.policy_types.is_none();
    if let Some(types) = &spec.policy_types {
        egress_type = false;
        for (i, policy_type) in types.iter().enumerate() {
            match policy_type.as_str() {
                "Ingress" => ingress_type = true,
                "Egress" => egress_type = true,
                other => check.report(
                    format!("{prefix}spec.policyTypes[{i}]"),
                    Problem::UnknownPolicyType { value: other.to_string() },
                ),
            }
        }
    }
    let mut rules = |direction: Direction, given: Option<Vec<PolicyRule>>| -> Vec<Rule> {
        let given = given.unwrap_or_default().into_iter().enumerate();
        let path = |i| format!("{prefix}spec.{direction}[{i}]");
        given.map(|(i, rule)| self::rule(check, &path(i), &namespace, direction, rule)).collect()
    };
    let ingress = rules(Direction::Ingress, spec.ingress);
    let egress = rules(Direction::Egress, spec.egress);
    if check.errors.len() > errors_before {
        return None;
    }
    Some(Policy {
        name: format!("{namespace}/{name}"),
        mode: Mode::Enforce,
        selector: pods,
        ingress: ingress_type.then_some(ingress),
        egress: egress_type.then_some(egress),
        origin: check.origin.clone(),
        written: Written::NetworkPolicy { prefix: prefix.to_string() },
    })
}

/// Pods of `namespace`: the scope of a policy's podSelector and of a peer's podSelector alone.
fn in_namespace(namespace: &str) -> Selector {
    let mut selector = Selector::default();
    selector.match_labels.insert(K8S_NAMESPACE, namespace);
    selector
}

/// Every pod (and nothing else): the scope of a peer's namespaceSelector.
fn any_pod() -> Selector {
    let exists = Expression { key: K8S_POD.to_string(), operator: Operator::Exists, values: Default::default() };
    Selector { match_expressions: vec![exists], ..Selector::default() }
}

fn rule(check: &mut Checker, path: &str, namespace: &str, direction: Direction, rule: PolicyRule) -> Rule {
    let peers = match direction {
        Direction::Ingress => rule.from,
        Direction::Egress => rule.to,
    };
    let peer_path = format!("{path}.{}", direction.peer_field());
    let peers = peers.unwrap_or_default().into_iter().enumerate();
    let peers =
        peers.filter_map(|(j, peer)| self::peer(check, &format!("{peer_path}[{j}]"), namespace, peer)).collect();
    let (mut ports, mut named_ports) = (Vec::new(), Vec::new());
    for (j, port) in rule.ports.unwrap_or_default().into_iter().enumerate() {
        match self::port(check, &format!("{path}.ports[{j}]"), port) {
            Some(Port::Number(port)) => ports.push(port),
            Some(Port::Named(port)) => named_ports.push(port),
            None => {}
        }
    }
    Rule { action: Action::Allow, peers, ports, rate_limit: None, named_ports }
}

fn peer(check: &mut Checker, path: &str, namespace: &str, peer: PeerDoc) -> Option<Peer> {
    if let Some(block) = peer.ip_block {
        let other = match (&peer.pod_selector, &peer.namespace_selector) {
            (Some(_), _) => Some("podSelector"),
            (None, Some(_)) => Some("namespaceSelector"),
            (None, None) => None,
        };
        if let Some(other) = other {
            check.report(path, Problem::IpBlockWithSelector { other });
            return None;
        }
        return check.cidr_peer(&format!("{path}.ipBlock"), &block.cidr, &block.except.unwrap_or_default());
    }
    let mut selector = match &peer.namespace_selector {
        Some(namespaces) => {
            let mut selector = any_pod();
            selector::add(check, &format!("{path}.namespaceSelector"), namespaces, Scope::Namespace, &mut selector);
            selector
        }
        None if peer.pod_selector.is_some() => in_namespace(namespace),
        None => {
            check.report(path, Problem::EmptyKubernetesPeer);
            return None;
        }
    };
    if let Some(pods) = &peer.pod_selector {
        selector::add(check, &format!("{path}.podSelector"), pods, Scope::Pod, &mut selector);
    }
    Some(Peer::Selector(selector))
}

enum Port {
    Number(PortRule),
    Named(NamedPortRule),
}

fn port(check: &mut Checker, path: &str, port: PortDoc) -> Option<Port> {
    let protocol = protocol(check, &format!("{path}.protocol"), port.protocol.as_deref());
    match port.port {
        None => {
            if port.end_port.is_some() {
                check.report(format!("{path}.endPort"), Problem::EndPortWithoutPort);
                return None;
            }
            Some(Port::Number(PortRule { protocol: protocol?, port: None, end_port: None }))
        }
        Some(IntOrString::String(name)) if !is_port_name(&name) => {
            // A number in quotes is still a number to the API server's IntOrString.
            match name.parse::<i64>() {
                Ok(number) => numbered(check, path, protocol, number, port.end_port),
                Err(_) => {
                    check.report(format!("{path}.port"), Problem::BadPortName { value: name });
                    None
                }
            }
        }
        Some(IntOrString::String(name)) => {
            if port.end_port.is_some() {
                check.report(format!("{path}.endPort"), Problem::EndPortWithNamedPort { name });
                return None;
            }
            Some(Port::Named(NamedPortRule { protocol: protocol?, name }))
        }
        Some(IntOrString::Int(number)) => numbered(check, path, protocol, number, port.end_port),
    }
}

fn numbered(
    check: &mut Checker,
    path: &str,
    protocol: Option<Protocol>,
    number: i64,
    end_port: Option<i64>,
) -> Option<Port> {
    let start = check.port_number(&format!("{path}.port"), number)?;
    let end = match end_port {
        None => None,
        Some(end) => {
            let end = check.port_number(&format!("{path}.endPort"), end)?;
            if end < start {
                check.report(format!("{path}.endPort"), Problem::EndPortBelowPort { port: start, end_port: end });
                return None;
            }
            Some(end)
        }
    };
    Some(Port::Number(PortRule { protocol: protocol?, port: Some(start), end_port: end }))
}

/// A NetworkPolicy or container port protocol: TCP (the default), UDP or SCTP.
pub(super) fn protocol(check: &mut Checker, path: &str, text: Option<&str>) -> Option<Protocol> {
    match text.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        other => {
            check.report(path, Problem::BadKubernetesProtocol { value: other.to_string() });
            None
        }
    }
}

/// An IANA service name, which container port names are: 1-15 lowercase letters, digits
/// and '-', at least one letter, no '-' at either end or twice in a row.
pub(super) fn is_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}
