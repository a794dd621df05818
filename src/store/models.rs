//! Rows as read from and written to PostgreSQL, and the mapping of domain enums to SQL text.

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::sql_types::{self, Text};
use uuid::Uuid;

use super::attempt_slots::ATTEMPT_SLOTS;
use super::schema::{webhook_attempt_history, webhook_configs, webhook_queue};
use crate::domain::attempt::Attempt;
use crate::domain::call_settings::CallSettings;
use crate::domain::delivery::{HeldReason, Status};
use crate::domain::event::EventType;
use crate::domain::order::{CancelReason, EventOrdering};
use crate::domain::partner::{PartnerState, StateReason};

// The only place where status and event-type text meets the domain enums.
macro_rules! text_enum {
    ($t:ty) => {
        impl Queryable<Text, Pg> for $t {
            type Row = Self;
            fn build(row: Self) -> deserialize::Result<Self> {
                Ok(row)
            }
        }
    };
}
text_enum!(Status);
text_enum!(EventType);
text_enum!(HeldReason);
text_enum!(CancelReason);
text_enum!(EventOrdering);
text_enum!(PartnerState);
text_enum!(StateReason);

// Domain enums read from their SQL text.
macro_rules! parsed_text {
    ($t:ty) => {
        impl FromSql<Text, Pg> for $t {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
                Ok(text.parse()?)
            }
        }
    };
}
parsed_text!(Status);
parsed_text!(EventType);
parsed_text!(HeldReason);
parsed_text!(CancelReason);
parsed_text!(EventOrdering);
parsed_text!(PartnerState);
parsed_text!(StateReason);

#[derive(Clone, Debug, Queryable, Selectable, Identifiable)]
#[diesel(table_name = webhook_configs)]
pub struct ConfigRow {
    pub id: i64,
    pub name: String,
    pub postback_url: Option<String>,
    pub chargeback_url: Option<String>,
    pub max_retries: Option<i32>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub max_per_second: Option<i32>,
    pub retry_base_delay_ms: Option<i64>,
    pub retry_max_delay_ms: Option<i64>,
    pub circuit_failure_threshold: Option<i32>,
    pub ordering: EventOrdering,
    /// Whether calls are signed. The secret itself is never read here: only the claim
    /// statement returns it, to the worker that signs.
    #[diesel(select_expression = webhook_configs::signing_secret.is_not_null())]
    #[diesel(select_expression_type = diesel::dsl::IsNotNull<webhook_configs::signing_secret>)]
    pub signing: bool,
    /// While a rotated-out signing secret still signs: until when.
    pub previous_signing_secret_until: Option<DateTime<Utc>>,
    #[diesel(embed)]
    pub call: CallSettingsColumns,
}

/// A settings column that did not read as the settings webhookd writes.
#[derive(Debug, thiserror::Error)]
#[error("config {config_id}: the stored {column} is not what webhookd writes ({error})")]
pub struct UnreadableSettings {
    pub config_id: i64,
    pub column: &'static str,
    pub error: serde_json::Error,
}

impl ConfigRow {
    /// The URL template for an event type, if the partner takes that type.
    pub fn url_for(&self, event_type: EventType) -> Option<&str> {
        match event_type {
            EventType::Credit => self.postback_url.as_deref(),
            EventType::Debit => self.chargeback_url.as_deref(),
        }
    }

    /// How the partner is called besides its URL, as stored.
    pub fn call_settings(&self) -> Result<CallSettings, UnreadableSettings> {
        fn column<T: serde::de::DeserializeOwned>(
            config_id: i64,
            column: &'static str,
            value: &Option<serde_json::Value>,
        ) -> Result<Option<T>, UnreadableSettings> {
            value
                .clone()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|error| UnreadableSettings {
                    config_id,
                    column,
                    error,
                })
        }
        let (id, c) = (self.id, &self.call);
        Ok(CallSettings {
            postback_request: column(id, "postback_request", &c.postback_request)?,
            chargeback_request: column(id, "chargeback_request", &c.chargeback_request)?,
            headers: column(id, "headers", &c.headers)?.unwrap_or_default(),
            auth: column(id, "auth", &c.auth)?,
            proxy: column(id, "proxy", &c.proxy)?,
            client_tls: column(id, "client_tls", &c.client_tls)?,
        })
    }
}

/// The call settings' columns, as written and read (JSON that [`CallSettings`] serializes).
#[derive(Clone, Debug, Default, Insertable, AsChangeset, Queryable, Selectable)]
#[diesel(table_name = webhook_configs, treat_none_as_null = true)]
pub struct CallSettingsColumns {
    pub postback_request: Option<serde_json::Value>,
    pub chargeback_request: Option<serde_json::Value>,
    pub headers: Option<serde_json::Value>,
    pub auth: Option<serde_json::Value>,
    pub proxy: Option<serde_json::Value>,
    pub client_tls: Option<serde_json::Value>,
}

