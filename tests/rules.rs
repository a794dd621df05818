//! The rules of `sql/rules/` (docs/decisions.md, "Rules"): after `migrate`, each function is
//! the one its file defines; a changed file is applied again, an unchanged one is not, and a
//! file that does not apply fails the migration with its name and changes nothing.

mod common;

use common::TestDb;
use webhookd::store::rules::{Rule, BOOKKEEPING, RULES};
use webhookd::store::{migrate, migrate_with, DbSetupError};

/// The functions a rule file defines: name and body (the text between `AS $$` and `$$`).
fn functions_of(rule: &Rule) -> Vec<(String, String)> {
    let definition =
        regex_lite::Regex::new(r"(?s)CREATE OR REPLACE FUNCTION (\w+)\(.*?\$\$(.*?)\$\$").unwrap();
    definition
        .captures_iter(rule.sql)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

fn triggers_of(rule: &Rule) -> Vec<String> {
    let definition = regex_lite::Regex::new(r"CREATE OR REPLACE TRIGGER (\w+)").unwrap();
    definition
        .captures_iter(rule.sql)
        .map(|c| c[1].to_string())
        .collect()
}

/// `RULES` with `name`'s text replaced, for the lifetime of the test process.
fn rules_with(changes: &[(&str, String)]) -> &'static [Rule<'static>] {
    let rules: Vec<Rule<'static>> = RULES
        .iter()
        .map(
            |rule| match changes.iter().find(|(name, _)| *name == rule.name) {
                Some((_, sql)) => Rule {
                    name: rule.name,
                    sql: sql.clone().leak(),
                },
                None => *rule,
            },
        )
        .collect();
    rules.leak()
}

fn rule(name_part: &str) -> Rule<'static> {
    *RULES
        .iter()
        .find(|r| r.name.contains(name_part))
        .unwrap_or_else(|| panic!("a rule named like {name_part}"))
}

async fn function_comment(db: &TestDb, function: &str) -> Option<String> {
    db.client()
        .await
        .query_one(
            "SELECT obj_description(p.oid, 'pg_proc') FROM pg_proc p WHERE p.proname = $1",
            &[&function],
        )
        .await
        .unwrap()
        .get(0)
}

async fn recorded(db: &TestDb) -> Vec<(String, String)> {
    db.client()
        .await
        .query(
            &format!("SELECT name, checksum FROM {BOOKKEEPING} ORDER BY name"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn a_migrated_database_runs_each_rule_as_its_file_says() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let mut functions = 0;
    for rule in RULES {
        for (name, body) in functions_of(rule) {
            let rows = client
                .query("SELECT prosrc FROM pg_proc WHERE proname = $1", &[&name])
                .await
                .unwrap();
            assert_eq!(rows.len(), 1, "{name} of {} is defined once", rule.name);
            let live: String = rows[0].get(0);
            assert_eq!(live, body, "{name}'s body is {}'s", rule.name);
            functions += 1;
        }
        for trigger in triggers_of(rule) {
            let found = client
                .query_opt(
                    "SELECT 1 FROM pg_trigger WHERE tgname = $1 AND NOT tgisinternal",
                    &[&trigger],
                )
                .await
                .unwrap();
            assert!(found.is_some(), "trigger {trigger} of {}", rule.name);
        }
    }
    // Every function of the schema has its rule: none is defined only by a migration.
    let live: i64 = db
        .count(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public'",
        )
        .await;
    assert_eq!(live, functions);
    let expected: Vec<(String, String)> = RULES
        .iter()
        .map(|r| (r.name.to_string(), r.checksum()))
        .collect();
    assert_eq!(recorded(&db).await, expected);
}

#[tokio::test]
async fn a_changed_rule_is_applied_again_and_an_unchanged_one_is_not() {
    let db = TestDb::new().await;
    let retention = rule("retention");
    let changed = rules_with(&[(
        retention.name,
        format!(
            "{}\nCOMMENT ON FUNCTION webhook_credit_has_waiting_debit(BIGINT, TEXT, TEXT) IS 'changed';\n",
            retention.sql
        ),
    )]);

    let applied = migrate_with(&db.url, changed).await.unwrap();
    assert!(applied.migrations.is_empty());
    assert_eq!(applied.rules, [retention.name]);
    assert_eq!(
        function_comment(&db, "webhook_credit_has_waiting_debit")
            .await
            .as_deref(),
        Some("changed")
    );

    // Unchanged, nothing is applied: a function changed by hand stays as it is.
    db.client()
        .await
        .batch_execute(
            "COMMENT ON FUNCTION webhook_credit_has_waiting_debit(BIGINT, TEXT, TEXT) IS 'by hand'",
        )
        .await
        .unwrap();
    let applied = migrate_with(&db.url, changed).await.unwrap();
    assert!(applied.is_empty(), "{applied:?}");
    assert_eq!(
        function_comment(&db, "webhook_credit_has_waiting_debit")
            .await
            .as_deref(),
        Some("by hand")
    );

    // The file as shipped differs from what was applied last: applied again.
    let applied = migrate(&db.url).await.unwrap();
    assert_eq!(applied.rules, [retention.name]);
    let shipped = function_comment(&db, "webhook_credit_has_waiting_debit").await;
    assert!(shipped.unwrap().starts_with("Whether a -debit waits"));
}

#[tokio::test]
async fn rules_applied_before_the_newest_migration_are_applied_again() {
    let db = TestDb::new().await;
    // As if the rules had been applied before the newest migration ran.
    db.client()
        .await
        .batch_execute(&format!(
            "UPDATE {BOOKKEEPING} SET after_migration = '20261204000009'"
        ))
        .await
        .unwrap();
    let applied = migrate(&db.url).await.unwrap();
    let every: Vec<&str> = RULES.iter().map(|r| r.name).collect();
    assert_eq!(applied.rules, every);
    assert!(migrate(&db.url).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rule_that_does_not_apply_fails_the_migration_and_changes_nothing() {
    let db = TestDb::new().await;
    let (config_versions, claim) = (rule("config_versions"), rule("claim"));
    let broken = rules_with(&[
        (
            config_versions.name,
            format!(
                "{}\nCOMMENT ON FUNCTION webhook_configs_unchanged(BIGINT[], BIGINT[]) IS 'changed';\n",
                config_versions.sql
            ),
        ),
        (
            claim.name,
            claim
                .sql
                .replacen("CREATE OR REPLACE FUNCTION", "CREATE OR REPLACE FUNCTON", 1),
        ),
    ]);
    let before = recorded(&db).await;

    let error = migrate_with(&db.url, broken).await.unwrap_err();
    assert!(
        matches!(&error, DbSetupError::Rule { name, .. } if name == claim.name),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(claim.name), "{message}");
    assert!(message.contains("syntax error"), "{message}");

    // The rule before it in the same run is not applied either, nor recorded.
    let comment = function_comment(&db, "webhook_configs_unchanged").await;
    assert!(comment.unwrap().starts_with("True when every config id"));
    assert_eq!(recorded(&db).await, before);
    // The embedded rules still find nothing to do.
    assert!(migrate(&db.url).await.unwrap().is_empty());
}
