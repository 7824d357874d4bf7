//! StatefulSet → Pods named `<set>-<ordinal>`, as Kubernetes' StatefulSet controller:
//!
//! - `OrderedReady` (default): ordinal `n` is created only once `0..n` are Running and
//!   Ready; scale-down removes the highest ordinal first, one at a time, each after the
//!   previous is gone. `Parallel`: all at once, no waiting.
//! - Revisions are ControllerRevisions named `<set>-<hash>` holding the pod template;
//!   pods carry `controller-revision-hash`. `RollingUpdate` replaces pods from the highest
//!   ordinal down to `partition`, one at a time, each once all pods are Ready; `OnDelete`
//!   gives a pod the new revision only when something else deleted it.
//! - Pods get `hostname: <pod>` and `subdomain: <serviceName>`; `volumeClaimTemplates`
//!   become PersistentVolumeClaims `<claim>-<set>-<ordinal>` (see [`super::volume_claims`])
//!   that outlive the pods, so a replaced pod gets its ordinal's data back;
//!   `persistentVolumeClaimRetentionPolicy` (whenDeleted / whenScaled: Delete) honoured.
//! - Status as `kubectl rollout status sts/x` reads it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    after, claim_pods, create, delete, int, is_active, is_ready, normalized, ns_of, owned_by,
    owner_ref, template_hash, uid_of, update_status,
};
use crate::app::App;
use crate::kubelet::events;
use crate::objects;
use crate::status::ApiResult;
use crate::storage::Write;

const COMPONENT: &str = "statefulset-controller";
pub(super) const REVISION_LABEL: &str = "controller-revision-hash";

pub fn pass(app: &App) -> ApiResult<()> {
    let (sets, _) = app.store.list_shared("apps/statefulsets", None);
    for s in &sets {
        if !objects::is_deleting(s) {
            stateful_set(app, s)?;
        }
    }
    Ok(())
}

/// The ordinal of a pod named `<set>-<n>`.
pub(super) fn ordinal(set_name: &str, pod_name: &str) -> Option<usize> {
    let n = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return None;
    }
    n.parse().ok()
}

