//! The HTTPS listener: TLS with client-certificate auth, then routing to handlers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::discovery;
use crate::handlers;
use crate::http::{
    Body, Query, error_response, json_response, json_with_type, read_body, text_response,
};
use crate::openapi;
use crate::routes::{Route, route};
use crate::status::{ApiError, ApiResult};
use crate::storage::{Store, Write};
use crate::tls::Pki;

/// How to run the API server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// Must be loopback unless `allow_non_loopback`.
    pub addr: SocketAddr,
    pub allow_non_loopback: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on {0}: the dev cluster only binds loopback addresses (127.0.0.0/8, ::1); pass --allow-non-loopback to override"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot initialise the cluster state: {0}")]
    Init(ApiError),
}

/// A started server; dropping the handle does not stop it, call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub pki: Pki,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    pub async fn shutdown(self) {
        self.app.stopping.send_replace(true);
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Opens the state, binds the listener and serves in a background task.
pub async fn start(cfg: ServerConfig) -> Result<RunningServer, ServerError> {
    if !cfg.addr.ip().is_loopback() {
        if !cfg.allow_non_loopback {
            return Err(ServerError::NotLoopback(cfg.addr));
        }
        tracing::warn!(addr = %cfg.addr, "listening on a non-loopback address: anyone who can reach it and holds a client certificate controls this cluster");
    }
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| ServerError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let pki = Pki::load_or_generate(&cfg.data_dir.join("pki"))?;
    let tls = TlsAcceptor::from(pki.server_config()?);
    let store = Store::open(&cfg.data_dir.join("state.sqlite"))?;
    let app = App::new(store).map_err(ServerError::Init)?;
    create_default_namespaces(&app).map_err(ServerError::Init)?;
    let listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: cfg.addr,
        source,
    })?;
    let (stop, stop_rx) = watch::channel(false);
    crate::controllers::spawn(app.clone(), stop_rx.clone());
    let task = tokio::spawn(accept_loop(listener, tls, app.clone(), addr, stop_rx));
    tracing::info!(%addr, "API server listening");
    Ok(RunningServer {
        addr,
        pki,
        app,
        stop,
        task,
    })
}

fn create_default_namespaces(app: &Arc<App>) -> ApiResult<()> {
    let kind = app
        .registry
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespace kind missing"))?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        if app.store.get(&kind.storage_key(), "", ns)?.is_some() {
            continue;
        }
        let obj = crate::objects::prepare_create(
            &kind,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
        app.store
            .write(&kind.storage_key(), "", ns, |_| Ok(Write::Put(obj)))?;
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    tls: TlsAcceptor,
    app: Arc<App>,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
            },
            _ = stop.changed() => return,
        };
        let tls = tls.clone();
        let app = app.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let stream = match tls.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
            };
            let authenticated = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let server_addr = addr.to_string();
            let svc = service_fn(move |req| {
                let app = app.clone();
                let server_addr = server_addr.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        serve(app, req, authenticated, &server_addr).await,
                    )
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => { if let Err(e) = r { tracing::debug!(error = %e, "connection error"); } }
                _ = stop.changed() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
            }
        });
    }
}

async fn serve(
    app: Arc<App>,
    req: Request<Incoming>,
    authenticated: bool,
    server_addr: &str,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = if authenticated && crate::kubelet::exec::wants_upgrade(&req) {
        crate::kubelet::exec::upgrade(app, req).unwrap_or_else(|e| error_response(&e))
    } else if authenticated && crate::kubelet::portforward::wants_upgrade(&req) {
        crate::kubelet::portforward::upgrade(app, req).unwrap_or_else(|e| error_response(&e))
    } else {
        match serve_inner(app, req, authenticated, server_addr).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        }
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

async fn serve_inner(
    app: Arc<App>,
    req: Request<Incoming>,
    authenticated: bool,
    server_addr: &str,
) -> ApiResult<Response<Body>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let accept = header("accept");
    let content_type = header("content-type");
    let user_agent = header("user-agent");
    let method = req.method().clone();
    let query = Query::parse(req.uri().query());
    let path = req.uri().path().to_string();
    let r = route(&app.registry, &path);
    if let Route::Health(_) = r {
        // Health endpoints are readable without credentials, as in Kubernetes.
        return Ok(text_response(200, "ok"));
    }
    if !authenticated {
        return Err(ApiError::new(
            401,
            "Unauthorized",
            "Unauthorized: a client certificate signed by the cluster CA is required (use the kubeconfig from `hoist cluster kubeconfig`)",
        ));
    }
    let body = read_body(req.into_body()).await?;
    if method != Method::GET && !matches!(r, Route::Resource(_)) {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not allowed on {path}"),
        ));
    }
    match r {
        Route::Version => Ok(json_response(200, &version())),
        Route::Health(_) => Ok(text_response(200, "ok")),
        Route::Root(apis) => Ok(match discovery::aggregated_version(&accept) {
            Some(v) => json_with_type(
                200,
                &discovery::aggregated(&app.registry, apis, v),
                &discovery::aggregated_content_type(v),
            ),
            None if apis => json_response(200, &discovery::api_group_list(&app.registry)),
            None => json_response(200, &discovery::api_versions(server_addr)),
        }),
        Route::GroupVersion { group, version } => Ok(json_response(
            200,
            &discovery::api_resource_list(&app.registry, &group, &version),
        )),
        Route::OpenApiV2 => Err(ApiError::new(
            404,
            "NotFound",
            "/openapi/v2 is not served; use /openapi/v3",
        )),
        Route::OpenApiV3Index => Ok(json_response(200, &openapi::index(&app.registry))),
        Route::OpenApiV3 { group, version } => {
            if !app
                .registry
                .all()
                .iter()
                .any(|k| k.group == group && k.version == version)
            {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!("no OpenAPI document for {group}/{version}"),
                ));
            }
            Ok(json_response(
                200,
                &openapi::document(&app.registry, &group, &version),
            ))
        }
        Route::Resource(t) => {
            handlers::handle(
                &app,
                *t,
                handlers::Request {
                    method,
                    query,
                    accept,
                    content_type,
                    user_agent,
                    body,
                },
            )
            .await
        }
        Route::NotFound => Err(ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )),
    }
}

/// `/version`: every field kube-rs' `Info` requires.
pub fn version() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-hoist",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}
