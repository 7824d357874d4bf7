//! The kubelet end to end with real runc and real kubectl (as root; skipped otherwise):
//! a pod built from a `scratch` + busybox image runs, is Ready, serves its page, shows
//! CrashLoopBackOff with the exit code when it fails, and leaves nothing behind.

mod common;
#[path = "common/image.rs"]
mod image;
#[path = "common/node.rs"]
mod node;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use node::{IMAGE, KubeletGuard, PAGE, poll, runc_list};

/// What the kubelet tests run in the image.
const APPLETS: &[&str] = &["sh", "httpd", "cat", "sleep", "echo", "nc", "wget"];

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sh", "-c", "echo serving $GREETING; exec httpd -f -p 80 -h /www"]
    env: [{name: GREETING, value: hello}, {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
"#;

const CRASH: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo boom; exit 3"]
"#;

/// A cluster with a kubelet whose image store holds [`IMAGE`]; returns the runc root.
fn start_with_kubelet() -> (common::TestCluster, KubeletGuard, std::path::PathBuf) {
    node::start(APPLETS)
}

#[test]
fn pods_run_report_status_crash_loop_and_clean_up() {
    if let Err(e) = hoist_runtime::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (cluster, kubelet, runc_root) = start_with_kubelet();
    // The node is registered and Ready.
    let nodes = cluster.ok(&["get", "nodes"]);
    assert!(
        nodes.contains("hoist") && nodes.contains("Ready"),
        "{nodes}"
    );

    let web = cluster.dir.path().join("web.yaml");
    std::fs::write(&web, WEB).unwrap();
    let started = Instant::now();
    cluster.ok(&["apply", "-f", web.to_str().unwrap()]);
    let pod = poll(Duration::from_secs(30), "web to be Ready", || {
        let p = cluster.json(&["get", "pod", "web"]);
        (p.pointer("/status/containerStatuses/0/ready") == Some(&serde_json::json!(true)))
            .then_some(p)
    });
    eprintln!(
        "pod create → Ready (kubectl polling included): {:?}",
        started.elapsed()
    );
    assert_eq!(pod["spec"]["nodeName"], "hoist");
    assert_eq!(pod["status"]["phase"], "Running");
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("127."), "pod IP {ip} must be loopback");
    let cs = &pod["status"]["containerStatuses"][0];
    assert!(cs["containerID"].as_str().unwrap().starts_with("runc://"));
    assert!(cs["imageID"].as_str().unwrap().contains("@sha256:"));
    assert!(cs["state"]["running"]["startedAt"].is_string());
    cluster.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=20s"]);
    let table = cluster.ok(&["get", "pods"]);
    let line = table.lines().find(|l| l.starts_with("web ")).unwrap();
    assert!(line.contains("1/1") && line.contains("Running"), "{table}");

    // kubectl logs: whole log, tail, timestamps, and -f streaming.
    let logs = poll(Duration::from_secs(10), "web's log", || {
        let l = cluster.ok(&["logs", "web"]);
        l.contains("serving hello").then_some(l)
    });
    assert_eq!(logs, "serving hello\n");
    let ts = cluster.ok(&["logs", "web", "--timestamps", "--tail=1"]);
    assert!(
        ts.starts_with("20") && ts.ends_with(" serving hello\n"),
        "{ts}"
    );
    let mut follow = Command::new("kubectl")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.dir.path())
        .args(["logs", "-f", "web"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let n = out.read(&mut buf).unwrap_or(0);
        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
    });
    let first = rx.recv_timeout(Duration::from_secs(10));
    // Streaming: the process is still attached (the container still runs).
    let still_running = follow.try_wait().unwrap().is_none();
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(first.as_deref(), Ok("serving hello\n"));
    assert!(
        still_running,
        "kubectl logs -f ended while the container runs"
    );
    let err = cluster.fails(&["logs", "web", "-c", "nope"]);
    assert!(err.contains("container nope is not valid"), "{err}");

    // kubectl exec over WebSocket: output, exit codes, stdin.
    assert_eq!(
        cluster.ok(&["exec", "web", "--", "cat", "/etc/hostname"]),
        "web\n"
    );
    let out = cluster.kubectl(&["exec", "web", "--", "sh", "-c", "echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops"),
        "{out:?}"
    );
    let input = cluster.dir.path().join("stdin.txt");
    std::fs::write(&input, "from stdin\n").unwrap();
    let out = cluster.kubectl_in(&["exec", "-i", "web", "--", "cat"], Some(&input));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from stdin\n",
        "{out:?}"
    );

    // The page is served inside the pod's network namespace.
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let netns = Path::new("/run/netns").join(format!("hoist-{uid}"));
    let mut conn = hoist_runtime::connect(&netns, 80, Duration::from_secs(5)).unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    assert!(resp.contains(PAGE), "{resp}");
    assert!(runc_list(&runc_root).contains(&uid));

    // A failing container: CrashLoopBackOff with its exit code in describe.
    let crash = cluster.dir.path().join("crash.yaml");
    std::fs::write(&crash, CRASH).unwrap();
    cluster.ok(&["apply", "-f", crash.to_str().unwrap()]);
    poll(Duration::from_secs(30), "CrashLoopBackOff", || {
        let p = cluster.json(&["get", "pod", "crash"]);
        (p.pointer("/status/containerStatuses/0/state/waiting/reason")
            == Some(&serde_json::json!("CrashLoopBackOff")))
        .then_some(())
    });
    assert_eq!(cluster.ok(&["logs", "crash"]), "boom\n");
    let described = cluster.ok(&["describe", "pod", "crash"]);
    eprintln!("{described}");
    assert!(described.contains("CrashLoopBackOff"), "{described}");
    assert!(
        described.contains("Exit Code:    3"),
        "exit code missing:\n{described}"
    );
    // describe lists the pod's events (found by involvedObject field selectors).
    assert!(
        described.contains("Back-off restarting failed container"),
        "{described}"
    );
    let reasons = || -> Vec<String> {
        cluster.json(&["get", "events"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let table = cluster.ok(&["get", "events"]);
    assert!(
        table.starts_with("LAST SEEN") && table.contains("pod/crash") && table.contains("BackOff"),
        "{table}"
    );
    let seen = reasons();
    for reason in ["Scheduled", "Pulled", "Created", "Started", "BackOff"] {
        assert!(
            seen.iter().any(|r| r == reason),
            "no {reason} event: {seen:?}"
        );
    }

    // kubectl delete returns promptly (grace 2s; httpd as pid 1 ignores SIGTERM) and the
    // runc container is gone.
    let t = Instant::now();
    cluster.ok(&["delete", "pod", "web", "--timeout=20s"]);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(!runc_list(&runc_root).contains(&uid));
    assert!(!netns_list().contains(&uid));
    assert!(reasons().iter().any(|r| r == "Killing"));

    // Stopping the kubelet leaves no container and no namespace of its pods.
    let crash_uid = cluster.json(&["get", "pod", "crash"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    kubelet.shutdown();
    assert_eq!(runc_list(&runc_root).trim(), "");
    assert!(!netns_list().contains(&crash_uid));
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: hoist.test/web:1
        imagePullPolicy: Never
        command: ["sh", "-c", "echo serving; exec httpd -f -p 80 -h /www"]
        ports: [{name: http, containerPort: 80}]
        readinessProbe: {httpGet: {path: /index.html, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"#;

fn ready_pods(cluster: &common::TestCluster) -> Vec<String> {
    let table = cluster.ok(&["get", "pods", "-l", "app=web", "--no-headers"]);
    table
        .lines()
        .filter(|l| l.contains("1/1") && l.contains("Running"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn deployment_rolls_out_serves_endpoints_and_rolls_updates_without_downtime() {
    if let Err(e) = hoist_runtime::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (cluster, kubelet, runc_root) = start_with_kubelet();
    let file = cluster.dir.path().join("web.yaml");
    std::fs::write(&file, DEPLOYMENT).unwrap();
    let t = Instant::now();
    cluster.ok(&["apply", "-f", file.to_str().unwrap()]);
    let out = cluster.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    eprintln!("2-replica deployment available in {:?}", t.elapsed());
    assert!(out.contains("successfully rolled out"), "{out}");
    let logs = cluster.ok(&["logs", "deployment/web"]);
    assert_eq!(logs, "serving\n");
    let first = ready_pods(&cluster);
    assert_eq!(first.len(), 2, "{first:?}");
    let d = cluster.json(&["get", "deployment", "web"]);
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let rs = cluster.json(&["get", "replicasets"]);
    let rs0 = &rs["items"][0];
    assert!(rs0["metadata"]["labels"]["pod-template-hash"].is_string());
    assert_eq!(rs0["status"]["readyReplicas"], 2);
    let get_deploy = cluster.ok(&["get", "deployment", "web", "--no-headers"]);
    assert!(get_deploy.contains("2/2"), "{get_deploy}");

    // Endpoints and the EndpointSlice list both ready pods on the named port.
    let ep = poll(Duration::from_secs(10), "endpoints", || {
        let ep = cluster.json(&["get", "endpoints", "web"]);
        (ep.pointer("/subsets/0/addresses")
            .and_then(|a| a.as_array())
            .map(Vec::len)
            == Some(2))
        .then_some(ep)
    });
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 80);
    let slices = cluster.json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    assert_eq!(slices["items"][0]["endpoints"].as_array().unwrap().len(), 2);

    // A template change rolls pods one by one; at no moment is no pod ready.
    cluster.ok(&["set", "env", "deployment/web", "VERSION=2"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = cluster.json(&["get", "deployment", "web"]);
        let ready = ready_pods(&cluster);
        assert!(!ready.is_empty(), "no ready pod during the rolling update");
        let done = d["status"]["updatedReplicas"] == 2
            && d["status"]["replicas"] == 2
            && d["status"]["availableReplicas"] == 2
            && d["status"]["observedGeneration"] == d["metadata"]["generation"];
        if done && ready.iter().all(|p| !first.contains(p)) && ready.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rolling update did not finish: {d}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = cluster.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = cluster.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );

    // rollout undo returns to the first template (its ReplicaSet, as revision 3).
    let first_rs = rs0["metadata"]["name"].as_str().unwrap().to_string();
    cluster.ok(&["rollout", "undo", "deployment/web"]);
    let out = cluster.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let rs = cluster.json(&["get", "replicaset", &first_rs]);
    assert_eq!(rs["spec"]["replicas"], 2, "{rs}");
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let history = cluster.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('2') && history.contains('3'), "{history}");
    // rollout restart rolls new pods.
    cluster.ok(&["rollout", "restart", "deployment/web"]);
    let out = cluster.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = cluster.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "4"
    );

    // Deleting the deployment removes its pods and their runc containers.
    cluster.ok(&["delete", "deployment", "web", "--timeout=30s"]);
    poll(Duration::from_secs(30), "pods to go", || {
        let pods = cluster.json(&["get", "pods"]);
        pods["items"].as_array().unwrap().is_empty().then_some(())
    });
    poll(Duration::from_secs(10), "runc containers to go", || {
        runc_list(&runc_root).trim().is_empty().then_some(())
    });
    kubelet.shutdown();
}

#[path = "../../hoist-oci/tests/support/registry.rs"]
mod registry;

const PULLED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: pulled}
spec:
  containers:
  - {name: main, image: IMAGE, imagePullPolicy: Always, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: never}
spec:
  containers:
  - {name: main, image: hoist.test/absent:1, imagePullPolicy: Never}
"#;

#[test]
fn images_missing_locally_are_pulled_from_their_registry() {
    if let Err(e) = hoist_runtime::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (cluster, kubelet, _) = start_with_kubelet();
    let reg = registry::Registry::start(false);
    let remote = format!("{}/pulled/web:1", reg.addr);
    let store = cluster.dir.path().join("store");
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{IMAGE}", store.display()))
        .arg(format!("docker://{remote}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = cluster.dir.path().join("pulled.yaml");
    std::fs::write(&file, PULLED.replace("IMAGE", &remote)).unwrap();
    cluster.ok(&["apply", "-f", file.to_str().unwrap()]);
    cluster.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/pulled",
        "--timeout=60s",
    ]);
    let events = cluster.json(&["get", "events"]);
    let messages: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["involvedObject"]["name"] == "pulled")
        .map(|e| e["message"].as_str().unwrap_or(""))
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Successfully pulled image")),
        "{messages:?}"
    );
    let never = poll(Duration::from_secs(20), "ErrImageNeverPull", || {
        let p = cluster.json(&["get", "pod", "never"]);
        let reason = p.pointer("/status/containerStatuses/0/state/waiting/reason")?;
        (reason == "ErrImageNeverPull").then_some(p)
    });
    let message = never["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("pull policy of Never"), "{message}");
    kubelet.shutdown();
}

const PROBES: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: probes}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: never-ready
    image: hoist.test/web:1
    command: ["sleep", "3600"]
    readinessProbe: {tcpSocket: {port: 81}, periodSeconds: 1}
  - name: dies
    image: hoist.test/web:1
    command: ["sleep", "3600"]
    livenessProbe: {exec: {command: ["cat", "/nonexistent"]}, periodSeconds: 1, failureThreshold: 2}
"#;

#[test]
fn failing_probes_keep_pods_unready_and_restart_unhealthy_containers() {
    if let Err(e) = hoist_runtime::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (cluster, kubelet, _) = start_with_kubelet();
    let file = cluster.dir.path().join("probes.yaml");
    std::fs::write(&file, PROBES).unwrap();
    cluster.ok(&["apply", "-f", file.to_str().unwrap()]);
    let pod = poll(Duration::from_secs(30), "the liveness restart", || {
        let p = cluster.json(&["get", "pod", "probes"]);
        p.pointer("/status/containerStatuses/1/lastState/terminated")
            .is_some()
            .then_some(p)
    });
    let statuses = pod["status"]["containerStatuses"].as_array().unwrap();
    assert_eq!(statuses[0]["ready"], false, "{statuses:?}");
    assert!(statuses[0]["state"]["running"].is_object());
    let ready = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
    let line = cluster.ok(&["get", "pod", "probes", "--no-headers"]);
    assert!(line.contains("0/2") || line.contains("1/2"), "{line}");
    let messages: Vec<String> = cluster.json(&["get", "events"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Unhealthy Readiness probe failed: dial tcp 127.0.0.1:81")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Unhealthy Liveness probe failed: command")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("failed liveness probe, will be restarted")),
        "{messages:?}"
    );
    kubelet.shutdown();
}

const JOBS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: works}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: hoist.test/web:1, command: ["echo", "done"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: fails}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: hoist.test/web:1, command: ["sh", "-c", "exit 2"]}]
"#;

#[test]
fn jobs_run_to_complete_or_fail_after_their_backoff_limit() {
    if let Err(e) = hoist_runtime::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (cluster, kubelet, runc_root) = start_with_kubelet();
    let file = cluster.dir.path().join("jobs.yaml");
    std::fs::write(&file, JOBS).unwrap();
    cluster.ok(&["apply", "-f", file.to_str().unwrap()]);
    cluster.ok(&[
        "wait",
        "--for=condition=complete",
        "job/works",
        "--timeout=60s",
    ]);
    let works = cluster.json(&["get", "job", "works"]);
    assert_eq!(works["status"]["succeeded"], 3, "{works}");
    assert!(works["status"]["completionTime"].is_string());
    let pods = cluster.ok(&["get", "pods", "-l", "job-name=works", "--no-headers"]);
    assert_eq!(
        pods.lines().filter(|l| l.contains("Completed")).count(),
        3,
        "{pods}"
    );
    assert_eq!(cluster.ok(&["logs", "job/works"]), "done\n");
    cluster.ok(&[
        "wait",
        "--for=condition=failed",
        "job/fails",
        "--timeout=60s",
    ]);
    let fails = cluster.json(&["get", "job", "fails"]);
    assert_eq!(fails["status"]["failed"], 2, "{fails}");
    let failed = fails["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    // Finished pods keep no container.
    poll(Duration::from_secs(10), "finished containers to go", || {
        runc_list(&runc_root).trim().is_empty().then_some(())
    });
    cluster.ok(&["delete", "job", "works", "fails", "--timeout=30s"]);
    poll(Duration::from_secs(20), "job pods to go", || {
        cluster.json(&["get", "pods"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    kubelet.shutdown();
}

const VOLUMES: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello, "app.conf": "port=80\n"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: vols}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: conf, configMap: {name: settings, items: [{key: app.conf, path: nested/app.conf}]}}
  - {name: creds, secret: {secretName: creds}}
  - {name: scratch, emptyDir: {}}
  containers:
  - name: main
    image: hoist.test/web:1
    command: ["sh", "-c", "echo $greeting-$SECRET_password > /scratch/out; exec sleep 3600"]
    envFrom: [{configMapRef: {name: settings}}, {secretRef: {name: creds}, prefix: SECRET_}]
    volumeMounts:
    - {name: conf, mountPath: /etc/app, readOnly: true}
    - {name: creds, mountPath: /run/creds}
    - {name: scratch, mountPath: /scratch}
---
apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  containers:
  - name: main
    image: hoist.test/web:1
    command: ["sleep", "3600"]
    envFrom: [{configMapRef: {name: nope}}]
"#;

#[test]
fn volumes_and_env_from_config_maps_and_secrets() {
    if let Err(e) = hoist_runtime::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (cluster, kubelet, _) = start_with_kubelet();
    let file = cluster.dir.path().join("vols.yaml");
    std::fs::write(&file, VOLUMES).unwrap();
    cluster.ok(&["apply", "-f", file.to_str().unwrap()]);
    cluster.ok(&["wait", "--for=condition=Ready", "pod/vols", "--timeout=30s"]);
    let cat = |path: &str| cluster.ok(&["exec", "vols", "--", "cat", path]);
    assert_eq!(cat("/etc/app/nested/app.conf"), "port=80\n");
    assert_eq!(cat("/run/creds/password"), "s3cret");
    let out = poll(Duration::from_secs(10), "the emptyDir file", || {
        let o = cluster.kubectl(&["exec", "vols", "--", "cat", "/scratch/out"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    assert_eq!(out, "hello-s3cret\n");
    let ro = cluster.kubectl(&["exec", "vols", "--", "sh", "-c", "echo x > /etc/app/new"]);
    assert!(!ro.status.success(), "a readOnly mount was writable");
    let missing = poll(
        Duration::from_secs(20),
        "CreateContainerConfigError",
        || {
            let p = cluster.json(&["get", "pod", "missing"]);
            let w = p
                .pointer("/status/containerStatuses/0/state/waiting")?
                .clone();
            (w["reason"] == "CreateContainerConfigError").then_some(w)
        },
    );
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("configmap \"nope\" not found"),
        "{missing}"
    );
    kubelet.shutdown();
}

const CLIENT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    env: [{name: OVERRIDDEN_SERVICE_PORT, value: mine}]
"#;

#[test]
fn pods_find_services_by_name_and_environment() {
    if let Err(e) = hoist_runtime::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (cluster, kubelet, _) = start_with_kubelet();
    cluster.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    cluster.ok(&[
        "create",
        "service",
        "clusterip",
        "overridden",
        "--tcp=81:81",
    ]);
    cluster.ok(&["create", "ns", "other"]);
    cluster.ok(&[
        "create",
        "service",
        "clusterip",
        "db",
        "-n",
        "other",
        "--tcp=5432:5432",
    ]);
    let ip_of = |name: &str, ns: &str| {
        cluster.json(&["get", "svc", name, "-n", ns])["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (web_ip, db_ip) = (ip_of("web", "default"), ip_of("db", "other"));
    let file = cluster.dir.path().join("client.yaml");
    std::fs::write(&file, CLIENT).unwrap();
    cluster.ok(&["apply", "-f", file.to_str().unwrap()]);
    cluster.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=30s",
    ]);
    let sh = |script: &str| cluster.ok(&["exec", "client", "--", "sh", "-c", script]);
    assert_eq!(
        sh("echo $WEB_SERVICE_HOST:$WEB_SERVICE_PORT $WEB_PORT_80_TCP"),
        format!("{web_ip}:80 tcp://{web_ip}:80\n")
    );
    // The container's own env wins; other namespaces' Services give no variables.
    assert_eq!(
        sh("echo $OVERRIDDEN_SERVICE_PORT/$DB_SERVICE_HOST/"),
        "mine//\n"
    );
    let hosts = sh("cat /etc/hosts");
    assert!(
        hosts.contains(&format!(
            "{web_ip}\tweb web.default web.default.svc web.default.svc.cluster.local\n"
        )),
        "{hosts}"
    );
    assert!(
        hosts.contains(&format!(
            "{db_ip}\tdb.other db.other.svc db.other.svc.cluster.local\n"
        )),
        "{hosts}"
    );
    // Services created or deleted later reach the running pod's /etc/hosts.
    cluster.ok(&["create", "service", "clusterip", "late", "--tcp=82:82"]);
    let late_ip = ip_of("late", "default");
    poll(Duration::from_secs(10), "late in /etc/hosts", || {
        sh("cat /etc/hosts")
            .contains(&format!("{late_ip}\tlate late.default"))
            .then_some(())
    });
    cluster.ok(&["delete", "svc", "web"]);
    poll(Duration::from_secs(10), "web gone from /etc/hosts", || {
        (!sh("cat /etc/hosts").contains("\tweb ")).then_some(())
    });
    kubelet.shutdown();
}

const WEB_SERVICE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: hoist.test/web:1
        imagePullPolicy: Never
        command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 81, targetPort: 8080}]
"#;

#[test]
fn services_forward_from_pods_by_name_and_from_the_host_by_node_port() {
    if let Err(e) = hoist_runtime::check_host() {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let (cluster, kubelet, _) = start_with_kubelet();
    let file = cluster.dir.path().join("web.yaml");
    std::fs::write(&file, WEB_SERVICE).unwrap();
    cluster.ok(&["apply", "-f", file.to_str().unwrap()]);
    cluster.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let client = cluster.dir.path().join("client.yaml");
    std::fs::write(&client, CLIENT).unwrap();
    cluster.ok(&["apply", "-f", client.to_str().unwrap()]);
    cluster.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=30s",
    ]);
    assert!(
        cluster
            .ok(&["exec", "client", "--", "sh", "-c", "echo $WEB_SERVICE_HOST"])
            .starts_with("127."),
        "WEB_SERVICE_HOST is set in a pod started after the Service"
    );
    let hosts = cluster.ok(&["exec", "client", "--", "cat", "/etc/hosts"]);
    let table = cluster.ok(&["get", "svc", "web"]);
    let ip = cluster.json(&["get", "svc", "web"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(table.contains(&ip), "{table}");
    assert!(
        hosts.contains(&format!(
            "{ip}\tweb web.default web.default.svc web.default.svc.cluster.local"
        )),
        "{hosts}"
    );
    // A process in the client pod reaches the Service by name: `wget -qO- http://web`.
    for name in ["web", "web.default", "web.default.svc.cluster.local"] {
        let url = format!("http://{name}/");
        let page = poll(Duration::from_secs(15), name, || {
            let o = cluster.kubectl(&["exec", "client", "--", "wget", "-qO-", &url]);
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        });
        assert_eq!(page, PAGE, "wget {url}");
    }
    // The same over a raw TCP connection (busybox `nc`), status line included.
    for name in ["web", "web.default", "web.default.svc.cluster.local"] {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {name} 80");
        let page = poll(Duration::from_secs(15), name, || {
            let o = cluster.kubectl(&["exec", "client", "--", "sh", "-c", &script]);
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            (o.status.success() && out.contains("200 OK")).then_some(out)
        });
        assert!(page.ends_with(PAGE), "{name}: {page}");
    }
    // And straight from the client pod's network namespace to ClusterIP:80.
    let pod = cluster.json(&["get", "pod", "client"]);
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let pod_ip: std::net::Ipv4Addr = pod["status"]["podIP"].as_str().unwrap().parse().unwrap();
    let net = hoist_runtime::PodNetwork::existing(uid, pod_ip).expect("the client's netns");
    let cip: std::net::Ipv4Addr = ip.parse().unwrap();
    let get = |addr: std::net::SocketAddr| -> Option<String> {
        let mut s =
            hoist_runtime::netns::connect_addr(&net.path, addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.contains("200 OK").then_some(out)
    };
    // Several requests: round-robin reaches both replicas, all answer.
    for _ in 0..4 {
        let page = poll(Duration::from_secs(15), "ClusterIP:80 from the pod", || {
            get(std::net::SocketAddr::from((cip, 80)))
        });
        assert!(page.ends_with(PAGE), "{page}");
    }
    // NodePort: the host's 127.0.0.1:<nodePort> forwards to the pods.
    let np = cluster.json(&["get", "svc", "web-np"])["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap() as u16;
    let body = poll(Duration::from_secs(15), "the nodePort", || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", np)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.contains("200 OK").then_some(out)
    });
    assert!(body.ends_with(PAGE), "{body}");
    // Deleting the Service stops its listeners.
    cluster.ok(&["delete", "svc", "web-np"]);
    poll(Duration::from_secs(10), "the nodePort closed", || {
        std::net::TcpStream::connect(("127.0.0.1", np))
            .is_err()
            .then_some(())
    });
    kubelet.shutdown();
}
