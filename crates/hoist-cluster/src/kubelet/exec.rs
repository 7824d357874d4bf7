//! `pods/exec` over WebSocket with the Kubernetes channel protocol (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`): what `kubectl exec` (≥ 1.30) and kube-rs speak. Channels: 0 stdin,
//! 1 stdout, 2 stderr, 3 status (a metav1.Status at the end), 4 resize (`{"Width","Height"}`
//! JSON, with `tty=true`), 255 close (v5). With `tty=true` the command runs on a new
//! pseudo-terminal (`kubectl exec -it`): its output is channel 1, stdin goes to the
//! terminal, resizes become TIOCSWINSZ.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

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

/// A WebSocket upgrade request for a pod's `exec` or `attach` subresource.
pub fn wants_upgrade(req: &Request<Incoming>) -> bool {
    let path = req.uri().path();
    (path.ends_with("/exec") || path.ends_with("/attach"))
        && req
            .headers()
            .get("upgrade")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Validates the request, answers 101 and runs the session in the background.
pub fn upgrade(app: Arc<App>, mut req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let attach = req.uri().path().ends_with("/attach");
    let what = if attach { "attach" } else { "exec" };
    let Route::Resource(t) = route(&app.registry, req.uri().path()) else {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("no such {what} target"),
        ));
    };
    if !(t.kind.group.is_empty() && t.kind.kind == "Pod") {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("{what} is served for pods only"),
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
    if command.is_empty() && !attach {
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
                "no supported {what} protocol in {offered:?} (v5.channel.k8s.io or v4.channel.k8s.io)"
            ))
        })?;
    let key = header("sec-websocket-key");
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{WS_GUID}").as_bytes(),
    );
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let want_stdin = query.flag("stdin");
    let tty = query.flag("tty");
    let attach_to = if attach {
        let table = app
            .container_io
            .get()
            .ok_or_else(|| ApiError::bad_request("this cluster runs no kubelet"))?;
        let io = table.get(&id).ok_or_else(|| {
            ApiError::bad_request(format!(
                "container {container} in pod {name} cannot be attached to (it is not running)"
            ))
        })?;
        let spec = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["name"] == container.as_str()))
            .cloned()
            .unwrap_or_default();
        Some(super::attach::Attach {
            io,
            stdin: want_stdin,
            stdout: query.flag("stdout"),
            stderr: query.flag("stderr"),
            stdin_once: spec["stdinOnce"].as_bool() == Some(true),
        })
    } else {
        None
    };
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
        match attach_to {
            Some(a) => tokio::select! {
                _ = super::attach::session(io, a) => {}
                _ = stopping.changed() => {}
            },
            None => tokio::select! {
                _ = session(io, runc_root, id, command, want_stdin, tty) => {}
                _ = stopping.changed() => {}
            },
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

/// What the client sends: stdin bytes, the end of stdin, a terminal size.
pub(super) enum Input {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize { cols: u16, rows: u16 },
}

/// The server's side of a channel session, used from blocking threads.
#[derive(Clone)]
pub(super) struct Output(mpsc::Sender<Vec<u8>>);

impl Output {
    /// One message on `channel`; false once the client is gone.
    pub(super) fn send(&self, channel: u8, data: &[u8]) -> bool {
        let mut p = Vec::with_capacity(data.len() + 1);
        p.push(channel);
        p.extend_from_slice(data);
        self.0.blocking_send(frame(2, &p)).is_ok()
    }

    /// The final status (channel 3) and a normal WebSocket close.
    pub(super) fn finish(&self, status: &Value) {
        self.send(3, status.to_string().as_bytes());
        let _ = self.0.blocking_send(frame(8, &1000u16.to_be_bytes()));
    }
}

/// Kubernetes' status for how an exec'd command ended (channel 3).
pub(super) fn exit_status(result: Result<i32, String>) -> Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => {
            json!({"metadata": {}, "status": "Failure", "message": e, "reason": "InternalError"})
        }
    }
}

/// Runs a channel session on an upgraded connection: `work` runs on a blocking thread with
/// the client's input and a way to answer; the session ends when `work` returns (after its
/// `finish`) or the client goes away (then `input` reports disconnection to `work`).
pub(super) async fn channel_session<S, F>(io: S, work: F)
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(Output, std::sync::mpsc::Receiver<Input>) + Send + 'static,
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
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Input>();
    let output = Output(out_tx.clone());
    let process = tokio::task::spawn_blocking(move || work(output, in_rx));
    // Reader: stdin, resizes and control frames from the client.
    let reader = async move {
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
                        let _ = in_tx.send(Input::Stdin(payload[1..].to_vec()));
                    }
                    4 => {
                        if let Ok(size) = serde_json::from_slice::<Value>(&payload[1..]) {
                            let dim =
                                |k: &str| size[k].as_u64().map(|v| v.min(u16::MAX as u64) as u16);
                            if let (Some(cols), Some(rows)) = (dim("Width"), dim("Height")) {
                                let _ = in_tx.send(Input::Resize { cols, rows });
                            }
                        }
                    }
                    // v5 close: the client ends a stream; [255, 0] closes stdin.
                    255 if payload.get(1) == Some(&0) => {
                        let _ = in_tx.send(Input::CloseStdin);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        // Dropping in_tx tells `work` the client is gone.
    };
    tokio::select! {
        _ = process => {}
        _ = reader => {}
    }
    let _ = writer.await;
}

