//! Readiness: the pure verdicts on status fixtures (shaped like real API objects), and
//! the watch loop against the real embedded cluster (pods do not run there yet, so a
//! Deployment is the not-ready case and its report is checked).

mod common;

use std::time::{Duration, Instant};

use hoist_kube::readiness::{self, Readiness, WaitTarget, evaluate};
use hoist_kube::{ApplySet, Desired, PruneScope};
use serde_json::{Value, json};

fn deployment(generation: i64, status: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "generation": generation},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": status})
}

fn progressing(r: &Readiness) -> &str {
    match r {
        Readiness::Progressing(s) => s,
        other => panic!("expected progressing, got {other:?}"),
    }
}

#[test]
fn deployment_like_rollout_status() {
    let ready = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 3});
    assert_eq!(evaluate(&deployment(2, ready.clone())), Readiness::Ready);
    // Spec change not yet seen by the controller.
    assert_eq!(
        progressing(&evaluate(&deployment(3, ready))),
        "waiting for deployment spec update to be observed"
    );
    let r = evaluate(&deployment(
        2,
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 3}),
    ));
    assert_eq!(progressing(&r), "1 out of 3 new replicas have been updated");
    let r = evaluate(&deployment(
        2,
        json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
    ));
    assert_eq!(progressing(&r), "1 old replicas are pending termination");
    let r = evaluate(&deployment(
        2,
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
    ));
    assert_eq!(progressing(&r), "2 of 3 updated replicas are available");
    // No status at all (fresh object, or no controller).
    assert_eq!(
        progressing(&evaluate(&deployment(1, json!({})))),
        "waiting for deployment spec update to be observed (no status yet: is the cluster's controller for it running?)"
    );
    let stalled = deployment(
        2,
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 0,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-1\" has timed out progressing."}]}),
    );
    assert!(matches!(evaluate(&stalled), Readiness::Failed(m) if m.contains("progress deadline")));
    // Default replicas is 1.
    let mut one = deployment(
        1,
        json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}),
    );
    one["spec"].as_object_mut().unwrap().remove("replicas");
    assert!(evaluate(&one).is_ready());
}

