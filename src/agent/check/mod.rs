//! The probes' IO: one [`Prober`] runs any [`Probe`] within its timeout and says what it saw.
//!
//! Every check of the process goes through one `Prober` (it is a cheap handle): one HTTP
//! connection pool, one ICMP socket, one bound on checks in flight, and the executor's setup
//! for command checks. Readiness probes of services (`agent/ready.rs`) use it too, so that all
//! check IO lives here.

mod chain;
mod command;
mod dns;
mod http;
mod icmp;
mod queue;
mod tcp;
#[cfg(test)]
mod tests;
mod tls;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::protocol::check::{CheckResult, HttpMethod, HttpProbe, Probe};

pub(crate) use chain::ChainKeeper;
pub use icmp::IcmpMode;
pub use queue::CheckQueue;
#[cfg(test)]
pub(crate) use tests::self_signed_acceptor;

/// Checks in flight at once unless the prober is built with another bound.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// How a [`Prober`] is built.
#[derive(Clone)]
pub struct ProberConfig {
    /// Certificate authorities that https checks trust (the Mozilla set by default).
    pub roots: Arc<rustls::RootCertStore>,
    /// Most checks in flight at once (each holds at most one socket or one process).
    pub max_in_flight: usize,
    /// Most idle keep-alive connections kept in the HTTP pool, all hosts together.
    pub max_idle: usize,
    /// Where command checks run and how their processes are watched.
    pub exec: ExecSetup,
}

/// What command checks need from the agent that runs them.
#[derive(Clone, Default)]
pub struct ExecSetup {
    /// A relative `cwd` of a command check is relative to it (`None`: this process's).
    pub workdir: Option<PathBuf>,
    /// The watchdog that stops their process groups if this process dies.
    pub reaper: Option<Arc<super::reaper::Reaper>>,
    /// Cancelled to kill every command check's processes at once (the end of the process).
    pub kill: CancellationToken,
}

impl Default for ProberConfig {
    /// Bounds from this process's open-files limit: checks in flight and idle connections
    /// together take at most half of it, so that a million monitors never leave the rest of
    /// the process (the store, its sockets, task pipes) without a descriptor.
    fn default() -> Self {
        let (max_in_flight, max_idle) = bounds_for(open_files_limit());
        Self {
            roots: Arc::new(webpki_roots()),
            max_in_flight,
            max_idle,
            exec: ExecSetup::default(),
        }
    }
}

/// This process's soft limit of open files (1,024, the usual default, if it cannot be read).
fn open_files_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}

/// Checks in flight and idle keep-alive connections for `limit` open files: a quarter of it
/// in flight (at most [`DEFAULT_MAX_IN_FLIGHT`]) and up to four idle connections per check in
/// flight (a pool smaller than the hosts' share of the checks in flight makes and drops
/// connections all the time), within half of the limit.
fn bounds_for(limit: u64) -> (usize, usize) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let in_flight = (limit / 4).clamp(16, DEFAULT_MAX_IN_FLIGHT);
    let idle = (4 * in_flight)
        .min((limit / 2).saturating_sub(in_flight))
        .max(16);
    (in_flight, idle)
}

/// The Mozilla root certificates (webpki-roots).
pub fn webpki_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Runs checks; cheap to clone, so that every monitor shares one pool, one ICMP socket and
/// one bound on checks in flight.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

struct Inner {
    http: http::Pool,
    icmp: icmp::Shared,
    exec: ExecSetup,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("max_in_flight", &self.inner.max_in_flight)
            .field("idle_connections", &self.inner.http.idle_count())
            .finish_non_exhaustive()
    }
}

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

/// What one try of a webhook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTry {
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// Why the try failed before or instead of a 2xx status.
    pub error: Option<String>,
    /// How long the try took.
    pub took: Duration,
}

