//! The life of a queue row: its status, what one attempt produced, and what happens next.

use std::time::Duration;

use rand::Rng;

use super::name::named;
use super::retry::RetryPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Waiting for `next_retry_at`.
    Pending,
    /// Claimed by a worker until `lock_expires_at`.
    Processing,
    /// A 2xx arrived.
    Completed,
    /// Every attempt failed.
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Processing,
        Status::Completed,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }
}

named!(Status);

/// Why a pending row is held: due, but not called now, and spending no attempt while it waits.
/// Money order's reason is stored on the row (`held_reason`); a partner's is its state, read
/// where it is needed (`PartnerState::held_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeldReason {
    /// Its partner was paused (by an operator, or by a `410 Gone`).
    PartnerPaused,
    /// Its partner failed too often in a row.
    PartnerTripped,
    /// A `-debit` whose `+credit` has not completed (money order, docs/api.md, "Money order").
    WaitingForCredit,
}

impl HeldReason {
    pub const ALL: [HeldReason; 3] = [
        HeldReason::PartnerPaused,
        HeldReason::PartnerTripped,
        HeldReason::WaitingForCredit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HeldReason::PartnerPaused => "partner_paused",
            HeldReason::PartnerTripped => "partner_tripped",
            HeldReason::WaitingForCredit => "waiting_for_credit",
        }
    }
}

named!(HeldReason);

/// Why an attempt got no HTTP response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Timeout,
    Connect,
    /// The outbound address policy refused the destination; no packet was sent.
    Blocked,
    Other,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connect => "connect",
            FailureKind::Blocked => "blocked",
            FailureKind::Other => "error",
        }
    }
}

/// What one call produced. A failed call is a value, not an `Err`: only a broken worker errs.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The partner answered with a status; 2xx means delivered.
    Response {
        status: u16,
        /// At most `RESPONSE_BODY_LIMIT` bytes, as lossy UTF-8.
        body: String,
        /// The partner's `Retry-After`, honoured on 429 and 503 only.
        retry_after: Option<Duration>,
    },
    /// No response arrived.
    NoResponse { kind: FailureKind, message: String },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Response { status, .. } if (200..300).contains(status))
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            Outcome::Response { status, .. } => Some(*status),
            Outcome::NoResponse { .. } => None,
        }
    }

    /// The text recorded in `retry_N_error`; `None` for a success.
    pub fn error_text(&self) -> Option<String> {
        match self {
            _ if self.is_success() => None,
            Outcome::Response { status, .. } => Some(format!("HTTP {status}")),
            Outcome::NoResponse { kind, message } => Some(format!("{}: {message}", kind.as_str())),
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            _ if self.is_success() => "success",
            Outcome::Response { .. } => "http_error",
            Outcome::NoResponse { kind, .. } => kind.as_str(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Outcome::Response {
                status: 429 | 503,
                retry_after,
                ..
            } => *retry_after,
            _ => None,
        }
    }
}

/// What becomes of a row after attempt `attempt` produced an outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transition {
    Complete,
    /// Try again: `retry_count` becomes `attempt + 1`, due after `delay`.
    Retry {
        next_attempt: i32,
        delay: Duration,
    },
    /// The retries are spent: the row stays at `retry_count = attempt`.
    Fail,
}

impl Transition {
    /// The one rule for moving a row on (docs/decisions.md, "Delivery").
    pub fn after(
        attempt: i32,
        max_retries: i32,
        outcome: &Outcome,
        policy: &RetryPolicy,
        rng: &mut impl Rng,
    ) -> Self {
        if outcome.is_success() {
            Transition::Complete
        } else if attempt < max_retries {
            let next_attempt = attempt + 1;
            Transition::Retry {
                next_attempt,
                delay: policy.delay_with_hint(next_attempt, outcome.retry_after(), rng),
            }
        } else {
            Transition::Fail
        }
    }

    /// The status the row is left in.
    pub fn status(self) -> Status {
        match self {
            Transition::Complete => Status::Completed,
            Transition::Retry { .. } => Status::Pending,
            Transition::Fail => Status::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::name::assert_names_read_back;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(6, Duration::from_secs(1), Duration::from_secs(60), 0.0).unwrap()
    }

    fn response(status: u16, retry_after: Option<u64>) -> Outcome {
        Outcome::Response {
            status,
            body: String::new(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn statuses_round_trip() {
        assert_names_read_back::<Status>();
        assert!("done".parse::<Status>().is_err());
    }

    #[test]
    fn any_2xx_completes() {
        let mut rng = StdRng::seed_from_u64(0);
        for status in [200, 201, 204, 299] {
            assert_eq!(
                Transition::after(0, 6, &response(status, None), &policy(), &mut rng),
                Transition::Complete
            );
        }
    }

    #[test]
    fn failures_retry_until_the_last_attempt_then_fail() {
        let mut rng = StdRng::seed_from_u64(0);
        let timeout = Outcome::NoResponse {
            kind: FailureKind::Timeout,
            message: "after 30s".into(),
        };
        for (attempt, max) in [(0, 6), (5, 6), (0, 1)] {
            let t = Transition::after(attempt, max, &timeout, &policy(), &mut rng);
            assert!(
                matches!(t, Transition::Retry { next_attempt, .. } if next_attempt == attempt + 1)
            );
            assert_eq!(t.status(), Status::Pending);
        }
        assert_eq!(
            Transition::after(6, 6, &timeout, &policy(), &mut rng),
            Transition::Fail
        );
        assert_eq!(
            Transition::after(0, 0, &response(500, None), &policy(), &mut rng),
            Transition::Fail
        );
        for status in [199, 300, 301, 404, 500] {
            assert!(!response(status, None).is_success());
        }
    }

    #[test]
    fn retry_after_is_honoured_only_on_429_and_503() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut delay = |status| match Transition::after(
            0,
            6,
            &response(status, Some(20)),
            &policy(),
            &mut rng,
        ) {
            Transition::Retry { delay, .. } => delay,
            other => panic!("{other:?}"),
        };
        assert_eq!(delay(429), Duration::from_secs(20));
        assert_eq!(delay(503), Duration::from_secs(20));
        assert_eq!(delay(500), Duration::from_secs(1));
    }

    #[test]
    fn error_text_says_what_happened() {
        assert_eq!(response(200, None).error_text(), None);
        assert_eq!(response(503, None).error_text().unwrap(), "HTTP 503");
        let blocked = Outcome::NoResponse {
            kind: FailureKind::Blocked,
            message: "127.0.0.1 is loopback".into(),
        };
        assert_eq!(
            blocked.error_text().unwrap(),
            "blocked: 127.0.0.1 is loopback"
        );
        assert_eq!(blocked.label(), "blocked");
    }
}
