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

const KINDS: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
];

/// A protobuf length-delimited field (wire type 2).
fn len_field(num: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(num << 3) | 2];
    let mut len = bytes.len();
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(bytes);
    out
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

    /// A well-formed envelope naming each understood kind, with an arbitrary `raw` object:
    /// decoding reaches the per-kind field walkers and must never panic.
    #[test]
    fn kind_envelopes_with_random_objects_never_panic(
        kind in prop::sample::select(KINDS.to_vec()),
        raw in prop::collection::vec(any::<u8>(), 0..384),
        nested in prop::collection::vec(any::<u8>(), 0..128),
        deep in prop::collection::vec(any::<u8>(), 0..64),
        field in 1u8..4,
        inner in 1u8..16,
    ) {
        let (api_version, kind) = kind;
        // Random bytes wrapped as a length-delimited field reach the nested decoders
        // (specs, ports, rules, subjects, templates) past the top-level parse.
        // Two levels of well-formed framing (e.g. spec -> ports, spec -> jobTemplate) around
        // random bytes, followed by raw random bytes.
        let mut object = len_field(field, &[len_field(inner, &deep), nested].concat());
        object.extend(raw);
        let type_meta = [len_field(1, api_version.as_bytes()), len_field(2, kind.as_bytes())].concat();
        let mut framed = b"k8s\x00".to_vec();
        framed.extend(len_field(1, &type_meta));
        framed.extend(len_field(2, &object));
        let _ = hoist_cluster::decode_protobuf(&framed);
        let _ = hoist_cluster::decode_body("application/vnd.kubernetes.protobuf", &framed);
    }

    #[test]
    fn json_objects_round_trip(name in "[a-z][a-z0-9-]{0,20}", value in ".{0,40}") {
        let v = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}});
        let decoded = hoist_cluster::decode_body("application/json", &serde_json::to_vec(&v).unwrap()).unwrap();
        prop_assert_eq!(decoded, v);
    }
}