/// A ControllerRevision's template (stored as a strategic-merge patch, as Kubernetes does,
/// so `kubectl rollout undo` can apply it).
fn revision_template(rev: &Value) -> Value {
    let mut t = rev
        .pointer("/data/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    t
}

fn revision_number(rev: &Value) -> i64 {
    rev.get("revision").and_then(Value::as_i64).unwrap_or(0)
}

/// Finds or creates the ControllerRevision for the owner's current template; a rollback
/// to an older template makes that revision the newest again. Returns (all revisions
/// owned, the update revision).
pub(super) fn revisions(app: &App, owner: &Value, kind: &str) -> ApiResult<(Vec<Value>, Value)> {
    let ns = ns_of(owner);
    let name = objects::name_of(owner);
    let template = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    let hash = template_hash(&template);
    let (all, _) = app.store.list_shared("apps/controllerrevisions", Some(ns));
    let mut owned: Vec<Value> = owned_by(&all, uid_of(owner))
        .into_iter()
        .filter(|r| !objects::is_deleting(r))
        .cloned()
        .collect();
    let max = owned.iter().map(revision_number).max().unwrap_or(0);
    let found = owned.iter().position(|r| {
        r.pointer("/metadata/labels/controller.kubernetes.io~1hash") == Some(&json!(hash))
            || normalized(&revision_template(r)) == normalized(&template)
    });
    let update = match found {
        Some(i) if revision_number(&owned[i]) < max => {
            let uid = uid_of(&owned[i]).to_string();
            let w = app.store.write(
                "apps/controllerrevisions",
                ns,
                objects::name_of(&owned[i]),
                |cur| {
                    let Some(cur) = cur.filter(|c| uid_of(c) == uid) else {
                        return Ok(Write::Unchanged(Value::Null));
                    };
                    let mut new = cur.clone();
                    new["revision"] = json!(max + 1);
                    Ok(Write::Put(new))
                },
            )?;
            after(app, "apps/controllerrevisions", &w);
            owned[i]["revision"] = json!(max + 1);
            owned[i].clone()
        }
        Some(i) => owned[i].clone(),
        None => {
            let mut labels = template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            labels["controller.kubernetes.io/hash"] = json!(hash);
            let mut patch = template.clone();
            patch["$patch"] = json!("replace");
            let rev = json!({
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {
                    "name": format!("{name}-{hash}"), "namespace": ns, "labels": labels,
                    "ownerReferences": [owner_ref(owner, "apps/v1", kind)],
                },
                "data": {"spec": {"template": patch}},
                "revision": max + 1,
            });
            let created = create(app, "apps", "controllerrevisions", ns, rev)?;
            owned.push(created.clone());
            created
        }
    };
    Ok((owned, update))
}

/// Keeps at most `revisionHistoryLimit` revisions that no pod uses (oldest go first).
pub(super) fn prune_revisions(
    app: &App,
    owner: &Value,
    revisions: &[Value],
    in_use: &[&str],
) -> ApiResult<()> {
    let limit = int(owner, "/spec/revisionHistoryLimit", 10).max(0) as usize;
    let mut unused: Vec<&Value> = revisions
        .iter()
        .filter(|r| !in_use.contains(&objects::name_of(r)))
        .collect();
    if unused.len() > limit {
        unused.sort_by_key(|r| revision_number(r));
        for r in &unused[..unused.len() - limit] {
            delete(
                app,
                "controllerrevisions",
                "apps",
                ns_of(owner),
                objects::name_of(r),
            )?;
        }
    }
    Ok(())
}

fn pod_revision(pod: &Value) -> &str {
    pod.pointer("/metadata/labels/controller-revision-hash")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn running_and_ready(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running") && is_ready(pod)
}

fn event(app: &App, s: &Value, type_: &str, reason: &str, message: &str) {
    events::record(app, s, None, type_, reason, message, COMPONENT);
}

fn stateful_set(app: &App, s: &Value) -> ApiResult<()> {
    let name = objects::name_of(s).to_string();
    let want = int(s, "/spec/replicas", 1).max(0) as usize;
    let (revs, update_rev) = revisions(app, s, "StatefulSet")?;
    let update_name = objects::name_of(&update_rev).to_string();
    let current_name = s
        .pointer("/status/currentRevision")
        .and_then(Value::as_str)
        .filter(|c| revs.iter().any(|r| objects::name_of(r) == *c))
        .unwrap_or(&update_name)
        .to_string();
    let current_rev = revs
        .iter()
        .find(|r| objects::name_of(r) == current_name)
        .unwrap_or(&update_rev)
        .clone();
    let strategy = s
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    let partition = if strategy == "RollingUpdate" {
        int(s, "/spec/updateStrategy/rollingUpdate/partition", 0).max(0) as usize
    } else {
        0
    };
    let ordered = s
        .pointer("/spec/podManagementPolicy")
        .and_then(Value::as_str)
        != Some("Parallel");
    let set_name = name.clone();
    let pods = claim_pods(app, s, "apps/v1", "StatefulSet", |p| {
        ordinal(&set_name, objects::name_of(p)).is_some()
    })?;
    let by_ordinal: BTreeMap<usize, &Value> = pods
        .iter()
        .filter_map(|p| Some((ordinal(&name, objects::name_of(p))?, p)))
        .collect();

    // One step of progress at a time in OrderedReady; Parallel does all it can.
    'sync: {
        for ord in 0..want {
            match by_ordinal.get(&ord) {
                None => {
                    let rev = if ord < partition {
                        &current_rev
                    } else {
                        &update_rev
                    };
                    create_member(app, s, ord, rev)?;
                    if ordered {
                        break 'sync;
                    }
                }
                Some(p) if objects::is_deleting(p) => {
                    if ordered {
                        break 'sync;
                    }
                }
                Some(p) if terminal(p) => {
                    // A failed (or completed) member is replaced under the same name.
                    delete_member(app, s, p, "Warning", "RecreatingFailedPod")?;
                    if ordered {
                        break 'sync;
                    }
                }
                Some(p) if ordered && !running_and_ready(p) => break 'sync,
                Some(_) => {}
            }
        }
        // Scale down: the highest ordinal first.
        let condemned: Vec<&&Value> = by_ordinal.range(want..).rev().map(|(_, p)| p).collect();
        for p in &condemned {
            if objects::is_deleting(p) {
                if ordered {
                    break 'sync;
                }
                continue;
            }
            delete_member(app, s, p, "Normal", "SuccessfulDelete")?;
            if ordered {
                break 'sync;
            }
        }
        if strategy != "RollingUpdate" {
            break 'sync;
        }
        // Rolling update: from the highest ordinal down to the partition, one at a time.
        for ord in (partition..want).rev() {
            let Some(p) = by_ordinal.get(&ord) else {
                break 'sync;
            };
            if pod_revision(p) != update_name && !objects::is_deleting(p) {
                delete_member(app, s, p, "Normal", "SuccessfulDelete")?;
                break 'sync;
            }
            if !running_and_ready(p) || objects::is_deleting(p) {
                break 'sync;
            }
        }
    }
    super::volume_claims::delete_scaled_claims(app, s, want)?;
    stateful_set_status(app, s, &current_name, &update_name, &revs)
}

fn member_name(set: &str, ord: usize) -> String {
    format!("{set}-{ord}")
}

fn create_member(app: &App, s: &Value, ord: usize, rev: &Value) -> ApiResult<()> {
    let ns = ns_of(s);
    let set = objects::name_of(s);
    let pod_name = member_name(set, ord);
    let template = revision_template(rev);
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
    labels.insert(REVISION_LABEL.into(), json!(objects::name_of(rev)));
    labels.insert("statefulset.kubernetes.io/pod-name".into(), json!(pod_name));
    labels.insert(
        "apps.kubernetes.io/pod-index".into(),
        json!(ord.to_string()),
    );
    meta.insert("labels".into(), Value::Object(labels));
    meta.insert("name".into(), json!(pod_name));
    meta.insert("namespace".into(), json!(ns));
    meta.insert(
        "ownerReferences".into(),
        json!([owner_ref(s, "apps/v1", "StatefulSet")]),
    );
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["hostname"] = json!(pod_name);
    if let Some(svc) = s.pointer("/spec/serviceName").and_then(Value::as_str)
        && !svc.is_empty()
    {
        spec["subdomain"] = json!(svc);
    }
    // Each claim template becomes this ordinal's claim, mounted under the template's name.
    for t in s
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let claim = t
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if claim.is_empty() {
            continue;
        }
        let claim_name = format!("{claim}-{set}-{ord}");
        super::volume_claims::ensure_claim(app, s, t, &claim_name)?;
        let mut volumes: Vec<Value> = spec["volumes"].as_array().cloned().unwrap_or_default();
        volumes.retain(|v| v["name"] != claim);
        volumes.push(json!({"name": claim, "persistentVolumeClaim": {"claimName": claim_name}}));
        spec["volumes"] = json!(volumes);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
    match create(app, "", "pods", ns, pod) {
        Ok(_) => {
            event(
                app,
                s,
                "Normal",
                "SuccessfulCreate",
                &format!("create Pod {pod_name} in StatefulSet {set} successful"),
            );
            Ok(())
        }
        // The previous pod of that name is still being removed: next pass.
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => {
            event(
                app,
                s,
                "Warning",
                "FailedCreate",
                &format!("create Pod {pod_name} in StatefulSet {set} failed error: {e}"),
            );
            Err(e)
        }
    }
}

fn delete_member(app: &App, s: &Value, p: &Value, type_: &str, reason: &str) -> ApiResult<()> {
    let set = objects::name_of(s);
    let pod = objects::name_of(p);
    delete(app, "pods", "", ns_of(s), pod)?;
    let message = if reason == "RecreatingFailedPod" {
        format!(
            "StatefulSet {}/{set} is recreating failed Pod {pod}",
            ns_of(s)
        )
    } else {
        format!("delete Pod {pod} in StatefulSet {set} successful")
    };
    event(app, s, type_, reason, &message);
    Ok(())
}

fn stateful_set_status(
    app: &App,
    s: &Value,
    current: &str,
    update: &str,
    revs: &[Value],
) -> ApiResult<()> {
    let ns = ns_of(s);
    let name = objects::name_of(s);
    let (pods, _) = app.store.list_shared("/pods", Some(ns));
    let mine: Vec<&Value> = owned_by(&pods, uid_of(s))
        .into_iter()
        .filter(|p| super::selects(s, p) && ordinal(name, objects::name_of(p)).is_some())
        .collect();
    let live: Vec<&&Value> = mine.iter().filter(|p| is_active(p)).collect();
    let count = |rev: &str| live.iter().filter(|p| pod_revision(p) == rev).count();
    let want = int(s, "/spec/replicas", 1).max(0) as usize;
    let replicas = live.len();
    let ready = live.iter().filter(|p| running_and_ready(p)).count();
    let min_ready = int(s, "/spec/minReadySeconds", 0);
    let now = crate::clock::unix_now();
    let available = live
        .iter()
        .filter(|p| super::is_available(p, min_ready, now))
        .count();
    let updated = count(update);
    let (mut current, mut current_count) = (current.to_string(), count(current));
    // The update is complete once every wanted pod runs the update revision and is ready.
    if updated == want && ready == want && replicas == want {
        current = update.to_string();
        current_count = updated;
    }
    let in_use: Vec<&str> = mine
        .iter()
        .map(|p| pod_revision(p))
        .chain([current.as_str(), update])
        .collect();
    prune_revisions(app, s, revs, &in_use)?;
    let status = json!({
        "observedGeneration": int(s, "/metadata/generation", 1),
        "replicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current_count,
        "updatedReplicas": updated,
        "currentRevision": current,
        "updateRevision": update,
        "collisionCount": 0,
    });
    update_status(app, "apps/statefulsets", s, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_are_parsed_only_from_member_names() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "web-"), None);
        assert_eq!(ordinal("web", "webby-1"), None);
        assert_eq!(ordinal("web", "web-db-1"), None);
    }

    #[test]
    fn revision_templates_drop_the_replace_directive() {
        let rev = json!({"data": {"spec": {"template": {"$patch": "replace", "spec": {"a": 1}}}}});
        assert_eq!(revision_template(&rev), json!({"spec": {"a": 1}}));
    }
}
