//! The one way tests make what they need: a partner config ([`Partner`]), an event
//! ([`Event`]), and rows that already hold attempts ([`RowState`], written into the
//! `retry_N_*` slots as outcome writes leave them).

use serde_json::{json, Map, Value};

use super::{spawn, Options, TestApp, TestDb};

/// A partner config to create through the API:
/// `Partner::new("acme").url(&receiver.url("/ok/{event_id}")).create(&app).await`.
#[derive(Clone, Debug)]
pub struct Partner(Map<String, Value>);

impl Partner {
    pub fn new(name: &str) -> Self {
        Self(Map::from_iter([("name".to_string(), json!(name))]))
    }

    /// The same template for postbacks and chargebacks.
    pub fn url(self, template: &str) -> Self {
        self.postback(template).chargeback(template)
    }

    pub fn postback(self, template: &str) -> Self {
        self.set("postback_url", template)
    }

    pub fn chargeback(self, template: &str) -> Self {
        self.set("chargeback_url", template)
    }

    pub fn max_retries(self, n: i64) -> Self {
        self.set("max_retries", n)
    }

    /// Any other field of the body.
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.0.insert(field.to_string(), value.into());
        self
    }

    /// Every field of `fields` (an object).
    pub fn with(mut self, fields: Value) -> Self {
        self.0
            .extend(fields.as_object().expect("fields are an object").clone());
        self
    }

    pub fn body(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// Creates it; its id.
    pub async fn create(&self, app: &TestApp) -> i64 {
        let (status, body) = app.post("/webhook-configs", self.body()).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }
}

/// The partner most API tests use, `acme`: postbacks carry `{user_id}`, chargebacks nothing.
/// Its calls go nowhere (`http://h/`): for tests that run no workers.
pub async fn acme(app: &TestApp) -> i64 {
    app.config("acme", "http://h/pb?uid={user_id}", "http://h/cb")
        .await
}

/// The API alone (no workers) with partner [`acme`]: the app and acme's id.
pub async fn api_with_acme() -> (TestApp, i64) {
    let app = spawn(Options::default()).await;
    let config = acme(&app).await;
    (app, config)
}

/// A partner `p` at `https://partner.example`: for tests whose events are never delivered.
pub async fn never_called(app: &TestApp) -> i64 {
    app.config(
        "p",
        "https://partner.example/pb",
        "https://partner.example/cb",
    )
    .await
}

/// A partner `name` at `http://127.0.0.1:9` (`/pb`, `/cb`), where nothing listens: for tests
/// whose workers never call it.
pub async fn unreachable(app: &TestApp, name: &str) -> i64 {
    app.config(name, "http://127.0.0.1:9/pb", "http://127.0.0.1:9/cb")
        .await
}

/// A partner `name` whose credits go to `postback` (a URL), retried `max_retries` times, and
/// one `+credit` submitted to it without an event id or params: the entry.
pub async fn one_credit(app: &TestApp, name: &str, postback: &str, max_retries: i64) -> Value {
    let config = Partner::new(name)
        .postback(postback)
        .max_retries(max_retries)
        .create(app)
        .await;
    Event::of("+credit").to(config).submit(app).await
}

/// An event to submit: `Event::credit("tx1").to(config).param("user_id", "u1")`.
#[derive(Clone, Debug)]
pub struct Event(Map<String, Value>);

impl Event {
    /// A `+credit` with this `event_id`.
    pub fn credit(event_id: &str) -> Self {
        Self::of("+credit").id(event_id)
    }

    /// A `+credit` with this `event_id` to `config_id`, for user `u1` (`url_params.user_id`).
    pub fn u1_credit(event_id: &str, config_id: i64) -> Self {
        Self::credit(event_id).to(config_id).param("user_id", "u1")
    }

    /// A `-debit` with this `event_id`.
    pub fn debit(event_id: &str) -> Self {
        Self::of("-debit").id(event_id)
    }

    /// An event of `event_type` (`+credit`, `-debit`) without an `event_id`.
    pub fn of(event_type: &str) -> Self {
        Self(Map::from_iter([(
            "event_type".to_string(),
            json!(event_type),
        )]))
    }

    pub fn id(self, event_id: &str) -> Self {
        self.set("event_id", event_id)
    }

    pub fn to(self, config_id: i64) -> Self {
        self.set("config_id", config_id)
    }

    pub fn param(mut self, key: &str, value: impl Into<Value>) -> Self {
        let params = self
            .0
            .entry("url_params")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("url_params is an object");
        params.insert(key.to_string(), value.into());
        self
    }

    /// Replaces `url_params` with `params`.
    pub fn params(self, params: Value) -> Self {
        self.set("url_params", params)
    }

    /// Any other field of the body.
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.0.insert(field.to_string(), value.into());
        self
    }

    pub fn body(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// Posts it to `POST /webhooks`, whatever the answer: the status and the body.
    pub async fn post(&self, app: &TestApp) -> (u16, Value) {
        app.post("/webhooks", self.body()).await
    }

    /// Submits it (`POST /webhooks`, which must answer 201); the entry.
    pub async fn submit(&self, app: &TestApp) -> Value {
        app.submit(self.body()).await
    }
}

/// The `queue_id` of an entry.
pub fn queue_id(entry: &Value) -> String {
    entry["queue_id"]
        .as_str()
        .expect("an entry has a queue_id")
        .to_string()
}

/// An attempt as an outcome write leaves it in a row's slot.
#[derive(Clone, Debug)]
pub struct Made {
    http_status: Option<i32>,
    duration_ms: i64,
    response_body: Option<String>,
    error: Option<String>,
    /// False for a call still in flight: started, nothing else recorded.
    ended: bool,
    /// When it was made, as SQL; `None`: when its row's state says ([`RowState::at`]).
    at: Option<String>,
}

