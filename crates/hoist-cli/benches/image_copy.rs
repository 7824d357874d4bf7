//! `hoist image copy` against `skopeo copy`: the same 8-layer ~150 MB image between two
//! real local registries (an open source, an htpasswd-authenticated destination), run
//! alternately, each copy into a fresh destination registry. Both tools are run as
//! processes the way a user runs them (hoist reads its credentials from a Docker
//! config file). Prints a Markdown table.
//!
//! `cargo bench -p hoist-cli --bench image_copy` (knobs: `HOIST_BENCH_ROUNDS`, default 7;
//! `HOIST_BENCH_JOBS=N` runs hoist with `--jobs N`). The registries keep their data under
//! `$TMPDIR`: on a disk, the destination's fsync of every blob at commit is part of each
//! copy; `TMPDIR=/dev/shm` measures without it.
//!
//! The copy is CPU-bound on a small machine, so besides wall times the table gives each
//! copy's CPU: the copying process's and both registries' (from /proc), and the requests
//! the registries logged. Wall-clock ratios move with the machine's load; the CPU figures
//! are the steadier evidence.

#[path = "../../hoist-oci/tests/support/bench.rs"]
mod bench;
#[path = "../../hoist-oci/tests/support/registry.rs"]
mod registry;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use bench::{ms, stats};
use registry::{PASS, Registry, USER, pseudo_random, write_file};

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");
const LAYERS: usize = 8;
const IMAGE_BYTES: usize = 150 * 1024 * 1024;

/// CPU (user + system, ms) of the waited-for children of this process so far.
fn children_cpu_ms() -> f64 {
    stat_ticks("self", 13) * 10.0 // USER_HZ is 100 on Linux
}

/// utime + stime (or cutime + cstime from `first` = 13) of `/proc/PID/stat`, in ticks.
fn stat_ticks(pid: &str, first: usize) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    f.get(first).copied().unwrap_or(0.0) + f.get(first + 1).copied().unwrap_or(0.0)
}

/// CPU of a live process in ms with nanosecond resolution: the sum over its threads of
/// /proc/PID/task/TID/schedstat's first field (time on a CPU, user + system).
fn live_cpu_ms(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return stat_ticks(&pid.to_string(), 11) * 10.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e6
}

/// Requests in `after` not in `before`, as `GET 3, HEAD 9, …`.
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

/// Each tool's copies: wall time, its own CPU, both registries' CPU.
#[derive(Default)]
struct Costs {
    wall: Vec<f64>,
    tool_cpu: Vec<f64>,
    src_cpu: Vec<f64>,
    dst_cpu: Vec<f64>,
    requests: String,
}

impl Costs {
    fn row(&mut self, name: &str) -> String {
        let rounds = self.wall.len();
        let (lo, med, hi) = stats(&mut self.wall);
        let (_, tool, _) = stats(&mut self.tool_cpu);
        let (_, src, _) = stats(&mut self.src_cpu);
        let (_, dst, _) = stats(&mut self.dst_cpu);
        format!(
            "| {name} | {med:.0} ms | min {lo:.0} / max {hi:.0} ms ({rounds} rounds); CPU per copy (median): {name} {tool:.0} ms, source registry {src:.0} ms, destination registry {dst:.0} ms; requests {} |",
            self.requests
        )
    }
}

