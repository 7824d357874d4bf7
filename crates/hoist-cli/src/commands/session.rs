//! Shared by `hoist up` and `hoist ci`: choosing the cluster (starting the embedded
//! one when it is the choice and not running), and showing the session.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use hoist_cluster::daemon;
use hoist_config::Project;
use hoist_engine::{Session, Stamped, view};
use hoist_kube::{ClusterTarget, KubeError, Locality, TargetOptions};
use hoist_oci::{StopSignal, StopSignals};
use miette::{IntoDiagnostic, miette};
use tokio::sync::broadcast::error::RecvError;

/// Options every session command shares.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// Kubeconfig context to use (overrides the project's `cluster:` setting).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default `<project>-<developer>`).
    #[arg(short = 'n', long, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Do not start the embedded cluster when it is the choice and not running.
    #[arg(long)]
    pub no_start: bool,
}

/// The embedded cluster's data dir (`HOIST_CLUSTER_DIR`, else the default).
pub fn cluster_dir() -> Option<PathBuf> {
    std::env::var_os("HOIST_CLUSTER_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(daemon::default_data_dir)
}

fn embedded_running() -> bool {
    cluster_dir().is_some_and(|d| daemon::running_pid(&d).is_some())
}

/// Starts the embedded cluster with the same code as `hoist cluster up` (a child
/// `hoist cluster up`), its messages going to stderr.
fn start_embedded() -> miette::Result<()> {
    eprintln!("hoist: starting the embedded cluster (stop it with `hoist cluster down`)");
    let exe = std::env::current_exe().into_diagnostic()?;
    // A free port: a fixed one may be taken, and the kubeconfig gets the address.
    let out = Command::new(exe)
        .args(["cluster", "up", "--port", "0"])
        .stdin(Stdio::null())
        .output()
        .into_diagnostic()?;
    let _ = std::io::stderr().write_all(&out.stdout);
    let _ = std::io::stderr().write_all(&out.stderr);
    if !out.status.success() {
        return Err(miette!(
            help = "see `hoist cluster logs`",
            "could not start the embedded cluster ({})",
            out.status
        ));
    }
    Ok(())
}

/// What the project and the command line say about the target cluster and namespace.
pub fn target_options(
    project: &Project,
    context: Option<String>,
    namespace: Option<String>,
) -> TargetOptions {
    TargetOptions {
        context,
        allowed_contexts: project.config.allowed_contexts.clone(),
        project: project.config.name.clone(),
        namespace,
        ..Default::default()
    }
    .with_cluster_setting(project.cluster())
}

/// [`resolve_target`] on a blocking thread, for async commands: it may start the embedded
/// cluster (a child process, then a wait), which must not hold a runtime worker.
pub async fn resolve_target_off_runtime(
    project: Project,
    args: &TargetArgs,
) -> miette::Result<(ClusterTarget, Project)> {
    let args = args.clone();
    let (target, project) = tokio::task::spawn_blocking(move || {
        let target = resolve_target(&project, &args);
        (target, project)
    })
    .await
    .into_diagnostic()?;
    Ok((target?, project))
}

/// The cluster to use: `--context` > project/settings `cluster:` > current context if
/// allowed > the embedded cluster, which is started when chosen and not running.
pub fn resolve_target(project: &Project, args: &TargetArgs) -> miette::Result<ClusterTarget> {
    let opts = target_options(project, args.context.clone(), args.namespace.clone());
    let explicit = opts.context.is_some() || opts.project_context.is_some();
    let wants_embedded = opts.context.as_deref().or(opts.project_context.as_deref())
        == Some(hoist_kube::target::EMBEDDED_CONTEXT);
    let first = ClusterTarget::from_options(&opts);
    let start = match &first {
        Ok(t) => t.locality == Locality::Embedded && !embedded_running(),
        // No kubeconfig, no `hoist` context, or only a refused current context: the
        // embedded cluster is the fallback, unless a context was named.
        Err(KubeError::NoEmbeddedContext) => true,
        Err(KubeError::Kubeconfig(_)) | Err(KubeError::RemoteContextRefused { .. }) => {
            !explicit || wants_embedded
        }
        Err(_) => false,
    };
    if !start {
        return first.into_diagnostic();
    }
    if args.no_start {
        return Err(miette!(
            help = "start it with `hoist cluster up`, or drop --no-start",
            "the embedded cluster is not running"
        ));
    }
    start_embedded()?;
    ClusterTarget::from_options(&opts).into_diagnostic()
}

/// Run a session command's `work` on a runtime of its own, with Ctrl-C and SIGTERM ours
/// rather than the default handler's: the first one cancels whatever is under way
/// (builds, applies, waits, forwards, logs, test steps) and gives `Err(signal)`; a second
/// ends the process at once. Every event is printed before the stop summary, which is
/// printed while a second signal still works (should stdout not be read); `interrupted`
/// says whether the stop was an interruption (exit 130, or 143 for SIGTERM) or the usual
/// end of watching. Blocking work under way (a store write, the embedded cluster
/// starting) gets 5 s to finish its step.
pub fn run_interruptible<T>(
    session: &Session,
    display: Display,
    work: impl std::future::Future<Output = T>,
    interrupted: impl FnOnce() -> bool,
) -> miette::Result<Result<T, StopSignal>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    let mut stop = {
        let _rt = rt.enter();
        StopSignals::install().into_diagnostic()?
    };
    let res = rt.block_on(async {
        let printer = spawn_printer(session, display);
        let res = tokio::select! {
            r = work => Ok(r),
            by = stop.recv() => Err(by),
        };
        if res.is_err() {
            exit_on_second_signal(stop);
        }
        printer.finish().await;
        if res.is_err() {
            report_stop(session, display, interrupted());
        }
        res
    });
    // What was cancelled is dropped with the runtime.
    rt.shutdown_timeout(Duration::from_secs(5));
    Ok(res)
}

