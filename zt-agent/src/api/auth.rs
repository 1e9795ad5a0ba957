//! Who may use the API: the peer's uid, from the kernel (SO_PEERCRED), must be root or the
//! agent's own user. The socket's file mode (0600) already keeps others out; this check
//! holds even when the file mode is loosened by mistake, and answers in the protocol so the
//! refused user learns why.

use super::protocol::{ApiError, ErrorCode};

/// The sentence a refused peer receives.
pub const ROOT_ONLY: &str = "permission denied: the zt API accepts only root (uid 0); run ztctl as root";

/// Admits `peer_uid` if it is root or the agent's own effective uid.
pub fn authorize(peer_uid: u32, agent_uid: u32) -> Result<(), ApiError> {
    if peer_uid == 0 || peer_uid == agent_uid {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::PermissionDenied, ROOT_ONLY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_agents_own_user_are_admitted_and_nobody_else() {
        assert!(authorize(0, 0).is_ok());
        assert!(authorize(1000, 1000).is_ok(), "an unprivileged agent's own user");
        let refused = authorize(65534, 0).unwrap_err();
        assert_eq!(refused.code, ErrorCode::PermissionDenied);
        assert_eq!(refused.message, ROOT_ONLY);
        assert!(authorize(65534, 1000).is_err());
    }
}
