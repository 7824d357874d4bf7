//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/sha256/…`).
//! Every blob is verified before it lands, and lands atomically (temp file + rename).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::client::{BlobOutcome, RegistryClient};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::layer::BuiltLayer;
use crate::manifest::{Descriptor, ImageIndex, Parsed, Platform, RawManifest, media};
use crate::reference::Reference;
use crate::stored_blob::{self, BlobOwner, FileIdentity, StoredBlob, from_read_error};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Clone, Debug)]
pub struct OciLayout {
    root: PathBuf,
    /// Whose blobs these are: decides what a read does with a corrupt one.
    owner: BlobOwner,
}

#[derive(Serialize, Deserialize)]
struct LayoutMarker {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

impl OciLayout {
    /// Open a layout, creating an empty one if `root` is missing or empty.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("blobs/sha256"))
            .ctx(|| format!("creating {}", root.display()))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        // Downloads of a hoist killed while writing here; in the root (any directory of
        // the user's, where index.json is written) only temp files proven dead by lock.
        crate::temp_lock::sweep_once(&root.join("blobs/sha256"));
        crate::temp_lock::sweep_dead_downloads(&root);
        let layout = Self::at(root);
        let index = layout.root.join("index.json");
        // Checked under the lock: another process may be storing its first image.
        let _lock = layout.lock()?;
        if !index.exists() {
            let empty = ImageIndex {
                schema_version: 2,
                media_type: Some(media::OCI_INDEX.into()),
                manifests: vec![],
                annotations: None,
            };
            write_atomic(&index, &serde_json::to_vec(&empty).expect("serialisable"))?;
        }
        Ok(layout)
    }

