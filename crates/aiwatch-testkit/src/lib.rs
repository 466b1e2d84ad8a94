//! Loopback fakes shared by every aiwatch test: nothing here reaches beyond 127.0.0.1 / ::1.
//!
//! - [`dns`]: [`FakeDns`], a DNS server (UDP + TCP) answering from a table the test sets.
//! - [`ca`]: [`TestCa`], root CAs that issue server certificates ([`ServerIdentity`]).
//! - [`blackhole`]: [`Blackhole`] (connect hangs), [`SilentServer`] (accepts, never answers),
//!   [`closed_port`] (connection refused).

pub mod blackhole;
pub mod ca;
pub mod dns;

pub use blackhole::{closed_port, Blackhole, SilentServer};
pub use ca::{ServerIdentity, TestCa};
pub use dns::{DnsAnswer, FakeDns};
