//! The agent's configuration: the TOML file given with `--config`, the `run` flags that
//! override it, and the documented defaults under both — merged into one validated
//! [`RunOptions`].
//!
//! Precedence is flag > file > default, key by key; a list given as a flag (`--iface`,
//! `--policy`) replaces the file's list. Unknown keys are errors, not warnings: a misspelt
//! `defualt_deny` silently ignored would leave a host enforcing something else than its
//! operator wrote. Every error names the file, the line and the fix. `deploy/zt-agent.toml`
//! is the annotated example with every key at its default.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

mod detect;
use zt_common::config::{Config, FLAG_RECHECK_ESTABLISHED};

use crate::{
    agent::{DEFAULT_METRICS, DEFAULT_POD_IFACE_PATTERNS, KubernetesOptions, RemoteOptions, RoleMap, RunOptions},
    datapath::{MapSizes, XdpModeChoice},
    flows::rotate::Rotation,
    identity::Labels,
    policy::{
        DefaultDeny, FailsafeRule,
        model::{Direction, Protocol},
    },
};

/// The options of `zt-agent run` as given on the command line; every one is optional so
/// the file and the defaults can fill what is not given.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RunFlags {
    /// Configuration file (TOML); flags override its keys. Example: deploy/zt-agent.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to enforce on (repeat for more); replaces the file's `ifaces`.
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// Policy file or directory of *.yaml / *.yml files (repeat for more); replaces the
    /// file's `policy`.
    #[arg(long, value_name = "PATH")]
    pub policy: Vec<PathBuf>,
    /// Labels of this host, e.g. app=web,env=prod; policies select the host by them.
    #[arg(long, value_name = "k=v,...")]
    pub labels: Option<String>,
    /// Ingress hook: native XDP, generic XDP, or off (TC ingress). Default: native, else
    /// generic, else TC.
    #[arg(long, value_name = "native|generic|off")]
    pub xdp_mode: Option<XdpModeChoice>,
    /// Directory for the agent's state [default: /var/lib/zt].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// bpffs directory for the pinned maps and links [default: /sys/fs/bpf/zt].
    #[arg(long, value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
    /// Local API socket for ztctl [default: /run/zt/agent.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Write flow records as JSON lines to this file, or to standard output with `-`.
    #[arg(long, value_name = "PATH|-")]
    pub flow_log: Option<String>,
    /// Prometheus metrics listen address, or `none` [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR|none")]
    pub metrics: Option<String>,
    /// Isolate every identity even when no policy selects it (zero trust); Kubernetes pods
    /// are isolated only by the policies that select them, either way. With `false`, only
    /// identities a policy selects are isolated. With `audit`, default deny only reports:
    /// what it would drop passes, logged with verdict audit and reason default-deny, so a
    /// new host can learn its traffic (`ztctl policy suggest`) [default: true].
    #[arg(long, value_name = "true|false|audit", action = clap::ArgAction::Set)]
    pub default_deny: Option<DefaultDeny>,
    /// Do not pin the attachments: enforcement stops when the agent exits, and exit
    /// removes every pin. By default programs stay attached across restarts (fail-static).
    #[arg(long)]
    pub no_pin: bool,
    /// Watch the Kubernetes API server for pods, namespaces, NetworkPolicies and zt
    /// Policies, and enforce them (in a pod: with its service account).
    #[arg(long)]
    pub kubernetes: bool,
    /// With --kubernetes: the kubeconfig file to reach the API server with, instead of the
    /// pod's service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// With --kubernetes: this node's name [default: $NODE_NAME, else the host name].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// With --kubernetes and no --iface: glob(s) of the host-side pod interfaces to attach
    /// to as they appear, comma-separated [default: lxc*,cali*,veth*].
    #[arg(long, value_name = "GLOB,...", value_delimiter = ',')]
    pub pod_iface_pattern: Vec<String>,
}

/// The configuration file. Every key is optional; absent keys take the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub ifaces: Option<Vec<String>>,
    pub policy: Option<Vec<PathBuf>>,
    pub labels: Option<Spanned<BTreeMap<String, String>>>,
    pub xdp_mode: Option<Spanned<String>>,
    pub state_dir: Option<PathBuf>,
    pub bpffs: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub flow_log: Option<String>,
    pub metrics: Option<Spanned<String>>,
    pub default_deny: Option<Spanned<DefaultDenyValue>>,
    pub pin: Option<bool>,
    pub recheck_established: Option<bool>,
    pub conntrack: Option<Conntrack>,
    pub deny_events: Option<DenyEvents>,
    pub flows: Option<Flows>,
    pub failsafe: Option<Spanned<Vec<Spanned<FailsafeEntry>>>>,
    pub flow_log_rotation: Option<FlowLogRotation>,
    pub remote: Option<Spanned<Remote>>,
    pub detect: Option<Spanned<detect::DetectFile>>,
    /// `[maps]`: entries of the resizable maps, by key (see `datapath::sizes`).
    pub maps: Option<BTreeMap<Spanned<String>, Spanned<u32>>>,
    pub kubernetes: Option<bool>,
    pub kubeconfig: Option<PathBuf>,
    pub node: Option<String>,
    pub pod_iface_patterns: Option<Vec<String>>,
}

