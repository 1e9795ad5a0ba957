//! Compile settings: what the agent's configuration adds to a push (default deny, host
//! labels, failsafe rules).

use std::fmt;
use std::net::IpAddr;

use super::PortMatch;
use crate::identity::Labels;
use crate::policy::error::CompileError;
use crate::policy::model::{Direction, Protocol};

/// Agent settings that shape compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileSettings {
    /// Isolate every local identity in both directions, whether or not a policy selects it
    /// (zero trust; the native-mode default), or only report what that would drop (audit).
    pub default_deny: DefaultDeny,
    /// Traffic to or from this host that is always allowed, whatever the policy says.
    pub failsafe: Vec<FailsafeRule>,
    /// The operator's labels for this host (`--labels`); `reserved:host` is added.
    pub host_labels: Labels,
    /// This host's addresses. The agent maps them to `host` in the ipcache itself; given
    /// here, they let CIDR peers that contain them match the host, and keep policy prefixes
    /// equal to one of them from getting a CIDR identity the agent would shadow anyway.
    pub host_addresses: Vec<IpAddr>,
}

impl Default for CompileSettings {
    fn default() -> Self {
        Self {
            default_deny: DefaultDeny::On,
            failsafe: vec![FailsafeRule::SSH],
            host_labels: Labels::new(),
            host_addresses: Vec::new(),
        }
    }
}

/// Default deny: off, on, or audit-only — isolation whose would-be drops pass with verdict
/// `audit` and reason `default-deny`, so a fresh host can learn its traffic (and `ztctl
/// policy suggest` write its policy) without a hole in a policy that is enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DefaultDeny {
    Off,
    Audit,
    #[default]
    On,
}

impl DefaultDeny {
    /// Whether default deny isolates local identities at all (on or audit).
    pub fn isolates(self) -> bool {
        self != DefaultDeny::Off
    }

    /// Whether its isolation drops (on), rather than only reporting (audit).
    pub fn enforces(self) -> bool {
        self == DefaultDeny::On
    }

    /// How the configuration spells it: `true`, `false` or `audit`.
    pub fn name(self) -> &'static str {
        match self {
            DefaultDeny::Off => "false",
            DefaultDeny::Audit => "audit",
            DefaultDeny::On => "true",
        }
    }
}

impl From<bool> for DefaultDeny {
    fn from(on: bool) -> Self {
        if on { DefaultDeny::On } else { DefaultDeny::Off }
    }
}

impl std::str::FromStr for DefaultDeny {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "true" => Ok(DefaultDeny::On),
            "false" => Ok(DefaultDeny::Off),
            "audit" => Ok(DefaultDeny::Audit),
            other => Err(format!("{other:?} is not one of true, false, audit")),
        }
    }
}

impl fmt::Display for DefaultDeny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Traffic of the host that no policy can remove, so an operator cannot lock themselves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FailsafeRule {
    pub direction: Direction,
    pub protocol: Protocol,
    /// `None`: every port of the protocol (the only choice for ICMP).
    pub port: Option<u16>,
}

impl FailsafeRule {
    /// The default: inbound SSH from anywhere.
    pub const SSH: FailsafeRule =
        FailsafeRule { direction: Direction::Ingress, protocol: Protocol::Tcp, port: Some(22) };

    pub(super) fn port_match(&self) -> PortMatch {
        match self.port {
            Some(port) => PortMatch::Range { proto: self.protocol.number(), start: port, end: port },
            None => PortMatch::Protocol(self.protocol.number()),
        }
    }

    /// What is wrong with this rule, as the end of a sentence that starts with the rule
    /// (the config file and the compiler both report it, each with its own location).
    pub fn problem(&self) -> Option<&'static str> {
        match self.port {
            Some(_) if !self.protocol.has_ports() => {
                Some("gives a port, but only TCP, UDP and SCTP have ports; remove the port")
            }
            Some(0) => Some("has port 0; use a port in 1-65535"),
            _ => None,
        }
    }

    pub(super) fn validate(&self) -> Result<(), CompileError> {
        match self.problem() {
            None => Ok(()),
            Some(reason) => Err(CompileError::InvalidFailsafe { rule: self.to_string(), reason }),
        }
    }
}

/// `ingress TCP 22`, `ingress ICMP`: how start-up reports the failsafe rules.
impl fmt::Display for FailsafeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.direction, self.protocol)?;
        match self.port {
            Some(port) => write!(f, " {port}"),
            None => Ok(()),
        }
    }
}

/// `ingress:tcp:22`, `egress:icmp`: a failsafe rule as a command line writes it (ztctl's
/// offline `--failsafe`); the agent's configuration file states the same three fields as a
/// `[[failsafe]]` table.
impl std::str::FromStr for FailsafeRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let usage = || format!("failsafe rule {text:?} is not DIRECTION:PROTOCOL[:PORT]; write e.g. ingress:tcp:22");
        let (direction, protocol, port) = match parts.as_slice() {
            [d, p] => (d, p, None),
            [d, p, port] => (d, p, Some(port.parse::<u16>().map_err(|_| usage())?)),
            _ => return Err(usage()),
        };
        let direction = match direction.to_ascii_lowercase().as_str() {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            _ => return Err(format!("failsafe rule {text:?}: {direction} is not ingress or egress")),
        };
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            "icmp" => Protocol::Icmp,
            "icmpv6" => Protocol::IcmpV6,
            _ => return Err(format!("failsafe rule {text:?}: {protocol} is not one of tcp, udp, sctp, icmp, icmpv6")),
        };
        let rule = FailsafeRule { direction, protocol, port };
        match rule.problem() {
            Some(problem) => Err(format!("failsafe rule {rule} {problem}")),
            None => Ok(rule),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failsafe_rule_reads_from_its_command_line_form() {
        assert_eq!("ingress:tcp:22".parse::<FailsafeRule>(), Ok(FailsafeRule::SSH));
        let icmp: FailsafeRule = "Egress:ICMP".parse().unwrap();
        assert_eq!((icmp.direction, icmp.protocol, icmp.port), (Direction::Egress, Protocol::Icmp, None));
        assert_eq!(
            "ingress:icmp:8".parse::<FailsafeRule>().unwrap_err(),
            "failsafe rule ingress ICMP 8 gives a port, but only TCP, UDP and SCTP have ports; remove the port"
        );
        assert!("ingress:tcp:x".parse::<FailsafeRule>().unwrap_err().contains("write e.g. ingress:tcp:22"));
        assert!("up:tcp".parse::<FailsafeRule>().unwrap_err().contains("up is not ingress or egress"));
        assert!("ingress:gre".parse::<FailsafeRule>().unwrap_err().contains("gre is not one of"));
    }
}
