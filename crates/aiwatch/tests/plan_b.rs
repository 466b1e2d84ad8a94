//! Plan B where people look, through the real binary and its real HTTP server: the
//! dashboard's ChatGPT card and page say the API still works while the web app fails.

mod common;

use std::time::Duration;

use aiwatch_testkit::{canned, World};
use common::Serve;

#[tokio::test(flavor = "multi_thread")]
async fn serve_shows_plan_b_on_the_chatgpt_card_and_page_while_only_the_web_app_fails() {
    let mut world = World::start().await;
    let api = world.api("openai-api", "api.openai.test", "/v1").await;
    api.route("GET", "/v1/models", canned::openai_models());
    // `serve` also streams a tiny completion now and then.
    api.route("POST", "/v1/chat/completions", canned::openai_stream(true));
    let web = world.web("chatgpt", "chatgpt.test").await;
    web.route("GET", "/", canned::cloudflare_origin_error(522));
    let serve = Serve::start_watching(
        &world,
        &["chatgpt", "openai-api"],
        "",
        &[("OPENAI_API_KEY", "sk-test-plan-b-0123456789")],
    )
    .await;

    let line = "chatgpt is failing, but the OpenAI API works";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let (status, page) = serve.get("/services/chatgpt").await;
        if status == 200 && page.contains(line) {
            break page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ChatGPT page never showed plan B: {}",
            serve.get("/api/services").await.1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(page.contains("Keep working: ") && page.contains("aiwatch gateway"));
    let (_, overview) = serve.get("/").await;
    assert_eq!(
        overview.matches("Keep working: ").count(),
        1,
        "the ChatGPT card only: {overview}"
    );
    let (_, api_page) = serve.get("/services/openai-api").await;
    assert!(!api_page.contains("Keep working: "), "{api_page}");
}
