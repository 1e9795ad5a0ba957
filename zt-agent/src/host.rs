//! This machine's own addresses: every address configured in the agent's network namespace,
//! turned by `zt_policy::host::prefixes` into every prefix that resolves to the reserved
//! `host` identity (with the broadcast and multicast destinations the kernel also delivers
//! to its sockets) — the same derivation `ztctl`'s offline commands apply to `--host`.

use std::net::IpAddr;

use ipnet::IpNet;

/// Every IPv4 and IPv6 address of every interface with its subnet, as
/// [`zt_policy::host::prefixes`] turns them into host prefixes.
pub fn addresses() -> std::io::Result<Vec<IpNet>> {
    let mut configured = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)? {
        let Some(address) = ifa.address else { continue };
        if let Some(v4) = address.as_sockaddr_in() {
            let mask = ifa.netmask.as_ref().and_then(|m| m.as_sockaddr_in()).map(|m| m.ip());
            let len = mask.map_or(32, |m| u32::from(m).leading_ones() as u8);
            configured.push(IpNet::new_assert(IpAddr::V4(v4.ip()), len));
        } else if let Some(v6) = address.as_sockaddr_in6() {
            configured.push(IpNet::from(IpAddr::V6(v6.ip())));
        }
    }
    Ok(zt_policy::host::prefixes(configured))
}

/// Interface index -> name for every interface of this namespace.
pub fn interface_names() -> std::collections::HashMap<u32, String> {
    let mut names = std::collections::HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(idx) = std::fs::read_to_string(entry.path().join("ifindex"))
                && let Ok(idx) = idx.trim().parse()
            {
                names.insert(idx, name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_a_host_address() {
        let addrs = addresses().unwrap();
        assert!(addrs.contains(&"127.0.0.1/32".parse().unwrap()), "{addrs:?}");
    }

    #[test]
    fn broadcast_and_multicast_destinations_belong_to_the_host() {
        let addrs = addresses().unwrap();
        for net in zt_policy::host::DELIVERED_TO_HOST {
            assert!(addrs.contains(&net.parse().unwrap()), "{net} missing from {addrs:?}");
        }
    }
}
