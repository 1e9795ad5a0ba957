//! Output shape: ipcache contents, identity stability across recompiles, entry keys, catch-alls,
//! policy ids, size guards and the demo policies.

use super::*;

#[test]
fn ipcache_holds_endpoints_policy_prefixes_and_default_routes() {
    let c = with_endpoints(
        &format!("{DB_POLICY_HEAD}  ingress: [{{from: [{{cidr: 192.168.0.0/16, except: [192.168.9.0/24]}}]}}]\n"),
        &settings(false),
    );
    let expected: Vec<(IpNet, u32)> = [
        ("0.0.0.0/0", WORLD),
        ("10.0.1.10/32", id(&c, "app=web")),
        ("10.0.2.10/32", id(&c, "app=api")),
        ("10.0.3.10/32", id(&c, "app=db")),
        ("192.168.0.0/16", id(&c, "cidr:192.168.0.0/16")),
        ("192.168.9.0/24", id(&c, "cidr:192.168.9.0/24")),
        ("::/0", WORLD),
        ("fd00::2:10/128", id(&c, "app=api")),
    ]
    .into_iter()
    .map(|(net, id)| (net.parse().unwrap(), id))
    .collect();
    assert_eq!(c.ipcache, expected);
    let labels: Vec<String> = c.identities.iter().map(|(id, labels)| format!("{id} {labels}")).collect();
    assert_eq!(
        labels,
        [
            "1 reserved:host",
            "2 reserved:world",
            "256 app=api",
            "257 app=db",
            "258 app=web",
            "259 cidr:192.168.0.0/16",
            "260 cidr:192.168.9.0/24",
        ]
    );
}

#[test]
fn host_addresses_are_left_to_the_agent() {
    let settings = CompileSettings { host_addresses: vec!["10.0.1.10".parse().unwrap()], ..settings(false) };
    let c = with_endpoints("", &settings);
    assert!(c.ipcache.iter().all(|(net, _)| net.to_string() != "10.0.1.10/32"));
    assert_eq!(
        c.warnings,
        ["policy test.yaml, document 1: spec.addresses[0] 10.0.1.10/32 is an address of this host, so its \
             traffic has the host identity, not the labels of endpoint web-1"]
    );
}

#[test]
fn identities_are_stable_across_recompiles() {
    let mut allocator = IdentityAllocator::new();
    let first_set = parse(&[("e.yaml", ENDPOINTS)]).unwrap();
    let first = compile(&first_set, &settings(true), &mut allocator).unwrap();
    // Drop web, add cache, add a CIDR: old numbers stay, new ones follow.
    let changed = ENDPOINTS.replace("{name: web-1}", "{name: cache-1}").replace("app: web", "app: cache");
    let policy = "---\napiVersion: zt/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  selector: {}\n  \
                  egress: [{to: [{cidr: 10.0.0.0/8}]}]\n";
    let second_set = parse(&[("e.yaml", format!("{changed}{policy}"))]).unwrap();
    let second = compile(&second_set, &settings(true), &mut allocator).unwrap();
    for labels in ["app=api", "app=db"] {
        assert_eq!(id(&first, labels), id(&second, labels), "{labels}");
    }
    assert_eq!(id(&second, "app=cache"), FIRST_ALLOCATED + 3);
    assert_eq!(id(&second, "cidr:10.0.0.0/8"), FIRST_ALLOCATED + 4);
    assert_eq!(allocator.get(&Labels::parse("app=web").unwrap()), Some(id(&first, "app=web")));
    // Compiling the same input again changes nothing.
    let again = compile(&second_set, &settings(true), &mut allocator).unwrap();
    assert_eq!((again.entries, again.ipcache), (second.entries, second.ipcache));
}

#[test]
fn entry_keys_convert_to_lpm_prefixes_with_clear_port_bits() {
    let key = |proto, port, port_prefix_len| PolicyEntryKey {
        direction: DIR_EGRESS,
        local: 300,
        peer: 2,
        proto,
        port,
        port_prefix_len,
    };
    let (len, k) = key(None, 0, 0).to_lpm(1);
    assert_eq!(
        (len, k.slot, k.direction, k.local, k.peer, k.proto, k.port),
        (80, 1, 1, [0, 0, 1, 44], [0, 0, 0, 2], 0, [0, 0])
    );
    assert_eq!(key(Some(TCP), 0, 0).to_lpm(0).0, 88);
    let (len, k) = key(Some(UDP), 5100, 11).to_lpm(0);
    assert_eq!((len, k.proto, u16::from_be_bytes(k.port)), (99, UDP, 5088));
    let (len, k) = key(Some(TCP), 443, 16).to_lpm(0);
    assert_eq!((len, u16::from_be_bytes(k.port)), (104, 443));
}

