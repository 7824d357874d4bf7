//! Background reconciliation: ownerReference garbage collection (Background, Foreground,
//! Orphan) and namespace lifecycle (Terminating → contents deleted → finalized → gone).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::app::{App, Propagation};
use crate::objects;
use crate::registry::ResourceKind;
use crate::status::ApiResult;
use crate::storage::Write;

pub fn spawn(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = app.controllers.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.changed() => return,
            }
            // Passes repeat while they make progress (deletions cascade level by level).
            for _ in 0..20 {
                // A malformed stored object must not take the controllers down with it (a
                // panic ends only the blocking task), and a pass runs off the async workers.
                let a = app.clone();
                match tokio::task::spawn_blocking(move || reconcile(&a)).await {
                    Ok(Ok(true)) => continue,
                    Ok(Ok(false)) => break,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "controller pass failed");
                        break;
                    }
                    Err(_) => {
                        tracing::error!("controller pass panicked; retrying later");
                        break;
                    }
                }
            }
        }
    });
}

fn kind_by_key(app: &App) -> HashMap<String, ResourceKind> {
    app.registry
        .all()
        .into_iter()
        .map(|k| (k.storage_key(), k))
        .collect()
}

/// One pass; true if it changed anything.
pub fn reconcile(app: &App) -> ApiResult<bool> {
    let kinds = kind_by_key(app);
    let all = app.store.all_objects()?;
    let uids: HashSet<&str> = all
        .iter()
        .filter_map(|(_, _, o)| objects::meta_str(o, "uid"))
        .collect();
    let mut changed = false;
    // Dependents per owner uid.
    let mut dependents: HashMap<String, Vec<(&str, &str, &Value)>> = HashMap::new();
    for (res, ns, o) in &all {
        for r in o
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(uid) = r.get("uid").and_then(Value::as_str) {
                dependents
                    .entry(uid.to_string())
                    .or_default()
                    .push((res, ns, o));
            }
        }
    }
    changed |= ensure_default_service_accounts(app, &kinds, &all)?;
    for (res, ns, o) in &all {
        let Some(kind) = kinds.get(res) else { continue };
        let name = objects::name_of(o);
        // Orphans: every owner is gone → delete in the background.
        let owners: Vec<&str> = o
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.get("uid").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if !owners.is_empty()
            && owners.iter().all(|u| !uids.contains(u))
            && !objects::is_deleting(o)
        {
            ignore_missing(app.delete(kind, ns, name, Propagation::Background, None))?;
            changed = true;
            continue;
        }
        if !objects::is_deleting(o) {
            continue;
        }
        let uid = objects::meta_str(o, "uid").unwrap_or("");
        let fins = objects::finalizers(o);
        let deps = dependents.get(uid).cloned().unwrap_or_default();
        if fins.iter().any(|f| f == "orphan") {
            for (dres, dns, d) in &deps {
                if let Some(dk) = kinds.get(*dres) {
                    strip_owner(app, dk, dns, objects::name_of(d), uid)?;
                }
            }
            remove_finalizer(app, kind, ns, name, "orphan")?;
            changed = true;
        } else if fins.iter().any(|f| f == "foregroundDeletion") {
            if deps.is_empty() {
                remove_finalizer(app, kind, ns, name, "foregroundDeletion")?;
                changed = true;
            } else {
                for (dres, dns, d) in &deps {
                    if let Some(dk) = kinds.get(*dres)
                        && !objects::is_deleting(d)
                    {
                        ignore_missing(app.delete(
                            dk,
                            dns,
                            objects::name_of(d),
                            Propagation::Foreground,
                            None,
                        ))?;
                        changed = true;
                    }
                }
            }
        }
        if kind.group.is_empty() && kind.kind == "Namespace" {
            changed |= finalize_namespace(app, &kinds, &all, name)?;
        }
    }
    Ok(changed)
}

