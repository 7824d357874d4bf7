//! The file watcher: one inotify watch per directory that is not ignored
//! (ignored trees such as `target/` cost no watches), new directories picked up
//! as they appear, events coalesced into [`Batch`]es.
//!
//! Coalescing: a batch is delivered once no event has arrived for
//! `debounce` (default 30 ms), or `max_delay` after its first event while
//! events keep coming. What a batch reports is decided when it is delivered,
//! from the file system itself: a path that exists is *changed*, one that is
//! gone is *deleted*, and one that was created and removed again inside the
//! window (an editor's temp file, renamed over the real file in an atomic
//! save) is not reported at all. While the consumer is busy, new events keep
//! merging into the next batch instead of queueing up.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::error::WatchError;
use crate::ignore_rules::{DEFAULT_IGNORES, IGNORE_FILES, IgnoreRules};

/// How the watcher behaves. `Default` is what `hoist up` uses.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Quiet time after the last event before a batch is delivered.
    pub debounce: Duration,
    /// Longest a batch waits for events to stop (a long burst is delivered in parts).
    pub max_delay: Duration,
    /// Patterns (gitignore syntax, relative to the root) ignored in addition to
    /// ignore files. Default: [`DEFAULT_IGNORES`].
    pub ignores: Vec<String>,
    /// Paths that ignore files above them cannot hide (what the project
    /// declares, see [`crate::Classifier::protected_paths`]).
    pub protected: Vec<PathBuf>,
    /// Fault injection for tests: after this many watches, adding one fails as
    /// the kernel does when `fs.inotify.max_user_watches` is reached (ENOSPC).
    #[doc(hidden)]
    pub inject_watch_limit_after: Option<usize>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(30),
            max_delay: Duration::from_millis(500),
            ignores: DEFAULT_IGNORES.iter().map(|s| s.to_string()).collect(),
            protected: Vec::new(),
            inject_watch_limit_after: None,
        }
    }
}

/// Paths that changed together, absolute and sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Files that exist now and were created, written, renamed in or had their
    /// metadata changed.
    pub changed: Vec<PathBuf>,
    /// Paths that are gone. A deleted directory stands for everything under it.
    pub deleted: Vec<PathBuf>,
    /// The kernel's event queue overflowed: changes were lost, treat every
    /// file as possibly changed.
    pub rescan: bool,
    /// When the first event of this batch arrived (for latency measurements).
    pub first_event: Instant,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.deleted.is_empty() && !self.rescan
    }
}

enum Msg {
    Event(notify::Result<notify::Event>),
    Protect(Vec<PathBuf>),
    Outside(Vec<PathBuf>),
    /// Answered once every message before it has been handled.
    Barrier(tokio::sync::oneshot::Sender<()>),
    Stop,
}

