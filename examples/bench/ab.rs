//! `bench ab`: two webhookd builds (and an optional anchor) measured in alternating rounds of
//! one run, A B, B A, A B, ... (with an anchor A B C, C B A, ...), each round on a fresh database
//! migrated by that build. Each pair of adjacent rounds gives one ratio per figure, so a drift of
//! the shared machine over minutes moves both builds of a pair alike and the ratios stay put.
//!
//! A round is two phases against fresh `serve` and `work` processes of its build, with the
//! autovacuum off and one `VACUUM ANALYZE` between the phases (see [`autovacuum_off`]):
//!
//! 1. saturation: `--clients` closed-loop single submits for `--saturation` while `work`
//!    delivers; the figure is the end-to-end rate (delivered/s, capped by submitted/s);
//! 2. paced: `--paced-events` single submits at `--paced-rate`, from fresh processes again: p50
//!    and p99 of submit → partner, CPU seconds of serve + work and of PostgreSQL, and per event
//!    the commits and rows written in the bench database and the WAL written (see
//!    [`crate::costs`] for why the processes are stopped before the last reading).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::costs::{self, Cost};
use crate::full::{self, wait_for};
use crate::load;
use crate::procs::{self, Proc};
use crate::receiver::Receiver;
use crate::report::{median, Table};
use crate::{Args, Ctx};

const GRACE: Duration = Duration::from_secs(30);

/// One build under test: a webhookd binary and the name it is shown with.
#[derive(Clone, Debug)]
pub struct Build {
    /// A, B or C.
    pub letter: &'static str,
    pub label: String,
    pub bin: PathBuf,
}

impl Build {
    /// `[LABEL=]PATH`, as `scripts/bench-ab.sh` passes it.
    fn parse(letter: &'static str, spec: &str) -> Build {
        let (label, path) = match spec.split_once('=') {
            Some((label, path)) if !label.is_empty() => (label.to_string(), path),
            _ => (spec.to_string(), spec),
        };
        let bin = std::fs::canonicalize(path).unwrap_or_else(|e| {
            panic!(
                "{letter}: {path:?} is not a webhookd binary ({e}); `just bench ab` builds git \
                 revisions and worktrees into binaries first (scripts/bench-ab.sh)"
            )
        });
        assert!(
            bin.is_file(),
            "{letter}: {} is not a file: pass a webhookd binary (`just bench ab` builds \
             revisions and worktrees)",
            bin.display()
        );
        Build { letter, label, bin }
    }
}

struct Figure {
    key: &'static str,
    name: &'static str,
    unit: &'static str,
    decimals: usize,
}

/// What each round measures, in the order of [`Round::values`].
const FIGURES: &[Figure] = &[
    Figure {
        key: "end_to_end_per_s",
        name: "end to end at saturation, delivered",
        unit: "ev/s",
        decimals: 0,
    },
    Figure {
        key: "p50_ms",
        name: "paced: submit -> partner p50",
        unit: "ms",
        decimals: 2,
    },
    Figure {
        key: "p99_ms",
        name: "paced: submit -> partner p99",
        unit: "ms",
        decimals: 1,
    },
    Figure {
        key: "webhookd_cpu_s",
        name: "paced: CPU of serve + work",
        unit: "s",
        decimals: 2,
    },
    Figure {
        key: "postgres_cpu_s",
        name: "paced: CPU of PostgreSQL, all processes",
        unit: "s",
        decimals: 2,
    },
    Figure {
        key: "postgres_backends_cpu_s",
        name: "paced: CPU of the bench's backends",
        unit: "s",
        decimals: 2,
    },
    Figure {
        key: "commits_per_event",
        name: "paced: commits per event",
        unit: "",
        decimals: 2,
    },
    Figure {
        key: "rows_inserted_per_event",
        name: "paced: rows inserted per event",
        unit: "",
        decimals: 2,
    },
    Figure {
        key: "rows_updated_per_event",
        name: "paced: rows updated per event",
        unit: "",
        decimals: 2,
    },
    Figure {
        key: "rows_deleted_per_event",
        name: "paced: rows deleted per event",
        unit: "",
        decimals: 2,
    },
    Figure {
        key: "wal_bytes_per_event",
        name: "paced: WAL bytes per event",
        unit: "B",
        decimals: 0,
    },
];

struct Round {
    /// Index into the builds.
    build: usize,
    values: Vec<f64>,
    /// Counts that qualify the figures (errors, events that never arrived, ...).
    notes: Value,
}

