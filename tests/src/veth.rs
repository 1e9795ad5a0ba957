//! veth links between namespaces: the wires of every test topology, and the interfaces the
//! agent attaches its XDP/TC programs to.
//!
//! Both ends are created directly inside their namespaces (`ip -n A link add ... peer ...
//! netns B`), so no test interface ever exists in the host's namespace, not even for a moment.
//! A veth has no explicit guard: deleting either namespace deletes both ends.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::Result;
use crate::netns::Netns;

/// Creates a veth link with end `left_name` in `left` and end `right_name` in `right`.
/// Both ends start down and without addresses; see [`configure`].
pub fn create_pair(left: &Netns, left_name: &str, right: &Netns, right_name: &str) -> Result<()> {
    left.ip([
        "link",
        "add",
        // Always with `name`: iproute2 accepts keyword prefixes, so a bare name could be
        // taken for a keyword (`a` means `address`).
        "name",
        left_name,
        "type",
        "veth",
        "peer",
        "name",
        right_name,
        "netns",
        right.name(),
    ])?;
    Ok(())
}

/// Gives `iface` (in `ns`) one IPv4 and one IPv6 address and brings it up.
///
/// The IPv6 address is added with `nodad`: duplicate address detection would keep it
/// "tentative" (unusable) for about a second, and a test sending right away would fail.
pub fn configure(ns: &Netns, iface: &str, v4: (Ipv4Addr, u8), v6: (Ipv6Addr, u8)) -> Result<()> {
    ns.ip(["addr", "add", &format!("{}/{}", v4.0, v4.1), "dev", iface])?;
    ns.ip(["-6", "addr", "add", &format!("{}/{}", v6.0, v6.1), "dev", iface, "nodad"])?;
    ns.ip(["link", "set", iface, "up"])?;
    Ok(())
}

/// Turns off IPv6 duplicate address detection for interfaces created in `ns` from now on.
///
/// `nodad` covers the addresses the harness adds, but each interface also gets a link-local
/// address when it comes up, and Neighbor Discovery uses it; with DAD on, it stays tentative
/// for a second after the link comes up. Both `all` and `default` are set because the kernel
/// runs DAD when either asks for it.
pub fn disable_dad(ns: &Netns) -> Result<()> {
    ns.set_sysctl("net.ipv6.conf.all.accept_dad", "0")?;
    ns.set_sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    Ok(())
}

/// Waits until `iface` (in `ns`) has its IPv6 link-local address, which the kernel adds
/// asynchronously once both ends of the link are up. A topology is returned settled: an
/// agent started on it must see the addresses it will keep, or its periodic re-read of the
/// host's addresses would switch to a new policy generation a moment later.
pub fn wait_link_local(ns: &Netns, iface: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let out = ns.ip(["-6", "addr", "show", "dev", iface, "scope", "link"])?;
        if String::from_utf8_lossy(&out.stdout).contains("inet6 fe80") {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(crate::error::Error::io(
                format!("{iface} in {} got no IPv6 link-local address within 5 s", ns.name()),
                std::io::ErrorKind::TimedOut.into(),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
