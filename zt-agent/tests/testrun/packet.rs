//! Builds Ethernet frames for BPF_PROG_TEST_RUN: IPv4 (options, fragments) and IPv6
//! (extension headers, fragments), TCP/UDP/SCTP/ICMP/ICMPv6, VLAN tags, ICMP errors that
//! embed another packet. Checksums are left zero: the programs do not verify them.

use std::net::IpAddr;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

/// Transport header of a packet.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Sctp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6 (by the packet's family): type, code, and id/seq (or unused word).
    Icmp {
        ty: u8,
        code: u8,
        rest: u32,
        payload: Vec<u8>,
    },
}

impl L4 {
    pub fn tcp(sport: u16, dport: u16, flags: u8) -> L4 {
        L4::Tcp { sport, dport, flags }
    }
    pub fn udp(sport: u16, dport: u16) -> L4 {
        L4::Udp { sport, dport }
    }
    pub fn echo_request(v6: bool, id: u16) -> L4 {
        L4::Icmp { ty: if v6 { 128 } else { 8 }, code: 0, rest: (id as u32) << 16 | 1, payload: vec![0xab; 8] }
    }
    pub fn echo_reply(v6: bool, id: u16) -> L4 {
        L4::Icmp { ty: if v6 { 129 } else { 0 }, code: 0, rest: (id as u32) << 16 | 1, payload: vec![0xab; 8] }
    }

    fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp { .. } => TCP,
            L4::Udp { .. } => UDP,
            L4::Sctp { .. } => SCTP,
            L4::Icmp { .. } => {
                if v6 {
                    ICMPV6
                } else {
                    ICMP
                }
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            L4::Tcp { sport, dport, flags } => {
                b.extend(sport.to_be_bytes());
                b.extend(dport.to_be_bytes());
                b.extend(1u32.to_be_bytes());
                b.extend(0u32.to_be_bytes());
                b.push(5 << 4);
                b.push(*flags);
                b.extend(64240u16.to_be_bytes());
                b.extend([0, 0, 0, 0]);
            }
            L4::Udp { sport, dport } => {
                b.extend(sport.to_be_bytes());
                b.extend(dport.to_be_bytes());
                b.extend(16u16.to_be_bytes());
                b.extend([0, 0]);
                b.extend([0x55; 8]);
            }
            L4::Sctp { sport, dport } => {
                b.extend(sport.to_be_bytes());
                b.extend(dport.to_be_bytes());
                b.extend([0; 8]);
                b.extend([0x77; 16]);
            }
            L4::Icmp { ty, code, rest, payload } => {
                b.push(*ty);
                b.push(*code);
                b.extend([0, 0]);
                b.extend(rest.to_be_bytes());
                b.extend(payload);
            }
        }
        b
    }
}

/// Fragment placement of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frag {
    None,
    /// Offset 0, more fragments follow.
    First {
        id: u32,
    },
    /// A later fragment (offset in 8-byte units), no transport header.
    Later {
        id: u32,
        offset: u16,
    },
}

/// A packet to build.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub vlans: Vec<u16>,
    pub frag: Frag,
    /// IPv4 option bytes (padded to 4) / IPv6 extension headers (next-header codes) before L4.
    pub ipv4_options: usize,
    pub ipv6_ext: Vec<u8>,
}

impl Pkt {
    pub fn new(src: &str, dst: &str, l4: L4) -> Pkt {
        Pkt {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            l4,
            vlans: vec![],
            frag: Frag::None,
            ipv4_options: 0,
            ipv6_ext: vec![],
        }
    }

    pub fn vlan(mut self, id: u16) -> Pkt {
        self.vlans.push(id);
        self
    }
    pub fn frag(mut self, f: Frag) -> Pkt {
        self.frag = f;
        self
    }
    pub fn ipv4_options(mut self, bytes: usize) -> Pkt {
        self.ipv4_options = bytes;
        self
    }
    pub fn ipv6_ext(mut self, headers: &[u8]) -> Pkt {
        self.ipv6_ext = headers.to_vec();
        self
    }

    fn v6(&self) -> bool {
        self.src.is_ipv6()
    }

