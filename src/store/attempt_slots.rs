//! The attempt slots of a queue row: attempt N of the current cycle is kept in the columns
//! `retry_N_*` of `webhook_queue`. The statements that write every slot are generated from
//! [`ATTEMPT_SLOTS`] and [`SLOT_FIELDS`]; [`models::QueueRow`](super::models::QueueRow)
//! declares the slots once, checked against the same constant. In SQL,
//! `webhook_queue_attempts` (sql/rules/02_counters.sql) reads them, and the UPDATE count
//! trigger names the three columns it needs of each.

use crate::domain::retry::MAX_RETRIES_LIMIT;

/// Attempts a cycle can hold: the first and up to [`MAX_RETRIES_LIMIT`] retries, one set of
/// `retry_N_*` columns each (the table's CHECKs allow `retry_count` up to the same limit).
pub const ATTEMPT_SLOTS: i32 = MAX_RETRIES_LIMIT + 1;

/// The columns of one slot, each `retry_N_{field}`; also the names of the attempt's fields
/// wherever a statement carries one attempt (`webhook_attempt_history`, the outcome write).
pub const SLOT_FIELDS: [&str; 6] = [
    "started_at",
    "completed_at",
    "duration_ms",
    "http_status",
    "response_body",
    "error",
];

/// `column(n, field)` for every column of every slot, in slot order, joined by `separator`.
/// For statements built once per process, never per call.
pub(crate) fn each_slot_column(column: impl Fn(i32, &str) -> String, separator: &str) -> String {
    (0..ATTEMPT_SLOTS)
        .flat_map(|n| SLOT_FIELDS.iter().map(move |field| (n, *field)))
        .map(|(n, field)| column(n, field))
        .collect::<Vec<_>>()
        .join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_of_every_slot_once_in_order() {
        let columns = each_slot_column(|n, field| format!("retry_{n}_{field}"), ",");
        let columns: Vec<&str> = columns.split(',').collect();
        assert_eq!(columns.len(), ATTEMPT_SLOTS as usize * SLOT_FIELDS.len());
        assert_eq!(columns[0], "retry_0_started_at");
        assert_eq!(columns[SLOT_FIELDS.len()], "retry_1_started_at");
        let last = format!("retry_{}_error", ATTEMPT_SLOTS - 1);
        assert_eq!(columns.last(), Some(&last.as_str()));
    }
}
