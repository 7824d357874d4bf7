//! Label selectors and field selectors.

use serde_json::{Map, Value};
use std::fmt;

/// Why a selector could not be parsed or used. The server answers 400 with `to_string()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Syntax error in a label selector string.
    #[error("unable to parse requirement: {0}")]
    Parse(String),
    /// Invalid key or value in a requirement (label key/value rules).
    #[error("unable to parse requirement: {0}")]
    InvalidRequirement(String),
    /// Syntax error in a field selector string.
    #[error("invalid selector: '{0}'; can't understand '{1}'")]
    FieldSyntax(String, String),
    /// Field selector on a field the kind does not support.
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
    /// Malformed `LabelSelector` JSON (`matchLabels`/`matchExpressions`).
    #[error("invalid label selector: {0}")]
    InvalidJson(String),
}

/// A label selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value`
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>1` (integer comparison)
    GreaterThan,
    /// `key<1` (integer comparison)
    LessThan,
}

/// One requirement of a label selector. Values are sorted and deduplicated for `In`/`NotIn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

/// A parsed label selector: all requirements must match (AND). Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parse the `labelSelector` query syntax.
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        let _ = input;
        todo!()
    }

    /// Convert a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    /// `null` selects everything.
    pub fn from_label_selector_json(selector: &Value) -> Result<LabelSelector, SelectorError> {
        let _ = selector;
        todo!()
    }

    /// Whether the selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Does a label map match? Non-string label values never match values.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let _ = labels;
        todo!()
    }

    /// Match against an object's `metadata.labels`.
    pub fn matches_object(&self, object: &Value) -> bool {
        let _ = object;
        todo!()
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!()
    }
}

/// A field selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    DoubleEquals,
    NotEquals,
}

/// One requirement of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

/// A parsed field selector (AND of requirements).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parse the `fieldSelector` query syntax (`a=b,c!=d`, `\` escapes `,`, `=`, `!` and `\`).
    pub fn parse(input: &str) -> Result<FieldSelector, SelectorError> {
        let _ = input;
        todo!()
    }

    /// Check every field is supported for `group`/`kind` (see [`supported_field_labels`]);
    /// `extra` adds fields (e.g. a CRD's `selectableFields`).
    pub fn validate_for(
        &self,
        group: &str,
        kind: &str,
        extra: &[String],
    ) -> Result<(), SelectorError> {
        let _ = (group, kind, extra);
        todo!()
    }

    /// Does the object match? Missing fields compare as the empty string.
    pub fn matches(&self, object: &Value) -> bool {
        let _ = object;
        todo!()
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!()
    }
}

/// The field labels Kubernetes accepts in field selectors for `group`/`kind`
/// (`metadata.name` and `metadata.namespace` are always accepted).
pub fn supported_field_labels(group: &str, kind: &str) -> &'static [&'static str] {
    let _ = (group, kind);
    todo!()
}

/// The string value of a field label on an object, as Kubernetes computes it
/// (e.g. `spec.hostNetwork` → `"true"`, `source` → `source.component` for events).
pub fn field_label_value(object: &Value, field: &str) -> String {
    let _ = (object, field);
    todo!()
}
