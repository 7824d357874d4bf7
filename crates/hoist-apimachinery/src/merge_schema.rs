//! Which lists are maps (merged by key), sets or atomic, and which structs are atomic.
//!
//! Strategic merge patch and server-side apply both need this. Built-in kinds use the
//! Kubernetes Go struct tags (`patchMergeKey`, `listType`, `listMapKey`); custom resources
//! follow their OpenAPI schema (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`), defaulting to atomic lists. Note that Kubernetes rejects
//! strategic merge patch for custom resources (415); the server must do the same and
//! only use [`CrdMergeSchema`] for server-side apply.

use serde_json::Value;

/// How a list at some path is merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// Primitive items, merged as a set (e.g. `metadata.finalizers`).
    Set,
    /// Object items identified by `keys` (the first key is the strategic merge key).
    Map { keys: Vec<String> },
}

/// Path: field names from the object root, list items skipped
/// (e.g. `["spec", "template", "spec", "containers", "ports"]`).
pub trait MergeSchema {
    /// The list type of the list at `path`.
    fn list_type(&self, path: &[&str]) -> ListType;
    /// Whether the object at `path` is atomic (replaced whole, owned as a leaf).
    fn is_atomic_map(&self, path: &[&str]) -> bool {
        let _ = path;
        false
    }
    /// Whether `status` is a subresource (so main-resource writes ignore it).
    fn has_status_subresource(&self) -> bool {
        true
    }
}

/// Merge rules of built-in kinds (core/v1, apps/v1, batch/v1, ...), by group and kind,
/// taken from the Kubernetes API types' `patchMergeKey`/`listType`/`listMapKey` tags.
#[derive(Debug, Clone)]
pub struct BuiltinMergeSchema {
    group: String,
    kind: String,
}

