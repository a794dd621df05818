//! An HTTPS partner on loopback that may demand a client certificate (mTLS), with certificates
//! that each test makes with rcgen. It records every request with the identity the client
//! proved, and counts the handshakes it refused.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::http1;

/// The common name of both client certificates: the untrusted one differs only by its CA.
pub const CLIENT_CN: &str = "webhookd-test-client";

/// A CA, a server certificate it signed for `localhost` and 127.0.0.1, a client certificate it
/// signed, and a client certificate signed by another CA that the server does not trust.
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub other_client_cert_pem: String,
    pub other_client_key_pem: String,
}

impl TestPki {
    pub fn new() -> Self {
        let ca = new_ca("webhookd test CA");
        let other_ca = new_ca("webhookd test other CA");
        let (server_cert_pem, server_key_pem) = new_leaf(
            &ca,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert_pem, client_key_pem) =
            new_leaf(&ca, CLIENT_CN, &[], ExtendedKeyUsagePurpose::ClientAuth);
        let (other_client_cert_pem, other_client_key_pem) = new_leaf(
            &other_ca,
            CLIENT_CN,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        TestPki {
            ca_pem: ca.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
            other_client_cert_pem,
            other_client_key_pem,
        }
    }

    /// Certificate and key in one PEM, as `reqwest::Identity::from_pem` takes them.
    pub fn client_identity_pem(&self) -> String {
        format!("{}{}", self.client_cert_pem, self.client_key_pem)
    }

    pub fn other_client_identity_pem(&self) -> String {
        format!(
            "{}{}",
            self.other_client_cert_pem, self.other_client_key_pem
        )
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn named(common_name: &str, subject_alt_names: &[&str]) -> CertificateParams {
    let names: Vec<String> = subject_alt_names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
}

fn new_ca(common_name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = named(common_name, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate signed by `ca` and its key, both PEM.
fn new_leaf(
    ca: &Issuer<'_, KeyPair>,
    common_name: &str,
    subject_alt_names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = named(common_name, subject_alt_names);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[derive(Clone, Debug)]
pub struct TlsReceived {
    pub method: String,
    pub path_and_query: String,
    /// Names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The common name of the client certificate the handshake verified; `None` when the
    /// client presented none.
    pub client_cert_cn: Option<String>,
}

impl TlsReceived {
    pub fn header(&self, name: &str) -> &str {
        super::receiver::header_in(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<TlsReceived>>,
    handshake_failures: AtomicUsize,
}

pub struct TlsReceiver {
    address: SocketAddr,
    state: Arc<State>,
    accepting: JoinHandle<()>,
}

impl TlsReceiver {
    /// Answers every request `200 ok`. With `require_client_cert`, a handshake without a client
    /// certificate signed by the test CA fails; without, such a certificate is still verified
    /// and recorded when one is presented.
    pub async fn start(pki: &TestPki, require_client_cert: bool) -> Self {
        let acceptor = TlsAcceptor::from(server_config(pki, require_client_cert));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(answer(acceptor.clone(), tcp, shared.clone()));
            }
        });
        TlsReceiver {
            address,
            state,
            accepting,
        }
    }

    /// `https://localhost:PORT{path}`: the name the server certificate is for.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.address.port())
    }

    /// `https://127.0.0.1:PORT{path}`: the server certificate names the address too.
    pub fn url_ip(&self, path: &str) -> String {
        format!("https://{}{path}", self.address)
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn received(&self) -> Vec<TlsReceived> {
        self.state.received.lock().unwrap().clone()
    }

    /// Connections whose TLS handshake failed: no client certificate where one is required,
    /// one from an untrusted CA, or a client that did not trust the server.
    pub fn handshake_failures(&self) -> usize {
        self.state.handshake_failures.load(Ordering::SeqCst)
    }

    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<TlsReceived> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "TLS receiver got {} of {count} requests within {timeout:?} \
                 ({} handshakes failed)",
                got.len(),
                self.handshake_failures()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Built on an explicit ring provider: the process-wide one may not be installed yet.
fn server_config(pki: &TestPki, require_client_cert: bool) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier = if require_client_cert {
        verifier.build()
    } else {
        verifier.allow_unauthenticated().build()
    }
    .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// One request per connection, answered `200 ok` and closed.
async fn answer(acceptor: TlsAcceptor, tcp: TcpStream, state: Arc<State>) {
    let mut tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(_) => {
            state.handshake_failures.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let client_cert_cn = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| common_name(cert).unwrap_or_else(|| "present".to_string()));
    let Ok(Some(request)) = http1::read_request(&mut tls).await else {
        return;
    };
    state.received.lock().unwrap().push(TlsReceived {
        method: request.method,
        path_and_query: request.target,
        headers: request
            .headers
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect(),
        body: request.body,
        client_cert_cn,
    });
    let _ = tls.write_all(&http1::answer("200 OK", "", "ok")).await;
    let _ = tls.shutdown().await;
}

/// The subject's common name: the last `2.5.4.3` attribute in the certificate, because the
/// issuer's name comes before the subject's. Enough for names shorter than 128 bytes, as
/// rcgen writes them; no X.509 parser for one field of a test's own certificates.
fn common_name(der: &[u8]) -> Option<String> {
    const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let oid = der.windows(CN_OID.len()).rposition(|w| w == CN_OID)?;
    // The value follows the OID: a string tag, a length (short form below 128), the bytes.
    let length = usize::from(*der.get(oid + CN_OID.len() + 1)?);
    let start = oid + CN_OID.len() + 2;
    let value = der.get(start..start + length).filter(|_| length < 0x80)?;
    Some(String::from_utf8_lossy(value).into_owned())
}
