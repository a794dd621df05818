//! A throwaway PostgreSQL cluster of a test's own, so that restarting it or changing its TLS
//! settings disturbs nobody; optionally with TLS only (certificates from [`super::tls`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::process::run_ok;
use super::tls::Certs;

pub struct PrivatePg {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().unwrap().stdout == b"0\n"
}

/// Gives a file or directory to the `postgres` user when we are root (the server runs as it).
fn give_to_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "chown postgres {}", path.display());
    }
}

impl PrivatePg {
    fn bin_dir() -> PathBuf {
        let on_path = Command::new("sh")
            .args(["-c", "command -v initdb"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
                    .parent()
                    .unwrap()
                    .to_path_buf()
            });
        on_path.unwrap_or_else(|| {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .expect("PostgreSQL server binaries are installed")
                .map(|e| e.unwrap().path().join("bin"))
                .collect();
            versions.sort();
            versions
                .pop()
                .expect("a PostgreSQL version under /usr/lib/postgresql")
        })
    }

    /// Runs a server binary, as the `postgres` user when we are root (initdb refuses root).
    fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let status = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .stdout(Stdio::null())
                .status()
        } else {
            Command::new(&path)
                .args(args)
                .stdout(Stdio::null())
                .status()
        }
        .unwrap();
        assert!(status.success(), "{tool} {args:?} failed");
    }

    fn init() -> PrivatePg {
        let port = super::process::free_port();
        let dir =
            std::env::temp_dir().join(format!("webhookd-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        give_to_postgres(&dir);
        let pg = PrivatePg {
            dir,
            port,
            bin: Self::bin_dir(),
        };
        let data = pg.dir.to_str().unwrap().to_string();
        pg.run(
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
        );
        pg
    }

    /// A plain cluster, trust auth, listening on 127.0.0.1 only.
    pub fn start() -> PrivatePg {
        let pg = Self::init();
        pg.up();
        pg
    }

    /// A cluster that takes TLS connections only: `ssl = on` with the server certificate of
    /// `certs`, and pg_hba rejecting every connection that is not TLS.
    pub fn start_tls_only(certs: &Certs) -> PrivatePg {
        let pg = Self::init();
        for (from, to) in [
            (&certs.server_cert, "server.crt"),
            (&certs.server_key, "server.key"),
        ] {
            let dest = pg.dir.join(to);
            std::fs::copy(from, &dest).unwrap();
            give_to_postgres(&dest);
        }
        let key = pg.dir.join("server.key");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(pg.dir.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )
        .unwrap();
        std::fs::write(
            pg.dir.join("pg_hba.conf"),
            "hostssl   all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        give_to_postgres(&pg.dir.join("pg_hba.conf"));
        pg.up();
        pg
    }

    pub fn up(&self) {
        let data = self.dir.to_str().unwrap();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off",
            self.port
        );
        let log = format!("{data}/server.log");
        self.run(
            "pg_ctl",
            &["-D", data, "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    pub fn down(&self) {
        self.run(
            "pg_ctl",
            &["-D", self.dir.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }

    /// The URL of database `webhookd` on this cluster, with `query` (e.g. `sslmode=require`).
    pub fn url_with(&self, query: &str) -> String {
        let base = format!("postgres://postgres@127.0.0.1:{}/webhookd", self.port);
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    pub fn url(&self) -> String {
        self.url_with("")
    }

    /// Runs `sql` with `psql` (an independent libpq client) and returns its unaligned output.
    pub fn psql(&self, conninfo: &str, sql: &str) -> String {
        let args = [
            conninfo,
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ];
        let output = run_ok(Command::new("psql").args(args), "psql");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let args = ["-D", self.dir.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_ctl)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        } else {
            Command::new(pg_ctl)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
