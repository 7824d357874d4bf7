//! Harness: the real embedded cluster (hoist-cluster) on 127.0.0.1:0 with a temp data
//! dir and a temp kubeconfig, a kube-rs client through hoist-kube's own target code,
//! and `kubectl` as an outside check.

#![allow(dead_code)]

pub mod pods;
pub mod proxy;

use std::path::PathBuf;
use std::process::Command;

use hoist_cluster::{RunningServer, ServerConfig};
use hoist_kube::{ClusterTarget, TargetOptions};

pub struct Cluster {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = hoist_cluster::start(ServerConfig {
            data_dir: dir.path().join("data"),
            addr: "127.0.0.1:0".parse().unwrap(),
            allow_non_loopback: false,
        })
        .await
        .expect("server starts");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            hoist_cluster::kubeconfig::standalone(&format!("https://{}", server.addr), &server.pki),
        )
        .unwrap();
        Cluster {
            server: Some(server),
            dir,
            kubeconfig,
        }
    }

    pub fn options(&self, project: &str, developer: &str) -> TargetOptions {
        TargetOptions {
            kubeconfig: Some(self.kubeconfig.clone()),
            allow_current_context: true,
            project: project.into(),
            developer: Some(developer.into()),
            ..Default::default()
        }
    }

    pub async fn target(&self, project: &str, developer: &str) -> (ClusterTarget, kube::Client) {
        let t = ClusterTarget::from_options(&self.options(project, developer)).expect("target");
        let c = t.client().await.expect("client");
        (t, c)
    }

    /// `kubectl ... -o json` (asserts success).
    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        let args: Vec<&str> = args.iter().copied().chain(["-o", "json"]).collect();
        serde_json::from_str(&self.kubectl(&args)).expect("JSON")
    }

    /// `kubectl ...` against this cluster (asserts success); its stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .arg("--request-timeout=20s")
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}
