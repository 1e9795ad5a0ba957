//! Every map the kernel programs share. All are pinned by name under the agent's bpffs
//! directory, so enforcement and flow state survive an agent restart.

use crate::parse::Packet;
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use zt_common::{
    addr::Addr,
    clock::Clock,
    config::Config,
    conntrack::{CONNTRACK_MAX_ENTRIES, CtKey, CtValue, HALF_OPEN_MAX_ENTRIES},
    denied::{DENIED_MAX_ENTRIES, DeniedValue},
    detect::{
        DETECT_RING_BYTES, EXEMPT_MAX_ENTRIES, ExemptKey, FAN_OUT_MAX_ENTRIES, FanOutValue, SCAN_MAX_ENTRIES, ScanValue,
    },
    event::EVENTS_RING_BYTES,
    failsafe::FailsafePorts,
    fragment::{FRAGMENTS_MAX_ENTRIES, FragKey, FragValue},
    ipcache::{IPCACHE_MAX_ENTRIES, IpcacheV4Key, IpcacheV6Key, IpcacheValue},
    policy::{POLICY_MAX_ENTRIES, PolicyKey, PolicyValue},
    quarantine::{Budget, DENY_BUDGET_MAX_ENTRIES, QUARANTINE_MAX_ENTRIES, QuarantineValue},
    ratelimit::{RATE_BUCKETS_MAX_ENTRIES, RATE_LIMITS_ENTRIES, RateBucket, RateKey, RateLimit},
    stats::{Counter, EVENT_STATS_SLOTS, STATS_SLOTS},
};

/// The clock calibration (see `zt_common::clock`); not pinned: each agent measures it
/// for the programs it loads.
#[map(name = "ZT_CLOCK")]
pub static CLOCK: Array<Clock> = Array::with_max_entries(1, 0);

#[map(name = "ZT_CONFIG")]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

#[map(name = "ZT_IPCACHE_V4")]
pub static IPCACHE_V4: LpmTrie<IpcacheV4Key, IpcacheValue> = LpmTrie::pinned(IPCACHE_MAX_ENTRIES, 0);

#[map(name = "ZT_IPCACHE_V6")]
pub static IPCACHE_V6: LpmTrie<IpcacheV6Key, IpcacheValue> = LpmTrie::pinned(IPCACHE_MAX_ENTRIES, 0);

#[map(name = "ZT_POLICY")]
pub static POLICY: LpmTrie<PolicyKey, PolicyValue> = LpmTrie::pinned(POLICY_MAX_ENTRIES, 0);

#[map(name = "ZT_CONNTRACK")]
pub static CONNTRACK: LruHashMap<CtKey, CtValue> = LruHashMap::pinned(CONNTRACK_MAX_ENTRIES, 0);

#[map(name = "ZT_FRAGMENTS")]
pub static FRAGMENTS: LruHashMap<FragKey, FragValue> = LruHashMap::pinned(FRAGMENTS_MAX_ENTRIES, 0);

#[map(name = "ZT_QUARANTINE2")]
pub static QUARANTINE: HashMap<Addr, QuarantineValue> = HashMap::pinned(QUARANTINE_MAX_ENTRIES, 0);

#[map(name = "ZT_STATS")]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::pinned(STATS_SLOTS, 0);

#[map(name = "ZT_EVENT_STATS")]
pub static EVENT_STATS: PerCpuArray<u64> = PerCpuArray::pinned(EVENT_STATS_SLOTS, 0);

#[map(name = "ZT_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_RING_BYTES, 0);

/// Per-CPU scratch space for the packet being decided (too large for the BPF stack).
/// Not pinned: it holds nothing between packets.
#[map(name = "ZT_SCRATCH")]
pub static SCRATCH: PerCpuArray<Packet> = PerCpuArray::with_max_entries(1, 0);

/// The benchmarks' reference flow table (see `reference`): a hash table with as many
/// buckets as CONNTRACK and the same key. Not preallocated — it costs nothing until a
/// benchmark fills it — and not pinned.
#[map(name = "ZT_REF_FLOWS")]
pub static REFERENCE_FLOWS: HashMap<CtKey, u64> = HashMap::with_max_entries(CONNTRACK_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// `BPF_F_NO_PREALLOC`: allocate hash entries on insert.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Recently denied connection attempts (see zt_common::denied). Not pinned: a cache.
#[map(name = "ZT_DENIED")]
pub static DENIED: LruHashMap<CtKey, DeniedValue> = LruHashMap::with_max_entries(DENIED_MAX_ENTRIES, 0);

#[map(name = "ZT_DENY_BUDGET2")]
pub static DENY_BUDGET: LruPerCpuHashMap<Addr, Budget> = LruPerCpuHashMap::pinned(DENY_BUDGET_MAX_ENTRIES, 0);

/// Per-source port and host sets of the scan detectors (see zt_common::detect). An LRU
/// (the kernel preallocates those): a spoofed flood recycles the oldest sources instead of
/// filling the map and blinding detection.
#[map(name = "ZT_SCAN")]
pub static SCAN: LruHashMap<Addr, ScanValue> = LruHashMap::pinned(SCAN_MAX_ENTRIES, 0);

/// Per-local-identity peer sets of the fan-out detector.
#[map(name = "ZT_FAN_OUT")]
pub static FAN_OUT: LruHashMap<u32, FanOutValue> = LruHashMap::pinned(FAN_OUT_MAX_ENTRIES, 0);

/// Threshold crossings, for the agent's detectors: their own ring, so a flood of flow
/// events never hides one.
#[map(name = "ZT_DETECT_EVENTS")]
pub static DETECT_EVENTS: RingBuf = RingBuf::pinned(DETECT_RING_BYTES, 0);

/// The failsafe rules' protocols and ports; written by the agent at start.
#[map(name = "ZT_FAILSAFE")]
pub static FAILSAFE: Array<FailsafePorts> = Array::pinned(1, 0);

/// Sources never rate-limited (`[detect] never`); written by the agent at start.
#[map(name = "ZT_EXEMPT")]
pub static EXEMPT: LpmTrie<ExemptKey, u8> = LpmTrie::pinned(EXEMPT_MAX_ENTRIES, 0);

/// TCP connections between an admitted SYN and the handshake's final ACK (see
/// zt_common::conntrack::HALF_OPEN_MAX_ENTRIES): an LRU of their own, so a SYN flood churns
/// this table and never evicts an established flow from CONNTRACK. Pinned like CONNTRACK,
/// so handshakes in flight survive a restart and the agent's sweep reports their ends.
#[map(name = "ZT_HALF_OPEN")]
pub static HALF_OPEN: LruHashMap<CtKey, CtValue> = LruHashMap::pinned(HALF_OPEN_MAX_ENTRIES, 0);

/// Rate limits by (slot, index) (see zt_common::ratelimit).
#[map(name = "ZT_RATE_LIMITS")]
pub static RATE_LIMITS: Array<RateLimit> = Array::pinned(RATE_LIMITS_ENTRIES, 0);

/// Per-(source, limit) buckets. Shared by all CPUs (a per-CPU bucket would multiply the
/// limit by the number of CPUs a source's flows hash to).
#[map(name = "ZT_RATE_BUCKETS")]
pub static RATE_BUCKETS: LruHashMap<RateKey, RateBucket> = LruHashMap::pinned(RATE_BUCKETS_MAX_ENTRIES, 0);
