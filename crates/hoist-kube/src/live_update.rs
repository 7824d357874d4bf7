//! Live update: copy changed files into a running container (deletes included), run
//! steps in it, restart it — without a rebuild.
//!
//! Two transports, chosen by the caller ([`SyncTransport::choose`]):
//! - [`SyncTransport::Exec`], any cluster: `rm -rf` for deletes and a tar streamed into
//!   `tar -xf - -C /` over `pods/exec`, with `/bin/busybox` as the fallback for each. An
//!   image with neither gives [`LiveUpdateError::NoTar`]: the caller rebuilds instead.
//! - [`SyncTransport::Direct`], hoist's embedded cluster on this host: files are written
//!   straight into the container's filesystem from the host ([`hoist_runtime::ContainerRoot`]:
//!   `/proc/<pid>/root`, paths resolved inside it). No exec, no tar: this is the fast path.
//!   A container this host cannot reach that way (another data dir or machine) is synced
//!   over exec instead, with a warning.
//!
//! Run steps ([`LiveUpdater::run`]) go through `pods/exec` (`sh -c CMD`) on both: a step
//! that exits non-zero is an error carrying its exit code and output.
//!
//! **Restart** ([`LiveUpdater::restart`]) means: the container's main process is stopped
//! (SIGTERM, then SIGKILL after the grace period on the embedded cluster, where hoist can
//! signal it from the host; `kill -TERM 1` inside the container elsewhere), the cluster
//! starts the container again under the pod's restart policy (its normal back-off
//! applies: about 10 s on the embedded cluster and on Kubernetes), and hoist then writes
//! every file synced into that container since the pod started, and applies every delete,
//! again (the "sync ledger"). So synced files survive a restart — but the restarted
//! process starts from the image's files and sees the synced ones a moment later; a
//! process that reads its files only at start-up should be restarted by a run step of
//! its own instead.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;

use crate::exec::{ExecError, ExecOutput, exec};

/// One container of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerRef {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

impl ContainerRef {
    pub fn new(namespace: &str, pod: &str, container: &str) -> Self {
        Self {
            namespace: namespace.into(),
            pod: pod.into(),
            container: container.into(),
        }
    }
}

impl std::fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} container {}",
            self.namespace, self.pod, self.container
        )
    }
}

/// A local file (or directory, or symlink) and where it goes in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCopy {
    pub local: PathBuf,
    /// Absolute path in the container.
    pub remote: String,
}

/// What to change in a container: files to write and container paths to delete (`rm -rf`;
/// applied first, so a directory can be replaced by new content in one batch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncBatch {
    pub copies: Vec<FileCopy>,
    pub deletes: Vec<String>,
}

impl SyncBatch {
    pub fn copy(mut self, local: impl Into<PathBuf>, remote: impl Into<String>) -> Self {
        self.copies.push(FileCopy {
            local: local.into(),
            remote: remote.into(),
        });
        self
    }

    pub fn delete(mut self, remote: impl Into<String>) -> Self {
        self.deletes.push(remote.into());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.copies.is_empty() && self.deletes.is_empty()
    }
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub copied: usize,
    pub deleted: usize,
    /// The runc/CRI container id written into (`runc://…`), as the pod status names it.
    pub container_id: String,
    pub took: Duration,
}

/// A run step's result (only successful ones: a failing step is [`LiveUpdateError::StepFailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutput {
    pub command: String,
    pub output: String,
    pub took: Duration,
}

