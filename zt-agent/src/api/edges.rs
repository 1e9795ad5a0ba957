//! `edges`: the observed edges (`ztctl policy suggest`, `ztctl flows map`), optionally only
//! those seen in the last `since_seconds`. A read: readers may ask.

use std::time::{Duration, SystemTime};

use super::protocol::{ApiError, Reply};
use crate::agent::SharedState;

pub fn list(shared: &SharedState, since_seconds: Option<u64>) -> Result<Reply, ApiError> {
    // The state lock only to take the table's handle; the table has its own lock.
    let edges = shared.lock().expect("agent state").edges().clone();
    let (edges, dropped) = edges.list(since_seconds.map(Duration::from_secs), SystemTime::now());
    Ok(Reply::Edges { edges, dropped })
}
