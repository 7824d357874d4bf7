//! `pods/portforward`: TCP to 127.0.0.1:port inside the pod's network namespace.
//! Three transports:
//! - WebSocket channels (`v4.channel.k8s.io`, `portforward.k8s.io`; kube-rs): port i uses
//!   channel 2i for data and 2i+1 for errors; the first message on each is the port (u16 LE).
//! - SPDY/3.1 tunnelled in WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`;
//!   kubectl ≥ 1.31), and
//! - plain SPDY/3.1 after `Upgrade: SPDY/3.1` (older kubectl, or the fallback).
//!
//! Over SPDY each forwarded connection is an `error` and a `data` stream sharing a
//! `requestid`; the error stream carries a message if the pod's port cannot be reached.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::exec::{frame, read_frame};
use super::spdy;
use crate::app::App;
use crate::http::{Body, Query, full};
use crate::routes::{Route, route};
use crate::status::{ApiError, ApiResult};

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SPDY_WS: &str = "SPDY/3.1+portforward.k8s.io";

fn header(req: &Request<Incoming>, n: &str) -> String {
    req.headers()
        .get(n)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// An upgrade request (WebSocket or SPDY) for a pod's `portforward` subresource.
pub fn wants_upgrade(req: &Request<Incoming>) -> bool {
    let up = header(req, "upgrade");
    req.uri().path().ends_with("/portforward")
        && (up.eq_ignore_ascii_case("websocket") || up.eq_ignore_ascii_case("SPDY/3.1"))
}

enum Mode {
    Channels,
    SpdyInWebSocket,
    Spdy,
}

/// The pod's network namespace, if it is running.
fn pod_netns(app: &App, ns: &str, name: &str) -> ApiResult<PathBuf> {
    let pod = app
        .store
        .get("/pods", ns, name)?
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    if phase != "Running" {
        return Err(ApiError::bad_request(format!(
            "unable to forward ports: pod {name} is {phase}, not Running"
        )));
    }
    let uid = crate::objects::meta_str(&pod, "uid").unwrap_or("");
    let path = PathBuf::from("/run/netns").join(hoist_runtime::PodNetwork::name_for(uid));
    if !path.exists() {
        return Err(ApiError::bad_request(format!(
            "pod {name} has no network namespace on this node ({})",
            path.display()
        )));
    }
    Ok(path)
}

/// Validates the request, answers 101 and runs the session in the background.
pub fn upgrade(app: Arc<App>, mut req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let Route::Resource(t) = route(&app.registry, req.uri().path()) else {
        return Err(ApiError::new(404, "NotFound", "no such portforward target"));
    };
    if !(t.kind.group.is_empty() && t.kind.kind == "Pod") {
        return Err(ApiError::new(
            404,
            "NotFound",
            "portforward is served for pods only",
        ));
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let netns = pod_netns(&app, &ns, &name)?;
    let query = Query::parse(req.uri().query());
    let mut ports = Vec::new();
    for (k, v) in &query.0 {
        if k != "ports" {
            continue;
        }
        for p in v.split(',').filter(|p| !p.is_empty()) {
            let port: u16 = p.trim().parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid port {p:?} in ports: expected a number from 1 to 65535"
                ))
            })?;
            ports.push(port);
        }
    }
    let websocket = header(&req, "upgrade").eq_ignore_ascii_case("websocket");
    let offered = header(&req, "sec-websocket-protocol");
    let (mode, protocol) = if websocket {
        let protocol = [
            SPDY_WS,
            "v4.channel.k8s.io",
            "portforward.k8s.io",
            "v5.channel.k8s.io",
        ]
        .into_iter()
        .find(|p| offered.split(',').any(|o| o.trim() == *p))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no supported portforward protocol in {offered:?} (expected {SPDY_WS}, v4.channel.k8s.io or portforward.k8s.io)"
            ))
        })?;
        if protocol == SPDY_WS {
            (Mode::SpdyInWebSocket, protocol)
        } else {
            if ports.is_empty() {
                return Err(ApiError::bad_request(
                    "portforward over WebSocket needs a ports parameter (ports=80,443)",
                ));
            }
            (Mode::Channels, protocol)
        }
    } else {
        (Mode::Spdy, "portforward.k8s.io")
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut stopping = app.stopping.subscribe();
    let key = header(&req, "sec-websocket-key");
    let ws = !matches!(mode, Mode::Spdy);
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "portforward upgrade failed");
                return;
            }
        };
        let session = async move {
            match mode {
                Mode::Channels => channels(io, netns, ports).await,
                Mode::SpdyInWebSocket => {
                    let (a, b) = tokio::io::duplex(256 << 10);
                    tokio::join!(ws_bytes(io, a), spdy_session(b, netns));
                }
                Mode::Spdy => spdy_session(io, netns).await,
            }
        };
        tokio::select! {
            _ = session => {}
            _ = stopping.changed() => {}
        }
    });
    let mut resp = Response::builder()
        .status(101)
        .header("Connection", "Upgrade");
    if ws {
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            format!("{key}{WS_GUID}").as_bytes(),
        );
        resp = resp
            .header("Upgrade", "websocket")
            .header(
                "Sec-WebSocket-Accept",
                base64::engine::general_purpose::STANDARD.encode(digest.as_ref()),
            )
            .header("Sec-WebSocket-Protocol", protocol);
    } else {
        resp = resp
            .header("Upgrade", "SPDY/3.1")
            .header("X-Stream-Protocol-Version", protocol);
    }
    Ok(resp.body(full(Vec::new())).expect("static response parts"))
}

