//! The OpenAPI 3.1 document served at `GET /openapi.json`, generated from the code: each
//! handler's `#[utoipa::path]`, the views' `ToSchema`, and the request-body and query types
//! below, which exist only to be documented (bodies are read field by field, see `json.rs`).
//!
//! What keeps it from drifting: the operations are the routes `handlers::routes` registers
//! (one list makes both), the bearer requirement and its 401 come from the same `is_open` the
//! middleware asks, a body type's fields are checked against the list its parser accepts, and
//! `tests/openapi.rs` validates the document and walks it against a live instance.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses, OpenApi, PartialSchema, ToSchema};

use super::errors::ErrorBody;
use super::handlers;
use crate::domain::delivery::Status;
use crate::domain::event::EventType;

/// Name of the security scheme in the document.
const BEARER: &str = "bearer_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "webhookd",
        description = "Turns internal money events into outbound partner postbacks that are \
                       never lost. Every body is JSON; every error is `ErrorBody`. Every route \
                       but `/`, `/health`, `/metrics` and `/openapi.json` needs \
                       `Authorization: Bearer <token>` when the service has tokens configured."
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "configs", description = "Partner configurations"),
        (name = "webhooks", description = "Submitting, reading, retrying and cancelling events"),
        (name = "operations", description = "Statistics, probes, metrics, the dashboard and this document"),
    )
)]
struct ApiDoc;

/// The whole document: the paths of every registered route, then bearer auth where the
/// middleware asks for it.
pub fn document() -> Document {
    let mut document = ApiDoc::openapi();
    document.merge(handlers::Paths::openapi());
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    for (path, item) in document.paths.paths.iter_mut() {
        if super::is_open(path) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            require_bearer(operation);
        }
    }
    document
}

fn require_bearer(operation: &mut Operation) {
    operation
        .security
        .get_or_insert_with(Vec::new)
        .push(SecurityRequirement::new(BEARER, Vec::<String>::new()));
    operation.responses.responses.insert(
        "401".into(),
        error_response("Missing or wrong bearer token (with `WWW-Authenticate: Bearer`)").into(),
    );
}

/// The document as served, built once.
pub fn json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        document()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    });
    &JSON
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
}

/// 500 and 503, which any route that reads the database can answer.
pub struct ServerErrors;

impl IntoResponses for ServerErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            (
                "500",
                "A bug or an unexpected database answer; the cause is logged, never returned",
            ),
            ("503", "The database cannot be reached"),
        ]
        .into_iter()
        .map(|(status, description)| (status.to_string(), error_response(description).into()))
        .collect()
    }
}

/// A string enum of `names`.
fn string_enum(names: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .into()
}

/// `+credit` or `-debit`: the names of the domain's `EventType`s.
pub struct EventTypeName;

impl PartialSchema for EventTypeName {
    fn schema() -> RefOr<Schema> {
        string_enum(EventType::ALL.map(EventType::as_str))
    }
}

impl ToSchema for EventTypeName {
    fn name() -> std::borrow::Cow<'static, str> {
        "EventType".into()
    }
}

/// The names of the domain's delivery `Status`es.
pub struct StatusName;

impl PartialSchema for StatusName {
    fn schema() -> RefOr<Schema> {
        string_enum(Status::ALL.map(Status::as_str))
    }
}

impl ToSchema for StatusName {
    fn name() -> std::borrow::Cow<'static, str> {
        "Status".into()
    }
}

/// A URL parameter's value: strings are sent as they are, numbers and booleans as their JSON
/// text.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum UrlParamValue {
    String(String),
    Number(f64),
    Boolean(bool),
}

/// `POST /webhooks`, and each event of `POST /webhooks/batch` (SPEC §5.1). A field that is
/// null counts as absent.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    pub event_type: EventTypeName,
    /// The producer's id of the event, 1 to 255 bytes: with `config_id` and `event_type` it
    /// is the idempotency key. The same event again answers 200 with the existing entry; the
    /// same key with other `url_params` is a 409.
    #[schema(min_length = 1, max_length = 255)]
    pub event_id: Option<String>,
    /// An active config with a URL for `event_type`.
    pub config_id: i64,
    /// The partner URL's parameters; keys are 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
    pub url_params: Option<HashMap<String, UrlParamValue>>,
}

/// `POST /webhooks/batch`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// Each is answered as `POST /webhooks` would answer it, in `results`.
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<SubmitBody>,
}

/// `POST /webhook-configs` and `PUT /webhook-configs/{id}` (which replaces every field). A
/// field that is null counts as absent.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    /// Unique, 1 to 200 characters once trimmed.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// URL template for `+credit` events: `{placeholders}` name `url_params` keys. A config
    /// needs this, `chargeback_url` or both; a literal address host must be one deliveries may
    /// reach.
    pub postback_url: Option<String>,
    /// URL template for `-debit` events.
    pub chargeback_url: Option<String>,
    /// Attempts after the first; absent means the service's default.
    #[schema(minimum = 0, maximum = 6)]
    pub max_retries: Option<i64>,
    /// Default true; an inactive config takes no new events.
    pub is_active: Option<bool>,
    /// Write-only Standard Webhooks secret `whsec_<base64 of 24-64 bytes>`: absent keeps the
    /// stored one, null removes it. Responses show only `signing`.
    pub signing_secret: Option<String>,
}

