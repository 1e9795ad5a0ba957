//! End-to-end tests of ztctl's offline commands against the real agent: for a seeded random
//! set of flows, `ztctl explain` asked of the agent, `ztctl explain --policy` computed
//! offline from the same files and host, and `ztctl policy test` over a cases file must
//! agree field by field; `policy validate` must print the very sentences the agent's
//! `policy apply` prints, with the same exit codes. The offline commands run with
//! `--socket /nonexistent`: they need no agent, socket or bpffs.

mod common;

use std::{path::Path, process::Command, time::Duration};

use common::*;
use serde_json::Value;
use zt_tests::rng::Rng;
use zt_tests::{skip_unless_privileged, workspace_binary};

/// Flows judged per run; the seed is printed, and `ZT_OFFLINE_SEED` replays a run.
const FLOWS: usize = 200;

/// Runs `ztctl --socket /nonexistent args...`: an offline command, no agent reachable.
fn offline(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(workspace_binary("ztctl").expect("ztctl is built"));
    cmd.args(["--socket", "/nonexistent"]).args(args);
    zt_tests::command::run_command(&mut cmd, Duration::from_secs(60)).expect("ztctl runs")
}

/// Endpoints db and web, a CIDR peer with an exception, an audit policy and egress rules,
/// all inside the pair's own subnet: every verdict, reason and kind of peer occurs.
fn policy(a: &AgentNet) -> String {
    let s = a.net.subnet;
    format!(
        "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {{name: db}}\nspec:\n  addresses: [\"{}\", \"{}\"]\n  labels: {{app: db, tier: backend}}\n---\n\
         apiVersion: zt/v1\nkind: Endpoint\nmetadata: {{name: web}}\nspec:\n  addresses: [\"{}\", \"{}\"]\n  labels: {{app: web, tier: frontend}}\n---\n\
         {}---\n\
         apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: db}}\nspec:\n  selector: {{app: db}}\n  ingress:\n  - from: [{{selector: {{app: web}}}}]\n    ports: [{{protocol: TCP, port: 5432, endPort: 5440}}]\n  - from: [{{entity: host}}]\n---\n\
         apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: web}}\nspec:\n  selector: {{app: web}}\n  ingress:\n  - from: [{{selector: {{app: client}}}}]\n    ports: [{{protocol: TCP, port: 80, endPort: 90}}]\n---\n\
         apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: web-audit}}\nspec:\n  selector: {{app: web}}\n  mode: audit\n  ingress:\n  - action: deny\n    ports: [{{protocol: TCP, port: 81}}]\n",
        s.v4(10),
        s.v6(0x10),
        s.v4(11),
        s.v6(0x11),
        server_policy(
            "server",
            &format!(
                "    - from: [{{selector: {{app: client}}}}]\n      ports: [{{protocol: TCP, port: 8080}}, {{protocol: UDP, port: 5353}}, {{protocol: ICMP}}, {{protocol: ICMPv6}}]\n    - action: deny\n      from: [{{selector: {{tier: frontend}}}}]\n    - from: [{{cidr: \"{}/25\", except: [\"{}/26\"]}}, {{cidr: \"{}/120\"}}]\n      ports: [{{protocol: TCP, port: 443}}, {{protocol: SCTP, port: 9000, endPort: 9010}}]\n",
                s.v4(128),
                s.v4(192),
                s.v6(0x100)
            ),
            "    - to: [{selector: {app: db}}]\n      ports: [{protocol: TCP, port: 5432}]\n    - to: [{entity: world}]\n      ports: [{protocol: UDP, port: 53}]\n",
        ),
    )
}

/// Every address of the server namespace as `ip addr` shows it (`198.18.5.2/24`,
/// `fe80::.../64`, `127.0.0.1/8`, ...): what an operator passes as `--host`.
fn host_addresses(a: &AgentNet) -> Vec<String> {
    let out = a.net.server.ns.ip(["-o", "addr", "show"]).expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "inet" || *w == "inet6")?;
            words.get(at + 1).map(|w| w.to_string())
        })
        .collect()
}

/// One agent enforcing the test policy, with the flags that describe its host offline.
struct Setup {
    a: AgentNet,
    policy: String,
    host: Vec<String>,
}

