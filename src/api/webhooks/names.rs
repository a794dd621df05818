//! The names the OpenAPI document shows for domain values.

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::domain::delivery::{HeldReason, Status};
use crate::domain::event::{EventType, MAX_PARAMS, MAX_PARAM_NAME_LEN, MAX_VALUE_LEN};
use crate::domain::order::{CancelReason, EventOrdering};

// ---------------------------------------------------------------------------------------------
// Names the document shows for domain values
// ---------------------------------------------------------------------------------------------

/// A string enum of `names`.
fn string_enum(names: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .into()
}

/// A unit type whose schema is the string enum of a domain enum's names, shown in the document
/// under `$shown`; fields of that enum name it in `#[schema(value_type = ...)]`.
macro_rules! name_schema {
    ($(#[$doc:meta])* $name:ident => $t:ty, $shown:literal) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string_enum(<$t>::ALL.map(<$t>::as_str))
            }
        }

        impl ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                $shown.into()
            }
        }
    };
}

name_schema!(
    /// `+credit` or `-debit`: the names of the domain's `EventType`s.
    EventTypeName => EventType, "EventType"
);
name_schema!(
    /// The names of the domain's delivery `Status`es.
    StatusName => Status, "Status"
);
name_schema!(
    /// The names of the domain's `HeldReason`s: why a pending entry is not called now.
    HeldReasonName => HeldReason, "HeldReason"
);
name_schema!(
    /// The names of the domain's `CancelReason`s: why webhookd cancelled an entry itself.
    CancelReasonName => CancelReason, "CancelReason"
);
name_schema!(
    /// `credit_before_debit` or `none`: the names of the domain's `EventOrdering`s.
    OrderingName => EventOrdering, "Ordering"
);

/// No U+0000 (which PostgreSQL text cannot hold): the pattern of every free-text string a
/// body carries.
pub const NO_NUL: &str = r"^[^\u0000]*$";

/// `url_params`: at most 64 keys of 1 to 64 characters of `A-Z a-z 0-9 _ . -`, each value a
/// string of at most 2048 characters (sent as it is), a number or a boolean (sent as its JSON
/// text).
pub struct UrlParamsSchema;

impl PartialSchema for UrlParamsSchema {
    fn schema() -> RefOr<Schema> {
        let string = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(MAX_VALUE_LEN))
            .pattern(Some(NO_NUL));
        let value = OneOfBuilder::new()
            .item(string)
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Boolean));
        let name = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^[A-Za-z0-9_.-]{{1,{MAX_PARAM_NAME_LEN}}}$")));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(MAX_PARAMS))
            .property_names(Some(name))
            .additional_properties(Some(Schema::from(value.build())))
            .into()
    }
}

impl ToSchema for UrlParamsSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "UrlParams".into()
    }
}
