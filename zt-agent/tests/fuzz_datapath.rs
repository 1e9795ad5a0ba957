//! Differential fuzzing of the kernel's packet parser and verdict path against a userspace
//! reference built from etherparse, over random and mutated frames via BPF_PROG_TEST_RUN.
//!
//! Every frame runs through XDP ingress, TC ingress and TC egress under a policy that
//! denies everything with unlimited deny events (`deny_events_per_sec = 0`), so every IP
//! frame yields a DENY event that carries the kernel's parse result. For every run:
//! - the return code is XDP_PASS/XDP_DROP (TC_ACT_OK/TC_ACT_SHOT), never XDP_ABORTED or
//!   anything else;
//! - the verdict and event match the reference: non-IP and IPv6 neighbour discovery pass
//!   without an event; anything else is dropped with a DENY event whose family, addresses,
//!   ports, protocol, length and TCP flags/ICMP type equal the reference's (reason
//!   `default-deny`), or, for a frame the reference finds broken, reason `malformed` with an
//!   empty tuple; a later fragment is reported `fragment-unknown` without ports, or follows
//!   an earlier first fragment of its datagram silently.
//!
//! The reference ([`reference`]) decodes every header with etherparse's header slicers
//! (Ethernet II, 802.1Q, IPv4 + options, IPv6, IPv6 raw extension/auth/fragment headers,
//! TCP, UDP, ICMPv4, ICMPv6) and walks them with the kernel's documented rules, mapped to
//! the kernel's conventions (ICMP echo: identifier as both ports; IPv4 addresses in the
//! first 4 bytes). Where the kernel is deliberately laxer or stricter than etherparse's
//! whole-packet parser, the class is named in `Note` with the reason and counted; the
//! whole-packet parser (`SlicedPacket`) cross-checks the reference on every frame it parses
//! completely.
//!
//! Bounded for CI: `ZT_FUZZ_FRAMES` frames (default 1,000,000), stopping early after
//! `ZT_FUZZ_SECONDS` if set. `ZT_FUZZ_SEED` replays a run (the seed is printed).
//! `cargo xtask fuzz` runs it longer.

mod testrun;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use etherparse::{
    EtherType, Ethernet2Header, IcmpEchoHeader, Icmpv4Header, Icmpv4Slice, Icmpv4Type, Icmpv6Header, Icmpv6Slice,
    Icmpv6Type, IpAuthHeader, IpAuthHeaderSlice, IpFragOffset, IpNumber, Ipv4Header, Ipv4HeaderSlice, Ipv4Options,
    Ipv6FlowLabel, Ipv6FragmentHeader, Ipv6FragmentHeaderSlice, Ipv6Header, Ipv6HeaderSlice, Ipv6RawExtHeader,
    Ipv6RawExtHeaderSlice, NetSlice, SingleVlanHeader, SlicedPacket, TcpHeader, TcpHeaderSlice, TransportSlice,
    UdpHeader, UdpHeaderSlice, VlanId, VlanPcp,
};
use testrun::fixture::*;
use zt_common::{
    addr::{Addr, FAMILY_V4, FAMILY_V6},
    event::{FlowEvent, KIND_DENY},
    identity::ANY,
    proto,
    reason::*,
};
use zt_tests::rng::Rng;

// ---------------------------------------------------------------------------------------
// Randomness

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------
// Frame generation: valid frames from etherparse's header types

/// Where the generator put things, for targeted corruption.
#[derive(Default, Clone)]
struct Layout {
    /// Offsets of the ethertype fields (outer, then each VLAN tag's).
    ethertypes: Vec<usize>,
    ip: usize,
    v6: bool,
    /// Offsets of IPv6 extension headers.
    exts: Vec<usize>,
    l4: usize,
}

const ETH_IP4: u16 = 0x0800;
const ETH_IP6: u16 = 0x86dd;

fn v4_addr(r: &mut Rng) -> [u8; 4] {
    match r.below(4) {
        0 => [198, 18, 0, 1],
        1 => [198, 18, 0, 2],
        2 => [10, 0, 0, r.u8()],
        _ => (r.u64() as u32).to_be_bytes(),
    }
}

fn v6_addr(r: &mut Rng) -> [u8; 16] {
    let mut a = [0u8; 16];
    match r.below(4) {
        0 => a = "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        1 => a = "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        2 => a = "fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        _ => a.iter_mut().for_each(|b| *b = r.u8()),
    }
    a
}

