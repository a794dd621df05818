//! Submitting events: validate against the partner config, build the URL once, insert
//! idempotently.

use std::collections::{BTreeSet, HashMap, HashSet};

use diesel_async::AsyncPgConnection;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::call_settings::{CallSettings, HeaderValue};
use crate::domain::delivery::HeldReason;
use crate::domain::event::{EventType, UrlParams};
use crate::domain::header_template::{FillError, HeaderTemplate};
use crate::domain::placeholders::EventValues;
use crate::domain::request_template::{FilledRequest, RequestTemplate};
use crate::domain::url_template::UrlTemplate;
use crate::store::configs::{self, Versioned};
use crate::store::models::{ConfigRow, QueueRow};
use crate::store::queue::submit::{self, NewEntry};
use crate::store::DbPool;

use super::config_cache::ConfigCache;
use super::entries::Entry;
use super::rechecks::DebitRechecks;
use super::{conn, AppError};

/// A parsed submit request.
#[derive(Clone, Debug)]
pub struct SubmitRequest {
    pub event_type: EventType,
    pub event_id: Option<String>,
    pub config_id: i64,
    pub url_params: UrlParams,
    /// The parameters as submitted, stored and compared for idempotency.
    pub url_params_json: Value,
}

#[derive(Debug)]
pub enum Submitted {
    /// A new entry (201).
    Created(Entry),
    /// The same event was submitted before (200); nothing was created.
    Existing(Entry),
}

/// Turns a request into the row to insert, or says which field is at fault.
fn prepare(
    config: Option<&ConfigRow>,
    request: &SubmitRequest,
    default_max_retries: i32,
) -> Result<NewEntry, AppError> {
    let config = config
        .filter(|c| c.is_active)
        .ok_or_else(|| AppError::invalid("config_id", "does not name an active config"))?;
    let template = config.url_for(request.event_type).ok_or_else(|| {
        AppError::invalid(
            "event_type",
            format!(
                "config {} has no URL for {} events",
                config.id, request.event_type
            ),
        )
    })?;
    let stored = |e: &dyn std::fmt::Display| {
        AppError::internal(format!(
            "stored settings of config {} are invalid: {e}",
            config.id
        ))
    };
    let template = UrlTemplate::parse(template).map_err(|e| stored(&e))?;
    let settings = config.call_settings().map_err(|e| stored(&e))?;
    let values = EventValues {
        params: &request.url_params,
        event_type: request.event_type,
        event_id: request.event_id.as_deref(),
    };
    let filled = fill_request(&settings, &values, request).map_err(|e| match e {
        Fill::Stored(e) => stored(&e),
        Fill::Params(e) => AppError::invalid(format!("url_params.{}", e.param()), e.to_string()),
    })?;
    let webhook_url = template
        .build(&values, &filled.used)
        .map_err(|e| AppError::invalid(format!("url_params.{}", e.0), e.to_string()))?;
    Ok(NewEntry {
        // Time-ordered, so the unique index on queue_id takes new entries at one edge instead
        // of on a random page of an index as large as the history (docs/decisions.md).
        queue_id: Uuid::now_v7(),
        event_type: request.event_type,
        event_id: request.event_id.clone(),
        config_id: config.id,
        webhook_url,
        url_params: request.url_params_json.clone(),
        max_retries: config.max_retries.unwrap_or(default_max_retries),
        request: (!filled.request.is_plain_get())
            .then(|| serde_json::to_value(&filled.request).expect("a request serializes")),
    })
}

/// The request filled for one event, and the parameters its body and headers used (those
/// are not appended to the URL).
struct Filled {
    request: FilledRequest,
    used: BTreeSet<String>,
}

enum Fill {
    /// The config's stored templates do not parse: not the submitter's fault.
    Stored(String),
    Params(FillError),
}

fn fill_request(
    settings: &CallSettings,
    values: &EventValues<'_>,
    request: &SubmitRequest,
) -> Result<Filled, Fill> {
    let spec = match request.event_type {
        EventType::Credit => settings.postback_request.as_ref(),
        EventType::Debit => settings.chargeback_request.as_ref(),
    };
    let template = match spec {
        Some(spec) => RequestTemplate::parse(spec).map_err(|e| Fill::Stored(e.to_string()))?,
        None => RequestTemplate::get(),
    };
    let mut filled = template
        .fill(values, &request.url_params_json)
        .map_err(|e| Fill::Params(e.into()))?;
    let mut used: BTreeSet<String> = template
        .placeholders()
        .into_iter()
        .map(String::from)
        .collect();
    for header in &settings.headers {
        let HeaderValue::Value(text) = &header.value else {
            continue;
        };
        let header =
            HeaderTemplate::parse(&header.name, text).map_err(|e| Fill::Stored(e.to_string()))?;
        used.extend(header.placeholders().map(String::from));
        filled
            .headers
            .push(header.fill(values).map_err(Fill::Params)?);
    }
    Ok(Filled {
        request: filled,
        used,
    })
}

