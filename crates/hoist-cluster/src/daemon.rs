//! Running the server as a background process: data dir layout, pid and address files,
//! readiness probing over TLS, and stopping.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::tls::Pki;

/// Default data dir: `$XDG_DATA_HOME/hoist/cluster` or `~/.local/share/hoist/cluster`.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("hoist").join("cluster"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/hoist/cluster"))
}

pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("server.pid")
}
pub fn addr_file(data_dir: &Path) -> PathBuf {
    data_dir.join("server.addr")
}
pub fn log_file(data_dir: &Path) -> PathBuf {
    data_dir.join("server.log")
}

/// The pid of a live server process for this data dir, if any.
pub fn running_pid(data_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(data_dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Signal 0 checks existence; a zombie child still counts until reaped by its parent.
    (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

pub fn recorded_addr(data_dir: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(addr_file(data_dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Records pid and address once the listener is bound (written atomically).
pub fn write_run_files(data_dir: &Path, addr: SocketAddr) -> std::io::Result<()> {
    for (path, text) in [
        (pid_file(data_dir), std::process::id().to_string()),
        (addr_file(data_dir), addr.to_string()),
    ] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

pub fn remove_run_files(data_dir: &Path) {
    let _ = std::fs::remove_file(pid_file(data_dir));
    let _ = std::fs::remove_file(addr_file(data_dir));
}

/// GET `path` over TLS with the cluster's client certificate; returns (status, body).
pub fn probe(
    addr: SocketAddr,
    pki: &Pki,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    request(addr, pki, true, "GET", path, None, timeout)
}

/// One HTTP/1.1 request over TLS (`authenticate` = present the client certificate);
/// `body` is (content type, bytes). Returns (status, body). Used by probes and tests.
pub fn request(
    addr: SocketAddr,
    pki: &Pki,
    authenticate: bool,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let err = |e: String| std::io::Error::other(e);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            CertificateDer::from_pem_slice(pki.ca_cert.as_bytes())
                .map_err(|e| err(e.to_string()))?,
        )
        .map_err(|e| err(e.to_string()))?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| err(e.to_string()))?
    .with_root_certificates(roots);
    let config = if authenticate {
        let certs = vec![
            CertificateDer::from_pem_slice(pki.client_cert.as_bytes())
                .map_err(|e| err(e.to_string()))?,
        ];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes())
            .map_err(|e| err(e.to_string()))?;
        builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| err(e.to_string()))?
    } else {
        builder.with_no_client_auth()
    };
    let name = ServerName::IpAddress(addr.ip().into());
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| err(e.to_string()))?;
    let mut tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let (ct, bytes) = body.unwrap_or(("application/json", &[]));
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    )?;
    tls.write_all(bytes)?;
    let mut resp = Vec::new();
    match tls.read_to_end(&mut resp) {
        Ok(_) => {}
        // Servers may close without close_notify; what was read is still the response.
        Err(e)
            if !resp.is_empty()
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Polls `/readyz` until 200 or the deadline.
pub fn wait_ready(addr: SocketAddr, pki: &Pki, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if let Ok((200, _)) = probe(addr, pki, "/readyz", Duration::from_millis(500)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Sends SIGTERM and waits for the process to exit (SIGKILL after `grace`).
pub fn stop(pid: i32, grace: Duration) -> bool {
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if unsafe { libc::kill(pid, 0) } != 0 {
            return true;
        }
        // Reap if it is our child (tests); harmless otherwise.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(pid, libc::SIGKILL) };
    false
}

/// Runs the server in this process until SIGTERM or SIGINT; `on_ready` runs once the
/// listener is bound (pid and address files are written before it).
pub fn serve_blocking(
    cfg: crate::ServerConfig,
    on_ready: impl FnOnce(SocketAddr, &Pki),
) -> Result<(), crate::ServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| crate::ServerError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
    let data_dir = cfg.data_dir.clone();
    rt.block_on(async move {
        let server = crate::start(cfg).await?;
        write_run_files(&data_dir, server.addr).map_err(|source| crate::ServerError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let kubelet = start_kubelet(&server, &data_dir);
        on_ready(server.addr, &server.pki);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|source| crate::ServerError::DataDir {
                path: data_dir.clone(),
                source,
            })?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
        if let Some(k) = kubelet {
            // Containers go first: nothing of the cluster may outlive it.
            let _ = tokio::task::spawn_blocking(move || k.shutdown()).await;
        }
        tokio::time::timeout(Duration::from_secs(5), server.shutdown())
            .await
            .ok();
        remove_run_files(&data_dir);
        Ok(())
    })
}

/// Why pods will not run on a cluster started from this process, if they will not:
/// the kubelet is switched off (`HOIST_NO_KUBELET=1`), or root or runc is missing
/// (the error says what to install or how to run).
pub fn pods_cannot_run() -> Option<String> {
    if std::env::var_os("HOIST_NO_KUBELET").is_some_and(|v| v == "1") {
        return Some("the kubelet is switched off (HOIST_NO_KUBELET=1)".into());
    }
    hoist_runtime::runtime::check_host()
        .err()
        .map(|e| e.to_string())
}

/// Starts the kubelet unless `HOIST_NO_KUBELET=1`; without root or runc the API still
/// serves and the reason pods will not run is logged.
fn start_kubelet(
    server: &crate::RunningServer,
    data_dir: &Path,
) -> Option<crate::kubelet::Kubelet> {
    if std::env::var_os("HOIST_NO_KUBELET").is_some_and(|v| v == "1") {
        return None;
    }
    let cfg = crate::kubelet::KubeletConfig::in_data_dir(data_dir);
    match crate::kubelet::start(server.app.clone(), cfg) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(error = %e, "pods will not run on this cluster");
            None
        }
    }
}
