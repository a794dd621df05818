//! The operator console at `/`, used as an operator uses it: a real headless Chromium driven
//! over WebDriver (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them) asks for
//! the token, finds a failed event, opens it, retries it and sees it complete, counts a bulk
//! redrive with a dry run and confirms it, and edits partner configs (their call settings, and
//! what the form does not show, kept). Each page's screenshot is taken; with
//! `CONSOLE_SCREENSHOTS=docs/console` they are written there (the PNGs the README links to),
//! else to a temporary directory.
//!
//! The WebDriver protocol is JSON over HTTP, spoken here with reqwest: a few commands are all
//! the test needs, and no driver crate has to be built.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::fixture::{self, Event, Partner};
use common::scenario::{delivering, with_receiver};
use common::{spawn, Options, TestApp};
use serde_json::{json, Value};

const TOKEN: &str = "console-token";
const WAIT: Duration = Duration::from_secs(30);
/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A `chromedriver` process and one browser session in it; both end when this is dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: PathBuf,
}

fn binary(env: &str, name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed, and the console test drives a real headless browser: \
                 `apt-get install -y chromium chromium-driver` (.ci/run does), or set {env}"
            )
        })
}

impl Browser {
    async fn start() -> Browser {
        let chromium = binary("CHROMIUM", "chromium");
        let chromedriver = binary("CHROMEDRIVER", "chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(response) = ready {
                let text = response.text().await.unwrap_or_default();
                let status: Value = serde_json::from_str(&text).unwrap_or_default();
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!(
            "webhookd-console-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run", "--no-proxy-server",
                    "--disable-background-networking", "--disable-component-update",
                    "--hide-scrollbars", "--window-size=1100,860",
                    format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            profile,
        };
        let created = browser.command("POST", "/session", capabilities).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; returns its `value`.
    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        };
        let text = request
            .send()
            .await
            .expect("chromedriver answers")
            .text()
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {path}: {error}: {}",
                answer["value"]["message"]
            );
        }
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("POST", "/url", json!({"url": url})).await;
    }

    /// The element with `data-testid`, waiting for it to be there.
    async fn element(&self, testid: &str) -> String {
        let query =
            json!({"using": "css selector", "value": format!("[data-testid=\"{testid}\"]")});
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.command("POST", "/elements", query.clone()).await;
            if let Some(id) = found[0][ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no element data-testid={testid:?} within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element once it is there. The click is dispatched in the page, on the element
    /// found at that moment: a table the page re-renders between a lookup and a WebDriver
    /// click would leave the click a stale reference.
    async fn click(&self, testid: &str) {
        let script = "document.querySelector(arguments[0]).click(); return true;";
        self.run_script(testid, script).await;
    }

    async fn type_into(&self, testid: &str, text: &str) {
        let id = self.element(testid).await;
        self.command("POST", &format!("/element/{id}/clear"), json!({}))
            .await;
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Chooses the `<option>` whose value is `value` (by script: WebDriver has no select).
    async fn select(&self, testid: &str, value: &str) {
        let script = "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
                      return s.value;";
        let chosen = self
            .command(
                "POST",
                "/execute/sync",
                json!({"script": script, "args": [format!("[data-testid=\"{testid}\"]"), value]}),
            )
            .await;
        assert_eq!(chosen, value, "{testid} has no option {value}");
    }

    /// The element's rendered text, read in the page on the element found at that moment (see
    /// [`Browser::click`]).
    async fn text(&self, testid: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';";
        self.run_script(testid, script).await.trim().to_string()
    }

    /// Waits until the element's text satisfies `wanted`; returns it.
    async fn wait_text(&self, testid: &str, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text(testid).await;
            if wanted(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "data-testid={testid:?} never showed {what}; it shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The form control's current value (a textarea's `innerText` is its initial text only).
    async fn value(&self, testid: &str) -> String {
        self.run_script(testid, "return document.querySelector(arguments[0]).value;")
            .await
    }

    /// What `script` returns as a string (`""` for anything else), run in the page with the
    /// element's selector as `arguments[0]` once the element is there.
    async fn run_script(&self, testid: &str, script: &str) -> String {
        self.element(testid).await;
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": [format!("[data-testid=\"{testid}\"]")]}),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn displayed(&self, testid: &str) -> bool {
        let id = self.element(testid).await;
        self.command("GET", &format!("/element/{id}/displayed"), Value::Null)
            .await
            == true
    }

    /// A PNG of the window, kept as `name`.png (see the module's comment).
    async fn screenshot(&self, name: &str) {
        let encoded = self.command("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name}: {} bytes",
            png.len()
        );
        let dir = match std::env::var("CONSOLE_SCREENSHOTS") {
            Ok(dir) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir),
            Err(_) => std::env::temp_dir().join("webhookd-console"),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}.png"));
        std::fs::write(&file, png).unwrap();
        eprintln!("console screenshot: {}", file.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium.
        let _ = delete(&format!("{}/session/{}", self.base, self.session));
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `DELETE url` over a plain TCP stream: `drop` is no async context, and reqwest's blocking
/// client is not built here.
fn delete(url: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Ok(())
}

async fn config(app: &TestApp, name: &str, url: &str) -> i64 {
    Partner::new(name).url(url).max_retries(0).create(app).await
}

async fn failed_event(app: &TestApp, config: i64, event_id: &str) -> String {
    let entry = Event::credit(event_id)
        .to(config)
        .param("user_id", "u1")
        .param("token", "s3cret")
        .submit(app)
        .await;
    let queue_id = fixture::queue_id(&entry);
    app.wait_for_status(&queue_id, "failed", WAIT).await;
    queue_id
}

/// The console with a token: it asks for it, and with it an operator finds a failed event,
/// retries it and sees it complete, counts and confirms a bulk redrive, and edits configs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_retries_and_redrives_failed_events_in_the_console() {
    let (receiver, app) = with_receiver(
        Options::with_workers()
            .env("API_TOKEN", TOKEN)
            .bearer(TOKEN),
    )
    .await;
    // `flaky/1` fails its first call and answers 200 after: a retry completes.
    let flaky = config(&app, "flaky partner", &receiver.url("/flaky/1/console")).await;
    let down = config(&app, "down partner", &receiver.url("/status/503/down")).await;
    let wanted = failed_event(&app, flaky, "order-4711").await;
    for n in 0..3 {
        failed_event(&app, down, &format!("down-{n}")).await;
    }

    let browser = Browser::start().await;
    // No token yet: the page asks for one, once, and then works with it.
    browser.open(&app.url("/")).await;
    browser
        .wait_text("status", "token required", |t| t == "token required")
        .await;
    assert!(browser.displayed("auth").await, "the token form is shown");
    browser.type_into("token-input", TOKEN).await;
    browser.click("token-submit").await;
    browser.wait_text("status", "live", |t| t == "live").await;
    browser
        .wait_text("depth-failed", "4 failed", |t| t == "4")
        .await;
    browser.screenshot("overview").await;

    // Search by event_id: the list filtered to it, one row, which opens the event.
    browser.type_into("search-input", "order-4711").await;
    browser.click("search-button").await;
    let row = format!("event-{wanted}");
    browser
        .wait_text(&format!("{row}-status"), "failed", |t| t == "failed")
        .await;
    assert_eq!(
        browser.text(&format!("{row}-partner")).await,
        "flaky partner"
    );
    browser.screenshot("events").await;
    browser.click(&format!("{row}-open")).await;
    browser
        .wait_text("event-status", "failed", |t| t == "failed")
        .await;
    let url = browser.text("event-url").await;
    assert!(
        url.contains("token=***") && !url.contains("s3cret"),
        "{url}"
    );
    assert_eq!(browser.text("attempt-0-0-http-status").await, "500");
    assert_eq!(browser.text("attempt-0-0-error").await, "HTTP 500");
    assert_eq!(browser.text("attempt-0-0-response").await, "flaky");
    assert!(
        !browser.displayed("event-cancel").await,
        "no cancel for a failed event"
    );

    // Retry, and follow it until it completes: the second cycle's attempt shows the 200.
    browser.click("event-retry").await;
    browser
        .wait_text("event-status", "completed", |t| t == "completed")
        .await;
    assert_eq!(browser.text("attempt-1-0-http-status").await, "200");
    assert_eq!(browser.text("attempt-1-0-response").await, "recovered");
    assert!(
        !browser.displayed("event-retry").await,
        "no retry once completed"
    );
    browser.screenshot("event").await;
    let (_, entry) = app.get(&format!("/webhooks/{wanted}")).await;
    assert_eq!(entry["status"], "completed");

    // A queue_id in the search box opens the event itself.
    browser.type_into("search-input", &wanted).await;
    browser.click("search-button").await;
    browser
        .wait_text("event-queue-id", "the queue id", |t| t == wanted)
        .await;

    // Bulk redrive: the dry run shows the API's count, the confirmation redrives that many.
    browser.click("nav-redrive").await;
    browser.element("redrive-partner").await;
    browser
        .wait_text("redrive-partner", "the partners", |t| {
            t.contains("down partner")
        })
        .await;
    browser.select("redrive-partner", &down.to_string()).await;
    browser.click("redrive-count").await;
    let (_, dry) = app
        .post(
            "/webhooks/redrive",
            json!({"config_id": down, "dry_run": true}),
        )
        .await;
    assert_eq!(dry["matched"], 3);
    browser
        .wait_text("redrive-result", "the count", |t| {
            t == format!("{} failed events match", dry["matched"])
        })
        .await;
    browser.screenshot("redrive").await;
    browser.click("redrive-confirm").await;
    browser
        .wait_text("redrive-result", "the redrive", |t| {
            t == "3 events redriven"
        })
        .await;
    // Each of the three went through a fresh cycle (and, its partner still down, failed again).
    let (_, page) = app.get(&format!("/webhooks?config_id={down}")).await;
    for item in page["items"].as_array().unwrap() {
        let path = format!("/webhooks/{}", item["queue_id"].as_str().unwrap());
        common::eventually(WAIT, "the redriven entry's second cycle", || {
            let (app, path) = (&app, path.clone());
            async move {
                let (_, entry) = app.get(&path).await;
                entry["attempts"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a["cycle"] == 1))
            }
        })
        .await;
    }

    // Partners: the list, then a new config, refused inline with the API's 422, then saved.
    browser.click("nav-partners").await;
    browser
        .wait_text(&format!("config-{flaky}-name"), "the partner", |t| {
            t == "flaky partner"
        })
        .await;
    assert_eq!(
        browser.text(&format!("config-{flaky}-state")).await,
        "active"
    );
    assert_eq!(
        browser.text(&format!("config-{flaky}-rate")).await,
        "100.0%"
    );
    browser.screenshot("partners").await;
    browser.click("partner-new").await;
    browser.type_into("partner-name", "new partner").await;
    browser
        .type_into("partner-postback", "ftp://partner.example/pb")
        .await;
    browser.click("partner-save").await;
    let refused = browser
        .wait_text("partner-message", "the API's 422", |t| t.contains("422"))
        .await;
    assert!(refused.starts_with("postback_url: "), "{refused}");
    browser
        .type_into("partner-postback", "https://partner.example/pb?u={user_id}")
        .await;
    browser.click("partner-save").await;
    browser
        .wait_text("partner-message", "saved", |t| {
            t.starts_with("saved config ")
        })
        .await;
    browser.screenshot("partner").await;
    let (_, configs) = app.get("/webhook-configs").await;
    let created = configs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "new partner")
        .expect("the config the page created")
        .clone();
    assert_eq!(
        created["postback_url"],
        "https://partner.example/pb?u={user_id}"
    );

    // Edit it: max_retries 2, inactive.
    browser.type_into("partner-retries", "2").await;
    browser.click("partner-active").await;
    browser.click("partner-save").await;
    // The create's "saved config" message is still shown until the edit's answer replaces it:
    // what shows the edit landed is the config itself.
    common::eventually(WAIT, "the edited config", || async {
        let (_, edited) = app
            .get(&format!("/webhook-configs/{}", created["id"]))
            .await;
        (&edited["max_retries"], &edited["is_active"]) == (&json!(2), &json!(false))
    })
    .await;
    browser
        .wait_text("partner-message", "saved", |t| {
            t.starts_with("saved config ")
        })
        .await;

    drop(browser);
    app.shutdown().await;
    receiver.stop().await;
}

/// The form's call settings: a config created with a JSON body for its postbacks, a secret
/// header and bearer auth; then an edit of its name alone keeps all of them, and what only the
/// API sets; a body template that is not JSON is refused in the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_partner_in_the_console_keeps_what_the_form_does_not_change() {
    let app = spawn(Options::default()).await;
    let browser = Browser::start().await;
    browser.open(&app.url("/#/partners/new")).await;
    browser
        .wait_text("partner-title", "the new config's form", |t| {
            t == "New partner config"
        })
        .await;
    browser.type_into("partner-name", "calling partner").await;
    browser
        .type_into("partner-postback", "https://partner.example/pb")
        .await;
    browser.select("partner-postback-method", "POST").await;
    browser.select("partner-postback-format", "json").await;
    let template = json!({"click": "{click_id}", "amount": "{amount}"});
    browser
        .type_into("partner-postback-body", &template.to_string())
        .await;
    let settings = json!({
        "headers": [{"name": "X-Api-Key", "value": "key-hunter2", "secret": true}],
        "auth": {"type": "bearer", "token": "tok-hunter2"},
    });
    browser
        .type_into("partner-call-settings", &settings.to_string())
        .await;
    browser.click("partner-save").await;
    browser
        .wait_text("partner-message", "saved", |t| {
            t.starts_with("saved config ")
        })
        .await;
    let (_, configs) = app.get("/webhook-configs").await;
    let created = configs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "calling partner")
        .expect("the config the page created")
        .clone();
    let request = json!({"method": "POST", "body": {"format": "json", "template": template}});
    let headers = json!([{"name": "X-Api-Key", "value": "***", "secret": true}]);
    let auth = json!({"type": "bearer", "token": "***"});
    assert_eq!(created["postback_request"], request, "{created:#}");
    assert_eq!(created["chargeback_request"], Value::Null);
    assert_eq!(created["headers"], headers);
    assert_eq!(created["auth"], auth);
    // The form now shows the saved config as the API does: the secrets as ***.
    let shown = browser.value("partner-call-settings").await;
    assert!(
        shown.contains("***") && !shown.contains("hunter2"),
        "{shown}"
    );

    // Set through the API what the form does not show, sending back the config as read.
    let id = created["id"].as_i64().unwrap();
    let path = format!("/webhook-configs/{id}");
    let mut body = created.clone();
    let fields = body.as_object_mut().unwrap();
    for read_only in [
        "id",
        "signing",
        "signing_previous_until",
        "health",
        "created_at",
        "updated_at",
    ] {
        fields.remove(read_only);
    }
    fields.insert("max_per_second".into(), json!(7));
    fields.insert("retry_base_delay".into(), json!("2s"));
    fields.insert("ordering".into(), json!("none"));
    let (status, answer) = app.send(reqwest::Method::PUT, &path, Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["headers"], headers, "{answer:#}");

    // Open it afresh (a new address differing in its fragment only would not load the page
    // again) and change its name only: everything else is kept.
    browser.open("about:blank").await;
    browser.open(&app.url(&format!("/#/partners/{id}"))).await;
    browser
        .wait_text("partner-title", "the config", |t| {
            t == format!("Partner calling partner ({id})")
        })
        .await;
    assert_eq!(browser.value("partner-postback-method").await, "POST");
    assert_eq!(browser.value("partner-postback-format").await, "json");
    assert_eq!(browser.value("partner-chargeback-method").await, "GET");
    assert_eq!(browser.value("partner-chargeback-format").await, "none");
    browser.type_into("partner-name", "renamed partner").await;
    browser.click("partner-save").await;
    browser
        .wait_text("partner-message", "saved", |t| {
            t == format!("saved config {id}")
        })
        .await;
    let (_, edited) = app.get(&path).await;
    assert_eq!(edited["name"], "renamed partner");
    assert_eq!(edited["postback_request"], request, "{edited:#}");
    assert_eq!(edited["headers"], headers);
    assert_eq!(edited["auth"], auth);
    assert_eq!(edited["max_per_second"], 7);
    assert_eq!(edited["retry_base_delay"], "2s");
    assert_eq!(edited["ordering"], "none");
    browser.screenshot("partner-call-settings").await;

    // A body template that is not JSON: refused in the page, nothing sent.
    browser
        .type_into("partner-postback-body", "{\"click\": ")
        .await;
    browser.type_into("partner-name", "not saved").await;
    browser.click("partner-save").await;
    browser
        .wait_text("partner-message", "the refusal", |t| {
            t.starts_with("postback body template: not JSON")
        })
        .await;
    let (_, after) = app.get(&path).await;
    assert_eq!(after, edited, "the refused form changed nothing");

    drop(browser);
    app.shutdown().await;
}

