//! The decision core shared by every hook: quarantine -> fragments -> repeated denied SYN ->
//! conntrack (one lookup of the canonical key finds forward and reply packets; then
//! half-open handshakes, related ICMP) -> repeated denial -> ipcache -> detector counts ->
//! policy -> rate limit -> verdict -> conntrack (or half-open) create -> event.
//!
//! One function decides; the XDP and TC entry points only translate its `Action` into their
//! return codes. Every outcome is counted under exactly one (verdict, reason).

use zt_common::{
    addr::{Addr, FAMILY_V4},
    config::{Config, FLAG_EVENTS_ALLOWED, FLAG_QUARANTINE_ACTIVE, FLAG_RECHECK_ESTABLISHED},
    conntrack::{CT_AUDIT, CT_REVERSED, CtKey, CtValue, STATE_CLOSED, STATE_ESTABLISHED, STATE_SYN_SENT},
    denied::{DENIED_EVENT_INTERVAL_NS, DeniedValue},
    detect::{EXEMPT_FAMILY_BITS, ExemptKey},
    event::{KIND_AUDIT, KIND_DENY, KIND_START},
    failsafe::{FAILSAFE_ALL, FAILSAFE_MAX},
    fragment::{FRAGMENT_TIMEOUT_NS, FragKey, FragValue},
    identity::ANY,
    policy::{POLICY_NONE, PolicyValue, RULE_NONE},
    proto,
    quarantine::{QuarantineValue, report_epoch},
    ratelimit::{RateBucket, RateKey, admit, readmits_at, slot_index},
    reason::*,
    stats::EVENT_LOST_BUDGET,
};

use aya_ebpf::maps::{LruHashMap, lpm_trie::Key};

use crate::{
    clock::now,
    conntrack, detect,
    events::{Decision, flow_event, packet_event, report, source_repeat_denied},
    ipcache::identity_of,
    maps::{CONFIG, CONNTRACK, DENIED, EXEMPT, FAILSAFE, FRAGMENTS, HALF_OPEN, RATE_BUCKETS, RATE_LIMITS},
    parse::{FRAG_FIRST, FRAG_LATER, Packet, ParseError},
    policy::{is_failsafe, local_and_peer, lookup},
    quarantine::quarantined,
    stats::{count, count_event},
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
}

/// Where the program runs.
pub struct Hook {
    pub direction: u8,
    pub ifindex: u32,
}

/// One packet being decided, bundled so outlined functions take a single argument (BPF
/// calls pass at most five).
struct Ctx<'a> {
    pkt: &'a Packet,
    hook: &'a Hook,
    cfg: &'a Config,
    /// The policy generation this packet is judged under, read from CONFIG exactly once.
    /// `cfg` points into the live map value, which the agent overwrites in place on every
    /// push: reading `cfg.generation` twice could judge a flow under generation N (policy
    /// and ipcache of slot N) and stamp its conntrack entry with N+1, so a tightening push
    /// would never re-check it. Every use of the generation or its slot goes through here.
    generation: u32,
    now: u64,
}

impl Ctx<'_> {
    /// IPCACHE/POLICY slot of [`Ctx::generation`].
    #[inline(always)]
    fn slot(&self) -> u8 {
        (self.generation & 1) as u8
    }
}

/// The active generation, loaded once. A volatile read: through a shared reference the
/// compiler may assume the value never changes and load it again at each use.
#[inline(always)]
fn generation_of(cfg: &Config) -> u32 {
    // SAFETY: `cfg` is a valid, aligned map value for the program's run.
    unsafe { core::ptr::read_volatile(&cfg.generation) }
}

/// Who is denied and by what, for `deny`.
struct Judgement {
    reason: u8,
    src_identity: u32,
    dst_identity: u32,
    policy_id: u32,
    rule: u32,
}

impl Judgement {
    /// A denial decided before any identity or policy was looked up.
    #[inline(always)]
    const fn bare(reason: u8) -> Judgement {
        Judgement { reason, src_identity: ANY, dst_identity: ANY, policy_id: POLICY_NONE, rule: RULE_NONE }
    }

