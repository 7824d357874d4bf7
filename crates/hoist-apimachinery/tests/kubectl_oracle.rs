//! Differential tests: our patch implementations against the real `kubectl patch --local`,
//! which runs Kubernetes' own strategic merge / merge / JSON patch code offline.
//!
//! kubectl must be on PATH (CI installs it); set `HOIST_SKIP_KUBECTL_ORACLE=1` to skip.

use hoist_apimachinery::merge_schema::BuiltinMergeSchema;
use hoist_apimachinery::patch::{json_merge_patch, json_patch, strategic_merge_patch};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::process::Command;

fn kubectl_available() -> bool {
    if std::env::var_os("HOIST_SKIP_KUBECTL_ORACLE").is_some() {
        return false;
    }
    match Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
    {
        Ok(o) if o.status.success() => true,
        _ => panic!(
            "kubectl is required for the oracle tests (set HOIST_SKIP_KUBECTL_ORACLE=1 to skip)"
        ),
    }
}

/// Run `kubectl patch --local`; Ok(result) or Err(stderr).
fn kubectl_patch(object: &Value, patch: &Value, kind: &str) -> Result<Value, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("object.json");
    std::fs::write(&file, object.to_string()).expect("write object");
    let out = Command::new("kubectl")
        .args(["patch", "--local", "-o", "json", "--type", kind, "-f"])
        .arg(&file)
        .arg("-p")
        .arg(patch.to_string())
        .env("KUBECONFIG", dir.path().join("none"))
        .output()
        .expect("run kubectl");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("kubectl prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
        other => other.clone(),
    }
}

fn subset(all: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(all, 0..=all.len()).prop_shuffle()
}

fn arb_pod() -> impl Strategy<Value = Value> {
    let container = (
        subset(&["A", "B", "C"]),
        subset(&["80", "443", "8080"]),
        "[a-z]{1,2}:[0-9]",
        any::<bool>(),
    );
    (
        prop::collection::btree_map(prop::sample::select(&["a", "b", "c"][..]), "[a-z]{1,2}", 0..3),
        subset(&["x", "y", "z"]),
        prop::sample::subsequence(&["c1", "c2", "c3"][..], 1..=3).prop_shuffle(),
        prop::collection::vec(container, 3),
        subset(&["v1", "v2"]),
    )
        .prop_map(|(labels, finalizers, names, containers, volumes)| {
            let containers: Vec<Value> = names
                .iter()
                .zip(containers)
                .map(|(name, (env, ports, image, args))| {
                    let mut c = json!({"name": name, "image": image});
                    if !env.is_empty() {
                        c["env"] = env.iter().map(|e| json!({"name": e, "value": "v"})).collect();
                    }
                    if !ports.is_empty() {
                        c["ports"] = ports.iter().map(|p| json!({"containerPort": p.parse::<i64>().unwrap(), "protocol": "TCP"})).collect();
                    }
                    if args {
                        c["args"] = json!(["-v", "--x"]);
                    }
                    c
                })
                .collect();
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": labels}, "spec": {"containers": containers}});
            if !finalizers.is_empty() {
                pod["metadata"]["finalizers"] = json!(finalizers);
            }
            if !volumes.is_empty() {
                pod["spec"]["volumes"] = volumes.iter().map(|v| json!({"name": v, "emptyDir": {}})).collect();
            }
            pod
        })
}

fn arb_container_patch() -> impl Strategy<Value = Value> {
    let env_item =
        (prop::sample::select(&["A", "B", "D"][..]), 0..3u8).prop_map(|(n, mode)| match mode {
            0 => json!({"name": n, "$patch": "delete"}),
            _ => json!({"name": n, "value": format!("p{mode}")}),
        });
    (
        prop::sample::select(&["c1", "c2", "c4"][..]),
        0..6u8,
        prop::collection::btree_map(prop::sample::select(&["A", "B", "D"][..]), env_item, 0..3),
        subset(&["80", "9090"]),
    )
        .prop_map(|(name, mode, env, ports)| match mode {
            0 => json!({"name": name, "$patch": "delete"}),
            1 => json!({"name": name, "args": ["-q"]}),
            _ => {
                let mut c = json!({"name": name, "image": format!("new:{mode}")});
                if !env.is_empty() {
                    c["env"] = env.into_values().collect();
                }
                if !ports.is_empty() {
                    c["ports"] = ports
                        .iter()
                        .map(|p| json!({"containerPort": p.parse::<i64>().unwrap()}))
                        .collect();
                }
                c
            }
        })
}

