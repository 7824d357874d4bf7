//! The real `kubectl` (v1.32) against the in-process cluster.

mod common;

use common::{TestCluster, data};

#[test]
fn version_discovery_and_default_namespaces() {
    let c = TestCluster::start();
    let v = c.ok(&["version"]);
    assert!(v.contains("Server Version: v1.32.0-hoist"), "{v}");
    let res = c.ok(&["api-resources"]);
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "configmaps",
        "customresourcedefinitions",
        "leases",
    ] {
        assert!(res.contains(line), "api-resources lacks {line}:\n{res}");
    }
    let ns = c.ok(&["get", "ns"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(n), "{ns}");
    }
    assert!(ns.contains("Active"));
    c.ok(&["create", "ns", "team-a"]);
    let err = c.fails(&["create", "ns", "team-a"]);
    assert!(err.contains("AlreadyExists"), "{err}");
    let err = c.fails(&["get", "frobnicators"]);
    assert!(err.contains("doesn't have a resource type"), "{err}");
}

#[test]
fn apply_get_edit_delete_roundtrip() {
    let c = TestCluster::start();
    let out = c.ok(&["apply", "-f", &data("app.yaml")]);
    for line in [
        "namespace/demo created",
        "configmap/settings created",
        "secret/creds created",
        "deployment.apps/web created",
        "service/web created",
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // The CRD's kind is served right away.
    let out = c.ok(&["apply", "-f", &data("widget.yaml")]);
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    // Unchanged re-apply changes nothing and says so.
    let rv_before =
        c.json(&["get", "deploy", "web", "-n", "demo"])["metadata"]["resourceVersion"].clone();
    let out = c.ok(&["apply", "-f", &data("app.yaml")]);
    // Secrets with stringData always report "configured" (as on real clusters: stringData
    // is write-only), but the write is a no-op.
    assert_eq!(out.matches("unchanged").count(), 5, "{out}");
    assert!(out.contains("secret/creds configured"), "{out}");
    let rv_after =
        c.json(&["get", "deploy", "web", "-n", "demo"])["metadata"]["resourceVersion"].clone();
    assert_eq!(
        rv_before, rv_after,
        "a no-op apply must not bump the resourceVersion"
    );

    // Table columns per kind.
    let out = c.ok(&["get", "deploy", "-n", "demo"]);
    assert!(
        out.contains("READY") && out.contains("UP-TO-DATE") && out.contains("AVAILABLE"),
        "{out}"
    );
    assert!(out.contains("0/2"), "{out}");
    let out = c.ok(&["get", "svc", "-n", "demo"]);
    assert!(
        out.contains("TYPE") && out.contains("80/TCP") && out.contains("ClusterIP"),
        "{out}"
    );
    let out = c.ok(&["get", "cm", "-A", "--show-labels"]);
    assert!(
        out.contains("NAMESPACE") && out.contains("demo") && out.contains("app=web"),
        "{out}"
    );
    let secret = c.json(&["get", "secret", "creds", "-n", "demo"]);
    assert_eq!(
        secret["data"]["password"], "czNjcmV0",
        "stringData is folded into data"
    );
    let yaml = c.ok(&["get", "widget", "w1", "-n", "demo", "-o", "yaml"]);
    assert!(yaml.contains("size: 3"), "{yaml}");
    let out = c.ok(&["describe", "deploy", "web", "-n", "demo"]);
    assert!(out.contains("Name:") && out.contains("web"), "{out}");

    // Client-side apply of an edit: strategic merge patch, generation bumps once.
    let gen_before = c.json(&["get", "deploy", "web", "-n", "demo"])["metadata"]["generation"]
        .as_i64()
        .unwrap();
    let edited = std::fs::read_to_string(data("app.yaml"))
        .unwrap()
        .replace("replicas: 2", "replicas: 3");
    let edited_path = c.dir.path().join("edited.yaml");
    std::fs::write(&edited_path, edited).unwrap();
    let out = c.ok(&["apply", "-f", edited_path.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let d = c.json(&["get", "deploy", "web", "-n", "demo"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["metadata"]["generation"].as_i64().unwrap(),
        gen_before + 1
    );

    // label / annotate / patch of each type.
    c.ok(&["label", "cm", "settings", "-n", "demo", "tier=backend"]);
    c.ok(&["annotate", "cm", "settings", "-n", "demo", "note=hi"]);
    c.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "demo",
        "--type=merge",
        "-p",
        r#"{"data":{"extra":"1"}}"#,
    ]);
    c.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "demo",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/data/greeting","value":"bye"}]"#,
    ]);
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "demo",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:2"}]}}}}"#,
    ]);
    let cm = c.json(&["get", "cm", "settings", "-n", "demo"]);
    assert_eq!(cm["metadata"]["labels"]["tier"], "backend");
    assert_eq!(cm["metadata"]["annotations"]["note"], "hi");
    assert_eq!(cm["data"]["extra"], "1");
    assert_eq!(cm["data"]["greeting"], "bye");
    let d = c.json(&["get", "deploy", "web", "-n", "demo"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:2"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 8080,
        "strategic merge keeps other fields of the merged container"
    );
    let err = c.fails(&[
        "patch",
        "widget",
        "w1",
        "-n",
        "demo",
        "-p",
        r#"{"spec":{"size":4}}"#,
    ]);
    assert!(
        err.contains("UnsupportedMediaType") || err.contains("not supported"),
        "{err}"
    );
    c.ok(&[
        "patch",
        "widget",
        "w1",
        "-n",
        "demo",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":4}}"#,
    ]);

    // Label selectors.
    let out = c.ok(&[
        "get",
        "cm",
        "-n",
        "demo",
        "-l",
        "tier in (backend,frontend),app=web",
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "configmap/settings");
    let out = c.ok(&[
        "get",
        "cm",
        "-n",
        "demo",
        "-l",
        "tier!=backend",
        "-o",
        "name",
    ]);
    assert!(!out.contains("settings"), "{out}");

    // Delete returns promptly; wait --for=delete; cascading namespace deletion.
    c.ok(&["delete", "cm", "settings", "-n", "demo"]);
    c.fails(&["get", "cm", "settings", "-n", "demo"]);
    c.ok(&["delete", "ns", "demo", "--wait=true", "--timeout=20s"]);
    let out = c.kubectl(&["get", "ns", "demo"]);
    assert!(!out.status.success(), "namespace demo should be gone");
    let out = c.ok(&["get", "deploy,svc,secret,widgets", "-A", "-o", "name"]);
    assert!(
        !out.contains("web") && !out.contains("creds") && !out.contains("w1"),
        "contents left: {out}"
    );
}
