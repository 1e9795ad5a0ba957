//! BPF_PROG_TEST_RUN tests of the loaded kernel programs: one test per verdict path, for
//! IPv4 and IPv6, VLAN, fragments, truncated headers at every layer, conntrack replies and
//! related ICMP errors, audit, failsafe, quarantine, the generation switch, per-source rate
//! limits and half-open TCP handshakes.
//!
//! The tables are written by hand: the datapath's contract is the map layout. Identities:
//! the host (1) at 198.18.0.2 / fd00::2, `api` (300) at 198.18.0.1 / fd00::1, `db` (301) at
//! 198.18.0.3, everything else world (2).

mod testrun;

use testrun::{
    fixture::*,
    packet::{self, ACK, FIN, Frag, L4, Pkt, RST, SYN},
};
use zt_agent::datapath::Tables;
use zt_common::{
    addr::Addr,
    config::{FLAG_QUARANTINE_ACTIVE, FLAG_RECHECK_ESTABLISHED},
    conntrack::STATE_SYN_SENT,
    event::{KIND_AUDIT, KIND_DENY, KIND_END, KIND_START},
    identity::{ANY, HOST, WORLD},
    quarantine::QuarantineValue,
    ratelimit::RateLimit,
    reason::*,
    stats::{EVENT_LOST_BUDGET, EVENT_SUBMITTED},
};

const API: u32 = 300;
const DB: u32 = 301;
const HOST4: &str = "198.18.0.2";
const API4: &str = "198.18.0.1";
const DB4: &str = "198.18.0.3";
const WORLD4: &str = "198.18.5.5";
const HOST6: &str = "fd00::2";
const API6: &str = "fd00::1";
const WORLD6: &str = "fd00:99::5";

const P_DB: u32 = 1; // allows api -> host tcp/5432, udp/5000, sctp/9000
const P_PING: u32 = 2; // allows icmp echo from anyone
const P_BLOCK: u32 = 3; // denies api -> host tcp/6000
const P_OUT: u32 = 4; // allows host -> any tcp/443
const P_AUDIT: u32 = 5; // audit: db -> host tcp/8080 would be default-denied

fn base() -> TablesBuilder {
    let allow = |p, r| verdict(VERDICT_ALLOWED, POLICY, p, r);
    TablesBuilder::new()
        .ip(&format!("{HOST4}/32"), HOST)
        .ip(&format!("{API4}/32"), API)
        .ip(&format!("{DB4}/32"), DB)
        .ip(&format!("{HOST6}/128"), HOST)
        .ip(&format!("{API6}/128"), API)
        .port(DIR_INGRESS, HOST, API, packet::TCP, 5432, allow(P_DB, 0))
        .port(DIR_INGRESS, HOST, API, packet::UDP, 5000, allow(P_DB, 1))
        .port(DIR_INGRESS, HOST, API, packet::SCTP, 9000, allow(P_DB, 2))
        .proto(DIR_INGRESS, HOST, ANY, packet::ICMP, allow(P_PING, 0))
        .proto(DIR_INGRESS, HOST, ANY, packet::ICMPV6, allow(P_PING, 1))
        .port(DIR_INGRESS, HOST, API, packet::TCP, 6000, verdict(VERDICT_DENIED, DENY_RULE, P_BLOCK, 0))
        .port(DIR_INGRESS, HOST, ANY, packet::TCP, 22, verdict(VERDICT_ALLOWED, FAILSAFE, 0, NO_RULE))
        .port(DIR_INGRESS, HOST, DB, packet::TCP, 8080, verdict(VERDICT_AUDIT, DEFAULT_DENY, P_AUDIT, NO_RULE))
        .port(DIR_EGRESS, HOST, ANY, packet::TCP, 443, allow(P_OUT, 0))
        .any(DIR_INGRESS, ANY, ANY, verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE))
        .any(DIR_EGRESS, ANY, ANY, verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE))
}

fn fixture() -> Option<Fixture> {
    privileged().then(|| Fixture::with(&base().build()))
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    Pkt::new(src, dst, L4::tcp(sport, dport, flags)).frame()
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    Pkt::new(src, dst, L4::udp(sport, dport)).frame()
}

#[test]
fn allowed_syn_passes_counts_policy_and_reports_flow_start() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, POLICY).packets, 1);
    let ev = f.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].kind, ev[0].verdict, ev[0].reason), (KIND_START, VERDICT_ALLOWED, POLICY));
    assert_eq!((ev[0].policy_id, ev[0].rule), (P_DB, 0));
    assert_eq!((ev[0].src_identity, ev[0].dst_identity), (API, HOST));
    assert_eq!((ev[0].src_port, ev[0].dst_port, ev[0].direction), (40000, 5432, DIR_INGRESS));
    assert_eq!(f.maps.half_open_len(), 1, "the SYN is tracked, half-open until the handshake completes");
    assert_eq!(f.maps.conntrack_len(), 0);
}

/// The time of a flow event sent between two readings of CLOCK_MONOTONIC falls between
/// them, give or take the coarse clock's tick.
fn assert_event_time_is_monotonic(f: &mut Fixture, sport: u16, tick_ns: u64) {
    let before = zt_api::clock::monotonic_ns();
    assert_eq!(f.xdp(&tcp(API4, HOST4, sport, 5432, SYN)), XDP_PASS);
    let after = zt_api::clock::monotonic_ns();
    let ev = f.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    let t = ev[0].time_ns;
    assert!(
        t + 2 * tick_ns >= before && t <= after + tick_ns,
        "event at {t} ns, CLOCK_MONOTONIC {before}..{after} ns, tick {tick_ns} ns"
    );
}

#[test]
fn the_programs_clock_is_calibrated_from_jiffies_and_reads_as_clock_monotonic() {
    let Some(mut f) = fixture() else { return };
    let clock = f.dp.clock.clone().expect("the clock is calibrated at load");
    assert!(clock.hz().is_some(), "{clock:?}");
    assert_event_time_is_monotonic(&mut f, 40000, clock.tick_ns);
    // Without a calibration the programs read the coarse clock's helper: the same scale.
    f.dp.set_clock(&zt_common::clock::Clock::default()).unwrap();
    assert_event_time_is_monotonic(&mut f, 40001, clock.tick_ns);
    // A wrong offset shows in the events: the programs do read the calibration.
    let shifted = zt_common::clock::Clock { base_ns: clock.base_ns.wrapping_add(3_600_000_000_000), ..clock };
    f.dp.set_clock(&shifted).unwrap();
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40002, 5432, SYN)), XDP_PASS);
    let ev = f.events();
    assert!(ev[0].time_ns > zt_api::clock::monotonic_ns() + 3_500_000_000_000, "{ev:?}");
}

#[test]
fn unknown_source_is_dropped_by_default_deny_and_reported() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(WORLD4, HOST4, 40000, 5432, SYN)), XDP_DROP);
    assert_eq!(f.stats().get(VERDICT_DENIED, DEFAULT_DENY).packets, 1);
    let ev = f.events();
    assert_eq!((ev[0].kind, ev[0].verdict, ev[0].reason), (KIND_DENY, VERDICT_DENIED, DEFAULT_DENY));
    assert_eq!((ev[0].src_identity, ev[0].dst_identity), (WORLD, HOST));
    assert_eq!(f.maps.conntrack_len(), 0, "denied flows are not tracked");
}

#[test]
fn deny_rule_drops_and_names_policy_and_rule() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 6000, SYN)), XDP_DROP);
    assert_eq!(f.stats().get(VERDICT_DENIED, DENY_RULE).packets, 1);
    let ev = f.events();
    assert_eq!((ev[0].reason, ev[0].policy_id, ev[0].rule), (DENY_RULE, P_BLOCK, 0));
}

