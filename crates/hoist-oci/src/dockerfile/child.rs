//! Running a builder so that cancelling the build stops it cleanly: it runs in a process
//! group of its own, and a dropped run signals it ([`Stop`]) and gives the builder a few
//! seconds to remove its working containers (killed outright it leaves them, each a full
//! copy of the rootfs with the vfs driver) before SIGKILL. The wait (and removing the
//! builder's build tag) runs on a thread of its own, not tied to a runtime that may be
//! shutting down; [`wait_for_cleanups`] lets the process wait for them before it exits,
//! so `hoist` ends only after the builder is gone.

use std::ffi::OsString;
use std::os::fd::FromRawFd;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a cancelled builder may take to clean up before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Cleanups (stopping a builder, removing its tag) still running.
static CLEANUPS: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// Runs `work` on a thread of its own, counted in [`CLEANUPS`].
fn cleanup(work: impl FnOnce() + Send + 'static) {
    *CLEANUPS.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    let done = || {
        let mut n = CLEANUPS.0.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        CLEANUPS.1.notify_all();
    };
    let spawned = std::thread::Builder::new()
        .name("hoist-builder-cleanup".into())
        .spawn(move || {
            work();
            done();
        });
    if spawned.is_err() {
        // No thread to be had: the count goes back; the work is lost with the spawn.
        done();
    }
}

/// Waits (up to `limit`) for the cleanups of cancelled builds to finish: call it before
/// the process exits. Returns at once when there are none.
pub fn wait_for_cleanups(limit: Duration) {
    let (lock, cv) = &CLEANUPS;
    let n = lock.lock().unwrap_or_else(|p| p.into_inner());
    let _ = cv.wait_timeout_while(n, limit, |n| *n > 0);
}

/// How a cancelled builder is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGTERM to its whole group (docker buildx's client, a push).
    Group,
    /// Stops the running step only, and each step that starts later, until the builder
    /// exits: SIGTERM to the builder's children (a `COPY`'s helper, `buildah-copier`,
    /// which fails the copy; a chroot `RUN` step's wrapper, which stops the step),
    /// except the runtime wrapper of a `RUN` step with oci isolation, whose step (the
    /// container's init) gets SIGKILL instead. podman exits at once on SIGTERM or SIGINT,
    /// and buildah does outside a `RUN` step, leaving the working container behind (and
    /// with oci isolation the step's container running); a step that fails instead makes
    /// them remove the container and exit. Each process once: what a stopping wrapper
    /// starts (`runc delete`) must run.
    Steps,
}

/// The builder's exit status and output.
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `prog args` (stdin closed, output captured) to its end; see the module docs for
/// what dropping the future does.
/// `scratch`, if given, is a directory of hoist's the builder writes into (its TMPDIR,
/// where a `RUN` step's container bundle lives): a cancelled builder still uses it while
/// it stops, so it is kept until then; so is `gone` ([`Untag::after`]), which says when
/// the builder has ended.
pub(crate) async fn run(
    prog: &str,
    args: &[String],
    env: &[(String, OsString)],
    env_remove: &[&str],
    scratch: Option<Scratch>,
    how: Stop,
    gone: Option<Gone>,
) -> std::io::Result<Finished> {
    // Output goes to unlinked files, not pipes: a cancelled (or killed) hoist would close
    // a pipe's reading end, and buildah and podman die of SIGPIPE at their next line of
    // progress or error output, before removing their working container.
    let (stdout, stderr) = (
        output_file(scratch.as_ref())?,
        output_file(scratch.as_ref())?,
    );
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        // Its own group: we signal the builder and the processes of its `RUN` steps
        // together, and a terminal's Ctrl-C reaches hoist only, which stops it gracefully.
        .process_group(0);
    for k in env_remove {
        cmd.env_remove(k);
    }
    let (child, keeper) = spawn_dying_with_hoist(cmd)?;
    let mut guard = Running(Some(child), scratch, Some(keeper), how, gone);
    let status = guard.0.as_mut().expect("just spawned").wait().await;
    guard.0 = None; // ended (or waiting failed): nothing to stop
    let status = status?;
    Ok(Finished {
        status,
        stdout: read_all(stdout)?,
        stderr: read_all(stderr)?,
    })
}

