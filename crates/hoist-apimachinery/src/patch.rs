//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes strategic merge patch.

use crate::merge_schema::MergeSchema;
use serde_json::Value;

/// Why a patch could not be applied. The server answers 422 (or 400 for malformed
/// patches, 409 for a failed `test`), with `to_string()` as the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed.
    #[error("invalid patch: {0}")]
    Invalid(String),
    /// A JSON patch `test` operation failed.
    #[error("testing value {path} failed")]
    TestFailed { path: String },
    /// A JSON patch path does not exist / cannot be applied.
    #[error("{0}")]
    Path(String),
}

/// RFC 7386: merge `patch` into `target` in place (`null` deletes a field).
pub fn json_merge_patch(target: &mut Value, patch: &Value) {
    let _ = (target, patch);
    todo!()
}

/// RFC 6902: apply an array of operations (add, remove, replace, move, copy, test).
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let _ = (target, ops);
    todo!()
}

/// Kubernetes strategic merge patch of `original` with `patch` under `schema`.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: &dyn MergeSchema,
) -> Result<Value, PatchError> {
    let _ = (original, patch, schema);
    todo!()
}
