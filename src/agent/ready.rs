//! Readiness probes of supervised services: the IO half of `ready:`. [`until_ready`] polls a
//! tcp, http or command probe until it passes (tcp and http through the agent's [`Prober`],
//! where all check IO lives); [`NotifySocket`] receives sd_notify's
//! `READY=1`; [`LogMatch`] tests output lines. None of them enforces the readiness `timeout`:
//! the supervision state machine arms that timer, and its caller drops the probe's future when
//! it fires, which stops every attempt in flight (a command probe's process group included).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

use super::check::Prober;
use super::lock;
use crate::protocol::check::{HttpMethod, HttpProbe, Probe, TcpProbe};
use crate::spec::{CommandSpec, ReadyProbe, RenderContext};

/// First pause between two failed attempts; it doubles after each one.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// Most of an HTTP answer's body read: readiness looks at the status only.
const MAX_READY_BODY: u64 = 1024;
/// Largest sd_notify datagram read; the rest of a longer one is cut off by the kernel.
const MAX_DATAGRAM: usize = 4096;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// How long one attempt may take before it counts as failed (and is stopped).
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// A TCP connect, or an HTTP connect + request + status line.
    net: Duration,
    /// A command, from spawn to exit.
    command: Duration,
}

/// Per-attempt limits: short enough that a hung attempt does not eat the whole readiness
/// timeout (30 s by default), long enough for a loaded machine.
const LIMITS: Limits = Limits {
    net: Duration::from_secs(2),
    command: Duration::from_secs(5),
};

/// A probe that can never pass by polling; the service's readiness cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// A URL this probe cannot send a request to.
    #[error("readiness URL `{url}`: {why}")]
    BadUrl {
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A command probe without a program.
    #[error("the readiness command is empty")]
    EmptyCommand,
    /// A log or notify probe, which is passed by the service's output or datagrams, not polled.
    #[error(
        "{0} readiness is not polled: match output lines with LogMatch or wait on a NotifySocket"
    )]
    NotPolled(&'static str),
}

/// What a command probe runs with: the service's name, start number, environment and
/// directory, as the service itself got them. It also keeps the last failed attempt's text.
#[derive(Debug, Default)]
pub struct ProbeContext {
    /// The service's name (`{{ task.name }}` in the command).
    pub service: String,
    /// The start number of the service (`{{ run.id }}` in the command).
    pub start_no: u64,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Working directory (`None`: this process's).
    pub cwd: Option<PathBuf>,
    /// Why the last attempt failed; a mutex so the caller can read it after the timeout.
    last_failure: Mutex<Option<String>>,
    /// Runs the tcp and http attempts.
    prober: Prober,
}

impl ProbeContext {
    /// A context for start `start_no` of `service`, with its environment and directory.
    pub fn new(
        service: impl Into<String>,
        start_no: u64,
        env: Vec<(String, String)>,
        cwd: Option<PathBuf>,
    ) -> Self {
        Self {
            service: service.into(),
            start_no,
            env,
            cwd,
            last_failure: Mutex::new(None),
            prober: Prober::shared(),
        }
    }

    /// The same context with its tcp and http attempts run by `prober` (the process-wide
    /// [`Prober::shared`] otherwise).
    pub fn with_prober(mut self, prober: Prober) -> Self {
        self.prober = prober;
        self
    }

    /// Why the last attempt failed (`None` before the first failure), for a timeout's message.
    pub fn last_failure(&self) -> Option<String> {
        lock(&self.last_failure).clone()
    }

