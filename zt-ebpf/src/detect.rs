//! Counting for the agent's detectors (see `zt_common::detect`). Every new-flow attempt —
//! allowed or denied, reported or budgeted — updates its source's port and host sets
//! (ingress) or its local identity's peer set (egress); a threshold crossing is written to
//! DETECT_EVENTS once per window. Nothing here drops a packet: the agent decides the
//! response, so `never`, dry runs and TTLs stay userspace policy.

use zt_common::{
    addr::Addr,
    config::Config,
    detect::{
        DETECTOR_DENY_SPIKE, DETECTOR_FAN_OUT, DETECTOR_PORT_SCAN, DETECTOR_SWEEP, DetectEvent, FanOutValue, ScanValue,
        fold, hash_addr, hash_port, ms_of,
    },
    identity::ANY,
    proto,
    quarantine::SPIKE_WINDOW_MS,
    reason::DIR_INGRESS,
};

use crate::{
    ipcache::identity_of,
    maps::{DETECT_EVENTS, FAN_OUT, SCAN},
    parse::Packet,
};

/// Bits of the 128-bit scan sets' hashes.
const SCAN_HASH_BITS: u32 = 7;
/// Bits of the 256-bit peer set's hashes.
const PEER_HASH_BITS: u32 = 8;

/// Counts one new-flow attempt for the detectors that are on. Called beside the decision,
/// not inside it, so its frames never stack on the decision's (BPF has 512 bytes).
#[inline(always)]
pub fn attempt(pkt: &Packet, direction: u8, slot: u8, cfg: &Config, now: u64) {
    if direction == DIR_INGRESS {
        if cfg.port_scan_ports != 0 || cfg.sweep_hosts != 0 {
            scan(pkt, cfg, now);
        }
    } else if cfg.fan_out_peers != 0 && cfg.fan_out_window_ms != 0 {
        fan_out(pkt, slot, cfg, now);
    }
}

/// A crossing's detector and window, packed for [`report`] (BPF calls take five arguments).
#[inline(always)]
const fn what(detector: u8, window_ms: u32) -> u64 {
    (detector as u64) << 32 | window_ms as u64
}

/// A crossing's count and source identity, packed for [`report`].
#[inline(always)]
const fn how_many(count: u32, src_identity: u32) -> u64 {
    (count as u64) << 32 | src_identity as u64
}

/// Sets `bit` in a 128-bit set; true if it was clear.
#[inline(always)]
fn set_bit2(set: &mut [u64; 2], bit: u32) -> bool {
    let mask = 1u64 << (bit & 63);
    let word = if bit & 64 == 0 { &mut set[0] } else { &mut set[1] };
    let fresh = *word & mask == 0;
    *word |= mask;
    fresh
}

#[inline(always)]
fn count2(set: &[u64; 2]) -> u32 {
    set[0].count_ones() + set[1].count_ones()
}

#[inline(never)]
fn scan(pkt: &Packet, cfg: &Config, now: u64) {
    let key = &pkt.tuple;
    let port = if proto::has_ports(key.proto) { key.dst_port } else { 0 };
    let now_ms = ms_of(now);
    let target = fold(&key.dst);
    let port_bit = hash_port(port, SCAN_HASH_BITS);
    let host_bit = hash_addr(&key.dst, SCAN_HASH_BITS);
    let Some(v) = SCAN.get_ptr_mut(&key.src) else {
        first_attempt(pkt, now_ms, port, port_bit, host_bit);
        return;
    };
    // SAFETY: LRU values stay valid while the program runs; a racing CPU at worst loses
    // one bit or reports a crossing twice.
    let v = unsafe { &mut *v };
    if cfg.port_scan_ports != 0 && cfg.port_scan_window_ms != 0 {
        const BIT: u8 = 1 << DETECTOR_PORT_SCAN;
        if now_ms.wrapping_sub(v.ports_since_ms) >= cfg.port_scan_window_ms {
            v.ports_since_ms = now_ms;
            v.ports = [0; 2];
            v.target = target;
            v.reported &= !BIT;
        } else if v.target != target && count2(&v.ports) <= 1 {
            v.ports = [0; 2];
            v.target = target;
        }
        if v.target == target {
            set_bit2(&mut v.ports, port_bit);
            if v.reported & BIT == 0 {
                let count = count2(&v.ports);
                if count > cfg.port_scan_ports as u32 {
                    let what = what(DETECTOR_PORT_SCAN, cfg.port_scan_window_ms);
                    if report(pkt, &key.src, what, how_many(count, ANY), now) {
                        v.reported |= BIT;
                    }
                }
            }
        }
    }
    if cfg.sweep_hosts != 0 && cfg.sweep_window_ms != 0 {
        const BIT: u8 = 1 << DETECTOR_SWEEP;
        if now_ms.wrapping_sub(v.hosts_since_ms) >= cfg.sweep_window_ms {
            v.hosts_since_ms = now_ms;
            v.hosts = [0; 2];
            v.sweep_port = port;
            v.reported &= !BIT;
        } else if v.sweep_port != port && count2(&v.hosts) <= 1 {
            v.hosts = [0; 2];
            v.sweep_port = port;
        }
        if v.sweep_port == port {
            set_bit2(&mut v.hosts, host_bit);
            if v.reported & BIT == 0 {
                let count = count2(&v.hosts);
                if count > cfg.sweep_hosts as u32 {
                    let what = what(DETECTOR_SWEEP, cfg.sweep_window_ms);
                    if report(pkt, &key.src, what, how_many(count, ANY), now) {
                        v.reported |= BIT;
                    }
                }
            }
        }
    }
}

