//! Parse errors, by their exact text: every message names the file, the document, the field
//! path (and, for YAML and schema errors, line and column) and how to fix it.

use super::{DB_ENDPOINT, error_of, errors_of, policy_with_ports};
use crate::policy::parse;

#[test]
fn port_out_of_range_names_file_document_and_field() {
    let text = format!(
        "{DB_ENDPOINT}---\n{}",
        policy_with_ports("[{protocol: TCP, port: 5432}, {protocol: TCP, port: 70000}]")
    );
    assert_eq!(
        error_of("db.yaml", &text),
        "policy db.yaml, document 2: spec.ingress[0].ports[1].port 70000 is out of range 1-65535"
    );
}

#[test]
fn port_zero_and_negative_are_out_of_range() {
    let errors = errors_of(&[("p.yaml", &policy_with_ports("[{port: 0}, {port: -1}]"))]);
    assert_eq!(
        errors,
        [
            "policy p.yaml, document 1: spec.ingress[0].ports[0].port 0 is out of range 1-65535",
            "policy p.yaml, document 1: spec.ingress[0].ports[1].port -1 is out of range 1-65535",
        ]
    );
}

#[test]
fn end_port_below_port_is_rejected() {
    assert_eq!(
        error_of("p.yaml", &policy_with_ports("[{protocol: UDP, port: 5100, endPort: 5000}]")),
        "policy p.yaml, document 1: spec.ingress[0].ports[0].endPort 5000 is less than port 5100; \
         make endPort at least 5100"
    );
}

#[test]
fn end_port_without_port_is_rejected() {
    assert_eq!(
        error_of("p.yaml", &policy_with_ports("[{protocol: TCP, endPort: 90}]")),
        "policy p.yaml, document 1: spec.ingress[0].ports[0].endPort is given without port; \
         put the first port of the range in port"
    );
}

#[test]
fn port_for_icmp_is_rejected() {
    assert_eq!(
        error_of("p.yaml", &policy_with_ports("[{protocol: ICMP, port: 8}]")),
        "policy p.yaml, document 1: spec.ingress[0].ports[0].port is not allowed for ICMP; \
         only TCP, UDP and SCTP have ports, so remove it"
    );
}

#[test]
fn unknown_field_is_rejected_with_its_path_and_position() {
    assert_eq!(
        error_of("p.yaml", &policy_with_ports("[{protocol: TCP, prot: 80}]")),
        "policy p.yaml, document 1: spec.ingress[0].ports[0]: unknown field `prot`, expected one of \
         `protocol`, `port`, `endPort` (line 8, column 31)"
    );
}

#[test]
fn unknown_protocol_is_rejected() {
    assert_eq!(
        error_of("p.yaml", &policy_with_ports("[{protocol: GRE}]")),
        "policy p.yaml, document 1: spec.ingress[0].ports[0].protocol: unknown variant `GRE`, expected one \
         of `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6` (line 8, column 26)"
    );
}

#[test]
fn missing_selector_is_rejected() {
    let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  ingress: []\n";
    assert_eq!(
        error_of("p.yaml", text),
        "policy p.yaml, document 1: spec: missing field `selector` (line 5, column 3)"
    );
}

#[test]
fn bad_cidr_is_rejected() {
    let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  egress:\n    \
                - to: [{cidr: 10.0.0.0/33}]\n";
    assert_eq!(
        error_of("p.yaml", text),
        "policy p.yaml, document 1: spec.egress[0].to[0].cidr \"10.0.0.0/33\" is not an IP address or CIDR; \
         write e.g. 10.0.1.5, fd00::5 or 10.0.2.0/24"
    );
}

#[test]
fn cidr_with_host_bits_is_rejected() {
    let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  egress:\n    \
                - to: [{cidr: 10.1.2.3/16}]\n";
    assert_eq!(
        error_of("p.yaml", text),
        "policy p.yaml, document 1: spec.egress[0].to[0].cidr 10.1.2.3/16 has host bits set; write 10.1.0.0/16"
    );
}

