//! Which temp files still belong to a running hoist. Every temp file hoist writes (a
//! download in a blob directory, a layer being built, a Dockerfile build's output
//! directory, through a lock file inside it) is held under an exclusive `flock` for as
//! long as hoist uses it. The kernel drops the lock when the process ends, however it
//! ends (SIGKILL, a crash; a power loss ends every lock too), so a sweep that can take a
//! temp file's lock knows its owner is gone and removes it, whatever its age: a live hoist
//! may hold a built layer unchanged for an hour while a slow push runs, so age alone
//! cannot tell. Age is only the fallback where a file cannot be locked (a filesystem
//! without `flock`) or carries no lock (written by an older hoist).

use std::fs::{self, File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{Error, IoContext as _, Result};
use crate::layer::{BUILD_DIR_PREFIX, TEMP_PREFIX};

/// Download and layout temp files (blobs being fetched, `index.json` being replaced) start
/// with this. It still starts with `.tmp`, tempfile's default, which other tools and
/// scripts already know as a temp file.
pub const DOWNLOAD_PREFIX: &str = ".tmp-hoist-";

/// The lock file inside a temp directory: a plain file, so a directory's owner is
/// checked just as a temp file's is.
pub const DIR_LOCK: &str = ".hoist-lock";

/// Temp files whose owner cannot be checked by lock go after this long.
pub const FALLBACK_AGE: Duration = Duration::from_secs(24 * 3600);

/// How often a temp file is made again if a sweep removed it between its creation and its
/// lock (a sweep takes the lock of a file nobody has locked yet).
const ATTEMPTS: usize = 3;

/// Lock `file`, a temp file this process just created, for as long as it (or a clone of
/// its handle) stays open. `false`: a sweep removed it before the lock was taken, so it is
/// no longer in its directory and must be made again. A filesystem without `flock` leaves
/// the file unlocked (swept by age only).
fn hold(file: &File) -> io::Result<bool> {
    // Blocking: a sweep holds the lock of a file only while it removes it.
    match file.lock() {
        Ok(()) => Ok(file.metadata()?.nlink() > 0),
        Err(e) if lock_unsupported(&e) => Ok(true),
        Err(e) => Err(e),
    }
}

fn lock_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::EINVAL)
        )
}

/// A temp file in `dir` (named `prefix…suffix`, mode `mode` less the umask), locked as
/// long as the returned handle (or a clone of its file) is open.
pub fn locked_temp_file(
    dir: &Path,
    prefix: &str,
    suffix: &str,
    mode: u32,
) -> Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt as _;
    let context = || format!("creating a temp file in {}", dir.display());
    for _ in 0..ATTEMPTS {
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .suffix(suffix)
            .permissions(fs::Permissions::from_mode(mode))
            .tempfile_in(dir)
            .ctx(context)?;
        if hold(tmp.as_file()).ctx(|| format!("locking {}", tmp.path().display()))? {
            return Ok(tmp);
        }
    }
    Err(Error::Invalid(format!(
        "{}: another process kept removing the temp files created there ({ATTEMPTS} times)\nhint: is another tool cleaning that directory of hidden files while hoist runs?",
        context()
    )))
}

/// A temp directory, removed when dropped, whose [`DIR_LOCK`] file is locked until then.
pub struct LockedTempDir {
    // Declared first, so dropped first: the directory goes while still locked.
    dir: tempfile::TempDir,
    _lock: File,
}

impl LockedTempDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A temp directory in `parent` named `prefix…`, with a locked [`DIR_LOCK`] file inside.
pub fn locked_temp_dir(parent: &Path, prefix: &str) -> Result<LockedTempDir> {
    let context = || format!("creating a temp dir in {}", parent.display());
    for _ in 0..ATTEMPTS {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .ctx(context)?;
        let lock_path = dir.path().join(DIR_LOCK);
        let lock = match File::create_new(&lock_path) {
            // A sweep took the new directory, before it had a lock file, for a dead one's.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            r => r.ctx(|| format!("creating {}", lock_path.display()))?,
        };
        if hold(&lock).ctx(|| format!("locking {}", lock_path.display()))? {
            return Ok(LockedTempDir { dir, _lock: lock });
        }
    }
    Err(Error::Invalid(format!(
        "{}: another process kept removing the temp dirs created there ({ATTEMPTS} times)\nhint: is another tool cleaning that directory of hidden files while hoist runs?",
        context()
    )))
}

/// Whether the process that made a temp file still runs, as far as its lock tells.
enum Owner {
    /// Its lock was free (and is now held by the sweep, in this file): nobody uses it.
    Gone(File),
    Alive,
    /// No lock to check: no lock file, or locks are not supported there.
    Unknown,
}

fn owner(lock_path: &Path) -> Owner {
    let Ok(f) = File::open(lock_path) else {
        return Owner::Unknown;
    };
    match f.try_lock() {
        Ok(()) => Owner::Gone(f),
        Err(TryLockError::WouldBlock) => Owner::Alive,
        Err(TryLockError::Error(_)) => Owner::Unknown,
    }
}

