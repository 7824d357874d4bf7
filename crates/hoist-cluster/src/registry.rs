//! The table of kinds the server knows: built-in kinds plus those defined by
//! CustomResourceDefinitions. Everything else (routing, discovery, OpenAPI, tables)
//! is driven from these rows.

use std::sync::{Arc, RwLock};

use serde_json::Value;

/// Which per-kind Table columns `kubectl get` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    Default,
    Pod,
    Deployment,
    Service,
    Namespace,
    ConfigMap,
    Secret,
    Node,
    Event,
    StatefulSet,
    DaemonSet,
    CronJob,
    ControllerRevision,
    PersistentVolumeClaim,
}

/// One served resource (a group/version/kind and its REST shape).
#[derive(Debug, Clone)]
pub struct ResourceKind {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status_subresource: bool,
    pub columns: Columns,
    /// True for custom resources (strategic merge patch is refused for them).
    pub custom: bool,
    /// The CRD's `openAPIV3Schema`, when this kind comes from a CRD.
    pub schema: Option<Value>,
    /// The CRD version's `additionalPrinterColumns` (name, type, jsonPath, priority).
    pub printer_columns: Vec<PrinterColumn>,
}

#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub priority: i64,
}

impl ResourceKind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// Storage key prefix; independent of version so all versions share objects.
    pub fn storage_key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }
    /// Whether objects of this kind carry `metadata.generation` (kinds with a spec that
    /// controllers observe; ConfigMaps, Secrets, Services... have none in Kubernetes).
    pub fn tracks_generation(&self) -> bool {
        self.custom
            || matches!(
                self.group.as_str(),
                "apps" | "batch" | "apiextensions.k8s.io"
            )
            || (self.group.is_empty() && self.kind == "Pod")
    }
    /// Deployments, ReplicaSets and StatefulSets serve `/scale` (autoscaling/v1 Scale).
    pub fn has_scale(&self) -> bool {
        self.group == "apps"
            && matches!(
                self.kind.as_str(),
                "Deployment" | "ReplicaSet" | "StatefulSet"
            )
    }
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    short: &[&str],
    namespaced: bool,
    status: bool,
    columns: Columns,
    all: bool,
) -> ResourceKind {
    ResourceKind {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if all { vec!["all".into()] } else { vec![] },
        namespaced,
        status_subresource: status,
        columns,
        custom: false,
        schema: None,
        printer_columns: Vec::new(),
    }
}

/// The built-in kinds, one row each.
pub fn builtin_kinds() -> Vec<ResourceKind> {
    use Columns::*;
    vec![
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            &["ns"],
            false,
            true,
            Namespace,
            false,
        ),
        builtin("", "v1", "Pod", "pods", &["po"], true, true, Pod, true),
        builtin(
            "",
            "v1",
            "Service",
            "services",
            &["svc"],
            true,
            true,
            Service,
            true,
        ),
        builtin(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            &["ep"],
            true,
            false,
            Default,
            false,
        ),
        builtin(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            &["cm"],
            true,
            false,
            ConfigMap,
            false,
        ),
        builtin(
            "",
            "v1",
            "Secret",
            "secrets",
            &[],
            true,
            false,
            Secret,
            false,
        ),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            &["sa"],
            true,
            false,
            Default,
            false,
        ),
        builtin(
            "",
            "v1",
            "Event",
            "events",
            &["ev"],
            true,
            false,
            Event,
            false,
        ),
        builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            &["pvc"],
            true,
            true,
            PersistentVolumeClaim,
            false,
        ),
        builtin("", "v1", "Node", "nodes", &["no"], false, true, Node, false),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            &["deploy"],
            true,
            true,
            Deployment,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            &["rs"],
            true,
            true,
            Default,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            &["sts"],
            true,
            true,
            StatefulSet,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            &["ds"],
            true,
            true,
            DaemonSet,
            true,
        ),
        builtin(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            &[],
            true,
            false,
            ControllerRevision,
            false,
        ),
        builtin("batch", "v1", "Job", "jobs", &[], true, true, Default, true),
        builtin(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            &["cj"],
            true,
            true,
            CronJob,
            true,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            &[],
            true,
            false,
            Default,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            &[],
            true,
            false,
            Default,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            &[],
            true,
            false,
            Default,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            &[],
            false,
            false,
            Default,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            &[],
            false,
            false,
            Default,
            false,
        ),
        builtin(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            &[],
            true,
            false,
            Default,
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            &["crd", "crds"],
            false,
            true,
            Default,
            false,
        ),
    ]
}

