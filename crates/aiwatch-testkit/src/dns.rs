//! A fake DNS server on 127.0.0.1 that answers A/AAAA queries from a table the test controls,
//! speaking the real DNS wire protocol over both UDP and TCP on the same random port.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// TTL of every record the fake server hands out, in seconds.
pub const TTL: u32 = 5;

/// Largest UDP answer sent to a client that did not advertise a bigger one with EDNS (RFC 1035).
const CLASSIC_UDP_LIMIT: usize = 512;
/// Largest UDP answer ever sent, even when the client's EDNS payload size is bigger
/// (the DNS Flag Day 2020 recommendation).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// What the fake server answers for one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsAnswer {
    /// NOERROR with these addresses: A queries get the IPv4 ones, AAAA queries the IPv6 ones
    /// (an empty NOERROR answer when none of the asked family is present).
    Addresses(Vec<IpAddr>),
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// NOERROR with an empty answer section (the name exists, but has no record of this type).
    NoRecords,
    /// Never replies, over UDP or TCP (the query is still counted by [`FakeDns::queries`]).
    Silent,
    /// SERVFAIL: the server failed to resolve the name.
    ServFail,
    /// These bytes as the reply, over UDP and TCP alike, with the query's id written over the
    /// first two (garbage, or a real answer mutated, for fuzzing a resolver).
    Raw(Vec<u8>),
}

/// A reply on the wire: a well-formed message, or raw bytes.
enum Wire {
    Message(Message),
    Raw(Vec<u8>),
}

impl Wire {
    fn bytes(self, request: &Message, udp: bool) -> Option<Vec<u8>> {
        match self {
            Wire::Message(reply) if udp => encode_for_udp(request, reply),
            Wire::Message(reply) => reply.to_vec().ok(),
            Wire::Raw(mut bytes) => {
                let id = request.metadata.id.to_be_bytes();
                for (at, b) in bytes.iter_mut().take(2).enumerate() {
                    *b = id[at];
                }
                Some(bytes)
            }
        }
    }
}

/// A fake DNS server bound to `127.0.0.1:<random port>` for UDP and TCP alike.
///
/// Names that were never [`set`](FakeDns::set) answer NXDOMAIN. Garbage packets are ignored.
/// UDP answers that do not fit the client's payload size (512 bytes without EDNS) are sent
/// truncated (TC bit), so a resolver must retry over TCP: set many addresses to test that path.
/// The server's tasks stop when the value is dropped.
pub struct FakeDns {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

struct Shared {
    answers: Mutex<HashMap<String, DnsAnswer>>,
    queries: AtomicUsize,
}

impl FakeDns {
    /// Binds UDP and TCP on the same random port of 127.0.0.1 and starts serving.
    ///
    /// Must be called inside a tokio runtime; the server runs on spawned tasks.
    pub async fn start() -> FakeDns {
        let (udp, tcp) = bind_pair().await;
        let addr = udp
            .local_addr()
            .expect("a bound UDP socket has a local address");
        let shared = Arc::new(Shared {
            answers: Mutex::new(HashMap::new()),
            queries: AtomicUsize::new(0),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(udp, Arc::clone(&shared)));
        tasks.spawn(serve_tcp(tcp, Arc::clone(&shared)));
        FakeDns {
            addr,
            shared,
            tasks,
        }
    }

    /// The address the server listens on, for UDP and TCP alike.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the answer for `name` (case-insensitive, with or without the trailing dot),
    /// replacing any previous one. Takes effect for the next query.
    pub fn set(&self, name: &str, answer: DnsAnswer) {
        self.shared
            .answers
            .lock()
            .expect("FakeDns answer table poisoned by a panicking thread")
            .insert(normalize(name), answer);
    }

    /// How many well-formed queries this server has received so far, over UDP and TCP,
    /// whatever it answered (including [`DnsAnswer::Silent`] ones).
    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl std::fmt::Debug for FakeDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDns")
            .field("addr", &self.addr)
            .field("queries", &self.queries())
            .finish_non_exhaustive()
    }
}

/// Binds a UDP socket on a random loopback port, then a TCP listener on the same port,
/// retrying with another port when that TCP port happens to be taken.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut last_error = None;
    for _ in 0..50 {
        let udp = UdpSocket::bind(loopback)
            .await
            .expect("FakeDns: cannot bind a UDP socket on 127.0.0.1");
        let addr = udp
            .local_addr()
            .expect("a bound UDP socket has a local address");
        match TcpListener::bind(addr).await {
            Ok(tcp) => return (udp, tcp),
            Err(error) => last_error = Some(error),
        }
    }
    panic!("FakeDns: no port of 127.0.0.1 was free for both UDP and TCP: {last_error:?}");
}

