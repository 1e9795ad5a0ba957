//! FAILSAFE: the failsafe rules' protocols and ports, so the kernel can tell cheaply whether
//! a packet of a quarantined address may be failsafe traffic (a quarantine never cuts it)
//! before it asks the policy, which holds the rules themselves.

/// One failsafe rule as the pre-check needs it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailsafePort {
    /// `reason::DIR_*` of the rule.
    pub direction: u8,
    pub proto: u8,
    /// Nonzero: every port of the protocol (and protocols without ports).
    pub any_port: u8,
    pub _pad: u8,
    pub port: u16,
    pub _pad2: u16,
}
crate::assert_size!(FailsafePort, 8);

/// Rules the pre-check holds; with more, every quarantined packet asks the policy.
pub const FAILSAFE_MAX: usize = 8;
/// `count` meaning "more rules than fit: ask the policy for every quarantined packet".
pub const FAILSAFE_ALL: u8 = u8::MAX;

/// The single value of the FAILSAFE array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailsafePorts {
    pub count: u8,
    pub _pad: [u8; 7],
    pub rules: [FailsafePort; FAILSAFE_MAX],
}
crate::assert_size!(FailsafePorts, 72);

crate::user_pod!(FailsafePorts);
