//! `runc` driven as a library: run detached with stdio on pipes we pump into CRI logs,
//! learn exit codes by being the child subreaper, state/list for re-adoption, graceful
//! kill, forced delete and exec.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::attach::{ContainerIo, IoTable, Tee};
use crate::error::{Error, IoContext, Result};
use crate::logs::{LogSink, StoppableFifo, Stream};
use crate::sys;

/// The container's stdout and stderr FIFOs, in the bundle directory.
pub const FIFOS: [&str; 2] = ["stdout.fifo", "stderr.fifo"];

/// Written into the bundle directory by the reaper when the container's process exits.
pub const EXIT_CODE_FILE: &str = "exit-code";

/// What `runc state` / `runc list` report about a container.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    pub status: String,
    pub bundle: PathBuf,
    #[serde(default)]
    pub created: String,
}

impl ContainerState {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

/// How a container's process ended. `code` is `None` when it ended while no hoist process
/// watched it (re-adopted after a restart, exit not recorded): it is then unknowable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exited {
    pub code: Option<i32>,
}

#[derive(Default)]
struct ExitCell {
    exit: Mutex<Option<Exited>>,
    cv: Condvar,
}

impl ExitCell {
    fn set(&self, e: Exited) {
        *self.exit.lock().expect("exit cell poisoned") = Some(e);
        self.cv.notify_all();
    }

    fn wait(&self, timeout: Duration) -> Option<Exited> {
        let guard = self.exit.lock().expect("exit cell poisoned");
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |e| e.is_none())
            .expect("exit cell poisoned");
        *guard
    }
}

/// Output of a finished exec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub struct Runtime {
    runc: PathBuf,
    runc_root: PathBuf,
    exits: Mutex<HashMap<String, Arc<ExitCell>>>,
    log_stops: Mutex<HashMap<String, Arc<AtomicBool>>>,
    io: Arc<IoTable>,
}

/// How a container's stdio is set up (Kubernetes' `stdin` and `tty`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunIo {
    /// stdin is a pipe hoist writes attached clients' input into (else /dev/null).
    pub stdin: bool,
    /// The process runs on a pseudo-terminal (its output is one stream, logged as stdout).
    pub tty: bool,
}

/// Find runc: `$HOIST_RUNC`, else `runc` on PATH or in the sbin directories.
pub fn find_runc() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HOIST_RUNC").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::RuncMissing {
                looked: format!("HOIST_RUNC={}", p.display()),
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    for d in dirs {
        let c = d.join("runc");
        if c.is_file() {
            return Ok(c);
        }
    }
    Err(Error::RuncMissing {
        looked: "runc on PATH, /usr/local/sbin, /usr/sbin, /sbin".into(),
    })
}

/// Root and runc, checked before anything else so the error says what to do.
pub fn check_host() -> Result<PathBuf> {
    let uid = sys::geteuid();
    if uid != 0 {
        return Err(Error::NotRoot { uid });
    }
    find_runc()
}

impl Runtime {
    /// A runtime keeping runc's state under `state_dir` (e.g. `/run/hoist/runc`). Makes this
    /// process the child subreaper, so container processes become our children once runc
    /// exits and their exit codes can be collected.
    pub fn new(state_dir: impl Into<PathBuf>) -> Result<Self> {
        let runc = check_host()?;
        let runc_root = state_dir.into();
        std::fs::create_dir_all(&runc_root).ctx(|| format!("creating {}", runc_root.display()))?;
        sys::set_child_subreaper().ctx(|| "prctl(PR_SET_CHILD_SUBREAPER)")?;
        Ok(Self {
            runc,
            runc_root,
            exits: Mutex::new(HashMap::new()),
            log_stops: Mutex::new(HashMap::new()),
            io: Arc::new(IoTable::default()),
        })
    }

    pub fn runc_root(&self) -> &Path {
        &self.runc_root
    }

