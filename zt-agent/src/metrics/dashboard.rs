//! The Grafana dashboard (`deploy/grafana/zt-dashboard.json`) held to the metrics this agent
//! exports (tests only): every PromQL expression may name only metric families that
//! `collect::write` produces, with label names those families carry, so renaming a metric
//! or a label breaks this test instead of silently emptying a panel.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::collect::{tests::snapshot, write};

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/zt-dashboard.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Every series name the agent exports (histograms as their `_bucket`, `_sum` and `_count`
/// series), with the label names its samples carry; `--kubernetes` counters included.
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let snap = snapshot();
    snap.telemetry.kubernetes.set(Default::default()).unwrap();
    let decided: crate::flows::FlowRecord = serde_json::from_str(
        r#"{"time":"2026-11-22T06:01:10.137Z","verdict":"denied","reason":"deny-rule","event":"deny","direction":"ingress","iface":"vs","protocol":"TCP","src_ip":"198.18.200.1","src_port":50042,"dst_ip":"198.18.200.2","dst_port":8080,"src_identity":256,"dst_identity":1,"src_labels":{},"dst_labels":{},"policy":"web","rule":1,"packets":1,"bytes":60,"reply_packets":0,"reply_bytes":0,"generation":1}"#,
    )
    .unwrap();
    snap.telemetry.rule_hits.observe(&decided);
    let text = write(&snap, std::time::SystemTime::now());
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let names: Vec<String> = match kind {
                "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{name}{s}")).collect(),
                _ => vec![name.to_string()],
            };
            for n in names {
                series.entry(n).or_default();
            }
        } else if !line.starts_with('#') {
            let name_end = line.find(['{', ' ']).unwrap();
            let labels = line[name_end..].strip_prefix('{').map(|l| l.split_once('}').unwrap().0).unwrap_or("");
            let entry = series.entry(line[..name_end].to_string()).or_default();
            entry.extend(labels.split(',').filter(|l| !l.is_empty()).map(|l| l.split_once('=').unwrap().0.to_string()));
        }
    }
    series
}

/// Every expression of the dashboard: panel targets and template variable queries (a
/// `label_values(metric, label)` query as the selector `metric`).
fn expressions(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((panel["title"].as_str().unwrap().to_string(), target["expr"].as_str().unwrap().to_string()));
        }
    }
    for variable in d["templating"]["list"].as_array().unwrap() {
        let query = variable["query"]["query"].as_str().or(variable["query"].as_str()).unwrap();
        let inner = query.strip_prefix("label_values(").and_then(|q| q.split(',').next()).unwrap_or(query);
        out.push((format!("variable {}", variable["name"]), inner.to_string()));
    }
    out
}

/// Label names every scraped series carries besides its own (added by Prometheus).
const TARGET_LABELS: [&str; 2] = ["instance", "job"];
const KEYWORDS: [&str; 6] = ["and", "or", "unless", "bool", "offset", "atan2"];
/// Aggregations, which may be followed by a grouping clause before their parenthesis.
const AGGREGATIONS: [&str; 12] =
    ["sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values"];
/// Keywords followed by a list of label names.
const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// A selector in an expression: the metric name and the label names its matchers use.
#[derive(Debug, PartialEq)]
struct Selector {
    metric: String,
    labels: Vec<String>,
}

