//! Faults that need real processes: several `webhookd work` processes sharing a queue,
//! `kill -9`, SIGSTOP past the lease, SIGTERM under load, and a PostgreSQL restart.
//! These drive the built binary the way an operator would.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::pg::PrivatePg;
use common::process::{Proc, BIN};
use common::receiver::Receiver;
use common::{eventually, TestDb};

/// Puts `n` events straight into the queue (as the API would, URL built) and announces them.
async fn seed(db: &TestDb, url: &str, n: i64) {
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO webhook_configs (name, postback_url) VALUES ('p', '{url}') ON CONFLICT DO NOTHING;
             INSERT INTO webhook_queue (event_type, event_id, config_id, webhook_url, max_retries)
             SELECT '+credit', 'e' || g, (SELECT id FROM webhook_configs WHERE name = 'p'), '{url}?n=' || g, 6
             FROM generate_series(1, {n}) g;
             NOTIFY webhook_queue_new;"
        ))
        .await
        .unwrap();
}

/// A receiver, and a fresh database whose queue holds `n` events to `path` on it.
async fn seeded(path: &str, n: i64) -> (Receiver, TestDb) {
    let receiver = Receiver::start().await;
    let db = TestDb::new().await;
    seed(&db, &receiver.url(path), n).await;
    (receiver, db)
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.count(sql).await
}

