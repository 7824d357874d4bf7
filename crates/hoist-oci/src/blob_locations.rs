//! Which repositories of a registry hoist has seen a blob in, so that a push or copy to
//! another repository of that registry can mount the blob from there instead of sending
//! its bytes again (skopeo's blob-info cache does the same).
//!
//! One small file per (registry, digest): `ROOT/<registry>/<algorithm>/<hex>`, holding up
//! to [`CAP`] repository names, one a line, the most recent first. `ROOT` is
//! `blob-locations` under [`crate::store::cache_dir`] for commands. It is a cache: a file
//! that is missing or garbled is no knowledge, a write that fails is logged and forgotten,
//! and two processes writing at once may lose one's update (each write replaces the file
//! whole, by rename, so no reader ever sees half of one).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Repositories remembered per blob and registry.
pub const CAP: usize = 4;

/// More than [`CAP`] names of at most 255 bytes: a bigger file was not written by hoist,
/// and is not read past this.
const MAX_READ: u64 = 4096;

/// The memory, rooted at one directory.
#[derive(Clone, Debug)]
pub struct BlobLocations {
    root: PathBuf,
}

impl BlobLocations {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `blob-locations` under hoist's cache directory.
    pub fn default_root() -> PathBuf {
        crate::store::cache_dir().join("blob-locations")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds what is known of blob `d` on `registry` (HOST[:PORT]).
    pub fn path(&self, registry: &str, d: &Digest) -> PathBuf {
        self.root
            .join(dir_name(registry))
            .join("sha256")
            .join(d.hex())
    }

    /// The repositories of `registry` blob `d` was last seen in, the most recent first (at
    /// most [`CAP`]). Lines that are not repository names are skipped: a name goes into a
    /// URL's query, so a file someone else wrote must not add to it.
    pub fn repositories(&self, registry: &str, d: &Digest) -> Vec<String> {
        let path = self.path(registry, d);
        let mut text = String::new();
        let read =
            std::fs::File::open(&path).and_then(|f| f.take(MAX_READ).read_to_string(&mut text));
        if let Err(e) = read {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(path = %path.display(), error = %e, "blob locations unreadable: ignored");
            }
            return vec![];
        }
        let mut repos: Vec<String> = vec![];
        for line in text.lines() {
            if !crate::reference::valid_repository(line) {
                tracing::debug!(path = %path.display(), line, "not a repository name: skipped");
                continue;
            }
            if !repos.iter().any(|r| r == line) {
                repos.push(line.to_string());
            }
        }
        repos.truncate(CAP);
        repos
    }

    /// Remember that `registry` holds blob `d` in `repository`: first in its list, the
    /// oldest beyond [`CAP`] dropped. Failures are logged at debug level only: a copy or
    /// push never fails for its cache.
    pub fn remember(&self, registry: &str, d: &Digest, repository: &str) {
        if let Err(e) = self.try_remember(registry, d, repository) {
            tracing::debug!(registry, %d, repository, error = %e, "remembering where a blob is failed: ignored");
        }
    }

    fn try_remember(&self, registry: &str, d: &Digest, repository: &str) -> std::io::Result<()> {
        if !crate::reference::valid_repository(repository) {
            return Ok(());
        }
        let mut repos = self.repositories(registry, d);
        // Already the most recent: nothing to write (a push repeated to one repository).
        if repos.first().is_some_and(|r| r == repository) {
            return Ok(());
        }
        repos.retain(|r| r != repository);
        repos.insert(0, repository.to_string());
        repos.truncate(CAP);
        let path = self.path(registry, d);
        let dir = path.parent().expect("a blob's file has a directory");
        crate::store::create_private_dir(dir)?;
        // A temp file beside it, renamed over it: readers see the old list or the new one.
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        let mut text = repos.join("\n");
        text.push('\n');
        tmp.write_all(text.as_bytes())?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// `registry` as one path component: bytes other than ASCII letters, digits, `-` and `.`
/// (a port's `:`, an IPv6 address's brackets) and a leading `.` are percent-encoded, so
/// no two registries share a directory and none is `.`, `..` or hidden.
fn dir_name(registry: &str) -> String {
    let mut out = String::with_capacity(registry.len());
    for (i, b) in registry.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn what_is_remembered_is_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let m = BlobLocations::new(tmp.path().join("blob-locations"));
        let d = digest(1);
        assert!(m.repositories("127.0.0.1:5000", &d).is_empty());
        m.remember("127.0.0.1:5000", &d, "team/app-ann");
        assert_eq!(m.repositories("127.0.0.1:5000", &d), ["team/app-ann"]);
        // Another registry, another blob: nothing known there.
        assert!(m.repositories("127.0.0.1:5001", &d).is_empty());
        assert!(m.repositories("127.0.0.1:5000", &digest(2)).is_empty());
        let path = m.path("127.0.0.1:5000", &d);
        assert!(
            path.ends_with(format!("127.0.0.1%3A5000/sha256/{}", d.hex())),
            "{}",
            path.display()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "team/app-ann\n");
    }

    #[test]
    fn the_most_recent_come_first_and_only_a_few_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let m = BlobLocations::new(tmp.path());
        let d = digest(1);
        for r in ["a", "b", "c", "d", "e"] {
            m.remember("r.io", &d, r);
        }
        assert_eq!(m.repositories("r.io", &d), ["e", "d", "c", "b"]);
        // Seen again: moved to the front, not listed twice.
        m.remember("r.io", &d, "c");
        assert_eq!(m.repositories("r.io", &d), ["c", "e", "d", "b"]);
        m.remember("r.io", &d, "c");
        assert_eq!(m.repositories("r.io", &d), ["c", "e", "d", "b"]);
    }