/// A transport header (and some payload) for `proto`, or for a random protocol.
/// Returns (protocol number, bytes).
fn gen_l4(r: &mut Rng, v6: bool, depth: usize) -> (u8, Vec<u8>) {
    let icmp_own = if v6 { proto::ICMPV6 } else { proto::ICMP };
    let choice = r.below(100);
    let payload_len = *r.pick(&[0usize, 0, 1, 7, 8, 20, 64]);
    match choice {
        0..=29 => {
            let mut h = TcpHeader::new(r.u16(), r.u16(), r.u64() as u32, r.u16());
            h.acknowledgment_number = r.u64() as u32;
            let f = r.u8();
            (h.fin, h.syn, h.rst, h.psh, h.ack, h.urg, h.ece, h.cwr) =
                (f & 1 != 0, f & 2 != 0, f & 4 != 0, f & 8 != 0, f & 16 != 0, f & 32 != 0, f & 64 != 0, f & 128 != 0);
            h.ns = r.chance(10);
            if r.chance(30) {
                let n = 4 * r.below(11);
                let mut opts = vec![1u8; n]; // NOPs
                if n >= 4 && r.chance(50) {
                    opts[..4].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
                }
                h.set_options_raw(&opts).unwrap();
            }
            let mut b = h.to_bytes().to_vec();
            b.extend(r.bytes(payload_len));
            (proto::TCP, b)
        }
        30..=49 => {
            let payload = r.bytes(payload_len);
            let h = UdpHeader {
                source_port: r.u16(),
                destination_port: r.u16(),
                length: 8 + payload.len() as u16,
                checksum: 0,
            };
            let mut b = h.to_bytes().to_vec();
            b.extend(payload);
            (proto::UDP, b)
        }
        50..=57 => {
            // SCTP: etherparse has no SCTP type; common header by hand plus a chunk.
            let mut b = Vec::new();
            b.extend(r.u16().to_be_bytes());
            b.extend(r.u16().to_be_bytes());
            b.extend(r.bytes(8));
            b.extend(r.bytes(payload_len));
            (proto::SCTP, b)
        }
        58..=87 => {
            // ICMP of the packet's own family, sometimes the other one (ICMPv6 over IPv4).
            let p = if r.chance(8) { if v6 { proto::ICMP } else { proto::ICMPV6 } } else { icmp_own };
            let id = r.u16();
            let seq = r.u16();
            let echo = IcmpEchoHeader { id, seq };
            let ty_pick = r.below(10);
            let mut b = if p == proto::ICMPV6 {
                let t = match ty_pick {
                    0..=2 => Icmpv6Type::EchoRequest(echo),
                    3 => Icmpv6Type::EchoReply(echo),
                    4 => Icmpv6Type::NeighborSolicitation,
                    5 => Icmpv6Type::Unknown {
                        type_u8: *r.pick(&[130, 131, 132, 133, 134, 136, 137, 143]),
                        code_u8: 0,
                        bytes5to8: [0; 4],
                    },
                    6..=7 => Icmpv6Type::Unknown {
                        type_u8: *r.pick(&[1, 2, 3, 4]),
                        code_u8: r.u8() % 8,
                        bytes5to8: [0, 0, 5, 0xdc],
                    },
                    _ => Icmpv6Type::Unknown {
                        type_u8: r.u8(),
                        code_u8: r.u8(),
                        bytes5to8: (r.u64() as u32).to_be_bytes(),
                    },
                };
                Icmpv6Header::new(t).to_bytes().to_vec()
            } else {
                let t = match ty_pick {
                    0..=2 => Icmpv4Type::EchoRequest(echo),
                    3 => Icmpv4Type::EchoReply(echo),
                    4..=6 => Icmpv4Type::Unknown {
                        type_u8: *r.pick(&[3, 11, 12]),
                        code_u8: r.u8() % 16,
                        bytes5to8: [0, 0, 5, 0xdc],
                    },
                    7 => Icmpv4Type::Unknown { type_u8: *r.pick(&[13, 14]), code_u8: 0, bytes5to8: [0; 4] },
                    _ => Icmpv4Type::Unknown {
                        type_u8: r.u8(),
                        code_u8: r.u8(),
                        bytes5to8: (r.u64() as u32).to_be_bytes(),
                    },
                };
                Icmpv4Header::new(t).to_bytes().to_vec()
            };
            let is_error =
                matches!(b[0], 1..=4 if p == proto::ICMPV6) || matches!(b[0], 3 | 11 | 12 if p == proto::ICMP);
            if is_error && depth == 0 {
                // Quote an inner packet: its IP header and the first 8 transport bytes, or
                // all of it, or less.
                let inner_v6 = if r.chance(90) { p == proto::ICMPV6 } else { p != proto::ICMPV6 };
                let (inner, lay) = gen_ip(r, inner_v6, depth + 1);
                let cut = match r.below(3) {
                    0 => (lay.l4 - lay.ip) + 8,
                    1 => inner.len(),
                    _ => r.below(inner.len() + 1),
                };
                b.extend(&inner[..cut.min(inner.len())]);
            } else {
                b.extend(r.bytes(payload_len));
            }
            (p, b)
        }
        _ => {
            let p = {
                let x = r.u8();
                *r.pick(&[0u8, 2, 4, 41, 47, 50, 89, 103, 136, 253, 255, x])
            };
            (p, {
                let n = r.below(40);
                r.bytes(n)
            })
        }
    }
}

/// An IP packet (no Ethernet header) with its layout relative to its first byte.
fn gen_ip(r: &mut Rng, v6: bool, depth: usize) -> (Vec<u8>, Layout) {
    let (p, mut l4) = gen_l4(r, v6, depth);
    let mut lay = Layout { v6, ..Default::default() };
    // Fragment placement: none, first (offset 0, more fragments), later (offset > 0).
    let frag = match r.below(10) {
        0 => 1,
        1 => 2,
        _ => 0,
    };
    let frag_id: u32 = if r.chance(70) { r.below(8) as u32 } else { r.u64() as u32 };
    if frag == 2 {
        // A later fragment carries data, not the transport header.
        let n = 8 * (1 + r.below(4));
        l4 = r.bytes(n);
    }
    if !v6 {
        let mut h = Ipv4Header::new(0, r.u8(), IpNumber(p), v4_addr(r), v4_addr(r)).unwrap();
        if r.chance(25) {
            let n = 4 * (1 + r.below(10));
            let opts: Vec<u8> = if r.chance(50) { vec![1; n] } else { r.bytes(n) };
            h.options = Ipv4Options::try_from(&opts[..]).unwrap();
        }
        h.identification = frag_id as u16;
        h.dont_fragment = frag == 0 && r.chance(50);
        h.more_fragments = frag == 1 || (frag == 2 && r.chance(50));
        h.fragment_offset = IpFragOffset::try_new(if frag == 2 { 1 + r.below(0x1ffe) as u16 } else { 0 }).unwrap();
        h.total_len = (h.header_len() + l4.len()) as u16;
        h.header_checksum = h.calc_header_checksum();
        let mut b = h.to_bytes().to_vec();
        lay.l4 = b.len();
        b.extend(l4);
        (b, lay)
    } else {
        // Extension headers: 0-8 of hop-by-hop (mostly first), routing, destination
        // options, authentication; a fragment header when fragmented.
        let n = match r.below(10) {
            0..=4 => 0,
            5..=6 => 1,
            7 => 2 + r.below(3),
            _ => 5 + r.below(4),
        };
        let mut chain: Vec<u8> =
            (0..n).map(|i| if i == 0 && r.chance(40) { 0 } else { *r.pick(&[43, 60, 60, 51, 0]) }).collect();
        if frag != 0 || r.chance(5) {
            let at = r.below(chain.len() + 1);
            chain.insert(at, 44);
        }
        let mut ext = Vec::new();
        for (i, &h) in chain.iter().enumerate() {
            let next = IpNumber(chain.get(i + 1).copied().unwrap_or(p));
            lay.exts.push(40 + ext.len());
            match h {
                44 => {
                    let (off, more) = match frag {
                        1 => (0, true),
                        2 => (1 + r.below(0x1ffe) as u16, r.chance(50)),
                        _ => (0, false), // an atomic fragment
                    };
                    ext.extend(
                        Ipv6FragmentHeader::new(next, IpFragOffset::try_new(off).unwrap(), more, frag_id).to_bytes(),
                    );
                }
                51 => {
                    let icv = {
                        let n = 4 * r.below(4);
                        r.bytes(n)
                    };
                    ext.extend(IpAuthHeader::new(next, r.u64() as u32, r.u64() as u32, &icv).unwrap().to_bytes());
                }
                _ => {
                    let payload = {
                        let n = 6 + 8 * r.below(3);
                        r.bytes(n)
                    };
                    ext.extend(Ipv6RawExtHeader::new_raw(next, &payload).unwrap().to_bytes());
                }
            }
        }
        let first = chain.first().copied().unwrap_or(p);
        let h = Ipv6Header {
            traffic_class: r.u8(),
            flow_label: Ipv6FlowLabel::try_new(r.u64() as u32 & 0xfffff).unwrap(),
            payload_length: (ext.len() + l4.len()) as u16,
            next_header: IpNumber(first),
            hop_limit: r.u8(),
            source: v6_addr(r),
            destination: v6_addr(r),
        };
        let mut b = h.to_bytes().to_vec();
        b.extend(ext);
        lay.l4 = b.len();
        b.extend(l4);
        (b, lay)
    }
}