async fn dial(netns: PathBuf, port: u16) -> Result<TcpStream, String> {
    let std = tokio::task::spawn_blocking(move || {
        hoist_runtime::connect(&netns, port, CONNECT_TIMEOUT).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    std.set_nonblocking(true).map_err(|e| e.to_string())?;
    TcpStream::from_std(std).map_err(|e| e.to_string())
}

fn port_error(port: u16, e: &str) -> String {
    format!("error forwarding port {port} to pod: {e}")
}

/// The WebSocket channel protocol (kube-rs).
async fn channels<S>(io: S, netns: PathBuf, ports: Vec<u16>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let msg = |ch: u8, data: &[u8]| {
        let mut p = Vec::with_capacity(data.len() + 1);
        p.push(ch);
        p.extend_from_slice(data);
        frame(2, &p)
    };
    let mut to_pod: HashMap<u8, mpsc::UnboundedSender<Vec<u8>>> = HashMap::new();
    // Owned here so that ending the session (or dropping it on shutdown) ends every pump.
    let mut pumps = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, err_ch] {
            let _ = out_tx.send(msg(ch, &port.to_le_bytes())).await;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        to_pod.insert(data_ch, tx);
        let out = out_tx.clone();
        let netns = netns.clone();
        pumps.spawn(async move {
            let conn = match dial(netns, port).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = out.send(msg(err_ch, port_error(port, &e).as_bytes())).await;
                    return;
                }
            };
            let (mut prd, mut pwr) = conn.into_split();
            let up = async move {
                while let Some(d) = rx.recv().await {
                    if pwr.write_all(&d).await.is_err() {
                        break;
                    }
                }
                let _ = pwr.shutdown().await;
            };
            let down = async {
                let mut buf = vec![0u8; 32 << 10];
                loop {
                    match prd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if out.send(msg(data_ch, &buf[..n])).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            };
            // The pod closing its side ends this port's stream.
            tokio::select! {
                _ = down => {}
                _ = async { up.await; std::future::pending::<()>().await } => {}
            }
        });
    }
    let reader = {
        let out_tx = out_tx.clone();
        async move {
            while let Ok((opcode, payload)) = read_frame(&mut rd).await {
                match opcode {
                    0x8 => break,
                    0x9 => {
                        let _ = out_tx.send(frame(0xA, &payload)).await;
                    }
                    0x1 | 0x2 if !payload.is_empty() => {
                        if let Some(tx) = to_pod.get(&payload[0]) {
                            let _ = tx.send(payload[1..].to_vec());
                        }
                    }
                    _ => {}
                }
            }
        }
    };
    let all_done = async { while pumps.join_next().await.is_some() {} };
    tokio::select! {
        _ = all_done => { let _ = out_tx.send(frame(8, &1000u16.to_be_bytes())).await; }
        _ = reader => {}
    }
    pumps.abort_all();
    drop(out_tx);
    let _ = writer.await;
}

