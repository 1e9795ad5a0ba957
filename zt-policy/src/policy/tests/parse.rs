//! Parsing into the model: what valid documents become, defaults, empty documents, and the
//! single pass versus the checking path.

use super::{DB_ENDPOINT, policy_with_ports};
use crate::identity::Labels;
use crate::policy::model::{Action, Entity, Mode, Origin, Peer, PortRule, Protocol, Rule, Selector};
use crate::policy::parse;
use crate::policy::parse::regular_document_numbers;

#[test]
fn endpoint_and_policy_parse_into_the_model() {
    let policy = "apiVersion: zt/v1
kind: Policy
metadata: {name: db-ingress}
spec:
  selector: {app: db}
  mode: audit
  ingress:
    - from:
        - selector: {app: api}
        - cidr: 192.168.0.0/16
          except: [192.168.9.0/24]
        - entity: host
      ports:
        - {protocol: TCP, port: 5432}
        - {protocol: UDP, port: 5000, endPort: 5100}
        - {protocol: ICMP}
    - action: deny
";
    let set = parse(&[("db.yaml", format!("{DB_ENDPOINT}---\n{policy}"))]).unwrap();
    let endpoint = &set.endpoints[0];
    assert_eq!(endpoint.name, "db-1");
    let addresses: Vec<String> = endpoint.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(addresses, ["10.0.1.5/32", "fd00::5/128", "10.0.2.0/24"]);
    assert_eq!(endpoint.labels.to_string(), "app=db,env=prod");
    assert_eq!(endpoint.origin, Origin::new("db.yaml", 1));

    let policy = &set.policies[0];
    assert_eq!((policy.name.as_str(), policy.mode), ("db-ingress", Mode::Audit));
    assert_eq!(policy.origin, Origin::new("db.yaml", 2));
    assert!(policy.egress.is_none());
    let rules = policy.ingress.as_ref().unwrap();
    assert_eq!(rules[0].action, Action::Allow);
    assert_eq!(
        rules[0].peers,
        [
            Peer::Selector(Selector::new(Labels::parse("app=api").unwrap())),
            Peer::Cidr { cidr: "192.168.0.0/16".parse().unwrap(), except: vec!["192.168.9.0/24".parse().unwrap()] },
            Peer::Entity(Entity::Host),
        ]
    );
    assert_eq!(
        rules[0].ports,
        [
            PortRule { protocol: Protocol::Tcp, port: Some(5432), end_port: None },
            PortRule { protocol: Protocol::Udp, port: Some(5000), end_port: Some(5100) },
            PortRule { protocol: Protocol::Icmp, port: None, end_port: None },
        ]
    );
    assert_eq!(
        rules[1],
        Rule { action: Action::Deny, peers: vec![], ports: vec![], rate_limit: None, named_ports: vec![] }
    );
}

#[test]
fn regular_documents_take_the_single_pass_and_keep_their_numbers() {
    let text = format!("{DB_ENDPOINT}--- ~\n---\n{}", policy_with_ports("[{port: 80}]"));
    let numbers = regular_document_numbers(&text).expect("every document is regular");
    assert_eq!(numbers, [1, 3], "empty documents are counted, not returned");
    let set = parse(&[("p.yaml", text)]).unwrap();
    assert_eq!(set.policies[0].origin, Origin::new("p.yaml", 3));
}

#[test]
fn documents_with_the_header_last_are_read_by_the_checking_path() {
    let text = "metadata: {name: p}\nspec: {selector: {}}\nkind: Policy\napiVersion: zt/v1\n";
    assert!(regular_document_numbers(text).is_none());
    let set = parse(&[("p.yaml", text)]).unwrap();
    assert_eq!(set.policies[0].name, "p");
}

#[test]
fn omitted_mode_action_and_protocol_take_their_defaults() {
    let set = parse(&[("p.yaml", policy_with_ports("[{port: 80}]"))]).unwrap();
    let policy = &set.policies[0];
    assert_eq!(policy.mode, Mode::Enforce);
    let rule = &policy.ingress.as_ref().unwrap()[0];
    assert_eq!(rule.action, Action::Allow);
    assert_eq!(rule.ports, [PortRule { protocol: Protocol::Tcp, port: Some(80), end_port: None }]);
}

#[test]
fn empty_documents_are_skipped_but_counted() {
    let text = format!("---\n{DB_ENDPOINT}---\n---\n# only a comment\n---\n{}", policy_with_ports("[]"));
    let set = parse(&[("all.yaml", text)]).unwrap();
    assert_eq!(set.endpoints.len(), 1);
    assert_eq!(set.policies[0].origin, Origin::new("all.yaml", 4));
}
