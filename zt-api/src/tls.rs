//! TLS material for the remote API: PEM files read into rustls configurations (the agent's
//! server side, which requires and verifies a client certificate, and `ztctl`'s client
//! side), and the names in a peer certificate that map it to a role.
//!
//! Only the `ring` crypto provider is used, explicitly, so no process-wide default provider
//! has to be installed. TLS 1.3 and 1.2 are offered (rustls' safe defaults).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::{CryptoProvider, ring},
    server::WebPkiClientVerifier,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// Why TLS material could not be used; one sentence naming the file (or setting) and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {path}: {reason}; {fix}")]
    File { what: &'static str, path: PathBuf, reason: String, fix: &'static str },
    #[error("cannot use the TLS material ({0}); check that the certificate and key belong together")]
    Config(String),
}

/// Which role a file plays, for error messages and their fixes.
#[derive(Clone, Copy, Debug)]
pub struct Pem {
    pub what: &'static str,
    pub fix: &'static str,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Every certificate in a PEM file (at least one).
pub fn certificates(path: &Path, pem: Pem) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::File { what: pem.what, path: path.to_path_buf(), reason, fix: pem.fix };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_reason(e)))?;
    if certs.is_empty() {
        return Err(fail("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn private_key(path: &Path, pem: Pem) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what: pem.what,
        path: path.to_path_buf(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => "it holds no PEM private key".into(),
            e => pem_reason(e),
        },
        fix: pem.fix,
    })
}

fn pem_reason(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("it is not valid PEM ({other:?})"),
    }
}

fn roots(certs: Vec<CertificateDer<'static>>, path: &Path, pem: Pem) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert).map_err(|e| TlsError::File {
            what: pem.what,
            path: path.to_path_buf(),
            reason: format!("a certificate in it is not a usable CA certificate ({e})"),
            fix: pem.fix,
        })?;
    }
    Ok(store)
}

/// A PEM file and what it is (for its error messages).
pub type PemFile<'a> = (&'a Path, Pem);

/// The files of one TLS end: the CA that signs the other end, and this end's certificate
/// chain and key.
#[derive(Clone, Copy, Debug)]
pub struct Files<'a> {
    pub ca: PemFile<'a>,
    pub cert: PemFile<'a>,
    pub key: PemFile<'a>,
}

/// The agent's side: its certificate, and a client certificate signed by the CA required.
pub fn server_config(files: Files<'_>) -> Result<ServerConfig, TlsError> {
    let ca = roots(certificates(files.ca.0, files.ca.1)?, files.ca.0, files.ca.1)?;
    let chain = certificates(files.cert.0, files.cert.1)?;
    let key = private_key(files.key.0, files.key.1)?;
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(ca), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// `ztctl`'s side: the agent's certificate must be signed by `ca`; `identity` is the client
/// certificate and key (without one the agent refuses the handshake).
pub fn client_config(ca: PemFile<'_>, identity: Option<(PemFile<'_>, PemFile<'_>)>) -> Result<ClientConfig, TlsError> {
    let roots = roots(certificates(ca.0, ca.1)?, ca.0, ca.1)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert.0, cert.1)?, private_key(key.0, key.1)?)
            .map_err(|e| TlsError::Config(e.to_string())),
    }
}

/// The names a certificate goes by: its subject Common Name(s), then its SAN DNS names.
pub fn peer_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        // The verifier already parsed it; this cannot fail for a verified peer.
        return Vec::new();
    };
    let mut names: Vec<String> =
        cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_string).collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: Pem = Pem { what: "CA bundle", fix: "fix the path" };

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zt-tls-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_common_name_and_san_dns_names_are_the_peer_names() {
        let mut params = rcgen::CertificateParams::new(vec!["ops.example".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "ops");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(peer_names(cert.der()), ["ops", "ops.example"]);
    }

    #[test]
    fn missing_and_invalid_pem_files_are_named_with_the_fix() {
        let dir = scratch("pem");
        let e = certificates(&dir.join("absent.pem"), CA).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read the CA bundle ") && e.contains("absent.pem") && e.ends_with("fix the path"),
            "{e}"
        );
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").unwrap();
        let e = certificates(&junk, CA).unwrap_err().to_string();
        assert!(e.contains("junk.pem: it holds no PEM certificate"), "{e}");
        let e = private_key(&junk, CA).unwrap_err().to_string();
        assert!(e.contains("junk.pem: it holds no PEM private key"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_server_config_needs_a_matching_certificate_and_key() {
        let dir = scratch("server");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["agent".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("other.pem"), rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let files = |key: &'static str| (dir.join("ca.pem"), dir.join("cert.pem"), dir.join(key));
        let (ca, cert, good) = files("key.pem");
        let ok = Files { ca: (&ca, CA), cert: (&cert, CA), key: (&good, CA) };
        assert!(server_config(ok).is_ok());
        let (_, _, other) = files("other.pem");
        let e = server_config(Files { key: (&other, CA), ..ok }).unwrap_err().to_string();
        assert!(e.contains("belong together"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
