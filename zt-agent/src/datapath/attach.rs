//! Attaching the programs to interfaces: XDP on ingress where possible (native, else
//! generic), TC ingress as the fallback, and TC egress always (egress policy and conntrack
//! entries for outbound flows). TC uses TCX links on kernels that have them.
//!
//! Links an earlier agent pinned (see [`super::pins`]) are adopted before anything new is
//! attached, so a restart replaces the programs without a moment of no enforcement; a
//! pinned hook the requested mode no longer uses is detached only after its successor
//! enforces (except between two XDP modes, which an interface cannot hold at once).

use std::fmt;

use aya::programs::{
    TcAttachType, XdpMode,
    links::{FdLink, PinnedLink},
    tc::SchedClassifierLink,
    xdp::XdpLink,
};

use super::{
    Datapath, DatapathError,
    pins::{LinkHook, LinkLifetime, LinkPins},
};

/// How the operator asked ingress to be attached (`--xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpModeChoice {
    /// By the kind of link (see [`super::link_kind`]): TC ingress on virtual links, native
    /// XDP (else generic XDP, else TC ingress) on NICs.
    #[default]
    Auto,
    /// Native (driver) XDP or fail.
    Native,
    /// Generic (skb) XDP or fail.
    Generic,
    /// No XDP: TC ingress.
    Off,
}

impl std::str::FromStr for XdpModeChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "generic" => Ok(Self::Generic),
            "off" => Ok(Self::Off),
            other => Err(format!("--xdp-mode {other} is not one of native, generic, off")),
        }
    }
}

/// The ingress hook an interface ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IngressHook {
    XdpNative,
    XdpGeneric,
    Tc,
}

impl fmt::Display for IngressHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IngressHook::XdpNative => "xdp-native",
            IngressHook::XdpGeneric => "xdp-generic",
            IngressHook::Tc => "tc",
        })
    }
}

/// One interface the programs are attached to.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attachment {
    pub iface: String,
    pub ifindex: u32,
    pub ingress: IngressHook,
    /// Why this ingress hook: the `--xdp-mode` asked for, or what `auto` found the link to be.
    pub why: String,
}

/// The interface index of `iface` in this network namespace.
pub fn ifindex_of(iface: &str) -> Result<u32, DatapathError> {
    let name = std::ffi::CString::new(iface).map_err(|_| DatapathError::NoSuchInterface { iface: iface.into() })?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(DatapathError::NoSuchInterface { iface: iface.into() });
    }
    Ok(idx)
}

impl XdpModeChoice {
    /// The ingress hooks this choice accepts on `iface`, most preferred first, and why.
    fn attempts(self, iface: &str) -> (&'static [IngressHook], String) {
        const NIC: &[IngressHook] = &[IngressHook::XdpNative, IngressHook::XdpGeneric, IngressHook::Tc];
        match self {
            XdpModeChoice::Auto => match super::link_kind(iface) {
                Ok(kind @ super::LinkKind::Virtual { .. }) => (
                    &[IngressHook::Tc],
                    format!("{kind}, where XDP would cost bulk TCP throughput; --xdp-mode native overrides"),
                ),
                Ok(kind @ super::LinkKind::Nic { .. }) => (NIC, format!("{kind}")),
                Err(e) => (NIC, format!("link kind unknown ({e})")),
            },
            XdpModeChoice::Native => (&[IngressHook::XdpNative], "--xdp-mode native".into()),
            XdpModeChoice::Generic => (&[IngressHook::XdpGeneric], "--xdp-mode generic".into()),
            XdpModeChoice::Off => (&[IngressHook::Tc], "--xdp-mode off".into()),
        }
    }
}

impl IngressHook {
    fn is_xdp(self) -> bool {
        matches!(self, IngressHook::XdpNative | IngressHook::XdpGeneric)
    }
}

impl Datapath {
    /// Chooses how long the attachments live and finds the link pins an earlier agent left
    /// for `ifaces`; pins of other interfaces are detached now. Call before [`Self::attach`].
    pub fn prepare_links(&mut self, lifetime: LinkLifetime, ifaces: &[String]) -> Result<(), DatapathError> {
        let wanted = ifaces.iter().map(|i| ifindex_of(i)).collect::<Result<Vec<_>, DatapathError>>()?;
        self.links = LinkPins::new(&self.pin_dir, lifetime);
        self.links.scan(&wanted).map_err(|e| {
            DatapathError::Other(format!("cannot read the link pins in {}: {e}", self.links.dir().display()))
        })
    }

