//! Operating it: `/metrics` in the OpenMetrics text format, `GET /webhooks/throughput`, and the
//! dashboard at `/`, driven by a real headless Chromium.
//!
//! The browser test needs Debian's `chromium` (`apt-get install -y chromium chromium-driver`;
//! `.ci/run` installs it). Without it the test fails and says so; `CHROMIUM=/path` picks
//! another binary.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::scenario::{delivering, with_receiver};
use common::{spawn, Options, TestApp};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "observe-token";

// ---------------------------------------------------------------------------------------------
// The exposition format

/// One sample line: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A parsed OpenMetrics text exposition.
#[derive(Debug)]
struct Exposition {
    /// Family name → type, from `# TYPE`.
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the series `name` whose labels are exactly `labels` (in any order).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    /// Like `value`, with an absent series read as 0 (a counter not yet touched).
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(raw: &str) -> Result<f64, String> {
    match raw {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => raw.parse().map_err(|_| format!("{raw:?} is not a number")),
    }
}

/// `{k="v",…}` → pairs, honouring the `\\`, `\"` and `\n` escapes.
fn parse_labels(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\" in {raw:?}"))?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {raw:?}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {raw:?}")),
            }
        };
        labels.push((name.to_string(), value));
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(more) if !more.is_empty() => more,
            Some(_) => return Err(format!("trailing comma in {raw:?}")),
            None if rest.is_empty() => rest,
            None => return Err(format!("junk after a label value in {raw:?}")),
        };
    }
    Ok(labels)
}

/// Checks the OpenMetrics text format line by line: `# TYPE`/`# HELP`/`# UNIT` well-formed,
/// every sample `name{labels} value` of a declared family, and `# EOF` last.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    const TYPES: [&str; 8] = [
        "counter",
        "gauge",
        "histogram",
        "gaugehistogram",
        "summary",
        "info",
        "stateset",
        "unknown",
    ];
    const SUFFIXES: [&str; 7] = [
        "", "_total", "_created", "_bucket", "_count", "_sum", "_info",
    ];
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("the exposition does not end with \"# EOF\\n\"")?;
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let at = |message: String| format!("line {}: {message}: {line:?}", n + 1);
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name
                .filter(|n| is_metric_name(n))
                .ok_or_else(|| at("bad metric name".into()))?;
            match (kind, rest) {
                (Some("TYPE"), Some(t)) if TYPES.contains(&t) => {
                    if types.insert(name.to_string(), t.to_string()).is_some() {
                        return Err(at("family declared twice".into()));
                    }
                }
                (Some("HELP"), Some(_)) => {}
                (Some("UNIT"), Some(unit)) if name.ends_with(&format!("_{unit}")) => {}
                _ => return Err(at("not a TYPE, HELP or UNIT line".into())),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value".into()))?;
        let value = parse_value(value).map_err(at)?;
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .ok_or_else(|| at("unclosed label set".into()))?;
                (name, parse_labels(labels).map_err(at)?)
            }
            None => (series, Vec::new()),
        };
        if !is_metric_name(name) {
            return Err(at("bad metric name".into()));
        }
        let declared = SUFFIXES.iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|family| types.contains_key(family))
        });
        if !declared {
            return Err(at("sample of no declared family".into()));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(Exposition { types, samples })
}

