//! Calibrating the kernel programs' clock (see `zt_common::clock`): before the programs are
//! attached, the sampling program runs until two ticks and 10 ms have passed, and the tick
//! length and offset it shows are written into CLOCK. Until then, and if the kernel's tick
//! is none a known `CONFIG_HZ` gives, the programs read the coarse clock through its helper,
//! which is slower but as correct.

use std::time::{Duration, Instant};

use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::{TestRun, TestRunOptions, Xdp},
};
use zt_common::{
    clock::{Clock, MIN_SAMPLE_NS},
    map_names, program_names,
};

/// Longest the sampling waits: 100 Hz needs two ticks (20 ms); a host too loaded to tick
/// within this is left on the helper.
const SAMPLING_LIMIT: Duration = Duration::from_millis(500);

/// Measures the clock and writes it into CLOCK; the error says why the programs keep the
/// helper.
pub(crate) fn calibrate(ebpf: &mut Ebpf) -> Result<Clock, String> {
    sampler(ebpf)?.load().map_err(|e| format!("cannot load {}: {e}", program_names::CLOCK_SAMPLE))?;
    let started = Instant::now();
    let first = sample(ebpf)?;
    let last = loop {
        std::thread::sleep(Duration::from_millis(1));
        let s = sample(ebpf)?;
        if s.0 >= first.0 + 2 && s.1 >= first.1 + MIN_SAMPLE_NS {
            break s;
        }
        if started.elapsed() > SAMPLING_LIMIT {
            return Err(format!(
                "the kernel's jiffies advanced {} tick(s) in {} ms",
                s.0.wrapping_sub(first.0),
                started.elapsed().as_millis()
            ));
        }
    };
    let calibrated = Clock::calibrated(first, last).ok_or_else(|| {
        format!(
            "{} jiffies in {} ns is a tick length no known CONFIG_HZ has",
            last.0.wrapping_sub(first.0),
            last.1.saturating_sub(first.1)
        )
    })?;
    write(ebpf, &calibrated)?;
    Ok(calibrated)
}

/// Writes `clock` into CLOCK (one update of the whole entry).
pub(crate) fn write(ebpf: &mut Ebpf, clock: &Clock) -> Result<(), String> {
    clock_map(ebpf)?.set(0, clock, 0).map_err(|e| format!("map {}: {e}", map_names::CLOCK))
}

fn sampler(ebpf: &mut Ebpf) -> Result<&mut Xdp, String> {
    ebpf.program_mut(program_names::CLOCK_SAMPLE)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| format!("the eBPF object has no XDP program {}", program_names::CLOCK_SAMPLE))
}

fn clock_map(ebpf: &mut Ebpf) -> Result<Array<&mut MapData, Clock>, String> {
    let map =
        ebpf.map_mut(map_names::CLOCK).ok_or_else(|| format!("the eBPF object has no map {}", map_names::CLOCK))?;
    Array::try_from(map).map_err(|e| format!("map {}: {e}", map_names::CLOCK))
}

/// One `(jiffies, coarse ns)` sample, read back to back by the sampling program.
fn sample(ebpf: &mut Ebpf) -> Result<(u64, u64), String> {
    // XDP needs at least an Ethernet header's worth of data to run.
    let frame = [0u8; 64];
    sampler(ebpf)?
        .test_run(TestRunOptions { data_in: Some(&frame[..]), ..Default::default() })
        .map_err(|e| format!("cannot run {}: {e}", program_names::CLOCK_SAMPLE))?;
    let c = clock_map(ebpf)?.get(&0, 0).map_err(|e| format!("map {}: {e}", map_names::CLOCK))?;
    Ok((c.sample_jiffies, c.sample_ns))
}
