//! `ztctl quarantine list | add IP [--ttl D] [--reason TEXT] | release IP`.

use std::{net::IpAddr, time::Duration};

use clap::Subcommand;

use super::{
    CliError, Ctx,
    duration::{format_duration, parse_duration},
    output,
    output::Format,
    unexpected,
};
use zt_api::protocol::{QuarantineEntry, Reply, Request};

#[derive(Subcommand, Debug)]
pub enum QuarantineCommand {
    /// The quarantined addresses: who quarantined each (manual or a detector), why, and
    /// when it is released.
    List,
    /// Drop all traffic from and to IP, established flows included.
    Add {
        #[arg(value_name = "IP")]
        ip: IpAddr,
        /// Release it by itself after this long, e.g. 30s, 5m, 1h [default: until released].
        #[arg(long, value_name = "D", value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// Why, shown by `quarantine list` (one line, at most 200 characters).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Let IP's traffic be judged by policy again.
    Release {
        #[arg(value_name = "IP")]
        ip: IpAddr,
    },
}

pub fn run(ctx: &mut Ctx, command: QuarantineCommand) -> Result<(), CliError> {
    let (request, done) = match command {
        QuarantineCommand::List => (Request::QuarantineList, None),
        QuarantineCommand::Add { ip, ttl, reason } => {
            let until = ttl.map_or("until released".to_string(), |d| format!("for {}", format_duration(d)));
            (
                Request::QuarantineAdd { ip, ttl_seconds: ttl.map(|d| d.as_secs()), reason },
                Some(format!("quarantined {ip} {until}")),
            )
        }
        QuarantineCommand::Release { ip } => (Request::QuarantineRelease { ip }, Some(format!("released {ip}"))),
    };
    let reply = ctx.call(&request)?;
    let Reply::Quarantine { entries } = &reply else {
        return Err(unexpected(&reply));
    };
    // A change prints its sentence (people) unless data was asked for with -o.
    if let (Some(done), None) = (&done, ctx.format) {
        writeln!(ctx.out, "{done}")?;
        return Ok(());
    }
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, entries, || table(entries))?;
    Ok(())
}

fn table(entries: &[QuarantineEntry]) -> String {
    let mut t = output::Table::new(&["IP", "ORIGIN", "TIME LEFT", "REASON"]);
    for e in entries {
        let left =
            e.expires_in_seconds.map_or("until released".to_string(), |s| format_duration(Duration::from_secs(s)));
        t.row(vec![e.ip.to_string(), e.origin.clone(), left, e.reason.clone().unwrap_or_else(|| "-".into())]);
    }
    t.render()
}
