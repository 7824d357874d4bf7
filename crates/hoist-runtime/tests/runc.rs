//! Real runc, as root: pods of a scratch + busybox image built with hoist-oci.

mod support;

use std::time::{Duration, Instant};

use hoist_runtime::{ContainerSpec, ImageUnpacker, RootfsMode, parse_record};
use support::{Env, PAGE, runnable};

fn sh(script: &str) -> ContainerSpec {
    ContainerSpec {
        name: "main".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

#[test]
fn httpd_pod_serves_execs_logs_and_cleans_up() {
    if !runnable("httpd_pod_serves_execs_logs_and_cleans_up") {
        return;
    }
    let env = Env::new();
    let mut pod = env.start_pod(
        "web",
        sh("echo started; echo oops >&2; exec httpd -f -p 8080 -h /www"),
    );
    let st = env.runtime.state(&pod.id).unwrap();
    assert_eq!(st.status, "running", "{st:?}");

    let resp = pod.http_get(8080, "/index.html", Duration::from_secs(10));
    assert!(
        resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"),
        "{resp}"
    );
    assert!(resp.ends_with(PAGE), "{resp}");

    let out = env
        .runtime
        .exec_output(
            &pod.id,
            &["cat".into(), "/etc/hostname".into()],
            b"",
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(
        (out.code, String::from_utf8_lossy(&out.stdout).as_ref()),
        (0, "web\n")
    );
    // Exec carries stdin through and reports the process's own exit code.
    let out = env
        .runtime
        .exec_output(
            &pod.id,
            &["sh".into(), "-c".into(), "cat; echo err >&2; exit 7".into()],
            b"piped-in\n",
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(out.code, 7);
    assert_eq!(out.stdout, b"piped-in\n");
    assert_eq!(out.stderr, b"err\n");
    // The pod's IP is on lo inside its namespace, and the env precedence held.
    let out = env
        .runtime
        .exec_output(
            &pod.id,
            &[
                "sh".into(),
                "-c".into(),
                "ip -4 addr show lo; echo $IMAGE_ONLY $HOSTNAME".into(),
            ],
            b"",
            Duration::from_secs(10),
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("inet {}/32", pod.ip)), "{text}");
    assert!(text.contains("1 web"), "{text}");
    // The sandbox's shared /etc files are mounted.
    let out = env
        .runtime
        .exec_output(
            &pod.id,
            &["cat".into(), "/etc/hosts".into(), "/etc/resolv.conf".into()],
            b"",
            Duration::from_secs(10),
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{}\tweb\n", pod.ip)), "{text}");
    assert!(text.contains("127.64.255.1\tweb.default.svc\n"), "{text}");
    assert!(text.contains("search default.svc.cluster.local"), "{text}");

    let log = pod.wait_log("stderr F oops", Duration::from_secs(5));
    let recs: Vec<_> = log
        .lines()
        .map(|l| parse_record(l).unwrap_or_else(|| panic!("not CRI: {l:?}")))
        .collect();
    assert!(
        recs.iter()
            .any(|r| r.stream == "stdout" && !r.partial && r.text == "started"),
        "{log}"
    );
    assert!(
        recs.iter()
            .any(|r| r.stream == "stderr" && r.text == "oops"),
        "{log}"
    );
    let (text, _) = hoist_runtime::read_log(&pod.log_path(), &Default::default()).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("started\n") && text.contains("oops\n"),
        "{text}"
    );

    // httpd as pid 1 ignores SIGTERM: the grace period runs out and SIGKILL ends it.
    let t = Instant::now();
    let exited = env
        .runtime
        .kill(&pod.id, Duration::from_millis(300))
        .unwrap();
    assert_eq!(exited.code, Some(137));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let id = pod.id.clone();
    let ns_path = pod.net().path.clone();
    pod.teardown();
    assert!(env.runtime.list().unwrap().iter().all(|c| c.id != id));
    assert!(!ns_path.exists(), "netns {} still there", ns_path.display());
    assert!(
        !hoist_runtime::netns::list_netns()
            .unwrap()
            .contains(&format!("hoist-{id}"))
    );
    assert!(env.ips.allocations().unwrap().is_empty());
}

#[test]
fn exit_code_is_reported() {
    if !runnable("exit_code_is_reported") {
        return;
    }
    let env = Env::new();
    let mut pod = env.start_pod("exits", sh("echo bye; exit 3"));
    let exited = env.runtime.wait(&pod.id, Duration::from_secs(10)).unwrap();
    assert_eq!(exited.map(|e| e.code), Some(Some(3)));
    assert_eq!(env.runtime.state(&pod.id).unwrap().status, "stopped");
    assert!(
        pod.wait_log("stdout F bye", Duration::from_secs(5))
            .contains("stdout F bye")
    );
    pod.teardown();
}

#[test]
fn sigterm_within_grace_ends_a_trapping_container() {
    if !runnable("sigterm_within_grace_ends_a_trapping_container") {
        return;
    }
    let env = Env::new();
    let mut pod = env.start_pod(
        "trap",
        sh("trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.05; done"),
    );
    pod.wait_log("stdout F ready", Duration::from_secs(5));
    let t = Instant::now();
    let exited = env.runtime.kill(&pod.id, Duration::from_secs(20)).unwrap();
    assert_eq!(exited.code, Some(0), "SIGTERM should have run the trap");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        pod.wait_log("got-term", Duration::from_secs(2))
            .contains("stdout F got-term")
    );
    pod.teardown();
}

#[test]
fn two_pods_get_distinct_loopback_ips_and_copy_rootfs_works() {
    if !runnable("two_pods_get_distinct_loopback_ips_and_copy_rootfs_works") {
        return;
    }
    let env = Env::new();
    let copy = ImageUnpacker::new(env.dir.path().join("cache-copy"))
        .unwrap()
        .with_mode(RootfsMode::Copy);
    let mut a = env.start_pod("a", sh("exec httpd -f -p 80 -h /www"));
    let mut spec = sh("echo written > /www/index.html; exec httpd -f -p 80 -h /www");
    spec.user = None;
    let mut b = env.start_pod_with(&copy, "b", &mut spec);
    assert_ne!(a.ip, b.ip);
    for ip in [a.ip, b.ip] {
        let o = ip.octets();
        assert!(
            o[0] == 127 && (64..128).contains(&o[1]),
            "{ip} outside 127.64.0.0/10"
        );
    }
    // Same port in both pods: separate namespaces.
    assert!(a.http_get(80, "/", Duration::from_secs(10)).ends_with(PAGE));
    let rb = b.http_get(80, "/", Duration::from_secs(10));
    assert!(rb.ends_with("written\n"), "{rb}");
    // The copy-mode write stayed in b's rootfs; the shared cache is untouched.
    let cached = std::fs::read_to_string(env.image().rootfs.join("www/index.html")).unwrap();
    assert_eq!(cached, PAGE);
    assert!(a.http_get(80, "/", Duration::from_secs(10)).ends_with(PAGE));
    a.teardown();
    b.teardown();
}

#[test]
fn bad_command_fails_with_runc_reason_and_leaves_nothing() {
    if !runnable("bad_command_fails_with_runc_reason_and_leaves_nothing") {
        return;
    }
    let env = Env::new();
    let image = env.image();
    let dir = env.dir.path().join("badpod");
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = ImageUnpacker::release_rootfs(self.0);
        }
    }
    let _unmount = Unmount(&dir);
    let rootfs = env.unpacker.prepare_rootfs(&image, &dir).unwrap();
    let id = support::unique("bad");
    let spec = ContainerSpec {
        name: "bad".into(),
        command: vec!["/no/such/binary".into()],
        ..Default::default()
    };
    hoist_runtime::Bundle::write(&dir, &id, &rootfs.path, &image.config, &spec).unwrap();
    let err = env.runtime.run(&id, &dir, &dir.join("log")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/no/such/binary"), "{msg}");
    assert!(env.runtime.list().unwrap().iter().all(|c| c.id != id));
    ImageUnpacker::release_rootfs(&dir).unwrap();
}

#[test]
fn user_bind_mounts_and_readonly_rootfs_apply() {
    if !runnable("user_bind_mounts_and_readonly_rootfs_apply") {
        return;
    }
    let env = Env::new();
    let vol = env.dir.path().join("configmap");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("key"), "value-from-volume").unwrap();
    let empty_dir = env.dir.path().join("emptydir");
    std::fs::create_dir_all(&empty_dir).unwrap();
    std::fs::set_permissions(
        &empty_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut spec = sh(
        "id -u; id -g; cat /config/key; echo; echo scratch > /scratch/out; \
         touch /rootfile 2>/dev/null && echo rootfs-writable || echo rootfs-readonly; \
         echo x > /config/new 2>/dev/null && echo config-writable || echo config-readonly",
    );
    spec.user = Some((1000, 1001));
    spec.readonly_rootfs = true;
    spec.mounts = vec![
        hoist_runtime::BindMount {
            source: vol,
            destination: "/config".into(),
            readonly: true,
        },
        hoist_runtime::BindMount {
            source: empty_dir.clone(),
            destination: "/scratch".into(),
            readonly: false,
        },
    ];
    spec.working_dir = Some("/scratch".into());
    let mut pod = env.start_pod("vols", spec);
    let exited = env.runtime.wait(&pod.id, Duration::from_secs(10)).unwrap();
    assert_eq!(exited.map(|e| e.code), Some(Some(0)));
    let log = pod.wait_log("config-", Duration::from_secs(5));
    let lines: Vec<String> = log
        .lines()
        .filter_map(parse_record)
        .filter(|r| r.stream == "stdout")
        .map(|r| r.text)
        .collect();
    assert_eq!(
        lines,
        [
            "1000",
            "1001",
            "value-from-volume",
            "rootfs-readonly",
            "config-readonly"
        ],
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(empty_dir.join("out")).unwrap(),
        "scratch\n"
    );
    pod.teardown();
}

#[test]
fn a_restarted_runtime_lists_adopts_and_kills_running_containers() {
    if !runnable("a_restarted_runtime_lists_adopts_and_kills_running_containers") {
        return;
    }
    let env = Env::new();
    let mut pod = env.start_pod("adopt", sh("exec httpd -f -p 8080 -h /www"));
    // A second Runtime on the same runc root stands in for hoist after a restart.
    let again = hoist_runtime::Runtime::new(env.runtime.runc_root()).unwrap();
    let listed = again.list().unwrap();
    let st = listed
        .iter()
        .find(|c| c.id == pod.id)
        .unwrap_or_else(|| panic!("{} not in {listed:?}", pod.id));
    assert!(st.is_running(), "{st:?}");
    assert_eq!(st.bundle, pod.dir);
    let adopted = again.adopt(&pod.id).unwrap();
    assert_eq!(adopted.pid, st.pid);
    assert_eq!(
        again.wait(&pod.id, Duration::from_millis(50)).unwrap(),
        None
    );
    // The exit code of a container we did not start cannot be known: None, not a guess.
    let exited = again.kill(&pod.id, Duration::from_millis(200)).unwrap();
    assert_eq!(exited.code, None);
    again.delete(&pod.id).unwrap();
    assert!(again.list().unwrap().iter().all(|c| c.id != pod.id));
    let err = again.state(&pod.id).unwrap_err();
    assert!(
        matches!(err, hoist_runtime::Error::NoSuchContainer { .. }),
        "{err}"
    );
    pod.started = false;
    pod.teardown();
}

#[test]
fn remove_everything_leaves_no_container_mount_or_netns() {
    if !runnable("remove_everything_leaves_no_container_mount_or_netns") {
        return;
    }
    let env = Env::new();
    let mut a = env.start_pod("gone-a", sh("exec httpd -f -p 80 -h /www"));
    let mut b = env.start_pod("gone-b", sh("sleep 1000"));
    let root = env.dir.path().join("pods");
    let netns: Vec<String> = [&a, &b].iter().map(|p| p.net().name.clone()).collect();
    let done = hoist_runtime::remove_everything(&env.runtime, &root, &env.ips).unwrap();
    let mut ids = done.containers.clone();
    ids.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert!(env.runtime.list().unwrap().is_empty());
    let left = hoist_runtime::netns::list_netns().unwrap();
    assert!(netns.iter().all(|n| !left.contains(n)), "{left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "overlay mounts left"
    );
    assert!(env.ips.allocations().unwrap().is_empty());
    assert!(std::fs::read_dir(&root).unwrap().next().is_none());
    let mut ns = done.namespaces.clone();
    ns.sort();
    let mut want_ns = netns.clone();
    want_ns.sort();
    assert_eq!(ns, want_ns, "only this cluster's namespaces");
    // Nothing left for the guards to do.
    for p in [&mut a, &mut b] {
        p.started = false;
        p.container = None;
        p.sandbox = None;
    }
}

#[test]
fn exec_with_a_terminal_reads_writes_resizes_and_reports_exit() {
    if !runnable("exec_with_a_terminal_reads_writes_resizes_and_reports_exit") {
        return;
    }
    use std::io::{Read, Write};
    let env = Env::new();
    let mut pod = env.start_pod("tty", sh("exec sleep 1000"));
    // busybox has no `stty` symlink in the image: call it through busybox.
    let script = "busybox stty size; read line; busybox stty size; echo got:$line; exit 4";
    let t = env
        .runtime
        .exec_tty(
            &pod.id,
            &["sh".into(), "-c".into(), script.into()],
            &[],
            100,
            30,
        )
        .unwrap();
    let mut term = t.terminal.try_clone().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut read_until = |needle: &str, out: &mut Vec<u8>| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !String::from_utf8_lossy(out).contains(needle) && Instant::now() < deadline {
            match term.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(out).into_owned()
    };
    let text = read_until("30 100", &mut out);
    assert!(text.contains("30 100"), "initial size: {text:?}");
    t.resize(80, 24).unwrap();
    t.terminal
        .try_clone()
        .unwrap()
        .write_all(b"hello\n")
        .unwrap();
    let text = read_until("got:hello", &mut out);
    assert!(
        text.contains("24 80") && text.contains("got:hello"),
        "{text:?}"
    );
    assert_eq!(t.wait(Duration::from_secs(10)), Some(4));
    pod.teardown();
}

#[test]
fn output_survives_a_detached_log_reader_and_reattaches() {
    if !runnable("output_survives_a_detached_log_reader_and_reattaches") {
        return;
    }
    let env = Env::new();
    let mut pod = env.start_pod(
        "chatty",
        sh("i=0; while true; do echo line$i; i=$((i+1)); sleep 0.01; done"),
    );
    pod.wait_log("stdout F line3", Duration::from_secs(5));
    // hoist "goes away": nobody reads the FIFOs for a while; the container must not die.
    env.runtime.detach_logs(&pod.id);
    std::thread::sleep(Duration::from_millis(400));
    let before = std::fs::read_to_string(pod.log_path()).unwrap();
    let again = hoist_runtime::Runtime::new(env.runtime.runc_root()).unwrap();
    assert!(again.state(&pod.id).unwrap().is_running(), "SIGPIPE'd?");
    let new_log = pod.dir.join("reattached.log");
    again.reattach_logs(&pod.id, &pod.dir, &new_log).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = String::new();
    while Instant::now() < deadline {
        after = std::fs::read_to_string(&new_log).unwrap_or_default();
        if after.lines().count() > 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let nums = |t: &str| -> Vec<u64> {
        t.lines()
            .filter_map(parse_record)
            .filter_map(|r| r.text.strip_prefix("line")?.parse().ok())
            .collect()
    };
    let (b, a) = (nums(&before), nums(&after));
    assert!(
        !b.is_empty() && a.len() > 50,
        "before {b:?} after {}",
        a.len()
    );
    // Nothing lost or repeated: the new log continues where the old one stopped
    // (the line the old reader held half-read may appear in neither, at most one).
    let last = *b.last().unwrap();
    assert!(
        a[0] > last && a[0] <= last + 2,
        "old ended at {last}, new starts at {}",
        a[0]
    );
    assert!(a.windows(2).all(|w| w[1] == w[0] + 1), "gap in {a:?}");
    pod.teardown();
}
