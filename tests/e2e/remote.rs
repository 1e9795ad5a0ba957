//! End-to-end tests of the remote API: the real `zt-agent` with a `[remote]` listener on the
//! server's address, and the real `ztctl --server` in the client namespace, authenticated
//! by certificates made here (`rcgen`): the admin's push takes effect on real traffic, the
//! reader may look but not change, and certificates from another CA, without a role, or
//! none at all are refused with a sentence that says why.

mod common;

use std::{path::PathBuf, process::Output, time::Duration};

use common::*;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use zt_tests::{ConnError, TcpEchoServer, skip_unless_privileged, tcp_connect, workspace_binary};

const PORT: u16 = 9465;

/// A certificate authority that signs the agent's and the clients' certificates.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// Writes `<file>.pem` and `<file>.key` for a certificate named `cn` (and `sans`).
    fn issue(&self, a: &AgentNet, file: &str, cn: &str, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        a.scratch.write(format!("{file}.pem"), cert.pem()).unwrap();
        a.scratch.write(format!("{file}.key"), key.serialize_pem()).unwrap();
    }
}

/// The client may reach the agent's remote listener; nothing else yet.
fn remote_api_policy() -> String {
    server_policy(
        "remote-api",
        &format!("    - from: [{{selector: {{app: client}}}}]\n      ports: [{{protocol: TCP, port: {PORT}}}]\n"),
        "",
    )
}

/// An agent whose `[remote]` listener has `ops` as admin and `audit` as reader, with the
/// certificates of: the agent, ops, audit, `nobody` (no role) and `ops` from another CA.
fn remote_agent() -> AgentNet {
    let mut a = AgentNet::prepare(&remote_api_policy());
    let ca = Ca::new("zt test CA");
    a.scratch.write("ca.pem", ca.cert.pem()).unwrap();
    let server_ip = std::net::IpAddr::V4(a.net.server.v4);
    ca.issue(&a, "agent", "zt-agent", vec![SanType::IpAddress(server_ip)], ExtendedKeyUsagePurpose::ServerAuth);
    ca.issue(&a, "ops", "ops", vec![], ExtendedKeyUsagePurpose::ClientAuth);
    ca.issue(&a, "audit", "audit", vec![], ExtendedKeyUsagePurpose::ClientAuth);
    ca.issue(&a, "nobody", "nobody", vec![], ExtendedKeyUsagePurpose::ClientAuth);
    Ca::new("another CA").issue(&a, "forged", "ops", vec![], ExtendedKeyUsagePurpose::ClientAuth);
    let dir = a.scratch.path().display().to_string();
    let config = format!(
        "[remote]\nlisten = \"{}:{PORT}\"\nca = \"{dir}/ca.pem\"\ncert = \"{dir}/agent.pem\"\nkey = \"{dir}/agent.key\"\nadmins = [\"ops\"]\nreaders = [\"audit\"]\n",
        a.net.server.v4
    );
    let config = a.scratch.write("zt-agent.toml", config).unwrap();
    let agent = a.spawn(&["--config", &config.display().to_string()]);
    a.agent = Some(agent);
    a.wait_ready();
    a
}

