//! StatefulSets, DaemonSets, CronJobs, init containers and startup probes end to end,
//! with real runc and real kubectl (as root; skipped otherwise).

mod common;
#[path = "common/image.rs"]
mod image;
#[path = "common/node.rs"]
mod node;

use std::collections::HashMap;
use std::time::Duration;

use node::{apply, poll};

fn skip() -> bool {
    match hoist_runtime::check_host() {
        Ok(_) => false,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            true
        }
    }
}

const APPLETS: &[&str] = &[
    "sh", "httpd", "cat", "sleep", "echo", "hostname", "touch", "test", "ls",
];

/// name → (uid, ready) of the pods labelled `app=<app>` (terminating ones included).
fn pods_of(cluster: &common::TestCluster, app: &str) -> HashMap<String, (String, bool, bool)> {
    let list = cluster.json(&["get", "pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                (
                    p["metadata"]["uid"].as_str().unwrap().to_string(),
                    ready,
                    p["metadata"].get("deletionTimestamp").is_some(),
                ),
            )
        })
        .collect()
}

const STATEFUL_SET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector:
    matchExpressions: [{key: app, operator: In, values: [web]}]
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: hoist.test/web:1
        imagePullPolicy: Never
        command: ["sh", "-c", "hostname >> /data/boots; echo $V > /tmp/v; exec httpd -f -p 80 -h /www"]
        env: [{name: V, value: "1"}]
        volumeMounts: [{name: data, mountPath: /data}]
        readinessProbe:
          tcpSocket: {port: 80}
          initialDelaySeconds: 1
          periodSeconds: 1
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

#[test]
fn stateful_set_orders_pods_keeps_their_claims_and_rolls_updates_in_reverse() {
    if skip() {
        return;
    }
    let (cluster, _kubelet, runc_root) = node::start(APPLETS);
    apply(&cluster, "sts", STATEFUL_SET);
    // OrderedReady: web-n appears only once web-0..n-1 are Ready.
    let mut seen_order: Vec<String> = Vec::new();
    poll(Duration::from_secs(60), "3 ready members", || {
        let pods = pods_of(&cluster, "web");
        for n in 1..3 {
            if pods.contains_key(&format!("web-{n}")) {
                for before in 0..n {
                    let p = &pods[&format!("web-{before}")];
                    assert!(
                        p.1,
                        "web-{n} exists while web-{before} is not ready: {pods:?}"
                    );
                }
            }
        }
        for name in pods.keys() {
            if !seen_order.contains(name) {
                seen_order.push(name.clone());
            }
        }
        (pods.len() == 3 && pods.values().all(|p| p.1)).then_some(())
    });
    assert_eq!(seen_order, ["web-0", "web-1", "web-2"]);
    let out = cluster.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );

    // Stable identity: hostname, subdomain, revision label, a bound claim per ordinal.
    assert_eq!(
        cluster.ok(&["exec", "web-1", "--", "hostname"]).trim(),
        "web-1"
    );
    let pod = cluster.json(&["get", "pod", "web-1"]);
    assert_eq!(pod["spec"]["subdomain"], "web");
    let sts = cluster.json(&["get", "sts", "web"]);
    let rev1 = sts["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        pod["metadata"]["labels"]["controller-revision-hash"],
        rev1.as_str()
    );
    assert_eq!(sts["status"]["currentRevision"], rev1.as_str());
    for (field, want) in [
        ("replicas", 3),
        ("readyReplicas", 3),
        ("currentReplicas", 3),
        ("updatedReplicas", 3),
        ("availableReplicas", 3),
    ] {
        assert_eq!(sts["status"][field], want, "{field}: {}", sts["status"]);
    }
    let pvcs = cluster.ok(&["get", "pvc", "--no-headers"]);
    for n in 0..3 {
        assert!(pvcs.contains(&format!("data-web-{n}")), "{pvcs}");
    }
    let pvc = cluster.json(&["get", "pvc", "data-web-0"]);
    assert_eq!(pvc["status"]["phase"], "Bound");
    assert!(cluster.ok(&["get", "controllerrevisions"]).contains(&rev1));

    // Scale down: web-2 is gone before web-1 starts terminating.
    cluster.ok(&["scale", "sts/web", "--replicas=1"]);
    poll(Duration::from_secs(30), "scale down to 1", || {
        let pods = pods_of(&cluster, "web");
        if pods.get("web-1").is_none_or(|p| p.2) {
            assert!(
                !pods.contains_key("web-2"),
                "web-1 goes while web-2 exists: {pods:?}"
            );
        }
        (pods.len() == 1 && pods.contains_key("web-0")).then_some(())
    });
    cluster.ok(&["scale", "sts/web", "--replicas=3"]);
    cluster.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    let before = pods_of(&cluster, "web");

    // Rolling update: web-2, then web-1, then web-0, each after the previous is ready.
    cluster.ok(&["set", "env", "sts/web", "V=2"]);
    let mut replaced: Vec<String> = Vec::new();
    poll(Duration::from_secs(90), "the rolling update", || {
        let pods = pods_of(&cluster, "web");
        for (name, p) in &pods {
            if !p.2 && p.0 != before[name].0 && !replaced.contains(name) {
                replaced.push(name.clone());
            }
        }
        (replaced.len() == 3 && pods.len() == 3 && pods.values().all(|p| p.1 && !p.2)).then_some(())
    });
    assert_eq!(replaced, ["web-2", "web-1", "web-0"]);
    let out = cluster.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(out.contains("3 new pods"), "{out}");
    let sts = cluster.json(&["get", "sts", "web"]);
    let rev2 = sts["status"]["updateRevision"].as_str().unwrap();
    assert_ne!(rev2, rev1);
    assert_eq!(sts["status"]["currentRevision"], rev2);
    assert_eq!(
        cluster.ok(&["exec", "web-0", "--", "cat", "/tmp/v"]).trim(),
        "2"
    );
    // web-0's claim outlived its pods: it was started three times (create, update...).
    let boots = cluster.ok(&["exec", "web-0", "--", "cat", "/data/boots"]);
    assert_eq!(
        boots.lines().collect::<Vec<_>>(),
        ["web-0", "web-0"],
        "{boots}"
    );
    let history = cluster.ok(&["rollout", "history", "sts/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let describe = cluster.ok(&["describe", "sts", "web"]);
    assert!(
        describe.contains("SuccessfulCreate")
            && describe.contains("create Pod web-2 in StatefulSet web successful"),
        "{describe}"
    );

    // Deleting the set removes its pods and containers; claims stay (Retain).
    cluster.ok(&["delete", "sts", "web", "--wait=true"]);
    poll(Duration::from_secs(30), "pods gone", || {
        pods_of(&cluster, "web").is_empty().then_some(())
    });
    poll(Duration::from_secs(10), "containers gone", || {
        node::runc_list(&runc_root).trim().is_empty().then_some(())
    });
    assert!(cluster.ok(&["get", "pvc"]).contains("data-web-0"));
}
