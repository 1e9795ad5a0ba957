//! The API's Unix socket file: created with its directory (0755) at start-up, mode 0600,
//! and removed when the agent stops. A socket file left by an agent that was killed is
//! replaced; one that a live agent still answers on is not (two agents must not share a
//! socket, nor would the second's ztctl commands reach the right one).

use std::{
    fs::{self, DirBuilder, Permissions},
    io,
    os::unix::{
        fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt},
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
};

/// Why the socket could not be set up; the agent exits with this sentence.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "cannot create the API socket directory {dir}: {source}; pass --socket with a path in a writable directory"
    )]
    Dir { dir: PathBuf, source: io::Error },
    #[error("another zt-agent is already serving the API socket {path}; stop it, or pass --socket with another path")]
    InUse { path: PathBuf },
    #[error(
        "cannot use {path} as the API socket: it exists and is not a socket; remove it or pass --socket with another path"
    )]
    NotASocket { path: PathBuf },
    #[error("cannot create the API socket {path}: {source}; pass --socket with a path in a writable directory")]
    Bind { path: PathBuf, source: io::Error },
}

/// The bound socket; removes its file when dropped (if it is still this socket's file).
#[derive(Debug)]
pub struct ApiSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    /// (device, inode) of the file this agent created.
    file: (u64, u64),
}

impl ApiSocket {
    /// Binds `path` (mode 0600), creating its directory (0755) if needed.
    pub fn bind(path: &Path) -> Result<ApiSocket, SocketError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|source| SocketError::Dir { dir: dir.to_path_buf(), source })?;
        }
        if let Ok(meta) = fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(SocketError::NotASocket { path: path.to_path_buf() });
            }
            if UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse { path: path.to_path_buf() });
            }
            // Nobody answers: left by an agent that did not stop cleanly.
            let _ = fs::remove_file(path);
        }
        let bind_error = |source| SocketError::Bind { path: path.to_path_buf(), source };
        let listener = UnixListener::bind(path).map_err(bind_error)?;
        // Between bind and chmod the file has the umask's mode; the peer-credential check
        // (auth.rs) is what refuses other users in any case.
        fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let meta = fs::metadata(path).map_err(bind_error)?;
        Ok(ApiSocket { listener: Some(listener), path: path.to_path_buf(), file: (meta.dev(), meta.ino()) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, for the server (once).
    pub(crate) fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
        // Another agent may have replaced a file we left behind; only remove our own.
        if let Ok(meta) = fs::metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.file
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zt-socket-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_socket_is_private_its_directory_is_made_and_drop_removes_it() {
        let dir = scratch("private");
        let path = dir.join("run/zt/agent.sock");
        let socket = ApiSocket::bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o755);
        drop(socket);
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_stale_one_is() {
        let dir = scratch("live");
        let path = dir.join("agent.sock");
        let first = ApiSocket::bind(&path).unwrap();
        let e = ApiSocket::bind(&path).unwrap_err();
        assert!(matches!(e, SocketError::InUse { .. }), "{e}");
        // A stale file: the listener is gone but the file stays.
        let stale = dir.join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        let again = ApiSocket::bind(&stale).unwrap();
        drop((first, again));
        fs::write(&path, "x").unwrap();
        assert!(matches!(ApiSocket::bind(&path).unwrap_err(), SocketError::NotASocket { .. }));
        fs::remove_dir_all(&dir).unwrap();
    }
}
