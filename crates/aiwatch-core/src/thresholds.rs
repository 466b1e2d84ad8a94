//! How slow is too slow for one check: an absolute limit per layer, the one place these numbers
//! live. Besides them, any probe that uses more than half of the check's budget is slow too.
//!
//! Each limit judges the part of the wait the provider controls — from the request to its
//! answer — not DNS, TCP or TLS, whose timings are the network's and are reported per layer.
//! A layer past its limit makes the check `slow_responses` (degraded).

use std::time::Duration;

/// The web front-end's first byte: from sending `GET /` to the response head.
///
/// A healthy front-end answers its HTML head from a CDN edge in well under a second even
/// across an ocean; past 3 s people notice and browsers show a blank tab, so it is slow.
pub const WEB_FIRST_BYTE: Duration = Duration::from_secs(3);

/// The list-models API call (the cheapest authenticated call): from sending it to the first
/// byte of its answer. Its body is a few KiB, so the wait for the head is the call.
///
/// It reads metadata and runs no model, and normally takes 100–500 ms; 3 s means the API's
/// front door is struggling, which every SDK call behind it feels.
pub const API_FIRST_BYTE: Duration = Duration::from_secs(3);

/// `check --deep`: time to the first token of a tiny streamed completion.
///
/// A handful of tokens from a small model normally starts within 0.3–2 s; large or busy models
/// queue longer, so the limit is more generous than the others. Past 5 s an interactive
/// answer visibly hangs, and it usually means requests are queueing (overload).
pub const STREAM_FIRST_TOKEN: Duration = Duration::from_secs(5);
