//! Scraping the agent's Prometheus endpoint from inside a namespace and reading values out of
//! the text format, for long-running checks (`cargo xtask soak`) that watch gauges and
//! counters over time rather than assert the format (the end-to-end tests do that).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// `GET /metrics` from inside `ns` (where the agent's `--metrics` address lives), within
/// `timeout` for the connect and again for the response. Returns the body of a 200 answer;
/// any other status, a socket error or a malformed answer is an error.
pub fn scrape(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<Metrics> {
    let response = ns
        .try_run_in(|| -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            stream
                .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response)?;
            Ok(response)
        })?
        .map_err(|e| Error::io(format!("cannot scrape http://{addr}/metrics"), e))?;
    let text = String::from_utf8_lossy(&response);
    let bad = |what: &str| Error::io(format!("http://{addr}/metrics: {what}"), std::io::ErrorKind::InvalidData.into());
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("the answer has no end of head"))?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        return Err(bad(&format!("status {status:?}, not 200")));
    }
    Ok(Metrics::parse(body))
}

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The samples of one scrape (comments and unparseable lines skipped).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses Prometheus text format 0.0.4 leniently: lines that are not samples are ignored.
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Metrics { samples }
    }

    /// The sum of every sample named `name` whose labels include all of `labels` (`None`
    /// when no sample matches, so a renamed metric is noticed rather than read as 0).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for sample in self.samples.iter().filter(|s| s.name == name) {
            let matches = labels.iter().all(|(k, v)| sample.labels.iter().any(|(sk, sv)| sk == k && sv == v));
            if matches {
                *found.get_or_insert(0.0) += sample.value;
            }
        }
        found
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Sample { name: name.trim().to_string(), labels, value })
}

/// `a="x",b="y"` (values may contain escaped quotes and commas).
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    value.push(if escaped == 'n' { '\n' } else { escaped });
                }
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_summed_by_name_and_labels() {
        let text = "# HELP x\n# TYPE zt_map_entries gauge\nzt_map_entries{map=\"conntrack\"} 12\nzt_map_entries{map=\"policy\"} 40\nzt_flow_events_lost_total{kind=\"deny\",cause=\"budget\"} 3\nzt_flow_events_lost_total{kind=\"start\",cause=\"ringbuf\"} 1\nzt_up 1\nlabel_escape{a=\"q\\\"x,y\",b=\"z\"} 2.5\n";
        let m = Metrics::parse(text);
        assert_eq!(m.sum("zt_map_entries", &[("map", "conntrack")]), Some(12.0));
        assert_eq!(m.sum("zt_map_entries", &[]), Some(52.0));
        assert_eq!(m.sum("zt_flow_events_lost_total", &[("cause", "ringbuf")]), Some(1.0));
        assert_eq!(m.sum("zt_up", &[]), Some(1.0));
        assert_eq!(m.sum("label_escape", &[("a", "q\"x,y"), ("b", "z")]), Some(2.5));
        assert_eq!(m.sum("zt_missing", &[]), None);
    }
}
