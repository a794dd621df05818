//! What a partner's call carries besides its URL (docs/api.md, "Partner requests"): the
//! method and a body template (JSON or form), filled from the event's `url_params` with the
//! placeholders of URLs (header templates are in `header_template`). Checked when a config is written, and filled at
//! submit, so that a missing parameter is refused then and never fails a delivery.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::name::named;
use super::placeholders::{BadPlaceholder, EventValues, MissingPlaceholder, Text};

/// Longest body template, as JSON text.
pub const MAX_BODY_TEMPLATE_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Method {
    #[default]
    Get,
    Post,
    Put,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Get, Method::Post, Method::Put];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

named!(Method);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// `application/json`: every string of the template is filled.
    Json,
    /// `application/x-www-form-urlencoded`: an object of field names and value templates.
    Form,
}

impl BodyFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Json => "application/json",
            BodyFormat::Form => "application/x-www-form-urlencoded",
        }
    }
}

/// A body as written in a config: its format and its template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodySpec {
    pub format: BodyFormat,
    pub template: Value,
}

/// A request as written in a config, for one event type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(with = "method_text")]
    pub method: Method,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodySpec>,
}

mod method_text {
    use super::Method;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A JSON template: strings are templates, everything else is sent as written.
#[derive(Clone, Debug, PartialEq)]
enum JsonNode {
    Literal(Value),
    Text(Text),
    Array(Vec<JsonNode>),
    Object(Vec<(String, JsonNode)>),
}

#[derive(Clone, Debug, PartialEq)]
enum Body {
    Json(JsonNode),
    Form(Vec<(String, Text)>),
}

/// A checked request template.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestTemplate {
    method: Method,
    body: Option<Body>,
}

/// Why a template was refused, with where in it (a JSON pointer into the body, or nothing).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("a {0} call carries no body")]
    BodyOnGet(Method),
    #[error("the form template must be an object of field names and string values")]
    FormNotObject,
    #[error("is longer than {MAX_BODY_TEMPLATE_BYTES} bytes")]
    BodyTooLong,
    #[error("at {at}: {error}")]
    Placeholder { at: String, error: BadPlaceholder },
}

/// The request filled for one event: what the row keeps and the call sends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilledRequest {
    #[serde(with = "method_text")]
    pub method: Method,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

impl FilledRequest {
    /// A plain GET with no headers of its own: what a row without a request is.
    pub fn is_plain_get(&self) -> bool {
        self.method == Method::Get && self.body.is_none() && self.headers.is_empty()
    }
}

impl RequestTemplate {
    pub fn get() -> Self {
        Self {
            method: Method::Get,
            body: None,
        }
    }

    pub fn parse(spec: &RequestSpec) -> Result<Self, RequestError> {
        let body = match &spec.body {
            None => None,
            Some(_) if spec.method == Method::Get => {
                return Err(RequestError::BodyOnGet(spec.method))
            }
            Some(body) => {
                if body.template.to_string().len() > MAX_BODY_TEMPLATE_BYTES {
                    return Err(RequestError::BodyTooLong);
                }
                Some(match body.format {
                    BodyFormat::Json => Body::Json(json_node(&body.template, "")?),
                    BodyFormat::Form => Body::Form(form_fields(&body.template)?),
                })
            }
        };
        Ok(Self {
            method: spec.method,
            body,
        })
    }

    pub fn method(&self) -> Method {
        self.method
    }

    /// Every placeholder name the body uses.
    pub fn placeholders(&self) -> BTreeSet<&str> {
        let mut names = BTreeSet::new();
        match &self.body {
            None => {}
            Some(Body::Form(fields)) => {
                names.extend(fields.iter().flat_map(|(_, text)| text.placeholders()))
            }
            Some(Body::Json(node)) => node.placeholders(&mut names),
        }
        names
    }

    /// The method, content type and body for one event. `raw` is the event's `url_params` as
    /// submitted: a JSON string that is exactly one placeholder takes the parameter's value
    /// with its JSON type, so a number stays a number.
    pub fn fill(
        &self,
        values: &EventValues<'_>,
        raw: &Value,
    ) -> Result<FilledRequest, MissingPlaceholder> {
        let (content_type, body) = match &self.body {
            None => (None, None),
            Some(Body::Json(node)) => (
                Some(BodyFormat::Json.content_type().to_string()),
                Some(node.fill(values, raw)?.to_string()),
            ),
            Some(Body::Form(fields)) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                for (field, text) in fields {
                    form.append_pair(field, &text.fill(|n| values.get(n), |v, o| o.push_str(v))?);
                }
                (
                    Some(BodyFormat::Form.content_type().to_string()),
                    Some(form.finish()),
                )
            }
        };
        Ok(FilledRequest {
            method: self.method,
            content_type,
            body,
            headers: Vec::new(),
        })
    }
}

