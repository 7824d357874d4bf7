//! `meta.k8s.io/v1` Table output for `kubectl get`, with per-kind columns.

use serde_json::{Value, json};

use crate::clock::human_age;
use crate::registry::{Columns, ResourceKind};

fn col(name: &str, ty: &str, format: &str, priority: u8) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn i(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn definitions(c: Columns) -> Vec<Value> {
    let name = col("Name", "string", "name", 0);
    let age = col("Age", "string", "", 0);
    match c {
        Columns::Pod => vec![
            name,
            col("Ready", "string", "", 0),
            col("Status", "string", "", 0),
            col("Restarts", "string", "", 0),
            age,
            col("IP", "string", "", 1),
            col("Node", "string", "", 1),
        ],
        Columns::Deployment => vec![
            name,
            col("Ready", "string", "", 0),
            col("Up-to-date", "integer", "", 0),
            col("Available", "integer", "", 0),
            age,
        ],
        Columns::Service => vec![
            name,
            col("Type", "string", "", 0),
            col("Cluster-IP", "string", "", 0),
            col("External-IP", "string", "", 0),
            col("Port(s)", "string", "", 0),
            age,
            col("Selector", "string", "", 1),
        ],
        Columns::Namespace => vec![name, col("Status", "string", "", 0), age],
        Columns::ConfigMap => vec![name, col("Data", "integer", "", 0), age],
        Columns::Secret => vec![
            name,
            col("Type", "string", "", 0),
            col("Data", "integer", "", 0),
            age,
        ],
        Columns::Node => vec![
            name,
            col("Status", "string", "", 0),
            col("Roles", "string", "", 0),
            age,
            col("Version", "string", "", 0),
            col("Internal-IP", "string", "", 1),
        ],
        Columns::Event => vec![
            col("Last Seen", "string", "", 0),
            col("Type", "string", "", 0),
            col("Reason", "string", "", 0),
            col("Object", "string", "", 0),
            col("Message", "string", "", 0),
            col("Name", "string", "name", 1),
        ],
        Columns::StatefulSet => vec![
            name,
            col("Ready", "string", "", 0),
            age,
            col("Containers", "string", "", 1),
            col("Images", "string", "", 1),
        ],
        Columns::DaemonSet => vec![
            name,
            col("Desired", "integer", "", 0),
            col("Current", "integer", "", 0),
            col("Ready", "integer", "", 0),
            col("Up-to-date", "integer", "", 0),
            col("Available", "integer", "", 0),
            col("Node Selector", "string", "", 0),
            age,
        ],
        Columns::CronJob => vec![
            name,
            col("Schedule", "string", "", 0),
            col("Timezone", "string", "", 0),
            col("Suspend", "boolean", "", 0),
            col("Active", "integer", "", 0),
            col("Last Schedule", "string", "", 0),
            age,
        ],
        Columns::ControllerRevision => vec![
            name,
            col("Controller", "string", "", 0),
            col("Revision", "integer", "", 0),
            age,
        ],
        Columns::PersistentVolumeClaim => vec![
            name,
            col("Status", "string", "", 0),
            col("Volume", "string", "", 0),
            col("Capacity", "string", "", 0),
            col("Access Modes", "string", "", 0),
            col("StorageClass", "string", "", 0),
            age,
        ],
        Columns::Default => vec![name, age],
    }
}

/// The STATUS column as kubectl prints it: a container's waiting or terminated reason
/// (CrashLoopBackOff, Error, Completed...) wins over the phase; Terminating over all.
fn pod_status<'a>(o: &'a Value, statuses: Option<&'a Vec<Value>>) -> String {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let p = s(o, "/status/phase");
    let mut reason = if p.is_empty() { "Pending" } else { p }.to_string();
    if let Some(init) = init_status(o) {
        return init;
    }
    for c in statuses.into_iter().flatten() {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str)
            && !r.is_empty()
        {
            reason = r.to_string();
        } else if let Some(t) = c.pointer("/state/terminated") {
            reason = match t["reason"].as_str() {
                Some(r) if !r.is_empty() => r.to_string(),
                _ => format!("ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
            };
        }
    }
    reason
}

/// Whether an init container status belongs to a sidecar (`restartPolicy: Always`).
fn is_sidecar(pod: &Value, status: &Value) -> bool {
    pod.pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["name"] == status["name"] && c["restartPolicy"] == "Always")
}

