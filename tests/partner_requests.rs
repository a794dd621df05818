//! Partner requests (docs/api.md, "Partner requests"): POST and PUT bodies from templates,
//! headers, Basic and bearer auth, a proxy, client certificates, signing secret rotation and
//! sealed secrets, each against real peers on loopback.

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::http::assert_refusal_mentions;
use common::proxy::ConnectProxy;
use common::receiver::Receiver;
use common::scenario::delivering;
use common::tls_receiver::{TestPki, TlsReceiver, CLIENT_CN};
use common::{spawn, spawn_on, Options, TestApp, TestDb};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

fn random_secret() -> String {
    let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn random_key() -> String {
    let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Whether the published `standardwebhooks` package verifies `call`'s signature headers over
/// `content`.
fn package_verifies(secret: &str, content: &str, call: &common::receiver::Received) -> bool {
    let headers = json!({
        "webhook-id": call.header("webhook-id"),
        "webhook-timestamp": call.header("webhook-timestamp"),
        "webhook-signature": call.header("webhook-signature"),
    });
    common::standard_webhooks::package_verifies(secret, content, &headers).is_ok()
}

async fn create(app: &TestApp, body: Value) -> Value {
    let (status, created) = app.post("/webhook-configs", body).await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn deliver(app: &TestApp, config: &Value, event_type: &str, params: Value) -> Value {
    let entry = app
        .submit(json!({"event_type": event_type, "config_id": config["id"], "url_params": params}))
        .await;
    app.wait_entry(&entry, "completed", WAIT).await
}

/// Submits a `+credit` to `config` (whose partner must fail it for good) and returns the error
/// its one attempt recorded.
async fn failed_attempt_error(app: &TestApp, config: &Value) -> String {
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config["id"]}))
        .await;
    let failed = app.wait_entry(&entry, "failed", WAIT).await;
    failed["attempts"][0]["error"].as_str().unwrap().to_string()
}

