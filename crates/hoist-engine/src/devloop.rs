//! The watching part of `hoist up`: file batches and project reloads (from
//! `hoist-watch`) turned into live updates, rebuilds, re-applies, new services
//! brought up and removed ones torn down. Each step is a session event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hoist_config::Project;
use hoist_kube::live_update::{ContainerRef, LiveUpdateError, SyncBatch};
use hoist_kube::readiness::pod_selector;
use hoist_watch::{Action, DevLoopInput, ReloadOutcome, ServicePlan, Update};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::error::EngineError;
use crate::pipeline::{Engine, UpReport};
use crate::plan;
use crate::state::Event;

/// How long one run step of a live update may take.
const RUN_STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Reports a reload's broken services (each with its located errors).
fn report_invalid(engine: &Engine, o: &ReloadOutcome) {
    for inv in &o.invalid {
        let errors: Vec<String> = inv.errors.iter().map(|e| e.to_string()).collect();
        engine.session.emit(Event::ConfigError {
            service: Some(inv.name.clone()),
            error: format!(
                "{} (service left as it was until this is fixed)",
                errors.join("; ")
            ),
        });
    }
}

/// The first pass of a watching session: every wanted service up; services hoist
/// deployed before that are gone from the project are removed (broken ones are kept).
pub async fn first_pass(
    engine: &Arc<Engine>,
    first: &ReloadOutcome,
    wanted: &[String],
) -> Result<UpReport, EngineError> {
    report_invalid(engine, first);
    let names = plan::select(&first.project, wanted)?;
    let mut report = engine.up_only(first.project.clone(), names).await?;
    if wanted.is_empty() {
        let mut known: BTreeSet<String> = first
            .project
            .enabled_services()
            .map(|s| s.name.clone())
            .collect();
        known.extend(first.invalid.iter().map(|i| i.name.clone()));
        report.pruned = engine.prune_absent(&known).await?;
    }
    Ok(report)
}

/// Runs until the watcher ends; to stop it, drop the future (passes in flight are
/// aborted with it: [`InFlight`]'s drop).
pub async fn watch(engine: Arc<Engine>, mut input: DevLoopInput, wanted: Vec<String>) {
    let mut inflight = InFlight::default();
    // The project as loaded and as resolved for this target: resolved again only when a
    // reload brought a new one, not on every saved file.
    let mut resolved: Option<(Arc<Project>, Arc<Project>)> = None;
    loop {
        let update = match input.next().await {
            None => return,
            Some(Err(e)) => {
                engine.session.emit(Event::Error {
                    service: None,
                    error: e.to_string(),
                });
                continue;
            }
            Some(Ok(u)) => u,
        };
        let loaded = input.project();
        let project = match &resolved {
            Some((from, to)) if Arc::ptr_eq(from, loaded) => to.clone(),
            _ => {
                let to = engine.resolve_project(loaded.clone());
                resolved = Some((loaded.clone(), to.clone()));
                to
            }
        };
        let bring_up = handle(&engine, project.clone(), update, &wanted).await;
        if !bring_up.is_empty() {
            inflight.start(&engine, project, bring_up);
        }
    }
}

/// Rebuilds and re-applies run beside the loop, so the next save is handled while a
/// rollout is still waiting for readiness. A newer change to a service that is still
/// in flight supersedes it: that pass is aborted and its services join the new one
/// (build, apply and wait are all safe to repeat).
#[derive(Default)]
struct InFlight {
    passes: Vec<(BTreeSet<String>, tokio::task::JoinHandle<()>)>,
}

impl InFlight {
    fn start(&mut self, engine: &Arc<Engine>, project: Arc<Project>, mut names: BTreeSet<String>) {
        self.passes.retain(|(_, h)| !h.is_finished());
        let mut kept = Vec::new();
        for (set, handle) in self.passes.drain(..) {
            if set.is_disjoint(&names) {
                kept.push((set, handle));
            } else {
                handle.abort();
                names.extend(set);
            }
        }
        self.passes = kept;
        let engine = engine.clone();
        let list: Vec<String> = names.iter().cloned().collect();
        let handle = tokio::spawn(async move {
            if let Err(e) = engine.up_only(project, list).await {
                engine.session.emit(Event::Error {
                    service: None,
                    error: e.to_string(),
                });
            }
        });
        self.passes.push((names, handle));
    }

