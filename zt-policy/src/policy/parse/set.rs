//! Cross-document checks, on the whole set of a push once every document is read: names are
//! unique (per kind, and per namespace for endpoints) and no address is claimed by two
//! endpoints with different labels.

use foldhash::{HashMap, HashMapExt};
use ipnet::IpNet;

use crate::policy::error::{PolicyError, Problem};
use crate::policy::model::{Endpoint, Origin, PolicySet};

/// Names identify objects in `ztctl policy get/delete` and in flow logs: one object per name.
pub(super) fn check_unique_names(set: &PolicySet, errors: &mut Vec<PolicyError>) {
    // Keyed by (namespace, name) as borrowed: a name cannot hold the `/` that joins them in
    // the qualified name (it is a DNS subdomain), so the pairs are as unique as the names,
    // and a push of 12,500 objects formats none of them.
    let mut first_endpoint: HashMap<(Option<&str>, &str), &Origin> = HashMap::with_capacity(set.endpoints.len());
    for endpoint in &set.endpoints {
        let name = (endpoint.namespace.as_deref(), endpoint.name.as_str());
        match first_endpoint.get(&name) {
            Some(first) => errors.push(duplicate("endpoint", endpoint.qualified_name(), &endpoint.origin, first)),
            None => {
                first_endpoint.insert(name, &endpoint.origin);
            }
        }
    }
    let mut first_policy: HashMap<&str, &Origin> = HashMap::with_capacity(set.policies.len());
    for policy in &set.policies {
        match first_policy.get(policy.name.as_str()) {
            Some(first) => errors.push(duplicate("policy", policy.name.clone(), &policy.origin, first)),
            None => {
                first_policy.insert(&policy.name, &policy.origin);
            }
        }
    }
}

fn duplicate(kind: &'static str, name: String, origin: &Origin, first: &Origin) -> PolicyError {
    let problem = Problem::DuplicateName { kind, name, first: first.location() };
    PolicyError::Invalid { origin: origin.clone(), path: "metadata.name".into(), problem }
}

/// One address, one identity: the ipcache can map a prefix to only one label set. Endpoints
/// with identical labels may share addresses (they are the same identity).
pub(super) fn check_address_claims(set: &PolicySet, errors: &mut Vec<PolicyError>) {
    let mut claims: HashMap<IpNet, &Endpoint> = HashMap::with_capacity(set.endpoints.len());
    for endpoint in &set.endpoints {
        for (i, &address) in endpoint.addresses.iter().enumerate() {
            match claims.get(&address) {
                Some(first) if first.labels != endpoint.labels => {
                    let problem = Problem::AddressClaimed {
                        address,
                        endpoint: first.qualified_name(),
                        first: first.origin.location(),
                    };
                    let path = format!("spec.addresses[{i}]");
                    errors.push(PolicyError::Invalid { origin: endpoint.origin.clone(), path, problem });
                }
                Some(_) => {}
                None => {
                    claims.insert(address, endpoint);
                }
            }
        }
    }
}
