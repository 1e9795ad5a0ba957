//! Errors a policy push can fail with.
//!
//! A user sees these directly (`ztctl policy apply` prints them), so each one displays as a
//! single sentence that names the file, the document (1-based), the field path and the fix:
//! `policy db.yaml, document 2: spec.ingress[0].ports[1].port 70000 is out of range 1-65535`.
//! Parsing and validation collect every error of a push ([`PolicyError`]); compilation of a
//! valid push can only fail on size limits or bad agent settings ([`CompileError`]).

use std::io;

use ipnet::IpNet;

use zt_api::text::one_line;

use super::model::{Direction, Origin, Protocol};
use crate::identity::{AllocatorError, LabelError};

/// Why an input file or document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {path}: cannot read it ({error}); check that it exists and is readable")]
    Read {
        path: String,
        #[source]
        error: io::Error,
    },

    #[error("policy {path}: the directory has no *.yaml or *.yml files; pass a directory that holds policy files")]
    NoPolicyFiles { path: String },

    /// The YAML itself is malformed; the rest of that source is not read, because the YAML
    /// stream cannot be resynchronised after a syntax error.
    #[error("{origin}: invalid YAML{}: {problem}", at_line(*line, *column))]
    Syntax { origin: Origin, line: Option<usize>, column: Option<usize>, problem: String },

    #[error("{origin}: the document is not a mapping; write apiVersion, kind, metadata and spec")]
    NotAMapping { origin: Origin },

    #[error("{origin}: apiVersion is missing; add apiVersion: zt/v1")]
    MissingApiVersion { origin: Origin },

    #[error("{origin}: kind is missing; add kind: Endpoint or kind: Policy")]
    MissingKind { origin: Origin },

    #[error(
        "{origin}: apiVersion {api_version} is unknown; use apiVersion: zt/v1, or v1 and \
         networking.k8s.io/v1 for Kubernetes objects"
    )]
    UnknownApiVersion { origin: Origin, api_version: String },

    #[error("{origin}: kind {kind} is not a zt/v1 kind; use Endpoint or Policy")]
    UnknownKind { origin: Origin, kind: String },

    /// The document does not fit the schema (unknown field, wrong type, missing field); the
    /// message is serde's, which names the field path and what was expected.
    #[error("{origin}: {message}{}", line_in_parens(*line, *column))]
    Schema { origin: Origin, message: String, line: Option<usize>, column: Option<usize> },

    /// A field has a value the model does not accept.
    #[error("{origin}: {path} {problem}")]
    Invalid { origin: Origin, path: String, problem: Problem },
}

impl PolicyError {
    /// The document the error is about; `None` for a path that cannot be read as policy.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            PolicyError::Read { .. } | PolicyError::NoPolicyFiles { .. } => None,
            PolicyError::Syntax { origin, .. }
            | PolicyError::NotAMapping { origin }
            | PolicyError::MissingApiVersion { origin }
            | PolicyError::MissingKind { origin }
            | PolicyError::UnknownApiVersion { origin, .. }
            | PolicyError::UnknownKind { origin, .. }
            | PolicyError::Schema { origin, .. }
            | PolicyError::Invalid { origin, .. } => Some(origin),
        }
    }
}

/// ` at line 3, column 5`, or nothing when the position is unknown.
fn at_line(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        _ => String::new(),
    }
}

/// ` (line 3, column 5)`, or nothing when the position is unknown.
fn line_in_parens(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" (line {line}, column {column})"),
        _ => String::new(),
    }
}

