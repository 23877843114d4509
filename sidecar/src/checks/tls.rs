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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration; `verify: false` accepts any certificate.
pub fn client_config(verify: bool) -> Result<Arc<ClientConfig>, String> {
    // Both are built once: loading the system's roots reads files.
    static VERIFYING: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    static TRUSTING: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let cell = if verify { &VERIFYING } else { &TRUSTING };
    cell.get_or_init(|| build(verify)).clone()
}

fn build(verify: bool) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup: {error}"))?;
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A malformed system certificate is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err("TLS verification is on but no trusted root certificates were found (install ca-certificates or set SSL_CERT_FILE)".to_owned());
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
) -> Result<TlsStream<TcpStream>, String> {
    let config = client_config(verify)?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host} is not a valid TLS server name"))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|error| describe(&error))
}

/// A TLS error, with what to do when it is a certificate the check refused.
pub fn describe(error: &dyn std::error::Error) -> String {
    let text = error.to_string();
    if text.contains("certificate") || text.contains("Certificate") {
        format!("TLS handshake failed: {text} (the server's certificate is not trusted; set tlsVerify: false for self-signed certificates such as Heroku's)")
    } else {
        format!("TLS handshake failed: {text}")
    }
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
