//! Stage 2: write flow records as JSON lines to standard output or a file.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{FlowHistory, FlowRecord};

/// Where the flow log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowLogTarget {
    Stdout,
    File(PathBuf),
}

impl FlowLogTarget {
    /// `-` is standard output, anything else a file path.
    pub fn parse(s: &str) -> FlowLogTarget {
        if s == "-" { FlowLogTarget::Stdout } else { FlowLogTarget::File(PathBuf::from(s)) }
    }
}

enum Out {
    Stdout(io::Stdout),
    File(BufWriter<File>),
}

fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Runs the sink stage until every sender is gone: every record goes to `history`, and to
/// the flow log when there is one. Lines are flushed per batch so a reader of the log (or a
/// test) sees them promptly.
pub async fn run(target: Option<FlowLogTarget>, mut rx: mpsc::Receiver<FlowRecord>, history: Arc<FlowHistory>) -> io::Result<()> {
    let mut out = match &target {
        None => None,
        Some(FlowLogTarget::Stdout) => Some(Out::Stdout(io::stdout())),
        Some(FlowLogTarget::File(p)) => Some(Out::File(BufWriter::new(open(p).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open flow log {}: {e}", p.display()))
        })?))),
    };
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        let mut text = String::new();
        for record in batch.drain(..) {
            if out.is_some() {
                text.push_str(&record.to_json_line());
                text.push('\n');
            }
            history.push(record);
        }
        let Some(out) = out.as_mut() else { continue };
        match out {
            Out::Stdout(s) => {
                let mut lock = s.lock();
                lock.write_all(text.as_bytes())?;
                lock.flush()?;
            }
            Out::File(f) => {
                f.write_all(text.as_bytes())?;
                f.flush()?;
            }
        }
    }
    Ok(())
}
