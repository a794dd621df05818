//! Per-config signing (Standard Webhooks): signed deliveries verified by an independent
//! implementation and by the published `standardwebhooks` package; secrets validated,
//! write-only, and kept unless set to null.

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::scenario::delivering;
use common::standard_webhooks::package_verifies;
use common::{spawn, Options, TestApp, TestDb};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

fn random_secret(bytes: usize) -> String {
    let key: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

// ---------------------------------------------------------------------------------------
// Per-config signing (Standard Webhooks), verified by an independent implementation
// ---------------------------------------------------------------------------------------

/// Standard Webhooks verification written from the spec with Python's standard library only:
/// `v1,` + base64(HMAC-SHA256(base64-decoded key, "{id}.{timestamp}.{content}")), timestamp
/// within five minutes, any of the space-separated signatures may match.
const VERIFY_PY: &str = r#"
import base64, hashlib, hmac, sys, time
secret, msg_id, timestamp, content, header = sys.argv[1:]
if not secret.startswith("whsec_"):
    sys.exit("secret is not whsec_")
key = base64.b64decode(secret[len("whsec_"):])
if abs(time.time() - int(timestamp)) > 300:
    sys.exit("timestamp outside the tolerance")
signed = f"{msg_id}.{timestamp}.{content}".encode()
expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
for candidate in header.split(" "):
    version, _, signature = candidate.partition(",")
    if version == "v1" and hmac.compare_digest(signature, expected):
        sys.exit(0)
sys.exit("no valid v1 signature")
"#;

fn python_verifies(
    secret: &str,
    id: &str,
    timestamp: &str,
    content: &str,
    signature: &str,
) -> Result<(), String> {
    let output = Command::new("python3")
        .args(["-c", VERIFY_PY, secret, id, timestamp, content, signature])
        .output()
        .expect("python3 runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Creates partner `signed` with `urls` (its postback and any chargeback) and a fresh signing
/// secret of 32 bytes: the secret and the created config.
async fn signed_partner(app: &TestApp, urls: Value) -> (String, Value) {
    let secret = random_secret(32);
    let mut body = json!({"name": "signed"});
    let fields = body.as_object_mut().unwrap();
    fields.extend(urls.as_object().unwrap().clone());
    fields.insert("signing_secret".into(), json!(secret));
    let (status, created) = app.post("/webhook-configs", body).await;
    assert_eq!(status, 201, "{created}");
    (secret, created)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_verify_with_an_independent_standard_webhooks_implementation() {
    let (receiver, app) = delivering("").await;
    let postback = receiver.url("/ok/signed/{user_id}?src=net");
    let (secret, created) = signed_partner(&app, json!({"postback_url": postback})).await;
    assert_eq!(created["signing"], true);
    let unsigned = app.partner("unsigned", &receiver.url("/ok/unsigned")).await;

    let entry = app
        .submit(
            json!({"event_type": "+credit", "event_id": "s1", "config_id": created["id"],
                       "url_params": {"user_id": "u 1/é", "value": 100, "token": "t~k"}}),
        )
        .await;
    let queue_id = entry["queue_id"].as_str().unwrap();
    app.wait_for_status(queue_id, "completed", WAIT).await;
    let plain = app
        .submit(json!({"event_type": "+credit", "config_id": unsigned, "url_params": {}}))
        .await;
    app.wait_entry(&plain, "completed", WAIT).await;

    let call = &receiver.received_at("/ok/signed")[0];
    assert_eq!(
        call.path_and_query(),
        "/ok/signed/u%201%2F%C3%A9?src=net&token=t~k&value=100"
    );
    assert_eq!(call.header("webhook-id"), queue_id);
    let timestamp = call.header("webhook-timestamp");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - timestamp.parse::<i64>().unwrap()).abs() < 60,
        "timestamp {timestamp} vs {now}"
    );
    let signature = call.header("webhook-signature");
    assert!(signature.starts_with("v1,"), "{signature}");
    python_verifies(
        &secret,
        queue_id,
        timestamp,
        &call.path_and_query(),
        signature,
    )
    .expect("the signature verifies");
    // The verifier can say no: another key, another target, another id.
    let other = random_secret(32);
    assert!(python_verifies(
        &other,
        queue_id,
        timestamp,
        &call.path_and_query(),
        signature
    )
    .is_err());
    assert!(python_verifies(
        &secret,
        queue_id,
        timestamp,
        "/ok/signed/u%201?src=net",
        signature
    )
    .is_err());
    assert!(python_verifies(
        &secret,
        "another-id",
        timestamp,
        &call.path_and_query(),
        signature
    )
    .is_err());

    let unsigned_call = &receiver.received_at("/ok/unsigned")[0];
    for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(
            unsigned_call.header(header),
            "",
            "an unsigned config's call has {header}"
        );
    }
    let logs = app.logs.clone();
    app.shutdown().await;
    assert!(
        !logs.text().contains(&secret["whsec_".len()..]),
        "the secret is in the log"
    );
}

// ---------------------------------------------------------------------------------------
// The same calls verified with the published `standardwebhooks` package (PyPI)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_calls_verify_with_the_published_standardwebhooks_package() {
    let (receiver, app) = delivering("").await;
    let urls = json!({"postback_url": receiver.url("/ok/pkg/{user_id}?src=net"),
                      "chargeback_url": receiver.url("/ok/pkg-debit")});
    let (secret, created) = signed_partner(&app, urls).await;
    for (event_type, event_id) in [("+credit", "p1"), ("-debit", "p2")] {
        let entry = app
            .submit(json!({"event_type": event_type, "event_id": event_id,
                "config_id": created["id"],
                "url_params": {"user_id": "u 1/é", "value": 100, "sig": "a&b=c"}}))
            .await;
        app.wait_entry(&entry, "completed", WAIT).await;
    }
    let calls = receiver.received_at("/ok/pkg");
    assert_eq!(calls.len(), 2);
    for call in &calls {
        let headers = json!({
            "webhook-id": call.header("webhook-id"),
            "webhook-timestamp": call.header("webhook-timestamp"),
            "webhook-signature": call.header("webhook-signature"),
        });
        let printed = package_verifies(&secret, &call.path_and_query(), &headers)
            .unwrap_or_else(|e| panic!("{} does not verify: {e}", call.path_and_query()));
        // What the README says: the default parses the content as JSON, which a path is not.
        assert_eq!(
            printed,
            "ok\ndefault: JSONDecodeError",
            "{}",
            call.path_and_query()
        );

        // The package says no to another key, another target and a changed header.
        let other = random_secret(32);
        assert!(package_verifies(&other, &call.path_and_query(), &headers).is_err());
        let tampered = call.path_and_query().replace("value=100", "value=1000");
        assert_ne!(tampered, call.path_and_query());
        assert!(package_verifies(&secret, &tampered, &headers).is_err());
        let mut renamed = headers.clone();
        renamed["webhook-id"] = json!(uuid::Uuid::new_v4().to_string());
        assert!(package_verifies(&secret, &call.path_and_query(), &renamed).is_err());
    }
    app.shutdown().await;
    receiver.stop().await;
}