/// A valid Ethernet frame with 0-2 VLAN tags around an IP packet (or, rarely, ARP or
/// another ethertype).
fn gen_frame(r: &mut Rng) -> (Vec<u8>, Layout) {
    let v6 = r.chance(50);
    let (ip, mut lay) = gen_ip(r, v6, 0);
    let ip_type = if r.chance(3) {
        {
            let x = r.u16();
            *r.pick(&[0x0806u16, 0x88cc, 0x8847, x])
        }
    } else if v6 {
        ETH_IP6
    } else {
        ETH_IP4
    };
    let tpids: Vec<u16> = match r.below(10) {
        0..=5 => vec![],
        6..=7 => vec![0x8100],
        8 => vec![0x88a8, 0x8100],
        _ => vec![*r.pick(&[0x8100, 0x88a8, 0x9100]), *r.pick(&[0x8100, 0x88a8]), 0x8100][..1 + r.below(3)].to_vec(),
    };
    let mut types = tpids.clone();
    types.push(ip_type);
    let mut f = Ethernet2Header {
        source: [2, 0, 0, 0, 0, 1],
        destination: [2, 0, 0, 0, 0, 2],
        ether_type: EtherType(types[0]),
    }
    .to_bytes()
    .to_vec();
    lay.ethertypes.push(12);
    for t in &types[1..] {
        lay.ethertypes.push(f.len() + 2);
        let vlan = SingleVlanHeader {
            pcp: VlanPcp::try_new(r.u8() & 7).unwrap(),
            drop_eligible_indicator: r.chance(10),
            vlan_id: VlanId::try_new(r.u16() & 0xfff).unwrap(),
            ether_type: EtherType(*t),
        };
        f.extend(vlan.to_bytes());
    }
    lay.ip = f.len();
    lay.l4 += lay.ip;
    lay.exts.iter_mut().for_each(|e| *e += lay.ip);
    f.extend(ip);
    if r.chance(30) {
        // Ethernet's minimum frame: padding after the IP packet.
        while f.len() < 60 {
            f.push(0);
        }
    }
    (f, lay)
}

/// Damages a frame: bit flips, byte overwrites, truncation, corrupted length/IHL/next-header
/// fields, inserted and deleted bytes.
fn mutate(r: &mut Rng, f: &mut Vec<u8>, lay: &Layout) {
    for _ in 0..1 + r.below(3) {
        if f.is_empty() {
            return;
        }
        let len = f.len();
        let set = |f: &mut Vec<u8>, at: usize, v: u8| {
            if at < f.len() {
                f[at] = v;
            }
        };
        match r.below(12) {
            0 => {
                let at = r.below(len);
                f[at] ^= 1 << r.below(8);
            }
            1 => {
                let at = r.below(len);
                f[at] = r.u8();
            }
            2 => f.truncate(r.below(len + 1)),
            3 => {
                // Version/IHL byte.
                let v = if r.chance(50) {
                    r.u8()
                } else {
                    (f.get(lay.ip).copied().unwrap_or(0x45) & 0xf0) | r.below(16) as u8
                };
                set(f, lay.ip, v);
            }
            4 => {
                // Total length (v4) / payload length (v6).
                let at = lay.ip + if lay.v6 { 4 } else { 2 };
                let v = {
                    let x = r.u16();
                    *r.pick(&[0u16, 1, 19, 20, 39, 40, 0xffff, x, len as u16])
                };
                set(f, at, (v >> 8) as u8);
                set(f, at + 1, v as u8);
            }
            5 => {
                // Protocol / next header.
                let at = lay.ip + if lay.v6 { 6 } else { 9 };
                set(f, at, {
                    let x = r.u8();
                    *r.pick(&[0u8, 1, 6, 17, 43, 44, 50, 51, 58, 59, 60, 132, 135, x])
                });
            }
            6 if !lay.exts.is_empty() => {
                // An extension header's next header or length.
                let e = lay.exts[r.below(lay.exts.len())];
                if r.chance(50) {
                    set(f, e, {
                        let x = r.u8();
                        *r.pick(&[0u8, 6, 17, 43, 44, 51, 58, 60, x])
                    });
                } else {
                    set(f, e + 1, {
                        let x = r.u8();
                        *r.pick(&[0u8, 1, 2, 0xff, x])
                    });
                }
            }
            7 => {
                // An ethertype.
                let at = lay.ethertypes[r.below(lay.ethertypes.len())];
                let v = {
                    let x = r.u16();
                    *r.pick(&[0x8100u16, 0x88a8, 0x9100, ETH_IP4, ETH_IP6, 0x0806, x])
                };
                set(f, at, (v >> 8) as u8);
                set(f, at + 1, v as u8);
            }
            8 => {
                // Transport header: TCP data offset, or the first bytes.
                let at = lay.l4 + if r.chance(50) { 12 } else { r.below(8) };
                set(f, at, r.u8());
            }
            9 => {
                let at = r.below(len + 1);
                let junk = {
                    let n = 1 + r.below(16);
                    r.bytes(n)
                };
                f.splice(at..at, junk);
            }
            10 => {
                let at = r.below(len);
                let n = (1 + r.below(16)).min(len - at);
                f.drain(at..at + n);
            }
            _ => {
                // IPv4 fragment field.
                if !lay.v6 {
                    let v = r.u16();
                    set(f, lay.ip + 6, (v >> 8) as u8);
                    set(f, lay.ip + 7, v as u8);
                }
            }
        }
    }
}

