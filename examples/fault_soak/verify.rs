//! The verdict, once everything has settled: what the partners received and what the table
//! holds, checked against what the API accepted. Each broken promise becomes one line of
//! failure; the figures go to the summary either way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::chaos::Fault;
use crate::partners::{Behaviour, Call};
use crate::producer::Accepted;

/// One row of `webhook_queue`, as the checks need it.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: i64,
    pub queue_id: Uuid,
    pub partner: Option<Behaviour>,
    pub event_type: String,
    pub status: String,
    pub cancelled: bool,
    pub held_reason: Option<String>,
    pub retry_count: i32,
}

impl Row {
    pub fn settled(&self) -> bool {
        self.cancelled || self.status == "completed" || self.status == "failed"
    }
}

pub struct Input<'a> {
    pub accepted: &'a [Accepted],
    pub calls: &'a [Call],
    pub rows: &'a [Row],
    pub faults: &'a [Fault],
    /// Row ids whose outcome a worker discarded because its lease was taken over (from the
    /// `work` logs).
    pub lease_lost: &'a HashSet<i64>,
    pub poison_event_ids: &'a [String],
    /// Tripped or paused partners at the end: (partner, state).
    pub partner_states: &'a [(Behaviour, String)],
    pub lease: Duration,
}

#[derive(Default)]
pub struct Verdict {
    pub failures: Vec<String>,
    pub stranded: usize,
    pub inversions: usize,
    pub duplicates: usize,
    pub duplicates_unexplained: usize,
    pub missing_rows: usize,
    pub unacknowledged_rows: usize,
    /// (event id, final state) of each poisoned debit.
    pub poison_status: Vec<(String, String)>,
}

fn examples<T: std::fmt::Display>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(5).map(|i| i.to_string()).collect();
    let more = items.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

