//! The HTTP API (actix-web): routes, thin handlers, auth, request logging and metrics, and
//! the dashboard page.

mod errors;
mod handlers;
pub mod input;
mod json;
pub mod openapi;
pub mod ratelimit;
mod views;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpMessage, HttpServer};
use slog::{error, info, o, Logger};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use tokio_util::sync::CancellationToken;

use crate::application::config_cache::ConfigCache;
use crate::application::ingest::SubmitBatcher;
use crate::application::metrics::Metrics;
use crate::application::AppError;
use crate::config::{Secret, Settings};
use crate::domain::outbound::AddressPolicy;
use crate::store::DbPool;

pub use handlers::ROUTES;
pub use json::BODY_LIMIT;
use ratelimit::{Caller, IngestLimiter};

/// What handlers share.
pub struct ApiState {
    pub pool: DbPool,
    /// Single submits go through here, so concurrent ones share one insert and one commit.
    pub submits: SubmitBatcher,
    /// Copies of partner configs, checked by every insert that uses one.
    pub configs: Arc<ConfigCache>,
    pub default_max_retries: i32,
    pub policy: AddressPolicy,
    pub tokens: Vec<Secret>,
    /// The process's metrics: requests are counted here and `/metrics` renders them.
    pub metrics: Arc<Metrics>,
    /// `None` when `INGEST_RATE_LIMIT` is 0.
    pub limiter: Option<IngestLimiter>,
    pub log: Logger,
}

impl ApiState {
    /// Must be called within the Tokio runtime: it starts the submit batcher.
    pub fn new(settings: &Settings, pool: DbPool, metrics: Arc<Metrics>, log: Logger) -> Self {
        let configs = Arc::new(ConfigCache::default());
        Self {
            submits: SubmitBatcher::start(
                pool.clone(),
                configs.clone(),
                settings.retry.max_retries(),
                &log,
            ),
            configs,
            pool,
            default_max_retries: settings.retry.max_retries(),
            policy: AddressPolicy::new(settings.delivery.allow_networks.clone()),
            tokens: settings.api_tokens.clone(),
            metrics,
            limiter: IngestLimiter::new(settings.ingest_rate_limit),
            log,
        }
    }
}

/// Serves the API on `listener` until `stop` is cancelled; then stops accepting and lets
/// requests in flight finish within `shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    stop: CancellationToken,
    shutdown_timeout: Duration,
) -> std::io::Result<()> {
    let state = web::Data::from(Arc::new(state));
    let log = state.log.clone();
    info!(log, "API listening"; "addr" => listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "auth" => if state.tokens.is_empty() { "off" } else { "bearer" });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(authenticate))
            .wrap(from_fn(log_request))
            .configure(handlers::routes)
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(shutdown_timeout.as_secs().max(1))
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        stop.cancelled().await;
        handle.stop(true).await;
    });
    server.await?;
    info!(log, "API stopped");
    Ok(())
}

/// Routes that answer without a token: probes, scrapers, the dashboard page (static; its
/// data comes from the API, with the token the page is given) and the OpenAPI document. The
/// document's security requirements come from here too.
fn is_open(path: &str) -> bool {
    matches!(path, "/health" | "/metrics" | "/" | "/openapi.json")
}

async fn authenticate(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = request
        .app_data::<web::Data<ApiState>>()
        .expect("ApiState is registered")
        .clone();
    if !state.tokens.is_empty() && !is_open(request.path()) {
        let presented = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compare with every token, always, so timing tells nothing about which one is close.
        let mut matched = Choice::from(0);
        let mut which = 0u64;
        for (i, token) in state.tokens.iter().enumerate() {
            let hit = token.expose().as_bytes().ct_eq(presented.as_bytes());
            which = u64::conditional_select(&which, &(i as u64), hit);
            matched |= hit;
        }
        if !bool::from(matched) {
            return Err(AppError::Unauthorized.into());
        }
        request
            .extensions_mut()
            .insert(Caller::Token(which as usize));
    }
    next.call(request).await
}

/// One line and one count per request; the cause of a 5xx is logged here and nowhere returned.
async fn log_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let state = request
        .app_data::<web::Data<ApiState>>()
        .expect("ApiState is registered")
        .clone();
    let method = request.method().to_string();
    let path = request.path().to_string();
    // The pattern (`/webhooks/{queue_id}`), not the path, so ids do not become label values.
    let route = request.match_pattern();
    let result = next.call(request).await;
    let (status, cause) = match &result {
        Ok(response) => (
            response.status().as_u16(),
            response
                .response()
                .error()
                .and_then(|e| e.as_error::<AppError>())
                .and_then(|e| e.cause().map(str::to_string)),
        ),
        Err(e) => (
            e.as_response_error().status_code().as_u16(),
            e.as_error::<AppError>()
                .and_then(|e| e.cause().map(str::to_string)),
        ),
    };
    state.metrics.request(&method, route, status);
    let log = state
        .log
        .new(o!("method" => method, "path" => path, "status" => status,
        "duration_ms" => started.elapsed().as_secs_f64() * 1000.0));
    match cause {
        Some(cause) => error!(log, "request failed"; "cause" => cause),
        None => info!(log, "request"),
    }
    result
}
