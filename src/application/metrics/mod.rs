//! Prometheus metrics: one [`Metrics`] per process, created at start and passed explicitly to
//! the workers and the API, rendered by `GET /metrics` in the OpenMetrics text format.
//!
//! What a process records depends on what it runs ([`Role`]): `serve` has the API metrics and
//! the queue gauges (read from the database at scrape time), `run` has those and the worker
//! metrics, and `work` records the worker metrics but has no HTTP server to expose them — a
//! `work` process is observed through the queue gauges of any `serve`/`run` process and its
//! logs.
//!
//! Names, all prefixed `webhookd_`:
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `delivery_attempts_total` | counter | `outcome` (`Outcome::label()`), `config_id` |
//! | `delivery_attempt_duration_seconds` | histogram | |
//! | `claim_duration_seconds` | histogram | |
//! | `claimed_rows_total` | counter | |
//! | `outcome_write_duration_seconds` | histogram | |
//! | `outcomes_written_total` | counter | |
//! | `outcomes_stale_total` | counter | |
//! | `rows_handed_back_total` | counter | |
//! | `api_requests_total` | counter | `method`, `route` (the route pattern), `status` |
//! | `partner_trips_total` | counter | `config_id`: partners this process tripped |
//! | `partner_pauses_total` | counter | `config_id`: pauses this process made (operator, 410) |
//! | `partner_resumes_total` | counter | `config_id`: partners this process made active again |
//! | `database_up` | gauge | |
//! | `queue_depth` | gauge | `status` |
//! | `queue_held` | gauge | `reason` (`partner_paused`, `partner_tripped`, `waiting_for_credit`) |
//! | `queue_oldest_due_age_seconds` | gauge | |
//! | `partner_state` | gauge | `config_id`: 0 active, 1 paused, 2 tripped |
//! | `partner_held_rows` | gauge | `config_id`: rows held by partner health |
//! | `invariant_repairs_total` | counter | `invariant`: what this process's pruner healed |
//! | `retention_deleted_total` | counter | `rule` (completed, failed, cancelled): rows this process's pruner deleted |
//! | `invariant_violations` | gauge | `invariant`: from the API's last check, not this scrape's |
//! | `invariants_checked_timestamp_seconds` | gauge | when that check ran (Unix time) |

mod labels;
mod scrape;

use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use slog::{warn, Logger};

use self::labels::{AttemptLabels, InvariantLabels, PartnerLabels, RequestLabels, RuleLabels};
use self::scrape::{read_queue, QueueGauges};
use super::check::{CheckReport, Invariant, LatestCheck};
use crate::domain::delivery::Outcome;
use crate::domain::partner::PartnerState;
use crate::store::queue::retention::Rule;
use crate::store::DbPool;

/// The `Content-Type` of what [`scrape`] renders.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const PREFIX: &str = "webhookd";

/// Partner calls take milliseconds to `HTTP_TIMEOUT` (30 s by default).
const CALL_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Single database statements: sub-millisecond to seconds under contention.
const STATEMENT_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// What a process runs, and so which metrics it registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `webhookd serve`
    Api,
    /// `webhookd work`
    Workers,
    /// `webhookd run`
    Both,
}

impl Role {
    fn api(self) -> bool {
        matches!(self, Role::Api | Role::Both)
    }

    fn workers(self) -> bool {
        matches!(self, Role::Workers | Role::Both)
    }
}

/// The process's metrics and the registry they are exposed through.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    attempts: Family<AttemptLabels, Counter>,
    attempt_seconds: Histogram,
    claim_seconds: Histogram,
    claimed_rows: Counter,
    write_seconds: Histogram,
    outcomes_written: Counter,
    outcomes_stale: Counter,
    handed_back: Counter,
    requests: Family<RequestLabels, Counter>,
    trips: Family<PartnerLabels, Counter>,
    pauses: Family<PartnerLabels, Counter>,
    resumes: Family<PartnerLabels, Counter>,
    repairs: Family<InvariantLabels, Counter>,
    pruned: Family<RuleLabels, Counter>,
}

