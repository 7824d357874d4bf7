//! File selection shared by render, the content tag and image builds:
//! walking directories in a stable order and matching globs.

use std::path::{Path, PathBuf};

use hoist_fileset::{FileSet, LayerEntry};

use crate::manifest::LayerSpec;

/// Every file under `dir` (recursively), sorted by path. Symlinks are listed,
/// not followed.
pub fn walk(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `a/b/c` relative path with `/` separators.
pub fn rel_slash(path: &Path, base: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The entries one layer takes, in the order of its tar: exactly those the image build
/// writes ([`hoist_fileset::entries`] under the same [`FileSet`] rules: include/exclude,
/// ignore files; a source that is a symlink stands for its target). A FIFO, socket or
/// device in the source is an error ([`hoist_fileset::WalkError::Special`]), never opened.
pub fn layer_entries(
    service_dir: &Path,
    layer: &LayerSpec,
) -> Result<Vec<LayerEntry>, LayerEntriesError> {
    let from = service_dir.join(&layer.from);
    let set = FileSet::for_dir(&from, &layer.include, &layer.exclude)?;
    Ok(hoist_fileset::entries(&from, &set)?)
}

/// Why [`layer_entries`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerEntriesError {
    #[error(transparent)]
    Glob(#[from] hoist_fileset::InvalidGlob),
    #[error(transparent)]
    Walk(#[from] hoist_fileset::WalkError),
}

/// Expands a `k8s:` entry (a file or a glob relative to `dir`) to sorted files.
/// A glob may match nothing (the caller reports it); a plain path is returned as is.
pub fn expand(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    if !pattern.contains(['*', '?', '[', '{']) {
        return Ok(vec![dir.join(pattern)]);
    }
    let g = globset::GlobBuilder::new(pattern.trim_start_matches("./"))
        .literal_separator(true)
        .build()
        .map_err(|e| e.to_string())?
        .compile_matcher();
    let files = walk(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(files
        .into_iter()
        .filter(|f| g.is_match(rel_slash(f, dir)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_entries_apply_include_and_exclude() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("public");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for f in ["index.html", "x.tmp", "sub/a.html", "sub/b.css"] {
            std::fs::write(d.join(f), f).unwrap();
        }
        let layer = LayerSpec {
            from: "./public".into(),
            to: "/www".into(),
            include: vec!["*.html".into(), "sub/*.css".into()],
            exclude: vec!["a.html".into()],
        };
        let rels: Vec<String> = layer_entries(tmp.path(), &layer)
            .unwrap()
            .into_iter()
            .map(|f| f.rel)
            .collect();
        assert_eq!(rels, ["", "index.html", "sub", "sub/b.css"]);
        assert!(
            layer_entries(
                tmp.path(),
                &LayerSpec {
                    from: "nope".into(),
                    ..layer
                }
            )
            .is_err()
        );
    }

    #[test]
    fn expand_globs_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("k8s")).unwrap();
        for f in ["b.yaml", "a.yaml", "c.txt"] {
            std::fs::write(tmp.path().join("k8s").join(f), "").unwrap();
        }
        let got = expand(tmp.path(), "k8s/*.yaml").unwrap();
        let names: Vec<String> = got.iter().map(|p| rel_slash(p, tmp.path())).collect();
        assert_eq!(names, ["k8s/a.yaml", "k8s/b.yaml"]);
    }
}
