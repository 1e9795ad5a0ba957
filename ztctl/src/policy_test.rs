//! `ztctl policy test`: checks a policy against a list of flows and the verdicts they must
//! get (the cases file, [`super::cases`]), offline. Each flow is judged by
//! `zt_policy::explain` — the agent's own explain over the policy compiled as the agent
//! would — so a case passes exactly when the kernel would judge its first packet so.

use std::path::PathBuf;

use serde::Serialize;
use zt_api::protocol::Explanation;
use zt_policy::explain;

use super::{
    CliError, Ctx,
    cases::{self, Case, Expect},
    offline::{HostArgs, Offline},
    output::{self, Format},
};

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Policy files, or directories of *.yaml / *.yml files: the complete policy.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The cases file: a YAML list of flows with the verdict each must get.
    #[arg(long, value_name = "FILE")]
    pub cases: PathBuf,
    #[command(flatten)]
    pub host: HostArgs,
}

/// One case judged (`-o json` / `-o yaml`).
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub case: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub passed: bool,
    pub expect: Expect,
    pub explanation: Explanation,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub cases: usize,
    pub passed: usize,
    pub results: Vec<Outcome>,
}

pub fn run(ctx: &mut Ctx, args: TestArgs) -> Result<(), CliError> {
    let file = args.cases.display().to_string();
    let text = std::fs::read_to_string(&args.cases)
        .map_err(|e| CliError::failed(format!("cannot read the cases file {file} ({e}); check the --cases path")))?;
    let cases = cases::parse(&file, &text).map_err(|problems| CliError::Failed {
        message: format!("the cases file {file} has {} problem(s); nothing was tested", problems.len()),
        problems,
    })?;
    let offline = Offline::compile(&args.paths, &args.host)?;
    let report = judge(&offline, &file, cases)?;
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, &report, || render(&report))?;
    match report.cases - report.passed {
        0 => Ok(()),
        failed => Err(CliError::failed(format!("{failed} of {} cases failed", report.cases))),
    }
}

/// Judges every case; a flow explain cannot judge (a port for ICMP, mixed families) is a
/// problem of the cases file.
pub fn judge(offline: &Offline, file: &str, cases: Vec<Case>) -> Result<Report, CliError> {
    let judge = explain::offline(&offline.compiled, &offline.ipcache);
    let mut results = Vec::new();
    let mut problems = Vec::new();
    for case in cases {
        match judge.explain(&case.query) {
            Ok(explanation) => results.push(Outcome {
                case: case.index,
                passed: passes(&case.expect, &explanation),
                name: case.name,
                expect: case.expect,
                explanation,
            }),
            Err(e) => problems.push(format!("{}: {}", case.location(file), e.sentence(str::to_string))),
        }
    }
    if !problems.is_empty() {
        return Err(CliError::Failed {
            message: format!("the cases file {file} has {} problem(s); nothing was tested", problems.len()),
            problems,
        });
    }
    let passed = results.iter().filter(|r| r.passed).count();
    Ok(Report { cases: results.len(), passed, results })
}

/// The verdict matches, and so does every optional expectation that is given.
pub fn passes(expect: &Expect, got: &Explanation) -> bool {
    expect.verdict == got.verdict
        && expect.reason.as_ref().is_none_or(|r| *r == got.reason)
        && expect.policy.as_ref().is_none_or(|p| Some(p) == got.policy.as_ref())
        && expect.rule.is_none_or(|r| Some(r) == got.rule)
}

fn render(report: &Report) -> String {
    if report.passed == report.cases {
        return format!("{} cases passed\n", report.cases);
    }
    let mut t = output::Table::new(&["CASE", "FLOW", "EXPECTED", "GOT", "REASON", "POLICY/RULE"]);
    for r in report.results.iter().filter(|r| !r.passed) {
        let e = &r.explanation;
        let case = cases::label(r.case, r.name.as_deref());
        let port = e.port.map(|p| format!(" {p}")).unwrap_or_default();
        let flow = format!("{} -> {} {}{port} {}", e.source.ip, e.destination.ip, e.protocol, e.direction);
        t.row(vec![case, flow, expected(&r.expect), e.verdict.clone(), e.reason.clone(), decided_by(e)]);
    }
    format!("{}{} of {} cases passed\n", t.render(), report.passed, report.cases)
}

/// `denied (deny-rule, db/1)`: the verdict and whatever else the case expects.
fn expected(x: &Expect) -> String {
    let mut more: Vec<String> = x.reason.iter().cloned().collect();
    match (&x.policy, x.rule) {
        (Some(p), Some(r)) => more.push(format!("{p}/{r}")),
        (Some(p), None) => more.push(p.clone()),
        (None, Some(r)) => more.push(format!("rule {r}")),
        (None, None) => {}
    }
    if more.is_empty() { x.verdict.clone() } else { format!("{} ({})", x.verdict, more.join(", ")) }
}

