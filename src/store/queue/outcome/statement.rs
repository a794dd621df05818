//! The outcome write's one statement, step by step. Each step is a CTE whose result the next
//! ones read, and the answer gives each step's result a line of its own, tagged with the step
//! (`step`):
//!
//! 1. [`COUNT_PER_PARTNER`] (`partner`): the batch's verdicts counted per partner, which may
//!    trip, resume or pause partners; each partner's hold after the count. Answer: one
//!    `partner_changed` line per partner whose state changed.
//! 2. [`DEBITS_WAITED`] (`waited`): whether any debit waits for its credit. Answer: one
//!    `debits_waited` line when one does.
//! 3. [`write_slots`] (`written`): each row's next status and the attempt in its slot, fenced
//!    on the claim. Answer: one `written` line per row written.
//! 4. [`LEASE_DEBITS`] (`leased`): the debits of the credits step 3 completed, leased to the
//!    worker that called the credit. Answer: one `leased` line per debit.
//! 5. [`COUNT`] (`counted`): the counters, moved by what step 3 did.
//!
//! The parameters are named here (`@ids` …) and numbered in [`PARAMS`]' order, the order
//! `super::record_attempts` binds them in.

use std::sync::LazyLock;

use crate::store::attempt_slots::{each_slot_column, ATTEMPT_SLOTS};

/// The statement's parameters, in bind order: `@name` in the steps is `$n`.
const PARAMS: [&str; 19] = [
    "worker_ids",
    "ids",
    "locked_ats",
    "attempts",
    "started_ats",
    "completed_ats",
    "durations_ms",
    "http_statuses",
    "response_bodies",
    "errors",
    "statuses",
    "retry_counts",
    "next_retry_ats",
    "config_ids",
    "verdicts",
    "default_threshold",
    "probe_interval_ms",
    "exhausted",
    "lease_secs",
];

/// Step 1: the batch counted per partner (`webhook_partner_record`, which
/// sql/rules/04_partner_health.sql defines); `exhausted` is, for a row a partner failure would
/// end failed, its attempts.
const COUNT_PER_PARTNER: &str = "SELECT * FROM webhook_partner_record(@config_ids::int8[], @verdicts::text[], @errors::text[], @exhausted::int4[], @default_threshold, @probe_interval_ms)";

/// Step 2: one probe of an empty partial index when no debit waits.
const DEBITS_WAITED: &str = "
             -- Whether any debit waits at all: one probe of an empty partial index when none does.
             SELECT EXISTS (SELECT 1 FROM webhook_queue WHERE held_reason = 'waiting_for_credit' AND deleted_at IS NULL) AS yes
         ";

