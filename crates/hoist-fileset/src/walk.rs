//! What a layer takes from its source: the one walk that both the layer builder
//! (hoist-oci) writes and the content tag (hoist-config) hashes, entry for entry, so the
//! two cannot disagree on what goes into an image (a directory, a mode, a link target).

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::FileSet;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File {
        size: u64,
        /// File capabilities (`setcap`), kept as Docker keeps them.
        capability: Option<Vec<u8>>,
    },
    Symlink {
        target: PathBuf,
    },
}

/// One entry of a layer, as the layer builder writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// `/`-separated path relative to the source: `""` for a directory source itself, the
    /// file's name for a single-file source.
    pub rel: String,
    /// Where it is on the host.
    pub host: PathBuf,
    /// Permission bits with setuid/setgid/sticky (`mode & 0o7777`); 0o777 for a symlink.
    pub mode: u32,
    pub kind: EntryKind,
}

/// Why a source cannot be walked.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("{} is a symlink to {}, which does not exist", path.display(), target.display())]
    Dangling { path: PathBuf, target: PathBuf },
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("file name {name:?} in {} is not UTF-8", dir.display())]
    NotUtf8 { dir: PathBuf, name: String },
    /// A FIFO, socket or device: never opened (reading a FIFO would wait for a writer
    /// for ever).
    #[error(
        "{} is a {kind}: a layer holds only files, directories and symlinks; exclude it (a layer's `exclude:`, .hoistignore or .dockerignore)",
        path.display()
    )]
    Special { path: PathBuf, kind: &'static str },
}

impl WalkError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            WalkError::Missing { path }
            | WalkError::Dangling { path, .. }
            | WalkError::Io { path, .. }
            | WalkError::Special { path, .. } => path,
            WalkError::NotUtf8 { dir, .. } => dir,
        }
    }
}

/// The entries a layer takes from `source` under the rules `set`, sorted by `rel` (the
/// order of the tar).
///
/// A source that is a symlink stands for its target, as with Docker's COPY; symlinks
/// inside a directory stay links. A directory source gives itself (`rel` `""`), then every
/// directory under it that is not excluded (empty ones too), and every taken file and
/// symlink. With include patterns, or inside an excluded directory (which a walk enters
/// only when a `!` rule may take something back), a directory appears only when it holds
/// a taken entry. A single-file source gives itself, named by its file name, when taken.
pub fn entries(source: &Path, set: &FileSet) -> Result<Vec<LayerEntry>, WalkError> {
    let meta = source_metadata(source)?;
    let mut out = Vec::new();
    if meta.is_dir() {
        out.push(LayerEntry {
            rel: String::new(),
            host: source.to_path_buf(),
            mode: mode_of(&meta),
            kind: EntryKind::Dir,
        });
        walk(source, "", set, &mut out)?;
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
    } else {
        let rel = (source.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if set.takes(&rel) {
            out.push(entry_for(source, &meta, rel)?);
        }
    }
    Ok(out)
}

/// A layer source's metadata, a symlink followed (it stands for its target); else
/// [`WalkError::Missing`], or [`WalkError::Dangling`] for a link to nothing.
pub fn source_metadata(source: &Path) -> Result<fs::Metadata, WalkError> {
    fs::metadata(source).map_err(|_| match fs::read_link(source) {
        Ok(target) => WalkError::Dangling {
            path: source.to_path_buf(),
            target,
        },
        Err(_) => WalkError::Missing {
            path: source.to_path_buf(),
        },
    })
}

fn walk(dir: &Path, rel: &str, set: &FileSet, out: &mut Vec<LayerEntry>) -> Result<(), WalkError> {
    let io = |source| WalkError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut children = fs::read_dir(dir)
        .map_err(io)?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io)?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let name = child.file_name();
        let name = name.to_str().ok_or_else(|| WalkError::NotUtf8 {
            dir: dir.to_path_buf(),
            name: child.file_name().to_string_lossy().into_owned(),
        })?;
        let child_rel = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let excluded = set.excludes(&child_rel);
        if excluded && !set.has_take_backs() {
            continue;
        }
        let path = child.path();
        let meta = fs::symlink_metadata(&path).map_err(|source| WalkError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let before = out.len();
            walk(&path, &child_rel, set, out)?;
            if (!set.has_includes() && !excluded) || out.len() > before {
                out.push(LayerEntry {
                    rel: child_rel,
                    host: path,
                    mode: mode_of(&meta),
                    kind: EntryKind::Dir,
                });
            }
        } else if !excluded && set.includes(&child_rel) {
            // (`FileSet::takes`, with the excludes already matched above.)
            out.push(entry_for(&path, &meta, child_rel)?);
        }
    }
    Ok(())
}