/// A source's first attempt (or its first since the LRU recycled it): a new entry.
#[inline(never)]
fn first_attempt(pkt: &Packet, now_ms: u32, port: u16, port_bit: u32, host_bit: u32) {
    let mut v = ScanValue {
        ports_since_ms: now_ms,
        hosts_since_ms: now_ms,
        target: fold(&pkt.tuple.dst),
        sweep_port: port,
        reported: 0,
        _pad: 0,
        ports: [0; 2],
        hosts: [0; 2],
    };
    set_bit2(&mut v.ports, port_bit);
    set_bit2(&mut v.hosts, host_bit);
    let _ = SCAN.insert(&pkt.tuple.src, &v, 0);
}

/// `fan_out` counts per local identity: at egress that is the source's.
#[inline(never)]
fn fan_out(pkt: &Packet, slot: u8, cfg: &Config, now: u64) {
    const BIT: u8 = 1 << DETECTOR_FAN_OUT;
    let now_ms = ms_of(now);
    let src_identity = identity_of(&pkt.tuple.src, pkt.tuple.family, slot);
    let bit = hash_addr(&pkt.tuple.dst, PEER_HASH_BITS);
    let Some(v) = FAN_OUT.get_ptr_mut(&src_identity) else {
        first_peer(src_identity, now_ms, bit);
        return;
    };
    // SAFETY: as in `scan`.
    let v = unsafe { &mut *v };
    if now_ms.wrapping_sub(v.since_ms) >= cfg.fan_out_window_ms {
        v.since_ms = now_ms;
        v.peers = [0; 4];
        v.reported = 0;
    }
    set_peer(&mut v.peers, bit);
    if v.reported & BIT == 0 {
        let count =
            v.peers[0].count_ones() + v.peers[1].count_ones() + v.peers[2].count_ones() + v.peers[3].count_ones();
        if count > cfg.fan_out_peers as u32 {
            let what = what(DETECTOR_FAN_OUT, cfg.fan_out_window_ms);
            if report(pkt, &pkt.tuple.src, what, how_many(count, src_identity), now) {
                v.reported |= BIT;
            }
        }
    }
}

/// A local identity's first attempt in the map: a new entry.
#[inline(never)]
fn first_peer(identity: u32, now_ms: u32, bit: u32) {
    let mut v = FanOutValue { since_ms: now_ms, reported: 0, _pad: [0; 3], peers: [0; 4] };
    set_peer(&mut v.peers, bit);
    let _ = FAN_OUT.insert(&identity, &v, 0);
}

#[inline(always)]
fn set_peer(set: &mut [u64; 4], bit: u32) {
    if let Some(w) = set.get_mut(((bit >> 6) & 3) as usize) {
        *w |= 1u64 << (bit & 63);
    }
}

/// A source's denies crossed its spike threshold in the current window (counted by
/// `events::source_denied`). Inlined there: the deny path is the deepest call chain.
#[inline(always)]
pub fn deny_spike(pkt: &Packet, src_identity: u32, denies: u32, now: u64) -> bool {
    report(pkt, &pkt.tuple.src, what(DETECTOR_DENY_SPIKE, SPIKE_WINDOW_MS), how_many(denies, src_identity), now)
}

/// Writes a crossing; false when DETECT_EVENTS is full (the caller retries on the next
/// attempt, so a crossing is delayed, never lost).
#[inline(never)]
fn report(pkt: &Packet, offender: &Addr, what: u64, how_many: u64, now: u64) -> bool {
    let Some(mut entry) = DETECT_EVENTS.reserve::<DetectEvent>(0) else {
        return false;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at a reserved, exclusively owned record; every field is written.
    unsafe {
        (*e).time_ns = now;
        (*e).src = *offender;
        (*e).dst = pkt.tuple.dst;
        (*e).src_identity = how_many as u32;
        (*e).count = (how_many >> 32) as u32;
        (*e).window_ms = what as u32;
        (*e).port = if proto::has_ports(pkt.tuple.proto) { pkt.tuple.dst_port } else { 0 };
        (*e).detector = (what >> 32) as u8;
        (*e).family = pkt.tuple.family;
        (*e).proto = pkt.tuple.proto;
        (*e)._pad = [0; 7];
    }
    entry.submit(0);
    true
}
