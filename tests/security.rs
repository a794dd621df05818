//! Safety (SPEC §8) against the real thing: bearer auth, the outbound address policy with a
//! listener that must see nothing, redirects, secrets kept out of logs and error bodies,
//! hostile bodies, per-config signing checked by an independent implementation, ingest rate
//! limiting, and TLS to PostgreSQL for every subcommand.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::pg::PrivatePg;
use common::process::{run_once, Proc};
use common::receiver::Receiver;
use common::tls::Certs;
use common::{http_client, spawn, spawn_on, Options, TestApp, TestDb};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(15);

/// Sends `method path` with the given `Authorization` header (or none) and returns status,
/// headers and parsed body.
async fn raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    authorization: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = http_client().request(method, app.url(path));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
    (status, headers, body)
}

/// Puts a config and one due row straight into the database, bypassing every API check (as a
/// stale row or a hand-made one would), and wakes the workers. Returns the row's queue_id.
async fn insert_row_bypassing_the_api(db: &TestDb, name: &str, url: &str) -> String {
    let client = db.client().await;
    let row = client
        .query_one(
            "WITH c AS (INSERT INTO webhook_configs (name, postback_url) VALUES ($1, $2) RETURNING id)
             INSERT INTO webhook_queue (event_type, config_id, webhook_url, max_retries)
             SELECT '+credit', id, $2, 0 FROM c RETURNING queue_id::text",
            &[&name, &url],
        )
        .await
        .unwrap();
    client
        .batch_execute("NOTIFY webhook_queue_new")
        .await
        .unwrap();
    row.get(0)
}