#[test]
fn replies_to_an_admitted_inbound_flow_pass_as_established() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    // Egress policy denies host -> api:40000, but this is a reply.
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 5432, 40000, SYN | ACK)), TC_ACT_OK);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, ACK)), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, ESTABLISHED).packets, 2);
    assert_eq!(f.stats().get(VERDICT_DENIED, DEFAULT_DENY).packets, 0);
}

#[test]
fn replies_to_an_admitted_outbound_flow_pass_without_an_ingress_rule() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 41000, 443, SYN)), TC_ACT_OK);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, POLICY).packets, 1);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 443, 41000, SYN | ACK)), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, ESTABLISHED).packets, 1);
    // The same packet without the outbound flow is a new inbound flow: denied.
    assert_eq!(f.xdp(&tcp(API4, HOST4, 443, 41001, SYN | ACK)), XDP_DROP);
}

#[test]
fn outbound_flow_without_egress_allow_is_dropped() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 41000, 80, SYN)), TC_ACT_SHOT);
    let ev = f.events();
    assert_eq!((ev[0].direction, ev[0].reason), (DIR_EGRESS, DEFAULT_DENY));
}

#[test]
fn udp_flow_is_admitted_and_its_replies_pass() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&udp(API4, HOST4, 50000, 5000)), XDP_PASS);
    assert_eq!(f.tc_egress(&udp(HOST4, API4, 5000, 50000)), TC_ACT_OK);
    assert_eq!(f.xdp(&udp(API4, HOST4, 50000, 5001)), XDP_DROP, "another port is not allowed");
    let s = f.stats();
    assert_eq!(s.get(VERDICT_ALLOWED, POLICY).packets, 1);
    assert_eq!(s.get(VERDICT_ALLOWED, ESTABLISHED).packets, 1);
}

#[test]
fn sctp_ports_are_matched() {
    let Some(mut f) = fixture() else { return };
    let sctp = |dport| Pkt::new(API4, HOST4, L4::Sctp { sport: 7000, dport }).frame();
    assert_eq!(f.xdp(&sctp(9000)), XDP_PASS);
    assert_eq!(f.xdp(&sctp(9001)), XDP_DROP);
}

#[test]
fn icmp_echo_is_admitted_and_the_reply_is_established() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&Pkt::new(WORLD4, HOST4, L4::echo_request(false, 77)).frame()), XDP_PASS);
    assert_eq!(f.tc_egress(&Pkt::new(HOST4, WORLD4, L4::echo_reply(false, 77)).frame()), TC_ACT_OK);
    let s = f.stats();
    assert_eq!(s.get(VERDICT_ALLOWED, POLICY).packets, 1);
    assert_eq!(s.get(VERDICT_ALLOWED, ESTABLISHED).packets, 1);
    // A reply with another identifier matches no flow and egress policy denies it.
    assert_eq!(f.tc_egress(&Pkt::new(HOST4, WORLD4, L4::echo_reply(false, 78)).frame()), TC_ACT_SHOT);
}

#[test]
fn icmp_error_about_a_tracked_flow_passes_as_related() {
    let Some(mut f) = fixture() else { return };
    let out = Pkt::new(HOST4, API4, L4::tcp(41000, 443, ACK));
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 41000, 443, SYN)), TC_ACT_OK);
    // "Fragmentation needed" from a router (world) quoting the host's own packet. ICMP
    // from world is allowed by P_PING here, so use the egress-only view: drop the ping rule
    // by testing on a table without it.
    let mut no_ping = Fixture::with(&related_tables().build());
    assert_eq!(no_ping.tc_egress(&tcp(HOST4, API4, 41000, 443, SYN)), TC_ACT_OK);
    let err = packet::icmp_error(WORLD4, HOST4, &out).frame();
    assert_eq!(no_ping.xdp(&err), XDP_PASS);
    assert_eq!(no_ping.stats().get(VERDICT_ALLOWED, RELATED).packets, 1);
    // The same error about a flow that does not exist is just ICMP from world: denied.
    let stray = packet::icmp_error(WORLD4, HOST4, &Pkt::new(HOST4, API4, L4::tcp(41001, 443, ACK))).frame();
    assert_eq!(no_ping.xdp(&stray), XDP_DROP);
    drop(f);
}

fn related_tables() -> TablesBuilder {
    TablesBuilder::new()
        .ip(&format!("{HOST4}/32"), HOST)
        .ip(&format!("{API4}/32"), API)
        .ip(&format!("{HOST6}/128"), HOST)
        .ip(&format!("{API6}/128"), API)
        .port(DIR_EGRESS, HOST, ANY, packet::TCP, 443, verdict(VERDICT_ALLOWED, POLICY, P_OUT, 0))
        .any(DIR_INGRESS, ANY, ANY, verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE))
        .any(DIR_EGRESS, ANY, ANY, verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE))
}

#[test]
fn icmpv6_packet_too_big_about_a_tracked_flow_passes_as_related() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::with(&related_tables().build());
    assert_eq!(f.tc_egress(&tcp(HOST6, API6, 41000, 443, SYN)), TC_ACT_OK);
    let quoted = Pkt::new(HOST6, API6, L4::tcp(41000, 443, ACK));
    assert_eq!(f.xdp(&packet::icmp_error(WORLD6, HOST6, &quoted).frame()), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, RELATED).packets, 1);
}

#[test]
fn ipv6_flows_are_judged_like_ipv4() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(API6, HOST6, 40000, 5432, SYN)), XDP_PASS);
    assert_eq!(f.tc_egress(&tcp(HOST6, API6, 5432, 40000, SYN | ACK)), TC_ACT_OK);
    assert_eq!(f.xdp(&tcp(WORLD6, HOST6, 40000, 5432, SYN)), XDP_DROP);
    assert_eq!(f.xdp(&Pkt::new(WORLD6, HOST6, L4::echo_request(true, 9)).frame()), XDP_PASS);
    let s = f.stats();
    assert_eq!(s.get(VERDICT_ALLOWED, POLICY).packets, 2);
    assert_eq!(s.get(VERDICT_ALLOWED, ESTABLISHED).packets, 1);
    assert_eq!(s.get(VERDICT_DENIED, DEFAULT_DENY).packets, 1);
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_transport_header() {
    let Some(mut f) = fixture() else { return };
    let with_ext = Pkt::new(API6, HOST6, L4::tcp(40000, 5432, SYN)).ipv6_ext(&[0, 60, 43]);
    assert_eq!(f.xdp(&with_ext.frame()), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, POLICY).packets, 1);
    // Exactly six extension headers is the limit, and is walked.
    let six = Pkt::new(API6, HOST6, L4::tcp(40002, 5432, SYN)).ipv6_ext(&[0, 60, 60, 60, 60, 43]);
    assert_eq!(f.xdp(&six.frame()), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, POLICY).packets, 2);
    let too_many = Pkt::new(API6, HOST6, L4::tcp(40001, 5432, SYN)).ipv6_ext(&[0, 60, 60, 60, 60, 60, 60]);
    assert_eq!(f.xdp(&too_many.frame()), XDP_DROP);
    assert_eq!(f.stats().get(VERDICT_DENIED, MALFORMED).packets, 1);
}

#[test]
fn ipv4_options_are_skipped() {
    let Some(mut f) = fixture() else { return };
    let with_opts = Pkt::new(API4, HOST4, L4::tcp(40000, 5432, SYN)).ipv4_options(12);
    assert_eq!(f.xdp(&with_opts.frame()), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, POLICY).packets, 1);
}

