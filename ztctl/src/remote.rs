//! `ztctl`'s remote options: `--server HOST:PORT` with `--ca`, `--cert`, `--key` (and
//! `--server-name`) reach an agent's remote listener over mutual TLS instead of the local
//! socket. Every command works the same either way; the agent decides by the client
//! certificate's role which ones it answers.

use std::{path::PathBuf, sync::Arc};

use rustls::pki_types::ServerName;

use super::CliError;
use zt_api::{
    client::{RemoteTarget, Target},
    tls::{self, Pem},
};

#[derive(clap::Args, Debug, Default)]
pub struct RemoteArgs {
    /// A remote agent's listener (its [remote] listen), instead of the local socket.
    #[arg(long, global = true, value_name = "HOST:PORT", requires = "ca")]
    pub server: Option<String>,
    /// PEM bundle of the CA that signed the agent's certificate (with --server).
    #[arg(long, global = true, value_name = "PATH", requires = "server")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate; the agent gives it a role by its name (with --server).
    #[arg(long, global = true, value_name = "PATH", requires_all = ["server", "key"])]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, global = true, value_name = "PATH", requires = "cert")]
    pub key: Option<PathBuf>,
    /// The name the agent's certificate must carry [default: the host part of --server].
    #[arg(long, global = true, value_name = "NAME", requires = "server")]
    pub server_name: Option<String>,
}

impl RemoteArgs {
    /// The remote agent, if `--server` was given.
    pub fn target(&self) -> Result<Option<Target>, CliError> {
        let Some(server) = &self.server else {
            return Ok(None);
        };
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => host_of(server)
                .ok_or_else(|| {
                    CliError::Usage(format!("--server {server:?} is not HOST:PORT; give the agent's address and port"))
                })?
                .to_string(),
        };
        let server_name = ServerName::try_from(name.clone()).map_err(|_| {
            CliError::Usage(format!("{name:?} is not a DNS name or IP address; pass --server-name NAME"))
        })?;
        let ca = self.ca.as_deref().expect("clap requires --ca with --server");
        let pem = |what, fix| Pem { what, fix };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((
                (cert.as_path(), pem("client certificate", "check the --cert path")),
                (key.as_path(), pem("client key", "check the --key path")),
            )),
            _ => None,
        };
        let config = tls::client_config((ca, pem("CA bundle", "check the --ca path")), identity)
            .map_err(|e| CliError::failed(e.to_string()))?;
        Ok(Some(Target::Remote(RemoteTarget { server: server.clone(), server_name, config: Arc::new(config) })))
    }
}

/// `host` of `host:port`, `[v6]:port` or `v6` + `:port`.
fn host_of(server: &str) -> Option<&str> {
    let (host, port) = server.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_defaults_to_the_host_part() {
        assert_eq!(host_of("198.18.0.2:9465"), Some("198.18.0.2"));
        assert_eq!(host_of("agent.example:9465"), Some("agent.example"));
        assert_eq!(host_of("[fd00::2]:9465"), Some("fd00::2"));
        assert_eq!(host_of("agent.example"), None);
        assert_eq!(host_of(":9465"), None);
        assert_eq!(host_of("a:port"), None);
    }
}
