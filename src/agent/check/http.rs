//! http checks: HTTP/1.1 over hyper, plain or through rustls, with one keep-alive pool for the
//! whole prober. Phases are timed as blackbox_exporter times them (dns, connect, tls, first
//! byte, transfer, summed over redirects); the body is read up to its cap and no further.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName};

use super::Deadline;
use crate::agent::lock;
use crate::protocol::check::{CheckResult, ClientCert, HttpMethod, HttpProbe};

/// Most redirects followed before the check fails.
pub(super) const MAX_REDIRECTS: usize = 10;
/// How long an idle pooled connection is kept (servers commonly close theirs after 60-120 s).
const IDLE_FOR: Duration = Duration::from_secs(90);
/// Most idle connections kept for one host.
const IDLE_PER_HOST: usize = 16;
/// hyper's read buffer, which bounds the memory of a connection (headers included).
const READ_BUF: usize = 256 << 10;
/// What the checker says it is, unless the check sets its own User-Agent.
const USER_AGENT: &str = concat!("opsconsole-check/", env!("CARGO_PKG_VERSION"));

/// What a connection is, for the pool: requests to the same key may share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    https: bool,
    host: String,
    port: u16,
    insecure: bool,
    /// The client certificate's and key's files.
    client_cert: Option<(PathBuf, PathBuf)>,
}

/// What was learnt while making a connection, kept with it for every request it carries.
#[derive(Debug)]
struct ConnInfo {
    ip: IpAddr,
    /// The soonest `not_after` of the server's chain, Unix milliseconds.
    not_after_ms: Option<i64>,
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    info: Arc<ConnInfo>,
    since: Instant,
}

/// The prober's keep-alive connections, at most `max_idle` of them idle at once.
pub(super) struct Pool {
    idle: Mutex<Idles>,
    max_idle: usize,
    /// The verifier of every https connection that verifies, or why there is none.
    verifier: Result<Arc<WebPkiServerVerifier>, String>,
}

/// The idle connections by where they lead, and how many there are in all.
#[derive(Default)]
struct Idles {
    by_key: HashMap<Key, Vec<Idle>>,
    /// Kept as they come and go: summing the lists on every put cost more than the check.
    total: usize,
    /// When the full pool was last swept of closed and stale connections.
    swept: Option<Instant>,
}

