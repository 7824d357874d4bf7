//! Workload controllers: Deployment → ReplicaSet (rolling update with maxSurge /
//! maxUnavailable, revisions, status and conditions as `kubectl rollout status` reads
//! them), ReplicaSet → Pods, Job → Pods (completions, parallelism, backoffLimit,
//! Complete/Failed conditions) and Service → Endpoints + EndpointSlice from ready pods.
//!
//! StatefulSets, DaemonSets and CronJobs live in the submodules.
//!
//! Level-triggered: every relevant change wakes one pass over all objects. A workload
//! controls the pods it owns that its selector (matchLabels and matchExpressions) still
//! selects: a pod relabelled out of the selector is released, and ReplicaSets,
//! StatefulSets and DaemonSets adopt matching orphans, as Kubernetes' controllers do.

mod cronjob;
mod daemonset;
mod statefulset;
mod volume_claims;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::app::{App, Propagation};
use crate::clock::now_rfc3339;
use crate::kubelet::events;
use crate::objects;
use crate::status::ApiResult;
use crate::storage::{Write, Written};

const WATCHED: [&str; 11] = [
    "/pods",
    "batch/jobs",
    "apps/replicasets",
    "apps/deployments",
    "/services",
    "/namespaces",
    "apps/statefulsets",
    "apps/daemonsets",
    "apps/controllerrevisions",
    "batch/cronjobs",
    "/persistentvolumeclaims",
];

/// Runs the controllers until the server stops.
pub fn spawn(app: Arc<App>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(sub) = app.store.subscribe(app.store.current_rv()) else {
            return;
        };
        let mut live = sub.live;
        let mut stopping = app.stopping.subscribe();
        loop {
            // A pass reads and writes the store synchronously: off the async workers, so
            // API requests are served while it runs.
            let a = app.clone();
            match tokio::task::spawn_blocking(move || pass(&a)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "workload controllers pass failed"),
                Err(e) => tracing::error!(error = %e, "workload controllers pass panicked"),
            }
            // Wait for a relevant change (or a periodic resync), then let a burst settle.
            let wake = tokio::time::sleep(Duration::from_secs(2));
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    c = live.recv() => match c {
                        Ok(c) if WATCHED.contains(&c.resource.as_str()) => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(_) => return,
                    },
                    _ = &mut wake => break,
                    _ = stopping.changed() => return,
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            while live.try_recv().is_ok() {}
        }
    })
}

fn pass(app: &App) -> ApiResult<()> {
    // Each controller's failure is logged on its own: one bad object stops no other kind.
    for (what, r) in [
        ("statefulsets", statefulset::pass(app)),
        ("daemonsets", daemonset::pass(app)),
        ("cronjobs", cronjob::pass(app, &crate::clock::SystemClock)),
        ("volume claims", volume_claims::pass(app)),
    ] {
        if let Err(e) = r {
            tracing::warn!(error = %e, controller = what, "controller pass failed");
        }
    }
    let (deployments, _) = app.store.list_shared("apps/deployments", None);
    for d in &deployments {
        if !objects::is_deleting(d) {
            deployment(app, d)?;
        }
    }
    let (sets, _) = app.store.list_shared("apps/replicasets", None);
    for rs in &sets {
        if !objects::is_deleting(rs) {
            replica_set(app, rs)?;
        }
    }
    let (jobs, _) = app.store.list_shared("batch/jobs", None);
    for j in &jobs {
        if !objects::is_deleting(j) {
            job(app, j)?;
        }
    }
    let (services, _) = app.store.list_shared("/services", None);
    for s in &services {
        if !objects::is_deleting(s) {
            endpoints(app, s)?;
        }
    }
    Ok(())
}

fn ns_of(o: &Value) -> &str {
    objects::meta_str(o, "namespace").unwrap_or("")
}

fn uid_of(o: &Value) -> &str {
    objects::meta_str(o, "uid").unwrap_or("")
}

fn owned_by<'a, T: std::borrow::Borrow<Value>>(items: &'a [T], owner_uid: &str) -> Vec<&'a Value> {
    items
        .iter()
        .map(|o| o.borrow())
        .filter(|o| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
        })
        .collect()
}

fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "name": objects::name_of(owner), "uid": uid_of(owner),
        "controller": true, "blockOwnerDeletion": true,
    })
}

/// Whether `owner`'s `spec.selector` (matchLabels and matchExpressions) still selects
/// `obj`, one of its dependents (true without a usable selector: see [`claim_pods`]).
fn selects(owner: &Value, obj: &Value) -> bool {
    let selector = owner
        .pointer("/spec/selector")
        .and_then(|s| hoist_apimachinery::selector::LabelSelector::from_label_selector_json(s).ok())
        .filter(|s| !s.is_empty());
    selector.is_none_or(|s| s.matches_object(obj))
}

fn controller_uid(o: &Value) -> Option<&str> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

/// The pods `owner` controls, as Kubernetes' controller ref manager decides: owned pods
/// its selector no longer selects are released (their owner reference removed), and
/// when `adopt` accepts an orphan the selector selects, it is adopted.
fn claim_pods(
    app: &App,
    owner: &Value,
    api_version: &str,
    kind: &str,
    adopt: impl Fn(&Value) -> bool,
) -> ApiResult<Vec<Value>> {
    let ns = ns_of(owner);
    let uid = uid_of(owner).to_string();
    let (pods, _) = app.store.list_shared("/pods", Some(ns));
    // Parsed once per owner. Without a usable selector (an object stored before selectors
    // were validated) ownership alone counts: releasing every pod would recreate them all.
    let selector = owner
        .pointer("/spec/selector")
        .and_then(|s| hoist_apimachinery::selector::LabelSelector::from_label_selector_json(s).ok())
        .filter(|s| !s.is_empty());
    let mut mine = Vec::new();
    for p in pods {
        let owned = owned_by(std::slice::from_ref(&p), &uid).len() == 1;
        if !owned && controller_uid(&p).is_some() {
            continue; // another controller's pod
        }
        let Some(selector) = &selector else {
            if owned {
                mine.push((*p).clone());
            }
            continue;
        };
        let selected = selector.matches_object(&p);
        if owned && selected {
            mine.push((*p).clone());
        } else if owned && !objects::is_deleting(&p) {
            set_owner_refs(app, &p, |refs| refs.retain(|r| r["uid"] != uid.as_str()))?;
            let msg = format!(
                "Pod {} no longer matches the selector and was released",
                objects::name_of(&p)
            );
            events::record(
                app,
                owner,
                None,
                "Normal",
                "ReleasedPod",
                &msg,
                kind_component(kind),
            );
        } else if selected && !owned && is_active(&p) && adopt(&p) {
            let r = owner_ref(owner, api_version, kind);
            if let Some(new) = set_owner_refs(app, &p, |refs| refs.push(r.clone()))? {
                mine.push(new);
            }
        }
    }
    Ok(mine)
}

/// Rewrites a pod's ownerReferences with `f`; returns the stored pod.
fn set_owner_refs(app: &App, pod: &Value, f: impl Fn(&mut Vec<Value>)) -> ApiResult<Option<Value>> {
    let uid = uid_of(pod).to_string();
    let w = app
        .store
        .write("/pods", ns_of(pod), objects::name_of(pod), |cur| {
            let Some(cur) = cur.filter(|c| uid_of(c) == uid) else {
                return Ok(Write::Unchanged(Value::Null));
            };
            let mut new = cur.clone();
            let mut refs = new
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            f(&mut refs);
            new["metadata"]["ownerReferences"] = json!(refs);
            Ok(Write::Put(new))
        })?;
    after(app, "/pods", &w);
    let v = w.into_value();
    Ok((!v.is_null()).then_some(v))
}

/// The component name Kubernetes reports events of a controller kind under.
fn kind_component(kind: &str) -> &'static str {
    match kind {
        "StatefulSet" => "statefulset-controller",
        "DaemonSet" => "daemonset-controller",
        "CronJob" => "cronjob-controller",
        "Job" => "job-controller",
        "Deployment" => "deployment-controller",
        _ => "replicaset-controller",
    }
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let Some(sel) = selector.as_object() else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Ready for at least `min_ready_secs` (a workload's `minReadySeconds`) at `now`.
fn is_available(pod: &Value, min_ready_secs: i64, now: i64) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_secs <= 0 {
        return true;
    }
    let since = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(crate::clock::parse_rfc3339);
    since.is_some_and(|t| t + min_ready_secs <= now)
}

