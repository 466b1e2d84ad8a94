//! Proves the chatter parsers (`aiwatch_probe::chatter`) read real captured Reddit, Discourse and
//! Hacker News payloads into the expected posts, strip HTML, refuse garbage and cut-off bodies
//! with an error, never panic, and that `matches` finds outage reports by whole words.

use aiwatch_probe::chatter::{
    matches, parse_posts, ChatterError, Post, DEFAULT_KEYWORDS, MAX_BODY_BYTES, MAX_POSTS,
    MAX_TEXT_CHARS,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::json;

/// A captured payload from `tests/fixtures/chatter/` (see `SOURCES.md` there).
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/chatter/",
            $name
        ))
        .as_slice()
    };
}

const REDDIT: &[u8] = fixture!("reddit-neovim-top.atom");
const DISCOURSE: &[u8] = fixture!("discourse-posts.rss");
const HN: &[u8] = fixture!("hn-search-by-date.json");
const ALL_FIXTURES: &[&[u8]] = &[REDDIT, DISCOURSE, HN];

const REDDIT_URL: &str = "https://www.reddit.com/r/neovim/top/.rss";
const DISCOURSE_URL: &str = "https://forum.stackstorm.com/posts.rss";
const HN_URL: &str = "https://hn.algolia.com/api/v1/search_by_date?query=nodejs";

