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
    // The namespace gets its `default` ServiceAccount from the controller (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !c
        .kubectl(&["get", "sa", "default", "-n", "team-a"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no default ServiceAccount in team-a"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let err = c.fails(&["create", "ns", "team-a"]);
    assert!(err.contains("AlreadyExists"), "{err}");
    // Typed creates send protobuf bodies.
    c.ok(&[
        "create",
        "deployment",
        "d1",
        "--image=busybox",
        "--replicas=2",
        "--port=8080",
    ]);
    let d = c.json(&["get", "deploy", "d1"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "d1");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );
    c.ok(&["create", "job", "j1", "--image=busybox", "--", "echo", "hi"]);
    let j = c.json(&["get", "job", "j1"]);
    assert_eq!(
        j["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    c.ok(&["create", "secret", "generic", "s1", "--from-literal=a=b"]);
    assert_eq!(c.json(&["get", "secret", "s1"])["data"]["a"], "Yg==");
    c.ok(&["create", "serviceaccount", "sa1"]);
    c.ok(&["run", "p1", "--image=busybox"]);
    let out = c.ok(&["get", "pods"]);
    assert!(
        out.contains("READY") && out.contains("Pending") && out.contains("0/1"),
        "{out}"
    );
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
    let out = c.ok(&["get", "widgets", "-n", "demo"]);
    assert!(
        out.contains("SIZE") && out.contains("COLOR") && out.contains("blue"),
        "printer columns: {out}"
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

    // Unknown fields are refused (kubectl sends fieldValidation=Strict).
    let typo = c.dir.path().join("typo.yaml");
    std::fs::write(&typo, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: typo\n  namespace: demo\nspc:\n  replicas: 1\n").unwrap();
    let err = c.fails(&["apply", "-f", typo.to_str().unwrap()]);
    assert!(err.contains("unknown field \"spc\""), "{err}");

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

#[test]
fn server_side_apply_conflicts_and_force() {
    let c = TestCluster::start();
    let dir = c.dir.path();
    let manifest = |replicas: u32, image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: default\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: api}}\n  template:\n    metadata:\n      labels: {{app: api}}\n    spec:\n      containers:\n      - name: api\n        image: {image}\n"
        )
    };
    let f = dir.join("api.yaml");
    std::fs::write(&f, manifest(1, "busybox:1")).unwrap();
    let f = f.to_str().unwrap();
    let out = c.ok(&["apply", "--server-side", "-f", f]);
    assert!(
        out.contains("deployment.apps/api serverside-applied"),
        "{out}"
    );
    let d = c.json(&["get", "deploy", "api", "--show-managed-fields"]);
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["kubectl"], "{d}");
    assert_eq!(d["metadata"]["managedFields"][0]["operation"], "Apply");
    // Another manager takes spec.replicas; applying a different value then conflicts.
    let out = c.ok(&["scale", "deploy", "api", "--replicas=5"]);
    assert!(out.contains("scaled"), "{out}");
    assert_eq!(c.json(&["get", "deploy", "api"])["spec"]["replicas"], 5);
    std::fs::write(f, manifest(2, "busybox:1")).unwrap();
    let err = c.fails(&["apply", "--server-side", "-f", f]);
    // `kubectl scale` sends no fieldManager: the manager is named from its User-Agent.
    assert!(
        err.contains(r#"conflict with "kubectl" using apps/v1: .spec.replicas"#),
        "{err}"
    );
    let out = c.ok(&["apply", "--server-side", "--force-conflicts", "-f", f]);
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(c.json(&["get", "deploy", "api"])["spec"]["replicas"], 2);
    // Re-applying the same configuration is a no-op (same resourceVersion).
    let rv = c.json(&["get", "deploy", "api"])["metadata"]["resourceVersion"].clone();
    c.ok(&["apply", "--server-side", "-f", f]);
    assert_eq!(
        c.json(&["get", "deploy", "api"])["metadata"]["resourceVersion"],
        rv
    );
}

#[test]
fn watch_streams_changes_and_wait_for_delete() {
    let c = TestCluster::start();
    c.ok(&["create", "configmap", "w1", "--from-literal=a=1"]);
    // Start a bounded watch, then change things while it runs.
    let child = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.dir.path())
        .args([
            "get",
            "cm",
            "-w",
            "--request-timeout=4s",
            "--output-watch-events",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Give kubectl time to list and start watching (bounded; the watch itself ends at 4 s).
    std::thread::sleep(std::time::Duration::from_millis(1200));
    c.ok(&["create", "configmap", "w2", "--from-literal=b=2"]);
    c.ok(&["label", "cm", "w1", "x=y"]);
    c.ok(&["delete", "cm", "w2"]);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for (event, name) in [
        ("ADDED", "w1"),
        ("ADDED", "w2"),
        ("MODIFIED", "w1"),
        ("DELETED", "w2"),
    ] {
        let found = text.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&event) && cols.get(1) == Some(&name)
        });
        assert!(found, "watch output lacks {event} {name}:\n{text}");
    }
    // wait --for=delete returns once a finalizer-held object is really gone.
    c.ok(&[
        "patch",
        "cm",
        "w1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    c.ok(&["delete", "cm", "w1", "--wait=false"]);
    let held = c.json(&["get", "cm", "w1"]);
    assert!(
        held["metadata"]["deletionTimestamp"].is_string(),
        "finalizer keeps the object: {held}"
    );
    let mut waiter = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.dir.path())
        .args(["wait", "--for=delete", "cm/w1", "--timeout=20s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.ok(&[
        "patch",
        "cm",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let status = waiter.wait().unwrap();
    assert!(status.success(), "kubectl wait --for=delete failed");
    c.fails(&["get", "cm", "w1"]);
}

#[test]
fn garbage_collection_follows_owner_references() {
    let c = TestCluster::start();
    c.ok(&["create", "configmap", "owner"]);
    let uid = c.json(&["get", "cm", "owner"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    for name in ["dep1", "dep2"] {
        let f = c.dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &f,
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: owner\n    uid: {uid}\n"),
        )
        .unwrap();
        c.ok(&["apply", "-f", f.to_str().unwrap()]);
    }
    c.ok(&["delete", "cm", "owner", "--cascade=orphan"]);
    let dep = c.json(&["get", "cm", "dep1"]);
    assert!(
        dep["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "orphaned dependents lose the reference: {dep}"
    );
    // Background deletion removes dependents.
    c.ok(&["create", "configmap", "owner2"]);
    let uid2 = c.json(&["get", "cm", "owner2"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    c.ok(&["patch", "cm", "dep2", "--type=merge", "-p", &format!(r#"{{"metadata":{{"ownerReferences":[{{"apiVersion":"v1","kind":"ConfigMap","name":"owner2","uid":"{uid2}"}}]}}}}"#)]);
    c.ok(&["delete", "cm", "owner2"]);
    c.ok(&["wait", "--for=delete", "cm/dep2", "--timeout=15s"]);
    c.ok(&["get", "cm", "dep1"]);
    // Foreground: the owner waits (foregroundDeletion finalizer) until dependents are gone.
    c.ok(&["create", "configmap", "owner3"]);
    let uid3 = c.json(&["get", "cm", "owner3"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    c.ok(&["patch", "cm", "dep1", "--type=merge", "-p", &format!(r#"{{"metadata":{{"ownerReferences":[{{"apiVersion":"v1","kind":"ConfigMap","name":"owner3","uid":"{uid3}"}}]}}}}"#)]);
    c.ok(&[
        "delete",
        "cm",
        "owner3",
        "--cascade=foreground",
        "--timeout=15s",
    ]);
    c.fails(&["get", "cm", "owner3"]);
    c.fails(&["get", "cm", "dep1"]);
}

/// `kubectl create service|cronjob|role|...` send protobuf bodies (no JSON fallback);
/// each stored object is checked field by field.
#[test]
fn typed_creates_of_services_cronjobs_and_rbac_decode_protobuf() {
    use serde_json::json;
    let c = TestCluster::start();
    for ty in ["clusterip", "nodeport", "loadbalancer"] {
        let name = format!("svc-{ty}");
        c.ok(&["create", "service", ty, &name, "--tcp=80:8080"]);
        let s = c.json(&["get", "svc", &name]);
        let port = &s["spec"]["ports"][0];
        assert_eq!(port["port"], 80, "{s}");
        assert_eq!(port["targetPort"], 8080, "{s}");
        assert_eq!(port["protocol"], "TCP", "{s}");
        assert_eq!(port["name"], "80-8080", "{s}");
        assert_eq!(s["spec"]["selector"], json!({"app": name}), "{s}");
        let want = match ty {
            "clusterip" => "ClusterIP",
            "nodeport" => "NodePort",
            _ => "LoadBalancer",
        };
        assert_eq!(s["spec"]["type"], want, "{s}");
        if ty == "clusterip" {
            assert!(
                port.get("nodePort").is_none(),
                "an unset nodePort is omitted: {s}"
            );
        }
    }
    c.ok(&[
        "create",
        "service",
        "nodeport",
        "np2",
        "--tcp=81:web",
        "--node-port=30081",
    ]);
    let s = c.json(&["get", "svc", "np2"]);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], "web", "{s}");
    assert_eq!(s["spec"]["ports"][0]["nodePort"], 30081, "{s}");
    c.ok(&[
        "create",
        "service",
        "clusterip",
        "headless",
        "--clusterip=None",
    ]);
    assert_eq!(
        c.json(&["get", "svc", "headless"])["spec"]["clusterIP"],
        "None"
    );
    c.ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name=db.example.com",
        "--tcp=80:8080",
    ]);
    let s = c.json(&["get", "svc", "ext"]);
    assert_eq!(s["spec"]["type"], "ExternalName", "{s}");
    assert_eq!(s["spec"]["externalName"], "db.example.com", "{s}");

    c.ok(&[
        "create",
        "cronjob",
        "cj",
        "--image=busybox",
        "--schedule=*/1 * * * *",
        "--",
        "echo",
        "hi",
    ]);
    let cj = c.json(&["get", "cronjob", "cj"]);
    assert_eq!(cj["spec"]["schedule"], "*/1 * * * *", "{cj}");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["command"],
        json!(["echo", "hi"]),
        "{cj}"
    );
    assert_eq!(pod["containers"][0]["image"], "busybox", "{cj}");
    assert_eq!(pod["restartPolicy"], "OnFailure", "{cj}");
    assert_eq!(cj["spec"]["jobTemplate"]["metadata"]["name"], "cj", "{cj}");
    // Strings gogo-protobuf sends empty when unset are omitted, as JSON clients would.
    let c0 = &pod["containers"][0];
    for unset in ["imagePullPolicy", "workingDir"] {
        assert!(c0.get(unset).is_none(), "{unset} should be omitted: {cj}");
    }
    assert!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
            .get("name")
            .is_none(),
        "{cj}"
    );

    c.ok(&[
        "create",
        "role",
        "r1",
        "--verb=get",
        "--verb=list",
        "--resource=pods",
        "--resource=deployments.apps",
        "--resource-name=p1",
    ]);
    let r = c.json(&["get", "role", "r1"]);
    assert_eq!(
        r["rules"],
        json!([
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p1"]},
            {"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["p1"]}
        ]),
        "{r}"
    );
    c.ok(&[
        "create",
        "clusterrole",
        "cr1",
        "--verb=get",
        "--non-resource-url=/healthz",
    ]);
    let cr = c.json(&["get", "clusterrole", "cr1"]);
    assert_eq!(
        cr["rules"],
        json!([{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]),
        "{cr}"
    );
    let err = c.fails(&["create", "clusterrole", "agg", "--aggregation-rule=a=b"]);
    assert!(err.contains("aggregationRule"), "{err}");

    c.ok(&[
        "create",
        "rolebinding",
        "rb1",
        "--role=r1",
        "--user=u",
        "--serviceaccount=default:sa1",
        "--group=g",
    ]);
    let rb = c.json(&["get", "rolebinding", "rb1"]);
    assert_eq!(
        rb["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1"}),
        "{rb}"
    );
    assert_eq!(
        rb["subjects"],
        json!([
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "u"},
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "g"},
            {"kind": "ServiceAccount", "name": "sa1", "namespace": "default"}
        ]),
        "{rb}"
    );
    c.ok(&[
        "create",
        "clusterrolebinding",
        "crb1",
        "--clusterrole=cr1",
        "--user=u",
    ]);
    let crb = c.json(&["get", "clusterrolebinding", "crb1"]);
    assert_eq!(
        crb["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cr1"}),
        "{crb}"
    );
    assert_eq!(
        crb["subjects"],
        json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "u"}]),
        "{crb}"
    );

    // ResourceQuota is not served: a 404 before any body is decoded.
    let err = c.fails(&["create", "quota", "q", "--hard=pods=2"]);
    assert!(
        err.contains("could not find the requested resource"),
        "{err}"
    );
}

#[test]
fn services_get_loopback_cluster_ips_and_node_ports() {
    use std::net::Ipv4Addr;
    let mut c = TestCluster::start();
    c.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    c.ok(&["create", "service", "nodeport", "np", "--tcp=81:8081"]);
    let web = c.json(&["get", "svc", "web"]);
    let ip: Ipv4Addr = web["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert!(hoist_cluster::service_alloc::in_range(ip), "{web}");
    assert_eq!(web["spec"]["clusterIPs"][0], web["spec"]["clusterIP"]);
    let np = c.json(&["get", "svc", "np"]);
    assert_ne!(np["spec"]["clusterIP"], web["spec"]["clusterIP"], "{np}");
    let node_port = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{np}");
    // `kubectl get svc` shows the CLUSTER-IP and the nodePort.
    let table = c.ok(&["get", "svc"]);
    assert!(table.contains(&ip.to_string()), "{table}");
    assert!(table.contains(&format!("81:{node_port}/TCP")), "{table}");

    // A requested address outside the loopback range is refused, clearly.
    let err = c.fails(&[
        "create",
        "service",
        "clusterip",
        "bad",
        "--tcp=80:80",
        "--clusterip=10.0.0.5",
    ]);
    assert!(
        err.contains("spec.clusterIP") && err.contains("127.96.0.0/12"),
        "{err}"
    );
    let err = c.fails(&[
        "create",
        "service",
        "clusterip",
        "dup",
        "--tcp=80:80",
        &format!("--clusterip={ip}"),
    ]);
    assert!(err.contains("already allocated"), "{err}");

    // Updates keep the allocation; changing it is refused (immutable).
    c.ok(&["label", "svc", "web", "tier=front"]);
    assert_eq!(
        c.json(&["get", "svc", "web"])["spec"]["clusterIP"],
        ip.to_string()
    );
    let err = c.fails(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"clusterIP":"127.96.7.7"}}"#,
    ]);
    assert!(err.contains("immutable"), "{err}");

    // Persisted across a restart; deleting releases the address for reuse.
    c.restart();
    assert_eq!(
        c.json(&["get", "svc", "web"])["spec"]["clusterIP"],
        ip.to_string()
    );
    c.ok(&["delete", "svc", "web"]);
    c.ok(&[
        "create",
        "service",
        "clusterip",
        "again",
        "--tcp=80:80",
        &format!("--clusterip={ip}"),
    ]);
}