    /// The attachable I/O of the containers this runtime started (`pods/attach`).
    pub fn io_table(&self) -> Arc<IoTable> {
        self.io.clone()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.runc);
        c.arg("--root").arg(&self.runc_root);
        c
    }

    fn runc_output(&self, args: &[&str]) -> Result<Vec<u8>> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ctx(|| format!("running {} {}", self.runc.display(), args.join(" ")))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.contains("not exist")
            && let Some(id) = args.last()
        {
            return Err(Error::NoSuchContainer {
                id: id.to_string(),
                root: self.runc_root.clone(),
            });
        }
        Err(Error::Runc {
            args: args.join(" "),
            code: out.status.code(),
            stderr,
        })
    }

    /// Create and start container `id` from the bundle in `bundle_dir`, its stdout and
    /// stderr appended to `log_path` in CRI format. Returns the container's pid once it runs.
    pub fn run(&self, id: &str, bundle_dir: &Path, log_path: &Path) -> Result<i32> {
        self.run_with(id, bundle_dir, log_path, RunIo::default())
    }

    /// [`Runtime::run`] with a stdin pipe and/or a terminal (the bundle's
    /// `process.terminal` must match `io.tty`).
    pub fn run_with(&self, id: &str, bundle_dir: &Path, log_path: &Path, io: RunIo) -> Result<i32> {
        if io.tty {
            return self.run_on_terminal(id, bundle_dir, log_path);
        }
        let sink = LogSink::open(log_path)?;
        let pid_file = bundle_dir.join("pid");
        let _ = std::fs::remove_file(bundle_dir.join(EXIT_CODE_FILE));
        let runc_log = bundle_dir.join("runc.log");
        let _ = std::fs::remove_file(&pid_file);
        // stdout/stderr are FIFOs in the bundle that the container holds open read-write:
        // with a reader always present a write never meets SIGPIPE, even while hoist is
        // down; a restarted hoist reattaches by opening them again (`reattach_logs`).
        let mut fifos = vec![];
        for name in FIFOS {
            let p = bundle_dir.join(name);
            let _ = std::fs::remove_file(&p);
            sys::mkfifo(&p, 0o600).ctx(|| format!("mkfifo {}", p.display()))?;
            let rw = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .ctx(|| format!("opening {}", p.display()))?;
            fifos.push((p, rw));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let out = StoppableFifo::open(&fifos[0].0, stop.clone())?;
        let mut err = StoppableFifo::open(&fifos[1].0, stop.clone())?;
        let [(_, w_out), (_, w_err)]: [(PathBuf, std::fs::File); 2] =
            fifos.try_into().expect("two fifos");
        let (stdin, stdin_writer) = if io.stdin {
            let (r, w) = std::io::pipe().ctx(|| "creating the stdin pipe")?;
            (
                Stdio::from(r),
                Some(std::fs::File::from(std::os::fd::OwnedFd::from(w))),
            )
        } else {
            (Stdio::null(), None)
        };
        let status = self
            .command()
            .arg("--log")
            .arg(&runc_log)
            .args(["run", "--detach", "--pid-file"])
            .arg(&pid_file)
            .arg("--bundle")
            .arg(bundle_dir)
            .arg(id)
            .stdin(stdin)
            .stdout(Stdio::from(w_out))
            .stderr(Stdio::from(w_err))
            .status()
            .ctx(|| format!("running {}", self.runc.display()))?;
        if !status.success() {
            // runc's own complaint went to runc.log and to the stderr FIFO (no writer is
            // left now, so reading it ends).
            let mut msg = String::new();
            let _ = self.runc_output(&["delete", "--force", id]);
            let _ = err.read_to_string(&mut msg);
            let detail = runc_log_errors(&runc_log).unwrap_or_else(|| msg.trim().to_string());
            return Err(Error::Runc {
                args: format!("run --detach {id}"),
                code: status.code(),
                stderr: detail,
            });
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ctx(|| format!("reading {}", pid_file.display()))?
            .trim()
            .parse()
            .map_err(|_| Error::Runc {
                args: format!("run --detach {id}"),
                code: None,
                stderr: format!("bad pid file {}", pid_file.display()),
            })?;
        let cio = Arc::new(ContainerIo::new(stdin_writer, None));
        sink.pump(
            Stream::Stdout,
            Tee::new(out, cio.output.clone(), Stream::Stdout),
        );
        sink.pump(
            Stream::Stderr,
            Tee::new(err, cio.output.clone(), Stream::Stderr),
        );
        self.io.insert(id, cio);
        self.log_stops
            .lock()
            .expect("log map poisoned")
            .insert(id.to_string(), stop);
        self.reap(id, pid, bundle_dir)?;
        Ok(pid)
    }

    /// Collects the exit code of container process `pid` (our child: we are the
    /// subreaper) on a thread, into the exit cell and the bundle's exit-code file.
    fn reap(&self, id: &str, pid: i32, bundle_dir: &Path) -> Result<()> {
        let cell = Arc::new(ExitCell::default());
        self.exits
            .lock()
            .expect("exit map poisoned")
            .insert(id.to_string(), cell.clone());
        let id_owned = id.to_string();
        let exit_file = bundle_dir.join(EXIT_CODE_FILE);
        std::thread::Builder::new()
            .name(format!("reap-{id}"))
            .spawn(move || {
                let code = match sys::wait_pid(pid) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(container = %id_owned, pid, error = %e, "waitpid");
                        None
                    }
                };
                // Kept next to the bundle so a restarted hoist still knows how it ended.
                if let Some(c) = code {
                    let _ = std::fs::write(&exit_file, c.to_string());
                }
                cell.set(Exited { code });
            })
            .ctx(|| "spawning the reaper thread")?;
        Ok(())
    }

    /// A `tty: true` container: runc hands the pty master over a console socket; its
    /// output is logged as stdout and fanned out to attached clients, stdin writes to it.
    fn run_on_terminal(&self, id: &str, bundle_dir: &Path, log_path: &Path) -> Result<i32> {
        use std::os::unix::net::UnixListener;
        let sink = LogSink::open(log_path)?;
        let pid_file = bundle_dir.join("pid");
        let runc_log = bundle_dir.join("runc.log");
        let _ = std::fs::remove_file(bundle_dir.join(EXIT_CODE_FILE));
        let _ = std::fs::remove_file(&pid_file);
        // Under the runc root, not the bundle: a socket path must fit in 108 bytes.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let sock_path = self.runc_root.join(format!(
            "console-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&sock_path);
        let listener =
            UnixListener::bind(&sock_path).ctx(|| format!("binding {}", sock_path.display()))?;
        let out = self
            .command()
            .arg("--log")
            .arg(&runc_log)
            .args(["run", "--detach", "--console-socket"])
            .arg(&sock_path)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--bundle")
            .arg(bundle_dir)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let _ = std::fs::remove_file(&sock_path);
        let out = out.ctx(|| format!("running {}", self.runc.display()))?;
        if !out.status.success() {
            let _ = self.runc_output(&["delete", "--force", id]);
            let detail = runc_log_errors(&runc_log)
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            return Err(Error::Runc {
                args: format!("run --detach --console-socket {id}"),
                code: out.status.code(),
                stderr: detail,
            });
        }
        // runc has sent the terminal before exiting: the connection is queued.
        let terminal = (|| -> std::io::Result<std::fs::File> {
            listener.set_nonblocking(true)?;
            let (conn, _) = listener.accept()?;
            conn.set_nonblocking(false)?;
            conn.set_read_timeout(Some(Duration::from_secs(10)))?;
            Ok(std::fs::File::from(sys::recv_fd(&conn)?))
        })();
        let terminal = match terminal {
            Ok(t) => t,
            Err(e) => {
                let _ = self.runc_output(&["delete", "--force", id]);
                return Err(Error::Io {
                    context: format!("receiving the terminal of {id} from runc"),
                    source: e,
                });
            }
        };
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ctx(|| format!("reading {}", pid_file.display()))?
            .trim()
            .parse()
            .map_err(|_| Error::Runc {
                args: format!("run --detach {id}"),
                code: None,
                stderr: format!("bad pid file {}", pid_file.display()),
            })?;
        let reader = terminal.try_clone().ctx(|| "dup of the terminal")?;
        let writer = terminal.try_clone().ctx(|| "dup of the terminal")?;
        let cio = Arc::new(ContainerIo::new(Some(writer), Some(terminal)));
        sink.pump(
            Stream::Stdout,
            Tee::new(reader, cio.output.clone(), Stream::Stdout),
        );
        self.io.insert(id, cio);
        self.reap(id, pid, bundle_dir)?;
        Ok(pid)
    }

    pub fn state(&self, id: &str) -> Result<ContainerState> {
        let out = self.runc_output(&["state", id])?;
        serde_json::from_slice(&out).map_err(|e| Error::Runc {
            args: format!("state {id}"),
            code: Some(0),
            stderr: format!("unexpected output ({e}): {}", String::from_utf8_lossy(&out)),
        })
    }

    /// All containers under our runc root (after a restart: what to re-adopt or clean up).
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        let out = self.runc_output(&["list", "--format", "json"])?;
        let parsed: Option<Vec<ContainerState>> =
            serde_json::from_slice(&out).map_err(|e| Error::Runc {
                args: "list --format json".into(),
                code: Some(0),
                stderr: format!("unexpected output ({e}): {}", String::from_utf8_lossy(&out)),
            })?;
        Ok(parsed.unwrap_or_default())
    }

    /// Watch a container this process did not start (e.g. after a restart). Its exit code
    /// will be unknown, but `wait` and `kill` work.
    pub fn adopt(&self, id: &str) -> Result<ContainerState> {
        let st = self.state(id)?;
        let cell = Arc::new(ExitCell::default());
        if st.status == "stopped" || st.pid <= 0 {
            let code = std::fs::read_to_string(st.bundle.join(EXIT_CODE_FILE))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            cell.set(Exited { code });
        } else {
            let fd = sys::pidfd_open(st.pid).ctx(|| format!("pidfd_open({})", st.pid))?;
            let c = cell.clone();
            std::thread::Builder::new()
                .name(format!("watch-{id}"))
                .spawn(move || {
                    while let Ok(false) = sys::poll_readable(&fd, 60_000) {}
                    c.set(Exited { code: None });
                })
                .ctx(|| "spawning the watch thread")?;
        }
        self.exits
            .lock()
            .expect("exit map poisoned")
            .insert(id.to_string(), cell);
        Ok(st)
    }

    /// Stop copying the container's output (it keeps running; output waits in the FIFO,
    /// up to the pipe buffer, until `reattach_logs`). What a hoist shutdown that leaves
    /// containers running does; tests use it to stand in for a crash.
    pub fn detach_logs(&self, id: &str) {
        if let Some(stop) = self.log_stops.lock().expect("log map poisoned").remove(id) {
            stop.store(true, Ordering::Relaxed);
        }
    }

    /// Resume copying a (re-adopted) container's output into `log_path`.
    pub fn reattach_logs(&self, id: &str, bundle_dir: &Path, log_path: &Path) -> Result<()> {
        self.detach_logs(id);
        let sink = LogSink::open(log_path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let out = StoppableFifo::open(&bundle_dir.join(FIFOS[0]), stop.clone())?;
        let err = StoppableFifo::open(&bundle_dir.join(FIFOS[1]), stop.clone())?;
        // Output is attachable again; stdin, if it had one, went with the old process.
        let cio = Arc::new(ContainerIo::new(None, None));
        sink.pump(
            Stream::Stdout,
            Tee::new(out, cio.output.clone(), Stream::Stdout),
        );
        sink.pump(
            Stream::Stderr,
            Tee::new(err, cio.output.clone(), Stream::Stderr),
        );
        self.io.insert(id, cio);
        self.log_stops
            .lock()
            .expect("log map poisoned")
            .insert(id.to_string(), stop);
        Ok(())
    }

    fn cell(&self, id: &str) -> Result<Arc<ExitCell>> {
        if let Some(c) = self.exits.lock().expect("exit map poisoned").get(id) {
            return Ok(c.clone());
        }
        self.adopt(id)?;
        Ok(self.exits.lock().expect("exit map poisoned")[id].clone())
    }

    /// Wait up to `timeout` for the container's process to exit.
    pub fn wait(&self, id: &str, timeout: Duration) -> Result<Option<Exited>> {
        Ok(self.cell(id)?.wait(timeout))
    }

    /// Send `signal` (e.g. "TERM", "KILL") to the container's init process.
    pub fn signal(&self, id: &str, signal: &str) -> Result<()> {
        match self.runc_output(&["kill", id, signal]) {
            Ok(_) => Ok(()),
            // Already gone: nothing to signal.
            Err(Error::Runc { stderr, .. }) if stderr.contains("not running") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL. Returns how it ended.
    pub fn kill(&self, id: &str, grace: Duration) -> Result<Exited> {
        let cell = self.cell(id)?;
        if let Some(e) = cell.wait(Duration::ZERO) {
            return Ok(e);
        }
        self.signal(id, "TERM")?;
        if let Some(e) = cell.wait(grace) {
            return Ok(e);
        }
        tracing::debug!(container = id, "grace period over, SIGKILL");
        self.signal(id, "KILL")?;
        let limit = Duration::from_secs(10);
        cell.wait(limit).ok_or_else(|| Error::Timeout {
            what: format!("container {id} to die after SIGKILL"),
            secs: limit.as_secs_f64(),
        })
    }

    /// Remove the container from runc (killing it if still running).
    pub fn delete(&self, id: &str) -> Result<()> {
        match self.runc_output(&["delete", "--force", id]) {
            Ok(_) | Err(Error::NoSuchContainer { .. }) => {}
            Err(e) => return Err(e),
        }
        self.exits.lock().expect("exit map poisoned").remove(id);
        self.io.remove(id);
        // The pumps end by themselves once the last output is drained (EOF).
        self.log_stops.lock().expect("log map poisoned").remove(id);
        Ok(())
    }

    /// Start `args` inside the running container (its env, user and cwd; `env` adds
    /// `NAME=value`s). stdin/stdout/stderr are pipes on the returned child; its exit status
    /// is the process's.
    pub fn exec(&self, id: &str, args: &[String], env: &[String]) -> Result<Child> {
        if args.is_empty() {
            return Err(Error::Spec {
                container: id.into(),
                reason: "exec needs a command".into(),
            });
        }
        let mut c = self.command();
        c.arg("exec");
        for e in env {
            c.arg("--env").arg(e);
        }
        c.arg(id)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ctx(|| format!("starting runc exec in {id}"))
    }

    /// Run `args` in the container, feed it `stdin`, collect its output; bounded by `timeout`.
    pub fn exec_output(
        &self,
        id: &str,
        args: &[String],
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let mut child = self.exec(id, args, &[])?;
        let mut input = child.stdin.take().expect("piped stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let r_out = std::thread::spawn(move || {
            let mut b = vec![];
            let _ = out.read_to_end(&mut b);
            b
        });
        let r_err = std::thread::spawn(move || {
            let mut b = vec![];
            let _ = err.read_to_end(&mut b);
            b
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().ctx(|| "waiting for runc exec")? {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    what: format!("exec {:?} in {id}", args.join(" ")),
                    secs: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = writer.join();
        let stdout = r_out.join().unwrap_or_default();
        let stderr = r_err.join().unwrap_or_default();
        Ok(ExecOutput {
            code: status.code().unwrap_or_else(|| {
                128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
            }),
            stdout,
            stderr,
        })
    }
}

/// A process started with a terminal (`kubectl exec -it`): read and write `terminal` (the
/// pty master), `resize` it, `wait` for the exit code.
pub struct TtyExec {
    pub terminal: std::fs::File,
    pub pid: i32,
    exit: Arc<ExitCell>,
}

impl TtyExec {
    pub fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        let fd = std::os::fd::OwnedFd::from(self.terminal.try_clone().ctx(|| "dup pty")?);
        sys::set_winsize(&fd, cols, rows).ctx(|| "resizing the exec terminal")
    }

    /// The exit code, if the process ended within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<i32> {
        self.exit.wait(timeout).and_then(|e| e.code)
    }

    /// How the process ended, if it did within `timeout` (`code: None`: it ended but its
    /// status could not be collected).
    pub fn exited(&self, timeout: Duration) -> Option<Exited> {
        self.exit.wait(timeout)
    }
}

impl Runtime {
    /// Start `args` in the container on a new pseudo-terminal of `cols`x`rows`. runc runs it
    /// detached and hands us the pty master over a console socket; the process becomes our
    /// child (subreaper), so its exit code is collected here.
    pub fn exec_tty(
        &self,
        id: &str,
        args: &[String],
        env: &[String],
        cols: u16,
        rows: u16,
    ) -> Result<TtyExec> {
        use std::os::unix::net::UnixListener;
        if args.is_empty() {
            return Err(Error::Spec {
                container: id.into(),
                reason: "exec needs a command".into(),
            });
        }
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = self
            .runc_root
            .join(format!("exec-{}-{n}", std::process::id()));
        let sock_path = base.with_extension("sock");
        let pid_file = base.with_extension("pid");
        let _ = std::fs::remove_file(&sock_path);
        let listener =
            UnixListener::bind(&sock_path).ctx(|| format!("binding {}", sock_path.display()))?;
        listener.set_nonblocking(true).ctx(|| "console socket")?;
        // A full process spec (the container's own, with our args) so runc sizes the
        // terminal before the command starts: `stty size` is right from the first moment.
        let process_file = base.with_extension("json");
        let cleanup = || {
            let _ = std::fs::remove_file(&sock_path);
            let _ = std::fs::remove_file(&pid_file);
            let _ = std::fs::remove_file(&process_file);
        };
        let cfg = (|| -> Result<serde_json::Value> {
            let bundle_cfg = self.state(id)?.bundle.join("config.json");
            let bytes =
                std::fs::read(&bundle_cfg).ctx(|| format!("reading {}", bundle_cfg.display()))?;
            serde_json::from_slice(&bytes).map_err(|e| Error::Spec {
                container: id.into(),
                reason: format!("{}: {e}", bundle_cfg.display()),
            })
        })();
        let cfg = match cfg {
            Ok(c) => c,
            Err(e) => {
                cleanup();
                return Err(e);
            }
        };
        let mut process = cfg["process"].clone();
        process["args"] = serde_json::json!(args);
        process["terminal"] = serde_json::json!(true);
        process["consoleSize"] = serde_json::json!({"height": rows, "width": cols});
        if let Some(list) = process["env"].as_array_mut() {
            list.extend(env.iter().map(|e| serde_json::json!(e)));
        }
        if let Err(e) = std::fs::write(&process_file, process.to_string()) {
            cleanup();
            return Err(Error::Io {
                context: format!("writing {}", process_file.display()),
                source: e,
            });
        }
        let mut child = self
            .command()
            .args(["exec", "--detach", "--console-socket"])
            .arg(&sock_path)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--process")
            .arg(&process_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ctx(|| format!("starting runc exec --tty in {id}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let terminal = loop {
            match listener.accept() {
                Ok((conn, _)) => {
                    conn.set_nonblocking(false).ctx(|| "console socket")?;
                    conn.set_read_timeout(Some(Duration::from_secs(10)))
                        .ctx(|| "console socket")?;
                    break sys::recv_fd(&conn).ctx(|| "receiving the pty from runc")?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(st) = child.try_wait().ctx(|| "waiting for runc exec")? {
                        let mut err = String::new();
                        if let Some(mut e) = child.stderr.take() {
                            let _ = e.read_to_string(&mut err);
                        }
                        cleanup();
                        return Err(Error::Runc {
                            args: format!("exec --tty {id}"),
                            code: st.code(),
                            stderr: err.trim().to_string(),
                        });
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        cleanup();
                        return Err(Error::Timeout {
                            what: format!("runc exec --tty in {id} to send its terminal"),
                            secs: 10.0,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    cleanup();
                    return Err(Error::Io {
                        context: "accepting on the console socket".into(),
                        source: e,
                    });
                }
            }
        };
        let out = child.wait_with_output().ctx(|| "waiting for runc exec")?;
        if !out.status.success() {
            cleanup();
            return Err(Error::Runc {
                args: format!("exec --tty {id}"),
                code: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ctx(|| format!("reading {}", pid_file.display()))?
            .trim()
            .parse()
            .map_err(|_| Error::Runc {
                args: format!("exec --tty {id}"),
                code: None,
                stderr: "bad pid file".into(),
            })?;
        cleanup();
        let _ = sys::set_winsize(&terminal, cols, rows);
        let exit = Arc::new(ExitCell::default());
        let cell = exit.clone();
        std::thread::Builder::new()
            .name(format!("reap-exec-{pid}"))
            .spawn(move || {
                let code = sys::wait_pid(pid).ok();
                cell.set(Exited { code });
            })
            .ctx(|| "spawning the exec reaper")?;
        Ok(TtyExec {
            terminal: std::fs::File::from(terminal),
            pid,
            exit,
        })
    }
}

/// The `error`-level messages of a runc JSON log, joined.
fn runc_log_errors(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let msgs: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .collect();
    (!msgs.is_empty()).then(|| msgs.join("; "))
}