    /// The IP packet (no Ethernet header).
    pub fn ip_bytes(&self) -> Vec<u8> {
        let v6 = self.v6();
        let proto = self.l4.proto(v6);
        let payload = match self.frag {
            Frag::Later { .. } => vec![0x42; 24],
            _ => self.l4.bytes(),
        };
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let opts = self.ipv4_options.div_ceil(4) * 4;
                let ihl = 20 + opts;
                let total = ihl + payload.len();
                let mut b = Vec::new();
                b.push(0x40 | (ihl / 4) as u8);
                b.push(0);
                b.extend((total as u16).to_be_bytes());
                let (id, frag_off) = match self.frag {
                    Frag::None => (0x1234u16, 0x4000u16),
                    Frag::First { id } => (id as u16, 0x2000),
                    Frag::Later { id, offset } => (id as u16, offset & 0x1fff),
                };
                b.extend(id.to_be_bytes());
                b.extend(frag_off.to_be_bytes());
                b.push(64);
                b.push(proto);
                b.extend([0, 0]);
                b.extend(s.octets());
                b.extend(d.octets());
                b.extend(std::iter::repeat_n(1u8, opts)); // NOP options
                b.extend(payload);
                b
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ext = Vec::new();
                let mut chain: Vec<u8> = self.ipv6_ext.clone();
                if self.frag != Frag::None {
                    chain.push(44);
                }
                // Each header names the next; the last names the transport protocol.
                for (i, &h) in chain.iter().enumerate() {
                    let next = chain.get(i + 1).copied().unwrap_or(proto);
                    match h {
                        44 => {
                            let (id, off_flags) = match self.frag {
                                Frag::First { id } => (id, 1u16),
                                Frag::Later { id, offset } => (id, offset << 3),
                                Frag::None => (0, 0),
                            };
                            ext.push(next);
                            ext.push(0);
                            ext.extend(off_flags.to_be_bytes());
                            ext.extend(id.to_be_bytes());
                        }
                        _ => {
                            // Hop-by-hop / routing / destination options: 8 bytes of padding.
                            ext.push(next);
                            ext.push(0);
                            ext.extend([1, 4, 0, 0, 0, 0]);
                        }
                    }
                }
                let first = chain.first().copied().unwrap_or(proto);
                let plen = ext.len() + payload.len();
                let mut b = Vec::new();
                b.extend(0x6000_0000u32.to_be_bytes());
                b.extend((plen as u16).to_be_bytes());
                b.push(first);
                b.push(64);
                b.extend(s.octets());
                b.extend(d.octets());
                b.extend(ext);
                b.extend(payload);
                b
            }
            _ => panic!("mixed address families"),
        }
    }

    /// The Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend([0x02, 0, 0, 0, 0, 2]);
        f.extend([0x02, 0, 0, 0, 0, 1]);
        for (i, vid) in self.vlans.iter().enumerate() {
            // Outer tag 802.1ad when double-tagged.
            let tpid: u16 = if i == 0 && self.vlans.len() > 1 { 0x88a8 } else { 0x8100 };
            f.extend(tpid.to_be_bytes());
            f.extend(vid.to_be_bytes());
        }
        f.extend(if self.v6() { 0x86ddu16 } else { 0x0800 }.to_be_bytes());
        f.extend(self.ip_bytes());
        // Ethernet minimum frame size.
        while f.len() < 60 {
            f.push(0);
        }
        f
    }
}

/// An ICMP error (v4: type 3 code 4 "fragmentation needed"; v6: type 2 "packet too big")
/// from `from` to `to`, quoting `quoted` (the packet that caused it).
pub fn icmp_error(from: &str, to: &str, quoted: &Pkt) -> Pkt {
    let v6 = quoted.v6();
    let mut inner = quoted.ip_bytes();
    inner.truncate(if v6 { 40 + 8 } else { 20 + 8 });
    let (ty, code, rest) = if v6 { (2, 0, 1280) } else { (3, 4, 1400) };
    Pkt::new(from, to, L4::Icmp { ty, code, rest, payload: inner })
}

/// ARP request frame.
pub fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend([0x02, 0, 0, 0, 0, 1]);
    f.extend(0x0806u16.to_be_bytes());
    f.extend([0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend([0x02, 0, 0, 0, 0, 1, 198, 18, 0, 1]);
    f.extend([0, 0, 0, 0, 0, 0, 198, 18, 0, 2]);
    while f.len() < 60 {
        f.push(0);
    }
    f
}
