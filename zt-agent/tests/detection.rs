//! BPF_PROG_TEST_RUN tests of the detectors' kernel counters: a port scan, a sweep, a
//! fan-out and a deny spike each cross their threshold exactly once per window and are
//! reported into DETECT_EVENTS — also while the EVENTS ring is full and the scanner's
//! deny-event budget is spent, which is exactly when flow events alone would miss them.

mod testrun;

use testrun::{
    fixture::*,
    packet::{L4, Pkt, SYN},
};
use zt_common::{
    addr::Addr,
    detect::{DETECTOR_DENY_SPIKE, DETECTOR_FAN_OUT, DETECTOR_PORT_SCAN, DETECTOR_SWEEP, DetectEvent},
    event::KIND_DENY,
    identity::{ANY, HOST},
    reason::*,
    stats::{EVENT_LOST_BUDGET, EVENT_LOST_RINGBUF},
};

const HOST4: &str = "198.18.0.2";
const SCANNER: &str = "198.18.7.7";
const APP: u32 = 300;

/// Everything denied except host -> any egress, which is allowed.
fn fixture() -> Option<Fixture> {
    if !privileged() {
        return None;
    }
    let tables = TablesBuilder::new()
        .ip(&format!("{HOST4}/32"), HOST)
        .ip("198.18.0.0/24", APP)
        .any(DIR_INGRESS, ANY, ANY, verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE))
        .any(DIR_EGRESS, APP, ANY, verdict(VERDICT_ALLOWED, POLICY, 1, 0))
        .any(DIR_EGRESS, ANY, ANY, verdict(VERDICT_DENIED, DEFAULT_DENY, 0, NO_RULE))
        .build();
    let mut f = Fixture::with(&tables);
    f.config(|c| {
        c.port_scan_window_ms = 10_000;
        c.port_scan_ports = 15;
        c.sweep_window_ms = 10_000;
        c.sweep_hosts = 10;
        c.fan_out_window_ms = 60_000;
        c.fan_out_peers = 50;
    });
    Some(f)
}

fn syn(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    Pkt::new(src, dst, L4::tcp(sport, dport, SYN)).frame()
}

fn ip(s: &str) -> Addr {
    match s.parse::<std::net::IpAddr>().unwrap() {
        std::net::IpAddr::V4(v4) => Addr::from_v4(v4.octets()),
        std::net::IpAddr::V6(v6) => Addr::from_v6(v6.octets()),
    }
}

fn only(events: Vec<DetectEvent>) -> DetectEvent {
    assert_eq!(events.len(), 1, "exactly one crossing: {events:?}");
    events[0]
}

/// Fills EVENTS: deny events without a budget, from one UDP tuple in a single test run.
fn saturate_events(f: &mut Fixture) {
    f.config(|c| c.deny_events_per_sec = 0);
    let flood = Pkt::new("198.18.9.9", HOST4, L4::udp(1000, 53)).frame();
    assert_eq!(f.xdp_repeat(&flood, 60_000), XDP_DROP);
    let lost_before = f.stats().event(KIND_DENY, EVENT_LOST_RINGBUF);
    assert!(lost_before > 0, "the EVENTS ring is full");
    f.config(|c| {
        c.deny_events_per_sec = 1;
        c.deny_events_burst = 2;
    });
}

#[test]
fn a_port_scan_is_reported_once_while_the_events_ring_is_full_and_the_budget_spent() {
    let Some(mut f) = fixture() else { return };
    saturate_events(&mut f);
    for (n, port) in (1..=15u16).enumerate() {
        assert_eq!(f.xdp(&syn(SCANNER, HOST4, 40000 + n as u16, port)), XDP_DROP);
    }
    assert!(f.crossings().is_empty(), "15 distinct ports is not more than 15");
    for (n, port) in (16..=200u16).enumerate() {
        assert_eq!(f.xdp(&syn(SCANNER, HOST4, 41000 + n as u16, port)), XDP_DROP);
    }
    let e = only(f.crossings());
    assert_eq!(e.detector, DETECTOR_PORT_SCAN);
    assert_eq!((e.src, e.dst), (ip(SCANNER), ip(HOST4)));
    assert_eq!(e.window_ms, 10_000);
    assert!(e.count > 15 && e.count <= 20, "crossed just above the threshold: {}", e.count);
    // The scanner's flow events were all lost or withheld: detection did not need them.
    let s = f.stats();
    assert!(s.event(KIND_DENY, EVENT_LOST_BUDGET) > 100, "budget spent");
    assert!(s.get(VERDICT_DENIED, DEFAULT_DENY).packets >= 200);
    assert!(f.events().iter().all(|e| e.src != ip(SCANNER)), "none of the scan's events got through");
}

#[test]
fn a_sweep_of_one_port_is_reported_and_other_ports_do_not_add_to_it() {
    let Some(mut f) = fixture() else { return };
    for host in 10..20u8 {
        // 10 hosts on port 22, and the same hosts on other ports: still 10 on one port.
        f.xdp(&syn(SCANNER, &format!("198.18.1.{host}"), 40000, 22));
        f.xdp(&syn(SCANNER, &format!("198.18.1.{host}"), 40001, 80 + host as u16));
    }
    assert!(f.crossings().is_empty(), "10 hosts is not more than 10");
    for host in 20..40u8 {
        f.xdp(&syn(SCANNER, &format!("198.18.1.{host}"), 40000, 22));
    }
    let e = only(f.crossings());
    assert_eq!(e.detector, DETECTOR_SWEEP);
    assert_eq!((e.src, e.port), (ip(SCANNER), 22));
    assert!(e.count > 10, "{}", e.count);
}