/// `ztctl --server <agent>:PORT --ca ca.pem [--cert <who>.pem --key <who>.key] args...`,
/// run in the client namespace.
fn remote_ztctl(a: &AgentNet, who: Option<&str>, args: &[&str]) -> Output {
    let file = |name: String| a.scratch.join(name).display().to_string();
    let mut all =
        vec!["--server".to_string(), format!("{}:{PORT}", a.net.server.v4), "--ca".into(), file("ca.pem".into())];
    if let Some(who) = who {
        all.extend(["--cert".into(), file(format!("{who}.pem")), "--key".into(), file(format!("{who}.key"))]);
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let ztctl = workspace_binary("ztctl").expect("ztctl is built");
    a.net.client.ns.exec_timeout(ztctl, all, Duration::from_secs(30)).expect("ztctl runs in the client namespace")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn an_admin_certificate_pushes_policy_that_takes_effect_and_a_reader_may_only_look() {
    skip_unless_privileged!();
    let a = remote_agent();
    let echo = TcpEchoServer::start(&a.net.server.ns, std::net::SocketAddr::new(a.net.server.v4.into(), 8080)).unwrap();
    assert!(
        matches!(tcp_connect(&a.net.client.ns, echo.local_addr(), SHORT), Err(ConnError::TimedOut)),
        "8080 starts denied"
    );

    // The reader sees the running set and the status, and may dry-run, but not push.
    let status = ok(remote_ztctl(&a, Some("audit"), &["status", "-o", "json"]));
    assert!(status.contains("\"generation\""), "{status}");
    assert!(ok(remote_ztctl(&a, Some("audit"), &["policy", "get"])).contains("remote-api"));
    let web = server_policy(
        "web",
        "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8080}]\n",
        "",
    );
    let web = a.scratch.write("web.yaml", web).unwrap().display().to_string();
    ok(remote_ztctl(&a, Some("audit"), &["policy", "apply", "--dry-run", &web]));
    let e = refused(&remote_ztctl(&a, Some("audit"), &["policy", "apply", &web]));
    assert!(
        e.contains("ztctl: permission denied: policy-apply changes the agent and this client certificate has the read-only role; use an admin certificate"),
        "{e}"
    );
    assert!(refused(&remote_ztctl(&a, Some("audit"), &["quarantine", "add", "198.18.0.1"])).contains("read-only role"));
    assert!(tcp_connect(&a.net.client.ns, echo.local_addr(), SHORT).is_err(), "the reader changed nothing");

    // The admin's push is enforced on real traffic, and the local socket sees it too.
    ok(remote_ztctl(&a, Some("ops"), &["policy", "apply", &web]));
    tcp_connect(&a.net.client.ns, echo.local_addr(), LONG).expect("8080 is allowed after the admin's push");
    let local = a.ztctl(&["policy", "get"]);
    let listed = text(&local.stdout);
    assert!(listed.lines().any(|l| l.starts_with("Policy") && l.contains(" web ")), "{listed}");
    assert!(ok(remote_ztctl(&a, Some("audit"), &["policy", "history"])).contains('2'), "a reader sees the history");
}

#[test]
fn certificates_from_another_ca_without_a_role_or_missing_are_refused() {
    skip_unless_privileged!();
    let a = remote_agent();
    let server = format!("{}:{PORT}", a.net.server.v4);
    let e = refused(&remote_ztctl(&a, Some("forged"), &["status"]));
    assert!(
        e.contains(&format!(
            "ztctl: the TLS handshake with the zt agent at {server} failed: the agent refused this client certificate"
        )),
        "{e}"
    );
    let e = refused(&remote_ztctl(&a, None, &["status"]));
    assert!(
        e.contains(&format!(
            "ztctl: the TLS handshake with the zt agent at {server} failed: the agent requires a client certificate; pass --cert and --key"
        )),
        "{e}"
    );
    let e = refused(&remote_ztctl(&a, Some("nobody"), &["policy", "get"]));
    assert!(e.contains("ztctl: permission denied: the client certificate (nobody) has no role on this agent"), "{e}");
    // The agent kept serving through the refusals.
    ok(remote_ztctl(&a, Some("ops"), &["status"]));
}

#[test]
fn an_address_the_listener_cannot_bind_stops_the_agent_with_exit_1() {
    skip_unless_privileged!();
    let a = AgentNet::prepare(&remote_api_policy());
    let ca = Ca::new("zt test CA");
    a.scratch.write("ca.pem", ca.cert.pem()).unwrap();
    ca.issue(&a, "agent", "zt-agent", vec![], ExtendedKeyUsagePurpose::ServerAuth);
    let dir = a.scratch.path().display().to_string();
    // Not an address of the server namespace.
    let config = format!(
        "[remote]\nlisten = \"198.19.255.254:{PORT}\"\nca = \"{dir}/ca.pem\"\ncert = \"{dir}/agent.pem\"\nkey = \"{dir}/agent.key\"\nadmins = [\"ops\"]\n"
    );
    let config: PathBuf = a.scratch.write("zt-agent.toml", config).unwrap();
    let mut agent = a.spawn(&["--config", &config.display().to_string()]);
    let status = agent.wait_exit(READY).unwrap();
    let stderr = std::fs::read_to_string(agent.stderr_path()).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen for remote API clients on 198.19.255.254:{PORT}")), "{stderr}");
    assert!(!stderr.contains("ready"), "{stderr}");

    // A key file that is not PEM is named with the key to fix.
    std::fs::write(a.scratch.join("agent.key"), "not a key\n").unwrap();
    let config = std::fs::read_to_string(&config).unwrap().replace("198.19.255.254", &a.net.server.v4.to_string());
    let config = a.scratch.write("zt-agent.toml", config).unwrap();
    let mut agent = a.spawn(&["--config", &config.display().to_string()]);
    let status = agent.wait_exit(READY).unwrap();
    let stderr = std::fs::read_to_string(agent.stderr_path()).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read the remote server key {dir}/agent.key: it holds no PEM private key; fix key in the config file's [remote] table")),
        "{stderr}"
    );
}
