//! Test harness: a fresh database per test (cloned from a migrated template), the app spawned
//! in-process on port 0, real peers on loopback (an HTTP receiver, a forward proxy, an HTTPS
//! receiver that may demand a client certificate), and log capture.
#![allow(dead_code)]

pub mod counters;
pub mod fixture;
pub mod http;
pub mod http1;
pub mod pg;
pub mod process;
pub mod proxy;
pub mod pruning;
pub mod receiver;
pub mod scenario;
pub mod standard_webhooks;
pub mod tls;
pub mod tls_receiver;
pub mod wait;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use slog::{o, Drain, Logger};
use tokio_postgres::NoTls;
use webhookd::application::metrics::Role;
use webhookd::config::{Overrides, Settings};
use webhookd::startup::Application;
use webhookd::store;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/webhookd";

pub fn base_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

fn with_database(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A connection to the maintenance database, for creating and dropping test databases.
pub async fn admin() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&with_database(&base_url(), "postgres"), NoTls)
            .await
            .expect("PostgreSQL answers at DATABASE_URL (run `just db`)");
    tokio::spawn(connection);
    client
}

/// A name that changes whenever a migration or a rule does, so a stale template is never used.
fn template_name() -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = walk(&root.join("migrations"));
    files.extend(walk(&root.join("sql/rules")));
    files.sort();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(&file).unwrap().hash(&mut hasher);
    }
    format!("webhookd_tpl_{:016x}", hasher.finish())
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A database of its own for one test, dropped when the value is.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let template = template_name();
        let client = admin().await;
        // One process builds the template; the others wait for it on the advisory lock.
        client
            .execute("SELECT pg_advisory_lock(7311)", &[])
            .await
            .unwrap();
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .unwrap()
            .is_some();
        if !exists {
            let building = format!("{template}_building");
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                .await
                .unwrap();
            store::migrate(&with_database(&base_url(), &building))
                .await
                .expect("migrations apply");
            client
                .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
                .await
                .unwrap();
        }
        client
            .execute("SELECT pg_advisory_unlock(7311)", &[])
            .await
            .unwrap();
        let name = format!("webhookd_test_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .unwrap();
        TestDb {
            url: with_database(&base_url(), &name),
            name,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// Runs a statement; the rows it changed.
    pub async fn exec(&self, sql: &str) -> u64 {
        self.client().await.execute(sql, &[]).await.unwrap()
    }

    /// Runs a query that returns one bigint.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits up to `timeout` until the bigint `sql` returns is `expected`; `what` names the wait.
    pub async fn wait_count(&self, sql: &str, expected: i64, timeout: Duration, what: &str) {
        eventually(timeout, what, || async {
            self.count(sql).await == expected
        })
        .await
    }

    /// The first column of every row a query returns, as text.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        let rows = self.client().await.query(sql, &[]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// How many rows of the queue have `status`.
    pub async fn count_with_status(&self, status: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM webhook_queue WHERE status = '{status}'"
        ))
        .await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context: a thread with its own small runtime does the work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                admin()
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
    }
}

/// Log lines captured from the app, as JSON objects.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn logger(&self) -> Logger {
        let drain = slog_json::Json::new(self.clone())
            .add_default_keys()
            .build();
        Logger::root(Mutex::new(drain).fuse(), o!())
    }
}

/// What to start.
pub struct Options {
    pub api: bool,
    pub workers: bool,
    /// Settings as environment variables (`WORKER_COUNT` …); tests get short delays by default.
    pub env: Vec<(String, String)>,
    /// A bearer token that `TestApp::http` sends with every request (none by default).
    pub bearer: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api: true,
            workers: false,
            env: vec![],
            bearer: None,
        }
    }
}

impl Options {
    pub fn with_workers() -> Self {
        Self {
            workers: true,
            ..Self::default()
        }
    }

    /// Workers with `settings`, written as in a shell: `"RETRY_BASE_DELAY=20ms WORKER_COUNT=1"`.
    pub fn workers(settings: &str) -> Self {
        settings
            .split_whitespace()
            .fold(Self::with_workers(), |options, setting| {
                let (key, value) = setting.split_once('=').expect("a setting is KEY=value");
                options.env(key, value)
            })
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Makes `TestApp::http` (and so `post`, `get`, `submit`, ...) authenticate as `token`.
    pub fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_string());
        self
    }
}

/// The key tests seal partner secrets with (base64 of 32 bytes); a test that needs none sets
/// `SECRET_KEYS` empty.
pub const TEST_SECRET_KEY: &str = "dGVzdC1rZXktb2YtdGhpcnR5LXR3by1ieXRlcy0hISE=";