/// Most events one `POST /webhooks/batch` may carry.
pub const MAX_EVENTS_PER_BATCH: usize = 1000;

/// How often a batch is built again because a config changed while it was submitted.
const STALE_RETRIES: usize = 3;

type Key = (i64, EventType, String);

/// Each request as the entry it makes: `None` where the request did not parse, the refusal
/// where it makes none.
type Prepared = Vec<Option<Result<NewEntry, AppError>>>;

/// Submits events with one insert statement, which also notifies the workers, plus a read of
/// the configs when `cache` has no copy of one (or a copy refused an event, or was stale), and
/// one lookup of existing rows when some idempotency keys were taken. Requests that failed to
/// parse come in as errors and go out unchanged, in place, so answers line up with requests.
/// Debits held for a credit queued before them go to `rechecks` once inserted (see
/// [`held_for_earlier_credits`]).
pub async fn submit_batch(
    pool: &DbPool,
    cache: &ConfigCache,
    rechecks: &DebitRechecks,
    requests: Vec<Result<SubmitRequest, AppError>>,
    default_max_retries: i32,
) -> Result<Vec<Result<Submitted, AppError>>, AppError> {
    let mut conn = conn(pool).await?;
    let (prepared, inserted) = insert(&mut conn, cache, &requests, default_max_retries).await?;
    rechecks.after_commit(held_for_earlier_credits(inserted.values()));
    let existing = existing_rows(&mut conn, &requests, &prepared, &inserted).await?;
    Ok(answers(requests, prepared, inserted, existing))
}