    fn failed(&self, why: String) {
        *lock(&self.last_failure) = Some(why);
    }
}

/// Polls `probe` until it passes (50 ms between attempts, doubling up to 1 s), each attempt
/// bounded in time; errs at once if it can never pass. Cancel by dropping the future.
pub async fn until_ready(probe: &ReadyProbe, ctx: &ProbeContext) -> Result<(), ProbeError> {
    poll(probe, ctx, LIMITS).await
}

async fn poll(probe: &ReadyProbe, ctx: &ProbeContext, limits: Limits) -> Result<(), ProbeError> {
    let target = Target::of(probe, ctx)?;
    let mut pause = FIRST_PAUSE;
    loop {
        match target.attempt(ctx, limits).await {
            Ok(()) => return Ok(()),
            Err(why) => ctx.failed(why),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// A probe checked once and rendered, ready for repeated attempts.
enum Target {
    Tcp { host: String, port: u16 },
    Http { url: String, target: HttpTarget },
    Command(Vec<String>),
}

impl Target {
    fn of(probe: &ReadyProbe, ctx: &ProbeContext) -> Result<Self, ProbeError> {
        Ok(match probe {
            ReadyProbe::Tcp { host, port } => Target::Tcp {
                host: host.clone(),
                port: *port,
            },
            ReadyProbe::Http { url } => Target::Http {
                url: url.clone(),
                target: HttpTarget::parse(url)?,
            },
            ReadyProbe::Command(spec) => {
                let argv = render(spec, ctx);
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(ProbeError::EmptyCommand);
                }
                Target::Command(argv)
            }
            ReadyProbe::Log(_) => return Err(ProbeError::NotPolled("log")),
            ReadyProbe::Notify => return Err(ProbeError::NotPolled("notify")),
        })
    }

    async fn attempt(&self, ctx: &ProbeContext, limits: Limits) -> Result<(), String> {
        match self {
            Target::Tcp { host, port } => {
                let probe = Probe::Tcp(TcpProbe {
                    host: host.clone(),
                    port: *port,
                    send: None,
                    expect: None,
                });
                // Accepted is all we ask; the connection is closed at once.
                let r = ctx.prober.run(&probe, limits.net).await;
                match r.error {
                    None => Ok(()),
                    Some(e) if e.starts_with("timed out") => Err(format!(
                        "connect to {host}:{port}: no answer within {:?}",
                        limits.net
                    )),
                    Some(e) if e.starts_with("connect to") => Err(e),
                    Some(e) => Err(format!("connect to {host}:{port}: {e}")),
                }
            }
            Target::Http { url, target } => {
                let r = ctx.prober.run(&http_probe(&target.url()), limits.net).await;
                match (r.status, r.error) {
                    (Some(code), _) if (200..300).contains(&code) => Ok(()),
                    (Some(code), _) => Err(format!("GET {url} answered {code}")),
                    (None, Some(e)) if e.starts_with("timed out") => {
                        Err(format!("GET {url}: no status line within {:?}", limits.net))
                    }
                    (None, Some(e)) => Err(format!("GET {url}: {e}")),
                    (None, None) => Err(format!("GET {url}: no answer")),
                }
            }
            Target::Command(argv) => run_command(argv, ctx, limits.command).await,
        }
    }
}

/// The probe command's argv, rendered like the service's own `run`.
fn render(spec: &CommandSpec, ctx: &ProbeContext) -> Vec<String> {
    // Services have no params; the checker rejects `{{ params.* }}` in their commands.
    let params = BTreeMap::new();
    let rctx = RenderContext {
        params: &params,
        run_id: ctx.start_no,
        task_name: &ctx.service,
    };
    spec.argv(&rctx)
}

/// A readiness GET: as kubelet's httpGet probes do, an https one does not verify the
/// certificate (readiness asks whether the service answers, not whether its chain is valid),
/// and the connection is not kept.
fn http_probe(url: &str) -> Probe {
    Probe::Http(HttpProbe {
        url: url.to_string(),
        method: HttpMethod::Get,
        headers: vec![
            ("User-Agent".into(), "opsconsole-ready".into()),
            ("Connection".into(), "close".into()),
        ],
        body: None,
        follow_redirects: false,
        insecure_skip_verify: true,
        client_cert: None,
        max_body: MAX_READY_BODY,
    })
}

/// Where an `http://` or `https://` URL's GET goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpTarget {
    https: bool,
    /// The URL's authority as written, for the `Host` header.
    authority: String,
    /// Path and query, at least `/`.
    path: String,
}

impl HttpTarget {
    fn parse(url: &str) -> Result<Self, ProbeError> {
        // Read again by the prober; checked here so that a bad URL fails at once.
        let bad = |why| ProbeError::BadUrl {
            url: url.to_string(),
            why,
        };
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        let (https, rest) = if lower.starts_with("https://") {
            (true, &url[8..])
        } else if lower.starts_with("http://") {
            (false, &url[7..])
        } else {
            return Err(bad("not an http:// URL"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| bad("unclosed `[` in the host"))?;
                match after {
                    "" => (host, None),
                    _ => (
                        host,
                        Some(
                            after
                                .strip_prefix(':')
                                .ok_or_else(|| bad("junk after `]`"))?,
                        ),
                    ),
                }
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if let Some(p) = port
            && !matches!(p.parse::<u16>(), Ok(p) if p > 0)
        {
            return Err(bad("the port is not a number from 1 to 65535"));
        }
        // The fragment stays with the client; the request target is path and query.
        let path = tail.split('#').next().unwrap_or_default();
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            // They would break the request line.
            return Err(bad("spaces or control characters in the path"));
        }
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Self {
            https,
            authority: authority.to_string(),
            path,
        })
    }

    /// The URL the prober gets: as written, without its fragment.
    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

/// A probe command's process, whose whole group is killed when this is dropped: after its
/// exit (so nothing it left in the background lingers), on overrun, or on cancel.
struct Group {
    child: Child,
    pgid: Option<Pid>,
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (the group is gone already) is the normal case after a clean exit.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        // `kill_on_drop` then has tokio kill and reap the leader if it is still running.
    }
}

/// One run of a probe command: passes when it exits 0 within `limit`.
async fn run_command(argv: &[String], ctx: &ProbeContext, limit: Duration) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(ctx.env.iter().map(|(k, v)| (k, v)))
        // Output is discarded: nothing to buffer, and a chatty probe cannot block on a pipe.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own group, so an overrun or a cancel also reaches what the command started.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &ctx.cwd {
        cmd.current_dir(dir);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("could not start `{program}`: {e}"))?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let mut group = Group { child, pgid };
    match tokio::time::timeout(limit, group.child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("`{program}` {}", describe(status))),
        Ok(Err(e)) => Err(format!("could not wait for `{program}`: {e}")),
        Err(_) => Err(format!("`{program}` still running after {limit:?}: killed")),
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => format!("ended with {status:?}"),
    }
}