/// `POST /webhooks/redrive`: every field optional; the filters are ANDed. A field that is
/// null counts as absent.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveBody {
    pub config_id: Option<i64>,
    pub event_type: Option<EventTypeName>,
    pub status: Option<RedriveStatus>,
    #[schema(format = DateTime)]
    pub failed_after: Option<String>,
    /// Later than `failed_after`.
    #[schema(format = DateTime)]
    pub failed_before: Option<String>,
    #[schema(format = DateTime)]
    pub created_after: Option<String>,
    /// Later than `created_after`.
    #[schema(format = DateTime)]
    pub created_before: Option<String>,
    /// Count the matching entries, change nothing. Default false.
    pub dry_run: Option<bool>,
    /// Most entries to take, default and maximum 100000.
    #[schema(minimum = 1, maximum = 100_000)]
    pub limit: Option<i64>,
}

/// Only failed entries can be redriven; the field is accepted for clarity.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedriveStatus {
    Failed,
}

/// `GET /webhooks` filters and paging, newest first.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(inline, example = "failed")]
    pub status: Option<StatusName>,
    #[param(inline, example = "+credit")]
    pub event_type: Option<EventTypeName>,
    #[param(example = 1)]
    pub config_id: Option<i64>,
    /// RFC 3339.
    #[param(format = DateTime, example = "2024-01-01T00:00:00Z")]
    pub created_after: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime, example = "2100-01-01T00:00:00Z")]
    pub created_before: Option<String>,
    /// true: only cancelled entries; false: only live ones; absent: both.
    #[param(example = false)]
    pub cancelled: Option<bool>,
    /// Default 50.
    #[param(minimum = 1, maximum = 500, example = 10)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(example = "9223372036854775807")]
    pub cursor: Option<String>,
}

/// `GET /webhooks/throughput` window and bucket width.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThroughputQuery {
    /// How far back to look; default 15.
    #[param(minimum = 1, maximum = 1440, example = 60)]
    pub minutes: Option<i64>,
    /// Width of a bucket; default 1.
    #[param(minimum = 1, maximum = 3600, example = 60)]
    pub bucket_seconds: Option<i64>,
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::schema::Schema;

    use super::*;

    /// The property names of a documented object schema, sorted.
    fn properties<T: PartialSchema>() -> Vec<String> {
        let RefOr::T(Schema::Object(object)) = T::schema() else {
            panic!("an object schema");
        };
        let mut names: Vec<String> = object.properties.keys().cloned().collect();
        names.sort();
        names
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn body_types_document_exactly_the_fields_their_parsers_accept() {
        assert_eq!(
            properties::<SubmitBody>(),
            sorted(crate::api::input::SUBMIT_FIELDS)
        );
        assert_eq!(
            properties::<ConfigBody>(),
            sorted(crate::api::input::CONFIG_FIELDS)
        );
        assert_eq!(
            properties::<RedriveBody>(),
            sorted(handlers::REDRIVE_FIELDS)
        );
        assert_eq!(properties::<BatchBody>(), sorted(handlers::BATCH_FIELDS));
    }

    #[test]
    fn body_types_refuse_unknown_fields_as_the_parsers_do() {
        for schema in [
            SubmitBody::schema(),
            ConfigBody::schema(),
            RedriveBody::schema(),
            BatchBody::schema(),
        ] {
            let RefOr::T(Schema::Object(object)) = schema else {
                panic!("an object schema");
            };
            let json = serde_json::to_value(&object.additional_properties).unwrap();
            assert_eq!(json, serde_json::json!(false), "{:?}", object.title);
        }
    }

    #[test]
    fn every_route_of_the_app_is_an_operation_of_the_document() {
        let document = document();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in &document.paths.paths {
            for (method, operation) in [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
                ("patch", &item.patch),
            ] {
                if operation.is_some() {
                    documented.push((method.to_string(), path.clone()));
                }
            }
        }
        let mut registered: Vec<(String, String)> = handlers::ROUTES
            .iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        documented.sort();
        registered.sort();
        assert_eq!(documented, registered);
    }

    #[test]
    fn open_routes_need_no_token_and_the_others_do() {
        let document = document();
        for (path, item) in &document.paths.paths {
            for operation in [&item.get, &item.put, &item.post, &item.delete]
                .into_iter()
                .flatten()
            {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                assert_eq!(secured, !super::super::is_open(path), "{path}");
                assert_eq!(
                    operation.responses.responses.contains_key("401"),
                    secured,
                    "{path}"
                );
            }
        }
    }
}
