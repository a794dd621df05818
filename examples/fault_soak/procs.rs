//! The webhookd processes of the soak: one `serve` and several `work`, each in a slot that
//! the chaos loop signals and restarts. Every incarnation logs to its own file, so a
//! restart keeps what its predecessor wrote.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One webhookd process, restarted in place.
pub struct Slot {
    pub name: String,
    command: &'static str,
    env: Vec<(String, String)>,
    child: Option<Child>,
    incarnation: usize,
    /// Set while the harness itself stops the process, so its exit is not a crash.
    expected_exit: bool,
    pub logs: Vec<PathBuf>,
}

/// A process that exited without being told to.
pub struct Crash {
    pub name: String,
    pub status: String,
    pub log_tail: String,
}

impl Slot {
    pub fn new(name: &str, command: &'static str, env: Vec<(String, String)>) -> Slot {
        Slot {
            name: name.to_string(),
            command,
            env,
            child: None,
            incarnation: 0,
            expected_exit: false,
            logs: Vec::new(),
        }
    }

    pub fn start(&mut self, bin: &Path, log_dir: &Path) {
        self.incarnation += 1;
        let log = log_dir.join(format!("{}.{}.log", self.name, self.incarnation));
        let mut cmd = Command::new(bin);
        cmd.arg(self.command)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create a process log"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} {}: {e}", bin.display(), self.command));
        self.logs.push(log);
        self.child = Some(child);
        self.expected_exit = false;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (a `kill` name: KILL, TERM, STOP, CONT) to the process.
    pub fn signal(&mut self, signal: &str) {
        if matches!(signal, "KILL" | "TERM") {
            self.expected_exit = true;
        }
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status();
        }
    }

    /// Waits up to `limit` for the process to exit (after a signal); SIGKILL after that.
    /// Returns whether it exited on its own, and its status.
    pub async fn wait_exit(&mut self, limit: Duration) -> (bool, String) {
        let Some(child) = self.child.as_mut() else {
            return (true, "not running".into());
        };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return (true, status.to_string());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let status = child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        self.child = None;
        (false, status)
    }

    /// A process that exited although nobody told it to: reported, then the slot is empty.
    pub fn crashed(&mut self) -> Option<Crash> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().ok().flatten()?;
        self.child = None;
        if self.expected_exit {
            return None;
        }
        Some(Crash {
            name: self.name.clone(),
            status: status.to_string(),
            log_tail: self.log_tail(15),
        })
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let Some(log) = self.logs.last() else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGCONT first (it may be stopped), then SIGTERM and a bounded wait.
    pub async fn shut_down(&mut self, grace: Duration) {
        self.signal("CONT");
        self.signal("TERM");
        self.wait_exit(grace).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `webhookd ARGS` to completion with `env`; (exit success, stdout, stderr).
pub fn run_once(bin: &Path, args: &[&str], env: &[(String, String)]) -> (bool, String, String) {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (false, String::new(), format!("cannot run: {e}")),
    }
}
