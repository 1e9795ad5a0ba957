//! Failsafe: host traffic no policy can remove, and how its rules are configured and checked.

use super::*;

#[test]
fn failsafe_keeps_inbound_ssh_to_the_host_under_a_deny_all() {
    let deny_all = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: lockdown}\nspec:\n  selector: {}\n  \
                    ingress: [{action: deny}]\n  egress: [{action: deny}]\n";
    let c = with_endpoints(deny_all, &CompileSettings::default());
    let db = id(&c, "app=db");
    for peer in [WORLD, db, ANY] {
        assert_eq!(explain(&c, DIR_INGRESS, HOST, peer, TCP, 22), ("allowed", "failsafe", None, None));
    }
    assert_eq!(explain(&c, DIR_INGRESS, HOST, WORLD, TCP, 23), denied_by("lockdown", 0));
    assert_eq!(explain(&c, DIR_INGRESS, HOST, WORLD, UDP, 22), denied_by("lockdown", 0));
    // Failsafe protects the host only, and only in its direction.
    assert_eq!(explain(&c, DIR_INGRESS, db, WORLD, TCP, 22), denied_by("lockdown", 0));
    assert_eq!(explain(&c, DIR_EGRESS, HOST, WORLD, TCP, 22), denied_by("lockdown", 0));
}

#[test]
fn failsafe_rules_are_configurable() {
    let settings = CompileSettings {
        failsafe: vec![FailsafeRule { direction: Direction::Egress, protocol: Protocol::Udp, port: Some(53) }],
        ..CompileSettings::default()
    };
    let c = with_endpoints("", &settings);
    assert_eq!(explain(&c, DIR_EGRESS, HOST, WORLD, UDP, 53), ("allowed", "failsafe", None, None));
    assert_eq!(explain(&c, DIR_INGRESS, HOST, WORLD, TCP, 22), default_deny());
}

#[test]
fn failsafe_with_a_port_for_icmp_is_rejected() {
    let settings = CompileSettings {
        failsafe: vec![FailsafeRule { direction: Direction::Ingress, protocol: Protocol::Icmp, port: Some(8) }],
        ..CompileSettings::default()
    };
    let error = compile(&PolicySet::default(), &settings, &mut IdentityAllocator::new()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "failsafe rule ingress ICMP 8 gives a port, but only TCP, UDP and SCTP have ports; remove the port"
    );
}
