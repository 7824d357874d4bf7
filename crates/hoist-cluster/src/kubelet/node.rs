//! The single Node object and the trivial scheduler that binds pods to it.

use serde_json::{Value, json};

use crate::app::App;
use crate::clock::now_rfc3339;
use crate::objects;
use crate::status::{ApiError, ApiResult};
use crate::storage::Write;

pub const NODE_NAME: &str = "hoist";

/// What the node reports as allocatable: this machine's CPUs and memory.
pub(super) fn capacity() -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({
        "cpu": cpus.to_string(),
        "memory": format!("{mem_kib}Ki"),
        "pods": "250",
        "ephemeral-storage": "0",
    })
}

/// Creates or refreshes the `hoist` Node (Ready, capacity, addresses).
pub fn register(app: &App) -> ApiResult<()> {
    let kind = app
        .registry
        .lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("the Node kind is missing"))?;
    let now = now_rfc3339();
    let conditions = json!([
        {"type": "Ready", "status": "True", "reason": "KubeletReady",
         "message": "hoist kubelet is posting ready status",
         "lastHeartbeatTime": now, "lastTransitionTime": now},
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
         "message": "", "lastHeartbeatTime": now, "lastTransitionTime": now},
        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
         "message": "", "lastHeartbeatTime": now, "lastTransitionTime": now},
        {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
         "message": "", "lastHeartbeatTime": now, "lastTransitionTime": now},
    ]);
    let status = json!({
        "capacity": capacity(),
        "allocatable": capacity(),
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": NODE_NAME},
        ],
        "nodeInfo": {
            "architecture": std::env::consts::ARCH,
            "operatingSystem": "linux",
            "containerRuntimeVersion": "runc",
            "kubeletVersion": "v1.33.0-hoist",
            "kubeProxyVersion": "",
            "osImage": "hoist dev cluster",
            "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": "",
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
    });
    let written = app.store.write(&kind.storage_key(), "", NODE_NAME, |cur| {
        let mut obj = match cur {
            Some(c) => c.clone(),
            None => objects::prepare_create(
                &kind,
                None,
                json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": NODE_NAME, "labels": {
                        "kubernetes.io/hostname": NODE_NAME,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": std::env::consts::ARCH,
                        "node-role.kubernetes.io/control-plane": "",
                    }},
                    "spec": {},
                }),
            )?,
        };
        obj["status"] = status.clone();
        Ok(Write::Put(obj))
    })?;
    app.after_write(&kind, &written);
    Ok(())
}

/// Binds a pending pod to the node (nodeName + PodScheduled) and records `Scheduled`.
pub fn schedule(app: &App, ns: &str, name: &str, uid: &str) {
    let now = now_rfc3339();
    let result = app.store.write("/pods", ns, name, |cur| {
        let Some(cur) = cur else {
            return Ok(Write::Unchanged(Value::Null));
        };
        if objects::meta_str(cur, "uid") != Some(uid)
            || cur
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
        {
            return Ok(Write::Unchanged(Value::Null));
        }
        let mut new = cur.clone();
        new["spec"]["nodeName"] = json!(NODE_NAME);
        if !new["status"].is_object() {
            new["status"] = json!({});
        }
        new["status"]["phase"] = json!("Pending");
        super::status::set_condition(&mut new["status"], "PodScheduled", true, None, &now);
        Ok(Write::Put(new))
    });
    match result {
        Ok(crate::storage::Written::Updated(pod)) => {
            super::events::record(
                app,
                &pod,
                None,
                "Normal",
                "Scheduled",
                &format!("Successfully assigned {ns}/{name} to {NODE_NAME}"),
                "default-scheduler",
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "cannot schedule pod"),
    }
}
