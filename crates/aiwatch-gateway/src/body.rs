//! A client's JSON request body as its top-level fields, each kept as the JSON text the client
//! sent: read once without building a tree, and written again for each upstream with the
//! model replaced — the hot path of every request.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// No API request has more top-level fields than this.
const MAX_FIELDS: usize = 1024;

/// The top-level fields of a JSON object, in the client's order. The client's text is kept
/// once; a field is where its key and value sit in it, so reading a body copies nothing but a
/// key that had escapes.
#[derive(Debug)]
pub struct RequestBody {
    /// The client's bytes, checked to be UTF-8 once.
    text: Bytes,
    fields: Vec<(Key, Range<usize>)>,
}

/// A field's name: where it sits in the body, or (when it had escapes) unescaped.
#[derive(Debug)]
enum Key {
    At(Range<usize>),
    Unescaped(Box<str>),
}

impl Key {
    /// The name's bytes, read from `body` (the text the key was found in) when it sits there.
    fn name<'a>(&'a self, body: &'a [u8]) -> &'a [u8] {
        match self {
            Key::At(range) => body.get(range.clone()).unwrap_or_default(),
            Key::Unescaped(k) => k.as_bytes(),
        }
    }
}

/// A key as the deserializer found it: borrowed from the body when it can be.
enum KeyRef<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl KeyRef<'_> {
    fn as_str(&self) -> &str {
        match self {
            KeyRef::Borrowed(s) => s,
            KeyRef::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for KeyRef<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyRef<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyRef::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyRef::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(KeyRef::Owned(v))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Reads the top-level fields of the object in `base`.
struct Fields<'b> {
    base: &'b [u8],
}

impl Fields<'_> {
    /// Where `part` (a slice of the body) sits in the body.
    fn range(&self, part: &str) -> Range<usize> {
        let start = part.as_ptr() as usize - self.base.as_ptr() as usize;
        start..start + part.len()
    }
}

impl<'de> Visitor<'de> for Fields<'de> {
    type Value = Vec<(Key, Range<usize>)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Vec<(Key, Range<usize>)> = Vec::with_capacity(8);
        // Requests have a dozen fields; the index is built only if one has many, so a body
        // with thousands of keys costs linear time, not quadratic.
        let mut index: Option<HashMap<String, usize>> = None;
        while let Some((key, value)) = map.next_entry::<KeyRef<'de>, &'de RawValue>()? {
            if fields.len() >= MAX_FIELDS {
                return Err(serde::de::Error::custom(format!(
                    "more than {MAX_FIELDS} top-level fields"
                )));
            }
            if fields.len() == 16 && index.is_none() {
                index = Some(
                    fields
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| {
                            let name = k.name(self.base);
                            (String::from_utf8_lossy(name).into_owned(), i)
                        })
                        .collect(),
                );
            }
            let value = self.range(value.get());
            // A repeated key keeps its last value, as JSON parsers do.
            let existing = match &index {
                Some(index) => index.get(key.as_str()).copied(),
                None => fields
                    .iter()
                    .position(|(k, _)| k.name(self.base) == key.as_str().as_bytes()),
            };
            match existing {
                Some(i) => fields[i].1 = value,
                None => {
                    if let Some(index) = &mut index {
                        index.insert(key.as_str().to_owned(), fields.len());
                    }
                    let stored = match key {
                        KeyRef::Borrowed(k) => Key::At(self.range(k)),
                        KeyRef::Owned(k) => Key::Unescaped(k.into_boxed_str()),
                    };
                    fields.push((stored, value));
                }
            }
        }
        Ok(fields)
    }
}