/// `default_deny = true | false | "audit"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DefaultDenyValue {
    Bool(bool),
    Text(String),
}

fn default_deny(value: &Spanned<DefaultDenyValue>, src: &Source<'_>) -> anyhow::Result<DefaultDeny> {
    match value.get_ref() {
        DefaultDenyValue::Bool(on) => Ok((*on).into()),
        DefaultDenyValue::Text(text) if text == "audit" => Ok(DefaultDeny::Audit),
        DefaultDenyValue::Text(text) => {
            Err(src.error(value.span(), "default_deny", format!("{text:?} is not one of true, false, \"audit\"")))
        }
    }
}

/// `[remote]`: the remote API listener with mutual TLS; client certificates are admitted
/// by their subject Common Name or SAN DNS name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    pub listen: Option<Spanned<String>>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub admins: Option<Vec<String>>,
    pub readers: Option<Vec<String>>,
}

/// `[flow_log_rotation]`: sizes like `100MiB`, ages like `90d`; `"off"` (or `max_files = 0`)
/// switches a limit off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLogRotation {
    pub max_file_size: Option<Spanned<String>>,
    pub max_files: Option<usize>,
    pub max_age: Option<Spanned<String>>,
    pub max_total_size: Option<Spanned<String>>,
}

/// `[conntrack]`: how long idle flows stay tracked, as durations (`30s`, `5m`, `6h`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conntrack {
    pub tcp_syn_timeout: Option<Spanned<String>>,
    pub tcp_established_timeout: Option<Spanned<String>>,
    pub tcp_closing_timeout: Option<Spanned<String>>,
    pub udp_timeout: Option<Spanned<String>>,
    pub icmp_timeout: Option<Spanned<String>>,
    pub other_timeout: Option<Spanned<String>>,
    /// Long flows report their counters at this interval; `0s` = only at start and end.
    pub flow_update_interval: Option<Spanned<String>>,
}

/// `[deny_events]`: the per-source budget of reported drops (every drop is counted).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyEvents {
    pub per_second: Option<u32>,
    pub burst: Option<u32>,
}

/// `[flows]`: the flow pipeline's own tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flows {
    /// Observed edges kept at most (`ztctl policy suggest`).
    pub edges: Option<Spanned<u64>>,
}

fn edges_capacity(flows: Option<&Flows>, src: &Source<'_>) -> anyhow::Result<usize> {
    use crate::flows::edges::{DEFAULT_CAPACITY, MAX_CAPACITY};
    match flows.and_then(|f| f.edges.as_ref()) {
        None => Ok(DEFAULT_CAPACITY),
        Some(n) if *n.get_ref() as usize <= MAX_CAPACITY => Ok(*n.get_ref() as usize),
        Some(n) => Err(src.error(
            n.span(),
            "flows.edges",
            format!("= {} is out of range; use 0 to {MAX_CAPACITY} edges", n.get_ref()),
        )),
    }
}

/// One `[[failsafe]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailsafeEntry {
    pub direction: Direction,
    pub protocol: Protocol,
    pub port: Option<u16>,
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> anyhow::Result<(ConfigFile, String)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the config file {}: {e}; check the --config path", path.display()))?;
    let file = parse(path, &text)?;
    Ok((file, text))
}

/// Parses the text of a configuration file; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<ConfigFile> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().trim_end();
        let fix = if msg.starts_with("unknown field") {
            "; remove the key or correct its spelling (deploy/zt-agent.toml lists every key)"
        } else {
            ""
        };
        let line = e.span().map(|s| format!(", line {}", line_of(text, s.start))).unwrap_or_default();
        anyhow::anyhow!("config file {}{line}: {}{fix}", path.display(), msg.replace("field", "key"))
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Names places in the file for error messages.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, key: &str, problem: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("config file {}, line {}: {key} {problem}", self.path.display(), line_of(self.text, span.start))
    }
}

/// The options `run` uses: flags over the file (if `--config`) over the defaults.
pub fn resolve(flags: RunFlags) -> anyhow::Result<RunOptions> {
    match &flags.config {
        Some(path) => {
            let path = path.clone();
            let (file, text) = load(&path)?;
            merge(flags, file, &Source { path: &path, text: &text })
        }
        None => merge(flags, ConfigFile::default(), &Source { path: Path::new("(none)"), text: "" }),
    }
}

