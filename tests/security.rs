//! Safety against the real thing: bearer auth, the outbound address policy with a listener
//! that must see nothing, redirects, secrets kept out of logs and error bodies, and hostile
//! bodies. Signing (`signing.rs`), ingest rate limits (`rate_limits.rs`) and TLS to
//! PostgreSQL (`postgres_tls.rs`) have files of their own.

mod common;

use std::time::{Duration, Instant};

use common::fixture::{never_called, one_credit, Event, Partner};
use common::receiver::Receiver;
use common::scenario::delivering;
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
    let app = spawn(Options::workers("OUTBOUND_ALLOW_NETWORKS=")).await;

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
        let config = json!({"name": format!("lit{i}"), "postback_url": url});
        let (status, body) = app.post("/webhook-configs", config).await;
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
    let entry = one_credit(&app, "by-name", &by_name, 0).await;
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
    let app = spawn(Options::workers("OUTBOUND_ALLOW_NETWORKS=")).await;
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
    let (receiver, app) = delivering("OUTBOUND_ALLOW_NETWORKS=127.0.0.0/8").await;
    let port = receiver.port();
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
        app.wait_entry(&entry, "completed", WAIT).await;
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
    let app = spawn(Options::workers("OUTBOUND_ALLOW_NETWORKS=127.0.0.1/32")).await;

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
    let entry = one_credit(
        &app,
        "redirector",
        &allowed.url(&format!("/redirect/pb?to={to}")),
        0,
    )
    .await;
    let done = app.wait_entry(&entry, "failed", WAIT).await;
    assert_eq!(done["attempts"][0]["http_status"], 302, "{done:#}");
    assert_eq!(allowed.received_at("/redirect/pb").len(), 1);
    let followed = target.received();
    assert!(
        followed.is_empty(),
        "the redirect was followed: {followed:?}"
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
        let config = Partner::new(name)
            .postback(&url)
            .max_retries(max_retries)
            .create(&app)
            .await;
        let entry = Event::credit(name)
            .to(config)
            .params(params.clone())
            .submit(&app)
            .await;
        assert!(
            entry["webhook_url"].as_str().unwrap().contains(PARAM),
            "the canary is in the URL called"
        );
        ids.push(entry["queue_id"].as_str().unwrap().to_string());
        config_ids.push(config);
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
    let config = never_called(&app).await;
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