/// Run one copy into a fresh authenticated registry, recording its costs.
fn measure(
    open: &Registry,
    costs: &mut Costs,
    prepare: impl FnOnce(&Registry),
    run: impl FnOnce(&Registry) -> Output,
) {
    let dst = Registry::start(true);
    prepare(&dst);
    let (src_requests, dst_requests, dst_conns) =
        (open.requests(), dst.requests(), dst.connections());
    let (src0, dst0, kids0) = (
        live_cpu_ms(open.pid()),
        live_cpu_ms(dst.pid()),
        children_cpu_ms(),
    );
    let t = Instant::now();
    let out = run(&dst);
    costs.wall.push(ms(t.elapsed()));
    assert!(
        out.status.success(),
        "copy failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    costs.tool_cpu.push(children_cpu_ms() - kids0);
    costs.src_cpu.push(live_cpu_ms(open.pid()) - src0);
    costs.dst_cpu.push(live_cpu_ms(dst.pid()) - dst0);
    costs.requests = format!(
        "source: {}; destination: {} over {} connection(s)",
        requests_delta(&src_requests, &open.requests()),
        requests_delta(&dst_requests, &dst.requests()),
        dst.connections() - dst_conns
    );
}

/// `hoist` with a home, cache and Docker config of its own under `home`.
fn hoist(home: &Path) -> Command {
    let mut c = Command::new(HOIST);
    c.env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("HOIST_CACHE_DIR", home.join("cache"))
        .env_remove("HOIST_LOG")
        .env_remove("HOIST_INSECURE_REGISTRIES");
    c
}

/// Store the bench credentials for `registry` in hoist's Docker config
/// (`hoist registry login`, which also checks them), outside the timed copy.
fn login(home: &Path, registry: &str) {
    let out = hoist(home)
        .args(["registry", "login", registry, "-u", USER, "-p", PASS])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hoist registry login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rounds() -> usize {
    std::env::var("HOIST_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
}

fn main() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("skopeo is not installed: skipping (scripts/install-deps installs it)");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let open = Registry::start(false);
    let src = open.reference("bench/big:1");

    // The source image: 8 layers of incompressible bytes, pushed by hoist itself.
    let mut build = hoist(home.path());
    build.args(["image", "append", "--base", "scratch", "--tag", &src]);
    for i in 0..LAYERS {
        let dir = home.path().join(format!("layer{i}"));
        write_file(
            &dir.join("blob.bin"),
            &pseudo_random(1000 + i as u64, IMAGE_BYTES / LAYERS),
            0o644,
        );
        build
            .arg("--layer")
            .arg(format!("{}:/data/{i}", dir.display()));
    }
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (mut h, mut s) = (Costs::default(), Costs::default());
    // Alternate, each copy into a fresh registry: neither tool finds anything there, and
    // skopeo's blob-info cache has no earlier location on that address to mount from.
    for round in 0..rounds() {
        measure(
            &open,
            &mut h,
            |dst| login(home.path(), &dst.addr),
            |dst| {
                hoist(home.path())
                    .args(["image", "copy", &src])
                    .args(
                        std::env::var("HOIST_BENCH_JOBS")
                            .map(|j| vec!["--jobs".to_string(), j])
                            .unwrap_or_default(),
                    )
                    .arg(dst.reference(&format!("hoist/copy{round}:1")))
                    .output()
                    .unwrap()
            },
        );
        measure(
            &open,
            &mut s,
            |_| {},
            |dst| {
                Command::new("skopeo")
                    .args([
                        "copy",
                        "-q",
                        "--src-tls-verify=false",
                        "--dest-tls-verify=false",
                        "--dest-creds",
                        &format!("{USER}:{PASS}"),
                    ])
                    .arg(format!("docker://{src}"))
                    .arg(format!(
                        "docker://{}",
                        dst.reference(&format!("skopeo/copy{round}:1"))
                    ))
                    .output()
                    .unwrap()
            },
        );
    }
    let each = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{t:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "copy rounds in order (ms): hoist {}; skopeo {}",
        each(&h.wall),
        each(&s.wall)
    );
    println!("load average at the end: {}", bench::load_average());
    let (hmed, smed) = (stats(&mut h.wall.clone()).1, stats(&mut s.wall.clone()).1);
    println!("| copy 8 layers / 150 MB between registries | median | notes |\n|---|---|---|");
    println!("{}", h.row("hoist image copy"));
    println!("{}", s.row("skopeo copy"));
    println!(
        "| ratio skopeo / hoist (medians) | {:.2}x | target ≥ 1.5x |",
        smed / hmed
    );
}
