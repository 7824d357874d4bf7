//! `hoist up [SERVICE…]`: build, deliver, apply and wait for every service (and what
//! it depends on), then port-forwards and logs; keeps running (watching) unless
//! `--once`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use hoist_engine::{Engine, EngineOptions, Event, Session, devloop};
use hoist_watch::{DevLoopInput, WatchOptions};
use miette::{IntoDiagnostic, miette};

use super::project::{SetArgs, load};
use super::session::{
    Display, TargetArgs, cluster_dir, resolve_target_off_runtime, run_interruptible,
};
use crate::cli::GlobalOpts;
use crate::output::StreamFormat;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Services to bring up (and what they depend on); default: every enabled service.
    pub services: Vec<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// One pass: bring everything up, wait for readiness, exit (0 when all ready).
    #[arg(long)]
    pub once: bool,
    /// Plain lines (events and logs) instead of the live status table.
    #[arg(long)]
    pub stream: bool,
    /// How long each service may take to become ready (`90s`, `5m`).
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub timeout: String,
    /// Builds at once.
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Output: text, or json (one event per line).
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub format: StreamFormat,
    #[command(flatten)]
    pub set: SetArgs,
}

pub fn run(args: UpArgs, g: &GlobalOpts) -> miette::Result<ExitCode> {
    let timeout = hoist_config::parse_duration(&args.timeout)
        .map_err(|e| miette!(help = "e.g. --timeout 90s, 5m", "--timeout: {e}"))?;
    let display = Display::choose(args.format == StreamFormat::Json, args.stream || args.once);
    let session = Session::new();
    let watching = AtomicBool::new(false);
    // Ctrl-C or SIGTERM before watching starts is an interruption (exit 130 or 143);
    // after, the usual end.
    let res = run_interruptible(
        &session,
        display,
        session_run(&args, g, timeout, &session, &watching),
        || !watching.load(Ordering::SeqCst),
    )?;
    match res {
        Ok(r) => r.map(|(code, note)| {
            // After the printer: the note comes after every event line.
            if let Some(note) = note {
                eprintln!("{note}");
            }
            code
        }),
        Err(_) if watching.load(Ordering::SeqCst) => Ok(ExitCode::SUCCESS),
        Err(by) => Ok(ExitCode::from(by.exit_code())),
    }
}

/// The session, from loading the project to the end of watching (or of one pass):
/// the exit code and what to say on stderr once the printer is done.
async fn session_run(
    args: &UpArgs,
    g: &GlobalOpts,
    timeout: Duration,
    session: &Session,
    watching: &AtomicBool,
) -> miette::Result<(ExitCode, Option<String>)> {
    let project = load(g, &args.set)?;
    if args.once {
        // One pass needs a whole project; watching reports broken services and goes on.
        let problems = project.validate();
        if !problems.is_empty() {
            return Err(hoist_config::ConfigErrors(problems).into());
        }
    }
    let overrides = args.set.overrides()?;
    let (target, mut project) = resolve_target_off_runtime(project, &args.target).await?;
    let mut opts = EngineOptions {
        registry: hoist_oci::client::ClientOptions::from_env().into_diagnostic()?,
        ready_timeout: timeout,
        fail_fast: true,
        forwards: !args.once,
        logs: !args.once,
        cluster_data_dir: cluster_dir(),
        ..Default::default()
    };
    if let Some(n) = args.parallel {
        opts.parallelism = n.max(1);
    }
    let root = project.root.clone();
    let engine = Engine::connect(target, &mut project, session.clone(), opts)
        .await
        .into_diagnostic()?;
    if args.once {
        let report = engine
            .up(Arc::new(project), &args.services)
            .await
            .into_diagnostic()?;
        if report.all_ready() {
            return Ok((ExitCode::SUCCESS, None));
        }
        let summary = hoist_engine::ci::summary(&session.snapshot(), &report, &[]);
        return Ok((ExitCode::FAILURE, Some(format!("\n{summary}"))));
    }
    drop(project);
    let (input, first) = DevLoopInput::start(&root, overrides, WatchOptions::default())
        .await
        .map_err(|e| miette!("{e}"))?;
    if let Err(e) = devloop::first_pass(&engine, &first, &args.services).await {
        session.emit(Event::Error {
            service: None,
            error: e.to_string(),
        });
    }
    drop(first);
    // From here on Ctrl-C or SIGTERM is the normal end of a session (exit 0); the caller
    // stops it.
    watching.store(true, Ordering::SeqCst);
    devloop::watch(engine.clone(), input, args.services.clone()).await;
    engine.detach_all();
    let note =
        "hoist: the watcher stopped; the services keep running (remove them with `hoist down`)";
    Ok((ExitCode::SUCCESS, Some(note.into())))
}
