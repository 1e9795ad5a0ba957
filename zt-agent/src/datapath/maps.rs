//! Typed handles to the pinned maps, and the reads the agent needs from them.

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
};
use zt_common::{
    addr::Addr,
    config::Config,
    conntrack::{CtKey, CtValue},
    detect::{EXEMPT_FAMILY_BITS, EXEMPT_MAX_ENTRIES, ExemptKey, FanOutValue, ScanValue},
    failsafe::{FAILSAFE_ALL, FAILSAFE_MAX, FailsafePort, FailsafePorts},
    ipcache::{IpcacheV4Key, IpcacheV6Key, IpcacheValue},
    map_names,
    policy::{PolicyKey, PolicyValue},
    quarantine::QuarantineValue,
    ratelimit::{RateBucket, RateKey, RateLimit},
    reason::{NUM_REASONS, NUM_VERDICTS},
    stats::{Counter, EVENT_OUTCOMES, EVENT_STATS_SLOTS, stats_index},
};

use super::DatapathError;

pub struct Maps {
    pub config: Array<MapData, Config>,
    pub ipcache_v4: LpmTrie<MapData, IpcacheV4Key, IpcacheValue>,
    pub ipcache_v6: LpmTrie<MapData, IpcacheV6Key, IpcacheValue>,
    pub policy: LpmTrie<MapData, PolicyKey, PolicyValue>,
    pub conntrack: HashMap<MapData, CtKey, CtValue>,
    /// TCP handshakes in progress (see zt_common::conntrack).
    pub half_open: HashMap<MapData, CtKey, CtValue>,
    /// Rate limits by (slot, index), written with each generation.
    pub rate_limits: Array<MapData, RateLimit>,
    /// Per-source buckets of the rate limits.
    pub rate_buckets: HashMap<MapData, RateKey, RateBucket>,
    pub quarantine: HashMap<MapData, Addr, QuarantineValue>,
    pub stats: PerCpuArray<MapData, Counter>,
    pub event_stats: PerCpuArray<MapData, u64>,
    /// Taken by the flow pipeline.
    pub events: Option<RingBuf<MapData>>,
    /// Threshold crossings; taken by the detectors.
    pub detect_events: Option<RingBuf<MapData>>,
    /// The scan detectors' per-source sets (read for their memory only).
    pub scan: HashMap<MapData, Addr, ScanValue>,
    /// The fan-out detector's per-identity sets (read for their memory only).
    pub fan_out: HashMap<MapData, u32, FanOutValue>,
    /// Sources never rate-limited (`[detect] never`).
    pub exempt: LpmTrie<MapData, ExemptKey, u8>,
    /// The failsafe rules' protocols and ports (the kernel's quarantine pre-check).
    pub failsafe: Array<MapData, FailsafePorts>,
}

/// Kernel memory charged to a map (the `memlock` its fdinfo reports), if readable.
pub fn memlock_bytes(map: &MapData) -> Option<u64> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = map.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse().ok())
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(DatapathError::Missing { kind: "map", name })?;
    T::try_from(map).map_err(DatapathError::map(name))
}

/// Packets and bytes by (verdict, reason), summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Indexed by `stats_index(verdict, reason)`.
    pub counters: Vec<Counter>,
    /// Indexed by `event_stats_index(kind, outcome)`.
    pub events: Vec<u64>,
}

impl StatsSnapshot {
    pub fn get(&self, verdict: u8, reason: u8) -> Counter {
        self.counters.get(stats_index(verdict, reason) as usize).copied().unwrap_or_default()
    }

    /// Events of `kind` with `outcome` (`stats::EVENT_*`).
    pub fn event(&self, kind: u8, outcome: u32) -> u64 {
        self.events.get(zt_common::stats::event_stats_index(kind, outcome) as usize).copied().unwrap_or_default()
    }

    /// Every nonzero (verdict, reason, counter).
    pub fn nonzero(&self) -> impl Iterator<Item = (u8, u8, Counter)> + '_ {
        (0..NUM_VERDICTS as u8).flat_map(move |v| {
            (0..NUM_REASONS as u8).filter_map(move |r| {
                let c = self.get(v, r);
                (c.packets != 0).then_some((v, r, c))
            })
        })
    }
}