    fn abort_all(&mut self) {
        for (_, h) in self.passes.drain(..) {
            h.abort();
        }
    }
}

/// A watch loop that is dropped (Ctrl-C) cancels its passes with it.
impl Drop for InFlight {
    fn drop(&mut self) {
        self.abort_all();
    }
}

fn wanted_filter(wanted: &[String], name: &str) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| w == name)
}

/// Handles one update; returns the services to build and (re-)apply.
async fn handle(
    engine: &Arc<Engine>,
    project: Arc<Project>,
    update: Update,
    wanted: &[String],
) -> BTreeSet<String> {
    let mut bring_up: BTreeSet<String> = BTreeSet::new();
    if let Some(reload) = &update.reload {
        match reload {
            Err(errors) => engine.session.emit(Event::ConfigError {
                service: None,
                error: format!("{errors} (the project stays as it was until this is fixed)"),
            }),
            Ok(o) => {
                report_invalid(engine, o);
                engine.refresh_forwards(&o.project).await;
                if !o.removed.is_empty()
                    && let Err(e) = engine.remove_services(&o.removed).await
                {
                    engine.session.emit(Event::Error {
                        service: None,
                        error: format!("removing {}: {e}", o.removed.join(", ")),
                    });
                }
                for n in &o.added {
                    if wanted_filter(wanted, n) {
                        bring_up.insert(n.clone());
                    }
                }
                for c in &o.changed {
                    if engine.is_known(&c.name) || wanted_filter(wanted, &c.name) {
                        // The config files of this service that changed, else the
                        // project's (hoist.yaml, the settings file, a mold).
                        let own = (update.plan.services.get(&c.name))
                            .map(|p| p.rerender.clone())
                            .filter(|r| !r.is_empty());
                        let paths = own.unwrap_or_else(|| update.plan.reload.clone());
                        engine.session.emit(Event::FilesChanged {
                            service: c.name.clone(),
                            paths: paths.iter().map(|p| p.display().to_string()).collect(),
                            action: if c.image { "rebuild" } else { "re-apply" }.into(),
                        });
                        // Ports may have changed: forwards are made again once ready.
                        engine.detach(&c.name);
                        bring_up.insert(c.name.clone());
                    }
                }
            }
        }
    }
    let mut live = Vec::new();
    for (name, p) in &update.plan.services {
        if !engine.is_known(name) {
            continue;
        }
        let paths = || {
            p.copies
                .iter()
                .map(|c| c.local.display().to_string())
                .chain(p.rebuild.iter().map(|r| r.to_string()))
                .collect::<Vec<_>>()
        };
        match p.action {
            Action::Sync => live.push((name.clone(), p.clone())),
            Action::Rebuild => {
                engine.session.emit(Event::FilesChanged {
                    service: name.clone(),
                    paths: paths(),
                    action: "rebuild".into(),
                });
                bring_up.insert(name.clone());
            }
            // Its reload outcome says whether the output changed (handled above).
            Action::Rerender => {}
        }
    }
    // Live updates of different services at once; a failed one falls back to a rebuild.
    let results = futures_util::future::join_all(
        live.iter()
            .map(|(name, p)| live_update(engine, &project, name, p)),
    )
    .await;
    for ((name, _), res) in live.iter().zip(results) {
        if let Err(why) = res {
            engine.session.emit(Event::FilesChanged {
                service: name.clone(),
                paths: Vec::new(),
                action: format!("rebuild ({why})"),
            });
            bring_up.insert(name.clone());
        }
    }
    bring_up
}

