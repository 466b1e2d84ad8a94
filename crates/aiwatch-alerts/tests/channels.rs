//! Each channel against a loopback fake of its real API: the request's shape, its headers and
//! secrets, and how the receiver's answer is read.

mod common;

use std::time::Duration;

use aiwatch_alerts::send::attempt;
use aiwatch_core::alert::AlertEvent;
use aiwatch_testkit::{FakeServer, FakeSmtp, Reply, SmtpSecurity, World};
use common::{channel, context, message};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn send(
    world: &World,
    toml: &str,
    secrets: &[(&str, &str)],
    event: AlertEvent,
) -> aiwatch_alerts::Answer {
    let channel = channel(world, toml, secrets);
    attempt(
        &context(world),
        &channel,
        channel.outbound(&message(event)),
        TIMEOUT,
    )
    .await
}

fn body(server: &FakeServer) -> Value {
    let seen = server.requests();
    assert_eq!(seen.len(), 1, "one request: {seen:?}");
    serde_json::from_slice(&seen[0].body).expect("a JSON body")
}

#[tokio::test]
async fn the_webhook_posts_the_versioned_message_signed_with_hmac_sha256() {
    let world = World::start().await;
    let hook = world.receiver("hooks.example.test").await;
    hook.route("POST", "/aiwatch", Reply::empty(204));
    let answer = send(
        &world,
        &format!(
            "[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}/aiwatch\"\nsecret_env = \"HOOK_SECRET\"\n",
            hook.url("hooks.example.test")
        ),
        &[("HOOK_SECRET", "a shared secret of the receiver")],
        AlertEvent::Opened,
    )
    .await;
    assert!(answer.accepted, "{answer:?}");
    let seen = &hook.requests()[0];
    let payload: Value = serde_json::from_slice(&seen.body).unwrap();
    for field in [
        "version",
        "event",
        "service",
        "component",
        "region",
        "status",
        "scope",
        "cause",
        "summary",
        "advice",
        "official",
        "dashboard_url",
        "incident_id",
        "at",
    ] {
        assert!(payload.get(field).is_some(), "the body lacks {field}");
    }
    assert_eq!(payload["version"], 1);
    assert_eq!(payload["event"], "opened");
    assert_eq!(payload["cause"], "provider_overloaded");
    assert_eq!(
        seen.header("idempotency-key"),
        Some("inc-openai-api-api-local-1764590400:opened")
    );
    // The signature verifies with an HMAC computed here over the raw bytes received.
    let signature = seen.header("x-aiwatch-signature").expect("signed");
    let hex = signature.strip_prefix("sha256=").expect("sha256= prefix");
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"a shared secret of the receiver");
    ring::hmac::verify(&key, &seen.body, &tag).expect("the signature verifies");
    let wrong = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"another secret");
    assert!(ring::hmac::verify(&wrong, &seen.body, &tag).is_err());
}