fn arb_patch() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(
            prop::sample::select(&["a", "b", "d"][..]),
            prop::option::of("[a-z]{1,2}"),
            0..3,
        ),
        subset(&["x", "w"]),
        subset(&["y", "z"]),
        prop::collection::btree_map(
            prop::sample::select(&["c1", "c2", "c4"][..]),
            arb_container_patch(),
            0..3,
        ),
        any::<bool>(),
        0..3u8,
    )
        .prop_map(|(labels, add_fin, del_fin, containers, order, vol)| {
            let mut meta = Map::new();
            if !labels.is_empty() {
                meta.insert(
                    "labels".into(),
                    labels
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.map_or(Value::Null, Value::String)))
                        .collect(),
                );
            }
            if !add_fin.is_empty() {
                meta.insert("finalizers".into(), json!(add_fin));
            }
            if !del_fin.is_empty() {
                meta.insert("$deleteFromPrimitiveList/finalizers".into(), json!(del_fin));
            }
            let mut spec = Map::new();
            // Container patches are keyed by name in the generator: names are unique.
            let mut items: Vec<Value> = containers
                .into_iter()
                .map(|(n, mut c)| {
                    c["name"] = json!(n);
                    c
                })
                .collect();
            if order && !items.is_empty() {
                items.reverse();
                let names: Vec<Value> = items
                    .iter()
                    .filter(|c| c.get("$patch").is_none())
                    .map(|c| json!({"name": c["name"]}))
                    .collect();
                spec.insert("$setElementOrder/containers".into(), Value::Array(names));
            }
            if !items.is_empty() {
                spec.insert("containers".into(), Value::Array(items));
            }
            match vol {
                1 => {
                    spec.insert(
                        "volumes".into(),
                        json!([{"name": "v3", "emptyDir": {}}, {"name": "v1", "$patch": "delete"}]),
                    );
                }
                2 => {
                    spec.insert(
                        "volumes".into(),
                        json!([{"$patch": "replace"}, {"name": "only", "emptyDir": {}}]),
                    );
                }
                _ => {}
            }
            json!({"metadata": meta, "spec": spec})
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn strategic_merge_matches_kubectl(pod in arb_pod(), patch in arb_patch()) {
        if !kubectl_available() {
            return Ok(());
        }
        // kubectl's client-side apply lists every item of the resulting list in
        // `$setElementOrder`: make some cases like that, keep others partial.
        let mut patch = patch;
        if patch["spec"].get("$setElementOrder/containers").is_some() && patch["metadata"].get("finalizers").is_some() {
            let patched: Vec<&Value> = patch["spec"]["containers"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
            let deleted = |n: &Value| patched.iter().any(|c| c["name"] == *n && c.get("$patch").is_some());
            let in_patch = |n: &Value| patched.iter().any(|c| c["name"] == *n);
            let mut order: Vec<Value> = patched.iter().filter(|c| c.get("$patch").is_none()).map(|c| json!({"name": c["name"]})).collect();
            let server_only: Vec<Value> = pod["spec"]["containers"].as_array().unwrap().iter()
                .filter(|c| !deleted(&c["name"]) && !in_patch(&c["name"]))
                .map(|c| json!({"name": c["name"]})).collect();
            if patch["metadata"].get("labels").is_some() { order.extend(server_only); } else { order.splice(0..0, server_only); }
            patch["spec"]["$setElementOrder/containers"] = Value::Array(order);
        }
        let ours = strategic_merge_patch(&pod, &patch, &BuiltinMergeSchema::for_object(&pod));
        // kubectl copies patch values for absent fields verbatim (directives included);
        // the API server's typed decoding drops those keys and nulls: compare like that.
        let theirs = kubectl_patch(&pod, &patch, "strategic").map(|v| strip(&v));
        match (ours, theirs) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "patch {}", patch),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "ours {:?} vs kubectl {:?} for patch {}", a, b, patch),
        }
    }

    #[test]
    fn merge_patch_matches_kubectl(pod in arb_pod(), patch in arb_patch()) {
        if !kubectl_available() {
            return Ok(());
        }
        // Directive keys are plain fields to a merge patch; kubectl would prune them as unknown.
        let mut patch = patch;
        if let Some(Value::Object(m)) = patch.get_mut("metadata") { m.retain(|k, _| !k.starts_with('$')); }
        if let Some(Value::Object(m)) = patch.get_mut("spec") { m.retain(|k, _| !k.starts_with('$') && k != "volumes"); }
        if let Some(Value::Array(cs)) = patch.pointer_mut("/spec/containers") {
            cs.retain(|c| c.get("$patch").is_none());
            for c in cs.iter_mut() {
                if let Some(Value::Array(env)) = c.get_mut("env") { env.retain(|e| e.get("$patch").is_none()); }
            }
        }
        let mut ours = pod.clone();
        json_merge_patch(&mut ours, &patch);
        let theirs = kubectl_patch(&pod, &patch, "merge").map_err(TestCaseError::fail)?;
        prop_assert_eq!(ours, theirs, "patch {}", patch);
    }
}

