//! Server-side apply and ownership tracking for ordinary writes.

use crate::managed_fields::FieldPath;
use crate::merge_schema::MergeSchema;
use serde_json::Value;

/// One conflicting field: another manager owns it with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Display name as in Kubernetes: `"kubectl-client-side-apply" using apps/v1`.
    pub manager: String,
    /// `.spec.replicas`
    pub field: String,
    pub path: FieldPath,
}

/// Why an apply failed. The server turns `Conflicts` into a 409 with `reason: Conflict`,
/// `details.causes[] = {reason: "FieldManagerConflict", message: cause_message(c), field}`
/// and `message = to_string()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration or live object is malformed (400/422).
    #[error("{0}")]
    Invalid(String),
}

/// `Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`, or for
/// several, grouped by manager: `Apply failed with 2 conflicts: conflicts with "m":\n- .a\n- .b`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let _ = conflicts;
    todo!()
}

/// The message of one conflict's Status cause: `conflict with "m" using apps/v1`.
pub fn cause_message(conflict: &Conflict) -> String {
    let _ = conflict;
    todo!()
}

/// What an apply or update is about.
#[derive(Clone, Copy)]
pub struct WriteContext<'a> {
    pub manager: &'a str,
    /// `None` for the main resource, `Some("status")` for the status subresource.
    pub subresource: Option<&'a str>,
    /// RFC 3339 time for the managedFields entry.
    pub now: &'a str,
    pub schema: &'a dyn MergeSchema,
}

/// Server-side apply `applied` onto `live` (None = create). Returns the new object with
/// `metadata.managedFields` updated; the caller then sets server fields (RV, uid...).
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    force: bool,
    ctx: WriteContext<'_>,
) -> Result<Value, ApplyError> {
    let _ = (live, applied, force, ctx);
    todo!()
}

/// Record a non-apply write (create/update/patch): `ctx.manager` (operation `Update`)
/// takes ownership of every field whose value it changed, other managers lose them.
/// Honours managedFields sent by the client (kept as given; `[{}]` resets them).
pub fn track_update(
    old: Option<&Value>,
    new: &Value,
    ctx: WriteContext<'_>,
) -> Result<Value, ApplyError> {
    let _ = (old, new, ctx);
    todo!()
}