/// The secret as stored, read straight from the table: sealed, so it is opened here with the
/// tests' key after checking that the stored text does not hold it.
async fn stored_secret(db: &TestDb, config_id: i64) -> Option<String> {
    let stored: Option<String> = db
        .client()
        .await
        .query_one(
            "SELECT signing_secret FROM webhook_configs WHERE id = $1",
            &[&config_id],
        )
        .await
        .unwrap()
        .get(0);
    let stored = stored?;
    assert!(webhookd::sealing::is_sealed(&stored), "stored in clear");
    assert!(!stored.contains("whsec_"), "{stored}");
    let keys =
        webhookd::sealing::Keys::parse(&webhookd::config::Secret::new(common::TEST_SECRET_KEY))
            .unwrap();
    Some(keys.open(&stored).unwrap().expose().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_secrets_are_validated_write_only_and_kept_unless_set_to_null() {
    let app = spawn(Options::default()).await;
    let pb = "https://partner.example/pb";
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![9u8; n]);
    for (what, bad) in [
        ("no prefix", json!(b64(32))),
        ("not base64", json!("whsec_not*base64!")),
        ("23 bytes", json!(format!("whsec_{}", b64(23)))),
        ("65 bytes", json!(format!("whsec_{}", b64(65)))),
        ("not a string", json!(12345)),
    ] {
        let (status, body) = app
            .post(
                "/webhook-configs",
                json!({"name": "x", "postback_url": pb, "signing_secret": bad}),
            )
            .await;
        assert_eq!(status, 422, "{what}: {body}");
        assert_eq!(body["error"]["field"], "signing_secret", "{what}");
        if let Some(text) = bad.as_str() {
            assert!(
                !body.to_string().contains(text),
                "{what}: the error echoes the secret: {body}"
            );
        }
    }

    let secret = random_secret(24);
    let (status, created) = app
        .post(
            "/webhook-configs",
            json!({"name": "p", "postback_url": pb, "signing_secret": secret}),
        )
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        stored_secret(&app.db, id).await.as_deref(),
        Some(secret.as_str())
    );
    let path = format!("/webhook-configs/{id}");
    for (status, body) in [
        (201, created),
        app.get(&path).await,
        app.get("/webhook-configs").await,
    ] {
        assert!(status < 300);
        let text = body.to_string();
        assert!(
            !text.contains(&secret["whsec_".len()..]) && !text.contains("signing_secret"),
            "{text}"
        );
    }
    assert_eq!(app.get(&path).await.1["signing"], true);

    // PUT without the field keeps the secret; with a new one replaces it; with null removes it.
    let put = |body: Value| app.send(reqwest::Method::PUT, &path, Some(body));
    let rotated = random_secret(64);
    for (change, signing, stored) in [
        (json!({"max_retries": 2}), true, Some(secret.as_str())),
        (
            json!({"signing_secret": rotated}),
            true,
            Some(rotated.as_str()),
        ),
        (json!({"signing_secret": null}), false, None),
    ] {
        let mut replacement = json!({"name": "p", "postback_url": pb});
        replacement
            .as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        let (status, body) = put(replacement.clone()).await;
        let answered = (status, body["signing"].as_bool());
        assert_eq!(answered, (200, Some(signing)), "{replacement}: {body}");
        assert_eq!(stored_secret(&app.db, id).await.as_deref(), stored);
    }

    // The column refuses what the API would refuse, even from SQL.
    let client = app.db.client().await;
    for bad in ["plain-secret", "whsec_c2hvcnQ="] {
        let result = client
            .execute(
                "UPDATE webhook_configs SET signing_secret = $1 WHERE id = $2",
                &[&bad, &id],
            )
            .await;
        assert!(result.is_err(), "{bad} was stored");
    }
    app.shutdown().await;
}
