//! Writing into a running container's filesystem from the host, for live updates on the
//! embedded cluster: no exec, no tar, no shell needed in the image.
//!
//! The container is found through runc's own state (`<runc root>/<id>/state.json`: the
//! init pid and its start time). Its filesystem is `/proc/<pid>/root`, which shows what
//! the container's processes see, volume mounts included. Every path is resolved with
//! `openat2(RESOLVE_IN_ROOT)` below that root, so `..` and absolute symlinks in the image
//! stay inside the container instead of leading out to the host.
//!
//! Files are written to a temporary name and renamed into place: a server reading the
//! file sees the old or the new content, never half of it.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::error::{Error, IoContext, Result};

/// The part of runc's `state.json` we need.
#[derive(Deserialize)]
struct RuncState {
    init_process_pid: i32,
    init_process_start: u64,
}

/// A running container's root directory, opened from the host.
#[derive(Debug)]
pub struct ContainerRoot {
    id: String,
    pid: i32,
    start_time: u64,
    root: OwnedFd,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl ContainerRoot {
    /// Open the root of runc container `id` kept under `runc_root` (the kubelet's
    /// `runc --root`). Fails with [`Error::NoSuchContainer`] when runc does not know it or
    /// its process has ended.
    pub fn open(runc_root: &Path, id: &str) -> Result<Self> {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(Error::Spec {
                container: id.into(),
                reason: "not a runc container id".into(),
            });
        }
        let state_path = runc_root.join(id).join("state.json");
        let text = match std::fs::read(&state_path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NoSuchContainer {
                    id: id.into(),
                    root: runc_root.to_path_buf(),
                });
            }
            Err(e) => {
                return Err(Error::Io {
                    context: format!("reading {}", state_path.display()),
                    source: e,
                });
            }
        };
        let state: RuncState = serde_json::from_slice(&text).map_err(|e| Error::Runc {
            args: format!("state {id}"),
            code: None,
            stderr: format!("cannot parse {}: {e}", state_path.display()),
        })?;
        let gone = || Error::NoSuchContainer {
            id: id.into(),
            root: runc_root.to_path_buf(),
        };
        if state.init_process_pid <= 0
            || start_time(state.init_process_pid) != Some(state.init_process_start)
        {
            return Err(gone());
        }
        let proc_root = PathBuf::from(format!("/proc/{}/root", state.init_process_pid));
        let root = open_path(&proc_root).map_err(|_| gone())?;
        // The pid may have been reused between the check and the open: check again.
        if start_time(state.init_process_pid) != Some(state.init_process_start) {
            return Err(gone());
        }
        Ok(Self {
            id: id.into(),
            pid: state.init_process_pid,
            start_time: state.init_process_start,
            root,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's init process, as the host sees it.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the container's init process still runs (not a reused pid).
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// Write `contents` to `path` (absolute, inside the container) with permission bits
    /// `mode`, creating missing parent directories (0755) and replacing whatever was there
    /// (a file, a symlink or a directory). A replaced file's owner is kept.
    pub fn write_file(&self, path: &str, contents: &mut dyn Read, mode: u32) -> Result<()> {
        let (parent, name) = self.split(path)?;
        let dir = self
            .dir(&parent, true)
            .ctx(|| self.what("creating", &parent))?;
        let tmp = temp_name(&name);
        let owner = stat_at(&dir, &name).ok().map(|m| (m.uid(), m.gid()));
        let result = (|| -> io::Result<()> {
            let fd = openat(
                &dir,
                &tmp,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode & 0o7777,
            )?;
            let mut f = File::from(fd);
            io::copy(contents, &mut f)?;
            // The umask must not narrow what the source file allows.
            f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
            if let Some((uid, gid)) = owner {
                check(unsafe { libc::fchown(f.as_raw_fd(), uid, gid) })?;
            }
            f.flush()?;
            drop(f);
            self.rename_replacing(&dir, &tmp, &name)
        })();
        if result.is_err() {
            let _ = unlinkat(&dir, &tmp, 0);
        }
        result.ctx(|| self.what("writing", path))
    }

    /// Make `path` a symlink to `target` (replacing what was there).
    pub fn symlink(&self, path: &str, target: &Path) -> Result<()> {
        let (parent, name) = self.split(path)?;
        let dir = self
            .dir(&parent, true)
            .ctx(|| self.what("creating", &parent))?;
        let tmp = temp_name(&name);
        let result = (|| -> io::Result<()> {
            let t = cstring(target.as_os_str().as_bytes())?;
            let n = cstring(tmp.as_bytes())?;
            check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) })?;
            self.rename_replacing(&dir, &tmp, &name)
        })();
        if result.is_err() {
            let _ = unlinkat(&dir, &tmp, 0);
        }
        result.ctx(|| self.what("linking", path))
    }

    /// `mkdir -p path` inside the container.
    pub fn create_dir_all(&self, path: &str) -> Result<()> {
        let rel = relative(path).map_err(|reason| self.bad_path(path, reason))?;
        self.dir(&rel, true)
            .map(drop)
            .ctx(|| self.what("creating", path))
    }

    /// Copy the host file, symlink or directory tree `local` to `path`, keeping file modes.
    pub fn copy_in(&self, local: &Path, path: &str) -> Result<()> {
        let meta =
            std::fs::symlink_metadata(local).ctx(|| format!("reading {}", local.display()))?;
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(local).ctx(|| format!("reading {}", local.display()))?;
            return self.symlink(path, &target);
        }
        if meta.is_dir() {
            self.create_dir_all(path)?;
            let entries =
                std::fs::read_dir(local).ctx(|| format!("listing {}", local.display()))?;
            for e in entries {
                let e = e.ctx(|| format!("listing {}", local.display()))?;
                let child = format!(
                    "{}/{}",
                    path.trim_end_matches('/'),
                    e.file_name().to_string_lossy()
                );
                self.copy_in(&e.path(), &child)?;
            }
            return Ok(());
        }
        let mut f = File::open(local).ctx(|| format!("opening {}", local.display()))?;
        self.write_file(path, &mut f, meta.mode())
    }

    /// `rm -rf path` inside the container: a missing path is not an error.
    pub fn remove(&self, path: &str) -> Result<()> {
        let (parent, name) = self.split(path)?;
        let dir = match self.dir(&parent, false) {
            Ok(d) => d,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                return Ok(());
            }
            Err(e) => return Err(e).ctx(|| self.what("removing", path)),
        };
        let result = match stat_at(&dir, &name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => {
                // std's remove_dir_all never follows symlinks inside the tree; the magic
                // link of our own fd keeps the walk below the container's root.
                std::fs::remove_dir_all(fd_path(&dir).join(&name))
            }
            Ok(_) => unlinkat(&dir, &name, 0),
        };
        result.ctx(|| self.what("removing", path))
    }

    /// Read a file inside the container (symlinks resolved inside its root).
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        let rel = relative(path).map_err(|reason| self.bad_path(path, reason))?;
        let fd = resolve(&self.root, &rel, libc::O_RDONLY | libc::O_CLOEXEC)
            .ctx(|| self.what("opening", path))?;
        let mut out = vec![];
        File::from(fd)
            .read_to_end(&mut out)
            .ctx(|| self.what("reading", path))?;
        Ok(out)
    }

    /// Stop the container's init process from the host: SIGTERM, then SIGKILL once
    /// `grace` has passed (an init ignores signals it has no handler for only when they
    /// come from inside its namespace; SIGKILL from the host always ends it). The
    /// container's runtime then sees it exit as if it had ended by itself.
    pub fn stop(&self, grace: std::time::Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + grace;
        self.signal(libc::SIGTERM)?;
        while self.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if self.is_alive() {
            self.signal(libc::SIGKILL)?;
        }
        Ok(())
    }

    fn signal(&self, signal: i32) -> Result<()> {
        if !self.is_alive() {
            return Ok(());
        }
        check(unsafe { libc::kill(self.pid, signal) }).ctx(|| format!("signalling {}", self.id))
    }

    fn rename_replacing(&self, dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
        match renameat(dir, from, to) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EISDIR) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
                ) =>
            {
                std::fs::remove_dir_all(fd_path(dir).join(to))?;
                renameat(dir, from, to)
            }
            r => r,
        }
    }

    /// Split an absolute container path into its parent (relative to the root) and name.
    fn split(&self, path: &str) -> Result<(PathBuf, String)> {
        let rel = relative(path).map_err(|reason| self.bad_path(path, reason))?;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| self.bad_path(path, "names no file"))?;
        Ok((rel.parent().unwrap_or(Path::new("")).to_path_buf(), name))
    }

    /// Open directory `rel` below the root, creating it (and its parents) if asked.
    fn dir(&self, rel: &Path, create: bool) -> io::Result<OwnedFd> {
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
        if rel.as_os_str().is_empty() {
            return resolve(&self.root, Path::new("."), flags);
        }
        match resolve(&self.root, rel, flags) {
            Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {
                let parent = self.dir(rel.parent().unwrap_or(Path::new("")), true)?;
                let name = rel.file_name().expect("a relative path with components");
                let n = cstring(name.as_bytes())?;
                match check(unsafe { libc::mkdirat(parent.as_raw_fd(), n.as_ptr(), 0o755) }) {
                    Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                    _ => {}
                }
                resolve(&self.root, rel, flags)
            }
            r => r,
        }
    }

    fn what(&self, action: &str, path: impl AsRef<Path>) -> String {
        let p = path.as_ref().display().to_string();
        let p = if p.starts_with('/') {
            p
        } else {
            format!("/{p}")
        };
        format!("{action} {p} in container {}", self.id)
    }

    fn bad_path(&self, path: &str, reason: &str) -> Error {
        Error::Spec {
            container: self.id.clone(),
            reason: format!("container path {path:?} {reason}"),
        }
    }
}

