//! `ztctl explain`: how the kernel judges the first packet of a flow, and which policy and
//! rule decide it.

use std::net::IpAddr;

use clap::ValueEnum;

use super::{CliError, Ctx, output, output::Format, unexpected};
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
    let has_ports = matches!(args.proto, Proto::Tcp | Proto::Udp | Proto::Sctp);
    match (has_ports, args.port) {
        (true, None) => {
            return Err(CliError::Usage(format!("--port is needed for --proto {protocol}")));
        }
        (false, Some(_)) => {
            return Err(CliError::Usage(format!("--proto {protocol} has no ports; leave out --port")));
        }
        _ => {}
    }
    if args.from.to_canonical().is_ipv4() != args.to.to_canonical().is_ipv4() {
        return Err(CliError::Usage("--from and --to must both be IPv4 or both IPv6 addresses".into()));
    }
    let query = ExplainQuery {
        from: args.from,
        to: args.to,
        protocol,
        port: args.port,
        direction: args.direction.map(|d| d.to_possible_value().expect("no skipped values").get_name().to_string()),
    };
    let reply = ctx.call(&Request::Explain(query))?;
    let Reply::Explain(e) = &reply else {
        return Err(unexpected(&reply));
    };
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, e, || render(e))?;
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
        e.generation
    )
}

fn peer(p: &ExplainedPeer) -> String {
    let prefix = p.prefix.as_deref().map(|n| format!(" via {n}")).unwrap_or_default();
    let quarantined = if p.quarantined { ", QUARANTINED" } else { "" };
    let pod = zt_api::labels::pod_name(&p.labels).map(|name| format!(" pod {name}")).unwrap_or_default();
    format!("{}{pod} identity {} [{}]{prefix}{quarantined}", p.ip, p.identity, output::labels(&p.labels))
}