impl Setup {
    fn start() -> Setup {
        let mut a = AgentNet::prepare("");
        let text = format!("{}---\n{}", endpoints(&a.net), policy(&a));
        std::fs::write(&a.policy, text).expect("write policy");
        let agent = a.spawn(&[]);
        a.agent = Some(agent);
        a.wait_ready();
        let host = host_addresses(&a);
        assert!(host.iter().any(|h| h.starts_with(&format!("{}/", a.net.server.v4))), "{host:?}");
        let policy = a.policy.display().to_string();
        Setup { a, policy, host }
    }

    /// `--host ... --labels app=server`: the agent's host, as the offline commands take it.
    fn host_flags(&self) -> Vec<String> {
        vec!["--host".into(), self.host.join(","), "--labels".into(), "app=server".into()]
    }
}

/// A flow as explain's flags give it.
#[derive(Debug, Clone)]
struct Flow {
    from: String,
    to: String,
    proto: &'static str,
    port: Option<u16>,
    direction: Option<&'static str>,
}

impl Flow {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--from".into(), self.from.clone(), "--to".into(), self.to.clone(), "--proto".into()];
        args.push(self.proto.into());
        if let Some(port) = self.port {
            args.extend(["--port".into(), port.to_string()]);
        }
        if let Some(d) = self.direction {
            args.extend(["--direction".into(), d.into()]);
        }
        args
    }

    fn case(&self, expect: &Value) -> String {
        let mut fields =
            vec![format!("from: '{}'", self.from), format!("to: '{}'", self.to), format!("proto: {}", self.proto)];
        if let Some(port) = self.port {
            fields.push(format!("port: {port}"));
        }
        if let Some(d) = self.direction {
            fields.push(format!("direction: {d}"));
        }
        fields.push(format!("expect: {}", expect["verdict"].as_str().unwrap()));
        fields.push(format!("reason: {}", expect["reason"].as_str().unwrap()));
        if let Some(p) = expect["policy"].as_str() {
            fields.push(format!("policy: {p}"));
        }
        if let Some(r) = expect["rule"].as_u64() {
            fields.push(format!("rule: {r}"));
        }
        format!("- {{{}}}\n", fields.join(", "))
    }
}

/// Flows that must occur whatever the seed: one per verdict path of the policy.
fn directed(s: &Setup) -> Vec<Flow> {
    let n = s.a.net.subnet;
    let other = zt_tests::names::Subnet::from_index((n.index() + 1) % 512);
    let server = s.a.net.server.v4.to_string();
    let flow = |from: String, to: &str, proto, port| Flow { from, to: to.to_string(), proto, port, direction: None };
    vec![
        flow(n.v4(1).to_string(), &server, "tcp", Some(8080)),
        flow(n.v4(11).to_string(), &server, "tcp", Some(443)),
        flow(n.v4(1).to_string(), &n.v4(11).to_string(), "tcp", Some(81)),
        flow(other.v4(7).to_string(), &server, "tcp", Some(22)),
        flow(server.clone(), &n.v4(10).to_string(), "tcp", Some(5432)),
        flow(n.v4(130).to_string(), &server, "tcp", Some(443)),
        flow(n.v4(200).to_string(), &server, "sctp", Some(9005)),
        flow(n.v6(1).to_string(), &s.a.net.server.v6.to_string(), "udp", Some(5353)),
    ]
}

/// Random flows over the host's addresses (its own, subnet broadcast, multicast, loopback,
/// link-local), the endpoints, the CIDR peer inside and outside its exception, and world;
/// TCP, UDP, SCTP and ICMP of the family; ports the policy names and random ones; the
/// direction given or left to explain's default.
fn flows(s: &Setup, seed: u64) -> Vec<Flow> {
    let n = s.a.net.subnet;
    let other = zt_tests::names::Subnet::from_index((n.index() + 1) % 512);
    let strip = |h: &String| h.split('/').next().unwrap().to_string();
    let host: Vec<String> = s.host.iter().map(strip).collect();
    let (host4, host6): (Vec<String>, Vec<String>) = host.into_iter().partition(|h| !h.contains(':'));
    let mut v4: Vec<String> = host4;
    v4.extend(
        [n.v4(1), n.v4(10), n.v4(11), n.v4(130), n.v4(200), n.v4(255), n.v4(0), other.v4(7)].map(|a| a.to_string()),
    );
    v4.push("224.0.0.1".into());
    let mut v6: Vec<String> = host6;
    v6.extend([n.v6(1), n.v6(0x10), n.v6(0x11), n.v6(0x150), n.v6(0x300), other.v6(7)].map(|a| a.to_string()));
    v6.push("ff02::1".into());
    let ports = [22, 53, 80, 443, 5353, 5432, 5436, 8080, 9005];
    let mut rng = Rng(seed);
    let mut flows = directed(s);
    let random = (flows.len()..FLOWS)
        .map(|_| {
            let (pool, icmp) = if rng.below(2) == 0 { (&v4, "icmp") } else { (&v6, "icmpv6") };
            let proto = *rng.pick(&["tcp", "tcp", "udp", "sctp", icmp]);
            let port = (proto != icmp)
                .then(|| if rng.below(5) == 0 { 1 + rng.below(65535) as u16 } else { *rng.pick(&ports) });
            Flow {
                from: rng.pick(pool).clone(),
                to: rng.pick(pool).clone(),
                proto,
                port,
                direction: *rng.pick(&[None, None, Some("ingress"), Some("egress")]),
            }
        })
        .collect::<Vec<_>>();
    flows.extend(random);
    flows
}

