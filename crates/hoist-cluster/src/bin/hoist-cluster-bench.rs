//! Benchmarks of the embedded cluster, printed as a table with the targets:
//! cold start to /readyz, 1,000 ConfigMap creates, watch event latency p50, idle RSS.
//!
//! Run: `cargo run --release -p hoist-cluster --bin hoist-cluster-bench -- [path/to/hoist]`
//! With a `hoist` binary path, cold start and RSS are measured on the real
//! `hoist cluster serve` process; otherwise only the in-process numbers are printed.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hoist_cluster::daemon::{self, request};
use hoist_cluster::tls::Pki;

const T: Duration = Duration::from_secs(10);

fn main() {
    let hoist = std::env::args().nth(1);
    let mut rows: Vec<(String, String, String)> = Vec::new();
    if let Some(hoist) = &hoist {
        let (cold, rss) = process_numbers(hoist);
        rows.push((
            "cold start to /readyz OK".into(),
            format!("{cold:.0} ms"),
            "<= 300 ms".into(),
        ));
        rows.push((
            "idle RSS (after start + 1,000 objects)".into(),
            format!("{rss:.1} MB"),
            "<= 40 MB".into(),
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = hoist_cluster::ServerConfig {
        data_dir: dir.path().join("data"),
        addr: "127.0.0.1:0".parse().unwrap(),
        allow_non_loopback: false,
    };
    let server = rt.block_on(hoist_cluster::start(cfg)).unwrap();
    let (addr, pki) = (server.addr, server.pki.clone());
    let creates = create_many(addr, &pki, 1000, "bench");
    rows.push((
        "create 1,000 ConfigMaps (4 clients, TLS)".into(),
        format!("{:.0} ms", creates.as_secs_f64() * 1000.0),
        "<= 2000 ms".into(),
    ));
    let p50 = watch_latency(addr, &pki, 200);
    rows.push((
        "watch event latency p50 (POST sent -> event read)".into(),
        format!("{p50:.2} ms"),
        "<= 5 ms".into(),
    ));
    rt.block_on(server.shutdown());
    println!("| benchmark | result | target |\n|---|---|---|");
    for (a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
}

fn create_many(addr: SocketAddr, pki: &Pki, n: usize, prefix: &str) -> Duration {
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let pki = pki.clone();
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                for i in (t..n).step_by(4) {
                    let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{prefix}-{i}"}},"data":{{"i":"{i}"}}}}"#);
                    let (code, b) = request(addr, &pki, true, "POST", "/api/v1/namespaces/default/configmaps", Some(("application/json", body.as_bytes())), T).unwrap();
                    assert_eq!(code, 201, "{b}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    started.elapsed()
}

/// Opens a raw watch stream and measures create → event arrival.
fn watch_latency(addr: SocketAddr, pki: &Pki, n: usize) -> f64 {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_cert.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).unwrap(),
    )
    .unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::IpAddress(addr.ip().into()))
            .unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let rv = hoist_cluster_rv(addr, pki);
    write!(tls, "GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=60 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    tls.flush().unwrap();
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    // Skip the response head.
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut samples = Vec::new();
    let pki2 = pki.clone();
    for i in 0..n {
        let body =
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"lat-{i}"}}}}"#);
        let t0 = Instant::now();
        let (code, _) = request(
            addr,
            &pki2,
            true,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(("application/json", body.as_bytes())),
            T,
        )
        .unwrap();
        assert_eq!(code, 201);
        // Read until the event for this object arrives (chunk-size lines are skipped).
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.contains(&format!("\"lat-{i}\"")) {
                break;
            }
        }
        // From sending the write (new TLS connection, commit with fsync) to the event read
        // from the watch stream: an upper bound of the server's event latency.
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn hoist_cluster_rv(addr: SocketAddr, pki: &Pki) -> String {
    let (_, body) = request(
        addr,
        pki,
        true,
        "GET",
        "/api/v1/namespaces/default/configmaps?limit=1",
        None,
        T,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Cold start of `hoist cluster serve` to /readyz, and its RSS after 1,000 objects + idle.
fn process_numbers(hoist: &str) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Generate the PKI first so cold start measures the server, not key generation.
    let pki = Pki::load_or_generate(&data.join("pki")).unwrap();
    let started = Instant::now();
    let mut child = Command::new(hoist)
        .args(["cluster", "serve", "--port", "0", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = loop {
        if let Some(a) = daemon::recorded_addr(&data) {
            break a;
        }
        assert!(started.elapsed() < T, "server did not start");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(daemon::wait_ready(addr, &pki, Instant::now() + T));
    let cold = started.elapsed().as_secs_f64() * 1000.0;
    create_many(addr, &pki, 1000, "rss");
    std::thread::sleep(Duration::from_secs(2));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    daemon::stop(child.id() as i32, Duration::from_secs(5));
    let _ = child.wait();
    (cold, rss_kb / 1024.0)
}
