//! Pod volumes as bind mounts: emptyDir (a directory in the sandbox, kept across container
//! restarts), configMap and secret (files written from the object's data when a container
//! starts; later edits are not propagated), downwardAPI (label/annotation changes are
//! propagated by the pod worker), projected (configMap, secret and downwardAPI sources),
//! hostPath.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use hoist_runtime::BindMount;
use serde_json::Value;

use crate::storage::Store;

/// Makes every volume of `pod` available on the host; returns name → host path.
pub fn prepare(
    pod: &Value,
    sandbox_dir: &Path,
    store: &Store,
    ns: &str,
) -> Result<HashMap<String, PathBuf>, String> {
    let mut out = HashMap::new();
    for v in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = v["name"].as_str().unwrap_or("");
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(format!("volume name {name:?} is invalid"));
        }
        let dir = sandbox_dir.join("volumes").join(name);
        let io = |e: std::io::Error| format!("volume {name:?}: {e}");
        if let Some(src) = v.get("downwardAPI") {
            super::downward::write_volume(pod, src, &dir)
                .map_err(|e| format!("volume {name:?}: {e}"))?;
            out.insert(name.to_string(), dir);
            continue;
        }
        if let Some(src) = v.get("projected") {
            super::projected::write(pod, src, &dir, store, ns)
                .map_err(|e| format!("volume {name:?}: {e}"))?;
            out.insert(name.to_string(), dir);
            continue;
        }
        if v.get("emptyDir").is_some() {
            std::fs::create_dir_all(&dir).map_err(io)?;
            out.insert(name.to_string(), dir);
        } else if let Some(hp) = v.get("hostPath") {
            let path = PathBuf::from(hp["path"].as_str().unwrap_or(""));
            if hp["type"].as_str() == Some("DirectoryOrCreate") {
                std::fs::create_dir_all(&path).map_err(io)?;
            }
            out.insert(name.to_string(), path);
        } else if let Some((src, key, secret)) = v
            .get("configMap")
            .map(|c| (c, "/configmaps", false))
            .or_else(|| v.get("secret").map(|s| (s, "/secrets", true)))
        {
            let obj_name = src[if secret { "secretName" } else { "name" }]
                .as_str()
                .unwrap_or("");
            let optional = src["optional"].as_bool() == Some(true);
            let obj = store.get(key, ns, obj_name).map_err(|e| e.to_string())?;
            let Some(obj) = obj.or_else(|| optional.then(|| serde_json::json!({}))) else {
                return Err(format!(
                    "{} {obj_name:?} for volume {name:?} not found",
                    if secret { "secret" } else { "configmap" }
                ));
            };
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(io)?;
            let data = obj["data"].as_object().cloned().unwrap_or_default();
            let items: Vec<(String, String)> = match src["items"].as_array() {
                Some(items) => items
                    .iter()
                    .map(|i| {
                        (
                            i["key"].as_str().unwrap_or("").to_string(),
                            i["path"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (k, rel) in items {
                if rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|s| s == "..") {
                    return Err(format!("volume {name:?}: item path {rel:?} is invalid"));
                }
                let Some(value) = data.get(&k).and_then(Value::as_str) else {
                    return Err(format!("volume {name:?}: key {k:?} not found"));
                };
                let bytes = if secret {
                    base64::engine::general_purpose::STANDARD
                        .decode(value)
                        .map_err(|e| format!("volume {name:?}: key {k:?}: {e}"))?
                } else {
                    value.as_bytes().to_vec()
                };
                let path = dir.join(&rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::write(&path, bytes).map_err(io)?;
            }
            out.insert(name.to_string(), dir);
        } else if let Some(pvc) = v.get("persistentVolumeClaim") {
            let pods_dir = sandbox_dir.parent().unwrap_or(sandbox_dir);
            let dir = super::claims::prepare(pvc, pods_dir, store, ns)
                .map_err(|e| format!("volume {name:?}: {e}"))?;
            out.insert(name.to_string(), dir);
        } else {
            return Err(format!(
                "volume {name:?}: only emptyDir, configMap, secret, downwardAPI, projected, hostPath and persistentVolumeClaim volumes are supported"
            ));
        }
    }
    Ok(out)
}

/// The container's volumeMounts as bind mounts.
pub fn mounts(
    container: &Value,
    volumes: &HashMap<String, PathBuf>,
) -> Result<Vec<BindMount>, String> {
    let mut out = Vec::new();
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or("");
        let source = volumes
            .get(name)
            .ok_or_else(|| format!("volumeMount {name:?} names no volume of the pod"))?;
        let source = match m["subPath"].as_str().filter(|s| !s.is_empty()) {
            Some(sub) if !sub.split('/').any(|s| s == "..") => source.join(sub),
            Some(sub) => return Err(format!("subPath {sub:?} is invalid")),
            None => source.clone(),
        };
        out.push(BindMount {
            source,
            destination: m["mountPath"].as_str().unwrap_or("").to_string(),
            readonly: m["readOnly"].as_bool() == Some(true),
        });
    }
    Ok(out)
}
