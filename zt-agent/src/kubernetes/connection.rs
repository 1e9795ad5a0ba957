//! How the agent reaches the API server: from a kubeconfig file (`--kubeconfig`: its
//! current context's cluster `server`, `certificate-authority(-data)` and user `token` /
//! `tokenFile`), or, without one, from inside a pod (the `KUBERNETES_SERVICE_HOST`/`PORT`
//! environment and the service account's token and CA under
//! `/var/run/secrets/kubernetes.io/serviceaccount`).
//!
//! `http://` servers are accepted (the tests' stub API server); a real cluster is `https://`
//! and its CA is required: there is no "skip verification".

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use base64::Engine;
use serde::Deserialize;
use tokio_rustls::rustls::{
    ClientConfig, RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, pem::PemObject},
};

use super::http::{Endpoint, Token};

/// Where a pod's service account credentials are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: T,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    user: Option<String>,
}

#[derive(Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<PathBuf>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
}

#[derive(Default, Deserialize)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<PathBuf>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    exec: Option<serde_norway::Value>,
}

/// The API server named by the kubeconfig file at `path`.
pub fn from_kubeconfig(path: &Path) -> anyhow::Result<Endpoint> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the kubeconfig {shown}: {e}; fix --kubeconfig"))?;
    let config: Kubeconfig = serde_norway::from_str(&text)
        .map_err(|e| anyhow::anyhow!("kubeconfig {shown} is not a valid kubeconfig: {e}"))?;
    let context_name = config
        .current_context
        .clone()
        .or_else(|| (config.contexts.len() == 1).then(|| config.contexts[0].name.clone()));
    let (cluster_name, user_name) = match context_name {
        Some(name) => {
            let context = config.contexts.iter().find(|c| c.name == name).ok_or_else(|| {
                anyhow::anyhow!(
                    "kubeconfig {shown}: current-context {name:?} is not among contexts; add it or fix current-context"
                )
            })?;
            (context.value.cluster.clone(), context.value.user.clone())
        }
        None if config.clusters.len() == 1 => (config.clusters[0].name.clone(), None),
        None => anyhow::bail!("kubeconfig {shown} has no current-context; set current-context to one of its contexts"),
    };
    let cluster = config.clusters.iter().find(|c| c.name == cluster_name).ok_or_else(|| {
        anyhow::anyhow!("kubeconfig {shown}: cluster {cluster_name:?} is not among clusters; add it or fix the context")
    })?;
    let user = match &user_name {
        Some(name) => {
            &config
                .users
                .iter()
                .find(|u| &u.name == name)
                .ok_or_else(|| {
                    anyhow::anyhow!("kubeconfig {shown}: user {name:?} is not among users; add it or fix the context")
                })?
                .value
        }
        None => &User::default(),
    };
    if user.client_certificate.is_some() || user.client_certificate_data.is_some() || user.exec.is_some() {
        anyhow::bail!(
            "kubeconfig {shown}: user {:?} authenticates with a client certificate or an exec plugin, which zt-agent does not support; give it a token or tokenFile (a service account's)",
            user_name.unwrap_or_default()
        );
    }
    let token = match (&user.token, &user.token_file) {
        (Some(t), _) => Some(Token::Given(t.clone())),
        (None, Some(f)) => Some(Token::File(f.clone())),
        (None, None) => None,
    };
    let ca = match (&cluster.value.certificate_authority_data, &cluster.value.certificate_authority) {
        (Some(data), _) => Some(base64::engine::general_purpose::STANDARD.decode(data.trim()).map_err(|e| {
            anyhow::anyhow!(
                "kubeconfig {shown}: cluster {cluster_name:?} certificate-authority-data is not base64 ({e})"
            )
        })?),
        (None, Some(file)) => Some(std::fs::read(file).map_err(|e| {
            anyhow::anyhow!("kubeconfig {shown}: cannot read certificate-authority {}: {e}", file.display())
        })?),
        (None, None) => None,
    };
    endpoint(&cluster.value.server, ca.as_deref(), token, &format!("kubeconfig {shown}, cluster {cluster_name:?}"))
}

