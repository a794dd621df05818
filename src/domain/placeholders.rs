//! `{name}` placeholders in templated text (URLs, bodies, header values) and the values an
//! event gives them (docs/api.md, "Partner URLs" and "Partner requests").

use super::event::{is_valid_param_name, EventType, UrlParams};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    Placeholder(String),
}

/// Text with `{name}` placeholders, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text {
    pieces: Vec<Piece>,
}

/// An unpaired brace, or a placeholder that is no parameter name, at this byte offset.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("has an unmatched or invalid placeholder near byte {0}")]
pub struct BadPlaceholder(pub usize);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("placeholder {{{0}}} has no value in url_params")]
pub struct MissingPlaceholder(pub String);

/// The values of one event's placeholders: its `url_params`, then its own `event_type` and
/// `event_id` for names the parameters do not give.
#[derive(Clone, Copy, Debug)]
pub struct EventValues<'a> {
    pub params: &'a UrlParams,
    pub event_type: EventType,
    pub event_id: Option<&'a str>,
}

impl<'a> EventValues<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.params.get(name).or(match name {
            "event_type" => Some(self.event_type.as_str()),
            "event_id" => self.event_id,
            _ => None,
        })
    }
}

impl Text {
    pub fn parse(text: &str) -> Result<Self, BadPlaceholder> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(BadPlaceholder(offset + open));
            }
            let close = rest[open..]
                .find('}')
                .map(|i| open + i)
                .ok_or(BadPlaceholder(offset + open))?;
            let name = &rest[open + 1..close];
            if !is_valid_param_name(name) {
                return Err(BadPlaceholder(offset + open));
            }
            literal.push_str(&rest[..open]);
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Placeholder(name.to_string()));
            offset += close + 1;
            rest = &rest[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self { pieces })
    }

    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Names of the placeholders, in order of appearance.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Placeholder(name) => Some(name.as_str()),
            Piece::Literal(_) => None,
        })
    }

    /// The name of the placeholder when the text is exactly one placeholder and nothing else.
    pub fn only_placeholder(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [Piece::Placeholder(name)] => Some(name),
            _ => None,
        }
    }

    /// The text with each placeholder replaced by its value, written by `encode`.
    pub fn fill<'v>(
        &self,
        value: impl Fn(&str) -> Option<&'v str>,
        encode: impl Fn(&str, &mut String),
    ) -> Result<String, MissingPlaceholder> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Placeholder(name) => {
                    let v = value(name).ok_or_else(|| MissingPlaceholder(name.clone()))?;
                    encode(v, &mut out);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_parsed_and_filled_in_order() {
        let text = Text::parse("a{x}b{y_1}").unwrap();
        assert_eq!(text.placeholders().collect::<Vec<_>>(), ["x", "y_1"]);
        let filled = text
            .fill(
                |n| Some(if n == "x" { "1" } else { "2" }),
                |v, out| out.push_str(v),
            )
            .unwrap();
        assert_eq!(filled, "a1b2");
        assert_eq!(
            text.fill(|_| None, |v, out| out.push_str(v)),
            Err(MissingPlaceholder("x".into()))
        );
        assert_eq!(Text::parse("{x}").unwrap().only_placeholder(), Some("x"));
        assert_eq!(Text::parse(" {x}").unwrap().only_placeholder(), None);
    }

    #[test]
    fn unpaired_braces_and_bad_names_are_refused_with_their_offset() {
        assert_eq!(Text::parse("ab{x"), Err(BadPlaceholder(2)));
        assert_eq!(Text::parse("a}"), Err(BadPlaceholder(1)));
        assert_eq!(Text::parse("{x}{a b}"), Err(BadPlaceholder(3)));
        assert_eq!(Text::parse("{}"), Err(BadPlaceholder(0)));
    }
}