fn is_active(pod: &Value) -> bool {
    !objects::is_deleting(pod)
        && !matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
}

fn int(o: &Value, ptr: &str, default: i64) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(default)
}

/// A short random suffix for generated names (lowercase letters and digits).
fn suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = vec![0u8; len];
    let _ = getrandom::fill(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Writes `f(current)` to `status` of an object when it differs.
fn update_status(app: &App, key: &str, o: &Value, status: Value) -> ApiResult<()> {
    if o.get("status") == Some(&status) {
        return Ok(());
    }
    let uid = uid_of(o).to_string();
    let w = app.store.write(key, ns_of(o), objects::name_of(o), |cur| {
        let Some(cur) = cur.filter(|c| uid_of(c) == uid) else {
            return Ok(Write::Unchanged(Value::Null));
        };
        let mut new = cur.clone();
        new["status"] = status;
        Ok(Write::Put(new))
    })?;
    after(app, key, &w);
    Ok(())
}

fn after(app: &App, key: &str, w: &Written) {
    if let Some(k) = app
        .registry
        .all()
        .into_iter()
        .find(|k| k.storage_key() == key)
    {
        app.after_write(&k, w);
    }
}

fn create(app: &App, group: &str, plural: &str, ns: &str, obj: Value) -> ApiResult<Value> {
    let kind = app
        .registry
        .all()
        .into_iter()
        .find(|k| k.group == group && k.plural == plural)
        .ok_or_else(|| crate::status::ApiError::internal(format!("kind {plural} missing")))?;
    let obj = objects::prepare_create(&kind, Some(ns), obj)?;
    let name = objects::name_of(&obj).to_string();
    let w = app
        .store
        .write(&kind.storage_key(), ns, &name, |cur| match cur {
            Some(_) => Err(crate::status::ApiError::conflict(
                &kind.group,
                &kind.plural,
                &name,
            )),
            None => Ok(Write::Put(obj)),
        })?;
    app.after_write(&kind, &w);
    Ok(w.into_value())
}

fn delete(app: &App, plural: &str, group: &str, ns: &str, name: &str) -> ApiResult<()> {
    let Some(kind) = app
        .registry
        .all()
        .into_iter()
        .find(|k| k.group == group && k.plural == plural)
    else {
        return Ok(());
    };
    match app.delete(&kind, ns, name, Propagation::Background, None) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------- ReplicaSet

fn replica_set(app: &App, rs: &Value) -> ApiResult<()> {
    let ns = ns_of(rs);
    let claimed = claim_pods(app, rs, "apps/v1", "ReplicaSet", |_| true)?;
    let mine: Vec<&Value> = claimed.iter().filter(|p| is_active(p)).collect();
    let want = int(rs, "/spec/replicas", 1).max(0) as usize;
    if mine.len() < want {
        for _ in mine.len()..want {
            create_pod(app, rs)?;
        }
    } else if mine.len() > want {
        // Not-ready pods go first, then the youngest.
        let mut victims = mine.clone();
        victims.sort_by_key(|p| {
            (
                is_ready(p),
                std::cmp::Reverse(
                    objects::meta_str(p, "creationTimestamp")
                        .unwrap_or("")
                        .to_string(),
                ),
            )
        });
        for p in victims.iter().take(mine.len() - want) {
            delete(app, "pods", "", ns, objects::name_of(p))?;
        }
    }
    let (pods, _) = app.store.list_shared("/pods", Some(ns));
    let mine: Vec<&Value> = owned_by(&pods, uid_of(rs))
        .into_iter()
        .filter(|p| is_active(p) && selects(rs, p))
        .collect();
    let ready = mine.iter().filter(|p| is_ready(p)).count();
    let status = json!({
        "replicas": mine.len(),
        "fullyLabeledReplicas": mine.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": int(rs, "/metadata/generation", 1),
    });
    update_status(app, "apps/replicasets", rs, status)
}

fn create_pod(app: &App, rs: &Value) -> ApiResult<()> {
    create_pod_from_template(app, rs, "apps/v1", "ReplicaSet", &[])
}

/// Creates one pod from `owner`'s `spec.template`, named `<owner>-<random>`, owned by it
/// (controller reference), with `extra_labels` added to the template's labels.
fn create_pod_from_template(
    app: &App,
    owner: &Value,
    api_version: &str,
    kind: &str,
    extra_labels: &[(&str, String)],
) -> ApiResult<()> {
    let template = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    let mut meta = template
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !extra_labels.is_empty() {
        let mut labels = meta
            .get("labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in extra_labels {
            labels.insert((*k).into(), json!(v));
        }
        meta.insert("labels".into(), Value::Object(labels));
    }
    let name = objects::name_of(owner);
    meta.insert("name".into(), json!(format!("{name}-{}", suffix(5))));
    meta.insert("namespace".into(), json!(ns_of(owner)));
    meta.insert(
        "ownerReferences".into(),
        json!([owner_ref(owner, api_version, kind)]),
    );
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    });
    create(app, "", "pods", ns_of(owner), pod).map(|_| ())
}

