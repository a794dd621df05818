//! Signing deliveries the Standard Webhooks way (<https://www.standardwebhooks.com/>), so a
//! partner can check that a call came from us and is fresh.
//!
//! Each signed call carries `webhook-id`, `webhook-timestamp` (unix seconds) and
//! `webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{content}"))>`.
//! Standard Webhooks signs the request body; our calls are GETs without one, so the signed
//! content is the request's path and query — the request target the partner's server sees —
//! which is where every parameter of a postback travels.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How a secret is written: `whsec_` and the key in standard base64.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest and longest key accepted, in bytes (what Standard Webhooks recommends).
pub const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Standard base64; the `=` padding may be left out, as some secret generators do.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A partner's signing key. `Debug` prints nothing of it, so it cannot reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// Why a secret was refused. The messages never repeat the secret.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must be written whsec_<base64 key>")]
    Prefix,
    #[error("must be whsec_ followed by a standard base64 key")]
    Base64,
    #[error("the key must be 24 to 64 bytes, not {0}")]
    Length(usize),
}

impl SigningKey {
    /// Reads a secret written `whsec_<base64>`: the key is the decoded part.
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = LENIENT.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(SigningKey(key))
    }

    /// The canonical written form, `whsec_` and padded standard base64: what is stored.
    pub fn to_secret(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The `webhook-signature` value for one call: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, id: &str, timestamp: i64, content: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(content.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn the_standard_webhooks_test_vector() {
        // The example published with the Standard Webhooks reference libraries.
        let key = SigningKey::from_secret(SECRET).unwrap();
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_path_and_query_signed_as_python_hmac_signs_it() {
        // Expected value computed independently with Python's hmac, hashlib and base64.
        let key = SigningKey::from_secret(SECRET).unwrap();
        assert_eq!(
            key.sign(
                "3f0c1f5e-2b7a-4c1e-9d3f-5a6b7c8d9e0f",
                1764331200,
                "/pb?uid=u%201&token=abc"
            ),
            "v1,Xae1PVlLujHA4PY9UUheqgtcpFjaD8jV37y1btMc+aE="
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_24_to_64_bytes() {
        let of = |n: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
        assert!(SigningKey::from_secret(&of(24)).is_ok());
        assert!(SigningKey::from_secret(&of(64)).is_ok());
        assert_eq!(
            SigningKey::from_secret(&of(23)),
            Err(SecretError::Length(23))
        );
        assert_eq!(
            SigningKey::from_secret(&of(65)),
            Err(SecretError::Length(65))
        );
        assert_eq!(
            SigningKey::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::Prefix)
        );
        assert_eq!(
            SigningKey::from_secret("whsec_not base64!"),
            Err(SecretError::Base64)
        );
        assert_eq!(
            SigningKey::from_secret("whsec_"),
            Err(SecretError::Length(0))
        );
    }

    #[test]
    fn padding_is_optional_and_the_stored_form_is_canonical() {
        let padded = format!("whsec_{}", STANDARD.encode([1u8; 32]));
        assert!(padded.ends_with('='));
        let unpadded = padded.trim_end_matches('=');
        let key = SigningKey::from_secret(unpadded).unwrap();
        assert_eq!(key.to_secret(), padded);
        assert_eq!(SigningKey::from_secret(&key.to_secret()).unwrap(), key);
    }

    #[test]
    fn the_key_never_debug_prints() {
        let key = SigningKey::from_secret(SECRET).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(***)");
    }
}