/// Built-in kinds plus the kinds of established CRDs; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    builtin: Arc<Vec<ResourceKind>>,
    custom: Arc<RwLock<Vec<ResourceKind>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self {
            builtin: Arc::new(builtin_kinds()),
            custom: Arc::new(RwLock::new(Vec::new())),
        }
    }

    pub fn all(&self) -> Vec<ResourceKind> {
        let mut v = (*self.builtin).clone();
        v.extend(
            self.custom
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        v
    }

    /// The kind served at `group/version` under `plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<ResourceKind> {
        let hit =
            |k: &&ResourceKind| k.group == group && k.version == version && k.plural == plural;
        if let Some(k) = self.builtin.iter().find(hit) {
            return Some(k.clone());
        }
        self.custom
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(hit)
            .cloned()
    }

    /// The kind for an object's `apiVersion` + `kind`.
    pub fn lookup_kind(&self, api_version: &str, kind: &str) -> Option<ResourceKind> {
        self.all()
            .into_iter()
            .find(|k| k.api_version() == api_version && k.kind == kind)
    }

    /// Replaces the kinds contributed by one CRD (identified by its name).
    pub fn set_crd_kinds(&self, crd_name: &str, kinds: Vec<ResourceKind>) {
        let mut custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        custom.retain(|k| format!("{}.{}", k.plural, k.group) != crd_name);
        custom.extend(kinds);
    }

    /// Group names in discovery order (core first, then built-in groups, then custom).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for k in self.all() {
            match out.iter_mut().find(|(g, _)| *g == k.group) {
                Some((_, versions)) => {
                    if !versions.contains(&k.version) {
                        versions.push(k.version.clone());
                    }
                }
                None => out.push((k.group.clone(), vec![k.version.clone()])),
            }
        }
        out
    }
}

/// The kinds a CRD object defines (one per served version), or an explanation why none.
pub fn kinds_from_crd(crd: &Value) -> Result<Vec<ResourceKind>, String> {
    let spec = crd.get("spec").ok_or("spec is required")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group is required")?;
    let names = spec.get("names").ok_or("spec.names is required")?;
    let s = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).map(str::to_string);
    let plural = s(names, "plural").ok_or("spec.names.plural is required")?;
    let kind = s(names, "kind").ok_or("spec.names.kind is required")?;
    let singular = s(names, "singular").unwrap_or_else(|| kind.to_ascii_lowercase());
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let short_names = strs(names.get("shortNames"));
    let categories = strs(names.get("categories"));
    let namespaced = match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(format!(
                "spec.scope must be Namespaced or Cluster, got {other:?}"
            ));
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions is required")?;
    let expected_name = format!("{plural}.{group}");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name != expected_name {
        return Err(format!(
            "metadata.name must be spec.names.plural+\".\"+spec.group ({expected_name})"
        ));
    }
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = s(v, "name").ok_or("spec.versions[].name is required")?;
        out.push(ResourceKind {
            group: group.to_string(),
            version,
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            short_names: short_names.clone(),
            categories: categories.clone(),
            namespaced,
            status_subresource: v.pointer("/subresources/status").is_some(),
            columns: Columns::Default,
            custom: true,
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns: v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cols| {
                    cols.iter()
                        .filter_map(|c| {
                            Some(PrinterColumn {
                                name: s(c, "name")?,
                                type_: s(c, "type").unwrap_or_else(|| "string".into()),
                                json_path: s(c, "jsonPath")?,
                                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(out)
}
