//! The human-readable tables: the stats document (`webhookd stats`), the partners
//! (`webhookd partners`) and the invariants (`webhookd check`).

use std::fmt::Write;

use crate::application::check::{CheckReport, Invariant};
use crate::application::configs::Config;
use crate::application::stats;

fn rate(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

fn ms<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v} ms"))
}

/// The human-readable form of the stats document.
pub fn stats_table(d: &stats::StatsDocument) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "webhook queue at {}", d.generated_at);
    let _ = writeln!(out);
    write_by_status(&mut out, d);
    let _ = writeln!(out);
    write_totals(&mut out, d);
    if !d.by_partner.is_empty() {
        let _ = writeln!(out);
        write_by_partner(&mut out, &d.by_partner);
    }
    out
}

/// Rows by status: all events, then each event type.
fn write_by_status(out: &mut String, d: &stats::StatsDocument) {
    let row = |out: &mut String, label: &str, counts: [&dyn std::fmt::Display; 5]| {
        let [pending, processing, completed, failed, total] = counts;
        let _ = writeln!(
            out,
            "{label:<12} {pending:>10} {processing:>10} {completed:>10} {failed:>10} {total:>10}"
        );
    };
    row(
        out,
        "",
        [&"pending", &"processing", &"completed", &"failed", &"total"],
    );
    let s = &d.by_status;
    row(
        out,
        "all",
        [&s.pending, &s.processing, &s.completed, &s.failed, &d.total],
    );
    for (event_type, c) in d.by_event_type.iter() {
        let total = c.total();
        row(
            out,
            event_type.as_str(),
            [&c.pending, &c.processing, &c.completed, &c.failed, &total],
        );
    }
}

/// One line each: cancelled, held, success rate, oldest pending, last minute, attempts.
fn write_totals(out: &mut String, d: &stats::StatsDocument) {
    let _ = writeln!(out, "cancelled            {}", d.cancelled);
    let h = &d.held;
    let _ = writeln!(
        out,
        "held                 {} waiting for credit, {} partner paused, {} partner tripped",
        h.waiting_for_credit, h.partner_paused, h.partner_tripped
    );
    let _ = writeln!(out, "success rate         {}", rate(d.success_rate));
    let _ = writeln!(
        out,
        "oldest pending       {}",
        d.oldest_pending_age_seconds
            .map_or_else(|| "-".to_string(), |s| format!("{s:.1} s"))
    );
    let _ = writeln!(
        out,
        "last minute          {} completed, {} failed ({:.2}/s, {:.2}/s)",
        d.completed_last_minute,
        d.failed_last_minute,
        d.completed_last_minute as f64 / 60.0,
        d.failed_last_minute as f64 / 60.0
    );
    let a = &d.attempts;
    let _ = writeln!(
        out,
        "attempts             {} ({} succeeded, {} failed)",
        a.total, a.succeeded, a.failed
    );
    let _ = writeln!(
        out,
        "attempt duration     avg {}, p50 {}, p95 {}, p99 {}",
        ms(a.avg_duration_ms),
        ms(a.p50_duration_ms),
        ms(a.p95_duration_ms),
        ms(a.p99_duration_ms)
    );
}

fn write_by_partner(out: &mut String, partners: &[stats::PartnerStats]) {
    let row = |out: &mut String, cells: [&dyn std::fmt::Display; 9]| {
        let [config, partner, state, pending, held, completed, failed, cancelled, success] = cells;
        let _ = writeln!(
            out,
            "{config:<6} {partner:<24} {state:<8} {pending:>10} {held:>8} {completed:>10} {failed:>10} {cancelled:>10} {success:>9}"
        );
    };
    row(
        out,
        [
            &"config",
            &"partner",
            &"state",
            &"pending",
            &"held",
            &"completed",
            &"failed",
            &"cancelled",
            &"success",
        ],
    );
    for p in partners {
        let in_flight = p.by_status.pending + p.by_status.processing;
        row(
            out,
            [
                &p.config_id,
                &p.name,
                &p.state.as_str(),
                &in_flight,
                &p.held,
                &p.by_status.completed,
                &p.by_status.failed,
                &p.cancelled,
                &rate(p.success_rate),
            ],
        );
    }
}

