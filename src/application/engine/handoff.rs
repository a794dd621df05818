//! Debits an outcome write leased with their credits' completion (money order), waiting for a
//! worker of the process to call them: the writer gives, the workers take before they claim.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::store::queue::outcome::LeasedDebit;

#[derive(Clone, Default)]
pub(super) struct Handoff(Arc<Mutex<Vec<Given>>>);

/// A leased debit, and when the write that leased it was sent: its lease began after that.
pub(super) struct Given {
    pub(super) debit: LeasedDebit,
    pub(super) lease_from: Instant,
}

impl Handoff {
    pub(super) fn give(&self, leased: Vec<LeasedDebit>, lease_from: Instant) {
        self.lock()
            .extend(leased.into_iter().map(|debit| Given { debit, lease_from }));
    }

    /// Up to `at_most` of the debits given, oldest first.
    pub(super) fn take(&self, at_most: usize) -> Vec<Given> {
        let mut given = self.lock();
        let n = at_most.min(given.len());
        given.drain(..n).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Given>> {
        // A panic while holding it cannot leave the list half changed.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
