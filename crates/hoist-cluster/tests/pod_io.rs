//! Pod I/O end to end with real runc, real kubectl and kube-rs (as root; skipped
//! otherwise): `kubectl exec -it` on a terminal with resizes, `kubectl cp` both ways,
//! `kubectl attach` / `kubectl run -i --rm` / kube-rs `Api::attach` (stdin, stdinOnce, tty),
//! the downward API (env and volumes), Service names through the pod DNS responder, and
//! UDP Service ports.

mod common;
#[path = "common/image.rs"]
mod image;
#[path = "common/node.rs"]
mod node;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use node::{IMAGE, apply, poll, poll_with_last, skip};

/// What `kubectl cp`, terminal and DNS checks need in the image.
const APPLETS: &[&str] = &[
    "sh", "cat", "sleep", "echo", "tar", "tty", "stty", "[", "test", "ls", "mkdir", "wc",
    "nslookup", "stat",
];

fn start_with_kubelet() -> (common::TestCluster, node::KubeletGuard) {
    let (cluster, kubelet, _runc_root) = node::start(APPLETS);
    (cluster, kubelet)
}

fn kube_client(cluster: &common::TestCluster) -> kube::Client {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kc = Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
    let cfg = cluster
        .rt
        .block_on(kube::Config::from_custom_kubeconfig(
            kc,
            &KubeConfigOptions::default(),
        ))
        .unwrap();
    let _rt = cluster.rt.enter();
    kube::Client::try_from(cfg).unwrap()
}

const SLEEPER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: box}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#;

/// Inside the pod: wait (bounded) until the terminal has the size `rows cols`, then print it.
const WAIT_SIZE: &str = "i=0; while [ \"$(stty size)\" != \"$1\" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; stty size";

