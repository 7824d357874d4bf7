//! Reading a blob out of an OCI layout, checked against its digest (and size) as it is read.
//!
//! This is the one place that decides what happens to a blob that fails its check: in
//! hoist's own store (a cache hoist fills) a blob whose bytes fail their digest is removed,
//! so the next pull fetches it again instead of skipping it as "already stored" for ever; in
//! a user's own `oci:DIR` layout it is left alone (the user's data) and only reported. Right
//! bytes under a descriptor of another size are a wrong manifest: reported, never removed.
//! Readers of layout blobs (configs, layer unpack, uploads) go through [`StoredBlob`];
//! layout-to-layout copies, which hash as they write, through `ReadOf::check`.

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
pub(crate) struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileIdentity {
    pub(crate) fn of(m: &fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }
}

/// A blob file opened for reading: hashes what it reads and, at the end, fails (as an
/// `io::Error` carrying [`Error::CorruptBlob`], or [`Error::BlobSizeWrong`] when the bytes
/// are right and the descriptor's size is not) if the bytes are not the blob its name says.
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
    state: State,
}

/// Where a [`StoredBlob`] is: a failure is kept so every later read or `finish` reports
/// the same error (a tar reader that hit it first must not hide it from the caller) and the
/// blob is dealt with once.
enum State {
    Reading,
    Good,
    Failed(Failure),
}

#[derive(Clone)]
enum Failure {
    /// The bytes fail their digest (`reason`); `fate` is what became of the file.
    Corrupt { reason: String, fate: CorruptFate },
    /// The bytes match their digest, but not the size their descriptor gives.
    WrongSize { descriptor: u64 },
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
        let file = fs::File::open(&path).map_err(|e| reading(&path, e))?;
        // fstat of the open file: the identity of exactly the bytes this reader hashes.
        let meta = file.metadata().map_err(|e| reading(&path, e))?;
        Ok(Self {
            file,
            path,
            owner,
            identity: FileIdentity::of(&meta),
            digest: digest.clone(),
            size,
            hasher: Sha256::new(),
            seen: 0,
            state: State::Reading,
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

    /// The error for `failure`, as often as it is asked for.
    fn error(&self, failure: &Failure) -> Error {
        failure.error(&self.digest, &self.path, self.seen)
    }

    fn fail(&mut self, failure: Failure) -> io::Error {
        let e = self.error(&failure);
        self.state = State::Failed(failure);
        io::Error::other(e)
    }

    /// Read the rest of the file into the hash (not handed to the caller): a blob longer
    /// than its descriptor is judged by its digest, which needs all of it.
    fn hash_rest(&mut self) -> io::Result<()> {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match self.file.read(&mut buf)? {
                0 => return Ok(()),
                n => {
                    self.hasher.update(&buf[..n]);
                    self.seen += n as u64;
                }
            }
        }
    }

    fn check_end(&mut self) -> io::Result<()> {
        let actual = Digest::from_hasher(self.hasher.clone());
        let (owner, seen, size) = (self.owner, self.seen, self.size);
        let of = ReadOf {
            owner,
            path: &self.path,
            identity: self.identity,
        };
        match of.verdict(&self.digest, &actual, seen, size) {
            Ok(()) => {
                self.state = State::Good;
                Ok(())
            }
            Err(failure) => Err(self.fail(failure)),
        }
    }
}

impl Failure {
    fn error(&self, digest: &Digest, path: &Path, seen: u64) -> Error {
        match self {
            Failure::Corrupt { reason, fate } => Error::CorruptBlob {
                digest: digest.to_string(),
                path: path.to_path_buf(),
                reason: reason.clone(),
                fate: fate.clone(),
                image: None,
            },
            Failure::WrongSize { descriptor } => Error::BlobSizeWrong {
                digest: digest.to_string(),
                path: path.to_path_buf(),
                descriptor: *descriptor,
                actual: seen,
                image: None,
            },
        }
    }
}

/// A blob file as it was read: in a layout owned by `owner`, at `path`, the file
/// `identity` (what a removal checks the path still names).
#[derive(Clone, Copy)]
pub(crate) struct ReadOf<'a> {
    pub owner: BlobOwner,
    pub path: &'a Path,
    pub identity: FileIdentity,
}

impl ReadOf<'_> {
    /// [`ReadOf::verdict`] as an error, for readers that hash as they copy (a
    /// layout-to-layout copy) rather than through a [`StoredBlob`].
    pub(crate) fn check(
        self,
        digest: &Digest,
        actual: &Digest,
        seen: u64,
        size: Option<u64>,
    ) -> Result<()> {
        (self.verdict(digest, actual, seen, size)).map_err(|f| f.error(digest, self.path, seen))
    }

    /// The one rule for blob `digest` read whole: `seen` bytes hashing to `actual`, `size`
    /// what its descriptor says. Only bytes that fail their digest are corrupt, and dealt
    /// with by the owner's rule (removed from hoist's store, left in a user's layout);
    /// right bytes of another size than the descriptor's mean the manifest is wrong, and
    /// the blob, which other images may share, stays.
    fn verdict(
        self,
        digest: &Digest,
        actual: &Digest,
        seen: u64,
        size: Option<u64>,
    ) -> std::result::Result<(), Failure> {
        let (owner, path, read) = (self.owner, self.path, self.identity);
        let size_wrong = size.filter(|&s| s != seen);
        if actual != digest {
            let reason = match size_wrong {
                Some(s) => format!(
                    "it is {seen} bytes, its descriptor says {s}, and its content hashes to {actual}"
                ),
                None => format!("its content hashes to {actual}"),
            };
            let fate = match owner {
                BlobOwner::User => CorruptFate::LeftInUserLayout,
                BlobOwner::Hoist => remove_if_same(path, read),
            };
            return Err(Failure::Corrupt { reason, fate });
        }
        match size_wrong {
            Some(descriptor) => Err(Failure::WrongSize { descriptor }),
            None => Ok(()),
        }
    }
}

