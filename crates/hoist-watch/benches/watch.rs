//! Watcher benchmarks on a generated project of 150 services, printed as a table.
//!
//!     cargo bench -p hoist-watch --bench watch
//!     HOIST_BENCH_EDITS=200 cargo bench -p hoist-watch --bench watch
//!
//! - edit → batch delivered: p50/p90/max over 50 edits of synced files (one at a
//!   time), expected ≈ the debounce window (30 ms by default); plus the classify time.
//! - watcher start (walk + one inotify watch per directory that is not ignored), the
//!   watch count, and the process RSS before/after; each service also holds an
//!   ignored node_modules/ tree (40 directories) that must cost nothing.
//! - the first project load (partial load + dry render of every service).

use std::path::Path;
use std::time::{Duration, Instant};

use hoist_config::Project;
use hoist_watch::{Classifier, Reloader, WatchOptions, Watcher};

const SERVICES: usize = 150;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn generate(root: &Path) {
    write(root, "hoist.yaml", "name: big\nregistry: localhost:5000\n");
    write(root, ".gitignore", "*.log\n");
    write(
        root,
        "molds/web/mold.yaml",
        "parameters:\n  - {name: image, type: string, required: true}\n  - {name: port, type: integer, default: 8080}\n",
    );
    write(
        root,
        "molds/web/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ name }}\nspec:\n  selector:\n    matchLabels: {app: {{ name }}}\n  template:\n    metadata:\n      labels: {app: {{ name }}}\n    spec:\n      containers:\n        - name: {{ name }}\n          image: {{ image }}\n          ports: [{containerPort: {{ port }}}]\n",
    );
    for d in 0..20 {
        write(root, &format!(".git/objects/{d:02}/x"), "");
    }
    for i in 0..SERVICES {
        let s = format!("services/svc-{i:03}");
        write(
            root,
            &format!("{s}/service.yaml"),
            &format!(
                "name: svc-{i:03}\nmold: web\nimage:\n  base: scratch\n  layers:\n    - {{from: ./src, to: /app}}\n    - {{from: ./public, to: /www}}\nlive_update:\n  sync: [{{from: ./public, to: /www}}]\n"
            ),
        );
        for m in ["api", "db", "util"] {
            for f in 0..4 {
                write(root, &format!("{s}/src/{m}/f{f}.rs"), "fn main() {}\n");
            }
        }
        write(root, &format!("{s}/public/index.html"), "<p>hi</p>\n");
        for n in 0..20 {
            write(root, &format!("{s}/node_modules/pkg{n}/lib/index.js"), "");
        }
        write(root, &format!("{s}/target/debug/app"), "");
    }
}

fn rss_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; nothing to list
    }
    let edits: usize = std::env::var("HOIST_BENCH_EDITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    generate(root);

    // Project load (what `hoist up` does before watching).
    let started = Instant::now();
    let mut reloader = Reloader::new(root, vec![]);
    let outcome = reloader.reload().unwrap();
    let load = started.elapsed();
    assert_eq!(outcome.added.len(), SERVICES);
    let classifier = Classifier::new(&outcome.project, &[]);

    // Watcher start: memory of the first start (nothing allocated before it by
    // earlier watchers), then the median of 5 start times.
    let rss_before = rss_kb("VmRSS:");
    let t = Instant::now();
    let first = Watcher::start(root, WatchOptions::default()).unwrap();
    let mut starts = vec![t.elapsed()];
    let rss_after = rss_kb("VmRSS:");
    let watches = first.watch_count();
    first.stop();
    for _ in 0..3 {
        let t = Instant::now();
        let w = Watcher::start(root, WatchOptions::default()).unwrap();
        starts.push(t.elapsed());
        w.stop();
    }
    let t = Instant::now();
    let mut w = Watcher::start(root, WatchOptions::default()).unwrap();
    starts.push(t.elapsed());
    starts.sort();

    // Edit → batch latency, one synced file at a time.
    let mut lat = Vec::new();
    let mut classify = Vec::new();
    for i in 0..edits {
        let file = root.join(format!(
            "services/svc-{:03}/public/index.html",
            i % SERVICES
        ));
        let t0 = Instant::now();
        std::fs::write(&file, format!("<p>edit {i}</p>\n")).unwrap();
        let batch = w.blocking_next().unwrap().unwrap();
        lat.push(t0.elapsed());
        assert_eq!(batch.changed, [file]);
        let t1 = Instant::now();
        let plan = classifier.classify(&batch);
        classify.push(t1.elapsed());
        assert_eq!(plan.services.len(), 1);
        std::thread::sleep(Duration::from_millis(10));
    }
    lat.sort();
    classify.sort();
    w.stop();

    let _ = Project::load(root).unwrap(); // keep the generated project valid
    println!("hoist-watch bench: {SERVICES} services, debounce 30 ms (quiet gap)");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| edit → batch, {edits} edits | p50 {} · p90 {} · max {} |",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.9)),
        ms(*lat.last().unwrap())
    );
    println!(
        "| classify one batch | p50 {} · max {} |",
        ms(percentile(&classify, 0.5)),
        ms(*classify.last().unwrap())
    );
    println!(
        "| watcher start (5 runs) | median {} · min {} · max {} |",
        ms(percentile(&starts, 0.5)),
        ms(starts[0]),
        ms(*starts.last().unwrap())
    );
    println!("| inotify watches | {watches} (node_modules/, target/, .git/ skipped) |");
    println!(
        "| process RSS (project loaded) | {:.1} MB before the first start → {:.1} MB watching (+{:.1} MB) |",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / 1024.0
    );
    println!(
        "| first project load ({SERVICES} services, partial + dry render) | {} |",
        ms(load)
    );
}
