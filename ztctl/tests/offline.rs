//! The offline commands as an operator runs them: the real `ztctl` binary, no agent, no
//! root, on the demo policy and `policies/demo-cases.yaml`, with the outputs and exit codes
//! `docs/ztctl.md` shows.

use std::{path::Path, process::Command};

const HOST: &str = "198.18.1.1/24,198.18.2.1/24,198.18.3.1/24,198.18.4.1/24";

/// Runs `ztctl --socket /nonexistent args...` from the workspace root; (exit code, stdout,
/// stderr).
fn ztctl(args: &[&str]) -> (i32, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ztctl"))
        .current_dir(root)
        .args(["--socket", "/nonexistent"])
        .args(args)
        .output()
        .expect("ztctl runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().expect("an exit code"), text(&out.stdout), text(&out.stderr))
}

fn host(args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--host", HOST, "--labels", "role=app-server"].map(String::from));
    all
}

fn run(args: &[&str]) -> (i32, String, String) {
    let all = host(args);
    ztctl(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn the_demo_policy_is_valid() {
    let (code, out, err) = run(&["policy", "validate", "policies/demo"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert_eq!(
        out,
        "valid: 6 file(s), 13 document(s): 8 policies, 5 endpoints; 9 identities, 124 policy entries, 32 ipcache prefixes\n"
    );
}

#[test]
fn the_demo_cases_pass() {
    let (code, out, err) = run(&["policy", "test", "policies/demo", "--cases", "policies/demo-cases.yaml"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "12 cases passed\n", ""));
}

#[test]
fn a_wrong_expectation_fails_with_a_table_of_mismatches() {
    let cases = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/demo-cases.yaml"))
        .unwrap()
        .replace("expect: denied, reason: deny-rule, policy: db}", "expect: allowed, policy: db}");
    let file = std::env::temp_dir().join(format!("ztctl-wrong-{}.yaml", std::process::id()));
    std::fs::write(&file, cases).unwrap();
    let (code, out, err) = run(&["policy", "test", "policies/demo", "--cases", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "CASE           FLOW                                       EXPECTED      GOT     REASON     POLICY/RULE\n\
         8 (web-to-db)  198.18.1.2 -> 198.18.3.2 TCP 5432 ingress  allowed (db)  denied  deny-rule  db/1\n\
         11 of 12 cases passed\n"
    );
    assert_eq!(err, "ztctl: 1 of 12 cases failed\n");
}

#[test]
fn a_malformed_cases_file_tests_nothing_and_exits_1() {
    let file = std::env::temp_dir().join(format!("ztctl-bad-{}.yaml", std::process::id()));
    std::fs::write(&file, "- {from: 198.18.1.2, to: 198.18.3.2, proto: tcp, port: 70000, expect: allowed}\n").unwrap();
    let name = file.to_str().unwrap();
    let (code, out, err) = run(&["policy", "test", "policies/demo", "--cases", name]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        format!(
            "cases {name}, case 1: port 70000 is not a port number; use 0-65535\nztctl: the cases file {name} has 1 problem(s); nothing was tested\n"
        )
    );
}

#[test]
fn offline_explain_prints_what_the_online_one_prints() {
    let (code, out, _) = run(&[
        "explain",
        "--policy",
        "policies/demo",
        "--from",
        "198.18.1.2",
        "--to",
        "198.18.3.2",
        "--proto",
        "tcp",
        "--port",
        "5432",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "verdict:      denied (deny-rule)\n\
         flow:         TCP port 5432, judged at ingress (policy protects the destination)\n\
         source:       198.18.1.2 identity 260 [app=web,tier=frontend] via 198.18.1.2/32\n\
         destination:  198.18.3.2 identity 257 [app=db,tier=data] via 198.18.3.2/32\n\
         decided by:   policy db, ingress rule 1 (policies/demo/40-db.yaml, document 1)\n\
         generation:   none (computed offline from --policy)\n"
    );
}

#[test]
fn bad_flag_values_are_usage_errors() {
    for args in [
        &["policy", "validate", "policies/demo", "--failsafe", "sideways:tcp"][..],
        &["policy", "validate", "policies/demo", "--labels", "a=b,a=c"],
        &[
            "explain",
            "--policy",
            "policies/demo",
            "--from",
            "198.18.1.2",
            "--to",
            "198.18.3.2",
            "--proto",
            "icmp",
            "--port",
            "8",
        ],
    ] {
        let (code, _, err) = ztctl(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with("ztctl: ") && err.lines().count() == 1, "{args:?}: one sentence: {err}");
    }
}