/// Random bytes, sometimes behind a plausible Ethernet header.
fn garbage(r: &mut Rng) -> Vec<u8> {
    let mut f = {
        let n = 14 + r.below(120);
        r.bytes(n)
    };
    if r.chance(70) {
        let t = *r.pick(&[ETH_IP4, ETH_IP6, 0x8100, 0x88a8]);
        f[12] = (t >> 8) as u8;
        f[13] = t as u8;
        if r.chance(50) && f.len() > 14 {
            f[14] = if t == ETH_IP6 { 0x60 | (f[14] & 0xf) } else { 0x40 | (f[14] & 0xf) };
        }
    }
    f
}

// ---------------------------------------------------------------------------------------
// The reference

/// What the kernel reports for a frame it denies (its conventions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tuple {
    family: u8,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    /// IP length as the header says (v4 total length, v6 payload length + 40).
    len: u32,
    /// TCP flags or ICMP type.
    flags: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Non-IP or IPv6 link infrastructure (neighbour/multicast listener discovery): passed,
    /// no event.
    Pass,
    /// Headers broken: dropped, `malformed`, empty tuple.
    Malformed,
    /// Dropped by the deny-all policy (`default-deny`) with this tuple.
    Deny(Tuple),
    /// A later fragment: dropped as `fragment-unknown` (no ports), or silently when it
    /// follows a first fragment of its datagram the kernel saw.
    Later(Tuple),
}

/// Classes where the kernel deliberately differs from etherparse's whole-packet parser, and
/// known bugs. The reference follows the kernel's documented rule in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Note {
    /// Ethertype 0x9100 (pre-standard QinQ), MACsec, or a third VLAN tag: etherparse
    /// decodes further; the kernel understands 802.1Q/802.1ad and at most two tags and
    /// passes anything else as non-IP (the host's stack does not deliver such frames as IP
    /// either).
    LinkNotIp,
    /// The transport header is read within the frame, not within the IP total/payload
    /// length (etherparse bounds it by the length field and rejects a length larger than the
    /// frame): XDP sees only the first buffer of a frame and the headers are all it needs;
    /// the stack itself discards packets whose length fields are inconsistent.
    LengthFieldIgnored,
    /// An extension header's declared length runs past the frame: the kernel needs only
    /// the 2 bytes it reads (next header, length) and fails only if a later read does.
    ExtPastFrame,
    /// An AH with payload length 0 (etherparse rejects it; the kernel just steps over
    /// `(len + 2) * 4` bytes) or cut short by the frame.
    AuthLax,
    /// IPv6 hop-by-hop options after the first header, or an extension header type more than
    /// once: etherparse stops (or errors); the kernel walks any order up to its limit.
    ExtOrder,
    /// IPv4 carrying AH (protocol 51): etherparse walks the AH to the protocol behind it; the
    /// kernel walks extension headers only in IPv6 and reports protocol 51 (policy can only
    /// name TCP/UDP/SCTP/ICMP, so AH traffic falls to the default either way).
    Ipv4Auth,
    /// TCP options cut short by the frame: the kernel reads only the 20-byte fixed header.
    TcpOptionsPastFrame,
    /// SCTP: etherparse has no SCTP parser; the reference reads the common header's ports.
    Sctp,
    /// ICMP timestamp messages not exactly 20 bytes: etherparse rejects them; the kernel
    /// reads the 8-byte ICMP header only.
    IcmpTimestampLen,
    /// ICMP echo with a non-zero code: etherparse does not call it echo; the kernel keys on
    /// the type only and uses the identifier as ports.
    EchoCode,
    /// BUG (functional, reported; not a bypass): an IPv6 later fragment whose fragment
    /// header names an extension header as next (legal: e.g. destination options in the
    /// fragmentable part). Etherparse and the kernel both walk on into the fragment's data,
    /// so the kernel keys the fragment with a protocol read from payload bytes; it no longer
    /// matches the first fragment's key (which has the real transport protocol) and is
    /// dropped as fragment-unknown (or malformed) even when the first fragment was allowed.
    /// The reference agrees with the kernel here, so this is counted, not failed.
    LaterFragmentWalksData,
}

const ETH_VLAN: [u16; 2] = [0x8100, 0x88a8];

fn is_ext(n: u8) -> bool {
    matches!(n, 0 | 43 | 44 | 51 | 60)
}

/// Fragment facts of a frame: its datagram id and whether it is a first fragment (the
/// kernel remembers a first fragment's verdict for the later ones).
#[derive(Default, Clone, Copy)]
struct FragInfo {
    first: bool,
    id: u32,
}

/// The kernel's key for a datagram's fragments.
type FragKey = (u8, [u8; 16], [u8; 16], u32, u8);

fn frag_key(t: &Tuple, fi: &FragInfo) -> FragKey {
    (t.family, t.src, t.dst, fi.id, t.proto)
}

/// The reference parse of one frame; `notes` collects the classes that applied.
fn reference(f: &[u8], notes: &mut Vec<Note>) -> Expect {
    reference_frag(f, notes, &mut FragInfo::default())
}

fn reference_frag(f: &[u8], notes: &mut Vec<Note>, fi: &mut FragInfo) -> Expect {
    match reference_inner(f, notes, fi) {
        Ok(e) | Err(e) => e,
    }
}

