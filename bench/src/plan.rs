//! How much to measure: the full run (about ten minutes on two cores) or `--quick` (a smoke
//! run of the same code paths in well under two minutes, with fewer rounds and sizes).

use std::time::Duration;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub quick: bool,
    pub rounds: usize,
    /// Section 1: policy entries, and ipcache prefixes loaded alongside at every size.
    pub datapath_rules: Vec<usize>,
    pub ipcache_prefixes: usize,
    /// Runs per BPF_PROG_TEST_RUN call for the cases that can repeat one packet.
    pub repeat: u32,
    /// Distinct new flows (one run each) per round for the "new flow allowed" case.
    pub new_flows: usize,
    /// Section 2: rules per contender, and seconds of traffic per measurement.
    pub e2e_rules: Vec<usize>,
    pub e2e_measure: Duration,
    pub e2e_warmup: Duration,
    /// Section 3: rules per push.
    pub control_rules: Vec<usize>,
    /// Section 4: events per round.
    pub flow_events: usize,
    /// Section 5: seconds of iperf3 per contender and round.
    pub bulk_seconds: u64,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                rounds: 3,
                datapath_rules: vec![10, 100_000],
                ipcache_prefixes: 100_000,
                repeat: 100_000,
                new_flows: 1000,
                e2e_rules: vec![10_000],
                e2e_measure: Duration::from_millis(1000),
                e2e_warmup: Duration::from_millis(300),
                control_rules: vec![1000, 10_000],
                flow_events: 20_000,
                bulk_seconds: 2,
            }
        } else {
            Plan {
                quick,
                rounds: 5,
                datapath_rules: vec![10, 1000, 10_000, 100_000],
                ipcache_prefixes: 100_000,
                repeat: 500_000,
                new_flows: 4000,
                e2e_rules: vec![10, 1000, 10_000],
                e2e_measure: Duration::from_millis(2000),
                e2e_warmup: Duration::from_millis(500),
                control_rules: vec![1000, 10_000, 100_000],
                flow_events: 100_000,
                bulk_seconds: 4,
            }
        }
    }
}
