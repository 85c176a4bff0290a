//! The probes' IO: one [`Prober`] runs any [`Probe`] within its timeout and says what it saw.
//!
//! Only tcp, tls and dns are built so far; the other kinds answer with a clear error (see the
//! report on branch `probes`).

mod dns;
mod tcp;
#[cfg(test)]
mod tests;
mod tls;

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::protocol::check::{CheckResult, Probe};

/// Runs checks; cheap to clone, so that every monitor shares one.
#[derive(Debug, Clone, Default)]
pub struct Prober {}

impl Prober {
    /// A prober with its shared clients.
    pub fn new() -> Self {
        Self {}
    }

    /// Runs `probe`, never for longer than `timeout`: past it the result is a failure that
    /// says which phase it was in.
    pub async fn run(&self, probe: &Probe, timeout: Duration) -> CheckResult {
        let started = Utc::now();
        let t0 = Instant::now();
        let work = async {
            match probe {
                Probe::Tcp(p) => tcp::run(p, t0).await,
                Probe::Tls(p) => tls::run(p, t0).await,
                Probe::Dns(p) => dns::run(p, t0).await,
                Probe::Push(_) | Probe::Workflow(_) => CheckResult::failed(
                    None,
                    t0.elapsed(),
                    format!(
                        "a {} check is not a network probe: the principal judges it",
                        probe.kind()
                    ),
                ),
                other => CheckResult::failed(
                    None,
                    t0.elapsed(),
                    format!("{} checks are not built yet", other.kind()),
                ),
            }
        };
        let mut result = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                CheckResult::failed(None, t0.elapsed(), format!("timed out after {timeout:?}"))
            }
        };
        result.started = Some(started);
        result
    }
}

/// Resolves `host:port` to its first address, timing it (`None` when `host` is an address).
async fn resolve(
    host: &str,
    port: u16,
) -> Result<(std::net::SocketAddr, Option<Duration>), String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(((ip, port).into(), None));
    }
    let t = Instant::now();
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let addr = addrs
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    Ok((addr, Some(t.elapsed())))
}

/// The ring crypto provider (it compiles with the C compiler alone, unlike aws-lc).
pub(crate) fn ring_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    // Deprecated in 0.23.48 only for lacking post-quantum key exchange; ring is the provider
    // this build can compile, and classic key exchange is what monitored servers offer.
    #[allow(deprecated)]
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
