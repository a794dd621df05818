//! The HTTP API against a real PostgreSQL (SPEC §5): each route's success, every class of bad
//! input answered with the right status and error shape and no row written, idempotent
//! submits, keyset pagination, statistics that agree with the rows and with `webhookd stats`,
//! and `/health` following the database away and back.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{spawn, Options, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

const STATUSES: [&str; 4] = ["pending", "processing", "completed", "failed"];
const EVENT_TYPES: [&str; 2] = ["+credit", "-debit"];

/// An error class of SPEC §5: the HTTP status and `error.code`.
type Class = (u16, &'static str);
const MALFORMED: Class = (400, "malformed_request");
const UNAUTHORIZED: Class = (401, "unauthorized");
const NOT_FOUND: Class = (404, "not_found");
const CONFLICT: Class = (409, "conflict");
const TOO_LARGE: Class = (413, "payload_too_large");
const NOT_JSON: Class = (415, "unsupported_media_type");
const INVALID: Class = (422, "validation_failed");
const UNAVAILABLE: Class = (503, "unavailable");

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Asserts an error answer of `class` whose body is exactly
/// `{"error": {"code", "message", "field"}}`, with `field` absent when `None`.
#[track_caller]
fn assert_error(answer: &(u16, Value), class: Class, field: Option<&str>, case: &str) {
    let (status, body) = answer;
    let (expected_status, code) = class;
    assert_eq!(*status, expected_status, "{case}: status; body {body}");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "{case}: only \"error\": {body}"
    );
    let error = &body["error"];
    assert_eq!(error["code"], code, "{case}: code; body {body}");
    let message = error["message"].as_str();
    assert!(
        message.is_some_and(|m| !m.is_empty()),
        "{case}: a message; body {body}"
    );
    match field {
        Some(field) => assert_eq!(error["field"], field, "{case}: field; body {body}"),
        None => assert!(
            error.get("field").is_none(),
            "{case}: no field; body {body}"
        ),
    }
}

async fn queue_rows(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM webhook_queue").await
}

async fn config_rows(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM webhook_configs").await
}

async fn delete(app: &TestApp, path: &str) -> (u16, Value) {
    app.send(Method::DELETE, path, None).await
}

async fn put(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.send(Method::PUT, path, Some(body)).await
}

/// A request with a body of our choosing and an optional Content-Type.
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = app.http.request(method, app.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let response = request.send().await.expect("API answers");
    (response.status().as_u16(), json_of(response).await)
}

/// A response body as JSON (`Null` when it is not).
async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null)
}

