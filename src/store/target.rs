//! Where and how to reach PostgreSQL: `DATABASE_URL` read once into a tokio-postgres config
//! and, when the URL asks for TLS, a rustls connector.
//!
//! The TLS parameters follow libpq (`sslmode`, `sslrootcert`), since operators copy their
//! URLs from `psql`:
//!
//! | `sslmode` | what we do |
//! | --- | --- |
//! | absent, `disable`, `allow`, `prefer` | a plain connection; TLS is not even tried (use `require` to encrypt) |
//! | `require` | TLS, certificate not checked (libpq: encrypt, don't verify); with `sslrootcert`, as `verify-ca` (as libpq does) |
//! | `verify-ca` | TLS, the chain must lead to a CA in `sslrootcert`; the host name is not checked |
//! | `verify-full` | TLS, chain checked against `sslrootcert` and the certificate must name the host (DNS name or IP address) |
//!
//! `verify-ca` and `verify-full` need `sslrootcert=<PEM file>`: we do not guess a default CA
//! file. Client certificates (`sslcert`, `sslkey`) are not supported.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::setup_error::DbSetupError;

/// How much a connection checks the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS (`disable`, `allow`, `prefer` and the default).
    Plain,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, DbSetupError> {
        match value {
            "disable" | "allow" | "prefer" => Ok(SslMode::Plain),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(DbSetupError::Url(format!(
                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ))),
        }
    }
}

/// The TLS connector `mode` asks for, `None` for a plain connection; verifying modes need the
/// CA file `root_cert`.
fn connector(
    mode: SslMode,
    root_cert: Option<String>,
) -> Result<Option<MakeRustlsConnect>, DbSetupError> {
    let verification = match mode {
        SslMode::Plain => return Ok(None),
        SslMode::Require => Verification::None,
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let name = if mode == SslMode::VerifyCa {
                "verify-ca"
            } else {
                "verify-full"
            };
            let path = root_cert.ok_or_else(|| {
                DbSetupError::Url(format!("sslmode={name} needs sslrootcert=<CA file>"))
            })?;
            let roots = read_roots(&path)?;
            if mode == SslMode::VerifyCa {
                Verification::Chain(roots)
            } else {
                Verification::Full(roots)
            }
        }
    };
    tls_config(verification).map(Some)
}

/// A parsed `DATABASE_URL`: everything needed to open a connection, checked once.
#[derive(Clone)]
pub struct ConnectTarget {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: Option<MakeRustlsConnect>,
    mode: SslMode,
}

impl ConnectTarget {
    /// Reads the URL; the TLS parameters are taken out and the rest goes to tokio-postgres.
    /// A CA file is read here, so a wrong path fails at start, not at the first connection.
    pub fn parse(database_url: &str) -> Result<Self, DbSetupError> {
        let mut url =
            url::Url::parse(database_url).map_err(|e| DbSetupError::Url(e.to_string()))?;
        let mut mode = SslMode::Plain;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "sslmode" => mode = SslMode::parse(&value)?,
                "sslrootcert" => root_cert = Some(value.into_owned()),
                _ => rest.push((key.into_owned(), value.into_owned())),
            }
        }
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
            // That wrote a space as `+` (form encoding), which tokio-postgres reads as a plus
            // sign: `options=-c%20x=y` would reach the server as `-c+x=y`. A `+` of the value
            // itself was written as `%2B`, so every `+` left is a space.
            let query = url.query().map(|q| q.replace('+', "%20"));
            url.set_query(query.as_deref());
        }
        let mut config: tokio_postgres::Config = url
            .as_str()
            .parse()
            .map_err(|e: tokio_postgres::Error| DbSetupError::Url(e.to_string()))?;
        // Our connector decides about TLS; tokio-postgres only has to insist on it.
        let mode = match (mode, &root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        let tls = connector(mode, root_cert)?;
        config.ssl_mode(if tls.is_some() {
            tokio_postgres::config::SslMode::Require
        } else {
            tokio_postgres::config::SslMode::Disable
        });
        Ok(ConnectTarget { config, tls, mode })
    }

    /// The same, with `options` (`-c name=value ...`) added to the URL's own session options.
    pub fn with_options(mut self, options: &str) -> Self {
        let combined = match self.config.get_options() {
            Some(own) if !own.trim().is_empty() => format!("{own} {options}"),
            _ => options.to_string(),
        };
        self.config.options(combined);
        self
    }

    /// The same server and settings, another database (for `CREATE DATABASE`).
    pub fn with_database(&self, name: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(name);
        other
    }

    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }
}

/// Says where, never with what password.
impl std::fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectTarget")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("database", &self.config.get_dbname())
            .field("ssl_mode", &self.mode)
            .finish_non_exhaustive()
    }
}

enum Verification {
    None,
    Chain(RootCertStore),
    Full(RootCertStore),
}

