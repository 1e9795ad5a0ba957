//! `zt-agent run --kubernetes` end to end: the real agent in a routing node namespace,
//! pods as network namespaces behind it, and the cluster served by the stub API server
//! (`zt_tests::kube_api`, the list/watch protocol over HTTP inside the node namespace).
//! Every change — pod, namespace, NetworkPolicy and zt Policy (the CRD), each added,
//! updated and deleted on the API server — must change what real TCP connections do.

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use zt_tests::{
    BpfFs, Family, NsProcess, Scratch, Star, StubApiServer, TcpEchoServer, kube_api, skip_unless_privileged,
    tcp_connect, topology, workspace_binary,
};

/// The pods: `x/a` serves, `x/b` and `y/c` are its clients.
const PODS: [(&str, &str); 3] = [("x", "a"), ("x", "b"), ("y", "c")];
const PORT: u16 = 80;
/// How long a change may take to reach the kernel in this test (the goal is 100 ms).
const CONVERGE: Duration = Duration::from_secs(5);

struct Cluster {
    agent: NsProcess,
    _server: TcpEchoServer,
    stub: StubApiServer,
    star: Star,
    _scratch: Scratch,
    _bpffs: BpfFs,
}

fn label(ns: &str, pod: &str) -> String {
    format!("{ns}{pod}")
}

fn pod_object(star: &Star, ns: &str, name: &str, labels: Value) -> Value {
    let w = star.workload(&label(ns, name));
    json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels, "uid": format!("uid-{ns}-{name}"),
                     "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
        "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "registry.invalid/app:1",
                 "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": w.host.v4.to_string(),
                   "podIPs": [{"ip": w.host.v4.to_string()}, {"ip": w.host.v6.to_string()}]},
    })
}

