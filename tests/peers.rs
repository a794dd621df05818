//! The peers that tests of outbound options talk to: the receiver's record of method and body,
//! the forward proxy (CONNECT tunnels, absolute-form relays, Basic credentials) and the HTTPS
//! receiver that may demand a client certificate. Tests of webhookd trust what these record,
//! so here each is driven by reqwest and its record checked against what was sent.

mod common;

use std::time::Duration;

use common::eventually;
use common::proxy::{ConnectProxy, ProxySeen};
use common::receiver::Receiver;
use common::tls_receiver::{TestPki, TlsReceiver, CLIENT_CN};
use reqwest::{Certificate, Client, ClientBuilder, Identity, Proxy};

const WAIT: Duration = Duration::from_secs(10);

/// A client that trusts the test CA and nothing else, and goes to the network directly.
fn client(pki: &TestPki) -> ClientBuilder {
    webhookd::sender::install_crypto_provider();
    let ca = Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    Client::builder().tls_certs_only([ca]).timeout(WAIT)
}

fn through(pki: &TestPki, proxy: Proxy) -> Client {
    client(pki).proxy(proxy).build().unwrap()
}

fn with_identity(pki: &TestPki, identity_pem: &str) -> ClientBuilder {
    let identity = Identity::from_pem(identity_pem.as_bytes()).unwrap();
    client(pki).no_proxy().identity(identity)
}

/// The error and its causes on one line: where a refused handshake shows its alert.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Bytes that no truncation or reordering leaves equal, more than one read of a socket holds.
fn pattern(length: usize) -> Vec<u8> {
    (0..length).map(|i| (i % 251) as u8).collect()
}

fn seen(method: &str, target: &str, proxy_authorization: Option<&str>) -> ProxySeen {
    ProxySeen {
        method: method.to_string(),
        target: target.to_string(),
        proxy_authorization: proxy_authorization.map(str::to_string),
    }
}

/// A client presenting a certificate from a CA the receiver does not trust.
fn stranger(pki: &TestPki) -> reqwest::Client {
    with_identity(pki, &pki.other_client_identity_pem())
        .build()
        .unwrap()
}

