//! Keeping partner secrets out of logs (docs/decisions.md, "Delivery").

/// Fragments that mark a parameter as secret, matched case-insensitively anywhere in the key.
const SECRET_MARKERS: &[&str] = &[
    "token",
    "secret",
    "signature",
    "sig",
    "password",
    "passwd",
    "key",
    "auth",
];

pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|marker| key.contains(marker))
}

/// The URL with the value of every secret-looking query parameter replaced by `***`,
/// and any userinfo password hidden: fit for a log line.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparseable url>".to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_key(&k) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognised_in_any_case() {
        for key in [
            "token",
            "API_KEY",
            "Signature",
            "sig",
            "x-auth",
            "passwd",
            "user_password",
            "clientSecret",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["value", "user_id", "amount", "event_id"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn urls_lose_their_secrets() {
        let r = redact_url("https://u:hunter2@p.example/pb?uid=u1&token=abc123&Sig=zz");
        assert!(
            !r.contains("hunter2") && !r.contains("abc123") && !r.contains("zz"),
            "{r}"
        );
        assert!(r.contains("uid=u1"), "{r}");
        assert_eq!(redact_url("not a url"), "<unparseable url>");
    }
}
