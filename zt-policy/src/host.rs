//! This host as the ipcache sees it: from the addresses configured on its interfaces to
//! every prefix that resolves to the reserved `host` identity.
//!
//! The agent lists its interfaces (`zt-agent`'s `host` module) and `ztctl`'s offline
//! commands take them from `--host`; both derive the prefixes here, so an offline answer
//! treats the same destinations as the host as the kernel does. Besides each address, the
//! kernel delivers to local sockets the directed broadcast and network address of every
//! IPv4 subnet shorter than /31, the limited broadcast and the multicast ranges — a service
//! bound to 0.0.0.0 must not be reachable through a broadcast that default deny never sees
//! as the host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Destinations delivered to the host whatever the interface: limited broadcast and the
/// multicast ranges.
pub const DELIVERED_TO_HOST: [&str; 3] = ["255.255.255.255/32", "224.0.0.0/4", "ff00::/8"];

/// The loopback addresses every Linux host has (`lo`, as `ip addr` shows them).
pub const LOOPBACK: [IpNet; 2] =
    [IpNet::new_assert(IpAddr::V4(Ipv4Addr::LOCALHOST), 8), IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128)];

/// The host prefixes of interface addresses given with their subnet (`198.18.0.2/24`,
/// `fd00::2/64`, as `ip addr` shows them): each address as a /32 or /128, the directed
/// broadcast and network address of each IPv4 subnet shorter than /31 (the kernel delivers
/// both to local sockets, configured or not), and [`DELIVERED_TO_HOST`]. Sorted, no
/// duplicates.
pub fn prefixes(interface_addresses: impl IntoIterator<Item = IpNet>) -> Vec<IpNet> {
    let mut out = Vec::new();
    for net in interface_addresses {
        out.push(IpNet::from(net.addr()));
        if let IpNet::V4(v4) = net
            && v4.prefix_len() < 31
        {
            out.push(IpNet::from(IpAddr::V4(v4.broadcast())));
            out.push(IpNet::from(IpAddr::V4(v4.network())));
        }
    }
    out.extend(DELIVERED_TO_HOST.iter().map(|net| net.parse::<IpNet>().expect("static prefix")));
    out.sort();
    out.dedup();
    out
}

/// The host's own addresses (not the multicast ranges) as plain IPs, for
/// [`CompileSettings::host_addresses`](crate::policy::CompileSettings::host_addresses).
pub fn addresses(host: &[IpNet]) -> Vec<IpAddr> {
    host.iter().filter(|n| n.prefix_len() == n.max_prefix_len()).map(IpNet::addr).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv4_subnet_adds_its_broadcast_and_network_address() {
        let p = prefixes([net("198.18.0.2/24")]);
        for want in ["198.18.0.2/32", "198.18.0.255/32", "198.18.0.0/32"] {
            assert!(p.contains(&net(want)), "{want} missing from {p:?}");
        }
    }

    #[test]
    fn a_point_to_point_or_single_address_adds_nothing_else() {
        let p = prefixes([net("198.18.0.2/31"), net("198.19.0.9/32")]);
        let own: Vec<&IpNet> = p.iter().filter(|n| n.addr().is_ipv4() && n.prefix_len() == 32).collect();
        assert_eq!(own, [&net("198.18.0.2/32"), &net("198.19.0.9/32"), &net("255.255.255.255/32")]);
    }

    #[test]
    fn ipv6_addresses_are_host_prefixes_and_multicast_belongs_to_the_host() {
        let p = prefixes([net("fd00::2/64")]);
        assert!(p.contains(&net("fd00::2/128")));
        assert!(!p.contains(&net("fd00::/128")), "IPv6 has no subnet broadcast");
        for range in DELIVERED_TO_HOST {
            assert!(p.contains(&net(range)), "{range} missing");
        }
    }

    #[test]
    fn addresses_leave_out_the_ranges() {
        let p = prefixes([net("198.18.0.2/24")]);
        let a = addresses(&p);
        assert!(a.contains(&"198.18.0.2".parse().unwrap()));
        assert!(a.contains(&"255.255.255.255".parse().unwrap()));
        assert!(!a.iter().any(|ip| ip.is_multicast()), "{a:?}");
    }
}
