//! The last log lines of a service's pods, added to a not-ready explanation so
//! `hoist ci` never ends with an opaque timeout.

use hoist_kube::readiness::pod_selector;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use serde_json::Value;

/// Lines per container in an explanation.
pub const LOG_TAIL: i64 = 10;

/// `pod P container C (last N lines):` blocks for every pod matching `selector`.
/// Uses the previous run's log when a container has restarted (a crash loop's
/// current container has not written anything yet).
pub async fn last_logs(client: &kube::Client, namespace: &str, obj: &Value) -> Vec<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = if obj["kind"] == "Pod" {
        match obj["metadata"]["name"].as_str() {
            Some(n) => api.get_opt(n).await.ok().flatten().into_iter().collect(),
            None => Vec::new(),
        }
    } else {
        let Some(sel) = pod_selector(obj) else {
            return Vec::new();
        };
        match api.list(&ListParams::default().labels(&sel)).await {
            Ok(l) => l.items,
            Err(_) => return Vec::new(),
        }
    };
    let mut out = Vec::new();
    for p in pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let statuses = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        for cs in statuses {
            let running = cs.state.as_ref().is_some_and(|s| s.running.is_some());
            let previous = cs.restart_count > 0 && !running;
            let params = LogParams {
                container: Some(cs.name.clone()),
                tail_lines: Some(LOG_TAIL),
                previous,
                ..Default::default()
            };
            let text = match api.logs(&name, &params).await {
                Ok(t) => t,
                // A container that never ran (image missing) has no log: say nothing.
                Err(_) => continue,
            };
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                continue;
            }
            out.push(format!(
                "pod {name} container {}{} (last {} lines):",
                cs.name,
                if previous { ", previous run" } else { "" },
                lines.len()
            ));
            out.extend(lines.iter().map(|l| format!("  | {l}")));
        }
    }
    out
}
