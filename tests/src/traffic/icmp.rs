//! ICMP echo ("ping") over raw sockets, since the machine has no `ping` binary and tests need
//! to see ICMP and ICMPv6 verdicts of the datapath.
//!
//! IPv4 raw sockets hand us the whole IP packet and leave the ICMP checksum to us; ICMPv6 raw
//! sockets strip the IPv6 header and the kernel computes the checksum (it needs the
//! pseudo-header, which only the kernel knows when the source address is chosen).

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::names::next_sequence;
use crate::netns::Netns;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// Sends one ICMP echo request from `ns` to `addr` and reports whether the matching reply
/// arrived within `timeout`. Never retried, so a test knows exactly what crossed the datapath.
pub fn icmp_echo(ns: &Netns, addr: IpAddr, timeout: Duration) -> bool {
    ns.run_in(|| echo(addr, timeout)).unwrap_or(false)
}

fn echo(addr: IpAddr, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    // Identifier and payload unique per probe: parallel tests in one namespace see each
    // other's replies on their raw sockets and must not take them for their own.
    let id = (std::process::id() as u16).wrapping_mul(31) ^ (next_sequence() as u16);
    let sequence = 1;
    let mut payload = b"zt-harness-echo:".to_vec();
    payload.extend_from_slice(&id.to_be_bytes());

    let (domain, protocol, request_type) = match addr {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, ECHO_REQUEST_V4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, ECHO_REQUEST_V6),
    };
    let socket = Socket::new(domain, Type::RAW, Some(protocol))?;
    let mut request = echo_message(request_type, id, sequence, &payload);
    if addr.is_ipv4() {
        let checksum = internet_checksum(&request);
        request[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
    let peer = SockAddr::from(SocketAddr::new(addr, 0));
    socket.send_to(&request, &peer)?;

    let reply_type = if addr.is_ipv4() { ECHO_REPLY_V4 } else { ECHO_REPLY_V6 };
    let expected_reply = echo_message(reply_type, id, sequence, &payload);
    let mut buffer = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        socket.set_read_timeout(Some(left))?;
        let (n, from) = match recv_from(&socket, &mut buffer) {
            Ok(received) => received,
            Err(e) if super::read_timed_out(&e) => {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if from.as_socket().map(|s| s.ip()) != Some(addr) {
            continue;
        }
        let message = match addr {
            IpAddr::V4(_) => strip_ipv4_header(&buffer[..n]),
            IpAddr::V6(_) => Some(&buffer[..n]),
        };
        if message.is_some_and(|m| same_echo(m, &expected_reply)) {
            return Ok(true);
        }
    }
}

/// An echo request or reply with a zero checksum field.
fn echo_message(kind: u8, id: u16, sequence: u16, payload: &[u8]) -> Vec<u8> {
    let mut message = vec![kind, 0, 0, 0];
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&sequence.to_be_bytes());
    message.extend_from_slice(payload);
    message
}

/// Whether `received` is the echo `expected` describes, ignoring the checksum field (the
/// sender computed it; the kernel already verified it).
fn same_echo(received: &[u8], expected: &[u8]) -> bool {
    received.len() == expected.len() && received[..2] == expected[..2] && received[4..] == expected[4..]
}

/// The ICMP message inside an IPv4 packet, honouring header options (IHL > 5).
fn strip_ipv4_header(packet: &[u8]) -> Option<&[u8]> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    packet.get(header_len..)
}

/// RFC 1071 checksum: one's complement of the one's complement sum of 16-bit words.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|word| match word {
            [high, low] => u32::from(u16::from_be_bytes([*high, *low])),
            [high] => u32::from(*high) << 8,
            _ => 0,
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn recv_from(socket: &Socket, buffer: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    // SAFETY: viewing initialised bytes as `MaybeUninit<u8>` is sound, and recvfrom only
    // ever writes initialised bytes into the buffer.
    let uninit = unsafe { &mut *(buffer as *mut [u8] as *mut [MaybeUninit<u8>]) };
    socket.recv_from(uninit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_rfc_1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), 0x220d);
    }

    #[test]
    fn a_message_with_its_checksum_sums_to_zero() {
        let mut message = echo_message(ECHO_REQUEST_V4, 0x1234, 1, b"odd");
        let checksum = internet_checksum(&message);
        message[2..4].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(internet_checksum(&message), 0);
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let mut packet = vec![0x46];
        packet.resize(24, 0);
        packet.extend_from_slice(&[ECHO_REPLY_V4, 0]);
        assert_eq!(strip_ipv4_header(&packet), Some(&[ECHO_REPLY_V4, 0][..]));
    }
}
