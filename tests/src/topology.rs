//! Ready-made test networks: a client/server [`Pair`] on one link, and a [`Star`] where a
//! `node` namespace (the machine the agent protects) routes between labelled workloads.
//!
//! Each builder returns guards only: dropping the topology deletes its namespaces and, with
//! them, its veth links. Addresses come from 198.18.0.0/15 and fd00::/8, which exist only
//! inside these namespaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::Result;
use crate::names::{self, Subnet};
use crate::netns::Netns;
use crate::veth;

/// A namespace with one interface and one address of each family — a machine in a test.
#[derive(Debug)]
pub struct Host {
    /// The namespace everything of this host runs in.
    pub ns: Netns,
    /// Its interface (one end of a veth).
    pub iface: String,
    /// Its IPv4 address (prefix [`Subnet::V4_PREFIX`]).
    pub v4: Ipv4Addr,
    /// Its IPv6 address (prefix [`Subnet::V6_PREFIX`]).
    pub v6: Ipv6Addr,
}

impl Host {
    /// The address of `family` (`v4`/`v6` as `IpAddr`), for tests written once for both.
    pub fn ip(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => self.v4.into(),
            Family::V6 => self.v6.into(),
        }
    }

    /// `ip(family):port`, the address a server on this host listens on.
    pub fn socket(&self, family: Family, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip(family), port)
    }
}

/// An IP version, so a test can run the same assertions over IPv4 and IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];
}

/// Two namespaces joined by one veth link: `client` has `.1`/`::1`, `server` has `.2`/`::2`
/// of the same subnet. The agent usually runs in `server`, attached to `server.iface`.
#[derive(Debug)]
pub struct Pair {
    pub client: Host,
    pub server: Host,
    /// The link's subnet (`198.18.x.0/24`, `fd00:x::/64`).
    pub subnet: Subnet,
}

/// Builds a [`Pair`]; both interfaces are up and IPv6 works immediately (no DAD).
pub fn pair() -> Result<Pair> {
    let subnet = Subnet::allocate();
    let client_ns = prepared_netns("client")?;
    let server_ns = prepared_netns("server")?;
    let stem = names::ifname_stem();
    let client_if = names::ifname(&stem, "c");
    let server_if = names::ifname(&stem, "s");
    veth::create_pair(&client_ns, &client_if, &server_ns, &server_if)?;
    let client = attach(client_ns, client_if, subnet, 1)?;
    let server = attach(server_ns, server_if, subnet, 2)?;
    veth::wait_link_local(&client.ns, &client.iface)?;
    veth::wait_link_local(&server.ns, &server.iface)?;
    Ok(Pair { client, server, subnet })
}

/// A workload namespace of a [`Star`], wired to the node by its own veth and subnet.
#[derive(Debug)]
pub struct Workload {
    /// The label the test gave it (`web`, `db`, ...), also part of its namespace name.
    pub label: String,
    /// The workload's namespace, interface and addresses (`.2`/`::2` of its subnet).
    pub host: Host,
    /// The node's end of this workload's veth — an interface for the agent's `--iface`.
    pub node_iface: String,
    /// The node's address on this link (`.1`), the workload's IPv4 default gateway.
    pub gateway_v4: Ipv4Addr,
    /// The node's address on this link (`::1`), the workload's IPv6 default gateway.
    pub gateway_v6: Ipv6Addr,
    /// This link's subnet.
    pub subnet: Subnet,
}

/// A `node` namespace routing between workloads, each on its own link: traffic between two
/// workloads crosses the node (in on one `node_iface`, out on another), where the agent runs.
#[derive(Debug)]
pub struct Star {
    /// The node (router) namespace; forwarding is enabled here and nowhere else.
    pub node: Netns,
    pub workloads: Vec<Workload>,
}

/// Most workloads a [`Star`] may have, so interface names fit in 15 bytes.
pub const STAR_MAX_WORKLOADS: usize = 100;

