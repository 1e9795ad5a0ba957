//! Kubernetes NetworkPolicy conformance, end to end: the cases of the upstream network
//! policy e2e suite (test/e2e/network/netpol), each pushed to the real `zt-agent` with
//! `ztctl policy apply` and checked against the full reachability matrix — the nine
//! (dual-stack) pods and an outside host to every pod on TCP and UDP ports 80 and 81, over
//! IPv4 and IPv6 — probed with real traffic through the agent's programs on the node's links.
//!
//! A case names its policies and says, as a function of source, destination and port,
//! what must pass; every cell of the matrix is compared and a failing case prints the
//! expected and observed matrices.

#[path = "netpol/cluster.rs"]
mod cluster;
#[path = "netpol/matrix.rs"]
mod matrix;

use std::time::Instant;

use cluster::{Cluster, OUTSIDE, assert_ok};
use matrix::{Matrix, Port};
use zt_tests::names::Subnet;
use zt_tests::skip_unless_privileged;

/// What must pass: `(from, to, port)`, where `from` is `ns/pod` or `outside`.
type Expect = Box<dyn Fn(&str, &str, Port) -> bool>;

struct Case {
    name: &'static str,
    /// The documents to apply (NetworkPolicies, or `zt/v1` documents mixed in).
    documents: Vec<Document>,
    expect: Expect,
}

enum Document {
    NetworkPolicy { namespace: &'static str, name: &'static str, spec: String },
    Zt { kind: &'static str, name: &'static str, yaml: String },
}

impl Document {
    fn yaml(&self) -> String {
        match self {
            Document::NetworkPolicy { namespace, name, spec } => format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{spec}"
            ),
            Document::Zt { yaml, .. } => yaml.clone(),
        }
    }

    /// The key `ztctl policy delete` takes.
    fn key(&self) -> String {
        match self {
            Document::NetworkPolicy { namespace, name, .. } => format!("NetworkPolicy/{namespace}/{name}"),
            Document::Zt { kind, name, .. } => format!("{kind}/{name}"),
        }
    }
}

/// A NetworkPolicy; `spec` is YAML indented by two spaces.
fn np(namespace: &'static str, name: &'static str, spec: &str) -> Document {
    Document::NetworkPolicy { namespace, name, spec: spec.to_string() }
}

fn case(name: &'static str, documents: Vec<Document>, expect: impl Fn(&str, &str, Port) -> bool + 'static) -> Case {
    Case { name, documents, expect: Box::new(expect) }
}

/// The namespace of a source or destination; `None` for the outside host.
fn ns(who: &str) -> Option<&str> {
    who.split_once('/').map(|(ns, _)| ns)
}

/// The pod name of a source or destination; `None` for the outside host.
fn pod(who: &str) -> Option<&str> {
    who.split_once('/').map(|(_, pod)| pod)
}

fn is_pod(who: &str) -> bool {
    who != OUTSIDE
}

