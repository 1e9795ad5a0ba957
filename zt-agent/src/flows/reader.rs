//! Stage 1: drain the EVENTS ring buffer as soon as it signals data, decode and enrich each
//! event, and hand records to the sink stage without ever waiting for it: when the channel
//! is full the record is dropped and counted.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::{FlowContext, FlowRecord};

/// Pipeline counters, exported in status and metrics.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub events_read: AtomicU64,
    pub events_malformed: AtomicU64,
    pub records_dropped: AtomicU64,
}

/// Drains every event currently in the ring buffer (synchronously) and returns them.
pub fn drain(ring: &mut RingBuf<MapData>) -> Vec<zt_common::event::FlowEvent> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if let Some(ev) = FlowRecord::decode(&item) {
            out.push(ev);
        }
    }
    out
}

/// Runs the reader stage until the channel's receiver is gone.
pub async fn run(
    ring: RingBuf<MapData>,
    ctx: FlowContext,
    tx: mpsc::Sender<FlowRecord>,
    stats: Arc<PipelineStats>,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd holds it, and the fd
    // is not registered anywhere else.
    let mut fd = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let names = ctx.snapshot();
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            stats.events_read.fetch_add(1, Ordering::Relaxed);
            let Some(ev) = FlowRecord::decode(&item) else {
                stats.events_malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            drop(item);
            let record = FlowRecord::from_event(&ev, &names);
            match tx.try_send(record) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    stats.records_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
            }
        }
        guard.clear_ready();
    }
}
