//! Benchmark: ApplySet at 150-service scale against the real embedded cluster.
//! 150 services × (ConfigMap + Service + Deployment) = 450 objects:
//! first apply, no-op re-apply, re-apply with 10 services removed (prune), teardown.
//!
//! Run: `cargo run --release -p hoist-kube --example apply_bench [-- SERVICES]`

use std::time::{Duration, Instant};

use hoist_kube::teardown::{TeardownOptions, teardown};
use hoist_kube::{ApplySet, ClusterTarget, Desired, PruneScope, TargetOptions};
use serde_json::json;

fn objects(n: usize) -> Vec<Desired> {
    let mut out = Vec::new();
    for i in 0..n {
        let s = format!("svc-{i:03}");
        let labels = json!({"app": s});
        for object in [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{s}-config")}, "data": {"LOG": "info"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": s},
                   "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": s},
                   "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                            "template": {"metadata": {"labels": labels},
                                         "spec": {"containers": [{"name": "app", "image": format!("localhost:5000/{s}:1")}]}}}}),
        ] {
            out.push(Desired {
                service: s.clone(),
                object,
            });
        }
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(150);
    let dir = tempfile::tempdir().unwrap();
    let server = hoist_cluster::start(hoist_cluster::ServerConfig {
        data_dir: dir.path().join("data"),
        addr: "127.0.0.1:0".parse().unwrap(),
        allow_non_loopback: false,
    })
    .await
    .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        hoist_cluster::kubeconfig::standalone(&format!("https://{}", server.addr), &server.pki),
    )
    .unwrap();
    let target = ClusterTarget::from_options(&TargetOptions {
        kubeconfig: Some(kubeconfig),
        allow_current_context: true,
        project: "bench".into(),
        developer: Some("dev".into()),
        ..Default::default()
    })
    .unwrap();
    let client = target.client().await.unwrap();
    let mut set = ApplySet::new(client, &target);

    let mut rows = Vec::new();
    let t = Instant::now();
    let r = set.apply(objects(n), PruneScope::All).await.unwrap();
    rows.push((
        format!("first apply ({} objects)", r.applied.len()),
        t.elapsed(),
    ));
    let t = Instant::now();
    set.apply(objects(n), PruneScope::All).await.unwrap();
    rows.push(("no-op re-apply".into(), t.elapsed()));
    let keep = n.saturating_sub(10);
    let t = Instant::now();
    let r = set.apply(objects(keep), PruneScope::All).await.unwrap();
    rows.push((
        format!("re-apply, prune {} objects", r.pruned.len()),
        t.elapsed(),
    ));
    let t = Instant::now();
    let r = teardown(&mut set, &TeardownOptions::default())
        .await
        .unwrap();
    rows.push((
        format!("teardown ({} objects)", r.deleted.len()),
        t.elapsed(),
    ));

    println!("| step ({n} services) | time |\n|---|---|");
    for (step, d) in rows {
        println!("| {step} | {} |", ms(d));
    }
    server.shutdown().await;
}
