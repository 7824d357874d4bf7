//! Pod start latency for a cached image and cold unpack time of the busybox image, with
//! real runc. Run as root: `cargo bench -p hoist-runtime --bench pod_start [-- --pods N]`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use hoist_runtime::{Bundle, ContainerSpec, ImageUnpacker, PodNetwork, PodSandbox, SandboxConfig};

fn stats(name: &str, target: Option<f64>, mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "| {name:<38} | {:>4} | {:>8.1} | {:>8.1} | {:>8.1} | {:>8.1} | {:>7} |",
        v.len(),
        v[0],
        pct(0.5),
        pct(0.9),
        v[v.len() - 1],
        target.map(|t| format!("≤ {t}")).unwrap_or_default()
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pods: usize = args
        .iter()
        .position(|a| a == "--pods")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(20);
    if !support::runnable("pod_start bench") {
        return;
    }
    let env = support::Env::new();

    // Cold unpack: a fresh cache each time.
    let mut unpack = vec![];
    for i in 0..10 {
        let u = ImageUnpacker::new(env.dir.path().join(format!("cold-{i}"))).unwrap();
        let t = Instant::now();
        u.unpack(&env.store, &env.reference).unwrap();
        unpack.push(ms(t.elapsed()));
    }
    let mut cached = vec![];
    env.image();
    for _ in 0..10 {
        let t = Instant::now();
        env.image();
        cached.push(ms(t.elapsed()));
    }

    // The fallback when overlay cannot be mounted: a full copy per container.
    let copier = ImageUnpacker::new(env.dir.path().join("copy-cache"))
        .unwrap()
        .with_mode(hoist_runtime::RootfsMode::Copy);
    let img = copier.unpack(&env.store, &env.reference).unwrap();
    let mut copy = vec![];
    for i in 0..5 {
        let dir = env.dir.path().join(format!("copy-{i}"));
        let t = Instant::now();
        copier.prepare_rootfs(&img, &dir).unwrap();
        copy.push(ms(t.elapsed()));
        ImageUnpacker::release_rootfs(&dir).unwrap();
    }

    // The kubelet probes once at start-up; timed apart from the pod path.
    let t = Instant::now();
    let mode = env.unpacker.rootfs_mode();
    let probe = ms(t.elapsed());

    let (mut t_ip, mut t_net, mut t_rootfs, mut t_bundle, mut t_run, mut t_total, mut t_down) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..pods {
        let id = support::unique("bench");
        let dir = env.dir.path().join("pods").join(&id);
        let t0 = Instant::now();
        let ip = env.ips.allocate(&id).unwrap();
        let t1 = Instant::now();
        let net = PodNetwork::create(&id, ip).unwrap();
        let t2 = Instant::now();
        let image = env.image();
        let rootfs = env.unpacker.prepare_rootfs(&image, &dir).unwrap();
        let t3 = Instant::now();
        let spec = ContainerSpec {
            name: "web".into(),
            command: vec!["httpd".into(), "-f".into(), "-p".into(), "80".into()],
            hostname: id.clone(),
            netns: Some(net.path.clone()),
            ..Default::default()
        };
        Bundle::write(&dir, &id, &rootfs.path, &image.config, &spec).unwrap();
        let t4 = Instant::now();
        env.runtime.run(&id, &dir, &dir.join("log")).unwrap();
        let t5 = Instant::now();
        assert!(
            env.runtime.state(&id).unwrap().is_running(),
            "{id} not running"
        );
        t_ip.push(ms(t1 - t0));
        t_net.push(ms(t2 - t1));
        t_rootfs.push(ms(t3 - t2));
        t_bundle.push(ms(t4 - t3));
        t_run.push(ms(t5 - t4));
        t_total.push(ms(t5 - t0));
        let d = Instant::now();
        env.runtime.kill(&id, Duration::ZERO).unwrap();
        env.runtime.delete(&id).unwrap();
        ImageUnpacker::release_rootfs(&dir).unwrap();
        net.delete().unwrap();
        env.ips.release(&id).unwrap();
        t_down.push(ms(d.elapsed()));
    }

    // The same path through the API the kubelet calls.
    let (mut t_sandbox, mut t_remove) = (vec![], vec![]);
    let root = env.dir.path().join("sandboxes");
    for _ in 0..pods {
        let pod_id = support::unique("sb");
        let t = Instant::now();
        let sb = PodSandbox::create(
            &root,
            &env.ips,
            &pod_id,
            &SandboxConfig {
                hostname: pod_id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let image = env.image();
        let spec = ContainerSpec {
            name: "web".into(),
            command: vec!["httpd".into(), "-f".into(), "-p".into(), "80".into()],
            ..Default::default()
        };
        let c = sb
            .start_container(&env.runtime, &env.unpacker, &image, &spec, 0)
            .unwrap();
        t_sandbox.push(ms(t.elapsed()));
        assert!(env.runtime.state(&c.id).unwrap().is_running());
        let t = Instant::now();
        PodSandbox::remove_container(&env.runtime, &c, Duration::ZERO).unwrap();
        sb.destroy(&env.runtime, &env.ips).unwrap();
        t_remove.push(ms(t.elapsed()));
    }
    // Many pods at once (a Deployment scale-up): wall time with a few worker threads.
    let burst: usize = args
        .iter()
        .position(|a| a == "--burst")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(50);
    let workers = 4;
    let t = Instant::now();
    let started: Vec<(PodSandbox, hoist_runtime::ContainerHandle)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let env = &env;
                let root = &root;
                s.spawn(move || {
                    let mut mine = vec![];
                    for _ in (w..burst).step_by(workers) {
                        let pod_id = support::unique("burst");
                        let sb =
                            PodSandbox::create(root, &env.ips, &pod_id, &SandboxConfig::default())
                                .unwrap();
                        let spec = ContainerSpec {
                            name: "web".into(),
                            command: vec!["httpd".into(), "-f".into(), "-p".into(), "80".into()],
                            ..Default::default()
                        };
                        let c = sb
                            .start_container(&env.runtime, &env.unpacker, &env.image(), &spec, 0)
                            .unwrap();
                        mine.push((sb, c));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let burst_start = ms(t.elapsed());
    let running = env
        .runtime
        .list()
        .unwrap()
        .iter()
        .filter(|c| c.is_running())
        .count();
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let t = Instant::now();
    for (sb, c) in started {
        PodSandbox::remove_container(&env.runtime, &c, Duration::ZERO).unwrap();
        sb.destroy(&env.runtime, &env.ips).unwrap();
    }
    let burst_stop = ms(t.elapsed());
    let zombies = zombie_children();

    println!(
        "hoist-runtime pod_start bench (runc {}, rootfs mode {:?}, {} pods, times in ms)\n",
        runc_version(),
        mode,
        pods
    );
    println!(
        "| step                                   |    n |      min |   median |      p90 |      max |  target |"
    );
    println!(
        "|----------------------------------------|------|----------|----------|----------|----------|---------|"
    );
    println!("{}", stats("unpack busybox image (cold)", None, unpack));
    println!("{}", stats("unpack busybox image (cached)", None, cached));
    println!("{}", stats("prepare rootfs (copy fallback)", None, copy));
    println!(
        "{}",
        stats("overlay probe (once per process)", None, vec![probe])
    );
    println!("{}", stats("allocate pod IP", None, t_ip));
    println!("{}", stats("create netns + lo + IP", None, t_net));
    println!("{}", stats("prepare rootfs (overlay)", None, t_rootfs));
    println!("{}", stats("write bundle", None, t_bundle));
    println!("{}", stats("runc run --detach (→ running)", None, t_run));
    println!(
        "{}",
        stats("pod create → running (total)", Some(300.0), t_total)
    );
    println!(
        "{}",
        stats("teardown (kill, delete, umount, netns)", None, t_down)
    );
    println!(
        "{}",
        stats("PodSandbox create+start_container", Some(300.0), t_sandbox)
    );
    println!(
        "{}",
        stats("PodSandbox remove_container+destroy", None, t_remove)
    );
    println!(
        "\nburst: {burst} pods started by {workers} threads in {burst_start:.0} ms \
         ({running} running at once; bench process RSS {rss_kib}); removed sequentially in {burst_stop:.0} ms"
    );
    println!(
        "zombie children left: {zombies}; hoist netns left: {}",
        hoist_runtime::netns::list_netns().unwrap().len()
    );
}

/// Children of this process that exited but were never reaped (should be none).
fn zombie_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // After the `(comm)` field: state, ppid.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.first() == Some(&"Z") && f.get(1) == Some(&me.as_str())
        })
        .count()
}

fn runc_version() -> String {
    let out = std::process::Command::new(hoist_runtime::find_runc().unwrap())
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("runc version ")
        .to_string()
}