fn parsed(out: std::process::Output) -> Value {
    json(out)
}

/// An explanation without its generation (the agent's is its own; offline's is 0).
fn without_generation(mut e: Value) -> (Value, u64) {
    let generation = e["generation"].as_u64().expect("a generation");
    e.as_object_mut().unwrap().remove("generation");
    (e, generation)
}

#[test]
fn offline_explain_and_policy_test_agree_with_the_agent_on_random_flows() {
    skip_unless_privileged!();
    let s = Setup::start();
    let seed = std::env::var("ZT_OFFLINE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x0ff1_17e5);
    eprintln!("offline: seed {seed} (ZT_OFFLINE_SEED replays it)");
    let flows = flows(&s, seed);
    let mut cases = String::new();
    let mut online_all = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for flow in &flows {
        let args = flow.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let online = parsed(s.a.ztctl(&[&["explain", "-o", "json"][..], &args].concat()));
        let host = s.host_flags();
        let host: Vec<&str> = host.iter().map(String::as_str).collect();
        let offline_out =
            parsed(offline(&[&["explain", "-o", "json", "--policy", &s.policy][..], &host, &args].concat()));
        let (online, generation) = without_generation(online);
        let (offline_e, offline_generation) = without_generation(offline_out);
        assert!(generation > 0, "the agent enforces a generation");
        assert_eq!(offline_generation, 0, "offline answers carry generation 0");
        assert_eq!(online, offline_e, "seed {seed}: {flow:?}: online and offline explain differ");
        seen.insert((online["verdict"].as_str().unwrap().to_string(), online["reason"].as_str().unwrap().to_string()));
        cases.push_str(&flow.case(&online));
        online_all.push(online);
    }
    // The flows must exercise the policy, not just its default.
    for want in [
        ("allowed", "policy"),
        ("denied", "default-deny"),
        ("denied", "deny-rule"),
        ("allowed", "failsafe"),
        ("audit", "deny-rule"),
    ] {
        assert!(seen.contains(&(want.0.to_string(), want.1.to_string())), "seed {seed}: no {want:?} in {seen:?}");
    }

    let file = s.a.scratch.write("cases.yaml", &cases).expect("write cases").display().to_string();
    let host = s.host_flags();
    let host: Vec<&str> = host.iter().map(String::as_str).collect();
    let test = |file: &str, format: &[&'static str]| {
        offline(&[&["policy", "test", &s.policy, "--cases", file][..], &host, format].concat())
    };
    assert_eq!(ok(test(&file, &[])), format!("{FLOWS} cases passed\n"));
    let report = parsed(test(&file, &["-o", "json"]));
    assert_eq!((report["cases"].as_u64(), report["passed"].as_u64()), (Some(FLOWS as u64), Some(FLOWS as u64)));
    for (i, (result, online)) in report["results"].as_array().unwrap().iter().zip(&online_all).enumerate() {
        let (e, _) = without_generation(result["explanation"].clone());
        assert_eq!(&e, online, "seed {seed}: case {}: policy test and the agent differ", i + 1);
        assert_eq!(result["case"].as_u64(), Some(i as u64 + 1));
    }

    // One expectation flipped: that case, and only it, fails.
    let flipped = cases.replacen("expect: allowed", "expect: denied", 1);
    let at = cases.lines().position(|l| l.contains("expect: allowed")).expect("an allowed case") + 1;
    let wrong = s.a.scratch.write("wrong.yaml", &flipped).expect("write cases").display().to_string();
    let out = test(&wrong, &[]);
    let err = refused(&out);
    assert!(err.contains(&format!("ztctl: 1 of {FLOWS} cases failed")), "{err}");
    let table = stdout(&out);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "header, one mismatch, count: {table}");
    assert!(rows[0].starts_with("CASE") && rows[1].starts_with(&format!("{at} ")), "{table}");
    assert!(rows[1].contains(&format!("{} -> {}", flows[at - 1].from, flows[at - 1].to)), "{table}");
    assert_eq!(rows[2], format!("{} of {FLOWS} cases passed", FLOWS - 1));
}

