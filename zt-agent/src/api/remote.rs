//! The optional remote API: a TCP listener speaking the same protocol as the Unix socket,
//! inside mutual TLS. The agent presents its certificate; a client must present one signed
//! by the configured CA, and the certificate's names give its role (`role`). Connections
//! are served by the same per-connection handler as the socket (`server::connection`).
//!
//! ```text
//! ztctl --server host:port --ca --cert --key --TLS--> listener -> handshake (client cert
//!   verified against `ca`) -> names -> role (admins / readers) -> server::connection
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::{
    protocol::ApiError,
    role::{self, Grant, RoleMap},
    server,
    tls::{self, Files, Pem, TlsError},
};
use crate::agent::{SharedState, revisions::own_uid};

/// A client has this long to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::agent::RemoteOptions;

/// Why the remote listener could not start; the agent exits with this sentence.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error(
        "cannot listen for remote API clients on {addr}: {source}; free the address or change listen in the config file's [remote] table"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// The bound listener and its TLS configuration, ready to serve.
pub struct RemoteListener {
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    roles: Arc<RoleMap>,
}

impl RemoteListener {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Reads the TLS files and binds the address (before the agent reports ready).
pub fn bind(opts: &RemoteOptions) -> Result<RemoteListener, RemoteError> {
    let pem = |what, fix| Pem { what, fix };
    let config = tls::server_config(Files {
        ca: (&opts.ca, pem("remote client CA bundle", "fix ca in the config file's [remote] table")),
        cert: (&opts.cert, pem("remote server certificate", "fix cert in the config file's [remote] table")),
        key: (&opts.key, pem("remote server key", "fix key in the config file's [remote] table")),
    })?;
    let bind_error = |source| RemoteError::Bind { addr: opts.listen, source };
    let listener = std::net::TcpListener::bind(opts.listen).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(RemoteListener { listener, acceptor: TlsAcceptor::from(Arc::new(config)), roles: Arc::new(opts.roles.clone()) })
}

/// Starts accepting remote clients on the current tokio runtime.
pub fn serve(remote: RemoteListener, shared: SharedState) -> std::io::Result<()> {
    let listener = TcpListener::from_std(remote.listener)?;
    tokio::spawn(accept_loop(listener, remote.acceptor, remote.roles, shared));
    Ok(())
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, roles: Arc<RoleMap>, shared: SharedState) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(connection(stream, peer, acceptor.clone(), roles.clone(), shared.clone()));
            }
            Err(e) => {
                log::warn!("the remote API listener cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    roles: Arc<RoleMap>,
    shared: SharedState,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        // rustls has already sent the client an alert saying why (unknown CA, no certificate).
        Ok(Err(e)) => {
            return log::warn!("refused a remote API client at {peer}: the TLS handshake failed: {e}");
        }
        Err(_) => {
            return log::warn!("refused a remote API client at {peer}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
        }
    };
    let names = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(tls::peer_names).unwrap_or_default();
    let grant = grant(&roles, &names);
    match &grant {
        Ok(g) => log::info!("remote API client at {peer} ({}) has the {:?} role", names.join(", "), g.role),
        Err(_) => {
            log::warn!("refused a remote API client at {peer}: its certificate ({}) has no role", names.join(", "))
        }
    }
    server::connection(tls, shared, grant).await;
}

/// A verified certificate's rights; its revisions are recorded as the agent's own.
fn grant(roles: &RoleMap, names: &[String]) -> Result<Grant, ApiError> {
    match roles.role_of(names) {
        Some(role) => Ok(Grant { author_uid: own_uid(), role }),
        None => Err(role::unmapped(names)),
    }
}