#[test]
fn vlan_tagged_frames_are_parsed_single_and_double_tagged() {
    let Some(mut f) = fixture() else { return };
    let one = Pkt::new(API4, HOST4, L4::tcp(40000, 5432, SYN)).vlan(10);
    let two = Pkt::new(WORLD4, HOST4, L4::tcp(40001, 5432, SYN)).vlan(100).vlan(10);
    assert_eq!(f.xdp(&one.frame()), XDP_PASS);
    assert_eq!(f.xdp(&two.frame()), XDP_DROP);
    let s = f.stats();
    assert_eq!(s.get(VERDICT_ALLOWED, POLICY).packets, 1);
    assert_eq!(s.get(VERDICT_DENIED, DEFAULT_DENY).packets, 1, "double-tagged frame reached policy");
}

#[test]
fn later_fragments_follow_their_first_fragment() {
    let Some(mut f) = fixture() else { return };
    for (src, dst) in [(API4, HOST4), (API6, HOST6)] {
        let first = Pkt::new(src, dst, L4::udp(50000, 5000)).frag(Frag::First { id: 7 });
        let later = Pkt::new(src, dst, L4::udp(50000, 5000)).frag(Frag::Later { id: 7, offset: 3 });
        assert_eq!(f.xdp(&first.frame()), XDP_PASS);
        assert_eq!(f.xdp(&later.frame()), XDP_PASS);
    }
    assert_eq!(f.stats().get(VERDICT_ALLOWED, FRAGMENT).packets, 2);
}

#[test]
fn later_fragments_of_a_denied_first_fragment_are_dropped() {
    let Some(mut f) = fixture() else { return };
    let first = Pkt::new(WORLD4, HOST4, L4::udp(50000, 5000)).frag(Frag::First { id: 8 });
    let later = Pkt::new(WORLD4, HOST4, L4::udp(50000, 5000)).frag(Frag::Later { id: 8, offset: 3 });
    assert_eq!(f.xdp(&first.frame()), XDP_DROP);
    assert_eq!(f.xdp(&later.frame()), XDP_DROP);
    assert_eq!(f.stats().get(VERDICT_DENIED, FRAGMENT).packets, 1);
}

#[test]
fn fragments_without_a_first_fragment_are_dropped_and_counted() {
    let Some(mut f) = fixture() else { return };
    for (src, dst) in [(API4, HOST4), (API6, HOST6)] {
        let later = Pkt::new(src, dst, L4::udp(50000, 5000)).frag(Frag::Later { id: 99, offset: 3 });
        assert_eq!(f.xdp(&later.frame()), XDP_DROP);
    }
    assert_eq!(f.stats().get(VERDICT_DENIED, FRAGMENT_UNKNOWN).packets, 2);
}

/// Frames cut short at every layer, and frames with impossible header fields.
fn malformed_frames() -> Vec<(&'static str, Vec<u8>)> {
    let v4 = Pkt::new(API4, HOST4, L4::tcp(40000, 5432, SYN)).frame();
    let v6 = Pkt::new(API6, HOST6, L4::tcp(40000, 5432, SYN)).frame();
    let vlan = Pkt::new(API4, HOST4, L4::tcp(40000, 5432, SYN)).vlan(5).frame();
    let v6ext = Pkt::new(API6, HOST6, L4::tcp(40000, 5432, SYN)).ipv6_ext(&[0]).frame();
    let opts = Pkt::new(API4, HOST4, L4::tcp(40000, 5432, SYN)).ipv4_options(40).frame();
    let udp4 = Pkt::new(API4, HOST4, L4::udp(1, 5000)).ip_bytes();
    let icmp4 = Pkt::new(API4, HOST4, L4::echo_request(false, 1)).ip_bytes();
    let eth = |ip: &[u8], n: usize| {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        f.extend(&ip[..n]);
        f
    };
    let mut bad_version = v4.clone();
    bad_version[14] = 0x55;
    let mut short_ihl = v4.clone();
    short_ihl[14] = 0x44;
    let mut tot_len_below_ihl = v4.clone();
    tot_len_below_ihl[16..18].copy_from_slice(&10u16.to_be_bytes());
    let mut bad_v6_version = v6.clone();
    bad_v6_version[14] = 0x40;
    let mut tcp_doff = v4.clone();
    tcp_doff[14 + 20 + 12] = 0x20;
    // Frames shorter than an Ethernet header never reach XDP or TC (drivers drop runts, and
    // BPF_PROG_TEST_RUN refuses them), so the shortest case is a tag or IP header cut off.
    vec![
        ("vlan tag", vlan[..16].to_vec()),
        ("ip header missing", v4[..14].to_vec()),
        ("ipv4 header", v4[..14 + 12].to_vec()),
        ("ipv4 options", opts[..14 + 40].to_vec()),
        ("tcp header", v4[..14 + 20 + 10].to_vec()),
        ("udp header", eth(&udp4, 20 + 4)),
        ("icmp header", eth(&icmp4, 20 + 4)),
        ("ipv6 header", v6[..14 + 30].to_vec()),
        ("ipv6 extension header", v6ext[..14 + 40 + 1].to_vec()),
        ("tcp over ipv6", v6[..14 + 40 + 8].to_vec()),
        ("ipv4 version", bad_version),
        ("ipv4 ihl below 5", short_ihl),
        ("ipv4 total length below header", tot_len_below_ihl),
        ("ipv6 version", bad_v6_version),
        ("tcp data offset below 5", tcp_doff),
    ]
}

#[test]
fn malformed_and_truncated_headers_are_dropped_as_malformed_never_aborted() {
    let Some(mut f) = fixture() else { return };
    let frames = malformed_frames();
    for (what, frame) in &frames {
        assert_eq!(f.xdp(frame), XDP_DROP, "xdp: {what}");
    }
    assert_eq!(f.stats().get(VERDICT_DENIED, MALFORMED).packets, frames.len() as u64);
    let ev = f.events();
    assert!(ev.iter().all(|e| e.reason == MALFORMED && e.kind == KIND_DENY), "{ev:?}");
}

#[test]
fn malformed_headers_are_dropped_on_tc_too() {
    let Some(mut f) = fixture() else { return };
    let frames = malformed_frames();
    for (what, frame) in &frames {
        // The kernel builds no test skb whose fixed IP header is incomplete (EINVAL); the
        // XDP test covers those cases.
        if ["ip header missing", "ipv4 header", "ipv6 header"].contains(what) {
            continue;
        }
        assert_eq!(f.tc_ingress(frame), TC_ACT_SHOT, "tc ingress: {what}");
    }
}

#[test]
fn non_ip_frames_pass_and_are_counted() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&packet::arp()), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, NON_IP).packets, 1);
}

/// Neighbour discovery passes without policy only over IPv6: an IPv4 packet of protocol 58
/// whose first byte looks like a neighbour solicitation is judged by policy like any other
/// (here: dropped by default-deny). Found by the datapath fuzzer: it used to pass.
#[test]
fn icmpv6_neighbor_discovery_types_inside_ipv4_are_judged_by_policy() {
    let Some(mut f) = fixture() else { return };
    // To db, which no rule lets ICMPv6 reach (the host allows it from anyone).
    let mut frame = Pkt::new(WORLD4, DB4, L4::Icmp { ty: 135, code: 0, rest: 0, payload: vec![0; 16] }).frame();
    frame[14 + 9] = 58; // IPv4 protocol: ICMPv6
    assert_eq!(f.xdp(&frame), XDP_DROP);
    assert_eq!(f.tc_ingress(&frame), TC_ACT_SHOT);
    assert_eq!(f.stats().get(VERDICT_DENIED, DEFAULT_DENY).packets, 2);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, NEIGHBOR_DISCOVERY).packets, 0);
}

#[test]
fn ipv6_neighbor_discovery_passes_without_policy_like_arp() {
    let Some(mut f) = fixture() else { return };
    // Neighbour solicitation (135) from the unspecified address, as DAD sends it.
    let ns = Pkt::new("::", "ff02::1:ff00:2", L4::Icmp { ty: 135, code: 0, rest: 0, payload: vec![0; 16] });
    assert_eq!(f.xdp(&ns.frame()), XDP_PASS);
    assert_eq!(f.tc_egress(&ns.frame()), TC_ACT_OK);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, NEIGHBOR_DISCOVERY).packets, 2);
    assert!(f.events().is_empty(), "link infrastructure is not logged");
}