/// An anonymous file for a builder's output: in `scratch` (on the cache's disk) if given,
/// else in the system temp dir; unlinked at once, so nothing is left whatever happens.
fn output_file(scratch: Option<&Scratch>) -> std::io::Result<std::fs::File> {
    match scratch {
        Some(dir) => tempfile::tempfile_in(dir.path()),
        None => tempfile::tempfile(),
    }
}

/// All of `file`, from its start.
fn read_all(mut file: std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    file.rewind()?;
    let mut all = vec![];
    file.read_to_end(&mut all)?;
    Ok(all)
}

/// Spawns the builder so that it gets SIGTERM when hoist dies, even killed outright
/// (SIGKILL, the OOM killer), which no handler of hoist's sees: `PR_SET_PDEATHSIG`. SIGTERM,
/// not SIGKILL, so buildah in a `RUN` step still removes its working container. (podman,
/// and buildah before or between its `RUN` steps, exit on it without removing theirs: the
/// kernel signals the builder only, not its step, so there is no [`Stop::Steps`] then;
/// `podman rm` / `buildah rm` removes what is left.)
///
/// The signal comes when the *thread* that forked the builder ends, not the process. A
/// runtime's threads may end while the build goes on (an idle blocking-pool thread after
/// 10 s, a worker given up by `block_in_place`), so the fork happens on a thread of its own
/// that lives until the returned [`Keeper`] is dropped: after the builder is reaped.
fn spawn_dying_with_hoist(
    mut cmd: tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, Keeper)> {
    let hoist = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // hoist died before the prctl: nobody would ever send the signal.
            // (An error number, not a message: nothing may allocate here, and only the
            // number reaches the parent anyway.)
            if libc::getppid() != hoist {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    // The child is tokio's (reaped by its SIGCHLD handling): spawned in the runtime's
    // context from the keeping thread.
    let runtime = tokio::runtime::Handle::current();
    let (spawned_tx, spawned) = std::sync::mpsc::sync_channel(1);
    let (keeper, kept) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("hoist-builder-parent".into())
        .spawn(move || {
            let _in_runtime = runtime.enter();
            let _ = spawned_tx.send(cmd.spawn());
            // Until the keeper is dropped (no message is ever sent).
            let _ = kept.recv();
        })?;
    let child = spawned
        .recv()
        .map_err(|_| std::io::Error::other("the thread starting the image builder died"))??;
    Ok((child, Keeper(keeper)))
}

/// Keeps the thread that forked a builder alive ([`spawn_dying_with_hoist`]) until dropped.
struct Keeper(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

/// A build's scratch dir, shared by its owner and the builder's runs: removed when the
/// last of them lets it go.
pub(crate) type Scratch = std::sync::Arc<crate::temp_lock::LockedTempDir>;

/// A builder still running, the scratch directory it writes into, the keeper of the
/// thread that forked it, how to stop it, and what says it is gone; dropping it stops the
/// builder (see the module docs), then lets the directory go.
struct Running(
    Option<tokio::process::Child>,
    Option<Scratch>,
    Option<Keeper>,
    Stop,
    Option<Gone>,
);

impl Drop for Running {
    fn drop(&mut self) {
        let Some(child) = self.0.take() else { return };
        let scratch = self.1.take();
        // Dropped once the builder is gone (or given up on), with the cleanup below.
        let (keeper, gone) = (self.2.take(), self.4.take());
        let Some(pid) = child.id() else { return };
        let pgid = pid as libc::pid_t;
        let how = self.3;
        tracing::info!(pid, ?how, "stopping the cancelled image builder");
        let mut signalled = std::collections::HashSet::new();
        signal(pgid, how, &mut signalled);
        cleanup(move || {
            stop(child, pgid, how, signalled);
            drop(keeper);
            drop(gone);
            // The owner let it go when the build was dropped: it goes now, with what the
            // builder wrote while it stopped.
            drop(scratch);
        });
    }
}

/// Sends SIGTERM as `how` says to the builder `pgid` (its pid, and its group's id);
/// `signalled` holds the processes already signalled, for [`Stop::Steps`].
fn signal(pgid: libc::pid_t, how: Stop, signalled: &mut std::collections::HashSet<libc::pid_t>) {
    match how {
        // SAFETY: signalling a process group we created; no memory is involved.
        Stop::Group => unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        },
        Stop::Steps => {
            for pid in children(innermost_builder(pgid)) {
                if is_oci_runtime_wrapper(pid) {
                    // Not the wrapper itself: it handles SIGTERM only once the step's
                    // container has started (before, it dies of it, leaving the container
                    // created or running, and its runc state). Its step instead, the
                    // container's init (in a pid namespace of its own, unlike the runc
                    // commands the wrapper runs), killed: the wrapper then deletes the
                    // container as after any step that ended, and the step fails.
                    for step in children(pid) {
                        if !signalled.contains(&step)
                            && signal_if(step, libc::SIGKILL, |step| {
                                parent(step) == Some(pid)
                                    && matches!(
                                        (pid_namespace(step), pid_namespace(pid)),
                                        (Some(a), Some(b)) if a != b
                                    )
                            })
                        {
                            signalled.insert(step);
                        }
                    }
                } else if signalled.insert(pid) {
                    // SAFETY: signalling a child of our unreaped child (its pid cannot have
                    // been reused while it is one); no memory is involved.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
        }
    }
}

/// The builder that runs the steps, under `pid`: rootless, buildah and podman run again
/// in a user namespace (the same program with the same arguments, as a child) and that
/// copy does the build, so the steps are its children; a SIGTERM to it as one of them
/// would end it without removing its working container. Helpers the builder re-executes
/// (a COPY's, a RUN's wrapper) have arguments of their own.
fn innermost_builder(pid: libc::pid_t) -> libc::pid_t {
    let same = |a: libc::pid_t, b: libc::pid_t| {
        let exe = |p| std::fs::read_link(format!("/proc/{p}/exe")).ok();
        let args = |p| std::fs::read(format!("/proc/{p}/cmdline")).ok();
        exe(a).is_some() && exe(a) == exe(b) && args(a).is_some() && args(a) == args(b)
    };
    let mut builder = pid;
    // Bounded: a chain of such copies is one deep in practice.
    for _ in 0..4 {
        match children(builder).into_iter().find(|c| same(*c, builder)) {
            Some(inner) => builder = inner,
            None => break,
        }
    }
    builder
}

/// Whether `pid` is buildah's (and podman's) runtime wrapper of a `RUN` step with oci
/// isolation: a re-executed builder named so in its arguments.
fn is_oci_runtime_wrapper(pid: libc::pid_t) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).next() == Some(b"buildah-oci-runtime"))
}

