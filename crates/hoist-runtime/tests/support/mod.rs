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
    ContainerHandle, ContainerSpec, ImageUnpacker, IpAllocator, PodNetwork, PodSandbox, Runtime,
    SandboxConfig, UnpackedImage,
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
    let layer_bytes = layer.read().unwrap();
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
                    "digest": layer.digest.to_string(), "size": layer.size}],
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
                (layer.digest.clone(), &layer_bytes[..]),
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
        let pod_id = unique(name);
        let sandbox = PodSandbox::create(
            &self.dir.path().join("pods"),
            &self.ips,
            &pod_id,
            &SandboxConfig {
                hostname: name.into(),
                hosts: vec![(
                    Ipv4Addr::new(127, 64, 255, 1),
                    vec!["web.default.svc".into()],
                )],
                resolv_conf: Some("search default.svc.cluster.local\noptions ndots:5\n".into()),
            },
        )
        .unwrap();
        let mut pod = Pod {
            env: self,
            id: String::new(),
            dir: PathBuf::new(),
            ip: sandbox.net.ip,
            sandbox: Some(sandbox),
            container: None,
            started: false,
        };
        let image = unpacker.unpack(&self.store, &self.reference).unwrap();
        let c = pod
            .sandbox
            .as_ref()
            .unwrap()
            .start_container(&self.runtime, unpacker, &image, spec, 0)
            .unwrap();
        pod.id = c.id.clone();
        pod.dir = c.bundle_dir.clone();
        pod.container = Some(c);
        pod.started = true;
        pod
    }
}

pub struct Pod<'a> {
    pub env: &'a Env,
    /// The runc id of the pod's one container.
    pub id: String,
    /// Its bundle directory.
    pub dir: PathBuf,
    pub ip: Ipv4Addr,
    pub sandbox: Option<PodSandbox>,
    pub container: Option<ContainerHandle>,
    pub started: bool,
}

impl Pod<'_> {
    pub fn log_path(&self) -> PathBuf {
        self.container.as_ref().unwrap().log_path.clone()
    }

    pub fn net(&self) -> &PodNetwork {
        &self.sandbox.as_ref().unwrap().net
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
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("connecting to port {port} in pod {}: {e}", self.id),
            }
        }
    }

    pub fn teardown(&mut self) {
        if let Some(c) = self.container.take()
            && self.started
        {
            PodSandbox::remove_container(&self.env.runtime, &c, Duration::from_millis(200))
                .unwrap();
            self.started = false;
        }
        if let Some(s) = self.sandbox.take() {
            s.destroy(&self.env.runtime, &self.env.ips).unwrap();
        }
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        // Best effort while unwinding from a failed assertion: destroy force-deletes.
        if let Some(s) = self.sandbox.take() {
            let _ = s.destroy(&self.env.runtime, &self.env.ips);
        }
    }
}
