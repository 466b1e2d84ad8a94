//! Test certificate authorities: a self-signed root (a "public" one, or a TLS-intercepting
//! proxy's such as Zscaler's) that issues server certificates for loopback TLS servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A self-signed root certificate authority that issues server certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

/// A server certificate issued by a [`TestCa`], with its private key.
#[derive(Debug)]
pub struct ServerIdentity {
    /// PEM of the leaf certificate followed by the issuing root's, as a server sends it
    /// (the root is included so a client that distrusts it can still name the issuer).
    pub chain_pem: String,
    /// PEM (PKCS#8) of the leaf's private key.
    pub key_pem: String,
    /// DER of the leaf certificate followed by the root's, same order as `chain_pem`.
    pub chain_der: Vec<CertificateDer<'static>>,
    /// Start of the leaf's validity (whole seconds, as in the certificate).
    pub not_before: SystemTime,
    /// End of the leaf's validity (whole seconds; in the past for [`TestCa::issue_expired`]).
    pub not_after: SystemTime,
    key_der: PrivatePkcs8KeyDer<'static>,
}

impl TestCa {
    /// Generates a self-signed root CA (ECDSA P-256) with this subject common name and
    /// organization, e.g. `("Test Public Root", "aiwatch test")` or
    /// `("Zscaler Root CA", "Zscaler Inc.")`. Valid from yesterday for ten years.
    pub fn new(common_name: &str, organization: &str) -> TestCa {
        let key = KeyPair::generate().expect("rcgen could not generate a CA key pair");
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(now - DAY);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(now + 3650 * DAY);
        let cert = params
            .self_signed(&key)
            .expect("rcgen could not self-sign the test CA");
        TestCa {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The root certificate, PEM-encoded.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The root certificate, DER-encoded.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// Writes the root certificate as PEM to `dir/file_name` (for `--ca-file` / `ca_file`)
    /// and returns that path.
    pub fn write_pem(&self, dir: &Path, file_name: &str) -> PathBuf {
        let path = dir.join(file_name);
        std::fs::write(&path, &self.cert_pem)
            .unwrap_or_else(|e| panic!("cannot write test CA to {}: {e}", path.display()));
        path
    }

    /// A rustls client configuration (ring provider, ALPN `http/1.1`) that trusts this root only.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert_der())
            .expect("rustls rejected the test CA as a trust anchor");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Issues a server certificate for these DNS names and/or IP literals (subject alternative
    /// names; the first one is also the subject CN), valid from yesterday for 90 days.
    pub fn issue(&self, names: &[&str]) -> ServerIdentity {
        let now = SystemTime::now();
        self.issue_valid(names, now - DAY, now + 90 * DAY)
    }

    /// Like [`issue`](TestCa::issue), but the certificate expired yesterday
    /// (valid from 91 days ago until 1 day ago).
    pub fn issue_expired(&self, names: &[&str]) -> ServerIdentity {
        let now = SystemTime::now();
        self.issue_valid(names, now - 91 * DAY, now - DAY)
    }

    /// Issues a server certificate for these names valid over `[not_before, not_after]`
    /// (e.g. not yet valid, to simulate a client clock that is behind).
    pub fn issue_valid(
        &self,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> ServerIdentity {
        assert!(
            !names.is_empty(),
            "a server certificate needs at least one name"
        );
        // Certificates carry whole seconds; report exactly what is in the certificate.
        let not_before = UNIX_EPOCH + Duration::from_secs(since_epoch(not_before).as_secs());
        let not_after = UNIX_EPOCH + Duration::from_secs(since_epoch(not_after).as_secs());
        let key = KeyPair::generate().expect("rcgen could not generate a server key pair");
        let sans: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(sans)
            .unwrap_or_else(|e| panic!("invalid certificate names {names:?}: {e}"));
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
        let leaf = params
            .signed_by(&key, &self.issuer)
            .expect("rcgen could not sign the server certificate");
        ServerIdentity {
            chain_pem: format!("{}{}", leaf.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            chain_der: vec![leaf.der().clone(), self.cert_der.clone()],
            not_before,
            not_after,
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// A rustls server configuration presenting this certificate chain: ring provider,
    /// ALPN `http/1.1`, no client authentication.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_no_client_auth()
        .with_single_cert(self.chain_der.clone(), self.private_key_der())
        .expect("rustls rejected the test certificate or key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// The leaf's private key, DER-encoded.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

/// How long after the Unix epoch `t` is; rcgen dates are built as
/// `rcgen::date_time_ymd(1970, 1, 1) + since_epoch(t)` (no direct dependency on `time`).
fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH)
        .expect("test certificates are dated after 1970")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::CertificateError;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// Serves one TLS connection on loopback with `identity`, connects to it with `client`
    /// as `server_name`, and returns the client's outcome (the negotiated ALPN on success).
    async fn handshake(
        identity: &ServerIdentity,
        client: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<Option<Vec<u8>>, rustls::Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let acceptor = TlsAcceptor::from(identity.server_config());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let mut byte = [0u8; 1];
                if tls.read_exact(&mut byte).await.is_ok() {
                    let _ = tls.write_all(&byte).await;
                    let _ = tls.shutdown().await;
                }
            }
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from(server_name.to_owned()).expect("valid server name");
        let outcome = match TlsConnector::from(client).connect(name, tcp).await {
            Ok(mut tls) => {
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                tls.write_all(b"!").await.expect("write over TLS");
                let mut echo = [0u8; 1];
                tls.read_exact(&mut echo).await.expect("read over TLS");
                assert_eq!(&echo, b"!");
                Ok(alpn)
            }
            Err(e) => Err(e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .cloned()
                .unwrap_or_else(|| panic!("handshake failed without a rustls error: {e}"))),
        };
        server.await.expect("server task");
        outcome
    }

    #[tokio::test]
    async fn trusted_ca_completes_a_handshake_for_names_and_ips() {
        let ca = TestCa::new("Test Public Root", "aiwatch test");
        let identity = ca.issue(&["localhost", "api.openai.test", "127.0.0.1"]);
        for name in ["localhost", "api.openai.test", "127.0.0.1"] {
            let alpn = handshake(&identity, ca.client_config(), name)
                .await
                .unwrap_or_else(|e| panic!("handshake as {name} failed: {e}"));
            assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        }
    }

    #[tokio::test]
    async fn untrusted_ca_fails_with_unknown_issuer() {
        let public = TestCa::new("Test Public Root", "aiwatch test");
        let proxy = TestCa::new("Zscaler Root CA", "Zscaler Inc.");
        let intercepted = proxy.issue(&["chatgpt.com"]);
        let error = handshake(&intercepted, public.client_config(), "chatgpt.com")
            .await
            .expect_err("a certificate from an untrusted CA must be rejected");
        assert_eq!(
            error,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }

    #[tokio::test]
    async fn expired_and_wrong_name_certificates_fail() {
        let ca = TestCa::new("Test Public Root", "aiwatch test");
        let expired = ca.issue_expired(&["localhost"]);
        assert!(expired.not_after < SystemTime::now());
        let error = handshake(&expired, ca.client_config(), "localhost")
            .await
            .expect_err("an expired certificate must be rejected");
        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{error:?}"
        );

        let other = ca.issue(&["other.test"]);
        let error = handshake(&other, ca.client_config(), "localhost")
            .await
            .expect_err("a certificate for another name must be rejected");
        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{error:?}"
        );
    }

    #[test]
    fn pem_outputs_are_well_formed_and_written() {
        let ca = TestCa::new("Zscaler Root CA", "Zscaler Inc.");
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let identity = ca.issue(&["localhost"]);
        assert_eq!(identity.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(identity.chain_pem.ends_with(&ca.cert_pem()));
        assert!(identity.key_pem.contains("BEGIN PRIVATE KEY"));
        assert_eq!(identity.chain_der[1], ca.cert_der());
        let now = SystemTime::now();
        assert!(identity.not_before < now && now < identity.not_after);

        let dir = std::env::temp_dir().join(format!("aiwatch-testkit-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = ca.write_pem(&dir, "zscaler.pem");
        assert_eq!(path, dir.join("zscaler.pem"));
        assert_eq!(
            std::fs::read_to_string(&path).expect("read back"),
            ca.cert_pem()
        );
        std::fs::remove_dir_all(&dir).expect("clean temp dir");
    }
}
