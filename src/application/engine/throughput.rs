//! Rows settled per second, as this process's outcome writes settled them, added to
//! `webhook_throughput` at most once a second rather than by each write. At everyday rates
//! each outcome write settles one row, and the throughput's counter was one of the few rows
//! every event updated. A process that dies loses at most the count of its last second; the
//! rows themselves and every other counter are written with each outcome (docs/decisions.md,
//! "Statistics counters").

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio::time::Instant;

use crate::domain::delivery::Status;
use crate::store::queue::outcome::Written;
use crate::store::throughput::Settled;

/// The longest a count waits to be written.
const EVERY: Duration = Duration::from_secs(1);

/// The counts not written yet.
#[derive(Debug, Default)]
pub(super) struct Throughput {
    /// Completed and failed rows, by second.
    seconds: BTreeMap<DateTime<Utc>, (i64, i64)>,
    /// When counts were last taken to be written.
    taken_at: Option<Instant>,
}

impl Throughput {
    /// Counts the rows among `written` that an outcome write settled at `at`.
    pub(super) fn count(&mut self, written: &[Written], at: DateTime<Utc>) {
        let completed = written
            .iter()
            .filter(|w| w.status == Status::Completed)
            .count() as i64;
        let failed = written
            .iter()
            .filter(|w| w.status == Status::Failed)
            .count() as i64;
        if completed + failed == 0 {
            return;
        }
        let second = at.duration_trunc(TimeDelta::seconds(1)).unwrap_or(at);
        let counts = self.seconds.entry(second).or_default();
        counts.0 += completed;
        counts.1 += failed;
    }

    /// When the counts held are due to be written: at once if none were written in the last
    /// second; `None` when none are held.
    pub(super) fn due(&self) -> Option<Instant> {
        if self.seconds.is_empty() {
            return None;
        }
        Some(self.taken_at.map_or_else(Instant::now, |t| t + EVERY))
    }

    /// The counts held, to be written now; they are no longer held.
    pub(super) fn take(&mut self) -> Vec<Settled> {
        self.taken_at = Some(Instant::now());
        std::mem::take(&mut self.seconds)
            .into_iter()
            .map(|(second, (completed, failed))| Settled {
                second,
                completed,
                failed,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(status: Status) -> Written {
        Written { id: 1, status }
    }

    #[test]
    fn counts_settled_rows_by_second_and_nothing_else() {
        let mut throughput = Throughput::default();
        let at = DateTime::parse_from_rfc3339("2026-12-07T10:00:00.250Z")
            .unwrap()
            .to_utc();
        throughput.count(&[written(Status::Pending)], at);
        assert!(throughput.due().is_none(), "a retry settles nothing");
        throughput.count(&[written(Status::Completed), written(Status::Failed)], at);
        throughput.count(
            &[written(Status::Completed)],
            at + TimeDelta::milliseconds(900),
        );
        assert!(
            throughput.due().unwrap() <= Instant::now(),
            "the first is due at once"
        );
        let second = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .to_utc();
        let taken = Instant::now();
        assert_eq!(
            throughput.take(),
            vec![
                Settled {
                    second,
                    completed: 1,
                    failed: 1
                },
                Settled {
                    second: second + TimeDelta::seconds(1),
                    completed: 1,
                    failed: 0
                },
            ]
        );
        assert!(throughput.due().is_none());
        throughput.count(&[written(Status::Completed)], at);
        // Measured from before the take, so no clock reading can race the assertion.
        assert!(
            throughput.due().unwrap() >= taken + EVERY,
            "then at most once a second"
        );
    }
}
