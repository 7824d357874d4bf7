//! Kubelet benchmark (root + runc), printed as a table with the targets: pod create (POST)
//! → container running for a cached `scratch` + busybox image over N sequential pods;
//! D single-replica Deployments POSTed at once → all Available; process RSS with them.
//!
//! With `--services`, one ClusterIP Service per Deployment is created too, and once the
//! proxy has opened its listeners (pods × Services) the table adds the proxy's cost:
//! listening sockets, threads, RSS and CPU while idle.
//!
//! Run: `sudo cargo run --release -p hoist-cluster --features bench --bin hoist-kubelet-bench -- [N] [D] [--services]`

use std::time::{Duration, Instant};

use hoist_cluster::daemon::request;
use hoist_cluster::kubelet::{self, KubeletConfig};
use hoist_oci::manifest::ImageConfig;
use hoist_oci::{Digest, LayerBuilder, LayerSpec, LocalStore, Platform, RawManifest, Reference};

fn main() {
    if let Err(e) = kubelet::check_host() {
        eprintln!("cannot run the kubelet benchmark: {e}");
        std::process::exit(2);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_services = args.iter().any(|a| a == "--services");
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n: usize = numbers.first().copied().unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let store = put_image(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = hoist_cluster::ServerConfig {
        data_dir: dir.path().join("data"),
        addr: "127.0.0.1:0".parse().unwrap(),
        allow_non_loopback: false,
    };
    let server = rt.block_on(hoist_cluster::start(cfg)).unwrap();
    let k = dir.path().join("kubelet");
    let kubelet = {
        let _g = rt.enter();
        kubelet::start(
            server.app.clone(),
            KubeletConfig {
                runc_root: k.join("runc"),
                pods_dir: k.join("pods"),
                image_cache: k.join("images"),
                ipam_file: k.join("ipam.json"),
                image_store: store,
            },
        )
        .unwrap()
    };
    let deployments: usize = numbers.get(1).copied().unwrap_or(150);
    let mut times = Vec::new();
    // Pod 0 unpacks the image into the cache; the timed pods find it there.
    for i in 0..=n {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p{i}"}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"bench/sleeper:1","imagePullPolicy":"Never","command":["sleep","3600"]}}]}}}}"#
        );
        let t = Instant::now();
        let (code, b) = request(
            server.addr,
            &server.pki,
            true,
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(("application/json", body.as_bytes())),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(code, 201, "{b}");
        loop {
            let pod = server
                .app
                .store
                .get("/pods", "default", &format!("p{i}"))
                .unwrap()
                .unwrap();
            if pod
                .pointer("/status/containerStatuses/0/state/running")
                .is_some()
            {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "pod p{i} never ran");
            std::thread::sleep(Duration::from_millis(1));
        }
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    for i in 0..=n {
        let _ = request(
            server.addr,
            &server.pki,
            true,
            "DELETE",
            &format!("/api/v1/namespaces/default/pods/p{i}"),
            None,
            Duration::from_secs(10),
        );
    }
    let t = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let (addr, pki) = (server.addr, server.pki.clone());
            std::thread::spawn(move || {
                for i in (w..deployments).step_by(4) {
                    let body = format!(
                        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"d{i}"}},"spec":{{"replicas":1,"selector":{{"matchLabels":{{"app":"d{i}"}}}},"template":{{"metadata":{{"labels":{{"app":"d{i}"}}}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"bench/sleeper:1","imagePullPolicy":"Never","command":["sleep","3600"]}}]}}}}}}}}"#
                    );
                    let (code, b) = request(
                        addr,
                        &pki,
                        true,
                        "POST",
                        "/apis/apps/v1/namespaces/default/deployments",
                        Some(("application/json", body.as_bytes())),
                        Duration::from_secs(30),
                    )
                    .unwrap();
                    assert_eq!(code, 201, "{b}");
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let all_available = loop {
        let (items, _) = server.app.store.list("apps/deployments", None).unwrap();
        let available = items
            .iter()
            .filter(|d| {
                d.pointer("/status/availableReplicas")
                    .and_then(|v| v.as_i64())
                    == Some(1)
            })
            .count();
        if available == deployments {
            break Some(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(180) {
            eprintln!("only {available}/{deployments} deployments available after 180 s");
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let rss_mb = rss_mb();
    let threads_now = thread_count();
    let services = with_services.then(|| create_services(&server, deployments));
    let t_down = Instant::now();
    kubelet.shutdown();
    let down = t_down.elapsed();
    rt.block_on(server.shutdown());
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!("| benchmark | result | target |\n|---|---|---|");
    println!(
        "| pod create → running, cached image ({n} pods, sequential) p50 | {:.0} ms | <= 300 ms |",
        pct(0.5)
    );
    println!("| same, p90 | {:.0} ms | |", pct(0.9));
    println!("| same, max | {:.0} ms | |", pct(1.0));
    println!(
        "| {deployments} Deployments (1 replica) POSTed at once → all Available | {} | <= 15 s |",
        all_available.map_or("not reached in 180 s".to_string(), |d| format!(
            "{:.1} s",
            d.as_secs_f64()
        ))
    );
    println!(
        "| server + kubelet RSS with those pods running (one process) | {rss_mb:.0} MB | report |"
    );
    println!("| threads in that process | {threads_now} | report |");
    if let Some(svc) = &services {
        println!(
            "| {deployments} Services POSTed → proxy listeners open (socket fds settle) | {} | report |",
            svc.settled
                .map_or("not settled in 300 s".to_string(), |d| format!(
                    "{:.1} s",
                    d.as_secs_f64()
                ))
        );
        println!(
            "| socket fds in the process with {deployments} pods × {deployments} Services | {} | report |",
            svc.sockets
        );
        println!("| threads with those Services | {} | report |", svc.threads);
        println!(
            "| RSS with those Services | {:.0} MB | report |",
            svc.rss_mb
        );
        println!(
            "| CPU of the process while idle with those Services (10 s window) | {:.1} % of a core | report |",
            svc.idle_cpu_pct
        );
    }
    println!(
        "| kubelet shutdown (stop + remove every container) | {:.1} s | |",
        down.as_secs_f64()
    );
}

/// The proxy's cost once every pod has a listener for every Service.
struct ServiceCost {
    settled: Option<Duration>,
    sockets: usize,
    threads: usize,
    rss_mb: f64,
    idle_cpu_pct: f64,
}

/// POSTs Service `d{i}` (port 80 → 8080, selecting Deployment `d{i}`'s pod) for each
/// Deployment, waits until the number of socket fds in this process stops growing (the
/// proxy has opened its listeners), then measures threads, RSS and idle CPU.
fn create_services(server: &hoist_cluster::RunningServer, count: usize) -> ServiceCost {
    let t = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let (addr, pki) = (server.addr, server.pki.clone());
            std::thread::spawn(move || {
                for i in (w..count).step_by(4) {
                    let body = format!(
                        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"d{i}"}},"spec":{{"selector":{{"app":"d{i}"}},"ports":[{{"port":80,"targetPort":8080}}]}}}}"#
                    );
                    let (code, b) = request(
                        addr,
                        &pki,
                        true,
                        "POST",
                        "/api/v1/namespaces/default/services",
                        Some(("application/json", body.as_bytes())),
                        Duration::from_secs(30),
                    )
                    .unwrap();
                    assert_eq!(code, 201, "{b}");
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    // Settled: at least pods × Services sockets unchanged for 5 s, or any plateau of 30 s
    // (fewer when the process's open-file limit caps the listeners; bounded at 300 s).
    let mut last = (socket_count(), Instant::now());
    let settled = loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = socket_count();
        if now != last.0 {
            last = (now, Instant::now());
        } else if (now >= count * count && last.1.elapsed() >= Duration::from_secs(5))
            || last.1.elapsed() >= Duration::from_secs(30)
        {
            if now < count * count {
                eprintln!(
                    "proxy sockets settled at {now}, below pods × Services ({})",
                    count * count
                );
            }
            break Some(last.1.duration_since(t));
        }
        if t.elapsed() > Duration::from_secs(300) {
            eprintln!(
                "proxy sockets still at {now} after 300 s (want >= {})",
                count * count
            );
            break None;
        }
    };
    let cpu0 = cpu_ticks();
    let w = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let ticks = cpu_ticks().saturating_sub(cpu0) as f64;
    // USER_HZ is 100 on Linux.
    let idle_cpu_pct = ticks / 100.0 / w.elapsed().as_secs_f64() * 100.0;
    ServiceCost {
        settled,
        sockets: socket_count(),
        threads: thread_count(),
        rss_mb: rss_mb(),
        idle_cpu_pct,
    }
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn socket_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| {
        d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().starts_with("socket:"))
            .count()
    })
}

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn put_image(dir: &std::path::Path) -> std::path::PathBuf {
    let stage = dir.join("stage");
    std::fs::create_dir_all(stage.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", stage.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", stage.join("bin/sleep")).unwrap();
    let mut b = LayerBuilder::new().fast();
    b.add(&LayerSpec {
        from: stage,
        to: "/".into(),
        ..Default::default()
    })
    .unwrap();
    let layer = b.build().unwrap();
    let layer_bytes = layer.read().unwrap();
    let mut config = ImageConfig::empty(&Platform::linux_amd64());
    config.rootfs.diff_ids = vec![layer.diff_id.clone()];
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = Digest::of(&config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer.digest.to_string(), "size": layer.size}],
    });
    let raw = RawManifest::new(serde_json::to_vec(&manifest).unwrap(), None).unwrap();
    let path = dir.join("store");
    LocalStore::open(&path)
        .unwrap()
        .put_image(
            &Reference::parse("bench/sleeper:1").unwrap(),
            &raw,
            &[
                (config_digest, &config_bytes[..]),
                (layer.digest.clone(), &layer_bytes[..]),
            ],
        )
        .unwrap();
    path
}
