//! Money order (docs/api.md, "Money order"): a `-debit` reverses the `+credit` with the same event id for the
//! same partner, so it must never reach the partner first. The rule is kept by the database
//! (sql/rules/06_money_order.sql); these are the names it speaks in.

use super::name::named;

/// A partner's `ordering`: whether its debits wait for their credits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EventOrdering {
    /// A debit waits while the credit with the same event id is queued, live and not
    /// completed.
    #[default]
    CreditBeforeDebit,
    /// Debits and credits are delivered independently.
    None,
}

impl EventOrdering {
    pub const ALL: [EventOrdering; 2] = [EventOrdering::CreditBeforeDebit, EventOrdering::None];

    pub fn as_str(self) -> &'static str {
        match self {
            EventOrdering::CreditBeforeDebit => "credit_before_debit",
            EventOrdering::None => "none",
        }
    }
}

named!(EventOrdering);

/// Why webhookd cancelled a row by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// A debit whose credit was cancelled before it was delivered.
    CreditCancelled,
}

impl CancelReason {
    pub const ALL: [CancelReason; 1] = [CancelReason::CreditCancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::CreditCancelled => "credit_cancelled",
        }
    }
}

named!(CancelReason);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::name::assert_names_read_back;

    #[test]
    fn names_round_trip() {
        assert_names_read_back::<EventOrdering>();
        assert_eq!(EventOrdering::default(), EventOrdering::CreditBeforeDebit);
        assert!("None".parse::<EventOrdering>().is_err());
        assert_names_read_back::<CancelReason>();
    }
}