impl RequestBody {
    /// Parses a JSON object; anything else is an error whose text names the problem.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        Self::parse_bytes(Bytes::copy_from_slice(bytes))
    }

    /// [`RequestBody::parse`] of a body already in [`Bytes`], kept without a copy.
    pub fn parse_bytes(text: Bytes) -> Result<Self, String> {
        let fields = {
            let whole =
                std::str::from_utf8(&text).map_err(|e| format!("the body is not UTF-8 ({e})"))?;
            let mut de = serde_json::Deserializer::from_str(whole);
            let fields = de
                .deserialize_map(Fields {
                    base: whole.as_bytes(),
                })
                .map_err(|e| e.to_string())?;
            de.end().map_err(|e| e.to_string())?;
            fields
        };
        Ok(Self { text, fields })
    }

    /// The bytes at `range` of the body: a key or a value the parser read.
    fn bytes(&self, range: &Range<usize>) -> &[u8] {
        self.text.get(range.clone()).unwrap_or_default()
    }

    /// The text at `range` of the body: whole characters of a body already checked to be UTF-8.
    fn text(&self, range: &Range<usize>) -> &str {
        std::str::from_utf8(self.bytes(range)).unwrap_or_default()
    }

    /// A field's name as bytes: compared without checking it is UTF-8 again.
    fn key_bytes<'a>(&'a self, key: &'a Key) -> &'a [u8] {
        key.name(&self.text)
    }

    /// The fields as (name, raw JSON value), in the client's order.
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| {
            let name = std::str::from_utf8(self.key_bytes(k)).unwrap_or_default();
            (name, self.text(v))
        })
    }

    /// The raw JSON text of a field.
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.value_range(key).map(|v| self.text(v))
    }

    /// Where a field's raw JSON value is in the body.
    fn value_range(&self, key: &str) -> Option<&Range<usize>> {
        self.fields
            .iter()
            .find(|(k, _)| self.key_bytes(k) == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// A field parsed as `T`; `None` when absent, `Err` when it is not a `T`. Read from the
    /// bytes: the body was checked to be UTF-8 once, as it was parsed.
    pub fn parsed<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<Result<T, ()>> {
        self.value_range(key)
            .map(|v| serde_json::from_slice(self.bytes(v)).map_err(|_| ()))
    }

    /// Is the field a JSON array? (Its first byte says: the parser checked the rest.)
    pub fn is_array(&self, key: &str) -> bool {
        self.value_range(key)
            .and_then(|v| self.bytes(v).trim_ascii_start().first())
            .is_some_and(|first| *first == b'[')
    }

    /// The body with its model replaced by `model_json` (the model's name as a JSON string)
    /// and `extra` fields (raw JSON) set, as bytes to send.
    pub fn with_model(&self, model_json: &str, extra: &[(&str, String)]) -> Vec<u8> {
        let size: usize = self.fields.iter().map(|(_, v)| v.len() + 24).sum();
        let mut out = Vec::with_capacity(size + model_json.len() + 16);
        out.extend_from_slice(b"{\"model\":");
        out.extend_from_slice(model_json.as_bytes());
        for (key, value) in &self.fields {
            let name = self.key_bytes(key);
            if name == b"model" || extra.iter().any(|(k, _)| k.as_bytes() == name) {
                continue;
            }
            out.push(b',');
            match key {
                // As the client wrote it, which had no escapes: written back as it was.
                Key::At(range) => {
                    out.push(b'"');
                    out.extend_from_slice(self.bytes(range));
                    out.push(b'"');
                }
                // Writing into a Vec cannot fail.
                Key::Unescaped(k) => {
                    let _ = serde_json::to_writer(&mut out, k);
                }
            }
            out.push(b':');
            out.extend_from_slice(self.bytes(value));
        }
        for (key, raw) in extra {
            out.push(b',');
            let _ = serde_json::to_writer(&mut out, key);
            out.push(b':');
            out.extend_from_slice(raw.as_bytes());
        }
        out.push(b'}');
        out
    }

    /// The whole body as a JSON tree, for translations into another dialect.
    pub fn to_value(&self) -> Value {
        let map = self
            .iter()
            .filter_map(|(k, v)| Some((k.to_owned(), serde_json::from_str(v).ok()?)))
            .collect();
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_is_replaced_and_everything_else_kept_verbatim() {
        let body = RequestBody::parse(
            br#"{"model":"smart","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"temperature":0.2}"#,
        )
        .expect("an object");
        let out = body.with_model(r#""gpt-4o-mini""#, &[]);
        let value: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(value["model"], "gpt-4o-mini");
        assert_eq!(value["messages"][0]["content"], "hé \"x\"");
        assert_eq!(value["temperature"], 0.2);
        assert!(String::from_utf8_lossy(&out).contains(r#""content":"h\u00e9 \"x\"""#));
    }

    #[test]
    fn keys_with_escapes_are_written_back_escaped() {
        let body = RequestBody::parse(br#"{"a\"b":1,"\u00e9t\u00e9":2,"model":"m","plain":3}"#)
            .expect("an object");
        let out = body.with_model(r#""x""#, &[]);
        let value: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(value["a\"b"], 1);
        assert_eq!(value["été"], 2);
        assert_eq!(value["plain"], 3);
        assert_eq!(value["model"], "x");
    }

    #[test]
    fn extra_fields_replace_the_clients() {
        let body = RequestBody::parse(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#,
        )
        .expect("an object");
        let out = body.with_model(
            r#""x""#,
            &[("stream_options", r#"{"include_usage":true}"#.into())],
        );
        let value: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(value["stream_options"]["include_usage"], true);
        assert_eq!(value["stream"], true);
    }

    #[test]
    fn fields_are_read_and_typed() {
        let body = RequestBody::parse(
            br#"{"model":"m","stream":"yes","messages":[],"model":"n","input":  [1],"t":"[x]"}"#,
        )
        .expect("an object");
        assert_eq!(
            body.parsed::<String>("model"),
            Some(Ok("n".to_owned())),
            "the last repeat wins"
        );
        assert_eq!(body.parsed::<bool>("stream"), Some(Err(())));
        assert!(body.is_array("messages"));
        assert!(body.is_array("input"), "after spaces");
        assert!(!body.is_array("t"), "a string that looks like one");
        assert!(!body.is_array("model") && !body.is_array("absent"));
        assert_eq!(body.to_value()["model"], "n");
    }

    #[test]
    fn many_keys_are_refused_quickly_and_repeats_resolved_by_index() {
        // Refused at the 1025th key, so the rest of the 200,000 is never looked at (how long
        // that takes is a benchmark's business, not this test's).
        let many: String = (0..200_000).map(|i| format!("\"k{i}\":1,")).collect();
        let body = format!("{{{many}\"model\":\"m\"}}");
        let refused = RequestBody::parse(body.as_bytes()).expect_err("too many fields");
        assert!(refused.contains("more than 1024"), "{refused}");
        let repeats: String = (0..500).map(|i| format!("\"k{}\":{i},", i % 50)).collect();
        let body = RequestBody::parse(format!("{{{repeats}\"model\":\"m\"}}").as_bytes())
            .expect("an object");
        assert_eq!(body.parsed::<i64>("k49"), Some(Ok(499)));
        // A few fields: the repeat is found by its name, however it was spelled.
        let body = RequestBody::parse(br#"{"a":1,"b":2,"\u0061":3}"#).expect("an object");
        assert_eq!(body.parsed::<i64>("a"), Some(Ok(3)));
        assert_eq!(body.iter().count(), 2);
    }

    #[test]
    fn non_objects_and_trailing_garbage_are_refused() {
        assert!(RequestBody::parse(b"[1,2]").is_err());
        assert!(RequestBody::parse(b"{\"a\":1} x").is_err());
        assert!(RequestBody::parse(b"{\"a\":").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_object_survives_the_round_trip(
            entries in proptest::collection::btree_map("[a-z]{1,6}", proptest::num::i64::ANY, 0..6)
        ) {
            let value = serde_json::to_vec(&entries).expect("serializes");
            let body = RequestBody::parse(&value).expect("an object");
            let out: Value = serde_json::from_slice(&body.with_model(r#""m""#, &[])).expect("valid JSON");
            for (k, v) in &entries {
                if k != "model" {
                    proptest::prop_assert_eq!(&out[k], &Value::from(*v));
                }
            }
            proptest::prop_assert_eq!(&out["model"], &Value::from("m"));
        }
    }
}
