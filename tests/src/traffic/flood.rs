//! Bounded floods for rate-limit and flood-detection tests: a sender that hands exactly N
//! datagrams to the kernel, and a receiver that counts what arrives (in total and per source).
//!
//! The point is that every datagram the receiver misses was dropped by the datapath, not by
//! the test machinery, so both ends remove the usual silent losses: the sender sees and
//! retries local queue overflows (`IP_RECVERR`), lets neighbour resolution finish after the
//! first datagram, and the receiver has a large socket buffer drained by its own thread.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{POLL, Worker, pattern, unspecified_for, wait_for_count};
use crate::error::{Error, Result};
use crate::netns::Netns;

/// Receive buffer of a [`UdpCounter`]: room for tens of thousands of small datagrams, so a
/// burst is never lost in the counter's own socket.
const COUNTER_RCVBUF: libc::c_int = 32 * 1024 * 1024;

/// How long the sender waits after its first datagram, which makes the kernel resolve the
/// peer's (or gateway's) link address: datagrams sent while resolution is pending wait in a
/// small per-neighbour queue, and a burst would overflow it silently.
const NEIGHBOUR_SETTLE: Duration = Duration::from_millis(50);

/// Sends exactly `count` UDP datagrams of `payload_len` bytes from `ns` to `dst`, within
/// `timeout`. Fails if the kernel would not take them all in time, so "N sent" is a fact the
/// test can compare received counts against.
pub fn udp_send_n(ns: &Netns, dst: SocketAddr, count: u64, payload_len: usize, timeout: Duration) -> io::Result<()> {
    ns.run_in(|| send_n(dst, count, payload_len, timeout))
}

fn send_n(dst: SocketAddr, count: u64, payload_len: usize, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let socket = UdpSocket::bind(unspecified_for(&dst))?;
    enable_recverr(&socket, &dst)?;
    let payload = pattern(payload_len);
    let mut sent = 0;
    while sent < count {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("sent {sent} of {count} datagrams to {dst} before the deadline"),
            ));
        }
        match socket.send_to(&payload, dst) {
            Ok(_) => {
                sent += 1;
                if sent == 1 {
                    thread::sleep(NEIGHBOUR_SETTLE);
                }
            }
            // ENOBUFS: a local queue (qdisc, veth) was full; the datagram was not sent.
            // ECONNREFUSED: an earlier datagram drew a port unreachable, reported here
            // instead of sending this one. Both mean "try this datagram again".
            Err(e)
                if e.raw_os_error() == Some(libc::ENOBUFS)
                    || e.kind() == io::ErrorKind::ConnectionRefused
                    || e.kind() == io::ErrorKind::WouldBlock =>
            {
                thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Without IP_RECVERR the kernel reports a full device queue as success and drops the
/// datagram; with it, `send` returns ENOBUFS and the datagram can be sent again.
fn enable_recverr(socket: &UdpSocket, dst: &SocketAddr) -> io::Result<()> {
    let (level, name) = match dst {
        SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_RECVERR),
        SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVERR),
    };
    set_int_option(socket, level, name, 1)
}

fn set_int_option(socket: &UdpSocket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid socket descriptor and a pointer to a live c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Counts UDP datagrams arriving at an address in a namespace, in total and per source IP.
/// Stops when dropped.
#[derive(Debug)]
pub struct UdpCounter {
    addr: SocketAddr,
    counts: Arc<Counts>,
    worker: Worker,
}

#[derive(Debug, Default)]
struct Counts {
    total: AtomicU64,
    by_source: Mutex<HashMap<IpAddr, u64>>,
}

impl UdpCounter {
    /// Binds `addr` inside `ns` and starts counting (port 0 picks a free port).
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<UdpCounter> {
        let socket = ns
            .try_run_in(|| UdpSocket::bind(addr))?
            .map_err(|e| Error::io(format!("cannot bind UDP {addr} in {}", ns.name()), e))?;
        let addr = socket.local_addr().map_err(|e| Error::io("cannot read the UDP socket's address", e))?;
        // SO_RCVBUFFORCE (root only) goes past net.core.rmem_max, which is not ours to change.
        set_int_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, COUNTER_RCVBUF)
            .map_err(|e| Error::io("cannot enlarge the counter's receive buffer", e))?;
        socket.set_read_timeout(Some(POLL)).map_err(|e| Error::io("cannot set the UDP socket's timeout", e))?;
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        let worker = Worker::spawn(&format!("udp counter {addr}"), move |stop| count_loop(&socket, &shared, &stop))?;
        Ok(UdpCounter { addr, counts, worker })
    }

    /// The address the counter is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams received so far.
    pub fn count(&self) -> u64 {
        self.counts.total.load(Ordering::Acquire)
    }

    /// Datagrams received so far from `source`.
    pub fn count_from(&self, source: IpAddr) -> u64 {
        let by_source = self.counts.by_source.lock().unwrap_or_else(|p| p.into_inner());
        by_source.get(&source).copied().unwrap_or(0)
    }

    /// Waits until `expected` datagrams have arrived or `timeout` passes; returns the count.
    pub fn wait_for(&self, expected: u64, timeout: Duration) -> u64 {
        wait_for_count(|| self.count(), expected, timeout)
    }

    /// Waits until no datagram has arrived for `quiet`, or `max` passes; returns the count.
    /// For floods where the expected number is what is being measured.
    pub fn settle(&self, quiet: Duration, max: Duration) -> u64 {
        let deadline = Instant::now() + max;
        let mut last = self.count();
        let mut last_change = Instant::now();
        while Instant::now() < deadline && last_change.elapsed() < quiet {
            thread::sleep(Duration::from_millis(5));
            let now = self.count();
            if now != last {
                last = now;
                last_change = Instant::now();
            }
        }
        last
    }

    /// Stops counting.
    pub fn stop(mut self) {
        self.worker.stop();
    }
}

fn count_loop(socket: &UdpSocket, counts: &Counts, stop: &AtomicBool) {
    let mut buffer = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buffer) {
            Ok((_, from)) => {
                {
                    let mut by_source = counts.by_source.lock().unwrap_or_else(|p| p.into_inner());
                    // Canonical, so a v4 sender seen by a dual-stack socket counts under its
                    // IPv4 address.
                    *by_source.entry(from.ip().to_canonical()).or_default() += 1;
                }
                // Released after the per-source count, so a test that saw the total reach N
                // also sees all N in the per-source counts.
                counts.total.fetch_add(1, Ordering::Release);
            }
            Err(e) if super::read_timed_out(&e) => {}
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
}
