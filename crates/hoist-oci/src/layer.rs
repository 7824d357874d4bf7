//! Deterministic layers: the same files give the same digest on every machine.
//!
//! Entries are sorted, mtimes fixed (`SOURCE_DATE_EPOCH`, else [`DEFAULT_EPOCH`]), owners 0:0,
//! modes and symlinks kept, gzip header fixed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::{Compression, GzBuilder};
use hoist_fileset::FileSet;

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};

pub use hoist_fileset::DEFAULT_EPOCH;

/// The mtime and config `created` time used for reproducible output: `SOURCE_DATE_EPOCH`,
/// else [`DEFAULT_EPOCH`]; an invalid value is an error naming it.
pub fn source_date_epoch() -> Result<u64> {
    hoist_fileset::source_date_epoch().map_err(|e| Error::Invalid(e.to_string()))
}

/// One `SRC:DEST` copy into a layer, with optional globs relative to SRC.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerSpec {
    pub from: PathBuf,
    pub to: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// How its warnings name the layer in place of its source path, when it comes from a
    /// project (e.g. ``service `web`, layer from ./dist (services/web/service.yaml:7)``):
    /// a project builds many layers, and the path alone does not say whose it is.
    pub origin: Option<String>,
}

impl LayerSpec {
    /// Parse the CLI form `SRC:DEST`.
    pub fn parse_cli(s: &str) -> Result<Self> {
        let (from, to) = s
            .rsplit_once(':')
            .filter(|(f, t)| !f.is_empty() && !t.is_empty())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid --layer {s:?}: expected SRC:DEST, e.g. ./dist:/app"
                ))
            })?;
        Ok(Self {
            from: from.into(),
            to: to.into(),
            ..Default::default()
        })
    }
}

/// Temp files of layers being built start with this (so a leftover is recognisable).
pub const TEMP_PREFIX: &str = ".hoist-layer-";

/// Temp directories of Dockerfile builds' output start with this (swept like layer files).
pub const BUILD_DIR_PREFIX: &str = ".hoist-build-";

/// A finished layer: the gzip-compressed tar in a temp file, never whole in memory.
/// The file is removed when this is dropped (success, error or cancellation); storing it
/// ([`crate::OciLayout::put_layer`]) links it into place first.
#[derive(Debug)]
pub struct BuiltLayer {
    /// sha256 of the compressed blob.
    pub digest: Digest,
    /// sha256 of the uncompressed tar (goes into the config's rootfs.diff_ids).
    pub diff_id: Digest,
    /// Compressed size (the descriptor's `size`).
    pub size: u64,
    /// Uncompressed size.
    pub tar_size: u64,
    /// Human description for the config history.
    pub created_by: String,
    // Declared before the lock, so dropped first: the file goes while still locked.
    file: tempfile::TempPath,
    /// The temp file's lock ([`crate::temp_lock`]): a sweep leaves it while this lives.
    _lock: fs::File,
}

impl BuiltLayer {
    /// The temp file holding the blob (valid while `self` lives).
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Read the whole blob into memory: for small layers and tests only.
    pub fn read(&self) -> Result<Vec<u8>> {
        fs::read(self.path()).ctx(|| format!("reading layer {}", self.path().display()))
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Dir {
        mode: u32,
    },
    File {
        source: PathBuf,
        mode: u32,
        size: u64,
        /// File capabilities (`setcap`), kept as Docker keeps them.
        capability: Option<Vec<u8>>,
    },
    Symlink {
        target: PathBuf,
    },
}

pub struct LayerBuilder {
    entries: BTreeMap<String, Entry>,
    /// Set by [`LayerBuilder::mtime`], else `SOURCE_DATE_EPOCH` read when the layer is written.
    mtime: Option<u64>,
    descriptions: Vec<String>,
    level: Compression,
    owner: (u64, u64),
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Normalise an in-image destination into a relative path without `.`/`..`; reject escapes.
pub fn normalize_dest(dest: &str) -> Result<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(Error::DestinationEscapes { dest: dest.into() }),
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| Error::Invalid(format!("destination {dest:?} is not UTF-8")))?,
            ),
        }
    }
    Ok(parts.join("/"))
}

