//! `flows`: recent flow records from the agent's history, then (with `follow`) live ones
//! from its feed, filtered here so only what the client asked for crosses the socket.
//!
//! The feed is subscribed before the history is copied, so no record falls between the
//! two (one arriving in that instant may be sent twice). A client that reads too slowly
//! misses records and is told how many (`lost`); it never slows the flow pipeline.

use std::time::SystemTime;

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    sync::broadcast::error::RecvError,
};

use super::{
    flow_filter::FlowFilter,
    protocol::{Reply, Response},
    server::send,
};
use crate::agent::SharedState;

/// Streams matching records to `out` until done, or with `follow` until `input` closes.
pub async fn stream<R, W>(shared: &SharedState, filter: FlowFilter, follow: bool, mut input: R, mut out: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let history = shared.lock().expect("agent state").flow_history().clone();
    let live = follow.then(|| history.subscribe());
    let now = SystemTime::now();
    let mut records = 0u64;
    for record in history.recent().into_iter().filter(|r| filter.matches(r, now)) {
        if send(&mut out, &Response::Flow { flow: Box::new(record) }).await.is_err() {
            return;
        }
        records += 1;
    }
    let Some(mut live) = live else {
        let _ = send(&mut out, &Response::Ok { result: Reply::FlowsEnd { records } }).await;
        return;
    };
    let mut scratch = [0u8; 256];
    loop {
        let response = tokio::select! {
            received = live.recv() => match received {
                Ok(record) if filter.matches(&record, SystemTime::now()) => Response::Flow { flow: Box::new(record) },
                Ok(_) => continue,
                Err(RecvError::Lagged(lost)) => Response::Lost { lost },
                Err(RecvError::Closed) => return,
            },
            // The client sends nothing after its request: any read result means it left.
            _ = input.read(&mut scratch) => return,
        };
        if send(&mut out, &response).await.is_err() {
            return;
        }
    }
}
