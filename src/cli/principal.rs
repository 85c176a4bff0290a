//! `opsconsole principal`: the long-running service that owns a data dir.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::{Dirs, EXIT_FAILED, EXIT_INVALID, fail};
use crate::principal::bootstrap;
use crate::protocol::api::Client;
use crate::protocol::zmq::{self, Endpoints};

/// Options of `opsconsole principal`.
#[derive(Debug, Clone)]
pub struct PrincipalOptions {
    /// Extra endpoint, e.g. `tcp://127.0.0.1:7400`; beyond loopback only with CURVE.
    pub listen: Option<String>,
    /// The authorized-keys file: CURVE on `listen`.
    pub keys: Option<std::path::PathBuf>,
    /// Agent slots.
    pub slots: usize,
    /// SIGTERM-to-SIGKILL grace.
    pub kill_grace: Duration,
    /// How often remote agents heartbeat; three missed ones lose the lease.
    pub agent_heartbeat: Duration,
    /// Where push monitors' ping URLs listen (`PORT` alone: loopback).
    pub ping_listen: Option<String>,
}

/// The address of `--ping-listen`: `HOST:PORT`, or `PORT` alone on loopback.
pub fn ping_address(text: &str) -> Result<std::net::SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("--ping-listen {text}: not `IP:PORT` or `PORT` (e.g. 127.0.0.1:8091)"))
}

/// True for endpoints that only this machine can reach.
fn is_loopback(endpoint: &str) -> bool {
    match endpoint.strip_prefix("tcp://") {
        Some(rest) => {
            let host = rest.rsplit_once(':').map(|(h, _)| h).unwrap_or(rest);
            matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
        }
        None => endpoint.starts_with("ipc://"),
    }
}