/// Builds a [`Star`] with `n` workloads labelled `w0`, `w1`, ...
pub fn star(n: usize) -> Result<Star> {
    let labels: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
    star_with_labels(&labels)
}

/// Builds a [`Star`] with one workload per label, in order.
pub fn star_with_labels<S: AsRef<str>>(labels: &[S]) -> Result<Star> {
    star_on(labels, |_| Subnet::allocate())
}

/// Like [`star_with_labels`], but workload `i` gets subnet `first + i` (so workload 0 of
/// `star_at(.., 1)` is `198.18.1.2`): for demos and documents that name addresses.
pub fn star_at<S: AsRef<str>>(labels: &[S], first: u16) -> Result<Star> {
    star_on(labels, |i| Subnet::from_index(first + i as u16))
}

fn star_on<S: AsRef<str>>(labels: &[S], subnet_of: impl Fn(usize) -> Subnet) -> Result<Star> {
    assert!(
        labels.len() <= STAR_MAX_WORKLOADS,
        "a star has at most {STAR_MAX_WORKLOADS} workloads, not {}",
        labels.len()
    );
    let node = prepared_netns("node")?;
    // Forwarding only inside the node namespace: the host's own sysctls are never written.
    node.set_sysctl("net.ipv4.ip_forward", "1")?;
    node.set_sysctl("net.ipv6.conf.all.forwarding", "1")?;

    let stem = names::ifname_stem();
    let mut workloads = Vec::with_capacity(labels.len());
    for (i, label) in labels.iter().enumerate() {
        let label = label.as_ref();
        let subnet = subnet_of(i);
        let ns = prepared_netns(label)?;
        let node_iface = names::ifname(&stem, &format!("n{i}"));
        let iface = names::ifname(&stem, &format!("w{i}"));
        veth::create_pair(&node, &node_iface, &ns, &iface)?;
        veth::configure(&node, &node_iface, (subnet.v4(1), Subnet::V4_PREFIX), (subnet.v6(1), Subnet::V6_PREFIX))?;
        let host = attach(ns, iface, subnet, 2)?;
        veth::wait_link_local(&node, &node_iface)?;
        veth::wait_link_local(&host.ns, &host.iface)?;
        host.ns.ip(["route", "add", "default", "via", &subnet.v4(1).to_string()])?;
        host.ns.ip(["-6", "route", "add", "default", "via", &subnet.v6(1).to_string()])?;
        workloads.push(Workload {
            label: label.to_string(),
            host,
            node_iface,
            gateway_v4: subnet.v4(1),
            gateway_v6: subnet.v6(1),
            subnet,
        });
    }
    Ok(Star { node, workloads })
}

impl Star {
    /// The workload with this label; panics if there is none (a typo in the test).
    pub fn workload(&self, label: &str) -> &Workload {
        self.workloads
            .iter()
            .find(|w| w.label == label)
            .unwrap_or_else(|| panic!("the star has no workload labelled {label:?}"))
    }

    /// The node's interfaces, one per workload, for the agent's `--iface` arguments.
    pub fn node_ifaces(&self) -> Vec<&str> {
        self.workloads.iter().map(|w| w.node_iface.as_str()).collect()
    }
}

/// A new namespace in which interfaces will come up without IPv6 DAD.
fn prepared_netns(label: &str) -> Result<Netns> {
    let ns = Netns::new(label)?;
    veth::disable_dad(&ns)?;
    Ok(ns)
}

/// Addresses `iface` as host number `host` of `subnet` and wraps it as a [`Host`].
fn attach(ns: Netns, iface: String, subnet: Subnet, host: u8) -> Result<Host> {
    let v4 = subnet.v4(host);
    let v6 = subnet.v6(u16::from(host));
    veth::configure(&ns, &iface, (v4, Subnet::V4_PREFIX), (v6, Subnet::V6_PREFIX))?;
    Ok(Host { ns, iface, v4, v6 })
}