#[derive(Debug, thiserror::Error)]
/// `target` fields name the container as [`ContainerRef`] displays it.
pub enum LiveUpdateError {
    #[error(
        "cannot copy files into {target}: the image has no `tar` (tried {tried}); hoist rebuilds the image instead"
    )]
    NoTar { target: String, tried: String },

    #[error("{target} is not running ({state}); live update needs a running container")]
    NotRunning { target: String, state: String },

    #[error("pod {namespace}/{pod} does not exist (any more)")]
    NoPod { namespace: String, pod: String },

    #[error(
        "container {container_id} of {target} is not a container of the embedded cluster on this host (runc root {runc_root}): {reason}"
    )]
    NotOnThisHost {
        target: String,
        container_id: String,
        runc_root: PathBuf,
        reason: String,
    },

    #[error("invalid container path {path:?}: {reason}")]
    BadPath { path: String, reason: &'static str },

    #[error("cannot read {}: {source}", path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("copying into {target} failed (`{command}` exit {code:?}):\n{output}")]
    CopyFailed {
        target: String,
        command: String,
        code: Option<i32>,
        output: String,
    },

    #[error("writing into {target} failed: {source}")]
    Direct {
        target: String,
        #[source]
        source: Box<hoist_runtime::Error>,
    },

    #[error("run step `{command}` failed in {target} (exit code {code}):\n{output}", code = code.map(|c| c.to_string()).unwrap_or_else(|| "unknown".into()))]
    StepFailed {
        target: String,
        command: String,
        code: Option<i32>,
        output: String,
    },

    #[error("restarting {target} failed: {reason}")]
    RestartFailed { target: String, reason: String },

    #[error(transparent)]
    Exec(Box<ExecError>),

    #[error("reading pod {namespace}/{pod}: {source}")]
    Api {
        namespace: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
}

impl From<ExecError> for LiveUpdateError {
    fn from(e: ExecError) -> Self {
        LiveUpdateError::Exec(Box::new(e))
    }
}

pub type Result<T, E = LiveUpdateError> = std::result::Result<T, E>;

/// The embedded cluster's containers, reached from the host through runc's state.
#[derive(Debug)]
pub struct DirectFs {
    runc_root: PathBuf,
    /// Opened container roots by container id; checked alive before each use.
    roots: Mutex<HashMap<String, Arc<hoist_runtime::ContainerRoot>>>,
}

/// Where the embedded cluster's kubelet keeps runc's state under its data dir (the
/// layout of `hoist_cluster::kubelet::KubeletConfig::in_data_dir`, checked by a test).
pub fn embedded_runc_root(data_dir: &Path) -> PathBuf {
    data_dir.join("kubelet").join("runc")
}

impl DirectFs {
    /// `runc_root`: the kubelet's `runc --root`.
    pub fn new(runc_root: impl Into<PathBuf>) -> Self {
        Self {
            runc_root: runc_root.into(),
            roots: Mutex::new(HashMap::new()),
        }
    }

    /// For the embedded cluster whose data dir is `data_dir` (`hoist cluster up --data-dir`,
    /// default `~/.local/share/hoist/cluster`).
    pub fn for_data_dir(data_dir: &Path) -> Self {
        Self::new(embedded_runc_root(data_dir))
    }

    pub fn runc_root(&self) -> &Path {
        &self.runc_root
    }

    fn root(
        &self,
        target: &ContainerRef,
        container_id: &str,
    ) -> Result<Arc<hoist_runtime::ContainerRoot>> {
        let runc_id =
            container_id
                .strip_prefix("runc://")
                .ok_or_else(|| LiveUpdateError::NotOnThisHost {
                    target: target.to_string(),
                    container_id: container_id.into(),
                    runc_root: self.runc_root.clone(),
                    reason: "not a runc container".into(),
                })?;
        let mut roots = self.roots.lock().expect("roots lock");
        if let Some(r) = roots.get(runc_id)
            && r.is_alive()
        {
            return Ok(r.clone());
        }
        roots.retain(|_, r| r.is_alive());
        let root = hoist_runtime::ContainerRoot::open(&self.runc_root, runc_id).map_err(|e| {
            LiveUpdateError::NotOnThisHost {
                target: target.to_string(),
                container_id: container_id.into(),
                runc_root: self.runc_root.clone(),
                reason: e.to_string(),
            }
        })?;
        let root = Arc::new(root);
        roots.insert(runc_id.to_string(), root.clone());
        Ok(root)
    }
}

/// How files get into containers.
#[derive(Debug)]
pub enum SyncTransport {
    /// Tar over `pods/exec`: any cluster.
    Exec,
    /// Straight into the container's filesystem: the embedded cluster on this host.
    Direct(DirectFs),
}

impl SyncTransport {
    /// Direct when the target is the embedded cluster (`locality`), its data dir is known,
    /// its runc state is readable here and this process may enter other processes' roots
    /// (root, like the kubelet); Exec otherwise.
    pub fn choose(locality: &crate::Locality, embedded_data_dir: Option<&Path>) -> Self {
        if *locality == crate::Locality::Embedded
            && let Some(dir) = embedded_data_dir
        {
            let root = embedded_runc_root(dir);
            // The embedded kubelet runs containers as root with runc: so must we, to
            // reach into them.
            let privileged = hoist_runtime::check_host().is_ok();
            if privileged && std::fs::read_dir(&root).is_ok() {
                return SyncTransport::Direct(DirectFs::new(root));
            }
        }
        SyncTransport::Exec
    }

    pub fn name(&self) -> &'static str {
        match self {
            SyncTransport::Exec => "exec",
            SyncTransport::Direct(_) => "direct",
        }
    }
}

