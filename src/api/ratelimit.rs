//! Ingest rate limiting (`INGEST_RATE_LIMIT`): events per second per bearer token — or per
//! client address when the API has no tokens — with a burst equal to the rate.
//!
//! The budget counts events, not requests, so a route that takes several events in one body
//! spends as many as it carries. The client address is the TCP peer: behind a proxy every
//! caller shares the proxy's budget (no forwarding header is trusted). The limit is per
//! process; with N `serve` processes behind a balancer a caller gets up to N times the rate.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use actix_web::{HttpMessage, HttpRequest};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::errors::ApiError;
use crate::application::AppError;

/// How many admissions pass between two sweeps of idle callers out of the limiter's map.
const SWEEP_EVERY: u32 = 4096;

/// Who is submitting. Set by the authentication middleware for a token (its position in
/// `API_TOKEN`, so a rotated-in token has its own budget); otherwise the peer address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    Token(usize),
    Address(IpAddr),
}

pub struct IngestLimiter {
    limiter: DefaultKeyedRateLimiter<Caller>,
    clock: DefaultClock,
    admissions: AtomicU32,
}

impl IngestLimiter {
    /// `None` when `per_second` is 0: no limit.
    pub fn new(per_second: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate)),
            clock: DefaultClock::default(),
            admissions: AtomicU32::new(0),
        })
    }

    /// Spends `events` of the caller's budget, or says how long to wait (nothing is spent then).
    pub fn admit(&self, caller: Caller, events: u32) -> Result<(), ApiError> {
        if self.admissions.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        let Some(events) = NonZeroU32::new(events) else {
            return Ok(());
        };
        match self.limiter.check_key_n(&caller, events) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::RateLimited {
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                })
            }
            Err(capacity) => Err(AppError::Invalid {
                field: None,
                message: format!(
                    "{} events in one request exceed the rate limit of {} per second",
                    events, capacity.0
                ),
            }
            .into()),
        }
    }
}

/// Spends `events` of this request's caller's budget; a no-op when no limit is set.
pub fn admit(
    limiter: Option<&IngestLimiter>,
    request: &HttpRequest,
    events: u32,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    let caller = request
        .extensions()
        .get::<Caller>()
        .copied()
        .or_else(|| request.peer_addr().map(|addr| Caller::Address(addr.ip())));
    match caller {
        Some(caller) => limiter.admit(caller, events),
        // No peer address (not a TCP connection): nothing to key the budget on.
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_equals_the_rate_then_callers_wait_and_each_has_its_own_budget() {
        let limiter = IngestLimiter::new(5).unwrap();
        let a = Caller::Token(0);
        for _ in 0..5 {
            limiter.admit(a, 1).unwrap();
        }
        match limiter.admit(a, 1) {
            Err(ApiError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected a 429, got {other:?}"),
        }
        limiter.admit(Caller::Token(1), 5).unwrap();
        limiter
            .admit(Caller::Address([10, 0, 0, 1].into()), 1)
            .unwrap();
    }

    #[test]
    fn events_are_counted_not_requests() {
        let limiter = IngestLimiter::new(5).unwrap();
        limiter.admit(Caller::Token(0), 4).unwrap();
        assert!(matches!(
            limiter.admit(Caller::Token(0), 2),
            Err(ApiError::RateLimited { .. })
        ));
        limiter.admit(Caller::Token(0), 1).unwrap();
        assert!(matches!(
            limiter.admit(Caller::Token(1), 6),
            Err(ApiError::App(AppError::Invalid { .. }))
        ));
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(IngestLimiter::new(0).is_none());
    }
}
