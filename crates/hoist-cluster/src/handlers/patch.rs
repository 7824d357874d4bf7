//! PATCH with the four content types: merge, JSON, strategic merge and apply (SSA).

use std::sync::Arc;

use hyper::Response;
use serde_json::Value;

use super::write::{create_prepared, manager, opts, write_existing};
use super::{Request, decode_body, write_namespace};
use crate::app::App;
use crate::clock;
use crate::http::{Body, json_response};
use crate::machinery;
use crate::objects;
use crate::routes::Target;
use crate::status::{ApiError, ApiResult};

enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

fn patch_type(content_type: &str) -> ApiResult<PatchType> {
    let base = content_type.split(';').next().unwrap_or("").trim();
    match base {
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
            ),
        )),
    }
}

pub fn patch(app: &Arc<App>, t: &Target, req: &Request) -> ApiResult<Response<Body>> {
    let ptype = patch_type(&req.content_type)?;
    let body = decode_body(&req.content_type, &req.body)?;
    let sub = t.subresource.as_deref();
    let now = clock::now_rfc3339();
    match ptype {
        PatchType::Apply => return apply(app, t, req, &body),
        PatchType::Strategic if t.kind.custom => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not supported for custom resources: use a merge patch (--type=merge) or a JSON patch",
            ));
        }
        _ => {}
    }
    let mgr = manager(req);
    let value = write_existing(app, t, opts(req), |kind, cur| {
        let patched = match ptype {
            PatchType::Merge => {
                if !body.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                machinery::merge_patch(cur, &body)?
            }
            PatchType::Json => {
                if !body.is_array() {
                    return Err(ApiError::bad_request(
                        "a JSON patch must be an array of operations",
                    ));
                }
                machinery::json_patch(cur, &body)?
            }
            PatchType::Strategic => {
                if !body.is_object() {
                    return Err(ApiError::bad_request(
                        "a strategic merge patch must be a JSON object",
                    ));
                }
                machinery::strategic_patch(kind, cur, &body)?
            }
            PatchType::Apply => unreachable!("handled above"),
        };
        objects::check_precondition(kind, cur, &patched)?;
        let new = objects::merge_update(kind, cur, patched, sub)?;
        machinery::track_update(kind, Some(cur), &new, &mgr, sub, &now)
    })?;
    Ok(json_response(200, &value))
}

fn apply(app: &Arc<App>, t: &Target, req: &Request, body: &Value) -> ApiResult<Response<Body>> {
    let Some(mgr) = req.query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "PATCH requests with Content-Type application/apply-patch+yaml must set the fieldManager query parameter",
        ));
    };
    objects::check_type(&t.kind, body)?;
    let force = req.query.flag("force");
    let sub = t.subresource.as_deref();
    let now = clock::now_rfc3339();
    let name = t.name.as_deref().unwrap_or("");
    if let Some(n) = objects::meta_str(body, "name")
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let ns = write_namespace(t)?;
    let exists = app
        .store
        .get(&t.kind.storage_key(), ns.as_deref().unwrap_or(""), name)?
        .is_some();
    if !exists && sub.is_none() {
        let mut applied =
            machinery::server_side_apply(&t.kind, None, body, force, mgr, None, &now)?;
        applied["metadata"]["name"] = Value::String(name.to_string());
        let obj = objects::prepare_create(&t.kind, ns.as_deref(), applied)?;
        let created = create_prepared(app, t, ns.as_deref(), obj, opts(req))?;
        return Ok(json_response(201, &created));
    }
    let value = write_existing(app, t, opts(req), |kind, cur| {
        let applied = machinery::server_side_apply(kind, Some(cur), body, force, mgr, sub, &now)?;
        objects::check_precondition(kind, cur, &applied)?;
        objects::merge_update(kind, cur, applied, sub)
    })?;
    Ok(json_response(200, &value))
}
