//! The delivery engine against a real PostgreSQL and a real receiver on loopback (SPEC §7).

mod common;

use std::time::Duration;

use common::fixture::one_credit;
use common::receiver::Receiver;
use common::scenario::{delivering, partner_on};
use common::{eventually, wait};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// One row of text: a query's column named `line`.
#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = diesel::sql_types::Text)]
    line: String,
}

/// The text a one-row query returns as `line`.
async fn line_of(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> String {
    let row: Line = diesel_async::RunQueryDsl::get_result(diesel::sql_query(sql), conn)
        .await
        .unwrap();
    row.line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_and_debit_reach_the_right_url_with_headers_and_complete_at_attempt_0() {
    let (receiver, app) = delivering("").await;
    let postback = "/ok/postback?src=net&uid={user_id}";
    let chargeback = "/ok/chargeback/{event_id}";
    let config = partner_on(&app, &receiver, "partner", postback, chargeback).await;

    let credit = app
        .submit(
            json!({"event_type": "+credit", "event_id": "tx 1", "config_id": config,
            "url_params": {"user_id": "u 1", "value": 100, "token": "t/k"}}),
        )
        .await;
    let debit = app
        .submit(json!({"event_type": "-debit", "event_id": "tx2", "config_id": config, "url_params": {"amount": "5"}}))
        .await;

    let credit_done = app.wait_entry(&credit, "completed", WAIT).await;
    let debit_done = app.wait_entry(&debit, "completed", WAIT).await;

    let postbacks = receiver.received_at("/ok/postback");
    assert_eq!(postbacks.len(), 1);
    let p = &postbacks[0];
    assert_eq!(p.query, "src=net&uid=u%201&token=t%2Fk&value=100");
    assert_eq!(
        p.header("X-Webhook-Id"),
        credit["queue_id"].as_str().unwrap()
    );
    assert_eq!(p.header("X-Webhook-Event"), "+credit");
    assert_eq!(p.header("X-Webhook-Attempt"), "0");
    assert!(
        p.header("User-Agent").starts_with("webhookd/"),
        "{:?}",
        p.headers
    );

    let chargebacks = receiver.received_at("/ok/chargeback");
    assert_eq!(chargebacks.len(), 1);
    assert_eq!(
        chargebacks[0].path_and_query(),
        "/ok/chargeback/tx2?amount=5"
    );
    assert_eq!(chargebacks[0].header("X-Webhook-Event"), "-debit");

    for done in [&credit_done, &debit_done] {
        assert_eq!(done["retry_count"], 0);
        assert!(done["completed_at"].is_string());
        let attempts = done["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{done:#}");
        assert_eq!(attempts[0]["attempt"], 0);
        assert_eq!(attempts[0]["http_status"], 200);
        assert_eq!(attempts[0]["response_body"], "ok");
        assert!(attempts[0]["error"].is_null());
        assert!(attempts[0]["duration_ms"].as_i64().unwrap() >= 0);
    }
    // The row itself, as an operator reads it.
    let client = app.db.client().await;
    let row = client
        .query_one(
            "SELECT status, retry_count, retry_0_http_status, retry_1_started_at IS NULL, worker_id IS NOT NULL,
                    locked_at IS NULL FROM webhook_queue WHERE queue_id = $1::text::uuid",
            &[&credit["queue_id"].as_str().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
    assert_eq!(row.get::<_, i32>(1), 0);
    assert_eq!(row.get::<_, Option<i32>>(2), Some(200));
    assert!(row.get::<_, bool>(3) && row.get::<_, bool>(4) && row.get::<_, bool>(5));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_failing_twice_then_succeeding_is_retried_within_the_backoff_bounds() {
    // A poll far beyond the test's whole wait: each retry is called because the app's own
    // timer woke a worker when the retry fell due, never because a poll came round.
    let (receiver, app) =
        delivering("RETRY_BASE_DELAY=200ms RETRY_JITTER=0.25 WORKER_POLL_INTERVAL=1h").await;
    wait::record_row_versions(&app.db).await;
    let config = partner_on(&app, &receiver, "flaky", "/flaky/2/pb", "/ok/cb").await;
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config, "url_params": {}}))
        .await;
    let queue_id = entry["queue_id"].as_str().unwrap();
    let done = app.wait_for_status(queue_id, "completed", WAIT).await;

    assert_eq!(done["retry_count"], 2);
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["http_status"], 500);
    assert_eq!(attempts[0]["error"], "HTTP 500");
    assert_eq!(attempts[1]["http_status"], 500);
    assert_eq!(attempts[2]["http_status"], 200);

    let calls = receiver.received_at("/flaky/2/pb");
    assert_eq!(calls.len(), 3);
    let attempt_headers: Vec<&str> = calls
        .iter()
        .map(|c| c.header("X-Webhook-Attempt"))
        .collect();
    assert_eq!(attempt_headers, ["0", "1", "2"]);
    // The schedule as the app stored it, to the microsecond: delay(1) = 200ms ± 25%,
    // delay(2) = 400ms ± 25%, each counted from the end of the attempt before; and each retry
    // started no earlier than it fell due. No wall-clock slack is needed for either.
    let schedule = wait::retry_schedule(&app.db, queue_id).await;
    assert_eq!(
        schedule.iter().map(|s| s.retry).collect::<Vec<_>>(),
        [1, 2],
        "{schedule:?}"
    );
    for (s, (low, high)) in schedule
        .iter()
        .zip([(150_000, 250_000), (300_000, 500_000)])
    {
        // A microsecond either way: both timestamps are rounded to microseconds when stored.
        assert!(
            (low - 1..=high + 1).contains(&s.delay_us),
            "retry {} scheduled {} µs after the attempt before",
            s.retry,
            s.delay_us
        );
        assert!(
            s.started_when_due,
            "retry {} started before it was due",
            s.retry
        );
    }
    // The partner saw no retry sooner than the shortest delay either.
    let gap1 = calls[1].at - calls[0].at;
    let gap2 = calls[2].at - calls[1].at;
    assert!(gap1 >= Duration::from_millis(150), "gap1 {gap1:?}");
    assert!(gap2 >= Duration::from_millis(300), "gap2 {gap2:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_attempt_fails_the_row_ends_failed_after_exactly_max_retries_plus_one_calls() {
    // 400, the event's own failure: a partner failure on every attempt would trip the partner
    // and hold the event instead (tests/partners.rs).
    let (receiver, app) = delivering("RETRY_BASE_DELAY=20ms RETRY_MAX_DELAY=50ms").await;
    let entry = one_credit(&app, "down", &receiver.url("/status/400/pb"), 3).await;
    let done = app.wait_entry(&entry, "failed", WAIT).await;
    assert_eq!(done["retry_count"], 3);
    assert_eq!(done["max_retries"], 3);
    assert!(done["completed_at"].is_null());
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4);
    assert!(attempts
        .iter()
        .all(|a| a["http_status"] == 400 && a["error"] == "HTTP 400"));
    // No call after the last one. A barrier instead of a pause: an event submitted now is
    // claimed by a claim that sees the row failed, so a worker that would call it again does
    // so no later than that claim; once the barrier is delivered and its outcome written, no
    // row is left due or in flight, and the partner still saw four calls.
    let up = partner_on(&app, &receiver, "up", "/ok/barrier", "/ok/cb").await;
    let barrier = app
        .submit(json!({"event_type": "+credit", "config_id": up, "url_params": {}}))
        .await;
    app.wait_entry(&barrier, "completed", WAIT).await;
    assert_eq!(receiver.received_at("/status/400/pb").len(), 4);
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM webhook_queue WHERE status IN ('pending', 'processing')")
            .await,
        0
    );
    let (_, after) = app
        .get(&format!(
            "/webhooks/{}",
            entry["queue_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(after["status"], "failed");
    assert_eq!(after["attempts"].as_array().unwrap().len(), 4, "{after:#}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_timeout_5xx_429_and_oversized_bodies_are_each_recorded() {
    let (receiver, app) = delivering(
        "HTTP_TIMEOUT=300ms RESPONSE_BODY_LIMIT=100 RETRY_BASE_DELAY=50ms RETRY_MAX_DELAY=5s",
    )
    .await;
    // A port nothing listens on: bind one, then free it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let one_shot =
        |url: String| json!({"name": url.clone(), "postback_url": url, "max_retries": 0});
    let mut ids = Vec::new();
    for url in [
        format!("http://127.0.0.1:{closed}/refused"),
        receiver.url("/hang/timeout"),
        receiver.url("/status/502/bad-gateway"),
        receiver.url("/endless/big"),
    ] {
        let (status, config) = app.post("/webhook-configs", one_shot(url)).await;
        assert_eq!(status, 201, "{config}");
        let entry = app
            .submit(json!({"event_type": "+credit", "config_id": config["id"], "url_params": {}}))
            .await;
        ids.push(entry["queue_id"].as_str().unwrap().to_string());
    }
    let refused = app.wait_for_status(&ids[0], "failed", WAIT).await;
    let a = &refused["attempts"][0];
    assert!(a["http_status"].is_null());
    assert!(a["error"].as_str().unwrap().starts_with("connect: "), "{a}");

    let timeout = app.wait_for_status(&ids[1], "failed", WAIT).await;
    let a = &timeout["attempts"][0];
    assert!(a["http_status"].is_null());
    // The partner would hold the call for an hour: the error names the timer that ended it,
    // the 300 ms HTTP_TIMEOUT, and the call lasted at least that long (a bound no load can
    // break); how soon after the timer a loaded machine records it is not this test's concern.
    assert_eq!(
        a["error"], "timeout: no complete response within 300ms",
        "{a}"
    );
    let took = a["duration_ms"].as_i64().unwrap();
    assert!(
        (300..WAIT.as_millis() as i64).contains(&took),
        "timeout after {took} ms"
    );

    let bad_gateway = app.wait_for_status(&ids[2], "failed", WAIT).await;
    assert_eq!(bad_gateway["attempts"][0]["http_status"], 502);
    assert_eq!(bad_gateway["attempts"][0]["response_body"], "status 502");

    let big = app.wait_for_status(&ids[3], "completed", WAIT).await;
    let a = &big["attempts"][0];
    assert_eq!(a["http_status"], 200);
    assert_eq!(a["response_body"].as_str().unwrap(), "x".repeat(100));

    // 429 with Retry-After: 1 lengthens the 50 ms backoff to a second.
    let (_, config) = app
        .post(
            "/webhook-configs",
            json!({"name": "throttled", "postback_url": receiver.url("/retry-after/1/pb")}),
        )
        .await;
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config["id"], "url_params": {}}))
        .await;
    let done = app.wait_entry(&entry, "completed", WAIT).await;
    assert_eq!(done["attempts"][0]["http_status"], 429);
    assert_eq!(done["retry_count"], 1);
    let calls = receiver.received_at("/retry-after/1/pb");
    let gap = calls[1].at - calls[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After not honoured: {gap:?}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_row_wakes_an_idle_worker_long_before_the_next_poll() {
    // A poll far beyond the test's whole wait: only the NOTIFY of a new row can wake a worker
    // in time. How many milliseconds the wake-up takes is measured by `just bench`.
    let (receiver, app) = delivering("WORKER_POLL_INTERVAL=1h").await;
    let config = partner_on(&app, &receiver, "fast", "/ok/pb", "/ok/cb").await;
    eventually(WAIT, "the listener to be listening", || async {
        app.logs.text().contains("listening for new rows")
    })
    .await;
    // The first event may still meet a worker's first claim. Each later one is submitted
    // after the one before was delivered and its outcome written: by then every worker has
    // claimed and gone idle until the poll an hour away, so only the NOTIFY brings it.
    for i in 0..6 {
        let entry = app
            .submit(json!({"event_type": "+credit", "event_id": format!("e{i}"), "config_id": config, "url_params": {}}))
            .await;
        app.wait_entry(&entry, "completed", WAIT).await;
    }
    assert_eq!(receiver.received_at("/ok/pb").len(), 6);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_handed_back_by_a_saturated_host_are_called_when_due_not_at_the_next_poll() {
    let (receiver, app) = delivering("WORKER_POLL_INTERVAL=1h DELIVERY_HOST_CONCURRENCY=1").await;
    let config = partner_on(
        &app,
        &receiver,
        "one-at-a-time",
        "/slow/400/pb",
        "/slow/400/cb",
    )
    .await;
    // One claim takes all six; the host takes one call and one waiting row, so the other four
    // are handed back, due again a second later, with no new row to wake anyone.
    let events: Vec<serde_json::Value> = (0..6)
        .map(|i| json!({"event_type": "+credit", "event_id": format!("s{i}"), "config_id": config, "url_params": {}}))
        .collect();
    let (status, body) = app
        .post("/webhooks/batch", json!({ "events": events }))
        .await;
    assert_eq!(status, 200, "{body}");
    // The poll is an hour away, far beyond this wait: every handed-back row is called because
    // the app woke a worker when it fell due again.
    receiver
        .wait_for("/slow/400/pb", 6, Duration::from_secs(60))
        .await;
    app.db
        .wait_count(
            "SELECT count(*) FROM webhook_queue WHERE status = 'completed'",
            6,
            Duration::from_secs(60),
            "all six rows completed",
        )
        .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_partner_does_not_delay_another_partners_events() {
    // The hanging partner's calls stay open for a minute (HTTP_TIMEOUT): far longer than the
    // healthy partner's events may take even on a loaded machine, so "not delayed" is shown
    // by order, not by a stopwatch.
    let (receiver, app) = delivering(
        "WORKER_COUNT=2 WORKER_BATCH_SIZE=10 DELIVERY_HOST_CONCURRENCY=4
         HTTP_TIMEOUT=60s WORKER_LOCK_DURATION=120s",
    )
    .await;
    // Two partners on two host:port pairs: one hangs, the other answers at once.
    let other = Receiver::start().await;
    let hanging = partner_on(&app, &receiver, "hangs", "/hang/pb", "/hang/cb").await;
    let healthy = app
        .config("healthy", &other.url("/ok/pb"), &other.url("/ok/cb"))
        .await;
    for i in 0..40 {
        app.submit(json!({"event_type": "+credit", "event_id": format!("h{i}"), "config_id": hanging, "url_params": {}}))
            .await;
    }
    eventually(WAIT, "the hanging partner to hold its calls", || async {
        receiver.received_at("/hang/pb").len() >= 4
    })
    .await;
    for i in 0..10 {
        app.submit(json!({"event_type": "+credit", "event_id": format!("ok{i}"), "config_id": healthy, "url_params": {}}))
            .await;
    }
    let completed = format!(
        "SELECT count(*) FROM webhook_queue WHERE config_id = {healthy} AND status = 'completed'"
    );
    eventually(
        WAIT,
        "the healthy partner's ten events completed",
        || async { app.db.count(&completed).await == 10 },
    )
    .await;
    assert_eq!(other.received_at("/ok/pb").len(), 10);
    // ... while every call to the hanging partner is still open: none has ended, so the
    // healthy events did not wait for one of them to free a worker or a slot.
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) FROM webhook_queue
                 WHERE config_id = {hanging} AND retry_0_completed_at IS NOT NULL"
            ))
            .await,
        0,
        "a call to the hanging partner ended before the healthy events were delivered"
    );
    // The hanging host never had more than its cap in flight.
    assert!(receiver.received_at("/hang/pb").len() <= 4);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_claim_commits_without_waiting_for_the_disk() {
    use diesel_async::SimpleAsyncConnection;
    use webhookd::store::{self, queue::claim as claims};
    async fn setting(conn: &mut diesel_async::AsyncPgConnection) -> String {
        line_of(conn, "SELECT current_setting('synchronous_commit') AS line").await
    }
    let test_db = common::TestDb::new().await;
    let mut conn = store::connect(&test_db.url).await.unwrap();
    assert_eq!(setting(&mut conn).await, "on");
    // Inside the claim's transaction the commit is asynchronous ...
    conn.batch_execute("BEGIN").await.unwrap();
    claims::claim(&mut conn, "w", 10, Duration::from_secs(60), &[])
        .await
        .unwrap();
    assert_eq!(setting(&mut conn).await, "off");
    conn.batch_execute("COMMIT").await.unwrap();
    // ... and after it the pooled connection is durable again for outcome writes and submits.
    assert_eq!(setting(&mut conn).await, "on");
    claims::claim(&mut conn, "w", 10, Duration::from_secs(60), &[])
        .await
        .unwrap();
    assert_eq!(setting(&mut conn).await, "on");
}

/// Both pools hand out the connection returned last, so a steady load keeps to the same
/// server backends rather than rotating through all a burst opened; those left unused are
/// closed, server side too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pools_hand_out_the_connection_returned_last_and_close_the_idle_ones() {
    use webhookd::store;
    async fn pid(conn: &mut diesel_async::AsyncPgConnection) -> String {
        line_of(conn, "SELECT pg_backend_pid()::text AS line").await
    }
    let test_db = common::TestDb::new().await;
    for pool in [
        store::pool(&test_db.url, 3).unwrap(),
        store::worker_pool(&test_db.url, 3).unwrap(),
    ] {
        let (mut first, mut second) = (pool.get().await.unwrap(), pool.get().await.unwrap());
        let (first_pid, second_pid) = (pid(&mut first).await, pid(&mut second).await);
        assert_ne!(first_pid, second_pid);
        drop(first);
        drop(second);
        for _ in 0..3 {
            let mut conn = pool.get().await.unwrap();
            assert_eq!(
                pid(&mut conn).await,
                second_pid,
                "the last one returned comes first"
            );
        }
        // Idle for at least two seconds against idle for the two lines between the last use
        // and the check: a wide contrast, so a loaded machine cannot blur which one is idle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(pool.get().await.unwrap());
        assert_eq!(store::close_idle(&pool, Duration::from_secs(2)), 1);
        assert_eq!(pool.status().size, 1, "the one just used stays");
        assert_eq!(pid(&mut pool.get().await.unwrap()).await, second_pid);
        eventually(WAIT, "the idle connection's backend to end", || async {
            let alive = test_db
                .count(&format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = {first_pid}"
                ))
                .await;
            alive == 0
        })
        .await;
    }
}

