//! Write semantics: when does `generation` bump, when is a write a no-op.

use serde_json::Value;

fn strip<'a>(v: &'a Value, drop: &[&str]) -> Vec<(&'a String, &'a Value)> {
    match v {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| !drop.contains(&k.as_str()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether anything outside `metadata` and `status` (and `apiVersion`/`kind`) changed:
/// Kubernetes bumps `metadata.generation` exactly then. Key order does not matter.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    const DROP: &[&str] = &["metadata", "status", "apiVersion", "kind"];
    let mut a = strip(old, DROP);
    let mut b = strip(new, DROP);
    a.sort_by(|x, y| x.0.cmp(y.0));
    b.sort_by(|x, y| x.0.cmp(y.0));
    a != b
}

/// The `metadata.generation` the new object must carry: 1 on create, +1 when
/// [`spec_changed`], unchanged otherwise.
pub fn next_generation(old: Option<&Value>, new: &Value) -> i64 {
    match old {
        None => 1,
        Some(old) => {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if spec_changed(old, new) {
                g.saturating_add(1)
            } else {
                g
            }
        }
    }
}

/// Whether `new` is the same object as `old` apart from `metadata.resourceVersion`
/// (and key order): such writes must not bump the RV nor emit watch events.
pub fn is_noop_update(old: &Value, new: &Value) -> bool {
    fn without_rv(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(Value::Object(meta)) = v.get_mut("metadata") {
            meta.shift_remove("resourceVersion");
        }
        v
    }
    // serde_json's Map equality ignores insertion order, even with preserve_order.
    without_rv(old) == without_rv(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generation_bumps_only_on_spec_changes() {
        let old = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "generation": 3}, "spec": {"replicas": 1}, "status": {}});
        let mut labels = old.clone();
        labels["metadata"]["labels"] = json!({"x": "y"});
        assert!(!spec_changed(&old, &labels));
        assert_eq!(next_generation(Some(&old), &labels), 3);
        let mut status = old.clone();
        status["status"]["replicas"] = json!(1);
        assert!(!spec_changed(&old, &status));
        let mut spec = old.clone();
        spec["spec"]["replicas"] = json!(2);
        assert!(spec_changed(&old, &spec));
        assert_eq!(next_generation(Some(&old), &spec), 4);
        assert_eq!(next_generation(None, &spec), 1);
        // ConfigMaps have no spec: data changes count.
        assert!(spec_changed(
            &json!({"data": {"a": "1"}}),
            &json!({"data": {"a": "2"}})
        ));
    }

    #[test]
    fn noop_detection_ignores_resource_version_and_key_order() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1"}, "data": {"x": "1", "y": "2"}});
        let b = json!({"data": {"y": "2", "x": "1"}, "metadata": {"resourceVersion": "7", "name": "a"}});
        assert!(is_noop_update(&a, &b));
        let c = json!({"metadata": {"name": "a"}, "data": {"x": "1"}});
        assert!(!is_noop_update(&a, &c));
    }
}
