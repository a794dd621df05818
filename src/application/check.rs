//! The queue's invariants, checked: `webhookd check`, `GET /webhooks/check` (the console's
//! warning) and the `webhookd_invariant_violations` gauges. Each invariant is a statement of
//! `store::check`; what each means, how it breaks and what to do: docs/operations.md,
//! "Invariants and `webhookd check`". The pruner's pass heals what can heal
//! (`application::retention`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;

use crate::store::check::{self, Finding};
use crate::store::{bounded, DbPool};

use super::{conn, AppError};

/// One invariant of the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// A `-debit` waits for a `+credit` that completed, was cancelled or is gone.
    StaleCreditWait,
    /// A processing row without a lease, which no claim takes back.
    ProcessingWithoutLease,
    /// A tripped partner without a probe time, which never becomes active again.
    TrippedWithoutProbe,
    /// The statistics counters differ from the queue.
    CountersDrift,
}

impl Invariant {
    pub const ALL: [Invariant; 4] = [
        Invariant::StaleCreditWait,
        Invariant::ProcessingWithoutLease,
        Invariant::TrippedWithoutProbe,
        Invariant::CountersDrift,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Invariant::StaleCreditWait => "stale_credit_wait",
            Invariant::ProcessingWithoutLease => "processing_without_lease",
            Invariant::TrippedWithoutProbe => "tripped_without_probe",
            Invariant::CountersDrift => "counters_drift",
        }
    }
}

/// What breaks one invariant: how many queue rows (partners for `tripped_without_probe`,
/// counter cells for `counters_drift`), and up to five of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violations {
    pub count: i64,
    /// Queue ids, config ids, or counter cells described in a line each.
    pub examples: Vec<String>,
    /// False when finding them took longer than `QUERY_TIMEOUT` (counting the counters of a
    /// queue of many millions of rows does): the count is then 0 and says nothing.
    pub checked: bool,
}

impl Default for Violations {
    fn default() -> Self {
        Finding::default().into()
    }
}

impl Violations {
    /// Not found within the bound.
    fn unchecked() -> Self {
        Self {
            checked: false,
            ..Self::default()
        }
    }
}

impl From<Finding> for Violations {
    fn from(f: Finding) -> Self {
        Self {
            count: f.count,
            examples: f.examples,
            checked: true,
        }
    }
}

/// Finds what breaks `invariant`, in a statement cancelled after `bound`.
pub async fn find(
    conn: &mut AsyncPgConnection,
    invariant: Invariant,
    bound: Duration,
) -> Result<Violations, AppError> {
    let found = conn
        .transaction(async |conn| {
            bounded::bound(conn, bound).await?;
            match invariant {
                Invariant::StaleCreditWait => check::stale_credit_wait(conn).await,
                Invariant::ProcessingWithoutLease => check::processing_without_lease(conn).await,
                Invariant::TrippedWithoutProbe => check::tripped_without_probe(conn).await,
                Invariant::CountersDrift => check::counters_drift(conn).await,
            }
        })
        .await;
    match found {
        Ok(finding) => Ok(finding.into()),
        Err(e) if bounded::timed_out(&e) => Ok(Violations::unchecked()),
        Err(e) => Err(e.into()),
    }
}

/// When a caller that checks again and again (the pruner's passes, the API's check) counts the
/// statistics counters against the queue: every time while a count fits in `QUERY_TIMEOUT`;
/// after one that did not, only every [`CounterCounts::SKIP_AFTER_UNFIT`]th time, as a queue
/// that large stays large and each try costs a whole bound of the database's work.
#[derive(Debug, Default)]
pub struct CounterCounts {
    skip: u32,
}

impl CounterCounts {
    /// An hour of passes or checks at the default `RETENTION_INTERVAL`.
    pub const SKIP_AFTER_UNFIT: u32 = 60;

    /// Whether to count this time.
    pub fn due(&mut self) -> bool {
        let due = self.skip == 0;
        self.skip = self.skip.saturating_sub(1);
        due
    }

    /// A count was tried: whether it fitted in the bound.
    pub fn tried(&mut self, fitted: bool) {
        if !fitted {
            self.skip = Self::SKIP_AFTER_UNFIT;
        }
    }
}

/// Every invariant, always present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Invariants {
    pub stale_credit_wait: Violations,
    pub processing_without_lease: Violations,
    pub tripped_without_probe: Violations,
    pub counters_drift: Violations,
}

impl Invariants {
    pub fn get(&self, invariant: Invariant) -> &Violations {
        match invariant {
            Invariant::StaleCreditWait => &self.stale_credit_wait,
            Invariant::ProcessingWithoutLease => &self.processing_without_lease,
            Invariant::TrippedWithoutProbe => &self.tripped_without_probe,
            Invariant::CountersDrift => &self.counters_drift,
        }
    }
}

