//! The `/scale` subresource (autoscaling/v1 Scale) of Deployments, ReplicaSets and
//! StatefulSets, used by `kubectl scale`.

use std::sync::Arc;

use hyper::{Method, Response};
use serde_json::{Value, json};

use super::write::{manager, opts, write_existing};
use super::{Request, decode_body};
use crate::app::App;
use crate::http::{Body, json_response};
use crate::machinery;
use crate::routes::Target;
use crate::status::{ApiError, ApiResult};

fn to_scale(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"], "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

pub fn handle(app: &Arc<App>, t: &Target, req: &Request) -> ApiResult<Response<Body>> {
    let name = t.name.as_deref().unwrap_or("");
    let ns = t.namespace.as_deref().unwrap_or("");
    if req.method == Method::GET {
        let obj = app
            .store
            .get(&t.kind.storage_key(), ns, name)?
            .ok_or_else(|| ApiError::not_found(&t.kind.group, &t.kind.plural, name))?;
        return Ok(json_response(200, &to_scale(&obj)));
    }
    let body = decode_body(&req.content_type, &req.body)?;
    let main = Target {
        subresource: None,
        ..t.clone()
    };
    let method = req.method.clone();
    let mgr = manager(req);
    let now = crate::clock::now_rfc3339();
    let ct = req
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let value = write_existing(app, &main, opts(req), |kind, cur| {
        let scale = to_scale(cur);
        let new_scale = match (&method, ct.as_str()) {
            (&Method::PUT, _) => body.clone(),
            (&Method::PATCH, "application/json-patch+json") => {
                machinery::json_patch(&scale, &body)?
            }
            (
                &Method::PATCH,
                "application/merge-patch+json" | "application/strategic-merge-patch+json",
            ) => machinery::merge_patch(&scale, &body)?,
            (&Method::PATCH, other) => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("patch type {other:?} is not supported on /scale"),
                ));
            }
            (m, _) => {
                return Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    format!("{m} is not supported on /scale"),
                ));
            }
        };
        let sent_rv = new_scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !sent_rv.is_empty()
            && Some(sent_rv)
                != cur
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::conflict(&kind.group, &kind.plural, name));
        }
        let replicas = new_scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .filter(|r| *r >= 0)
            .ok_or_else(|| {
                ApiError::invalid(
                    "Scale",
                    name,
                    vec![(
                        "spec.replicas".into(),
                        "must be a non-negative integer".into(),
                    )],
                )
            })?;
        let mut new = cur.clone();
        new["spec"]["replicas"] = json!(replicas);
        if new != *cur {
            let g = cur
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        machinery::track_update(kind, Some(cur), &new, &mgr, None, &now)
    })?;
    Ok(json_response(200, &to_scale(&value)))
}
