//! Benchmarks against real local registries (no network, no downloads):
//!  1. one-file change appended onto a ~100 MB base already in the registry, pushed;
//!  2. `hoist` copy vs `skopeo copy` of an 8-layer ~150 MB image between two registries,
//!     run alternately.
//!
//! Run: `cargo bench -p hoist-oci --bench oci` (prints a Markdown table).

#[path = "../tests/support/registry.rs"]
mod registry;

use std::process::Command;
use std::time::{Duration, Instant};

use hoist_oci::auth::Credential;
use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push};
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::copy::{CopyOptions, Location, copy};
use hoist_oci::{LayerSpec, Reference};
use registry::{PASS, Registry, USER, pseudo_random, write_file};

const ROUNDS: usize = 5;

/// CPU time (user + system) this process has used, from /proc/self/stat, in ms.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks * 10.0 // USER_HZ is 100 on Linux
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

async fn base_image(
    c: &RegistryClient,
    target: &Reference,
    layers: usize,
    layer_size: usize,
    tmp: &std::path::Path,
) {
    let mut specs = vec![];
    for i in 0..layers {
        let d = tmp.join(format!("layer{i}"));
        write_file(
            &d.join("blob.bin"),
            &pseudo_random(1000 + i as u64, layer_size),
            0o644,
        );
        specs.push(LayerSpec {
            from: d,
            to: format!("/data/{i}"),
            ..Default::default()
        });
    }
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: specs,
        ..Default::default()
    };
    build_and_push(c, &spec, target, &BuildOptions::default())
        .await
        .expect("push base");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let open = Registry::start(false);
    let authed = Registry::start(true);
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = ClientOptions::default();
    if let Some(n) = std::env::var("HOIST_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.max_concurrency = n;
    }
    let only_copy = std::env::var_os("HOIST_BENCH_ONLY_COPY").is_some();
    let c = RegistryClient::new(opts).unwrap();
    c.set_credential(
        &authed.addr,
        Credential::Basic {
            username: USER.into(),
            password: PASS.into(),
        },
    );
    let mut rows: Vec<String> = vec![];

    // 1. One-file change onto a ~100 MB base.
    if !only_copy {
        let base = Reference::parse(&open.reference("bench/base:1")).unwrap();
        rt.block_on(base_image(
            &c,
            &base,
            4,
            25 * 1024 * 1024,
            &tmp.path().join("base"),
        ));
        let app = tmp.path().join("app");
        for i in 0..50 {
            write_file(
                &app.join(format!("static/f{i}.txt")),
                format!("file {i}\n").repeat(50).as_bytes(),
                0o644,
            );
        }
        write_file(&app.join("main.js"), b"console.log(0)\n", 0o644);
        let deps = tmp.path().join("deps");
        write_file(
            &deps.join("lib.bin"),
            &pseudo_random(7, 2 * 1024 * 1024),
            0o644,
        );
        let target = Reference::parse(&open.reference("bench/app:dev")).unwrap();
        let spec = BuildSpec {
            base: base.to_string(),
            layers: vec![
                LayerSpec {
                    from: deps.clone(),
                    to: "/deps".into(),
                    ..Default::default()
                },
                LayerSpec {
                    from: app.clone(),
                    to: "/app".into(),
                    ..Default::default()
                },
            ],
            cmd: Some(vec!["node".into(), "/app/main.js".into()]),
            ..Default::default()
        };
        rt.block_on(build_and_push(&c, &spec, &target, &BuildOptions::default()))
            .unwrap();
        let mut times = vec![];
        let mut uploaded = vec![];
        let mut layer_sizes = vec![];
        for round in 0..10 {
            write_file(
                &app.join("main.js"),
                format!("console.log({})\n", round + 1).as_bytes(),
                0o644,
            );
            let t = Instant::now();
            let rep = rt
                .block_on(build_and_push(&c, &spec, &target, &BuildOptions::default()))
                .unwrap();
            times.push(ms(t.elapsed()));
            assert_eq!(rep.layers_uploaded, 1);
            uploaded.push(rep.transfer.upload_bytes);
            let m = rt
                .block_on(c.get_manifest(&target))
                .unwrap()
                .image()
                .unwrap();
            layer_sizes.push(m.layers.last().unwrap().size + m.config.size);
        }
        let (lo, med, hi) = stats(&mut times);
        rows.push(format!(
        "| append: one-file change onto 100 MB base (4 layers) + 2 MB deps layer, push | {med:.1} ms | min {lo:.1} / max {hi:.1} ms; uploaded {} B/push = changed layer + config ({} B) |",
        uploaded[0], layer_sizes[0]
    ));
    }

    // 2. hoist copy vs skopeo copy, 8 layers ~150 MB, open -> authed, alternately.
    let src = Reference::parse(&open.reference("bench/big:1")).unwrap();
    rt.block_on(base_image(
        &c,
        &src,
        8,
        150 * 1024 * 1024 / 8,
        &tmp.path().join("big"),
    ));
    let (mut th, mut ts, mut cpu) = (vec![], vec![], vec![]);
    // Each copy gets a fresh destination registry: skopeo's blob-info cache would otherwise
    // mount blobs the previous round uploaded, and neither tool should find anything there.
    drop(authed);
    for round in 0..ROUNDS {
        let authed = Registry::start(true);
        c.set_credential(
            &authed.addr,
            Credential::Basic {
                username: USER.into(),
                password: PASS.into(),
            },
        );
        let dst = Reference::parse(&authed.reference(&format!("hoist/copy{round}:1"))).unwrap();
        let t = Instant::now();
        let c0 = cpu_ms();
        let rep = rt
            .block_on(copy(
                &c,
                &Location::Registry(src.clone()),
                &Location::Registry(dst),
                &CopyOptions::default(),
            ))
            .unwrap();
        th.push(ms(t.elapsed()));
        cpu.push(cpu_ms() - c0);
        assert_eq!(rep.blobs_copied, 9);
        drop(authed);
        let authed = Registry::start(true);
        let t = Instant::now();
        let out = Command::new("skopeo")
            .args([
                "copy",
                "-q",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--dest-creds",
                &format!("{USER}:{PASS}"),
            ])
            .arg(format!("docker://{src}"))
            .arg(format!("docker://{}/skopeo/copy{round}:1", authed.addr))
            .output()
            .unwrap();
        ts.push(ms(t.elapsed()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (hlo, hmed, hhi) = stats(&mut th);
    let (slo, smed, shi) = stats(&mut ts);
    let (_, cmed, _) = stats(&mut cpu);
    rows.push(format!("| copy 8 layers / 150 MB between registries: hoist | {hmed:.1} ms | min {hlo:.1} / max {hhi:.1} ms ({ROUNDS} rounds); hoist's own CPU {cmed:.0} ms |"));
    rows.push(format!("| copy 8 layers / 150 MB between registries: skopeo copy | {smed:.1} ms | min {slo:.1} / max {shi:.1} ms ({ROUNDS} rounds, alternating) |"));
    rows.push(format!(
        "| ratio skopeo / hoist (median) | {:.2}x | |",
        smed / hmed
    ));

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| benchmark | median | notes |\n|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
