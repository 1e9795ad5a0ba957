//! IP protocol numbers and TCP flag bits the datapath inspects.

pub const ICMP: u8 = 1;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// ICMP (v4) types.
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAM_PROBLEM: u8 = 12;
/// ICMPv6 types.
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
pub const ICMPV6_PARAM_PROBLEM: u8 = 4;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

/// ICMPv6 types of neighbour discovery (router/neighbour solicitation and advertisement,
/// redirect) and multicast listener discovery (query, report, done, v2 report).
pub const fn is_icmpv6_link_infrastructure(ty: u8) -> bool {
    matches!(ty, 130..=137 | 143)
}

/// Upper-case protocol name as flow logs and policies spell it, or `None` for others.
pub const fn name(proto: u8) -> Option<&'static str> {
    match proto {
        TCP => Some("TCP"),
        UDP => Some("UDP"),
        SCTP => Some("SCTP"),
        ICMP => Some("ICMP"),
        ICMPV6 => Some("ICMPv6"),
        _ => None,
    }
}

/// True for protocols whose policy keys carry a destination port.
pub const fn has_ports(proto: u8) -> bool {
    matches!(proto, TCP | UDP | SCTP)
}