/// While init containers run, kubectl shows `Init:<done>/<total>`, or the failing one's
/// reason (`Init:Error`, `Init:CrashLoopBackOff`, `Init:ExitCode:N`).
fn init_status(o: &Value) -> Option<String> {
    let total = o
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let statuses = o
        .pointer("/status/initContainerStatuses")
        .and_then(Value::as_array)?;
    for (i, c) in statuses.iter().enumerate() {
        if is_sidecar(o, c) && c["started"] == json!(true) {
            continue;
        }
        if let Some(t) = c.pointer("/state/terminated") {
            if t["exitCode"].as_i64() == Some(0) {
                continue;
            }
            return Some(match t["reason"].as_str() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => format!("Init:ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
            });
        }
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str)
            && !r.is_empty()
            && r != "PodInitializing"
        {
            return Some(format!("Init:{r}"));
        }
        return Some(format!("Init:{i}/{total}"));
    }
    None
}

/// The pod template's container names and images, comma-separated (wide columns).
fn template_containers(o: &Value) -> (String, String) {
    let cs = o
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let join = |f: &str| {
        cs.iter()
            .filter_map(|c| c[f].as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    (join("name"), join("image"))
}

fn cells(c: Columns, o: &Value) -> Vec<Value> {
    let name = json!(s(o, "/metadata/name"));
    let age = json!(human_age(s(o, "/metadata/creationTimestamp")));
    match c {
        Columns::Pod => {
            let containers = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let mut ready = statuses.map_or(0, |a| {
                a.iter().filter(|c| c["ready"] == json!(true)).count()
            });
            // Init containers' restarts count too, and sidecars count as containers, as
            // kubectl's printer does.
            let init = o
                .pointer("/status/initContainerStatuses")
                .and_then(Value::as_array);
            let sidecars: Vec<&Value> = init
                .into_iter()
                .flatten()
                .filter(|c| is_sidecar(o, c))
                .collect();
            let containers = containers + sidecars.len();
            ready += sidecars
                .iter()
                .filter(|c| c["started"] == json!(true) && c["ready"] == json!(true))
                .count();
            let restarts: i64 = statuses
                .into_iter()
                .chain(init)
                .flatten()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            let status = pod_status(o, statuses);
            let ip = s(o, "/status/podIP");
            let node = s(o, "/spec/nodeName");
            vec![
                name,
                json!(format!("{ready}/{containers}")),
                json!(status),
                json!(restarts.to_string()),
                age,
                json!(if ip.is_empty() { "<none>" } else { ip }),
                json!(if node.is_empty() { "<none>" } else { node }),
            ]
        }
        Columns::Event => {
            let last = match s(o, "/lastTimestamp") {
                "" => s(o, "/metadata/creationTimestamp"),
                t => t,
            };
            vec![
                json!(human_age(last)),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(format!(
                    "{}/{}",
                    s(o, "/involvedObject/kind").to_lowercase(),
                    s(o, "/involvedObject/name")
                )),
                json!(s(o, "/message")),
                name,
            ]
        }
        Columns::Node => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"] == "True");
            let status = match ready {
                Some(true) => "Ready",
                Some(false) => "NotReady",
                None => "Unknown",
            };
            let roles = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "<none>".into());
            let ip = o
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str())
                .unwrap_or("<none>");
            vec![
                name,
                json!(status),
                json!(roles),
                age,
                json!(s(o, "/status/nodeInfo/kubeletVersion")),
                json!(ip),
            ]
        }
        Columns::Deployment => vec![
            name,
            json!(format!(
                "{}/{}",
                i(o, "/status/readyReplicas"),
                o.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )),
            json!(i(o, "/status/updatedReplicas")),
            json!(i(o, "/status/availableReplicas")),
            age,
        ],
        Columns::Service => {
            let ports = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let proto = p["protocol"].as_str().unwrap_or("TCP");
                            match p["nodePort"].as_i64() {
                                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                                None => format!("{}/{proto}", p["port"]),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            let ty = s(o, "/spec/type");
            let ip = s(o, "/spec/clusterIP");
            let selector = o
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(if ty.is_empty() { "ClusterIP" } else { ty }),
                json!(if ip.is_empty() { "<none>" } else { ip }),
                json!("<none>"),
                json!(ports),
                age,
                json!(selector),
            ]
        }
        Columns::Namespace => vec![name, json!(s(o, "/status/phase")), age],
        Columns::ConfigMap => {
            let n = ["data", "binaryData"]
                .iter()
                .map(|f| o.get(*f).and_then(Value::as_object).map_or(0, |m| m.len()))
                .sum::<usize>();
            vec![name, json!(n), age]
        }
        Columns::Secret => {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            let ty = s(o, "/type");
            vec![
                name,
                json!(if ty.is_empty() { "Opaque" } else { ty }),
                json!(n),
                age,
            ]
        }
        Columns::StatefulSet => {
            let (containers, images) = template_containers(o);
            let want = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                name,
                json!(format!("{}/{want}", i(o, "/status/readyReplicas"))),
                age,
                json!(containers),
                json!(images),
            ]
        }
        Columns::DaemonSet => {
            let selector = o
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(i(o, "/status/desiredNumberScheduled")),
                json!(i(o, "/status/currentNumberScheduled")),
                json!(i(o, "/status/numberReady")),
                json!(i(o, "/status/updatedNumberScheduled")),
                json!(i(o, "/status/numberAvailable")),
                json!(selector),
                age,
            ]
        }
        Columns::CronJob => {
            let last = s(o, "/status/lastScheduleTime");
            let active = o
                .pointer("/status/active")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            vec![
                name,
                json!(s(o, "/spec/schedule")),
                json!(match s(o, "/spec/timeZone") {
                    "" => "<none>",
                    tz => tz,
                }),
                // Kubernetes prints the flag as a word.
                json!(
                    if o.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
                        "True"
                    } else {
                        "False"
                    }
                ),
                json!(active),
                json!(if last.is_empty() {
                    "<none>".to_string()
                } else {
                    human_age(last)
                }),
                age,
            ]
        }
        Columns::ControllerRevision => {
            let owner = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
                .map(|r| {
                    let group = r["apiVersion"]
                        .as_str()
                        .and_then(|v| v.split_once('/'))
                        .map_or(String::new(), |(g, _)| format!(".{g}"));
                    format!(
                        "{}{group}/{}",
                        r["kind"].as_str().unwrap_or("").to_ascii_lowercase(),
                        r["name"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(owner), json!(i(o, "/revision")), age]
        }
        Columns::PersistentVolumeClaim => {
            let modes = o
                .pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter_map(|a| {
                            Some(match a.as_str()? {
                                "ReadWriteOnce" => "RWO",
                                "ReadOnlyMany" => "ROX",
                                "ReadWriteMany" => "RWX",
                                "ReadWriteOncePod" => "RWOP",
                                other => other,
                            })
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(s(o, "/status/phase")),
                json!(s(o, "/spec/volumeName")),
                json!(s(o, "/status/capacity/storage")),
                json!(modes),
                json!(match s(o, "/spec/storageClassName") {
                    "" => "<unset>",
                    c => c,
                }),
                age,
            ]
        }
        Columns::Default => vec![name, age],
    }
}

/// Value at a simple JSONPath (`.spec.size`, `.status.conditions[0].type`) as a cell.
fn json_path_cell(o: &Value, path: &str) -> Value {
    let mut cur = o;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        let (field, index) = match part.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        cur = match cur.get(field) {
            Some(v) => v,
            None => return Value::Null,
        };
        if let Some(i) = index {
            cur = match cur.get(i) {
                Some(v) => v,
                None => return Value::Null,
            };
        }
    }
    cur.clone()
}

/// The Table for `objects`; rows carry PartialObjectMetadata (or the object itself).
pub fn table(kind: &ResourceKind, objects: &[Value], rv: &str, include_object: bool) -> Value {
    if !kind.printer_columns.is_empty() {
        return custom_table(kind, objects, rv, include_object);
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = if include_object {
                o.clone()
            } else {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))})
            };
            json!({"cells": cells(kind.columns, o), "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": definitions(kind.columns),
        "rows": rows,
    })
}

/// Tables of custom resources with `additionalPrinterColumns`: Name, the columns, Age.
fn custom_table(kind: &ResourceKind, objects: &[Value], rv: &str, include_object: bool) -> Value {
    let mut defs = vec![col("Name", "string", "name", 0)];
    let mut has_age = false;
    for c in &kind.printer_columns {
        let ty = if c.type_ == "date" {
            "date"
        } else {
            c.type_.as_str()
        };
        has_age |= c.json_path == ".metadata.creationTimestamp";
        defs.push(col(
            &c.name,
            if ty == "date" { "string" } else { ty },
            "",
            c.priority.clamp(0, 255) as u8,
        ));
    }
    if !has_age {
        defs.push(col("Age", "string", "", 0));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![json!(s(o, "/metadata/name"))];
            for c in &kind.printer_columns {
                let v = json_path_cell(o, &c.json_path);
                cells.push(match (c.type_.as_str(), v.as_str()) {
                    ("date", Some(t)) => json!(human_age(t)),
                    _ => v,
                });
            }
            if !has_age {
                cells.push(json!(human_age(s(o, "/metadata/creationTimestamp"))));
            }
            let object = if include_object {
                o.clone()
            } else {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))})
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": defs,
        "rows": rows,
    })
}
