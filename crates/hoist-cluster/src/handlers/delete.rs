//! DELETE of one object or a collection.

use std::sync::Arc;

use hyper::Response;
use serde_json::Value;

use super::Request;
use crate::app::{App, Propagation};
use crate::http::{Body, json_response};
use crate::machinery::Filter;
use crate::routes::Target;
use crate::status::{ApiError, ApiResult, success_status};
use crate::storage::Written;

fn options(req: &Request) -> ApiResult<(Propagation, Option<String>, Option<i64>)> {
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::bad_request(format!("the DeleteOptions body is not valid JSON: {e}"))
        })?
    };
    let policy = req
        .query
        .get("propagationPolicy")
        .map(str::to_string)
        .or_else(|| {
            body.get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .or_else(
            || match body.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => Some("Orphan".into()),
                _ => None,
            },
        );
    let policy = match policy.as_deref() {
        None | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not supported: use Background, Foreground or Orphan"
            )));
        }
    };
    let uid = body
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let grace = req
        .query
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse::<i64>().ok())
        .or_else(|| body.get("gracePeriodSeconds").and_then(Value::as_i64));
    Ok((policy, uid, grace))
}

pub fn delete(app: &Arc<App>, t: &Target, req: &Request) -> ApiResult<Response<Body>> {
    let (policy, uid, grace) = options(req)?;
    let name = t.name.as_deref().unwrap_or("");
    let written = app.delete_with_grace(
        &t.kind,
        t.namespace.as_deref().unwrap_or(""),
        name,
        policy,
        uid.as_deref(),
        grace,
    )?;
    Ok(match written {
        Written::Deleted(obj) if !(t.kind.group.is_empty() && t.kind.kind == "Pod") => {
            let uid = obj
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            json_response(
                200,
                &success_status(name, &t.kind.group, &t.kind.plural, uid),
            )
        }
        // Still finalizing (or a pod): the object itself.
        other => json_response(200, &crate::versions::present(&t.kind, other.into_value())),
    })
}

pub fn delete_collection(app: &Arc<App>, t: &Target, req: &Request) -> ApiResult<Response<Body>> {
    let (policy, _, grace) = options(req)?;
    let filter = Filter::parse(
        &t.kind,
        req.query.get("labelSelector"),
        req.query.get("fieldSelector"),
    )?;
    let (items, _) = app
        .store
        .list(&t.kind.storage_key(), t.namespace.as_deref())?;
    let mut deleted = Vec::new();
    for obj in items.iter().filter(|o| filter.matches(o)) {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = crate::objects::name_of(obj);
        match app.delete_with_grace(&t.kind, ns, name, policy, None, grace) {
            Ok(w) => deleted.push(w.into_value()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        200,
        &serde_json::json!({
            "kind": t.kind.list_kind(),
            "apiVersion": t.kind.api_version(),
            "metadata": {"resourceVersion": app.store.current_rv().to_string()},
            "items": deleted,
        }),
    ))
}
