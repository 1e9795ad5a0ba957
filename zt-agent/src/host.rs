//! This machine's own addresses (every address configured in the agent's network
//! namespace). They resolve to the reserved `host` identity in the ipcache.

use std::net::IpAddr;

use ipnet::IpNet;

/// Every IPv4 and IPv6 address of every interface, as host prefixes (/32, /128).
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
                let net = IpNet::from(ip);
                if !out.contains(&net) {
                    out.push(net);
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: freeing the list from getifaddrs.
    unsafe { libc::freeifaddrs(ifap) };
    out.sort();
    Ok(out)
}

/// Interface index -> name for every interface of this namespace.
pub fn interface_names() -> std::collections::HashMap<u32, String> {
    let mut names = std::collections::HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(idx) = std::fs::read_to_string(entry.path().join("ifindex")) {
                if let Ok(idx) = idx.trim().parse() {
                    names.insert(idx, name);
                }
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
}
