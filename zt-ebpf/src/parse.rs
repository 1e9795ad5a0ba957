//! Header parsing: Ethernet (with up to two 802.1Q/802.1ad tags), IPv4 (options,
//! fragments), IPv6 (bounded extension-header walk, fragments), TCP, UDP, SCTP, ICMP and
//! ICMPv6 — including the packet embedded in ICMP errors, so errors about a tracked flow can
//! be matched to it.
//!
//! The parser works on raw `[data, data_end)` bounds so the XDP and TC entry points share it,
//! and writes into a `Packet` that lives in a per-CPU scratch map: the 512-byte BPF stack
//! cannot hold it next to the decision core's keys. Every read is preceded by its own bounds
//! check against `data_end` (the verifier wants the check next to the access), headers are
//! read field by field rather than copied whole, and every variable offset is bounded.

use zt_common::{
    addr::{Addr, FAMILY_V4, FAMILY_V6},
    conntrack::CtKey,
    proto,
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;

/// IPv6 extension headers the walk steps over.
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;
/// Walk at most this many extension headers; more is treated as malformed (an attacker
/// could otherwise push the transport header out of reach of any bounded parser). Exactly
/// this many are accepted.
pub const MAX_EXT_HEADERS: usize = 6;

/// Fragment position of the packet.
pub const FRAG_NONE: u8 = 0;
/// First fragment: carries the transport header.
pub const FRAG_FIRST: u8 = 1;
/// Later fragment: no transport header; follows the first fragment's verdict.
pub const FRAG_LATER: u8 = 2;

pub enum ParseError {
    /// Not IP (ARP, LLDP, ...).
    NonIp,
    /// The headers are invalid.
    Malformed,
    /// The headers run past the readable data; on TC the linear area may just be short, so
    /// the caller may pull more data and retry. Otherwise it is malformed.
    Truncated,
}

/// What the decision core needs to know about a packet.
pub struct Packet {
    /// Transport tuple (ports in host order; ICMP echo: identifier as both ports).
    pub tuple: CtKey,
    /// `tuple` reversed; the key conntrack stores the packet's flow under
    /// (`CtKey::canonical`: `tuple` or `flipped`), and whether it is `flipped`. Filled by
    /// [`Packet::orient`]; kept here, in the per-CPU scratch, rather than copied onto the
    /// 512-byte stack at each use, and `stored` a field of its own so that every use reads
    /// one fixed offset (a pointer to one of two fields made the verifier walk the rest of
    /// the program once per field: the agent took 0.35 s longer to start).
    pub flipped: CtKey,
    pub stored: CtKey,
    pub reverse: bool,
    /// The flow an ICMP error refers to (the embedded packet's tuple), if `has_related`.
    pub related: CtKey,
    /// Bytes of the IP packet (header included), for counters.
    pub len: u32,
    pub frag_id: u32,
    /// TCP flags, or the ICMP type.
    pub flags: u8,
    pub frag: u8,
    pub has_related: bool,
    /// ICMP echo request: the only ICMP that opens a tracked flow.
    pub opens_icmp_flow: bool,
    /// IPv6 neighbour or multicast listener discovery.
    pub link_infrastructure: bool,
}

const EMPTY_KEY: CtKey = CtKey {
    src: Addr { bytes: [0; 16] },
    dst: Addr { bytes: [0; 16] },
    src_port: 0,
    dst_port: 0,
    proto: 0,
    family: 0,
    _pad: [0; 2],
};

impl Packet {
    /// A packet about which nothing is known yet (and, if parsing fails, nothing is
    /// reported beyond "malformed").
    pub const EMPTY: Packet = Packet {
        tuple: EMPTY_KEY,
        flipped: EMPTY_KEY,
        stored: EMPTY_KEY,
        reverse: false,
        related: EMPTY_KEY,
        len: 0,
        frag_id: 0,
        flags: 0,
        frag: FRAG_NONE,
        has_related: false,
        opens_icmp_flow: false,
        link_infrastructure: false,
    };
}

impl Packet {
    /// Prepares the scratch packet for a new frame: clears every field `parse` does not
    /// always write. Cheaper than storing all of `EMPTY` on every packet — addresses, family
    /// and protocol are always written for IP, and `related` is read only when
    /// `has_related` says so.
    #[inline(always)]
    pub fn reset(&mut self) {
        self.tuple.src_port = 0;
        self.tuple.dst_port = 0;
        self.tuple._pad = [0; 2];
        self.len = 0;
        self.frag_id = 0;
        self.flags = 0;
        self.frag = FRAG_NONE;
        self.has_related = false;
        self.opens_icmp_flow = false;
        self.link_infrastructure = false;
    }

    /// Fills `flipped`, `stored` and `reverse` from the parsed tuple.
    #[inline(always)]
    pub fn orient(&mut self) {
        self.flipped = self.tuple.reversed();
        self.reverse = self.tuple.is_reverse();
        self.stored = if self.reverse { self.flipped } else { self.tuple };
    }
}

/// A bounds-checked header: `len` readable bytes at `data + off`. Fields are read only
/// through the checked pointer, at constant offsets: the verifier gives a packet pointer a
/// readable range only after its own comparison with `data_end`, and a pointer recomputed
/// from `data + off` (as LLVM likes to re-associate) would have none.
#[derive(Clone, Copy)]
pub(crate) struct Hdr(usize);

#[inline(always)]
pub(crate) fn hdr(data: usize, data_end: usize, off: usize, len: usize) -> Result<Hdr, ParseError> {
    let p = data + off;
    if p + len > data_end {
        return Err(ParseError::Truncated);
    }
    Ok(Hdr(p))
}

impl Hdr {
    /// Reads a field at a constant offset inside the checked length.
    #[inline(always)]
    pub(crate) fn get<T: Copy>(self, off: usize) -> T {
        // SAFETY: callers read only within the length `hdr` checked; packet data has no
        // alignment guarantee.
        unsafe { core::ptr::read_unaligned((self.0 + off) as *const T) }
    }

    #[inline(always)]
    pub(crate) fn be16(self, off: usize) -> u16 {
        u16::from_be(self.get::<u16>(off))
    }

    #[inline(always)]
    pub(crate) fn addr4(self, off: usize) -> Addr {
        Addr::from_v4(self.get::<[u8; 4]>(off))
    }

    /// An IPv6 address, read as four words: a 16-byte copy from the packet is a call to
    /// `memcpy`, which copies byte by byte.
    #[inline(always)]
    pub(crate) fn addr16(self, off: usize) -> Addr {
        let word = |at: usize| u32::from_ne_bytes(self.get::<[u8; 4]>(off + at));
        Addr::from_words([word(0), word(4), word(8), word(12)])
    }
}

/// Parses one packet starting at its Ethernet header into `pkt` (which must have been
/// `reset`). Inlined into each entry point: it keeps little on the stack, and the call
/// with its spills and the `Result` passed back cost about 8 ns per packet.
#[inline(always)]
pub fn parse(data: usize, data_end: usize, pkt: &mut Packet) -> Result<(), ParseError> {
    let eth = hdr(data, data_end, 0, ETH_HLEN)?;
    let mut ethertype = eth.be16(12);
    let mut off = ETH_HLEN;
    // Up to two VLAN tags (802.1ad outer, 802.1Q inner).
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = hdr(data, data_end, off, 4)?.be16(2);
        off += 4;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            ethertype = hdr(data, data_end, off, 4)?.be16(2);
            off += 4;
        }
    }
    let l4 = match ethertype {
        ETH_P_IP => parse_ipv4(data, data_end, off, pkt)?,
        ETH_P_IPV6 => parse_ipv6(data, data_end, off, pkt)?,
        _ => return Err(ParseError::NonIp),
    };
    if pkt.frag == FRAG_LATER {
        return Ok(());
    }
    parse_l4(data, data_end, l4, pkt)
}

