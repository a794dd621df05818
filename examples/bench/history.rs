//! `bench history`: webhookd on a queue holding a long history, against an empty queue in the
//! same run.
//!
//! 1. Two fresh databases, each with `serve` running: one stays empty, the other is filled with
//!    `--history-rows` rows of settled history (history_fill.sql: fifty partners, spread over
//!    `--history-days` ending now, ids rising with creation time), then `VACUUM ANALYZE`.
//! 2. The operator's calls (the console's and the API's searches, a redrive's dry run, the
//!    statistics) against the history, each the median of `--calls` over HTTP.
//! 3. End to end at saturation, rounds alternating empty and history (E H H E …) for `--pairs`;
//!    during every round the same operator calls loop against the round's own queue, and their
//!    latencies under load are kept (p50/p99 per call, history rounds).
//! 4. Retention of a backlog: `work` with `RETENTION_COMPLETED`/`RETENTION_FAILED` set to one
//!    day less than the history, while submits run paced at `--paced-rate`; a sampler reads
//!    `pg_stat_activity` every 20 ms and keeps the longest-running statement of any webhookd
//!    session, until the expired rows are gone.
//!
//! Prints the table and writes `target/bench/history.json`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_postgres::NoTls;

use crate::costs;
use crate::full::{pipeline_kept, wait_for};
use crate::load::{self, percentile};
use crate::procs::Proc;
use crate::receiver::Receiver;
use crate::report::median;
use crate::{open, query_f64, teardown, truncate, Args, Ctx};

const PARTNERS: i64 = 50;
/// Rows per INSERT of the fill, and connections filling at once.
const FILL_CHUNK: i64 = 250_000;
const FILL_CONNECTIONS: i64 = 2;
/// The bench's own sessions, which the sampler of step 4 leaves out.
const BENCH_APP: &str = "webhookd-bench";

/// One operator call: a name for the table and the request.
#[derive(Clone, Debug)]
struct Call {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
}

pub async fn run(args: Args) {
    let bin = crate::default_bin_for(&args);
    let receiver = Receiver::start();
    println!("webhookd bench history");
    println!("  binary      {}", bin.display());
    let empty = open(
        args.clone(),
        bin.clone(),
        receiver.clone(),
        "webhookd_bench_empty",
    )
    .await;
    let mut history = open(
        args.clone(),
        bin,
        receiver.clone(),
        "webhookd_bench_history",
    )
    .await;
    println!(
        "  postgres    shared_buffers={} (other settings as the server has them)",
        crate::show(&history.side, "shared_buffers").await
    );

    // Both queues serve the same fifty partners; only the history differs.
    partners(&empty).await;
    let fill = fill(&history, args.history_rows, args.history_days).await;
    let calls = calls(&history, args.history_rows, args.history_days).await;

    println!(
        "operator calls on {} rows, median of {} (ms):",
        args.history_rows, args.calls
    );
    let mut quiet = Vec::new();
    for call in &calls {
        let mut samples = Vec::new();
        for _ in 0..args.calls {
            samples.push(timed_call(&history, call).await);
        }
        let ms = median(&samples);
        println!("  {:<44} {:>9.2}", call.name, ms);
        quiet.push(json!({"call": call.name, "median_ms": ms, "samples_ms": samples}));
    }

    // Empty and history rounds alternate: E H H E, so a drift of the machine falls on both.
    let mut rates = (Vec::new(), Vec::new());
    let mut loaded: Vec<Vec<f64>> = vec![Vec::new(); calls.len()];
    for round in 0..args.pairs * 2 {
        let on_history = matches!(round % 4, 1 | 2);
        let ctx = if on_history { &history } else { &empty };
        let (rate, latencies) = saturation(ctx, &calls, round).await;
        println!(
            "round {}/{} {}: end to end {rate:.0}/s",
            round + 1,
            args.pairs * 2,
            if on_history { "history" } else { "empty" }
        );
        if on_history {
            rates.1.push(rate);
            for (all, some) in loaded.iter_mut().zip(latencies) {
                all.extend(some);
            }
        } else {
            rates.0.push(rate);
            truncate(&ctx.side).await;
        }
    }
    let ratios: Vec<f64> = rates
        .1
        .chunks(2)
        .zip(rates.0.chunks(2))
        .flat_map(|(h, e)| h.iter().zip(e).map(|(h, e)| h / e))
        .collect();

    println!("operator calls under end-to-end load (history rounds), ms:");
    let mut under_load = Vec::new();
    for (call, samples) in calls.iter().zip(loaded.iter_mut()) {
        samples.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99) = (percentile(samples, 50.0), percentile(samples, 99.0));
        println!(
            "  {:<44} p50 {p50:>8.2}  p99 {p99:>8.2}  ({} calls)",
            call.name,
            samples.len()
        );
        under_load
            .push(json!({"call": call.name, "p50_ms": p50, "p99_ms": p99, "calls": samples.len()}));
    }

    let retention = retention(&mut history, args.history_days).await;

    let (e, h) = (median(&rates.0), median(&rates.1));
    println!();
    println!("history      {} rows in {:.0} s ({:.0} rows/s), heap {:.2} GB, indexes {:.2} GB, VACUUM ANALYZE {:.0} s",
        args.history_rows, fill.seconds, args.history_rows as f64 / fill.seconds,
        fill.heap_bytes / 1e9, fill.index_bytes / 1e9, fill.vacuum_seconds);
    println!(
        "end to end   empty {e:.0}/s, history {h:.0}/s: history/empty per pair {:.3} (range {:.3}-{:.3})",
        median(&ratios),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "retention    {} expired rows deleted in {:.1} s ({:.0} rows/s) with submits at {:.0}/s; longest statement {:.0} ms ({}); submit->call p99 {:.1} ms",
        retention.expired,
        retention.seconds,
        retention.expired as f64 / retention.seconds,
        args.paced_rate,
        retention.longest_ms,
        retention.longest_query,
        retention.p99_ms
    );

    let document = json!({
        "rows": args.history_rows,
        "days": args.history_days,
        "fill": {"seconds": fill.seconds, "vacuum_seconds": fill.vacuum_seconds,
                 "heap_bytes": fill.heap_bytes, "index_bytes": fill.index_bytes},
        "calls": quiet,
        "calls_under_load": under_load,
        "end_to_end": {"empty_per_s": rates.0, "history_per_s": rates.1, "ratios": ratios},
        "retention": {"expired": retention.expired, "seconds": retention.seconds,
                      "longest_statement_ms": retention.longest_ms,
                      "longest_statement": retention.longest_query,
                      "submit_to_call_p99_ms": retention.p99_ms},
        "settings": history.settings.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    });
    let out = history.out_dir.join("history.json");
    std::fs::write(&out, serde_json::to_string_pretty(&document).unwrap()).expect("history.json");
    println!("results in {}", out.display());
    teardown(empty).await;
    teardown(history).await;
}

