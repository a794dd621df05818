//! The route table and the OpenAPI 3.1 document served at `GET /openapi.json`, made from it:
//! each handler's `#[utoipa::path]`, and the request and view types of the resource modules.
//!
//! What keeps the document from drifting: one list registers the routes and names the
//! document's operations, the bearer requirement and its 401 come from the same `is_open` the
//! middleware asks, a body type is the type its handler reads (and its fields are checked
//! against the list it accepts), and `tests/openapi.rs` validates the document and walks it
//! against a live instance.

use actix_web::{web, HttpResponse};
use std::sync::LazyLock;

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::RefOr;
use utoipa::OpenApi;

use super::auth::is_open;
use super::common::error_response;
use super::errors::{ApiError, ErrorBody};
use super::state::{Reply, State};
use super::{check, configs, health, stats, webhooks};
use crate::application::AppError;

/// One list registers the routes (`routes`), names them (`ROUTES`) and makes the OpenAPI
/// document's operations (`Paths`, from each handler's `#[utoipa::path]`), so a route cannot
/// be served undocumented: a handler without its `#[utoipa::path]` does not compile here.
macro_rules! routes {
    ($($method:ident $path:literal => $($handler:ident)::+,)*) => {
        /// One resource per path, in the order its first route is listed, holding every
        /// method of the path: a request for a known path with another method is a 405 naming
        /// those methods in `Allow` (what the path would answer is never another route's).
        pub fn routes(cfg: &mut web::ServiceConfig) {
            let mut resources: Vec<(&'static str, Vec<actix_web::Route>)> = Vec::new();
            $(
                let route = web::$method().to($($handler)::+);
                match resources.iter_mut().find(|(path, _)| *path == $path) {
                    Some((_, routes)) => routes.push(route),
                    None => resources.push(($path, vec![route])),
                }
            )*
            for (path, routes) in resources {
                let allow = allow(path);
                let resource = routes
                    .into_iter()
                    .fold(web::resource(path), |resource, route| resource.route(route))
                    .default_service(web::to(move || async move {
                        Reply::Err(ApiError::MethodNotAllowed { allow })
                    }));
                cfg.service(resource);
            }
            cfg.default_service(web::to(not_found));
        }

        /// Every route `routes` registers, as (method, path).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path),)*];

        /// The operations of the OpenAPI document, one per route.
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($($($handler)::+),*))]
        struct Paths;
    };
}

// In matching order: fixed paths before the `{queue_id}` they would otherwise match.
routes! {
    get "/" => health::dashboard,
    get "/health" => health::health,
    get "/metrics" => health::prometheus,
    get "/openapi.json" => openapi_document,
    post "/webhook-configs" => configs::create_config,
    get "/webhook-configs" => configs::list_configs,
    get "/webhook-configs/{id}" => configs::get_config,
    put "/webhook-configs/{id}" => configs::replace_config,
    delete "/webhook-configs/{id}" => configs::deactivate_config,
    post "/webhook-configs/{id}/pause" => configs::pause_config,
    post "/webhook-configs/{id}/resume" => configs::resume_config,
    post "/webhooks" => webhooks::submit_webhook,
    post "/webhooks/batch" => webhooks::submit_batch,
    get "/webhooks" => webhooks::list_webhooks,
    get "/webhooks/stats" => stats::get_stats,
    get "/webhooks/throughput" => stats::get_throughput,
    get "/webhooks/check" => check::get_check,
    post "/webhooks/redrive" => webhooks::redrive_webhooks,
    get "/webhooks/{queue_id}" => webhooks::get_webhook,
    delete "/webhooks/{queue_id}" => webhooks::cancel_webhook,
    post "/webhooks/{queue_id}/retry" => webhooks::retry_webhook,
    post "/webhooks/{queue_id}/release" => webhooks::release_webhook,
}

async fn not_found() -> Reply {
    Err(AppError::NotFound("route").into())
}

/// The `Allow` value of `path`: its methods in `ROUTES`, upper case, comma separated.
fn allow(path: &str) -> &'static str {
    let methods: Vec<String> = ROUTES
        .iter()
        .filter(|(_, p)| *p == path)
        .map(|(method, _)| method.to_ascii_uppercase())
        .collect();
    // Once per path and process: the resources live as long as the server.
    Box::leak(methods.join(", ").into_boxed_str())
}

