//! Local targets for `bench monitors`: listeners on many loopback addresses (127.0.x.y), so
//! that neither ports nor TIME_WAIT entries of one address are the limit, served on a thread
//! of their own whose CPU time can be taken out of the figures.
//!
//! - tcp: accept and close;
//! - http: a minimal HTTP/1.1 server answering every request `200 ok`, with keep-alive;
//! - https: the same behind TLS with an embedded self-signed pair (`cert/`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the targets speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Accept the connection and close it.
    Tcp,
    /// HTTP/1.1 `200 ok` to every request, keep-alive.
    Http,
    /// The same over TLS (self-signed).
    Https,
}

impl TargetKind {
    /// The kind's name, as `--kind` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// The one answer of the http targets.
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
/// A request head longer than this closes the connection (the bench sends small ones).
const MAX_HEAD: usize = 64 << 10;

const CERT_PEM: &[u8] = include_bytes!("cert/bench.crt");
const KEY_PEM: &[u8] = include_bytes!("cert/bench.key");

/// Running targets; stopped (and their thread joined) on drop.
pub struct Targets {
    addrs: Vec<SocketAddr>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The serving thread's id, to read its CPU time.
    tid: i32,
}

/// The address of listener `i`: 127.0.1.1, 127.0.1.2, … 127.0.1.250, 127.0.2.1, …
pub fn loopback(i: usize) -> Ipv4Addr {
    let hi = 1 + i / 250;
    let lo = 1 + i % 250;
    Ipv4Addr::new(127, (hi >> 8) as u8, (hi & 255) as u8, lo as u8)
}

impl Targets {
    /// Binds `listeners` listeners (each on its own loopback address, a port the system
    /// chooses) and serves them on a thread of their own.
    pub fn start(kind: TargetKind, listeners: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=250 * 255).contains(&listeners),
            "between 1 and 63,750 listeners"
        );
        let mut bound = Vec::with_capacity(listeners);
        for i in 0..listeners {
            let addr = SocketAddr::from((loopback(i), 0));
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            l.set_nonblocking(true)?;
            bound.push(l);
        }
        let addrs = bound
            .iter()
            .map(|l| l.local_addr())
            .collect::<std::io::Result<Vec<_>>>()?;
        let tls = match kind {
            TargetKind::Https => Some(tls_acceptor()?),
            _ => None,
        };
        let stop = CancellationToken::new();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bench-targets".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    let _ = tid_tx.send(gettid());
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!("bench targets: no runtime: {e}");
                            return;
                        }
                    };
                    rt.block_on(serve_all(kind, bound, tls, stop));
                }
            })?;
        let tid = tid_rx.recv_timeout(Duration::from_secs(10))?;
        Ok(Self {
            addrs,
            stop,
            thread: Some(thread),
            tid,
        })
    }

    /// Where each listener is, in order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// CPU time (user + system) the serving thread has used so far.
    pub fn cpu(&self) -> Duration {
        super::gauges::thread_cpu(self.tid)
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

fn tls_acceptor() -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut &CERT_PEM[..]).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut &KEY_PEM[..])?
        .ok_or_else(|| anyhow::anyhow!("the embedded bench key is missing"))?;
    let config = rustls::ServerConfig::builder_with_provider(crate::agent::check::ring_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve_all(
    kind: TargetKind,
    bound: Vec<std::net::TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for l in bound {
        let listener = match TcpListener::from_std(l) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("bench targets: {e}");
                continue;
            }
        };
        tasks.spawn(accept_loop(kind, listener, tls.clone(), stop.clone()));
    }
    stop.cancelled().await;
    tasks.shutdown().await;
}

async fn accept_loop(
    kind: TargetKind,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of descriptors or a connection reset before it was taken: the client
                // sees a failure and counts it; do not spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        match kind {
            TargetKind::Tcp => drop(stream),
            TargetKind::Http => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(answer(stream, stop.clone()));
            }
            TargetKind::Https => {
                let _ = stream.set_nodelay(true);
                let Some(tls) = tls.clone() else { return };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let shake = tokio::time::timeout(Duration::from_secs(10), tls.accept(stream));
                    if let Ok(Ok(s)) = shake.await {
                        answer(s, stop).await;
                    }
                });
            }
        }
    }
}

