//! The certificate verifier every TLS client of the probes uses: it keeps the chain the
//! server sends, then verifies it against the web's roots or accepts it, so that the expiry
//! of a chain that fails verification (expired, self-signed) is still known.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Keeps the server's chain; verifies it with `verify`, or accepts any (the handshake's
/// signatures are checked either way).
#[derive(Debug)]
pub(crate) struct ChainKeeper {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    verify: Option<Arc<WebPkiServerVerifier>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ChainKeeper {
    /// A keeper that verifies with `verify` (`None`: accepts any certificate).
    pub(crate) fn new(verify: Option<Arc<WebPkiServerVerifier>>) -> Arc<Self> {
        Arc::new(Self {
            chain: Mutex::default(),
            verify,
            algs: super::ring_provider().signature_verification_algorithms,
        })
    }

    /// The chain the server sent (empty before the handshake got that far).
    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.chain.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ServerCertVerifier for ChainKeeper {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        {
            let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
            chain.push(end_entity.clone().into_owned());
            chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        match &self.verify {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Ok(ServerCertVerified::assertion()),
        }
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
