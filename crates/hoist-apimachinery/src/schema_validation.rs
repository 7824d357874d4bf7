//! OpenAPI v3 validation and pruning of custom resources (a CRD version's `openAPIV3Schema`).
//!
//! Supported: `type`, `required`, `properties`, `items`, `enum`, `additionalProperties`,
//! `nullable`, `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string`,
//! `x-kubernetes-embedded-resource`, `minimum`/`maximum` (+ exclusive), `minLength`/
//! `maxLength`, `minItems`/`maxItems`. Not supported (accepted without checking):
//! `pattern`, `format`, `oneOf`/`anyOf`/`allOf`/`not`, CEL `x-kubernetes-validations`.

use crate::field_error::{FieldError, FieldErrorKind, go_value};
use serde_json::{Map, Value};

/// Validate `object` against `schema`. Error paths are relative to the object root
/// (`spec.replicas`), messages as Kubernetes prints them, e.g.
/// `spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`.
/// Root `apiVersion`, `kind` and `metadata` are validated by the server, not here.
pub fn validate(object: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match object {
        Value::Object(m) => {
            let mut root = m.clone();
            for k in ["apiVersion", "kind", "metadata"] {
                root.shift_remove(k);
            }
            let mut schema = schema.clone();
            if let Some(Value::Array(req)) = schema.get_mut("required") {
                req.retain(|r| !matches!(r.as_str(), Some("apiVersion" | "kind" | "metadata")));
            }
            validate_value(&Value::Object(root), &schema, "", &mut errs);
        }
        other => errs.push(FieldError::invalid(
            "<root>",
            Value::String(type_name(other).into()),
            "must be of type object",
        )),
    }
    errs
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn child(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn type_matches(want: &str, v: &Value) -> bool {
    match (want, v) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("boolean", Value::Bool(_)) => true,
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        ("number", Value::Number(_)) => true,
        _ => false,
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "<root>" } else { path }
}

fn validate_value(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let shown = display_path(path);
    let body = |msg: String| format!("{shown} in body {msg}");
    if v.is_null() {
        if !flag(schema, "nullable")
            && (schema.get("type").is_some() || flag(schema, "x-kubernetes-int-or-string"))
        {
            let want = if flag(schema, "x-kubernetes-int-or-string") {
                "integer,string"
            } else {
                schema["type"].as_str().unwrap_or("")
            };
            errs.push(FieldError::invalid(
                shown,
                Value::String("null".into()),
                body(format!("must be of type {want}: \"null\"")),
            ));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !matches!(v, Value::String(_)) && !type_matches("integer", v) {
            errs.push(FieldError::invalid(
                shown,
                Value::String(type_name(v).into()),
                body(format!(
                    "must be of type integer,string: \"{}\"",
                    type_name(v)
                )),
            ));
            return;
        }
    } else if let Some(want) = schema.get("type").and_then(Value::as_str)
        && !type_matches(want, v)
    {
        errs.push(FieldError::invalid(
            shown,
            Value::String(type_name(v).into()),
            body(format!("must be of type {want}: \"{}\"", type_name(v))),
        ));
        return;
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(go_value).collect();
        errs.push(FieldError::new(
            FieldErrorKind::NotSupported,
            shown,
            Some(v.clone()),
            format!("supported values: {}", list.join(", ")),
        ));
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                let excl = flag(schema, "exclusiveMinimum");
                if x < min || (excl && x == min) {
                    let rel = if excl {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        shown,
                        v.clone(),
                        body(format!("should be {rel} {}", schema["minimum"])),
                    ));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                let excl = flag(schema, "exclusiveMaximum");
                if x > max || (excl && x == max) {
                    let rel = if excl {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        shown,
                        v.clone(),
                        body(format!("should be {rel} {}", schema["maximum"])),
                    ));
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                errs.push(FieldError::invalid(
                    shown,
                    v.clone(),
                    body(format!("should be at least {min} chars long")),
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                errs.push(FieldError::new(
                    FieldErrorKind::TooLong,
                    shown,
                    Some(v.clone()),
                    format!("may not be more than {max} bytes"),
                ));
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errs.push(FieldError::invalid(
                    shown,
                    v.clone(),
                    body(format!("should have at least {min} items")),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                errs.push(FieldError::new(
                    FieldErrorKind::TooLong,
                    shown,
                    None,
                    format!("must have at most {max} items"),
                ));
            }
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    validate_value(item, item_schema, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(m) => validate_object(m, schema, path, errs),
        _ => {}
    }
}

fn validate_object(m: &Map<String, Value>, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(Value::Array(required)) = schema.get("required") {
        for r in required.iter().filter_map(Value::as_str) {
            if !m.contains_key(r) {
                errs.push(FieldError::required(child(path, r), ""));
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    for (k, v) in m {
        let p = child(path, k);
        match props.and_then(|ps| ps.get(k)) {
            Some(s) => validate_value(v, s, &p, errs),
            None => match schema.get("additionalProperties") {
                Some(s @ Value::Object(_)) => validate_value(v, s, &p, errs),
                Some(Value::Bool(false))
                    if !flag(schema, "x-kubernetes-preserve-unknown-fields") =>
                {
                    errs.push(FieldError::new(FieldErrorKind::Forbidden, p, None, ""));
                }
                _ => {}
            },
        }
    }
}

/// Remove fields the schema does not declare (unless `x-kubernetes-preserve-unknown-fields`).
/// Root `apiVersion`, `kind` and `metadata` are always kept (as are those of
/// `x-kubernetes-embedded-resource` objects). Returns the pruned paths, e.g. `spec.extra`.
pub fn prune(object: &mut Value, schema: &Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_value(object, schema, "", true, &mut pruned);
    pruned
}

fn prune_value(
    v: &mut Value,
    schema: &Value,
    path: &str,
    keep_meta: bool,
    pruned: &mut Vec<String>,
) {
    match v {
        Value::Object(m) => {
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let embedded = keep_meta || flag(schema, "x-kubernetes-embedded-resource");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let p = child(path, &k);
                let sub = props.and_then(|ps| ps.get(&k)).or(additional);
                match sub {
                    Some(s) => {
                        if let Some(val) = m.get_mut(&k) {
                            prune_value(val, s, &p, false, pruned);
                        }
                    }
                    None if preserve
                        || (embedded
                            && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")) => {}
                    None => {
                        m.shift_remove(&k);
                        pruned.push(p);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_value(item, item_schema, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["foo"],
                    "properties": {
                        "foo": {"type": "string"},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "opt": {"type": "string", "nullable": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "name": {"type": "string", "minLength": 2, "maxLength": 4}
                    }
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        })
    }

    fn messages(obj: Value) -> Vec<String> {
        validate(&obj, &schema())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn valid_object_has_no_errors() {
        let obj = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"foo": "x", "replicas": 3, "mode": "a", "port": "http", "tags": ["a"], "opt": null, "labels": {"a": "b"}, "free": {"any": [1]}, "name": "abc"}});
        assert_eq!(messages(obj), Vec::<String>::new());
        assert!(messages(json!({"spec": {"foo": "x", "port": 80}})).is_empty());
    }

    #[test]
    fn kubernetes_style_messages() {
        assert_eq!(
            messages(json!({"spec": {"foo": "x", "replicas": "string"}})),
            vec![
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
            ]
        );
        assert_eq!(
            messages(json!({"spec": {}})),
            vec!["spec.foo: Required value"]
        );
        assert_eq!(messages(json!({})), vec!["spec: Required value"]);
        assert_eq!(
            messages(json!({"spec": {"foo": "x", "mode": "c"}})),
            vec!["spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\""]
        );
        assert_eq!(
            messages(json!({"spec": {"foo": "x", "replicas": 0}})),
            vec![
                "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"foo": "x", "port": true}})),
            vec![
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"foo": null}})),
            vec![
                "spec.foo: Invalid value: \"null\": spec.foo in body must be of type string: \"null\""
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"foo": "x", "tags": ["a", 1]}})),
            vec![
                "spec.tags[1]: Invalid value: \"integer\": spec.tags[1] in body must be of type string: \"integer\""
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"foo": "x", "labels": {"a": 1}}})),
            vec![
                "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\""
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"foo": "x", "tags": ["a", "b", "c"]}})),
            vec!["spec.tags: Too long: must have at most 2 items"]
        );
        assert_eq!(
            messages(json!({"spec": {"foo": "x", "name": "abcde"}})),
            vec!["spec.name: Too long: may not be more than 4 bytes"]
        );
        assert_eq!(
            messages(json!({"spec": {"foo": "x", "replicas": 1.5}})).len(),
            1
        );
        assert_eq!(validate(&json!([]), &schema()).len(), 1);
    }

    #[test]
    fn invalid_message_wraps_errors() {
        let errs = validate(&json!({"spec": {"replicas": "x"}}), &schema());
        assert_eq!(
            crate::field_error::invalid_message("Widget", "w1", &errs),
            "Widget \"w1\" is invalid: [spec.foo: Required value, spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"]"
        );
    }

    #[test]
    fn pruning_removes_unknown_fields_only() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"}, "extra": 1,
            "spec": {"foo": "x", "bogus": {"a": 1}, "free": {"kept": true}, "labels": {"any": "x"}, "tags": ["a"]},
            "status": {"ready": true, "junk": 1}});
        let pruned = prune(&mut obj, &schema());
        assert_eq!(pruned, vec!["extra", "spec.bogus", "status.junk"]);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"foo": "x", "free": {"kept": true}, "labels": {"any": "x"}, "tags": ["a"]}, "status": {"ready": true}})
        );
        let mut any = json!({"a": {"b": 1}});
        assert!(
            prune(
                &mut any,
                &json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
            )
            .is_empty()
        );
    }
}
