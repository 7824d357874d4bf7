//! Readiness waits that share their watches: one watch per kind and namespace for the
//! objects hoist applied (by the owner's label selector), and one pod watch per
//! namespace for fail-fast. At 150 services that is two or three streams instead of
//! one watch per service plus one pod list per service every second — each of which
//! held an HTTP connection and its buffers.
//!
//! A wait judges the same way [`crate::readiness::wait_ready`] does (`rollout status`
//! rules, Jobs complete, Pods ready), from verdicts the watch keeps per object. Only
//! verdicts are kept, never whole objects: the explanation of an object that is not
//! ready fetches it once, at the end.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as WatchEvent, watcher};
use serde_json::Value;
use tokio::sync::watch;

use crate::apply::Applied;
use crate::labels::Owner;
use crate::object::ObjectKey;
use crate::readiness::{NotReadyReport, Readiness, WaitTarget, dyn_api, evaluate, explain};

/// Container waiting reasons that will not fix themselves by waiting.
pub const HOPELESS: &[&str] = &[
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The latest state of every object one watch reports, by name. A relist (the
/// watcher's `Init` … `InitDone`) replaces the whole set, so objects deleted while the
/// watch was down disappear too.
#[derive(Debug)]
pub struct Store<T> {
    items: BTreeMap<String, T>,
    relist: Option<BTreeMap<String, T>>,
    synced: bool,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }
}

impl<T> Store<T> {
    /// True once the first list is complete: before that, absence means nothing.
    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn get(&self, name: &str) -> Option<&T> {
        self.items.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.items.iter()
    }

    pub fn init(&mut self) {
        self.relist = Some(BTreeMap::new());
    }

    /// An object of the relist; `None`: it is listed but not worth keeping.
    pub fn init_apply(&mut self, name: String, value: Option<T>) {
        if let (Some(relist), Some(v)) = (self.relist.as_mut(), value) {
            relist.insert(name, v);
        }
    }

    pub fn init_done(&mut self) {
        if let Some(relist) = self.relist.take() {
            self.items = relist;
        }
        self.synced = true;
    }

    /// An object changed; `None`: it is not (or no longer) worth keeping.
    pub fn apply(&mut self, name: String, value: Option<T>) {
        match value {
            Some(v) => {
                self.items.insert(name, v);
            }
            None => {
                self.items.remove(&name);
            }
        }
    }

    pub fn delete(&mut self, name: &str) {
        self.items.remove(name);
    }
}

/// What the watch keeps of one applied object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub uid: Option<String>,
    pub generation: i64,
    pub readiness: Readiness,
}

impl Verdict {
    pub fn of(obj: &Value) -> Verdict {
        Verdict {
            uid: obj["metadata"]["uid"].as_str().map(String::from),
            generation: obj["metadata"]["generation"].as_i64().unwrap_or(0),
            readiness: evaluate(obj),
        }
    }
}

/// The verdict on `applied` (the server's answer to the apply) from what the watch has
/// seen. A state older than the apply (another uid, a lower generation) does not
/// count: after a re-apply, the previous rollout's "ready" must not end the wait.
pub fn current(store: &Store<Verdict>, applied: &Value) -> Readiness {
    if !store.synced() {
        return Readiness::Progressing("waiting for the first list".into());
    }
    let name = applied["metadata"]["name"].as_str().unwrap_or("");
    let Some(seen) = store.get(name) else {
        return Readiness::Progressing("does not exist".into());
    };
    let uid = applied["metadata"]["uid"].as_str();
    let generation = applied["metadata"]["generation"].as_i64().unwrap_or(0);
    if uid.is_some_and(|u| seen.uid.as_deref().is_some_and(|s| s != u))
        || seen.generation < generation
    {
        return Readiness::Progressing("waiting for the applied version to be observed".into());
    }
    seen.readiness.clone()
}

/// What the pod watch keeps of a pod in trouble (pods without trouble are not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTrouble {
    pub labels: BTreeMap<String, String>,
    /// `pod P: container C CrashLoopBackOff; exited with code 1 (Error)`, one per container.
    pub evidence: Vec<String>,
}