#[test]
fn every_compiled_policy_has_catch_alls_and_clean_keys() {
    let c = with_endpoints(AUDIT_DB, &CompileSettings::default());
    for direction in [DIR_INGRESS, DIR_EGRESS] {
        let catch_all = PolicyEntryKey { direction, local: ANY, peer: ANY, proto: None, port: 0, port_prefix_len: 0 };
        assert!(c.entries.iter().any(|(key, _)| *key == catch_all));
    }
    let keys: BTreeSet<_> = c.entries.iter().map(|(key, _)| *key).collect();
    assert_eq!(keys.len(), c.entries.len(), "keys are unique");
    for (key, _) in &c.entries {
        assert_eq!(key.block().port, key.port, "port bits beyond the prefix are zero: {key:?}");
        assert!(key.port_prefix_len <= 16);
    }
}

#[test]
fn policy_ids_follow_name_order_and_name_the_policy() {
    let c = with_endpoints(&format!("{AUDIT_DB}---\n{DB_POLICY_HEAD}  ingress: []\n"), &settings(false));
    let names: Vec<(u32, &str, Mode)> = c.policies.iter().map(|p| (p.id, p.name.as_str(), p.mode)).collect();
    assert_eq!(names, [(1, "db-audit", Mode::Audit), (2, "db-ingress", Mode::Enforce)]);
    assert_eq!(c.policy(2).unwrap().origin, Origin::new("test.yaml", 5));
    assert!(c.policy(0).is_none() && c.policy(3).is_none());
}

#[test]
fn closure_blow_up_is_a_clear_error_and_leaves_the_allocator_alone() {
    let set = parse(&[("e.yaml", format!("{ENDPOINTS}---\n{AUDIT_DB}"))]).unwrap();
    let mut allocator = IdentityAllocator::new();
    let limits = Limits { closure_keys: 3, policy_entries: 1000 };
    let error = compile_resolved(&set, &settings(true), &mut allocator, limits, None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "compiling the policy needs more than 3 intermediate keys (selected identities x peers x port blocks \
         multiply); merge rules, or use broader selectors, CIDRs or port ranges"
    );
    assert!(allocator.is_empty());
    let limits = Limits { closure_keys: 1000, policy_entries: 3 };
    let error = compile_resolved(&set, &settings(true), &mut allocator, limits, None).unwrap_err();
    assert!(matches!(error, CompileError::TooManyEntries { limit: 3, .. }), "{error}");
}

#[test]
fn demo_policies_compile_cleanly() {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/demo");
    let sources = load_path(&demo).unwrap();
    let set = parse(&sources).unwrap_or_else(|errors| panic!("{errors:#?}"));
    let settings =
        CompileSettings { host_labels: Labels::parse("role=app-server").unwrap(), ..CompileSettings::default() };
    let c = compile(&set, &settings, &mut IdentityAllocator::new()).unwrap();
    assert_eq!(c.warnings, Vec::<String>::new());
    let (web, api, db) = (id(&c, "app=web,tier=frontend"), id(&c, "app=api,tier=backend"), id(&c, "app=db,tier=data"));
    assert_eq!(explain(&c, DIR_INGRESS, web, WORLD, TCP, 443).0, "allowed");
    assert_eq!(explain(&c, DIR_INGRESS, api, web, TCP, 8080).0, "allowed");
    assert_eq!(explain(&c, DIR_INGRESS, db, api, TCP, 5432).0, "allowed");
    assert_eq!(explain(&c, DIR_INGRESS, db, web, TCP, 5432).0, "denied");
    assert_eq!(explain(&c, DIR_EGRESS, web, db, TCP, 5432).0, "denied");
    assert_eq!(explain(&c, DIR_EGRESS, db, WORLD, TCP, 443).0, "denied");
    let debug_port = ("audit", "deny-rule", Some("api-debug-port-audit".to_string()), Some(0));
    assert_eq!(explain(&c, DIR_INGRESS, api, web, TCP, 8089), debug_port);
    assert_eq!(explain(&c, DIR_INGRESS, HOST, WORLD, TCP, 22).1, "failsafe");
}
