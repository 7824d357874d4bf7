//! Events about pods (and the workloads that own them), so `kubectl describe` and `kubectl get events` explain what happened.

use serde_json::{Value, json};

use crate::app::App;
use crate::clock::now_rfc3339;
use crate::objects;
use crate::storage::Write;

/// Records one Event about `pod` or any other stored object (`field`: e.g.
/// `spec.containers{web}`).
pub fn record(
    app: &App,
    pod: &Value,
    field: Option<&str>,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let Some(kind) = app.registry.lookup("", "v1", "events") else {
        return;
    };
    let ns = objects::meta_str(pod, "namespace").unwrap_or("default");
    let pod_name = objects::name_of(pod);
    let uid = objects::new_uid();
    let name = format!("{pod_name}.{}", &uid[..uid.len().min(16)].replace('-', ""));
    let now = now_rfc3339();
    // Stored objects carry their apiVersion and kind; a bare pod value may not.
    let mut involved = json!({
        "apiVersion": pod.get("apiVersion").and_then(Value::as_str).unwrap_or("v1"),
        "kind": pod.get("kind").and_then(Value::as_str).unwrap_or("Pod"),
        "namespace": ns, "name": pod_name,
        "uid": objects::meta_str(pod, "uid").unwrap_or(""),
    });
    if let Some(f) = field {
        involved["fieldPath"] = json!(f);
    }
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": involved,
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component, "host": super::NODE_NAME},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": component, "reportingInstance": super::NODE_NAME,
    });
    let result = objects::prepare_create(&kind, Some(ns), event).and_then(|obj| {
        app.store
            .write(&kind.storage_key(), ns, &name, |_| Ok(Write::Put(obj)))
    });
    if let Err(e) = result {
        tracing::debug!(error = %e, reason, "cannot record event");
    }
}
