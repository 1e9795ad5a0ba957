//! Policy lookup: at most four LPM lookups, most specific identity pair first. The compiler
//! stores the fully merged verdict in every key (see zt_common::policy), so the first hit is
//! the answer and the kernel never combines rules itself.

use aya_ebpf::maps::lpm_trie::Key;
use zt_common::{
    identity::ANY,
    policy::{PREFIX_PORT, PolicyKey, PolicyValue},
    reason::{DIR_INGRESS, FAILSAFE, VERDICT_ALLOWED},
};

use crate::maps::POLICY;

/// Identities of a flow as seen from the hook: ingress protects the destination, egress
/// the source.
#[inline(always)]
pub fn local_and_peer(direction: u8, src_identity: u32, dst_identity: u32) -> (u32, u32) {
    if direction == DIR_INGRESS { (dst_identity, src_identity) } else { (src_identity, dst_identity) }
}

#[inline(always)]
fn get(slot: u8, direction: u8, local: u32, peer: u32, proto: u8, port: u16) -> Option<PolicyValue> {
    let key = Key::new(PREFIX_PORT, PolicyKey::new(slot, direction, local, peer, proto, port));
    POLICY.get(&key).copied()
}

/// The verdict for a new flow, or `None` when no generation is loaded in `slot`.
#[inline(always)]
pub fn lookup(slot: u8, direction: u8, local: u32, peer: u32, proto: u8, port: u16) -> Option<PolicyValue> {
    if let Some(v) = get(slot, direction, local, peer, proto, port) {
        return Some(v);
    }
    if let Some(v) = get(slot, direction, local, ANY, proto, port) {
        return Some(v);
    }
    if let Some(v) = get(slot, direction, ANY, peer, proto, port) {
        return Some(v);
    }
    get(slot, direction, ANY, ANY, proto, port)
}

#[inline(always)]
fn get_ref(slot: u8, direction: u8, local: u32, peer: u32, proto: u8, port: u16) -> Option<&'static PolicyValue> {
    let key = Key::new(PREFIX_PORT, PolicyKey::new(slot, direction, local, peer, proto, port));
    POLICY.get(&key)
}

/// Whether a failsafe rule decides this flow: [`lookup`]'s answer, read through the map
/// value's pointer (a copied-out `Option` lets LLVM read the absent value's fields from an
/// uninitialized register, which the verifier refuses).
#[inline(always)]
pub fn is_failsafe(slot: u8, direction: u8, local: u32, peer: u32, proto: u8, port: u16) -> bool {
    let v = match get_ref(slot, direction, local, peer, proto, port) {
        Some(v) => v,
        None => match get_ref(slot, direction, local, ANY, proto, port) {
            Some(v) => v,
            None => match get_ref(slot, direction, ANY, peer, proto, port) {
                Some(v) => v,
                None => match get_ref(slot, direction, ANY, ANY, proto, port) {
                    Some(v) => v,
                    None => return false,
                },
            },
        },
    };
    v.reason == FAILSAFE && v.verdict == VERDICT_ALLOWED
}
