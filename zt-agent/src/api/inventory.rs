//! `endpoint list` and `identity list`: the labelled addresses of the running policy and the
//! numeric identities of the active generation, with the prefixes that resolve to each.

use std::collections::BTreeMap;

use super::protocol::{ApiError, DocumentKey, EndpointView, IdentityView, Reply};
use crate::agent::{SharedState, lookup::resolve};
use zt_common::identity::reserved_name;

pub fn endpoints(shared: &SharedState) -> Result<Reply, ApiError> {
    let (sources, ipcache) = {
        let s = shared.lock().expect("agent state");
        (s.active_sources().to_vec(), s.active().tables.ipcache.clone())
    };
    // The running sources were valid when applied; parsing them again cannot fail.
    let set = crate::policy::parse(&sources)
        .map_err(|_| ApiError::failed("the running policy no longer parses; push it again"))?;
    let endpoints = set
        .endpoints
        .iter()
        .map(|e| EndpointView {
            key: DocumentKey {
                kind: if e.pod.is_some() { "Pod" } else { "Endpoint" }.into(),
                namespace: e.namespace.clone(),
                name: e.name.clone(),
            },
            addresses: e.addresses.iter().map(ToString::to_string).collect(),
            labels: e.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            // What the kernel resolves the endpoint's first address to.
            identity: e.addresses.first().map(|net| resolve(&ipcache, net.addr()).0),
        })
        .collect();
    Ok(Reply::Endpoints { endpoints })
}

pub fn identities(shared: &SharedState) -> Result<Reply, ApiError> {
    let s = shared.lock().expect("agent state");
    let mut prefixes: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (net, id) in &s.active().tables.ipcache {
        prefixes.entry(*id).or_default().push(net.to_string());
    }
    let identities = s
        .active()
        .compiled
        .identities
        .iter()
        .map(|(id, labels)| {
            let mut labels: BTreeMap<String, String> =
                labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            if labels.is_empty()
                && let Some(name) = reserved_name(*id)
            {
                labels.insert("reserved".into(), name.into());
            }
            IdentityView { identity: *id, labels, prefixes: prefixes.remove(id).unwrap_or_default() }
        })
        .collect();
    Ok(Reply::Identities { identities })
}
