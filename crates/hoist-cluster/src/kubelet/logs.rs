//! `pods/log`: container output for `kubectl logs` (container, follow, tailLines,
//! sinceSeconds/sinceTime, timestamps, previous, limitBytes) from the CRI-format files
//! the runtime writes, one per start: `<pods dir>/<pod uid>/logs/<container>/<n>.log`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::Response;
use serde_json::Value;

use crate::app::App;
use crate::handlers::Request;
use crate::http::{Body, ChannelBody, full};
use crate::objects;
use crate::routes::Target;
use crate::status::{ApiError, ApiResult};

pub(crate) fn handle(app: &Arc<App>, t: &Target, req: &Request) -> ApiResult<Response<Body>> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let pod = app
        .store
        .get("/pods", &ns, &name)?
        .ok_or_else(|| ApiError::not_found("", "pods", &name))?;
    let Some(pods_dir) = app.pods_dir.get() else {
        return Err(ApiError::bad_request(
            "this cluster runs no kubelet (no root or no runc when it started), so pods have no logs",
        ));
    };
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    // Init containers' logs are read by naming them (`-c`), never by default.
    let init_containers: Vec<String> = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let container = match req.query.get("container") {
        Some(c) if containers.iter().chain(&init_containers).any(|x| x == c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let uid = objects::meta_str(&pod, "uid").unwrap_or("").to_string();
    let dir = pods_dir.join(&uid).join("logs").join(&container);
    let previous = req.query.flag("previous");
    let Some(path) = log_file(&dir, previous) else {
        let what = if previous { "previous terminated" } else { "" };
        return Err(ApiError::bad_request(format!(
            "{what} container \"{container}\" in pod \"{name}\" is waiting to start or has no logs"
        )));
    };
    let since = match (req.query.get("sinceSeconds"), req.query.get("sinceTime")) {
        (Some(s), _) => {
            let secs: u64 = s.parse().map_err(|_| {
                ApiError::bad_request(format!("sinceSeconds must be a whole number, got {s:?}"))
            })?;
            Some(SystemTime::now() - Duration::from_secs(secs))
        }
        (None, Some(t)) => {
            let secs = crate::clock::parse_rfc3339(t).ok_or_else(|| {
                ApiError::bad_request(format!("sinceTime must be RFC 3339, got {t:?}"))
            })?;
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        }
        _ => None,
    };
    let number = |k: &str| -> ApiResult<Option<usize>> {
        req.query
            .get(k)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!("{k} must be a whole number, got {v:?}"))
                })
            })
            .transpose()
    };
    let q = hoist_runtime::LogQuery {
        tail_lines: number("tailLines")?,
        since,
        timestamps: req.query.flag("timestamps"),
        limit_bytes: number("limitBytes")?,
    };
    let (text, offset) =
        hoist_runtime::read_log(&path, &q).map_err(|e| ApiError::internal(e.to_string()))?;
    if !req.query.flag("follow") || previous {
        return Ok(plain(full(text)));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let _ = tx.try_send(Bytes::from(text));
    let app = app.clone();
    let timestamps = q.timestamps;
    let container_id = container_id_of(&path, &uid, &container);
    std::thread::spawn(move || {
        let stopping = app.stopping.subscribe();
        let done = || *stopping.borrow() || !running(&app, &ns, &name, &uid, &container_id);
        let sink = |b: &[u8]| tx.blocking_send(Bytes::copy_from_slice(b)).is_ok();
        let _ = hoist_runtime::follow_log(
            &path,
            offset,
            timestamps,
            Duration::from_millis(100),
            done,
            sink,
        );
    });
    Ok(plain(ChannelBody::boxed(rx)))
}

fn plain(body: Body) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("Content-Type", "text/plain")
        .body(body)
        .expect("static response parts")
}

/// The newest log (or the one before it for `previous`) among `<n>.log`.
fn log_file(dir: &Path, previous: bool) -> Option<PathBuf> {
    let mut attempts: Vec<u32> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    attempts.sort_unstable();
    let pick = if previous {
        attempts.iter().rev().nth(1)
    } else {
        attempts.last()
    }?;
    Some(dir.join(format!("{pick}.log")))
}

fn container_id_of(path: &Path, uid: &str, container: &str) -> String {
    let attempt = path.file_stem().and_then(|s| s.to_str()).unwrap_or("0");
    format!("runc://{uid}-{container}-{attempt}")
}

/// Whether the container that writes this log is still running (per the pod's status).
fn running(app: &App, ns: &str, name: &str, uid: &str, container_id: &str) -> bool {
    let Ok(Some(pod)) = app.store.get("/pods", ns, name) else {
        return false;
    };
    if objects::meta_str(&pod, "uid") != Some(uid) {
        return false;
    }
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["containerID"] == container_id && c.pointer("/state/running").is_some())
}