impl From<&CallSettings> for CallSettingsColumns {
    fn from(s: &CallSettings) -> Self {
        let json = |v: &dyn erased::ToJson| v.to_json();
        Self {
            postback_request: json(&s.postback_request),
            chargeback_request: json(&s.chargeback_request),
            headers: (!s.headers.is_empty()).then(|| json(&s.headers)).flatten(),
            auth: json(&s.auth),
            proxy: json(&s.proxy),
            client_tls: json(&s.client_tls),
        }
    }
}

mod erased {
    /// A settings value as its column's JSON, `None` for an absent one.
    pub trait ToJson {
        fn to_json(&self) -> Option<serde_json::Value>;
    }

    impl<T: serde::Serialize> ToJson for Option<T> {
        fn to_json(&self) -> Option<serde_json::Value> {
            self.as_ref()
                .map(|v| serde_json::to_value(v).expect("settings serialize"))
        }
    }

    impl<T: serde::Serialize> ToJson for Vec<T> {
        fn to_json(&self) -> Option<serde_json::Value> {
            Some(serde_json::to_value(self).expect("settings serialize"))
        }
    }
}

/// A config's signing secrets as stored: the one that signs, and one a rotation replaced that
/// signs alongside it until its end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Insertable, AsChangeset, Queryable, Selectable)]
#[diesel(table_name = webhook_configs, treat_none_as_null = true)]
pub struct SigningSecrets {
    pub signing_secret: Option<String>,
    pub previous_signing_secret: Option<String>,
    pub previous_signing_secret_until: Option<DateTime<Utc>>,
}

/// The writable fields of a config, for insert and for replace (its call settings and signing
/// secrets are written beside it: see [`CallSettingsColumns`] and [`SigningSecrets`]).
#[derive(Clone, Debug, Insertable, AsChangeset)]
#[diesel(table_name = webhook_configs, treat_none_as_null = true)]
pub struct ConfigForm {
    pub name: String,
    pub postback_url: Option<String>,
    pub chargeback_url: Option<String>,
    pub max_retries: Option<i32>,
    pub is_active: bool,
    pub max_per_second: Option<i32>,
    pub retry_base_delay_ms: Option<i64>,
    pub retry_max_delay_ms: Option<i64>,
    pub circuit_failure_threshold: Option<i32>,
    /// The SQL name of an [`EventOrdering`].
    pub ordering: &'static str,
}

// `QueueRow` with one group of `retry_N_*` fields per attempt slot, and the slot read back by
// its number. The slots are listed once, in the invocation below; diesel needs a field per
// column, and the check below ties the list to `ATTEMPT_SLOTS`.
macro_rules! queue_row {
    ($($n:literal => $started_at:ident $completed_at:ident $duration_ms:ident $http_status:ident
        $response_body:ident $error:ident;)*) => {
        /// A full `webhook_queue` row.
        #[derive(Clone, Debug, Queryable, QueryableByName, Selectable)]
        #[diesel(table_name = webhook_queue)]
        pub struct QueueRow {
            pub id: i64,
            pub queue_id: Uuid,
            pub event_type: EventType,
            pub event_id: Option<String>,
            pub config_id: i64,
            pub webhook_url: String,
            pub url_params: serde_json::Value,
            pub status: Status,
            pub retry_count: i32,
            pub max_retries: i32,
            pub next_retry_at: DateTime<Utc>,
            $(
                pub $started_at: Option<DateTime<Utc>>,
                pub $completed_at: Option<DateTime<Utc>>,
                pub $duration_ms: Option<i64>,
                pub $http_status: Option<i32>,
                pub $response_body: Option<String>,
                pub $error: Option<String>,
            )*
            pub worker_id: Option<String>,
            pub locked_at: Option<DateTime<Utc>>,
            pub lock_expires_at: Option<DateTime<Utc>>,
            pub created_at: DateTime<Utc>,
            pub updated_at: DateTime<Utc>,
            pub completed_at: Option<DateTime<Utc>>,
            pub deleted_at: Option<DateTime<Utc>>,
            pub held_reason: Option<HeldReason>,
            pub cancel_reason: Option<CancelReason>,
            pub released_by_operator_at: Option<DateTime<Utc>>,
            /// The method, body and headers filled at submit; `None` for a plain GET.
            pub request: Option<serde_json::Value>,
        }

        impl QueueRow {
            /// Slot `n` of the current cycle as an attempt labelled with `cycle`.
            fn attempt(&self, cycle: i32, n: i32) -> Attempt {
                match n {
                    $($n => Attempt {
                        cycle,
                        attempt: n,
                        started_at: self.$started_at,
                        completed_at: self.$completed_at,
                        duration_ms: self.$duration_ms,
                        http_status: self.$http_status,
                        response_body: self.$response_body.clone(),
                        error: self.$error.clone(),
                    },)*
                    _ => unreachable!("a row has {ATTEMPT_SLOTS} attempt slots"),
                }
            }
        }

        /// The columns the invocation names, slot by slot, for the test that checks them.
        #[cfg(test)]
        const DECLARED_SLOT_COLUMNS: &[[&str; 6]] = &[$([
            stringify!($started_at),
            stringify!($completed_at),
            stringify!($duration_ms),
            stringify!($http_status),
            stringify!($response_body),
            stringify!($error),
        ]),*];

        // The slots are numbered 0, 1, ... and there are `ATTEMPT_SLOTS` of them.
        const _: () = {
            let numbers = [$($n),*];
            assert!(numbers.len() == ATTEMPT_SLOTS as usize);
            let mut i = 0;
            while i < numbers.len() {
                assert!(numbers[i] == i as i32);
                i += 1;
            }
        };
    };
}