#[test]
fn exec_with_a_terminal_through_kubectl_and_kube_rs() {
    if skip() {
        return;
    }
    let (cluster, _kubelet) = start_with_kubelet();
    apply(&cluster, "box", SLEEPER);
    cluster.ok(&["wait", "--for=condition=Ready", "pod/box", "--timeout=30s"]);

    // kubectl exec -it on a real terminal (script(1) gives kubectl one of 45x123): the
    // command sees a pts, the size kubectl sent, reads what was typed, and its exit code
    // comes back as kubectl's.
    let inner = format!(
        "stty cols 123 rows 45; kubectl --request-timeout=20s exec -it box -- sh -c '{}' sh '45 123'",
        format!("tty; {WAIT_SIZE}; read line; echo typed:$line; exit 7").replace('\'', "'\\''")
    );
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        // Typed once the command waits for it (the terminal echoes it back either way).
        std::thread::sleep(Duration::from_millis(1500));
        let _ = stdin.write_all(b"hello tty\r");
        std::thread::sleep(Duration::from_secs(10));
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "kubectl exec -it hung: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(feeder);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("/dev/pts/"), "tty output: {text:?}");
    assert!(text.contains("45 123"), "terminal size: {text:?}");
    assert!(text.contains("typed:hello tty"), "stdin: {text:?}");
    assert_eq!(out.status.code(), Some(7), "exit code: {text:?}");

    // kube-rs with tty=true: a resize sent on channel 4 reaches the terminal.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::default_namespaced(kube_client(&cluster));
    let (output, status) = cluster.rt.block_on(async {
        use kube::api::{AttachParams, TerminalSize};
        use tokio::io::AsyncReadExt;
        let mut p = pods
            .exec(
                "box",
                [
                    "sh",
                    "-c",
                    &format!("tty; {WAIT_SIZE}; exit 3"),
                    "sh",
                    "30 100",
                ],
                &AttachParams::interactive_tty(),
            )
            .await
            .unwrap();
        let mut size = p.terminal_size().unwrap();
        use futures_util::SinkExt;
        size.send(TerminalSize {
            width: 100,
            height: 30,
        })
        .await
        .unwrap();
        let mut stdout = p.stdout().unwrap();
        let status = p.take_status().unwrap();
        let mut output = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stdout.read_to_end(&mut output))
            .await
            .expect("exec output ends")
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), status)
            .await
            .unwrap();
        (String::from_utf8_lossy(&output).into_owned(), status)
    });
    assert!(output.contains("/dev/pts/"), "{output:?}");
    assert!(output.contains("30 100"), "{output:?}");
    let status = status.expect("a status on channel 3");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.unwrap().causes.unwrap();
    assert_eq!(causes[0].message.as_deref(), Some("3"));

    // A client that goes away hangs up its terminal: the command does not outlive it.
    cluster.rt.block_on(async {
        use kube::api::AttachParams;
        use tokio::io::AsyncReadExt;
        let mut p = pods
            .exec(
                "box",
                [
                    "sh",
                    "-c",
                    "echo $$ > /tmp/held.pid; echo started; exec sleep 1000",
                ],
                &AttachParams::interactive_tty(),
            )
            .await
            .unwrap();
        let mut stdout = p.stdout().unwrap();
        let mut buf = vec![0u8; 256];
        let mut seen = String::new();
        while !seen.contains("started") {
            let n = tokio::time::timeout(Duration::from_secs(10), stdout.read(&mut buf))
                .await
                .expect("the command starts")
                .unwrap();
            assert!(n > 0, "ended early: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        p.abort();
    });
    poll(
        Duration::from_secs(10),
        "the exec'd command to end with its client (it outlived it)",
        || {
            let alive = cluster.kubectl(&[
                "exec",
                "box",
                "--",
                "sh",
                "-c",
                "test -d /proc/$(cat /tmp/held.pid)",
            ]);
            (!alive.status.success()).then_some(())
        },
    );
}

/// Every file under `root` as (relative path, bytes), sorted.
fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Bytes no text-mode mangling survives: all 256 values, NULs, CR/LF, 1 MiB of noise.
fn binary_payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            if i < 256 {
                return i as u8;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn kubectl_cp_copies_files_and_directories_both_ways_byte_exact() {
    if skip() {
        return;
    }
    let (cluster, _kubelet) = start_with_kubelet();
    apply(&cluster, "box", SLEEPER);
    cluster.ok(&["wait", "--for=condition=Ready", "pod/box", "--timeout=30s"]);
    let work = cluster.dir.path().join("cp");
    std::fs::create_dir_all(&work).unwrap();
    let local = |p: &str| work.join(p).to_string_lossy().into_owned();

    // One file in and back out.
    let file = binary_payload(1 << 20, 7);
    std::fs::write(work.join("blob.bin"), &file).unwrap();
    cluster.ok(&["cp", &local("blob.bin"), "box:/tmp/blob.bin"]);
    let size = cluster.ok(&["exec", "box", "--", "sh", "-c", "ls -l /tmp/blob.bin"]);
    assert!(size.contains(&(1u32 << 20).to_string()), "{size}");
    cluster.ok(&["cp", "box:/tmp/blob.bin", &local("back.bin")]);
    assert!(
        std::fs::read(work.join("back.bin")).unwrap() == file,
        "the file came back changed"
    );

    // A directory with nesting, an empty file and odd names, in and back out.
    let src = work.join("src");
    std::fs::create_dir_all(src.join("a/b/c")).unwrap();
    std::fs::write(src.join("top.txt"), "top\n").unwrap();
    std::fs::write(src.join("a/empty"), "").unwrap();
    std::fs::write(src.join("a/b/with space.bin"), binary_payload(70_000, 3)).unwrap();
    std::fs::write(src.join("a/b/c/deep.txt"), "deep\r\nline\n").unwrap();
    cluster.ok(&["cp", &local("src"), "box:/tmp/dir"]);
    let listing = cluster.ok(&["exec", "box", "--", "cat", "/tmp/dir/a/b/c/deep.txt"]);
    assert_eq!(listing, "deep\r\nline\n");
    cluster.ok(&["cp", "box:/tmp/dir", &local("out")]);
    assert_eq!(tree(&work.join("out")), tree(&src));

    // A file made in the pod comes out as it was written there.
    cluster.ok(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "mkdir -p /tmp/made && echo made-in-pod > /tmp/made/x",
    ]);
    cluster.ok(&["cp", "box:/tmp/made/x", &local("x")]);
    assert_eq!(
        std::fs::read_to_string(work.join("x")).unwrap(),
        "made-in-pod\n"
    );

    // A missing source copies nothing. (Whether kubectl shows tar's complaint races, in
    // kubectl, with the empty archive ending — as against any cluster — so the tar it
    // runs is checked through exec, which waits for the exit status.)
    let _ = cluster.kubectl(&["cp", "box:/tmp/nope", &local("nope")]);
    let o = cluster.kubectl(&["exec", "box", "--", "tar", "cf", "-", "/tmp/nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/tmp/nope: No such file"),
        "{o:?}"
    );
    assert!(!work.join("nope").exists());
}

/// Runs `cmd` with `input` on its stdin, bounded by `limit`; (stdout, stderr, exit code).
fn run_with_input(cmd: Command, input: &[u8], limit: Duration) -> (String, String, Option<i32>) {
    let input = input.to_vec();
    run_feeding(cmd, limit, move |mut stdin| {
        let _ = stdin.write_all(&input);
    })
}

/// Runs `cmd` with `feed` writing its stdin on a thread of its own, bounded by `limit`
/// (killed and failing the test when it hangs); (stdout, stderr, exit code).
fn run_feeding(
    mut cmd: Command,
    limit: Duration,
    feed: impl FnOnce(std::process::ChildStdin) + Send + 'static,
) -> (String, String, Option<i32>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || feed(stdin));
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} hung:\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