    /// A new flow an allow rule admits but its source is over the rule's rate limit.
    #[inline(always)]
    fn rate_limited(v: &PolicyValue, src_identity: u32, dst_identity: u32) -> Judgement {
        Judgement { reason: RATE_LIMIT, src_identity, dst_identity, policy_id: v.policy_id, rule: v.rule }
    }

    /// A denial from a policy lookup; a miss means no generation is loaded.
    #[inline(always)]
    fn from_lookup(v: Option<PolicyValue>, src_identity: u32, dst_identity: u32) -> Judgement {
        match v {
            Some(v) => Judgement { reason: v.reason, src_identity, dst_identity, policy_id: v.policy_id, rule: v.rule },
            None => {
                Judgement { reason: NO_POLICY, src_identity, dst_identity, policy_id: POLICY_NONE, rule: RULE_NONE }
            }
        }
    }
}

/// Decides about one packet that `parse` filled into `pkt`.
#[inline(always)]
pub fn decide(parsed: Result<(), ParseError>, pkt: &mut Packet, hook: &Hook) -> Action {
    let Some(cfg) = CONFIG.get(0) else {
        return Action::Pass;
    };
    let now = now();
    let generation = generation_of(cfg);
    match parsed {
        Ok(()) => {}
        Err(ParseError::NonIp) => {
            count(VERDICT_ALLOWED, NON_IP, 0);
            return Action::Pass;
        }
        Err(_) => {
            // Report nothing a broken header may have put into the tuple.
            *pkt = Packet::EMPTY;
            let c = Ctx { pkt, hook, cfg, generation, now };
            return deny(&c, &Judgement::bare(MALFORMED));
        }
    }
    let c = Ctx { pkt, hook, cfg, generation, now };
    let action = match before_conntrack(&c) {
        Some(action) => action,
        None => {
            // Only packets that go on to conntrack pay for its key.
            pkt.orient();
            decide_tracked(&Ctx { pkt, hook, cfg, generation, now })
        }
    };
    if pkt.frag == FRAG_FIRST {
        remember_fragment(pkt, action, now);
    }
    action
}

/// What is decided before conntrack: neighbour discovery, no policy yet, quarantine, later
/// fragments, and a repeated SYN of a tuple denied before; `None` goes on to
/// [`decide_tracked`].
#[inline(always)]
fn before_conntrack(c: &Ctx) -> Option<Action> {
    let pkt = c.pkt;
    if pkt.link_infrastructure {
        count(VERDICT_ALLOWED, NEIGHBOR_DISCOVERY, pkt.len);
        return Some(Action::Pass);
    }
    if c.generation == 0 {
        return Some(deny(c, &Judgement::bare(NO_POLICY)));
    }
    if c.cfg.flags & FLAG_QUARANTINE_ACTIVE != 0
        && let Some(q) = quarantined(&pkt.tuple.src, c.now).or_else(|| quarantined(&pkt.tuple.dst, c.now))
        && !failsafe_traffic(c)
    {
        return Some(quarantine_drop(c, q));
    }
    if pkt.frag == FRAG_LATER {
        return Some(follow_fragment(c));
    }
    // A bare SYN is never a reply nor a packet of an established flow.
    if is_bare_syn(pkt) {
        return recently_denied(c);
    }
    None
}

