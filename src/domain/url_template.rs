//! Building the partner URL from a config's template and an event's parameters (docs/api.md, "Partner URLs").
//!
//! `{name}` is replaced by the percent-encoded value of `url_params[name]` (or the event's own
//! `event_id`/`event_type` when no parameter of that name is given). Parameters that no
//! placeholder used are appended to the query in key order. Placeholders may not stand in the
//! scheme or authority, so a submitter can never choose the host a call goes to.

use std::collections::BTreeSet;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub use super::placeholders::MissingPlaceholder;
use super::placeholders::{EventValues, Text};

/// Everything but RFC 3986's unreserved characters is written `%XX`.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(text: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(text, NOT_UNRESERVED)
}

/// A parsed, validated URL template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlTemplate {
    text: Text,
    has_query: bool,
    /// `#fragment` of the template, kept at the very end.
    fragment: Option<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must be an http or https URL")]
    Scheme,
    #[error("must name a host")]
    NoHost,
    #[error("placeholders may not appear in the scheme, host or port")]
    PlaceholderInAuthority,
    #[error("has an unmatched or invalid placeholder near byte {0}")]
    BadPlaceholder(usize),
    #[error("is not a valid URL: {0}")]
    Invalid(String),
    #[error("is longer than 2048 bytes")]
    TooLong,
    /// URL parsers drop control characters and surrounding spaces silently, so a template
    /// that has them could check out here and still build a URL that does not parse.
    #[error("must not contain control characters or leading or trailing spaces")]
    ControlCharacter,
}

impl UrlTemplate {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        if template.len() > 2048 {
            return Err(TemplateError::TooLong);
        }
        if template.chars().any(char::is_control) || template.trim() != template {
            return Err(TemplateError::ControlCharacter);
        }
        let (body, fragment) = match template.split_once('#') {
            Some((body, fragment)) => (body, Some(fragment.to_string())),
            None => (template, None),
        };
        let lower = body.to_ascii_lowercase();
        let rest_at = if lower.starts_with("https://") {
            8
        } else if lower.starts_with("http://") {
            7
        } else {
            return Err(TemplateError::Scheme);
        };
        let authority_end = body[rest_at..]
            .find(['/', '?'])
            .map_or(body.len(), |i| rest_at + i);
        if body[..authority_end].contains(['{', '}']) {
            return Err(TemplateError::PlaceholderInAuthority);
        }
        if authority_end == rest_at {
            return Err(TemplateError::NoHost);
        }
        if fragment.as_deref().is_some_and(|f| f.contains(['{', '}'])) {
            return Err(TemplateError::BadPlaceholder(body.len()));
        }

