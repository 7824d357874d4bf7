//! `pods/exec` over WebSocket with the Kubernetes channel protocol (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`): what `kubectl exec` (≥ 1.30) and kube-rs speak. Channels: 0 stdin,
//! 1 stdout, 2 stderr, 3 status (a metav1.Status at the end), 255 close (v5). No TTY:
//! `-t` runs the command without a terminal.

use std::io::{Read, Write};
use std::sync::Arc;

use base64::Engine;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::app::App;
use crate::http::{Body, Query, full};
use crate::objects;
use crate::routes::{Route, route};
use crate::status::{ApiError, ApiResult};

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A WebSocket upgrade request for a pod's `exec` subresource.
pub fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.uri().path().ends_with("/exec")
        && req
            .headers()
            .get("upgrade")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Validates the request, answers 101 and runs the session in the background.
pub fn upgrade(app: Arc<App>, mut req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let Route::Resource(t) = route(&app.registry, req.uri().path()) else {
        return Err(ApiError::new(404, "NotFound", "no such exec target"));
    };
    if !(t.kind.group.is_empty() && t.kind.kind == "Pod") {
        return Err(ApiError::new(
            404,
            "NotFound",
            "exec is served for pods only",
        ));
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let query = Query::parse(req.uri().query());
    let command: Vec<String> = query
        .0
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return Err(ApiError::bad_request(
            "exec needs at least one command parameter",
        ));
    }
    let pod = app
        .store
        .get("/pods", &ns, &name)?
        .ok_or_else(|| ApiError::not_found("", "pods", &name))?;
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let container = match query.get("container") {
        Some(c) => c.to_string(),
        None => pod
            .pointer("/spec/containers/0/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };
    let id = statuses
        .iter()
        .find(|s| s["name"] == container.as_str() && s.pointer("/state/running").is_some())
        .and_then(|s| s["containerID"].as_str())
        .and_then(|c| c.strip_prefix("runc://"))
        .map(String::from)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "container {container} is not running in pod {name} (uid {})",
                objects::meta_str(&pod, "uid").unwrap_or("")
            ))
        })?;
    let Some(runc_root) = app.runc_root.get().cloned() else {
        return Err(ApiError::bad_request("this cluster runs no kubelet"));
    };
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let offered = header("sec-websocket-protocol");
    let protocol = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| offered.split(',').any(|o| o.trim() == *p))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no supported exec protocol in {offered:?} (v5.channel.k8s.io or v4.channel.k8s.io)"
            ))
        })?;
    let key = header("sec-websocket-key");
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{WS_GUID}").as_bytes(),
    );
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let want_stdin = query.flag("stdin");
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut stopping = app.stopping.subscribe();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "exec upgrade failed");
                return;
            }
        };
        tokio::select! {
            _ = session(io, runc_root, id, command, want_stdin) => {}
            _ = stopping.changed() => {}
        }
    });
    Ok(Response::builder()
        .status(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", accept)
        .header("Sec-WebSocket-Protocol", protocol)
        .body(full(Vec::new()))
        .expect("static response parts"))
}

/// One frame as (opcode, payload).
pub(super) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).await?;
    let opcode = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        r.read_exact(&mut b).await?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        r.read_exact(&mut b).await?;
        len = u64::from_be_bytes(b);
    }
    if len > 16 << 20 {
        return Err(std::io::Error::other("WebSocket frame over 16 MiB"));
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((opcode, payload))
}

pub(super) fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= u16::MAX as usize => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

async fn session<S>(
    io: S,
    runc_root: std::path::PathBuf,
    id: String,
    command: Vec<String>,
    want_stdin: bool,
) where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    // Writer: every outgoing frame goes through one task.
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let send = |tx: &mpsc::Sender<Vec<u8>>, channel: u8, data: &[u8]| {
        let mut p = Vec::with_capacity(data.len() + 1);
        p.push(channel);
        p.extend_from_slice(data);
        tx.blocking_send(frame(2, &p)).is_ok()
    };
    let (stdin_tx, stdin_rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
    let tx = out_tx.clone();
    let process = tokio::task::spawn_blocking(move || {
        let status = (|| -> Result<i32, String> {
            let runtime = hoist_runtime::Runtime::new(&runc_root).map_err(|e| e.to_string())?;
            let mut child = runtime
                .exec(&id, &command, &[])
                .map_err(|e| e.to_string())?;
            let mut stdin = child.stdin.take();
            if !want_stdin {
                stdin = None;
            }
            let stdin_thread = stdin.map(|mut w| {
                std::thread::spawn(move || {
                    while let Ok(Some(data)) = stdin_rx.recv() {
                        if w.write_all(&data).is_err() {
                            break;
                        }
                    }
                })
            });
            let pumps: Vec<_> = [
                (
                    1u8,
                    child
                        .stdout
                        .take()
                        .map(|s| Box::new(s) as Box<dyn Read + Send>),
                ),
                (
                    2u8,
                    child
                        .stderr
                        .take()
                        .map(|s| Box::new(s) as Box<dyn Read + Send>),
                ),
            ]
            .into_iter()
            .filter_map(|(ch, r)| r.map(|r| (ch, r)))
            .map(|(ch, mut r)| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    loop {
                        match r.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if !send(&tx, ch, &buf[..n]) {
                                    break;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
            let status = child.wait().map_err(|e| e.to_string())?;
            for p in pumps {
                let _ = p.join();
            }
            drop(stdin_thread);
            Ok(status.code().unwrap_or(128 + 9))
        })();
        let st = match status {
            Ok(0) => json!({"metadata": {}, "status": "Success"}),
            Ok(code) => json!({
                "metadata": {}, "status": "Failure",
                "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", "exec"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Err(e) => {
                json!({"metadata": {}, "status": "Failure", "message": e, "reason": "InternalError"})
            }
        };
        send(&tx, 3, st.to_string().as_bytes());
        let _ = tx.blocking_send(frame(8, &1000u16.to_be_bytes()));
    });
    // Reader: stdin and control frames from the client.
    let reader = {
        let out_tx = out_tx.clone();
        async move {
            loop {
                let Ok((opcode, payload)) = read_frame(&mut rd).await else {
                    break;
                };
                match opcode {
                    0x8 => break,
                    0x9 => {
                        let _ = out_tx.send(frame(0xA, &payload)).await;
                    }
                    0x1 | 0x2 if !payload.is_empty() => match payload[0] {
                        0 => {
                            let _ = stdin_tx.send(Some(payload[1..].to_vec()));
                        }
                        // v5 close: the client ends a stream; [255, 0] closes stdin.
                        255 if payload.get(1) == Some(&0) => {
                            let _ = stdin_tx.send(None);
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
            let _ = stdin_tx.send(None);
        }
    };
    drop(out_tx);
    tokio::select! {
        _ = process => {}
        _ = reader => {}
    }
    let _ = writer.await;
}
