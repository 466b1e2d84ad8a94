//! Reads "public chatter" feeds — a subreddit's Atom feed, a Discourse forum's RSS, Hacker News
//! search results — into plain-text posts, and says whether a post reports a service down.
//!
//! Parsing ([`parse_posts`]) is pure: bytes in, [`Post`]s out, no I/O, no clock.
//! - The body decides the format, not the `Content-Type` (servers label feeds inconsistently:
//!   `application/atom+xml`, `text/xml`, even `text/html`); the content type only sharpens an
//!   error message. A JSON object with a `hits` array is Hacker News Algolia search
//!   (`hn.algolia.com/api/v1/search_by_date?query=…`); anything else goes to `feed-rs`
//!   (Atom, RSS 0.9x/1.0/2.0, JSON Feed).
//! - An empty body, an HTML page (a block or login page served with 200), JSON that is neither
//!   search results nor a JSON Feed, unreadable XML and a feed cut off before its closing root
//!   tag are errors. A well-formed feed with no entries is `Ok(vec![])`.
//! - Caps: a body over [`MAX_BODY_BYTES`] is refused; at most [`MAX_POSTS`] posts are read (the
//!   first ones, which are the newest in every format seen); titles are capped at
//!   [`MAX_TITLE_CHARS`], texts at [`MAX_TEXT_CHARS`], ids at [`MAX_ID_CHARS`]; a URL longer than
//!   [`MAX_URL_CHARS`] is dropped.
//!
//! What a post is made of:
//! - Feeds: `title` is the entry title; `text` the entry content, else its summary (RSS
//!   `<description>`), as plain text; `url` the entry's own link (for Reddit, the comments
//!   page); `at` the entry's `published`, else `updated`; `id` the entry id (Atom `<id>`, RSS
//!   `<guid>`), else the link, else the title — an entry with none of them is skipped.
//! - Hacker News: `title` is the story title (for a comment, the title of its story); `text` the
//!   story or comment text; `url` the discussion page `https://news.ycombinator.com/item?id=…`
//!   (the post itself, like Reddit's comments page — not the article a story links to); `at`
//!   `created_at_i`, else `created_at`; `id` the `objectID` — a hit without one is skipped.
//! - HTML becomes text: tags and comments dropped, `<script>`/`<style>` bodies dropped, block
//!   tags (`p`, `br`, `li`, `div`, `tr`, …) become line breaks, entities decoded, spaces
//!   collapsed. Reddit's trailing "submitted by /u/… [link] [comments]" line is removed.
//!
//! Matching ([`matches`]) works on words, not substrings: text is lowercased (Unicode), common
//! Latin diacritics are folded (`caído` = `caido`, `störung` = `storung`, `não` = `nao`), and
//! split into words at every character that is not a letter or a digit (so `isn't` is the two
//! words `isn t`, and `ChatGPT's` contains the word `chatgpt`). A name or keyword matches when
//! its words appear consecutively. There is no stemming: `down` does not match `download` or
//! `downtime`, and `error` does not match `errors` — inflected forms that matter are listed on
//! their own in [`DEFAULT_KEYWORDS`].

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

/// Bodies larger than this are refused rather than parsed (8 MiB; a Reddit feed of 100 entries
/// is about 200 KB, 1,000 Hacker News hits about 2 MB).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// At most this many posts are read from one body.
pub const MAX_POSTS: usize = 500;
/// A post's title is cut to this many characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// A post's text is cut to this many characters.
pub const MAX_TEXT_CHARS: usize = 2_000;
/// A post's id is cut to this many characters.
pub const MAX_ID_CHARS: usize = 512;
/// A URL longer than this many characters is dropped (`url: None`).
pub const MAX_URL_CHARS: usize = 2_048;