/// Step 3: the row's next status, and the attempt in the slot it names (every other slot keeps
/// its value). The plan reaches the rows by `@ids`. `hold` is each row's partner's hold after
/// step 1; `free` marks a partner failure while the partner is held, which spends no attempt:
/// the row stays pending at the same attempt. The old value of the written slot comes back
/// for step 5.
///
/// The rows are locked in id order: `v` locks them (`FOR UPDATE OF o`) after sorting, before
/// the update reaches them in whatever order its join takes (a generic plan hash-joins them in
/// the heap's order). A money-order recheck locks the credits its debits wait for in id order
/// as well, and two statements that lock rows in one order cannot deadlock. A join on top of
/// `v` would reorder the rows (a hash join with `partner` returns them newest first), hence
/// `hold` as a subquery.
fn write_slots() -> String {
    let old_slot = ["completed_at", "http_status", "duration_ms"]
        .map(|field| {
            let each = (0..ATTEMPT_SLOTS)
                .map(|n| format!("WHEN {n} THEN o.retry_{n}_{field}"))
                .collect::<Vec<_>>()
                .join(" ");
            format!("CASE w.attempt {each} END AS old_{field}")
        })
        .join(",\n                      ");
    let slots = each_slot_column(
        |n, field| {
            format!("retry_{n}_{field} = CASE WHEN v.attempt = {n} THEN v.{field} ELSE q.retry_{n}_{field} END")
        },
        ",\n             ",
    );
    format!(
        "
         UPDATE webhook_queue q SET
             status = CASE WHEN v.free THEN 'pending' ELSE v.status END,
             retry_count = CASE WHEN v.free THEN v.attempt ELSE v.retry_count END,
             next_retry_at = CASE WHEN v.free THEN q.next_retry_at ELSE coalesce(v.next_retry_at, q.next_retry_at) END,
             completed_at = CASE WHEN v.status = 'completed' THEN v.completed_at ELSE q.completed_at END,
             locked_at = NULL,
             lock_expires_at = NULL,
             updated_at = now(),
             {slots}
         FROM (SELECT w.*, w.hold IS NOT NULL AND w.verdict IN ('down', 'gone') AS free,
                      {old_slot}
               FROM (SELECT u.*, (SELECT h.held_reason FROM partner h WHERE h.config_id = u.config_id) AS hold
                     FROM unnest(@worker_ids::text[], @ids::int8[], @locked_ats::timestamptz[], @attempts::int4[], @started_ats::timestamptz[],
                                 @completed_ats::timestamptz[], @durations_ms::int8[], @http_statuses::int4[], @response_bodies::text[], @errors::text[], @statuses::text[],
                                 @retry_counts::int4[], @next_retry_ats::timestamptz[], @config_ids::int8[], @verdicts::text[])
                          AS u(worker_id, id, locked_at, attempt, started_at, completed_at, duration_ms, http_status,
                               response_body, error, status, retry_count, next_retry_at, config_id, verdict)) w
               JOIN webhook_queue o ON o.id = w.id
               ORDER BY w.id
               FOR UPDATE OF o) v
         WHERE q.id = ANY(@ids) AND q.id = v.id AND q.worker_id = v.worker_id AND q.locked_at = v.locked_at
           AND webhook_statement_counts_itself()
         RETURNING q.id, q.config_id, q.event_type, q.event_id, q.status, q.deleted_at, v.worker_id,
                   v.http_status, v.duration_ms, v.old_completed_at, v.old_http_status, v.old_duration_ms
         "
    )
}

/// Step 4 (money order): the debit held for each credit step 3 completed, found by its
/// idempotency key (one probe per credit, written so that no plan can walk the held rows
/// instead) and locked in id order as money order's settle locks debits, leased for
/// `@lease_secs` to the worker that called the credit; not a debit of a
/// partner that is held or has a `max_per_second` (the update trigger makes those due, and the
/// claim admits them).
const LEASE_DEBITS: &str = "
         UPDATE webhook_queue d SET
             status = 'processing', held_reason = NULL, worker_id = w.worker_id, locked_at = now(),
             lock_expires_at = now() + make_interval(secs => @lease_secs), next_retry_at = least(d.next_retry_at, now()),
             updated_at = now()
         FROM (SELECT k.id, w.worker_id
               FROM written w
               CROSS JOIN LATERAL (
                   SELECT q.id FROM webhook_queue q
                   WHERE q.config_id = w.config_id AND q.event_type = '-debit' AND q.event_id = w.event_id
                     AND q.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND q.deleted_at IS NULL
                   OFFSET 0) k
               JOIN webhook_queue l ON l.id = k.id
               WHERE w.event_type = '+credit' AND w.status = 'completed' AND w.event_id IS NOT NULL
                 AND (SELECT yes FROM waited)
               ORDER BY k.id
               FOR UPDATE OF l) w,
              webhook_configs c
         WHERE d.id = w.id AND d.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND d.deleted_at IS NULL
           AND c.id = d.config_id AND c.max_per_second IS NULL
           AND (SELECT h.held_reason FROM partner h WHERE h.config_id = d.config_id) IS NULL
         RETURNING d.id, d.queue_id, d.event_type, d.config_id, d.webhook_url, d.request, d.retry_count, d.max_retries,
                   d.locked_at, d.worker_id, c.xmin::text::int8 AS config_version, c.retry_base_delay_ms, c.retry_max_delay_ms
         ";

