//! What kind of link an interface is — a NIC on a bus, or a virtual link (veth, bridge,
//! tun, vxlan, ...) — which decides the ingress hook `--xdp-mode auto` picks.
//!
//! Measured on a veth pair with iperf3 (`cargo xtask bench`, bulk TCP section): native XDP
//! halves bulk TCP throughput on a veth, because every GSO super-packet must be linearized
//! and split for XDP, while TC ingress costs a few percent; generic XDP lies between. On a
//! NIC, native XDP runs in the driver before any skb exists and is the cheapest hook. So
//! virtual links get TC ingress and NICs native XDP (else generic, else TC).
//!
//! The kind comes from the driver (`ETHTOOL_GDRVINFO`, asked of the interface in this
//! network namespace): a NIC reports the bus address of its device, a virtual link none.

use std::{fmt, io};

/// The kind of link, with the driver's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A device on a bus (PCI, ...): the driver name and the bus address.
    Nic { driver: String, bus: String },
    /// A software link: the driver name (`veth`, `bridge`, `tun`, ...).
    Virtual { driver: String },
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkKind::Nic { driver, bus } => write!(f, "a {driver} NIC at {bus}"),
            LinkKind::Virtual { driver } => write!(f, "a {driver} link (virtual)"),
        }
    }
}

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
const SIOCETHTOOL: libc::c_ulong = 0x8946;

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Asks the driver of `iface` what it is.
pub fn link_kind(iface: &str) -> io::Result<LinkKind> {
    let name = iface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("interface name {iface} is too long")));
    }
    // SAFETY: plain-data structs, zero is a valid value for every field.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").or_else(|_| std::net::UdpSocket::bind("[::1]:0"))?;
    // SAFETY: SIOCETHTOOL with ETHTOOL_GDRVINFO fills `info`, which outlives the call, and
    // reads the interface name from `req`.
    let rc =
        unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&socket), SIOCETHTOOL, &mut req as *mut libc::ifreq) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let driver = text(&info.driver);
    let bus = text(&info.bus_info);
    Ok(if bus.is_empty() || bus == "N/A" { LinkKind::Virtual { driver } } else { LinkKind::Nic { driver, bus } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_interfaces_are_refused() {
        assert!(link_kind("a-name-longer-than-ifnamsiz").is_err());
    }
}