/// The API server as a pod sees it, with its service account.
pub fn in_cluster() -> anyhow::Result<Endpoint> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
        anyhow::anyhow!(
            "--kubernetes without --kubeconfig needs to run in a pod (KUBERNETES_SERVICE_HOST is not set); pass --kubeconfig FILE"
        )
    })?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let dir = Path::new(SERVICE_ACCOUNT_DIR);
    let ca = std::fs::read(dir.join("ca.crt")).map_err(|e| {
        anyhow::anyhow!("cannot read the service account CA {}/ca.crt: {e}; mount the service account token (automountServiceAccountToken)", dir.display())
    })?;
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    endpoint(&format!("https://{host}:{port}"), Some(&ca), Some(Token::File(dir.join("token"))), "in-cluster config")
}

/// An endpoint for `server` (`http://host[:port]` or `https://host[:port]`).
fn endpoint(server: &str, ca: Option<&[u8]>, token: Option<Token>, what: &str) -> anyhow::Result<Endpoint> {
    let (tls, rest) = if let Some(rest) = server.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = server.strip_prefix("http://") {
        (false, rest)
    } else {
        anyhow::bail!("{what}: server {server:?} is no http:// or https:// URL; fix the server field");
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') {
        anyhow::bail!("{what}: server {server:?} has a path; zt-agent needs scheme://host[:port] only");
    }
    let (host, authority) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h.to_string(), hostport.to_string()),
        _ => (hostport.to_string(), format!("{hostport}:{}", if tls { 443 } else { 80 })),
    };
    let server_name = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let tls = if tls {
        let ca = ca.ok_or_else(|| {
            anyhow::anyhow!("{what}: server {server:?} is https but no certificate-authority is given; add certificate-authority or certificate-authority-data")
        })?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert =
                cert.map_err(|e| anyhow::anyhow!("{what}: the certificate authority is not valid PEM ({e:?})"))?;
            roots.add(cert).map_err(|e| anyhow::anyhow!("{what}: a CA certificate is not usable ({e})"))?;
        }
        if roots.is_empty() {
            anyhow::bail!("{what}: the certificate authority holds no PEM certificate");
        }
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Some(Arc::new(config))
    } else {
        None
    };
    Ok(Endpoint { authority, server_name, tls, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` as a kubeconfig file, then removes it.
    fn read(name: &str, text: &str) -> anyhow::Result<Endpoint> {
        let dir = std::env::temp_dir().join(format!("zt-kubeconfig-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(&path, text).unwrap();
        let result = from_kubeconfig(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    #[test]
    fn a_kubeconfig_gives_the_current_contexts_server_and_token() {
        let e = read(
            "ok",
            "apiVersion: v1\nkind: Config\ncurrent-context: b\ncontexts:\n- name: a\n  context: {cluster: one, user: u}\n- name: b\n  context: {cluster: two, user: u}\nclusters:\n- name: one\n  cluster: {server: 'http://127.0.0.1:1'}\n- name: two\n  cluster: {server: 'http://198.18.0.1:6443'}\nusers:\n- name: u\n  user: {token: abc}\n",
        )
        .unwrap();
        assert_eq!(e.authority, "198.18.0.1:6443");
        assert!(e.tls.is_none());
        assert!(matches!(e.token, Some(Token::Given(ref t)) if t == "abc"));
    }

    #[test]
    fn an_https_server_without_a_ca_is_refused_with_the_fix() {
        let e = read(
            "noca",
            "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'https://k.example:6443'}}]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no certificate-authority is given; add certificate-authority"), "{e}");
    }

    #[test]
    fn client_certificates_are_refused_naming_the_user() {
        let e = read(
            "cert",
            "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: admin}}]\nclusters: [{name: k, cluster: {server: 'http://127.0.0.1:8080'}}]\nusers: [{name: admin, user: {client-certificate: /x.pem}}]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("user \"admin\" authenticates with a client certificate"), "{e}");
    }
}