/// Step 5: the statement counts itself (sql/rules/01_statement_markers.sql), so the count
/// trigger stands aside for it. Rows settled per second are not counted here: the writer adds
/// them once a second (`application::engine::throughput`).
const COUNT: &str = "
             -- Each written row leaves processing for its status (cancelled rows stay cancelled:
             -- their buckets cancel out); a leased debit moves from pending to processing, which
             -- share a counter. The attempt's slot is counted anew, less what the slot held (a
             -- partner failure made again once its partner is back, see above).
             SELECT webhook_queue_counts_add(array_agg(m.config_id), array_agg(m.event_type),
                                             array_agg(m.bucket), array_agg(m.delta)),
                    webhook_attempt_counts_add(
                        (SELECT array_agg(a.http_status) FROM written a),
                        (SELECT array_agg(a.duration_ms) FROM written a),
                        (SELECT array_agg(1) FROM written a)),
                    webhook_attempt_counts_add(
                        (SELECT array_agg(a.old_http_status) FROM written a WHERE a.old_completed_at IS NOT NULL),
                        (SELECT array_agg(a.old_duration_ms) FROM written a WHERE a.old_completed_at IS NOT NULL),
                        (SELECT array_agg(-1) FROM written a WHERE a.old_completed_at IS NOT NULL))
             FROM (SELECT w.config_id, w.event_type, webhook_count_bucket(b.status, w.deleted_at) AS bucket, b.delta
                   FROM written w
                   CROSS JOIN LATERAL (VALUES ('processing', -1::int8), (w.status, 1::int8)) AS b(status, delta)) m
         ";

/// The answer: each step's result as lines of its own, named by `step`
/// (`super::answer::Step`); a column a step does not fill is null.
const ANSWER: &str = "
         SELECT 'written' AS step, id, status, NULL::int8 AS config_id, NULL::text AS changed_to, NULL::text AS reason, NULL::int8 AS held,
                NULL::int8 AS leased_id, NULL::uuid AS queue_id, NULL::text AS event_type,
                NULL::text AS webhook_url, NULL::json AS request, NULL::int4 AS retry_count, NULL::int4 AS max_retries,
                NULL::timestamptz AS locked_at, NULL::text AS worker_id, NULL::int8 AS config_version,
                NULL::int8 AS retry_base_delay_ms, NULL::int8 AS retry_max_delay_ms
         -- counted only SELECTs, and PostgreSQL runs such a CTE only when the query reads it.
         FROM written LEFT JOIN counted ON true
         UNION ALL
         SELECT 'partner_changed', NULL, NULL, config_id, changed_to, reason, held, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL
         FROM partner WHERE changed_to IS NOT NULL
         UNION ALL
         SELECT 'debits_waited', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
         WHERE (SELECT yes FROM waited)
         UNION ALL
         SELECT 'leased', NULL, NULL, config_id, NULL, NULL, NULL, id, queue_id, event_type, webhook_url, request, retry_count, max_retries,
                locked_at, worker_id, config_version, retry_base_delay_ms, retry_max_delay_ms
         FROM leased";

/// The statement: the steps in order, then the answer.
pub(super) static RECORD_ATTEMPTS_SQL: LazyLock<String> = LazyLock::new(|| {
    numbered(&format!(
        "WITH partner AS (
             {COUNT_PER_PARTNER}
         ), waited AS ({DEBITS_WAITED}), written AS ({written}), leased AS ({LEASE_DEBITS}), counted AS ({COUNT}){ANSWER}",
        written = write_slots(),
    ))
});

/// `sql` with each `@name` of [`PARAMS`] replaced by its `$n`.
fn numbered(sql: &str) -> String {
    let mut by_length: Vec<(usize, &str)> = PARAMS.iter().copied().enumerate().collect();
    // A name that begins another (`ids`, `idsx`) must not eat it.
    by_length.sort_by_key(|(_, name)| std::cmp::Reverse(name.len()));
    let mut sql = sql.to_string();
    for (i, name) in by_length {
        sql = sql.replace(&format!("@{name}"), &format!("${}", i + 1));
    }
    assert!(!sql.contains('@'), "every parameter is named in PARAMS");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_numbered_and_used() {
        let sql = RECORD_ATTEMPTS_SQL.as_str();
        for n in 1..=PARAMS.len() {
            assert!(sql.contains(&format!("${n}")), "${n} is used");
        }
        assert!(!sql.contains(&format!("${}", PARAMS.len() + 1)));
    }
}