fn reference_inner(f: &[u8], notes: &mut Vec<Note>, fi: &mut FragInfo) -> Result<Expect, Expect> {
    use Expect::*;
    let (eth, _) = Ethernet2Header::from_slice(f).map_err(|_| Malformed)?;
    let mut et = eth.ether_type.0;
    let mut off = Ethernet2Header::LEN;
    for _ in 0..2 {
        if !ETH_VLAN.contains(&et) {
            break;
        }
        let (vlan, _) = SingleVlanHeader::from_slice(&f[off..]).map_err(|_| Malformed)?;
        et = vlan.ether_type.0;
        off += SingleVlanHeader::LEN;
    }
    let rest = &f[off..];
    let mut t = Tuple::default();
    let mut later = false;
    let l4 = match et {
        ETH_IP4 => {
            let h = Ipv4HeaderSlice::from_slice(rest).map_err(|_| Malformed)?;
            // A total length shorter than the header (etherparse's Ipv4Slice rejects it too;
            // the header slicer alone does not look).
            if (h.total_len() as usize) < h.slice().len() {
                return Err(Malformed);
            }
            t.family = FAMILY_V4;
            t.src = Addr::from_v4(h.source()).bytes;
            t.dst = Addr::from_v4(h.destination()).bytes;
            t.proto = h.protocol().0;
            t.len = h.total_len() as u32;
            later = h.fragments_offset().value() != 0;
            fi.first = !later && h.more_fragments();
            fi.id = h.identification() as u32;
            if h.total_len() as usize > rest.len() {
                notes.push(Note::LengthFieldIgnored);
            }
            if t.proto == 51 {
                notes.push(Note::Ipv4Auth);
            }
            off + h.slice().len()
        }
        ETH_IP6 => {
            let h = Ipv6HeaderSlice::from_slice(rest).map_err(|_| Malformed)?;
            t.family = FAMILY_V6;
            t.src = h.source();
            t.dst = h.destination();
            t.len = h.payload_length() as u32 + 40;
            if t.len as usize > rest.len() {
                notes.push(Note::LengthFieldIgnored);
            }
            let mut next = h.next_header().0;
            let mut l4 = off + Ipv6Header::LEN;
            let mut seen = Vec::new();
            let mut walked = 0;
            while is_ext(next) {
                if walked == 6 {
                    // More than six: malformed by design.
                    return Err(Malformed);
                }
                if seen.contains(&next) || (next == 0 && walked > 0) {
                    notes.push(Note::ExtOrder);
                }
                seen.push(next);
                let rest = f.get(l4..).unwrap_or(&[]);
                match next {
                    44 => {
                        let x = Ipv6FragmentHeaderSlice::from_slice(rest).map_err(|_| Malformed)?;
                        later = x.fragment_offset().value() != 0;
                        fi.first = !later && x.more_fragments();
                        fi.id = x.identification();
                        next = x.next_header().0;
                        l4 += 8;
                        if later && is_ext(next) {
                            notes.push(Note::LaterFragmentWalksData);
                        }
                    }
                    51 => match IpAuthHeaderSlice::from_slice(rest) {
                        Ok(x) => {
                            next = x.next_header().0;
                            l4 += x.slice().len();
                        }
                        Err(_) if rest.len() >= 2 => {
                            notes.push(Note::AuthLax);
                            next = rest[0];
                            l4 += (rest[1] as usize + 2) * 4;
                        }
                        Err(_) => return Err(Malformed),
                    },
                    _ => match Ipv6RawExtHeaderSlice::from_slice(rest) {
                        Ok(x) => {
                            next = x.next_header().0;
                            l4 += x.slice().len();
                        }
                        Err(_) if rest.len() >= 2 => {
                            notes.push(Note::ExtPastFrame);
                            next = rest[0];
                            l4 += (rest[1] as usize + 1) * 8;
                        }
                        Err(_) => return Err(Malformed),
                    },
                }
                walked += 1;
            }
            t.proto = next;
            l4
        }
        0x9100 | 0x88e5 => {
            notes.push(Note::LinkNotIp);
            return Ok(Pass);
        }
        t if ETH_VLAN.contains(&t) => {
            notes.push(Note::LinkNotIp);
            return Ok(Pass);
        }
        _ => return Ok(Pass),
    };
    if later {
        return Ok(Later(t));
    }
    let rest = f.get(l4..).unwrap_or(&[]);
    match t.proto {
        proto::TCP => {
            use etherparse::err::tcp::HeaderSliceError;
            let h = match TcpHeaderSlice::from_slice(rest) {
                Ok(h) => h.to_header(),
                Err(HeaderSliceError::Len(_)) if rest.len() >= 20 => {
                    notes.push(Note::TcpOptionsPastFrame);
                    // The fixed header alone, with the options cut off.
                    let mut fixed = rest[..20].to_vec();
                    fixed[12] = 5 << 4 | (fixed[12] & 0x0f);
                    TcpHeaderSlice::from_slice(&fixed).map_err(|_| Malformed)?.to_header()
                }
                Err(_) => return Err(Malformed),
            };
            t.sport = h.source_port;
            t.dport = h.destination_port;
            t.flags = (h.cwr as u8) << 7
                | (h.ece as u8) << 6
                | (h.urg as u8) << 5
                | (h.ack as u8) << 4
                | (h.psh as u8) << 3
                | (h.rst as u8) << 2
                | (h.syn as u8) << 1
                | h.fin as u8;
        }
        proto::UDP => {
            let h = UdpHeaderSlice::from_slice(rest).map_err(|_| Malformed)?;
            t.sport = h.source_port();
            t.dport = h.destination_port();
        }
        proto::SCTP => {
            notes.push(Note::Sctp);
            if rest.len() < 12 {
                return Err(Malformed);
            }
            t.sport = u16::from_be_bytes([rest[0], rest[1]]);
            t.dport = u16::from_be_bytes([rest[2], rest[3]]);
        }
        proto::ICMPV6 => {
            let s = Icmpv6Slice::from_slice(rest).map_err(|_| Malformed)?;
            t.flags = s.type_u8();
            // Neighbour discovery passes only over IPv6; inside IPv4 it is an ordinary
            // protocol-58 packet, judged by policy.
            if proto::is_icmpv6_link_infrastructure(t.flags) && t.family == FAMILY_V6 {
                return Ok(Pass);
            }
            let id = match s.icmp_type() {
                Icmpv6Type::EchoRequest(e) | Icmpv6Type::EchoReply(e) => Some(e.id),
                Icmpv6Type::Unknown { type_u8: 128 | 129, bytes5to8, .. } => {
                    notes.push(Note::EchoCode);
                    Some(u16::from_be_bytes([bytes5to8[0], bytes5to8[1]]))
                }
                _ => None,
            };
            if let Some(id) = id {
                (t.sport, t.dport) = (id, id);
            }
        }
        proto::ICMP => {
            let id = match Icmpv4Slice::from_slice(rest) {
                Ok(s) => {
                    t.flags = s.type_u8();
                    match s.icmp_type() {
                        Icmpv4Type::EchoRequest(e) | Icmpv4Type::EchoReply(e) => Some(e.id),
                        Icmpv4Type::Unknown { type_u8: 0 | 8, bytes5to8, .. } => {
                            notes.push(Note::EchoCode);
                            Some(u16::from_be_bytes([bytes5to8[0], bytes5to8[1]]))
                        }
                        _ => None,
                    }
                }
                Err(_) if rest.len() >= 8 => {
                    // Only timestamps have a stricter length.
                    notes.push(Note::IcmpTimestampLen);
                    t.flags = rest[0];
                    None
                }
                Err(_) => return Err(Malformed),
            };
            if let Some(id) = id {
                (t.sport, t.dport) = (id, id);
            }
        }
        _ => {}
    }
    Ok(Deny(t))
}

