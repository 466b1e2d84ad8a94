//! `FakeSmtp` driven by a real client (lettre, tokio + rustls) and by hand on the wire.

use std::time::Duration;

use aiwatch_testkit::{FakeSmtp, SmtpSecurity, TestCa};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

/// TLS parameters that trust only `ca` and expect a certificate for `domain`.
fn tls_parameters(ca: &TestCa, domain: &str) -> TlsParameters {
    let root = Certificate::from_pem(ca.cert_pem().as_bytes()).expect("lettre reads the CA PEM");
    TlsParameters::builder(domain.to_owned())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(root)
        .build_rustls()
        .expect("lettre builds rustls parameters")
}

/// A transport to the fake at 127.0.0.1 (never `localhost`, which may resolve to ::1 first).
fn transport(
    smtp: &FakeSmtp,
    tls: Tls,
    login: Option<(&str, &str, Mechanism)>,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp.addr().port())
        .tls(tls)
        .timeout(Some(WAIT));
    if let Some((user, password, mechanism)) = login {
        builder = builder
            .credentials(Credentials::new(user.to_owned(), password.to_owned()))
            .authentication(vec![mechanism]);
    }
    builder.build()
}

fn alert(subject: &str) -> Message {
    Message::builder()
        .from("aiwatch <alerts@aiwatch.test>".parse().expect("from"))
        .to("ops@example.test".parse().expect("to"))
        .to("Second <oncall@example.test>".parse().expect("to"))
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(String::from("OpenAI is down.\n.leading dot survives\n"))
        .expect("message")
}

fn certificates() -> (TestCa, aiwatch_testkit::ServerIdentity) {
    let ca = TestCa::new("Test Public Root", "aiwatch test");
    let identity = ca.issue(&["127.0.0.1", "localhost"]);
    (ca, identity)
}

#[tokio::test]
async fn starttls_with_auth_plain_delivers() {
    let (ca, identity) = certificates();
    let smtp = FakeSmtp::start(SmtpSecurity::StartTls, Some(&identity)).await;
    smtp.require_auth("alice", "s3cret");
    let mailer = transport(
        &smtp,
        Tls::Required(tls_parameters(&ca, "localhost")),
        Some(("alice", "s3cret", Mechanism::Plain)),
    );
    let response = mailer.send(alert("OpenAI down")).await.expect("delivered");
    assert!(response.is_positive());

    let mails = smtp.wait_for_messages(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "alerts@aiwatch.test");
    assert_eq!(mail.to, ["ops@example.test", "oncall@example.test"]);
    assert_eq!(mail.header("subject").as_deref(), Some("OpenAI down"));
    assert_eq!(mail.authenticated_as.as_deref(), Some("alice"));
    assert!(mail.tls);
    // lettre stuffed the leading dot; the server took it off again.
    let body = "\r\n\r\nOpenAI is down.\r\n.leading dot survives\r\n";
    assert!(mail.data.contains(body), "{:?}", mail.data);
}