#[test]
fn except_outside_cidr_is_rejected() {
    let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  ingress:\n    \
                - from: [{cidr: 192.168.0.0/16, except: [192.168.9.0/24, 10.0.0.0/8, 192.168.0.0/16]}]\n";
    assert_eq!(
        errors_of(&[("p.yaml", text)]),
        [
            "policy p.yaml, document 1: spec.ingress[0].from[0].except[1] 10.0.0.0/8 is not strictly inside \
             cidr 192.168.0.0/16; list only prefixes inside the cidr",
            "policy p.yaml, document 1: spec.ingress[0].from[0].except[2] 192.168.0.0/16 is not strictly \
             inside cidr 192.168.0.0/16; list only prefixes inside the cidr",
        ]
    );
}

#[test]
fn peer_needs_exactly_one_form() {
    let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  ingress:\n    \
                - from: [{}, {entity: host, cidr: 10.0.0.0/8}, {except: [10.1.0.0/16]}]\n";
    assert_eq!(
        errors_of(&[("p.yaml", text)]),
        [
            "policy p.yaml, document 1: spec.ingress[0].from[0] is empty; give one of selector, cidr or entity",
            "policy p.yaml, document 1: spec.ingress[0].from[1] gives both cidr and entity; give exactly one \
             of selector, cidr or entity per list item",
            "policy p.yaml, document 1: spec.ingress[0].from[2].except is only allowed together with cidr; \
             add cidr or remove except",
        ]
    );
}

#[test]
fn to_in_an_ingress_rule_is_rejected() {
    let text = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  ingress:\n    \
                - to: [{entity: world}]\n";
    assert_eq!(
        error_of("p.yaml", text),
        "policy p.yaml, document 1: spec.ingress[0].to is not allowed in an ingress rule; use from"
    );
}

#[test]
fn bad_label_key_and_value_are_rejected() {
    let text = "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: e}\nspec:\n  addresses: [10.0.0.1]\n  \
                labels: {\"App Name\": web, tier: \"-front\"}\n";
    assert_eq!(
        errors_of(&[("e.yaml", text)]),
        [
            "policy e.yaml, document 1: spec.labels key \"App Name\" is not a valid label key; use at most 63 \
             letters, digits, '-', '_' or '.', starting and ending with a letter or digit, optionally after a \
             lowercase DNS prefix and '/' (e.g. app or example.com/tier)",
            "policy e.yaml, document 1: spec.labels value \"-front\" of label tier is not a valid label value; \
             use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, or \
             leave it empty",
        ]
    );
}

#[test]
fn bad_name_is_rejected() {
    let text = policy_with_ports("[]").replace("db-ingress", "DB_Ingress");
    assert_eq!(
        error_of("p.yaml", &text),
        "policy p.yaml, document 1: metadata.name \"DB_Ingress\" is not a valid name; use lowercase letters, \
         digits, '-' and '.', starting and ending with a letter or digit (at most 253 characters)"
    );
}

#[test]
fn default_route_as_endpoint_address_is_rejected() {
    let text = DB_ENDPOINT.replace("10.0.2.0/24", "0.0.0.0/0");
    assert_eq!(
        error_of("db.yaml", &text),
        "policy db.yaml, document 1: spec.addresses[2] 0.0.0.0/0 is the default route, which always belongs \
         to world; remove it and use entity: world in policies"
    );
}

#[test]
fn duplicate_policy_names_are_rejected() {
    let policy = policy_with_ports("[]");
    assert_eq!(
        errors_of(&[("a.yaml", &policy), ("b.yaml", &format!("{DB_ENDPOINT}---\n{policy}"))]),
        ["policy b.yaml, document 2: metadata.name db-ingress is already used by the policy in a.yaml, \
             document 1; give each policy a unique name"]
    );
}

#[test]
fn duplicate_endpoint_names_are_rejected_within_a_namespace_only() {
    let other = DB_ENDPOINT.replace("10.0.1.5, \"fd00::5\", 10.0.2.0/24", "10.0.9.9");
    let in_namespace = other.replace("{name: db-1}", "{name: db-1, namespace: shop}");
    assert!(parse(&[("a.yaml", DB_ENDPOINT), ("b.yaml", &in_namespace)]).is_ok());
    assert_eq!(
        errors_of(&[("a.yaml", DB_ENDPOINT), ("b.yaml", &other)]),
        ["policy b.yaml, document 1: metadata.name db-1 is already used by the endpoint in a.yaml, \
             document 1; give each endpoint a unique name"]
    );
}