/// A prepared statement keeps its generic plan until the table's statistics change; one made
/// while `webhook_queue` was empty — never analyzed, or analyzed when it held other rows —
/// must still reach rows only by index and, for the writes after a claim, only through the
/// ids they hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_statements_reach_rows_by_index_whatever_the_statistics_say() {
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    use webhookd::store;
    use webhookd::store::queue::{claim as claims, outcome, release};
    #[derive(diesel::QueryableByName)]
    struct Statement {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        statement: String,
    }
    let test_db = common::TestDb::new().await;
    let settings = "SELECT current_setting('enable_seqscan') || ' ' || current_setting('jit') \
                    || ' ' || current_setting('plan_cache_mode') AS line";
    let api = store::pool(&test_db.url, 1).unwrap();
    assert_eq!(
        line_of(&mut api.get().await.unwrap(), settings).await,
        "on on auto",
        "the API's sessions keep the defaults"
    );
    let pool = store::worker_pool(&test_db.url, 1).unwrap();
    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        line_of(&mut conn, settings).await,
        "off off force_generic_plan",
        "the workers' sessions plan by index, without JIT, once per statement"
    );
    conn.batch_execute(
        "SET plan_cache_mode = force_generic_plan;
         CREATE FUNCTION pg_temp.plan_of(statement text) RETURNS SETOF text LANGUAGE plpgsql AS
             $$ BEGIN RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) ' || statement; END $$;",
    )
    .await
    .unwrap();

    let now = chrono::Utc::now();
    claims::claim(&mut conn, "w", 10, Duration::from_secs(60), &[])
        .await
        .unwrap();
    let write = outcome::AttemptWrite {
        id: 1,
        config_id: 1,
        event_type: webhookd::domain::event::EventType::Credit,
        verdict: webhookd::domain::partner::Verdict::Up,
        worker_id: "w".into(),
        locked_at: now,
        attempt: 0,
        started_at: now,
        completed_at: now,
        duration_ms: 1,
        http_status: Some(200),
        response_body: Some(String::new()),
        error: None,
        status: webhookd::domain::delivery::Status::Completed,
        retry_count: 0,
        next_retry_at: None,
    };
    let circuit = outcome::Circuit {
        failure_threshold: 10,
        probe_interval_ms: 5000,
    };
    outcome::record_attempts(&mut conn, &[write], circuit, Duration::from_secs(60))
        .await
        .unwrap();
    let held = release::Release {
        id: 1,
        worker_id: "w".into(),
        locked_at: now,
    };
    release::release(&mut conn, &[held], Duration::ZERO)
        .await
        .unwrap();

    let prepared: Vec<Statement> =
        diesel::sql_query("SELECT name, statement FROM pg_prepared_statements")
            .load(&mut conn)
            .await
            .unwrap();
    let prepared_as = |start: &str| {
        let found = prepared
            .iter()
            .find(|s| s.statement.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("{start}… was not prepared"));
        found.name.clone()
    };
    let ts = "'{2026-01-01T00:00:00Z}'";
    let cases = [
        (
            prepared_as("WITH partner AS"),
            format!(
                "('{{w}}', '{{1}}', {ts}, '{{0}}', {ts}, {ts}, '{{1}}', '{{200}}', '{{\"\"}}', '{{NULL}}', \
                 '{{completed}}', '{{0}}', '{{NULL}}', '{{1}}', '{{up}}', 10, 5000, '{{NULL}}', 60)"
            ),
            // The rows are locked once sorted by id, whatever order the update's join takes.
            vec!["Index Cond: (id = ANY ($2))", "LockRows"],
        ),
        (
            prepared_as("UPDATE webhook_queue q\n         SET status = 'pending'"),
            format!("('{{w}}', '{{1}}', {ts}, 0)"),
            vec!["Index Cond: (id = ANY ($2))"],
        ),
    ];
    async fn assert_bounded(
        conn: &mut diesel_async::AsyncPgConnection,
        cases: &[(String, String, Vec<&str>)],
        state: &str,
    ) {
        for (name, args, expected) in cases {
            let lines: Vec<Line> = diesel::sql_query(format!(
                "SELECT line FROM pg_temp.plan_of('EXECUTE {name}{}') AS line",
                args.replace('\'', "''")
            ))
            .load(conn)
            .await
            .unwrap();
            let plan = lines
                .iter()
                .map(|l| l.line.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            assert!(!plan.contains("Seq Scan"), "{state}, {name}:\n{plan}");
            // The listing's (status, id) index holds no row in flight (migration 000006).
            assert!(
                !plan.contains("webhook_queue_status_id"),
                "{state}, {name}:\n{plan}"
            );
            for part in expected {
                assert!(plan.contains(part), "{state}, {name} lacks {part}:\n{plan}");
            }
        }
    }
    assert_bounded(&mut conn, &cases, "never analyzed").await;
    // The statistics of a table full of pending rows, and the table emptied (a purge); the
    // change of statistics makes the plans anew.
    conn.batch_execute(
        "INSERT INTO webhook_configs (name, postback_url) VALUES ('p', 'http://127.0.0.1:9/p');
         INSERT INTO webhook_queue (queue_id, event_type, config_id, webhook_url, url_params, max_retries)
         SELECT gen_random_uuid(), '+credit', (SELECT id FROM webhook_configs), 'http://127.0.0.1:9/p',
                '{}', 3
         FROM generate_series(1, 2000);
         ANALYZE webhook_queue;
         TRUNCATE webhook_queue CASCADE",
    )
    .await
    .unwrap();
    assert_bounded(&mut conn, &cases, "analyzed full, then emptied").await;
}

