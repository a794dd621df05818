//! TLS to PostgreSQL for every subcommand: `sslmode=require` encrypts, `verify-full` checks the
//! CA and the host, and a refusal is a one-line error.

mod common;

use std::time::Duration;

use common::http_client;
use common::pg::PrivatePg;
use common::process::{run_once, Proc};
use common::receiver::Receiver;
use common::tls::Certs;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// TLS to PostgreSQL
// ---------------------------------------------------------------------------------------

/// Client connections to database `webhookd` other than our own: (encrypted, not encrypted).
fn encrypted_connections(pg: &PrivatePg) -> (i64, i64) {
    let out = pg.psql(
        &pg.url_with("sslmode=require"),
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = 'webhookd' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()",
    );
    let (on, off) = out.split_once('|').unwrap();
    (on.parse().unwrap(), off.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_stats_and_run_work_over_tls_with_sslmode_require_and_their_connections_are_encrypted(
) {
    let certs = Certs::generate();
    let pg = PrivatePg::start_tls_only(&certs);
    let url = pg.url_with("sslmode=require");
    // The server takes TLS only: a plain connection is turned away.
    let plain = run_once(
        &["stats", "--json"],
        &[("DATABASE_URL", &pg.url_with("sslmode=disable"))],
    );
    assert_ne!(
        plain.code,
        Some(0),
        "the server accepted a plain connection"
    );
    assert!(
        plain.stderr.contains("no encryption") || plain.stderr.contains("pg_hba.conf"),
        "{}",
        plain.stderr
    );

    let migrate = run_once(
        &["migrate"],
        &[("DATABASE_URL", &url), ("LOG_LEVEL", "error")],
    );
    assert_eq!(migrate.code, Some(0), "{}", migrate.stderr);
    assert!(migrate.stdout.contains("applied"), "{}", migrate.stdout);
    let stats = run_once(
        &["stats", "--json"],
        &[("DATABASE_URL", &url), ("LOG_LEVEL", "error")],
    );
    assert_eq!(stats.code, Some(0), "{}", stats.stderr);
    let document: Value = serde_json::from_str(&stats.stdout).expect("one JSON document on stdout");
    assert_eq!(document["total"], 0);

    let receiver = Receiver::start().await;
    let (service, api) = Proc::serve(&url, "tls");
    common::receiver::wait_http_ok(&format!("{api}/health"), Duration::from_secs(15)).await;
    let http = http_client();
    let post = |path: &str, body: Value| {
        http.post(format!("{api}{path}"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
    };
    let config = post(
        "/webhook-configs",
        json!({"name": "p", "postback_url": receiver.url("/ok/tls")}),
    )
    .await
    .unwrap();
    assert_eq!(config.status(), 201);
    let config: Value = serde_json::from_str(&config.text().await.unwrap()).unwrap();
    let response = post(
        "/webhooks",
        json!({"event_type": "+credit", "config_id": config["id"], "url_params": {}}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let entry: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let calls = receiver.wait_for("/ok/tls", 1, WAIT).await;
    assert_eq!(
        calls[0].header("X-Webhook-Id"),
        entry["queue_id"].as_str().unwrap()
    );

    // The pool and the LISTEN connection: all encrypted (and pg_hba allows nothing else).
    common::eventually(WAIT, "the LISTEN connection", || async {
        service.logs().contains("listening for new rows")
    })
    .await;
    let (encrypted, plain) = encrypted_connections(&pg);
    assert!(
        encrypted >= 2,
        "{encrypted} encrypted connections (pool + listener expected)"
    );
    assert_eq!(plain, 0);
    drop(service);
}

#[test]
fn probe_database_honours_sslmode_against_a_tls_only_server() {
    let certs = Certs::generate();
    let pg = PrivatePg::start_tls_only(&certs);
    // The maintenance database: the probe needs no migrated one.
    let url = |mode: &str| {
        pg.url_with(&format!("sslmode={mode}"))
            .replace("/webhookd?", "/postgres?")
    };
    let probe = |mode: &str| {
        run_once(
            &["probe", "--database", "--timeout", "10s"],
            &[("DATABASE_URL", &url(mode))],
        )
    };
    let require = probe("require");
    assert_eq!(require.code, Some(0), "{}", require.stderr);
    let answered = "ok: the database answered SELECT 1";
    assert!(require.stdout.contains(answered), "{}", require.stdout);
    // The server turns plain connections away, so the probe must say so, on one line.
    let plain = probe("disable");
    assert_eq!(plain.code, Some(1), "{}", plain.stdout);
    assert!(
        plain
            .stderr
            .contains("unhealthy: cannot connect to the database"),
        "{}",
        plain.stderr
    );
    assert_eq!(
        plain.stderr.trim_end().lines().count(),
        1,
        "{}",
        plain.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_accepts_the_right_ca_and_host_and_refuses_a_wrong_ca_or_name_with_a_one_line_error(
) {
    let certs = Certs::generate();
    let pg = PrivatePg::start_tls_only(&certs);
    let ca = certs.ca_cert.display().to_string();
    let other_ca = certs.other_ca_cert.display().to_string();
    let port = pg.port;
    let good = |host: &str, mode: &str, ca: &str| {
        format!("postgres://postgres:canary-db-pw@{host}:{port}/webhookd?sslmode={mode}&sslrootcert={ca}")
    };
    // The certificate names localhost and 127.0.0.1; `hostaddr` connects to 127.0.0.1 while
    // the name checked is the host's.
    let mismatch = |mode: &str| {
        format!("postgres://postgres@db.invalid:{port}/webhookd?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}")
    };

    let migrate = run_once(
        &["migrate"],
        &[("DATABASE_URL", &good("127.0.0.1", "verify-full", &ca))],
    );
    assert_eq!(migrate.code, Some(0), "{}", migrate.stderr);
    for url in [
        good("localhost", "verify-full", &ca),
        good("127.0.0.1", "verify-ca", &ca),
        mismatch("verify-ca"),
    ] {
        let stats = run_once(&["stats", "--json"], &[("DATABASE_URL", &url)]);
        assert_eq!(stats.code, Some(0), "{url}: {}", stats.stderr);
        serde_json::from_str::<Value>(&stats.stdout).unwrap();
    }

    for (url, cause) in [
        (good("127.0.0.1", "verify-full", &other_ca), "UnknownIssuer"),
        (good("localhost", "verify-ca", &other_ca), "UnknownIssuer"),
        (mismatch("verify-full"), "not valid for name \"db.invalid\""),
    ] {
        for command in [&["stats", "--json"][..], &["migrate"][..]] {
            let out = run_once(command, &[("DATABASE_URL", &url)]);
            assert_eq!(out.code, Some(1), "{command:?} {url}: {}", out.stderr);
            let lines: Vec<&str> = out.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line on stderr: {}", out.stderr);
            assert!(lines[0].starts_with("webhookd: error: "), "{}", lines[0]);
            assert!(
                lines[0].contains("certificate") && lines[0].contains(cause),
                "{}",
                lines[0]
            );
            assert!(!lines[0].contains("canary-db-pw"), "{}", lines[0]);
            assert!(out.stdout.is_empty(), "{command:?} printed {}", out.stdout);
        }
    }
    // `run` refuses to start on a wrong CA too, and says why.
    let (mut service, _) = Proc::serve(&good("127.0.0.1", "verify-full", &other_ca), "badca");
    assert_eq!(service.wait_exit(WAIT).await, Some(1));
    let logs = service.logs();
    let last = logs.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("webhookd: error: ") && last.contains("UnknownIssuer"),
        "{logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");
}