impl Made {
    /// The partner answered `status` after `duration_ms`.
    pub fn answered(status: i32, duration_ms: i64) -> Self {
        Self {
            http_status: Some(status),
            duration_ms,
            response_body: None,
            error: None,
            ended: true,
            at: None,
        }
    }

    /// No answer came: `error` after `duration_ms`.
    pub fn unanswered(error: &str, duration_ms: i64) -> Self {
        Self {
            http_status: None,
            duration_ms,
            response_body: None,
            error: Some(error.to_string()),
            ended: true,
            at: None,
        }
    }

    /// A call still in flight: started, nothing else recorded.
    pub fn in_flight() -> Self {
        Self {
            ended: false,
            ..Self::unanswered("", 0)
        }
    }

    pub fn body(self, body: &str) -> Self {
        Self {
            response_body: Some(body.to_string()),
            ..self
        }
    }

    pub fn error(self, error: &str) -> Self {
        Self {
            error: Some(error.to_string()),
            ..self
        }
    }

    /// Made at `sql_time` (`now() - interval '1 minute'`) rather than when its row settled.
    pub fn at(self, sql_time: &str) -> Self {
        Self {
            at: Some(sql_time.to_string()),
            ..self
        }
    }
}

/// What rows are set to, as the workers (or an operator) would leave them: a status, the
/// attempts in slots 0, 1, …, made at one time (`now()` unless [`RowState::at`] says), and any
/// other assignment.
#[derive(Clone, Debug)]
pub struct RowState {
    status: Option<String>,
    attempts: Vec<Made>,
    at: String,
    more: Vec<String>,
}

fn literal(text: &Option<String>) -> String {
    match text {
        Some(text) => format!("'{}'", text.replace('\'', "''")),
        None => "NULL".into(),
    }
}

impl RowState {
    /// Rows in `status`; a `completed` row gets its `completed_at`.
    pub fn status(status: &str) -> Self {
        Self {
            status: Some(status.to_string()),
            attempts: Vec::new(),
            at: "now()".into(),
            more: Vec::new(),
        }
    }

    /// `failed` after `n` attempts, each answered 500 (10 ms, 20 ms, ...), a second apart
    /// ending a minute ago.
    pub fn failed_after(n: i32) -> Self {
        Self::status("failed")
            .attempts((0..n).map(|k| {
                Made::answered(500, 10 * (k as i64 + 1))
                    .body("down")
                    .error("HTTP 500")
                    .at(&format!("now() - interval '{} seconds'", 60 - k))
            }))
            .set(&format!("retry_count = {}, updated_at = now()", n - 1))
    }

    /// The status left as it is.
    pub fn unchanged() -> Self {
        Self {
            status: None,
            ..Self::status("")
        }
    }

    pub fn attempts(mut self, made: impl IntoIterator<Item = Made>) -> Self {
        self.attempts.extend(made);
        self
    }

    /// When the attempts were made and the row settled, as SQL (`now() - interval '2 hours'`).
    pub fn at(mut self, sql_time: &str) -> Self {
        self.at = sql_time.to_string();
        self
    }

    /// Another assignment (`worker_id = 'w'`).
    pub fn set(mut self, assignment: &str) -> Self {
        self.more.push(assignment.to_string());
        self
    }

    /// The `SET` list.
    pub fn assignments(&self) -> String {
        let at = &self.at;
        let mut set = Vec::new();
        if let Some(status) = &self.status {
            set.push(format!("status = '{status}'"));
            if status == "completed" {
                set.push(format!("completed_at = {at}"));
            }
        }
        for (n, made) in self.attempts.iter().enumerate() {
            let at = made.at.as_deref().unwrap_or(at);
            if !made.ended {
                set.push(format!("retry_{n}_started_at = {at}"));
                continue;
            }
            set.push(format!(
                "retry_{n}_started_at = {at}, retry_{n}_completed_at = {at}, \
                 retry_{n}_duration_ms = {}, retry_{n}_http_status = {}, \
                 retry_{n}_response_body = {}, retry_{n}_error = {}",
                made.duration_ms,
                made.http_status
                    .map_or_else(|| "NULL".to_string(), |s| s.to_string()),
                literal(&made.response_body),
                literal(&made.error),
            ));
        }
        assert!(
            self.attempts.len() <= webhookd::store::attempt_slots::ATTEMPT_SLOTS as usize,
            "a row has {} slots",
            webhookd::store::attempt_slots::ATTEMPT_SLOTS
        );
        set.extend(self.more.iter().cloned());
        set.join(", ")
    }

    /// Sets the rows with these `queue_id`s.
    pub async fn apply(&self, db: &TestDb, queue_ids: &[&str]) {
        let ids: Vec<String> = queue_ids.iter().map(|id| id.to_string()).collect();
        let changed = db
            .client()
            .await
            .execute(
                &format!(
                    "UPDATE webhook_queue SET {} WHERE queue_id::text = ANY($1)",
                    self.assignments()
                ),
                &[&ids],
            )
            .await
            .unwrap();
        assert_eq!(changed as usize, ids.len(), "every row is set");
    }

    /// Sets the rows `condition` selects; how many.
    pub async fn apply_where(&self, db: &TestDb, condition: &str) -> u64 {
        db.client()
            .await
            .execute(
                &format!(
                    "UPDATE webhook_queue SET {} WHERE {condition}",
                    self.assignments()
                ),
                &[],
            )
            .await
            .unwrap()
    }
}