/// Matches a `ready: { log: REGEX }` probe against output lines.
#[derive(Debug, Clone)]
pub struct LogMatch(regex::Regex);

impl LogMatch {
    /// A matcher for the probe's regex.
    pub fn new(re: regex::Regex) -> Self {
        Self(re)
    }

    /// True if `line` matches anywhere. Lines are matched as the executor splits them (one
    /// stdout or stderr line, without its newline, cut at 64 KiB), escape sequences and all:
    /// a service that colours its output needs a regex that allows for the ANSI codes.
    pub fn matches(&self, line: &str) -> bool {
        self.0.is_match(line)
    }
}

/// Where a [`NotifySocket`] is bound.
#[derive(Debug)]
enum Address {
    /// A socket file, removed on drop.
    File(PathBuf),
    /// A Linux abstract-namespace name (without the leading NUL); nothing to remove.
    Abstract(String),
}

/// An sd_notify socket for one service start: hand [`NotifySocket::env_value`] to the service
/// as `NOTIFY_SOCKET` and await [`NotifySocket::ready`]. Any local process that can reach the
/// address may send to it; the sender's credentials are not checked.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    address: Address,
}

impl NotifySocket {
    /// Binds a datagram socket with a unique name in `dir`, or in the abstract namespace when
    /// that path would exceed `sun_path` (107 bytes) or is not UTF-8. Needs a tokio runtime.
    pub fn bind(dir: &Path) -> io::Result<NotifySocket> {
        // The service may run elsewhere (its `cwd`), and sd_notify wants `/` or `@` first.
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()?.join(dir)
        };
        // The random part makes a clash unlikely; a few more tries make it harmless.
        for _ in 0..8 {
            let name = format!("opsconsole-notify-{:016x}", fastrand::u64(..));
            let path = dir.join(format!("{name}.sock"));
            let fits = path.to_str().is_some_and(|p| p.len() <= MAX_SOCKET_PATH);
            let bound = if fits {
                UnixDatagram::bind(&path).map(|socket| NotifySocket {
                    socket,
                    address: Address::File(path),
                })
            } else {
                bind_abstract(&name).map(|socket| NotifySocket {
                    socket,
                    address: Address::Abstract(name),
                })
            };
            match bound {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                other => return other,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free notify socket name after 8 tries",
        ))
    }

    /// The value for the service's `NOTIFY_SOCKET`: an absolute path, or `@name` for an
    /// abstract address (sd_notify(3) reads a leading `@` as the abstract namespace).
    pub fn env_value(&self) -> String {
        match &self.address {
            // `bind` chose a file only for a UTF-8 path.
            Address::File(path) => path.to_string_lossy().into_owned(),
            Address::Abstract(name) => format!("@{name}"),
        }
    }

    /// Completes when a datagram holds a `READY=1` line; other lines (`STATUS=`, `MAINPID=`,
    /// ...) are ignored, and a datagram is read up to 4 KiB. Cancel-safe.
    pub async fn ready(&self) -> io::Result<()> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let n = self.socket.recv(&mut buf).await?;
            if says_ready(&buf[..n]) {
                return Ok(());
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if let Address::File(path) = &self.address {
            // Gone already (a cleaned-up directory) is fine.
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(target_os = "linux")]
fn bind_abstract(name: &str) -> io::Result<UnixDatagram> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
    socket.set_nonblocking(true)?;
    UnixDatagram::from_std(socket)
}

