//! `alerts`: the alerts the agent raised (within `since`, if given), then with `follow` new
//! ones as they are raised, until the client closes the connection. Like `flows`, the feed
//! is subscribed before the kept alerts are copied, and a slow reader is told how many it
//! missed (`lost`).

use std::time::Duration;

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    sync::broadcast::error::RecvError,
};

use super::{
    protocol::{Reply, Response},
    server::send,
};
use crate::agent::SharedState;

pub async fn stream<R, W>(shared: &SharedState, since_seconds: Option<u64>, follow: bool, mut input: R, mut out: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let history = shared.lock().expect("agent state").alerts().clone();
    let live = follow.then(|| history.subscribe());
    let mut alerts = 0u64;
    for alert in history.recent(since_seconds.map(Duration::from_secs)) {
        if send(&mut out, &Response::Alert { alert: Box::new(alert) }).await.is_err() {
            return;
        }
        alerts += 1;
    }
    let Some(mut live) = live else {
        let _ = send(&mut out, &Response::Ok { result: Reply::AlertsEnd { alerts } }).await;
        return;
    };
    let mut scratch = [0u8; 256];
    loop {
        let response = tokio::select! {
            received = live.recv() => match received {
                Ok(alert) => Response::Alert { alert: Box::new(alert) },
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
