//! TLS for PostgreSQL connections, as libpq's `sslmode` means it: `prefer` and `require`
//! encrypt without checking who answers (libpq's own behaviour, which managed databases'
//! connection strings assume), `verify-ca` checks the certificate's chain, `verify-full` its
//! chain and host name. Trusted authorities are the `sslrootcert` file's when the URL names
//! one, else the system's.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};
use crate::url::{SslMode, TlsSettings};

/// The TLS connector for connections to `target` (for messages) made with `settings`.
pub(crate) fn connector(settings: &TlsSettings, target: &str) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let setup = |reason: String| Error::Connect {
        target: target.to_owned(),
        reason,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match settings.mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(WithoutName {
            roots: None,
            provider: provider.clone(),
        }),
        SslMode::VerifyCa => Arc::new(WithoutName {
            roots: Some(Arc::new(trusted_roots(settings).map_err(setup)?)),
            provider: provider.clone(),
        }),
        SslMode::VerifyFull => {
            let roots = Arc::new(trusted_roots(settings).map_err(setup)?);
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| setup(format!("certificate check: {e}")))?
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// What a failed connect says, with what to do when it is the server's certificate.
pub(crate) fn describe_connect_error(e: &postgres::Error) -> String {
    let mut text = aiwatch_core::error_chain::with_causes(e);
    if text.contains("invalid peer certificate") {
        text.push_str(
            " (the server's certificate is not trusted for this host: name the authority that \
             signed it with sslrootcert=PATH, or use sslmode=require to encrypt without checking)",
        );
    }
    text
}

/// The authorities to trust: the `sslrootcert` file's, or the system's.
fn trusted_roots(settings: &TlsSettings) -> std::result::Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &settings.root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| format!("sslrootcert {} could not be read: {e}", path.display()))?;
            roots.add_parsable_certificates(certs);
            if roots.is_empty() {
                return Err(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                ));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return Err(format!(
                    "sslmode={} needs trusted authorities: this system has none; name them \
                     with sslrootcert=PATH",
                    settings.mode.as_str()
                ));
            }
        }
    }
    Ok(roots)
}

/// The checks below `verify-full`: for `prefer` / `require` (no `roots`) any certificate, for
/// `verify-ca` one that chains to a trusted authority and is valid now; the host name it was
/// issued for is never compared. Either way the handshake's signatures must be the
/// certificate's, so the session is encrypted to whoever holds its key.
#[derive(Debug)]
struct WithoutName {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for WithoutName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            verify_server_cert_signed_by_trust_anchor(
                &ParsedCertificate::try_from(end_entity)?,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