fn merge(flags: RunFlags, file: ConfigFile, src: &Source<'_>) -> anyhow::Result<RunOptions> {
    let defaults = RunOptions::default();
    let datapath = datapath_config(&file, src)?;
    let labels = match (flags.labels, file.labels) {
        (Some(flag), _) => flag,
        (None, Some(table)) => {
            let span = table.span();
            let text = table.into_inner().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            Labels::parse(&text).map_err(|e| src.error(span, "labels", format!("are invalid: {e}")))?;
            text
        }
        (None, None) => defaults.labels,
    };
    let xdp_mode = match (flags.xdp_mode, file.xdp_mode) {
        (Some(mode), _) => mode,
        (None, Some(mode)) => {
            let span = mode.span();
            let text = mode.into_inner();
            text.parse().map_err(|_| {
                src.error(
                    span,
                    "xdp_mode",
                    format!("{text:?} is not one of \"auto\", \"native\", \"generic\", \"off\""),
                )
            })?
        }
        (None, None) => defaults.xdp_mode,
    };
    let metrics = match (flags.metrics, file.metrics) {
        (Some(flag), _) => parse_metrics(&flag).map_err(|e| anyhow::anyhow!("--metrics {e}"))?,
        (None, Some(m)) => parse_metrics(m.get_ref()).map_err(|e| src.error(m.span(), "metrics", e))?,
        (None, None) => defaults.metrics,
    };
    let failsafe = match file.failsafe {
        None => defaults.failsafe,
        Some(list) => {
            let rules =
                list.get_ref().iter().map(|entry| failsafe_rule(entry, src)).collect::<anyhow::Result<Vec<_>>>()?;
            if rules.is_empty() {
                log::warn!(
                    "config file {}: failsafe = [] turns every failsafe rule off; a policy can now lock operators out of this host",
                    src.path.display()
                );
            }
            rules
        }
    };
    let detect = detect::settings(file.detect.as_ref(), src)?;
    let mut map_sizes = MapSizes::default();
    for (key, entries) in file.maps.iter().flatten() {
        map_sizes
            .set(key.get_ref(), *entries.get_ref())
            .map_err(|e| src.error(key.span(), &format!("maps.{}", key.get_ref()), e))?;
    }
    let kubernetes = (flags.kubernetes || file.kubernetes == Some(true)).then(|| KubernetesOptions {
        kubeconfig: flags.kubeconfig.clone().or(file.kubeconfig.clone()),
        node: flags.node.clone().or(file.node.clone()).unwrap_or_else(node_name),
        pod_iface_patterns: if flags.pod_iface_pattern.is_empty() {
            file.pod_iface_patterns.clone().unwrap_or_else(|| DEFAULT_POD_IFACE_PATTERNS.map(String::from).to_vec())
        } else {
            flags.pod_iface_pattern.clone()
        },
    });
    if kubernetes.is_none()
        && (flags.kubeconfig.is_some() || flags.node.is_some() || !flags.pod_iface_pattern.is_empty())
    {
        anyhow::bail!(
            "--kubeconfig, --node and --pod-iface-pattern take effect only with --kubernetes; add --kubernetes"
        );
    }
    let mut datapath = datapath;
    detect.write_kernel(&mut datapath);
    Ok(RunOptions {
        ifaces: if flags.ifaces.is_empty() { file.ifaces.unwrap_or(defaults.ifaces) } else { flags.ifaces },
        policy: if flags.policy.is_empty() { file.policy.unwrap_or(defaults.policy) } else { flags.policy },
        labels,
        xdp_mode,
        state_dir: flags.state_dir.or(file.state_dir).unwrap_or(defaults.state_dir),
        bpffs: flags.bpffs.or(file.bpffs).unwrap_or(defaults.bpffs),
        socket: flags.socket.or(file.socket).unwrap_or(defaults.socket),
        flow_log: flags.flow_log.or(file.flow_log),
        metrics,
        default_deny: match (flags.default_deny, &file.default_deny) {
            (Some(flag), _) => flag,
            (None, Some(value)) => default_deny(value, src)?,
            (None, None) => defaults.default_deny,
        },
        edges: edges_capacity(file.flows.as_ref(), src)?,
        no_pin: flags.no_pin || file.pin == Some(false),
        failsafe,
        datapath,
        flow_log_rotation: rotation(file.flow_log_rotation.as_ref(), src)?,
        remote: file.remote.as_ref().map(|r| remote(r, src)).transpose()?,
        detect,
        map_sizes,
        kubernetes,
    })
}

/// This node's name when `--node` is not given: `$NODE_NAME` (the DaemonSet sets it from
/// `spec.nodeName`), else the host name.
fn node_name() -> String {
    std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
    })
}

