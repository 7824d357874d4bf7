//! DaemonSet → one pod per eligible node (the dev cluster has one), as Kubernetes'
//! DaemonSet controller: pods are bound to their node directly, carry the revision's
//! `controller-revision-hash`, failed ones are replaced, and `RollingUpdate` replaces
//! old pods within `maxUnavailable` (or, with `maxSurge`, starts the new pod first and
//! removes the old one once the new one is ready). `OnDelete` waits for someone else to
//! delete the old pod. Status as `kubectl rollout status ds/x` reads it.

use serde_json::{Value, json};

use super::statefulset::{REVISION_LABEL, prune_revisions, revisions};
use super::{
    claim_pods, create, delete, int, int_or_percent, is_active, is_ready, ns_of, owner_ref, suffix,
    update_status,
};
use crate::app::App;
use crate::kubelet::events;
use crate::objects;
use crate::status::ApiResult;

const COMPONENT: &str = "daemonset-controller";

pub fn pass(app: &App) -> ApiResult<()> {
    let (sets, _) = app.store.list_shared("apps/daemonsets", None);
    if sets.is_empty() {
        return Ok(());
    }
    let (nodes, _) = app.store.list_shared("/nodes", None);
    for d in &sets {
        if !objects::is_deleting(d) {
            daemon_set(app, d, &nodes)?;
        }
    }
    Ok(())
}