#[test]
fn json_patch_matches_kubectl() {
    if !kubectl_available() {
        return;
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1", "x/y": "2"}},
        "spec": {"containers": [{"name": "c", "image": "i", "args": ["a", "b"]}]}});
    let cases = [
        json!([{"op": "add", "path": "/metadata/labels/b", "value": "3"}, {"op": "remove", "path": "/metadata/labels/x~1y"}]),
        json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "j"}, {"op": "add", "path": "/spec/containers/0/args/-", "value": "c"}]),
        json!([{"op": "add", "path": "/spec/containers/0/args/1", "value": "z"}, {"op": "move", "from": "/spec/containers/0/args/0", "path": "/spec/containers/0/args/2"}]),
        json!([{"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/c"}, {"op": "test", "path": "/metadata/labels/c", "value": "1"}]),
        json!([{"op": "test", "path": "/metadata/labels/a", "value": "2"}]),
        json!([{"op": "remove", "path": "/metadata/labels/nope"}]),
        json!([{"op": "replace", "path": "/spec/containers/3/image", "value": "j"}]),
    ];
    for ops in cases {
        let ours = json_patch(&pod, &ops);
        let theirs = kubectl_patch(&pod, &ops, "json");
        match (ours, theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{ops}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("ours {a:?} vs kubectl {b:?} for {ops}"),
        }
    }
}

/// Patches `kubectl apply` itself produces for common edits, checked against kubectl.
#[test]
fn client_side_apply_style_patches_match_kubectl() {
    if !kubectl_available() {
        return;
    }
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "1"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [{"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/cfg"}]}],
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "imagePullSecrets": [{"name": "s1"}]}}}});
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]}});
    let cases = [
        (
            &deploy,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        ),
        (
            &deploy,
            json!({"spec": {"template": {"spec": {"$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
            "volumes": [{"$retainKeys": ["name", "secret"], "name": "data", "secret": {"secretName": "x"}}]}}}}),
        ),
        (
            &deploy,
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"$setElementOrder/env": [{"name": "B"}, {"name": "C"}], "name": "app",
                            "env": [{"name": "C", "value": "3"}, {"$patch": "delete", "name": "A"}]}]}}}}),
        ),
        (
            &deploy,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app",
            "$setElementOrder/volumeMounts": [{"mountPath": "/cfg"}],
            "volumeMounts": [{"$patch": "delete", "mountPath": "/data"}]}]}}}}),
        ),
        (
            &deploy,
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "j", "operator": "Exists"}]}}}}),
        ),
        (
            &deploy,
            json!({"metadata": {"annotations": {"a": null, "b": "2"}, "labels": {"tier": "x"}}, "spec": {"replicas": 5}}),
        ),
        (
            &deploy,
            json!({"spec": {"template": {"spec": {"imagePullSecrets": [{"name": "s2"}]}}}}),
        ),
        (
            &deploy,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"$patch": "replace"}, {"name": "Z", "value": "z"}]}]}}}}),
        ),
        (
            &service,
            json!({"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}], "ports": [{"port": 80, "targetPort": 9090}]}}),
        ),
        (
            &service,
            json!({"spec": {"ports": [{"port": 8443, "name": "alt"}], "selector": {"app": null, "role": "api"}}}),
        ),
        (
            &service,
            json!({"spec": {"ports": [{"$patch": "delete", "port": 443}]}}),
        ),
    ];
    for (obj, patch) in cases {
        let ours = strategic_merge_patch(obj, &patch, &BuiltinMergeSchema::for_object(obj))
            .expect("our patch");
        let theirs = strip(&kubectl_patch(obj, &patch, "strategic").expect("kubectl patch"));
        assert_eq!(ours, theirs, "patch {patch}");
    }
}
