//! Listening sockets: binding with errors a user can act on, and the bounds every accepted
//! connection gets. Shared by the request and event sockets (`server`) and the agents'
//! socket (`agents`).

use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use zeromq::Socket;

use super::{ZmqError, check_endpoint};

/// How long an accepted connection may take for the ZMTP greeting and READY before it is
/// closed, so that a peer that connects and sends nothing holds nothing for long.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest `sun_path` of a Unix socket (108 bytes with the terminating NUL on Linux).
const MAX_IPC_PATH: usize = 107;

/// Binds `socket` to `endpoint`, explaining failures in terms the user can act on.
pub(super) async fn bind<S: Socket>(
    socket: &mut S,
    endpoint: &str,
) -> Result<zeromq::Endpoint, ZmqError> {
    let parsed = check_endpoint(endpoint)?;
    let bind_error = |reason: String| ZmqError::Bind {
        endpoint: endpoint.to_string(),
        reason,
    };
    if let zeromq::Endpoint::Ipc(Some(path)) = &parsed {
        if path.as_os_str().len() > MAX_IPC_PATH {
            return Err(bind_error(format!(
                "the socket path is {} bytes long but Unix sockets allow at most {MAX_IPC_PATH}; \
                 use a shorter data directory or listen on tcp://",
                path.as_os_str().len()
            )));
        }
        remove_stale_socket(path).map_err(bind_error)?;
    }
    socket.bind(endpoint).await.map_err(|e| {
        bind_error(match &e {
            zeromq::ZmqError::Network(io) if io.kind() == ErrorKind::AddrInUse => {
                "the address is in use: another process (perhaps another opsconsole principal) \
                 listens there; stop it or choose another address"
                    .to_string()
            }
            zeromq::ZmqError::Network(io) if io.kind() == ErrorKind::PermissionDenied => {
                format!("permission denied ({io}); choose an address this user may listen on")
            }
            zeromq::ZmqError::Network(io) if io.kind() == ErrorKind::AddrNotAvailable => {
                format!("{io}; the host is not an address of this machine")
            }
            other => other.to_string(),
        })
    })
}

/// Removes a Unix socket file nobody listens on any more (its principal died without
/// cleaning up), so that the bind does not fail with "address in use".
fn remove_stale_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;

    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        // Not ours to delete; the bind reports the conflict.
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(
            "another process is listening on this socket; is another opsconsole principal \
             running on this data directory?"
                .to_string(),
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale socket left by a principal that stopped");
            std::fs::remove_file(path).map_err(|e| {
                format!("a stale socket file is in the way and cannot be removed ({e})")
            })
        }
        // Anything else (permissions, ...) is reported by the bind itself.
        Err(_) => Ok(()),
    }
}

/// The first bytes of a peer identity, for logs.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
