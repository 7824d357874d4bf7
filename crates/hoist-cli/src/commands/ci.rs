//! `hoist ci [SERVICE…]`: one pass without watching. Builds, deploys and waits for
//! every service to be ready (Jobs complete), runs the project's `tests:`, prints a
//! summary table, exits 0 or 1. A service that is not ready is explained (events,
//! exit codes, last log lines), never an opaque timeout.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use hoist_engine::state::TestResult;
use hoist_engine::{Engine, EngineOptions, Session, UpReport, ci};
use miette::{IntoDiagnostic, miette};

use super::project::{SetArgs, load};
use super::session::{Display, TargetArgs, resolve_target_off_runtime, run_interruptible};
use crate::cli::GlobalOpts;
use crate::output::StreamFormat;

#[derive(Debug, Args)]
pub struct CiArgs {
    /// Services to bring up (and what they depend on); default: every enabled service.
    pub services: Vec<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Give up after this long (`90s`, `10m`, `1h`); what is not ready is explained.
    #[arg(long, default_value = "30m", value_name = "DURATION")]
    pub timeout: String,
    /// Builds at once.
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Skip the project's test steps.
    #[arg(long)]
    pub no_tests: bool,
    /// Output: text (progress lines and a summary table) or json (one event per line,
    /// then a summary object).
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub format: StreamFormat,
    #[command(flatten)]
    pub set: SetArgs,
}

pub fn run(args: CiArgs, g: &GlobalOpts) -> miette::Result<ExitCode> {
    let timeout = hoist_config::parse_duration(&args.timeout)
        .map_err(|e| miette!(help = "e.g. --timeout 90s, 10m, 1h", "--timeout: {e}"))?;
    let json = args.format == StreamFormat::Json;
    let display = Display::choose(json, true);
    let session = Session::new();
    let res = run_interruptible(
        &session,
        display,
        ci_run(&args, g, timeout, &session),
        || true,
    )?;
    let res = match res {
        Ok(r) => r,
        Err(by) => return Ok(ExitCode::from(by.exit_code())),
    };
    let (report, tests) = res?;
    let state = session.snapshot();
    let ok = report.all_ready() && tests.iter().all(|t| t.ok);
    if json {
        let doc = serde_json::json!({
            "type": "summary",
            "ok": ok,
            "services": report.outcomes,
            "pruned": report.pruned,
            "tests": tests,
        });
        outln!("{doc}");
    } else {
        outln!("\n{}", ci::summary(&state, &report, &tests));
        outln!(
            "{}",
            if ok {
                "hoist ci: everything is ready and every test passed"
            } else {
                "hoist ci: FAILED"
            }
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One pass and the test steps.
async fn ci_run(
    args: &CiArgs,
    g: &GlobalOpts,
    timeout: std::time::Duration,
    session: &Session,
) -> miette::Result<(UpReport, Vec<TestResult>)> {
    let project = load(g, &args.set)?;
    let problems = project.validate();
    if !problems.is_empty() {
        return Err(hoist_config::ConfigErrors(problems).into());
    }
    let (target, mut project) = resolve_target_off_runtime(project, &args.target).await?;
    let mut opts = EngineOptions {
        registry: hoist_oci::client::ClientOptions::from_env().into_diagnostic()?,
        ready_timeout: timeout,
        fail_fast: true,
        // Test steps reach the services through the forwards; logs would be noise.
        forwards: true,
        logs: false,
        ..Default::default()
    };
    if let Some(n) = args.parallel {
        opts.parallelism = n.max(1);
    }
    let engine = Engine::connect(target, &mut project, session.clone(), opts)
        .await
        .into_diagnostic()?;
    let project = Arc::new(project);
    let report = engine
        .up(project.clone(), &args.services)
        .await
        .into_diagnostic()?;
    if report.all_ready() && !args.no_tests {
        wait_forwards(session).await;
    }
    let tests = if report.all_ready() && !args.no_tests {
        ci::run_tests(session, &project.root, &project.config.tests).await
    } else {
        Vec::new()
    };
    engine.detach_all();
    Ok((report, tests))
}

/// Waits (bounded) until every port-forward has found a pod, so the first test
/// connection does not race the forward's start-up.
async fn wait_forwards(session: &Session) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let all = session.read(|s| {
            s.services
                .values()
                .flat_map(|svc| svc.ports.iter())
                .all(|p| p.connected)
        });
        if all {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