fn kubectl_cmd(cluster: &common::TestCluster, args: &[&str]) -> Command {
    let mut c = Command::new("kubectl");
    c.env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.dir.path())
        .arg("--request-timeout=20s")
        .args(args);
    c
}

const ATTACHABLE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sh", "-c", "i=0; while true; do echo tick-$i; echo tock-$i >&2; i=$((i+1)); sleep 0.1; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    stdin: true
    stdinOnce: true
    command: ["sh", "-c", "read first; echo got:$first; cat; echo stdin-ended"]
---
apiVersion: v1
kind: Pod
metadata: {name: console}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    stdin: true
    tty: true
    command: ["sh"]
"#;

#[test]
fn attach_streams_output_feeds_stdin_and_drives_terminals() {
    if skip() {
        return;
    }
    let (cluster, _kubelet) = start_with_kubelet();
    apply(&cluster, "attach", ATTACHABLE);
    for p in ["ticker", "reader", "console"] {
        cluster.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=30s",
        ]);
    }

    // kube-rs: stdout and stderr arrive on their own channels, from now on.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::default_namespaced(kube_client(&cluster));
    let (stdout, stderr) = cluster.rt.block_on(async {
        use kube::api::AttachParams;
        let mut p = pods
            .attach("ticker", &AttachParams::default().stdin(false).stderr(true))
            .await
            .unwrap();
        let mut out = p.stdout().unwrap();
        let mut err = p.stderr().unwrap();
        let o = read_lines(&mut out).await;
        let e = read_lines(&mut err).await;
        p.abort();
        (o, e)
    });
    assert!(
        stdout.contains("tick-") && !stdout.contains("tock-"),
        "{stdout:?}"
    );
    assert!(
        stderr.contains("tock-") && !stderr.contains("tick-"),
        "{stderr:?}"
    );
    assert!(
        !stdout.contains("tick-0\n"),
        "attach replays no earlier output: {stdout:?}"
    );

    // kubectl attach -i: stdin goes in, and the end of kubectl's stdin closes the
    // container's (stdinOnce), so `cat` ends and the container with it.
    let (out, err, code) = run_with_input(
        kubectl_cmd(&cluster, &["attach", "-i", "reader"]),
        b"hello\nsecond line\n",
        Duration::from_secs(30),
    );
    assert!(
        out.contains("got:hello\nsecond line\nstdin-ended\n"),
        "stdout: {out:?} stderr: {err:?}"
    );
    assert_eq!(code, Some(0), "stderr: {err}");
    poll_with_last(
        Duration::from_secs(10),
        "the container to end on stdin EOF (phase Succeeded)",
        || {
            let phase = cluster.ok(&["get", "pod", "reader", "-o", "jsonpath={.status.phase}"]);
            if phase == "Succeeded" {
                Ok(())
            } else {
                Err(phase)
            }
        },
    );

    // kubectl attach -it to a tty container, on a real terminal of 40x132: the shell is on
    // a pts of that size and typing `exit` ends the container.
    let inner = "stty cols 132 rows 40; kubectl --request-timeout=20s attach -it console";
    let mut cmd = Command::new("script");
    cmd.args(["-qec", inner, "/dev/null"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.dir.path());
    let script = format!("tty; {}; exit 5\r", WAIT_SIZE.replace("$1", "40 132"));
    let (out, _, _) = run_with_delayed_input(cmd, script.as_bytes(), Duration::from_secs(30));
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("40 132"), "{out:?}");
    let p = poll_with_last(
        Duration::from_secs(10),
        "console's container to terminate",
        || {
            let p = cluster.json(&["get", "pod", "console"]);
            match p.pointer("/status/containerStatuses/0/state/terminated") {
                Some(_) => Ok(p),
                None => Err(p),
            }
        },
    );
    assert_eq!(
        p.pointer("/status/containerStatuses/0/state/terminated/exitCode"),
        Some(&serde_json::json!(5)),
        "{p}"
    );
    // What the terminal showed is in the log too.
    let logs = cluster.ok(&["logs", "console"]);
    assert!(logs.contains("/dev/pts/"), "{logs:?}");
}

