//! File selection shared by render, the content tag and image builds:
//! walking directories in a stable order and matching globs.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

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

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// Include/exclude globs in gitignore style: a pattern without `/` matches the
/// file name at any depth; one with `/` matches the whole relative path.
pub struct PathFilter {
    by_name: GlobSet,
    by_path: GlobSet,
    empty: bool,
}

impl PathFilter {
    pub fn new(patterns: &[String]) -> Result<PathFilter, globset::Error> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for p in patterns {
            if p.contains('/') {
                by_path.add(glob(p.trim_start_matches("./"))?);
            } else {
                by_name.add(glob(p)?);
            }
        }
        Ok(PathFilter {
            by_name: by_name.build()?,
            by_path: by_path.build()?,
            empty: patterns.is_empty(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    pub fn matches(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.by_name.is_match(name) || self.by_path.is_match(rel)
    }
}

/// A file chosen for a layer: where it is on the host and where it goes in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    pub host: PathBuf,
    /// Path relative to the layer's `from` (`/`-separated; the file name when
    /// `from` is a file). Its place in the image is `to` joined with this.
    pub rel: String,
}

/// The files one layer copies, in a stable order, after include/exclude.
pub fn layer_files(service_dir: &Path, layer: &LayerSpec) -> Result<Vec<LayerFile>, String> {
    let from = service_dir.join(&layer.from);
    let meta = std::fs::symlink_metadata(&from).map_err(|e| format!("{}: {e}", from.display()))?;
    let include = PathFilter::new(&layer.include).map_err(|e| e.to_string())?;
    let exclude = PathFilter::new(&layer.exclude).map_err(|e| e.to_string())?;
    let keep = |rel: &str| (include.is_empty() || include.matches(rel)) && !exclude.matches(rel);
    if !meta.is_dir() {
        let rel = from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(if keep(&rel) {
            vec![LayerFile { host: from, rel }]
        } else {
            vec![]
        });
    }
    let files = walk(&from).map_err(|e| format!("{}: {e}", from.display()))?;
    Ok(files
        .into_iter()
        .map(|host| {
            let rel = rel_slash(&host, &from);
            LayerFile { host, rel }
        })
        .filter(|f| keep(&f.rel))
        .collect())
}

/// Expands a `k8s:` entry (a file or a glob relative to `dir`) to sorted files.
/// A glob may match nothing (the caller reports it); a plain path is returned as is.
pub fn expand(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    if !pattern.contains(['*', '?', '[', '{']) {
        return Ok(vec![dir.join(pattern)]);
    }
    let g = glob(pattern.trim_start_matches("./"))
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
    fn layer_files_apply_include_and_exclude() {
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
        let rels: Vec<String> = layer_files(tmp.path(), &layer)
            .unwrap()
            .into_iter()
            .map(|f| f.rel)
            .collect();
        assert_eq!(rels, ["index.html", "sub/b.css"]);
        assert!(
            layer_files(
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