/// Parses the IPv4 header; returns the transport header offset.
#[inline(always)]
fn parse_ipv4(data: usize, data_end: usize, off: usize, pkt: &mut Packet) -> Result<usize, ParseError> {
    let ip = hdr(data, data_end, off, IPV4_MIN_HLEN)?;
    let ver_ihl: u8 = ip.get(0);
    let tot_len = ip.be16(2) as usize;
    let frag_off = ip.be16(6);
    pkt.frag_id = ip.be16(4) as u32;
    pkt.tuple.proto = ip.get(9);
    pkt.tuple.src = ip.addr4(12);
    pkt.tuple.dst = ip.addr4(16);
    pkt.tuple.family = FAMILY_V4;
    if ver_ihl >> 4 != 4 {
        return Err(ParseError::Malformed);
    }
    // Bounded by the 4-bit field: at most 60 bytes.
    let ihl = ((ver_ihl & 0x0f) as usize) * 4;
    if ihl < IPV4_MIN_HLEN || tot_len < ihl {
        return Err(ParseError::Malformed);
    }
    pkt.frag = if frag_off & 0x1fff != 0 {
        FRAG_LATER
    } else if frag_off & 0x2000 != 0 {
        FRAG_FIRST
    } else {
        FRAG_NONE
    };
    pkt.len = tot_len as u32;
    // The options must be present in full.
    hdr(data, data_end, off, ihl)?;
    Ok(off + ihl)
}

