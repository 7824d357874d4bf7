//! StatefulSets, DaemonSets, CronJobs, init containers and startup probes end to end,
//! with real runc and real kubectl (as root; skipped otherwise).

mod common;
#[path = "common/image.rs"]
mod image;
#[path = "common/node.rs"]
mod node;

use std::collections::HashMap;
use std::time::Duration;

use node::{apply, poll, skip};

const APPLETS: &[&str] = &[
    "sh", "httpd", "cat", "sleep", "echo", "hostname", "touch", "test", "ls", "nc", "false",
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
    let row = cluster.ok(&["get", "pvc", "data-web-0", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[..4], ["data-web-0", "Bound", "1Gi", "RWO"], "{row}");
    let row = cluster.ok(&["get", "sts", "web", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(1), Some("3/3"), "{row}");
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

const INIT_WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: init-web}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: fetch
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 1; echo from-init > /site/index.html"]
    volumeMounts: [{name: site, mountPath: /site}]
  - name: second
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sh", "-c", "test -f /site/index.html && echo second >> /site/index.html"]
    volumeMounts: [{name: site, mountPath: /site}]
  containers:
  - name: web
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["httpd", "-f", "-p", "80", "-h", "/site"]
    volumeMounts: [{name: site, mountPath: /site}]
  volumes: [{name: site, emptyDir: {}}]
---
apiVersion: v1
kind: Pod
metadata: {name: with-sidecar}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: proxy
    image: hoist.test/web:1
    imagePullPolicy: Never
    restartPolicy: Always
    command: ["sh", "-c", "sleep 1; echo up > /shared/proxy; exec sleep 600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
    startupProbe:
      exec: {command: ["test", "-f", "/shared/proxy"]}
      periodSeconds: 1
  containers:
  - name: app
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sh", "-c", "cat /shared/proxy; exec sleep 600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  volumes: [{name: shared, emptyDir: {}}]
---
apiVersion: v1
kind: Pod
metadata: {name: task-with-sidecar}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: helper, image: "hoist.test/web:1", imagePullPolicy: Never, restartPolicy: Always, command: ["sleep", "600"]}
  containers:
  - {name: task, image: "hoist.test/web:1", imagePullPolicy: Never, command: ["echo", "done"]}
"#;

const INIT_FAILS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: init-fails}
spec:
  restartPolicy: Never
  initContainers:
  - {name: migrate, image: "hoist.test/web:1", imagePullPolicy: Never, command: ["sh", "-c", "echo no database; exit 7"]}
  containers:
  - {name: app, image: "hoist.test/web:1", imagePullPolicy: Never, command: ["sleep", "60"]}
---
apiVersion: v1
kind: Pod
metadata: {name: init-loops}
spec:
  initContainers:
  - {name: wait, image: "hoist.test/web:1", imagePullPolicy: Never, command: ["false"]}
  containers:
  - {name: app, image: "hoist.test/web:1", imagePullPolicy: Never, command: ["sleep", "60"]}
"#;

fn pod_status_column(cluster: &common::TestCluster, pod: &str) -> String {
    let row = cluster.ok(&["get", "pod", pod, "--no-headers"]);
    row.split_whitespace().nth(2).unwrap_or("").to_string()
}

#[test]
fn init_containers_run_in_order_before_the_app_and_failures_show() {
    if skip() {
        return;
    }
    let (cluster, _kubelet, _runc) = node::start(APPLETS);
    apply(&cluster, "init-web", INIT_WEB);
    // While `fetch` runs (it sleeps a second), kubectl shows Init:0/2.
    let early = poll(Duration::from_secs(20), "the init status column", || {
        let s = pod_status_column(&cluster, "init-web");
        s.starts_with("Init:").then_some(s)
    });
    assert!(early == "Init:0/2" || early == "Init:1/2", "{early}");
    let pod = poll(Duration::from_secs(30), "init-web ready", || {
        let p = cluster.json(&["get", "pod", "init-web"]);
        (p.pointer("/status/containerStatuses/0/ready") == Some(&serde_json::json!(true)))
            .then_some(p)
    });
    let inits = pod["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    for (c, name) in inits.iter().zip(["fetch", "second"]) {
        assert_eq!(c["name"], name);
        assert_eq!(c["state"]["terminated"]["exitCode"], 0, "{c}");
        assert_eq!(c["state"]["terminated"]["reason"], "Completed", "{c}");
        // `second` succeeded at its first start: it ran after `fetch` finished.
        assert_eq!(c["restartCount"], 0, "{c}");
    }
    let initialized = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .unwrap();
    assert_eq!(initialized["status"], "True");
    assert_eq!(pod_status_column(&cluster, "init-web"), "Running");
    // The app serves what the init containers wrote.
    let page = cluster.ok(&[
        "exec",
        "init-web",
        "--",
        "sh",
        "-c",
        "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 80",
    ]);
    assert!(
        page.contains("200 OK") && page.contains("from-init\nsecond\n"),
        "{page}"
    );

    // A sidecar (an init container with restartPolicy Always) starts first and keeps
    // running next to the app, which starts once the sidecar's startup probe passed.
    let pod = poll(Duration::from_secs(30), "with-sidecar ready", || {
        let p = cluster.json(&["get", "pod", "with-sidecar"]);
        (p.pointer("/status/containerStatuses/0/ready") == Some(&serde_json::json!(true)))
            .then_some(p)
    });
    let sidecar = &pod["status"]["initContainerStatuses"][0];
    assert!(sidecar["state"]["running"].is_object(), "{sidecar}");
    assert_eq!(sidecar["started"], true);
    assert_eq!(
        cluster.ok(&["logs", "with-sidecar", "-c", "app"]).trim(),
        "up"
    );
    let row = cluster.ok(&["get", "pod", "with-sidecar", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..3], ["2/2", "Running"], "{row}");
    // When the pod's containers are done, its sidecar is stopped and the pod completes.
    let task = poll(
        Duration::from_secs(30),
        "task-with-sidecar Succeeded",
        || {
            let p = cluster.json(&["get", "pod", "task-with-sidecar"]);
            (p["status"]["phase"] == "Succeeded").then_some(p)
        },
    );
    let helper = &task["status"]["initContainerStatuses"][0];
    assert!(helper["state"]["terminated"].is_object(), "{helper}");

    // A failing init container: the pod fails (restartPolicy Never) or loops (Always).
    apply(&cluster, "init-fails", INIT_FAILS);
    poll(Duration::from_secs(30), "Init:Error", || {
        (pod_status_column(&cluster, "init-fails") == "Init:Error").then_some(())
    });
    let pod = cluster.json(&["get", "pod", "init-fails"]);
    assert_eq!(pod["status"]["phase"], "Failed");
    assert_eq!(
        pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        7
    );
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    let describe = cluster.ok(&["describe", "pod", "init-fails"]);
    assert!(
        describe.contains("Init Containers:") && describe.contains("Exit Code:    7"),
        "{describe}"
    );
    assert!(
        describe.contains("Initialized                 False")
            || describe.contains("Initialized       False")
            || describe
                .lines()
                .any(|l| l.trim_start().starts_with("Initialized")
                    && l.trim_end().ends_with("False")),
        "{describe}"
    );
    assert_eq!(
        cluster.ok(&["logs", "init-fails", "-c", "migrate"]).trim(),
        "no database"
    );
    poll(Duration::from_secs(30), "Init:CrashLoopBackOff", || {
        (pod_status_column(&cluster, "init-loops") == "Init:CrashLoopBackOff").then_some(())
    });
    let events = cluster.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=init-loops",
    ]);
    assert!(events.contains("BackOff"), "{events}");
}

