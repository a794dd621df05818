//! Bearer authentication: which routes are open, and the middleware that asks for a token on
//! the others. The OpenAPI document's security requirements come from the same `is_open`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::errors::ApiError;
use super::ratelimit::Caller;
use super::state::ApiState;

/// Routes that answer without a token: probes, scrapers, the dashboard page (static; its
/// data comes from the API, with the token the page is given) and the OpenAPI document.
pub fn is_open(path: &str) -> bool {
    matches!(path, "/health" | "/metrics" | "/" | "/openapi.json")
}

pub async fn authenticate(
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
            return Err(ApiError::Unauthorized.into());
        }
        request
            .extensions_mut()
            .insert(Caller::Token(which as usize));
    }
    next.call(request).await
}