/// Rounds in order, as indexes into the builds: 0 1, 1 0, ... (0 1 2, 2 1 0, ... with three).
fn schedule(builds: usize, pairs: usize) -> Vec<usize> {
    (0..pairs)
        .flat_map(|p| {
            let mut group: Vec<usize> = (0..builds).collect();
            if p % 2 == 1 {
                group.reverse();
            }
            group
        })
        .collect()
}

pub async fn run(args: Args) {
    assert!(
        args.builds.len() == 2,
        "bench ab wants two builds, A and B (and --anchor C), got {:?}",
        args.builds
    );
    assert!(args.pairs >= 1, "--pairs must be at least 1");
    let mut builds = vec![
        Build::parse("A", &args.builds[0]),
        Build::parse("B", &args.builds[1]),
    ];
    if let Some(anchor) = &args.anchor {
        builds.push(Build::parse("C", anchor));
    }
    let order = schedule(builds.len(), args.pairs);
    let paced = Duration::from_secs_f64(args.paced_events as f64 / args.paced_rate);
    println!("webhookd bench ab: {} rounds", order.len());
    for b in &builds {
        println!("  {}  {}  ({})", b.letter, b.label, b.bin.display());
    }
    println!(
        "  order       {}",
        order
            .iter()
            .map(|&i| builds[i].letter)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  each round  fresh database; {} single-submit clients x {:?} while work delivers; then {} events at {:.0}/s ({:?}) from fresh processes",
        args.clients, args.saturation, args.paced_events, args.paced_rate, paced
    );
    let receiver = Receiver::start();
    let mut rounds = Vec::new();
    let mut settings = Vec::new();
    for (n, &b) in order.iter().enumerate() {
        let (round, ctx_settings) =
            round(&args, &builds[b], b, &receiver, n + 1, order.len()).await;
        settings = ctx_settings;
        rounds.push(round);
    }
    report(&args, &builds, &rounds, &settings);
}

/// Turns the autovacuum off for every table of the round's database. A fresh database's first
/// autovacuum and autoanalyze of the queue otherwise fall inside the paced phase in some
/// rounds and not others, and move its WAL per event by a quarter (docs/performance.md). The
/// round runs one `VACUUM ANALYZE` between the phases instead, outside both measurements.
async fn autovacuum_off(side: &tokio_postgres::Client) {
    side.batch_execute(
        "DO $$ DECLARE t regclass; BEGIN
             FOR t IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = 'public' AND c.relkind = 'r' LOOP
                 EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off)', t);
             END LOOP;
         END $$",
    )
    .await
    .expect("autovacuum off for the round");
}

