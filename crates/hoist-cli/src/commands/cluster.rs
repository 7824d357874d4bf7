//! `hoist cluster up|down|status|kubeconfig|logs` (and the hidden `serve`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use hoist_cluster::{ServerConfig, daemon, kubeconfig, tls::Pki};
use miette::{IntoDiagnostic, miette};

use crate::cli::GlobalOpts;
use crate::output::OutputFormat;

#[derive(Debug, Args, Clone)]
pub struct DataDirArg {
    /// Where the cluster keeps its state, certificates and log
    /// [default: $XDG_DATA_HOME/hoist/cluster or ~/.local/share/hoist/cluster].
    #[arg(long, value_name = "DIR", env = "HOIST_CLUSTER_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArg {
    fn resolve(&self) -> miette::Result<PathBuf> {
        self.data_dir
            .clone()
            .or_else(daemon::default_data_dir)
            .ok_or_else(|| miette!("cannot find a data directory: set --data-dir or HOME"))
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Address to listen on (loopback only unless --allow-non-loopback).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Allow a non-loopback listen address (exposes the cluster to the network).
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Run in this terminal instead of in the background.
    #[arg(long)]
    pub foreground: bool,
    /// Do not write the `hoist` context into the kubeconfig.
    #[arg(long)]
    pub no_kubeconfig: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Keep printing new log lines.
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start the embedded cluster (in the background) and add the `hoist` kubeconfig context.
    Up(UpArgs),
    /// Stop the cluster (state is kept).
    Down(DataDirArg),
    /// Is the cluster running, where, and is it healthy.
    Status(StatusArgs),
    /// Print a kubeconfig for the cluster.
    Kubeconfig(DataDirArg),
    /// Print the server log.
    Logs(LogsArgs),
    /// Run the API server in this process (used by `up`).
    #[command(hide = true)]
    Serve(UpArgs),
}

pub fn run(cmd: ClusterCommand, _g: &GlobalOpts) -> miette::Result<ExitCode> {
    match cmd {
        ClusterCommand::Up(a) => up(a),
        ClusterCommand::Down(d) => down(&d.resolve()?),
        ClusterCommand::Status(a) => status(&a.dir.resolve()?, a.output),
        ClusterCommand::Kubeconfig(d) => print_kubeconfig(&d.resolve()?),
        ClusterCommand::Logs(a) => logs(&a.dir.resolve()?, a.follow),
        ClusterCommand::Serve(a) => serve(a),
    }
}

fn server_url(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

fn serve(a: UpArgs) -> miette::Result<ExitCode> {
    let data_dir = a.dir.resolve()?;
    let cfg = ServerConfig {
        data_dir,
        addr: SocketAddr::new(a.address, a.port),
        allow_non_loopback: a.allow_non_loopback,
    };
    daemon::serve_blocking(cfg, |addr, _| {
        tracing::info!("serving on {}", server_url(addr))
    })
    .into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}

fn up(a: UpArgs) -> miette::Result<ExitCode> {
    let data_dir = a.dir.resolve()?;
    if !a.address.is_loopback() {
        if !a.allow_non_loopback {
            return Err(miette!(
                help = "the dev cluster is meant for this machine only; pass --allow-non-loopback if you really want to expose it",
                "refusing to listen on {}: only loopback addresses (127.0.0.0/8, ::1) are allowed",
                a.address
            ));
        }
        eprintln!("warning: listening on non-loopback address {}", a.address);
    }
    if let Some(pid) = daemon::running_pid(&data_dir) {
        let addr = daemon::recorded_addr(&data_dir)
            .map(server_url)
            .unwrap_or_default();
        outln!("The hoist cluster is already running (pid {pid}) at {addr}.");
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&data_dir).into_diagnostic()?;
    let write_kubeconfig = !a.no_kubeconfig;
    if a.foreground {
        let cfg = ServerConfig {
            data_dir: data_dir.clone(),
            addr: SocketAddr::new(a.address, a.port),
            allow_non_loopback: a.allow_non_loopback,
        };
        daemon::serve_blocking(cfg, |addr, pki| {
            announce(addr, pki, write_kubeconfig);
        })
        .into_diagnostic()?;
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    daemon::remove_run_files(&data_dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(daemon::log_file(&data_dir))
        .into_diagnostic()?;
    let exe = std::env::current_exe().into_diagnostic()?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "cluster",
        "serve",
        "--address",
        &a.address.to_string(),
        "--port",
        &a.port.to_string(),
        "--data-dir",
    ])
    .arg(&data_dir)
    .env(
        "HOIST_LOG",
        std::env::var("HOIST_LOG").unwrap_or_else(|_| "info".into()),
    )
    .stdin(Stdio::null())
    .stdout(log.try_clone().into_diagnostic()?)
    .stderr(log);
    if a.allow_non_loopback {
        cmd.arg("--allow-non-loopback");
    }
    {
        use std::os::unix::process::CommandExt;
        // Own session: the server outlives the terminal that started it.
        unsafe {
            cmd.pre_exec(|| {
                libc_setsid();
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().into_diagnostic()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Some(addr) = daemon::recorded_addr(&data_dir) {
            break addr;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(miette!(
                help = format!("see the log: {}", daemon::log_file(&data_dir).display()),
                "the cluster server exited during start-up ({status})"
            ));
        }
        if Instant::now() > deadline {
            return Err(miette!("the cluster server did not start within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let pki = Pki::load_or_generate(&data_dir.join("pki")).into_diagnostic()?;
    if !daemon::wait_ready(addr, &pki, deadline) {
        return Err(miette!(
            help = format!("see the log: {}", daemon::log_file(&data_dir).display()),
            "the cluster server at {addr} did not become ready"
        ));
    }
    announce(addr, &pki, write_kubeconfig);
    outln!(
        "Ready in {} ms (pid {}). Stop it with `hoist cluster down`.",
        started.elapsed().as_millis(),
        child.id()
    );
    if let Some(why) = daemon::pods_cannot_run() {
        eprintln!("warning: the API serves, but pods will not run: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

fn libc_setsid() {
    // SAFETY: setsid has no preconditions; called in the child between fork and exec.
    unsafe {
        hoist_cluster_setsid();
    }
}

unsafe extern "C" {
    #[link_name = "setsid"]
    fn hoist_cluster_setsid() -> i32;
}

fn announce(addr: SocketAddr, pki: &Pki, write_kubeconfig: bool) {
    outln!("The hoist cluster is serving at {}.", server_url(addr));
    if !write_kubeconfig {
        return;
    }
    match kubeconfig::target_path() {
        Some(path) => match kubeconfig::write_merged(&path, &server_url(addr), pki) {
            Ok(()) => outln!(
                "Kubeconfig context `{}` written to {} (now current). Try: kubectl get ns",
                kubeconfig::CONTEXT,
                path.display()
            ),
            Err(e) => eprintln!("warning: {e}"),
        },
        None => eprintln!(
            "warning: no kubeconfig path (set KUBECONFIG or HOME); use `hoist cluster kubeconfig`"
        ),
    }
}

fn down(data_dir: &Path) -> miette::Result<ExitCode> {
    let clean = match daemon::running_pid(data_dir) {
        Some(pid) => {
            let clean = daemon::stop(pid, Duration::from_secs(10));
            daemon::remove_run_files(data_dir);
            if clean {
                outln!("Stopped the hoist cluster (pid {pid}).");
            } else {
                outln!("The hoist cluster (pid {pid}) did not stop within 10 s and was killed.");
            }
            clean
        }
        None => {
            daemon::remove_run_files(data_dir);
            outln!("The hoist cluster is not running.");
            false
        }
    };
    // A killed or crashed server leaves its containers running: remove them here.
    if !clean && hoist_cluster::kubelet::check_host().is_ok() {
        match hoist_cluster::kubelet::remove_leftovers(data_dir) {
            Ok(c) if !c.containers.is_empty() || !c.namespaces.is_empty() => outln!(
                "Removed what it left behind: {} container(s), {} network namespace(s).",
                c.containers.len(),
                c.namespaces.len()
            ),
            Ok(_) => {}
            Err(e) => {
                return Err(miette!(
                    help = "run `hoist cluster down` again, or `hoist cluster up` (start-up removes leftovers)",
                    "the cluster's containers could not all be removed: {e}"
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status(data_dir: &Path, output: OutputFormat) -> miette::Result<ExitCode> {
    let pid = daemon::running_pid(data_dir);
    let addr = pid.and(daemon::recorded_addr(data_dir));
    let healthy = match (addr, Pki::load_or_generate(&data_dir.join("pki")).ok()) {
        (Some(addr), Some(pki)) if pid.is_some() => {
            matches!(
                daemon::probe(addr, &pki, "/readyz", Duration::from_secs(2)),
                Ok((200, _))
            )
        }
        _ => false,
    };
    match output.document() {
        Some(doc) => {
            let v = serde_json::json!({
                "running": pid.is_some(),
                "pid": pid,
                "server": addr.map(server_url),
                "healthy": healthy,
                "dataDir": data_dir,
            });
            doc.print(&v)?;
        }
        None => match (pid, addr) {
            (Some(pid), Some(addr)) => outln!(
                "running  pid {pid}  {}  {}\ndata dir {}",
                server_url(addr),
                if healthy { "healthy" } else { "NOT ready" },
                data_dir.display()
            ),
            _ => outln!("not running (data dir {})", data_dir.display()),
        },
    }
    Ok(if pid.is_some() && healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn print_kubeconfig(data_dir: &Path) -> miette::Result<ExitCode> {
    let Some(addr) = daemon::recorded_addr(data_dir) else {
        return Err(miette!(
            help = "start it with `hoist cluster up`",
            "the hoist cluster is not running"
        ));
    };
    let pki = Pki::load_or_generate(&data_dir.join("pki")).into_diagnostic()?;
    out!("{}", kubeconfig::standalone(&server_url(addr), &pki));
    Ok(ExitCode::SUCCESS)
}

fn logs(data_dir: &Path, follow: bool) -> miette::Result<ExitCode> {
    let path = daemon::log_file(data_dir);
    let mut f = std::fs::File::open(&path).map_err(|e| {
        miette!(
            help = "has the cluster been started with `hoist cluster up`?",
            "cannot open {}: {e}",
            path.display()
        )
    })?;
    // A reader that goes away (`| head`) ends the command, quietly.
    let emit = |buf: &[u8]| crate::output::to_stdout(|out| out.write_all(buf));
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).into_diagnostic()?;
    if !emit(&buf) || !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut pos = f.stream_position().into_diagnostic()?;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // truncated
        }
        if len > pos {
            f.seek(SeekFrom::Start(pos)).into_diagnostic()?;
            buf.clear();
            f.read_to_end(&mut buf).into_diagnostic()?;
            if !emit(&buf) {
                return Ok(ExitCode::SUCCESS);
            }
            pos = f.stream_position().into_diagnostic()?;
        }
    }
}
