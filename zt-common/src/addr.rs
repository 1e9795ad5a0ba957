//! IP addresses as the datapath stores them.
//!
//! Both families use one 16-byte layout so that a single conntrack, fragment and quarantine
//! map serves IPv4 and IPv6. The bytes are the address in network order, exactly as they
//! appear in the packet; IPv4 uses the first 4 bytes and leaves the rest zero.

/// Address family tags stored next to addresses.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// An IPv4 or IPv6 address in network byte order (IPv4 in the first four bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Addr {
    pub bytes: [u8; 16],
}

crate::assert_size!(Addr, 16);

impl Addr {
    pub const fn from_v4(octets: [u8; 4]) -> Self {
        let mut bytes = [0u8; 16];
        bytes[0] = octets[0];
        bytes[1] = octets[1];
        bytes[2] = octets[2];
        bytes[3] = octets[3];
        Self { bytes }
    }

    pub const fn from_v6(octets: [u8; 16]) -> Self {
        Self { bytes: octets }
    }

    pub fn v4_octets(&self) -> [u8; 4] {
        [self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]]
    }
}