pub fn settings_for(db_url: &str, env: &[(String, String)]) -> Settings {
    let mut vars: HashMap<String, String> = [
        ("DATABASE_URL", db_url.to_string()),
        ("DATABASE_MAX_CONNECTIONS", "8".into()),
        ("SERVER_ADDR", "127.0.0.1:0".into()),
        ("WORKER_COUNT", "2".into()),
        ("WORKER_POLL_INTERVAL", "5s".into()),
        ("HTTP_TIMEOUT", "2s".into()),
        ("WORKER_LOCK_DURATION", "10s".into()),
        ("RETRY_BASE_DELAY", "100ms".into()),
        ("RETRY_MAX_DELAY", "2s".into()),
        ("SHUTDOWN_TIMEOUT", "3s".into()),
        ("OUTBOUND_ALLOW_NETWORKS", "127.0.0.0/8".into()),
        ("SECRET_KEYS", TEST_SECRET_KEY.into()),
        ("LOG_LEVEL", "debug".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in env {
        vars.insert(k.to_string(), v.clone());
    }
    Settings::load_from(&Overrides::default(), &vars, Path::new("/nonexistent"))
        .expect("test settings are valid")
}

/// A plain HTTP client for talking to the app and receivers.
pub fn http_client() -> reqwest::Client {
    http_client_with(reqwest::header::HeaderMap::new())
}

/// An HTTP client that sends `headers` with every request.
pub fn http_client_with(headers: reqwest::header::HeaderMap) -> reqwest::Client {
    webhookd::sender::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .build()
        .unwrap()
}

pub struct TestApp {
    pub db: TestDb,
    pub settings: Settings,
    pub base: String,
    pub http: reqwest::Client,
    pub logs: LogCapture,
    app: Application,
}

pub async fn spawn(options: Options) -> TestApp {
    let db = TestDb::new().await;
    spawn_on(db, options).await
}

/// Starts what `options` asks for through `startup`, as `serve`, `work` or `run` would.
pub async fn spawn_on(db: TestDb, options: Options) -> TestApp {
    let settings = settings_for(&db.url, &options.env);
    let logs = LogCapture::default();
    let runs = match (options.api, options.workers) {
        (true, true) => Role::Both,
        (false, true) => Role::Workers,
        _ => Role::Api,
    };
    let app = Application::build(&settings, runs, &logs.logger())
        .await
        .expect("the test app starts");
    // A process without the API has no address; requests to it fail to connect.
    let base = match app.api_address() {
        Some(address) => format!("http://{address}"),
        None => "http://127.0.0.1:9".to_string(),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &options.bearer {
        let value = format!("Bearer {token}");
        headers.insert(reqwest::header::AUTHORIZATION, value.parse().unwrap());
    }
    let http = http_client_with(headers);
    TestApp {
        db,
        settings,
        base,
        http,
        logs,
        app,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a JSON body and returns status and parsed body (`Value::Null` when empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("API answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.unwrap()
    }

    /// Creates a config whose postback and chargeback URLs are `postback` and `chargeback`
    /// (see [`fixture::Partner`] for more).
    pub async fn config(&self, name: &str, postback: &str, chargeback: &str) -> i64 {
        fixture::Partner::new(name)
            .postback(postback)
            .chargeback(chargeback)
            .create(self)
            .await
    }

    /// Creates a config `name` whose postbacks and chargebacks both go to `url`.
    pub async fn partner(&self, name: &str, url: &str) -> i64 {
        self.config(name, url, url).await
    }

    pub async fn submit(&self, body: Value) -> Value {
        let (status, body) = self.post("/webhooks", body).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Waits until the entry reaches `status` (with `timeout`), and returns it with attempts.
    pub async fn wait_for_status(&self, queue_id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (_, entry) = self.get(&format!("/webhooks/{queue_id}")).await;
            if entry["status"] == status {
                return entry;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "entry did not reach {status} within {timeout:?}: {entry:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`TestApp::wait_for_status`] for an entry as `submit` returned it.
    pub async fn wait_entry(&self, entry: &Value, status: &str, timeout: Duration) -> Value {
        self.wait_for_status(&fixture::queue_id(entry), status, timeout)
            .await
    }

    /// Stops API and workers gracefully and waits for them.
    pub async fn shutdown(self) -> TestDb {
        self.app.stop().await.expect("the test app stops cleanly");
        self.db
    }

    /// [`TestApp::shutdown`], with how each service ended.
    pub async fn shutdown_reporting(self) -> (TestDb, webhookd::startup::Stopped) {
        let stopped = self.app.shutdown().await;
        (self.db, stopped)
    }
}

/// Polls `check` every 10 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
