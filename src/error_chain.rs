//! An error and its causes on one line, for logs and stored attempt errors.

/// An error and its causes on one line, e.g. `error sending request: tcp connect error:
/// Connection refused` or `error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer`: the HTTP and PostgreSQL clients keep the useful part in the causes.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}
