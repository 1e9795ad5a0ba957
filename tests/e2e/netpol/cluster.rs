//! The conformance cluster: namespaces x, y and z with pods a, b and c each, every pod a
//! network namespace behind a routing `node` namespace, plus an `outside` host that is no
//! pod. The real `zt-agent` runs in the node, attached to every node-side link, and gets
//! the cluster as `kubectl get pods,namespaces -A -o yaml` prints it, through `ztctl`.
//!
//! Every pod is dual-stack and serves TCP and UDP on ports 80 and 81 on both of its
//! addresses (echo servers), named like upstream's conformance pods: `serve-80-tcp`,
//! `serve-81-tcp`, `serve-80-udp`, `serve-81-udp`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use zt_tests::{BpfFs, Family, NsProcess, Scratch, Star, TcpEchoServer, UdpEchoServer, topology, workspace_binary};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
/// The source that is no pod: its address belongs to the world.
pub const OUTSIDE: &str = "outside";
pub const SERVED_PORTS: [u16; 2] = [80, 81];

const READY: Duration = Duration::from_secs(20);

/// One pod's servers, kept for the life of the cluster.
struct Servers {
    _tcp: Vec<TcpEchoServer>,
    _udp: Vec<UdpEchoServer>,
}

pub struct Cluster {
    // Field order is drop order: the agent stops before the servers, links and bpffs go.
    agent: NsProcess,
    _servers: Vec<Servers>,
    pub star: Star,
    pub scratch: Scratch,
    _bpffs: BpfFs,
}

impl Cluster {
    /// Builds the network, starts the servers and the agent (with the namespaces as its
    /// `--policy`), then applies the pods and namespaces as one kubectl `List`.
    pub fn start() -> Cluster {
        let mut labels: Vec<String> = all_pods().iter().map(|p| p.replace('/', "")).collect();
        labels.push(OUTSIDE.to_string());
        let star = topology::star_with_labels(&labels).expect("star topology");
        let servers = star.workloads[..9]
            .iter()
            .map(|w| {
                let addrs: Vec<SocketAddr> =
                    Family::ALL.iter().flat_map(|&f| SERVED_PORTS.map(|p| w.host.socket(f, p))).collect();
                Servers {
                    _tcp: addrs.iter().map(|&a| TcpEchoServer::start(&w.host.ns, a).unwrap()).collect(),
                    _udp: addrs.iter().map(|&a| UdpEchoServer::start(&w.host.ns, a).unwrap()).collect(),
                }
            })
            .collect();
        let scratch = Scratch::new("netpol").expect("scratch dir");
        let bpffs = BpfFs::mount().expect("bpffs");
        let namespaces = scratch.write("namespaces.yaml", namespaces_yaml()).expect("write namespaces");

        let mut cmd = Command::new(workspace_binary("zt-agent").expect("zt-agent is built"));
        cmd.args(["run", "--labels", "role=node"]);
        for iface in star.node_ifaces() {
            cmd.args(["--iface", iface]);
        }
        cmd.arg("--policy").arg(&namespaces);
        cmd.arg("--bpffs").arg(bpffs.path().join("zt"));
        cmd.arg("--state-dir").arg(scratch.join("state"));
        cmd.arg("--flow-log").arg(scratch.join("flows.log"));
        cmd.arg("--socket").arg(scratch.join("agent.sock"));
        let mut agent = NsProcess::spawn(&star.node, &cmd, scratch.path()).expect("spawn zt-agent");
        agent.wait_for_stderr(|l| l.contains("zt-agent: ready"), READY).expect("agent becomes ready");

        let cluster = Cluster { agent, _servers: servers, star, scratch, _bpffs: bpffs };
        let list = cluster.scratch.write("cluster.yaml", cluster.kubectl_list()).expect("write cluster");
        let out = cluster.ztctl(&["policy", "apply", list.to_str().unwrap()]);
        assert_ok(&out);
        cluster
    }

    /// The IPv4 address of `ns/pod` or of the outside host.
    pub fn ip(&self, who: &str) -> Ipv4Addr {
        self.workload(who).host.v4
    }

    /// The address of `family` of `ns/pod` or of the outside host.
    pub fn ip_of(&self, who: &str, family: Family) -> IpAddr {
        self.workload(who).host.ip(family)
    }

    pub fn workload(&self, who: &str) -> &zt_tests::Workload {
        self.star.workload(&who.replace('/', ""))
    }

