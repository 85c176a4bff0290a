//! tls checks: a handshake, the chain the server sent and its soonest expiry.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::protocol::check::{CheckResult, TlsProbe};

/// Keeps the chain the server sends and accepts it, so that an expired or self-signed chain
/// still tells its expiry (the check's conditions judge it, not the handshake).
#[derive(Debug)]
struct Keep {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Keep {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

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
    let keep = Arc::new(Keep {
        chain: Mutex::default(),
        algs: provider.signature_verification_algorithms,
    });
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
    let chain = keep.chain.lock().unwrap_or_else(|e| e.into_inner()).clone();
    result.certificate_expiration_ms = soonest_expiry_ms(&chain);
    result.response_time = t0.elapsed();
    result
}
