//! Options of `zt-agent run`, with their documented defaults. [`crate::config`] fills them
//! from the command line and the configuration file.

use std::{net::SocketAddr, path::PathBuf};

use zt_common::config::Config;

use crate::{
    datapath::{LinkLifetime, MapSizes, XdpModeChoice},
    detect::DetectSettings,
    policy::{CompileSettings, FailsafeRule},
};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/zt";
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/zt";
pub const DEFAULT_SOCKET: &str = zt_api::DEFAULT_SOCKET;
pub const DEFAULT_METRICS: &str = "127.0.0.1:9464";

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Interfaces to enforce on (at least one).
    pub ifaces: Vec<String>,
    /// Policy files or directories applied at start.
    pub policy: Vec<PathBuf>,
    /// This host's labels, `k=v,k2=v2`.
    pub labels: String,
    pub xdp_mode: XdpModeChoice,
    pub state_dir: PathBuf,
    /// Directory for pins; must be on a bpffs mount (mounted at /sys/fs/bpf if needed).
    pub bpffs: PathBuf,
    /// Flow log target: a path or `-` for standard output; `None` = no flow log.
    pub flow_log: Option<String>,
    /// Isolate every local identity even without a selecting policy (zero trust); never
    /// Kubernetes pods, which only selecting policies isolate.
    pub default_deny: crate::policy::DefaultDeny,
    /// Observed edges kept at most (`[flows] edges`); beyond, new edges are counted as dropped.
    pub edges: usize,
    /// The local API socket (`ztctl`).
    pub socket: PathBuf,
    /// Prometheus metrics listen address; `None` = off (`--metrics none`).
    pub metrics: Option<String>,
    /// Do not pin links: enforcement stops when the agent exits, and exit removes all pins.
    pub no_pin: bool,
    /// Traffic of this host that no policy can stop (default: inbound TCP 22).
    pub failsafe: Vec<FailsafeRule>,
    /// Conntrack timeouts, flags and the deny-event budget for the CONFIG map; the agent
    /// sets the generation.
    pub datapath: Config,
    /// Flow-log rotation and retention limits.
    pub flow_log_rotation: crate::flows::rotate::Rotation,
    /// The remote API listener (mutual TLS); `None` = local socket only.
    pub remote: Option<RemoteOptions>,
    /// The detectors and their responses (`[detect]`); their kernel thresholds go into
    /// CONFIG at start.
    pub detect: DetectSettings,
    /// Entries of the maps the operator sized (`[maps]`); the others keep their defaults.
    pub map_sizes: MapSizes,
    /// `--kubernetes`: watch an API server for pods, namespaces and policies; `None` = off.
    pub kubernetes: Option<KubernetesOptions>,
}

/// The default names of the host side of pods' veths: Cilium's, Calico's and the generic
/// ones of bridge and ptp plugins.
pub const DEFAULT_POD_IFACE_PATTERNS: [&str; 3] = ["lxc*", "cali*", "veth*"];

/// `zt-agent run --kubernetes`: where the API server is, which node this is, and which
/// interfaces are pods'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesOptions {
    /// `--kubeconfig`; `None` = in-cluster (the pod's service account).
    pub kubeconfig: Option<PathBuf>,
    /// This node's name (`--node`, else `$NODE_NAME`, else the host name); shown in the
    /// ready line and the logs.
    pub node: String,
    /// Glob patterns (`*`, `?`) of the host-side pod interfaces attached by themselves
    /// when no `--iface` is given.
    pub pod_iface_patterns: Vec<String>,
}

impl RunOptions {
    /// How long the attachments live: pinned (fail-static) unless `--no-pin`.
    pub fn link_lifetime(&self) -> LinkLifetime {
        if self.no_pin { LinkLifetime::Process } else { LinkLifetime::Pinned }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        let detect = DetectSettings::default();
        // The compile defaults are zt-policy's, which ztctl's offline commands default to.
        let compile = CompileSettings::default();
        let mut datapath = Config::DEFAULT;
        detect.write_kernel(&mut datapath);
        RunOptions {
            ifaces: vec![],
            policy: vec![],
            labels: String::new(),
            xdp_mode: XdpModeChoice::Auto,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            bpffs: PathBuf::from(DEFAULT_BPFFS),
            flow_log: None,
            default_deny: compile.default_deny,
            edges: crate::flows::edges::DEFAULT_CAPACITY,
            socket: PathBuf::from(DEFAULT_SOCKET),
            metrics: Some(DEFAULT_METRICS.to_string()),
            no_pin: false,
            failsafe: compile.failsafe,
            datapath,
            flow_log_rotation: crate::flows::rotate::Rotation::default(),
            remote: None,
            detect,
            map_sizes: MapSizes::default(),
            kubernetes: None,
        }
    }
}

/// The `[remote]` table of the configuration file: the API listener over mutual TLS that
/// `api::remote` serves. Plain settings, so the options need nothing from the API layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOptions {
    pub listen: SocketAddr,
    /// PEM bundle of the CA(s) that sign client certificates.
    pub ca: PathBuf,
    /// PEM certificate chain and private key the agent presents.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub roles: RoleMap,
}

/// The `[remote]` table's name lists: which client certificate names are admins and which
/// readers (`api::role` decides what each role may ask).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleMap {
    pub admins: Vec<String>,
    pub readers: Vec<String>,
}
