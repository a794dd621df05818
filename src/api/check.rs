//! `GET /webhooks/check`: the queue's invariants as last checked, the console's warning; the
//! same document as `webhookd check --json`.

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::common::ServerErrors;
use super::state::{Reply, State};
use crate::application::check::{CheckReport, Invariants, Violations};

/// What breaks one invariant.
#[derive(Serialize, ToSchema)]
#[schema(as = Violations)]
pub struct ViolationsView {
    /// Queue rows breaking it (partners for `tripped_without_probe`, counter cells for
    /// `counters_drift`); 0 when it holds.
    pub count: i64,
    /// Up to 5 of them: queue ids, config ids, or a line per counter cell.
    pub examples: Vec<String>,
    /// False when finding them took longer than `QUERY_TIMEOUT` (counting the counters of a
    /// queue of many millions of rows can): `count` is then 0 and says nothing.
    pub checked: bool,
}

impl From<&Violations> for ViolationsView {
    fn from(v: &Violations) -> Self {
        Self {
            count: v.count,
            examples: v.examples.clone(),
            checked: v.checked,
        }
    }
}

/// Every invariant, always present (docs/operations.md, "Invariants and `webhookd check`").
#[derive(Serialize, ToSchema)]
#[schema(as = Invariants)]
pub struct InvariantsView {
    /// `-debit`s waiting for a `+credit` that completed, was cancelled or is gone.
    pub stale_credit_wait: ViolationsView,
    /// Processing rows without a lease, which no claim would take back.
    pub processing_without_lease: ViolationsView,
    /// Tripped partners without a probe time.
    pub tripped_without_probe: ViolationsView,
    /// Statistics counter cells (partner, event type, bucket) that differ from the queue.
    pub counters_drift: ViolationsView,
}

impl From<&Invariants> for InvariantsView {
    fn from(i: &Invariants) -> Self {
        Self {
            stale_credit_wait: (&i.stale_credit_wait).into(),
            processing_without_lease: (&i.processing_without_lease).into(),
            tripped_without_probe: (&i.tripped_without_probe).into(),
            counters_drift: (&i.counters_drift).into(),
        }
    }
}

/// The invariants' check. Every field is always present.
#[derive(Serialize, ToSchema)]
#[schema(as = CheckReport)]
pub struct CheckView {
    /// True when every invariant was checked and holds.
    pub ok: bool,
    /// How many invariants are broken.
    #[schema(minimum = 0, maximum = 4)]
    pub broken: usize,
    /// How many invariants could not be checked within `QUERY_TIMEOUT`.
    #[schema(minimum = 0, maximum = 4)]
    pub unchecked: usize,
    /// RFC 3339 UTC: when the check ran (at most `RETENTION_INTERVAL` ago).
    #[schema(format = DateTime)]
    pub checked_at: String,
    pub invariants: InvariantsView,
}

impl From<&CheckReport> for CheckView {
    fn from(r: &CheckReport) -> Self {
        Self {
            ok: r.ok,
            broken: r.broken,
            unchecked: r.unchecked,
            checked_at: r.checked_at.clone(),
            invariants: (&r.invariants).into(),
        }
    }
}

#[utoipa::path(get, path = "/webhooks/check", tag = "operations",
    responses((status = 200, description = "The queue's invariants as last checked (at most RETENTION_INTERVAL ago; \
        the check counts the whole queue, so it is not run per request)", body = CheckView), ServerErrors))]
pub(super) async fn get_check(state: State) -> Reply {
    let report = state.checks.latest().await?;
    Ok(HttpResponse::Ok().json(CheckView::from(report.as_ref())))
}