/// `/a/b` → `a/b`; refuses relative paths and `..` (which could not escape anyway, but
/// almost certainly mean a mistake in the caller's mapping).
fn relative(path: &str) -> std::result::Result<PathBuf, &'static str> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err("must be absolute");
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err("must not contain `..`"),
            Component::Prefix(_) => return Err("is not a Unix path"),
        }
    }
    Ok(out)
}

fn temp_name(name: &str) -> String {
    let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.hoist-{}-{n}", std::process::id())
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot, which is
/// what runc records as `init_process_start`.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn open_path(p: &Path) -> io::Result<OwnedFd> {
    let c = cstring(p.as_os_str().as_bytes())?;
    owned(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
}

/// `openat2(root, rel, flags, RESOLVE_IN_ROOT)`.
fn resolve(root: &OwnedFd, rel: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstring(rel.as_os_str().as_bytes())?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_IN_ROOT;
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    owned(fd as RawFd)
}

fn openat(dir: &OwnedFd, name: &str, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let n = cstring(name.as_bytes())?;
    owned(unsafe { libc::openat(dir.as_raw_fd(), n.as_ptr(), flags, mode as libc::c_uint) })
}

fn renameat(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    let f = cstring(from.as_bytes())?;
    let t = cstring(to.as_bytes())?;
    check(unsafe { libc::renameat(dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), t.as_ptr()) })
}

