//! The HTTP API (actix-web), the adapter that drives the application: one module per
//! resource (`configs`, `webhooks`, `stats`, `check`, `health`), each with its handlers, the
//! request types that parse and document its bodies, and the views it answers with; `openapi`
//! holds the route table and the document made from it. Here: the server and its request
//! logger.
//!
//! Imports go one way: `mod.rs` → `openapi` → the resources → `common`, `json`, `auth`,
//! `state`, `ratelimit`, `errors` → `application`.

mod auth;
mod call_settings;
mod check;
mod common;
mod config_view;
mod configs;
mod errors;
mod health;
mod json;
pub mod openapi;
pub mod ratelimit;
mod state;
mod stats;
mod webhooks;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpServer};
use slog::{error, info, o};
use tokio_util::sync::CancellationToken;

use errors::ApiError;

pub use openapi::ROUTES;
pub use state::{ApiServices, ApiState};
pub use webhooks::submit_request;

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
            .wrap(from_fn(auth::authenticate))
            .wrap(from_fn(log_request))
            .configure(openapi::routes)
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(shutdown_timeout.as_secs().max(1))
    .run();
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        // Failed on its own.
        ended = &mut server => ended?,
        _ = stop.cancelled() => {
            let (_, ended) = tokio::join!(handle.stop(true), &mut server);
            ended?;
        }
    }
    info!(log, "API stopped");
    Ok(())
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
                .and_then(|e| e.as_error::<ApiError>())
                .and_then(|e| e.cause()),
        ),
        Err(e) => (
            e.as_response_error().status_code().as_u16(),
            e.as_error::<ApiError>().and_then(|e| e.cause()),
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