#[test]
fn statefulset_and_daemonset() {
    let sts = |status: Value, strategy: Value| json!({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 2, "updateStrategy": strategy}, "status": status});
    let rolling = json!({"type": "RollingUpdate"});
    assert!(evaluate(&sts(json!({"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2, "currentRevision": "a", "updateRevision": "a"}), rolling.clone())).is_ready());
    assert_eq!(
        progressing(&evaluate(&sts(
            json!({"observedGeneration": 1, "readyReplicas": 1}),
            rolling.clone()
        ))),
        "1 of 2 pods are ready"
    );
    assert!(!evaluate(&sts(json!({"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 1, "currentRevision": "a", "updateRevision": "b"}), rolling)).is_ready());
    let partitioned = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}});
    assert!(evaluate(&sts(json!({"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 1, "currentRevision": "a", "updateRevision": "b"}), partitioned)).is_ready());
    assert!(evaluate(&sts(json!({"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "b"}), json!({"type": "OnDelete"}))).is_ready());

    let ds = |status: Value| json!({"kind": "DaemonSet", "metadata": {"generation": 4}, "status": status});
    assert!(evaluate(&ds(json!({"observedGeneration": 4, "desiredNumberScheduled": 1, "updatedNumberScheduled": 1, "numberAvailable": 1}))).is_ready());
    assert_eq!(
        progressing(&evaluate(&ds(
            json!({"observedGeneration": 4, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 1})
        ))),
        "1 of 2 updated pods are available"
    );
    assert!(
        !evaluate(&ds(
            json!({"observedGeneration": 3, "desiredNumberScheduled": 0})
        ))
        .is_ready()
    );
}

#[test]
fn jobs_complete_or_fail() {
    let job = |status: Value| json!({"kind": "Job", "metadata": {"name": "migrate"}, "spec": {"completions": 1}, "status": status});
    assert!(
        evaluate(&job(
            json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
        ))
        .is_ready()
    );
    assert_eq!(
        progressing(&evaluate(&job(json!({"active": 1})))),
        "0 of 1 completions, 1 active, 0 failed"
    );
    let failed = job(json!({"failed": 7, "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}));
    assert_eq!(
        evaluate(&failed),
        Readiness::Failed(
            "job failed: BackoffLimitExceeded: Job has reached the specified backoff limit".into()
        )
    );
    assert_eq!(
        readiness::unhealthy_conditions(&failed),
        [
            "FailureTarget=True (BackoffLimitExceeded)",
            "Failed=True (BackoffLimitExceeded): Job has reached the specified backoff limit"
        ]
    );
    // A "Complete=False" condition is not completion.
    assert!(
        !evaluate(&job(
            json!({"conditions": [{"type": "Complete", "status": "False"}]})
        ))
        .is_ready()
    );
}

#[test]
fn pods_ready_crashing_failed() {
    let ready = json!({"kind": "Pod", "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    assert!(evaluate(&ready).is_ready());
    let crashing = json!({"kind": "Pod", "status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}});
    assert_eq!(
        progressing(&evaluate(&crashing)),
        "container web: CrashLoopBackOff: back-off 40s restarting failed container (last run terminated with exit code 3 (Error))"
    );
    let failed = json!({"kind": "Pod", "status": {"phase": "Failed",
        "containerStatuses": [{"name": "job", "ready": false, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}});
    assert_eq!(
        evaluate(&failed),
        Readiness::Failed(
            "pod failed: container job: terminated with exit code 137 (OOMKilled)".into()
        )
    );
    let pulling = json!({"kind": "Pod", "status": {"phase": "Pending",
        "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
    assert_eq!(
        progressing(&evaluate(&pulling)),
        "container app: ImagePullBackOff"
    );
    assert_eq!(
        progressing(&evaluate(&json!({"kind": "Pod"}))),
        "pod is Pending"
    );
}

#[test]
fn other_kinds_are_ready_when_they_exist() {
    assert!(evaluate(&json!({"kind": "ConfigMap"})).is_ready());
    assert!(evaluate(&json!({"kind": "Widget", "status": {"phase": "Broken"}})).is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_the_embedded_cluster() {
    let c = common::Cluster::start().await;
    let (target, client) = c.target("shop", "ann").await;
    let mut set = ApplySet::new(client.clone(), &target);
    let report = set
        .apply(
            vec![Desired {
                service: "web".into(),
                object: json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                             "template": {"metadata": {"labels": {"app": "web"}},
                                          "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}}}}),
            }],
            PruneScope::All,
        )
        .await
        .unwrap();
    let deploy: Vec<WaitTarget> = report.applied.iter().map(WaitTarget::from).collect();

    // Not ready at the deadline: the report names the object and why; the deadline holds.
    let started = Instant::now();
    let err = readiness::wait_ready(&client, &deploy, Duration::from_millis(800))
        .await
        .expect_err("pods do not run on the embedded cluster yet");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(err.objects.len(), 1);
    let o = &err.objects[0];
    assert_eq!(o.key.to_string(), "Deployment/web in namespace shop-ann");
    assert!(!o.failed);
    let text = err.to_string();
    assert!(
        text.starts_with("Deployment/web in namespace shop-ann is not ready: "),
        "{text}"
    );
    assert!(
        o.reason.contains("replicas") || o.reason.contains("observed"),
        "{}",
        o.reason
    );

    // A watch wakes up when the object appears: a ConfigMap created while waiting.
    let cm_resource =
        kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
    let later = hoist_kube::ObjectKey {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("shop-ann".into()),
        name: "later".into(),
    };
    let targets = vec![WaitTarget {
        key: later.clone(),
        resource: cm_resource.clone(),
    }];
    let creator = {
        let kubeconfig = c.kubeconfig.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let out = tokio::process::Command::new("kubectl")
                .env("KUBECONFIG", kubeconfig)
                .args(["create", "configmap", "later", "-n", "shop-ann"])
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
    };
    let started = Instant::now();
    readiness::wait_ready(&client, &targets, Duration::from_secs(20))
        .await
        .expect("ready once it exists");
    assert!(started.elapsed() < Duration::from_secs(10));
    creator.await.unwrap();

    // A missing object is reported as such.
    let missing = vec![WaitTarget {
        key: hoist_kube::ObjectKey {
            name: "never".into(),
            ..later
        },
        resource: cm_resource,
    }];
    let err = readiness::wait_ready(&client, &missing, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ConfigMap/never in namespace shop-ann is not ready: does not exist\n"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_ends_the_wait_early_with_its_events() {
    let c = common::Cluster::start().await;
    let (target, client) = c.target("shop", "ann").await;
    let mut set = ApplySet::new(client.clone(), &target);
    let report = set
        .apply(
            vec![Desired {
                service: "migrate".into(),
                object: json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
                    "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "migrate", "image": "example.invalid/migrate:1"}]}}}}),
            }],
            PruneScope::All,
        )
        .await
        .unwrap();
    let targets: Vec<WaitTarget> = report.applied.iter().map(WaitTarget::from).collect();
    let event = c.dir.path().join("event.json");
    std::fs::write(
        &event,
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "migrate.1", "namespace": "shop-ann"},
               "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": "migrate", "namespace": "shop-ann"},
               "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit",
               "type": "Warning", "lastTimestamp": "2026-11-23T21:00:00Z"})
        .to_string(),
    )
    .unwrap();
    // The Job fails while we wait (status written as the job controller would).
    let kubeconfig = c.kubeconfig.clone();
    let failer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for args in [
            vec!["apply", "-f", event.to_str().unwrap()],
            vec![
                "patch",
                "job",
                "migrate",
                "-n",
                "shop-ann",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"failed":1,"conditions":[{"type":"Failed","status":"True","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit"}]}}"#,
            ],
        ] {
            let out = tokio::process::Command::new("kubectl")
                .env("KUBECONFIG", &kubeconfig)
                .args(&args)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    let started = Instant::now();
    let err = readiness::wait_ready(&client, &targets, Duration::from_secs(30))
        .await
        .expect_err("the job failed");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a failed Job must not wait for the deadline"
    );
    failer.await.unwrap();
    let o = &err.objects[0];
    assert!(o.failed);
    assert_eq!(
        o.reason,
        "job failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
    );
    assert_eq!(
        o.events,
        ["BackoffLimitExceeded: Job has reached the specified backoff limit"]
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "Job/migrate in namespace shop-ann failed: job failed: BackoffLimitExceeded"
        ),
        "{text}"
    );
    assert!(text.contains("\n  condition Failed=True (BackoffLimitExceeded): Job has reached the specified backoff limit\n"), "{text}");
    assert!(
        text.contains(
            "\n  event BackoffLimitExceeded: Job has reached the specified backoff limit\n"
        ),
        "{text}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployments_report_names_its_crashing_pods() {
    let c = common::Cluster::start().await;
    let (target, client) = c.target("shop", "ann").await;
    let mut set = ApplySet::new(client.clone(), &target);
    let labels = json!({"app": "web"});
    let report = set
        .apply(
            vec![Desired {
                service: "web".into(),
                object: json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                    "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                             "template": {"metadata": {"labels": labels},
                                          "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}}}}),
            }],
            PruneScope::All,
        )
        .await
        .unwrap();
    // A pod of that Deployment, crash-looping (status written as a kubelet would).
    let pod = c.dir.path().join("pod.json");
    std::fs::write(
        &pod,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-abc12", "namespace": "shop-ann", "labels": labels},
               "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}})
        .to_string(),
    )
    .unwrap();
    c.kubectl(&["apply", "-f", pod.to_str().unwrap()]);
    c.kubectl(&[
        "patch",
        "pod",
        "web-abc12",
        "-n",
        "shop-ann",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","containerStatuses":[{"name":"web","ready":false,"restartCount":5,"image":"example.invalid/web:1","imageID":"","state":{"waiting":{"reason":"CrashLoopBackOff","message":"back-off 1m20s"}},"lastState":{"terminated":{"exitCode":2,"reason":"Error"}}}]}}"#,
    ]);
    let targets: Vec<WaitTarget> = report.applied.iter().map(WaitTarget::from).collect();
    let err = readiness::wait_ready(&client, &targets, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(
        err.objects[0].containers,
        [
            "pod web-abc12: container web: CrashLoopBackOff: back-off 1m20s (last run terminated with exit code 2 (Error))"
        ]
    );
    assert!(
        err.to_string()
            .contains("\n  pod web-abc12: container web: CrashLoopBackOff"),
        "{err}"
    );
    c.stop().await;
}