#[test]
fn address_claimed_with_different_labels_is_rejected() {
    let same_labels = DB_ENDPOINT.replace("db-1", "db-2");
    assert!(parse(&[("a.yaml", DB_ENDPOINT), ("b.yaml", &same_labels)]).is_ok());
    let other_labels = "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {name: cache}\nspec:\n  \
                        addresses: [10.0.7.7, 10.0.1.5]\n  labels: {app: cache}\n";
    assert_eq!(
        errors_of(&[("a.yaml", DB_ENDPOINT), ("b.yaml", other_labels)]),
        ["policy b.yaml, document 1: spec.addresses[1] 10.0.1.5/32 is already claimed by endpoint db-1 \
             (a.yaml, document 1) with different labels; give each address to one endpoint, or give both the \
             same labels"]
    );
}

#[test]
fn yaml_syntax_error_reports_line_and_column() {
    let text = format!("{DB_ENDPOINT}---\napiVersion: zt/v1\nkind: Policy\nmetadata: {{name: p\nspec: {{}}\n");
    assert_eq!(
        error_of("p.yaml", &text),
        "policy p.yaml, document 2: invalid YAML at line 11, column 5: did not find expected ',' or '}', \
         while parsing a flow mapping at line 10 column 11"
    );
}

#[test]
fn documents_before_a_syntax_error_are_still_checked() {
    let text = format!("{}---\nkind: [\n", policy_with_ports("[{port: 99999}]"));
    let errors = errors_of(&[("p.yaml", &text)]);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with("policy p.yaml, document 2: invalid YAML at line "), "{}", errors[0]);
    assert_eq!(errors[1], "policy p.yaml, document 1: spec.ingress[0].ports[0].port 99999 is out of range 1-65535");
}

#[test]
fn unknown_api_version_kind_and_shapes_are_rejected() {
    let sources = [
        ("a.yaml", "apiVersion: zt/v2\nkind: Policy\n"),
        ("b.yaml", "apiVersion: zt/v1\nkind: Rule\n"),
        ("c.yaml", "kind: Policy\n"),
        ("d.yaml", "apiVersion: zt/v1\n"),
        ("e.yaml", "- just\n- a list\n"),
    ];
    assert_eq!(
        errors_of(&sources),
        [
            "policy a.yaml, document 1: apiVersion zt/v2 is unknown; use apiVersion: zt/v1, or v1 and \
             networking.k8s.io/v1 for Kubernetes objects",
            "policy b.yaml, document 1: kind Rule is not a zt/v1 kind; use Endpoint or Policy",
            "policy c.yaml, document 1: apiVersion is missing; add apiVersion: zt/v1",
            "policy d.yaml, document 1: kind is missing; add kind: Endpoint or kind: Policy",
            "policy e.yaml, document 1: the document is not a mapping; write apiVersion, kind, metadata and spec",
        ]
    );
}

#[test]
fn all_errors_of_a_push_are_reported_together() {
    let bad_ports = policy_with_ports("[{port: 70000}, {protocol: ICMP, port: 1}]");
    let bad_endpoint = DB_ENDPOINT.replace("10.0.2.0/24", "10.0.2.1/24").replace("app: db", "app: \"d b\"");
    let sources = [("a.yaml", bad_ports.as_str()), ("b.yaml", &bad_endpoint), ("c.yaml", "apiVersion: v9\nkind: X\n")];
    let errors = errors_of(&sources);
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors[0].starts_with("policy a.yaml, document 1: spec.ingress[0].ports[0].port 70000"));
    assert!(errors[1].starts_with("policy a.yaml, document 1: spec.ingress[0].ports[1].port is not allowed"));
    assert!(errors[2].starts_with("policy b.yaml, document 1: spec.addresses[2] 10.0.2.1/24 has host bits"));
    assert!(errors[3].starts_with("policy b.yaml, document 1: spec.labels value \"d b\""));
    assert!(errors[4].starts_with("policy c.yaml, document 1: apiVersion v9 is unknown"));
}
