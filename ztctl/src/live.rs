//! Streaming commands (`flows`, `alerts`): send the request, print each item the agent
//! streams back as it arrives (flushed one by one, so a `--follow` reader sees each at
//! once), tell the user what a reader that fell behind missed, and return the final reply.

use std::io::{self, Write};

use super::{CliError, Ctx};
use zt_api::protocol::{Reply, Request, Response};

/// Streams `request` (with `follow`, until interrupted) through `print`, which writes the
/// items it knows and ignores the rest; `items` names them in the "missed" warning.
pub fn print_stream(
    ctx: &mut Ctx,
    request: &Request,
    follow: bool,
    items: &str,
    mut print: impl FnMut(&mut dyn Write, Response) -> io::Result<()>,
) -> Result<Option<Reply>, CliError> {
    let client = ctx.client.clone().with_timeout(if follow { None } else { Some(zt_api::client::DEFAULT_TIMEOUT) });
    let out = &mut *ctx.out;
    let mut failed = None;
    let reply = client.stream(request, |item| {
        let written = match item {
            Response::Lost { lost } => {
                eprintln!("ztctl: {lost} {items} were missed because this reader fell behind");
                Ok(())
            }
            item => print(out, item),
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match failed {
        Some(e) => Err(CliError::Output(e)),
        None => Ok(reply),
    }
}

/// One row of fixed-width columns (a live stream cannot measure its rows first); the last
/// column takes what it needs.
pub fn row<S: AsRef<str>, const N: usize>(cells: [S; N], widths: [usize; N]) -> String {
    let mut line = String::new();
    for (cell, width) in cells.iter().zip(widths) {
        line.push_str(&format!("{:<width$}  ", cell.as_ref()));
    }
    line.trim_end().to_string()
}
