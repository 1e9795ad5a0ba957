//! The edges a map is drawn from: asked of the agent (`Request::Edges`), or read from a
//! file, so a map can be drawn offline, in CI, or from edges saved earlier with
//! `ztctl flows map -o json`.

use std::{path::Path, time::Duration};

use serde_json::Value;
use zt_api::{
    edge::ObservedEdge,
    protocol::{Reply, Request},
};

use crate::{CliError, Ctx, unexpected};

/// The edges, and how many the agent could not keep (its table was full).
#[derive(Debug, Default, PartialEq)]
pub struct Edges {
    pub edges: Vec<ObservedEdge>,
    pub dropped: u64,
}

/// The agent's edges whose last flow is at most `since` old.
pub fn from_agent(ctx: &Ctx, since: Option<Duration>) -> Result<Edges, CliError> {
    match ctx.call(&Request::Edges { since_seconds: since.map(|d| d.as_secs()) })? {
        Reply::Edges { edges, dropped } => Ok(Edges { edges, dropped }),
        other => Err(unexpected(&other)),
    }
}

/// The edges in `path`, whose last flow is at most `since` old before `now`.
pub fn from_file(path: &Path, since: Option<Duration>, now: std::time::SystemTime) -> Result<Edges, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::failed(format!("cannot read the edges file {}: {e}", path.display())))?;
    let mut edges = parse(&text).map_err(|problem| {
        CliError::failed(format!(
            "the edges file {} {problem}; give the output of `ztctl flows map -o json`, a JSON list of edges or one edge per line",
            path.display()
        ))
    })?;
    if let Some(since) = since {
        let oldest = now.checked_sub(since).unwrap_or(std::time::UNIX_EPOCH);
        edges.edges.retain(|e| humantime::parse_rfc3339_weak(&e.last_seen).is_ok_and(|t| t >= oldest));
    }
    Ok(edges)
}

/// A `Reply::Edges` (also inside an API `ok` line), a list of edges, or JSON lines of edges.
fn parse(text: &str) -> Result<Edges, String> {
    let document = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(whole) => {
            let lines: Result<Vec<ObservedEdge>, String> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", n + 1)))
                .collect();
            return match lines {
                Ok(edges) if text.lines().filter(|l| !l.trim().is_empty()).count() > 1 => {
                    Ok(Edges { edges, dropped: 0 })
                }
                Ok(_) | Err(_) => Err(format!("is not JSON ({whole})")),
            };
        }
    };
    let reply = document.get("result").unwrap_or(&document);
    let (list, dropped) = match reply {
        Value::Array(_) => (reply.clone(), 0),
        Value::Object(o) if o.contains_key("edges") => {
            (o["edges"].clone(), o.get("dropped").and_then(Value::as_u64).unwrap_or(0))
        }
        _ => return Err("holds neither a list of edges nor an object with `edges`".into()),
    };
    let edges = serde_json::from_value(list).map_err(|e| format!("has an edge that is not an observed edge ({e})"))?;
    Ok(Edges { edges, dropped })
}

#[cfg(test)]
mod tests {
    use super::super::graph::tests::edge;
    use super::*;

    fn edges() -> Vec<ObservedEdge> {
        vec![
            edge("ingress", "app=web", "198.18.4.2", Some(80), "allowed", 3),
            edge("egress", "app=web", "app=api", Some(8080), "denied", 1),
        ]
    }

    #[test]
    fn a_reply_a_response_line_a_list_and_json_lines_are_read() {
        let reply = Reply::Edges { edges: edges(), dropped: 4 };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(parse(&text).unwrap(), Edges { edges: edges(), dropped: 4 });
        let line = format!(r#"{{"api":1,"type":"ok","result":{text}}}"#);
        assert_eq!(parse(&line).unwrap().dropped, 4);
        let list = serde_json::to_string_pretty(&edges()).unwrap();
        assert_eq!(parse(&list).unwrap(), Edges { edges: edges(), dropped: 0 });
        let lines: String = edges().iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect();
        assert_eq!(parse(&lines).unwrap().edges, edges());
    }

    #[test]
    fn other_json_is_refused_with_what_is_wrong() {
        assert!(parse("{\"kind\":\"status\"}").unwrap_err().contains("neither a list"));
        assert!(parse("[{\"direction\":1}]").unwrap_err().contains("not an observed edge"));
        assert!(parse("nonsense").unwrap_err().starts_with("is not JSON"));
    }

    #[test]
    fn since_keeps_the_recent_edges_of_a_file() {
        let mut old = edges();
        old[1].last_seen = "2026-11-26T08:00:00.000Z".into();
        let path = std::env::temp_dir().join(format!("ztctl-edges-{}.json", std::process::id()));
        std::fs::write(&path, serde_json::to_string(&old).unwrap()).unwrap();
        let now = humantime::parse_rfc3339("2026-11-26T10:30:00Z").unwrap();
        let recent = from_file(&path, Some(Duration::from_secs(3600)), now).unwrap();
        let all = from_file(&path, None, now).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(recent.edges, old[..1]);
        assert_eq!(all.edges.len(), 2);
    }
}
