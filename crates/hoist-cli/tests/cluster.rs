//! `hoist cluster up|status|kubeconfig|logs|down` through the real binary, a temp data
//! dir and a temp KUBECONFIG, checked with the real kubectl; plus a SIGKILL durability test.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
    fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kube").join("config")
    }
    fn hoist(&self, args: &[&str]) -> Output {
        Command::cargo_bin("hoist")
            .unwrap()
            .args(args)
            .arg("--data-dir")
            .arg(self.data())
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .output()
            .unwrap()
    }
    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--request-timeout=10s")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .output()
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Never leave a server behind, even when an assertion failed.
        let _ = self.hoist(&["cluster", "down"]);
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

#[test]
fn up_status_kubeconfig_logs_down() {
    let env = Env::new();
    // A pre-existing kubeconfig with another context must survive untouched.
    std::fs::create_dir_all(env.kubeconfig().parent().unwrap()).unwrap();
    let other = "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: prod\nusers:\n- name: prod\n  user:\n    token: abc\ncurrent-context: prod\n";
    std::fs::write(env.kubeconfig(), other).unwrap();

    let up = env.hoist(&["cluster", "up", "--port", "0"]);
    assert!(up.status.success(), "{}", text(&up));
    assert!(
        String::from_utf8_lossy(&up.stdout).contains("Ready in"),
        "{}",
        text(&up)
    );
    let backup = format!("{}.hoist-backup", env.kubeconfig().display());
    assert_eq!(std::fs::read_to_string(backup).unwrap(), other);
    let contexts = env.kubectl(&["config", "get-contexts", "-o", "name"]);
    let names = String::from_utf8_lossy(&contexts.stdout);
    assert!(names.contains("prod") && names.contains("hoist"), "{names}");

    let ns = env.kubectl(&["get", "ns"]);
    assert!(
        ns.status.success() && String::from_utf8_lossy(&ns.stdout).contains("kube-system"),
        "{}",
        text(&ns)
    );

    let st = env.hoist(&["cluster", "status", "-o", "json"]);
    assert!(st.status.success(), "{}", text(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["running"], true);
    assert_eq!(v["healthy"], true);
    assert!(
        v["server"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );

    // A second `up` notices the running server.
    let again = env.hoist(&["cluster", "up", "--port", "0"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already running"),
        "{}",
        text(&again)
    );

    let kc = env.hoist(&["cluster", "kubeconfig"]);
    let standalone = env.dir.path().join("standalone");
    std::fs::write(&standalone, &kc.stdout).unwrap();
    let v = Command::new("kubectl")
        .args([
            "--kubeconfig",
            standalone.to_str().unwrap(),
            "get",
            "ns",
            "default",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        "namespace/default",
        "{}",
        text(&v)
    );

    let logs = env.hoist(&["cluster", "logs"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("API server listening"),
        "{}",
        text(&logs)
    );

    let down = env.hoist(&["cluster", "down"]);
    assert!(
        String::from_utf8_lossy(&down.stdout).contains("Stopped"),
        "{}",
        text(&down)
    );
    let st = env.hoist(&["cluster", "status"]);
    assert!(!st.status.success());
    assert!(String::from_utf8_lossy(&st.stdout).contains("not running"));
}

#[test]
fn refuses_non_loopback_addresses() {
    let env = Env::new();
    let out = env.hoist(&["cluster", "up", "--address", "0.0.0.0", "--port", "0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{}",
        text(&out)
    );
}

fn wait_for(path: &Path, deadline: Instant) {
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL during a burst of writes: every acknowledged write survives and RVs go on upward.
#[test]
fn acknowledged_writes_survive_sigkill() {
    let env = Env::new();
    let up = env.hoist(&["cluster", "up", "--port", "0"]);
    assert!(up.status.success(), "{}", text(&up));
    let pid: i32 = std::fs::read_to_string(env.data().join("server.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let addr: std::net::SocketAddr = std::fs::read_to_string(env.data().join("server.addr"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pki = hoist_cluster::tls::Pki::load_or_generate(&env.data().join("pki")).unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let writer = {
        let acked = acked.clone();
        let pki = pki.clone();
        std::thread::spawn(move || {
            for i in 0..2000 {
                let body = format!(
                    r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"burst-{i}"}},"data":{{"i":"{i}"}}}}"#
                );
                let r = hoist_cluster::daemon::request(
                    addr,
                    &pki,
                    true,
                    "POST",
                    "/api/v1/namespaces/default/configmaps",
                    Some(("application/json", body.as_bytes())),
                    Duration::from_secs(2),
                );
                match r {
                    Ok((201, b)) => {
                        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
                        let rv = v["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        acked.lock().unwrap().push((format!("burst-{i}"), rv));
                    }
                    _ => return,
                }
            }
        })
    };
    // Kill once a good number of writes went through.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 50 {
        assert!(Instant::now() < deadline, "writes did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { libc_kill(pid, 9) };
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let max_rv = acked.iter().map(|(_, rv)| *rv).max().unwrap();
    // Wait until the killed process is gone, then restart on the same data dir.
    let deadline = Instant::now() + Duration::from_secs(10);
    while unsafe { libc_kill(pid, 0) } == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(env.data().join("server.addr"));
    let up = env.hoist(&["cluster", "up", "--port", "0"]);
    assert!(up.status.success(), "{}", text(&up));
    wait_for(
        &env.data().join("server.addr"),
        Instant::now() + Duration::from_secs(10),
    );
    let list = env.kubectl(&["get", "cm", "-n", "default", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: std::collections::HashSet<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    for (name, _) in &acked {
        assert!(
            names.contains(name.as_str()),
            "acknowledged write {name} lost ({} acked)",
            acked.len()
        );
    }
    let create = env.kubectl(&["create", "cm", "after-restart", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&create.stdout).unwrap();
    let rv: u64 = v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv > max_rv,
        "resourceVersion went backwards: {rv} <= {max_rv}"
    );
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn foreground_serves_until_sigterm_and_cleans_up() {
    let env = Env::new();
    let mut child = Command::cargo_bin("hoist")
        .unwrap()
        .args(["cluster", "up", "--foreground", "--port", "0", "--data-dir"])
        .arg(env.data())
        .env("KUBECONFIG", env.kubeconfig())
        .env("HOME", env.dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        &env.data().join("server.addr"),
        Instant::now() + Duration::from_secs(20),
    );
    // The kubeconfig is written once serving starts; poll for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = env.kubectl(&["get", "ns", "default", "-o", "name"]);
        if out.status.success() {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "namespace/default"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out));
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc_kill(child.id() as i32, 15) };
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "foreground server exits cleanly on SIGTERM: {status:?}"
    );
    assert!(!env.data().join("server.pid").exists() && !env.data().join("server.addr").exists());
}

#[test]
fn up_without_runc_serves_the_api_and_says_why_pods_will_not_run() {
    let env = Env::new();
    let out = Command::cargo_bin("hoist")
        .unwrap()
        .args(["cluster", "up", "--port", "0", "--data-dir"])
        .arg(env.data())
        .env("KUBECONFIG", env.kubeconfig())
        .env("HOME", env.dir.path())
        .env("HOIST_RUNC", env.dir.path().join("no-runc-here"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pods will not run") && err.contains("install runc"),
        "{}",
        text(&out)
    );
    // The API itself works.
    let ns = env.kubectl(&["get", "ns", "default", "-o", "name"]);
    assert!(ns.status.success(), "{}", text(&ns));
}
