//! PersistentVolumeClaims: StatefulSet claims created from `volumeClaimTemplates`, every
//! claim bound at once (the node's directory provisioner, see
//! [`crate::kubelet::claims`]), and the directories of deleted claims removed.

use serde_json::{Value, json};

use super::{create, ns_of, update_status};
use crate::app::App;
use crate::objects;
use crate::status::ApiResult;

pub fn pass(app: &App) -> ApiResult<()> {
    let (claims, _) = app.store.list("/persistentvolumeclaims", None)?;
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
    let claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({}))},
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    });
    match create(app, "", "persistentvolumeclaims", ns, claim) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
