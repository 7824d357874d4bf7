//! Shared server state and the write paths used by both handlers and controllers.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::objects;
use crate::registry::{Registry, ResourceKind, kinds_from_crd};
use crate::status::{ApiError, ApiResult};
use crate::storage::{Store, Write, Written};

pub struct App {
    pub store: Store,
    pub registry: Registry,
    /// Wakes the garbage collector / namespace controller after deletions.
    pub controllers: Notify,
    /// Set to true when the server stops: long-running responses (watches) end then.
    pub stopping: watch::Sender<bool>,
    /// Where the kubelet keeps pod sandboxes (and container logs), once it runs.
    pub pods_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// The kubelet's runc state root, for pods/exec.
    pub runc_root: std::sync::OnceLock<std::path::PathBuf>,
    /// The running containers' attachable stdin/stdout/stderr/terminal, for pods/attach.
    pub container_io: std::sync::OnceLock<Arc<hoist_runtime::IoTable>>,
}

/// How dependents are handled when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl App {
    pub fn new(store: Store) -> ApiResult<Arc<Self>> {
        let app = Arc::new(Self {
            store,
            registry: Registry::new(),
            controllers: Notify::new(),
            stopping: watch::channel(false).0,
            pods_dir: std::sync::OnceLock::new(),
            runc_root: std::sync::OnceLock::new(),
            container_io: std::sync::OnceLock::new(),
        });
        let (crds, _) = app
            .store
            .list("apiextensions.k8s.io/customresourcedefinitions", None)?;
        for crd in &crds {
            app.sync_crd(crd, false);
        }
        Ok(app)
    }

    /// Keeps the registry in step with a CRD object (created, updated or deleted).
    pub fn sync_crd(&self, crd: &Value, deleted: bool) {
        let name = objects::name_of(crd);
        if deleted {
            self.registry.set_crd_kinds(name, Vec::new());
            return;
        }
        match kinds_from_crd(crd) {
            Ok(kinds) => self.registry.set_crd_kinds(name, kinds),
            Err(e) => tracing::warn!(crd = name, error = %e, "CRD not served"),
        }
    }

    /// Called after every committed write, for side effects on other state.
    pub fn after_write(&self, kind: &ResourceKind, written: &Written) {
        if kind.group == "apiextensions.k8s.io" && kind.kind == "CustomResourceDefinition" {
            match written {
                Written::Created(o) | Written::Updated(o) => self.sync_crd(o, false),
                Written::Deleted(o) => {
                    self.sync_crd(o, true);
                    self.delete_custom_resources(o);
                }
                Written::Unchanged(_) => {}
            }
        }
        let namespace_created = kind.group.is_empty()
            && kind.kind == "Namespace"
            && matches!(written, Written::Created(_));
        if namespace_created || matches!(written, Written::Deleted(_) | Written::Updated(_)) {
            self.controllers.notify_one();
        }
    }

    /// A deleted CRD takes its custom resources with it.
    fn delete_custom_resources(&self, crd: &Value) {
        let (Some(group), Some(plural)) = (
            crd.pointer("/spec/group").and_then(Value::as_str),
            crd.pointer("/spec/names/plural").and_then(Value::as_str),
        ) else {
            return;
        };
        let key = format!("{group}/{plural}");
        let Ok((items, _)) = self.store.list(&key, None) else {
            return;
        };
        for o in items {
            let ns = o
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            let name = objects::name_of(&o).to_string();
            if let Err(e) = self.store.write(&key, ns, &name, |_| Ok(Write::Delete)) {
                tracing::warn!(%key, %name, error = %e, "cannot delete custom resource of a deleted CRD");
            }
        }
    }

    pub fn ensure_namespace_writable(&self, ns: &str) -> ApiResult<()> {
        match self.store.get("/namespaces", "", ns)? {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(obj) if objects::is_deleting(&obj) => Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )
            .with_details(serde_json::json!({"name": ns, "kind": "namespaces"}))),
            Some(_) => Ok(()),
        }
    }

    /// Deletes an object honouring finalizers and the propagation policy.
    pub fn delete(
        &self,
        kind: &ResourceKind,
        ns: &str,
        name: &str,
        policy: Propagation,
        precondition_uid: Option<&str>,
    ) -> ApiResult<Written> {
        self.delete_with_grace(kind, ns, name, policy, precondition_uid, None)
    }

    /// [`App::delete`] with DeleteOptions' `gracePeriodSeconds`: a pod bound to the node
    /// and still running is only marked (deletionTimestamp); the kubelet stops it within
    /// the grace period and then removes the object. `Some(0)` deletes at once.
    pub fn delete_with_grace(
        &self,
        kind: &ResourceKind,
        ns: &str,
        name: &str,
        policy: Propagation,
        precondition_uid: Option<&str>,
        grace_secs: Option<i64>,
    ) -> ApiResult<Written> {
        let is_pod = kind.group.is_empty() && kind.kind == "Pod";
        let written = self.store.write(&kind.storage_key(), ns, name, |cur| {
            let cur = cur.ok_or_else(|| ApiError::not_found(&kind.group, &kind.plural, name))?;
            if let Some(uid) = precondition_uid
                && objects::meta_str(cur, "uid") != Some(uid)
            {
                return Err(ApiError::conflict(&kind.group, &kind.plural, name));
            }
            let mut fins = objects::finalizers(cur);
            let extra = match policy {
                Propagation::Foreground => Some("foregroundDeletion"),
                Propagation::Orphan => Some("orphan"),
                Propagation::Background => None,
            };
            if let Some(f) = extra
                && !fins.iter().any(|x| x == f)
            {
                fins.push(f.to_string());
            }
            let is_namespace = kind.group.is_empty() && kind.kind == "Namespace";
            let pod_grace = if is_pod {
                pod_grace_period(cur, grace_secs)
            } else {
                None
            };
            if fins.is_empty() && !is_namespace && pod_grace.is_none() {
                return Ok(Write::Delete);
            }
            let mut new = cur.clone();
            if !objects::is_deleting(cur) {
                new["metadata"]["deletionTimestamp"] = Value::String(crate::clock::now_rfc3339());
                new["metadata"]["deletionGracePeriodSeconds"] =
                    serde_json::json!(pod_grace.unwrap_or(0));
            } else if let Some(g) = pod_grace {
                // A second delete may shorten the grace period (e.g. --force after a wait).
                let cur_g = cur
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MAX);
                if g < cur_g {
                    new["metadata"]["deletionGracePeriodSeconds"] = serde_json::json!(g);
                }
            }
            if !fins.is_empty() {
                new["metadata"]["finalizers"] = serde_json::json!(fins);
            }
            if is_namespace {
                new["status"]["phase"] = Value::String("Terminating".into());
            }
            Ok(Write::Put(new))
        })?;
        self.after_write(kind, &written);
        Ok(written)
    }
}

/// The grace period for deleting `pod`, or `None` to delete it at once: pods not bound to
/// a node, already finished, or deleted with gracePeriodSeconds=0.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> Option<i64> {
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    let grace = requested.unwrap_or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    (bound && !finished && grace > 0).then_some(grace)
}
