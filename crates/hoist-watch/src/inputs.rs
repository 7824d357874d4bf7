//! A hash of everything a service's render depends on, so a reload can skip
//! rendering services whose inputs did not change (a kustomize or helm render
//! costs a process start, ~100–200 ms; 150 of them would make every config
//! edit slow).
//!
//! Inputs: the project name and registry, every service's image repository
//! (render fills image references across services), the service's manifest
//! (as parsed) and merged values, and the bytes of the molds directory (for a
//! service with a mold: templates may include other molds' files), its `k8s:`
//! files, its kustomize directory with the local directories and files its
//! kustomizations reference, and its helm chart and values files.

use std::path::{Path, PathBuf};

use hoist_config::files::{expand, walk};
use hoist_config::{Project, Service};
use sha2::{Digest, Sha256};

use crate::classify::{kustomize_inputs, normalize};

/// The render-inputs hash of `svc`. `molds` caches the hash of the molds
/// directory for one load (it is the same for every service).
pub(crate) fn render_inputs(
    project: &Project,
    svc: &Service,
    molds: &mut Option<String>,
) -> String {
    let mut h = Sha256::new();
    let field = |h: &mut Sha256, tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(&mut h, "v1", b"");
    field(&mut h, "project", project.config.name.as_bytes());
    field(
        &mut h,
        "registry",
        project.registry().unwrap_or("").as_bytes(),
    );
    for s in &project.services {
        let repo = project.image_repository(s).unwrap_or_default();
        field(&mut h, "image", format!("{}={repo}", s.name).as_bytes());
    }
    field(&mut h, "dir", svc.dir.as_os_str().as_encoded_bytes());
    field(
        &mut h,
        "spec",
        &serde_json::to_vec(&svc.spec).unwrap_or_default(),
    );
    field(
        &mut h,
        "values",
        &serde_json::to_vec(&svc.values).unwrap_or_default(),
    );
    field(&mut h, "overridden", &[svc.image_overridden as u8]);

    if svc.spec.mold.is_some() {
        let all = molds.get_or_insert_with(|| {
            let mut h = Sha256::new();
            for f in tree(&project.root.join(&project.config.molds)) {
                hash_file(&mut h, &f);
            }
            hex::encode(h.finalize())
        });
        field(&mut h, "molds", all.as_bytes());
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in &svc.spec.k8s {
        files.extend(expand(&svc.dir, pattern).unwrap_or_default());
    }
    if let Some(k) = &svc.spec.kustomize {
        for p in kustomize_inputs(&normalize(&svc.dir.join(k))) {
            files.extend(tree(&p));
        }
    }
    if let Some(helm) = &svc.spec.helm {
        files.extend(tree(&svc.dir.join(&helm.chart)));
        files.extend(helm.values_files.iter().map(|f| svc.dir.join(f)));
    }
    files.sort();
    files.dedup();
    for f in files {
        hash_file(&mut h, &f);
    }
    hex::encode(h.finalize())
}

fn hash_file(h: &mut Sha256, f: &Path) {
    let path = f.as_os_str().as_encoded_bytes();
    h.update((path.len() as u64).to_le_bytes());
    h.update(path);
    // A FIFO (or socket, device) would block the read for ever: its kind is all there is.
    match std::fs::metadata(f) {
        Ok(m) if !m.is_file() => {
            h.update(format!("not a regular file: {:?}", m.file_type()).as_bytes());
            return;
        }
        _ => {}
    }
    match std::fs::read(f) {
        Ok(bytes) => {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        Err(e) => h.update(format!("unreadable: {e}").as_bytes()),
    }
}

/// A file, or every file under a directory.
fn tree(p: &Path) -> Vec<PathBuf> {
    if p.is_dir() {
        walk(p).unwrap_or_default()
    } else {
        vec![p.to_path_buf()]
    }
}
