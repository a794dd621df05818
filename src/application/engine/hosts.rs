//! Per-host in-flight limits, so one slow or dead partner cannot hold every worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A row admitted to the fixed part of a host's waiting line may wait as long as a call may
/// take; one admitted beyond it (the host answers fast, see [`HostLimiter::turn`]) expects a
/// turn within this long.
pub const BRIEF_WAIT: Duration = Duration::from_secs(1);

/// Longest line a fast host may have, in multiples of its call limit.
const MAX_LINE_FACTOR: usize = 64;

/// A host's limit: `cap` calls in flight, and a waiting line of `cap` rows — longer while the
/// host answers fast enough that the whole line is served within [`BRIEF_WAIT`]. Rows beyond
/// that are handed back to the queue for a while rather than occupying a worker.
pub struct HostLimiter {
    cap: usize,
    epoch: Instant,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    /// The host each partner (config id) was last called at, for [`HostLimiter::rooms`].
    partners: Mutex<HashMap<i64, String>>,
}

struct Host {
    calls: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Moving average of call durations, µs; 0 until a call has finished.
    avg_call_us: AtomicU64,
    /// When a call last finished, µs after the limiter's epoch; 0 for never.
    last_finish_us: AtomicU64,
}

impl Host {
    fn finished(&self, at_us: u64, took: Duration) {
        let took = (took.as_micros() as u64).max(1);
        let avg = self.avg_call_us.load(Ordering::Relaxed);
        // An approximate average is enough: a lost update between racing calls is harmless.
        let next = if avg == 0 {
            took
        } else {
            avg - avg / 8 + took / 8
        };
        self.avg_call_us.store(next.max(1), Ordering::Relaxed);
        self.last_finish_us.store(at_us.max(1), Ordering::Relaxed);
    }
}

pub enum Turn {
    /// Call now; the slot is held until the call ends.
    Go(Slot),
    /// Wait for a slot with [`Waiter::wait`].
    Queue(Waiter),
    /// The host's calls and waiting line are full: hand the row back.
    Saturated,
}

/// One call in flight to a host. Dropping it ends the call and frees the place.
pub struct Slot {
    host: Arc<Host>,
    epoch: Instant,
    started: Instant,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = Instant::now();
        let at = now.duration_since(self.epoch).as_micros() as u64;
        self.host.finished(at, now.duration_since(self.started));
    }
}

