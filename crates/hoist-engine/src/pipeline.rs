//! One pass of `hoist up`: every selected service built (bounded parallelism),
//! delivered, applied once its dependencies are ready, and waited for. Each step
//! is an [`Event`] on the [`Session`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hoist_config::{Project, RenderOptions, image_refs, render};
use hoist_kube::readiness::NotReadyReport;
use hoist_kube::shared_watch::SharedWatches;
use hoist_kube::{Applied, ApplySet, ClusterTarget, Desired, PruneScope};
use hoist_oci::build::BuildOptions;
use hoist_oci::{ClientOptions, Platform, RegistryClient};
use kube::api::{Api, DynamicObject, ListParams};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore, watch};

use hoist_kube::live_update::{LiveUpdater, SyncTransport};

use crate::attach::{self, Attachment};
use crate::diagnose;
use crate::error::EngineError;
use crate::image::{Delivery, build_and_deliver, choose_delivery};
use crate::plan;
use crate::state::{Event, Session};

/// After a workload is ready, how long its pods must stay out of trouble. A pod
/// without a readiness probe counts as ready the moment its container starts, so a
/// container that crashes right after starting passes `rollout status`.
const SETTLE: Duration = Duration::from_millis(2000);

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Builds at once.
    pub parallelism: usize,
    /// How long one service may take to become ready in a pass.
    pub ready_timeout: Duration,
    /// Report a service as failed as soon as a container crash-loops (instead of
    /// waiting for the timeout).
    pub fail_fast: bool,
    pub platform: Platform,
    pub registry: ClientOptions,
    /// Port-forwards for ready services' `ports:` with `local:`.
    pub forwards: bool,
    /// Stream ready services' pod logs into the session.
    pub logs: bool,
    /// The embedded cluster's data dir (live updates write straight into its containers).
    pub cluster_data_dir: Option<std::path::PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            parallelism: std::thread::available_parallelism()
                .map(|n| n.get().clamp(2, 8))
                .unwrap_or(4),
            ready_timeout: Duration::from_secs(300),
            fail_fast: true,
            platform: Platform::linux_amd64(),
            registry: ClientOptions::default(),
            forwards: true,
            logs: true,
            cluster_data_dir: None,
        }
    }
}

/// How one service ended a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ready,
    NotReady {
        failed: bool,
        explanation: String,
    },
    BuildFailed {
        error: String,
    },
    DeployFailed {
        error: String,
    },
    /// A dependency did not become ready.
    Blocked {
        on: Vec<String>,
    },
}

impl Outcome {
    pub fn is_ready(&self) -> bool {
        matches!(self, Outcome::Ready)
    }
}

#[derive(Debug, Default)]
pub struct UpReport {
    pub outcomes: BTreeMap<String, Outcome>,
    /// Objects of services pruned because they are no longer in the project.
    pub pruned: Vec<String>,
}

impl UpReport {
    pub fn all_ready(&self) -> bool {
        self.outcomes.values().all(Outcome::is_ready)
    }
}

/// A connected engine for one cluster target.
pub struct Engine {
    pub session: Session,
    pub target: ClusterTarget,
    pub client: kube::Client,
    pub delivery: Delivery,
    /// The registry the cluster advertises (KEP-1755), when the project names none:
    /// every project this engine is given (the first load and each reload) uses it.
    pub advertised_registry: Option<String>,
    applyset: Mutex<ApplySet>,
    /// The watches every readiness wait shares (one per kind and namespace, one for
    /// pods), instead of a watch and a pod poll per service.
    watches: SharedWatches,
    registry: RegistryClient,
    pub(crate) opts: EngineOptions,
    /// What was applied last per service (for waits, live updates and forwards).
    pub(crate) applied: std::sync::Mutex<BTreeMap<String, Vec<Applied>>>,
    attached: std::sync::Mutex<BTreeMap<String, Attachment>>,
    pub(crate) live: LiveUpdater,
}

/// What the tasks of one pass share.
struct Pass {
    project: Arc<Project>,
    refs: BTreeMap<String, String>,
    /// Each service's rendered objects, taken by its task when it deploys.
    objects: std::sync::Mutex<BTreeMap<String, Vec<Value>>>,
    in_pass: BTreeSet<String>,
    built: BTreeMap<String, watch::Sender<Option<bool>>>,
    ready: BTreeMap<String, watch::Sender<Option<bool>>>,
    builds: Semaphore,
    deadline: Instant,
}

