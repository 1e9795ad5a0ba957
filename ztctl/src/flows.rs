//! `ztctl flows`: recent flow records from the agent, filtered, and with `--follow` new ones
//! as they happen. `-o json` prints exactly the flow-log lines (one JSON object per line).
//! `ztctl flows map` (in `map/`) draws the agent's observed edges instead.

use std::{io::Write, net::IpAddr, time::Duration};

use clap::ValueEnum;

use super::{CliError, Ctx, duration::parse_duration, live, output::Format, unexpected};
use zt_api::{
    FlowRecord,
    flow_filter::{FlowFilter, PeerMatch, VerdictFilter},
    protocol::{Reply, Request, Response},
};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FlowsArgs {
    #[command(subcommand)]
    command: Option<FlowsCommand>,
    /// After the recent records, keep printing new ones until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only records with this verdict.
    #[arg(long, value_enum)]
    verdict: Option<Verdict>,
    /// Only flows from this source: an IP, a CIDR prefix or a label selector k=v[,k=v].
    #[arg(long, value_name = "SEL|IP", value_parser = parse_peer)]
    from: Option<PeerMatch>,
    /// Only flows to this destination: an IP, a CIDR prefix or a label selector k=v[,k=v].
    #[arg(long, value_name = "SEL|IP", value_parser = parse_peer)]
    to: Option<PeerMatch>,
    /// Only flows to this destination port.
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// Only records at most this old, e.g. 30s, 5m, 1h.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    since: Option<Duration>,
}

#[derive(clap::Subcommand, Debug)]
enum FlowsCommand {
    /// Draw who talks to whom: identities as boxes, observed edges as arrows coloured by
    /// verdict (SVG, an HTML page with a table of edges, or Graphviz dot).
    Map(super::map::MapArgs),
}

impl FlowsArgs {
    /// `flows map` rather than flow records: `-o` names a picture.
    pub fn draws_a_map(&self) -> bool {
        matches!(self.command, Some(FlowsCommand::Map(_)))
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Verdict {
    Allowed,
    Denied,
    Audit,
}

fn parse_peer(text: &str) -> Result<PeerMatch, String> {
    text.parse()
}

pub fn run(ctx: &mut Ctx, args: FlowsArgs) -> Result<(), CliError> {
    if let Some(FlowsCommand::Map(map)) = args.command {
        return super::map::run(ctx, map);
    }
    let filter = FlowFilter {
        verdict: args.verdict.map(|v| match v {
            Verdict::Allowed => VerdictFilter::Allowed,
            Verdict::Denied => VerdictFilter::Denied,
            Verdict::Audit => VerdictFilter::Audit,
        }),
        from: args.from,
        to: args.to,
        port: args.port,
        since_seconds: args.since.map(|d| d.as_secs()),
    };
    let format = ctx.format_or(Format::Table);
    if format == Format::Table {
        writeln!(
            ctx.out,
            "{}",
            row_text(["TIME", "VERDICT", "REASON", "DIRECTION", "PROTO", "SOURCE", "DESTINATION", "POLICY"])
        )?;
    }
    let request = Request::Flows { filter, follow: args.follow };
    let reply = live::print_stream(ctx, &request, args.follow, "flow records", |out, item| match item {
        Response::Flow { flow } => print(out, format, &flow),
        _ => Ok(()),
    })?;
    match reply {
        None | Some(Reply::FlowsEnd { .. }) => Ok(()),
        Some(other) => Err(unexpected(&other)),
    }
}

fn print(out: &mut dyn Write, format: Format, r: &FlowRecord) -> std::io::Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", r.to_json_line()),
        Format::Yaml => write!(out, "---\n{}", serde_norway::to_string(r).map_err(std::io::Error::other)?),
        Format::Table => {
            let policy = match (&r.policy, r.rule) {
                (Some(p), Some(rule)) => format!("{p} rule {rule}"),
                (Some(p), None) => p.clone(),
                (None, _) => "-".into(),
            };
            let cells = [
                r.time.as_str(),
                &r.verdict,
                &r.reason,
                &r.direction,
                &r.protocol,
                &endpoint(r.src_ip, r.src_port, &r.src_labels),
                &endpoint(r.dst_ip, r.dst_port, &r.dst_labels),
                &policy,
            ];
            writeln!(out, "{}", row_text(cells))
        }
    }
}

/// The table's column widths.
const WIDTHS: [usize; 8] = [24, 7, 14, 9, 6, 30, 30, 0];

fn row_text<S: AsRef<str>>(cells: [S; 8]) -> String {
    live::row(cells, WIDTHS)
}

/// `ip:port`, followed by ` (namespace/name)` when the address is a Kubernetes pod.
fn endpoint(ip: Option<IpAddr>, port: Option<u16>, labels: &std::collections::BTreeMap<String, String>) -> String {
    let address = match (ip, port) {
        (Some(IpAddr::V6(ip)), Some(port)) => format!("[{ip}]:{port}"),
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.to_string(),
        (None, _) => "-".into(),
    };
    match zt_api::labels::pod_name(labels) {
        Some(pod) => format!("{address} ({pod})"),
        None => address,
    }
}