/// Runs until SIGINT or SIGTERM, then stops the task processes (their runs resume when a
/// principal next starts here), flushes the store and exits 0.
pub async fn principal(dirs: &Dirs, opts: PrincipalOptions) -> ExitCode {
    let ping_addr = match opts.ping_listen.as_deref().map(ping_address).transpose() {
        Ok(a) => a,
        Err(e) => return fail(EXIT_INVALID, e),
    };
    let mut endpoints = vec![Endpoints::for_data_dir(&dirs.data)];
    let ring = match &opts.keys {
        None => None,
        Some(file) => {
            let server = match zmq::keys::server_pair(&dirs.data) {
                Ok(pair) => pair,
                Err(e) => return fail(EXIT_FAILED, format!("the principal's key pair: {e}")),
            };
            match zmq::keys::KeyRing::load(server, file) {
                Ok(ring) => Some(Arc::new(ring)),
                Err(e) => return fail(EXIT_INVALID, format!("--keys: {e}")),
            }
        }
    };
    if let Some(listen) = &opts.listen {
        if !is_loopback(listen) && ring.is_none() {
            return fail(
                EXIT_INVALID,
                format!(
                    "--listen {listen}: an address other than loopback (127.0.0.1, ::1, \
                     localhost) needs --keys FILE (CURVE: encrypted, and only the keys listed \
                     there connect); or reach this machine through an SSH tunnel"
                ),
            );
        }
        match Endpoints::from_listen(listen) {
            Ok(e) => endpoints.push(e),
            Err(e) => return fail(EXIT_INVALID, format!("--listen {listen}: {e}")),
        }
    }
    // Opening the store takes the data dir's lock, so past this point no other principal owns
    // it and a socket file left by a crashed one can be replaced.
    // Until it listens, commands that find the file held wait for it rather than fail.
    let starting = bootstrap::mark_starting(&dirs.data);
    let principal = match bootstrap::start_embedded(
        dirs,
        opts.slots,
        opts.kill_grace,
        None,
        false,
        opts.agent_heartbeat,
    ) {
        Ok(p) => Arc::new(p),
        Err(e) => return fail(EXIT_FAILED, e),
    };
    bootstrap::remove_socket_files(&endpoints[0]);
    let stop = CancellationToken::new();
    let client: Arc<dyn Client> = principal.clone();
    for (i, e) in endpoints.iter().enumerate() {
        // The data dir's socket is guarded by the file system; the extra endpoint by CURVE
        // (or, without --keys, by being loopback).
        let gate = Some(principal.agent_gate());
        let served = match (&ring, i) {
            (Some(ring), 1..) => {
                zmq::serve_principal_curve(e, client.clone(), stop.clone(), ring.clone(), gate)
                    .await
            }
            _ => zmq::serve_principal(e, client.clone(), stop.clone(), gate).await,
        };
        match served {
            Ok(bound) => crate::tell!(
                "principal (pid {}) listening on {} (events on {}, agents on {}){}",
                std::process::id(),
                bound.endpoints.requests,
                bound.endpoints.events,
                bound.agents.as_deref().unwrap_or("-"),
                match (i, &ring) {
                    (1.., Some(ring)) => format!(
                        ", CURVE: keys of {} only; server public key {}",
                        opts.keys
                            .as_deref()
                            .unwrap_or(std::path::Path::new("-"))
                            .display(),
                        zmq::keys::public_text(&ring.server)
                    ),
                    _ => String::new(),
                }
            ),
            Err(err) => {
                principal.shutdown().await;
                return fail(EXIT_FAILED, err);
            }
        }
    }
    if let Some(addr) = ping_addr {
        match principal
            .listen_for_pings(addr, &dirs.data, stop.clone())
            .await
        {
            Ok(addr) => crate::tell!(
                "ping URLs on http://{addr}/ping/NAME/SECRET (`opsconsole monitor show NAME` \
                 prints a push monitor's)"
            ),
            Err(err) => {
                stop.cancel();
                principal.shutdown().await;
                bootstrap::remove_socket_files(&endpoints[0]);
                return fail(EXIT_FAILED, err);
            }
        }
    }
    drop(starting);
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        principal.shutdown().await;
        return fail(EXIT_FAILED, "cannot install signal handlers");
    };
    crate::tell!("Ctrl-C or SIGTERM stops it; active runs are resumed by the next principal.");
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
        why = principal.died() => {
            // Serving sockets over a dead engine would answer nothing forever; exit so that a
            // supervisor (systemd, a container runtime) restarts us.
            stop.cancel();
            bootstrap::remove_socket_files(&endpoints[0]);
            return fail(EXIT_FAILED, format!("the principal's engine stopped: {why}"));
        }
    }
    crate::tell!(
        "stopping: active runs resume when a principal next starts here; flushing history \
         (Ctrl-C or SIGTERM again kills what is left at once)..."
    );
    let stopping = principal.shutdown_for_restart();
    tokio::pin!(stopping);
    tokio::select! {
        () = &mut stopping => {}
        _ = async { tokio::select! { _ = sigint.recv() => {}, _ = sigterm.recv() => {} } } => {
            crate::tell!("second signal: killing every process that is left at once");
            principal.kill_now().await;
            stopping.await;
        }
    }
    stop.cancel();
    bootstrap::remove_socket_files(&endpoints[0]);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_is_accepted() {
        assert!(super::is_loopback("tcp://127.0.0.1:7400"));
        assert!(super::is_loopback("tcp://[::1]:7400"));
        assert!(super::is_loopback("ipc:///tmp/x.sock"));
        assert!(!super::is_loopback("tcp://0.0.0.0:7400"));
        assert!(!super::is_loopback("tcp://10.1.2.3:7400"));
    }

    #[test]
    fn a_ping_address_alone_is_a_loopback_port() {
        assert_eq!(
            super::ping_address("8091").map(|a| a.to_string()),
            Ok("127.0.0.1:8091".into())
        );
        assert_eq!(
            super::ping_address("[::1]:80").map(|a| a.to_string()),
            Ok("[::1]:80".into())
        );
        assert!(super::ping_address("localhost").is_err());
    }
}
