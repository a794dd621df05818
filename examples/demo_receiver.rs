//! A tiny partner receiver for demos: answers webhookd's calls and prints one line per call.
//!
//! ```text
//! cargo run --example demo_receiver -- --addr 127.0.0.1:9090
//! ```
//!
//! Every GET, POST or PUT on any path answers `200 ok`; a body is printed after the line, with
//! whether the call carried an `Authorization` (never its value). With `fail_first=N` in the query it answers `503`
//! with `Retry-After: 1` while `X-Webhook-Attempt` (0 is the first attempt) is below N, so the
//! demo shows webhookd retrying. With `down_until=T` (Unix seconds) it answers `503` to every
//! call until then: a partner that is down for a while, which webhookd trips and then probes
//! until it answers again. Values of secret-looking query keys are printed as `***`.

use std::net::SocketAddr;

use actix_web::{http::Method, web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{SecondsFormat, Utc};
use clap::Parser;
use percent_encoding::percent_decode_str;

/// A query key containing one of these (in any case) has its value hidden in the output,
/// the same rule webhookd applies to `url_params` in its logs.
const SECRET_WORDS: [&str; 8] = [
    "token",
    "secret",
    "signature",
    "sig",
    "password",
    "passwd",
    "key",
    "auth",
];

#[derive(Parser)]
#[command(about = "Demo partner receiver for webhookd: prints every call it gets")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    addr: SocketAddr,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let server = HttpServer::new(|| App::new().default_service(web::to(receive)))
        .workers(1)
        .bind(args.addr);
    let server = match server {
        Ok(server) => server,
        Err(err) => {
            eprintln!("demo_receiver: cannot listen on {}: {err}", args.addr);
            std::process::exit(1);
        }
    };
    eprintln!("demo_receiver listening on http://{}", args.addr);
    server.run().await
}

async fn receive(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let attempt: u32 = header(&req, "x-webhook-attempt").parse().unwrap_or(0);
    let fail_first: u32 = query_pairs(req.query_string())
        .find(|(key, _)| *key == "fail_first")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);

    let down_until: i64 = query_pairs(req.query_string())
        .find(|(key, _)| *key == "down_until")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);

    let response = if ![Method::GET, Method::POST, Method::PUT].contains(req.method()) {
        HttpResponse::MethodNotAllowed().finish()
    } else if Utc::now().timestamp() < down_until {
        HttpResponse::ServiceUnavailable().body("down for maintenance")
    } else if attempt < fail_first {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .body("try again")
    } else {
        HttpResponse::Ok().body("ok")
    };

    println!(
        "{} {} {} id={} attempt={} event={} -> {}",
        Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        req.method(),
        redacted_target(&req),
        header(&req, "x-webhook-id"),
        header(&req, "x-webhook-attempt"),
        header(&req, "x-webhook-event"),
        response.status().as_u16(),
    );
    if !body.is_empty() {
        let auth = if req.headers().contains_key("authorization") {
            " (with Authorization)"
        } else {
            ""
        };
        println!(
            "    {}{auth}: {}",
            header(&req, "content-type"),
            String::from_utf8_lossy(&body)
        );
    }
    response
}

/// A header's value, or `-` when it is missing or not printable.
fn header<'a>(req: &'a HttpRequest, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-")
}

/// `key=value` pairs of a raw query string, still percent-encoded.
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Path and query with the values of secret-looking keys replaced by `***`.
fn redacted_target(req: &HttpRequest) -> String {
    let query: Vec<String> = req
        .query_string()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    if query.is_empty() {
        req.path().to_owned()
    } else {
        format!("{}?{}", req.path(), query.join("&"))
    }
}

fn is_secret(key: &str) -> bool {
    let key = percent_decode_str(key).decode_utf8_lossy().to_lowercase();
    SECRET_WORDS.iter().any(|word| key.contains(word))
}
