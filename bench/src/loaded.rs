//! The real zt programs and maps, loaded in a private bpffs for in-process measurements:
//! BPF_PROG_TEST_RUN of the XDP program (and of the empty baseline program), policy pushes
//! through the agent's own `GenerationWriter`, and the events ring buffer.

use anyhow::{Context, bail};
use aya::{
    maps::{MapData, RingBuf},
    programs::{TestRun, TestRunOptions},
};
use zt_agent::datapath::{Datapath, GenerationWriter, Maps, SwapReport, Tables};
use zt_common::config::Config;
use zt_tests::BpfFs;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// Which XDP program a test run executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `zt_xdp_baseline`: returns XDP_PASS and does nothing else.
    Baseline,
    /// `zt_xdp_ingress`: the real ingress datapath.
    Zt,
    /// `zt_xdp_reference`: parse + one 5-tuple hash lookup, the physical-limit reference.
    Reference,
}

pub struct Loaded {
    pub dp: Datapath,
    pub maps: Maps,
    pub writer: GenerationWriter,
    pub ring: RingBuf<MapData>,
    // Dropped last: the maps close before their mount goes.
    _mount: BpfFs,
}

impl Loaded {
    /// Loads and verifies the programs with `config` and no policy generation.
    pub fn new(config: &Config) -> anyhow::Result<Loaded> {
        let mount = BpfFs::mount().context("cannot mount a private bpffs (the bench needs root)")?;
        let mut dp = Datapath::load(&mount.path().join("zt")).context("cannot load the zt programs")?;
        let mut maps = dp.take_maps()?;
        maps.write_config(config)?;
        // The agent's default failsafe rule (inbound TCP 22), as a running agent has it: the
        // quarantined path pays the pre-check that keeps failsafe traffic reachable.
        maps.write_failsafe(&[(zt_common::reason::DIR_INGRESS, zt_common::proto::TCP, Some(22))])?;
        let ring = maps.events.take().expect("events ring present after take_maps");
        let writer = GenerationWriter::adopt(&maps)?;
        dp.xdp_baseline()?;
        dp.xdp_reference()?;
        Ok(Loaded { dp, maps, writer, ring, _mount: mount })
    }

    pub fn apply(&mut self, tables: &Tables) -> anyhow::Result<SwapReport> {
        Ok(self.writer.apply(&mut self.maps, tables)?)
    }

    /// Runs `frame` through `program` `repeat` times; returns the verdict and the kernel's
    /// mean time per run in nanoseconds. Fails if the verdict is not `expect`, since a
    /// figure for the wrong path would be meaningless.
    pub fn run(&mut self, program: Program, frame: &[u8], repeat: u32, expect: u32) -> anyhow::Result<f64> {
        let prog = match program {
            Program::Baseline => self.dp.xdp_baseline()?,
            Program::Zt => self.dp.xdp_ingress()?,
            Program::Reference => self.dp.xdp_reference()?,
        };
        let opts = TestRunOptions { data_in: Some(frame), repeat, ..Default::default() };
        let result = prog.test_run(opts).context("BPF_PROG_TEST_RUN failed")?;
        if result.return_value != expect {
            bail!(
                "{program:?} returned {} where {expect} was expected; the measured path is not the intended one",
                result.return_value
            );
        }
        Ok(result.duration.as_nanos() as f64)
    }

    /// Empties the events ring buffer (as the agent's reader would), returning the count.
    pub fn drain(&mut self) -> usize {
        zt_agent::flows::reader::drain(&mut self.ring).len()
    }
}