#[test]
fn audit_mode_passes_what_it_would_drop_and_reports_it() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(DB4, HOST4, 40000, 8080, SYN)), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_AUDIT, DEFAULT_DENY).packets, 1);
    let ev = f.events();
    assert_eq!((ev[0].kind, ev[0].verdict, ev[0].policy_id), (KIND_AUDIT, VERDICT_AUDIT, P_AUDIT));
    // The flow is tracked, so its next packet is not reported again.
    assert_eq!(f.xdp(&tcp(DB4, HOST4, 40000, 8080, ACK)), XDP_PASS);
    assert!(f.events().is_empty());
    assert_eq!(f.stats().get(VERDICT_AUDIT, ESTABLISHED).packets, 1);
}

/// `--default-deny audit` with no policy: the catch-all of both directions is an audit
/// verdict with reason default-deny (what the compiler writes, see zt-policy's audit tests).
#[test]
fn default_deny_in_audit_mode_passes_reports_and_tracks_every_new_flow() {
    if !privileged() {
        return;
    }
    let audit = verdict(VERDICT_AUDIT, DEFAULT_DENY, 0, NO_RULE);
    let tables = TablesBuilder::new()
        .ip(&format!("{HOST4}/32"), HOST)
        .any(DIR_INGRESS, ANY, ANY, audit)
        .any(DIR_EGRESS, ANY, ANY, audit)
        .build();
    let mut f = Fixture::with(&tables);
    assert_eq!(f.xdp(&tcp(WORLD4, HOST4, 40000, 7777, SYN)), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_AUDIT, DEFAULT_DENY).packets, 1);
    assert_eq!(f.stats().get(VERDICT_DENIED, DEFAULT_DENY).packets, 0);
    let ev = f.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].kind, ev[0].verdict, ev[0].reason), (KIND_AUDIT, VERDICT_AUDIT, DEFAULT_DENY));
    assert_eq!((ev[0].src_identity, ev[0].dst_identity, ev[0].dst_port), (WORLD, HOST, 7777));
    // Tracked like an allowed flow: the reply and the handshake pass as established.
    assert_eq!(f.tc_egress(&tcp(HOST4, WORLD4, 7777, 40000, SYN | ACK)), TC_ACT_OK);
    assert_eq!(f.xdp(&tcp(WORLD4, HOST4, 40000, 7777, ACK)), XDP_PASS);
    assert!(f.events().is_empty(), "one audit line per flow");
    // The host's own new flows are audited at egress the same way.
    assert_eq!(f.tc_egress(&udp(HOST4, WORLD4, 5353, 53)), TC_ACT_OK);
    assert_eq!(f.stats().get(VERDICT_AUDIT, DEFAULT_DENY).packets, 2);
}

#[test]
fn failsafe_admits_ssh_to_the_host_from_anywhere() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(WORLD4, HOST4, 40000, 22, SYN)), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, FAILSAFE).packets, 1);
}

/// Quarantines the IPv4 address `ip` until released, as the agent does.
fn quarantine(f: &mut Fixture, ip: &str) {
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    f.maps
        .quarantine
        .insert(Addr::from_v4(ip.octets()), QuarantineValue::new(0, 0, zt_common::quarantine::ORIGIN_MANUAL), 0)
        .unwrap();
    f.config(|c| c.flags |= FLAG_QUARANTINE_ACTIVE);
}

#[test]
fn quarantined_sources_are_dropped_even_on_established_flows() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    quarantine(&mut f, API4);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, ACK)), XDP_DROP);
    assert_eq!(f.stats().get(VERDICT_DENIED, QUARANTINE).packets, 1);
}

#[test]
fn a_quarantined_flood_is_counted_whole_and_reported_once_an_epoch_per_entry() {
    let Some(mut f) = fixture() else { return };
    quarantine(&mut f, API4);
    for sport in 40000..40010 {
        assert_eq!(f.xdp(&tcp(API4, HOST4, sport, 5432, SYN)), XDP_DROP);
    }
    let s = f.stats();
    assert_eq!(s.get(VERDICT_DENIED, QUARANTINE).packets, 10);
    // Lines + withheld = packets, as for every denial.
    assert_eq!(s.event(KIND_DENY, EVENT_SUBMITTED), 1);
    assert_eq!(s.event(KIND_DENY, EVENT_LOST_BUDGET), 9);
    let ev = f.events();
    assert_eq!(ev.len(), 1, "one report for the entry in this epoch: {ev:?}");
    assert_eq!((ev[0].reason, ev[0].src_port), (QUARANTINE, 40000));
    let key = Addr::from_v4(API4.parse::<std::net::Ipv4Addr>().unwrap().octets());
    let entry = f.maps.quarantine.get(&key, 0).unwrap();
    let now = zt_common::quarantine::report_epoch(zt_api::clock::monotonic_ns());
    assert!(entry.reported_epoch + 1 >= now && entry.reported_epoch <= now, "{entry:?} vs epoch {now}");
    // An entry written again (as the agent does) reports its next drop.
    quarantine(&mut f, API4);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40010, 5432, SYN)), XDP_DROP);
    assert_eq!(f.events().len(), 1);
    // A flood towards a quarantined address is reported by that address's entry.
    quarantine(&mut f, DB4);
    assert_eq!(f.tc_egress(&tcp(HOST4, DB4, 40011, 443, SYN)), TC_ACT_SHOT);
    assert_eq!(f.tc_egress(&tcp(HOST4, DB4, 40012, 443, SYN)), TC_ACT_SHOT);
    let ev = f.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].reason, ev[0].direction), (QUARANTINE, DIR_EGRESS));
}

#[test]
fn a_quarantine_never_cuts_failsafe_traffic_either_way() {
    let Some(mut f) = fixture() else { return };
    // What the agent writes for the default failsafe rule (inbound TCP 22).
    f.maps.write_failsafe(&[(DIR_INGRESS, packet::TCP, Some(22))]).unwrap();
    quarantine(&mut f, API4);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_DROP, "policy would allow it: quarantined");
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40001, 22, SYN)), XDP_PASS, "the failsafe port stays reachable");
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 22, 40001, SYN | ACK)), TC_ACT_OK, "and its replies pass");
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 40002, 443, SYN)), TC_ACT_SHOT, "other traffic to it is cut");
    let s = f.stats();
    assert_eq!(s.get(VERDICT_DENIED, QUARANTINE).packets, 2);
    assert_eq!(s.get(VERDICT_ALLOWED, FAILSAFE).packets, 1);
    // Without the pre-check's rules the kernel does not even ask the policy.
    f.maps.write_failsafe(&[]).unwrap();
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40003, 22, SYN)), XDP_DROP);
}

#[test]
fn without_a_loaded_generation_everything_ip_is_dropped() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new();
    assert_eq!(f.xdp(&tcp(WORLD4, HOST4, 40000, 22, SYN)), XDP_DROP);
    assert_eq!(f.stats().get(VERDICT_DENIED, NO_POLICY).packets, 1);
    assert_eq!(f.xdp(&packet::arp()), XDP_PASS);
}

