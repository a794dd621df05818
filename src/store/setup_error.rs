//! Why a connection, a pool or the migrations could not be set up.

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("database URL is not valid: {0}")]
    Url(String),
    #[error("database TLS: {0}")]
    Tls(String),
    #[error("migration failed: {0}")]
    Migration(String),
    /// A rule of `sql/rules/` did not apply; no rule was changed.
    #[error("rule sql/rules/{name} failed, so no rule was applied: {cause}")]
    Rule { name: String, cause: String },
    #[error("{0}")]
    Query(#[from] diesel::result::Error),
}
