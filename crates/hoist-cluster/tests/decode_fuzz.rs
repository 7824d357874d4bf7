//! Property tests on request body decoding: arbitrary bytes and content types never
//! panic, and every failure is a 4xx Status.

use proptest::prelude::*;

fn content_types() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "application/json",
        "application/yaml",
        "application/apply-patch+yaml",
        "application/vnd.kubernetes.protobuf",
        "application/merge-patch+json",
        "",
    ])
    .prop_map(str::to_string)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(ct in content_types(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = hoist_cluster::decode_body(&ct, &body) {
            prop_assert!((400..500).contains(&e.code), "{e}");
            prop_assert_eq!(&e.to_status()["kind"], "Status");
        }
    }

    #[test]
    fn protobuf_envelopes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut framed = b"k8s\x00".to_vec();
        framed.extend(body);
        let _ = hoist_cluster::decode_protobuf(&framed);
    }

    #[test]
    fn json_objects_round_trip(name in "[a-z][a-z0-9-]{0,20}", value in ".{0,40}") {
        let v = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}});
        let decoded = hoist_cluster::decode_body("application/json", &serde_json::to_vec(&v).unwrap()).unwrap();
        prop_assert_eq!(decoded, v);
    }
}
