//! One call made for an entry, as it is recorded: in the entry's `retry_N_*` slots while its
//! cycle is current, in the attempt history once a manual retry or a redrive began another.

use chrono::{DateTime, Utc};

/// One call made for an entry, of the current retry cycle or an earlier one.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// The retry cycle: 0 for the first, one more after each manual retry or redrive.
    pub cycle: i32,
    /// The attempt's number within its cycle (the N of `retry_N_*`).
    pub attempt: i32,
    pub started_at: Option<DateTime<Utc>>,
    /// `None` while the attempt is in flight.
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// The partner's HTTP status; `None` when no answer came (timeout, connection refused …).
    pub http_status: Option<i32>,
    /// The partner's answer body, cut at the configured response body limit.
    pub response_body: Option<String>,
    /// Why the attempt failed; `None` when it succeeded.
    pub error: Option<String>,
}

impl Attempt {
    /// Whether the slot it was read from was ever used: an attempt is made with its start.
    pub fn was_made(&self) -> bool {
        self.started_at.is_some()
    }
}
