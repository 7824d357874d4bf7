//! Readiness as `kubectl rollout status` judges it (Deployment, StatefulSet, DaemonSet),
//! Jobs complete (or failed), Pods ready; any other kind is ready once it exists.
//! The evaluation is pure (JSON in, verdict out); [`wait_ready`] watches until every
//! object is ready or the deadline passes, then explains what is not (with its own
//! watches; [`crate::shared_watch`] waits for many services on shared ones).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use kube::runtime::watcher::{self, Event as WatchEvent, watcher};
use serde_json::Value;

use crate::object::ObjectKey;

/// The verdict on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet, and why (as `rollout status` words it where it has words).
    Progressing(String),
    /// Will not become ready by waiting (a failed Job, a failed Pod, a stalled rollout).
    Failed(String),
}

impl Readiness {
    /// Why it is not ready and whether waiting cannot fix it; `None` when ready.
    pub fn not_ready(self) -> Option<(String, bool)> {
        match self {
            Readiness::Ready => None,
            Readiness::Progressing(r) => Some((r, false)),
            Readiness::Failed(r) => Some((r, true)),
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready)
    }
}

/// Judges an object by its `kind` (objects hoist does not know are ready when they exist).
pub fn evaluate(obj: &Value) -> Readiness {
    match obj["kind"].as_str().unwrap_or("") {
        "Deployment" => deployment(obj),
        "StatefulSet" => statefulset(obj),
        "DaemonSet" => daemonset(obj),
        "Job" => job(obj),
        "Pod" => pod(obj),
        _ => Readiness::Ready,
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn generation_observed(obj: &Value) -> bool {
    int(&obj["metadata"]["generation"]) <= int(&obj["status"]["observedGeneration"])
}

/// `rollout status`'s words, plus a hint when no controller ever reported a status.
fn unobserved(what: &str, obj: &Value) -> Readiness {
    let mut s = format!("waiting for {what} spec update to be observed");
    if obj["status"]["observedGeneration"].is_null() {
        s.push_str(" (no status yet: is the cluster's controller for it running?)");
    }
    Readiness::Progressing(s)
}

/// kubectl's `DeploymentStatusViewer`.
pub fn deployment(obj: &Value) -> Readiness {
    if !generation_observed(obj) {
        return unobserved("deployment", obj);
    }
    if let Some(c) = condition(obj, "Progressing")
        && c["reason"] == "ProgressDeadlineExceeded"
    {
        return Readiness::Failed(format!(
            "deployment exceeded its progress deadline: {}",
            c["message"].as_str().unwrap_or("")
        ));
    }
    let st = &obj["status"];
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let updated = int(&st["updatedReplicas"]);
    let total = int(&st["replicas"]);
    let available = int(&st["availableReplicas"]);
    if updated < replicas {
        return Readiness::Progressing(format!(
            "{updated} out of {replicas} new replicas have been updated"
        ));
    }
    if total > updated {
        return Readiness::Progressing(format!(
            "{} old replicas are pending termination",
            total - updated
        ));
    }
    if available < updated {
        return Readiness::Progressing(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    Readiness::Ready
}

/// kubectl's `StatefulSetStatusViewer` (RollingUpdate strategy).
pub fn statefulset(obj: &Value) -> Readiness {
    if !generation_observed(obj) {
        return unobserved("statefulset", obj);
    }
    let st = &obj["status"];
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let ready = int(&st["readyReplicas"]);
    if ready < replicas {
        return Readiness::Progressing(format!("{ready} of {replicas} pods are ready"));
    }
    if obj["spec"]["updateStrategy"]["type"] == "OnDelete" {
        return Readiness::Ready;
    }
    let partition = int(&obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"]);
    if partition > 0 {
        let updated = int(&st["updatedReplicas"]);
        if updated < replicas - partition {
            return Readiness::Progressing(format!(
                "{updated} of {} new pods have been updated (partition {partition})",
                replicas - partition
            ));
        }
        return Readiness::Ready;
    }
    if st["updateRevision"] != st["currentRevision"] {
        return Readiness::Progressing(format!(
            "{} pods at revision {} so far",
            int(&st["updatedReplicas"]),
            st["updateRevision"].as_str().unwrap_or("?")
        ));
    }
    Readiness::Ready
}

/// kubectl's `DaemonSetStatusViewer`.
pub fn daemonset(obj: &Value) -> Readiness {
    if !generation_observed(obj) {
        return unobserved("daemon set", obj);
    }
    let st = &obj["status"];
    let desired = int(&st["desiredNumberScheduled"]);
    let updated = int(&st["updatedNumberScheduled"]);
    let available = int(&st["numberAvailable"]);
    if updated < desired {
        return Readiness::Progressing(format!(
            "{updated} out of {desired} new pods have been updated"
        ));
    }
    if available < desired {
        return Readiness::Progressing(format!(
            "{available} of {desired} updated pods are available"
        ));
    }
    Readiness::Ready
}

/// Complete (condition or succeeded ≥ completions) or Failed (condition).
pub fn job(obj: &Value) -> Readiness {
    let is_true = |t: &str| condition(obj, t).is_some_and(|c| c["status"] == "True");
    if is_true("Failed") {
        let c = condition(obj, "Failed").expect("checked");
        return Readiness::Failed(format!(
            "job failed: {}{}",
            c["reason"].as_str().unwrap_or("Failed"),
            c["message"]
                .as_str()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }
    if is_true("Complete") {
        return Readiness::Ready;
    }
    let st = &obj["status"];
    let completions = obj["spec"]["completions"].as_i64().unwrap_or(1);
    let succeeded = int(&st["succeeded"]);
    Readiness::Progressing(format!(
        "{succeeded} of {completions} completions, {} active, {} failed",
        int(&st["active"]),
        int(&st["failed"])
    ))
}

/// Ready condition; Failed phase (or Succeeded, for a pod that should keep running,
/// counts as ready: it did what it was made for).
pub fn pod(obj: &Value) -> Readiness {
    match obj["status"]["phase"].as_str().unwrap_or("Pending") {
        "Succeeded" => return Readiness::Ready,
        "Failed" => {
            return Readiness::Failed(format!(
                "pod failed{}",
                container_problems(obj)
                    .first()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default()
            ));
        }
        _ => {}
    }
    if condition(obj, "Ready").is_some_and(|c| c["status"] == "True") {
        return Readiness::Ready;
    }
    let problems = container_problems(obj);
    Readiness::Progressing(if problems.is_empty() {
        format!(
            "pod is {}",
            obj["status"]["phase"].as_str().unwrap_or("Pending")
        )
    } else {
        problems.join("; ")
    })
}

/// `container web: waiting (CrashLoopBackOff: ...)`, `... terminated with exit code 1 (Error)`.
pub fn container_problems(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for list in ["initContainerStatuses", "containerStatuses"] {
        for cs in pod["status"][list].as_array().into_iter().flatten() {
            let name = cs["name"].as_str().unwrap_or("?");
            if let Some(w) = cs["state"]["waiting"].as_object() {
                let reason = w.get("reason").and_then(Value::as_str).unwrap_or("Waiting");
                let msg = w
                    .get("message")
                    .and_then(Value::as_str)
                    .map(|m| format!(": {m}"));
                let last = terminated(&cs["lastState"]["terminated"])
                    .map(|t| format!(" (last run {t})"))
                    .unwrap_or_default();
                out.push(format!(
                    "container {name}: {reason}{}{last}",
                    msg.unwrap_or_default()
                ));
            } else if let Some(t) = terminated(&cs["state"]["terminated"]) {
                let ok =
                    cs["state"]["terminated"]["exitCode"] == 0 && list == "initContainerStatuses";
                if !ok {
                    out.push(format!("container {name}: {t}"));
                }
            } else if cs["ready"] == false && cs["state"]["running"].is_object() {
                out.push(format!("container {name}: running, not ready"));
            }
        }
    }
    out
}

fn terminated(t: &Value) -> Option<String> {
    let code = t["exitCode"].as_i64()?;
    Some(format!(
        "terminated with exit code {code}{}",
        t["reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ))
}

/// An object to wait for.
#[derive(Debug, Clone)]
pub struct WaitTarget {
    pub key: ObjectKey,
    pub resource: ApiResource,
}

impl From<&crate::apply::Applied> for WaitTarget {
    fn from(a: &crate::apply::Applied) -> Self {
        WaitTarget {
            key: a.key.clone(),
            resource: a.resource.clone(),
        }
    }
}

/// Why each object is not ready at the deadline.
#[derive(Debug, Clone, Default)]
pub struct NotReadyReport {
    pub objects: Vec<NotReadyObject>,
}

impl NotReadyReport {
    /// `Ok` when nothing is in the report.
    pub fn into_result(self) -> Result<(), NotReadyReport> {
        if self.objects.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

#[derive(Debug, Clone)]
pub struct NotReadyObject {
    pub key: ObjectKey,
    /// The verdict's words, or "does not exist".
    pub reason: String,
    /// True when waiting longer would not help.
    pub failed: bool,
    /// `Type=Status (Reason): message` of its conditions that are not healthy.
    pub conditions: Vec<String>,
    /// Its last events (oldest first), `Reason: message`.
    pub events: Vec<String>,
    /// Its pods' container problems (waiting reasons, exit codes).
    pub containers: Vec<String>,
}

impl fmt::Display for NotReadyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for o in &self.objects {
            writeln!(
                f,
                "{} {}: {}",
                o.key,
                if o.failed { "failed" } else { "is not ready" },
                o.reason
            )?;
            for c in &o.conditions {
                writeln!(f, "  condition {c}")?;
            }
            for c in &o.containers {
                writeln!(f, "  {c}")?;
            }
            for e in &o.events {
                writeln!(f, "  event {e}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for NotReadyReport {}

/// Watches every target until each is ready or failed, or `timeout` passes. `Err` explains each object that is not ready.
pub async fn wait_ready(
    client: &Client,
    targets: &[WaitTarget],
    timeout: Duration,
) -> Result<(), NotReadyReport> {
    let latest: Arc<Mutex<BTreeMap<usize, Option<Value>>>> = Arc::default();
    // One watch per kind and namespace, not per object: 150 Deployments are one stream.
    let mut groups: BTreeMap<(String, String, Option<String>), Vec<usize>> = BTreeMap::new();
    for (i, t) in targets.iter().enumerate() {
        groups
            .entry((
                t.key.api_version(),
                t.key.kind.clone(),
                t.key.namespace.clone(),
            ))
            .or_default()
            .push(i);
    }
    let watches = groups.into_values().map(|idxs| {
        let latest = latest.clone();
        let api = dyn_api(client, &targets[idxs[0]]);
        let mut names: HashMap<String, Vec<usize>> = HashMap::new();
        for &i in &idxs {
            names
                .entry(targets[i].key.name.clone())
                .or_default()
                .push(i);
        }
        async move {
            let set = |name: &str, v: Option<Value>, settled: &mut HashSet<String>| {
                let terminal = v
                    .as_ref()
                    .is_some_and(|v| !matches!(evaluate(v), Readiness::Progressing(_)));
                let mut l = latest.lock().expect("not poisoned");
                for &i in &names[name] {
                    l.insert(i, v.clone());
                }
                if terminal {
                    settled.insert(name.to_string());
                } else {
                    settled.remove(name);
                }
            };
            let mut settled: HashSet<String> = HashSet::new();
            let mut listed: HashSet<String> = HashSet::new();
            // One object: watch just it (a per-service wait in a namespace of 150
            // Deployments would otherwise list all 150 each time).
            let config = match names.keys().next() {
                Some(only) if names.len() == 1 => {
                    watcher::Config::default().fields(&format!("metadata.name={only}"))
                }
                _ => watcher::Config::default(),
            };
            let mut stream = std::pin::pin!(watcher(api, config));
            while let Some(ev) = stream.next().await {
                let ev = match ev {
                    Ok(ev) => ev,
                    // The watcher retries on its own; keep the last state we saw.
                    Err(e) => {
                        tracing::debug!(error = %e, "watch error");
                        continue;
                    }
                };
                match ev {
                    WatchEvent::Init => listed.clear(),
                    WatchEvent::InitApply(o) | WatchEvent::Apply(o) => {
                        let Some(name) = o.metadata.name.clone().filter(|n| names.contains_key(n))
                        else {
                            continue;
                        };
                        listed.insert(name.clone());
                        set(&name, serde_json::to_value(o).ok(), &mut settled);
                    }
                    WatchEvent::Delete(o) => {
                        if let Some(name) = o.metadata.name.filter(|n| names.contains_key(n)) {
                            set(&name, None, &mut settled);
                        }
                    }
                    WatchEvent::InitDone => {
                        let missing: Vec<String> = names
                            .keys()
                            .filter(|n| !listed.contains(*n))
                            .cloned()
                            .collect();
                        for name in missing {
                            set(&name, None, &mut settled);
                        }
                    }
                }
                if settled.len() == names.len() {
                    return;
                }
            }
        }
    });
    let all = futures_util::future::join_all(watches);
    let _ = tokio::time::timeout(timeout, all).await;

    let states = latest.lock().expect("not poisoned").clone();
    let mut report = NotReadyReport::default();
    for (i, t) in targets.iter().enumerate() {
        let obj = states.get(&i).cloned().flatten();
        let verdict = match &obj {
            Some(v) => evaluate(v),
            None => Readiness::Progressing("does not exist".into()),
        };
        let Some((reason, failed)) = verdict.not_ready() else {
            continue;
        };
        report
            .objects
            .push(explain(client, t, obj.as_ref(), reason, failed).await);
    }
    report.into_result()
}

pub(crate) fn dyn_api(client: &Client, t: &WaitTarget) -> Api<DynamicObject> {
    match &t.key.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &t.resource),
        None => Api::all_with(client.clone(), &t.resource),
    }
}

/// Gathers conditions, last events and pod container problems for one object.
/// Lookups that fail only leave their part empty: the report must still be produced.
pub(crate) async fn explain(
    client: &Client,
    t: &WaitTarget,
    obj: Option<&Value>,
    reason: String,
    failed: bool,
) -> NotReadyObject {
    let mut out = NotReadyObject {
        key: t.key.clone(),
        reason,
        failed,
        conditions: Vec::new(),
        events: Vec::new(),
        containers: Vec::new(),
    };
    let Some(obj) = obj else { return out };
    out.conditions = unhealthy_conditions(obj);
    let Some(ns) = t.key.namespace.as_deref() else {
        return out;
    };
    out.events = last_events(client, ns, &t.key.kind, &t.key.name, 5).await;
    if t.key.kind == "Pod" {
        out.containers = container_problems(obj);
    } else if let Some(sel) = pod_selector(obj) {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        if let Ok(list) = pods.list(&ListParams::default().labels(&sel)).await {
            for p in list.items {
                let name = p.metadata.name.clone().unwrap_or_default();
                let v = serde_json::to_value(&p).unwrap_or(Value::Null);
                for problem in container_problems(&v) {
                    out.containers.push(format!("pod {name}: {problem}"));
                }
                for e in last_events(client, ns, "Pod", &name, 3).await {
                    out.events.push(format!("pod {name}: {e}"));
                }
            }
        }
    }
    out
}

/// Conditions other than `Type=True` for positive types (and `True` for negative ones).
pub fn unhealthy_conditions(obj: &Value) -> Vec<String> {
    let negative = ["Failed", "ReplicaFailure", "Stalled", "FailureTarget"];
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            let t = c["type"].as_str().unwrap_or("");
            let s = c["status"].as_str().unwrap_or("");
            if negative.contains(&t) {
                s == "True"
            } else {
                s != "True"
            }
        })
        .map(|c| {
            format!(
                "{}={}{}{}",
                c["type"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?"),
                c["reason"]
                    .as_str()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                c["message"]
                    .as_str()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// A workload's `spec.selector.matchLabels`; `None` when it has none.
pub fn match_labels(obj: &Value) -> Option<std::collections::BTreeMap<String, String>> {
    let m = obj["spec"]["selector"]["matchLabels"].as_object()?;
    if m.is_empty() {
        return None;
    }
    Some(
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect(),
    )
}

/// [`match_labels`] as a label selector string.
pub fn pod_selector(obj: &Value) -> Option<String> {
    Some(
        match_labels(obj)?
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

async fn last_events(client: &Client, ns: &str, kind: &str, name: &str, n: usize) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    // Filtered here rather than by field selector: not every server supports
    // `involvedObject.*` selectors.
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    let mut events: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name)
                && e.involved_object.kind.as_deref() == Some(kind)
        })
        .collect();
    events.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .or(e.event_time.as_ref().map(|t| t.0.as_second()))
            .unwrap_or(0)
    });
    let skip = events.len().saturating_sub(n);
    events
        .into_iter()
        .skip(skip)
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}
