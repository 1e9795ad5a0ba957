//! This node's pod interfaces: the host side of each pod's veth, found by name patterns
//! (`lxc*`, `cali*`, `veth*` by default), attached when they appear and let go when they
//! are deleted with their pod.
//!
//! Discovery listens to the kernel's link notifications (a `NETLINK_ROUTE` socket in the
//! `RTMGRP_LINK` group) and, on each, lists the links again and compares: the message
//! itself is not parsed, so a missed or merged notification costs nothing. Without any
//! notification the links are listed every [`RESCAN`] as well.
//!
//! Directions: on the host side of a veth, what the pod sends arrives at the host side's
//! ingress hook and what is sent to the pod leaves through its egress hook — the same
//! attachment the agent makes on any node-side link (`--iface`), so policy directions are
//! the pod's as seen from the node, as for every other interface.

use std::{
    collections::BTreeMap,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// How often links are listed again when no notification comes.
pub const RESCAN: Duration = Duration::from_secs(1);

/// Whether `name` matches the glob `pattern` (`*` any run of characters, `?` one).
pub fn matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((b'?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// Whether `name` matches any of `patterns`.
pub fn is_pod_link(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| matches(p, name))
}

/// The links of this network namespace whose names match `patterns`: index -> name.
pub fn pod_links(patterns: &[String]) -> BTreeMap<u32, String> {
    let Ok(links) = nix::net::if_::if_nameindex() else { return BTreeMap::new() };
    links
        .iter()
        .filter_map(|l| {
            let name = l.name().to_str().ok()?;
            is_pod_link(patterns, name).then(|| (l.index(), name.to_string()))
        })
        .collect()
}

/// A change of the pod links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    Appeared { ifindex: u32, name: String },
    Gone { ifindex: u32, name: String },
}

/// What changed from `known` to `now`; `known` becomes `now`.
pub fn diff(known: &mut BTreeMap<u32, String>, now: BTreeMap<u32, String>) -> Vec<LinkChange> {
    let mut changes: Vec<LinkChange> = known
        .iter()
        .filter(|(i, n)| now.get(i) != Some(n))
        .map(|(&ifindex, name)| LinkChange::Gone { ifindex, name: name.clone() })
        .collect();
    changes.extend(
        now.iter()
            .filter(|(i, n)| known.get(i) != Some(n))
            .map(|(&ifindex, name)| LinkChange::Appeared { ifindex, name: name.clone() }),
    );
    *known = now;
    changes
}

/// A socket that hears of every link change in this network namespace.
fn link_notifications() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before it is owned.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_nl is valid; only family and groups are set.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = libc::RTMGRP_LINK as u32;
    // SAFETY: `addr` is a valid sockaddr_nl of the given length for the call's duration.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let timeout = libc::timeval { tv_sec: RESCAN.as_secs() as libc::time_t, tv_usec: 0 };
    // SAFETY: `timeout` is a valid timeval for the call's duration.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Follows the pod links on a thread of its own until `stop` is set, calling `on_change`
/// for each change after `known` (the links attached at start).
pub fn follow(
    patterns: Vec<String>,
    mut known: BTreeMap<u32, String>,
    stop: Arc<AtomicBool>,
    mut on_change: impl FnMut(LinkChange) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let socket = link_notifications();
    if let Err(e) = &socket {
        log::warn!("kubernetes: no link notifications ({e}); listing links every {} s instead", RESCAN.as_secs());
    }
    std::thread::Builder::new().name("pod-links".into()).spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            for change in diff(&mut known, pod_links(&patterns)) {
                on_change(change);
            }
            match &socket {
                // SAFETY: `buf` is writable for its length; a timeout or error just rescans.
                Ok(fd) => unsafe {
                    libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0);
                },
                Err(_) => std::thread::sleep(RESCAN),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(matches("lxc*", "lxc1a2b"));
        assert!(matches("veth*", "veth"));
        assert!(matches("cali?x", "cali1x"));
        assert!(!matches("cali*", "xcali1"));
        assert!(!matches("lxc?", "lxc"));
        assert!(is_pod_link(&["a*".into(), "pod-*".into()], "pod-x"));
    }

    #[test]
    fn a_diff_reports_links_that_came_went_or_were_recreated() {
        let mut known = BTreeMap::from([(3, "lxc1".to_string()), (4, "lxc2".to_string())]);
        let now = BTreeMap::from([(4, "lxc2".to_string()), (5, "lxc3".to_string())]);
        let changes = diff(&mut known, now.clone());
        assert_eq!(
            changes,
            vec![
                LinkChange::Gone { ifindex: 3, name: "lxc1".into() },
                LinkChange::Appeared { ifindex: 5, name: "lxc3".into() }
            ]
        );
        assert_eq!(known, now);
        assert!(diff(&mut known, now).is_empty());
    }
}
