//! Pod status pieces in the shape kubectl reads them.

use serde_json::{Value, json};

/// Sets condition `type_` in `status.conditions`, keeping lastTransitionTime when the
/// status is unchanged.
pub fn set_condition(status: &mut Value, type_: &str, ok: bool, reason: Option<&str>, now: &str) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let want = if ok { "True" } else { "False" };
    let conds = status["conditions"]
        .as_array_mut()
        .expect("just made an array");
    let mut cond = json!({
        "type": type_, "status": want, "lastProbeTime": null, "lastTransitionTime": now,
    });
    if let Some(r) = reason {
        cond["reason"] = json!(r);
    }
    match conds.iter_mut().find(|c| c["type"] == type_) {
        Some(c) => {
            if c["status"] == want {
                cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
            }
            *c = cond;
        }
        None => conds.push(cond),
    }
}