/// Parses the IPv6 header and walks its extension headers; returns the transport header
/// offset.
#[inline(always)]
fn parse_ipv6(data: usize, data_end: usize, off: usize, pkt: &mut Packet) -> Result<usize, ParseError> {
    let ip = hdr(data, data_end, off, IPV6_HLEN)?;
    let ver: u8 = ip.get(0);
    pkt.len = ip.be16(4) as u32 + IPV6_HLEN as u32;
    pkt.tuple.family = FAMILY_V6;
    pkt.tuple.src = ip.addr16(8);
    pkt.tuple.dst = ip.addr16(24);
    let mut next: u8 = ip.get(6);
    if ver >> 4 != 6 {
        return Err(ParseError::Malformed);
    }
    let mut l4 = off + IPV6_HLEN;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let ext = hdr(data, data_end, l4, 2)?;
                next = ext.get(0);
                // (len + 1) * 8 bytes, at most 2048: keeps the offset bounded.
                l4 += (ext.get::<u8>(1) as usize + 1) * 8;
            }
            NEXTHDR_AUTH => {
                let ext = hdr(data, data_end, l4, 2)?;
                next = ext.get(0);
                l4 += (ext.get::<u8>(1) as usize + 2) * 4;
            }
            NEXTHDR_FRAGMENT => {
                let ext = hdr(data, data_end, l4, 8)?;
                next = ext.get(0);
                let offset_flags = ext.be16(2);
                pkt.frag_id = u32::from_be(ext.get::<u32>(4));
                pkt.frag = if offset_flags & 0xfff8 != 0 {
                    FRAG_LATER
                } else if offset_flags & 1 != 0 {
                    FRAG_FIRST
                } else {
                    // An atomic fragment (offset 0, no more fragments) is a whole packet.
                    FRAG_NONE
                };
                l4 += 8;
            }
            _ => {
                pkt.tuple.proto = next;
                return Ok(l4);
            }
        }
    }
    // Six extension headers walked: what follows must be the transport header.
    if matches!(next, NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT) {
        return Err(ParseError::Malformed);
    }
    pkt.tuple.proto = next;
    Ok(l4)
}

