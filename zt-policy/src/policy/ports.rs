//! Protocol/port blocks: the part of a POLICY key that longest-prefix matching works on.
//!
//! The POLICY map is an LPM trie whose key ends in `protocol (8 bits) | port (16 bits)`, so
//! what one key can match is a *block*: every protocol (prefix stops before the protocol),
//! every port of one protocol, or an aligned power-of-two run of ports (`port/len`, like an
//! address prefix). A port range in policy becomes the few aligned blocks that tile it.
//! Blocks form a tree under containment: two blocks are either nested or disjoint, which is
//! what lets the compiler close its key set under intersection cheaply.

use zt_common::policy::{PREFIX_ANY_PROTO, PREFIX_PROTO};

/// Bits in a port.
pub const PORT_BITS: u8 = 16;

/// A set of (protocol, port) pairs that one LPM key matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortBlock {
    /// `None`: every protocol (and then `port` and `prefix_len` are 0).
    pub proto: Option<u8>,
    /// First port of the block; the bits below `prefix_len` are zero.
    pub port: u16,
    /// Leading port bits that must match: 0 = every port, 16 = exactly `port`.
    pub prefix_len: u8,
}

impl PortBlock {
    /// Every protocol and port.
    pub const ANY: PortBlock = PortBlock { proto: None, port: 0, prefix_len: 0 };

    /// Every port of one protocol (and the only block for protocols without ports).
    pub const fn protocol(proto: u8) -> Self {
        Self { proto: Some(proto), port: 0, prefix_len: 0 }
    }

    /// Exactly one port.
    pub const fn exact(proto: u8, port: u16) -> Self {
        Self { proto: Some(proto), port, prefix_len: PORT_BITS }
    }

    /// The block `port/prefix_len` of `proto`; bits below the prefix are cleared.
    pub fn new(proto: u8, port: u16, prefix_len: u8) -> Self {
        let prefix_len = prefix_len.min(PORT_BITS);
        Self { proto: Some(proto), port: port & port_mask(prefix_len), prefix_len }
    }

    /// True when a packet with this protocol and destination port falls in the block.
    pub fn covers(&self, proto: u8, port: u16) -> bool {
        match self.proto {
            None => true,
            Some(p) => p == proto && port & port_mask(self.prefix_len) == self.port,
        }
    }

    /// True when every (protocol, port) of `other` is also in `self`.
    pub fn contains(&self, other: &PortBlock) -> bool {
        match (self.proto, other.proto) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => {
                a == b && self.prefix_len <= other.prefix_len && other.port & port_mask(self.prefix_len) == self.port
            }
        }
    }

    /// The intersection: the narrower block when nested, `None` when disjoint.
    pub fn intersect(&self, other: &PortBlock) -> Option<PortBlock> {
        if self.contains(other) {
            Some(*other)
        } else if other.contains(self) {
            Some(*self)
        } else {
            None
        }
    }

    /// The LPM prefix length of a POLICY key ending in this block.
    pub fn lpm_prefix_len(&self) -> u32 {
        match self.proto {
            None => PREFIX_ANY_PROTO,
            Some(_) => PREFIX_PROTO + u32::from(self.prefix_len),
        }
    }

    /// First and last port of the block (0..=65535 for protocol-wide blocks).
    pub fn port_range(&self) -> (u16, u16) {
        (self.port, self.port | !port_mask(self.prefix_len))
    }
}

/// Mask of the leading `prefix_len` bits of a port.
pub const fn port_mask(prefix_len: u8) -> u16 {
    if prefix_len == 0 { 0 } else { u16::MAX << (PORT_BITS - prefix_len) }
}

