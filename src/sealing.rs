//! Partner secrets at rest (docs/operations.md, "Secrets at rest"): sealed with AES-256-GCM
//! under a key given to the process (`SECRET_KEYS`), never stored in clear.
//!
//! A sealed value reads `sealed:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`. The key id
//! (the first four bytes of the key's SHA-256, in hex) says which key sealed it, so several
//! keys can be given at once: the first seals, every one opens. That is how the key is rotated:
//! give the new key first and the old one after it, run `webhookd migrate` (which seals again,
//! under the new key, every value the old one sealed), then drop the old key.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::config::values::Secret;

const PREFIX: &str = "sealed:v1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// One key: its id and its cipher. `Debug` shows the id only.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// The keys given to the process, the sealing one first. Empty when none was given: then
/// nothing can be sealed, and only values stored in clear before keys existed can be read.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    keys: Vec<Key>,
}

/// Why `SECRET_KEYS` was refused. Never repeats a key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("key {0} is not standard base64")]
    Base64(usize),
    #[error("key {0} must be 32 bytes (base64 of 32 random bytes), not {1}")]
    Length(usize, usize),
    #[error("key {0} is given twice")]
    Repeated(usize),
}

/// Why a stored value could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("it was sealed with key {0}, which is not in SECRET_KEYS")]
    UnknownKey(String),
    #[error("it is sealed but SECRET_KEYS is not set")]
    NoKeys,
    #[error("it is not a sealed value this version can read")]
    Malformed,
    #[error("it does not open with its key (altered, or a different key with the same id)")]
    Altered,
}

/// Sealing asked of a process that was given no key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("secrets cannot be stored: the server has no SECRET_KEYS to encrypt them with")]
pub struct NoSealingKey;

impl Keys {
    /// Reads `SECRET_KEYS`: comma-separated base64 keys of 32 bytes, the sealing one first.
    pub fn parse(list: &Secret) -> Result<Self, KeysError> {
        let mut keys: Vec<Key> = Vec::new();
        let given = list
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty());
        for (i, encoded) in given.enumerate() {
            let n = i + 1;
            let bytes = STANDARD.decode(encoded).map_err(|_| KeysError::Base64(n))?;
            if bytes.len() != KEY_BYTES {
                return Err(KeysError::Length(n, bytes.len()));
            }
            let key = Key {
                id: key_id(&bytes),
                cipher: Aes256Gcm::new_from_slice(&bytes).expect("a 32-byte key"),
            };
            if keys.iter().any(|k| k.id == key.id) {
                return Err(KeysError::Repeated(n));
            }
            keys.push(key);
        }
        Ok(Self { keys })
    }

    pub fn can_seal(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The id of the key that seals, if any.
    pub fn sealing_key_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// Seals a secret under the first key.
    pub fn seal(&self, clear: &str) -> Result<String, NoSealingKey> {
        let key = self.keys.first().ok_or(NoSealingKey)?;
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), clear.as_bytes())
            .expect("AES-GCM seals any secret of a sane length");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}:{}", key.id, STANDARD.encode(bytes)))
    }

    /// A stored value in clear: opened when sealed, as it is when it was stored before keys
    /// existed (only signing secrets were).
    pub fn open(&self, stored: &str) -> Result<Secret, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Secret::new(stored));
        };
        let (id, encoded) = rest.split_once(':').ok_or(OpenError::Malformed)?;
        if self.keys.is_empty() {
            return Err(OpenError::NoKeys);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_string()))?;
        let bytes = STANDARD.decode(encoded).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let clear = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| OpenError::Altered)?;
        String::from_utf8(clear)
            .map(Secret::new)
            .map_err(|_| OpenError::Malformed)
    }

    /// Whether `migrate` should seal this stored value again: it is in clear, or sealed by a
    /// key other than the sealing one.
    pub fn needs_resealing(&self, stored: &str) -> bool {
        match (stored.strip_prefix(PREFIX), self.sealing_key_id()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(rest), Some(current)) => rest.split_once(':').map(|(id, _)| id) != Some(current),
        }
    }
}

/// Whether a stored value is sealed (as opposed to a clear value from before keys existed).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

fn key_id(key: &[u8]) -> String {
    Sha256::digest(key)[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; KEY_BYTES])
    }

    fn keys(list: &[String]) -> Keys {
        Keys::parse(&Secret::new(list.join(","))).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_and_never_shows_the_secret() {
        let keys = keys(&[key(1)]);
        let sealed = keys.seal("hunter2-token").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(keys.open(&sealed).unwrap().expose(), "hunter2-token");
        // A fresh nonce each time: equal secrets do not look equal at rest.
        assert_ne!(keys.seal("hunter2-token").unwrap(), sealed);
    }

    #[test]
    fn rotation_opens_with_either_key_and_reseals_only_what_the_old_one_sealed() {
        let old = keys(&[key(1)]);
        let by_old = old.seal("s").unwrap();
        let both = keys(&[key(2), key(1)]);
        assert_eq!(both.open(&by_old).unwrap().expose(), "s");
        assert!(both.needs_resealing(&by_old));
        let by_new = both.seal("s").unwrap();
        assert!(!both.needs_resealing(&by_new));
        assert!(both.needs_resealing("whsec_clear"));
        let new_only = keys(&[key(2)]);
        assert_eq!(new_only.open(&by_new).unwrap().expose(), "s");
        assert!(matches!(
            new_only.open(&by_old),
            Err(OpenError::UnknownKey(_))
        ));
    }

    #[test]
    fn without_keys_nothing_is_sealed_and_clear_values_still_read() {
        let none = Keys::default();
        assert_eq!(none.seal("s"), Err(NoSealingKey));
        assert_eq!(none.open("whsec_abc").unwrap().expose(), "whsec_abc");
        let sealed = keys(&[key(1)]).seal("s").unwrap();
        assert_eq!(none.open(&sealed), Err(OpenError::NoKeys));
        assert!(!none.needs_resealing("whsec_abc"));
    }

    #[test]
    fn an_altered_value_does_not_open() {
        let keys = keys(&[key(1)]);
        let sealed = keys.seal("secret").unwrap();
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = STANDARD.decode(body).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        let altered = format!("{head}:{}", STANDARD.encode(bytes));
        assert_eq!(keys.open(&altered), Err(OpenError::Altered));
        assert_eq!(keys.open("sealed:v1:nonsense"), Err(OpenError::Malformed));
    }

    #[test]
    fn bad_key_lists_are_refused_without_repeating_the_key() {
        let parse = |s: &str| Keys::parse(&Secret::new(s)).unwrap_err();
        assert_eq!(parse("not base64!"), KeysError::Base64(1));
        assert_eq!(
            parse(&format!("{},{}", key(1), STANDARD.encode([0u8; 16]))),
            KeysError::Length(2, 16)
        );
        assert_eq!(
            parse(&format!("{},{}", key(1), key(1))),
            KeysError::Repeated(2)
        );
        assert!(!Keys::parse(&Secret::new("")).unwrap().can_seal());
        assert!(!parse("not base64!").to_string().contains("base64!"));
    }
}
