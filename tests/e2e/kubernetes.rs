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
    BpfFs, Family, Netns, NsProcess, Scratch, Star, StubApiServer, TcpEchoServer, kube_api, skip_unless_privileged,
    tcp_connect, topology, workspace_binary,
};

/// The pods: `x/a` serves, `x/b` and `y/c` are its clients.
const PODS: [(&str, &str); 3] = [("x", "a"), ("x", "b"), ("y", "c")];
const PORT: u16 = 80;
/// The agent's metrics, on the node.
const METRICS_PORT: u16 = 9464;
/// How long a change may take to reach the kernel in this test (the goal is 100 ms).
const CONVERGE: Duration = Duration::from_secs(5);

struct Cluster {
    agent: NsProcess,
    _server: TcpEchoServer,
    stub: StubApiServer,
    star: Star,
    links: Links,
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

/// How the agent finds the pods' links.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Links {
    /// `--iface` for each.
    Given,
    /// `--pod-iface-pattern` matching the node sides of the star.
    Discovered,
}

impl Cluster {
    fn start(links: Links) -> Cluster {
        Cluster::start_with(links, &[])
    }

    /// [`Cluster::start`] with `objects` on the API server too before the agent starts.
    fn start_with(links: Links, objects: &[(&'static str, Value)]) -> Cluster {
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
        for (collection, object) in objects {
            stub.apply(collection, object.clone());
        }
        let scratch = Scratch::new("kubernetes").expect("scratch");
        let bpffs = BpfFs::mount().expect("bpffs");
        scratch.write("kubeconfig", stub.kubeconfig()).expect("kubeconfig");
        let cmd = agent_command(&star, links, &scratch, &bpffs);
        let mut agent = NsProcess::spawn(&star.node, &cmd, scratch.path()).expect("spawn zt-agent");
        agent.wait_for_stderr(|l| l.contains("zt-agent: ready"), Duration::from_secs(30)).expect("agent ready");
        Cluster { agent, _server: server, stub, star, links, _scratch: scratch, _bpffs: bpffs }
    }

    /// Kills the agent (SIGKILL: no chance to save anything) and starts it again with the
    /// same state directory and pins; returns the new agent's log up to its ready line.
    fn crash_and_restart(&mut self, meanwhile: impl FnOnce(&StubApiServer)) -> String {
        self.agent.signal(libc::SIGKILL).expect("kill the agent");
        self.agent.wait_exit(Duration::from_secs(10)).expect("the agent is gone");
        meanwhile(&self.stub);
        let log_dir = self._scratch.join("restarted");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let cmd = agent_command(&self.star, self.links, &self._scratch, &self._bpffs);
        self.agent = NsProcess::spawn(&self.star.node, &cmd, &log_dir).expect("spawn zt-agent");
        self.agent.wait_for_stderr(|l| l.contains("zt-agent: ready"), Duration::from_secs(30)).expect("agent ready");
        std::fs::read_to_string(self.agent.stderr_path()).expect("the agent's log")
    }

    fn connects(&self, from: &str) -> bool {
        self.connects_from(&self.star.workload(from).host.ns)
    }

    fn connects_from(&self, ns: &Netns) -> bool {
        let to = self.star.workload("xa").host.socket(Family::V4, PORT);
        tcp_connect(ns, to, Duration::from_millis(300)).is_ok()
    }

    /// The link pins the agent keeps under its bpffs directory.
    fn link_pins(&self) -> Vec<String> {
        let dir = self._bpffs.path().join("zt").join("links");
        let mut pins: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        pins.sort();
        pins
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
    let mut c = Cluster::start(Links::Given);
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

    // The API server loses the agent's watches (410 Gone) and, while it relists, x/b
    // loses its label: the relist must find it.
    c.stub.expire_watches();
    c.stub.apply(kube_api::PODS, pod_object(&c.star, "x", "b", json!({"app": "b"})));
    c.expect("pod relabelled across a 410", "xb", false);
    // A dropped connection: the watch resumes from its version and misses nothing.
    c.stub.drop_watches();
    c.stub.apply(kube_api::PODS, pod_object(&c.star, "x", "b", json!({"app": "b", "role": "client"})));
    c.expect("pod relabelled across a drop", "xb", true);

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
    let updated_policy = updated.clone();
    c.stub.apply(kube_api::POLICIES, updated);
    c.expect("zt policy updated", "xb", true);
    c.expect("zt policy updated", "yc", false);
    // zt Policy deleted.
    c.stub.delete(kube_api::POLICIES, "a-world-only");
    c.expect("zt policy deleted", "yc", true);

    // An invalid new object is set aside, named in the log, and left out (it never had a
    // valid version); the rest of the cluster is still enforced.
    let bad_port = |port: u32| {
        network_policy(
            "x",
            "bad",
            json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": port}]}]}),
        )
    };
    c.stub.apply(kube_api::NETWORK_POLICIES, bad_port(70000));
    c.agent
        .wait_for_stderr(
            |l| l.contains("kubernetes:networkpolicies/x/bad is set aside (it is left out until it is fixed)"),
            CONVERGE,
        )
        .expect("the invalid object is set aside and named");
    c.expect("invalid policy set aside", "yc", true);
    let metrics = SocketAddr::new(c.star.workloads[0].gateway_v4.into(), METRICS_PORT);
    let m = zt_tests::metrics::scrape(&c.star.node, metrics, Duration::from_secs(5)).expect("scrape");
    assert_eq!(m.sum("zt_kubernetes_objects_rejected", &[]), Some(1.0));
    // A later valid change elsewhere is enforced meanwhile.
    c.stub.apply(kube_api::POLICIES, {
        let mut p = updated_policy.clone();
        p["metadata"]["name"] = json!("while-one-is-set-aside");
        p
    });
    c.expect("valid change beside a set-aside object", "yc", false);
    c.expect("valid change beside a set-aside object", "xb", true);
    c.stub.delete(kube_api::POLICIES, "while-one-is-set-aside");
    c.expect("valid change beside a set-aside object", "yc", true);

    // Fixed: it takes effect (every pod of x takes ingress on port 81 only).
    c.stub.apply(kube_api::NETWORK_POLICIES, bad_port(81));
    c.expect("fixed", "yc", false);
    c.expect("fixed", "xb", false);
    c.agent
        .wait_for_stderr(|l| l.contains("kubernetes:networkpolicies/x/bad is enforced now"), CONVERGE)
        .expect("the fix is reported");

    // An invalid edit of it: its last accepted version stays enforced (no failing open).
    c.stub.apply(kube_api::NETWORK_POLICIES, bad_port(70001));
    c.agent
        .wait_for_stderr(
            |l| l.contains("kubernetes:networkpolicies/x/bad is set aside (its last accepted version stays enforced)"),
            CONVERGE,
        )
        .expect("the invalid edit is set aside");
    assert!(!c.connects("yc"), "the last accepted version of x/bad still isolates x/a");
    // ... while other changes still go through: y/c relabelled is allowed by a new policy.
    c.stub.apply(kube_api::NETWORK_POLICIES, {
        let spec = json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "c"}}}]}]});
        network_policy("x", "a-from-c", spec)
    });
    c.expect("new policy beside an invalid edit", "yc", true);
    c.expect("new policy beside an invalid edit", "xb", false);
    c.stub.delete(kube_api::NETWORK_POLICIES, "x/a-from-c");
    c.expect("invalid edit still enforced at its last version", "yc", false);
    c.stub.delete(kube_api::NETWORK_POLICIES, "x/bad");
    c.agent
        .wait_for_stderr(|l| l.contains("kubernetes:networkpolicies/x/bad is deleted"), CONVERGE)
        .expect("the deletion is reported");
    c.expect("set-aside policy deleted", "yc", true);
    let m = zt_tests::metrics::scrape(&c.star.node, metrics, Duration::from_secs(5)).expect("scrape");
    assert_eq!(m.sum("zt_kubernetes_objects_rejected", &[]), Some(0.0));

    let log = std::fs::read_to_string(c.agent.stderr_path()).unwrap();
    assert!(log.contains("zt-agent: kubernetes: node node-1: listed 2 namespaces, 3 pods"), "{log}");
    assert!(log.matches("zt-agent: kubernetes: enforcing generation").count() >= 14, "{log}");
    let m = zt_tests::metrics::scrape(&c.star.node, metrics, Duration::from_secs(5)).expect("scrape");
    assert!(m.sum("zt_kubernetes_lists_total", &[]).unwrap() >= 5.0, "4 at start and 1 after the 410");
    assert!(m.sum("zt_kubernetes_gone_total", &[]).unwrap() >= 1.0);
    assert!(m.sum("zt_kubernetes_events_total", &[]).unwrap() >= 16.0);
    assert!(m.sum("zt_kubernetes_watches_total", &[]).unwrap() >= 6.0, "resumed after the drop");
    assert!(c.agent.try_status().unwrap().is_none(), "the agent runs on");
    for line in log.lines().filter(|l| l.contains("after the first change")) {
        eprintln!("{line}");
    }
    eprintln!("all changes enforced in {:?}", took.elapsed());
}

