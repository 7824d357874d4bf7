//! `pods/portforward` end to end with real runc (as root; skipped otherwise): real
//! `kubectl port-forward` to a pod and to a Service (SPDY/3.1 tunnelled in WebSocket, and
//! plain SPDY/3.1), two concurrent connections through one forward, and kube-rs
//! `Api::portforward` (WebSocket channels).

mod common;
#[path = "common/image.rs"]
mod image;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hoist_cluster::kubelet::{self, KubeletConfig};

const IMAGE: &str = "hoist.test/web:1";
const PAGE: &str = "<h1>hello from a hoist pod</h1>\n";

/// A `scratch` image with /bin/busybox, a few applets and /www/index.html, in a store.
fn busybox_store(dir: &Path) -> std::path::PathBuf {
    let stage = dir.join("stage");
    image::stage_busybox(&stage, &["sh", "httpd", "cat", "sleep", "echo"]);
    std::fs::create_dir_all(stage.join("www")).unwrap();
    std::fs::write(stage.join("www/index.html"), PAGE).unwrap();
    std::fs::write(stage.join("www/big.txt"), big_page()).unwrap();
    let store_dir = dir.join("store");
    image::put_busybox_image(&store_dir, IMAGE, &stage, &["sh"]);
    store_dir
}

/// Stops the kubelet (every container and namespace) even when an assertion failed.
struct KubeletGuard(Option<kubelet::Kubelet>);

impl KubeletGuard {
    fn shutdown(mut self) {
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

/// A cluster with a kubelet whose image store holds [`IMAGE`].
fn start_with_kubelet() -> (common::TestCluster, KubeletGuard) {
    let cluster = common::TestCluster::start();
    let store = busybox_store(cluster.dir.path());
    let k = cluster.dir.path().join("kubelet");
    let cfg = KubeletConfig {
        runc_root: k.join("runc"),
        pods_dir: k.join("pods"),
        image_cache: k.join("images"),
        ipam_file: k.join("ipam.json"),
        image_store: store,
    };
    let app = cluster.server.as_ref().unwrap().app.clone();
    let kubelet = {
        let _rt = cluster.rt.enter();
        KubeletGuard(Some(kubelet::start(app, cfg).expect("kubelet starts")))
    };
    (cluster, kubelet)
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"#;

/// 3 MiB: many SPDY/WebSocket frames, more than any default flow-control window.
fn big_page() -> String {
    (0..240_000).map(|i| format!("line {i:07}\n")).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / on 127.0.0.1:port with deadlines; returns the whole response.
fn http_get(port: u16) -> String {
    http_get_path(port, "/")
}

fn http_get_path(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(5),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: web\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Kills kubectl even when an assertion failed.
struct Forward(Child);

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kubectl port-forward TARGET LOCAL:80`, ready once it prints "Forwarding from".
/// `websockets: false` makes kubectl use the plain SPDY/3.1 upgrade.
fn port_forward(cluster: &common::TestCluster, target: &str, websockets: bool) -> (Forward, u16) {
    let local = free_port();
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.dir.path())
        .env(
            "KUBECTL_PORT_FORWARD_WEBSOCKETS",
            if websockets { "true" } else { "false" },
        )
        .args(["port-forward", "--address", "127.0.0.1", target])
        .arg(format!("{local}:80"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut fwd = Forward(child);
    let line = rx.recv_timeout(Duration::from_secs(20));
    if !matches!(&line, Ok(l) if l.starts_with("Forwarding from")) {
        let _ = fwd.0.kill();
        let mut err = String::new();
        let _ = fwd.0.stderr.take().unwrap().read_to_string(&mut err);
        panic!("kubectl port-forward {target} did not start: {line:?} {err}");
    }
    (fwd, local)
}

#[test]
fn kubectl_and_kube_rs_forward_ports_to_pods() {
    if let Err(e) = hoist_runtime::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (cluster, kubelet) = start_with_kubelet();
    let web = cluster.dir.path().join("web.yaml");
    std::fs::write(&web, WEB).unwrap();
    cluster.ok(&["apply", "-f", web.to_str().unwrap()]);
    cluster.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"]);
    // httpd listens once the container runs; kubectl exec is not needed to know that.
    let deadline = Instant::now() + Duration::from_secs(10);

    // SPDY tunnelled in WebSocket (kubectl's default), to the pod; two concurrent
    // connections through the one forward.
    {
        let (_fwd, local) = port_forward(&cluster, "pod/web", true);
        let first = loop {
            let r = std::panic::catch_unwind(|| http_get(local));
            match r {
                Ok(r) if r.contains(PAGE) => break r,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                r => panic!("no page through kubectl port-forward: {r:?}"),
            }
        };
        assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
        let a = std::thread::spawn(move || http_get(local));
        let b = std::thread::spawn(move || http_get(local));
        for r in [a.join().unwrap(), b.join().unwrap()] {
            assert!(r.contains(PAGE), "{r}");
        }
        let big = http_get_path(local, "/big.txt");
        let body = big.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        assert!(body == big_page(), "big body: {} bytes", body.len());
    }
    // kubectl resolves the Service to its pod and port client-side.
    {
        let (_fwd, local) = port_forward(&cluster, "svc/web", true);
        let r = http_get(local);
        assert!(r.contains(PAGE), "{r}");
    }
    // The plain SPDY/3.1 upgrade (kubectl's fallback).
    {
        let (_fwd, local) = port_forward(&cluster, "pod/web", false);
        let r = http_get(local);
        assert!(r.contains(PAGE), "{r}");
        let big = http_get_path(local, "/big.txt");
        let body = big.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        assert!(body == big_page(), "big body: {} bytes", body.len());
    }
    // A port nothing listens on: kubectl reports the pod-side error on the error stream.
    {
        let local = free_port();
        let mut child = Forward(
            Command::new("kubectl")
                .env("KUBECONFIG", &cluster.kubeconfig)
                .env("HOME", cluster.dir.path())
                .args(["port-forward", "pod/web"])
                .arg(format!("{local}:81"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let connected = (0..100).find_map(|_| {
            std::net::TcpStream::connect(("127.0.0.1", local))
                .ok()
                .or_else(|| {
                    std::thread::sleep(Duration::from_millis(100));
                    None
                })
        });
        let mut s = connected.expect("kubectl listens");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let _ = child.0.kill();
        let _ = child.0.wait();
        let mut err = String::new();
        let _ = child.0.stderr.take().unwrap().read_to_string(&mut err);
        assert!(err.contains("error forwarding port 81"), "{err}");
    }

    // kube-rs: WebSocket channels.
    cluster.rt.block_on(async {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let kc = Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(cfg).unwrap();
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::default_namespaced(client);
        let work = async {
            let mut pf = pods.portforward("web", &[80]).await.unwrap();
            let mut s = pf.take_stream(80).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            drop(s);
            let _ = pf.join().await;
            String::from_utf8_lossy(&out).into_owned()
        };
        let page = tokio::time::timeout(Duration::from_secs(20), work)
            .await
            .expect("kube-rs portforward finishes");
        assert!(page.contains(PAGE), "{page}");
        // Nothing listens on 81: the error channel says so.
        let work = async {
            let mut pf = pods.portforward("web", &[81]).await.unwrap();
            let err = pf.take_error(81).unwrap().await;
            let _ = pf.join().await;
            err
        };
        let err = tokio::time::timeout(Duration::from_secs(20), work)
            .await
            .expect("kube-rs portforward to a closed port finishes");
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("error forwarding port 81")),
            "{err:?}"
        );
    });
    kubelet.shutdown();
}