/// The parent of `pid`.
fn parent(pid: libc::pid_t) -> Option<libc::pid_t> {
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The pid namespace of `pid` (`pid:[inode]`).
fn pid_namespace(pid: libc::pid_t) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Sends `sig` to `pid` if `check(pid)` holds, checked once the process is pinned by a
/// pidfd: a grandchild may be reaped (and its pid reused) between finding and signalling
/// it. Whether the signal was sent.
fn signal_if(pid: libc::pid_t, sig: libc::c_int, check: impl Fn(libc::pid_t) -> bool) -> bool {
    // SAFETY: pidfd_open takes a pid and flags; no memory is involved.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: a descriptor we just opened and own.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) };
    if !check(pid) {
        return false;
    }
    // SAFETY: pidfd_send_signal on our pidfd, with no siginfo; no memory is involved.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

/// The processes whose parent is `parent` (from /proc: there is no call for it).
fn children(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| self::parent(*pid) == Some(parent))
        .collect()
}

/// Waits up to [`STOP_GRACE`] for the signalled builder to exit (signalling each step
/// that starts meanwhile, for [`Stop::Steps`]), then kills its group.
fn stop(
    mut child: tokio::process::Child,
    pgid: libc::pid_t,
    how: Stop,
    mut signalled: std::collections::HashSet<libc::pid_t>,
) {
    let deadline = Instant::now() + STOP_GRACE;
    let mut polls = 0u32;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => {
                tracing::debug!(%status, "cancelled image builder exited");
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
        polls += 1;
        if how == Stop::Steps && polls.is_multiple_of(5) {
            signal(pgid, how, &mut signalled);
        }
    }
    tracing::warn!(
        "the cancelled image builder did not exit within {} s; killing it",
        STOP_GRACE.as_secs()
    );
    // Not reaped yet, so the group id is still ours.
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.start_kill();
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes a builder's image (`prog args`, e.g. `buildah rmi TAG`) when dropped, on a
/// cleanup thread of its own ([`cleanup`]: `wait_for_cleanups` waits for it at exit), once
/// the build's builder has ended: a cancelled one may still be tagging the image while it
/// stops, after a removal that found nothing. A cancelled push may still hold the storage
/// lock for a moment: a failed removal is retried for up to [`STOP_GRACE`]; an image that
/// is not there (the build failed or stopped before it was tagged) is not waited for.
pub(crate) struct Untag {
    prog: &'static str,
    args: Vec<String>,
    env_remove: &'static [&'static str],
    builder_gone: Option<std::sync::mpsc::Receiver<()>>,
}

/// Held by a build's [`run`] until its builder has ended (or was killed): its drop is what
/// [`Untag`] waits for. No message is ever sent.
pub(crate) struct Gone(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

impl Untag {
    /// The removal, and the [`Gone`] to give the build's [`run`].
    pub(crate) fn after(
        prog: &'static str,
        args: Vec<String>,
        env_remove: &'static [&'static str],
    ) -> (Self, Gone) {
        let (gone, builder_gone) = std::sync::mpsc::channel();
        let untag = Self {
            prog,
            args,
            env_remove,
            builder_gone: Some(builder_gone),
        };
        (untag, Gone(gone))
    }
}

impl Drop for Untag {
    fn drop(&mut self) {
        let (prog, args, remove) = (self.prog, std::mem::take(&mut self.args), self.env_remove);
        let builder_gone = self.builder_gone.take();
        let work = move || {
            // Disconnected once the builder has ended; a stop that kills it after its grace
            // ends within a second more.
            if let Some(gone) = builder_gone {
                let _ = gone.recv_timeout(STOP_GRACE + Duration::from_secs(2));
            }
            let deadline = Instant::now() + STOP_GRACE;
            loop {
                let mut cmd = std::process::Command::new(prog);
                for k in remove {
                    cmd.env_remove(k);
                }
                let out = cmd.args(&args).stdin(Stdio::null()).output();
                let ok = out.as_ref().is_ok_and(|o| o.status.success());
                // Both buildah's and podman's words for it.
                let absent = out
                    .as_ref()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("image not known"));
                if ok || absent || Instant::now() >= deadline {
                    if !ok && !absent {
                        tracing::warn!(?args, "could not remove the builder's image");
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        cleanup(work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rootless, the builder hoist starts runs itself again (same program, same arguments)
    /// and that copy runs the steps: the steps looked for are the inner copy's children;
    /// a child with other arguments (a helper) is not taken for such a copy.
    #[test]
    fn the_steps_are_looked_for_under_a_builder_that_runs_itself_again() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("builder.sh");
        // The outer copy starts the inner one (same command line) and a helper of its own;
        // the inner one runs a "step".
        std::fs::write(
            &script,
            "if [ -z \"$INNER\" ]; then INNER=1 /bin/sh \"$0\" \"$@\" & /bin/sleep 29 & wait; \
             else /bin/sleep 30; fi\n",
        )
        .unwrap();
        let mut outer = std::process::Command::new("/bin/sh")
            .arg(&script)
            .arg("build")
            .spawn()
            .unwrap();
        let pid = outer.id() as libc::pid_t;
        let cmdline =
            |p: libc::pid_t| std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let inner = loop {
            let inner = innermost_builder(pid);
            if inner != pid
                && children(inner)
                    .iter()
                    .any(|c| cmdline(*c).starts_with(b"/bin/sleep\x0030"))
            {
                break inner;
            }
            assert!(
                Instant::now() < deadline,
                "the inner copy never ran its step"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(parent(inner), Some(pid));
        assert_eq!(cmdline(inner), cmdline(pid));
        // The outer copy's helper is no copy of it.
        assert!(
            children(pid)
                .iter()
                .any(|c| cmdline(*c).starts_with(b"/bin/sleep\x0029"))
        );
        for p in children(inner)
            .into_iter()
            .chain(children(pid))
            .chain([inner])
        {
            // SAFETY: signalling the test's own processes; no memory is involved.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        outer.kill().unwrap();
        outer.wait().unwrap();
    }

    /// Cancels `run` (a build on `rt`) once its builder has made the file `started`.
    fn cancel_once_started<T>(
        rt: &tokio::runtime::Runtime,
        run: tokio::task::JoinHandle<T>,
        started: &std::path::Path,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !started.exists() {
            assert!(Instant::now() < deadline, "the builder never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        run.abort();
        let _ = rt.block_on(run);
    }

    /// A cancelled builder that writes while it cleans up (podman and buildah print
    /// progress and errors, then would die of SIGPIPE on a closed pipe, leaving their
    /// working container) still gets to finish its cleanup.
    #[test]
    fn a_cancelled_builder_may_write_while_it_cleans_up() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("cleaned-up");
        let started = dir.path().join("started");
        // On SIGTERM: output (after hoist has let go of the run), then the cleanup.
        let script = format!(
            "trap 'sleep 0.3; echo cleaning up; echo on stderr >&2; touch {done}; exit 1' TERM; \
             touch {started}; while :; do sleep 0.05; done",
            done = done.display(),
            started = started.display()
        );
        let args = ["-c".to_string(), script];
        let run =
            rt.spawn(async move { run("sh", &args, &[], &[], None, Stop::Group, None).await });
        cancel_once_started(&rt, run, &started);
        wait_for_cleanups(STOP_GRACE + Duration::from_secs(2));
        assert!(
            done.exists(),
            "the cancelled builder did not finish its cleanup"
        );
    }

    /// A cancelled builder may still tag its image while it stops (one past its last step
    /// runs to its end): the build tag's removal waits for it, rather than finding nothing
    /// to remove and leaving the image the builder tags a moment later.
    #[test]
    fn the_build_tag_is_removed_after_a_cancelled_builder_has_ended() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (tagged, started) = (dir.path().join("tagged"), dir.path().join("started"));
        // On SIGTERM the "builder" tags its image, late.
        let script = format!(
            "trap 'sleep 0.5; touch {tagged}; exit 1' TERM; touch {started}; \
             while :; do sleep 0.05; done",
            tagged = tagged.display(),
            started = started.display()
        );
        // The "rmi": removes the tag, or says the image is not known (buildah's words).
        let rmi = format!(
            "if [ -e {t} ]; then rm {t}; else echo 'image not known' >&2; exit 1; fi",
            t = tagged.display()
        );
        let (untag, gone) = Untag::after("sh", vec!["-c".into(), rmi], &[]);
        let args = ["-c".to_string(), script];
        let run = rt.spawn(async move {
            let _untag = untag;
            run("sh", &args, &[], &[], None, Stop::Group, Some(gone)).await
        });
        cancel_once_started(&rt, run, &started);
        wait_for_cleanups(2 * STOP_GRACE + Duration::from_secs(4));
        assert!(
            !tagged.exists(),
            "the image tagged while the builder stopped was left"
        );
    }

    /// PR_SET_PDEATHSIG fires when the thread that forked the child ends: a builder whose
    /// run was started on a thread that ended since must still run to its end.
    #[test]
    fn the_builder_outlives_the_thread_that_started_it() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let args = ["-c".to_string(), "sleep 1; echo alive".to_string()];
        let started = std::thread::spawn(move || {
            let _in_runtime = handle.enter();
            let mut fut =
                Box::pin(async move { run("sh", &args, &[], &[], None, Stop::Group, None).await });
            // One poll forks the builder, then waits for its output.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            fut
        })
        .join()
        .unwrap();
        let done = rt.block_on(started).unwrap();
        assert!(
            done.status.success(),
            "{:?}: {}",
            done.status,
            String::from_utf8_lossy(&done.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&done.stdout), "alive\n");
    }
}