fn decided_by(e: &Explanation) -> String {
    match (&e.policy, e.rule) {
        (Some(p), Some(r)) => format!("{p}/{r}"),
        (Some(p), None) => p.clone(),
        (None, _) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::HostArgs;

    /// db (198.18.0.10) takes TCP 5432 from api (198.18.0.11) and denies it from web.
    const POLICY: &str = "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: db}\nspec:\n  addresses: [198.18.0.10]\n  labels: {app: db}\n---\napiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: api}\nspec:\n  addresses: [198.18.0.11]\n  labels: {app: api}\n---\napiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: web}\nspec:\n  addresses: [198.18.0.12]\n  labels: {app: web}\n---\napiVersion: zt/v1\nkind: Policy\nmetadata: {name: db}\nspec:\n  selector: {app: db}\n  ingress:\n  - from: [{selector: {app: api}}]\n    ports: [{protocol: TCP, port: 5432}]\n  - action: deny\n    from: [{selector: {app: web}}]\n";

    fn offline() -> Offline {
        let host = HostArgs { host: vec!["198.18.0.2/24".parse().unwrap()], ..HostArgs::default() };
        let settings = host.settings().unwrap();
        Offline::of_sources(vec![("db.yaml".into(), POLICY.into())], &host, &settings).unwrap()
    }

    fn report(cases: &str) -> Result<Report, CliError> {
        judge(&offline(), "t.yaml", cases::parse("t.yaml", cases).unwrap())
    }

    #[test]
    fn cases_that_match_pass_and_say_how_many() {
        let r = report("- {from: 198.18.0.11, to: 198.18.0.10, proto: tcp, port: 5432, expect: allowed, reason: policy, policy: db, rule: 0}\n- {from: 198.18.0.12, to: 198.18.0.10, proto: tcp, port: 5432, expect: denied, reason: deny-rule, policy: db, rule: 1}\n- {from: 198.18.0.2, to: 198.18.0.11, proto: icmp, expect: denied, reason: default-deny}\n- {from: 203.0.113.1, to: 198.18.0.2, proto: tcp, port: 22, expect: allowed, reason: failsafe}\n").unwrap();
        assert_eq!((r.cases, r.passed), (4, 4));
        assert_eq!(render(&r), "4 cases passed\n");
        assert_eq!(r.results[2].explanation.direction, "egress", "from the host: egress by default");
    }

    #[test]
    fn each_expectation_can_fail_a_case() {
        let r = report("- {from: 198.18.0.11, to: 198.18.0.10, proto: tcp, port: 5432, expect: denied}\n- {from: 198.18.0.11, to: 198.18.0.10, proto: tcp, port: 5432, expect: allowed, reason: failsafe}\n- {from: 198.18.0.11, to: 198.18.0.10, proto: tcp, port: 5432, expect: allowed, policy: other}\n- {from: 198.18.0.11, to: 198.18.0.10, proto: tcp, port: 5432, expect: allowed, rule: 1}\n- {name: ok, from: 198.18.0.11, to: 198.18.0.10, proto: tcp, port: 5432, expect: allowed}\n").unwrap();
        let passed: Vec<bool> = r.results.iter().map(|o| o.passed).collect();
        assert_eq!(passed, [false, false, false, false, true]);
    }

    #[test]
    fn mismatches_are_a_table_of_case_flow_expected_got_reason_and_policy_rule() {
        let r = report("- {name: web-db, from: 198.18.0.12, to: 198.18.0.10, proto: tcp, port: 5432, expect: allowed, reason: policy}\n- {from: 198.18.0.11, to: 198.18.0.10, proto: tcp, port: 5432, expect: allowed}\n").unwrap();
        let text = render(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (header, cell) in [
            ("CASE", "1 (web-db)"),
            ("FLOW", "198.18.0.12 -> 198.18.0.10 TCP 5432 ingress"),
            ("EXPECTED", "allowed (policy)"),
            ("GOT", "denied"),
            ("REASON", "deny-rule"),
            ("POLICY/RULE", "db/1"),
        ] {
            assert!(lines[0].contains(header) && lines[1].contains(cell), "{header} / {cell} in {text}");
        }
        assert_eq!(lines[2], "1 of 2 cases passed");
    }

    #[test]
    fn a_flow_explain_cannot_judge_is_a_problem_of_the_cases_file() {
        let Err(CliError::Failed { problems, message }) = report(
            "- {from: 198.18.0.11, to: 198.18.0.10, proto: icmp, port: 8, expect: denied}\n- {from: 198.18.0.11, to: 'fd00::1', proto: udp, port: 53, expect: denied}\n",
        ) else {
            panic!("cases explain cannot judge must fail");
        };
        assert_eq!(
            problems,
            [
                "cases t.yaml, case 1: proto icmp has no ports; leave out port",
                "cases t.yaml, case 2: from and to must both be IPv4 or both IPv6 addresses"
            ]
        );
        assert_eq!(message, "the cases file t.yaml has 2 problem(s); nothing was tested");
    }
}
