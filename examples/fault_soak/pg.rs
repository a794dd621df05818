//! The soak's own PostgreSQL cluster: initdb in a temporary directory, its own port, so that
//! restarting it (one of the faults) disturbs nobody else on the machine. Mirrors
//! `tests/common/pg.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// The directory of `initdb` and `pg_ctl`: on PATH, else the newest under /usr/lib/postgresql.
fn bin_dir() -> Result<PathBuf, String> {
    let on_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
                .parent()
                .map(Path::to_path_buf)
        });
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no initdb on PATH and no /usr/lib/postgresql: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| "no PostgreSQL version under /usr/lib/postgresql".to_string())
}

impl Cluster {
    /// initdb (trust auth, no fsync) in `dir`, then start it on a free loopback port.
    pub fn start(dir: PathBuf) -> Result<Cluster, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("a free port: {e}"))?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if is_root() {
            // initdb refuses to run as root: the cluster belongs to `postgres`.
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("chown postgres {}", dir.display()));
            }
        }
        let cluster = Cluster {
            dir,
            port,
            bin: bin_dir()?,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c max_connections=200"
        );
        let log = format!("{data}/server.log");
        cluster.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        )?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    /// The fault: a fast restart (active sessions are ended), waiting until it answers again.
    /// `pg_ctl restart` reuses the options the server was started with.
    pub fn restart(&self) -> Result<(), String> {
        let log = format!("{}/server.log", self.data());
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-m",
                "fast",
                "-l",
                &log,
                "-w",
                "restart",
            ],
        )
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/webhookd", self.port)
    }

    /// Runs a server tool, as the `postgres` user when we are root.
    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let path = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&path);
            cmd
        } else {
            Command::new(&path)
        };
        let output = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Stops the server at once; the caller decides whether the directory stays.
    pub fn stop(&self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }
}
