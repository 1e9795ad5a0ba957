//! The agent's answer to a detector's finding: always an alert; a quarantine when the
//! detector's action says so — unless `[detect] dry_run` withholds it, or the source is on
//! the `never` list or is this host. Repeated offences double the TTL up to `max_ttl`, and
//! a quarantine never shortens one already in force.

use std::time::Duration;

use zt_api::{
    alert::{ALERT_EVENT, Alert},
    clock,
};
use zt_common::detect::{
    DETECTOR_DENY_SPIKE, DETECTOR_FAN_OUT, DETECTOR_NEW_PEER, DETECTOR_PORT_SCAN, DETECTOR_SWEEP, detector_name,
};

use super::AgentState;
use crate::detect::{
    Finding,
    settings::{Action, Response},
};

/// What the finding says, in one clause (without the response).
fn what(f: &Finding, limit: Option<u32>, window: &str) -> String {
    let port = f.port.map_or(String::new(), |p| format!(" port {p}"));
    let dst = f.dst.map_or("local addresses".to_string(), |d| d.to_string());
    let more = |noun: &str| limit.map_or(String::new(), |l| format!(" (more than {l} {noun})"));
    match f.detector {
        DETECTOR_PORT_SCAN => {
            format!("{} tried {} distinct ports of {dst} within {window}{}", f.src, f.count, more("ports"))
        }
        DETECTOR_SWEEP => format!(
            "{} tried {} distinct local addresses on {}{port} within {window}{}",
            f.src,
            f.count,
            f.protocol,
            more("hosts")
        ),
        DETECTOR_FAN_OUT => {
            format!("{} opened flows to {} distinct peers within {window}{}", f.src, f.count, more("peers"))
        }
        DETECTOR_NEW_PEER => format!("{} -> {dst} {}{port} is an edge not seen before", f.src, f.protocol),
        DETECTOR_DENY_SPIKE => {
            format!("{} had {} packets denied within {window}, far above its usual rate", f.src, f.count)
        }
        _ => format!("{} crossed detector {}", f.src, f.detector),
    }
}

/// `10s`, `1m`, `1h30m`.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string().replace(' ', "")
}

impl AgentState {
    /// Answers a finding; returns the alert raised (already kept for `ztctl alerts` and
    /// counted for metrics; the caller writes it to the flow log).
    pub fn respond(&mut self, f: &Finding) -> Alert {
        let settings = &self.opts.detect;
        let response = settings.response(f.detector).unwrap_or(Response {
            enabled: true,
            action: Action::Alert,
            ttl: Duration::ZERO,
        });
        let limit = match f.detector {
            DETECTOR_PORT_SCAN => Some(settings.port_scan.limit),
            DETECTOR_SWEEP => Some(settings.sweep.limit),
            DETECTOR_FAN_OUT => Some(settings.fan_out.limit),
            _ => None,
        };
        let window = f.window.map(human).unwrap_or_default();
        let mut message = what(f, limit, &window);
        let dry_run = settings.dry_run;
        let this_host = self.host.iter().any(|net| net.contains(&f.src.to_canonical()));
        let mut ttl = None;
        if response.action == Action::Quarantine {
            if settings.is_exempt(f.src) {
                message.push_str("; not quarantined: on the [detect] never list");
            } else if this_host {
                message.push_str("; not quarantined: an address of this host");
            } else if dry_run {
                message.push_str("; dry run: would be quarantined");
            } else {
                let forget = settings.max_ttl.saturating_mul(2);
                let offence = self.quarantine_notes.offend(f.src, forget);
                let wanted = settings.ttl_for(&response, offence);
                ttl = Some(self.quarantine_for(f, wanted, offence, &mut message));
            }
        }
        let (src_labels, dst_labels) = match &f.labels {
            Some(labels) => labels.clone(),
            None => (self.labels_of_ip(f.src), f.dst.map(|d| self.labels_of_ip(d)).unwrap_or_default()),
        };
        let alert = Alert {
            event: ALERT_EVENT.to_string(),
            time: clock::rfc3339(f.time),
            detector: detector_name(f.detector).to_string(),
            src_ip: Some(f.src),
            src_labels,
            dst_ip: f.dst,
            dst_labels,
            count: f.count,
            window: f.window.map(|w| w.as_secs_f64().ceil() as u64),
            action: response.action.name().to_string(),
            ttl,
            dry_run,
            message,
        };
        *self
            .telemetry
            .alerts
            .lock()
            .expect("alert counters")
            .entry((alert.detector.clone(), alert.action.clone()))
            .or_default() += 1;
        self.alerts.push(f.time, alert.clone());
        let after = std::time::SystemTime::now().duration_since(f.time).unwrap_or_default();
        log::warn!("alert: {} (answered {} ms after the crossing)", alert.message, after.as_millis());
        alert
    }

    /// Quarantines the finding's source for `wanted` (or keeps a longer entry in force);
    /// returns the seconds it is cut off for and says so in `message`.
    fn quarantine_for(&mut self, f: &Finding, wanted: Duration, offence: u32, message: &mut String) -> u64 {
        let wanted_s = wanted.as_secs().max(1);
        let now = clock::monotonic_ns();
        if let Some(existing) = self.quarantine_entry(f.src) {
            let left = (existing.expires_ns != 0).then(|| existing.expires_ns.saturating_sub(now) / 1_000_000_000);
            if left.is_none_or(|l| l >= wanted_s) {
                let left_text =
                    left.map_or("until released".to_string(), |l| format!("for {}", human(Duration::from_secs(l))));
                message.push_str(&format!("; already quarantined {left_text}"));
                return left.unwrap_or(0);
            }
        }
        let reason =
            format!("{}: {}", detector_name(f.detector), what(f, None, &f.window.map(human).unwrap_or_default()));
        let reason: String = reason.chars().take(super::quarantine::MAX_REASON_CHARS).collect();
        match self.quarantine_as(f.src, Some(wanted_s), f.detector, Some(reason)) {
            Ok(()) => {
                let nth = if offence > 1 { format!(" (offence {offence})") } else { String::new() };
                message.push_str(&format!("; quarantined for {}{nth}", human(Duration::from_secs(wanted_s))));
                wanted_s
            }
            Err(e) => {
                message.push_str(&format!("; quarantine failed: {e}"));
                0
            }
        }
    }
}
