//! Partner configs over the API against a real PostgreSQL: created, read, listed, replaced and
//! deactivated; every class of bad input answered 422 naming the field, and nothing written.

mod common;

use common::fixture::{unreachable, Event};
use common::http::*;
use common::{spawn, Options};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_created_read_listed_replaced_and_deactivated() {
    let app = spawn(Options::default()).await;

    let (status, created) = app
        .post(
            "/webhook-configs",
            json!({"name": "acme", "postback_url": "http://127.0.0.1:9/pb?uid={user_id}",
                   "chargeback_url": "http://127.0.0.1:9/cb", "max_retries": 3}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("an integer id");
    assert_eq!(created["name"], "acme");
    assert_eq!(
        created["postback_url"],
        "http://127.0.0.1:9/pb?uid={user_id}"
    );
    assert_eq!(created["chargeback_url"], "http://127.0.0.1:9/cb");
    assert_eq!(created["max_retries"], 3);
    assert_eq!(created["is_active"], true);
    assert_rfc3339_utc(&created["created_at"], "created_at");
    assert_rfc3339_utc(&created["updated_at"], "updated_at");
    let path = format!("/webhook-configs/{id}");

    let (status, read) = app.get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);

    let other = app
        .config("other", "http://127.0.0.1:9/o", "http://127.0.0.1:9/o")
        .await;
    let (status, list) = app.get("/webhook-configs").await;
    assert_eq!(status, 200);
    let items = list["items"].as_array().unwrap();
    let listed: Vec<i64> = items.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(listed, [id, other]);
    assert_eq!(items[0], created);
    assert!(list["next_cursor"].is_null());

    // PUT replaces the whole config: fields left out become null or their default.
    let replacement = json!({"name": "acme-2", "postback_url": "https://p.example/pb"});
    let (status, replaced) = put(&app, &path, replacement).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["id"], id);
    assert_eq!(replaced["name"], "acme-2");
    assert_eq!(replaced["postback_url"], "https://p.example/pb");
    assert!(replaced["chargeback_url"].is_null());
    assert!(replaced["max_retries"].is_null());
    assert_eq!(replaced["is_active"], true);
    assert_eq!(replaced["created_at"], created["created_at"]);
    assert_eq!(app.get(&path).await.1, replaced);
    // ... so it takes no more chargebacks.
    let debit = json!({"event_type": "-debit", "config_id": id});
    let answer = app.post("/webhooks", debit).await;
    assert_error(&answer, INVALID, Some("event_type"), "debit after replace");

    // A name is unique, on create and on replace.
    let before = config_rows(&app).await;
    let taken = json!({"name": "acme-2", "postback_url": "http://127.0.0.1:9/x"});
    let answer = app.post("/webhook-configs", taken.clone()).await;
    assert_error(&answer, CONFLICT, None, "create with a taken name");
    let answer = put(&app, &format!("/webhook-configs/{other}"), taken).await;
    assert_error(&answer, CONFLICT, None, "replace with a taken name");
    assert_eq!(config_rows(&app).await, before);
    assert_eq!(
        app.get(&format!("/webhook-configs/{other}")).await.1["name"],
        "other"
    );

    // DELETE deactivates: the row stays, and it accepts no new events.
    let (status, deactivated) = delete(&app, &path).await;
    assert_eq!(status, 200, "{deactivated}");
    assert_eq!(deactivated["is_active"], false);
    assert_eq!(app.get(&path).await.1["is_active"], false);
    assert_eq!(config_rows(&app).await, before);
    let answer = Event::u1_credit("after-deactivation", id).post(&app).await;
    let case = "submit to a deactivated config";
    assert_error(&answer, INVALID, Some("config_id"), case);
    assert_eq!(queue_rows(&app).await, 0);

    // PUT with is_active true brings it back.
    let revival =
        json!({"name": "acme-2", "postback_url": "https://p.example/pb", "is_active": true});
    let (status, revived) = put(&app, &path, revival).await;
    assert_eq!((status, &revived["is_active"]), (200, &json!(true)));
    app.submit(Event::u1_credit("revived", id).body()).await;

    for method in [Method::GET, Method::DELETE] {
        let answer = app
            .send(method.clone(), "/webhook-configs/999999", None)
            .await;
        assert_error(
            &answer,
            NOT_FOUND,
            None,
            &format!("{method} unknown config"),
        );
    }
    let replacement = json!({"name": "x", "postback_url": "http://127.0.0.1/"});
    let answer = put(&app, "/webhook-configs/999999", replacement).await;
    assert_error(&answer, NOT_FOUND, None, "PUT unknown config");
    assert_eq!(config_rows(&app).await, before);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_422_naming_the_field_and_write_nothing() {
    let app = spawn(Options::default()).await;
    let existing = unreachable(&app, "existing").await;
    let existing_path = format!("/webhook-configs/{existing}");
    let (_, existing_before) = app.get(&existing_path).await;
    let ok = "http://127.0.0.1:9/ok";
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, &str)> = vec![
        ("ftp scheme", json!({"name": "a", "postback_url": "ftp://p.example/pb"}), "postback_url"),
        ("javascript scheme", json!({"name": "a", "postback_url": "javascript:alert(1)"}), "postback_url"),
        ("bad chargeback scheme", json!({"name": "a", "postback_url": ok, "chargeback_url": "file:///etc/passwd"}), "chargeback_url"),
        ("no host", json!({"name": "a", "postback_url": "http:///pb"}), "postback_url"),
        ("placeholder in host", json!({"name": "a", "postback_url": "http://{host}/pb"}), "postback_url"),
        ("placeholder in port", json!({"name": "a", "postback_url": "http://p.example:{port}/pb"}), "postback_url"),
        ("unclosed placeholder", json!({"name": "a", "postback_url": "http://p.example/pb?u={user_id"}), "postback_url"),
        ("private address", json!({"name": "a", "postback_url": "http://10.0.0.1/x"}), "postback_url"),
        ("metadata address", json!({"name": "a", "postback_url": ok, "chargeback_url": "http://169.254.169.254/"}), "chargeback_url"),
        ("private IPv6 address", json!({"name": "a", "postback_url": "http://[fd00::1]/x"}), "postback_url"),
        ("IPv4-mapped private address", json!({"name": "a", "postback_url": "http://[::ffff:192.168.1.1]/x"}), "postback_url"),
        ("no URL at all", json!({"name": "a"}), "postback_url"),
        ("URL not a string", json!({"name": "a", "postback_url": 7}), "postback_url"),
        ("max_retries -1", json!({"name": "a", "postback_url": ok, "max_retries": -1}), "max_retries"),
        ("max_retries 7", json!({"name": "a", "postback_url": ok, "max_retries": 7}), "max_retries"),
        ("max_retries text", json!({"name": "a", "postback_url": ok, "max_retries": "3"}), "max_retries"),
        ("max_retries fraction", json!({"name": "a", "postback_url": ok, "max_retries": 1.5}), "max_retries"),
        ("missing name", json!({"postback_url": ok}), "name"),
        ("blank name", json!({"name": "  ", "postback_url": ok}), "name"),
        ("is_active not a bool", json!({"name": "a", "postback_url": ok, "is_active": "yes"}), "is_active"),
        ("unknown field", json!({"name": "a", "postback_url": ok, "secret_sauce": 1}), "secret_sauce"),
        // PostgreSQL text cannot hold U+0000: refused up front, not a 500 from the database.
        ("NUL in the name", json!({"name": "a\u{0}b", "postback_url": ok}), "name"),
        ("NUL in a URL", json!({"name": "a", "postback_url": "http://h/x\u{0}y"}), "postback_url"),
    ];
    for (case, body, field) in cases {
        let answer = app.post("/webhook-configs", body.clone()).await;
        assert_error(&answer, INVALID, Some(field), &format!("POST {case}"));
        let answer = put(&app, &existing_path, body).await;
        assert_error(&answer, INVALID, Some(field), &format!("PUT {case}"));
        assert_eq!(config_rows(&app).await, 1, "{case}: no row written");
    }
    let answer = app
        .post("/webhook-configs", json!(["not", "an", "object"]))
        .await;
    assert_error(&answer, INVALID, None, "array body");
    assert_eq!(config_rows(&app).await, 1);
    assert_eq!(
        app.get(&existing_path).await.1,
        existing_before,
        "PUTs changed nothing"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_address_is_accepted_when_outbound_allow_networks_covers_it() {
    let options = Options::default().env("OUTBOUND_ALLOW_NETWORKS", "10.0.0.0/8, 127.0.0.0/8");
    let app = spawn(options).await;
    app.config("internal", "http://10.1.2.3/pb", "http://127.0.0.1:9/cb")
        .await;
    let metadata = json!({"name": "meta", "postback_url": "http://169.254.169.254/"});
    let answer = app.post("/webhook-configs", metadata).await;
    assert_error(&answer, INVALID, Some("postback_url"), "metadata address");
    assert_eq!(config_rows(&app).await, 1);
    app.shutdown().await;
}