pub fn verify(input: &Input) -> Verdict {
    let mut v = Verdict::default();
    let rows: HashMap<Uuid, &Row> = input.rows.iter().map(|r| (r.queue_id, r)).collect();
    let accepted_ids: HashSet<Uuid> = input.accepted.iter().map(|a| a.queue_id).collect();

    // Every accepted event is a row.
    let missing: Vec<String> = input
        .accepted
        .iter()
        .filter(|a| !rows.contains_key(&a.queue_id))
        .map(|a| format!("{} {} ({})", a.event_type, a.event_id, a.queue_id))
        .collect();
    v.missing_rows = missing.len();
    if !missing.is_empty() {
        v.failures.push(format!(
            "{} accepted events have no row: {}",
            missing.len(),
            examples(&missing)
        ));
    }
    // Rows whose submit got no answer (the API died after the commit): allowed, reported.
    v.unacknowledged_rows = input
        .rows
        .iter()
        .filter(|r| !accepted_ids.contains(&r.queue_id))
        .count();

    // Every row is settled.
    let stranded: Vec<String> = input
        .rows
        .iter()
        .filter(|r| !r.settled())
        .map(|r| {
            format!(
                "{} {} of {} status {} held {} retry_count {}",
                r.event_type,
                r.queue_id,
                r.partner.map_or("?", Behaviour::name),
                r.status,
                r.held_reason.as_deref().unwrap_or("-"),
                r.retry_count
            )
        })
        .collect();
    v.stranded = stranded.len();
    if !stranded.is_empty() {
        v.failures.push(format!(
            "{} rows are not settled (pending or processing, not cancelled): {}",
            stranded.len(),
            examples(&stranded)
        ));
    }

    // Calls by queue id.
    let mut by_queue: HashMap<Uuid, Vec<&Call>> = HashMap::new();
    for call in input.calls {
        if let Some(id) = call.queue_id {
            by_queue.entry(id).or_default().push(call);
        }
    }

    // The partners that answer 2xx in the end: each of their events completed with a 2xx.
    let mut not_delivered: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut refused_not_failed = Vec::new();
    for a in input.accepted {
        let row = rows.get(&a.queue_id);
        let got_2xx = by_queue
            .get(&a.queue_id)
            .is_some_and(|calls| calls.iter().any(|c| c.ok()));
        let is_poison = a.partner == Behaviour::Poisoned
            && a.event_type == "-debit"
            && input.poison_event_ids.contains(&a.event_id);
        if is_poison {
            let status = row
                .map(|r| {
                    format!(
                        "{}{} after {} attempts",
                        r.status,
                        if r.cancelled { " (cancelled)" } else { "" },
                        by_queue.get(&a.queue_id).map_or(0, Vec::len)
                    )
                })
                .unwrap_or_else(|| "no row".into());
            v.poison_status.push((a.event_id.clone(), status));
            continue;
        }
        match a.partner {
            Behaviour::Refusing => {
                if row.is_some_and(|r| r.status != "failed") || got_2xx {
                    refused_not_failed.push(format!(
                        "{} {} ({})",
                        a.event_type,
                        a.event_id,
                        row.map_or("no row", |r| r.status.as_str())
                    ));
                }
            }
            _ => {
                let completed = row.is_some_and(|r| r.status == "completed" && !r.cancelled);
                if !(completed && got_2xx) {
                    not_delivered
                        .entry(a.partner.name())
                        .or_default()
                        .push(format!(
                            "{} {} ({}, {} calls, {})",
                            a.event_type,
                            a.event_id,
                            row.map_or("no row".to_string(), |r| format!(
                                "{}{}",
                                r.status,
                                r.held_reason
                                    .as_deref()
                                    .map(|h| format!(" held {h}"))
                                    .unwrap_or_default()
                            )),
                            by_queue.get(&a.queue_id).map_or(0, Vec::len),
                            if got_2xx { "a 2xx" } else { "no 2xx" }
                        ));
                }
            }
        }
    }
    for (partner, events) in &not_delivered {
        v.failures.push(format!(
            "{} events of the {partner} partner did not complete with a 2xx: {}",
            events.len(),
            examples(events)
        ));
    }
    if !refused_not_failed.is_empty() {
        v.failures.push(format!(
            "{} events of the refusing partner did not end failed: {}",
            refused_not_failed.len(),
            examples(&refused_not_failed)
        ));
    }

    // Money order: no debit reached its partner before its credit's first 2xx.
    let mut first_call: HashMap<(&str, &str), Instant> = HashMap::new();
    let mut first_ok: HashMap<(&str, &str), Instant> = HashMap::new();
    for call in input.calls {
        let key = (call.event_id.as_str(), call.event_type.as_str());
        first_call
            .entry(key)
            .and_modify(|t| *t = (*t).min(call.at))
            .or_insert(call.at);
        if call.ok() {
            first_ok
                .entry(key)
                .and_modify(|t| *t = (*t).min(call.at))
                .or_insert(call.at);
        }
    }
    let credits: HashSet<&str> = input
        .accepted
        .iter()
        .filter(|a| a.event_type == "+credit")
        .map(|a| a.event_id.as_str())
        .collect();
    let mut inversions = Vec::new();
    for a in input.accepted {
        if a.event_type != "-debit" || a.partner == Behaviour::Refusing {
            continue;
        }
        if !credits.contains(a.event_id.as_str()) {
            continue;
        }
        let Some(debit_at) = first_call.get(&(a.event_id.as_str(), "-debit")) else {
            continue;
        };
        match first_ok.get(&(a.event_id.as_str(), "+credit")) {
            Some(credit_at) if credit_at <= debit_at => {}
            Some(credit_at) => inversions.push(format!(
                "{}: debit called {:.0} ms before its credit's first 2xx",
                a.event_id,
                credit_at.duration_since(*debit_at).as_secs_f64() * 1000.0
            )),
            None => inversions.push(format!(
                "{}: debit called, its credit never answered 2xx",
                a.event_id
            )),
        }
    }
    v.inversions = inversions.len();
    if !inversions.is_empty() {
        v.failures.push(format!(
            "{} debits reached their partner before their credit's first 2xx: {}",
            inversions.len(),
            examples(&inversions)
        ));
    }

    // Duplicates: a queue id answered 2xx more than once. Only a worker that died, froze or
    // could not write its outcome (PostgreSQL down) may cause one, or a lease lost on a
    // starved machine (the worker logs it).
    let slack = Duration::from_secs(1);
    let row_ids: HashMap<Uuid, i64> = input.rows.iter().map(|r| (r.queue_id, r.id)).collect();
    let mut unexplained = Vec::new();
    for (queue_id, calls) in &by_queue {
        let oks: Vec<Instant> = calls.iter().filter(|c| c.ok()).map(|c| c.at).collect();
        if oks.len() < 2 {
            continue;
        }
        v.duplicates += 1;
        let (first, last) = (*oks.iter().min().unwrap(), *oks.iter().max().unwrap());
        let by_fault = input.faults.iter().any(|f| {
            f.kind.can_duplicate()
                && f.from <= last + slack
                && f.until + input.lease + slack >= first
        });
        let by_lease = row_ids
            .get(queue_id)
            .is_some_and(|id| input.lease_lost.contains(id));
        if !(by_fault || by_lease) {
            unexplained.push(format!(
                "{queue_id}: {} 2xx calls {:.0} ms apart",
                oks.len(),
                last.duration_since(first).as_secs_f64() * 1000.0
            ));
        }
    }
    v.duplicates_unexplained = unexplained.len();
    if !unexplained.is_empty() {
        v.failures.push(format!(
            "{} events were called twice with a 2xx with no worker fault, PostgreSQL restart or lost lease to explain it: {}",
            unexplained.len(),
            examples(&unexplained)
        ));
    }

    // Once settled, no partner is left tripped or paused: none is down any more.
    let not_active: Vec<String> = input
        .partner_states
        .iter()
        .map(|(p, state)| format!("{} is {state}", p.name()))
        .collect();
    if !not_active.is_empty() {
        v.failures.push(format!(
            "partners not active after settling: {}",
            not_active.join(", ")
        ));
    }
    v
}

