//! Money order (SPEC §11): a `-debit` never reaches its partner before the `+credit` with the
//! same `(config_id, event_id)` — against a real PostgreSQL and a real receiver that records
//! the order calls arrive in.

mod common;

use std::time::Duration;

use common::fixture::{queue_id, Event, Partner};
use common::http::delete;
use common::process::Proc;
use common::pruning::{prune, settings};
use common::receiver::{Received, Receiver};
use common::scenario::with_receiver;
use common::{eventually, Options, TestApp};
use rand::Rng;
use serde_json::{json, Value};
use webhookd::application::retention;

const WAIT: Duration = Duration::from_secs(15);

/// A config `p` whose credits go to `credit_path` and debits to `/ok/debit/{event_id}`.
async fn partner(app: &TestApp, receiver: &Receiver, credit_path: &str, extra: Value) -> i64 {
    Partner::new("p")
        .postback(&receiver.url(credit_path))
        .chargeback(&receiver.url("/ok/debit/{event_id}"))
        .with(extra)
        .create(app)
        .await
}

async fn submit(app: &TestApp, event_type: &str, event_id: &str, config: i64) -> Value {
    Event::of(event_type)
        .id(event_id)
        .to(config)
        .submit(app)
        .await
}

/// A credit submitted to `config`, once its first attempt has failed: in retry.
async fn credit_failed_once(app: &TestApp, config: i64, event_id: &str) -> Value {
    let credit = submit(app, "+credit", event_id, config).await;
    eventually(WAIT, "the credit's first attempt to fail", || async {
        entry(app, &queue_id(&credit)).await["retry_count"] == 1
    })
    .await;
    credit
}

/// The calls the receiver got for `event_id`, in arrival order, as `credit`/`debit` with the
/// call's number on its URL.
fn calls_for(receiver: &Receiver, event_id: &str) -> Vec<(String, u32)> {
    receiver
        .received()
        .into_iter()
        .filter(|r: &Received| r.path.ends_with(&format!("/{event_id}")))
        .map(|r| {
            let kind = if r.path.contains("/debit/") {
                "debit"
            } else {
                "credit"
            };
            (kind.to_string(), r.nth)
        })
        .collect()
}

/// Asserts that `event_id`'s calls were the credit, failing then passing, then the debit.
#[track_caller]
fn assert_credit_failed_once_then_debit(receiver: &Receiver, event_id: &str) {
    assert_eq!(
        calls_for(receiver, event_id),
        [
            ("credit".into(), 1),
            ("credit".into(), 2),
            ("debit".into(), 1)
        ]
    );
}

/// A receiver, the app spawned with `options`, and the partner `p` of [`partner`] on it.
async fn start(options: Options, credit_path: &str, extra: Value) -> (Receiver, TestApp, i64) {
    let (receiver, app) = with_receiver(options).await;
    let config = partner(&app, &receiver, credit_path, extra).await;
    (receiver, app, config)
}

/// [`start`] with a partner whose credits always fail (500) and retries an hour apart: a
/// failed credit attempt stays failed for the whole test.
async fn start_failing_credits(extra: Value) -> (Receiver, TestApp, i64) {
    let options = Options::workers("RETRY_BASE_DELAY=1h RETRY_MAX_DELAY=1h");
    start(options, "/status/500/credit/{event_id}", extra).await
}