struct Fill {
    seconds: f64,
    vacuum_seconds: f64,
    heap_bytes: f64,
    index_bytes: f64,
}

/// Loads the history through the counting triggers, as production's inserts would count it.
async fn fill(ctx: &Ctx, rows: i64, days: f64) -> Fill {
    println!("loading {rows} rows of history over {days} days …");
    let started = Instant::now();
    let partners = partners(ctx).await;
    let span = days * 86_400.0;
    let loaders = (0..FILL_CONNECTIONS).map(|loader| {
        let partners = partners.clone();
        let url = ctx.db_url.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("loader");
            tokio::spawn(connection);
            let mut low = 1 + loader * FILL_CHUNK;
            while low <= rows {
                let high = (low + FILL_CHUNK - 1).min(rows);
                client
                    .execute(
                        include_str!("history_fill.sql"),
                        &[&low, &high, &rows, &partners, &span],
                    )
                    .await
                    .expect("a chunk of history");
                low += FILL_CHUNK * FILL_CONNECTIONS;
            }
        }
    });
    futures_util::future::join_all(loaders).await;
    ctx.side
        .batch_execute(
            "SELECT setval(pg_get_serial_sequence('webhook_queue', 'id'), (SELECT max(id) FROM webhook_queue))",
        )
        .await
        .expect("sequence");
    let seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    ctx.side
        .batch_execute("VACUUM ANALYZE webhook_queue")
        .await
        .expect("vacuum");
    let vacuum_seconds = started.elapsed().as_secs_f64();
    Fill {
        seconds,
        vacuum_seconds,
        heap_bytes: query_f64(&ctx.side, "SELECT pg_relation_size('webhook_queue')").await,
        index_bytes: query_f64(&ctx.side, "SELECT pg_indexes_size('webhook_queue')").await,
    }
}