/// Conntrack, then policy for a packet no tracked flow accounts for.
#[inline(always)]
fn decide_tracked(c: &Ctx) -> Action {
    let pkt = c.pkt;
    let bare_syn = is_bare_syn(pkt);
    if let Some(action) = tracked(c) {
        return action;
    }
    if pkt.has_related && conntrack::tracks(&pkt.related, c.cfg, c.now) {
        count(VERDICT_ALLOWED, RELATED, pkt.len);
        return Action::Pass;
    }
    // Any other packet no flow accounts for (conntrack just missed it, so an established
    // packet never pays this lookup): a repeat of a tuple denied under this generation —
    // a UDP flood, an ACK to a closed port — skips the policy evaluation as a SYN does.
    if !bare_syn && let Some(action) = recently_denied(c) {
        return action;
    }
    // Every attempt counts for the detectors, whatever policy says of it: a scan of
    // forbidden ports is still a scan.
    detect::attempt(pkt, c.hook.direction, c.slot(), c.cfg, c.now);
    let mut admitted = Admitted { v: PolicyValue::new(0, 0, POLICY_NONE, RULE_NONE), src_id: ANY, dst_id: ANY };
    if let Some(denied) = new_flow(c, &mut admitted) {
        return denied;
    }
    let_in(c, &admitted);
    Action::Pass
}

/// What policy said of a new flow it lets through.
struct Admitted {
    v: PolicyValue,
    src_id: u32,
    dst_id: u32,
}

/// Identities of the flow's source and destination in the active slot.
#[inline(always)]
fn identities(key: &CtKey, slot: u8) -> (u32, u32) {
    (identity_of(&key.src, key.family, slot), identity_of(&key.dst, key.family, slot))
}

/// The policy port of a tuple: the destination port where the protocol has ports.
#[inline(always)]
fn policy_port(key: &CtKey) -> u16 {
    if proto::has_ports(key.proto) { key.dst_port } else { 0 }
}

/// Evaluates `key` (in its original orientation) for one hook direction.
#[inline(always)]
fn evaluate(key: &CtKey, direction: u8, slot: u8, src_id: u32, dst_id: u32) -> Option<PolicyValue> {
    let (local, peer) = local_and_peer(direction, src_id, dst_id);
    lookup(slot, direction, local, peer, key.proto, policy_port(key))
}

#[inline(always)]
fn set_admitted(ct: &mut CtValue, direction: u8, generation: u32) {
    if direction == DIR_INGRESS {
        ct.ingress_gen = generation;
    } else {
        ct.egress_gen = generation;
    }
}

/// Conntrack: forward hit, reply hit, or `None` for a packet that starts a new flow.
/// Established flows are found in CONNTRACK by the first or second lookup; only packets
/// no established flow accounts for look into HALF_OPEN.
#[inline(always)]
fn tracked(c: &Ctx) -> Option<Action> {
    if let Some(action) = tracked_in(c, &CONNTRACK, false) {
        return Some(action);
    }
    // Only TCP handshakes are half-open: other new flows skip the two lookups.
    if c.pkt.tuple.proto != proto::TCP {
        return None;
    }
    half_open(c)
}

/// A packet of a TCP handshake in progress: a retransmitted SYN, the SYN-ACK, or the final
/// ACK that moves the connection into CONNTRACK.
#[inline(never)]
fn half_open(c: &Ctx) -> Option<Action> {
    tracked_in(c, &HALF_OPEN, true)
}

