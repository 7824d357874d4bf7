//! The dev loop end to end on a copy of `examples/shop`: the `hoist` binary starts the
//! embedded cluster itself (real runc, real kubectl as the outside checker; root only,
//! skipped otherwise), builds the images into the local store, deploys, waits.
//! Everything is isolated in a tempdir (kubeconfig, cache, cluster data) and the
//! cluster is stopped at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        copy_dir(&repo().join("examples/shop"), &env.project());
        env
    }
    fn project(&self) -> PathBuf {
        self.dir.path().join("shop")
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("hoist").unwrap();
        c.args(args)
            .current_dir(self.project())
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .env("HOIST_CACHE_DIR", self.dir.path().join("cache"))
            .env("HOIST_CLUSTER_DIR", self.dir.path().join("cluster"))
            .env("HOIST_USER", "dev")
            .env_remove("XDG_DATA_HOME");
        c
    }
    fn hoist(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--request-timeout=10s")
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .output()
            .unwrap()
    }
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn edit(&self, rel: &str, from: &str, to: &str) {
        let p = self.project().join(rel);
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains(from), "{rel} does not contain {from:?}");
        std::fs::write(&p, s.replace(from, to)).unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.hoist(&["cluster", "down"]);
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The summary table's row of `service` (progress lines have a `|` after the name).
fn summary_row<'a>(out: &'a str, service: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{service} ")) && !l.contains(" |"))
        .unwrap_or_else(|| panic!("no summary row for {service}: {out}"))
}

const SERVICES: [&str; 4] = ["api", "stats", "web", "worker"];

#[test]
fn ci_up_once_crash_explanation_and_down_on_the_shop() {
    if let Err(e) = hoist_cluster::kubelet::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let env = Env::new();
    let t0 = Instant::now();
    // A test step that sees the session's environment.
    let hoist_yaml = env.project().join("hoist.yaml");
    let mut y = std::fs::read_to_string(&hoist_yaml).unwrap();
    y.push_str("tests:\n  - name: env\n    run: test \"$HOIST_NAMESPACE\" = shop-dev && echo namespace ok\n    timeout: 30s\n");
    std::fs::write(&hoist_yaml, &y).unwrap();

    // 1. `hoist ci` starts the cluster, brings up every service, runs the test: exit 0.
    eprintln!("step 1 at {:?}", t0.elapsed());
    let ci = env.hoist(&["ci", "--timeout", "3m"]);
    assert!(ci.status.success(), "{}", text(&ci));
    let out = String::from_utf8_lossy(&ci.stdout);
    for s in SERVICES {
        let row = summary_row(&out, s);
        assert!(row.contains("ready"), "{row}");
    }
    assert!(out.contains("env") && out.contains("passed"), "{out}");
    let deployments = env.kubectl_ok(&[
        "get",
        "deploy",
        "-n",
        "shop-dev",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.availableReplicas} {end}",
    ]);
    for s in SERVICES {
        assert!(deployments.contains(&format!("{s}=1")), "{deployments}");
    }
    // Images came from the local store (the example's registry does not exist here).
    let image = env.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop-dev",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert!(image.starts_with("localhost:5000/shop/web:h-"), "{image}");

    // 2. `hoist up --once -o json`: one JSON event per line, every service ready.
    eprintln!("step 2 at {:?}", t0.elapsed());
    let up = env.hoist(&["up", "--once", "-o", "json"]);
    assert!(up.status.success(), "{}", text(&up));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&up.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for s in SERVICES {
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "ready" && e["service"] == s),
            "no ready event for {s}: {events:?}"
        );
        assert!(
            events.iter().any(|e| e["type"] == "build_finished"
                && e["service"] == s
                && e["duration_ms"].is_u64()),
            "no build_finished event for {s}"
        );
    }

    // 3. A failing test step: exit 1, named with its exit code and output.
    eprintln!("step 3 at {:?}", t0.elapsed());
    std::fs::write(
        &hoist_yaml,
        y.replace("echo namespace ok", "echo smoke failed >&2; exit 4"),
    )
    .unwrap();
    let ci = env.hoist(&["ci", "--timeout", "3m"]);
    assert_eq!(ci.status.code(), Some(1), "{}", text(&ci));
    let out = String::from_utf8_lossy(&ci.stdout);
    assert!(out.contains("test env failed with exit code 4"), "{out}");
    assert!(out.contains("smoke failed"), "{out}");
    std::fs::write(&hoist_yaml, &y).unwrap();

    // 4. A variant whose container crashes: exit 1, and the explanation names the
    eprintln!("step 4 at {:?}", t0.elapsed());
    //    service, the exit code and the container's last log line.
    env.edit(
        "services/worker/service.yaml",
        r#"entrypoint: ["/bin/busybox", "sh", "/work.sh"]"#,
        r#"entrypoint: ["/bin/busybox", "sh", "-c", "echo worker cannot start: QUEUE_URL is not set; exit 3"]"#,
    );
    let started = Instant::now();
    let ci = env.hoist(&["ci", "--timeout", "3m"]);
    assert_eq!(ci.status.code(), Some(1), "{}", text(&ci));
    // Failed fast on the crash loop, not at the timeout.
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    let out = String::from_utf8_lossy(&ci.stdout);
    assert!(out.contains("service worker is not ready"), "{out}");
    assert!(out.contains("code 3"), "{out}");
    assert!(out.contains("QUEUE_URL is not set"), "{out}");
    let row = summary_row(&out, "worker");
    assert!(row.contains("FAILED"), "{row}");
    let row = summary_row(&out, "api");
    assert!(row.contains("ready"), "{row}");
    env.edit(
        "services/worker/service.yaml",
        r#"entrypoint: ["/bin/busybox", "sh", "-c", "echo worker cannot start: QUEUE_URL is not set; exit 3"]"#,
        r#"entrypoint: ["/bin/busybox", "sh", "/work.sh"]"#,
    );

    // 5. `hoist up` (watching) killed with SIGKILL, then `hoist down --delete-namespace`
    eprintln!("step 5 at {:?}", t0.elapsed());
    //    removes everything of the project and the namespace.
    let mut child = env
        .cmd(&["up", "--stream"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll(Duration::from_secs(120), "worker back to available", || {
        let o = env.kubectl(&[
            "get",
            "deploy",
            "worker",
            "-n",
            "shop-dev",
            "-o",
            "jsonpath={.status.availableReplicas}/{.status.unavailableReplicas}",
        ]);
        (String::from_utf8_lossy(&o.stdout) == "1/").then_some(())
    });
    child.kill().unwrap();
    let _ = child.wait();
    let down = env.hoist(&["down", "--delete-namespace"]);
    assert!(down.status.success(), "{}", text(&down));
    let ns = env.kubectl(&["get", "ns", "shop-dev"]);
    assert!(!ns.status.success(), "namespace still there: {}", text(&ns));
    let left = env.kubectl_ok(&[
        "get",
        "deploy,svc,cm,pods",
        "-A",
        "-l",
        "hoist.dev/project=shop",
        "-o",
        "name",
    ]);
    assert!(left.trim().is_empty(), "left behind: {left}");
}
