//! The dev loop end to end on a copy of `examples/shop`: the `hoist` binary starts the
//! embedded cluster itself (real runc, real kubectl as the outside checker; root only,
//! skipped otherwise), builds the images into the local store, deploys, waits.
//! Everything is isolated in a tempdir (kubeconfig, cache, cluster data) and the
//! cluster is stopped at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

#[path = "../../hoist-oci/tests/support/registry.rs"]
mod registry;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        copy_dir(&repo().join("examples/shop"), &env.project());
        // The example's fixed local ports may be taken (or used by a parallel test).
        for (svc, port) in [("web", "18080"), ("api", "18081")] {
            let free = free_port().to_string();
            env.edit(
                &format!("services/{svc}/service.yaml"),
                &format!("local: {port}"),
                &format!("local: {free}"),
            );
        }
        env
    }
    /// The local port of `service`'s forward in the copy.
    fn local_port(&self, service: &str) -> u16 {
        let y = std::fs::read_to_string(
            self.project()
                .join(format!("services/{service}/service.yaml")),
        )
        .unwrap();
        y.lines()
            .find_map(|l| l.trim().strip_prefix("local: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET path` on 127.0.0.1:`port`, if it answers 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    c.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    status
        .split(' ')
        .nth(1)
        .is_some_and(|c| c == "200")
        .then(|| body.to_string())
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

/// `poll`, showing the session's output when it times out.
fn poll_log<T>(log: &Path, limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; hoist up said:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether this host runs the embedded cluster's containers (root, runc); says why not.
fn containers_run() -> bool {
    match hoist_cluster::kubelet::check_host() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            false
        }
    }
}

const SERVICES: [&str; 4] = ["api", "stats", "web", "worker"];

#[test]
fn ci_up_once_crash_explanation_and_down_on_the_shop() {
    if !containers_run() {
        return;
    }
    let env = Env::new();
    let t0 = Instant::now();
    // A test step that sees the session's environment.
    let hoist_yaml = env.project().join("hoist.yaml");
    let mut y = std::fs::read_to_string(&hoist_yaml).unwrap();
    // Test steps see the session's environment and reach services through the forwards
    // (the shop's own smoke-web and smoke-api, plus one more appended to its `tests:`).
    assert!(
        y.trim_end().ends_with("timeout: 30s"),
        "tests: ends the shop's hoist.yaml"
    );
    y.push_str(concat!(
        "  - name: env\n",
        "    run: test \"$HOIST_NAMESPACE\" = shop-dev && echo namespace ok\n",
        "    timeout: 30s\n",
    ));
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
    for t in ["env", "smoke-web", "smoke-api"] {
        let row = summary_row(&out, t);
        assert!(row.contains("passed"), "{row}\n{}", text(&ci));
    }
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

    // `depends_on: [api]` holds web and worker until api is ready.
    let at = |ty: &str, svc: &str| {
        events
            .iter()
            .position(|e| e["type"] == ty && e["service"] == svc)
            .unwrap_or_else(|| panic!("no {ty} event for {svc}"))
    };
    assert!(at("deploy_started", "web") > at("ready", "api"));
    assert!(at("deploy_started", "worker") > at("ready", "api"));

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

#[test]
fn up_watches_syncs_rebuilds_and_follows_service_dirs() {
    if !containers_run() {
        return;
    }
    let env = Env::new();
    let t0 = Instant::now();
    // A web file outside every sync rule: changing it needs a rebuild.
    env.edit(
        "services/web/service.yaml",
        "      include: [\"*.html\", \"*.css\"]\n",
        "      include: [\"*.html\", \"*.css\"]\n    - from: ./extra\n      to: /extra\n",
    );
    env.edit(
        "services/web/service.yaml",
        r#"cmd: ["-f", "-p", "8080", "-h", "/www"]"#,
        r#"cmd: ["-f", "-p", "8080", "-h", "/"]"#,
    );
    std::fs::create_dir_all(env.project().join("services/web/extra")).unwrap();
    std::fs::write(env.project().join("services/web/extra/version.txt"), "v1\n").unwrap();
    let web = env.local_port("web");
    let api = env.local_port("api");

    let log = env.dir.path().join("up.log");
    let mut child = env
        .cmd(&["up", "--stream"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(std::mem::replace(
        &mut child,
        Command::new("true").spawn().unwrap(),
    ));
    let _ = child.wait();

    // 1. Everything up and reachable through the port-forwards.
    let page = poll(
        Duration::from_secs(180),
        "web through its port-forward",
        || http_get(web, "/www/index.html"),
    );
    assert!(page.contains("hoist shop"), "{page}");
    let products = poll(
        Duration::from_secs(60),
        "api through its port-forward",
        || http_get(api, "/products.json"),
    );
    assert!(products.contains("kettle"), "{products}");
    eprintln!("up at {:?}", t0.elapsed());
    // A forward is reported open, never "reconnecting" before it first connected.
    let so_far = log_text();
    let first = so_far
        .lines()
        .find(|l| l.starts_with("web") && l.contains("port-forward"));
    assert!(first.is_some_and(|l| l.ends_with(" open")), "{so_far}");

    // 2. A synced file: served within 1 s, no rebuild.
    let index = env.project().join("services/web/public/index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    let started = Instant::now();
    std::fs::write(&index, html.replace("hoist shop", "hoist shop (synced)")).unwrap();
    poll_log(&log, Duration::from_secs(10), "the synced page", || {
        http_get(web, "/www/index.html").filter(|b| b.contains("(synced)"))
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "synced edit served after {took:?}\n{}",
        log_text()
    );
    assert!(log_text().contains("live update"), "{}", log_text());

    // 3. A file outside every sync rule: rebuild, roll out, the new content is served.
    let started = Instant::now();
    std::fs::write(env.project().join("services/web/extra/version.txt"), "v2\n").unwrap();
    poll_log(&log, Duration::from_secs(120), "the rebuilt page", || {
        http_get(web, "/extra/version.txt").filter(|b| b.contains("v2"))
    });
    eprintln!("rebuild served after {:?}", started.elapsed());
    assert!(
        log_text().contains("web    | 1 file(s) changed → rebuild"),
        "{}",
        log_text()
    );

    // 4. A new service directory comes up; deleting it takes it away.
    copy_dir(
        &env.project().join("services/api"),
        &env.project().join("services/api2"),
    );
    env.edit("services/api2/service.yaml", "name: api\n", "name: api2\n");
    env.edit(
        "services/api2/service.yaml",
        &format!("local: {api}"),
        &format!("local: {}", free_port()),
    );
    poll(
        Duration::from_secs(120),
        "deployment api2 available",
        || {
            let o = env.kubectl(&[
                "get",
                "deploy",
                "api2",
                "-n",
                "shop-dev",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ]);
            (String::from_utf8_lossy(&o.stdout) == "1").then_some(())
        },
    );
    std::fs::remove_dir_all(env.project().join("services/api2")).unwrap();
    poll_log(
        &log,
        Duration::from_secs(60),
        "deployment api2 gone",
        || {
            let o = env.kubectl(&["get", "deploy", "api2", "-n", "shop-dev"]);
            (!o.status.success()).then_some(())
        },
    );

    // 5. A broken service.yaml: a clear error, the others untouched and still served.
    let generation = |name: &str| {
        env.kubectl_ok(&[
            "get",
            "deploy",
            name,
            "-n",
            "shop-dev",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
    };
    let before = (generation("web"), generation("api"));
    let svc_yaml = env.project().join("services/web/service.yaml");
    let mut y = std::fs::read_to_string(&svc_yaml).unwrap();
    y.push_str("replicaz: 2\n");
    std::fs::write(&svc_yaml, y).unwrap();
    let err = poll_log(
        &log,
        Duration::from_secs(30),
        "the configuration error",
        || {
            log_text()
                .lines()
                .find(|l| l.contains("configuration error") && l.contains("replicaz"))
                .map(String::from)
        },
    );
    assert!(err.contains("service.yaml"), "{err}");
    assert!(
        http_get(api, "/products.json").is_some(),
        "api stopped answering"
    );
    assert!(
        http_get(web, "/www/index.html").is_some_and(|b| b.contains("(synced)")),
        "web stopped answering"
    );
    assert_eq!((generation("web"), generation("api")), before);
    eprintln!("watch checks done at {:?}", t0.elapsed());

    drop(guard);
    let down = env.hoist(&["down", "--delete-namespace"]);
    assert!(down.status.success(), "{}", text(&down));
}

/// A cluster that is not the embedded one (here: the same server under another
/// context name, so hoist treats it as any loopback cluster): images are pushed to the
/// registry the cluster advertises in kube-public/local-registry-hosting (KEP-1755),
/// and the kubelet pulls them from there. Without one, and without `registry:`, the
/// error says what to set.
#[test]
fn other_clusters_get_images_through_the_advertised_registry() {
    if !containers_run() {
        return;
    }
    let env = Env::new();
    env.edit("hoist.yaml", "registry: localhost:5000\n", "");
    let up = env.hoist(&["cluster", "up", "--port", "0"]);
    assert!(up.status.success(), "{}", text(&up));
    let ctx = env.kubectl_ok(&[
        "config",
        "view",
        "-o",
        "jsonpath={.contexts[?(@.name==\"hoist\")].context.cluster} {.contexts[?(@.name==\"hoist\")].context.user}",
    ]);
    let (cluster, user) = ctx.trim().split_once(' ').unwrap();
    env.kubectl_ok(&[
        "config",
        "set-context",
        "devreg",
        &format!("--cluster={cluster}"),
        &format!("--user={user}"),
    ]);

    // No registry anywhere: a clear error.
    let ci = env.hoist(&[
        "ci",
        "--context",
        "devreg",
        "--timeout",
        "2m",
        "--no-tests",
        "api",
    ]);
    assert!(!ci.status.success(), "{}", text(&ci));
    // miette wraps long lines: compare without the wrapping.
    let err: String = String::from_utf8_lossy(&ci.stderr)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect();
    assert!(
        err.contains("local-registry-hosting") && err.contains("Set`registry:`"),
        "{err}"
    );

    // The cluster advertises a registry: images go there and pods pull them.
    let reg = registry::Registry::start(false);
    let cm = env.dir.path().join("cm.yaml");
    std::fs::write(
        &cm,
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: local-registry-hosting, namespace: kube-public}}\ndata:\n  localRegistryHosting.v1: |\n    host: \"{}\"\n    help: \"https://example.invalid/registry\"\n",
            reg.addr
        ),
    )
    .unwrap();
    env.kubectl_ok(&["apply", "--context", "devreg", "-f", cm.to_str().unwrap()]);
    let ci = env.hoist(&[
        "ci",
        "--context",
        "devreg",
        "--timeout",
        "2m",
        "--no-tests",
        "api",
    ]);
    assert!(ci.status.success(), "{}", text(&ci));
    let image = env.kubectl_ok(&[
        "get",
        "deploy",
        "api",
        "-n",
        "shop-dev",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert!(
        image.starts_with(&format!("{}/shop/api:h-", reg.addr)),
        "{image}"
    );
    let tags = registry_tags(&reg.addr, "shop/api");
    assert!(tags.contains(image.rsplit(':').next().unwrap()), "{tags}");

    // Watching: the project is loaded again from disk on every config change (without
    // the advertised registry in it); the next rebuild must still go to that registry.
    let api_port = env.local_port("api");
    let log = env.dir.path().join("up-devreg.log");
    let child = env
        .cmd(&["up", "--stream", "--context", "devreg", "api"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(env.dir.path().join("up-devreg.err")).unwrap())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child);
    poll_log(
        &log,
        Duration::from_secs(60),
        "api ready in watch mode",
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("api") && l.ends_with(" ready"))
                .then_some(())
        },
    );
    // An image change in service.yaml: a reload, a new image tag, a rebuild.
    env.edit(
        "services/api/service.yaml",
        r#"cmd: ["-f", "-p", "8081", "-h", "/data"]"#,
        r#"cmd: ["-f", "-p", "8081", "-h", "/data", "-v"]"#,
    );
    let rebuilt = poll_log(
        &log,
        Duration::from_secs(60),
        "api rolled out with a new image from the advertised registry",
        || {
            let o = env.kubectl(&[
                "get",
                "deploy",
                "api",
                "-n",
                "shop-dev",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image} {.status.updatedReplicas}/{.status.availableReplicas}/{.status.replicas}",
            ]);
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let (img, counts) = out.split_once(' ')?;
            (img != image && counts == "1/1/1").then(|| img.to_string())
        },
    );
    assert!(
        rebuilt.starts_with(&format!("{}/shop/api:h-", reg.addr)),
        "after a reload the image names {rebuilt}, not the advertised registry\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let tags = registry_tags(&reg.addr, "shop/api");
    assert!(
        tags.contains(rebuilt.rsplit(':').next().unwrap()),
        "the rebuilt image is not in the advertised registry: {tags}"
    );
    // And the rebuilt pod (pulled from there) serves through the forward.
    poll_log(
        &log,
        Duration::from_secs(30),
        "api through its forward",
        || http_get(api_port, "/products.json").filter(|b| b.contains("kettle")),
    );
}

/// Kills (SIGKILL) and reaps a child process when dropped, so a failing test does not
/// leave it running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `hoist <args> -o json`, waits for the `deployed` event of `service` and for its
/// pod to run, sends `signal` (a `kill` name: INT or TERM); returns the exit status and
/// stderr. Bounded in time.
fn interrupt_after_deploy(
    env: &Env,
    args: &[&str],
    service: &str,
    signal: &str,
) -> (std::process::ExitStatus, String) {
    let mut child = env
        .cmd(args)
        .args(["-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut guard = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out_reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let err_reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no `deployed` event for {service}; events: {seen:#?}"));
        let ev: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        seen.push(line);
        if ev["type"] == "deployed" && ev["service"] == service {
            break;
        }
    }
    poll(Duration::from_secs(30), "the pod running", || {
        let o = env.kubectl(&[
            "get",
            "pods",
            "-n",
            "shop-dev",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ]);
        (String::from_utf8_lossy(&o.stdout) == "Running").then_some(())
    });
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let interrupted = Instant::now();
    let status = poll(
        Duration::from_secs(15),
        &format!("hoist to exit after SIG{signal}"),
        || guard.0.try_wait().unwrap(),
    );
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        interrupted.elapsed()
    );
    out_reader.join().unwrap();
    // Every event before the signal was printed, each one whole JSON; the last one says
    // how far each service got.
    let rest: Vec<serde_json::Value> = rx
        .try_iter()
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let last = rest.last().expect("an `interrupted` event");
    assert_eq!(last["type"], "interrupted", "{rest:?}");
    assert_eq!(last["not_ready"][service], "was not ready yet", "{last}");
    (status, err_reader.join().unwrap())
}

/// Ctrl-C (SIGINT) while `hoist up` is still in its first pass (here: waiting for a
/// service whose readiness probe never passes) ends it cleanly: exit 130, a summary
/// naming how far the service got, nothing half-written in the local store, and
/// `hoist down` afterwards leaves nothing of the project. The same for `hoist ci`, there
/// stopped by SIGTERM (what a CI runner cancelling a job sends), which ends it with 143.
#[test]
fn ctrl_c_or_sigterm_during_the_first_pass_stops_cleanly() {
    if !containers_run() {
        return;
    }
    let env = Env::new();
    // httpd listens on another port than the one the readiness probe checks.
    env.edit(
        "services/api/service.yaml",
        r#"cmd: ["-f", "-p", "8081", "-h", "/data"]"#,
        r#"cmd: ["-f", "-p", "8089", "-h", "/data"]"#,
    );
    let left_behind = || {
        let down = env.hoist(&["down"]);
        assert!(down.status.success(), "{}", text(&down));
        // `down` waits until things are gone, the pods the Deployments made included.
        let pods = env.kubectl_ok(&["get", "pods", "-n", "shop-dev", "-o", "name"]);
        assert!(
            pods.trim().is_empty(),
            "still there after hoist down: {pods}"
        );
        env.kubectl_ok(&[
            "get",
            "deploy,svc,cm,pods",
            "-A",
            "-l",
            "hoist.dev/project=shop",
            "-o",
            "name",
        ])
    };

    let (status, stderr) = interrupt_after_deploy(&env, &["up", "api"], "api", "INT");
    assert_eq!(status.code(), Some(130), "{status:?}\nstderr: {stderr}");
    assert!(
        stderr.contains("hoist: interrupted before every service was up; 0 of 1 service(s) ready; not ready: api (was not ready yet)")
            && stderr.contains("remove it with `hoist down`"),
        "{stderr}"
    );
    // Nothing half-written in the local store: no temp files, an index that parses.
    let store = env.dir.path().join("cache/images");
    let index = std::fs::read(store.join("index.json")).unwrap();
    serde_json::from_slice::<serde_json::Value>(&index).unwrap();
    let mut stack = vec![store];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp"), "temp file left: {:?}", e.path());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    let left = left_behind();
    assert!(left.trim().is_empty(), "left behind: {left}");

    // `hoist ci` stopped by SIGTERM the same way.
    let (status, stderr) = interrupt_after_deploy(&env, &["ci", "api"], "api", "TERM");
    assert_eq!(status.code(), Some(143), "{status:?}\nstderr: {stderr}");
    assert!(
        stderr.contains("hoist: interrupted before every service was up; 0 of 1 service(s) ready"),
        "{stderr}"
    );
    let left = left_behind();
    assert!(left.trim().is_empty(), "left behind: {left}");
}

/// A pseudo-terminal: the master (read and written by the test) and the slave (the
/// child's stdin, stdout and stderr, and its controlling terminal).
fn openpty(cols: u16) -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    let ws = libc::winsize {
        ws_row: 40,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: out-pointers to two ints; no name buffer, default termios.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened and are owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// `raw` without ANSI escape sequences (CSI `ESC [ … final`), CRs dropped.
fn strip_ansi(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// `hoist up` on a terminal shows the live status table (service, build, deploy,
/// ready, ports, last change) redrawn in place, and it follows a change; Ctrl-C typed
/// on the terminal while watching stops it (exit 0). Not on a terminal the output is
/// plain lines without escape codes; `-o json` is one JSON event per line.
#[test]
fn up_shows_a_live_table_on_a_terminal_and_plain_lines_otherwise() {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    if !containers_run() {
        return;
    }
    let env = Env::new();
    // Started outside the terminal's session, so Ctrl-C on it reaches only `hoist up`.
    let up = env.hoist(&["cluster", "up", "--port", "0"]);
    assert!(up.status.success(), "{}", text(&up));
    let api_port = env.local_port("api");

    // 1. On a terminal: the live table.
    let (mut master, slave) = openpty(160);
    let mut cmd = env.cmd(&["up", "api"]);
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // A session of its own with the pty as controlling terminal, so that ^C
            // typed on it is SIGINT to hoist's process group.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(cmd); // closes the parent's copies of the slave
    let mut guard = KillOnDrop(child);
    let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let reader = {
        let screen = screen.clone();
        let mut master = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Ends with EIO once the child and every copy of the slave are gone.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let raw = || screen.lock().unwrap().clone();
    let table_row = |want: &dyn Fn(&str) -> bool| {
        let text = strip_ansi(&raw());
        text.lines()
            .rev()
            .find(|l| l.starts_with("api ") && want(l))
            .map(String::from)
    };
    let show = || strip_ansi(&raw());
    let deadline = Instant::now() + Duration::from_secs(90);
    let row = loop {
        if let Some(r) = table_row(&|l: &str| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1..4) == Some(&["ok", "ok", "ready"][..])
                && l.contains(&format!("{api_port}→8081"))
        }) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no ready row for api in the table:\n{}",
            show()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let screen_text = show();
    assert!(
        screen_text
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "SERVICE", "BUILD", "DEPLOY", "READY", "PORTS", "LAST", "CHANGE", "ERROR"
                ]),
        "no table header:\n{screen_text}"
    );
    // Coloured, and redrawn in place (cursor up, erase below) rather than appended.
    let raw_text = String::from_utf8_lossy(&raw()).into_owned();
    assert!(
        raw_text.contains("F\x1b[J"),
        "the table is not redrawn in place"
    );
    assert!(raw_text.contains("\x1b[3"), "no colours on a terminal");
    eprintln!("ready row: {row}");

    // A change: a synced file; the row's last change says so.
    let data = env.project().join("services/api/data/products.json");
    let json = std::fs::read_to_string(&data).unwrap();
    std::fs::write(&data, json.replace("kettle", "kettle (new)")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        if let Some(r) = table_row(&|l: &str| l.contains("synced 1 file(s)")) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the table does not show the sync:\n{}",
            show()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(row.contains("ready"), "{row}");
    assert!(
        http_get(api_port, "/products.json").is_some_and(|b| b.contains("kettle (new)")),
        "the synced file is not served"
    );

    // ^C typed on the terminal: a summary, exit 0 (watching had started).
    master.write_all(b"\x03").unwrap();
    let status = poll(Duration::from_secs(15), "hoist up to stop after ^C", || {
        guard.0.try_wait().unwrap()
    });
    reader.join().unwrap();
    let screen_text = show();
    assert_eq!(status.code(), Some(0), "{status:?}\n{screen_text}");
    assert!(
        screen_text.contains("hoist: stopped; 1 of 1 service(s) ready (api)"),
        "{screen_text}"
    );

    // 2. Not a terminal: plain lines, no escape codes.
    let log = env.dir.path().join("plain.log");
    let child = env
        .cmd(&["up", "api"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    poll_log(
        &log,
        Duration::from_secs(60),
        "the plain `ready` line",
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .any(|l| l == "api | ready")
                .then_some(())
        },
    );
    let kill = Command::new("kill")
        .args(["-INT", &guard.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = poll(Duration::from_secs(15), "hoist up to stop", || {
        guard.0.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0));
    let plain = std::fs::read_to_string(&log).unwrap();
    assert!(
        !plain.contains('\x1b'),
        "escape codes in plain output:\n{plain}"
    );
    assert!(
        !plain.contains("SERVICE"),
        "a table in plain output:\n{plain}"
    );

    // 3. `-o json`: every line one JSON event.
    let out = env.hoist(&["up", "--once", "-o", "json", "api"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["type"].is_string() && e["at_ms"].is_u64())
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "ready" && e["service"] == "api"),
        "{stdout}"
    );
}

/// A service built from a Dockerfile (buildah: vfs storage, chroot isolation, a storage
/// root of its own) is delivered straight into the embedded cluster's local store and
/// runs there: the project's registry is a closed port, so any push would fail. The
/// project's test step reads the page through the port-forward.
#[test]
fn dockerfile_services_run_on_the_embedded_cluster_without_a_registry() {
    if !containers_run() {
        return;
    }
    assert!(
        Command::new("buildah").arg("--version").output().is_ok(),
        "buildah is required for this test (scripts/install-deps)"
    );
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let root = env.project();
    let write = |rel: &str, body: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    };
    write(
        "hoist.yaml",
        concat!(
            "name: df\n",
            "# Nothing listens here: images must not be pushed anywhere.\n",
            "registry: 127.0.0.1:9\n",
            "services: [\"services/*\"]\n",
            "tests:\n",
            "  - name: served\n",
            "    run: |\n",
            "      a=$HOIST_HELLO_HTTP_ADDR\n",
            "      bash -c 'exec 3<>/dev/tcp/${0%:*}/${0#*:}; printf \"GET /index.html HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3' $a | grep 'built from a Dockerfile'\n",
            "    timeout: 30s\n",
        ),
    );
    write(
        "services/hello/service.yaml",
        &format!(
            "name: hello\nimage:\n  name: df/hello\n  dockerfile: Dockerfile\nk8s: [k8s/*.yaml]\nports:\n  - name: http\n    port: 8080\n    local: {}\n",
            free_port()
        ),
    );
    write(
        "services/hello/Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nENTRYPOINT [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    );
    write(
        "services/hello/www/index.html",
        "hello, built from a Dockerfile\n",
    );
    std::fs::copy("/bin/busybox", root.join("services/hello/busybox")).unwrap();
    write(
        "services/hello/k8s/deployment.yaml",
        concat!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: hello}\n",
            "spec:\n  replicas: 1\n  selector: {matchLabels: {app: hello}}\n",
            "  template:\n    metadata: {labels: {app: hello}}\n    spec:\n",
            "      terminationGracePeriodSeconds: 1\n",
            "      containers:\n        - name: hello\n          image: df/hello\n",
            "          ports: [{containerPort: 8080}]\n",
            "          readinessProbe: {tcpSocket: {port: 8080}}\n",
            "---\n",
            "apiVersion: v1\nkind: Service\nmetadata: {name: hello}\n",
            "spec:\n  selector: {app: hello}\n  ports: [{port: 8080, targetPort: 8080}]\n",
        ),
    );
    let buildah = env.dir.path().join("buildah");
    let ci = env
        .cmd(&["ci", "--timeout", "2m"])
        .env("HOIST_BUILDER", "buildah")
        .env("HOIST_BUILDAH_STORAGE_DRIVER", "vfs")
        .env("HOIST_BUILDAH_ISOLATION", "chroot")
        .env("HOIST_BUILDAH_ROOT", &buildah)
        .output()
        .unwrap();
    assert!(ci.status.success(), "{}", text(&ci));
    let out = String::from_utf8_lossy(&ci.stdout);
    assert!(summary_row(&out, "hello").contains("ready"), "{out}");
    assert!(summary_row(&out, "served").contains("passed"), "{out}");
    let image = env.kubectl_ok(&[
        "get",
        "deploy",
        "hello",
        "-n",
        "df-dev",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert!(image.starts_with("127.0.0.1:9/df/hello:h-"), "{image}");
    // The image is in the local store under that name.
    let index = std::fs::read_to_string(env.dir.path().join("cache/images/index.json")).unwrap();
    assert!(
        index.contains(&format!("\"{image}\"")),
        "{image} not in {index}"
    );

    // Watching: a change in the build context rebuilds with buildah, into the store,
    // and the new page is served through the forward.
    let port: u16 = std::fs::read_to_string(root.join("services/hello/service.yaml"))
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("local: "))
        .unwrap()
        .parse()
        .unwrap();
    let log = env.dir.path().join("up.log");
    let child = env
        .cmd(&["up", "--stream"])
        .env("HOIST_BUILDER", "buildah")
        .env("HOIST_BUILDAH_STORAGE_DRIVER", "vfs")
        .env("HOIST_BUILDAH_ISOLATION", "chroot")
        .env("HOIST_BUILDAH_ROOT", &buildah)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child);
    poll_log(
        &log,
        Duration::from_secs(60),
        "the page through the forward",
        || http_get(port, "/index.html").filter(|b| b.contains("built from a Dockerfile")),
    );
    write("services/hello/www/index.html", "hello again, rebuilt\n");
    poll_log(&log, Duration::from_secs(60), "the rebuilt page", || {
        http_get(port, "/index.html").filter(|b| b.contains("rebuilt"))
    });
    let rebuilt = env.kubectl_ok(&[
        "get",
        "deploy",
        "hello",
        "-n",
        "df-dev",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_ne!(rebuilt, image, "no new image after the change");
    drop(guard);
    let down = env.hoist(&["down", "--delete-namespace"]);
    assert!(down.status.success(), "{}", text(&down));
}

/// `skopeo list-tags` of `repo` on the plain-HTTP registry at `addr` (an outside client's
/// view of what hoist pushed).
fn registry_tags(addr: &str, repo: &str) -> String {
    let out = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{addr}/{repo}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo list-tags: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
