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
}

impl Printer {
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
    }
}

/// Prints the session's events until [`Printer::finish`]. In `Live` mode the table
/// is redrawn at most every 100 ms.
pub fn spawn_printer(session: &Session, display: Display) -> Printer {
    let mut rx = session.subscribe();
    let session = session.clone();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let colour = display == Display::Live
            || (display == Display::Stream && std::io::stdout().is_terminal());
        let mut drawn = 0usize; // lines of the table currently on screen
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut dirty = false;
        let mut finishing = false;
        let mut last_draw = std::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped, if !finishing => finishing = true,
                ev = rx.recv() => {
                    let ev: Arc<Stamped> = match ev {
                        Ok(ev) => ev,
                        Err(RecvError::Lagged(n)) => {
                            eprintln!("hoist: display fell behind, {n} event(s) not shown");
                            continue;
                        }
                        Err(RecvError::Closed) => break,
                    };
                    let mut out = std::io::stdout().lock();
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
                    let _ = out.flush();
                }
                _ = std::future::ready(()), if finishing => {
                    // Everything emitted before `finish` has been printed; the last
                    // table stays on screen.
                    if display == Display::Live {
                        let mut out = std::io::stdout().lock();
                        clear(&mut out, &mut drawn);
                        draw(&mut out, &session, colour);
                    }
                    break;
                }
                _ = tick.tick(), if display == Display::Live => {
                    // Redraw on change, and each second for the "ago" column.
                    if dirty || drawn == 0 || last_draw.elapsed() >= Duration::from_secs(1) {
                        let mut out = std::io::stdout().lock();
                        clear(&mut out, &mut drawn);
                        drawn = draw(&mut out, &session, colour);
                        last_draw = std::time::Instant::now();
                        dirty = false;
                    }
                }
            }
        }
    });
    Printer { handle, stop }
}

/// Prints the status table; returns its height in lines.
fn draw(out: &mut impl Write, session: &Session, colour: bool) -> usize {
    let table = session.read(|s| view::status_table(s, 0, colour));
    let _ = writeln!(out, "{}", "─".repeat(60));
    for l in &table {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
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