// ---------------------------------------------------------------- Deployment

/// A pod template without what does not change its meaning: nulls, empty objects and
/// arrays (typed clients such as `kubectl rollout undo` send `resources: {}`,
/// `creationTimestamp: null`), the pod-template-hash label; object keys sorted.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                if k == "pod-template-hash" {
                    continue;
                }
                let n = normalized(&m[k]);
                let empty = match &n {
                    Value::Null => true,
                    Value::Object(o) => o.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if !empty {
                    out.insert(k.clone(), n);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// FNV-1a of the normalized pod template, printed like Kubernetes' pod-template-hash.
fn template_hash(template: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in normalized(template).to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// An int-or-percent of `total` (percent rounded up for surge, down for unavailable).
fn int_or_percent(v: Option<&Value>, total: i64, default_pct: i64, round_up: bool) -> i64 {
    let pct = |p: i64| {
        if round_up {
            (total * p + 99) / 100
        } else {
            total * p / 100
        }
    };
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse().ok())
            .map(pct)
            .unwrap_or_else(|| s.parse().unwrap_or(0)),
        _ => pct(default_pct),
    }
}

fn revision(o: &Value) -> i64 {
    o.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn set_replicas(app: &App, rs: &Value, n: i64) -> ApiResult<()> {
    if int(rs, "/spec/replicas", 1) == n {
        return Ok(());
    }
    let uid = uid_of(rs).to_string();
    let w = app
        .store
        .write("apps/replicasets", ns_of(rs), objects::name_of(rs), |cur| {
            let Some(cur) = cur.filter(|c| uid_of(c) == uid) else {
                return Ok(Write::Unchanged(Value::Null));
            };
            let mut new = cur.clone();
            new["spec"]["replicas"] = json!(n);
            let g = int(cur, "/metadata/generation", 1);
            new["metadata"]["generation"] = json!(g + 1);
            Ok(Write::Put(new))
        })?;
    after(app, "apps/replicasets", &w);
    Ok(())
}

fn deployment(app: &App, d: &Value) -> ApiResult<()> {
    let ns = ns_of(d);
    let name = objects::name_of(d);
    let want = int(d, "/spec/replicas", 1).max(0);
    let mut template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template);
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let (sets, _) = app.store.list_shared("apps/replicasets", Some(ns));
    let owned: Vec<&Value> = owned_by(&sets, uid_of(d))
        .into_iter()
        .filter(|rs| !objects::is_deleting(rs))
        .collect();
    let max_rev = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let existing = owned
        .iter()
        .find(|rs| {
            rs.pointer("/spec/template/metadata/labels/pod-template-hash") == Some(&json!(hash))
                || rs.pointer("/spec/template").map(normalized) == Some(normalized(&template))
        })
        .map(|v| (*v).clone());
    let new_rs = match existing {
        Some(rs) => {
            // A rollback to an older template makes it the newest revision again.
            if revision(&rs) < max_rev {
                bump_revision(app, &rs, max_rev + 1)?;
            }
            rs
        }
        None => {
            let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(hash);
            let first = owned.is_empty();
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": format!("{name}-{hash}"),
                    "namespace": ns,
                    "labels": labels,
                    "annotations": {
                        "deployment.kubernetes.io/revision": (max_rev + 1).to_string(),
                        "deployment.kubernetes.io/desired-replicas": want.to_string(),
                    },
                    "ownerReferences": [owner_ref(d, "apps/v1", "Deployment")],
                },
                "spec": {
                    "replicas": if first { want } else { 0 },
                    "selector": selector,
                    "template": template,
                },
            });
            create(app, "apps", "replicasets", ns, rs)?
        }
    };
    let new_uid = uid_of(&new_rs).to_string();
    let olds: Vec<&Value> = owned
        .iter()
        .copied()
        .filter(|rs| uid_of(rs) != new_uid)
        .collect();
    let strategy = d
        .pointer("/spec/strategy/type")
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    let old_total: i64 = olds.iter().map(|rs| int(rs, "/spec/replicas", 0)).sum();
    let new_count = int(&new_rs, "/spec/replicas", 0);
    if strategy == "Recreate" {
        for rs in &olds {
            set_replicas(app, rs, 0)?;
        }
        let old_pods: i64 = olds.iter().map(|rs| int(rs, "/status/replicas", 0)).sum();
        if old_pods == 0 {
            set_replicas(app, &new_rs, want)?;
        }
    } else {
        let ru = d.pointer("/spec/strategy/rollingUpdate");
        let surge = int_or_percent(ru.and_then(|r| r.get("maxSurge")), want, 25, true);
        let mut unavailable =
            int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), want, 25, false);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        // Scale up the new set within the surge budget.
        let allowed = (want + surge - old_total - new_count).max(0);
        let target_new = if new_count >= want {
            want
        } else {
            (new_count + allowed).min(want)
        };
        set_replicas(app, &new_rs, target_new)?;
        // Scale down old sets as far as availability allows.
        let available: i64 = owned
            .iter()
            .map(|rs| int(rs, "/status/availableReplicas", 0))
            .sum();
        let min_available = want - unavailable;
        let mut budget = (available - min_available).max(0);
        for rs in &olds {
            let cur = int(rs, "/spec/replicas", 0);
            if cur == 0 {
                continue;
            }
            // Old pods that are not available can always go.
            let unready = cur - int(rs, "/status/availableReplicas", 0);
            let cut = (unready.max(0) + budget).min(cur);
            budget -= (cut - unready.max(0)).max(0);
            set_replicas(app, rs, cur - cut)?;
        }
    }
    // Revision history: keep at most revisionHistoryLimit (default 10) empty old sets.
    let limit = int(d, "/spec/revisionHistoryLimit", 10).max(0) as usize;
    let mut empty_olds: Vec<&&Value> = olds
        .iter()
        .filter(|rs| int(rs, "/spec/replicas", 0) == 0 && int(rs, "/status/replicas", 0) == 0)
        .collect();
    if empty_olds.len() > limit {
        empty_olds.sort_by_key(|rs| revision(rs));
        for rs in &empty_olds[..empty_olds.len() - limit] {
            delete(app, "replicasets", "apps", ns, objects::name_of(rs))?;
        }
    }
    deployment_status(app, d, &new_uid, want)
}