/// How many times the receiver saw each X-Webhook-Id.
fn calls_per_id(receiver: &Receiver, prefix: &str) -> HashMap<String, usize> {
    let mut calls = HashMap::new();
    for r in receiver.received_at(prefix) {
        *calls
            .entry(r.header("X-Webhook-Id").to_string())
            .or_insert(0) += 1;
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_work_processes_call_every_event_exactly_once() {
    let (receiver, db) = seeded("/ok/three", 3000).await;
    let procs: Vec<Proc> = (0..3)
        .map(|i| Proc::start("work", &db.url, &format!("p{i}"), &[]))
        .collect();
    eventually(
        Duration::from_secs(60),
        "all 3000 rows completed",
        || async { db.count_with_status("completed").await == 3000 },
    )
    .await;
    let calls = calls_per_id(&receiver, "/ok/three");
    assert_eq!(calls.len(), 3000, "every event was called");
    let repeated: Vec<_> = calls.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "called more than once: {repeated:?}");
    // The work was shared: every process delivered some of it.
    for i in 0..3 {
        let by_proc = count(
            &db,
            &format!("SELECT count(*) FROM webhook_queue WHERE worker_id LIKE 'p{i}-%'"),
        )
        .await;
        assert!(by_proc > 0, "process p{i} delivered nothing");
    }
    drop(procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_and_duplicates_at_most_the_rows_the_dead_worker_held() {
    let (receiver, db) = seeded("/slow/400/kill", 200).await;
    let mut victim = Proc::start("work", &db.url, "victim", &[]);
    eventually(
        Duration::from_secs(10),
        "the victim to have finished some rows",
        || async { db.count_with_status("completed").await >= 20 },
    )
    .await;
    victim.signal("KILL");
    victim.wait_exit(Duration::from_secs(5)).await;
    let held = count(
        &db,
        "SELECT count(*) FROM webhook_queue WHERE status = 'processing' AND worker_id LIKE 'victim-%'",
    )
    .await;
    assert!(held > 0, "the victim held rows when it died");
    let completed_by_victim = count(
        &db,
        "SELECT count(*) FROM webhook_queue WHERE status = 'completed' AND worker_id LIKE 'victim-%'",
    )
    .await;

    let _rescuer = Proc::start("work", &db.url, "rescuer", &[]);
    eventually(
        Duration::from_secs(60),
        "every row completed after the lease expired",
        || async { db.count_with_status("completed").await == 200 },
    )
    .await;
    let calls = calls_per_id(&receiver, "/slow/400/kill");
    assert_eq!(calls.len(), 200, "every event reached the partner");
    let duplicated = calls.values().filter(|n| **n > 1).count() as i64;
    assert!(
        duplicated <= held,
        "{duplicated} duplicates but the victim held only {held}"
    );
    // Rows the victim finished were not called again.
    assert!(completed_by_victim > 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM webhook_queue WHERE worker_id LIKE 'victim-%'"
        )
        .await,
        completed_by_victim
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_its_lease_cannot_overwrite_the_new_owners_outcome() {
    let (receiver, db) = seeded("/slow/500/pause", 10).await;
    let sleeper = Proc::start("work", &db.url, "sleeper", &[("WORKER_COUNT", "1")]);
    eventually(
        Duration::from_secs(10),
        "the sleeper to be mid-call",
        || async { receiver.received_at("/slow/500/pause").len() >= 10 },
    )
    .await;
    sleeper.signal("STOP");
    // Past the 3 s lease, another worker takes the rows over and completes them.
    let _other = Proc::start("work", &db.url, "other", &[]);
    eventually(Duration::from_secs(20), "the other worker to complete every row", || async {
        count(&db, "SELECT count(*) FROM webhook_queue WHERE status = 'completed' AND worker_id LIKE 'other-%'").await
            == 10
    })
    .await;
    let snapshot =
        "SELECT string_agg(id || status || worker_id || retry_count || retry_0_started_at::text
                                      || coalesce(retry_1_started_at::text, '-'), ',' ORDER BY id)
                    FROM webhook_queue";
    let client = db.client().await;
    let before: String = client.query_one(snapshot, &[]).await.unwrap().get(0);
    sleeper.signal("CONT");
    eventually(
        Duration::from_secs(10),
        "the sleeper to report its lost leases",
        || async { sleeper.logs().matches("lease lost").count() >= 10 },
    )
    .await;
    let after: String = client.query_one(snapshot, &[]).await.unwrap().get(0);
    assert_eq!(
        before, after,
        "a stale worker changed rows it no longer held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_in_time_and_leaves_nothing_processing() {
    let (receiver, db) = seeded("/slow/300/term", 300).await;
    let mut first = Proc::start("work", &db.url, "first", &[("WORKER_LOCK_DURATION", "60s")]);
    eventually(Duration::from_secs(10), "calls under way", || async {
        receiver.received_at("/slow/300/term").len() >= 30
    })
    .await;
    first.signal("TERM");
    // The process times its own grace period (SHUTDOWN_TIMEOUT 3 s, ten times the 0.3 s
    // calls) and says when it runs out; the test only bounds the whole wait generously.
    let code = first.wait_exit(Duration::from_secs(60)).await;
    let logs = first.logs();
    assert_eq!(code, Some(0), "exit code; logs:\n{logs}");
    let stopping = logs
        .find("shutting down workers")
        .unwrap_or_else(|| panic!("no graceful stop began; logs:\n{logs}"));
    assert!(
        logs[stopping..].contains("workers stopped"),
        "the workers did not report a clean stop; logs:\n{logs}"
    );
    assert!(
        !logs.contains("shutdown grace period over"),
        "calls under way outlasted the grace period; logs:\n{logs}"
    );
    let left = count(
        &db,
        "SELECT count(*) FROM webhook_queue WHERE status = 'processing' AND worker_id LIKE 'first-%'",
    )
    .await;
    assert_eq!(left, 0, "rows left processing by the stopped worker");
    assert!(db.count_with_status("pending").await > 0);

    // The lease was 60 s, yet a new worker finishes the rest at once: the rows were handed back.
    let _second = Proc::start("work", &db.url, "second", &[]);
    eventually(
        Duration::from_secs(30),
        "the new worker to finish the rest",
        || async { db.count_with_status("completed").await == 300 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_under_load_loses_no_accepted_event() {
    let receiver = Receiver::start().await;
    let pg = PrivatePg::start();
    let migrate = Command::new(BIN)
        .args([
            "migrate",
            "--database-url",
            &pg.url(),
            "--log-level",
            "error",
        ])
        .status()
        .unwrap();
    assert!(migrate.success());
    let (_service, api) = Proc::serve(&pg.url(), "svc");
    common::receiver::wait_http_ok(&format!("{api}/health"), Duration::from_secs(10)).await;
    let http = common::http_client();
    let config: serde_json::Value = serde_json::from_str(
        &http
            .post(format!("{api}/webhook-configs"))
            .header("Content-Type", "application/json")
            .body(
                serde_json::json!({"name": "p", "postback_url": receiver.url("/ok/restart")})
                    .to_string(),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();

    // The submitter runs until told to stop, noting for each accepted event the phase of the
    // restart its request was sent in; the test moves on when the submitter has seen each phase.
    const BEFORE: u8 = 0;
    const DOWN: u8 = 1;
    const AFTER: u8 = 2;
    #[derive(Default)]
    struct Seen {
        accepted: Vec<(u8, String)>,
        refused: usize,
    }
    let phase = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(BEFORE));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
    let submit = {
        let (http, api, config_id) = (http.clone(), api.clone(), config["id"].clone());
        let (phase, done, seen) = (phase.clone(), done.clone(), seen.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::SeqCst) {
                i += 1;
                let sent_in = phase.load(Ordering::SeqCst);
                let body = serde_json::json!({"event_type": "+credit", "event_id": format!("r{i}"), "config_id": config_id});
                let response = http
                    .post(format!("{api}/webhooks"))
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 201 => {
                        let entry: serde_json::Value =
                            serde_json::from_str(&r.text().await.unwrap()).unwrap();
                        let id = entry["queue_id"].as_str().unwrap().to_string();
                        seen.lock().unwrap().accepted.push((sent_in, id));
                    }
                    _ => seen.lock().unwrap().refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let accepted_in = |p: u8| {
        let seen = seen.lock().unwrap();
        seen.accepted.iter().filter(|(at, _)| *at == p).count()
    };
    eventually(
        Duration::from_secs(30),
        "events accepted before the restart",
        || async { accepted_in(BEFORE) >= 20 },
    )
    .await;
    pg.down();
    phase.store(DOWN, Ordering::SeqCst);
    eventually(
        Duration::from_secs(30),
        "the API to notice the restart",
        || async { seen.lock().unwrap().refused > 0 },
    )
    .await;
    pg.up();
    phase.store(AFTER, Ordering::SeqCst);
    eventually(
        Duration::from_secs(30),
        "the API to accept events after the restart",
        || async { accepted_in(AFTER) >= 20 },
    )
    .await;
    done.store(true, Ordering::SeqCst);
    submit.await.unwrap();
    let accepted = std::mem::take(&mut seen.lock().unwrap().accepted);
    eventually(
        Duration::from_secs(30),
        "every accepted event delivered",
        || async {
            let calls = calls_per_id(&receiver, "/ok/restart");
            accepted.iter().all(|(_, id)| calls.contains_key(id))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_database_and_is_idempotent_even_when_run_concurrently() {
    let name = format!("webhookd_migrate_{}", uuid::Uuid::new_v4().simple());
    let mut url = url::Url::parse(&common::base_url()).unwrap();
    url.set_path(&format!("/{name}"));
    let runs: Vec<_> = (0..4)
        .map(|_| {
            Command::new(BIN)
                .args([
                    "migrate",
                    "--log-level",
                    "error",
                    "--database-url",
                    url.as_str(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = runs
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outputs {
        assert!(
            o.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let stdout: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect();
    assert_eq!(
        stdout.iter().filter(|s| s.starts_with("applied")).count(),
        1,
        "{stdout:?}"
    );
    assert_eq!(
        stdout.iter().filter(|s| s.contains("up to date")).count(),
        3,
        "{stdout:?}"
    );
    let again = Command::new(BIN)
        .args([
            "migrate",
            "--log-level",
            "error",
            "--database-url",
            url.as_str(),
        ])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "database is up to date"
    );
    common::admin()
        .await
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// `run` migrates before it serves, and says so in its log only: a log pipeline that reads a
/// container's output with `LOG_FORMAT=json` must get JSON lines and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_writes_only_json_log_lines() {
    let db = TestDb::new().await;
    let (mut service, api) = Proc::serve(&db.url, "quiet");
    common::receiver::wait_http_ok(&format!("{api}/health"), Duration::from_secs(30)).await;
    service.signal("TERM");
    assert_eq!(service.wait_exit(Duration::from_secs(60)).await, Some(0));
    assert_eq!(service.stdout(), "", "run wrote on stdout");
    let logs = service.logs();
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    assert!(logs.contains("database migrated"), "{logs}");
}
