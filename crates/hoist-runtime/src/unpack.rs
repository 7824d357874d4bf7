//! Image layers are unpacked once per image into a shared cache (keyed by the manifest
//! digest, flattened into one directory) and each container gets its own rootfs on top:
//! an overlay mount when the kernel allows it here, else a plain copy.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use hoist_oci::manifest::parse_config;
use hoist_oci::{Digest, ImageConfig, ImageManifest, LocalStore, OciLayout, Reference};

use crate::error::{Error, IoContext, Result};
use crate::layer::apply_layer;
use crate::sys;

/// An image unpacked in the cache. `rootfs` must be treated as read-only.
#[derive(Clone, Debug)]
pub struct UnpackedImage {
    pub manifest_digest: Digest,
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

/// How container root filesystems are made on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootfsMode {
    Overlay,
    Copy,
}

/// A container's own root filesystem.
#[derive(Clone, Debug)]
pub struct PreparedRootfs {
    pub path: PathBuf,
    pub mode: RootfsMode,
}

pub struct ImageUnpacker {
    cache_dir: PathBuf,
    /// One lock per manifest digest so concurrent pods of one image unpack it once.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    mode: OnceLock<RootfsMode>,
}

impl ImageUnpacker {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Result<Self> {
        let cache_dir = cache_dir.into();
        fs::create_dir_all(&cache_dir).ctx(|| format!("creating {}", cache_dir.display()))?;
        Ok(Self {
            cache_dir,
            locks: Mutex::new(HashMap::new()),
            mode: OnceLock::new(),
        })
    }

