//! Real traffic between namespaces: the probes end-to-end tests use to observe what the
//! datapath lets through.
//!
//! Every function takes the [`Netns`](crate::Netns) it acts from and does its socket work
//! there (through [`Netns::run_in`](crate::Netns::run_in)), so no test can send from the
//! host's namespace by mistake; every wait has an explicit timeout. Servers bind inside their
//! namespace and then serve from a background thread until stopped or dropped.
//!
//! - [`tcp`]: echo listener, connect that tells refused from timed out, bulk echo exchange.
//! - [`udp`]: echo server and one-datagram round trip.
//! - [`icmp`]: echo request/reply over raw sockets, IPv4 and IPv6.
//! - [`flood`]: send exactly N datagrams, count what arrives.
//! - [`syn_flood`]: bounded hping3 SYN floods, from one client or spoofed sources.

pub mod flood;
pub mod icmp;
pub mod syn_flood;
pub mod tcp;
pub mod udp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often background servers look at their stop flag; also their socket read timeout.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Whether a socket read ended because its read timeout passed (the kernel reports it as
/// either kind, depending on the socket type).
pub(crate) fn read_timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// A background thread with a stop flag; dropping it stops and joins the thread, so a
/// server never outlives its test (and never keeps its namespace alive through its socket).
#[derive(Debug)]
pub(crate) struct Worker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Runs `body` on a new thread; `body` must return soon after the flag becomes true.
    pub(crate) fn spawn<F>(name: &str, body: F) -> Result<Worker>
    where
        F: FnOnce(Arc<AtomicBool>) + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || body(flag))
            .map_err(|e| Error::io(format!("cannot start {name}"), e))?;
        Ok(Worker { stop, handle: Some(handle) })
    }

    /// Asks the thread to stop and waits for it.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            // A panicking server already failed loudly on its own thread; nothing to add.
            let _ = handle.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The wildcard address of `peer`'s family, to bind a client socket before talking to `peer`.
pub(crate) fn unspecified_for(peer: &SocketAddr) -> SocketAddr {
    let ip: IpAddr = match peer {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

/// A payload whose every byte depends on its offset, so a reordered or truncated echo is caught.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Polls `read` until it reaches `expected` or `timeout` passes; returns the last reading.
/// Servers count on their own threads, so a test must wait for a count, not read it once.
pub(crate) fn wait_for_count(read: impl Fn() -> u64, expected: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let now = read();
        if now >= expected || Instant::now() >= deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(5));
    }
}
