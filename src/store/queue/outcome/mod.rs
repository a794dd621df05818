//! The outcome write: a batch of attempts recorded in their rows' `retry_N_*` slots, each
//! with the row's next status, fenced on the claim (see [`super`]); and counted per partner,
//! which may trip, resume or pause partners (docs/api.md, "Partner health"). One statement
//! in named steps ([`statement`]), whose answer gives each step's result its own type
//! ([`Recorded`], read by [`answer`]).

mod answer;
mod statement;

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{Array, Double, Int4, Int8, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use self::answer::Line;
pub use self::answer::{LeasedDebit, PartnerChange, Recorded, Written};
use self::statement::RECORD_ATTEMPTS_SQL;
use crate::domain::delivery::Status;
use crate::domain::event::EventType;
use crate::domain::partner::Verdict;
use crate::store::prepared::prepared;

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

/// Writes a batch of attempt outcomes in one statement, and counts them per partner
/// (`webhook_partner_record`, sql/rules/04_partner_health.sql) in the same statement, so that
/// a trip is seen by every process at once.
///
/// While a partner is held (tripped or paused, by this statement or before), its rows do not
/// become due: a row whose attempt failed because of the partner (a partner failure, or 410)
/// costs its event nothing — it stays pending at the same attempt, whose slot keeps the
/// failure until the attempt is made again — and is held; a row whose own failure scheduled
/// a retry is held too. An event never ends `failed` because its partner was down: a partner
/// failure that would fail its event trips the partner instead when the partner's run of
/// failures is at least that event's attempts (`@exhausted`; see `webhook_partner_record`).
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
    let p = Params::of(writes);
    let query = diesel::sql_query(RECORD_ATTEMPTS_SQL.as_str())
        .bind::<Array<Text>, _>(p.worker_ids)
        .bind::<Array<Int8>, _>(p.ids)
        .bind::<Array<Timestamptz>, _>(p.locked_ats)
        .bind::<Array<Int4>, _>(p.attempts)
        .bind::<Array<Timestamptz>, _>(p.started_ats)
        .bind::<Array<Timestamptz>, _>(p.completed_ats)
        .bind::<Array<Int8>, _>(p.durations_ms)
        .bind::<Array<Nullable<Int4>>, _>(p.http_statuses)
        .bind::<Array<Nullable<Text>>, _>(p.response_bodies)
        .bind::<Array<Nullable<Text>>, _>(p.errors)
        .bind::<Array<Text>, _>(p.statuses)
        .bind::<Array<Int4>, _>(p.retry_counts)
        .bind::<Array<Nullable<Timestamptz>>, _>(p.next_retry_ats)
        .bind::<Array<Int8>, _>(p.config_ids)
        .bind::<Array<Text>, _>(p.verdicts)
        .bind::<Int4, _>(circuit.failure_threshold)
        .bind::<Int8, _>(circuit.probe_interval_ms)
        .bind::<Array<Nullable<Int4>>, _>(p.exhausted)
        .bind::<Double, _>(lease.as_secs_f64());
    let lines: Vec<Line> = prepared(query).load(conn).await?;
    Ok(lines.into_iter().collect())
}

/// The batch as the statement's array parameters, one element per write, named as
/// `statement` names them.
struct Params<'a> {
    worker_ids: Vec<&'a str>,
    ids: Vec<i64>,
    locked_ats: Vec<DateTime<Utc>>,
    attempts: Vec<i32>,
    started_ats: Vec<DateTime<Utc>>,
    completed_ats: Vec<DateTime<Utc>>,
    durations_ms: Vec<i64>,
    http_statuses: Vec<Option<i32>>,
    response_bodies: Vec<Option<&'a str>>,
    errors: Vec<Option<&'a str>>,
    statuses: Vec<&'static str>,
    retry_counts: Vec<i32>,
    next_retry_ats: Vec<Option<DateTime<Utc>>>,
    config_ids: Vec<i64>,
    verdicts: Vec<&'static str>,
    /// For a write that would end its row failed, the row's attempts; else null.
    exhausted: Vec<Option<i32>>,
}

impl<'a> Params<'a> {
    fn of(writes: &'a [AttemptWrite]) -> Self {
        Self {
            worker_ids: writes.iter().map(|w| w.worker_id.as_str()).collect(),
            ids: writes.iter().map(|w| w.id).collect(),
            locked_ats: writes.iter().map(|w| w.locked_at).collect(),
            attempts: writes.iter().map(|w| w.attempt).collect(),
            started_ats: writes.iter().map(|w| w.started_at).collect(),
            completed_ats: writes.iter().map(|w| w.completed_at).collect(),
            durations_ms: writes.iter().map(|w| w.duration_ms).collect(),
            http_statuses: writes.iter().map(|w| w.http_status).collect(),
            response_bodies: writes.iter().map(|w| w.response_body.as_deref()).collect(),
            errors: writes.iter().map(|w| w.error.as_deref()).collect(),
            statuses: writes.iter().map(|w| w.status.as_str()).collect(),
            retry_counts: writes.iter().map(|w| w.retry_count).collect(),
            next_retry_ats: writes.iter().map(|w| w.next_retry_at).collect(),
            config_ids: writes.iter().map(|w| w.config_id).collect(),
            verdicts: writes.iter().map(|w| w.verdict.as_str()).collect(),
            exhausted: writes
                .iter()
                .map(|w| (w.status == Status::Failed).then_some(w.attempt + 1))
                .collect(),
        }
    }
}
