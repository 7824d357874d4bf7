//! Write semantics: when does `generation` bump, when is a write a no-op.

use serde_json::Value;

/// Whether anything outside `metadata` and `status` (and `apiVersion`/`kind`) changed:
/// Kubernetes bumps `metadata.generation` exactly then.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let _ = (old, new);
    todo!()
}

/// Whether `new` is the same object as `old` apart from `metadata.resourceVersion`:
/// such writes must not bump the RV nor emit watch events.
pub fn is_noop_update(old: &Value, new: &Value) -> bool {
    let _ = (old, new);
    todo!()
}