fn bump_revision(app: &App, rs: &Value, rev: i64) -> ApiResult<()> {
    let uid = uid_of(rs).to_string();
    let w = app
        .store
        .write("apps/replicasets", ns_of(rs), objects::name_of(rs), |cur| {
            let Some(cur) = cur.filter(|c| uid_of(c) == uid) else {
                return Ok(Write::Unchanged(Value::Null));
            };
            let mut new = cur.clone();
            new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                json!(rev.to_string());
            Ok(Write::Put(new))
        })?;
    after(app, "apps/replicasets", &w);
    Ok(())
}

fn deployment_status(app: &App, d: &Value, new_uid: &str, want: i64) -> ApiResult<()> {
    let ns = ns_of(d);
    let (sets, _) = app.store.list_shared("apps/replicasets", Some(ns));
    let owned = owned_by(&sets, uid_of(d));
    let sum = |ptr: &str| -> i64 { owned.iter().map(|rs| int(rs, ptr, 0)).sum() };
    let replicas = sum("/status/replicas");
    let ready = sum("/status/readyReplicas");
    let available = sum("/status/availableReplicas");
    let new_rs = owned.iter().find(|rs| uid_of(rs) == new_uid);
    let updated = new_rs.map_or(0, |rs| int(rs, "/status/replicas", 0));
    let new_available = new_rs.map_or(0, |rs| int(rs, "/status/availableReplicas", 0));
    let ru = d.pointer("/spec/strategy/rollingUpdate");
    let unavailable_ok = int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), want, 25, false);
    let now = now_rfc3339();
    let old_conds: BTreeMap<String, Value> = d
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["type"].as_str()?.to_string(), c.clone())))
        .collect();
    let cond = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let mut c = json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now,
        });
        if let Some(old) = old_conds.get(type_)
            && old["status"] == status
        {
            c["lastTransitionTime"] = old["lastTransitionTime"].clone();
            if old["reason"] == reason {
                c["lastUpdateTime"] = old["lastUpdateTime"].clone();
            }
        }
        c
    };
    let name = objects::name_of(d);
    let rs_name = new_rs.map_or(String::new(), |rs| objects::name_of(rs).to_string());
    let is_available = available >= want - unavailable_ok;
    let complete = updated == want && replicas == want && new_available == want;
    let conditions = vec![
        cond(
            "Available",
            is_available,
            if is_available {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
            if is_available {
                "Deployment has minimum availability.".into()
            } else {
                "Deployment does not have minimum availability.".into()
            },
        ),
        cond(
            "Progressing",
            true,
            if complete {
                "NewReplicaSetAvailable"
            } else {
                "ReplicaSetUpdated"
            },
            if complete {
                format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
            } else {
                format!("ReplicaSet \"{rs_name}\" is progressing.")
            },
        ),
    ];
    let mut status = Map::new();
    status.insert(
        "observedGeneration".into(),
        json!(int(d, "/metadata/generation", 1)),
    );
    status.insert("replicas".into(), json!(replicas));
    status.insert("updatedReplicas".into(), json!(updated));
    status.insert("readyReplicas".into(), json!(ready));
    status.insert("availableReplicas".into(), json!(available));
    if want - available > 0 {
        status.insert("unavailableReplicas".into(), json!(want - available));
    }
    status.insert("conditions".into(), json!(conditions));
    let status = Value::Object(status);
    if d.get("status") == Some(&status) {
        return Ok(());
    }
    // The deployment carries its newest revision as an annotation (kubectl rollout history).
    let rev = new_rs.map_or(0, |rs| revision(rs));
    let uid = uid_of(d).to_string();
    let w = app.store.write("apps/deployments", ns, name, |cur| {
        let Some(cur) = cur.filter(|c| uid_of(c) == uid) else {
            return Ok(Write::Unchanged(Value::Null));
        };
        let mut new = cur.clone();
        new["status"] = status;
        if rev > 0 {
            new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                json!(rev.to_string());
        }
        Ok(Write::Put(new))
    })?;
    after(app, "apps/deployments", &w);
    Ok(())
}

