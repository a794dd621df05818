//! Partner health (docs/api.md, "Partner health"): a partner's delivery state, why it is not active, what one
//! attempt says about the partner, and the limits of the per-partner settings.

use super::delivery::{FailureKind, HeldReason, Outcome};
use super::name::named;

/// Longest wait between two probes of a tripped partner (the claim, sql/rules/05_claim.sql,
/// caps the doubling at the same 5 minutes).
pub const MAX_PROBE_INTERVAL_SECS: u64 = 300;
/// Most calls per second a partner may be limited to.
pub const MAX_PER_SECOND_LIMIT: i64 = 100_000;
/// Largest circuit threshold a partner may set.
pub const MAX_THRESHOLD: i64 = 1000;

/// A partner's delivery state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartnerState {
    /// Its rows are delivered.
    Active,
    /// Held until an operator resumes it (paused by hand, or by a 410 Gone).
    Paused,
    /// Held after too many partner failures in a row; probed until a 2xx.
    Tripped,
}

impl PartnerState {
    pub const ALL: [PartnerState; 3] = [
        PartnerState::Active,
        PartnerState::Paused,
        PartnerState::Tripped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PartnerState::Active => "active",
            PartnerState::Paused => "paused",
            PartnerState::Tripped => "tripped",
        }
    }

    /// Why this state holds the partner's pending rows; `None` while active.
    pub fn held_reason(self) -> Option<HeldReason> {
        match self {
            PartnerState::Active => None,
            PartnerState::Paused => Some(HeldReason::PartnerPaused),
            PartnerState::Tripped => Some(HeldReason::PartnerTripped),
        }
    }

    /// The state that holds rows for `reason`; `None` for a reason of the row's own.
    pub fn holding_for(reason: HeldReason) -> Option<PartnerState> {
        PartnerState::ALL
            .into_iter()
            .find(|s| s.held_reason() == Some(reason))
    }

    /// The value of the `webhookd_partner_state` gauge: 0 active, 1 paused, 2 tripped.
    pub fn gauge(self) -> i64 {
        match self {
            PartnerState::Active => 0,
            PartnerState::Paused => 1,
            PartnerState::Tripped => 2,
        }
    }
}

named!(PartnerState);

impl serde::Serialize for PartnerState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl serde::Serialize for StateReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why a partner is not active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateReason {
    /// Paused by an operator.
    Operator,
    /// Paused because it answered 410 Gone.
    Gone,
    /// Tripped by its failures in a row.
    Failures,
}

impl StateReason {
    pub const ALL: [StateReason; 3] = [
        StateReason::Operator,
        StateReason::Gone,
        StateReason::Failures,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateReason::Operator => "operator",
            StateReason::Gone => "gone",
            StateReason::Failures => "failures",
        }
    }
}

named!(StateReason);

/// What one attempt says about its partner (not about its event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx: the partner is up; its run of failures ends, and a tripped partner resumes.
    Up,
    /// A partner failure: transport error, timeout, 5xx or 429. Counts toward a trip.
    Down,
    /// 410 Gone: the partner says the endpoint is gone; it is paused.
    Gone,
    /// Any other answer (3xx, other 4xx): the event's own failure. The partner answered, so,
    /// like a 2xx, it ends the run of failures and resumes a tripped partner: a partner that
    /// refuses every event with 400 is up, and a timeout among its answers must not leave it
    /// tripped with probes that can never succeed.
    Own,
    /// A destination the outbound policy refused: no call was made, which says nothing about
    /// the partner.
    Unreached,
}

impl Verdict {
    /// The one rule for what an outcome says about the partner.
    pub fn of(outcome: &Outcome) -> Self {
        match outcome {
            _ if outcome.is_success() => Verdict::Up,
            Outcome::Response { status: 410, .. } => Verdict::Gone,
            Outcome::Response { status, .. } if *status == 429 || *status >= 500 => Verdict::Down,
            Outcome::Response { .. } => Verdict::Own,
            Outcome::NoResponse {
                kind: FailureKind::Blocked,
                ..
            } => Verdict::Unreached,
            Outcome::NoResponse { .. } => Verdict::Down,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Up => "up",
            Verdict::Down => "down",
            Verdict::Gone => "gone",
            Verdict::Own => "own",
            Verdict::Unreached => "unreached",
        }
    }

    /// Whether the failure is the partner's: while the partner is held such an attempt costs
    /// its event nothing.
    pub fn is_partner_failure(self) -> bool {
        matches!(self, Verdict::Down | Verdict::Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::name::assert_names_read_back;

    fn response(status: u16) -> Outcome {
        Outcome::Response {
            status,
            body: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn only_transport_errors_timeouts_5xx_and_429_are_partner_failures() {
        assert_eq!(Verdict::of(&response(200)), Verdict::Up);
        assert_eq!(Verdict::of(&response(204)), Verdict::Up);
        for status in [500, 502, 503, 504, 429] {
            assert_eq!(Verdict::of(&response(status)), Verdict::Down, "{status}");
        }
        for status in [301, 400, 401, 403, 404, 422] {
            assert_eq!(Verdict::of(&response(status)), Verdict::Own, "{status}");
        }
        assert_eq!(Verdict::of(&response(410)), Verdict::Gone);
        for (kind, verdict) in [
            (FailureKind::Timeout, Verdict::Down),
            (FailureKind::Connect, Verdict::Down),
            (FailureKind::Other, Verdict::Down),
            (FailureKind::Blocked, Verdict::Unreached),
        ] {
            let outcome = Outcome::NoResponse {
                kind,
                message: String::new(),
            };
            assert_eq!(Verdict::of(&outcome), verdict, "{kind:?}");
        }
    }

    #[test]
    fn states_and_reasons_round_trip() {
        assert_names_read_back::<PartnerState>();
        assert_names_read_back::<StateReason>();
        assert!("down".parse::<PartnerState>().is_err());
    }
}
