//! `just soak [SECONDS]`: webhookd under faults, checked from the partners' side and the
//! table's. See docs/development.md ("Fault soak").
//!
//! ```text
//! cargo build --bin webhookd --example fault_soak
//! target/debug/examples/fault_soak 60 [--rate 150] [--webhookd PATH] [--keep]
//! ```
//!
//! It starts a PostgreSQL cluster of its own (initdb in a temporary directory, its own port:
//! restarting it is one of the faults, and must disturb nobody), migrates it, and runs one
//! `webhookd serve` and three `webhookd work` with short delays; loopback partners that are
//! healthy, flaky, slow, refusing, poisoned (two events) and down-then-recovering; producers
//! submitting `+credit`/`-debit` pairs at a paced rate; and a chaos loop (kill -9, SIGSTOP
//! past the lease, SIGTERM, kill -9 of the API, PostgreSQL restarts). When producing stops it
//! waits (bounded) until nothing is pending or processing, then checks what was promised and
//! exits non-zero with one line per broken promise.

mod chaos;
mod partners;
mod pg;
mod procs;
mod producer;
mod verify;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio_postgres::NoTls;

use chaos::{Fleet, Kind};
use partners::{Behaviour, Partners, ALL};
use procs::Slot;

#[derive(Debug, Parser)]
#[command(
    about = "webhookd under faults: kills, stops, restarts, partner outages (see `just soak`)"
)]
struct Args {
    /// How long to produce events and inject faults, in seconds
    #[arg(default_value_t = 300)]
    seconds: u64,
    /// Events per second submitted (credits and debits together)
    #[arg(long, default_value_t = 150.0)]
    rate: f64,
    /// `webhookd work` processes
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Seconds between two faults
    #[arg(long, default_value_t = 6)]
    fault_every: u64,
    /// How long the recovering partner is down from the start, in seconds (default: a quarter
    /// of the run, at most 30)
    #[arg(long)]
    outage: Option<u64>,
    /// Longest wait for every row to settle once producing stopped, in seconds
    #[arg(long, default_value_t = 180)]
    settle_timeout: u64,
    /// Give up waiting earlier when no row has settled for this many seconds
    #[arg(long, default_value_t = 60)]
    settle_stall: u64,
    /// The webhookd binary (default: the one built next to this example)
    #[arg(long)]
    webhookd: Option<PathBuf>,
    /// Keep the cluster and the logs (they are kept anyway when a check fails)
    #[arg(long)]
    keep: bool,
}

/// The settings of every webhookd process: short delays so that retries, leases, probes and
/// pruning passes all happen many times in a minute.
const SETTINGS: &[(&str, &str)] = &[
    ("LOG_LEVEL", "warn"),
    ("LOG_FORMAT", "json"),
    ("OUTBOUND_ALLOW_NETWORKS", "127.0.0.0/8"),
    ("DATABASE_MAX_CONNECTIONS", "10"),
    ("WORKER_COUNT", "4"),
    ("WORKER_BATCH_SIZE", "20"),
    ("WORKER_POLL_INTERVAL", "1s"),
    ("WORKER_LOCK_DURATION", "4s"),
    ("HTTP_TIMEOUT", "2s"),
    ("HTTP_CONNECT_TIMEOUT", "1s"),
    ("RETRY_BASE_DELAY", "50ms"),
    ("RETRY_MAX_DELAY", "1s"),
    ("CIRCUIT_PROBE_INTERVAL", "200ms"),
    ("SHUTDOWN_TIMEOUT", "5s"),
    // Finished rows are kept (the checks read them); the pruner still runs its pass (and the
    // money-order sweep at its start) every few seconds.
    ("RETENTION_COMPLETED", "0s"),
    ("RETENTION_FAILED", "0s"),
    ("RETENTION_INTERVAL", "3s"),
];
const LEASE: Duration = Duration::from_secs(4);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

fn env_of(db_url: &str, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = SETTINGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("DATABASE_URL".into(), db_url.into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    env
}

fn default_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("webhookd"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/webhookd"))
}

async fn create_configs(fleet: &Fleet, partners: &Partners) -> Result<Vec<i64>, String> {
    let mut ids = Vec::new();
    for partner in ALL {
        let mut body = serde_json::json!({
            "name": format!("soak-{}", partner.name()),
            "postback_url": partners.url(partner, false),
            "chargeback_url": partners.url(partner, true),
            "max_retries": 6,
        });
        if partner == Behaviour::Refusing {
            // Its credits fail, and a failed credit holds its debit for good: no ordering.
            body["ordering"] = "none".into();
            body["max_retries"] = 2.into();
        }
        let response = fleet
            .client
            .post(format!("{}/webhook-configs", fleet.api_base))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("create config: {e}"))?;
        let status = response.status();
        let text = response.bytes().await.map_err(|e| e.to_string())?;
        let doc: serde_json::Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        if status.as_u16() != 201 {
            return Err(format!("create config answered {status}: {doc}"));
        }
        ids.push(doc["id"].as_i64().ok_or("config without id")?);
    }
    Ok(ids)
}

