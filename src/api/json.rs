//! Reading request bodies: size cap, content type, JSON syntax (400), then the fields of an
//! object one by one so every violation names its field (422), and unknown fields are refused.
//! Each body is a [`Body`] type, which the OpenAPI document shows and the handler reads into.

use actix_web::{web, HttpRequest};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::errors::ApiError;
use crate::application::AppError;

/// Largest body a route takes, but the batch route.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Body limit of `POST /webhooks/batch`: room for a full batch of events.
pub const BATCH_BODY_LIMIT: usize = 1024 * 1024;

/// A request body, read field by field into the type that also documents it (its
/// `ToSchema`), so what the document shows and what the handler reads are one type.
pub trait Body: Sized {
    /// The fields the body may have: the ones `read` takes, and the type's schema shows (the
    /// OpenAPI tests check both).
    const FIELDS: &'static [&'static str];
    /// Largest body accepted, in bytes.
    const LIMIT: usize = BODY_LIMIT;
    /// Whether a string holding U+0000 anywhere in the body refuses the whole body; false for
    /// a body whose parts are read (and answered) one by one.
    const WHOLE_BODY_NUL_CHECK: bool = true;

    /// Takes the fields in a fixed order, so the first fault reported is the first in that
    /// order, and ends with `fields.finish()` to refuse the others.
    fn read(fields: Fields) -> Result<Self, AppError>;

    fn from_json(value: Value) -> Result<Self, AppError> {
        if Self::WHOLE_BODY_NUL_CHECK {
            if let Some(field) = field_with_nul(&value, None) {
                return Err(AppError::Invalid {
                    field,
                    message: "must not contain the character U+0000".into(),
                });
            }
        }
        Self::read(Fields::new(value, Self::FIELDS)?)
    }
}

/// Reads the request's body as `B`: content type, size, JSON syntax, then the fields.
pub async fn read_body<B: Body>(
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<B, ApiError> {
    Ok(B::from_json(read_json(request, payload, B::LIMIT).await?)?)
}

/// The 413 answer's description in the OpenAPI document: `Body over 64 KiB`.
pub fn too_large(limit: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    match limit {
        n if n % MIB == 0 => format!("Body over {} MiB", n / MIB),
        n if n % KIB == 0 => format!("Body over {} KiB", n / KIB),
        n => format!("Body over {n} bytes"),
    }
}

/// Reads a JSON body of at most `limit` bytes.
async fn read_json(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Value, ApiError> {
    let content_type = request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json"))
    {
        return Err(ApiError::NotJson);
    }
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::malformed(None, format!("could not read the request body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::malformed(None, format!("malformed JSON: {e}")))
}

/// PostgreSQL text and JSONB cannot hold U+0000, so a string value containing it is refused
/// here with a 422 naming its field (`url_params.<key>` for a parameter) instead of failing at
/// the database as a 500. Keys need no check: unknown and malformed keys are refused anyway.
fn field_with_nul(value: &Value, path: Option<&str>) -> Option<Option<String>> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path.map(str::to_string)),
        Value::Array(items) => items.iter().find_map(|item| field_with_nul(item, path)),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let field = path.map_or_else(|| key.clone(), |p| format!("{p}.{key}"));
            field_with_nul(item, Some(&field))
        }),
        _ => None,
    }
}

/// The fields of a JSON object, taken one at a time.
///
/// A parser names the fields it accepts up front, in a list that the OpenAPI document's body
/// types are checked against. In debug builds (so in every test) it must then read exactly
/// those: reading a field not on the list, or finishing without having read one that is, is
/// a bug, and panics.
pub struct Fields {
    map: Map<String, Value>,
    accepted: &'static [&'static str],
    /// Bit i: `accepted[i]` was read.
    read: u64,
}

