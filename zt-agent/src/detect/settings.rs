//! What the detectors watch for and how the agent answers: the `[detect]` tables of the
//! configuration file, with the documented defaults (docs/detection.md).

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;
use zt_common::{
    config::Config,
    detect::{
        DETECTOR_DENY_SPIKE, DETECTOR_FAN_OUT, DETECTOR_NEW_PEER, DETECTOR_PORT_SCAN, DETECTOR_SWEEP,
        MAX_FAN_OUT_THRESHOLD, MAX_SET_THRESHOLD,
    },
};

/// What a detector does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Raise an alert only.
    Alert,
    /// Raise an alert and drop all traffic of the source in the kernel for the TTL.
    Quarantine,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Quarantine => "quarantine",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "alert" => Some(Action::Alert),
            "quarantine" => Some(Action::Quarantine),
            _ => None,
        }
    }
}

/// A detector's switch and answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub enabled: bool,
    pub action: Action,
    /// The first quarantine's length; each repeated offence doubles it up to `max_ttl`.
    pub ttl: Duration,
}

/// A detector that counts distinct destinations within a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Distinct {
    /// More than this many distinct destinations fires.
    pub limit: u32,
    pub window: Duration,
    pub response: Response,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewPeer {
    /// How long edges are learnt before unseen ones raise alerts.
    pub learn: Duration,
    pub response: Response,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenySpike {
    /// Denied packets per second of one source that fire when also `factor` times above
    /// its moving baseline.
    pub min_per_second: u32,
    pub factor: u32,
    pub response: Response,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectSettings {
    /// Raise alerts, never act.
    pub dry_run: bool,
    /// Sources never quarantined or limited.
    pub never: Vec<IpNet>,
    /// Repeated offences double the TTL up to this.
    pub max_ttl: Duration,
    pub port_scan: Distinct,
    pub sweep: Distinct,
    pub fan_out: Distinct,
    pub new_peer: NewPeer,
    pub deny_spike: DenySpike,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Default for DetectSettings {
    fn default() -> Self {
        let alert = Response { enabled: true, action: Action::Alert, ttl: 10 * MINUTE };
        DetectSettings {
            dry_run: false,
            never: Vec::new(),
            max_ttl: 24 * 60 * MINUTE,
            port_scan: Distinct {
                limit: 15,
                window: Duration::from_secs(10),
                response: Response { action: Action::Quarantine, ..alert },
            },
            sweep: Distinct { limit: 10, window: Duration::from_secs(10), response: alert },
            fan_out: Distinct { limit: 50, window: MINUTE, response: alert },
            new_peer: NewPeer { learn: 24 * 60 * MINUTE, response: alert },
            deny_spike: DenySpike { min_per_second: 100, factor: 10, response: alert },
        }
    }
}

impl DetectSettings {
    /// The response configured for a kernel detector number.
    pub fn response(&self, detector: u8) -> Option<Response> {
        Some(match detector {
            DETECTOR_PORT_SCAN => self.port_scan.response,
            DETECTOR_SWEEP => self.sweep.response,
            DETECTOR_FAN_OUT => self.fan_out.response,
            DETECTOR_NEW_PEER => self.new_peer.response,
            DETECTOR_DENY_SPIKE => self.deny_spike.response,
            _ => return None,
        })
    }

    /// Whether `ip` is on the `never` list.
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.never.iter().any(|net| net.contains(&ip))
    }

    /// Why a setting cannot be counted by the kernel's sets, if it cannot.
    pub fn problem(&self) -> Option<String> {
        for (name, key, d, max) in [
            ("port_scan", "ports", &self.port_scan, MAX_SET_THRESHOLD),
            ("sweep", "hosts", &self.sweep, MAX_SET_THRESHOLD),
            ("fan_out", "peers", &self.fan_out, MAX_FAN_OUT_THRESHOLD),
        ] {
            if d.limit == 0 || d.limit > max {
                return Some(format!("detect.{name}.{key} = {} is out of range; use 1 to {max}", d.limit));
            }
            if d.window < Duration::from_millis(1) || d.window.as_millis() > u32::MAX as u128 / 2 {
                return Some(format!("detect.{name}.window must be between 1ms and 24 days"));
            }
        }
        if self.deny_spike.factor == 0 || self.deny_spike.factor > u8::MAX as u32 {
            return Some(format!(
                "detect.deny_spike.factor = {} is out of range; use 1 to 255",
                self.deny_spike.factor
            ));
        }
        None
    }

    /// Writes the kernel's thresholds and windows into CONFIG (a disabled detector's are 0).
    pub fn write_kernel(&self, cfg: &mut Config) {
        let on = |d: &Distinct| d.response.enabled;
        let ms = |d: &Distinct| if on(d) { d.window.as_millis() as u32 } else { 0 };
        let limit = |d: &Distinct| if on(d) { d.limit.min(u8::MAX as u32) as u8 } else { 0 };
        cfg.port_scan_window_ms = ms(&self.port_scan);
        cfg.port_scan_ports = limit(&self.port_scan);
        cfg.sweep_window_ms = ms(&self.sweep);
        cfg.sweep_hosts = limit(&self.sweep);
        cfg.fan_out_window_ms = ms(&self.fan_out);
        cfg.fan_out_peers = limit(&self.fan_out);
        let spike = &self.deny_spike;
        cfg.deny_spike_min = if spike.response.enabled { spike.min_per_second.max(1) } else { 0 };
        cfg.deny_spike_factor = spike.factor.min(u8::MAX as u32) as u8;
    }

    /// The TTL of an offender's `offence`-th quarantine (1 = first): the detector's TTL
    /// doubled per earlier offence, at most `max_ttl`.
    pub fn ttl_for(&self, response: &Response, offence: u32) -> Duration {
        let doublings = offence.saturating_sub(1).min(32);
        response.ttl.saturating_mul(1u32 << doublings.min(31)).min(self.max_ttl.max(response.ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_documented_ones_and_reach_the_kernel() {
        let d = DetectSettings::default();
        assert_eq!(d.problem(), None);
        let mut cfg = Config::DEFAULT;
        d.write_kernel(&mut cfg);
        assert_eq!((cfg.port_scan_ports, cfg.port_scan_window_ms), (15, 10_000));
        assert_eq!((cfg.sweep_hosts, cfg.sweep_window_ms), (10, 10_000));
        assert_eq!((cfg.fan_out_peers, cfg.fan_out_window_ms), (50, 60_000));
        assert_eq!((cfg.deny_spike_min, cfg.deny_spike_factor), (100, 10));
        assert_eq!(d.port_scan.response.action, Action::Quarantine);
        assert_eq!(d.sweep.response.action, Action::Alert);
    }

    #[test]
    fn a_disabled_detector_is_off_in_the_kernel() {
        let mut d = DetectSettings::default();
        d.port_scan.response.enabled = false;
        d.deny_spike.response.enabled = false;
        let mut cfg = Config::DEFAULT;
        d.write_kernel(&mut cfg);
        assert_eq!((cfg.port_scan_ports, cfg.port_scan_window_ms, cfg.deny_spike_min), (0, 0, 0));
        assert_eq!(cfg.sweep_hosts, 10);
    }

    #[test]
    fn repeated_offences_double_the_ttl_up_to_the_cap() {
        let d = DetectSettings { max_ttl: Duration::from_secs(3600), ..Default::default() };
        let r = d.port_scan.response;
        let ttls: Vec<u64> = (1..=5).map(|n| d.ttl_for(&r, n).as_secs()).collect();
        assert_eq!(ttls, [600, 1200, 2400, 3600, 3600]);
        assert_eq!(d.ttl_for(&r, 1000).as_secs(), 3600);
    }

    #[test]
    fn never_matches_addresses_and_prefixes() {
        let d = DetectSettings {
            never: vec!["198.18.0.1/32".parse().unwrap(), "fd00::/64".parse().unwrap()],
            ..Default::default()
        };
        assert!(d.is_exempt("198.18.0.1".parse().unwrap()));
        assert!(d.is_exempt("::ffff:198.18.0.1".parse().unwrap()));
        assert!(d.is_exempt("fd00::7".parse().unwrap()));
        assert!(!d.is_exempt("198.18.0.2".parse().unwrap()));
    }

    #[test]
    fn thresholds_the_sets_cannot_count_are_refused() {
        let mut d = DetectSettings::default();
        d.port_scan.limit = 65;
        assert_eq!(d.problem().unwrap(), "detect.port_scan.ports = 65 is out of range; use 1 to 64");
    }
}
