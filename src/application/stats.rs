//! The statistics document (docs/api.md, "Statistics"), shared by `GET /webhooks/stats` and `webhookd stats`.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::domain::delivery::{HeldReason, Status};
use crate::domain::event::EventType;
use crate::domain::partner::{PartnerState, StateReason};
use crate::store::{partners, stats, DbPool};

use super::{conn, AppError};

/// Counts of rows in each status; every status is always present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub pending: i64,
    pub processing: i64,
    pub completed: i64,
    pub failed: i64,
}

impl StatusCounts {
    pub(crate) fn add(&mut self, status: Status, n: i64) {
        match status {
            Status::Pending => self.pending += n,
            Status::Processing => self.processing += n,
            Status::Completed => self.completed += n,
            Status::Failed => self.failed += n,
        }
    }

    pub fn get(&self, status: Status) -> i64 {
        match status {
            Status::Pending => self.pending,
            Status::Processing => self.processing,
            Status::Completed => self.completed,
            Status::Failed => self.failed,
        }
    }

    pub fn total(&self) -> i64 {
        self.pending + self.processing + self.completed + self.failed
    }

    /// completed ÷ (completed + failed), `None` when both are zero.
    pub fn success_rate(&self) -> Option<f64> {
        let done = self.completed + self.failed;
        (done > 0).then(|| self.completed as f64 / done as f64)
    }
}

/// Pending rows held (not called now, spending no attempt) by reason; every reason always
/// present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeldCounts {
    pub partner_paused: i64,
    pub partner_tripped: i64,
    pub waiting_for_credit: i64,
}

impl HeldCounts {
    pub(crate) fn add(&mut self, reason: HeldReason, n: i64) {
        match reason {
            HeldReason::PartnerPaused => self.partner_paused += n,
            HeldReason::PartnerTripped => self.partner_tripped += n,
            HeldReason::WaitingForCredit => self.waiting_for_credit += n,
        }
    }

    pub fn get(&self, reason: HeldReason) -> i64 {
        match reason {
            HeldReason::PartnerPaused => self.partner_paused,
            HeldReason::PartnerTripped => self.partner_tripped,
            HeldReason::WaitingForCredit => self.waiting_for_credit,
        }
    }

    /// From the rows of `store::stats::held_counts`.
    pub(crate) fn from_buckets(buckets: Vec<stats::BucketCount>) -> Self {
        let mut held = Self::default();
        for b in buckets {
            if let Ok(reason) = b.bucket.parse::<HeldReason>() {
                held.add(reason, b.n);
            }
        }
        held
    }
}

/// Counts per event type, both always present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ByEventType {
    #[serde(rename = "+credit")]
    pub credit: StatusCounts,
    #[serde(rename = "-debit")]
    pub debit: StatusCounts,
}

impl ByEventType {
    pub fn get_mut(&mut self, event_type: EventType) -> &mut StatusCounts {
        match event_type {
            EventType::Credit => &mut self.credit,
            EventType::Debit => &mut self.debit,
        }
    }

    pub fn get(&self, event_type: EventType) -> &StatusCounts {
        match event_type {
            EventType::Credit => &self.credit,
            EventType::Debit => &self.debit,
        }
    }

    /// In the order of [`EventType::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (EventType, &StatusCounts)> {
        EventType::ALL.into_iter().map(move |t| (t, self.get(t)))
    }
}

/// Attempts recorded, of every retry cycle. Every field is always present, null where no
/// attempt was made.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AttemptStats {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub avg_duration_ms: Option<f64>,
    /// Percentiles come from a histogram whose buckets keep two significant digits of the
    /// duration, so they are exact below 100 ms and within 5% above.
    pub p50_duration_ms: Option<i64>,
    pub p95_duration_ms: Option<i64>,
    pub p99_duration_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartnerStats {
    pub config_id: i64,
    pub name: String,
    pub by_status: StatusCounts,
    pub cancelled: i64,
    /// completed ÷ (completed + failed); null when both are 0.
    pub success_rate: Option<f64>,
    /// Its delivery state (docs/api.md, "Partner health").
    pub state: PartnerState,
    pub reason: Option<StateReason>,
    /// Pending rows held because of the state (part of `by_status.pending`).
    pub held: i64,
}

/// The statistics document (docs/api.md, "Statistics"). Every field is always present, null where noted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsDocument {
    /// Rows not cancelled: the sum of `by_status`.
    pub total: i64,
    /// Cancelled rows excluded.
    pub by_status: StatusCounts,
    pub cancelled: i64,
    /// Pending rows held, by reason (part of `by_status.pending`).
    pub held: HeldCounts,
    pub by_event_type: ByEventType,
    /// completed ÷ (completed + failed); null when both are 0.
    pub success_rate: Option<f64>,
    pub attempts: AttemptStats,
    /// Null when nothing is pending.
    pub oldest_pending_age_seconds: Option<f64>,
    pub completed_last_minute: i64,
    pub failed_last_minute: i64,
    /// One per config that has rows, by config id.
    pub by_partner: Vec<PartnerStats>,
    /// RFC 3339 UTC.
    pub generated_at: String,
}

