//! `v1 Pod` -> an [`Endpoint`] with the pod's addresses (`status.podIPs`, `status.podIP`),
//! its labels plus its namespace's, and its named container ports.
//!
//! Pods the network policy cannot see are left out, as upstream: pods without an IP (not
//! yet scheduled), finished pods (`Succeeded`, `Failed`: their IPs are reused), and pods on
//! the host network (their address is the node's).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use zt_api::labels::{K8S_NAMESPACE, K8S_POD};

use super::schema::{ContainerPort, PodDoc};
use super::{Checker, namespace, namespaced_name, network_policy};
use crate::identity::Labels;
use crate::policy::error::Problem;
use crate::policy::model::{Endpoint, NamedPort, Origin, PodPorts};

pub(super) fn translate(
    check: &mut Checker,
    prefix: &str,
    doc: PodDoc,
    namespaces: &BTreeMap<String, (Labels, Origin)>,
) -> Option<Endpoint> {
    let (namespace, name) = namespaced_name(check, prefix, &doc.metadata)?;
    let spec = doc.spec.unwrap_or_default();
    let status = doc.status.unwrap_or_default();
    let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    if finished || spec.host_network == Some(true) {
        return None;
    }
    let mut addresses: Vec<IpNet> = Vec::new();
    let listed = status.pod_ips.unwrap_or_default().into_iter().enumerate();
    let listed = listed.map(|(i, ip)| (format!("{prefix}status.podIPs[{i}].ip"), ip.ip));
    let single = status.pod_ip.map(|ip| (format!("{prefix}status.podIP"), ip));
    for (path, text) in listed.chain(single) {
        match text.parse::<IpAddr>() {
            Ok(ip) if !addresses.contains(&IpNet::from(ip)) => addresses.push(IpNet::from(ip)),
            Ok(_) => {}
            Err(_) => check.report(path, Problem::BadAddress { value: text }),
        }
    }
    let mut labels = check.labels(&format!("{prefix}metadata.labels"), doc.metadata.labels.unwrap_or_default());
    for (key, value) in namespace::inherited(&namespace, namespaces).iter() {
        labels.insert(key, value);
    }
    labels.insert(K8S_NAMESPACE, namespace.as_str());
    labels.insert(K8S_POD, name.as_str());

    let containers = [("containers", spec.containers), ("initContainers", spec.init_containers)];
    let mut named = Vec::new();
    for (field, list) in containers {
        for (i, container) in list.unwrap_or_default().into_iter().enumerate() {
            for (j, port) in container.ports.unwrap_or_default().into_iter().enumerate() {
                let path = format!("{prefix}spec.{field}[{i}].ports[{j}]");
                named.extend(named_port(check, &path, port));
            }
        }
    }
    if addresses.is_empty() {
        return None;
    }
    Some(Endpoint {
        name,
        namespace: Some(namespace),
        addresses,
        labels,
        pod: Some(PodPorts { named }),
        origin: check.origin.clone(),
    })
}

/// A container port that has a name; unnamed ports are only reachable by number.
fn named_port(check: &mut Checker, path: &str, port: ContainerPort) -> Option<NamedPort> {
    let number = check.port_number(&format!("{path}.containerPort"), port.container_port);
    let protocol = network_policy::protocol(check, &format!("{path}.protocol"), port.protocol.as_deref());
    let name = port.name?;
    if !network_policy::is_port_name(&name) {
        check.report(format!("{path}.name"), Problem::BadPortName { value: name });
        return None;
    }
    Some(NamedPort { name, protocol: protocol?, port: number? })
}
