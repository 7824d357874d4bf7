//! Raw HTTP checks of the API surface: auth, discovery, errors, semantics, watch.

mod common;

use std::time::Duration;

use common::TestCluster;
use hoist_cluster::daemon::request;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

fn call(c: &TestCluster, method: &str, path: &str, body: Option<(&str, &[u8])>) -> (u16, String) {
    let pki = &c.server.as_ref().unwrap().pki;
    request(c.addr, pki, true, method, path, body, T).expect("request")
}

fn call_json(c: &TestCluster, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    let (code, text) = call(
        c,
        method,
        path,
        bytes.as_deref().map(|b| ("application/json", b)),
    );
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "x"}}, "data": {"k": "v"}})
}

#[test]
fn anonymous_requests_get_401_status_but_health_is_open() {
    let c = TestCluster::start();
    let pki = &c.server.as_ref().unwrap().pki;
    let (code, body) = request(c.addr, pki, false, "GET", "/api/v1/namespaces", None, T).unwrap();
    assert_eq!(code, 401, "{body}");
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["reason"], "Unauthorized");
    let (code, _) = request(c.addr, pki, false, "GET", "/readyz", None, T).unwrap();
    assert_eq!(code, 200);
}

#[test]
fn version_and_discovery_shapes() {
    let c = TestCluster::start();
    let (_, v) = call_json(&c, "GET", "/version", None);
    for f in [
        "major",
        "minor",
        "gitVersion",
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    ] {
        assert!(v[f].is_string(), "version lacks {f}: {v}");
    }
    let (_, apis) = call_json(&c, "GET", "/apis", None);
    assert_eq!(apis["kind"], "APIGroupList");
    let apps = apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "apps")
        .unwrap();
    assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
    let (_, core) = call_json(&c, "GET", "/api/v1", None);
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "pods/status")
    );
    // Old RVs before a restart, unknown groups.
    let (code, _) = call(&c, "GET", "/apis/nope.example.com/v1", None);
    assert_eq!(code, 404);
    let (code, _) = call(&c, "GET", "/openapi/v2", None);
    assert_eq!(code, 404);
    let (_, idx) = call_json(&c, "GET", "/openapi/v3", None);
    let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, doc) = call_json(&c, "GET", &url, None);
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation")
    );
}

#[test]
fn aggregated_discovery_by_content_negotiation() {
    let c = TestCluster::start();
    let pki = &c.server.as_ref().unwrap().pki;
    // The request helper sends no Accept header: legacy answer.
    let (_, body) = request(c.addr, pki, true, "GET", "/api", None, T).unwrap();
    assert!(body.contains("APIVersions"), "{body}");
    let agg =
        hoist_cluster::discovery::aggregated(&c.server.as_ref().unwrap().app.registry, true, "v2");
    let apps = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "apps")
        .unwrap();
    let deploy = apps["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "deployments")
        .unwrap();
    assert_eq!(deploy["responseKind"]["kind"], "Deployment");
    assert_eq!(deploy["subresources"][0]["subresource"], "status");
    assert_eq!(
        hoist_cluster::discovery::aggregated_version(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ),
        Some("v2")
    );
    assert_eq!(
        hoist_cluster::discovery::aggregated_version("application/json"),
        None
    );
}