const STARTUP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: slow-start}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 2; touch /tmp/started; exec sleep 600"]
    startupProbe:
      exec: {command: ["test", "-f", "/tmp/started"]}
      periodSeconds: 1
      failureThreshold: 10
    # Would kill the container at once if it ran before the startup probe passed.
    livenessProbe:
      exec: {command: ["test", "-f", "/tmp/started"]}
      periodSeconds: 1
      failureThreshold: 1
    readinessProbe:
      exec: {command: ["test", "-f", "/tmp/started"]}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: never-starts}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sleep", "600"]
    startupProbe:
      exec: {command: ["test", "-f", "/tmp/never"]}
      periodSeconds: 1
      failureThreshold: 2
"#;

#[test]
fn startup_probes_gate_liveness_and_kill_containers_that_never_start() {
    if skip() {
        return;
    }
    let (cluster, _kubelet, _runc) = node::start(APPLETS);
    apply(&cluster, "startup", STARTUP);
    // Before its startup probe passes, the container runs but is neither started nor ready.
    let early = poll(Duration::from_secs(20), "slow-start running", || {
        let p = cluster.json(&["get", "pod", "slow-start"]);
        p.pointer("/status/containerStatuses/0/state/running")
            .is_some()
            .then_some(p)
    });
    assert_eq!(
        early["status"]["containerStatuses"][0]["started"], false,
        "{early}"
    );
    assert_eq!(early["status"]["containerStatuses"][0]["ready"], false);
    let pod = poll(Duration::from_secs(30), "slow-start ready", || {
        let p = cluster.json(&["get", "pod", "slow-start"]);
        (p.pointer("/status/containerStatuses/0/ready") == Some(&serde_json::json!(true)))
            .then_some(p)
    });
    let c = &pod["status"]["containerStatuses"][0];
    assert_eq!(c["started"], true);
    assert_eq!(
        c["restartCount"], 0,
        "liveness ran before startup passed: {c}"
    );

    // failureThreshold failures before the first success: killed and restarted.
    let pod = poll(Duration::from_secs(30), "never-starts restarted", || {
        let p = cluster.json(&["get", "pod", "never-starts"]);
        (p.pointer("/status/containerStatuses/0/restartCount")
            .and_then(serde_json::Value::as_i64)
            >= Some(1))
        .then_some(p)
    });
    assert_eq!(pod["status"]["containerStatuses"][0]["started"], false);
    let describe = cluster.ok(&["describe", "pod", "never-starts"]);
    assert!(describe.contains("Startup probe failed"), "{describe}");
    assert!(
        describe.contains("failed startup probe, will be restarted"),
        "{describe}"
    );
}