impl WebhookTry {
    /// The receiver answered 2xx.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// First pause between two tries of a webhook; it doubles up to [`WEBHOOK_MAX_PAUSE`].
const WEBHOOK_FIRST_PAUSE: Duration = Duration::from_millis(250);
/// Longest pause between two tries of a webhook.
const WEBHOOK_MAX_PAUSE: Duration = Duration::from_secs(2);
/// Most of a webhook receiver's answer that is read.
const WEBHOOK_MAX_BODY: u64 = 64 << 10;
/// Past its own timeout, how long a command check may take to be killed and reaped before the
/// prober gives up on it (dropping it kills its leader; the orphan sweeper the rest).
const COMMAND_KILL_MARGIN: Duration = Duration::from_secs(1);

impl Prober {
    /// A prober with the default configuration (Mozilla roots, up to 1,024 checks in flight
    /// as the open-files limit allows).
    pub fn new() -> Self {
        Self::build(ProberConfig::default())
    }

    /// A prober with its shared clients: one HTTP pool trusting `config.roots`, at most
    /// `config.max_in_flight` checks at once, command checks run as `config.exec` says.
    pub fn build(config: ProberConfig) -> Self {
        let max_in_flight = config.max_in_flight.max(1);
        Self {
            inner: Arc::new(Inner {
                http: http::Pool::new(config.roots, config.max_idle),
                icmp: icmp::Shared::default(),
                exec: config.exec,
                in_flight: Arc::new(Semaphore::new(max_in_flight)),
                max_in_flight,
            }),
        }
    }

    /// One prober for the whole process, for callers that are not handed one (readiness
    /// probes of services started by the engine).
    pub fn shared() -> Self {
        static SHARED: OnceLock<Prober> = OnceLock::new();
        SHARED.get_or_init(Prober::new).clone()
    }

    /// The most checks this prober runs at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight
    }

    /// Idle keep-alive connections in the pool now.
    pub fn idle_connections(&self) -> usize {
        self.inner.http.idle_count()
    }

    /// Runs `probe`, never for longer than `timeout`: past it the result is a failure that
    /// says which phase it was in. Waits first for a place among the checks in flight.
    pub async fn run(&self, probe: &Probe, timeout: Duration) -> CheckResult {
        let _permit = self.inner.in_flight.acquire().await;
        self.run_admitted(probe, timeout).await
    }

    /// Runs every check of `checks` (a key, the probe, its timeout), at most
    /// [`Prober::max_in_flight`] at once (shared with every other caller of this prober), and
    /// sends each result with its key as it comes. Checks are taken from the iterator only as
    /// places free up, so a million of them never hold more than that many sockets; the
    /// results wait in a channel as deep as the bound. Dropping the receiver stops taking new
    /// ones.
    pub fn run_many<K, I>(&self, checks: I) -> mpsc::Receiver<(K, CheckResult)>
    where
        K: Send + 'static,
        I: IntoIterator<Item = (K, Probe, Duration)>,
        I::IntoIter: Send + 'static,
    {
        let (tx, rx) = mpsc::channel(self.inner.max_in_flight);
        let me = self.clone();
        let checks = checks.into_iter();
        tokio::spawn(async move {
            for (key, probe, timeout) in checks {
                let Ok(permit) = me.inner.in_flight.clone().acquire_owned().await else {
                    return;
                };
                if tx.is_closed() {
                    return;
                }
                let (me, tx) = (me.clone(), tx.clone());
                tokio::spawn(async move {
                    let result = me.run_admitted(&probe, timeout).await;
                    drop(permit);
                    let _ = tx.send((key, result)).await;
                });
            }
        });
        rx
    }

