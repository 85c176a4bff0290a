//! Finds the principal that owns a data dir, if one is running.

use std::path::Path;
use std::time::Duration;

use crate::protocol::api::ClientExt;
use crate::protocol::zmq::{Endpoints, ZmqClient};

/// How long a command waits for a principal's answer before deciding none is running.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time limit of ordinary requests once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the principal running for `data_dir`, or `None` when none answers.
pub async fn running_principal(data_dir: &Path) -> Option<ZmqClient> {
    let endpoints = Endpoints::for_data_dir(data_dir);
    let socket = socket_file(&endpoints.requests)?;
    if !Path::new(socket).exists() {
        return None;
    }
    // A socket file nobody listens on (left by a crash) refuses at once; without this check
    // every command would wait out the probe timeout.
    if std::os::unix::net::UnixStream::connect(socket).is_err() {
        return None;
    }
    let probe = ZmqClient::connect(&endpoints, PROBE_TIMEOUT).await.ok()?;
    probe.status().await.ok()?;
    drop(probe);
    ZmqClient::connect(&endpoints, REQUEST_TIMEOUT).await.ok()
}

/// The path of an `ipc://` endpoint.
pub fn socket_file(endpoint: &str) -> Option<&str> {
    endpoint.strip_prefix("ipc://")
}

/// Removes the socket files of `endpoints` (on a clean stop, so that later commands do not
/// try to reach a principal that is gone).
pub fn remove_socket_files(endpoints: &Endpoints) {
    for e in [&endpoints.requests, &endpoints.events] {
        if let Some(path) = socket_file(e) {
            let _ = std::fs::remove_file(path);
        }
    }
}