/// The problem lines of a failed command: stderr without warnings and the closing
/// `ztctl: ...` sentence.
fn problems(out: &std::process::Output) -> Vec<String> {
    stderr(out).lines().filter(|l| !l.starts_with("ztctl: ") && !l.starts_with("warning: ")).map(String::from).collect()
}

#[test]
fn validate_prints_the_agents_errors_and_exit_codes() {
    skip_unless_privileged!();
    let s = Setup::start();
    let host = s.host_flags();
    let host: Vec<&str> = host.iter().map(String::as_str).collect();
    let validate = |paths: &[&str]| offline(&[&["policy", "validate"][..], paths, &host].concat());
    let write = |name: &str, text: &str| s.a.scratch.write(name, text).expect("write").display().to_string();
    let policy = |name: &str, spec: &str| {
        format!(
            "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: server}}\n{spec}"
        )
    };

    let broken: Vec<Vec<String>> = vec![
        vec![write("range.yaml", &policy("a", "  ingress:\n  - ports: [{protocol: TCP, port: 70000}]\n"))],
        vec![write("typo.yaml", &policy("b", "  ingres:\n  - {}\n"))],
        vec![write("no-version.yaml", "kind: Policy\nmetadata: {name: c}\nspec: {selector: {}}\n")],
        vec![write("yaml.yaml", "apiVersion: zt/v1\nkind: [\n")],
        vec![write(
            "two.yaml",
            &format!(
                "{}---\n{}",
                policy("d", "  ingress:\n  - from: [{cidr: 198.18.0.1/24}]\n"),
                policy("e", "  egress:\n  - ports: [{protocol: ICMP, port: 8}]\n")
            ),
        )],
        vec![write("dup1.yaml", &policy("same", "")), write("dup2.yaml", &policy("same", "  ingress: []\n"))],
        vec!["/nonexistent/policy.yaml".to_string()],
    ];
    for paths in &broken {
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let pushed = s.a.ztctl(&[&["policy", "apply"][..], &paths].concat());
        refused(&pushed);
        let checked = validate(&paths);
        let err = refused(&checked);
        let want = problems(&pushed);
        assert!(!want.is_empty(), "{paths:?}: the agent names the problems: {}", stderr(&pushed));
        assert_eq!(problems(&checked), want, "{paths:?}: validate and the agent word the problems alike");
        assert!(stdout(&checked).is_empty(), "{paths:?}");
        let closing = if paths[0].starts_with("/nonexistent") {
            "ztctl: 1 path(s) cannot be read; nothing was validated\n".to_string()
        } else {
            format!("ztctl: the policy is invalid ({} problem(s)); an agent would reject this push\n", want.len())
        };
        assert!(err.ends_with(&closing), "{err}");
    }

    // Valid: exit 0 and the counts the agent's dry run reports for the same files.
    let summary = parsed(validate(&[&s.policy, "-o", "json"]));
    let dry = parsed(s.a.ztctl(&["policy", "apply", "--dry-run", &s.policy, "-o", "json"]));
    for field in ["policies", "identities", "policy_entries", "ipcache_entries"] {
        assert_eq!(summary[field], dry[field], "{field}: validate {summary} vs agent {dry}");
    }
    assert_eq!((summary["files"].as_u64(), summary["documents"].as_u64()), (Some(1), Some(7)));
    assert_eq!((summary["policies"].as_u64(), summary["endpoints"].as_u64()), (Some(4), Some(3)));
    let text = ok(validate(&[&s.policy]));
    assert!(text.starts_with("valid: 1 file(s), 7 document(s): 4 policies, 3 endpoints; "), "{text}");

    // Usage errors exit 2, like every ztctl usage error.
    for bad in [&["--labels", "=x"][..], &["--failsafe", "ingress:icmp:8"], &["--host", "nowhere"]] {
        let out = offline(&[&["policy", "validate", &s.policy][..], bad].concat());
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
    assert!(!Path::new("/nonexistent").exists(), "the offline commands never create their --socket");
}
