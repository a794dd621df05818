//! `just bench` / `just bench soak`: webhookd measured end to end on this machine, next to the
//! machine's own ceilings measured in the same run.
//!
//! ```text
//! cargo build --release --bin webhookd --example bench
//! target/release/examples/bench [full|soak|latency] [--rounds 3] [--rows 50000] ...
//! target/release/examples/bench ab A=path/to/webhookd B=path/to/webhookd [--anchor C=...] [--pairs 4]
//! ```
//!
//! `full` creates a fresh database on the PostgreSQL at `DATABASE_URL`, starts `webhookd serve`
//! and (per round) `webhookd work` as separate processes, a loopback receiver on its own
//! thread in this process, and a load generator; each round measures
//!
//! * the ceilings: loopback GETs to the receiver (no database), and the library's own insert /
//!   claim / outcome-write statements driven directly (no HTTP), with and without the
//!   statement-level stats triggers;
//! * webhookd: single-event and batched ingest, the drain of a preloaded queue by `work`
//!   (delivery alone), end to end at saturation (closed-loop submits while `work` delivers:
//!   the rate events get through both), and submit → first call latency at half the
//!   end-to-end rate with single submits;
//! * peak RSS (`VmHWM`) of each process;
//!
//! and prints medians over the rounds with webhookd's rates as fractions of the ceilings;
//! `target/bench/results.json` holds the same figures. `soak` runs serve and work for minutes
//! at half the saturation rate and checks that table size, dead tuples and claim latency stay
//! flat. `ab` compares builds in alternating rounds (see `ab.rs`; `just bench ab` resolves git
//! revisions into binaries with scripts/bench-ab.sh).

mod ab;
mod costs;
mod full;
mod history;
mod load;
mod procs;
mod receiver;
mod report;
mod soak;
mod sqlpath;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tokio_postgres::NoTls;
use webhookd::store::{self, DbPool};

use load::Api;
use procs::Proc;
use receiver::Receiver;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Full,
    Soak,
    /// Submit -> first call latency at several rates (`--latency-rate`, else a sweep)
    Latency,
    /// Two builds (and `--anchor`) in alternating rounds: medians and per-pair ratios
    Ab,
    /// A queue with a long history against an empty one: operator calls, end to end, retention
    History,
}

#[derive(Clone, Debug, Parser)]
#[command(about = "webhookd end-to-end benchmark with same-run ceilings (see `just bench`)")]
pub struct Args {
    /// full: the table; soak: minutes at half the saturation rate, checking that nothing grows;
    /// latency: submit -> first call latency at several paced rates; ab: two builds compared in
    /// alternating rounds
    #[arg(value_enum, default_value = "full")]
    pub mode: Mode,
    /// ab: the builds A and B, each a webhookd binary as `[LABEL=]PATH` (`just bench ab` turns
    /// git revisions and worktrees into binaries first: scripts/bench-ab.sh)
    #[arg(value_name = "BUILD")]
    pub builds: Vec<String>,
    /// ab: a third build C, in every group of rounds (A B C, C B A, ...) and compared with A
    #[arg(long, value_name = "BUILD")]
    pub anchor: Option<String>,
    /// ab: groups of adjacent rounds, one round of each build (A B, B A, ...); each gives a ratio
    #[arg(long, default_value_t = 4)]
    pub pairs: usize,
    /// history: rows of history loaded into the queue
    #[arg(long, default_value_t = 10_000_000)]
    pub history_rows: i64,
    /// history: days the history spans, ending now
    #[arg(long, default_value_t = 7.0)]
    pub history_days: f64,
    /// history: calls of each operator query whose median is reported
    #[arg(long, default_value_t = 5)]
    pub calls: usize,
    /// ab: closed-loop single submits while `work` delivers, per round
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub saturation: Duration,
    /// ab: events submitted in each round's paced phase
    #[arg(long, default_value_t = 3000)]
    pub paced_events: usize,
    /// ab: rate of the paced phase, events/s
    #[arg(long, default_value_t = 200.0)]
    pub paced_rate: f64,
    /// ab: also write the results as JSON here (they always go to target/bench/ab.json)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// PostgreSQL server (a fresh database is created on it); default: $DATABASE_URL
    #[arg(long)]
    pub database_url: Option<String>,
    /// Rounds; every figure is the median over them
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Rows per SQL-ceiling phase and per end-to-end drain
    #[arg(long, default_value_t = 50_000)]
    pub rows: usize,
    /// Rows per statement in the SQL ceiling (insert, claim and outcome write)
    #[arg(long, default_value_t = 500)]
    pub sql_batch: usize,
    /// Connections driving the SQL ceiling
    #[arg(long, default_value_t = 4)]
    pub sql_connections: usize,
    /// Duration of each closed-loop phase (HTTP ceiling, single and batch ingest)
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub phase: Duration,
    /// Concurrent clients for single-event POSTs and for the HTTP ceiling
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Events per POST /webhooks/batch
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Concurrent clients posting batches
    #[arg(long, default_value_t = 4)]
    pub batch_clients: usize,
    /// Duration of the paced latency phase
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    pub latency_phase: Duration,
    /// Rate of the latency phase in events/s (default: half the end-to-end saturation rate
    /// with single submits, measured in the same round); `latency` mode takes a list (a,b,c)
    #[arg(long, value_delimiter = ',')]
    pub latency_rate: Vec<f64>,
    /// Soak duration
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub soak: Duration,
    /// Soak rate in events/s (default: half the saturation rate measured first)
    #[arg(long)]
    pub soak_rate: Option<f64>,
    /// Fraction (0 to 0.5) of the end-to-end events that are `-debit`s of the credit the same
    /// client submitted just before (money order: most wait for their credit, then are
    /// released). Works against an older `--webhookd` too, whose debits do not wait
    #[arg(long, default_value_t = 0.0, value_parser = debit_fraction)]
    pub debits: f64,
    /// Extra settings for both webhookd processes, KEY=VALUE (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Extra settings for `webhookd serve` only
    #[arg(long = "serve-env", value_name = "KEY=VALUE")]
    pub serve_env: Vec<String>,
    /// Extra settings for `webhookd work` only
    #[arg(long = "work-env", value_name = "KEY=VALUE")]
    pub work_env: Vec<String>,
    /// Keep the bench database afterwards
    #[arg(long)]
    pub keep_db: bool,
    /// The webhookd binary to run (default: the one built next to this bench); it runs in its
    /// own directory, so an older build reads its compiled-in settings, not this checkout's
    #[arg(long)]
    pub webhookd: Option<PathBuf>,
    /// Label stored with the results (e.g. the change being measured)
    #[arg(long, default_value = "")]
    pub label: String,
}

