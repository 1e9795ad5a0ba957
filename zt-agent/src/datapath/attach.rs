//! Attaching the programs to interfaces: XDP on ingress where possible (native, else
//! generic), TC ingress as the fallback, and TC egress always (egress policy and conntrack
//! entries for outbound flows). TC uses TCX links on kernels that have them.

use std::fmt;

use aya::programs::{TcAttachType, XdpMode};

use super::{Datapath, DatapathError};

/// How the operator asked ingress to be attached (`--xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpModeChoice {
    /// Native XDP, else generic XDP, else TC ingress.
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

impl Datapath {
    /// Attaches ingress (per `mode`) and egress enforcement to `iface`.
    pub fn attach(&mut self, iface: &str, mode: XdpModeChoice) -> Result<Attachment, DatapathError> {
        let ifindex = ifindex_of(iface)?;
        let ingress = self.attach_ingress(iface, mode)?;
        let egress = self.tc_egress()?;
        egress.attach(iface, TcAttachType::Egress).map_err(|source| DatapathError::Attach {
            program: zt_common::program_names::TC_EGRESS,
            iface: iface.into(),
            mode: "tc egress",
            source,
        })?;
        Ok(Attachment { iface: iface.into(), ifindex, ingress })
    }

    fn attach_ingress(&mut self, iface: &str, mode: XdpModeChoice) -> Result<IngressHook, DatapathError> {
        let attempts: &[IngressHook] = match mode {
            XdpModeChoice::Auto => &[IngressHook::XdpNative, IngressHook::XdpGeneric, IngressHook::Tc],
            XdpModeChoice::Native => &[IngressHook::XdpNative],
            XdpModeChoice::Generic => &[IngressHook::XdpGeneric],
            XdpModeChoice::Off => &[IngressHook::Tc],
        };
        let mut last = None;
        for &hook in attempts {
            match self.attach_ingress_hook(iface, hook) {
                Ok(()) => return Ok(hook),
                Err(e) => {
                    log::info!("{iface}: {hook} ingress unavailable ({e}); trying the next hook");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn attach_ingress_hook(&mut self, iface: &str, hook: IngressHook) -> Result<(), DatapathError> {
        let err = |mode: &'static str, program: &'static str| {
            let iface = iface.to_string();
            move |source| DatapathError::Attach { program, iface, mode, source }
        };
        use zt_common::program_names::{TC_INGRESS, XDP_INGRESS};
        match hook {
            IngressHook::XdpNative => {
                self.xdp_ingress()?.attach(iface, XdpMode::Driver).map_err(err("xdp native", XDP_INGRESS))?;
            }
            IngressHook::XdpGeneric => {
                self.xdp_ingress()?.attach(iface, XdpMode::Skb).map_err(err("xdp generic", XDP_INGRESS))?;
            }
            IngressHook::Tc => {
                self.tc_ingress()?.attach(iface, TcAttachType::Ingress).map_err(err("tc ingress", TC_INGRESS))?;
            }
        }
        Ok(())
    }
}
