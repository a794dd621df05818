//! Benchmark of the statistics (SPEC §5.2): how long `GET /webhooks/stats` and
//! `webhookd stats --json` take with a million rows in `webhook_queue`, next to the `GROUP BY`
//! an operator would write by hand.
//!
//! ```text
//! just bench-stats                                   # or, against a server that answers:
//! cargo run --release --example bench_stats -- --rows 1000000 --runs 30
//! ```
//!
//! How it measures:
//! 1. Creates a fresh database `webhookd_bench_stats` on the server of `--database-url` (dropping
//!    an old one) and applies the migrations.
//! 2. Loads `--rows` rows with `INSERT … SELECT … FROM generate_series`, 100,000 rows a
//!    statement over two connections, so the statement-level triggers fill the counter tables
//!    exactly as in production. The mix: ~70% completed (a tenth after one retry), ~10% failed
//!    after 4 attempts, ~15% pending (a third waiting for a retry), ~3% processing, ~2%
//!    cancelled; 85% `+credit`; five partners; created over the last day. `webhook_throughput`
//!    is written by the UPDATE trigger when a row finishes, which a bulk INSERT never does, so
//!    it is backfilled from the rows' finish times. Then `VACUUM ANALYZE`, and 1,000
//!    processing rows complete through the UPDATE trigger, as a worker batch would.
//! 3. Checks the stats document against `count(*)` and a `GROUP BY` of the queue (and exits
//!    non-zero when they differ): fast numbers are worth nothing if they are wrong.
//! 4. After 3 warm-ups, times `--runs` rounds of (a) `application::stats::collect`, the function
//!    behind the API and the CLI, (b) `GET /webhooks/stats` over HTTP against the API served in
//!    this process (request logs discarded), (c) the naive `GROUP BY` over `webhook_queue`. The
//!    three alternate within a round, so background load falls on all of them alike.
//! 5. Prints `EXPLAIN (ANALYZE, BUFFERS)` execution times of the statements `collect` runs, and
//!    exits non-zero if any of them reads `webhook_queue` with a sequential scan.
//! 6. Prints a summary, writes it to `target/bench/stats.json`, and drops the database unless
//!    `--keep`.
//!
//! These are wall-clock times on whatever machine runs it: read them next to the CPU count and
//! load average printed with them, not as absolute truths.

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::QueryableByName;
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};
use webhookd::api::ApiState;
use webhookd::application::metrics::{Metrics, Role};
use webhookd::application::stats::{self, StatsDocument, StatusCounts};
use webhookd::config::{Overrides, Settings};
use webhookd::startup::Supervisor;
use webhookd::store::{self, stats as stats_sql, DbPool};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/webhookd";
const BENCH_DB: &str = "webhookd_bench_stats";
/// Rows per INSERT statement, i.e. per trigger run.
const CHUNK: i64 = 100_000;
/// Connections loading in parallel; each writes its own counter shard, as workers do.
const LOADERS: i64 = 2;
const WARMUPS: usize = 3;
const PARTNERS: i64 = 5;
/// Processing rows completed by an UPDATE right before timing.
const FINISHED_NOW: i64 = 1_000;

/// What an operator would type to get the same counts without the counter tables.
const NAIVE_SQL: &str = "SELECT status, event_type, deleted_at IS NULL AS live, count(*) AS n
     FROM webhook_queue GROUP BY 1, 2, 3";

