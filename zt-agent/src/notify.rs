//! Readiness for service managers: the `sd_notify` datagram protocol (`Type=notify`).
//!
//! systemd passes a datagram socket in `$NOTIFY_SOCKET` (a path, or an abstract name written
//! with a leading `@`). The agent sends `READY=1` once it enforces — so units ordered after
//! it start only when the interfaces are protected — and `STOPPING=1` when it shuts down.
//! Outside systemd the variable is unset and nothing is sent.

use std::{
    ffi::{OsStr, OsString},
    io,
    os::unix::{ffi::OsStrExt, net::UnixDatagram},
};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// The agent enforces and serves its API.
pub const READY: &str = "READY=1";
/// The agent is shutting down.
pub const STOPPING: &str = "STOPPING=1";

/// Sends `state` to the service manager if one listens; returns whether it was sent.
/// Failures are logged, never fatal: enforcement does not depend on the service manager.
pub fn notify(state: &str) -> bool {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else { return false };
    match send(&socket, state) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("cannot notify the service manager at {} ({state}): {e}", socket.to_string_lossy());
            false
        }
    }
}

/// Sends one datagram `state` to the notify socket `socket` (a path, or `@name` for an
/// abstract socket).
pub fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let out = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            out.send_to_addr(state.as_bytes(), &addr)?
        }
        None if bytes.starts_with(b"/") => out.send_to(state.as_bytes(), socket)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{NOTIFY_SOCKET} must be an absolute path or an @abstract name, not {:?}",
                    OsString::from(socket)
                ),
            ));
        }
    };
    if sent != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "the notification was cut short"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn receive(listener: &UnixDatagram) -> String {
        listener.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).expect("a notification arrives");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_reaches_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("zt-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), READY).unwrap();
        send(path.as_os_str(), STOPPING).unwrap();
        assert_eq!(receive(&listener), "READY=1");
        assert_eq!(receive(&listener), "STOPPING=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ready_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("zt-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), READY).unwrap();
        assert_eq!(receive(&listener), "READY=1");
    }

    #[test]
    fn a_relative_socket_name_is_refused() {
        let err = send(OsStr::new("notify.sock"), READY).unwrap_err();
        assert!(err.to_string().contains("absolute path or an @abstract name"), "{err}");
    }

    #[test]
    fn a_missing_listener_is_an_error_not_a_hang() {
        let path = std::env::temp_dir().join(format!("zt-notify-nobody-{}.sock", std::process::id()));
        assert!(send(path.as_os_str(), READY).is_err());
    }
}
