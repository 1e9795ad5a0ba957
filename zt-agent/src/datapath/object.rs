//! Loading the embedded eBPF object with every map pinned by name under one directory.
//!
//! When pins from an earlier agent exist, aya reuses those maps instead of creating new
//! ones, so a restarted agent adopts the running policy, conntrack and counters. The links
//! that attach the programs are pinned and adopted separately ([`super::pins`]).

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, Xdp},
};
use zt_common::{clock::Clock, program_names};

use super::{
    DatapathError, MapSizes, Maps,
    pins::{LinkLifetime, LinkPins},
};

/// The kernel object built by zt-agent's build script (zt-ebpf for bpfel-unknown-none).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zt"));

/// The loaded kernel programs and their maps.
pub struct Datapath {
    pub(crate) ebpf: Ebpf,
    pub(crate) pin_dir: PathBuf,
    /// The attachments this agent holds or pinned; process-owned until
    /// [`Datapath::prepare_links`] says otherwise.
    pub(crate) links: LinkPins,
    /// Pinned maps of another layout that were set aside instead of adopted (see
    /// [`super::layout`]), each with the reason.
    pub set_aside: Vec<String>,
    /// The programs' clock: calibrated, or why they read the coarse clock's helper (see
    /// `zt_common::clock`).
    pub clock: Result<Clock, String>,
}

impl Datapath {
    /// Loads and verifies the programs, creating or adopting the maps pinned in `pin_dir`,
    /// every map at the object's size.
    pub fn load(pin_dir: &Path) -> Result<Datapath, DatapathError> {
        Datapath::load_sized(pin_dir, &MapSizes::default())
    }

    /// [`Datapath::load`] with the maps of `sizes` resized.
    pub fn load_sized(pin_dir: &Path, sizes: &MapSizes) -> Result<Datapath, DatapathError> {
        std::fs::create_dir_all(pin_dir)
            .map_err(|source| DatapathError::PinDir { path: pin_dir.to_path_buf(), source })?;
        // Pins of another layout or size must not be adopted: the programs would misread
        // them, or the operator's size would not apply.
        let set_aside = super::layout::set_aside(pin_dir, OBJECT, sizes)?;
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(pin_dir);
        for (map, entries) in sizes.iter() {
            loader.map_max_entries(map, entries);
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| DatapathError::Load(Box::new(e)))?;
        let xdp: &mut Xdp = program(&mut ebpf, program_names::XDP_INGRESS)?;
        xdp.load()
            .map_err(|source| DatapathError::Verify { program: program_names::XDP_INGRESS, source: source.into() })?;
        for name in [program_names::TC_INGRESS, program_names::TC_EGRESS] {
            let tc: &mut SchedClassifier = program(&mut ebpf, name)?;
            tc.load().map_err(|source| DatapathError::Verify { program: name, source: source.into() })?;
        }
        let clock = super::clock::calibrate(&mut ebpf);
        match &clock {
            Ok(c) => log::info!("kernel programs' clock: jiffies at {} Hz", c.hz().unwrap_or_default()),
            Err(why) => {
                log::warn!("the kernel programs read the time through a helper call (slower per packet): {why}")
            }
        }
        let links = LinkPins::new(pin_dir, LinkLifetime::Process);
        Ok(Datapath { ebpf, pin_dir: pin_dir.to_path_buf(), links, set_aside, clock })
    }

    /// Replaces the programs' clock calibration; a `tick_ns` of 0 makes them read the
    /// coarse clock through its helper (see `zt_common::clock`).
    pub fn set_clock(&mut self, clock: &Clock) -> Result<(), DatapathError> {
        super::clock::write(&mut self.ebpf, clock).map_err(DatapathError::Other)
    }

    /// The programs' clock in one phrase, for `ztctl status`.
    pub fn clock_summary(&self) -> String {
        match &self.clock {
            Ok(c) => format!("jiffies at {} Hz, calibrated at start", c.hz().unwrap_or_default()),
            Err(why) => format!("helper call (not calibrated: {why})"),
        }
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Typed handles to every map; call once (the maps move out of the object).
    pub fn take_maps(&mut self) -> Result<Maps, DatapathError> {
        Maps::take(&mut self.ebpf)
    }

    pub fn xdp_ingress(&mut self) -> Result<&mut Xdp, DatapathError> {
        program(&mut self.ebpf, program_names::XDP_INGRESS)
    }

    pub fn tc_ingress(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        program(&mut self.ebpf, program_names::TC_INGRESS)
    }

    pub fn tc_egress(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        program(&mut self.ebpf, program_names::TC_EGRESS)
    }

    /// The reference XDP program (benchmarks only): parse and one 5-tuple lookup in its
    /// flow table; loaded on first use.
    pub fn xdp_reference(&mut self) -> Result<&mut Xdp, DatapathError> {
        let prog: &mut Xdp = program(&mut self.ebpf, program_names::XDP_REFERENCE)?;
        if prog.fd().is_err() {
            prog.load().map_err(|source| DatapathError::Verify {
                program: program_names::XDP_REFERENCE,
                source: source.into(),
            })?;
        }
        Ok(prog)
    }

    /// The reference program's flow table (benchmarks only), to put the measured flow in.
    pub fn reference_flows(
        &mut self,
    ) -> Result<aya::maps::HashMap<&mut aya::maps::MapData, zt_common::conntrack::CtKey, u64>, DatapathError> {
        let name = zt_common::map_names::REFERENCE_FLOWS;
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::Missing { kind: "map", name })?;
        aya::maps::HashMap::try_from(map).map_err(DatapathError::map(name))
    }

    /// The empty baseline XDP program (benchmarks only), loaded on first use.
    pub fn xdp_baseline(&mut self) -> Result<&mut Xdp, DatapathError> {
        let prog: &mut Xdp = program(&mut self.ebpf, program_names::XDP_BASELINE)?;
        if prog.fd().is_err() {
            prog.load().map_err(|source| DatapathError::Verify {
                program: program_names::XDP_BASELINE,
                source: source.into(),
            })?;
        }
        Ok(prog)
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DatapathError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    let p = ebpf.program_mut(name).ok_or(DatapathError::Missing { kind: "program", name })?;
    p.try_into().map_err(|_| DatapathError::Missing { kind: "program of the expected type", name })
}