/// The upstream cases, with the addresses of this cluster where ipBlocks need them.
fn cases(c: &Cluster) -> Vec<Case> {
    let ip = |who: &str| c.ip(who).to_string();
    let subnet = |who: &str| format!("{}/{}", c.workload(who).subnet.v4(0), Subnet::V4_PREFIX);
    let subnet6 = |who: &str| format!("\"{}/{}\"", c.workload(who).subnet.v6(0), Subnet::V6_PREFIX);
    let x_a = "  podSelector: {matchLabels: {pod: a}}\n";
    vec![
        case("no policies: every pod is open", vec![], |_, _, _| true),
        case(
            "default-deny-ingress in x",
            vec![np("x", "deny-ingress", "  podSelector: {}\n  policyTypes: [Ingress]\n")],
            |_, to, _| ns(to) != Some("x"),
        ),
        case(
            "default-deny-all in x (ingress and egress)",
            vec![np("x", "deny-all", "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n")],
            |from, to, _| ns(to) != Some("x") && ns(from) != Some("x"),
        ),
        case(
            "allow-all ingress in x",
            vec![np("x", "allow-all", "  podSelector: {}\n  ingress: [{}]\n")],
            |_, _, _| true,
        ),
        case(
            "pod selector within the policy's namespace",
            vec![np("x", "from-b", &format!("{x_a}  ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]\n"))],
            |from, to, _| to != "x/a" || from == "x/b",
        ),
        case(
            "namespace selector",
            vec![np("x", "from-y", &format!("{x_a}  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}]}}]\n"))],
            |from, to, _| to != "x/a" || ns(from) == Some("y"),
        ),
        case(
            "namespace selector on the default kubernetes.io/metadata.name label",
            vec![np(
                "x",
                "from-z",
                &format!("{x_a}  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: z}}}}}}]}}]\n"),
            )],
            |from, to, _| to != "x/a" || ns(from) == Some("z"),
        ),
        case(
            "pod selector with matchExpressions",
            vec![np(
                "x",
                "from-b-expr",
                &format!("{x_a}  ingress: [{{from: [{{podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [b]}}]}}}}]}}]\n"),
            )],
            |from, to, _| to != "x/a" || from == "x/b",
        ),
        case(
            "namespace selector with matchExpressions NotIn",
            vec![np(
                "x",
                "not-from-y",
                &format!("{x_a}  ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: ns, operator: NotIn, values: [y]}}]}}}}]}}]\n"),
            )],
            |from, to, _| to != "x/a" || (is_pod(from) && ns(from) != Some("y")),
        ),
        case(
            "pod selector OR namespace selector (two peers)",
            vec![np(
                "x",
                "or",
                &format!("{x_a}  ingress:\n    - from:\n        - namespaceSelector: {{matchExpressions: [{{key: ns, operator: NotIn, values: [x]}}]}}\n        - podSelector: {{matchLabels: {{pod: b}}}}\n"),
            )],
            |from, to, _| to != "x/a" || from == "x/b" || (is_pod(from) && ns(from) != Some("x")),
        ),
        case(
            "pod selector AND namespace selector (one peer)",
            vec![np(
                "x",
                "and",
                &format!("{x_a}  ingress:\n    - from:\n        - namespaceSelector: {{matchExpressions: [{{key: ns, operator: NotIn, values: [x]}}]}}\n          podSelector: {{matchLabels: {{pod: b}}}}\n"),
            )],
            |from, to, _| to != "x/a" || from == "y/b" || from == "z/b",
        ),
        case(
            "several pods by In AND namespaces by NotIn",
            vec![np(
                "x",
                "multi",
                &format!("{x_a}  ingress:\n    - from:\n        - namespaceSelector: {{matchExpressions: [{{key: ns, operator: NotIn, values: [x]}}]}}\n          podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [b, c]}}]}}\n"),
            )],
            |from, to, _| to != "x/a" || (ns(from).is_some_and(|n| n != "x") && pod(from) != Some("a")),
        ),
        case(
            "any pod of any namespace, but not the outside",
            vec![np("x", "any-pod", &format!("{x_a}  ingress: [{{from: [{{namespaceSelector: {{}}}}]}}]\n"))],
            |from, to, _| to != "x/a" || is_pod(from),
        ),
        case(
            "one pod of another namespace, by namespace and pod selector with Exists",
            vec![np(
                "x",
                "from-y-a",
                &format!("{x_a}  ingress:\n    - from:\n        - namespaceSelector: {{matchLabels: {{ns: y}}}}\n          podSelector: {{matchLabels: {{pod: a}}, matchExpressions: [{{key: pod, operator: Exists}}]}}\n"),
            )],
            |from, to, _| to != "x/a" || from == "y/a",
        ),
        case(
            "a port from a namespace",
            vec![np(
                "x",
                "y-on-81",
                &format!("{x_a}  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}], ports: [{{port: 81}}]}}]\n"),
            )],
            |from, to, port| to != "x/a" || (ns(from) == Some("y") && port.tcp() && port.number == 81),
        ),
        case(
            "ports only: every source, TCP 80 (protocol defaults to TCP)",
            vec![np("x", "tcp-80", &format!("{x_a}  ingress: [{{ports: [{{port: 80}}]}}]\n"))],
            |_, to, port| to != "x/a" || (port.tcp() && port.number == 80),
        ),
        case(
            "a protocol without port: any UDP port, no TCP",
            vec![np("x", "udp-any", &format!("{x_a}  ingress: [{{ports: [{{protocol: UDP}}]}}]\n"))],
            |_, to, port| to != "x/a" || port.udp(),
        ),
        case(
            "SCTP is not TCP: the pod is isolated and nothing it serves passes",
            vec![np("x", "sctp-80", &format!("{x_a}  ingress: [{{ports: [{{protocol: SCTP, port: 80}}]}}]\n"))],
            |_, to, _| to != "x/a",
        ),
        case(
            "named port",
            vec![np("x", "named", &format!("{x_a}  ingress: [{{ports: [{{port: serve-81-tcp}}]}}]\n"))],
            |_, to, port| to != "x/a" || (port.tcp() && port.number == 81),
        ),
        case(
            "named UDP port from a namespace",
            vec![np(
                "x",
                "named-udp",
                &format!("{x_a}  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}], ports: [{{protocol: UDP, port: serve-80-udp}}]}}]\n"),
            )],
            |from, to, port| to != "x/a" || (ns(from) == Some("y") && port.udp() && port.number == 80),
        ),
        case(
            "endPort range on every pod of x",
            vec![np("x", "range", "  podSelector: {}\n  ingress: [{ports: [{protocol: TCP, port: 81, endPort: 90}]}]\n")],
            |_, to, port| ns(to) != Some("x") || (port.tcp() && port.number == 81),
        ),
        case(
            "stacked policies on one pod add up",
            vec![
                np("x", "tcp-80-all", &format!("{x_a}  ingress: [{{ports: [{{port: 80}}]}}]\n")),
                np(
                    "x",
                    "udp-81-y",
                    &format!("{x_a}  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}], ports: [{{protocol: UDP, port: 81}}]}}]\n"),
                ),
            ],
            |from, to, port| {
                to != "x/a" || (port.tcp() && port.number == 80) || (ns(from) == Some("y") && port.udp() && port.number == 81)
            },
        ),
        case(
            "an allow-all policy wins over a narrower one",
            vec![
                np("x", "narrow", &format!("{x_a}  ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]\n")),
                np("x", "wide", &format!("{x_a}  ingress: [{{}}]\n")),
            ],
            |_, _, _| true,
        ),
        case(
            "egress denied for one pod",
            vec![np("x", "a-no-egress", &format!("{x_a}  policyTypes: [Egress]\n"))],
            |from, _, _| from != "x/a",
        ),
        case(
            "egress denied for a namespace",
            vec![np("x", "x-no-egress", "  podSelector: {}\n  policyTypes: [Egress]\n")],
            |from, _, _| ns(from) != Some("x"),
        ),
        case(
            "egress to a named port",
            vec![np("x", "egress-named", &format!("{x_a}  policyTypes: [Egress]\n  egress: [{{ports: [{{port: serve-80-tcp}}]}}]\n"))],
            |from, _, port| from != "x/a" || (port.tcp() && port.number == 80),
        ),
        case(
            "egress to one pod of another namespace",
            vec![np(
                "x",
                "to-y-a",
                &format!("{x_a}  egress:\n    - to:\n        - namespaceSelector: {{matchLabels: {{ns: y}}}}\n          podSelector: {{matchLabels: {{pod: a}}}}\n"),
            )],
            // Egress rules make the default policyTypes Ingress and Egress: x/a also takes
            // no ingress.
            |from, to, _| to != "x/a" && (from != "x/a" || to == "y/a"),
        ),
        case(
            "the client's egress denies what the server's ingress allows",
            vec![
                np("x", "a-no-egress", &format!("{x_a}  policyTypes: [Egress]\n")),
                np("y", "allow-x-a", "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]\n"),
            ],
            |from, to, _| from != "x/a" && ns(to) != Some("y"),
        ),
        case(
            "ingress and egress at once: x talks only to x",
            vec![np(
                "x",
                "x-only",
                "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  ingress: [{from: [{podSelector: {}}]}]\n  egress: [{to: [{podSelector: {}}]}]\n",
            )],
            |from, to, _| (ns(from) == Some("x")) == (ns(to) == Some("x")),
        ),
        case(
            "ipBlock: only the outside host's subnets, one per family",
            vec![np(
                "x",
                "from-outside",
                &format!(
                    "{x_a}  ingress: [{{from: [{{ipBlock: {{cidr: {}}}}}, {{ipBlock: {{cidr: {}}}}}]}}]\n",
                    subnet(OUTSIDE),
                    subnet6(OUTSIDE)
                ),
            )],
            |from, to, _| to != "x/a" || from == OUTSIDE,
        ),
        case(
            "an IPv4 ipBlock admits no IPv6 traffic",
            vec![np("x", "from-outside-v4", &format!("{x_a}  ingress: [{{from: [{{ipBlock: {{cidr: {}}}}}]}}]\n", subnet(OUTSIDE)))],
            |from, to, port| to != "x/a" || (from == OUTSIDE && port.v4()),
        ),
        case(
            "ipBlock with except: everything in 198.18.0.0/15 but y/a",
            vec![np(
                "x",
                "cidr-except",
                &format!("{x_a}  ingress: [{{from: [{{ipBlock: {{cidr: 198.18.0.0/15, except: [{}/32]}}}}]}}]\n", ip("y/a")),
            )],
            |from, to, port| to != "x/a" || (from != "y/a" && port.v4()),
        ),
        case(
            "egress ipBlock with except",
            vec![np(
                "x",
                "egress-except",
                &format!("{x_a}  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: 198.18.0.0/15, except: [{}/32]}}}}]}}]\n", ip("y/b")),
            )],
            |from, to, port| from != "x/a" || (to != "y/b" && port.v4()),
        ),
        case(
            "an address in an except and in another policy's cidr passes",
            vec![
                np(
                    "x",
                    "egress-except",
                    &format!("{x_a}  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: 198.18.0.0/15, except: [{}/32]}}}}]}}]\n", ip("y/b")),
                ),
                np(
                    "x",
                    "egress-one",
                    &format!("{x_a}  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: {}/32}}}}]}}]\n", ip("y/b")),
                ),
            ],
            |from, _, port| from != "x/a" || port.v4(),
        ),
        case(
            "zt/v1 and NetworkPolicy together",
            vec![
                Document::Zt {
                    kind: "Policy",
                    name: "pods-b-no-udp-out",
                    yaml: "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: pods-b-no-udp-out}\nspec:\n  selector: {pod: b}\n  egress: [{action: deny, ports: [{protocol: UDP}]}, {}]\n".to_string(),
                },
                np("x", "tcp-only", &format!("{x_a}  ingress: [{{ports: [{{protocol: TCP}}]}}]\n")),
            ],
            |from, to, port| !(pod(from) == Some("b") && port.udp()) && (to != "x/a" || port.tcp()),
        ),
    ]
}

