//! The headers a config adds to its calls (docs/api.md, "Partner requests"): names webhookd
//! leaves to the operator, values that are templates filled at submit, and secret values sent
//! as written.

use std::collections::BTreeSet;

use super::placeholders::{BadPlaceholder, EventValues, MissingPlaceholder, Text};

/// Most headers one config may add.
pub const MAX_HEADERS: usize = 20;
/// Longest header value template.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;

/// A non-secret header whose value is a template.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderTemplate {
    pub name: String,
    value: Text,
}

/// Why a header was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{0:?} is not a header name")]
    Name(String),
    #[error("{0} is set by webhookd itself")]
    Reserved(String),
    #[error("{0} is given twice")]
    Repeated(String),
    #[error("the value of {0} must be printable text up to {MAX_HEADER_VALUE_BYTES} bytes")]
    Value(String),
    #[error("the value of {0} {1}")]
    Placeholder(String, BadPlaceholder),
    #[error("a secret value is sent as written: {0} may not hold placeholders")]
    SecretTemplated(String),
    #[error("at most {MAX_HEADERS} headers")]
    TooMany,
}

/// Why an event's values could not fill the templates.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    #[error(transparent)]
    Missing(#[from] MissingPlaceholder),
    /// The name of the parameter that would have put a control character in a header.
    #[error("cannot go in header {header}: it holds control characters")]
    HeaderValue { param: String, header: String },
}

impl FillError {
    /// The parameter at fault.
    pub fn param(&self) -> &str {
        match self {
            FillError::Missing(m) => &m.0,
            FillError::HeaderValue { param, .. } => param,
        }
    }
}

/// Headers webhookd sets itself, or that would change how the call is framed or routed.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "user-agent",
    "authorization",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-webhook-id",
    "x-webhook-event",
    "x-webhook-attempt",
];

/// A header name: an HTTP token, not one webhookd sets itself (`Authorization` comes from
/// the config's `auth`).
pub fn check_header_name(name: &str) -> Result<(), HeaderError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > 256 || !name.bytes().all(token) {
        return Err(HeaderError::Name(name.to_string()));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(HeaderError::Reserved(name.to_string()));
    }
    Ok(())
}

/// A header value as sent: visible ASCII, spaces and tabs, and any UTF-8 beyond ASCII.
pub fn check_header_value(value: &str) -> bool {
    value.len() <= MAX_HEADER_VALUE_BYTES
        && value.trim() == value
        && !value.chars().any(|c| c.is_control() && c != '\t')
}

/// Checks a secret header (sent as written): its name, and a value without placeholders.
pub fn check_secret_header(name: &str, value: &str) -> Result<(), HeaderError> {
    check_header_name(name)?;
    if !check_header_value(value) {
        return Err(HeaderError::Value(name.to_string()));
    }
    if value.contains(['{', '}']) {
        return Err(HeaderError::SecretTemplated(name.to_string()));
    }
    Ok(())
}

impl HeaderTemplate {
    pub fn parse(name: &str, value: &str) -> Result<Self, HeaderError> {
        check_header_name(name)?;
        if !check_header_value(value) {
            return Err(HeaderError::Value(name.to_string()));
        }
        let value = Text::parse(value).map_err(|e| HeaderError::Placeholder(name.into(), e))?;
        Ok(Self {
            name: name.to_string(),
            value,
        })
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.value.placeholders()
    }

    /// The value for one event; a parameter with a control character cannot go in a header.
    pub fn fill(&self, values: &EventValues<'_>) -> Result<(String, String), FillError> {
        for param in self.value.placeholders() {
            if values
                .get(param)
                .is_some_and(|v| v.chars().any(|c| c.is_control() && c != '\t'))
            {
                return Err(FillError::HeaderValue {
                    param: param.to_string(),
                    header: self.name.clone(),
                });
            }
        }
        let value = self.value.fill(|n| values.get(n), |v, o| o.push_str(v))?;
        Ok((self.name.clone(), value))
    }
}

/// Names given twice (case-insensitively) among `names`.
pub fn check_distinct<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), HeaderError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(HeaderError::Repeated(name.to_string()));
        }
    }
    if seen.len() > MAX_HEADERS {
        return Err(HeaderError::TooMany);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{EventType, UrlParams};
    use serde_json::json;

    #[test]
    fn headers_are_checked_and_filled() {
        assert!(HeaderTemplate::parse("X-Click", "id-{click}").is_ok());
        assert_eq!(
            HeaderTemplate::parse("Content-Type", "x"),
            Err(HeaderError::Reserved("Content-Type".into()))
        );
        assert_eq!(
            HeaderTemplate::parse("Bad Name", "x"),
            Err(HeaderError::Name("Bad Name".into()))
        );
        assert_eq!(
            HeaderTemplate::parse("X-A", "a\r\nb"),
            Err(HeaderError::Value("X-A".into()))
        );
        assert_eq!(
            check_secret_header("X-Key", "{k}"),
            Err(HeaderError::SecretTemplated("X-Key".into()))
        );
        assert_eq!(
            check_distinct(["X-A", "x-a"].into_iter()),
            Err(HeaderError::Repeated("x-a".into()))
        );
        let header = HeaderTemplate::parse("X-Click", "id-{click}").unwrap();
        let params = UrlParams::from_json(&json!({"click": "a\nb"})).unwrap();
        let values = EventValues {
            params: &params,
            event_type: EventType::Credit,
            event_id: None,
        };
        assert_eq!(
            header.fill(&values).unwrap_err().param(),
            "click",
            "a newline may not reach a header"
        );
    }
}
