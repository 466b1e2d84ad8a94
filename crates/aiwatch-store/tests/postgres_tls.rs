//! TLS to PostgreSQL as libpq's `sslmode` means it, against a fake server on loopback that
//! speaks the protocol's first steps (SSLRequest, then TLS with a test authority's certificate
//! for 127.0.0.1) and ends every login with an error naming what it saw — so each test tells
//! from the client's error whether TLS was used and whether the certificate was accepted.
//! The same modes against a real PostgreSQL with TLS on: `cargo xtask e2e postgres`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use aiwatch_store::url::PostgresUrl;
use aiwatch_testkit::ca::TestCa;

const SSL_REQUEST_CODE: u32 = 80_877_103;
const PROTOCOL_3: u32 = 196_608;

/// What the fake server offers.
#[derive(Clone, Copy)]
enum Offer {
    Tls,
    PlainOnly,
}

struct FakePostgres {
    addr: SocketAddr,
    /// How each login arrived: "tls" or "plain"; "tls refused" when the client gave up during
    /// the handshake.
    seen: JoinHandle<Vec<String>>,
}

struct Authority {
    ca: TestCa,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn authority() -> Authority {
    let ca = TestCa::new("Test Database Root", "aiwatch test");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = ca.write_pem(dir.path(), "root.pem");
    Authority {
        ca,
        ca_file,
        _dir: dir,
    }
}

/// A fake server that answers `logins` connections, then stops; its certificate names 127.0.0.1.
fn fake_postgres(authority: &Authority, offer: Offer, logins: usize) -> FakePostgres {
    fake_postgres_named(authority, offer, logins, &["127.0.0.1"])
}

fn fake_postgres_named(
    authority: &Authority,
    offer: Offer,
    logins: usize,
    names: &[&str],
) -> FakePostgres {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let mut config = (*authority.ca.issue(names).server_config()).clone();
    config.alpn_protocols.clear();
    let config = Arc::new(config);
    let seen = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..logins {
            let Ok((stream, _)) = listener.accept() else {
                break;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            seen.push(serve_login(stream, offer, &config).unwrap_or_else(|e| e));
        }
        seen
    });
    FakePostgres { addr, seen }
}

/// One connection: the SSLRequest answered as `offer` says, TLS if agreed, then the login
/// refused with a message naming how it came.
fn serve_login(
    mut stream: TcpStream,
    offer: Offer,
    config: &Arc<rustls::ServerConfig>,
) -> Result<String, String> {
    let (length, code) = read_header(&mut stream)?;
    if code == SSL_REQUEST_CODE {
        match offer {
            Offer::PlainOnly => {
                stream.write_all(b"N").map_err(|e| e.to_string())?;
                let (length, code) = read_header(&mut stream)?;
                finish_login(&mut stream, length, code, "plain")?;
                return Ok("plain".into());
            }
            Offer::Tls => stream.write_all(b"S").map_err(|e| e.to_string())?,
        }
        let connection =
            rustls::ServerConnection::new(config.clone()).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(connection, stream);
        let (length, code) = read_header(&mut tls).map_err(|_| "tls refused".to_owned())?;
        finish_login(&mut tls, length, code, "tls")?;
        return Ok("tls".into());
    }
    finish_login(&mut stream, length, code, "plain")?;
    Ok("plain".into())
}

fn read_header(stream: &mut impl Read) -> Result<(u32, u32), String> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).map_err(|e| e.to_string())?;
    let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let code = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    Ok((length, code))
}

