//! The names the OpenAPI document shows for domain values.

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::domain::delivery::{HeldReason, Status};
use crate::domain::event::{EventType, MAX_PARAMS, MAX_PARAM_NAME_LEN, MAX_VALUE_LEN};
use crate::domain::order::CancelReason;

// ---------------------------------------------------------------------------------------------
// Names the document shows for domain values
// ---------------------------------------------------------------------------------------------

/// A string enum of `names`.
pub(crate) fn string_enum(names: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .into()
}

/// `+credit` or `-debit`: the names of the domain's `EventType`s.
pub struct EventTypeName;

impl PartialSchema for EventTypeName {
    fn schema() -> RefOr<Schema> {
        string_enum(EventType::ALL.map(EventType::as_str))
    }
}

impl ToSchema for EventTypeName {
    fn name() -> std::borrow::Cow<'static, str> {
        "EventType".into()
    }
}

/// The names of the domain's delivery `Status`es.
pub struct StatusName;

impl PartialSchema for StatusName {
    fn schema() -> RefOr<Schema> {
        string_enum(Status::ALL.map(Status::as_str))
    }
}

impl ToSchema for StatusName {
    fn name() -> std::borrow::Cow<'static, str> {
        "Status".into()
    }
}

/// The names of the domain's `HeldReason`s: why a pending entry is not called now.
pub struct HeldReasonName;

impl PartialSchema for HeldReasonName {
    fn schema() -> RefOr<Schema> {
        string_enum(HeldReason::ALL.map(HeldReason::as_str))
    }
}

impl ToSchema for HeldReasonName {
    fn name() -> std::borrow::Cow<'static, str> {
        "HeldReason".into()
    }
}

/// The names of the domain's `CancelReason`s: why webhookd cancelled an entry itself.
pub struct CancelReasonName;

impl PartialSchema for CancelReasonName {
    fn schema() -> RefOr<Schema> {
        string_enum(CancelReason::ALL.map(CancelReason::as_str))
    }
}

impl ToSchema for CancelReasonName {
    fn name() -> std::borrow::Cow<'static, str> {
        "CancelReason".into()
    }
}

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
