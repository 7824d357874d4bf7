//! `hoist ci`'s test steps (run on the host once everything is ready) and the
//! summary table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use hoist_config::TestStep;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::pipeline::{Outcome, UpReport};
use crate::state::{Event, Phase, Session, State, TestResult};

/// Output lines kept per test for the summary.
const TAIL: usize = 20;

/// `HOIST_<SERVICE>_<PORT>_ADDR=127.0.0.1:N` (service and port name upper-cased,
/// `-` → `_`) for every open port-forward, plus `HOIST_NAMESPACE`/`HOIST_CONTEXT`.
pub fn test_env(state: &State) -> BTreeMap<String, String> {
    let up = |s: &str| s.to_ascii_uppercase().replace(['-', '.'], "_");
    let mut env = BTreeMap::new();
    env.insert("HOIST_NAMESPACE".into(), state.namespace.clone());
    env.insert("HOIST_CONTEXT".into(), state.context.clone());
    for (name, svc) in &state.services {
        for p in &svc.ports {
            let port = if p.name.is_empty() {
                p.remote.to_string()
            } else {
                up(&p.name)
            };
            env.insert(format!("HOIST_{}_{}_ADDR", up(name), port), p.local.clone());
            env.insert(
                format!("HOIST_{}_{}_ADDR", up(name), p.remote),
                p.local.clone(),
            );
        }
    }
    env
}

/// Runs each step with `sh -c` in `root`; output is streamed to stderr prefixed with
/// the step's name. Stops at nothing: every step runs and is reported.
pub async fn run_tests(session: &Session, root: &Path, steps: &[TestStep]) -> Vec<TestResult> {
    let env = session.read(test_env);
    let mut results = Vec::new();
    for step in steps {
        session.emit(Event::TestStarted {
            name: step.name.clone(),
        });
        let result = run_one(root, step, &env).await;
        session.emit(Event::TestFinished {
            result: result.clone(),
        });
        results.push(result);
    }
    results
}

async fn run_one(root: &Path, step: &TestStep, env: &BTreeMap<String, String>) -> TestResult {
    let started = Instant::now();
    let timeout = step.timeout().unwrap_or(TestStep::DEFAULT_TIMEOUT);
    let mut tail: Vec<String> = Vec::new();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&step.run)
        .current_dir(root)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, killed as a whole below.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return TestResult {
                name: step.name.clone(),
                ok: false,
                duration_ms: 0,
                exit_code: None,
                output_tail: vec![format!("cannot start `sh -c {}`: {e}", step.run)],
            };
        }
    };
    let _group = GroupKill(child.id());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    drop(tx);
    let name = step.name.clone();
    let collect = async {
        while let Some(l) = rx.recv().await {
            eprintln!("[test {name}] {l}");
            tail.push(l);
            if tail.len() > TAIL {
                tail.remove(0);
            }
        }
        child.wait().await
    };
    let status = tokio::time::timeout(timeout, collect).await;
    let (ok, exit_code) = match status {
        Ok(Ok(s)) => (s.success(), s.code()),
        Ok(Err(e)) => {
            tail.push(format!("waiting for the test failed: {e}"));
            (false, None)
        }
        Err(_) => {
            tail.push(format!("timed out after {} s", timeout.as_secs()));
            (false, None)
        }
    };
    TestResult {
        name: step.name.clone(),
        ok,
        duration_ms: started.elapsed().as_millis() as u64,
        exit_code,
        output_tail: tail,
    }
}

/// Kills a test step's process group when dropped: at its end, on its timeout, and
/// when `hoist ci` is interrupted. `sh -c` may have started commands of its own
/// (`server & …`) that would otherwise outlive it, holding its output open.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no
            // memory is involved. ESRCH (nothing left) is fine.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// The table `hoist ci` prints at the end, and the reasons for every failure.
pub fn summary(state: &State, report: &UpReport, tests: &[TestResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<8} {:>9} {:<8} {:<10}",
        "SERVICE", "BUILD", "BUILD MS", "DEPLOY", "READY"
    );
    for (name, outcome) in &report.outcomes {
        let svc = state.services.get(name).cloned().unwrap_or_default();
        let ready = match outcome {
            Outcome::Ready => "ready",
            Outcome::NotReady { failed: true, .. } => "FAILED",
            Outcome::NotReady { .. } => "NOT READY",
            Outcome::BuildFailed { .. } => "-",
            Outcome::DeployFailed { .. } => "-",
            Outcome::Blocked { .. } => "BLOCKED",
        };
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:>9} {:<8} {:<10}",
            name,
            phase(svc.build),
            svc.build_ms.map(|m| m.to_string()).unwrap_or("-".into()),
            phase(svc.deploy),
            ready
        );
    }
    if !tests.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<20} {:<8} {:>9}", "TEST", "RESULT", "MS");
        for t in tests {
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:>9}",
                t.name,
                if t.ok { "passed" } else { "FAILED" },
                t.duration_ms
            );
        }
    }
    for (name, outcome) in &report.outcomes {
        match outcome {
            Outcome::Ready => {}
            Outcome::NotReady { explanation, .. } => {
                let _ = write!(out, "\nservice {name} is not ready:\n{explanation}");
            }
            Outcome::BuildFailed { error } => {
                let _ = writeln!(out, "\nservice {name}: build failed: {error}");
            }
            Outcome::DeployFailed { error } => {
                let _ = writeln!(out, "\nservice {name}: deploy failed: {error}");
            }
            Outcome::Blocked { on } => {
                let _ = writeln!(
                    out,
                    "\nservice {name} was not deployed: it depends on {}, which did not become ready",
                    on.join(", ")
                );
            }
        }
    }
    for t in tests.iter().filter(|t| !t.ok) {
        let _ = writeln!(
            out,
            "\ntest {} failed{}:",
            t.name,
            t.exit_code
                .map(|c| format!(" with exit code {c}"))
                .unwrap_or_default()
        );
        for l in &t.output_tail {
            let _ = writeln!(out, "  | {l}");
        }
    }
    out
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "pending",
        Phase::Running => "running",
        Phase::Done => "done",
        Phase::Failed => "FAILED",
        Phase::Skipped => "-",
    }
}

#[cfg(test)]
mod group_tests {
    use super::*;

    fn running(marker: &str) -> bool {
        std::process::Command::new("pgrep")
            .args(["-f", marker])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A step that timed out leaves nothing running, not even what it started in the
    /// background.
    #[tokio::test]
    async fn a_timed_out_step_takes_its_background_commands_with_it() {
        let root = tempfile::tempdir().unwrap();
        // An unusual duration marks this test's own `sleep`.
        let marker = format!("sleep 37.{}", std::process::id());
        let step = TestStep {
            name: "bg".into(),
            run: format!("{marker} & echo started; wait"),
            timeout: Some("1s".into()),
        };
        let results = run_tests(&Session::new(), root.path(), &[step]).await;
        assert!(!results[0].ok);
        assert!(
            results[0]
                .output_tail
                .iter()
                .any(|l| l.contains("timed out")),
            "{:?}",
            results[0].output_tail
        );
        let deadline = Instant::now() + std::time::Duration::from_secs(3);
        while running(&marker) {
            assert!(
                Instant::now() < deadline,
                "`{marker}` outlived its test step"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