/// A place in a host's waiting line; leaving it (drop) frees the place.
pub struct Waiter {
    host: Arc<Host>,
    epoch: Instant,
    /// Admitted beyond the fixed line because the host answers fast: should get a turn within
    /// [`BRIEF_WAIT`], and is handed back if it does not.
    pub brief: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.host.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Waiter {
    pub async fn wait(self) -> Slot {
        let permit = self
            .host
            .calls
            .clone()
            .acquire_owned()
            .await
            .expect("host semaphores are never closed");
        Slot {
            host: self.host.clone(),
            epoch: self.epoch,
            started: Instant::now(),
            _permit: permit,
        }
    }
}

impl HostLimiter {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            epoch: Instant::now(),
            hosts: Mutex::new(HashMap::new()),
            partners: Mutex::new(HashMap::new()),
        }
    }

    fn host(&self, key: &str) -> Arc<Host> {
        let mut hosts = self.hosts.lock().expect("host map lock poisoned");
        if let Some(host) = hosts.get(key) {
            return host.clone();
        }
        let host = Arc::new(Host {
            calls: Arc::new(Semaphore::new(self.cap)),
            waiting: AtomicUsize::new(0),
            avg_call_us: AtomicU64::new(0),
            last_finish_us: AtomicU64::new(0),
        });
        hosts.insert(key.to_string(), host.clone());
        host
    }

    /// How many rows may wait for `host` at `now_us`: `cap`, or as many as its recent call
    /// times say will be served within [`BRIEF_WAIT`] when a call finished within that long.
    fn line_limit(&self, host: &Host, now_us: u64) -> usize {
        let last = host.last_finish_us.load(Ordering::Relaxed);
        let avg = host.avg_call_us.load(Ordering::Relaxed);
        let brief = BRIEF_WAIT.as_micros() as u64;
        if last == 0 || avg == 0 || now_us.saturating_sub(last) > brief {
            return self.cap;
        }
        let served_in_time = (self.cap as u64).saturating_mul(brief / avg) as usize;
        served_in_time.clamp(self.cap, self.cap * MAX_LINE_FACTOR)
    }

    /// How many more rows the claim may take for `key` now: as many as its host would accept
    /// (free calls and free places in its waiting line, see [`HostLimiter::turn`]), but no
    /// more than `share` rows in hand for the host. With `share` half of what the process's
    /// workers hold, one partner's backlog cannot fill every worker's batch, and some worker
    /// always has room to claim for the other partners.
    pub fn room(&self, key: &str, share: usize) -> usize {
        let host = self.host(key);
        let now_us = self.epoch.elapsed().as_micros() as u64;
        let free_calls = host.calls.available_permits();
        let waiting = host.waiting.load(Ordering::Acquire);
        let in_hand = self.cap.saturating_sub(free_calls) + waiting;
        let accepted = free_calls + self.line_limit(&host, now_us).saturating_sub(waiting);
        accepted.min(share.saturating_sub(in_hand))
    }

    /// Each partner called so far with the room of its host (see [`HostLimiter::room`]).
    pub fn rooms(&self, share: usize) -> Vec<(i64, i32)> {
        let partners = self
            .partners
            .lock()
            .expect("partner map lock poisoned")
            .clone();
        partners
            .into_iter()
            .map(|(config_id, key)| {
                let room = self.room(&key, share).min(i32::MAX as usize);
                (config_id, room as i32)
            })
            .collect()
    }

    /// A turn at `key` for a row of partner `config_id`.
    pub fn turn(&self, config_id: i64, key: &str) -> Turn {
        {
            let mut partners = self.partners.lock().expect("partner map lock poisoned");
            if partners.get(&config_id).map(String::as_str) != Some(key) {
                partners.insert(config_id, key.to_string());
            }
        }
        let host = self.host(key);
        if let Ok(permit) = host.calls.clone().try_acquire_owned() {
            return Turn::Go(Slot {
                host,
                epoch: self.epoch,
                started: Instant::now(),
                _permit: permit,
            });
        }
        let now_us = self.epoch.elapsed().as_micros() as u64;
        let place = host.waiting.fetch_add(1, Ordering::AcqRel);
        if place >= self.line_limit(&host, now_us) {
            host.waiting.fetch_sub(1, Ordering::AcqRel);
            return Turn::Saturated;
        }
        Turn::Queue(Waiter {
            host,
            epoch: self.epoch,
            brief: place >= self.cap,
        })
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
        let go: Vec<_> = (0..2).map(|_| limiter.turn(1, "a:80")).collect();
        assert!(go.iter().all(|t| matches!(t, Turn::Go(_))));
        let waiters: Vec<_> = (0..2).map(|_| limiter.turn(1, "a:80")).collect();
        assert!(waiters.iter().all(|t| matches!(t, Turn::Queue(_))));
        assert!(matches!(limiter.turn(1, "a:80"), Turn::Saturated));
        // Another host is not affected.
        assert!(matches!(limiter.turn(2, "b:80"), Turn::Go(_)));
        // A finished call lets a waiter through.
        drop(go);
        let mut waiters = waiters.into_iter();
        let Some(Turn::Queue(w)) = waiters.next() else {
            panic!()
        };
        let _first = w.wait().await;
        let _second = match limiter.turn(1, "a:80") {
            Turn::Go(permit) => permit,
            _ => panic!("one permit was still free"),
        };
        // The served waiter's place was freed: one waiter is left, so one more may queue.
        assert!(matches!(limiter.turn(1, "a:80"), Turn::Queue(_)));
    }

    #[test]
    fn a_host_that_answers_fast_gets_a_longer_line_and_a_stalled_one_only_cap() {
        let limiter = HostLimiter::new(4);
        let host = limiter.host("fast:80");
        let brief = BRIEF_WAIT.as_micros() as u64;
        // Nothing has finished yet: the fixed line.
        assert_eq!(limiter.line_limit(&host, 10), 4);
        // Calls of 2 ms, the last one just now: 4 calls at a time serve 2,000 rows a second.
        for _ in 0..20 {
            host.finished(1_000, Duration::from_millis(2));
        }
        assert_eq!(limiter.line_limit(&host, 1_000), 4 * MAX_LINE_FACTOR);
        // Calls of 100 ms: 40 rows a second.
        for _ in 0..100 {
            host.finished(2_000, Duration::from_millis(100));
        }
        let limit = limiter.line_limit(&host, 2_000);
        assert!((36..=44).contains(&limit), "{limit}");
        // No call has finished for longer than the brief wait: the host may be stuck.
        assert_eq!(limiter.line_limit(&host, 2_000 + brief + 1), 4);
        // Calls slower than the brief wait never lengthen the line.
        for _ in 0..100 {
            host.finished(3_000, Duration::from_secs(5));
        }
        assert_eq!(limiter.line_limit(&host, 3_000), 4);
    }

    #[tokio::test]
    async fn room_is_what_the_host_accepts_up_to_a_share_in_hand() {
        let limiter = HostLimiter::new(2);
        assert_eq!(limiter.room("a:80", 100), 4);
        let _go = limiter.turn(1, "a:80");
        assert_eq!(limiter.room("a:80", 100), 3);
        assert_eq!(limiter.room("a:80", 2), 1, "one in hand of a share of two");
        let _rest: Vec<_> = (0..3).map(|_| limiter.turn(1, "a:80")).collect();
        assert_eq!(limiter.room("a:80", 100), 0);
        assert_eq!(limiter.room("b:80", 100), 4);
        assert_eq!(limiter.rooms(100), vec![(1, 0)]);
    }

    #[test]
    fn host_keys_include_the_port() {
        assert_eq!(host_key("https://p.example/x"), "p.example:443");
        assert_eq!(host_key("http://p.example:8080/x?y"), "p.example:8080");
    }
}