impl Fields {
    pub fn new(value: Value, accepted: &'static [&'static str]) -> Result<Self, AppError> {
        debug_assert!(accepted.len() <= 64, "at most 64 fields");
        match value {
            Value::Object(map) => Ok(Self {
                map,
                accepted,
                read: 0,
            }),
            _ => Err(AppError::Invalid {
                field: None,
                message: "the body must be a JSON object".into(),
            }),
        }
    }

    /// A field that may be absent or null.
    pub fn optional(&mut self, name: &str) -> Option<Value> {
        self.take(name).filter(|v| !v.is_null())
    }

    /// A field that may be absent (`None`), null (`Some(None)`) or a value.
    pub fn nullable(&mut self, name: &str) -> Option<Option<Value>> {
        self.take(name).map(|v| Some(v).filter(|v| !v.is_null()))
    }

    /// Removes a field, null included, noting that it was read.
    fn take(&mut self, name: &str) -> Option<Value> {
        match self.accepted.iter().position(|a| *a == name) {
            Some(i) => self.read |= 1 << i,
            None => debug_assert!(false, "{name:?} is read but not in the accepted list"),
        }
        self.map.remove(name)
    }

    pub fn required(&mut self, name: &str) -> Result<Value, AppError> {
        self.optional(name)
            .ok_or_else(|| AppError::invalid(name, "is required"))
    }

    pub fn string(&mut self, name: &str) -> Result<String, AppError> {
        as_string(name, self.required(name)?)
    }

    pub fn optional_string(&mut self, name: &str) -> Result<Option<String>, AppError> {
        self.optional(name).map(|v| as_string(name, v)).transpose()
    }

    /// A string field where absent and `null` mean different things: `None` when absent,
    /// `Some(None)` when `null`.
    pub fn nullable_string(&mut self, name: &str) -> Result<Option<Option<String>>, AppError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(value) => as_string(name, value).map(|s| Some(Some(s))),
        }
    }

    pub fn integer(&mut self, name: &str) -> Result<i64, AppError> {
        as_integer(name, self.required(name)?)
    }

    pub fn optional_integer(&mut self, name: &str) -> Result<Option<i64>, AppError> {
        self.optional(name).map(|v| as_integer(name, v)).transpose()
    }

    pub fn optional_bool(&mut self, name: &str) -> Result<Option<bool>, AppError> {
        self.optional(name)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| AppError::invalid(name, "must be true or false"))
            })
            .transpose()
    }

    /// An RFC 3339 timestamp, as UTC.
    pub fn optional_timestamp(&mut self, name: &str) -> Result<Option<DateTime<Utc>>, AppError> {
        self.optional_string(name)?
            .map(|text| {
                DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| AppError::invalid(name, "must be an RFC 3339 timestamp"))
            })
            .transpose()
    }

    /// Refuses whatever fields were not taken.
    pub fn finish(self) -> Result<(), AppError> {
        debug_assert_eq!(
            self.read.count_ones() as usize,
            self.accepted.len(),
            "every accepted field is read before finish: {:?}",
            self.accepted
        );
        match self.map.keys().next() {
            Some(unknown) => Err(AppError::invalid(unknown.clone(), "is not a known field")),
            None => Ok(()),
        }
    }
}

fn as_string(name: &str, value: Value) -> Result<String, AppError> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(AppError::invalid(name, "must be a string")),
    }
}

/// An integer as JSON Schema counts one: `612` or `612.0`. A number written with a fraction
/// or an exponent is read as an f64, which holds every integer exactly only below 2^53, so
/// only there is it taken; an integer literal may use the whole i64 range.
fn as_integer(name: &str, value: Value) -> Result<i64, AppError> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|n| n.fract() == 0.0 && (-LIMIT..LIMIT).contains(n))
                .map(|n| n as i64)
        })
        .ok_or_else(|| AppError::invalid(name, "must be an integer"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::application::error::ErrorCode;

    const ACCEPTED: &[&str] = &["a", "b"];

    #[test]
    fn a_parser_reads_its_list_and_refuses_other_fields() {
        let mut fields = Fields::new(json!({"a": "x", "b": null}), ACCEPTED).unwrap();
        assert_eq!(fields.string("a").unwrap(), "x");
        assert_eq!(fields.optional_integer("b").unwrap(), None);
        fields.finish().unwrap();

        let mut fields = Fields::new(json!({"a": "x", "c": 1}), ACCEPTED).unwrap();
        fields.string("a").unwrap();
        fields.optional("b");
        let refused = fields.finish().unwrap_err();
        assert_eq!(
            (refused.code(), refused.field()),
            (ErrorCode::ValidationFailed, Some("c"))
        );
    }

    #[test]
    fn integers_are_what_json_schema_calls_integers() {
        for (value, expected) in [
            (json!(612), Some(612)),
            (json!(612.0), Some(612)),
            (json!(-3.0), Some(-3)),
            (json!(1e3), Some(1000)),
            (json!(612.5), None),
            (json!(1e19), None),
            (json!(-1e19), None),
            (json!(i64::MIN), Some(i64::MIN)),
            // -2^63 - 1, which an f64 would round to i64::MIN.
            (serde_json::from_str("-9223372036854775809").unwrap(), None),
            (json!("612"), None),
        ] {
            assert_eq!(as_integer("n", value.clone()).ok(), expected, "{value}");
        }
    }

    #[test]
    #[should_panic(expected = "not in the accepted list")]
    fn reading_a_field_off_the_list_is_a_bug() {
        let mut fields = Fields::new(json!({}), ACCEPTED).unwrap();
        fields.optional("c");
    }

    #[test]
    #[should_panic(expected = "every accepted field is read")]
    fn finishing_before_reading_every_listed_field_is_a_bug() {
        let mut fields = Fields::new(json!({}), ACCEPTED).unwrap();
        fields.optional("a");
        let _ = fields.finish();
    }
}