/// The check's document, the same for `webhookd check --json` and `GET /webhooks/check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// True when every invariant was checked and holds.
    pub ok: bool,
    /// How many invariants are broken.
    pub broken: usize,
    /// How many invariants could not be checked within `QUERY_TIMEOUT`.
    pub unchecked: usize,
    /// RFC 3339 UTC: when the check ran.
    pub checked_at: String,
    pub invariants: Invariants,
}

/// Checks every invariant on `conn`, each in a statement cancelled after `bound`;
/// `counters_drift` only when `count_counters`, reported unchecked otherwise.
pub async fn check_on(
    conn: &mut AsyncPgConnection,
    bound: Duration,
    count_counters: bool,
) -> Result<CheckReport, AppError> {
    let invariants = Invariants {
        stale_credit_wait: find(conn, Invariant::StaleCreditWait, bound).await?,
        processing_without_lease: find(conn, Invariant::ProcessingWithoutLease, bound).await?,
        tripped_without_probe: find(conn, Invariant::TrippedWithoutProbe, bound).await?,
        counters_drift: match count_counters {
            true => find(conn, Invariant::CountersDrift, bound).await?,
            false => Violations::unchecked(),
        },
    };
    let count = |broken: fn(&Violations) -> bool| {
        Invariant::ALL
            .into_iter()
            .filter(|i| broken(invariants.get(*i)))
            .count()
    };
    let (broken, unchecked) = (count(|v| v.count != 0), count(|v| !v.checked));
    Ok(CheckReport {
        ok: broken == 0 && unchecked == 0,
        broken,
        unchecked,
        checked_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        invariants,
    })
}

/// Checks every invariant now, the counters included.
pub async fn check(pool: &DbPool, bound: Duration) -> Result<CheckReport, AppError> {
    let mut conn = conn(pool).await?;
    check_on(&mut conn, bound, true).await
}

/// A report and when it was made.
type Dated = (Instant, Arc<CheckReport>);

/// The API's last check, run again once it is older than `max_age`: `counters_drift` counts
/// the whole queue, too much for every scrape or console refresh.
pub struct LatestCheck {
    pool: DbPool,
    max_age: Duration,
    /// `QUERY_TIMEOUT`.
    bound: Duration,
    counters: Arc<Mutex<CounterCounts>>,
    last: Arc<Mutex<Option<Dated>>>,
    /// Held while a check runs, so that callers that come meanwhile wait for its result.
    running: Arc<tokio::sync::Mutex<()>>,
}

impl LatestCheck {
    pub fn new(pool: DbPool, max_age: Duration, bound: Duration) -> Self {
        Self {
            pool,
            max_age,
            bound,
            counters: Arc::default(),
            last: Arc::default(),
            running: Arc::default(),
        }
    }

    /// How long a report is reused.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The last report, whatever its age; `None` before the first check ended.
    pub fn last(&self) -> Option<Arc<CheckReport>> {
        let last = lock(&self.last);
        last.as_ref().map(|(_, report)| report.clone())
    }

    /// A report at most `max_age` old, checked now if there is none. The check runs in a task
    /// of its own: a caller that stops waiting (a scrape's deadline) does not cancel it, and
    /// the next caller finds its result.
    pub async fn latest(&self) -> Result<Arc<CheckReport>, AppError> {
        let (pool, last, running, max_age, bound, counters) = (
            self.pool.clone(),
            self.last.clone(),
            self.running.clone(),
            self.max_age,
            self.bound,
            self.counters.clone(),
        );
        let fresh = move || {
            let last = lock(&last);
            last.as_ref()
                .filter(|(at, _)| at.elapsed() < max_age)
                .map(|(_, report)| report.clone())
        };
        if let Some(report) = fresh() {
            return Ok(report);
        }
        let last = self.last.clone();
        tokio::spawn(async move {
            let _running = running.lock().await;
            if let Some(report) = fresh() {
                return Ok(report);
            }
            let count_counters = lock(&counters).due();
            let mut conn = conn(&pool).await?;
            let report = Arc::new(check_on(&mut conn, bound, count_counters).await?);
            if count_counters {
                lock(&counters).tried(report.invariants.counters_drift.checked);
            }
            *lock(&last) = Some((Instant::now(), report.clone()));
            Ok(report)
        })
        .await
        .map_err(|e| AppError::internal(format!("the check's task failed: {e}")))?
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_that_did_not_fit_are_counted_again_only_after_the_skip() {
        let mut counts = CounterCounts::default();
        assert!(counts.due());
        counts.tried(true);
        assert!(counts.due(), "a count that fitted is due next time too");
        counts.tried(false);
        for n in 0..CounterCounts::SKIP_AFTER_UNFIT {
            assert!(!counts.due(), "skipped at {n}");
        }
        assert!(counts.due());
    }
}