#[test]
fn an_invalid_object_at_start_is_set_aside_and_the_rest_enforced() {
    skip_unless_privileged!();
    let invalid = network_policy(
        "y",
        "bad",
        json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 70000}]}]}),
    );
    let only_b = network_policy(
        "x",
        "a-from-b",
        json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "b"}}}]}]}),
    );
    let mut c = Cluster::start_with(
        Links::Given,
        &[(kube_api::NETWORK_POLICIES, invalid), (kube_api::NETWORK_POLICIES, only_b)],
    );
    let log = std::fs::read_to_string(c.agent.stderr_path()).unwrap();
    assert!(log.contains("kubernetes:networkpolicies/y/bad is set aside (it is left out until it is fixed)"), "{log}");
    c.expect("valid policy enforced from the start", "yc", false);
    c.expect("valid policy enforced from the start", "xb", true);
    // The first burst after the start still leaves it out, and changes go through.
    c.stub.apply(kube_api::PODS, pod_object(&c.star, "y", "c", json!({"app": "b"})));
    c.expect("pod relabelled", "yc", true);
    let metrics = SocketAddr::new(c.star.workloads[0].gateway_v4.into(), METRICS_PORT);
    let m = zt_tests::metrics::scrape(&c.star.node, metrics, Duration::from_secs(5)).expect("scrape");
    assert_eq!(m.sum("zt_kubernetes_objects_rejected", &[]), Some(1.0));
}