#[derive(Parser)]
#[command(about = "Benchmark GET /webhooks/stats and `webhookd stats` on a large webhook_queue")]
struct Args {
    /// Server to run on; the database webhookd_bench_stats is created there
    /// [default: $DATABASE_URL, else postgres://postgres@127.0.0.1:5432/webhookd]
    #[arg(long)]
    database_url: Option<String>,
    /// Rows to load into webhook_queue
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Timed repetitions of each measurement (after 3 warm-ups)
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Keep the database afterwards instead of dropping it
    #[arg(long)]
    keep: bool,
    /// Print the whole EXPLAIN plans, not only their execution times
    #[arg(long)]
    plans: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench_stats: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Creates the database, benchmarks, drops it. `Ok(false)` when a check failed.
async fn run(args: &Args) -> anyhow::Result<bool> {
    if args.rows < 1 || args.runs < 1 {
        bail!("--rows and --runs must be at least 1");
    }
    let server = args
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let admin = connect(&with_database(&server, "postgres")?)
        .await
        .context("connecting to the server's `postgres` database")?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {BENCH_DB}"))
        .await?;
    let url = with_database(&server, BENCH_DB)?;
    let outcome = bench(args, &url).await;
    if args.keep {
        println!("kept database {BENCH_DB} (drop it with: DROP DATABASE {BENCH_DB})");
    } else {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"))
            .await?;
    }
    outcome
}

async fn bench(args: &Args, url: &str) -> anyhow::Result<bool> {
    store::migrate(url).await.context("applying migrations")?;
    let client = connect(url).await?;

    let loading = load(url, &client, args.rows).await?;
    let pool = store::pool(url, 4)?;
    let document = stats::collect(&pool)
        .await
        .map_err(|e| anyhow!("stats::collect: {e}"))?;
    let naive = naive_counts(&pool).await?;
    if !sane(&client, &document, &naive).await? {
        eprintln!("bench_stats: the stats document disagrees with the queue; not timing it");
        return Ok(false);
    }

    let api = Api::start(url, pool.clone())?;
    let first = api.get_stats().await?;
    if first["total"].as_i64() != Some(document.total) {
        bail!(
            "GET /webhooks/stats answered total {} instead of {}",
            first["total"],
            document.total
        );
    }
    let load_before = load_average();
    println!(
        "\ntiming: {WARMUPS} warm-ups, then {} runs of (a), (b), (c) in turn",
        args.runs
    );
    let mut a = Vec::with_capacity(args.runs);
    let mut b = Vec::with_capacity(args.runs);
    let mut c = Vec::with_capacity(args.runs);
    for round in 0..WARMUPS + args.runs {
        let ta = timed(async {
            stats::collect(&pool)
                .await
                .map_err(|e| anyhow!("stats::collect: {e}"))
        })
        .await?;
        let tb = timed(api.get_stats()).await?;
        let tc = timed(naive_counts(&pool)).await?;
        if round >= WARMUPS {
            a.push(ta);
            b.push(tb);
            c.push(tc);
        }
    }
    api.stop().await;
    let load_after = load_average();

    let explains = explain_all(&client, args.plans).await?;
    let seq_scans: Vec<&str> = explains
        .iter()
        .filter(|e| e.is_stats && e.seq_scan)
        .map(|e| e.name)
        .collect();

    let (a, b, c) = (Summary::of(&a), Summary::of(&b), Summary::of(&c));
    let ratio = c.median / a.median;
    let machine = machine(&client, &load_before, &load_after).await?;
    let summary = Report {
        rows: args.rows,
        runs: args.runs,
        machine: &machine,
        loading: &loading,
        document: &document,
        a: &a,
        b: &b,
        c: &c,
        ratio,
        explains: &explains,
    };
    summary.print();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/stats.json");
    std::fs::create_dir_all(path.parent().expect("a parent directory"))?;
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&summary.to_json())? + "\n",
    )?;
    println!("written to {}", path.display());

    if !seq_scans.is_empty() {
        eprintln!("bench_stats: a stats statement scans webhook_queue sequentially: {seq_scans:?}");
        return Ok(false);
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Loading

struct Loading {
    insert: Duration,
    throughput: Duration,
    vacuum: Duration,
    heap_bytes: i64,
    index_bytes: i64,
    counter_rows: i64,
    attempt_rows: i64,
    throughput_rows: i64,
}

impl Loading {
    fn total(&self) -> Duration {
        self.insert + self.throughput + self.vacuum
    }
}

async fn load(url: &str, client: &Client, rows: i64) -> anyhow::Result<Loading> {
    println!("loading {rows} rows into webhook_queue through the counting triggers …");
    let started = Instant::now();
    let partners: Vec<i64> = client
        .query(
            "INSERT INTO webhook_configs (name, postback_url, chargeback_url)
             SELECT 'bench-partner-' || i,
                    'https://partner-' || i || '.example/postback?user_id={user_id}&value={value}',
                    'https://partner-' || i || '.example/chargeback?user_id={user_id}&value={value}'
             FROM generate_series(1, $1::int8) AS i
             RETURNING id",
            &[&PARTNERS],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let insert = insert_sql();
    let chunks: Vec<(i64, i64)> = (0..(rows + CHUNK - 1) / CHUNK)
        .map(|i| (i * CHUNK + 1, ((i + 1) * CHUNK).min(rows)))
        .collect();
    let loaders = (0..LOADERS).map(|loader| {
        let (insert, partners, chunks) = (&insert, &partners, &chunks);
        async move {
            let conn = connect(url).await?;
            for &(low, high) in chunks
                .iter()
                .skip(loader as usize)
                .step_by(LOADERS as usize)
            {
                let params: [&(dyn ToSql + Sync); 3] = [&low, &high, partners];
                conn.execute(insert.as_str(), &params).await?;
                eprintln!(
                    "  rows {low}..={high} in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            anyhow::Ok(())
        }
    });
    futures_util::future::try_join_all(loaders).await?;
    let insert = started.elapsed();

    let started = Instant::now();
    client.execute(&throughput_backfill_sql(), &[]).await?;
    let throughput = started.elapsed();

    let started = Instant::now();
    for table in [
        "webhook_queue",
        "webhook_queue_tallies",
        "webhook_attempt_counts",
        "webhook_throughput",
        "webhook_configs",
    ] {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await?;
    }
    let vacuum = started.elapsed();

    // A worker batch finishing now, through the UPDATE trigger, so that the last minute's
    // throughput is not empty however long the load took.
    let finished = client
        .execute(
            "UPDATE webhook_queue
             SET status = 'completed', retry_0_started_at = now() - interval '80 milliseconds',
                 retry_0_completed_at = now(), retry_0_duration_ms = 80, retry_0_http_status = 200,
                 retry_0_response_body = 'ok', completed_at = now(), updated_at = now(),
                 locked_at = NULL, lock_expires_at = NULL
             WHERE id IN (SELECT id FROM webhook_queue
                          WHERE status = 'processing' AND deleted_at IS NULL AND retry_count = 0
                          LIMIT $1)",
            &[&FINISHED_NOW],
        )
        .await?;
    println!("{finished} processing rows completed through the UPDATE trigger just now");

    let sizes = client
        .query_one(
            "SELECT pg_relation_size('webhook_queue'), pg_indexes_size('webhook_queue'),
                    (SELECT count(*) FROM webhook_queue_tallies),
                    (SELECT count(*) FROM webhook_attempt_counts),
                    (SELECT count(*) FROM webhook_throughput)",
            &[],
        )
        .await?;
    let loading = Loading {
        insert,
        throughput,
        vacuum,
        heap_bytes: sizes.get(0),
        index_bytes: sizes.get(1),
        counter_rows: sizes.get(2),
        attempt_rows: sizes.get(3),
        throughput_rows: sizes.get(4),
    };
    println!(
        "loaded in {:.1} s: INSERT {:.1} s, throughput backfill {:.1} s, VACUUM ANALYZE {:.1} s",
        loading.total().as_secs_f64(),
        loading.insert.as_secs_f64(),
        loading.throughput.as_secs_f64(),
        loading.vacuum.as_secs_f64()
    );
    Ok(loading)
}

/// `mod(hash(g, seed), modulus)`: deterministic, independent per seed, never negative.
fn hash(seed: u32, modulus: i64) -> String {
    format!("mod(hashint8extended(g, {seed}) & 9223372036854775807, {modulus})")
}

/// Seconds from a row's creation to the start of attempt `i` (the retry back-off, roughly).
const ATTEMPT_OFFSETS_S: [i64; 7] = [0, 2, 12, 72, 372, 1572, 5172];

/// The INSERT of rows `$1..=$2` for partners `$3`. Built in layers: hashes of `g`, then the
/// row's kind and attempt count, then each attempt's columns, then the row. `OFFSET 0` keeps
/// the planner from folding the layers into one another, which would repeat every CASE and
/// hash wherever a later layer names it (8x slower, and expensive enough to be JIT-compiled).
fn insert_sql() -> String {
    let hashes: String = (0..7)
        .map(|i| format!(", {} AS h{i}", hash(10 + i, 10_000)))
        .collect();
    let layer1 = format!(
        "SELECT g, {p} AS p, {q} AS q, {e} AS e, {r} AS r, {age} AS age_ms{hashes}
         FROM generate_series($1::int8, $2::int8) AS g OFFSET 0",
        p = hash(1, 100),
        q = hash(2, 100),
        e = hash(3, 100),
        r = hash(4, 100),
        age = hash(5, 86_400_000),
    );
    // 0-69 completed, 70-79 failed, 80-89 new pending, 90-94 pending retry, 95-97 processing,
    // 98-99 cancelled.
    let layer2 = format!(
        "SELECT l1.*,
                CASE WHEN p < 70 THEN 'completed' WHEN p < 80 THEN 'failed' WHEN p < 95 THEN 'pending'
                     WHEN p < 98 THEN 'processing' ELSE 'cancelled' END AS kind,
                CASE WHEN p < 70 THEN 1 + (r < 10)::int WHEN p < 80 THEN 4 WHEN p < 90 THEN 0
                     WHEN p < 95 THEN 1 + (r < 40)::int WHEN p < 98 THEN 0 ELSE (r < 50)::int END AS attempts,
                now() - (CASE WHEN p BETWEEN 80 AND 89 THEN age_ms % 300000
                              WHEN p BETWEEN 95 AND 97 THEN age_ms % 30000
                              ELSE age_ms END) * interval '1 millisecond' AS created_at
         FROM ({layer1}) AS l1 OFFSET 0"
    );
    let mut attempt_columns = String::new();
    for (i, offset) in ATTEMPT_OFFSETS_S.iter().enumerate() {
        let done = format!("{i} < attempts");
        let ok = format!("(kind = 'completed' AND {i} = attempts - 1)");
        let timeout = format!("(NOT {ok} AND h{i} % 5 = 0)");
        attempt_columns.push_str(&format!(
            ",
                CASE WHEN {done} THEN created_at + interval '{offset} seconds' END AS s{i},
                CASE WHEN {done} THEN CASE WHEN {timeout} THEN 10000 WHEN h{i} >= 9900 THEN 2000 + h{i} % 8000
                                           WHEN h{i} >= 9000 THEN 200 + h{i} % 1800 ELSE 15 + h{i} % 185 END END AS d{i},
                CASE WHEN {done} THEN CASE WHEN {ok} THEN 200 WHEN {timeout} THEN NULL ELSE 503 END END AS st{i},
                CASE WHEN {done} THEN CASE WHEN {ok} THEN 'ok' WHEN {timeout} THEN NULL ELSE 'Service Unavailable' END END AS b{i},
                CASE WHEN {done} THEN CASE WHEN {ok} THEN NULL WHEN {timeout} THEN 'timed out after 10s'
                                           ELSE 'partner answered HTTP 503' END END AS er{i}"
        ));
    }
    let layer3 = format!("SELECT l2.*{attempt_columns} FROM ({layer2}) AS l2 OFFSET 0");

    let ended = |i: usize| format!("s{i} + d{i} * interval '1 millisecond'");
    let last_ended = format!(
        "greatest({})",
        (0..7).map(ended).collect::<Vec<_>>().join(", ")
    );
    let mut columns = vec![
        "event_type",
        "event_id",
        "config_id",
        "webhook_url",
        "url_params",
        "status",
        "retry_count",
        "max_retries",
        "next_retry_at",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    let mut values = vec![
        "CASE WHEN e < 85 THEN '+credit' ELSE '-debit' END".to_string(),
        "'evt_' || g".to_string(),
        "($3::int8[])[CASE WHEN q < 50 THEN 1 WHEN q < 75 THEN 2 WHEN q < 90 THEN 3 WHEN q < 97 THEN 4 ELSE 5 END]"
            .to_string(),
        "'https://partner.example/' || CASE WHEN e < 85 THEN 'postback' ELSE 'chargeback' END
            || '?user_id=u' || g % 50000 || '&value=' || g % 1000"
            .to_string(),
        "jsonb_build_object('user_id', 'u' || g % 50000, 'value', (g % 1000)::text, 'token', 'tok_' || g % 97)"
            .to_string(),
        "CASE WHEN kind = 'cancelled' THEN 'pending' ELSE kind END".to_string(),
        "CASE kind WHEN 'completed' THEN attempts - 1 WHEN 'failed' THEN 3 ELSE attempts END".to_string(),
        "CASE WHEN kind = 'failed' THEN 3 ELSE 6 END".to_string(),
        "CASE WHEN kind = 'pending' AND attempts > 0 THEN now() + r * interval '10 seconds' ELSE created_at END"
            .to_string(),
    ];
    for i in 0..7 {
        for (column, value) in [
            ("started_at", format!("s{i}")),
            ("completed_at", ended(i)),
            ("duration_ms", format!("d{i}")),
            ("http_status", format!("st{i}")),
            ("response_body", format!("b{i}")),
            ("error", format!("er{i}")),
        ] {
            columns.push(format!("retry_{i}_{column}"));
            values.push(value);
        }
    }
    for (column, value) in [
        (
            "worker_id",
            "CASE WHEN attempts > 0 OR kind = 'processing' THEN 'bench-worker-' || g % 4 END"
                .to_string(),
        ),
        (
            "locked_at",
            "CASE WHEN kind = 'processing' THEN now() - r * interval '100 milliseconds' END"
                .to_string(),
        ),
        (
            "lock_expires_at",
            "CASE WHEN kind = 'processing' THEN now() + interval '5 minutes' END".to_string(),
        ),
        ("created_at", "created_at".to_string()),
        ("updated_at", format!("coalesce({last_ended}, created_at)")),
        (
            "completed_at",
            format!("CASE WHEN kind = 'completed' THEN {last_ended} END"),
        ),
        (
            "deleted_at",
            "CASE WHEN kind = 'cancelled' THEN created_at + interval '1 minute' END".to_string(),
        ),
    ] {
        columns.push(column.to_string());
        values.push(value);
    }
    format!(
        "INSERT INTO webhook_queue ({}) SELECT {} FROM ({layer3}) AS l3",
        columns.join(", "),
        values.join(",\n       ")
    )
}

/// What the UPDATE trigger would have written had the rows finished one by one: per second
/// and per shard (four connections), the rows that reached completed or failed.
fn throughput_backfill_sql() -> String {
    let ends: Vec<String> = (0..7).map(|i| format!("retry_{i}_completed_at")).collect();
    format!(
        "INSERT INTO webhook_throughput (second, shard, completed, failed)
         SELECT date_trunc('second', finished), id % 4,
                count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed')
         FROM (SELECT id, status, greatest({}) AS finished
               FROM webhook_queue WHERE status IN ('completed', 'failed') AND deleted_at IS NULL) AS f
         WHERE finished > now() - interval '1 day'
         GROUP BY 1, 2",
        ends.join(", ")
    )
}

// ---------------------------------------------------------------------------------------------
// Checking

#[derive(QueryableByName)]
struct NaiveRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Bool)]
    live: bool,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The baseline: the counts straight from `webhook_queue`, through the same pool.
async fn naive_counts(pool: &DbPool) -> anyhow::Result<Vec<NaiveRow>> {
    use diesel_async::RunQueryDsl;
    let mut conn = pool.get().await.map_err(|e| anyhow!("pool: {e}"))?;
    Ok(diesel::sql_query(NAIVE_SQL).load(&mut conn).await?)
}

fn by_status(counts: &StatusCounts) -> [(&'static str, i64); 4] {
    [
        ("pending", counts.pending),
        ("processing", counts.processing),
        ("completed", counts.completed),
        ("failed", counts.failed),
    ]
}

/// Compares the document with the queue itself; prints every comparison.
async fn sane(client: &Client, doc: &StatsDocument, naive: &[NaiveRow]) -> anyhow::Result<bool> {
    let count: i64 = client
        .query_one("SELECT count(*) FROM webhook_queue", &[])
        .await?
        .get(0);
    let attempts: i64 = client
        .query_one(
            &format!(
                "SELECT coalesce(sum(num_nonnulls({})), 0)::int8 FROM webhook_queue",
                (0..7)
                    .map(|i| format!("retry_{i}_completed_at"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &[],
        )
        .await?
        .get(0);
    let live = |event_type: Option<&str>, status: &str| -> i64 {
        naive
            .iter()
            .filter(|r| {
                r.live && r.status == status && event_type.is_none_or(|t| t == r.event_type)
            })
            .map(|r| r.n)
            .sum()
    };
    let mut checks = vec![
        (
            "total + cancelled = count(*)".to_string(),
            doc.total + doc.cancelled,
            count,
        ),
        (
            "cancelled = rows with deleted_at".to_string(),
            doc.cancelled,
            naive.iter().filter(|r| !r.live).map(|r| r.n).sum(),
        ),
        (
            "attempts.total = attempts recorded".to_string(),
            doc.attempts.total,
            attempts,
        ),
    ];
    for (status, n) in by_status(&doc.by_status) {
        checks.push((format!("by_status.{status}"), n, live(None, status)));
    }
    for (event_type, counts) in doc.by_event_type.iter() {
        let event_type = event_type.as_str();
        for (status, n) in by_status(counts) {
            checks.push((
                format!("by_event_type[{event_type}].{status}"),
                n,
                live(Some(event_type), status),
            ));
        }
    }
    println!("\nchecking the stats document against webhook_queue ({count} rows):");
    let mut all_ok = true;
    for (what, ours, truth) in checks {
        let ok = ours == truth;
        all_ok &= ok;
        println!(
            "  {:<5} {what:<40} stats {ours:>9}   queue {truth:>9}",
            if ok { "ok" } else { "WRONG" }
        );
    }
    Ok(all_ok)
}

// ---------------------------------------------------------------------------------------------
// The API, served in this process

struct Api {
    base: String,
    http: reqwest::Client,
    services: Supervisor,
}

impl Api {
    fn start(url: &str, pool: DbPool) -> anyhow::Result<Self> {
        let env: HashMap<String, String> = [
            ("DATABASE_URL", url),
            ("DATABASE_MAX_CONNECTIONS", "4"),
            ("SERVER_ADDR", "127.0.0.1:0"),
            ("LOG_LEVEL", "warn"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let settings = Settings::load_from(&Overrides::default(), &env, Path::new("/nonexistent"))
            .map_err(|e| anyhow!("settings: {e}"))?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        // Request logs would go to stderr between our lines; their cost is a channel send.
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let metrics = Arc::new(Metrics::new(Role::Api));
        let (state, services) = ApiState::new(&settings, pool, metrics, log.clone());
        let mut services_running = Supervisor::new(&log);
        services_running.start_api(listener, state, services, settings.shutdown_timeout);
        webhookd::sender::install_crypto_provider();
        let http = reqwest::Client::builder().no_proxy().build()?;
        Ok(Self {
            base,
            http,
            services: services_running,
        })
    }

    /// One `GET /webhooks/stats`, body read and parsed, as a dashboard would.
    async fn get_stats(&self) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}/webhooks/stats", self.base))
            .send()
            .await?
            .error_for_status()?;
        Ok(serde_json::from_slice(&response.bytes().await?)?)
    }

    async fn stop(self) {
        self.services.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring and explaining

/// Milliseconds `work` took.
async fn timed<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<f64> {
    let started = Instant::now();
    work.await?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

#[derive(Debug)]
struct Summary {
    min: f64,
    median: f64,
    p95: f64,
    max: f64,
}

impl Summary {
    fn of(samples: &[f64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        // Nearest rank: the smallest sample at or above 95% of them.
        let p95 = s[((0.95 * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self {
            min: s[0],
            median,
            p95,
            max: s[n - 1],
        }
    }

    fn to_json(&self) -> Value {
        json!({"min_ms": round3(self.min), "median_ms": round3(self.median),
               "p95_ms": round3(self.p95), "max_ms": round3(self.max)})
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

struct Explain {
    name: &'static str,
    /// One of the statements behind `collect`, as opposed to the baseline.
    is_stats: bool,
    execution_ms: f64,
    buffers: String,
    /// How each scan of `webhook_queue` reads it, e.g. `Index Only Scan using … on webhook_queue`.
    queue_scans: Vec<String>,
    seq_scan: bool,
}

async fn explain_all(client: &Client, print_plans: bool) -> anyhow::Result<Vec<Explain>> {
    let statements = [
        ("row_counts", true, stats_sql::ROW_COUNTS_SQL),
        ("attempt_buckets", true, stats_sql::ATTEMPT_BUCKETS_SQL),
        ("moments", true, stats_sql::MOMENTS_SQL),
        ("naive GROUP BY", false, NAIVE_SQL),
    ];
    let mut out = Vec::new();
    for (name, is_stats, sql) in statements {
        let explain = format!("EXPLAIN (ANALYZE, BUFFERS) {sql}");
        client.query(&explain, &[]).await?; // warm, like the timed runs
        let plan: Vec<String> = client
            .query(&explain, &[])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if print_plans {
            println!("\nEXPLAIN (ANALYZE, BUFFERS) {name}:");
            for line in &plan {
                println!("  {line}");
            }
        }
        let execution_ms = plan
            .iter()
            .find_map(|l| l.strip_prefix("Execution Time: "))
            .and_then(|l| l.trim_end_matches(" ms").parse().ok())
            .ok_or_else(|| anyhow!("no Execution Time in the plan of {name}"))?;
        let buffers = plan
            .iter()
            .find_map(|l| l.trim().strip_prefix("Buffers: "))
            .unwrap_or("none")
            .to_string();
        let queue_scans: Vec<String> = plan
            .iter()
            .filter(|l| l.contains(" on webhook_queue ") || l.ends_with(" on webhook_queue"))
            .map(|l| {
                let node = l.trim().trim_start_matches("->").trim();
                node.split("  (").next().unwrap_or(node).to_string()
            })
            .collect();
        let seq_scan = queue_scans.iter().any(|s| s.contains("Seq Scan"));
        out.push(Explain {
            name,
            is_stats,
            execution_ms,
            buffers,
            queue_scans,
            seq_scan,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reporting

struct Machine {
    cpus: usize,
    load_before: String,
    load_after: String,
    postgres: String,
    settings: String,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn machine(client: &Client, load_before: &str, load_after: &str) -> anyhow::Result<Machine> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'),
                    format('shared_buffers=%s work_mem=%s max_parallel_workers_per_gather=%s jit=%s',
                           current_setting('shared_buffers'), current_setting('work_mem'),
                           current_setting('max_parallel_workers_per_gather'), current_setting('jit'))",
            &[],
        )
        .await?;
    Ok(Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_before: load_before.to_string(),
        load_after: load_after.to_string(),
        postgres: row.get(0),
        settings: row.get(1),
    })
}

struct Report<'a> {
    rows: i64,
    runs: usize,
    machine: &'a Machine,
    loading: &'a Loading,
    document: &'a StatsDocument,
    a: &'a Summary,
    b: &'a Summary,
    c: &'a Summary,
    ratio: f64,
    explains: &'a [Explain],
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Report<'_> {
    fn print(&self) {
        let (m, l, d) = (self.machine, self.loading, self.document);
        println!("\nEXPLAIN (ANALYZE, BUFFERS), warm:");
        for e in self.explains {
            let scans = if e.queue_scans.is_empty() {
                "does not read webhook_queue".to_string()
            } else {
                e.queue_scans.join("; ")
            };
            println!(
                "  {:<16} Execution Time {:>9.3} ms   Buffers: {}\n  {:<16} {scans}",
                e.name, e.execution_ms, e.buffers, ""
            );
        }
        println!("\n== webhookd stats benchmark ==");
        println!(
            "machine: {} CPUs, load average {} before timing, {} after; PostgreSQL {} ({})",
            m.cpus, m.load_before, m.load_after, m.postgres, m.settings
        );
        println!(
            "data: {} rows in webhook_queue ({:.0} MiB heap + {:.0} MiB indexes), loaded in {:.1} s; \
             counter tables: {} + {} + {} rows",
            self.rows,
            mib(l.heap_bytes),
            mib(l.index_bytes),
            l.total().as_secs_f64(),
            l.counter_rows,
            l.attempt_rows,
            l.throughput_rows
        );
        println!(
            "document: total {}, cancelled {}, attempts {} (p50 {} ms, p99 {} ms), \
             oldest pending {} s, completed last minute {}",
            d.total,
            d.cancelled,
            d.attempts.total,
            json!(d.attempts.p50_duration_ms),
            json!(d.attempts.p99_duration_ms),
            json!(d.oldest_pending_age_seconds.map(|s| s.round())),
            d.completed_last_minute
        );
        println!(
            "\n{} runs after {WARMUPS} warm-ups, wall clock in ms",
            self.runs
        );
        println!("  {:<44} {:>9} {:>9} {:>9}", "", "median", "p95", "max");
        for (what, s) in [
            ("(a) stats::collect (API and CLI)", self.a),
            ("(b) GET /webhooks/stats over HTTP", self.b),
            ("(c) naive GROUP BY over webhook_queue", self.c),
        ] {
            println!(
                "  {what:<44} {:>9.2} {:>9.2} {:>9.2}",
                s.median, s.p95, s.max
            );
        }
        println!("  naive / collect, medians: {:.0}x", self.ratio);
        let busiest = [&m.load_before, &m.load_after]
            .iter()
            .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
            .fold(0.0, f64::max);
        if busiest > m.cpus as f64 {
            println!(
                "  caution: the load average ({busiest:.1}) exceeded the {} CPUs while timing; \
                 wall-clock times include waiting for a CPU",
                m.cpus
            );
        }
    }

    fn to_json(&self) -> Value {
        let (m, l) = (self.machine, self.loading);
        json!({
            "benchmark": "webhookd stats (examples/bench_stats.rs)",
            "rows": self.rows,
            "runs": self.runs,
            "warmups": WARMUPS,
            "machine": {"cpus": m.cpus, "load_average_before": m.load_before,
                        "load_average_after": m.load_after, "postgres": m.postgres, "settings": m.settings},
            "loading_seconds": {"total": round3(l.total().as_secs_f64()), "insert": round3(l.insert.as_secs_f64()),
                                "throughput_backfill": round3(l.throughput.as_secs_f64()),
                                "vacuum_analyze": round3(l.vacuum.as_secs_f64())},
            "webhook_queue_bytes": {"heap": l.heap_bytes, "indexes": l.index_bytes},
            "counter_table_rows": {"webhook_queue_tallies": l.counter_rows,
                                   "webhook_attempt_counts": l.attempt_rows,
                                   "webhook_throughput": l.throughput_rows},
            "collect": self.a.to_json(),
            "http_get_stats": self.b.to_json(),
            "naive_group_by": self.c.to_json(),
            "naive_over_collect_median_ratio": (self.ratio * 10.0).round() / 10.0,
            "explain": self.explains.iter().map(|e| json!({
                "statement": e.name, "execution_ms": e.execution_ms, "buffers": e.buffers,
                "webhook_queue_scans": e.queue_scans, "seq_scan_of_webhook_queue": e.seq_scan,
            })).collect::<Vec<_>>(),
            "document_total": self.document.total,
            "document_cancelled": self.document.cancelled,
        })
    }
}

// ---------------------------------------------------------------------------------------------

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    tokio::spawn(connection);
    Ok(client)
}

fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(url).context("--database-url is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