fn unlinkat(dir: &OwnedFd, name: &str, flags: libc::c_int) -> io::Result<()> {
    let n = cstring(name.as_bytes())?;
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), n.as_ptr(), flags) })
}

/// `lstat` of `name` in `dir`.
fn stat_at(dir: &OwnedFd, name: &str) -> io::Result<std::fs::Metadata> {
    std::fs::symlink_metadata(fd_path(dir).join(name))
}

/// `/proc/self/fd/N`: a path through our own open directory.
fn fd_path(dir: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative("/www/index.html").unwrap(),
            PathBuf::from("www/index.html")
        );
        assert_eq!(relative("/a/./b/").unwrap(), PathBuf::from("a/b"));
        assert!(relative("www").is_err());
        assert!(relative("/a/../etc").is_err());
    }

    #[test]
    fn start_time_of_self() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
    }

    #[test]
    fn unknown_container() {
        let dir = tempfile::tempdir().unwrap();
        let e = ContainerRoot::open(dir.path(), "nope").unwrap_err();
        assert!(matches!(e, Error::NoSuchContainer { .. }), "{e}");
        assert!(ContainerRoot::open(dir.path(), "../x").is_err());
    }

    /// A runc state file naming this test process: its root is the host's `/`, enough to
    /// check writing, replacing, removing and symlinks (real containers: hoist-kube's tests).
    #[test]
    fn write_replace_remove_under_own_root() {
        let runc = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        std::fs::create_dir_all(runc.path().join("self")).unwrap();
        std::fs::write(
            runc.path().join("self/state.json"),
            format!(
                r#"{{"init_process_pid": {me}, "init_process_start": {}}}"#,
                start_time(me).unwrap()
            ),
        )
        .unwrap();
        let root = ContainerRoot::open(runc.path(), "self").unwrap();
        assert!(root.is_alive());
        let work = tempfile::tempdir().unwrap();
        let base = work.path().display().to_string();
        let f = format!("{base}/a/b/c.txt");
        root.write_file(&f, &mut &b"one"[..], 0o640).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"one");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o640
        );
        root.write_file(&f, &mut &b"two"[..], 0o644).unwrap();
        assert_eq!(root.read(&f).unwrap(), b"two");
        // A directory in the way is replaced by the file, as `tar -x` does.
        root.create_dir_all(&format!("{base}/d/e")).unwrap();
        root.write_file(&format!("{base}/d"), &mut &b"file"[..], 0o644)
            .unwrap();
        assert!(std::fs::metadata(format!("{base}/d")).unwrap().is_file());
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(format!("{base}/a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c.txt")]);
        root.remove(&format!("{base}/a")).unwrap();
        assert!(!Path::new(&format!("{base}/a")).exists());
        root.remove(&format!("{base}/missing/x")).unwrap();
        root.symlink(&format!("{base}/l"), Path::new("d")).unwrap();
        assert_eq!(
            std::fs::read_link(format!("{base}/l")).unwrap(),
            PathBuf::from("d")
        );
    }
}
