//! Policy pushes as the agent measures them: how many were applied or refused, and how long
//! each took from validation to the generation switch (a histogram, so operators can see
//! the slow tail of large policies).

use std::{sync::Mutex, time::Duration};

/// Upper bounds (seconds) of the push-duration buckets: from a small policy's few
/// milliseconds to a very large one's tens of seconds.
pub const PUSH_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// How a push ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The new generation is enforced.
    Applied,
    /// Validation or compilation refused it; nothing changed.
    Rejected,
    /// The kernel maps could not be written; nothing changed.
    Failed,
}

impl PushOutcome {
    pub const ALL: [PushOutcome; 3] = [PushOutcome::Applied, PushOutcome::Rejected, PushOutcome::Failed];

    pub fn name(self) -> &'static str {
        match self {
            PushOutcome::Applied => "applied",
            PushOutcome::Rejected => "rejected",
            PushOutcome::Failed => "failed",
        }
    }
}

/// A consistent copy of the push counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PushSnapshot {
    /// Indexed like `PushOutcome::ALL`.
    pub outcomes: [u64; 3],
    /// Cumulative counts for each bound of `PUSH_BUCKETS`.
    pub buckets: [u64; PUSH_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
    /// Duration of the most recent push (any outcome).
    pub last_seconds: Option<f64>,
}

#[derive(Debug, Default)]
pub struct PushStats {
    inner: Mutex<PushSnapshot>,
}

impl PushStats {
    /// Records one push that took `took` and ended with `outcome`.
    pub fn observe(&self, took: Duration, outcome: PushOutcome) {
        let secs = took.as_secs_f64();
        let mut s = self.inner.lock().expect("push stats lock");
        let i = PushOutcome::ALL.iter().position(|o| *o == outcome).expect("listed outcome");
        s.outcomes[i] += 1;
        for (bound, n) in PUSH_BUCKETS.iter().zip(s.buckets.iter_mut()) {
            if secs <= *bound {
                *n += 1;
            }
        }
        s.count += 1;
        s.sum_seconds += secs;
        s.last_seconds = Some(secs);
    }

    pub fn snapshot(&self) -> PushSnapshot {
        self.inner.lock().expect("push stats lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_are_counted_by_outcome_and_bucketed_cumulatively() {
        let p = PushStats::default();
        p.observe(Duration::from_millis(3), PushOutcome::Applied);
        p.observe(Duration::from_millis(200), PushOutcome::Rejected);
        let s = p.snapshot();
        assert_eq!(s.outcomes, [1, 1, 0]);
        assert_eq!(s.count, 2);
        assert_eq!(s.buckets[0], 0, "0.001s");
        assert_eq!(s.buckets[2], 1, "0.005s holds the 3 ms push");
        assert_eq!(s.buckets[7], 2, "0.25s holds both");
        assert_eq!(*s.buckets.last().unwrap(), 2);
        assert!((s.sum_seconds - 0.203).abs() < 1e-9);
        assert_eq!(s.last_seconds, Some(0.2));
    }
}