fn ignore_missing<T>(r: ApiResult<T>) -> ApiResult<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn remove_finalizer(
    app: &App,
    kind: &ResourceKind,
    ns: &str,
    name: &str,
    finalizer: &str,
) -> ApiResult<()> {
    let w = app.store.write(&kind.storage_key(), ns, name, |cur| {
        let Some(cur) = cur else {
            return Ok(Write::Unchanged(Value::Null));
        };
        let mut new = cur.clone();
        let fins: Vec<String> = objects::finalizers(cur)
            .into_iter()
            .filter(|f| f != finalizer)
            .collect();
        if fins.is_empty()
            && objects::is_deleting(cur)
            && !(kind.group.is_empty() && kind.kind == "Namespace")
        {
            return Ok(Write::Delete);
        }
        new["metadata"]["finalizers"] = json!(fins);
        Ok(Write::Put(new))
    })?;
    app.after_write(kind, &w);
    Ok(())
}

fn strip_owner(
    app: &App,
    kind: &ResourceKind,
    ns: &str,
    name: &str,
    owner_uid: &str,
) -> ApiResult<()> {
    let w = app.store.write(&kind.storage_key(), ns, name, |cur| {
        let Some(cur) = cur else {
            return Ok(Write::Unchanged(Value::Null));
        };
        let mut new = cur.clone();
        if let Some(refs) = new
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
        }
        Ok(Write::Put(new))
    })?;
    app.after_write(kind, &w);
    Ok(())
}

/// Deletes a terminating namespace's contents; once empty, clears its finalizer and removes it.
fn finalize_namespace(
    app: &App,
    kinds: &HashMap<String, ResourceKind>,
    all: &[(String, String, Arc<Value>)],
    ns: &str,
) -> ApiResult<bool> {
    let contents: Vec<&(String, String, Arc<Value>)> =
        all.iter().filter(|(_, n, _)| n == ns).collect();
    if !contents.is_empty() {
        let mut changed = false;
        for (res, n, o) in contents {
            if let Some(k) = kinds.get(res)
                && !objects::is_deleting(o)
            {
                ignore_missing(app.delete(
                    k,
                    n,
                    objects::name_of(o),
                    Propagation::Background,
                    None,
                ))?;
                changed = true;
            }
        }
        return Ok(changed);
    }
    let ns_kind = kinds.get("/namespaces").cloned();
    let Some(kind) = ns_kind else {
        return Ok(false);
    };
    let w = app.store.write("/namespaces", "", ns, |cur| {
        let Some(cur) = cur else {
            return Ok(Write::Unchanged(Value::Null));
        };
        if objects::finalizers(cur).is_empty() {
            return Ok(Write::Delete);
        }
        let mut new = cur.clone();
        new["spec"]["finalizers"] = json!([]);
        Ok(Write::Put(new))
    })?;
    app.after_write(&kind, &w);
    Ok(true)
}

/// Every active namespace has a `default` ServiceAccount, as the real controller ensures.
fn ensure_default_service_accounts(
    app: &App,
    kinds: &HashMap<String, ResourceKind>,
    all: &[(String, String, Arc<Value>)],
) -> ApiResult<bool> {
    let Some(sa_kind) = kinds.get("/serviceaccounts") else {
        return Ok(false);
    };
    let mut changed = false;
    for (res, _, ns) in all {
        if res != "/namespaces" || objects::is_deleting(ns) {
            continue;
        }
        let name = objects::name_of(ns);
        let has = all.iter().any(|(r, n, o)| {
            r == "/serviceaccounts" && n == name && objects::name_of(o) == "default"
        });
        if has {
            continue;
        }
        let obj = objects::prepare_create(
            sa_kind,
            Some(name),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        )?;
        let w = app
            .store
            .write("/serviceaccounts", name, "default", |cur| match cur {
                Some(c) => Ok(Write::Unchanged(c.clone())),
                None => Ok(Write::Put(obj)),
            })?;
        app.after_write(sa_kind, &w);
        changed = true;
    }
    Ok(changed)
}
