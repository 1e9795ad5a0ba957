//! Connection tracking: flow state, counters and timeouts.
//!
//! Entries live in an LRU hash, so a full table evicts the coldest flow instead of
//! refusing new ones. Forward and reply counters are separate fields: each direction of a
//! flow is steered to one CPU by receive hashing, so plain adds do not race in practice
//! (the BPF target offers no atomic read-modify-write in `core`). Timeouts are checked
//! lazily on lookup; the agent sweeps expired entries and reports their end.

use zt_common::{
    config::{Config, FLAG_EVENTS_ALLOWED},
    conntrack::*,
    event::{KIND_END, KIND_UPDATE},
    proto,
};

use aya_ebpf::maps::LruHashMap;

use crate::{
    events::flow_event,
    maps::{CONNTRACK, HALF_OPEN},
    parse::Packet,
};

const NS: u64 = 1_000_000_000;

pub use zt_common::conntrack::expired;

/// A bare SYN on a closed TCP flow starts a new connection on the same tuple.
#[inline(always)]
pub fn reopens(ct: &CtValue, pkt: &Packet) -> bool {
    pkt.tuple.proto == proto::TCP
        && ct.state == STATE_CLOSED
        && pkt.flags & (proto::TCP_SYN | proto::TCP_ACK) == proto::TCP_SYN
}

/// Reports the end of a flow once; `key` is the tuple of the packet that opened it.
#[inline(always)]
pub fn report_end(key: &CtKey, ct: &mut CtValue, verdict: u8, reason: u8, cfg: &Config) {
    if ct.flags & CT_END_REPORTED != 0 {
        return;
    }
    ct.flags |= CT_END_REPORTED;
    if cfg.flags & FLAG_EVENTS_ALLOWED != 0 {
        flow_event(KIND_END, key, ct, verdict, reason);
    }
}

/// Accounts one packet of a tracked flow (opened by `key`; `reply` when the packet goes the
/// other way) and advances its state.
#[inline(always)]
pub fn account(key: &CtKey, ct: &mut CtValue, pkt: &Packet, reply: bool, cfg: &Config, now: u64) {
    ct.last_seen_ns = now;
    if reply {
        ct.rev_packets += 1;
        ct.rev_bytes += pkt.len as u64;
        ct.flags |= CT_SEEN_REPLY;
    } else {
        ct.fwd_packets += 1;
        ct.fwd_bytes += pkt.len as u64;
    }
    if key.proto == proto::TCP {
        let f = pkt.flags;
        if f & proto::TCP_RST != 0 {
            ct.state = STATE_CLOSED;
        } else {
            if f & proto::TCP_FIN != 0 {
                ct.flags |= if reply { CT_FIN_REV } else { CT_FIN_FWD };
            }
            if ct.flags & (CT_FIN_FWD | CT_FIN_REV) == (CT_FIN_FWD | CT_FIN_REV) {
                ct.state = STATE_CLOSED;
            } else if ct.flags & (CT_FIN_FWD | CT_FIN_REV) != 0 {
                ct.state = STATE_FIN_WAIT;
            } else if ct.state == STATE_SYN_SENT && reply {
                ct.state = STATE_ESTABLISHED;
            }
        }
        if ct.state == STATE_CLOSED {
            report_end(key, ct, ct.verdict(), ct.reason, cfg);
            return;
        }
    }
    let interval = cfg.flow_update_interval_s as u64 * NS;
    if interval != 0 && cfg.flags & FLAG_EVENTS_ALLOWED != 0 && now.saturating_sub(ct.last_report_ns) > interval {
        ct.last_report_ns = now;
        flow_event(KIND_UPDATE, key, ct, ct.verdict(), ct.reason);
    }
}

/// Whether a new flow of this packet gets a conntrack entry. ICMP other than echo requests
/// (errors, replies without a request) is judged per packet.
#[inline(always)]
pub fn trackable(pkt: &Packet) -> bool {
    match pkt.tuple.proto {
        proto::TCP => pkt.flags & proto::TCP_RST == 0,
        proto::ICMP | proto::ICMPV6 => pkt.opens_icmp_flow,
        _ => true,
    }
}

/// Initial TCP state: a bare SYN opens a handshake; anything else is picked up mid-stream
/// (e.g. after an LRU eviction) as established — policy has just admitted it either way.
#[inline(always)]
pub fn initial_state(pkt: &Packet) -> u8 {
    if pkt.tuple.proto != proto::TCP {
        STATE_OPEN
    } else if pkt.flags & (proto::TCP_SYN | proto::TCP_ACK) == proto::TCP_SYN {
        STATE_SYN_SENT
    } else {
        STATE_ESTABLISHED
    }
}

/// Stores a flow under its canonical key (`stored`).
#[inline(always)]
pub fn create(stored: &CtKey, value: &CtValue) {
    // LRU: never fails for lack of room; an existing (expired or closed) entry is replaced.
    let _ = CONNTRACK.insert(stored, value, 0);
}

/// Is this tuple, in either orientation, a live tracked flow (established or half-open)?
/// Used for ICMP errors; outlined so its copy of the key stays off the caller's stack.
#[inline(never)]
pub fn tracks(key: &CtKey, cfg: &Config, now: u64) -> bool {
    let (stored, _) = key.canonical();
    live_in(&CONNTRACK, &stored, cfg, now) || live_in(&HALF_OPEN, &stored, cfg, now)
}

#[inline(always)]
fn live_in(table: &LruHashMap<CtKey, CtValue>, key: &CtKey, cfg: &Config, now: u64) -> bool {
    // SAFETY: read-only use of the value.
    match unsafe { table.get(key) } {
        Some(ct) => !expired(ct, key.proto, cfg, now),
        None => false,
    }
}
