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
    // Owners need root; a rootless unpack (tests, tools) keeps its own uid instead of failing.
    archive.set_preserve_ownerships(crate::sys::geteuid() == 0);
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
            let capability = kind.is_file().then(|| capability_of(&mut entry)).flatten();
            entry
                .unpack(&dest)
                .map_err(|e| lerr(format!("unpacking {}: {e}", rel.display())))?;
            // After the unpack: changing a file's owner drops its capabilities.
            if let Some(cap) = capability {
                set_capability(&dest, &cap, &rel, layer)?;
            }
        }
        written.insert(rel);
    }
    Ok(())
}

/// The file capabilities an entry carries (Docker's `SCHILY.xattr.security.capability`
/// PAX record). Other extended attributes are not applied.
fn capability_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<Vec<u8>> {
    let records = entry.pax_extensions().ok().flatten()?;
    records
        .flatten()
        .find(|r| r.key() == Ok(hoist_fileset::CAPABILITY_PAX_RECORD))
        .map(|r| r.value_bytes().to_vec())
}

/// Gives the unpacked file its capabilities. Without the privilege to (an unpack as
/// another user than root) or on a file system without extended attributes, the file is
/// kept without them and a warning says so, as containerd does.
fn set_capability(dest: &Path, cap: &[u8], rel: &Path, layer: &str) -> Result<()> {
    match hoist_fileset::set_file_capability(dest, cap) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) => {
            tracing::warn!(layer, file = %rel.display(), "file capabilities not kept: {e}");
            Ok(())
        }
        Err(e) => Err(Error::Layer {
            layer: layer.to_string(),
            reason: format!("setting the file capabilities of {}: {e}", rel.display()),
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    enum E<'a> {
        Dir(&'a str, u32),
        File(&'a str, &'a str, u32),
        Link(&'a str, &'a str),
        Hard(&'a str, &'a str),
    }

    /// A tar with names written raw (tar::Builder refuses `..`, which we must test).
    fn tar(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            let (name, data, kind, mode, link): (&str, &[u8], tar::EntryType, u32, Option<&str>) =
                match e {
                    E::Dir(n, m) => (n, b"", tar::EntryType::Directory, *m, None),
                    E::File(n, d, m) => (n, d.as_bytes(), tar::EntryType::Regular, *m, None),
                    E::Link(n, t) => (n, b"", tar::EntryType::Symlink, 0o777, Some(t)),
                    E::Hard(n, t) => (n, b"", tar::EntryType::Link, 0o644, Some(t)),
                };
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn whiteouts_opaque_dirs_modes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let l1 = tar(&[
            E::Dir("a/", 0o755),
            E::File("a/x", "x1", 0o644),
            E::File("a/y", "y1", 0o4755),
            E::Dir("o/", 0o700),
            E::File("o/old", "old", 0o644),
            E::Dir("o/sub/", 0o755),
            E::Link("bin/sh", "busybox"),
            E::File("bin/busybox", "bb", 0o755),
            E::Hard("bin/bb2", "bin/busybox"),
            E::File("f-becomes-dir", "f", 0o644),
        ]);
        apply_layer(root, &gz(&l1)[..], "l1").unwrap();
        assert_eq!(read(&root.join("a/x")), "x1");
        assert_eq!(
            fs::metadata(root.join("a/y")).unwrap().permissions().mode() & 0o7777,
            0o4755
        );
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(read(&root.join("bin/bb2")), "bb");
        assert_eq!(
            fs::metadata(root.join("o")).unwrap().permissions().mode() & 0o777,
            0o700
        );

        // Uncompressed layer: whiteout, opaque dir (new content survives), type change.
        let l2 = tar(&[
            E::File("a/.wh.x", "", 0o644),
            E::File("o/new", "new", 0o644),
            E::File("o/.wh..wh..opq", "", 0o644),
            E::Dir("f-becomes-dir/", 0o755),
            E::File("f-becomes-dir/inner", "i", 0o644),
            E::File(".wh.missing", "", 0o644),
        ]);
        apply_layer(root, &l2[..], "l2").unwrap();
        assert!(!root.join("a/x").exists());
        assert_eq!(read(&root.join("a/y")), "y1");
        assert_eq!(read(&root.join("o/new")), "new");
        assert!(!root.join("o/old").exists() && !root.join("o/sub").exists());
        assert!(!root.join("o/.wh..wh..opq").exists());
        assert_eq!(read(&root.join("f-becomes-dir/inner")), "i");
    }

    /// A layer hoist built from a file with `setcap cap_net_bind_service=+ep` (owner
    /// 1000): unpacked, the file has its capabilities again, set after its owner.
    #[test]
    fn file_capabilities_are_applied() {
        let src = tempfile::tempdir().unwrap();
        let f = src.path().join("server");
        fs::write(&f, "#!/bin/sh\n").unwrap();
        let out = std::process::Command::new("setcap")
            .arg("cap_net_bind_service=+ep")
            .arg(&f)
            .output()
            .expect("setcap is installed (libcap2-bin, scripts/install-deps)");
        assert!(out.status.success(), "setcap: {out:?} (needs root)");
        let cap = hoist_fileset::file_capability(&f).unwrap();
        let layer = hoist_oci::LayerBuilder::new()
            .owner(1000, 1000)
            .add(&hoist_oci::LayerSpec {
                from: f.clone(),
                to: "/bin/server".into(),
                ..Default::default()
            })
            .unwrap()
            .build()
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        apply_layer(root.path(), &layer.read().unwrap()[..], "caps").unwrap();
        let dest = root.path().join("bin/server");
        assert_eq!(hoist_fileset::file_capability(&dest), Some(cap));
        if crate::sys::geteuid() == 0 {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(fs::metadata(&dest).unwrap().uid(), 1000);
        }
    }

    #[test]
    fn nothing_escapes_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir(&root).unwrap();
        let err = apply_layer(&root, &tar(&[E::File("../evil", "x", 0o644)])[..], "dots")
            .unwrap_err()
            .to_string();
        assert!(err.contains("..") && err.contains("layer dots"), "{err}");
        assert!(!outer.path().join("evil").exists());

        // Symlinks planted by a layer resolve inside the root, absolute or relative.
        let target = outer.path().join("host");
        fs::create_dir(&target).unwrap();
        let l = tar(&[
            E::Link("abs", target.to_str().unwrap()),
            E::Link("rel", "../../.."),
            E::Link("lib", "usr/lib"),
            E::Dir("usr/lib/", 0o755),
        ]);
        apply_layer(&root, &l[..], "links").unwrap();
        let l = tar(&[
            E::File("abs/pwned", "x", 0o644),
            E::File("rel/pwned2", "x", 0o644),
            E::File("lib/libc.so", "c", 0o644),
            E::Hard("stolen", "abs/../../../../etc/hostname"),
        ]);
        let err = apply_layer(&root, &l[..], "through-links");
        assert!(err.is_err(), "a `..` hard link target must be refused");
        assert!(
            !target.join("pwned").exists(),
            "wrote through an absolute symlink"
        );
        assert!(!outer.path().join("pwned2").exists());
        assert_eq!(
            read(&root.join(target.strip_prefix("/").unwrap()).join("pwned")),
            "x"
        );
        assert_eq!(read(&root.join("pwned2")), "x");
        assert_eq!(read(&root.join("usr/lib/libc.so")), "c");
    }

    #[test]
    fn zstd_and_garbage_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = apply_layer(dir.path(), &[0x28, 0xb5, 0x2f, 0xfd, 0, 0][..], "z")
            .unwrap_err()
            .to_string();
        assert!(err.contains("zstd"), "{err}");
        let err = apply_layer(dir.path(), &[0x1f, 0x8b, 1, 2, 3][..], "g")
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer g"), "{err}");
    }
}