impl Engine {
    /// Connects to `target`, chooses how images are delivered (which may set the
    /// project's registry to the cluster's advertised one) and starts the session.
    pub async fn connect(
        target: ClusterTarget,
        project: &mut Project,
        session: Session,
        opts: EngineOptions,
    ) -> Result<Arc<Engine>, EngineError> {
        let client = target.client().await?;
        let (delivery, advertised_registry) = choose_delivery(&target, &client, project).await?;
        if let Some(host) = &advertised_registry {
            // The caller's project too: what it renders names the registry from the start.
            project.overlay.settings.registry = Some(host.clone());
        }
        let registry = RegistryClient::new(opts.registry.clone())?;
        let live = LiveUpdater::new(
            client.clone(),
            SyncTransport::choose(&target.locality, opts.cluster_data_dir.as_deref()),
        );
        session.emit(Event::SessionStarted {
            project: project.config.name.clone(),
            context: target.context.clone(),
            namespace: target.namespace.clone(),
        });
        let applyset = ApplySet::new(client.clone(), &target);
        let watches = SharedWatches::new(client.clone(), applyset.owner());
        Ok(Arc::new(Engine {
            session,
            applyset: Mutex::new(applyset),
            watches,
            client,
            target,
            delivery,
            advertised_registry,
            registry,
            opts,
            applied: Default::default(),
            attached: Default::default(),
            live,
        }))
    }

    /// Brings up `wanted` (all enabled services when empty) and what they depend on.
    /// Fails only when the project cannot be rendered; per-service problems are in the
    /// report (and the session).
    pub async fn up(
        self: &Arc<Self>,
        project: Arc<Project>,
        wanted: &[String],
    ) -> Result<UpReport, EngineError> {
        let names = plan::select(&project, wanted)?;
        let mut report = self.pass(project.clone(), names).await?;
        if wanted.is_empty() {
            let known: BTreeSet<String> =
                project.enabled_services().map(|s| s.name.clone()).collect();
            report.pruned = self.prune_absent(&known).await?;
        }
        Ok(report)
    }

    /// Brings up exactly `names` (their dependencies are assumed up): the watch
    /// loop's rebuild and re-render. Unchanged images are not built again.
    pub async fn up_only(
        self: &Arc<Self>,
        project: Arc<Project>,
        names: Vec<String>,
    ) -> Result<UpReport, EngineError> {
        self.pass(project, names).await
    }

    /// `project` as this engine's target sees it: with the cluster's advertised
    /// registry when the project names none. A reloaded project comes from disk
    /// without it, so every pass (and the watch loop) goes through here.
    pub fn resolve_project(&self, project: Arc<Project>) -> Arc<Project> {
        match &self.advertised_registry {
            Some(host) if project.registry().is_none() => {
                let mut p = (*project).clone();
                p.overlay.settings.registry = Some(host.clone());
                Arc::new(p)
            }
            _ => project,
        }
    }