/// The agent as every test starts it, on the node, with its state in `scratch` and its
/// pins in `bpffs`.
fn agent_command(star: &Star, links: Links, scratch: &Scratch, bpffs: &BpfFs) -> Command {
    let mut cmd = Command::new(workspace_binary("zt-agent").expect("zt-agent is built"));
    cmd.args(["run", "--kubernetes", "--node", "node-1", "--labels", "role=node"]);
    cmd.arg("--kubeconfig").arg(scratch.join("kubeconfig"));
    match links {
        Links::Given => {
            for iface in star.node_ifaces() {
                cmd.args(["--iface", iface]);
            }
        }
        Links::Discovered => {
            cmd.args(["--pod-iface-pattern", &format!("{}*", node_stem(star))]);
        }
    }
    cmd.arg("--bpffs").arg(bpffs.path().join("zt"));
    cmd.arg("--state-dir").arg(scratch.join("state"));
    cmd.arg("--socket").arg(scratch.join("agent.sock"));
    let metrics = SocketAddr::new(star.workloads[0].gateway_v4.into(), METRICS_PORT);
    cmd.args(["--metrics", &metrics.to_string()]);
    cmd
}

#[test]
fn an_invalid_edit_made_while_the_agent_is_down_keeps_the_last_accepted_version_after_a_restart() {
    skip_unless_privileged!();
    // x/a takes ingress on port 81 only: y/c cannot reach it on port 80.
    let policy = |port: u32| {
        network_policy(
            "x",
            "only-81",
            json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"protocol": "TCP", "port": port}]}]}),
        )
    };
    let mut c = Cluster::start_with(Links::Given, &[(kube_api::NETWORK_POLICIES, policy(81))]);
    c.expect("enforced from the start", "yc", false);
    let log = c.crash_and_restart(|stub| {
        stub.apply(kube_api::NETWORK_POLICIES, policy(70_000));
    });
    assert!(
        log.contains("kubernetes:networkpolicies/x/only-81 is set aside (its last accepted version stays enforced)"),
        "{log}"
    );
    // Without the saved version the invalid policy would be left out, and x/a open to all.
    assert!(!c.connects("yc"), "the last accepted version still isolates x/a");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!c.connects("yc"), "and keeps doing so");
    // Fixed, the new version takes over.
    c.stub.apply(kube_api::NETWORK_POLICIES, policy(80));
    c.expect("fixed after the restart", "yc", true);
}