const DAEMON_SET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector:
    matchLabels: {app: agent}
    matchExpressions: [{key: tier, operator: NotIn, values: [canary]}]
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: agent
        image: hoist.test/web:1
        imagePullPolicy: Never
        command: ["sh", "-c", "echo $V > /tmp/v; exec sleep 600"]
        env: [{name: V, value: "1"}]
        # Ready a second after start: the surge overlap below is long enough to observe.
        readinessProbe:
          exec: {command: ["test", "-f", "/tmp/v"]}
          initialDelaySeconds: 1
          periodSeconds: 1
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: gpu}
spec:
  selector: {matchLabels: {app: gpu}}
  template:
    metadata: {labels: {app: gpu}}
    spec:
      nodeSelector: {accelerator: gpu}
      containers:
      - {name: gpu, image: "hoist.test/web:1", imagePullPolicy: Never, command: ["sleep", "600"]}
"#;

#[test]
fn daemon_set_runs_one_pod_on_the_node_and_rolls_updates() {
    if skip() {
        return;
    }
    let (cluster, _kubelet, runc_root) = node::start(APPLETS);
    apply(&cluster, "ds", DAEMON_SET);
    let out = cluster.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
    let pods = pods_of(&cluster, "agent");
    assert_eq!(pods.len(), 1, "{pods:?}");
    let first = pods.into_keys().next().unwrap();
    let pod = cluster.json(&["get", "pod", &first]);
    assert_eq!(pod["spec"]["nodeName"], "hoist");
    let ds = cluster.json(&["get", "ds", "agent"]);
    for (field, want) in [
        ("desiredNumberScheduled", 1),
        ("currentNumberScheduled", 1),
        ("numberReady", 1),
        ("numberAvailable", 1),
        ("updatedNumberScheduled", 1),
        ("numberMisscheduled", 0),
    ] {
        assert_eq!(ds["status"][field], want, "{field}: {}", ds["status"]);
    }
    let row = cluster.ok(&["get", "ds", "agent", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols[..7],
        ["agent", "1", "1", "1", "1", "1", "<none>"],
        "{row}"
    );
    // No node has the label the second set asks for: nothing to run.
    let gpu = poll(Duration::from_secs(20), "gpu status", || {
        let d = cluster.json(&["get", "ds", "gpu"]);
        d["status"]
            .get("desiredNumberScheduled")
            .is_some()
            .then_some(d)
    });
    assert_eq!(gpu["status"]["desiredNumberScheduled"], 0);
    assert!(pods_of(&cluster, "gpu").is_empty());

    // Relabelled out of the selector (matchExpressions: tier NotIn [canary]), the pod is
    // released (no longer owned) and the set starts another one.
    cluster.ok(&["label", "pod", &first, "tier=canary"]);
    let released = poll(Duration::from_secs(20), "the pod released", || {
        let p = cluster.json(&["get", "pod", &first]);
        p["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty())
            .then_some(p)
    });
    assert_eq!(released["metadata"]["labels"]["tier"], "canary");
    poll(
        Duration::from_secs(30),
        "a pod replacing the released one",
        || {
            pods_of(&cluster, "agent")
                .iter()
                .any(|(n, p)| *n != first && p.1)
                .then_some(())
        },
    );
    // Back in the selector, the orphan is adopted again and the extra pod removed.
    cluster.ok(&["label", "pod", &first, "tier-"]);
    poll(Duration::from_secs(30), "one pod again", || {
        let pods = pods_of(&cluster, "agent");
        (pods.values().filter(|p| !p.2).count() == 1).then_some(())
    });
    let first = pods_of(&cluster, "agent")
        .into_iter()
        .find(|(_, p)| !p.2)
        .unwrap()
        .0;
    let uid1 = pods_of(&cluster, "agent")[&first].0.clone();
    // A deleted daemon pod comes back.
    cluster.ok(&["delete", "pod", &first, "--wait=true"]);
    let (second, uid2) = poll(Duration::from_secs(30), "a replacement pod", || {
        pods_of(&cluster, "agent")
            .into_iter()
            .find(|(_, p)| p.0 != uid1 && p.1)
            .map(|(n, p)| (n, p.0))
    });
    // Rolling update: the pod is replaced by one of the new revision.
    cluster.ok(&["set", "env", "ds/agent", "V=2"]);
    let out = cluster.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = poll(Duration::from_secs(30), "one updated pod", || {
        let pods = pods_of(&cluster, "agent");
        (pods.len() == 1 && pods.values().all(|p| p.0 != uid2 && p.1)).then_some(pods)
    });
    let name = pods.keys().next().unwrap();
    assert_ne!(name, &second);
    assert_eq!(
        cluster.ok(&["exec", name, "--", "cat", "/tmp/v"]).trim(),
        "2"
    );
    // maxSurge 1 / maxUnavailable 0: the new pod starts next to the old one, which goes
    // once the new one is ready — never without a ready pod.
    cluster.ok(&[
        "patch",
        "ds",
        "agent",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#,
    ]);
    let before = pods_of(&cluster, "agent");
    cluster.ok(&["set", "env", "ds/agent", "V=3"]);
    let mut most = 0;
    poll(Duration::from_secs(40), "the surge update", || {
        let pods = pods_of(&cluster, "agent");
        let live: Vec<_> = pods.values().filter(|p| !p.2).collect();
        assert!(
            live.iter().any(|p| p.1),
            "no ready pod during a surge update: {pods:?}"
        );
        most = most.max(live.len());
        (live.len() == 1 && !before.values().any(|b| b.0 == live[0].0) && live[0].1).then_some(())
    });
    assert_eq!(most, 2, "the new pod never ran next to the old one");
    let history = cluster.ok(&["rollout", "history", "ds/agent"]);
    assert!(history.contains('2'), "{history}");
    let describe = cluster.ok(&["describe", "ds", "agent"]);
    assert!(
        describe.contains("SuccessfulCreate") && describe.contains("Created pod: "),
        "{describe}"
    );

    cluster.ok(&["delete", "ds", "agent", "gpu", "--wait=true"]);
    poll(Duration::from_secs(30), "containers gone", || {
        (pods_of(&cluster, "agent").is_empty() && node::runc_list(&runc_root).trim().is_empty())
            .then_some(())
    });
}

const CRON_JOB: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "0 0 1 1 *"
  successfulJobsHistoryLimit: 2
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - {name: tick, image: "hoist.test/web:1", imagePullPolicy: Never, command: ["sh", "-c", "echo tick"]}
"#;

#[test]
fn cron_job_runs_jobs_created_from_it_and_keeps_its_history_short() {
    if skip() {
        return;
    }
    let (cluster, _kubelet, _runc) = node::start(APPLETS);
    apply(&cluster, "cj", CRON_JOB);
    let cj = cluster.json(&["get", "cronjob", "tick"]);
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
    // A bad schedule is refused when applied.
    let bad = cluster.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        CRON_JOB
            .replace("0 0 1 1 *", "0 0 1 13 *")
            .replace("name: tick}", "name: bad}"),
    )
    .unwrap();
    let err = cluster.fails(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(
        err.contains("spec.schedule") && err.contains("month: value 13 out of range"),
        "{err}"
    );

    for run in ["run1", "run2", "run3"] {
        cluster.ok(&["create", "job", run, "--from=cronjob/tick"]);
        cluster.ok(&[
            "wait",
            "--for=condition=complete",
            &format!("job/{run}"),
            "--timeout=60s",
        ]);
    }
    let job = cluster.json(&["get", "job", "run3"]);
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(cluster.ok(&["logs", "job/run3"]).trim(), "tick");
    // successfulJobsHistoryLimit 2: the oldest finished job goes, with its pods.
    poll(Duration::from_secs(30), "run1 removed", || {
        let jobs = cluster.ok(&["get", "jobs", "--no-headers"]);
        (!jobs.contains("run1") && jobs.contains("run2") && jobs.contains("run3")).then_some(())
    });
    poll(Duration::from_secs(30), "run1's pod removed", || {
        let pods = cluster.ok(&["get", "pods", "-l", "job-name=run1", "--no-headers"]);
        pods.trim().is_empty().then_some(())
    });
    let cj = poll(Duration::from_secs(20), "lastSuccessfulTime", || {
        let cj = cluster.json(&["get", "cronjob", "tick"]);
        cj["status"]
            .get("lastSuccessfulTime")
            .is_some()
            .then_some(cj)
    });
    assert!(cj["status"].get("active").is_none(), "{}", cj["status"]);
    let row = cluster.ok(&["get", "cronjob", "tick", "--no-headers"]);
    assert!(
        row.starts_with("tick") && row.contains("0 0 1 1 *") && row.contains("False"),
        "{row}"
    );
    let describe = cluster.ok(&["describe", "cronjob", "tick"]);
    assert!(describe.contains("Deleted job run1"), "{describe}");
    assert!(describe.contains("Saw completed job"), "{describe}");
}

const PARALLEL_SET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: par}
spec:
  serviceName: par
  replicas: 3
  podManagementPolicy: Parallel
  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 2}}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Delete}
  volumeClaimTemplates:
  - metadata: {name: scratch}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Mi}}}
  selector: {matchLabels: {app: par}}
  template:
    metadata: {labels: {app: par}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: hoist.test/web:1
        imagePullPolicy: Never
        command: ["sleep", "600"]
        env: [{name: V, value: "1"}]
        readinessProbe:
          exec: {command: ["test", "-d", "/"]}
          initialDelaySeconds: 2
          periodSeconds: 1
"#;

fn revision_of(cluster: &common::TestCluster, pod: &str) -> String {
    let p = cluster.json(&["get", "pod", pod]);
    p["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn stateful_set_parallel_partitioned_and_on_delete_updates() {
    if skip() {
        return;
    }
    let (cluster, _kubelet, _runc) = node::start(APPLETS);
    apply(&cluster, "par", PARALLEL_SET);
    // Parallel: all three exist before any is ready (readiness takes 2 s).
    let pods = poll(Duration::from_secs(20), "three pods", || {
        let pods = pods_of(&cluster, "par");
        (pods.len() == 3).then_some(pods)
    });
    assert!(pods.values().any(|p| !p.1), "all ready already: {pods:?}");
    cluster.ok(&["rollout", "status", "sts/par", "--timeout=60s"]);
    let old = revision_of(&cluster, "par-0");
    // Each ordinal's claim is a directory on the node.
    let claims_dir = cluster.dir.path().join("kubelet/claims");
    assert_eq!(std::fs::read_dir(&claims_dir).unwrap().count(), 3);

    // partition 2: only ordinals >= 2 move to the new revision.
    cluster.ok(&["set", "env", "sts/par", "V=2"]);
    let out = cluster.ok(&["rollout", "status", "sts/par", "--timeout=60s"]);
    assert!(
        out.contains("partitioned roll out complete: 1 new pods have been updated"),
        "{out}"
    );
    let sts = cluster.json(&["get", "sts", "par"]);
    let new = sts["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    assert_eq!(revision_of(&cluster, "par-2"), new);
    assert_eq!(revision_of(&cluster, "par-1"), old);
    assert_eq!(revision_of(&cluster, "par-0"), old);
    assert_eq!(sts["status"]["currentRevision"], old.as_str());
    assert_eq!(sts["status"]["updatedReplicas"], 1);
    assert_eq!(sts["status"]["currentReplicas"], 2);
    // Dropping the partition finishes the update; the revision becomes current.
    cluster.ok(&[
        "patch",
        "sts",
        "par",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    poll(Duration::from_secs(60), "all pods updated", || {
        let sts = cluster.json(&["get", "sts", "par"]);
        (sts["status"]["currentRevision"] == new.as_str()
            && sts["status"]["updatedReplicas"] == 3
            && sts["status"]["readyReplicas"] == 3)
            .then_some(())
    });
    for n in 0..3 {
        assert_eq!(revision_of(&cluster, &format!("par-{n}")), new);
    }

    // OnDelete: a template change replaces nothing until a pod is deleted.
    cluster.ok(&[
        "patch",
        "sts",
        "par",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}"#,
    ]);
    cluster.ok(&["set", "env", "sts/par", "V=3"]);
    let third = poll(Duration::from_secs(20), "a third revision", || {
        let sts = cluster.json(&["get", "sts", "par"]);
        let rev = sts["status"]["updateRevision"].as_str()?.to_string();
        (rev != new).then_some(rev)
    });
    std::thread::sleep(Duration::from_secs(2));
    for n in 0..3 {
        assert_eq!(
            revision_of(&cluster, &format!("par-{n}")),
            new,
            "par-{n} replaced under OnDelete"
        );
    }
    cluster.ok(&["delete", "pod", "par-1", "--wait=true"]);
    poll(
        Duration::from_secs(30),
        "par-1 back at the new revision",
        || {
            let pods = pods_of(&cluster, "par");
            (pods.get("par-1").is_some_and(|p| p.1) && revision_of(&cluster, "par-1") == third)
                .then_some(())
        },
    );
    assert_eq!(revision_of(&cluster, "par-0"), new);

    // `kubectl rollout undo` applies the previous ControllerRevision's template.
    let out = cluster.ok(&["rollout", "undo", "sts/par"]);
    assert!(out.contains("rolled back"), "{out}");
    let sts = poll(Duration::from_secs(20), "the undo observed", || {
        let sts = cluster.json(&["get", "sts", "par"]);
        (sts["status"]["updateRevision"] == new.as_str()).then_some(sts)
    });
    let env = &sts["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["value"], "2", "{env}");

    // Claim retention Delete: scaled-away ordinals lose their claims, then the rest go
    // with the set.
    cluster.ok(&["scale", "sts/par", "--replicas=1"]);
    poll(
        Duration::from_secs(30),
        "claims of par-1 and par-2 removed",
        || {
            let pvcs = cluster.ok(&["get", "pvc", "--no-headers"]);
            (pvcs.contains("scratch-par-0")
                && !pvcs.contains("scratch-par-1")
                && !pvcs.contains("scratch-par-2"))
            .then_some(())
        },
    );
    cluster.ok(&["delete", "sts", "par"]);
    poll(Duration::from_secs(30), "every claim removed", || {
        cluster
            .ok(&["get", "pvc", "--no-headers"])
            .trim()
            .is_empty()
            .then_some(())
    });
    // ...and their directories on the node.
    poll(Duration::from_secs(20), "claim directories removed", || {
        std::fs::read_dir(&claims_dir)
            .map_or(true, |mut d| d.next().is_none())
            .then_some(())
    });
}

const EXPRESSION_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: expr}
spec:
  replicas: 2
  selector:
    matchExpressions:
    - {key: app, operator: In, values: [expr]}
    - {key: debug, operator: DoesNotExist}
  template:
    metadata: {labels: {app: expr}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: app, image: "hoist.test/web:1", imagePullPolicy: Never, command: ["sleep", "600"]}
"#;

#[test]
fn deployments_select_pods_by_match_expressions() {
    if skip() {
        return;
    }
    let (cluster, _kubelet, _runc) = node::start(APPLETS);
    apply(&cluster, "expr", EXPRESSION_DEPLOYMENT);
    cluster.ok(&["rollout", "status", "deploy/expr", "--timeout=60s"]);
    let pods = pods_of(&cluster, "expr");
    assert_eq!(pods.len(), 2, "{pods:?}");
    // Taking a pod out of the selector (debug=1 fails DoesNotExist) releases it for
    // debugging; the ReplicaSet starts a replacement.
    let taken = pods.keys().next().unwrap().clone();
    cluster.ok(&["label", "pod", &taken, "debug=1"]);
    poll(
        Duration::from_secs(30),
        "a replacement and the released pod",
        || {
            let pods = pods_of(&cluster, "expr");
            let live = pods.values().filter(|p| !p.2 && p.1).count();
            (live == 3).then_some(())
        },
    );
    let released = cluster.json(&["get", "pod", &taken]);
    assert!(
        released["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{}",
        released["metadata"]
    );
    let rs = cluster.json(&["get", "rs", "-l", "app=expr"]);
    assert_eq!(rs["items"][0]["status"]["readyReplicas"], 2);
    // A selector that does not select the template is refused.
    let bad = cluster.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        EXPRESSION_DEPLOYMENT.replace("values: [expr]", "values: [other]"),
    )
    .unwrap();
    let err = cluster.fails(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
}
