//! The operator's routes: `/health` for probes, `/metrics` for Prometheus, and `/`, the
//! dashboard page.

use std::time::Duration;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::state::State;
use crate::application::metrics;

/// How long `/health` waits for a database connection before it says the database is
/// unreachable.
const DATABASE_WAIT: Duration = Duration::from_secs(2);

/// `GET /health`. Fields are declared in alphabetical order, the order they always had.
#[derive(Serialize, ToSchema)]
pub struct HealthView {
    pub database: Reachability,
    /// `unavailable` (with 503) when the database is unreachable.
    pub status: Health,
    /// The service's version.
    pub version: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Unavailable,
}

/// Whether a database connection could be had and used within [`DATABASE_WAIT`].
#[derive(Serialize, ToSchema)]
#[schema(description = format!(
    "Whether a database connection could be had and used within {} s.",
    DATABASE_WAIT.as_secs()
))]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    Ok,
    Unreachable,
}

impl HealthView {
    pub fn new(database_ok: bool) -> Self {
        let (status, database) = if database_ok {
            (Health::Ok, Reachability::Ok)
        } else {
            (Health::Unavailable, Reachability::Unreachable)
        };
        Self {
            database,
            status,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Up, and the database answers", body = HealthView),
        (status = 503, description = "The database cannot be reached", body = HealthView),
    ))]
pub(super) async fn health(state: State) -> HttpResponse {
    let database_ok = match tokio::time::timeout(DATABASE_WAIT, state.pool.get()).await {
        Ok(Ok(mut conn)) => crate::store::ping(&mut conn).await.is_ok(),
        _ => false,
    };
    if database_ok {
        HttpResponse::Ok().json(HealthView::new(true))
    } else {
        HttpResponse::ServiceUnavailable().json(HealthView::new(false))
    }
}

/// The operator's page: static, self-contained, and reading everything it shows from the API.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The page carries no data, so it is open; it fetches the API with the token it is given.
/// The policy lets it run its own inline script and talk to this origin only.
#[utoipa::path(get, path = "/", tag = "operations",
    summary = "The operator's dashboard",
    description = "A self-contained page that reads the API with the token it is given (`/?token=…`).",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(super) async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'",
        ))
        // The page may have been opened as `/?token=…`: never pass that on.
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-store"))
        .body(DASHBOARD)
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics, OpenMetrics text format",
        content_type = "application/openmetrics-text", body = String)))]
pub(super) async fn prometheus(state: State) -> HttpResponse {
    let body = metrics::scrape(&state.pool, &state.metrics, &state.checks, &state.log).await;
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(body)
}