/// Cross-check: where etherparse's whole-packet parser takes the frame apart completely
/// (and the kernel's link rules agree), its addresses, protocol and ports must be the
/// reference's. `None` when etherparse does not parse the frame completely; `Some(Err(..))`
/// describes a disagreement.
fn cross_check(f: &[u8], e: &Expect, notes: &[Note]) -> Option<Result<(), String>> {
    let Expect::Deny(t) = e else { return None };
    if notes.iter().any(|n| matches!(n, Note::ExtOrder | Note::LinkNotIp | Note::EchoCode | Note::Ipv4Auth)) {
        return None;
    }
    let p = SlicedPacket::from_ethernet(f).ok()?;
    let (src, dst, family): ([u8; 16], [u8; 16], u8) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (Addr::from_v4(h.source()).bytes, Addr::from_v4(h.destination()).bytes, FAMILY_V4)
        }
        Some(NetSlice::Ipv6(ip)) => (ip.header().source(), ip.header().destination(), FAMILY_V6),
        _ => return None,
    };
    let ports = match &p.transport {
        Some(TransportSlice::Tcp(s)) => (proto::TCP, s.source_port(), s.destination_port()),
        Some(TransportSlice::Udp(s)) => (proto::UDP, s.source_port(), s.destination_port()),
        Some(TransportSlice::Icmpv4(s)) => match s.icmp_type() {
            Icmpv4Type::EchoRequest(e) | Icmpv4Type::EchoReply(e) => (proto::ICMP, e.id, e.id),
            _ => (proto::ICMP, 0, 0),
        },
        Some(TransportSlice::Icmpv6(s)) => match s.icmp_type() {
            Icmpv6Type::EchoRequest(e) | Icmpv6Type::EchoReply(e) => (proto::ICMPV6, e.id, e.id),
            _ => (proto::ICMPV6, 0, 0),
        },
        _ => return None,
    };
    let theirs = (family, src, dst, ports);
    let ours = (t.family, t.src, t.dst, (t.proto, t.sport, t.dport));
    Some(if theirs == ours { Ok(()) } else { Err(format!("etherparse says {theirs:?}, reference {ours:?}")) })
}