/// Built-in outage words in English, French, Spanish, German and Portuguese, for [`matches`].
/// Accents are optional when matching (see the module documentation), so `nao funciona` and
/// `caido` are covered by `não funciona` and `caído`.
pub const DEFAULT_KEYWORDS: &[&str] = &[
    // English.
    "down",
    "is down",
    "went down",
    "downtime",
    "outage",
    "outages",
    "not working",
    "isn't working",
    "isnt working",
    "stopped working",
    "doesn't work",
    "doesnt work",
    "not loading",
    "not responding",
    "error",
    "errors",
    "unavailable",
    "unreachable",
    "offline",
    "broken",
    "overloaded",
    "timed out",
    "timeout",
    "bad gateway",
    "502",
    "503",
    "something went wrong",
    // French.
    "panne",
    "en panne",
    "ne marche pas",
    "marche pas",
    "ne marche plus",
    "ne fonctionne pas",
    "fonctionne pas",
    "ne fonctionne plus",
    "erreur",
    "erreurs",
    "indisponible",
    "hors service",
    // Spanish.
    "caído",
    "caída",
    "se cayó",
    "no funciona",
    "no carga",
    "no responde",
    "errores",
    "fuera de servicio",
    "falla",
    "fallas",
    // German.
    "funktioniert nicht",
    "geht nicht",
    "störung",
    "störungen",
    "ausfall",
    "fehler",
    "nicht erreichbar",
    // Portuguese.
    "fora do ar",
    "não funciona",
    "não está funcionando",
    "parou de funcionar",
    "caiu",
    "erro",
    "erros",
    "instabilidade",
    "fora de serviço",
];

/// One post from a chatter feed, as plain text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    /// The post's title; for a Hacker News comment, the title of its story.
    pub title: String,
    /// The post's own page (Reddit comments page, forum post, Hacker News discussion).
    pub url: Option<String>,
    /// The body as plain text: HTML stripped, capped at [`MAX_TEXT_CHARS`] characters.
    pub text: String,
    /// When the post was published (else last updated).
    pub at: Option<DateTime<Utc>>,
    /// Stable per post: the entry id, else its link, else its title; the Hacker News `objectID`.
    pub id: String,
    /// The host of the feed's URL, e.g. `www.reddit.com`.
    pub source: String,
}

/// Why a chatter body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatterError {
    /// The body is empty or only whitespace.
    #[error("empty body, not a feed")]
    Empty,
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("body of {len} bytes is over the {max}-byte cap")]
    TooLarge { len: usize, max: usize },
    /// The body is an HTML page (a block, login or error page), not a feed.
    #[error("got an HTML page{}, not a feed", served_as(.content_type))]
    Html { content_type: Option<String> },
    /// JSON that is not Hacker News search results nor a JSON Feed, or that does not parse.
    #[error("JSON: {0}")]
    Json(String),
    /// An XML feed (or JSON Feed) that `feed-rs` cannot read, or one cut off before its end.
    #[error("feed: {0}")]
    Feed(String),
}

fn served_as(content_type: &Option<String>) -> String {
    content_type
        .as_deref()
        .map(|ct| format!(" (served as {ct})"))
        .unwrap_or_default()
}

/// Parses a chatter body into posts; `feed_url` gives each post's `source` and resolves
/// relative links. See the module documentation for the formats, caps and errors.
pub fn parse_posts(
    body: &[u8],
    content_type: Option<&str>,
    feed_url: &str,
) -> Result<Vec<Post>, ChatterError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ChatterError::TooLarge {
            len: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    let head = trim_start(body);
    if head.is_empty() {
        return Err(ChatterError::Empty);
    }
    let source = host_of(feed_url);
    if head[0] == b'{' || head[0] == b'[' {
        return parse_json(head, content_type, feed_url, &source);
    }
    if is_html(head) {
        return Err(ChatterError::Html {
            content_type: content_type.map(str::to_owned),
        });
    }
    if head[0] != b'<' {
        return Err(ChatterError::Feed(format!(
            "neither XML nor JSON{}",
            served_as(&content_type.map(str::to_owned))
        )));
    }
    if !ends_with_root_close(head) {
        return Err(ChatterError::Feed(
            "cut off: the body does not end with the closing tag of its root element".into(),
        ));
    }
    parse_feed(body, feed_url, source)
}

// === Feeds (feed-rs) ===

fn parse_feed(body: &[u8], feed_url: &str, source: String) -> Result<Vec<Post>, ChatterError> {
    let feed = feed_rs::parser::Builder::new()
        .sanitize_content(false)
        // No invented ids: an entry without one falls back to its link, then its title.
        .id_generator(|_, _, _| String::new())
        .base_uri(Some(feed_url))
        .build()
        .parse(body)
        .map_err(|e| ChatterError::Feed(e.to_string()))?;
    Ok(feed
        .entries
        .iter()
        .filter_map(|entry| read_entry(entry, &source))
        .take(MAX_POSTS)
        .collect())
}