#[test]
fn network_policy_conformance_matrix() {
    skip_unless_privileged!();
    let started = Instant::now();
    let mut cluster = Cluster::start();
    eprintln!("cluster up in {:.1?}", started.elapsed());
    check_naming(&cluster);

    let cases = cases(&cluster);
    assert!(cases.len() >= 20, "the suite must keep at least 20 cases");
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let begun = Instant::now();
        let yaml: Vec<String> = case.documents.iter().map(Document::yaml).collect();
        if !yaml.is_empty() {
            let file = cluster.file(&format!("case-{i:02}.yaml"), &yaml.join("---\n"));
            assert_ok(&cluster.ztctl(&["policy", "apply", file.to_str().unwrap()]));
        }
        let expected = Matrix::expected(&case.expect);
        let observed = Matrix::observe(&cluster, &expected);
        let differences = expected.differences(&observed);
        eprintln!("case {i:02} {} ({} wrong) in {:.1?}", case.name, differences.len(), begun.elapsed());
        if !differences.is_empty() {
            failures.push(format!(
                "case {i:02} {}: {} cells wrong:\n  {}\nobserved ([.] passed where blocked was expected, [X] the reverse):{}",
                case.name,
                differences.len(),
                differences.join("\n  "),
                observed.render(&expected)
            ));
        }
        for document in &case.documents {
            assert_ok(&cluster.ztctl(&["policy", "delete", &document.key()]));
        }
        cluster.assert_agent_alive();
    }
    check_rejected_push(&cluster);
    eprintln!("{} cases in {:.1?}", cases.len(), started.elapsed());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// `endpoint list`, `explain` and `flows` name pods as namespace/name.
