//! The API client `ztctl` uses: connect to the agent (its local socket, or its remote
//! listener over mutual TLS), send one request line, read the answer (a final line, or a
//! stream of records before it). Blocking, because a CLI does one thing at a time.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use rustls::{AlertDescription, ClientConfig, ClientConnection, StreamOwned, pki_types::ServerName};

use crate::protocol::{self, ApiError, Reply, Request, Response};

/// How long a request may take before the client gives up (a large push compiles for
/// seconds; a wedged agent must not hang the operator's shell forever).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting to a remote agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request did not succeed; each is one sentence naming the agent and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the zt agent at {agent}: {reason}")]
    Connect { agent: String, reason: String },
    #[error("the connection to the zt agent at {agent} broke: {source}")]
    Io { agent: String, source: io::Error },
    #[error("the TLS handshake with the zt agent at {agent} failed: {reason}")]
    Tls { agent: String, reason: String },
    #[error(
        "the zt agent at {agent} answered something this ztctl does not understand ({detail}); are ztctl and zt-agent the same version?"
    )]
    Protocol { agent: String, detail: String },
    /// The agent's own answer: refused, rejected, not found, failed.
    #[error("{0}")]
    Api(ApiError),
}

/// Where the agent is: its local socket, or a remote listener over mutual TLS.
#[derive(Clone, Debug)]
pub enum Target {
    Socket(PathBuf),
    Remote(RemoteTarget),
}

/// A remote agent: `HOST:PORT`, the name its certificate must carry, and the TLS settings
/// (CA, client certificate) from [`crate::tls::client_config`].
#[derive(Clone, Debug)]
pub struct RemoteTarget {
    pub server: String,
    pub server_name: ServerName<'static>,
    pub config: Arc<ClientConfig>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Socket(path) => write!(f, "{}", path.display()),
            Target::Remote(r) => f.write_str(&r.server),
        }
    }
}

/// A connection of either transport.
trait Connection: Read + Write {}
impl<T: Read + Write> Connection for T {}

/// A client of one agent.
#[derive(Clone, Debug)]
pub struct Client {
    target: Target,
    timeout: Option<Duration>,
}

impl Client {
    /// A client of the local socket `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client::to(Target::Socket(socket.into()))
    }

    pub fn to(target: Target) -> Client {
        Client { target, timeout: Some(DEFAULT_TIMEOUT) }
    }

    /// `None`: wait as long as it takes (`flows --follow`).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends `request` and returns the agent's final answer.
    pub fn call(&self, request: &Request) -> Result<Reply, ClientError> {
        self.stream(request, |_| true)?.ok_or_else(|| ClientError::Protocol {
            agent: self.target.to_string(),
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
        let io_error = |e| self.io_error(e);
        stream.write_all(protocol::encode(request).as_bytes()).and_then(|()| stream.flush()).map_err(io_error)?;
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            let n = lines.read_line(&mut line).map_err(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Io {
                    agent: self.target.to_string(),
                    source: io::Error::new(
                        e.kind(),
                        format!("no answer within {}s", self.timeout.unwrap_or_default().as_secs()),
                    ),
                },
                _ => io_error(e),
            })?;
            if n == 0 {
                return Err(ClientError::Protocol {
                    agent: self.target.to_string(),
                    detail: "it closed the connection without a final answer".into(),
                });
            }
            let response: Response = protocol::decode(&line)
                .map_err(|e| ClientError::Protocol { agent: self.target.to_string(), detail: e.message })?;
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

    fn connect(&self) -> Result<Box<dyn Connection>, ClientError> {
        let connect_error = |reason: String| ClientError::Connect { agent: self.target.to_string(), reason };
        match &self.target {
            Target::Socket(path) => {
                let stream = UnixStream::connect(path).map_err(|e| {
                    connect_error(match e.kind() {
                        io::ErrorKind::NotFound => "no such file; is zt-agent running?".to_string(),
                        io::ErrorKind::ConnectionRefused => "connection refused; is zt-agent running?".to_string(),
                        io::ErrorKind::PermissionDenied => "permission denied; run ztctl as root".to_string(),
                        _ => format!("{e}; is zt-agent running, and is --socket right?"),
                    })
                })?;
                stream.set_read_timeout(self.timeout).map_err(|e| self.io_error(e))?;
                Ok(Box::new(stream))
            }
            Target::Remote(remote) => {
                let tcp = remote_connect(&remote.server).map_err(connect_error)?;
                tcp.set_read_timeout(self.timeout).map_err(|e| self.io_error(e))?;
                let tls = ClientConnection::new(remote.config.clone(), remote.server_name.clone())
                    .map_err(|e| self.io_error(io::Error::other(e)))?;
                let mut stream = StreamOwned::new(tls, tcp);
                // Finish the handshake here, so its failures are told apart from the request's.
                while stream.conn.is_handshaking() {
                    stream.conn.complete_io(&mut stream.sock).map_err(|e| self.io_error(e))?;
                }
                Ok(Box::new(stream))
            }
        }
    }

    /// An I/O failure; one that TLS caused is explained with its fix.
    fn io_error(&self, source: io::Error) -> ClientError {
        let agent = self.target.to_string();
        if !matches!(self.target, Target::Remote(_)) {
            return ClientError::Io { agent, source };
        }
        let tls = source.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let reason = match tls {
            Some(rustls::Error::AlertReceived(AlertDescription::CertificateRequired))
            | Some(rustls::Error::AlertReceived(AlertDescription::HandshakeFailure))
                if !self.has_client_certificate() =>
            {
                "the agent requires a client certificate; pass --cert and --key".to_string()
            }
            Some(rustls::Error::AlertReceived(alert)) => format!(
                "the agent refused this client certificate ({alert:?}); pass --cert and --key of a certificate signed by the CA in the agent's [remote] ca"
            ),
            Some(rustls::Error::InvalidCertificate(e)) => {
                format!("the agent's certificate is not trusted ({e:?}); check --ca and --server-name")
            }
            Some(other) => format!("{other}"),
            None if source.kind() == io::ErrorKind::ConnectionReset => {
                "the agent closed the connection; is --cert signed by the CA in the agent's [remote] ca?".to_string()
            }
            None => return ClientError::Io { agent, source },
        };
        ClientError::Tls { agent, reason }
    }

    fn has_client_certificate(&self) -> bool {
        matches!(&self.target, Target::Remote(r) if r.config.client_auth_cert_resolver.has_certs())
    }
}

/// Connects to `HOST:PORT`, trying each address it resolves to.
fn remote_connect(server: &str) -> Result<TcpStream, String> {
    let addrs = server.to_socket_addrs().map_err(|e| format!("{e}; pass --server as HOST:PORT"))?;
    let mut last = String::from("the name resolves to no address; check --server");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("{e}; is the agent's [remote] listener on {addr}?"),
        }
    }
    Err(last)
}
