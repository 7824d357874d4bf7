//! Server-owned object fields: what create sets, what updates may not change, and the
//! per-kind defaults (namespaces, pods, CRDs).

use serde_json::{Map, Value, json};

use crate::clock;
use crate::machinery;
use crate::registry::ResourceKind;
use crate::status::{ApiError, ApiResult};

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    // getrandom only fails without an OS RNG; fall back to time-derived bytes then.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Checks the body is an object of this endpoint's kind (400 otherwise).
pub fn check_type(kind: &ResourceKind, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let k = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    // Internal group versions are accepted by Kubernetes for the same group.
    let group_of = |av: &str| {
        av.rsplit_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default()
    };
    if !av.is_empty()
        && (group_of(av) != kind.group || (kind.group.is_empty() && av != kind.version))
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    if !k.is_empty() && k != kind.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            kind.kind
        )));
    }
    for field in ["metadata", "spec", "status"] {
        if let Some(m) = obj.get(field)
            && !m.is_object()
            && !m.is_null()
            && !(field == "spec" && kind.custom)
        {
            return Err(ApiError::bad_request(format!("{field} must be an object")));
        }
    }
    Ok(())
}

fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

/// Fills the server-owned fields of a new object. `namespace` comes from the URL.
pub fn prepare_create(
    kind: &ResourceKind,
    namespace: Option<&str>,
    mut obj: Value,
) -> ApiResult<Value> {
    check_type(kind, &obj)?;
    obj["apiVersion"] = Value::String(kind.api_version());
    obj["kind"] = Value::String(kind.kind.clone());
    crate::workload_spec::apply_defaults(kind, &mut obj);
    crate::workload_spec::validate(kind, &obj)?;
    let meta = metadata_mut(&mut obj);
    match (namespace, meta.get("namespace").and_then(Value::as_str)) {
        (Some(url), Some(body)) if !body.is_empty() && body != url => {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({body}) does not match the namespace sent on the request ({url})"
            )));
        }
        (Some(url), _) => {
            meta.insert("namespace".into(), Value::String(url.to_string()));
        }
        (None, _) => {
            meta.remove("namespace");
        }
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = if name.is_empty() {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => machinery::generate_name(prefix)?,
            _ => {
                return Err(ApiError::invalid(
                    &kind.kind,
                    "",
                    vec![(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
        }
    } else {
        name
    };
    meta.insert("name".into(), Value::String(name.clone()));
    meta.insert("uid".into(), Value::String(new_uid()));
    meta.insert(
        "creationTimestamp".into(),
        Value::String(clock::now_rfc3339()),
    );
    if kind.tracks_generation() {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    machinery::validate_name(kind, &name)?;
    if kind.status_subresource
        && kind.custom
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    apply_kind_defaults(kind, &mut obj);
    Ok(obj)
}

/// Defaults the real apiserver (or its admission) sets on create.
fn apply_kind_defaults(kind: &ResourceKind, obj: &mut Value) {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Namespace") => {
            let name = name_of(obj).to_string();
            let meta = metadata_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), Value::String(name));
            }
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Secret") => fold_string_data(obj),
        ("", "Pod") => {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
            let now = clock::now_rfc3339();
            obj["status"] = json!({
                "acceptedNames": names,
                "storedVersions": obj.pointer("/spec/versions").and_then(Value::as_array)
                    .map(|vs| vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                        .filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>()).unwrap_or_default(),
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
            });
        }
        _ => {}
    }
}

/// `stringData` is write-only: merged into `data` (base64) as the apiserver does.
pub fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let Some(sd) = sd.as_object().cloned() else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in sd {
        let text = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        obj["data"][k] = Value::String(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// Builds the stored object for an update of `current` with `new` (body of PUT or the
/// result of a patch). `sub` is `Some("status")` for the status subresource.
pub fn merge_update(
    kind: &ResourceKind,
    current: &Value,
    mut new: Value,
    sub: Option<&str>,
) -> ApiResult<Value> {
    check_type(kind, &new)?;
    if sub == Some("status") {
        let mut out = current.clone();
        match new.get("status") {
            Some(s) => out["status"] = s.clone(),
            None => {
                if let Some(o) = out.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        return Ok(out);
    }
    new["apiVersion"] = Value::String(kind.api_version());
    new["kind"] = Value::String(kind.kind.clone());
    crate::workload_spec::apply_defaults(kind, &mut new);
    crate::workload_spec::validate(kind, &new)?;
    if kind.group.is_empty() && kind.kind == "Secret" {
        fold_string_data(&mut new);
    }
    let cur_meta = current.get("metadata").cloned().unwrap_or(json!({}));
    let meta = metadata_mut(&mut new);
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match cur_meta.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    // Main-resource writes never change status when status is a subresource.
    if kind.status_subresource {
        match current.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if kind.tracks_generation() && machinery::spec_changed(current, &new)? {
        let g = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        new["metadata"]["generation"] = json!(g + 1);
    }
    Ok(new)
}

/// A stale `metadata.resourceVersion` in an update is a 409 Conflict.
pub fn check_precondition(kind: &ResourceKind, current: &Value, new: &Value) -> ApiResult<()> {
    let sent = meta_str(new, "resourceVersion").unwrap_or("");
    if !sent.is_empty() && Some(sent) != meta_str(current, "resourceVersion") {
        return Err(ApiError::conflict(
            &kind.group,
            &kind.plural,
            name_of(current),
        ));
    }
    Ok(())
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// Top-level fields a built-in kind has (besides apiVersion, kind, metadata); `None` for
/// custom resources, whose schema decides.
fn known_top_level(kind: &ResourceKind) -> Option<&'static [&'static str]> {
    if kind.custom {
        return None;
    }
    Some(match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "ConfigMap") => &["data", "binaryData", "immutable"],
        ("", "Secret") => &["data", "stringData", "type", "immutable"],
        ("", "ServiceAccount") => &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        ("", "Endpoints") => &["subsets"],
        ("", "Event") => &[
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ],
        ("rbac.authorization.k8s.io", "Role") => &["rules"],
        ("rbac.authorization.k8s.io", "ClusterRole") => &["rules", "aggregationRule"],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            &["subjects", "roleRef"]
        }
        ("discovery.k8s.io", "EndpointSlice") => &["addressType", "endpoints", "ports"],
        ("apps", "ControllerRevision") => &["data", "revision"],
        _ => &["spec", "status"],
    })
}

const METADATA_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Removes top-level and metadata fields a built-in kind does not have (as decoding into
/// the Go types does) and returns their paths, for `fieldValidation=Strict`.
pub fn drop_unknown_fields(kind: &ResourceKind, obj: &mut Value) -> Vec<String> {
    let Some(known) = known_top_level(kind) else {
        return Vec::new();
    };
    let mut dropped = Vec::new();
    if let Some(o) = obj.as_object_mut() {
        o.retain(|k, _| {
            let keep = matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                || known.contains(&k.as_str());
            if !keep {
                dropped.push(k.clone());
            }
            keep
        });
    }
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, _| {
            let keep = METADATA_FIELDS.contains(&k.as_str());
            if !keep {
                dropped.push(format!("metadata.{k}"));
            }
            keep
        });
    }
    dropped
}