/// Lower-cases a name and strips its trailing dot; IDNs are converted to their ASCII form.
fn normalize(name: &str) -> String {
    let ascii = Name::from_utf8(name)
        .map(|n| n.to_ascii())
        .unwrap_or_else(|_| name.to_owned());
    ascii.trim_end_matches('.').to_ascii_lowercase()
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // e.g. ICMP port unreachable reported for an earlier reply: keep serving.
            Err(_) => continue,
        };
        let Some((request, reply)) = shared.handle(&buf[..len]) else {
            continue;
        };
        let Some(reply) = reply else { continue };
        let Some(bytes) = reply.bytes(&request, true) else {
            continue;
        };
        // A client that went away is not the server's problem.
        let _ = socket.send_to(&bytes, peer).await;
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    // Connection tasks live in this set, so aborting the accept task also ends them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_tcp_connection(stream, Arc::clone(&shared)));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves length-prefixed messages (RFC 1035 §4.2.2) until the client closes or sends garbage.
async fn serve_tcp_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut packet).await.is_err() {
            return;
        }
        let Some((request, reply)) = shared.handle(&packet) else {
            return;
        };
        let Some(reply) = reply else { continue };
        let Some(bytes) = reply.bytes(&request, false) else {
            return;
        };
        let Ok(prefix) = u16::try_from(bytes.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&prefix.to_be_bytes());
        framed.extend_from_slice(&bytes);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// Encodes a reply for UDP, truncating it (TC bit, no records) when it exceeds the payload size
