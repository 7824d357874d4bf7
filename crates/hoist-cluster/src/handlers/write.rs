//! create (POST) and update (PUT), including the status subresource and namespace finalize.

use std::sync::Arc;

use hyper::Response;
use serde_json::Value;

use super::{Request, decode_body, write_namespace};
use crate::app::App;
use crate::clock;
use crate::http::{Body, json_response};
use crate::machinery;
use crate::objects;
use crate::routes::Target;
use crate::status::{ApiError, ApiResult};
use crate::storage::{Write, Written};

/// The field manager of a non-apply write: `fieldManager`, else, as Kubernetes does,
/// the User-Agent up to its first `/` (`kubectl/v1.32 …` → `kubectl`).
pub fn manager(req: &Request) -> String {
    if let Some(m) = req.query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = hoist_apimachinery::apply::default_manager(&req.user_agent);
    if ua.is_empty() { "unknown".into() } else { ua }
}

/// Per-request write options: `?dryRun=All` and `?fieldValidation=Strict`.
#[derive(Clone, Copy)]
pub struct WriteOpts {
    pub dry: bool,
    pub strict: bool,
}

pub fn opts(req: &Request) -> WriteOpts {
    WriteOpts {
        dry: req.query.get("dryRun") == Some("All"),
        strict: req.query.get("fieldValidation") == Some("Strict"),
    }
}

/// Custom resources: validate against the CRD schema, then drop undeclared fields
/// (rejected instead under `fieldValidation=Strict`, as Kubernetes does).
fn check_custom(
    kind: &crate::registry::ResourceKind,
    obj: &mut Value,
    name: &str,
    strict: bool,
) -> ApiResult<()> {
    // Built-in kinds drop undeclared fields as decoding into their Go types does.
    let pruned = if kind.custom {
        machinery::validate_custom(kind, obj, name)?;
        machinery::prune_custom(kind, obj)?
    } else {
        objects::drop_unknown_fields(kind, obj)
    };
    if strict && !pruned.is_empty() {
        let fields = pruned
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {fields}"
        )));
    }
    Ok(())
}

pub fn create(app: &Arc<App>, t: &Target, req: &Request) -> ApiResult<Response<Body>> {
    let body = decode_body(&req.content_type, &req.body)?;
    let ns = write_namespace(t)?;
    let obj = objects::prepare_create(&t.kind, ns.as_deref(), body)?;
    let obj = machinery::track_update(
        &t.kind,
        None,
        &obj,
        &manager(req),
        None,
        &clock::now_rfc3339(),
    )?;
    let written = create_prepared(app, t, ns.as_deref(), obj, opts(req))?;
    Ok(json_response(201, &written))
}

/// Validates and stores a fully prepared new object (also used by server-side apply).
pub fn create_prepared(
    app: &Arc<App>,
    t: &Target,
    ns: Option<&str>,
    mut obj: Value,
    o: WriteOpts,
) -> ApiResult<Value> {
    let name = objects::name_of(&obj).to_string();
    check_custom(&t.kind, &mut obj, &name, o.strict)?;
    let dry = o.dry;
    if t.kind.kind == "CustomResourceDefinition" {
        crate::registry::kinds_from_crd(&obj)
            .map_err(|e| ApiError::invalid(&t.kind.kind, &name, vec![("spec".into(), e)]))?;
    }
    if let Some(ns) = ns {
        app.ensure_namespace_writable(ns)?;
    }
    // Held until the Service is stored, so concurrent creates never share an IP/port.
    let alloc = is_service(&t.kind).then(crate::service_alloc::lock);
    if is_service(&t.kind) {
        let used = crate::service_alloc::InUse::read(&app.store, None)?;
        crate::service_alloc::on_create(&used, &mut obj)?;
    }
    if dry {
        if app
            .store
            .get(&t.kind.storage_key(), ns.unwrap_or(""), &name)?
            .is_some()
        {
            return Err(ApiError::already_exists(
                &t.kind.group,
                &t.kind.plural,
                &name,
            ));
        }
        return Ok(obj);
    }
    let written = app
        .store
        .write(&t.kind.storage_key(), ns.unwrap_or(""), &name, |cur| {
            if cur.is_some() {
                return Err(ApiError::already_exists(
                    &t.kind.group,
                    &t.kind.plural,
                    &name,
                ));
            }
            Ok(Write::Put(obj))
        })?;
    drop(alloc);
    app.after_write(&t.kind, &written);
    Ok(crate::versions::present(&t.kind, written.into_value()))
}

