//! Loopback fakes shared by every aiwatch test: nothing here reaches beyond 127.0.0.1 / ::1.
//!
//! - [`dns`]: [`FakeDns`], a DNS server (UDP + TCP) answering from a table the test sets.
//! - [`ca`]: [`TestCa`], root CAs that issue server certificates ([`ServerIdentity`]).
//! - [`blackhole`]: [`Blackhole`] (connect hangs), [`SilentServer`] (accepts, never answers),
//!   [`closed_port`] (connection refused).
//! - [`http_server`]: [`FakeServer`], an HTTP/1.1 server (plain or TLS) answering routes the
//!   test sets and changes at run time with scripted [`Reply`]s (delays, hangs, garbage, slow or
//!   cut-off bodies, server-sent events, sequences); [`Seen`] records each request.
//! - [`canned`]: real-shaped replies of AI providers, Cloudflare, TLS interceptors and
//!   connectivity checks.
//! - [`status_page`]: [`FakeStatusPage`], a Statuspage v2 `summary.json` with ETags and
//!   switchable failures, and builders of summaries.
//! - [`proxy`]: [`FakeProxy`], an HTTP proxy (CONNECT and absolute-form) to loopback targets.
//! - [`smtp`]: [`FakeSmtp`], an SMTP server (STARTTLS, implicit TLS or plain, AUTH PLAIN/LOGIN)
//!   recording each accepted [`ReceivedMail`].
//! - [`world`]: [`World`], all of the above assembled for one test, with the aiwatch config
//!   that points at it.
//! - [`api_client`]: [`ApiClient`], requests to the aiwatch server under test.

pub mod api_client;
pub mod blackhole;
pub mod ca;
pub mod canned;
pub mod dns;
pub mod http_server;
pub mod proxy;
pub mod smtp;
pub mod status_page;
#[cfg(test)]
mod test_client;
pub mod world;

pub use api_client::ApiClient;
pub use blackhole::{closed_port, Blackhole, SilentServer};
pub use ca::{ServerIdentity, TestCa};
pub use dns::{DnsAnswer, FakeDns};
pub use http_server::{FakeServer, Reply, Seen};
pub use proxy::FakeProxy;
pub use smtp::{FakeSmtp, ReceivedMail, SmtpSecurity};
pub use status_page::{summary_operational, summary_with_incident, FakeStatusPage};
pub use world::World;
