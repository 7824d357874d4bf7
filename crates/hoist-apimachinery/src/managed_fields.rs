//! Field sets (which fields a manager owns) and their `FieldsV1` JSON encoding.

use crate::merge_schema::MergeSchema;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// One step of a field path, ordered as in `FieldsV1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElement {
    /// `f:<name>`: a field of an object.
    Field(String),
    /// `k:{"name":"x"}`: an item of a map list, by its key fields (JSON, keys sorted).
    Key(String),
    /// `v:<json>`: an item of a set list, by its value (JSON).
    Value(String),
    /// `i:<n>`: an item of a list, by position.
    Index(usize),
}

impl PathElement {
    /// The `FieldsV1` key (`f:name`, `k:{...}`, `v:...`, `i:3`).
    pub fn encode(&self) -> String {
        todo!()
    }
    /// Parse a `FieldsV1` key.
    pub fn decode(key: &str) -> Result<PathElement, FieldsError> {
        let _ = key;
        todo!()
    }
}

/// Malformed `FieldsV1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fieldsV1: {0}")]
pub struct FieldsError(pub String);

/// A path of elements; displays as Kubernetes prints conflicts:
/// `.spec.template.spec.containers[name="nginx"].image`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FieldPath(pub Vec<PathElement>);

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!()
    }
}

/// A set of field paths as a tree: `members` are paths ending here, `children` go deeper.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSet {
    pub members: std::collections::BTreeSet<PathElement>,
    pub children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }
    /// Insert a full path.
    pub fn insert(&mut self, path: &[PathElement]) {
        let _ = path;
        todo!()
    }
    /// Whether `path` is a member.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        let _ = path;
        todo!()
    }
    /// All member paths, in order.
    pub fn paths(&self) -> Vec<FieldPath> {
        todo!()
    }
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let _ = other;
        todo!()
    }
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let _ = other;
        todo!()
    }
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let _ = other;
        todo!()
    }
    /// Encode as `FieldsV1` JSON (`{"f:spec":{"f:replicas":{}}}`).
    pub fn to_fields_v1(&self) -> Value {
        todo!()
    }
    /// Decode `FieldsV1` JSON.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldsError> {
        let _ = value;
        todo!()
    }
}

/// The fields an object specifies (leaves, atomic lists/maps, keyed items with `.`),
/// without `apiVersion`, `kind`, server-set metadata (`managedFields`, `resourceVersion`,
/// `uid`, `creationTimestamp`, `generation`, `selfLink`, `deletionTimestamp`,
/// `deletionGracePeriodSeconds`) and, when the schema says status is a subresource,
/// without `status`.
pub fn fields_of(object: &Value, schema: &dyn MergeSchema) -> FieldSet {
    let _ = (object, schema);
    todo!()
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedFieldsEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Parse one entry of `metadata.managedFields`.
    pub fn from_json(value: &Value) -> Result<ManagedFieldsEntry, FieldsError> {
        let _ = value;
        todo!()
    }
    /// Serialise as Kubernetes does (`fieldsType: FieldsV1`).
    pub fn to_json(&self) -> Value {
        todo!()
    }
    /// Whether `self` and `other` are the same manager identity (manager, operation,
    /// subresource, and apiVersion for `Update`).
    pub fn same_identity(&self, other: &ManagedFieldsEntry) -> bool {
        let _ = other;
        todo!()
    }
    /// How Kubernetes names this manager in conflict messages:
    /// `"kubectl"` for appliers, `"m" using apps/v1` for updaters.
    pub fn display_name(&self) -> String {
        todo!()
    }
}

/// Read `metadata.managedFields` of an object (missing → empty).
pub fn read_managed_fields(object: &Value) -> Result<Vec<ManagedFieldsEntry>, FieldsError> {
    let _ = object;
    todo!()
}

/// Write entries into `metadata.managedFields` (removing the field when empty).
pub fn write_managed_fields(object: &mut Value, entries: &[ManagedFieldsEntry]) {
    let _ = (object, entries);
    todo!()
}

#[allow(dead_code)]
fn _unused(_: Map<String, Value>) {}