/// A forward or reply hit in `table` (CONNTRACK, or HALF_OPEN when `half_open`): one lookup
/// of the tuple's canonical key finds the flow whichever way the packet goes.
#[inline(always)]
fn tracked_in(c: &Ctx, table: &LruHashMap<CtKey, CtValue>, half_open: bool) -> Option<Action> {
    let (pkt, cfg, now) = (c.pkt, c.cfg, c.now);
    let stored = &pkt.stored;
    let ct = table.get_ptr_mut(stored)?;
    // SAFETY: LRU values stay valid while the program runs; racing writers at worst mix
    // counters of the same flow.
    let ct = unsafe { &mut *ct };
    let (generation, slot) = (c.generation, c.slot());
    let recheck = cfg.flags & FLAG_RECHECK_ESTABLISHED != 0;
    if !ct.is_reply(pkt.reverse) {
        let key = &pkt.tuple;
        if conntrack::expired(ct, key.proto, cfg, now) || conntrack::reopens(ct, pkt) {
            conntrack::report_end(key, ct, ct.verdict(), ct.reason, cfg);
            // The new flow may start in the other table (a SYN goes to HALF_OPEN): the old
            // entry must not shadow it.
            let _ = table.remove(stored);
            return None;
        }
        let direction = c.hook.direction;
        let admitted = if direction == DIR_INGRESS { ct.ingress_gen } else { ct.egress_gen };
        if admitted != 0 && (admitted == generation || !recheck) {
            conntrack::account(key, ct, pkt, false, cfg, now);
            count(ct.verdict(), ESTABLISHED, pkt.len);
            if half_open {
                promote(stored, ct, pkt);
            }
            return Some(Action::Pass);
        }
        // Either the policy changed since this hook admitted the flow, or the flow was
        // admitted by another hook (a routed path crosses ingress and egress): judge it now.
        let (src_id, dst_id) = identities(key, slot);
        let v = evaluate(key, direction, slot, src_id, dst_id);
        return Some(match v {
            Some(v) if v.verdict != VERDICT_DENIED => {
                // This hook admits the flow for the first time: that is a new flow for its
                // rate limit (a flow this hook admitted before never touches the limiter).
                if admitted == 0 && v.rate_limit != 0 && over_rate(c, v.rate_limit).is_some() {
                    return Some(deny(c, &Judgement::rate_limited(&v, src_id, dst_id)));
                }
                set_admitted(ct, direction, generation);
                if v.verdict == VERDICT_AUDIT {
                    ct.flags |= CT_AUDIT;
                }
                conntrack::account(key, ct, pkt, false, cfg, now);
                count(v.verdict, if admitted == 0 { v.reason } else { ESTABLISHED }, pkt.len);
                if half_open {
                    promote(stored, ct, pkt);
                }
                Action::Pass
            }
            v => revoke(c, table, stored, key, ct, &Judgement::from_lookup(v, src_id, dst_id)),
        });
    }
    // A reply: the flow's own orientation is the reverse of this packet's.
    let opening = &pkt.flipped;
    if conntrack::expired(ct, opening.proto, cfg, now) || conntrack::reopens(ct, pkt) {
        // A bare SYN from the answering side of a closed connection opens a new one the
        // other way, which policy judges afresh.
        conntrack::report_end(opening, ct, ct.verdict(), ct.reason, cfg);
        let _ = table.remove(stored);
        return None;
    }
    let stale_in = ct.ingress_gen != 0 && ct.ingress_gen != generation;
    let stale_out = ct.egress_gen != 0 && ct.egress_gen != generation;
    if recheck && (stale_in || stale_out) {
        // A reply re-checks the flow in its original orientation, so a revoked flow stops
        // in both directions on the next packet either way.
        let (src_id, dst_id) = identities(opening, slot);
        for (stale, direction) in [(stale_in, DIR_INGRESS), (stale_out, DIR_EGRESS)] {
            if !stale {
                continue;
            }
            match evaluate(opening, direction, slot, src_id, dst_id) {
                Some(v) if v.verdict != VERDICT_DENIED => set_admitted(ct, direction, generation),
                v => return Some(revoke(c, table, stored, opening, ct, &Judgement::from_lookup(v, src_id, dst_id))),
            }
        }
    }
    // A reply never promotes a half-open connection: a server answers every admitted SYN,
    // including those of spoofed sources that will never complete the handshake. Nor does
    // it make the connection established: until the connecting side answers, the SYN
    // timeout applies, so the sweep ends an abandoned handshake in seconds.
    let state = ct.state;
    conntrack::account(opening, ct, pkt, true, cfg, now);
    if half_open && ct.state == STATE_ESTABLISHED {
        ct.state = state;
    }
    count(ct.verdict(), ESTABLISHED, pkt.len);
    Some(Action::Pass)
}

