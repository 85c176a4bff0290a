//! tcp checks: connect, optionally send a line and read until the expected text.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::protocol::check::{CheckResult, DEFAULT_MAX_BODY, TcpProbe};

/// Connects to the probe's target; with `expect`, reads (at most the default body cap) until
/// the reply contains it or the peer closes.
pub(super) async fn run(p: &TcpProbe, t0: Instant, deadline: super::Deadline) -> CheckResult {
    let mut result = CheckResult::default();
    let (addr, dns) = match deadline
        .within("dns", super::resolve(&p.host, p.port))
        .await
        .and_then(|r| r)
    {
        Ok(a) => a,
        Err(e) => return CheckResult::failed(None, t0.elapsed(), e),
    };
    result.phases.dns = dns;
    result.ip = Some(addr.ip());
    let t = Instant::now();
    let connected = deadline
        .within("connect", super::connect(addr))
        .await
        .and_then(|r| r.map_err(|e| format!("connect to {addr}: {e}")));
    let mut stream = match connected {
        Ok(s) => s,
        Err(e) => {
            return CheckResult {
                ip: result.ip,
                phases: result.phases,
                ..CheckResult::failed(None, t0.elapsed(), e)
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
            match deadline.within("transfer", stream.read(&mut chunk)).await {
                Err(timed_out) => {
                    result.error = Some(timed_out);
                    break;
                }
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => {
                    let room = (DEFAULT_MAX_BODY as usize).saturating_sub(buf.len());
                    buf.extend_from_slice(&chunk[..n.min(room)]);
                }
                Ok(Err(e)) => {
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
