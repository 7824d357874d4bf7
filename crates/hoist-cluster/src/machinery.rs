//! The one place that calls `hoist-apimachinery` (selectors, names, patches, apply,
//! managed fields, schema validation), translating its errors into API errors.
//! Calls are guarded so a panic inside the library becomes a 500, never a crash.

use std::panic::{AssertUnwindSafe, catch_unwind};

use am::merge_schema::{BuiltinMergeSchema, CrdMergeSchema, MergeSchema};
use hoist_apimachinery as am;
use serde_json::{Value, json};

use crate::registry::ResourceKind;
use crate::status::{ApiError, ApiResult};

fn guard<T>(what: &str, f: impl FnOnce() -> T) -> ApiResult<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let detail = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        tracing::error!(%what, %detail, "hoist-apimachinery panicked");
        ApiError::internal(format!("internal error in {what}: {detail}"))
    })
}

/// The merge rules for a kind.
pub fn schema_for(kind: &ResourceKind) -> Box<dyn MergeSchema> {
    if kind.custom {
        Box::new(CrdMergeSchema {
            schema: kind.schema.clone(),
            status_subresource: kind.status_subresource,
        })
    } else {
        Box::new(BuiltinMergeSchema::new(&kind.group, &kind.kind))
    }
}

/// Parsed `labelSelector` + `fieldSelector` of a list or watch.
#[derive(Default)]
pub struct Filter {
    labels: Option<am::selector::LabelSelector>,
    fields: Option<am::selector::FieldSelector>,
}

impl Filter {
    pub fn parse(kind: &ResourceKind, label: Option<&str>, field: Option<&str>) -> ApiResult<Self> {
        let mut f = Filter::default();
        if let Some(l) = label.filter(|s| !s.trim().is_empty()) {
            let parsed = guard("label selector", || am::selector::LabelSelector::parse(l))?
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
            f.labels = Some(parsed);
        }
        if let Some(s) = field.filter(|s| !s.trim().is_empty()) {
            let parsed = guard("field selector", || am::selector::FieldSelector::parse(s))?
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
            guard("field selector", || {
                parsed.validate_for(&kind.group, &kind.kind, &[])
            })?
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
            f.fields = Some(parsed);
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let l = self
            .labels
            .as_ref()
            .is_none_or(|s| guard("label selector", || s.matches_object(obj)).unwrap_or(false));
        l && self
            .fields
            .as_ref()
            .is_none_or(|s| guard("field selector", || s.matches(obj)).unwrap_or(false))
    }
}

/// Validates `metadata.name` for the kind: 422 Invalid with the library's messages.
pub fn validate_name(kind: &ResourceKind, name: &str) -> ApiResult<()> {
    let errors = guard("name validation", || {
        let rule = am::names::name_rule_for(&kind.group, &kind.kind);
        am::names::validate_object_name(name, rule)
    })?;
    if errors.is_empty() {
        return Ok(());
    }
    let detail = errors.join(", ");
    Err(ApiError::invalid(
        &kind.kind,
        name,
        vec![(
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": {detail}"),
        )],
    ))
}

pub fn generate_name(prefix: &str) -> ApiResult<String> {
    guard("generateName", || am::names::generate_name(prefix))
}

pub fn spec_changed(old: &Value, new: &Value) -> ApiResult<bool> {
    guard("generation", || am::semantics::spec_changed(old, new))
}

fn patch_error(e: am::patch::PatchError) -> ApiError {
    match e {
        am::patch::PatchError::Invalid(m) => ApiError::bad_request(format!("invalid patch: {m}")),
        am::patch::PatchError::TestFailed { path } => ApiError::new(
            422,
            "Invalid",
            format!(
                "the server rejected our request due to an error in our request: testing value {path} failed"
            ),
        ),
        am::patch::PatchError::Path(m) => ApiError::new(422, "Invalid", m),
    }
}

pub fn merge_patch(target: &Value, patch: &Value) -> ApiResult<Value> {
    let mut out = target.clone();
    guard("merge patch", || {
        am::patch::json_merge_patch(&mut out, patch)
    })?;
    Ok(out)
}

pub fn json_patch(target: &Value, ops: &Value) -> ApiResult<Value> {
    guard("json patch", || am::patch::json_patch(target, ops))?.map_err(patch_error)
}

pub fn strategic_patch(kind: &ResourceKind, target: &Value, patch: &Value) -> ApiResult<Value> {
    let schema = schema_for(kind);
    guard("strategic merge patch", || {
        am::patch::strategic_merge_patch(target, patch, schema.as_ref())
    })?
    .map_err(patch_error)
}

fn apply_error(kind: &ResourceKind, e: am::apply::ApplyError) -> ApiError {
    match e {
        am::apply::ApplyError::Conflicts(conflicts) => {
            let message = am::apply::conflict_message(&conflicts);
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": am::apply::cause_message(c), "field": c.field}))
                .collect();
            ApiError::new(409, "Conflict", message)
                .with_details(json!({"kind": kind.plural, "group": kind.group, "causes": causes}))
        }
        am::apply::ApplyError::Invalid(m) => ApiError::new(422, "Invalid", m),
    }
}

/// Server-side apply; returns the object with managedFields updated.
pub fn server_side_apply(
    kind: &ResourceKind,
    live: Option<&Value>,
    applied: &Value,
    force: bool,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) -> ApiResult<Value> {
    let schema = schema_for(kind);
    let ctx = am::apply::WriteContext {
        manager,
        subresource,
        now,
        schema: schema.as_ref(),
    };
    guard("server-side apply", || {
        am::apply::server_side_apply(live, applied, force, ctx)
    })?
    .map_err(|e| apply_error(kind, e))
}

/// Records a non-apply write in managedFields.
pub fn track_update(
    kind: &ResourceKind,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) -> ApiResult<Value> {
    let schema = schema_for(kind);
    let ctx = am::apply::WriteContext {
        manager,
        subresource,
        now,
        schema: schema.as_ref(),
    };
    guard("managed fields", || am::apply::track_update(old, new, ctx))?
        .map_err(|e| apply_error(kind, e))
}

/// Validates a custom resource against its CRD schema: 422 with one cause per field.
pub fn validate_custom(kind: &ResourceKind, obj: &Value, name: &str) -> ApiResult<()> {
    let Some(schema) = &kind.schema else {
        return Ok(());
    };
    let errors = guard("schema validation", || {
        am::schema_validation::validate(obj, schema)
    })?;
    if errors.is_empty() {
        return Ok(());
    }
    let causes = errors.iter().map(|e| (e.field.clone(), e.body())).collect();
    Err(ApiError::invalid(&kind.kind, name, causes))
}

/// Removes fields the CRD schema does not declare; returns their paths.
pub fn prune_custom(kind: &ResourceKind, obj: &mut Value) -> ApiResult<Vec<String>> {
    let Some(schema) = &kind.schema else {
        return Ok(Vec::new());
    };
    guard("schema pruning", || {
        am::schema_validation::prune(obj, schema)
    })
}
