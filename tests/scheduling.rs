//! Scheduling by partner (docs/decisions.md, "Scheduling by partner"): a partner's state is
//! read where rows are claimed, so a submit racing a resume strands nothing; a probe tells the
//! partner's health, not one event's; and one partner's backlog does not delay another's
//! events.

mod common;

use std::time::Duration;

use common::fixture::Event;
use common::http::put;
use common::receiver::{Mode, Receiver};
use common::scenario::with_receiver;
use common::{eventually, spawn, Options, TestApp};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn options() -> Options {
    Options::workers(
        "CIRCUIT_PROBE_INTERVAL=200ms WORKER_POLL_INTERVAL=1s RETRY_BASE_DELAY=50ms
         RETRY_MAX_DELAY=200ms HTTP_TIMEOUT=2s",
    )
}

async fn state(app: &TestApp, id: i64) -> String {
    let (status, body) = app.get(&format!("/webhook-configs/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["health"]["state"].as_str().unwrap().to_string()
}

async fn wait_state(app: &TestApp, id: i64, wanted: &str) {
    eventually(WAIT, &format!("partner {id} {wanted}"), || async {
        state(app, id).await == wanted
    })
    .await;
}

fn credit(config_id: i64, event_id: &str) -> Value {
    Event::credit(event_id)
        .to(config_id)
        .param("e", event_id)
        .body()
}

/// A submit that read its partner as paused commits after the resume: before, the row was
/// inserted held (`partner_tripped` / `partner_paused` copied from the state it read) after
/// the resume had released the partner's rows, and stayed pending for good. The insert is
/// stopped between its read and its commit by a trigger that waits for an advisory lock the
/// test holds, so the order is fixed, not left to luck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_racing_a_resume_is_delivered() {
    let (receiver, app) = with_receiver(options()).await;
    let id = app.partner("racing", &receiver.url("/ok/r")).await;
    let (status, body) = app
        .post(&format!("/webhook-configs/{id}/pause"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    let gate = app.db.client().await;
    gate.batch_execute(
        "CREATE FUNCTION test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
         CREATE TRIGGER test_gate BEFORE INSERT ON webhook_queue FOR EACH ROW EXECUTE FUNCTION test_gate();
         SELECT pg_advisory_lock(4242);",
    )
    .await
    .unwrap();
    let submitting = {
        let (client, url) = (common::http_client(), app.url("/webhooks"));
        tokio::spawn(async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(credit(id, "raced").to_string())
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        })
    };
    app.db
        .wait_count(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            1,
            WAIT,
            "the insert to wait at the gate",
        )
        .await;
    let (status, body) = app
        .post(&format!("/webhook-configs/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    gate.batch_execute("SELECT pg_advisory_unlock(4242)")
        .await
        .unwrap();
    assert_eq!(submitting.await.unwrap(), 201);

    receiver.wait_for("/ok/r", 1, WAIT).await;
    app.db
        .wait_count(
            "SELECT count(*) FROM webhook_queue WHERE event_id = 'raced' AND status = 'completed'",
            1,
            WAIT,
            "the raced event completed",
        )
        .await;
}

/// One event the partner refuses with 500, every other one it takes. Failing every attempt of
/// that event trips the partner (it looks like an outage), but the probes take other events
/// first: the first one answered resumes the partner, the good events are delivered, and the
/// poison event fails on its own retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_does_not_keep_a_healthy_partner_tripped() {
    let (receiver, app) = with_receiver(options()).await;
    let id = app
        .partner("poisoned", &receiver.url("/fails-for/bad"))
        .await;
    let (status, body) = put(
        &app,
        &format!("/webhook-configs/{id}"),
        json!({"name": "poisoned", "postback_url": receiver.url("/fails-for/bad"),
                        "max_retries": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bad = app.submit(credit(id, "bad")).await;
    wait_state(&app, id, "tripped").await;

    let poison_calls = || {
        receiver
            .received_at("/fails-for/bad")
            .iter()
            .filter(|r| r.query.split('&').any(|p| p == "e=bad"))
            .count()
    };
    for n in 0..5 {
        app.submit(credit(id, &format!("good{n}"))).await;
    }
    // Probes made while the poison event was the partner's only row took it; how many depends
    // on how long the submits took, so only the calls after them are bounded.
    let before_good = poison_calls();
    let good_delivered = format!(
        "SELECT count(*) FROM webhook_queue
         WHERE config_id = {id} AND event_id LIKE 'good%' AND status = 'completed'"
    );
    app.db
        .wait_count(&good_delivered, 5, WAIT, "the good events delivered")
        .await;
    wait_state(&app, id, "active").await;
    let failed = app.wait_entry(&bad, "failed", WAIT).await;
    assert_eq!(failed["retry_count"], 2, "{failed}");
    // Three attempts tripped the partner. Once good events wait, a probe takes one of them:
    // the poison event gets at most a probe already under way and its last attempt once the
    // partner is active again.
    let (after_good, all) = (poison_calls() - before_good, poison_calls());
    assert!(all >= 4, "{all} calls for the poison event");
    assert!(
        (1..=2).contains(&after_good),
        "{after_good} calls for the poison event once good events waited ({all} in all)"
    );
    assert_eq!(state(&app, id).await, "active");
    // The poison event's last attempt was made twice (the first spent nothing, its partner was
    // tripped): the outcome write counts the slot anew, less what it held.
    common::counters::assert_counters_exact(&app.db, "a partner failure made again").await;
}

/// A partner that answers, even with a refusal, is up: a tripped partner whose probe is
/// answered 400 resumes (the probed event spends its attempt on its own failure), so a partner
/// that refuses events cannot stay tripped on probes that can never succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_answered_with_a_refusal_resumes_its_partner() {
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Status(500)).await;
    let app = spawn(options().env("CIRCUIT_FAILURE_THRESHOLD", 3)).await;
    let id = app.partner("refusing", &receiver.url("/switch/r")).await;
    for n in 0..3 {
        app.submit(credit(id, &format!("r{n}"))).await;
    }
    wait_state(&app, id, "tripped").await;
    receiver.set_mode(Mode::Status(400)).await;
    wait_state(&app, id, "active").await;
    app.db
        .wait_count(
            &format!(
                "SELECT count(*) FROM webhook_queue WHERE config_id = {id} AND status = 'failed'"
            ),
            3,
            WAIT,
            "every event failed on its own refusals",
        )
        .await;
    assert_eq!(state(&app, id).await, "active");
}