    /// Skip the probe and always use `mode` (tests, or a filesystem where overlay misbehaves).
    pub fn with_mode(self, mode: RootfsMode) -> Self {
        let _ = self.mode.set(mode);
        self
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    fn entry_dir(&self, d: &Digest) -> PathBuf {
        self.cache_dir.join(d.hex())
    }

    /// Unpack (or find cached) the image `reference` names in the local store.
    pub fn unpack(&self, store: &LocalStore, reference: &Reference) -> Result<UnpackedImage> {
        let img = store.resolve(reference)?;
        self.unpack_manifest(
            store.layout(),
            Some(&reference.to_string()),
            &img.manifest_digest,
            &img.manifest,
            &img.config,
        )
    }

    /// Unpack an image of an OCI layout directory, by ref name or digest (`None`: the only one).
    pub fn unpack_layout(&self, layout: &OciLayout, name: Option<&str>) -> Result<UnpackedImage> {
        let raw = layout.get_manifest(name)?;
        let manifest = raw.image()?;
        let config = parse_config(
            &layout.read_blob(&manifest.config.digest)?,
            &manifest.config.digest,
        )?;
        self.unpack_manifest(layout, name, &raw.digest, &manifest, &config)
    }

    /// The cached image for `digest`, if it was unpacked before.
    pub fn cached(&self, digest: &Digest) -> Option<UnpackedImage> {
        let dir = self.entry_dir(digest);
        let bytes = fs::read(dir.join("config.json")).ok()?;
        let config = serde_json::from_slice(&bytes).ok()?;
        Some(UnpackedImage {
            manifest_digest: digest.clone(),
            rootfs: dir.join("rootfs"),
            config,
        })
    }

    /// Drop an image from the cache (containers using it by copy are unaffected; overlay
    /// users must be gone first).
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let dir = self.entry_dir(digest);
        if dir.exists() {
            fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))?;
        }
        Ok(())
    }

    /// `image`: the name the image was asked by (`None`: a layout's only image).
    fn unpack_manifest(
        &self,
        layout: &OciLayout,
        image: Option<&str>,
        digest: &Digest,
        manifest: &ImageManifest,
        config: &ImageConfig,
    ) -> Result<UnpackedImage> {
        if let Some(hit) = self.cached(digest) {
            return Ok(hit);
        }
        let label = image.unwrap_or("(only image)");
        let lock = {
            let mut locks = self.locks.lock().expect("unpack lock map poisoned");
            locks.entry(digest.to_string()).or_default().clone()
        };
        let _held = lock.lock().expect("unpack lock poisoned");
        if let Some(hit) = self.cached(digest) {
            return Ok(hit);
        }
        let started = Instant::now();
        let tmp = self
            .cache_dir
            .join(format!(".tmp-{}-{}", digest.hex(), std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).ctx(|| format!("removing stale {}", tmp.display()))?;
        }
        let rootfs = tmp.join("rootfs");
        fs::create_dir_all(&rootfs).ctx(|| format!("creating {}", rootfs.display()))?;
        fs::set_permissions(&rootfs, fs::Permissions::from_mode(0o755))
            .ctx(|| format!("chmod {}", rootfs.display()))?;
        let result = (|| {
            for (i, l) in manifest.layers.iter().enumerate() {
                let mut blob =
                    layout
                        .open_blob(&l.digest, Some(l.size))
                        .map_err(|e| Error::Image {
                            image: label.to_string(),
                            reason: format!(
                                "layer {} ({}) is missing from {}: {e}",
                                i + 1,
                                l.digest,
                                layout.root().display()
                            ),
                        })?;
                let applied = apply_layer(&rootfs, &mut blob, &format!("{} of {label}", l.digest));
                // The whole blob is checked, also when the tar ended (or broke) early: a
                // corrupt blob is the error to report (the store has dropped it), not the
                // tar error it may have caused.
                let checked = blob.finish().map_err(|e| Error::Image {
                    image: label.to_string(),
                    reason: match image {
                        Some(name) => format!("layer {}: {}", i + 1, e.in_image(name)),
                        // No name to pull it by.
                        None => format!("layer {}: {e}", i + 1),
                    },
                });
                checked.and(applied)?;
            }
            let cfg = serde_json::to_vec(config).expect("serialisable config");
            fs::write(tmp.join("config.json"), cfg).ctx(|| "writing cached image config")
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let dest = self.entry_dir(digest);
        if let Err(e) = fs::rename(&tmp, &dest) {
            // Another process won the race: use its copy.
            let _ = fs::remove_dir_all(&tmp);
            if self.cached(digest).is_none() {
                return Err(Error::Io {
                    context: format!("moving unpacked image into {}", dest.display()),
                    source: e,
                });
            }
        }
        tracing::debug!(image = label, %digest, layers = manifest.layers.len(),
            ms = started.elapsed().as_millis() as u64, "unpacked image");
        Ok(UnpackedImage {
            manifest_digest: digest.clone(),
            rootfs: dest.join("rootfs"),
            config: config.clone(),
        })
    }

    /// Overlay if the kernel lets us mount one in the cache's filesystem, else copy. Probed
    /// once; `HOIST_ROOTFS_MODE=copy|overlay` forces one.
    pub fn rootfs_mode(&self) -> RootfsMode {
        *self.mode.get_or_init(|| {
            match std::env::var("HOIST_ROOTFS_MODE").as_deref() {
                Ok("copy") => return RootfsMode::Copy,
                Ok("overlay") => return RootfsMode::Overlay,
                _ => {}
            }
            let mode = probe_overlay(&self.cache_dir);
            tracing::debug!(?mode, "container rootfs mode");
            mode
        })
    }

    /// Make `container_dir/rootfs` for a container of `image`.
    pub fn prepare_rootfs(
        &self,
        image: &UnpackedImage,
        container_dir: &Path,
    ) -> Result<PreparedRootfs> {
        let target = container_dir.join("rootfs");
        fs::create_dir_all(&target).ctx(|| format!("creating {}", target.display()))?;
        let mode = self.rootfs_mode();
        match mode {
            RootfsMode::Overlay => {
                let upper = container_dir.join("upper");
                let work = container_dir.join("work");
                for d in [&upper, &work] {
                    fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
                }
                // The upper dir's root becomes the container's `/`: match the image's mode.
                let root_mode = fs::metadata(&image.rootfs)
                    .ctx(|| format!("reading {}", image.rootfs.display()))?
                    .mode();
                fs::set_permissions(&upper, fs::Permissions::from_mode(root_mode & 0o7777))
                    .ctx(|| format!("chmod {}", upper.display()))?;
                sys::mount_overlay(&image.rootfs, &upper, &work, &target)
                    .ctx(|| format!("mounting overlay rootfs at {}", target.display()))?;
            }
            RootfsMode::Copy => copy_tree(&image.rootfs, &target)?,
        }
        Ok(PreparedRootfs { path: target, mode })
    }

    /// Undo `prepare_rootfs`: unmount and delete the container's rootfs, upper and work dirs.
    pub fn release_rootfs(container_dir: &Path) -> Result<()> {
        let target = container_dir.join("rootfs");
        sys::unmount(&target).ctx(|| format!("unmounting {}", target.display()))?;
        for d in ["rootfs", "upper", "work"] {
            let p = container_dir.join(d);
            if p.exists() {
                fs::remove_dir_all(&p).ctx(|| format!("removing {}", p.display()))?;
            }
        }
        Ok(())
    }
}

fn probe_overlay(scratch: &Path) -> RootfsMode {
    let base = scratch.join(format!(".overlay-probe-{}", std::process::id()));
    let dirs = ["lower", "upper", "work", "merged"].map(|d| base.join(d));
    let ok = dirs.iter().all(|d| fs::create_dir_all(d).is_ok())
        && fs::write(dirs[0].join("probe"), b"x").is_ok()
        && sys::mount_overlay(&dirs[0], &dirs[1], &dirs[2], &dirs[3]).is_ok();
    let readable = ok && fs::read(dirs[3].join("probe")).is_ok_and(|b| b == b"x");
    if ok {
        let _ = sys::unmount(&dirs[3]);
    }
    let _ = fs::remove_dir_all(&base);
    if readable {
        RootfsMode::Overlay
    } else {
        RootfsMode::Copy
    }
}

/// Copy a tree keeping modes, owners, symlinks and device nodes (hard links become copies).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(src).ctx(|| format!("reading {}", src.display()))?;
    copy_entry(src, dst, &meta)
}

fn copy_entry(src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<()> {
    let ft = meta.file_type();
    if ft.is_dir() {
        if !dst.exists() {
            fs::create_dir(dst).ctx(|| format!("creating {}", dst.display()))?;
        }
        for child in fs::read_dir(src).ctx(|| format!("listing {}", src.display()))? {
            let child = child.ctx(|| format!("listing {}", src.display()))?;
            let cm = fs::symlink_metadata(child.path())
                .ctx(|| format!("reading {}", child.path().display()))?;
            copy_entry(&child.path(), &dst.join(child.file_name()), &cm)?;
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(src).ctx(|| format!("reading {}", src.display()))?;
        std::os::unix::fs::symlink(&target, dst).ctx(|| format!("creating {}", dst.display()))?;
    } else if ft.is_file() {
        fs::copy(src, dst).ctx(|| format!("copying {} to {}", src.display(), dst.display()))?;
    } else {
        sys::mknod(dst, meta.mode(), meta.rdev()).ctx(|| format!("mknod {}", dst.display()))?;
    }
    sys::lchown(dst, meta.uid(), meta.gid()).ctx(|| format!("chown {}", dst.display()))?;
    if !ft.is_symlink() {
        // After chown: chown clears setuid bits.
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .ctx(|| format!("chmod {}", dst.display()))?;
    }
    Ok(())
}