/// What is wrong with one field; displayed after the field path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{value} is out of range 1-65535")]
    PortOutOfRange { value: i64 },

    #[error("{end_port} is less than port {port}; make endPort at least {port}")]
    EndPortBelowPort { port: u16, end_port: u16 },

    #[error("is given without port; put the first port of the range in port")]
    EndPortWithoutPort,

    #[error("is not allowed for {protocol}; only TCP, UDP and SCTP have ports, so remove it")]
    PortNotAllowed { protocol: Protocol },

    #[error("{value:?} is not an IP address or CIDR; write e.g. 10.0.1.5, fd00::5 or 10.0.2.0/24")]
    BadAddress { value: String },

    #[error("{value} has host bits set; write {network}")]
    HostBitsSet { value: String, network: IpNet },

    #[error("{value} is the default route, which always belongs to world; remove it and use entity: world in policies")]
    DefaultRoute { value: IpNet },

    #[error("{except} is not strictly inside cidr {cidr}; list only prefixes inside the cidr")]
    ExceptOutsideCidr { except: IpNet, cidr: IpNet },

    #[error("is only allowed together with cidr; add cidr or remove except")]
    ExceptWithoutCidr,

    #[error("is empty; give one of selector, cidr or entity")]
    EmptyPeer,

    #[error("gives both {first} and {second}; give exactly one of selector, cidr or entity per list item")]
    AmbiguousPeer { first: &'static str, second: &'static str },

    #[error("is not allowed in an {direction} rule; use {expected}")]
    WrongPeerField { direction: Direction, expected: &'static str },

    #[error(
        "is only allowed on ingress rules, where it limits the new flows each source address opens; \
         remove it, or put the limit on the ingress rule of the policy that selects the destination"
    )]
    RateLimitOnEgress,

    #[error(
        "is only allowed on allow rules: a deny rule admits no flows to limit; remove it or make the rule an allow rule"
    )]
    RateLimitOnDeny,

    #[error("is missing; give the new flows per second each source may open, e.g. newFlowsPerSecond: 100")]
    RateMissing,

    #[error("{value} is out of range 1-{max}")]
    RateOutOfRange { value: i64, max: u32 },

    #[error("{0}")]
    Label(LabelError),

    #[error(
        "is {api_version} {kind}, which is not read; give Namespace, Pod or List (apiVersion v1) or \
         NetworkPolicy (apiVersion networking.k8s.io/v1), or remove the object",
        api_version = one_line(.api_version),
        kind = one_line(.kind)
    )]
    UnknownKubernetesKind { api_version: String, kind: String },

    #[error("is missing; give the object a name")]
    MissingName,

    #[error("{} is not a NetworkPolicy protocol; use TCP, UDP or SCTP", one_line(.value))]
    BadKubernetesProtocol { value: String },

    #[error(
        "{:?} is not a port name; write a number in 1-65535 or a container port name (lowercase \
         letters, digits and '-', at most 15 characters, with at least one letter)",
        one_line(.value)
    )]
    BadPortName { value: String },

    #[error("is given with the named port {}; give port a number or remove endPort", one_line(.name))]
    EndPortWithNamedPort { name: String },

    #[error("gives ipBlock together with {other}; give ipBlock alone in its own list item")]
    IpBlockWithSelector { other: &'static str },

    #[error("is empty; give podSelector, namespaceSelector or ipBlock")]
    EmptyKubernetesPeer,

    #[error("{} is not a policy type; use Ingress or Egress", one_line(.value))]
    UnknownPolicyType { value: String },

    #[error("{} is not an operator; use In, NotIn, Exists or DoesNotExist", one_line(.value))]
    UnknownOperator { value: String },

    #[error("is empty, but operator {operator} needs values; list at least one value")]
    OperatorNeedsValues { operator: &'static str },

    #[error("is given, but operator {operator} takes no values; remove values")]
    OperatorTakesNoValues { operator: &'static str },

    #[error(
        "{value:?} is not a valid name; use lowercase letters, digits, '-' and '.', starting and \
         ending with a letter or digit (at most 253 characters)"
    )]
    BadName { value: String },

    // Names are quoted as written (invalid ones are reported on their own): kept to one line.
    #[error("{} is already used by the {kind} in {}; give each {kind} a unique name", one_line(.name), one_line(.first))]
    DuplicateName { kind: &'static str, name: String, first: String },

    #[error(
        "{address} is already claimed by endpoint {} ({}) with different labels; \
         give each address to one endpoint, or give both the same labels",
        one_line(.endpoint),
        one_line(.first)
    )]
    AddressClaimed { address: IpNet, endpoint: String, first: String },
}

/// Why a valid policy set could not be compiled with the given settings.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error(
        "compiling the policy needs more than {limit} intermediate keys (selected identities x \
         peers x port blocks multiply); merge rules, or use broader selectors, CIDRs or port ranges"
    )]
    TooManyKeys { limit: usize },

    #[error(
        "the compiled policy needs {count} POLICY map entries but one generation may use at most \
         {limit}; merge rules, or use broader selectors, CIDRs or port ranges"
    )]
    TooManyEntries { count: usize, limit: usize },

    #[error(
        "the policy needs {count} {family} ipcache prefixes but one generation may use at most \
         {limit}; use fewer endpoint addresses or CIDR peers"
    )]
    TooManyPrefixes { family: &'static str, count: usize, limit: usize },

    #[error(
        "the policy has {count} rate-limited rules but one generation may have at most {limit}; give \
         rules that share a limit one rule with several peers or ports"
    )]
    TooManyRateLimits { count: usize, limit: usize },

    #[error("failsafe rule {rule} {reason}")]
    InvalidFailsafe { rule: String, reason: &'static str },

    #[error(transparent)]
    Identity(#[from] AllocatorError),
}
