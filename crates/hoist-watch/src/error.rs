//! Watcher errors, with the fix spelled out where the user can act.

use std::path::PathBuf;

/// Where Linux keeps the per-user inotify limits.
const MAX_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";
const MAX_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// `inotify_add_watch` failed with ENOSPC: the per-user watch limit is used up.
    #[error(
        "cannot watch {path}: the inotify watch limit is reached \
         (fs.inotify.max_user_watches = {current}; hoist had {watched} watches in this project)\n\
         raise it with:  sudo sysctl fs.inotify.max_user_watches={suggested}\n\
         keep it after a reboot:  echo fs.inotify.max_user_watches={suggested} | sudo tee /etc/sysctl.d/90-hoist.conf\n\
         or list large directories that need no watching in .hoistignore",
        path = path.display(),
        current = current.map_or("unknown".to_string(), |c| c.to_string()),
        suggested = suggested_limit(*current, 524_288),
    )]
    WatchLimit {
        path: PathBuf,
        /// The current value of fs.inotify.max_user_watches, when readable.
        current: Option<u64>,
        watched: usize,
    },
    /// `inotify_init` failed with EMFILE: too many inotify instances for this user.
    #[error(
        "cannot start watching files: the inotify instance limit is reached \
         (fs.inotify.max_user_instances = {current}; other programs such as editors and \
         file indexers use them too)\n\
         raise it with:  sudo sysctl fs.inotify.max_user_instances={suggested}",
        current = current.map_or("unknown".to_string(), |c| c.to_string()),
        suggested = suggested_limit(*current, 1024),
    )]
    InstanceLimit { current: Option<u64> },
    #[error("cannot watch {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("file watcher: {0}")]
    Notify(#[from] notify::Error),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
}

impl WatchError {
    /// Maps a notify error for `path` to the most helpful variant.
    pub(crate) fn from_notify(e: notify::Error, path: &std::path::Path, watched: usize) -> Self {
        match &e.kind {
            notify::ErrorKind::MaxFilesWatch => WatchError::WatchLimit {
                path: path.to_path_buf(),
                current: read_limit(MAX_WATCHES),
                watched,
            },
            notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc_emfile()) => {
                WatchError::InstanceLimit {
                    current: read_limit(MAX_INSTANCES),
                }
            }
            _ => WatchError::Notify(e),
        }
    }

    /// True for the limit errors (the user has to act; retrying will not help).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            WatchError::WatchLimit { .. } | WatchError::InstanceLimit { .. }
        )
    }
}

/// EMFILE on Linux (no libc dependency for one constant).
const fn libc_emfile() -> i32 {
    24
}

fn read_limit(file: &str) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Twice the current limit, at least `floor`.
fn suggested_limit(current: Option<u64>, floor: u64) -> u64 {
    current.map_or(floor, |c| c.saturating_mul(2).max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_message_names_the_setting_value_and_command() {
        // Injected error (the real limit cannot be lowered on a shared machine).
        let injected = notify::Error::new(notify::ErrorKind::MaxFilesWatch);
        let e = WatchError::from_notify(injected, std::path::Path::new("/p/svc"), 7);
        assert!(e.is_limit());
        let msg = e.to_string();
        let current = read_limit(MAX_WATCHES).expect("Linux exposes the limit");
        assert!(msg.contains("cannot watch /p/svc"), "{msg}");
        assert!(
            msg.contains(&format!("fs.inotify.max_user_watches = {current}")),
            "{msg}"
        );
        let suggested = suggested_limit(Some(current), 524_288);
        assert!(
            msg.contains(&format!(
                "sudo sysctl fs.inotify.max_user_watches={suggested}"
            )),
            "{msg}"
        );
        assert!(msg.contains("hoist had 7 watches"), "{msg}");
    }

    #[test]
    fn instance_limit_message() {
        let injected = notify::Error::io(std::io::Error::from_raw_os_error(24));
        let e = WatchError::from_notify(injected, std::path::Path::new("/p"), 0);
        let msg = e.to_string();
        assert!(msg.contains("fs.inotify.max_user_instances = "), "{msg}");
        assert!(
            msg.contains("sudo sysctl fs.inotify.max_user_instances="),
            "{msg}"
        );
    }

    #[test]
    fn suggestions_double_and_have_a_floor() {
        assert_eq!(suggested_limit(Some(8192), 524_288), 524_288);
        assert_eq!(suggested_limit(Some(1_000_000), 524_288), 2_000_000);
        assert_eq!(suggested_limit(None, 1024), 1024);
    }
}
