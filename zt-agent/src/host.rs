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
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: walking the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr of the family it names.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            let ip = match family {
                libc::AF_INET => {
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    Some(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()))
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    Some(IpAddr::from(sin6.sin6_addr.s6_addr))
                }
                _ => None,
            };
            if let Some(ip) = ip {
                push(&mut out, IpNet::from(ip));
            }
            // The kernel delivers the subnet's directed broadcast (and, for historical
            // reasons, its network address) to local sockets whenever the prefix is shorter
            // than /31, whether or not a broadcast address was configured — so derive them
            // from address and netmask as it does.
            if family == libc::AF_INET
                && !ifa.ifa_netmask.is_null()
                && let Some(IpAddr::V4(addr)) = ip
            {
                // SAFETY: for AF_INET entries the netmask is a sockaddr_in.
                let mask = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) };
                let mask = u32::from_be(mask.sin_addr.s_addr);
                if mask.leading_ones() < 31 {
                    let a = u32::from(addr);
                    push(&mut out, IpNet::from(IpAddr::from((a | !mask).to_be_bytes())));
                    push(&mut out, IpNet::from(IpAddr::from((a & mask).to_be_bytes())));
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: freeing the list from getifaddrs.
    unsafe { libc::freeifaddrs(ifap) };
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
