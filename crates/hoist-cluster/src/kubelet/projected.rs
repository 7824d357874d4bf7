//! `projected` volumes: several sources in one directory — `configMap`, `secret` and
//! `downwardAPI` items, as the kubelet projects them (files written when a container
//! starts; downwardAPI label/annotation files are not refreshed here). A
//! `serviceAccountToken` source is refused with a clear error: this cluster issues no
//! tokens and would have to fake one.

use std::path::Path;

use base64::Engine;
use serde_json::Value;

use crate::storage::Store;

/// Writes every source of the projected volume `src` into `dir`.
pub(super) fn write(
    pod: &Value,
    src: &Value,
    dir: &Path,
    store: &Store,
    ns: &str,
) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let default_mode = src["defaultMode"].as_u64().unwrap_or(0o644) as u32;
    for (i, source) in src["sources"].as_array().into_iter().flatten().enumerate() {
        if let Some(d) = source.get("downwardAPI") {
            let mut d = d.clone();
            if d.get("defaultMode").is_none() {
                d["defaultMode"] = default_mode.into();
            }
            super::downward::write_volume(pod, &d, dir)?;
        } else if let Some((obj_src, key, secret)) = source
            .get("configMap")
            .map(|c| (c, "/configmaps", false))
            .or_else(|| source.get("secret").map(|s| (s, "/secrets", true)))
        {
            write_object(obj_src, key, secret, dir, store, ns, default_mode)?;
        } else if source.get("serviceAccountToken").is_some() {
            return Err(
                "projected serviceAccountToken sources are not supported (the hoist cluster issues \
                 no service account tokens); drop the source, or set \
                 automountServiceAccountToken: false if it came from a copied manifest"
                    .into(),
            );
        } else {
            return Err(format!(
                "projected source {i} has no configMap, secret or downwardAPI (clusterTrustBundle \
                 and other sources are not supported)"
            ));
        }
    }
    Ok(())
}

fn write_object(
    src: &Value,
    key: &str,
    secret: bool,
    dir: &Path,
    store: &Store,
    ns: &str,
    default_mode: u32,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let what = if secret { "secret" } else { "configmap" };
    let name = src["name"].as_str().unwrap_or("");
    let optional = src["optional"].as_bool() == Some(true);
    let Some(obj) = store.get(key, ns, name).map_err(|e| e.to_string())? else {
        return if optional {
            Ok(())
        } else {
            Err(format!("{what} {name:?} not found"))
        };
    };
    let data = obj["data"].as_object().cloned().unwrap_or_default();
    let items: Vec<(String, String, Option<u32>)> = match src["items"].as_array() {
        Some(items) => items
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap_or("").to_string(),
                    i["path"].as_str().unwrap_or("").to_string(),
                    i["mode"].as_u64().map(|m| m as u32),
                )
            })
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone(), None)).collect(),
    };
    for (k, rel, mode) in items {
        if rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|s| s == "..") {
            return Err(format!("{what} {name:?}: item path {rel:?} is invalid"));
        }
        let Some(value) = data.get(&k).and_then(Value::as_str) else {
            if optional {
                continue;
            }
            return Err(format!("{what} {name:?}: key {k:?} not found"));
        };
        let bytes = if secret {
            base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|e| format!("{what} {name:?}: key {k:?}: {e}"))?
        } else {
            value.as_bytes().to_vec()
        };
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(mode.unwrap_or(default_mode)),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
