//! OpenAPI v3: an index and one document per group-version, enough for `kubectl apply`
//! (the PATCH operation with a `fieldValidation` parameter per kind, so kubectl validates
//! server-side) and `kubectl explain` (a schema per kind with its GVK marker).
//! `/openapi/v2` is not served (404): client-go parses it as protobuf only.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceKind};

fn base_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

/// `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}}}`.
pub fn index(registry: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, versions) in registry.groups() {
        for v in versions {
            let doc = document(registry, &g, &v).to_string();
            let p = base_path(&g, &v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", fnv(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

/// Schema name as Kubernetes spells it: `io.k8s.api.apps.v1.Deployment`, CRDs reversed group.
fn schema_name(k: &ResourceKind) -> String {
    let group = match k.group.as_str() {
        "" => "io.k8s.api.core".to_string(),
        g if !k.custom => format!("io.k8s.api.{}", g.split('.').next().unwrap_or(g)),
        g => g.split('.').rev().collect::<Vec<_>>().join("."),
    };
    format!("{group}.{}.{}", k.version, k.kind)
}

fn gvk(k: &ResourceKind) -> Value {
    json!([{"group": k.group, "version": k.version, "kind": k.kind}])
}

fn kind_schema(k: &ResourceKind) -> Value {
    let mut schema = match &k.schema {
        Some(s) => s.clone(),
        None if matches!(k.kind.as_str(), "ConfigMap" | "Secret") && k.group.is_empty() => json!({
            "type": "object",
            "properties": {
                "data": {"type": "object", "description": "The stored key-value pairs.", "additionalProperties": {"type": "string"}},
            }
        }),
        None => json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "description": format!("Desired state of the {}.", k.kind), "x-kubernetes-preserve-unknown-fields": true},
                "status": {"type": "object", "description": format!("Observed state of the {}.", k.kind), "x-kubernetes-preserve-unknown-fields": true},
            }
        }),
    };
    if schema.get("description").is_none() {
        schema["description"] = json!(format!(
            "{} ({}) served by the hoist dev cluster.",
            k.kind,
            k.api_version()
        ));
    }
    let props = schema
        .as_object_mut()
        .map(|o| o.entry("properties").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut);
    if let Some(props) = props {
        props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
        props.insert("metadata".into(), json!({"type": "object", "description": "Standard object's metadata.", "x-kubernetes-preserve-unknown-fields": true}));
    }
    schema["type"] = json!("object");
    schema["x-kubernetes-group-version-kind"] = gvk(k);
    schema
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(k: &ResourceKind, verb: &str, action: &str, schema_ref: &Value) -> Value {
    let mut params = vec![param("dryRun"), param("fieldManager")];
    if matches!(action, "patch" | "post" | "put") {
        params.push(param("fieldValidation"));
    }
    if action == "patch" {
        params.push(param("force"));
    }
    let mut op = json!({
        "operationId": format!("{verb}{}", k.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": k.group, "version": k.version, "kind": k.kind},
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}},
    });
    if action == "patch" {
        let body = json!({"schema": {"type": "object"}});
        // Strategic merge is deliberately not listed: kubectl would then compute client-side
        // apply patches from these schemas, which are not detailed enough; without it kubectl
        // uses its compiled-in types for built-in kinds (and merge patch for CRs).
        op["requestBody"] = json!({"content": {
            "application/apply-patch+yaml": body,
            "application/json-patch+json": body,
            "application/merge-patch+json": body,
        }, "required": true});
    }
    op
}

/// The OpenAPI v3 document of one group-version.
pub fn document(registry: &Registry, group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for k in registry
        .all()
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let name = schema_name(k);
        let schema_ref = json!({"$ref": format!("#/components/schemas/{name}")});
        schemas.insert(name, kind_schema(k));
        let prefix = format!("/{}", base_path(group, version));
        let collection = if k.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", k.plural)
        } else {
            format!("{prefix}/{}", k.plural)
        };
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(k, "list", "list", &schema_ref),
                "post": operation(k, "create", "post", &schema_ref),
            }),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": operation(k, "read", "get", &schema_ref),
                "put": operation(k, "replace", "put", &schema_ref),
                "patch": operation(k, "patch", "patch", &schema_ref),
                "delete": operation(k, "delete", "delete", &schema_ref),
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