/// Turns a WebSocket carrying binary messages into a byte stream (`peer`) both ways.
async fn ws_bytes<S>(io: S, peer: tokio::io::DuplexStream)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(io);
    let (mut prd, mut pwr) = tokio::io::split(peer);
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let wr2 = wr.clone();
    let inbound = async move {
        while let Ok((opcode, payload)) = read_frame(&mut rd).await {
            match opcode {
                0x8 => break,
                0x9 => {
                    let _ = wr2.lock().await.write_all(&frame(0xA, &payload)).await;
                }
                0x0..=0x2 if pwr.write_all(&payload).await.is_err() => break,
                _ => {}
            }
        }
        let _ = pwr.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match prd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if wr
                        .lock()
                        .await
                        .write_all(&frame(2, &buf[..n]))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let mut w = wr.lock().await;
        let _ = w.write_all(&frame(8, &1000u16.to_be_bytes())).await;
        let _ = w.shutdown().await;
    };
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}

/// A SPDY/3.1 port-forward session over a byte stream.
async fn spdy_session<S>(io: S, netns: PathBuf)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut codec = match spdy::HeaderCodec::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "portforward: cannot set up SPDY header compression");
            return;
        }
    };
    // Data streams towards the pod, and error stream ids by request id.
    let mut to_pod: HashMap<u32, mpsc::UnboundedSender<Vec<u8>>> = HashMap::new();
    let mut error_streams: HashMap<String, u32> = HashMap::new();
    // Owned here so that the client going away (or shutdown) ends every forwarded connection.
    let mut forwards = tokio::task::JoinSet::new();
    loop {
        let f = match spdy::read_frame(&mut rd).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "portforward: SPDY connection ends");
                break;
            }
        };
        match f {
            spdy::Frame::Data {
                stream,
                flags,
                data,
            } => {
                if !data.is_empty()
                    && let Some(tx) = to_pod.get(&stream)
                {
                    let _ = tx.send(data);
                }
                if flags & spdy::FLAG_FIN != 0 {
                    to_pod.remove(&stream);
                }
            }
            spdy::Frame::Control { kind, flags, data } => match kind {
                spdy::SYN_STREAM => {
                    let Some(sid) = spdy::stream_id(&data) else {
                        break;
                    };
                    let headers = match data.get(10..).map(|b| codec.decode(b)) {
                        Some(Ok(h)) => h,
                        _ => {
                            tracing::debug!("portforward: bad SYN_STREAM header block");
                            break;
                        }
                    };
                    let get = |n: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k == n)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    tracing::debug!(stream = sid, ?headers, "portforward: SYN_STREAM");
                    let Ok(block) = codec.encode(&[]) else { break };
                    let mut reply = sid.to_be_bytes().to_vec();
                    reply.extend_from_slice(&block);
                    if out_tx
                        .send(spdy::control(spdy::SYN_REPLY, 0, &reply))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    let request = get("requestid");
                    match get("streamtype").as_str() {
                        "error" => {
                            error_streams.insert(request, sid);
                        }
                        "data" => {
                            let err_sid = error_streams.remove(&request);
                            let (tx, rx) = mpsc::unbounded_channel();
                            if flags & spdy::FLAG_FIN == 0 {
                                to_pod.insert(sid, tx);
                            }
                            let port = get("port");
                            while forwards.try_join_next().is_some() {}
                            forwards.spawn(forward_stream(
                                netns.clone(),
                                port,
                                sid,
                                err_sid,
                                rx,
                                out_tx.clone(),
                            ));
                        }
                        other => {
                            tracing::debug!(streamtype = other, "portforward: unknown stream");
                            let _ = out_tx.send(spdy::rst_stream(sid, 1)).await;
                        }
                    }
                }
                spdy::RST_STREAM => {
                    if let Some(sid) = spdy::stream_id(&data) {
                        to_pod.remove(&sid);
                    }
                }
                spdy::PING => {
                    let _ = out_tx.send(spdy::control(spdy::PING, 0, &data)).await;
                }
                spdy::GOAWAY => break,
                // Decoding keeps the shared zlib stream in step; the headers are unused.
                spdy::HEADERS
                    if data
                        .get(4..)
                        .map(|b| codec.decode(b))
                        .is_some_and(|r| r.is_err()) =>
                {
                    break;
                }
                _ => {}
            },
        }
    }
    drop(to_pod);
    forwards.abort_all();
    drop(out_tx);
    let _ = writer.await;
}

