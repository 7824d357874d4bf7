//! Dev-loop benchmarks through the real `hoist` binary on the embedded cluster (root +
//! runc; skipped otherwise). Prints a table.
//!
//! `cargo bench -p hoist-cli --bench dev_loop` (knobs: `HOIST_BENCH_EDITS` = 20,
//! `HOIST_BENCH_REBUILDS` = 5, `HOIST_BENCH_SERVICES` = 150, `HOIST_BENCH_ONLY=edit|ci`,
//! `HOIST_BENCH_NO_SERVICES=1` for Deployments without Services).
//!
//! 1. edit → new content served for a synced file (shop `web`, through its
//!    port-forward), p50/p90 over N edits;
//! 2. edit → rebuilt pod serving (a file outside every sync rule);
//! 3. `hoist ci` on a generated project of N services → all ready: wall time, peak RSS
//!    of the `hoist ci` process, and the cluster server's RSS (separately).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn project(&self) -> PathBuf {
        self.dir.path().join("p")
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(HOIST);
        c.args(args)
            .current_dir(self.project())
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .env("HOIST_CACHE_DIR", self.dir.path().join("cache"))
            .env("HOIST_CLUSTER_DIR", self.dir.path().join("cluster"))
            .env("HOIST_USER", "bench")
            .env_remove("XDG_DATA_HOME");
        c
    }
    fn run(&self, args: &[&str]) {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "hoist {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn cluster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("cluster/server.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "--delete-namespace"]).output();
        let _ = self.cmd(&["cluster", "down"]).output();
    }
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

