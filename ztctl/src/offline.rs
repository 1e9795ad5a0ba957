//! What the offline commands (`policy validate`, `policy test`, `explain --policy`) share:
//! the host side of a compile as flags, and the compile itself — `zt_policy::generation`,
//! exactly what the agent runs on a push, with no socket, no bpffs and no root.
//!
//! The agent knows its host from the machine (addresses of its interfaces) and its
//! configuration (`--labels`, `--default-deny`, `[[failsafe]]`); offline, the flags below
//! say the same, with the agent's defaults.

use std::{net::IpAddr, path::PathBuf};

use ipnet::IpNet;
use zt_policy::{
    generation::{self, Rejected},
    host,
    identity::{IdentityAllocator, Labels},
    policy::{CompileSettings, CompiledPolicy, DefaultDeny, FailsafeRule},
};

use super::CliError;

/// The host a policy is compiled for, as the agent would see it.
#[derive(clap::Args, Debug, Clone)]
pub struct HostArgs {
    /// This host's addresses as its interfaces carry them (e.g. 198.18.0.2/24, fd00::2/64;
    /// a bare IP is a /32 or /128), comma-separated or repeated. Each IPv4 subnet adds its
    /// broadcast and network address; loopback, broadcast and multicast are always the host.
    #[arg(long = "host", value_name = "IP[/LEN],...", value_delimiter = ',', value_parser = interface_address)]
    pub host: Vec<IpNet>,
    /// This host's labels, as `zt-agent run --labels` gives them (e.g. role=db,env=prod).
    #[arg(long, value_name = "k=v,...", default_value = "")]
    pub labels: String,
    /// As `zt-agent run --default-deny`: isolate every identity even when no policy selects
    /// it (`true`), never (`false`), or report what isolation would drop (`audit`).
    #[arg(long, value_name = "true|false|audit", default_value = CompileSettings::default().default_deny.name(), value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<DefaultDeny>()))]
    pub default_deny: DefaultDeny,
    /// The agent's failsafe rules as DIRECTION:PROTOCOL[:PORT], comma-separated, or `none`
    /// [default: ingress:tcp:22, the agent's default].
    #[arg(long, value_name = "RULE,...|none", value_delimiter = ',')]
    pub failsafe: Vec<String>,
}

/// The flags' defaults: a host with only loopback, with the agent's compile settings.
impl Default for HostArgs {
    fn default() -> Self {
        Self {
            host: Vec::new(),
            labels: String::new(),
            default_deny: CompileSettings::default().default_deny,
            failsafe: Vec::new(),
        }
    }
}

fn interface_address(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text} is not an IP address or IP/LEN; write e.g. 198.18.0.2/24 or fd00::2"))
}

impl HostArgs {
    /// True when any of the flags was given (they mean nothing without policy files).
    pub fn is_given(&self) -> bool {
        !self.host.is_empty()
            || !self.labels.is_empty()
            || self.default_deny != CompileSettings::default().default_deny
            || !self.failsafe.is_empty()
    }

    /// This host's prefixes, as the agent derives them from its interfaces.
    pub fn prefixes(&self) -> Vec<IpNet> {
        host::prefixes(host::LOOPBACK.iter().chain(&self.host).copied())
    }

    /// The compile settings the agent would use on this host.
    pub fn settings(&self) -> Result<CompileSettings, CliError> {
        let host_labels =
            Labels::parse(&self.labels).map_err(|e| CliError::Usage(format!("--labels {:?}: {e}", self.labels)))?;
        let failsafe = match self.failsafe.as_slice() {
            [] => CompileSettings::default().failsafe,
            [none] if none == "none" => Vec::new(),
            rules => rules
                .iter()
                .map(|r| r.parse::<FailsafeRule>().map_err(|e| CliError::Usage(format!("--failsafe: {e}"))))
                .collect::<Result<_, _>>()?,
        };
        Ok(CompileSettings {
            default_deny: self.default_deny,
            failsafe,
            host_labels,
            host_addresses: host::addresses(&self.prefixes()),
        })
    }
}

/// A policy compiled offline: what the agent would enforce after a push of these files.
pub struct Offline {
    pub sources: Vec<(String, String)>,
    pub compiled: CompiledPolicy,
    /// Non-empty YAML documents of the files.
    pub documents: usize,
    /// Endpoint documents and Kubernetes pods.
    pub endpoints: usize,
    /// The ipcache with this host's prefixes, as the agent writes it.
    pub ipcache: Vec<(IpNet, u32)>,
}

