//! The agent refuses to start, with one clear sentence and a non-zero exit, when it cannot
//! do its job: an invalid policy, or an interface that does not exist.

mod common;

use std::{process::Command, time::Duration};

use zt_tests::{BpfFs, NsProcess, Scratch, skip_unless_privileged, topology, workspace_binary};

fn run_agent(args: &[&str], policy: &str) -> (i32, String) {
    let net = topology::pair().unwrap();
    let scratch = Scratch::new("agent-errors").unwrap();
    let bpffs = BpfFs::mount().unwrap();
    let file = scratch.write("bad.yaml", policy).unwrap();
    let mut cmd = Command::new(workspace_binary("zt-agent").unwrap());
    cmd.arg("run").args(args).arg("--policy").arg(&file).arg("--bpffs").arg(bpffs.path().join("zt"));
    let mut p = NsProcess::spawn(&net.server.ns, &cmd, scratch.path()).unwrap();
    let status = p.wait_exit(Duration::from_secs(20)).unwrap();
    let stderr = std::fs::read_to_string(p.stderr_path()).unwrap();
    assert!(!bpffs.path().join("zt").join("ZT_POLICY").exists(), "nothing was loaded");
    (status.code().unwrap_or(-1), stderr.replace(&net.server.iface, "IFACE"))
}

const BAD: &str = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ingress:\n    - ports: [{protocol: TCP, port: 70000}, {protocol: ICMP, port: 7}]\n";

#[test]
fn an_invalid_policy_is_refused_with_every_error_and_exit_1() {
    skip_unless_privileged!();
    let (code, stderr) = run_agent(&["--iface", "lo"], BAD);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("bad.yaml, document 1: spec.ingress[0].ports[0].port 70000 is out of range 1-65535"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.yaml, document 1: spec.ingress[0].ports[1]"), "both errors are reported: {stderr}");
    assert!(stderr.contains("nothing was applied"), "{stderr}");
}

#[test]
fn a_missing_interface_is_refused_with_exit_1() {
    skip_unless_privileged!();
    let ok = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: web}\nspec:\n  selector: {}\n";
    let (code, stderr) = run_agent(&["--iface", "nosuch0"], ok);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("interface nosuch0 does not exist in this network namespace"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(workspace_binary("zt-agent").unwrap())
        .args(["run", "--xdp-mode", "turbo", "--iface", "lo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--xdp-mode turbo is not one of native, generic, off"));
}

/// In a container that was not given the host's bpffs (its own PID and mount namespaces,
/// nothing at /sys/fs/bpf), pins could not outlive the container: a pinned agent refuses to
/// start with one sentence saying why and what to do, and `--no-pin` runs anyway.
#[test]
fn in_a_container_without_the_hosts_bpffs_a_pinned_agent_refuses_to_start() {
    skip_unless_privileged!();
    let net = topology::pair().unwrap();
    let scratch = Scratch::new("agent-container").unwrap();
    let policy = scratch
        .write("p.yaml", "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: any}\nspec:\n  selector: {}\n")
        .unwrap();
    let container = |extra: &str| {
        let agent = workspace_binary("zt-agent").unwrap();
        let script = format!(
            "exec {} run --iface {} --policy {} --bpffs /sys/fs/bpf/zt --metrics none --socket {} {extra}",
            agent.display(),
            net.server.iface,
            policy.display(),
            scratch.join(format!("agent{}.sock", extra.len())).display()
        );
        // --kill-child: stopping unshare stops the agent (PID 1 of its namespace) too;
        // without it the agent outlived the test.
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]);
        NsProcess::spawn(&net.server.ns, &cmd, scratch.path()).unwrap()
    };
    let mut pinned = container("");
    let status = pinned.wait_exit(Duration::from_secs(20)).unwrap();
    let stderr = std::fs::read_to_string(pinned.stderr_path()).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing is mounted at /sys/fs/bpf in this container"), "{stderr}");
    assert!(
        stderr.contains("mount the host's /sys/fs/bpf into the container") && stderr.contains("--no-pin"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");

    let mut unpinned = container("--no-pin");
    unpinned.wait_for_stderr(|l| l.contains("zt-agent: ready"), Duration::from_secs(20)).unwrap();
}
