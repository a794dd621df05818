//! Queries on `webhook_configs`.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::result::Error;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::models::{ConfigForm, ConfigRow, SecretChange};
use super::schema::webhook_configs::dsl::*;

pub async fn insert(
    conn: &mut AsyncPgConnection,
    form: &ConfigForm,
    secret: &SecretChange,
) -> Result<ConfigRow, Error> {
    diesel::insert_into(webhook_configs)
        .values((form, signing_secret.eq(secret.column_value().flatten())))
        .returning(ConfigRow::as_returning())
        .get_result(conn)
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

pub async fn find_versioned(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> Result<Vec<Versioned>, Error> {
    let rows: Vec<(ConfigRow, i64)> = webhook_configs
        .filter(id.eq_any(ids))
        .select((
            ConfigRow::as_select(),
            sql::<BigInt>("webhook_configs.xmin::text::int8"),
        ))
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

pub async fn replace(
    conn: &mut AsyncPgConnection,
    config_id: i64,
    form: &ConfigForm,
    secret: &SecretChange,
) -> Result<Option<ConfigRow>, Error> {
    let secret = secret.column_value().map(|value| signing_secret.eq(value));
    diesel::update(webhook_configs.find(config_id))
        .set((form, secret, updated_at.eq(diesel::dsl::now)))
        .returning(ConfigRow::as_returning())
        .get_result(conn)
        .await
        .optional()
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