fn read_roots(path: &str) -> Result<RootCertStore, DbSetupError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        DbSetupError::Tls(format!("cannot read sslrootcert {path}: {e}"))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        roots
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"no PEM certificate in it"));
    }
    Ok(roots)
}

fn tls_config(verification: Verification) -> Result<MakeRustlsConnect, DbSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| DbSetupError::Tls(e.to_string()))?;
    let webpki = |roots: RootCertStore| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| DbSetupError::Tls(e.to_string()))
    };
    let config = match verification {
        Verification::Full(roots) => builder
            .with_webpki_verifier(webpki(roots)?)
            .with_no_client_auth(),
        Verification::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed {
                provider: provider.clone(),
                chain: Some(webpki(roots)?),
            }))
            .with_no_client_auth(),
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed {
                provider: provider.clone(),
                chain: None,
            }))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The verifier of the two modes that check less than the full WebPKI check. The handshake
/// signature is always checked against the server's certificate, so the session is encrypted
/// to whoever holds that certificate's key.
///
/// * `sslmode=require` (`chain: None`): any certificate is accepted.
/// * `sslmode=verify-ca` (`chain: Some`): the full WebPKI check, less the host name. rustls
///   checks the chain before the name, so a name mismatch means the chain was already found
///   good.
#[derive(Debug)]
struct Relaxed {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_modes_use_no_tls_and_keep_the_other_parameters() {
        for url in [
            "postgres://u:pw@h:5433/db",
            "postgres://u:pw@h:5433/db?sslmode=disable",
            "postgres://u:pw@h:5433/db?sslmode=allow",
            "postgres://u:pw@h:5433/db?sslmode=prefer&application_name=x",
        ] {
            let target = ConnectTarget::parse(url).unwrap();
            assert_eq!(target.ssl_mode(), SslMode::Plain, "{url}");
            assert!(target.tls.is_none());
            assert_eq!(target.database(), Some("db"));
            assert_eq!(target.config.get_ports(), [5433]);
        }
        let target =
            ConnectTarget::parse("postgres://h/db?sslmode=prefer&application_name=x").unwrap();
        assert_eq!(target.config.get_application_name(), Some("x"));
    }

    #[test]
    fn require_encrypts_and_with_a_ca_file_checks_the_chain_like_libpq() {
        let target = ConnectTarget::parse("postgres://h/db?sslmode=require").unwrap();
        assert_eq!(target.ssl_mode(), SslMode::Require);
        assert!(target.tls.is_some());
        assert_eq!(
            target.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        // Given a CA file, `require` reads it: it is used to check the chain.
        let err =
            ConnectTarget::parse("postgres://h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem")
                .unwrap_err()
                .to_string();
        assert!(err.contains("cannot read sslrootcert"), "{err}");
    }

    #[test]
    fn verification_needs_a_readable_ca_file() {
        let err = ConnectTarget::parse("postgres://h/db?sslmode=verify-full")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs sslrootcert"), "{err}");
        let err = ConnectTarget::parse(
            "postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cannot read sslrootcert /nonexistent/ca.pem"),
            "{err}"
        );
        let empty =
            std::env::temp_dir().join(format!("webhookd-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = ConnectTarget::parse(&format!(
            "postgres://h/db?sslmode=require&sslrootcert={}",
            empty.display()
        ))
        .unwrap_err()
        .to_string();
        std::fs::remove_file(&empty).unwrap();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn unknown_modes_are_refused_without_echoing_the_url() {
        let err = ConnectTarget::parse("postgres://u:hunter2@h/db?sslmode=always")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sslmode=always is not one of"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let target = ConnectTarget::parse("postgres://u:hunter2@h/db?sslmode=require").unwrap();
        let printed = format!("{target:?}");
        assert!(
            !printed.contains("hunter2") && printed.contains("Require"),
            "{printed}"
        );
    }

    #[test]
    fn another_database_on_the_same_server() {
        let target = ConnectTarget::parse("postgres://h/app?sslmode=require").unwrap();
        let admin = target.with_database("postgres");
        assert_eq!(admin.database(), Some("postgres"));
        assert_eq!(admin.ssl_mode(), SslMode::Require);
    }

    #[test]
    fn added_session_options_keep_the_urls_own() {
        let plain = ConnectTarget::parse("postgres://h/db")
            .unwrap()
            .with_options("-c enable_seqscan=off");
        assert_eq!(plain.config.get_options(), Some("-c enable_seqscan=off"));
        let own = ConnectTarget::parse(
            "postgres://h/db?sslmode=disable&options=-c%20statement_timeout%3D5s%20-c%20x.y%3Da%2Bb",
        )
            .unwrap()
            .with_options("-c enable_seqscan=off");
        assert_eq!(
            own.config.get_options(),
            Some("-c statement_timeout=5s -c x.y=a+b -c enable_seqscan=off")
        );
    }
}
