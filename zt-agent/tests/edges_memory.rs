//! The memory of the observed-edge table at its default size: 100,000 distinct edges,
//! counted by a global allocator that tracks the bytes live on the heap.
//!
//! The edges are spread as on a busy host: 50 local identities, 200 labelled peers and
//! 2,000 unlabelled peer addresses, on a few hundred ports. The table interns label sets
//! and names, so each edge costs its key, its counters and the hash table's slot.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use zt_agent::flows::{FlowRecord, edges::EdgeTable};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const EDGES: usize = 100_000;

fn record(i: usize) -> FlowRecord {
    let local = i % 50;
    let labelled = i.is_multiple_of(2);
    let src = if labelled {
        serde_json::json!({"app": format!("client-{}", (i / 2) % 200), "env": "prod"})
    } else {
        serde_json::json!({"reserved:world": ""})
    };
    let src_ip = format!("198.18.{}.{}", (i / 2 % 2000) / 250, (i / 2 % 2000) % 250 + 1);
    // Distinct keys: (local, peer) pairs repeat, ports tell them apart.
    let port = 1000 + (i / (50 * 2)) as u16;
    serde_json::from_value(serde_json::json!({
        "time": "2025-01-02T03:04:05.678Z", "verdict": "audit", "reason": "default-deny", "event": "audit",
        "direction": "ingress", "iface": "eth0", "protocol": "TCP", "src_ip": src_ip, "src_port": 40000,
        "dst_ip": "198.18.0.2", "dst_port": port, "src_identity": 256, "dst_identity": 257,
        "src_labels": src, "dst_labels": {"app": format!("service-{local}"), "tier": "backend"},
        "policy": null, "rule": null, "packets": 1, "bytes": 60, "reply_packets": 0, "reply_bytes": 0,
        "generation": 1
    }))
    .unwrap()
}

#[test]
fn one_hundred_thousand_edges_fit_in_a_bounded_heap() {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut table = EdgeTable::new(EDGES);
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..EDGES {
        let r = record(i);
        table.observe(&r, now);
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!((table.len(), table.dropped()), (EDGES, 0), "every edge is distinct and fits");
    let per_edge = bytes as f64 / EDGES as f64;
    eprintln!(
        "observed edges: {EDGES} edges take {:.1} MiB of heap, {per_edge:.0} bytes each",
        bytes as f64 / 1048576.0
    );
    // The key (direction, two label handles or an address, protocol, port, verdict) and
    // the counters are about 100 bytes, the hash table's slack at most doubles that.
    assert!(per_edge < 256.0, "{per_edge:.0} bytes per edge");
    // A full table keeps its size: more new edges are counted, not kept.
    table.observe(&record(EDGES * 3 + 1), SystemTime::now());
    assert_eq!(table.dropped(), 1);
}
