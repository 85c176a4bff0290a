//! tls checks: a handshake, the chain the server sent and its soonest expiry.

use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::{CertificateDer, ServerName};

use crate::protocol::check::{CheckResult, TlsProbe};

/// Milliseconds from now until the soonest `not_after` of `chain` (negative once expired);
/// `None` when no certificate parses.
pub(super) fn soonest_expiry_ms(chain: &[CertificateDer<'_>]) -> Option<i64> {
    let now = chrono::Utc::now().timestamp_millis();
    soonest_not_after_ms(chain).map(|t| t.saturating_sub(now))
}

/// The soonest `not_after` of `chain`, in Unix milliseconds; `None` when no certificate parses.
pub(super) fn soonest_not_after_ms(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp().saturating_mul(1000))
        .min()
}

/// Connects and shakes hands; the result has the address, the phases and the expiry.
pub(super) async fn run(p: &TlsProbe, t0: Instant, deadline: super::Deadline) -> CheckResult {
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
    let stream = match connected {
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
    let provider = super::ring_provider();
    // Accepts any chain: the check's conditions judge it, not the handshake.
    let keep = super::chain::ChainKeeper::new(None);
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(keep.clone())
            .with_no_client_auth(),
        Err(e) => {
            result.error = Some(format!("TLS setup: {e}"));
            return result;
        }
    };
    let name = match ServerName::try_from(p.host.clone()) {
        Ok(n) => n,
        Err(e) => {
            result.error = Some(format!("{:?} is not a TLS server name: {e}", p.host));
            return result;
        }
    };
    let t = Instant::now();
    let shake = deadline
        .within(
            "tls",
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream),
        )
        .await;
    result.phases.tls = Some(t.elapsed());
    match shake {
        Err(timed_out) => result.error = Some(timed_out),
        Ok(Err(e)) => result.error = Some(format!("TLS handshake with {addr}: {e}")),
        Ok(Ok(_)) => {}
    }
    let chain = keep.chain();
    result.certificate_expiration_ms = soonest_expiry_ms(&chain);
    result.response_time = t0.elapsed();
    result
}
