//! A fake SMTP server on loopback, to test an email channel against a real client:
//! [`FakeSmtp`] speaks enough ESMTP (EHLO, STARTTLS or implicit TLS, AUTH PLAIN/LOGIN, MAIL,
//! RCPT, DATA) to accept mail, and records each accepted message as a [`ReceivedMail`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};
use tokio_rustls::TlsAcceptor;

use crate::ca::ServerIdentity;

/// Longest command or data line accepted, CRLF included.
const MAX_LINE: usize = 4096;
/// Largest message accepted (advertised as `SIZE` in EHLO); bigger ones get `552`.
const MAX_MESSAGE: usize = 1 << 20;
/// How long a connection may stay silent (or a TLS handshake last) before it is closed.
const IDLE: Duration = Duration::from_secs(10);
const MUST_STARTTLS: &str = "530 5.7.0 Must issue a STARTTLS command first";

/// How the server secures its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plaintext first, `STARTTLS` advertised and required before AUTH and MAIL (port 587).
    StartTls,
    /// TLS from the first byte (port 465, "SMTPS").
    ImplicitTls,
    /// No TLS at all; AUTH is offered in the clear.
    #[default]
    Plain,
}

/// One message the server accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The address of `MAIL FROM:<…>`, without the brackets.
    pub from: String,
    /// The address of each `RCPT TO:<…>`, without the brackets, in order.
    pub to: Vec<String>,
    /// The message sent after `DATA` (headers and body, CRLF line ends), dot-unstuffed and
    /// without the terminating `.` line.
    pub data: String,
    /// The user name of the successful AUTH on this connection, if any.
    pub authenticated_as: Option<String>,
    /// Whether the message arrived over TLS.
    pub tls: bool,
}

impl ReceivedMail {
    /// The value of the first header called `name` (case-insensitive), unfolded and trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut lines = self.data.split("\r\n").take_while(|line| !line.is_empty());
        let first = lines.find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value)
        })?;
        let folded = lines.take_while(|line| line.starts_with([' ', '\t']));
        Some(folded.fold(first.trim().to_owned(), |all, more| all + " " + more.trim()))
    }
}

/// An SMTP server on `127.0.0.1:<random port>` that accepts mail and records it.
///
/// Any AUTH succeeds unless [`require_auth`](FakeSmtp::require_auth) set credentials. The
/// server stops, closing its connections, when dropped.
#[derive(Debug)]
pub struct FakeSmtp {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    tasks: JoinSet<()>,
}

