//! What a producer submits: the event type and the partner URL parameters.

use std::collections::BTreeMap;

use super::name::named;
use serde_json::Value;

/// Most parameters one event may carry.
pub const MAX_PARAMS: usize = 64;
/// Longest parameter value, in characters (what JSON Schema's `maxLength` counts).
pub const MAX_VALUE_LEN: usize = 2048;
/// Longest producer event id, in characters (what JSON Schema's `maxLength` counts).
pub const MAX_EVENT_ID_LEN: usize = 255;
/// Longest parameter key or placeholder name.
pub const MAX_PARAM_NAME_LEN: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// `+credit`: a postback, the user earned value.
    Credit,
    /// `-debit`: a chargeback, value reversed.
    Debit,
}

impl EventType {
    pub const ALL: [EventType; 2] = [EventType::Credit, EventType::Debit];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Credit => "+credit",
            EventType::Debit => "-debit",
        }
    }
}

named!(EventType);

/// Whether `name` may be a parameter key or placeholder: 1 to [`MAX_PARAM_NAME_LEN`] of
/// `A-Z a-z 0-9 _ . -`.
pub fn is_valid_param_name(name: &str) -> bool {
    (1..=MAX_PARAM_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Validated URL parameters: keys checked, values rendered as the text that is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlParams(BTreeMap<String, String>);

/// A parameter that cannot be accepted; `field` names it as `url_params.<key>`.
#[derive(Debug, PartialEq, Eq)]
pub struct ParamError {
    pub field: String,
    pub message: String,
}

impl UrlParams {
    /// Parses the submitted JSON: an object of string, number or boolean values.
    pub fn from_json(value: &Value) -> Result<Self, ParamError> {
        let err = |field: String, message: &str| ParamError {
            field,
            message: message.to_string(),
        };
        let Value::Object(map) = value else {
            return Err(err("url_params".into(), "must be an object"));
        };
        if map.len() > MAX_PARAMS {
            return Err(err(
                "url_params".into(),
                &format!("has more than {MAX_PARAMS} parameters"),
            ));
        }
        let mut params = BTreeMap::new();
        for (key, value) in map {
            if !is_valid_param_name(key) {
                return Err(err(
                    "url_params".into(),
                    &format!("keys must be 1-{MAX_PARAM_NAME_LEN} characters of A-Z a-z 0-9 _ . -"),
                ));
            }
            let field = format!("url_params.{key}");
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(err(field, "must be a string, number or boolean")),
            };
            if text.chars().count() > MAX_VALUE_LEN {
                return Err(err(
                    field,
                    &format!("is longer than {MAX_VALUE_LEN} characters"),
                ));
            }
            params.insert(key.clone(), text);
        }
        Ok(UrlParams(params))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Parameters in lexicographic key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    #[cfg(test)]
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        UrlParams(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::name::assert_names_read_back;
    use serde_json::json;

    #[test]
    fn event_types_round_trip() {
        assert_names_read_back::<EventType>();
        assert!("credit".parse::<EventType>().is_err());
        assert!("+CREDIT".parse::<EventType>().is_err());
    }

    #[test]
    fn numbers_and_booleans_are_sent_as_their_json_text() {
        let p = UrlParams::from_json(&json!({"a": 100, "b": 1.5, "c": true, "d": "x y"})).unwrap();
        let got: Vec<_> = p.iter().collect();
        assert_eq!(
            got,
            [("a", "100"), ("b", "1.5"), ("c", "true"), ("d", "x y")]
        );
    }

    #[test]
    fn bad_params_name_the_field() {
        let cases = [
            (json!([1]), "url_params"),
            (json!({"": "x"}), "url_params"),
            (json!({"a b": "x"}), "url_params"),
            (json!({"k".repeat(65): "x"}), "url_params"),
            (json!({"ok": null}), "url_params.ok"),
            (json!({"ok": {"nested": 1}}), "url_params.ok"),
            (json!({"ok": [1]}), "url_params.ok"),
            (json!({"ok": "x".repeat(2049)}), "url_params.ok"),
        ];
        for (value, field) in cases {
            assert_eq!(
                UrlParams::from_json(&value).unwrap_err().field,
                field,
                "{value}"
            );
        }
    }

    #[test]
    fn param_names_allow_exactly_the_documented_characters() {
        assert!(is_valid_param_name("user_id.v-2"));
        assert!(is_valid_param_name(&"a".repeat(64)));
        assert!(!is_valid_param_name("é"));
        assert!(!is_valid_param_name("a/b"));
    }
}