/// Prepares the requests against the configs and inserts the entries, by their queue id. A
/// refusal is only ever decided on a fresh read of the configs; a copy found stale by the
/// insert is read again and the batch built again, [`STALE_RETRIES`] times at most.
async fn insert(
    conn: &mut AsyncPgConnection,
    cache: &ConfigCache,
    requests: &[Result<SubmitRequest, AppError>],
    default_max_retries: i32,
) -> Result<(Prepared, HashMap<Uuid, QueueRow>), AppError> {
    let mut config_ids: Vec<i64> = requests.iter().flatten().map(|r| r.config_id).collect();
    config_ids.sort_unstable();
    config_ids.dedup();
    let (mut configs, mut fresh) = match cache.copies(&config_ids) {
        Some(copies) => (copies, false),
        None => (read_configs(conn, cache, &config_ids).await?, true),
    };
    let mut tries = 0;
    loop {
        let prepared = prepare_all(requests, &configs, default_max_retries);
        if !fresh && prepared.iter().flatten().any(Result::is_err) {
            (configs, fresh) = (read_configs(conn, cache, &config_ids).await?, true);
            continue;
        }
        let entries: Vec<NewEntry> = prepared.iter().flatten().flatten().cloned().collect();
        match submit::insert_new(conn, &entries, &versions_used(&entries, &configs)).await {
            Ok(rows) => {
                return Ok((
                    prepared,
                    rows.into_iter().map(|r| (r.queue_id, r)).collect(),
                ))
            }
            Err(e) if submit::configs_changed(&e) && tries < STALE_RETRIES => {
                tries += 1;
                (configs, fresh) = (read_configs(conn, cache, &config_ids).await?, true);
            }
            Err(e) if submit::deadlocked(&e) && tries < STALE_RETRIES => tries += 1,
            Err(e) if submit::configs_changed(&e) => {
                return Err(AppError::unavailable(
                    "partner configs kept changing during this submit; try again",
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn prepare_all(
    requests: &[Result<SubmitRequest, AppError>],
    configs: &HashMap<i64, Versioned>,
    default_max_retries: i32,
) -> Prepared {
    requests
        .iter()
        .map(|request| {
            let r = request.as_ref().ok()?;
            Some(prepare(
                configs.get(&r.config_id).map(|c| &c.row),
                r,
                default_max_retries,
            ))
        })
        .collect()
}

/// The `(id, version)` of each config the entries were built from, each once.
fn versions_used(entries: &[NewEntry], configs: &HashMap<i64, Versioned>) -> Vec<(i64, i64)> {
    let mut used: Vec<(i64, i64)> = entries
        .iter()
        .map(|e| (e.config_id, configs[&e.config_id].version))
        .collect();
    used.sort_unstable();
    used.dedup();
    used
}

fn key_of(r: &SubmitRequest) -> Option<Key> {
    r.event_id.clone().map(|id| (r.config_id, r.event_type, id))
}

/// The rows under the keys that exist already: taken before (or earlier in this batch), or
/// refused now but submitted before — a producer retrying gets its entry even if the config
/// has changed.
async fn existing_rows(
    conn: &mut AsyncPgConnection,
    requests: &[Result<SubmitRequest, AppError>],
    prepared: &Prepared,
    inserted: &HashMap<Uuid, QueueRow>,
) -> Result<HashMap<Key, QueueRow>, AppError> {
    let wanted: Vec<Key> = requests
        .iter()
        .zip(prepared)
        .filter_map(|(request, entry)| {
            let (request, entry) = (request.as_ref().ok()?, entry.as_ref()?);
            let taken = entry
                .as_ref()
                .map_or(true, |e| !inserted.contains_key(&e.queue_id));
            taken.then(|| key_of(request)).flatten()
        })
        .collect();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(submit::find_by_keys(conn, &wanted)
        .await?
        .into_iter()
        .filter_map(|row| Some(((row.config_id, row.event_type, row.event_id.clone()?), row)))
        .collect())
}

/// Each request's answer, in order: created, the same event again, a conflict, or why it
/// was refused.
fn answers(
    requests: Vec<Result<SubmitRequest, AppError>>,
    prepared: Prepared,
    mut inserted: HashMap<Uuid, QueueRow>,
    existing: HashMap<Key, QueueRow>,
) -> Vec<Result<Submitted, AppError>> {
    requests
        .into_iter()
        .zip(prepared)
        .map(|(request, entry)| {
            let (request, entry) = (request?, entry.expect("parsed requests were prepared"));
            let found = key_of(&request).and_then(|key| existing.get(&key).cloned());
            match (entry, found) {
                (Ok(entry), _) if inserted.contains_key(&entry.queue_id) => Ok(Submitted::Created(
                    inserted.remove(&entry.queue_id).expect("checked").into(),
                )),
                (_, Some(row)) => same_event(row, &request.url_params_json),
                (Ok(_), None) => Err(AppError::internal(
                    "idempotency conflict without an existing row",
                )),
                (Err(refusal), None) => Err(refusal),
            }
        })
        .collect()
}

/// The keys (partner, event id) of the inserted debits held for a credit queued before them:
/// that credit may have completed after the insert read it (docs/api.md, "Money order"; see
/// `application::rechecks`). A debit whose credit came in the same insert needs no second look:
/// no worker could claim that credit before the insert committed.
fn held_for_earlier_credits<'a>(
    inserted: impl Iterator<Item = &'a QueueRow> + Clone,
) -> Vec<(i64, String)> {
    let key = |row: &QueueRow| Some((row.config_id, row.event_id.clone()?));
    let credits: HashSet<(i64, String)> = inserted
        .clone()
        .filter(|row| row.event_type == EventType::Credit)
        .filter_map(key)
        .collect();
    inserted
        .filter(|row| {
            row.event_type == EventType::Debit
                && row.held_reason == Some(HeldReason::WaitingForCredit)
        })
        .filter_map(key)
        .filter(|key| !credits.contains(key))
        .collect()
}

/// Reads configs from the database and keeps copies in `cache`.
async fn read_configs(
    conn: &mut AsyncPgConnection,
    cache: &ConfigCache,
    ids: &[i64],
) -> Result<HashMap<i64, Versioned>, AppError> {
    let fresh: HashMap<i64, Versioned> = configs::find_versioned(conn, ids)
        .await?
        .into_iter()
        .map(|c| (c.row.id, c))
        .collect();
    cache.store(ids, &fresh);
    Ok(fresh)
}

/// The answer when the idempotency key exists: the same event again (200), or a different
/// one under a reused id (409).
fn same_event(existing: QueueRow, url_params: &Value) -> Result<Submitted, AppError> {
    if existing.url_params == *url_params {
        Ok(Submitted::Existing(existing.into()))
    } else {
        Err(AppError::Conflict(format!(
            "event {} was submitted before with different url_params",
            existing.event_id.unwrap_or_default()
        )))
    }
}
