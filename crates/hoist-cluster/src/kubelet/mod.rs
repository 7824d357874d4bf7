//! The node side of the dev cluster: one Node (`hoist`), a trivial scheduler that binds
//! every pod to it, and a kubelet that runs the bound pods with `runc` (via
//! `hoist-runtime`) and reports their status through the storage layer.
//!
//! Each pod gets one worker thread ([`worker`]); the dispatcher here follows the change
//! feed and tells workers when their pod is deleted. On start, leftovers of an earlier
//! run are removed (containers, namespaces, IPs) and pods are started afresh; on
//! [`Kubelet::shutdown`] every container is stopped and removed.

pub(crate) mod claims;
pub(crate) mod events;
pub mod exec;
pub mod logs;
mod node;
pub mod portforward;
mod probe;
mod proxy;
mod proxy_udp;
pub mod spdy;
mod status;
// Pod I/O and DNS (kept apart from the lines other work touches).
pub mod attach;
mod dns;
mod downward;
mod projected;
mod volumes;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::app::App;
use crate::objects;
use crate::storage::EventType;

pub use hoist_runtime::check_host;
pub use node::NODE_NAME;

/// Where the kubelet keeps its state and finds images.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// runc's state root (`runc --root`).
    pub runc_root: PathBuf,
    /// Pod sandboxes (hosts files, logs, bundles).
    pub pods_dir: PathBuf,
    /// Unpacked image cache.
    pub image_cache: PathBuf,
    /// The IP allocation table.
    pub ipam_file: PathBuf,
    /// The local image store (an OCI layout) looked up first.
    pub image_store: PathBuf,
}

impl KubeletConfig {
    /// The layout under a cluster data dir, with the user's default image store.
    pub fn in_data_dir(data_dir: &std::path::Path) -> Self {
        let k = data_dir.join("kubelet");
        Self {
            runc_root: k.join("runc"),
            pods_dir: k.join("pods"),
            image_cache: k.join("images"),
            ipam_file: k.join("ipam.json"),
            image_store: hoist_oci::store::default_store_dir(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("cannot run pods: {0}")]
    Runtime(#[from] hoist_runtime::Error),
    #[error("cannot register the node: {0}")]
    Api(#[from] crate::status::ApiError),
}

/// Shared by the dispatcher and the workers.
pub(crate) struct Shared {
    pub app: Arc<App>,
    pub runtime: hoist_runtime::Runtime,
    pub unpacker: hoist_runtime::ImageUnpacker,
    pub ips: hoist_runtime::IpAllocator,
    pub cfg: KubeletConfig,
    /// The pods' DNS responder (sockets kept in step by the proxy's reconcile).
    pub dns: Arc<dns::DnsServer>,
}

/// What the dispatcher tells a pod worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// The pod has a deletionTimestamp: stop with this grace period, then final-delete it.
    Delete { grace_secs: u64 },
    /// The kubelet stops: remove the containers, keep the pod object.
    Shutdown,
}

struct WorkerHandle {
    uid: String,
    tx: mpsc::Sender<Command>,
    thread: std::thread::JoinHandle<()>,
}

/// A running kubelet; call [`Kubelet::shutdown`] to stop every container it started.
pub struct Kubelet {
    shared: Arc<Shared>,
    workers: Arc<Mutex<HashMap<(String, String), WorkerHandle>>>,
    dispatcher: tokio::task::JoinHandle<()>,
    proxy_stop: Arc<std::sync::atomic::AtomicBool>,
    proxy: std::thread::JoinHandle<()>,
}

/// Removes every container, pod network namespace and pod directory that a cluster
/// with this data dir left behind — for `hoist cluster down` after its server was
/// killed or had crashed (a server that stops cleanly does this itself).
pub fn remove_leftovers(
    data_dir: &std::path::Path,
) -> Result<hoist_runtime::Cleanup, KubeletError> {
    let cfg = KubeletConfig::in_data_dir(data_dir);
    if !cfg.runc_root.exists() {
        return Ok(hoist_runtime::Cleanup::default());
    }
    let runtime = hoist_runtime::Runtime::new(&cfg.runc_root)?;
    let ips = hoist_runtime::IpAllocator::new(&cfg.ipam_file);
    Ok(hoist_runtime::remove_everything(
        &runtime,
        &cfg.pods_dir,
        &ips,
    )?)
}

/// Registers the node, removes leftovers of an earlier run and starts scheduling and
/// running pods. Needs root and runc (a clear error says what is missing otherwise).
pub fn start(app: Arc<App>, cfg: KubeletConfig) -> Result<Kubelet, KubeletError> {
    let runtime = hoist_runtime::Runtime::new(&cfg.runc_root)?;
    let unpacker = hoist_runtime::ImageUnpacker::new(&cfg.image_cache)?;
    let ips = hoist_runtime::IpAllocator::new(&cfg.ipam_file);
    std::fs::create_dir_all(&cfg.pods_dir).map_err(|e| hoist_runtime::Error::Io {
        context: format!("creating {}", cfg.pods_dir.display()),
        source: e,
    })?;
    // A crash or kill -9 may have left containers behind: pods restart from scratch.
    let cleaned = hoist_runtime::remove_everything(&runtime, &cfg.pods_dir, &ips)?;
    if !cleaned.containers.is_empty() || !cleaned.namespaces.is_empty() {
        tracing::info!(
            containers = cleaned.containers.len(),
            namespaces = cleaned.namespaces.len(),
            "removed leftovers of an earlier run"
        );
    }
    node::register(&app)?;
    let _ = app.pods_dir.set(cfg.pods_dir.clone());
    let _ = app.runc_root.set(cfg.runc_root.clone());
    let _ = app.container_io.set(runtime.io_table());
    let shared = Arc::new(Shared {
        app: app.clone(),
        runtime,
        unpacker,
        ips,
        cfg,
        dns: dns::DnsServer::start(),
    });
    let workers = Arc::new(Mutex::new(HashMap::new()));
    let dispatcher = tokio::spawn(dispatch(shared.clone(), workers.clone()));
    let proxy_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let proxy = proxy::spawn(shared.clone(), proxy_stop.clone());
    // Deployments, ReplicaSets and Services only make sense where pods run.
    crate::workloads::spawn(app);
    Ok(Kubelet {
        shared,
        workers,
        dispatcher,
        proxy_stop,
        proxy,
    })
}

impl Kubelet {
    /// Stops every pod's containers and removes everything this kubelet created on the
    /// host (containers, rootfs mounts, network namespaces). Pod objects stay.
    pub fn shutdown(self) {
        self.dispatcher.abort();
        self.proxy_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.proxy.join();
        let workers: Vec<WorkerHandle> = self
            .workers
            .lock()
            .expect("workers lock")
            .drain()
            .map(|(_, w)| w)
            .collect();
        for w in &workers {
            let _ = w.tx.send(Command::Shutdown);
        }
        for w in workers {
            let _ = w.thread.join();
        }
        let s = &self.shared;
        if let Err(e) = hoist_runtime::remove_everything(&s.runtime, &s.cfg.pods_dir, &s.ips) {
            tracing::warn!(error = %e, "cleanup after the kubelet stopped failed");
        }
    }
}

async fn dispatch(
    shared: Arc<Shared>,
    workers: Arc<Mutex<HashMap<(String, String), WorkerHandle>>>,
) {
    let (pods, sub) = match shared.app.store.list_and_subscribe("/pods", None) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "kubelet cannot list pods");
            return;
        }
    };
    let mut live = sub.live;
    for pod in pods {
        handle(&shared, &workers, &pod, false);
    }
    let mut stopping = shared.app.stopping.subscribe();
    loop {
        let change = tokio::select! {
            c = live.recv() => c,
            _ = stopping.changed() => return,
        };
        match change {
            Ok(c) if c.resource == "/pods" => {
                handle(&shared, &workers, &c.object, c.kind == EventType::Deleted)
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Missed changes: look at every pod again.
                for pod in shared.app.store.list_shared("/pods", None).0 {
                    handle(&shared, &workers, &pod, false);
                }
            }
            Err(_) => return,
        }
    }
}

