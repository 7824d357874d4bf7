//! Test harness: an in-process cluster on 127.0.0.1:0 with a temp data dir and a temp
//! kubeconfig, and a `kubectl` runner bound to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hoist_cluster::{RunningServer, ServerConfig};

pub struct TestCluster {
    pub rt: tokio::runtime::Runtime,
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub addr: SocketAddr,
}

impl TestCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir)
    }

    pub fn start_in(dir: tempfile::TempDir) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cfg = ServerConfig {
            data_dir: dir.path().join("data"),
            addr: "127.0.0.1:0".parse().unwrap(),
            allow_non_loopback: false,
        };
        let server = rt
            .block_on(hoist_cluster::start(cfg))
            .expect("server starts");
        let addr = server.addr;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            hoist_cluster::kubeconfig::standalone(&format!("https://{addr}"), &server.pki),
        )
        .unwrap();
        Self {
            rt,
            server: Some(server),
            dir,
            kubeconfig,
            addr,
        }
    }

    /// Stops the server and starts a new one on the same data dir (new port).
    pub fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
        let cfg = ServerConfig {
            data_dir: self.dir.path().join("data"),
            addr: "127.0.0.1:0".parse().unwrap(),
            allow_non_loopback: false,
        };
        let server = self
            .rt
            .block_on(hoist_cluster::start(cfg))
            .expect("server restarts");
        self.addr = server.addr;
        std::fs::write(
            &self.kubeconfig,
            hoist_cluster::kubeconfig::standalone(&format!("https://{}", self.addr), &server.pki),
        )
        .unwrap();
        self.server = Some(server);
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_in(args, None)
    }

    pub fn kubectl_in(&self, args: &[&str], stdin_file: Option<&Path>) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .arg("--request-timeout=20s")
            .args(args);
        if let Some(f) = stdin_file {
            cmd.stdin(std::fs::File::open(f).unwrap());
        }
        cmd.output().expect("kubectl runs")
    }

    /// Runs kubectl, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// Runs kubectl, asserts failure and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stderr
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl -o json prints JSON")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}

pub fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}
