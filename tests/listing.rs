//! Listing entries over the API against a real PostgreSQL: filters, keyset pages that visit
//! every entry once even while rows arrive, cancelling, and the search by `event_id`.

mod common;

use std::collections::BTreeSet;

use common::fixture::{api_with_acme, queue_id, Event, RowState};
use common::http::*;
use common::{spawn, Options, TestApp};
use serde_json::json;

const REDACTED_POSTBACK: &str = "https://p.example/pb?user={user_id}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_filters_by_status_event_type_config_creation_time_and_cancellation() {
    let app = spawn(Options::default()).await;
    let a = app.config("a", "http://h/pb", "http://h/cb").await;
    let b = app.config("b", "http://h/pb", "http://h/cb").await;
    let mut submitted = Vec::new();
    for (event_type, config) in [
        ("+credit", a),
        ("+credit", a),
        ("-debit", a),
        ("+credit", b),
        ("+credit", b),
    ] {
        let entry = app
            .submit(json!({"event_type": event_type, "config_id": config}))
            .await;
        submitted.push(queue_id(&entry));
    }
    let [a1, a2, a3, b1, b2] = &submitted[..] else {
        unreachable!()
    };
    RowState::status("completed").apply(&app.db, &[a2]).await;
    RowState::unchanged()
        .set("created_at = '2020-01-01T00:00:00Z'")
        .apply(&app.db, &[a1])
        .await;
    assert_eq!(delete(&app, &format!("/webhooks/{b2}")).await.0, 200);

    #[rustfmt::skip]
    let cases: Vec<(String, Vec<&String>)> = vec![
        (String::new(), vec![b2, b1, a3, a2, a1]),
        ("status=completed".into(), vec![a2]),
        ("status=pending".into(), vec![b2, b1, a3, a1]),
        ("status=pending&cancelled=false".into(), vec![b1, a3, a1]),
        ("status=failed".into(), vec![]),
        ("cancelled=true".into(), vec![b2]),
        ("event_type=%2Bcredit".into(), vec![b2, b1, a2, a1]),
        ("event_type=-debit".into(), vec![a3]),
        (format!("config_id={b}"), vec![b2, b1]),
        (format!("config_id={a}&event_type=%2Bcredit&status=pending"), vec![a1]),
        ("created_before=2021-01-01T00:00:00Z".into(), vec![a1]),
        ("created_after=2021-01-01T00:00:00Z".into(), vec![b2, b1, a3, a2]),
        ("created_after=2019-12-31T23:00:00%2B00:00&created_before=2020-01-02T00:00:00Z".into(), vec![a1]),
        ("config_id=999999".into(), vec![]),
    ];
    for (query, expected) in cases {
        let (status, page) = app.get(&format!("/webhooks?{query}")).await;
        assert_eq!(status, 200, "?{query}: {page}");
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(ids_of(&page), expected, "?{query}");
        assert!(page["next_cursor"].is_null(), "?{query}: {page}");
    }
    let (_, page) = app.get("/webhooks?cancelled=true").await;
    assert_rfc3339_utc(&page["items"][0]["cancelled_at"], "cancelled_at");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_listing_parameters_are_422_naming_the_parameter() {
    let app = spawn(Options::default()).await;
    let config = app.config("acme", "http://h/pb", "http://h/cb").await;
    app.submit(json!({"event_type": "+credit", "config_id": config}))
        .await;
    for (query, field) in [
        ("status=done", "status"),
        ("status=", "status"),
        ("event_type=credit", "event_type"),
        ("event_type=+credit", "event_type"), // an unencoded + is a space
        ("config_id=abc", "config_id"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2020-01-01", "created_before"),
        ("cancelled=maybe", "cancelled"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("cursor=x", "cursor"),
        ("cursor=0", "cursor"),
        ("cursor=-5", "cursor"),
        ("sort=asc", "sort"),
    ] {
        let answer = app.get(&format!("/webhooks?{query}")).await;
        assert_error(&answer, INVALID, Some(field), &format!("?{query}"));
    }
    for query in ["limit=1", "limit=500"] {
        assert_eq!(
            app.get(&format!("/webhooks?{query}")).await.0,
            200,
            "?{query}"
        );
    }
    app.shutdown().await;
}

/// Every page of `/webhooks?{query}`, following `next_cursor` until it is null.
async fn walk(app: &TestApp, query: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut path = format!("/webhooks?{query}");
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        pages.push(ids_of(&page));
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/webhooks?{query}&cursor={next}"),
            None => return pages,
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_pages_visit_every_entry_once_newest_first_even_while_rows_arrive() {
    let (app, config) = api_with_acme().await;
    let mut originals = Vec::new();
    for n in 0..25 {
        originals.push(queue_id(
            &app.submit(Event::u1_credit(&format!("e{n}"), config).body())
                .await,
        ));
    }
    let newest_first: Vec<String> = originals.iter().rev().cloned().collect();

    // Follow next_cursor until it is null, submitting new rows between pages.
    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut path = "/webhooks?limit=10".to_string();
    let mut arrivals = 0;
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let ids = ids_of(&page);
        page_sizes.push(ids.len());
        seen.extend(ids);
        for _ in 0..3 {
            app.submit(Event::u1_credit(&format!("arrival-{arrivals}"), config).body())
                .await;
            arrivals += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/webhooks?limit=10&cursor={next}"),
            None => break,
        }
        assert!(
            page_sizes.len() < 10,
            "pagination does not end: {page_sizes:?}"
        );
    }
    assert_eq!(page_sizes, [10, 10, 5]);
    assert_eq!(
        seen, newest_first,
        "every original entry exactly once, newest first"
    );

    // A fresh walk sees the arrivals first, then the originals, each once.
    let all: Vec<String> = walk(&app, "limit=7").await.concat();
    assert_eq!(all.len(), 25 + arrivals);
    assert_eq!(
        all.iter().collect::<BTreeSet<_>>().len(),
        all.len(),
        "no entry twice"
    );
    assert_eq!(all[arrivals..], newest_first[..]);

    // Filters and cursor work together.
    let pages = walk(&app, &format!("config_id={config}&status=pending&limit=20")).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [20, 25 + arrivals - 20]);
    assert_eq!(pages.concat(), all);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_sets_cancelled_at_once_counts_under_cancelled_and_refuses_completed_entries() {
    let (app, config) = api_with_acme().await;
    let kept = queue_id(&app.submit(Event::u1_credit("kept", config).body()).await);
    let doomed = queue_id(&app.submit(Event::u1_credit("doomed", config).body()).await);
    let delivered = queue_id(
        &app.submit(Event::u1_credit("delivered", config).body())
            .await,
    );
    RowState::status("completed")
        .apply(&app.db, &[&delivered])
        .await;

    let path = format!("/webhooks/{doomed}");
    let (status, cancelled) = delete(&app, &path).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(queue_id(&cancelled), doomed);
    assert_rfc3339_utc(&cancelled["cancelled_at"], "cancelled_at");
    assert_eq!(
        cancelled["status"], "pending",
        "the status stays what it was"
    );

    // Twice is fine and changes nothing.
    let (status, again) = delete(&app, &path).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["cancelled_at"], cancelled["cancelled_at"]);
    let (_, read) = app.get(&path).await;
    assert_eq!(read["cancelled_at"], cancelled["cancelled_at"]);
    let sql = format!(
        "SELECT count(*) FROM webhook_queue WHERE deleted_at IS NOT NULL AND queue_id = '{doomed}'"
    );
    assert_eq!(app.db.count(&sql).await, 1, "deleted_at is set on the row");

    // A delivered entry cannot be cancelled.
    let answer = delete(&app, &format!("/webhooks/{delivered}")).await;
    assert_error(&answer, CONFLICT, None, "cancel a completed entry");
    assert!(app.get(&format!("/webhooks/{delivered}")).await.1["cancelled_at"].is_null());

    // Stats count the cancelled entry apart from the statuses.
    let (_, stats) = app.get("/webhooks/stats").await;
    assert_eq!(stats["cancelled"], 1);
    let by_status = json!({"pending": 1, "processing": 0, "completed": 1, "failed": 0});
    assert_eq!(stats["by_status"], by_status);
    assert_eq!(stats["total"], 2);
    assert_eq!(stats["by_event_type"]["+credit"], by_status);
    assert!(app.get(&format!("/webhooks/{kept}")).await.1["cancelled_at"].is_null());
    assert_eq!(queue_rows(&app).await, 3);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_finds_an_event_by_its_event_id_and_entries_show_a_redacted_url() {
    let app = spawn(Options::default()).await;
    let config = app
        .config("p", REDACTED_POSTBACK, "https://p.example/cb")
        .await;
    let wanted = app
        .submit(
            json!({"event_type": "+credit", "event_id": "tx é 1", "config_id": config,
            "url_params": {"user_id": "u1", "token": "s3cret", "api_key": "k"}}),
        )
        .await;
    app.submit(
        json!({"event_type": "+credit", "event_id": "tx 2", "config_id": config,
        "url_params": {"user_id": "u2"}}),
    )
    .await;
    assert_eq!(
        wanted["webhook_url_redacted"],
        "https://p.example/pb?user=u1&api_key=***&token=***"
    );
    assert!(wanted["webhook_url"].as_str().unwrap().contains("s3cret"));
    let (status, page) = app.get("/webhooks?event_id=tx%20%C3%A9%201").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["queue_id"], wanted["queue_id"]);
    let (_, page) = app.get("/webhooks?event_id=nope").await;
    assert_eq!(page["items"], json!([]));
    let long = "e".repeat(256);
    for (case, query) in [
        ("empty", "event_id=".to_string()),
        ("too long", format!("event_id={long}")),
    ] {
        let answer = app.get(&format!("/webhooks?{query}")).await;
        assert_error(&answer, INVALID, Some("event_id"), case);
    }
    app.shutdown().await;
}
