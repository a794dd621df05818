//! The chaos loop: while the producers run, one fault every few seconds, in turn: kill -9 a
//! worker process and restart it, SIGSTOP one past its lease then SIGCONT, SIGTERM one and
//! restart it, kill -9 the API and restart it; and a fast restart of PostgreSQL once (twice
//! in runs of two minutes or more). Between faults it watches for processes that exit
//! without being told to, reports them and restarts them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pg::Cluster;
use crate::procs::{Crash, Slot};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    KillWork,
    StopWork,
    TermWork,
    KillServe,
    RestartPostgres,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::KillWork => "kill -9 work",
            Kind::StopWork => "SIGSTOP work past its lease",
            Kind::TermWork => "SIGTERM work",
            Kind::KillServe => "kill -9 serve",
            Kind::RestartPostgres => "restart PostgreSQL",
        }
    }

    /// Whether the fault can make a worker call an event again: it kills or freezes a worker
    /// mid-call, or makes its outcome write fail.
    pub fn can_duplicate(self) -> bool {
        self != Kind::KillServe
    }
}

const ROTATION: [Kind; 4] = [
    Kind::KillWork,
    Kind::StopWork,
    Kind::TermWork,
    Kind::KillServe,
];

#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: Kind,
    pub target: String,
    pub from: Instant,
    pub until: Instant,
    /// What went wrong with the fault itself (a SIGTERM that did not end the process
    /// cleanly, an API that did not come back), if anything.
    pub trouble: Option<String>,
}

/// The processes, and what the chaos loop needs to restart them.
pub struct Fleet {
    pub bin: PathBuf,
    pub log_dir: PathBuf,
    pub serve: Slot,
    pub work: Vec<Slot>,
    pub api_base: String,
    pub client: reqwest::Client,
    pub lease: Duration,
    pub shutdown_timeout: Duration,
}

impl Fleet {
    pub fn start_all(&mut self) {
        self.serve.start(&self.bin, &self.log_dir);
        for slot in &mut self.work {
            slot.start(&self.bin, &self.log_dir);
        }
    }

    /// Waits (bounded) until `GET /health` answers 200.
    pub async fn wait_healthy(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let ok = self
                .client
                .get(format!("{}/health", self.api_base))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Crashed processes since the last look, each restarted.
    pub fn reap(&mut self) -> Vec<Crash> {
        let mut crashes = Vec::new();
        let (bin, logs) = (self.bin.clone(), self.log_dir.clone());
        for slot in std::iter::once(&mut self.serve).chain(self.work.iter_mut()) {
            if let Some(crash) = slot.crashed() {
                crashes.push(crash);
                slot.start(&bin, &logs);
            }
        }
        crashes
    }

    /// Every slot running again, none stopped.
    pub fn restore(&mut self) {
        let (bin, logs) = (self.bin.clone(), self.log_dir.clone());
        for slot in std::iter::once(&mut self.serve).chain(self.work.iter_mut()) {
            slot.signal("CONT");
            if !slot.is_running() {
                slot.start(&bin, &logs);
            }
        }
    }

    pub async fn shut_down(&mut self) {
        let grace = self.shutdown_timeout + Duration::from_secs(10);
        for slot in self.work.iter_mut() {
            slot.shut_down(grace).await;
        }
        self.serve.shut_down(grace).await;
    }
}

pub struct Chaos {
    pub faults: Vec<Fault>,
    pub crashes: Vec<Crash>,
}

impl Chaos {
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        let mut counts = BTreeMap::new();
        for f in &self.faults {
            *counts.entry(f.kind).or_insert(0) += 1;
        }
        counts
    }
}

/// Sleeps until `until`, reaping crashed processes every 250 ms.
async fn watch(fleet: &mut Fleet, crashes: &mut Vec<Crash>, until: Instant) {
    while Instant::now() < until {
        crashes.extend(fleet.reap());
        let step = until
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(250));
        tokio::time::sleep(step).await;
    }
}