/// The node-side link names of the star without their last role letter and number.
fn node_stem(star: &Star) -> String {
    let first = &star.workloads[0].node_iface;
    first.trim_end_matches("n0").to_string() + "n"
}

#[test]
fn pod_links_are_attached_as_they_appear_and_let_go_when_they_are_deleted() {
    skip_unless_privileged!();
    let mut c = Cluster::start(Links::Discovered);
    let log = std::fs::read_to_string(c.agent.stderr_path()).unwrap();
    let ready = log.lines().find(|l| l.contains("zt-agent: ready")).unwrap().to_string();
    for iface in c.star.node_ifaces() {
        assert!(ready.contains(iface), "{iface} is found at start: {ready}");
    }
    let at_start = c.link_pins();
    assert_eq!(at_start.len(), 6, "ingress and egress of 3 links: {at_start:?}");

    // A new pod: its veth appears on the node, then the pod object on the API server.
    let name = format!("{}9", node_stem(&c.star));
    let pod_ns = Netns::new("xd").expect("pod netns");
    let subnet = zt_tests::names::Subnet::allocate();
    zt_tests::veth::create_pair(&c.star.node, &name, &pod_ns, "eth0").expect("veth");
    zt_tests::veth::configure(&c.star.node, &name, (subnet.v4(1), 24), (subnet.v6(1), 64)).expect("node side");
    zt_tests::veth::configure(&pod_ns, "eth0", (subnet.v4(2), 24), (subnet.v6(2), 64)).expect("pod side");
    pod_ns.ip(["route", "add", "default", "via", &subnet.v4(1).to_string()]).expect("route");
    c.agent
        .wait_for_stderr(|l| l.contains(&format!("enforcing on pod link {name}")), CONVERGE)
        .expect("the new link is attached");
    assert_eq!(c.link_pins().len(), 8, "{:?}", c.link_pins());
    let mut d = pod_object(&c.star, "x", "a", json!({"app": "d"}));
    d["metadata"]["name"] = json!("d");
    d["status"]["podIP"] = json!(subnet.v4(2).to_string());
    d["status"]["podIPs"] = json!([{"ip": subnet.v4(2).to_string()}]);
    c.stub.apply(kube_api::PODS, d);
    assert!(c.connects_from(&pod_ns), "x/d reaches x/a while nothing isolates it");
    // Its egress isolated: what it sends is judged on its own link, now attached.
    let no_egress = json!({"podSelector": {"matchLabels": {"app": "d"}}, "policyTypes": ["Egress"]});
    c.stub.apply(kube_api::NETWORK_POLICIES, network_policy("x", "d-no-egress", no_egress));
    let started = Instant::now();
    while c.connects_from(&pod_ns) {
        assert!(started.elapsed() < CONVERGE, "x/d's egress is isolated");
    }

    // The pod goes: its veth is deleted and the agent lets go of the link.
    c.star.node.ip(["link", "del", &name]).expect("delete the veth");
    c.agent.wait_for_stderr(|l| l.contains(&format!("pod link {name} is gone")), CONVERGE).expect("the link is let go");
    assert_eq!(c.link_pins(), at_start, "only the new link's pins are removed");
    assert!(c.connects("yc"), "the other pods are still served");
    assert!(c.agent.try_status().unwrap().is_none(), "the agent runs on");
}