/// Moves a half-open connection (stored under `stored`) into CONNTRACK on the first forward
/// packet after the SYN (the handshake's final ACK, or data): only the connecting side can
/// send it, so spoofed SYNs never reach CONNTRACK. Retransmitted SYNs and ended attempts
/// stay behind.
#[inline(always)]
fn promote(stored: &CtKey, ct: &mut CtValue, pkt: &Packet) {
    if is_bare_syn(pkt) || ct.state == STATE_CLOSED {
        return;
    }
    if ct.state == STATE_SYN_SENT {
        // The handshake completed as far as this hook can see (it may not see replies).
        ct.state = STATE_ESTABLISHED;
    }
    conntrack::create(stored, ct);
    let _ = HALF_OPEN.remove(stored);
}

/// Stops a tracked flow (stored under `stored`, opened by `opening`) that the current
/// policy no longer admits.
#[inline(always)]
fn revoke(
    c: &Ctx,
    table: &LruHashMap<CtKey, CtValue>,
    stored: &CtKey,
    opening: &CtKey,
    ct: &mut CtValue,
    j: &Judgement,
) -> Action {
    conntrack::report_end(opening, ct, VERDICT_DENIED, j.reason, c.cfg);
    let _ = table.remove(stored);
    deny(c, j)
}

/// Takes one new flow from the packet source's bucket of rate limit `index` (see
/// zt_common::ratelimit); `Some(time)` when the source is over the limit, with the time its
/// bucket admits a new flow again. CPUs race on a shared bucket without a lock: two CPUs
/// admitting flows of one source at the same instant may both take the same slot, which
/// errs towards admitting (measured in docs/design.md).
#[inline(never)]
fn over_rate(c: &Ctx, index: u16) -> Option<u64> {
    if exempt(&c.pkt.tuple.src, c.pkt.tuple.family) {
        return None;
    }
    let limit = RATE_LIMITS.get(slot_index(c.slot(), index))?;
    if limit.interval_ns == 0 {
        // Not written (an index beyond what the agent wrote): no limit.
        return None;
    }
    let key = RateKey { src: c.pkt.tuple.src, limit: index, _pad: [0; 2] };
    match RATE_BUCKETS.get_ptr_mut(&key) {
        Some(bucket) => {
            // SAFETY: LRU values stay valid while the program runs (see above for races).
            let bucket = unsafe { &mut *bucket };
            match admit(limit, Some(bucket.tat_ns), c.now) {
                Some(tat_ns) => {
                    bucket.tat_ns = tat_ns;
                    None
                }
                None => Some(readmits_at(limit, bucket.tat_ns)),
            }
        }
        None => match admit(limit, None, c.now) {
            Some(tat_ns) => {
                let _ = RATE_BUCKETS.insert(&key, &RateBucket { tat_ns }, 0);
                None
            }
            // A burst of at least one admits a source without a bucket; for the verifier.
            None => Some(c.now),
        },
    }
}

/// Whether `src` is on the `[detect] never` list (only looked up for rate-limited rules).
#[inline(always)]
fn exempt(src: &Addr, family: u8) -> bool {
    let bits = if family == FAMILY_V4 { 32 } else { 128 };
    let key = Key::new(EXEMPT_FAMILY_BITS + bits, ExemptKey { family, addr: src.bytes });
    EXEMPT.get(&key).is_some()
}

/// Drops a packet from or to a quarantined address: counted, and reported once a report
/// epoch per quarantine entry (see `QuarantineValue::reported_epoch`) rather than against
/// the source's deny-event budget, so a quarantined flood costs one lookup and two
/// counters. The drops not reported count as withheld by the budget, so that log lines
/// plus withheld events still equal denied packets. None counts towards `deny_spike`: the
/// source is already cut off, or it is a peer of a quarantined address.
#[inline(never)]
fn quarantine_drop(c: &Ctx, q: &mut QuarantineValue) -> Action {
    count(VERDICT_DENIED, QUARANTINE, c.pkt.len);
    let epoch = report_epoch(c.now);
    if q.reported_epoch == epoch {
        count_event(KIND_DENY, EVENT_LOST_BUDGET);
        return Action::Drop;
    }
    q.reported_epoch = epoch;
    report(KIND_DENY, c.pkt, &denial(c, &Judgement::bare(QUARANTINE)), c.now);
    Action::Drop
}

