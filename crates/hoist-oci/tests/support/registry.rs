//! Test and benchmark harness: a real CNCF distribution registry (Debian's `docker-registry`)
//! on a free loopback port, open, with htpasswd auth, or with token auth (tokens from an
//! issuer the test runs, e.g. `token_issuer.rs` beside this), killed on drop.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "user";
pub const PASS: &str = "pass";

/// How the registry authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    Open,
    /// htpasswd with [`USER`] / [`PASS`].
    Htpasswd,
    /// Bearer tokens from `realm`, verified by the registry itself: issuer, audience
    /// (`service`), times, and the signing key's x5c chain (or `kid`) against the
    /// certificates in `rootcertbundle`.
    Token {
        realm: String,
        service: String,
        issuer: String,
        rootcertbundle: PathBuf,
    },
}

pub struct Registry {
    pub addr: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    pub fn start(with_auth: bool) -> Registry {
        Self::start_with(with_auth, false)
    }

    /// With `tls`, serve HTTPS with a fresh self-signed certificate for 127.0.0.1 (its PEM is
    /// at [`Registry::ca_file`]).
    pub fn start_with(with_auth: bool, tls: bool) -> Registry {
        let auth = if with_auth {
            Auth::Htpasswd
        } else {
            Auth::Open
        };
        Self::start_auth(auth, tls)
    }

    /// Token auth: see [`Auth::Token`].
    pub fn start_token(
        realm: &str,
        service: &str,
        issuer: &str,
        rootcertbundle: &Path,
    ) -> Registry {
        Self::start_auth(
            Auth::Token {
                realm: realm.into(),
                service: service.into(),
                issuer: issuer.into(),
                rootcertbundle: rootcertbundle.into(),
            },
            false,
        )
    }

