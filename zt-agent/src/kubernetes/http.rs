//! The little HTTP/1.1 the Kubernetes list/watch protocol needs: one `GET` per connection
//! (`Connection: close`), a bearer token, plain TCP or TLS, and a body read either whole
//! (a list) or chunk by chunk as it arrives (a watch, whose events are JSON lines in a
//! chunked response that stays open for minutes).
//!
//! Hand-written rather than a general client because the protocol needs only this, and
//! the agent already links tokio and rustls: no new dependency, and nothing in it the
//! watcher does not exercise.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, rustls::ClientConfig};

/// The largest status line or header line accepted; an API server's are far shorter.
const MAX_HEADER_LINE: usize = 16 * 1024;
/// The largest single watch event (one JSON line); a Pod is a few KiB, a huge one 1 MiB.
pub const MAX_EVENT: usize = 16 * 1024 * 1024;
/// How long connecting and sending a request may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the API server is and how to authenticate to it.
#[derive(Clone)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub authority: String,
    /// The name the server certificate must carry (TLS only).
    pub server_name: String,
    /// `Some` for `https://`.
    pub tls: Option<Arc<ClientConfig>>,
    /// Sent as `Authorization: Bearer …`.
    pub token: Option<Token>,
}

/// A bearer token: given, or read from a file before every request (a service account's
/// projected token is rotated by the kubelet while the agent runs).
#[derive(Clone, Debug)]
pub enum Token {
    Given(String),
    File(std::path::PathBuf),
}

impl Token {
    fn value(&self) -> std::io::Result<String> {
        match self {
            Token::Given(t) => Ok(t.clone()),
            Token::File(path) => std::fs::read_to_string(path).map(|t| t.trim().to_string()).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot read the token file {}: {e}", path.display()))
            }),
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority)
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How the body is delimited.
enum Framing {
    Chunked { left: usize, done: bool },
    Length(usize),
    Close,
}

/// A response whose body is read as it arrives.
pub struct Response {
    pub status: u16,
    reader: BufReader<Box<dyn Stream>>,
    framing: Framing,
    /// Body bytes read but not yet handed out as a line.
    pending: Vec<u8>,
}

impl Endpoint {
    /// Sends `GET path` and reads the status line and headers.
    pub async fn get(&self, path: &str) -> std::io::Result<Response> {
        let connect = async {
            let tcp = TcpStream::connect(&self.authority).await?;
            tcp.set_nodelay(true)?;
            let stream: Box<dyn Stream> = match &self.tls {
                None => Box::new(tcp),
                Some(config) => {
                    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.server_name.clone())
                        .map_err(|e| invalid(format!("{:?} is no valid server name: {e}", self.server_name)))?;
                    Box::new(TlsConnector::from(config.clone()).connect(name, tcp).await?)
                }
            };
            Ok::<_, std::io::Error>(stream)
        };
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out"))??;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: zt-agent\r\nConnection: close\r\n",
            self.authority
        );
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {}\r\n", token.value()?));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let mut reader = BufReader::new(stream);
        let status_line = header_line(&mut reader).await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| status_line.starts_with("HTTP/1."))
            .ok_or_else(|| invalid(format!("the server's answer {status_line:?} is no HTTP/1.1 status line")))?;
        let mut framing = Framing::Close;
        loop {
            let line = header_line(&mut reader).await?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                framing = Framing::Chunked { left: 0, done: false };
            } else if name.eq_ignore_ascii_case("content-length") && !matches!(framing, Framing::Chunked { .. }) {
                framing = Framing::Length(value.parse().map_err(|_| invalid(format!("bad Content-Length {value:?}")))?);
            }
        }
        Ok(Response { status, reader, framing, pending: Vec::new() })
    }
}

impl Response {
    /// The next piece of the body as it arrives; `None` at its end.
    async fn next_piece(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 64 * 1024];
        match &mut self.framing {
            Framing::Close => {
                let n = self.reader.read(&mut buf).await?;
                buf.truncate(n);
                Ok((n > 0).then_some(buf))
            }
            Framing::Length(left) => {
                if *left == 0 {
                    return Ok(None);
                }
                let want = (*left).min(buf.len());
                let n = self.reader.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n;
                buf.truncate(n);
                Ok(Some(buf))
            }
            Framing::Chunked { left, done } => {
                if *done {
                    return Ok(None);
                }
                if *left == 0 {
                    let size_line = header_line(&mut self.reader).await?;
                    let size = size_line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size, 16)
                        .map_err(|_| invalid(format!("bad chunk size line {size_line:?}")))?;
                    if size == 0 {
                        // Trailers end with an empty line.
                        while !header_line(&mut self.reader).await?.is_empty() {}
                        *done = true;
                        return Ok(None);
                    }
                    *left = size;
                }
                let want = (*left).min(buf.len());
                let n = self.reader.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n;
                if *left == 0 {
                    let crlf = header_line(&mut self.reader).await?;
                    if !crlf.is_empty() {
                        return Err(invalid("a chunk does not end with CRLF".into()));
                    }
                }
                buf.truncate(n);
                Ok(Some(buf))
            }
        }
    }

    /// The whole body, at most `limit` bytes.
    pub async fn body(&mut self, limit: usize) -> std::io::Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.pending);
        while let Some(piece) = self.next_piece().await? {
            out.extend_from_slice(&piece);
            if out.len() > limit {
                return Err(invalid(format!("the response is larger than {limit} bytes")));
            }
        }
        Ok(out)
    }

    /// The next line of the body without its newline (a watch event); `None` at the end.
    /// A last line without a newline is returned too.
    pub async fn line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut searched = 0;
        loop {
            if let Some(at) = self.pending[searched..].iter().position(|&b| b == b'\n') {
                let rest = self.pending.split_off(searched + at + 1);
                let mut line = std::mem::replace(&mut self.pending, rest);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            searched = self.pending.len();
            if searched > MAX_EVENT {
                return Err(invalid(format!("a watch event is larger than {MAX_EVENT} bytes")));
            }
            match self.next_piece().await? {
                Some(piece) => self.pending.extend_from_slice(&piece),
                None if self.pending.is_empty() => return Ok(None),
                None => return Ok(Some(std::mem::take(&mut self.pending))),
            }
        }
    }
}

async fn header_line(reader: &mut BufReader<Box<dyn Stream>>) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = (&mut *reader).take(MAX_HEADER_LINE as u64).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if line.last() != Some(&b'\n') {
        return Err(invalid("a header line is too long or cut off".into()));
    }
    let text = String::from_utf8(line).map_err(|_| invalid("a header line is not UTF-8".into()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}
