//! The local image store: an OCI image layout under the user's cache directory that the
//! embedded cluster's kubelet reads images from, without any registry.

use std::path::PathBuf;

use crate::client::RegistryClient;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::layout::OciLayout;
use crate::manifest::{ImageConfig, ImageManifest, Platform, RawManifest, parse_config};
use crate::reference::Reference;

#[derive(Clone, Debug)]
pub struct LocalStore {
    layout: OciLayout,
}

/// An image found in the store.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    pub config_digest: Digest,
    pub config: ImageConfig,
}

/// What [`LocalStore::pull_image`] stored.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub image: ResolvedImage,
    /// The index the image was picked from (by platform), when the reference named one.
    pub index_digest: Option<Digest>,
}

/// hoist's cache directory: `$HOIST_CACHE_DIR`, else `$XDG_CACHE_HOME/hoist`, else
/// `~/.cache/hoist`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HOIST_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::auth::home_dir().join(".cache"));
    cache.join("hoist")
}

/// `images` under [`cache_dir`].
pub fn default_store_dir() -> PathBuf {
    cache_dir().join("images")
}

/// Creates `dir` under [`cache_dir`] (and the cache directory itself) owner-only where hoist
/// makes them: the store and layer temp files are world-readable (0644, as other OCI tools
/// write them), and layers can hold a developer's 0600 files (a `.env`), so the directories
/// above them keep other users out. Directories that already exist keep their modes.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl LocalStore {
    /// Open (creating if needed) the store at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        Ok(Self {
            layout: OciLayout::create(dir)?.owned_by_hoist(),
        })
    }

    pub fn open_default() -> Result<Self> {
        let dir = default_store_dir();
        create_private_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        Self::open(dir)
    }

    pub fn layout(&self) -> &OciLayout {
        &self.layout
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.layout.blob_path(d)
    }

    /// Add an image whose blobs are already verified in memory: config + layers, then the
    /// manifest (last, so a listed image always has all its blobs). Named by `reference`.
    pub fn put_image(
        &self,
        reference: &Reference,
        manifest: &RawManifest,
        blobs: &[(Digest, &[u8])],
    ) -> Result<()> {
        let m = manifest.image()?;
        for (d, data) in blobs {
            self.layout.put_blob(d, data)?;
        }
        for b in std::iter::once(&m.config).chain(m.layers.iter()) {
            if !self.layout.has_blob_of_size(&b.digest, b.size) {
                return Err(Error::Invalid(format!(
                    "put_image {reference}: blob {} missing",
                    b.digest
                )));
            }
        }
        self.layout
            .put_manifest(manifest, Some(&reference.to_string()))?;
        self.layout.put_manifest(
            manifest,
            Some(&reference.with_digest(manifest.digest.clone()).to_string()),
        )
    }

    /// Pull `reference` (for `platform`) from its registry, skipping blobs already stored.
    /// An image for another platform only (no index to pick from) is pulled as it is, with
    /// a warning.
    pub async fn pull(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage> {
        Ok(self
            .pull_image(client, reference, platform, false)
            .await?
            .image)
    }

    /// [`LocalStore::pull`] that says which index the image came through, if any; with
    /// `require_platform` (`platform` was asked for), an image for another platform only is
    /// refused before any layer is downloaded.
    pub async fn pull_image(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        platform: &Platform,
        require_platform: bool,
    ) -> Result<Pulled> {
        let (raw, index) = client.resolve_image(reference, platform).await?;
        let m = raw.image()?;
        // Before any download: an artifact could never run from the store.
        m.ensure_image(&reference.to_string())?;
        // An index was resolved by platform already; a single image is what its config says.
        if index.is_none() {
            let config = self.config_blob(client, reference, &m.config).await?;
            let config = parse_config(&config, &m.config.digest)?;
            match config.ensure_platform(platform, &reference.to_string()) {
                Err(e) if require_platform => return Err(e),
                Err(e) => tracing::warn!("{e}: pulled as it is"),
                Ok(()) => {}
            }
        }
        let blobs = std::iter::once(&m.config)
            .chain(m.layers.iter())
            .map(|b| (b.digest.clone(), b.size));
        self.layout
            .download_missing(client, reference, blobs)
            .await?;
        self.put_image(reference, &raw, &[])?;
        Ok(Pulled {
            image: self.resolve(reference)?,
            index_digest: index.map(|i| i.digest),
        })
    }

    /// An image's config blob: from the store if it is there whole, else fetched and stored
    /// (the pull would fetch it anyway).
    async fn config_blob(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        config: &crate::manifest::Descriptor,
    ) -> Result<Vec<u8>> {
        if self.layout.has_blob_of_size(&config.digest, config.size)
            && let Ok(bytes) = self.layout.read_blob(&config.digest)
        {
            return Ok(bytes);
        }
        // On the bar as the downloads that follow are.
        client.plan_bytes(config.size);
        let bytes = client.get_blob(reference, &config.digest).await?;
        client.progress(bytes.len() as u64);
        if bytes.len() as u64 != config.size {
            return Err(Error::ManifestSizeWrong {
                image: reference.to_string(),
                digest: config.digest.to_string(),
                descriptor: config.size,
                actual: Some(bytes.len() as u64),
            });
        }
        self.layout.put_blob(&config.digest, &bytes)?;
        Ok(bytes.to_vec())
    }

    /// Add the image named `name` in the OCI layout `from` (e.g. a Dockerfile builder's
    /// output) as `reference`: blobs copied without reading them into memory and checked
    /// against their digests, the manifest last. Returns the manifest digest.
    pub fn import_from_layout(
        &self,
        from: &OciLayout,
        name: Option<&str>,
        reference: &Reference,
    ) -> Result<Digest> {
        self.land_from_layout(from, name, reference, OciLayout::put_blob_from_layout)
    }

    /// [`LocalStore::import_from_layout`] for a layout hoist made and throws away (a
    /// builder's output): each blob is checked, then moved in by rename (no copy of a big
    /// layer) when it is on the store's filesystem, else copied. `from` loses those blobs.
    pub fn move_from_layout(
        &self,
        from: &OciLayout,
        name: Option<&str>,
        reference: &Reference,
    ) -> Result<Digest> {
        self.land_from_layout(from, name, reference, OciLayout::move_blob_from_layout)
    }

    /// Store the image named `name` in `from` as `reference`: each blob (config, layers)
    /// by `land(store, digest, from, size)`, the manifest last.
    fn land_from_layout(
        &self,
        from: &OciLayout,
        name: Option<&str>,
        reference: &Reference,
        land: impl Fn(&OciLayout, &Digest, &OciLayout, u64) -> Result<()>,
    ) -> Result<Digest> {
        let raw = from.get_manifest(name)?;
        let m = raw.image()?;
        for d in std::iter::once(&m.config).chain(m.layers.iter()) {
            land(&self.layout, &d.digest, from, d.size)?;
        }
        self.put_image(reference, &raw, &[])?;
        Ok(raw.digest)
    }

    /// Look an image up by reference (tag or digest).
    pub fn resolve(&self, reference: &Reference) -> Result<ResolvedImage> {
        let index = self.layout.index()?;
        let want = reference.to_string();
        let desc = index
            .manifests
            .iter()
            .find(|d| crate::layout::ref_name(d) == Some(want.as_str()))
            .or_else(|| {
                reference
                    .digest
                    .as_ref()
                    .and_then(|dg| index.manifests.iter().find(|d| &d.digest == dg))
            })
            .ok_or_else(|| Error::NotInStore {
                reference: want.clone(),
                store: self.layout.root().to_path_buf(),
            })?;
        let raw = self
            .layout
            .manifest_by_digest(&desc.digest, Some(&desc.media_type))?;
        let manifest = raw.image()?;
        let config_bytes = self.layout.read_blob(&manifest.config.digest)?;
        let config = parse_config(&config_bytes, &manifest.config.digest)?;
        Ok(ResolvedImage {
            manifest_digest: raw.digest,
            config_digest: manifest.config.digest.clone(),
            manifest,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout holding one image named `name`: a config and one layer blob.
    fn layout_with_image(dir: &std::path::Path, name: &str, layer: &[u8]) -> OciLayout {
        let l = OciLayout::create(dir).unwrap();
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/x"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let (cd, ld) = (Digest::of(config), Digest::of(layer));
        l.put_blob(&cd, config).unwrap();
        l.put_blob(&ld, layer).unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let raw = RawManifest::new(manifest.into_bytes(), None).unwrap();
        l.put_manifest(&raw, Some(name)).unwrap();
        l
    }

    #[test]
    fn imports_an_image_from_another_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let from = layout_with_image(&tmp.path().join("built"), "image", b"layer bytes");
        let store = LocalStore::open(tmp.path().join("store")).unwrap();
        let r = Reference::parse("localhost:5000/app:h-1").unwrap();
        let digest = store.import_from_layout(&from, Some("image"), &r).unwrap();
        let got = store.resolve(&r).unwrap();
        assert_eq!(got.manifest_digest, digest);
        assert_eq!(got.manifest.layers.len(), 1);
        assert!(store.layout().has_blob(&got.manifest.layers[0].digest));
    }

    /// The store's marker file ([`crate::layout::STORE_MARKER`]) beside `oci-layout` does
    /// not stop other OCI tools reading the store.
    #[test]
    fn umoci_and_skopeo_read_a_marked_store() {
        let tmp = tempfile::tempdir().unwrap();
        let from = layout_with_image(&tmp.path().join("built"), "image", b"layer bytes");
        let dir = tmp.path().join("store");
        let store = LocalStore::open(&dir).unwrap();
        assert!(dir.join(crate::layout::STORE_MARKER).is_file());
        let r = Reference::parse("localhost:5000/app:h-1").unwrap();
        let digest = store.import_from_layout(&from, Some("image"), &r).unwrap();
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().expect("umoci and skopeo are installed");
            assert!(out.status.success(), "{cmd:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let tags = run(std::process::Command::new("umoci")
            .args(["ls", "--layout"])
            .arg(&dir));
        assert!(tags.lines().any(|t| t == r.to_string()), "{tags}");
        let inspect = run(std::process::Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:{r}", dir.display())));
        let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(inspect["Digest"], digest.to_string());
    }

    #[test]
    fn a_builders_output_is_moved_in_not_copied() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let from = layout_with_image(&tmp.path().join("built"), "image", b"layer bytes");
        let layer = Digest::of(b"layer bytes");
        let ino = std::fs::metadata(from.blob_path(&layer)).unwrap().ino();
        let store = LocalStore::open(tmp.path().join("store")).unwrap();
        let r = Reference::parse("localhost:5000/app:h-1").unwrap();
        let digest = store.move_from_layout(&from, Some("image"), &r).unwrap();
        assert_eq!(store.resolve(&r).unwrap().manifest_digest, digest);
        // The same file, renamed: no second copy of a big layer was written.
        assert_eq!(
            std::fs::metadata(store.blob_path(&layer)).unwrap().ino(),
            ino
        );
        assert!(!from.has_blob(&layer));
    }

    /// A builder's blob that is a symlink (a tar can hold one) is copied, checked, as a
    /// plain file: the store gets no symlink, and the file it points at is not chmodded.
    #[test]
    fn a_symlinked_blob_is_copied_not_moved() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let from = layout_with_image(&tmp.path().join("built"), "image", b"layer bytes");
        let layer = Digest::of(b"layer bytes");
        let target = tmp.path().join("elsewhere");
        std::fs::rename(from.blob_path(&layer), &target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&target, from.blob_path(&layer)).unwrap();
        let store = LocalStore::open(tmp.path().join("store")).unwrap();
        let r = Reference::parse("localhost:5000/app:h-1").unwrap();
        store.move_from_layout(&from, Some("image"), &r).unwrap();
        let stored = std::fs::symlink_metadata(store.blob_path(&layer)).unwrap();
        assert!(stored.is_file(), "{stored:?}");
        assert_eq!(
            std::fs::read(store.blob_path(&layer)).unwrap(),
            b"layer bytes"
        );
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the symlink's target is left as it was"
        );
    }

    /// Moved from another filesystem, a blob is copied and checked once: a corrupt one of a
    /// builder's layout is refused and left there.
    #[test]
    fn a_blob_on_another_filesystem_is_copied_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        // /dev/shm is a tmpfs here and in CI: a rename into the store fails (EXDEV).
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let from = layout_with_image(&shm.path().join("built"), "image", b"layer bytes");
        let layer = Digest::of(b"layer bytes");
        let store = LocalStore::open(tmp.path().join("store")).unwrap();
        let r = Reference::parse("localhost:5000/app:h-1").unwrap();
        store.move_from_layout(&from, Some("image"), &r).unwrap();
        assert_eq!(
            std::fs::read(store.blob_path(&layer)).unwrap(),
            b"layer bytes"
        );

        let from = layout_with_image(&shm.path().join("bad"), "image", b"other bytes");
        let bad = Digest::of(b"other bytes");
        std::fs::write(from.blob_path(&bad), b"OTHER BYTES").unwrap();
        let err = store
            .move_from_layout(&from, Some("image"), &r)
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::CorruptBlob {
                    fate: crate::CorruptFate::LeftInUserLayout,
                    ..
                }
            ),
            "{err}"
        );
        assert!(from.has_blob(&bad));
        assert!(!store.layout().has_blob(&bad));
    }

    /// Copying out of the store (`oci:STORE` to `oci:DIR`): a corrupt blob is removed from
    /// the store; a good one under a wrong descriptor size is kept and the manifest blamed.
    #[test]
    fn a_copy_out_of_the_store_applies_the_stores_rule() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalStore::open(tmp.path().join("store")).unwrap();
        let out = OciLayout::create(tmp.path().join("out")).unwrap();
        let good = Digest::of(b"good bytes");
        store.layout().put_blob(&good, b"good bytes").unwrap();
        let err = out
            .put_blob_from_layout(&good, store.layout(), 11)
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::BlobSizeWrong {
                    descriptor: 11,
                    actual: 10,
                    ..
                }
            ),
            "{err}"
        );
        assert!(store.layout().has_blob(&good));
        assert!(!out.has_blob(&good));

        std::fs::write(store.blob_path(&good), b"GOOD bytes").unwrap();
        let err = out
            .put_blob_from_layout(&good, store.layout(), 10)
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::CorruptBlob {
                    fate: crate::CorruptFate::Removed,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!store.layout().has_blob(&good));
        assert!(!out.has_blob(&good));
    }

    #[test]
    fn a_corrupt_blob_is_refused_and_the_image_not_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let from = layout_with_image(&tmp.path().join("built"), "image", b"layer bytes");
        // Same length, other content: the digest check must catch it.
        let layer = Digest::of(b"layer bytes");
        std::fs::write(from.blob_path(&layer), b"LAYER BYTES").unwrap();
        let store = LocalStore::open(tmp.path().join("store")).unwrap();
        let r = Reference::parse("localhost:5000/app:h-1").unwrap();
        let err = store
            .import_from_layout(&from, Some("image"), &r)
            .unwrap_err();
        assert!(matches!(err, Error::CorruptBlob { .. }), "{err}");
        assert!(
            from.has_blob(&layer),
            "the builder's layout is not hoist's to change"
        );
        assert!(store.resolve(&r).is_err());
        assert!(!store.layout().has_blob(&layer));
        // A name that is not in the layout is an error too.
        assert!(store.import_from_layout(&from, Some("nope"), &r).is_err());
    }
}