/// The bench's partner and `PARTNERS - 1` more, which the history's events went to.
async fn partners(ctx: &Ctx) -> Vec<i64> {
    let mut partners: Vec<i64> = vec![ctx.api.config_id];
    for row in ctx
        .side
        .query(
            "INSERT INTO webhook_configs (name, postback_url, chargeback_url)
             SELECT 'history-' || i, 'https://partner-' || i || '.example/postback?user_id={user_id}',
                    'https://partner-' || i || '.example/chargeback?user_id={user_id}'
             FROM generate_series(2, $1::int8) AS i RETURNING id",
            &[&PARTNERS],
        )
        .await
        .expect("partners")
    {
        partners.push(row.get(0));
    }
    partners
}

/// The calls of the table, with ids and times taken from the history.
async fn calls(ctx: &Ctx, rows: i64, days: f64) -> Vec<Call> {
    // Row g was created (rows - g) / rows of the span ago.
    let two_days_ago = rows - (rows as f64 * 2.0 / days) as i64;
    let row = ctx
        .side
        .query_one(
            "SELECT event_id, config_id FROM webhook_queue WHERE id >= $1 ORDER BY id LIMIT 1",
            &[&two_days_ago],
        )
        .await
        .expect("an event of two days ago");
    let (event_id, partner): (String, i64) = (row.get(0), row.get(1));
    let busiest: i64 = ctx
        .side
        .query_one(
            "SELECT config_id FROM webhook_queue_counts GROUP BY 1 ORDER BY sum(n) DESC LIMIT 1",
            &[],
        )
        .await
        .expect("the busiest partner")
        .get(0);
    let window: (String, String) = {
        let row = ctx
            .side
            .query_one(
                "SELECT to_char((now() - interval '3 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        to_char((now() - interval '3 days' + interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                &[],
            )
            .await
            .expect("a window");
        (row.get(0), row.get(1))
    };
    let get = |name, path: String| Call {
        name,
        method: reqwest::Method::GET,
        path,
        body: None,
    };
    vec![
        get("stats", "/webhooks/stats".into()),
        get("newest 50", "/webhooks?limit=50".into()),
        get("failed, all partners", "/webhooks?status=failed".into()),
        get(
            "event_id of two days ago",
            format!("/webhooks?event_id={event_id}"),
        ),
        get(
            "event_id that does not exist",
            "/webhooks?event_id=tx_none".into(),
        ),
        get(
            "event_id with config_id",
            format!("/webhooks?event_id={event_id}&config_id={partner}"),
        ),
        get(
            "failed rows of the busiest partner",
            format!("/webhooks?status=failed&config_id={busiest}"),
        ),
        get(
            "created within one hour three days ago",
            format!(
                "/webhooks?created_after={}&created_before={}",
                window.0, window.1
            ),
        ),
        Call {
            name: "redrive dry run, busiest partner's failed",
            method: reqwest::Method::POST,
            path: "/webhooks/redrive".into(),
            body: Some(json!({"config_id": busiest, "dry_run": true})),
        },
    ]
}

/// One call, in ms; a call that does not answer 200 stops the bench.
async fn timed_call(ctx: &Ctx, call: &Call) -> f64 {
    let started = Instant::now();
    let mut request = ctx.api.client.request(
        call.method.clone(),
        format!("{}{}", ctx.api.base, call.path),
    );
    if let Some(body) = &call.body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("an operator call");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(status.is_success(), "{}: {status} {text}", call.path);
    ms
}