impl JsonNode {
    fn placeholders<'a>(&'a self, names: &mut BTreeSet<&'a str>) {
        match self {
            JsonNode::Literal(_) => {}
            JsonNode::Text(text) => names.extend(text.placeholders()),
            JsonNode::Array(items) => items.iter().for_each(|i| i.placeholders(names)),
            JsonNode::Object(members) => members.iter().for_each(|(_, v)| v.placeholders(names)),
        }
    }

    fn fill(&self, values: &EventValues<'_>, raw: &Value) -> Result<Value, MissingPlaceholder> {
        Ok(match self {
            JsonNode::Literal(v) => v.clone(),
            JsonNode::Text(text) => match text.only_placeholder() {
                Some(name) => match raw.get(name) {
                    Some(v) => v.clone(),
                    None => Value::String(
                        values
                            .get(name)
                            .ok_or_else(|| MissingPlaceholder(name.to_string()))?
                            .to_string(),
                    ),
                },
                None => Value::String(text.fill(|n| values.get(n), |v, o| o.push_str(v))?),
            },
            JsonNode::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.fill(values, raw))
                    .collect::<Result<_, _>>()?,
            ),
            JsonNode::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.fill(values, raw)?)))
                    .collect::<Result<_, MissingPlaceholder>>()?,
            ),
        })
    }
}

fn json_node(value: &Value, at: &str) -> Result<JsonNode, RequestError> {
    Ok(match value {
        Value::String(s) => {
            JsonNode::Text(Text::parse(s).map_err(|error| RequestError::Placeholder {
                at: pointer(at),
                error,
            })?)
        }
        Value::Array(items) => JsonNode::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| json_node(item, &format!("{at}/{i}")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(members) => JsonNode::Object(
            members
                .iter()
                .map(|(k, v)| Ok((k.clone(), json_node(v, &format!("{at}/{}", escape(k)))?)))
                .collect::<Result<_, RequestError>>()?,
        ),
        other => JsonNode::Literal(other.clone()),
    })
}

fn form_fields(value: &Value) -> Result<Vec<(String, Text)>, RequestError> {
    let Value::Object(fields) = value else {
        return Err(RequestError::FormNotObject);
    };
    fields
        .iter()
        .map(|(field, v)| {
            let Value::String(s) = v else {
                return Err(RequestError::FormNotObject);
            };
            let text = Text::parse(s).map_err(|error| RequestError::Placeholder {
                at: pointer(&format!("/{}", escape(field))),
                error,
            })?;
            Ok((field.clone(), text))
        })
        .collect()
}

/// A JSON pointer (RFC 6901) as shown in messages: the whole body is `/`.
fn pointer(at: &str) -> String {
    if at.is_empty() {
        "/".into()
    } else {
        at.into()
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{EventType, UrlParams};
    use serde_json::json;

    fn spec(value: Value) -> RequestSpec {
        serde_json::from_value(value).unwrap()
    }

    fn fill(template: &RequestTemplate, raw: Value) -> Result<FilledRequest, MissingPlaceholder> {
        let params = UrlParams::from_json(&raw).unwrap();
        let values = EventValues {
            params: &params,
            event_type: EventType::Credit,
            event_id: Some("tx-1"),
        };
        template.fill(&values, &raw)
    }

    #[test]
    fn a_json_body_is_filled_escaped_and_keeps_the_types_of_whole_placeholders() {
        let template = RequestTemplate::parse(&spec(json!({
            "method": "POST",
            "body": {"format": "json", "template": {
                "click": "{click_id}", "amount": "{amount}", "note": "paid {amount} for \"{click_id}\"",
                "event": "{event_type}:{event_id}", "fixed": [1, true, null]
            }}
        })))
        .unwrap();
        let filled = fill(&template, json!({"click_id": "a\"b\n", "amount": 12.5})).unwrap();
        assert_eq!(filled.method, Method::Post);
        assert_eq!(filled.content_type.as_deref(), Some("application/json"));
        let body: Value = serde_json::from_str(filled.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"click": "a\"b\n", "amount": 12.5, "note": "paid 12.5 for \"a\"b\n\"",
                   "event": "+credit:tx-1", "fixed": [1, true, null]})
        );
        assert_eq!(
            template.placeholders().into_iter().collect::<Vec<_>>(),
            ["amount", "click_id", "event_id", "event_type"]
        );
    }

    #[test]
    fn a_form_body_is_percent_encoded_in_the_order_written() {
        let template = RequestTemplate::parse(&spec(json!({
            "method": "PUT",
            "body": {"format": "form", "template": {"z": "{a}", "b": "x&y={a}"}}
        })))
        .unwrap();
        let filled = fill(&template, json!({"a": "1 2/ü"})).unwrap();
        assert_eq!(
            filled.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            filled.body.as_deref(),
            Some("z=1+2%2F%C3%BC&b=x%26y%3D1+2%2F%C3%BC")
        );
    }

    #[test]
    fn bad_templates_are_refused_with_where() {
        let refused = |v: Value| RequestTemplate::parse(&spec(v)).unwrap_err().to_string();
        assert_eq!(
            refused(json!({"method": "GET", "body": {"format": "json", "template": {}}})),
            "a GET call carries no body"
        );
        assert_eq!(
            refused(
                json!({"method": "POST", "body": {"format": "json", "template": {"a": [1, "{x"]}}})
            ),
            "at /a/1: has an unmatched or invalid placeholder near byte 0"
        );
        assert_eq!(
            refused(json!({"method": "POST", "body": {"format": "form", "template": {"a": 1}}})),
            "the form template must be an object of field names and string values"
        );
        assert!(serde_json::from_value::<RequestSpec>(json!({"method": "PATCH"})).is_err());
    }

    #[test]
    fn a_missing_parameter_names_itself() {
        let template = RequestTemplate::parse(&spec(json!({
            "method": "POST", "body": {"format": "json", "template": {"a": "{gone}"}}
        })))
        .unwrap();
        assert_eq!(
            fill(&template, json!({})),
            Err(MissingPlaceholder("gone".into()))
        );
    }
}