impl Metrics {
    pub fn new(role: Role) -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix(PREFIX),
            attempts: Family::default(),
            attempt_seconds: Histogram::new(CALL_BUCKETS),
            claim_seconds: Histogram::new(STATEMENT_BUCKETS),
            claimed_rows: Counter::default(),
            write_seconds: Histogram::new(STATEMENT_BUCKETS),
            outcomes_written: Counter::default(),
            outcomes_stale: Counter::default(),
            handed_back: Counter::default(),
            requests: Family::default(),
            trips: Family::default(),
            pauses: Family::default(),
            resumes: Family::default(),
            repairs: Family::default(),
            pruned: Family::default(),
        };
        metrics.register_partner_changes();
        if role.workers() {
            metrics.register_worker_metrics();
        }
        if role.api() {
            metrics.registry.register(
                "api_requests",
                "API requests by method, route pattern and response status",
                metrics.requests.clone(),
            );
        }
        metrics
    }

    /// The partner state changes this process makes, whatever it runs.
    fn register_partner_changes(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "partner_trips",
            "Partners this process tripped (its outcome write counted the failure that reached the threshold)",
            self.trips.clone(),
        );
        registry.register(
            "partner_pauses",
            "Partners this process paused (an operator, or a 410 Gone)",
            self.pauses.clone(),
        );
        registry.register(
            "partner_resumes",
            "Partners this process made active again (a probe's 2xx, or an operator)",
            self.resumes.clone(),
        );
    }

    /// What the workers record.
    fn register_worker_metrics(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "delivery_attempts",
            "Partner calls made, by outcome and partner config",
            self.attempts.clone(),
        );
        registry.register_with_unit(
            "delivery_attempt_duration",
            "Duration of one partner call",
            Unit::Seconds,
            self.attempt_seconds.clone(),
        );
        registry.register_with_unit(
            "claim_duration",
            "Duration of one claim of due rows, connection checkout included",
            Unit::Seconds,
            self.claim_seconds.clone(),
        );
        registry.register(
            "claimed_rows",
            "Rows claimed by this process's workers",
            self.claimed_rows.clone(),
        );
        registry.register_with_unit(
            "outcome_write_duration",
            "Duration of writing one batch of attempt outcomes, retries included",
            Unit::Seconds,
            self.write_seconds.clone(),
        );
        registry.register(
            "outcomes_written",
            "Attempt outcomes written to their rows",
            self.outcomes_written.clone(),
        );
        registry.register(
            "outcomes_stale",
            "Attempt outcomes discarded because the row's lease had passed to another worker",
            self.outcomes_stale.clone(),
        );
        registry.register(
            "rows_handed_back",
            "Claimed rows handed back to pending without a recorded attempt (host saturated, shutdown)",
            self.handed_back.clone(),
        );
        registry.register(
            "invariant_repairs",
            "Rows, partners or counter cells that broke an invariant, healed by this process's pruner passes",
            self.repairs.clone(),
        );
        registry.register(
            "retention_deleted",
            "Rows deleted by this process's pruner passes, by retention rule; a pass deletes in batches, so a backlog's progress shows here",
            self.pruned.clone(),
        );
    }

    /// One partner call ended with `outcome` after `duration`.
    pub fn attempt(&self, config_id: i64, outcome: &Outcome, duration: Duration) {
        self.attempts
            .get_or_create(&AttemptLabels {
                outcome: outcome.label(),
                config_id,
            })
            .inc();
        self.attempt_seconds.observe(duration.as_secs_f64());
    }

    /// One claim took `duration` and returned `rows` rows.
    pub fn claimed(&self, rows: usize, duration: Duration) {
        self.claim_seconds.observe(duration.as_secs_f64());
        self.claimed_rows.inc_by(rows as u64);
    }

    /// One batch of outcomes was written in `duration`: `written` rows changed, `stale` were
    /// fenced out.
    pub fn outcomes(&self, written: usize, stale: usize, duration: Duration) {
        self.write_seconds.observe(duration.as_secs_f64());
        self.outcomes_written.inc_by(written as u64);
        self.outcomes_stale.inc_by(stale as u64);
    }

    /// A partner entered `state` by this process's doing.
    pub fn partner_changed(&self, config_id: i64, state: PartnerState) {
        let family = match state {
            PartnerState::Active => &self.resumes,
            PartnerState::Paused => &self.pauses,
            PartnerState::Tripped => &self.trips,
        };
        family.get_or_create(&PartnerLabels { config_id }).inc();
    }

    /// A pruner pass healed `n` of what broke `invariant`.
    pub fn repaired(&self, invariant: Invariant, n: i64) {
        let counter = self.repairs.get_or_create(&InvariantLabels {
            invariant: invariant.as_str(),
        });
        if n > 0 {
            counter.inc_by(n as u64);
        }
    }

    /// A pruner batch deleted `n` rows under `rule`.
    pub fn pruned(&self, rule: Rule, n: i64) {
        let counter = self.pruned.get_or_create(&RuleLabels {
            rule: rule.as_str(),
        });
        if n > 0 {
            counter.inc_by(n as u64);
        }
    }

    pub fn handed_back(&self, rows: usize) {
        self.handed_back.inc_by(rows as u64);
    }

    /// One API request answered; `route` is the matched pattern, `None` when no route matched.
    pub fn request(&self, method: &str, route: Option<String>, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method),
                route: route.unwrap_or_else(|| "unmatched".to_string()),
                status,
            })
            .inc();
    }

    /// The whole exposition: this process's metrics, then the queue gauges when they could be
    /// read (`database_up` says whether they were), then the last check's result, if any.
    fn encode(&self, queue: Option<&QueueGauges>, check: Option<&CheckReport>) -> String {
        let mut scraped = Registry::with_prefix(PREFIX);
        let database_up: Gauge = Gauge::default();
        database_up.set(i64::from(queue.is_some()));
        scraped.register(
            "database_up",
            "1 when this scrape read the queue gauges from the database, else 0",
            database_up,
        );
        if let Some(queue) = queue {
            scrape::register_queue(&mut scraped, queue);
        }
        if let Some(check) = check {
            scrape::register_check(&mut scraped, check);
        }
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &scraped))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }
}