/// The `[remote]` table: every key but the role lists is required, and at least one
/// certificate name must have a role (else every client would be refused).
fn remote(table: &Spanned<Remote>, src: &Source<'_>) -> anyhow::Result<RemoteOptions> {
    let r = table.get_ref();
    let missing = |key: &str, what: &str| {
        src.error(table.span(), &format!("[remote] has no {key};"), format!("add {key} = {what}"))
    };
    let listen = r.listen.as_ref().ok_or_else(|| missing("listen", "\"ADDR:PORT\" (e.g. \"0.0.0.0:9465\")"))?;
    let listen_addr = listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        src.error(
            listen.span(),
            "remote.listen",
            format!("{:?} is not a listen address like 0.0.0.0:9465", listen.get_ref()),
        )
    })?;
    let roles =
        RoleMap { admins: r.admins.clone().unwrap_or_default(), readers: r.readers.clone().unwrap_or_default() };
    if roles.admins.is_empty() && roles.readers.is_empty() {
        return Err(src.error(
            table.span(),
            "[remote]",
            "gives no admins and no readers, so every client would be refused; list client certificate names in admins or readers",
        ));
    }
    Ok(RemoteOptions {
        listen: listen_addr,
        ca: r
            .ca
            .clone()
            .ok_or_else(|| missing("ca", "\"PATH\" (PEM bundle of the CA that signs client certificates)"))?,
        cert: r.cert.clone().ok_or_else(|| missing("cert", "\"PATH\" (PEM certificate of this agent)"))?,
        key: r.key.clone().ok_or_else(|| missing("key", "\"PATH\" (PEM private key of cert)"))?,
        roles,
    })
}

fn rotation(file: Option<&FlowLogRotation>, src: &Source<'_>) -> anyhow::Result<Rotation> {
    let mut r = Rotation::default();
    let Some(f) = file else { return Ok(r) };
    let limit =
        |v: &Option<Spanned<String>>, key: &str, parse: fn(&str) -> Result<u64, String>, into: &mut Option<u64>| {
            if let Some(v) = v {
                *into = match v.get_ref().as_str() {
                    "off" => None,
                    text => Some(parse(text).map_err(|e| src.error(v.span(), key, e))?),
                };
            }
            anyhow::Ok(())
        };
    limit(&f.max_file_size, "flow_log_rotation.max_file_size", bytes, &mut r.max_file_bytes)?;
    limit(&f.max_total_size, "flow_log_rotation.max_total_size", bytes, &mut r.max_total_bytes)?;
    let mut age = r.max_age.map(|d| d.as_secs());
    limit(&f.max_age, "flow_log_rotation.max_age", |t| seconds(t, false).map(u64::from), &mut age)?;
    r.max_age = age.map(Duration::from_secs);
    if let Some(n) = f.max_files {
        r.max_files = (n > 0).then_some(n);
    }
    Ok(r)
}

/// A size like `100MiB`, `10GiB`, `512KiB` or a plain number of bytes.
fn bytes(text: &str) -> Result<u64, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return Err(format!("{text:?} is not a size like 100MiB, 10GiB or a number of bytes")),
    };
    let n: u64 =
        number.parse().map_err(|_| format!("{text:?} is not a size like 100MiB, 10GiB or a number of bytes"))?;
    n.checked_shl(shift).filter(|v| v >> shift == n && *v > 0).ok_or_else(|| format!("{text:?} is out of range"))
}

/// `ADDR` or `none`.
fn parse_metrics(text: &str) -> Result<Option<String>, String> {
    if text == "none" {
        return Ok(None);
    }
    text.parse::<SocketAddr>()
        .map(|_| Some(text.to_string()))
        .map_err(|_| format!("{text:?} is not a listen address like {DEFAULT_METRICS}, or none"))
}

fn failsafe_rule(entry: &Spanned<FailsafeEntry>, src: &Source<'_>) -> anyhow::Result<FailsafeRule> {
    let e = entry.get_ref();
    let rule = FailsafeRule { direction: e.direction, protocol: e.protocol, port: e.port };
    match rule.problem() {
        Some(p) => Err(src.error(entry.span(), &format!("failsafe rule {rule}"), p)),
        None => Ok(rule),
    }
}