/// Whether the packet belongs to traffic a failsafe rule allows — the rule's own direction
/// or the reply to it — which a quarantine never cuts (an operator must not lock himself
/// out by quarantining his own address, nor a detector do it for him). Only quarantined
/// packets ask, so the cost is theirs.
#[inline(never)]
fn failsafe_traffic(c: &Ctx) -> bool {
    if !may_be_failsafe(c.pkt, c.hook.direction) {
        return false;
    }
    let key = &c.pkt.tuple;
    let slot = c.slot();
    let (src_id, dst_id) = identities(key, slot);
    let port = policy_port(key);
    let direction = c.hook.direction;
    let (local, peer) = local_and_peer(direction, src_id, dst_id);
    if is_failsafe(slot, direction, local, peer, key.proto, port) {
        return true;
    }
    // A reply: the flow in its original orientation, judged at the other direction.
    let other = if direction == DIR_INGRESS { DIR_EGRESS } else { DIR_INGRESS };
    let (local, peer) = local_and_peer(other, dst_id, src_id);
    let reply_port = if proto::has_ports(key.proto) { key.src_port } else { 0 };
    is_failsafe(slot, other, local, peer, key.proto, reply_port)
}

/// Whether the packet's protocol and port match a failsafe rule, either way round (the
/// rule's direction: its destination port; the other: a reply, its source port). Only a
/// match is worth the policy lookups that confirm it.
#[inline(always)]
fn may_be_failsafe(pkt: &Packet, direction: u8) -> bool {
    let Some(f) = FAILSAFE.get(0) else {
        return false;
    };
    if f.count == FAILSAFE_ALL {
        return true;
    }
    let key = &pkt.tuple;
    let ports = proto::has_ports(key.proto);
    for i in 0..FAILSAFE_MAX {
        if i >= f.count as usize {
            break;
        }
        let r = &f.rules[i];
        if r.proto != key.proto {
            continue;
        }
        if r.any_port != 0 {
            return true;
        }
        let port = if r.direction == direction { key.dst_port } else { key.src_port };
        if ports && port == r.port {
            return true;
        }
    }
    false
}

/// Drops the packet: counts it and reports it within the source's event budget.
#[inline(always)]
fn deny(c: &Ctx, j: &Judgement) -> Action {
    deny_flooding(c, j);
    Action::Drop
}

/// [`deny`]; true when the source's event budget is spent (it is being denied faster than
/// the budget refills).
#[inline(never)]
fn deny_flooding(c: &Ctx, j: &Judgement) -> bool {
    count(VERDICT_DENIED, j.reason, c.pkt.len);
    packet_event(KIND_DENY, c.pkt, &denial(c, j), c.cfg, c.now)
}

/// The event's account of denying this packet for `j`.
#[inline(always)]
fn denial(c: &Ctx, j: &Judgement) -> Decision {
    Decision {
        verdict: VERDICT_DENIED,
        reason: j.reason,
        direction: c.hook.direction,
        ifindex: c.hook.ifindex,
        src_identity: j.src_identity,
        dst_identity: j.dst_identity,
        policy_id: j.policy_id,
        rule: j.rule,
        generation: c.generation,
    }
}

/// A TCP SYN without ACK: opens a connection, so it is never a reply nor a packet of an
/// established flow.
#[inline(always)]
fn is_bare_syn(pkt: &Packet) -> bool {
    pkt.tuple.proto == proto::TCP && pkt.flags & (proto::TCP_SYN | proto::TCP_ACK) == proto::TCP_SYN
}

