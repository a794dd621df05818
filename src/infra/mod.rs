//! Everything that talks to the outside: PostgreSQL, the HTTP API, partner calls.

pub mod db;
pub mod http;
pub mod probe;
pub mod sender;
