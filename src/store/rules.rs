//! The rules: every SQL function and trigger, one file per rule under `sql/rules/`, embedded in
//! the binary and applied by [`super::migrate`] after the versioned migrations. A rule file is
//! the one definition of what it holds (Flyway calls such files repeatable migrations): the
//! versioned migrations keep their history, and a later rule simply replaces what they made.
//!
//! A rule is applied when its text differs from the text last applied (recorded by name and
//! SHA-256 in [`BOOKKEEPING`]), and every rule is applied again after a versioned migration, so
//! that a migration which dropped or remade a function or a table leaves the rules as their
//! files say. The rules due are applied in file name order in one transaction, under the lock
//! the migrations hold: a rule that fails leaves every rule as it was, and two processes
//! migrating at once apply each change once. Each file must be re-runnable: `CREATE OR REPLACE
//! FUNCTION`, `CREATE OR REPLACE TRIGGER` (docs/development.md, "Changing a rule").

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, RunQueryDsl};
use sha2::{Digest, Sha256};

use super::DbSetupError;

/// The connection migrations run on: the async connection driven from a blocking thread.
pub(super) type MigrationConnection =
    diesel_async::async_connection_wrapper::AsyncConnectionWrapper<diesel_async::AsyncPgConnection>;

/// One rule file: its name (the file name, which orders it) and its text.
#[derive(Clone, Copy, Debug)]
pub struct Rule<'a> {
    pub name: &'a str,
    pub sql: &'a str,
}

/// Every file of `sql/rules/`, in the order they are applied (made by `build.rs`).
pub const RULES: &[Rule<'static>] = include!(concat!(env!("OUT_DIR"), "/rules.rs"));

/// The table that records which text of each rule was applied, and after which migration.
pub const BOOKKEEPING: &str = "webhookd_rules";

impl Rule<'_> {
    /// The SHA-256 of the text, in hex: what the bookkeeping compares.
    pub fn checksum(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// A rule as recorded in [`BOOKKEEPING`].
#[derive(diesel::QueryableByName)]
struct Recorded {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    checksum: String,
    #[diesel(sql_type = Text)]
    after_migration: String,
}

/// The newest versioned migration applied, as diesel records it.
#[derive(diesel::QueryableByName)]
struct Schema {
    #[diesel(sql_type = Text)]
    version: String,
}

/// Applies the rules of `rules` that are due, in order, in one transaction; returns their names.
/// The caller holds the migrations' lock.
pub(super) fn apply(
    conn: &mut MigrationConnection,
    rules: &[Rule<'_>],
) -> Result<Vec<String>, DbSetupError> {
    conn.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {BOOKKEEPING} (
             name TEXT PRIMARY KEY,
             checksum TEXT NOT NULL,
             after_migration TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );
         COMMENT ON TABLE {BOOKKEEPING} IS
             'The rules of sql/rules/ applied by webhookd migrate: file name, SHA-256 of the text applied, the newest versioned migration then'"
    ))?;
    let schema = diesel::sql_query(
        "SELECT coalesce(max(version), '') AS version FROM __diesel_schema_migrations",
    )
    .get_result::<Schema>(conn)?
    .version;
    let recorded = diesel::sql_query(format!(
        "SELECT name, checksum, after_migration FROM {BOOKKEEPING}"
    ))
    .load::<Recorded>(conn)?;
    let due: Vec<_> = rules
        .iter()
        .filter(|rule| {
            !recorded.iter().any(|r| {
                r.name == rule.name && r.checksum == rule.checksum() && r.after_migration == schema
            })
        })
        .collect();
    if due.is_empty() {
        return Ok(Vec::new());
    }
    conn.transaction(|conn| {
        for rule in &due {
            conn.batch_execute(rule.sql)
                .map_err(|cause| DbSetupError::Rule {
                    name: rule.name.to_string(),
                    cause: cause.to_string(),
                })?;
            diesel::sql_query(format!(
                "INSERT INTO {BOOKKEEPING} (name, checksum, after_migration) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE
                 SET checksum = excluded.checksum, after_migration = excluded.after_migration,
                     applied_at = now()"
            ))
            .bind::<Text, _>(rule.name)
            .bind::<Text, _>(rule.checksum())
            .bind::<Text, _>(&schema)
            .execute(conn)?;
        }
        Ok(due.iter().map(|rule| rule.name.to_string()).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_folder_is_a_rule_in_name_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/rules");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let names: Vec<&str> = RULES.iter().map(|r| r.name).collect();
        assert_eq!(names, files);
    }

    #[test]
    fn a_checksum_follows_the_text() {
        let rule = Rule {
            name: "a.sql",
            sql: "SELECT 1;",
        };
        let changed = Rule {
            sql: "SELECT 2;",
            ..rule
        };
        assert_eq!(rule.checksum().len(), 64);
        assert_eq!(rule.checksum(), rule.checksum());
        assert_ne!(rule.checksum(), changed.checksum());
    }
}