fn namespace_object(name: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["kubernetes.io/metadata.name"] = json!(name);
    json!({"metadata": {"name": name, "labels": labels}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

fn network_policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": ns, "generation": 1}, "spec": spec})
}

impl Cluster {
    fn start() -> Cluster {
        let labels: Vec<String> = PODS.iter().map(|(n, p)| label(n, p)).collect();
        let star = topology::star_with_labels(&labels).expect("star topology");
        let a = star.workload("xa");
        let server = TcpEchoServer::start(&a.host.ns, a.host.socket(Family::V4, PORT)).expect("server");
        // The API server listens on the node, where the agent runs.
        let listen = SocketAddr::new(star.workloads[0].gateway_v4.into(), 0);
        let stub = star.node.run_in(|| StubApiServer::start(std::net::TcpListener::bind(listen).unwrap())).unwrap();
        for ns in ["x", "y"] {
            stub.apply(kube_api::NAMESPACES, namespace_object(ns, json!({})));
        }
        for (ns, pod) in PODS {
            stub.apply(kube_api::PODS, pod_object(&star, ns, pod, json!({"app": pod})));
        }
        let scratch = Scratch::new("kubernetes").expect("scratch");
        let bpffs = BpfFs::mount().expect("bpffs");
        let kubeconfig = scratch.write("kubeconfig", stub.kubeconfig()).expect("kubeconfig");
        let mut cmd = Command::new(workspace_binary("zt-agent").expect("zt-agent is built"));
        cmd.args(["run", "--kubernetes", "--node", "node-1", "--labels", "role=node"]);
        cmd.arg("--kubeconfig").arg(&kubeconfig);
        for iface in star.node_ifaces() {
            cmd.args(["--iface", iface]);
        }
        cmd.arg("--bpffs").arg(bpffs.path().join("zt"));
        cmd.arg("--state-dir").arg(scratch.join("state"));
        cmd.arg("--socket").arg(scratch.join("agent.sock"));
        cmd.args(["--metrics", "none"]);
        let mut agent = NsProcess::spawn(&star.node, &cmd, scratch.path()).expect("spawn zt-agent");
        agent.wait_for_stderr(|l| l.contains("zt-agent: ready"), Duration::from_secs(30)).expect("agent ready");
        Cluster { agent, _server: server, stub, star, _scratch: scratch, _bpffs: bpffs }
    }

    fn connects(&self, from: &str) -> bool {
        let to = self.star.workload("xa").host.socket(Family::V4, PORT);
        tcp_connect(&self.star.workload(from).host.ns, to, Duration::from_millis(300)).is_ok()
    }

    /// Waits until a connection from `from` to x/a passes (or is refused) as `expected`;
    /// returns how long that took.
    fn expect(&mut self, step: &str, from: &str, expected: bool) -> Duration {
        let started = Instant::now();
        while started.elapsed() < CONVERGE {
            if self.connects(from) == expected {
                eprintln!("{step}: {from} -> x/a as expected after {:?}", started.elapsed());
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.agent.try_status().expect("agent status");
        panic!(
            "{step}: {from} -> x/a should {} within {CONVERGE:?} (agent exited: {status:?})\n{}",
            if expected { "pass" } else { "be dropped" },
            zt_tests::process::tail(self.agent.stderr_path(), 30)
        );
    }
}

#[test]
fn pod_namespace_and_policy_changes_on_the_api_server_change_enforcement() {
    skip_unless_privileged!();
    let mut c = Cluster::start();
    let took = Instant::now();
    c.expect("no policy", "yc", true);
    c.expect("no policy", "xb", true);

    // NetworkPolicy added: x/a takes ingress only from namespaces labelled team=blue.
    let from_blue = json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}], "ports": [{"port": "http"}]}]});
    c.stub.apply(kube_api::NETWORK_POLICIES, network_policy("x", "a-from-blue", from_blue));
    c.expect("policy added", "yc", false);
    c.expect("policy added", "xb", false);

    // Namespace updated: y becomes team=blue.
    c.stub.apply(kube_api::NAMESPACES, namespace_object("y", json!({"team": "blue"})));
    c.expect("namespace labelled", "yc", true);
    c.expect("namespace labelled", "xb", false);

    // Pod deleted: y/c's address is no pod any more, so no namespace admits it.
    c.stub.delete(kube_api::PODS, "y/c");
    c.expect("pod deleted", "yc", false);
    // Pod added again.
    c.stub.apply(kube_api::PODS, pod_object(&c.star, "y", "c", json!({"app": "c"})));
    c.expect("pod added", "yc", true);

    // Namespace deleted: its team=blue label goes with it.
    c.stub.delete(kube_api::NAMESPACES, "y");
    c.expect("namespace deleted", "yc", false);
    c.stub.apply(kube_api::NAMESPACES, namespace_object("y", json!({"team": "blue"})));
    c.expect("namespace added", "yc", true);

    // NetworkPolicy updated: pods labelled role=client in any namespace instead.
    let from_clients = json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}]}]});
    c.stub.apply(kube_api::NETWORK_POLICIES, network_policy("x", "a-from-blue", from_clients));
    c.expect("policy updated", "yc", false);
    // Pod updated: x/b gets role=client.
    c.stub.apply(kube_api::PODS, pod_object(&c.star, "x", "b", json!({"app": "b", "role": "client"})));
    c.expect("pod labelled", "xb", true);
    c.expect("pod labelled", "yc", false);

    // NetworkPolicy deleted: x/a is no longer isolated.
    c.stub.delete(kube_api::NETWORK_POLICIES, "x/a-from-blue");
    c.expect("policy deleted", "yc", true);

    // zt Policy (the CRD) added: x/a's ingress only from outside the cluster (the world).
    let zt_policy = json!({"apiVersion": "zt.dev/v1", "kind": "Policy", "metadata": {"name": "a-world-only"},
        "spec": {"selector": {"app": "a"}, "ingress": [{"from": [{"entity": "world"}], "ports": [{"protocol": "TCP", "port": 80}]}]}});
    c.stub.apply(kube_api::POLICIES, zt_policy.clone());
    c.expect("zt policy added", "yc", false);
    c.expect("zt policy added", "xb", false);
    // zt Policy updated: pods labelled app=b too.
    let mut updated = zt_policy;
    updated["spec"]["ingress"][0]["from"] = json!([{"entity": "world"}, {"selector": {"app": "b"}}]);
    c.stub.apply(kube_api::POLICIES, updated);
    c.expect("zt policy updated", "xb", true);
    c.expect("zt policy updated", "yc", false);
    // zt Policy deleted.
    c.stub.delete(kube_api::POLICIES, "a-world-only");
    c.expect("zt policy deleted", "yc", true);

    let log = std::fs::read_to_string(c.agent.stderr_path()).unwrap();
    assert!(log.contains("zt-agent: kubernetes: node node-1: listed 2 namespaces, 3 pods"), "{log}");
    assert!(log.matches("zt-agent: kubernetes: enforcing generation").count() >= 12, "{log}");
    assert!(c.agent.try_status().unwrap().is_none(), "the agent runs on");
    for line in log.lines().filter(|l| l.contains("after the first change")) {
        eprintln!("{line}");
    }
    eprintln!("all changes enforced in {:?}", took.elapsed());
}