fn handle(
    shared: &Arc<Shared>,
    workers: &Arc<Mutex<HashMap<(String, String), WorkerHandle>>>,
    pod: &Value,
    deleted: bool,
) {
    let ns = objects::meta_str(pod, "namespace")
        .unwrap_or("")
        .to_string();
    let name = objects::name_of(pod).to_string();
    let uid = objects::meta_str(pod, "uid").unwrap_or("").to_string();
    let key = (ns.clone(), name.clone());
    let mut map = workers.lock().expect("workers lock");
    // Reap workers that finished (pod deleted, or a pod of the same name was replaced).
    map.retain(|_, w| !w.thread.is_finished());
    if deleted {
        // Deleted without grace (e.g. force): stop at once.
        if let Some(w) = map.get(&key)
            && w.uid == uid
        {
            let _ = w.tx.send(Command::Delete { grace_secs: 0 });
        }
        return;
    }
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str);
    if node_name.is_none_or(str::is_empty) {
        if !objects::is_deleting(pod) {
            drop(map);
            node::schedule(&shared.app, &ns, &name, &uid);
        }
        return;
    }
    if node_name != Some(NODE_NAME) {
        return;
    }
    if objects::is_deleting(pod) {
        let grace = pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30);
        match map.get(&key) {
            Some(w) if w.uid == uid => {
                let _ = w.tx.send(Command::Delete { grace_secs: grace });
            }
            _ => {
                // Nothing runs for it (e.g. after a restart): final delete at once.
                worker::final_delete(&shared.app, &ns, &name, &uid);
            }
        }
        return;
    }
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    if map.get(&key).is_some_and(|w| w.uid == uid) {
        return;
    }
    let (tx, rx) = mpsc::channel();
    let s = shared.clone();
    let pod = pod.clone();
    let thread = std::thread::Builder::new()
        .name(format!("pod-{name}"))
        .spawn(move || worker::run(s, pod, rx));
    match thread {
        Ok(thread) => {
            map.insert(key, WorkerHandle { uid, tx, thread });
        }
        Err(e) => tracing::error!(pod = %name, error = %e, "cannot start a pod worker thread"),
    }
}
