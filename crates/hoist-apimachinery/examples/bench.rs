//! Micro-benchmark of the hot paths the API server calls per write.
//! Run: `cargo run --release -p hoist-apimachinery --example bench`

use hoist_apimachinery::apply::{WriteContext, server_side_apply, track_update};
use hoist_apimachinery::merge_schema::BuiltinMergeSchema;
use hoist_apimachinery::patch::{json_merge_patch, strategic_merge_patch};
use hoist_apimachinery::selector::{FieldSelector, LabelSelector};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;

fn deployment(replicas: i64, image: &str) -> Value {
    let containers: Vec<Value> = (0..3)
        .map(|i| {
            json!({"name": format!("c{i}"), "image": image, "args": ["--port", "8080"],
                   "env": (0..10).map(|e| json!({"name": format!("E{e}"), "value": "v"})).collect::<Vec<_>>(),
                   "ports": [{"containerPort": 8080 + i, "protocol": "TCP"}],
                   "volumeMounts": [{"name": "data", "mountPath": format!("/data{i}")}]})
        })
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": containers, "volumes": [{"name": "data", "emptyDir": {}}]}}}})
}

fn bench(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per = start.elapsed() / iters;
    println!("| {name:<44} | {:>9.1} µs |", per.as_secs_f64() * 1e6);
}

fn main() {
    let schema = BuiltinMergeSchema::new("apps", "Deployment");
    let ctx = WriteContext {
        manager: "kubectl",
        subresource: None,
        now: "2026-01-01T00:00:00Z",
        schema: &schema,
    };
    let d1 = deployment(2, "app:1");
    let d2 = deployment(3, "app:2");
    let live = server_side_apply(None, &d1, false, ctx).expect("apply");
    let smp_patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c1", "image": "app:3"}]}}}});
    let sel = LabelSelector::parse("app=web,tier in (front,back),!canary").expect("selector");
    let fsel =
        FieldSelector::parse("metadata.name=web,metadata.namespace=default").expect("selector");
    println!("| operation (Deployment, 3 containers × 10 env) | time/op     |");
    println!("|----------------------------------------------|-------------|");
    bench("server-side apply, create", 2000, || {
        black_box(server_side_apply(None, &d1, false, ctx).ok());
    });
    bench("server-side apply, same config (no-op)", 2000, || {
        black_box(server_side_apply(Some(&live), &d1, false, ctx).ok());
    });
    bench("server-side apply, changed config (force)", 2000, || {
        black_box(server_side_apply(Some(&live), &d2, true, ctx).ok());
    });
    bench("track_update (PUT with changes)", 2000, || {
        black_box(
            track_update(
                Some(&live),
                &d2,
                WriteContext {
                    manager: "m",
                    ..ctx
                },
            )
            .ok(),
        );
    });
    bench("strategic merge patch (one container image)", 5000, || {
        black_box(strategic_merge_patch(&live, &smp_patch, &schema).ok());
    });
    bench("JSON merge patch (one container list)", 5000, || {
        let mut t = live.clone();
        json_merge_patch(&mut t, &smp_patch);
        black_box(t);
    });
    let big = |n: usize, v: &str| {
        let env: Vec<Value> = (0..n)
            .map(|e| json!({"name": format!("E{e}"), "value": v}))
            .collect();
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "env": env}]}})
    };
    let (big_live, big_patch) = (big(1000, "a"), big(1000, "b"));
    let pod_schema = BuiltinMergeSchema::new("", "Pod");
    bench("strategic merge patch, 1000-item env list", 20, || {
        black_box(strategic_merge_patch(&big_live, &big_patch, &pod_schema).ok());
    });
    let pod_ctx = WriteContext {
        schema: &pod_schema,
        ..ctx
    };
    let big_applied = server_side_apply(None, &big_live, false, pod_ctx).expect("apply");
    bench("server-side apply, 1000-item env list changed", 5, || {
        black_box(server_side_apply(Some(&big_applied), &big_patch, true, pod_ctx).ok());
    });
    bench("label selector match", 100_000, || {
        black_box(sel.matches_object(&live));
    });
    bench("field selector match", 100_000, || {
        black_box(fsel.matches(&live));
    });
}