/// A repeated attempt of a tuple this hook denied under the active generation: dropped after
/// one lookup instead of a policy evaluation, and reported at most once a second per tuple
/// (see `zt_common::denied`). `None` sends it down the full path: nothing remembered, or a
/// push since (so a push that opens the flow takes effect on this very packet).
#[inline(never)]
fn recently_denied(c: &Ctx) -> Option<Action> {
    let d = DENIED.get_ptr_mut(&c.pkt.tuple)?;
    // SAFETY: LRU values stay valid while the program runs; a racing update at worst
    // reports one event more or fewer.
    let d = unsafe { &mut *d };
    if d.generation != c.generation || d.direction != c.hook.direction || (d.until_ns != 0 && c.now >= d.until_ns) {
        return None;
    }
    count(VERDICT_DENIED, d.reason, c.pkt.len);
    if c.cfg.deny_spike_min != 0 {
        // A flood of one tuple is a deny spike too.
        source_repeat_denied(c.pkt, d.src_identity, c.cfg, c.now);
    }
    if c.now < d.next_event_ns {
        count_event(KIND_DENY, EVENT_LOST_BUDGET);
    } else {
        d.next_event_ns = c.now + DENIED_EVENT_INTERVAL_NS;
        // A repeat counts for the detectors as often as it is reported: it adds no new
        // destination within a window, but a scan repeated in a later window is a scan.
        detect::attempt(c.pkt, c.hook.direction, c.slot(), c.cfg, c.now);
        let decision = Decision {
            verdict: VERDICT_DENIED,
            reason: d.reason,
            direction: c.hook.direction,
            ifindex: c.hook.ifindex,
            src_identity: d.src_identity,
            dst_identity: d.dst_identity,
            policy_id: d.policy_id,
            rule: d.rule,
            generation: c.generation,
        };
        packet_event(KIND_DENY, c.pkt, &decision, c.cfg, c.now);
    }
    Some(Action::Drop)
}

/// Remembers that policy denied this connection attempt (see [`recently_denied`]), while
/// the generation is active, or for a rate-limit denial until `until_ns`; the denial
/// itself is reported as usual.
#[inline(never)]
fn remember_denial(c: &Ctx, j: &Judgement, until_ns: u64) {
    let value = DeniedValue {
        generation: c.generation,
        policy_id: j.policy_id,
        rule: j.rule,
        src_identity: j.src_identity,
        dst_identity: j.dst_identity,
        reason: j.reason,
        direction: c.hook.direction,
        _pad: [0; 2],
        next_event_ns: c.now + DENIED_EVENT_INTERVAL_NS,
        until_ns,
    };
    let _ = DENIED.insert(&c.pkt.tuple, &value, 0);
}

/// A packet no tracked flow accounts for: policy decides. A denial is final here (the drop
/// is returned); an admitted flow is filled into `admitted` for [`let_in`], called beside
/// this function rather than inside it so the two frames never stack.
#[inline(never)]
fn new_flow(c: &Ctx, admitted: &mut Admitted) -> Option<Action> {
    let (pkt, hook) = (c.pkt, c.hook);
    let key = &pkt.tuple;
    let slot = c.slot();
    let (src_id, dst_id) = identities(key, slot);
    let v = evaluate(key, hook.direction, slot, src_id, dst_id);
    let v = match v {
        Some(v) if v.verdict != VERDICT_DENIED => v,
        v => {
            let judged = v.is_some();
            let j = Judgement::from_lookup(v, src_id, dst_id);
            // A bare SYN is always remembered (retransmissions follow it); any other packet
            // once its source floods, so a spoofed flood of distinct tuples does not pay a
            // cache insert per packet while a flood of one tuple soon skips the evaluation.
            let flooding = deny_flooding(c, &j);
            if judged && (flooding || is_bare_syn(pkt)) {
                remember_denial(c, &j, 0);
            }
            return Some(Action::Drop);
        }
    };
    // Remembered like a policy denial, but only until the source's bucket admits again.
    if v.rate_limit != 0
        && let Some(until) = over_rate(c, v.rate_limit)
    {
        let j = Judgement::rate_limited(&v, src_id, dst_id);
        if deny_flooding(c, &j) || is_bare_syn(pkt) {
            remember_denial(c, &j, until);
        }
        return Some(Action::Drop);
    }
    *admitted = Admitted { v, src_id, dst_id };
    None
}