#[test]
fn bad_input_gets_the_right_status_codes() {
    let c = TestCluster::start();
    let p = "/api/v1/namespaces/default/configmaps";
    let (code, body) = call(&c, "POST", p, Some(("application/json", b"{not json")));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"kind\":\"Status\""));
    let (code, _) = call(&c, "POST", p, Some(("application/json", b"")));
    assert_eq!(code, 400);
    let (code, s) = call_json(
        &c,
        "POST",
        p,
        Some(json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "a"}})),
    );
    assert_eq!(code, 400, "{s}");
    let (code, s) = call_json(
        &c,
        "POST",
        p,
        Some(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}})),
    );
    assert_eq!(code, 400, "{s}");
    let (code, s) = call_json(
        &c,
        "POST",
        p,
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}})),
    );
    assert_eq!(code, 422, "{s}");
    assert_eq!(s["reason"], "Invalid");
    let (code, _) = call_json(&c, "GET", "/api/v1/namespaces/default/frobs", None);
    assert_eq!(code, 404);
    let (code, _) = call_json(
        &c,
        "POST",
        "/api/v1/namespaces/missing/configmaps",
        Some(cm("a")),
    );
    assert_eq!(code, 404);
    let big = vec![b' '; 3 * 1024 * 1024 + 10];
    let (code, _) = call(&c, "POST", p, Some(("application/json", &big)));
    assert_eq!(code, 413);
    let (code, _) = call(&c, "PATCH", &format!("{p}/x"), Some(("text/plain", b"{}")));
    assert_eq!(code, 415);
    let (code, _) = call(&c, "GET", &format!("{p}?labelSelector=a%20in%20(("), None);
    assert_eq!(code, 400);
    let (code, _) = call(
        &c,
        "GET",
        &format!("{p}?fieldSelector=spec.bogus%3D1"),
        None,
    );
    assert_eq!(code, 400);
    let (code, _) = call(
        &c,
        "GET",
        &format!("{p}?watch=true&resourceVersion=abc"),
        None,
    );
    assert_eq!(code, 400);
    // Still healthy after all of it.
    assert_eq!(call(&c, "GET", "/readyz", None).0, 200);
}

#[test]
fn write_semantics() {
    let c = TestCluster::start();
    let p = "/api/v1/namespaces/default/configmaps";
    let (code, created) = call_json(&c, "POST", p, Some(cm("a")));
    assert_eq!(code, 201, "{created}");
    assert!(created["metadata"]["uid"].is_string());
    assert!(
        created["metadata"].get("generation").is_none(),
        "ConfigMaps have no generation, as in Kubernetes"
    );
    let (code, dup) = call_json(&c, "POST", p, Some(cm("a")));
    assert_eq!((code, dup["reason"].as_str()), (409, Some("AlreadyExists")));
    // generateName
    let (code, g) = call_json(
        &c,
        "POST",
        p,
        Some(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
        ),
    );
    assert_eq!(code, 201);
    let gname = g["metadata"]["name"].as_str().unwrap();
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");
    // Update with the current RV works; a stale one is a Conflict; no-op keeps the RV.
    let mut upd = created.clone();
    upd["data"]["k"] = json!("v2");
    let (code, updated) = call_json(&c, "PUT", &format!("{p}/a"), Some(upd.clone()));
    assert_eq!(code, 200, "{updated}");
    let (code, stale) = call_json(&c, "PUT", &format!("{p}/a"), Some(upd));
    assert_eq!((code, stale["reason"].as_str()), (409, Some("Conflict")));
    let (_, same) = call_json(&c, "PUT", &format!("{p}/a"), Some(updated.clone()));
    assert_eq!(
        same["metadata"]["resourceVersion"],
        updated["metadata"]["resourceVersion"]
    );
    // Field and label selectors; list RV.
    let (_, list) = call_json(
        &c,
        "GET",
        &format!("{p}?fieldSelector=metadata.name%3Da"),
        None,
    );
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(
        list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let (_, list) = call_json(
        &c,
        "GET",
        &format!("{p}?&labelSelector=app%3Dx,!missing"),
        None,
    );
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "only `a` carries app=x"
    );
    // Deployment: generation only on spec change; /status is split from the main resource.
    let dp = "/apis/apps/v1/namespaces/default/deployments";
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 9}});
    let (code, d) = call_json(&c, "POST", dp, Some(d));
    assert_eq!(code, 201, "{d}");
    let (code, s) = call(
        &c,
        "PATCH",
        &format!("{dp}/d/status"),
        Some((
            "application/merge-patch+json",
            br#"{"status":{"readyReplicas":1},"spec":{"replicas":7}}"#,
        )),
    );
    assert_eq!(code, 200, "{s}");
    let s: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(s["status"]["readyReplicas"], 1);
    assert_eq!(s["spec"]["replicas"], 1, "status writes ignore spec");
    assert_eq!(s["metadata"]["generation"], 1);
    let (_, m) = call(
        &c,
        "PATCH",
        &format!("{dp}/d"),
        Some((
            "application/merge-patch+json",
            br#"{"metadata":{"labels":{"x":"y"}},"status":{"readyReplicas":5}}"#,
        )),
    );
    let m: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(
        m["metadata"]["generation"], 1,
        "label change is not a spec change"
    );
    assert_eq!(
        m["status"]["readyReplicas"], 1,
        "main-resource writes ignore status"
    );
    let (_, m) = call(
        &c,
        "PATCH",
        &format!("{dp}/d"),
        Some((
            "application/merge-patch+json",
            br#"{"spec":{"replicas":3}}"#,
        )),
    );
    let m: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(m["metadata"]["generation"], 2);
    // Apply without fieldManager is a 400.
    let (code, _) = call(
        &c,
        "PATCH",
        &format!("{dp}/d"),
        Some(("application/apply-patch+yaml", b"{}")),
    );
    assert_eq!(code, 400);
    // Table output.
    let table = hoist_cluster::tables::table(
        &c.server
            .as_ref()
            .unwrap()
            .app
            .registry
            .lookup("apps", "v1", "deployments")
            .unwrap(),
        &[m],
        "1",
        false,
    );
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Ready", "Up-to-date", "Available", "Age"]);
    assert_eq!(table["rows"][0]["cells"][1], "1/3");
}

