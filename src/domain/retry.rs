//! When to try again: exponential backoff with jitter, capped, lengthened by `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// The most retries the queue table can record (attempts 0..=6).
pub const MAX_RETRIES_LIMIT: i32 = 6;

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    max_retries: i32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: f64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub key: &'static str,
    pub message: String,
}

impl RetryPolicy {
    pub fn new(
        max_retries: i32,
        base_delay: Duration,
        max_delay: Duration,
        jitter: f64,
    ) -> Result<Self, PolicyError> {
        let err = |key, message: &str| {
            Err(PolicyError {
                key,
                message: message.to_string(),
            })
        };
        if !(0..=MAX_RETRIES_LIMIT).contains(&max_retries) {
            return err("retry_max_retries", "must be between 0 and 6");
        }
        if base_delay.is_zero() {
            return err("retry_base_delay", "must be positive");
        }
        if max_delay < base_delay {
            return err("retry_max_delay", "must be at least retry_base_delay");
        }
        if !(0.0..1.0).contains(&jitter) {
            return err("retry_jitter", "must be at least 0 and below 1");
        }
        Ok(Self {
            max_retries,
            base_delay,
            max_delay,
            jitter,
        })
    }

    pub fn max_retries(&self) -> i32 {
        self.max_retries
    }
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// This policy with a partner's own delays where it has them (`None`: the global one).
    /// The cap never falls below the base, so a partner base above the global cap is honoured.
    pub fn for_partner(&self, base: Option<Duration>, max: Option<Duration>) -> RetryPolicy {
        let base_delay = base.unwrap_or(self.base_delay);
        RetryPolicy {
            base_delay,
            max_delay: max.unwrap_or(self.max_delay).max(base_delay),
            ..self.clone()
        }
    }

    /// The delay before retry `n` (n ≥ 1):
    /// `min(base · 2^(n−1) · (1 + U(−jitter, +jitter)), max)`.
    pub fn delay(&self, retry: i32, rng: &mut impl Rng) -> Duration {
        let exponent = retry.saturating_sub(1).clamp(0, 62) as u32;
        let nominal = self.base_delay.as_secs_f64() * 2f64.powi(exponent as i32);
        let factor = if self.jitter > 0.0 {
            1.0 + rng.random_range(-self.jitter..=self.jitter)
        } else {
            1.0
        };
        let seconds = (nominal * factor).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(seconds)
    }

    /// The delay before retry `n`, lengthened (never shortened) to the partner's `Retry-After`,
    /// and still capped by `max_delay`.
    pub fn delay_with_hint(
        &self,
        retry: i32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let backoff = self.delay(retry, rng);
        match retry_after {
            Some(hint) => backoff.max(hint).min(self.max_delay),
            None => backoff,
        }
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy::new(6, Duration::from_secs(1), Duration::from_secs(300), jitter).unwrap()
    }

    #[test]
    fn without_jitter_the_delay_doubles_from_the_base() {
        let p = policy(0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let secs: Vec<u64> = (1..=6).map(|n| p.delay(n, &mut rng).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32]);
    }

    #[test]
    fn a_partner_overrides_the_delays_it_sets() {
        let p = policy(0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let own = p.for_partner(Some(Duration::from_millis(10)), None);
        assert_eq!(own.delay(2, &mut rng), Duration::from_millis(20));
        assert_eq!(own.max_delay(), Duration::from_secs(300));
        let slow = p.for_partner(Some(Duration::from_secs(600)), None);
        assert_eq!(slow.delay(1, &mut rng), Duration::from_secs(600));
        assert_eq!(p.for_partner(None, None), p);
    }

    #[test]
    fn the_cap_holds() {
        let p =
            RetryPolicy::new(6, Duration::from_secs(10), Duration::from_secs(25), 0.25).unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        assert_eq!(p.delay(6, &mut rng), Duration::from_secs(25));
    }

    #[test]
    fn jitter_is_actually_random() {
        let p = policy(0.25);
        let mut rng = rand::rng();
        let delays: std::collections::HashSet<Duration> =
            (0..50).map(|_| p.delay(3, &mut rng)).collect();
        assert!(
            delays.len() > 40,
            "only {} distinct delays in 50 draws",
            delays.len()
        );
        // Both halves of the jitter range are used.
        assert!(delays.iter().any(|d| *d < Duration::from_secs(4)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(4)));
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_and_stays_capped() {
        let p = policy(0.0);
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(
            p.delay_with_hint(1, Some(Duration::from_secs(30)), &mut rng),
            Duration::from_secs(30)
        );
        assert_eq!(
            p.delay_with_hint(3, Some(Duration::from_millis(1)), &mut rng),
            Duration::from_secs(4)
        );
        assert_eq!(
            p.delay_with_hint(1, Some(Duration::from_secs(9999)), &mut rng),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn invalid_policies_are_refused() {
        let s = Duration::from_secs(1);
        assert_eq!(
            RetryPolicy::new(7, s, s, 0.1).unwrap_err().key,
            "retry_max_retries"
        );
        assert_eq!(
            RetryPolicy::new(-1, s, s, 0.1).unwrap_err().key,
            "retry_max_retries"
        );
        assert_eq!(
            RetryPolicy::new(1, Duration::ZERO, s, 0.1).unwrap_err().key,
            "retry_base_delay"
        );
        assert_eq!(
            RetryPolicy::new(1, s * 2, s, 0.1).unwrap_err().key,
            "retry_max_delay"
        );
        assert_eq!(
            RetryPolicy::new(1, s, s, 1.0).unwrap_err().key,
            "retry_jitter"
        );
    }

    proptest! {
        #[test]
        fn delay_stays_within_jitter_bounds_and_cap(
            base_ms in 1u64..10_000,
            cap_factor in 1u64..1_000,
            jitter in 0.0f64..0.99,
            retry in 1i32..=6,
            seed: u64,
        ) {
            let base = Duration::from_millis(base_ms);
            let cap = base * cap_factor as u32;
            let p = RetryPolicy::new(6, base, cap, jitter).unwrap();
            let d = p.delay(retry, &mut StdRng::seed_from_u64(seed)).as_secs_f64();
            let nominal = base.as_secs_f64() * 2f64.powi(retry - 1);
            let lower = (nominal * (1.0 - jitter)).min(cap.as_secs_f64());
            let upper = (nominal * (1.0 + jitter)).min(cap.as_secs_f64());
            prop_assert!(d >= lower - 1e-6 && d <= upper + 1e-6, "{d} not in [{lower}, {upper}]");
        }

        #[test]
        fn hinted_delay_is_never_below_backoff_nor_above_cap(
            retry in 1i32..=6, hint_s in 0u64..100_000, seed: u64,
        ) {
            let p = policy(0.25);
            let plain = p.delay(retry, &mut StdRng::seed_from_u64(seed));
            let hinted = p.delay_with_hint(retry, Some(Duration::from_secs(hint_s)), &mut StdRng::seed_from_u64(seed));
            prop_assert!(hinted >= plain);
            prop_assert!(hinted <= p.max_delay());
        }
    }
}