    pub fn start_auth(auth: Auth, tls: bool) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        // The port is free now; another process could take it before the registry binds, so
        // retry a few times with a fresh port.
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut cfg = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            );
            if tls {
                let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
                if !cert.exists() {
                    // A CA and a leaf for IP 127.0.0.1 signed by it (rustls rejects a CA
                    // certificate used as the server's own).
                    let d = dir.path();
                    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
                    let ec = [
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:prime256v1",
                        "-nodes",
                    ];
                    let steps: Vec<Vec<String>> = vec![
                        [
                            &["req", "-x509"][..],
                            &ec,
                            &[
                                "-days",
                                "1",
                                "-subj",
                                "/CN=hoist-test-ca",
                                "-keyout",
                                "ca.key",
                                "-out",
                                "ca.pem",
                            ],
                        ]
                        .concat()
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                        [
                            &["req"][..],
                            &ec,
                            &[
                                "-subj",
                                "/CN=127.0.0.1",
                                "-keyout",
                                "key.pem",
                                "-out",
                                "leaf.csr",
                            ],
                        ]
                        .concat()
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                        [
                            "x509",
                            "-req",
                            "-in",
                            "leaf.csr",
                            "-CA",
                            "ca.pem",
                            "-CAkey",
                            "ca.key",
                            "-CAcreateserial",
                            "-days",
                            "1",
                            "-out",
                            "cert.pem",
                            "-extfile",
                            "ext.cnf",
                        ]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    ];
                    for args in steps {
                        let out = Command::new("openssl")
                            .args(&args)
                            .current_dir(d)
                            .output()
                            .expect("openssl is installed");
                        assert!(
                            out.status.success(),
                            "openssl {args:?}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
                cfg.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                ));
            }
            if let Auth::Token {
                realm,
                service,
                issuer,
                rootcertbundle,
            } = &auth
            {
                cfg.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                    rootcertbundle.display()
                ));
            }
            if let Auth::Htpasswd = auth {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", USER, PASS])
                    .output()
                    .expect("htpasswd (apache2-utils) is installed");
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
                cfg.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: hoist-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                ));
            }
            let cfg_path = dir.path().join("config.yml");
            std::fs::write(&cfg_path, cfg).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&cfg_path)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .expect("docker-registry is installed (apt-get install docker-registry)");
            let mut child = child;
            if wait_ready(&mut child, &addr, Duration::from_secs(10)) {
                return Registry { addr, dir, child };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// Kill the registry process (SIGKILL, as a crash); its storage stays.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same address and storage, as a restart does: upload sessions
    /// opened before are gone (distribution signs them with a per-process secret).
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        self.child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        assert!(
            wait_ready(&mut self.child, &self.addr, Duration::from_secs(10)),
            "docker-registry did not start again: {}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Blob uploads into `repo` in the access log: the PATCHes and closing PUTs of its
    /// upload sessions (`/v2/REPO/blobs/uploads/…`).
    pub fn blob_writes(&self, repo: &str) -> usize {
        let uploads = format!("/v2/{repo}/blobs/uploads/");
        (self.log().lines())
            .filter_map(|l| l.split_once(" \"")?.1.split_once(" HTTP/").map(|x| x.0))
            .filter(|req| {
                let (method, path) = req.split_once(' ').unwrap_or_default();
                matches!(method, "PUT" | "PATCH") && path.starts_with(&uploads)
            })
            .count()
    }

    /// The registry process's id (benchmarks read its CPU time from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Requests in the access log, per method (`GET`, `HEAD`, `POST`, `PUT`, `PATCH`, …).
    pub fn requests(&self) -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for line in self.log().lines() {
            // Combined log format: `… "METHOD /path HTTP/1.1" status …`.
            if let Some((_, rest)) = line.split_once(" \"")
                && let Some((method, path)) = rest.split_once(' ')
                && path.starts_with("/v2/")
                && method.chars().all(|c| c.is_ascii_uppercase())
            {
                *m.entry(method.to_string()).or_default() += 1;
            }
        }
        m
    }

    /// The most `method` requests whose URI contains `uri_part` this registry was serving
    /// at once, from the completion times and durations in its log: an outside view of a
    /// client's concurrency.
    pub fn max_concurrent(&self, method: &str, uri_part: &str) -> usize {
        let mut edges: Vec<(f64, i32)> = vec![];
        for line in self.log().lines() {
            if !line.contains("msg=\"response completed\"")
                || log_field(line, "http.request.method") != Some(method)
                || !log_field(line, "http.request.uri").is_some_and(|u| u.contains(uri_part))
            {
                continue;
            }
            let (Some(end), Some(took)) = (
                log_field(line, "time").and_then(time_of_day),
                log_field(line, "http.response.duration").and_then(seconds),
            ) else {
                continue;
            };
            edges.push((end - took, 1));
            edges.push((end, -1));
        }
        // Ends before starts at the same instant: touching requests did not overlap.
        edges.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (mut now, mut most) = (0i32, 0i32);
        for (_, step) in edges {
            now += step;
            most = most.max(now);
        }
        most as usize
    }

    pub fn connections(&self) -> usize {
        let log = self.log();
        let addrs: std::collections::BTreeSet<&str> = log
            .split("http.request.remoteaddr=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        addrs.len()
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file holding a blob in the registry's storage (to corrupt it in tests).
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }
}

fn wait_ready(child: &mut Child, addr: &str, max: Duration) -> bool {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo ARGS`, which must succeed: its stdout.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `src` (a registry reference) pushed by skopeo to `dst` as Docker schema 2: the
/// manifest type a Docker-typed base or copy source needs.
pub fn push_as_docker_schema2(src: &str, dst: &str) {
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("docker://{src}"),
        &format!("docker://{dst}"),
    ]);
}

/// The config and layer digests a manifest (JSON) names, config first.
pub fn blob_digests(m: &serde_json::Value) -> Vec<String> {
    let layers = m["layers"].as_array().unwrap().iter();
    std::iter::once(&m["config"])
        .chain(layers)
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The image config an outside client reads: `skopeo inspect --config` of a
/// `docker://` (plain HTTP allowed) or `oci:` location, which must succeed.
pub fn skopeo_config(image: &str) -> serde_json::Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--config"]);
    if image.starts_with("docker://") {
        cmd.arg("--tls-verify=false");
    }
    let out = cmd.arg(image).output().expect("skopeo is installed");
    assert!(
        out.status.success(),
        "skopeo inspect --config {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Deterministic incompressible bytes (xorshift64*), so tests and benches download nothing.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `umoci unpack` of `image` (`DIR:NAME`, an OCI layout) into `bundle`, as an outside
/// check of what an image holds: its rootfs entries as (path, `d755` / `f644` /
/// `l->target`), sorted.
pub fn unpacked(image: &str, bundle: &Path) -> Vec<(String, String)> {
    let out = Command::new("umoci")
        .args(["unpack", "--image", image])
        .arg(bundle)
        .output()
        .expect("umoci is installed");
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    let mut found = vec![];
    tree_entries(&rootfs, &rootfs, &mut found);
    found.sort();
    found
}

fn tree_entries(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            let target = std::fs::read_link(&p).unwrap();
            out.push((rel, format!("l->{}", target.display())));
        } else if m.is_dir() {
            out.push((rel, format!("d{:o}", m.permissions().mode() & 0o777)));
            tree_entries(root, &p, out);
        } else {
            out.push((rel, format!("f{:o}", m.permissions().mode() & 0o777)));
        }
    }
}

pub fn write_file(path: &Path, data: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `key=value` or `key="value"` from a registry log line.
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line
        .find(&format!(" {key}="))
        .map(|i| i + 1)
        .or_else(|| line.starts_with(&format!("{key}=")).then_some(0))?;
    let rest = &line[at + key.len() + 1..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split(' ').next(),
    }
}

/// Seconds since midnight of a log time like `2026-11-24T04:51:29.106923Z`.
fn time_of_day(t: &str) -> Option<f64> {
    let clock = t.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// Seconds in a Go duration like `12.5ms`, `830.1µs` or `1.2s`.
fn seconds(d: &str) -> Option<f64> {
    let split = d.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = d.split_at(split);
    let scale = match unit {
        "ns" => 1e-9,
        "µs" | "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return None,
    };
    Some(n.parse::<f64>().ok()? * scale)
}