/// the client can take.
fn encode_for_udp(request: &Message, reply: Message) -> Option<Vec<u8>> {
    let limit = match &request.edns {
        Some(edns) => usize::from(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        None => CLASSIC_UDP_LIMIT,
    };
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    reply.truncate().to_vec().ok()
}

impl Shared {
    /// Parses one packet. `None`: garbage or not a query, ignored without a word.
    /// `Some((request, None))`: a query that deliberately gets no reply.
    fn handle(&self, packet: &[u8]) -> Option<(Message, Option<Wire>)> {
        let request = Message::from_vec(packet).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        self.queries.fetch_add(1, Ordering::SeqCst);
        let reply = self.reply_to(&request);
        Some((request, reply))
    }

    fn reply_to(&self, request: &Message) -> Option<Wire> {
        let mut reply = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
        reply.metadata = Metadata::response_from_request(&request.metadata);
        reply.metadata.authoritative = true;
        reply.metadata.recursion_available = true;
        reply.add_queries(request.queries.iter().cloned());
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(MAX_UDP_PAYLOAD);
            reply.set_edns(edns);
        }

        if request.metadata.op_code != OpCode::Query {
            reply.metadata.response_code = ResponseCode::NotImp;
            return Some(Wire::Message(reply));
        }
        let [query] = request.queries.as_slice() else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return Some(Wire::Message(reply));
        };

        let answer = self
            .answers
            .lock()
            .expect("FakeDns answer table poisoned by a panicking thread")
            .get(&normalize(&query.name().to_ascii()))
            .cloned();
        match answer {
            None | Some(DnsAnswer::NxDomain) => {
                reply.metadata.response_code = ResponseCode::NXDomain
            }
            Some(DnsAnswer::ServFail) => reply.metadata.response_code = ResponseCode::ServFail,
            Some(DnsAnswer::Silent) => return None,
            Some(DnsAnswer::Raw(bytes)) => return Some(Wire::Raw(bytes)),
            Some(DnsAnswer::NoRecords) => {}
            Some(DnsAnswer::Addresses(addresses)) => {
                let name = query.name().clone();
                let records = addresses
                    .iter()
                    .filter_map(|ip| match (query.query_type(), ip) {
                        (RecordType::A, IpAddr::V4(v4)) => Some(RData::A(A(*v4))),
                        (RecordType::AAAA, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(*v6))),
                        _ => None,
                    });
                for rdata in records {
                    reply.add_answer(Record::from_rdata(name.clone(), TTL, rdata));
                }
            }
        }
        Some(Wire::Message(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use std::net::Ipv6Addr;
    use std::time::Duration;

    fn query(name: &str, record_type: RecordType) -> Message {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(
            Name::from_ascii(name).expect("valid test name"),
            record_type,
        ));
        message
    }

    /// Sends one query over UDP; `None` when no reply came within 300 ms.
    async fn ask_udp(server: SocketAddr, request: &Message) -> Option<Message> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind client");
        let bytes = request.to_vec().expect("encode query");
        socket.send_to(&bytes, server).await.expect("send query");
        let mut buf = vec![0u8; 4096];
        let (len, _) = tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf))
            .await
            .ok()?
            .expect("receive reply");
        let reply = Message::from_vec(&buf[..len]).expect("decode reply");
        assert_eq!(reply.metadata.id, request.metadata.id);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        Some(reply)
    }

    /// Sends one query over TCP; `None` when no reply came within 300 ms.
    async fn ask_tcp(server: SocketAddr, request: &Message) -> Option<Message> {
        let mut stream = TcpStream::connect(server).await.expect("connect");
        let bytes = request.to_vec().expect("encode query");
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await.expect("send query");
        let read = async {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.expect("read length");
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf).await.expect("read reply");
            buf
        };
        let buf = tokio::time::timeout(Duration::from_millis(300), read)
            .await
            .ok()?;
        let reply = Message::from_vec(&buf).expect("decode reply");
        assert_eq!(reply.metadata.id, request.metadata.id);
        Some(reply)
    }

    fn addresses(reply: &Message) -> Vec<IpAddr> {
        reply
            .answers
            .iter()
            .map(|record| match &record.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                other => panic!("unexpected record {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn answers_a_and_aaaa_over_udp_and_tcp() {
        let dns = FakeDns::start().await;
        assert!(dns.addr().ip().is_loopback());
        let v4 = IpAddr::V4(Ipv4Addr::new(104, 18, 32, 47));
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0, 0, 0, 0, 0, 0x6812));
        dns.set("ChatGPT.com.", DnsAnswer::Addresses(vec![v4, v6]));

        for over_tcp in [false, true] {
            for (record_type, expected) in [(RecordType::A, v4), (RecordType::AAAA, v6)] {
                let request = query("chatgpt.COM.", record_type);
                let reply = if over_tcp {
                    ask_tcp(dns.addr(), &request).await
                } else {
                    ask_udp(dns.addr(), &request).await
                }
                .expect("a reply");
                assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
                assert_eq!(addresses(&reply), vec![expected]);
                assert_eq!(reply.answers[0].ttl, TTL);
                assert_eq!(reply.queries, request.queries);
            }
        }
        assert_eq!(dns.queries(), 4);
    }

    #[tokio::test]
    async fn missing_family_is_an_empty_noerror() {
        let dns = FakeDns::start().await;
        dns.set(
            "api.openai.com",
            DnsAnswer::Addresses(vec![IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0))]),
        );
        let reply = ask_udp(dns.addr(), &query("api.openai.com.", RecordType::AAAA))
            .await
            .expect("a reply");
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
    }

    #[tokio::test]
    async fn unknown_names_and_nxdomain() {
        let dns = FakeDns::start().await;
        dns.set("gone.example", DnsAnswer::NxDomain);
        for name in ["gone.example.", "never-set.example."] {
            for over_tcp in [false, true] {
                let request = query(name, RecordType::A);
                let reply = if over_tcp {
                    ask_tcp(dns.addr(), &request).await
                } else {
                    ask_udp(dns.addr(), &request).await
                }
                .expect("a reply");
                assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
                assert!(reply.answers.is_empty());
            }
        }
    }

    #[tokio::test]
    async fn no_records_and_servfail() {
        let dns = FakeDns::start().await;
        dns.set("empty.example", DnsAnswer::NoRecords);
        dns.set("broken.example", DnsAnswer::ServFail);
        let empty = ask_tcp(dns.addr(), &query("empty.example.", RecordType::A))
            .await
            .expect("a reply");
        assert_eq!(empty.metadata.response_code, ResponseCode::NoError);
        assert!(empty.answers.is_empty());
        let broken = ask_udp(dns.addr(), &query("broken.example.", RecordType::A))
            .await
            .expect("a reply");
        assert_eq!(broken.metadata.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn silent_never_replies_but_counts() {
        let dns = FakeDns::start().await;
        dns.set("quiet.example", DnsAnswer::Silent);
        let request = query("quiet.example.", RecordType::A);
        assert!(ask_udp(dns.addr(), &request).await.is_none());
        assert!(ask_tcp(dns.addr(), &request).await.is_none());
        assert_eq!(dns.queries(), 2);
    }

    #[tokio::test]
    async fn answers_can_change_between_queries() {
        let dns = FakeDns::start().await;
        let request = query("flaky.example.", RecordType::A);
        dns.set("flaky.example", DnsAnswer::ServFail);
        let first = ask_udp(dns.addr(), &request).await.expect("a reply");
        assert_eq!(first.metadata.response_code, ResponseCode::ServFail);
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        dns.set("FLAKY.example.", DnsAnswer::Addresses(vec![ip]));
        let second = ask_udp(dns.addr(), &request).await.expect("a reply");
        assert_eq!(addresses(&second), vec![ip]);
    }

    #[tokio::test]
    async fn garbage_is_ignored() {
        let dns = FakeDns::start().await;
        dns.set("ok.example", DnsAnswer::NoRecords);
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        for junk in [&b""[..], b"\x00", b"hello, not dns", &[0xff; 64]] {
            socket.send_to(junk, dns.addr()).await.expect("send junk");
        }
        let mut stream = TcpStream::connect(dns.addr()).await.expect("connect");
        stream.write_all(b"\x00\x05junk!").await.expect("send junk");
        // The server is still up and answering, and junk was not counted as queries.
        let reply = ask_udp(dns.addr(), &query("ok.example.", RecordType::A))
            .await
            .expect("a reply");
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        let reply = ask_tcp(dns.addr(), &query("ok.example.", RecordType::A))
            .await
            .expect("a reply");
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(dns.queries(), 2);
    }

    #[tokio::test]
    async fn big_udp_answers_are_truncated_and_complete_over_tcp() {
        let dns = FakeDns::start().await;
        let many: Vec<IpAddr> = (1..=60)
            .map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)))
            .collect();
        dns.set("big.example", DnsAnswer::Addresses(many.clone()));
        let request = query("big.example.", RecordType::A);
        let udp = ask_udp(dns.addr(), &request).await.expect("a reply");
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        let tcp = ask_tcp(dns.addr(), &request).await.expect("a reply");
        assert!(!tcp.metadata.truncation);
        assert_eq!(addresses(&tcp), many);
    }

    #[tokio::test]
    async fn dropping_stops_the_server() {
        let dns = FakeDns::start().await;
        let addr = dns.addr();
        drop(dns);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(addr).await.is_err());
        assert!(ask_udp(addr, &query("x.example.", RecordType::A))
            .await
            .is_none());
    }
}
