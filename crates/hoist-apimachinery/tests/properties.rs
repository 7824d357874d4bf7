//! Property tests: round trips and invariants of selectors, patches, field sets and apply,
//! plus a fuzz-style test that no entry point panics on arbitrary JSON or strings.

use hoist_apimachinery::apply::{WriteContext, server_side_apply, track_update};
use hoist_apimachinery::managed_fields::{FieldSet, PathElement, fields_of, read_managed_fields};
use hoist_apimachinery::merge_schema::{BuiltinMergeSchema, CrdMergeSchema, MergeSchema};
use hoist_apimachinery::names;
use hoist_apimachinery::patch::{json_merge_patch, json_patch, strategic_merge_patch};
use hoist_apimachinery::schema_validation::{prune, validate};
use hoist_apimachinery::selector::{
    FieldOperator, FieldRequirement, FieldSelector, LabelSelector, Operator, Requirement,
};
use hoist_apimachinery::semantics::{is_noop_update, next_generation, spec_changed};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const KEYS: &[&str] = &[
    "a",
    "b",
    "metadata",
    "spec",
    "status",
    "name",
    "labels",
    "finalizers",
    "containers",
    "template",
    "image",
    "env",
    "value",
    "ports",
    "containerPort",
    "protocol",
    "replicas",
    "selector",
    "apiVersion",
    "kind",
    "managedFields",
    "manager",
    "operation",
    "fieldsV1",
    "f:spec",
    "f:a",
    "k:{\"name\":\"a\"}",
    "v:1",
    "i:0",
    ".",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$deleteFromPrimitiveList/finalizers",
    "op",
    "path",
    "from",
    "type",
    "properties",
    "items",
    "required",
    "enum",
    "nullable",
    "additionalProperties",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "uid",
    "ownerReferences",
    "minimum",
    "maxLength",
];

const STRINGS: &[&str] = &[
    "",
    "a",
    "replace",
    "delete",
    "merge",
    "/a",
    "/spec/replicas",
    "/a/0",
    "/a/-",
    "add",
    "remove",
    "replace",
    "move",
    "copy",
    "test",
    "object",
    "string",
    "integer",
    "array",
    "In",
    "NotIn",
    "Exists",
    "Gt",
    "Apply",
    "Update",
    "FieldsV1",
    "apps/v1",
    "v1",
    "Deployment",
    "Pod",
    "Service",
    "ü",
    "~1",
    "k:{",
    "x,y=z",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..100).prop_map(|n| json!(n)),
        Just(json!(1.5)),
        prop::sample::select(STRINGS).prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kvs| {
                Value::Object(kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// JSON without nulls and without `$` keys (what a plain object looks like).
fn arb_plain_json(allow_arrays: bool) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-3i64..100).prop_map(|n| json!(n)),
        "[a-z]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 5, move |inner| {
        let obj = prop::collection::btree_map("[a-e]", inner.clone(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()));
        if allow_arrays {
            prop_oneof![
                obj,
                prop::collection::vec(inner, 0..4).prop_map(Value::Array)
            ]
            .boxed()
        } else {
            obj.boxed()
        }
    })
}

fn arb_label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,4}",
        "[a-z]{1,3}\\.io/[a-z][a-z0-9_.-]{0,3}[a-z0-9]"
    ]
}

fn arb_requirement() -> impl Strategy<Value = Requirement> {
    let value = "([a-z0-9]([a-z0-9._-]{0,3}[a-z0-9])?)?";
    (
        arb_label_key(),
        0..9u8,
        prop::collection::vec(value, 1..4),
        0i64..100,
    )
        .prop_map(|(key, op, values, n)| {
            let (op, vals) = match op {
                0 => (Operator::Equals, vec![values[0].clone()]),
                1 => (Operator::DoubleEquals, vec![values[0].clone()]),
                2 => (Operator::NotEquals, vec![values[0].clone()]),
                3 => (Operator::In, values),
                4 => (Operator::NotIn, values),
                5 => (Operator::Exists, vec![]),
                6 => (Operator::DoesNotExist, vec![]),
                7 => (Operator::GreaterThan, vec![n.to_string()]),
                _ => (Operator::LessThan, vec![n.to_string()]),
            };
            Requirement::new(&key, op, vals).expect("generated requirements are valid")
        })
}

