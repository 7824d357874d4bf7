//! Applying one image layer (a tar, gzip or not) onto a directory, the way container
//! runtimes do: whiteouts delete, opaque markers hide the lower directory, and no entry
//! may land outside the root, even through symlinks an earlier layer planted.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, IoContext, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Linux's own limit on symlink hops during path resolution.
const MAX_SYMLINK_HOPS: usize = 40;

/// Apply the layer read from `reader` onto `root`. `layer` names it in errors.
pub fn apply_layer(root: &Path, reader: impl Read, layer: &str) -> Result<()> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered
        .fill_buf()
        .ctx(|| format!("reading layer {layer}"))?;
    let err = |reason: String| Error::Layer {
        layer: layer.to_string(),
        reason,
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        apply_tar(root, flate2::read::GzDecoder::new(buffered), layer)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(err(
            "zstd-compressed layers are not supported; rebuild the image with gzip layers".into(),
        ))
    } else {
        apply_tar(root, buffered, layer)
    }
}

fn apply_tar(root: &Path, reader: impl Read, layer: &str) -> Result<()> {
    let lerr = |reason: String| Error::Layer {
        layer: layer.to_string(),
        reason,
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    // Paths this layer wrote: an opaque marker hides only what lower layers left.
    let mut written: HashSet<PathBuf> = HashSet::new();
    let entries = archive
        .entries()
        .map_err(|e| lerr(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| lerr(format!("corrupt tar: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| lerr(format!("bad entry path: {e}")))?
            .into_owned();
        let Some(rel) = clean_relative(&raw).map_err(lerr)? else {
            continue; // the root directory itself
        };
        let name = rel.file_name().unwrap_or_default().to_owned();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == OsStr::new(OPAQUE_MARKER) {
            let dir = resolve_in_root(root, &parent_rel, true)?;
            clear_opaque(&dir, &parent_rel, &written)?;
            written.insert(parent_rel);
            continue;
        }
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let parent = resolve_in_root(root, &parent_rel, false)?;
            remove_any(&parent.join(OsStr::from_bytes(hidden)))?;
            continue;
        }
        let parent = resolve_in_root(root, &parent_rel, true)?;
        let dest = parent.join(&name);
        let kind = entry.header().entry_type();
        if let Ok(meta) = fs::symlink_metadata(&dest)
            && !(meta.is_dir() && kind.is_dir())
        {
            remove_any(&dest)?;
        }
        if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| lerr(format!("bad hard link in {}: {e}", rel.display())))?
                .ok_or_else(|| lerr(format!("hard link {} has no target", rel.display())))?
                .into_owned();
            let target_rel = clean_relative(&target)
                .map_err(lerr)?
                .ok_or_else(|| lerr(format!("hard link {} points at /", rel.display())))?;
            let tparent =
                resolve_in_root(root, target_rel.parent().unwrap_or(Path::new("")), false)?;
            let src = tparent.join(target_rel.file_name().unwrap_or_default());
            fs::hard_link(&src, &dest).ctx(|| {
                format!(
                    "layer {layer}: linking {} to {}",
                    rel.display(),
                    target_rel.display()
                )
            })?;
        } else {
            entry
                .unpack(&dest)
                .map_err(|e| lerr(format!("unpacking {}: {e}", rel.display())))?;
        }
        written.insert(rel);
    }
    Ok(())
}

/// `./a/b`, `/a/b` and `a/b` all become `a/b`; `..` is refused. `None` for the root itself.
pub(crate) fn clean_relative(p: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "entry {} uses `..`: refusing a path that could escape the root",
                    p.display()
                ));
            }
            Component::Prefix(_) => {
                return Err(format!("entry {} is not a unix path", p.display()));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Resolve directory `rel` as if `root` were `/`: symlinks (absolute or relative) are
/// followed inside the root and `..` stops at it. With `create`, missing directories are
/// made (0755); otherwise a missing one resolves to its would-be path.
pub(crate) fn resolve_in_root(root: &Path, rel: &Path, create: bool) -> Result<PathBuf> {
    let mut pending: Vec<PathBuf> = rel
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut stack: Vec<PathBuf> = Vec::new(); // resolved components below root
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.to_str() {
            Some("/") | Some(".") | Some("") => continue,
            Some("..") => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let current: PathBuf = root.join(stack.iter().collect::<PathBuf>()).join(&part);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(Error::Layer {
                        layer: root.display().to_string(),
                        reason: format!("too many symlinks resolving {}", rel.display()),
                    });
                }
                let target = fs::read_link(&current)
                    .ctx(|| format!("reading symlink {}", current.display()))?;
                if target.is_absolute() {
                    stack.clear();
                }
                for c in target.components().rev() {
                    pending.push(PathBuf::from(c.as_os_str()));
                }
            }
            Ok(m) if m.is_dir() => stack.push(part),
            Ok(_) => {
                return Err(Error::Layer {
                    layer: root.display().to_string(),
                    reason: format!(
                        "{} is not a directory but the layer puts entries below it",
                        current.display()
                    ),
                });
            }
            Err(_) if create => {
                fs::create_dir(&current).ctx(|| format!("creating {}", current.display()))?;
                stack.push(part);
            }
            Err(_) => stack.push(part),
        }
    }
    Ok(root.join(stack.iter().collect::<PathBuf>()))
}

fn clear_opaque(dir: &Path, dir_rel: &Path, written: &HashSet<PathBuf>) -> Result<()> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(());
    };
    for child in rd {
        let child = child.ctx(|| format!("listing {}", dir.display()))?;
        let child_rel = dir_rel.join(child.file_name());
        if !written.iter().any(|w| w.starts_with(&child_rel)) {
            remove_any(&child.path())?;
        }
    }
    Ok(())
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).ctx(|| format!("removing {}", p.display())),
        Ok(_) => fs::remove_file(p).ctx(|| format!("removing {}", p.display())),
        Err(_) => Ok(()),
    }
}