/// Lets a new flow through that policy allowed (or audited): counts it, reports an audit,
/// and tracks it.
#[inline(never)]
fn let_in(c: &Ctx, a: &Admitted) {
    let (pkt, hook, cfg, now) = (c.pkt, c.hook, c.cfg, c.now);
    let (v, src_id, dst_id) = (&a.v, a.src_id, a.dst_id);
    let key = &pkt.tuple;
    count(v.verdict, v.reason, pkt.len);
    let audit = v.verdict == VERDICT_AUDIT;
    if audit {
        let d = Decision {
            verdict: VERDICT_AUDIT,
            reason: v.reason,
            direction: hook.direction,
            ifindex: hook.ifindex,
            src_identity: src_id,
            dst_identity: dst_id,
            policy_id: v.policy_id,
            rule: v.rule,
            generation: c.generation,
        };
        packet_event(KIND_AUDIT, pkt, &d, cfg, now);
    }
    if conntrack::trackable(pkt) {
        let generation = c.generation;
        let reverse = pkt.reverse;
        let ct = CtValue {
            created_ns: now,
            last_seen_ns: now,
            last_report_ns: now,
            fwd_packets: 1,
            fwd_bytes: pkt.len as u64,
            rev_packets: 0,
            rev_bytes: 0,
            ingress_gen: if hook.direction == DIR_INGRESS { generation } else { 0 },
            egress_gen: if hook.direction == DIR_EGRESS { generation } else { 0 },
            ifindex: hook.ifindex,
            src_identity: src_id,
            dst_identity: dst_id,
            policy_id: v.policy_id,
            rule: v.rule,
            state: conntrack::initial_state(pkt),
            flags: if audit { CT_AUDIT } else { 0 } | if reverse { CT_REVERSED } else { 0 },
            direction: hook.direction,
            reason: v.reason,
        };
        if is_bare_syn(pkt) {
            // Half-open until the connecting side completes the handshake (see `promote`).
            let _ = HALF_OPEN.insert(&pkt.stored, &ct, 0);
        } else {
            conntrack::create(&pkt.stored, &ct);
        }
        if !audit && cfg.flags & FLAG_EVENTS_ALLOWED != 0 {
            flow_event(KIND_START, key, &ct, VERDICT_ALLOWED, v.reason);
        }
    }
}

#[inline(always)]
fn frag_key(pkt: &Packet) -> FragKey {
    FragKey {
        src: pkt.tuple.src,
        dst: pkt.tuple.dst,
        id: pkt.frag_id,
        proto: pkt.tuple.proto,
        family: pkt.tuple.family,
        _pad: [0; 2],
    }
}

/// Records a first fragment's verdict for the fragments that follow it.
#[inline(never)]
fn remember_fragment(pkt: &Packet, action: Action, now: u64) {
    let verdict = if action == Action::Pass { VERDICT_ALLOWED } else { VERDICT_DENIED };
    let value = FragValue { created_ns: now, verdict, _pad: [0; 7] };
    let _ = FRAGMENTS.insert(&frag_key(pkt), &value, 0);
}

/// A later fragment carries no ports: it follows its first fragment, or is dropped when
/// that was never seen (out-of-order or forged fragments).
#[inline(never)]
fn follow_fragment(c: &Ctx) -> Action {
    // SAFETY: read-only use of the value.
    if let Some(f) = unsafe { FRAGMENTS.get(&frag_key(c.pkt)) } {
        if c.now.saturating_sub(f.created_ns) < FRAGMENT_TIMEOUT_NS {
            count(f.verdict, FRAGMENT, c.pkt.len);
            return if f.verdict == VERDICT_DENIED { Action::Drop } else { Action::Pass };
        }
    }
    deny(c, &Judgement::bare(FRAGMENT_UNKNOWN))
}