/// The selectors of a PromQL expression (with Grafana's `$variables`), and the label names
/// of its grouping clauses.
fn selectors(expr: &str) -> (Vec<Selector>, Vec<String>) {
    let chars: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let (mut selectors, mut grouping) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            i = chars[i..].iter().position(|&c| c == ']').map_or(chars.len(), |p| i + p + 1);
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            i += 1;
            while i < chars.len() && (ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if ident(c) {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next] == ' ' {
                next += 1;
            }
            // The comma-separated items from `from` (an opening bracket) to `close`, outside quotes.
            let list = |from: usize, close: char| -> (Vec<String>, usize) {
                let (mut items, mut item, mut quoted, mut j) = (Vec::new(), String::new(), false, from + 1);
                while j < chars.len() && (quoted || chars[j] != close) {
                    match chars[j] {
                        '\\' if quoted => j += 1,
                        '"' => quoted = !quoted,
                        ',' if !quoted => items.push(std::mem::take(&mut item)),
                        c if !quoted => item.push(c),
                        _ => {}
                    }
                    j += 1;
                }
                items.push(item);
                (items.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(), j + 1)
            };
            if GROUPING.contains(&word.as_str()) && chars.get(next) == Some(&'(') {
                let (labels, end) = list(next, ')');
                grouping.extend(labels);
                i = end;
            } else if chars.get(next) == Some(&'(')
                || KEYWORDS.contains(&word.as_str())
                || AGGREGATIONS.contains(&word.as_str())
            {
                // A function or aggregation, or an operator keyword.
            } else if chars.get(next) == Some(&'{') {
                let (matchers, end) = list(next, '}');
                let labels =
                    matchers.iter().map(|m| m.split(['=', '!', '~']).next().unwrap().trim().to_string()).collect();
                selectors.push(Selector { metric: word, labels });
                i = end;
            } else {
                selectors.push(Selector { metric: word, labels: Vec::new() });
            }
        } else {
            i += 1;
        }
    }
    (selectors, grouping)
}

#[test]
fn the_expression_reader_finds_metrics_matchers_and_grouping_labels() {
    let (s, g) = selectors(
        r#"histogram_quantile(0.99, sum by (le) (rate(zt_x_bucket{instance=~"$instance",a!="}"}[$__rate_interval]))) / on(instance) zt_y"#,
    );
    assert_eq!(
        s,
        [
            Selector { metric: "zt_x_bucket".into(), labels: vec!["instance".into(), "a".into()] },
            Selector { metric: "zt_y".into(), labels: vec![] }
        ]
    );
    assert_eq!(g, ["le", "instance"]);
}

#[test]
fn every_dashboard_expression_names_only_exported_metrics_and_labels() {
    let exported = exported();
    let expressions = expressions(&dashboard());
    assert!(expressions.len() > 20, "{expressions:?}");
    let mut used = BTreeSet::new();
    for (panel, expr) in &expressions {
        let (selectors, grouping) = selectors(expr);
        assert!(!selectors.is_empty(), "{panel}: no metric in {expr}");
        let mut labels_here: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
        for s in &selectors {
            let Some(labels) = exported.get(&s.metric) else {
                panic!("{panel}: {expr} names {}, which the agent does not export", s.metric)
            };
            used.insert(s.metric.clone());
            labels_here.extend(labels.iter().cloned());
            for l in &s.labels {
                assert!(
                    labels.contains(l) || TARGET_LABELS.contains(&l.as_str()),
                    "{panel}: {} has no label {l} (it has {labels:?})",
                    s.metric
                );
            }
        }
        for l in grouping {
            assert!(labels_here.contains(&l), "{panel}: groups by {l}, which none of its metrics carries: {expr}");
        }
    }
    for wanted in [
        "zt_packets_total",
        "zt_policy_pushes_total",
        "zt_policy_push_duration_seconds_bucket",
        "zt_flow_events_lost_total",
        "zt_flow_pipeline_records_dropped_total",
        "zt_alerts_total",
        "zt_quarantined_sources",
        "zt_detector_memory_bytes",
    ] {
        assert!(used.contains(wanted), "the dashboard shows no {wanted}");
    }
}

#[test]
fn the_dashboard_is_an_importable_grafana_dashboard() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion {}", d["schemaVersion"]);
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    let mut ids = BTreeSet::new();
    for panel in d["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{title}: duplicate id");
        let kind = panel["type"].as_str().unwrap();
        assert!(["row", "timeseries", "stat", "table"].contains(&kind), "{title}: panel type {kind}");
        let grid = &panel["gridPos"];
        assert!(grid["w"].as_u64().unwrap() + grid["x"].as_u64().unwrap() <= 24, "{title}: wider than the grid");
        if kind != "row" {
            assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            assert!(!panel["targets"].as_array().unwrap().is_empty(), "{title}: no query");
        }
    }
}