fn read_entry(entry: &feed_rs::model::Entry, source: &str) -> Option<Post> {
    let title = entry.title.as_ref().map(text_of).unwrap_or_default();
    let title = cap_chars(&title, MAX_TITLE_CHARS);
    let link = entry_link(&entry.links);
    let body = match (&entry.content, &entry.summary) {
        (Some(content), _)
            if content
                .body
                .as_deref()
                .is_some_and(|b| !b.trim().is_empty()) =>
        {
            let html = content.body.as_deref().unwrap_or("");
            if content.content_type.subty() == "plain" {
                plain_text(html, MAX_TEXT_CHARS)
            } else {
                html_to_text(html, MAX_TEXT_CHARS)
            }
        }
        (_, Some(summary)) => {
            // RSS <description> is HTML by convention even when not labelled so.
            if summary.content_type.subty() == "plain" && !summary.content.contains('<') {
                plain_text(&summary.content, MAX_TEXT_CHARS)
            } else {
                html_to_text(&summary.content, MAX_TEXT_CHARS)
            }
        }
        _ => String::new(),
    };
    let id = [
        entry.id.trim(),
        link.as_deref().unwrap_or(""),
        title.as_str(),
    ]
    .into_iter()
    .find(|candidate| !candidate.is_empty())?;
    Some(Post {
        id: cap_chars(id, MAX_ID_CHARS),
        url: link.filter(|l| l.chars().count() <= MAX_URL_CHARS),
        title,
        text: body,
        at: entry.published.or(entry.updated),
        source: source.to_owned(),
    })
}

/// A feed-rs text (title) as plain text: HTML stripped when it is HTML, else entities decoded.
fn text_of(text: &feed_rs::model::Text) -> String {
    if text.content_type.subty() == "html" {
        html_to_text(&text.content, MAX_TITLE_CHARS)
    } else {
        plain_text(&text.content, MAX_TITLE_CHARS)
    }
}

/// The entry's own page: the first link with `rel="alternate"` or no rel, else the first link.
fn entry_link(links: &[feed_rs::model::Link]) -> Option<String> {
    links
        .iter()
        .find(|l| matches!(l.rel.as_deref(), None | Some("alternate")))
        .or(links.first())
        .map(|l| l.href.trim().to_owned())
        .filter(|href| !href.is_empty())
}

// === Hacker News (Algolia search JSON) ===

fn parse_json(
    body: &[u8],
    content_type: Option<&str>,
    feed_url: &str,
    source: &str,
) -> Result<Vec<Post>, ChatterError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ChatterError::Json(e.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(ChatterError::Json(format!(
            "top level is {}, not an object",
            kind_of(&value)
        )));
    };
    match object.get("hits") {
        Some(Value::Array(hits)) => Ok(hits
            .iter()
            .filter_map(|hit| read_hit(hit, source))
            .take(MAX_POSTS)
            .collect()),
        Some(other) => Err(ChatterError::Json(format!(
            "`hits` is {}, not an array",
            kind_of(other)
        ))),
        None if is_json_feed(object) => parse_feed(body, feed_url, source.to_owned()),
        None => {
            let keys: Vec<&str> = object.keys().take(6).map(String::as_str).collect();
            Err(ChatterError::Json(format!(
                "neither Hacker News search results (no `hits` array) nor a JSON Feed{}; keys: {}",
                served_as(&content_type.map(str::to_owned)),
                if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                }
            )))
        }
    }
}

fn is_json_feed(object: &serde_json::Map<String, Value>) -> bool {
    object
        .get("version")
        .and_then(Value::as_str)
        .is_some_and(|v| v.contains("jsonfeed.org/version/"))
}

