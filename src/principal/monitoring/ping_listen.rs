//! The ping listener (`principal --ping-listen ADDR`): a small HTTP/1.1 server for jobs that
//! cannot run opsconsole. `GET`, `HEAD` or `POST http://ADDR/ping/NAME/SECRET` reports in
//! (as healthchecks.io accepts them); `/fail` appended reports a failure; a POST body (at
//! most `MAX_PING_MESSAGE` bytes) is the message. It reaches the engine as any face does
//! (`Request::Ping`, caller `ping-url`).
//!
//! Bounded: connections at once, request head size and header count, body size, and the
//! time a connection may take. A wrong secret or an unknown path gets 404 and is counted;
//! nothing a peer sends can panic it. When every connection is taken, a new one takes the
//! place of the oldest that has not yet sent its request head, so peers that connect and
//! say nothing (or trickle) cannot shut jobs out.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::ping_url::PingKey;
use crate::protocol::api::{
    ApiErrorKind, Caller, Client, MAX_PING_MESSAGE, Request as ApiRequest, Response as ApiResponse,
};

/// Connections open at once; past it a new one takes a silent one's place, or is closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest time one connection may take, from accept to the answer written.
pub const CONNECTION_TIME: Duration = Duration::from_secs(10);
/// Time to send the request head.
const HEAD_TIME: Duration = Duration::from_secs(5);
/// Most headers in a request.
const MAX_HEADERS: usize = 32;
/// Read buffer: the request head must fit (hyper's least).
const MAX_HEAD: usize = 8192;
/// Longest monitor name taken from a path.
const MAX_NAME: usize = 256;

/// What the listener has seen since it started.
#[derive(Debug, Default)]
pub struct PingCounts {
    /// Pings recorded.
    pub recorded: AtomicU64,
    /// Requests answered 404: a wrong secret, an unknown monitor, another path.
    pub refused: AtomicU64,
    /// Connections closed at once because [`MAX_CONNECTIONS`] were serving requests.
    pub over_limit: AtomicU64,
}

/// A listening ping server.
#[derive(Debug, Clone)]
pub struct PingListener {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it has seen.
    pub counts: Arc<PingCounts>,
}

struct Ctx {
    key: Arc<PingKey>,
    engine: Arc<dyn Client>,
    counts: Arc<PingCounts>,
}

/// Listens on `addr` until `stop`, handing pings whose secret `key` vouches for to `engine`.
pub(crate) async fn serve(
    addr: SocketAddr,
    key: Arc<PingKey>,
    engine: Arc<dyn Client>,
    stop: CancellationToken,
) -> std::io::Result<PingListener> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let counts = Arc::new(PingCounts::default());
    let ctx = Arc::new(Ctx {
        key,
        engine,
        counts: counts.clone(),
    });
    tokio::spawn(accept_loop(listener, ctx, stop));
    Ok(PingListener { addr, counts })
}

