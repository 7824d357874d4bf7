//! Field sets (which fields a manager owns) and their `FieldsV1` JSON encoding.
//!
//! A [`FieldSet`] is a tree like structured-merge-diff's: `members` are paths that end at
//! this node, `children` go deeper. `FieldsV1` writes a member as `{}` and a node that is
//! both a member and has children with a `"."` key.

use crate::merge_schema::{ListType, MergeSchema};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One step of a field path, ordered as in `FieldsV1` (fields, then keys, values, indexes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// `f:<name>`: a field of an object.
    Field(String),
    /// `k:{"name":"x"}`: an item of a map list, by its key fields (canonical JSON, keys sorted).
    Key(String),
    /// `v:<json>`: an item of a set list, by its value (canonical JSON).
    Value(String),
    /// `i:<n>`: an item of a list, by position.
    Index(usize),
}

/// Serialise JSON with object keys sorted (canonical form for `k:` and `v:`).
fn canonical(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

impl PathElement {
    /// A `k:` element from the key fields of a list item.
    pub fn key(fields: &Map<String, Value>) -> PathElement {
        PathElement::Key(canonical(&Value::Object(fields.clone())))
    }
    /// A `v:` element for a set item.
    pub fn value(v: &Value) -> PathElement {
        PathElement::Value(canonical(v))
    }

    /// The `FieldsV1` key (`f:name`, `k:{...}`, `v:...`, `i:3`).
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parse a `FieldsV1` key.
    pub fn decode(key: &str) -> Result<PathElement, FieldsError> {
        let bad = |why: &str| FieldsError(format!("{key:?}: {why}"));
        let (prefix, rest) = key
            .split_once(':')
            .ok_or_else(|| bad("expected a prefix f:, k:, v: or i:"))?;
        match prefix {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(m)) => Ok(PathElement::key(&m)),
                _ => Err(bad("a k: key must be a JSON object")),
            },
            "v" => serde_json::from_str::<Value>(rest)
                .map(|v| PathElement::value(&v))
                .map_err(|_| bad("a v: value must be JSON")),
            "i" => rest
                .parse::<usize>()
                .map(PathElement::Index)
                .map_err(|_| bad("an i: index must be a non-negative integer")),
            _ => Err(bad("unknown prefix")),
        }
    }

    /// Find the child this element designates inside `v`.
    pub fn lookup<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        match (self, v) {
            (PathElement::Field(f), Value::Object(m)) => m.get(f),
            (PathElement::Key(k), Value::Array(items)) => {
                let key: Map<String, Value> = serde_json::from_str(k).ok()?;
                items.iter().find(|i| item_matches_key(i, &key))
            }
            (PathElement::Value(want), Value::Array(items)) => {
                items.iter().find(|i| canonical(i) == *want)
            }
            (PathElement::Index(n), Value::Array(items)) => items.get(*n),
            _ => None,
        }
    }
}

fn item_matches_key(item: &Value, key: &Map<String, Value>) -> bool {
    item.as_object()
        .is_some_and(|m| key.iter().all(|(k, v)| m.get(k) == Some(v)))
}

/// Malformed `FieldsV1` or `managedFields`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid managedFields: {0}")]
pub struct FieldsError(pub String);

/// A path of elements; displays as Kubernetes prints conflicts:
/// `.spec.template.spec.containers[name="nginx"].image`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct FieldPath(pub Vec<PathElement>);

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for pe in &self.0 {
            match pe {
                PathElement::Field(name) => write!(f, ".{name}")?,
                PathElement::Key(k) => {
                    let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, "[{}]", parts.join(","))?
                }
                PathElement::Value(v) => write!(f, "[={v}]")?,
                PathElement::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

impl FieldPath {
    /// The value at this path inside `v`.
    pub fn lookup<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(v, |cur, pe| pe.lookup(cur))
    }
}

