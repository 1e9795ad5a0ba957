//! The kernel's threshold crossings (DETECT_EVENTS), decoded into findings as soon as the
//! ring signals data. The ring is small and written once per offender and window; when it
//! is full the kernel retries on the offender's next attempt, so nothing is lost while this
//! reader is behind.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use zt_api::{
    clock,
    record::{ip_of, protocol_name},
};
use zt_common::detect::{DETECTOR_PORT_SCAN, DETECTOR_SWEEP, DetectEvent};

use super::Finding;

/// Decodes one ring record; `None` if it is not a whole crossing.
pub fn decode(bytes: &[u8]) -> Option<DetectEvent> {
    if bytes.len() < std::mem::size_of::<DetectEvent>() {
        return None;
    }
    // SAFETY: length checked; DetectEvent is plain old data, read unaligned.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const DetectEvent) })
}

/// What a crossing says, in the agent's terms.
pub fn finding(e: &DetectEvent) -> Finding {
    let has_port = zt_common::proto::has_ports(e.proto) || e.detector == DETECTOR_SWEEP;
    Finding {
        detector: e.detector,
        src: ip_of(&e.src, e.family),
        // Only a port scan is about one destination; the others span many.
        dst: (e.detector == DETECTOR_PORT_SCAN).then(|| ip_of(&e.dst, e.family)),
        port: has_port.then_some(e.port),
        protocol: protocol_name(e.proto),
        count: e.count as u64,
        window: Some(Duration::from_millis(e.window_ms as u64)),
        time: clock::to_system_time(e.time_ns),
        labels: None,
    }
}

/// Hands every crossing to `tx` until its receiver is gone.
pub async fn run(ring: RingBuf<MapData>, tx: mpsc::Sender<Finding>) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd holds it, and the fd
    // is not registered anywhere else.
    let mut fd = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        let mut found = Vec::new();
        while let Some(item) = ring.next() {
            match decode(&item) {
                Some(e) => found.push(finding(&e)),
                None => log::warn!("ignored a malformed detector crossing of {} bytes", item.len()),
            }
        }
        guard.clear_ready();
        for f in found {
            if tx.send(f).await.is_err() {
                return Ok(());
            }
        }
    }
}
