//! What must hold for any input to request parsing and URL building. Shared, by `#[path]`,
//! between the fuzz target (`fuzz_targets/submit_and_build_url.rs`) and the property test
//! `tests/fuzz_invariants.rs`, so CI checks the same rules the fuzzer hunts with.
//!
//! Input layout: a URL template, a newline, then the bytes of a `POST /webhooks` body.

use webhookd::api::submit_request;
use webhookd::domain::placeholders::EventValues;
use webhookd::domain::url_template::UrlTemplate;

/// Parses and builds; panics when an invariant breaks. Inputs that are refused (bad template,
/// bad JSON, a 4xx from the request parser, a placeholder without a value) are fine: refusing
/// is the right answer to them, and doing so without panicking is the invariant. Returns the
/// built URL when the input got that far, so callers can tell how deep their inputs reach.
pub fn check(data: &[u8]) -> Option<String> {
    let (template, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let template = std::str::from_utf8(template).ok()?;
    // The same steps as the handler: JSON syntax, then the typed request.
    let value = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let request = submit_request(value).ok()?;
    let parsed = UrlTemplate::parse(template).ok()?;
    let values = EventValues {
        params: &request.url_params,
        event_type: request.event_type,
        event_id: request.event_id.as_deref(),
    };
    let built = parsed.build(&values, &Default::default()).ok()?;

    let url = url::Url::parse(&built)
        .unwrap_or_else(|e| panic!("built URL {built:?} does not parse: {e}"));
    assert!(
        matches!(url.scheme(), "http" | "https"),
        "scheme of {built:?}"
    );
    assert!(
        !built.contains(['{', '}']),
        "placeholder text left in {built:?}"
    );
    // Parameters never choose where the call goes.
    assert_eq!(
        url.host().map(|h| h.to_owned()),
        parsed.host(),
        "the host moved in {built:?}"
    );
    // Every parameter no placeholder used arrives, unchanged, as a query pair.
    let used: Vec<&str> = parsed.placeholders().collect();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    for (key, value) in request.url_params.iter().filter(|(k, _)| !used.contains(k)) {
        assert!(
            pairs.iter().any(|(k, v)| k == key && v == value),
            "parameter {key}={value:?} is not in the query of {built:?}"
        );
    }
    Some(built)
}
