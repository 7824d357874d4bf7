//! Server-side apply of a rendered set of objects with field manager `hoist`, then
//! prune of what hoist applied before and no longer renders.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::discovery::{Resolved, Resolver};
use crate::error::{KubeError, Result};
use crate::inventory::{self, Entry};
use crate::labels::Owner;
use crate::object::ObjectKey;
use crate::target::{ClusterTarget, ensure_namespace};

pub const FIELD_MANAGER: &str = "hoist";
/// How long a kind whose CRD is in the same batch may take to be served.
const CRD_ESTABLISH_WAIT: Duration = Duration::from_secs(20);
/// Applies in flight at once (order of the report stays the input order).
const APPLY_CONCURRENCY: usize = 16;

/// One object to apply, and the service it belongs to.
#[derive(Debug, Clone)]
pub struct Desired {
    pub service: String,
    pub object: Value,
}

/// Which previously applied objects may be deleted when not rendered any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneScope {
    /// Everything of this project and developer.
    All,
    /// Only objects of these services (the others were not rendered this time).
    Services(Vec<String>),
    /// Apply only.
    None,
}

/// An object as the server returned it after the apply (without `managedFields`).
#[derive(Debug, Clone)]
pub struct Applied {
    pub key: ObjectKey,
    pub service: String,
    pub resource: ApiResource,
    pub resource_version: String,
    pub object: Value,
}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub applied: Vec<Applied>,
    pub pruned: Vec<ObjectKey>,
}

/// The objects hoist manages for one project and developer in one cluster.
pub struct ApplySet {
    client: Client,
    owner: Owner,
    namespace: String,
    resolver: Resolver,
}

impl ApplySet {
    pub fn new(client: Client, target: &ClusterTarget) -> Self {
        Self::for_owner(
            client,
            Owner {
                project: target.project.clone(),
                developer: target.developer.clone(),
            },
            target.namespace.clone(),
        )
    }

    /// `namespace`: where namespaced objects without one go, and where the inventory lives.
    pub fn for_owner(client: Client, owner: Owner, namespace: String) -> Self {
        Self {
            client,
            owner,
            namespace,
            resolver: Resolver::default(),
        }
    }

