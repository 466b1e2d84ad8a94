//! Removes secrets from text that came from the network, where it enters the system: the values
//! of the keys a request carried (a provider, or anything posing as one, may echo its
//! `Authorization` header), and any key-shaped token (`Bearer …`, `sk-…`, `sk-ant-…`, `AIza…`,
//! a long base64 or hex run next to "key" or "token"). What it returns may be stored, logged,
//! rendered and returned to anyone.

use std::borrow::Cow;

/// What a removed secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Prefixes of provider key formats; a token starting with one and long enough is a key.
const KEY_PREFIXES: &[&str] = &["sk-", "sk_", "AIza", "gsk_", "xai-", "pk-", "rk-", "hf_"];
/// Shorter than this, a prefixed token is a word (`sk-learn`), not a key.
const MIN_PREFIXED: usize = 20;
/// A bare run of base64/hex characters this long next to "key"/"token" is taken for a secret.
const MIN_BARE: usize = 24;
/// How far before a bare run "key"/"token"/"secret" is looked for.
const CONTEXT: usize = 24;

/// `text` without the `sent` secret values and without key-shaped tokens; borrowed when there
/// was nothing to remove.
pub fn scrub<'a>(text: &'a str, sent: &[&str]) -> Cow<'a, str> {
    let mut out: Cow<'a, str> = Cow::Borrowed(text);
    for secret in sent.iter().map(|s| s.trim()).filter(|s| s.len() >= 8) {
        if out.contains(secret) {
            out = Cow::Owned(out.replace(secret, REDACTED));
        }
    }
    match redact_shapes(&out) {
        Some(clean) => Cow::Owned(clean),
        None => out,
    }
}

/// Bytes without secrets; non-UTF-8 parts are kept as they are around scrubbed text.
pub fn scrub_bytes(bytes: &[u8], sent: &[&str]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(bytes);
    match scrub(&text, sent) {
        Cow::Borrowed(_) => None,
        Cow::Owned(clean) => Some(clean.into_bytes()),
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/')
}

/// The text with key-shaped tokens replaced, or `None` when it has none.
fn redact_shapes(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut last = 0;
    let mut changed = false;
    let mut after_bearer = false;
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        if !is_token_char(c) {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        while i < text.len() && text[i..].chars().next().is_some_and(is_token_char) {
            i += 1;
        }
        let token = &text[start..i];
        let secret = after_bearer && token.len() >= 8
            || KEY_PREFIXES
                .iter()
                .any(|p| token.starts_with(p) && token.len() >= MIN_PREFIXED)
            || (token.len() >= MIN_BARE && looks_random(token) && near_key_word(text, start));
        after_bearer = token.eq_ignore_ascii_case("bearer") || token.eq_ignore_ascii_case("basic");
        if secret {
            out.push_str(&text[last..start]);
            out.push_str(REDACTED);
            last = i;
            changed = true;
        }
    }
    changed.then(|| {
        out.push_str(&text[last..]);
        out
    })
}

/// Mixed letters and digits, as keys are, unlike long words or paths of words.
fn looks_random(token: &str) -> bool {
    let digits = token.chars().filter(char::is_ascii_digit).count();
    let letters = token.chars().filter(char::is_ascii_alphabetic).count();
    digits >= 4 && letters >= 4
}

fn near_key_word(text: &str, start: usize) -> bool {
    let mut from = start.saturating_sub(CONTEXT);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let before = text[from..start].to_ascii_lowercase();
    ["key", "token", "secret", "authorization", "password"]
        .iter()
        .any(|w| before.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_echoed_key_is_removed_wherever_it_appears() {
        let key = "my-custom-team-key-2024";
        let said = format!("Invalid header 'Authorization: Bearer {key}' (key={key})");
        let clean = scrub(&said, &[key]);
        assert!(!clean.contains(key), "{clean}");
        assert!(clean.contains("Invalid header"));
    }

    #[test]
    fn key_shaped_tokens_are_removed_without_knowing_them() {
        for secret in [
            "sk-proj-AbCdEf0123456789AbCdEf0123456789",
            "sk-ant-api03-AbCdEf0123456789AbCdEf0123456789",
            "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv",
            "gsk_0123456789abcdefABCDEF0123456789",
        ] {
            let said = format!("Incorrect API key provided: {secret}.");
            let clean = scrub(&said, &[]);
            assert!(!clean.contains(secret), "{clean}");
            assert!(clean.contains(REDACTED));
        }
        let bearer = scrub("got Authorization: Bearer abc.def-12345678", &[]);
        assert!(!bearer.contains("abc.def-12345678"), "{bearer}");
        let bare = scrub("api_key=3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e", &[]);
        assert!(!bare.contains("3f9a8b7c6d5e"), "{bare}");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "The model `gpt-4o-mini-2024-07-18` does not exist or you do not have access to it.",
            "Rate limit reached for requests; try again in 20s. Visit https://platform.openai.com/account/rate-limits",
            "sk-learn is not a key",
            "request id req_0123456789abcdef0123",
        ] {
            assert!(matches!(scrub(text, &[]), Cow::Borrowed(_)), "{text}");
        }
    }

    proptest! {
        #[test]
        fn a_sent_key_never_survives(prefix in ".{0,40}", suffix in ".{0,40}", key in "[A-Za-z0-9_-]{8,60}") {
            let text = format!("{prefix}{key}{suffix}");
            let clean = scrub(&text, &[&key]);
            prop_assert!(!clean.contains(key.as_str()));
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = scrub(&text, &["secret-value-1"]);
        }
    }
}