async fn session<S>(
    io: S,
    runc_root: std::path::PathBuf,
    id: String,
    command: Vec<String>,
    want_stdin: bool,
    tty: bool,
) where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    channel_session(io, move |out, input| {
        let result = hoist_runtime::Runtime::new(&runc_root)
            .map_err(|e| e.to_string())
            .and_then(|runtime| {
                if tty {
                    exec_on_terminal(&runtime, &id, &command, want_stdin, &out, input)
                } else {
                    exec_on_pipes(&runtime, &id, &command, want_stdin, &out, input)
                }
            });
        out.finish(&exit_status(result));
    })
    .await;
}

/// The command with stdin/stdout/stderr on pipes, copied to and from channels 0, 1, 2.
fn exec_on_pipes(
    runtime: &hoist_runtime::Runtime,
    id: &str,
    command: &[String],
    want_stdin: bool,
    out: &Output,
    input: std::sync::mpsc::Receiver<Input>,
) -> Result<i32, String> {
    let mut child = runtime.exec(id, command, &[]).map_err(|e| e.to_string())?;
    let stdin = child.stdin.take().filter(|_| want_stdin);
    // Without stdin the command reads EOF at once (the pipe closes here).
    let stdin_thread = stdin.map(|mut w| {
        std::thread::spawn(move || {
            while let Ok(msg) = input.recv() {
                match msg {
                    Input::Stdin(data) => {
                        if w.write_all(&data).is_err() {
                            break;
                        }
                    }
                    Input::CloseStdin => break,
                    Input::Resize { .. } => {}
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
    .map(|(ch, r)| {
        let out = out.clone();
        std::thread::spawn(move || copy_to_channel(r, &out, ch))
    })
    .collect();
    let status = child.wait().map_err(|e| e.to_string())?;
    for p in pumps {
        let _ = p.join();
    }
    drop(stdin_thread);
    Ok(status.code().unwrap_or(128 + 9))
}

/// Copies `r` to `channel` until EOF or the client is gone.
pub(super) fn copy_to_channel(mut r: impl Read, out: &Output, channel: u8) {
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !out.send(channel, &buf[..n]) {
                    break;
                }
            }
        }
    }
}

/// The command on a new pseudo-terminal: its output (stdout and stderr together, as a
/// terminal has it) on channel 1, stdin into the terminal, resizes applied to it.
fn exec_on_terminal(
    runtime: &hoist_runtime::Runtime,
    id: &str,
    command: &[String],
    want_stdin: bool,
    out: &Output,
    input: std::sync::mpsc::Receiver<Input>,
) -> Result<i32, String> {
    // kubectl sends the real size right after connecting; 80x24 until then.
    let term = Arc::new(
        runtime
            .exec_tty(id, command, &[], 80, 24)
            .map_err(|e| e.to_string())?,
    );
    let reader = {
        let (term, out) = (term.clone(), out.clone());
        std::thread::spawn(move || copy_to_channel(&term.terminal, &out, 1))
    };
    let (gone_tx, gone_rx) = std::sync::mpsc::channel::<()>();
    {
        let term = term.clone();
        std::thread::spawn(move || {
            while let Ok(msg) = input.recv() {
                match msg {
                    Input::Stdin(data) if want_stdin => {
                        if (&term.terminal).write_all(&data).is_err() {
                            break;
                        }
                    }
                    Input::Resize { cols, rows } => {
                        if let Err(e) = term.resize(cols, rows) {
                            tracing::debug!(error = %e, "exec terminal resize");
                        }
                    }
                    Input::Stdin(_) | Input::CloseStdin => {}
                }
            }
            // The client is gone: hang up the terminal's process, as closing a terminal does.
            let _ = gone_tx.send(());
        });
    }
    let unknown = || "the command ended but its exit status was lost".to_string();
    let code = loop {
        if let Some(e) = term.exited(Duration::from_millis(200)) {
            break e.code.ok_or_else(unknown)?;
        }
        if gone_rx.try_recv().is_ok() {
            // SAFETY: kill(2) with a pid we started and reap ourselves.
            unsafe { libc::kill(term.pid, libc::SIGHUP) };
            break term
                .exited(Duration::from_secs(5))
                .ok_or("the command did not end after its client left")?
                .code
                .ok_or_else(unknown)?;
        }
    };
    // What the command wrote before exiting is still in the terminal: drained once every
    // holder of the terminal closed it (bounded, in case a background child keeps it open).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(code)
}