/// Everything a phase needs.
pub struct Ctx {
    pub args: Args,
    pub bin: PathBuf,
    pub out_dir: PathBuf,
    pub db_url: String,
    pub side: tokio_postgres::Client,
    pub pool: DbPool,
    pub receiver: Receiver,
    pub url_base: String,
    pub api: Api,
    pub serve: Proc,
    pub serve_env: Vec<(String, String)>,
    pub work_env: Vec<(String, String)>,
    pub settings: Vec<(String, String)>,
}

fn with_database(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn debit_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=0.5).contains(&f) => Ok(f),
        _ => Err(format!("{text:?} is not a fraction from 0 to 0.5")),
    }
}

fn parse_env(pairs: &[String]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .unwrap_or_else(|| panic!("--env wants KEY=VALUE, got {p:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
}

pub async fn query_f64(side: &tokio_postgres::Client, sql: &str) -> f64 {
    let row = side
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.try_get::<_, f64>(0)
        .or_else(|_| row.try_get::<_, i64>(0).map(|v| v as f64))
        .or_else(|_| row.try_get::<_, i32>(0).map(|v| v as f64))
        .unwrap_or(f64::NAN)
}

pub async fn show(side: &tokio_postgres::Client, name: &str) -> String {
    side.query_one(&format!("SHOW {name}"), &[])
        .await
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_default()
}

/// Empties the queue and the counters it feeds: the tables of them that the build under test
/// has (an older one keeps its row counters in `webhook_queue_counts`).
pub async fn truncate(side: &tokio_postgres::Client) {
    side.batch_execute(
        "DO $$ DECLARE
             tables TEXT[] := ARRAY['webhook_queue', 'webhook_attempt_history', 'webhook_queue_counts',
                                    'webhook_queue_tallies', 'webhook_throughput', 'webhook_attempt_counts'];
         BEGIN
             -- In this order, the queue first, as the statements of a running `work` lock them.
             EXECUTE 'TRUNCATE ' || (
                 SELECT string_agg(quote_ident(relname), ', ' ORDER BY array_position(tables, relname::text))
                 FROM pg_class
                 WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace AND relname = ANY (tables));
         END $$",
    )
    .await
    .expect("truncate");
}

/// Median latency of a durable one-row INSERT commit, 60 back to back: the floor under every
/// synchronous write.
pub async fn commit_latency_ms(side: &tokio_postgres::Client) -> f64 {
    report::median(&probe_commits(side, 60, None).await)
}

/// The tail of durable one-row INSERT commits paced at 100/s for three seconds: (p99, max) in
/// ms. No submit reaches a worker before its commit is flushed, so when the disk's flushes
/// stall now and then, the submit -> first call p99 cannot be lower than this.
pub async fn commit_tail_ms(side: &tokio_postgres::Client) -> (f64, f64) {
    let mut samples = probe_commits(side, 300, Some(Duration::from_millis(10))).await;
    samples.sort_by(|a, b| a.total_cmp(b));
    (load::percentile(&samples, 99.0), samples[samples.len() - 1])
}

/// Times `count` durable one-row INSERT commits (ms each), one every `pace` if given.
async fn probe_commits(
    side: &tokio_postgres::Client,
    count: i32,
    pace: Option<Duration>,
) -> Vec<f64> {
    side.batch_execute("CREATE TABLE IF NOT EXISTS bench_commit_probe (n int)")
        .await
        .expect("probe table");
    let mut ticks = pace.map(|every| {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticks
    });
    let mut samples = Vec::new();
    for n in 0..count {
        if let Some(ticks) = &mut ticks {
            ticks.tick().await;
        }
        let t = Instant::now();
        side.execute("INSERT INTO bench_commit_probe VALUES ($1)", &[&n])
            .await
            .expect("probe insert");
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    side.batch_execute("TRUNCATE bench_commit_probe").await.ok();
    samples
}

/// `--webhookd`, or the webhookd binary built next to this bench.
pub fn default_bin_for(args: &Args) -> PathBuf {
    args.webhookd.clone().unwrap_or_else(default_bin)
}

/// The webhookd binary built next to this bench.
fn default_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .and_then(Path::parent)
                .map(|d| d.join("webhookd"))
        })
        .filter(|p| p.exists())
        .unwrap_or_else(|| root.join("target/release/webhookd"))
}