fn check_naming(cluster: &Cluster) {
    let text = |out: std::process::Output| {
        assert_ok(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let endpoints = text(cluster.ztctl(&["endpoint", "list"]));
    for pod in cluster::all_pods() {
        assert!(endpoints.contains(&pod), "endpoint list names {pod}:\n{endpoints}");
    }
    let (from, to) = (cluster.ip("y/b").to_string(), cluster.ip("x/a").to_string());
    let explained = text(cluster.ztctl(&["explain", "--from", &from, "--to", &to, "--proto", "tcp", "--port", "80"]));
    assert!(explained.contains("pod y/b") && explained.contains("pod x/a"), "{explained}");
    // A flow between two pods shows both names.
    let server = std::net::SocketAddr::new(cluster.ip("x/a").into(), 80);
    zt_tests::tcp_connect(&cluster.workload("y/b").host.ns, server, std::time::Duration::from_secs(5)).expect("open");
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let flows = text(cluster.ztctl(&["flows", "--to", &to]));
        if flows.contains("(y/b)") && flows.contains("(x/a)") {
            break;
        }
        assert!(Instant::now() < deadline, "flows name both pods:\n{flows}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A bad NetworkPolicy is rejected with one sentence naming file, document and field, and
/// nothing changes: every pod stays open.
fn check_rejected_push(cluster: &Cluster) {
    let bad = np("x", "bad", "  podSelector: {}\n  ingress: [{ports: [{port: 70000}]}]\n");
    let file = cluster.file("bad.yaml", &bad.yaml());
    let out = cluster.ztctl(&["policy", "apply", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a bad push is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml, document 1: spec.ingress[0].ports[0].port 70000 is out of range 1-65535"),
        "{stderr}"
    );
    let expected = Matrix::expected(&|_, _, _| true);
    let observed = Matrix::observe(cluster, &expected);
    assert_eq!(expected.differences(&observed), Vec::<String>::new(), "a rejected push changes nothing");
}
