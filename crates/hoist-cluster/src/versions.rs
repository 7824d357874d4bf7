//! Objects are stored once per group/resource; a read through a version presents it
//! with that version's `apiVersion` (no conversion beyond that: CRD versions share a schema).

use serde_json::Value;

use crate::registry::ResourceKind;

pub fn present(kind: &ResourceKind, mut obj: Value) -> Value {
    if obj.is_object() {
        obj["apiVersion"] = Value::String(kind.api_version());
    }
    obj
}