/// Methods outside the usual set share one label value, so odd methods cannot add series.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Longest a scrape waits for the queue gauges before answering without them.
const QUEUE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Renders `GET /metrics`: the process's metrics plus the queue gauges read now and the
/// invariants as of the last check (checked again when older than its `max_age`). A database
/// that does not answer within two seconds costs the queue gauges, not the scrape; a check
/// that takes longer goes on after the scrape, which shows the previous one.
pub async fn scrape(
    pool: &DbPool,
    metrics: &Metrics,
    checks: &LatestCheck,
    log: &Logger,
) -> String {
    let queue = match tokio::time::timeout(QUEUE_READ_TIMEOUT, read_queue(pool)).await {
        Ok(Ok(queue)) => Some(queue),
        Ok(Err(e)) => {
            warn!(log, "queue gauges not read"; "error" => e.to_string(), "cause" => e.cause());
            None
        }
        Err(_) => {
            warn!(log, "queue gauges not read"; "error" => "timed out",
                "timeout_ms" => QUEUE_READ_TIMEOUT.as_millis() as u64);
            None
        }
    };
    let check = match tokio::time::timeout(QUEUE_READ_TIMEOUT, checks.latest()).await {
        Ok(Ok(report)) => Some(report),
        Ok(Err(e)) => {
            warn!(log, "invariants not checked"; "error" => e.to_string(), "cause" => e.cause());
            checks.last()
        }
        Err(_) => checks.last(),
    };
    metrics.encode(queue.as_ref(), check.as_deref())
}

#[cfg(test)]
mod tests {
    use super::scrape::PartnerGauge;
    use super::*;
    use crate::application::stats::{HeldCounts, StatusCounts};
    use crate::domain::delivery::FailureKind;

    fn series(text: &str, name_and_labels: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
            .map(str::to_string)
    }

    #[test]
    fn attempts_are_counted_by_outcome_and_partner() {
        let metrics = Metrics::new(Role::Workers);
        let ok = Outcome::Response {
            status: 204,
            body: String::new(),
            retry_after: None,
        };
        let timeout = Outcome::NoResponse {
            kind: FailureKind::Timeout,
            message: "after 2s".into(),
        };
        metrics.attempt(7, &ok, Duration::from_millis(20));
        metrics.attempt(7, &ok, Duration::from_millis(20));
        metrics.attempt(8, &timeout, Duration::from_secs(2));
        let text = metrics.encode(None, None);
        let ok7 = r#"webhookd_delivery_attempts_total{outcome="success",config_id="7"}"#;
        let timeout8 = r#"webhookd_delivery_attempts_total{outcome="timeout",config_id="8"}"#;
        assert_eq!(series(&text, ok7).as_deref(), Some("2"), "{text}");
        assert_eq!(series(&text, timeout8).as_deref(), Some("1"), "{text}");
        assert_eq!(
            series(&text, "webhookd_delivery_attempt_duration_seconds_count").as_deref(),
            Some("3")
        );
        assert_eq!(series(&text, "webhookd_database_up").as_deref(), Some("0"));
        assert!(text.ends_with("# EOF\n"));
        // A workers-only process registers no API metrics.
        assert!(!text.contains("api_requests"), "{text}");
    }