pub fn update(app: &Arc<App>, t: &Target, req: &Request) -> ApiResult<Response<Body>> {
    let body = decode_body(&req.content_type, &req.body)?;
    if let Some(n) = objects::meta_str(&body, "name")
        && Some(n) != t.name.as_deref()
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({})",
            t.name.as_deref().unwrap_or("")
        )));
    }
    let mgr = manager(req);
    let value = write_existing(app, t, opts(req), |kind, cur| {
        objects::check_precondition(kind, cur, &body)?;
        let sub = t.subresource.as_deref();
        if sub == Some("finalize") {
            // Only spec.finalizers may change through /finalize.
            let mut out = cur.clone();
            out["spec"]["finalizers"] = body
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(Value::Array(vec![]));
            return Ok(out);
        }
        let new = objects::merge_update(kind, cur, body.clone(), sub)?;
        machinery::track_update(kind, Some(cur), &new, &mgr, sub, &clock::now_rfc3339())
    })?;
    Ok(json_response(200, &value))
}

/// Read-modify-write of an existing object: `f` builds the new object from the current
/// one; validation, finalizer-driven removal and CRD side effects happen here.
pub fn write_existing(
    app: &Arc<App>,
    t: &Target,
    o: WriteOpts,
    f: impl FnOnce(&crate::registry::ResourceKind, &Value) -> ApiResult<Value>,
) -> ApiResult<Value> {
    let name = t.name.as_deref().unwrap_or("");
    let ns = t.namespace.as_deref().unwrap_or("");
    let kind = &t.kind;
    // Services keep their ClusterIP and nodePorts; what others hold is read before the
    // store's write lock is taken (the allocation lock keeps it current).
    let alloc = is_service(kind).then(crate::service_alloc::lock);
    let used = if is_service(kind) && t.subresource.is_none() {
        Some(crate::service_alloc::InUse::read(
            &app.store,
            Some((ns, name)),
        )?)
    } else {
        None
    };
    let written = app.store.write(&kind.storage_key(), ns, name, |cur| {
        let cur = cur.ok_or_else(|| ApiError::not_found(&kind.group, &kind.plural, name))?;
        let mut new = f(kind, cur)?;
        if let Some(used) = &used {
            crate::service_alloc::on_update(used, cur, &mut new)?;
        }
        check_custom(kind, &mut new, name, o.strict)?;
        if o.dry {
            return Ok(Write::Unchanged(new));
        }
        if finished_deleting(kind, &new) {
            return Ok(Write::Delete);
        }
        Ok(Write::Put(new))
    })?;
    drop(alloc);
    app.after_write(kind, &written);
    let v = match written {
        // A deletion completed by removing the last finalizer returns the final state.
        Written::Deleted(v) | Written::Created(v) | Written::Updated(v) | Written::Unchanged(v) => {
            v
        }
    };
    Ok(crate::versions::present(kind, v))
}

fn is_service(kind: &crate::registry::ResourceKind) -> bool {
    kind.group.is_empty() && kind.kind == "Service"
}

/// An object marked for deletion goes away once its last finalizer is removed
/// (namespaces also wait for `spec.finalizers`).
fn finished_deleting(kind: &crate::registry::ResourceKind, obj: &Value) -> bool {
    if !objects::is_deleting(obj) || !objects::finalizers(obj).is_empty() {
        return false;
    }
    if kind.group.is_empty() && kind.kind == "Namespace" {
        return obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
    }
    true
}
