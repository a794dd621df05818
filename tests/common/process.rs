//! A `webhookd` child process, driven the way an operator would: environment in, JSON logs
//! on stderr captured to a file, signals sent with `kill`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_webhookd");

/// Runs `command` to its end, which must succeed (`what` names it); its output.
pub fn run_ok(command: &mut Command, what: &str) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what} runs: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed: {stderr}");
    output
}

/// A loopback port nothing listens on: the system's choice, released at once.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `webhookd` child process whose stderr (JSON logs) and stdout go to files.
pub struct Proc {
    child: Child,
    log: PathBuf,
    out: PathBuf,
}

impl Proc {
    /// Starts `webhookd <command>` with short test timings; `extra` settings win.
    pub fn start(command: &str, db_url: &str, worker_id: &str, extra: &[(&str, &str)]) -> Proc {
        let log = std::env::temp_dir().join(format!(
            "webhookd-{worker_id}-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let out = log.with_extension("stdout");
        let mut cmd = Command::new(BIN);
        cmd.arg(command)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", db_url)
            .env("WORKER_ID", worker_id)
            .env("WORKER_COUNT", "4")
            .env("WORKER_BATCH_SIZE", "20")
            .env("WORKER_POLL_INTERVAL", "500ms")
            .env("HTTP_TIMEOUT", "2s")
            .env("WORKER_LOCK_DURATION", "3s")
            .env("RETRY_BASE_DELAY", "100ms")
            .env("RETRY_MAX_DELAY", "1s")
            .env("SHUTDOWN_TIMEOUT", "3s")
            .env("OUTBOUND_ALLOW_NETWORKS", "127.0.0.0/8")
            .env("DATABASE_MAX_CONNECTIONS", "6")
            .env("LOG_LEVEL", "info")
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("the webhookd binary starts"),
            log,
            out,
        }
    }

    /// Starts `webhookd run` serving the API on a free loopback port; the process and the
    /// API's base URL (`http://127.0.0.1:{port}`).
    pub fn serve(db_url: &str, worker_id: &str) -> (Proc, String) {
        let addr = format!("127.0.0.1:{}", free_port());
        let proc = Proc::start("run", db_url, worker_id, &[("SERVER_ADDR", &addr)]);
        (proc, format!("http://{addr}"))
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the process wrote on stdout.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.out);
    }
}

/// What a one-shot command (`migrate`, `stats`) printed and how it ended.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `webhookd args...` to completion with only `env` (and PATH) in its environment.
pub fn run_once(args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the webhookd binary starts");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
