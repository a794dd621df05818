//! What several resources share: the page envelope of a listing, and the error answers the
//! OpenAPI document shows for many routes.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

use super::errors::ErrorBody;

/// One page of a list, newest first.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; null on the last page.
    #[schema(required)]
    pub next_cursor: Option<String>,
}

/// A documented answer whose body is an [`ErrorBody`].
pub fn error_response(description: &str) -> Response {
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