/// End to end at saturation on `ctx`'s queue, as `bench ab` measures it, while the operator's
/// calls loop one after another; the rate and each call's latencies.
async fn saturation(ctx: &Ctx, calls: &[Call], round: usize) -> (f64, Vec<Vec<f64>>) {
    let work = crate::ab::start_work(ctx, &format!("work-history-r{round}")).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(vec![Vec::new(); calls.len()]));
    let looping = {
        let (stop, latencies) = (stop.clone(), latencies.clone());
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (n, call) in calls.iter().enumerate() {
                    let ms = timed_call(ctx, call).await;
                    latencies.lock().unwrap()[n].push(ms);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    let measured = async {
        let before = costs::read(&ctx.side).await;
        let pipeline = pipeline_kept(ctx, false, format!("history-r{round}")).await;
        let after = costs::read(&ctx.side).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (pipeline, before, after)
    };
    let ((pipeline, before, after), ()) = tokio::join!(measured, looping);
    work.stop(Duration::from_secs(30)).await;
    let events = pipeline.submitted.ok.max(1) as f64;
    println!(
        "    WAL {:.2} KB/event, PostgreSQL CPU {:.3} ms/event (whole server, the backlog's drain included)",
        (after.wal - before.wal) / events / 1024.0,
        (after.pg_cpu - before.pg_cpu) / events * 1000.0
    );
    let latencies = latencies.lock().unwrap().clone();
    (pipeline.rate(), latencies)
}

struct Retention {
    expired: i64,
    seconds: f64,
    longest_ms: f64,
    longest_query: String,
    p99_ms: f64,
}

/// The pass over a backlog: everything older than a day less than the history expires at once.
async fn retention(ctx: &mut Ctx, days: f64) -> Retention {
    let keep = format!("{}h", ((days - 1.0) * 24.0).round() as i64);
    let expired_sql = format!(
        "SELECT (SELECT count(*) FROM webhook_queue WHERE status = 'completed' AND deleted_at IS NULL
                   AND completed_at < now() - interval '{keep}')
              + (SELECT count(*) FROM webhook_queue WHERE status = 'failed' AND deleted_at IS NULL
                   AND updated_at < now() - interval '{keep}')"
    );
    let watcher = side_session(&ctx.db_url).await;
    let expired = query_f64(&watcher, &expired_sql).await as i64;
    println!("retention: {expired} rows older than {keep} …");

    let mut env = ctx.work_env.clone();
    for (k, v) in [
        ("RETENTION_COMPLETED", keep.as_str()),
        ("RETENTION_FAILED", keep.as_str()),
        ("RETENTION_INTERVAL", "1s"),
        ("WORKER_ID", "work-history-retention"),
        ("LOG_LEVEL", "info"),
    ] {
        env.push((k.into(), v.into()));
    }
    let longest = Arc::new(Mutex::new((0.0f64, String::new())));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (longest, done, url) = (longest.clone(), done.clone(), ctx.db_url.clone());
        tokio::spawn(async move {
            let sampler = side_session(&url).await;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let rows = sampler
                    .query(
                        "SELECT extract(epoch FROM now() - query_start)::float8 * 1000, left(query, 120)
                         FROM pg_stat_activity
                         WHERE datname = current_database() AND state = 'active'
                           AND backend_type = 'client backend' AND application_name <> $1
                           AND pid <> pg_backend_pid()",
                        &[&BENCH_APP],
                    )
                    .await
                    .unwrap_or_default();
                for row in rows {
                    let (ms, query): (f64, String) = (row.get(0), row.get(1));
                    let mut longest = longest.lock().unwrap();
                    if ms > longest.0 {
                        *longest = (ms, query.split_whitespace().collect::<Vec<_>>().join(" "));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let work = Proc::start(
        &ctx.bin,
        "work",
        "work-history-retention",
        &env,
        &ctx.out_dir,
    );
    let submits = {
        let api = ctx.api.clone();
        let rate = ctx.args.paced_rate;
        let (done, watcher_url) = (done.clone(), ctx.db_url.clone());
        let expired_sql = expired_sql.clone();
        async move {
            let watcher = side_session(&watcher_url).await;
            let mut sent = Vec::new();
            loop {
                let paced = load::paced(
                    api.clone(),
                    rate,
                    Duration::from_secs(2),
                    512,
                    "retention".into(),
                )
                .await;
                sent.extend(paced.sent);
                // Rows keep expiring as the clock moves; the backlog is gone once what is left
                // is less than a batch.
                if query_f64(&watcher, &expired_sql).await < 1000.0 {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(3600),
                    "retention within an hour"
                );
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            sent
        }
    };
    ctx.receiver.reset(true);
    let sent = submits.await;
    let seconds = started.elapsed().as_secs_f64();
    sampler.await.expect("sampler");
    wait_for("the paced events", Duration::from_secs(60), || {
        ctx.receiver.arrival_count() >= sent.len()
    })
    .await;
    let (mut ms, _) = load::latencies(&sent, &ctx.receiver.arrivals());
    ms.sort_by(|a, b| a.total_cmp(b));
    ctx.receiver.reset(false);
    work.stop(Duration::from_secs(30)).await;
    let (longest_ms, longest_query) = longest.lock().unwrap().clone();
    Retention {
        expired,
        seconds,
        longest_ms,
        longest_query,
        p99_ms: percentile(&ms, 99.0),
    }
}

/// A connection of the bench's own, which the sampler leaves out.
async fn side_session(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("side session");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("SET application_name = '{BENCH_APP}'"))
        .await
        .expect("application_name");
    client
}
