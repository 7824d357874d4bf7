//! A pod as the kubelet sees it: one network namespace with its loopback IP, the
//! /etc/hosts, /etc/hostname and /etc/resolv.conf files all its containers share, and
//! its containers' bundles and CRI logs under one directory.
//!
//! Layout under the sandbox root (e.g. `/run/hoist/pods`):
//! `<pod id>/{hosts,hostname,resolv.conf}`, `<pod id>/containers/<container id>/` (bundle,
//! rootfs, upper, work, exit-code) and `<pod id>/logs/<container name>/<attempt>.log`.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bundle::{Bundle, ContainerSpec};
use crate::error::{Error, IoContext, Result};
use crate::netns::{IpAllocator, PodNetwork};
use crate::runtime::{Exited, Runtime};
use crate::unpack::{ImageUnpacker, UnpackedImage};

/// What the pod's shared /etc files say.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    /// The pod's hostname (Kubernetes: the pod name, or `hostname` from the spec).
    pub hostname: String,
    /// Extra /etc/hosts lines: an address and its names (services, `hostAliases`).
    pub hosts: Vec<(Ipv4Addr, Vec<String>)>,
    /// Full resolv.conf text; `None`: no resolv.conf is mounted.
    pub resolv_conf: Option<String>,
}

#[derive(Clone, Debug)]
pub struct PodSandbox {
    pub pod_id: String,
    pub dir: PathBuf,
    pub net: PodNetwork,
}

/// A started container of a sandbox.
#[derive(Clone, Debug)]
pub struct ContainerHandle {
    /// The runc id: `<pod id>-<name>-<attempt>`.
    pub id: String,
    pub bundle_dir: PathBuf,
    pub log_path: PathBuf,
    pub pid: i32,
}

impl PodSandbox {
    pub fn dir_for(root: &Path, pod_id: &str) -> PathBuf {
        root.join(pod_id)
    }

    /// Create (or re-open after a restart) the sandbox of `pod_id` under `root`.
    pub fn create(
        root: &Path,
        ips: &IpAllocator,
        pod_id: &str,
        cfg: &SandboxConfig,
    ) -> Result<Self> {
        let ip = ips.allocate(pod_id)?;
        let net = match PodNetwork::create(pod_id, ip) {
            Ok(n) => n,
            Err(e) => {
                let _ = ips.release(pod_id);
                return Err(e);
            }
        };
        let sandbox = Self {
            pod_id: pod_id.to_string(),
            dir: Self::dir_for(root, pod_id),
            net,
        };
        if let Err(e) = sandbox.write_etc(cfg) {
            let _ = sandbox.net.delete();
            let _ = ips.release(pod_id);
            return Err(e);
        }
        Ok(sandbox)
    }

    /// (Re)write hosts/hostname/resolv.conf; running containers see the change (bind mounts
    /// of files are updated in place, not replaced).
    pub fn write_etc(&self, cfg: &SandboxConfig) -> Result<()> {
        fs::create_dir_all(&self.dir).ctx(|| format!("creating {}", self.dir.display()))?;
        let hostname = if cfg.hostname.is_empty() {
            &self.pod_id
        } else {
            &cfg.hostname
        };
        let mut hosts = format!(
            "# Kubernetes-managed hosts file (hoist).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{hostname}\n",
            self.net.ip
        );
        for (ip, names) in &cfg.hosts {
            if !ip.is_loopback() {
                return Err(Error::Netns {
                    name: self.net.name.clone(),
                    reason: format!("hosts entry {ip} is not a loopback address"),
                });
            }
            hosts.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
        write_in_place(&self.dir.join("hosts"), &hosts)?;
        write_in_place(&self.dir.join("hostname"), &format!("{hostname}\n"))?;
        if let Some(r) = &cfg.resolv_conf {
            write_in_place(&self.dir.join("resolv.conf"), r)?;
        }
        Ok(())
    }

    pub fn container_id(&self, name: &str, attempt: u32) -> String {
        format!("{}-{name}-{attempt}", self.pod_id)
    }

    pub fn log_path(&self, name: &str, attempt: u32) -> PathBuf {
        self.dir
            .join("logs")
            .join(name)
            .join(format!("{attempt}.log"))
    }

    /// Fill in what every container of this pod shares: netns, hostname, /etc files.
    pub fn apply_to(&self, spec: &mut ContainerSpec) {
        spec.netns = Some(self.net.path.clone());
        if spec.hostname.is_empty() {
            spec.hostname = fs::read_to_string(self.dir.join("hostname"))
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| self.pod_id.clone());
        }
        spec.etc_hosts = Some(self.dir.join("hosts"));
        spec.etc_hostname = Some(self.dir.join("hostname"));
        let resolv = self.dir.join("resolv.conf");
        spec.etc_resolv_conf = resolv.exists().then_some(resolv);
    }

