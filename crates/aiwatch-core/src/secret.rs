//! Holds an API key so that it cannot be printed, logged or serialized by accident.

use std::fmt;

/// An API key read from the environment variable a service names. `Debug` and `Display` show
/// only `[redacted]`; the value leaves only through [`ApiKey::expose`], at the one place that
/// builds the provider's auth header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key; empty or whitespace-only values are treated as absent.
    pub fn new(value: String) -> Option<Self> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            None
        } else {
            Some(Self(trimmed.to_owned()))
        }
    }

    /// The key itself, for the auth header sent to the key's own provider and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_key() {
        let key = ApiKey::new("sk-live-secret-123".into()).unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        assert!(!format!("{key}").contains("secret"));
        assert_eq!(key.expose(), "sk-live-secret-123");
    }

    #[test]
    fn blank_key_counts_as_absent() {
        assert!(ApiKey::new("  \n".into()).is_none());
    }
}