/// Tiles the inclusive range `start..=end` with the fewest aligned blocks, largest first from
/// the left: at each step take the biggest block that starts here (aligned) and does not run
/// past `end`. At most 30 blocks for any 16-bit range.
pub fn decompose_range(proto: u8, start: u16, end: u16) -> Vec<PortBlock> {
    let mut blocks = Vec::new();
    let (mut next, end) = (u32::from(start), u32::from(end));
    while next <= end {
        // Alignment of `next` bounds the block size; 0 is aligned to everything.
        let mut size_bits = if next == 0 { u32::from(PORT_BITS) } else { next.trailing_zeros().min(16) };
        while next + (1 << size_bits) - 1 > end {
            size_bits -= 1;
        }
        blocks.push(PortBlock::new(proto, next as u16, PORT_BITS - size_bits as u8));
        next += 1 << size_bits;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: u8 = zt_common::proto::TCP;

    fn ranges(blocks: &[PortBlock]) -> Vec<(u16, u16)> {
        blocks.iter().map(PortBlock::port_range).collect()
    }

    #[test]
    fn port_range_5000_5100_decomposes_into_exact_blocks() {
        let blocks = decompose_range(TCP, 5000, 5100);
        let expected = [(5000, 13), (5008, 12), (5024, 11), (5056, 11), (5088, 13), (5096, 14), (5100, 16)];
        let got: Vec<(u16, u8)> = blocks.iter().map(|b| (b.port, b.prefix_len)).collect();
        assert_eq!(got, expected);
        assert_eq!(
            ranges(&blocks),
            [(5000, 5007), (5008, 5023), (5024, 5055), (5056, 5087), (5088, 5095), (5096, 5099), (5100, 5100)]
        );
    }

    #[test]
    fn single_port_range_is_one_exact_block() {
        assert_eq!(decompose_range(TCP, 443, 443), [PortBlock::exact(TCP, 443)]);
    }

    #[test]
    fn aligned_range_is_one_block() {
        assert_eq!(decompose_range(TCP, 1024, 2047), [PortBlock::new(TCP, 1024, 6)]);
        assert_eq!(decompose_range(TCP, 0, 65535), [PortBlock::new(TCP, 0, 0)]);
    }

    #[test]
    fn full_valid_range_needs_sixteen_blocks() {
        let blocks = decompose_range(TCP, 1, 65535);
        assert_eq!(blocks.len(), 16);
        assert_eq!(blocks[0], PortBlock::exact(TCP, 1));
        assert_eq!(blocks[15], PortBlock::new(TCP, 32768, 1));
    }

    #[test]
    fn decomposition_tiles_every_range_exactly() {
        // Every port in the range is covered by exactly one block, nothing outside is.
        let cases = [(1, 1), (1, 2), (3, 17), (80, 8080), (1000, 1023), (65534, 65535), (12345, 54321)];
        for (start, end) in cases {
            let blocks = decompose_range(TCP, start, end);
            assert!(blocks.len() <= 30);
            for port in start.saturating_sub(3)..=end.saturating_add(3) {
                let hits = blocks.iter().filter(|b| b.covers(TCP, port)).count();
                let inside = (start..=end).contains(&port);
                assert_eq!(hits, usize::from(inside), "{start}-{end} port {port}");
            }
        }
    }

    #[test]
    fn blocks_nest_or_are_disjoint() {
        let any = PortBlock::ANY;
        let tcp = PortBlock::protocol(TCP);
        let block = PortBlock::new(TCP, 5056, 11);
        let port = PortBlock::exact(TCP, 5060);
        assert!(any.contains(&tcp) && tcp.contains(&block) && block.contains(&port));
        assert!(!port.contains(&block) && !block.contains(&tcp) && !tcp.contains(&any));
        assert_eq!(block.intersect(&PortBlock::exact(TCP, 5088)), None);
        assert_eq!(tcp.intersect(&PortBlock::protocol(zt_common::proto::UDP)), None);
        assert_eq!(any.intersect(&port), Some(port));
    }

    #[test]
    fn lpm_prefix_lengths() {
        assert_eq!(PortBlock::ANY.lpm_prefix_len(), 80);
        assert_eq!(PortBlock::protocol(TCP).lpm_prefix_len(), 88);
        assert_eq!(PortBlock::new(TCP, 5056, 11).lpm_prefix_len(), 99);
        assert_eq!(PortBlock::exact(TCP, 22).lpm_prefix_len(), 104);
    }
}