/// Pausing a partner from the console holds its events; resuming it delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_partner_in_the_console_holds_its_events() {
    let (receiver, app) = delivering("").await;
    let partner = config(&app, "paused partner", &receiver.url("/ok/paused")).await;
    let browser = Browser::start().await;
    browser.open(&app.url("/#/partners")).await;
    browser.click(&format!("config-{partner}-pause")).await;
    browser
        .wait_text(&format!("config-{partner}-state"), "paused", |t| {
            t == "paused"
        })
        .await;
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": partner, "url_params": {}}))
        .await;
    let queue_id = entry["queue_id"].as_str().unwrap();
    browser
        .open(&app.url(&format!("/#/event/{queue_id}")))
        .await;
    browser
        .wait_text("event-held", "partner_paused", |t| t == "partner_paused")
        .await;
    assert_eq!(browser.text("event-status").await, "pending");
    assert!(receiver.received_at("/ok/paused").is_empty());
    browser.screenshot("partner-paused").await;
    browser.open(&app.url("/#/partners")).await;
    browser.click(&format!("config-{partner}-resume")).await;
    app.wait_for_status(queue_id, "completed", WAIT).await;
    drop(browser);
    app.shutdown().await;
    receiver.stop().await;
}

/// A broken invariant shows as a warning above every view, and goes once it is healed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_invariant_shows_a_warning_on_every_view() {
    // The API checks again once its last check is a second old.
    let app = spawn(Options::default().env("RETENTION_INTERVAL", "1s")).await;
    let partner = config(&app, "counted", "http://127.0.0.1:9/ok").await;
    app.submit(json!({"event_type": "+credit", "config_id": partner, "url_params": {}}))
        .await;
    let browser = Browser::start().await;
    browser.open(&app.url("/#/")).await;
    browser
        .wait_text("depth-pending", "the queue", |t| t == "1")
        .await;
    assert!(!browser.displayed("invariants-warning").await);

    let drift = format!(
        "INSERT INTO webhook_queue_tallies (shard, config_id, event_type, failed)
         VALUES (99, {partner}, '-debit', 2)"
    );
    app.db.client().await.execute(&drift, &[]).await.unwrap();
    browser
        .wait_text("invariants-list", "the drifted counters", |t| {
            t.starts_with("counters_drift: 1 (")
        })
        .await;
    assert!(browser.displayed("invariants-warning").await);
    assert_eq!(browser.text("invariants-broken").await, "1");
    browser.open(&app.url("/#/partners")).await;
    browser
        .wait_text(&format!("config-{partner}-state"), "the partners", |t| {
            t == "active"
        })
        .await;
    assert!(browser.displayed("invariants-warning").await);

    app.db
        .client()
        .await
        .execute("DELETE FROM webhook_queue_tallies WHERE shard = 99", &[])
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while browser.displayed("invariants-warning").await {
        assert!(Instant::now() < deadline, "the warning stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(browser);
    app.shutdown().await;
}
