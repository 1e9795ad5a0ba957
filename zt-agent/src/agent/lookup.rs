//! Who an address is in the active generation: its identity as the kernel's ipcache
//! resolves it (longest prefix, else world) and that identity's labels. Used wherever the
//! agent names an address the way the kernel sees it (explain, alerts).

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use zt_common::identity::{WORLD, reserved_name};

use super::AgentState;

/// The identity `ip` resolves to in `ipcache`: the longest matching prefix, else world.
pub fn resolve(ipcache: &[(IpNet, u32)], ip: IpAddr) -> (u32, Option<IpNet>) {
    let ip = ip.to_canonical();
    ipcache
        .iter()
        .filter(|(net, _)| net.contains(&ip))
        .max_by_key(|(net, _)| net.prefix_len())
        .map_or((WORLD, None), |&(net, id)| (id, Some(net)))
}

impl AgentState {
    /// The identity of `ip` in the active generation, and the prefix that gave it.
    pub fn identity_of(&self, ip: IpAddr) -> (u32, Option<IpNet>) {
        resolve(&self.active.tables.ipcache, ip)
    }

    /// The labels of `identity`: its label set, or `reserved=<name>` for a reserved one.
    pub fn labels_of(&self, identity: u32) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = self
            .active
            .compiled
            .identities
            .get(&identity)
            .map(|l| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            .unwrap_or_default();
        if labels.is_empty()
            && let Some(name) = reserved_name(identity)
        {
            labels.insert("reserved".to_string(), name.to_string());
        }
        labels
    }

    /// The labels of the identity `ip` resolves to.
    pub fn labels_of_ip(&self, ip: IpAddr) -> BTreeMap<String, String> {
        self.labels_of(self.identity_of(ip).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_common::identity::HOST;

    #[test]
    fn the_longest_prefix_wins_and_nothing_matching_is_world() {
        let ipcache: Vec<(IpNet, u32)> = vec![
            ("0.0.0.0/0".parse().unwrap(), WORLD),
            ("198.18.0.0/16".parse().unwrap(), 300),
            ("198.18.0.1/32".parse().unwrap(), HOST),
            ("fd00::/64".parse().unwrap(), 301),
        ];
        assert_eq!(resolve(&ipcache, "198.18.0.1".parse().unwrap()).0, HOST);
        assert_eq!(resolve(&ipcache, "198.18.7.1".parse().unwrap()), (300, Some("198.18.0.0/16".parse().unwrap())));
        assert_eq!(resolve(&ipcache, "203.0.113.1".parse().unwrap()).0, WORLD);
        assert_eq!(resolve(&ipcache, "fd00::9".parse().unwrap()).0, 301);
        assert_eq!(resolve(&ipcache, "fd01::9".parse().unwrap()), (WORLD, None), "no ::/0 here: world by default");
    }
}
