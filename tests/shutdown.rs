//! Shutdown (docs/operations.md, "Shutdown"): the supervisor stops every service of a process in
//! one order — stop taking work, flush writes, then the rest — and waits for each.

mod common;

use std::time::{Duration, Instant};

use common::scenario::delivering;
use common::{spawn, Options};
use serde_json::json;
use webhookd::startup::Joined;

const WAIT: Duration = Duration::from_secs(15);

fn joined_at<'a>(stopped: &'a [Joined], name: &str) -> Vec<&'a Joined> {
    stopped.iter().filter(|j| j.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_waits_for_every_service_in_order_and_writes_the_call_in_flight() {
    let (receiver, app) = delivering("WORKER_COUNT=2").await;
    let config = app.partner("slow", &receiver.url("/slow/700")).await;
    let entry = app
        .submit(json!({"event_type": "+credit", "event_id": "e1", "config_id": config}))
        .await;
    receiver.wait_for("/slow", 1, WAIT).await;

    let stopping = Instant::now();
    let (db, stopped) = app.shutdown_reporting().await;
    // The call in flight was let finish: most of its 700 ms were still to run.
    assert!(
        stopping.elapsed() >= Duration::from_millis(300),
        "{stopped:?}"
    );

    let services = &stopped.services;
    let names: Vec<&str> = services.iter().map(|j| j.name).collect();
    assert_eq!(
        names,
        [
            "API server",
            "submit batcher",
            "debit rechecks",
            "worker",
            "worker",
            "writer",
            "listener",
            "prober",
            "pruner"
        ]
    );
    for joined in services {
        assert!(joined.result.is_ok(), "{joined:?}");
    }
    let at = |name| joined_at(services, name)[0].at;
    // The API side in order: no request left, then no submit, then no recheck.
    assert!(at("API server") <= at("submit batcher"));
    assert!(at("submit batcher") <= at("debit rechecks"));
    // The writer only after the last worker, the rest after the writer.
    for worker in joined_at(services, "worker") {
        assert!(worker.at <= at("writer"));
    }
    assert!(at("writer") <= at("listener"));
    assert!(at("listener") <= at("prober"));
    assert!(at("prober") <= at("pruner"));

    // The call's outcome was written before the stop returned.
    let sql = "SELECT status FROM webhook_queue WHERE queue_id = $1::text::uuid";
    let queue_id = entry["queue_id"].as_str().unwrap();
    let row = db
        .client()
        .await
        .query_one(sql, &[&queue_id])
        .await
        .unwrap();
    let status: String = row.get(0);
    assert_eq!(status, "completed");
    receiver.stop().await;
}

#[tokio::test]
async fn an_api_process_stops_its_server_then_the_services_behind_it() {
    let app = spawn(Options::default()).await;
    let (_db, stopped) = app.shutdown_reporting().await;
    let names: Vec<&str> = stopped.services.iter().map(|j| j.name).collect();
    assert_eq!(names, ["API server", "submit batcher", "debit rechecks"]);
    assert!(stopped.into_result().is_ok());
}
