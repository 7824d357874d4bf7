//! Edit → served: change one file locally, live-update it into the running pod and poll
//! HTTP through hoist's port-forward until the new content comes back. 20 edits per
//! transport (direct writes into the embedded cluster's container, and tar over exec),
//! after 3 warm-up edits. Needs root and runc (the embedded cluster runs the pod).
//!
//! `cargo bench -p hoist-kube --bench live_update [-- EDITS]` prints a Markdown table.
//! The file watcher's debounce (engine, ≤ 50 ms) is not part of this measurement.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::pods;
use hoist_kube::live_update::{ContainerRef, DirectFs, LiveUpdater, SyncBatch, SyncTransport};
use hoist_kube::portforward::{ForwardTarget, PortForward, PortForwardSpec};
use serde_json::json;

fn main() {
    let edits: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(edits));
}

struct Row {
    transport: &'static str,
    sync: Vec<Duration>,
    served: Vec<Duration>,
}

async fn run(edits: usize) {
    let Some(node) = pods::start().await else {
        eprintln!("live_update bench needs root and runc");
        return;
    };
    node.create(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
          "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "image": pods::WEB_IMAGE, "imagePullPolicy": "Never",
            "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
            "ports": [{"name": "http", "containerPort": 80}],
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}]}}}}),
    )
    .await;
    node.create(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
      "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}),
    )
    .await;
    let pod = node.ready_pods("app=web", 1).await.remove(0);
    let pf = PortForward::start(
        node.client.clone(),
        PortForwardSpec::new(
            &node.namespace,
            ForwardTarget::Service {
                name: "web".into(),
                port: 80,
            },
            0,
        ),
    )
    .await
    .expect("port-forward");
    pf.wait_connected(Duration::from_secs(60))
        .await
        .expect("connected");
    let port = pf.local_addr().port();
    let target = ContainerRef::new(&node.namespace, &pod, "web");
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("index.html");
    let mut rows = vec![];
    for direct in [true, false] {
        let transport = if direct {
            SyncTransport::Direct(DirectFs::for_data_dir(&node.data_dir))
        } else {
            SyncTransport::Exec
        };
        let name = transport.name();
        let up = LiveUpdater::new(node.client.clone(), transport);
        let mut row = Row {
            transport: name,
            sync: vec![],
            served: vec![],
        };
        for i in 0..edits + 3 {
            let content = format!("<h1>{name} edit {i}</h1>\n");
            let started = Instant::now();
            std::fs::write(&file, &content).unwrap();
            let batch = SyncBatch::default().copy(&file, "/www/index.html");
            up.sync(&target, &batch).await.expect("sync");
            let synced = started.elapsed();
            let deadline = started + Duration::from_secs(10);
            loop {
                if let Ok((200, body)) = pods::try_get(port, "/index.html").await
                    && body == content
                {
                    break;
                }
                assert!(Instant::now() < deadline, "edit {i} not served within 10s");
            }
            if i >= 3 {
                row.sync.push(synced);
                row.served.push(started.elapsed());
            }
        }
        rows.push(row);
    }
    drop(pf);
    node.stop().await;
    println!(
        "\nedit → new content served through the port-forward, {edits} edits per transport (after 3 warm-up)\n"
    );
    println!("| transport | sync p50 | sync p90 | edit→served p50 | edit→served p90 | min | max |");
    println!("|---|---|---|---|---|---|---|");
    for r in &mut rows {
        r.sync.sort();
        r.served.sort();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.transport,
            ms(pct(&r.sync, 50)),
            ms(pct(&r.sync, 90)),
            ms(pct(&r.served, 50)),
            ms(pct(&r.served, 90)),
            ms(r.served[0]),
            ms(*r.served.last().unwrap()),
        );
    }
    println!("\ntarget (issue 6, whole loop): edit → served p50 ≤ 150 ms");
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