fn arb_labels() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(arb_label_key(), "[a-z0-9]{0,2}|[0-9]{1,2}", 0..5)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

fn deployment(
    labels: Map<String, Value>,
    replicas: i64,
    containers: Vec<(String, String, Vec<String>)>,
) -> Value {
    let containers: Vec<Value> = containers
        .into_iter()
        .map(|(name, image, env)| {
            let env: Vec<Value> = env
                .into_iter()
                .map(|e| json!({"name": e, "value": "v"}))
                .collect();
            json!({"name": name, "image": image, "env": env})
        })
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": labels},
           "spec": {"replicas": replicas, "template": {"spec": {"containers": containers}}}})
}

fn arb_deployment() -> impl Strategy<Value = Value> {
    let container = (
        "[a-z]{1,3}",
        "[a-z]{1,2}:[0-9]",
        prop::collection::btree_set("[A-C]", 0..3),
    );
    (
        arb_labels(),
        0i64..5,
        prop::collection::btree_map("[a-z]{1,3}", container.prop_map(|(_, i, e)| (i, e)), 1..3),
    )
        .prop_map(|(labels, replicas, cs)| {
            let cs = cs
                .into_iter()
                .map(|(name, (image, env))| (name, image, env.into_iter().collect()))
                .collect();
            deployment(labels, replicas, cs)
        })
}