    /// Attaches ingress (per `mode`) and egress enforcement to `iface`, adopting the links an
    /// earlier agent pinned there so the interface is never without a program.
    pub fn attach(&mut self, iface: &str, mode: XdpModeChoice) -> Result<Attachment, DatapathError> {
        let ifindex = ifindex_of(iface)?;
        let (attempts, why) = mode.attempts(iface);
        let ingress = self.attach_ingress(iface, ifindex, attempts)?;
        if !self.adopt(iface, ifindex, LinkHook::Egress) {
            self.attach_new(iface, ifindex, LinkHook::Egress)?;
        }
        Ok(Attachment { iface: iface.into(), ifindex, ingress, why })
    }

    /// Lets go of interface `ifindex`, which went away (a pod's veth deleted with its
    /// pod): the kernel detached its programs already; this closes and unpins the links.
    pub fn detach_gone(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        self.links
            .release(ifindex)
            .map_err(|e| DatapathError::Other(format!("cannot remove the link pins of interface {ifindex}: {e}")))
    }

    fn attach_ingress(
        &mut self,
        iface: &str,
        ifindex: u32,
        attempts: &[IngressHook],
    ) -> Result<IngressHook, DatapathError> {
        let found: Vec<LinkHook> = self.links.found(ifindex).collect();
        // A pinned hook the mode accepts is kept: adopting swaps the program without a gap.
        let mut chosen = None;
        for &hook in attempts {
            if found.contains(&LinkHook::Ingress(hook)) && self.adopt(iface, ifindex, LinkHook::Ingress(hook)) {
                chosen = Some(hook);
                break;
            }
        }
        let hook = match chosen {
            Some(hook) => hook,
            None => self.attach_ingress_new(iface, ifindex, attempts)?,
        };
        // Pins of hooks the mode no longer uses go only now, after the new hook enforces.
        for stale in self.links.found(ifindex).filter(|h| *h != LinkHook::Egress).collect::<Vec<_>>() {
            log::warn!("{iface}: detaching the pinned {} ingress link; ingress now uses {hook}", stale.name());
            self.discard(iface, ifindex, stale)?;
        }
        Ok(hook)
    }

