//! Resource handlers, one module per verb family.

mod delete;
mod patch;
mod read;
mod scale;
mod watch;
mod write;

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, Response};
use serde_json::Value;

use crate::app::App;
use crate::http::{Body, Query};
use crate::routes::Target;
use crate::status::{ApiError, ApiResult};

/// What a handler needs from the request besides the target.
pub struct Request {
    pub method: Method,
    pub query: Query,
    pub accept: String,
    pub content_type: String,
    /// Names the field manager of writes that do not set `fieldManager`.
    pub user_agent: String,
    pub body: Bytes,
}

impl Request {
    pub fn wants_table(&self) -> bool {
        self.accept.contains("as=Table")
    }
}

pub async fn handle(app: &Arc<App>, t: Target, req: Request) -> ApiResult<Response<Body>> {
    if let Some(sub) = &t.subresource {
        let allowed = match sub.as_str() {
            "status" => t.kind.status_subresource,
            "scale" => t.kind.has_scale(),
            "finalize" => t.kind.kind == "Namespace" && t.kind.group.is_empty(),
            "log" => t.kind.kind == "Pod" && t.kind.group.is_empty(),
            _ => false,
        };
        if !allowed {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource ({} {}/{sub})",
                    req.method, t.kind.plural
                ),
            ));
        }
    }
    if let (Some(_), false) = (&t.namespace, t.kind.namespaced) {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if t.subresource.as_deref() == Some("log") {
        return crate::kubelet::logs::handle(app, &t, &req);
    }
    if t.subresource.as_deref() == Some("scale") {
        return scale::handle(app, &t, &req);
    }
    match (req.method.clone(), t.name.is_some()) {
        (Method::GET, false) if req.query.flag("watch") => watch::watch(app, &t, &req),
        (Method::GET, false) => read::list(app, &t, &req),
        (Method::GET, true) => read::get(app, &t, &req),
        (Method::POST, false) => write::create(app, &t, &req),
        (Method::PUT, true) => write::update(app, &t, &req),
        (Method::PATCH, true) => patch::patch(app, &t, &req),
        (Method::DELETE, true) => delete::delete(app, &t, &req),
        (Method::DELETE, false) => delete::delete_collection(app, &t, &req),
        (m, _) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{m} is not supported on this path"),
        )),
    }
}

/// Decodes a request body as JSON, or YAML when the content type says so.
pub fn decode_body(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; an object was expected",
        ));
    }
    if content_type.contains("protobuf") {
        return crate::protobuf::decode(body)
            .map_err(|e| ApiError::new(415, "UnsupportedMediaType", e.0));
    }
    let yaml = content_type.contains("yaml");
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    if yaml {
        return serde_norway::from_slice::<Value>(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request could not be decoded as YAML: {e}"
            ))
        });
    }
    let err = serde_json::from_slice::<Value>(body)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    Err(ApiError::bad_request(format!(
        "the body of the request was in an unknown format or malformed: {err} (accepted media types: application/json, application/yaml)"
    )))
}

/// The namespace a write lands in: the URL's for namespaced kinds (required).
pub fn write_namespace(t: &Target) -> ApiResult<Option<String>> {
    match (t.kind.namespaced, &t.namespace) {
        (true, Some(ns)) => Ok(Some(ns.clone())),
        (true, None) => Err(ApiError::bad_request(format!(
            "{} is namespaced: use /namespaces/{{namespace}}/{} in the path",
            t.kind.plural, t.kind.plural
        ))),
        (false, _) => Ok(None),
    }
}
