//! The outcome write's answer, read back: each line is one step's result, named by its
//! `step` (see `statement`), and becomes that step's own type; [`Recorded`] gathers them.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Int4, Int8, Json, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use uuid::Uuid;

use crate::domain::delivery::Status;
use crate::domain::event::EventType;
use crate::domain::partner::{PartnerState, StateReason};
use crate::store::queue::claim::ClaimedRow;
use crate::store::queue::release::Release;

/// A partner whose state an outcome write changed.
#[derive(Clone, Debug)]
pub struct PartnerChange {
    pub config_id: i64,
    pub state: PartnerState,
    pub reason: Option<StateReason>,
    /// Its rows held after the change.
    pub held: i64,
}

/// A row an outcome write wrote, and the status it wrote: a partner failure while its partner
/// is held leaves the row pending, whatever the attempt asked.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    pub id: i64,
    pub status: Status,
}

/// What an outcome write did.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// The rows written; one missing had lost its lease, and nothing of it was changed.
    pub written: Vec<Written>,
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

/// One line of the answer, as it comes: the columns a step does not fill are null.
#[derive(QueryableByName)]
pub(super) struct Line {
    #[diesel(sql_type = Text)]
    step: String,
    #[diesel(sql_type = Nullable<Int8>)]
    id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<Status>,
    #[diesel(sql_type = Nullable<Int8>)]
    config_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    changed_to: Option<PartnerState>,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<StateReason>,
    #[diesel(sql_type = Nullable<Int8>)]
    held: Option<i64>,
    #[diesel(sql_type = Nullable<Int8>)]
    leased_id: Option<i64>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    queue_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    event_type: Option<EventType>,
    #[diesel(sql_type = Nullable<Text>)]
    webhook_url: Option<String>,
    #[diesel(sql_type = Nullable<Json>)]
    request: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Int4>)]
    retry_count: Option<i32>,
    #[diesel(sql_type = Nullable<Int4>)]
    max_retries: Option<i32>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    locked_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    worker_id: Option<String>,
    #[diesel(sql_type = Nullable<Int8>)]
    config_version: Option<i64>,
    #[diesel(sql_type = Nullable<Int8>)]
    retry_base_delay_ms: Option<i64>,
    #[diesel(sql_type = Nullable<Int8>)]
    retry_max_delay_ms: Option<i64>,
}

/// What one step reports.
enum StepResult {
    /// Step 3: this row was written (a row of the batch without a line had lost its lease).
    Written(Written),
    /// Step 1: this partner's state changed.
    PartnerChanged(PartnerChange),
    /// Step 2: debits waited for their credits as the write began.
    DebitsWaited,
    /// Step 4: this debit was leased with its credit's completion.
    Leased(Box<LeasedDebit>),
}

impl Line {
    fn result(self) -> StepResult {
        match self.step.as_str() {
            "written" => StepResult::Written(Written {
                id: self.id.unwrap_or_default(),
                status: self.status.unwrap_or(Status::Pending),
            }),
            "partner_changed" => StepResult::PartnerChanged(PartnerChange {
                config_id: self.config_id.unwrap_or_default(),
                state: self.changed_to.unwrap_or(PartnerState::Active),
                reason: self.reason,
                held: self.held.unwrap_or(0),
            }),
            "debits_waited" => StepResult::DebitsWaited,
            "leased" => StepResult::Leased(Box::new(self.leased_debit())),
            other => unreachable!("the outcome write has no step {other:?}"),
        }
    }

    fn leased_debit(self) -> LeasedDebit {
        LeasedDebit {
            row: ClaimedRow {
                id: self.leased_id.unwrap_or_default(),
                queue_id: self.queue_id.unwrap_or_default(),
                event_type: self.event_type.unwrap_or(EventType::Debit),
                config_id: self.config_id.unwrap_or_default(),
                webhook_url: self.webhook_url.unwrap_or_default(),
                retry_count: self.retry_count.unwrap_or(0),
                max_retries: self.max_retries.unwrap_or(0),
                locked_at: self.locked_at.unwrap_or_default(),
                config_version: self.config_version.unwrap_or_default(),
                request: self.request,
                retry_base_delay_ms: self.retry_base_delay_ms,
                retry_max_delay_ms: self.retry_max_delay_ms,
                deferred_until: None,
                left_behind: false,
            },
            worker_id: self.worker_id.unwrap_or_default(),
        }
    }
}

impl FromIterator<Line> for Recorded {
    fn from_iter<I: IntoIterator<Item = Line>>(lines: I) -> Self {
        let mut recorded = Recorded::default();
        for line in lines {
            match line.result() {
                StepResult::Written(row) => recorded.written.push(row),
                StepResult::PartnerChanged(change) => recorded.changes.push(change),
                StepResult::DebitsWaited => recorded.debits_waited = true,
                StepResult::Leased(debit) => recorded.leased.push(*debit),
            }
        }
        recorded
    }
}
