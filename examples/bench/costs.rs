//! What a phase cost PostgreSQL: commits and rows written in the bench database, WAL written and
//! CPU used by the server, read before and after the phase.
//!
//! PostgreSQL 15 counts commits and rows in each backend and flushes them to `pg_stat_database`
//! lazily: at most once a second while the backend is busy, and an idle backend flushes what is
//! left only after 10 s (`PGSTAT_IDLE_INTERVAL`), or when it exits. A reading is therefore
//! complete only once every backend that worked has exited or stayed idle for more than 10 s:
//! `bench ab` stops `serve` and `work` around its measured phase; `bench full` waits
//! [`IDLE_FLUSH`] instead. The bench's own connection flushes with
//! `pg_stat_force_next_flush()`, and every reading calls `pg_stat_clear_snapshot()` so that it
//! never sees a snapshot cached earlier in the session. WAL positions and `/proc` CPU times are
//! current at once.

use std::time::Duration;

use serde_json::{json, Value};

/// Longer than the 10 s after which an idle backend flushes its pending statistics.
pub const IDLE_FLUSH: Duration = Duration::from_millis(11_000);

/// Cumulative counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub commits: f64,
    pub inserted: f64,
    pub updated: f64,
    pub deleted: f64,
    /// WAL position in bytes (of the whole server).
    pub wal: f64,
    /// CPU seconds of the server's processes, exited backends included (see
    /// [`crate::procs::postgres_cpu_seconds`]).
    pub pg_cpu: f64,
}

pub async fn read(side: &tokio_postgres::Client) -> Counters {
    // Own pending counts first (this statement's transaction flushes them), then a fresh look.
    side.batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .ok();
    let backend = side
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pg_backend_pid")
        .get::<_, i32>(0) as u32;
    side.batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .expect("pg_stat_clear_snapshot");
    let row = side
        .query_one(
            "SELECT xact_commit::float8, tup_inserted::float8, tup_updated::float8, tup_deleted::float8,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8
               FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .expect("pg_stat_database");
    Counters {
        commits: row.get(0),
        inserted: row.get(1),
        updated: row.get(2),
        deleted: row.get(3),
        wal: row.get(4),
        pg_cpu: crate::procs::postgres_cpu_seconds(backend),
    }
}

/// What happened between two readings, per event where it says so.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    pub events: f64,
    pub commits_per_event: f64,
    pub inserted_per_event: f64,
    pub updated_per_event: f64,
    pub deleted_per_event: f64,
    pub wal_bytes_per_event: f64,
    /// CPU seconds of all PostgreSQL processes over the phase.
    pub pg_cpu_seconds: f64,
}

impl Cost {
    pub fn between(before: &Counters, after: &Counters, events: u64) -> Cost {
        let n = events as f64;
        Cost {
            events: n,
            commits_per_event: (after.commits - before.commits) / n,
            inserted_per_event: (after.inserted - before.inserted) / n,
            updated_per_event: (after.updated - before.updated) / n,
            deleted_per_event: (after.deleted - before.deleted) / n,
            wal_bytes_per_event: (after.wal - before.wal) / n,
            pg_cpu_seconds: after.pg_cpu - before.pg_cpu,
        }
    }

    /// `commits 3.02, rows +1.00 ~2.01 -0.00, WAL 1,234 B` (per event).
    pub fn summary(&self) -> String {
        format!(
            "commits {:.2}, rows +{:.2} ~{:.2} -{:.2}, WAL {:.0} B",
            self.commits_per_event,
            self.inserted_per_event,
            self.updated_per_event,
            self.deleted_per_event,
            self.wal_bytes_per_event
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "events": self.events,
            "commits_per_event": self.commits_per_event,
            "rows_inserted_per_event": self.inserted_per_event,
            "rows_updated_per_event": self.updated_per_event,
            "rows_deleted_per_event": self.deleted_per_event,
            "wal_bytes_per_event": self.wal_bytes_per_event,
            "postgres_cpu_seconds": self.pg_cpu_seconds,
        })
    }
}
