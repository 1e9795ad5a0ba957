//! What a remote client may do: its TLS client certificate's names (subject Common Name and
//! SAN DNS names) map to a role by the `[remote]` config's `admins` and `readers` lists.
//! Readers may look (policy get/history/diff and dry runs, endpoints, identities, status,
//! explain, flows, the quarantine list); admins may do everything the local socket allows.

use super::protocol::{ApiError, ErrorCode, Request};

/// A remote client's rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Requests that change nothing.
    Reader,
    /// Every request.
    Admin,
}

/// A listener's decision about a connection: the rights of the caller, and the uid
/// recorded as the author of the revisions it makes (a remote client's revisions are the
/// agent's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub author_uid: u32,
    pub role: Role,
}

pub use crate::agent::RoleMap;

impl RoleMap {
    /// The role of a certificate with these names; admin wins when names are in both lists.
    pub fn role_of<S: AsRef<str>>(&self, names: &[S]) -> Option<Role> {
        let listed = |list: &[String]| names.iter().any(|n| list.iter().any(|l| l == n.as_ref()));
        if listed(&self.admins) {
            Some(Role::Admin)
        } else if listed(&self.readers) {
            Some(Role::Reader)
        } else {
            None
        }
    }
}

/// The refusal a certificate without a role receives.
pub fn unmapped(names: &[String]) -> ApiError {
    ApiError::new(
        ErrorCode::PermissionDenied,
        format!(
            "permission denied: the client certificate ({}) has no role on this agent; add its name to admins or readers in the agent's [remote] config",
            if names.is_empty() { "no name".to_string() } else { names.join(", ") }
        ),
    )
}

impl Role {
    /// Admits `request` for this role, or says why not in one sentence.
    pub fn permit(self, request: &Request) -> Result<(), ApiError> {
        if self == Role::Admin || changes_nothing(request) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "permission denied: {} changes the agent and this client certificate has the read-only role; use an admin certificate",
                command_name(request)
            ),
        ))
    }
}

/// Requests a reader may send: reads, and dry runs (which compile but never switch).
fn changes_nothing(request: &Request) -> bool {
    match request {
        Request::PolicyApply { dry_run, .. } | Request::PolicyDelete { dry_run, .. } => *dry_run,
        Request::PolicyDiff { .. }
        | Request::PolicyGet { .. }
        | Request::PolicyHistory
        | Request::EndpointList
        | Request::IdentityList
        | Request::Status
        | Request::Flows { .. }
        | Request::Alerts { .. }
        | Request::Explain(_)
        | Request::Edges { .. }
        | Request::QuarantineList => true,
        Request::PolicyRollback { .. } | Request::QuarantineAdd { .. } | Request::QuarantineRelease { .. } => false,
    }
}

/// The request's `command` as the protocol spells it (`policy-apply`).
fn command_name(request: &Request) -> String {
    serde_json::to_value(request)
        .ok()
        .and_then(|v| v["command"].as_str().map(str::to_string))
        .unwrap_or_else(|| "this request".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> RoleMap {
        RoleMap { admins: vec!["ops".into(), "both".into()], readers: vec!["audit".into(), "both".into()] }
    }

    #[test]
    fn names_map_to_roles_admin_first_and_unknown_names_to_none() {
        assert_eq!(map().role_of(&["ops"]), Some(Role::Admin));
        assert_eq!(map().role_of(&["x", "audit"]), Some(Role::Reader), "a SAN name counts as much as the CN");
        assert_eq!(map().role_of(&["both"]), Some(Role::Admin));
        assert_eq!(map().role_of(&["Ops", "stranger"]), None, "names match exactly");
        assert_eq!(map().role_of::<&str>(&[]), None);
        assert_eq!(RoleMap::default().role_of(&["ops"]), None);
    }

    #[test]
    fn readers_may_read_and_dry_run_but_not_change_anything() {
        let apply = |dry_run| Request::PolicyApply { sources: vec![], dry_run };
        for allowed in [
            Request::Status,
            Request::PolicyGet { name: None },
            Request::PolicyHistory,
            Request::PolicyDiff { sources: vec![] },
            apply(true),
            Request::EndpointList,
            Request::IdentityList,
            Request::QuarantineList,
        ] {
            assert!(Role::Reader.permit(&allowed).is_ok(), "{allowed:?}");
        }
        for refused in [
            apply(false),
            Request::PolicyDelete { name: "a".into(), dry_run: false },
            Request::PolicyRollback { revision: None },
            Request::QuarantineAdd { ip: "198.18.0.1".parse().unwrap(), ttl_seconds: None, reason: None },
            Request::QuarantineRelease { ip: "198.18.0.1".parse().unwrap() },
        ] {
            let e = Role::Reader.permit(&refused).unwrap_err();
            assert_eq!(e.code, ErrorCode::PermissionDenied);
            assert!(e.message.contains("read-only role"), "{}", e.message);
            assert!(Role::Admin.permit(&refused).is_ok());
        }
        let e = Role::Reader.permit(&apply(false)).unwrap_err();
        assert!(e.message.starts_with("permission denied: policy-apply changes the agent"), "{}", e.message);
    }

    #[test]
    fn an_unmapped_certificate_is_refused_with_its_names() {
        let e = unmapped(&["eve".into()]);
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert!(e.message.contains("(eve) has no role") && e.message.contains("[remote]"), "{}", e.message);
    }
}