#[test]
fn generation_switch_applies_new_policy_and_revokes_flows_it_no_longer_admits() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    f.events();
    // The new generation no longer allows api -> 5432.
    let tightened = TablesBuilder::new()
        .ip(&format!("{HOST4}/32"), HOST)
        .ip(&format!("{API4}/32"), API)
        .any(DIR_INGRESS, ANY, ANY, verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE))
        .any(DIR_EGRESS, ANY, ANY, verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE));
    assert_eq!(f.apply(&tightened.build()), 2);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40001, 5432, SYN)), XDP_DROP, "new flow under the new policy");
    // The reply of the established flow is re-checked and the flow revoked.
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 5432, 40000, SYN | ACK)), TC_ACT_SHOT);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, ACK)), XDP_DROP);
    let ev = f.events();
    assert!(ev.iter().any(|e| e.kind == KIND_END && e.verdict == VERDICT_DENIED), "{ev:?}");
    assert_eq!(f.maps.conntrack_len(), 0);
    // Back to the old policy: a third generation, and the old slot is reused.
    assert_eq!(f.apply(&base().build()), 3);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40002, 5432, SYN)), XDP_PASS);
}

#[test]
fn established_flows_finish_when_recheck_is_disabled() {
    let Some(mut f) = fixture() else { return };
    f.config(|c| c.flags &= !FLAG_RECHECK_ESTABLISHED);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    let tightened = TablesBuilder::new().ip(&format!("{HOST4}/32"), HOST).ip(&format!("{API4}/32"), API).any(
        DIR_INGRESS,
        ANY,
        ANY,
        verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE),
    );
    f.apply(&tightened.build());
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, ACK)), XDP_PASS);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40001, 5432, SYN)), XDP_DROP);
}

/// Flips CONFIG between generations `a` and `b` from a second thread, as fast as pushes
/// could, while `packets` runs; returns how many flips happened under it.
fn flipping_generations<T>(f: &mut Fixture, a: u32, b: u32, packets: impl FnOnce(&mut Fixture) -> T) -> (T, u64) {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    // A second handle on the pinned CONFIG map, as a concurrent push has.
    let pinned = aya::maps::MapData::from_pin(f.dp.pin_dir().join("ZT_CONFIG")).unwrap();
    let mut config: aya::maps::Array<_, zt_common::config::Config> =
        aya::maps::Array::try_from(aya::maps::Map::Array(pinned)).unwrap();
    let template = f.maps.read_config().unwrap();
    // The packets and the flips must really run at the same time: on two CPUs of their own,
    // not taking turns on one.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus >= 2, "the race needs two CPUs");
    let runner_cpus = pin_to_cpu(0);
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin_to_cpu(1);
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let generation = if flips.is_multiple_of(2) { a } else { b };
                config.set(0, zt_common::config::Config { generation, ..template }, 0).unwrap();
                flips += 1;
            }
            flips
        })
    };
    let out = packets(f);
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    // SAFETY: restores the affinity mask read by `pin_to_cpu` for this thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &runner_cpus) };
    (out, flips)
}

/// Pins the calling thread to `cpu`; returns its previous affinity mask.
fn pin_to_cpu(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; the calls read and write masks owned by this frame.
    unsafe {
        let mut before: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut before);
        let mut only: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut only);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &only), 0, "pin to CPU {cpu}");
        before
    }
}

/// Generations whose only difference is whether api -> host TCP 5432 is allowed.
fn allowing_5432(allow: bool) -> TablesBuilder {
    let b = TablesBuilder::new().ip(&format!("{HOST4}/32"), HOST).ip(&format!("{API4}/32"), API);
    let b = if allow {
        b.port(DIR_INGRESS, HOST, API, packet::TCP, 5432, verdict(VERDICT_ALLOWED, POLICY, P_DB, 0))
    } else {
        b
    };
    b.any(DIR_INGRESS, ANY, ANY, verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE)).any(
        DIR_EGRESS,
        ANY,
        ANY,
        verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE),
    )
}

/// Every tracked flow must carry the generation `allowing` that admitted it; under the
/// denying generation each of `ports` is then re-checked and stopped.
fn assert_stamped_by(f: &mut Fixture, allowing: u32, denying: u32, ports: &[u16]) {
    f.config(|c| c.generation = denying);
    let wrong: Vec<u32> = f
        .maps
        .conntrack
        .iter()
        .filter_map(Result::ok)
        .map(|(_, ct)| ct.ingress_gen)
        .filter(|&g| g != allowing)
        .collect();
    assert!(wrong.is_empty(), "{} flows judged by generation {allowing} were stamped {wrong:?}", wrong.len());
    let leaked = ports.iter().filter(|&&p| f.xdp(&tcp(API4, HOST4, p, 5432, ACK)) == XDP_PASS).count();
    assert_eq!(leaked, 0, "flows admitted under generation {allowing} must be re-checked and stopped under {denying}");
}

/// Events name the generation that made the decision they report: starts the allowing
/// one, denials the denying one.
fn assert_events_name(events: &[zt_common::event::FlowEvent], allowing: u32, denying: u32) {
    let misreported: Vec<(u8, u32)> = events
        .iter()
        .filter(|e| {
            (e.kind == KIND_DENY && e.generation != denying) || (e.kind == KIND_START && e.generation != allowing)
        })
        .map(|e| (e.kind, e.generation))
        .collect();
    assert!(
        misreported.is_empty(),
        "{} events name another generation than the one that judged them, e.g. {:?}",
        misreported.len(),
        &misreported[..misreported.len().min(10)]
    );
}

/// The generation is read once per packet, so a flow is stamped with the generation whose
/// policy judged it. Pushes overwrite CONFIG in place while packets are being decided: a
/// flow judged under generation N but stamped N+1 would pass as established under N+1
/// without a re-check, and a tightening push would never stop it. New flows here race a
/// second thread flipping between an allowing and a denying generation.
#[test]
fn new_flows_are_stamped_with_the_generation_that_judged_them_while_pushes_race() {
    let Some(mut f) = privileged().then(|| Fixture::with(&allowing_5432(true).build())) else { return };
    assert_eq!(f.apply(&allowing_5432(false).build()), 2);
    f.config(|c| c.deny_events_per_sec = 0); // every denial reported
    let ports: Vec<u16> = (20_000..60_000).collect();
    let ((passed, events), flips) = flipping_generations(&mut f, 1, 2, |f| {
        let (mut passed, mut events) = (Vec::new(), Vec::new());
        for chunk in ports.chunks(1000) {
            passed.extend(chunk.iter().copied().filter(|&p| f.xdp(&tcp(API4, HOST4, p, 5432, SYN)) == XDP_PASS));
            events.extend(f.events());
        }
        (passed, events)
    });
    assert!(flips > 1000, "the generation must change under the packets: {flips} flips");
    assert!(
        passed.len() > 100 && passed.len() < ports.len() - 100,
        "both generations judged flows: {} of {}",
        passed.len(),
        ports.len()
    );
    assert_eq!(events.len(), ports.len(), "one start or deny event per flow");
    assert_events_name(&events, 1, 2);
    assert_stamped_by(&mut f, 1, 2, &passed);
}

/// The same race on the re-check of established flows: flows admitted under generation 1
/// are re-checked on their next packet while CONFIG flips between 2 (allows them) and 3
/// (denies them); a re-check judged by 2 must record 2.
#[test]
fn rechecked_flows_are_stamped_with_the_generation_that_judged_them_while_pushes_race() {
    let Some(mut f) = privileged().then(|| Fixture::with(&allowing_5432(true).build())) else { return };
    let ports: Vec<u16> = (20_000..60_000).collect();
    for &p in &ports {
        assert_eq!(f.xdp(&tcp(API4, HOST4, p, 5432, SYN)), XDP_PASS);
    }
    assert_eq!(f.apply(&allowing_5432(true).build()), 2);
    assert_eq!(f.apply(&allowing_5432(false).build()), 3);
    f.config(|c| c.deny_events_per_sec = 0); // every denial reported
    f.events();
    let ((passed, events), flips) = flipping_generations(&mut f, 2, 3, |f| {
        let (mut passed, mut events) = (Vec::new(), Vec::new());
        for chunk in ports.chunks(1000) {
            passed.extend(chunk.iter().copied().filter(|&p| f.xdp(&tcp(API4, HOST4, p, 5432, ACK)) == XDP_PASS));
            events.extend(f.events());
        }
        (passed, events)
    });
    assert!(flips > 1000, "the generation must change under the packets: {flips} flips");
    assert!(
        passed.len() > 100 && passed.len() < ports.len() - 100,
        "both generations judged flows: {} of {}",
        passed.len(),
        ports.len()
    );
    let denials = events.iter().filter(|e| e.kind == KIND_DENY).count();
    assert_eq!(denials, ports.len() - passed.len(), "one denial per revoked flow");
    assert_events_name(&events, 2, 3);
    assert_stamped_by(&mut f, 2, 3, &passed);
}

