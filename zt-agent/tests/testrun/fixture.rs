//! A loaded datapath for BPF_PROG_TEST_RUN: the real programs and maps, pinned in a private
//! bpffs mount that is removed when the fixture drops, plus helpers to run frames through
//! each program and read back counters and flow events.

use aya::{
    maps::{MapData, RingBuf},
    programs::{TestRun, TestRunOptions},
};
use ipnet::IpNet;
use zt_agent::datapath::{Datapath, GenerationWriter, Maps, StatsSnapshot, Tables};
use zt_common::{
    config::Config,
    event::FlowEvent,
    policy::{PREFIX_ANY_PROTO, PREFIX_PORT, PREFIX_PROTO, PolicyKey, PolicyValue, RULE_NONE},
};
use zt_tests::BpfFs;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;

pub use zt_tests::require_privileged as privileged;

pub struct Fixture {
    pub dp: Datapath,
    pub maps: Maps,
    pub writer: GenerationWriter,
    ring: RingBuf<MapData>,
    detect_ring: RingBuf<MapData>,
    // Dropped last: the maps must be closed before the mount goes.
    _mount: BpfFs,
}

impl Fixture {
    /// Loads the programs with default config and no policy generation.
    pub fn new() -> Fixture {
        Fixture::over_pins(|_| {})
    }

    /// [`Fixture::new`], after `prepare` has put pins into the pin directory (as an agent
    /// of another version would have left them).
    pub fn over_pins(prepare: impl FnOnce(&std::path::Path)) -> Fixture {
        let mount = BpfFs::mount().expect("private bpffs");
        let pins = mount.path().join("zt");
        std::fs::create_dir_all(&pins).unwrap();
        prepare(&pins);
        let mut dp = Datapath::load(&pins).expect("programs load and verify");
        let mut maps = dp.take_maps().unwrap();
        maps.write_config(&Config::DEFAULT).unwrap();
        let ring = maps.events.take().unwrap();
        let detect_ring = maps.detect_events.take().unwrap();
        let writer = GenerationWriter::adopt(&maps).unwrap();
        Fixture { dp, maps, writer, ring, detect_ring, _mount: mount }
    }

    /// Loads the programs and applies `tables` as generation 1.
    pub fn with(tables: &Tables) -> Fixture {
        let mut f = Fixture::new();
        f.apply(tables);
        f
    }

    pub fn apply(&mut self, tables: &Tables) -> u32 {
        self.writer.apply(&mut self.maps, tables).unwrap().generation
    }

    pub fn config(&mut self, edit: impl FnOnce(&mut Config)) {
        let mut cfg = self.maps.read_config().unwrap();
        edit(&mut cfg);
        self.maps.write_config(&cfg).unwrap();
    }

    pub fn xdp(&mut self, frame: &[u8]) -> u32 {
        let prog = self.dp.xdp_ingress().unwrap();
        let opts = TestRunOptions { data_in: Some(frame), ..Default::default() };
        prog.test_run(opts).expect("xdp test run").return_value
    }

    pub fn tc_ingress(&mut self, frame: &[u8]) -> u32 {
        let prog = self.dp.tc_ingress().unwrap();
        let opts = TestRunOptions { data_in: Some(frame), ..Default::default() };
        prog.test_run(opts).expect("tc ingress test run").return_value
    }

    pub fn tc_egress(&mut self, frame: &[u8]) -> u32 {
        let prog = self.dp.tc_egress().unwrap();
        let opts = TestRunOptions { data_in: Some(frame), ..Default::default() };
        prog.test_run(opts).expect("tc egress test run").return_value
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.maps.stats().unwrap()
    }

    /// Flow events written since the last call.
    pub fn events(&mut self) -> Vec<FlowEvent> {
        zt_agent::flows::reader::drain(&mut self.ring)
    }

    /// Detector threshold crossings written since the last call.
    pub fn crossings(&mut self) -> Vec<zt_common::detect::DetectEvent> {
        let mut out = Vec::new();
        while let Some(item) = self.detect_ring.next() {
            out.push(zt_agent::detect::crossing::decode(&item).expect("the kernel writes whole crossings"));
        }
        out
    }

    /// Runs `frame` through XDP `repeat` times in one test run.
    pub fn xdp_repeat(&mut self, frame: &[u8], repeat: u32) -> u32 {
        let prog = self.dp.xdp_ingress().unwrap();
        let opts = TestRunOptions { data_in: Some(frame), repeat, ..Default::default() };
        prog.test_run(opts).expect("xdp test run").return_value
    }
}

/// Hand-built tables: the kernel's contract is the map layout, so datapath tests state
/// exactly what is in the maps. (Compiler semantics are tested in the compiler's tests.)
#[derive(Default, Clone)]
pub struct TablesBuilder {
    tables: Tables,
}

/// A verdict as stored in POLICY.
pub fn verdict(verdict: u8, reason: u8, policy_id: u32, rule: u32) -> PolicyValue {
    PolicyValue::new(verdict, reason, policy_id, rule)
}

impl TablesBuilder {
    pub fn new() -> TablesBuilder {
        let mut b = TablesBuilder::default();
        b = b.ip("0.0.0.0/0", zt_common::identity::WORLD).ip("::/0", zt_common::identity::WORLD);
        b
    }

    pub fn ip(mut self, net: &str, identity: u32) -> TablesBuilder {
        let net: IpNet = net.parse().unwrap();
        self.tables.ipcache.push((net, identity));
        self
    }

    /// An entry for one exact port.
    pub fn port(self, dir: u8, local: u32, peer: u32, proto: u8, port: u16, v: PolicyValue) -> TablesBuilder {
        self.entry(PREFIX_PORT, dir, local, peer, proto, port, v)
    }

    /// An entry for all ports of a protocol.
    pub fn proto(self, dir: u8, local: u32, peer: u32, proto: u8, v: PolicyValue) -> TablesBuilder {
        self.entry(PREFIX_PROTO, dir, local, peer, proto, 0, v)
    }

    /// An entry for every protocol.
    pub fn any(self, dir: u8, local: u32, peer: u32, v: PolicyValue) -> TablesBuilder {
        self.entry(PREFIX_ANY_PROTO, dir, local, peer, 0, 0, v)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn entry(
        mut self,
        prefix: u32,
        dir: u8,
        local: u32,
        peer: u32,
        proto: u8,
        port: u16,
        v: PolicyValue,
    ) -> TablesBuilder {
        self.tables.policy.push((prefix, PolicyKey::new(0, dir, local, peer, proto, port), v));
        self
    }

    pub fn build(&self) -> Tables {
        self.tables.clone()
    }
}

pub const NO_RULE: u32 = RULE_NONE;