// ---------------------------------------------------------------- Job

fn condition_true(o: &Value, type_: &str) -> bool {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == type_ && c["status"] == "True")
        })
}

/// What the API server defaults on a Job without a selector: a selector on the job's
/// uid and the matching template labels (kubectl finds the job's pods by it).
fn default_job_selector(app: &App, j: &Value) -> ApiResult<()> {
    let uid = uid_of(j).to_string();
    let name = objects::name_of(j).to_string();
    let w = app.store.write("batch/jobs", ns_of(j), &name, |cur| {
        let Some(cur) = cur.filter(|c| uid_of(c) == uid && c.pointer("/spec/selector").is_none())
        else {
            return Ok(Write::Unchanged(Value::Null));
        };
        let mut new = cur.clone();
        new["spec"]["selector"] =
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let labels = &mut new["spec"]["template"]["metadata"]["labels"];
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("job-name", &name),
        ] {
            labels[k] = json!(v);
        }
        Ok(Write::Put(new))
    })?;
    after(app, "batch/jobs", &w);
    Ok(())
}

fn job(app: &App, j: &Value) -> ApiResult<()> {
    if j.pointer("/spec/selector").is_none() {
        return default_job_selector(app, j);
    }
    let ns = ns_of(j);
    let claimed = claim_pods(app, j, "batch/v1", "Job", |_| false)?;
    let mine: Vec<&Value> = claimed.iter().collect();
    let phase = |p: &Value| {
        p.pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let succeeded = mine.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
    let failed = mine.iter().filter(|p| phase(p) == "Failed").count() as i64;
    let active: Vec<&&Value> = mine.iter().filter(|p| is_active(p)).collect();
    let completions = int(j, "/spec/completions", 1).max(0);
    let parallelism = int(j, "/spec/parallelism", 1).max(0);
    let backoff_limit = int(j, "/spec/backoffLimit", 6).max(0);
    let finished = condition_true(j, "Complete") || condition_true(j, "Failed");
    let now = now_rfc3339();
    let mut status = j.get("status").cloned().unwrap_or(json!({}));
    if !status.is_object() {
        status = json!({});
    }
    if status.get("startTime").is_none() {
        status["startTime"] = json!(now);
    }
    let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    let mut add_condition = |type_: &str, reason: &str, message: &str| {
        conditions.push(json!({
            "type": type_, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": now, "lastTransitionTime": now,
        }));
    };
    let mut active_count = active.len() as i64;
    if !finished {
        if failed > backoff_limit {
            for p in &active {
                delete(app, "pods", "", ns, objects::name_of(p))?;
            }
            active_count = 0;
            add_condition(
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            );
            add_condition(
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            );
        } else if succeeded >= completions {
            add_condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            );
            add_condition(
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            );
            status["completionTime"] = json!(now);
        } else {
            let want = parallelism.min(completions - succeeded);
            let missing = (want - active_count).max(0);
            for _ in 0..missing {
                create_job_pod(app, j)?;
            }
            active_count += missing;
        }
    }
    status["conditions"] = json!(conditions);
    status["active"] = json!(active_count);
    status["succeeded"] = json!(succeeded);
    status["failed"] = json!(failed);
    status["ready"] = json!(active.iter().filter(|p| is_ready(p)).count());
    if conditions.is_empty() {
        status.as_object_mut().map(|o| o.remove("conditions"));
    }
    if active_count == 0 {
        status.as_object_mut().map(|o| o.remove("active"));
    }
    update_status(app, "batch/jobs", j, status)
}

