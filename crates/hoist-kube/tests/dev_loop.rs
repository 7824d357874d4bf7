//! The dev loop's pod-level parts against the real embedded cluster with real runc (as
//! root; skipped otherwise): port-forward across a pod replacement, log streaming from
//! several pods including a new one, and live update over both transports (exec + tar,
//! and direct writes into the container), run steps, NoTar and restart.

mod common;

use std::time::{Duration, Instant};

use common::pods::{self, BARE_IMAGE, PAGE, WEB_IMAGE, http_get, http_until};
use hoist_kube::Locality;
use hoist_kube::live_update::{
    ContainerRef, DirectFs, LiveUpdateError, LiveUpdater, SyncBatch, SyncTransport,
    embedded_runc_root,
};
use hoist_kube::logs::{LogStream, LogStreamSpec};
use hoist_kube::portforward::{
    ForwardState, ForwardTarget, PortForward, PortForwardError, PortForwardSpec,
};
use serde_json::{Value, json};

/// busybox httpd on :80 serving /www; PID 1 is a shell that exits on SIGTERM.
fn web(name: &str, replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
      "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
          "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "image": WEB_IMAGE, "imagePullPolicy": "Never",
            "command": ["sh", "-c", "cat /etc/hostname > /www/host.txt; trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"],
            "ports": [{"name": "http", "containerPort": 80}],
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}]}}}})
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
      "spec": {"selector": {"app": name}, "ports": [{"port": 8080, "targetPort": "http"}]}})
}

async fn forward(node: &pods::Node, target: ForwardTarget) -> PortForward {
    let pf = PortForward::start(
        node.client.clone(),
        PortForwardSpec::new(&node.namespace, target, 0),
    )
    .await
    .expect("port-forward starts");
    assert!(pf.local_addr().ip().is_loopback());
    pf.wait_connected(Duration::from_secs(60))
        .await
        .expect("connected to a pod");
    pf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_follows_a_replaced_pod() {
    let Some(node) = pods::start().await else {
        return;
    };
    node.create(web("web", 1)).await;
    node.create(service("web")).await;
    let first = node.ready_pods("app=web", 1).await.remove(0);
    let target = ForwardTarget::Service {
        name: "web".into(),
        port: 8080,
    };
    let pf = forward(&node, target.clone()).await;
    let mut state = pf.state();
    assert_eq!(
        *state.borrow_and_update(),
        ForwardState::Connected {
            pod: first.clone(),
            port: 80
        }
    );
    let port = pf.local_addr().port();
    // Concurrent connections through one forward.
    let (a, b, c) = tokio::join!(
        http_get(port, "/host.txt"),
        http_get(port, "/index.html"),
        http_get(port, "/host.txt")
    );
    assert_eq!(a, (200, format!("{first}\n")));
    assert_eq!(b, (200, PAGE.to_string()));
    assert_eq!(c, a);

    // The local port is taken now: a clear error.
    let spec = PortForwardSpec::new(&node.namespace, target, port);
    match PortForward::start(node.client.clone(), spec).await {
        Err(e @ PortForwardError::PortTaken { .. }) => {
            assert!(e.to_string().contains(&port.to_string()))
        }
        Err(e) => panic!("expected PortTaken, got {e}"),
        Ok(_) => panic!("a second forward on a taken port must fail"),
    }

    // Replace the pod: the forward reports the new one and serves from it.
    node.delete_pod(&first).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let second = loop {
        if let ForwardState::Connected { pod, .. } = &*state.borrow_and_update()
            && *pod != first
        {
            break pod.clone();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            tokio::time::timeout(left, state.changed()).await.is_ok(),
            "no new pod: {:?}",
            *state.borrow()
        );
    };
    let (code, body) = http_until(port, "/host.txt", |c, b| c == 200 && b.trim() != first).await;
    assert_eq!((code, body.trim()), (200, second.as_str()));

    // Dropping the forward closes the local port.
    drop(pf);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_all_pods_and_new_ones_without_duplicates() {
    let Some(node) = pods::start().await else {
        return;
    };
    let talk = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "talk"},
      "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "talk"}},
        "template": {"metadata": {"labels": {"app": "talk"}},
          "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "talk", "image": WEB_IMAGE, "imagePullPolicy": "Never",
            "command": ["sh", "-c", "h=$(cat /etc/hostname); i=0; while [ $i -lt 100000 ]; do echo \"$h line $i\"; i=$((i+1)); sleep 0.05; done"]}]}}}});
    node.create(talk).await;
    let mut stream = LogStream::start(
        node.client.clone(),
        LogStreamSpec::new(&node.namespace, "app=talk"),
    );
    let mut seen: std::collections::BTreeMap<
        String,
        Vec<(u64, Option<k8s_openapi::jiff::Timestamp>)>,
    > = Default::default();
    let mut scaled = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let enough =
            seen.len() >= if scaled { 3 } else { 2 } && seen.values().all(|v| v.len() >= 10);
        if enough && scaled {
            break;
        }
        if enough {
            // A third pod appears: its lines must show up too.
            let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
                kube::Api::namespaced(node.client.clone(), &node.namespace);
            deployments
                .patch(
                    "talk",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"spec": {"replicas": 3}})),
                )
                .await
                .unwrap();
            scaled = true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "log lines from 3 pods within 60s: have {:?}",
                    seen.keys().collect::<Vec<_>>()
                )
            })
            .expect("stream open");
        assert_eq!(line.container, "talk");
        let (who, n) = line
            .text
            .split_once(" line ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert_eq!(who, line.pod, "the line names the pod that wrote it");
        seen.entry(line.pod.clone())
            .or_default()
            .push((n.parse().unwrap(), line.time));
    }
    for (pod, lines) in &seen {
        let numbers: Vec<u64> = lines.iter().map(|l| l.0).collect();
        let expected: Vec<u64> = (0..numbers.len() as u64).collect();
        assert_eq!(numbers, expected, "pod {pod}: every line once, in order");
        assert!(lines.iter().all(|l| l.1.is_some()), "timestamps parsed");
        assert!(
            lines.windows(2).all(|w| w[0].1 <= w[1].1),
            "timestamps in order"
        );
    }
    stream.stop();
    node.stop().await;
}

