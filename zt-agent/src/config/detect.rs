//! The `[detect]` tables of the configuration file (docs/detection.md): each detector's
//! table is optional, and every key in it; absent keys keep the documented defaults.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Source;
use crate::detect::settings::{Action, DetectSettings, Distinct, Response};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectFile {
    pub dry_run: Option<bool>,
    pub never: Option<Vec<Spanned<String>>>,
    pub max_ttl: Option<Spanned<String>>,
    pub port_scan: Option<PortScanFile>,
    pub sweep: Option<SweepFile>,
    pub fan_out: Option<FanOutFile>,
    pub new_peer: Option<NewPeerFile>,
    pub deny_spike: Option<DenySpikeFile>,
}

/// The keys every detector table has.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortScanFile {
    pub enabled: Option<bool>,
    pub ports: Option<Spanned<u32>>,
    pub window: Option<Spanned<String>>,
    pub action: Option<Spanned<String>>,
    pub ttl: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    pub enabled: Option<bool>,
    pub hosts: Option<Spanned<u32>>,
    pub window: Option<Spanned<String>>,
    pub action: Option<Spanned<String>>,
    pub ttl: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOutFile {
    pub enabled: Option<bool>,
    pub peers: Option<Spanned<u32>>,
    pub window: Option<Spanned<String>>,
    pub action: Option<Spanned<String>>,
    pub ttl: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPeerFile {
    pub enabled: Option<bool>,
    pub learn: Option<Spanned<String>>,
    pub action: Option<Spanned<String>>,
    pub ttl: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenySpikeFile {
    pub enabled: Option<bool>,
    /// Denied packets per second a source must exceed.
    pub min_rate: Option<Spanned<u32>>,
    /// ... and how many times its moving baseline.
    pub factor: Option<Spanned<u32>>,
    pub action: Option<Spanned<String>>,
    pub ttl: Option<Spanned<String>>,
}

fn duration(v: &Spanned<String>, key: &str, src: &Source<'_>) -> anyhow::Result<Duration> {
    let text = v.get_ref();
    let d = humantime::parse_duration(text)
        .map_err(|e| src.error(v.span(), key, format!("{text:?} is not a duration like 10s, 5m or 24h ({e})")))?;
    if d.is_zero() {
        return Err(src.error(v.span(), key, format!("{text:?} must be longer than 0s")));
    }
    Ok(d)
}

/// `enabled`, `action` and `ttl` of one detector table over `into`.
fn response(
    table: &str,
    enabled: Option<bool>,
    action: &Option<Spanned<String>>,
    ttl: &Option<Spanned<String>>,
    into: &mut Response,
    src: &Source<'_>,
) -> anyhow::Result<()> {
    if let Some(e) = enabled {
        into.enabled = e;
    }
    if let Some(a) = action {
        into.action = Action::parse(a.get_ref()).ok_or_else(|| {
            src.error(
                a.span(),
                &format!("detect.{table}.action"),
                format!("{:?} is not \"alert\" or \"quarantine\"", a.get_ref()),
            )
        })?;
    }
    if let Some(t) = ttl {
        into.ttl = duration(t, &format!("detect.{table}.ttl"), src)?;
    }
    Ok(())
}

/// A distinct-destination detector's table.
#[allow(clippy::too_many_arguments)]
fn distinct(
    table: &str,
    enabled: Option<bool>,
    limit: &Option<Spanned<u32>>,
    window: &Option<Spanned<String>>,
    action: &Option<Spanned<String>>,
    ttl: &Option<Spanned<String>>,
    into: &mut Distinct,
    src: &Source<'_>,
) -> anyhow::Result<()> {
    response(table, enabled, action, ttl, &mut into.response, src)?;
    if let Some(l) = limit {
        into.limit = *l.get_ref();
    }
    if let Some(w) = window {
        into.window = duration(w, &format!("detect.{table}.window"), src)?;
    }
    Ok(())
}

/// The detection settings: the file's `[detect]` over the defaults.
pub fn settings(file: Option<&Spanned<DetectFile>>, src: &Source<'_>) -> anyhow::Result<DetectSettings> {
    let mut s = DetectSettings::default();
    let Some(table) = file else { return Ok(s) };
    let f = table.get_ref();
    if let Some(d) = f.dry_run {
        s.dry_run = d;
    }
    if let Some(never) = &f.never {
        s.never = never
            .iter()
            .map(|n| {
                let text = n.get_ref();
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        src.error(
                            n.span(),
                            "detect.never",
                            format!("{text:?} is not an address or CIDR like 198.18.0.0/24"),
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(m) = &f.max_ttl {
        s.max_ttl = duration(m, "detect.max_ttl", src)?;
    }
    if let Some(t) = &f.port_scan {
        distinct("port_scan", t.enabled, &t.ports, &t.window, &t.action, &t.ttl, &mut s.port_scan, src)?;
    }
    if let Some(t) = &f.sweep {
        distinct("sweep", t.enabled, &t.hosts, &t.window, &t.action, &t.ttl, &mut s.sweep, src)?;
    }
    if let Some(t) = &f.fan_out {
        distinct("fan_out", t.enabled, &t.peers, &t.window, &t.action, &t.ttl, &mut s.fan_out, src)?;
    }
    if let Some(t) = &f.new_peer {
        response("new_peer", t.enabled, &t.action, &t.ttl, &mut s.new_peer.response, src)?;
        if let Some(l) = &t.learn {
            s.new_peer.learn = duration(l, "detect.new_peer.learn", src)?;
        }
    }
    if let Some(t) = &f.deny_spike {
        response("deny_spike", t.enabled, &t.action, &t.ttl, &mut s.deny_spike.response, src)?;
        if let Some(m) = &t.min_rate {
            s.deny_spike.min_per_second = *m.get_ref();
        }
        if let Some(x) = &t.factor {
            s.deny_spike.factor = *x.get_ref();
        }
    }
    if let Some(problem) = s.problem() {
        return Err(src.error(table.span(), "[detect]", format!("is invalid: {problem}")));
    }
    Ok(s)
}
