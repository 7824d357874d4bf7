//! Workload specs in the API server's write path: the defaults Kubernetes fills in
//! (clients such as `kubectl rollout status` read them: a StatefulSet without
//! `updateStrategy.type` would be refused as "not RollingUpdate") and the check that a
//! workload's selector (matchLabels and matchExpressions) selects its own template.

use hoist_apimachinery::selector::LabelSelector;
use serde_json::{Value, json};

use crate::registry::ResourceKind;
use crate::status::{ApiError, ApiResult};

/// Fills unset defaulted fields of `obj` (a whole object of `kind`); other kinds untouched.
pub fn apply_defaults(kind: &ResourceKind, obj: &mut Value) {
    if kind.custom {
        return;
    }
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("apps", "StatefulSet") => {
            set(spec, "replicas", json!(1));
            set(spec, "podManagementPolicy", json!("OrderedReady"));
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
            if spec["updateStrategy"]["type"] == "RollingUpdate" {
                set(
                    &mut spec["updateStrategy"],
                    "rollingUpdate",
                    json!({"partition": 0}),
                );
                set(
                    &mut spec["updateStrategy"]["rollingUpdate"],
                    "partition",
                    json!(0),
                );
            }
            set(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        ("apps", "DaemonSet") => {
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
            if spec["updateStrategy"]["type"] == "RollingUpdate" {
                set(
                    &mut spec["updateStrategy"],
                    "rollingUpdate",
                    json!({"maxUnavailable": 1, "maxSurge": 0}),
                );
            }
        }
        ("batch", "CronJob") => {
            set(spec, "concurrencyPolicy", json!("Allow"));
            set(spec, "suspend", json!(false));
            set(spec, "successfulJobsHistoryLimit", json!(3));
            set(spec, "failedJobsHistoryLimit", json!(1));
        }
        _ => {}
    }
}

/// A Deployment, ReplicaSet, StatefulSet, DaemonSet or Job with a selector must select
/// its template's labels (422 otherwise, with Kubernetes' wording).
pub fn validate(kind: &ResourceKind, obj: &Value) -> ApiResult<()> {
    if !kind.custom && kind.group == "batch" && kind.kind == "CronJob" {
        return validate_cron_job(obj);
    }
    let workload = matches!(
        (kind.group.as_str(), kind.kind.as_str()),
        (
            "apps",
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
        ) | ("batch", "Job")
    );
    if kind.custom || !workload {
        return Ok(());
    }
    let Some(sel) = obj.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        return Ok(());
    };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let invalid =
        |field: &str, msg: String| ApiError::invalid(&kind.kind, name, vec![(field.into(), msg)]);
    let selector = LabelSelector::from_label_selector_json(sel)
        .map_err(|e| invalid("spec.selector", format!("Invalid value: {sel}: {e}")))?;
    if selector.is_empty() {
        return Err(invalid(
            "spec.selector",
            "Invalid value: {}: empty selector is invalid for deployment"
                .replace("deployment", &kind.kind.to_ascii_lowercase()),
        ));
    }
    let template = obj.pointer("/spec/template").cloned().unwrap_or(json!({}));
    if !selector.matches_object(&template) {
        let labels = template
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        return Err(invalid(
            "spec.template.metadata.labels",
            format!("Invalid value: {labels}: `selector` does not match template `labels`"),
        ));
    }
    Ok(())
}

/// A CronJob's schedule must parse and its timeZone exist (422 otherwise).
fn validate_cron_job(obj: &Value) -> ApiResult<()> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let invalid =
        |field: &str, msg: String| ApiError::invalid("CronJob", name, vec![(field.into(), msg)]);
    let Some(schedule) = obj.pointer("/spec/schedule").and_then(Value::as_str) else {
        return Err(invalid("spec.schedule", "Required value".into()));
    };
    crate::cron::Schedule::parse(schedule)
        .map_err(|e| invalid("spec.schedule", format!("Invalid value: {schedule:?}: {e}")))?;
    if let Some(tz) = obj.pointer("/spec/timeZone").and_then(Value::as_str) {
        crate::cron::time_zone(tz)
            .map_err(|e| invalid("spec.timeZone", format!("Invalid value: {tz:?}: {e}")))?;
    }
    Ok(())
}

