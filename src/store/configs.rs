//! Queries on `webhook_configs`.

use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::prelude::*;
use diesel::result::Error;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::models::{CallSettingsColumns, ConfigForm, ConfigRow, SigningSecrets};
use super::schema::webhook_configs::dsl::*;

pub async fn insert(
    conn: &mut AsyncPgConnection,
    form: &ConfigForm,
    call: &CallSettingsColumns,
    signing: &SigningSecrets,
) -> Result<ConfigRow, Error> {
    diesel::insert_into(webhook_configs)
        .values((form, call, signing))
        .returning(ConfigRow::as_returning())
        .get_result(conn)
        .await
}

/// A config with its signing secrets (sealed), and its version: what a worker calls with.
pub async fn find_for_calls(
    conn: &mut AsyncPgConnection,
    config_id: i64,
) -> Result<Option<(ConfigRow, SigningSecrets, i64)>, Error> {
    webhook_configs
        .find(config_id)
        .select((
            ConfigRow::as_select(),
            SigningSecrets::as_select(),
            version(),
        ))
        .first(conn)
        .await
        .optional()
}

/// A config and its signing secrets, its row locked until the caller's transaction ends.
async fn lock_with_secrets(
    conn: &mut AsyncPgConnection,
    config_id: i64,
) -> Result<Option<(ConfigRow, SigningSecrets)>, Error> {
    webhook_configs
        .find(config_id)
        .select((ConfigRow::as_select(), SigningSecrets::as_select()))
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Replaces a config with what `merge` makes of the stored one, in one transaction that holds
/// the row's lock from the read to the write. `None` when there is no such config.
pub async fn replace_merged<E: From<Error> + Send>(
    conn: &mut AsyncPgConnection,
    config_id: i64,
    merge: impl FnOnce(
            &ConfigRow,
            &SigningSecrets,
        ) -> Result<(ConfigForm, CallSettingsColumns, SigningSecrets), E>
        + Send,
) -> Result<Option<ConfigRow>, E> {
    conn.transaction(async |conn| {
        let stored = lock_with_secrets(conn, config_id).await?;
        let Some((row, signing)) = stored else {
            return Ok(None);
        };
        let (form, call, signing) = merge(&row, &signing)?;
        let row = diesel::update(webhook_configs.find(config_id))
            .set((&form, &call, &signing, updated_at.eq(diesel::dsl::now)))
            .returning(ConfigRow::as_returning())
            .get_result(conn)
            .await?;
        Ok(Some(row))
    })
    .await
}

/// Every config's id, settings and signing secrets.
pub async fn all_secrets(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<(ConfigRow, SigningSecrets)>, Error> {
    webhook_configs
        .order(id)
        .select((ConfigRow::as_select(), SigningSecrets::as_select()))
        .load(conn)
        .await
}

/// Every config's id.
pub async fn ids(conn: &mut AsyncPgConnection) -> Result<Vec<i64>, Error> {
    webhook_configs.order(id).select(id).load(conn).await
}

/// Writes a config's secrets as `reseal` makes them of the stored ones (`None`: nothing to
/// write), leaving everything else (and `updated_at`) as is. The row is locked from the read
/// to the write, so a replace that commits meanwhile is neither lost nor half-applied.
pub async fn reseal_locked<E: From<Error> + Send>(
    conn: &mut AsyncPgConnection,
    config_id: i64,
    reseal: impl FnOnce(
            &ConfigRow,
            SigningSecrets,
        ) -> Result<Option<(CallSettingsColumns, SigningSecrets)>, E>
        + Send,
) -> Result<bool, E> {
    conn.transaction(async |conn| {
        let stored = lock_with_secrets(conn, config_id).await?;
        let Some((row, signing)) = stored else {
            return Ok(false);
        };
        let Some((call, signing)) = reseal(&row, signing)? else {
            return Ok(false);
        };
        diesel::update(webhook_configs.find(config_id))
            .set((&call, &signing))
            .execute(conn)
            .await?;
        Ok(true)
    })
    .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    config_id: i64,
) -> Result<Option<ConfigRow>, Error> {
    webhook_configs
        .find(config_id)
        .select(ConfigRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A config as read, with the version it was read at: the row's `xmin`, which every update
/// changes (through the API or by hand). `queue::insert_new` checks it.
#[derive(Clone, Debug)]
pub struct Versioned {
    pub row: ConfigRow,
    pub version: i64,
}

/// A config row's version: its `xmin`, which every update changes.
fn version() -> SqlLiteral<BigInt> {
    sql("webhook_configs.xmin::text::int8")
}

pub async fn find_versioned(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> Result<Vec<Versioned>, Error> {
    let rows: Vec<(ConfigRow, i64)> = webhook_configs
        .filter(id.eq_any(ids))
        .select((ConfigRow::as_select(), version()))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(row, version)| Versioned { row, version })
        .collect())
}

pub async fn list(conn: &mut AsyncPgConnection) -> Result<Vec<ConfigRow>, Error> {
    webhook_configs
        .order(id)
        .select(ConfigRow::as_select())
        .load(conn)
        .await
}

pub async fn deactivate(
    conn: &mut AsyncPgConnection,
    config_id: i64,
) -> Result<Option<ConfigRow>, Error> {
    diesel::update(webhook_configs.find(config_id))
        .set((is_active.eq(false), updated_at.eq(diesel::dsl::now)))
        .returning(ConfigRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}
