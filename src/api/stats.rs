//! `/webhooks/stats` and `/webhooks/throughput`: the statistics document and completions over
//! time — the handlers, the query they read and the views they answer with.

use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::common::ServerErrors;
use super::errors::ErrorBody;
use super::state::{Reply, State};
use crate::application::stats::{
    self, AttemptStats, ByEventType, HeldCounts, PartnerStats, StatsDocument, StatusCounts,
    Throughput, ThroughputBucket, MAX_THROUGHPUT_BUCKET_SECONDS, MAX_THROUGHPUT_MINUTES,
};
use crate::application::AppError;

// utoipa's param attributes take number literals only, so the limits `ThroughputQuery` states
// are checked here against the constants that enforce them.
const _: () = assert!(
    MAX_THROUGHPUT_MINUTES == 1440 && MAX_THROUGHPUT_BUCKET_SECONDS == 3600,
    "a limit changed: change the documented one in api/stats.rs too"
);

/// `GET /webhooks/throughput` window and bucket width.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThroughputQuery {
    /// How far back to look; default 15.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1440, example = 60)]
    pub minutes: i64,
    /// Width of a bucket; default 1.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 3600, example = 60)]
    pub bucket_seconds: i64,
}

impl ThroughputQuery {
    /// Reads `?minutes=` and `?bucket_seconds=`.
    fn parse(query: &str) -> Result<Self, AppError> {
        let mut window = Self {
            minutes: 15,
            bucket_seconds: 1,
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let (slot, max) = match key.as_ref() {
                "minutes" => (&mut window.minutes, MAX_THROUGHPUT_MINUTES),
                "bucket_seconds" => (&mut window.bucket_seconds, MAX_THROUGHPUT_BUCKET_SECONDS),
                _ => return Err(AppError::invalid(key, "is not a known parameter")),
            };
            *slot = value
                .parse()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    AppError::invalid(
                        key.to_string(),
                        format!("must be an integer from 1 to {max}"),
                    )
                })?;
        }
        Ok(window)
    }
}

/// Counts of rows in each status; every status is always present.
#[derive(Serialize, ToSchema)]
#[schema(as = StatusCounts)]
pub struct StatusCountsView {
    pub pending: i64,
    pub processing: i64,
    pub completed: i64,
    pub failed: i64,
}

impl From<&StatusCounts> for StatusCountsView {
    fn from(c: &StatusCounts) -> Self {
        Self {
            pending: c.pending,
            processing: c.processing,
            completed: c.completed,
            failed: c.failed,
        }
    }
}

/// Pending entries held (not called now, spending no attempt), by reason; every reason is
/// always present.
#[derive(Serialize, ToSchema)]
#[schema(as = HeldCounts)]
pub struct HeldCountsView {
    /// Their partner was paused.
    pub partner_paused: i64,
    /// Their partner failed too often in a row.
    pub partner_tripped: i64,
    /// `-debit`s waiting for their `+credit` to complete (money order).
    pub waiting_for_credit: i64,
}

impl From<&HeldCounts> for HeldCountsView {
    fn from(h: &HeldCounts) -> Self {
        Self {
            partner_paused: h.partner_paused,
            partner_tripped: h.partner_tripped,
            waiting_for_credit: h.waiting_for_credit,
        }
    }
}

/// Counts per event type, both always present.
#[derive(Serialize, ToSchema)]
#[schema(as = ByEventType)]
pub struct ByEventTypeView {
    #[serde(rename = "+credit")]
    pub credit: StatusCountsView,
    #[serde(rename = "-debit")]
    pub debit: StatusCountsView,
}

impl From<&ByEventType> for ByEventTypeView {
    fn from(b: &ByEventType) -> Self {
        Self {
            credit: (&b.credit).into(),
            debit: (&b.debit).into(),
        }
    }
}

/// Attempts recorded, of every retry cycle. Every field is always present, null where no
/// attempt was made.
#[derive(Serialize, ToSchema)]
#[schema(as = AttemptStats)]
pub struct AttemptStatsView {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    #[schema(required)]
    pub avg_duration_ms: Option<f64>,
    /// Percentiles come from a histogram whose buckets keep two significant digits of the
    /// duration, so they are exact below 100 ms and within 5% above.
    #[schema(required)]
    pub p50_duration_ms: Option<i64>,
    #[schema(required)]
    pub p95_duration_ms: Option<i64>,
    #[schema(required)]
    pub p99_duration_ms: Option<i64>,
}