/// How the history names a source: its last component (`./public/` → `public`; `.` →
/// the directory's own name).
fn source_name(from: &Path) -> String {
    let name = from.file_name().map(PathBuf::from).or_else(|| {
        let full = fs::canonicalize(from).ok()?;
        full.file_name().map(PathBuf::from)
    });
    name.map_or_else(|| from.display().to_string(), |n| n.display().to_string())
}

/// The selection rules of a layer source, with their errors in this crate's terms.
fn file_set(spec: &LayerSpec) -> Result<FileSet> {
    let set = FileSet::for_dir(&spec.from, &spec.include, &spec.exclude);
    set.map_err(|e| Error::InvalidGlob {
        pattern: e.pattern,
        origin: e.origin,
        reason: e.reason,
    })
}

impl LayerBuilder {
    pub fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
            mtime: None,
            descriptions: vec![],
            level: Compression::default(),
            owner: (0, 0),
        }
    }

    pub fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = Some(mtime);
        self
    }

    /// Owner of every entry (default 0:0, root).
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.owner = (uid, gid);
        self
    }

    /// Faster, larger output (gzip level 1); still deterministic.
    pub fn fast(mut self) -> Self {
        self.level = Compression::fast();
        self
    }

    /// Add the files of one spec. Errors name the missing source or the escaping destination.
    pub fn add(&mut self, spec: &LayerSpec) -> Result<&mut Self> {
        let dest = normalize_dest(&spec.to)?;
        // The one walk the content tag hashes too (hoist-fileset), so the tag covers
        // exactly what goes in: directories, modes, link targets, capabilities. Like
        // Docker's COPY, a source that is a symlink stands for what it points to (`dist ->
        // build/out`; a missing or dangling one is its error); links inside stay links.
        let list = hoist_fileset::entries(&spec.from, &file_set(spec)?).map_err(walk_error)?;
        // A directory source lists itself first, as `""` (a file is named by its name).
        let source_is_dir = list.first().is_some_and(|e| e.rel.is_empty());
        // The history names the source by its last component only: an image's digest
        // must not depend on where the checkout lives or how its path was typed.
        self.descriptions.push(format!(
            "COPY {} {}",
            source_name(&spec.from),
            if spec.to.starts_with('/') {
                spec.to.clone()
            } else {
                format!("/{}", spec.to)
            }
        ));
        let taken = list
            .iter()
            .filter(|e| e.kind != hoist_fileset::EntryKind::Dir)
            .count();
        if source_is_dir {
            self.add_parents(&dest);
            for e in list {
                let target = match (dest.is_empty(), e.rel.is_empty()) {
                    // The image root itself is no entry.
                    (true, true) => continue,
                    (true, false) => e.rel.clone(),
                    (false, true) => dest.clone(),
                    (false, false) => format!("{dest}/{}", e.rel),
                };
                self.entries.insert(target, Entry::from(e));
            }
        } else if let Some(e) = list.into_iter().next() {
            // A file into a directory destination (`DEST/`) keeps its name.
            let dest = if spec.to.ends_with('/') || dest.is_empty() {
                let name = spec
                    .from
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| {
                        Error::Invalid(format!("source {} has no file name", spec.from.display()))
                    })?;
                if dest.is_empty() {
                    name.to_string()
                } else {
                    format!("{dest}/{name}")
                }
            } else {
                dest
            };
            self.add_parents(&dest);
            self.entries.insert(dest, Entry::from(e));
        }
        if taken == 0 && !(spec.include.is_empty() && spec.exclude.is_empty()) {
            let layer =
                (spec.origin.clone()).unwrap_or_else(|| format!("layer {}", spec.from.display()));
            tracing::warn!(
                "{layer} -> {}: include/exclude leave no files to copy",
                spec.to
            );
        }
        Ok(self)
    }

    fn add_parents(&mut self, dest: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty()).collect();
        for p in parts.iter().take(parts.len().saturating_sub(1)) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            self.entries
                .entry(acc.clone())
                .or_insert(Entry::Dir { mode: 0o755 });
        }
    }

    /// Build the layer into a temp file in the default directory ([`default_temp_dir`]).
    pub fn build(&self) -> Result<BuiltLayer> {
        self.build_in(&default_temp_dir())
    }

    /// Build the layer into a temp file in `dir` (the destination's directory when it will be
    /// stored, so it lands by rename), hashing the compressed and uncompressed streams on the
    /// way. Memory stays bounded by the copy and compressor buffers, whatever the size.
    pub fn build_in(&self, dir: &Path) -> Result<BuiltLayer> {
        self.build_in_cancellable(dir, &AtomicBool::new(false))
    }

    /// [`LayerBuilder::build_in`] that stops (and removes its temp file) soon after `cancel`
    /// is set: the build's caller went away (Ctrl-C), so a large layer is not finished for
    /// nothing on a blocking thread.
    pub fn build_in_cancellable(&self, dir: &Path, cancel: &AtomicBool) -> Result<BuiltLayer> {
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        // Readable by all: in a layout it becomes the blob itself (by hard link).
        let tmp = crate::temp_lock::locked_temp_file(dir, TEMP_PREFIX, ".tar.gz", 0o644)?;
        // The lock lives with this handle: kept until the layer is dropped.
        let lock = tmp
            .as_file()
            .try_clone()
            .ctx(|| format!("keeping the lock of {}", tmp.path().display()))?;
        // Large writes to the file; the compressor hands over output in small pieces.
        let out = std::io::BufWriter::with_capacity(256 * 1024, tmp);
        let (out, digest, size, diff_id, tar_size) =
            self.write_cancellable(out, cancel).map_err(|e| {
                if cancel.load(Ordering::Relaxed) {
                    Error::Cancelled {
                        what: format!("building layer {}", self.descriptions.join("; ")),
                        // The caller's flag: the caller knows which signal set it.
                        by: None,
                    }
                } else {
                    e
                }
            })?;
        let tmp = out
            .into_inner()
            .map_err(|e| Error::Io {
                context: format!("writing layer to {}", dir.display()),
                source: e.into_error(),
            })?
            // Dropping a TempPath removes the file; the handle is not needed any more.
            .into_temp_path();
        Ok(BuiltLayer {
            digest,
            diff_id,
            size,
            tar_size,
            created_by: format!("hoist: {}", self.descriptions.join("; ")),
            file: tmp,
            _lock: lock,
        })
    }

    /// Write the tar, gzip it into `out` and hash both: `(out, digest, size, diff_id,
    /// tar_size)`. The bytes depend only on the entries, mtime, owner and level.
    pub fn write_to<W: Write>(&self, out: W) -> Result<(W, Digest, u64, Digest, u64)> {
        self.write_cancellable(out, &AtomicBool::new(false))
    }

    /// [`LayerBuilder::write_to`], failing at the next tar write once `cancel` is set.
    fn write_cancellable<W: Write>(
        &self,
        out: W,
        cancel: &AtomicBool,
    ) -> Result<(W, Digest, u64, Digest, u64)> {
        let gz = GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(HashingWriter::new(out), self.level);
        // Checked on the uncompressed side: every 8 KiB of input, however well it compresses.
        let mut tar = tar::Builder::new(Cancellable {
            inner: HashingWriter::new(gz),
            cancel,
        });
        tar.mode(tar::HeaderMode::Complete);
        let mtime = match self.mtime {
            Some(t) => t,
            None => source_date_epoch()?,
        };
        for (path, entry) in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(mtime);
            h.set_uid(self.owner.0);
            h.set_gid(self.owner.1);
            let io = |e| Error::Io {
                context: format!("writing layer entry {path}"),
                source: e,
            };
            match entry {
                Entry::Dir { mode } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{path}/"), std::io::empty())
                        .map_err(io)?;
                }
                Entry::File {
                    source,
                    mode,
                    size,
                    capability,
                } => {
                    if let Some(cap) = capability {
                        let record = pax_record(hoist_fileset::CAPABILITY_PAX_RECORD, cap);
                        let mut x = tar::Header::new_ustar();
                        x.set_entry_type(tar::EntryType::XHeader);
                        x.set_mode(0o644);
                        x.set_mtime(mtime);
                        x.set_uid(0);
                        x.set_gid(0);
                        x.set_size(record.len() as u64);
                        tar.append_data(&mut x, pax_header_name(path), &record[..])
                            .map_err(io)?;
                    }
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(*size);
                    let mut f =
                        fs::File::open(source).ctx(|| format!("opening {}", source.display()))?;
                    // Exactly the size in the header: a file that grows or shrinks meanwhile
                    // would otherwise give a corrupt tar.
                    let mut limited = (&mut f).take(*size);
                    tar.append_data(&mut h, path, &mut limited).map_err(io)?;
                    let short = limited.limit();
                    let mut one = [0u8; 1];
                    let grew = f
                        .read(&mut one)
                        .ctx(|| format!("reading {}", source.display()))?
                        > 0;
                    if short > 0 || grew {
                        return Err(Error::Invalid(format!(
                            "{} changed while the layer was being built (it was {size} bytes, now {}); build again once it is written",
                            source.display(),
                            if grew {
                                "more".to_string()
                            } else {
                                format!("{}", size - short)
                            }
                        )));
                    }
                }
                Entry::Symlink { target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    tar.append_link(&mut h, path, target).map_err(io)?;
                }
            }
        }
        let hw = tar.into_inner().ctx(|| "finishing layer tar".into())?.inner;
        let (gz, diff_id, tar_size) = hw.finish();
        let hw = gz.finish().ctx(|| "finishing gzip stream".into())?;
        let (out, digest, size) = hw.finish();
        Ok((out, digest, size, diff_id, tar_size))
    }
}

