//! The real `zt-agent` running in the server namespace of a client/server pair, with its
//! own bpffs mount, scratch directory, policy file and flow log.

#![allow(dead_code)]

use std::{path::PathBuf, process::Command, time::Duration};

use zt_tests::{BpfFs, HostPinDir, NsProcess, Pair, Scratch, read_json_lines, topology, workspace_binary};

pub const READY: Duration = Duration::from_secs(20);
pub const SHORT: Duration = Duration::from_millis(1500);
pub const LONG: Duration = Duration::from_secs(5);

pub struct AgentNet {
    // Field order is drop order: the agent stops before its bpffs and network go.
    pub agent: Option<NsProcess>,
    pub net: Pair,
    pub scratch: Scratch,
    pub bpffs: BpfFs,
    /// When set, the agent pins under the host's /sys/fs/bpf instead of `bpffs`.
    pub host_pins: Option<HostPinDir>,
    pub policy: PathBuf,
}

/// The client is labelled `app=client`, the server host `app=server`.
pub fn endpoints(net: &Pair) -> String {
    format!(
        "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {{name: client}}\nspec:\n  addresses: [\"{}\", \"{}\"]\n  labels: {{app: client}}\n",
        net.client.v4, net.client.v6
    )
}

impl AgentNet {
    /// A pair topology and an agent on the server enforcing `policy` (YAML appended to the
    /// client Endpoint document) with the given extra arguments.
    pub fn start(policy: &str, extra: &[&str]) -> AgentNet {
        let mut me = AgentNet::prepare(policy);
        let agent = me.spawn(extra);
        me.agent = Some(agent);
        me.wait_ready();
        me
    }

    /// [`Self::start`] without the agent: the network, scratch directory and policy file,
    /// for tests that write more files (which name the addresses) before spawning it.
    pub fn prepare(policy: &str) -> AgentNet {
        let net = topology::pair().expect("pair topology");
        let scratch = Scratch::new("agent").expect("scratch dir");
        let bpffs = BpfFs::mount().expect("bpffs");
        let text = format!("{}---\n{policy}", endpoints(&net));
        let policy = scratch.write("policy.yaml", text).expect("write policy");
        AgentNet { agent: None, net, scratch, bpffs, host_pins: None, policy }
    }

    pub fn flow_log(&self) -> PathBuf {
        self.scratch.join("flows.log")
    }

    pub fn pin_dir(&self) -> PathBuf {
        match &self.host_pins {
            Some(dir) => dir.path().to_path_buf(),
            None => self.bpffs.path().join("zt"),
        }
    }

    /// [`Self::start`] with the pins under the host's /sys/fs/bpf, as an operator runs it:
    /// nothing is mounted for the agent.
    pub fn start_with_host_pins(policy: &str, extra: &[&str]) -> AgentNet {
        let mut me = AgentNet::prepare(policy);
        me.host_pins = Some(HostPinDir::new("pins"));
        let agent = me.spawn(extra);
        me.agent = Some(agent);
        me.wait_ready();
        me
    }

    /// Spawns `zt-agent run` on the server interface (not waiting for readiness).
    pub fn spawn(&self, extra: &[&str]) -> NsProcess {
        self.spawn_with(Some(&self.policy), extra)
    }

    /// [`Self::spawn`] with `--policy` only if `policy` is given (without it, the agent
    /// re-applies the last revision stored in its state directory).
    pub fn spawn_with(&self, policy: Option<&std::path::Path>, extra: &[&str]) -> NsProcess {
        let mut cmd = Command::new(workspace_binary("zt-agent").expect("zt-agent is built"));
        cmd.args(["run", "--iface", &self.net.server.iface, "--labels", "app=server"]);
        if let Some(policy) = policy {
            cmd.arg("--policy").arg(policy);
        }
        cmd.arg("--bpffs")
            .arg(self.pin_dir())
            .arg("--state-dir")
            .arg(self.scratch.join("state"))
            .arg("--flow-log")
            .arg(self.flow_log());
        // Every agent gets its own API socket, unless the test chooses one.
        if !extra.contains(&"--socket") {
            cmd.arg("--socket").arg(self.socket());
        }
        cmd.args(extra);
        NsProcess::spawn(&self.net.server.ns, &cmd, self.scratch.path()).expect("spawn zt-agent")
    }