fn create_job_pod(app: &App, j: &Value) -> ApiResult<()> {
    let name = objects::name_of(j).to_string();
    let uid = uid_of(j).to_string();
    let labels = [
        ("batch.kubernetes.io/job-name", name.clone()),
        ("job-name", name),
        ("batch.kubernetes.io/controller-uid", uid.clone()),
        ("controller-uid", uid),
    ];
    create_pod_from_template(app, j, "batch/v1", "Job", &labels)
}

// ---------------------------------------------------------------- Service

fn endpoints(app: &App, svc: &Value) -> ApiResult<()> {
    let Some(selector) = svc.pointer("/spec/selector").filter(|s| s.is_object()) else {
        return Ok(());
    };
    let ns = ns_of(svc);
    let name = objects::name_of(svc);
    let (pods, _) = app.store.list_shared("/pods", Some(ns));
    let selected: Vec<&Value> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| {
            labels_match(selector, &p["metadata"]["labels"])
                && p.pointer("/status/podIP").is_some()
                && is_active(p)
        })
        .collect();
    let address = |p: &Value| {
        json!({
            "ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"],
            "targetRef": {"kind": "Pod", "namespace": ns, "name": objects::name_of(p), "uid": uid_of(p)},
        })
    };
    let ready: Vec<Value> = selected
        .iter()
        .filter(|p| is_ready(p))
        .map(|p| address(p))
        .collect();
    let not_ready: Vec<Value> = selected
        .iter()
        .filter(|p| !is_ready(p))
        .map(|p| address(p))
        .collect();
    let ports: Vec<Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|sp| {
            let port = target_port(sp, selected.first().copied());
            let mut p = json!({"port": port, "protocol": sp["protocol"].as_str().unwrap_or("TCP")});
            if let Some(n) = sp.get("name") {
                p["name"] = n.clone();
            }
            p
        })
        .collect();
    let mut subset = Map::new();
    if !ready.is_empty() {
        subset.insert("addresses".into(), json!(ready));
    }
    if !not_ready.is_empty() {
        subset.insert("notReadyAddresses".into(), json!(not_ready));
    }
    subset.insert("ports".into(), json!(ports));
    let subsets = if ready.is_empty() && not_ready.is_empty() {
        json!([])
    } else {
        json!([subset])
    };
    upsert(
        app,
        "",
        "endpoints",
        ns,
        name,
        json!({"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": name, "namespace": ns, "labels": svc["metadata"]["labels"]}}),
        |o| o["subsets"] = subsets.clone(),
    )?;
    let slice_eps: Vec<Value> = selected
        .iter()
        .map(|p| {
            json!({
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": is_ready(p), "serving": is_ready(p), "terminating": false},
                "nodeName": p["spec"]["nodeName"],
                "targetRef": {"kind": "Pod", "namespace": ns, "name": objects::name_of(p), "uid": uid_of(p)},
            })
        })
        .collect();
    let slice_name = format!("{name}-hoist");
    upsert(
        app,
        "discovery.k8s.io",
        "endpointslices",
        ns,
        &slice_name,
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": slice_name, "namespace": ns,
                            "labels": {"kubernetes.io/service-name": name,
                                       "endpointslice.kubernetes.io/managed-by": "hoist"},
                            "ownerReferences": [owner_ref(svc, "v1", "Service")]},
               "addressType": "IPv4"}),
        |o| {
            o["endpoints"] = json!(slice_eps);
            o["ports"] = json!(ports);
        },
    )
}

