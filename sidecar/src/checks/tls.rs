//! TLS for `rediss://` and `sslmode=require`: rustls with ring, verifying or not.
//!
//! Heroku Postgres and Heroku Redis present self-signed certificates, so the
//! default (`tlsVerify: false`) encrypts without checking who answers — what
//! libpq's `sslmode=require` and redis-py's `ssl_cert_reqs=none` do. With
//! `tlsVerify: true` (or `sslmode=verify-full`) the certificate must chain to
//! the system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured) and
//! match the host name.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Why TLS to a checked server could not be set up or opened.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the protocol versions of its provider (a build problem).
    #[error("TLS setup failed: {0}")]
    Setup(#[from] rustls::Error),
    /// Verification is on and the system has no roots to verify with.
    #[error("TLS verification is on but no trusted root certificates were found; install ca-certificates, set SSL_CERT_FILE, or set tlsVerify: false")]
    NoRoots,
    /// The host cannot be a TLS server name.
    #[error("{host:?} is not a valid TLS server name; use the server's DNS name or IP address")]
    ServerName {
        /// The host as configured.
        host: String,
    },
    /// The handshake failed; `hint` says what to do about a refused certificate.
    #[error("TLS handshake failed: {reason}{hint}")]
    Handshake {
        /// What rustls or the socket said.
        reason: String,
        /// Empty, or advice when a certificate was refused.
        hint: &'static str,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration; `verify: false` accepts any certificate.
pub fn client_config(verify: bool) -> Result<Arc<ClientConfig>, TlsError> {
    // Both are built once: loading the system's roots reads files.
    static VERIFYING: OnceLock<Result<Arc<ClientConfig>, TlsError>> = OnceLock::new();
    static TRUSTING: OnceLock<Result<Arc<ClientConfig>, TlsError>> = OnceLock::new();
    let cell = if verify { &VERIFYING } else { &TRUSTING };
    cell.get_or_init(|| build(verify)).clone()
}

fn build(verify: bool) -> Result<Arc<ClientConfig>, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A malformed system certificate is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(TlsError::NoRoots);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Opens TLS over `stream` to `host`.
pub async fn connect(
    stream: TcpStream,
    host: &str,
    verify: bool,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let config = client_config(verify)?;
    let name = ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName {
        host: host.to_owned(),
    })?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|error| handshake(&error))
}

/// A failed handshake, with what to do when it is a certificate the check refused.
fn handshake(error: &dyn std::error::Error) -> TlsError {
    let reason = error.to_string();
    let hint = if reason.contains("certificate") || reason.contains("Certificate") {
        " (the server's certificate is not trusted; set tlsVerify: false for self-signed certificates such as Heroku's)"
    } else {
        ""
    };
    TlsError::Handshake { reason, hint }
}

/// Accepts any certificate but still checks the handshake signatures, so the
/// connection is encrypted to whoever holds the presented key.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