fn read_hit(hit: &Value, source: &str) -> Option<Post> {
    let field = |name: &str| hit.get(name).and_then(Value::as_str).map(str::trim);
    let id = match hit.get("objectID") {
        Some(Value::String(id)) => id.trim().to_owned(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return None,
    };
    if id.is_empty() {
        return None;
    }
    let title = field("title")
        .filter(|t| !t.is_empty())
        .or_else(|| field("story_title"))
        .unwrap_or("");
    let html = field("comment_text")
        .filter(|t| !t.is_empty())
        .or_else(|| field("story_text"))
        .unwrap_or("");
    let at = hit
        .get("created_at_i")
        .and_then(Value::as_i64)
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
        .or_else(|| {
            field("created_at")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        });
    let url = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric())
        .then(|| format!("https://news.ycombinator.com/item?id={id}"));
    Some(Post {
        title: plain_text(title, MAX_TITLE_CHARS),
        url,
        text: html_to_text(html, MAX_TEXT_CHARS),
        at,
        id: cap_chars(&id, MAX_ID_CHARS),
        source: source.to_owned(),
    })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// === Matching ===

/// Whether the post (title and text) mentions one of the service's `names` and one of the
/// outage `keywords`, each as whole words (see the module documentation). Empty lists never
/// match; a name or keyword with no letters or digits is ignored.
pub fn matches(post: &Post, keywords: &[String], names: &[String]) -> bool {
    let title = words(&post.title);
    let text = words(&post.text);
    let mentions = |phrases: &[String]| {
        phrases.iter().any(|phrase| {
            let phrase = words(phrase);
            !phrase.is_empty()
                && (contains_phrase(&title, &phrase) || contains_phrase(&text, &phrase))
        })
    };
    mentions(names) && mentions(keywords)
}

/// Lowercased, diacritic-folded words: runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if is_combining_mark(c) {
            // A decomposed accent ("e" + U+0301) stays inside its word and is folded away.
            continue;
        }
        if c.is_alphanumeric() {
            for lower in c.to_lowercase() {
                if !is_combining_mark(lower) {
                    push_folded(&mut word, lower);
                }
            }
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn contains_phrase(words: &[String], phrase: &[String]) -> bool {
    words.windows(phrase.len()).any(|window| window == phrase)
}

fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}')
}

/// Pushes a lowercase letter with its common Latin diacritic removed.
fn push_folded(word: &mut String, c: char) {
    let folded = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'č' => 'c',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'ī' => 'i',
        'ñ' | 'ń' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => 'u',
        'ý' | 'ÿ' => 'y',
        'ś' | 'š' => 's',
        'ź' | 'ż' | 'ž' => 'z',
        'ß' => return word.push_str("ss"),
        'æ' => return word.push_str("ae"),
        'œ' => return word.push_str("oe"),
        other => other,
    };
    word.push(folded);
}

// === Text ===

/// Block-level tags: each one starts a new line in the text.
const BLOCK_TAGS: &[&str] = &[
    "p",
    "br",
    "div",
    "li",
    "ul",
    "ol",
    "tr",
    "td",
    "th",
    "table",
    "blockquote",
    "pre",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "aside",
    "section",
    "article",
    "header",
    "footer",
];

/// Turns HTML into plain text (see the module documentation), at most `max_chars` characters.
fn html_to_text(html: &str, max_chars: usize) -> String {
    // Once this many visible characters are out, the rest cannot survive the cap; the margin
    // keeps Reddit's trailer whole so it can be removed.
    let enough = max_chars.saturating_add(400);
    let mut raw = String::with_capacity(html.len().min(enough * 2));
    let mut visible = 0usize;
    let mut rest = html;
    while !rest.is_empty() && visible < enough {
        let Some(open) = rest.find('<') else {
            push_decoded(&mut raw, rest);
            break;
        };
        visible += push_decoded(&mut raw, &rest[..open]);
        let tag = &rest[open..];
        if let Some(comment) = tag.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let starts_tag = tag[1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'));
        let close = tag.find('>');
        let (true, Some(close)) = (starts_tag, close) else {
            // A '<' that opens no tag ("a < b", "<3") is text.
            raw.push('<');
            visible += 1;
            rest = &tag[1..];
            continue;
        };
        let name = tag_name(&tag[1..close]);
        rest = &tag[close + 1..];
        if name == "script" || name == "style" {
            rest = skip_past_close(rest, &name);
        } else if BLOCK_TAGS.contains(&name.trim_start_matches('/')) {
            raw.push('\n');
        }
        // Inline tags (`a`, `b`, `span`, …) add nothing: words are split only where the page
        // had space.
    }
    let text = collapse_whitespace(&raw);
    cap_chars(drop_reddit_trailer(&text), max_chars)
}

/// Plain text with entities decoded and whitespace collapsed, at most `max_chars` characters.
fn plain_text(text: &str, max_chars: usize) -> String {
    let mut decoded = String::with_capacity(text.len());
    push_decoded(&mut decoded, text);
    cap_chars(&collapse_whitespace(&decoded), max_chars)
}

/// The lowercase name of a tag from its inside (`a href=…` → `a`, `/p` → `/p`, `br/` → `br`).
fn tag_name(inside: &str) -> String {
    let inside = inside.trim_start();
    let (slash, inside) = match inside.strip_prefix('/') {
        Some(rest) => ("/", rest.trim_start()),
        None => ("", inside),
    };
    let name: String = inside
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("{slash}{name}")
}

/// The text after `</name …>`, or nothing when the element is never closed.
fn skip_past_close<'h>(html: &'h str, name: &str) -> &'h str {
    let close = format!("</{name}");
    let Some(at) = html
        .as_bytes()
        .windows(close.len())
        .position(|w| w.eq_ignore_ascii_case(close.as_bytes()))
    else {
        return "";
    };
    html[at..].find('>').map_or("", |end| &html[at + end + 1..])
}