/// A writer that fails once `cancel` is set, so a build stops at its next write.
struct Cancellable<'a, W> {
    inner: W,
    cancel: &'a AtomicBool,
}

impl<W: Write> Write for Cancellable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("layer build cancelled"));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where layers are built when no destination directory is given: `tmp` under hoist's
/// cache directory (on disk; `/tmp` is often RAM-backed), else the system temp directory.
pub fn default_temp_dir() -> PathBuf {
    let dir = crate::store::cache_dir().join("tmp");
    if crate::store::create_private_dir(&dir).is_ok() {
        dir
    } else {
        std::env::temp_dir()
    }
}

/// One PAX extended-header record: `<length> <key>=<value>\n`, the length counting the
/// whole record, its own digits included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// The name of the PAX header of entry `path` (readers ignore it; Go's archive/tar writes
/// `PaxHeaders.0/<name>` too), kept within a plain ustar name.
fn pax_header_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let mut name = format!("PaxHeaders.0/{base}");
    let mut end = name.len().min(100);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

impl From<hoist_fileset::LayerEntry> for Entry {
    fn from(e: hoist_fileset::LayerEntry) -> Entry {
        match e.kind {
            hoist_fileset::EntryKind::Dir => Entry::Dir { mode: e.mode },
            hoist_fileset::EntryKind::File { size, capability } => Entry::File {
                source: e.host,
                mode: e.mode,
                size,
                capability,
            },
            hoist_fileset::EntryKind::Symlink { target } => Entry::Symlink { target },
        }
    }
}

