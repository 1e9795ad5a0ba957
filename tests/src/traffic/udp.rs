//! UDP probes: an echo server and a one-datagram round trip.
//!
//! UDP has no handshake, so a round trip is the only way a client can tell that a datagram
//! passed both ways; one-way delivery is measured with [`super::flood::UdpCounter`].

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{POLL, Worker, unspecified_for};
use crate::error::{Error, Result};
use crate::netns::Netns;

/// Sends `payload` from `ns` to the echo server at `addr` and reports whether the same payload
/// came back from `addr` within `timeout`. One datagram is sent, never retried, so a test
/// knows exactly what crossed the datapath.
pub fn udp_roundtrip(ns: &Netns, addr: SocketAddr, payload: &[u8], timeout: Duration) -> bool {
    ns.run_in(|| roundtrip(addr, payload, timeout)).unwrap_or(false)
}

fn roundtrip(addr: SocketAddr, payload: &[u8], timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    let socket = UdpSocket::bind(unspecified_for(&addr))?;
    // Connecting filters out datagrams from anyone else and turns an ICMP port unreachable
    // into ECONNREFUSED on the next receive.
    socket.connect(addr)?;
    socket.send(payload)?;
    let mut buffer = vec![0u8; payload.len() + 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv(&mut buffer) {
            Ok(n) if buffer[..n] == *payload => return Ok(true),
            // A stray datagram (say, a late echo of an earlier probe): keep waiting.
            Ok(_) => {}
            Err(e) if super::read_timed_out(&e) => {
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A UDP echo server in a namespace: every datagram is sent back to its sender.
/// Stops when dropped.
#[derive(Debug)]
pub struct UdpEchoServer {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    worker: Worker,
}

impl UdpEchoServer {
    /// Binds `addr` inside `ns` (port 0 picks a free port; see [`Self::local_addr`]).
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<UdpEchoServer> {
        let socket = ns
            .try_run_in(|| UdpSocket::bind(addr))?
            .map_err(|e| Error::io(format!("cannot bind UDP {addr} in {}", ns.name()), e))?;
        let addr = socket.local_addr().map_err(|e| Error::io("cannot read the UDP socket's address", e))?;
        socket.set_read_timeout(Some(POLL)).map_err(|e| Error::io("cannot set the UDP socket's timeout", e))?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let worker = Worker::spawn(&format!("udp echo {addr}"), move |stop| echo_loop(&socket, &counter, &stop))?;
        Ok(UdpEchoServer { addr, received, worker })
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many datagrams the server has received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Stops the server.
    pub fn stop(mut self) {
        self.worker.stop();
    }
}

fn echo_loop(socket: &UdpSocket, received: &AtomicU64, stop: &AtomicBool) {
    let mut buffer = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buffer) {
            Ok((n, from)) => {
                received.fetch_add(1, Ordering::Relaxed);
                // A lost echo is the client's timeout to report, not the server's concern.
                let _ = socket.send_to(&buffer[..n], from);
            }
            Err(e) if super::read_timed_out(&e) => {}
            // e.g. ECONNREFUSED left by an ICMP error for an earlier echo: keep serving, but
            // never spin on an error that repeats.
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
}
