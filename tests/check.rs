//! `webhookd check` and the pruner's heals (docs/operations.md, "Invariants and `webhookd
//! check`"): each invariant broken by hand with SQL in a database of its own, reported by the
//! binary (`check --json`, exit 1), healed by one pruner pass, then reported whole (exit 0).

mod common;

use std::time::Duration;

use common::fixture::{queue_id, Event};
use common::process::{run_once, Proc};
use common::{eventually, spawn, Options, TestApp};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use webhookd::application::retention::{self, Pass, Pruned};
use webhookd::config::RetentionSettings;

const WAIT: Duration = Duration::from_secs(15);
/// The `CIRCUIT_PROBE_INTERVAL` the passes of these tests give a tripped partner.
const PROBE_INTERVAL: Duration = Duration::from_millis(4321);

const INVARIANTS: [&str; 4] = [
    "stale_credit_wait",
    "processing_without_lease",
    "tripped_without_probe",
    "counters_drift",
];

/// `webhookd check --json` on the app's database: its exit code and its document.
fn check(app: &TestApp) -> (Option<i32>, Value) {
    let out = run_once(
        &["check", "--json"],
        &[("DATABASE_URL", &app.db.url), ("LOG_LEVEL", "error")],
    );
    let document: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON document on stdout ({e}): {}", out.stdout));
    (out.code, document)
}

/// Asserts that `check` finds `invariant` broken `count` times (and nothing else broken),
/// with `example` among its examples.
fn assert_broken(app: &TestApp, invariant: &str, count: i64, example: Option<&str>) {
    let (code, document) = check(app);
    assert_eq!(code, Some(1), "{document:#}");
    assert_eq!(document["ok"], false);
    assert_eq!(document["broken"], 1, "{document:#}");
    let found = &document["invariants"][invariant];
    assert_eq!(found["count"], count, "{document:#}");
    if let Some(example) = example {
        let examples = found["examples"].as_array().unwrap();
        assert!(
            examples.iter().any(|e| e == example),
            "{example} not in {document:#}"
        );
    }
}

fn assert_whole(app: &TestApp) {
    let (code, document) = check(app);
    assert_eq!(code, Some(0), "{document:#}");
    assert_eq!(document["ok"], true);
    assert_eq!(document["unchecked"], 0, "{document:#}");
    assert_eq!(
        document["invariants"].as_object().map(|i| i.len()),
        Some(INVARIANTS.len()),
        "{document:#}"
    );
    for invariant in INVARIANTS {
        assert_eq!(
            document["invariants"][invariant],
            json!({"count": 0, "examples": [], "checked": true}),
            "{document:#}"
        );
    }
}

/// One pruner pass, as the pruner service of a `work` process runs it.
async fn pass(app: &TestApp) -> Pruned {
    let settings = RetentionSettings {
        completed: None,
        failed: None,
        interval: Duration::from_secs(60),
    };
    match retention::prune_once(
        &app.db.url,
        &settings,
        PROBE_INTERVAL,
        Some(Duration::from_secs(60)),
        &CancellationToken::new(),
        |_| {},
    )
    .await
    .expect("the pass runs")
    {
        Pass::Done(pruned) => pruned,
        Pass::Busy => panic!("no other process prunes this database"),
    }
}

const CREDIT_URL: &str = "http://127.0.0.1:9/credit/{event_id}";
const DEBIT_URL: &str = "http://127.0.0.1:9/debit/{event_id}";

async fn app_with_partner() -> (TestApp, i64) {
    let app = spawn(Options::default()).await;
    let config = app.config("p", CREDIT_URL, DEBIT_URL).await;
    (app, config)
}

async fn submit(app: &TestApp, event_type: &str, event_id: &str, config: i64) -> String {
    let entry = Event::of(event_type)
        .id(event_id)
        .to(config)
        .submit(app)
        .await;
    queue_id(&entry)
}

/// Runs `sql`; `Err` with the SQLSTATE when the database refuses it.
async fn try_sql(app: &TestApp, sql: &str) -> Result<u64, String> {
    app.db
        .client()
        .await
        .execute(sql, &[])
        .await
        .map_err(|e| e.code().map(|c| c.code().to_string()).unwrap_or_default())
}

async fn sql(app: &TestApp, sql: &str) -> u64 {
    try_sql(app, sql).await.expect("the statement runs")
}

