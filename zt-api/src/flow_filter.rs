//! Which flow records `ztctl flows` wants: by verdict, by either end (an IP, a CIDR prefix or
//! a label selector matched against the record's labels), by destination port and by age.
//! The agent applies the filter before sending, so a `--follow` on a busy host carries
//! only what the operator asked for.

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    str::FromStr,
    time::{Duration, SystemTime},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{labels::Labels, record::FlowRecord};

/// Every field is optional; an empty filter matches every record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictFilter>,
    /// Matched against `src_ip` / `src_labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<PeerMatch>,
    /// Matched against `dst_ip` / `dst_labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<PeerMatch>,
    /// Matched against `dst_port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Only records whose `time` is at most this old (applies to the recent part; live
    /// records are new by definition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_seconds: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictFilter {
    Allowed,
    Denied,
    Audit,
}

impl VerdictFilter {
    /// The flow-log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictFilter::Allowed => "allowed",
            VerdictFilter::Denied => "denied",
            VerdictFilter::Audit => "audit",
        }
    }
}

/// One end of a flow as `--from` / `--to` name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerMatch {
    Ip(IpAddr),
    Cidr(IpNet),
    /// Every given label must be present with that value.
    Labels(BTreeMap<String, String>),
}

impl PeerMatch {
    fn matches(&self, ip: Option<IpAddr>, labels: &BTreeMap<String, String>) -> bool {
        match self {
            PeerMatch::Ip(want) => ip.map(|ip| ip.to_canonical()) == Some(want.to_canonical()),
            PeerMatch::Cidr(net) => ip.is_some_and(|ip| net.contains(&ip.to_canonical())),
            PeerMatch::Labels(want) => want.iter().all(|(k, v)| labels.get(k) == Some(v)),
        }
    }
}

/// `198.18.0.1`, `198.18.0.0/24`, `app=web,env=prod`.
impl FromStr for PeerMatch {
    type Err = String;

    fn from_str(text: &str) -> Result<PeerMatch, String> {
        if text.contains('=') {
            let labels = Labels::parse(text).map_err(|e| format!("label selector {text:?}: {e}"))?;
            return Ok(PeerMatch::Labels(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(PeerMatch::Ip(ip));
        }
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(PeerMatch::Cidr(net.trunc()));
        }
        Err(format!("{text:?} is neither an IP address, a CIDR prefix nor a label selector k=v[,k=v]"))
    }
}

impl fmt::Display for PeerMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerMatch::Ip(ip) => write!(f, "{ip}"),
            PeerMatch::Cidr(net) => write!(f, "{net}"),
            PeerMatch::Labels(labels) => {
                let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                f.write_str(&pairs.join(","))
            }
        }
    }
}

impl FlowFilter {
    /// True if `record` passes every given condition, judged at time `now`.
    pub fn matches(&self, record: &FlowRecord, now: SystemTime) -> bool {
        if let Some(v) = self.verdict
            && record.verdict != v.as_str()
        {
            return false;
        }
        if let Some(m) = &self.from
            && !m.matches(record.src_ip, &record.src_labels)
        {
            return false;
        }
        if let Some(m) = &self.to
            && !m.matches(record.dst_ip, &record.dst_labels)
        {
            return false;
        }
        if let Some(port) = self.port
            && record.dst_port != Some(port)
        {
            return false;
        }
        if let Some(since) = self.since_seconds {
            let cutoff = now.checked_sub(Duration::from_secs(since)).unwrap_or(SystemTime::UNIX_EPOCH);
            // A record whose time cannot be read is shown rather than silently hidden.
            if let Ok(t) = humantime::parse_rfc3339_weak(&record.time)
                && t < cutoff
            {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(verdict: &str, src: &str, dst: &str, port: u16, time: SystemTime) -> FlowRecord {
        let labels = |app: &str| BTreeMap::from([("app".to_string(), app.to_string())]);
        FlowRecord {
            time: crate::clock::rfc3339(time),
            verdict: verdict.into(),
            reason: "policy".into(),
            event: "start".into(),
            direction: "ingress".into(),
            iface: None,
            protocol: "TCP".into(),
            src_ip: Some(src.parse().unwrap()),
            src_port: Some(40000),
            dst_ip: Some(dst.parse().unwrap()),
            dst_port: Some(port),
            src_identity: 256,
            dst_identity: 1,
            src_labels: labels("client"),
            dst_labels: labels("server"),
            policy: None,
            rule: None,
            packets: 1,
            bytes: 60,
            reply_packets: 0,
            reply_bytes: 0,
            generation: 1,
        }
    }

    fn filter(f: impl FnOnce(&mut FlowFilter)) -> FlowFilter {
        let mut filter = FlowFilter::default();
        f(&mut filter);
        filter
    }

    #[test]
    fn an_empty_filter_matches_everything() {
        let now = SystemTime::now();
        assert!(FlowFilter::default().matches(&record("denied", "198.18.0.1", "198.18.0.2", 80, now), now));
    }

    #[test]
    fn verdict_port_and_ends_must_all_match() {
        let now = SystemTime::now();
        let r = record("denied", "198.18.0.1", "198.18.0.2", 80, now);
        assert!(filter(|f| f.verdict = Some(VerdictFilter::Denied)).matches(&r, now));
        assert!(!filter(|f| f.verdict = Some(VerdictFilter::Allowed)).matches(&r, now));
        assert!(filter(|f| f.port = Some(80)).matches(&r, now));
        assert!(!filter(|f| f.port = Some(81)).matches(&r, now));
        assert!(filter(|f| f.from = Some("198.18.0.1".parse().unwrap())).matches(&r, now));
        assert!(!filter(|f| f.from = Some("198.18.0.2".parse().unwrap())).matches(&r, now));
        assert!(filter(|f| f.to = Some("198.18.0.0/24".parse().unwrap())).matches(&r, now));
        assert!(filter(|f| f.from = Some("app=client".parse().unwrap())).matches(&r, now));
        assert!(!filter(|f| f.to = Some("app=client".parse().unwrap())).matches(&r, now));
        assert!(!filter(|f| f.to = Some("app=server,env=prod".parse().unwrap())).matches(&r, now));
        let both = filter(|f| {
            f.verdict = Some(VerdictFilter::Denied);
            f.to = Some("app=server".parse().unwrap());
            f.port = Some(81);
        });
        assert!(!both.matches(&r, now), "one failing condition rejects the record");
    }

    #[test]
    fn since_keeps_only_recent_records() {
        let now = SystemTime::now();
        let old = record("allowed", "198.18.0.1", "198.18.0.2", 80, now - Duration::from_secs(600));
        let new = record("allowed", "198.18.0.1", "198.18.0.2", 80, now - Duration::from_secs(10));
        let last_5m = filter(|f| f.since_seconds = Some(300));
        assert!(!last_5m.matches(&old, now));
        assert!(last_5m.matches(&new, now));
    }

    #[test]
    fn peer_matches_parse_and_name_bad_input() {
        assert_eq!("fd00::1".parse::<PeerMatch>().unwrap(), PeerMatch::Ip("fd00::1".parse().unwrap()));
        assert_eq!("198.18.0.7/24".parse::<PeerMatch>().unwrap(), PeerMatch::Cidr("198.18.0.0/24".parse().unwrap()));
        assert_eq!("app=web,env=prod".parse::<PeerMatch>().unwrap().to_string(), "app=web,env=prod");
        let e = "web".parse::<PeerMatch>().unwrap_err();
        assert_eq!(e, "\"web\" is neither an IP address, a CIDR prefix nor a label selector k=v[,k=v]");
    }
}