/// Remove leftovers of killed hoists (no destructor ran) from `dir`, the first time this
/// process builds or stores there (see [`sweep`]): the store's blob directory need
/// not be listed again for every image of a pass.
pub(crate) fn sweep_once(dir: &Path) {
    static SWEPT: std::sync::Mutex<std::collections::BTreeSet<std::path::PathBuf>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let first = SWEPT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(dir.to_path_buf());
    if first {
        sweep(dir, FALLBACK_AGE);
    }
}

/// Remove the temp files and directories hoist left in `dir` whose owner has ended (see
/// the module doc): layer temp files, download temp files and Dockerfile build output
/// directories; ones whose owner cannot be checked only once older than `fallback_age`,
/// as are `.tmp…` files of tempfile's default name (what hoist called its download temp
/// files before they were locked). Returns how many were removed; errors are ignored
/// (best effort: another sweep may be removing the same files).
pub fn sweep(dir: &Path, fallback_age: Duration) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let old = |path: &Path| {
        fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d > fallback_age))
    };
    let mut removed = 0;
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let path = e.path();
        let Ok(kind) = e.file_type() else { continue };
        let gone = if kind.is_file()
            && (name.starts_with(TEMP_PREFIX) || name.starts_with(DOWNLOAD_PREFIX))
        {
            reap(&path, || old(&path), || fs::remove_file(&path).is_ok())
        } else if kind.is_file() && name.starts_with(".tmp") {
            old(&path) && fs::remove_file(&path).is_ok()
        } else if kind.is_dir() && name.starts_with(BUILD_DIR_PREFIX) {
            reap(
                &path.join(DIR_LOCK),
                || old(&path),
                || fs::remove_dir_all(&path).is_ok(),
            )
        } else {
            false
        };
        if gone {
            tracing::debug!("removed {}, left by a hoist that has ended", path.display());
            removed += 1;
        }
    }
    removed
}

/// The sweep's rule for one temp file or directory, whose `lock` its owner holds: removed
/// when the owner has ended (the lock is free; held here while removing), kept while it
/// lives, and where the owner cannot be checked only if `old_enough`.
fn reap(lock: &Path, old_enough: impl FnOnce() -> bool, remove: impl FnOnce() -> bool) -> bool {
    match owner(lock) {
        Owner::Gone(_lock) => remove(),
        Owner::Alive => false,
        Owner::Unknown => old_enough() && remove(),
    }
}

/// Remove the `.tmp-hoist-*` files in `dir` whose lock is free, and nothing else: for a
/// directory that may be the user's (a layout's root, where index.json is written), in
/// which a file hoist cannot prove dead stays, however old.
pub fn sweep_dead_downloads(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.filter_map(|e| e.ok()) {
        let path = e.path();
        let ours = e.file_name().to_string_lossy().starts_with(DOWNLOAD_PREFIX)
            && e.file_type().is_ok_and(|t| t.is_file());
        if !ours {
            continue;
        }
        // However old, a file whose owner cannot be checked stays.
        if reap(&path, || false, || fs::remove_file(&path).is_ok()) {
            tracing::debug!("removed {}, left by a hoist that has ended", path.display());
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sweep that took a new file's lock before its creator did removes it; the creator
    /// then learns the file is gone (no link left) and makes another.
    #[test]
    fn a_temp_file_swept_before_it_was_locked_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{DOWNLOAD_PREFIX}x"));
        let f = File::create_new(&path).unwrap();
        assert!(hold(&f).unwrap(), "a file still in its directory");
        let swept = dir.path().join(format!("{DOWNLOAD_PREFIX}y"));
        let g = File::create_new(&swept).unwrap();
        fs::remove_file(&swept).unwrap();
        assert!(!hold(&g).unwrap(), "a file already swept");
    }

    /// A made temp file's lock is held: another handle (as a sweep in another process
    /// would open) cannot take it until the temp file is dropped.
    #[test]
    fn temp_files_and_dirs_are_locked_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let f = locked_temp_file(dir.path(), DOWNLOAD_PREFIX, ".part", 0o644).unwrap();
        let name = f.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(DOWNLOAD_PREFIX) && name.ends_with(".part"),
            "{name}"
        );
        assert!(matches!(owner(f.path()), Owner::Alive));
        let d = locked_temp_dir(dir.path(), BUILD_DIR_PREFIX).unwrap();
        assert!(matches!(owner(&d.path().join(DIR_LOCK)), Owner::Alive));
        // Its clone keeps the lock after the temp file's own handle is closed (as a built
        // layer keeps it), and the lock ends with the last handle.
        let lock = f.as_file().try_clone().unwrap();
        let path = f.into_temp_path();
        assert!(matches!(owner(&path), Owner::Alive));
        drop(lock);
        assert!(matches!(owner(&path), Owner::Gone(_)));
        assert_eq!(sweep(dir.path(), FALLBACK_AGE), 1);
        assert!(!path.exists() && d.path().exists());
    }
}