    /// Prepare the rootfs, write the bundle and run container `spec.name` (restart number
    /// `attempt`) of `image`. On failure nothing of the container is left behind.
    pub fn start_container(
        &self,
        runtime: &Runtime,
        unpacker: &ImageUnpacker,
        image: &UnpackedImage,
        spec: &ContainerSpec,
        attempt: u32,
    ) -> Result<ContainerHandle> {
        let id = self.container_id(&spec.name, attempt);
        let bundle_dir = self.dir.join("containers").join(&id);
        let log_path = self.log_path(&spec.name, attempt);
        let mut spec = spec.clone();
        self.apply_to(&mut spec);
        let result = (|| {
            let rootfs = unpacker.prepare_rootfs(image, &bundle_dir)?;
            Bundle::write(&bundle_dir, &id, &rootfs.path, &image.config, &spec)?;
            let io = crate::runtime::RunIo {
                stdin: spec.stdin,
                tty: spec.tty,
            };
            runtime.run_with(&id, &bundle_dir, &log_path, io)
        })();
        match result {
            Ok(pid) => Ok(ContainerHandle {
                id,
                bundle_dir,
                log_path,
                pid,
            }),
            Err(e) => {
                let _ = ImageUnpacker::release_rootfs(&bundle_dir);
                let _ = fs::remove_dir_all(&bundle_dir);
                Err(e)
            }
        }
    }

    /// Stop (SIGTERM, `grace`, SIGKILL) and delete one container, and free its rootfs.
    /// Its log file stays (for `kubectl logs --previous`) until the sandbox goes.
    pub fn remove_container(
        runtime: &Runtime,
        c: &ContainerHandle,
        grace: Duration,
    ) -> Result<Option<Exited>> {
        let exited = match runtime.kill(&c.id, grace) {
            Ok(e) => Some(e),
            Err(Error::NoSuchContainer { .. }) => None,
            Err(e) => return Err(e),
        };
        runtime.delete(&c.id)?;
        ImageUnpacker::release_rootfs(&c.bundle_dir)?;
        if c.bundle_dir.exists() {
            fs::remove_dir_all(&c.bundle_dir)
                .ctx(|| format!("removing {}", c.bundle_dir.display()))?;
        }
        Ok(exited)
    }

    /// Delete the namespace, the pod's files and logs, and give back its IP. Containers must
    /// be removed first; any still known to runc under this pod's directory are force-deleted.
    pub fn destroy(self, runtime: &Runtime, ips: &IpAllocator) -> Result<()> {
        for c in runtime.list()? {
            if c.bundle.starts_with(&self.dir) {
                runtime.delete(&c.id)?;
                ImageUnpacker::release_rootfs(&c.bundle)?;
            }
        }
        let containers = self.dir.join("containers");
        if let Ok(rd) = fs::read_dir(&containers) {
            for e in rd.flatten() {
                ImageUnpacker::release_rootfs(&e.path())?;
            }
        }
        self.net.delete()?;
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir).ctx(|| format!("removing {}", self.dir.display()))?;
        }
        ips.release(&self.pod_id)
    }
}

/// What [`remove_everything`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub containers: Vec<String>,
    pub namespaces: Vec<String>,
    pub pods: Vec<String>,
}

/// `hoist cluster down` / start-up after a crash with nothing to re-adopt: force-delete every
/// container under our runc root, the netns of every pod under `root` or in `ips`, unmount and remove every sandbox
/// under `root` and forget all IPs.
pub fn remove_everything(runtime: &Runtime, root: &Path, ips: &IpAllocator) -> Result<Cleanup> {
    let mut done = Cleanup::default();
    for c in runtime.list()? {
        runtime.delete(&c.id)?;
        ImageUnpacker::release_rootfs(&c.bundle)?;
        done.containers.push(c.id);
    }
    // Only namespaces of pods this cluster knows (its sandbox dirs and IP table): another
    // hoist cluster on the machine keeps its own.
    let mut pods: std::collections::BTreeSet<String> = ips.allocations()?.into_keys().collect();
    if let Ok(rd) = fs::read_dir(root) {
        pods.extend(
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    let existing = crate::netns::list_netns()?;
    for pod in &pods {
        let name = PodNetwork::name_for(pod);
        if existing.contains(&name) {
            crate::netns::delete_netns(&name)?;
            done.namespaces.push(name);
        }
    }
    if let Ok(rd) = fs::read_dir(root) {
        for pod in rd.flatten() {
            if let Ok(cs) = fs::read_dir(pod.path().join("containers")) {
                for c in cs.flatten() {
                    ImageUnpacker::release_rootfs(&c.path())?;
                }
            }
            fs::remove_dir_all(pod.path()).ctx(|| format!("removing {}", pod.path().display()))?;
            done.pods
                .push(pod.file_name().to_string_lossy().into_owned());
        }
    }
    for pod in ips.allocations()?.keys() {
        ips.release(pod)?;
    }
    Ok(done)
}

/// Rewrite a file keeping its inode, so bind mounts of it in running containers follow.
fn write_in_place(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).ctx(|| format!("writing {}", path.display()))
}
