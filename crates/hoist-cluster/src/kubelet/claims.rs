//! PersistentVolumeClaims on the dev cluster's one node: each claim is backed by a
//! directory of its own, `<kubelet dir>/claims/<claim uid>`, created on first mount and
//! kept while the claim exists — so a StatefulSet pod that is replaced (or rescheduled
//! after a cluster restart) finds its ordinal's data again. There are no
//! PersistentVolumes, StorageClasses or capacity limits: a claim's requested size is
//! reported, not enforced.

use std::path::{Path, PathBuf};

/// Where claims live, next to the pods directory (which a restart wipes; claims stay).
pub fn claims_root(pods_dir: &Path) -> PathBuf {
    pods_dir.parent().unwrap_or(pods_dir).join("claims")
}

/// The directory backing the claim with `uid`.
pub fn claim_dir(pods_dir: &Path, uid: &str) -> PathBuf {
    claims_root(pods_dir).join(uid)
}

/// The directory for a pod's `persistentVolumeClaim` volume source, created if needed.
pub fn prepare(
    source: &serde_json::Value,
    pods_dir: &Path,
    store: &crate::storage::Store,
    ns: &str,
) -> Result<PathBuf, String> {
    let claim = source["claimName"].as_str().unwrap_or("");
    let obj = store
        .get("/persistentvolumeclaims", ns, claim)
        .map_err(|e| e.to_string())?
        .filter(|c| !crate::objects::is_deleting(c))
        .ok_or_else(|| format!("persistentvolumeclaim {claim:?} not found"))?;
    let uid = crate::objects::meta_str(&obj, "uid").unwrap_or("");
    if uid.is_empty() || uid.contains('/') || uid.contains("..") {
        return Err(format!("persistentvolumeclaim {claim:?} has no valid uid"));
    }
    let dir = claim_dir(pods_dir, uid);
    std::fs::create_dir_all(&dir).map_err(|e| {
        format!(
            "persistentvolumeclaim {claim:?}: creating {}: {e}",
            dir.display()
        )
    })?;
    Ok(dir)
}

/// Removes the directories of claims that no longer exist (`live`: uids of stored claims).
pub fn remove_unclaimed(pods_dir: &Path, live: &[&str]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(claims_root(pods_dir)) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !live.contains(&name.as_str()) && std::fs::remove_dir_all(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_of_deleted_claims_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let pods = dir.path().join("pods");
        for uid in ["a", "b"] {
            std::fs::create_dir_all(claim_dir(&pods, uid)).unwrap();
        }
        let removed = remove_unclaimed(&pods, &["a"]);
        assert_eq!(removed, vec![claim_dir(&pods, "b")]);
        assert!(claim_dir(&pods, "a").is_dir());
    }
}
