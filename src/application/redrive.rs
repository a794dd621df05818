//! Bulk redrive: after a partner outage, put every matching failed entry through a fresh retry
//! cycle, as a manual retry does for one. Shared by `POST /webhooks/redrive` and
//! `webhookd redrive`.
//!
//! The run walks the matching rows once, in id order, [`BATCH`] rows per statement; each
//! statement archives and resets its rows on its own, so no lock is held for long and a run
//! cut short leaves only whole batches done. Running it again redrives nothing that the first
//! run redrove: those rows are no longer `failed`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;

use crate::store::queue::cycle::{self, RedriveFilter};
use crate::store::{bounded, DbPool};

use super::{conn, AppError};

/// Most rows one redrive takes, and the default.
pub const MAX_ROWS: i64 = 100_000;

/// Rows archived and reset by one statement.
pub const BATCH: i64 = 1000;

/// A validated redrive request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedriveRequest {
    pub filter: RedriveFilter,
    /// Count the matching rows, change nothing.
    pub dry_run: bool,
    /// Most rows to redrive, 1 to [`MAX_ROWS`].
    pub limit: i64,
}

impl RedriveRequest {
    /// Checks what the API and the CLI both take: the limit and the order of the time bounds.
    pub fn new(filter: RedriveFilter, dry_run: bool, limit: Option<i64>) -> Result<Self, AppError> {
        let limit = limit.unwrap_or(MAX_ROWS);
        if !(1..=MAX_ROWS).contains(&limit) {
            return Err(AppError::invalid(
                "limit",
                format!("must be an integer from 1 to {MAX_ROWS}"),
            ));
        }
        ordered("failed_before", filter.failed_after, filter.failed_before)?;
        ordered(
            "created_before",
            filter.created_after,
            filter.created_before,
        )?;
        Ok(Self {
            filter,
            dry_run,
            limit,
        })
    }
}

fn ordered(
    field: &str,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
) -> Result<(), AppError> {
    match (after, before) {
        (Some(after), Some(before)) if after >= before => Err(AppError::invalid(
            field,
            format!("must be later than {}", field.replace("_before", "_after")),
        )),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedriveOutcome {
    /// How many rows a real run would take now (at most the limit); nothing was changed.
    DryRun { matched: i64 },
    /// How many rows were put through a fresh retry cycle.
    Redriven { redriven: i64 },
}

/// Runs the redrive; its count and each selection are cancelled after `bound`
/// (`QUERY_TIMEOUT`).
pub async fn redrive(
    pool: &DbPool,
    request: &RedriveRequest,
    bound: Duration,
) -> Result<RedriveOutcome, AppError> {
    let mut conn = conn(pool).await?;
    if request.dry_run {
        let matched = conn
            .transaction(async |conn| {
                bounded::bound(conn, bound).await?;
                cycle::count_redrivable(conn, &request.filter).await
            })
            .await?;
        return Ok(RedriveOutcome::DryRun {
            matched: matched.min(request.limit),
        });
    }
    let mut redriven = 0;
    let mut after_id = 0;
    while redriven < request.limit {
        let wanted = BATCH.min(request.limit - redriven);
        let ids = conn
            .transaction(async |conn| {
                bounded::bound(conn, bound).await?;
                cycle::redrivable_ids(conn, &request.filter, after_id, wanted).await
            })
            .await?;
        let Some(&last) = ids.last() else { break };
        // A row retried or cancelled since it was read is left alone by `restart`.
        redriven += cycle::restart(&mut conn, &ids).await?.len() as i64;
        after_id = last;
        if (ids.len() as i64) < wanted {
            break;
        }
    }
    Ok(RedriveOutcome::Redriven { redriven })
}