#[test]
fn watch_resume_expired_and_initial_events() {
    let mut c = TestCluster::start();
    let p = "/api/v1/namespaces/default/configmaps";
    let (_, a) = call_json(&c, "POST", p, Some(cm("a")));
    let rv_a: u64 = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    call_json(&c, "POST", p, Some(cm("b")));
    call_json(&c, "DELETE", &format!("{p}/a"), None);
    // Resume after `a` was created: b ADDED then a DELETED, in order, nothing else.
    let (code, body) = call(
        &c,
        "GET",
        &format!("{p}?watch=true&resourceVersion={rv_a}&timeoutSeconds=1"),
        None,
    );
    assert_eq!(code, 200);
    // Chunk-size lines of the chunked encoding are skipped: only JSON objects are events.
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect();
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ADDED".to_string(), "b".to_string()),
            ("DELETED".to_string(), "a".to_string())
        ],
        "{body}"
    );
    // Filtered watch: label change out of the selector is a DELETED.
    // sendInitialEvents: ADDED for current objects then the end bookmark.
    let (_, body) = call(
        &c,
        "GET",
        &format!(
            "{p}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
        ),
        None,
    );
    assert!(
        body.contains(r#""type":"ADDED""#) && body.contains("k8s.io/initial-events-end"),
        "{body}"
    );
    // After a restart, an RV from before is expired (410 as an ERROR event), and new RVs continue upward.
    c.restart();
    let (code, body) = call(
        &c,
        "GET",
        &format!("{p}?watch=true&resourceVersion={rv_a}&timeoutSeconds=1"),
        None,
    );
    assert_eq!(code, 200);
    assert!(
        body.contains(r#""type":"ERROR""#)
            && body.contains("\"code\":410")
            && body.contains("Expired"),
        "{body}"
    );
    let (_, d) = call_json(&c, "POST", p, Some(cm("d")));
    let rv_d: u64 = d["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv_d > rv_a + 2,
        "RVs continue upward after restart ({rv_d} vs {rv_a})"
    );
}

#[test]
fn filtered_watch_turns_label_changes_into_added_and_deleted() {
    let c = TestCluster::start();
    let p = "/api/v1/namespaces/default/configmaps";
    let (_, a) = call_json(
        &c,
        "POST",
        p,
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})),
    );
    let rv: u64 = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Starts matching, changes while matching, stops matching.
    call(
        &c,
        "PATCH",
        &format!("{p}/a"),
        Some((
            "application/merge-patch+json",
            br#"{"metadata":{"labels":{"sel":"yes"}}}"#,
        )),
    );
    call(
        &c,
        "PATCH",
        &format!("{p}/a"),
        Some(("application/merge-patch+json", br#"{"data":{"x":"1"}}"#)),
    );
    call(
        &c,
        "PATCH",
        &format!("{p}/a"),
        Some((
            "application/merge-patch+json",
            br#"{"metadata":{"labels":{"sel":"no"}}}"#,
        )),
    );
    let (_, body) = call(
        &c,
        "GET",
        &format!("{p}?watch=true&labelSelector=sel%3Dyes&resourceVersion={rv}&timeoutSeconds=1"),
        None,
    );
    let types: Vec<String> = body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"], "{body}");
}

#[test]
fn deleting_a_crd_removes_its_resources_and_kind() {
    let c = TestCluster::start();
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let (code, s) = call_json(
        &c,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(crd),
    );
    assert_eq!(code, 201, "{s}");
    let (code, s) = call_json(
        &c,
        "POST",
        "/apis/example.com/v1/gadgets",
        Some(json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}})),
    );
    assert_eq!(code, 201, "cluster-scoped custom resource: {s}");
    let (code, _) = call_json(
        &c,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com",
        None,
    );
    assert_eq!(code, 200);
    let (code, _) = call_json(&c, "GET", "/apis/example.com/v1/gadgets/g", None);
    assert_eq!(code, 404);
    let stored = c
        .server
        .as_ref()
        .unwrap()
        .app
        .store
        .list("example.com/gadgets", None)
        .unwrap()
        .0;
    assert!(
        stored.is_empty(),
        "custom resources of a deleted CRD are removed"
    );
}

