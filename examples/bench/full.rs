//! `bench full`: rounds of ceilings and webhookd phases, then the table and the JSON.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::costs::{self, Cost};
use crate::load::{self, Counted};
use crate::procs::Proc;
use crate::report::{median, Table};
use crate::sqlpath::{self, Rate};
use crate::{commit_latency_ms, commit_tail_ms, query_f64, truncate, Ctx};

/// The end-to-end drain of a preloaded queue by `webhookd work`.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    pub rows: u64,
    /// From the first call the receiver saw to the moment no row was left uncompleted.
    pub elapsed: Duration,
    /// From spawning `work` to its first call.
    pub startup: Duration,
    pub calls: u64,
}

impl Drain {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// Submits and deliveries at once: closed-loop submit clients while `work` delivers.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    pub submitted: Counted,
    /// Calls that reached the receiver during the submit window.
    pub delivered: u64,
    /// Rows not yet completed when the submitters stopped.
    pub backlog: u64,
}

impl Pipeline {
    pub fn delivered_rate(&self) -> f64 {
        self.delivered as f64 / self.submitted.elapsed.as_secs_f64()
    }

    /// The rate at which events got all the way through: neither half can go faster.
    pub fn rate(&self) -> f64 {
        self.delivered_rate().min(self.submitted.rate())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Latency {
    pub target_rate: f64,
    pub sent: usize,
    pub errors: u64,
    pub skipped: u64,
    pub missing: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    /// The submit's own share: how long the 201 took to come back, p50 and p99.
    pub answered_p50: f64,
    pub answered_p99: f64,
}

#[derive(Clone, Debug, Default)]
pub struct Round {
    pub commit_ms: f64,
    /// Paced durable commits: p99 and max (see `commit_tail_ms`).
    pub commit_p99_ms: f64,
    pub commit_max_ms: f64,
    pub http: Counted,
    pub sql_insert_off: Rate,
    pub sql_drain_off: Rate,
    pub sql_insert: Rate,
    pub sql_drain: Rate,
    pub single: Counted,
    pub batch: Counted,
    pub preload: Rate,
    pub drain: Drain,
    pub e2e_single: Pipeline,
    pub e2e_batch: Pipeline,
    /// What each end-to-end phase cost PostgreSQL per event accepted.
    pub e2e_single_cost: Cost,
    pub e2e_batch_cost: Cost,
    pub latency: Latency,
    pub work_rss_kib: u64,
}

/// The SQL path's rates with or without the count triggers. Without them the insert and the
/// claim still count themselves (migration 000005): what the difference shows is the triggers'
/// own cost, which since then falls on the outcome write only.
async fn sql_ceiling(ctx: &Ctx, round: usize, triggers: bool) -> (Rate, Rate) {
    let a = &ctx.args;
    truncate(&ctx.side).await;
    if !triggers {
        ctx.side
            .batch_execute("ALTER TABLE webhook_queue DISABLE TRIGGER USER")
            .await
            .expect("disable triggers");
    }
    let tag = format!("sql{}-r{round}", if triggers { "on" } else { "off" });
    let insert = sqlpath::insert(
        &ctx.pool,
        ctx.api.config_id,
        &ctx.url_base,
        &tag,
        a.rows,
        a.sql_batch,
        a.sql_connections,
    )
    .await;
    ctx.side.batch_execute("ANALYZE webhook_queue").await.ok();
    let drain = sqlpath::drain(&ctx.pool, a.sql_batch as i64, a.sql_connections).await;
    if !triggers {
        ctx.side
            .batch_execute("ALTER TABLE webhook_queue ENABLE TRIGGER USER")
            .await
            .expect("enable triggers");
    }
    assert_eq!(
        insert.rows as usize, a.rows,
        "SQL ceiling inserted every row"
    );
    assert_eq!(drain.rows as usize, a.rows, "SQL ceiling drained every row");
    (insert, drain)
}

pub async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Rows not completed yet.
async fn uncompleted(ctx: &Ctx) -> f64 {
    query_f64(
        &ctx.side,
        "SELECT count(*) FROM webhook_queue WHERE status <> 'completed'",
    )
    .await
}

pub async fn drain_with_work(ctx: &Ctx, name: &str, rows: usize) -> (Drain, Proc) {
    ctx.receiver.reset(false);
    let spawned = Instant::now();
    let mut env = ctx.work_env.clone();
    env.push(("WORKER_ID".into(), name.into()));
    let mut work = Proc::start(&ctx.bin, "work", name, &env, &ctx.out_dir);
    let first = wait_for("the first call", Duration::from_secs(30), || {
        work.assert_running();
        ctx.receiver.calls() > 0
    })
    .await;
    wait_for("every row to be called", Duration::from_secs(600), || {
        ctx.receiver.calls() >= rows as u64
    })
    .await;
    let done = loop {
        let left = uncompleted(ctx).await;
        if left == 0.0 {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    (
        Drain {
            rows: rows as u64,
            elapsed: done - first,
            startup: first - spawned,
            calls: ctx.receiver.calls(),
        },
        work,
    )
}

/// Runs closed-loop submits (single POSTs, or batches when `batch`) against a running `work`,
/// then waits until every submitted event has been called.
pub async fn pipeline(ctx: &Ctx, batch: bool, tag: String) -> Pipeline {
    truncate(&ctx.side).await;
    pipeline_kept(ctx, batch, tag).await
}

/// [`pipeline`] on the queue as it is, history and all.
pub async fn pipeline_kept(ctx: &Ctx, batch: bool, tag: String) -> Pipeline {
    let a = &ctx.args;
    ctx.receiver.reset(false);
    let submitted = if batch {
        load::ingest_batch(ctx.api.clone(), a.batch_clients, a.batch, a.phase, tag).await
    } else {
        load::ingest_single(ctx.api.clone(), a.clients, a.phase, tag).await
    };
    let delivered = ctx.receiver.calls();
    let backlog = uncompleted(ctx).await as u64;
    wait_for(
        "the backlog to be delivered",
        Duration::from_secs(300),
        || ctx.receiver.calls() >= submitted.ok,
    )
    .await;
    Pipeline {
        submitted,
        delivered,
        backlog,
    }
}

pub async fn latency_phase(ctx: &Ctx, rate: f64, duration: Duration, tag: String) -> Latency {
    ctx.receiver.reset(true);
    let paced = load::paced(ctx.api.clone(), rate, duration, 512, tag).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ctx.receiver.arrival_count() < paced.sent.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrivals = ctx.receiver.arrivals();
    ctx.receiver.reset(false);
    let (ms, missing) = load::latencies(&paced.sent, &arrivals);
    let mut answered = paced.answered_ms;
    answered.sort_by(|a, b| a.total_cmp(b));
    if let Some(e) = &paced.first_error {
        println!(
            "    latency phase: {} submit errors, first: {e}",
            paced.errors
        );
    }
    Latency {
        target_rate: rate,
        sent: paced.sent.len(),
        errors: paced.errors,
        skipped: paced.skipped,
        missing,
        p50: load::percentile(&ms, 50.0),
        p95: load::percentile(&ms, 95.0),
        p99: load::percentile(&ms, 99.0),
        max: ms.last().copied().unwrap_or(f64::NAN),
        answered_p50: load::percentile(&answered, 50.0),
        answered_p99: load::percentile(&answered, 99.0),
    }
}

/// Latency at `--latency-rate`, or at a sweep of rates, against one `work`.
pub async fn latency_sweep(ctx: Ctx) -> Ctx {
    let a = &ctx.args;
    let rates = if a.latency_rate.is_empty() {
        vec![100.0, 500.0, 1000.0, 2000.0, 3000.0]
    } else {
        a.latency_rate.clone()
    };
    truncate(&ctx.side).await;
    let warm = 100;
    sqlpath::insert(
        &ctx.pool,
        ctx.api.config_id,
        &ctx.url_base,
        "warm",
        warm,
        warm,
        1,
    )
    .await;
    let (_, work) = drain_with_work(&ctx, "work-latency", warm).await;
    for (n, rate) in rates.into_iter().enumerate() {
        truncate(&ctx.side).await;
        let l = latency_phase(&ctx, rate, a.latency_phase, format!("sweep-{n}")).await;
        print_latency(&l);
        // The disk's own tail right after the phase: the floor under its p99.
        let (p99, max) = commit_tail_ms(&ctx.side).await;
        println!("    durable commit paced at 100/s for 3 s: p99 {p99:.1} ms, max {max:.1} ms");
    }
    println!(
        "  work peak RSS {:.1} MiB",
        work.peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    work.stop(Duration::from_secs(30)).await;
    ctx
}

fn print_latency(l: &Latency) {
    println!(
        "  webhookd: submit -> first call at {:>5.0}/s   p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.0} ms ({} sent, {} missing, {} skipped)",
        l.target_rate, l.p50, l.p95, l.p99, l.max, l.sent, l.missing, l.skipped
    );
    println!(
        "    of which the submit until its 201: p50 {:.1} ms, p99 {:.1} ms",
        l.answered_p50, l.answered_p99
    );
}

fn print_pipeline(feed: &str, p: &Pipeline) {
    println!(
        "  webhookd: end to end, {feed:<22} {:>9.0} events/s (submitted {:.0}/s, delivered {:.0}/s, backlog {} at the end)",
        p.rate(),
        p.submitted.rate(),
        p.delivered_rate(),
        p.backlog
    );
}

fn report_errors(what: &str, c: &Counted) {
    if c.errors > 0 {
        println!(
            "    {what}: {} errors, first: {}",
            c.errors,
            c.first_error.as_deref().unwrap_or("?")
        );
    }
}

async fn round(ctx: &Ctx, n: usize) -> Round {
    let a = &ctx.args;
    let mut r = Round::default();
    let t = Instant::now();
    println!("round {n}/{}", a.rounds);

    r.commit_ms = commit_latency_ms(&ctx.side).await;
    println!(
        "  durable commit (1-row INSERT, median of 60)      {:>9.2} ms",
        r.commit_ms
    );
    (r.commit_p99_ms, r.commit_max_ms) = commit_tail_ms(&ctx.side).await;
    println!(
        "  durable commit paced at 100/s for 3 s            p99 {:.1} ms, max {:.1} ms",
        r.commit_p99_ms, r.commit_max_ms
    );

    ctx.receiver.reset(false);
    r.http = load::http_gets(
        ctx.api.client.clone(),
        format!("{}?src=bench&uid=u1", ctx.url_base),
        a.clients,
        a.phase,
    )
    .await;
    report_errors("HTTP ceiling", &r.http);
    println!(
        "  ceiling: loopback GET, {} clients               {:>9.0} req/s",
        a.clients,
        r.http.rate()
    );

    (r.sql_insert_off, r.sql_drain_off) = sql_ceiling(ctx, n, false).await;
    println!(
        "  ceiling: SQL insert / claim+record, count triggers off {:>9.0} / {:.0} rows/s",
        r.sql_insert_off.per_sec(),
        r.sql_drain_off.per_sec()
    );
    (r.sql_insert, r.sql_drain) = sql_ceiling(ctx, n, true).await;
    println!(
        "  ceiling: SQL insert / claim+record, count triggers on  {:>9.0} / {:.0} rows/s",
        r.sql_insert.per_sec(),
        r.sql_drain.per_sec()
    );

    truncate(&ctx.side).await;
    r.single =
        load::ingest_single(ctx.api.clone(), a.clients, a.phase, format!("single-r{n}")).await;
    report_errors("single ingest", &r.single);
    println!(
        "  webhookd: POST /webhooks, {} clients            {:>9.0} events/s",
        a.clients,
        r.single.rate()
    );

    truncate(&ctx.side).await;
    r.batch = load::ingest_batch(
        ctx.api.clone(),
        a.batch_clients,
        a.batch,
        a.phase,
        format!("batch-r{n}"),
    )
    .await;
    report_errors("batch ingest", &r.batch);
    println!(
        "  webhookd: POST /webhooks/batch, {}x{}             {:>9.0} events/s",
        a.batch_clients,
        a.batch,
        r.batch.rate()
    );

    truncate(&ctx.side).await;
    r.preload = sqlpath::insert(
        &ctx.pool,
        ctx.api.config_id,
        &ctx.url_base,
        &format!("pre-r{n}"),
        a.rows,
        a.sql_batch,
        a.sql_connections,
    )
    .await;
    ctx.side.batch_execute("ANALYZE webhook_queue").await.ok();
    let (drain, work) = drain_with_work(ctx, &format!("work-r{n}"), a.rows).await;
    r.drain = drain;
    println!(
        "  webhookd: work drains {} rows                 {:>9.0} events/s ({} calls, first call {:.0} ms after spawn)",
        a.rows,
        r.drain.rate(),
        r.drain.calls,
        r.drain.startup.as_secs_f64() * 1000.0
    );

    // Idle backends flush their statistics only after 10 s (see costs.rs): each reading waits.
    tokio::time::sleep(costs::IDLE_FLUSH).await;
    let before = costs::read(&ctx.side).await;
    r.e2e_single = pipeline(ctx, false, format!("e2e-single-r{n}")).await;
    report_errors("end-to-end, single submits", &r.e2e_single.submitted);
    print_pipeline(&format!("single POSTs x{}", a.clients), &r.e2e_single);
    tokio::time::sleep(costs::IDLE_FLUSH).await;
    let between = costs::read(&ctx.side).await;
    r.e2e_single_cost = Cost::between(&before, &between, r.e2e_single.submitted.ok);
    println!("    per event: {}", r.e2e_single_cost.summary());
    r.e2e_batch = pipeline(ctx, true, format!("e2e-batch-r{n}")).await;
    report_errors("end-to-end, batch submits", &r.e2e_batch.submitted);
    print_pipeline(
        &format!("batches {}x{}", a.batch_clients, a.batch),
        &r.e2e_batch,
    );
    tokio::time::sleep(costs::IDLE_FLUSH).await;
    let after = costs::read(&ctx.side).await;
    r.e2e_batch_cost = Cost::between(&between, &after, r.e2e_batch.submitted.ok);
    println!("    per event: {}", r.e2e_batch_cost.summary());

    truncate(&ctx.side).await;
    r.latency = latency_phase(
        ctx,
        a.latency_rate
            .first()
            .copied()
            .unwrap_or(r.e2e_single.rate() / 2.0),
        a.latency_phase,
        format!("lat-r{n}"),
    )
    .await;
    print_latency(&r.latency);
    r.work_rss_kib = work.peak_rss_kib().unwrap_or(0);
    let clean = work.stop(Duration::from_secs(30)).await;
    println!(
        "  work peak RSS {:.1} MiB (exit {}) — round took {:.0} s",
        r.work_rss_kib as f64 / 1024.0,
        if clean { "0" } else { "not clean" },
        t.elapsed().as_secs_f64()
    );
    r
}

pub async fn full(ctx: Ctx) -> Ctx {
    let a = ctx.args.clone();
    println!(
        "  phases      HTTP ceiling {clients} clients x {phase:?}; SQL ceiling {rows} rows, {b}/statement, {c} connections, count triggers off then on;\n              \
         ingest {clients} single-event clients x {phase:?}, {bc} batch clients x {batch} events x {phase:?};\n              \
         drain of {rows} preloaded rows by a fresh `work`; end to end: the same single and batch clients x {phase:?} while `work` delivers,\n              \
         a fraction {debits} of ingest and end-to-end events `-debit`s of the client's previous `+credit`;\n              \
         latency: single submits paced at {lat_rate} for {lat:?}",
        clients = a.clients,
        debits = a.debits,
        phase = a.phase,
        rows = a.rows,
        b = a.sql_batch,
        c = a.sql_connections,
        bc = a.batch_clients,
        batch = a.batch,
        lat = a.latency_phase,
        lat_rate = a
            .latency_rate
            .first()
            .map_or("half the end-to-end single-submit rate".to_string(), |r| format!("{r:.0}/s")),
    );
    let mut rounds = Vec::new();
    for n in 1..=a.rounds {
        rounds.push(round(&ctx, n).await);
    }
    let serve_rss = ctx.serve.peak_rss_kib().unwrap_or(0);
    let bench_rss = crate::procs::proc_status_kib(std::process::id(), "VmHWM:").unwrap_or(0);
    summarize(&ctx, &rounds, serve_rss, bench_rss);
    ctx
}

fn summarize(ctx: &Ctx, rounds: &[Round], serve_rss: u64, bench_rss: u64) {
    let a = &ctx.args;
    let m = |f: &dyn Fn(&Round) -> f64| -> (f64, Vec<f64>) {
        let v: Vec<f64> = rounds.iter().map(f).collect();
        (median(&v), v)
    };
    let commit = m(&|r| r.commit_ms);
    let commit_p99 = m(&|r| r.commit_p99_ms);
    let commit_max = m(&|r| r.commit_max_ms);
    let http = m(&|r| r.http.rate());
    let ins_off = m(&|r| r.sql_insert_off.per_sec());
    let drn_off = m(&|r| r.sql_drain_off.per_sec());
    let ins = m(&|r| r.sql_insert.per_sec());
    let drn = m(&|r| r.sql_drain.per_sec());
    let single = m(&|r| r.single.rate());
    let batch = m(&|r| r.batch.rate());
    let drain = m(&|r| r.drain.rate());
    let e2e_single = m(&|r| r.e2e_single.rate());
    let e2e = m(&|r| r.e2e_batch.rate());
    let p50 = m(&|r| r.latency.p50);
    let p95 = m(&|r| r.latency.p95);
    let p99 = m(&|r| r.latency.p99);
    let answered = m(&|r| r.latency.answered_p50);
    let lat_rate = m(&|r| r.latency.target_rate);
    let work_rss = rounds.iter().map(|r| r.work_rss_kib).max().unwrap_or(0);
    // Both halves of a delivery share the same two cores: if each used them fully, one
    // delivery would cost 1/sql + 1/http seconds of machine.
    let combined = 1.0 / (1.0 / drn.0 + 1.0 / http.0);
    // End to end adds the insert: one event costs an insert, a claim and write, and a call.
    let e2e_ceiling = 1.0 / (1.0 / ins.0 + 1.0 / drn.0 + 1.0 / http.0);

    let mut t = Table::new(&["figure", "median", "runs", "of ceiling"]);
    let runs = |v: &[f64], d: usize| {
        v.iter()
            .map(|x| format!("{x:.d$}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pct = |x: f64, c: f64, name: &str| format!("{:.0}% of {name}", 100.0 * x / c);
    t.section("ceilings (same run)");
    t.row(&[
        "durable commit, 1-row INSERT",
        &format!("{:.2} ms", commit.0),
        &runs(&commit.1, 2),
        "",
    ]);
    t.row(&[
        "durable commit paced 100/s, p99",
        &format!("{:.1} ms", commit_p99.0),
        &runs(&commit_p99.1, 1),
        "",
    ]);
    t.row(&[
        "durable commit paced 100/s, max",
        &format!("{:.1} ms", commit_max.0),
        &runs(&commit_max.1, 1),
        "",
    ]);
    t.row(&[
        &format!("loopback GET, {} clients (A)", a.clients),
        &format!("{:.0} req/s", http.0),
        &runs(&http.1, 0),
        "",
    ]);
    t.row(&[
        "SQL insert, batched (B)",
        &format!("{:.0} rows/s", ins.0),
        &runs(&ins.1, 0),
        "",
    ]);
    t.row(&[
        "SQL claim + outcome write (C)",
        &format!("{:.0} rows/s", drn.0),
        &runs(&drn.1, 0),
        "",
    ]);
    t.row(&[
        "SQL insert, count triggers off",
        &format!("{:.0} rows/s", ins_off.0),
        &runs(&ins_off.1, 0),
        &format!("triggers cost {:.0}%", 100.0 * (1.0 - ins.0 / ins_off.0)),
    ]);
    t.row(&[
        "SQL claim + write, count triggers off",
        &format!("{:.0} rows/s", drn_off.0),
        &runs(&drn_off.1, 0),
        &format!("triggers cost {:.0}%", 100.0 * (1.0 - drn.0 / drn_off.0)),
    ]);
    t.row(&[
        "C and A sharing the CPUs (D)",
        &format!("{combined:.0} rows/s"),
        "",
        "1/(1/C+1/A)",
    ]);
    t.row(&[
        "B, C and A sharing the CPUs (E)",
        &format!("{e2e_ceiling:.0} rows/s"),
        "",
        "1/(1/B+1/C+1/A)",
    ]);
    t.section("webhookd (serve and work processes)");
    t.row(&[
        &format!("ingest, single POSTs x{}", a.clients),
        &format!("{:.0} ev/s", single.0),
        &runs(&single.1, 0),
        &format!(
            "{}, {}",
            pct(single.0, http.0, "A"),
            pct(single.0, ins.0, "B")
        ),
    ]);
    t.row(&[
        &format!("ingest, batches {}x{}", a.batch_clients, a.batch),
        &format!("{:.0} ev/s", batch.0),
        &runs(&batch.1, 0),
        &pct(batch.0, ins.0, "B"),
    ]);
    t.row(&[
        "delivery alone (drain)",
        &format!("{:.0} ev/s", drain.0),
        &runs(&drain.1, 0),
        &format!(
            "{}, {}, {}",
            pct(drain.0, drn.0, "C"),
            pct(drain.0, http.0, "A"),
            pct(drain.0, combined, "D")
        ),
    ]);
    t.row(&[
        &format!("end to end, batches {}x{}", a.batch_clients, a.batch),
        &format!("{:.0} ev/s", e2e.0),
        &runs(&e2e.1, 0),
        &format!(
            "{}, {}",
            pct(e2e.0, combined, "D"),
            pct(e2e.0, e2e_ceiling, "E")
        ),
    ]);
    t.row(&[
        &format!("end to end, single POSTs x{}", a.clients),
        &format!("{:.0} ev/s", e2e_single.0),
        &runs(&e2e_single.1, 0),
        &pct(e2e_single.0, e2e_ceiling, "E"),
    ]);
    t.row(&[
        &format!("submit->call p50 at {:.0}/s", lat_rate.0),
        &format!("{:.1} ms", p50.0),
        &runs(&p50.1, 1),
        &format!("{:.1}x commit", p50.0 / commit.0),
    ]);
    t.row(&[
        "submit->call p95",
        &format!("{:.1} ms", p95.0),
        &runs(&p95.1, 1),
        "",
    ]);
    t.row(&[
        "submit->call p99",
        &format!("{:.1} ms", p99.0),
        &runs(&p99.1, 1),
        &format!("{:.1}x commit p99", p99.0 / commit_p99.0),
    ]);
    t.row(&[
        "of p50: submit until 201, p50",
        &format!("{:.1} ms", answered.0),
        &runs(&answered.1, 1),
        "",
    ]);
    for (feed, single) in [
        (format!("single POSTs x{}", a.clients), true),
        (format!("batches {}x{}", a.batch_clients, a.batch), false),
    ] {
        t.section(&format!(
            "per event, end to end with {feed} (rows: bench database; WAL, CPU: whole server)"
        ));
        for (i, (name, d)) in COST_ROWS.iter().enumerate() {
            let v = m(&|r| {
                let cost = if single {
                    r.e2e_single_cost
                } else {
                    r.e2e_batch_cost
                };
                cost_values(&cost)[i]
            });
            t.row(&[name, &format!("{:.d$}", v.0), &runs(&v.1, *d), ""]);
        }
    }
    t.section("peak RSS (VmHWM)");
    t.row(&[
        "webhookd serve",
        &format!("{:.1} MiB", serve_rss as f64 / 1024.0),
        "",
        "",
    ]);
    t.row(&[
        "webhookd work (max over rounds)",
        &format!("{:.1} MiB", work_rss as f64 / 1024.0),
        &runs(
            &rounds
                .iter()
                .map(|r| r.work_rss_kib as f64 / 1024.0)
                .collect::<Vec<_>>(),
            1,
        ),
        "",
    ]);
    t.row(&[
        "bench (receiver + generator)",
        &format!("{:.1} MiB", bench_rss as f64 / 1024.0),
        "",
        "",
    ]);
    println!();
    println!(
        "results (median of {} rounds{})",
        rounds.len(),
        if a.label.is_empty() {
            String::new()
        } else {
            format!(", {}", a.label)
        }
    );
    print!("{}", t.render());
    let load_end = crate::procs::load_average().unwrap_or(f64::NAN);
    println!(
        "load average at start {} / at end {load_end:.2}; logs at LOG_LEVEL=warn",
        ctx.settings[1].1
    );

    let round_json: Vec<Value> = rounds
        .iter()
        .map(|r| {
            json!({
                "commit_ms": r.commit_ms,
                "commit_paced_p99_ms": r.commit_p99_ms,
                "commit_paced_max_ms": r.commit_max_ms,
                "http_ceiling_rps": r.http.rate(),
                "sql_insert_rows_per_s": r.sql_insert.per_sec(),
                "sql_claim_record_rows_per_s": r.sql_drain.per_sec(),
                "sql_insert_triggers_off_rows_per_s": r.sql_insert_off.per_sec(),
                "sql_claim_record_triggers_off_rows_per_s": r.sql_drain_off.per_sec(),
                "ingest_single_events_per_s": r.single.rate(),
                "ingest_single_errors": r.single.errors,
                "ingest_batch_events_per_s": r.batch.rate(),
                "ingest_batch_errors": r.batch.errors,
                "delivery_events_per_s": r.drain.rate(),
                "delivery_rows": r.drain.rows,
                "delivery_calls": r.drain.calls,
                "delivery_seconds": r.drain.elapsed.as_secs_f64(),
                "end_to_end_single": pipeline_json(&r.e2e_single),
                "end_to_end_batch": pipeline_json(&r.e2e_batch),
                "end_to_end_single_cost": r.e2e_single_cost.json(),
                "end_to_end_batch_cost": r.e2e_batch_cost.json(),
                "latency": {
                    "rate": r.latency.target_rate, "sent": r.latency.sent, "errors": r.latency.errors,
                    "skipped": r.latency.skipped, "missing": r.latency.missing,
                    "p50_ms": r.latency.p50, "p95_ms": r.latency.p95, "p99_ms": r.latency.p99, "max_ms": r.latency.max,
                    "answered_p50_ms": r.latency.answered_p50, "answered_p99_ms": r.latency.answered_p99
                },
                "work_peak_rss_kib": r.work_rss_kib,
            })
        })
        .collect();
    let doc = json!({
        "label": a.label,
        "settings": {
            "machine": ctx.settings.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "rounds": a.rounds, "rows": a.rows, "sql_batch": a.sql_batch, "sql_connections": a.sql_connections,
            "phase_seconds": a.phase.as_secs_f64(), "clients": a.clients, "batch": a.batch, "batch_clients": a.batch_clients,
            "latency_phase_seconds": a.latency_phase.as_secs_f64(),
            "serve_env": ctx.serve_env.iter().filter(|(k, _)| k != "DATABASE_URL").map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "work_env": ctx.work_env.iter().filter(|(k, _)| k != "DATABASE_URL").map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "load_average_at_end": load_end,
        },
        "median": {
            "commit_ms": commit.0,
            "commit_paced_p99_ms": commit_p99.0,
            "commit_paced_max_ms": commit_max.0,
            "ceiling_http_rps": http.0,
            "ceiling_sql_insert_rows_per_s": ins.0,
            "ceiling_sql_claim_record_rows_per_s": drn.0,
            "ceiling_combined_rows_per_s": combined,
            "sql_insert_triggers_off_rows_per_s": ins_off.0,
            "sql_claim_record_triggers_off_rows_per_s": drn_off.0,
            "trigger_cost_insert": 1.0 - ins.0 / ins_off.0,
            "trigger_cost_claim_record": 1.0 - drn.0 / drn_off.0,
            "ingest_single_events_per_s": single.0,
            "ingest_batch_events_per_s": batch.0,
            "delivery_events_per_s": drain.0,
            "end_to_end_batch_events_per_s": e2e.0,
            "end_to_end_single_events_per_s": e2e_single.0,
            "ceiling_end_to_end_rows_per_s": e2e_ceiling,
            "latency_rate": lat_rate.0,
            "latency_p50_ms": p50.0,
            "latency_p95_ms": p95.0,
            "latency_p99_ms": p99.0,
            "latency_answered_p50_ms": answered.0,
        },
        "fractions": {
            "ingest_single_of_http": single.0 / http.0,
            "ingest_single_of_sql_insert": single.0 / ins.0,
            "ingest_batch_of_sql_insert": batch.0 / ins.0,
            "delivery_of_sql_claim_record": drain.0 / drn.0,
            "delivery_of_http": drain.0 / http.0,
            "delivery_of_combined": drain.0 / combined,
            "end_to_end_batch_of_combined": e2e.0 / combined,
            "end_to_end_batch_of_end_to_end_ceiling": e2e.0 / e2e_ceiling,
            "end_to_end_single_of_end_to_end_ceiling": e2e_single.0 / e2e_ceiling,
        },
        "peak_rss_kib": { "serve": serve_rss, "work_max": work_rss, "bench": bench_rss },
        "rounds": round_json,
    });
    let path = ctx.out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).expect("write results.json");
    println!("saved {}", path.display());
}

/// The per-event rows of the table: name and decimals, in the order of [`cost_values`].
const COST_ROWS: [(&str, usize); 6] = [
    ("commits", 2),
    ("rows inserted", 2),
    ("rows updated", 2),
    ("rows deleted", 2),
    ("WAL bytes", 0),
    ("PostgreSQL CPU, us", 0),
];

fn cost_values(c: &Cost) -> [f64; 6] {
    [
        c.commits_per_event,
        c.inserted_per_event,
        c.updated_per_event,
        c.deleted_per_event,
        c.wal_bytes_per_event,
        1e6 * c.pg_cpu_seconds / c.events,
    ]
}

fn pipeline_json(p: &Pipeline) -> Value {
    json!({
        "events_per_s": p.rate(),
        "submitted_per_s": p.submitted.rate(),
        "submit_errors": p.submitted.errors,
        "delivered_per_s": p.delivered_rate(),
        "backlog_at_end": p.backlog,
    })
}
