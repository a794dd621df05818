//! `bench soak`: serve and work for minutes at a steady rate (half the end-to-end saturation
//! rate with single submits unless `--soak-rate` says otherwise), sampling every 10 s that the
//! hot table, its dead tuples and the claim's latency stay flat. The verdict compares the first
//! third of each series with the last third, from the moment pruning has begun (50 s).
//!
//! Completed rows must be pruned for the table to stay small: `work` runs its own retention
//! pruner with `RETENTION_COMPLETED=30s`, `RETENTION_INTERVAL=10s`. When the server runs with
//! `autovacuum = off` the per-table autovacuum settings cannot act, so the harness runs a plain
//! `VACUUM webhook_queue` every 10 s, standing in for autovacuum, and says so.

use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection;
use serde_json::json;
use webhookd::store::{self, queue::claim};

use crate::full::{drain_with_work, pipeline};
use crate::load;
use crate::procs::Proc;
use crate::report::median;
use crate::{query_f64, show, sqlpath, truncate, Ctx};

const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Rows deleted from the hot table so far (by the pruner: nothing else deletes during a soak).
const DELETED_ROWS: &str =
    "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'webhook_queue'";
/// Seconds before the verdict starts: completed rows kept 30 s, then two pruning passes.
const WARM_UP_S: f64 = 50.0;
/// What the soak's `work` keeps of completed rows, and how often it prunes.
const RETENTION: [(&str, &str); 2] = [
    ("RETENTION_COMPLETED", "30s"),
    ("RETENTION_INTERVAL", "10s"),
];

#[derive(Clone, Debug, Default)]
struct Sample {
    at_s: f64,
    total_bytes: f64,
    dead: f64,
    live: f64,
    backlog: f64,
    claim_ms: f64,
    delivered_per_s: f64,
    pruned: f64,
}

/// Median time of a claim statement (50 rows) run on a side connection, set up as the
/// workers' are, inside a transaction that is rolled back, so it takes nothing away from the
/// workers for good.
async fn claim_probe(conn: &mut diesel_async::AsyncPgConnection) -> f64 {
    let mut took = Vec::new();
    for _ in 0..5 {
        conn.batch_execute("BEGIN").await.expect("BEGIN");
        let t = Instant::now();
        let _ = claim::claim(conn, "soak-probe", 50, Duration::from_secs(60), &[]).await;
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        conn.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    }
    median(&took)
}

fn thirds(values: &[f64]) -> (f64, f64) {
    let n = values.len() / 3;
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (mean(&values[..n]), mean(&values[values.len() - n..]))
}

/// Flat when the last third's mean is within `ratio` of the first third's, or within `slack`
/// in absolute terms (small numbers wobble by large ratios).
fn verdict(values: &[f64], ratio: f64, slack: f64) -> (f64, f64, bool) {
    let (first, last) = thirds(values);
    (first, last, last <= first * ratio || last - first <= slack)
}