    /// This agent's API socket.
    pub fn socket(&self) -> PathBuf {
        self.scratch.join("agent.sock")
    }

    /// Runs `ztctl --socket <this agent's socket> args...` (as root) and returns its output.
    pub fn ztctl(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(workspace_binary("ztctl").expect("ztctl is built"));
        cmd.arg("--socket").arg(self.socket()).args(args);
        zt_tests::command::run_command(&mut cmd, Duration::from_secs(60)).expect("ztctl runs")
    }

    pub fn agent(&mut self) -> &mut NsProcess {
        self.agent.as_mut().expect("agent running")
    }

    pub fn wait_ready(&mut self) -> String {
        self.agent().wait_for_stderr(|l| l.contains("zt-agent: ready"), READY).expect("agent becomes ready")
    }

    /// Kills the agent with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self) {
        self.agent().signal(libc::SIGKILL).expect("SIGKILL");
        self.agent().wait_exit(LONG).expect("killed agent exits");
    }

    /// Starts a new agent on the same network, bpffs and policy; returns its ready line.
    pub fn restart(&mut self, extra: &[&str]) -> String {
        let agent = self.spawn(extra);
        self.agent = Some(agent);
        self.wait_ready()
    }

    /// Names of the link pins under the bpffs directory, sorted.
    pub fn link_pins(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.pin_dir().join("links"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Rewrites the policy file (client Endpoint + `policy`) and reloads with SIGHUP;
    /// returns the agent's answer line.
    pub fn reload(&mut self, policy: &str) -> String {
        let text = format!("{}---\n{policy}", endpoints(&self.net));
        std::fs::write(&self.policy, text).expect("rewrite policy");
        let before = std::fs::read_to_string(self.agent().stderr_path()).unwrap_or_default().lines().count();
        self.agent().signal(libc::SIGHUP).expect("SIGHUP");
        let mut seen = 0;
        self.agent()
            .wait_for_stderr(
                |l| {
                    seen += 1;
                    seen > before
                        && (l.contains("reloaded") || l.contains("reload rejected") || l.contains("reload failed"))
                },
                LONG,
            )
            .expect("agent answers the reload")
    }

    /// Flow-log records matching `pred`, waiting up to `LONG` for at least one.
    pub fn flows_where(&self, pred: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + LONG;
        loop {
            let found: Vec<_> =
                read_json_lines(&self.flow_log()).unwrap_or_default().into_iter().filter(|r| pred(r)).collect();
            if !found.is_empty() || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A zt/v1 Policy selecting the server (`app: server`).
pub fn server_policy(name: &str, ingress: &str, egress: &str) -> String {
    let mut p =
        format!("apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: server}}\n");
    if !ingress.is_empty() {
        p.push_str("  ingress:\n");
        p.push_str(ingress);
    }
    if !egress.is_empty() {
        p.push_str("  egress:\n");
        p.push_str(egress);
    }
    p
}

/// `GET path` over HTTP/1.1 to `addr` from inside `ns` (the agent's metrics endpoint);
/// returns the status code, the response head and the body. The server closes the
/// connection after its response.
pub fn http_get(
    ns: &zt_tests::Netns,
    addr: std::net::SocketAddr,
    path: &str,
) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let response = ns.run_in(|| -> std::io::Result<Vec<u8>> {
        let mut stream = std::net::TcpStream::connect_timeout(&addr, LONG)?;
        stream.set_read_timeout(Some(LONG))?;
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(response)
    })?;
    let text = String::from_utf8(response).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other(format!("no end of head in {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, format!("{head}\r\n"), body.to_string()))
}

/// A command's stdout as text.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stderr as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `ztctl` succeeded (exit 0) and returns its stdout.
pub fn ok(out: std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(0), "ztctl failed:\nstdout: {}\nstderr: {}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// Asserts that `ztctl` failed as refused work does (exit 1) and returns its stderr.
pub fn refused(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(1), "ztctl should fail:\nstdout: {}\nstderr: {}", stdout(out), stderr(out));
    stderr(out)
}

/// Asserts success and parses stdout as one JSON document.
pub fn json(out: std::process::Output) -> serde_json::Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
