//! PersistentVolumeClaims: StatefulSet claims created from `volumeClaimTemplates`, every
//! claim bound at once (the node's directory provisioner, see
//! [`crate::kubelet::claims`]), and the directories of deleted claims removed.

use serde_json::{Value, json};

use super::{create, ns_of, update_status};
use crate::app::App;
use crate::objects;
use crate::status::ApiResult;

pub fn pass(app: &App) -> ApiResult<()> {
    let (claims, _) = app.store.list_shared("/persistentvolumeclaims", None);
    for c in &claims {
        if objects::is_deleting(c)
            || c.pointer("/status/phase").and_then(Value::as_str) == Some("Bound")
        {
            continue;
        }
        let storage = c
            .pointer("/spec/resources/requests/storage")
            .cloned()
            .unwrap_or(json!("0"));
        let modes = c
            .pointer("/spec/accessModes")
            .cloned()
            .unwrap_or(json!(["ReadWriteOnce"]));
        let status =
            json!({"phase": "Bound", "accessModes": modes, "capacity": {"storage": storage}});
        update_status(app, "/persistentvolumeclaims", c, status)?;
    }
    if let Some(pods_dir) = app.pods_dir.get() {
        let live: Vec<&str> = claims
            .iter()
            .filter_map(|c| objects::meta_str(c, "uid"))
            .collect();
        for dir in crate::kubelet::claims::remove_unclaimed(pods_dir, &live) {
            tracing::info!(dir = %dir.display(), "removed the directory of a deleted claim");
        }
    }
    Ok(())
}

/// Creates the claim `name` from a StatefulSet's claim template unless it exists (claims
/// are not owned by the set: like Kubernetes' default `Retain`, they outlive it).
pub fn ensure_claim(app: &App, set: &Value, template: &Value, name: &str) -> ApiResult<()> {
    let ns = ns_of(set);
    if app
        .store
        .get("/persistentvolumeclaims", ns, name)?
        .is_some()
    {
        return Ok(());
    }
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    // Kubernetes labels claims with the set's matchLabels.
    if let Some(m) = set
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
    {
        for (k, v) in m {
            labels[k] = v.clone();
        }
    }
    let mut claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({}))},
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    });
    // persistentVolumeClaimRetentionPolicy.whenDeleted: Delete — owned by the set, so the
    // garbage collector removes the claim with it (not a controller reference).
    if retention(set, "whenDeleted") == "Delete" {
        let mut owner = super::owner_ref(set, "apps/v1", "StatefulSet");
        owner["controller"] = json!(false);
        claim["metadata"]["ownerReferences"] = json!([owner]);
    }
    match create(app, "", "persistentvolumeclaims", ns, claim) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A StatefulSet's claim retention rule (`whenDeleted` / `whenScaled`): Retain or Delete.
pub fn retention<'a>(set: &'a Value, when: &str) -> &'a str {
    set.pointer("/spec/persistentVolumeClaimRetentionPolicy")
        .and_then(|p| p.get(when))
        .and_then(Value::as_str)
        .unwrap_or("Retain")
}

/// With `whenScaled: Delete`, removes the claims of ordinals at or above `replicas`
/// once their pod is gone.
pub fn delete_scaled_claims(app: &App, set: &Value, replicas: usize) -> ApiResult<()> {
    if retention(set, "whenScaled") != "Delete" {
        return Ok(());
    }
    let ns = ns_of(set);
    let name = objects::name_of(set);
    let templates: Vec<&str> = set
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    if templates.is_empty() {
        return Ok(());
    }
    let (claims, _) = app.store.list_shared("/persistentvolumeclaims", Some(ns));
    for c in &claims {
        let claim = objects::name_of(c);
        let ord = templates.iter().find_map(|t| {
            let member = claim.strip_prefix(t)?.strip_prefix('-')?;
            super::statefulset::ordinal(name, member)
        });
        let Some(ord) = ord.filter(|o| *o >= replicas) else {
            continue;
        };
        let pod = format!("{name}-{ord}");
        if app.store.get("/pods", ns, &pod)?.is_none() && !objects::is_deleting(c) {
            super::delete(app, "persistentvolumeclaims", "", ns, claim)?;
        }
    }
    Ok(())
}