/// Containers of `pod` in a state waiting cannot fix: a hopeless waiting reason, or an
/// exit with a non-zero code (now or in the previous run).
pub fn pod_trouble(pod: &Pod) -> Vec<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    let mut out = Vec::new();
    for cs in statuses.into_iter().flatten() {
        let waiting = cs
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
            .filter(|r| HOPELESS.contains(r));
        let exited = [
            cs.state.as_ref().and_then(|s| s.terminated.as_ref()),
            cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()),
        ]
        .into_iter()
        .flatten()
        .find(|t| t.exit_code != 0);
        if waiting.is_none() && exited.is_none() {
            continue;
        }
        let mut what = format!("pod {name}: container {}", cs.name);
        if let Some(r) = waiting {
            what.push_str(&format!(" {r}"));
        }
        if let Some(t) = exited {
            what.push_str(&format!(
                "{} exited with code {}{}",
                if waiting.is_some() { ";" } else { "" },
                t.exit_code,
                t.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        out.push(what);
    }
    out
}

fn trouble_of(pod: &Pod) -> Option<PodTrouble> {
    let evidence = pod_trouble(pod);
    (!evidence.is_empty()).then(|| PodTrouble {
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        evidence,
    })
}

/// Which pods belong to a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodMatch {
    /// The object is the pod.
    Name(String),
    /// The workload's `spec.selector.matchLabels`.
    Labels(BTreeMap<String, String>),
}

impl PodMatch {
    /// `None` for objects whose pods are not judged by their containers: Jobs and
    /// CronJobs (their own status says when they failed; failed pods are retried up to
    /// `backoffLimit`) and objects without a pod selector.
    pub fn of(applied: &Value) -> Option<PodMatch> {
        match applied["kind"].as_str().unwrap_or("") {
            "Pod" => Some(PodMatch::Name(
                applied["metadata"]["name"].as_str()?.to_string(),
            )),
            "Job" | "CronJob" => None,
            _ => crate::readiness::match_labels(applied).map(PodMatch::Labels),
        }
    }

    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            PodMatch::Name(n) => n == name,
            PodMatch::Labels(want) => want.iter().all(|(k, v)| labels.get(k) == Some(v)),
        }
    }
}

/// Evidence from the pods in trouble that `m` selects (pods in name order).
pub fn evidence(store: &Store<PodTrouble>, m: &PodMatch) -> Vec<String> {
    store
        .iter()
        .filter(|(name, t)| m.matches(name, &t.labels))
        .flat_map(|(_, t)| t.evidence.iter().cloned())
        .collect()
}

type KindKey = (String, String, Option<String>);

/// A store fed by a background watch; the watch stops when this is dropped.
struct Feed<T> {
    store: Arc<Mutex<Store<T>>>,
    task: tokio::task::AbortHandle,
}

impl<T> Drop for Feed<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The watches every readiness wait of one engine shares (see the module docs).
/// Watches start on first use and stop when this is dropped.
pub struct SharedWatches {
    client: Client,
    selector: String,
    kinds: Mutex<HashMap<KindKey, Feed<Verdict>>>,
    pods: Mutex<HashMap<String, Feed<PodTrouble>>>,
    /// Bumped after every change to a kind store: readiness waiters re-check on it.
    kinds_changed: Arc<watch::Sender<u64>>,
    /// Bumped after every change to a pod store: [`SharedWatches::hopeless`] re-checks on
    /// it. Apart, so a pod event in the namespace does not wake every readiness waiter.
    pods_changed: Arc<watch::Sender<u64>>,
}

impl SharedWatches {
    /// Objects are watched by `owner`'s labels (hoist stamps them on everything it
    /// applies); pods namespace-wide (a workload's pods carry only its template's labels).
    pub fn new(client: Client, owner: &Owner) -> Self {
        Self {
            client,
            selector: owner.selector(None),
            kinds: Mutex::default(),
            pods: Mutex::default(),
            kinds_changed: Arc::new(watch::channel(0).0),
            pods_changed: Arc::new(watch::channel(0).0),
        }
    }

