//! `hoist down`: delete every object hoist applied for a project and developer (found
//! by labels across the kinds in the inventory plus common workload kinds, so it works
//! even if `hoist up` was killed before recording), wait until they are gone.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};

use crate::apply::{ApplySet, delete_all};
use crate::error::{KubeError, Result};
use crate::inventory::{self, Entry};
use crate::object::ObjectKey;

/// Kinds searched even when the inventory does not list them.
const COMMON_KINDS: &[(&str, &str)] = &[
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("v1", "Pod"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "Ingress"),
];

#[derive(Debug, Clone)]
pub struct TeardownOptions {
    /// Also delete the namespace (and wait for it to go).
    pub delete_namespace: bool,
    /// How long to wait for everything to be gone.
    pub timeout: Duration,
}

impl Default for TeardownOptions {
    fn default() -> Self {
        Self {
            delete_namespace: false,
            timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Default)]
pub struct TeardownReport {
    pub deleted: Vec<ObjectKey>,
    pub namespace_deleted: bool,
}

pub async fn teardown(set: &mut ApplySet, opts: &TeardownOptions) -> Result<TeardownReport> {
    let client = set.client().clone();
    let namespace = set.namespace().to_string();
    let owner = set.owner().clone();
    let mut entries = inventory::read(&client, &namespace, &owner).await?;
    entries.extend(COMMON_KINDS.iter().map(|(v, k)| Entry {
        api_version: (*v).into(),
        kind: (*k).into(),
        namespace: Some(namespace.clone()),
    }));
    let selector = owner.selector(None);
    let mut report = TeardownReport::default();
    // Namespaced objects before cluster-scoped ones (CRDs last: deleting a CRD
    // deletes its objects, which we want to have listed first).
    let mut ordered: Vec<&Entry> = entries.iter().collect();
    ordered.sort_by_key(|e| (e.namespace.is_none(), e.kind == "CustomResourceDefinition"));
    let mut pending: BTreeSet<&Entry> = BTreeSet::new();
    for entry in &ordered {
        let Some((resolved, keys)) = set.list(entry, &selector).await? else {
            continue;
        };
        if keys.is_empty() {
            continue;
        }
        // In the foreground: an object goes only once its dependents (a Deployment's
        // ReplicaSets and their Pods) are gone, so waiting for it waits for them too.
        delete_all(&client, &resolved, &keys, &DeleteParams::foreground()).await?;
        report.deleted.extend(keys);
        pending.insert(entry);
    }

    let deadline = tokio::time::Instant::now() + opts.timeout;
    while !pending.is_empty() {
        let mut still = BTreeSet::new();
        let mut present: Vec<ObjectKey> = Vec::new();
        for entry in &pending {
            if let Some((_, keys)) = set.list(entry, &selector).await?
                && !keys.is_empty()
            {
                still.insert(*entry);
                present.extend(keys);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let what: Vec<String> = present.iter().take(10).map(|k| k.to_string()).collect();
            let more = present.len().saturating_sub(10);
            return Err(KubeError::Timeout {
                waited: opts.timeout,
                what: format!(
                    "hoist's objects to be deleted (still present: {}{}; a finalizer may hold them)",
                    what.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    inventory::delete(&client, &namespace, &owner).await?;

    if opts.delete_namespace {
        let api: Api<Namespace> = Api::all(client.clone());
        let what = format!("Namespace/{namespace}");
        match api.delete(&namespace, &DeleteParams::background()).await {
            Ok(_) => report.namespace_deleted = true,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(KubeError::api("delete", what, e)),
        }
        loop {
            if api
                .get_opt(&namespace)
                .await
                .map_err(|e| KubeError::api("get", &what, e))?
                .is_none()
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(KubeError::Timeout {
                    waited: opts.timeout,
                    what: format!("{what} to be deleted"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(report)
}