/// Answers every request on `io` with [`RESPONSE`] until the peer closes, sends
/// `Connection: close`, or the bench stops.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, stop: CancellationToken) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let mut answers = 0;
        let mut close = false;
        while let Some(request) = parse(&buf) {
            buf.drain(..request.len);
            answers += 1;
            if request.close {
                close = true;
                break;
            }
        }
        if answers > 0 {
            let out = RESPONSE.repeat(answers);
            if io.write_all(&out).await.is_err() || io.flush().await.is_err() {
                return;
            }
        }
        if close || buf.len() > MAX_HEAD {
            let _ = io.shutdown().await;
            return;
        }
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            n = io.read(&mut chunk) => n,
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A whole request at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    /// Bytes of head and body.
    len: usize,
    /// The client asked to close after it.
    close: bool,
}

/// The first request of `buf` if all of it (head and `Content-Length` body) is there.
fn parse(buf: &[u8]) -> Option<Request> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut body = 0usize;
    let mut close = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    let len = end.checked_add(body)?;
    (buf.len() >= len).then_some(Request { len, close })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_cut_at_their_heads_and_bodies() {
        let two =
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let first = parse(two).expect("first");
        assert_eq!(
            first,
            Request {
                len: 27,
                close: false
            }
        );
        let rest = &two[first.len..];
        assert_eq!(parse(rest).map(|r| r.len), Some(rest.len()));
        assert_eq!(parse(&rest[..rest.len() - 1]), None, "body incomplete");
        assert!(
            parse(b"GET / HTTP/1.1\r\nconnection: Close\r\n\r\n")
                .expect("one")
                .close
        );
    }

    #[test]
    fn listeners_are_spread_over_loopback_addresses() {
        assert_eq!(loopback(0), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(loopback(249), Ipv4Addr::new(127, 0, 1, 250));
        assert_eq!(loopback(250), Ipv4Addr::new(127, 0, 2, 1));
    }

    async fn get(addr: SocketAddr, times: usize) -> Vec<u8> {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(times);
        s.write_all(&req).await.expect("send");
        let mut got = vec![0u8; RESPONSE.len() * times];
        s.read_exact(&mut got).await.expect("answers");
        got
    }

    #[tokio::test]
    async fn the_targets_answer() {
        let tcp = Targets::start(TargetKind::Tcp, 3).expect("tcp targets");
        assert_eq!(tcp.addrs().len(), 3);
        for addr in tcp.addrs() {
            assert!(addr.ip().is_loopback());
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut b = [0u8; 1];
            // Accepted, then closed by the target.
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
                .await
                .expect("closed in time");
            assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        }
        drop(tcp);

        let http = Targets::start(TargetKind::Http, 2).expect("http targets");
        let got = get(http.addrs()[1], 3).await;
        assert_eq!(got, RESPONSE.repeat(3), "keep-alive, pipelined");
        drop(http);

        let https = Targets::start(TargetKind::Https, 1).expect("https targets");
        let prober = crate::agent::check::Prober::new();
        let probe = crate::protocol::check::Probe::Http(crate::protocol::check::HttpProbe {
            url: format!("https://{}/", https.addrs()[0]),
            method: crate::protocol::check::HttpMethod::Get,
            headers: Vec::new(),
            body: None,
            follow_redirects: false,
            insecure_skip_verify: true,
            client_cert: None,
            max_body: 1024,
        });
        for _ in 0..2 {
            let r = prober.run(&probe, Duration::from_secs(10)).await;
            assert_eq!(r.status, Some(200), "{r:?}");
            assert_eq!(r.body, "ok");
        }
        assert_eq!(prober.idle_connections(), 1, "the connection was kept");
    }
}
