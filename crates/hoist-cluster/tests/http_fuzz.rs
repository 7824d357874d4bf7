//! Random request bodies against a live server: every answer is a Status or an object,
//! never a 5xx or a dropped connection, and the server stays healthy.

mod common;

use std::time::Duration;

use common::TestCluster;
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| json!(i)),
        "[a-z/~0-9-]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "metadata",
                    "spec",
                    "status",
                    "data",
                    "name",
                    "labels",
                    "op",
                    "path",
                    "value",
                    "replicas",
                    "containers",
                    "$patch",
                    "apiVersion",
                    "kind"
                ]),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

#[test]
fn random_writes_never_break_the_server() {
    let c = TestCluster::start();
    let pki = c.server.as_ref().unwrap().pki.clone();
    let addr = c.addr;
    let send = |method: &str, path: &str, ct: &str, body: &[u8]| {
        hoist_cluster::daemon::request(
            addr,
            &pki,
            true,
            method,
            path,
            Some((ct, body)),
            Duration::from_secs(10),
        )
        .expect("the server answers")
    };
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    assert_eq!(
        send("POST", base, "application/json", d.to_string().as_bytes()).0,
        201
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 150,
        ..ProptestConfig::default()
    });
    let types = [
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];
    runner
        .run(
            &(json_value(), 0..types.len(), any::<bool>()),
            |(body, t, put)| {
                let bytes = body.to_string();
                let (code, text) = if put {
                    send(
                        "PUT",
                        &format!("{base}/d"),
                        "application/json",
                        bytes.as_bytes(),
                    )
                } else {
                    send(
                        "PATCH",
                        &format!("{base}/d?fieldManager=fuzz"),
                        types[t],
                        bytes.as_bytes(),
                    )
                };
                prop_assert!((200..500).contains(&code), "{code} for {bytes}: {text}");
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(send("GET", "/readyz", "application/json", b"").0, 200);
}