    /// Open an existing layout.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let marker = root.join("oci-layout");
        let bytes = fs::read(&marker).map_err(|e| Error::InvalidLayout {
            path: root.clone(),
            reason: format!("cannot read oci-layout: {e}"),
        })?;
        let m: LayoutMarker = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidLayout {
            path: root.clone(),
            reason: format!("oci-layout: {e}"),
        })?;
        if !m.version.starts_with("1.") {
            return Err(Error::InvalidLayout {
                path: root,
                reason: format!("unsupported imageLayoutVersion {}", m.version),
            });
        }
        Ok(Self::at(root))
    }

    /// A layout at `root`, hoist's own when `root` is a store: one that says so in its
    /// [`STORE_MARKER`] (whichever process opened it as a store, by whatever path it is
    /// named now, also as `oci:DIR`), or the default store.
    fn at(root: PathBuf) -> Self {
        let owner = if is_store(&root) {
            BlobOwner::Hoist
        } else {
            BlobOwner::User
        };
        Self { root, owner }
    }

    /// This layout as hoist's own store, whose corrupt blobs are removed when read; marked
    /// so on disk ([`STORE_MARKER`]) for every process and every later open.
    pub(crate) fn owned_by_hoist(mut self) -> Self {
        if let Err(e) = mark_as_store(&self.root) {
            // A read-only store still works; only a later `oci:DIR` read of it by another
            // process counts it as a user's layout (and leaves a corrupt blob in place).
            tracing::debug!(store = %self.root.display(), error = %e, "cannot mark the image store");
        }
        self.owner = BlobOwner::Hoist;
        self
    }

    pub fn owner(&self) -> BlobOwner {
        self.owner
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Is blob `d` stored whole: a file of the `size` its descriptor gives? A file of another
    /// size is a write that broke (or a disk that did): it counts as missing, so it is
    /// fetched or written again, replacing it by rename. Reading the size is one `stat`;
    /// the digest is checked whenever the blob is read ([`OciLayout::open_blob`]), which
    /// removes a corrupt blob of hoist's store so this stops counting it.
    pub fn has_blob_of_size(&self, d: &Digest, size: u64) -> bool {
        let p = self.blob_path(d);
        match fs::metadata(&p) {
            Ok(m) if m.is_file() && m.len() == size => true,
            Ok(m) if m.is_file() => {
                tracing::debug!(
                    blob = %p.display(),
                    found = m.len(),
                    expected = size,
                    "stored blob has the wrong size: storing it again"
                );
                false
            }
            _ => false,
        }
    }

    /// Store a blob after checking its digest; on mismatch nothing is written.
    pub fn put_blob(&self, d: &Digest, data: &[u8]) -> Result<()> {
        d.verify(data, &format!("blob {d}"))?;
        if self.has_blob_of_size(d, data.len() as u64) {
            return Ok(());
        }
        write_atomic(&self.blob_path(d), data)
    }

    /// Store blob `d` (`size` bytes) of the layout `from` without reading it into memory;
    /// it lands only if it is whole. A corrupt source blob is dealt with by `from`'s rule.
    pub fn put_blob_from_layout(&self, d: &Digest, from: &OciLayout, size: u64) -> Result<()> {
        if self.has_blob_of_size(d, size) {
            return Ok(());
        }
        let path = from.blob_path(d);
        let src = fs::File::open(&path).map_err(|e| stored_blob::reading(&path, e))?;
        // Of the open file: what a removal of a corrupt one checks the path still names.
        let read = src.metadata().map_err(|e| stored_blob::reading(&path, e))?;
        let read = FileIdentity::of(&read);
        // Hashed once, as it is written: the source's check is made on that hash.
        self.put_blob_from_reader(d, src, &path, |actual, n| {
            let of = stored_blob::ReadOf {
                owner: from.owner,
                path: &path,
                identity: read,
            };
            of.check(d, actual, n, Some(size))
        })
    }

    /// Store blob `d` (`size` bytes) of `from`, a layout hoist made and throws away, by
    /// moving its file in once it checked whole (the rename is atomic, like every landing);
    /// copied (and checked as it is) when it is on another filesystem, or not a plain file:
    /// a symlink is neither followed by a chmod nor moved into the store.
    pub(crate) fn move_blob_from_layout(
        &self,
        d: &Digest,
        from: &OciLayout,
        size: u64,
    ) -> Result<()> {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        if self.has_blob_of_size(d, size) {
            return Ok(());
        }
        let (src, dest) = (from.blob_path(d), self.blob_path(d));
        let meta = fs::symlink_metadata(&src).map_err(|e| stored_blob::reading(&src, e))?;
        let here =
            fs::metadata(self.blob_dir()).ctx(|| format!("reading {}", self.root.display()))?;
        if !meta.is_file() || meta.dev() != here.dev() {
            return self.put_blob_from_layout(d, from, size);
        }
        from.check_blob(d, size)?;
        // Readable as every stored blob is, whatever umask the builder ran with.
        fs::set_permissions(&src, fs::Permissions::from_mode(0o644))
            .ctx(|| format!("chmod {}", src.display()))?;
        match fs::rename(&src, &dest) {
            Ok(()) => Ok(()),
            // One device, two mounts (a bind mount): rare enough to read the blob again.
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                self.put_blob_from_layout(d, from, size)
            }
            Err(e) => Err(Error::Io {
                context: format!("moving {} to {}", src.display(), dest.display()),
                source: e,
            }),
        }
    }

    /// Store blob `d` copied from the file at `from` (a built layer) without reading it
    /// into memory; it lands only if it is `size` bytes and matches its digest.
    pub fn put_blob_from_file(&self, d: &Digest, from: &Path, size: u64) -> Result<()> {
        if self.has_blob_of_size(d, size) {
            return Ok(());
        }
        let src = fs::File::open(from).map_err(|e| stored_blob::reading(from, e))?;
        self.put_blob_from_reader(d, src, from, |actual, n| {
            let what = format!("blob {}", from.display());
            if n != size {
                return Err(Error::SizeMismatch {
                    what,
                    expected: size,
                    actual: n,
                });
            }
            if actual != d {
                return Err(Error::DigestMismatch {
                    what,
                    expected: d.to_string(),
                    actual: actual.to_string(),
                });
            }
            Ok(())
        })
    }

    /// Copy `src` (the file at `from`) into a temp file, hashing it as it goes, and land it
    /// as blob `d` if `check` passes on what was read (its digest and size); else nothing
    /// lands (the temp file goes on drop).
    fn put_blob_from_reader(
        &self,
        d: &Digest,
        mut src: fs::File,
        from: &Path,
        check: impl FnOnce(&Digest, u64) -> Result<()>,
    ) -> Result<()> {
        let dest = self.blob_path(d);
        let dir = dest.parent().unwrap_or(Path::new("."));
        let tmp = readable_temp_file(dir)?;
        let written = tmp.path().to_path_buf();
        let mut w = HashingWriter::new(tmp);
        copy_telling_apart(&mut src, from, &mut w, &written)?;
        let (tmp, actual, n) = w.finish();
        check(&actual, n)?;
        tmp.persist(&dest).map_err(|e| Error::Io {
            context: format!("writing {}", dest.display()),
            source: e.error,
        })?;
        Ok(())
    }

    /// The directory blobs land in: build large blobs here so they land by link or rename.
    pub fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// Store a layer built into a temp file: hard-linked into place when it is on the same
    /// filesystem (atomic, no copy; the temp name goes when `layer` is dropped), else copied
    /// and checked. Its digest was computed from exactly the bytes written.
    pub fn put_layer(&self, layer: &BuiltLayer) -> Result<()> {
        if self.has_blob_of_size(&layer.digest, layer.size) {
            return Ok(());
        }
        let dest = self.blob_path(&layer.digest);
        if dest.is_file() {
            // A broken copy is in the way of the link: replaced by rename instead.
            return self.put_blob_from_file(&layer.digest, layer.path(), layer.size);
        }
        match fs::hard_link(layer.path(), &dest) {
            Ok(()) => Ok(()),
            // Another writer stored the same blob meanwhile: same digest, same bytes.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, from = %layer.path().display(), "cannot link a layer into the layout: copying it");
                self.put_blob_from_file(&layer.digest, layer.path(), layer.size)
            }
        }
    }

    /// Read a blob and check it still matches its name.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut blob = self.open_blob(d, None)?;
        let mut data = vec![];
        std::io::Read::read_to_end(&mut blob, &mut data)
            .map_err(|e| from_read_error(e, blob.path()))?;
        Ok(data)
    }

    /// Open blob `d` (`size` bytes, when known) to read it, checked as it is read: a blob
    /// that fails the check is removed if this is hoist's store (see [`StoredBlob`]).
    pub fn open_blob(&self, d: &Digest, size: Option<u64>) -> Result<StoredBlob> {
        StoredBlob::open(self.blob_path(d), self.owner, d, size)
    }

    /// Read blob `d` through and check it (see [`OciLayout::open_blob`]).
    pub fn check_blob(&self, d: &Digest, size: u64) -> Result<()> {
        self.open_blob(d, Some(size))?.finish()
    }

    /// Make sure `target` has blob `d` (`size` bytes) of this layout, streamed from its file.
    /// The upload checks what it sends; when that check fails, the file is checked here so
    /// a corrupt blob is dealt with (and reported) as every other read of one is.
    pub async fn upload_blob(
        &self,
        client: &RegistryClient,
        target: &Reference,
        d: &Digest,
        size: u64,
    ) -> Result<BlobOutcome> {
        let sent = client
            .upload_blob_file(target, d, &self.blob_path(d), size)
            .await;
        match sent {
            Err(e @ (Error::DigestMismatch { .. } | Error::SizeMismatch { .. })) => {
                let (l, d) = (self.clone(), d.clone());
                match tokio::task::spawn_blocking(move || l.check_blob(&d, size)).await {
                    Ok(Err(found @ (Error::CorruptBlob { .. } | Error::BlobSizeWrong { .. }))) => {
                        Err(found)
                    }
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    pub fn index(&self) -> Result<ImageIndex> {
        let p = self.root.join("index.json");
        let bytes = fs::read(&p).map_err(|e| Error::InvalidLayout {
            path: self.root.clone(),
            reason: format!("cannot read index.json: {e}"),
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: p.display().to_string(),
            source,
        })
    }

    /// Store a manifest blob and list it in index.json, named `name` if given (replacing an
    /// entry with the same name). Only top-level images belong there: the images of an
    /// index are its blobs ([`OciLayout::put_blob`]), found through it.
    pub fn put_manifest(&self, raw: &RawManifest, name: Option<&str>) -> Result<()> {
        self.put_blob(&raw.digest, &raw.bytes)?;
        // index.json is read, changed and replaced: under the layout's lock, so processes
        // storing images at the same time (`hoist up` beside `hoist image build`) never
        // drop each other's entries. Blobs need no lock: each lands by atomic rename.
        let _lock = self.lock()?;
        let mut index = self.index()?;
        let mut desc = raw.descriptor();
        if let Some(n) = name {
            desc.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), n.to_string())]));
            // The image that had this name leaves index.json rather than stay as an unnamed
            // entry, which would make `oci:DIR` ambiguous. Its blobs stay: other images may
            // share them, and nothing here knows which do. An unnamed entry for this very
            // manifest goes too: it is listed by name now.
            index.manifests.retain(|m| {
                ref_name(m) != Some(n) && !(m.digest == raw.digest && ref_name(m).is_none())
            });
        } else if index.manifests.iter().any(|m| m.digest == raw.digest) {
            // Listed already, with or without a name: a second entry would only make
            // `oci:DIR` ambiguous.
            return Ok(());
        }
        index.manifests.push(desc);
        write_atomic(
            &self.root.join("index.json"),
            &serde_json::to_vec(&index).expect("serialisable"),
        )
    }

    /// An exclusive lock on the layout (flock on its directory, so no extra file appears
    /// in it), held until the returned file is dropped. Advisory: it orders writers that
    /// take it, which every writer in hoist does.
    fn lock(&self) -> Result<fs::File> {
        let dir = fs::File::open(&self.root).ctx(|| format!("opening {}", self.root.display()))?;
        dir.lock()
            .ctx(|| format!("locking {}", self.root.display()))?;
        Ok(dir)
    }

    /// Find a manifest by ref name, by digest, or the only one when `name` is None.
    pub fn get_manifest(&self, name: Option<&str>) -> Result<RawManifest> {
        let index = self.index()?;
        let found = match name {
            Some(n) if n.starts_with("sha256:") => {
                let d = Digest::parse(n)?;
                return self.manifest_by_digest(&d, None);
            }
            Some(n) => index.manifests.iter().find(|m| ref_name(m) == Some(n)),
            None if index.manifests.len() == 1 => index.manifests.first(),
            None => None,
        };
        let Some(desc) = found else {
            return Err(Error::LayoutLookup {
                path: self.root.clone(),
                reason: match name {
                    Some(n) => format!("no image named {n:?} ({})", listing(&index)),
                    None if index.manifests.is_empty() => "index.json lists no image".into(),
                    None => format!(
                        "{} images in index.json: name one with oci:DIR:NAME ({})",
                        index.manifests.len(),
                        listing(&index)
                    ),
                },
            });
        };
        self.manifest_by_digest(&desc.digest, Some(&desc.media_type))
    }

    pub fn manifest_by_digest(&self, d: &Digest, media_type: Option<&str>) -> Result<RawManifest> {
        let bytes = self.read_blob(d)?;
        RawManifest::new(bytes, media_type)
    }

    /// The image named `name` (as [`OciLayout::get_manifest`] finds it) and, when that is an
    /// index, its image for `platform`. Returns (image manifest, the index it came from).
    pub fn resolve_image(
        &self,
        name: Option<&str>,
        platform: &Platform,
    ) -> Result<(RawManifest, Option<RawManifest>)> {
        let top = self.get_manifest(name)?;
        match top.parse()? {
            Parsed::Image(_) => Ok((top, None)),
            Parsed::Index(idx) => {
                let what = match name {
                    Some(n) => format!("oci:{}:{n}", self.root.display()),
                    None => format!("oci:{}", self.root.display()),
                };
                let d = idx.select(platform, &what)?;
                let child = self.manifest_by_digest(&d.digest, Some(&d.media_type))?;
                Ok((child, Some(top)))
            }
        }
    }

    /// Download the blobs among `blobs` (digest, size) this layout lacks from `from`'s
    /// repository, several at once (the client bounds the transfers), each verified in a
    /// temp file and renamed into place: a failure leaves no partial blob. Returns how many
    /// were downloaded.
    pub async fn download_missing(
        &self,
        client: &RegistryClient,
        from: &Reference,
        blobs: impl IntoIterator<Item = (Digest, u64)>,
    ) -> Result<usize> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut queued = std::collections::HashSet::new();
        for (d, size) in blobs {
            if self.has_blob_of_size(&d, size) || !queued.insert(d.clone()) {
                continue;
            }
            client.plan_bytes(size);
            let (c, r, path) = (client.clone(), from.clone(), self.blob_path(&d));
            // No probes run ahead here: the download's own transfer slot is the only bound.
            tasks.spawn(async move { c.download_blob_to(&r, &d, size, &path).await.map(|_| ()) });
        }
        // After a failure the other downloads stop, their temp files gone, before this returns.
        let done = crate::join_all(tasks, "download").await?;
        Ok(done.len())
    }

    /// Copy blob `d` (`size` bytes) from the layout `from` unless this one has it, on a
    /// blocking thread: one of `client`'s transfers, bounded by `--jobs` like the others and
    /// counted on its bar.
    pub(crate) async fn copy_blob_from(
        &self,
        client: &RegistryClient,
        from: &OciLayout,
        d: &Digest,
        size: u64,
    ) -> Result<BlobOutcome> {
        if self.has_blob_of_size(d, size) {
            return Ok(BlobOutcome::Present);
        }
        let _slot = client.transfer_slot().await;
        let (to, src, d) = (self.clone(), from.clone(), d.clone());
        tokio::task::spawn_blocking(move || to.put_blob_from_layout(&d, &src, size))
            .await
            .map_err(|e| Error::Invalid(e.to_string()))??;
        client.progress(size);
        Ok(BlobOutcome::Uploaded)
    }
}