/// One restart-surviving record per container: remote path → what was last put there.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LedgerEntry {
    Copied(PathBuf),
    Deleted,
}

/// Which programs work in a container (found on the first exec sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tools {
    Plain,
    Busybox,
}

impl Tools {
    fn argv(self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = match self {
            Tools::Plain => vec![],
            Tools::Busybox => vec!["/bin/busybox".into()],
        };
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }
}

/// Copies files into containers, runs steps and restarts them; see the module docs.
pub struct LiveUpdater {
    client: Client,
    transport: SyncTransport,
    /// Exec transport: the working tool prefix per container id.
    tools: Mutex<HashMap<String, Tools>>,
    /// Per (pod uid, container): everything synced, replayed after a restart.
    ledger: Mutex<HashMap<(String, String), BTreeMap<String, LedgerEntry>>>,
    /// Timeout for one exec (copy or delete).
    pub exec_timeout: Duration,
}

/// What the pod status says about one container.
struct ContainerStatus {
    uid: String,
    id: Option<String>,
    running: bool,
    restart_count: i32,
    state: String,
}

impl LiveUpdater {
    pub fn new(client: Client, transport: SyncTransport) -> Self {
        Self {
            client,
            transport,
            tools: Mutex::new(HashMap::new()),
            ledger: Mutex::new(HashMap::new()),
            exec_timeout: Duration::from_secs(60),
        }
    }