/// A pinned map under this agent's name but of another layout (here: CONNTRACK with 8-byte
/// values) is never adopted: the programs would misread it. It is set aside and the
/// programs get a fresh map of their own layout, which tracks flows as usual.
#[test]
fn a_pinned_map_of_another_layout_is_set_aside_not_adopted() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::over_pins(|pins| {
        zt_tests::bpffs::pin_hash_map(&pins.join("ZT_CONNTRACK"), (40, 8, 1024), &[(&[7; 40], &[9; 8])]);
    });
    assert_eq!(f.dp.set_aside, ["ZT_CONNTRACK (key/value sizes 40/8 instead of 40/88)"]);
    assert!(f.dp.pin_dir().join("superseded/ZT_CONNTRACK").exists());
    f.apply(&base().build());
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, ACK)), XDP_PASS);
    assert_eq!(f.maps.conntrack_len(), 1, "the fresh map tracks the flow, the foreign entry is not in it");
    assert_eq!(zt_agent::datapath::layout::remove_superseded(f.dp.pin_dir()).unwrap(), 1);
}

/// A repeated connection attempt of a tuple policy denied (a retransmitted SYN, a scan
/// probe, a flood) is dropped from the DENIED cache after one lookup: counted under its
/// reason every time, reported at most once a second per tuple (the rest counted as lost
/// to the budget), and a push that opens the tuple takes effect on the very next SYN.
#[test]
fn repeated_denied_syns_are_dropped_from_the_cache_and_a_push_that_opens_them_applies_at_once() {
    let Some(mut f) = fixture() else { return };
    f.config(|c| c.deny_events_per_sec = 0); // only the per-tuple limit applies
    let syn = tcp(WORLD4, HOST4, 40000, 5432, SYN);
    for _ in 0..5 {
        assert_eq!(f.xdp(&syn), XDP_DROP);
    }
    assert_eq!(f.stats().get(VERDICT_DENIED, DEFAULT_DENY).packets, 5);
    let denies: Vec<_> = f.events().into_iter().filter(|e| e.kind == KIND_DENY).collect();
    assert_eq!(denies.len(), 1, "one report per tuple per second: {denies:?}");
    assert_eq!(f.stats().event(KIND_DENY, EVENT_LOST_BUDGET), 4, "the repeats are counted, not silent");
    // An ACK of the same tuple belongs to no tracked flow (conntrack misses it), so the
    // cache serves it too: counted, not reported again within the second.
    assert_eq!(f.xdp(&tcp(WORLD4, HOST4, 40000, 5432, ACK)), XDP_DROP);
    assert_eq!(f.events().len(), 0, "served from the cache");
    assert_eq!(f.stats().get(VERDICT_DENIED, DEFAULT_DENY).packets, 6);

    let opened = base().port(DIR_INGRESS, HOST, WORLD, packet::TCP, 5432, verdict(VERDICT_ALLOWED, POLICY, P_DB, 3));
    f.apply(&opened.build());
    assert_eq!(f.xdp(&syn), XDP_PASS, "the push applies to the next SYN");
    assert_eq!(f.stats().get(VERDICT_ALLOWED, POLICY).packets, 1);
}

#[test]
fn repeated_denied_datagrams_are_served_from_the_cache_once_their_source_floods() {
    let Some(mut f) = fixture() else { return };
    // A budget of one event: the second denial finds it spent, so the source floods.
    f.config(|c| {
        c.deny_events_per_sec = 1;
        c.deny_events_burst = 1;
    });
    let datagram = udp(WORLD4, HOST4, 50000, 5000);
    for _ in 0..5 {
        assert_eq!(f.xdp(&datagram), XDP_DROP);
    }
    assert_eq!(f.stats().get(VERDICT_DENIED, DEFAULT_DENY).packets, 5);
    assert_eq!(f.events().iter().filter(|e| e.kind == KIND_DENY).count(), 1);
    assert_eq!(f.stats().event(KIND_DENY, EVENT_LOST_BUDGET), 4, "the withheld one and three from the cache");
    // Another source's first denials are not remembered (its budget is fresh): a spoofed
    // flood of distinct sources pays no cache insert per packet.
    assert_eq!(f.xdp(&udp(API4, HOST4, 50000, 5001)), XDP_DROP);
    assert_eq!(f.events().len(), 1, "reported by the full path");
    let opened = base().port(DIR_INGRESS, HOST, WORLD, packet::UDP, 5000, verdict(VERDICT_ALLOWED, POLICY, P_DB, 3));
    f.apply(&opened.build());
    assert_eq!(f.xdp(&datagram), XDP_PASS, "the push applies to the next datagram, cached or not");
    // Once tracked, its packets pass as established and never ask the cache.
    assert_eq!(f.xdp(&datagram), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, ESTABLISHED).packets, 1);
}

#[test]
fn a_related_icmp_error_passes_even_for_a_tuple_denied_before() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::with(&related_tables().build());
    // An unsolicited ICMP error from the world is denied (and remembered) ...
    let quoted = Pkt::new(HOST4, WORLD4, L4::tcp(40000, 443, SYN));
    let error = packet::icmp_error(WORLD4, HOST4, &quoted).frame();
    assert_eq!(f.xdp(&error), XDP_DROP);
    assert_eq!(f.xdp(&error), XDP_DROP, "and again, from the cache");
    // ... until the flow it quotes exists: then it is related, whatever was remembered.
    assert_eq!(f.tc_egress(&tcp(HOST4, WORLD4, 40000, 443, SYN)), TC_ACT_OK);
    assert_eq!(f.xdp(&error), XDP_PASS, "related to a tracked flow");
    assert_eq!(f.stats().get(VERDICT_ALLOWED, RELATED).packets, 1);
    assert_eq!(f.stats().get(VERDICT_DENIED, DEFAULT_DENY).packets, 2);
}

/// api:40000 connects to the host's tcp/5432 (allowed by P_DB): SYN in, SYN-ACK out, ACK in.
fn db_handshake(f: &mut Fixture) {
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 5432, 40000, SYN | ACK)), TC_ACT_OK);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, ACK)), XDP_PASS);
}

#[test]
fn tcp_close_reports_the_flow_end_with_counts_both_ways() {
    let Some(mut f) = fixture() else { return };
    db_handshake(&mut f);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, FIN | ACK)), XDP_PASS);
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 5432, 40000, FIN | ACK)), TC_ACT_OK);
    let ev = f.events();
    let end: Vec<_> = ev.iter().filter(|e| e.kind == KIND_END).collect();
    assert_eq!(end.len(), 1, "{ev:?}");
    assert_eq!(
        (end[0].reason, end[0].policy_id, end[0].rule),
        (POLICY, P_DB, 0),
        "the end names what admitted the flow"
    );
    assert_eq!((end[0].packets, end[0].rev_packets), (3, 2));
    assert_eq!(end[0].bytes, 3 * 40);
    // The last ACK still passes; a new SYN on the same ports opens a new flow.
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, ACK)), XDP_PASS);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, POLICY).packets, 2);
}

#[test]
fn rst_closes_the_flow() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 5432, 40000, RST | ACK)), TC_ACT_OK);
    assert!(f.events().iter().any(|e| e.kind == KIND_END));
}