/// Reads the rest of a StartupMessage and answers it with a FATAL ErrorResponse.
fn finish_login(
    stream: &mut (impl Read + Write),
    length: u32,
    code: u32,
    how: &str,
) -> Result<(), String> {
    if code != PROTOCOL_3 || !(8..=10_000).contains(&length) {
        return Err(format!(
            "not a startup message: code {code}, length {length}"
        ));
    }
    let mut rest = vec![0u8; length as usize - 8];
    stream.read_exact(&mut rest).map_err(|e| e.to_string())?;
    let mut fields = Vec::new();
    for (kind, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28000"),
        (b'M', &format!("fake server saw a {how} login") as &str),
    ] {
        fields.push(kind);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    stream.write_all(&message).map_err(|e| e.to_string())?;
    stream.flush().map_err(|e| e.to_string())
}

/// The connect error for `query` (after `?`) against the fake at `host`.
fn connect_error(fake: &FakePostgres, host: &str, query: &str) -> String {
    let url = format!(
        "postgres://aiwatch:s3cret@{host}:{}/watch?{query}",
        fake.addr.port()
    );
    let url = PostgresUrl::parse(&url).expect("valid URL");
    match url.connect_admin(Duration::from_secs(5)) {
        Ok(_) => panic!("the fake server never lets a login through"),
        Err(e) => e.to_string(),
    }
}

fn ca_param(authority: &Authority) -> String {
    format!("sslrootcert={}", authority.ca_file.display())
}

#[test]
fn verify_full_with_the_servers_authority_connects_over_tls() {
    let authority = authority();
    let fake = fake_postgres(&authority, Offer::Tls, 1);
    let error = connect_error(
        &fake,
        "127.0.0.1",
        &format!("sslmode=verify-full&{}", ca_param(&authority)),
    );
    assert!(error.contains("saw a tls login"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
    assert_eq!(fake.seen.join().expect("fake"), ["tls"]);
}

#[test]
fn verify_full_and_verify_ca_refuse_a_certificate_from_another_authority() {
    let authority = authority();
    let other = self::authority();
    let fake = fake_postgres(&authority, Offer::Tls, 2);
    for mode in ["verify-full", "verify-ca"] {
        let error = connect_error(
            &fake,
            "127.0.0.1",
            &format!("sslmode={mode}&{}", ca_param(&other)),
        );
        assert!(
            error.contains("invalid peer certificate"),
            "{mode}: {error}"
        );
        assert!(
            error.contains("sslrootcert=PATH"),
            "{mode}: says what to do: {error}"
        );
    }
    assert_eq!(
        fake.seen.join().expect("fake"),
        ["tls refused", "tls refused"]
    );
}

#[test]
fn require_with_a_root_certificate_checks_the_chain_as_libpq_does() {
    let authority = authority();
    let other = self::authority();
    let fake = fake_postgres(&authority, Offer::Tls, 2);
    let refused = connect_error(
        &fake,
        "127.0.0.1",
        &format!("sslmode=require&{}", ca_param(&other)),
    );
    assert!(refused.contains("invalid peer certificate"), "{refused}");
    // Only the chain: a trusted certificate for another name is accepted.
    let accepted = connect_error(
        &fake,
        "localhost",
        &format!("sslmode=require&{}", ca_param(&authority)),
    );
    assert!(accepted.contains("saw a tls login"), "{accepted}");
    assert_eq!(fake.seen.join().expect("fake"), ["tls refused", "tls"]);
}

#[test]
fn only_verify_full_checks_the_host_name() {
    let authority = authority();
    let ca = ca_param(&authority);
    // A trusted certificate for another host than the one connected to.
    let fake = fake_postgres_named(&authority, Offer::Tls, 2, &["db.example.test"]);
    let full = connect_error(&fake, "127.0.0.1", &format!("sslmode=verify-full&{ca}"));
    assert!(full.contains("invalid peer certificate"), "{full}");
    let ca_only = connect_error(&fake, "127.0.0.1", &format!("sslmode=verify-ca&{ca}"));
    assert!(ca_only.contains("saw a tls login"), "{ca_only}");
    assert_eq!(fake.seen.join().expect("fake"), ["tls refused", "tls"]);
}

#[test]
fn require_and_prefer_encrypt_without_checking_the_certificate() {
    let authority = authority();
    let fake = fake_postgres(&authority, Offer::Tls, 2);
    let required = connect_error(&fake, "127.0.0.1", "sslmode=require");
    assert!(required.contains("saw a tls login"), "{required}");
    let preferred = connect_error(&fake, "127.0.0.1", "application_name=t");
    assert!(preferred.contains("saw a tls login"), "{preferred}");
    assert_eq!(fake.seen.join().expect("fake"), ["tls", "tls"]);
}

#[test]
fn prefer_falls_back_to_plain_and_require_does_not() {
    let authority = authority();
    let fake = fake_postgres(&authority, Offer::PlainOnly, 2);
    let preferred = connect_error(&fake, "127.0.0.1", "sslmode=prefer");
    assert!(preferred.contains("saw a plain login"), "{preferred}");
    let required = connect_error(&fake, "127.0.0.1", "sslmode=require");
    assert!(
        required.contains("server does not support TLS"),
        "{required}"
    );
    let seen = fake.seen.join().expect("fake");
    assert_eq!(seen[0], "plain");
    assert_ne!(seen[1], "plain", "require never logged in without TLS");
}

#[test]
fn disable_never_asks_for_tls() {
    let authority = authority();
    let fake = fake_postgres(&authority, Offer::Tls, 1);
    let error = connect_error(&fake, "127.0.0.1", "sslmode=disable");
    assert!(error.contains("saw a plain login"), "{error}");
    assert_eq!(fake.seen.join().expect("fake"), ["plain"]);
}

#[test]
fn an_unreadable_root_certificate_file_is_named() {
    let url = PostgresUrl::parse(
        "postgres://u@127.0.0.1:1/d?sslmode=verify-full&sslrootcert=/nonexistent/root.pem",
    )
    .expect("valid URL");
    let Err(error) = url.connect_admin(Duration::from_secs(1)) else {
        panic!("connected without its root certificate file");
    };
    let error = error.to_string();
    assert!(error.contains("/nonexistent/root.pem"), "{error}");
}

/// Whether the backend serving `client` runs over TLS (PostgreSQL's own view).
fn backend_uses_tls(client: &mut postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .expect("pg_stat_ssl")
        .get(0)
}

#[test]
fn a_real_postgresql_is_reached_over_verified_tls_when_the_e2e_provides_one() {
    // `cargo xtask e2e postgres` starts a server with TLS on and names its authority here.
    let (Ok(url), Ok(ca)) = (
        std::env::var("AIWATCH_TEST_POSTGRES_URL"),
        std::env::var("AIWATCH_TEST_POSTGRES_CA"),
    ) else {
        eprintln!("skipped: AIWATCH_TEST_POSTGRES_URL and _CA not set (cargo xtask e2e postgres)");
        return;
    };
    let with = |query: &str| {
        let separator = if url.contains('?') { '&' } else { '?' };
        PostgresUrl::parse(&format!("{url}{separator}{query}")).expect("valid URL")
    };
    let connect = |url: PostgresUrl| url.connect_admin(Duration::from_secs(10));
    let mut verified = connect(with(&format!("sslmode=verify-full&sslrootcert={ca}")))
        .expect("verify-full with the server's authority");
    assert!(backend_uses_tls(&mut verified));
    let mut preferred = connect(with("application_name=aiwatch-test")).expect("prefer");
    assert!(
        backend_uses_tls(&mut preferred),
        "prefer uses TLS when offered"
    );
    let mut plain = connect(with("sslmode=disable")).expect("disable");
    assert!(!backend_uses_tls(&mut plain));
    let Err(untrusted) = connect(with("sslmode=verify-full")) else {
        panic!("verify-full trusted the throwaway authority without being told to");
    };
    // Refused by the system's authorities, or for want of any on a machine without them.
    let untrusted = untrusted.to_string();
    assert!(
        untrusted.contains("invalid peer certificate") || untrusted.contains("has none"),
        "{untrusted}"
    );
}
