//! Identity of a Kubernetes object as hoist tracks it.

use std::fmt;

use kube::core::GroupVersionKind;
use serde_json::Value;

/// `group/version, kind, namespace, name` of one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::gvk(&self.group, &self.version, &self.kind)
    }

    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }

    /// The key of an object as written (`apiVersion`, `kind`, `metadata.name/namespace`).
    pub fn from_value(obj: &Value) -> Result<Self, String> {
        let api_version = obj["apiVersion"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or("missing `apiVersion`")?;
        let kind = obj["kind"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or("missing `kind`")?;
        let name = obj["metadata"]["name"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{kind} without `metadata.name`"))?;
        let (group, version) = split_api_version(api_version);
        Ok(ObjectKey {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            namespace: obj["metadata"]["namespace"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(String::from),
            name: name.into(),
        })
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{} in namespace {ns}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_from_objects() {
        let k = ObjectKey::from_value(&json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"ns"}})).unwrap();
        assert_eq!((k.group.as_str(), k.version.as_str()), ("apps", "v1"));
        assert_eq!(k.to_string(), "Deployment/web in namespace ns");
        let k = ObjectKey::from_value(
            &json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}),
        )
        .unwrap();
        assert_eq!((k.group.as_str(), k.api_version().as_str()), ("", "v1"));
        assert_eq!(
            ObjectKey::from_value(&json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{}}))
                .unwrap_err(),
            "ConfigMap without `metadata.name`"
        );
        assert_eq!(
            ObjectKey::from_value(&json!({"kind":"X"})).unwrap_err(),
            "missing `apiVersion`"
        );
    }
}
