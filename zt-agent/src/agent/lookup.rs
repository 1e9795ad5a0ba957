//! Who an address is in the active generation: its identity as the kernel's ipcache
//! resolves it (longest prefix, else world) and that identity's labels. Used wherever the
//! agent names an address the way the kernel sees it (explain, alerts); the resolution
//! itself is `zt_policy::explain`'s, which ztctl's offline commands run too.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
pub use zt_policy::explain::resolve;

use super::AgentState;

impl AgentState {
    /// The identity of `ip` in the active generation, and the prefix that gave it.
    pub fn identity_of(&self, ip: IpAddr) -> (u32, Option<IpNet>) {
        resolve(&self.active.tables.ipcache, ip)
    }

    /// The labels of `identity`: its label set, or `reserved=<name>` for a reserved one.
    pub fn labels_of(&self, identity: u32) -> BTreeMap<String, String> {
        zt_policy::explain::labels_of(&self.active.compiled, identity)
    }

    /// The labels of the identity `ip` resolves to.
    pub fn labels_of_ip(&self, ip: IpAddr) -> BTreeMap<String, String> {
        self.labels_of(self.identity_of(ip).0)
    }
}