/// The CONFIG map's settings (generation 0: the agent sets it when it switches).
fn datapath_config(file: &ConfigFile, src: &Source<'_>) -> anyhow::Result<Config> {
    let mut cfg = Config::DEFAULT;
    if file.recheck_established == Some(false) {
        cfg.flags &= !FLAG_RECHECK_ESTABLISHED;
    }
    if let Some(ct) = &file.conntrack {
        let fields: [(&Option<Spanned<String>>, &str, &mut u32, bool); 7] = [
            (&ct.tcp_syn_timeout, "conntrack.tcp_syn_timeout", &mut cfg.tcp_syn_timeout_s, false),
            (
                &ct.tcp_established_timeout,
                "conntrack.tcp_established_timeout",
                &mut cfg.tcp_established_timeout_s,
                false,
            ),
            (&ct.tcp_closing_timeout, "conntrack.tcp_closing_timeout", &mut cfg.tcp_closing_timeout_s, false),
            (&ct.udp_timeout, "conntrack.udp_timeout", &mut cfg.udp_timeout_s, false),
            (&ct.icmp_timeout, "conntrack.icmp_timeout", &mut cfg.icmp_timeout_s, false),
            (&ct.other_timeout, "conntrack.other_timeout", &mut cfg.other_timeout_s, false),
            (&ct.flow_update_interval, "conntrack.flow_update_interval", &mut cfg.flow_update_interval_s, true),
        ];
        for (value, key, slot, zero_ok) in fields {
            if let Some(v) = value {
                *slot = seconds(v.get_ref(), zero_ok).map_err(|e| src.error(v.span(), key, e))?;
            }
        }
    }
    if let Some(d) = &file.deny_events {
        cfg.deny_events_per_sec = d.per_second.unwrap_or(cfg.deny_events_per_sec);
        cfg.deny_events_burst = d.burst.unwrap_or(cfg.deny_events_burst);
    }
    Ok(cfg)
}

