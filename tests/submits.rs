//! Submitting events over the API against a real PostgreSQL: the entry and the partner URL
//! built once, the attempts of an entry, every class of bad input (400, 413, 415, 422) with no
//! row written, idempotent and concurrent submits, batches, and configs changed behind the
//! API's back.

mod common;

use std::collections::BTreeSet;

use common::fixture::{api_with_acme, queue_id, Event, Made, RowState};
use common::http::*;
use common::{spawn, Options, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// A partner `name` at `http://h/`, deactivated (`DELETE` answered 200); its id.
async fn deactivated(app: &TestApp, name: &str) -> i64 {
    let id = app.config(name, "http://h/pb", "http://h/cb").await;
    let path = format!("/webhook-configs/{id}");
    assert_eq!(delete(app, &path).await.0, 200);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_answers_201_with_the_entry_and_the_partner_url_built_per_spec() {
    let app = spawn(Options::default()).await;
    let postback = "http://h/pb?src=net&uid={user_id}";
    let config = app.config("acme", postback, "http://h/cb/{event_id}").await;

    let (status, entry) = app
        .post(
            "/webhooks",
            json!({"event_type": "+credit", "event_id": "tx_123", "config_id": config,
                   "url_params": {"user_id": "u 1", "value": "100"}}),
        )
        .await;
    assert_eq!(status, 201, "{entry}");
    for field in [
        "id",
        "queue_id",
        "event_type",
        "event_id",
        "config_id",
        "webhook_url",
        "url_params",
        "status",
        "retry_count",
        "max_retries",
        "next_retry_at",
        "created_at",
        "updated_at",
        "completed_at",
    ] {
        assert!(
            entry.get(field).is_some(),
            "the entry has {field}: {entry:#}"
        );
    }
    assert!(entry["id"].as_i64().is_some());
    uuid::Uuid::parse_str(&queue_id(&entry)).expect("queue_id is a UUID");
    assert_eq!(entry["event_type"], "+credit");
    assert_eq!(entry["event_id"], "tx_123");
    assert_eq!(entry["config_id"], config);
    assert_eq!(
        entry["webhook_url"],
        "http://h/pb?src=net&uid=u%201&value=100"
    );
    assert_eq!(
        entry["url_params"],
        json!({"user_id": "u 1", "value": "100"})
    );
    assert_eq!(entry["status"], "pending");
    assert_eq!(entry["retry_count"], 0);
    assert_eq!(entry["max_retries"], 6, "the global RETRY_MAX_RETRIES");
    for field in ["next_retry_at", "created_at", "updated_at"] {
        assert_rfc3339_utc(&entry[field], field);
    }
    assert!(entry["completed_at"].is_null());
    assert!(entry["cancelled_at"].is_null());

    // Numbers and booleans go as their JSON text; leftovers are appended in key order;
    // every byte outside the unreserved set is %XX.
    let (status, debit) = app
        .post(
            "/webhooks",
            json!({"event_type": "-debit", "event_id": "tx/124", "config_id": config,
                   "url_params": {"ok": true, "amount": 5, "note": "a&b=c ü~"}}),
        )
        .await;
    assert_eq!(status, 201, "{debit}");
    let expected = "http://h/cb/tx%2F124?amount=5&note=a%26b%3Dc%20%C3%BC~&ok=true";
    assert_eq!(debit["webhook_url"], expected);

    // A config's own max_retries is copied onto the entry.
    let capped = json!({"name": "capped", "postback_url": "http://h/c", "max_retries": 2});
    let (_, capped) = app.post("/webhook-configs", capped).await;
    let capped_entry = app
        .submit(json!({"event_type": "+credit", "config_id": capped["id"]}))
        .await;
    assert_eq!(capped_entry["max_retries"], 2);
    assert_eq!(capped_entry["webhook_url"], "http://h/c");
    assert!(capped_entry["event_id"].is_null());

    // GET returns the same entry, with its (so far empty) attempts.
    let (status, read) = app.get(&format!("/webhooks/{}", queue_id(&entry))).await;
    assert_eq!(status, 200);
    assert_eq!(read["attempts"], json!([]));
    let mut without_attempts = read.clone();
    without_attempts.as_object_mut().unwrap().remove("attempts");
    assert_eq!(without_attempts, entry);

    // The row, as an operator reads it.
    let row = app
        .db
        .client()
        .await
        .query_one(
            "SELECT webhook_url, status, event_type, url_params::text FROM webhook_queue
             WHERE queue_id::text = $1",
            &[&queue_id(&entry)],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "http://h/pb?src=net&uid=u%201&value=100"
    );
    assert_eq!(row.get::<_, String>(1), "pending");
    assert_eq!(row.get::<_, String>(2), "+credit");
    let stored: Value = serde_json::from_str(row.get(3)).unwrap();
    assert_eq!(stored, entry["url_params"]);
    assert_eq!(queue_rows(&app).await, 3);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempts_of_an_entry_are_listed_in_order() {
    let app = spawn(Options::default()).await;
    let config = app.config("acme", "http://h/pb", "http://h/cb").await;
    let entry = app.submit(Event::u1_credit("e1", config).body()).await;
    RowState::status("completed")
        .attempts([
            Made::answered(503, 31).body("busy").error("HTTP 503"),
            Made::answered(200, 9).body("ok"),
        ])
        .set("retry_count = 1")
        .apply(&app.db, &[&queue_id(&entry)])
        .await;
    let (status, read) = app.get(&format!("/webhooks/{}", queue_id(&entry))).await;
    assert_eq!(status, 200);
    let attempts = read["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{read:#}");
    let expected = [
        (503, 31, "busy", json!("HTTP 503")),
        (200, 9, "ok", Value::Null),
    ];
    for (n, (http_status, duration, body, error)) in expected.into_iter().enumerate() {
        let a = &attempts[n];
        assert_eq!(a["attempt"], n);
        assert_eq!(a["http_status"], http_status);
        assert_eq!(a["duration_ms"], duration);
        assert_eq!(a["response_body"], body);
        assert_eq!(a["error"], error);
        assert_rfc3339_utc(&a["started_at"], "started_at");
        assert_rfc3339_utc(&a["completed_at"], "completed_at");
    }
    assert_eq!(read["status"], "completed");
    assert_rfc3339_utc(&read["completed_at"], "completed_at");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_submits_are_422_naming_the_field_and_write_nothing() {
    let (app, config) = api_with_acme().await;
    let credit_only = json!({"name": "credit-only", "postback_url": "http://h/pb"});
    let credit_only = app.post("/webhook-configs", credit_only).await.1["id"]
        .as_i64()
        .unwrap();
    let inactive = deactivated(&app, "inactive").await;
    // One accepted row, so "nothing written" is not just "the table is empty".
    app.submit(Event::u1_credit("accepted", config).body())
        .await;
    let rows_before = queue_rows(&app).await;

    let submit =
        |params: Value| json!({"event_type": "+credit", "config_id": config, "url_params": params});
    let with = |fields: Value| {
        let mut body =
            json!({"event_type": "+credit", "config_id": config, "url_params": {"user_id": "u"}});
        for (key, value) in fields.as_object().unwrap() {
            body[key] = value.clone();
        }
        body.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        body
    };
    let long_key = "k".repeat(65);
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, &str)> = vec![
        ("event type without sign", with(json!({"event_type": "credit"})), "event_type"),
        ("event type in capitals", with(json!({"event_type": "+CREDIT"})), "event_type"),
        ("event type missing", with(json!({"event_type": null})), "event_type"),
        ("event type not a string", with(json!({"event_type": 1})), "event_type"),
        ("unknown config", with(json!({"config_id": 999_999})), "config_id"),
        ("inactive config", with(json!({"config_id": inactive})), "config_id"),
        ("config without a chargeback URL", json!({"event_type": "-debit", "config_id": credit_only}), "event_type"),
        ("config_id missing", with(json!({"config_id": null})), "config_id"),
        ("config_id a string", with(json!({"config_id": config.to_string()})), "config_id"),
        ("config_id a fraction", with(json!({"config_id": 1.5})), "config_id"),
        ("event_id empty", with(json!({"event_id": ""})), "event_id"),
        ("event_id too long", with(json!({"event_id": "e".repeat(256)})), "event_id"),
        ("event_id a number", with(json!({"event_id": 7})), "event_id"),
        ("unknown top-level field", with(json!({"priority": "high"})), "priority"),
        ("placeholder without a value", submit(json!({"value": "100"})), "url_params.user_id"),
        ("no url_params at all", json!({"event_type": "+credit", "config_id": config}), "url_params.user_id"),
        ("url_params not an object", submit(json!(["user_id", "u"])), "url_params"),
        ("url_params a string", submit(json!("user_id=u")), "url_params"),
        ("param key with a space", submit(json!({"user_id": "u", "a b": "x"})), "url_params"),
        ("param key of 65 characters", submit(json!({"user_id": "u", long_key.clone(): "x"})), "url_params"),
        ("param key not ASCII", submit(json!({"user_id": "u", "üser": "x"})), "url_params"),
        ("param key empty", submit(json!({"user_id": "u", "": "x"})), "url_params"),
        ("param key with a slash", submit(json!({"user_id": "u", "a/b": "x"})), "url_params"),
        ("param value null", submit(json!({"user_id": "u", "v": null})), "url_params.v"),
        ("param value an object", submit(json!({"user_id": "u", "v": {"w": 1}})), "url_params.v"),
        ("param value an array", submit(json!({"user_id": "u", "v": [1, 2]})), "url_params.v"),
        ("placeholder value null", submit(json!({"user_id": null})), "url_params.user_id"),
        // PostgreSQL text and JSONB cannot hold U+0000: refused up front, not a 500.
        ("NUL in event_id", with(json!({"event_id": "tx\u{0}1"})), "event_id"),
        ("NUL in a param value", submit(json!({"user_id": "u\u{0}1"})), "url_params.user_id"),
        ("NUL in a param key", submit(json!({"user_id": "u", "a\u{0}": "x"})), "url_params"),
    ];
    for (case, body, field) in cases {
        let answer = app.post("/webhooks", body).await;
        assert_error(&answer, INVALID, Some(field), case);
        assert_eq!(
            queue_rows(&app).await,
            rows_before,
            "{case}: no row written"
        );
    }
    let answer = app
        .post("/webhooks", json!([{"event_type": "+credit"}]))
        .await;
    assert_error(&answer, INVALID, None, "array body");

    // A key of exactly 64 allowed characters is fine.
    app.submit(submit(
        json!({"user_id": "u", "k".repeat(64): "x", "a.b-c_D9": 1}),
    ))
    .await;
    assert_eq!(queue_rows(&app).await, rows_before + 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_bodies_are_refused_with_400_413_or_415_and_write_nothing() {
    let app = spawn(Options::default()).await;
    let config = app.config("acme", "http://h/pb", "http://h/cb").await;
    let good = json!({"event_type": "+credit", "config_id": config})
        .to_string()
        .into_bytes();
    let oversize = json!({"event_type": "+credit", "config_id": config,
                          "url_params": {"pad": "x".repeat(64 * 1024)}});
    let oversize = oversize.to_string().into_bytes();
    let json = Some("application/json");
    // What the case is, the Content-Type sent, the body, and the answer expected.
    #[rustfmt::skip]
    let cases: Vec<(&str, Option<&str>, Vec<u8>, Class)> = vec![
        ("malformed JSON", json, b"{\"event_type\": \"+credit\",".to_vec(), MALFORMED),
        ("trailing garbage", json, [&good[..], &b"}"[..]].concat(), MALFORMED),
        ("empty body", json, Vec::new(), MALFORMED),
        ("not UTF-8", json, b"{\"event_type\": \"\xff\"}".to_vec(), MALFORMED),
        ("10,000 nested arrays", json, "[".repeat(10_000).into_bytes(), MALFORMED),
        ("5,000 nested objects", json, "{\"a\":".repeat(5_000).into_bytes(), MALFORMED),
        ("wrong content type", Some("text/plain"), good.clone(), NOT_JSON),
        ("form content type", Some("application/x-www-form-urlencoded"), good.clone(), NOT_JSON),
        ("missing content type", None, good.clone(), NOT_JSON),
        ("body over 64 KiB", json, oversize, TOO_LARGE),
    ];
    let config_path = format!("/webhook-configs/{config}");
    for (method, path) in [
        (Method::POST, "/webhooks"),
        (Method::POST, "/webhook-configs"),
        (Method::PUT, config_path.as_str()),
    ] {
        for (case, content_type, body, class) in &cases {
            let answer = raw(&app, method.clone(), path, *content_type, body.clone()).await;
            assert_error(&answer, *class, None, &format!("{method} {path}: {case}"));
        }
    }
    assert_eq!(queue_rows(&app).await, 0);
    assert_eq!(config_rows(&app).await, 1);
    assert_eq!(app.get(&config_path).await.1["name"], "acme");

    // The same good body with the right content type (parameters allowed) is accepted.
    let content_type = Some("application/json; charset=utf-8");
    let answer = raw(&app, Method::POST, "/webhooks", content_type, good).await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_growing_past_64_kib_is_413_without_a_declared_length() {
    let app = spawn(Options::default()).await;
    let config = app.config("acme", "http://h/pb", "http://h/cb").await;
    let body = |pad: usize| {
        json!({"event_type": "+credit", "config_id": config, "url_params": {"pad": "x".repeat(pad)}})
            .to_string()
            .into_bytes()
    };
    let answer = raw_http(&app, chunked_post("/webhooks", &body(80 * 1024))).await;
    assert_error(&answer, TOO_LARGE, None, "chunked body over 64 KiB");
    assert_eq!(queue_rows(&app).await, 0);
    // The same way of sending, under the limit, is read (and judged on its content).
    let answer = raw_http(&app, chunked_post("/webhooks", &body(40 * 1024))).await;
    assert_error(
        &answer,
        INVALID,
        Some("url_params.pad"),
        "chunked body of 40 KiB",
    );
    let answer = raw_http(&app, chunked_post("/webhooks", &body(10))).await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    assert_eq!(queue_rows(&app).await, 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_the_same_event_returns_200_with_the_same_queue_id_and_creates_nothing() {
    let (app, config) = api_with_acme().await;
    let body = json!({"event_type": "+credit", "event_id": "tx_1", "config_id": config,
                      "url_params": {"user_id": "u1", "value": 100}});

    let (status, first) = app.post("/webhooks", body.clone()).await;
    assert_eq!(status, 201, "{first}");
    // Same fields in another order are the same event.
    let reordered = json!({"url_params": {"value": 100, "user_id": "u1"}, "config_id": config,
                           "event_id": "tx_1", "event_type": "+credit"});
    for again in [body.clone(), reordered] {
        let (status, second) = app.post("/webhooks", again).await;
        assert_eq!(status, 200, "{second}");
        assert_eq!(second, first, "the existing entry comes back unchanged");
    }
    assert_eq!(queue_rows(&app).await, 1);

    // The same key with other parameters is a conflict, and the row is untouched.
    for other_params in [
        json!({"user_id": "u1", "value": 101}),
        json!({"user_id": "u1", "value": "100"}),
        json!({"user_id": "u1"}),
    ] {
        let mut conflicting = body.clone();
        conflicting["url_params"] = other_params.clone();
        let answer = app.post("/webhooks", conflicting).await;
        assert_error(
            &answer,
            CONFLICT,
            None,
            &format!("url_params {other_params}"),
        );
    }
    assert_eq!(queue_rows(&app).await, 1);
    let (_, stored) = app.get(&format!("/webhooks/{}", queue_id(&first))).await;
    assert_eq!(stored["url_params"], body["url_params"]);

    // The key is (config_id, event_type, event_id): another type or config is another event.
    let other = app
        .config("other", "http://h/pb?uid={user_id}", "http://h/cb")
        .await;
    let mut debit = body.clone();
    debit["event_type"] = json!("-debit");
    let debit = app.submit(debit).await;
    let mut elsewhere = body.clone();
    elsewhere["config_id"] = json!(other);
    let elsewhere = app.submit(elsewhere).await;
    let distinct: BTreeSet<String> = [&first, &debit, &elsewhere]
        .into_iter()
        .map(queue_id)
        .collect();
    assert_eq!(distinct.len(), 3);
    assert_eq!(queue_rows(&app).await, 3);

    // A producer retrying after the config was replaced or deactivated still gets its entry
    // (which is still delivered), not an error that suggests it was refused.
    let config_path = format!("/webhook-configs/{config}");
    let replacement = json!({"name": "acme", "postback_url": "http://h/v2?sig={signature}"});
    assert_eq!(put(&app, &config_path, replacement).await.0, 200);
    assert_eq!(delete(&app, &config_path).await.0, 200);
    let (status, retried) = app.post("/webhooks", body.clone()).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried, first);
    let mut conflicting = body.clone();
    conflicting["url_params"] = json!({"user_id": "u2"});
    let answer = app.post("/webhooks", conflicting).await;
    assert_error(
        &answer,
        CONFLICT,
        None,
        "other url_params after deactivation",
    );
    let answer = Event::u1_credit("new-event", config).post(&app).await;
    assert_error(
        &answer,
        INVALID,
        Some("config_id"),
        "a new event after deactivation",
    );
    assert_eq!(queue_rows(&app).await, 3);

    // Without an event_id every submit is a new event.
    let anonymous =
        json!({"event_type": "+credit", "config_id": other, "url_params": {"user_id": "u1"}});
    let a = app.submit(anonymous.clone()).await;
    let b = app.submit(anonymous).await;
    assert_ne!(queue_id(&a), queue_id(&b));
    assert_eq!(queue_rows(&app).await, 5);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_submits_create_exactly_one_row() {
    let (app, config) = api_with_acme().await;
    for round in 0..3 {
        let body = Event::u1_credit(&format!("race-{round}"), config).body();
        let submits = (0..10).map(|_| app.post("/webhooks", body.clone()));
        let answers = futures_util::future::join_all(submits).await;
        let created = answers.iter().filter(|(status, _)| *status == 201).count();
        let existing = answers.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!((created, existing), (1, 9), "round {round}: {answers:?}");
        let ids: BTreeSet<String> = answers.iter().map(|(_, entry)| queue_id(entry)).collect();
        assert_eq!(
            ids.len(),
            1,
            "round {round}: every answer names the same entry: {ids:?}"
        );
        let sql = format!("SELECT count(*) FROM webhook_queue WHERE event_id = 'race-{round}'");
        assert_eq!(app.db.count(&sql).await, 1, "round {round}");
    }
    let (_, stats) = app.get("/webhooks/stats").await;
    assert_eq!(stats["by_status"]["pending"], 3);
    assert_eq!(stats["total"], 3);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_submits_each_get_the_answer_they_would_get_alone() {
    // Single submits that arrive together share one insert statement; each must still be
    // answered as if it had come alone: created, invalid, or a conflict on a reused event id.
    let (app, config) = api_with_acme().await;
    let inactive = deactivated(&app, "gone").await;
    let mut cases: Vec<(Value, &str)> = (0..30)
        .map(|i| {
            (
                Event::u1_credit(&format!("own-{i}"), config).body(),
                "created",
            )
        })
        .collect();
    cases.push((Event::u1_credit("to-inactive", inactive).body(), "invalid"));
    cases.push((
        json!({"event_type": "+credit", "event_id": "no-user", "config_id": config, "url_params": {}}),
        "invalid",
    ));
    // One event id with two different parameter sets: one wins, the other is a conflict.
    cases.push((Event::u1_credit("twice", config).body(), "pair"));
    cases.push((
        json!({"event_type": "+credit", "event_id": "twice", "config_id": config,
               "url_params": {"user_id": "someone-else"}}),
        "pair",
    ));
    let answers = futures_util::future::join_all(
        cases
            .iter()
            .map(|(body, _)| app.post("/webhooks", body.clone())),
    )
    .await;
    let mut pair = Vec::new();
    for ((body, expect), (status, answer)) in cases.iter().zip(&answers) {
        match *expect {
            "created" => {
                assert_eq!(*status, 201, "{body} -> {answer}");
                assert_eq!(
                    answer["event_id"], body["event_id"],
                    "answer belongs to its request"
                );
            }
            "invalid" => assert_eq!(*status, 422, "{body} -> {answer}"),
            _ => pair.push(*status),
        }
    }
    pair.sort();
    assert_eq!(pair, vec![201, 409], "{answers:?}");
    assert_eq!(queue_rows(&app).await, 31);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_event_in_order_with_the_same_rules_as_single_submits() {
    let app = spawn(Options::default()).await;
    let postback = "http://127.0.0.1:1/pb?u={user_id}";
    let config = app.config("batch", postback, "http://127.0.0.1:1/cb").await;
    // An event submitted before the batch, to be repeated inside it.
    let earlier = app.submit(Event::u1_credit("before", config).body()).await;
    let events = json!([
        {"event_type": "+credit", "event_id": "b1", "config_id": config, "url_params": {"user_id": "u 1"}},
        {"event_type": "bogus", "event_id": "b2", "config_id": config},
        {"event_type": "+credit", "event_id": "b1", "config_id": config, "url_params": {"user_id": "u 1"}},
        {"event_type": "+credit", "event_id": "b1", "config_id": config, "url_params": {"user_id": "other"}},
        {"event_type": "+credit", "event_id": "b3", "config_id": 999_999, "url_params": {"user_id": "x"}},
        {"event_type": "+credit", "event_id": "b4", "config_id": config, "url_params": {}},
        Event::u1_credit("before", config).body(),
        {"event_type": "-debit", "config_id": config, "unknown": 1},
        {"event_type": "-debit", "config_id": config},
    ]);
    let (status, body) = app
        .post("/webhooks/batch", json!({ "events": events }))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 422, 200, 409, 422, 422, 200, 422, 201]);
    assert_eq!(
        results[0]["entry"]["webhook_url"],
        "http://127.0.0.1:1/pb?u=u%201"
    );
    assert_eq!(
        results[2]["entry"]["queue_id"],
        results[0]["entry"]["queue_id"]
    );
    assert_eq!(results[6]["entry"]["queue_id"], earlier["queue_id"]);
    assert_eq!(results[1]["error"]["field"], "event_type");
    assert_eq!(results[3]["error"]["code"], "conflict");
    assert_eq!(results[4]["error"]["field"], "config_id");
    assert_eq!(results[5]["error"]["field"], "url_params.user_id");
    assert_eq!(results[7]["error"]["field"], "unknown");
    // Only the two new events were written, besides the earlier one.
    assert_eq!(queue_rows(&app).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_cannot_be_read_is_refused_whole_and_writes_nothing() {
    let app = spawn(Options::default()).await;
    let (postback, chargeback) = ("http://127.0.0.1:1/pb", "http://127.0.0.1:1/cb");
    let config = app.config("batch", postback, chargeback).await;
    let many: Vec<Value> = (0..1001)
        .map(|i| Event::u1_credit(&format!("m{i}"), config).body())
        .collect();
    let cases = [
        (json!({"events": []}), "events"),
        (json!({"events": many}), "events"),
        (json!({"events": {"a": 1}}), "events"),
        (json!({}), "events"),
        (
            json!({"events": [Event::u1_credit("x", config).body()], "extra": true}),
            "extra",
        ),
    ];
    for (body, field) in cases {
        let answer = app.post("/webhooks/batch", body).await;
        assert_error(&answer, INVALID, Some(field), field);
    }
    let huge = json!({"events": [{"event_type": "+credit", "config_id": config,
        "url_params": {"v": "x".repeat(1024 * 1024)}}]});
    let answer = raw(
        &app,
        Method::POST,
        "/webhooks/batch",
        Some("application/json"),
        huge.to_string().into_bytes(),
    )
    .await;
    assert_error(&answer, TOO_LARGE, None, "over 1 MiB");
    assert_eq!(queue_rows(&app).await, 0);
    // A full batch of 1,000 is accepted in one go.
    let thousand: Vec<Value> = (0..1000)
        .map(|i| Event::u1_credit(&format!("t{i}"), config).body())
        .collect();
    let (status, body) = app
        .post("/webhooks/batch", json!({ "events": thousand }))
        .await;
    assert_eq!(status, 200);
    assert!(body["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == 201));
    assert_eq!(queue_rows(&app).await, 1000);
}

/// The one result of a batch of one event.
async fn batch_of_one(app: &TestApp, event: Value) -> Value {
    let (status, body) = app
        .post("/webhooks/batch", json!({ "events": [event] }))
        .await;
    assert_eq!(status, 200, "{body}");
    body["results"][0].clone()
}

/// The API keeps copies of configs (one statement per submit instead of two); a change made
/// behind its back — by hand here, as by another API process — must apply to the very next
/// submit, single or batched, and a refusal must never come from a stale copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_changed_by_hand_applies_to_the_next_submit() {
    let app = spawn(Options::default()).await;
    let postback = "http://127.0.0.1:1/old?u={user_id}";
    let config = app.config("hand", postback, "http://127.0.0.1:1/cb").await;
    let db = app.db.client().await;
    let url_of = |entry: &Value| entry["webhook_url"].as_str().unwrap().to_string();
    // A single and a batched submit, and the URLs they were queued with.
    let both_routes = |tag: &'static str| {
        let app = &app;
        async move {
            let single = app
                .submit(Event::u1_credit(&format!("{tag}1"), config).body())
                .await;
            let batched =
                batch_of_one(app, Event::u1_credit(&format!("{tag}2"), config).body()).await;
            [url_of(&single), url_of(&batched["entry"])]
        }
    };

    // Both routes now hold a copy of the config.
    assert_eq!(both_routes("a").await, ["http://127.0.0.1:1/old?u=u1"; 2]);

    let moved = "UPDATE webhook_configs SET postback_url = 'http://127.0.0.1:1/new?u={user_id}' WHERE id = $1";
    db.execute(moved, &[&config]).await.unwrap();
    assert_eq!(both_routes("b").await, ["http://127.0.0.1:1/new?u=u1"; 2]);

    // Deactivated by hand: refused, and nothing written.
    db.execute(
        "UPDATE webhook_configs SET is_active = false WHERE id = $1",
        &[&config],
    )
    .await
    .unwrap();
    let rows = queue_rows(&app).await;
    let refused = Event::u1_credit("c1", config).post(&app).await;
    assert_error(&refused, INVALID, Some("config_id"), "deactivated by hand");
    let refused = batch_of_one(&app, Event::u1_credit("c2", config).body()).await;
    assert_eq!(refused["status"], 422, "{refused}");
    assert_eq!(refused["error"]["field"], "config_id");
    assert_eq!(queue_rows(&app).await, rows);

    // Active again, now with a template that needs one more parameter: the copy that refused
    // is not trusted, the fresh config decides.
    db.execute(
        "UPDATE webhook_configs SET is_active = true,
             postback_url = 'http://127.0.0.1:1/new?u={user_id}&t={token}' WHERE id = $1",
        &[&config],
    )
    .await
    .unwrap();
    let refused = Event::u1_credit("d1", config).post(&app).await;
    assert_error(
        &refused,
        INVALID,
        Some("url_params.token"),
        "template changed by hand",
    );
    let entry = app
        .submit(
            json!({"event_type": "+credit", "event_id": "d2", "config_id": config,
                       "url_params": {"user_id": "u1", "token": "t1"}}),
        )
        .await;
    assert_eq!(url_of(&entry), "http://127.0.0.1:1/new?u=u1&t=t1");
    assert_eq!(queue_rows(&app).await, rows + 1);
}