#[test]
fn the_exposition_checker_rejects_malformed_text() {
    let good = "# HELP a_total Things.\n# TYPE a counter\na_total{k=\"v\\\"\"} 1\n# EOF\n";
    let parsed = parse_exposition(good).unwrap();
    assert_eq!(parsed.value("a_total", &[("k", "v\"")]), Some(1.0));
    for bad in [
        "# TYPE a counter\na_total 1\n",                  // no EOF
        "# TYPE a counter\na_total one\n# EOF\n",         // not a number
        "# TYPE a counter\nb_total 1\n# EOF\n",           // undeclared family
        "# TYPE a counter\na_total{k=v} 1\n# EOF\n",      // unquoted label value
        "# TYPE a counter\na_total{k=\"v\",} 1\n# EOF\n", // trailing comma
        "# TYPE a countr\na_total 1\n# EOF\n",            // unknown type
        "# TYPE a counter\n# note\na_total 1\n# EOF\n",   // stray comment
        "# TYPE a counter\na_total 1\n# EOF\nx 1\n",      // text after EOF
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// GET with an optional bearer token: status, content type and body text.
async fn fetch(app: &TestApp, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = app.http.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("API answers");
    let status = response.status().as_u16();
    let content_type = common::http::content_type(&response);
    (status, content_type, response.text().await.unwrap())
}

async fn fetch_json(app: &TestApp, path: &str, token: Option<&str>) -> Value {
    let (status, _, body) = fetch(app, path, token).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn scrape(app: &TestApp) -> Exposition {
    let (status, content_type, body) = fetch(app, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    parse_exposition(&body)
        .unwrap_or_else(|e| panic!("/metrics is not OpenMetrics text: {e}\n{body}"))
}

/// POSTs JSON; asserts 201 and returns the body.
async fn create(app: &TestApp, token: Option<&str>, path: &str, body: Value) -> Value {
    let mut request = app
        .http
        .post(app.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("API answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "POST {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A config whose postback URL is `url`, with `max_retries` retries.
async fn config(
    app: &TestApp,
    token: Option<&str>,
    name: &str,
    url: &str,
    max_retries: i32,
) -> i64 {
    let body = json!({"name": name, "postback_url": url, "max_retries": max_retries});
    create(app, token, "/webhook-configs", body).await["id"]
        .as_i64()
        .unwrap()
}

/// Submits a `+credit` and returns its queue_id.
async fn submit(
    app: &TestApp,
    token: Option<&str>,
    config_id: i64,
    event_id: &str,
    params: Value,
) -> String {
    let body = json!({"event_type": "+credit", "event_id": event_id, "config_id": config_id,
        "url_params": params});
    create(app, token, "/webhooks", body).await["queue_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until the entry is `completed` or `failed`, and returns that status.
async fn settled(app: &TestApp, token: Option<&str>, queue_id: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let entry = fetch_json(app, &format!("/webhooks/{queue_id}"), token).await;
        let status = entry["status"].as_str().unwrap();
        if status == "completed" || status == "failed" {
            return status.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{queue_id} did not settle: {entry:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percent(rate: &Value) -> String {
    rate.as_f64()
        .map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

// ---------------------------------------------------------------------------------------------
// /metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_counters_rise_with_deliveries_and_queue_gauges_match_the_stats() {
    let (receiver, app) = delivering("").await;
    let ok = config(&app, None, "ok", &receiver.url("/ok/pb"), 6).await;
    let down = config(&app, None, "down", &receiver.url("/status/500/pb"), 0).await;
    let (ok_label, down_label) = (ok.to_string(), down.to_string());
    let success = [("outcome", "success"), ("config_id", ok_label.as_str())];
    let http_error = [
        ("outcome", "http_error"),
        ("config_id", down_label.as_str()),
    ];

    let before = scrape(&app).await;
    assert_eq!(
        before
            .types
            .get("webhookd_delivery_attempt_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert_eq!(before.value("webhookd_database_up", &[]), Some(1.0));
    let success_before = before.count("webhookd_delivery_attempts_total", &success);
    let errors_before = before.count("webhookd_delivery_attempts_total", &http_error);

    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(submit(&app, None, ok, &format!("ok-{n}"), json!({})).await);
    }
    for n in 0..2 {
        ids.push(submit(&app, None, down, &format!("down-{n}"), json!({})).await);
    }
    for id in &ids {
        settled(&app, None, id).await;
    }

    let after = scrape(&app).await;
    // A labelled family appears once it has a series.
    assert_eq!(
        after
            .types
            .get("webhookd_delivery_attempts")
            .map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        after.count("webhookd_delivery_attempts_total", &success) - success_before,
        5.0
    );
    assert_eq!(
        after.count("webhookd_delivery_attempts_total", &http_error) - errors_before,
        2.0
    );
    let histogram_count = after
        .value("webhookd_delivery_attempt_duration_seconds_count", &[])
        .unwrap();
    assert_eq!(histogram_count, 7.0);
    let inf_bucket = after
        .value(
            "webhookd_delivery_attempt_duration_seconds_bucket",
            &[("le", "+Inf")],
        )
        .unwrap();
    assert_eq!(inf_bucket, 7.0);
    assert_eq!(after.value("webhookd_claimed_rows_total", &[]), Some(7.0));
    assert_eq!(
        after.value("webhookd_outcomes_written_total", &[]),
        Some(7.0)
    );
    assert_eq!(after.value("webhookd_outcomes_stale_total", &[]), Some(0.0));
    assert!(
        after
            .value("webhookd_claim_duration_seconds_count", &[])
            .unwrap()
            >= 1.0
    );
    assert!(
        after
            .value("webhookd_outcome_write_duration_seconds_count", &[])
            .unwrap()
            >= 1.0
    );

    // The queue gauges are the stats document's counts.
    let stats = fetch_json(&app, "/webhooks/stats", None).await;
    for status in ["pending", "processing", "completed", "failed"] {
        assert_eq!(
            after.value("webhookd_queue_depth", &[("status", status)]),
            stats["by_status"][status].as_f64(),
            "{status}"
        );
    }
    assert_eq!(
        after.value("webhookd_queue_depth", &[("status", "completed")]),
        Some(5.0)
    );
    assert_eq!(
        after.value("webhookd_queue_depth", &[("status", "failed")]),
        Some(2.0)
    );
    assert_eq!(
        after.value("webhookd_queue_oldest_due_age_seconds", &[]),
        Some(0.0)
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_due_row_ages_while_no_worker_takes_it() {
    // API only: nothing claims the row, so it waits, due.
    let (receiver, app) = with_receiver(Options::default()).await;
    let ok = config(&app, None, "ok", &receiver.url("/ok/pb"), 0).await;
    let before_submit = Instant::now();
    submit(&app, None, ok, "waiting", json!({})).await;
    // The gauge grows past 0.3 s, and no scrape ever reads the row older than the time since
    // just before it was submitted (a millisecond for the stored timestamps' rounding).
    let metrics = loop {
        let metrics = scrape(&app).await;
        let age = metrics
            .value("webhookd_queue_oldest_due_age_seconds", &[])
            .unwrap();
        let bound = before_submit.elapsed().as_secs_f64() + 0.001;
        assert!(age <= bound, "age {age} s, submitted {bound} s ago");
        if age >= 0.3 {
            break metrics;
        }
        assert!(before_submit.elapsed() < WAIT, "age stuck at {age} s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        metrics.value("webhookd_queue_depth", &[("status", "pending")]),
        Some(1.0)
    );
    // An API-only process shows no worker metrics.
    assert!(!metrics.types.contains_key("webhookd_delivery_attempts"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_database_metrics_still_answer_and_say_so() {
    let app = spawn(Options::default()).await;
    let up = scrape(&app).await;
    assert_eq!(up.value("webhookd_database_up", &[]), Some(1.0));

    // A database that holds the queue's read forever: the scrape answers while the lock is
    // still held, so it gave up on the read by its own timeout instead of waiting for it.
    let locker = app.db.client().await;
    locker
        .batch_execute(
            "BEGIN; LOCK TABLE webhook_queue, webhook_queue_tallies IN ACCESS EXCLUSIVE MODE",
        )
        .await
        .unwrap();
    let held = scrape(&app).await;
    assert!(!held.types.contains_key("webhookd_queue_depth"));
    assert!(held.types.contains_key("webhookd_api_requests"));
    assert!(
        app.logs.text().contains("\"error\":\"timed out\""),
        "{}",
        app.logs.text()
    );
    locker.batch_execute("ROLLBACK").await.unwrap();

    // Shut the app out of its database: no new connections, the open ones cut.
    let admin = common::admin().await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';",
            name = app.db.name
        ))
        .await
        .unwrap();
    // The scrape answers (it is awaited, not timed) and says why the gauges are missing.
    let down = scrape(&app).await;
    assert!(
        app.logs.text().contains("queue gauges not read"),
        "{}",
        app.logs.text()
    );
    assert_eq!(down.value("webhookd_database_up", &[]), Some(0.0));
    assert!(!down.types.contains_key("webhookd_queue_depth"));
    assert!(!down
        .types
        .contains_key("webhookd_queue_oldest_due_age_seconds"));
    // The process's own metrics are still there.
    assert!(down.types.contains_key("webhookd_api_requests"));

    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            app.db.name
        ))
        .await
        .unwrap();
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_the_page_are_open_while_the_api_needs_the_token() {
    let app = spawn(Options::default().env("API_TOKEN", TOKEN)).await;
    let (status, _, body) = fetch(&app, "/webhooks/stats", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = fetch(&app, "/webhooks/stats", Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, _, _) = fetch(&app, "/webhooks/stats", Some(TOKEN)).await;
    assert_eq!(status, 200);

    let (status, content_type, page) = fetch(&app, "/", None).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(page.contains("data-testid=\"depth-completed\""));
    assert!(!page.contains(TOKEN));

    let metrics = scrape(&app).await;
    let stats_route = [("method", "GET"), ("route", "/webhooks/stats")];
    let with = |status: &'static str| {
        let mut labels = stats_route.to_vec();
        labels.push(("status", status));
        labels
    };
    assert_eq!(
        metrics.value("webhookd_api_requests_total", &with("401")),
        Some(2.0)
    );
    assert_eq!(
        metrics.value("webhookd_api_requests_total", &with("200")),
        Some(1.0)
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_are_counted_by_route_pattern_not_path() {
    let app = spawn(Options::default()).await;
    let ids = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
    for id in ids {
        let (status, _, _) = fetch(&app, &format!("/webhooks/{id}"), None).await;
        assert_eq!(status, 404);
    }
    let (status, _, _) = fetch(&app, "/webhook-configs/12345", None).await;
    assert_eq!(status, 404);
    let (status, _, _) = fetch(&app, "/no/such/route", None).await;
    assert_eq!(status, 404);

    let (_, _, text) = fetch(&app, "/metrics", None).await;
    let metrics = parse_exposition(&text).unwrap();
    let requests = "webhookd_api_requests_total";
    assert_eq!(
        metrics.value(
            requests,
            &[
                ("method", "GET"),
                ("route", "/webhooks/{queue_id}"),
                ("status", "404")
            ]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metrics.value(
            requests,
            &[
                ("method", "GET"),
                ("route", "/webhook-configs/{id}"),
                ("status", "404")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        metrics.value(
            requests,
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    for id in ids {
        assert!(
            !text.contains(&id.to_string()),
            "a raw path became a label: {text}"
        );
    }
    assert!(!text.contains("12345") && !text.contains("/no/such/route"));
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// /webhooks/throughput

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_counts_what_completed_and_failed_in_the_window() {
    let (receiver, app) = delivering("").await;
    let empty = fetch_json(&app, "/webhooks/throughput", None).await;
    assert_eq!(empty["points"], json!([]));
    assert_eq!(
        (empty["completed"].as_i64(), empty["failed"].as_i64()),
        (Some(0), Some(0))
    );

    let ok = config(&app, None, "ok", &receiver.url("/ok/pb"), 0).await;
    let down = config(&app, None, "down", &receiver.url("/status/500/pb"), 0).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(submit(&app, None, ok, &format!("ok-{n}"), json!({})).await);
    }
    for n in 0..2 {
        ids.push(submit(&app, None, down, &format!("down-{n}"), json!({})).await);
    }
    for id in &ids {
        settled(&app, None, id).await;
    }
    // A worker adds its settled rows to the throughput within a second.
    throughput_reaches(&app, None, (3, 2)).await;

    // `until` is sent with millisecond precision: compare at that precision.
    let before = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 3);
    let window = chrono::Duration::minutes(15);
    for (query, bucket) in [("?minutes=15", 1), ("?minutes=15&bucket_seconds=60", 60)] {
        let t = fetch_json(&app, &format!("/webhooks/throughput{query}"), None).await;
        assert_eq!(t["bucket_seconds"], bucket);
        let points = t["points"].as_array().unwrap();
        assert!(!points.is_empty(), "{t:#}");
        let since = chrono::DateTime::parse_from_rfc3339(t["since"].as_str().unwrap()).unwrap();
        let until = chrono::DateTime::parse_from_rfc3339(t["until"].as_str().unwrap()).unwrap();
        assert!(until >= before, "{t:#}");
        // `since` is the start of the bucket that holds `until - 15 min`.
        let span = until.signed_duration_since(since);
        assert!(
            span >= window && span < window + chrono::Duration::seconds(bucket),
            "{t:#}"
        );
        let mut previous = None;
        for p in points {
            let second =
                chrono::DateTime::parse_from_rfc3339(p["second"].as_str().unwrap()).unwrap();
            assert!(second >= since && second.timestamp() % bucket == 0, "{p}");
            assert!(previous < Some(second), "points are oldest first: {t:#}");
            previous = Some(second);
        }
        let sum = |key: &str| points.iter().map(|p| p[key].as_i64().unwrap()).sum::<i64>();
        assert_eq!((sum("completed"), sum("failed")), (3, 2), "{t:#}");
        assert_eq!(
            (t["completed"].as_i64(), t["failed"].as_i64()),
            (Some(3), Some(2))
        );
    }

    for bad in [
        "minutes=0",
        "minutes=1441",
        "minutes=ten",
        "bucket_seconds=0",
        "window=5",
    ] {
        let (status, _, body) = fetch(&app, &format!("/webhooks/throughput?{bad}"), None).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The dashboard, in a real browser

/// Debian's `chromium`, or `$CHROMIUM`; a missing browser fails the test with what to install.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed, and the dashboard test drives a real headless browser: \
                 install it with `apt-get install -y chromium chromium-driver` (.ci/run does), \
                 or point CHROMIUM at a Chromium binary"
            )
        })
}

/// Runs headless Chromium on `url` with `output_flag` (`--dump-dom`, `--screenshot=…`) in a
/// fresh profile, letting the page run for 5 s of virtual time; returns stdout.
async fn headless(url: String, output_flag: String) -> String {
    let browser = chromium();
    tokio::task::spawn_blocking(move || {
        let profile = std::env::temp_dir().join(format!(
            "webhookd-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-proxy-server",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,1500",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(output_flag)
            .arg(&url)
            .current_dir(&profile)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("chromium did not finish within 90 s on {url}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = child.wait_with_output().unwrap();
        let _ = std::fs::remove_dir_all(&profile);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            status.success(),
            "chromium failed ({status}): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    })
    .await
    .unwrap()
}

/// The serialized DOM after the page's scripts ran.
async fn dump_dom(url: String) -> String {
    let dom = headless(url, "--dump-dom".into()).await;
    assert!(dom.contains("</html>"), "chromium printed no DOM: {dom}");
    dom
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The start tag of the element with `data-testid="{testid}"`.
fn start_tag<'a>(dom: &'a str, testid: &str) -> Option<&'a str> {
    let at = dom.find(&format!("data-testid=\"{testid}\""))?;
    let open = dom[..at].rfind('<')?;
    let close = at + dom[at..].find('>')?;
    Some(&dom[open..=close])
}

/// The text of the element with `data-testid="{testid}"` (a leaf: its text up to the next tag).
fn text_of(dom: &str, testid: &str) -> Option<String> {
    let tag = start_tag(dom, testid)?;
    let start = dom.find(tag)? + tag.len();
    let end = start + dom[start..].find('<')?;
    Some(unescape(dom[start..end].trim()))
}

#[track_caller]
fn shows(dom: &str, testid: &str, expected: impl ToString) {
    assert_eq!(
        text_of(dom, testid).as_deref(),
        Some(expected.to_string().as_str()),
        "element data-testid={testid:?} on the page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser_shows_what_the_api_reports() {
    let browser = chromium(); // fail first, and clearly, when there is no browser
    let (receiver, app) = with_receiver(Options::with_workers().env("API_TOKEN", TOKEN)).await;
    let token = Some(TOKEN);
    // `mixed` answers by a parameter: `/ok/…` is 200, `/status/500/…` is 500.
    let mixed = config(
        &app,
        token,
        "mixed <&> partner",
        &receiver.url("/{kind}/500/pb"),
        0,
    )
    .await;
    let steady = config(&app, token, "steady", &receiver.url("/ok/steady"), 0).await;
    let down = config(&app, token, "down", &receiver.url("/status/503/down"), 0).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            submit(
                &app,
                token,
                mixed,
                &format!("m-ok-{n}"),
                json!({"kind": "ok"}),
            )
            .await,
        );
    }
    let mut failed = Vec::new();
    for n in 0..3 {
        failed.push(
            submit(
                &app,
                token,
                mixed,
                &format!("m-bad-{n}"),
                json!({"kind": "status"}),
            )
            .await,
        );
    }
    for n in 0..2 {
        ids.push(submit(&app, token, steady, &format!("s-{n}"), json!({})).await);
    }
    failed.push(submit(&app, token, down, "d-0", json!({})).await);
    for id in &ids {
        assert_eq!(settled(&app, token, id).await, "completed");
    }
    for id in &failed {
        assert_eq!(settled(&app, token, id).await, "failed");
    }
    throughput_reaches(&app, token, (7, 4)).await;

    let stats = fetch_json(&app, "/webhooks/stats", token).await;
    let throughput = fetch_json(&app, "/webhooks/throughput?minutes=15", token).await;
    let failures = fetch_json(&app, "/webhooks?status=failed&limit=10", token).await;
    assert_eq!(stats["by_status"]["completed"], 7);
    assert_eq!(stats["by_status"]["failed"], 4);

    let dom = dump_dom(app.url(&format!("/?token={TOKEN}"))).await;
    shows(&dom, "status", "live");
    for status in ["pending", "processing", "completed", "failed"] {
        shows(
            &dom,
            &format!("depth-{status}"),
            &stats["by_status"][status],
        );
    }
    shows(&dom, "depth-cancelled", &stats["cancelled"]);
    shows(&dom, "depth-total", &stats["total"]);
    shows(&dom, "success-rate", percent(&stats["success_rate"]));
    shows(&dom, "success-rate", "63.6%");
    let updated = text_of(&dom, "updated-at").unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&updated).is_ok(),
        "updated-at {updated:?}"
    );
    shows(&dom, "throughput-completed", &throughput["completed"]);
    shows(&dom, "throughput-failed", &throughput["failed"]);
    shows(&dom, "throughput-completed", 7);
    shows(&dom, "throughput-failed", 4);
    // The last minute moves on while the browser runs: the page's figure lies between ours
    // from before and after it.
    let later = fetch_json(&app, "/webhooks/stats", token).await;
    for key in ["completed_last_minute", "failed_last_minute"] {
        let on_page: i64 = text_of(&dom, &key.replace('_', "-"))
            .unwrap()
            .parse()
            .unwrap();
        let (low, high) = (later[key].as_i64().unwrap(), stats[key].as_i64().unwrap());
        assert!(
            (low..=high).contains(&on_page),
            "{key}: {on_page} not in {low}..={high}"
        );
    }
    assert!(start_tag(&dom, "chart-completed").is_some_and(|t| t.contains("points=")));

    for partner in stats["by_partner"].as_array().unwrap() {
        let id = format!("partner-{}", partner["config_id"]);
        shows(
            &dom,
            &format!("{id}-name"),
            partner["name"].as_str().unwrap(),
        );
        shows(
            &dom,
            &format!("{id}-completed"),
            &partner["by_status"]["completed"],
        );
        shows(
            &dom,
            &format!("{id}-failed"),
            &partner["by_status"]["failed"],
        );
        shows(
            &dom,
            &format!("{id}-rate"),
            percent(&partner["success_rate"]),
        );
        // Every partner of this test is active (none failed 10 times in a row).
        shows(
            &dom,
            &format!("{id}-state"),
            partner["state"].as_str().unwrap(),
        );
        shows(&dom, &format!("{id}-held"), &partner["held"]);
    }
    shows(&dom, &format!("partner-{mixed}-rate"), "62.5%");
    shows(&dom, &format!("partner-{mixed}-name"), "mixed <&> partner");
    shows(&dom, &format!("partner-{steady}-rate"), "100.0%");
    shows(&dom, &format!("partner-{down}-rate"), "0.0%");

    let items = failures["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    for item in items {
        let id = format!("failure-{}", item["queue_id"].as_str().unwrap());
        let last_error = item["last_error"].as_str().unwrap();
        shows(&dom, &format!("{id}-error"), last_error);
        shows(
            &dom,
            &format!("{id}-event-id"),
            item["event_id"].as_str().unwrap(),
        );
    }
    for id in &failed[..3] {
        shows(&dom, &format!("failure-{id}-error"), "HTTP 500");
        shows(&dom, &format!("failure-{id}-partner"), "mixed <&> partner");
    }
    shows(&dom, &format!("failure-{}-error", failed[3]), "HTTP 503");

    // Without a token the page asks for one and shows no numbers.
    let locked = dump_dom(app.url("/")).await;
    shows(&locked, "status", "token required");
    assert!(
        !start_tag(&locked, "auth").unwrap().contains("hidden"),
        "the token form is shown"
    );
    shows(&locked, "depth-completed", "-");

    // A picture, to look at: it must be a PNG of some substance.
    let shot = std::env::temp_dir().join("webhookd-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        app.url(&format!("/?token={TOKEN}")),
        format!("--screenshot={}", shot.display()),
    )
    .await;
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!(
        "dashboard screenshot ({}): {}",
        browser.display(),
        shot.display()
    );
    app.shutdown().await;
}

/// Waits until `GET /webhooks/throughput` counts `(completed, failed)` rows over the last
/// quarter hour: a worker adds the rows it settled at most a second later.
async fn throughput_reaches(app: &TestApp, token: Option<&str>, expected: (i64, i64)) {
    common::eventually(
        Duration::from_secs(10),
        "the settled rows in the throughput",
        || async {
            let t = fetch_json(app, "/webhooks/throughput?minutes=15", token).await;
            (t["completed"].as_i64(), t["failed"].as_i64()) == (Some(expected.0), Some(expected.1))
        },
    )
    .await;
}