async fn setup(args: Args) -> Ctx {
    let bin = default_bin_for(&args);
    println!("webhookd bench ({:?})", args.mode);
    let ctx = open(args, bin, Receiver::start(), "webhookd_bench").await;
    let settings = &ctx.settings;
    println!("  binary      {}", ctx.bin.display());
    println!("  database    {} (fresh)", ctx.db_url);
    println!(
        "  receiver    {} (in-process, own thread and runtime)",
        ctx.url_base
    );
    println!(
        "  machine     {} cpus, load {}, PostgreSQL {}",
        settings[0].1, settings[1].1, settings[2].1
    );
    println!(
        "  postgres    synchronous_commit={} fsync={} wal_sync_method={} autovacuum={} shared_buffers={}",
        settings[3].1, settings[4].1, settings[5].1, settings[6].1, settings[7].1
    );
    println!(
        "  serve env   {} (other settings: defaults)",
        shown_env(&ctx.serve_env)
    );
    println!(
        "  work env    {} (other settings: defaults)",
        shown_env(&ctx.work_env)
    );
    println!(
        "  logs        {}/{{serve,work-rN}}.log",
        ctx.out_dir.display()
    );
    ctx
}

/// Settings as `KEY=VALUE ...`, without the database URL.
pub fn shown_env(env: &[(String, String)]) -> String {
    env.iter()
        .filter(|(k, _)| k != "DATABASE_URL")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fresh database named `db_prefix_<time>`, migrated by `bin`'s own `webhookd migrate`, and
/// `bin serve` on it with one partner config whose URLs point at `receiver`.
pub async fn open(args: Args, bin: PathBuf, receiver: Receiver, db_prefix: &str) -> Ctx {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).expect("target/bench");
    let db_name = format!(
        "{db_prefix}_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let db_url = with_database(args.database_url.as_deref().unwrap(), &db_name);
    let url_base = format!("http://{}/pb", receiver.addr);
    let port = procs::free_port();
    let api_base = format!("http://127.0.0.1:{port}");

    let mut common = vec![
        ("DATABASE_URL".to_string(), db_url.clone()),
        ("LOG_LEVEL".to_string(), "warn".to_string()),
        ("LOG_FORMAT".to_string(), "json".to_string()),
        (
            "OUTBOUND_ALLOW_NETWORKS".to_string(),
            "127.0.0.0/8".to_string(),
        ),
        ("DATABASE_MAX_CONNECTIONS".to_string(), "10".to_string()),
    ];
    for (k, v) in parse_env(&args.env) {
        set(&mut common, &k, &v);
    }
    let mut serve_env = common.clone();
    set(&mut serve_env, "SERVER_ADDR", &format!("127.0.0.1:{port}"));
    for (k, v) in parse_env(&args.serve_env) {
        set(&mut serve_env, &k, &v);
    }
    let mut work_env = common.clone();
    for (k, v) in parse_env(&args.work_env) {
        set(&mut work_env, &k, &v);
    }

    let migrate = std::process::Command::new(&bin)
        .arg("migrate")
        .current_dir(procs::run_dir(&bin))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db_url)
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap_or_else(|e| panic!("run {} migrate: {e}", bin.display()));
    assert!(
        migrate.status.success(),
        "webhookd migrate failed: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let (side, connection) = tokio_postgres::connect(&db_url, NoTls)
        .await
        .expect("side connection");
    tokio::spawn(connection);
    let pool = store::pool(&db_url, args.sql_connections.max(2)).expect("pool");

    let serve = Proc::start(&bin, "serve", "serve", &serve_env, &out_dir);
    let client = load::client(args.clients.max(args.batch_clients) + 8);
    wait_healthy(&client, &api_base).await;
    let response = client
        .post(format!("{api_base}/webhook-configs"))
        .header("Content-Type", "application/json")
        .body(
            serde_json::json!({
                "name": "bench",
                "postback_url": format!("{url_base}?src=bench&uid={{user_id}}"),
                "chargeback_url": format!("{url_base}?src=bench&uid={{user_id}}&cb=1"),
                "max_retries": 6
            })
            .to_string(),
        )
        .send()
        .await
        .expect("create config");
    assert_eq!(response.status().as_u16(), 201, "config creation");
    let config: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let config_id = config["id"].as_i64().expect("config id");

    let mut settings = vec![
        (
            "cpus".to_string(),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
                .to_string(),
        ),
        (
            "load_average_at_start".to_string(),
            format!("{:.2}", procs::load_average().unwrap_or(f64::NAN)),
        ),
        ("postgres".to_string(), show(&side, "server_version").await),
    ];
    for name in [
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "autovacuum",
        "shared_buffers",
        "max_connections",
    ] {
        settings.push((name.to_string(), show(&side, name).await));
    }

    Ctx {
        api: Api {
            base: api_base,
            client,
            config_id,
            debits: args.debits,
        },
        args,
        bin,
        out_dir,
        db_url,
        side,
        pool,
        receiver,
        url_base,
        serve,
        serve_env,
        work_env,
        settings,
    }
}

async fn wait_healthy(client: &reqwest::Client, api_base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = client
            .get(format!("{api_base}/health"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "webhookd serve did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Ctx {
    /// Stops `serve` (its database connections close, which flushes their statistics) and
    /// starts a fresh one on the same address.
    pub async fn restart_serve(&mut self) {
        self.stop_serve().await;
        self.start_serve().await;
    }

    pub async fn stop_serve(&mut self) {
        self.serve.terminate(Duration::from_secs(30)).await;
    }

    /// Starts `serve` (after [`Ctx::stop_serve`]) and waits until it answers.
    pub async fn start_serve(&mut self) {
        self.serve = Proc::start(&self.bin, "serve", "serve", &self.serve_env, &self.out_dir);
        wait_healthy(&self.api.client, &self.api.base).await;
    }
}

/// Stops `serve` and drops the bench database (unless `--keep-db`).
pub async fn teardown(ctx: Ctx) {
    let Ctx {
        args,
        serve,
        db_url,
        side,
        pool,
        ..
    } = ctx;
    serve.stop(Duration::from_secs(30)).await;
    drop(side);
    drop(pool);
    if args.keep_db {
        println!("kept database {db_url}");
        return;
    }
    let name = url::Url::parse(&db_url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_string();
    if let Ok((admin, connection)) = tokio_postgres::connect(
        &with_database(args.database_url.as_deref().unwrap(), "postgres"),
        NoTls,
    )
    .await
    {
        tokio::spawn(connection);
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

fn main() {
    let mut args = Args::parse();
    args.database_url = args
        .database_url
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .or_else(|| Some("postgres://postgres@127.0.0.1:5432/webhookd".into()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let started = Instant::now();
        let mode = args.mode;
        if mode == Mode::History {
            history::run(args).await;
            println!("bench finished in {:.0} s", started.elapsed().as_secs_f64());
            return;
        }
        if mode == Mode::Ab {
            ab::run(args).await;
            println!("bench finished in {:.0} s", started.elapsed().as_secs_f64());
            return;
        }
        assert!(
            args.builds.is_empty(),
            "builds {:?} are for `bench ab`; --webhookd runs another binary",
            args.builds
        );
        let ctx = setup(args).await;
        let ctx = match mode {
            Mode::Full => full::full(ctx).await,
            Mode::Soak => soak::run(ctx).await,
            Mode::Latency => full::latency_sweep(ctx).await,
            Mode::Ab | Mode::History => unreachable!("handled above"),
        };
        teardown(ctx).await;
        println!("bench finished in {:.0} s", started.elapsed().as_secs_f64());
    });
}