/// The claim is a PL/pgSQL function (`webhook_claim`), whose statements EXPLAIN of the call
/// does not show: auto_explain reports each one as a notice. Under generic plans, with the
/// workers' session settings, and whatever the statistics say, every statement of the claim
/// reaches rows by an index: due rows partner by partner, expired leases by their own index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_reaches_rows_by_index_whatever_the_statistics_say() {
    use std::sync::{Arc, Mutex};
    use tokio_postgres::AsyncMessage;
    let test_db = common::TestDb::new().await;
    let (client, mut connection) = tokio_postgres::connect(&test_db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let Ok(AsyncMessage::Notice(notice)) = message {
                sink.lock().unwrap().push(notice.message().to_string());
            }
        }
    });
    client
        .batch_execute(
            "SET enable_seqscan = off; SET jit = off; SET plan_cache_mode = force_generic_plan;
             LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
             SET auto_explain.log_level = notice; SET client_min_messages = notice;",
        )
        .await
        .unwrap();
    // An active partner with due rows, a tripped one whose probe is due, and a lease run out.
    let setup = "INSERT INTO webhook_configs (name, postback_url) VALUES ('a', 'http://127.0.0.1:9/a'), ('t', 'http://127.0.0.1:9/t')
                     ON CONFLICT DO NOTHING;
                 UPDATE webhook_partner_state SET state = 'tripped', reason = 'failures', probe_at = now(), probe_interval_ms = 1000
                     WHERE config_id = (SELECT id FROM webhook_configs WHERE name = 't');
                 INSERT INTO webhook_queue (queue_id, event_type, config_id, webhook_url, url_params, max_retries)
                 SELECT gen_random_uuid(), '+credit', c.id, c.postback_url, '{}', 3
                 FROM webhook_configs c, generate_series(1, 3);
                 UPDATE webhook_queue SET status = 'processing', worker_id = 'gone', locked_at = now(),
                        lock_expires_at = now() - interval '1 s'
                 WHERE id = (SELECT min(id) FROM webhook_queue WHERE config_id = (SELECT id FROM webhook_configs WHERE name = 'a'))";
    let claim_plans = |state: &'static str| {
        let client = &client;
        let notices = notices.clone();
        async move {
            client.batch_execute(setup).await.unwrap();
            notices.lock().unwrap().clear();
            // Past the five custom plans a PL/pgSQL statement may get before a generic one.
            for n in 0..7 {
                client
                    .execute(
                        "SELECT * FROM webhook_claim($1, 10, 60, '{}', '{}')",
                        &[&format!("w{n}")],
                    )
                    .await
                    .unwrap();
            }
            let plans = notices.lock().unwrap().join(
                "
---
",
            );
            assert!(
                !plans.contains("Seq Scan"),
                "{state}:
{plans}"
            );
            assert!(
                !plans.contains("webhook_queue_status_id"),
                "{state}:
{plans}"
            );
            for index in [
                "webhook_queue_partner_due",
                "webhook_queue_leased",
                "webhook_queue_pkey",
            ] {
                assert!(
                    plans.contains(index),
                    "{state}: no plan uses {index}:
{plans}"
                );
            }
        }
    };
    claim_plans("never analyzed").await;
    client
        .batch_execute(
            "SET client_min_messages = warning;
             INSERT INTO webhook_queue (queue_id, event_type, config_id, webhook_url, url_params, max_retries)
             SELECT gen_random_uuid(), '+credit', (SELECT min(id) FROM webhook_configs), 'http://127.0.0.1:9/a', '{}', 3
             FROM generate_series(1, 2000);
             ANALYZE webhook_queue;
             TRUNCATE webhook_queue CASCADE;
             SET client_min_messages = notice;",
        )
        .await
        .unwrap();
    claim_plans("analyzed full, then emptied").await;
}