impl Read for StoredBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // `Ok(0)` for an empty buffer is not the end of the file: checking there would
        // judge (and maybe remove) a good blob by its first bytes.
        if buf.is_empty() {
            return Ok(0);
        }
        match &self.state {
            State::Good => return Ok(0),
            State::Failed(f) => return Err(io::Error::other(self.error(&f.clone()))),
            State::Reading => {}
        }
        let n = self.file.read(buf)?;
        if n == 0 {
            self.check_end()?;
            return Ok(0);
        }
        self.seen += n as u64;
        self.hasher.update(&buf[..n]);
        if self.size.is_some_and(|size| self.seen > size) {
            // Longer than its descriptor: the caller gets no more, and the digest of the
            // whole file decides between a corrupt blob and a wrong manifest.
            self.hash_rest()?;
            return self.check_end().map(|()| 0);
        }
        Ok(n)
    }
}

/// The error for reading blob file `path`.
pub(crate) fn reading(path: &Path, source: io::Error) -> Error {
    Error::Io {
        context: format!("reading blob {}", path.display()),
        source,
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
    reading(path, e)
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

    /// Right bytes under a wrong size are a wrong manifest: reported, and the blob (which
    /// other images may share) stays, whether the descriptor says more or less.
    #[test]
    fn a_good_blob_under_a_wrong_size_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (p, d) = blob(dir.path(), b"good bytes");
        for size in [4, 11] {
            let err = read_all(&p, BlobOwner::Hoist, &d, Some(size)).unwrap_err();
            assert!(
                matches!(&err, Error::BlobSizeWrong { descriptor, actual: 10, .. } if *descriptor == size),
                "{err}"
            );
            let text = err.to_string();
            assert!(
                text.contains("is 10 bytes and matches its digest")
                    && text.contains(&format!("gives its size as {size}: the manifest is wrong")),
                "{text}"
            );
            assert!(p.exists(), "a good blob is never removed");
        }
    }

    #[test]
    fn a_corrupt_blob_longer_than_its_descriptor_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (p, d) = blob(dir.path(), b"good");
        fs::write(&p, b"good and then some").unwrap();
        let mut r = StoredBlob::open(p.clone(), BlobOwner::Hoist, &d, Some(4)).unwrap();
        let mut v = vec![];
        let err = r.read_to_end(&mut v).unwrap_err();
        let err = from_read_error(err, &p);
        assert!(
            matches!(&err, Error::CorruptBlob { fate: CorruptFate::Removed, reason, .. }
                if reason.starts_with("it is 18 bytes, its descriptor says 4")),
            "{err}"
        );
        assert!(
            v.len() <= 4,
            "no more than the descriptor's size is handed out"
        );
        assert!(!p.exists());
    }

    /// A reader that hit the failure first (a tar reader at a short file's end) must not
    /// hide it: every later read and `finish` report the same error, and the blob is dealt
    /// with once.
    #[test]
    fn a_failure_is_reported_again_and_dealt_with_once() {
        let dir = tempfile::tempdir().unwrap();
        let (p, d) = blob(dir.path(), b"good bytes");
        fs::write(&p, b"good").unwrap();
        let mut r = StoredBlob::open(p.clone(), BlobOwner::Hoist, &d, Some(10)).unwrap();
        let mut v = vec![];
        let first = from_read_error(r.read_to_end(&mut v).unwrap_err(), &p);
        // A good copy lands meanwhile: trying the removal again would now say `Replaced`.
        fs::write(&p, b"good bytes").unwrap();
        for again in [
            from_read_error(r.read(&mut [0; 8]).unwrap_err(), &p),
            r.finish().unwrap_err(),
        ] {
            assert_eq!(again.to_string(), first.to_string());
            assert!(
                matches!(&again, Error::CorruptBlob { fate: CorruptFate::Removed, reason, .. }
                    if reason.starts_with("it is 4 bytes, its descriptor says 10")),
                "{again}"
            );
        }
        assert_eq!(fs::read(&p).unwrap(), b"good bytes");
    }

    /// `read` into an empty buffer returns 0 without it being the end of the file.
    #[test]
    fn an_empty_read_is_not_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (p, d) = blob(dir.path(), b"good bytes");
        let mut r = StoredBlob::open(p.clone(), BlobOwner::Hoist, &d, Some(10)).unwrap();
        assert_eq!(r.read(&mut []).unwrap(), 0);
        let mut v = vec![];
        r.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"good bytes");
        assert!(p.exists());
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