fn map(keys: &[&str]) -> ListType {
    ListType::Map {
        keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

/// Rules for lists in `metadata` (shared by every kind, and by pod templates).
fn metadata_list(rest: &[&str]) -> ListType {
    match rest {
        ["finalizers"] => ListType::Set,
        ["ownerReferences"] => map(&["uid"]),
        _ => ListType::Atomic,
    }
}

/// Rules for lists inside a PodSpec (`rest` is relative to the PodSpec).
fn pod_spec_list(rest: &[&str]) -> ListType {
    match rest {
        ["containers" | "initContainers" | "ephemeralContainers"] => map(&["name"]),
        [
            "containers" | "initContainers" | "ephemeralContainers",
            "ports",
        ] => map(&["containerPort", "protocol"]),
        [
            "containers" | "initContainers" | "ephemeralContainers",
            "env",
        ] => map(&["name"]),
        [
            "containers" | "initContainers" | "ephemeralContainers",
            "volumeMounts",
        ] => map(&["mountPath"]),
        [
            "containers" | "initContainers" | "ephemeralContainers",
            "volumeDevices",
        ] => map(&["devicePath"]),
        [
            "containers" | "initContainers" | "ephemeralContainers",
            "resizePolicy",
        ] => ListType::Atomic,
        ["volumes"] => map(&["name"]),
        ["imagePullSecrets"] => map(&["name"]),
        ["hostAliases"] => map(&["ip"]),
        ["topologySpreadConstraints"] => map(&["topologyKey", "whenUnsatisfiable"]),
        ["schedulingGates"] => map(&["name"]),
        ["resourceClaims"] => map(&["name"]),
        _ => ListType::Atomic,
    }
}

impl BuiltinMergeSchema {
    /// Rules for `group`/`kind` (group `""` for core). Unknown kinds get metadata rules only.
    pub fn new(group: &str, kind: &str) -> Self {
        BuiltinMergeSchema {
            group: group.to_string(),
            kind: kind.to_string(),
        }
    }

    /// Rules for an object's `apiVersion`/`kind`.
    pub fn for_object(object: &Value) -> Self {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        Self::new(group, kind)
    }

    /// Where the pod template's PodSpec and ObjectMeta live for this kind.
    fn pod_template_prefix(&self) -> Option<&'static [&'static str]> {
        match (self.group.as_str(), self.kind.as_str()) {
            ("", "Pod") => Some(&[]),
            ("", "PodTemplate") => Some(&["template"]),
            ("", "ReplicationController")
            | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
            | ("batch", "Job") => Some(&["spec", "template"]),
            ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template"]),
            _ => None,
        }
    }

    fn kind_list(&self, path: &[&str]) -> ListType {
        let with_conditions = |path: &[&str]| match path {
            ["status", "conditions"] => Some(map(&["type"])),
            _ => None,
        };
        match (self.group.as_str(), self.kind.as_str(), path) {
            ("", "Service", ["spec", "ports"]) => map(&["port", "protocol"]),
            ("", "ServiceAccount", ["secrets"]) => map(&["name"]),
            ("", "Pod", ["status", "podIPs"]) => map(&["ip"]),
            ("", "Node", ["status", "addresses"]) => map(&["type"]),
            (
                "",
                "Node" | "Pod" | "Namespace" | "PersistentVolumeClaim" | "ReplicationController",
                p,
            )
            | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet", p)
            | ("batch", "Job", p) => with_conditions(p).unwrap_or(ListType::Atomic),
            _ => ListType::Atomic,
        }
    }
}

impl MergeSchema for BuiltinMergeSchema {
    fn list_type(&self, path: &[&str]) -> ListType {
        if let ["metadata", rest @ ..] = path {
            return metadata_list(rest);
        }
        if let Some(rest) = self
            .pod_template_prefix()
            .and_then(|prefix| path.strip_prefix(prefix))
        {
            if let ["spec", rest @ ..] = rest {
                return pod_spec_list(rest);
            }
            if let ["metadata", rest @ ..] = rest {
                return metadata_list(rest);
            }
        }
        self.kind_list(path)
    }

    fn is_atomic_map(&self, path: &[&str]) -> bool {
        // LabelSelector is `structType=atomic`; Service's selector is `mapType=atomic`.
        matches!(
            (self.group.as_str(), self.kind.as_str(), path),
            (
                "apps",
                "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet",
                ["spec", "selector"]
            ) | ("batch", "Job", ["spec", "selector"])
                | (
                    "",
                    "Service" | "ReplicationController",
                    ["spec", "selector"]
                )
        )
    }
}

/// Merge rules of a custom resource from its CRD version's `openAPIV3Schema`
/// (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`).
/// Without a schema, or where the schema says nothing, lists are atomic as in Kubernetes.
#[derive(Debug, Clone, Default)]
pub struct CrdMergeSchema {
    pub schema: Option<Value>,
    pub status_subresource: bool,
}

impl CrdMergeSchema {
    /// Find the schema node at `path` (list items are stepped through implicitly).
    fn node(&self, path: &[&str]) -> Option<&Value> {
        let mut cur = self.schema.as_ref()?;
        for part in path {
            if cur.get("type").and_then(Value::as_str) == Some("array") {
                cur = cur.get("items")?;
            }
            cur = match cur.get("properties").and_then(|p| p.get(*part)) {
                Some(next) => next,
                None => match cur.get("additionalProperties") {
                    Some(ap @ Value::Object(_)) => ap,
                    _ => return None,
                },
            };
        }
        Some(cur)
    }
}

impl MergeSchema for CrdMergeSchema {
    fn list_type(&self, path: &[&str]) -> ListType {
        if let ["metadata", rest @ ..] = path {
            return metadata_list(rest);
        }
        let Some(node) = self.node(path) else {
            return ListType::Atomic;
        };
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => {
                let keys: Vec<String> = node
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|ks| {
                        ks.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                if keys.is_empty() {
                    ListType::Atomic
                } else {
                    ListType::Map { keys }
                }
            }
            _ => ListType::Atomic,
        }
    }

    fn is_atomic_map(&self, path: &[&str]) -> bool {
        if path.first() == Some(&"metadata") {
            return false;
        }
        self.node(path)
            .and_then(|n| n.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            == Some("atomic")
    }

    fn has_status_subresource(&self) -> bool {
        self.status_subresource
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_rules() {
        let d = BuiltinMergeSchema::new("apps", "Deployment");
        assert_eq!(
            d.list_type(&["spec", "template", "spec", "containers"]),
            map(&["name"])
        );
        assert_eq!(
            d.list_type(&["spec", "template", "spec", "containers", "ports"]),
            map(&["containerPort", "protocol"])
        );
        assert_eq!(
            d.list_type(&["spec", "template", "spec", "containers", "env"]),
            map(&["name"])
        );
        assert_eq!(
            d.list_type(&["spec", "template", "spec", "containers", "args"]),
            ListType::Atomic
        );
        assert_eq!(
            d.list_type(&["spec", "template", "spec", "tolerations"]),
            ListType::Atomic
        );
        assert_eq!(d.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(
            d.list_type(&["spec", "template", "metadata", "finalizers"]),
            ListType::Set
        );
        assert_eq!(d.list_type(&["metadata", "ownerReferences"]), map(&["uid"]));
        assert_eq!(d.list_type(&["status", "conditions"]), map(&["type"]));
        assert!(d.is_atomic_map(&["spec", "selector"]));
        let p = BuiltinMergeSchema::for_object(&json!({"apiVersion": "v1", "kind": "Pod"}));
        assert_eq!(p.list_type(&["spec", "volumes"]), map(&["name"]));
        assert_eq!(
            p.list_type(&["spec", "containers", "volumeMounts"]),
            map(&["mountPath"])
        );
        let cj =
            BuiltinMergeSchema::for_object(&json!({"apiVersion": "batch/v1", "kind": "CronJob"}));
        assert_eq!(
            cj.list_type(&[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "containers"
            ]),
            map(&["name"])
        );
        let svc = BuiltinMergeSchema::new("", "Service");
        assert_eq!(
            svc.list_type(&["spec", "ports"]),
            map(&["port", "protocol"])
        );
        assert!(svc.is_atomic_map(&["spec", "selector"]));
        assert_eq!(
            BuiltinMergeSchema::new("", "ConfigMap").list_type(&["data"]),
            ListType::Atomic
        );
    }

    #[test]
    fn crd_rules_follow_schema_extensions() {
        let s = CrdMergeSchema {
            schema: Some(
                json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                        "items": {"type": "object", "properties": {"tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}},
                    "plain": {"type": "array", "items": {"type": "string"}},
                    "sel": {"type": "object", "x-kubernetes-map-type": "atomic"}
                }}}}),
            ),
            status_subresource: true,
        };
        assert_eq!(s.list_type(&["spec", "items"]), map(&["id"]));
        assert_eq!(s.list_type(&["spec", "items", "tags"]), ListType::Set);
        assert_eq!(s.list_type(&["spec", "plain"]), ListType::Atomic);
        assert_eq!(s.list_type(&["spec", "unknown"]), ListType::Atomic);
        assert_eq!(s.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert!(s.is_atomic_map(&["spec", "sel"]));
        assert!(!CrdMergeSchema::default().is_atomic_map(&["spec"]));
    }
}