/// This document. It holds no data, so it is open. It describes this process: the token
/// requirement is declared only when `API_TOKEN` is set.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
async fn openapi_document(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json(!state.tokens.is_empty()))
}

/// Name of the security scheme in the document.
const BEARER: &str = "bearer_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "webhookd",
        description = "Turns internal money events into outbound partner postbacks that are \
                       never lost. Every body is JSON; every error is `ErrorBody`. A known path \
                       asked with a method it does not have answers 405 with `Allow`."
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "configs", description = "Partner configurations"),
        (name = "webhooks", description = "Submitting, reading, retrying and cancelling events"),
        (name = "operations", description = "Statistics, probes, metrics, the console and this document"),
    )
)]
struct ApiDoc;

/// The whole document: the paths of every registered route, then, when the process has tokens
/// (`secured`), bearer auth where the middleware asks for it. Without tokens nothing asks for
/// one, so the document declares none.
pub fn document(secured: bool) -> Document {
    let mut document = ApiDoc::openapi();
    document.merge(Paths::openapi());
    if let Some(RefOr::T(Schema::Object(body))) = document
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("ConfigBody"))
    {
        configs::complete_schema(body);
    }
    if !secured {
        return document;
    }
    if let Some(info) = document.info.description.as_mut() {
        info.push_str(
            " Every route but `/`, `/health`, `/metrics` and `/openapi.json` needs \
             `Authorization: Bearer <token>`.",
        );
    }
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    for (path, item) in document.paths.paths.iter_mut() {
        if is_open(path) {
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

/// The document as served, with bearer auth (`secured`) or without; each built once.
pub fn json(secured: bool) -> &'static str {
    fn build(secured: bool) -> String {
        document(secured)
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    }
    static SECURED: LazyLock<String> = LazyLock::new(|| build(true));
    static OPEN: LazyLock<String> = LazyLock::new(|| build(false));
    if secured {
        &SECURED
    } else {
        &OPEN
    }
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    use utoipa::PartialSchema;

    use super::super::configs::ConfigBody;
    use super::super::json::Body;
    use super::super::webhooks::{BatchBody, RedriveBody, SubmitBody};
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

    /// A body type documents the fields it reads, and refuses others as its reader does.
    fn documents_what_it_reads<B: Body + PartialSchema>() {
        let mut accepted: Vec<String> = B::FIELDS.iter().map(|n| n.to_string()).collect();
        accepted.sort();
        assert_eq!(properties::<B>(), accepted);
        let RefOr::T(Schema::Object(object)) = B::schema() else {
            panic!("an object schema");
        };
        let json = serde_json::to_value(&object.additional_properties).unwrap();
        assert_eq!(json, serde_json::json!(false), "{:?}", object.title);
    }

    #[test]
    fn body_types_document_exactly_the_fields_they_read() {
        documents_what_it_reads::<SubmitBody>();
        documents_what_it_reads::<BatchBody>();
        documents_what_it_reads::<ConfigBody>();
        documents_what_it_reads::<RedriveBody>();
    }

    #[test]
    fn every_route_of_the_app_is_an_operation_of_the_document() {
        let document = document(true);
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
        let mut registered: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        documented.sort();
        registered.sort();
        assert_eq!(documented, registered);
    }

    #[test]
    fn open_routes_need_no_token_and_the_others_do() {
        let document = document(true);
        for (path, item) in &document.paths.paths {
            for operation in [&item.get, &item.put, &item.post, &item.delete]
                .into_iter()
                .flatten()
            {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                assert_eq!(secured, !is_open(path), "{path}");
                assert_eq!(
                    operation.responses.responses.contains_key("401"),
                    secured,
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn without_tokens_the_document_declares_no_auth() {
        let json = serde_json::to_value(document(false)).unwrap();
        let text = json.to_string();
        // "bearer" may name a partner's auth type; what declares our own auth is `security`.
        assert!(
            !text.contains("\"security\"") && !text.contains("\"401\""),
            "{text}"
        );
        assert!(json["components"]["securitySchemes"].is_null());
    }

    #[test]
    fn allow_names_every_method_of_a_path() {
        assert_eq!(allow("/webhook-configs/{id}"), "GET, PUT, DELETE");
        assert_eq!(allow("/webhooks"), "POST, GET");
        assert_eq!(allow("/webhooks/stats"), "GET");
    }
}
