//! The metrics endpoint: a small HTTP/1.1 server on tokio that answers `GET /metrics` (and
//! `HEAD`) with the text exposition, 404 for other paths and 405 for other methods.
//!
//! Scrapes are rare and small, so each connection serves one request and closes
//! (`Connection: close`). Connections are bounded: at most `MAX_CONNECTIONS` at once (more
//! wait in the listen backlog), a request head of at most `MAX_HEAD` bytes, and
//! `CONNECTION_TIMEOUT` for the whole exchange, so a slow or hostile client cannot hold the
//! agent's resources. Rendering runs on the blocking pool because it reads kernel maps.

use std::{
    net::{SocketAddr, TcpListener, ToSocketAddrs},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
};

use super::{Sources, collect, exposition::CONTENT_TYPE};

/// Concurrent connections served; further clients wait in the backlog.
const MAX_CONNECTIONS: usize = 16;
/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8192;
/// Time a connection may take from accept to the last byte of the response.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to wait for the client to close after the response.
const LINGER: Duration = Duration::from_secs(1);

/// Why the metrics endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics {0} is not an address; give IP:PORT such as 127.0.0.1:9464, or none to turn metrics off")]
    BadAddress(String),
    #[error(
        "cannot serve metrics on {addr}: {cause}; free that port or choose another address with --metrics ADDR (or --metrics none)"
    )]
    Bind { addr: String, cause: std::io::Error },
}

/// Binds the metrics address (before the agent touches the kernel, so a taken port fails
/// fast); `None` or `"none"` means metrics are off.
pub fn bind(addr: Option<&str>) -> Result<Option<TcpListener>, MetricsError> {
    let Some(addr) = addr.filter(|a| *a != "none") else { return Ok(None) };
    let resolved: Vec<SocketAddr> =
        addr.to_socket_addrs().map_err(|_| MetricsError::BadAddress(addr.to_string()))?.collect();
    if resolved.is_empty() {
        return Err(MetricsError::BadAddress(addr.to_string()));
    }
    let listener = TcpListener::bind(&resolved[..])
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|cause| MetricsError::Bind { addr: addr.to_string(), cause })?;
    Ok(Some(listener))
}

/// What the endpoint serves: the exposition text, rendered per scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves the agent's metrics on `listener` until the runtime stops. Must be called within
/// the tokio runtime.
pub fn serve(listener: TcpListener, sources: Sources) -> std::io::Result<()> {
    let sources = Arc::new(sources);
    serve_with(listener, Arc::new(move || collect::render(&sources)))
}

/// Serves whatever `render` produces (the agent's metrics, or a test's text).
pub fn serve_with(listener: TcpListener, render: Render) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    log::warn!("metrics endpoint cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let render = render.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, exchange(stream, render)).await;
            });
        }
    });
    Ok(())
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
}

/// Parses the request line of a complete head; `None` if it is not HTTP/1.x.
fn parse_head(head: &str) -> Option<Request<'_>> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Some(Request { method, path })
}

/// Reads until the end of the request head (a blank line); `None` if the client closed
/// first or the head is too large.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_HEAD {
            return None;
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return String::from_utf8(buf).ok();
        }
    }
}

async fn exchange(mut stream: TcpStream, render: Render) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await else {
        return respond(&mut stream, "400 Bad Request", "text/plain", b"bad request\n", true, &[]).await;
    };
    let Some(req) = parse_head(&head) else {
        return respond(&mut stream, "400 Bad Request", "text/plain", b"bad request\n", true, &[]).await;
    };
    let head_only = req.method == "HEAD";
    if req.method != "GET" && !head_only {
        let allow = [("Allow", "GET, HEAD")];
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", b"only GET and HEAD\n", head_only, &allow)
            .await;
    }
    if req.path != "/metrics" {
        return respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"not found; metrics are at /metrics\n",
            head_only,
            &[],
        )
        .await;
    }
    let body = match tokio::task::spawn_blocking(move || render()).await {
        Ok(body) => body,
        Err(_) => {
            return respond(
                &mut stream,
                "500 Internal Server Error",
                "text/plain",
                b"rendering failed\n",
                head_only,
                &[],
            )
            .await;
        }
    };
    respond(&mut stream, "200 OK", CONTENT_TYPE, body.as_bytes(), head_only, &[]).await
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    extra: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await?;
    linger(stream).await;
    Ok(())
}

/// Reads and discards what the client still sends (the rest of a refused request) until it
/// closes, briefly: closing with unread data would reset the connection and could destroy
/// the response before the client reads it.
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut left = 64 * 1024;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left -= n.min(left),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn the_request_line_gives_method_and_path_without_query() {
        assert_eq!(
            parse_head("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Request { method: "GET", path: "/metrics" })
        );
        assert_eq!(parse_head("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Some(Request { method: "GET", path: "/metrics" }));
        assert_eq!(parse_head("GET /metrics\r\n\r\n"), None);
        assert_eq!(parse_head("GET /metrics SPDY/3\r\n\r\n"), None);
    }

    #[test]
    fn a_bad_address_and_a_taken_port_are_refused_with_the_fix() {
        let err = bind(Some("nonsense")).unwrap_err().to_string();
        assert_eq!(
            err,
            "--metrics nonsense is not an address; give IP:PORT such as 127.0.0.1:9464, or none to turn metrics off"
        );
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = bind(Some(&addr)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot serve metrics on {addr}: ")), "{err}");
        assert!(
            err.ends_with("free that port or choose another address with --metrics ADDR (or --metrics none)"),
            "{err}"
        );
        assert!(bind(Some("none")).unwrap().is_none());
        assert!(bind(None).unwrap().is_none());
    }

    /// Sends `request` and returns the response (what arrived before the server closed;
    /// a server refusing an oversized head may reset the rest of the request).
    fn ask(addr: SocketAddr, request: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut chunk) {
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn metrics_are_served_at_slash_metrics_and_nothing_else() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = bind(Some("127.0.0.1:0")).unwrap().unwrap();
        let addr = listener.local_addr().unwrap();
        rt.block_on(async { serve_with(listener, Arc::new(|| "# HELP a A.\n# TYPE a gauge\na 1\n".to_string())) })
            .unwrap();

        let ok = ask(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{ok}");
        assert!(ok.contains("\r\nContent-Length: 31\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n# HELP a A.\n# TYPE a gauge\na 1\n"), "{ok}");

        let head = ask(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(ask(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 Not Found\r\n"));
        let post = ask(addr, "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && post.contains("\r\nAllow: GET, HEAD\r\n"),
            "{post}"
        );
        assert!(ask(addr, "garbage\r\n\r\n").starts_with("HTTP/1.1 400 Bad Request\r\n"));
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let refused = ask(addr, &huge);
        assert!(refused.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{refused:?}");
    }
}
