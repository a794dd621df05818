//! The published `standardwebhooks` package (PyPI), run as a partner would run it to verify
//! a signed call.

use std::process::Command;

use serde_json::Value;

/// A partner's check with the official Python package, as the README shows it: the signed
/// content (a call's body, or its request target, path and query, where it has no body) is
/// passed as received, so `json_parse=False`. It prints `ok`,
/// then what the default `json_parse=True` does with that content; exit status 1 and the
/// package's error when the signature does not verify, 2 when the package is missing.
const VERIFY_WITH_PACKAGE_PY: &str = r#"
import json, sys
try:
    from standardwebhooks import Webhook
except ImportError:
    sys.exit(2)
secret, content, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    result = Webhook(secret).verify(content, headers, json_parse=False)
except Exception as e:
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
assert result is None, result
print("ok")
try:
    Webhook(secret).verify(content, headers)
    print("default: parsed")
except ValueError as e:
    print(f"default: {type(e).__name__}")
"#;

/// Runs [`VERIFY_WITH_PACKAGE_PY`] on `content` and the call's `webhook-*` `headers`:
/// `Ok(what it printed)` when the signature verifies.
pub fn package_verifies(secret: &str, content: &str, headers: &Value) -> Result<String, String> {
    let output = Command::new("python3")
        .args([
            "-c",
            VERIFY_WITH_PACKAGE_PY,
            secret,
            content,
            &headers.to_string(),
        ])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    match output.status.code() {
        Some(0) => Ok(text),
        Some(2) => panic!(
            "the standardwebhooks package is missing: \
             `python3 -m pip install standardwebhooks==1.3.0` (.ci/run installs it)"
        ),
        _ => Err(format!(
            "{text}{}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}