/// Sends `request`; the status and body of the answer.
async fn answer(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_records_each_method_and_the_whole_body() {
    let receiver = Receiver::start().await;
    let http = client(&TestPki::new()).no_proxy().build().unwrap();
    // Larger than actix's default payload limit.
    let large = pattern(3 * 1024 * 1024);

    let post = http.post(receiver.url("/ok/large")).body(large.clone());
    assert_eq!(post.send().await.unwrap().status(), 200);
    let put = http
        .put(receiver.url("/ok/put?e=1"))
        .body("{\"amount\":\"10.00\"}");
    assert_eq!(put.send().await.unwrap().status(), 200);
    let get = http
        .get(receiver.url("/status/503/get"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 503);

    let got = receiver.received();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/ok/large");
    assert!(got[0].body == large, "{} bytes arrived", got[0].body.len());
    assert_eq!(got[1].method, "PUT");
    assert_eq!(got[1].path_and_query(), "/ok/put?e=1");
    assert_eq!(got[1].body_text(), "{\"amount\":\"10.00\"}");
    assert_eq!(got[2].method, "GET");
    assert!(got[2].body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_tunnels_https_with_connect_and_relays_http_in_absolute_form() {
    let pki = TestPki::new();
    let tls = TlsReceiver::start(&pki, false).await;
    let receiver = Receiver::start().await;
    let proxy = ConnectProxy::start().await;
    let http = through(&pki, Proxy::all(proxy.url()).unwrap());
    let document = pattern(300 * 1024);
    let form = format!("amount=10.00&memo={}", "m".repeat(200 * 1024));

    let put = http.put(tls.url("/hooks/7?e=1&e=2")).body(document.clone());
    let put = put.header("X-Partner", "acme");
    assert_eq!(answer(put).await, (200, "ok".to_string()));
    let post = http.post(receiver.url("/status/202/postback?e=1"));
    let post = post.header("Content-Type", "application/x-www-form-urlencoded");
    assert_eq!(
        answer(post.body(form.clone())).await,
        (202, "status 202".to_string())
    );

    let tls_got = tls.wait_for(1, WAIT).await;
    assert_eq!(tls_got.len(), 1, "{tls_got:?}");
    assert_eq!(tls_got[0].method, "PUT");
    assert_eq!(tls_got[0].path_and_query, "/hooks/7?e=1&e=2");
    assert_eq!(tls_got[0].header("X-Partner"), "acme");
    assert!(
        tls_got[0].body == document,
        "{} bytes",
        tls_got[0].body.len()
    );
    assert_eq!(tls_got[0].client_cert_cn, None);
    let got = receiver.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path_and_query(), "/status/202/postback?e=1");
    assert!(got[0].body_text() == form, "{} bytes", got[0].body.len());
    assert_eq!(
        got[0].header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        got[0].header("host"),
        format!("127.0.0.1:{}", receiver.port())
    );
    assert_eq!(
        proxy.seen(),
        [
            seen("CONNECT", &format!("localhost:{}", tls.port()), None),
            seen("POST", &receiver.url("/status/202/postback?e=1"), None),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_with_credentials_answers_407_without_them_and_relays_with_them() {
    let pki = TestPki::new();
    let tls = TlsReceiver::start(&pki, false).await;
    let receiver = Receiver::start().await;
    let proxy = ConnectProxy::start_with_auth("user", "pass").await;
    let anonymous = through(&pki, Proxy::all(proxy.url()).unwrap());
    let wrong = through(
        &pki,
        Proxy::all(proxy.url()).unwrap().basic_auth("user", "wrong"),
    );
    let right = through(
        &pki,
        Proxy::all(proxy.url()).unwrap().basic_auth("user", "pass"),
    );

    for (who, http) in [("anonymous", &anonymous), ("wrong", &wrong)] {
        let refused = http.post(receiver.url("/ok/a")).body("x").send().await;
        let refused = refused.unwrap();
        assert_eq!(refused.status(), 407, "{who}");
        assert_eq!(
            refused.headers()["proxy-authenticate"],
            "Basic realm=\"test\"",
            "{who}"
        );
        let tunnel = http.get(tls.url("/a")).send().await;
        assert!(tunnel.is_err(), "{who}: a tunnel without credentials");
    }
    assert!(receiver.received().is_empty());
    assert!(tls.received().is_empty());

    let relayed = right.post(receiver.url("/ok/b")).body("y").send().await;
    assert_eq!(relayed.unwrap().status(), 200);
    let tunnelled = right.get(tls.url("/b")).send().await.unwrap();
    assert_eq!(tunnelled.status(), 200);

    let got = receiver.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body_text(), "y");
    assert_eq!(
        got[0].header("proxy-authorization"),
        "",
        "the proxy's credentials go no further than the proxy"
    );
    assert_eq!(tls.wait_for(1, WAIT).await[0].path_and_query, "/b");
    let tunnel = format!("localhost:{}", tls.port());
    let (a, b) = (receiver.url("/ok/a"), receiver.url("/ok/b"));
    let wrong_token = "Basic dXNlcjp3cm9uZw==";
    let token = "Basic dXNlcjpwYXNz";
    assert_eq!(
        proxy.seen(),
        [
            seen("POST", &a, None),
            seen("CONNECT", &tunnel, None),
            seen("POST", &a, Some(wrong_token)),
            seen("CONNECT", &tunnel, Some(wrong_token)),
            seen("POST", &b, Some(token)),
            seen("CONNECT", &tunnel, Some(token)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mtls_receiver_refuses_a_missing_or_untrusted_client_certificate_and_records_a_trusted_one(
) {
    let pki = TestPki::new();
    let tls = TlsReceiver::start(&pki, true).await;

    let without = client(&pki).no_proxy().build().unwrap();
    let refused = without.post(tls.url("/none")).body("a").send().await;
    let error = refused.expect_err("no client certificate is refused");
    assert!(
        chain(&error).contains("CertificateRequired"),
        "{}",
        chain(&error)
    );
    eventually(WAIT, "the refused handshake counted", || async {
        tls.handshake_failures() >= 1
    })
    .await;

    let refused = stranger(&pki).post(tls.url("/other")).send().await;
    let error = refused.expect_err("a certificate from another CA is refused");
    assert!(chain(&error).contains("UnknownCA"), "{}", chain(&error));
    eventually(WAIT, "the second refused handshake counted", || async {
        tls.handshake_failures() >= 2
    })
    .await;
    assert!(tls.received().is_empty(), "{:?}", tls.received());

    let trusted = with_identity(&pki, &pki.client_identity_pem());
    let accepted = trusted
        .build()
        .unwrap()
        .post(tls.url_ip("/mine?e=1"))
        .body("b");
    let accepted = accepted.send().await.unwrap();
    assert_eq!(accepted.status(), 200);
    // The identity travels end to end inside a CONNECT tunnel too.
    let proxy = ConnectProxy::start().await;
    let tunnelled = with_identity(&pki, &pki.client_identity_pem())
        .proxy(Proxy::all(proxy.url()).unwrap())
        .build()
        .unwrap();
    let accepted = tunnelled.put(tls.url("/tunnelled")).body("c").send().await;
    assert_eq!(accepted.unwrap().status(), 200);

    let got = tls.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path_and_query, "/mine?e=1");
    assert_eq!(got[0].body_text(), "b");
    assert_eq!(got[0].client_cert_cn.as_deref(), Some(CLIENT_CN));
    assert_eq!(got[1].path_and_query, "/tunnelled");
    assert_eq!(got[1].client_cert_cn.as_deref(), Some(CLIENT_CN));
    assert_eq!(tls.handshake_failures(), 2);
    assert_eq!(proxy.seen()[0].method, "CONNECT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_does_not_require_a_client_certificate_still_verifies_one_presented() {
    let pki = TestPki::new();
    let tls = TlsReceiver::start(&pki, false).await;

    let trusted = with_identity(&pki, &pki.client_identity_pem())
        .build()
        .unwrap();
    assert_eq!(
        trusted.get(tls.url("/mine")).send().await.unwrap().status(),
        200
    );
    let refused = stranger(&pki).get(tls.url("/other")).send().await;
    assert!(refused.is_err(), "a certificate from another CA is refused");

    let got = tls.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].client_cert_cn.as_deref(), Some(CLIENT_CN));
    eventually(WAIT, "the refused handshake counted", || async {
        tls.handshake_failures() == 1
    })
    .await;
}