/// `webhookd stats --json` against a GROUP BY over the table: total, by_status, cancelled,
/// by_event_type. `groups` are (event_type, status, cancelled, count).
pub fn compare_stats(
    stats: &serde_json::Value,
    groups: &[(String, String, bool, i64)],
) -> Vec<String> {
    let mut expected = serde_json::json!({
        "total": 0,
        "cancelled": 0,
        "by_status": {"pending": 0, "processing": 0, "completed": 0, "failed": 0},
        "by_event_type": {
            "+credit": {"pending": 0, "processing": 0, "completed": 0, "failed": 0},
            "-debit": {"pending": 0, "processing": 0, "completed": 0, "failed": 0},
        },
    });
    for (event_type, status, cancelled, n) in groups {
        let add = |v: &mut serde_json::Value| *v = (v.as_i64().unwrap_or(0) + n).into();
        if *cancelled {
            add(&mut expected["cancelled"]);
        } else {
            add(&mut expected["total"]);
            add(&mut expected["by_status"][status.as_str()]);
            add(&mut expected["by_event_type"][event_type.as_str()][status.as_str()]);
        }
    }
    let mut differences = Vec::new();
    for key in ["total", "cancelled", "by_status", "by_event_type"] {
        if stats[key] != expected[key] {
            differences.push(format!(
                "stats {key} is {} but the table says {}",
                stats[key], expected[key]
            ));
        }
    }
    differences
}

/// One line per partner: events accepted, rows by outcome, calls and how they were answered.
pub fn per_partner(accepted: &[Accepted], rows: &[Row], calls: &[Call]) -> Vec<String> {
    crate::partners::ALL
        .iter()
        .map(|&p| {
            let events = accepted.iter().filter(|a| a.partner == p).count();
            let of = |status: &str| {
                rows.iter()
                    .filter(|r| r.partner == Some(p) && !r.cancelled && r.status == status)
                    .count()
            };
            let cancelled = rows
                .iter()
                .filter(|r| r.partner == Some(p) && r.cancelled)
                .count();
            let mine: Vec<&Call> = calls.iter().filter(|c| c.partner == p).collect();
            let ok = mine.iter().filter(|c| c.ok()).count();
            let dropped = mine.iter().filter(|c| c.status == 0).count();
            format!(
                "{:<11} {events:>6} accepted; rows {} completed, {} failed, {} pending, {} processing, {cancelled} cancelled; {} calls ({ok} 2xx, {} other, {dropped} dropped)",
                p.name(),
                of("completed"),
                of("failed"),
                of("pending"),
                of("processing"),
                mine.len(),
                mine.len() - ok - dropped,
            )
        })
        .collect()
}
