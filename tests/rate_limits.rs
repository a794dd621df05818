//! Ingest rate limiting: a token's budget, a batch spending one unit per event, and per-address
//! budgets without tokens.

mod common;

use std::time::{Duration, Instant};

use common::fixture::never_called;
use common::{http_client, spawn, Options, TestApp};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Ingest rate limiting
// ---------------------------------------------------------------------------------------

/// Submits as `bearer` (or with no token) until the first 429, at most `limit` times; returns
/// how many were accepted, the 429's `Retry-After` and body, and how long the run took.
async fn submit_until_refused(
    app: &TestApp,
    bearer: Option<&str>,
    config: i64,
    limit: usize,
) -> (usize, Option<(String, Value)>, Duration) {
    let http = http_client();
    let started = Instant::now();
    let mut accepted = 0;
    for _ in 0..limit {
        let mut request = http
            .post(app.url("/webhooks"))
            .header("Content-Type", "application/json")
            .body(
                json!({"event_type": "+credit", "config_id": config, "url_params": {}}).to_string(),
            );
        if let Some(token) = bearer {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        match response.status().as_u16() {
            201 => accepted += 1,
            429 => {
                let retry_after = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let body = serde_json::from_str(&response.text().await.unwrap()).unwrap();
                return (accepted, Some((retry_after, body)), started.elapsed());
            }
            other => panic!("unexpected status {other}"),
        }
    }
    (accepted, None, started.elapsed())
}

/// With a rate of `rate`/s and a burst of `rate`, a run of `elapsed` may pass at most this many.
/// The app with `INGEST_RATE_LIMIT` 5 and `API_TOKEN` `tokens`, its client sending `tok-a`.
async fn limited_to_five(tokens: &str) -> TestApp {
    spawn(
        Options::default()
            .env("API_TOKEN", tokens)
            .bearer("tok-a")
            .env("INGEST_RATE_LIMIT", 5),
    )
    .await
}

fn most_allowed(rate: usize, elapsed: Duration) -> usize {
    rate + (elapsed.as_secs_f64() * rate as f64).ceil() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_a_token_gets_429_with_retry_after_and_no_row_while_another_token_has_its_own_budget(
) {
    let app = limited_to_five("tok-a,tok-b").await;
    let config = never_called(&app).await;

    let (accepted, refused, elapsed) = submit_until_refused(&app, Some("tok-a"), config, 30).await;
    let (retry_after, body) = refused.expect("a 429 within 30 quick submits");
    // The burst is the rate: five pass at once; the sixth is refused unless time refilled it.
    assert!(
        (5..=most_allowed(5, elapsed)).contains(&accepted),
        "{accepted} accepted in {elapsed:?}"
    );
    assert_eq!(
        retry_after, "1",
        "Retry-After rounds the 200 ms wait up to whole seconds"
    );
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"].is_string());
    assert_eq!(
        app.db.count("SELECT count(*) FROM webhook_queue").await,
        accepted as i64,
        "a refused submit wrote a row"
    );

    // tok-a is spent; tok-b has a full budget of its own.
    let (accepted_b, _, elapsed_b) = submit_until_refused(&app, Some("tok-b"), config, 5).await;
    assert_eq!(accepted_b, 5, "in {elapsed_b:?}");

    // After Retry-After, tok-a may submit again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (again, _, _) = submit_until_refused(&app, Some("tok-a"), config, 1).await;
    assert_eq!(again, 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_spends_one_unit_of_the_budget_per_event() {
    let app = limited_to_five("tok-a").await;
    let config = never_called(&app).await;
    let batch = |n: usize| {
        let events: Vec<Value> = (0..n)
            .map(|_| json!({"event_type": "+credit", "config_id": config, "url_params": {}}))
            .collect();
        json!({ "events": events })
    };
    let started = Instant::now();
    let (status, body) = app.post("/webhooks/batch", batch(4)).await;
    assert_eq!(status, 200, "{body}");
    // One unit is left (plus what refilled meanwhile, 5 a second): four more do not fit.
    let (status, body) = app.post("/webhooks/batch", batch(4)).await;
    let elapsed = started.elapsed();
    match status {
        429 => {
            assert_eq!(body["error"]["code"], "rate_limited");
            assert_eq!(app.db.count("SELECT count(*) FROM webhook_queue").await, 4);
        }
        200 => assert!(
            elapsed >= Duration::from_millis(600),
            "four events passed {elapsed:?} after the first four"
        ),
        other => panic!("unexpected {other}: {body}"),
    }
    // More events than the burst can never pass: a 422, not a 429 to retry forever.
    let (status, body) = app.post("/webhooks/batch", batch(6)).await;
    assert_eq!(status, 422, "{body}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_budget_is_per_client_address_and_zero_means_no_limit() {
    let limited = spawn(Options::default().env("INGEST_RATE_LIMIT", 3)).await;
    let config = never_called(&limited).await;
    let (accepted, refused, elapsed) = submit_until_refused(&limited, None, config, 30).await;
    assert!(refused.is_some());
    assert!(
        (3..=most_allowed(3, elapsed)).contains(&accepted),
        "{accepted} accepted in {elapsed:?}"
    );
    limited.shutdown().await;

    let open = spawn(Options::default()).await;
    let config = never_called(&open).await;
    let (accepted, refused, _) = submit_until_refused(&open, None, config, 40).await;
    assert_eq!(
        (accepted, refused.is_none()),
        (40, true),
        "the default (0) limits nothing"
    );
    open.shutdown().await;
}