/// Once a first stop signal is being handled, a second one ends the process at once: for
/// when stopping cleanly takes too long (e.g. output to a reader that stopped reading).
fn exit_on_second_signal(mut stop: StopSignals) {
    tokio::spawn(async move {
        let by = stop.recv().await;
        eprintln!("hoist: interrupted again; exiting now");
        std::process::exit(by.exit_code().into());
    });
}

/// Says how far each service got when Ctrl-C ended the session (on stderr; with
/// `-o json` also as the last event on stdout: `{"type": "interrupted"|"stopped",
/// "ready": [...], "not_ready": {"svc": "how far"}}`).
fn report_stop(session: &Session, display: Display, interrupted: bool) {
    let state = session.snapshot();
    if display == Display::Json {
        let (ready, not_ready) = view::how_far(&state);
        let not_ready: serde_json::Map<String, serde_json::Value> = not_ready
            .into_iter()
            .map(|(n, p)| (n.to_string(), p.into()))
            .collect();
        let doc = serde_json::json!({
            "type": if interrupted { "interrupted" } else { "stopped" },
            "ready": ready,
            "not_ready": not_ready,
        });
        outln!("{doc}");
    }
    eprintln!("{}", view::stopped_summary(&state, interrupted));
}

/// How the session is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Redrawn status table pinned under the streamed logs (a terminal).
    Live,
    /// One line per event and log line.
    Stream,
    /// One JSON event per line.
    Json,
}

impl Display {
    pub fn choose(json: bool, stream: bool) -> Display {
        if json {
            Display::Json
        } else if stream || !std::io::stdout().is_terminal() {
            Display::Stream
        } else {
            Display::Live
        }
    }
}

/// The task printing a session; [`Printer::finish`] prints what is pending and stops.
pub struct Printer {
    handle: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    writer: std::thread::JoinHandle<()>,
}

impl Printer {
    /// Prints everything emitted so far (the last table stays on screen) and waits
    /// until it is written.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
        // The task has dropped its sender: the writer ends once the queue is written.
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
}

/// Chunks of output queued for the writer thread.
const WRITE_QUEUE: usize = 1024;

enum Chunk {
    Out(Vec<u8>),
    Err(String),
}

/// The thread that writes the session's output, in the order queued. Writing to stdout
/// blocks when its reader is slow (a pipe nobody drains); on a thread of its own that
/// never holds up a runtime worker: the printer awaits room in the queue instead.
fn start_writer(
    mut out: Box<dyn Write + Send>,
) -> (
    tokio::sync::mpsc::Sender<Chunk>,
    std::thread::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(WRITE_QUEUE);
    let thread = std::thread::Builder::new()
        .name("hoist-output".into())
        .spawn(move || {
            let write = |c: Chunk, out: &mut Box<dyn Write + Send>| match c {
                // A closed stdout (EPIPE) is not an error of the session.
                Chunk::Out(b) => {
                    let _ = out.write_all(&b);
                }
                Chunk::Err(s) => eprintln!("{s}"),
            };
            while let Some(c) = rx.blocking_recv() {
                write(c, &mut out);
                // One flush per burst.
                while let Ok(c) = rx.try_recv() {
                    write(c, &mut out);
                }
                let _ = out.flush();
            }
        })
        .expect("spawning the output thread");
    (tx, thread)
}

/// Prints the session's events to stdout until [`Printer::finish`]. In `Live` mode
/// the table is redrawn at most every 100 ms.
pub fn spawn_printer(session: &Session, display: Display) -> Printer {
    let tty = std::io::stdout().is_terminal();
    spawn_printer_to(session, display, Box::new(std::io::stdout()), tty)
}

