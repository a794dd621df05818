//! Talking to the API the way a test needs to: the error classes and the one shape of an
//! error body, requests reqwest would not send on its own, and what a listing answers.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::TestApp;

/// An error class: the HTTP status and `error.code`.
pub type Class = (u16, &'static str);
pub const MALFORMED: Class = (400, "malformed_request");
pub const UNAUTHORIZED: Class = (401, "unauthorized");
pub const NOT_FOUND: Class = (404, "not_found");
pub const CONFLICT: Class = (409, "conflict");
pub const TOO_LARGE: Class = (413, "payload_too_large");
pub const NOT_JSON: Class = (415, "unsupported_media_type");
pub const INVALID: Class = (422, "validation_failed");
pub const UNAVAILABLE: Class = (503, "unavailable");

pub const STATUSES: [&str; 4] = ["pending", "processing", "completed", "failed"];
pub const EVENT_TYPES: [&str; 2] = ["+credit", "-debit"];

/// A response's `Content-Type`; `""` when it has none.
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Asserts an error answer of `class` whose body is exactly
/// `{"error": {"code", "message", "field"}}`, with `field` absent when `None`.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), class: Class, field: Option<&str>, case: &str) {
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

/// Asserts an answer of `status` whose `error.message` mentions `text`.
#[track_caller]
pub fn assert_refusal_mentions(answer: &(u16, Value), status: u16, text: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(text), "{body}");
}

#[track_caller]
pub fn assert_rfc3339_utc(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string: {value}"));
    assert!(text.ends_with('Z'), "{what} is UTC: {text}");
    if let Err(e) = chrono::DateTime::parse_from_rfc3339(text) {
        panic!("{what} is RFC 3339 ({e}): {text}");
    }
}

pub async fn queue_rows(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM webhook_queue").await
}

pub async fn config_rows(app: &TestApp) -> i64 {
    app.db.count("SELECT count(*) FROM webhook_configs").await
}

pub async fn delete(app: &TestApp, path: &str) -> (u16, Value) {
    app.send(Method::DELETE, path, None).await
}

pub async fn put(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.send(Method::PUT, path, Some(body)).await
}

/// A request with a body of our choosing and an optional Content-Type.
pub async fn raw(
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
pub async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null)
}

/// Sends a whole HTTP/1.1 request over a plain TCP connection (for what reqwest will not send,
/// such as a chunked body of our making) and returns the answer's status and JSON body.
pub async fn raw_http(app: &TestApp, request: Vec<u8>) -> (u16, Value) {
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
pub fn chunked_post(path: &str, body: &[u8]) -> Vec<u8> {
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

/// The `queue_id`s of a listing, in the order given.
pub fn ids_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("a page has items")
        .iter()
        .map(super::fixture::queue_id)
        .collect()
}

/// Runs the built `webhookd` binary with `args` and no `DATABASE_URL` of the environment;
/// returns exit success, stdout and stderr.
pub async fn webhookd(args: &[&str]) -> (bool, String, String) {
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
