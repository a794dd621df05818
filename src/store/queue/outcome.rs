//! The outcome write: a batch of attempts recorded in their rows' `retry_N_*` slots, each
//! with the row's next status, fenced on the claim (see [`super`]); and counted per partner,
//! which may trip, resume or pause partners (docs/api.md, "Partner health").

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{
    Array, Bool, Double, Int4, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::config::Secret;

use crate::domain::delivery::Status;
use crate::domain::event::EventType;
use crate::domain::partner::{PartnerState, StateReason, Verdict};
use crate::store::attempt_slots::{each_slot_column, ATTEMPT_SLOTS};
use crate::store::prepared::prepared;
use crate::store::queue::claim::ClaimedRow;
use crate::store::queue::release::Release;

/// The outcome of one attempt, ready to be written.
#[derive(Clone, Debug)]
pub struct AttemptWrite {
    pub id: i64,
    pub config_id: i64,
    /// What was called: the writer looks for the debit a completed credit may release.
    pub event_type: EventType,
    /// What the attempt says about the partner.
    pub verdict: Verdict,
    pub worker_id: String,
    pub locked_at: DateTime<Utc>,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub http_status: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    /// Completed, Pending (a retry is scheduled) or Failed.
    pub status: Status,
    pub retry_count: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// The global circuit settings the partners' counts are judged by.
#[derive(Clone, Copy, Debug)]
pub struct Circuit {
    /// Partner failures in a row that trip a partner without a threshold of its own.
    pub failure_threshold: i32,
    /// The first wait before a tripped partner's probe.
    pub probe_interval_ms: i64,
}

/// A partner whose state an outcome write changed.
#[derive(Clone, Debug)]
pub struct PartnerChange {
    pub config_id: i64,
    pub state: PartnerState,
    pub reason: Option<StateReason>,
    /// Its rows held after the change.
    pub held: i64,
}

/// What an outcome write did.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// The rows written; one missing had lost its lease, and nothing of it was changed.
    pub written: Vec<i64>,
    pub changes: Vec<PartnerChange>,
    /// Whether any debit waited for its credit as the write began: a credit it completed may
    /// have released one (money order).
    pub debits_waited: bool,
    /// Debits this write leased with their credits' completion, to be called now by the worker
    /// they are leased to (money order: see [`record_attempts`]).
    pub leased: Vec<LeasedDebit>,
}

/// A debit leased by the outcome write that completed its credit.
#[derive(Clone, Debug)]
pub struct LeasedDebit {
    pub row: ClaimedRow,
    /// The worker that called its credit, whose lease it now is.
    pub worker_id: String,
}

impl LeasedDebit {
    /// Its lease, to hand it back uncalled.
    pub fn lease(&self) -> Release {
        Release {
            id: self.row.id,
            worker_id: self.worker_id.clone(),
            locked_at: self.row.locked_at,
        }
    }
}

/// One line of the answer: a row written, a partner changed, that debits waited, or a debit
/// leased.
#[derive(QueryableByName)]
struct RecordedLine {
    #[diesel(sql_type = Nullable<Int8>)]
    leased_id: Option<i64>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    queue_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    event_type: Option<EventType>,
    #[diesel(sql_type = Nullable<Text>)]
    webhook_url: Option<String>,
    #[diesel(sql_type = Nullable<Int4>)]
    retry_count: Option<i32>,
    #[diesel(sql_type = Nullable<Int4>)]
    max_retries: Option<i32>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    locked_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    worker_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    signing_secret: Option<Secret>,
    #[diesel(sql_type = Nullable<Int8>)]
    retry_base_delay_ms: Option<i64>,
    #[diesel(sql_type = Nullable<Int8>)]
    retry_max_delay_ms: Option<i64>,
    #[diesel(sql_type = Nullable<Bool>)]
    debits_waited: Option<bool>,
    #[diesel(sql_type = Nullable<Int8>)]
    id: Option<i64>,
    #[diesel(sql_type = Nullable<Int8>)]
    config_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    changed_to: Option<PartnerState>,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<StateReason>,
    #[diesel(sql_type = Nullable<Int8>)]
    held: Option<i64>,
}

/// Writes a batch of attempt outcomes in one statement, and counts them per partner
/// (`webhook_partner_record`, sql/rules/04_partner_health.sql) in the same statement, so that a trip is seen
/// by every process at once.
///
/// While a partner is held (tripped or paused, by this statement or before), its rows do not
/// become due: a row whose attempt failed because of the partner (a partner failure, or 410)
/// costs its event nothing — it stays pending at the same attempt, whose slot keeps the
/// failure until the attempt is made again — and is held; a row whose own failure scheduled
/// a retry is held too. An event never ends `failed` because its partner was down: a partner
/// failure that would fail its event trips the partner instead when the partner's run of
/// failures is at least that event's attempts (`$18`; see `webhook_partner_record`).
///
/// Money order (docs/api.md, "Money order"): a debit held for a credit this write completes is leased, in the
/// same statement, to the worker that called the credit (for `lease`), and comes back in
/// [`Recorded::leased`] to be called once the write has committed: it goes out right after its
/// credit with one write instead of two (a release, then a claim), and never before the
/// credit's completion is durable. A debit of a partner that is held or has a `max_per_second`
/// is not leased: money order's update trigger makes it due, and the claim admits it. So is
/// one this statement cannot see (committed after its snapshot); and one committed after the
/// statement's end is settled by the recheck that follows its insert (`order::recheck`).
/// Each debit is found by its idempotency key, one probe per completed credit, written so that
/// no plan can walk the held rows instead (as money order's lookups are).
pub async fn record_attempts(
    conn: &mut AsyncPgConnection,
    writes: &[AttemptWrite],
    circuit: Circuit,
    lease: Duration,
) -> Result<Recorded, Error> {
    if writes.is_empty() {
        return Ok(Recorded::default());
    }
    let query = diesel::sql_query(RECORD_ATTEMPTS_SQL.as_str())
        .bind::<Array<Text>, _>(
            writes
                .iter()
                .map(|w| w.worker_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Int8>, _>(writes.iter().map(|w| w.id).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(writes.iter().map(|w| w.locked_at).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(writes.iter().map(|w| w.attempt).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(writes.iter().map(|w| w.started_at).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(writes.iter().map(|w| w.completed_at).collect::<Vec<_>>())
        .bind::<Array<Int8>, _>(writes.iter().map(|w| w.duration_ms).collect::<Vec<_>>())
        .bind::<Array<Nullable<Int4>>, _>(writes.iter().map(|w| w.http_status).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            writes
                .iter()
                .map(|w| w.response_body.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            writes.iter().map(|w| w.error.clone()).collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(writes.iter().map(|w| w.status.as_str()).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(writes.iter().map(|w| w.retry_count).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            writes.iter().map(|w| w.next_retry_at).collect::<Vec<_>>(),
        )
        .bind::<Array<Int8>, _>(writes.iter().map(|w| w.config_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            writes
                .iter()
                .map(|w| w.verdict.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Int4, _>(circuit.failure_threshold)
        .bind::<Int8, _>(circuit.probe_interval_ms)
        .bind::<Array<Nullable<Int4>>, _>(
            writes
                .iter()
                .map(|w| (w.status == Status::Failed).then_some(w.attempt + 1))
                .collect::<Vec<_>>(),
        )
        .bind::<Double, _>(lease.as_secs_f64());
    let lines: Vec<RecordedLine> = prepared(query).load(conn).await?;
    let mut recorded = Recorded::default();
    for line in lines {
        if line.debits_waited == Some(true) {
            recorded.debits_waited = true;
        }
        if let (Some(id), Some(queue_id), Some(event_type), Some(config_id)) = (
            line.leased_id,
            line.queue_id,
            line.event_type,
            line.config_id,
        ) {
            recorded.leased.push(LeasedDebit {
                row: ClaimedRow {
                    id,
                    queue_id,
                    event_type,
                    config_id,
                    webhook_url: line.webhook_url.unwrap_or_default(),
                    retry_count: line.retry_count.unwrap_or(0),
                    max_retries: line.max_retries.unwrap_or(0),
                    locked_at: line.locked_at.unwrap_or_default(),
                    signing_secret: line.signing_secret,
                    retry_base_delay_ms: line.retry_base_delay_ms,
                    retry_max_delay_ms: line.retry_max_delay_ms,
                    deferred_until: None,
                    left_behind: false,
                },
                worker_id: line.worker_id.unwrap_or_default(),
            });
            continue;
        }
        match (line.id, line.config_id, line.changed_to) {
            (Some(id), _, _) => recorded.written.push(id),
            (None, Some(config_id), Some(state)) => recorded.changes.push(PartnerChange {
                config_id,
                state,
                reason: line.reason,
                held: line.held.unwrap_or(0),
            }),
            _ => {}
        }
    }
    Ok(recorded)
}

/// The outcome write: the row's next status, and the attempt in the slot it names (every other
/// slot keeps its value). `$2` are the ids, by which the plan reaches the rows. `partner` counts
/// the batch per partner and gives each partner's hold reason after the count (`hold`); `free`
/// marks a partner failure while the partner is held, which spends no attempt. The last line
/// says whether debits waited (one probe of their partial index, empty when none do).
///
/// The rows are updated, and so locked, in id order: `v` is sorted, and every join of it with
/// the rows it names (whose index gives them in id order too) keeps that order. A money-order
/// recheck locks the credits its debits wait for in id order as well, and two statements that
/// lock rows in one order cannot deadlock. A join on top of `v` would reorder
/// the rows (a hash join with `partner` returns them newest first), hence `hold` as a subquery.
static RECORD_ATTEMPTS_SQL: LazyLock<String> = LazyLock::new(|| {
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
        "WITH partner AS (
             SELECT * FROM webhook_partner_record($14::int8[], $15::text[], $10::text[], $18::int4[], $16, $17)
         ), waited AS (
             -- Whether any debit waits at all: one probe of an empty partial index when none does.
             SELECT EXISTS (SELECT 1 FROM webhook_queue WHERE held_reason = 'waiting_for_credit' AND deleted_at IS NULL) AS yes
         ), written AS (
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
                     FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::int4[], $5::timestamptz[],
                                 $6::timestamptz[], $7::int8[], $8::int4[], $9::text[], $10::text[], $11::text[],
                                 $12::int4[], $13::timestamptz[], $14::int8[], $15::text[])
                          AS u(worker_id, id, locked_at, attempt, started_at, completed_at, duration_ms, http_status,
                               response_body, error, status, retry_count, next_retry_at, config_id, verdict)) w
               JOIN webhook_queue o ON o.id = w.id
               ORDER BY w.id) v
         WHERE q.id = ANY($2) AND q.id = v.id AND q.worker_id = v.worker_id AND q.locked_at = v.locked_at
           AND webhook_statement_counts_itself()
         RETURNING q.id, q.config_id, q.event_type, q.event_id, q.status, q.deleted_at, v.worker_id,
                   v.http_status, v.duration_ms, v.old_completed_at, v.old_http_status, v.old_duration_ms
         ), leased AS (
         UPDATE webhook_queue d SET
             status = 'processing', held_reason = NULL, worker_id = w.worker_id, locked_at = now(),
             lock_expires_at = now() + make_interval(secs => $19), next_retry_at = least(d.next_retry_at, now()),
             updated_at = now()
         FROM (SELECT k.id, w.worker_id
               FROM written w
               CROSS JOIN LATERAL (
                   SELECT q.id FROM webhook_queue q
                   WHERE q.config_id = w.config_id AND q.event_type = '-debit' AND q.event_id = w.event_id
                     AND q.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND q.deleted_at IS NULL
                   OFFSET 0) k
               WHERE w.event_type = '+credit' AND w.status = 'completed' AND w.event_id IS NOT NULL
                 AND (SELECT yes FROM waited)) w,
              webhook_configs c
         WHERE d.id = w.id AND d.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND d.deleted_at IS NULL
           AND c.id = d.config_id AND c.max_per_second IS NULL
           AND (SELECT h.held_reason FROM partner h WHERE h.config_id = d.config_id) IS NULL
         RETURNING d.id, d.queue_id, d.event_type, d.config_id, d.webhook_url, d.retry_count, d.max_retries,
                   d.locked_at, d.worker_id, c.signing_secret, c.retry_base_delay_ms, c.retry_max_delay_ms
         ), counted AS (
             -- Each written row leaves processing for its status (cancelled rows stay cancelled:
             -- their buckets cancel out) and each leased debit leaves pending for processing; the
             -- attempt's slot is counted anew, less what the slot held (a partner failure made
             -- again once its partner is back, see above).
             SELECT webhook_queue_counts_add(array_agg(m.config_id), array_agg(m.event_type),
                                             array_agg(m.bucket), array_agg(m.delta)),
                    webhook_attempt_counts_add(
                        (SELECT array_agg(a.http_status) FROM written a),
                        (SELECT array_agg(a.duration_ms) FROM written a),
                        (SELECT array_agg(1) FROM written a)),
                    webhook_attempt_counts_add(
                        (SELECT array_agg(a.old_http_status) FROM written a WHERE a.old_completed_at IS NOT NULL),
                        (SELECT array_agg(a.old_duration_ms) FROM written a WHERE a.old_completed_at IS NOT NULL),
                        (SELECT array_agg(-1) FROM written a WHERE a.old_completed_at IS NOT NULL)),
                    webhook_throughput_add((SELECT count(*) FROM written a WHERE a.status = 'completed'),
                                           (SELECT count(*) FROM written a WHERE a.status = 'failed'))
             FROM (SELECT w.config_id, w.event_type, webhook_count_bucket(b.status, w.deleted_at) AS bucket, b.delta
                   FROM written w
                   CROSS JOIN LATERAL (VALUES ('processing', -1::int8), (w.status, 1::int8)) AS b(status, delta)
                   UNION ALL
                   SELECT l.config_id, l.event_type, b.bucket, b.delta
                   FROM leased l CROSS JOIN (VALUES ('pending', -1::int8), ('processing', 1::int8)) AS b(bucket, delta)) m
         )
         SELECT id, NULL::int8 AS config_id, NULL::text AS changed_to, NULL::text AS reason, NULL::int8 AS held,
                NULL::bool AS debits_waited, NULL::int8 AS leased_id, NULL::uuid AS queue_id, NULL::text AS event_type,
                NULL::text AS webhook_url, NULL::int4 AS retry_count, NULL::int4 AS max_retries,
                NULL::timestamptz AS locked_at, NULL::text AS worker_id, NULL::text AS signing_secret,
                NULL::int8 AS retry_base_delay_ms, NULL::int8 AS retry_max_delay_ms
         -- counted only SELECTs, and PostgreSQL runs such a CTE only when the query reads it.
         FROM written LEFT JOIN counted ON true
         UNION ALL
         SELECT NULL, config_id, changed_to, reason, held, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL
         FROM partner WHERE changed_to IS NOT NULL
         UNION ALL
         SELECT NULL, NULL, NULL, NULL, NULL, true, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
         WHERE (SELECT yes FROM waited)
         UNION ALL
         SELECT NULL, config_id, NULL, NULL, NULL, NULL, id, queue_id, event_type, webhook_url, retry_count, max_retries,
                locked_at, worker_id, signing_secret, retry_base_delay_ms, retry_max_delay_ms
         FROM leased"
    )
});