/// Sends a whole HTTP/1.1 request over a plain TCP connection (for what reqwest will not send,
/// such as a chunked body of our making) and returns the answer's status and JSON body.
async fn raw_http(app: &TestApp, request: Vec<u8>) -> (u16, Value) {
    let addr = app.base.trim_start_matches("http://").to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The server may answer and stop reading before the request ends; that is its right.
        let _ = stream.write_all(&request);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

/// A POST of `body` with `Transfer-Encoding: chunked` (no Content-Length), in 16 KiB chunks.
fn chunked_post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(16 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

fn queue_id(entry: &Value) -> String {
    entry["queue_id"]
        .as_str()
        .expect("entry has a queue_id")
        .to_string()
}

/// The `queue_id`s of a listing, in the order given.
fn ids_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("a page has items")
        .iter()
        .map(queue_id)
        .collect()
}

/// A credit for `config` with the given event id and a `user_id` parameter.
fn credit(config: i64, event_id: &str) -> Value {
    json!({"event_type": "+credit", "event_id": event_id, "config_id": config,
           "url_params": {"user_id": "u1"}})
}

#[track_caller]
fn assert_rfc3339_utc(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string: {value}"));
    assert!(text.ends_with('Z'), "{what} is UTC: {text}");
    if let Err(e) = chrono::DateTime::parse_from_rfc3339(text) {
        panic!("{what} is RFC 3339 ({e}): {text}");
    }
}

/// Sets columns of the rows with the given queue ids, as a worker (or an operator) would.
async fn update_rows(app: &TestApp, set: &str, queue_ids: &[&String]) {
    let ids: Vec<String> = queue_ids.iter().map(|s| s.to_string()).collect();
    let sql = format!("UPDATE webhook_queue SET {set} WHERE queue_id::text = ANY($1::text[])");
    let updated = app.db.client().await.execute(&sql, &[&ids]).await.unwrap();
    assert_eq!(updated as usize, ids.len(), "{sql}");
}

/// Runs the built `webhookd` binary with `args`; returns exit success, stdout and stderr.
async fn webhookd(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"))
            .args(&args)
            .env("LOG_LEVEL", "error")
            .env_remove("DATABASE_URL")
            .env_remove("WEBHOOKD_CONFIG")
            .output()
            .expect("webhookd runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_created_read_listed_replaced_and_deactivated() {
    let app = spawn(Options::default()).await;

    let (status, created) = app
        .post(
            "/webhook-configs",
            json!({"name": "acme", "postback_url": "http://127.0.0.1:9/pb?uid={user_id}",
                   "chargeback_url": "http://127.0.0.1:9/cb", "max_retries": 3}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("an integer id");
    assert_eq!(created["name"], "acme");
    assert_eq!(
        created["postback_url"],
        "http://127.0.0.1:9/pb?uid={user_id}"
    );
    assert_eq!(created["chargeback_url"], "http://127.0.0.1:9/cb");
    assert_eq!(created["max_retries"], 3);
    assert_eq!(created["is_active"], true);
    assert_rfc3339_utc(&created["created_at"], "created_at");
    assert_rfc3339_utc(&created["updated_at"], "updated_at");
    let path = format!("/webhook-configs/{id}");

    let (status, read) = app.get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);

    let other = app
        .config("other", "http://127.0.0.1:9/o", "http://127.0.0.1:9/o")
        .await;
    let (status, list) = app.get("/webhook-configs").await;
    assert_eq!(status, 200);
    let items = list["items"].as_array().unwrap();
    let listed: Vec<i64> = items.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(listed, [id, other]);
    assert_eq!(items[0], created);
    assert!(list["next_cursor"].is_null());

    // PUT replaces the whole config: fields left out become null or their default.
    let replacement = json!({"name": "acme-2", "postback_url": "https://p.example/pb"});
    let (status, replaced) = put(&app, &path, replacement).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["id"], id);
    assert_eq!(replaced["name"], "acme-2");
    assert_eq!(replaced["postback_url"], "https://p.example/pb");
    assert!(replaced["chargeback_url"].is_null());
    assert!(replaced["max_retries"].is_null());
    assert_eq!(replaced["is_active"], true);
    assert_eq!(replaced["created_at"], created["created_at"]);
    assert_eq!(app.get(&path).await.1, replaced);
    // ... so it takes no more chargebacks.
    let debit = json!({"event_type": "-debit", "config_id": id});
    let answer = app.post("/webhooks", debit).await;
    assert_error(&answer, INVALID, Some("event_type"), "debit after replace");

    // A name is unique, on create and on replace.
    let before = config_rows(&app).await;
    let taken = json!({"name": "acme-2", "postback_url": "http://127.0.0.1:9/x"});
    let answer = app.post("/webhook-configs", taken.clone()).await;
    assert_error(&answer, CONFLICT, None, "create with a taken name");
    let answer = put(&app, &format!("/webhook-configs/{other}"), taken).await;
    assert_error(&answer, CONFLICT, None, "replace with a taken name");
    assert_eq!(config_rows(&app).await, before);
    assert_eq!(
        app.get(&format!("/webhook-configs/{other}")).await.1["name"],
        "other"
    );

    // DELETE deactivates: the row stays, and it accepts no new events.
    let (status, deactivated) = delete(&app, &path).await;
    assert_eq!(status, 200, "{deactivated}");
    assert_eq!(deactivated["is_active"], false);
    assert_eq!(app.get(&path).await.1["is_active"], false);
    assert_eq!(config_rows(&app).await, before);
    let answer = app
        .post("/webhooks", credit(id, "after-deactivation"))
        .await;
    assert_error(
        &answer,
        INVALID,
        Some("config_id"),
        "submit to a deactivated config",
    );
    assert_eq!(queue_rows(&app).await, 0);

    // PUT with is_active true brings it back.
    let revival =
        json!({"name": "acme-2", "postback_url": "https://p.example/pb", "is_active": true});
    let (status, revived) = put(&app, &path, revival).await;
    assert_eq!((status, &revived["is_active"]), (200, &json!(true)));
    app.submit(credit(id, "revived")).await;

    for method in [Method::GET, Method::DELETE] {
        let answer = app
            .send(method.clone(), "/webhook-configs/999999", None)
            .await;
        assert_error(
            &answer,
            NOT_FOUND,
            None,
            &format!("{method} unknown config"),
        );
    }
    let replacement = json!({"name": "x", "postback_url": "http://127.0.0.1/"});
    let answer = put(&app, "/webhook-configs/999999", replacement).await;
    assert_error(&answer, NOT_FOUND, None, "PUT unknown config");
    assert_eq!(config_rows(&app).await, before);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_422_naming_the_field_and_write_nothing() {
    let app = spawn(Options::default()).await;
    let existing = app
        .config("existing", "http://127.0.0.1:9/pb", "http://127.0.0.1:9/cb")
        .await;
    let existing_path = format!("/webhook-configs/{existing}");
    let (_, existing_before) = app.get(&existing_path).await;
    let ok = "http://127.0.0.1:9/ok";
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, &str)> = vec![
        ("ftp scheme", json!({"name": "a", "postback_url": "ftp://p.example/pb"}), "postback_url"),
        ("javascript scheme", json!({"name": "a", "postback_url": "javascript:alert(1)"}), "postback_url"),
        ("bad chargeback scheme", json!({"name": "a", "postback_url": ok, "chargeback_url": "file:///etc/passwd"}), "chargeback_url"),
        ("no host", json!({"name": "a", "postback_url": "http:///pb"}), "postback_url"),
        ("placeholder in host", json!({"name": "a", "postback_url": "http://{host}/pb"}), "postback_url"),
        ("placeholder in port", json!({"name": "a", "postback_url": "http://p.example:{port}/pb"}), "postback_url"),
        ("unclosed placeholder", json!({"name": "a", "postback_url": "http://p.example/pb?u={user_id"}), "postback_url"),
        ("private address", json!({"name": "a", "postback_url": "http://10.0.0.1/x"}), "postback_url"),
        ("metadata address", json!({"name": "a", "postback_url": ok, "chargeback_url": "http://169.254.169.254/"}), "chargeback_url"),
        ("private IPv6 address", json!({"name": "a", "postback_url": "http://[fd00::1]/x"}), "postback_url"),
        ("IPv4-mapped private address", json!({"name": "a", "postback_url": "http://[::ffff:192.168.1.1]/x"}), "postback_url"),
        ("no URL at all", json!({"name": "a"}), "postback_url"),
        ("URL not a string", json!({"name": "a", "postback_url": 7}), "postback_url"),
        ("max_retries -1", json!({"name": "a", "postback_url": ok, "max_retries": -1}), "max_retries"),
        ("max_retries 7", json!({"name": "a", "postback_url": ok, "max_retries": 7}), "max_retries"),
        ("max_retries text", json!({"name": "a", "postback_url": ok, "max_retries": "3"}), "max_retries"),
        ("max_retries fraction", json!({"name": "a", "postback_url": ok, "max_retries": 1.5}), "max_retries"),
        ("missing name", json!({"postback_url": ok}), "name"),
        ("blank name", json!({"name": "  ", "postback_url": ok}), "name"),
        ("is_active not a bool", json!({"name": "a", "postback_url": ok, "is_active": "yes"}), "is_active"),
        ("unknown field", json!({"name": "a", "postback_url": ok, "secret_sauce": 1}), "secret_sauce"),
        // PostgreSQL text cannot hold U+0000: refused up front, not a 500 from the database.
        ("NUL in the name", json!({"name": "a\u{0}b", "postback_url": ok}), "name"),
        ("NUL in a URL", json!({"name": "a", "postback_url": "http://h/x\u{0}y"}), "postback_url"),
    ];
    for (case, body, field) in cases {
        let answer = app.post("/webhook-configs", body.clone()).await;
        assert_error(&answer, INVALID, Some(field), &format!("POST {case}"));
        let answer = put(&app, &existing_path, body).await;
        assert_error(&answer, INVALID, Some(field), &format!("PUT {case}"));
        assert_eq!(config_rows(&app).await, 1, "{case}: no row written");
    }
    let answer = app
        .post("/webhook-configs", json!(["not", "an", "object"]))
        .await;
    assert_error(&answer, INVALID, None, "array body");
    assert_eq!(config_rows(&app).await, 1);
    assert_eq!(
        app.get(&existing_path).await.1,
        existing_before,
        "PUTs changed nothing"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_address_is_accepted_when_outbound_allow_networks_covers_it() {
    let options = Options::default().env("OUTBOUND_ALLOW_NETWORKS", "10.0.0.0/8, 127.0.0.0/8");
    let app = spawn(options).await;
    app.config("internal", "http://10.1.2.3/pb", "http://127.0.0.1:9/cb")
        .await;
    let metadata = json!({"name": "meta", "postback_url": "http://169.254.169.254/"});
    let answer = app.post("/webhook-configs", metadata).await;
    assert_error(&answer, INVALID, Some("postback_url"), "metadata address");
    assert_eq!(config_rows(&app).await, 1);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Submitting and reading entries
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_answers_201_with_the_entry_and_the_partner_url_built_per_spec() {
    let app = spawn(Options::default()).await;
    let config = app
        .config(
            "acme",
            "http://h/pb?src=net&uid={user_id}",
            "http://h/cb/{event_id}",
        )
        .await;

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
    let entry = app.submit(credit(config, "e1")).await;
    update_rows(
        &app,
        "status = 'completed', retry_count = 1, completed_at = now(),
         retry_0_started_at = now(), retry_0_completed_at = now(), retry_0_duration_ms = 31,
         retry_0_http_status = 503, retry_0_response_body = 'busy', retry_0_error = 'HTTP 503',
         retry_1_started_at = now(), retry_1_completed_at = now(), retry_1_duration_ms = 9,
         retry_1_http_status = 200, retry_1_response_body = 'ok'",
        &[&queue_id(&entry)],
    )
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
    let app = spawn(Options::default()).await;
    let config = app
        .config("acme", "http://h/pb?uid={user_id}", "http://h/cb")
        .await;
    let credit_only = json!({"name": "credit-only", "postback_url": "http://h/pb"});
    let credit_only = app.post("/webhook-configs", credit_only).await.1["id"]
        .as_i64()
        .unwrap();
    let inactive = app.config("inactive", "http://h/pb", "http://h/cb").await;
    assert_eq!(
        delete(&app, &format!("/webhook-configs/{inactive}"))
            .await
            .0,
        200
    );
    // One accepted row, so "nothing written" is not just "the table is empty".
    app.submit(credit(config, "accepted")).await;
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
async fn malformed_ids_in_the_path_are_400_and_unknown_ids_404() {
    let app = spawn(Options::default()).await;
    let config = app.config("acme", "http://h/pb", "http://h/cb").await;
    let replacement = json!({"name": "x", "postback_url": "http://h/x"});
    #[rustfmt::skip]
    let malformed: Vec<(Method, &str, Option<Value>, &str)> = vec![
        (Method::GET, "/webhooks/not-a-uuid", None, "queue_id"),
        (Method::DELETE, "/webhooks/not-a-uuid", None, "queue_id"),
        (Method::GET, "/webhooks/123", None, "queue_id"),
        (Method::GET, "/webhook-configs/abc", None, "id"),
        (Method::GET, "/webhook-configs/1.5", None, "id"),
        (Method::GET, "/webhook-configs/99999999999999999999", None, "id"),
        (Method::PUT, "/webhook-configs/abc", Some(replacement), "id"),
        (Method::DELETE, "/webhook-configs/abc", None, "id"),
    ];
    for (method, path, body, field) in malformed {
        let answer = app.send(method.clone(), path, body).await;
        assert_error(&answer, MALFORMED, Some(field), &format!("{method} {path}"));
    }
    let unknown = uuid::Uuid::new_v4();
    for method in [Method::GET, Method::DELETE] {
        let answer = app
            .send(method.clone(), &format!("/webhooks/{unknown}"), None)
            .await;
        assert_error(
            &answer,
            NOT_FOUND,
            None,
            &format!("{method} unknown queue_id"),
        );
    }
    assert_eq!(queue_rows(&app).await, 0);
    assert_eq!(
        app.get(&format!("/webhook-configs/{config}")).await.1["name"],
        "acme"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_with_the_error_shape() {
    let app = spawn(Options::default()).await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (
            Method::POST,
            "/webhooks/123e4567-e89b-12d3-a456-426614174000/nope",
        ),
        (Method::GET, "/webhook-configs/1/extra"),
        // A known path with another method is a 405 now (issue 18):
        // `a_known_path_asked_with_another_method_is_405_with_allow`.
    ] {
        let answer = app.send(method.clone(), path, None).await;
        assert_error(&answer, NOT_FOUND, None, &format!("{method} {path}"));
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bearer_token_every_route_but_health_is_401() {
    let app = spawn(Options::default().env("API_TOKEN", "s3cret-token")).await;
    let body = json!({"name": "acme", "postback_url": "http://h/pb"}).to_string();
    let create = |authorization: Option<&str>| {
        let mut request = app
            .http
            .post(app.url("/webhook-configs"))
            .header("Content-Type", "application/json")
            .body(body.clone());
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        request.send()
    };
    for (case, authorization) in [
        ("no token", None),
        ("wrong token", Some("Bearer nope")),
        ("not bearer", Some("Basic s3cret-token")),
    ] {
        let response = create(authorization).await.unwrap();
        let challenge = response
            .headers()
            .get("WWW-Authenticate")
            .map(|v| v.to_str().unwrap());
        assert_eq!(challenge, Some("Bearer"), "{case}");
        let answer = (response.status().as_u16(), json_of(response).await);
        assert_error(&answer, UNAUTHORIZED, None, case);
    }
    assert_eq!(config_rows(&app).await, 0);
    assert_eq!(app.get("/health").await.0, 200);
    assert_error(
        &app.get("/webhooks/stats").await,
        UNAUTHORIZED,
        None,
        "stats",
    );
    let response = create(Some("Bearer s3cret-token")).await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(config_rows(&app).await, 1);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_the_same_event_returns_200_with_the_same_queue_id_and_creates_nothing() {
    let app = spawn(Options::default()).await;
    let config = app
        .config("acme", "http://h/pb?uid={user_id}", "http://h/cb")
        .await;
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
    let answer = app.post("/webhooks", credit(config, "new-event")).await;
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
    let app = spawn(Options::default()).await;
    let config = app
        .config("acme", "http://h/pb?uid={user_id}", "http://h/cb")
        .await;
    for round in 0..3 {
        let body = credit(config, &format!("race-{round}"));
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
    let app = spawn(Options::default()).await;
    let config = app
        .config("acme", "http://h/pb?uid={user_id}", "http://h/cb")
        .await;
    let inactive = app.config("gone", "http://h/pb", "http://h/cb").await;
    assert_eq!(
        delete(&app, &format!("/webhook-configs/{inactive}"))
            .await
            .0,
        200
    );
    let mut cases: Vec<(Value, &str)> = (0..30)
        .map(|i| (credit(config, &format!("own-{i}")), "created"))
        .collect();
    cases.push((credit(inactive, "to-inactive"), "invalid"));
    cases.push((
        json!({"event_type": "+credit", "event_id": "no-user", "config_id": config, "url_params": {}}),
        "invalid",
    ));
    // One event id with two different parameter sets: one wins, the other is a conflict.
    cases.push((credit(config, "twice"), "pair"));
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

// ---------------------------------------------------------------------------------------------
// Listing, pagination and cancelling
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_filters_by_status_event_type_config_creation_time_and_cancellation() {
    let app = spawn(Options::default()).await;
    let a = app.config("a", "http://h/pb", "http://h/cb").await;
    let b = app.config("b", "http://h/pb", "http://h/cb").await;
    let mut submitted = Vec::new();
    for (event_type, config) in [
        ("+credit", a),
        ("+credit", a),
        ("-debit", a),
        ("+credit", b),
        ("+credit", b),
    ] {
        let entry = app
            .submit(json!({"event_type": event_type, "config_id": config}))
            .await;
        submitted.push(queue_id(&entry));
    }
    let [a1, a2, a3, b1, b2] = &submitted[..] else {
        unreachable!()
    };
    update_rows(&app, "status = 'completed', completed_at = now()", &[a2]).await;
    update_rows(&app, "created_at = '2020-01-01T00:00:00Z'", &[a1]).await;
    assert_eq!(delete(&app, &format!("/webhooks/{b2}")).await.0, 200);

    #[rustfmt::skip]
    let cases: Vec<(String, Vec<&String>)> = vec![
        (String::new(), vec![b2, b1, a3, a2, a1]),
        ("status=completed".into(), vec![a2]),
        ("status=pending".into(), vec![b2, b1, a3, a1]),
        ("status=pending&cancelled=false".into(), vec![b1, a3, a1]),
        ("status=failed".into(), vec![]),
        ("cancelled=true".into(), vec![b2]),
        ("event_type=%2Bcredit".into(), vec![b2, b1, a2, a1]),
        ("event_type=-debit".into(), vec![a3]),
        (format!("config_id={b}"), vec![b2, b1]),
        (format!("config_id={a}&event_type=%2Bcredit&status=pending"), vec![a1]),
        ("created_before=2021-01-01T00:00:00Z".into(), vec![a1]),
        ("created_after=2021-01-01T00:00:00Z".into(), vec![b2, b1, a3, a2]),
        ("created_after=2019-12-31T23:00:00%2B00:00&created_before=2020-01-02T00:00:00Z".into(), vec![a1]),
        ("config_id=999999".into(), vec![]),
    ];
    for (query, expected) in cases {
        let (status, page) = app.get(&format!("/webhooks?{query}")).await;
        assert_eq!(status, 200, "?{query}: {page}");
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(ids_of(&page), expected, "?{query}");
        assert!(page["next_cursor"].is_null(), "?{query}: {page}");
    }
    let (_, page) = app.get("/webhooks?cancelled=true").await;
    assert_rfc3339_utc(&page["items"][0]["cancelled_at"], "cancelled_at");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_listing_parameters_are_422_naming_the_parameter() {
    let app = spawn(Options::default()).await;
    let config = app.config("acme", "http://h/pb", "http://h/cb").await;
    app.submit(json!({"event_type": "+credit", "config_id": config}))
        .await;
    for (query, field) in [
        ("status=done", "status"),
        ("status=", "status"),
        ("event_type=credit", "event_type"),
        ("event_type=+credit", "event_type"), // an unencoded + is a space
        ("config_id=abc", "config_id"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2020-01-01", "created_before"),
        ("cancelled=maybe", "cancelled"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("cursor=x", "cursor"),
        ("cursor=0", "cursor"),
        ("cursor=-5", "cursor"),
        ("sort=asc", "sort"),
    ] {
        let answer = app.get(&format!("/webhooks?{query}")).await;
        assert_error(&answer, INVALID, Some(field), &format!("?{query}"));
    }
    for query in ["limit=1", "limit=500"] {
        assert_eq!(
            app.get(&format!("/webhooks?{query}")).await.0,
            200,
            "?{query}"
        );
    }
    app.shutdown().await;
}

/// Every page of `/webhooks?{query}`, following `next_cursor` until it is null.
async fn walk(app: &TestApp, query: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut path = format!("/webhooks?{query}");
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        pages.push(ids_of(&page));
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/webhooks?{query}&cursor={next}"),
            None => return pages,
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_pages_visit_every_entry_once_newest_first_even_while_rows_arrive() {
    let app = spawn(Options::default()).await;
    let config = app
        .config("acme", "http://h/pb?uid={user_id}", "http://h/cb")
        .await;
    let mut originals = Vec::new();
    for n in 0..25 {
        originals.push(queue_id(
            &app.submit(credit(config, &format!("e{n}"))).await,
        ));
    }
    let newest_first: Vec<String> = originals.iter().rev().cloned().collect();

    // Follow next_cursor until it is null, submitting new rows between pages.
    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut path = "/webhooks?limit=10".to_string();
    let mut arrivals = 0;
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let ids = ids_of(&page);
        page_sizes.push(ids.len());
        seen.extend(ids);
        for _ in 0..3 {
            app.submit(credit(config, &format!("arrival-{arrivals}")))
                .await;
            arrivals += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/webhooks?limit=10&cursor={next}"),
            None => break,
        }
        assert!(
            page_sizes.len() < 10,
            "pagination does not end: {page_sizes:?}"
        );
    }
    assert_eq!(page_sizes, [10, 10, 5]);
    assert_eq!(
        seen, newest_first,
        "every original entry exactly once, newest first"
    );

    // A fresh walk sees the arrivals first, then the originals, each once.
    let all: Vec<String> = walk(&app, "limit=7").await.concat();
    assert_eq!(all.len(), 25 + arrivals);
    assert_eq!(
        all.iter().collect::<BTreeSet<_>>().len(),
        all.len(),
        "no entry twice"
    );
    assert_eq!(all[arrivals..], newest_first[..]);

    // Filters and cursor work together.
    let pages = walk(&app, &format!("config_id={config}&status=pending&limit=20")).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [20, 25 + arrivals - 20]);
    assert_eq!(pages.concat(), all);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_sets_cancelled_at_once_counts_under_cancelled_and_refuses_completed_entries() {
    let app = spawn(Options::default()).await;
    let config = app
        .config("acme", "http://h/pb?uid={user_id}", "http://h/cb")
        .await;
    let kept = queue_id(&app.submit(credit(config, "kept")).await);
    let doomed = queue_id(&app.submit(credit(config, "doomed")).await);
    let delivered = queue_id(&app.submit(credit(config, "delivered")).await);
    update_rows(
        &app,
        "status = 'completed', completed_at = now()",
        &[&delivered],
    )
    .await;

    let path = format!("/webhooks/{doomed}");
    let (status, cancelled) = delete(&app, &path).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(queue_id(&cancelled), doomed);
    assert_rfc3339_utc(&cancelled["cancelled_at"], "cancelled_at");
    assert_eq!(
        cancelled["status"], "pending",
        "the status stays what it was"
    );

    // Twice is fine and changes nothing.
    let (status, again) = delete(&app, &path).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["cancelled_at"], cancelled["cancelled_at"]);
    let (_, read) = app.get(&path).await;
    assert_eq!(read["cancelled_at"], cancelled["cancelled_at"]);
    let sql = format!(
        "SELECT count(*) FROM webhook_queue WHERE deleted_at IS NOT NULL AND queue_id = '{doomed}'"
    );
    assert_eq!(app.db.count(&sql).await, 1, "deleted_at is set on the row");

    // A delivered entry cannot be cancelled.
    let answer = delete(&app, &format!("/webhooks/{delivered}")).await;
    assert_error(&answer, CONFLICT, None, "cancel a completed entry");
    assert!(app.get(&format!("/webhooks/{delivered}")).await.1["cancelled_at"].is_null());

    // Stats count the cancelled entry apart from the statuses.
    let (_, stats) = app.get("/webhooks/stats").await;
    assert_eq!(stats["cancelled"], 1);
    let by_status = json!({"pending": 1, "processing": 0, "completed": 1, "failed": 0});
    assert_eq!(stats["by_status"], by_status);
    assert_eq!(stats["total"], 2);
    assert_eq!(stats["by_event_type"]["+credit"], by_status);
    assert!(app.get(&format!("/webhooks/{kept}")).await.1["cancelled_at"].is_null());
    assert_eq!(queue_rows(&app).await, 3);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/// Rows in every state, made as workers and the API make them, for the stats tests: 12 entries
/// over two configs; 4 completed (one after two failed attempts), 2 failed (one of them then
/// cancelled), 2 processing, 1 more cancelled, the rest pending (one of them an hour old).
async fn rows_in_every_state(app: &TestApp) {
    let alpha = app.config("alpha", "http://h/pb", "http://h/cb").await;
    let beta = json!({"name": "beta", "postback_url": "http://h/b"});
    let beta = app.post("/webhook-configs", beta).await.1["id"]
        .as_i64()
        .unwrap();
    let kinds = [(alpha, "+credit"); 6]
        .into_iter()
        .chain([(alpha, "-debit"); 3])
        .chain([(beta, "+credit"); 3]);
    let mut e = Vec::new();
    for (config, event_type) in kinds {
        let entry = app
            .submit(json!({"event_type": event_type, "config_id": config}))
            .await;
        e.push(queue_id(&entry));
    }
    update_rows(
        app,
        "status = 'completed', completed_at = now(), retry_0_started_at = now(),
         retry_0_completed_at = now(), retry_0_duration_ms = 12, retry_0_http_status = 200",
        &[&e[0], &e[1], &e[9]],
    )
    .await;
    update_rows(
        app,
        "status = 'completed', completed_at = now(), retry_count = 2,
         retry_0_started_at = now(), retry_0_completed_at = now(), retry_0_duration_ms = 40,
         retry_0_http_status = 500,
         retry_1_started_at = now(), retry_1_completed_at = now(), retry_1_duration_ms = 80,
         retry_1_error = 'timed out',
         retry_2_started_at = now(), retry_2_completed_at = now(), retry_2_duration_ms = 7,
         retry_2_http_status = 204",
        &[&e[6]],
    )
    .await;
    update_rows(
        app,
        "status = 'failed', max_retries = 1, retry_count = 1,
         retry_0_started_at = now(), retry_0_completed_at = now(), retry_0_duration_ms = 30,
         retry_0_http_status = 503,
         retry_1_started_at = now(), retry_1_completed_at = now(), retry_1_duration_ms = 55,
         retry_1_http_status = 500",
        &[&e[2], &e[7]],
    )
    .await;
    update_rows(
        app,
        "status = 'processing', worker_id = 'test-1', locked_at = now(),
         lock_expires_at = now() + interval '5 minutes', retry_0_started_at = now()",
        &[&e[3], &e[10]],
    )
    .await;
    update_rows(app, "created_at = now() - interval '1 hour'", &[&e[5]]).await;
    for cancelled in [&e[4], &e[7]] {
        assert_eq!(delete(app, &format!("/webhooks/{cancelled}")).await.0, 200);
    }
}

/// Live (not cancelled) rows of `webhook_queue` matching `condition`, by status, as an object
/// with all four statuses.
async fn status_counts(app: &TestApp, condition: &str) -> Value {
    let sql = format!(
        "SELECT status, count(*) FROM webhook_queue
         WHERE deleted_at IS NULL AND {condition} GROUP BY status"
    );
    let mut counts = json!({"pending": 0, "processing": 0, "completed": 0, "failed": 0});
    for row in app.db.client().await.query(&sql, &[]).await.unwrap() {
        counts[row.get::<_, String>(0)] = json!(row.get::<_, i64>(1));
    }
    counts
}

/// completed ÷ (completed + failed), null when both are 0.
fn success_rate(counts: &Value) -> Value {
    let completed = counts["completed"].as_i64().unwrap();
    let failed = counts["failed"].as_i64().unwrap();
    if completed + failed == 0 {
        Value::Null
    } else {
        json!(completed as f64 / (completed + failed) as f64)
    }
}

/// Every recorded attempt (a non-null `retry_N_completed_at`): its duration and whether the
/// partner answered 2xx.
async fn recorded_attempts(app: &TestApp) -> Vec<(i64, bool)> {
    let client = app.db.client().await;
    let mut all = Vec::new();
    for n in 0..=6 {
        let sql = format!(
            "SELECT coalesce(retry_{n}_duration_ms, 0),
                    coalesce(retry_{n}_http_status BETWEEN 200 AND 299, false)
             FROM webhook_queue WHERE retry_{n}_completed_at IS NOT NULL"
        );
        let rows = client.query(&sql, &[]).await.unwrap();
        all.extend(
            rows.iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, bool>(1))),
        );
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_of_an_empty_queue_have_every_key_and_nothing_counted() {
    let app = spawn(Options::default()).await;
    let (status, stats) = app.get("/webhooks/stats").await;
    assert_eq!(status, 200);
    let zeros = json!({"pending": 0, "processing": 0, "completed": 0, "failed": 0});
    assert_eq!(stats["total"], 0);
    assert_eq!(stats["by_status"], zeros);
    assert_eq!(stats["cancelled"], 0);
    assert_eq!(
        stats["by_event_type"],
        json!({"+credit": zeros, "-debit": zeros})
    );
    assert!(stats["success_rate"].is_null());
    assert!(stats["oldest_pending_age_seconds"].is_null());
    assert_eq!(stats["completed_last_minute"], 0);
    assert_eq!(stats["by_partner"], json!([]));
    let no_attempts = json!({"total": 0, "succeeded": 0, "failed": 0, "avg_duration_ms": null,
        "p50_duration_ms": null, "p95_duration_ms": null, "p99_duration_ms": null});
    assert_eq!(stats["attempts"], no_attempts);
    assert_rfc3339_utc(&stats["generated_at"], "generated_at");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_agree_with_the_rows() {
    let app = spawn(Options::default()).await;
    rows_in_every_state(&app).await;
    let (status, stats) = app.get("/webhooks/stats").await;
    assert_eq!(status, 200, "{stats}");
    let client = app.db.client().await;

    // Rows: by status, by event type, cancelled apart.
    let by_status = status_counts(&app, "true").await;
    let fixture = json!({"pending": 3, "processing": 2, "completed": 4, "failed": 1});
    assert_eq!(by_status, fixture, "the fixture");
    assert_eq!(stats["by_status"], by_status);
    let live = app
        .db
        .count("SELECT count(*) FROM webhook_queue WHERE deleted_at IS NULL")
        .await;
    assert_eq!(stats["total"], live);
    let sum: i64 = STATUSES
        .iter()
        .map(|s| by_status[s].as_i64().unwrap())
        .sum();
    assert_eq!(stats["total"], sum);
    let cancelled = app
        .db
        .count("SELECT count(*) FROM webhook_queue WHERE deleted_at IS NOT NULL")
        .await;
    assert_eq!(cancelled, 2, "the fixture");
    assert_eq!(stats["cancelled"], cancelled);
    for event_type in EVENT_TYPES {
        let expected = status_counts(&app, &format!("event_type = '{event_type}'")).await;
        assert_eq!(stats["by_event_type"][event_type], expected, "{event_type}");
    }
    assert_eq!(stats["by_event_type"].as_object().unwrap().len(), 2);
    assert_eq!(stats["success_rate"], success_rate(&by_status));
    assert_eq!(stats["success_rate"], 0.8);

    // Per partner.
    let mut partners = Vec::new();
    for partner in client
        .query("SELECT id, name FROM webhook_configs ORDER BY id", &[])
        .await
        .unwrap()
    {
        let id: i64 = partner.get(0);
        let counts = status_counts(&app, &format!("config_id = {id}")).await;
        let sql = format!(
            "SELECT count(*) FROM webhook_queue WHERE deleted_at IS NOT NULL AND config_id = {id}"
        );
        let held = format!(
            "SELECT count(*) FROM webhook_queue WHERE held_reason LIKE 'partner_%' AND config_id = {id}"
        );
        let state: String = client
            .query_one(
                "SELECT state FROM webhook_partner_state WHERE config_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        partners.push(json!({"config_id": id, "name": partner.get::<_, String>(1), "by_status": counts,
                             "cancelled": app.db.count(&sql).await, "success_rate": success_rate(&counts),
                             "state": state, "reason": null, "held": app.db.count(&held).await}));
    }
    assert_eq!(stats["by_partner"], json!(partners));

    // Attempts: one per non-null retry_N_completed_at, succeeded when the status was 2xx.
    let attempts = recorded_attempts(&app).await;
    let total = attempts.len() as i64;
    let succeeded = attempts.iter().filter(|(_, ok)| *ok).count() as i64;
    assert_eq!((total, succeeded), (10, 4), "the fixture");
    let a = &stats["attempts"];
    assert_eq!(a["total"], total);
    assert_eq!(a["succeeded"], succeeded);
    assert_eq!(a["failed"], total - succeeded);
    let avg = attempts.iter().map(|(ms, _)| ms).sum::<i64>() as f64 / total as f64;
    let reported = a["avg_duration_ms"].as_f64().unwrap();
    assert!((reported - avg).abs() <= 0.05, "avg {avg} vs {a}");
    let mut durations: Vec<i64> = attempts.iter().map(|(ms, _)| *ms).collect();
    durations.sort();
    for (key, q) in [
        ("p50_duration_ms", 0.50),
        ("p95_duration_ms", 0.95),
        ("p99_duration_ms", 0.99),
    ] {
        // Nearest rank: the smallest duration at or above the fraction q of all attempts.
        let rank = ((q * total as f64).ceil() as usize).max(1);
        assert_eq!(a[key], durations[rank - 1], "{key}: {durations:?}");
    }

    // The moments: the oldest pending row is the hour-old one; four rows completed just now.
    let oldest: f64 = client
        .query_one(
            "SELECT extract(epoch FROM now() - min(created_at))::float8 FROM webhook_queue
             WHERE status = 'pending' AND deleted_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let age = stats["oldest_pending_age_seconds"].as_f64().unwrap();
    assert!((age - oldest).abs() < 5.0, "{age} vs {oldest}");
    assert!((3595.0..3700.0).contains(&age), "about an hour: {age}");
    let recent = "SELECT count(*) FROM webhook_queue
                  WHERE status = 'completed' AND completed_at > now() - interval '1 minute'";
    assert_eq!(stats["completed_last_minute"], app.db.count(recent).await);
    assert_eq!(stats["completed_last_minute"], 4);
    assert_rfc3339_utc(&stats["generated_at"], "generated_at");

    // Moving rows keeps the counters right: every pending row is cancelled, and a processing
    // row completes.
    let pending = client
        .query("SELECT queue_id::text FROM webhook_queue WHERE status = 'pending' AND deleted_at IS NULL", &[])
        .await
        .unwrap();
    for row in pending {
        let queue_id: String = row.get(0);
        assert_eq!(delete(&app, &format!("/webhooks/{queue_id}")).await.0, 200);
    }
    client
        .execute(
            "UPDATE webhook_queue SET status = 'completed', completed_at = now(), locked_at = NULL
             WHERE id = (SELECT min(id) FROM webhook_queue WHERE status = 'processing')",
            &[],
        )
        .await
        .unwrap();
    let (_, stats) = app.get("/webhooks/stats").await;
    let by_status = status_counts(&app, "true").await;
    assert_eq!(
        by_status,
        json!({"pending": 0, "processing": 1, "completed": 5, "failed": 1})
    );
    assert_eq!(stats["by_status"], by_status);
    assert_eq!(stats["cancelled"], 5);
    assert!(stats["oldest_pending_age_seconds"].is_null());
    assert_eq!(stats["completed_last_minute"], 5);
    for status in STATUSES {
        let sum: i64 = EVENT_TYPES
            .iter()
            .map(|t| stats["by_event_type"][t][status].as_i64().unwrap())
            .sum();
        assert_eq!(
            stats["by_status"][status], sum,
            "{status}: by_event_type adds up"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhookd_stats_prints_what_the_api_answers() {
    let app = spawn(Options::default()).await;
    rows_in_every_state(&app).await;
    let db_url = app.db.url.clone();

    let (ok, stdout, stderr) = webhookd(&["stats", "--json", "--database-url", &db_url]).await;
    assert!(ok, "webhookd stats --json failed: {stderr}");
    let mut cli: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {stdout}"));
    let (_, mut api) = app.get("/webhooks/stats").await;
    // The age of the oldest pending row moves with the clock: compare it loosely.
    let cli_age = cli["oldest_pending_age_seconds"].as_f64().unwrap();
    let api_age = api["oldest_pending_age_seconds"].as_f64().unwrap();
    assert!((cli_age - api_age).abs() < 10.0, "{cli_age} vs {api_age}");
    for document in [&mut cli, &mut api] {
        assert_rfc3339_utc(&document["generated_at"], "generated_at");
        let document = document.as_object_mut().unwrap();
        document.remove("generated_at");
        document.remove("oldest_pending_age_seconds");
    }
    assert_eq!(cli, api);

    // The table is for people, but it names the same counts.
    let (ok, table, stderr) = webhookd(&["stats", "--database-url", &db_url]).await;
    assert!(ok, "webhookd stats failed: {stderr}");
    let numbers_after = |prefix: &str| -> Vec<String> {
        let line = table.lines().find(|l| l.starts_with(prefix));
        let line = line.unwrap_or_else(|| panic!("a line starting {prefix:?}:\n{table}"));
        line[prefix.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let s = &api["by_status"];
    let all = [
        &s["pending"],
        &s["processing"],
        &s["completed"],
        &s["failed"],
        &api["total"],
    ];
    let all: Vec<String> = all.iter().map(|v| v.to_string()).collect();
    assert_eq!(numbers_after("all "), all, "{table}");
    assert_eq!(
        numbers_after("cancelled "),
        [api["cancelled"].to_string()],
        "{table}"
    );
    for word in [
        "pending",
        "processing",
        "completed",
        "failed",
        "alpha",
        "beta",
        "80.0%",
    ] {
        assert!(table.contains(word), "{word}:\n{table}");
    }

    // An unreachable database: a one-line error and a failing exit code.
    let closed_port = "postgres://postgres@127.0.0.1:1/x";
    let (ok, stdout, stderr) = webhookd(&["stats", "--database-url", closed_port]).await;
    assert!(!ok, "stats against a closed port must fail");
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(lines[0].starts_with("webhookd: error:"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------------

/// A connection to the maintenance database `postgres` of the server the tests use.
async fn admin_client() -> tokio_postgres::Client {
    let mut url = url::Url::parse(&common::base_url()).unwrap();
    url.set_path("/postgres");
    let (client, connection) = tokio_postgres::connect(url.as_str(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Polls `/health` until it answers `status` (within 15 s) and returns that body.
async fn health_once_it_answers(app: &TestApp, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (got, body) = app.get("/health").await;
        if got == status {
            return body;
        }
        let late = tokio::time::Instant::now() >= deadline;
        assert!(!late, "/health still answers {got} {body}, not {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_the_database_is_away_and_200_once_it_is_back() {
    let app = spawn(Options::default()).await;
    let config = app
        .config("acme", "http://h/pb?uid={user_id}", "http://h/cb")
        .await;
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");

    // Take this test's database away: no new connections, and the open ones are ended.
    let admin = admin_client().await;
    let name = app.db.name.clone();
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .unwrap();

    let health = health_once_it_answers(&app, 503).await;
    assert_eq!(health["status"], "unavailable", "{health}");

    // A submit now is a 503 whose body says nothing of the cause ...
    let answer = app.post("/webhooks", credit(config, "while-away")).await;
    assert_error(
        &answer,
        UNAVAILABLE,
        None,
        "submit while the database is away",
    );
    let text = answer.1.to_string().to_lowercase();
    for leak in [
        name.as_str(),
        "postgres",
        "connect",
        "127.0.0.1",
        "5432",
        "fatal",
        "sql",
    ] {
        assert!(!text.contains(leak), "the body leaks {leak:?}: {text}");
    }
    assert_error(
        &app.get("/webhooks/stats").await,
        UNAVAILABLE,
        None,
        "stats while away",
    );
    // ... while the cause is logged.
    let logged = app.logs.lines().into_iter().any(|l| {
        l["status"] == 503
            && l["path"] == "/webhooks"
            && l["cause"].as_str().is_some_and(|c| !c.is_empty())
    });
    assert!(
        logged,
        "the cause of the 503 is logged:\n{}",
        app.logs.text()
    );

    // Bring it back.
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    let health = health_once_it_answers(&app, 200).await;
    assert_eq!(
        (&health["status"], &health["database"]),
        (&json!("ok"), &json!("ok"))
    );
    app.submit(credit(config, "after-return")).await;
    assert_eq!(
        queue_rows(&app).await,
        1,
        "only the submit made after the return"
    );
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Batch submit
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_event_in_order_with_the_same_rules_as_single_submits() {
    let app = spawn(Options::default()).await;
    let config = app
        .config(
            "batch",
            "http://127.0.0.1:1/pb?u={user_id}",
            "http://127.0.0.1:1/cb",
        )
        .await;
    // An event submitted before the batch, to be repeated inside it.
    let earlier = app.submit(credit(config, "before")).await;
    let events = json!([
        {"event_type": "+credit", "event_id": "b1", "config_id": config, "url_params": {"user_id": "u 1"}},
        {"event_type": "bogus", "event_id": "b2", "config_id": config},
        {"event_type": "+credit", "event_id": "b1", "config_id": config, "url_params": {"user_id": "u 1"}},
        {"event_type": "+credit", "event_id": "b1", "config_id": config, "url_params": {"user_id": "other"}},
        {"event_type": "+credit", "event_id": "b3", "config_id": 999_999, "url_params": {"user_id": "x"}},
        {"event_type": "+credit", "event_id": "b4", "config_id": config, "url_params": {}},
        credit(config, "before"),
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
    let config = app
        .config("batch", "http://127.0.0.1:1/pb", "http://127.0.0.1:1/cb")
        .await;
    let many: Vec<Value> = (0..1001)
        .map(|i| credit(config, &format!("m{i}")))
        .collect();
    let cases = [
        (json!({"events": []}), "events"),
        (json!({"events": many}), "events"),
        (json!({"events": {"a": 1}}), "events"),
        (json!({}), "events"),
        (
            json!({"events": [credit(config, "x")], "extra": true}),
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
        .map(|i| credit(config, &format!("t{i}")))
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
    let config = app
        .config(
            "hand",
            "http://127.0.0.1:1/old?u={user_id}",
            "http://127.0.0.1:1/cb",
        )
        .await;
    let db = app.db.client().await;
    let url_of = |entry: &Value| entry["webhook_url"].as_str().unwrap().to_string();
    // A single and a batched submit, and the URLs they were queued with.
    let both_routes = |tag: &'static str| {
        let app = &app;
        async move {
            let single = app.submit(credit(config, &format!("{tag}1"))).await;
            let batched = batch_of_one(app, credit(config, &format!("{tag}2"))).await;
            [url_of(&single), url_of(&batched["entry"])]
        }
    };

    // Both routes now hold a copy of the config.
    assert_eq!(both_routes("a").await, ["http://127.0.0.1:1/old?u=u1"; 2]);

    db.execute(
        "UPDATE webhook_configs SET postback_url = 'http://127.0.0.1:1/new?u={user_id}' WHERE id = $1",
        &[&config],
    )
    .await
    .unwrap();
    assert_eq!(both_routes("b").await, ["http://127.0.0.1:1/new?u=u1"; 2]);

    // Deactivated by hand: refused, and nothing written.
    db.execute(
        "UPDATE webhook_configs SET is_active = false WHERE id = $1",
        &[&config],
    )
    .await
    .unwrap();
    let rows = queue_rows(&app).await;
    let refused = app.post("/webhooks", credit(config, "c1")).await;
    assert_error(&refused, INVALID, Some("config_id"), "deactivated by hand");
    let refused = batch_of_one(&app, credit(config, "c2")).await;
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
    let refused = app.post("/webhooks", credit(config, "d1")).await;
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

// ---------------------------------------------------------------------------------------------
// What the OpenAPI document promises (issue 18)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_path_asked_with_another_method_is_405_with_allow() {
    let app = spawn(Options::default()).await;
    let queue_id = uuid::Uuid::new_v4();
    for (method, path, allow) in [
        (Method::PUT, "/webhooks/stats".to_string(), "GET"),
        // Not the `DELETE /webhooks/{queue_id}` that would read "stats" as an id.
        (Method::DELETE, "/webhooks/stats".to_string(), "GET"),
        (Method::GET, "/webhooks/batch".to_string(), "POST"),
        (
            Method::PATCH,
            "/webhook-configs/1".to_string(),
            "GET, PUT, DELETE",
        ),
        (Method::GET, format!("/webhooks/{queue_id}/retry"), "POST"),
        (Method::PUT, "/webhooks".to_string(), "POST, GET"),
        (Method::POST, "/health".to_string(), "GET"),
        (
            Method::from_bytes(b"TRACE").unwrap(),
            "/".to_string(),
            "GET",
        ),
    ] {
        let response = app
            .http
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        let case = format!("{method} {path}");
        assert_eq!(response.status().as_u16(), 405, "{case}");
        assert_eq!(
            response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok()),
            Some(allow),
            "{case}"
        );
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{case}: {body}"
        );
    }
    // A path the API does not have is still a 404, whatever the method.
    let (status, body) = app.send(Method::PUT, "/nowhere", None).await;
    assert_error(&(status, body), NOT_FOUND, None, "PUT /nowhere");
    assert_eq!(
        app.db.count("SELECT count(*) FROM webhook_configs").await,
        0
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_written_with_a_zero_fraction_are_integers() {
    let app = spawn(Options::default()).await;
    let (status, created) = app
        .post(
            "/webhook-configs",
            json!({"name": "p", "postback_url": "https://p.example/pb", "max_retries": 3.0}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["max_retries"], 3);
    let (status, page) = app
        .post(
            "/webhooks/redrive",
            json!({"dry_run": true, "limit": 612.0}),
        )
        .await;
    assert_eq!((status, &page["matched"]), (200, &json!(0)), "{page}");
    for (case, body, field) in [
        (
            "a fraction",
            json!({"name": "q", "postback_url": "https://p.example/pb", "max_retries": 3.5}),
            "max_retries",
        ),
        (
            "past 2^53 as a float",
            json!({"name": "q", "postback_url": "https://p.example/pb", "max_retries": 1e19}),
            "max_retries",
        ),
    ] {
        let answer = app.post("/webhook-configs", body).await;
        assert_error(&answer, INVALID, Some(field), case);
    }
    assert_eq!(
        app.db.count("SELECT count(*) FROM webhook_configs").await,
        1
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_finds_an_event_by_its_event_id_and_entries_show_a_redacted_url() {
    let app = spawn(Options::default()).await;
    let config = app
        .config(
            "p",
            "https://p.example/pb?user={user_id}",
            "https://p.example/cb",
        )
        .await;
    let wanted = app
        .submit(
            json!({"event_type": "+credit", "event_id": "tx é 1", "config_id": config,
            "url_params": {"user_id": "u1", "token": "s3cret", "api_key": "k"}}),
        )
        .await;
    app.submit(
        json!({"event_type": "+credit", "event_id": "tx 2", "config_id": config,
        "url_params": {"user_id": "u2"}}),
    )
    .await;
    assert_eq!(
        wanted["webhook_url_redacted"],
        "https://p.example/pb?user=u1&api_key=***&token=***"
    );
    assert!(wanted["webhook_url"].as_str().unwrap().contains("s3cret"));
    let (status, page) = app.get("/webhooks?event_id=tx%20%C3%A9%201").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["queue_id"], wanted["queue_id"]);
    let (_, page) = app.get("/webhooks?event_id=nope").await;
    assert_eq!(page["items"], json!([]));
    let long = "e".repeat(256);
    for (case, query) in [
        ("empty", "event_id=".to_string()),
        ("too long", format!("event_id={long}")),
    ] {
        let answer = app.get(&format!("/webhooks?{query}")).await;
        assert_error(&answer, INVALID, Some("event_id"), case);
    }
    app.shutdown().await;
}
