//! Reading a blob out of an OCI layout, checked against its digest (and size) as it is read.
//!
//! This is the one place that decides what happens to a blob that fails its check: in
//! hoist's own store (a cache hoist fills) it is removed, so the next pull fetches it again
//! instead of skipping it as "already stored" for ever; in a user's own `oci:DIR` layout it
//! is left alone (the user's data) and only reported. Every reader of layout blobs (configs,
//! layer unpack, uploads, layout-to-layout copies) goes through [`StoredBlob`].

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{CorruptFate, Error, Result};

/// Who a layout's blobs belong to, which decides what happens to a corrupt one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOwner {
    /// hoist's own store: a cache, so a corrupt blob is removed and fetched again later.
    Hoist,
    /// A layout the user named (`oci:DIR`): never changed on a read.
    User,
}

/// The file a reader opened, to tell whether the path still names it when it is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileIdentity {
    fn of(m: &fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }
}

/// A blob file opened for reading: hashes what it reads and, at the end, fails (as an
/// `io::Error` carrying [`Error::CorruptBlob`]) if the bytes are not the blob its name says.
/// Read it to the end (or call [`StoredBlob::finish`]): the check is made there.
pub struct StoredBlob {
    file: fs::File,
    path: PathBuf,
    owner: BlobOwner,
    identity: FileIdentity,
    digest: Digest,
    size: Option<u64>,
    hasher: Sha256,
    seen: u64,
    /// Set once the end was reached and checked (or a failure reported).
    done: Option<std::result::Result<(), ()>>,
}