    fn spawn_feed<K, T>(
        changed: Arc<watch::Sender<u64>>,
        api: Api<K>,
        config: watcher::Config,
        keep: impl Fn(&K) -> Option<T> + Send + 'static,
    ) -> Feed<T>
    where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
        T: Send + 'static,
    {
        let store: Arc<Mutex<Store<T>>> = Arc::default();
        let s = store.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
            while let Some(ev) = stream.next().await {
                let ev = match ev {
                    Ok(ev) => ev,
                    // The watcher retries (with backoff); the store keeps what it saw.
                    Err(e) => {
                        tracing::debug!(error = %e, "shared watch error");
                        continue;
                    }
                };
                let name = |o: &K| o.meta().name.clone().unwrap_or_default();
                {
                    let mut st = s.lock().expect("not poisoned");
                    match ev {
                        WatchEvent::Init => st.init(),
                        WatchEvent::InitApply(o) => st.init_apply(name(&o), keep(&o)),
                        WatchEvent::InitDone => st.init_done(),
                        WatchEvent::Apply(o) => st.apply(name(&o), keep(&o)),
                        WatchEvent::Delete(o) => st.delete(&name(&o)),
                    }
                }
                changed.send_modify(|v| *v = v.wrapping_add(1));
            }
        });
        Feed {
            store,
            task: task.abort_handle(),
        }
    }

    /// Watches running: one per kind and namespace waited on, one per namespace
    /// whose pods were checked.
    pub fn watch_count(&self) -> usize {
        self.kinds.lock().expect("not poisoned").len()
            + self.pods.lock().expect("not poisoned").len()
    }

    /// The store of `t`'s kind and namespace (its watch started if needed).
    fn kind_store(&self, t: &WaitTarget) -> Arc<Mutex<Store<Verdict>>> {
        let key = (
            t.key.api_version(),
            t.key.kind.clone(),
            t.key.namespace.clone(),
        );
        let mut kinds = self.kinds.lock().expect("not poisoned");
        kinds
            .entry(key)
            .or_insert_with(|| {
                let api = dyn_api(&self.client, t);
                let config = watcher::Config::default().labels(&self.selector);
                Self::spawn_feed(
                    self.kinds_changed.clone(),
                    api,
                    config,
                    |o: &DynamicObject| serde_json::to_value(o).ok().map(|v| Verdict::of(&v)),
                )
            })
            .store
            .clone()
    }

    fn pod_store(&self, namespace: &str) -> Arc<Mutex<Store<PodTrouble>>> {
        let mut pods = self.pods.lock().expect("not poisoned");
        pods.entry(namespace.to_string())
            .or_insert_with(|| {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
                Self::spawn_feed(
                    self.pods_changed.clone(),
                    api,
                    watcher::Config::default(),
                    trouble_of,
                )
            })
            .store
            .clone()
    }

    /// Waits until every applied object is ready or failed, or `timeout` passes, like
    /// [`crate::readiness::wait_ready`]. `Err` explains each object that is not ready.
    pub async fn wait_ready(
        &self,
        applied: &[Applied],
        timeout: Duration,
    ) -> Result<(), NotReadyReport> {
        let targets: Vec<WaitTarget> = applied.iter().map(WaitTarget::from).collect();
        let stores: Vec<_> = targets.iter().map(|t| self.kind_store(t)).collect();
        let verdicts = || -> Vec<Readiness> {
            applied
                .iter()
                .zip(&stores)
                .map(|(a, s)| current(&s.lock().expect("not poisoned"), &a.object))
                .collect()
        };
        // Subscribed before the first look, so no change between the two is missed.
        let mut rx = self.kinds_changed.subscribe();
        let settled = async {
            loop {
                let v = verdicts();
                if v.iter().all(|r| !matches!(r, Readiness::Progressing(_))) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, settled).await;

        let mut report = NotReadyReport::default();
        for ((t, a), verdict) in targets.iter().zip(applied).zip(verdicts()) {
            let Some((reason, failed)) = verdict.not_ready() else {
                continue;
            };
            // The object as it is now, for its conditions and pods (only for the few
            // that are not ready: the watch keeps verdicts, not objects).
            let obj = if reason == "does not exist" {
                None
            } else {
                fetch(&self.client, t, &a.key.name).await
            };
            report
                .objects
                .push(explain(&self.client, t, obj.as_ref(), reason, failed).await);
        }
        report.into_result()
    }

    /// Resolves when a pod of the applied workloads is in a state waiting cannot fix
    /// (see [`pod_trouble`]), with the workload and what was seen. Never resolves when
    /// none of the objects has pods judged this way.
    pub async fn hopeless(&self, applied: &[Applied]) -> (ObjectKey, Vec<String>) {
        let mut watched = Vec::new();
        for a in applied {
            let Some(ns) = a.key.namespace.as_deref() else {
                continue;
            };
            if let Some(m) = PodMatch::of(&a.object) {
                watched.push((a.key.clone(), self.pod_store(ns), m));
            }
        }
        if watched.is_empty() {
            return std::future::pending().await;
        }
        let mut rx = self.pods_changed.subscribe();
        loop {
            for (key, store, m) in &watched {
                let found = evidence(&store.lock().expect("not poisoned"), m);
                if !found.is_empty() {
                    return (key.clone(), found);
                }
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

async fn fetch(client: &Client, t: &WaitTarget, name: &str) -> Option<Value> {
    let obj = dyn_api(client, t).get_opt(name).await.ok()??;
    serde_json::to_value(obj).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(uid: &str, generation: i64, observed: i64, available: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "uid": uid, "generation": generation},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": observed, "replicas": 1, "updatedReplicas": 1,
                       "availableReplicas": available}
        })
    }

    fn synced(objs: &[Value]) -> Store<Verdict> {
        let mut s = Store::default();
        s.init();
        for o in objs {
            s.init_apply(
                o["metadata"]["name"].as_str().unwrap().into(),
                Some(Verdict::of(o)),
            );
        }
        s.init_done();
        s
    }

    #[test]
    fn nothing_counts_before_the_first_list() {
        let applied = deployment("u1", 1, 1, 1);
        let mut s = Store::default();
        s.apply("web".into(), Some(Verdict::of(&applied)));
        assert!(
            matches!(current(&s, &applied), Readiness::Progressing(r) if r.contains("first list"))
        );
        s.init();
        s.init_apply("web".into(), Some(Verdict::of(&applied)));
        s.init_done();
        assert_eq!(current(&s, &applied), Readiness::Ready);
    }

    #[test]
    fn absent_objects_do_not_exist() {
        let s = synced(&[]);
        assert_eq!(
            current(&s, &deployment("u1", 1, 0, 0)),
            Readiness::Progressing("does not exist".into())
        );
    }

    #[test]
    fn a_state_older_than_the_apply_does_not_count() {
        // The watch still holds the previous rollout (generation 1, ready) when the
        // re-apply (generation 2) asks.
        let s = synced(&[deployment("u1", 1, 1, 1)]);
        let reapplied = deployment("u1", 2, 1, 1);
        assert!(
            matches!(current(&s, &reapplied), Readiness::Progressing(r) if r.contains("applied version"))
        );
        // Deleted and created again: another uid, even at the same generation.
        let recreated = deployment("u2", 1, 0, 0);
        assert!(
            matches!(current(&s, &recreated), Readiness::Progressing(r) if r.contains("applied version"))
        );
        // Once the watch sees the new generation, its rollout rules apply.
        let mut s = s;
        s.apply("web".into(), Some(Verdict::of(&deployment("u1", 2, 1, 1))));
        assert!(
            matches!(current(&s, &reapplied), Readiness::Progressing(r) if r.contains("spec update"))
        );
        s.apply("web".into(), Some(Verdict::of(&deployment("u1", 2, 2, 1))));
        assert_eq!(current(&s, &reapplied), Readiness::Ready);
        // A newer state than the apply response is fine.
        s.apply("web".into(), Some(Verdict::of(&deployment("u1", 3, 3, 1))));
        assert_eq!(current(&s, &reapplied), Readiness::Ready);
    }

    #[test]
    fn a_relist_replaces_everything_and_delete_removes() {
        let mut s = synced(&[deployment("u1", 1, 1, 1)]);
        s.delete("web");
        assert!(s.get("web").is_none());
        s.apply("web".into(), Some(Verdict::of(&deployment("u1", 1, 1, 1))));
        s.apply(
            "other".into(),
            Some(Verdict::of(&deployment("u3", 1, 1, 1))),
        );
        // A relist in progress changes nothing until it is done; then only what it
        // listed remains.
        s.init();
        s.init_apply("web".into(), Some(Verdict::of(&deployment("u1", 1, 1, 0))));
        assert_eq!(s.get("web").unwrap().readiness, Readiness::Ready);
        assert!(s.get("other").is_some());
        s.init_done();
        assert!(s.get("other").is_none());
        assert!(matches!(
            s.get("web").unwrap().readiness,
            Readiness::Progressing(_)
        ));
        // `None` means "not worth keeping": it removes what was kept.
        s.apply("web".into(), None);
        assert!(s.get("web").is_none());
    }

    fn pod(name: &str, labels: Value, statuses: Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "status": {"containerStatuses": statuses}
        }))
        .unwrap()
    }

    #[test]
    fn pod_trouble_names_hopeless_waits_and_failed_exits() {
        let crash = pod(
            "web-1",
            json!({"app": "web"}),
            json!([{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}}]),
        );
        assert_eq!(
            pod_trouble(&crash),
            vec!["pod web-1: container c CrashLoopBackOff; exited with code 3 (Error)"]
        );
        let fine = pod(
            "web-2",
            json!({"app": "web"}),
            json!([{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}}},
                   {"name": "d", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0}}}]),
        );
        assert!(pod_trouble(&fine).is_empty());
        assert!(trouble_of(&fine).is_none());
        let pull = pod(
            "db-0",
            json!({"app": "db"}),
            json!([{"name": "db", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "no such image"}}}]),
        );
        assert_eq!(
            pod_trouble(&pull),
            vec!["pod db-0: container db ErrImagePull"]
        );
    }

    #[test]
    fn evidence_is_from_the_workloads_own_pods() {
        let crash = |name: &str, app: &str| {
            pod(
                name,
                json!({"app": app, "pod-template-hash": "x"}),
                json!([{"name": "c", "image": "i", "imageID": "", "ready": false,
                        "restartCount": 1, "state": {"terminated": {"exitCode": 1}}}]),
            )
        };
        let mut s: Store<PodTrouble> = Store::default();
        s.init();
        for p in [
            crash("web-b", "web"),
            crash("api-a", "api"),
            crash("web-a", "web"),
        ] {
            s.init_apply(p.metadata.name.clone().unwrap(), trouble_of(&p));
        }
        s.init_done();
        let web = PodMatch::of(&deployment("u", 1, 1, 1)).unwrap();
        assert_eq!(
            evidence(&s, &web),
            vec![
                "pod web-a: container c exited with code 1",
                "pod web-b: container c exited with code 1"
            ]
        );
        let by_name = PodMatch::of(&json!({"kind": "Pod", "metadata": {"name": "api-a"}}));
        assert_eq!(by_name, Some(PodMatch::Name("api-a".into())));
        assert_eq!(evidence(&s, &by_name.unwrap()).len(), 1);
        let other = PodMatch::Labels([("app".to_string(), "db".to_string())].into());
        assert!(evidence(&s, &other).is_empty());
        // A pod that recovered is dropped from the store.
        s.apply("web-a".into(), None);
        s.apply("web-b".into(), None);
        assert!(evidence(&s, &web).is_empty());
    }

    #[test]
    fn jobs_and_selectorless_objects_have_no_pod_match() {
        let job = json!({"kind": "Job", "spec": {"selector": {"matchLabels": {"a": "b"}}}});
        assert_eq!(PodMatch::of(&job), None);
        assert_eq!(PodMatch::of(&json!({"kind": "CronJob"})), None);
        assert_eq!(
            PodMatch::of(&json!({"kind": "Service", "spec": {"selector": {"app": "web"}}})),
            None
        );
        assert_eq!(
            PodMatch::of(&json!({"kind": "Deployment", "spec": {"selector": {"matchLabels": {}}}})),
            None
        );
    }
}
