//! Pods that really run: the embedded cluster with its kubelet (real runc, as root) and a
//! `scratch` + busybox image in a temp local store, plus small HTTP and API helpers.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use hoist_cluster::kubelet::{self, KubeletConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../../hoist-cluster/tests/common/image.rs"]
mod image;

/// busybox httpd serving /www, with tar/rm/kill available as applets.
pub const WEB_IMAGE: &str = "hoist.test/kube-web:1";
/// Only `/bin/httpd` (busybox under that name): no shell, no tar, no /bin/busybox.
pub const BARE_IMAGE: &str = "hoist.test/kube-bare:1";
pub const PAGE: &str = "<h1>from the image</h1>\n";

pub struct Node {
    pub cluster: Option<super::Cluster>,
    kubelet: Option<kubelet::Kubelet>,
    pub client: kube::Client,
    pub namespace: String,
    pub data_dir: std::path::PathBuf,
}

/// `None` (with a note on stderr) when this host cannot run containers (not root, no runc).
pub async fn start() -> Option<Node> {
    if let Err(e) = hoist_runtime::check_host() {
        eprintln!("SKIPPED: {e}");
        return None;
    }
    let cluster = super::Cluster::start().await;
    let dir = cluster.dir.path().to_path_buf();
    // hoist-oci's build runs its own runtime: not on this one's threads.
    let store = {
        let dir = dir.clone();
        std::thread::spawn(move || build_images(&dir))
            .join()
            .expect("images built")
    };
    let data_dir = dir.join("data");
    let mut cfg = KubeletConfig::in_data_dir(&data_dir);
    cfg.image_store = store;
    let app = cluster.server.as_ref().unwrap().app.clone();
    let kubelet = kubelet::start(app, cfg).expect("kubelet starts");
    let client = cluster.target("kubeio", "dev").await.1;
    Some(Node {
        cluster: Some(cluster),
        kubelet: Some(kubelet),
        client,
        namespace: "default".into(),
        data_dir,
    })
}

fn build_images(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    let stage = dir.join("stage-web");
    image::stage_busybox(
        &stage,
        &[
            "sh", "httpd", "cat", "sleep", "echo", "tar", "rm", "kill", "ls", "mkdir",
        ],
    );
    std::fs::create_dir_all(stage.join("www/old")).unwrap();
    std::fs::write(stage.join("www/index.html"), PAGE).unwrap();
    std::fs::write(stage.join("www/old.txt"), "old\n").unwrap();
    std::fs::write(stage.join("www/old/a.txt"), "a\n").unwrap();
    image::put_busybox_image(&store, WEB_IMAGE, &stage, &["sh"]);
    let bare = dir.join("stage-bare");
    std::fs::create_dir_all(bare.join("bin")).unwrap();
    std::fs::create_dir_all(bare.join("www")).unwrap();
    std::fs::copy("/bin/busybox", bare.join("bin/httpd")).unwrap();
    std::fs::write(bare.join("www/index.html"), PAGE).unwrap();
    image::put_busybox_image(&store, BARE_IMAGE, &bare, &[]);
    store
}

impl Node {
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates any object from JSON (namespaced in `default`).
    pub async fn create(&self, obj: Value) {
        let api_version = obj["apiVersion"].as_str().unwrap();
        let kind = obj["kind"].as_str().unwrap();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let (ar, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .unwrap();
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar);
        let obj: kube::api::DynamicObject = serde_json::from_value(obj).unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
    }

    /// Names of the ready pods matching `selector`, once there are `n` (bounded wait).
    pub async fn ready_pods(&self, selector: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = self
                .pods()
                .list(&kube::api::ListParams::default().labels(selector))
                .await
                .unwrap();
            let ready: Vec<String> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .map(|p| p.metadata.name.clone().unwrap())
                .collect();
            if ready.len() >= n {
                return ready;
            }
            assert!(
                Instant::now() < deadline,
                "{n} ready pods for {selector}: have {ready:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client that reaches the API server through `proxy` (a kubeconfig of its own).
    pub async fn client_via(&self, proxy: std::net::SocketAddr) -> kube::Client {
        let cluster = self.cluster.as_ref().unwrap();
        let server = cluster.server.as_ref().unwrap();
        let path = cluster
            .dir
            .path()
            .join(format!("kubeconfig-{}", proxy.port()));
        std::fs::write(
            &path,
            hoist_cluster::kubeconfig::standalone(&format!("https://{proxy}"), &server.pki),
        )
        .unwrap();
        let mut opts = cluster.options("kubeio", "dev");
        opts.kubeconfig = Some(path);
        hoist_kube::ClusterTarget::from_options(&opts)
            .unwrap()
            .client()
            .await
            .unwrap()
    }

    pub fn api_addr(&self) -> std::net::SocketAddr {
        self.cluster.as_ref().unwrap().server.as_ref().unwrap().addr
    }

    pub async fn delete_pod(&self, name: &str) {
        self.pods()
            .delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }

    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(k) = self.kubelet.take() {
            tokio::task::spawn_blocking(move || k.shutdown())
                .await
                .unwrap();
        }
        if let Some(c) = self.cluster.take() {
            c.stop().await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A failed assertion skipped `stop`: still remove every container.
        if let Some(k) = self.kubelet.take() {
            tokio::task::block_in_place(|| k.shutdown());
        }
    }
}

/// `GET path` on 127.0.0.1:port over HTTP/1.0: (status code, body).
pub async fn try_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: web\r\n\r\n").as_bytes())
        .await?;
    let mut out = vec![];
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// [`try_get`] that must answer within 10 s.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    tokio::time::timeout(Duration::from_secs(10), try_get(port, path))
        .await
        .expect("HTTP GET within 10s")
        .expect("HTTP GET")
}

/// Polls `GET path` until the answer satisfies `ok` (bounded: 20 s).
pub async fn http_until(port: u16, path: &str, ok: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = tokio::time::timeout(Duration::from_secs(5), try_get(port, path)).await;
        if let Ok(Ok((code, body))) = &r
            && ok(*code, body)
        {
            return (*code, body.clone());
        }
        assert!(Instant::now() < deadline, "GET {path}: last answer {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
