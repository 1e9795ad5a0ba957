//! `ztctl status`: one screen on what the agent enforces and how busy it is.

use std::time::Duration;

use super::{CliError, Ctx, duration::format_duration, output, output::Format, unexpected};
use zt_api::protocol::{Reply, Request, StatusReport};

pub fn run(ctx: &mut Ctx) -> Result<(), CliError> {
    let reply = ctx.call(&Request::Status)?;
    let Reply::Status(report) = reply else {
        return Err(unexpected(&reply));
    };
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, &report, || render(&report))?;
    Ok(())
}

fn render(s: &StatusReport) -> String {
    let interfaces: Vec<String> =
        s.interfaces.iter().map(|i| format!("{} ({} ingress, tc egress)", i.iface, i.ingress)).collect();
    let hooks: Vec<String> =
        s.interfaces.iter().filter(|i| !i.why.is_empty()).map(|i| format!("{}: {}", i.iface, i.why)).collect();
    let revision = s.revision.map_or("none".to_string(), |r| r.to_string());
    let failsafe = if s.failsafe.is_empty() { "none".to_string() } else { s.failsafe.join(", ") };
    let mut text = format!(
        "agent:       zt-agent {}, up {}\n\
         interfaces:  {}\n\
         {}\
         policy:      revision {revision}, generation {}: {} policies, {} identities; default deny {}\n\
         failsafe:    {failsafe}\n\
         {}\
         flow log:    {} events read, {} malformed, {} records dropped\n",
        s.version,
        format_duration(Duration::from_secs(s.uptime_seconds)),
        if interfaces.is_empty() { "none".to_string() } else { interfaces.join(", ") },
        hooks.iter().map(|h| format!("hooks:       {h}\n")).collect::<String>(),
        s.generation,
        s.policies,
        s.identities,
        match (s.default_deny, s.default_deny_audit) {
            (true, _) => "on",
            (false, true) => "audit (reported, not enforced)",
            (false, false) => "off",
        },
        if s.clock.is_empty() { String::new() } else { format!("clock:       {}\n", s.clock) },
        s.pipeline.events_read,
        s.pipeline.events_malformed,
        s.pipeline.records_dropped,
    );
    if let Some(n) = s.kubernetes_objects_rejected {
        text.push_str(&format!("kubernetes:  {n} object(s) set aside as invalid (named in the agent's log)\n"));
    }
    let mut maps = output::Table::new(&["MAP", "ENTRIES", "MAX"]);
    for m in &s.maps {
        maps.row(vec![m.map.clone(), m.entries.to_string(), m.max.to_string()]);
    }
    text.push('\n');
    text.push_str(&maps.render());
    if !s.memory.is_empty() {
        let total: u64 = s.memory.iter().map(|m| m.bytes).sum();
        let mut memory = output::Table::new(&["KERNEL MAP", "MAX ENTRIES", "MEMORY"]);
        for m in &s.memory {
            memory.row(vec![m.map.clone(), m.max_entries.to_string(), kib(m.bytes)]);
        }
        memory.row(vec!["total".into(), String::new(), kib(total)]);
        text.push('\n');
        text.push_str(&memory.render());
    }
    let mut counters = output::Table::new(&["VERDICT", "REASON", "PACKETS", "BYTES"]);
    for c in &s.counters {
        counters.row(vec![c.verdict.clone(), c.reason.clone(), c.packets.to_string(), c.bytes.to_string()]);
    }
    text.push('\n');
    if s.counters.is_empty() {
        text.push_str("no packets counted yet\n");
    } else {
        text.push_str(&counters.render());
    }
    text
}

/// Bytes as KiB or MiB, as people read memory.
fn kib(bytes: u64) -> String {
    if bytes >= 10 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}
