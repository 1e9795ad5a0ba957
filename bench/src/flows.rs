//! Section 4: the flow pipeline's throughput on one core. The real XDP program fills the
//! real ring buffer with deny events (the per-source budget disabled:
//! `deny_events_per_sec = 0`), then the agent's own code drains and decodes them
//! (`flows::reader::drain` + `FlowRecord::from_event`) and writes them as JSON lines
//! (`FlowRecord::to_json_line`) to a buffered file. Only those two userspace stages are
//! timed.

use std::{
    collections::HashMap,
    io::{BufWriter, Write},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::ensure;
use zt_agent::{
    flows::{FlowRecord, context::Names},
    identity::Labels,
};
use zt_common::{config::Config, event::EVENTS_RING_BYTES, event::FlowEvent};
use zt_tests::Scratch;

use crate::{
    frames::{self, Macs},
    loaded::{Loaded, Program, XDP_DROP},
    plan::Plan,
    progress,
    results::FlowFigure,
    stats::Sample,
    synthetic::{self, DENIED_PORT, PROBE_LOCAL, PROBE_PEER},
};

/// Distinct sources the events come from.
const SOURCES: usize = 16;

pub fn run(plan: &Plan) -> anyhow::Result<FlowFigure> {
    progress(&format!("flow pipeline: {} deny events per round through the ring buffer", plan.flow_events));
    let mut zt = Loaded::new(&Config { deny_events_per_sec: 0, ..Config::DEFAULT })?;
    zt.apply(&synthetic::tables(10, 0))?;
    let names = names();
    let server = synthetic::server(false);
    let frames: Vec<Vec<u8>> = (0..SOURCES)
        .map(|i| frames::udp(Macs::LOCAL, synthetic::client(false, 1 + i as u8), server, 40_000, DENIED_PORT))
        .collect();
    // Fill at most half the ring between drains, so no event is lost to a full ring.
    let record = size_of::<FlowEvent>() + 8;
    let per_fill = (EVENTS_RING_BYTES as usize / record / 2 / SOURCES).max(1);
    let scratch = Scratch::new("bench-flows")?;
    let (mut decode, mut json) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        let mut file = BufWriter::new(std::fs::File::create(scratch.join("flows.log"))?);
        let (mut decoded, mut t_decode, mut t_json) = (0usize, Duration::ZERO, Duration::ZERO);
        while decoded < plan.flow_events {
            let n = per_fill.min((plan.flow_events - decoded).div_ceil(SOURCES)) as u32;
            for f in &frames {
                zt.run(Program::Zt, f, n, XDP_DROP)?;
            }
            let t0 = Instant::now();
            let records: Vec<FlowRecord> = zt_agent::flows::reader::drain(&mut zt.ring)
                .iter()
                .map(|ev| FlowRecord::from_event(ev, &names))
                .collect();
            let t1 = Instant::now();
            for r in &records {
                file.write_all(r.to_json_line().as_bytes())?;
                file.write_all(b"\n")?;
            }
            file.flush()?;
            t_json += t1.elapsed();
            t_decode += t1 - t0;
            ensure!(
                records.len() == n as usize * SOURCES,
                "expected {} events, the ring held {}",
                n as usize * SOURCES,
                records.len()
            );
            decoded += records.len();
        }
        decode.push(decoded as f64 / t_decode.as_secs_f64());
        json.push(decoded as f64 / t_json.as_secs_f64());
    }
    Ok(FlowFigure {
        events_per_round: plan.flow_events,
        decode_per_s: Sample::new(decode),
        json_lines_per_s: Sample::new(json),
    })
}

/// Enrichment context as the agent would have it: labels and a policy name.
fn names() -> Names {
    let labels = |app: &str| Arc::new(Labels::from_pairs([("app", app)]));
    Names {
        identities: HashMap::from([(PROBE_PEER, labels("client")), (PROBE_LOCAL, labels("server"))]),
        policies: HashMap::from([(1, "bench".to_string())]),
        interfaces: HashMap::from([(1, "lo".to_string())]),
    }
}
