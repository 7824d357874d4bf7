//! Field errors rendered exactly like Kubernetes' `field.Error`.

use serde_json::Value;
use std::fmt;

/// The kind of a field error (Kubernetes `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Required value`
    Required,
    /// `Invalid value`
    Invalid,
    /// `Unsupported value`
    NotSupported,
    /// `Forbidden`
    Forbidden,
    /// `Too long`
    TooLong,
    /// `Duplicate value`
    Duplicate,
    /// `Not found`
    NotFound,
}

impl FieldErrorKind {
    /// The phrase Kubernetes prints for this kind.
    pub fn phrase(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::NotFound => "Not found",
        }
    }

    /// The `reason` used in a Status cause (`FieldValueInvalid`, ...).
    pub fn cause_reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }
}

/// One error about one field, e.g. `metadata.name: Invalid value: "Foo": a lowercase ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    /// Dotted path, e.g. `metadata.name` or `spec.containers[0].image`.
    pub field: String,
    /// The offending value, printed for `Invalid`/`NotSupported`/`Duplicate`.
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Invalid, field, Some(value), detail)
    }

    /// The message without the field prefix (`Invalid value: "x": detail`), as used in
    /// Status `details.causes[].message`.
    pub fn body(&self) -> String {
        todo!()
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// The message of a 422 Invalid Status: `Kind "name" is invalid: <err>` or with
/// several errors `Kind "name" is invalid: [<err1>, <err2>]`.
pub fn invalid_message(kind: &str, name: &str, errors: &[FieldError]) -> String {
    let _ = (kind, name, errors);
    todo!()
}