pub async fn collect(pool: &DbPool) -> Result<StatsDocument, AppError> {
    let mut conn = conn(pool).await?;
    let rows = stats::row_counts(&mut conn).await?;
    let buckets = stats::attempt_buckets(&mut conn).await?;
    let moments = stats::moments(&mut conn).await?;
    let health = partners::find(&mut conn, None).await?;
    let held = HeldCounts::from_buckets(stats::held_counts(&mut conn).await?);
    Ok(build(rows, buckets, moments, health, held))
}

fn build(
    rows: Vec<stats::RowCount>,
    buckets: Vec<stats::AttemptBucket>,
    moments: stats::Moments,
    health: Vec<partners::PartnerRow>,
    held: HeldCounts,
) -> StatsDocument {
    let tally = Tally::of(rows);
    StatsDocument {
        total: tally.by_status.total(),
        success_rate: tally.by_status.success_rate(),
        by_status: tally.by_status,
        cancelled: tally.cancelled,
        held,
        by_event_type: tally.by_event_type,
        attempts: attempt_stats(&buckets),
        oldest_pending_age_seconds: moments
            .oldest_pending
            .map(|t| ((moments.now - t).num_milliseconds().max(0) as f64) / 1000.0),
        completed_last_minute: moments.completed_last_minute,
        failed_last_minute: moments.failed_last_minute,
        by_partner: with_health(tally.partners, health),
        generated_at: rfc3339(moments.now),
    }
}

/// The counter rows summed: by status, by event type and by partner, cancelled apart.
struct Tally {
    by_status: StatusCounts,
    cancelled: i64,
    by_event_type: ByEventType,
    partners: BTreeMap<i64, PartnerStats>,
}

impl Tally {
    fn of(rows: Vec<stats::RowCount>) -> Self {
        let mut tally = Tally {
            by_status: StatusCounts::default(),
            cancelled: 0,
            by_event_type: ByEventType::default(),
            partners: BTreeMap::new(),
        };
        for row in rows {
            let partner = tally
                .partners
                .entry(row.config_id)
                .or_insert_with(|| PartnerStats {
                    config_id: row.config_id,
                    name: row.config_name.clone(),
                    by_status: StatusCounts::default(),
                    cancelled: 0,
                    success_rate: None,
                    state: PartnerState::Active,
                    reason: None,
                    held: 0,
                });
            // The bucket that is no status is `cancelled`.
            let Ok(status) = row.bucket.parse::<Status>() else {
                tally.cancelled += row.n;
                partner.cancelled += row.n;
                continue;
            };
            tally.by_status.add(status, row.n);
            partner.by_status.add(status, row.n);
            if let Ok(event_type) = row.event_type.parse::<EventType>() {
                tally.by_event_type.get_mut(event_type).add(status, row.n);
            }
        }
        tally
    }
}

/// Each partner's statistics with its health and success rate.
fn with_health(
    mut partners: BTreeMap<i64, PartnerStats>,
    health: Vec<partners::PartnerRow>,
) -> Vec<PartnerStats> {
    for h in health {
        if let Some(p) = partners.get_mut(&h.config_id) {
            p.state = h.state;
            p.reason = h.reason;
            p.held = h.held;
        }
    }
    partners
        .into_values()
        .map(|mut p| {
            p.success_rate = p.by_status.success_rate();
            p
        })
        .collect()
}

/// Buckets must come sorted by duration.
fn attempt_stats(buckets: &[stats::AttemptBucket]) -> AttemptStats {
    let total: i64 = buckets.iter().map(|b| b.n).sum();
    let succeeded: i64 = buckets.iter().filter(|b| b.succeeded).map(|b| b.n).sum();
    let sum_ms: i64 = buckets.iter().map(|b| b.sum_ms).sum();
    let percentile = |q: f64| -> Option<i64> {
        let rank = ((q * total as f64).ceil() as i64).max(1);
        let mut seen = 0;
        buckets.iter().find_map(|b| {
            seen += b.n;
            (seen >= rank).then_some(b.duration_ms)
        })
    };
    AttemptStats {
        total,
        succeeded,
        failed: total - succeeded,
        avg_duration_ms: (total > 0).then(|| (sum_ms as f64 / total as f64 * 10.0).round() / 10.0),
        p50_duration_ms: percentile(0.50),
        p95_duration_ms: percentile(0.95),
        p99_duration_ms: percentile(0.99),
    }
}

/// Most minutes `GET /webhooks/throughput` looks back: the per-second table keeps a day.
pub const MAX_THROUGHPUT_MINUTES: i64 = 24 * 60;
/// Widest bucket of `GET /webhooks/throughput`.
pub const MAX_THROUGHPUT_BUCKET_SECONDS: i64 = 3600;