fn t(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

fn parse(body: &[u8], content_type: &str, url: &str) -> Vec<Post> {
    parse_posts(body, Some(content_type), url).expect("a real payload parses")
}

// === Real payloads ===

#[test]
fn reddit_atom_feed_reads_every_entry() {
    let posts = parse(REDDIT, "application/atom+xml; charset=UTF-8", REDDIT_URL);
    assert_eq!(posts.len(), 23);
    assert_eq!(
        posts[0],
        Post {
            title: "monaspace.nvim: Mix and Match Monaspace Fonts in Neovim".into(),
            url: Some(
                "https://www.reddit.com/r/neovim/comments/1hyradp/\
                 monaspacenvim_mix_and_match_monaspace_fonts_in/"
                    .into()
            ),
            // An image post: the content is a thumbnail and Reddit's "submitted by" line.
            text: String::new(),
            at: Some(t("2025-01-11T08:06:01Z")),
            id: "t3_1hyradp".into(),
            source: "www.reddit.com".into(),
        }
    );
    assert_eq!(posts[22].id, "t3_1hzfsb3");
    assert_eq!(
        posts[22].title,
        "why did you choose neovim as your text editor?"
    );
    assert!(posts.iter().all(|p| p.id.starts_with("t3_")));
}

#[test]
fn reddit_html_content_becomes_plain_text() {
    let posts = parse(REDDIT, "application/atom+xml", REDDIT_URL);
    let text = &posts[1].text;
    assert_eq!(
        posts[1].title,
        "[Proposal] let's use rss(atom) for plugin news!"
    );
    assert!(
        text.starts_with(
            "Working on https://github.com/neo451/feed.nvim for the past five months was a \
             blast, but it weirdly just clicked in my mind"
        ),
        "{text}"
    );
    // Headings and list items are lines; `&amp;#39;` (escaped twice) is an apostrophe.
    assert!(
        text.contains("\nIssue\nPlugin authors are to lazy"),
        "{text}"
    );
    assert!(text.contains("don't get news"), "{text}");
    for gone in ["<", "SC_OFF", "&#", "&amp;"] {
        assert!(!text.contains(gone), "{gone:?} left in {text}");
    }
    // The post is longer than the cap: it is cut at a character count.
    assert_eq!(text.chars().count(), MAX_TEXT_CHARS);
    assert!(text.ends_with("Neovim Official News: http"), "{text}");
    // Reddit's "submitted by /u/… [link] [comments]" line is gone from every post, including
    // the ones short enough to keep their end.
    let whole = posts
        .iter()
        .filter(|p| !p.text.is_empty() && p.text.chars().count() < MAX_TEXT_CHARS)
        .count();
    assert!(whole >= 10, "{whole}");
    for p in &posts {
        assert!(!p.text.contains("submitted by"), "{}", p.text);
        assert!(!p.text.contains("[comments]"), "{}", p.text);
    }
}

#[test]
fn discourse_posts_rss_reads_every_item() {
    let posts = parse(
        DISCOURSE,
        "application/rss+xml; charset=utf-8",
        DISCOURSE_URL,
    );
    assert_eq!(posts.len(), 29);
    assert_eq!(
        posts[0],
        Post {
            title: "Welcome to StackStorm Forums".into(),
            url: Some("https://forum.stackstorm.com/t/welcome-to-stackstorm-forums/21/4".into()),
            text: String::new(),
            at: Some(t("2021-09-07T21:13:13Z")),
            id: "forum.stackstorm.com-post-4482".into(),
            source: "forum.stackstorm.com".into(),
        }
    );
    assert_eq!(posts[2].title, "RBAC permissions implications");
    assert_eq!(
        posts[2].text,
        "Did you try using the global permission execution_list, e.g.\n\
         permission_types:\n\
         - “execution_list”"
    );
    // `&quot;` in an RSS title is a quote once the XML is read.
    assert_eq!(
        posts[15].title,
        r#"Must either be a string or None. Got \"list\".""#
    );
    let last = &posts[28];
    assert_eq!(last.title, "St2 apikey create - connection aborted");
    assert_eq!(last.id, "forum.stackstorm.com-post-4435");
}

#[test]
fn discourse_code_blocks_keep_their_text_and_lose_their_tags() {
    let posts = parse(DISCOURSE, "application/rss+xml", DISCOURSE_URL);
    let text = &posts[5].text;
    assert!(
        text.starts_with("You best bet it likely to just make all the actions"),
        "{text}"
    );
    // `&lt;% … %&gt;` inside <code> is text, not a tag.
    assert!(text.contains("<% ctx().st2.pack %>"), "{text}");
    assert!(!text.contains("<pre>") && !text.contains("<code"), "{text}");
}

#[test]
fn hacker_news_search_reads_every_hit() {
    let posts = parse(HN, "application/json; charset=utf-8", HN_URL);
    assert_eq!(posts.len(), 20);
    // A comment: its title is its story's, its URL the comment's discussion page.
    assert_eq!(
        posts[0],
        Post {
            title: "Open-Sourcing Vespa, Yahoo’s Data Processing and Serving Engine".into(),
            url: Some("https://news.ycombinator.com/item?id=15353312".into()),
            text: "You don't need to plug in any Java code, you can use it with HTTP calls to \
                   read and write.\n\
                   No plans to break it up into pieces (apart from already consisting of \
                   modules). It does one thing, it just happens to be a big thing :-)\n\
                   If you have a mac of Linux box you can have it up and running in 10 minutes. \
                   Multi-node production deployments are no different because Vespa manages the \
                   nodes, not you directly."
                .into(),
            at: Some(t("2017-09-27T23:33:24Z")),
            id: "15353312".into(),
            source: "hn.algolia.com".into(),
        }
    );
    // A story without text.
    assert_eq!(
        posts[1],
        Post {
            title: "Node8’s util.promisify is so freakin’ awesome".into(),
            url: Some("https://news.ycombinator.com/item?id=15353234".into()),
            text: String::new(),
            at: Some(t("2017-09-27T23:17:07Z")),
            id: "15353234".into(),
            source: "hn.algolia.com".into(),
        }
    );
    // Links in comments lose their markup; `&#x2F;` is a slash.
    let with_link = posts.iter().find(|p| p.id == "15352096").expect("hit");
    assert!(
        with_link
            .text
            .ends_with("[1] https://www.discovery.com/tv-shows/manhunt-unabomber/"),
        "{}",
        with_link.text
    );
}

#[test]
fn the_content_type_does_not_decide_the_format() {
    for (body, url) in [
        (REDDIT, REDDIT_URL),
        (DISCOURSE, DISCOURSE_URL),
        (HN, HN_URL),
    ] {
        let labelled = parse_posts(body, Some("application/json"), url).expect("parses");
        let unlabelled = parse_posts(body, None, url).expect("parses");
        let mislabelled = parse_posts(body, Some("text/html"), url).expect("parses");
        assert_eq!(labelled, unlabelled);
        assert_eq!(labelled, mislabelled);
    }
}

// === Matching ===

fn post(title: &str, text: &str) -> Post {
    Post {
        title: title.into(),
        url: None,
        text: text.into(),
        at: None,
        id: "x".into(),
        source: "example.com".into(),
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// Whether a post with this title and text matches the default keywords for these names.
fn check(title: &str, text: &str, names: &[&str], expected: bool) {
    let keywords = strings(DEFAULT_KEYWORDS);
    assert_eq!(
        matches(&post(title, text), &keywords, &strings(names)),
        expected,
        "title {title:?}, text {text:?}, names {names:?}"
    );
}

const CHATGPT: &[&str] = &["chatgpt", "openai"];
const CLAUDE: &[&str] = &["claude", "anthropic"];

#[test]
fn matches_reports_of_the_service_being_down() {
    check("Is ChatGPT down?", "", CHATGPT, true);
    check("", "chatgpt is DOWN for me", CHATGPT, true);
    check("OpenAI outage", "", CHATGPT, true);
    check("ChatGPT's not working again", "", CHATGPT, true);
    check("ChatGPT isn't working", "", CHATGPT, true);
    check("ChatGPT isn’t working", "curly apostrophe", CHATGPT, true);
    check("Claude", "keeps saying Overloaded", CLAUDE, true);
    check("Anthropic API: 529 errors since noon", "", CLAUDE, true);
    check("Claude.ai error: something went wrong", "", CLAUDE, true);
    // The name and the keyword may come from the title and the text.
    check("ChatGPT today", "Is it down for everyone?", CHATGPT, true);
}

#[test]
fn matches_outage_words_in_other_languages() {
    check("ChatGPT en panne ?", "", CHATGPT, true);
    check("ChatGPT ne marche pas", "", CHATGPT, true);
    check("¿ChatGPT caído?", "", CHATGPT, true);
    check("chatgpt caido", "without the accent", CHATGPT, true);
    check("ChatGPT no funciona", "", CHATGPT, true);
    check("ChatGPT funktioniert nicht", "", CHATGPT, true);
    check("Störung bei ChatGPT", "", CHATGPT, true);
    check("STÖRUNG BEI CHATGPT", "upper case", CHATGPT, true);
    check("Storung bei ChatGPT", "no umlaut", CHATGPT, true);
    check("ChatGPT fora do ar", "", CHATGPT, true);
    check("ChatGPT não funciona", "", CHATGPT, true);
    check("ChatGPT nao funciona", "", CHATGPT, true);
    // "caído" written with a combining accent (e + U+0301 style decomposition).
    check("ChatGPT cai\u{0301}do", "", CHATGPT, true);
}

#[test]
fn matches_whole_words_only() {
    check("Where do I download ChatGPT?", "", CHATGPT, false);
    check("ChatGPT downloads", "", CHATGPT, false);
    check("ChatGPT: the errorless assistant", "", CHATGPT, false);
    check(
        "ChatGPTdown",
        "hashtag-like run-together words",
        CHATGPT,
        false,
    );
    check("Claudette is down", "", CLAUDE, false);
    // "errors" is matched because it is listed, not because of stemming.
    check("ChatGPT errors", "", CHATGPT, true);
}

#[test]
fn matches_needs_both_the_service_and_an_outage_word() {
    check("Is ChatGPT worth it?", "I love it", CHATGPT, false);
    check("Gemini is down", "", CHATGPT, false);
    check("Everything is down today", "", CHATGPT, false);
    check("Claude is down", "", CHATGPT, false);
    check("ChatGPT is down", "", CLAUDE, false);
    check("ChatGPT is down", "", &[], false);
    assert!(!matches(
        &post("ChatGPT is down", ""),
        &[],
        &strings(CHATGPT)
    ));
    // A name or keyword without letters or digits never matches.
    assert!(!matches(
        &post("ChatGPT is down !!!", ""),
        &strings(&["!!!"]),
        &strings(CHATGPT)
    ));
}

#[test]
fn matches_multi_word_names_and_keywords_as_phrases() {
    let names = strings(&["google gemini"]);
    let keywords = strings(&["not working"]);
    let m = |title: &str| matches(&post(title, ""), &keywords, &names);
    assert!(m("Google Gemini not working"));
    assert!(m("google-gemini: NOT-WORKING"));
    assert!(!m("Gemini not working"));
    assert!(!m("Google Gemini working, not slow"));
}

#[test]
fn matching_on_real_posts_finds_exactly_the_error_reports() {
    let posts = parse(DISCOURSE, "application/rss+xml", DISCOURSE_URL);
    let names = strings(&["st2", "stackstorm"]);
    let keywords = strings(DEFAULT_KEYWORDS);
    let found: Vec<&str> = posts
        .iter()
        .filter(|p| matches(p, &keywords, &names))
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(found, MATCHED_DISCOURSE_IDS);
}

/// "St2 apikey create - connection aborted" ("…This got around the error above."): the one post
/// that names StackStorm together with an outage word.
const MATCHED_DISCOURSE_IDS: &[&str] = &["forum.stackstorm.com-post-4435"];

// === Errors ===

fn error_of(body: &[u8], content_type: Option<&str>) -> ChatterError {
    match parse_posts(body, content_type, REDDIT_URL) {
        Ok(posts) => panic!(
            "expected an error for {:?}, got {} posts",
            String::from_utf8_lossy(&body[..body.len().min(80)]),
            posts.len()
        ),
        Err(e) => e,
    }
}

#[test]
fn garbage_is_an_error() {
    assert!(matches!(error_of(b"", None), ChatterError::Empty));
    assert!(matches!(error_of(b" \r\n\t ", None), ChatterError::Empty));
    let html = b"<!DOCTYPE html><html><head><title>Blocked</title></head><body>whoa there, \
                 pardner!</body></html>";
    let e = error_of(html, Some("text/html; charset=utf-8"));
    assert!(matches!(e, ChatterError::Html { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "got an HTML page (served as text/html; charset=utf-8), not a feed"
    );
    let e = error_of(br#"{"message": "Too Many Requests", "error": 429}"#, None);
    assert_eq!(
        e.to_string(),
        "JSON: neither Hacker News search results (no `hits` array) nor a JSON Feed; keys: \
         error, message"
    );
    let e = error_of(br#"{"hits": {"a": 1}}"#, None);
    assert_eq!(e.to_string(), "JSON: `hits` is an object, not an array");
    assert!(matches!(error_of(b"[1, 2]", None), ChatterError::Json(_)));
    assert!(matches!(error_of(b"null", None), ChatterError::Feed(_)));
    assert!(matches!(
        error_of(b"{not json", None),
        ChatterError::Json(_)
    ));
    assert!(matches!(
        error_of(b"hello world", None),
        ChatterError::Feed(_)
    ));
    assert!(matches!(
        error_of(b"\xff\xfe\x00<\x00", None),
        ChatterError::Feed(_)
    ));
    let e = error_of(b"<?xml version=\"1.0\"?><notafeed><x/></notafeed>", None);
    assert!(matches!(e, ChatterError::Feed(_)), "{e:?}");
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    assert!(matches!(
        error_of(&big, None),
        ChatterError::TooLarge { .. }
    ));
}

#[test]
fn a_cut_off_payload_is_an_error() {
    for fixture in ALL_FIXTURES {
        let whole = fixture.trim_ascii_end().len();
        for cut in [
            1,
            whole / 10,
            whole / 2,
            whole * 9 / 10,
            whole - 3,
            whole - 1,
        ] {
            let e = error_of(&fixture[..cut], None);
            assert!(
                matches!(e, ChatterError::Feed(_) | ChatterError::Json(_)),
                "cut at {cut}: {e:?}"
            );
        }
    }
}

#[test]
fn an_empty_feed_is_no_posts() {
    let empty_atom = br#"<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>newest submissions : quiet</title></feed>"#;
    assert_eq!(parse_posts(empty_atom, None, REDDIT_URL).unwrap(), []);
    assert_eq!(
        parse_posts(br#"{"hits":[],"nbHits":0}"#, None, HN_URL).unwrap(),
        []
    );
    // Trailing comments after the root element, as some generators write, are fine.
    let commented = br#"<rss version="2.0"><channel><title>x</title></channel></rss>
<!-- generated in 0.01s -->
"#;
    assert_eq!(parse_posts(commented, None, DISCOURSE_URL).unwrap(), []);
}

// === Caps ===

#[test]
fn posts_and_texts_are_capped() {
    let hits: Vec<_> = (0..MAX_POSTS + 100)
        .map(|i| json!({"objectID": i.to_string(), "title": "t", "created_at_i": 1_700_000_000}))
        .collect();
    let body = serde_json::to_vec(&json!({ "hits": hits })).unwrap();
    let posts = parse_posts(&body, None, HN_URL).unwrap();
    assert_eq!(posts.len(), MAX_POSTS);
    assert_eq!(posts[MAX_POSTS - 1].id, (MAX_POSTS - 1).to_string());

    let long = "<p>word </p>".repeat(MAX_TEXT_CHARS);
    let body =
        serde_json::to_vec(&json!({"hits": [{"objectID": "1", "story_text": long}]})).unwrap();
    let posts = parse_posts(&body, None, HN_URL).unwrap();
    assert_eq!(posts[0].text.chars().count(), MAX_TEXT_CHARS - 1);
    assert!(posts[0].text.starts_with("word\nword\n"));

    // A hit without an objectID cannot be told apart from the next poll's: it is skipped.
    let body = br#"{"hits":[{"title":"no id"},{"objectID":"7","title":"ok"}]}"#;
    let posts = parse_posts(body, None, HN_URL).unwrap();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].id, "7");
}

// === Never panic ===

proptest! {
    #[test]
    fn never_panic_on_arbitrary_bytes(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        content_type in prop::option::of("[a-z/+;= -]{0,40}"),
    ) {
        let _ = parse_posts(&body, content_type.as_deref(), "https://www.reddit.com/r/x/.rss");
    }

    #[test]
    fn never_panic_on_real_payloads_with_a_span_replaced_by_junk(
        which in 0..ALL_FIXTURES.len(),
        at in any::<prop::sample::Index>(),
        cut in 0usize..64,
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let original = ALL_FIXTURES[which];
        let start = at.index(original.len());
        let end = (start + cut).min(original.len());
        let mut body = original[..start].to_vec();
        body.extend_from_slice(&junk);
        body.extend_from_slice(&original[end..]);
        if let Ok(posts) = parse_posts(&body, None, "weird url") {
            let keywords = strings(DEFAULT_KEYWORDS);
            for post in &posts {
                let _ = matches(post, &keywords, &strings(CHATGPT));
                prop_assert!(post.text.chars().count() <= MAX_TEXT_CHARS);
            }
        }
    }

    #[test]
    fn never_panic_when_matching_arbitrary_text(
        title in any::<String>(),
        text in any::<String>(),
        name in any::<String>(),
        keyword in any::<String>(),
    ) {
        let _ = matches(&post(&title, &text), &[keyword], &[name]);
    }
}