queue_row! {
    0 => retry_0_started_at retry_0_completed_at retry_0_duration_ms retry_0_http_status
        retry_0_response_body retry_0_error;
    1 => retry_1_started_at retry_1_completed_at retry_1_duration_ms retry_1_http_status
        retry_1_response_body retry_1_error;
    2 => retry_2_started_at retry_2_completed_at retry_2_duration_ms retry_2_http_status
        retry_2_response_body retry_2_error;
    3 => retry_3_started_at retry_3_completed_at retry_3_duration_ms retry_3_http_status
        retry_3_response_body retry_3_error;
    4 => retry_4_started_at retry_4_completed_at retry_4_duration_ms retry_4_http_status
        retry_4_response_body retry_4_error;
    5 => retry_5_started_at retry_5_completed_at retry_5_duration_ms retry_5_http_status
        retry_5_response_body retry_5_error;
    6 => retry_6_started_at retry_6_completed_at retry_6_duration_ms retry_6_http_status
        retry_6_response_body retry_6_error;
}

/// An archived attempt as `webhook_attempt_history` holds it (`cycle::archived` selects these
/// columns in this order); its start is never null there.
impl Queryable<ArchivedAttemptColumns, Pg> for Attempt {
    type Row = (
        i32,
        i32,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<i64>,
        Option<i32>,
        Option<String>,
        Option<String>,
    );

    fn build(row: Self::Row) -> deserialize::Result<Self> {
        let (
            cycle,
            attempt,
            started_at,
            completed_at,
            duration_ms,
            http_status,
            response_body,
            error,
        ) = row;
        Ok(Attempt {
            cycle,
            attempt,
            started_at: Some(started_at),
            completed_at,
            duration_ms,
            http_status,
            response_body,
            error,
        })
    }
}

/// The SQL types of an archived attempt's columns, in [`ARCHIVED_ATTEMPT`]'s order.
pub type ArchivedAttemptColumns = (
    sql_types::Int4,
    sql_types::Int4,
    sql_types::Timestamptz,
    sql_types::Nullable<sql_types::Timestamptz>,
    sql_types::Nullable<sql_types::Int8>,
    sql_types::Nullable<sql_types::Int4>,
    sql_types::Nullable<sql_types::Text>,
    sql_types::Nullable<sql_types::Text>,
);

/// The columns of `webhook_attempt_history` an [`Attempt`] is read from.
pub const ARCHIVED_ATTEMPT: (
    webhook_attempt_history::cycle,
    webhook_attempt_history::attempt,
    webhook_attempt_history::started_at,
    webhook_attempt_history::completed_at,
    webhook_attempt_history::duration_ms,
    webhook_attempt_history::http_status,
    webhook_attempt_history::response_body,
    webhook_attempt_history::error,
) = (
    webhook_attempt_history::cycle,
    webhook_attempt_history::attempt,
    webhook_attempt_history::started_at,
    webhook_attempt_history::completed_at,
    webhook_attempt_history::duration_ms,
    webhook_attempt_history::http_status,
    webhook_attempt_history::response_body,
    webhook_attempt_history::error,
);

impl QueueRow {
    /// Every attempt of the entry in order: the archived ones (which must come ordered by cycle
    /// and attempt) and then the current cycle's, numbered one past the last archived cycle.
    pub fn attempts_after(&self, mut archived: Vec<Attempt>) -> Vec<Attempt> {
        let current = archived.last().map_or(0, |a| a.cycle + 1);
        archived.extend(self.attempts(current));
        archived
    }

    /// The attempts of the current cycle, in order (a slot with no start time was never used),
    /// labelled with `cycle`.
    fn attempts(&self, cycle: i32) -> Vec<Attempt> {
        (0..ATTEMPT_SLOTS)
            .map(|n| self.attempt(cycle, n))
            .filter(Attempt::was_made)
            .collect()
    }

    /// The error of the latest attempt made, `None` when none was made or it succeeded.
    pub fn last_error(&self) -> Option<String> {
        (0..ATTEMPT_SLOTS)
            .rev()
            .map(|n| self.attempt(0, n))
            .find(Attempt::was_made)
            .and_then(|a| a.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::attempt_slots::each_slot_column;

    #[test]
    fn the_declared_slots_are_the_columns_the_statements_write() {
        let declared = DECLARED_SLOT_COLUMNS.concat().join(",");
        let written = each_slot_column(|n, field| format!("retry_{n}_{field}"), ",");
        assert_eq!(declared, written);
    }
}