    pub fn transport(&self) -> &SyncTransport {
        &self.transport
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn status(&self, target: &ContainerRef) -> Result<ContainerStatus> {
        let pod = match self.pods(&target.namespace).get_opt(&target.pod).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return Err(LiveUpdateError::NoPod {
                    namespace: target.namespace.clone(),
                    pod: target.pod.clone(),
                });
            }
            Err(source) => {
                return Err(LiveUpdateError::Api {
                    namespace: target.namespace.clone(),
                    pod: target.pod.clone(),
                    source,
                });
            }
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let cs = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|v| v.iter().find(|c| c.name == target.container));
        let Some(cs) = cs else {
            return Ok(ContainerStatus {
                uid,
                id: None,
                running: false,
                restart_count: 0,
                state: "no status yet".into(),
            });
        };
        let st = cs.state.as_ref();
        let running = st.is_some_and(|s| s.running.is_some());
        let state = match st {
            Some(s) if s.running.is_some() => "running".to_string(),
            Some(s) if s.waiting.is_some() => format!(
                "waiting: {}",
                s.waiting
                    .as_ref()
                    .and_then(|w| w.reason.clone())
                    .unwrap_or_default()
            ),
            Some(s) if s.terminated.is_some() => format!(
                "terminated with exit code {}",
                s.terminated
                    .as_ref()
                    .map(|t| t.exit_code)
                    .unwrap_or_default()
            ),
            _ => "unknown".into(),
        };
        Ok(ContainerStatus {
            uid,
            id: cs.container_id.clone(),
            running,
            restart_count: cs.restart_count,
            state,
        })
    }

    async fn running(&self, target: &ContainerRef) -> Result<(ContainerStatus, String)> {
        let s = self.status(target).await?;
        match (&s.id, s.running) {
            (Some(id), true) => {
                let id = id.clone();
                Ok((s, id))
            }
            _ => Err(LiveUpdateError::NotRunning {
                target: target.to_string(),
                state: s.state,
            }),
        }
    }

    /// Apply `batch` to the container: deletes first, then the copies.
    pub async fn sync(&self, target: &ContainerRef, batch: &SyncBatch) -> Result<SyncReport> {
        let started = Instant::now();
        for c in &batch.copies {
            check_remote(&c.remote)?;
        }
        for d in &batch.deletes {
            check_remote(d)?;
        }
        let (status, container_id) = self.running(target).await?;
        self.sync_into(target, &container_id, batch).await?;
        let mut ledger = self.ledger.lock().expect("ledger lock");
        let entries = ledger
            .entry((status.uid, target.container.clone()))
            .or_default();
        for d in &batch.deletes {
            // A delete of a directory also undoes earlier copies below it.
            let prefix = format!("{}/", d.trim_end_matches('/'));
            entries.retain(|k, _| !k.starts_with(&prefix));
            entries.insert(d.clone(), LedgerEntry::Deleted);
        }
        for c in &batch.copies {
            entries.insert(c.remote.clone(), LedgerEntry::Copied(c.local.clone()));
        }
        Ok(SyncReport {
            copied: batch.copies.len(),
            deleted: batch.deletes.len(),
            container_id,
            took: started.elapsed(),
        })
    }

    async fn sync_into(
        &self,
        target: &ContainerRef,
        container_id: &str,
        batch: &SyncBatch,
    ) -> Result<()> {
        match &self.transport {
            SyncTransport::Direct(fs) => {
                let root = match fs.root(target, container_id) {
                    Ok(r) => r,
                    // Not a container of this host's embedded cluster after all (another
                    // data dir, another machine): exec works everywhere.
                    Err(e @ LiveUpdateError::NotOnThisHost { .. }) => {
                        tracing::warn!(error = %e, "direct live update not possible; using exec");
                        return self.exec_apply(target, container_id, batch).await;
                    }
                    Err(e) => return Err(e),
                };
                let batch = batch.clone();
                let t = target.clone();
                tokio::task::spawn_blocking(move || direct_apply(&root, &t, &batch))
                    .await
                    .expect("direct sync task")
            }
            SyncTransport::Exec => self.exec_apply(target, container_id, batch).await,
        }
    }

    async fn exec_apply(
        &self,
        target: &ContainerRef,
        container_id: &str,
        batch: &SyncBatch,
    ) -> Result<()> {
        let known = self
            .tools
            .lock()
            .expect("tools lock")
            .get(container_id)
            .copied();
        let candidates: Vec<Tools> = match known {
            Some(t) => vec![t],
            None => vec![Tools::Plain, Tools::Busybox],
        };
        let archive = if batch.copies.is_empty() {
            None
        } else {
            let copies = batch.copies.clone();
            Some(
                tokio::task::spawn_blocking(move || build_tar(&copies))
                    .await
                    .expect("tar task")?,
            )
        };
        let pods = self.pods(&target.namespace);
        let mut tried = vec![];
        for tools in candidates {
            let mut missing = false;
            if !batch.deletes.is_empty() {
                let mut args = vec!["rm", "-rf", "--"];
                args.extend(batch.deletes.iter().map(String::as_str));
                let argv = tools.argv(&args);
                let out = exec(
                    &pods,
                    &target.pod,
                    &target.container,
                    &argv,
                    None,
                    self.exec_timeout,
                )
                .await?;
                if out.program_missing() {
                    tried.push(format!(
                        "`{}`",
                        argv[..argv.len() - batch.deletes.len()].join(" ")
                    ));
                    missing = true;
                } else if !out.success() {
                    return Err(copy_failed(target, &argv, &out));
                }
            }
            if !missing && let Some(archive) = &archive {
                let argv = tools.argv(&["tar", "-xf", "-", "-C", "/"]);
                let out = exec(
                    &pods,
                    &target.pod,
                    &target.container,
                    &argv,
                    Some(archive.clone()),
                    self.exec_timeout,
                )
                .await?;
                if out.program_missing() {
                    tried.push(format!("`{}`", argv.join(" ")));
                    missing = true;
                } else if !out.success() {
                    return Err(copy_failed(target, &argv, &out));
                }
            }
            if !missing {
                self.tools
                    .lock()
                    .expect("tools lock")
                    .insert(container_id.to_string(), tools);
                return Ok(());
            }
        }
        Err(LiveUpdateError::NoTar {
            target: target.to_string(),
            tried: tried.join(", "),
        })
    }

    /// Run `sh -c command` in the container; a non-zero exit is [`LiveUpdateError::StepFailed`]
    /// with the exit code and the output.
    pub async fn run(
        &self,
        target: &ContainerRef,
        command: &str,
        timeout: Duration,
    ) -> Result<StepOutput> {
        let started = Instant::now();
        self.running(target).await?;
        let argv = vec!["sh".to_string(), "-c".to_string(), command.to_string()];
        let out = exec(
            &self.pods(&target.namespace),
            &target.pod,
            &target.container,
            &argv,
            None,
            timeout,
        )
        .await?;
        if out.success() {
            Ok(StepOutput {
                command: command.into(),
                output: out.output(),
                took: started.elapsed(),
            })
        } else {
            let mut output = out.output();
            if out.program_missing() && out.code != Some(127) {
                output.push_str("\n(the image has no `sh`: run steps need a shell)");
            }
            Err(LiveUpdateError::StepFailed {
                target: target.to_string(),
                command: command.into(),
                code: out.code,
                output,
            })
        }
    }

    /// Restart the container and put back everything synced into it (see the module
    /// docs for the exact semantics). Returns once the new container runs and the ledger
    /// is replayed, or fails after `timeout`.
    pub async fn restart(&self, target: &ContainerRef, timeout: Duration) -> Result<SyncReport> {
        let started = Instant::now();
        let (before, old_id) = self.running(target).await?;
        let grace = Duration::from_secs(3);
        match &self.transport {
            SyncTransport::Direct(fs) => {
                let root = fs.root(target, &old_id)?;
                let t = target.clone();
                tokio::task::spawn_blocking(move || {
                    root.stop(grace).map_err(|source| LiveUpdateError::Direct {
                        target: t.to_string(),
                        source: Box::new(source),
                    })
                })
                .await
                .expect("signal task")?;
            }
            SyncTransport::Exec => {
                let pods = self.pods(&target.namespace);
                let mut found = false;
                for tools in [Tools::Plain, Tools::Busybox] {
                    let argv = tools.argv(&["kill", "-TERM", "1"]);
                    // The exec may itself be killed when PID 1 exits (its namespace goes
                    // with it), so its outcome says little: the pod status below decides.
                    match exec(
                        &pods,
                        &target.pod,
                        &target.container,
                        &argv,
                        None,
                        self.exec_timeout,
                    )
                    .await
                    {
                        Ok(o) if o.program_missing() => continue,
                        Ok(_) | Err(_) => {
                            found = true;
                            break;
                        }
                    }
                }
                if !found {
                    return Err(LiveUpdateError::RestartFailed {
                        target: target.to_string(),
                        reason:
                            "the image has no `kill` (nor /bin/busybox) to stop its main process"
                                .into(),
                    });
                }
            }
        }
        // Wait for the next container: a new id, running.
        let deadline = started + timeout;
        let mut stopped = false;
        let new_id = loop {
            let s = self.status(target).await?;
            if s.uid != before.uid {
                return Err(LiveUpdateError::NoPod {
                    namespace: target.namespace.clone(),
                    pod: target.pod.clone(),
                });
            }
            stopped |=
                s.restart_count > before.restart_count || s.id.as_deref() != Some(old_id.as_str());
            if let (Some(id), true) = (&s.id, s.running)
                && id != &old_id
            {
                break id.clone();
            }
            if Instant::now() >= deadline {
                let reason = if stopped {
                    format!(
                        "the container stopped but did not run again within {}s ({})",
                        timeout.as_secs(),
                        s.state
                    )
                } else {
                    format!(
                        "its main process did not exit within {}s: as PID 1 of its namespace it only receives signals it handles (install a SIGTERM handler, e.g. `trap 'exit 0' TERM` in a shell entrypoint)",
                        timeout.as_secs()
                    )
                };
                return Err(LiveUpdateError::RestartFailed {
                    target: target.to_string(),
                    reason,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Replay the ledger into the new container.
        let entries = self
            .ledger
            .lock()
            .expect("ledger lock")
            .get(&(before.uid.clone(), target.container.clone()))
            .cloned()
            .unwrap_or_default();
        let mut batch = SyncBatch::default();
        for (remote, e) in entries {
            match e {
                LedgerEntry::Deleted => batch.deletes.push(remote),
                LedgerEntry::Copied(local) if local.exists() => {
                    batch.copies.push(FileCopy { local, remote })
                }
                // The local file is gone since: the caller syncs that delete itself.
                LedgerEntry::Copied(_) => {}
            }
        }
        if !batch.is_empty() {
            self.sync_into(target, &new_id, &batch).await?;
        }
        Ok(SyncReport {
            copied: batch.copies.len(),
            deleted: batch.deletes.len(),
            container_id: new_id,
            took: started.elapsed(),
        })
    }
}

fn check_remote(path: &str) -> Result<()> {
    let reason = if !path.starts_with('/') {
        "container paths must be absolute"
    } else if path.split('/').any(|c| c == "..") {
        "container paths must not contain `..`"
    } else if path.trim_matches('/').is_empty() {
        "refusing to write or delete the container's root directory"
    } else {
        return Ok(());
    };
    Err(LiveUpdateError::BadPath {
        path: path.into(),
        reason,
    })
}

fn direct_apply(
    root: &hoist_runtime::ContainerRoot,
    target: &ContainerRef,
    batch: &SyncBatch,
) -> Result<()> {
    let direct = |source| LiveUpdateError::Direct {
        target: target.to_string(),
        source: Box::new(source),
    };
    for d in &batch.deletes {
        root.remove(d).map_err(direct)?;
    }
    for c in &batch.copies {
        match root.copy_in(&c.local, &c.remote) {
            Ok(()) => {}
            Err(hoist_runtime::Error::Io { context, source })
                if !context.contains(" in container ") =>
            {
                let _ = context;
                return Err(LiveUpdateError::Local {
                    path: c.local.clone(),
                    source,
                });
            }
            Err(e) => return Err(direct(e)),
        }
    }
    Ok(())
}

/// A tar of the copies with container paths (relative to `/`), for `tar -xf - -C /`.
fn build_tar(copies: &[FileCopy]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    for c in copies {
        let name = c.remote.trim_start_matches('/');
        let local_err = |source| LiveUpdateError::Local {
            path: c.local.clone(),
            source,
        };
        let meta = std::fs::symlink_metadata(&c.local).map_err(local_err)?;
        if meta.is_dir() {
            b.append_dir_all(name, &c.local).map_err(local_err)?;
        } else {
            b.append_path_with_name(&c.local, name).map_err(local_err)?;
        }
    }
    b.into_inner().map_err(|source| LiveUpdateError::Local {
        path: PathBuf::from("<tar archive>"),
        source,
    })
}

fn copy_failed(target: &ContainerRef, argv: &[String], out: &ExecOutput) -> LiveUpdateError {
    LiveUpdateError::CopyFailed {
        target: target.to_string(),
        command: argv.join(" "),
        code: out.code,
        output: out.output(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_are_checked() {
        assert!(check_remote("/www/index.html").is_ok());
        assert!(check_remote("www/index.html").is_err());
        assert!(check_remote("/www/../etc/passwd").is_err());
        assert!(check_remote("/").is_err());
    }

    #[test]
    fn tar_holds_container_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), "hello").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/b.txt"), "b").unwrap();
        let data = build_tar(&[
            FileCopy {
                local: d.path().join("a.txt"),
                remote: "/www/a.txt".into(),
            },
            FileCopy {
                local: d.path().join("sub"),
                remote: "/www/sub".into(),
            },
        ])
        .unwrap();
        let mut names: Vec<String> = tar::Archive::new(&data[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["www/a.txt", "www/sub/", "www/sub/b.txt"]);
    }

    #[test]
    fn missing_local_file_is_named() {
        let e = build_tar(&[FileCopy {
            local: "/nonexistent/x".into(),
            remote: "/x".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x"), "{e}");
    }
}
