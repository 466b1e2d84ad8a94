//! Gateway keys: parsed from the variable the config names, checked in constant time, and
//! known afterwards only by a label ("key-2") that is safe to log and count.

use std::fmt;
use std::time::Duration;

use subtle::ConstantTimeEq;

/// The shortest gateway key accepted at start-up.
pub const MIN_KEY_LEN: usize = 24;
/// Failed authentications one client address may make in a burst…
pub const FAILED_AUTH_BURST: u32 = 10;
/// …after which it gets one more try per this long (429 with Retry-After until then).
pub const FAILED_AUTH_REFILL: Duration = Duration::from_secs(6);

/// The keys clients may present. `Debug` shows how many, never the keys.
pub struct ClientKeys {
    keys: Vec<Vec<u8>>,
}

impl fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKeys({} keys, redacted)", self.keys.len())
    }
}

impl ClientKeys {
    /// Comma-separated keys; blanks around them are ignored, empty entries dropped.
    pub fn parse(raw: &str) -> Self {
        Self {
            keys: raw
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| k.as_bytes().to_vec())
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The first key shorter than `min` characters, by position from 1, with its length.
    pub fn too_short(&self, min: usize) -> Option<(usize, usize)> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| (i + 1, String::from_utf8_lossy(k).chars().count()))
            .find(|(_, len)| *len < min)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The presented key's label, if it is one of ours. Every key is compared, each in
    /// constant time, so timing tells neither which key nor how much of it matched.
    pub fn check(&self, presented: &[u8]) -> Option<KeyLabel> {
        let mut found = None;
        for (i, key) in self.keys.iter().enumerate() {
            if bool::from(key.as_slice().ct_eq(presented)) {
                found = Some(i);
            }
        }
        found.map(|i| KeyLabel(i + 1))
    }
}

/// Which gateway key a request came with: its position in the list, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyLabel(pub usize);

impl fmt::Display for KeyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key-{}", self.0)
    }
}

/// The key in `Authorization: Bearer …` (what the OpenAI SDKs send) or `x-api-key`, from
/// whatever holds the request's header fields: `field` gives a field's value by its
/// (lowercase) name.
pub fn presented_key<'a>(field: impl Fn(&str) -> Option<&'a [u8]>) -> Option<&'a [u8]> {
    if let Some(bytes) = field("authorization") {
        let token = bytes
            .strip_prefix(b"Bearer ")
            .or_else(|| bytes.strip_prefix(b"bearer "))?;
        return Some(token.trim_ascii());
    }
    field("x-api-key").map(<[u8]>::trim_ascii)
}

/// [`presented_key`] of a header map.
pub fn presented_key_in(headers: &http::HeaderMap) -> Option<&[u8]> {
    presented_key(|name| headers.get(name).map(http::HeaderValue::as_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_keys_pass_and_are_known_by_position() {
        let keys = ClientKeys::parse(" alpha-key , ,beta-key");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.check(b"beta-key"), Some(KeyLabel(2)));
        assert_eq!(keys.check(b"beta-ke"), None);
        assert_eq!(keys.check(b"beta-keyy"), None);
        assert_eq!(keys.check(b""), None);
        assert_eq!(KeyLabel(2).to_string(), "key-2");
    }

    #[test]
    fn debug_never_shows_a_key() {
        let keys = ClientKeys::parse("sk-secret-value");
        assert!(!format!("{keys:?}").contains("secret"));
    }

    #[test]
    fn bearer_and_x_api_key_are_read() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer  k1 ".parse().expect("valid"));
        assert_eq!(presented_key_in(&h), Some(&b"k1"[..]));
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", "k2".parse().expect("valid"));
        assert_eq!(presented_key_in(&h), Some(&b"k2"[..]));
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Basic abc".parse().expect("valid"));
        assert_eq!(presented_key_in(&h), None);
    }
}