pub async fn run(ctx: Ctx) -> Ctx {
    let a = ctx.args.clone();
    let autovacuum = show(&ctx.side, "autovacuum").await;
    let vacuum_stand_in = autovacuum == "off";

    let rate = match a.soak_rate {
        Some(rate) => {
            println!("soak rate {rate:.0} events/s (given)");
            rate
        }
        None => {
            truncate(&ctx.side).await;
            sqlpath::insert(
                &ctx.pool,
                ctx.api.config_id,
                &ctx.url_base,
                "soak-cal",
                a.rows,
                a.sql_batch,
                a.sql_connections,
            )
            .await;
            ctx.side.batch_execute("ANALYZE webhook_queue").await.ok();
            let (_, work) = drain_with_work(&ctx, "work-calibrate", a.rows).await;
            let e2e = pipeline(&ctx, false, "soak-cal-e2e".into()).await;
            work.stop(Duration::from_secs(30)).await;
            println!(
                "saturation: end to end with {} single-POST clients {:.0} events/s; soaking at half that: {:.0} events/s",
                a.clients,
                e2e.rate(),
                e2e.rate() / 2.0
            );
            e2e.rate() / 2.0
        }
    };
    truncate(&ctx.side).await;
    ctx.side.batch_execute("VACUUM webhook_queue").await.ok();

    println!(
        "soak: {:?} of single POST /webhooks at {rate:.0}/s (open loop), sampling every {:?}",
        a.soak, SAMPLE_EVERY
    );
    println!("  pruning: by work's retention pruner, {RETENTION:?}");
    if vacuum_stand_in {
        println!("  vacuum: this server runs with autovacuum = off, so the harness runs VACUUM webhook_queue every {SAMPLE_EVERY:?} in its place");
    }

    let mut env = ctx.work_env.clone();
    env.push(("WORKER_ID".into(), "work-soak".into()));
    env.extend(RETENTION.map(|(k, v)| (k.to_string(), v.to_string())));
    let mut work = Proc::start(&ctx.bin, "work", "work-soak", &env, &ctx.out_dir);
    // A worker's session (its planner settings), so that the probe times the claim the workers run.
    let probe_pool = store::worker_pool(&ctx.db_url, 1).expect("probe pool");
    let mut probe = probe_pool.get().await.expect("probe connection");
    ctx.receiver.reset(true);
    let started = Instant::now();
    let generator = tokio::spawn(load::paced(
        ctx.api.clone(),
        rate,
        a.soak,
        1024,
        "soak".into(),
    ));

    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>9} {:>9} {:>11} {:>9}",
        "t_s", "table_MiB", "dead_tup", "live_tup", "backlog", "claim_ms", "delivered/s", "pruned"
    );
    let mut samples: Vec<Sample> = Vec::new();
    let mut calls_before = 0u64;
    let mut deleted_before = query_f64(&ctx.side, DELETED_ROWS).await;
    let mut next = started + SAMPLE_EVERY;
    while started.elapsed() < a.soak {
        tokio::time::sleep_until(next.into()).await;
        next += SAMPLE_EVERY;
        work.assert_running();
        let deleted = query_f64(&ctx.side, DELETED_ROWS).await;
        let pruned = deleted - deleted_before;
        deleted_before = deleted;
        if vacuum_stand_in {
            ctx.side.batch_execute("VACUUM webhook_queue").await.ok();
        }
        let calls = ctx.receiver.calls();
        let s = Sample {
            at_s: started.elapsed().as_secs_f64(),
            total_bytes: query_f64(
                &ctx.side,
                "SELECT pg_total_relation_size('webhook_queue')::float8",
            )
            .await,
            dead: query_f64(
                &ctx.side,
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'webhook_queue'",
            )
            .await,
            live: query_f64(
                &ctx.side,
                "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'webhook_queue'",
            )
            .await,
            backlog: query_f64(
                &ctx.side,
                "SELECT count(*) FROM webhook_queue WHERE status IN ('pending', 'processing')",
            )
            .await,
            claim_ms: claim_probe(&mut probe).await,
            delivered_per_s: (calls - calls_before) as f64 / SAMPLE_EVERY.as_secs_f64(),
            pruned,
        };
        calls_before = calls;
        println!(
            "{:>6.0} {:>10.1} {:>10.0} {:>10.0} {:>9.0} {:>9.2} {:>11.0} {:>9.0}",
            s.at_s,
            s.total_bytes / 1048576.0,
            s.dead,
            s.live,
            s.backlog,
            s.claim_ms,
            s.delivered_per_s,
            s.pruned
        );
        samples.push(s);
    }
    let paced = generator.await.expect("generator");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arrivals = ctx.receiver.arrivals();
    ctx.receiver.reset(false);
    let work_rss = work.peak_rss_kib().unwrap_or(0);
    work.stop(Duration::from_secs(30)).await;
    let serve_rss = ctx.serve.peak_rss_kib().unwrap_or(0);

    // Submit -> first call latency per 10-s window of send time.
    let mut windows: Vec<(f64, f64, usize)> = Vec::new();
    let first_send = paced.sent.iter().map(|(_, t)| *t).min();
    if let Some(t0) = first_send {
        let windows_n = (a.soak.as_secs_f64() / SAMPLE_EVERY.as_secs_f64()).ceil() as usize;
        for w in 0..windows_n {
            let from = t0 + SAMPLE_EVERY * w as u32;
            let to = from + SAMPLE_EVERY;
            let sent: Vec<_> = paced
                .sent
                .iter()
                .filter(|(_, t)| *t >= from && *t < to)
                .cloned()
                .collect();
            let (ms, _) = load::latencies(&sent, &arrivals);
            windows.push((
                load::percentile(&ms, 50.0),
                load::percentile(&ms, 99.0),
                sent.len(),
            ));
        }
    }
    let (all_ms, missing) = load::latencies(&paced.sent, &arrivals);

    // Until the first completed rows are old enough to prune, the table grows by design: the
    // verdict starts once the pruner has had two passes at them.
    let steady: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= WARM_UP_S).collect();
    let series = |f: &dyn Fn(&Sample) -> f64| steady.iter().map(|s| f(s)).collect::<Vec<f64>>();
    let size = series(&|s| s.total_bytes / 1048576.0);
    let dead = series(&|s| s.dead);
    let claim = series(&|s| s.claim_ms);
    let p99s: Vec<f64> = windows
        .iter()
        .skip((WARM_UP_S / SAMPLE_EVERY.as_secs_f64()) as usize)
        .map(|w| w.1)
        .filter(|x| !x.is_nan())
        .collect();
    let checks = [
        ("table + index size (MiB)", verdict(&size, 1.25, 2.0)),
        ("dead tuples", verdict(&dead, 1.5, 5000.0)),
        ("claim latency (ms)", verdict(&claim, 1.5, 1.0)),
        ("submit->call p99 (ms)", verdict(&p99s, 1.5, 10.0)),
    ];
    println!();
    println!(
        "latency per 10 s window (p50 / p99 ms): {}",
        windows
            .iter()
            .map(|w| format!("{:.1}/{:.1}", w.0, w.1))
            .collect::<Vec<_>>()
            .join("  ")
    );
    println!(
        "overall: {} sent, {} submit errors, {} skipped, {} never called; p50 {:.1} ms, p99 {:.1} ms",
        paced.sent.len(),
        paced.errors,
        paced.skipped,
        missing,
        load::percentile(&all_ms, 50.0),
        load::percentile(&all_ms, 99.0)
    );
    println!("verdict (mean of the first third vs the last third of the samples from {WARM_UP_S:.0} s on, once pruning has begun):");
    let mut all_flat = true;
    for (name, (first, last, flat)) in &checks {
        all_flat &= *flat;
        println!(
            "  {name:<26} {first:>10.2} -> {last:>10.2}  {}",
            if *flat { "flat" } else { "GROWING" }
        );
    }
    println!(
        "  => {}",
        if all_flat {
            "FLAT: nothing grows at a steady rate"
        } else {
            "NOT FLAT"
        }
    );
    println!(
        "peak RSS: serve {:.1} MiB, work {:.1} MiB",
        serve_rss as f64 / 1024.0,
        work_rss as f64 / 1024.0
    );

    let doc = json!({
        "mode": "soak",
        "label": a.label,
        "rate": rate,
        "seconds": a.soak.as_secs_f64(),
        "pruning": format!("work's retention pruner, {RETENTION:?}"),
        "vacuum_stand_in": vacuum_stand_in,
        "samples": samples.iter().map(|s| json!({
            "t_s": s.at_s, "total_bytes": s.total_bytes, "n_dead_tup": s.dead, "n_live_tup": s.live,
            "backlog": s.backlog, "claim_ms": s.claim_ms, "delivered_per_s": s.delivered_per_s, "pruned": s.pruned
        })).collect::<Vec<_>>(),
        "latency_windows": windows.iter().map(|w| json!({"p50_ms": w.0, "p99_ms": w.1, "sent": w.2})).collect::<Vec<_>>(),
        "verdict": checks.iter().map(|(name, (first, last, flat))| json!({"series": name, "first_third": first, "last_third": last, "flat": flat})).collect::<Vec<_>>(),
        "flat": all_flat,
        "sent": paced.sent.len(), "errors": paced.errors, "skipped": paced.skipped, "missing": missing,
        "peak_rss_kib": {"serve": serve_rss, "work": work_rss},
    });
    let path = ctx.out_dir.join("soak.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).expect("write soak.json");
    println!("saved {}", path.display());
    ctx
}
