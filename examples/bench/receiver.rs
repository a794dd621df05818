//! The partner side of the bench: a minimal HTTP/1.1 keep-alive server on its own thread and
//! current-thread runtime. It answers every request `200 ok`, counts calls, and (while
//! recording) notes the arrival instant of each `X-Webhook-Id`, on the same monotonic clock
//! as the load generator, so submit → first call latency needs no clock synchronisation.
//!
//! Hand-written rather than actix-web so that the receiver costs as little CPU as possible on
//! a 2-core machine: it only has to find the end of each request head and one header.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";

#[derive(Default)]
struct Shared {
    calls: AtomicU64,
    recording: AtomicBool,
    arrivals: Mutex<Vec<(Uuid, Instant)>>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("receiver address");
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        std::thread::Builder::new()
            .name("receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(connection(stream, state.clone()));
                    }
                });
            })
            .expect("receiver thread");
        Receiver { addr, shared }
    }

    /// Calls received since the last [`Receiver::reset`].
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
    }

    /// Zeroes the call count, forgets recorded arrivals and sets whether to record new ones.
    pub fn reset(&self, record: bool) {
        self.shared.recording.store(false, Ordering::SeqCst);
        self.shared.arrivals.lock().unwrap().clear();
        self.shared.calls.store(0, Ordering::SeqCst);
        self.shared.recording.store(record, Ordering::SeqCst);
    }

    /// The recorded arrivals so far (every call, repeats included), leaving them in place.
    pub fn arrivals(&self) -> Vec<(Uuid, Instant)> {
        self.shared.arrivals.lock().unwrap().clone()
    }

    pub fn arrival_count(&self) -> usize {
        self.shared.arrivals.lock().unwrap().len()
    }
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let mut start = 0;
        while let Some(end) = find_head_end(&buf[start..]) {
            let head = &buf[start..start + end];
            let now = Instant::now();
            shared.calls.fetch_add(1, Ordering::Relaxed);
            if shared.recording.load(Ordering::Relaxed) {
                if let Some(id) = webhook_id(head) {
                    shared.arrivals.lock().unwrap().push((id, now));
                }
            }
            out.extend_from_slice(RESPONSE);
            start += end + 4;
        }
        buf.drain(..start);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn webhook_id(head: &[u8]) -> Option<Uuid> {
    const NAME: &[u8] = b"x-webhook-id:";
    head.split(|&b| b == b'\n').find_map(|line| {
        if line.len() > NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            let value = std::str::from_utf8(&line[NAME.len()..]).ok()?.trim();
            Uuid::parse_str(value).ok()
        } else {
            None
        }
    })
}
