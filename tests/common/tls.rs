//! Throwaway certificates made with the `openssl` command line: a CA, a server certificate
//! it signed for `localhost` and 127.0.0.1, and a second CA that signed nothing of ours.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::run_ok;

pub struct Certs {
    dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A CA that did not sign the server certificate.
    pub other_ca_cert: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let what = format!("openssl {args:?}");
    run_ok(Command::new("openssl").current_dir(dir).args(args), &what);
}

/// `openssl req -new` with a fresh P-256 key, unencrypted, written to `key`; `args` say what
/// else (`-x509` for a self-signed certificate, else a signing request).
fn req_with_new_key(dir: &Path, key: &str, args: &[&str]) {
    let mut all = vec![
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
    ];
    all.extend_from_slice(args);
    openssl(dir, &all);
}

fn new_ca(dir: &Path, name: &str) {
    req_with_new_key(
        dir,
        &format!("{name}.key"),
        &[
            "-x509",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=webhookd test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

impl Certs {
    pub fn generate() -> Certs {
        let dir =
            std::env::temp_dir().join(format!("webhookd-certs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        new_ca(&dir, "ca");
        new_ca(&dir, "other-ca");
        req_with_new_key(
            &dir,
            "server.key",
            &["-out", "server.csr", "-subj", "/CN=localhost"],
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName = DNS:localhost, IP:127.0.0.1\nbasicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        Certs {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            other_ca_cert: dir.join("other-ca.crt"),
            dir,
        }
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
