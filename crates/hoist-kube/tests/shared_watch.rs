//! Shared readiness watches on the real embedded cluster (no kubelet here: pod and
//! Job statuses are written with kubectl, as a kubelet or controller would).

mod common;

use std::time::{Duration, Instant};

use hoist_kube::shared_watch::SharedWatches;
use hoist_kube::{Applied, ApplySet, Desired, Owner, PruneScope};
use serde_json::{Value, json};

fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
           "spec": {"containers": [{"name": "c", "image": "example.invalid/c:1"}]}})
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "example.invalid/c:1"}]}}}})
}

fn of(applied: &[Applied], service: &str) -> Vec<Applied> {
    applied
        .iter()
        .filter(|a| a.service == service)
        .cloned()
        .collect()
}

async fn apply(set: &mut ApplySet, objects: Vec<(&str, Value)>) -> Vec<Applied> {
    let desired = objects
        .into_iter()
        .map(|(s, object)| Desired {
            service: s.into(),
            object,
        })
        .collect();
    set.apply(desired, PruneScope::None).await.unwrap().applied
}

fn owner() -> Owner {
    Owner {
        project: "shop".into(),
        developer: "ann".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wait_shares_one_watch_per_kind() {
    let c = common::Cluster::start().await;
    let (target, client) = c.target("shop", "ann").await;
    let mut set = ApplySet::new(client.clone(), &target);
    let applied = apply(
        &mut set,
        vec![
            ("web", pod("web", json!({"app": "web"}))),
            (
                "web",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"}}),
            ),
            ("api", pod("api", json!({"app": "api"}))),
        ],
    )
    .await;
    let watches = SharedWatches::new(client.clone(), &owner());
    // Both pods become ready while both services wait.
    let ready = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;
    let (web, api) = (of(&applied, "web"), of(&applied, "api"));
    let started = Instant::now();
    let (web, api, ()) = tokio::join!(
        watches.wait_ready(&web, Duration::from_secs(20)),
        watches.wait_ready(&api, Duration::from_secs(20)),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for p in ["web", "api"] {
                c.kubectl(&[
                    "patch",
                    "pod",
                    p,
                    "-n",
                    "shop-ann",
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    ready,
                ]);
            }
        }
    );
    web.expect("web ready");
    api.expect("api ready");
    assert!(started.elapsed() < Duration::from_secs(15));
    // Pods and ConfigMaps of namespace shop-ann: two watches for three objects of two services.
    assert_eq!(watches.watch_count(), 2);

    // A wait started later is answered from the same watches.
    watches
        .wait_ready(&applied, Duration::from_secs(5))
        .await
        .expect("still ready");
    assert_eq!(watches.watch_count(), 2);

    // A missing object is reported as such, after the deadline. The watch learns of the
    // deletion from its event, a moment after kubectl returns (under load, after a first
    // wait has already found the ConfigMap): asked again until then, at most 10 s.
    c.kubectl(&["delete", "configmap", "web-config", "-n", "shop-ann"]);
    let deletion_seen_by = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match watches
            .wait_ready(&of(&applied, "web"), Duration::from_millis(500))
            .await
        {
            Err(e) => break e,
            Ok(()) if Instant::now() < deletion_seen_by => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(()) => panic!("the watch never saw web-config's deletion"),
        }
    };
    assert_eq!(
        err.to_string(),
        "ConfigMap/web-config in namespace shop-ann is not ready: does not exist\n"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_object_is_judged_by_its_own_state() {
    let c = common::Cluster::start().await;
    let (target, client) = c.target("shop", "ann").await;
    let mut set = ApplySet::new(client.clone(), &target);
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "m", "image": "example.invalid/m:1"}]}}}});
    let first = apply(&mut set, vec![("migrate", job.clone())]).await;
    c.kubectl(&[
        "patch",
        "job",
        "migrate",
        "-n",
        "shop-ann",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"succeeded":1,"conditions":[{"type":"Complete","status":"True"}]}}"#,
    ]);
    let watches = SharedWatches::new(client.clone(), &owner());
    watches
        .wait_ready(&first, Duration::from_secs(20))
        .await
        .expect("complete");
    // Deleted and applied again: the new Job has not completed, whatever the watch
    // saw of the old one.
    c.kubectl(&["delete", "job", "migrate", "-n", "shop-ann", "--wait=true"]);
    let second = apply(&mut set, vec![("migrate", job)]).await;
    assert_ne!(
        first[0].object["metadata"]["uid"],
        second[0].object["metadata"]["uid"]
    );
    let err = watches
        .wait_ready(&second, Duration::from_millis(800))
        .await
        .unwrap_err();
    let o = &err.objects[0];
    assert!(!o.failed);
    assert!(o.reason.contains("0 of 1 completions"), "{}", o.reason);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopeless_names_the_crashing_pods_of_that_workload_only() {
    let c = common::Cluster::start().await;
    let (target, client) = c.target("shop", "ann").await;
    let mut set = ApplySet::new(client.clone(), &target);
    let applied = apply(
        &mut set,
        vec![("web", deployment("web")), ("api", deployment("api"))],
    )
    .await;
    let watches = SharedWatches::new(client.clone(), &owner());
    let web = of(&applied, "web");
    let api = of(&applied, "api");
    let crashing = c.dir.path().join("pod.json");
    let mut p = pod("web-abc12", json!({"app": "web"}));
    p["metadata"]["namespace"] = "shop-ann".into();
    std::fs::write(&crashing, p.to_string()).unwrap();
    let started = Instant::now();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(watches.hopeless(&web), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.kubectl(&["apply", "-f", crashing.to_str().unwrap()]);
            c.kubectl(&[
                    "patch", "pod", "web-abc12", "-n", "shop-ann", "--subresource=status",
                    "--type=merge", "-p",
                    r#"{"status":{"phase":"Running","containerStatuses":[{"name":"c","ready":false,"restartCount":5,"image":"example.invalid/c:1","imageID":"","state":{"waiting":{"reason":"CrashLoopBackOff","message":"back-off 1m20s"}},"lastState":{"terminated":{"exitCode":2,"reason":"Error"}}}]}}"#,
                ],
            );
        })
        .0
    })
    .await
    .expect("the crash is seen");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(found.0.to_string(), "Deployment/web in namespace shop-ann");
    assert_eq!(
        found.1,
        ["pod web-abc12: container c CrashLoopBackOff; exited with code 2 (Error)"]
    );
    // The other service's pods are fine: its check does not resolve.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), watches.hopeless(&api))
            .await
            .is_err()
    );
    // One pod watch for the namespace, shared by both checks.
    assert_eq!(watches.watch_count(), 1);
    c.stop().await;
}
