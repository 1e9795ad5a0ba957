//! The real `zt-agent` running in the server namespace of a client/server pair, with its
//! own bpffs mount, scratch directory, policy file and flow log.

#![allow(dead_code)]

use std::{path::PathBuf, process::Command, time::Duration};

use zt_tests::{BpfFs, NsProcess, Pair, Scratch, read_json_lines, topology, workspace_binary};

pub const READY: Duration = Duration::from_secs(20);
pub const SHORT: Duration = Duration::from_millis(1500);
pub const LONG: Duration = Duration::from_secs(5);

pub struct AgentNet {
    // Field order is drop order: the agent stops before its bpffs and network go.
    pub agent: Option<NsProcess>,
    pub net: Pair,
    pub scratch: Scratch,
    pub bpffs: BpfFs,
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
        let net = topology::pair().expect("pair topology");
        let scratch = Scratch::new("agent").expect("scratch dir");
        let bpffs = BpfFs::mount().expect("bpffs");
        let text = format!("{}---\n{policy}", endpoints(&net));
        let policy = scratch.write("policy.yaml", text).expect("write policy");
        let mut me = AgentNet { agent: None, net, scratch, bpffs, policy };
        let agent = me.spawn(extra);
        me.agent = Some(agent);
        me.wait_ready();
        me
    }

    pub fn flow_log(&self) -> PathBuf {
        self.scratch.join("flows.log")
    }

    pub fn pin_dir(&self) -> PathBuf {
        self.bpffs.path().join("zt")
    }

    /// Spawns `zt-agent run` on the server interface (not waiting for readiness).
    pub fn spawn(&self, extra: &[&str]) -> NsProcess {
        let mut cmd = Command::new(workspace_binary("zt-agent").expect("zt-agent is built"));
        cmd.args(["run", "--iface", &self.net.server.iface, "--labels", "app=server"])
            .arg("--policy")
            .arg(&self.policy)
            .arg("--bpffs")
            .arg(self.pin_dir())
            .arg("--state-dir")
            .arg(self.scratch.join("state"))
            .arg("--flow-log")
            .arg(self.flow_log())
            .args(extra);
        NsProcess::spawn(&self.net.server.ns, &cmd, self.scratch.path()).expect("spawn zt-agent")
    }

    pub fn agent(&mut self) -> &mut NsProcess {
        self.agent.as_mut().expect("agent running")
    }

    pub fn wait_ready(&mut self) -> String {
        self.agent().wait_for_stderr(|l| l.contains("zt-agent: ready"), READY).expect("agent becomes ready")
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
                    seen > before && (l.contains("reloaded") || l.contains("reload rejected") || l.contains("reload failed"))
                },
                LONG,
            )
            .expect("agent answers the reload")
    }

    /// Flow-log records matching `pred`, waiting up to `LONG` for at least one.
    pub fn flows_where(&self, pred: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + LONG;
        loop {
            let found: Vec<_> = read_json_lines(&self.flow_log()).unwrap_or_default().into_iter().filter(|r| pred(r)).collect();
            if !found.is_empty() || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A zt/v1 Policy selecting the server (`app: server`).
pub fn server_policy(name: &str, ingress: &str, egress: &str) -> String {
    let mut p = format!("apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: server}}\n");
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