impl StoredBlob {
    /// Open blob `digest` at `path` of a layout owned by `owner`; `size` is what its
    /// descriptor says, when the caller knows one.
    pub(crate) fn open(
        path: PathBuf,
        owner: BlobOwner,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Self> {
        let file = fs::File::open(&path).map_err(|source| Error::Io {
            context: format!("reading blob {}", path.display()),
            source,
        })?;
        // fstat of the open file: the identity of exactly the bytes this reader hashes.
        let meta = file.metadata().map_err(|source| Error::Io {
            context: format!("reading blob {}", path.display()),
            source,
        })?;
        Ok(Self {
            file,
            path,
            owner,
            identity: FileIdentity::of(&meta),
            digest: digest.clone(),
            size,
            hasher: Sha256::new(),
            seen: 0,
            done: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read what is left and check the whole blob: for readers that may stop before the
    /// end (a tar reader stops at its end-of-archive marker).
    pub fn finish(&mut self) -> Result<()> {
        io::copy(self, &mut io::sink())
            .map(|_| ())
            .map_err(|e| from_read_error(e, &self.path))
    }

    /// The blob failed its check (`reason`): removed from hoist's store if the path still
    /// names the file read, and the error that says so.
    fn reject(&mut self, reason: String) -> io::Error {
        self.done = Some(Err(()));
        let fate = match self.owner {
            BlobOwner::User => CorruptFate::LeftInUserLayout,
            BlobOwner::Hoist => remove_if_same(&self.path, self.identity),
        };
        io::Error::other(Error::CorruptBlob {
            digest: self.digest.to_string(),
            path: self.path.clone(),
            reason,
            fate,
            image: None,
        })
    }

    fn check_end(&mut self) -> io::Result<()> {
        if let Some(size) = self.size
            && self.seen != size
        {
            return Err(self.reject(format!(
                "it is {} bytes, its descriptor says {size}",
                self.seen
            )));
        }
        let actual = Digest::from_hasher(self.hasher.clone());
        if actual != self.digest {
            return Err(self.reject(format!("its content hashes to {actual}")));
        }
        self.done = Some(Ok(()));
        Ok(())
    }
}

impl Read for StoredBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.done {
            Some(Ok(())) => return Ok(0),
            Some(Err(())) => return Err(io::Error::other("blob already failed its check")),
            None => {}
        }
        let n = self.file.read(buf)?;
        if n == 0 {
            self.check_end()?;
            return Ok(0);
        }
        self.seen += n as u64;
        if let Some(size) = self.size
            && self.seen > size
        {
            return Err(self.reject(format!(
                "it is longer than the {size} bytes its descriptor says"
            )));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Remove the corrupt file at `path` only if it is still the one that was read: another
/// writer may have put a good copy there by rename since, which must stay. (Between the
/// stat and the unlink a rename could still slip in; the worst that does is drop a good
/// blob, which the next pull fetches again, while readers holding it open keep reading it.)
fn remove_if_same(path: &Path, read: FileIdentity) -> CorruptFate {
    match fs::symlink_metadata(path) {
        Ok(now) if FileIdentity::of(&now) == read => match fs::remove_file(path) {
            Ok(()) => {
                // The error says so; this is for logs that lose the error.
                tracing::debug!(blob = %path.display(), "removed a corrupt blob from the image store");
                CorruptFate::Removed
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => CorruptFate::Replaced,
            Err(e) => CorruptFate::RemoveFailed(e.to_string()),
        },
        // Another process replaced or removed it already.
        Ok(_) | Err(_) => CorruptFate::Replaced,
    }
}

/// The crate error inside an `io::Error` from reading a [`StoredBlob`] (its check failed),
/// else the I/O error itself, about `path`.
pub(crate) fn from_read_error(e: io::Error, path: &Path) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        match e.into_inner().map(|i| i.downcast::<Error>()) {
            Some(Ok(inner)) => return *inner,
            _ => unreachable!("checked to hold an Error"),
        }
    }
    Error::Io {
        context: format!("reading blob {}", path.display()),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(dir: &Path, data: &[u8]) -> (PathBuf, Digest) {
        let d = Digest::of(data);
        let p = dir.join(d.hex());
        fs::write(&p, data).unwrap();
        (p, d)
    }

    fn read_all(p: &Path, owner: BlobOwner, d: &Digest, size: Option<u64>) -> Result<Vec<u8>> {
        let mut r = StoredBlob::open(p.to_path_buf(), owner, d, size)?;
        let mut v = vec![];
        r.read_to_end(&mut v).map_err(|e| from_read_error(e, p))?;
        Ok(v)
    }

    #[test]
    fn a_good_blob_reads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (p, d) = blob(dir.path(), b"good bytes");
        assert_eq!(
            read_all(&p, BlobOwner::Hoist, &d, Some(10)).unwrap(),
            b"good bytes"
        );
        assert!(p.exists());
    }

    #[test]
    fn a_corrupt_blob_of_hoists_store_is_removed_and_a_users_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (p, d) = blob(dir.path(), b"good bytes");
        fs::write(&p, b"GOOD bytes").unwrap();
        let err = read_all(&p, BlobOwner::User, &d, Some(10)).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::CorruptBlob {
                    fate: CorruptFate::LeftInUserLayout,
                    ..
                }
            ),
            "{err}"
        );
        assert!(p.exists(), "a user's layout is never changed by a read");
        let err = read_all(&p, BlobOwner::Hoist, &d, Some(10)).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::CorruptBlob {
                    fate: CorruptFate::Removed,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!p.exists());
    }

    #[test]
    fn a_blob_longer_than_its_descriptor_fails_early() {
        let dir = tempfile::tempdir().unwrap();
        let (p, d) = blob(dir.path(), b"good bytes");
        let err = read_all(&p, BlobOwner::Hoist, &d, Some(4)).unwrap_err();
        assert!(err.to_string().contains("longer than the 4 bytes"), "{err}");
        assert!(!p.exists());
    }

    #[test]
    fn a_good_copy_renamed_over_a_corrupt_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (p, d) = blob(dir.path(), b"good bytes");
        fs::write(&p, b"GOOD bytes").unwrap();
        let mut r = StoredBlob::open(p.clone(), BlobOwner::Hoist, &d, Some(10)).unwrap();
        // Another writer lands a good copy by rename while the bad one is being read.
        let tmp = dir.path().join("landing");
        fs::write(&tmp, b"good bytes").unwrap();
        fs::rename(&tmp, &p).unwrap();
        let err = r.finish().unwrap_err();
        assert!(
            matches!(
                &err,
                Error::CorruptBlob {
                    fate: CorruptFate::Replaced,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(fs::read(&p).unwrap(), b"good bytes");
    }
}
