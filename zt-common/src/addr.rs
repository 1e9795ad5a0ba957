//! IP addresses as the datapath stores them.
//!
//! Both families use one 16-byte layout so that a single conntrack, fragment and quarantine
//! map serves IPv4 and IPv6. The bytes are the address in network order, exactly as they
//! appear in the packet; IPv4 uses the first 4 bytes and leaves the rest zero.

/// Address family tags stored next to addresses.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// An IPv4 or IPv6 address in network byte order (IPv4 in the first four bytes).
///
/// Aligned to 4 bytes so that the kernel programs store and compare it in 32-bit words:
/// the BPF backend splits every access to a byte-aligned value into single bytes, and
/// zeroing the twelve unused bytes of an IPv4 address became a call to `memset`. Every
/// layout that holds an address already places it at a multiple of 4 (their sizes are
/// asserted), so no layout changed.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Addr {
    pub bytes: [u8; 16],
}

crate::assert_size!(Addr, 16);

impl Addr {
    pub const fn from_v4(octets: [u8; 4]) -> Self {
        Self::from_words([u32::from_ne_bytes(octets), 0, 0, 0])
    }

    /// The address whose bytes in memory are these four words.
    pub const fn from_words(words: [u32; 4]) -> Self {
        // SAFETY: four u32 are 16 bytes, and every byte pattern is an address.
        Self { bytes: unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(words) } }
    }

    /// The address's bytes in memory as four words (the inverse of [`Addr::from_words`]).
    #[inline(always)]
    pub const fn words(&self) -> [u32; 4] {
        // SAFETY: as in `from_words`; the address is 4-byte aligned.
        unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(self.bytes) }
    }

    /// A total order on addresses that costs at most four word comparisons (not the
    /// numeric order of the address: words compare in host byte order). Both orientations
    /// of a conntrack key are told apart by it (`CtKey::canonical`).
    #[inline(always)]
    pub const fn precedes(&self, other: &Addr) -> bool {
        let (a, b) = (self.words(), other.words());
        if a[0] != b[0] {
            a[0] < b[0]
        } else if a[1] != b[1] {
            a[1] < b[1]
        } else if a[2] != b[2] {
            a[2] < b[2]
        } else {
            a[3] < b[3]
        }
    }

    pub const fn from_v6(octets: [u8; 16]) -> Self {
        Self { bytes: octets }
    }

    pub fn v4_octets(&self) -> [u8; 4] {
        [self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]]
    }
}