/// A set of field paths as a tree: `members` are paths ending here, `children` go deeper.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSet {
    pub members: BTreeSet<PathElement>,
    pub children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Insert a full path (an empty path is ignored).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether any member is `path` or lies below it.
    pub fn has_prefix(&self, path: &[PathElement]) -> bool {
        match path {
            [] => !self.is_empty(),
            [last] => {
                self.members.contains(last)
                    || self.children.get(last).is_some_and(|c| !c.is_empty())
            }
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has_prefix(rest)),
        }
    }

    /// All member paths, in order (a parent before its children).
    pub fn paths(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<FieldPath>) {
        let keys: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in keys {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(FieldPath(prefix.clone()));
            }
            if let Some(c) = self.children.get(pe) {
                c.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    fn prune_empty(mut self) -> FieldSet {
        self.children = std::mem::take(&mut self.children)
            .into_iter()
            .map(|(k, c)| (k, c.prune_empty()))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        self
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (k, c) in &other.children {
            let merged = match out.children.get(k) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(k.clone(), merged);
        }
        out.prune_empty()
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            members: self.members.difference(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            out.children.insert(k.clone(), d);
        }
        out.prune_empty()
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            members: self.members.intersection(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                out.children.insert(k.clone(), c.intersection(o));
            }
        }
        out.prune_empty()
    }

    /// Encode as `FieldsV1` JSON (`{"f:spec":{"f:replicas":{}}}`).
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        let keys: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in keys {
            let child = self.children.get(pe).filter(|c| !c.is_empty());
            let v = match child {
                Some(c) => {
                    let Value::Object(inner) = c.to_fields_v1() else {
                        unreachable!("to_fields_v1 returns an object")
                    };
                    let mut m = Map::new();
                    if self.members.contains(pe) {
                        m.insert(".".to_string(), Value::Object(Map::new()));
                    }
                    m.extend(inner);
                    Value::Object(m)
                }
                None => Value::Object(Map::new()),
            };
            out.insert(pe.encode(), v);
        }
        Value::Object(out)
    }

    /// Decode `FieldsV1` JSON.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldsError> {
        let Value::Object(m) = value else {
            return Err(FieldsError(format!(
                "fieldsV1 must be an object, got {value}"
            )));
        };
        let mut set = FieldSet::default();
        for (k, v) in m {
            if k == "." {
                continue;
            }
            let pe = PathElement::decode(k)?;
            let Value::Object(inner) = v else {
                return Err(FieldsError(format!("{k:?} must map to an object, got {v}")));
            };
            if inner.is_empty() || inner.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let child = FieldSet::from_fields_v1(v)?;
            if !child.is_empty() {
                set.children.insert(pe, child);
            }
        }
        Ok(set)
    }
}

/// Which part of an object a field set covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource: `status` is left out when it is a subresource.
    Main,
    /// The status subresource: only `status`.
    Status,
    /// Everything (used to drop ownership of fields that no longer exist).
    All,
}

impl Scope {
    /// The scope for a write to `subresource` (`None` = main resource).
    pub fn for_subresource(subresource: Option<&str>) -> Scope {
        match subresource {
            None => Scope::Main,
            Some("status") => Scope::Status,
            Some(_) => Scope::All,
        }
    }
}

/// Metadata fields the server owns; never part of a manager's field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Whether a top-level or metadata field is outside `scope` or server-owned.
pub(crate) fn excluded(path: &[&str], scope: Scope, schema: &dyn MergeSchema) -> bool {
    match path {
        ["apiVersion" | "kind"] => true,
        ["metadata", f] => SERVER_METADATA.contains(f),
        ["status", ..] => scope == Scope::Main && schema.has_status_subresource(),
        [top, ..] => scope == Scope::Status && *top != "status",
        [] => false,
    }
}

/// The fields an object specifies (leaves, atomic lists/maps, keyed items with `.`),
/// without `apiVersion`, `kind`, server-set metadata (`name`, `namespace`, `managedFields`,
/// `resourceVersion`, `uid`, `creationTimestamp`, `generation`, ...) and, when the schema
/// says status is a subresource, without `status`.
pub fn fields_of(object: &Value, schema: &dyn MergeSchema) -> FieldSet {
    fields_in_scope(object, schema, Scope::Main)
}

/// [`fields_of`] for a given [`Scope`].
pub fn fields_in_scope(object: &Value, schema: &dyn MergeSchema, scope: Scope) -> FieldSet {
    let mut path = Vec::new();
    match object {
        Value::Object(m) => map_fields(m, &mut path, schema, scope),
        _ => FieldSet::default(),
    }
}

/// The key element of a map-list item, or None if it has none of the key fields.
pub(crate) fn item_key_element(item: &Value, keys: &[String]) -> Option<PathElement> {
    let m = item.as_object()?;
    let key: Map<String, Value> = keys
        .iter()
        .filter_map(|k| m.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    if key.is_empty() {
        None
    } else {
        Some(PathElement::key(&key))
    }
}

fn map_fields<'a>(
    m: &'a Map<String, Value>,
    path: &mut Vec<&'a str>,
    schema: &dyn MergeSchema,
    scope: Scope,
) -> FieldSet {
    let mut set = FieldSet::default();
    for (k, v) in m {
        path.push(k.as_str());
        if !excluded(path, scope, schema) {
            let pe = PathElement::Field(k.clone());
            match value_fields(v, path, schema, scope) {
                Some(child) if !child.is_empty() => {
                    set.children.insert(pe, child);
                }
                _ => {
                    // `metadata: {}` after exclusions owns nothing; other empties are leaves.
                    if !(path.len() == 1 && k == "metadata" && v.is_object()) {
                        set.members.insert(pe);
                    }
                }
            }
        }
        path.pop();
    }
    set
}