    pub fn owner(&self) -> &Owner {
        &self.owner
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Applies `objects` (CRDs and Namespaces first), records their kinds in the
    /// inventory before touching anything, then prunes within `prune`.
    pub async fn apply(&mut self, objects: Vec<Desired>, prune: PruneScope) -> Result<ApplyReport> {
        let mut batch = Vec::with_capacity(objects.len());
        for (index, d) in objects.into_iter().enumerate() {
            let key = ObjectKey::from_value(&d.object)
                .map_err(|reason| KubeError::InvalidObject { index, reason })?;
            if !d.object["metadata"].is_object() {
                return Err(KubeError::InvalidObject {
                    index,
                    reason: format!("{key}: `metadata` is not a mapping"),
                });
            }
            batch.push((key, d));
        }
        // Stable: within a rank the caller's order stays.
        batch.sort_by_key(|(k, _)| rank(k));
        let crd_kinds: BTreeSet<(String, String)> = batch
            .iter()
            .filter(|(k, _)| is_crd(k))
            .filter_map(|(_, d)| {
                let spec = &d.object["spec"];
                Some((
                    spec["group"].as_str()?.to_string(),
                    spec["names"]["kind"].as_str()?.to_string(),
                ))
            })
            .collect();

        ensure_namespace(&self.client, &self.namespace).await?;
        let old = inventory::read(&self.client, &self.namespace, &self.owner).await?;

        // Resolve what can be resolved now so the inventory is complete before any write;
        // kinds of CRDs in this batch are resolved after their CRD is applied.
        let mut entries: BTreeSet<Entry> = BTreeSet::new();
        for (key, _) in &batch {
            if let Some(r) = self.resolver.resolve(&self.client, &key.gvk()).await {
                entries.insert(self.entry(key, &r));
            } else if !crd_kinds.contains(&(key.group.clone(), key.kind.clone())) {
                return Err(unknown_kind(key));
            } else {
                entries.insert(Entry {
                    api_version: key.api_version(),
                    kind: key.kind.clone(),
                    // Assumed namespaced until the CRD says otherwise; fixed below.
                    namespace: Some(
                        key.namespace
                            .clone()
                            .unwrap_or_else(|| self.namespace.clone()),
                    ),
                });
            }
        }
        let mut union = old.clone();
        union.extend(entries.iter().cloned());
        if union != old {
            inventory::write(&self.client, &self.namespace, &self.owner, &union).await?;
        }

        let mut report = ApplyReport::default();
        let mut final_entries = BTreeSet::new();
        let mut later = Vec::new();
        for (mut key, d) in batch {
            let gvk = key.gvk();
            let resolved = match self.resolver.resolve(&self.client, &gvk).await {
                Some(r) => r,
                None => self
                    .resolver
                    .resolve_waiting(&self.client, &gvk, CRD_ESTABLISH_WAIT)
                    .await
                    .ok_or_else(|| unknown_kind(&key))?,
            };
            let mut object = d.object;
            key.namespace = resolved.namespaced.then(|| {
                key.namespace
                    .clone()
                    .unwrap_or_else(|| self.namespace.clone())
            });
            match &key.namespace {
                Some(ns) => object["metadata"]["namespace"] = ns.clone().into(),
                None => {
                    if let Some(m) = object["metadata"].as_object_mut() {
                        m.remove("namespace");
                    }
                }
            }
            strip_server_fields(&mut object);
            self.owner.stamp(&mut object, &d.service);
            let entry = self.entry(&key, &resolved);
            if !union.contains(&entry) {
                union.insert(entry.clone());
                inventory::write(&self.client, &self.namespace, &self.owner, &union).await?;
            }
            final_entries.insert(entry);
            let job = Prepared {
                api: self.api(&resolved, key.namespace.as_deref()),
                key,
                object,
                service: d.service,
                resource: resolved.resource,
            };
            // CRDs and Namespaces first, one by one: what follows may need them.
            if rank(&job.key) < 2 {
                report.applied.push(job.run().await?);
            } else {
                later.push(job);
            }
        }
        // Futures collected first: a lazy `map` over an iterator makes this future
        // `Send` only for one lifetime, so it could not be spawned on a runtime.
        let jobs: Vec<_> = later.into_iter().map(|p| p.run()).collect();
        let mut results = futures_util::stream::iter(jobs).buffered(APPLY_CONCURRENCY);
        while let Some(applied) = results.next().await {
            report.applied.push(applied?);
        }
        drop(results);

        let services = match &prune {
            PruneScope::All => None,
            PruneScope::Services(s) => Some(s.as_slice()),
            PruneScope::None => {
                return Ok(report);
            }
        };
        let keep: BTreeSet<&ObjectKey> = report.applied.iter().map(|a| &a.key).collect();
        let selector = self.owner.selector(services);
        for entry in &union {
            let Some((resolved, found)) = self.list(entry, &selector).await? else {
                continue;
            };
            let gone: Vec<ObjectKey> = found.into_iter().filter(|k| !keep.contains(k)).collect();
            // Pruned in the background: dependents are collected by GC meanwhile.
            delete_all(&self.client, &resolved, &gone, &DeleteParams::background()).await?;
            report.pruned.extend(gone);
        }
        // Kinds still holding objects of services not rendered this time stay recorded.
        if services.is_some() {
            final_entries.extend(union.iter().cloned());
        }
        if final_entries != union {
            inventory::write(&self.client, &self.namespace, &self.owner, &final_entries).await?;
        }
        Ok(report)
    }

    /// Keys of objects of one inventory entry matching `selector` (`None`: kind gone).
    pub(crate) async fn list(
        &mut self,
        entry: &Entry,
        selector: &str,
    ) -> Result<Option<(Resolved, Vec<ObjectKey>)>> {
        let (group, version) = crate::object::split_api_version(&entry.api_version);
        let gvk = kube::core::GroupVersionKind::gvk(group, version, &entry.kind);
        let Some(resolved) = self.resolver.resolve(&self.client, &gvk).await else {
            return Ok(None);
        };
        let api = self.api(&resolved, entry.namespace.as_deref());
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| {
                KubeError::api("list", format!("{} {}", entry.api_version, entry.kind), e)
            })?;
        let keys = list
            .items
            .into_iter()
            .filter_map(|o| {
                Some(ObjectKey {
                    group: group.into(),
                    version: version.into(),
                    kind: entry.kind.clone(),
                    namespace: if resolved.namespaced {
                        o.metadata.namespace
                    } else {
                        None
                    },
                    name: o.metadata.name?,
                })
            })
            .collect();
        Ok(Some((resolved, keys)))
    }

