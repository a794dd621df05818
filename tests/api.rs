//! The HTTP API's surface against a real PostgreSQL: path ids, unknown routes and methods,
//! bearer tokens, integers as JSON Schema counts them, and `/health` following the database
//! away and back. Each resource has its own file: `configs.rs`, `submits.rs`, `listing.rs`,
//! `stats.rs`.

mod common;

use std::time::Duration;

use common::fixture::{acme, Event};
use common::http::*;
use common::{spawn, Options, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ids_in_the_path_are_400_and_unknown_ids_404() {
    let app = spawn(Options::default()).await;
    let config = app.config("acme", "http://h/pb", "http://h/cb").await;
    let replacement = json!({"name": "x", "postback_url": "http://h/x"});
    #[rustfmt::skip]
    let malformed: Vec<(Method, &str, Option<Value>, &str)> = vec![
        (Method::GET, "/webhooks/not-a-uuid", None, "queue_id"),
        (Method::DELETE, "/webhooks/not-a-uuid", None, "queue_id"),
        (Method::GET, "/webhooks/123", None, "queue_id"),
        (Method::GET, "/webhook-configs/abc", None, "id"),
        (Method::GET, "/webhook-configs/1.5", None, "id"),
        (Method::GET, "/webhook-configs/99999999999999999999", None, "id"),
        (Method::PUT, "/webhook-configs/abc", Some(replacement), "id"),
        (Method::DELETE, "/webhook-configs/abc", None, "id"),
    ];
    for (method, path, body, field) in malformed {
        let answer = app.send(method.clone(), path, body).await;
        assert_error(&answer, MALFORMED, Some(field), &format!("{method} {path}"));
    }
    let unknown = uuid::Uuid::new_v4();
    for method in [Method::GET, Method::DELETE] {
        let answer = app
            .send(method.clone(), &format!("/webhooks/{unknown}"), None)
            .await;
        assert_error(
            &answer,
            NOT_FOUND,
            None,
            &format!("{method} unknown queue_id"),
        );
    }
    assert_eq!(queue_rows(&app).await, 0);
    assert_eq!(
        app.get(&format!("/webhook-configs/{config}")).await.1["name"],
        "acme"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_with_the_error_shape() {
    let app = spawn(Options::default()).await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (
            Method::POST,
            "/webhooks/123e4567-e89b-12d3-a456-426614174000/nope",
        ),
        (Method::GET, "/webhook-configs/1/extra"),
        // A known path with another method is a 405 now (issue 18):
        // `a_known_path_asked_with_another_method_is_405_with_allow`.
    ] {
        let answer = app.send(method.clone(), path, None).await;
        assert_error(&answer, NOT_FOUND, None, &format!("{method} {path}"));
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bearer_token_every_route_but_health_is_401() {
    let app = spawn(Options::default().env("API_TOKEN", "s3cret-token")).await;
    let body = json!({"name": "acme", "postback_url": "http://h/pb"}).to_string();
    let create = |authorization: Option<&str>| {
        let mut request = app
            .http
            .post(app.url("/webhook-configs"))
            .header("Content-Type", "application/json")
            .body(body.clone());
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        request.send()
    };
    for (case, authorization) in [
        ("no token", None),
        ("wrong token", Some("Bearer nope")),
        ("not bearer", Some("Basic s3cret-token")),
    ] {
        let response = create(authorization).await.unwrap();
        let challenge = response
            .headers()
            .get("WWW-Authenticate")
            .map(|v| v.to_str().unwrap());
        assert_eq!(challenge, Some("Bearer"), "{case}");
        let answer = (response.status().as_u16(), json_of(response).await);
        assert_error(&answer, UNAUTHORIZED, None, case);
    }
    assert_eq!(config_rows(&app).await, 0);
    assert_eq!(app.get("/health").await.0, 200);
    assert_error(
        &app.get("/webhooks/stats").await,
        UNAUTHORIZED,
        None,
        "stats",
    );
    let response = create(Some("Bearer s3cret-token")).await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(config_rows(&app).await, 1);
    app.shutdown().await;
}

/// Polls `/health` until it answers `status` (within 15 s) and returns that body.
async fn health_once_it_answers(app: &TestApp, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (got, body) = app.get("/health").await;
        if got == status {
            return body;
        }
        let late = tokio::time::Instant::now() >= deadline;
        assert!(!late, "/health still answers {got} {body}, not {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_the_database_is_away_and_200_once_it_is_back() {
    let app = spawn(Options::default()).await;
    let config = acme(&app).await;
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");

    // Take this test's database away: no new connections, and the open ones are ended.
    let admin = common::admin().await;
    let name = app.db.name.clone();
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .unwrap();

    let health = health_once_it_answers(&app, 503).await;
    assert_eq!(health["status"], "unavailable", "{health}");

    // A submit now is a 503 whose body says nothing of the cause ...
    let answer = Event::u1_credit("while-away", config).post(&app).await;
    assert_error(
        &answer,
        UNAVAILABLE,
        None,
        "submit while the database is away",
    );
    let text = answer.1.to_string().to_lowercase();
    for leak in [
        name.as_str(),
        "postgres",
        "connect",
        "127.0.0.1",
        "5432",
        "fatal",
        "sql",
    ] {
        assert!(!text.contains(leak), "the body leaks {leak:?}: {text}");
    }
    assert_error(
        &app.get("/webhooks/stats").await,
        UNAVAILABLE,
        None,
        "stats while away",
    );
    // ... while the cause is logged.
    let logged = app.logs.lines().into_iter().any(|l| {
        l["status"] == 503
            && l["path"] == "/webhooks"
            && l["cause"].as_str().is_some_and(|c| !c.is_empty())
    });
    assert!(
        logged,
        "the cause of the 503 is logged:\n{}",
        app.logs.text()
    );

    // Bring it back.
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    let health = health_once_it_answers(&app, 200).await;
    assert_eq!(
        (&health["status"], &health["database"]),
        (&json!("ok"), &json!("ok"))
    );
    app.submit(Event::u1_credit("after-return", config).body())
        .await;
    assert_eq!(
        queue_rows(&app).await,
        1,
        "only the submit made after the return"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_path_asked_with_another_method_is_405_with_allow() {
    let app = spawn(Options::default()).await;
    let queue_id = uuid::Uuid::new_v4();
    for (method, path, allow) in [
        (Method::PUT, "/webhooks/stats".to_string(), "GET"),
        // Not the `DELETE /webhooks/{queue_id}` that would read "stats" as an id.
        (Method::DELETE, "/webhooks/stats".to_string(), "GET"),
        (Method::GET, "/webhooks/batch".to_string(), "POST"),
        (
            Method::PATCH,
            "/webhook-configs/1".to_string(),
            "GET, PUT, DELETE",
        ),
        (Method::GET, format!("/webhooks/{queue_id}/retry"), "POST"),
        (Method::PUT, "/webhooks".to_string(), "POST, GET"),
        (Method::POST, "/health".to_string(), "GET"),
        (
            Method::from_bytes(b"TRACE").unwrap(),
            "/".to_string(),
            "GET",
        ),
    ] {
        let response = app
            .http
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        let case = format!("{method} {path}");
        assert_eq!(response.status().as_u16(), 405, "{case}");
        assert_eq!(
            response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok()),
            Some(allow),
            "{case}"
        );
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{case}: {body}"
        );
    }
    // A path the API does not have is still a 404, whatever the method.
    let (status, body) = app.send(Method::PUT, "/nowhere", None).await;
    assert_error(&(status, body), NOT_FOUND, None, "PUT /nowhere");
    assert_eq!(
        app.db.count("SELECT count(*) FROM webhook_configs").await,
        0
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_written_with_a_zero_fraction_are_integers() {
    let app = spawn(Options::default()).await;
    let config = json!({"name": "p", "postback_url": "https://p.example/pb", "max_retries": 3.0});
    let (status, created) = app.post("/webhook-configs", config).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["max_retries"], 3);
    let (status, page) = app
        .post(
            "/webhooks/redrive",
            json!({"dry_run": true, "limit": 612.0}),
        )
        .await;
    assert_eq!((status, &page["matched"]), (200, &json!(0)), "{page}");
    for (case, body, field) in [
        (
            "a fraction",
            json!({"name": "q", "postback_url": "https://p.example/pb", "max_retries": 3.5}),
            "max_retries",
        ),
        (
            "past 2^53 as a float",
            json!({"name": "q", "postback_url": "https://p.example/pb", "max_retries": 1e19}),
            "max_retries",
        ),
    ] {
        let answer = app.post("/webhook-configs", body).await;
        assert_error(&answer, INVALID, Some(field), case);
    }
    assert_eq!(
        app.db.count("SELECT count(*) FROM webhook_configs").await,
        1
    );
    app.shutdown().await;
}
