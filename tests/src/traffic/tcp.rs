//! TCP probes: an echo listener, a connect that reports *how* it failed, and a bulk exchange.
//!
//! The distinction matters for policy tests: a datapath drop shows as [`ConnError::TimedOut`]
//! (the SYN vanished), no listener as [`ConnError::Refused`] (the SYN arrived and the kernel
//! answered with RST), a torn-down established flow as [`ConnError::Reset`] or a timeout.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{POLL, Worker, pattern, wait_for_count};
use crate::error::{Error, Result};
use crate::netns::Netns;

/// Why a TCP probe did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The peer answered the SYN with RST: reachable, nothing listening.
    #[error("connection refused")]
    Refused,
    /// No answer before the deadline: the packets were dropped somewhere.
    #[error("timed out")]
    TimedOut,
    /// The local stack or an ICMP error said there is no way to the peer.
    #[error("unreachable: {0}")]
    Unreachable(io::Error),
    /// The connection was established and then reset or aborted.
    #[error("connection reset: {0}")]
    Reset(io::Error),
    /// The echo did not return what was sent.
    #[error("echo returned {received} of {expected} bytes correctly")]
    Mismatch { expected: usize, received: usize },
    /// Any other socket error.
    #[error("{0}")]
    Io(io::Error),
}

impl ConnError {
    /// Sorts a socket error into the outcomes tests assert on.
    pub fn classify(err: io::Error) -> ConnError {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => ConnError::Refused,
            // A read or write timeout on a blocking socket reports WouldBlock on Linux.
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ConnError::TimedOut,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => ConnError::Unreachable(err),
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected => ConnError::Reset(err),
            _ => ConnError::Io(err),
        }
    }
}

/// Opens a TCP connection to `addr` from `ns` within `timeout`, then closes it.
pub fn tcp_connect(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<(), ConnError> {
    ns.run_in(|| TcpStream::connect_timeout(&addr, timeout)).map(drop).map_err(ConnError::classify)
}

/// Connects from `ns` to an echo server at `addr`, sends `len` bytes and checks that the same
/// bytes come back, all within `timeout`. Sending and reading run concurrently so a transfer
/// larger than the socket buffers cannot deadlock.
pub fn tcp_exchange(ns: &Netns, addr: SocketAddr, len: usize, timeout: Duration) -> Result<(), ConnError> {
    ns.run_in(|| {
        let deadline = Instant::now() + timeout;
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(ConnError::classify)?;
        let mut writer = stream.try_clone().map_err(ConnError::Io)?;
        let sent = pattern(len);
        let mut received = Vec::with_capacity(len);
        thread::scope(|scope| {
            let sending = scope.spawn(|| -> io::Result<()> {
                for chunk in sent.chunks(16 * 1024) {
                    writer.set_write_timeout(Some(remaining(deadline)?))?;
                    writer.write_all(chunk)?;
                }
                writer.shutdown(Shutdown::Write)
            });
            let read = read_exactly(&stream, &mut received, len, deadline);
            // Only the reader's outcome matters: if every byte came back, the sender did its
            // part (a late error such as shutting down an already closed socket is noise), and
            // if not, the reader's error or the missing bytes say more than the sender's error,
            // which is usually the same reset seen later.
            let _ = sending.join().expect("the TCP sender thread does not panic");
            read.map_err(ConnError::classify)
        })?;
        let correct = received.iter().zip(&sent).take_while(|(a, b)| a == b).count();
        if correct == len { Ok(()) } else { Err(ConnError::Mismatch { expected: len, received: correct }) }
    })
}

/// Reads until `len` bytes, end of stream or the deadline.
fn read_exactly(mut stream: &TcpStream, into: &mut Vec<u8>, len: usize, deadline: Instant) -> io::Result<()> {
    let mut buffer = [0u8; 16 * 1024];
    while into.len() < len {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buffer)? {
            0 => break,
            n => into.extend_from_slice(&buffer[..n]),
        }
    }
    Ok(())
}

/// Time left before `deadline`, or a TimedOut error once it has passed (a zero socket
/// timeout would mean "block forever").
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() { Err(io::ErrorKind::TimedOut.into()) } else { Ok(left) }
}

/// A TCP echo server in a namespace: every accepted connection gets its bytes echoed back.
/// Stops (and closes every connection) when dropped.
#[derive(Debug)]
pub struct TcpEchoServer {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    worker: Worker,
}

impl TcpEchoServer {
    /// Listens on `addr` inside `ns` (port 0 picks a free port; see [`Self::local_addr`]).
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<TcpEchoServer> {
        let listener = ns
            .try_run_in(|| TcpListener::bind(addr))?
            .map_err(|e| Error::io(format!("cannot listen on {addr} in {}", ns.name()), e))?;
        let addr = listener.local_addr().map_err(|e| Error::io("cannot read the listener's address", e))?;
        listener.set_nonblocking(true).map_err(|e| Error::io("cannot make the listener non-blocking", e))?;
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        let worker = Worker::spawn(&format!("tcp echo {addr}"), move |stop| accept_loop(&listener, &counter, stop))?;
        Ok(TcpEchoServer { addr, accepted, worker })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections the server has accepted so far. A client's connect completes
    /// before the server's accept, so right after one use [`Self::wait_accepted`].
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits until `expected` connections were accepted or `timeout` passes; returns the count.
    pub fn wait_accepted(&self, expected: u64, timeout: Duration) -> u64 {
        wait_for_count(|| self.accepted(), expected, timeout)
    }

    /// Stops listening and closes every connection.
    pub fn stop(mut self) {
        self.worker.stop();
    }
}

fn accept_loop(listener: &TcpListener, accepted: &AtomicU64, stop: Arc<AtomicBool>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if !wait_readable(listener.as_raw_fd(), POLL) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                let stop = Arc::clone(&stop);
                connections.push(thread::spawn(move || echo_connection(stream, &stop)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // Out of descriptors or similar: back off instead of spinning.
            Err(_) => thread::sleep(POLL),
        }
        connections.retain(|c| !c.is_finished());
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Echoes until end of stream, an error, or the server stops (checked every [`POLL`]).
fn echo_connection(mut stream: TcpStream, stop: &AtomicBool) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(POLL)).is_err()
        || stream.set_write_timeout(Some(Duration::from_secs(5))).is_err()
    {
        return;
    }
    let mut buffer = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Err(e) if super::read_timed_out(&e) => {}
            Err(_) => return,
        }
    }
}

/// Waits up to `timeout` for `fd` to become readable.
fn wait_readable(fd: std::os::fd::RawFd, timeout: Duration) -> bool {
    let mut pollfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
    let rc = unsafe { libc::poll(&mut pollfd, 1, millis) };
    rc > 0 && pollfd.revents & libc::POLLIN != 0
}