    /// Runs `ztctl --socket <the agent's> args...`.
    pub fn ztctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(workspace_binary("ztctl").expect("ztctl is built"));
        cmd.arg("--socket").arg(self.scratch.join("agent.sock")).args(args);
        zt_tests::command::run_command(&mut cmd, Duration::from_secs(60)).expect("ztctl runs")
    }

    /// Writes `yaml` to `name` in the scratch directory and returns the path.
    pub fn file(&self, name: &str, yaml: &str) -> PathBuf {
        self.scratch.write(name, yaml).expect("write policy file")
    }

    /// The agent is still running (a failed case must not hide a crash).
    pub fn assert_agent_alive(&mut self) {
        let status = self.agent.try_status().expect("agent status");
        assert!(status.is_none(), "zt-agent exited: {status:?}");
    }

    /// What `kubectl get pods,namespaces -A -o yaml` prints for this cluster, with the
    /// fields that say nothing about traffic (uid, managedFields, conditions, ...).
    fn kubectl_list(&self) -> String {
        let mut items = String::new();
        for (i, namespace) in NAMESPACES.iter().enumerate() {
            items += &format!(
                r#"- apiVersion: v1
  kind: Namespace
  metadata:
    creationTimestamp: "2026-11-26T08:00:0{i}Z"
    labels:
      kubernetes.io/metadata.name: {namespace}
      ns: {namespace}
    name: {namespace}
    resourceVersion: "10{i}"
    uid: 6c1e0b1a-0000-4000-8000-00000000000{i}
  spec:
    finalizers:
    - kubernetes
  status:
    phase: Active
"#
            );
        }
        for (i, pod) in all_pods().iter().enumerate() {
            let (namespace, name) = pod.split_once('/').unwrap();
            let (ip, ip6) = (self.ip(pod), self.ip_of(pod, Family::V6));
            let ports: String = SERVED_PORTS
                .iter()
                .flat_map(|port| {
                    ["TCP", "UDP"].map(|protocol| {
                        format!(
                            "      - containerPort: {port}\n        name: serve-{port}-{}\n        protocol: {protocol}\n",
                            protocol.to_lowercase()
                        )
                    })
                })
                .collect();
            items += &format!(
                r#"- apiVersion: v1
  kind: Pod
  metadata:
    creationTimestamp: "2026-11-26T08:01:0{i}Z"
    labels:
      pod: {name}
    managedFields:
    - apiVersion: v1
      fieldsType: FieldsV1
      fieldsV1:
        f:metadata:
          f:labels:
            .: {{}}
            f:pod: {{}}
      manager: e2e.test
      operation: Update
      time: "2026-11-26T08:01:0{i}Z"
    name: {name}
    namespace: {namespace}
    resourceVersion: "20{i}"
    uid: 7d2f1c2b-0000-4000-8000-00000000000{i}
  spec:
    containers:
    - command: ["/agnhost", "serve-hostname", "--tcp", "--http=false", "--port", "80"]
      image: registry.k8s.io/e2e-test-images/agnhost:2.53
      imagePullPolicy: IfNotPresent
      name: cont-80
      ports:
{ports}      resources: {{}}
      terminationMessagePath: /dev/termination-log
    dnsPolicy: ClusterFirst
    nodeName: node-1
    restartPolicy: Always
    schedulerName: default-scheduler
  status:
    conditions:
    - lastProbeTime: null
      lastTransitionTime: "2026-11-26T08:01:1{i}Z"
      status: "True"
      type: Ready
    hostIP: 198.19.255.1
    phase: Running
    podIP: {ip}
    podIPs:
    - ip: {ip}
    - ip: {ip6}
    qosClass: BestEffort
    startTime: "2026-11-26T08:01:0{i}Z"
"#
            );
        }
        format!("apiVersion: v1\nitems:\n{items}kind: List\nmetadata:\n  resourceVersion: \"\"\n")
    }
}

/// The namespaces alone, as separate documents: what the agent starts with.
fn namespaces_yaml() -> String {
    NAMESPACES
        .iter()
        .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n  labels: {{ns: {n}}}\n"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Every pod as `ns/name`, in matrix order.
pub fn all_pods() -> Vec<String> {
    NAMESPACES.iter().flat_map(|n| PODS.iter().map(move |p| format!("{n}/{p}"))).collect()
}

/// Panics with the command's output unless it exited 0.
pub fn assert_ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "ztctl failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
