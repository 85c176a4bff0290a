//! tcp checks: connect, optionally send a line and read until the expected text.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::check::{CheckResult, DEFAULT_MAX_BODY, TcpProbe};

/// Connects to the probe's target; with `expect`, reads (at most the default body cap) until
/// the reply contains it or the peer closes.
pub(super) async fn run(p: &TcpProbe, t0: Instant) -> CheckResult {
    let mut result = CheckResult::default();
    let (addr, dns) = match super::resolve(&p.host, p.port).await {
        Ok(a) => a,
        Err(e) => return CheckResult::failed(None, t0.elapsed(), e),
    };
    result.phases.dns = dns;
    result.ip = Some(addr.ip());
    let t = Instant::now();
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            return CheckResult {
                ip: result.ip,
                phases: result.phases,
                ..CheckResult::failed(None, t0.elapsed(), format!("connect to {addr}: {e}"))
            };
        }
    };
    result.phases.connect = Some(t.elapsed());
    result.connected = true;
    if let Some(send) = &p.send
        && let Err(e) = stream.write_all(send.as_bytes()).await
    {
        result.error = Some(format!("send to {addr}: {e}"));
    }
    if let Some(expect) = &p.expect
        && result.error.is_none()
    {
        let t = Instant::now();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if buf
                .windows(expect.len().max(1))
                .any(|w| w == expect.as_bytes())
            {
                break;
            }
            if buf.len() as u64 >= DEFAULT_MAX_BODY {
                result.body_truncated = true;
                break;
            }
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    let room = (DEFAULT_MAX_BODY as usize).saturating_sub(buf.len());
                    buf.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) => {
                    result.error = Some(format!("read from {addr}: {e}"));
                    break;
                }
            }
        }
        result.phases.transfer = Some(t.elapsed());
        result.body = String::from_utf8_lossy(&buf).into_owned();
        if result.error.is_none() && !result.body.contains(expect.as_str()) {
            result.error = Some(format!("the reply does not contain {expect:?}"));
        }
    }
    result.response_time = t0.elapsed();
    result
}