async fn round(
    args: &Args,
    build: &Build,
    index: usize,
    receiver: &Receiver,
    n: usize,
    total: usize,
) -> (Round, Vec<(String, String)>) {
    let started = Instant::now();
    let mut round_args = args.clone();
    round_args.phase = args.saturation;
    let mut ctx = crate::open(
        round_args,
        build.bin.clone(),
        receiver.clone(),
        &format!("webhookd_bench_ab_r{n}"),
    )
    .await;

    autovacuum_off(&ctx.side).await;
    let work = start_work(&ctx, &format!("work-ab-r{n}")).await;
    let saturation = full::pipeline(&ctx, false, format!("ab-sat-r{n}")).await;
    work.stop(GRACE).await;
    ctx.stop_serve().await;
    wait_backends_gone(&ctx, &[]).await;
    ctx.side
        .batch_execute("VACUUM ANALYZE")
        .await
        .expect("VACUUM ANALYZE between the phases");

    let before = costs::read(&ctx.side).await;
    ctx.start_serve().await;
    let work = start_work(&ctx, &format!("work-ab-paced-r{n}")).await;
    let cpu_before = ctx.serve.cpu_seconds() + work.cpu_seconds();
    let latency = full::latency_phase(
        &ctx,
        args.paced_rate,
        Duration::from_secs_f64(args.paced_events as f64 / args.paced_rate),
        format!("ab-paced-r{n}"),
    )
    .await;
    let webhookd_cpu = ctx.serve.cpu_seconds() + work.cpu_seconds() - cpu_before;
    let backends = backend_pids(&ctx).await;
    // All of them connected after `before`, so all of their time belongs to this phase.
    let backends_cpu: f64 = backends
        .iter()
        .filter_map(|&pid| procs::cpu_times(pid))
        .map(|t| t.own)
        .sum();
    work.stop(GRACE).await;
    ctx.stop_serve().await;
    wait_backends_gone(&ctx, &backends).await;
    let after = costs::read(&ctx.side).await;
    // The event `start_work` sent to see `work` deliver was submitted between the readings too.
    let cost = Cost::between(&before, &after, latency.sent as u64 + 1);
    let settings = ctx.settings.clone();
    crate::teardown(ctx).await;

    let values = vec![
        saturation.rate(),
        latency.p50,
        latency.p99,
        webhookd_cpu,
        cost.pg_cpu_seconds,
        backends_cpu,
        cost.commits_per_event,
        cost.inserted_per_event,
        cost.updated_per_event,
        cost.deleted_per_event,
        cost.wal_bytes_per_event,
    ];
    debug_assert_eq!(values.len(), FIGURES.len());
    println!(
        "round {n}/{total} {}: end to end {:.0}/s (submitted {:.0}/s, {} errors); paced {} sent, {} missing: p50 {:.2} ms, p99 {:.1} ms; CPU serve+work {:.2} s, PostgreSQL {:.2} s (backends {:.2} s); per event {} ({:.0} s)",
        build.letter,
        saturation.rate(),
        saturation.submitted.rate(),
        saturation.submitted.errors,
        latency.sent,
        latency.missing,
        latency.p50,
        latency.p99,
        webhookd_cpu,
        cost.pg_cpu_seconds,
        backends_cpu,
        cost.summary(),
        started.elapsed().as_secs_f64()
    );
    if let Some(e) = &saturation.submitted.first_error {
        println!("    saturation: first submit error: {e}");
    }
    let notes = json!({
        "saturation": {
            "submitted_per_s": saturation.submitted.rate(),
            "delivered_per_s": saturation.delivered_rate(),
            "submit_errors": saturation.submitted.errors,
            "backlog_at_end": saturation.backlog,
        },
        "paced": {
            "sent": latency.sent, "errors": latency.errors, "skipped": latency.skipped,
            "missing": latency.missing, "max_ms": latency.max,
            "answered_p50_ms": latency.answered_p50,
        },
        "cost": cost.json(),
    });
    (
        Round {
            build: index,
            values,
            notes,
        },
        settings,
    )
}

/// Starts `work` and waits until it has delivered one event, so that the phase after it does
/// not time the process start.
pub async fn start_work(ctx: &Ctx, name: &str) -> Proc {
    ctx.receiver.reset(false);
    let mut env = ctx.work_env.clone();
    env.push(("WORKER_ID".into(), name.into()));
    let mut work = Proc::start(&ctx.bin, "work", name, &env, &ctx.out_dir);
    let response = ctx
        .api
        .client
        .post(format!("{}/webhooks", ctx.api.base))
        .header("Content-Type", "application/json")
        .body(load::event_json(
            ctx.api.config_id,
            "+credit",
            &format!("{name}-first"),
            0,
        ))
        .send()
        .await
        .expect("submit the first event");
    assert_eq!(response.status().as_u16(), 201, "first event");
    wait_for("work's first call", Duration::from_secs(30), || {
        work.assert_running();
        ctx.receiver.calls() > 0
    })
    .await;
    ctx.receiver.reset(false);
    work
}

/// The other backends connected to the bench database.
async fn backend_pids(ctx: &Ctx) -> Vec<u32> {
    ctx.side
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|r| r.get::<_, i32>(0) as u32)
        .collect()
}

