//! The reference of `bench monitors`: the same probes with the same concurrency as a plain
//! async loop (tokio connects; one hyper request per check on a kept-alive connection, over
//! rustls for https), with no monitor machinery: no spec, schedule, judging or store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::targets::TargetKind;

/// What the raw loop did.
#[derive(Debug, Clone, Copy)]
pub struct RawFigures {
    /// Checks that passed (connected; or answered 200).
    pub passed: u64,
    /// Checks that failed (refused, timed out, another status).
    pub failed: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

impl RawFigures {
    /// Checks (passed or not) per second.
    pub fn checks_per_s(&self) -> f64 {
        (self.passed + self.failed) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How fast the raw loop goes.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each loop starts its next check as soon as its last one is over: the loop's capacity.
    FlatOut,
    /// `count` probes, each once per `every`, started evenly over it: what the monitors are
    /// asked to do (a loop that cannot keep up falls behind and runs flat out).
    Asked { count: usize, every: Duration },
}

/// Runs checks of `kind` against `targets` (in turn) from `concurrency` loops for `duration`,
/// each check within `timeout`, as fast as `pace` says.
pub async fn run(
    kind: TargetKind,
    targets: &[SocketAddr],
    concurrency: usize,
    duration: Duration,
    timeout: Duration,
    pace: Pace,
) -> anyhow::Result<RawFigures> {
    anyhow::ensure!(!targets.is_empty(), "no targets");
    let targets: Arc<[SocketAddr]> = targets.into();
    let passed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config()?));
    let t0 = Instant::now();
    let start = tokio::time::Instant::now();
    let end = start + duration;
    let mut loops = tokio::task::JoinSet::new();
    for w in 0..concurrency.max(1) {
        let (targets, passed, failed, tls) =
            (targets.clone(), passed.clone(), failed.clone(), tls.clone());
        loops.spawn(async move {
            // Each loop keeps its own connection to its own target, as a pool would keep one
            // per check in flight; tcp rotates over every target.
            let mine = targets[w % targets.len()];
            let mut conn: Option<SendRequest<Full<Bytes>>> = None;
            let mut k = w;
            // Paced, loop `w` takes the checks w, w + concurrency, ... of the asked sequence
            // (each of `count` probes once per `every`), so it keeps to one target too.
            let mut nth = w as u64;
            while tokio::time::Instant::now() < end {
                if let Pace::Asked { count, every } = pace {
                    let due = start + every.mul_f64(nth as f64 / count.max(1) as f64);
                    nth += concurrency as u64;
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                }
                let ok = match kind {
                    TargetKind::Tcp => {
                        k = (k + concurrency) % targets.len();
                        let at = targets[k];
                        matches!(
                            tokio::time::timeout(timeout, TcpStream::connect(at)).await,
                            Ok(Ok(_))
                        )
                    }
                    TargetKind::Http | TargetKind::Https => {
                        let tls = (kind == TargetKind::Https).then_some(&tls);
                        tokio::time::timeout(timeout, request(&mut conn, mine, tls))
                            .await
                            .unwrap_or(false)
                    }
                };
                if ok { &passed } else { &failed }.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    conn = None;
                }
            }
        });
    }
    while loops.join_next().await.is_some() {}
    Ok(RawFigures {
        passed: passed.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed: t0.elapsed(),
    })
}

/// One GET on `conn` (made first if there is none); true on a 200 with its body read.
async fn request(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    at: SocketAddr,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> bool {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = connect(at, tls).await;
    }
    let Some(sender) = conn.as_mut() else {
        return false;
    };
    if sender.ready().await.is_err() {
        *conn = None;
        return false;
    }
    let req = hyper::Request::get("/")
        .header(hyper::header::HOST, at.to_string())
        .body(Full::new(Bytes::new()));
    let Ok(req) = req else { return false };
    match sender.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status() == hyper::StatusCode::OK;
            ok && resp.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

async fn connect(
    at: SocketAddr,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Option<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(at).await.ok()?;
    let _ = tcp.set_nodelay(true);
    let sender = match tls {
        None => {
            let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.ok()?;
            tokio::spawn(conn);
            sender
        }
        Some(tls) => {
            let name = ServerName::from(at.ip());
            let stream = tls.connect(name, tcp).await.ok()?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
            tokio::spawn(conn);
            sender
        }
    };
    Some(sender)
}

/// A TLS client that takes any certificate but still checks the handshake's signatures, as
/// a check with `insecure_skip_verify` does.
fn client_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = crate::agent::check::ring_provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(crate::agent::check::ChainKeeper::new(None))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::targets::Targets;

    #[tokio::test]
    async fn the_raw_loop_counts_checks_of_every_kind() {
        for kind in [TargetKind::Tcp, TargetKind::Http, TargetKind::Https] {
            let targets = Targets::start(kind, 4).expect("targets");
            let f = run(
                kind,
                targets.addrs(),
                8,
                Duration::from_millis(300),
                Duration::from_secs(5),
                Pace::FlatOut,
            )
            .await
            .expect("raw loop");
            println!(
                "raw {}: {} passed, {} failed in {:?} ({:.0}/s)",
                kind.name(),
                f.passed,
                f.failed,
                f.elapsed,
                f.checks_per_s()
            );
            assert!(f.passed > 8, "{kind:?}: {f:?}");
            assert_eq!(f.failed, 0, "{kind:?}: {f:?}");
        }
        // A closed port fails, and is counted.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let f = run(
            TargetKind::Tcp,
            &[closed],
            2,
            Duration::from_millis(100),
            Duration::from_secs(5),
            Pace::FlatOut,
        )
        .await
        .expect("raw loop");
        assert!(f.failed > 0 && f.passed == 0, "{f:?}");
        // Paced, it does what it is asked and no more: 400 probes every 2 s for 1 s is 200.
        let targets = Targets::start(TargetKind::Http, 4).expect("targets");
        let f = run(
            TargetKind::Http,
            targets.addrs(),
            8,
            Duration::from_secs(1),
            Duration::from_secs(5),
            Pace::Asked {
                count: 400,
                every: Duration::from_secs(2),
            },
        )
        .await
        .expect("paced raw loop");
        assert_eq!((f.passed, f.failed), (200, 0), "{f:?}");
    }
}
