//! `ztctl alerts`: the alerts the agent raised, and with `--follow` new ones as they are
//! raised. `-o json` prints exactly the flow log's alert lines (one JSON object per line).

use std::{io::Write, time::Duration};

use super::{CliError, Ctx, duration::parse_duration, live, output::Format, unexpected};
use zt_api::{
    alert::Alert,
    protocol::{Reply, Request, Response},
};

#[derive(clap::Args, Debug)]
pub struct AlertsArgs {
    /// After the recent alerts, keep printing new ones until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only alerts at most this old, e.g. 30s, 5m, 1h.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    since: Option<Duration>,
}

pub fn run(ctx: &mut Ctx, args: AlertsArgs) -> Result<(), CliError> {
    let format = ctx.format_or(Format::Table);
    if format == Format::Table {
        writeln!(ctx.out, "{}", row_text(["TIME", "DETECTOR", "SOURCE", "COUNT", "ACTION", "MESSAGE"]))?;
    }
    let request = Request::Alerts { since_seconds: args.since.map(|d| d.as_secs()), follow: args.follow };
    let reply = live::print_stream(ctx, &request, args.follow, "alerts", |out, item| match item {
        Response::Alert { alert } => print(out, format, &alert),
        _ => Ok(()),
    })?;
    match reply {
        None | Some(Reply::AlertsEnd { .. }) => Ok(()),
        Some(other) => Err(unexpected(&other)),
    }
}

fn print(out: &mut dyn Write, format: Format, a: &Alert) -> std::io::Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", a.to_json_line()),
        Format::Yaml => write!(out, "---\n{}", serde_norway::to_string(a).map_err(std::io::Error::other)?),
        Format::Table => {
            let action = match (a.dry_run, a.ttl) {
                (true, _) => format!("{} (dry run)", a.action),
                (false, Some(ttl)) if ttl > 0 => format!("{} {ttl}s", a.action),
                (false, _) => a.action.clone(),
            };
            let source = a.src_ip.map_or("-".to_string(), |ip| ip.to_string());
            writeln!(
                out,
                "{}",
                row_text([a.time.as_str(), &a.detector, &source, &a.count.to_string(), &action, &a.message])
            )
        }
    }
}

/// The table's column widths.
const WIDTHS: [usize; 6] = [24, 10, 26, 6, 18, 0];

fn row_text<S: AsRef<str>>(cells: [S; 6]) -> String {
    live::row(cells, WIDTHS)
}