#[test]
fn the_signature_matches_rfc_4231_test_case_2() {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
    assert_eq!(
        aiwatch_alerts::channel::signature(&key, b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[tokio::test]
async fn slack_gets_blocks_with_escaped_text_and_its_secret_url_stays_out_of_answers() {
    let world = World::start().await;
    let slack = world.receiver("hooks.slack.test").await;
    let path = "/services/T000/B000/T0ken-secret-path-abc";
    // Slack answers errors as text; a misbehaving one might echo the URL.
    slack.route(
        "POST",
        path,
        Reply::text(404, "text/plain", format!("no_service {path}")),
    );
    let url = format!("{}{path}", slack.url("hooks.slack.test"));
    let answer = send(
        &world,
        "[[alert]]\nname = \"team\"\nkind = \"slack\"\nurl_env = \"SLACK_URL\"\n",
        &[("SLACK_URL", &url)],
        AlertEvent::Opened,
    )
    .await;
    assert!(
        !answer.accepted && !answer.transient,
        "404 is for good: {answer:?}"
    );
    assert!(
        !answer.detail.contains("T0ken-secret-path-abc"),
        "{}",
        answer.detail
    );
    let payload = body(&slack);
    assert!(payload["text"].as_str().unwrap().contains("OpenAI API"));
    let blocks = payload["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    let all = payload.to_string();
    assert!(
        all.contains("&lt;for everyone&gt; &amp; more") || all.contains("<for everyone> & more")
    );
    assert!(all.contains("Send traffic to another provider"));
    assert!(all.contains("<http://aiwatch.test/services/openai-api|Dashboard>"));
    assert!(all.contains("Elevated errors on Chat Completions"));
}

#[tokio::test]
async fn discord_gets_an_embed_that_pings_nobody_and_its_429_says_how_long_to_wait() {
    let world = World::start().await;
    let discord = world.receiver("discord.test").await;
    discord.route(
        "POST",
        "/api/webhooks/1/tok",
        Reply::json(
            429,
            json!({"message": "You are being rate limited.", "retry_after": 2.5, "global": false}),
        ),
    );
    let url = format!("{}/api/webhooks/1/tok", discord.url("discord.test"));
    let answer = send(
        &world,
        "[[alert]]\nname = \"d\"\nkind = \"discord\"\nurl_env = \"DISCORD_URL\"\n",
        &[("DISCORD_URL", &url)],
        AlertEvent::Opened,
    )
    .await;
    assert!(answer.transient, "{answer:?}");
    assert_eq!(answer.status, Some(429));
    assert_eq!(answer.retry_after, Some(Duration::from_millis(2500)));
    let payload = body(&discord);
    assert_eq!(payload["allowed_mentions"]["parse"], json!([]));
    let embed = &payload["embeds"][0];
    assert!(embed["title"].as_str().unwrap().starts_with("OpenAI API"));
    assert_eq!(embed["url"], "http://aiwatch.test/services/openai-api");
    assert!(embed["description"]
        .as_str()
        .unwrap()
        .contains("529 overloaded"));
    assert_eq!(embed["color"], 0xd1242f);
}

#[tokio::test]
async fn ntfy_publishes_json_to_the_server_root_with_topic_priority_tags_and_token() {
    let world = World::start().await;
    let ntfy = world.receiver("ntfy.test").await;
    ntfy.route(
        "POST",
        "/",
        Reply::json(200, json!({"id": "abc", "event": "message"})),
    );
    let answer = send(
        &world,
        &format!(
            "[[alert]]\nname = \"phone\"\nkind = \"ntfy\"\nurl = \"{}/aiwatch-alerts\"\npriority = 5\ntags = [\"openai\"]\ntoken_env = \"NTFY_TOKEN\"\n",
            ntfy.url("ntfy.test")
        ),
        &[("NTFY_TOKEN", "tk_abcdefghijklmnop")],
        AlertEvent::Opened,
    )
    .await;
    assert!(answer.accepted, "{answer:?}");
    assert_eq!(
        ntfy.requests()[0].header("authorization"),
        Some("Bearer tk_abcdefghijklmnop")
    );
    let payload = body(&ntfy);
    assert_eq!(payload["topic"], "aiwatch-alerts");
    assert_eq!(payload["priority"], 5);
    assert_eq!(payload["tags"], json!(["rotating_light", "openai"]));
    assert_eq!(payload["click"], "http://aiwatch.test/services/openai-api");
    assert!(payload["message"].as_str().unwrap().contains("What to do"));
}

#[tokio::test]
async fn telegram_calls_send_message_with_html_and_honours_retry_after_in_the_body() {
    let world = World::start().await;
    let telegram = world.receiver("api.telegram.test").await;
    let path = "/bot123456:ABC-secret-token/sendMessage";
    telegram.route(
        "POST",
        path,
        Reply::json(429, json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}})),
    );
    let answer = send(
        &world,
        &format!(
            "[[alert]]\nname = \"tg\"\nkind = \"telegram\"\nbot_token_env = \"TG_TOKEN\"\nchat_id = \"-100200300\"\nurl = \"{}\"\n",
            telegram.url("api.telegram.test")
        ),
        &[("TG_TOKEN", "123456:ABC-secret-token")],
        AlertEvent::Opened,
    )
    .await;
    assert_eq!(answer.retry_after, Some(Duration::from_secs(7)));
    assert!(answer.transient);
    assert!(
        !answer.detail.contains("ABC-secret-token"),
        "{}",
        answer.detail
    );
    let payload = body(&telegram);
    assert_eq!(payload["chat_id"], "-100200300");
    assert_eq!(payload["parse_mode"], "HTML");
    let text = payload["text"].as_str().unwrap();
    assert!(text.starts_with("<b>OpenAI API"), "{text}");
    assert!(text.contains("&lt;for everyone&gt; &amp; more"), "{text}");
}

#[tokio::test]
async fn alertmanager_gets_v2_alerts_that_expire_unless_pushed_and_end_on_recovery() {
    let world = World::start().await;
    let am = world.receiver("alertmanager.test").await;
    am.route("POST", "/api/v2/alerts", Reply::empty(200));
    let toml = format!(
        "[[alert]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"{}\"\n",
        am.url("alertmanager.test")
    );
    let opened = send(&world, &toml, &[], AlertEvent::Opened).await;
    assert!(opened.accepted, "{opened:?}");
    let recovered = send(&world, &toml, &[], AlertEvent::Recovered).await;
    assert!(recovered.accepted);
    let seen = am.requests();
    assert_eq!(seen.len(), 2);
    let firing: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let resolved: Value = serde_json::from_slice(&seen[1].body).unwrap();
    let alert = &firing[0];
    for label in [
        "alertname",
        "service",
        "component",
        "region",
        "cause",
        "scope",
        "incident_id",
    ] {
        assert!(alert["labels"][label].is_string(), "label {label}: {alert}");
    }
    assert_eq!(alert["labels"]["cause"], "provider_overloaded");
    for annotation in ["summary", "advice", "dashboard_url"] {
        assert!(
            alert["annotations"][annotation].is_string(),
            "annotation {annotation}"
        );
    }
    assert_eq!(alert["startsAt"], "2026-12-01T12:00:00+00:00");
    // Firing: it expires five re-push intervals (1m by default) ahead unless pushed again.
    assert_eq!(alert["endsAt"], "2026-12-01T12:05:00+00:00");
    // Recovery: the same labels, ended now.
    assert_eq!(resolved[0]["labels"], alert["labels"]);
    assert_eq!(resolved[0]["endsAt"], "2026-12-01T12:00:00+00:00");
}

#[tokio::test]
async fn email_goes_out_over_starttls_with_auth_and_carries_the_whole_story() {
    let world = World::start().await;
    let smtp = FakeSmtp::start(
        SmtpSecurity::StartTls,
        Some(&world.public_ca.issue(&["127.0.0.1"])),
    )
    .await;
    smtp.require_auth("aiwatch", "mail password");
    let answer = send(
        &world,
        &format!(
            "[[alert]]\nname = \"mail\"\nkind = \"email\"\nsmtp = \"smtp://127.0.0.1:{}\"\nuser = \"aiwatch\"\npassword_env = \"SMTP_PASSWORD\"\nfrom = \"aiwatch@example.test\"\nto = [\"oncall@example.test\", \"lead@example.test\"]\n",
            smtp.addr().port()
        ),
        &[("SMTP_PASSWORD", "mail password")],
        AlertEvent::Opened,
    )
    .await;
    assert!(answer.accepted, "{answer:?}");
    let mails = smtp.wait_for_messages(1, Duration::from_secs(5)).await;
    let mail = &mails[0];
    assert!(mail.tls);
    assert_eq!(mail.authenticated_as.as_deref(), Some("aiwatch"));
    assert_eq!(mail.to.len(), 2);
    let subject = mail.header("subject").unwrap_or_default();
    assert!(subject.starts_with("[aiwatch] OpenAI API"), "{subject}");
    for part in [
        "529 overloaded",
        "Send traffic to another provider",
        "Elevated errors",
        "http://aiwatch.test/services/openai-api",
    ] {
        assert!(
            mail.data.contains(part),
            "the mail lacks {part}:\n{}",
            mail.data
        );
    }
}

#[tokio::test]
async fn a_mail_server_refusing_for_now_is_retried_and_a_wrong_password_is_not() {
    let world = World::start().await;
    let smtp = FakeSmtp::start(
        SmtpSecurity::ImplicitTls,
        Some(&world.public_ca.issue(&["127.0.0.1"])),
    )
    .await;
    smtp.require_auth("aiwatch", "right");
    let toml = format!(
        "[[alert]]\nname = \"mail\"\nkind = \"email\"\nsmtp = \"smtps://127.0.0.1:{}\"\nuser = \"aiwatch\"\npassword_env = \"P\"\nfrom = \"a@example.test\"\nto = [\"b@example.test\"]\n",
        smtp.addr().port()
    );
    smtp.reject_next(451, "4.3.0 try again later");
    let busy = send(&world, &toml, &[("P", "right")], AlertEvent::Opened).await;
    assert!(!busy.accepted && busy.transient, "{busy:?}");
    assert_eq!(busy.status, Some(451));
    let wrong = send(&world, &toml, &[("P", "wrong")], AlertEvent::Opened).await;
    assert!(!wrong.accepted && !wrong.transient, "{wrong:?}");
    assert!(!wrong.detail.contains("wrong"), "{}", wrong.detail);
}

#[tokio::test]
async fn a_secret_url_is_never_sent_through_intercepted_tls() {
    let world = World::start().await;
    // The network presents an interceptor's certificate for the Slack host.
    let intercepted =
        FakeServer::start(Some(&world.interceptor.issue(&["hooks.slack.test"]))).await;
    world.dns.set(
        "hooks.slack.test",
        aiwatch_testkit::DnsAnswer::Addresses(vec!["127.0.0.1".parse().unwrap()]),
    );
    intercepted.fallback(Reply::empty(200));
    let url = format!(
        "{}/services/T/B/secret",
        intercepted.url("hooks.slack.test")
    );
    let config = aiwatch_core::Config::parse(
        "[[alert]]\nname = \"team\"\nkind = \"slack\"\nurl_env = \"SLACK_URL\"\n",
    )
    .unwrap();
    // Trusting the interceptor's root as a non-public anchor, as a company laptop does.
    let trust = aiwatch_probe::tls::Trust::new(&[world.interceptor_ca_path()]).unwrap();
    let channel =
        aiwatch_alerts::Channel::build(config.alerts[0].clone(), &|_| Some(url.clone()), &trust)
            .unwrap();
    let ctx = aiwatch_probe::Checker::new(aiwatch_probe::CheckOptions {
        timeout: TIMEOUT,
        dns: aiwatch_probe::DnsChoice::Server(world.dns.addr()),
        ca_files: vec![world.interceptor_ca_path()],
        control_url: None,
        deep: false,
        proxies: aiwatch_probe::ProxySettings::none(),
    })
    .unwrap()
    .context()
    .clone();
    let answer = attempt(
        &ctx,
        &channel,
        channel.outbound(&message(AlertEvent::Opened)),
        TIMEOUT,
    )
    .await;
    assert!(!answer.accepted, "{answer:?}");
    assert!(answer.detail.contains("intercepted"), "{}", answer.detail);
    assert!(
        intercepted.requests().is_empty(),
        "nothing went through the interceptor"
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_a_timeout_worth_retrying() {
    let world = World::start().await;
    let hook = world.receiver("slow.example.test").await;
    hook.fallback(Reply::hang());
    let channel = channel(
        &world,
        &format!(
            "[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}/x\"\n",
            hook.url("slow.example.test")
        ),
        &[],
    );
    let answer = attempt(
        &context(&world),
        &channel,
        channel.outbound(&message(AlertEvent::Opened)),
        Duration::from_millis(300),
    )
    .await;
    assert!(!answer.accepted && answer.transient, "{answer:?}");
}
