//! Public chatter as a second source: each `[[feed]]` (a subreddit, a forum, a Hacker News
//! search) is read politely — conditional requests, at most once per its interval, backing off
//! after failures and honouring Retry-After — and the posts that speak of a covered service's
//! trouble are saved and counted into the crowd with the feed's weight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::config::FeedConfig;
use aiwatch_core::Service;
use aiwatch_probe::chatter::{matches, parse_posts, Post, DEFAULT_KEYWORDS, MAX_BODY_BYTES};
use aiwatch_probe::layered::ProbeContext;
use aiwatch_probe::poller::{fetch_conditional, parse_retry_after, Fetched, Validators};
use aiwatch_store::PublicPost;
use chrono::Utc;

use crate::engine::Engine;

/// One read's deadline.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest wait after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Posts older than this at their first sight are saved but not counted as a spike now.
const FRESH: chrono::Duration = chrono::Duration::hours(1);

/// The words that name a service in people's posts: its name's parts and its title's words,
/// without the generic ones ("api", "web").
pub fn names_of(service: &Service) -> Vec<String> {
    const GENERIC: &[&str] = &["api", "web", "app", "the", "ai", "studio", "cloud", "local"];
    let mut names: Vec<String> = service
        .name
        .as_str()
        .split('-')
        .chain(service.title.split_whitespace())
        .map(str::to_lowercase)
        .filter(|w| w.len() > 2 && !GENERIC.contains(&w.as_str()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Reads every feed until `shutdown`.
pub async fn run(
    engine: Arc<Engine>,
    ctx: ProbeContext,
    feeds: Vec<FeedConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let tasks: Vec<_> = feeds
        .into_iter()
        .map(|feed| tokio::spawn(poll_feed(engine.clone(), ctx.clone(), feed)))
        .collect();
    shutdown.await;
    for task in tasks {
        task.abort();
    }
}

async fn poll_feed(engine: Arc<Engine>, ctx: ProbeContext, feed: FeedConfig) {
    let keywords: Vec<String> = if feed.keywords.is_empty() {
        DEFAULT_KEYWORDS.iter().map(|k| (*k).to_owned()).collect()
    } else {
        feed.keywords.clone()
    };
    let covered: Vec<(Service, Vec<String>)> = engine
        .services
        .iter()
        .filter(|s| feed.services.contains(&s.name))
        .map(|s| (s.clone(), names_of(s)))
        .collect();
    let mut validators = Validators::default();
    let mut failures: u32 = 0;
    loop {
        let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
        let mut wait = feed.interval;
        match fetch_conditional(&ctx, &feed.url, &validators, MAX_BODY_BYTES, deadline).await {
            Ok(Fetched::Page {
                body,
                validators: next,
                content_type,
            }) => {
                validators = next;
                match parse_posts(&body, content_type.as_deref(), &feed.url) {
                    Ok(posts) => {
                        failures = 0;
                        save(&engine, &feed, &covered, &keywords, posts).await;
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(feed = %feed.url, error = %e, "a feed could not be read");
                    }
                }
            }
            Ok(Fetched::NotModified { validators: next }) => {
                validators = next;
                failures = 0;
            }
            Err(failure) => {
                failures += 1;
                tracing::info!(feed = %feed.url, reason = %failure.reason, "a feed could not be fetched");
                if let Some(asked) = failure
                    .retry_after
                    .as_deref()
                    .and_then(|r| parse_retry_after(r, Utc::now()))
                {
                    wait = wait.max(asked);
                }
            }
        }
        if failures > 0 {
            let backoff = feed
                .interval
                .saturating_mul(1 << failures.min(6))
                .min(MAX_BACKOFF);
            wait = wait.max(backoff);
        }
        tokio::time::sleep(wait).await;
    }
}

/// Saves the posts that speak of a covered service's trouble and counts the fresh new ones.
async fn save(
    engine: &Arc<Engine>,
    feed: &FeedConfig,
    covered: &[(Service, Vec<String>)],
    keywords: &[String],
    posts: Vec<Post>,
) {
    let now = Utc::now();
    let mut matched: Vec<PublicPost> = Vec::new();
    for post in &posts {
        for (service, names) in covered {
            if matches(post, keywords, names) {
                matched.push(PublicPost {
                    service: service.name.clone(),
                    id: post.id.clone(),
                    source: post.source.clone(),
                    title: post.title.clone(),
                    url: post.url.clone(),
                    at: post.at.unwrap_or(now).min(now),
                    weight: feed.weight,
                });
            }
        }
    }
    if matched.is_empty() {
        return;
    }
    let store = engine.store.clone();
    let saved = tokio::task::spawn_blocking(move || {
        let mut fresh_new = Vec::new();
        for post in matched {
            // One at a time: only a post seen for the first time counts.
            if store.insert_posts(std::slice::from_ref(&post))? == 1 && now - post.at <= FRESH {
                fresh_new.push((post.service, post.weight));
            }
        }
        Ok::<_, aiwatch_store::Error>(fresh_new)
    })
    .await;
    match saved {
        Ok(Ok(fresh)) => {
            for (service, weight) in fresh {
                engine.crowd.add_posts(&service, weight);
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "matched posts could not be saved"),
        Err(_) => {}
    }
}
