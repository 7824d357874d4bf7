//! Shared test fixtures: a `scratch` + busybox image in a local store, and pods torn down by
//! a Drop guard even when an assertion fails.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hoist_oci::manifest::ImageConfig;
use hoist_oci::{Digest, LayerBuilder, LayerSpec, LocalStore, Platform, RawManifest, Reference};
use hoist_runtime::{
    Bundle, ContainerSpec, ImageUnpacker, IpAllocator, PodNetwork, Runtime, UnpackedImage,
};

pub const IMAGE: &str = "hoist.test/busybox:1";
pub const PAGE: &str = "<h1>hello from hoist</h1>\n";

/// Root and runc present? Otherwise print why the test is skipped.
pub fn runnable(test: &str) -> bool {
    match hoist_runtime::check_host() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            false
        }
    }
}

/// A `scratch` image holding /bin/busybox, its applet symlinks and /www/index.html.
pub fn busybox_store(dir: &Path) -> (LocalStore, Reference) {
    let stage = dir.join("stage");
    std::fs::create_dir_all(stage.join("bin")).unwrap();
    std::fs::create_dir_all(stage.join("www")).unwrap();
    std::fs::create_dir_all(stage.join("etc")).unwrap();
    std::fs::create_dir_all(stage.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", stage.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "httpd", "wget", "cat", "sleep", "echo", "ls", "ip", "hostname", "id", "true",
    ] {
        std::os::unix::fs::symlink("busybox", stage.join("bin").join(applet)).unwrap();
    }
    std::fs::write(stage.join("www/index.html"), PAGE).unwrap();
    std::fs::write(
        stage.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(stage.join("etc/group"), "root:x:0:\nweb:x:1001:\n").unwrap();
    let mut b = LayerBuilder::new().fast();
    b.add(&LayerSpec {
        from: stage.clone(),
        to: "/".into(),
        ..Default::default()
    })
    .unwrap();
    let layer = b.build().unwrap();
    let mut config = ImageConfig::empty(&Platform::linux_amd64());
    let cc = config.config.as_mut().unwrap();
    cc.cmd = Some(vec!["sh".into()]);
    cc.env = Some(vec!["PATH=/bin".into(), "IMAGE_ONLY=1".into()]);
    config.rootfs.diff_ids = vec![layer.diff_id.clone()];
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = Digest::of(&config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer.digest.to_string(), "size": layer.blob.len()}],
    });
    let raw = RawManifest::new(serde_json::to_vec(&manifest).unwrap(), None).unwrap();
    let store = LocalStore::open(dir.join("store")).unwrap();
    let reference = Reference::parse(IMAGE).unwrap();
    store
        .put_image(
            &reference,
            &raw,
            &[
                (config_digest, &config_bytes[..]),
                (layer.digest.clone(), &layer.blob[..]),
            ],
        )
        .unwrap();
    (store, reference)
}

/// Unique ids across the tests of one process and across concurrent test processes.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Everything one test needs, in one temp dir.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: LocalStore,
    pub reference: Reference,
    pub unpacker: ImageUnpacker,
    pub runtime: Runtime,
    pub ips: IpAllocator,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, reference) = busybox_store(dir.path());
        let unpacker = ImageUnpacker::new(dir.path().join("cache")).unwrap();
        let runtime = Runtime::new(dir.path().join("runc")).unwrap();
        let ips = IpAllocator::new(dir.path().join("ipam.json"));
        Self {
            dir,
            store,
            reference,
            unpacker,
            runtime,
            ips,
        }
    }

    pub fn image(&self) -> UnpackedImage {
        self.unpacker.unpack(&self.store, &self.reference).unwrap()
    }

    /// A pod with one container running `spec` (hostname/netns/etc files filled in).
    pub fn start_pod(&self, name: &str, mut spec: ContainerSpec) -> Pod<'_> {
        self.start_pod_with(&self.unpacker, name, &mut spec)
    }

    pub fn start_pod_with<'a>(
        &'a self,
        unpacker: &ImageUnpacker,
        name: &str,
        spec: &mut ContainerSpec,
    ) -> Pod<'a> {
        let id = unique(name);
        let ip = self.ips.allocate(&id).unwrap();
        let mut pod = Pod {
            env: self,
            id: id.clone(),
            dir: self.dir.path().join("pods").join(&id),
            net: None,
            ip,
            started: false,
        };
        pod.net = Some(PodNetwork::create(&id, ip).unwrap());
        std::fs::create_dir_all(&pod.dir).unwrap();
        let hostname = pod.dir.join("hostname");
        std::fs::write(&hostname, format!("{name}\n")).unwrap();
        let hosts = pod.dir.join("hosts");
        std::fs::write(&hosts, format!("127.0.0.1 localhost\n{ip} {name}\n")).unwrap();
        spec.hostname = name.into();
        spec.netns = Some(pod.net.as_ref().unwrap().path.clone());
        spec.etc_hostname = Some(hostname);
        spec.etc_hosts = Some(hosts);
        let image = unpacker.unpack(&self.store, &self.reference).unwrap();
        let rootfs = unpacker.prepare_rootfs(&image, &pod.dir).unwrap();
        Bundle::write(&pod.dir, &id, &rootfs.path, &image.config, spec).unwrap();
        self.runtime.run(&id, &pod.dir, &pod.log_path()).unwrap();
        pod.started = true;
        pod
    }
}

pub struct Pod<'a> {
    pub env: &'a Env,
    pub id: String,
    pub dir: PathBuf,
    pub net: Option<PodNetwork>,
    pub ip: Ipv4Addr,
    pub started: bool,
}

impl Pod<'_> {
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }

    pub fn net(&self) -> &PodNetwork {
        self.net.as_ref().unwrap()
    }

    /// Poll the log until `needle` appears (bounded).
    pub fn wait_log(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if text.contains(needle) || Instant::now() >= deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// HTTP GET `path` on `port` inside the pod, retried until the deadline.
    pub fn http_get(&self, port: u16, path: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match self.net().connect(port, Duration::from_secs(2)) {
                Ok(mut s) => {
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    write!(s, "GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").unwrap();
                    let mut resp = String::new();
                    s.read_to_string(&mut resp).unwrap();
                    return resp;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("connecting to port {port} in pod {}: {e}", self.id),
            }
        }
    }

    pub fn teardown(&mut self) {
        if self.started {
            let _ = self.env.runtime.kill(&self.id, Duration::from_millis(200));
            self.env.runtime.delete(&self.id).unwrap();
            self.started = false;
        }
        ImageUnpacker::release_rootfs(&self.dir).unwrap();
        if let Some(n) = self.net.take() {
            n.delete().unwrap();
        }
        self.env.ips.release(&self.id).unwrap();
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if self.started || self.net.is_some() {
            // Best effort while unwinding from a failed assertion.
            if self.started {
                let _ = self.env.runtime.delete(&self.id);
            }
            let _ = ImageUnpacker::release_rootfs(&self.dir);
            if let Some(n) = self.net.take() {
                let _ = n.delete();
            }
        }
    }
}
