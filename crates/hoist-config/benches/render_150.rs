//! Renders a generated project of 150 services sharing 3 molds (the golden-path
//! size of a large company) and prints a table of wall times.
//!
//! Target: ≤ 100 ms for load + validate-free render of all 150 (content tags included).
//!
//!     cargo bench -p hoist-config --bench render_150
//!     HOIST_BENCH_KEEP=/tmp/p150 cargo bench -p hoist-config --bench render_150
//!     hyperfine -w 3 'target/release/hoist -C /tmp/p150 render'   # via the real binary

use std::path::Path;
use std::time::{Duration, Instant};

use hoist_config::{Project, RenderOptions, render, to_yaml};

const SERVICES: usize = 150;
const ITERATIONS: usize = 30;
const TARGET: Duration = Duration::from_millis(100);

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn generate(root: &Path) {
    write(
        root,
        "hoist.yaml",
        "name: big\nregistry: localhost:5000\nvalues:\n  log_level: info\n",
    );
    let params = "parameters:\n  - {name: image, type: string, required: true}\n  - {name: port, type: integer, default: 8080}\n  - {name: replicas, type: integer, default: 1}\n  - {name: log_level, type: string, default: info}\n  - {name: schedule, type: string, default: '*/5 * * * *'}\n";
    let containers = "      containers:\n        - name: {{ name }}\n          image: {{ image }}\n          env:\n            - {name: LOG_LEVEL, value: {{ log_level|tojson }}}\n{% for k, v in env|items %}\n            - {name: {{ k }}, value: {{ v|tojson }}}\n{% endfor %}\n";
    for mold in ["web", "worker", "cron"] {
        write(root, &format!("molds/{mold}/mold.yaml"), params);
    }
    write(
        root,
        "molds/web/deployment.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{{{ name }}}}\nspec:\n  replicas: {{{{ replicas }}}}\n  selector:\n    matchLabels: {{app: {{{{ name }}}}}}\n  template:\n    metadata:\n      labels: {{app: {{{{ name }}}}}}\n    spec:\n{containers}          ports:\n            - containerPort: {{{{ port }}}}\n"
        ),
    );
    write(
        root,
        "molds/web/svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ name }}\nspec:\n  selector: {app: {{ name }}}\n  ports:\n    - port: 80\n      targetPort: {{ port }}\n",
    );
    write(
        root,
        "molds/worker/deployment.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{{{ name }}}}\nspec:\n  replicas: {{{{ replicas }}}}\n  selector:\n    matchLabels: {{app: {{{{ name }}}}}}\n  template:\n    metadata:\n      labels: {{app: {{{{ name }}}}}}\n    spec:\n{containers}"
        ),
    );
    write(
        root,
        "molds/cron/cronjob.yaml",
        &format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {{{{ name }}}}\nspec:\n  schedule: {{{{ schedule|tojson }}}}\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n{containers}"
        ),
    );
    write(
        root,
        "molds/cron/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ name }}-config\ndata:\n  schedule: {{ schedule|tojson }}\n",
    );
    let source = "x".repeat(2048);
    for i in 0..SERVICES {
        let mold = ["web", "worker", "cron"][i % 3];
        let name = format!("svc-{i:03}");
        let dep = if i > 0 {
            format!("depends_on: [svc-{:03}]\n", i - 1)
        } else {
            String::new()
        };
        write(
            root,
            &format!("services/{name}/service.yaml"),
            &format!(
                "name: {name}\nmold: {mold}\nvalues:\n  replicas: {}\nimage:\n  base: scratch\n  layers:\n    - from: ./app\n      to: /app\n  entrypoint: [/app/run]\nenv:\n  SERVICE_INDEX: {i}\n  FEATURE_X: \"on\"\n{dep}",
                1 + i % 3
            ),
        );
        for f in ["run", "lib.txt", "data.json"] {
            write(root, &format!("services/{name}/app/{f}"), &source);
        }
    }
}

fn main() {
    let keep = std::env::var_os("HOIST_BENCH_KEEP");
    let tmp = tempfile::tempdir().unwrap();
    let root = keep
        .as_ref()
        .map(Path::new)
        .unwrap_or(tmp.path())
        .to_path_buf();
    generate(&root);
    let mut times = Vec::new();
    let mut objects = 0;
    let mut bytes = 0;
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        let p = Project::load(&root).unwrap();
        let objs = render(&p, &RenderOptions::default()).unwrap();
        let yaml = to_yaml(&objs);
        times.push(t.elapsed());
        objects = objs.len();
        bytes = yaml.len();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    println!(
        "render_150: {SERVICES} services, 3 molds, {objects} objects, {bytes} bytes of YAML, {ITERATIONS} runs"
    );
    println!("| what | min ms | median ms | max ms | target ms |");
    println!("|---|---|---|---|---|");
    println!(
        "| load + render + YAML (content tags) | {:.1} | {:.1} | {:.1} | {} |",
        ms(times[0]),
        ms(median),
        ms(times[times.len() - 1]),
        TARGET.as_millis()
    );
    let validate = {
        let p = Project::load(&root).unwrap();
        let t = Instant::now();
        let problems = p.validate();
        assert!(problems.is_empty(), "{problems:?}");
        t.elapsed()
    };
    println!(
        "| validate (all checks + dry-run render) | {:.1} | | | |",
        ms(validate)
    );
    if let Some(k) = keep {
        println!("project kept in {}", Path::new(&k).display());
    }
    if median > TARGET {
        println!(
            "OVER TARGET: median {:.1} ms > {} ms",
            ms(median),
            TARGET.as_millis()
        );
        std::process::exit(1);
    }
}