/// A duration like `30s` or `6h` as whole seconds.
fn seconds(text: &str, zero_ok: bool) -> Result<u32, String> {
    let d: Duration =
        humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration like 30s, 5m or 6h ({e})"))?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{text:?} is not a whole number of seconds"));
    }
    if d.is_zero() && !zero_ok {
        return Err(format!("{text:?} must be at least 1s"));
    }
    u32::try_from(d.as_secs()).map_err(|_| format!("{text:?} is too long; use at most {}s", u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{DEFAULT_BPFFS, DEFAULT_SOCKET, DEFAULT_STATE_DIR};

    const EXAMPLE: &str = include_str!("../../deploy/zt-agent.toml");

    fn from_text(text: &str, flags: RunFlags) -> anyhow::Result<RunOptions> {
        let file = parse(Path::new("zt-agent.toml"), text)?;
        merge(flags, file, &Source { path: Path::new("zt-agent.toml"), text })
    }

    #[test]
    fn the_example_file_parses_and_states_every_default() {
        let opts = from_text(EXAMPLE, RunFlags::default()).expect("deploy/zt-agent.toml is valid");
        let d = RunOptions::default();
        assert_eq!(opts.state_dir, d.state_dir);
        assert_eq!(opts.bpffs, d.bpffs);
        assert_eq!(opts.socket, d.socket);
        assert_eq!(opts.metrics, d.metrics);
        assert_eq!(opts.default_deny, d.default_deny);
        assert_eq!(opts.edges, d.edges);
        assert_eq!(opts.no_pin, d.no_pin);
        assert_eq!(opts.xdp_mode, d.xdp_mode);
        assert_eq!(opts.failsafe, d.failsafe);
        assert_eq!(opts.datapath, d.datapath);
        assert_eq!(opts.detect, d.detect);
        assert_eq!(opts.remote, None, "the remote listener is off by default");
        assert_eq!(opts.kubernetes, None, "--kubernetes is off by default");
        assert!(
            EXAMPLE.contains(&format!("{:?}", crate::agent::DEFAULT_POD_IFACE_PATTERNS)),
            "the example states the patterns"
        );
        for default in [DEFAULT_STATE_DIR, DEFAULT_BPFFS, DEFAULT_SOCKET, DEFAULT_METRICS] {
            assert!(EXAMPLE.contains(default), "the example states {default}");
        }
    }

    #[test]
    fn detect_tables_set_their_detectors_and_reach_the_kernel_thresholds() {
        let text = "[detect]\ndry_run = true\nnever = [\"198.18.0.1\", \"fd00::/64\"]\nmax_ttl = \"1h\"\n\
                    [detect.port_scan]\nports = 20\nwindow = \"5s\"\nttl = \"2m\"\n\
                    [detect.sweep]\nenabled = false\n[detect.deny_spike]\nmin_rate = 500\nfactor = 4\n";
        let opts = from_text(text, RunFlags::default()).unwrap();
        let d = &opts.detect;
        assert!(d.dry_run);
        assert_eq!(d.never, ["198.18.0.1/32".parse().unwrap(), "fd00::/64".parse().unwrap()]);
        assert_eq!(d.max_ttl, Duration::from_secs(3600));
        assert_eq!(
            (d.port_scan.limit, d.port_scan.window, d.port_scan.response.ttl.as_secs()),
            (20, Duration::from_secs(5), 120)
        );
        assert!(!d.sweep.response.enabled);
        assert_eq!((opts.datapath.port_scan_ports, opts.datapath.port_scan_window_ms), (20, 5000));
        assert_eq!((opts.datapath.sweep_hosts, opts.datapath.sweep_window_ms), (0, 0), "a disabled detector is off");
        assert_eq!((opts.datapath.deny_spike_min, opts.datapath.deny_spike_factor), (500, 4));
    }

    #[test]
    fn bad_detect_values_name_the_key_the_line_and_the_fix() {
        let cases = [
            (
                "[detect.port_scan]\naction = \"block\"\n",
                "line 2: detect.port_scan.action \"block\" is not \"alert\" or \"quarantine\"",
            ),
            (
                "[detect.sweep]\nwindow = \"soon\"\n",
                "line 2: detect.sweep.window \"soon\" is not a duration like 10s, 5m or 24h",
            ),
            (
                "[detect]\nnever = [\"nobody\"]\n",
                "line 2: detect.never \"nobody\" is not an address or CIDR like 198.18.0.0/24",
            ),
            (
                "[detect.port_scan]\nports = 500\n",
                "[detect] is invalid: detect.port_scan.ports = 500 is out of range; use 1 to 64",
            ),
            ("[detect.sweep]\nports = 5\n", "unknown key `ports`"),
        ];
        for (text, expected) in cases {
            let err = from_text(text, RunFlags::default()).unwrap_err().to_string();
            assert!(err.starts_with("config file zt-agent.toml"), "{err}");
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn maps_sizes_are_set_by_key_and_bad_ones_name_the_key() {
        let opts = from_text("[maps]\nconntrack = 65536\nscan = 4096\n", RunFlags::default()).unwrap();
        assert_eq!(opts.map_sizes.entries(zt_common::map_names::CONNTRACK), 65536);
        assert_eq!(opts.map_sizes.entries(zt_common::map_names::SCAN), 4096);
        let err = from_text("[maps]\nconntrak = 65536\n", RunFlags::default()).unwrap_err().to_string();
        assert!(
            err.starts_with("config file zt-agent.toml, line 2: maps.conntrak is not a map that can be sized; use one of conntrack, half_open,"),
            "{err}"
        );
        let err = from_text("[maps]\nconntrack = 1\n", RunFlags::default()).unwrap_err().to_string();
        assert!(err.ends_with("maps.conntrack = 1 is out of range; use 64 to 16777216 entries"), "{err}");
    }

    #[test]
    fn the_kubernetes_configmap_holds_a_valid_config_for_the_cluster() {
        let cm: serde_norway::Value =
            serde_norway::from_str(include_str!("../../deploy/kubernetes/configmap.yaml")).unwrap();
        let text = cm["data"]["zt-agent.toml"].as_str().expect("data.zt-agent.toml");
        let opts = from_text(text, RunFlags::default()).unwrap();
        let k = opts.kubernetes.expect("kubernetes = true");
        assert_eq!(k.kubeconfig, None, "in-cluster: the service account");
        assert_eq!(k.pod_iface_patterns, ["lxc*", "cali*", "veth*"]);
        assert!(opts.ifaces.is_empty(), "the pod links are found, not listed");
        assert_eq!(opts.default_deny, DefaultDeny::Off, "default deny would isolate the node from its pods");
    }

    #[test]
    fn kubernetes_flags_without_kubernetes_are_refused_with_the_fix() {
        let flags = RunFlags { kubeconfig: Some("/k".into()), ..RunFlags::default() };
        let e = from_text("", flags).unwrap_err().to_string();
        assert_eq!(
            e,
            "--kubeconfig, --node and --pod-iface-pattern take effect only with --kubernetes; add --kubernetes"
        );
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let opts = from_text("", RunFlags::default()).unwrap();
        let d = RunOptions::default();
        assert_eq!((opts.bpffs, opts.failsafe, opts.datapath, opts.no_pin), (d.bpffs, d.failsafe, d.datapath, false));
    }

    #[test]
    fn flags_override_the_file_key_by_key() {
        let text = "ifaces = [\"eth0\"]\nbpffs = \"/sys/fs/bpf/a\"\nsocket = \"/run/a.sock\"\ndefault_deny = false\nmetrics = \"none\"\n";
        let flags = RunFlags {
            ifaces: vec!["eth1".into()],
            bpffs: Some("/sys/fs/bpf/b".into()),
            metrics: Some("127.0.0.1:1".into()),
            ..RunFlags::default()
        };
        let opts = from_text(text, flags).unwrap();
        assert_eq!(opts.ifaces, vec!["eth1".to_string()]);
        assert_eq!(opts.bpffs, PathBuf::from("/sys/fs/bpf/b"));
        assert_eq!(opts.socket, PathBuf::from("/run/a.sock"));
        assert_eq!(opts.default_deny, DefaultDeny::Off);
        assert_eq!(opts.metrics.as_deref(), Some("127.0.0.1:1"));
    }

    #[test]
    fn pin_false_in_the_file_or_no_pin_on_the_command_line_turns_pinning_off() {
        assert!(from_text("pin = false", RunFlags::default()).unwrap().no_pin);
        assert!(from_text("pin = true", RunFlags { no_pin: true, ..RunFlags::default() }).unwrap().no_pin);
        assert!(!from_text("pin = true", RunFlags::default()).unwrap().no_pin);
    }

    #[test]
    fn an_unknown_key_names_the_file_the_line_the_key_and_the_fix() {
        let err = from_text("ifaces = [\"eth0\"]\ndefualt_deny = true\n", RunFlags::default()).unwrap_err().to_string();
        assert!(err.starts_with("config file zt-agent.toml, line 2: unknown key `defualt_deny`"), "{err}");
        assert!(err.contains("remove the key or correct its spelling"), "{err}");
    }

    #[test]
    fn default_deny_is_true_false_or_audit_in_the_file_and_on_the_command_line() {
        for (text, want) in [
            ("default_deny = true\n", DefaultDeny::On),
            ("default_deny = false\n", DefaultDeny::Off),
            ("default_deny = \"audit\"\n", DefaultDeny::Audit),
        ] {
            assert_eq!(from_text(text, RunFlags::default()).unwrap().default_deny, want, "{text}");
        }
        let flags = RunFlags { default_deny: Some(DefaultDeny::Audit), ..RunFlags::default() };
        assert_eq!(from_text("default_deny = true\n", flags).unwrap().default_deny, DefaultDeny::Audit);
        let err = from_text("\ndefault_deny = \"learn\"\n", RunFlags::default()).unwrap_err().to_string();
        assert!(err.ends_with("line 2: default_deny \"learn\" is not one of true, false, \"audit\""), "{err}");
    }

    #[test]
    fn flows_edges_sizes_the_observed_edge_table_within_bounds() {
        assert_eq!(from_text("", RunFlags::default()).unwrap().edges, 100_000);
        assert_eq!(from_text("[flows]\nedges = 500\n", RunFlags::default()).unwrap().edges, 500);
        let err = from_text("[flows]\nedges = 20000000\n", RunFlags::default()).unwrap_err().to_string();
        assert!(err.ends_with("line 2: flows.edges = 20000000 is out of range; use 0 to 10000000 edges"), "{err}");
    }

    #[test]
    fn an_unknown_key_in_a_section_is_an_error_too() {
        let err = from_text("[conntrack]\nudp = \"5s\"\n", RunFlags::default()).unwrap_err().to_string();
        assert!(err.contains("line 2: unknown key `udp`"), "{err}");
    }

    #[test]
    fn timeouts_labels_and_recheck_go_to_their_settings() {
        let text = "recheck_established = false\nlabels = { app = \"web\", env = \"prod\" }\n[conntrack]\nudp_timeout = \"5m\"\nflow_update_interval = \"0s\"\n[deny_events]\nburst = 3\n";
        let opts = from_text(text, RunFlags::default()).unwrap();
        assert_eq!(opts.labels, "app=web,env=prod");
        assert_eq!(opts.datapath.flags & FLAG_RECHECK_ESTABLISHED, 0);
        assert_eq!(opts.datapath.udp_timeout_s, 300);
        assert_eq!(opts.datapath.flow_update_interval_s, 0);
        assert_eq!(opts.datapath.deny_events_burst, 3);
        assert_eq!(opts.datapath.deny_events_per_sec, Config::DEFAULT.deny_events_per_sec);
    }

    #[test]
    fn bad_values_are_rejected_with_their_key_and_line() {
        for (text, expected) in [
            ("\n[conntrack]\ntcp_syn_timeout = \"0s\"", "line 3: conntrack.tcp_syn_timeout \"0s\" must be at least 1s"),
            (
                "[conntrack]\nudp_timeout = \"1500ms\"",
                "line 2: conntrack.udp_timeout \"1500ms\" is not a whole number of seconds",
            ),
            ("xdp_mode = \"fast\"", "line 1: xdp_mode \"fast\" is not one of"),
            ("metrics = \"everywhere\"", "line 1: metrics \"everywhere\" is not a listen address"),
            ("labels = { \"\" = \"x\" }", "line 1: labels are invalid"),
        ] {
            let err = from_text(text, RunFlags::default()).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn failsafe_rules_replace_the_default_and_an_empty_list_means_none() {
        let text = "[[failsafe]]\ndirection = \"ingress\"\nprotocol = \"TCP\"\nport = 2222\n\n[[failsafe]]\ndirection = \"egress\"\nprotocol = \"ICMP\"\n";
        let opts = from_text(text, RunFlags::default()).unwrap();
        let shown: Vec<String> = opts.failsafe.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["ingress TCP 2222", "egress ICMP"]);
        assert!(from_text("failsafe = []", RunFlags::default()).unwrap().failsafe.is_empty());
        assert_eq!(from_text("", RunFlags::default()).unwrap().failsafe, vec![FailsafeRule::SSH]);
    }

    #[test]
    fn flow_log_rotation_limits_are_sizes_ages_and_counts_and_can_be_switched_off() {
        let text = "[flow_log_rotation]\nmax_file_size = \"1MiB\"\nmax_files = 0\nmax_age = \"7d\"\nmax_total_size = \"off\"\n";
        let r = from_text(text, RunFlags::default()).unwrap().flow_log_rotation;
        assert_eq!(r.max_file_bytes, Some(1 << 20));
        assert_eq!((r.max_files, r.max_total_bytes), (None, None));
        assert_eq!(r.max_age, Some(Duration::from_secs(7 * 86400)));
        let err =
            from_text("[flow_log_rotation]\nmax_file_size = \"big\"\n", RunFlags::default()).unwrap_err().to_string();
        assert!(err.contains("line 2: flow_log_rotation.max_file_size") && err.contains("100MiB"), "{err}");
    }

    #[test]
    fn a_failsafe_port_on_icmp_is_rejected() {
        let text = "[[failsafe]]\ndirection = \"ingress\"\nprotocol = \"ICMP\"\nport = 8\n";
        let err = from_text(text, RunFlags::default()).unwrap_err().to_string();
        assert!(err.contains("line 1: failsafe rule ingress ICMP 8 gives a port"), "{err}");
    }

    #[test]
    fn the_remote_table_gives_the_listener_and_its_roles() {
        assert_eq!(from_text("", RunFlags::default()).unwrap().remote, None, "no table, no listener");
        let text = "[remote]\nlisten = \"127.0.0.1:9465\"\nca = \"/etc/zt/ca.pem\"\ncert = \"/etc/zt/agent.pem\"\nkey = \"/etc/zt/agent.key\"\nadmins = [\"ops\"]\nreaders = [\"audit\", \"grafana\"]\n";
        let remote = from_text(text, RunFlags::default()).unwrap().remote.expect("[remote] is given");
        assert_eq!(remote.listen, "127.0.0.1:9465".parse().unwrap());
        assert_eq!((remote.ca, remote.key), (PathBuf::from("/etc/zt/ca.pem"), PathBuf::from("/etc/zt/agent.key")));
        assert_eq!(remote.roles.admins, ["ops"]);
        assert_eq!(remote.roles.readers, ["audit", "grafana"]);
        // The example's commented-out table is valid once uncommented.
        let example = &EXAMPLE[EXAMPLE.find("# [remote]").expect("the example shows [remote]")..];
        let example: String = example.lines().map(|l| format!("{}\n", l.trim_start_matches("# "))).collect();
        let remote = from_text(&example, RunFlags::default()).unwrap().remote.expect("[remote] is given");
        assert_eq!((remote.listen.port(), remote.roles.admins.len()), (9465, 1));
    }

    #[test]
    fn a_bad_remote_table_names_the_line_the_key_and_the_fix() {
        let full = "ca = \"c\"\ncert = \"s\"\nkey = \"k\"\nadmins = [\"ops\"]\n";
        for (text, expected) in [
            (
                format!("\n[remote]\nlisten = \"anywhere\"\n{full}"),
                "line 3: remote.listen \"anywhere\" is not a listen address like 0.0.0.0:9465",
            ),
            (
                "[remote]\nca = \"c\"\nadmins = [\"ops\"]\n".to_string(),
                "line 1: [remote] has no listen; add listen = \"ADDR:PORT\"",
            ),
            (
                "[remote]\nlisten = \"127.0.0.1:1\"\nca = \"c\"\nadmins = [\"ops\"]\n".to_string(),
                "[remote] has no cert; add cert = ",
            ),
            (
                "[remote]\nlisten = \"127.0.0.1:1\"\nca = \"c\"\ncert = \"s\"\nkey = \"k\"\n".to_string(),
                "[remote] gives no admins and no readers",
            ),
            (format!("[remote]\nlisten = \"127.0.0.1:1\"\n{full}role = \"x\"\n"), "line 7: unknown key `role`"),
        ] {
            let err = from_text(&text, RunFlags::default()).unwrap_err().to_string();
            assert!(err.starts_with("config file zt-agent.toml, line") && err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_missing_config_file_names_the_path_and_the_flag() {
        let flags = RunFlags { config: Some("/nonexistent/zt.toml".into()), ..RunFlags::default() };
        let err = resolve(flags).unwrap_err().to_string();
        assert!(err.contains("cannot read the config file /nonexistent/zt.toml") && err.contains("--config"), "{err}");
    }
}