async fn text(app: &TestApp, sql: &str) -> Option<String> {
    app.db
        .client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

/// Asserts that the check finds `invariant` broken once, by `example`, and that every
/// invariant holds after one pruner pass; what that pass did.
async fn assert_one_pass_repairs(app: &TestApp, invariant: &str, example: &str) -> Pruned {
    assert_broken(app, invariant, 1, Some(example));
    let pruned = pass(app).await;
    assert_whole(app);
    pruned
}

/// PostgreSQL's `check_violation`.
const CHECK_VIOLATION: &str = "23514";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_queue_passes_with_every_count_zero() {
    let (app, config) = app_with_partner().await;
    submit(&app, "+credit", "e-1", config).await;
    submit(&app, "-debit", "e-1", config).await;
    submit(&app, "+credit", "e-2", config).await;
    assert_whole(&app);

    let table = run_once(
        &["check"],
        &[("DATABASE_URL", &app.db.url), ("LOG_LEVEL", "error")],
    );
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    assert!(
        table.stdout.contains("all invariants hold"),
        "{}",
        table.stdout
    );
    for invariant in INVARIANTS {
        assert!(table.stdout.contains(invariant), "{}", table.stdout);
    }
    let pruned = pass(&app).await;
    assert_eq!(
        pruned.healed().iter().map(|(_, n)| n).sum::<i64>(),
        0,
        "{pruned:?}"
    );

    let (status, document) = app.get("/webhooks/check").await;
    assert_eq!(status, 200, "{document}");
    assert_eq!(document["ok"], true);
    assert_eq!(document["broken"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debit_waiting_for_a_credit_that_does_not_exist_is_reported_and_released() {
    let (app, config) = app_with_partner().await;
    let debit = submit(&app, "-debit", "lonely", config).await;
    sql(
        &app,
        &format!(
            "UPDATE webhook_queue SET held_reason = 'waiting_for_credit' WHERE queue_id = '{debit}'"
        ),
    )
    .await;
    let pruned = assert_one_pass_repairs(&app, "stale_credit_wait", &debit).await;
    assert_eq!(pruned.stranded_debits, 1, "{pruned:?}");
    let held = text(
        &app,
        &format!("SELECT held_reason FROM webhook_queue WHERE queue_id = '{debit}'"),
    )
    .await;
    assert_eq!(held, None);
}

/// A partner's hold is read from its state where rows are claimed, never stored on rows, so no
/// invariant watches for a row held for an active partner: the database refuses the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_hold_cannot_be_stored_on_a_row() {
    let (app, config) = app_with_partner().await;
    let credit = submit(&app, "+credit", "held", config).await;
    for reason in ["partner_paused", "partner_tripped"] {
        let stored = try_sql(
            &app,
            &format!(
                "UPDATE webhook_queue SET held_reason = '{reason}' WHERE queue_id = '{credit}'"
            ),
        )
        .await;
        assert_eq!(stored, Err(CHECK_VIOLATION.to_string()), "{reason}");
    }
    assert_whole(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processing_row_without_a_lease_is_reported_and_given_one_that_has_run_out() {
    let (app, config) = app_with_partner().await;
    let credit = submit(&app, "+credit", "stuck", config).await;
    submit(&app, "+credit", "fine", config).await;
    sql(
        &app,
        &format!(
            "UPDATE webhook_queue SET status = 'processing', locked_at = now(), lock_expires_at = NULL
             WHERE queue_id = '{credit}'"
        ),
    )
    .await;
    let pruned = assert_one_pass_repairs(&app, "processing_without_lease", &credit).await;
    assert_eq!(pruned.leases_expired, 1, "{pruned:?}");
    let expired = text(
        &app,
        &format!(
            "SELECT (lock_expires_at <= now())::text FROM webhook_queue WHERE queue_id = '{credit}'"
        ),
    )
    .await;
    assert_eq!(expired.as_deref(), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tripped_partner_without_a_probe_time_is_reported_and_given_a_probe_now() {
    let (app, config) = app_with_partner().await;
    submit(&app, "+credit", "waits", config).await;
    let broken = try_sql(
        &app,
        &format!(
            "UPDATE webhook_partner_state
             SET state = 'tripped', reason = 'failures', since = now(), probe_at = NULL,
                 probe_interval_ms = NULL
             WHERE config_id = {config}"
        ),
    )
    .await;
    match broken {
        Err(code) if code == CHECK_VIOLATION => {
            assert_whole(&app);
            return;
        }
        Err(code) => panic!("the update failed with {code}"),
        Ok(rows) => assert_eq!(rows, 1),
    }
    let pruned = assert_one_pass_repairs(&app, "tripped_without_probe", &config.to_string()).await;
    assert_eq!(pruned.probes_scheduled, 1, "{pruned:?}");
    let probe = text(
        &app,
        &format!(
            "SELECT state || ' ' || (probe_at <= now())::text || ' ' || probe_interval_ms
             FROM webhook_partner_state WHERE config_id = {config}"
        ),
    )
    .await;
    assert_eq!(probe.as_deref(), Some("tripped true 4321"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drifted_counters_are_reported_in_the_api_and_metrics_and_recounted() {
    let (app, config) = app_with_partner().await;
    for (event_type, event_id) in [("+credit", "a"), ("+credit", "b"), ("-debit", "c")] {
        submit(&app, event_type, event_id, config).await;
    }
    let stats_before = app.get("/webhooks/stats").await.1;
    // One cell counted too high, one that has no row at all.
    sql(
        &app,
        &format!(
            "UPDATE webhook_queue_tallies SET queued = queued + 3
             WHERE (shard, config_id, event_type) IN (
                 SELECT shard, config_id, event_type FROM webhook_queue_tallies
                 WHERE config_id = {config} AND event_type = '+credit' AND queued > 0
                 LIMIT 1)"
        ),
    )
    .await;
    sql(
        &app,
        &format!(
            "INSERT INTO webhook_queue_tallies (shard, config_id, event_type, failed)
             VALUES (99, {config}, '-debit', 4)"
        ),
    )
    .await;
    assert_broken(
        &app,
        "counters_drift",
        2,
        Some(&format!(
            "config {config} +credit pending: counted 5, actual 2"
        )),
    );

    // The API checks when asked (its last check is older than RETENTION_INTERVAL: there is
    // none), the console's warning and the gauges read that check.
    let (status, document) = app.get("/webhooks/check").await;
    assert_eq!(status, 200, "{document}");
    assert_eq!(document["ok"], false);
    assert_eq!(document["invariants"]["counters_drift"]["count"], 2);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"webhookd_invariant_violations{invariant="counters_drift"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"webhookd_invariant_violations{invariant="stale_credit_wait"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("webhookd_invariants_checked_timestamp_seconds "),
        "{metrics}"
    );

    let pruned = pass(&app).await;
    assert_eq!(pruned.counter_cells_recounted, 2, "{pruned:?}");
    assert_whole(&app);
    let stats_after = app.get("/webhooks/stats").await.1;
    assert_eq!(stats_after["by_status"], stats_before["by_status"]);
    assert_eq!(stats_after["by_partner"], stats_before["by_partner"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruner_of_a_work_process_heals_and_says_so_in_its_log() {
    let (app, config) = app_with_partner().await;
    let broken = try_sql(
        &app,
        &format!(
            "UPDATE webhook_partner_state
             SET state = 'tripped', reason = 'failures', since = now(), probe_at = NULL
             WHERE config_id = {config}"
        ),
    )
    .await;
    if broken == Err(CHECK_VIOLATION.to_string()) {
        return;
    }
    assert_broken(&app, "tripped_without_probe", 1, None);
    let work = Proc::start(
        "work",
        &app.db.url,
        "check-pruner",
        &[("RETENTION_INTERVAL", "200ms")],
    );
    eventually(WAIT, "the pruner's pass healing", || async {
        work.logs().contains(r#""probes_scheduled":1"#)
    })
    .await;
    assert_whole(&app);
}

#[test]
fn an_unreachable_database_is_a_one_line_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_once(
        &["check", "--json"],
        &[(
            "DATABASE_URL",
            &format!("postgres://postgres@127.0.0.1:{port}/webhookd"),
        )],
    );
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("webhookd: error: "), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recount_while_events_are_submitted_loses_none_of_them() {
    let (app, config) = app_with_partner().await;
    let app = std::sync::Arc::new(app);
    let submitter = {
        let app = app.clone();
        tokio::spawn(async move {
            for n in 0..300 {
                submit(&app, "+credit", &format!("busy-{n}"), config).await;
            }
        })
    };
    let mut recounted = 0;
    while !submitter.is_finished() {
        sql(
            &app,
            &format!(
                "INSERT INTO webhook_queue_tallies (shard, config_id, event_type, failed)
                 VALUES (99, {config}, '-debit', 1)
                 ON CONFLICT (shard, config_id, event_type) DO UPDATE SET failed = webhook_queue_tallies.failed + 1"
            ),
        )
        .await;
        recounted += pass(&app).await.counter_cells_recounted;
    }
    submitter.await.unwrap();
    assert!(recounted > 0, "no pass recounted");
    assert_whole(&app);
    let (_, stats) = app.get("/webhooks/stats").await;
    assert_eq!(stats["by_status"]["pending"], 300, "{stats:#}");
}
