//! The API server: accepts connections on the agent's Unix socket, checks each peer's
//! credentials, reads one request line and answers it. [`connection`] serves any stream,
//! so the remote TLS listener (`remote`) shares it with only its own authorization.
//!
//! Handlers run on the blocking pool, because they take the agent-state mutex (a push
//! holds it while it compiles and switches the generation) and must not stall the async
//! workers that carry the flow pipeline. Each takes the lock only for what it reads or
//! changes. `flows` is the one streaming request: it reads the flow history without the
//! lock and writes records until it is done or, with `follow`, until the client goes away.

use std::time::Duration;

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter},
    net::{UnixListener, UnixStream},
};

use super::{
    ApiSocket, alerts, auth, edges, explain, flows, inventory, policy,
    protocol::{self, ApiError, MAX_REQUEST_BYTES, Reply, Request, Response},
    quarantine,
    role::{Grant, Role},
    status,
};
use crate::agent::{SharedState, revisions::own_uid};

/// A client has this long to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts serving `socket` on the current tokio runtime, until the runtime stops; the socket
/// file goes with it. (Quarantine expiry is the agent core's, started by `daemon`.)
pub fn serve(mut socket: ApiSocket, shared: SharedState) -> std::io::Result<()> {
    let listener = socket.take_listener().ok_or_else(|| std::io::Error::other("the API socket is already served"))?;
    let listener = UnixListener::from_std(listener)?;
    tokio::spawn(accept_loop(listener, socket, shared));
    Ok(())
}

async fn accept_loop(listener: UnixListener, _socket: ApiSocket, shared: SharedState) {
    let agent_uid = own_uid();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let grant = local_grant(&stream, agent_uid);
                tokio::spawn(connection(stream, shared.clone(), grant));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                log::warn!("the API socket cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A local peer is admitted by its uid (SO_PEERCRED), with every right.
fn local_grant(stream: &UnixStream, agent_uid: u32) -> Result<Grant, ApiError> {
    let uid =
        stream.peer_cred().map_err(|e| ApiError::failed(format!("cannot read the client's credentials: {e}")))?.uid();
    auth::authorize(uid, agent_uid).inspect_err(|_| log::warn!("refused an API request from uid {uid}"))?;
    Ok(Grant { author_uid: uid, role: Role::Admin })
}

/// Serves one connection of any transport (the Unix socket, or TLS for remote clients):
/// reads the request line, then answers with the listener's authorization decision
/// `grant` — a refusal, or the role that decides which requests run.
pub(crate) async fn connection<S>(stream: S, shared: SharedState, grant: Result<Grant, ApiError>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut input = BufReader::new(read);
    let mut out = BufWriter::new(write);
    // The request is read before any refusal is sent: a client whose request was never
    // read could see the connection reset instead of the answer.
    let line = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut input)).await {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => return,
        Ok(Err(error)) => return reply(&mut out, Response::Error { error }).await,
        Err(_) => {
            let error = ApiError::bad_request(format!("no request line arrived within {}s", REQUEST_TIMEOUT.as_secs()));
            return reply(&mut out, Response::Error { error }).await;
        }
    };
    let grant = match grant {
        Ok(grant) => grant,
        Err(error) => return reply(&mut out, Response::Error { error }).await,
    };
    let request: Request = match protocol::decode(&line) {
        Ok(request) => request,
        Err(error) => return reply(&mut out, Response::Error { error }).await,
    };
    if let Err(error) = grant.role.permit(&request) {
        return reply(&mut out, Response::Error { error }).await;
    }
    if let Request::Flows { filter, follow } = request {
        return flows::stream(&shared, filter, follow, input, out).await;
    }
    if let Request::Alerts { since_seconds, follow } = request {
        return alerts::stream(&shared, since_seconds, follow, input, out).await;
    }
    let uid = grant.author_uid;
    let response = match tokio::task::spawn_blocking(move || handle(&shared, request, uid)).await {
        Ok(Ok(result)) => Response::Ok { result },
        Ok(Err(error)) => Response::Error { error },
        Err(e) => Response::Error { error: ApiError::failed(format!("the request failed inside the agent: {e}")) },
    };
    reply(&mut out, response).await;
}

/// One line, at most [`MAX_REQUEST_BYTES`]; `None` if the client closed without sending.
async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(input: &mut R) -> Result<Option<String>, ApiError> {
    let mut line = String::new();
    let n = input
        .take(MAX_REQUEST_BYTES)
        .read_line(&mut line)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') && n as u64 >= MAX_REQUEST_BYTES {
        return Err(ApiError::bad_request(format!(
            "the request is larger than {} MiB; push fewer files at once",
            MAX_REQUEST_BYTES >> 20
        )));
    }
    Ok(Some(line))
}

fn handle(shared: &SharedState, request: Request, uid: u32) -> Result<Reply, ApiError> {
    match request {
        Request::PolicyApply { sources, dry_run } => policy::apply(shared, sources, dry_run, uid),
        Request::PolicyDiff { sources } => policy::diff(shared, sources),
        Request::PolicyGet { name } => policy::get(shared, name.as_deref()),
        Request::PolicyDelete { name, dry_run } => policy::delete(shared, &name, dry_run, uid),
        Request::PolicyHistory => policy::history(shared),
        Request::PolicyRollback { revision } => policy::rollback(shared, revision, uid),
        Request::EndpointList => inventory::endpoints(shared),
        Request::IdentityList => inventory::identities(shared),
        Request::Status => status::report(shared),
        Request::Explain(query) => explain::explain(shared, &query),
        Request::QuarantineList => quarantine::list(shared),
        Request::QuarantineAdd { ip, ttl_seconds, reason } => quarantine::add(shared, ip, ttl_seconds, reason),
        Request::QuarantineRelease { ip } => quarantine::release(shared, ip),
        Request::Flows { .. } => Err(ApiError::bad_request("flows is a streaming request")),
        Request::Alerts { .. } => Err(ApiError::bad_request("alerts is a streaming request")),
        Request::Edges { since_seconds } => edges::list(shared, since_seconds),
    }
}

/// Writes one response line and flushes.
pub(crate) async fn send<W: AsyncWrite + Unpin>(out: &mut W, response: &Response) -> std::io::Result<()> {
    out.write_all(protocol::encode(response).as_bytes()).await?;
    out.flush().await
}

/// The final line of a request; a client that already left is not an error.
async fn reply<W: AsyncWrite + Unpin>(out: &mut W, response: Response) {
    let _ = send(out, &response).await;
}
