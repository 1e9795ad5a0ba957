//! This machine's own addresses (every address configured in the agent's network
//! namespace), and the broadcast and multicast destinations the kernel also delivers to its
//! sockets. All of them resolve to the reserved `host` identity in the ipcache, so traffic
//! *to* them is judged by the host's policy — a service bound to 0.0.0.0 must not be
//! reachable through a broadcast that default-deny never sees as the host.

use std::net::IpAddr;

use ipnet::IpNet;

/// Destinations delivered to the host whatever the interface: limited broadcast and the
/// multicast ranges.
const DELIVERED_TO_HOST: [&str; 3] = ["255.255.255.255/32", "224.0.0.0/4", "ff00::/8"];

/// Every IPv4 and IPv6 address of every interface as host prefixes (/32, /128), the
/// broadcast and network address of each IPv4 subnet, and the ranges in `DELIVERED_TO_HOST`.
pub fn addresses() -> std::io::Result<Vec<IpNet>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)? {
        let Some(address) = ifa.address else { continue };
        if let Some(v4) = address.as_sockaddr_in() {
            let addr = v4.ip();
            push(&mut out, IpNet::from(IpAddr::V4(addr)));
            // The kernel delivers the subnet's directed broadcast (and, for historical
            // reasons, its network address) to local sockets whenever the prefix is shorter
            // than /31, whether or not a broadcast address was configured — so derive them
            // from address and netmask as it does.
            if let Some(mask) = ifa.netmask.as_ref().and_then(|m| m.as_sockaddr_in()) {
                let mask = u32::from(mask.ip());
                if mask.leading_ones() < 31 {
                    let a = u32::from(addr);
                    push(&mut out, IpNet::from(IpAddr::from((a | !mask).to_be_bytes())));
                    push(&mut out, IpNet::from(IpAddr::from((a & mask).to_be_bytes())));
                }
            }
        } else if let Some(v6) = address.as_sockaddr_in6() {
            push(&mut out, IpNet::from(IpAddr::V6(v6.ip())));
        }
    }
    for net in DELIVERED_TO_HOST {
        push(&mut out, net.parse().expect("static prefix"));
    }
    out.sort();
    Ok(out)
}

fn push(out: &mut Vec<IpNet>, net: IpNet) {
    if !out.contains(&net) {
        out.push(net);
    }
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
        for net in DELIVERED_TO_HOST {
            assert!(addrs.contains(&net.parse().unwrap()), "{net} missing from {addrs:?}");
        }
    }
}
