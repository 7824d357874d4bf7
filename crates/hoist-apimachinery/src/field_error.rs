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
        let mut out = self.kind.phrase().to_string();
        match (self.kind, &self.value) {
            (
                FieldErrorKind::Required
                | FieldErrorKind::Forbidden
                | FieldErrorKind::TooLong
                | FieldErrorKind::NotFound,
                _,
            )
            | (_, None) => {}
            (_, Some(v)) => {
                out.push_str(": ");
                out.push_str(&go_value(v));
            }
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
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
    let errs: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let list = if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    };
    format!("{kind} {} is invalid: {list}", quote(name))
}

/// Go's `%q` for the strings we print (JSON string escaping is the same for printable text).
pub fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// How Kubernetes prints a bad value: strings quoted, numbers and booleans bare,
/// objects and lists as JSON.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}