/// A file or symlink entry; anything else is refused without being opened.
fn entry_for(path: &Path, meta: &fs::Metadata, rel: String) -> Result<LayerEntry, WalkError> {
    let ty = meta.file_type();
    let kind = if ty.is_symlink() {
        let target = fs::read_link(path).map_err(|source| WalkError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        return Ok(LayerEntry {
            rel,
            host: path.to_path_buf(),
            mode: 0o777,
            kind: EntryKind::Symlink { target },
        });
    } else if ty.is_file() {
        EntryKind::File {
            size: meta.len(),
            capability: crate::file_capability(path),
        }
    } else {
        let kind = if ty.is_fifo() {
            "named pipe (FIFO)"
        } else if ty.is_socket() {
            "socket"
        } else if ty.is_block_device() {
            "block device"
        } else if ty.is_char_device() {
            "character device"
        } else {
            "special file"
        };
        return Err(WalkError::Special {
            path: path.to_path_buf(),
            kind,
        });
    };
    Ok(LayerEntry {
        rel,
        host: path.to_path_buf(),
        mode: mode_of(meta),
        kind,
    })
}

fn mode_of(meta: &fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(source: &Path, set: &FileSet) -> Vec<String> {
        let list = entries(source, set).unwrap();
        list.into_iter().map(|e| e.rel).collect()
    }

    fn v(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn directories_appear_unless_excluded_or_empty_of_included_files() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("empty")).unwrap();
        fs::create_dir_all(r.join("tmp-only")).unwrap();
        fs::create_dir_all(r.join("gone/deep")).unwrap();
        fs::write(r.join("tmp-only/x.tmp"), "x").unwrap();
        fs::write(r.join("gone/deep/a.html"), "a").unwrap();
        fs::write(r.join("a.html"), "a").unwrap();
        let all = FileSet::for_patterns(&[], &v(&["*.tmp", "gone"])).unwrap();
        assert_eq!(rels(r, &all), ["", "a.html", "empty", "tmp-only"]);
        let html = FileSet::for_patterns(&v(&["*.html"]), &[]).unwrap();
        assert_eq!(
            rels(r, &html),
            ["", "a.html", "gone", "gone/deep", "gone/deep/a.html"]
        );
        let back = FileSet::for_patterns(&[], &v(&["gone", "!gone/deep/a.html"])).unwrap();
        assert_eq!(
            rels(r, &back),
            [
                "",
                "a.html",
                "empty",
                "gone",
                "gone/deep",
                "gone/deep/a.html",
                "tmp-only",
                "tmp-only/x.tmp"
            ]
        );
    }

    #[test]
    fn modes_links_and_single_files() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::write(r.join("f"), "abc").unwrap();
        fs::set_permissions(r.join("f"), fs::Permissions::from_mode(0o4750)).unwrap();
        std::os::unix::fs::symlink("f", r.join("l")).unwrap();
        let list = entries(r, &FileSet::default()).unwrap();
        assert_eq!(list[1].mode, 0o4750);
        assert_eq!(
            list[1].kind,
            EntryKind::File {
                size: 3,
                capability: None
            }
        );
        assert_eq!(
            (list[2].mode, &list[2].kind),
            (0o777, &EntryKind::Symlink { target: "f".into() })
        );
        // A link as the source stands for its target, named by the link.
        let one = entries(&r.join("l"), &FileSet::default()).unwrap();
        assert_eq!((one[0].rel.as_str(), one[0].mode), ("l", 0o4750));
        let none = FileSet::for_patterns(&[], &v(&["l"])).unwrap();
        assert!(entries(&r.join("l"), &none).unwrap().is_empty());
        let e = entries(&r.join("nope"), &FileSet::default()).unwrap_err();
        assert!(matches!(e, WalkError::Missing { .. }), "{e}");
    }

    /// A FIFO is refused by its kind without being opened (opening it would block until a
    /// writer comes); an excluded one is not looked at.
    #[test]
    fn a_fifo_is_refused_without_being_opened() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::write(r.join("a"), "a").unwrap();
        let fifo = r.join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = entries(r, &FileSet::default()).unwrap_err();
        assert_eq!(e.path(), fifo);
        let msg = e.to_string();
        assert!(
            msg.contains("pipe is a named pipe (FIFO)") && msg.contains("exclude it"),
            "{msg}"
        );
        assert!(entries(&fifo, &FileSet::default()).is_err());
        let set = FileSet::for_patterns(&[], &v(&["pipe"])).unwrap();
        assert_eq!(rels(r, &set), ["", "a"]);
    }
}
