//! `webhookd serve` and `webhookd work` as child processes, with their peak RSS and CPU time,
//! and the CPU time of the PostgreSQL server's processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin command` with exactly `env` (plus PATH); stderr goes to `log_dir/name.log`.
    ///
    /// The process runs in the binary's own directory (see [`run_dir`]).
    pub fn start(
        bin: &Path,
        command: &str,
        name: &str,
        env: &[(String, String)],
        log_dir: &Path,
    ) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let mut cmd = Command::new(bin);
        cmd.arg(command)
            .current_dir(run_dir(bin))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the process log"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} {command}: {e}", bin.display()));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmHWM` (peak resident set) in KiB, read from /proc.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Panics with the tail of the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "{} exited ({status}); last log lines:\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// CPU time (user + system) the process has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_times(self.pid()).map_or(f64::NAN, |t| t.own)
    }

    /// SIGTERM, then wait up to `grace` for a clean exit (SIGKILL after that).
    pub async fn stop(mut self, grace: Duration) -> bool {
        self.terminate(grace).await
    }

    /// [`Proc::stop`] for a process held in a field that is replaced afterwards.
    pub async fn terminate(&mut self, grace: Duration) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status.success();
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A free loopback port (bound, then released: good enough on a quiet loopback).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The 1-minute load average, for the record.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Where webhookd processes run: the directory of their binary. webhookd reads
/// `./config/default.toml` over its compiled-in defaults, and an older build rejects keys it does
/// not know; in its own directory a build reads no file from the tree the bench runs in.
pub fn run_dir(bin: &Path) -> PathBuf {
    bin.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// CPU times of one process from `/proc/<pid>/stat`, in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub ppid: u32,
    /// utime + stime: the process itself.
    pub own: f64,
    /// cutime + cstime: its children that have exited and been waited for.
    pub children: f64,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux in practice).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The CPU times of `pid`, or `None` once it is gone.
pub fn cpu_times(pid: u32) -> Option<CpuTimes> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split at the last ')'.
    let close = text.rfind(')')?;
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // Fields 4 and 14-17 of proc(5), counted from `state` (field 3) as index 0.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let ticks = clock_ticks();
    Some(CpuTimes {
        ppid: fields.get(1)?.parse().ok()?,
        own: (tick(11)? + tick(12)?) / ticks,
        children: (tick(13)? + tick(14)?) / ticks,
    })
}

/// CPU seconds used so far by the PostgreSQL server whose backend `backend` is: the postmaster
/// and each of its children (backends, WAL writer, checkpointer, ...), plus the postmaster's
/// time of children that have exited (backends of closed connections, autovacuum workers), so
/// that the difference between two readings counts processes that came and went in between.
/// Every client of that server counts, not only the bench; NaN when the server's processes are
/// not visible here (a server in another container or on another host).
pub fn postgres_cpu_seconds(backend: u32) -> f64 {
    // A server in another PID namespace reports PIDs that here are other processes, or none.
    let comm = std::fs::read_to_string(format!("/proc/{backend}/comm")).unwrap_or_default();
    if comm.trim_end() != "postgres" {
        return f64::NAN;
    }
    let Some(postmaster) = cpu_times(backend).map(|t| t.ppid) else {
        return f64::NAN;
    };
    let Some(root) = cpu_times(postmaster) else {
        return f64::NAN;
    };
    let mut total = root.own + root.children;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(t) = cpu_times(pid).filter(|t| t.ppid == postmaster) {
                total += t.own;
            }
        }
    }
    total
}