/// Rows that reached `completed` or `failed` in one bucket of time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThroughputBucket {
    /// The bucket's first second.
    pub second: String,
    pub completed: i64,
    pub failed: i64,
}

/// `GET /webhooks/throughput`: completions and failures over a window, in buckets of
/// `bucket_seconds` aligned to the Unix epoch; buckets in which nothing finished are left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Throughput {
    /// The start of the first bucket.
    pub since: String,
    pub until: String,
    pub bucket_seconds: i64,
    /// Totals over the window.
    pub completed: i64,
    pub failed: i64,
    /// Oldest first.
    pub points: Vec<ThroughputBucket>,
}

/// Throughput over the last `minutes`, from the trigger-kept per-second table.
pub async fn throughput(
    pool: &DbPool,
    minutes: i64,
    bucket_seconds: i64,
) -> Result<Throughput, AppError> {
    let until = Utc::now();
    let since = align(until - chrono::Duration::minutes(minutes), bucket_seconds);
    let mut conn = conn(pool).await?;
    let seconds = stats::throughput(&mut conn, since).await?;
    Ok(bucketed(since, until, bucket_seconds, seconds))
}

/// The start of the `bucket_seconds`-wide bucket that holds `t`.
fn align(t: DateTime<Utc>, bucket_seconds: i64) -> DateTime<Utc> {
    let start = t.timestamp().div_euclid(bucket_seconds) * bucket_seconds;
    DateTime::from_timestamp(start, 0).unwrap_or(t)
}

/// Sums per-second points (oldest first) into buckets.
fn bucketed(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    bucket_seconds: i64,
    seconds: Vec<stats::ThroughputPoint>,
) -> Throughput {
    let mut points: Vec<ThroughputBucket> = Vec::new();
    let mut current: Option<DateTime<Utc>> = None;
    for point in seconds {
        let start = align(point.second, bucket_seconds);
        match points.last_mut() {
            Some(last) if current == Some(start) => {
                last.completed += point.completed;
                last.failed += point.failed;
            }
            _ => {
                current = Some(start);
                points.push(ThroughputBucket {
                    second: rfc3339(start),
                    completed: point.completed,
                    failed: point.failed,
                });
            }
        }
    }
    Throughput {
        since: rfc3339(since),
        until: rfc3339(until),
        bucket_seconds,
        completed: points.iter().map(|p| p.completed).sum(),
        failed: points.iter().map(|p| p.failed).sum(),
        points,
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(succeeded: bool, duration_ms: i64, n: i64) -> stats::AttemptBucket {
        stats::AttemptBucket {
            succeeded,
            duration_ms,
            n,
            sum_ms: duration_ms * n,
        }
    }

    #[test]
    fn percentiles_walk_the_histogram() {
        let buckets = [
            bucket(true, 5, 50),
            bucket(false, 10, 45),
            bucket(true, 200, 4),
            bucket(true, 900, 1),
        ];
        let s = attempt_stats(&buckets);
        assert_eq!((s.total, s.succeeded, s.failed), (100, 55, 45));
        assert_eq!(s.p50_duration_ms, Some(5));
        assert_eq!(s.p95_duration_ms, Some(10));
        assert_eq!(s.p99_duration_ms, Some(200));
        assert_eq!(
            s.avg_duration_ms,
            Some(((250 + 450 + 800 + 900) as f64) / 100.0)
        );
        assert_eq!(attempt_stats(&[]), AttemptStats::default());
    }

    #[test]
    fn throughput_sums_seconds_into_epoch_aligned_buckets() {
        let at = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let point = |s, completed, failed| stats::ThroughputPoint {
            second: at(s),
            completed,
            failed,
        };
        // 1_700_000_000 is a multiple of 10, so buckets start at offsets 0, 10, 20 …
        let t = bucketed(
            at(0),
            at(35),
            10,
            vec![
                point(1, 2, 0),
                point(9, 1, 1),
                point(10, 0, 3),
                point(31, 4, 0),
            ],
        );
        let got: Vec<(String, i64, i64)> = t
            .points
            .iter()
            .map(|p| (p.second.clone(), p.completed, p.failed))
            .collect();
        assert_eq!(
            got,
            [
                (rfc3339(at(0)), 3, 1),
                (rfc3339(at(10)), 0, 3),
                (rfc3339(at(30)), 4, 0)
            ]
        );
        assert_eq!((t.completed, t.failed, t.bucket_seconds), (7, 4, 10));
        assert_eq!(align(at(19), 10), at(10));
        assert_eq!(align(at(20), 10), at(20));
        assert_eq!(bucketed(at(0), at(1), 1, vec![]).points, vec![]);
    }

    #[test]
    fn success_rate_is_null_until_something_finished() {
        assert_eq!(StatusCounts::default().success_rate(), None);
        let c = StatusCounts {
            completed: 3,
            failed: 1,
            ..Default::default()
        };
        assert_eq!(c.success_rate(), Some(0.75));
    }
}
