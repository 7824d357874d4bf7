//! A test cluster with a kubelet on real runc, whose local image store holds a
//! `scratch` + busybox image ([`IMAGE`]); used by the workload tests through
//! `#[path = "common/node.rs"]` next to `mod common;` and the `image` module.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hoist_cluster::kubelet::{self, KubeletConfig};

use crate::common::TestCluster;

pub const IMAGE: &str = "hoist.test/web:1";
pub const PAGE: &str = "<h1>hello from a hoist pod</h1>\n";

/// Stops the kubelet (every container and namespace) even when an assertion failed.
pub struct KubeletGuard(pub Option<kubelet::Kubelet>);

impl KubeletGuard {
    /// Stops the kubelet now (tests that check what it leaves behind).
    pub fn shutdown(mut self) {
        if let Some(k) = self.0.take() {
            k.shutdown();
        }
    }
}

impl Drop for KubeletGuard {
    fn drop(&mut self) {
        if let Some(k) = self.0.take() {
            k.shutdown();
        }
    }
}

/// A cluster with a kubelet whose image store holds [`IMAGE`] (busybox with `applets`,
/// /www/index.html = [`PAGE`]); returns the runc root too.
pub fn start(applets: &[&str]) -> (TestCluster, KubeletGuard, PathBuf) {
    let cluster = TestCluster::start();
    let dir = cluster.dir.path();
    let stage = dir.join("stage");
    crate::image::stage_busybox(&stage, applets);
    std::fs::create_dir_all(stage.join("www")).unwrap();
    std::fs::write(stage.join("www/index.html"), PAGE).unwrap();
    let store = dir.join("store");
    crate::image::put_busybox_image(&store, IMAGE, &stage, &["sh"]);
    let k = dir.join("kubelet");
    let cfg = KubeletConfig {
        runc_root: k.join("runc"),
        pods_dir: k.join("pods"),
        image_cache: k.join("images"),
        ipam_file: k.join("ipam.json"),
        image_store: store,
    };
    let runc_root = cfg.runc_root.clone();
    let app = cluster.server.as_ref().unwrap().app.clone();
    let guard = {
        let _rt = cluster.rt.enter();
        KubeletGuard(Some(kubelet::start(app, cfg).expect("kubelet starts")))
    };
    (cluster, guard, runc_root)
}

/// Polls `f` every 50 ms until it returns Some or `limit` passes.
pub fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    poll_until(
        limit,
        || f().ok_or(()),
        |()| format!("timed out waiting for {what}"),
    )
}

/// [`poll`] for an `f` that returns what it saw (`Err`) when not done yet: the failure
/// after `limit` shows the last of that.
pub fn poll_with_last<T, L: std::fmt::Display>(
    limit: Duration,
    what: &str,
    f: impl FnMut() -> Result<T, L>,
) -> T {
    poll_until(limit, f, |last| {
        format!("timed out waiting for {what}; last seen: {last}")
    })
}

/// Calls `f` every 50 ms until it returns Ok; after `limit`, panics with `fail` of its
/// last Err.
fn poll_until<T, L>(
    limit: Duration,
    mut f: impl FnMut() -> Result<T, L>,
    fail: impl FnOnce(L) -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => panic!("{}", fail(last)),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub fn runc_list(root: &Path) -> String {
    let out = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .output()
        .expect("runc runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the container tests must be skipped here (not root, no runc): says why.
pub fn skip() -> bool {
    match hoist_runtime::check_host() {
        Ok(_) => false,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            true
        }
    }
}

/// Applies a YAML document.
pub fn apply(cluster: &TestCluster, name: &str, yaml: &str) {
    let file = cluster.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    cluster.ok(&["apply", "-f", file.to_str().unwrap()]);
}