    #[test]
    fn a_garbled_file_is_no_knowledge() {
        let tmp = tempfile::tempdir().unwrap();
        let m = BlobLocations::new(tmp.path());
        let d = digest(1);
        let path = m.path("r.io", &d);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"\xff\xfe\x00garbage").unwrap();
        assert!(m.repositories("r.io", &d).is_empty());
        // Names that would change a URL, or are not names, are skipped; good ones kept.
        std::fs::write(
            &path,
            "x/y&from=evil\n../z\nUpper\n\nteam/ok\n a\nteam/ok\nb?c\nlast\n",
        )
        .unwrap();
        assert_eq!(m.repositories("r.io", &d), ["team/ok", "last"]);
        // A file that is a directory, or too big to be hoist's: nothing, no panic.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(m.repositories("r.io", &d).is_empty());
        m.remember("r.io", &d, "team/app");
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, "a\n".repeat(10_000)).unwrap();
        assert_eq!(m.repositories("r.io", &d), ["a"]);
        // Remembering over a garbled file replaces it.
        std::fs::write(&path, b"\xff\xfe").unwrap();
        m.remember("r.io", &d, "team/app");
        assert_eq!(m.repositories("r.io", &d), ["team/app"]);
        // An invalid name is not written.
        m.remember("r.io", &d, "x&y");
        assert_eq!(m.repositories("r.io", &d), ["team/app"]);
    }

    #[test]
    fn registries_get_distinct_safe_directories() {
        assert_eq!(dir_name("ghcr.io"), "ghcr.io");
        assert_eq!(dir_name("localhost:5000"), "localhost%3A5000");
        assert_eq!(dir_name("[::1]:5000"), "%5B%3A%3A1%5D%3A5000");
        assert_eq!(dir_name(".."), "%2E.");
        assert_eq!(dir_name("a/b"), "a%2Fb");
    }

    /// A write that cannot happen (the root is a file) fails nothing.
    #[test]
    fn a_failed_write_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let m = BlobLocations::new(&file);
        m.remember("r.io", &digest(1), "team/app");
        assert!(m.repositories("r.io", &digest(1)).is_empty());
    }

    #[test]
    fn directories_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let m = BlobLocations::new(tmp.path().join("blob-locations"));
        let d = digest(1);
        m.remember("r.io", &d, "team/app");
        let mut dir = m.path("r.io", &d);
        while dir.pop() && dir.starts_with(m.root()) {
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        }
    }

    /// Writers at once (threads here, processes alike: each renames a whole file in) may
    /// lose each other's updates, but a reader never finds a torn or mixed file.
    #[test]
    fn concurrent_writers_never_leave_a_torn_file() {
        let tmp = tempfile::tempdir().unwrap();
        let m = BlobLocations::new(tmp.path());
        let d = digest(1);
        let names: Vec<String> = (0..8)
            .map(|t| format!("team/writer-{t}/{}", "x".repeat(200)))
            .collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let writers: Vec<_> = (names.iter())
                .map(|name| {
                    let (m, d) = (&m, &d);
                    s.spawn(move || {
                        for _ in 0..200 {
                            m.remember("r.io", d, name);
                        }
                    })
                })
                .collect();
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                    let text = match std::fs::read_to_string(m.path("r.io", &d)) {
                        Ok(t) => t,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => panic!("{e}"),
                    };
                    reads += 1;
                    assert!(text.ends_with('\n'), "torn: {text:?}");
                    let lines: Vec<&str> = text.lines().collect();
                    assert!(!lines.is_empty() && lines.len() <= CAP, "{text:?}");
                    for l in lines {
                        assert!(names.iter().any(|n| n == l), "torn line {l:?}");
                    }
                }
                reads
            });
            for w in writers {
                w.join().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0, "the reader read");
        });
        let last = m.repositories("r.io", &d);
        assert!(!last.is_empty() && last.len() <= CAP, "{last:?}");
        // No temp file was left beside it.
        let dir = m.path("r.io", &d).parent().unwrap().to_path_buf();
        let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