/// The error text of the only attempt of a row that ended `failed`.
async fn only_attempt_error(app: &TestApp, queue_id: &str) -> String {
    let entry = app.wait_for_status(queue_id, "failed", WAIT).await;
    let attempts = entry["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{entry:#}");
    attempts[0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn random_secret(bytes: usize) -> String {
    let key: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

// ---------------------------------------------------------------------------------------
// Bearer authentication
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_configured_token_is_accepted_and_anything_else_is_401_with_www_authenticate() {
    let app = spawn(Options::default().env("API_TOKEN", "tok-current, tok-rotated")).await;
    use reqwest::Method;

    for (what, header) in [
        ("no token", None),
        ("wrong token", Some("Bearer tok-wrong")),
        ("a prefix of a token", Some("Bearer tok-curren")),
        ("a token with more after it", Some("Bearer tok-currentX")),
        (
            "both tokens at once",
            Some("Bearer tok-current, tok-rotated"),
        ),
        ("another scheme", Some("Basic dG9rLWN1cnJlbnQ=")),
        ("the token without a scheme", Some("tok-current")),
    ] {
        let (status, headers, body) = raw(&app, Method::GET, "/webhook-configs", header).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer", "{what}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
        assert!(
            !body.to_string().contains("tok-"),
            "{what}: the body names a token: {body}"
        );
    }
    for token in ["tok-current", "tok-rotated"] {
        let bearer = format!("Bearer {token}");
        let (status, _, body) = raw(&app, Method::GET, "/webhook-configs", Some(&bearer)).await;
        assert_eq!(status, 200, "{token}: {body}");
        let response = http_client()
            .post(app.url("/webhook-configs"))
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .body(json!({"name": token, "postback_url": "https://partner.example/pb"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{token}");
    }

    // Probes need no token; everything else does, even a route that does not exist (so a
    // caller without a token learns nothing about which routes there are).
    let (status, _, body) = raw(&app, Method::GET, "/health", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _, _) = raw(&app, Method::GET, "/metrics", None).await;
    assert_eq!(status, 200, "/metrics is open to scrapers");
    let (status, headers, _) = raw(&app, Method::GET, "/no-such-route", None).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, body) = raw(
        &app,
        Method::GET,
        "/no-such-route",
        Some("Bearer tok-rotated"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _, _) = raw(&app, Method::GET, "/webhooks/stats", None).await;
    assert_eq!(status, 401);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Outbound address policy
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_in_every_spelling_is_blocked_and_not_one_connection_reaches_the_listener() {
    let receiver = Receiver::start().await;
    let port = receiver.port();
    // No OUTBOUND_ALLOW_NETWORKS at all: loopback is forbidden, as in production.
    let app = spawn(Options::with_workers().env("OUTBOUND_ALLOW_NETWORKS", "")).await;

    let literals = [
        format!("http://127.0.0.1:{port}/ok/literal"),
        format!("http://[::1]:{port}/ok/v6-loopback"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok/v4-mapped"),
        format!("http://0.0.0.0:{port}/ok/unspecified"),
        format!("http://127.1:{port}/ok/shorthand"),
        format!("http://2130706433:{port}/ok/decimal"),
        format!("http://0x7f.0.0.1:{port}/ok/hex"),
    ];
    let mut rows = Vec::new();
    for (i, url) in literals.iter().enumerate() {
        // The API refuses a literal forbidden host at once...
        let (status, body) = app
            .post(
                "/webhook-configs",
                json!({"name": format!("lit{i}"), "postback_url": url}),
            )
            .await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["field"], "postback_url", "{url}");
        // ...and a row that got in anyway (by SQL) is still never called.
        rows.push((
            url.clone(),
            insert_row_bypassing_the_api(&app.db, &format!("sql{i}"), url).await,
        ));
    }
    // A host name that resolves to loopback passes the API (names are checked at call time).
    let by_name = format!("http://localhost:{port}/ok/by-name");
    let (status, config) = app
        .post(
            "/webhook-configs",
            json!({"name": "by-name", "postback_url": by_name, "max_retries": 0}),
        )
        .await;
    assert_eq!(status, 201, "{config}");
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config["id"], "url_params": {}}))
        .await;
    rows.push((by_name, entry["queue_id"].as_str().unwrap().to_string()));

    for (url, queue_id) in &rows {
        let error = only_attempt_error(&app, queue_id).await;
        assert!(error.starts_with("blocked: "), "{url}: {error}");
        assert!(
            error.contains("not in OUTBOUND_ALLOW_NETWORKS"),
            "{url}: {error}"
        );
    }
    assert!(
        receiver.received().is_empty(),
        "a blocked call reached the listener: {:?}",
        receiver.received()
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_special_ranges_are_refused_at_create_and_blocked_at_call_time() {
    // No packet is sent to any of these: the literal address is checked before connecting.
    let app = spawn(Options::with_workers().env("OUTBOUND_ALLOW_NETWORKS", "")).await;
    let forbidden = [
        ("10.1.2.3", "private (10.0.0.0/8)"),
        ("172.16.5.4", "private (172.16.0.0/12)"),
        ("172.31.255.254", "private (172.16.0.0/12)"),
        ("192.168.1.1", "private (192.168.0.0/16)"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.10.10", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("[fc00::1]", "unique local"),
        ("[fd12:3456::1]", "unique local"),
        ("[fe80::1]", "link-local (fe80::/10)"),
        ("224.0.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("[64:ff9b::a00:1]", "private (10.0.0.0/8)"), // NAT64 of 10.0.0.1
        ("[2002:c0a8:101::1]", "private (192.168.0.0/16)"), // 6to4 of 192.168.1.1
    ];
    let mut rows = Vec::new();
    for (i, (host, class)) in forbidden.iter().enumerate() {
        let url = format!("http://{host}/pb?uid={{user_id}}");
        let (status, body) = app
            .post(
                "/webhook-configs",
                json!({"name": format!("api{i}"), "postback_url": url}),
            )
            .await;
        assert_eq!(status, 422, "{host}: {body}");
        assert_eq!(body["error"]["field"], "postback_url", "{host}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(class),
            "{host}: {body}"
        );
        let (status, body) = app
            .post(
                "/webhook-configs",
                json!({"name": format!("cb{i}"), "postback_url": "https://partner.example/", "chargeback_url": url}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("chargeback_url")),
            "{host}"
        );
        let sql_url = format!("http://{host}/pb?uid=u1");
        rows.push((
            host,
            class,
            insert_row_bypassing_the_api(&app.db, &format!("sql{i}"), &sql_url).await,
        ));
    }
    for (host, class, queue_id) in rows {
        let error = only_attempt_error(&app, &queue_id).await;
        assert!(
            error.starts_with("blocked: ") && error.contains(class),
            "{host}: {error}"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_loopback_allowed_the_same_loopback_calls_go_through() {
    let receiver = Receiver::start().await;
    let port = receiver.port();
    let app = spawn(Options::with_workers().env("OUTBOUND_ALLOW_NETWORKS", "127.0.0.0/8")).await;
    for (i, url) in [
        format!("http://127.0.0.1:{port}/ok/allowed-literal"),
        format!("http://127.1:{port}/ok/allowed-shorthand"),
        format!("http://localhost:{port}/ok/allowed-name"),
    ]
    .iter()
    .enumerate()
    {
        let config = app.config(&format!("allowed{i}"), url, url).await;
        let entry = app
            .submit(json!({"event_type": "+credit", "config_id": config, "url_params": {}}))
            .await;
        app.wait_for_status(entry["queue_id"].as_str().unwrap(), "completed", WAIT)
            .await;
    }
    for path in [
        "/ok/allowed-literal",
        "/ok/allowed-shorthand",
        "/ok/allowed-name",
    ] {
        assert_eq!(receiver.received_at(path).len(), 1, "{path}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_forbidden_address_is_not_followed() {
    // Only 127.0.0.1 is allowed; the redirect target listens on 127.0.0.2, which is not.
    let allowed = Receiver::start().await;
    let target = Receiver::start_on([127, 0, 0, 2].into()).await;
    let app = spawn(Options::with_workers().env("OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32")).await;

    let (status, body) = app
        .post(
            "/webhook-configs",
            json!({"name": "direct", "postback_url": target.url("/ok/direct")}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("postback_url")),
        "{body}"
    );

    let to: String =
        url::form_urlencoded::byte_serialize(target.url("/ok/stolen").as_bytes()).collect();
    let config = app
        .post(
            "/webhook-configs",
            json!({"name": "redirector", "postback_url": allowed.url(&format!("/redirect/pb?to={to}")), "max_retries": 0}),
        )
        .await;
    assert_eq!(config.0, 201, "{}", config.1);
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config.1["id"], "url_params": {}}))
        .await;
    let done = app
        .wait_for_status(entry["queue_id"].as_str().unwrap(), "failed", WAIT)
        .await;
    assert_eq!(done["attempts"][0]["http_status"], 302, "{done:#}");
    assert_eq!(allowed.received_at("/redirect/pb").len(), 1);
    assert!(
        target.received().is_empty(),
        "the redirect was followed: {:?}",
        target.received()
    );
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Secrets stay out of logs and error bodies
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_or_error_bodies_across_failures_timeouts_blocks_and_bad_requests()
{
    const PARAM: &str = "canary-param-token-4b1d";
    const DB_PASSWORD: &str = "canary-db-pw";
    const API_TOKEN: &str = "canary-api-token-9f3e";
    let receiver = Receiver::start().await;
    let db = TestDb::new().await;
    let mut with_password = url::Url::parse(&db.url).unwrap();
    with_password.set_password(Some(DB_PASSWORD)).unwrap();
    let app = spawn_on(
        db,
        Options::with_workers()
            .env("DATABASE_URL", with_password.as_str())
            .env("API_TOKEN", API_TOKEN)
            .bearer(API_TOKEN)
            .env("HTTP_TIMEOUT", "500ms")
            .env("RETRY_BASE_DELAY", "50ms"),
    )
    .await;
    assert!(app.settings.database_url.expose().contains(DB_PASSWORD));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut error_bodies = Vec::new();

    let params = json!({"token": PARAM, "user_id": "u1"});
    let mut ids = Vec::new();
    let mut config_ids = Vec::new();
    for (name, url, max_retries) in [
        ("ok", receiver.url("/ok/canary"), 0),
        // A 5xx, then a retry that succeeds (every attempt on 5xx would trip the partner).
        ("5xx", receiver.url("/flaky/1/canary"), 1),
        ("timeout", receiver.url("/hang/canary"), 0),
        ("refused", format!("http://127.0.0.1:{closed}/refused"), 0),
    ] {
        let (status, config) = app
            .post(
                "/webhook-configs",
                json!({"name": name, "postback_url": url, "max_retries": max_retries}),
            )
            .await;
        assert_eq!(status, 201, "{config}");
        let entry = app
            .submit(json!({"event_type": "+credit", "event_id": name, "config_id": config["id"], "url_params": params}))
            .await;
        assert!(
            entry["webhook_url"].as_str().unwrap().contains(PARAM),
            "the canary is in the URL called"
        );
        ids.push(entry["queue_id"].as_str().unwrap().to_string());
        config_ids.push(config["id"].as_i64().unwrap());
    }
    let ok_config = config_ids[0];
    // A blocked call, from a config that got in by SQL; its URL is built by the API.
    let client = app.db.client().await;
    let blocked_config: i64 = client
        .query_one(
            "INSERT INTO webhook_configs (name, postback_url, max_retries)
             VALUES ('blocked', 'http://169.254.169.254/latest?t={token}', 0) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": blocked_config, "url_params": params}))
        .await;
    ids.push(entry["queue_id"].as_str().unwrap().to_string());

    // Bad requests of every kind, each carrying the canary.
    let bad_requests: [(&str, String); 5] = [
        ("malformed JSON", format!(r#"{{"event_type": "+credit", "url_params": {{"token": "{PARAM}""#)),
        ("unknown field", json!({"event_type": "+credit", "config_id": ok_config, "token": PARAM}).to_string()),
        ("bad parameter", json!({"event_type": "+credit", "config_id": ok_config, "url_params": {"token": PARAM, "x": [1]}}).to_string()),
        ("missing config", json!({"event_type": "+credit", "config_id": 999999, "url_params": params}).to_string()),
        ("conflict", json!({"event_type": "+credit", "event_id": "ok", "config_id": ok_config, "url_params": {"token": format!("{PARAM}-2")}}).to_string()),
    ];
    for (what, body) in bad_requests {
        let response = app
            .http
            .post(app.url("/webhooks"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_client_error(),
            "{what}: {}",
            response.status()
        );
        error_bodies.push((what, response.text().await.unwrap()));
    }
    // 401s: no token, and a wrong one that contains the real one.
    for header in [None, Some(format!("Bearer x{API_TOKEN}"))] {
        let mut request = http_client().get(app.url("/webhooks/stats"));
        if let Some(h) = &header {
            request = request.header("Authorization", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        error_bodies.push(("401", response.text().await.unwrap()));
    }

    app.wait_for_status(&ids[0], "completed", WAIT).await;
    for (id, status) in [
        (&ids[1], "completed"),
        (&ids[2], "failed"),
        (&ids[3], "failed"),
        (&ids[4], "failed"),
    ] {
        let entry = app.wait_for_status(id, status, WAIT).await;
        for attempt in entry["attempts"].as_array().unwrap() {
            error_bodies.push(("recorded attempt error", attempt["error"].to_string()));
        }
    }
    let logs = app.logs.clone();
    app.shutdown().await;

    let text = logs.text();
    // The log really covers what happened, so its silence about the secrets means something.
    for expected in [
        "delivered",
        "attempt failed",
        "blocked: ",
        "timeout: ",
        "connect: ",
        "\"status\":401",
        "\"status\":400",
        "\"status\":409",
    ] {
        assert!(
            text.contains(expected),
            "the log has no {expected:?}:\n{text}"
        );
    }
    for secret in [PARAM, DB_PASSWORD, API_TOKEN] {
        assert!(!text.contains(secret), "{secret} is in the log:\n{text}");
        for (what, body) in &error_bodies {
            assert!(
                !body.contains(secret),
                "{secret} is in the {what} error body: {body}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hostile bodies
// ---------------------------------------------------------------------------------------

/// Sends `total` bytes of a chunked body (no Content-Length) over a raw connection and never
/// ends it; returns the status code, which the server can only have sent before the body ended.
async fn post_chunked(app: &TestApp, path: &str, total: usize) -> u16 {
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 16 * 1024];
        let mut sent = 0;
        while sent < total {
            let frame = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk.clone(),
                b"\r\n".to_vec(),
            ]
            .concat();
            if write.write_all(&frame).await.is_err() {
                return; // the server stopped reading: fine
            }
            sent += chunk.len();
        }
        // The closing chunk never comes: the answer must not wait for it.
        std::future::pending::<()>().await;
        drop(write);
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = read.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed without a response");
        response.extend_from_slice(&buf[..n]);
    }
    writer.abort();
    let status_line = String::from_utf8_lossy(&response);
    status_line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_deeply_nested_bodies_are_refused_quickly_and_the_server_stays_up() {
    let app = spawn(Options::default()).await;
    let config = app
        .config(
            "p",
            "https://partner.example/pb",
            "https://partner.example/cb",
        )
        .await;
    let mut padded =
        json!({"event_type": "+credit", "config_id": config, "url_params": {}}).to_string();
    padded.insert_str(1, &" ".repeat(1024 * 1024));
    let cases = [
        ("1 MiB with Content-Length", padded, 413),
        ("100k [ (over the size cap)", "[".repeat(100_000), 413),
        (
            "60k [ (under the size cap, past the nesting limit)",
            "[".repeat(60_000),
            400,
        ),
        (
            "60k { (under the size cap, past the nesting limit)",
            "{\"a\":".repeat(12_000),
            400,
        ),
    ];
    for path in ["/webhooks", "/webhook-configs"] {
        for (what, body, expected) in &cases {
            let started = Instant::now();
            let response = app
                .http
                .post(app.url(path))
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
            assert_eq!(status, *expected, "{path} {what}: {body}");
            let code = if *expected == 413 {
                "payload_too_large"
            } else {
                "malformed_request"
            };
            assert_eq!(body["error"]["code"], code, "{path} {what}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{path} {what} took {:?}",
                started.elapsed()
            );
        }
        // Refused while the body is still open, so without reading to its end.
        let answered = tokio::time::timeout(WAIT, post_chunked(&app, path, 1024 * 1024)).await;
        assert_eq!(
            answered.expect("no answer while the chunked body was open"),
            413,
            "{path} chunked 1 MiB, never ended"
        );
    }
    let (status, body) = app.get("/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    app.submit(json!({"event_type": "+credit", "config_id": config, "url_params": {"a": 1}}))
        .await;
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Per-config signing (Standard Webhooks), verified by an independent implementation
// ---------------------------------------------------------------------------------------

/// Standard Webhooks verification written from the spec with Python's standard library only:
/// `v1,` + base64(HMAC-SHA256(base64-decoded key, "{id}.{timestamp}.{content}")), timestamp
/// within five minutes, any of the space-separated signatures may match.
const VERIFY_PY: &str = r#"
import base64, hashlib, hmac, sys, time
secret, msg_id, timestamp, content, header = sys.argv[1:]
if not secret.startswith("whsec_"):
    sys.exit("secret is not whsec_")
key = base64.b64decode(secret[len("whsec_"):])
if abs(time.time() - int(timestamp)) > 300:
    sys.exit("timestamp outside the tolerance")
signed = f"{msg_id}.{timestamp}.{content}".encode()
expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
for candidate in header.split(" "):
    version, _, signature = candidate.partition(",")
    if version == "v1" and hmac.compare_digest(signature, expected):
        sys.exit(0)
sys.exit("no valid v1 signature")
"#;

fn python_verifies(
    secret: &str,
    id: &str,
    timestamp: &str,
    content: &str,
    signature: &str,
) -> Result<(), String> {
    let output = Command::new("python3")
        .args(["-c", VERIFY_PY, secret, id, timestamp, content, signature])
        .output()
        .expect("python3 runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_verify_with_an_independent_standard_webhooks_implementation() {
    let receiver = Receiver::start().await;
    let app = spawn(Options::with_workers()).await;
    let secret = random_secret(32);
    let (status, created) = app
        .post(
            "/webhook-configs",
            json!({"name": "signed", "postback_url": receiver.url("/ok/signed/{user_id}?src=net"),
                   "signing_secret": secret}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["signing"], true);
    let unsigned = app
        .config(
            "unsigned",
            &receiver.url("/ok/unsigned"),
            &receiver.url("/ok/unsigned"),
        )
        .await;

    let entry = app
        .submit(
            json!({"event_type": "+credit", "event_id": "s1", "config_id": created["id"],
                       "url_params": {"user_id": "u 1/é", "value": 100, "token": "t~k"}}),
        )
        .await;
    let queue_id = entry["queue_id"].as_str().unwrap();
    app.wait_for_status(queue_id, "completed", WAIT).await;
    let plain = app
        .submit(json!({"event_type": "+credit", "config_id": unsigned, "url_params": {}}))
        .await;
    app.wait_for_status(plain["queue_id"].as_str().unwrap(), "completed", WAIT)
        .await;

    let call = &receiver.received_at("/ok/signed")[0];
    assert_eq!(
        call.path_and_query(),
        "/ok/signed/u%201%2F%C3%A9?src=net&token=t~k&value=100"
    );
    assert_eq!(call.header("webhook-id"), queue_id);
    let timestamp = call.header("webhook-timestamp");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - timestamp.parse::<i64>().unwrap()).abs() < 60,
        "timestamp {timestamp} vs {now}"
    );
    let signature = call.header("webhook-signature");
    assert!(signature.starts_with("v1,"), "{signature}");
    python_verifies(
        &secret,
        queue_id,
        timestamp,
        &call.path_and_query(),
        signature,
    )
    .expect("the signature verifies");
    // The verifier can say no: another key, another target, another id.
    let other = random_secret(32);
    assert!(python_verifies(
        &other,
        queue_id,
        timestamp,
        &call.path_and_query(),
        signature
    )
    .is_err());
    assert!(python_verifies(
        &secret,
        queue_id,
        timestamp,
        "/ok/signed/u%201?src=net",
        signature
    )
    .is_err());
    assert!(python_verifies(
        &secret,
        "another-id",
        timestamp,
        &call.path_and_query(),
        signature
    )
    .is_err());

    let unsigned_call = &receiver.received_at("/ok/unsigned")[0];
    for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(
            unsigned_call.header(header),
            "",
            "an unsigned config's call has {header}"
        );
    }
    let logs = app.logs.clone();
    app.shutdown().await;
    assert!(
        !logs.text().contains(&secret["whsec_".len()..]),
        "the secret is in the log"
    );
}

// ---------------------------------------------------------------------------------------
// The same calls verified with the published `standardwebhooks` package (PyPI)
// ---------------------------------------------------------------------------------------

/// A partner's check with the official Python package, as the README shows it: the signed
/// content is the request target (path and query), so `json_parse=False`. It prints `ok`,
/// then what the default `json_parse=True` does with that content; exit status 1 and the
/// package's error when the signature does not verify, 2 when the package is missing.
const VERIFY_WITH_PACKAGE_PY: &str = r#"
import json, sys
try:
    from standardwebhooks import Webhook
except ImportError:
    sys.exit(2)
secret, path_and_query, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    result = Webhook(secret).verify(path_and_query, headers, json_parse=False)
except Exception as e:
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
assert result is None, result
print("ok")
try:
    Webhook(secret).verify(path_and_query, headers)
    print("default: parsed")
except ValueError as e:
    print(f"default: {type(e).__name__}")
"#;

/// Runs [`VERIFY_WITH_PACKAGE_PY`]: `Ok(what it printed)` when the signature verifies.
fn package_verifies(secret: &str, path_and_query: &str, headers: &Value) -> Result<String, String> {
    let output = Command::new("python3")
        .args([
            "-c",
            VERIFY_WITH_PACKAGE_PY,
            secret,
            path_and_query,
            &headers.to_string(),
        ])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    match output.status.code() {
        Some(0) => Ok(text),
        Some(2) => panic!(
            "the standardwebhooks package is missing: \
             `python3 -m pip install standardwebhooks==1.3.0` (.ci/run installs it)"
        ),
        _ => Err(format!(
            "{text}{}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_calls_verify_with_the_published_standardwebhooks_package() {
    let receiver = Receiver::start().await;
    let app = spawn(Options::with_workers()).await;
    let secret = random_secret(32);
    let (status, created) = app
        .post(
            "/webhook-configs",
            json!({"name": "signed", "postback_url": receiver.url("/ok/pkg/{user_id}?src=net"),
                   "chargeback_url": receiver.url("/ok/pkg-debit"), "signing_secret": secret}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    for (event_type, event_id) in [("+credit", "p1"), ("-debit", "p2")] {
        let entry = app
            .submit(json!({"event_type": event_type, "event_id": event_id,
                "config_id": created["id"],
                "url_params": {"user_id": "u 1/é", "value": 100, "sig": "a&b=c"}}))
            .await;
        app.wait_for_status(entry["queue_id"].as_str().unwrap(), "completed", WAIT)
            .await;
    }
    let calls = receiver.received_at("/ok/pkg");
    assert_eq!(calls.len(), 2);
    for call in &calls {
        let headers = json!({
            "webhook-id": call.header("webhook-id"),
            "webhook-timestamp": call.header("webhook-timestamp"),
            "webhook-signature": call.header("webhook-signature"),
        });
        let printed = package_verifies(&secret, &call.path_and_query(), &headers)
            .unwrap_or_else(|e| panic!("{} does not verify: {e}", call.path_and_query()));
        // What the README says: the default parses the content as JSON, which a path is not.
        assert_eq!(
            printed,
            "ok\ndefault: JSONDecodeError",
            "{}",
            call.path_and_query()
        );

        // The package says no to another key, another target and a changed header.
        let other = random_secret(32);
        assert!(package_verifies(&other, &call.path_and_query(), &headers).is_err());
        let tampered = call.path_and_query().replace("value=100", "value=1000");
        assert_ne!(tampered, call.path_and_query());
        assert!(package_verifies(&secret, &tampered, &headers).is_err());
        let mut renamed = headers.clone();
        renamed["webhook-id"] = json!(uuid::Uuid::new_v4().to_string());
        assert!(package_verifies(&secret, &call.path_and_query(), &renamed).is_err());
    }
    app.shutdown().await;
    receiver.stop().await;
}

/// The secret as stored, read straight from the table.
async fn stored_secret(db: &TestDb, config_id: i64) -> Option<String> {
    db.client()
        .await
        .query_one(
            "SELECT signing_secret FROM webhook_configs WHERE id = $1",
            &[&config_id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_secrets_are_validated_write_only_and_kept_unless_set_to_null() {
    let app = spawn(Options::default()).await;
    let pb = "https://partner.example/pb";
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![9u8; n]);
    for (what, bad) in [
        ("no prefix", json!(b64(32))),
        ("not base64", json!("whsec_not*base64!")),
        ("23 bytes", json!(format!("whsec_{}", b64(23)))),
        ("65 bytes", json!(format!("whsec_{}", b64(65)))),
        ("not a string", json!(12345)),
    ] {
        let (status, body) = app
            .post(
                "/webhook-configs",
                json!({"name": "x", "postback_url": pb, "signing_secret": bad}),
            )
            .await;
        assert_eq!(status, 422, "{what}: {body}");
        assert_eq!(body["error"]["field"], "signing_secret", "{what}");
        if let Some(text) = bad.as_str() {
            assert!(
                !body.to_string().contains(text),
                "{what}: the error echoes the secret: {body}"
            );
        }
    }

    let secret = random_secret(24);
    let (status, created) = app
        .post(
            "/webhook-configs",
            json!({"name": "p", "postback_url": pb, "signing_secret": secret}),
        )
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        stored_secret(&app.db, id).await.as_deref(),
        Some(secret.as_str())
    );
    let path = format!("/webhook-configs/{id}");
    for (status, body) in [
        (201, created),
        app.get(&path).await,
        app.get("/webhook-configs").await,
    ] {
        assert!(status < 300);
        let text = body.to_string();
        assert!(
            !text.contains(&secret["whsec_".len()..]) && !text.contains("signing_secret"),
            "{text}"
        );
    }
    assert_eq!(app.get(&path).await.1["signing"], true);

    // PUT without the field keeps the secret; with a new one replaces it; with null removes it.
    let put = |body: Value| app.send(reqwest::Method::PUT, &path, Some(body));
    let (status, body) = put(json!({"name": "p", "postback_url": pb, "max_retries": 2})).await;
    assert_eq!(
        (status, body["signing"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert_eq!(
        stored_secret(&app.db, id).await.as_deref(),
        Some(secret.as_str())
    );
    let rotated = random_secret(64);
    let (status, body) =
        put(json!({"name": "p", "postback_url": pb, "signing_secret": rotated})).await;
    assert_eq!(
        (status, body["signing"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert_eq!(
        stored_secret(&app.db, id).await.as_deref(),
        Some(rotated.as_str())
    );
    let (status, body) =
        put(json!({"name": "p", "postback_url": pb, "signing_secret": null})).await;
    assert_eq!(
        (status, body["signing"].as_bool()),
        (200, Some(false)),
        "{body}"
    );
    assert_eq!(stored_secret(&app.db, id).await, None);

    // The column refuses what the API would refuse, even from SQL.
    let client = app.db.client().await;
    for bad in ["plain-secret", "whsec_c2hvcnQ="] {
        let result = client
            .execute(
                "UPDATE webhook_configs SET signing_secret = $1 WHERE id = $2",
                &[&bad, &id],
            )
            .await;
        assert!(result.is_err(), "{bad} was stored");
    }
    app.shutdown().await;
}

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
fn most_allowed(rate: usize, elapsed: Duration) -> usize {
    rate + (elapsed.as_secs_f64() * rate as f64).ceil() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_a_token_gets_429_with_retry_after_and_no_row_while_another_token_has_its_own_budget(
) {
    let app = spawn(
        Options::default()
            .env("API_TOKEN", "tok-a,tok-b")
            .bearer("tok-a")
            .env("INGEST_RATE_LIMIT", 5),
    )
    .await;
    let config = app
        .config(
            "p",
            "https://partner.example/pb",
            "https://partner.example/cb",
        )
        .await;

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
    let app = spawn(
        Options::default()
            .env("API_TOKEN", "tok-a")
            .bearer("tok-a")
            .env("INGEST_RATE_LIMIT", 5),
    )
    .await;
    let config = app
        .config(
            "p",
            "https://partner.example/pb",
            "https://partner.example/cb",
        )
        .await;
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
    let config = limited
        .config(
            "p",
            "https://partner.example/pb",
            "https://partner.example/cb",
        )
        .await;
    let (accepted, refused, elapsed) = submit_until_refused(&limited, None, config, 30).await;
    assert!(refused.is_some());
    assert!(
        (3..=most_allowed(3, elapsed)).contains(&accepted),
        "{accepted} accepted in {elapsed:?}"
    );
    limited.shutdown().await;

    let open = spawn(Options::default()).await;
    let config = open
        .config(
            "p",
            "https://partner.example/pb",
            "https://partner.example/cb",
        )
        .await;
    let (accepted, refused, _) = submit_until_refused(&open, None, config, 40).await;
    assert_eq!(
        (accepted, refused.is_none()),
        (40, true),
        "the default (0) limits nothing"
    );
    open.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// TLS to PostgreSQL
// ---------------------------------------------------------------------------------------

/// Client connections to database `webhookd` other than our own: (encrypted, not encrypted).
fn encrypted_connections(pg: &PrivatePg) -> (i64, i64) {
    let out = pg.psql(
        &pg.url_with("sslmode=require"),
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = 'webhookd' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()",
    );
    let (on, off) = out.split_once('|').unwrap();
    (on.parse().unwrap(), off.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_stats_and_run_work_over_tls_with_sslmode_require_and_their_connections_are_encrypted(
) {
    let certs = Certs::generate();
    let pg = PrivatePg::start_tls_only(&certs);
    let url = pg.url_with("sslmode=require");
    // The server takes TLS only: a plain connection is turned away.
    let plain = run_once(
        &["stats", "--json"],
        &[("DATABASE_URL", &pg.url_with("sslmode=disable"))],
    );
    assert_ne!(
        plain.code,
        Some(0),
        "the server accepted a plain connection"
    );
    assert!(
        plain.stderr.contains("no encryption") || plain.stderr.contains("pg_hba.conf"),
        "{}",
        plain.stderr
    );

    let migrate = run_once(
        &["migrate"],
        &[("DATABASE_URL", &url), ("LOG_LEVEL", "error")],
    );
    assert_eq!(migrate.code, Some(0), "{}", migrate.stderr);
    assert!(migrate.stdout.contains("applied"), "{}", migrate.stdout);
    let stats = run_once(
        &["stats", "--json"],
        &[("DATABASE_URL", &url), ("LOG_LEVEL", "error")],
    );
    assert_eq!(stats.code, Some(0), "{}", stats.stderr);
    let document: Value = serde_json::from_str(&stats.stdout).expect("one JSON document on stdout");
    assert_eq!(document["total"], 0);

    let receiver = Receiver::start().await;
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = format!("http://127.0.0.1:{api_port}");
    let service = Proc::start(
        "run",
        &url,
        "tls",
        &[("SERVER_ADDR", &format!("127.0.0.1:{api_port}"))],
    );
    common::receiver::wait_http_ok(&format!("{api}/health"), Duration::from_secs(15)).await;
    let http = http_client();
    let post = |path: &str, body: Value| {
        http.post(format!("{api}{path}"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
    };
    let config = post(
        "/webhook-configs",
        json!({"name": "p", "postback_url": receiver.url("/ok/tls")}),
    )
    .await
    .unwrap();
    assert_eq!(config.status(), 201);
    let config: Value = serde_json::from_str(&config.text().await.unwrap()).unwrap();
    let response = post(
        "/webhooks",
        json!({"event_type": "+credit", "config_id": config["id"], "url_params": {}}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let entry: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let calls = receiver.wait_for("/ok/tls", 1, WAIT).await;
    assert_eq!(
        calls[0].header("X-Webhook-Id"),
        entry["queue_id"].as_str().unwrap()
    );

    // The pool and the LISTEN connection: all encrypted (and pg_hba allows nothing else).
    common::eventually(WAIT, "the LISTEN connection", || async {
        service.logs().contains("listening for new rows")
    })
    .await;
    let (encrypted, plain) = encrypted_connections(&pg);
    assert!(
        encrypted >= 2,
        "{encrypted} encrypted connections (pool + listener expected)"
    );
    assert_eq!(plain, 0);
    drop(service);
}

#[test]
fn probe_database_honours_sslmode_against_a_tls_only_server() {
    let certs = Certs::generate();
    let pg = PrivatePg::start_tls_only(&certs);
    // The maintenance database: the probe needs no migrated one.
    let url = |mode: &str| {
        pg.url_with(&format!("sslmode={mode}"))
            .replace("/webhookd?", "/postgres?")
    };
    let probe = |mode: &str| {
        run_once(
            &["probe", "--database", "--timeout", "10s"],
            &[("DATABASE_URL", &url(mode))],
        )
    };
    let require = probe("require");
    assert_eq!(require.code, Some(0), "{}", require.stderr);
    assert!(
        require
            .stdout
            .contains("ok: the database answered SELECT 1"),
        "{}",
        require.stdout
    );
    // The server turns plain connections away, so the probe must say so, on one line.
    let plain = probe("disable");
    assert_eq!(plain.code, Some(1), "{}", plain.stdout);
    assert!(
        plain
            .stderr
            .contains("unhealthy: cannot connect to the database"),
        "{}",
        plain.stderr
    );
    assert_eq!(
        plain.stderr.trim_end().lines().count(),
        1,
        "{}",
        plain.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_accepts_the_right_ca_and_host_and_refuses_a_wrong_ca_or_name_with_a_one_line_error(
) {
    let certs = Certs::generate();
    let pg = PrivatePg::start_tls_only(&certs);
    let ca = certs.ca_cert.display().to_string();
    let other_ca = certs.other_ca_cert.display().to_string();
    let port = pg.port;
    let good = |host: &str, mode: &str, ca: &str| {
        format!("postgres://postgres:canary-db-pw@{host}:{port}/webhookd?sslmode={mode}&sslrootcert={ca}")
    };
    // The certificate names localhost and 127.0.0.1; `hostaddr` connects to 127.0.0.1 while
    // the name checked is the host's.
    let mismatch = |mode: &str| {
        format!("postgres://postgres@db.invalid:{port}/webhookd?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}")
    };

    let migrate = run_once(
        &["migrate"],
        &[("DATABASE_URL", &good("127.0.0.1", "verify-full", &ca))],
    );
    assert_eq!(migrate.code, Some(0), "{}", migrate.stderr);
    for url in [
        good("localhost", "verify-full", &ca),
        good("127.0.0.1", "verify-ca", &ca),
        mismatch("verify-ca"),
    ] {
        let stats = run_once(&["stats", "--json"], &[("DATABASE_URL", &url)]);
        assert_eq!(stats.code, Some(0), "{url}: {}", stats.stderr);
        serde_json::from_str::<Value>(&stats.stdout).unwrap();
    }

    for (url, cause) in [
        (good("127.0.0.1", "verify-full", &other_ca), "UnknownIssuer"),
        (good("localhost", "verify-ca", &other_ca), "UnknownIssuer"),
        (mismatch("verify-full"), "not valid for name \"db.invalid\""),
    ] {
        for command in [&["stats", "--json"][..], &["migrate"][..]] {
            let out = run_once(command, &[("DATABASE_URL", &url)]);
            assert_eq!(out.code, Some(1), "{command:?} {url}: {}", out.stderr);
            let lines: Vec<&str> = out.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line on stderr: {}", out.stderr);
            assert!(lines[0].starts_with("webhookd: error: "), "{}", lines[0]);
            assert!(
                lines[0].contains("certificate") && lines[0].contains(cause),
                "{}",
                lines[0]
            );
            assert!(!lines[0].contains("canary-db-pw"), "{}", lines[0]);
            assert!(out.stdout.is_empty(), "{command:?} printed {}", out.stdout);
        }
    }
    // `run` refuses to start on a wrong CA too, and says why.
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut service = Proc::start(
        "run",
        &good("127.0.0.1", "verify-full", &other_ca),
        "badca",
        &[("SERVER_ADDR", &format!("127.0.0.1:{api_port}"))],
    );
    assert_eq!(service.wait_exit(WAIT).await, Some(1));
    let logs = service.logs();
    let last = logs.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("webhookd: error: ") && last.contains("UnknownIssuer"),
        "{logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");
}
