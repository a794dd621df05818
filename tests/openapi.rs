//! The OpenAPI document at `/openapi.json`: it validates as OpenAPI 3 (with
//! `openapi-spec-validator` from PyPI), it names every route the app registers, and a walk of
//! it against a live instance finds every operation answering as documented — a documented
//! status, with a body that validates against the documented schema — with and without the
//! bearer token, for good requests and for each class of bad one. Then `schemathesis` (PyPI)
//! throws a bounded number of generated requests at a live instance and checks the answers
//! against the document too.
//!
//! Both Python tools are required, not optional: `.ci/run` installs them, and a test fails
//! with the command to install them when they are missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::scenario::with_receiver;
use common::{spawn, Options, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use webhookd::api::{openapi, ROUTES};

const TOKEN: &str = "walk-the-document";

// ---------------------------------------------------------------------------------------------
// A JSON Schema checker for what utoipa emits
// ---------------------------------------------------------------------------------------------

/// Validates `value` against `schema` (JSON Schema as OpenAPI 3.1 uses it), resolving
/// `#/components/schemas/…` references in `document`. It knows the keywords utoipa emits and
/// refuses any other, so a construct it does not check cannot pass unnoticed. It is stricter
/// than JSON Schema in one way: an object schema with `properties` and no
/// `additionalProperties` admits no other key, so a field the API returns undocumented fails.
fn check(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return match schema {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("{at}: schema {schema} admits nothing")),
        };
    };
    for (keyword, arg) in schema {
        match keyword.as_str() {
            "$ref" => {
                let name = arg
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    .ok_or_else(|| format!("{at}: unsupported $ref {arg}"))?;
                let target = &document["components"]["schemas"][name];
                if target.is_null() {
                    return Err(format!("{at}: $ref to missing schema {name}"));
                }
                check(document, target, value, at)?;
            }
            "type" => {
                let types: Vec<&str> = match arg {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => return Err(format!("{at}: bad type {arg}")),
                };
                if !types.iter().any(|t| has_type(value, t)) {
                    return Err(format!("{at}: {value} is not of type {arg}"));
                }
            }
            "enum" => {
                if !arg.as_array().is_some_and(|values| values.contains(value)) {
                    return Err(format!("{at}: {value} is not one of {arg}"));
                }
            }
            "format" => check_format(arg.as_str().unwrap_or(""), value, at)?,
            "properties" => {
                if let Some(object) = value.as_object() {
                    for (name, property) in arg.as_object().into_iter().flatten() {
                        if let Some(item) = object.get(name) {
                            check(document, property, item, &format!("{at}.{name}"))?;
                        }
                    }
                    if !schema.contains_key("additionalProperties") {
                        if let Some(extra) = object.keys().find(|k| arg.get(k.as_str()).is_none()) {
                            return Err(format!("{at}: field {extra:?} is not documented"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(object) = value.as_object() {
                    let known = schema.get("properties");
                    for (name, item) in object {
                        if known.and_then(|p| p.get(name)).is_none() {
                            if arg == &Value::Bool(false) {
                                return Err(format!("{at}: unknown field {name:?}"));
                            }
                            check(document, arg, item, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "propertyNames" => {
                for name in value.as_object().into_iter().flatten().map(|(k, _)| k) {
                    check(document, arg, &json!(name), &format!("{at} key {name:?}"))?;
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in arg.as_array().into_iter().flatten() {
                        let name = name.as_str().unwrap_or_default();
                        if !object.contains_key(name) {
                            return Err(format!("{at}: required field {name:?} is missing"));
                        }
                    }
                }
            }
            "items" => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    check(document, arg, item, &format!("{at}[{i}]"))?;
                }
            }
            "minItems" | "maxItems" => {
                if let Some(items) = value.as_array() {
                    bound(keyword, arg, items.len() as f64, at)?;
                }
            }
            "minLength" | "maxLength" => {
                if let Some(text) = value.as_str() {
                    bound(keyword, arg, text.chars().count() as f64, at)?;
                }
            }
            "minProperties" | "maxProperties" => {
                if let Some(object) = value.as_object() {
                    bound(keyword, arg, object.len() as f64, at)?;
                }
            }
            "pattern" => {
                if let Some(text) = value.as_str() {
                    let pattern = arg.as_str().ok_or_else(|| format!("{at}: bad pattern"))?;
                    let regex = regex_lite::Regex::new(pattern)
                        .map_err(|e| format!("{at}: pattern {pattern:?} does not compile: {e}"))?;
                    if !regex.is_match(text) {
                        return Err(format!("{at}: {value} does not match {pattern:?}"));
                    }
                }
            }
            "minimum" | "maximum" => {
                if let Some(n) = value.as_f64() {
                    bound(keyword, arg, n, at)?;
                }
            }
            "oneOf" | "anyOf" | "allOf" => {
                let branches = arg
                    .as_array()
                    .ok_or_else(|| format!("{at}: bad {keyword}"))?;
                let results: Vec<Result<(), String>> = branches
                    .iter()
                    .map(|branch| check(document, branch, value, at))
                    .collect();
                let passed = results.iter().filter(|r| r.is_ok()).count();
                let ok = match keyword.as_str() {
                    "oneOf" => passed == 1,
                    "anyOf" => passed >= 1,
                    _ => passed == branches.len(),
                };
                if !ok {
                    let why: Vec<String> = results.into_iter().filter_map(Result::err).collect();
                    return Err(format!(
                        "{at}: {keyword} matched {passed} of {}: {why:?}",
                        branches.len()
                    ));
                }
            }
            "description" | "title" | "example" | "examples" | "default" | "deprecated"
            | "readOnly" | "writeOnly" => {}
            other => return Err(format!("{at}: the checker does not know keyword {other:?}")),
        }
    }
    Ok(())
}

fn has_type(value: &Value, t: &str) -> bool {
    match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => false,
    }
}

fn check_format(format: &str, value: &Value, at: &str) -> Result<(), String> {
    let fits = match (format, value) {
        ("date-time", Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        ("uuid", Value::String(s)) => s.parse::<uuid::Uuid>().is_ok(),
        ("int32", Value::Number(n)) => n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        ("int64", Value::Number(n)) => n.is_i64(),
        ("double" | "float", _) => true,
        (_, Value::Null) => true,
        ("date-time" | "uuid" | "int32" | "int64", _) => true, // `type` judges other types
        _ => return Err(format!("{at}: the checker does not know format {format:?}")),
    };
    if fits {
        Ok(())
    } else {
        Err(format!("{at}: {value} is not a valid {format}"))
    }
}

fn bound(keyword: &str, limit: &Value, n: f64, at: &str) -> Result<(), String> {
    let limit = limit
        .as_f64()
        .ok_or_else(|| format!("{at}: bad {keyword}"))?;
    let ok = if keyword.starts_with("min") {
        n >= limit
    } else {
        n <= limit
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{at}: {n} breaks {keyword} {limit}"))
    }
}

/// The document of a process with `API_TOKEN` set.
fn document() -> Value {
    serde_json::from_str(openapi::json(true)).expect("the document is JSON")
}

#[test]
fn the_schema_checker_refuses_what_the_document_does_not_allow() {
    let doc = document();
    let schema = json!({"$ref": "#/components/schemas/ErrorBody"});
    let good = json!({"error": {"code": "not_found", "message": "config not found"}});
    assert_eq!(check(&doc, &schema, &good, "$"), Ok(()));
    let bad = [
        json!({}),
        json!({"error": {"code": "not_found"}}),
        json!({"error": {"code": "no_such_code", "message": "m"}}),
        json!({"error": {"code": "not_found", "message": 1}}),
        json!({"error": {"code": "not_found", "message": "m", "field": null}}),
        json!({"error": {"code": "not_found", "message": "m", "extra": 1}}),
        json!({"error": {"code": "not_found", "message": "m"}, "extra": 1}),
    ];
    for value in bad {
        assert!(check(&doc, &schema, &value, "$").is_err(), "{value}");
    }
    let entry = json!({"$ref": "#/components/schemas/Page_EntryView"});
    assert!(check(
        &doc,
        &entry,
        &json!({"items": [{"id": 1}], "next_cursor": null}),
        "$"
    )
    .is_err());
    assert!(check(
        &doc,
        &entry,
        &json!({"items": [], "next_cursor": null}),
        "$"
    )
    .is_ok());
    let stamp = json!({"type": "string", "format": "date-time"});
    assert!(check(&doc, &stamp, &json!("yesterday"), "$").is_err());
    let one_of = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
    assert!(
        check(&doc, &one_of, &json!(1), "$").is_err(),
        "matches both"
    );
    assert!(check(&doc, &json!({"pattern": "^a$"}), &json!("a"), "$").is_ok());
    assert!(check(&doc, &json!({"pattern": "^a$"}), &json!("b"), "$").is_err());
    assert!(check(
        &doc,
        &json!({"maxProperties": 1}),
        &json!({"a": 1, "b": 2}),
        "$"
    )
    .is_err());
    assert!(check(&doc, &json!({"not": {}}), &json!(1), "$").is_err());
}

// ---------------------------------------------------------------------------------------------
// (a) The document validates as OpenAPI 3
// ---------------------------------------------------------------------------------------------

#[test]
fn the_document_validates_as_openapi_3() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document: {}",
        doc["openapi"]
    );
    for secured in [true, false] {
        let dir = scratch_dir("validate");
        let file = dir.join("openapi.json");
        std::fs::write(&file, openapi::json(secured)).unwrap();
        let (success, text) = python(
            "openapi_spec_validator",
            "openapi-spec-validator",
            &[file.to_str().unwrap()],
            &dir,
            Duration::from_secs(60),
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            success,
            "openapi-spec-validator refuses the document (secured: {secured}):\n{text}"
        );
        assert!(text.contains("OK"), "{text}");
    }
}

/// A fresh directory for a Python tool to run in (schemathesis leaves caches in its working
/// directory).
fn scratch_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "webhookd-openapi-{what}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `python3 -m module args…` in `dir`, killed after `limit`; returns whether it
/// succeeded and what it printed. A missing module fails the test with the command that
/// installs `package`.
fn python(
    module: &str,
    package: &str,
    args: &[&str],
    dir: &std::path::Path,
    limit: Duration,
) -> (bool, String) {
    let hint = format!("`python3 -m pip install {package}` (.ci/run installs it)");
    let mut child = Command::new("python3")
        .arg("-m")
        .arg(module)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 does not start ({e}); it runs {package}: {hint}"));
    // Read both pipes while waiting, so a chatty tool cannot block on a full pipe.
    let readers = [
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    })
    .collect::<Vec<_>>();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text: String = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(
        !text.contains(&format!("No module named {module}"))
            && !text.contains(&format!(
                "No module named '{}'",
                module.split('.').next().unwrap()
            )),
        "{package} is missing: {hint}\n{text}"
    );
    let status = status.unwrap_or_else(|| panic!("{package} ran past {limit:?}:\n{text}"));
    (status.success(), text)
}

// ---------------------------------------------------------------------------------------------
// (b) The document walked against a live instance
// ---------------------------------------------------------------------------------------------

/// One operation of the document.
struct Operation {
    method: Method,
    path: String,
    spec: Value,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn secured(&self) -> bool {
        self.spec["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    }

    fn documented(&self) -> BTreeSet<u16> {
        self.spec["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|s| s.parse().expect("statuses are numbers"))
            .collect()
    }

    fn parameters(&self, place: &str) -> Vec<&Value> {
        self.spec["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == place)
            .collect()
    }

    fn body_example(&self) -> Option<&Value> {
        let media = &self.spec["requestBody"]["content"]["application/json"];
        (!media.is_null()).then(|| {
            let example = &media["example"];
            assert!(
                !example.is_null(),
                "{}: request body has an example",
                self.name()
            );
            example
        })
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, spec) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            operations.push(Operation {
                method,
                path: path.clone(),
                spec: spec.clone(),
            });
        }
    }
    operations
}

/// What one operation is walked with: a config of its own, and (where its path names one) a
/// failed entry of its own, so what one operation does cannot change another's answers.
struct Fixture {
    config_id: i64,
    queue_id: Option<String>,
    /// Makes names unique.
    n: usize,
}

struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

async fn send(
    app: &TestApp,
    method: Method,
    target: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    let mut request = app.http.request(method, app.url(target));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, body)) = body {
        request = request.header("Content-Type", content_type).body(body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let content_type = common::http::content_type(&response);
    Answer {
        status,
        content_type,
        text: response.text().await.unwrap(),
    }
}

async fn api(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
    let answer = send(app, method, path, Some(TOKEN), body).await;
    assert!(
        answer.status < 300,
        "{path}: {} {}",
        answer.status,
        answer.text
    );
    serde_json::from_str(&answer.text).unwrap()
}

/// Submits fixture `n`'s event of `event_type` to `config_id`; its `queue_id`.
async fn submit_fixture(app: &TestApp, event_type: &str, n: usize, config_id: i64) -> String {
    let body = json!({"event_type": event_type, "event_id": format!("fixture-{n}"),
        "config_id": config_id});
    let entry = api(app, Method::POST, "/webhooks", Some(body)).await;
    entry["queue_id"].as_str().unwrap().to_string()
}

/// Takes the document's example as is, except what must name this walk's own things:
/// `config_id` becomes the fixture's config, `name` a name no other config has.
fn fill(example: &Value, fixture: &Fixture) -> Value {
    match example {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = match key.as_str() {
                        "config_id" => json!(fixture.config_id),
                        "name" => json!(format!("walk-{}", fixture.n)),
                        _ => fill(value, fixture),
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, fixture)).collect()),
        other => other.clone(),
    }
}

/// A path parameter's value: the fixture's, or of the given kind.
#[derive(Clone, Copy, PartialEq)]
enum Ids {
    Real,
    Unknown,
    Malformed,
}

fn target(op: &Operation, fixture: &Fixture, ids: Ids, query: &[(String, String)]) -> String {
    let mut path = op.path.clone();
    for parameter in op.parameters("path") {
        let name = parameter["name"].as_str().unwrap();
        let value = match (name, ids) {
            (_, Ids::Malformed) => "not-an-id".to_string(),
            ("id", Ids::Real) => fixture.config_id.to_string(),
            ("id", Ids::Unknown) => i64::MAX.to_string(),
            ("queue_id", Ids::Real) => fixture.queue_id.clone().expect("a failed entry"),
            ("queue_id", Ids::Unknown) => uuid::Uuid::new_v4().to_string(),
            _ => panic!(
                "{}: the walk has no value for path parameter {name}",
                op.name()
            ),
        };
        path = path.replace(&format!("{{{name}}}"), &value);
    }
    if !query.is_empty() {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in query {
            pairs.append_pair(key, value);
        }
        path = format!("{path}?{}", pairs.finish());
    }
    path
}

/// Every query parameter with its documented example (which must validate against its
/// schema), `config_id` being the fixture's.
fn full_query(doc: &Value, op: &Operation, fixture: &Fixture) -> Vec<(String, String)> {
    op.parameters("query")
        .into_iter()
        .map(|parameter| {
            let name = parameter["name"].as_str().unwrap().to_string();
            let example = &parameter["example"];
            assert!(!example.is_null(), "{}: ?{name} has an example", op.name());
            let at = format!("{} ?{name} example", op.name());
            check(doc, &parameter["schema"], example, &at).unwrap_or_else(|e| panic!("{e}"));
            let value = match (name.as_str(), example) {
                ("config_id", _) => fixture.config_id.to_string(),
                (_, Value::String(s)) => s.clone(),
                (_, other) => other.to_string(),
            };
            (name, value)
        })
        .collect()
}

/// Asserts that `answer` is a documented response of `op` and that its body is what the
/// document says for that status; returns the status.
fn conforms(doc: &Value, op: &Operation, case: &str, answer: &Answer) -> u16 {
    let what = format!("{} ({case}) answered {}", op.name(), answer.status);
    let response = &op.spec["responses"][answer.status.to_string()];
    assert!(
        response.is_object(),
        "{what}, which is not documented ({:?}): {}",
        op.documented(),
        answer.text
    );
    let Some(content) = response["content"].as_object() else {
        assert!(
            answer.text.is_empty(),
            "{what} with a body, documented none"
        );
        return answer.status;
    };
    let media_type = answer
        .content_type
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_ascii_lowercase();
    let media = content
        .get(&media_type)
        .unwrap_or_else(|| panic!("{what} as {media_type:?}, documented {:?}", content.keys()));
    let body = if media_type == "application/json" {
        serde_json::from_str(&answer.text)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", answer.text))
    } else {
        assert!(!answer.text.is_empty(), "{what}: an empty body");
        Value::String(answer.text.clone())
    };
    if let Err(e) = check(doc, &media["schema"], &body, "body") {
        panic!("{what}: the body does not match the documented schema: {e}\n{body:#}");
    }
    answer.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let (receiver, app) = with_receiver(Options::with_workers().env("API_TOKEN", TOKEN)).await;

    // The served document is the generated one; it is open, and names every registered route.
    let served = send(&app, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(served.status, 200, "{}", served.text);
    let doc: Value = serde_json::from_str(&served.text).unwrap();
    assert_eq!(doc, document());
    let operations = operations(&doc);
    let documented: BTreeSet<(String, String)> = operations
        .iter()
        .map(|op| (op.method.as_str().to_lowercase(), op.path.clone()))
        .collect();
    let registered: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(
        documented, registered,
        "the document has every route, no other"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer_token"],
        json!({"type": "http", "scheme": "bearer"})
    );

    // Fixtures: a config per operation whose partner fails slowly (so an entry retried stays
    // in flight for a second), and a failed entry where the path names one (for a release, a
    // debit waiting for that entry).
    let mut fixtures = Vec::new();
    for (n, op) in operations.iter().enumerate() {
        let url = receiver.url(&format!("/slow-fail/1000/op{n}"));
        let config = api(
            &app,
            Method::POST,
            "/webhook-configs",
            Some(json!({"name": format!("fixture-{n}"), "postback_url": url,
                "chargeback_url": url, "max_retries": 0})),
        )
        .await;
        let config_id = config["id"].as_i64().unwrap();
        if op.path.ends_with("/resume") {
            // Only a paused (or tripped) partner can be resumed.
            api(
                &app,
                Method::POST,
                &format!("/webhook-configs/{config_id}/pause"),
                None,
            )
            .await;
        }
        let queue_id = if op.path.contains("{queue_id}") {
            let credit = submit_fixture(&app, "+credit", n, config_id).await;
            if op.path.ends_with("/release") {
                // The debit of that credit, which waits for it (money order).
                Some(submit_fixture(&app, "-debit", n, config_id).await)
            } else {
                Some(credit)
            }
        } else {
            None
        };
        fixtures.push(Fixture {
            config_id,
            queue_id,
            n,
        });
    }
    for queue_id in fixtures.iter().filter_map(|f| f.queue_id.as_deref()) {
        let path = format!("/webhooks/{queue_id}");
        common::eventually(Duration::from_secs(20), "the fixture entry fails", || {
            let (app, path) = (&app, path.clone());
            async move {
                let entry = api(app, Method::GET, &path, None).await;
                entry["status"] == "failed" || entry["held_reason"] == "waiting_for_credit"
            }
        })
        .await;
    }

    let mut seen: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for (op, fixture) in operations.iter().zip(&fixtures) {
        let name = op.name();
        let mut answers: Vec<(String, u16)> = Vec::new();
        let mut expect = |case: &str, answer: &Answer, wanted: &dyn Fn(u16) -> bool| {
            let status = conforms(&doc, op, case, answer);
            assert!(
                wanted(status),
                "{name} ({case}) answered {status}: {}",
                answer.text
            );
            answers.push((case.to_string(), status));
        };
        let has_path_ids = !op.parameters("path").is_empty();
        let query = full_query(&doc, op, fixture);
        let body = op.body_example().map(|example| {
            let at = format!("{name} request example");
            let schema = &op.spec["requestBody"]["content"]["application/json"]["schema"];
            check(&doc, schema, example, &at).unwrap_or_else(|e| panic!("{e}"));
            fill(example, fixture)
        });
        let json_body = |value: &Value| Some(("application/json", value.to_string().into_bytes()));
        let good = target(op, fixture, Ids::Real, &query);
        let good_body = body.as_ref().and_then(json_body);
        // A call to `target` with the token and the example body.
        let with_token = |target: String| {
            let (app, method, body) = (&app, op.method.clone(), good_body.clone());
            async move { send(app, method, &target, Some(TOKEN), body).await }
        };

        // Without a token: 401 where the document asks for one, else the same as with it.
        let answer = send(&app, op.method.clone(), &good, None, good_body.clone()).await;
        if op.secured() {
            expect("no token", &answer, &|s| s == 401);
            let wrong = send(&app, op.method.clone(), &good, Some("nope"), None).await;
            expect("wrong token", &wrong, &|s| s == 401);
        } else {
            expect("no token, open route", &answer, &|s| {
                (200..300).contains(&s)
            });
        }

        // With it: the documented examples succeed; sent again, the answer is still documented
        // (idempotent submit 200, name taken 409, retry of an entry in flight 409 …).
        let answer = with_token(good.clone()).await;
        expect("examples", &answer, &|s| (200..300).contains(&s));
        let answer = with_token(good.clone()).await;
        expect("examples again", &answer, &|_| true);
        if !query.is_empty() {
            let answer = with_token(target(op, fixture, Ids::Real, &[])).await;
            expect("no query parameters", &answer, &|s| (200..300).contains(&s));
            let unknown = target(op, fixture, Ids::Real, &[("_unknown".into(), "1".into())]);
            let answer = send(&app, op.method.clone(), &unknown, Some(TOKEN), None).await;
            expect("unknown query parameter", &answer, &|s| s == 422);
        }

        if has_path_ids {
            for (case, ids, status) in [
                ("unknown id", Ids::Unknown, 404),
                ("malformed id", Ids::Malformed, 400),
            ] {
                let answer = with_token(target(op, fixture, ids, &query)).await;
                expect(case, &answer, &|s| s == status);
            }
        }

        if let Some(body) = &body {
            let mut unknown_field = body.clone();
            unknown_field["_unknown"] = json!(1);
            let oversize = json!({"pad": "x".repeat(1024 * 1024)}).to_string();
            let example = body.to_string().into_bytes();
            for (case, content_type, bytes, status) in [
                ("malformed JSON", "application/json", b"{\"".to_vec(), 400),
                ("not JSON", "text/plain", example, 415),
                (
                    "unknown field",
                    "application/json",
                    unknown_field.to_string().into_bytes(),
                    422,
                ),
                (
                    "body over 1 MiB",
                    "application/json",
                    oversize.into_bytes(),
                    413,
                ),
            ] {
                let answer = send(
                    &app,
                    op.method.clone(),
                    &good,
                    Some(TOKEN),
                    Some((content_type, bytes)),
                )
                .await;
                expect(case, &answer, &|s| s == status);
            }
        }
        seen.insert(name, answers.into_iter().map(|(_, s)| s).collect());
    }

    // Every documented status was seen, but those this walk cannot cause: server faults
    // (tests/api.rs takes the database away for the 503s), and conflicts that need a second
    // party: another config's name, an event id reused with other parameters, an entry
    // delivered already (each covered in tests/configs.rs, tests/submits.rs, tests/listing.rs).
    // INGEST_RATE_LIMIT is off in this walk; tests/security.rs shows the 429s.
    let not_caused: &[(&str, u16)] = &[
        ("POST /webhooks", 429),
        ("POST /webhooks/batch", 429),
        ("PUT /webhook-configs/{id}", 409),
        ("POST /webhooks", 409),
        ("DELETE /webhooks/{queue_id}", 409),
    ];
    for op in &operations {
        let name = op.name();
        let unseen: Vec<u16> = op
            .documented()
            .into_iter()
            .filter(|s| *s != 500 && *s != 503)
            .filter(|s| !not_caused.contains(&(name.as_str(), *s)))
            .filter(|s| !seen[&name].contains(s))
            .collect();
        assert!(
            unseen.is_empty(),
            "{name}: documented {unseen:?}, never answered in the walk (seen {:?})",
            seen[&name]
        );
    }
    app.shutdown().await;
    receiver.stop().await;
}

// ---------------------------------------------------------------------------------------------
// (c) Generated requests against a live instance
// ---------------------------------------------------------------------------------------------

/// Where the API refuses a request that the document cannot refuse, because what decides is
/// in the database or between two fields, not in the shape of one value: a submit needs an
/// active config with a URL for its event type and a value for every placeholder of that URL
/// (`config_id` names a row), and a redrive's `*_before` must be later than its `*_after`.
/// A config's call settings too: a secret sent as `***` keeps the stored one and is refused
/// when none is stored, a certificate must be one TLS reads and its key must go with it, and a
/// template's placeholders must close (a JSON template's strings are any JSON's strings).
/// For these operations, and only there, a 422 to a schema-valid request is not a
/// deviation.
const REFUSED_BY_WHAT_IS_STORED: [&str; 4] = [
    "POST /webhooks",
    "POST /webhook-configs",
    "PUT /webhook-configs/{id}",
    "POST /webhooks/redrive",
];

/// The schemathesis configuration: for each of [`REFUSED_BY_WHAT_IS_STORED`], a 422 is one
/// of the expected answers to a schema-valid request.
fn schemathesis_config() -> String {
    REFUSED_BY_WHAT_IS_STORED
        .iter()
        .map(|operation| {
            format!(
                "\n[[operations]]\ninclude-name = \"{operation}\"\n\
                 checks.positive_data_acceptance.expected-statuses = \
                 [\"2xx\", \"401\", \"404\", \"409\", \"422\", \"429\"]\n"
            )
        })
        .collect()
}

/// `schemathesis run --checks all` (but `use_after_free`, see below) with every phase (examples, coverage, fuzzing, stateful:
/// sequences of calls it links from the document) against a live instance started with
/// `API_TOKEN` (`token`) or without; the run fails on any deviation between the document and
/// an answer: a 5xx, an undocumented status, content type, header or body, a schema-valid
/// request refused or a schema-violating one accepted, an undeclared method not answered 405
/// with `Allow`, a route that ignores a required token. Bounded: at most 20 examples per
/// operation and phase, generated deterministically, one worker (two Hypothesis workers in one
/// process sometimes trip over each other inside Python's `ast`).
async fn schemathesis_finds_no_deviation(token: Option<&str>) {
    let options = match token {
        Some(token) => Options::default().env("API_TOKEN", token),
        None => Options::default(),
    };
    let app = spawn(options).await;
    let schema = app.url("/openapi.json");
    let dir = scratch_dir("schemathesis");
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, schemathesis_config()).unwrap();
    let mut args: Vec<String> = vec![
        "--config-file".into(),
        config.to_str().unwrap().into(),
        "run".into(),
        schema,
        "--checks".into(),
        "all".into(),
        // Deleting is soft by design (SPEC §5): `DELETE /webhook-configs/{id}` deactivates a
        // config that queued entries still name, `DELETE /webhooks/{queue_id}` cancels an entry
        // whose history stays readable; the document says what each answers afterwards. So
        // `use_after_free` (a deleted resource must be gone) does not apply.
        "--exclude-checks".into(),
        "use_after_free".into(),
        "--phases".into(),
        "examples,coverage,fuzzing,stateful".into(),
        "--max-examples".into(),
        "20".into(),
        "--generation-deterministic".into(),
        "--workers".into(),
        "1".into(),
        "--no-color".into(),
    ];
    if let Some(token) = token {
        args.extend(["--header".into(), format!("Authorization: Bearer {token}")]);
    }
    let started = Instant::now();
    let (success, text) = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            python(
                "schemathesis.cli",
                "schemathesis",
                &args,
                &dir,
                Duration::from_secs(600),
            )
        })
        .await
        .unwrap()
    };
    let _ = std::fs::remove_dir_all(&dir);
    let what = if token.is_some() { "with" } else { "without" };
    assert!(
        success,
        "schemathesis found deviations from the document ({what} API_TOKEN):\n{text}"
    );
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(
            text.contains(&format!("✅ {phase}")),
            "{phase} did not pass:\n{text}"
        );
    }
    eprintln!("schemathesis {what} API_TOKEN: {:?}", started.elapsed());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_deviation_with_a_token() {
    schemathesis_finds_no_deviation(Some(TOKEN)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_deviation_without_a_token() {
    schemathesis_finds_no_deviation(None).await;
}
