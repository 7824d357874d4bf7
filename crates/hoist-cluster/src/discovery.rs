//! Discovery documents: aggregated (apidiscovery.k8s.io/v2, v2beta1) and legacy.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceKind};

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Which aggregated format the client asked for, if any (from the Accept header).
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        let has = |x: &str| p.contains(&x);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

fn response_kind(k: &ResourceKind) -> Value {
    json!({"group": k.group, "version": k.version, "kind": k.kind})
}

fn aggregated_resource(k: &ResourceKind) -> Value {
    let mut subs = Vec::new();
    if k.status_subresource {
        subs.push(json!({"subresource": "status", "responseKind": response_kind(k), "verbs": ["get", "patch", "update"]}));
    }
    if k.has_scale() {
        subs.push(json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]}));
    }
    if k.group.is_empty() && k.kind == "Namespace" {
        subs.push(json!({"subresource": "finalize", "responseKind": response_kind(k), "verbs": ["update"]}));
    }
    let mut r = json!({
        "resource": k.plural,
        "singularResource": k.singular,
        "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
        "responseKind": response_kind(k),
        "verbs": VERBS,
    });
    if !k.short_names.is_empty() {
        r["shortNames"] = json!(k.short_names);
    }
    if !k.categories.is_empty() {
        r["categories"] = json!(k.categories);
    }
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

/// `APIGroupDiscoveryList` for `/api` (core) or `/apis` (every named group).
pub fn aggregated(registry: &Registry, apis: bool, version: &str) -> Value {
    let kinds = registry.all();
    let items: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() != apis)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = kinds
                        .iter()
                        .filter(|k| k.group == g && &k.version == v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// Legacy `/api` (APIVersions).
pub fn api_versions(server_addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}],
    })
}

/// Legacy `/apis` (APIGroupList).
pub fn api_group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            let preferred = vs[0].clone();
            json!({"name": g, "versions": vs, "preferredVersion": preferred})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/api/v1` or `/apis/{g}/{v}` (APIResourceList).
pub fn api_resource_list(registry: &Registry, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for k in registry
        .all()
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let mut r = json!({
            "name": k.plural,
            "singularName": k.singular,
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": VERBS,
        });
        if !k.short_names.is_empty() {
            r["shortNames"] = json!(k.short_names);
        }
        if !k.categories.is_empty() {
            r["categories"] = json!(k.categories);
        }
        resources.push(r);
        if k.has_scale() {
            resources.push(json!({"name": format!("{}/scale", k.plural), "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        if k.status_subresource {
            resources.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}