#[tokio::test]
async fn implicit_tls_with_auth_login_delivers() {
    let (ca, identity) = certificates();
    let smtp = FakeSmtp::start(SmtpSecurity::ImplicitTls, Some(&identity)).await;
    smtp.require_auth("bob", "hunter2");
    let mailer = transport(
        &smtp,
        Tls::Wrapper(tls_parameters(&ca, "127.0.0.1")),
        Some(("bob", "hunter2", Mechanism::Login)),
    );
    mailer.send(alert("implicit")).await.expect("delivered");
    let mails = smtp.wait_for_messages(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls);
    assert_eq!(mails[0].authenticated_as.as_deref(), Some("bob"));
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let (ca, identity) = certificates();
    let smtp = FakeSmtp::start(SmtpSecurity::StartTls, Some(&identity)).await;
    smtp.require_auth("alice", "s3cret");
    for mechanism in [Mechanism::Plain, Mechanism::Login] {
        let mailer = transport(
            &smtp,
            Tls::Required(tls_parameters(&ca, "localhost")),
            Some(("alice", "wrong", mechanism)),
        );
        let error = mailer.send(alert("nope")).await.expect_err("refused");
        assert!(error.is_permanent(), "{error:?}");
        assert_eq!(error.status().map(u16::from), Some(535), "{error}");
    }
    // Without credentials at all, MAIL is refused.
    let mailer = transport(&smtp, Tls::Required(tls_parameters(&ca, "localhost")), None);
    let error = mailer.send(alert("anon")).await.expect_err("refused");
    assert_eq!(error.status().map(u16::from), Some(530), "{error}");
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn mail_before_starttls_is_refused() {
    let (_ca, identity) = certificates();
    let smtp = FakeSmtp::start(SmtpSecurity::StartTls, Some(&identity)).await;
    let error = transport(&smtp, Tls::None, None)
        .send(alert("cleartext"))
        .await
        .expect_err("refused");
    assert!(error.is_permanent(), "{error:?}");
    assert_eq!(error.status().map(u16::from), Some(530), "{error}");
    // Credentials without TLS: AUTH is not even advertised, lettre gives up on its own.
    let error = transport(&smtp, Tls::None, Some(("a", "b", Mechanism::Plain)))
        .send(alert("cleartext"))
        .await
        .expect_err("refused");
    assert!(error.is_client(), "{error:?}");

    let mut wire = Wire::connect(&smtp).await;
    let ehlo = wire.say("EHLO probe").await;
    assert!(
        ehlo.contains("250-SIZE") && ehlo.ends_with("250 STARTTLS"),
        "{ehlo}"
    );
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    let refused = "530 5.7.0 Must issue a STARTTLS command first";
    assert_eq!(wire.say("AUTH PLAIN AGFAYg==").await, refused);
    assert_eq!(wire.say("MAIL FROM:<a@b.test>").await, refused);
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn transient_rejection_then_retry_succeeds() {
    let smtp = FakeSmtp::start(SmtpSecurity::Plain, None).await;
    smtp.reject_next(451, "4.3.0 Try again later");
    let mailer = transport(&smtp, Tls::None, None);
    let error = mailer.send(alert("first")).await.expect_err("rejected");
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(error.status().map(u16::from), Some(451));
    assert!(smtp.messages().is_empty());

    mailer
        .send(alert("retry"))
        .await
        .expect("the retry is accepted");
    let mails = smtp.wait_for_messages(1, WAIT).await;
    assert_eq!(mails[0].header("Subject").as_deref(), Some("retry"));
    assert!(!mails[0].tls);
    assert_eq!(mails[0].authenticated_as, None);
}

#[tokio::test]
async fn the_protocol_on_the_wire() {
    let smtp = FakeSmtp::start(SmtpSecurity::Plain, None).await;
    smtp.require_auth("carol", "pw");
    let mut wire = Wire::connect(&smtp).await;
    assert_eq!(
        wire.say("MAIL FROM:<x@y.test>").await,
        "503 5.5.1 Send EHLO first"
    );
    assert_eq!(wire.say("HELO me").await, "250 fake-smtp.test greets me");
    let ehlo = wire.say("EHLO me").await;
    assert!(ehlo.ends_with("250 AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(wire.say("STARTTLS").await.starts_with("502 "));
    assert!(wire.say("VRFY carol").await.starts_with("502 "));
    let auth_needed = "530 5.7.0 Authentication required";
    assert_eq!(wire.say("MAIL FROM:<x@y.test>").await, auth_needed);
    // AUTH PLAIN with the 334 continuation; a wrong password, a cancel, then the right one.
    assert_eq!(wire.say("AUTH PLAIN").await, "334 ");
    let wrong = "535 5.7.8 Authentication credentials invalid";
    assert_eq!(wire.say("AGNhcm9sAHdyb25n").await, wrong); // \0carol\0wrong
    assert_eq!(wire.say("AUTH PLAIN").await, "334 ");
    assert!(wire.say("*").await.starts_with("501 "));
    assert_eq!(wire.say("AUTH PLAIN").await, "334 ");
    assert!(wire.say("AGNhcm9sAHB3").await.starts_with("235 ")); // \0carol\0pw
    assert!(wire
        .say("AUTH PLAIN AGNhcm9sAHB3")
        .await
        .starts_with("503 "));
    assert!(wire.say("RCPT TO:<a@b.test>").await.starts_with("503 "));
    assert!(wire.say("DATA").await.starts_with("503 "));
    assert!(wire.say("MAIL FROM:<>").await.starts_with("250 "));
    assert!(wire.say("RSET").await.starts_with("250 "));
    assert!(wire.say("NOOP").await.starts_with("250 "));
    assert!(wire
        .say("mail from: <me@x.test> SIZE=10")
        .await
        .starts_with("250 "));
    assert!(wire.say("RCPT TO:<a@b.test>").await.starts_with("250 "));
    assert!(wire.say("rcpt to:<c@d.test>").await.starts_with("250 "));
    assert!(wire.say("DATA").await.starts_with("354 "));
    let reply = wire.say("Subject: hi\r\n\r\n..one dot\r\nbody\r\n.").await;
    assert!(reply.starts_with("250 "), "{reply}");
    // Too big: the whole message is read, then refused.
    assert!(wire.say("MAIL FROM:<me@x.test>").await.starts_with("250 "));
    assert!(wire.say("RCPT TO:<a@b.test>").await.starts_with("250 "));
    assert!(wire.say("DATA").await.starts_with("354 "));
    let big = format!("{}\r\n", "x".repeat(1000)).repeat(1100);
    assert!(wire.say(&format!("{big}.")).await.starts_with("552 "));
    assert_eq!(wire.say("QUIT").await, "221 2.0.0 Bye");

    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "me@x.test");
    assert_eq!(mails[0].to, ["a@b.test", "c@d.test"]);
    assert_eq!(mails[0].data, "Subject: hi\r\n\r\n.one dot\r\nbody\r\n");
    assert_eq!(mails[0].authenticated_as.as_deref(), Some("carol"));

    // AUTH LOGIN with the user name given up front.
    let mut wire = Wire::connect(&smtp).await;
    wire.say("EHLO me").await;
    assert_eq!(wire.say("AUTH LOGIN Y2Fyb2w=").await, "334 UGFzc3dvcmQ6");
    assert!(wire.say("cHc=").await.starts_with("235 "));

    // A line over the cap is answered with 500 and the connection closed.
    let mut wire = Wire::connect(&smtp).await;
    assert!(wire.say(&"A".repeat(5000)).await.starts_with("500 "));
    assert_eq!(wire.read_reply().await, "");
}

#[tokio::test]
async fn dropping_stops_the_server() {
    let smtp = FakeSmtp::start(SmtpSecurity::Plain, None).await;
    let addr = smtp.addr();
    assert!(addr.ip().is_loopback());
    let mut wire = Wire::connect(&smtp).await;
    drop(smtp);
    let closed = tokio::time::timeout(WAIT, wire.read_reply()).await;
    assert_eq!(closed.expect("the connection closes").as_str(), "");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

/// A hand-driven plaintext SMTP client.
struct Wire(BufReader<TcpStream>);

impl Wire {
    /// Connects and checks the greeting.
    async fn connect(smtp: &FakeSmtp) -> Wire {
        let tcp = TcpStream::connect(smtp.addr()).await.expect("connect");
        let mut wire = Wire(BufReader::new(tcp));
        assert_eq!(wire.read_reply().await, "220 fake-smtp.test ESMTP ready");
        wire
    }

    /// Sends `line` (CRLF added) and returns the reply.
    async fn say(&mut self, line: &str) -> String {
        let io = self.0.get_mut();
        io.write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        self.read_reply().await
    }

    /// One whole reply, its lines joined with CRLF; empty if the server closed.
    async fn read_reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(WAIT, self.0.read_line(&mut line)).await;
            if read.expect("a reply in time").unwrap_or(0) == 0 {
                return lines.join("\r\n");
            }
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\r\n");
            }
        }
    }
}