/// Runs faults from `start` after now until `length` has passed, one every `every`.
pub async fn run(
    fleet: &mut Fleet,
    cluster: Arc<Cluster>,
    length: Duration,
    every: Duration,
) -> Chaos {
    let began = Instant::now();
    let end = began + length;
    let mut pg_times: Vec<Instant> = if length >= Duration::from_secs(120) {
        vec![began + length.mul_f64(0.35), began + length.mul_f64(0.7)]
    } else {
        vec![began + length.mul_f64(0.5)]
    };
    let mut faults = Vec::new();
    let mut crashes = Vec::new();
    let mut next = began + Duration::from_secs(5).min(every);
    let mut turn = 0usize;
    let mut victim = 0usize;
    loop {
        watch(fleet, &mut crashes, next).await;
        if Instant::now() >= end {
            break;
        }
        let kind = if pg_times.first().is_some_and(|t| *t <= Instant::now()) {
            pg_times.remove(0);
            Kind::RestartPostgres
        } else {
            let kind = ROTATION[turn % ROTATION.len()];
            turn += 1;
            kind
        };
        let fault = inject(fleet, &cluster, kind, &mut victim).await;
        println!(
            "  {:>5.1} s  {} ({}) {:.1} s{}",
            fault.from.duration_since(began).as_secs_f64(),
            kind.name(),
            fault.target,
            fault.until.duration_since(fault.from).as_secs_f64(),
            fault
                .trouble
                .as_deref()
                .map(|t| format!("  TROUBLE: {t}"))
                .unwrap_or_default()
        );
        faults.push(fault);
        next = Instant::now() + every;
    }
    crashes.extend(fleet.reap());
    Chaos { faults, crashes }
}

async fn inject(
    fleet: &mut Fleet,
    cluster: &Arc<Cluster>,
    kind: Kind,
    victim: &mut usize,
) -> Fault {
    let from = Instant::now();
    let mut trouble = None;
    let (bin, logs) = (fleet.bin.clone(), fleet.log_dir.clone());
    let target = match kind {
        Kind::KillWork | Kind::StopWork | Kind::TermWork => {
            let index = *victim % fleet.work.len();
            let slot = &mut fleet.work[index];
            *victim += 1;
            match kind {
                Kind::KillWork => {
                    slot.signal("KILL");
                    slot.wait_exit(Duration::from_secs(5)).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    slot.start(&bin, &logs);
                }
                Kind::StopWork => {
                    slot.signal("STOP");
                    tokio::time::sleep(fleet.lease + Duration::from_secs(2)).await;
                    slot.signal("CONT");
                }
                _ => {
                    slot.signal("TERM");
                    let (own, status) = slot
                        .wait_exit(fleet.shutdown_timeout + Duration::from_secs(10))
                        .await;
                    if !own || status != "exit status: 0" {
                        trouble = Some(format!(
                            "SIGTERM did not end it cleanly ({status}); last log lines:\n{}",
                            slot.log_tail(10)
                        ));
                    }
                    slot.start(&bin, &logs);
                }
            }
            slot.name.clone()
        }
        Kind::KillServe => {
            fleet.serve.signal("KILL");
            fleet.serve.wait_exit(Duration::from_secs(5)).await;
            fleet.serve.start(&bin, &logs);
            if !fleet.wait_healthy(Duration::from_secs(60)).await {
                trouble = Some(format!(
                    "serve not healthy 60 s after its restart; last log lines:\n{}",
                    fleet.serve.log_tail(10)
                ));
            }
            fleet.serve.name.clone()
        }
        Kind::RestartPostgres => {
            let cluster = cluster.clone();
            match tokio::task::spawn_blocking(move || cluster.restart()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => trouble = Some(e),
                Err(e) => trouble = Some(e.to_string()),
            }
            "postgres".to_string()
        }
    };
    Fault {
        kind,
        target,
        from,
        until: Instant::now(),
        trouble,
    }
}