/// Appends `text` with HTML entities decoded; returns how many non-space characters it added.
fn push_decoded(out: &mut String, text: &str) -> usize {
    let decoded = crate::entities::decode(text);
    out.push_str(&decoded);
    decoded.chars().filter(|c| !c.is_whitespace()).count()
}

/// Collapses runs of spaces within each line, drops empty lines, trims.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split(['\n', '\r']) {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        for (i, word) in words.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

/// Removes the "submitted by /u/NAME [to r/SUB] [link] [comments]" line Reddit appends to
/// every entry's content.
fn drop_reddit_trailer(text: &str) -> &str {
    const MAX_TRAILER: usize = 300;
    if !text.ends_with("[comments]") {
        return text;
    }
    match text.rfind("submitted by /u/") {
        Some(at) if text.len() - at <= MAX_TRAILER => text[..at].trim_end(),
        _ => text,
    }
}

fn cap_chars(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => text[..end].trim_end().to_owned(),
        None => text.to_owned(),
    }
}

// === Body sniffing ===

/// Skips a UTF-8 byte-order mark and leading whitespace.
fn trim_start(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    &body[start..]
}

fn is_html(head: &[u8]) -> bool {
    let start = head[..head.len().min(512)].to_ascii_lowercase();
    start.starts_with(b"<!doctype html")
        || start.starts_with(b"<html")
        || start.starts_with(b"<head")
        || start.starts_with(b"<body")
}

/// Whether an XML body ends with `</root>`, where `root` is its first element (prefixes
/// ignored), allowing trailing whitespace, comments and processing instructions. feed-rs reads
/// a feed cut off mid-way as the entries seen so far; this tells it apart from a whole one.
fn ends_with_root_close(xml: &[u8]) -> bool {
    let Some(root) = root_name(xml) else {
        return false;
    };
    let mut end = xml.len();
    loop {
        let tail = xml[..end].trim_ascii_end();
        if tail.ends_with(b"-->") {
            match find_last(tail, b"<!--") {
                Some(at) => end = at,
                None => return false,
            }
        } else if tail.ends_with(b"?>") {
            match find_last(tail, b"<?") {
                Some(at) => end = at,
                None => return false,
            }
        } else {
            end = tail.len();
            break;
        }
    }
    let tail = &xml[..end];
    let Some(open) = find_last(tail, b"</") else {
        return false;
    };
    let Some(inside) = tail[open + 2..].strip_suffix(b">") else {
        return false;
    };
    local_name(inside.trim_ascii()) == local_name(root)
}

/// The name of the first element, skipping the XML declaration, comments and a doctype.
fn root_name(xml: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while at < xml.len() {
        let open = at + xml[at..].iter().position(|&b| b == b'<')?;
        let rest = &xml[open..];
        if rest.starts_with(b"<!--") {
            at = open + 4 + find_first(&rest[4..], b"-->")? + 3;
        } else if rest.starts_with(b"<?") || rest.starts_with(b"<!") {
            at = open + rest.iter().position(|&b| b == b'>')? + 1;
        } else {
            let name_len = rest[1..]
                .iter()
                .position(|&b| b.is_ascii_whitespace() || b == b'>' || b == b'/')
                .unwrap_or(rest.len() - 1);
            return (name_len > 0).then(|| &rest[1..1 + name_len]);
        }
    }
    None
}

fn local_name(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b':') {
        Some(colon) => &name[colon + 1..],
        None => name,
    }
}

fn find_first(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The host of a URL (`https://www.reddit.com/r/x/new/.rss` → `www.reddit.com`), lowercased;
/// empty when there is none.
fn host_of(url: &str) -> String {
    let rest = url.trim();
    let rest = rest.split_once("://").map_or(rest, |(_, after)| after);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port
            .find(']')
            .map_or(host_port, |end| &host_port[..=end])
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.to_ascii_lowercase()
}