#[derive(Debug, Default)]
struct State {
    credentials: Option<(String, String)>,
    reject_next: Option<(u16, String)>,
    mails: Vec<ReceivedMail>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeSmtp {
    /// Starts the server. `identity` is the certificate for [`SmtpSecurity::StartTls`] and
    /// [`SmtpSecurity::ImplicitTls`] (panics without one) and is ignored for `Plain`.
    pub async fn start(security: SmtpSecurity, identity: Option<&ServerIdentity>) -> FakeSmtp {
        let acceptor = match (security, identity) {
            (SmtpSecurity::Plain, _) => None,
            (_, Some(identity)) => {
                let mut config = (*identity.server_config()).clone();
                config.alpn_protocols.clear(); // SMTP negotiates no ALPN protocol
                Some(TlsAcceptor::from(Arc::new(config)))
            }
            (_, None) => panic!("FakeSmtp: {security:?} needs a ServerIdentity"),
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("FakeSmtp: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let state = Arc::new(Mutex::new(State::default()));
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(
            listener,
            security,
            acceptor,
            Arc::clone(&state),
        ));
        FakeSmtp { addr, state, tasks }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, MAIL needs a successful AUTH as `user` with `password` first.
    pub fn require_auth(&self, user: &str, password: &str) {
        lock(&self.state).credentials = Some((user.to_owned(), password.to_owned()));
    }

    /// Answers the end of the next DATA with `code text` (e.g. `451`, a transient failure)
    /// instead of accepting the message.
    pub fn reject_next(&self, code: u16, text: &str) {
        assert!((400..600).contains(&code), "not an SMTP error code: {code}");
        lock(&self.state).reject_next = Some((code, text.to_owned()));
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        lock(&self.state).mails.clone()
    }

    /// Waits until at least `n` messages were accepted or `within` has passed, and returns the
    /// messages accepted by then.
    pub async fn wait_for_messages(&self, n: usize, within: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + within;
        loop {
            let mails = self.messages();
            if mails.len() >= n || Instant::now() >= deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn accept_loop(
    listener: TcpListener,
    security: SmtpSecurity,
    acceptor: Option<TlsAcceptor>,
    state: Arc<Mutex<State>>,
) {
    // Connection tasks live in this set, so aborting the accept task also closes them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            result = listener.accept() => {
                if let Ok((tcp, _)) = result {
                    let _ = tcp.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let session = Session { security, state, ..Session::default() };
                    connections.spawn(session.serve(tcp, acceptor.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A plain or TLS connection.
trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<S: AsyncRead + AsyncWrite + Unpin> Io for S {}

/// One client connection: what it has said so far.
#[derive(Default)]
struct Session {
    security: SmtpSecurity,
    state: Arc<Mutex<State>>,
    tls: bool,
    greeted: bool,
    user: Option<String>,
    from: Option<String>,
    to: Vec<String>,
}

impl Session {
    async fn serve(mut self, tcp: TcpStream, acceptor: Option<TlsAcceptor>) {
        let implicit = self.security == SmtpSecurity::ImplicitTls;
        // Plaintext first unless TLS is implicit: the stream comes back once STARTTLS is accepted.
        let tcp = if implicit {
            Some(tcp)
        } else {
            self.dialog(BufReader::new(tcp), true).await
        };
        let (Some(tcp), Some(acceptor)) = (tcp, acceptor) else {
            return;
        };
        let Ok(Ok(stream)) = timeout(IDLE, acceptor.accept(tcp)).await else {
            return;
        };
        // RFC 3207: forget everything the client said before TLS.
        let (security, state) = (self.security, self.state);
        let mut session = Session {
            security,
            state,
            tls: true,
            ..Session::default()
        };
        session.dialog(BufReader::new(stream), implicit).await;
    }

    /// STARTTLS is offered and not done yet.
    fn tls_pending(&self) -> bool {
        self.security == SmtpSecurity::StartTls && !self.tls
    }

    /// Runs commands until the client quits or goes away (`None`) or STARTTLS is accepted
    /// (`Some` with the raw stream, whatever the client pipelined after it discarded).
    async fn dialog<S: Io>(&mut self, mut io: BufReader<S>, greet: bool) -> Option<S> {
        if greet {
            send(&mut io, "220 fake-smtp.test ESMTP ready").await?;
        }
        loop {
            let raw = read_line(&mut io).await?;
            let line = String::from_utf8_lossy(&raw);
            let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
            let answer = match verb.to_ascii_uppercase().as_str() {
                "EHLO" => self.hello(arg, true),
                "HELO" => self.hello(arg, false),
                "STARTTLS" if self.tls_pending() => {
                    send(&mut io, "220 Ready to start TLS").await?;
                    return Some(io.into_inner());
                }
                "AUTH" => self.auth(&mut io, arg).await?,
                "MAIL" => self.mail(arg),
                "RCPT" => self.rcpt(arg),
                "DATA" => self.data(&mut io).await?,
                "RSET" => {
                    self.from = None;
                    self.to.clear();
                    "250 2.0.0 OK".to_owned()
                }
                "NOOP" => "250 2.0.0 OK".to_owned(),
                "QUIT" => {
                    send(&mut io, "221 2.0.0 Bye").await;
                    return None;
                }
                _ => "502 5.5.2 Command not recognized".to_owned(),
            };
            send(&mut io, &answer).await?;
        }
    }

    fn hello(&mut self, client: &str, extended: bool) -> String {
        self.greeted = true;
        self.from = None;
        self.to.clear();
        if !extended {
            return format!("250 fake-smtp.test greets {client}");
        }
        let auth = if self.tls_pending() {
            "STARTTLS"
        } else {
            "AUTH PLAIN LOGIN"
        };
        format!(
            "250-fake-smtp.test greets {client}\r\n250-SIZE {MAX_MESSAGE}\r\n250-8BITMIME\r\n\
             250 {auth}"
        )
    }

    /// AUTH PLAIN (initial response or after a `334`) and AUTH LOGIN; `None` if the client
    /// went away mid-exchange.
    async fn auth<S: Io>(&mut self, io: &mut BufReader<S>, arg: &str) -> Option<String> {
        if self.tls_pending() {
            return Some(MUST_STARTTLS.to_owned());
        }
        if self.user.is_some() {
            return Some("503 5.5.1 Already authenticated".to_owned());
        }
        let (mechanism, initial) = arg.trim().split_once(' ').unwrap_or((arg.trim(), ""));
        let mechanism = mechanism.to_ascii_uppercase();
        let prompts: &[&str] = match mechanism.as_str() {
            "PLAIN" => &[""],
            "LOGIN" => &["VXNlcm5hbWU6", "UGFzc3dvcmQ6"], // "Username:", "Password:"
            _ => return Some("504 5.5.4 Unrecognized authentication mechanism".to_owned()),
        };
        let mut answers = Vec::new();
        for (i, prompt) in prompts.iter().enumerate() {
            let answer = if i == 0 && !initial.trim().is_empty() {
                initial.as_bytes().to_vec()
            } else {
                send(io, &format!("334 {prompt}")).await?;
                read_line(io).await?
            };
            // A cancelling `*` is not base64 either.
            match BASE64.decode(answer.trim_ascii()).map(String::from_utf8) {
                Ok(Ok(decoded)) => answers.push(decoded),
                _ => return Some("501 5.5.2 Authentication cancelled or undecodable".to_owned()),
            }
        }
        let (user, password) = match answers.as_slice() {
            [plain] => match plain.split('\0').collect::<Vec<_>>().as_slice() {
                [_authzid, user, password] => ((*user).to_owned(), (*password).to_owned()),
                _ => return Some("501 5.5.2 Malformed PLAIN response".to_owned()),
            },
            [user, password] => (user.clone(), password.clone()),
            _ => return Some("501 5.5.2 Malformed response".to_owned()),
        };
        let accepted = lock(&self.state)
            .credentials
            .as_ref()
            .is_none_or(|(u, p)| *u == user && *p == password);
        Some(if accepted {
            self.user = Some(user);
            "235 2.7.0 Authentication successful".to_owned()
        } else {
            "535 5.7.8 Authentication credentials invalid".to_owned()
        })
    }

    fn mail(&mut self, arg: &str) -> String {
        let unauthenticated = self.user.is_none() && lock(&self.state).credentials.is_some();
        let answer = match path(arg, "FROM:") {
            _ if self.tls_pending() => MUST_STARTTLS,
            _ if !self.greeted => "503 5.5.1 Send EHLO first",
            _ if unauthenticated => "530 5.7.0 Authentication required",
            _ if self.from.is_some() => "503 5.5.1 Sender already given",
            None => "501 5.5.4 Syntax: MAIL FROM:<address>",
            from => {
                self.from = from;
                "250 2.1.0 Sender OK"
            }
        };
        answer.to_owned()
    }

    fn rcpt(&mut self, arg: &str) -> String {
        let answer = match path(arg, "TO:") {
            _ if self.from.is_none() => "503 5.5.1 Need MAIL first",
            None => "501 5.5.4 Syntax: RCPT TO:<address>",
            Some(to) => {
                self.to.push(to);
                "250 2.1.5 Recipient OK"
            }
        };
        answer.to_owned()
    }

    /// Reads the message up to the `.` line and answers it; `None` if the client went away.
    async fn data<S: Io>(&mut self, io: &mut BufReader<S>) -> Option<String> {
        let (Some(from), false) = (self.from.clone(), self.to.is_empty()) else {
            return Some("503 5.5.1 Need RCPT first".to_owned());
        };
        send(io, "354 End data with <CR><LF>.<CR><LF>").await?;
        let mut data = Vec::new();
        let mut too_big = false;
        loop {
            let line = read_line(io).await?;
            if line == b"." {
                break;
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            too_big |= data.len() + line.len() + 2 > MAX_MESSAGE;
            if !too_big {
                data.extend_from_slice(line);
                data.extend_from_slice(b"\r\n");
            }
        }
        let to = std::mem::take(&mut self.to);
        self.from = None;
        if too_big {
            return Some(format!("552 5.3.4 Message exceeds {MAX_MESSAGE} bytes"));
        }
        let mut state = lock(&self.state);
        if let Some((code, text)) = state.reject_next.take() {
            return Some(format!("{code} {text}"));
        }
        state.mails.push(ReceivedMail {
            from,
            to,
            data: String::from_utf8_lossy(&data).into_owned(),
            authenticated_as: self.user.clone(),
            tls: self.tls,
        });
        Some("250 2.0.0 OK: queued".to_owned())
    }
}

/// The address in `FROM:<a@b> PARAMS` (with `prefix` `FROM:`), brackets removed.
fn path(arg: &str, prefix: &str) -> Option<String> {
    let head = arg.get(..prefix.len())?;
    let rest = arg.get(prefix.len()..)?.trim_start();
    let (address, _params) = rest.strip_prefix('<')?.split_once('>')?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| address.to_owned())
}

/// One line without its line end; `None` when the client closed, stayed idle for [`IDLE`] or
/// sent a line longer than [`MAX_LINE`] (answered with `500`, then the connection closes).
async fn read_line<S: Io>(io: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut limited = (&mut *io).take(MAX_LINE as u64);
    let read = timeout(IDLE, limited.read_until(b'\n', &mut line)).await;
    match read {
        Ok(Ok(_)) if line.ends_with(b"\n") => {
            line.pop();
            if line.ends_with(b"\r") {
                line.pop();
            }
            Some(line)
        }
        Ok(Ok(n)) if n >= MAX_LINE => {
            send(io, "500 5.5.2 Line too long").await;
            // Close our side, then drain what the client still sends: closing with unread
            // input would reset the connection and could destroy the reply in flight.
            let _ = io.get_mut().shutdown().await;
            let _ = timeout(IDLE, tokio::io::copy(io, &mut tokio::io::sink())).await;
            None
        }
        _ => None,
    }
}

/// Writes one reply (CRLF added); `None` if the client is gone or does not read.
async fn send<W: AsyncWrite + Unpin>(io: &mut W, reply: &str) -> Option<()> {
    let write = async {
        io.write_all(format!("{reply}\r\n").as_bytes()).await?;
        io.flush().await
    };
    timeout(IDLE, write).await.ok()?.ok()
}