/// Copies the changed files into the service's running containers, runs the
/// triggered steps and restarts if asked. `Err` means "rebuild instead" (no
/// running container, no `tar` in the image); a failing run step is shown as the
/// service's error and is not a fallback.
async fn live_update(
    engine: &Engine,
    project: &Project,
    name: &str,
    plan: &ServicePlan,
) -> Result<(), String> {
    let started = Instant::now();
    engine.session.emit(Event::FilesChanged {
        service: name.into(),
        paths: plan
            .copies
            .iter()
            .map(|c| c.local.display().to_string())
            .chain(plan.deletes.iter().cloned())
            .collect(),
        action: "sync".into(),
    });
    let targets = running_containers(engine, project, name).await;
    if targets.is_empty() {
        return Err("no running container to sync into".into());
    }
    let mut batch = SyncBatch::default();
    for c in &plan.copies {
        batch = batch.copy(c.local.clone(), c.container.clone());
    }
    for d in &plan.deletes {
        batch = batch.delete(d.clone());
    }
    let steps = project
        .service(name)
        .and_then(|s| s.spec.live_update.clone())
        .unwrap_or_default();
    for t in &targets {
        match engine.live.sync(t, &batch).await {
            Ok(_) => {}
            Err(
                e @ (LiveUpdateError::NoTar { .. }
                | LiveUpdateError::NotRunning { .. }
                | LiveUpdateError::NoPod { .. }),
            ) => return Err(e.to_string()),
            Err(e) => {
                engine.session.emit(Event::LiveUpdateFailed {
                    service: name.into(),
                    error: e.to_string(),
                });
                return Ok(());
            }
        }
        for &i in &plan.runs {
            let Some(step) = steps.run.get(i) else {
                continue;
            };
            if let Err(e) = engine.live.run(t, &step.cmd, RUN_STEP_TIMEOUT).await {
                engine.session.emit(Event::LiveUpdateFailed {
                    service: name.into(),
                    error: format!("run step `{}`: {e}", step.cmd),
                });
                return Ok(());
            }
        }
        if plan.restart
            && let Err(e) = engine.live.restart(t, RUN_STEP_TIMEOUT).await
        {
            engine.session.emit(Event::LiveUpdateFailed {
                service: name.into(),
                error: format!("restart: {e}"),
            });
            return Ok(());
        }
    }
    engine.session.emit(Event::LiveUpdated {
        service: name.into(),
        files: plan.copies.len() + plan.deletes.len(),
        duration_ms: started.elapsed().as_millis() as u64,
    });
    Ok(())
}

/// The running containers of a service's pods that run its image (all containers
/// when none names it).
async fn running_containers(engine: &Engine, project: &Project, name: &str) -> Vec<ContainerRef> {
    let applied = engine
        .applied
        .lock()
        .expect("lock")
        .get(name)
        .cloned()
        .unwrap_or_default();
    let repo = project
        .service(name)
        .and_then(|s| project.image_repository(s));
    let mut out = Vec::new();
    for a in &applied {
        let (Some(ns), Some(sel)) = (a.key.namespace.as_deref(), pod_selector(&a.object)) else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(engine.client.clone(), ns);
        let Ok(list) = api.list(&ListParams::default().labels(&sel)).await else {
            continue;
        };
        for p in list.items {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let pod = p.metadata.name.clone().unwrap_or_default();
            let running: Vec<String> = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .filter(|cs| cs.state.as_ref().is_some_and(|s| s.running.is_some()))
                .map(|cs| cs.name.clone())
                .collect();
            let containers = p
                .spec
                .as_ref()
                .map(|s| s.containers.clone())
                .unwrap_or_default();
            let mine: Vec<&str> = containers
                .iter()
                .filter(|c| {
                    repo.as_deref().is_some_and(|r| {
                        c.image
                            .as_deref()
                            .is_some_and(|i| i.starts_with(&format!("{r}:")) || i == r)
                    })
                })
                .map(|c| c.name.as_str())
                .collect();
            for c in &containers {
                if (mine.is_empty() || mine.contains(&c.name.as_str())) && running.contains(&c.name)
                {
                    out.push(ContainerRef::new(ns, &pod, &c.name));
                }
            }
        }
    }
    out
}
