//! Field checks: one schema document -> the [`model`](crate::policy::model) types, value by
//! value (names, addresses and prefixes, labels, peers, ports), each problem reported with
//! the document's origin and the field's path (`spec.ingress[0].ports[1].port`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use zt_common::ratelimit::RATE_MAX;

use super::schema::{EndpointDocument, PeerDoc, PolicyDocument, PortDoc, RateLimitDoc, RuleDoc};
use crate::identity::Labels;
use crate::identity::labels::{is_dns_subdomain, validate_key, validate_value};
use crate::policy::error::{PolicyError, Problem};
use crate::policy::model::{
    Action, Direction, Endpoint, Origin, Peer, Policy, PortRule, Protocol, RateLimit, Rule, Selector, Written,
};

/// Converts one schema document into the model, reporting each bad field against the
/// document's origin and carrying on (bad values are left out of the result, which is never
/// used when any error was reported).
pub(super) struct Checker<'a> {
    pub origin: &'a Origin,
    pub errors: &'a mut Vec<PolicyError>,
}

impl Checker<'_> {
    pub(super) fn report(&mut self, path: impl Into<String>, problem: Problem) {
        self.errors.push(PolicyError::Invalid { origin: self.origin.clone(), path: path.into(), problem });
    }

    pub fn endpoint(&mut self, doc: EndpointDocument) -> Endpoint {
        self.name("metadata.name", &doc.metadata.name);
        if let Some(namespace) = &doc.metadata.namespace {
            self.name("metadata.namespace", namespace);
        }
        let mut addresses = Vec::new();
        for (i, text) in doc.spec.addresses.iter().enumerate() {
            let path = format!("spec.addresses[{i}]");
            match self.prefix(&path, text) {
                Some(net) if net.prefix_len() == 0 => self.report(path, Problem::DefaultRoute { value: net }),
                Some(net) => addresses.push(net),
                None => {}
            }
        }
        Endpoint {
            name: doc.metadata.name,
            namespace: doc.metadata.namespace,
            addresses,
            labels: self.labels("spec.labels", doc.spec.labels.unwrap_or_default()),
            pod: None,
            origin: self.origin.clone(),
        }
    }

    pub fn policy(&mut self, doc: PolicyDocument) -> Policy {
        self.name("metadata.name", &doc.metadata.name);
        let selector = Selector::new(self.labels("spec.selector", doc.spec.selector));
        let ingress = doc.spec.ingress.map(|rules| self.rules(Direction::Ingress, rules));
        let egress = doc.spec.egress.map(|rules| self.rules(Direction::Egress, rules));
        Policy {
            name: doc.metadata.name,
            mode: doc.spec.mode.unwrap_or_default(),
            selector,
            ingress,
            egress,
            origin: self.origin.clone(),
            written: Written::Zt,
        }
    }

    fn rules(&mut self, direction: Direction, rules: Vec<RuleDoc>) -> Vec<Rule> {
        let mut out = Vec::new();
        for (i, rule) in rules.into_iter().enumerate() {
            let path = format!("spec.{direction}[{i}]");
            let (peers, wrong) = match direction {
                Direction::Ingress => (rule.from, rule.to.map(|_| "to")),
                Direction::Egress => (rule.to, rule.from.map(|_| "from")),
            };
            if let Some(wrong) = wrong {
                let problem = Problem::WrongPeerField { direction, expected: direction.peer_field() };
                self.report(format!("{path}.{wrong}"), problem);
            }
            let peer_path = format!("{path}.{}", direction.peer_field());
            let peers = peers.unwrap_or_default();
            let peers =
                peers.into_iter().enumerate().filter_map(|(j, peer)| self.peer(&format!("{peer_path}[{j}]"), peer));
            let peers = peers.collect();
            let ports = rule.ports.unwrap_or_default();
            let ports =
                ports.into_iter().enumerate().filter_map(|(j, port)| self.port(&format!("{path}.ports[{j}]"), port));
            let ports = ports.collect();
            let action = rule.action.unwrap_or_default();
            let rate_limit = rule
                .rate_limit
                .and_then(|limit| self.rate_limit(&format!("{path}.rateLimit"), direction, action, limit));
            out.push(Rule { action, peers, ports, rate_limit, named_ports: Vec::new() });
        }
        out
    }

    fn peer(&mut self, path: &str, peer: PeerDoc) -> Option<Peer> {
        let given: Vec<&'static str> = [
            peer.selector.as_ref().map(|_| "selector"),
            peer.cidr.as_ref().map(|_| "cidr"),
            peer.entity.as_ref().map(|_| "entity"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if peer.except.is_some() && peer.cidr.is_none() {
            self.report(format!("{path}.except"), Problem::ExceptWithoutCidr);
        }
        match given[..] {
            // `except` alone was reported above.
            [] if peer.except.is_some() => return None,
            [] => {
                self.report(path, Problem::EmptyPeer);
                return None;
            }
            [_] => {}
            [first, second, ..] => {
                self.report(path, Problem::AmbiguousPeer { first, second });
                return None;
            }
        }
        if let Some(selector) = peer.selector {
            return Some(Peer::Selector(Selector::new(self.labels(&format!("{path}.selector"), selector))));
        }
        if let Some(entity) = peer.entity {
            return Some(Peer::Entity(entity));
        }
        self.cidr_peer(path, peer.cidr.as_deref()?, &peer.except.unwrap_or_default())
    }

    /// A CIDR peer with its exceptions, each strictly inside it (`zt/v1` `cidr`/`except`,
    /// Kubernetes `ipBlock`); `path` is the peer's, the fields are `cidr` and `except`.
    pub(super) fn cidr_peer(&mut self, path: &str, cidr: &str, except_texts: &[String]) -> Option<Peer> {
        let cidr = self.prefix(&format!("{path}.cidr"), cidr)?;
        let mut except = Vec::new();
        for (i, text) in except_texts.iter().enumerate() {
            let except_path = format!("{path}.except[{i}]");
            let Some(net) = self.prefix(&except_path, text) else {
                continue;
            };
            if cidr.contains(&net) && net.prefix_len() > cidr.prefix_len() {
                except.push(net);
            } else {
                self.report(except_path, Problem::ExceptOutsideCidr { except: net, cidr });
            }
        }
        Some(Peer::Cidr { cidr, except })
    }

    fn port(&mut self, path: &str, port: PortDoc) -> Option<PortRule> {
        // Kubernetes' default, so a port item reads the same in both formats.
        let protocol = port.protocol.unwrap_or(Protocol::Tcp);
        let mut ok = true;
        if !protocol.has_ports() {
            for (field, value) in [("port", port.port), ("endPort", port.end_port)] {
                if value.is_some() {
                    self.report(format!("{path}.{field}"), Problem::PortNotAllowed { protocol });
                    ok = false;
                }
            }
            return ok.then_some(PortRule { protocol, port: None, end_port: None });
        }
        let start = port.port.and_then(|value| self.port_number(&format!("{path}.port"), value));
        let end = port.end_port.and_then(|value| self.port_number(&format!("{path}.endPort"), value));
        ok &= port.port.is_none() || start.is_some();
        ok &= port.end_port.is_none() || end.is_some();
        match (port.port, start, end) {
            (None, _, Some(_)) => {
                self.report(format!("{path}.endPort"), Problem::EndPortWithoutPort);
                ok = false;
            }
            (_, Some(start), Some(end)) if end < start => {
                self.report(format!("{path}.endPort"), Problem::EndPortBelowPort { port: start, end_port: end });
                ok = false;
            }
            _ => {}
        }
        ok.then_some(PortRule { protocol, port: start, end_port: end })
    }

    /// `rateLimit`: ingress allow rules only; `burst` defaults to `newFlowsPerSecond`.
    fn rate_limit(&mut self, path: &str, direction: Direction, action: Action, doc: RateLimitDoc) -> Option<RateLimit> {
        if direction == Direction::Egress {
            self.report(path, Problem::RateLimitOnEgress);
            return None;
        }
        if action == Action::Deny {
            self.report(path, Problem::RateLimitOnDeny);
            return None;
        }
        let Some(per_second) = doc.new_flows_per_second else {
            self.report(format!("{path}.newFlowsPerSecond"), Problem::RateMissing);
            return None;
        };
        let per_second = self.rate_number(&format!("{path}.newFlowsPerSecond"), per_second);
        let burst = match doc.burst {
            Some(burst) => self.rate_number(&format!("{path}.burst"), burst),
            None => per_second,
        };
        Some(RateLimit { new_flows_per_second: per_second?, burst: burst? })
    }

    fn rate_number(&mut self, path: &str, value: i64) -> Option<u32> {
        match u32::try_from(value) {
            Ok(n) if (1..=RATE_MAX).contains(&n) => Some(n),
            _ => {
                self.report(path, Problem::RateOutOfRange { value, max: RATE_MAX });
                None
            }
        }
    }

    pub(super) fn port_number(&mut self, path: &str, value: i64) -> Option<u16> {
        match u16::try_from(value) {
            Ok(port) if port >= 1 => Some(port),
            _ => {
                self.report(path, Problem::PortOutOfRange { value });
                None
            }
        }
    }

    /// An address or prefix: a bare IP is a host prefix (/32, /128); host bits are an error
    /// rather than silently cleared, because `10.0.1.5/24` usually means a typo.
    pub(super) fn prefix(&mut self, path: &str, text: &str) -> Option<IpNet> {
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Some(IpNet::from(addr));
        }
        match text.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => Some(net),
            Ok(net) => {
                self.report(path, Problem::HostBitsSet { value: text.to_string(), network: net.trunc() });
                None
            }
            Err(_) => {
                self.report(path, Problem::BadAddress { value: text.to_string() });
                None
            }
        }
    }

    /// A label map (endpoint labels or a matchLabels selector), checked with the Kubernetes
    /// label rules; bad labels are reported and left out.
    pub(super) fn labels(&mut self, path: &str, map: BTreeMap<String, String>) -> Labels {
        let mut labels = Labels::new();
        for (key, value) in map {
            match validate_key(&key).and_then(|()| validate_value(&key, &value)) {
                Ok(()) => labels.insert(key, value),
                Err(error) => self.report(path, Problem::Label(error)),
            }
        }
        labels
    }

    pub(super) fn name(&mut self, path: &str, name: &str) {
        if !is_dns_subdomain(name) {
            self.report(path, Problem::BadName { value: name.to_string() });
        }
    }
}