/// One forwarded connection: the data stream `sid` to the pod's port; failures are
/// reported on the error stream, which is closed when the pod side ends.
async fn forward_stream(
    netns: PathBuf,
    port: String,
    sid: u32,
    err_sid: Option<u32>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let fail = |msg: String| {
        let out = out.clone();
        async move {
            if let Some(e) = err_sid {
                let _ = out
                    .send(spdy::data(e, spdy::FLAG_FIN, msg.as_bytes()))
                    .await;
            }
            let _ = out.send(spdy::data(sid, spdy::FLAG_FIN, &[])).await;
        }
    };
    let Some(p) = port.parse::<u16>().ok().filter(|p| *p > 0) else {
        fail(format!(
            "invalid port {port:?}: expected a number from 1 to 65535"
        ))
        .await;
        return;
    };
    let conn = match dial(netns, p).await {
        Ok(c) => c,
        Err(e) => {
            fail(port_error(p, &e)).await;
            return;
        }
    };
    let (mut prd, mut pwr) = conn.into_split();
    let up = tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            if pwr.write_all(&d).await.is_err() {
                break;
            }
        }
        let _ = pwr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match prd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.send(spdy::data(sid, 0, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = out.send(spdy::data(sid, spdy::FLAG_FIN, &[])).await;
    if let Some(e) = err_sid {
        let _ = out.send(spdy::data(e, spdy::FLAG_FIN, &[])).await;
    }
    up.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn_stream(codec: &mut spdy::HeaderCodec, sid: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut d = sid.to_be_bytes().to_vec();
        d.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        d.extend(codec.encode(headers).unwrap());
        spdy::control(spdy::SYN_STREAM, 0, &d)
    }

    /// The protocol without a pod: streams are answered, PING is echoed, and a port that
    /// cannot be reached is reported on the error stream, which then closes.
    #[tokio::test]
    async fn spdy_session_replies_and_reports_unreachable_ports() {
        let (client, server) = tokio::io::duplex(64 << 10);
        let session = tokio::spawn(spdy_session(server, PathBuf::from("/nonexistent/netns")));
        let (mut rd, mut wr) = tokio::io::split(client);
        let mut codec = spdy::HeaderCodec::new().unwrap();
        let mut out = syn_stream(
            &mut codec,
            1,
            &[("streamtype", "error"), ("port", "80"), ("requestid", "0")],
        );
        out.extend(syn_stream(
            &mut codec,
            3,
            &[("streamtype", "data"), ("port", "80"), ("requestid", "0")],
        ));
        out.extend(spdy::control(spdy::PING, 0, &1u32.to_be_bytes()));
        wr.write_all(&out).await.unwrap();
        let mut replies = Vec::new();
        let mut ping = false;
        let mut error_message = None;
        let mut data_fin = false;
        let read = async {
            while replies.len() < 2 || !ping || error_message.is_none() || !data_fin {
                match spdy::read_frame(&mut rd).await.unwrap() {
                    spdy::Frame::Control { kind, data, .. } if kind == spdy::SYN_REPLY => {
                        codec.decode(&data[4..]).unwrap();
                        replies.push(spdy::stream_id(&data).unwrap());
                    }
                    spdy::Frame::Control { kind, data, .. } if kind == spdy::PING => {
                        assert_eq!(data, 1u32.to_be_bytes());
                        ping = true;
                    }
                    spdy::Frame::Data {
                        stream: 1,
                        flags,
                        data,
                    } => {
                        assert_eq!(flags, spdy::FLAG_FIN);
                        error_message = Some(String::from_utf8(data).unwrap());
                    }
                    spdy::Frame::Data {
                        stream: 3,
                        flags,
                        data,
                    } => {
                        assert!(data.is_empty() && flags == spdy::FLAG_FIN);
                        data_fin = true;
                    }
                    f => panic!("unexpected {f:?}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the session answers");
        assert_eq!(replies, vec![1, 3]);
        let msg = error_message.unwrap();
        assert!(msg.starts_with("error forwarding port 80 to pod"), "{msg}");
        // GOAWAY ends the session.
        wr.write_all(&spdy::control(spdy::GOAWAY, 0, &[0; 8]))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .expect("GOAWAY ends the session")
            .unwrap();
    }
}