    #[test]
    fn the_last_check_becomes_a_gauge_per_invariant_and_repairs_are_counted() {
        let metrics = Metrics::new(Role::Both);
        metrics.repaired(Invariant::CountersDrift, 3);
        metrics.repaired(Invariant::StaleCreditWait, 0);
        let mut check = CheckReport {
            ok: false,
            broken: 1,
            unchecked: 1,
            checked_at: "2026-12-07T12:00:00.500Z".into(),
            invariants: Default::default(),
        };
        check.invariants.processing_without_lease.count = 2;
        check.invariants.counters_drift.checked = false;
        let text = metrics.encode(None, Some(&check));
        for invariant in Invariant::ALL {
            let name = format!(
                r#"webhookd_invariant_violations{{invariant="{}"}}"#,
                invariant.as_str()
            );
            let expected = match invariant {
                Invariant::ProcessingWithoutLease => Some("2"),
                Invariant::CountersDrift => None,
                _ => Some("0"),
            };
            assert_eq!(series(&text, &name).as_deref(), expected, "{text}");
        }
        assert_eq!(
            series(&text, "webhookd_invariants_checked_timestamp_seconds").as_deref(),
            Some("1796644800.5"),
            "{text}"
        );
        metrics.pruned(Rule::Failed, 7);
        let text = metrics.encode(None, Some(&check));
        let deleted = r#"webhookd_retention_deleted_total{rule="failed"}"#;
        assert_eq!(series(&text, deleted).as_deref(), Some("7"), "{text}");
        let repairs = r#"webhookd_invariant_repairs_total{invariant="counters_drift"}"#;
        assert_eq!(series(&text, repairs).as_deref(), Some("3"), "{text}");
        // Without a check yet, no invariant gauge at all rather than zeros.
        assert!(!metrics.encode(None, None).contains("invariant_violations"));
    }

    #[test]
    fn queue_gauges_cover_every_status_and_odd_methods_share_a_label() {
        let metrics = Metrics::new(Role::Api);
        metrics.request("BREW", None, 404);
        metrics.request("GET", Some("/webhooks/{queue_id}".into()), 200);
        let queue = QueueGauges {
            by_status: StatusCounts {
                pending: 3,
                processing: 1,
                completed: 10,
                failed: 2,
            },
            held: HeldCounts {
                waiting_for_credit: 2,
                ..Default::default()
            },
            oldest_due_age_seconds: 1.5,
            partners: vec![PartnerGauge {
                config_id: 3,
                state: PartnerState::Tripped,
                held: 12,
            }],
        };
        let text = metrics.encode(Some(&queue), None);
        for (status, n) in [
            ("pending", 3),
            ("processing", 1),
            ("completed", 10),
            ("failed", 2),
        ] {
            let name = format!(r#"webhookd_queue_depth{{status="{status}"}}"#);
            assert_eq!(series(&text, &name), Some(n.to_string()), "{text}");
        }
        assert_eq!(
            series(&text, "webhookd_queue_oldest_due_age_seconds").as_deref(),
            Some("1.5")
        );
        assert_eq!(series(&text, "webhookd_database_up").as_deref(), Some("1"));
        let odd = r#"webhookd_api_requests_total{method="other",route="unmatched",status="404"}"#;
        let get = r#"webhookd_api_requests_total{method="GET",route="/webhooks/{queue_id}",status="200"}"#;
        assert_eq!(series(&text, odd).as_deref(), Some("1"), "{text}");
        assert_eq!(series(&text, get).as_deref(), Some("1"), "{text}");
        assert!(!text.contains("delivery_attempts"), "{text}");
        assert_eq!(
            series(&text, r#"webhookd_partner_state{config_id="3"}"#).as_deref(),
            Some("2")
        );
        assert_eq!(
            series(&text, r#"webhookd_partner_held_rows{config_id="3"}"#).as_deref(),
            Some("12")
        );
    }
}