/// How often a full pool is swept at most: a sweep walks every idle connection, and a pool
/// that stays full would otherwise walk them all on every check.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Pool {
    pub(super) fn new(roots: Arc<rustls::RootCertStore>, max_idle: usize) -> Self {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, super::ring_provider())
            .build()
            .map_err(|e| format!("no certificate authorities to verify with: {e}"));
        Self {
            idle: Mutex::default(),
            max_idle,
            verifier,
        }
    }

    pub(super) fn idle_count(&self) -> usize {
        lock(&self.idle).total
    }

    /// An idle connection for `key` that still looks alive.
    fn take(&self, key: &Key) -> Option<Idle> {
        let mut idle = lock(&self.idle);
        let Idles { by_key, total, .. } = &mut *idle;
        let list = by_key.get_mut(key)?;
        let found = loop {
            let Some(c) = list.pop() else { break None };
            *total -= 1;
            if !c.sender.is_closed() && c.since.elapsed() <= IDLE_FOR {
                break Some(c);
            }
        };
        if list.is_empty() {
            by_key.remove(key);
        }
        found
    }

    /// Keeps a connection whose last answer was read to its end, if there is room.
    fn put(&self, key: Key, conn: Idle) {
        let mut idle = lock(&self.idle);
        if idle.total >= self.max_idle {
            // Drop what has closed or waited too long; if that is not enough, this one goes.
            if idle.swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
                idle.by_key.retain(|_, list| {
                    list.retain(|c| !c.sender.is_closed() && c.since.elapsed() <= IDLE_FOR);
                    !list.is_empty()
                });
                idle.total = idle.by_key.values().map(Vec::len).sum();
                idle.swept = Some(Instant::now());
            }
            if idle.total >= self.max_idle {
                return;
            }
        }
        let Idles { by_key, total, .. } = &mut *idle;
        let list = by_key.entry(key).or_default();
        if list.len() < IDLE_PER_HOST {
            list.push(conn);
            *total += 1;
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) https: bool,
    /// Host name or address (an IPv6 address without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The URL's authority as written, for the `Host` header.
    pub(crate) authority: String,
    /// Path and query, at least `/`.
    pub(crate) path: String,
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL (a fragment is ignored).
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let no_fragment = url.split('#').next().unwrap_or_default();
        let uri: hyper::Uri = no_fragment
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("`{url}` is not an http:// or https:// URL")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{url}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{url}`: credentials in the URL are not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let port = match authority.port_u16() {
            Some(0) => return Err(format!("`{url}`: port 0")),
            Some(p) => p,
            None if https => 443,
            None => 80,
        };
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") => "/".to_string(),
            Some(p) if p.starts_with('?') => format!("/{p}"),
            Some(p) => p.to_string(),
        };
        Ok(Self {
            https,
            host: host.to_string(),
            port,
            authority: authority.as_str().to_string(),
            path,
        })
    }

    fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority
        )
    }

    /// The absolute URL a `Location` header points to, from this target.
    fn follow(&self, location: &str) -> String {
        let lower = location.get(..8).unwrap_or(location).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            location.to_string()
        } else if let Some(rest) = location.strip_prefix("//") {
            format!("{}://{rest}", if self.https { "https" } else { "http" })
        } else if location.starts_with('/') {
            format!("{}{location}", self.origin())
        } else {
            // Relative to the current path's directory.
            let path = self.path.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            let dir = if dir.is_empty() { "/" } else { dir };
            format!("{}{dir}{location}", self.origin())
        }
    }
}

/// Adds `d` to a phase that may be summed over several hops.
fn add(phase: &mut Option<Duration>, d: Duration) {
    *phase = Some(phase.unwrap_or_default() + d);
}

/// Runs the request, following redirects when asked; the result has the last hop's answer.
pub(super) async fn run(
    pool: &Pool,
    p: &HttpProbe,
    t0: Instant,
    deadline: Deadline,
) -> CheckResult {
    let mut result = CheckResult::default();
    let mut url = p.url.clone();
    let mut method = p.method;
    let mut body = p.body.clone();
    let mut visited: Vec<String> = Vec::new();
    for hop in 0..=MAX_REDIRECTS {
        let location = match one(
            pool,
            p,
            (&url, method, body.as_deref()),
            &mut result,
            deadline,
        )
        .await
        {
            Err(e) => {
                result.error = Some(e);
                break;
            }
            Ok(location) => location,
        };
        let Some(location) = location.filter(|_| p.follow_redirects) else {
            break;
        };
        if hop == MAX_REDIRECTS {
            result.error = Some(format!(
                "more than {MAX_REDIRECTS} redirects (the last from {url} to {location})"
            ));
            break;
        }
        let next = match Target::parse(&url) {
            Ok(t) => t.follow(&location),
            Err(e) => {
                result.error = Some(e);
                break;
            }
        };
        visited.push(std::mem::replace(&mut url, next));
        if visited.contains(&url) {
            result.error = Some(format!(
                "redirect loop: {} redirects back to {url}, already visited",
                visited.last().map_or("", String::as_str)
            ));
            break;
        }
        // As browsers do: 303 always, and 301/302 after a POST, become a GET without a body.
        let status = result.status.unwrap_or_default();
        if status == 303 || (matches!(status, 301 | 302) && method == HttpMethod::Post) {
            if method != HttpMethod::Head {
                method = HttpMethod::Get;
            }
            body = None;
        }
    }
    result.response_time = t0.elapsed();
    result
}

/// One request and its answer, into `result`; the `Location` of a redirect.
async fn one(
    pool: &Pool,
    p: &HttpProbe,
    (url, method, body): (&str, HttpMethod, Option<&str>),
    result: &mut CheckResult,
    deadline: Deadline,
) -> Result<Option<String>, String> {
    // What an earlier hop saw is not this one's.
    result.status = None;
    result.headers.clear();
    result.body.clear();
    result.body_truncated = false;
    let target = Target::parse(url)?;
    let key = Key {
        https: target.https,
        host: target.host.clone(),
        port: target.port,
        insecure: p.insecure_skip_verify,
        client_cert: p
            .client_cert
            .as_ref()
            .filter(|_| target.https)
            .map(|c| (c.cert.clone(), c.key.clone())),
    };
    let request = || build_request(p, &target, method, body);
    // A pooled connection may have been closed by the server just now; then the request is
    // sent once more on a new one (only if it cannot have been acted upon twice).
    let mut conn = match pool.take(&key) {
        Some(mut c) => match deadline.within("connect", c.sender.ready()).await? {
            Ok(()) => Some(c),
            Err(_) => None,
        },
        None => None,
    };
    let (mut conn, response) = loop {
        let reused = conn.is_some();
        let mut c = match conn.take() {
            Some(c) => c,
            None => connect(pool, &key, &target, result, deadline).await?,
        };
        result.ip = Some(c.info.ip);
        result.certificate_expiration_ms = c
            .info
            .not_after_ms
            .map(|t| t.saturating_sub(chrono::Utc::now().timestamp_millis()));
        result.connected = true;
        let t = Instant::now();
        let sent = deadline
            .within("first_byte", c.sender.send_request(request()?))
            .await?;
        match sent {
            Ok(response) => {
                add(&mut result.phases.first_byte, t.elapsed());
                break (c, response);
            }
            Err(e) if reused && (e.is_canceled() || idempotent(method)) => continue,
            Err(e) => return Err(format!("{} {url}: {}", method.as_str(), with_causes(&e))),
        }
    };
    let (head, mut incoming) = response.into_parts();
    result.status = Some(head.status.as_u16());
    result.headers = head
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Read up to the cap; what is past it is never read (the connection is dropped instead).
    let cap = usize::try_from(p.max_body).unwrap_or(usize::MAX);
    let t = Instant::now();
    let mut buf: Vec<u8> = Vec::new();
    let mut complete = false;
    let read = deadline
        .within("transfer", async {
            loop {
                match incoming.frame().await {
                    None => {
                        complete = true;
                        return Ok(());
                    }
                    Some(Err(e)) => {
                        return Err(format!("reading the body of {url}: {}", with_causes(&e)));
                    }
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let room = cap - buf.len();
                        if data.len() > room {
                            buf.extend_from_slice(&data[..room]);
                            result.body_truncated = true;
                            return Ok(());
                        }
                        buf.extend_from_slice(&data);
                    }
                }
            }
        })
        .await;
    add(&mut result.phases.transfer, t.elapsed());
    // Valid UTF-8 (the usual case) is kept as it was read, without a second copy.
    result.body = String::from_utf8(buf)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    read??;
    let closing = |h: &hyper::HeaderMap| {
        h.get_all(hyper::header::CONNECTION)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    };
    let asked_close = p
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
    if complete && !closing(&head.headers) && !asked_close {
        conn.since = Instant::now();
        pool.put(key, conn);
    }
    let location = head
        .status
        .is_redirection()
        .then(|| head.headers.get(hyper::header::LOCATION))
        .flatten()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    Ok(location)
}

/// An error with its causes: hyper's own text ("connection error") does not say which.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn idempotent(m: HttpMethod) -> bool {
    !matches!(m, HttpMethod::Post | HttpMethod::Patch)
}

fn build_request(
    p: &HttpProbe,
    target: &Target,
    method: HttpMethod,
    body: Option<&str>,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let mut req = hyper::Request::builder()
        .method(method.as_str())
        .uri(target.path.as_str())
        .header(hyper::header::HOST, target.authority.as_str());
    let mut has_agent = false;
    for (k, v) in &p.headers {
        if k.eq_ignore_ascii_case("host") {
            continue;
        }
        has_agent |= k.eq_ignore_ascii_case("user-agent");
        req = req.header(k.as_str(), v.as_str());
    }
    if !has_agent {
        req = req.header(
            hyper::header::USER_AGENT,
            hyper::header::HeaderValue::from_static(USER_AGENT),
        );
    }
    let body = Full::new(Bytes::from(body.unwrap_or_default().to_string()));
    req.body(body)
        .map_err(|e| format!("cannot build the request to {}: {e}", p.url))
}

/// A new connection for `key`: resolved, connected, TLS when https, HTTP/1.1 handshake.
async fn connect(
    pool: &Pool,
    key: &Key,
    target: &Target,
    result: &mut CheckResult,
    deadline: Deadline,
) -> Result<Idle, String> {
    let (addr, dns) = deadline
        .within("dns", super::resolve(&target.host, target.port))
        .await??;
    if let Some(d) = dns {
        add(&mut result.phases.dns, d);
    }
    result.ip = Some(addr.ip());
    let t = Instant::now();
    let tcp = deadline
        .within("connect", super::connect(addr))
        .await?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    add(&mut result.phases.connect, t.elapsed());
    result.connected = true;
    let _ = tcp.set_nodelay(true);
    let mut builder = http1::Builder::new();
    builder.title_case_headers(true).max_buf_size(READ_BUF);
    if !target.https {
        let (sender, conn) = builder
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(Idle {
            sender,
            info: Arc::new(ConnInfo {
                ip: addr.ip(),
                not_after_ms: None,
            }),
            since: Instant::now(),
        });
    }
    let recorder = super::chain::ChainKeeper::new(if key.insecure {
        None
    } else {
        Some(pool.verifier.clone()?)
    });
    let config = tls_config(key, recorder.clone())?;
    let name = ServerName::try_from(target.host.clone())
        .map_err(|e| format!("{:?} is not a TLS server name: {e}", target.host))?;
    let t = Instant::now();
    let shake = deadline
        .within(
            "tls",
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await;
    add(&mut result.phases.tls, t.elapsed());
    let chain = recorder.chain();
    let not_after_ms = super::tls::soonest_not_after_ms(&chain);
    // Read even when the handshake fails: an expired chain still says when it expired.
    result.certificate_expiration_ms =
        not_after_ms.map(|t| t.saturating_sub(chrono::Utc::now().timestamp_millis()));
    let tls = shake?.map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let (sender, conn) = builder
        .handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Idle {
        sender,
        info: Arc::new(ConnInfo {
            ip: addr.ip(),
            not_after_ms,
        }),
        since: Instant::now(),
    })
}

/// A client configuration for one connection: its own verifier (which keeps the chain), and
/// the client certificate when the check has one.
fn tls_config(
    key: &Key,
    recorder: Arc<super::chain::ChainKeeper>,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(super::ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(recorder);
    let mut config = match &key.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let c = ClientCert {
                cert: cert.clone(),
                key: key.clone(),
            };
            let (chain, private) = load_client_cert(&c)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| format!("client certificate {}: {e}", c.cert.display()))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn load_client_cert(
    c: &ClientCert,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    String,
> {
    // Certificates and keys are a few KiB; a bigger file is not one.
    const MAX_PEM: u64 = 1 << 20;
    let read = |path: &std::path::Path| -> Result<Vec<u8>, String> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PEM).read_to_end(&mut bytes))
            .map_err(|e| format!("client certificate file {}: {e}", path.display()))?;
        Ok(bytes)
    };
    let cert_pem = read(&c.cert)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("client certificate {}: {e}", c.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "client certificate {}: no certificate in it",
            c.cert.display()
        ));
    }
    let key_pem = read(&c.key)?;
    let private = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("client key {}: {e}", c.key.display()))?
        .ok_or_else(|| format!("client key {}: no private key in it", c.key.display()))?;
    Ok((chain, private))
}

#[cfg(test)]
mod url_tests {
    use super::Target;

    #[test]
    fn urls_and_locations_are_resolved() {
        let t = Target::parse("http://[::1]:8080?x=1#frag").expect("v6");
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            ("::1", 8080, "[::1]:8080", "/?x=1")
        );
        let t = Target::parse("HTTPS://example.test/a/b?q").expect("https");
        assert_eq!((t.https, t.port, t.path.as_str()), (true, 443, "/a/b?q"));
        assert_eq!(t.follow("c"), "https://example.test/a/c");
        assert_eq!(t.follow("/z"), "https://example.test/z");
        assert_eq!(t.follow("//other/x"), "https://other/x");
        assert_eq!(t.follow("http://h/"), "http://h/");
        for bad in ["ftp://h/", "http://u:p@h/", "/relative", "http://h:0/"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
