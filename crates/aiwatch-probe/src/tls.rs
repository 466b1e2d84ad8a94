//! Runs the TLS handshake with rustls and records the presented chain and which trust anchors
//! it validated through: the public web PKI, the service's own CA, or only a local root (an
//! interceptor).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use aiwatch_core::evidence::{CertInfo, TlsOutcome, TlsProblem, TrustPath};
use chrono::{DateTime, Utc};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::Error;

/// Validates chains against a service's own CA (`ca_file`).
pub type ExpectedVerifier = WebPkiServerVerifier;

/// The trust anchors of a run: public roots, plus this machine's store and `--ca-file` roots,
/// which count as non-public.
#[derive(Clone)]
pub struct Trust {
    provider: Arc<CryptoProvider>,
    public: Arc<WebPkiServerVerifier>,
    extra_files: Vec<PathBuf>,
    /// Built on first need: loading the system store costs time that a healthy check never pays.
    non_public: Arc<OnceLock<Option<Arc<WebPkiServerVerifier>>>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("extra_files", &self.extra_files)
            .finish_non_exhaustive()
    }
}

/// Reads every certificate in a PEM file.
pub fn load_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::CaFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?
        .collect();
    let certs = certs.map_err(|e| Error::CaFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(Error::CaFile {
            path: path.display().to_string(),
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, Error> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Fetch(format!("cannot build a certificate verifier: {e}")))
}

fn store_from(certs: Vec<CertificateDer<'static>>, path: &Path) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert).map_err(|e| Error::CaFile {
            path: path.display().to_string(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

impl Trust {
    /// Public roots from webpki-roots; `extra_ca_files` (`--ca-file`) join the system store as
    /// non-public anchors. The files are read now so a bad path fails before any probe runs.
    pub fn new(extra_ca_files: &[PathBuf]) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut public = RootCertStore::empty();
        public.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in extra_ca_files {
            load_pem_certs(path)?;
        }
        Ok(Self {
            public: verifier(public, &provider)?,
            provider,
            extra_files: extra_ca_files.to_vec(),
            non_public: Arc::new(OnceLock::new()),
        })
    }

    fn non_public(&self) -> Option<Arc<WebPkiServerVerifier>> {
        self.non_public
            .get_or_init(|| {
                let mut store = RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    let _ = store.add(cert);
                }
                for path in &self.extra_files {
                    if let Ok(certs) = load_pem_certs(path) {
                        for cert in certs {
                            let _ = store.add(cert);
                        }
                    }
                }
                if store.is_empty() {
                    return None;
                }
                verifier(store, &self.provider).ok()
            })
            .clone()
    }

    /// A verifier for a service that expects its own CA (`ca_file`).
    pub fn expected_verifier(&self, ca_file: &Path) -> Result<Arc<WebPkiServerVerifier>, Error> {
        let store = store_from(load_pem_certs(ca_file)?, ca_file)?;
        verifier(store, &self.provider)
    }
}

/// What the verifier saw during one handshake.
#[derive(Default, Debug)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    via: Option<TrustPath>,
}

/// Validates against each set of anchors in turn and remembers which one vouched.
#[derive(Debug)]
struct RecordingVerifier {
    trust: Trust,
    expected: Option<Arc<WebPkiServerVerifier>>,
    seen: Arc<Mutex<Seen>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<CertificateDer<'static>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        let verify = |v: &WebPkiServerVerifier| {
            v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        };
        let result = match verify(&self.trust.public) {
            Ok(ok) => Ok((ok, TrustPath::Public)),
            Err(public_err) => {
                let expected = self
                    .expected
                    .as_ref()
                    .map(|v| verify(v).map(|ok| (ok, TrustPath::Expected)));
                match expected {
                    Some(Ok(ok)) => Ok(ok),
                    // A service with its own CA: that CA's verdict is the one that explains.
                    Some(Err(expected_err)) if !is_unknown_issuer(&expected_err) => {
                        Err(expected_err)
                    }
                    _ => match self.trust.non_public().map(|v| verify(&v)) {
                        Some(Ok(ok)) => Ok((ok, TrustPath::NonPublic)),
                        Some(Err(e)) if !is_unknown_issuer(&e) => Err(e),
                        _ => Err(public_err),
                    },
                }
            }
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.chain = chain;
        match result {
            Ok((ok, via)) => {
                seen.via = Some(via);
                Ok(ok)
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust.public.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust.public.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.public.supported_verify_schemes()
    }
}

fn is_unknown_issuer(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    )
}