/// Sets `field` of an object when it is missing or null.
fn set(obj: &mut Value, field: &str, value: Value) {
    if let Some(o) = obj.as_object_mut()
        && o.get(field).is_none_or(Value::is_null)
    {
        o.insert(field.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(group: &str, k: &str) -> ResourceKind {
        crate::registry::builtin_kinds()
            .into_iter()
            .find(|r| r.group == group && r.kind == k)
            .unwrap()
    }

    #[test]
    fn statefulsets_default_to_ordered_rolling_updates() {
        let mut sts = json!({"spec": {"serviceName": "web"}});
        apply_defaults(&kind("apps", "StatefulSet"), &mut sts);
        assert_eq!(sts["spec"]["updateStrategy"]["type"], "RollingUpdate");
        assert_eq!(
            sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
            0
        );
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(sts["spec"]["replicas"], 1);
        // Set values stay; OnDelete gets no rollingUpdate.
        let mut sts = json!({"spec": {"replicas": 3, "updateStrategy": {"type": "OnDelete"}}});
        apply_defaults(&kind("apps", "StatefulSet"), &mut sts);
        assert_eq!(sts["spec"]["replicas"], 3);
        assert!(sts["spec"]["updateStrategy"].get("rollingUpdate").is_none());
    }

    #[test]
    fn daemonsets_and_cronjobs_get_their_defaults() {
        let mut ds = json!({"spec": {}});
        apply_defaults(&kind("apps", "DaemonSet"), &mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            1
        );
        let mut cj = json!({"spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid"}});
        apply_defaults(&kind("batch", "CronJob"), &mut cj);
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(cj["spec"]["suspend"], false);
    }

    #[test]
    fn selectors_with_match_expressions_must_select_the_template() {
        let sts = kind("apps", "StatefulSet");
        let obj = |labels: Value| {
            json!({"metadata": {"name": "web"}, "spec": {
                "selector": {"matchExpressions": [
                    {"key": "app", "operator": "In", "values": ["web", "www"]},
                    {"key": "canary", "operator": "DoesNotExist"}]},
                "template": {"metadata": {"labels": labels}}}})
        };
        validate(&sts, &obj(json!({"app": "www"}))).unwrap();
        let e = validate(&sts, &obj(json!({"app": "www", "canary": "1"}))).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.to_string().contains("does not match template"), "{e}");
        let bad = json!({"spec": {"selector": {"matchExpressions": [
            {"key": "app", "operator": "Bogus", "values": ["x"]}]}}});
        assert_eq!(validate(&sts, &bad).unwrap_err().code, 422);
    }

    #[test]
    fn cron_jobs_need_a_valid_schedule_and_time_zone() {
        let cj = kind("batch", "CronJob");
        let obj = |spec: Value| json!({"metadata": {"name": "tick"}, "spec": spec});
        validate(&cj, &obj(json!({"schedule": "@hourly"}))).unwrap();
        let e = validate(&cj, &obj(json!({"schedule": "61 * * * *"}))).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.to_string().contains("spec.schedule"), "{e}");
        assert!(
            e.to_string().contains("minute: value 61 out of range"),
            "{e}"
        );
        let e = validate(&cj, &obj(json!({"schedule": "CRON_TZ=UTC 0 * * * *"}))).unwrap_err();
        assert!(e.to_string().contains("use timeZone field instead"), "{e}");
        let e = validate(
            &cj,
            &obj(json!({"schedule": "0 * * * *", "timeZone": "Mars/Base"})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("spec.timeZone"), "{e}");
        assert_eq!(validate(&cj, &obj(json!({}))).unwrap_err().code, 422);
    }
}