    fn attach_ingress_new(
        &mut self,
        iface: &str,
        ifindex: u32,
        attempts: &[IngressHook],
    ) -> Result<IngressHook, DatapathError> {
        let mut last = None;
        for &hook in attempts {
            if hook.is_xdp() {
                // An interface has one XDP program in one mode: a pinned link in the other
                // mode must go first, which leaves ingress open until the new link is made.
                for other in [IngressHook::XdpNative, IngressHook::XdpGeneric] {
                    if other != hook && self.links.found(ifindex).any(|h| h == LinkHook::Ingress(other)) {
                        log::warn!("{iface}: XDP mode changes from {other} to {hook}; ingress is briefly unenforced");
                        self.discard(iface, ifindex, LinkHook::Ingress(other))?;
                    }
                }
            }
            match self.attach_new(iface, ifindex, LinkHook::Ingress(hook)) {
                Ok(()) => return Ok(hook),
                // Only a hook the kernel refuses moves on to the next; failing to pin is final.
                Err(e @ DatapathError::Attach { .. }) => {
                    log::info!("{iface}: {hook} ingress unavailable ({e}); trying the next hook");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn discard(&mut self, iface: &str, ifindex: u32, hook: LinkHook) -> Result<(), DatapathError> {
        self.links
            .discard(ifindex, hook)
            .map_err(|e| DatapathError::Other(format!("cannot remove the pinned {} link of {iface}: {e}", hook.name())))
    }

    /// Moves the pinned link of `hook` on `iface` to this agent's program. False (with the
    /// stale pin removed) when there is none or it cannot be adopted, e.g. because its
    /// interface went away.
    fn adopt(&mut self, iface: &str, ifindex: u32, hook: LinkHook) -> bool {
        if !self.links.take(ifindex, hook) {
            return false;
        }
        let path = self.links.path(ifindex, hook);
        match self.replace_program(hook, &path) {
            Ok(link) => match self.links.keep(link, path, true) {
                Ok(()) => {
                    log::info!("{iface}: adopted the pinned {} link", hook.name());
                    true
                }
                Err(e) => {
                    log::warn!("{iface}: {e}");
                    true
                }
            },
            Err(e) => {
                log::warn!("{iface}: cannot adopt the pinned {} link ({e}); attaching anew", hook.name());
                let _ = std::fs::remove_file(&path);
                false
            }
        }
    }

    /// Swaps this agent's program into the pinned link at `path` (`bpf_link_update`).
    fn replace_program(&mut self, hook: LinkHook, path: &std::path::Path) -> Result<FdLink, String> {
        let link: FdLink = PinnedLink::from_pin(path).map_err(|e| e.to_string())?.into();
        match hook {
            LinkHook::Ingress(IngressHook::XdpNative | IngressHook::XdpGeneric) => {
                let link = XdpLink::try_from(link).map_err(|e| format!("not an XDP link: {e}"))?;
                let prog = self.xdp_ingress().map_err(|e| e.to_string())?;
                let id = prog.attach_to_link(link).map_err(|e| e.to_string())?;
                FdLink::try_from(prog.take_link(id).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
            }
            LinkHook::Ingress(IngressHook::Tc) | LinkHook::Egress => {
                let link = SchedClassifierLink::try_from(link).map_err(|e| format!("not a TCX link: {e}"))?;
                let prog = if hook == LinkHook::Egress { self.tc_egress() } else { self.tc_ingress() }
                    .map_err(|e| e.to_string())?;
                let id = prog.attach_to_link(link).map_err(|e| e.to_string())?;
                FdLink::try_from(prog.take_link(id).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
            }
        }
    }

    /// Makes a new attachment; pins it when links outlive the agent.
    fn attach_new(&mut self, iface: &str, ifindex: u32, hook: LinkHook) -> Result<(), DatapathError> {
        let err = |mode: &'static str, program: &'static str| {
            let iface = iface.to_string();
            move |source: aya::programs::ProgramError| DatapathError::Attach {
                program,
                iface,
                mode,
                source: Box::new(source),
            }
        };
        use zt_common::program_names::{TC_EGRESS, TC_INGRESS, XDP_INGRESS};
        let pinned = self.links.lifetime() == LinkLifetime::Pinned;
        let link: Option<FdLink> = match hook {
            LinkHook::Ingress(h @ (IngressHook::XdpNative | IngressHook::XdpGeneric)) => {
                let (mode, name) = if h == IngressHook::XdpNative {
                    (XdpMode::Driver, "xdp native")
                } else {
                    (XdpMode::Skb, "xdp generic")
                };
                let prog = self.xdp_ingress()?;
                let id = prog.attach(iface, mode).map_err(err(name, XDP_INGRESS))?;
                if pinned {
                    let link = prog.take_link(id).map_err(err(name, XDP_INGRESS))?;
                    Some(FdLink::try_from(link).map_err(|_| not_pinnable(iface, "XDP"))?)
                } else {
                    None
                }
            }
            LinkHook::Ingress(IngressHook::Tc) | LinkHook::Egress => {
                let (attach, name, program, prog) = if hook == LinkHook::Egress {
                    (TcAttachType::Egress, "tc egress", TC_EGRESS, self.tc_egress()?)
                } else {
                    (TcAttachType::Ingress, "tc ingress", TC_INGRESS, self.tc_ingress()?)
                };
                let id = prog.attach(iface, attach).map_err(err(name, program))?;
                if pinned {
                    let link = prog.take_link(id).map_err(err(name, program))?;
                    Some(FdLink::try_from(link).map_err(|_| not_pinnable(iface, "TC"))?)
                } else {
                    None
                }
            }
        };
        if let Some(link) = link {
            let path = self.links.path(ifindex, hook);
            self.links.keep(link, path, false)?;
        }
        Ok(())
    }
}

/// Kernels without bpf links for XDP (before 5.9) or TCX (before 6.6) attach through
/// netlink, which cannot be pinned.
fn not_pinnable(iface: &str, what: &str) -> DatapathError {
    DatapathError::Other(format!(
        "cannot pin the {what} attachment of {iface}: this kernel attaches it without a bpf link; run with --no-pin (enforcement then stops when the agent exits)"
    ))
}
