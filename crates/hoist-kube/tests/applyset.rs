//! ApplySet and teardown against the real embedded cluster, checked with kubectl.

mod common;

use std::collections::BTreeMap;

use hoist_kube::{ApplySet, Desired, PruneScope};
use serde_json::{Value, json};

fn cm(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}})
}

fn svc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                       "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}
    })
}

fn widget(name: &str, size: i64) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": size}})
}

fn desired(items: Vec<(&str, Value)>) -> Vec<Desired> {
    items
        .into_iter()
        .map(|(s, o)| Desired {
            service: s.into(),
            object: o,
        })
        .collect()
}

/// name → resourceVersion of every object carrying the project's labels, per kind.
fn versions(c: &common::Cluster, ns: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let crd_served = !c.kubectl_json(&[
        "get",
        "crd",
        "--field-selector",
        "metadata.name=widgets.example.com",
    ])["items"]
        .as_array()
        .unwrap()
        .is_empty();
    let kinds: &[&str] = if crd_served {
        &["configmaps", "services", "widgets.example.com"]
    } else {
        &["configmaps", "services"]
    };
    for kind in kinds {
        let list = c.kubectl_json(&[
            "get",
            kind,
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/managed-by=hoist,hoist.dev/project=shop,hoist.dev/developer=ann",
        ]);
        for item in list["items"].as_array().unwrap() {
            out.insert(
                format!("{kind}/{}", item["metadata"]["name"].as_str().unwrap()),
                item["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reapply_change_prune_teardown() {
    let c = common::Cluster::start().await;
    let (target, client) = c.target("shop", "ann").await;
    assert_eq!(target.namespace, "shop-ann");
    let mut set = ApplySet::new(client.clone(), &target);

    // CR first in the input: the CRD must still be applied (and served) before it.
    let first = || {
        desired(vec![
            ("web", widget("big", 3)),
            ("web", cm("web-config", "1")),
            ("web", svc("web")),
            ("api", cm("api-config", "a")),
            ("api", svc("api")),
            ("web", crd()),
        ])
    };
    let report = set
        .apply(first(), PruneScope::All)
        .await
        .expect("first apply");
    assert_eq!(report.applied.len(), 6);
    assert_eq!(report.applied[0].key.kind, "CustomResourceDefinition");
    assert!(report.pruned.is_empty());

    let cmj = c.kubectl_json(&[
        "get",
        "configmap",
        "web-config",
        "-n",
        "shop-ann",
        "--show-managed-fields",
    ]);
    let labels = &cmj["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "hoist");
    assert_eq!(labels["hoist.dev/project"], "shop");
    assert_eq!(labels["hoist.dev/developer"], "ann");
    assert_eq!(labels["hoist.dev/service"], "web");
    assert!(
        cmj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["manager"] == "hoist" && m["operation"] == "Apply"),
        "{cmj}"
    );
    let v1 = versions(&c, "shop-ann");
    assert_eq!(v1.len(), 5, "{v1:?}");

    // Unchanged re-apply: nothing is written.
    let report = set.apply(first(), PruneScope::All).await.expect("re-apply");
    assert!(report.pruned.is_empty());
    assert_eq!(
        versions(&c, "shop-ann"),
        v1,
        "a no-op apply must not bump resourceVersions"
    );

    // Change one, drop one (ConfigMap api-config) and the Widget: updated + pruned.
    // A new ApplySet (a restarted hoist) must find the old kinds through the inventory.
    let mut set = ApplySet::new(client.clone(), &target);
    let report = set
        .apply(
            desired(vec![
                ("web", crd()),
                ("web", cm("web-config", "2")),
                ("web", svc("web")),
                ("api", svc("api")),
            ]),
            PruneScope::All,
        )
        .await
        .expect("second apply");
    let mut pruned: Vec<String> = report
        .pruned
        .iter()
        .map(|k| format!("{}/{}", k.kind, k.name))
        .collect();
    pruned.sort();
    assert_eq!(pruned, ["ConfigMap/api-config", "Widget/big"]);
    let v2 = versions(&c, "shop-ann");
    assert_ne!(v2["configmaps/web-config"], v1["configmaps/web-config"]);
    assert_eq!(v2["services/web"], v1["services/web"]);
    assert!(
        !v2.contains_key("configmaps/api-config") && !v2.contains_key("widgets.example.com/big")
    );
    let data = c.kubectl_json(&["get", "configmap", "web-config", "-n", "shop-ann"]);
    assert_eq!(data["data"]["v"], "2");

    // Service-scoped prune: rendering only `api` with nothing must not touch `web`.
    let report = set
        .apply(vec![], PruneScope::Services(vec!["api".into()]))
        .await
        .expect("api-only prune");
    let pruned: Vec<String> = report
        .pruned
        .iter()
        .map(|k| format!("{}/{}", k.kind, k.name))
        .collect();
    assert_eq!(pruned, ["Service/api"]);
    assert!(versions(&c, "shop-ann").contains_key("services/web"));

    // Another developer's objects in the same cluster are never touched.
    let (other_t, other_c) = c.target("shop", "bob").await;
    let mut other = ApplySet::new(other_c, &other_t);
    other
        .apply(
            desired(vec![("web", cm("web-config", "bob"))]),
            PruneScope::All,
        )
        .await
        .unwrap();

    // Teardown: nothing with our labels remains; the namespace stays; bob's stays.
    let report =
        hoist_kube::teardown::teardown(&mut set, &hoist_kube::teardown::TeardownOptions::default())
            .await
            .expect("teardown");
    assert!(report.deleted.len() >= 3, "{:?}", report.deleted);
    assert!(versions(&c, "shop-ann").is_empty());
    let all = c.kubectl_json(&[
        "get",
        "configmaps",
        "-A",
        "-l",
        "hoist.dev/project=shop,hoist.dev/developer=ann",
    ]);
    assert_eq!(all["items"].as_array().unwrap().len(), 0, "{all}");
    // The CRD is cluster-scoped and was applied for `ann`: gone too.
    let crds = c.kubectl_json(&["get", "crd", "-l", "hoist.dev/developer=ann"]);
    assert_eq!(crds["items"].as_array().unwrap().len(), 0);
    c.kubectl_json(&["get", "namespace", "shop-ann"]);
    let bob = c.kubectl_json(&["get", "configmap", "web-config", "-n", "shop-bob"]);
    assert_eq!(bob["data"]["v"], "bob");
    // The inventory is gone as well.
    let inv = c.kubectl_json(&[
        "get",
        "configmaps",
        "-n",
        "shop-ann",
        "-l",
        "hoist.dev/role=inventory",
    ]);
    assert_eq!(inv["items"].as_array().unwrap().len(), 0, "{inv}");

    // --delete-namespace semantics.
    let opts = hoist_kube::teardown::TeardownOptions {
        delete_namespace: true,
        ..Default::default()
    };
    let report = hoist_kube::teardown::teardown(&mut other, &opts)
        .await
        .expect("teardown bob");
    assert!(report.namespace_deleted);
    let nss = c.kubectl_json(&["get", "namespaces"]);
    assert!(
        !nss["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["metadata"]["name"] == "shop-bob"),
        "{nss}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_are_refused_with_their_index() {
    let c = common::Cluster::start().await;
    let (target, client) = c.target("shop", "ann").await;
    let mut set = ApplySet::new(client, &target);
    let err = set
        .apply(
            desired(vec![
                ("a", cm("ok", "1")),
                ("a", json!({"apiVersion": "v1", "kind": "ConfigMap"})),
            ]),
            PruneScope::All,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "object #1 cannot be applied: ConfigMap without `metadata.name`"
    );
    let err = set
        .apply(desired(vec![("a", widget("w", 1))]), PruneScope::All)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the cluster does not serve example.com/v1 Widget (object w); is its CRD installed?"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_names_what_a_finalizer_holds() {
    let c = common::Cluster::start().await;
    let (target, client) = c.target("shop", "ann").await;
    let mut set = ApplySet::new(client, &target);
    let mut held = cm("held", "1");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    set.apply(
        desired(vec![("web", held), ("web", cm("free", "1"))]),
        PruneScope::All,
    )
    .await
    .unwrap();
    let opts = hoist_kube::teardown::TeardownOptions {
        timeout: std::time::Duration::from_millis(500),
        ..Default::default()
    };
    let err = hoist_kube::teardown::teardown(&mut set, &opts)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "timed out after 500ms waiting for hoist's objects to be deleted (still present: ConfigMap/held in namespace shop-ann; a finalizer may hold them)"
    );
    // Released: a second `hoist down` finishes the job (the inventory survived).
    c.kubectl(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "shop-ann",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    hoist_kube::teardown::teardown(&mut set, &Default::default())
        .await
        .unwrap();
    let left = c.kubectl_json(&[
        "get",
        "configmaps",
        "-n",
        "shop-ann",
        "-l",
        "hoist.dev/project=shop",
    ]);
    assert_eq!(left["items"].as_array().unwrap().len(), 0, "{left}");
    c.stop().await;
}