fn walk_error(e: hoist_fileset::WalkError) -> Error {
    use hoist_fileset::WalkError as W;
    match e {
        W::Missing { path } => Error::MissingSource { path },
        W::Dangling { path, target } => Error::DanglingSource { path, target },
        W::Io { path, source } => Error::Io {
            context: format!("reading {}", path.display()),
            source,
        },
        e @ (W::NotUtf8 { .. } | W::Special { .. }) => Error::Invalid(e.to_string()),
    }
}

/// Build one layer from several specs (the usual case: one `--layer` each gives one layer;
/// callers decide the grouping).
pub fn build_layer(specs: &[LayerSpec]) -> Result<BuiltLayer> {
    let mut b = LayerBuilder::new();
    for s in specs {
        b.add(s)?;
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn list(layer: &BuiltLayer) -> Vec<(String, u32, u64, u64, u64)> {
        let blob = layer.read().unwrap();
        let dec = flate2::read::GzDecoder::new(&blob[..]);
        let mut a = tar::Archive::new(dec);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect()
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("b/sub")).unwrap();
        fs::write(d.path().join("b/sub/z.txt"), "z").unwrap();
        fs::write(d.path().join("a.sh"), "#!/bin/sh").unwrap();
        fs::set_permissions(d.path().join("a.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(d.path().join("skip.log"), "x").unwrap();
        fs::write(d.path().join("keep.log"), "x").unwrap();
        std::os::unix::fs::symlink("a.sh", d.path().join("link")).unwrap();
        fs::write(d.path().join(".dockerignore"), "*.log\n!keep.log\n").unwrap();
        d
    }

    /// [`tree`]'s directory as `/app`.
    fn app(d: &tempfile::TempDir) -> LayerSpec {
        LayerSpec {
            from: d.path().into(),
            to: "/app".into(),
            ..Default::default()
        }
    }

    #[test]
    fn deterministic_sorted_and_modes_kept() {
        let d = tree();
        let spec = app(&d);
        let l1 = LayerBuilder::new()
            .mtime(5)
            .add(&spec)
            .unwrap()
            .build()
            .unwrap();
        // Touch every file: mtimes change, the digest must not.
        fs::write(d.path().join("b/sub/z.txt"), "z").unwrap();
        let l2 = LayerBuilder::new()
            .mtime(5)
            .add(&spec)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(l1.digest, l2.digest);
        assert_eq!(l1.diff_id, l2.diff_id);
        assert_eq!(Digest::of(&l1.read().unwrap()), l1.digest);
        let names: Vec<_> = list(&l1).into_iter().map(|e| (e.0, e.1)).collect();
        let expected: Vec<(String, u32)> = vec![
            ("app/".into(), 0o755 & names[0].1),
            ("app/.dockerignore".into(), 0o644),
            ("app/a.sh".into(), 0o750),
            ("app/b/".into(), names[3].1),
            ("app/b/sub/".into(), names[4].1),
            ("app/b/sub/z.txt".into(), 0o644),
            ("app/keep.log".into(), 0o644),
            ("app/link".into(), 0o777),
        ];
        assert_eq!(names, expected);
        assert!(list(&l1).iter().all(|e| e.2 == 5 && e.3 == 0 && e.4 == 0));
        // A content change changes the digest.
        fs::write(d.path().join("b/sub/z.txt"), "zz").unwrap();
        let l3 = LayerBuilder::new()
            .mtime(5)
            .add(&spec)
            .unwrap()
            .build()
            .unwrap();
        assert_ne!(l1.digest, l3.digest);
    }

    #[test]
    fn owner_can_be_set() {
        let d = tree();
        let spec = LayerSpec {
            from: d.path().join("a.sh"),
            to: "/a".into(),
            ..Default::default()
        };
        let mut b = LayerBuilder::new().owner(1000, 2000);
        let l = b.add(&spec).unwrap().build().unwrap();
        assert!(list(&l).iter().all(|e| e.3 == 1000 && e.4 == 2000));
    }

    #[test]
    fn include_exclude_and_single_files() {
        let d = tree();
        let spec = LayerSpec {
            from: d.path().into(),
            to: "/srv".into(),
            include: vec!["**/*.txt".into(), "a.sh".into()],
            exclude: vec!["b/sub".into()],
            origin: None,
        };
        let names: Vec<_> = list(&LayerBuilder::new().add(&spec).unwrap().build().unwrap())
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, vec!["srv/", "srv/a.sh"]);
        let spec = LayerSpec {
            from: d.path().join("a.sh"),
            to: "/usr/local/bin/".into(),
            ..Default::default()
        };
        let names: Vec<_> = list(&LayerBuilder::new().add(&spec).unwrap().build().unwrap())
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(
            names,
            vec!["usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/a.sh"]
        );
    }

    #[test]
    fn a_symlinked_source_stands_for_its_target() {
        let d = tree();
        let links = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(d.path(), links.path().join("dist")).unwrap();
        std::os::unix::fs::symlink(d.path().join("a.sh"), links.path().join("run")).unwrap();
        let via_link = |from: &str, to: &str| {
            let spec = LayerSpec {
                from: links.path().join(from),
                to: to.into(),
                ..Default::default()
            };
            list(&LayerBuilder::new().add(&spec).unwrap().build().unwrap())
        };
        let direct = |from: &Path, to: &str| {
            let spec = LayerSpec {
                from: from.into(),
                to: to.into(),
                ..Default::default()
            };
            list(&LayerBuilder::new().add(&spec).unwrap().build().unwrap())
        };
        assert_eq!(via_link("dist", "/app"), direct(d.path(), "/app"));
        assert_eq!(
            via_link("run", "/bin/run"),
            direct(&d.path().join("a.sh"), "/bin/run")
        );
        std::os::unix::fs::symlink("nowhere", links.path().join("dangling")).unwrap();
        let err = add_error(&LayerSpec {
            from: links.path().join("dangling"),
            to: "/x".into(),
            ..Default::default()
        });
        assert!(
            err.contains("is a symlink to nowhere, which does not exist"),
            "{err}"
        );
    }

    #[test]
    fn the_history_does_not_depend_on_how_the_source_path_was_typed() {
        let d = tree();
        let parent = d.path().parent().unwrap();
        let name = d.path().file_name().unwrap().to_str().unwrap();
        let built = |from: PathBuf| {
            let spec = LayerSpec {
                from,
                to: "/app".into(),
                ..Default::default()
            };
            let l = LayerBuilder::new().add(&spec).unwrap().build().unwrap();
            (l.digest.clone(), l.created_by.clone())
        };
        let absolute = built(d.path().to_path_buf());
        assert_eq!(absolute.1, format!("hoist: COPY {name} /app"));
        assert_eq!(built(parent.join(".").join(name).join("")), absolute);
        assert_eq!(built(d.path().join(".")), absolute);
        assert!(!absolute.1.contains(&parent.display().to_string()));
    }

    #[test]
    fn file_and_memory_output_are_the_same_bytes() {
        let d = tree();
        let mut b = LayerBuilder::new();
        b.add(&app(&d)).unwrap();
        let out = tempfile::tempdir().unwrap();
        let l = b.build_in(out.path()).unwrap();
        let (mem, digest, size, diff_id, tar_size) = b.write_to(Vec::new()).unwrap();
        assert_eq!(l.read().unwrap(), mem);
        assert_eq!(
            (l.digest.clone(), l.size, l.diff_id.clone(), l.tar_size),
            (digest, size, diff_id, tar_size)
        );
        let path = l.path().to_path_buf();
        assert!(path.starts_with(out.path()) && path.is_file());
        drop(l);
        assert!(!path.exists(), "dropping a layer removes its temp file");
    }

    #[test]
    fn no_temp_file_is_left_when_a_build_fails() {
        let d = tree();
        let out = tempfile::tempdir().unwrap();
        // Vanishes between listing and building.
        let mut b = LayerBuilder::new();
        b.add(&app(&d)).unwrap();
        fs::remove_file(d.path().join("b/sub/z.txt")).unwrap();
        let e = b.build_in(out.path()).unwrap_err().to_string();
        assert!(e.contains("z.txt"), "{e}");
        // Grows while being read: /proc files say 0 bytes and then have content.
        let mut b = LayerBuilder::new();
        b.add(&LayerSpec {
            from: "/proc/self/status".into(),
            to: "/status".into(),
            ..Default::default()
        })
        .unwrap();
        let e = b.build_in(out.path()).unwrap_err().to_string();
        assert!(
            e.contains("/proc/self/status changed while the layer was being built"),
            "{e}"
        );
        let left: Vec<_> = fs::read_dir(out.path()).unwrap().collect();
        assert!(left.is_empty(), "temp files left: {left:?}");
    }

    /// Temp files whose lock is free go whatever their age; locked ones (a live handle)
    /// stay whatever their age; without a lock to check, age decides.
    #[test]
    fn temp_files_are_swept_by_lock_and_by_age_only_without_one() {
        use crate::temp_lock::{DIR_LOCK, DOWNLOAD_PREFIX, locked_temp_dir, locked_temp_file};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
        let age = |p: &Path| {
            fs::File::open(p).unwrap().set_modified(day_ago).unwrap();
        };
        // Unlocked, fresh: their owner ended (nothing holds the lock).
        let dead_layer = d.join(format!("{TEMP_PREFIX}dead.tar.gz"));
        let dead_download = d.join(format!("{DOWNLOAD_PREFIX}dead"));
        for p in [&dead_layer, &dead_download] {
            fs::write(p, "x").unwrap();
        }
        // Held by live handles (this process), though a day old.
        let live_download = locked_temp_file(d, DOWNLOAD_PREFIX, "", 0o644).unwrap();
        let mut b = LayerBuilder::new();
        let src = tree();
        b.add(&app(&src)).unwrap();
        let live_layer = b.build_in(d).unwrap();
        let live_build = locked_temp_dir(d, BUILD_DIR_PREFIX).unwrap();
        for p in [live_download.path(), live_layer.path(), live_build.path()] {
            age(p);
        }
        // No lock to check: tempfile's default name (older hoists' downloads) and build
        // dirs without a lock file, one old and one fresh of each.
        let (legacy_old, legacy_fresh) = (d.join(".tmpOLD123"), d.join(".tmpNEW123"));
        for p in [&legacy_old, &legacy_fresh] {
            fs::write(p, "x").unwrap();
        }
        age(&legacy_old);
        let old_build = d.join(format!("{BUILD_DIR_PREFIX}old"));
        let fresh_build = d.join(format!("{BUILD_DIR_PREFIX}fresh"));
        for b in [&old_build, &fresh_build] {
            fs::create_dir_all(b.join("layout/blobs")).unwrap();
        }
        age(&old_build);
        // A build dir whose owner ended: its lock file is free.
        let dead_build = d.join(format!("{BUILD_DIR_PREFIX}dead"));
        fs::create_dir_all(dead_build.join("layout")).unwrap();
        fs::write(dead_build.join(DIR_LOCK), "").unwrap();
        // Not hoist's: never touched.
        let other = d.join("0123abcd");
        fs::write(&other, "x").unwrap();
        age(&other);

        let n = crate::temp_lock::sweep(d, std::time::Duration::from_secs(3600));
        assert_eq!(n, 5);
        for gone in [
            &dead_layer,
            &dead_download,
            &legacy_old,
            &old_build,
            &dead_build,
        ] {
            assert!(!gone.exists(), "{} was kept", gone.display());
        }
        for kept in [
            live_download.path(),
            live_layer.path(),
            live_build.path(),
            &legacy_fresh,
            &fresh_build,
            &other,
        ] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        // Once their handles are dropped, the live ones' files are gone too.
        let paths = [
            live_layer.path().to_path_buf(),
            live_build.path().to_path_buf(),
        ];
        drop((live_layer, live_build));
        assert!(paths.iter().all(|p| !p.exists()));
    }

    /// The error adding `spec` gives, as the user reads it.
    fn add_error(spec: &LayerSpec) -> String {
        LayerBuilder::new().add(spec).err().unwrap().to_string()
    }

    #[test]
    fn rejects_escapes_and_missing_sources() {
        let d = tree();
        let e = add_error(&LayerSpec {
            from: d.path().into(),
            to: "/app/../../etc".into(),
            ..Default::default()
        });
        assert!(
            e.contains("escapes the image root") && e.contains("/app/../../etc"),
            "{e}"
        );
        let missing = d.path().join("nope");
        let e = add_error(&LayerSpec {
            from: missing.clone(),
            to: "/x".into(),
            ..Default::default()
        });
        assert!(
            e.contains(&missing.display().to_string()) && e.contains("does not exist"),
            "{e}"
        );
        assert!(LayerSpec::parse_cli("nocolon").is_err());
        assert_eq!(
            LayerSpec::parse_cli("./a:b:/x").unwrap().from,
            PathBuf::from("./a:b")
        );
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("a", b"b"), b"6 a=b\n");
        for n in [0, 1, 4, 5, 6, 90, 95, 96, 97, 990, 995, 996] {
            let r = pax_record("k", &vec![b'v'; n]);
            let (len, _) = std::str::from_utf8(&r[..r.iter().position(|&c| c == b' ').unwrap()])
                .map(|l| (l.parse::<usize>().unwrap(), ()))
                .unwrap();
            assert_eq!(len, r.len(), "value of {n} bytes");
        }
        assert_eq!(pax_header_name("app/bin/server"), "PaxHeaders.0/server");
        let long = format!("d/{}", "é".repeat(80));
        assert!(pax_header_name(&long).len() <= 100);
    }

    /// `setcap cap_net_bind_service=+ep` on a layer file: the layer carries it as Docker's
    /// PAX record, GNU tar restores it (`getcap` sees it), the digest is stable, and the
    /// same file without capabilities gives the layer it always gave.
    #[test]
    fn file_capabilities_are_kept_as_docker_keeps_them() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("server");
        fs::write(&f, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
        let build = || {
            LayerBuilder::new()
                .add(&LayerSpec {
                    from: d.path().into(),
                    to: "/app".into(),
                    ..Default::default()
                })
                .unwrap()
                .build()
                .unwrap()
        };
        let plain = build();
        let setcap = |args: &[&str]| {
            let out = std::process::Command::new("setcap")
                .args(args)
                .arg(&f)
                .output()
                .expect("setcap is installed (libcap2-bin, scripts/install-deps)");
            assert!(out.status.success(), "setcap: {out:?} (needs root)");
        };
        setcap(&["cap_net_bind_service=+ep"]);
        let cap = hoist_fileset::file_capability(&f).expect("setcap set it");
        let capped = build();
        assert_ne!(capped.digest, plain.digest);
        assert_eq!(build().digest, capped.digest);

        let blob = capped.read().unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
        let mut seen = vec![];
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let caps: Vec<Vec<u8>> = (e.pax_extensions().unwrap().into_iter().flatten())
                .map(|x| x.unwrap())
                .filter(|x| x.key() == Ok(hoist_fileset::CAPABILITY_PAX_RECORD))
                .map(|x| x.value_bytes().to_vec())
                .collect();
            seen.push((path, caps));
        }
        assert_eq!(
            seen,
            [("app/".into(), vec![]), ("app/server".into(), vec![cap])]
        );

        // An outside reader: GNU tar restores the capability.
        let out = tempfile::tempdir().unwrap();
        let tgz = out.path().join("layer.tgz");
        fs::write(&tgz, &blob).unwrap();
        let untar = std::process::Command::new("tar")
            .args(["--xattrs", "--xattrs-include=security.capability", "-xzpf"])
            .arg(&tgz)
            .arg("-C")
            .arg(out.path())
            .output()
            .unwrap();
        assert!(untar.status.success(), "{untar:?}");
        let getcap = std::process::Command::new("getcap")
            .arg(out.path().join("app/server"))
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&getcap.stdout);
        assert!(shown.contains("cap_net_bind_service=ep"), "{shown:?}");

        setcap(&["-r"]);
        assert_eq!(build().digest, plain.digest);
    }
}