    async fn run_admitted(&self, probe: &Probe, timeout: Duration) -> CheckResult {
        let started = Utc::now();
        let t0 = Instant::now();
        let deadline = Deadline::after(timeout);
        let work = async {
            match probe {
                Probe::Tcp(p) => tcp::run(p, t0, deadline).await,
                Probe::Tls(p) => tls::run(p, t0, deadline).await,
                Probe::Dns(p) => dns::run(p, t0).await,
                Probe::Http(p) => http::run(&self.inner.http, p, t0, deadline).await,
                Probe::Icmp(p) => match self.inner.icmp.get().await {
                    Ok(pinger) => icmp::run(&pinger, p, t0, deadline).await,
                    Err(why) => CheckResult::failed(None, t0.elapsed(), why),
                },
                Probe::Command(p) => command::run(&self.inner.exec, p, t0, timeout).await,
                Probe::Push(_) | Probe::Workflow(_) => CheckResult::failed(
                    None,
                    t0.elapsed(),
                    format!(
                        "a {} check is not a network probe: the principal judges it",
                        probe.kind()
                    ),
                ),
            }
        };
        // Network probes keep their own deadline (to name the phase and keep what they saw
        // so far); a command check is given a moment past it to be killed and reaped. This is
        // the backstop for every kind.
        let backstop = match probe {
            Probe::Command(_) => timeout.saturating_add(COMMAND_KILL_MARGIN),
            _ => timeout,
        };
        let mut result = match tokio::time::timeout(backstop, work).await {
            Ok(r) => r,
            Err(_) => {
                CheckResult::failed(None, t0.elapsed(), format!("timed out after {timeout:?}"))
            }
        };
        result.started = Some(started);
        result
    }

    /// Whether ICMP checks can run here, and through which socket; the error names
    /// `net.ipv4.ping_group_range` (for loading monitors: say it once, at load time).
    pub async fn icmp_mode(&self) -> Result<IcmpMode, String> {
        self.inner.icmp.get().await.map(|p| p.mode())
    }

    /// POSTs `body` as JSON to `url` with `headers`, each try within `timeout`, and tries again
    /// up to `retries` more times (250 ms apart, doubling up to 2 s) until one answers 2xx.
    /// Returns every try, in order.
    pub async fn post_webhook(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &serde_json::Value,
        timeout: Duration,
        retries: u32,
    ) -> Vec<WebhookTry> {
        let mut all_headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        all_headers.extend(
            headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
                .cloned(),
        );
        // Headers the user gave for the content type win over ours.
        if let Some(ct) = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            all_headers[0] = ct.clone();
        }
        let probe = Probe::Http(HttpProbe {
            url: url.to_string(),
            method: HttpMethod::Post,
            headers: all_headers,
            body: Some(body.to_string()),
            follow_redirects: false,
            insecure_skip_verify: false,
            client_cert: None,
            max_body: WEBHOOK_MAX_BODY,
        });
        let mut tries = Vec::new();
        let mut pause = WEBHOOK_FIRST_PAUSE;
        for n in 0..=retries {
            if n > 0 {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(WEBHOOK_MAX_PAUSE);
            }
            let r = self.run(&probe, timeout).await;
            let error = r.error.or_else(|| match r.status {
                Some(s) if (200..300).contains(&s) => None,
                Some(s) => Some(format!("answered {s}")),
                None => Some("no answer".into()),
            });
            let t = WebhookTry {
                status: r.status,
                error,
                took: r.response_time,
            };
            let done = t.succeeded();
            tries.push(t);
            if done {
                break;
            }
        }
        tries
    }
}

/// When a check must be over, and how long it was given (for the message).
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    at: tokio::time::Instant,
    total: Duration,
}

impl Deadline {
    fn after(total: Duration) -> Self {
        Self {
            at: tokio::time::Instant::now() + total,
            total,
        }
    }

    /// `work`, or an error naming `phase` if the deadline comes first.
    pub(super) async fn within<T>(
        &self,
        phase: &str,
        work: impl Future<Output = T>,
    ) -> Result<T, String> {
        tokio::time::timeout_at(self.at, work)
            .await
            .map_err(|_| format!("timed out after {:?} in phase {phase}", self.total))
    }
}

/// Connects to `addr`, refusing a connection to itself: a connect to a local port in the
/// ephemeral range where nothing listens can be given that port as its source (TCP
/// simultaneous open) and would pass for a service that is up.
async fn connect(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    if stream.local_addr()? == stream.peer_addr()? {
        // With a reset: a normal close leaves a TIME_WAIT that holds the port for a minute,
        // and the service could not bind it when it comes back.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused (the connect reached itself: nothing listens there)",
        ));
    }
    Ok(stream)
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
