//! Ethernet frames of the benchmark's traffic: UDP and TCP SYNs over IPv4 or IPv6, and
//! malformed IP headers. Small (minimum-size) frames, because per-packet cost is what is measured.
//!
//! The IPv4 header checksum is filled in (a receiving stack drops packets whose header
//! checksum is wrong); UDP checksums are zero, which IPv4 allows. IPv6 frames only go to
//! BPF_PROG_TEST_RUN, whose programs do not verify checksums.

use std::net::IpAddr;

pub const ETH_HLEN: usize = 14;
/// Ethernet minimum frame size without the FCS.
const ETH_MIN: usize = 60;
const UDP_PAYLOAD: usize = 18;

/// Link addresses of a frame.
#[derive(Clone, Copy, Debug)]
pub struct Macs {
    pub dst: [u8; 6],
    pub src: [u8; 6],
}

impl Macs {
    /// Locally administered addresses, for frames that never reach a real link.
    pub const LOCAL: Macs = Macs { dst: [0x02, 0, 0, 0, 0, 2], src: [0x02, 0, 0, 0, 0, 1] };
}

/// A UDP datagram from `src:sport` to `dst:dport` in an Ethernet frame.
pub fn udp(macs: Macs, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(8 + UDP_PAYLOAD);
    l4.extend(sport.to_be_bytes());
    l4.extend(dport.to_be_bytes());
    l4.extend(((8 + UDP_PAYLOAD) as u16).to_be_bytes());
    l4.extend([0, 0]);
    l4.extend([0x5a; UDP_PAYLOAD]);
    ip_frame(macs, src, dst, 17, l4)
}

/// A TCP SYN (no ACK) from `src:sport` to `dst:dport`: a connection attempt.
pub fn tcp_syn(macs: Macs, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(20);
    l4.extend(sport.to_be_bytes());
    l4.extend(dport.to_be_bytes());
    l4.extend(1u32.to_be_bytes()); // sequence number
    l4.extend(0u32.to_be_bytes()); // acknowledgement number
    l4.extend([5 << 4, 0x02]); // header length 20, SYN
    l4.extend(64240u16.to_be_bytes()); // window
    l4.extend([0, 0, 0, 0]); // checksum (not verified by the programs), urgent pointer
    ip_frame(macs, src, dst, 6, l4)
}

/// `l4` (of IP protocol `proto`) from `src` to `dst`, in IPv4 or IPv6 and Ethernet.
fn ip_frame(macs: Macs, src: IpAddr, dst: IpAddr, proto: u8, l4: Vec<u8>) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_MIN + 40);
    f.extend(macs.dst);
    f.extend(macs.src);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend(0x0800u16.to_be_bytes());
            let mut ip = vec![0x45, 0];
            ip.extend(((20 + l4.len()) as u16).to_be_bytes());
            ip.extend([0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
            ip.extend(s.octets());
            ip.extend(d.octets());
            let sum = checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend(ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend(0x86ddu16.to_be_bytes());
            f.extend(0x6000_0000u32.to_be_bytes());
            f.extend((l4.len() as u16).to_be_bytes());
            f.extend([proto, 64]);
            f.extend(s.octets());
            f.extend(d.octets());
        }
        _ => panic!("source and destination of a frame must be of one address family"),
    }
    f.extend(l4);
    f.resize(f.len().max(ETH_MIN), 0);
    f
}

/// A frame whose IP header is impossible: IPv4 with a header length below 20 bytes, or an
/// IPv6 ethertype carrying a version-4 header. The datapath drops both as `malformed`.
pub fn malformed(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let mut f = udp(Macs::LOCAL, src, dst, 1000, 2000);
    f[ETH_HLEN] = if src.is_ipv4() { 0x44 } else { 0x40 };
    f
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_frames_carry_a_valid_header_checksum() {
        let f = udp(Macs::LOCAL, ip("198.18.0.1"), ip("198.18.0.2"), 1234, 5000);
        assert_eq!(checksum(&f[ETH_HLEN..ETH_HLEN + 20]), 0, "a correct header sums to zero");
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(&f[ETH_HLEN + 20..ETH_HLEN + 24], &[0x04, 0xd2, 0x13, 0x88], "ports");
        assert_eq!(f.len(), ETH_MIN);
    }

    #[test]
    fn ipv6_frames_hold_addresses_and_payload_length() {
        let f = udp(Macs::LOCAL, ip("fd00::1"), ip("fd00::2"), 1, 2);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 26);
        assert_eq!(f[ETH_HLEN + 6], 17);
        assert_eq!(f[ETH_HLEN + 8 + 15], 1);
        assert_eq!(f[ETH_HLEN + 24 + 15], 2);
    }

    #[test]
    fn malformed_frames_break_the_ip_header() {
        assert_eq!(malformed(ip("198.18.0.1"), ip("198.18.0.2"))[ETH_HLEN], 0x44);
        assert_eq!(malformed(ip("fd00::1"), ip("fd00::2"))[ETH_HLEN], 0x40);
    }
}
