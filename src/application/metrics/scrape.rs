//! What a scrape reads at its own time: the queue gauges from the database, and the last
//! check of the invariants; each as gauges of the scrape's own registry.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::labels::{InvariantLabels, PartnerLabels, ReasonLabels, StatusLabels};
use crate::application::check::{CheckReport, Invariant};
use crate::application::stats::{HeldCounts, StatusCounts};
use crate::application::{conn, AppError};
use crate::domain::delivery::{HeldReason, Status};
use crate::domain::partner::PartnerState;
use crate::store::{partners, stats, DbPool};

/// The queue as the scrape reports it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct QueueGauges {
    /// From the trigger-kept counters: no scan of the queue.
    pub(super) by_status: StatusCounts,
    /// One scan of the held rows' partial index.
    pub(super) held: HeldCounts,
    /// 0 when no pending row is due.
    pub(super) oldest_due_age_seconds: f64,
    pub(super) partners: Vec<PartnerGauge>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct PartnerGauge {
    pub(super) config_id: i64,
    pub(super) state: PartnerState,
    pub(super) held: i64,
}

pub(super) async fn read_queue(pool: &DbPool) -> Result<QueueGauges, AppError> {
    let mut conn = conn(pool).await?;
    let mut by_status = StatusCounts::default();
    for count in stats::queue_depth(&mut conn).await? {
        // The other bucket is `cancelled`, which is not a status.
        if let Ok(status) = count.bucket.parse::<Status>() {
            by_status.add(status, count.n);
        }
    }
    let held = HeldCounts::from_buckets(stats::held_counts(&mut conn).await?);
    let oldest_due_age_seconds = stats::oldest_due_age_seconds(&mut conn)
        .await?
        .unwrap_or(0.0);
    let partners = partners::find(&mut conn, None)
        .await?
        .into_iter()
        .map(|p| PartnerGauge {
            config_id: p.config_id,
            state: p.state,
            held: p.held,
        })
        .collect();
    Ok(QueueGauges {
        by_status,
        held,
        oldest_due_age_seconds,
        partners,
    })
}

/// The queue gauges, into the scrape's registry.
pub(super) fn register_queue(scraped: &mut Registry, queue: &QueueGauges) {
    let depth: Family<StatusLabels, Gauge> = Family::default();
    for status in Status::ALL {
        depth
            .get_or_create(&StatusLabels {
                status: status.as_str(),
            })
            .set(queue.by_status.get(status));
    }
    scraped.register(
        "queue_depth",
        "Rows of webhook_queue by status, cancelled rows excluded",
        depth,
    );
    let held: Family<ReasonLabels, Gauge> = Family::default();
    for reason in HeldReason::ALL {
        held.get_or_create(&ReasonLabels {
            reason: reason.as_str(),
        })
        .set(queue.held.get(reason));
    }
    scraped.register(
        "queue_held",
        "Pending rows of webhook_queue held (not called now, spending no attempt), by reason",
        held,
    );
    let age: Gauge<f64, AtomicU64> = Gauge::default();
    age.set(queue.oldest_due_age_seconds);
    scraped.register_with_unit(
        "queue_oldest_due_age",
        "How long the longest-waiting due pending row has been due (0 when none is)",
        Unit::Seconds,
        age,
    );
    let state: Family<PartnerLabels, Gauge> = Family::default();
    let held: Family<PartnerLabels, Gauge> = Family::default();
    for partner in &queue.partners {
        let labels = PartnerLabels {
            config_id: partner.config_id,
        };
        state.get_or_create(&labels).set(partner.state.gauge());
        held.get_or_create(&labels).set(partner.held);
    }
    scraped.register(
        "partner_state",
        "Each partner's delivery state: 0 active, 1 paused, 2 tripped",
        state,
    );
    scraped.register(
        "partner_held_rows",
        "Pending rows held because their partner is paused or tripped",
        held,
    );
}

/// The last check, into the scrape's registry.
pub(super) fn register_check(scraped: &mut Registry, check: &CheckReport) {
    let violations: Family<InvariantLabels, Gauge> = Family::default();
    // One not checked in time has no series: a zero would say it holds.
    for invariant in Invariant::ALL {
        let found = check.invariants.get(invariant);
        if found.checked {
            violations
                .get_or_create(&InvariantLabels {
                    invariant: invariant.as_str(),
                })
                .set(found.count);
        }
    }
    scraped.register(
            "invariant_violations",
            "Rows (partners for tripped_without_probe, counter cells for counters_drift) breaking each \
             invariant, as of the API's last check (webhookd_invariants_checked_timestamp_seconds), \
             run at most once per RETENTION_INTERVAL, not at each scrape; see webhookd check",
            violations,
        );
    let checked_at: Gauge<f64, AtomicU64> = Gauge::default();
    checked_at.set(
        chrono::DateTime::parse_from_rfc3339(&check.checked_at)
            .map(|t| t.timestamp_millis() as f64 / 1000.0)
            .unwrap_or(0.0),
    );
    scraped.register(
        "invariants_checked_timestamp_seconds",
        "When the check behind webhookd_invariant_violations ran (Unix time)",
        checked_at,
    );
}