#[test]
fn custom_resources_are_validated_and_pruned() {
    let c = TestCluster::start();
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "required": ["size"], "properties": {"size": {"type": "integer"}}}}}}}]}});
    assert_eq!(
        call_json(
            &c,
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some(crd)
        )
        .0,
        201
    );
    let p = "/apis/example.com/v1/namespaces/default/things";
    let thing = |spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec});
    let (code, s) = call_json(&c, "POST", p, Some(thing(json!({"size": "big"}))));
    assert_eq!(code, 422, "wrong type: {s}");
    let (code, s) = call_json(&c, "POST", p, Some(thing(json!({}))));
    assert_eq!(code, 422, "missing required: {s}");
    let (code, s) = call_json(
        &c,
        "POST",
        &format!("{p}?fieldValidation=Strict"),
        Some(thing(json!({"size": 1, "extra": true}))),
    );
    assert_eq!(code, 400, "strict rejects unknown fields: {s}");
    let (code, s) = call_json(
        &c,
        "POST",
        p,
        Some(thing(json!({"size": 1, "extra": true}))),
    );
    assert_eq!(code, 201, "{s}");
    assert!(
        s["spec"].get("extra").is_none(),
        "unknown fields are pruned: {s}"
    );
}

#[test]
fn bookmarks_are_sent_when_allowed() {
    let c = TestCluster::start();
    let p = "/api/v1/namespaces/default/configmaps";
    let (_, body) = call(
        &c,
        "GET",
        &format!("{p}?watch=true&allowWatchBookmarks=true&resourceVersion=1&timeoutSeconds=6"),
        None,
    );
    let bookmark = body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["type"] == "BOOKMARK")
        .unwrap_or_else(|| panic!("no bookmark in {body}"));
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    assert_eq!(bookmark["object"]["apiVersion"], "v1");
    assert!(bookmark["object"]["metadata"]["resourceVersion"].is_string());
}

#[test]
fn terminating_namespace_refuses_new_content_until_finalized() {
    let c = TestCluster::start();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}});
    let (code, created) = call_json(&c, "POST", "/api/v1/namespaces", Some(ns));
    assert_eq!(code, 201);
    assert_eq!(created["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(
        created["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "t"
    );
    let p = "/api/v1/namespaces/t/configmaps";
    let held = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    assert_eq!(call_json(&c, "POST", p, Some(held)).0, 201);
    let (code, ns) = call_json(&c, "DELETE", "/api/v1/namespaces/t", None);
    assert_eq!(code, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let (code, s) = call_json(&c, "POST", p, Some(cm("new")));
    assert_eq!(code, 403, "{s}");
    assert!(s["message"].as_str().unwrap().contains("being terminated"));
    // Releasing the held object lets the namespace finish (bounded wait).
    call(
        &c,
        "PATCH",
        &format!("{p}/held"),
        Some((
            "application/merge-patch+json",
            br#"{"metadata":{"finalizers":null}}"#,
        )),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while call(&c, "GET", "/api/v1/namespaces/t", None).0 != 404 {
        assert!(
            std::time::Instant::now() < deadline,
            "namespace t was never removed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