/// Waits until no other backend is connected to the bench database and the processes of
/// `pids` are gone: a backend flushes its statistics before it leaves `pg_stat_activity`, and
/// once the postmaster has reaped it, its CPU time is in the postmaster's children's time.
async fn wait_backends_gone(ctx: &Ctx, pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connected = backend_pids(ctx).await.len();
        let alive = pids
            .iter()
            .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            .count();
        if connected == 0 && alive == 0 {
            return;
        }
        if Instant::now() > deadline {
            println!("    warning: {connected} backends still connected, {alive} not yet reaped");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Per figure: the median of each build's rounds, and the median (min, max) of the ratios X/A
/// over the groups of adjacent rounds.
fn report(args: &Args, builds: &[Build], rounds: &[Round], settings: &[(String, String)]) {
    let group = builds.len();
    let value = |g: &[Round], b: usize, f: usize| {
        g.iter()
            .find(|r| r.build == b)
            .map_or(f64::NAN, |r| r.values[f])
    };
    let of_build = |b: usize, f: usize| -> Vec<f64> {
        rounds
            .iter()
            .filter(|r| r.build == b)
            .map(|r| r.values[f])
            .collect()
    };
    // ratios[x][f]: X/A of figure f in each group, for x = 1 (B) and 2 (C).
    let ratios: Vec<Vec<Vec<f64>>> = (0..group)
        .map(|x| {
            (0..FIGURES.len())
                .map(|f| {
                    rounds
                        .chunks(group)
                        .filter(|g| g.len() == group)
                        .map(|g| value(g, x, f) / value(g, 0, f))
                        .collect()
                })
                .collect()
        })
        .collect();
    let spread = |v: &[f64]| {
        let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (median(&finite), min, max)
    };

    let mut header = vec!["figure".to_string(), "A".to_string()];
    for b in &builds[1..] {
        header.push(b.letter.to_string());
        header.push(format!("{}/A (min-max)", b.letter));
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = Table::new(&header);
    for (f, figure) in FIGURES.iter().enumerate() {
        let unit = if figure.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", figure.unit)
        };
        let mut cells = vec![
            figure.name.to_string(),
            format!("{:.*}{unit}", figure.decimals, median(&of_build(0, f))),
        ];
        for (x, ratios) in ratios.iter().enumerate().skip(1) {
            cells.push(format!(
                "{:.*}{unit}",
                figure.decimals,
                median(&of_build(x, f))
            ));
            let (m, min, max) = spread(&ratios[f]);
            cells.push(if m.is_finite() {
                format!("{m:.3} ({min:.2}-{max:.2})")
            } else {
                "-".to_string()
            });
        }
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        t.row(&cells);
    }
    println!();
    println!(
        "results: median of each build's {} rounds; X/A is the median (min-max) of the ratios in the {} groups of adjacent rounds",
        args.pairs,
        args.pairs
    );
    for b in builds {
        println!("  {} = {}", b.letter, b.label);
    }
    print!("{}", t.render());
    println!(
        "load average at end {:.2}",
        procs::load_average().unwrap_or(f64::NAN)
    );

    let figures_json = |values: &dyn Fn(usize) -> Value| -> Value {
        FIGURES
            .iter()
            .enumerate()
            .map(|(f, figure)| (figure.key.to_string(), values(f)))
            .collect::<Map<_, _>>()
            .into()
    };
    let builds_json: Map<String, Value> = builds
        .iter()
        .enumerate()
        .map(|(b, build)| {
            (
                build.letter.to_string(),
                json!({
                    "label": build.label,
                    "binary": build.bin,
                    "median": figures_json(&|f| json!(median(&of_build(b, f)))),
                    "rounds": figures_json(&|f| json!(of_build(b, f))),
                }),
            )
        })
        .collect();
    let ratios_json: Map<String, Value> = (1..group)
        .map(|x| {
            (
                format!("{}/A", builds[x].letter),
                figures_json(&|f| {
                    let (m, min, max) = spread(&ratios[x][f]);
                    json!({ "median": m, "min": min, "max": max, "groups": ratios[x][f] })
                }),
            )
        })
        .collect();
    let doc = json!({
        "settings": {
            "machine": settings.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>(),
            "pairs": args.pairs,
            "clients": args.clients,
            "saturation_seconds": args.saturation.as_secs_f64(),
            "paced_events": args.paced_events,
            "paced_rate": args.paced_rate,
            "debits": args.debits,
            "env": args.env, "serve_env": args.serve_env, "work_env": args.work_env,
            "load_average_at_end": procs::load_average(),
        },
        "order": rounds.iter().map(|r| builds[r.build].letter).collect::<Vec<_>>(),
        "builds": builds_json,
        "ratios": ratios_json,
        "rounds": rounds.iter().map(|r| json!({
            "build": builds[r.build].letter,
            "figures": figures_json(&|f| json!(r.values[f])),
            "notes": r.notes,
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench/ab.json");
    for path in std::iter::once(default).chain(args.json.clone()) {
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        println!("saved {}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::schedule;

    #[test]
    fn rounds_alternate_in_groups() {
        assert_eq!(schedule(2, 4), [0, 1, 1, 0, 0, 1, 1, 0]);
        assert_eq!(schedule(3, 2), [0, 1, 2, 2, 1, 0]);
    }
}