/// Reads until at least three lines came (10 s per read at most).
async fn read_lines(r: &mut tokio::io::ReadHalf<tokio::io::SimplexStream>) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while got.matches('\n').count() < 3 {
        let n = tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf))
            .await
            .expect("attached output arrives")
            .unwrap();
        assert!(n > 0, "attach output ended early: {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    got
}

/// Like [`run_with_input`], typing `input` only after a moment (once a terminal session is
/// up: keystrokes typed earlier would be lost to the raw-mode switch).
fn run_with_delayed_input(
    cmd: Command,
    input: &[u8],
    limit: Duration,
) -> (String, String, Option<i32>) {
    let input = input.to_vec();
    run_feeding(cmd, limit, move |mut stdin| {
        std::thread::sleep(Duration::from_millis(1500));
        let _ = stdin.write_all(&input);
        // Kept open: an early EOF would end the terminal session.
        std::thread::sleep(Duration::from_secs(30));
    })
}

#[test]
fn kubectl_run_interactive_feeds_stdin_and_removes_the_pod() {
    if skip() {
        return;
    }
    let (cluster, _kubelet) = start_with_kubelet();
    let (out, err, code) = run_with_input(
        kubectl_cmd(
            &cluster,
            &[
                "run",
                "once",
                "-i",
                "--rm",
                "--restart=Never",
                "--image",
                IMAGE,
                "--image-pull-policy=Never",
                "--",
                "sh",
                "-c",
                "read x; echo got:$x; wc -c",
            ],
        ),
        b"first\n0123456789",
        Duration::from_secs(60),
    );
    assert!(out.contains("got:first"), "stdout: {out:?} stderr: {err:?}");
    assert!(out.contains("10"), "the rest of stdin reached wc: {out:?}");
    assert_eq!(code, Some(0), "stdout: {out} stderr: {err}");
    assert!(
        out.contains("pod \"once\" deleted") || err.contains("pod \"once\" deleted"),
        "{out}{err}"
    );
    let gone = cluster.kubectl(&["get", "pod", "once"]);
    assert!(!gone.status.success(), "--rm removed the pod");

    // kubectl run -it: a shell on a terminal, typed into, exiting with its code.
    let inner = format!(
        "kubectl --request-timeout=20s run shell -it --rm --restart=Never --image {IMAGE} --image-pull-policy=Never -- sh"
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.dir.path());
    let (out, _, code) = run_with_delayed_input(
        cmd,
        b"tty; echo sum-$((20+22)); exit 0\r",
        Duration::from_secs(60),
    );
    assert!(out.contains("sum-42"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert_eq!(code, Some(0), "{out:?}");
    let gone = cluster.kubectl(&["get", "pod", "shell"]);
    assert!(!gone.status.success(), "--rm removed the pod");
}

const DOWNWARD: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: alpha, b: beta}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
data: {token: czNjcjN0}
---
apiVersion: v1
kind: Pod
metadata:
  name: dw
  labels: {app: dw, tier: silver}
  annotations: {note: "two\nlines", owner: "team \"a\""}
spec:
  terminationGracePeriodSeconds: 1
  serviceAccountName: default
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    resources:
      limits: {cpu: 1500m, memory: 64Mi}
      requests: {cpu: 250m, memory: 32Mi}
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: POD_UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
    - {name: OWNER, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['owner']"}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    - {name: CPU_REQ_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
    - {name: MEM_LIMIT_MI, valueFrom: {resourceFieldRef: {containerName: main, resource: limits.memory, divisor: 1Mi}}}
    - {name: MEM_REQ, valueFrom: {resourceFieldRef: {resource: requests.memory}}}
    volumeMounts: [{name: info, mountPath: /etc/podinfo}, {name: all, mountPath: /etc/all}]
  volumes:
  - name: all
    projected:
      defaultMode: 0440
      sources:
      - configMap: {name: cfg, items: [{key: a, path: conf/a.txt}]}
      - secret: {name: sec}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
      - configMap: {name: absent, optional: true}
  - name: info
    downwardAPI:
      items:
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
      - {path: sub/tier, fieldRef: {fieldPath: "metadata.labels['tier']"}}
      - {path: cpu_limit_m, resourceFieldRef: {containerName: main, resource: limits.cpu, divisor: 1m}}
      - {path: mem_request, resourceFieldRef: {containerName: main, resource: requests.memory, divisor: 1Ki}}
---
apiVersion: v1
kind: Pod
metadata: {name: badref}
spec:
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    env: [{name: X, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1Mi}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: tokenpod}
spec:
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts: [{name: api, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]
  volumes:
  - name: api
    projected:
      sources: [{serviceAccountToken: {path: token, expirationSeconds: 3607}}]
"#;

#[test]
fn downward_api_env_and_volume_files() {
    if skip() {
        return;
    }
    let (cluster, _kubelet) = start_with_kubelet();
    // create, not apply: apply's last-applied annotation would be in the annotations file.
    let file = cluster.dir.path().join("dw.yaml");
    std::fs::write(&file, DOWNWARD).unwrap();
    cluster.ok(&["create", "-f", file.to_str().unwrap()]);
    cluster.ok(&["wait", "--for=condition=Ready", "pod/dw", "--timeout=30s"]);
    let pod = cluster.json(&["get", "pod", "dw"]);
    let env = cluster.ok(&["exec", "dw", "--", "sh", "-c", "env"]);
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing from {env}"))
            .to_string()
    };
    assert_eq!(var("POD_NAME"), "dw");
    assert_eq!(var("POD_NS"), "default");
    assert_eq!(var("POD_UID"), pod["metadata"]["uid"].as_str().unwrap());
    assert_eq!(var("TIER"), "silver");
    assert_eq!(var("OWNER"), "team \"a\"");
    assert_eq!(var("NODE"), pod["spec"]["nodeName"].as_str().unwrap());
    assert_eq!(var("SA"), "default");
    assert_eq!(var("POD_IP"), pod["status"]["podIP"].as_str().unwrap());
    assert!(var("POD_IP").starts_with("127."), "loopback pod IP");
    assert_eq!(var("HOST_IP"), "127.0.0.1");
    assert_eq!(var("CPU_LIMIT"), "2", "1500m rounded up to whole CPUs");
    assert_eq!(var("CPU_REQ_M"), "250");
    assert_eq!(var("MEM_LIMIT_MI"), "64");
    assert_eq!(var("MEM_REQ"), (32 * 1024 * 1024).to_string());

    let cat = |p: &str| cluster.ok(&["exec", "dw", "--", "cat", &format!("/etc/podinfo/{p}")]);
    assert_eq!(cat("name"), "dw");
    assert_eq!(cat("labels"), "app=\"dw\"\ntier=\"silver\"");
    assert_eq!(
        cat("annotations"),
        "note=\"two\\nlines\"\nowner=\"team \\\"a\\\"\""
    );
    assert_eq!(cat("sub/tier"), "silver");
    assert_eq!(cat("cpu_limit_m"), "1500");
    assert_eq!(cat("mem_request"), "32768");

    // A projected volume: a configMap item, a whole secret and a downward field together.
    let all = |p: &str| cluster.ok(&["exec", "dw", "--", "cat", &format!("/etc/all/{p}")]);
    assert_eq!(all("conf/a.txt"), "alpha");
    assert_eq!(all("token"), "s3cr3t");
    assert_eq!(all("ns"), "default");
    let mode = cluster.ok(&["exec", "dw", "--", "stat", "-c", "%a", "/etc/all/token"]);
    assert_eq!(mode.trim(), "440");
    let listing = cluster.ok(&["exec", "dw", "--", "ls", "/etc/all"]);
    assert!(
        !listing.contains('b'),
        "only the listed configMap item: {listing}"
    );

    // A label change reaches the files of the running container (not its env).
    cluster.ok(&["label", "pod", "dw", "tier=gold", "--overwrite"]);
    poll_with_last(Duration::from_secs(10), "the labels file update", || {
        let labels = cat("labels");
        if labels == "app=\"dw\"\ntier=\"gold\"" {
            Ok(())
        } else {
            Err(format!("{labels:?}"))
        }
    });
    assert_eq!(cat("sub/tier"), "gold");
    cluster.ok(&["annotate", "pod", "dw", "owner-"]);
    poll(
        Duration::from_secs(10),
        "the annotations file update",
        || (cat("annotations") == "note=\"two\\nlines\"").then_some(()),
    );

    // The message of `pod`'s CreateContainerConfigError, once it has one.
    let config_error = |pod: &str| {
        let waiting = poll_with_last(
            Duration::from_secs(20),
            &format!("{pod}'s CreateContainerConfigError"),
            || {
                let p = cluster.json(&["get", "pod", pod]);
                match p.pointer("/status/containerStatuses/0/state/waiting") {
                    Some(w) if w["reason"] == "CreateContainerConfigError" => Ok(w.clone()),
                    _ => Err(p),
                }
            },
        );
        waiting["message"].as_str().unwrap().to_string()
    };
    // A divisor that does not fit the resource is a clear container config error.
    let msg = config_error("badref");
    assert!(
        msg.contains("divisor \"1Mi\" for cpu must be one of 1m, 1"),
        "{msg}"
    );
    let msg = config_error("tokenpod");
    assert!(
        msg.contains("volume \"api\": projected serviceAccountToken sources are not supported"),
        "{msg}"
    );
}

const EARLY_LOOKUP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: early}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sh", "-c", "nslookup web.default.svc.cluster.local; echo done"]
"#;

const HEADLESS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: hl}
spec:
  clusterIP: None
  selector: {app: member}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: member, labels: {app: member}}
