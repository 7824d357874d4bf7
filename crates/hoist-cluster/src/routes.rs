//! Maps a request path to what it addresses.

use crate::registry::{Registry, ResourceKind};

#[derive(Debug)]
pub enum Route {
    Version,
    Health(&'static str),
    /// `/api` or `/apis` (true = `/apis`).
    Root(bool),
    GroupVersion {
        group: String,
        version: String,
    },
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3 {
        group: String,
        version: String,
    },
    Resource(Box<Target>),
    NotFound,
}

/// A resource collection, object or subresource.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: ResourceKind,
    /// From the URL (`/namespaces/{ns}/...`); `None` for cluster-scoped or all-namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn route(registry: &Registry, path: &str) -> Route {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Route::Version,
        ["healthz"] => Route::Health("healthz"),
        ["livez"] => Route::Health("livez"),
        ["readyz"] => Route::Health("readyz"),
        ["healthz" | "livez" | "readyz", ..] => Route::Health("check"),
        ["api"] => Route::Root(false),
        ["apis"] => Route::Root(true),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", v] => Route::OpenApiV3 {
            group: String::new(),
            version: v.to_string(),
        },
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3 {
            group: g.to_string(),
            version: v.to_string(),
        },
        ["api", v, rest @ ..] => resource(registry, "", v, rest),
        ["apis", g] => {
            let _ = g;
            Route::NotFound
        }
        ["apis", g, v, rest @ ..] => resource(registry, g, v, rest),
        _ => Route::NotFound,
    }
}

fn resource(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> Route {
    if rest.is_empty() {
        let known = registry
            .all()
            .iter()
            .any(|k| k.group == group && k.version == version);
        return if known {
            Route::GroupVersion {
                group: group.into(),
                version: version.into(),
            }
        } else {
            Route::NotFound
        };
    }
    let target = |kind: ResourceKind, ns: Option<&str>, tail: &[&str]| -> Route {
        if tail.len() > 2 {
            return Route::NotFound;
        }
        Route::Resource(Box::new(Target {
            kind,
            namespace: ns.map(str::to_string),
            name: tail.first().map(|s| s.to_string()),
            subresource: tail.get(1).map(|s| s.to_string()),
        }))
    };
    if rest[0] == "namespaces"
        && rest.len() >= 3
        && let Some(kind) = registry
            .lookup(group, version, rest[2])
            .filter(|k| k.namespaced)
    {
        return target(kind, Some(rest[1]), &rest[3..]);
    }
    match registry.lookup(group, version, rest[0]) {
        Some(kind) => target(kind, None, &rest[1..]),
        None => Route::NotFound,
    }
}