fn problem_of(e: &rustls::Error) -> Option<TlsProblem> {
    let rustls::Error::InvalidCertificate(cert) = e else {
        return None;
    };
    Some(match cert {
        CertificateError::UnknownIssuer => TlsProblem::UnknownIssuer,
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => TlsProblem::Expired,
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            TlsProblem::NotYetValid
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            TlsProblem::NameMismatch
        }
        other => TlsProblem::Other(format!("{other:?}")),
    })
}

/// The result of one handshake.
pub struct Handshake<S> {
    pub stream: Option<TlsStream<S>>,
    pub outcome: TlsOutcome,
    pub chain: Vec<CertInfo>,
    pub version: Option<String>,
}

/// Runs a TLS handshake for `host` over `io` before `deadline`.
pub async fn handshake<S>(
    trust: &Trust,
    expected: Option<Arc<WebPkiServerVerifier>>,
    host: &str,
    io: S,
    deadline: Instant,
) -> Handshake<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let seen = Arc::new(Mutex::new(Seen::default()));
    let verifier = Arc::new(RecordingVerifier {
        trust: trust.clone(),
        expected,
        seen: seen.clone(),
    });
    let config = ClientConfig::builder_with_provider(trust.provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        });
    let mut config = match config {
        Ok(c) => c,
        Err(e) => {
            return Handshake {
                stream: None,
                outcome: TlsOutcome::HandshakeFailed {
                    error: e.to_string(),
                },
                chain: Vec::new(),
                version: None,
            }
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = match ServerName::try_from(host.trim_matches(['[', ']']).to_owned()) {
        Ok(n) => n,
        Err(e) => {
            return Handshake {
                stream: None,
                outcome: TlsOutcome::HandshakeFailed {
                    error: format!("`{host}` is not a valid TLS server name: {e}"),
                },
                chain: Vec::new(),
                version: None,
            }
        }
    };
    let connector = TlsConnector::from(Arc::new(config));
    let result = tokio::time::timeout_at(deadline, connector.connect(name, io)).await;
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    let chain = seen.chain.iter().map(|der| cert_info(der)).collect();
    match result {
        Err(_) => Handshake {
            stream: None,
            outcome: TlsOutcome::Timeout,
            chain,
            version: None,
        },
        Ok(Err(io_err)) => {
            let rustls_err = io_err
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            let outcome = match rustls_err.and_then(problem_of) {
                Some(problem) => TlsOutcome::Untrusted { problem },
                None => TlsOutcome::HandshakeFailed {
                    error: io_err.to_string(),
                },
            };
            Handshake {
                stream: None,
                outcome,
                chain,
                version: None,
            }
        }
        Ok(Ok(stream)) => {
            let version = stream
                .get_ref()
                .1
                .protocol_version()
                .map(|v| format!("{v:?}").replace('_', "."));
            Handshake {
                stream: Some(stream),
                outcome: TlsOutcome::Trusted {
                    via: seen.via.unwrap_or(TrustPath::Public),
                },
                chain,
                version,
            }
        }
    }
}

/// Reads the names and dates of a certificate; unparsable ones still get a line.
fn cert_info(der: &CertificateDer<'_>) -> CertInfo {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return CertInfo {
            subject: "(unparsable certificate)".into(),
            issuer: "(unparsable certificate)".into(),
            not_before: None,
            not_after: None,
            names: Vec::new(),
        };
    };
    let name = |n: &x509_parser::x509::X509Name<'_>| {
        let cn = n.iter_common_name().next().and_then(|a| a.as_str().ok());
        let org = n.iter_organization().next().and_then(|a| a.as_str().ok());
        match (cn, org) {
            (Some(cn), Some(org)) if !cn.contains(org) => format!("{cn} ({org})"),
            (Some(cn), _) => cn.to_owned(),
            (None, Some(org)) => org.to_owned(),
            (None, None) => n.to_string(),
        }
    };
    let time = |t: x509_parser::time::ASN1Time| DateTime::<Utc>::from_timestamp(t.timestamp(), 0);
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            match general {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push((*d).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    CertInfo {
        subject: name(cert.subject()),
        issuer: name(cert.issuer()),
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        names,
    }
}
