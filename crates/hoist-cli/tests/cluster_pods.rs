//! Pods through the real `hoist cluster up|down` daemon, real runc and real kubectl (as
//! root; skipped otherwise): after SIGKILL of the server and a restart the pod runs again
//! once (no duplicate, no leftover), and `hoist cluster down` leaves no container or
//! network namespace behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

#[path = "../../hoist-cluster/tests/common/image.rs"]
mod image;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn runc_root(&self) -> PathBuf {
        self.data().join("kubelet/runc")
    }
    fn hoist(&self, args: &[&str]) -> Output {
        Command::cargo_bin("hoist")
            .unwrap()
            .args(args)
            .arg("--data-dir")
            .arg(self.data())
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .env("HOIST_CACHE_DIR", self.dir.path().join("cache"))
            .output()
            .unwrap()
    }
    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--request-timeout=10s")
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// runc containers of this cluster: (id, pid, status).
    fn containers(&self) -> Vec<(String, i64, String)> {
        let out = Command::new("runc")
            .arg("--root")
            .arg(self.runc_root())
            .args(["list", "-f", "json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or("").to_string(),
                    c["pid"].as_i64().unwrap_or(0),
                    c["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
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

/// `scratch` + busybox, in the store `HOIST_CACHE_DIR` points at.
fn put_image(cache: &Path, reference: &str) {
    let stage = cache.join("stage");
    image::stage_busybox(&stage, &["sh", "sleep", "echo"]);
    image::put_busybox_image(&cache.join("images"), reference, &stage, &[]);
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

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: hoist.test/sleeper:1, imagePullPolicy: Never, command: ["sleep", "3600"]}
"#;

#[test]
fn pods_survive_a_server_crash_once_and_cluster_down_removes_everything() {
    if let Err(e) = hoist_cluster::kubelet::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    put_image(&env.dir.path().join("cache"), "hoist.test/sleeper:1");
    let up = env.hoist(&["cluster", "up", "--port", "0"]);
    assert!(up.status.success(), "{}", text(&up));
    let nodes = env.kubectl(&["get", "nodes"]);
    assert!(
        nodes.contains("hoist") && nodes.contains("Ready"),
        "{nodes}"
    );
    let file = env.dir.path().join("pod.yaml");
    std::fs::write(&file, POD).unwrap();
    env.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    env.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/sleeper",
        "--timeout=30s",
    ]);
    let before = env.containers();
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].2, "running");

    // SIGKILL: the container outlives the server; a restart must not duplicate it.
    let pid: i32 = std::fs::read_to_string(env.data().join("server.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc_kill(pid, 9) };
    poll(Duration::from_secs(10), "the server to die", || {
        (unsafe { libc_kill(pid, 0) } != 0).then_some(())
    });
    let up = env.hoist(&["cluster", "up", "--port", "0"]);
    assert!(up.status.success(), "{}", text(&up));
    let after = poll(Duration::from_secs(30), "the pod to run again", || {
        let c = env.containers();
        (c.len() == 1 && c[0].2 == "running" && c[0].1 != before[0].1).then_some(c)
    });
    assert_eq!(after.len(), 1, "duplicate containers: {after:?}");
    env.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/sleeper",
        "--timeout=30s",
    ]);
    let uid = env.kubectl(&["get", "pod", "sleeper", "-o", "jsonpath={.metadata.uid}"]);

    // cluster down: nothing of the cluster keeps running.
    let down = env.hoist(&["cluster", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(env.containers().is_empty(), "{:?}", env.containers());
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains(&uid),
        "network namespace of {uid} left behind"
    );
}

#[test]
fn cluster_down_after_the_server_was_killed_removes_its_containers() {
    if let Err(e) = hoist_cluster::kubelet::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    put_image(&env.dir.path().join("cache"), "hoist.test/sleeper:1");
    let up = env.hoist(&["cluster", "up", "--port", "0"]);
    assert!(up.status.success(), "{}", text(&up));
    let file = env.dir.path().join("pod.yaml");
    std::fs::write(&file, POD).unwrap();
    env.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    env.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/sleeper",
        "--timeout=30s",
    ]);
    let uid = env.kubectl(&["get", "pod", "sleeper", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(env.containers().len(), 1);
    let pid: i32 = std::fs::read_to_string(env.data().join("server.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc_kill(pid, 9) };
    poll(Duration::from_secs(10), "the server to die", || {
        (unsafe { libc_kill(pid, 0) } != 0).then_some(())
    });
    assert_eq!(
        env.containers().len(),
        1,
        "the container outlives its server"
    );

    let down = env.hoist(&["cluster", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        String::from_utf8_lossy(&down.stdout).contains("1 container(s)"),
        "{}",
        text(&down)
    );
    assert!(env.containers().is_empty(), "{:?}", env.containers());
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains(&uid),
        "network namespace of {uid} left behind"
    );
}