#[inline(always)]
fn parse_l4(data: usize, data_end: usize, off: usize, pkt: &mut Packet) -> Result<(), ParseError> {
    match pkt.tuple.proto {
        proto::TCP => {
            // The whole minimal header must be there, not just the ports.
            let tcp = hdr(data, data_end, off, 20)?;
            if tcp.get::<u8>(12) >> 4 < 5 {
                return Err(ParseError::Malformed);
            }
            pkt.tuple.src_port = tcp.be16(0);
            pkt.tuple.dst_port = tcp.be16(2);
            pkt.flags = tcp.get(13);
        }
        proto::UDP => {
            let udp = hdr(data, data_end, off, 8)?;
            pkt.tuple.src_port = udp.be16(0);
            pkt.tuple.dst_port = udp.be16(2);
        }
        proto::SCTP => {
            // Common header: ports, verification tag, checksum.
            let sctp = hdr(data, data_end, off, 12)?;
            pkt.tuple.src_port = sctp.be16(0);
            pkt.tuple.dst_port = sctp.be16(2);
        }
        proto::ICMP | proto::ICMPV6 => {
            let icmp = hdr(data, data_end, off, 8)?;
            let ty: u8 = icmp.get(0);
            pkt.flags = ty;
            let v6 = pkt.tuple.proto == proto::ICMPV6;
            let (echo_req, echo_rep) = if v6 {
                (proto::ICMPV6_ECHO_REQUEST, proto::ICMPV6_ECHO_REPLY)
            } else {
                (proto::ICMP_ECHO_REQUEST, proto::ICMP_ECHO_REPLY)
            };
            // Only IPv6 carries neighbour discovery; protocol 58 inside IPv4 is judged
            // by policy like any other packet.
            if v6 && pkt.tuple.family == FAMILY_V6 && proto::is_icmpv6_link_infrastructure(ty) {
                pkt.link_infrastructure = true;
            } else if ty == echo_req || ty == echo_rep {
                let id = icmp.be16(4);
                pkt.tuple.src_port = id;
                pkt.tuple.dst_port = id;
                pkt.opens_icmp_flow = ty == echo_req;
            } else if is_icmp_error(ty, v6) {
                // An error carries at least the offending packet's IP header and the first
                // 8 bytes of its transport header; less means it refers to nothing we track.
                pkt.has_related = if v6 {
                    inner_ipv6(data, data_end, off + 8, &mut pkt.related).is_ok()
                } else {
                    inner_ipv4(data, data_end, off + 8, &mut pkt.related).is_ok()
                };
            }
        }
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn is_icmp_error(ty: u8, v6: bool) -> bool {
    if v6 {
        matches!(
            ty,
            proto::ICMPV6_DEST_UNREACH
                | proto::ICMPV6_PACKET_TOO_BIG
                | proto::ICMPV6_TIME_EXCEEDED
                | proto::ICMPV6_PARAM_PROBLEM
        )
    } else {
        matches!(ty, proto::ICMP_DEST_UNREACH | proto::ICMP_TIME_EXCEEDED | proto::ICMP_PARAM_PROBLEM)
    }
}

/// Ports of the packet embedded in an ICMP error (its first 8 transport bytes).
#[inline(always)]
fn inner_ports(data: usize, data_end: usize, off: usize, key: &mut CtKey) -> Result<(), ParseError> {
    let l4 = hdr(data, data_end, off, 8)?;
    match key.proto {
        proto::TCP | proto::UDP | proto::SCTP => {
            key.src_port = l4.be16(0);
            key.dst_port = l4.be16(2);
        }
        proto::ICMP | proto::ICMPV6 => {
            let id = l4.be16(4);
            key.src_port = id;
            key.dst_port = id;
        }
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn inner_ipv4(data: usize, data_end: usize, off: usize, key: &mut CtKey) -> Result<(), ParseError> {
    let ip = hdr(data, data_end, off, IPV4_MIN_HLEN)?;
    let ver_ihl: u8 = ip.get(0);
    key.family = FAMILY_V4;
    key.proto = ip.get(9);
    key.src = ip.addr4(12);
    key.dst = ip.addr4(16);
    let ihl = ((ver_ihl & 0x0f) as usize) * 4;
    if ver_ihl >> 4 != 4 || ihl < IPV4_MIN_HLEN {
        return Err(ParseError::Malformed);
    }
    inner_ports(data, data_end, off + ihl, key)
}

#[inline(always)]
fn inner_ipv6(data: usize, data_end: usize, off: usize, key: &mut CtKey) -> Result<(), ParseError> {
    let ip = hdr(data, data_end, off, IPV6_HLEN)?;
    key.family = FAMILY_V6;
    key.proto = ip.get(6);
    key.src = ip.addr16(8);
    key.dst = ip.addr16(24);
    inner_ports(data, data_end, off + IPV6_HLEN, key)
}