/// One open connection: whether its request head has arrived, and how to close it.
struct Conn {
    heard: AtomicBool,
    close: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Conns {
    next: u64,
    open: BTreeMap<u64, Arc<Conn>>,
}

impl Conns {
    /// A place for a new connection: free, or taken from the oldest that has not sent its
    /// request head (closed); `None` when every connection is serving a request.
    fn admit(&mut self) -> Option<(u64, Arc<Conn>)> {
        if self.open.len() >= MAX_CONNECTIONS {
            let oldest_silent = self
                .open
                .iter()
                .find(|(_, c)| !c.heard.load(Ordering::Acquire))
                .map(|(id, _)| *id)?;
            if let Some(c) = self.open.remove(&oldest_silent) {
                c.close.cancel();
            }
        }
        let id = self.next;
        self.next += 1;
        let conn = Arc::new(Conn {
            heard: AtomicBool::new(false),
            close: CancellationToken::new(),
        });
        self.open.insert(id, conn.clone());
        Some((id, conn))
    }
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, stop: CancellationToken) {
    let conns = Arc::new(Mutex::new(Conns::default()));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait a little rather than spin.
                tracing::warn!("ping listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = conns.lock().unwrap_or_else(PoisonError::into_inner).admit();
        let Some((id, conn)) = admitted else {
            ctx.counts.over_limit.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let (ctx, stop, conns) = (ctx.clone(), stop.clone(), conns.clone());
        tokio::spawn(async move {
            let heard = conn.clone();
            let service = hyper::service::service_fn(move |req| {
                heard.heard.store(true, Ordering::Release);
                handle(req, ctx.clone())
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIME)
                .max_buf_size(MAX_HEAD)
                .max_headers(MAX_HEADERS)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                () = conn.close.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_TIME, served) => {}
            }
            // Nothing is left half-done under the lock: a panic elsewhere must not stop this.
            conns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .open
                .remove(&id);
        });
    }
}

type Answer = hyper::Response<Full<Bytes>>;

fn answer(status: StatusCode, text: impl Into<String>) -> Answer {
    let mut text = text.into();
    text.push('\n');
    let mut r = hyper::Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn not_found(ctx: &Ctx) -> Answer {
    let n = ctx.counts.refused.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!("ping listener: {n} request(s) refused (wrong secret or path) so far");
    }
    answer(StatusCode::NOT_FOUND, "not found")
}

/// `/ping/NAME/SECRET` or `/ping/NAME/SECRET/fail` -> (name, secret, ok).
pub fn parse_path(path: &str) -> Option<(&str, &str, bool)> {
    let rest = path.strip_prefix("/ping/")?;
    let mut parts = rest.split('/');
    let name = parts.next()?;
    let secret = parts.next()?;
    let ok = match parts.next() {
        None | Some("") => true,
        Some("fail") => false,
        Some(_) => return None,
    };
    if parts.next().is_some_and(|p| !p.is_empty()) {
        return None;
    }
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    (name_ok && !secret.is_empty()).then_some((name, secret, ok))
}

async fn handle(req: hyper::Request<Incoming>, ctx: Arc<Ctx>) -> Result<Answer, Infallible> {
    let method = req.method().clone();
    if !matches!(
        method,
        Method::GET | Method::HEAD | Method::POST | Method::PUT
    ) {
        return Ok(answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET, HEAD or POST",
        ));
    }
    let Some((name, secret, ok)) = parse_path(req.uri().path()) else {
        return Ok(not_found(&ctx));
    };
    if !ctx.key.verify(name, secret) {
        return Ok(not_found(&ctx));
    }
    let name = name.to_string();
    let message = if matches!(method, Method::POST | Method::PUT) {
        match Limited::new(req.into_body(), MAX_PING_MESSAGE)
            .collect()
            .await
        {
            Ok(body) => {
                let text = String::from_utf8_lossy(&body.to_bytes()).trim().to_string();
                (!text.is_empty()).then_some(text)
            }
            Err(_) => {
                return Ok(answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over {MAX_PING_MESSAGE} bytes"),
                ));
            }
        }
    } else {
        None
    };
    let request = ApiRequest::Ping { name, ok, message };
    let answered = ctx.engine.call_as(Caller("ping-url".into()), request).await;
    Ok(match answered {
        Ok(ApiResponse::Pinged { .. }) => {
            ctx.counts.recorded.fetch_add(1, Ordering::Relaxed);
            answer(StatusCode::OK, "OK")
        }
        Ok(ApiResponse::Error(e)) => match e.kind {
            // The secret was right for a name that is (no longer) a push monitor.
            ApiErrorKind::NotFound | ApiErrorKind::InvalidInput => not_found(&ctx),
            _ => answer(StatusCode::SERVICE_UNAVAILABLE, e.message),
        },
        Ok(_) => answer(StatusCode::INTERNAL_SERVER_ERROR, "unexpected answer"),
        Err(e) => answer(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_monitor_the_secret_and_a_failure() {
        assert_eq!(
            parse_path("/ping/backup/abc"),
            Some(("backup", "abc", true))
        );
        assert_eq!(
            parse_path("/ping/backup/abc/"),
            Some(("backup", "abc", true))
        );
        assert_eq!(
            parse_path("/ping/backup/abc/fail"),
            Some(("backup", "abc", false))
        );
        assert_eq!(parse_path("/ping/backup"), None);
        assert_eq!(parse_path("/ping/backup//"), None);
        assert_eq!(parse_path("/ping/backup/abc/start"), None);
        assert_eq!(parse_path("/ping/backup/abc/fail/x"), None);
        assert_eq!(parse_path("/ping/../abc"), Some(("..", "abc", true)));
        assert_eq!(parse_path("/ping/a b/abc"), None);
        assert_eq!(parse_path("/other/backup/abc"), None);
        let long = format!("/ping/{}/abc", "a".repeat(MAX_NAME + 1));
        assert_eq!(parse_path(&long), None);
    }
}