    pub(crate) fn api(&self, r: &Resolved, namespace: Option<&str>) -> Api<DynamicObject> {
        match (r.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &r.resource),
            (true, None) => Api::namespaced_with(self.client.clone(), &self.namespace, &r.resource),
            (false, _) => Api::all_with(self.client.clone(), &r.resource),
        }
    }

    fn entry(&self, key: &ObjectKey, r: &Resolved) -> Entry {
        Entry {
            api_version: key.api_version(),
            kind: key.kind.clone(),
            namespace: r.namespaced.then(|| {
                key.namespace
                    .clone()
                    .unwrap_or_else(|| self.namespace.clone())
            }),
        }
    }
}

/// One object ready to be sent.
struct Prepared {
    api: Api<DynamicObject>,
    key: ObjectKey,
    object: Value,
    service: String,
    resource: ApiResource,
}

impl Prepared {
    async fn run(self) -> Result<Applied> {
        let mut out = self
            .api
            .patch(
                &self.key.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&self.object),
            )
            .await
            .map_err(|e| KubeError::api_key("apply", &self.key, e))?;
        tracing::debug!(object = %self.key, "applied");
        // Kept per service for the whole session, and read by nobody: often the
        // largest part of the object.
        out.metadata.managed_fields = None;
        Ok(Applied {
            resource_version: out.metadata.resource_version.clone().unwrap_or_default(),
            object: serde_json::to_value(&out).unwrap_or(Value::Null),
            key: self.key,
            service: self.service,
            resource: self.resource,
        })
    }
}

/// Deletes `keys` (all of one kind), several at a time, with `dp` (its propagation policy
/// says whether an object waits for its dependents).
pub(crate) async fn delete_all(
    client: &Client,
    r: &Resolved,
    keys: &[ObjectKey],
    dp: &DeleteParams,
) -> Result<()> {
    // Collected first so the future stays `Send` for any lifetime (spawnable).
    let jobs: Vec<_> = keys.iter().map(|k| delete(client, r, k, dp)).collect();
    let mut results = futures_util::stream::iter(jobs).buffer_unordered(APPLY_CONCURRENCY);
    while let Some(res) = results.next().await {
        res?;
    }
    Ok(())
}

/// Deletes one object with `dp`; an object already gone is fine.
pub(crate) async fn delete(
    client: &Client,
    r: &Resolved,
    key: &ObjectKey,
    dp: &DeleteParams,
) -> Result<()> {
    let api: Api<DynamicObject> = match &key.namespace {
        Some(ns) if r.namespaced => Api::namespaced_with(client.clone(), ns, &r.resource),
        _ => Api::all_with(client.clone(), &r.resource),
    };
    match api.delete(&key.name, dp).await {
        Ok(_) => {
            tracing::debug!(object = %key, "deleted");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(KubeError::api_key("delete", key, e)),
    }
}

/// Drops what the server owns (status, identity, versions): hoist applies desired
/// state, and a stale `resourceVersion` would turn the apply into a conflict.
pub fn strip_server_fields(object: &mut Value) {
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    if let Some(m) = object["metadata"].as_object_mut() {
        for f in [
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "managedFields",
            "selfLink",
        ] {
            m.remove(f);
        }
    }
}

fn is_crd(k: &ObjectKey) -> bool {
    k.group == "apiextensions.k8s.io" && k.kind == "CustomResourceDefinition"
}

/// CRDs, then Namespaces, then everything else.
fn rank(k: &ObjectKey) -> u8 {
    if is_crd(k) {
        0
    } else if k.group.is_empty() && k.kind == "Namespace" {
        1
    } else {
        2
    }
}

fn unknown_kind(key: &ObjectKey) -> KubeError {
    KubeError::UnknownKind {
        api_version: key.api_version(),
        kind: key.kind.clone(),
        object: key.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_fields_are_dropped() {
        let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "7", "uid": "u", "managedFields": [], "labels": {"x": "y"}},
            "data": {"k": "v"}, "status": {"phase": "x"}});
        strip_server_fields(&mut o);
        assert_eq!(
            o,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "y"}}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn crds_then_namespaces_first() {
        let k = |g: &str, kind: &str| ObjectKey {
            group: g.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: None,
            name: "x".into(),
        };
        assert_eq!(
            rank(&k("apiextensions.k8s.io", "CustomResourceDefinition")),
            0
        );
        assert_eq!(rank(&k("", "Namespace")), 1);
        assert_eq!(rank(&k("example.com", "Namespace")), 2);
        assert_eq!(rank(&k("apps", "Deployment")), 2);
    }
}