impl From<&AttemptStats> for AttemptStatsView {
    fn from(a: &AttemptStats) -> Self {
        Self {
            total: a.total,
            succeeded: a.succeeded,
            failed: a.failed,
            avg_duration_ms: a.avg_duration_ms,
            p50_duration_ms: a.p50_duration_ms,
            p95_duration_ms: a.p95_duration_ms,
            p99_duration_ms: a.p99_duration_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = PartnerStats)]
pub struct PartnerStatsView {
    pub config_id: i64,
    pub name: String,
    pub by_status: StatusCountsView,
    pub cancelled: i64,
    /// completed ÷ (completed + failed); null when both are 0.
    #[schema(required)]
    pub success_rate: Option<f64>,
    /// The partner's delivery state: `active`, `paused` or `tripped` (docs/api.md, "Partner health").
    #[schema(example = "active")]
    pub state: &'static str,
    /// Why it is not active (`operator`, `gone`, `failures`); null while active.
    #[schema(required)]
    pub reason: Option<&'static str>,
    /// Pending events held because of the state (counted in `by_status.pending` too).
    pub held: i64,
}

impl From<&PartnerStats> for PartnerStatsView {
    fn from(p: &PartnerStats) -> Self {
        Self {
            config_id: p.config_id,
            name: p.name.clone(),
            by_status: (&p.by_status).into(),
            cancelled: p.cancelled,
            success_rate: p.success_rate,
            state: p.state.as_str(),
            reason: p.reason.map(|r| r.as_str()),
            held: p.held,
        }
    }
}

/// The statistics document (docs/api.md, "Statistics"). Every field is always present, null where noted.
#[derive(Serialize, ToSchema)]
#[schema(as = StatsDocument)]
pub struct StatsView {
    /// Rows not cancelled: the sum of `by_status`.
    pub total: i64,
    /// Cancelled rows excluded.
    pub by_status: StatusCountsView,
    pub cancelled: i64,
    /// Pending entries held, by reason (counted in `by_status.pending` too).
    pub held: HeldCountsView,
    pub by_event_type: ByEventTypeView,
    /// completed ÷ (completed + failed); null when both are 0.
    #[schema(required)]
    pub success_rate: Option<f64>,
    pub attempts: AttemptStatsView,
    /// Null when nothing is pending.
    #[schema(required)]
    pub oldest_pending_age_seconds: Option<f64>,
    pub completed_last_minute: i64,
    pub failed_last_minute: i64,
    /// One per config that has rows, by config id.
    pub by_partner: Vec<PartnerStatsView>,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub generated_at: String,
}

impl From<&StatsDocument> for StatsView {
    fn from(d: &StatsDocument) -> Self {
        Self {
            total: d.total,
            by_status: (&d.by_status).into(),
            cancelled: d.cancelled,
            held: (&d.held).into(),
            by_event_type: (&d.by_event_type).into(),
            success_rate: d.success_rate,
            attempts: (&d.attempts).into(),
            oldest_pending_age_seconds: d.oldest_pending_age_seconds,
            completed_last_minute: d.completed_last_minute,
            failed_last_minute: d.failed_last_minute,
            by_partner: d.by_partner.iter().map(Into::into).collect(),
            generated_at: d.generated_at.clone(),
        }
    }
}

/// Rows that reached `completed` or `failed` in one bucket of time.
#[derive(Serialize, ToSchema)]
#[schema(as = ThroughputBucket)]
pub struct ThroughputBucketView {
    /// The bucket's first second.
    #[schema(format = DateTime)]
    pub second: String,
    pub completed: i64,
    pub failed: i64,
}

impl From<&ThroughputBucket> for ThroughputBucketView {
    fn from(b: &ThroughputBucket) -> Self {
        Self {
            second: b.second.clone(),
            completed: b.completed,
            failed: b.failed,
        }
    }
}

/// `GET /webhooks/throughput`: completions and failures over a window, in buckets of
/// `bucket_seconds` aligned to the Unix epoch; buckets in which nothing finished are left out.
#[derive(Serialize, ToSchema)]
#[schema(as = Throughput)]
pub struct ThroughputView {
    /// The start of the first bucket.
    #[schema(format = DateTime)]
    pub since: String,
    #[schema(format = DateTime)]
    pub until: String,
    pub bucket_seconds: i64,
    /// Totals over the window.
    pub completed: i64,
    pub failed: i64,
    /// Oldest first.
    pub points: Vec<ThroughputBucketView>,
}

impl From<&Throughput> for ThroughputView {
    fn from(t: &Throughput) -> Self {
        Self {
            since: t.since.clone(),
            until: t.until.clone(),
            bucket_seconds: t.bucket_seconds,
            completed: t.completed,
            failed: t.failed,
            points: t.points.iter().map(Into::into).collect(),
        }
    }
}

#[utoipa::path(get, path = "/webhooks/throughput", tag = "operations", params(ThroughputQuery),
    responses(
        (status = 200, description = "Completions and failures per bucket, oldest first; empty buckets left out", body = ThroughputView),
        (status = 422, description = "A parameter is out of range or unknown; `field` names it", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn get_throughput(state: State, request: HttpRequest) -> Reply {
    let window = ThroughputQuery::parse(request.query_string())?;
    let throughput = stats::throughput(&state.pool, window.minutes, window.bucket_seconds).await?;
    Ok(HttpResponse::Ok().json(ThroughputView::from(&throughput)))
}

#[utoipa::path(get, path = "/webhooks/stats", tag = "operations",
    responses((status = 200, description = "The statistics document (docs/api.md)", body = StatsView), ServerErrors))]
pub(super) async fn get_stats(state: State) -> Reply {
    let document = stats::collect(&state.pool).await?;
    Ok(HttpResponse::Ok().json(StatsView::from(&document)))
}
