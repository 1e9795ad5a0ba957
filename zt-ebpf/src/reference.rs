//! The physical-limit reference for benchmarks: the least any stateful filter must do per
//! packet — parse Ethernet, IPv4 or IPv6 and the transport ports, and look the 5-tuple up
//! in a hash table as large as CONNTRACK — and nothing else. `cargo xtask bench` reports
//! every datapath case as a ratio to it; it is never attached.

use zt_common::{
    addr::{Addr, FAMILY_V4, FAMILY_V6},
    conntrack::CtKey,
    proto,
};

use crate::{
    maps::REFERENCE_FLOWS,
    parse::{ParseError, hdr},
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;

/// Parses the 5-tuple and looks it up; `Err` for frames it cannot parse. A hit or a miss
/// costs the same work for the comparison.
#[inline(always)]
pub fn lookup(data: usize, data_end: usize) -> Result<bool, ParseError> {
    let eth = hdr(data, data_end, 0, ETH_HLEN)?;
    let mut key = CtKey {
        src: Addr::default(),
        dst: Addr::default(),
        src_port: 0,
        dst_port: 0,
        proto: 0,
        family: 0,
        _pad: [0; 2],
    };
    let l4 = match eth.be16(12) {
        ETH_P_IP => {
            let ip = hdr(data, data_end, ETH_HLEN, 20)?;
            let ihl = ((ip.get::<u8>(0) & 0x0f) as usize) * 4;
            key.proto = ip.get(9);
            key.src = ip.addr4(12);
            key.dst = ip.addr4(16);
            key.family = FAMILY_V4;
            ETH_HLEN + ihl
        }
        ETH_P_IPV6 => {
            let ip = hdr(data, data_end, ETH_HLEN, 40)?;
            key.proto = ip.get(6);
            key.src = ip.addr16(8);
            key.dst = ip.addr16(24);
            key.family = FAMILY_V6;
            ETH_HLEN + 40
        }
        _ => return Err(ParseError::NonIp),
    };
    if key.proto == proto::TCP || key.proto == proto::UDP {
        // Bounded: the IPv4 header length is at most 60 bytes.
        if l4 > ETH_HLEN + 60 {
            return Err(ParseError::Malformed);
        }
        let ports = hdr(data, data_end, l4, 4)?;
        key.src_port = ports.be16(0);
        key.dst_port = ports.be16(2);
    }
    // SAFETY: read-only use of the value.
    Ok(unsafe { REFERENCE_FLOWS.get(&key) }.is_some())
}