/// The file in a layout's root that makes it hoist's image store (a cache whose corrupt
/// blobs are removed when read). It names the directory it was written for, so a copy of a
/// store (`cp -a`) is the user's layout, and a directory made where a store was deleted
/// has none. OCI tools ignore files they do not know at a layout's root.
pub const STORE_MARKER: &str = "hoist-store.json";

#[derive(Serialize, Deserialize)]
struct StoreMarker {
    about: String,
    /// The store's directory, canonical.
    root: PathBuf,
}

const STORE_MARKER_ABOUT: &str = "This OCI image layout is hoist's image store, a cache: hoist removes a blob of it that fails its digest when read, and fetches it again on the next pull. hoist writes this file when it opens the directory named in `root` as its store; a copy of the directory elsewhere is not hoist's store, and hoist leaves its blobs alone.";

fn is_store(root: &Path) -> bool {
    let Ok(canonical) = root.canonicalize() else {
        return false;
    };
    let marked = fs::read(root.join(STORE_MARKER))
        .ok()
        .and_then(|b| serde_json::from_slice::<StoreMarker>(&b).ok())
        .is_some_and(|m| m.root == canonical);
    // The default store is hoist's even before a store opened it (one made by an older hoist).
    marked || crate::store::default_store_dir().canonicalize().ok() == Some(canonical)
}

