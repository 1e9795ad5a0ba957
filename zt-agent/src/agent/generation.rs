//! From policy files to one generation of kernel tables: load, validate, compile, add this
//! host's addresses, and name everything for the flow log. Pure until `apply`; a rejected
//! push returns every error and changes nothing. The agent reads through a
//! [`ParseCache`], so a push reads only the sources whose text changed (same result).

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::PathBuf,
};

use ipnet::IpNet;
use zt_common::identity::HOST;

use crate::{
    datapath::Tables,
    identity::IdentityAllocator,
    policy::{self, CompileSettings, CompiledPolicy, ParseCache, PolicySet},
};

/// A compiled generation, ready to write.
pub struct Prepared {
    pub compiled: CompiledPolicy,
    pub tables: Tables,
}

/// Every problem with a push, one sentence each.
#[derive(Debug)]
pub struct Rejected(pub Vec<String>);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Loads, validates and compiles `paths`; the allocator changes only on success.
pub fn prepare(
    paths: &[PathBuf],
    settings: &CompileSettings,
    host: &[IpNet],
    allocator: &mut IdentityAllocator,
) -> Result<Prepared, Rejected> {
    let sources = policy::load_paths(paths).map_err(|errs| Rejected(errs.iter().map(ToString::to_string).collect()))?;
    prepare_sources(&sources, settings, host, allocator)
}

/// Validates and compiles named policy texts (file name, YAML); the allocator changes only
/// on success.
pub fn prepare_sources(
    sources: &[(String, String)],
    settings: &CompileSettings,
    host: &[IpNet],
    allocator: &mut IdentityAllocator,
) -> Result<Prepared, Rejected> {
    let set = policy::parse(sources).map_err(|errs| Rejected(errs.iter().map(ToString::to_string).collect()))?;
    prepare_set(&set, settings, host, allocator)
}

/// [`prepare_sources`], reading only the sources whose text `cache` does not hold (see
/// [`policy::parse_cached`]); the result is the same.
pub fn prepare_sources_cached(
    sources: &[(String, String)],
    settings: &CompileSettings,
    host: &[IpNet],
    allocator: &mut IdentityAllocator,
    cache: &mut ParseCache,
) -> Result<Prepared, Rejected> {
    let set = policy::parse_cached(sources, cache)
        .map_err(|errs| Rejected(errs.iter().map(ToString::to_string).collect()))?;
    prepare_set(&set, settings, host, allocator)
}

fn prepare_set(
    set: &PolicySet,
    settings: &CompileSettings,
    host: &[IpNet],
    allocator: &mut IdentityAllocator,
) -> Result<Prepared, Rejected> {
    let compiled = policy::compile(set, settings, allocator).map_err(|e| Rejected(vec![e.to_string()]))?;
    let tables = tables(&compiled, host);
    Ok(Prepared { compiled, tables })
}

/// The kernel tables of a compiled policy plus this host's addresses as `host`. The host's
/// own addresses win over any prefix a policy gives them, so failsafe rules keep working.
pub fn tables(compiled: &CompiledPolicy, host: &[IpNet]) -> Tables {
    let mut ipcache: Vec<(IpNet, u32)> =
        compiled.ipcache.iter().filter(|(net, _)| !host.contains(net)).copied().collect();
    ipcache.extend(host.iter().map(|net| (*net, HOST)));
    let policy = compiled
        .entries
        .iter()
        .map(|(key, value)| {
            let (prefix, key) = key.to_lpm(0);
            (prefix, key, *value)
        })
        .collect();
    Tables { policy, ipcache, rate_limits: compiled.rate_limits.clone() }
}

/// Labels by identity and names by policy id, for flow-log enrichment.
pub fn names(compiled: &CompiledPolicy) -> (HashMap<u32, BTreeMap<String, String>>, HashMap<u32, String>) {
    let identities = compiled
        .identities
        .iter()
        .map(|(id, labels)| (*id, labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
        .collect();
    let policies = compiled.policies.iter().map(|p| (p.id, p.name.clone())).collect();
    (identities, policies)
}

/// The host's own addresses (not the multicast ranges) as plain IPs, for compile settings.
pub fn host_ips(host: &[IpNet]) -> Vec<IpAddr> {
    host.iter().filter(|n| n.prefix_len() == n.max_prefix_len()).map(IpNet::addr).collect()
}