/// The layer format is a promise: the same tree must give the same digest in every hoist
/// version (a changed digest re-uploads every layer and moves every tag's contents). The
/// digests below were taken before the walk moved to hoist-fileset.
#[cfg(test)]
mod golden {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A tree whose every mode is set, so umask cannot change it.
    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["b/sub", "empty", "only-tmp", "c"] {
            fs::create_dir_all(r.join(dir)).unwrap();
        }
        for (f, mode) in [
            ("a.sh", 0o750),
            ("b/sub/z.txt", 0o644),
            ("b/y.tmp", 0o600),
            ("only-tmp/x.tmp", 0o644),
            ("c/keep.html", 0o640),
            ("c/d.css", 0o644),
            ("e-f", 0o644),
        ] {
            fs::write(r.join(f), f).unwrap();
            chmod(&r.join(f), mode);
        }
        std::os::unix::fs::symlink("a.sh", r.join("link")).unwrap();
        for (dir, mode) in [
            ("", 0o755),
            ("b", 0o750),
            ("b/sub", 0o755),
            ("empty", 0o700),
            ("only-tmp", 0o755),
            ("c", 0o755),
        ] {
            chmod(&r.join(dir), mode);
        }
        d
    }

    fn digest(from: &Path, to: &str, include: &[&str], exclude: &[&str]) -> String {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        let mut b = LayerBuilder::new().mtime(1_700_000_000);
        b.add(&LayerSpec {
            from: from.into(),
            to: to.into(),
            include: s(include),
            exclude: s(exclude),
            origin: None,
        })
        .unwrap();
        let (_, digest, ..) = b.write_to(std::io::sink()).unwrap();
        digest.to_string()
    }

    #[test]
    fn layer_bytes_do_not_change_between_versions() {
        let d = tree();
        let r = d.path();
        let got = [
            digest(r, "/app", &[], &[]),
            digest(r, "/app", &[], &["*.tmp"]),
            digest(r, "/", &[], &["*.tmp", "!only-tmp/x.tmp"]),
            digest(r, "/srv/www/", &["*.html", "a.sh"], &[]),
            digest(&r.join("a.sh"), "/usr/bin/", &[], &[]),
        ];
        let want = [
            "sha256:566927aa17f9a40efaa807230ae1465e39ec8a395657571e929855677562bd61",
            "sha256:c42f560c06a80dd1d84d21ffe5986a618eb48a9e567bf6eeff5c249829c5a365",
            "sha256:1450f0c9d9fe494f632154610c4f0bcbea00684c717912a18cbaf1e1c6fbe0d3",
            "sha256:c32e403f60caf8f61fb7a3dd928a90af2bd59d425795f6e8f928fd5318abf044",
            "sha256:571d3913c681d3f8d1c0f9494f10ab4953571323ffd0251cb939bf0558f60bf4",
        ];
        assert_eq!(got, want);
    }
}