        let text = Text::parse(body).map_err(|e| TemplateError::BadPlaceholder(e.0))?;
        let template = UrlTemplate {
            has_query: body.contains('?'),
            text,
            fragment,
        };
        // The template with every placeholder filled must be a URL with a host.
        let sample = template.render(|_| Some("x"));
        let parsed = url::Url::parse(&sample).map_err(|e| TemplateError::Invalid(e.to_string()))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(TemplateError::NoHost);
        }
        Ok(template)
    }

    /// The host as written in the template (for the outbound address check on literals).
    pub fn host(&self) -> Option<url::Host> {
        url::Url::parse(&self.render(|_| Some("x")))
            .ok()?
            .host()
            .map(|h| h.to_owned())
    }

    /// Names of the placeholders, in order of first appearance.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.text.placeholders()
    }

    /// The template filled with `value` for every placeholder (a sample to check).
    fn render<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> String {
        self.text
            .fill(value, |v, out| out.push_str(&encode(v).to_string()))
            .unwrap_or_default()
    }

    /// Builds the final URL for one event. Parameters that neither this template nor
    /// `used_elsewhere` (the names the partner's body and header templates use) placed are
    /// appended to the query, so every parameter reaches the partner.
    pub fn build(
        &self,
        values: &EventValues<'_>,
        used_elsewhere: &BTreeSet<String>,
    ) -> Result<String, MissingPlaceholder> {
        let mut out = self.text.fill(
            |name| values.get(name),
            |v, out| out.push_str(&encode(v).to_string()),
        )?;
        let used: BTreeSet<&str> = self.text.placeholders().collect();
        let params = values.params;
        let leftover = |k: &&str| !used.contains(k) && !used_elsewhere.contains(*k);
        // A separator is needed unless the query so far is empty or ends with one; judged on
        // the query itself, so a `?` that is part of the query ("...??") is not mistaken
        // for its start.
        let mut separator_needed = match out.split_once('?') {
            Some((_, query)) => !(query.is_empty() || query.ends_with('&')),
            None => false,
        };
        if !self.has_query && params.iter().any(|(k, _)| leftover(&k)) {
            out.push('?');
        }
        for (key, value) in params.iter().filter(|(k, _)| leftover(k)) {
            if separator_needed {
                out.push('&');
            }
            out.push_str(&format!("{}={}", encode(key), encode(value)));
            separator_needed = true;
        }
        if let Some(fragment) = &self.fragment {
            out.push('#');
            out.push_str(fragment);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{EventType, UrlParams};
    use proptest::prelude::*;

    fn build(template: &str, pairs: &[(&str, &str)]) -> Result<String, MissingPlaceholder> {
        let params = UrlParams::from_pairs(pairs.iter().copied());
        let values = EventValues {
            params: &params,
            event_type: EventType::Credit,
            event_id: Some("tx_1"),
        };
        UrlTemplate::parse(template)
            .unwrap()
            .build(&values, &BTreeSet::new())
    }

    #[test]
    fn the_spec_example() {
        assert_eq!(
            build(
                "https://p.example/pb?src=net&uid={user_id}",
                &[("user_id", "u 1"), ("value", "100")]
            )
            .unwrap(),
            "https://p.example/pb?src=net&uid=u%201&value=100"
        );
    }

    #[test]
    fn leftovers_start_a_query_when_the_template_has_none_and_keep_key_order() {
        assert_eq!(
            build("http://h/p", &[("z", "1"), ("a", "2"), ("m", "3")]).unwrap(),
            "http://h/p?a=2&m=3&z=1"
        );
        for (template, built) in [
            ("http://h/p?", "http://h/p?a=1"),
            ("http://h/p?x=1&", "http://h/p?x=1&a=1"),
            // Found by the fuzz invariants: a `?` inside the query is not a fresh start.
            ("http://h/p??", "http://h/p??&a=1"),
            ("http://h/p?x=?", "http://h/p?x=?&a=1"),
        ] {
            assert_eq!(build(template, &[("a", "1")]).unwrap(), built);
        }
        assert_eq!(build("http://h/p", &[]).unwrap(), "http://h/p");
    }

    #[test]
    fn everything_outside_unreserved_is_encoded() {
        assert_eq!(
            build("http://h/{v}", &[("v", "a+b/c?d&e=f~g.h_i-j é")]).unwrap(),
            "http://h/a%2Bb%2Fc%3Fd%26e%3Df~g.h_i-j%20%C3%A9"
        );
    }

    #[test]
    fn event_fields_fill_their_placeholders_unless_a_param_is_given() {
        assert_eq!(
            build("http://h/{event_type}/{event_id}", &[]).unwrap(),
            "http://h/%2Bcredit/tx_1"
        );
        assert_eq!(
            build("http://h/{event_id}", &[("event_id", "mine")]).unwrap(),
            "http://h/mine"
        );
    }

    #[test]
    fn a_placeholder_without_value_is_an_error() {
        assert_eq!(
            build("http://h/?u={user_id}", &[("value", "1")]).unwrap_err(),
            MissingPlaceholder("user_id".into())
        );
        let values = EventValues {
            params: &UrlParams::default(),
            event_type: EventType::Debit,
            event_id: None,
        };
        let no_event_id = UrlTemplate::parse("http://h/{event_id}")
            .unwrap()
            .build(&values, &BTreeSet::new());
        assert!(no_event_id.is_err());
    }

    #[test]
    fn the_fragment_stays_last() {
        assert_eq!(
            build("http://h/p#frag", &[("a", "1")]).unwrap(),
            "http://h/p?a=1#frag"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        use TemplateError::*;
        type Check = fn(&TemplateError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("ftp://h/p", |e| *e == Scheme),
            ("javascript:alert(1)", |e| *e == Scheme),
            ("//h/p", |e| *e == Scheme),
            ("http:///p", |e| *e == NoHost),
            ("http://{host}/p", |e| *e == PlaceholderInAuthority),
            ("http://h:{port}/p", |e| *e == PlaceholderInAuthority),
            ("http://h/{a", |e| matches!(e, BadPlaceholder(_))),
            ("http://h/a}", |e| matches!(e, BadPlaceholder(_))),
            ("http://h/{a b}", |e| matches!(e, BadPlaceholder(_))),
            ("http://h/{}", |e| matches!(e, BadPlaceholder(_))),
            ("http://h p/", |e| matches!(e, Invalid(_))),
            // Found by `just fuzz`: trailing NULs vanish when the template is checked, but
            // not once parameters are appended after them.
            ("https://p.example\0\0", |e| *e == ControlCharacter),
            ("http://h/p\t{a}", |e| *e == ControlCharacter),
            ("http://h/p\n", |e| *e == ControlCharacter),
            (" http://h/p", |e| *e == ControlCharacter),
            ("http://h/p ", |e| *e == ControlCharacter),
        ];
        for (template, check) in cases {
            let err = UrlTemplate::parse(template).unwrap_err();
            assert!(check(&err), "{template}: {err:?}");
        }
        assert_eq!(
            UrlTemplate::parse(&format!("http://h/{}", "a".repeat(2048))).unwrap_err(),
            TooLong
        );
    }

    #[test]
    fn scheme_is_case_insensitive_and_hosts_are_reported() {
        let t = UrlTemplate::parse("HTTPS://Partner.Example:8443/x").unwrap();
        assert_eq!(t.host(), Some(url::Host::Domain("partner.example".into())));
        let t = UrlTemplate::parse("http://127.0.0.1/x").unwrap();
        assert_eq!(t.host(), Some(url::Host::Ipv4([127, 0, 0, 1].into())));
    }

    fn key() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,12}"
    }

    proptest! {
        /// Any value, through a placeholder or appended, comes back unchanged from the query.
        #[test]
        fn values_round_trip_through_the_query(
            params in proptest::collection::btree_map(key(), any::<String>(), 0..6),
            placeholder_value in any::<String>(),
        ) {
            let mut pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            pairs.retain(|(k, _)| *k != "ph");
            pairs.push(("ph", placeholder_value.as_str()));
            let built = build("https://p.example/pb?src=net&x={ph}", &pairs).unwrap();
            let url = url::Url::parse(&built).unwrap();
            let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            prop_assert_eq!(&query[0], &("src".to_string(), "net".to_string()));
            prop_assert_eq!(&query[1], &("x".to_string(), placeholder_value.clone()));
            let rest: Vec<(String, String)> = params.into_iter().filter(|(k, _)| k != "ph").collect();
            prop_assert_eq!(&query[2..], &rest[..]);
        }

        /// No placeholder text survives into a built URL, whatever the values hold.
        #[test]
        fn no_placeholder_text_is_left(
            a in any::<String>(), b in any::<String>(),
            path in "[a-z/]{0,8}",
        ) {
            let template = format!("http://h/{path}{{a}}?q={{b}}&again={{a}}");
            let built = build(&template, &[("a", &a), ("b", &b)]).unwrap();
            prop_assert!(!built.contains('{') && !built.contains('}'), "{}", built);
            prop_assert!(url::Url::parse(&built).is_ok());
        }
    }
}