/// The fence of every write after a claim, `(worker_id, locked_at)`, stands for "still
/// processing under this claim" only while nothing settles a row and leaves its lease behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_outside_processing_is_refused_and_changes_nothing() {
    let test_db = common::TestDb::new().await;
    let client = test_db.client().await;
    client
        .batch_execute(
            "INSERT INTO webhook_configs (name, postback_url) VALUES ('p', 'http://127.0.0.1:9/p');
             INSERT INTO webhook_queue (queue_id, event_type, config_id, webhook_url, url_params,
                                        max_retries, status, worker_id, locked_at, lock_expires_at)
             SELECT gen_random_uuid(), '+credit', id, 'http://127.0.0.1:9/p', '{}', 3,
                    'processing', 'w', now(), now() + interval '1 minute'
             FROM webhook_configs",
        )
        .await
        .unwrap();
    for bad in [
        "UPDATE webhook_queue SET status = 'completed', completed_at = now()",
        "UPDATE webhook_queue SET status = 'pending'",
        "UPDATE webhook_queue SET locked_at = NULL",
        "INSERT INTO webhook_queue (queue_id, event_type, config_id, webhook_url, url_params,
                                    max_retries, locked_at)
         SELECT gen_random_uuid(), '+credit', id, 'http://127.0.0.1:9/p', '{}', 3, now()
         FROM webhook_configs",
    ] {
        let err = client.batch_execute(bad).await.unwrap_err();
        let message = err.as_db_error().map(|e| e.message().to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("webhook_queue_locked_while_processing")),
            "{bad}: {err:?}"
        );
    }
    let row = client
        .query_one(
            "SELECT count(*), min(status), count(locked_at) FROM webhook_queue",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), "processing");
    assert_eq!(row.get::<_, i64>(2), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_statements_are_prepared_once_per_connection() {
    use webhookd::store;
    use webhookd::store::queue::{claim as claims, submit as queue};
    let test_db = common::TestDb::new().await;
    let mut conn = store::connect(&test_db.url).await.unwrap();
    for _ in 0..3 {
        claims::claim(&mut conn, "w", 10, Duration::from_secs(60), &[])
            .await
            .unwrap();
        claims::next_due(&mut conn).await.unwrap();
        queue::find_by_keys(&mut conn, &[]).await.unwrap();
    }
    #[derive(diesel::QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = diesel::sql_types::Text)]
        statement: String,
    }
    let statements: Vec<Prepared> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT statement FROM pg_prepared_statements"),
        &mut conn,
    )
    .await
    .unwrap();
    for start in [
        "SELECT * FROM webhook_claim(",
        "SELECT webhook_next_due()",
        "SELECT q.* FROM webhook_queue",
    ] {
        let n = statements
            .iter()
            .filter(|s| s.statement.trim_start().starts_with(start))
            .count();
        assert_eq!(n, 1, "{start}… is prepared once, not per call");
    }
}