impl Maps {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Maps, DatapathError> {
        Ok(Maps {
            config: take(ebpf, map_names::CONFIG)?,
            ipcache_v4: take(ebpf, map_names::IPCACHE_V4)?,
            ipcache_v6: take(ebpf, map_names::IPCACHE_V6)?,
            policy: take(ebpf, map_names::POLICY)?,
            conntrack: take(ebpf, map_names::CONNTRACK)?,
            half_open: take(ebpf, map_names::HALF_OPEN)?,
            rate_limits: take(ebpf, map_names::RATE_LIMITS)?,
            rate_buckets: take(ebpf, map_names::RATE_BUCKETS)?,
            quarantine: take(ebpf, map_names::QUARANTINE)?,
            stats: take(ebpf, map_names::STATS)?,
            event_stats: take(ebpf, map_names::EVENT_STATS)?,
            events: Some(take(ebpf, map_names::EVENTS)?),
            detect_events: Some(take(ebpf, map_names::DETECT_EVENTS)?),
            scan: take(ebpf, map_names::SCAN)?,
            fan_out: take(ebpf, map_names::FAN_OUT)?,
            exempt: take(ebpf, map_names::EXEMPT)?,
            failsafe: take(ebpf, map_names::FAILSAFE)?,
        })
    }

    pub fn read_config(&self) -> Result<Config, DatapathError> {
        self.config.get(&0, 0).map_err(DatapathError::map(map_names::CONFIG))
    }

    pub fn write_config(&mut self, cfg: &Config) -> Result<(), DatapathError> {
        self.config.set(0, cfg, 0).map_err(DatapathError::map(map_names::CONFIG))
    }

    pub fn stats(&self) -> Result<StatsSnapshot, DatapathError> {
        let mut counters = Vec::new();
        for slot in self.stats.iter() {
            let per_cpu = slot.map_err(DatapathError::map(map_names::STATS))?;
            counters.push(per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
            }));
        }
        let mut events = Vec::with_capacity(EVENT_STATS_SLOTS as usize);
        for slot in self.event_stats.iter() {
            let per_cpu = slot.map_err(DatapathError::map(map_names::EVENT_STATS))?;
            events.push(per_cpu.iter().sum());
        }
        debug_assert_eq!(events.len() as u32 % EVENT_OUTCOMES, 0);
        Ok(StatsSnapshot { counters, events })
    }

    /// Makes `nets` the sources the kernel never rate-limits (replacing what an earlier
    /// agent wrote into the pinned map).
    pub fn write_exempt(&mut self, nets: &[ipnet::IpNet]) -> Result<(), DatapathError> {
        if nets.len() > EXEMPT_MAX_ENTRIES as usize {
            return Err(DatapathError::Other(format!(
                "[detect] never lists {} prefixes; at most {EXEMPT_MAX_ENTRIES} fit the kernel's map",
                nets.len()
            )));
        }
        let stale: Vec<_> = self.exempt.keys().filter_map(Result::ok).collect();
        for key in stale {
            let _ = self.exempt.remove(&key);
        }
        for net in nets {
            let (family, bytes) = match net {
                ipnet::IpNet::V4(v4) => (zt_common::addr::FAMILY_V4, Addr::from_v4(v4.network().octets())),
                ipnet::IpNet::V6(v6) => (zt_common::addr::FAMILY_V6, Addr::from_v6(v6.network().octets())),
            };
            let key = aya::maps::lpm_trie::Key::new(
                EXEMPT_FAMILY_BITS + net.prefix_len() as u32,
                ExemptKey { family, addr: bytes.bytes },
            );
            self.exempt.insert(&key, 1, 0).map_err(DatapathError::map(map_names::EXEMPT))?;
        }
        Ok(())
    }

    /// Writes the failsafe rules' (direction, protocol, port) for the kernel's quarantine
    /// pre-check; each is `(direction, protocol, port or None for every port)`.
    pub fn write_failsafe(&mut self, rules: &[(u8, u8, Option<u16>)]) -> Result<(), DatapathError> {
        let mut value = FailsafePorts::default();
        if rules.len() > FAILSAFE_MAX {
            value.count = FAILSAFE_ALL;
        } else {
            value.count = rules.len() as u8;
            for (slot, &(direction, proto, port)) in value.rules.iter_mut().zip(rules) {
                *slot = FailsafePort {
                    direction,
                    proto,
                    any_port: u8::from(port.is_none()),
                    _pad: 0,
                    port: port.unwrap_or(0),
                    _pad2: 0,
                };
            }
        }
        self.failsafe.set(0, value, 0).map_err(DatapathError::map(map_names::FAILSAFE))
    }

    /// Kernel memory of the detectors' maps (preallocated: fixed whatever they track).
    pub fn detector_memlock(&self) -> u64 {
        use aya::maps::IterableMap;
        [self.scan.map(), self.fan_out.map()].into_iter().filter_map(memlock_bytes).sum()
    }

    /// Number of conntrack entries (walks the map; for status and tests).
    pub fn conntrack_len(&self) -> usize {
        self.conntrack.keys().filter(|k| k.is_ok()).count()
    }

    /// Number of half-open TCP connections (walks the map; for status and tests).
    pub fn half_open_len(&self) -> usize {
        self.half_open.keys().filter(|k| k.is_ok()).count()
    }
}