/// Every connection to the API server is cut (twice) while a log stream and a
/// port-forward run: the log stream resumes without a duplicate or a gap, and the
/// forward serves new connections again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_forwards_survive_dropped_connections() {
    let Some(node) = pods::start().await else {
        return;
    };
    let proxy = common::proxy::CuttableProxy::start(node.api_addr()).await;
    let client = node.client_via(proxy.addr).await;
    node.create(web("web", 1)).await;
    node.create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talk", "labels": {"app": "talk"}},
      "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
        "name": "talk", "image": WEB_IMAGE, "imagePullPolicy": "Never",
        "command": ["sh", "-c", "i=0; while [ $i -lt 100000 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.02; done"]}]}}))
        .await;
    node.ready_pods("app=web", 1).await;
    let pf = PortForward::start(
        client.clone(),
        PortForwardSpec::new(
            &node.namespace,
            ForwardTarget::Selector {
                selector: "app=web".into(),
                port: 80,
            },
            0,
        ),
    )
    .await
    .unwrap();
    pf.wait_connected(Duration::from_secs(60))
        .await
        .expect("connected");
    let port = pf.local_addr().port();
    assert_eq!(http_get(port, "/index.html").await.0, 200);
    let mut stream = LogStream::start(
        client.clone(),
        LogStreamSpec::new(&node.namespace, "app=talk"),
    );
    let mut numbers: Vec<u64> = vec![];
    let mut cuts = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while numbers.len() < 150 {
        if numbers.len() >= 50 * (cuts + 1) && cuts < 2 {
            let n = proxy.cut();
            assert!(n > 0, "there were connections to cut");
            cuts += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("log lines resume after a cut: have {}", numbers.len()))
            .expect("stream open");
        numbers.push(line.text.strip_prefix("line ").unwrap().parse().unwrap());
    }
    let expected: Vec<u64> = (0..numbers.len() as u64).collect();
    assert_eq!(
        numbers, expected,
        "every line exactly once across {cuts} reconnects"
    );
    // The forward: new connections work after the cut.
    proxy.cut();
    let (code, body) = http_until(port, "/index.html", |c, _| c == 200).await;
    assert_eq!((code, body.as_str()), (200, PAGE));
    assert!(matches!(
        *pf.state().borrow(),
        ForwardState::Connected { .. } | ForwardState::Error { .. }
    ));
    stream.stop();
    drop(pf);
    node.stop().await;
}

fn local_files() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("index.html"), "<h1>v2</h1>\n").unwrap();
    std::fs::create_dir_all(d.path().join("new/deep")).unwrap();
    std::fs::write(d.path().join("new/deep/file.txt"), "deep\n").unwrap();
    d
}

