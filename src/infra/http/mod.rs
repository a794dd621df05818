//! The HTTP API (actix-web): routes, thin handlers, auth and request logging.

mod errors;
mod handlers;
mod json;
mod views;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpServer};
use slog::{error, info, o, Logger};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::application::ingest::SubmitBatcher;
use crate::application::AppError;
use crate::config::{Secret, Settings};
use crate::domain::outbound::AddressPolicy;
use crate::infra::db::DbPool;

pub use json::BODY_LIMIT;

/// What handlers share.
pub struct ApiState {
    pub pool: DbPool,
    /// Single submits go through here, so concurrent ones share one insert and one commit.
    pub submits: SubmitBatcher,
    pub default_max_retries: i32,
    pub policy: AddressPolicy,
    pub tokens: Vec<Secret>,
    pub log: Logger,
}

impl ApiState {
    /// Must be called within the Tokio runtime: it starts the submit batcher.
    pub fn new(settings: &Settings, pool: DbPool, log: Logger) -> Self {
        Self {
            submits: SubmitBatcher::start(pool.clone(), settings.retry.max_retries()),
            pool,
            default_max_retries: settings.retry.max_retries(),
            policy: AddressPolicy::new(settings.delivery.allow_networks.clone()),
            tokens: settings.api_tokens.clone(),
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

/// Routes that answer without a token: probes and scrapers.
fn is_open(path: &str) -> bool {
    matches!(path, "/health" | "/metrics")
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
        let matched = state.tokens.iter().fold(0u8, |hit, token| {
            hit | token
                .expose()
                .as_bytes()
                .ct_eq(presented.as_bytes())
                .unwrap_u8()
        });
        if matched == 0 {
            return Err(AppError::Unauthorized.into());
        }
    }
    next.call(request).await
}

/// One line per request; the cause of a 5xx is logged here and nowhere returned.
async fn log_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let log = request
        .app_data::<web::Data<ApiState>>()
        .map(|s| s.log.clone())
        .expect("ApiState is registered");
    let method = request.method().to_string();
    let path = request.path().to_string();
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
    let log = log.new(o!("method" => method, "path" => path, "status" => status,
        "duration_ms" => started.elapsed().as_secs_f64() * 1000.0));
    match cause {
        Some(cause) => error!(log, "request failed"; "cause" => cause),
        None => info!(log, "request"),
    }
    result
}