async fn entry(app: &TestApp, queue_id: &str) -> Value {
    let (status, body) = app.get(&format!("/webhooks/{queue_id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debit_submitted_while_its_credit_is_in_retry_arrives_after_the_credit() {
    // An hour-long poll: the released debit is called because its credit's outcome write hands
    // it to a worker.
    let options = Options::workers("RETRY_BASE_DELAY=1s WORKER_POLL_INTERVAL=1h");
    let (receiver, app, config) = start(options, "/flaky/1/credit/{event_id}", json!({})).await;

    let credit = credit_failed_once(&app, config, "tx1").await;
    let debit = submit(&app, "-debit", "tx1", config).await;
    assert_eq!(debit["held_reason"], "waiting_for_credit", "{debit}");
    assert_eq!(debit["status"], "pending");

    app.wait_for_status(&queue_id(&credit), "completed", WAIT)
        .await;
    let done = app
        .wait_for_status(&queue_id(&debit), "completed", WAIT)
        .await;
    assert_eq!(done["held_reason"], Value::Null);
    assert_eq!(done["retry_count"], 0, "waiting spent no attempt: {done}");
    assert_eq!(done["attempts"].as_array().unwrap().len(), 1);
    assert_credit_failed_once_then_debit(&receiver, "tx1");
    // The credit's completion leased the debit: the workers claimed only the credit, twice.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("webhookd_claimed_rows_total 2\n"),
        "{metrics}"
    );
    // The outcome write that leased it counted its move from pending to processing.
    eventually(WAIT, "both rows completed", || async {
        app.db.count_with_status("completed").await == 2
    })
    .await;
    common::counters::assert_counters_exact(
        &app.db,
        "a debit leased by its credit's outcome write",
    )
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_credit_keeps_its_debit_waiting_until_it_is_retried_and_completes() {
    // The first call fails, and it is the credit's only attempt (with a retry, a partner that
    // failed every attempt would be tripped instead: tests/partners.rs).
    let (receiver, app, config) = start(
        Options::with_workers(),
        "/flaky/1/credit/{event_id}",
        json!({"max_retries": 0}),
    )
    .await;

    let credit = submit(&app, "+credit", "tx2", config).await;
    app.wait_for_status(&queue_id(&credit), "failed", WAIT)
        .await;
    let debit = submit(&app, "-debit", "tx2", config).await;
    assert_eq!(debit["held_reason"], "waiting_for_credit", "{debit}");
    // Held rows are not claimable: the debit stays pending with no attempt while the credit
    // stays failed.
    let (_, waiting) = app.get("/webhooks?held=waiting_for_credit").await;
    assert_eq!(waiting["items"].as_array().unwrap().len(), 1, "{waiting}");
    assert_eq!(waiting["items"][0]["queue_id"], debit["queue_id"]);
    let (_, stats) = app.get("/webhooks/stats").await;
    assert_eq!(stats["held"]["waiting_for_credit"], 1, "{stats}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"webhookd_queue_held{reason="waiting_for_credit"} 1"#),
        "{metrics}"
    );

    let (status, body) = app
        .post(
            &format!("/webhooks/{}/retry", &queue_id(&credit)),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.wait_for_status(&queue_id(&credit), "completed", WAIT)
        .await;
    app.wait_for_status(&queue_id(&debit), "completed", WAIT)
        .await;
    assert_credit_failed_once_then_debit(&receiver, "tx2");
    let (_, stats) = app.get("/webhooks/stats").await;
    assert_eq!(stats["held"]["waiting_for_credit"], 0, "{stats}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_credit_cancels_its_waiting_debit_and_any_later_one() {
    let (receiver, app, config) = start_failing_credits(json!({})).await;

    let credit = credit_failed_once(&app, config, "tx3").await;
    let debit = submit(&app, "-debit", "tx3", config).await;
    assert_eq!(debit["held_reason"], "waiting_for_credit");

    let (status, _) = delete(&app, &format!("/webhooks/{}", &queue_id(&credit))).await;
    assert_eq!(status, 200);
    let cancelled = entry(&app, &queue_id(&debit)).await;
    assert!(cancelled["cancelled_at"].is_string(), "{cancelled}");
    assert_eq!(cancelled["cancel_reason"], "credit_cancelled");
    assert_eq!(cancelled["held_reason"], Value::Null);
    let (_, credit_now) = app.get(&format!("/webhooks/{}", &queue_id(&credit))).await;
    assert_eq!(
        credit_now["cancel_reason"],
        Value::Null,
        "an operator cancelled the credit"
    );

    // A debit submitted after its credit was cancelled is cancelled at once.
    let credit = submit(&app, "+credit", "tx4", config).await;
    app.send(
        reqwest::Method::DELETE,
        &format!("/webhooks/{}", &queue_id(&credit)),
        None,
    )
    .await;
    let late = submit(&app, "-debit", "tx4", config).await;
    assert!(late["cancelled_at"].is_string(), "{late}");
    assert_eq!(late["cancel_reason"], "credit_cancelled");
    let (_, stats) = app.get("/webhooks/stats").await;
    assert_eq!(stats["cancelled"], 4, "{stats}");
    assert!(receiver.received_at("/ok/debit").is_empty());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debit_without_a_queued_credit_or_after_its_credit_completed_is_delivered_at_once() {
    let (_receiver, app, config) =
        start(Options::with_workers(), "/ok/credit/{event_id}", json!({})).await;

    let lone = submit(&app, "-debit", "tx5", config).await;
    assert_eq!(lone["held_reason"], Value::Null, "{lone}");
    app.wait_for_status(&queue_id(&lone), "completed", WAIT)
        .await;

    let credit = submit(&app, "+credit", "tx6", config).await;
    app.wait_for_status(&queue_id(&credit), "completed", WAIT)
        .await;
    let debit = submit(&app, "-debit", "tx6", config).await;
    assert_eq!(debit["held_reason"], Value::Null, "{debit}");
    app.wait_for_status(&queue_id(&debit), "completed", WAIT)
        .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_none_delivers_debit_and_credit_independently() {
    let (_receiver, app, config) = start_failing_credits(json!({"ordering": "none"})).await;
    let (_, shown) = app.get(&format!("/webhook-configs/{config}")).await;
    assert_eq!(shown["ordering"], "none");

    let credit = credit_failed_once(&app, config, "tx7").await;
    let debit = submit(&app, "-debit", "tx7", config).await;
    assert_eq!(debit["held_reason"], Value::Null, "{debit}");
    app.wait_for_status(&queue_id(&debit), "completed", WAIT)
        .await;
    assert_eq!(entry(&app, &queue_id(&credit)).await["status"], "pending");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_releases_a_waiting_debit_by_hand_and_the_release_is_recorded() {
    let (_receiver, app, config) = start_failing_credits(json!({})).await;
    let credit = submit(&app, "+credit", "tx8", config).await;
    let debit = submit(&app, "-debit", "tx8", config).await;
    assert_eq!(debit["held_reason"], "waiting_for_credit");

    // Each refusal changes nothing.
    let release = |id: String| {
        let app = &app;
        async move {
            app.post(&format!("/webhooks/{id}/release"), json!({}))
                .await
        }
    };
    let (status, body) = release(uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = release("not-a-uuid".into()).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = release(queue_id(&credit)).await;
    assert_eq!(status, 409, "the credit does not wait: {body}");

    let (status, released) = release(queue_id(&debit)).await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["held_reason"], Value::Null);
    assert!(
        released["released_by_operator_at"].is_string(),
        "{released}"
    );
    let done = app
        .wait_for_status(&queue_id(&debit), "completed", WAIT)
        .await;
    assert!(done["released_by_operator_at"].is_string(), "{done}");
    let (status, body) = release(queue_id(&debit)).await;
    assert_eq!(status, 409, "released already: {body}");
    assert_eq!(entry(&app, &queue_id(&credit)).await["status"], "pending");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_a_failed_credit_while_its_debit_waits() {
    let (_receiver, app, config) =
        start(Options::default(), "/ok/credit/{event_id}", json!({})).await;
    let kept = submit(&app, "+credit", "tx9", config).await;
    let debit = submit(&app, "-debit", "tx9", config).await;
    assert_eq!(debit["held_reason"], "waiting_for_credit");
    let lone = submit(&app, "+credit", "tx10", config).await;
    // Both credits failed an hour ago.
    app.db
        .client()
        .await
        .execute(
            "UPDATE webhook_queue SET status = 'failed', updated_at = now() - interval '1 hour'
             WHERE event_type = '+credit'",
            &[],
        )
        .await
        .unwrap();

    let age = Some(Duration::from_secs(1));
    prune(&app, &settings(age, age)).await;
    let (status, _) = app.get(&format!("/webhooks/{}", &queue_id(&lone))).await;
    assert_eq!(status, 404, "a failed credit with no waiting debit goes");
    let (status, _) = app.get(&format!("/webhooks/{}", &queue_id(&kept))).await;
    assert_eq!(status, 200, "the credit a debit waits for stays");
    assert_eq!(
        entry(&app, &queue_id(&debit)).await["held_reason"],
        "waiting_for_credit"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_is_validated_shown_and_replaced_like_every_field() {
    let (receiver, app) = with_receiver(Options::default()).await;
    let body = |ordering: Value| json!({"name": "p", "postback_url": receiver.url("/ok/c"), "ordering": ordering});
    for bad in [json!("credit-before-debit"), json!(1), json!("")] {
        let (status, error) = app.post("/webhook-configs", body(bad.clone())).await;
        assert_eq!(status, 422, "{bad}: {error}");
        assert_eq!(error["error"]["field"], "ordering", "{error}");
    }
    let (_, list) = app.get("/webhook-configs").await;
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "nothing was created"
    );

    let (status, created) = app
        .post(
            "/webhook-configs",
            json!({"name": "p", "postback_url": receiver.url("/ok/c")}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["ordering"], "credit_before_debit");
    let id = created["id"].as_i64().unwrap();
    let path = format!("/webhook-configs/{id}");
    let (status, replaced) = app
        .send(reqwest::Method::PUT, &path, Some(body(json!("none"))))
        .await;
    assert_eq!((status, &replaced["ordering"]), (200, &json!("none")));
    let (status, error) = app
        .send(reqwest::Method::PUT, &path, Some(body(json!("sometimes"))))
        .await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (422, &json!("ordering"))
    );
    assert_eq!(
        app.get(&path).await.1["ordering"],
        "none",
        "a refused replace changes nothing"
    );
    let (status, replaced) = app
        .send(
            reqwest::Method::PUT,
            &path,
            Some(json!({"name": "p", "postback_url": receiver.url("/ok/c")})),
        )
        .await;
    assert_eq!(
        (status, &replaced["ordering"]),
        (200, &json!("credit_before_debit"))
    );

    let (status, error) = app.get("/webhooks?held=waiting").await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (422, &json!("held")),
        "{error}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_and_its_debit_in_one_batch_keep_their_order() {
    let (receiver, app, config) = start(
        Options::with_workers(),
        "/flaky/1/credit/{event_id}",
        json!({}),
    )
    .await;
    let (status, body) = app
        .post(
            "/webhooks/batch",
            json!({"events": [
                {"event_type": "+credit", "event_id": "tx11", "config_id": config},
                {"event_type": "-debit", "event_id": "tx11", "config_id": config}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][1]["entry"]["held_reason"], "waiting_for_credit",
        "{body}"
    );
    let debit = body["results"][1]["entry"]["queue_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for_status(&debit, "completed", WAIT).await;
    assert_credit_failed_once_then_debit(&receiver, "tx11");
    app.shutdown().await;
}

/// Runs `sql` on its own connection inside a transaction that stays open until the returned
/// sender is used (true: commit).
async fn open_transaction(app: &TestApp, sql: String) -> tokio::sync::oneshot::Sender<bool> {
    let client = app.db.client().await;
    let (done, end) = tokio::sync::oneshot::channel::<bool>();
    let (ran, started) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        client.batch_execute("BEGIN").await.unwrap();
        client.batch_execute(&sql).await.unwrap();
        ran.send(()).unwrap();
        let commit = end.await.unwrap_or(false);
        client
            .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
            .await
            .unwrap();
    });
    started.await.unwrap();
    done
}

/// Waits until some session waits for a row lock.
async fn someone_waits_for_a_lock(app: &TestApp) {
    eventually(WAIT, "a statement to wait for a row lock", || async {
        app.db
            .count(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await
            > 0
    })
    .await;
}

/// The held reason of the debit with `event_id`, read from the table.
async fn debit_held(app: &TestApp, event_id: &str) -> Option<String> {
    app.db
        .client()
        .await
        .query_one(
            "SELECT held_reason FROM webhook_queue WHERE event_type = '-debit' AND event_id = $1",
            &[&event_id],
        )
        .await
        .unwrap()
        .get(0)
}

/// The race of the issue, with the credit's outcome write played by hand: the debit's insert
/// reads its credit as in flight just before the credit completes, and the completing statement
/// has run before the debit existed. The submit does not wait for the credit (no lock on the
/// submit path); the recheck that follows the insert waits for the completion's commit and
/// releases the debit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_completing_while_its_debit_is_inserted_never_strands_the_debit() {
    let (_receiver, app, config) =
        start(Options::default(), "/ok/credit/{event_id}", json!({})).await;

    submit(&app, "+credit", "a", config).await;
    let writer = open_transaction(
        &app,
        "UPDATE webhook_queue SET status = 'completed', completed_at = now()
         WHERE event_type = '+credit' AND event_id = 'a'"
            .to_string(),
    )
    .await;
    let debit = submit(&app, "-debit", "a", config).await;
    assert_eq!(debit["held_reason"], "waiting_for_credit", "{debit}");
    // The recheck waits for the uncommitted completion.
    someone_waits_for_a_lock(&app).await;
    assert_eq!(
        debit_held(&app, "a").await.as_deref(),
        Some("waiting_for_credit")
    );
    writer.send(true).unwrap();
    eventually(WAIT, "the recheck to release the debit", || async {
        debit_held(&app, "a").await.is_none()
    })
    .await;
    let debit = entry(&app, &queue_id(&debit)).await;
    assert_eq!(debit["status"], "pending", "{debit}");
    app.shutdown().await;
}

/// A debit whose API process died between its insert and its recheck: its credit completed (or
/// was cancelled) while the insert ran, unseen by both. The pruner's next pass settles it as
/// the recheck would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruner_settles_a_debit_whose_recheck_never_ran() {
    let (_receiver, app, config) =
        start(Options::default(), "/ok/credit/{event_id}", json!({})).await;
    submit(&app, "+credit", "done", config).await;
    let cancelled = submit(&app, "+credit", "gone", config).await;
    let running = submit(&app, "+credit", "live", config).await;

    // Each debit is inserted by hand, as the API does but without the recheck after it, and
    // commits after its credit changed.
    let mut inserts = Vec::new();
    for event_id in ["done", "gone", "live"] {
        inserts.push(
            open_transaction(
                &app,
                format!(
                    "INSERT INTO webhook_queue (event_type, event_id, config_id, webhook_url, held_reason)
                     SELECT '-debit', '{event_id}', {config}, 'http://127.0.0.1:9/x',
                            (webhook_money_order_verdicts(ARRAY[{config}]::int8[], ARRAY['-debit'],
                                                          ARRAY['{event_id}']))[1]"
                ),
            )
            .await,
        );
    }
    app.db
        .client()
        .await
        .execute(
            "UPDATE webhook_queue SET status = 'completed', completed_at = now()
             WHERE event_type = '+credit' AND event_id = 'done'",
            &[],
        )
        .await
        .unwrap();
    let (status, body) = delete(&app, &format!("/webhooks/{}", &queue_id(&cancelled))).await;
    assert_eq!(status, 200, "{body}");
    for insert in inserts {
        insert.send(true).unwrap();
    }
    app.db
        .wait_count(
            "SELECT count(*) FROM webhook_queue WHERE event_type = '-debit'",
            3,
            WAIT,
            "the three debits committed",
        )
        .await;
    for event_id in ["done", "gone", "live"] {
        assert_eq!(
            debit_held(&app, event_id).await.as_deref(),
            Some("waiting_for_credit"),
            "{event_id}: stranded, as the race leaves it"
        );
    }

    let pass = prune(&app, &settings(None, None)).await;
    assert!(
        matches!(&pass, retention::Pass::Done(p) if p.stranded_debits == 2),
        "{pass:?}"
    );
    assert_eq!(debit_held(&app, "done").await, None, "released");
    let cancelled_debit = app
        .db
        .count(
            "SELECT count(*) FROM webhook_queue WHERE event_type = '-debit' AND event_id = 'gone'
               AND deleted_at IS NOT NULL AND cancel_reason = 'credit_cancelled'",
        )
        .await;
    assert_eq!(cancelled_debit, 1, "cancelled with its credit");
    assert_eq!(
        debit_held(&app, "live").await.as_deref(),
        Some("waiting_for_credit"),
        "its credit {} has not completed: it waits",
        &queue_id(&running)
    );
    app.shutdown().await;
}

/// 2,000 credit/debit pairs, each debit submitted after its credit, the pairs interleaved at
/// random, against a partner that fails 30 % of first credit calls; three `work` processes,
/// one killed with SIGKILL midway. The partner never sees a debit before its credit succeeded,
/// and every pair is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_interleaved_pairs_through_three_processes_and_a_kill_arrive_in_order() {
    const PAIRS: usize = 2000;
    let (receiver, app, config) = start(
        Options::default(),
        "/flaky/{fails}/credit/{event_id}",
        json!({}),
    )
    .await;

    let mut rng = rand::rng();
    let fails: Vec<u8> = (0..PAIRS).map(|_| u8::from(rng.random_bool(0.3))).collect();
    // Each pair's credit at a random place along the run, its debit a random 0 to 40 events
    // later: the debits of many pairs come while their credit is in flight or in retry.
    let mut order: Vec<(f64, usize, bool)> = Vec::with_capacity(2 * PAIRS);
    for pair in 0..PAIRS {
        let credit = pair as f64 + rng.random::<f64>() * 20.0;
        order.push((credit, pair, false));
        order.push((credit + rng.random::<f64>() * 40.0, pair, true));
    }
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let order: Vec<(usize, bool)> = order
        .into_iter()
        .map(|(_, pair, debit)| (pair, debit))
        .collect();

    let workers: Vec<Proc> = (0..3)
        .map(|i| Proc::start("work", &app.db.url, &format!("order{i}"), &[]))
        .collect();
    let mut workers = workers.into_iter();
    let victim = workers.next().unwrap();
    let survivors: Vec<Proc> = workers.collect();
    let mut victim = Some(victim);
    for chunk in order.chunks(20) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|&(pair, debit)| {
                let event_type = if debit { "-debit" } else { "+credit" };
                json!({"event_type": event_type, "event_id": format!("e{pair}"), "config_id": config,
                       "url_params": {"fails": fails[pair]}})
            })
            .collect();
        let (status, body) = app
            .post("/webhooks/batch", json!({ "events": events }))
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == 201),
            "{body}"
        );
        if receiver.received_at("/ok/debit").len() >= PAIRS / 4 {
            if let Some(victim) = victim.take() {
                victim.signal("KILL");
            }
        }
    }
    if let Some(victim) = victim.take() {
        victim.signal("KILL");
    }

    eventually(Duration::from_secs(90), "every pair completed", || async {
        app.db.count_with_status("completed").await == 2 * PAIRS as i64
    })
    .await;
    drop(survivors);

    // The arrival index of each pair's first successful credit call and first debit call.
    let mut credit_ok = vec![None::<usize>; PAIRS];
    let mut debit_at = vec![None::<usize>; PAIRS];
    for (at, call) in receiver.received().iter().enumerate() {
        let pair: usize = call.path.rsplit("/e").next().unwrap().parse().unwrap();
        if call.path.starts_with("/ok/debit/") {
            debit_at[pair].get_or_insert(at);
        } else if call.nth > u32::from(fails[pair]) {
            credit_ok[pair].get_or_insert(at);
        }
    }
    let inversions: Vec<usize> = (0..PAIRS)
        .filter(|&p| match (credit_ok[p], debit_at[p]) {
            (Some(credit), Some(debit)) => debit < credit,
            _ => panic!(
                "pair {p} was not delivered: credit {:?}, debit {:?}",
                credit_ok[p], debit_at[p]
            ),
        })
        .collect();
    assert!(
        inversions.is_empty(),
        "debits before their credit: {inversions:?}"
    );
    // The run tested something: many debits were queued before their credit completed.
    let waited = app
        .db
        .count(
            "SELECT count(*) FROM webhook_queue d JOIN webhook_queue c
               ON c.config_id = d.config_id AND c.event_id = d.event_id AND c.event_type = '+credit'
             WHERE d.event_type = '-debit' AND d.created_at < c.completed_at",
        )
        .await;
    eprintln!("{waited} of {PAIRS} debits were queued before their credit completed");
    assert!(
        waited > 200,
        "only {waited} debits were queued before their credit completed"
    );
    app.shutdown().await;
}
