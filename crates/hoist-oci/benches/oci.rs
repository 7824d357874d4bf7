//! Benchmarks against real local registries (no network, no downloads):
//!  1. one-file change appended onto a ~100 MB base already in the registry, pushed;
//!  2. `hoist` copy vs `skopeo copy` of an 8-layer ~150 MB image between two registries,
//!     run alternately.
//!
//! Run: `cargo bench -p hoist-oci --bench oci` (prints a Markdown table).
//! Knobs: `HOIST_BENCH_ONLY_COPY=1` (skip 1), `HOIST_BENCH_ROUNDS=N` (copy rounds, default 5),
//! `HOIST_BENCH_CONCURRENCY=N` (hoist's parallel transfers), `HOIST_BENCH_RUNTIME=current`.
//!
//! The copy is CPU-bound on a small machine, so besides wall times the table gives each
//! copy's CPU: the copying tool's and both registries' (from /proc), and the requests and
//! connections the destination registry logged. Wall-clock ratios move with the machine's
//! load; the CPU figures are the steadier evidence.

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

/// CPU time (user + system) of process `pid` ("self" for this one), from /proc, in ms;
/// with `children`, the CPU of its waited-for children instead (skopeo's, once it exited).
fn proc_cpu_ms(pid: &str, children: bool) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let first = if children { 13 } else { 11 };
    let ticks: f64 = f
        .get(first)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + f.get(first + 1)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks * 10.0 // USER_HZ is 100 on Linux
}

/// CPU time of a live process in ms, with nanosecond resolution: the sum over its threads
/// of /proc/PID/task/TID/schedstat's first field (time on a CPU, user + system).
fn live_cpu_ms(pid: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return proc_cpu_ms(pid, false);
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e6
}

/// This process's (user, system) CPU in ms (10 ms resolution).
fn user_sys_ms() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (f[11] * 10.0, f[12] * 10.0)
}

fn cpu_ms() -> f64 {
    live_cpu_ms("self")
}

fn reg_cpu_ms(r: &Registry) -> f64 {
    live_cpu_ms(&r.pid().to_string())
}

/// Requests in `after` not in `before`, as `GET 3 HEAD 9 …`.
fn requests_delta(
    before: &std::collections::BTreeMap<String, usize>,
    after: &std::collections::BTreeMap<String, usize>,
) -> String {
    after
        .iter()
        .map(|(m, n)| (m, n - before.get(m).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .map(|(m, n)| format!("{m} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One copy's cost: wall time, the copying tool's CPU, and both registries' CPU.
#[derive(Default)]
struct CopyCost {
    wall: Vec<f64>,
    tool_cpu: Vec<f64>,
    src_cpu: Vec<f64>,
    dst_cpu: Vec<f64>,
    requests: String,
}

impl CopyCost {
    fn row(&mut self, name: &str) -> String {
        let (lo, med, hi) = stats(&mut self.wall);
        let (_, tool, _) = stats(&mut self.tool_cpu);
        let (_, src, _) = stats(&mut self.src_cpu);
        let (_, dst, _) = stats(&mut self.dst_cpu);
        format!(
            "| copy 8 layers / 150 MB between registries: {name} | {med:.1} ms | min {lo:.1} / max {hi:.1} ms ({} rounds); CPU per copy (median): {name} {tool:.0} ms, source registry {src:.0} ms, destination registry {dst:.0} ms; requests {} |",
            self.wall.len(),
            self.requests
        )
    }
}

/// Rounds of the alternating copy benchmark (`HOIST_BENCH_ROUNDS`, default 5).
fn rounds() -> usize {
    std::env::var("HOIST_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
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
    // The runtime flavour hoist's commands use (`hoist_oci::block_on`) unless
    // HOIST_BENCH_RUNTIME=current asks for a single-threaded one.
    let rt = match std::env::var("HOIST_BENCH_RUNTIME").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
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
    let (mut hoist, mut skopeo) = (CopyCost::default(), CopyCost::default());
    let mut hoist_user_sys = vec![];
    // Each copy gets a fresh destination registry: skopeo's blob-info cache would otherwise
    // mount blobs the previous round uploaded, and neither tool should find anything there.
    drop(authed);
    for round in 0..rounds() {
        let authed = Registry::start(true);
        c.set_credential(
            &authed.addr,
            Credential::Basic {
                username: USER.into(),
                password: PASS.into(),
            },
        );
        let dst = Reference::parse(&authed.reference(&format!("hoist/copy{round}:1"))).unwrap();
        let (src_req, src_cpu, dst_cpu) = (open.requests(), reg_cpu_ms(&open), reg_cpu_ms(&authed));
        let t = Instant::now();
        let c0 = cpu_ms();
        let (u0, s0) = user_sys_ms();
        let rep = rt
            .block_on(copy(
                &c,
                &Location::Registry(src.clone()),
                &Location::Registry(dst),
                &CopyOptions::default(),
            ))
            .unwrap();
        hoist.wall.push(ms(t.elapsed()));
        hoist.tool_cpu.push(cpu_ms() - c0);
        let (u1, s1) = user_sys_ms();
        hoist_user_sys.push((u1 - u0, s1 - s0));
        hoist.src_cpu.push(reg_cpu_ms(&open) - src_cpu);
        hoist.dst_cpu.push(reg_cpu_ms(&authed) - dst_cpu);
        hoist.requests = format!(
            "source: {}; destination: {}",
            requests_delta(&src_req, &open.requests()),
            requests_delta(&Default::default(), &authed.requests())
        );
        hoist.requests += &format!(" over {} connection(s)", authed.connections());
        assert_eq!(rep.blobs_copied, 9);
        drop(authed);
        let authed = Registry::start(true);
        let (src_req, src_cpu, dst_cpu) = (open.requests(), reg_cpu_ms(&open), reg_cpu_ms(&authed));
        let children = proc_cpu_ms("self", true);
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
        skopeo.wall.push(ms(t.elapsed()));
        skopeo.tool_cpu.push(proc_cpu_ms("self", true) - children);
        skopeo.src_cpu.push(reg_cpu_ms(&open) - src_cpu);
        skopeo.dst_cpu.push(reg_cpu_ms(&authed) - dst_cpu);
        skopeo.requests = format!(
            "source: {}; destination: {}",
            requests_delta(&src_req, &open.requests()),
            requests_delta(&Default::default(), &authed.requests())
        );
        skopeo.requests += &format!(" over {} connection(s)", authed.connections());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let each = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{t:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (us_u, us_s) = hoist_user_sys
        .iter()
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let n = hoist_user_sys.len() as f64;
    let rounds_line = format!(
        "copy rounds in order (ms): hoist {}; skopeo {}\nhoist CPU per copy, mean: user {:.0} ms, system {:.0} ms",
        each(&hoist.wall),
        each(&skopeo.wall),
        us_u / n,
        us_s / n
    );
    let (_, hmed, _) = stats(&mut hoist.wall.clone());
    let (_, smed, _) = stats(&mut skopeo.wall.clone());
    rows.push(hoist.row("hoist"));
    rows.push(skopeo.row("skopeo copy"));
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
    println!("{rounds_line}");
    println!("| benchmark | median | notes |\n|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
