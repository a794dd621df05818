//! The second look at debits the API has just held for their credit (money order, docs/api.md, "Money order"):
//! an insert decides from its own snapshot and takes no lock, so a credit may complete between
//! that snapshot and the insert's commit without seeing the debit. Once the insert has
//! committed, its held debits go to the recheck service, which settles any whose credit did
//! (`store::queue::order::recheck`).
//!
//! The recheck runs beside the submits, not in their way: a submit hands its keys over and
//! answers, and the service runs one statement at a time for whatever keys gathered meanwhile,
//! on a connection of its own. A recheck that fails, or one the process dies before, leaves its
//! debits to the pruner's sweep.

use slog::{debug, warn, Logger};
use tokio::sync::mpsc;

use super::engine::service::Fed;
use super::engine::EngineError;
use crate::error_chain::describe;
use crate::store::queue::order;
use crate::store::DbPool;

/// Most keys one recheck statement takes.
const MAX_KEYS_PER_RECHECK: usize = 1000;

/// Keys waiting for their recheck; more are left to the sweep.
const QUEUED_KEYS: usize = 10_000;

/// The handle submits hand their held debits to. Its [`Rechecker`] is a service the process
/// runs beside the API (`startup::supervisor`).
pub struct DebitRechecks {
    queue: mpsc::Sender<(i64, String)>,
}

impl DebitRechecks {
    /// The handle, and the service that rechecks what is handed to it.
    pub fn new(pool: DbPool, log: &Logger) -> (Self, Rechecker) {
        let (queue, keys) = mpsc::channel(QUEUED_KEYS);
        let rechecker = Rechecker {
            pool,
            keys,
            log: log.new(slog::o!("task" => <Rechecker as Fed>::NAME)),
        };
        (Self { queue }, rechecker)
    }

    /// Asks for a recheck of these debits (partner, event id), whose insert has committed.
    pub fn after_commit(&self, keys: impl IntoIterator<Item = (i64, String)>) {
        for key in keys {
            if self.queue.try_send(key).is_err() {
                // Full (or stopped): the sweep settles the rest.
                return;
            }
        }
    }
}

/// Rechecks the keys that gathered, one statement at a time. Stopped, it rechecks the keys it
/// was given before.
pub struct Rechecker {
    pool: DbPool,
    keys: mpsc::Receiver<(i64, String)>,
    log: Logger,
}

impl Rechecker {
    async fn recheck(&self, keys: &[(i64, String)]) -> Result<i32, EngineError> {
        let mut conn = self.pool.get().await?;
        Ok(order::recheck(&mut conn, keys).await?)
    }
}

impl Fed for Rechecker {
    const NAME: &'static str = "debit rechecks";
    type Batch = Vec<(i64, String)>;

    async fn receive(&mut self) -> Option<Self::Batch> {
        let mut keys = Vec::with_capacity(MAX_KEYS_PER_RECHECK);
        let received = self.keys.recv_many(&mut keys, MAX_KEYS_PER_RECHECK).await;
        (received > 0).then_some(keys)
    }

    /// Rechecks the keys waiting now, in one statement. A failure is the sweep's to mend.
    async fn handle(&mut self, keys: Self::Batch) -> Result<(), EngineError> {
        match self.recheck(&keys).await {
            Ok(0) => {}
            Ok(settled) => debug!(self.log, "debits settled after their credit changed";
                "settled" => settled),
            Err(e) => warn!(self.log, "debit recheck failed; the pruner's sweep settles them";
                "debits" => keys.len(), "error" => describe(&e)),
        }
        Ok(())
    }

    fn close(&mut self) {
        self.keys.close();
    }
}
