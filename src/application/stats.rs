//! The statistics document (SPEC §5.2), shared by `GET /webhooks/stats` and `webhookd stats`.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::domain::delivery::Status;
use crate::domain::event::EventType;
use crate::infra::db::{stats, DbPool};

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
    fn add(&mut self, status: Status, n: i64) {
        match status {
            Status::Pending => self.pending += n,
            Status::Processing => self.processing += n,
            Status::Completed => self.completed += n,
            Status::Failed => self.failed += n,
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
    pub success_rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsDocument {
    pub total: i64,
    pub by_status: StatusCounts,
    pub cancelled: i64,
    pub by_event_type: BTreeMap<&'static str, StatusCounts>,
    pub success_rate: Option<f64>,
    pub attempts: AttemptStats,
    pub oldest_pending_age_seconds: Option<f64>,
    pub completed_last_minute: i64,
    pub failed_last_minute: i64,
    pub by_partner: Vec<PartnerStats>,
    pub generated_at: String,
}

pub async fn collect(pool: &DbPool) -> Result<StatsDocument, AppError> {
    let mut conn = conn(pool).await?;
    let rows = stats::row_counts(&mut conn).await?;
    let buckets = stats::attempt_buckets(&mut conn).await?;
    let moments = stats::moments(&mut conn).await?;
    Ok(build(rows, buckets, moments))
}

fn build(
    rows: Vec<stats::RowCount>,
    buckets: Vec<stats::AttemptBucket>,
    moments: stats::Moments,
) -> StatsDocument {
    let mut by_status = StatusCounts::default();
    let mut cancelled = 0;
    let mut by_event_type: BTreeMap<&'static str, StatusCounts> = EventType::ALL
        .iter()
        .map(|t| (t.as_str(), StatusCounts::default()))
        .collect();
    let mut partners: BTreeMap<i64, PartnerStats> = BTreeMap::new();
    for row in rows {
        let partner = partners
            .entry(row.config_id)
            .or_insert_with(|| PartnerStats {
                config_id: row.config_id,
                name: row.config_name.clone(),
                by_status: StatusCounts::default(),
                cancelled: 0,
                success_rate: None,
            });
        match row.bucket.parse::<Status>() {
            Ok(status) => {
                by_status.add(status, row.n);
                partner.by_status.add(status, row.n);
                if let Some(counts) = by_event_type.get_mut(row.event_type.as_str()) {
                    counts.add(status, row.n);
                }
            }
            Err(_) => {
                cancelled += row.n;
                partner.cancelled += row.n;
            }
        }
    }
    let by_partner = partners
        .into_values()
        .map(|mut p| {
            p.success_rate = p.by_status.success_rate();
            p
        })
        .collect();
    StatsDocument {
        total: by_status.total(),
        success_rate: by_status.success_rate(),
        by_status,
        cancelled,
        by_event_type,
        attempts: attempt_stats(&buckets),
        oldest_pending_age_seconds: moments
            .oldest_pending
            .map(|t| ((moments.now - t).num_milliseconds().max(0) as f64) / 1000.0),
        completed_last_minute: moments.completed_last_minute,
        failed_last_minute: moments.failed_last_minute,
        by_partner,
        generated_at: rfc3339(moments.now),
    }
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
