//! Per-host in-flight limits, so one slow or dead partner cannot hold every worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A host's limit: `cap` calls in flight, and at most `cap` more rows waiting for a turn.
/// Rows beyond that are handed back to the queue for a while rather than occupying a worker.
pub struct HostLimiter {
    cap: usize,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

struct Host {
    calls: Arc<Semaphore>,
    waiting: AtomicUsize,
}

pub enum Turn {
    /// Call now; the permit is held until the call ends.
    Go(OwnedSemaphorePermit),
    /// Wait for a permit with [`HostLimiter::wait`].
    Queue(Waiter),
    /// The host has `cap` calls in flight and `cap` rows waiting: hand the row back.
    Saturated,
}

/// A place in a host's waiting line; leaving it (drop) frees the place.
pub struct Waiter {
    host: Arc<Host>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.host.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Waiter {
    pub async fn wait(self) -> OwnedSemaphorePermit {
        self.host
            .calls
            .clone()
            .acquire_owned()
            .await
            .expect("host semaphores are never closed")
    }
}

impl HostLimiter {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    pub fn turn(&self, host: &str) -> Turn {
        let host = {
            let mut hosts = self.hosts.lock().expect("host map lock poisoned");
            hosts
                .entry(host.to_string())
                .or_insert_with(|| {
                    Arc::new(Host {
                        calls: Arc::new(Semaphore::new(self.cap)),
                        waiting: AtomicUsize::new(0),
                    })
                })
                .clone()
        };
        if let Ok(permit) = host.calls.clone().try_acquire_owned() {
            return Turn::Go(permit);
        }
        if host.waiting.fetch_add(1, Ordering::AcqRel) >= self.cap {
            host.waiting.fetch_sub(1, Ordering::AcqRel);
            return Turn::Saturated;
        }
        Turn::Queue(Waiter { host })
    }
}

/// The key a URL's calls are limited under: host and port.
pub fn host_key(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_host_gets_cap_calls_then_cap_waiters_then_is_saturated() {
        let limiter = HostLimiter::new(2);
        let go: Vec<_> = (0..2).map(|_| limiter.turn("a:80")).collect();
        assert!(go.iter().all(|t| matches!(t, Turn::Go(_))));
        let waiters: Vec<_> = (0..2).map(|_| limiter.turn("a:80")).collect();
        assert!(waiters.iter().all(|t| matches!(t, Turn::Queue(_))));
        assert!(matches!(limiter.turn("a:80"), Turn::Saturated));
        // Another host is not affected.
        assert!(matches!(limiter.turn("b:80"), Turn::Go(_)));
        // A finished call lets a waiter through.
        drop(go);
        let mut waiters = waiters.into_iter();
        let Some(Turn::Queue(w)) = waiters.next() else {
            panic!()
        };
        let _first = w.wait().await;
        let _second = match limiter.turn("a:80") {
            Turn::Go(permit) => permit,
            _ => panic!("one permit was still free"),
        };
        // The served waiter's place was freed: one waiter is left, so one more may queue.
        assert!(matches!(limiter.turn("a:80"), Turn::Queue(_)));
    }

    #[test]
    fn host_keys_include_the_port() {
        assert_eq!(host_key("https://p.example/x"), "p.example:443");
        assert_eq!(host_key("http://p.example:8080/x?y"), "p.example:8080");
    }
}