spec:
  hostname: m-0
  subdomain: hl
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#;

/// `nslookup NAME` in pod `box`: the addresses it found, and its whole output. (busybox
/// tries every search domain and exits 1 if any is NXDOMAIN, as it does against CoreDNS,
/// so the exit code says little.)
fn nslookup(cluster: &common::TestCluster, name: &str) -> (Vec<String>, String) {
    let o = cluster.kubectl(&["exec", "box", "--", "nslookup", name]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let found = out
        .lines()
        .filter_map(|l| l.strip_prefix("Address: "))
        .map(|a| a.trim().to_string())
        .collect();
    (found, out)
}

/// Waits (10 s at most) until `name` resolves in pod `box` to `ip` alone.
fn await_answer(cluster: &common::TestCluster, name: &str, ip: &str, what: &str) {
    poll_with_last(Duration::from_secs(10), what, || {
        let (found, out) = nslookup(cluster, name);
        if found == [ip] { Ok(()) } else { Err(out) }
    });
}

#[test]
fn pods_resolve_service_names_through_their_resolver() {
    if skip() {
        return;
    }
    let (cluster, _kubelet) = start_with_kubelet();
    cluster.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
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
    let (web, db) = (ip_of("web", "default"), ip_of("db", "other"));
    apply(&cluster, "box", SLEEPER);
    // The resolver is up before a pod's containers start: a lookup at once succeeds.
    apply(&cluster, "early", EARLY_LOOKUP);
    cluster.ok(&["wait", "--for=condition=Ready", "pod/box", "--timeout=30s"]);
    let resolv = cluster.ok(&["exec", "box", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "nameserver 127.0.0.53\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    );
    // The responder comes up with the pod's namespace (within a reconcile or two).
    await_answer(
        &cluster,
        "web.default.svc.cluster.local",
        &web,
        "a DNS answer",
    );
    let early = poll_with_last(
        Duration::from_secs(20),
        "the early lookup to finish",
        || {
            let logs = cluster.kubectl(&["logs", "early"]);
            let text = String::from_utf8_lossy(&logs.stdout).into_owned();
            if text.contains("done") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    );
    assert!(early.contains(&format!("Address: {web}")), "{early}");
    for name in ["web", "web.default", "web.default.svc"] {
        let (found, out) = nslookup(&cluster, name);
        assert_eq!(found, [web.as_str()], "{name}: {out}");
    }
    let (found, out) = nslookup(&cluster, "db.other");
    assert_eq!(found, [db.as_str()], "db.other: {out}");
    // Short names are relative to the pod's own namespace; nothing is forwarded.
    for name in ["db", "nope.default.svc.cluster.local", "example.com"] {
        let (found, out) = nslookup(&cluster, name);
        assert!(
            found.is_empty() && out.contains("NXDOMAIN"),
            "{name}: {out}"
        );
    }
    // A headless Service: its ready endpoints, and its pods by hostname.subdomain.
    apply(&cluster, "headless", HEADLESS);
    cluster.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/member",
        "--timeout=30s",
    ]);
    let member_ip = cluster.json(&["get", "pod", "member"])["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    await_answer(&cluster, "hl", &member_ip, "the headless service's answer");
    for name in ["m-0.hl", "m-0.hl.default.svc.cluster.local"] {
        let (found, out) = nslookup(&cluster, name);
        assert_eq!(found, [member_ip.as_str()], "{name}: {out}");
    }

    // A Service created later resolves too.
    cluster.ok(&["create", "service", "clusterip", "late", "--tcp=81:81"]);
    let late = ip_of("late", "default");
    await_answer(&cluster, "late", &late, "the late service to resolve");
}

const UDP_SERVICE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: udp-backend, labels: {app: udp}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: hoist.test/web:1
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    ports: [{containerPort: 9999, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: udp}
spec:
  type: NodePort
  selector: {app: udp}
  ports: [{name: echo, protocol: UDP, port: 5300, targetPort: 9999}]
"#;

/// The network namespace of a running pod (the kubelet names it after the pod's uid).
fn pod_netns(cluster: &common::TestCluster, pod: &str) -> std::path::PathBuf {
    let p = cluster.json(&["get", "pod", pod]);
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let ip = p["status"]["podIP"].as_str().unwrap().parse().unwrap();
    hoist_runtime::PodNetwork::existing(uid, ip)
        .expect("the pod's namespace exists")
        .path
}

/// Sends `msg` from `sock` to `to` every 200 ms (a 150 ms wait for the reply, then
/// [`poll`]'s 50 ms) until a reply comes (10 s at most).
fn udp_round_trip(
    sock: &std::net::UdpSocket,
    to: std::net::SocketAddr,
    msg: &[u8],
) -> (Vec<u8>, std::net::SocketAddr) {
    sock.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let mut buf = [0u8; 2048];
    poll(
        Duration::from_secs(10),
        &format!("a UDP reply from {to}"),
        || {
            sock.send_to(msg, to).unwrap();
            let (n, from) = sock.recv_from(&mut buf).ok()?;
            Some((buf[..n].to_vec(), from))
        },
    )
}

#[test]
fn udp_service_ports_forward_from_pods_and_node_ports() {
    if skip() {
        return;
    }
    let (cluster, _kubelet) = start_with_kubelet();
    apply(&cluster, "udp", UDP_SERVICE);
    apply(&cluster, "box", SLEEPER);
    for p in ["udp-backend", "box"] {
        cluster.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=30s",
        ]);
    }
    // The backend: a UDP echo server in the backend pod's namespace (busybox has no UDP
    // server applet, so the test binds it there itself).
    let backend_ip: std::net::Ipv4Addr =
        cluster.json(&["get", "pod", "udp-backend"])["status"]["podIP"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let server = hoist_runtime::netns::bind_udp(
        &pod_netns(&cluster, "udp-backend"),
        (backend_ip, 9999).into(),
    )
    .unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let echo = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = server.recv_from(&mut buf) {
                    let mut reply = b"echo:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = server.send_to(&reply, from);
                }
            }
        })
    };
    let svc = cluster.json(&["get", "svc", "udp"]);
    let cip: std::net::Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;

    // From the client pod's namespace to ClusterIP:5300; the reply comes from there too.
    let client = hoist_runtime::netns::bind_udp(
        &pod_netns(&cluster, "box"),
        (std::net::Ipv4Addr::LOCALHOST, 0).into(),
    )
    .unwrap();
    let (reply, from) = udp_round_trip(&client, (cip, 5300).into(), b"ping");
    assert_eq!(reply, b"echo:ping");
    assert_eq!(from, (cip, 5300).into());
    // The same flow again, and a larger datagram.
    let big = vec![b'x'; 1200];
    let (reply, _) = udp_round_trip(&client, (cip, 5300).into(), &big);
    assert_eq!(reply.len(), 5 + 1200);

    // From the host to 127.0.0.1:nodePort.
    let host = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (reply, from) = udp_round_trip(&host, ([127, 0, 0, 1], node_port).into(), b"host");
    assert_eq!(reply, b"echo:host");
    assert_eq!(from, ([127, 0, 0, 1], node_port).into());

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    echo.join().unwrap();
}