#[cfg(not(target_os = "linux"))]
fn bind_abstract(_name: &str) -> io::Result<UnixDatagram> {
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "the notify socket path is too long and abstract sockets need Linux",
    ))
}

/// True if the newline-separated `KEY=VALUE` lines of a datagram include `READY=1`.
fn says_ready(datagram: &[u8]) -> bool {
    datagram
        .split(|&b| b == b'\n')
        .any(|line| line == b"READY=1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Template;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    /// Bound on every test; generous for a loaded 2-core machine.
    const BOUND: Duration = Duration::from_secs(20);

    fn ctx() -> ProbeContext {
        ProbeContext::new("api", 1, Vec::new(), None)
    }

    fn shell(script: &str) -> ReadyProbe {
        ReadyProbe::Command(CommandSpec::Shell(Template::literal(script)))
    }

    /// A port nothing listens on right now.
    async fn free_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    }

    /// Reads a request up to its blank line (bounded), returning its head.
    async fn read_head(stream: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    #[tokio::test]
    async fn tcp_ready_once_a_listener_appears() {
        let port = free_port().await;
        let server = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let l = TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("rebind");
            // Keep it open until the probe has connected.
            let _ = l.accept().await;
        });
        let probe = ReadyProbe::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let c = ctx();
        timeout(BOUND, until_ready(&probe, &c))
            .await
            .expect("ready in time")
            .expect("pollable");
        // It failed at least once before the listener was there.
        assert!(c.last_failure().is_some_and(|f| f.contains("connect to")));
        server.abort();
    }

    #[tokio::test]
    async fn http_ready_only_on_2xx() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let server = tokio::spawn(async move {
            for status in ["503 Service Unavailable", "200 OK"] {
                let (mut s, _) = l.accept().await.expect("accept");
                let head = read_head(&mut s).await;
                lock(&seen).push(head);
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let probe = ReadyProbe::Http {
            url: format!("http://127.0.0.1:{port}/health?deep=1#frag"),
        };
        let c = ctx();
        timeout(BOUND, until_ready(&probe, &c))
            .await
            .expect("ready in time")
            .expect("pollable");
        let heads = lock(&heads).clone();
        assert_eq!(heads.len(), 2, "ready on the second answer, not the first");
        assert!(
            heads[0].starts_with("GET /health?deep=1 HTTP/1.1\r\n"),
            "{}",
            heads[0]
        );
        assert!(heads[0].contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")));
        assert!(heads[0].contains("\r\nConnection: close\r\n"));
        assert!(
            c.last_failure()
                .is_some_and(|f| f.ends_with("answered 503"))
        );
        server.await.expect("server");
    }

    #[tokio::test]
    async fn http_silent_server_is_retried_and_the_probe_can_be_dropped() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let server = tokio::spawn(async move {
            // Accepts and never answers; holds every connection open.
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        let probe = ReadyProbe::Http {
            url: format!("http://127.0.0.1:{port}/"),
        };
        let c = ctx();
        let limits = Limits {
            net: Duration::from_millis(200),
            command: LIMITS.command,
        };
        // Dropped by the timeout, as the supervisor's readiness timeout drops it.
        let out = timeout(Duration::from_millis(1500), poll(&probe, &c, limits)).await;
        assert!(out.is_err(), "never ready: {out:?}");
        assert!(accepted.load(Ordering::SeqCst) >= 2, "kept trying");
        assert!(
            c.last_failure()
                .is_some_and(|f| f.contains("no status line within 200ms")),
            "{:?}",
            c.last_failure()
        );
        server.abort();
    }

    /// https is probed through the prober's TLS, without verifying the chain (as kubelet's
    /// httpGet probes do): a self-signed service is ready once it answers 2xx.
    #[tokio::test]
    async fn https_ready_on_a_self_signed_service() {
        let acceptor = crate::agent::check::self_signed_acceptor(4000);
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    continue;
                };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        let probe = ReadyProbe::Http {
            url: format!("https://localhost:{port}/health"),
        };
        timeout(BOUND, until_ready(&probe, &ctx()))
            .await
            .expect("ready in time")
            .expect("pollable");
        server.abort();
    }

    #[tokio::test]
    async fn log_and_notify_are_not_polled() {
        let log = ReadyProbe::Log(regex::Regex::new("up").expect("regex"));
        for probe in [log, ReadyProbe::Notify] {
            let out = timeout(BOUND, until_ready(&probe, &ctx()))
                .await
                .expect("at once");
            assert!(matches!(out, Err(ProbeError::NotPolled(_))), "{out:?}");
        }
    }

    #[test]
    fn urls_are_parsed() {
        let t = HttpTarget::parse("http://[::1]:8080?x=1#frag").expect("v6");
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("[::1]:8080", "/?x=1")
        );
        assert_eq!(t.url(), "http://[::1]:8080/?x=1");
        let t = HttpTarget::parse("HTTP://localhost").expect("default port");
        assert_eq!(t.url(), "http://localhost/");
        for bad in [
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://u:p@h/",
            "http://h/a b",
            "http://[::1/",
            "ftp://h/",
        ] {
            assert!(
                matches!(HttpTarget::parse(bad), Err(ProbeError::BadUrl { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            HttpTarget::parse("https://[::1]/").map(|t| t.url()),
            Ok("https://[::1]/".to_string())
        );
    }

    #[tokio::test]
    async fn command_ready_once_it_exits_0_with_the_services_env_and_cwd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = ProbeContext::new(
            "api",
            7,
            vec![("FLAG".into(), "flag-7".into())],
            Some(dir.path().to_path_buf()),
        );
        // Relative to the cwd, named from the env: both must reach the command.
        let probe = shell(r#"test -f "$FLAG""#);
        let flag = dir.path().join("flag-7");
        let maker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            std::fs::write(flag, b"").expect("write flag");
        });
        timeout(BOUND, until_ready(&probe, &c))
            .await
            .expect("ready in time")
            .expect("pollable");
        assert_eq!(c.last_failure().as_deref(), Some("`sh` exited with code 1"));
        maker.await.expect("maker");

        // Templates render with the service's name and start number.
        let argv = ReadyProbe::Command(CommandSpec::Argv(vec![
            Template::literal("test"),
            Template::parse("{{ task.name }}-{{ run.id }}", |_| false).expect("template"),
            Template::literal("="),
            Template::literal("api-7"),
        ]));
        timeout(BOUND, until_ready(&argv, &c))
            .await
            .expect("ready in time")
            .expect("pollable");
    }

    /// True once `pid` has exited (gone, or a zombie waiting for its reaper).
    fn gone(pid: i32) -> bool {
        if nix::sys::signal::kill(Pid::from_raw(pid), None).is_err() {
            return true;
        }
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
            .unwrap_or(true)
    }

    async fn pids_in(file: &Path, at_least: usize) -> Vec<i32> {
        timeout(BOUND, async {
            loop {
                let text = std::fs::read_to_string(file).unwrap_or_default();
                let pids: Vec<i32> = text
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                if pids.len() >= at_least {
                    return pids;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the command wrote its pids")
    }

    async fn all_gone(pids: &[i32]) {
        let left = timeout(BOUND, async {
            while !pids.iter().all(|&p| gone(p)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(left.is_ok(), "still running: {pids:?}");
    }

    #[tokio::test]
    async fn a_hung_command_is_killed_with_its_group_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pids");
        // The shell and a grandchild in its group; both must go.
        let probe = shell(&format!(
            "sleep 1000 & echo $$ $! > '{}'; wait",
            pids.display()
        ));
        let c = ctx();
        let probing = tokio::spawn(async move { until_ready(&probe, &c).await });
        let seen = pids_in(&pids, 2).await;
        assert!(seen.iter().all(|&p| !gone(p)), "running while probed");
        probing.abort();
        let _ = probing.await;
        all_gone(&seen).await;
    }

    #[tokio::test]
    async fn an_overrunning_command_is_killed_and_tried_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pids");
        let probe = shell(&format!(
            "sleep 1000 & echo $$ $! >> '{}'; wait",
            pids.display()
        ));
        let c = ctx();
        let limits = Limits {
            net: LIMITS.net,
            command: Duration::from_millis(200),
        };
        let probing = poll(&probe, &c, limits);
        tokio::pin!(probing);
        // Two attempts (four pids) means the first one overran and was stopped.
        let seen = tokio::select! {
            out = &mut probing => panic!("never ready: {out:?}"),
            seen = pids_in(&pids, 4) => seen,
        };
        let first = &seen[..2];
        all_gone(first).await;
        assert!(
            c.last_failure()
                .is_some_and(|f| f == "`sh` still running after 200ms: killed"),
            "{:?}",
            c.last_failure()
        );
    }

    #[test]
    fn log_match_is_a_regex_search() {
        let m = LogMatch::new(regex::Regex::new(r"listening on :\d+").expect("regex"));
        assert!(m.matches("2024-01-01 INFO listening on :8080"));
        // ANSI codes are not stripped.
        assert!(!m.matches("\x1b[32mlistening\x1b[0m on :8080"));
    }

    #[test]
    fn ready_lines_are_found_among_others() {
        assert!(says_ready(b"STATUS=warming up\nREADY=1\n"));
        assert!(says_ready(b"READY=1"));
        assert!(!says_ready(b"STATUS=READY=1\nREADY=10"));
        assert!(!says_ready(b""));
    }

    /// A `sh -c` that sends `message` to `$NOTIFY_SOCKET`, or why it cannot be made here.
    fn sender(message: &str) -> Result<String, &'static str> {
        let have = |tool: &str| {
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        // python3 first: it is what this test was checked with; socat is the fallback.
        if have("python3") {
            Ok(format!(
                "python3 -c \"import socket,os,sys; a=os.environ['NOTIFY_SOCKET']; \
                 a='\\0'+a[1:] if a.startswith('@') else a; \
                 s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.connect(a); \
                 s.send(sys.argv[1].encode())\" '{message}'"
            ))
        } else if have("socat") {
            Ok(format!(
                "case \"$NOTIFY_SOCKET\" in @*) to=ABSTRACT-SENDTO:${{NOTIFY_SOCKET#@}};; \
                 *) to=UNIX-SENDTO:$NOTIFY_SOCKET;; esac; printf '{message}' | socat - \"$to\""
            ))
        } else {
            Err("neither python3 nor socat is installed")
        }
    }

    /// Runs `script` under `sh -c` with `NOTIFY_SOCKET` set, as a service would be.
    async fn notify_from(socket: &NotifySocket, script: &str) {
        let status = timeout(
            BOUND,
            Command::new("sh")
                .args(["-c", script])
                .env("NOTIFY_SOCKET", socket.env_value())
                .status(),
        )
        .await
        .expect("sender in time")
        .expect("sender ran");
        assert!(status.success(), "sender failed: {status}");
    }

    async fn ready_after_status(dir: &Path) -> Option<String> {
        let socket = NotifySocket::bind(dir).expect("bind");
        let (status_only, ready) = match (
            sender("STATUS=starting\nMAINPID=1"),
            sender("STATUS=up\nREADY=1\n"),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(why), _) | (_, Err(why)) => {
                // CI installs python3 (`.ci/run`): a skip there would hide a test never run.
                assert!(
                    std::env::var_os("CI").is_none_or(|v| v.is_empty()),
                    "this test cannot run, and CI is set, so it fails rather than skips: {why}"
                );
                println!("skipped: {why}");
                return None;
            }
        };
        notify_from(&socket, &status_only).await;
        // That datagram is queued already: reading it must not make the service ready.
        let early = timeout(Duration::from_millis(300), socket.ready()).await;
        assert!(early.is_err(), "ready on a STATUS line: {early:?}");
        notify_from(&socket, &ready).await;
        timeout(BOUND, socket.ready())
            .await
            .expect("ready in time")
            .expect("recv");
        Some(socket.env_value())
    }

    #[tokio::test]
    async fn notify_ready_after_a_status_line_and_the_file_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some(value) = ready_after_status(dir.path()).await else {
            return;
        };
        assert!(value.starts_with(&*dir.path().to_string_lossy()), "{value}");
        // Dropped at the end of `ready_after_status`.
        assert!(
            !Path::new(&value).exists(),
            "socket file left behind: {value}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[tokio::test]
    async fn notify_falls_back_to_an_abstract_address_for_a_long_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let long = dir.path().join("d".repeat(120));
        std::fs::create_dir(&long).expect("long dir");
        let Some(value) = ready_after_status(&long).await else {
            return;
        };
        assert!(value.starts_with("@opsconsole-notify-"), "{value}");
        assert_eq!(std::fs::read_dir(&long).expect("dir").count(), 0);
    }

    #[tokio::test]
    async fn notify_file_exists_while_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = NotifySocket::bind(dir.path()).expect("bind");
        let path = PathBuf::from(socket.env_value());
        assert!(path.exists());
        assert!(path.as_os_str().len() <= MAX_SOCKET_PATH);
        drop(socket);
        assert!(!path.exists());
    }
}
