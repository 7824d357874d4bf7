//! get and list (with selectors and Table output).

use std::sync::Arc;

use hyper::Response;
use serde_json::{Value, json};

use super::Request;
use crate::app::App;
use crate::http::{Body, json_response, json_with_type};
use crate::machinery::Filter;
use crate::routes::Target;
use crate::status::{ApiError, ApiResult};
use crate::tables;

pub fn get(app: &Arc<App>, t: &Target, req: &Request) -> ApiResult<Response<Body>> {
    let name = t.name.as_deref().unwrap_or("");
    let ns = t.namespace.as_deref().unwrap_or("");
    let obj = app
        .store
        .get(&t.kind.storage_key(), ns, name)?
        .ok_or_else(|| ApiError::not_found(&t.kind.group, &t.kind.plural, name))?;
    let obj = crate::versions::present(&t.kind, obj);
    if req.wants_table() {
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return Ok(table_response(&tables::table(
            &t.kind,
            &[obj],
            &rv,
            include_object(req),
        )));
    }
    Ok(json_response(200, &obj))
}

fn include_object(req: &Request) -> bool {
    req.query.get("includeObject") == Some("Object")
}

fn table_response(v: &Value) -> Response<Body> {
    json_with_type(200, v, "application/json;as=Table;v=v1;g=meta.k8s.io")
}

pub fn list(app: &Arc<App>, t: &Target, req: &Request) -> ApiResult<Response<Body>> {
    let filter = Filter::parse(
        &t.kind,
        req.query.get("labelSelector"),
        req.query.get("fieldSelector"),
    )?;
    let (items, rv) = app
        .store
        .list(&t.kind.storage_key(), t.namespace.as_deref())?;
    let items: Vec<Value> = items
        .into_iter()
        .filter(|o| filter.matches(o))
        .map(|o| crate::versions::present(&t.kind, o))
        .collect();
    let rv = rv.to_string();
    if req.wants_table() {
        return Ok(table_response(&tables::table(
            &t.kind,
            &items,
            &rv,
            include_object(req),
        )));
    }
    Ok(json_response(
        200,
        &json!({
            "kind": t.kind.list_kind(),
            "apiVersion": t.kind.api_version(),
            "metadata": {"resourceVersion": rv},
            "items": items,
        }),
    ))
}