/// The tuple of an IPv6 neighbour discovery frame the reference passes (for the fragment
/// key), by re-running the reference with the ND types disguised.
fn nd_tuple(f: &[u8]) -> Option<Tuple> {
    // The key needs only family, addresses and protocol: take them from a copy whose
    // ICMPv6 type is not link infrastructure.
    for at in 0..f.len() {
        let mut g = f.to_vec();
        if proto::is_icmpv6_link_infrastructure(g[at]) {
            g[at] = 1;
            let mut fi = FragInfo::default();
            if let Expect::Deny(t) = reference_frag(&g, &mut Vec::new(), &mut fi)
                && t.proto == proto::ICMPV6
                && t.flags == 1
            {
                return Some(t);
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Running

fn hex(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Copy)]
enum Prog {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Prog {
    fn name(self) -> &'static str {
        match self {
            Prog::Xdp => "xdp",
            Prog::TcIngress => "tc-ingress",
            Prog::TcEgress => "tc-egress",
        }
    }
}

/// BPF_PROG_TEST_RUN for skb programs refuses (EINVAL) an untagged IPv4/IPv6 frame whose IP
/// header is cut short: the test harness itself reads the header before the program runs.
/// XDP runs those frames.
fn tc_test_run_refuses(f: &[u8]) -> bool {
    let et = u16::from_be_bytes([f[12], f[13]]);
    (et == ETH_IP4 && f.len() < 14 + 20) || (et == ETH_IP6 && f.len() < 14 + 40)
}

/// A run that must produce (or may produce, for later fragments) an event.
struct Pending {
    frame: usize,
    prog: Prog,
    /// `None`: a mismatch already reported; the kernel dropped, so skip its one event.
    expect: Option<Expect>,
    /// The event may be missing (a later fragment that followed its first fragment).
    optional: bool,
}

#[derive(Default)]
struct Tally {
    frames: u64,
    runs: u64,
    by_expect: BTreeMap<&'static str, u64>,
    notes: BTreeMap<String, u64>,
    cross_checked: u64,
    silent_later: u64,
    known_bug_hits: BTreeMap<String, u64>,
    /// Inputs BPF_PROG_TEST_RUN refuses before running the program, by program and error.
    refused: BTreeMap<String, u64>,
    problems: Vec<String>,
}

fn event_tuple(e: &FlowEvent) -> Tuple {
    Tuple {
        family: e.family,
        src: e.src.bytes,
        dst: e.dst.bytes,
        sport: e.src_port,
        dport: e.dst_port,
        proto: e.proto,
        len: e.bytes as u32,
        flags: e.tcp_flags,
    }
}

/// Matches the drained events against the pending expectations, in order.
fn settle(fx: &mut Fixture, pending: &mut Vec<Pending>, frames: &[Vec<u8>], t: &mut Tally) {
    let events = fx.events();
    let mut ev = events.iter().peekable();
    for p in pending.drain(..) {
        let frame = &frames[p.frame];
        let dir = if matches!(p.prog, Prog::TcEgress) { DIR_EGRESS } else { DIR_INGRESS };
        let (want_reason, want_tuple) = match p.expect {
            Some(Expect::Deny(tu)) => (DEFAULT_DENY, tu),
            Some(Expect::Malformed) => (MALFORMED, Tuple::default()),
            Some(Expect::Later(tu)) => (FRAGMENT_UNKNOWN, tu),
            Some(Expect::Pass) => unreachable!(),
            None => {
                // The kernel may have dropped a later fragment silently.
                if ev.peek().is_some_and(|e| e.direction == dir) {
                    ev.next();
                }
                continue;
            }
        };
        let matches = |e: &FlowEvent| {
            e.kind == KIND_DENY
                && e.verdict == VERDICT_DENIED
                && e.reason == want_reason
                && e.direction == dir
                && event_tuple(e) == want_tuple
        };
        if p.optional {
            if ev.peek().is_some_and(|e| matches(e)) {
                ev.next();
            } else {
                t.silent_later += 1;
            }
            continue;
        }
        match ev.next() {
            Some(e) if matches(e) => {}
            got => {
                t.problems.push(format!(
                    "{} frame {} expected reason {} {:?}, got {:?}",
                    p.prog.name(),
                    hex(frame),
                    reason_name(want_reason),
                    want_tuple,
                    got.map(|e| (reason_name(e.reason), e.direction, event_tuple(e)))
                ));
                // The rest of this batch is out of step; drop it.
                return;
            }
        }
    }
    if let Some(e) = ev.next() {
        t.problems.push(format!("unexpected event {:?} ({})", event_tuple(e), reason_name(e.reason)));
    }
}

/// Runs one program on `frame`; `Err` when BPF_PROG_TEST_RUN itself refuses the input
/// (before the program runs).
fn run(fx: &mut Fixture, frame: &[u8], prog: Prog) -> Result<u32, String> {
    use aya::programs::{TestRun, TestRunOptions};
    let opts = TestRunOptions { data_in: Some(frame), ..Default::default() };
    let out = match prog {
        Prog::Xdp => fx.dp.xdp_ingress().unwrap().test_run(opts),
        Prog::TcIngress => fx.dp.tc_ingress().unwrap().test_run(opts),
        Prog::TcEgress => fx.dp.tc_egress().unwrap().test_run(opts),
    };
    out.map(|o| o.return_value).map_err(|e| format!("{e}"))
}

fn deny_all() -> Fixture {
    let deny = verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE);
    let tables = TablesBuilder::new().any(DIR_INGRESS, ANY, ANY, deny).any(DIR_EGRESS, ANY, ANY, deny).build();
    let mut fx = Fixture::with(&tables);
    fx.config(|c| c.deny_events_per_sec = 0);
    fx
}

#[test]
fn kernel_parser_agrees_with_etherparse_on_random_and_mutated_frames() {
    if !privileged() {
        return;
    }
    let seed = env_u64("ZT_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    // CI: a million frames take ~15 s here (~80k frames/s, three program runs each); on a
    // slower or busier machine the 20 s budget ends the run, but never before 200,000.
    let max = env_u64("ZT_FUZZ_FRAMES").unwrap_or(1_000_000);
    let budget = Duration::from_secs(env_u64("ZT_FUZZ_SECONDS").unwrap_or(20));
    const MIN_FRAMES: u64 = 200_000;
    println!("datapath fuzz: seed {seed} (replay with ZT_FUZZ_SEED={seed}), {max} frames, budget {budget:?}");
    let mut r = Rng(seed);
    let mut fx = deny_all();
    let mut t = Tally::default();
    let start = Instant::now();
    let mut last_report = Instant::now();
    // Frames of the current batch, and the events they must produce. The ring holds ~35k
    // events; a batch of 2,000 frames makes at most 6,000.
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    // Bare SYNs denied by policy, by tuple and hook direction, with when (see `denied`).
    let mut recent_syn_denials: std::collections::HashMap<_, Instant> = std::collections::HashMap::new();
    let mut queue: Vec<Vec<u8>> = Vec::new();
    // First fragments the kernel saw (verdict pass?, when). The kernel follows them for
    // FRAGMENT_TIMEOUT_NS (30 s); entries well past that are pruned, since the kernel then
    // reports fragment-unknown again, which the strict expectation wants.
    let mut fragments: std::collections::HashMap<FragKey, (bool, Instant)> = Default::default();
    let debug = std::env::var("ZT_FUZZ_DEBUG").is_ok();
    let mut history: std::collections::HashMap<([u8; 16], [u8; 16], u32), Vec<String>> = Default::default();
    while t.frames < max && (t.frames < MIN_FRAMES.min(max) || start.elapsed() < budget) && t.problems.len() < 20 {
        if queue.is_empty() {
            match r.below(100) {
                0..=4 => queue.push(garbage(&mut r)),
                5..=24 => queue.push(gen_frame(&mut r).0),
                25 => {
                    // Truncation at every length.
                    let (f, _) = gen_frame(&mut r);
                    for n in (14..f.len()).rev() {
                        queue.push(f[..n].to_vec());
                    }
                }
                _ => {
                    let (mut f, lay) = gen_frame(&mut r);
                    mutate(&mut r, &mut f, &lay);
                    queue.push(f);
                }
            }
        }
        let frame = queue.pop().unwrap();
        // BPF_PROG_TEST_RUN needs an Ethernet header's worth of data.
        if frame.len() < 14 {
            continue;
        }
        t.frames += 1;
        let mut notes = Vec::new();
        let mut fi = FragInfo::default();
        let expect = reference_frag(&frame, &mut notes, &mut fi);
        notes.sort();
        notes.dedup();
        // A later fragment of a datagram whose first fragment the kernel saw follows that
        // verdict (silently), unless the entry was evicted (LRU) or expired: then it is
        // fragment-unknown. Either is accepted then; otherwise fragment-unknown is required.
        if debug {
            if let Expect::Deny(tu) | Expect::Later(tu) = expect {
                history.entry((tu.src, tu.dst, fi.id)).or_default().push(format!(
                    "{expect:?} first={} {}",
                    fi.first,
                    hex(&frame)
                ));
            }
            if let Expect::Later(tu) = expect
                && !fragments.contains_key(&frag_key(&tu, &fi))
                && let Some(h) = history.get(&(tu.src, tu.dst, fi.id))
                && h.len() > 1
            {
                println!("later fragment {} shares src/dst/id with:\n  {}", hex(&frame), h.join("\n  "));
            }
        }
        let remembered = match expect {
            Expect::Later(tu) => fragments.get(&frag_key(&tu, &fi)).map(|(pass, _)| *pass),
            _ => None,
        };
        match expect {
            Expect::Deny(tu) if fi.first => {
                fragments.insert(frag_key(&tu, &fi), (false, Instant::now()));
            }
            Expect::Pass if fi.first => {
                // Only IP frames get here with fi.first set: ND first fragments pass.
                if let Some(tu) = nd_tuple(&frame) {
                    fragments.insert(frag_key(&tu, &fi), (true, Instant::now()));
                }
            }
            _ => {}
        }
        for n in &notes {
            *t.notes.entry(format!("{n:?}")).or_default() += 1;
        }
        *t.by_expect
            .entry(match expect {
                Expect::Pass => "pass",
                Expect::Malformed => "malformed",
                Expect::Deny(_) => "deny",
                Expect::Later(_) => "later-fragment",
            })
            .or_default() += 1;
        match cross_check(&frame, &expect, &notes) {
            Some(Err(d)) => t.problems.push(format!("reference disagrees with SlicedPacket on {}: {d}", hex(&frame))),
            Some(Ok(())) => t.cross_checked += 1,
            None => {}
        }
        if remembered.is_some() {
            // Whether the kernel reports this frame is open, and events carry no fragment
            // id to tell it from another datagram's: settle it on its own.
            settle(&mut fx, &mut pending, &frames, &mut t);
            frames.clear();
        }
        let idx = frames.len();
        // A bare SYN that policy denied is remembered (zt_common::denied): a repeat of its
        // tuple at the same hook direction within a second — a SYN, or any other packet
        // of the tuple (no flow is tracked here) — is dropped and counted without an event.
        // (Other denials are remembered only once their source floods, which never happens
        // with the unlimited deny events of this run.)
        let denied = match expect {
            Expect::Deny(tu) => Some((
                (tu.family, tu.src, tu.dst, tu.sport, tu.dport, tu.proto),
                tu.proto == 6 && tu.flags & 0x12 == 0x02,
            )),
            _ => None,
        };
        for prog in [Prog::Xdp, Prog::TcIngress, Prog::TcEgress] {
            t.runs += 1;
            let rc = match run(&mut fx, &frame, prog) {
                Ok(rc) => rc,
                Err(e) => {
                    if matches!(prog, Prog::Xdp) || !tc_test_run_refuses(&frame) {
                        t.problems.push(format!("BPF_PROG_TEST_RUN refused {} on {}: {e}", prog.name(), hex(&frame)));
                    }
                    *t.refused.entry(prog.name().to_string()).or_default() += 1;
                    continue;
                }
            };
            let (pass, drop) = match prog {
                Prog::Xdp => (XDP_PASS, XDP_DROP),
                _ => (TC_ACT_OK, TC_ACT_SHOT),
            };
            if rc != pass && rc != drop {
                t.problems.push(format!(
                    "return code {rc} (neither PASS nor DROP) from {} on {}",
                    prog.name(),
                    hex(&frame)
                ));
                pending.push(Pending { frame: idx, prog, expect: None, optional: true });
                continue;
            }
            let want = if expect == Expect::Pass { pass } else { drop };
            if remembered.is_some() && (rc == pass || rc == drop) {
                // Follows the first fragment (pass or drop, no event), or fragment-unknown.
                if rc == drop {
                    pending.push(Pending { frame: idx, prog, expect: Some(expect), optional: true });
                }
                continue;
            }
            if rc != want {
                t.problems.push(format!(
                    "{} returned {rc}, reference expects {expect:?} ({notes:?}) for {}",
                    prog.name(),
                    hex(&frame)
                ));
                if rc == drop {
                    pending.push(Pending { frame: idx, prog, expect: None, optional: true });
                }
                continue;
            }
            if expect != Expect::Pass {
                let dir = if matches!(prog, Prog::TcEgress) { DIR_EGRESS } else { DIR_INGRESS };
                // The kernel reports a remembered tuple at most once a second, counted from its
                // last report; within two seconds of the tuple's last denial either is right.
                let repeated = denied.is_some_and(|(key, bare_syn)| {
                    let last = recent_syn_denials.get(&(key, dir)).copied();
                    let seen = last.is_some_and(|at: Instant| at.elapsed() < Duration::from_secs(2));
                    if bare_syn || last.is_some() {
                        recent_syn_denials.insert((key, dir), Instant::now());
                    }
                    seen
                });
                pending.push(Pending { frame: idx, prog, expect: Some(expect), optional: repeated });
            }
        }
        frames.push(frame);
        if frames.len() >= 2_000 || remembered.is_some() {
            settle(&mut fx, &mut pending, &frames, &mut t);
            frames.clear();
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            fragments.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(35));
            println!(
                "datapath fuzz: {} frames, {:.0} frames/s",
                t.frames,
                t.frames as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    settle(&mut fx, &mut pending, &frames, &mut t);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "datapath fuzz: {} frames ({} program runs) in {secs:.1}s: {:.0} frames/s; expected {:?}; \
         {} cross-checked against SlicedPacket; {} later fragments followed an earlier first fragment",
        t.frames,
        t.runs,
        t.frames as f64 / secs,
        t.by_expect,
        t.cross_checked,
        t.silent_later
    );
    println!("datapath fuzz: documented classes seen: {:?}", t.notes);
    println!("datapath fuzz: known bugs hit: {:?}", t.known_bug_hits);
    println!("datapath fuzz: inputs BPF_PROG_TEST_RUN refused: {:?}", t.refused);
    assert!(t.problems.is_empty(), "seed {seed}: {} problems:\n{}", t.problems.len(), t.problems.join("\n"));
}

/// Replays single frames: `ZT_FUZZ_HEX=<hex>[,<hex>...] cargo test --test fuzz_datapath
/// replay -- --nocapture` prints what each program and the reference make of them.
#[test]
fn replay() {
    let Ok(frames) = std::env::var("ZT_FUZZ_HEX") else { return };
    if !privileged() {
        return;
    }
    let mut fx = deny_all();
    for h in frames.split(',') {
        let f: Vec<u8> = (0..h.len() / 2).map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap()).collect();
        let mut notes = Vec::new();
        println!("frame {h}\n  reference: {:?} {notes:?}", reference(&f, &mut notes));
        for prog in [Prog::Xdp, Prog::TcIngress, Prog::TcEgress] {
            let rc = run(&mut fx, &f, prog);
            let ev: Vec<_> = fx.events().iter().map(|e| (reason_name(e.reason), event_tuple(e))).collect();
            println!("  {}: {rc:?} {ev:?}", prog.name());
        }
    }
}