/// [`spawn_printer`] to any output; `tty`: it is a terminal (colours in `Stream`).
fn spawn_printer_to(
    session: &Session,
    display: Display,
    out: Box<dyn Write + Send>,
    tty: bool,
) -> Printer {
    let mut rx = session.subscribe();
    let session = session.clone();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, writer) = start_writer(out);
    let handle = tokio::spawn(async move {
        let colour = display == Display::Live || (display == Display::Stream && tty);
        let mut drawn = 0usize; // lines of the table currently on screen
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut dirty = false;
        let mut finishing = false;
        let mut last_draw = std::time::Instant::now();
        loop {
            let mut out = Vec::new();
            tokio::select! {
                biased;
                _ = &mut stopped, if !finishing => finishing = true,
                ev = rx.recv() => {
                    let ev: Arc<Stamped> = match ev {
                        Ok(ev) => ev,
                        Err(RecvError::Lagged(n)) => {
                            let msg = format!("hoist: display fell behind, {n} event(s) not shown");
                            let _ = tx.send(Chunk::Err(msg)).await;
                            continue;
                        }
                        Err(RecvError::Closed) => break,
                    };
                    match display {
                        Display::Json => {
                            if let Ok(s) = serde_json::to_string(&*ev) {
                                let _ = writeln!(out, "{s}");
                            }
                        }
                        Display::Stream => {
                            if let Some(l) = view::event_line(&ev, width(&session), colour) {
                                let _ = writeln!(out, "{l}");
                            }
                        }
                        Display::Live => {
                            // Logs and notable events scroll above the table.
                            if let Some(l) = view::event_line(&ev, width(&session), colour) {
                                clear(&mut out, &mut drawn);
                                let _ = writeln!(out, "{l}");
                            }
                            dirty = true;
                        }
                    }
                }
                _ = std::future::ready(()), if finishing => {
                    // Everything emitted before `finish` has been queued; the last
                    // table stays on screen.
                    if display == Display::Live {
                        clear(&mut out, &mut drawn);
                        draw(&mut out, &session, colour);
                    }
                    if !out.is_empty() {
                        let _ = tx.send(Chunk::Out(out)).await;
                    }
                    break;
                }
                _ = tick.tick(), if display == Display::Live => {
                    // Redraw on change, and each second for the "ago" column.
                    if dirty || drawn == 0 || last_draw.elapsed() >= Duration::from_secs(1) {
                        clear(&mut out, &mut drawn);
                        drawn = draw(&mut out, &session, colour);
                        last_draw = std::time::Instant::now();
                        dirty = false;
                    }
                }
            }
            if !out.is_empty() {
                // Waits (without blocking a worker) while the writer is behind.
                let _ = tx.send(Chunk::Out(out)).await;
            }
        }
    });
    Printer {
        handle,
        stop,
        writer,
    }
}

/// Prints the status table; returns its height in lines.
fn draw(out: &mut impl Write, session: &Session, colour: bool) -> usize {
    let table = session.read(|s| view::status_table(s, 0, colour));
    let _ = writeln!(out, "{}", "─".repeat(60));
    for l in &table {
        let _ = writeln!(out, "{l}");
    }
    table.len() + 1
}

fn clear(out: &mut impl Write, drawn: &mut usize) {
    if *drawn > 0 {
        // Up to the table's first line, then erase to the end of the screen.
        let _ = write!(out, "\x1b[{}F\x1b[J", *drawn);
        *drawn = 0;
    }
}

fn width(session: &Session) -> usize {
    session.read(|s| s.services.keys().map(String::len).max().unwrap_or(4))
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use hoist_engine::Event;

    use super::*;

    /// An output whose writes block until it is opened: a pipe nobody reads.
    #[derive(Clone, Default)]
    struct Stalled {
        open: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Stalled {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
    }

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.open;
            let _open = cv.wait_while(lock.lock().unwrap(), |open| !*open).unwrap();
            self.written.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_never_blocks_the_runtime_and_keeps_the_order() {
        let out = Stalled::default();
        let (said, heard) = std::sync::mpsc::channel::<&str>();
        let sink = out.clone();
        let runner = std::thread::spawn(move || {
            // One thread for everything: a blocking write in a task would stop it all.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(async {
                let session = Session::new();
                let printer =
                    spawn_printer_to(&session, Display::Json, Box::new(sink.clone()), false);
                for i in 0..200 {
                    session.emit(Event::Error {
                        service: None,
                        error: format!("e{i}"),
                    });
                    tokio::task::yield_now().await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                said.send("runtime alive").unwrap();
                sink.open();
                printer.finish().await;
                said.send("finished").unwrap();
            });
        });
        let wait = |what| {
            heard
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no `{what}`: the runtime is blocked"))
        };
        assert_eq!(wait("runtime alive"), "runtime alive");
        assert_eq!(wait("finished"), "finished");
        runner.join().unwrap();
        let text = String::from_utf8(out.written.lock().unwrap().clone()).unwrap();
        let errors: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["error"].as_str().unwrap().to_string()
            })
            .collect();
        let want: Vec<String> = (0..200).map(|i| format!("e{i}")).collect();
        assert_eq!(errors, want);
    }
}
