//! The `hoist` kubeconfig context: built from the PKI, merged into the user's kubeconfig
//! without touching other entries (the previous file is kept as `<file>.hoist-backup`).

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_norway::{Mapping, Value};

use crate::tls::Pki;

pub const CONTEXT: &str = "hoist";

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid kubeconfig (YAML): {detail}; fix or move it, then run `hoist cluster up` again"
    )]
    Parse { path: PathBuf, detail: String },
}

/// A standalone kubeconfig with cluster, user and context `hoist`.
pub fn standalone(server: &str, pki: &Pki) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\npreferences: {{}}\nclusters:\n- name: {CONTEXT}\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {CONTEXT}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: {CONTEXT}\n  context:\n    cluster: {CONTEXT}\n    user: {CONTEXT}\ncurrent-context: {CONTEXT}\n",
        b64(&pki.ca_cert),
        b64(&pki.client_cert),
        b64(&pki.client_key)
    )
}

/// The kubeconfig file to write: the first entry of `$KUBECONFIG`, else `~/.kube/config`.
pub fn target_path() -> Option<PathBuf> {
    if let Ok(k) = std::env::var("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&k).find(|p| !p.as_os_str().is_empty())
    {
        return Some(first);
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"))
}

fn upsert(list: &mut Vec<Value>, name: &str, entry: Value) {
    let key = Value::String("name".into());
    match list
        .iter_mut()
        .find(|e| e.get(&key).and_then(Value::as_str) == Some(name))
    {
        Some(e) => *e = entry,
        None => list.push(entry),
    }
}

/// Merges our entries into `existing` kubeconfig text, returning the new text.
pub fn merge(existing: &str, ours: &str) -> Result<String, String> {
    let mut doc: Value = if existing.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_norway::from_str(existing).map_err(|e| e.to_string())?
    };
    if doc.is_null() {
        doc = Value::Mapping(Mapping::new());
    }
    let ours: Value = serde_norway::from_str(ours).map_err(|e| e.to_string())?;
    let map = doc
        .as_mapping_mut()
        .ok_or("the top level is not a mapping")?;
    for (k, v) in [("apiVersion", "v1"), ("kind", "Config")] {
        map.entry(Value::String(k.into()))
            .or_insert(Value::String(v.into()));
    }
    for section in ["clusters", "users", "contexts"] {
        let key = Value::String(section.into());
        let entry = ours
            .get(&key)
            .and_then(Value::as_sequence)
            .and_then(|s| s.first())
            .cloned()
            .ok_or("internal: our kubeconfig lacks a section")?;
        let list = map
            .entry(key.clone())
            .or_insert(Value::Sequence(Vec::new()));
        if list.is_null() {
            *list = Value::Sequence(Vec::new());
        }
        let seq = list
            .as_sequence_mut()
            .ok_or(format!("`{section}` is not a list"))?;
        upsert(seq, CONTEXT, entry);
    }
    map.insert(
        Value::String("current-context".into()),
        Value::String(CONTEXT.into()),
    );
    serde_norway::to_string(&doc).map_err(|e| e.to_string())
}

/// Writes our context into `path` (created if missing), keeping a backup of the old file.
pub fn write_merged(path: &Path, server: &str, pki: &Pki) -> Result<(), KubeconfigError> {
    let io = |source| KubeconfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let merged =
        merge(&existing, &standalone(server, pki)).map_err(|detail| KubeconfigError::Parse {
            path: path.to_path_buf(),
            detail,
        })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    if !existing.is_empty() {
        let mut backup = path.as_os_str().to_owned();
        backup.push(".hoist-backup");
        std::fs::write(PathBuf::from(backup), &existing).map_err(io)?;
    }
    let tmp = path.with_extension("hoist-tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        std::io::Write::write_all(&mut f, merged.as_bytes()).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_contexts() {
        let existing = "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod\nusers:\n- name: me\n  user: {}\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: me\ncurrent-context: prod\n";
        let ours = "clusters:\n- name: hoist\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: hoist\n  user: {}\ncontexts:\n- name: hoist\n  context:\n    cluster: hoist\n    user: hoist\n";
        let merged = merge(existing, ours).unwrap();
        let v: Value = serde_norway::from_str(&merged).unwrap();
        let names = |s: &str| -> Vec<String> {
            v[s].as_sequence()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names("contexts"), ["prod", "hoist"]);
        assert_eq!(names("clusters"), ["prod", "hoist"]);
        assert_eq!(v["current-context"].as_str(), Some("hoist"));
        // Merging twice replaces our entry instead of duplicating it.
        let again: Value = serde_norway::from_str(&merge(&merged, ours).unwrap()).unwrap();
        assert_eq!(again["contexts"].as_sequence().unwrap().len(), 2);
    }
}