/// The child set of a value, or None if the value is a leaf.
fn value_fields<'a>(
    v: &'a Value,
    path: &mut Vec<&'a str>,
    schema: &dyn MergeSchema,
    scope: Scope,
) -> Option<FieldSet> {
    match v {
        Value::Object(m) if !m.is_empty() && !schema.is_atomic_map(path) => {
            Some(map_fields(m, path, schema, scope))
        }
        Value::Array(items) if !items.is_empty() => match schema.list_type(path) {
            ListType::Atomic => None,
            ListType::Set => {
                if items.iter().any(|i| i.is_object() || i.is_array()) {
                    return None;
                }
                Some(FieldSet {
                    members: items.iter().map(PathElement::value).collect(),
                    children: BTreeMap::new(),
                })
            }
            ListType::Map { keys } => {
                let elems: Option<Vec<PathElement>> =
                    items.iter().map(|i| item_key_element(i, &keys)).collect();
                let elems = elems?;
                let mut set = FieldSet::default();
                for (item, pe) in items.iter().zip(elems) {
                    set.members.insert(pe.clone());
                    if let Value::Object(im) = item {
                        let child = map_fields(im, path, schema, scope);
                        if !child.is_empty() {
                            set.children.insert(pe, child);
                        }
                    }
                }
                Some(set)
            }
        },
        _ => None,
    }
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
        let Value::Object(m) = value else {
            return Err(FieldsError(format!(
                "an entry must be an object, got {value}"
            )));
        };
        let s = |k: &str| -> Result<Option<String>, FieldsError> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(FieldsError(format!("{k} must be a string, got {other}"))),
            }
        };
        if let Some(t) = s("fieldsType")?
            && t != "FieldsV1"
        {
            return Err(FieldsError(format!(
                "fieldsType must be \"FieldsV1\", got {t:?}"
            )));
        }
        let operation = s("operation")?.unwrap_or_default();
        if !matches!(operation.as_str(), "Apply" | "Update") {
            return Err(FieldsError(format!(
                "operation must be \"Apply\" or \"Update\", got {operation:?}"
            )));
        }
        let fields = match m.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(v) => FieldSet::from_fields_v1(v)?,
        };
        Ok(ManagedFieldsEntry {
            manager: s("manager")?.unwrap_or_default(),
            operation,
            api_version: s("apiVersion")?.unwrap_or_default(),
            time: s("time")?,
            subresource: s("subresource")?.filter(|s| !s.is_empty()),
            fields,
        })
    }

    /// Serialise as Kubernetes does (`fieldsType: FieldsV1`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), Value::String(s.clone()));
        }
        Value::Object(m)
    }

    /// Whether `self` and `other` are the same manager identity (manager, operation,
    /// subresource, and apiVersion for `Update`).
    pub fn same_identity(&self, other: &ManagedFieldsEntry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }

    /// How Kubernetes names this manager in conflict messages:
    /// `"kubectl"` for appliers, `"m" using apps/v1` for updaters.
    pub fn display_name(&self) -> String {
        let mut out = crate::field_error::quote(&self.manager);
        if let Some(s) = &self.subresource {
            out.push_str(&format!(
                " with subresource {}",
                crate::field_error::quote(s)
            ));
        }
        if self.operation == "Update" {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

/// Read `metadata.managedFields` of an object (missing → empty).
pub fn read_managed_fields(object: &Value) -> Result<Vec<ManagedFieldsEntry>, FieldsError> {
    match object.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(ManagedFieldsEntry::from_json).collect(),
        Some(other) => Err(FieldsError(format!(
            "metadata.managedFields must be a list, got {other}"
        ))),
    }
}

/// Sort entries as Kubernetes does: `Apply` before `Update`, then by time, manager,
/// apiVersion and subresource.
pub fn sort_entries(entries: &mut [ManagedFieldsEntry]) {
    entries.sort_by(|p, q| {
        p.operation
            .cmp(&q.operation)
            .then_with(|| p.time.cmp(&q.time))
            .then_with(|| p.manager.cmp(&q.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.subresource.cmp(&q.subresource))
    });
}

/// Write entries into `metadata.managedFields` (removing the field when empty).
/// Does nothing if `object` is not an object.
pub fn write_managed_fields(object: &mut Value, entries: &[ManagedFieldsEntry]) {
    let Value::Object(obj) = object else { return };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Value::Object(meta) = meta else { return };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(ManagedFieldsEntry::to_json).collect()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge_schema::BuiltinMergeSchema;
    use serde_json::json;

    fn deploy() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "5", "labels": {"app": "web"}, "finalizers": ["x"]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "app", "image": "a:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
            "status": {"replicas": 2}
        })
    }

    #[test]
    fn fields_of_a_deployment_match_kubernetes_shape() {
        let set = fields_of(&deploy(), &BuiltinMergeSchema::new("apps", "Deployment"));
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"x\"": {}}, "f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}}
                    }}}}
                }
            })
        );
        let paths: Vec<String> = set.paths().iter().map(ToString::to_string).collect();
        assert!(
            paths.contains(&".spec.template.spec.containers[name=\"app\"].image".to_string()),
            "{paths:?}"
        );
        assert!(paths.contains(&".spec.template.spec.containers[name=\"app\"].ports[containerPort=80,protocol=\"TCP\"]".to_string()), "{paths:?}");
        assert!(
            paths.contains(&".metadata.finalizers[=\"x\"]".to_string()),
            "{paths:?}"
        );
    }

    #[test]
    fn status_is_left_out_only_with_a_status_subresource() {
        let s = crate::merge_schema::CrdMergeSchema {
            schema: None,
            status_subresource: false,
        };
        let set = fields_of(
            &json!({"apiVersion": "x/v1", "kind": "W", "status": {"a": 1}}),
            &s,
        );
        assert!(set.contains(&[
            PathElement::Field("status".into()),
            PathElement::Field("a".into())
        ]));
        let s = crate::merge_schema::CrdMergeSchema {
            schema: None,
            status_subresource: true,
        };
        assert!(fields_of(&json!({"status": {"a": 1}}), &s).is_empty());
        assert!(
            !fields_in_scope(
                &json!({"status": {"a": 1}, "spec": {"b": 1}}),
                &s,
                Scope::Status
            )
            .has_prefix(&[PathElement::Field("spec".into())])
        );
    }

    #[test]
    fn fields_v1_decode_accepts_kubernetes_output() {
        let v = json!({"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                       "f:spec": {"f:ports": {"k:{\"protocol\":\"TCP\",\"port\":80}": {".": {}, "f:port": {}}}}});
        let set = FieldSet::from_fields_v1(&v).unwrap();
        assert!(set.contains(&[
            PathElement::Field("metadata".into()),
            PathElement::Field("annotations".into())
        ]));
        // Keys are canonicalised (sorted) so both spellings are the same element.
        let k = PathElement::decode("k:{\"port\":80,\"protocol\":\"TCP\"}").unwrap();
        assert!(set.contains(&[
            PathElement::Field("spec".into()),
            PathElement::Field("ports".into()),
            k
        ]));
        let again = FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap();
        assert_eq!(again, set);
        for bad in [
            json!([]),
            json!({"x:y": {}}),
            json!({"f:a": 1}),
            json!({"k:[1]": {}}),
            json!({"i:-1": {}}),
            json!({"nocolon": {}}),
        ] {
            assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_algebra() {
        let a =
            FieldSet::from_fields_v1(&json!({"f:a": {}, "f:b": {"f:c": {}, "f:d": {}}})).unwrap();
        let b = FieldSet::from_fields_v1(&json!({"f:b": {"f:c": {}}, "f:e": {}})).unwrap();
        assert_eq!(
            a.difference(&b).to_fields_v1(),
            json!({"f:a": {}, "f:b": {"f:d": {}}})
        );
        assert_eq!(
            a.intersection(&b).to_fields_v1(),
            json!({"f:b": {"f:c": {}}})
        );
        assert_eq!(
            a.union(&b).to_fields_v1(),
            json!({"f:a": {}, "f:b": {"f:c": {}, "f:d": {}}, "f:e": {}})
        );
        assert!(a.has_prefix(&[PathElement::Field("b".into())]));
        assert!(!a.has_prefix(&[PathElement::Field("e".into())]));
    }

    #[test]
    fn entries_round_trip_and_display() {
        let e = json!({"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "apps/v1",
                       "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}});
        let parsed = ManagedFieldsEntry::from_json(&e).unwrap();
        assert_eq!(parsed.to_json(), e);
        assert_eq!(
            parsed.display_name(),
            "\"kubectl-client-side-apply\" using apps/v1"
        );
        let a = ManagedFieldsEntry {
            operation: "Apply".into(),
            manager: "kubectl".into(),
            subresource: Some("status".into()),
            ..parsed.clone()
        };
        assert_eq!(a.display_name(), "\"kubectl\" with subresource \"status\"");
        assert!(ManagedFieldsEntry::from_json(&json!({"operation": "Delete"})).is_err());
        assert!(
            ManagedFieldsEntry::from_json(&json!({"operation": "Apply", "fieldsType": "FieldsV2"}))
                .is_err()
        );
        let mut obj = json!({"metadata": {}});
        write_managed_fields(&mut obj, std::slice::from_ref(&parsed));
        assert_eq!(read_managed_fields(&obj).unwrap(), vec![parsed]);
        write_managed_fields(&mut obj, &[]);
        assert_eq!(obj, json!({"metadata": {}}));
    }
}