#[test]
fn a_syn_from_the_answering_side_of_a_closed_connection_is_judged_as_a_new_flow() {
    let Some(mut f) = fixture() else { return };
    db_handshake(&mut f);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, RST | ACK)), XDP_PASS);
    // The closed flow still lets its stragglers through in both directions...
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 5432, 40000, ACK)), TC_ACT_OK);
    assert_eq!(f.stats().get(VERDICT_DENIED, DEFAULT_DENY).packets, 0);
    // ...but a SYN the other way on the same ports opens a connection, and egress policy
    // (host -> any tcp/443 only) does not allow it.
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 5432, 40000, SYN)), TC_ACT_SHOT);
    assert_eq!(f.stats().get(VERDICT_DENIED, DEFAULT_DENY).packets, 1);
}

#[test]
fn deny_events_are_bounded_per_source_and_the_rest_counted() {
    let Some(mut f) = fixture() else { return };
    let burst = f.maps.read_config().unwrap().deny_events_burst as u64;
    for port in 0..100u16 {
        assert_eq!(f.xdp(&tcp(WORLD4, HOST4, 30000 + port, 5432, SYN)), XDP_DROP);
    }
    let s = f.stats();
    assert_eq!(s.get(VERDICT_DENIED, DEFAULT_DENY).packets, 100, "every denied packet counts");
    let written = f.events().len() as u64;
    assert!(written >= burst && written <= burst + 2, "{written} events for burst {burst}");
    assert_eq!(s.event(KIND_DENY, EVENT_SUBMITTED), written);
    assert_eq!(s.event(KIND_DENY, EVENT_LOST_BUDGET), 100 - written);
    // Another source has its own budget.
    assert_eq!(f.xdp(&tcp(DB4, HOST4, 30000, 5432, SYN)), XDP_DROP);
    assert_eq!(f.events().len(), 1);
}

#[test]
fn tc_ingress_gives_the_same_verdicts_as_xdp() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.tc_ingress(&tcp(API4, HOST4, 40000, 5432, SYN)), TC_ACT_OK);
    assert_eq!(f.tc_ingress(&tcp(WORLD4, HOST4, 40000, 5432, SYN)), TC_ACT_SHOT);
    assert_eq!(f.tc_ingress(&tcp(API6, HOST6, 40000, 6000, SYN)), TC_ACT_SHOT);
    let s = f.stats();
    assert_eq!(s.get(VERDICT_ALLOWED, POLICY).packets, 1);
    assert_eq!(s.get(VERDICT_DENIED, DEFAULT_DENY).packets, 1);
    assert_eq!(s.get(VERDICT_DENIED, DENY_RULE).packets, 1);
}

// --- Per-source rate limits and half-open handshakes -----------------------------------

const P_LIMITED: u32 = 6; // allows any -> host tcp/8443 and any -> db tcp/7000, rate-limited
const LIMITED_PORT: u16 = 8443;
const ROUTED_PORT: u16 = 7000;
const OTHER4: &str = "198.18.5.6";

/// `base()` plus a rate-limited ingress allow rule (limit index 1) for tcp/8443 to the host
/// and tcp/7000 to db (a routed destination, with its egress allowed), under `limit`.
fn limited(limit: RateLimit) -> Tables {
    let allow = verdict(VERDICT_ALLOWED, POLICY, P_LIMITED, 0).with_rate_limit(1);
    let mut t = base()
        .port(DIR_INGRESS, HOST, ANY, packet::TCP, LIMITED_PORT, allow)
        .port(DIR_INGRESS, DB, ANY, packet::TCP, ROUTED_PORT, allow)
        .port(DIR_EGRESS, WORLD, DB, packet::TCP, ROUTED_PORT, verdict(VERDICT_ALLOWED, POLICY, P_LIMITED, 1))
        .build();
    t.rate_limits = vec![limit];
    t
}

fn limited_fixture(limit: RateLimit) -> Option<Fixture> {
    privileged().then(|| Fixture::with(&limited(limit)))
}

/// New connections from `src` to the limited port, one source port each from `first`:
/// how many passed.
fn open(f: &mut Fixture, src: &str, first: u16, n: u16) -> usize {
    (first..first + n).filter(|&sport| f.xdp(&tcp(src, HOST4, sport, LIMITED_PORT, SYN)) == XDP_PASS).count()
}

#[test]
fn a_source_gets_exactly_its_burst_of_new_flows_then_rate_limit_denials() {
    let (per_second, burst) = (1, 4);
    let Some(mut f) = limited_fixture(RateLimit::new(per_second, burst)) else { return };
    assert_eq!(open(&mut f, WORLD4, 30000, (per_second + burst) as u16), burst as usize);
    let s = f.stats();
    assert_eq!(s.get(VERDICT_ALLOWED, POLICY).packets, burst as u64);
    assert_eq!(s.get(VERDICT_DENIED, RATE_LIMIT).packets, per_second as u64);
    let denies: Vec<_> = f.events().into_iter().filter(|e| e.kind == KIND_DENY).collect();
    assert_eq!(denies.len(), per_second as usize, "{denies:?}");
    assert_eq!((denies[0].reason, denies[0].policy_id, denies[0].rule), (RATE_LIMIT, P_LIMITED, 0));
    assert_eq!((denies[0].src_identity, denies[0].dst_identity), (WORLD, HOST));
}

#[test]
fn a_limited_source_is_admitted_again_after_the_bucket_refills() {
    // 5 a second: one new flow every 200 ms.
    let Some(mut f) = limited_fixture(RateLimit::new(5, 2)) else { return };
    assert_eq!(open(&mut f, WORLD4, 30000, 5), 2);
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(open(&mut f, WORLD4, 31000, 5), 1, "one interval refills one new flow");
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(open(&mut f, WORLD4, 32000, 5), 2, "never more than the burst");
}

#[test]
fn other_sources_have_buckets_of_their_own() {
    let Some(mut f) = limited_fixture(RateLimit::new(1, 2)) else { return };
    assert_eq!(open(&mut f, WORLD4, 30000, 5), 2);
    assert_eq!(open(&mut f, OTHER4, 30000, 5), 2);
    assert_eq!(f.stats().get(VERDICT_DENIED, RATE_LIMIT).packets, 6);
}

#[test]
fn sources_on_the_never_list_are_not_rate_limited() {
    let Some(mut f) = limited_fixture(RateLimit::new(1, 2)) else { return };
    f.maps.write_exempt(&["198.18.5.0/24".parse().unwrap(), "fd00:99::/64".parse().unwrap()]).unwrap();
    assert_eq!(open(&mut f, WORLD4, 30000, 10), 10, "198.18.5.5 is exempt");
    assert_eq!(open(&mut f, "198.18.6.6", 30000, 10), 2, "198.18.6.6 is not");
    // The list is replaced, not added to.
    f.maps.write_exempt(&[]).unwrap();
    assert_eq!(open(&mut f, WORLD4, 31000, 10), 2, "limited (from a full burst) once the list no longer names it");
}

#[test]
fn packets_of_admitted_flows_never_take_from_the_bucket() {
    let Some(mut f) = limited_fixture(RateLimit::new(1, 2)) else { return };
    let (client, server) = (
        |flags| tcp(WORLD4, HOST4, 30000, LIMITED_PORT, flags),
        |flags| tcp(HOST4, WORLD4, LIMITED_PORT, 30000, flags),
    );
    assert_eq!(f.xdp(&client(SYN)), XDP_PASS);
    assert_eq!(f.xdp(&client(SYN)), XDP_PASS, "a retransmitted SYN of the admitted flow");
    assert_eq!(f.tc_egress(&server(SYN | ACK)), TC_ACT_OK);
    for _ in 0..50 {
        assert_eq!(f.xdp(&client(ACK)), XDP_PASS);
        assert_eq!(f.tc_egress(&server(ACK)), TC_ACT_OK);
    }
    assert_eq!(open(&mut f, WORLD4, 31000, 3), 1, "the second token is still there");
    assert_eq!(f.stats().get(VERDICT_DENIED, RATE_LIMIT).packets, 2);
}