impl Offline {
    /// Reads, validates and compiles `paths` as the complete policy of the host `host`.
    /// A rejected policy fails with every problem, one sentence each, exactly as the agent
    /// words them.
    pub fn compile(paths: &[PathBuf], host: &HostArgs) -> Result<Offline, CliError> {
        let settings = host.settings()?;
        let sources = generation::load(paths).map_err(|r| CliError::Failed {
            message: format!("{} path(s) cannot be read; nothing was validated", r.0.len()),
            problems: r.sentences(),
        })?;
        Offline::of_sources(sources, host, &settings)
    }

    /// [`Offline::compile`] of `(name, text)` sources already read.
    pub fn of_sources(
        sources: Vec<(String, String)>,
        host: &HostArgs,
        settings: &CompileSettings,
    ) -> Result<Offline, CliError> {
        let checked = generation::check_counted(&sources, settings, &mut IdentityAllocator::new()).map_err(rejected)?;
        let ipcache = generation::ipcache(&checked.compiled, &host.prefixes());
        Ok(Offline {
            sources,
            compiled: checked.compiled,
            documents: checked.documents,
            endpoints: checked.endpoints,
            ipcache,
        })
    }
}

/// A rejected policy: its problems first, then one line on what it means.
fn rejected(r: Rejected) -> CliError {
    let message = format!("the policy is invalid ({} problem(s)); an agent would reject this push", r.0.len());
    CliError::Failed { problems: r.sentences(), message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        host: HostArgs,
    }

    fn host(args: &[&str]) -> HostArgs {
        Flags::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap().host
    }

    fn usage(r: Result<CompileSettings, CliError>) -> String {
        match r {
            Err(CliError::Usage(m)) => m,
            other => panic!("not a usage error: {other:?}"),
        }
    }

    #[test]
    fn without_flags_the_settings_are_the_agents_defaults_on_a_host_with_only_loopback() {
        let h = host(&[]);
        assert!(!h.is_given());
        assert_eq!(format!("{h:?}"), format!("{:?}", HostArgs::default()));
        let s = h.settings().unwrap();
        let d = CompileSettings::default();
        assert_eq!((s.default_deny, &s.failsafe, &s.host_labels), (d.default_deny, &d.failsafe, &d.host_labels));
        for ip in ["127.0.0.1", "127.255.255.255", "::1", "255.255.255.255"] {
            assert!(s.host_addresses.contains(&ip.parse().unwrap()), "{ip} missing from {:?}", s.host_addresses);
        }
    }

    #[test]
    fn host_flags_give_addresses_labels_default_deny_and_failsafe() {
        let h = host(&[
            "--host",
            "198.18.0.2/24,fd00::2",
            "--labels",
            "role=db",
            "--default-deny",
            "false",
            "--failsafe",
            "egress:udp:53,ingress:icmp",
        ]);
        assert!(h.is_given());
        let s = h.settings().unwrap();
        for ip in ["198.18.0.2", "198.18.0.255", "198.18.0.0", "fd00::2"] {
            assert!(s.host_addresses.contains(&ip.parse().unwrap()), "{ip} missing");
        }
        assert_eq!(s.host_labels.to_string(), "role=db");
        assert_eq!(s.default_deny, DefaultDeny::Off);
        assert_eq!(host(&["--default-deny", "audit"]).settings().unwrap().default_deny, DefaultDeny::Audit);
        let rules: Vec<String> = s.failsafe.iter().map(ToString::to_string).collect();
        assert_eq!(rules, ["egress UDP 53", "ingress ICMP"]);
        assert!(host(&["--failsafe", "none"]).settings().unwrap().failsafe.is_empty());
    }

    #[test]
    fn bad_host_flags_are_usage_errors_naming_the_flag() {
        assert!(usage(host(&["--labels", "a=b,a=c"]).settings()).starts_with("--labels \"a=b,a=c\": "));
        assert!(
            usage(host(&["--failsafe", "ingress:icmp:8"]).settings())
                .starts_with("--failsafe: failsafe rule ingress ICMP 8 gives a port")
        );
        let err = Flags::try_parse_from(["t", "--host", "nowhere"]).err().unwrap().to_string();
        assert!(err.contains("nowhere is not an IP address or IP/LEN"), "{err}");
    }

    #[test]
    fn a_rejected_policy_fails_with_the_agents_sentences() {
        let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  ingress:\n  - ports: [{protocol: TCP, port: 70000}]\n";
        let h = host(&[]);
        let err = Offline::of_sources(vec![("p.yaml".into(), text.into())], &h, &h.settings().unwrap()).err().unwrap();
        let CliError::Failed { problems, message } = err else { panic!("not a failure") };
        assert_eq!(
            problems,
            ["policy p.yaml, document 1: spec.ingress[0].ports[0].port 70000 is out of range 1-65535"]
        );
        assert_eq!(message, "the policy is invalid (1 problem(s)); an agent would reject this push");
    }
}