/// A row that waited for its host's turn so long that its lease would end before the call
/// could (a worker paused past its lease is the extreme case) is handed back uncalled, so no
/// other worker can take it over mid-call and call the partner a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_lease_would_end_mid_call_is_handed_back_not_called() {
    // One call at a time to the receiver's host: of two rows claimed together, the second
    // waits for the first's 800 ms call, and 800 ms + HTTP_TIMEOUT outlasts the lease.
    let (receiver, app) = delivering(
        "WORKER_COUNT=1 DELIVERY_HOST_CONCURRENCY=1 HTTP_TIMEOUT=1s WORKER_LOCK_DURATION=1500ms",
    )
    .await;
    let config = partner_on(&app, &receiver, "slow", "/slow/800/pb/{event_id}", "/ok/cb").await;
    let events: Vec<_> = ["a", "b"]
        .iter()
        .map(|id| json!({"event_type": "+credit", "event_id": id, "config_id": config, "url_params": {}}))
        .collect();
    let (status, body) = app
        .post("/webhooks/batch", json!({ "events": events }))
        .await;
    assert_eq!(status, 200, "{body}");

    eventually(WAIT, "both rows completed", || async {
        let (_, page) = app
            .get(&format!("/webhooks?config_id={config}&status=completed"))
            .await;
        page["items"].as_array().unwrap().len() == 2
    })
    .await;
    for id in ["a", "b"] {
        assert_eq!(
            receiver.received_at(&format!("/slow/800/pb/{id}")).len(),
            1,
            "row {id} called once"
        );
    }
    let handed_back: Vec<_> = app
        .logs
        .lines()
        .into_iter()
        .filter(|l| l["msg"] == "lease would end before the call could; row handed back uncalled")
        .collect();
    assert_eq!(handed_back.len(), 1, "{}", app.logs.text());
    let (_, page) = app.get(&format!("/webhooks?config_id={config}")).await;
    for entry in page["items"].as_array().unwrap() {
        // A hand-back spends no attempt.
        assert_eq!(entry["retry_count"], 0, "{entry}");
    }
    app.shutdown().await;
}