/// Whether the pod template's `nodeSelector` admits `node` (affinity is not evaluated).
fn node_eligible(template: &Value, node: &Value) -> bool {
    if objects::is_deleting(node) {
        return false;
    }
    let labels = node.pointer("/metadata/labels");
    template
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn revision_hash(rev: &Value) -> String {
    rev.pointer("/metadata/labels/controller.kubernetes.io~1hash")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn pod_hash(p: &Value) -> &str {
    p.pointer("/metadata/labels/controller-revision-hash")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn node_of(p: &Value) -> &str {
    p.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn event(app: &App, d: &Value, type_: &str, reason: &str, message: &str) {
    events::record(app, d, None, type_, reason, message, COMPONENT);
}

fn daemon_set(app: &App, d: &Value, nodes: &[std::sync::Arc<Value>]) -> ApiResult<()> {
    let (revs, update_rev) = revisions(app, d, "DaemonSet")?;
    let hash = revision_hash(&update_rev);
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let pods = claim_pods(app, d, "apps/v1", "DaemonSet", |_| true)?;
    let eligible: Vec<&str> = nodes
        .iter()
        .filter(|n| node_eligible(&template, n))
        .map(|n| objects::name_of(n))
        .collect();
    let desired = eligible.len() as i64;
    let rolling = d
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let ru = d.pointer("/spec/updateStrategy/rollingUpdate");
    let surge = int_or_percent(ru.and_then(|r| r.get("maxSurge")), desired, 0, true);
    let mut max_unavailable =
        int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), desired, 0, false);
    if surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    // Unavailable now: eligible nodes without a ready pod.
    let mut unavailable = eligible
        .iter()
        .filter(|n| {
            !pods
                .iter()
                .any(|p| node_of(p) == **n && is_active(p) && is_ready(p))
        })
        .count() as i64;
    for p in &pods {
        let node = node_of(p);
        if objects::is_deleting(p) {
            continue;
        }
        if !eligible.contains(&node) {
            delete_pod(app, d, p, "Normal", "SuccessfulDelete")?;
        } else if matches!(
            p.pointer("/status/phase").and_then(Value::as_str),
            Some("Failed" | "Succeeded")
        ) {
            delete_pod(app, d, p, "Warning", "FailedDaemonPod")?;
        }
    }
    for node in &eligible {
        let mut here: Vec<&Value> = pods
            .iter()
            .filter(|p| node_of(p) == *node && is_active(p))
            .collect();
        here.sort_by_key(|p| {
            (
                objects::meta_str(p, "creationTimestamp").unwrap_or(""),
                objects::name_of(p),
            )
        });
        let new: Vec<&&Value> = here.iter().filter(|p| pod_hash(p) == hash).collect();
        let old: Vec<&&Value> = here.iter().filter(|p| pod_hash(p) != hash).collect();
        let terminating = pods
            .iter()
            .any(|p| node_of(p) == *node && objects::is_deleting(p));
        if here.is_empty() {
            // A terminating pod holds the node's slot until it is gone (no overlap).
            if !terminating {
                create_pod(app, d, node, &hash)?;
            }
            continue;
        }
        // More than one pod of a revision on a node: keep the oldest.
        for extra in new.iter().skip(1) {
            delete_pod(app, d, extra, "Normal", "SuccessfulDelete")?;
        }
        if !rolling || old.is_empty() {
            continue;
        }
        if surge > 0 {
            match new.first() {
                None => create_pod(app, d, node, &hash)?,
                Some(n) if is_ready(n) => {
                    for o in &old {
                        delete_pod(app, d, o, "Normal", "SuccessfulDelete")?;
                    }
                }
                Some(_) => {}
            }
            continue;
        }
        // Replace an old pod when that stays within maxUnavailable (an unready old pod
        // costs nothing to replace).
        for o in &old {
            let costs = i64::from(is_ready(o));
            if unavailable + costs <= max_unavailable {
                delete_pod(app, d, o, "Normal", "SuccessfulDelete")?;
                unavailable += costs;
            }
        }
    }
    daemon_set_status(app, d, &eligible, &hash, &revs)
}

fn create_pod(app: &App, d: &Value, node: &str, hash: &str) -> ApiResult<()> {
    let ns = ns_of(d);
    let name = objects::name_of(d);
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut meta = template
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut labels = meta
        .get("labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), json!(hash));
    labels.insert(
        "pod-template-generation".into(),
        json!(int(d, "/metadata/generation", 1).to_string()),
    );
    meta.insert("labels".into(), Value::Object(labels));
    let pod_name = format!("{name}-{}", suffix(5));
    meta.insert("name".into(), json!(pod_name));
    meta.insert("namespace".into(), json!(ns));
    meta.insert(
        "ownerReferences".into(),
        json!([owner_ref(d, "apps/v1", "DaemonSet")]),
    );
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["nodeName"] = json!(node);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
    match create(app, "", "pods", ns, pod) {
        Ok(_) => {
            event(
                app,
                d,
                "Normal",
                "SuccessfulCreate",
                &format!("Created pod: {pod_name}"),
            );
            Ok(())
        }
        Err(e) => {
            event(
                app,
                d,
                "Warning",
                "FailedCreate",
                &format!("Error creating: {e}"),
            );
            Err(e)
        }
    }
}

fn delete_pod(app: &App, d: &Value, p: &Value, type_: &str, reason: &str) -> ApiResult<()> {
    let pod = objects::name_of(p);
    delete(app, "pods", "", ns_of(d), pod)?;
    let message = if reason == "FailedDaemonPod" {
        format!(
            "Found failed daemon pod {}/{pod} on node {}, will try to kill it",
            ns_of(d),
            node_of(p)
        )
    } else {
        format!("Deleted pod: {pod}")
    };
    event(app, d, type_, reason, &message);
    Ok(())
}

fn daemon_set_status(
    app: &App,
    d: &Value,
    eligible: &[&str],
    hash: &str,
    revs: &[Value],
) -> ApiResult<()> {
    let (pods, _) = app.store.list_shared("/pods", Some(ns_of(d)));
    let mine: Vec<&Value> = super::owned_by(&pods, super::uid_of(d))
        .into_iter()
        .filter(|p| super::selects(d, p))
        .collect();
    let live: Vec<&&Value> = mine.iter().filter(|p| is_active(p)).collect();
    let on =
        |node: &str, f: &dyn Fn(&Value) -> bool| live.iter().any(|p| node_of(p) == node && f(p));
    let scheduled = eligible.iter().filter(|n| on(n, &|_| true)).count();
    let misscheduled = live
        .iter()
        .filter(|p| !eligible.contains(&node_of(p)))
        .map(|p| node_of(p))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let ready = eligible.iter().filter(|n| on(n, &is_ready)).count();
    let min_ready = int(d, "/spec/minReadySeconds", 0);
    let now = crate::clock::unix_now();
    let available = eligible
        .iter()
        .filter(|n| on(n, &|p| super::is_available(p, min_ready, now)))
        .count();
    let updated = eligible
        .iter()
        .filter(|n| on(n, &|p| pod_hash(p) == hash))
        .count();
    let desired = eligible.len();
    let mut status = json!({
        "observedGeneration": int(d, "/metadata/generation", 1),
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": scheduled,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available,
        "updatedNumberScheduled": updated,
    });
    if desired > available {
        status["numberUnavailable"] = json!(desired - available);
    }
    let hashes: Vec<String> = revs
        .iter()
        .filter(|r| {
            mine.iter().any(|p| pod_hash(p) == revision_hash(r)) || revision_hash(r) == hash
        })
        .map(|r| objects::name_of(r).to_string())
        .collect();
    let in_use: Vec<&str> = hashes.iter().map(String::as_str).collect();
    prune_revisions(app, d, revs, &in_use)?;
    update_status(app, "apps/daemonsets", d, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_selectors_pick_nodes_by_label() {
        let node = json!({"metadata": {"name": "hoist", "labels": {"kubernetes.io/os": "linux"}}});
        assert!(node_eligible(&json!({}), &node));
        assert!(node_eligible(
            &json!({"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}),
            &node
        ));
        assert!(!node_eligible(
            &json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
            &node
        ));
    }
}