/// Rows neither settled nor cancelled.
async fn unsettled(db: &tokio_postgres::Client) -> Option<i64> {
    db.query_one(
        "SELECT count(*) FROM webhook_queue WHERE deleted_at IS NULL AND status IN ('pending', 'processing')",
        &[],
    )
    .await
    .ok()
    .map(|r| r.get(0))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connect to the soak's PostgreSQL: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Waits until no row is pending or processing: at most `limit`, and no longer than `stall`
/// without a change in the count. Returns the count left and how long it took.
async fn settle(
    url: &str,
    fleet: &mut Fleet,
    crashes: &mut Vec<procs::Crash>,
    limit: Duration,
    stall: Duration,
) -> (i64, Duration) {
    let started = Instant::now();
    let mut last = (i64::MAX, Instant::now());
    let mut db = connect(url).await.ok();
    loop {
        crashes.extend(fleet.reap());
        let left = match &db {
            Some(db) => unsettled(db).await,
            None => None,
        };
        match left {
            Some(0) => return (0, started.elapsed()),
            Some(n) if n != last.0 => last = (n, Instant::now()),
            Some(_) => {}
            None => db = connect(url).await.ok(),
        }
        if started.elapsed() >= limit || last.1.elapsed() >= stall {
            return (last.0, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Row ids whose outcome was discarded because the lease was lost, from the `work` logs.
fn lease_lost(fleet: &Fleet) -> HashSet<i64> {
    let mut ids = HashSet::new();
    for log in fleet.work.iter().flat_map(|s| s.logs.iter()) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("lease lost")) {
            if let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(id) = doc["row_id"].as_i64() {
                    ids.insert(id);
                }
            }
        }
    }
    ids
}

async fn run(args: Args, dir: &Path) -> Result<bool, String> {
    let started = Instant::now();
    let length = Duration::from_secs(args.seconds);
    let outage = Duration::from_secs(args.outage.unwrap_or((args.seconds / 4).min(30)));
    let bin = args.webhookd.clone().unwrap_or_else(default_binary);
    if !bin.exists() {
        return Err(format!("no webhookd binary at {}", bin.display()));
    }
    let log_dir = dir.join("logs");
    std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
    println!(
        "webhookd fault soak: {} s at {} events/s",
        args.seconds, args.rate
    );
    println!("  binary     {}", bin.display());
    println!(
        "  directory  {} (cluster in pg/, process logs in logs/)",
        dir.display()
    );

    let cluster = Arc::new(pg::Cluster::start(dir.join("pg"))?);
    let db_url = cluster.url();
    println!("  postgres   {db_url} (the soak's own cluster)");
    let cleanup = StopCluster(cluster.clone());
    let (ok, _, stderr) = procs::run_once(&bin, &["migrate"], &env_of(&db_url, &[]));
    if !ok {
        return Err(format!("webhookd migrate failed: {}", stderr.trim()));
    }

    // Two poisoned debits: one alone at the start (its partner's only traffic while it fails
    // every attempt), one in the middle of the run, with the partner's other events flowing
    // around it.
    let pairs = (args.rate / 2.0 * args.seconds as f64) as u64;
    let poison_n = (pairs / 2) / ALL.len() as u64 * ALL.len() as u64
        + ALL.iter().position(|b| *b == Behaviour::Poisoned).unwrap() as u64;
    let poison_event_ids = vec![
        producer::LONE_POISON.to_string(),
        producer::event_id(poison_n),
    ];
    let partners = Partners::start(poison_event_ids.clone());
    println!(
        "  partners   http://{}/p/{{{}}}; poisoned: the -debits of {}; recovering: down for {} s",
        partners.addr,
        ALL.map(Behaviour::name).join(","),
        poison_event_ids.join(" and "),
        outage.as_secs()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())?;
    let api_base = format!("http://127.0.0.1:{port}");
    webhookd::sender::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut fleet = Fleet {
        bin: bin.clone(),
        log_dir: log_dir.clone(),
        serve: Slot::new(
            "serve",
            "serve",
            env_of(&db_url, &[("SERVER_ADDR", format!("127.0.0.1:{port}"))]),
        ),
        work: (0..args.workers)
            .map(|i| {
                let name = format!("work-{i}");
                Slot::new(
                    &name,
                    "work",
                    env_of(&db_url, &[("WORKER_ID", name.clone())]),
                )
            })
            .collect(),
        api_base: api_base.clone(),
        client: client.clone(),
        lease: LEASE,
        shutdown_timeout: SHUTDOWN_TIMEOUT,
    };
    fleet.start_all();
    if !fleet.wait_healthy(Duration::from_secs(60)).await {
        return Err(format!(
            "serve did not become healthy; last log lines:\n{}",
            fleet.serve.log_tail(15)
        ));
    }
    let configs = create_configs(&fleet, &partners).await?;
    let has_check = procs::run_once(&bin, &["check", "--help"], &env_of(&db_url, &[])).0;

    println!(
        "producing for {} s, faults every {} s:",
        args.seconds, args.fault_every
    );
    partners.begin_outage(outage);
    let produce_started = Instant::now();
    let producer = tokio::spawn(producer::produce(
        producer::Api {
            base: api_base.clone(),
            client: client.clone(),
            configs: configs.clone(),
        },
        args.rate,
        length,
    ));
    let mut chaos = chaos::run(
        &mut fleet,
        cluster.clone(),
        length,
        Duration::from_secs(args.fault_every),
    )
    .await;
    let mut crashes = std::mem::take(&mut chaos.crashes);
    fleet.restore();
    let produced = producer.await.map_err(|e| e.to_string())?;
    let produce_time = produce_started.elapsed();
    println!(
        "produced {} events in {:.0} s; waiting for them to settle (at most {} s)",
        produced.accepted.len(),
        produce_time.as_secs_f64(),
        args.settle_timeout
    );
    let (left, settle_time) = settle(
        &db_url,
        &mut fleet,
        &mut crashes,
        Duration::from_secs(args.settle_timeout),
        Duration::from_secs(args.settle_stall),
    )
    .await;
    // Late calls (a stopped worker's, a lost lease's) land within a lease.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = partners.calls();

    let db = connect(&db_url).await?;
    let rows: Vec<verify::Row> = db
        .query(
            "SELECT id, queue_id::text, config_id, event_type, status, deleted_at IS NOT NULL, held_reason, retry_count FROM webhook_queue",
            &[],
        )
        .await
        .map_err(|e| format!("read the queue: {e}"))?
        .iter()
        .map(|r| verify::Row {
            id: r.get(0),
            queue_id: uuid::Uuid::parse_str(r.get(1)).expect("a queue_id is a UUID"),
            partner: configs
                .iter()
                .position(|c| *c == r.get::<_, i64>(2))
                .map(|i| ALL[i]),
            event_type: r.get(3),
            status: r.get(4),
            cancelled: r.get(5),
            held_reason: r.get(6),
            retry_count: r.get(7),
        })
        .collect();
    let groups: Vec<(String, String, bool, i64)> = db
        .query(
            "SELECT event_type, status, deleted_at IS NOT NULL, count(*) FROM webhook_queue GROUP BY 1, 2, 3",
            &[],
        )
        .await
        .map_err(|e| format!("group the queue: {e}"))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let partner_states: Vec<(Behaviour, String)> = db
        .query(
            "SELECT config_id, state FROM webhook_partner_state WHERE state <> 'active'",
            &[],
        )
        .await
        .map_err(|e| format!("read the partners' states: {e}"))?
        .iter()
        .filter_map(|r| {
            let id: i64 = r.get(0);
            let partner = configs.iter().position(|c| *c == id).map(|i| ALL[i])?;
            Some((partner, r.get::<_, String>(1)))
        })
        .collect();
    let lease_lost = lease_lost(&fleet);
    let outage_window = partners.outage();

    let mut verdict = verify::verify(&verify::Input {
        accepted: &produced.accepted,
        calls: &calls,
        rows: &rows,
        faults: &chaos.faults,
        lease_lost: &lease_lost,
        poison_event_ids: &poison_event_ids,
        partner_states: &partner_states,
        lease: LEASE,
    });
    if left != 0 {
        verdict.failures.insert(
            0,
            format!(
                "{left} rows still pending or processing {:.0} s after producing stopped",
                settle_time.as_secs_f64()
            ),
        );
    }
    let (ok, stdout, stderr) = procs::run_once(&bin, &["stats", "--json"], &env_of(&db_url, &[]));
    match serde_json::from_str::<serde_json::Value>(&stdout) {
        Ok(stats) if ok => verdict
            .failures
            .extend(verify::compare_stats(&stats, &groups)),
        _ => verdict
            .failures
            .push(format!("webhookd stats --json failed: {}", stderr.trim())),
    }
    let check_note = if has_check {
        let (ok, stdout, stderr) = procs::run_once(&bin, &["check"], &env_of(&db_url, &[]));
        if !ok {
            verdict.failures.push(format!(
                "webhookd check exited non-zero:\n{}{}",
                stdout.trim(),
                stderr.trim()
            ));
        }
        if ok { "exit 0" } else { "FAILED" }.to_string()
    } else {
        "skipped: this webhookd has no `check` subcommand".to_string()
    };
    for crash in &crashes {
        verdict.failures.push(format!(
            "{} exited on its own ({}); last log lines:\n{}",
            crash.name, crash.status, crash.log_tail
        ));
    }
    for fault in chaos.faults.iter().filter(|f| f.trouble.is_some()) {
        verdict.failures.push(format!(
            "{} of {}: {}",
            fault.kind.name(),
            fault.target,
            fault.trouble.as_deref().unwrap_or_default()
        ));
    }
    let down_calls = outage_window.map_or(0, |(from, until)| {
        calls
            .iter()
            .filter(|c| c.partner == Behaviour::Recovering && c.at >= from && c.at < until)
            .count()
    });

    fleet.shut_down().await;
    drop(cleanup);

    let counts = chaos.counts();
    println!();
    println!("summary");
    println!(
        "  accepted       {} events ({} pairs started, {} skipped at the in-flight cap, {} submits retried, {} given up{})",
        produced.accepted.len(),
        produced.pairs_started,
        produced.skipped,
        produced.retried_submits,
        produced.gave_up,
        produced
            .first_error
            .as_deref()
            .map(|e| format!(": first {e}"))
            .unwrap_or_default()
    );
    println!(
        "  rows           {} ({} missing, {} stored without an answer to their submit)",
        rows.len(),
        verdict.missing_rows,
        verdict.unacknowledged_rows
    );
    println!(
        "  faults         {}",
        [
            Kind::KillWork,
            Kind::StopWork,
            Kind::TermWork,
            Kind::KillServe,
            Kind::RestartPostgres
        ]
        .iter()
        .map(|k| format!("{}: {}", k.name(), counts.get(k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
    );
    println!(
        "  crashes        {} (processes that exited on their own)",
        crashes.len()
    );
    println!("  stranded       {} (must be 0)", verdict.stranded);
    println!("  inversions     {} (must be 0)", verdict.inversions);
    println!(
        "  duplicates     {} ({} with no fault or lost lease to explain them; {} lost leases logged)",
        verdict.duplicates,
        verdict.duplicates_unexplained,
        lease_lost.len()
    );
    println!(
        "  down partner   {down_calls} calls during its {} s outage",
        outage.as_secs()
    );
    for (event_id, status) in &verdict.poison_status {
        println!("  poison         {event_id}: {status}");
    }
    println!("  partners");
    for line in verify::per_partner(&produced.accepted, &rows, &calls) {
        println!("    {line}");
    }
    println!("  check          {check_note}");
    println!(
        "  duration       {:.0} s (producing {:.0} s, settling {:.0} s)",
        started.elapsed().as_secs_f64(),
        produce_time.as_secs_f64(),
        settle_time.as_secs_f64()
    );
    println!();
    if verdict.failures.is_empty() {
        println!("PASS");
        Ok(true)
    } else {
        for failure in &verdict.failures {
            println!("FAIL: {failure}");
        }
        Ok(false)
    }
}

/// Stops the cluster when dropped, whatever path `run` leaves by.
struct StopCluster(Arc<pg::Cluster>);

impl Drop for StopCluster {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn main() {
    let args = Args::parse();
    let keep = args.keep;
    let dir = std::env::temp_dir().join(format!("webhookd-soak-{}", uuid::Uuid::new_v4().simple()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = runtime.block_on(run(args, &dir));
    let passed = matches!(outcome, Ok(true));
    if let Err(e) = &outcome {
        eprintln!("fault soak could not run: {e}");
    }
    if passed && !keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("kept {} (cluster and process logs)", dir.display());
    }
    std::process::exit(if passed { 0 } else { 1 });
}
