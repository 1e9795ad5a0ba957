//! The API client `ztctl` uses: connect to the agent's socket, send one request line, read
//! the answer (a final line, or a stream of records before it). Blocking, because a CLI
//! does one thing at a time.

use std::{
    io::{self, BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::protocol::{self, ApiError, Reply, Request, Response};

/// How long a request may take before the client gives up (a large push compiles for
/// seconds; a wedged agent must not hang the operator's shell forever).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a request did not succeed; each is one sentence naming the socket and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the zt agent at {path}: {reason}")]
    Connect { path: PathBuf, reason: String },
    #[error("the connection to the zt agent at {path} broke: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the zt agent at {path} answered something this ztctl does not understand ({detail}); are ztctl and zt-agent the same version?"
    )]
    Protocol { path: PathBuf, detail: String },
    /// The agent's own answer: refused, rejected, not found, failed.
    #[error("{0}")]
    Api(ApiError),
}

/// A client of one agent socket.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    timeout: Option<Duration>,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            timeout: Some(DEFAULT_TIMEOUT),
        }
    }

    /// `None`: wait as long as it takes (`flows --follow`).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `request` and returns the agent's final answer.
    pub fn call(&self, request: &Request) -> Result<Reply, ClientError> {
        self.stream(request, |_| true)?
            .ok_or_else(|| ClientError::Protocol {
                path: self.socket.clone(),
                detail: "the answer ended early".into(),
            })
    }

    /// Sends `request`, hands every streamed line (flow records, `lost` notices) to
    /// `on_item` — which returns `false` to stop reading — and returns the final answer,
    /// or `None` if `on_item` stopped first.
    pub fn stream(
        &self,
        request: &Request,
        mut on_item: impl FnMut(Response) -> bool,
    ) -> Result<Option<Reply>, ClientError> {
        let mut stream = self.connect()?;
        let io_error = |source| ClientError::Io {
            path: self.socket.clone(),
            source,
        };
        stream.set_read_timeout(self.timeout).map_err(io_error)?;
        stream
            .write_all(protocol::encode(request).as_bytes())
            .map_err(io_error)?;
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            let n = lines.read_line(&mut line).map_err(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Io {
                    path: self.socket.clone(),
                    source: io::Error::new(
                        e.kind(),
                        format!(
                            "no answer within {}s",
                            self.timeout.unwrap_or_default().as_secs()
                        ),
                    ),
                },
                _ => io_error(e),
            })?;
            if n == 0 {
                return Err(ClientError::Protocol {
                    path: self.socket.clone(),
                    detail: "it closed the connection without a final answer".into(),
                });
            }
            let response: Response =
                protocol::decode(&line).map_err(|e| ClientError::Protocol {
                    path: self.socket.clone(),
                    detail: e.message,
                })?;
            match response {
                Response::Ok { result } => return Ok(Some(result)),
                Response::Error { error } => return Err(ClientError::Api(error)),
                item => {
                    if !on_item(item) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.socket).map_err(|e| {
            let reason = match e.kind() {
                io::ErrorKind::NotFound => "no such file; is zt-agent running?".to_string(),
                io::ErrorKind::ConnectionRefused => {
                    "connection refused; is zt-agent running?".to_string()
                }
                io::ErrorKind::PermissionDenied => {
                    "permission denied; run ztctl as root".to_string()
                }
                _ => format!("{e}; is zt-agent running, and is --socket right?"),
            };
            ClientError::Connect {
                path: self.socket.clone(),
                reason,
            }
        })
    }
}