#[test]
fn a_new_window_reports_again_also_for_a_scan_repeated_tuple_for_tuple() {
    let Some(mut f) = fixture() else { return };
    f.config(|c| c.port_scan_window_ms = 200);
    let scan = |f: &mut Fixture, sport: u16| {
        for port in 1..=40u16 {
            f.xdp(&syn(SCANNER, HOST4, sport, port));
        }
    };
    scan(&mut f, 40000);
    scan(&mut f, 40001);
    assert_eq!(only(f.crossings()).detector, DETECTOR_PORT_SCAN, "once per window");
    std::thread::sleep(std::time::Duration::from_millis(300));
    scan(&mut f, 40002);
    assert_eq!(only(f.crossings()).detector, DETECTOR_PORT_SCAN, "again in the next window");
    // The same tuples again: dropped from the cache of recent denials, and counted once a
    // second there (when they are reported), so a repeated scan is still seen.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    scan(&mut f, 40002);
    assert_eq!(only(f.crossings()).detector, DETECTOR_PORT_SCAN, "a scan repeated tuple for tuple");
}

#[test]
fn a_local_identity_reaching_many_peers_is_a_fan_out() {
    let Some(mut f) = fixture() else { return };
    // Allowed egress from APP (198.18.0.10) to 80 distinct peers.
    for peer in 0..80u8 {
        assert_eq!(f.tc_egress(&syn("198.18.0.10", &format!("198.18.50.{peer}"), 40000, 443)), TC_ACT_OK);
    }
    let e = only(f.crossings());
    assert_eq!(e.detector, DETECTOR_FAN_OUT);
    assert_eq!(e.src_identity, APP);
    assert_eq!(e.window_ms, 60_000);
    assert!(e.count > 50 && e.count <= 80, "{}", e.count);
}

#[test]
fn ingress_attempts_are_not_fan_out_and_egress_attempts_are_not_scans() {
    let Some(mut f) = fixture() else { return };
    for port in 1..=100u16 {
        f.tc_egress(&syn("198.18.0.10", "198.18.50.1", 40000, port));
    }
    for peer in 0..100u8 {
        f.xdp(&syn(&format!("198.18.60.{peer}"), HOST4, 40000, 80));
    }
    assert!(f.crossings().is_empty());
}

#[test]
fn a_deny_spike_is_reported_whatever_the_event_budget_withholds() {
    let Some(mut f) = fixture() else { return };
    f.config(|c| {
        c.deny_spike_min = 50;
        c.deny_spike_factor = 10;
        c.deny_events_per_sec = 1;
        c.deny_events_burst = 1;
    });
    // One test run repeats on one CPU, as the per-CPU rate counts them.
    let quiet = Pkt::new("198.18.8.8", HOST4, L4::udp(1000, 53)).frame();
    assert_eq!(f.xdp_repeat(&quiet, 50), XDP_DROP);
    assert!(f.crossings().is_empty(), "50 denies is not more than 50");
    let udp = Pkt::new(SCANNER, HOST4, L4::udp(1000, 53)).frame();
    assert_eq!(f.xdp_repeat(&udp, 70), XDP_DROP);
    let e = only(f.crossings());
    assert_eq!(e.detector, DETECTOR_DENY_SPIKE);
    assert_eq!(e.src, ip(SCANNER));
    assert_eq!(e.count, 51);
    assert!(f.stats().event(KIND_DENY, EVENT_LOST_BUDGET) >= 60, "the events were withheld");
}

#[test]
fn detectors_are_off_until_configured() {
    let Some(mut f) = fixture() else { return };
    f.config(|c| {
        c.port_scan_ports = 0;
        c.sweep_hosts = 0;
        c.fan_out_peers = 0;
    });
    for port in 1..=100u16 {
        f.xdp(&syn(SCANNER, HOST4, 40000, port));
        f.xdp(&syn(SCANNER, &format!("198.18.1.{}", port), 40000, 22));
        f.tc_egress(&syn("198.18.0.10", &format!("198.18.50.{port}"), 40000, 443));
    }
    for _ in 0..200 {
        f.xdp(&Pkt::new(SCANNER, HOST4, L4::udp(1000, 53)).frame());
    }
    assert!(f.crossings().is_empty());
}

#[test]
fn a_hundred_thousand_sources_fit_the_scan_map_within_its_memory() {
    let Some(mut f) = fixture() else { return };
    let sources = 100_000u32;
    let started = std::time::Instant::now();
    for n in 0..sources {
        // 198.18.0.0/15 holds 131,072 addresses: sources 198.18.0.0 + n.
        let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + n + 256);
        f.xdp(&syn(&ip.to_string(), HOST4, 40000, 80));
    }
    let took = started.elapsed();
    let tracked = f.maps.scan.keys().filter(Result::is_ok).count();
    let memlock = {
        use aya::maps::IterableMap;
        zt_agent::datapath::memlock_bytes(f.maps.scan.map()).expect("the kernel reports the map's memory")
    };
    eprintln!(
        "{sources} sources in {took:?}: {tracked} tracked, ZT_SCAN {} KiB ({} bytes per tracked source; 64 of key and value)",
        memlock / 1024,
        memlock / tracked as u64
    );
    assert!(tracked as u32 >= sources * 95 / 100, "the LRU keeps (almost) every source: {tracked}");
    assert!(memlock <= 16 << 20, "at most 16 MiB: {memlock}");
    assert!(f.crossings().is_empty(), "one attempt each is no scan");
}