    async fn pass(
        self: &Arc<Self>,
        project: Arc<Project>,
        names: Vec<String>,
    ) -> Result<UpReport, EngineError> {
        let project = self.resolve_project(project);
        let refs = image_refs(&project, None, None).map_err(hoist_config::ConfigErrors)?;
        let rendered = render(
            &project,
            &RenderOptions {
                services: names.clone(),
                tag: None,
            },
        )?;
        let mut objects: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for o in rendered {
            objects.entry(o.service).or_default().push(o.object);
        }
        let channel = || watch::channel(None).0;
        let pass = Arc::new(Pass {
            project: project.clone(),
            refs,
            objects: std::sync::Mutex::new(objects),
            in_pass: names.iter().cloned().collect(),
            built: names.iter().map(|n| (n.clone(), channel())).collect(),
            ready: names.iter().map(|n| (n.clone(), channel())).collect(),
            builds: Semaphore::new(self.opts.parallelism.max(1)),
            deadline: Instant::now() + self.opts.ready_timeout,
        });
        for n in &names {
            self.session
                .emit(Event::ServiceAdded { service: n.clone() });
        }
        let mut tasks = tokio::task::JoinSet::new();
        for n in names.clone() {
            let engine = self.clone();
            let pass = pass.clone();
            tasks.spawn(async move {
                let outcome = engine.run_service(&pass, &n).await;
                (n, outcome)
            });
        }
        let mut report = UpReport::default();
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok((n, o)) => {
                    report.outcomes.insert(n, o);
                }
                Err(e) => return Err(EngineError::Other(format!("a service task failed: {e}"))),
            }
        }
        Ok(report)
    }

    async fn run_service(&self, pass: &Pass, name: &str) -> Outcome {
        let outcome = self.service_steps(pass, name).await;
        let ok = outcome.is_ready();
        pass.ready[name].send_replace(Some(ok));
        pass.built[name].send_if_modified(|v| {
            if v.is_none() {
                *v = Some(false);
                true
            } else {
                false
            }
        });
        outcome
    }

    async fn service_steps(&self, pass: &Pass, name: &str) -> Outcome {
        let Some(svc) = pass.project.service(name) else {
            return Outcome::DeployFailed {
                error: format!("service `{name}` vanished from the project"),
            };
        };
        // 1. Build (bases first: wait for the base service's build).
        if svc.image().is_some() {
            if let Some(base) = pass.project.base_service(svc)
                && pass.in_pass.contains(&base.name)
            {
                let mut rx = pass.built[&base.name].subscribe();
                let ok = rx
                    .wait_for(|v: &Option<bool>| v.is_some())
                    .await
                    .map(|v| *v == Some(true));
                if !matches!(ok, Ok(true)) {
                    let error = format!("its base image (service `{}`) did not build", base.name);
                    self.session.emit(Event::BuildFailed {
                        service: name.into(),
                        error: error.clone(),
                    });
                    return Outcome::BuildFailed { error };
                }
            }
            // The big steps are boxed: a service's task then holds only the step it is
            // in, not room for the largest of them all (150 tasks wait mostly idle).
            if let Err(error) = Box::pin(self.build(pass, name)).await {
                pass.built[name].send_replace(Some(false));
                return Outcome::BuildFailed { error };
            }
            pass.built[name].send_replace(Some(true));
        } else {
            self.session.emit(Event::BuildSkipped {
                service: name.into(),
            });
            pass.built[name].send_replace(Some(true));
        }

        // 2. Dependencies must be ready before this service is deployed.
        let deps: Vec<String> = svc
            .spec
            .depends_on
            .iter()
            .filter(|d| pass.in_pass.contains(*d))
            .cloned()
            .collect();
        let pending: Vec<String> = deps
            .iter()
            .filter(|d| pass.ready[*d].borrow().is_none())
            .cloned()
            .collect();
        if !pending.is_empty() {
            self.session.emit(Event::Blocked {
                service: name.into(),
                on: pending,
            });
        }
        let mut failed_deps = Vec::new();
        for d in &deps {
            let mut rx = pass.ready[d].subscribe();
            let left = pass.deadline.saturating_duration_since(Instant::now());
            let ok = tokio::time::timeout(left, rx.wait_for(|v: &Option<bool>| v.is_some())).await;
            if !matches!(ok, Ok(Ok(ref v)) if **v == Some(true)) {
                failed_deps.push(d.clone());
            }
        }
        if !failed_deps.is_empty() {
            let reason = format!(
                "not deployed: dependency {} is not ready",
                failed_deps.join(", ")
            );
            self.session.emit(Event::NotReady {
                service: name.into(),
                failed: true,
                reason,
            });
            return Outcome::Blocked { on: failed_deps };
        }

        // 3. Apply.
        let objects = pass
            .objects
            .lock()
            .expect("lock")
            .remove(name)
            .unwrap_or_default();
        let applied = match Box::pin(self.deploy(name, objects)).await {
            Ok(a) => a,
            Err(error) => return Outcome::DeployFailed { error },
        };

        // 4. Wait for readiness, then forwards and logs.
        let outcome = Box::pin(self.wait(name, &applied, pass.deadline)).await;
        if outcome.is_ready() {
            Box::pin(self.attach(svc, &applied)).await;
        }
        outcome
    }

    /// Port-forwards and log streams for a ready service (once; they follow its pods).
    async fn attach(&self, svc: &hoist_config::Service, applied: &[Applied]) {
        if !(self.opts.forwards || self.opts.logs)
            || self.attached.lock().expect("lock").contains_key(&svc.name)
        {
            return;
        }
        let att = attach::attach(
            &self.client,
            &self.session,
            &self.target.namespace,
            svc,
            applied,
            self.opts.forwards,
            self.opts.logs,
        )
        .await;
        self.attached
            .lock()
            .expect("lock")
            .insert(svc.name.clone(), att);
    }

    /// True when this session has deployed (or tried to deploy) the service.
    pub fn is_known(&self, name: &str) -> bool {
        self.session.read(|s| s.services.contains_key(name))
    }

    /// After a reload: services whose `ports:` changed get new forwards (without a
    /// redeploy, since ports do not change what is rendered).
    pub async fn refresh_forwards(&self, project: &Project) {
        let stale: Vec<String> = {
            let attached = self.attached.lock().expect("lock");
            attached
                .iter()
                .filter(|(name, att)| {
                    project
                        .service(name)
                        .is_some_and(|svc| attach::port_key(svc) != att.ports)
                })
                .map(|(n, _)| n.clone())
                .collect()
        };
        for name in stale {
            self.detach(&name);
            let applied = self.applied.lock().expect("lock").get(&name).cloned();
            if let (Some(svc), Some(applied)) = (project.service(&name), applied) {
                self.attach(svc, &applied).await;
            }
        }
    }

    /// Stops a service's forwards and log streams (removed, or its ports changed).
    pub fn detach(&self, name: &str) {
        self.attached.lock().expect("lock").remove(name);
    }

    /// Stops every forward and log stream.
    pub fn detach_all(&self) {
        std::mem::take(&mut *self.attached.lock().expect("lock"));
    }

    async fn build(&self, pass: &Pass, name: &str) -> Result<(), String> {
        let svc = pass.project.service(name).expect("checked by caller");
        let Some(reference) = pass.refs.get(name) else {
            let error = "the project names no registry, so the image has no reference; set \
                         `registry:` in hoist.yaml"
                .to_string();
            self.session.emit(Event::BuildFailed {
                service: name.into(),
                error: error.clone(),
            });
            return Err(error);
        };
        let _permit = pass.builds.acquire().await.expect("never closed");
        self.session.emit(Event::BuildStarted {
            service: name.into(),
        });
        let started = Instant::now();
        let res = build_and_deliver(
            &pass.project,
            svc,
            &pass.refs,
            reference,
            &self.delivery,
            &self.registry,
            &BuildOptions {
                platform: self.opts.platform.clone(),
                // The dev loop always tags by content.
                content_tag: true,
                ..BuildOptions::default()
            },
        )
        .await;
        match res {
            Ok(d) => {
                self.session.emit(Event::BuildFinished {
                    service: name.into(),
                    image: d.reference,
                    duration_ms: started.elapsed().as_millis() as u64,
                    already_there: d.already_there,
                });
                Ok(())
            }
            Err(e) => {
                let error = e.to_string();
                self.session.emit(Event::BuildFailed {
                    service: name.into(),
                    error: error.clone(),
                });
                Err(error)
            }
        }
    }

    /// Applies one service's objects (server-side, manager `hoist`) and prunes its
    /// objects that are no longer rendered.
    pub async fn deploy(&self, name: &str, objects: Vec<Value>) -> Result<Vec<Applied>, String> {
        self.session.emit(Event::DeployStarted {
            service: name.into(),
        });
        let desired = objects
            .into_iter()
            .map(|object| Desired {
                service: name.to_string(),
                object,
            })
            .collect();
        // One apply at a time: they share the inventory ConfigMap.
        let res = self
            .applyset
            .lock()
            .await
            .apply(desired, PruneScope::Services(vec![name.to_string()]))
            .await;
        match res {
            Ok(rep) => {
                self.applied
                    .lock()
                    .expect("lock")
                    .insert(name.to_string(), rep.applied.clone());
                self.session.emit(Event::Deployed {
                    service: name.into(),
                    objects: rep.applied.len(),
                    pruned: rep.pruned.len(),
                });
                Ok(rep.applied)
            }
            Err(e) => {
                let error = e.to_string();
                self.session.emit(Event::DeployFailed {
                    service: name.into(),
                    error: error.clone(),
                });
                Err(error)
            }
        }
    }

    /// Waits until the applied objects are ready (or hopeless, with `fail_fast`),
    /// and explains what is not: conditions, events, exit codes, last log lines.
    pub async fn wait(&self, name: &str, applied: &[Applied], deadline: Instant) -> Outcome {
        let left = deadline.saturating_duration_since(Instant::now());
        let waited = if self.opts.fail_fast {
            let ready_and_settled = async {
                self.watches.wait_ready(applied, left).await?;
                tokio::time::sleep(SETTLE.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                Ok(())
            };
            tokio::select! {
                r = ready_and_settled => r,
                (key, evidence) = self.watches.hopeless(applied) => {
                    // Gather the explanation from a short wait; the evidence seen
                    // (exit code, reason) is kept even if the pod has moved on since.
                    let mut report = match self.watches.wait_ready(applied, Duration::from_millis(1500)).await {
                        Err(report) => report,
                        Ok(()) => NotReadyReport::default(),
                    };
                    match report.objects.iter_mut().find(|o| o.key == key) {
                        Some(o) => {
                            o.failed = true;
                            for e in evidence {
                                if !o.containers.contains(&e) {
                                    o.containers.push(e);
                                }
                            }
                        }
                        None => report.objects.push(hoist_kube::readiness::NotReadyObject {
                            key,
                            reason: "its containers exit with an error (crash loop)".into(),
                            failed: true,
                            conditions: Vec::new(),
                            events: Vec::new(),
                            containers: evidence,
                        }),
                    }
                    Err(report)
                }
            }
        } else {
            self.watches.wait_ready(applied, left).await
        };
        match waited {
            Ok(()) => {
                self.session.emit(Event::Ready {
                    service: name.into(),
                });
                Outcome::Ready
            }
            Err(report) => {
                let failed = report.objects.iter().any(|o| o.failed) || self.opts.fail_fast;
                let explanation = self.explain(&report, applied).await;
                self.session.emit(Event::NotReady {
                    service: name.into(),
                    failed,
                    reason: explanation.clone(),
                });
                Outcome::NotReady {
                    failed,
                    explanation,
                }
            }
        }
    }

    async fn explain(&self, report: &NotReadyReport, applied: &[Applied]) -> String {
        let mut text = report.to_string();
        for o in &report.objects {
            let Some(a) = applied.iter().find(|a| a.key == o.key) else {
                continue;
            };
            let Some(ns) = a.key.namespace.as_deref() else {
                continue;
            };
            for l in diagnose::last_logs(&self.client, ns, &a.object).await {
                text.push_str("  ");
                text.push_str(&l);
                text.push('\n');
            }
        }
        text
    }

    /// Deletes the objects of services hoist deployed before that are not in `known`
    /// (removed directories, disabled services). Returns their names.
    pub async fn prune_absent(&self, known: &BTreeSet<String>) -> Result<Vec<String>, EngineError> {
        let deployed = self.deployed_services().await?;
        let stale: Vec<String> = deployed.difference(known).cloned().collect();
        if !stale.is_empty() {
            self.remove_services(&stale).await?;
        }
        Ok(stale)
    }

    /// Deletes every object of these services.
    pub async fn remove_services(&self, services: &[String]) -> Result<(), EngineError> {
        self.applyset
            .lock()
            .await
            .apply(Vec::new(), PruneScope::Services(services.to_vec()))
            .await?;
        for s in services {
            self.session
                .emit(Event::ServiceRemoved { service: s.clone() });
        }
        Ok(())
    }

    /// Services with objects in the cluster, by the labels hoist stamped.
    pub async fn deployed_services(&self) -> Result<BTreeSet<String>, EngineError> {
        let set = self.applyset.lock().await;
        let owner = set.owner().clone();
        let ns = set.namespace().to_string();
        drop(set);
        let entries = hoist_kube::inventory::read(&self.client, &ns, &owner).await?;
        let selector = owner.selector(None);
        let mut out = BTreeSet::new();
        for e in entries {
            let (group, version) = hoist_kube::object::split_api_version(&e.api_version);
            let gvk = kube::core::GroupVersionKind::gvk(group, version, &e.kind);
            let Ok((ar, _)) = kube::discovery::pinned_kind(&self.client, &gvk).await else {
                continue;
            };
            let api: Api<DynamicObject> = match &e.namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                None => Api::all_with(self.client.clone(), &ar),
            };
            if let Ok(list) = api.list(&ListParams::default().labels(&selector)).await {
                for o in list.items {
                    if let Some(s) = o
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(hoist_kube::labels::SERVICE))
                    {
                        out.insert(s.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}
/// Compile-time check: the pass's futures can be spawned on a multi-threaded runtime.
#[cfg(test)]
fn assert_send<T: Send>(_: T) {}
#[cfg(test)]
#[allow(dead_code)]
async fn probe(mut s: ApplySet, e: Arc<Engine>, a: Vec<Applied>) {
    assert_send(async move { s.apply(vec![], PruneScope::None).await });
    let e2 = e.clone();
    let a2 = a.clone();
    assert_send(async move { e2.watches.hopeless(&a2).await });
    let e3 = e.clone();
    assert_send(async move { e3.watches.wait_ready(&a, Duration::ZERO).await });
    assert_send(async move { e.deployed_services().await });
}