/// Every text of both tables, to look for a secret in clear.
async fn tables_text(db: &TestDb) -> String {
    let client = db.client().await;
    let mut text = String::new();
    for table in ["webhook_configs", "webhook_queue"] {
        for row in client
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .unwrap()
        {
            text.push_str(row.get::<_, &str>(0));
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_and_put_partners_receive_the_bodies_headers_and_auth_their_templates_describe() {
    let (receiver, app) = delivering("").await;
    let secret = random_secret();
    let json_partner = create(
        &app,
        json!({"name": "json", "postback_url": receiver.url("/ok/json?src=net"),
               "postback_request": {"method": "POST", "body": {"format": "json", "template":
                   {"click": "{click_id}", "amount": "{amount}", "note": "paid \"{click_id}\"", "fixed": [1, null]}}},
               "headers": [{"name": "X-Click", "value": "c-{click_id}"},
                           {"name": "X-Api-Key", "value": "key-hunter2", "secret": true}],
               "auth": {"type": "basic", "username": "acme", "password": "pw-hunter2"},
               "signing_secret": secret}),
    )
    .await;
    let form_partner = create(
        &app,
        json!({"name": "form", "chargeback_url": receiver.url("/ok/form"),
               "chargeback_request": {"method": "PUT", "body": {"format": "form", "template":
                   {"tx": "{tx}", "reason": "refund {tx} & more"}}},
               "auth": {"type": "bearer", "token": "tok-hunter2"}}),
    )
    .await;
    // What the API shows: templates as written, every secret as ***.
    assert_eq!(json_partner["headers"][1]["value"], "***");
    assert_eq!(json_partner["auth"]["password"], "***");
    assert_eq!(
        form_partner["auth"],
        json!({"type": "bearer", "token": "***"})
    );

    deliver(
        &app,
        &json_partner,
        "+credit",
        json!({"click_id": "a\"b", "amount": 12.5, "extra": "x y"}),
    )
    .await;
    deliver(&app, &form_partner, "-debit", json!({"tx": "t 1/é"})).await;

    let call = &receiver.wait_for("/ok/json", 1, WAIT).await[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.header("content-type"), "application/json");
    assert_eq!(
        call.body_text(),
        r#"{"click":"a\"b","amount":12.5,"note":"paid \"a\"b\"","fixed":[1,null]}"#
    );
    // The parameters the body used are not repeated in the query; the others are.
    assert_eq!(call.path_and_query(), "/ok/json?src=net&extra=x%20y");
    assert_eq!(call.header("x-click"), "c-a\"b");
    assert_eq!(call.header("x-api-key"), "key-hunter2");
    let basic = base64::engine::general_purpose::STANDARD.encode("acme:pw-hunter2");
    assert_eq!(call.header("authorization"), format!("Basic {basic}"));
    assert!(package_verifies(&secret, &call.body_text(), call));
    assert!(!package_verifies(&random_secret(), &call.body_text(), call));
    assert!(!package_verifies(&secret, "{}", call));

    let call = &receiver.wait_for("/ok/form", 1, WAIT).await[0];
    assert_eq!(call.method, "PUT");
    assert_eq!(
        call.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        call.body_text(),
        "tx=t+1%2F%C3%A9&reason=refund+t+1%2F%C3%A9+%26+more"
    );
    assert_eq!(call.path_and_query(), "/ok/form");
    assert_eq!(call.header("authorization"), "Bearer tok-hunter2");
    assert_eq!(call.header("webhook-signature"), "", "not signed");

    // No secret in clear: not in the tables, the API, the console's data or the logs.
    let stored = tables_text(&app.db).await;
    let (_, listed) = app.get("/webhook-configs").await;
    let logs = app.logs.clone();
    app.shutdown().await;
    for secret in [
        "key-hunter2",
        "pw-hunter2",
        "tok-hunter2",
        &secret["whsec_".len()..],
    ] {
        assert!(!stored.contains(secret), "{secret} is stored in clear");
        assert!(!listed.to_string().contains(secret), "{secret} is shown");
        assert!(!logs.text().contains(secret), "{secret} is in the log");
    }
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_templates_and_missing_parameters_are_refused_and_change_nothing() {
    let app = spawn(Options::default()).await;
    let pb = "http://partner.example/pb";
    for (what, field, body) in [
        (
            "a placeholder that does not close",
            "postback_request",
            json!({"postback_request": {"method": "POST", "body": {"format": "json", "template": {"a": "{x"}}}}),
        ),
        (
            "a GET with a body",
            "postback_request",
            json!({"postback_request": {"method": "GET", "body": {"format": "json", "template": {}}}}),
        ),
        (
            "an unknown method",
            "postback_request",
            json!({"postback_request": {"method": "PATCH"}}),
        ),
        (
            "a form that is not an object of strings",
            "postback_request",
            json!({"postback_request": {"method": "POST", "body": {"format": "form", "template": {"a": 1}}}}),
        ),
        (
            "a header webhookd sets itself",
            "headers[0]",
            json!({"headers": [{"name": "Content-Type", "value": "x"}]}),
        ),
        (
            "a header value with a line break",
            "headers[0]",
            json!({"headers": [{"name": "X-A", "value": "a\r\nb"}]}),
        ),
        (
            "a header that is not secret without a value",
            "headers[0]",
            json!({"headers": [{"name": "X-A"}]}),
        ),
        (
            "a private key without its certificate",
            "client_tls.private_key",
            json!({"client_tls": {"ca_certificate": "x", "private_key": "k"}}),
        ),
        (
            "a templated secret",
            "headers[0]",
            json!({"headers": [{"name": "X-A", "value": "{k}", "secret": true}]}),
        ),
        (
            "a new secret header without its value",
            "headers[0].value",
            json!({"headers": [{"name": "X-A", "value": "***", "secret": true}]}),
        ),
        (
            "Basic auth without its password",
            "auth.password",
            json!({"auth": {"type": "basic", "username": "u"}}),
        ),
        (
            "a proxy that is not http(s)",
            "proxy_url",
            json!({"proxy_url": "socks5://10.0.0.1:1080"}),
        ),
        (
            "a grace period without a new secret",
            "signing_secret_grace",
            json!({"signing_secret_grace": "1h"}),
        ),
        (
            "a certificate that is not PEM",
            "client_tls",
            json!({"client_tls": {"certificate": "not pem", "private_key": "x"}}),
        ),
    ] {
        let mut body = body;
        body["name"] = json!("bad");
        body["postback_url"] = json!(pb);
        let (status, answer) = app.post("/webhook-configs", body).await;
        assert_eq!(status, 422, "{what}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{what}: {answer}");
    }
    assert_eq!(
        app.db.count("SELECT count(*) FROM webhook_configs").await,
        0
    );

    let config = create(
        &app,
        json!({"name": "p", "postback_url": pb,
               "postback_request": {"method": "POST", "body": {"format": "json", "template": {"a": "{needed}"}}},
               "headers": [{"name": "X-Ref", "value": "{ref}"}]}),
    )
    .await;
    for (params, field) in [
        (json!({"ref": "r"}), "url_params.needed"),
        (json!({"needed": "n"}), "url_params.ref"),
        (json!({"needed": "n", "ref": "a\nb"}), "url_params.ref"),
    ] {
        let (status, answer) = app
            .post(
                "/webhooks",
                json!({"event_type": "+credit", "config_id": config["id"], "url_params": params}),
            )
            .await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    assert_eq!(app.db.count("SELECT count(*) FROM webhook_queue").await, 0);
    app.shutdown().await;

    // Without SECRET_KEYS a secret is refused rather than stored in clear.
    let app = spawn(Options::default().env("SECRET_KEYS", "")).await;
    for body in [
        json!({"name": "s", "postback_url": pb, "signing_secret": random_secret()}),
        json!({"name": "s", "postback_url": pb, "auth": {"type": "bearer", "token": "t"}}),
    ] {
        let answer = app.post("/webhook-configs", body).await;
        assert_refusal_mentions(&answer, 422, "SECRET_KEYS");
    }
    assert_eq!(
        app.db.count("SELECT count(*) FROM webhook_configs").await,
        0
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_through_the_proxy_and_a_blocked_partner_stays_blocked() {
    let receiver = Receiver::start().await;
    let proxy = ConnectProxy::start().await;
    let own_proxy = ConnectProxy::start_with_auth("egress", "px-hunter2").await;
    let pki = TestPki::new();
    let tls = TlsReceiver::start(&pki, false).await;
    let app = spawn(Options::with_workers().env("OUTBOUND_PROXY", proxy.url())).await;
    let plain = create(
        &app,
        json!({"name": "plain", "postback_url": receiver.url("/ok/proxied")}),
    )
    .await;
    let own = create(
        &app,
        json!({"name": "own", "postback_url": tls.url_ip("/tls"),
               "proxy_url": own_proxy.url().replace("http://", "http://egress:px-hunter2@"),
               "client_tls": {"ca_certificate": pki.ca_pem}}),
    )
    .await;
    assert_eq!(
        own["proxy_url"],
        own_proxy.url().replace("http://", "http://egress:***@") + "/"
    );
    deliver(&app, &plain, "+credit", json!({"n": "1"})).await;
    deliver(&app, &own, "+credit", json!({"n": "2"})).await;
    assert_eq!(receiver.wait_for("/ok/proxied", 1, WAIT).await.len(), 1);
    assert_eq!(tls.wait_for(1, WAIT).await[0].path_and_query, "/tls?n=2");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert!(seen[0].target.ends_with("/ok/proxied?n=1"), "{seen:?}");
    let seen = own_proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "CONNECT");
    assert_eq!(seen[0].target, format!("127.0.0.1:{}", tls.port()));
    app.shutdown().await;

    // With the proxy in place, a partner on a network deliveries may not reach is refused
    // before the call is handed to the proxy.
    let app = spawn(
        Options::with_workers()
            .env("OUTBOUND_PROXY", proxy.url())
            .env("OUTBOUND_ALLOW_NETWORKS", "")
            .env("RETRY_MAX_RETRIES", "0"),
    )
    .await;
    let blocked = create(
        &app,
        json!({"name": "blocked", "postback_url": receiver.url("/ok/blocked").replace("127.0.0.1", "localhost")}),
    )
    .await;
    let error = failed_attempt_error(&app, &blocked).await;
    assert!(error.contains("loopback"), "{error}");
    assert_eq!(proxy.seen().len(), 1, "the blocked call reached the proxy");
    assert!(receiver.received_at("/ok/blocked").is_empty());
    app.shutdown().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_that_requires_a_client_certificate_takes_the_configured_one_only() {
    let pki = TestPki::new();
    let tls = TlsReceiver::start(&pki, true).await;
    let app = spawn(Options::workers("RETRY_MAX_RETRIES=0")).await;
    let with = create(
        &app,
        json!({"name": "mtls", "postback_url": tls.url_ip("/mtls"),
               "client_tls": {"certificate": pki.client_cert_pem, "private_key": pki.client_key_pem,
                              "ca_certificate": pki.ca_pem}}),
    )
    .await;
    assert_eq!(with["client_tls"]["private_key"], "***");
    let without = create(
        &app,
        json!({"name": "no cert", "postback_url": tls.url_ip("/none"),
               "client_tls": {"ca_certificate": pki.ca_pem}}),
    )
    .await;
    let wrong = create(
        &app,
        json!({"name": "other ca", "postback_url": tls.url_ip("/other"),
               "client_tls": {"certificate": pki.other_client_cert_pem,
                              "private_key": pki.other_client_key_pem, "ca_certificate": pki.ca_pem}}),
    )
    .await;
    deliver(&app, &with, "+credit", json!({})).await;
    assert_eq!(
        tls.wait_for(1, WAIT).await[0].client_cert_cn.as_deref(),
        Some(CLIENT_CN)
    );
    for config in [&without, &wrong] {
        let error = failed_attempt_error(&app, config).await;
        assert!(
            error.contains("CertificateRequired") || error.contains("UnknownCA"),
            "the attempt says why: {error}"
        );
    }
    assert_eq!(
        tls.received().len(),
        1,
        "only the configured certificate got in"
    );
    let stored = tables_text(&app.db).await;
    assert!(
        !stored.contains("PRIVATE KEY"),
        "a client key is stored in clear"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_secret_signs_alongside_the_new_one_until_its_grace_period_ends() {
    let (receiver, app) = delivering("").await;
    let (old, new) = (random_secret(), random_secret());
    let body = |secret: &str| {
        json!({"name": "rotating", "postback_url": receiver.url("/ok/rot"),
               "postback_request": {"method": "POST", "body": {"format": "json", "template": {"n": "{n}"}}},
               "signing_secret": secret})
    };
    let config = create(&app, body(&old)).await;
    let path = format!("/webhook-configs/{}", config["id"]);
    let mut rotation = body(&new);
    rotation["signing_secret_grace"] = json!("1h");
    let (status, rotated) = app.send(reqwest::Method::PUT, &path, Some(rotation)).await;
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated["signing_previous_until"].is_string(), "{rotated}");

    deliver(&app, &config, "+credit", json!({"n": "1"})).await;
    let during = &receiver.wait_for("/ok/rot", 1, WAIT).await[0];
    assert_eq!(
        during.header("webhook-signature").split(' ').count(),
        2,
        "two signatures during the grace period"
    );
    assert!(package_verifies(&new, &during.body_text(), during));
    assert!(package_verifies(&old, &during.body_text(), during));

    // The grace period ends (moved into the past rather than waited for).
    app.db
        .exec("UPDATE webhook_configs SET previous_signing_secret_until = now() - interval '1 second'")
        .await;
    let (_, ended) = app.get(&path).await;
    assert!(ended["signing_previous_until"].is_null(), "{ended}");
    deliver(&app, &config, "+credit", json!({"n": "2"})).await;
    let after = &receiver.wait_for("/ok/rot", 2, WAIT).await[1];
    assert_eq!(after.body_text(), r#"{"n":"2"}"#);
    assert!(package_verifies(&new, &after.body_text(), after));
    assert!(!package_verifies(&old, &after.body_text(), after));
    app.shutdown().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_seals_clear_secrets_and_rotates_the_key() {
    let receiver = Receiver::start().await;
    let clear = random_secret();
    // A signing secret stored before SECRET_KEYS existed keeps signing, with a warning.
    let app = spawn(Options::workers("SECRET_KEYS=")).await;
    let config = create(
        &app,
        json!({"name": "legacy", "postback_url": receiver.url("/ok/legacy")}),
    )
    .await;
    app.db
        .exec(&format!(
            "UPDATE webhook_configs SET signing_secret = '{clear}'"
        ))
        .await;
    let db = app.shutdown().await;
    let app = spawn_on(db, Options::workers("SECRET_KEYS=")).await;
    assert!(app
        .logs
        .text()
        .contains("signing secrets are stored in clear"));
    deliver(&app, &config, "+credit", json!({"n": "1"})).await;
    let call = &receiver.wait_for("/ok/legacy", 1, WAIT).await[0];
    assert!(package_verifies(&clear, &call.path_and_query(), call));
    let db = app.shutdown().await;

    let migrate = |keys: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_webhookd"))
            .arg("migrate")
            .env("DATABASE_URL", &db.url)
            .env("SECRET_KEYS", keys)
            .env("LOG_LEVEL", "error")
            .output()
            .expect("webhookd runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let first = random_key();
    assert!(migrate(&first).contains("sealed 1 secrets of 1 configs"));
    assert!(!tables_text(&db).await.contains(&clear["whsec_".len()..]));
    // Rotation: the new key first, the old one after it; migrate seals every secret again.
    let second = random_key();
    let text = migrate(&format!("{second},{first}"));
    assert!(text.contains("sealed 1 secrets of 1 configs"), "{text}");
    assert!(migrate(&format!("{second},{first}")).contains("up to date"));

    // The old key can go: the partner is still signed with the same secret.
    let app = spawn_on(db, Options::with_workers().env("SECRET_KEYS", &second)).await;
    assert!(!app.logs.text().contains("stored in clear"));
    deliver(&app, &config, "+credit", json!({"n": "2"})).await;
    let call = &receiver.wait_for("/ok/legacy", 2, WAIT).await[1];
    assert!(package_verifies(&clear, &call.path_and_query(), call));
    let db = app.shutdown().await;
    // A key that opens nothing stored fails the partner's calls, saying why.
    let app = spawn_on(
        db,
        Options::with_workers()
            .env("SECRET_KEYS", random_key())
            .env("RETRY_MAX_RETRIES", "0"),
    )
    .await;
    let error = failed_attempt_error(&app, &config).await;
    assert!(error.contains("not in SECRET_KEYS"), "{error}");
    assert_eq!(receiver.received_at("/ok/legacy").len(), 2);
    app.shutdown().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_seals_a_config_that_a_replace_holds_without_undoing_the_replace() {
    let app = spawn(Options::default().env("SECRET_KEYS", "")).await;
    let config = create(
        &app,
        json!({"name": "held", "postback_url": "http://partner.example/pb"}),
    )
    .await;
    let clear = random_secret();
    app.db
        .exec(&format!(
            "UPDATE webhook_configs SET signing_secret = '{clear}'"
        ))
        .await;
    let db = app.shutdown().await;

    // A replace in progress: the row is locked, and the change commits only once migrate has
    // come to the row and waits for it.
    let replace = db.client().await;
    replace
        .batch_execute("BEGIN; SELECT 1 FROM webhook_configs FOR UPDATE")
        .await
        .unwrap();
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env("SECRET_KEYS", random_key())
        .env("LOG_LEVEL", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("webhookd runs");
    common::eventually(WAIT, "migrate waits for the row's lock", || async {
        // pg_locks is the whole server's: only this test's database counts.
        db.count(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE NOT l.granted AND a.datname = current_database()",
        )
        .await
            >= 1
    })
    .await;
    replace
        .batch_execute(
            r#"UPDATE webhook_configs SET name = 'replaced',
                   headers = '[{"name": "X-Added", "value": "v"}]'; COMMIT"#,
        )
        .await
        .unwrap();
    let output = migrate.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("sealed 1 secrets of 1 configs"));

    let sql = "SELECT name, headers::text, signing_secret FROM webhook_configs WHERE id = $1";
    let id = config["id"].as_i64().unwrap();
    let row = db.client().await.query_one(sql, &[&id]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "replaced");
    let headers: Option<&str> = row.get(1);
    assert!(
        headers.is_some_and(|h| h.contains("X-Added")),
        "the replace was undone: headers {headers:?}"
    );
    assert!(webhookd::sealing::is_sealed(row.get::<_, &str>(2)));
}