/// A retransmitted SYN of a rate-limited source is dropped from the cache of recent
/// denials until the source's bucket admits a new flow again, and then judged afresh.
#[test]
fn a_rate_limited_syn_is_served_from_the_cache_until_the_bucket_refills() {
    let Some(mut f) = limited_fixture(RateLimit::new(5, 1)) else { return };
    assert_eq!(open(&mut f, WORLD4, 30000, 1), 1);
    f.events();
    let attempt = tcp(WORLD4, HOST4, 30001, LIMITED_PORT, SYN);
    assert_eq!(f.xdp(&attempt), XDP_DROP);
    assert_eq!(f.xdp(&attempt), XDP_DROP, "still over the limit");
    assert_eq!(f.tc_ingress(&attempt), TC_ACT_SHOT, "another ingress hook sees the same denial");
    let s = f.stats();
    assert_eq!(s.get(VERDICT_DENIED, RATE_LIMIT).packets, 3);
    // The full path reports every denial within the source's budget; the cache once a second.
    assert_eq!(f.events().iter().filter(|e| e.kind == KIND_DENY).count(), 1, "the repeats came from the cache");
    assert_eq!(s.event(KIND_DENY, EVENT_LOST_BUDGET), 2);
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(f.xdp(&attempt), XDP_PASS, "the cached denial ends when the refilled bucket admits again");
}

#[test]
fn a_push_swaps_the_limits_together_with_the_policy() {
    let Some(mut f) = limited_fixture(RateLimit::new(1, 1)) else { return };
    assert_eq!(open(&mut f, WORLD4, 30000, 3), 1);
    f.apply(&limited(RateLimit::new(1, 10)));
    assert_eq!(open(&mut f, WORLD4, 31000, 20), 9, "the same source, now charged against a burst of 10");
    let mut unlimited = limited(RateLimit::new(1, 10));
    for (_, _, v) in &mut unlimited.policy {
        *v = v.with_rate_limit(0);
    }
    f.apply(&unlimited);
    assert_eq!(open(&mut f, WORLD4, 32000, 20), 20, "values without an index are not limited");
    f.apply(&limited(RateLimit::new(1, 1)));
    assert_eq!(open(&mut f, WORLD4, 33000, 3), 0, "the bucket remembers what the source took");
}

#[test]
fn a_syn_stays_half_open_until_the_connecting_side_completes_the_handshake() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 5432, 40000, SYN | ACK)), TC_ACT_OK);
    assert_eq!((f.maps.half_open_len(), f.maps.conntrack_len()), (1, 0), "the server's answer does not promote");
    let key = zt_common::conntrack::CtKey {
        src: Addr::from_v4([198, 18, 0, 1]),
        dst: Addr::from_v4([198, 18, 0, 2]),
        src_port: 40000,
        dst_port: 5432,
        proto: packet::TCP,
        family: zt_common::addr::FAMILY_V4,
        _pad: [0; 2],
    };
    let (stored, _) = key.canonical();
    let ct = f.maps.half_open.get(&stored, 0).expect("the half-open entry, under the canonical key");
    assert_eq!(ct.opening_key(&stored), key, "the entry names the connecting side as the source");
    assert_eq!(ct.state, STATE_SYN_SENT, "nor complete the handshake: the SYN timeout still applies");
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, ACK)), XDP_PASS);
    assert_eq!((f.maps.half_open_len(), f.maps.conntrack_len()), (0, 1));
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 5432, 40000, ACK)), TC_ACT_OK);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, ESTABLISHED).packets, 3);
    let starts = f.events().iter().filter(|e| e.kind == KIND_START).count();
    assert_eq!(starts, 1, "one flow, one start");
}

#[test]
fn a_flood_of_admitted_syns_churns_the_half_open_table_not_conntrack() {
    let Some(mut f) = fixture() else { return };
    // An established flow, then SYNs from more distinct sources than HALF_OPEN holds, to a
    // port every source may reach (the failsafe SSH rule).
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, SYN)), XDP_PASS);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, ACK)), XDP_PASS);
    let n = zt_common::conntrack::HALF_OPEN_MAX_ENTRIES + 4096;
    let mut frame = tcp(WORLD4, HOST4, 50000, 22, SYN);
    for i in 0..n {
        // 198.19.x.y sources: patch the IPv4 source (offset 14 + 12); the checksum is not
        // checked by the datapath.
        frame[26..30].copy_from_slice(&[198, 19, (i >> 8) as u8, i as u8]);
        frame[34..36].copy_from_slice(&((i >> 16) as u16 + 1024).to_be_bytes());
        assert_eq!(f.xdp(&frame), XDP_PASS);
    }
    assert_eq!(f.maps.conntrack_len(), 1, "only the completed handshake is in CONNTRACK");
    assert!(f.maps.half_open_len() <= zt_common::conntrack::HALF_OPEN_MAX_ENTRIES as usize);
    f.events();
    assert_eq!(f.tc_egress(&tcp(HOST4, API4, 5432, 40000, ACK)), TC_ACT_OK);
    assert_eq!(f.xdp(&tcp(API4, HOST4, 40000, 5432, ACK)), XDP_PASS);
    assert_eq!(f.stats().get(VERDICT_ALLOWED, ESTABLISHED).packets, 3);
}

#[test]
fn a_routed_handshake_crosses_ingress_and_egress_and_is_limited_once() {
    let Some(mut f) = limited_fixture(RateLimit::new(1, 1)) else { return };
    let fwd = |flags| tcp(WORLD4, DB4, 30000, ROUTED_PORT, flags);
    let rev = |flags| tcp(DB4, WORLD4, ROUTED_PORT, 30000, flags);
    assert_eq!(f.tc_ingress(&fwd(SYN)), TC_ACT_OK);
    assert_eq!(f.tc_egress(&fwd(SYN)), TC_ACT_OK, "the egress hook judges the half-open flow");
    assert_eq!(f.tc_ingress(&rev(SYN | ACK)), TC_ACT_OK);
    assert_eq!(f.tc_egress(&rev(SYN | ACK)), TC_ACT_OK);
    assert_eq!(f.tc_ingress(&fwd(ACK)), TC_ACT_OK);
    assert_eq!(f.tc_egress(&fwd(ACK)), TC_ACT_OK);
    assert_eq!((f.maps.half_open_len(), f.maps.conntrack_len()), (0, 1));
    assert_eq!(f.stats().get(VERDICT_DENIED, RATE_LIMIT).packets, 0, "one token for the one flow");
    assert_eq!(f.tc_ingress(&tcp(WORLD4, DB4, 30001, ROUTED_PORT, SYN)), TC_ACT_SHOT);
    assert_eq!(f.stats().get(VERDICT_DENIED, RATE_LIMIT).packets, 1);
}

#[test]
fn ipv6_sources_are_limited_per_address_like_ipv4() {
    let Some(mut f) = limited_fixture(RateLimit::new(1, 2)) else { return };
    let syn = |src: &str, sport| tcp(src, HOST6, sport, LIMITED_PORT, SYN);
    let passed = |f: &mut Fixture, src: &str| (30000..30004).filter(|&p| f.xdp(&syn(src, p)) == XDP_PASS).count();
    assert_eq!(passed(&mut f, WORLD6), 2);
    assert_eq!(passed(&mut f, "fd00:99::6"), 2, "the next address has a bucket of its own");
    assert_eq!(f.stats().get(VERDICT_DENIED, RATE_LIMIT).packets, 4);
}