/// Write [`STORE_MARKER`] in `root` unless it is there already, for this directory.
fn mark_as_store(root: &Path) -> Result<()> {
    if is_store(root) && root.join(STORE_MARKER).is_file() {
        return Ok(());
    }
    let marker = StoreMarker {
        about: STORE_MARKER_ABOUT.into(),
        root: root
            .canonicalize()
            .ctx(|| format!("resolving {}", root.display()))?,
    };
    let mut json = serde_json::to_vec_pretty(&marker).expect("serialisable");
    json.push(b'\n');
    write_atomic(&root.join(STORE_MARKER), &json)
}

/// What index.json lists, for an error that asks to pick one: the names, and the entries
/// without one by short digest (they can be picked as `oci:DIR:sha256:<digest>`).
fn listing(index: &ImageIndex) -> String {
    let names: Vec<_> = index.manifests.iter().filter_map(ref_name).collect();
    let unnamed: Vec<_> = index
        .manifests
        .iter()
        .filter(|m| ref_name(m).is_none())
        .map(|m| format!("sha256:{}…", &m.digest.hex()[..12]))
        .collect();
    match (names.is_empty(), unnamed.is_empty()) {
        (true, true) => "names: none".into(),
        (false, true) => format!("names: {}", names.join(", ")),
        (true, false) => format!("unnamed: {}", unnamed.join(", ")),
        (false, false) => format!(
            "names: {}; unnamed: {}",
            names.join(", "),
            unnamed.join(", ")
        ),
    }
}

pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
}

/// A temp file in `dir` that lands (by rename) as a layout file: readable by all (0644 less
/// the umask), as skopeo and umoci write them. A layout holds no secrets, and other tools
/// and users read it; tempfile's own default is 0600. Locked while open, so that a sweep
/// removes it only once this process has ended ([`crate::temp_lock`]).
/// `std::io::copy`, but an error names the file it came from: reading blob `from`, or
/// writing `to` (a full disk is the store's problem, not the source's).
fn copy_telling_apart(
    src: &mut impl std::io::Read,
    from: &Path,
    dst: &mut impl Write,
    to: &Path,
) -> Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0u64;
    loop {
        let k = match src.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stored_blob::reading(from, e)),
        };
        dst.write_all(&buf[..k])
            .ctx(|| format!("writing {}", to.display()))?;
        n += k as u64;
    }
}

pub(crate) fn readable_temp_file(dir: &Path) -> Result<tempfile::NamedTempFile> {
    crate::temp_lock::locked_temp_file(dir, crate::temp_lock::DOWNLOAD_PREFIX, "", 0o644)
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = readable_temp_file(dir)?;
    tmp.write_all(data)
        .ctx(|| format!("writing {}", path.display()))?;
    tmp.persist(path).map_err(|e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A disk that is full.
    struct Full;

    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A `.tmp-hoist-*` file whose lock is free (its writer was killed) goes from the
    /// root; a live one, other temp-looking files and the user's files stay.
    #[test]
    fn a_dead_writers_temp_file_in_the_root_is_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let dead = root.join(".tmp-hoist-dead");
        std::fs::write(&dead, b"half an index").unwrap();
        let other = root.join(".tmp-someone-else");
        std::fs::write(&other, b"x").unwrap();
        // Old enough for the age rule of blobs/sha256, which the root does not use.
        let f = std::fs::File::options().write(true).open(&other).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let users = root.join("notes.txt");
        std::fs::write(&users, b"mine").unwrap();
        let live = super::readable_temp_file(root).unwrap();
        super::OciLayout::create(root).unwrap();
        assert!(!dead.exists(), "the dead writer's temp file is swept");
        assert!(live.path().exists(), "a live one stays");
        assert!(other.exists() && users.exists(), "other files stay");
    }

    #[test]
    fn a_failed_write_is_said_as_writing_the_file_written() {
        let from = std::path::Path::new("/src/blob");
        let to = std::path::Path::new("/store/blobs/sha256/.tmp-hoist-x");
        let e = super::copy_telling_apart(&mut &b"data"[..], from, &mut Full, to).unwrap_err();
        let said = e.to_string();
        assert!(
            said.starts_with("writing /store/blobs/sha256/.tmp-hoist-x"),
            "{said}"
        );
        assert!(!said.contains("/src/blob"), "{said}");
        let mut out = vec![];
        assert_eq!(
            super::copy_telling_apart(&mut &b"data"[..], from, &mut out, to).unwrap(),
            4
        );
        assert_eq!(out, b"data");
    }

    use super::*;

    fn manifest(i: usize) -> RawManifest {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{:064x}","size":{i}}},"layers":[]}}"#,
            i
        );
        RawManifest::new(body.into_bytes(), Some(media::OCI_MANIFEST)).unwrap()
    }

    fn small_layer(dir: &Path) -> BuiltLayer {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("f"), "data").unwrap();
        let mut b = crate::layer::LayerBuilder::new();
        b.add(&crate::layer::LayerSpec {
            from: src.path().join("f"),
            to: "/f".into(),
            ..Default::default()
        })
        .unwrap();
        b.build_in(dir).unwrap()
    }

    #[test]
    fn an_index_resolves_to_the_image_for_the_platform() {
        let dir = tempfile::tempdir().unwrap();
        let l = OciLayout::create(dir.path()).unwrap();
        let (amd, arm) = (manifest(1), manifest(2));
        let mut idx = ImageIndex {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: vec![],
            annotations: None,
        };
        for (m, p) in [(&amd, "linux/amd64"), (&arm, "linux/arm64/v8")] {
            l.put_blob(&m.digest, &m.bytes).unwrap();
            let mut d = m.descriptor();
            d.platform = Some(p.parse().unwrap());
            idx.manifests.push(d);
        }
        let top =
            RawManifest::new(serde_json::to_vec(&idx).unwrap(), Some(media::OCI_INDEX)).unwrap();
        l.put_manifest(&top, Some("multi")).unwrap();
        l.put_manifest(&amd, Some("single")).unwrap();

        let (image, index) = l
            .resolve_image(Some("multi"), &"linux/arm64".parse().unwrap())
            .unwrap();
        assert_eq!(image.digest, arm.digest);
        assert_eq!(index.map(|i| i.digest), Some(top.digest.clone()));
        let (image, index) = l
            .resolve_image(Some("single"), &"linux/arm64".parse().unwrap())
            .unwrap();
        assert_eq!((image.digest, index.is_none()), (amd.digest, true));
        let err = l
            .resolve_image(Some("multi"), &"linux/s390x".parse().unwrap())
            .unwrap_err()
            .to_string();
        let name = format!("oci:{}:multi", dir.path().display());
        assert!(
            err.contains(&name) && err.contains("linux/arm64/v8"),
            "{err}"
        );
    }

    /// A layout with several images and no name asked for is valid, only ambiguous: the
    /// error lists what there is to pick, unnamed entries by short digest.
    #[test]
    fn an_ambiguous_layout_lists_what_to_pick() {
        let dir = tempfile::tempdir().unwrap();
        let l = OciLayout::create(dir.path()).unwrap();
        let err = l.get_manifest(None).unwrap_err().to_string();
        assert!(err.ends_with(": index.json lists no image"), "{err}");
        let (a, b) = (manifest(1), manifest(2));
        l.put_manifest(&a, None).unwrap();
        l.put_manifest(&b, None).unwrap();
        let err = l.get_manifest(None).unwrap_err().to_string();
        let short = |m: &RawManifest| format!("sha256:{}…", &m.digest.hex()[..12]);
        assert_eq!(
            err,
            format!(
                "OCI layout {}: 2 images in index.json: name one with oci:DIR:NAME (unnamed: {}, {})",
                dir.path().display(),
                short(&a),
                short(&b)
            )
        );
        l.put_manifest(&b, Some("v2")).unwrap();
        let err = l.get_manifest(None).unwrap_err().to_string();
        assert!(
            err.ends_with(&format!("(names: v2; unnamed: {})", short(&a))),
            "naming an unnamed image lists it once: {err}"
        );
        // Stored again without a name: it is listed already.
        l.put_manifest(&b, None).unwrap();
        assert_eq!(l.index().unwrap().manifests.len(), 2);
        let err = l.get_manifest(Some("v1")).unwrap_err().to_string();
        assert!(
            err.contains("no image named \"v1\" (names: v2; unnamed:"),
            "{err}"
        );
    }

    #[test]
    fn a_store_is_hoists_by_whatever_path_a_user_layout_is_not() {
        use crate::stored_blob::BlobOwner;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        crate::store::LocalStore::open(&store).unwrap();
        // Named as `oci:DIR` by another path to it: still the store.
        let again = OciLayout::open(dir.path().join("./store/../store")).unwrap();
        assert_eq!(again.owner(), BlobOwner::Hoist);
        let user = OciLayout::create(dir.path().join("user")).unwrap();
        assert_eq!(user.owner(), BlobOwner::User);
    }

    /// The marker on disk decides, not what this process opened: a store another process
    /// made is hoist's without this one opening it as a store, and stops being so without it.
    #[test]
    fn the_marker_makes_a_store_hoists() {
        use crate::stored_blob::BlobOwner;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        crate::store::LocalStore::open(&store).unwrap();
        let marker: serde_json::Value =
            serde_json::from_slice(&fs::read(store.join(STORE_MARKER)).unwrap()).unwrap();
        assert_eq!(
            marker["root"].as_str().map(PathBuf::from),
            Some(store.canonicalize().unwrap())
        );
        // As another process that never opened the store would write and then read it.
        fs::remove_file(store.join(STORE_MARKER)).unwrap();
        assert_eq!(OciLayout::open(&store).unwrap().owner(), BlobOwner::User);
        let bytes = serde_json::to_vec(&marker).unwrap();
        fs::write(store.join(STORE_MARKER), bytes).unwrap();
        assert_eq!(OciLayout::open(&store).unwrap().owner(), BlobOwner::Hoist);
        // A copy of the store (its marker names the original) is the user's.
        let copy = dir.path().join("copy");
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(&store)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(copied.success());
        assert_eq!(OciLayout::open(&copy).unwrap().owner(), BlobOwner::User);
    }

    /// A store another process opened is hoist's here too, without this process opening it
    /// as a store: this test runs itself again as that other process.
    #[test]
    fn a_store_another_process_opened_is_hoists() {
        use crate::stored_blob::BlobOwner;
        const OPEN: &str = "HOIST_TEST_OPEN_STORE";
        if let Some(dir) = std::env::var_os(OPEN) {
            crate::store::LocalStore::open(PathBuf::from(dir)).unwrap();
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "layout::tests::a_store_another_process_opened_is_hoists",
            ])
            .env(OPEN, &store)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        assert!(
            store.join(STORE_MARKER).is_file(),
            "the other process opened it"
        );
        assert_eq!(OciLayout::open(&store).unwrap().owner(), BlobOwner::Hoist);
    }

    /// ext4 hands a freed inode to the next directory made: a user's layout made where a
    /// store was deleted must not count as the store.
    #[test]
    fn a_layout_made_where_a_store_was_deleted_is_the_users() {
        use crate::stored_blob::BlobOwner;
        for _ in 0..20 {
            let gone = tempfile::tempdir().unwrap();
            crate::store::LocalStore::open(gone.path().join("x")).unwrap();
            drop(gone);
            let dir = tempfile::tempdir().unwrap();
            let user = OciLayout::create(dir.path().join("x")).unwrap();
            assert_eq!(user.owner(), BlobOwner::User);
        }
    }

    #[test]
    fn layers_land_by_link_and_their_temp_name_goes() {
        let root = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(root.path()).unwrap();
        let layer = small_layer(&layout.blob_dir());
        layout.put_layer(&layer).unwrap();
        let blob = layout.blob_path(&layer.digest);
        assert_eq!(Digest::of(&fs::read(&blob).unwrap()), layer.digest);
        // Stored again (a second build of the same input): still one blob, no error.
        layout.put_layer(&small_layer(&layout.blob_dir())).unwrap();
        drop(layer);
        let names: Vec<_> = fs::read_dir(layout.blob_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![blob.file_name().unwrap().to_str().unwrap()]);
    }

    #[test]
    fn layers_built_on_another_filesystem_are_copied() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(root.path()).unwrap();
        // /dev/shm is a tmpfs here and in CI: hard links across filesystems fail (EXDEV).
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        assert_ne!(
            fs::metadata(shm.path()).unwrap().dev(),
            fs::metadata(root.path()).unwrap().dev(),
            "the test needs /dev/shm on another filesystem than the temp dir"
        );
        let layer = small_layer(shm.path());
        layout.put_layer(&layer).unwrap();
        assert_eq!(
            Digest::of(&fs::read(layout.blob_path(&layer.digest)).unwrap()),
            layer.digest
        );
        drop(layer);
        assert_eq!(fs::read_dir(shm.path()).unwrap().count(), 0);
    }

    #[test]
    fn concurrent_writers_keep_every_index_entry() {
        let dir = tempfile::tempdir().unwrap();
        OciLayout::create(dir.path()).unwrap();
        // Each writer opens the layout itself, as separate processes would: flock orders
        // open files, not threads.
        let (writers, each) = (8, 12);
        std::thread::scope(|s| {
            for w in 0..writers {
                let root = dir.path().to_path_buf();
                s.spawn(move || {
                    let layout = OciLayout::open(root).unwrap();
                    for i in 0..each {
                        let n = w * each + i;
                        layout
                            .put_manifest(&manifest(n), Some(&format!("t{n}")))
                            .unwrap();
                    }
                });
            }
        });
        let index = OciLayout::open(dir.path()).unwrap().index().unwrap();
        let mut names: Vec<&str> = index.manifests.iter().filter_map(ref_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), writers * each, "lost index entries");
    }
}