/// The container port a service port forwards to (a named targetPort is looked up in
/// the pod's container ports).
fn target_port(sp: &Value, pod: Option<&Value>) -> Value {
    match sp.get("targetPort") {
        Some(Value::Number(n)) => json!(n),
        Some(Value::String(s)) => pod
            .and_then(|p| p.pointer("/spec/containers").and_then(Value::as_array))
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .find(|p| p["name"] == s.as_str())
            .map(|p| p["containerPort"].clone())
            .unwrap_or_else(|| sp["port"].clone()),
        _ => sp["port"].clone(),
    }
}

/// Creates `base` (with `fill`) or applies `fill` to the existing object.
fn upsert(
    app: &App,
    group: &str,
    plural: &str,
    ns: &str,
    name: &str,
    base: Value,
    fill: impl Fn(&mut Value),
) -> ApiResult<()> {
    let Some(kind) = app
        .registry
        .all()
        .into_iter()
        .find(|k| k.group == group && k.plural == plural)
    else {
        return Ok(());
    };
    let key = kind.storage_key();
    match app.store.get(&key, ns, name)? {
        Some(cur) => {
            let w = app.store.write(&key, ns, name, |c| {
                let Some(c) = c else {
                    return Ok(Write::Unchanged(Value::Null));
                };
                let mut new = c.clone();
                fill(&mut new);
                Ok(Write::Put(new))
            })?;
            let _ = cur;
            app.after_write(&kind, &w);
        }
        None => {
            let mut obj = base;
            fill(&mut obj);
            match create(app, group, plural, ns, obj) {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_ready_since(t: i64) -> Value {
        json!({"metadata": {"labels": {"app": "web", "tier": "canary"}}, "status": {"conditions": [
            {"type": "Ready", "status": "True",
             "lastTransitionTime": crate::clock::format_rfc3339(t)}]}})
    }

    #[test]
    fn available_means_ready_for_min_ready_seconds() {
        let p = pod_ready_since(1_000);
        assert!(is_available(&p, 0, 1_000));
        assert!(!is_available(&p, 10, 1_009));
        assert!(is_available(&p, 10, 1_010));
        assert!(!is_available(&json!({}), 0, 1_000));
    }

    #[test]
    fn selectors_use_match_expressions_and_fall_back_to_ownership() {
        let owner = |sel: Value| json!({"spec": {"selector": sel}});
        let p = pod_ready_since(0);
        assert!(selects(
            &owner(json!({"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web"]},
            {"key": "tier", "operator": "Exists"}]})),
            &p
        ));
        assert!(!selects(
            &owner(json!({"matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["canary"]}]})),
            &p
        ));
        // No usable selector: ownership alone decides (the pod is not released).
        assert!(selects(&json!({"spec": {}}), &p));
        assert!(selects(&owner(json!({})), &p));
    }
}