fn ctx<'a>(manager: &'a str, schema: &'a dyn MergeSchema) -> WriteContext<'a> {
    WriteContext {
        manager,
        subresource: None,
        now: "2026-01-01T00:00:00Z",
        schema,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn label_selector_print_parse_round_trip(reqs in prop::collection::vec(arb_requirement(), 0..5), labels in arb_labels()) {
        let mut requirements = reqs;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        let sel = LabelSelector { requirements };
        let printed = sel.to_string();
        let parsed = LabelSelector::parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&parsed, &sel, "printed as {}", printed);
        prop_assert_eq!(parsed.matches(&labels), sel.matches(&labels));
    }

    #[test]
    fn field_selector_print_parse_round_trip(reqs in prop::collection::vec(("[a-z]{1,4}(\\.[a-zA-Z]{1,4}){0,2}", 0..3u8, "[a-z0-9,=!\\\\ü .-]{0,6}"), 0..4)) {
        let sel = FieldSelector { requirements: reqs.into_iter().map(|(field, op, value)| FieldRequirement {
            field,
            operator: [FieldOperator::Equals, FieldOperator::DoubleEquals, FieldOperator::NotEquals][op as usize],
            value,
        }).collect() };
        let printed = sel.to_string();
        let parsed = FieldSelector::parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(parsed, sel);
    }

    #[test]
    fn merge_patch_with_itself_is_a_noop(x in arb_plain_json(true)) {
        let mut t = x.clone();
        json_merge_patch(&mut t, &x);
        prop_assert_eq!(t, x);
    }

    #[test]
    fn merge_patch_is_idempotent(t in arb_json(), p in arb_json()) {
        let mut once = t.clone();
        json_merge_patch(&mut once, &p);
        let mut twice = once.clone();
        json_merge_patch(&mut twice, &p);
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn json_patch_test_of_whole_document_and_empty_patch(x in arb_json()) {
        prop_assert_eq!(json_patch(&x, &json!([])).unwrap(), x.clone());
        prop_assert_eq!(json_patch(&x, &json!([{"op": "test", "path": "", "value": x.clone()}])).unwrap(), x.clone());
        let added = json_patch(&json!({}), &json!([{"op": "add", "path": "/k", "value": x.clone()}, {"op": "remove", "path": "/k"}])).unwrap();
        prop_assert_eq!(added, json!({}));
    }

    #[test]
    fn strategic_merge_without_lists_equals_merge_patch(orig in arb_plain_json(false), patch in arb_plain_json(false)) {
        prop_assume!(orig.is_object() && patch.is_object());
        let schema = BuiltinMergeSchema::new("", "ConfigMap");
        let smp = strategic_merge_patch(&orig, &patch, &schema).unwrap();
        let mut mp = orig.clone();
        json_merge_patch(&mut mp, &patch);
        prop_assert_eq!(smp, mp);
    }

    #[test]
    fn strategic_merge_of_a_deployment_with_itself_is_a_noop(d in arb_deployment()) {
        let schema = BuiltinMergeSchema::for_object(&d);
        prop_assert_eq!(strategic_merge_patch(&d, &d, &schema).unwrap(), d.clone());
        prop_assert_eq!(strategic_merge_patch(&d, &json!({}), &schema).unwrap(), d);
    }

    #[test]
    fn fields_v1_round_trip(d in arb_deployment(), x in arb_json()) {
        for obj in [&d, &x] {
            let set = fields_of(obj, &BuiltinMergeSchema::new("apps", "Deployment"));
            let back = FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap();
            prop_assert_eq!(&back, &set);
            for p in set.paths() {
                prop_assert!(set.contains(&p.0));
            }
        }
    }

    #[test]
    fn fields_v1_round_trip_of_arbitrary_sets(paths in prop::collection::vec(prop::collection::vec(
        prop_oneof![
            "[a-z:./]{1,4}".prop_map(PathElement::Field),
            ("[a-z]{1,2}", 0i64..3).prop_map(|(k, v)| { let mut m = Map::new(); m.insert(k, json!(v)); PathElement::key(&m) }),
            "[a-z\"]{0,3}".prop_map(|s| PathElement::value(&Value::String(s))),
            (0usize..5).prop_map(PathElement::Index),
        ], 1..4), 0..8)) {
        let mut set = FieldSet::default();
        for p in &paths {
            set.insert(p);
        }
        let back = FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap();
        prop_assert_eq!(&back, &set);
        let all: FieldSet = set.paths().iter().fold(FieldSet::default(), |mut acc, p| { acc.insert(&p.0); acc });
        prop_assert_eq!(all, set);
    }

    #[test]
    fn applying_the_same_config_twice_is_a_noop(d in arb_deployment()) {
        let schema = BuiltinMergeSchema::new("apps", "Deployment");
        let first = server_side_apply(None, &d, false, ctx("m", &schema)).unwrap();
        let second = server_side_apply(Some(&first), &d, false, WriteContext { now: "2027-01-01T00:00:00Z", ..ctx("m", &schema) }).unwrap();
        prop_assert_eq!(&second, &first);
        prop_assert!(is_noop_update(&first, &second));
    }

    #[test]
    fn sole_applier_converges_to_its_config(a in arb_deployment(), b in arb_deployment()) {
        let schema = BuiltinMergeSchema::new("apps", "Deployment");
        let first = server_side_apply(None, &a, false, ctx("m", &schema)).unwrap();
        let second = server_side_apply(Some(&first), &b, false, ctx("m", &schema)).unwrap();
        prop_assert_eq!(&second["metadata"]["labels"], &b["metadata"]["labels"]);
        prop_assert_eq!(&second["spec"]["replicas"], &b["spec"]["replicas"]);
        let names = |v: &Value| -> Vec<Value> {
            let mut n: Vec<Value> = v["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].clone()).collect();
            n.sort_by_key(|x| x.to_string());
            n
        };
        prop_assert_eq!(names(&second), names(&b));
        let entries = read_managed_fields(&second).unwrap();
        prop_assert_eq!(entries.len(), 1);
        prop_assert_eq!(&entries[0].fields, &fields_of(&b, &schema));
    }

    #[test]
    fn second_manager_conflicts_exactly_on_changed_owned_fields(a in arb_deployment(), replicas in 0i64..5) {
        let schema = BuiltinMergeSchema::new("apps", "Deployment");
        let live = track_update(None, &a, ctx("first", &schema)).unwrap();
        let mut cfg = a.clone();
        cfg["spec"]["replicas"] = json!(replicas);
        let res = server_side_apply(Some(&live), &cfg, false, ctx("second", &schema));
        if replicas == a["spec"]["replicas"] {
            prop_assert!(res.is_ok());
        } else {
            let err = res.unwrap_err().to_string();
            prop_assert_eq!(err, "Apply failed with 1 conflict: conflict with \"first\" using apps/v1: .spec.replicas");
            let forced = server_side_apply(Some(&live), &cfg, true, ctx("second", &schema)).unwrap();
            prop_assert_eq!(&forced["spec"]["replicas"], &json!(replicas));
        }
    }

    #[test]
    fn ownership_stays_consistent_over_random_write_sequences(
        steps in prop::collection::vec((arb_deployment(), 0..3usize, 0..3u8), 1..6)
    ) {
        let schema = BuiltinMergeSchema::new("apps", "Deployment");
        let managers = ["alice", "bob", "carol"];
        let mut live: Option<Value> = None;
        for (cfg, who, op) in steps {
            let c = ctx(managers[who], &schema);
            let next = match op {
                0 => server_side_apply(live.as_ref(), &cfg, false, c),
                1 => server_side_apply(live.as_ref(), &cfg, true, c),
                _ => {
                    let mut new = cfg.clone();
                    if let Some(l) = &live {
                        new["metadata"]["managedFields"] = l["metadata"]["managedFields"].clone();
                    }
                    track_update(live.as_ref(), &new, c)
                }
            };
            let Ok(obj) = next else { continue };
            let entries = read_managed_fields(&obj).unwrap();
            for e in &entries {
                prop_assert!(!e.fields.is_empty());
                for p in e.fields.paths() {
                    prop_assert!(p.lookup_with(&obj, &schema).is_some(), "{} owns {} which does not exist", e.manager, p);
                }
            }
            if op == 1 {
                // A forced apply leaves the applier owning exactly its config.
                let mine = entries.iter().find(|e| e.manager == managers[who] && e.operation == "Apply").unwrap();
                prop_assert_eq!(&mine.fields, &fields_of(&cfg, &schema));
                let again = server_side_apply(Some(&obj), &cfg, false, c).unwrap();
                prop_assert_eq!(&again, &obj);
            }
            live = Some(obj);
        }
    }

    #[test]
    fn no_entry_point_panics_on_arbitrary_json(a in arb_json(), b in arb_json(), s in ".{0,24}") {
        let schemas: [&dyn MergeSchema; 4] = [
            &BuiltinMergeSchema::new("apps", "Deployment"),
            &BuiltinMergeSchema::new("", "Pod"),
            &CrdMergeSchema { schema: Some(b.clone()), status_subresource: true },
            &CrdMergeSchema::default(),
        ];
        let _ = LabelSelector::parse(&s);
        let _ = FieldSelector::parse(&s).map(|f| (f.matches(&a), f.validate_for("", "Pod", &[])));
        let _ = LabelSelector::from_label_selector_json(&a).map(|l| l.matches_object(&b));
        let _ = names::validate_object_name(&s, names::NameRule::Dns1123Subdomain);
        let _ = names::validate_dns1035_label(&s);
        let _ = names::validate_label_key(&s);
        let _ = names::validate_label_value(&s);
        let _ = names::generate_name(&s);
        let mut t = a.clone();
        json_merge_patch(&mut t, &b);
        let _ = json_patch(&a, &b);
        let _ = json_patch(&a, &json!([b.clone()]));
        let _ = FieldSet::from_fields_v1(&a);
        let _ = read_managed_fields(&a);
        let _ = validate(&a, &b);
        let mut p = a.clone();
        let _ = prune(&mut p, &b);
        let _ = spec_changed(&a, &b);
        let _ = is_noop_update(&a, &b);
        let _ = next_generation(Some(&a), &b);
        for schema in schemas {
            let _ = strategic_merge_patch(&a, &b, schema);
            let _ = fields_of(&a, schema).paths().iter().map(ToString::to_string).count();
            let _ = server_side_apply(Some(&a), &b, false, ctx("m", schema));
            let _ = server_side_apply(Some(&a), &b, true, WriteContext { subresource: Some("status"), ..ctx("m", schema) });
            let _ = server_side_apply(None, &b, false, ctx("m", schema));
            let _ = track_update(Some(&a), &b, ctx("m", schema));
            let _ = track_update(None, &a, WriteContext { subresource: Some("status"), ..ctx("m", schema) });
        }
    }

    #[test]
    fn apply_never_panics_on_deployment_shaped_input(a in arb_deployment(), b in arb_json(), c in arb_json()) {
        let schema = BuiltinMergeSchema::new("apps", "Deployment");
        let mut live = a.clone();
        live["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Apply", "fieldsV1": c}]);
        let mut cfg = a;
        cfg["spec"] = b;
        let _ = server_side_apply(Some(&live), &cfg, false, ctx("m", &schema));
        let _ = track_update(Some(&live), &cfg, ctx("m", &schema));
    }
}