/// A running watcher. Dropping it stops the watching thread.
pub struct Watcher {
    root: PathBuf,
    rx: mpsc::Receiver<Result<Batch, WatchError>>,
    ctl: std_mpsc::Sender<Msg>,
    watches: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Watches `root` recursively. Returns once every directory that is not
    /// ignored has its watch, so a change made after this returns is seen.
    /// Blocking (it walks the tree): from async code, call it in `spawn_blocking`.
    pub fn start(root: &Path, opts: WatchOptions) -> Result<Watcher, WatchError> {
        let root = std::path::absolute(root).map_err(|source| WatchError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        if !root.is_dir() {
            return Err(WatchError::NotADirectory(root));
        }
        let (tx, events) = std_mpsc::channel();
        let handler_tx = tx.clone();
        let inotify = notify::recommended_watcher(move |res| {
            let _ = handler_tx.send(Msg::Event(res));
        })
        .map_err(|e| WatchError::from_notify(e, &root, 0))?;
        let mut rules = IgnoreRules::new(&root, &opts.ignores).map_err(|e| WatchError::Io {
            path: root.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        rules.set_protected(opts.protected.clone());
        let (out, rx) = mpsc::channel(1);
        let watches = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut lp = Loop {
            root: root.clone(),
            opts,
            rules,
            inotify,
            watched: BTreeSet::new(),
            outside: Vec::new(),
            outside_parents: BTreeSet::new(),
            pending: Pending::default(),
            errors: Vec::new(),
            out,
            watches: watches.clone(),
        };
        lp.add_tree(&root, false)?;
        tracing::debug!(
            root = %root.display(),
            watches = lp.watched.len(),
            elapsed = ?started.elapsed(),
            "watching"
        );
        let thread = std::thread::Builder::new()
            .name("hoist-watch".into())
            .spawn(move || lp.run(events))
            .map_err(|source| WatchError::Io {
                path: root.clone(),
                source,
            })?;
        Ok(Watcher {
            root,
            rx,
            ctl: tx,
            watches,
            thread: Some(thread),
        })
    }

    /// The next batch (or a non-fatal error such as the watch limit reached
    /// for a new directory). `None` once the watcher has stopped.
    pub async fn next(&mut self) -> Option<Result<Batch, WatchError>> {
        self.rx.recv().await
    }

    /// [`Watcher::next`] for synchronous code (not inside a tokio runtime).
    pub fn blocking_next(&mut self) -> Option<Result<Batch, WatchError>> {
        self.rx.blocking_recv()
    }

    /// The root as watched (absolute); batch paths start with it.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many directories are watched now.
    pub fn watch_count(&self) -> usize {
        self.watches.load(Ordering::Relaxed)
    }

    /// Replaces the paths that ignore files cannot hide (after a project reload).
    pub fn set_protected(&self, paths: Vec<PathBuf>) {
        let _ = self.ctl.send(Msg::Protect(paths));
    }

    /// Replaces the paths outside the root that are watched too (files or directories,
    /// absolute): what the project reads from beyond its directory, such as a layer source
    /// `../shared` or a symlink `dist -> /home/me/build/dist`. Each is watched with its
    /// parent directory, so that the path itself being removed and made again (a build
    /// that empties its output directory) is seen. Below them only the default patterns
    /// ([`WatchOptions::ignores`]) hide anything; batches name these paths as they are
    /// given. Paths under the root, and paths holding the root, are left out.
    pub fn set_outside(&self, paths: Vec<PathBuf>) {
        let _ = self.ctl.send(Msg::Outside(paths));
    }

    /// Returns once the watcher has acted on everything asked of it before (the watches
    /// [`Watcher::set_protected`] and [`Watcher::set_outside`] add are in place).
    pub async fn settled(&self) {
        let _ = self.barrier().await;
    }

    /// [`Watcher::settled`] as a receiver to keep (it answers, or fails once the watcher
    /// has stopped).
    pub fn barrier(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.ctl.send(Msg::Barrier(tx));
        rx
    }

    /// Fault injection for tests: hands `event` to the watcher as if notify had
    /// reported it (e.g. the queue-overflow event the kernel sends when events
    /// were lost, which cannot be provoked here without lowering a system limit).
    #[doc(hidden)]
    pub fn inject_event(&self, event: notify::Event) {
        let _ = self.ctl.send(Msg::Event(Ok(event)));
    }

    /// Stops watching and waits for the watching thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.ctl.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What is known about one path touched in the current window.
struct Seen {
    /// False when its first event in this window created it (so if it is gone
    /// at delivery, it never existed as far as the consumer knows).
    existed_before: bool,
}

#[derive(Default)]
struct Pending {
    paths: HashMap<PathBuf, Seen>,
    first: Option<Instant>,
    last: Option<Instant>,
    rescan: bool,
    /// A delivery failed because the consumer has not taken the previous batch.
    retry_at: Option<Instant>,
}

impl Pending {
    fn touch(&mut self, path: PathBuf, created: bool) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.paths.entry(path).or_insert(Seen {
            existed_before: !created,
        });
    }
}

/// How often a delivery is retried while the consumer is busy.
const RETRY: Duration = Duration::from_millis(10);

struct Loop {
    root: PathBuf,
    opts: WatchOptions,
    rules: IgnoreRules,
    inotify: notify::RecommendedWatcher,
    /// Directories with a watch.
    watched: BTreeSet<PathBuf>,
    /// Watched trees outside the root (see [`Watcher::set_outside`]), none inside another.
    outside: Vec<PathBuf>,
    /// Parent directories watched (alone, not their trees) for `outside`.
    outside_parents: BTreeSet<PathBuf>,
    pending: Pending,
    /// Errors not delivered yet (delivered before the next batch).
    errors: Vec<WatchError>,
    out: mpsc::Sender<Result<Batch, WatchError>>,
    watches: Arc<AtomicUsize>,
}

impl Loop {
    fn run(mut self, events: std_mpsc::Receiver<Msg>) {
        loop {
            let msg = match self.deadline() {
                None => events
                    .recv()
                    .map_err(|_| std_mpsc::RecvTimeoutError::Disconnected),
                Some(at) => events.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match msg {
                Ok(Msg::Event(Ok(ev))) => self.on_event(ev),
                Ok(Msg::Event(Err(e))) => {
                    let path = e
                        .paths
                        .first()
                        .cloned()
                        .unwrap_or_else(|| self.root.clone());
                    self.errors
                        .push(WatchError::from_notify(e, &path, self.watched.len()));
                }
                Ok(Msg::Protect(paths)) if paths == self.opts.protected => {}
                Ok(Msg::Protect(paths)) => {
                    self.opts.protected = paths.clone();
                    self.rules.set_protected(paths);
                    // Newly protected directories may need watches now.
                    let root = self.root.clone();
                    if let Err(e) = self.add_tree(&root, false) {
                        self.errors.push(e);
                    }
                }
                Ok(Msg::Outside(paths)) => self.set_outside(paths),
                Ok(Msg::Barrier(done)) => {
                    let _ = done.send(());
                }
                Ok(Msg::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            }
            if self.deadline().is_some_and(|at| at <= Instant::now()) && !self.deliver() {
                return; // the consumer is gone
            }
        }
    }

    /// When the pending batch (or a pending error) is due.
    fn deadline(&self) -> Option<Instant> {
        let p = &self.pending;
        let batch_due = match (p.first, p.last) {
            (Some(first), Some(last)) => {
                Some((last + self.opts.debounce).min(first + self.opts.max_delay))
            }
            _ if p.rescan => Some(Instant::now()),
            _ => None,
        };
        let due = match (batch_due, self.errors.is_empty()) {
            (None, true) => return None,
            (None, false) => Instant::now(),
            (Some(d), true) => d,
            (Some(d), false) => d.min(Instant::now()),
        };
        Some(match p.retry_at {
            Some(r) => due.max(r),
            None => due,
        })
    }

    /// Tries to hand over errors and the pending batch. False when the
    /// receiver is gone.
    fn deliver(&mut self) -> bool {
        use mpsc::error::TrySendError;
        while !self.errors.is_empty() {
            let e = self.errors.remove(0);
            match self.out.try_send(Err(e)) {
                Ok(()) => {}
                Err(TrySendError::Full(Err(e))) => {
                    self.errors.insert(0, e);
                    self.pending.retry_at = Some(Instant::now() + RETRY);
                    return true;
                }
                Err(TrySendError::Full(Ok(_))) => unreachable!("an error was sent"),
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        let Some(first) = self
            .pending
            .first
            .or(self.pending.rescan.then(Instant::now))
        else {
            self.pending.retry_at = None;
            return true;
        };
        let batch = self.resolve(first);
        if batch.is_empty() {
            self.pending = Pending::default();
            return true;
        }
        let (changed, deleted, waited) = (
            batch.changed.len(),
            batch.deleted.len(),
            batch.first_event.elapsed(),
        );
        match self.out.try_send(Ok(batch)) {
            Ok(()) => {
                tracing::debug!(changed, deleted, ?waited, "batch delivered");
                self.pending = Pending::default();
                true
            }
            // Keep collecting into this batch; try again shortly.
            Err(TrySendError::Full(_)) => {
                self.pending.retry_at = Some(Instant::now() + RETRY);
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// The batch as the file system stands now.
    fn resolve(&self, first: Instant) -> Batch {
        let mut changed = Vec::new();
        let mut deleted = Vec::new();
        for (path, seen) in &self.pending.paths {
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => {} // its files are reported themselves
                Ok(_) => changed.push(path.clone()),
                Err(_) if seen.existed_before => deleted.push(path.clone()),
                Err(_) => {} // created and gone within the window
            }
        }
        changed.sort();
        deleted.sort();
        Batch {
            changed,
            deleted,
            rescan: self.pending.rescan,
            first_event: first,
        }
    }

    fn on_event(&mut self, ev: notify::Event) {
        if ev.need_rescan() {
            tracing::warn!("inotify queue overflowed: events were lost; rescanning");
            self.pending.rescan = true;
            self.pending.first.get_or_insert_with(Instant::now);
            let root = self.root.clone();
            if let Err(e) = self.add_tree(&root, false) {
                self.errors.push(e);
            }
            self.add_outside(false);
            return;
        }
        let created = match ev.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
            EventKind::Access(_) => return,
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => true,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                // Also reported as From and To events; nothing more to learn.
                return;
            }
            _ => false,
        };
        for path in ev.paths {
            self.on_path(path, created);
        }
    }

    fn on_path(&mut self, path: PathBuf, created: bool) {
        // A directory on the way to an outside path appeared: watch what can be now (what
        // is found already there counts as created).
        if !path.starts_with(&self.root)
            && self
                .outside
                .iter()
                .any(|o| *o != path && o.starts_with(&path))
        {
            if path.is_dir() {
                self.add_outside(true);
            }
            return;
        }
        let meta = std::fs::symlink_metadata(&path).ok();
        let exists = meta.is_some();
        let is_dir = meta
            .as_ref()
            .map_or_else(|| self.watched.contains(&path), |m| m.is_dir());
        if self.is_ignored(&path, is_dir) {
            return;
        }
        if !exists && self.watched.contains(&path) {
            self.unwatch_tree(&path);
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if IGNORE_FILES.contains(&name)
            && path.starts_with(&self.root)
            && let Some(dir) = path.parent()
        {
            let dir = dir.to_path_buf();
            for p in self.rules.load_dir(&dir) {
                tracing::warn!(file = %p.file.display(), "ignore file: {}", p.message);
            }
            // Directories it no longer ignores need watches.
            if let Err(e) = self.add_tree(&dir, false) {
                self.errors.push(e);
            }
        }
        if is_dir
            && exists
            && !self.watched.contains(&path)
            && let Err(e) = self.add_tree(&path, true)
        {
            self.errors.push(e);
        }
        self.pending.touch(path, created);
    }

    /// Watches `dir` and every directory below it that is not ignored (and not
    /// yet watched). With `report`, every file found counts as created: it
    /// appeared with its directory, possibly before the watch was in place.
    fn add_tree(&mut self, dir: &Path, report: bool) -> Result<(), WatchError> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            if self.is_ignored(&d, true) {
                continue;
            }
            if d.starts_with(&self.root) {
                for p in self.rules.load_dir(&d) {
                    tracing::warn!(file = %p.file.display(), "ignore file: {}", p.message);
                }
            }
            if !self.watched.contains(&d) {
                self.watch(&d)?;
            }
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue; // gone again: its removal arrives as an event
            };
            for e in entries.flatten() {
                let Ok(ty) = e.file_type() else { continue };
                let p = e.path();
                if ty.is_dir() {
                    stack.push(p);
                } else if report && !self.is_ignored(&p, false) {
                    self.pending.touch(p, true);
                }
            }
        }
        Ok(())
    }

    /// Under the root: the ignore rules. Under a tree outside it: the default patterns.
    /// Anything else (a sibling of an outside path, seen through its parent's watch): yes.
    fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        if path.starts_with(&self.root) {
            return self.rules.is_ignored(path, is_dir);
        }
        match self.outside.iter().find(|o| path.starts_with(o)) {
            Some(o) => {
                let rel = path.strip_prefix(o).unwrap_or(path);
                self.rules.is_ignored_by_default(rel, is_dir)
            }
            None => true,
        }
    }

    fn set_outside(&mut self, paths: Vec<PathBuf>) {
        let mut paths: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| p.is_absolute() && !p.starts_with(&self.root) && !self.root.starts_with(p))
            .collect();
        paths.sort();
        paths.dedup();
        // Sorted, a directory comes before what is under it: keep the topmost.
        let mut top: Vec<PathBuf> = Vec::new();
        for p in paths {
            if !top.iter().any(|t| p.starts_with(t)) {
                top.push(p);
            }
        }
        if top == self.outside {
            return;
        }
        for old in std::mem::take(&mut self.outside) {
            if !top.iter().any(|t| old.starts_with(t)) {
                self.unwatch_tree(&old);
            }
        }
        // A directory watched above an outside path (its parent, or the nearest one that
        // existed) is kept while it is above one still.
        let above_one = |d: &Path| top.iter().any(|t| t != d && t.starts_with(d));
        for gone in self.outside_parents.iter().filter(|d| !above_one(d)) {
            if !top.iter().any(|t| gone.starts_with(t)) {
                let _ = self.inotify.unwatch(gone);
                self.watched.remove(gone);
            }
        }
        self.outside_parents.retain(|d| above_one(d));
        self.watches.store(self.watched.len(), Ordering::Relaxed);
        self.outside = top;
        self.add_outside(false);
    }

    /// Watches each outside path's parent (or nearest existing directory above it) and, for
    /// a directory, its tree (again after a rescan: what is watched already is skipped).
    /// With `report`, files found count as created.
    fn add_outside(&mut self, report: bool) {
        for o in self.outside.clone() {
            // The parent, else the nearest directory above that exists (a build output
            // whose directories are not made yet): watched alone, so what appears on the way
            // is seen and watched in turn.
            // Again until it holds still: a directory made below one just watched, before
            // its watch was in place, gives no event.
            while let Some(above) = o.ancestors().skip(1).find(|a| a.is_dir())
                && !self.watched.contains(above)
            {
                match self.watch(above) {
                    Ok(()) => {
                        self.outside_parents.insert(above.to_path_buf());
                    }
                    Err(e) => {
                        self.errors.push(e);
                        break;
                    }
                }
            }
            if o.is_dir()
                && let Err(e) = self.add_tree(&o, report)
            {
                self.errors.push(e);
            }
        }
        tracing::debug!(outside = ?self.outside, watches = self.watched.len(), "watching outside the project");
    }

    fn watch(&mut self, dir: &Path) -> Result<(), WatchError> {
        let count = self.watched.len();
        let result =
            match self.opts.inject_watch_limit_after {
                Some(n) if count >= n => Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch)
                    .add_path(dir.to_path_buf())),
                _ => self.inotify.watch(dir, RecursiveMode::NonRecursive),
            };
        match result {
            Ok(()) => {
                self.watched.insert(dir.to_path_buf());
                self.watches.store(self.watched.len(), Ordering::Relaxed);
                Ok(())
            }
            // Removed between listing and watching: its removal is an event.
            Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => Ok(()),
            Err(e) => Err(WatchError::from_notify(e, dir, count)),
        }
    }

    fn unwatch_tree(&mut self, dir: &Path) {
        let gone: Vec<PathBuf> = self
            .watched
            .range(dir.to_path_buf()..)
            .take_while(|p| p.starts_with(dir))
            .cloned()
            .collect();
        for p in gone {
            // The kernel drops watches of deleted directories itself; errors are expected.
            let _ = self.inotify.unwatch(&p);
            self.watched.remove(&p);
        }
        self.rules.forget(dir);
        self.watches.store(self.watched.len(), Ordering::Relaxed);
    }
}
