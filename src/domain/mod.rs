//! Pure domain rules: no database, HTTP framework, HTTP client or logger in here.

pub mod attempt;
pub mod call_settings;
pub mod delivery;
pub mod event;
pub mod header_template;
pub mod name;
pub mod order;
pub mod outbound;
pub mod partner;
pub mod partner_delay;
pub mod placeholders;
pub mod redact;
pub mod request_template;
pub mod retry;
pub mod signing;
pub mod url_template;