/// The table `webhookd partners` prints: one line per partner.
pub fn partners_table(configs: &[Config]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<24} {:<8} {:<9} {:>8}  last error",
        "id", "name", "state", "reason", "held"
    );
    for c in configs {
        let h = &c.health;
        let _ = writeln!(
            out,
            "{:<6} {:<24} {:<8} {:<9} {:>8}  {}",
            c.id,
            c.name,
            h.state.as_str(),
            h.reason.map_or("-", |r| r.as_str()),
            h.held,
            h.last_error.as_deref().unwrap_or("-")
        );
    }
    out
}

/// The table `webhookd check` prints: one line per invariant, then the verdict.
pub fn check_table(report: &CheckReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "invariants at {}", report.checked_at);
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<26} {:>8}  examples", "invariant", "count");
    for invariant in Invariant::ALL {
        let v = report.invariants.get(invariant);
        let examples = if v.examples.is_empty() {
            "-".to_string()
        } else {
            v.examples.join(", ")
        };
        let count = if v.checked {
            v.count.to_string()
        } else {
            "?".to_string()
        };
        let _ = writeln!(
            out,
            "{:<26} {:>8}  {}",
            invariant.as_str(),
            count,
            if v.checked {
                examples.as_str()
            } else {
                "not checked: took longer than QUERY_TIMEOUT"
            }
        );
    }
    let _ = writeln!(out);
    match (report.broken, report.unchecked) {
        (0, 0) => {
            let _ = writeln!(out, "all invariants hold");
        }
        (0, n) => {
            let _ = writeln!(
                out,
                "the others hold; {n} not checked: run again with a longer QUERY_TIMEOUT (docs/operations.md)"
            );
        }
        (n, _) => {
            let _ = writeln!(
                out,
                "{n} broken; the pruner heals them at its next pass (docs/operations.md)"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_table_names_each_invariant_with_its_examples() {
        let mut report = CheckReport {
            ok: false,
            broken: 1,
            unchecked: 1,
            checked_at: "2026-12-07T12:00:00.000Z".into(),
            invariants: Default::default(),
        };
        report.invariants.tripped_without_probe.count = 2;
        report.invariants.tripped_without_probe.examples = vec!["3".into(), "9".into()];
        report.invariants.counters_drift.checked = false;
        let table = check_table(&report);
        let line = table
            .lines()
            .find(|l| l.starts_with("tripped_without_probe"))
            .unwrap();
        assert!(line.ends_with("2  3, 9"), "{table}");
        assert_eq!(table.lines().filter(|l| l.ends_with("0  -")).count(), 2);
        let drift = table
            .lines()
            .find(|l| l.starts_with("counters_drift"))
            .unwrap();
        assert!(drift.contains("?  not checked"), "{table}");
        assert!(table.contains("1 broken"), "{table}");
    }

    #[test]
    fn the_stats_table_shows_throughput_and_partner_success_rates() {
        let counts = |completed, failed| stats::StatusCounts {
            completed,
            failed,
            ..Default::default()
        };
        let document = stats::StatsDocument {
            total: 4,
            by_status: counts(3, 1),
            cancelled: 0,
            held: Default::default(),
            by_event_type: Default::default(),
            success_rate: Some(0.75),
            attempts: Default::default(),
            oldest_pending_age_seconds: None,
            completed_last_minute: 90,
            failed_last_minute: 3,
            by_partner: vec![stats::PartnerStats {
                config_id: 4,
                name: "acme".into(),
                by_status: counts(3, 1),
                cancelled: 0,
                success_rate: Some(0.75),
                state: crate::domain::partner::PartnerState::Tripped,
                reason: Some(crate::domain::partner::StateReason::Failures),
                held: 0,
            }],
            generated_at: "2026-11-28T12:00:00.000Z".into(),
        };
        let table = stats_table(&document);
        assert!(
            table.contains("last minute          90 completed, 3 failed (1.50/s, 0.05/s)"),
            "{table}"
        );
        let partner = table.lines().find(|l| l.contains("acme")).unwrap();
        assert!(partner.trim_end().ends_with("75.0%"), "{table}");
        assert!(partner.contains("tripped"), "{table}");
    }
}