fn edit(p: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(p).unwrap();
    assert!(s.contains(from), "{} lacks {from:?}", p.display());
    std::fs::write(p, s.replacen(from, to, 1)).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    c.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.lines()
        .next()?
        .split(' ')
        .nth(1)
        .is_some_and(|c| c == "200")
        .then(|| body.to_string())
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Rows: (what, result, target).
fn edits(rows: &mut Vec<(String, String, String)>) {
    let n = env_num("HOIST_BENCH_EDITS", 20);
    let rebuilds = env_num("HOIST_BENCH_REBUILDS", 5);
    let env = Env::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    copy_dir(&repo.join("examples/shop"), &env.project());
    let web_yaml = env.project().join("services/web/service.yaml");
    let port = free_port();
    edit(&web_yaml, "local: 18080", &format!("local: {port}"));
    edit(
        &env.project().join("services/api/service.yaml"),
        "local: 18081",
        &format!("local: {}", free_port()),
    );
    edit(
        &web_yaml,
        "      include: [\"*.html\", \"*.css\"]\n",
        "      include: [\"*.html\", \"*.css\"]\n    - from: ./extra\n      to: /extra\n",
    );
    edit(
        &web_yaml,
        r#"cmd: ["-f", "-p", "8080", "-h", "/www"]"#,
        r#"cmd: ["-f", "-p", "8080", "-h", "/"]"#,
    );
    std::fs::create_dir_all(env.project().join("services/web/extra")).unwrap();
    std::fs::write(env.project().join("services/web/extra/v.txt"), "r0\n").unwrap();
    let mut up = env
        .cmd(&["up", "--stream"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let ready = wait_for(Duration::from_secs(300), || {
        http_get(port, "/www/index.html").is_some()
    });
    let Some(ready) = ready else {
        kill(&mut up);
        panic!("the shop did not come up");
    };
    rows.push((
        "hoist up (shop, 4 services, cold cluster) → web served".into(),
        ms(ready),
        "-".into(),
    ));
    let _ = started;
    let index = env.project().join("services/web/public/index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    let mut synced = Vec::new();
    for i in 0..n {
        let marker = format!("edit-{i}-marker");
        let t = Instant::now();
        std::fs::write(&index, html.replace("hoist shop", &marker)).unwrap();
        let d = wait_for(Duration::from_secs(10), || {
            http_get(port, "/www/index.html").is_some_and(|b| b.contains(&marker))
        });
        synced.push(d.unwrap_or_else(|| t.elapsed()));
        std::thread::sleep(Duration::from_millis(100));
    }
    rows.push((
        format!("synced edit → served, p50 ({n} edits)"),
        ms(pct(&mut synced, 0.5)),
        "≤ 150 ms".into(),
    ));
    rows.push((
        format!("synced edit → served, p90 ({n} edits)"),
        ms(pct(&mut synced, 0.9)),
        "-".into(),
    ));
    let mut rebuilt = Vec::new();
    for i in 1..=rebuilds {
        let marker = format!("r{i}");
        std::fs::write(
            env.project().join("services/web/extra/v.txt"),
            format!("{marker}\n"),
        )
        .unwrap();
        let d = wait_for(Duration::from_secs(120), || {
            http_get(port, "/extra/v.txt").is_some_and(|b| b.trim() == marker)
        });
        rebuilt.push(d.unwrap_or(Duration::from_secs(120)));
    }
    rows.push((
        format!("edit → rebuilt pod serving, p50 ({rebuilds} edits)"),
        ms(pct(&mut rebuilt, 0.5)),
        "≤ 1.5 s".into(),
    ));
    kill(&mut up);
}

/// `kB` from a `/proc/<pid>/status` field.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn generate(root: &Path, n: usize) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "hoist.yaml",
        "name: gen\nregistry: localhost:5000\ncluster: auto\n",
    );
    w(
        "molds/web/mold.yaml",
        "parameters:\n  - {name: image, type: string, required: true}\n",
    );
    w(
        "molds/web/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ name }}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: {{ name }}}\n  template:\n    metadata:\n      labels: {app: {{ name }}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n        - name: web\n          image: {{ image }}\n          ports: [{name: http, containerPort: 8080}]\n",
    );
    // HOIST_BENCH_NO_SERVICES=1: Deployments only. The embedded cluster's service proxy
    // listens for every Service in every pod's netns (n² listeners), which at 150
    // overloads this machine; without Services hoist's own part is measured.
    if std::env::var_os("HOIST_BENCH_NO_SERVICES").is_none() {
        w(
            "molds/web/svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ name }}\nspec:\n  selector: {app: {{ name }}}\n  ports: [{port: 80, targetPort: http}]\n",
        );
    }
    for i in 0..n {
        let name = format!("s{i:03}");
        w(
            &format!("services/{name}/service.yaml"),
            &format!(
                "name: {name}\nmold: web\nimage:\n  base: scratch\n  layers:\n    - {{from: /bin/busybox, to: /bin/busybox}}\n    - {{from: ./www, to: /www}}\n  entrypoint: [/bin/busybox, httpd, -f, -p, \"8080\", -h, /www]\nports:\n  - {{name: http, port: 8080}}\n"
            ),
        );
        w(
            &format!("services/{name}/www/index.html"),
            &format!("{name}\n"),
        );
    }
}

fn ci_at_scale(rows: &mut Vec<(String, String, String)>) {
    let n = env_num("HOIST_BENCH_SERVICES", 150);
    let env = Env::new();
    generate(&env.project(), n);
    // The cluster first, so the `hoist ci` process measured is hoist alone.
    env.run(&["cluster", "up", "--port", "0"]);
    let server = env.cluster_pid();
    let started = Instant::now();
    // Output to a file: a pipe read only at the end would fill up and block hoist.
    let out_file = env.dir.path().join("ci.jsonl");
    let mut ci = env
        .cmd(&["ci", "--timeout", "5m", "-o", "json"])
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = ci.id();
    let mut peak = 0u64;
    let status = loop {
        if let Some(kb) = status_kb(pid, "VmHWM:") {
            peak = peak.max(kb);
        }
        if let Some(s) = ci.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let out = std::fs::read_to_string(&out_file).unwrap_or_default();
    let summary = out.lines().last().unwrap_or("");
    assert!(status.success(), "hoist ci failed: {summary}");
    rows.push((
        format!("hoist ci, {n} services (cluster running) → all ready"),
        format!("{:.1} s", wall.as_secs_f64()),
        "≤ 20 s".into(),
    ));
    rows.push((
        "  hoist ci peak RSS".into(),
        format!("{:.1} MB", peak as f64 / 1024.0),
        "≤ 60 MB".into(),
    ));
    if let Some(s) = server {
        rows.push((
            format!("  cluster server RSS with {n} pods (peak)"),
            format!(
                "{:.1} MB ({:.1} MB)",
                status_kb(s, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
                status_kb(s, "VmHWM:").unwrap_or(0) as f64 / 1024.0
            ),
            "-".into(),
        ));
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let _ = std::env::args();
    if let Err(e) = hoist_cluster::kubelet::check_host() {
        println!("SKIPPED: {e}");
        return;
    }
    let only = std::env::var("HOIST_BENCH_ONLY").unwrap_or_default();
    let mut rows = Vec::new();
    if only.is_empty() || only == "edit" {
        edits(&mut rows);
    }
    if only.is_empty() || only == "ci" {
        ci_at_scale(&mut rows);
    }
    println!("\n{:<58} {:>18}  target", "dev loop", "result");
    for (what, result, target) in rows {
        println!("{what:<58} {result:>18}  {target}");
    }
}