/// Sync adds, changes and deletes; httpd serves the result at once; run steps.
async fn live_update_roundtrip(direct: bool) {
    let Some(node) = pods::start().await else {
        return;
    };
    node.create(web("web", 1)).await;
    node.create(service("web")).await;
    let pod = node.ready_pods("app=web", 1).await.remove(0);
    let pf = forward(
        &node,
        ForwardTarget::Service {
            name: "web".into(),
            port: 8080,
        },
    )
    .await;
    let port = pf.local_addr().port();
    assert_eq!(http_get(port, "/old.txt").await, (200, "old\n".into()));
    let transport = if direct {
        SyncTransport::Direct(DirectFs::for_data_dir(&node.data_dir))
    } else {
        SyncTransport::Exec
    };
    let up = LiveUpdater::new(node.client.clone(), transport);
    let target = ContainerRef::new(&node.namespace, &pod, "web");
    let local = local_files();
    let batch = SyncBatch::default()
        .copy(local.path().join("index.html"), "/www/index.html")
        .copy(local.path().join("new"), "/www/new")
        .delete("/www/old.txt")
        .delete("/www/old");
    let report = up.sync(&target, &batch).await.expect("sync");
    assert_eq!((report.copied, report.deleted), (2, 2));
    assert!(report.container_id.starts_with("runc://"), "{report:?}");
    // Served right away: the sync returned after the files were in place.
    assert_eq!(
        http_get(port, "/index.html").await,
        (200, "<h1>v2</h1>\n".into())
    );
    assert_eq!(
        http_get(port, "/new/deep/file.txt").await,
        (200, "deep\n".into())
    );
    assert_eq!(http_get(port, "/old.txt").await.0, 404);
    assert_eq!(http_get(port, "/old/a.txt").await.0, 404);
    // Change it again (replacing an existing file).
    std::fs::write(local.path().join("index.html"), "<h1>v3</h1>\n").unwrap();
    let again = SyncBatch::default().copy(local.path().join("index.html"), "/www/index.html");
    up.sync(&target, &again).await.expect("second sync");
    assert_eq!(
        http_get(port, "/index.html").await,
        (200, "<h1>v3</h1>\n".into())
    );

    // Run steps: output on success; exit code and output on failure.
    let ok = up
        .run(
            &target,
            "cat /www/new/deep/file.txt; echo done",
            Duration::from_secs(20),
        )
        .await
        .expect("step");
    assert_eq!(ok.output, "deep\ndone\n");
    match up
        .run(
            &target,
            "echo partial; echo boom >&2; exit 3",
            Duration::from_secs(20),
        )
        .await
    {
        Err(e @ LiveUpdateError::StepFailed { code: Some(3), .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("boom") && text.contains("partial") && text.contains("exit code 3"),
                "{text}"
            );
        }
        other => panic!("expected StepFailed with exit code 3, got {other:?}"),
    }
    // Bad input: a relative container path and a missing local file, both named.
    let bad = SyncBatch::default().copy(local.path().join("index.html"), "www/index.html");
    let e = up.sync(&target, &bad).await.unwrap_err();
    assert!(
        matches!(e, LiveUpdateError::BadPath { .. }) && e.to_string().contains("www/index.html"),
        "{e}"
    );
    let missing = SyncBatch::default().copy(local.path().join("nope.txt"), "/www/nope.txt");
    let e = up.sync(&target, &missing).await.unwrap_err();
    assert!(e.to_string().contains("nope.txt"), "{e}");
    if direct {
        // An absolute symlink in the container resolves inside the container, never on
        // the host: /www/escape -> /tmp is the container's /tmp.
        up.run(&target, "ln -s /tmp /www/escape", Duration::from_secs(20))
            .await
            .expect("ln");
        let name = format!("hoist-escape-check-{}.txt", std::process::id());
        let through = SyncBatch::default().copy(
            local.path().join("index.html"),
            format!("/www/escape/{name}"),
        );
        up.sync(&target, &through)
            .await
            .expect("sync through a symlink");
        assert!(
            !std::path::Path::new("/tmp").join(&name).exists(),
            "written on the host's /tmp"
        );
        let inside = up
            .run(
                &target,
                &format!("cat /tmp/{name}"),
                Duration::from_secs(20),
            )
            .await
            .expect("cat");
        assert_eq!(inside.output, "<h1>v3</h1>\n");
    }
    // A pod that does not exist.
    let e = up
        .sync(&ContainerRef::new(&node.namespace, "gone", "web"), &again)
        .await
        .unwrap_err();
    assert!(matches!(e, LiveUpdateError::NoPod { .. }), "{e}");
    drop(pf);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_update_over_exec() {
    live_update_roundtrip(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_update_direct_into_the_container() {
    live_update_roundtrip(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_without_tar_or_shell() {
    let Some(node) = pods::start().await else {
        return;
    };
    node.create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "labels": {"app": "bare"}},
      "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
        "name": "web", "image": BARE_IMAGE, "imagePullPolicy": "Never",
        "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}]}}))
        .await;
    node.ready_pods("app=bare", 1).await;
    let target = ContainerRef::new(&node.namespace, "bare", "web");
    let local = local_files();
    let batch = SyncBatch::default().copy(local.path().join("index.html"), "/www/index.html");
    let exec = LiveUpdater::new(node.client.clone(), SyncTransport::Exec);
    match exec.sync(&target, &batch).await {
        Err(e @ LiveUpdateError::NoTar { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("tar") && text.contains("/bin/busybox") && text.contains("rebuild"),
                "{text}"
            );
        }
        other => panic!("expected NoTar, got {other:?}"),
    }
    // A run step needs a shell: a failure with the cluster's reason, not silence.
    let e = exec
        .run(&target, "true", Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(matches!(e, LiveUpdateError::StepFailed { .. }), "{e}");
    // Direct with the wrong runc root falls back to exec (and so meets NoTar).
    let elsewhere = tempfile::tempdir().unwrap();
    let wrong = LiveUpdater::new(
        node.client.clone(),
        SyncTransport::Direct(DirectFs::new(elsewhere.path())),
    );
    let e = wrong.sync(&target, &batch).await.unwrap_err();
    assert!(matches!(e, LiveUpdateError::NoTar { .. }), "{e}");
    // The direct transport needs neither.
    let direct = LiveUpdater::new(
        node.client.clone(),
        SyncTransport::Direct(DirectFs::for_data_dir(&node.data_dir)),
    );
    direct
        .sync(&target, &batch)
        .await
        .expect("direct sync into an image without tar");
    let pf = forward(
        &node,
        ForwardTarget::Selector {
            selector: "app=bare".into(),
            port: 80,
        },
    )
    .await;
    assert_eq!(
        http_get(pf.local_addr().port(), "/index.html").await,
        (200, "<h1>v2</h1>\n".into())
    );
    drop(pf);
    node.stop().await;
}

/// Restart: the container runs again and every synced file (and delete) is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_synced_files() {
    let Some(node) = pods::start().await else {
        return;
    };
    node.create(web("web", 1)).await;
    let pod = node.ready_pods("app=web", 1).await.remove(0);
    let target = ContainerRef::new(&node.namespace, &pod, "web");
    let local = local_files();
    let batch = SyncBatch::default()
        .copy(local.path().join("index.html"), "/www/index.html")
        .delete("/www/old.txt");
    for direct in [true, false] {
        let transport = if direct {
            SyncTransport::Direct(DirectFs::for_data_dir(&node.data_dir))
        } else {
            SyncTransport::Exec
        };
        let up = LiveUpdater::new(node.client.clone(), transport);
        let before = up.sync(&target, &batch).await.expect("sync").container_id;
        let after = up
            .restart(&target, Duration::from_secs(60))
            .await
            .expect("restart");
        assert_ne!(after.container_id, before, "a new container runs");
        assert_eq!(
            (after.copied, after.deleted),
            (1, 1),
            "the ledger was replayed"
        );
        let check = up
            .run(
                &target,
                "cat /www/index.html; test -e /www/old.txt && echo old-is-back || echo old-gone",
                Duration::from_secs(20),
            )
            .await
            .expect("step");
        assert_eq!(
            check.output,
            "<h1>v2</h1>\nold-gone\n",
            "transport {}",
            up.transport().name()
        );
    }
    node.stop().await;
}

#[test]
fn direct_transport_finds_the_kubelets_runc_root() {
    let d = std::path::Path::new("/var/lib/somewhere");
    let kubelet = hoist_cluster::kubelet::KubeletConfig::in_data_dir(d);
    assert_eq!(embedded_runc_root(d), kubelet.runc_root);
    // Direct only for the embedded cluster with a readable runc root; exec otherwise.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(embedded_runc_root(dir.path())).unwrap();
    assert_eq!(
        SyncTransport::choose(&Locality::Embedded, Some(dir.path())).name(),
        "direct"
    );
    assert_eq!(
        SyncTransport::choose(&Locality::Loopback, Some(dir.path())).name(),
        "exec"
    );
    assert_eq!(
        SyncTransport::choose(&Locality::Embedded, None).name(),
        "exec"
    );
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        SyncTransport::choose(&Locality::Embedded, Some(empty.path())).name(),
        "exec"
    );
}
