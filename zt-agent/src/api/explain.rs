//! `explain`: the verdict the kernel reaches for the first packet of a flow, and why.
//!
//! The question is answered by `zt_policy::explain` — the one implementation, which
//! `ztctl explain --policy` runs offline — over the active generation: its compiled policy,
//! the ipcache written with it, the quarantined addresses and the generation number. This
//! handler only translates the request and the reply.

use zt_policy::explain::Judge;

use super::protocol::{ApiError, ExplainQuery, Reply};
use crate::agent::SharedState;

pub fn explain(shared: &SharedState, q: &ExplainQuery) -> Result<Reply, ApiError> {
    let s = shared.lock().expect("agent state");
    let judge = Judge {
        compiled: &s.active().compiled,
        ipcache: &s.active().tables.ipcache,
        quarantined: |ip| s.is_quarantined(ip),
        generation: s.generation(),
    };
    judge.explain(q).map(Reply::Explain).map_err(|e| ApiError::bad_request(e.to_string()))
}
