//! Partner secrets at rest (docs/operations.md, "Secrets at rest"): `migrate` seals every one
//! still in clear or sealed by a key other than the sealing one; a process started with clear
//! ones says so.

use crate::sealing::{self, Keys};
use crate::store::models::{CallSettingsColumns, SigningSecrets};
use crate::store::{configs, DbPool};

use super::{conn, AppError};

/// What [`reseal`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Secrets sealed (again) under the sealing key.
    pub secrets: usize,
    /// Configs they belong to.
    pub configs: usize,
}

/// Seals under the first of `keys` every stored secret that is in clear or sealed by another
/// key; nothing when no key is given. Each config is read and written under its row lock, in a
/// transaction of its own: a value is never lost (it opens with the old key until it is
/// written anew), and a config replaced through the API meanwhile is not written back stale.
pub async fn reseal(pool: &DbPool, keys: &Keys) -> Result<Resealed, AppError> {
    let mut done = Resealed::default();
    if !keys.can_seal() {
        return Ok(done);
    }
    let mut conn = conn(pool).await?;
    for config_id in configs::ids(&mut conn).await? {
        let mut changed = 0;
        let written = configs::reseal_locked(&mut conn, config_id, |row, mut signing| {
            let mut call = row
                .call_settings()
                .map_err(|e| AppError::internal(e.to_string()))?;
            for sealed in call.sealed_mut() {
                changed += reseal_one(&mut sealed.0, keys, config_id)?;
            }
            for secret in [
                &mut signing.signing_secret,
                &mut signing.previous_signing_secret,
            ]
            .into_iter()
            .flatten()
            {
                changed += reseal_one(secret, keys, config_id)?;
            }
            Ok::<_, AppError>((changed > 0).then(|| (CallSettingsColumns::from(&call), signing)))
        })
        .await?;
        if written {
            done.secrets += changed;
            done.configs += 1;
        }
    }
    Ok(done)
}

fn reseal_one(stored: &mut String, keys: &Keys, config_id: i64) -> Result<usize, AppError> {
    if !keys.needs_resealing(stored) {
        return Ok(0);
    }
    let clear = keys.open(stored).map_err(|e| {
        AppError::internal(format!(
            "a secret of config {config_id} cannot be read: {e}"
        ))
    })?;
    *stored = keys
        .seal(clear.expose())
        .map_err(|e| AppError::internal(e.to_string()))?;
    Ok(1)
}

/// How many stored signing secrets are in clear (stored before keys were given).
pub async fn count_clear(pool: &DbPool) -> Result<usize, AppError> {
    let mut conn = conn(pool).await?;
    let clear = |s: &Option<String>| s.as_deref().is_some_and(|s| !sealing::is_sealed(s));
    Ok(configs::all_secrets(&mut conn)
        .await?
        .iter()
        .map(|(_, s): &(_, SigningSecrets)| {
            usize::from(clear(&s.signing_secret)) + usize::from(clear(&s.previous_signing_secret))
        })
        .sum())
}
