//! `ztctl explain`: how the kernel judges the first packet of a flow, and which policy and
//! rule decide it — asked of the agent, or with `--policy` computed offline by the same
//! code (`zt_policy::explain`) over the files compiled as the agent would.

use std::{net::IpAddr, path::PathBuf};

use clap::ValueEnum;

use super::{
    CliError, Ctx,
    offline::{HostArgs, Offline},
    output,
    output::Format,
    unexpected,
};
use zt_api::protocol::{ExplainQuery, ExplainedPeer, Explanation, Reply, Request};

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// Source address of the flow.
    #[arg(long, value_name = "IP")]
    from: IpAddr,
    /// Destination address of the flow.
    #[arg(long, value_name = "IP")]
    to: IpAddr,
    #[arg(long, value_enum, value_name = "PROTO")]
    proto: Proto,
    /// Destination port (TCP, UDP and SCTP only).
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// The hook to judge at [default: ingress if --to is this host, else egress if --from
    /// is, else ingress].
    #[arg(long, value_enum)]
    direction: Option<Direction>,
    /// Offline: judge by these policy files (or directories), compiled as the complete
    /// policy of the host --host/--labels describe, instead of asking an agent.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    policy: Vec<PathBuf>,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Direction {
    Ingress,
    Egress,
}

pub fn run(ctx: &mut Ctx, args: ExplainArgs) -> Result<(), CliError> {
    let protocol = args.proto.to_possible_value().expect("no skipped values").get_name().to_string();
    let query = ExplainQuery {
        from: args.from,
        to: args.to,
        protocol,
        port: args.port,
        direction: args.direction.map(|d| d.to_possible_value().expect("no skipped values").get_name().to_string()),
    };
    // The agent checks the question the same way; checking first makes a malformed one a
    // usage error even when no agent answers.
    zt_policy::explain::check(&query).map_err(|e| CliError::Usage(e.to_string()))?;
    let e = if args.policy.is_empty() {
        if args.host.is_given() {
            return Err(CliError::Usage(
                "--host, --labels, --default-deny and --failsafe describe the host for --policy; add --policy PATH, or leave them out to ask the agent".into(),
            ));
        }
        match ctx.call(&Request::Explain(query))? {
            Reply::Explain(e) => e,
            reply => return Err(unexpected(&reply)),
        }
    } else {
        let offline = Offline::compile(&args.policy, &args.host)?;
        zt_policy::explain::offline(&offline.compiled, &offline.ipcache)
            .explain(&query)
            .map_err(|e| CliError::Usage(e.to_string()))?
    };
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, &e, || render(&e))?;
    Ok(())
}

fn render(e: &Explanation) -> String {
    let port = e.port.map(|p| format!(" port {p}")).unwrap_or_default();
    let decided_by = match (&e.policy, e.rule, &e.policy_origin) {
        (Some(p), Some(rule), Some(origin)) => {
            format!("policy {p}, {} rule {rule} ({origin})", e.direction)
        }
        // default-deny: no rule allows it, and this policy isolates the local side.
        (Some(p), None, Some(origin)) => format!("no rule; policy {p} isolates the {} ({origin})", e.local),
        (Some(p), None, None) => format!("no rule; policy {p} isolates the {}", e.local),
        (Some(p), Some(_), None) => format!("policy {p}"),
        (None, _, _) => "no policy rule (the verdict comes from the reason)".to_string(),
    };
    format!(
        "verdict:      {} ({})\n\
         flow:         {}{port}, judged at {} (policy protects the {})\n\
         source:       {}\n\
         destination:  {}\n\
         decided by:   {decided_by}\n\
         generation:   {}\n",
        e.verdict,
        e.reason,
        e.protocol,
        e.direction,
        e.local,
        peer(&e.source),
        peer(&e.destination),
        generation(e.generation)
    )
}

/// Generation 0 is never enforced: it marks an answer computed offline from files.
fn generation(generation: u32) -> String {
    if generation == 0 { "none (computed offline from --policy)".to_string() } else { generation.to_string() }
}

fn peer(p: &ExplainedPeer) -> String {
    let prefix = p.prefix.as_deref().map(|n| format!(" via {n}")).unwrap_or_default();
    let quarantined = if p.quarantined { ", QUARANTINED" } else { "" };
    let pod = zt_api::labels::pod_name(&p.labels).map(|name| format!(" pod {name}")).unwrap_or_default();
    format!("{}{pod} identity {} [{}]{prefix}{quarantined}", p.ip, p.identity, output::labels(&p.labels))
}
