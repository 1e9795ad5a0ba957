//! Unique names and address blocks for everything the harness creates.
//!
//! Tests run in parallel threads, and several test processes may run at once on one machine,
//! so every namespace and interface name carries this process's id and a per-process sequence
//! number. Namespace names also let [`crate::netns::sweep_stale`] recognise leftovers of a
//! test process that was killed before its guards could run.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace the harness creates is called `zt-<pid>-<seq>-<label>`.
pub const NETNS_PREFIX: &str = "zt-";

/// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A number unique within this process.
pub fn next_sequence() -> u32 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

/// A namespace name unique on this machine: `zt-<pid>-<seq>-<label>`, the label reduced to
/// `[a-z0-9-]` and at most 20 characters so names stay readable in `ip netns list`.
pub fn netns_name(label: &str) -> String {
    let label: String = label
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(20)
        .collect();
    let label = if label.is_empty() { "ns".to_string() } else { label };
    format!("{NETNS_PREFIX}{}-{}-{label}", std::process::id(), next_sequence())
}

/// The pid a harness namespace name was created by, or `None` if the name is not ours.
pub fn netns_owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NETNS_PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u32>().ok()?;
    parts.next()?;
    Some(pid)
}

/// A stem for interface names unique on this machine: `zt` + pid (5 base-36 digits) + sequence
/// (3 base-36 digits) = 10 bytes, leaving 5 for a role suffix such as `c`, `s`, `n12`, `w12`.
/// Fixed widths keep two different (pid, sequence) pairs from spelling the same stem.
pub fn ifname_stem() -> String {
    format!("zt{}{}", base36(std::process::id(), 5), base36(next_sequence(), 3))
}

/// `stem` + `role`, checked against the kernel's length limit.
pub fn ifname(stem: &str, role: &str) -> String {
    let name = format!("{stem}{role}");
    assert!(name.len() <= IFNAME_MAX, "interface name {name} is longer than {IFNAME_MAX} bytes");
    name
}

/// The last `width` base-36 digits of `value`, zero-padded.
fn base36(mut value: u32, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value % 36) as usize];
        value /= 36;
    }
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// One /24 (IPv4) and /64 (IPv6) link subnet: `198.18.0.0/15` holds 512 of them,
/// numbered 0..512; subnet `x` is `198.18.x.0/24` (or `198.19.(x-256).0/24`) and `fd00:x::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    index: u16,
}

/// Number of /24 subnets in 198.18.0.0/15.
const SUBNETS: u32 = 512;

static NEXT_SUBNET: AtomicU32 = AtomicU32::new(0);

impl Subnet {
    /// The next subnet of this process. Addresses only need to be unique inside one topology
    /// (every topology lives in its own namespaces), but distinct subnets per topology make
    /// packet captures and logs of parallel tests easy to tell apart. Starting at a pid-derived
    /// offset does the same for concurrent test processes.
    pub fn allocate() -> Subnet {
        let offset = std::process::id().wrapping_mul(37);
        let n = NEXT_SUBNET.fetch_add(1, Ordering::Relaxed);
        Subnet { index: (offset.wrapping_add(n) % SUBNETS) as u16 }
    }

    /// Subnet number `index` (0..512).
    pub fn from_index(index: u16) -> Subnet {
        assert!(u32::from(index) < SUBNETS, "subnet index {index} is not below {SUBNETS}");
        Subnet { index }
    }

    /// The subnet's number, 0..512.
    pub fn index(self) -> u16 {
        self.index
    }

    /// Host `host` (1..=254) of the IPv4 /24.
    pub fn v4(self, host: u8) -> Ipv4Addr {
        let second = 18 + (self.index / 256) as u8;
        Ipv4Addr::new(198, second, (self.index % 256) as u8, host)
    }

    /// Host `host` of the IPv6 /64 `fd00:<index>::/64`.
    pub fn v6(self, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, self.index, 0, 0, 0, 0, 0, host)
    }

    /// Prefix length of the IPv4 subnet.
    pub const V4_PREFIX: u8 = 24;
    /// Prefix length of the IPv6 subnet.
    pub const V6_PREFIX: u8 = 64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_stems_leave_room_for_a_role() {
        let stem = ifname_stem();
        assert_eq!(stem.len(), 10);
        assert_eq!(ifname(&stem, "w99").len(), 13);
    }

    #[test]
    fn namespace_names_carry_the_owner_pid() {
        let name = netns_name("Client A");
        assert!(name.ends_with("-client-a"), "{name}");
        assert_eq!(netns_owner_pid(&name), Some(std::process::id()));
        assert_eq!(netns_owner_pid("zt-demo"), None);
        assert_eq!(netns_owner_pid("other-1-2-x"), None);
    }

    #[test]
    fn subnets_stay_inside_the_benchmarking_range() {
        assert_eq!(Subnet::from_index(0).v4(1), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(Subnet::from_index(511).v4(2), Ipv4Addr::new(198, 19, 255, 2));
        assert_eq!(Subnet::from_index(0x1a).v6(2), "fd00:1a::2".parse::<Ipv6Addr>().unwrap());
    }
}
