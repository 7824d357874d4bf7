//! Pod networking on loopback only: one network namespace per pod (`ip netns`, so it
//! lives at /run/netns/hoist-<id>), its `lo` up, and the pod's IP, drawn from 127.64.0.0/10,
//! assigned on that `lo`. Nothing here ever touches a private-range address.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::sys;

pub const NETNS_PREFIX: &str = "hoist-";
const NETNS_DIR: &str = "/run/netns";
/// 127.64.0.0/10: far from 127.0.0.1 and inside loopback.
pub const POOL_BASE: u32 = u32::from_be_bytes([127, 64, 0, 0]);
pub const POOL_PREFIX: u32 = 10;

/// A pod's network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetwork {
    /// `hoist-<pod id>`.
    pub name: String,
    /// The namespace file to pass to runc and to `connect`.
    pub path: PathBuf,
    pub ip: Ipv4Addr,
}

fn ip_cmd(args: &[&str], stdin: Option<&str>) -> Result<()> {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Netns {
            name: args.join(" "),
            reason: format!("cannot run `ip` ({e}); install iproute2 (apt-get install iproute2)"),
        })?;
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(input.as_bytes())
            .ctx(|| "writing to `ip -batch`")?;
    }
    let out = child.wait_with_output().ctx(|| "waiting for `ip`")?;
    if !out.status.success() {
        return Err(Error::Netns {
            name: args.join(" "),
            reason: format!(
                "`ip {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

fn check_loopback(ip: Ipv4Addr) -> Result<()> {
    if !ip.is_loopback() {
        return Err(Error::Netns {
            name: ip.to_string(),
            reason: "pod addresses must be in 127.0.0.0/8 (loopback only)".into(),
        });
    }
    Ok(())
}

impl PodNetwork {
    pub fn name_for(pod_id: &str) -> String {
        format!("{NETNS_PREFIX}{pod_id}")
    }

    /// Create the namespace for `pod_id` with `ip` on its `lo`. An existing namespace of
    /// that name is reused (re-adoption after a restart).
    pub fn create(pod_id: &str, ip: Ipv4Addr) -> Result<Self> {
        check_loopback(ip)?;
        if pod_id.is_empty()
            || pod_id.len() > 200
            || !pod_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(Error::Netns {
                name: pod_id.into(),
                reason: "pod id must be 1-200 characters of [A-Za-z0-9._-]".into(),
            });
        }
        let name = Self::name_for(pod_id);
        let path = Path::new(NETNS_DIR).join(&name);
        if !path.exists() {
            ip_cmd(&["netns", "add", &name], None)?;
        }
        let net = Self { name, path, ip };
        // `replace` makes a re-run idempotent.
        let batch = format!("link set lo up\naddress replace {ip}/32 dev lo\n");
        if let Err(e) = ip_cmd(&["-n", &net.name, "-batch", "-"], Some(&batch)) {
            let _ = net.delete();
            return Err(e);
        }
        Ok(net)
    }

    /// The existing namespace of `pod_id` (no `ip` is run), if it is there.
    pub fn existing(pod_id: &str, ip: Ipv4Addr) -> Option<Self> {
        let name = Self::name_for(pod_id);
        let path = Path::new(NETNS_DIR).join(&name);
        path.exists().then_some(Self { name, path, ip })
    }

    /// Add (`add: true`) or remove a loopback address (a service ClusterIP) on the
    /// namespace's `lo`; idempotent.
    pub fn set_lo_address(&self, addr: Ipv4Addr, add: bool) -> Result<()> {
        check_loopback(addr)?;
        let verb = if add { "replace" } else { "del" };
        ip_cmd(
            &[
                "-n",
                &self.name,
                "address",
                verb,
                &format!("{addr}/32"),
                "dev",
                "lo",
            ],
            None,
        )
    }

    /// Remove the namespace (processes still inside keep it alive until they exit).
    pub fn delete(&self) -> Result<()> {
        delete_netns(&self.name)
    }

    /// Open a TCP connection to 127.0.0.1:`port` inside this pod.
    pub fn connect(&self, port: u16, timeout: Duration) -> Result<TcpStream> {
        connect(&self.path, port, timeout)
    }
}

pub fn delete_netns(name: &str) -> Result<()> {
    if !Path::new(NETNS_DIR).join(name).exists() {
        return Ok(());
    }
    ip_cmd(&["netns", "delete", name], None)
}

/// Names of all hoist pod namespaces (for cleanup after a crash).
pub fn list_netns() -> Result<Vec<String>> {
    let mut out = vec![];
    let Ok(rd) = fs::read_dir(NETNS_DIR) else {
        return Ok(out);
    };
    for e in rd {
        let e = e.ctx(|| format!("listing {NETNS_DIR}"))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(NETNS_PREFIX) {
            out.push(n);
        }
    }
    out.sort();
    Ok(out)
}

/// Connect to 127.0.0.1:`port` inside the network namespace at `netns`. A short-lived thread
/// enters the namespace and connects; the socket stays in that namespace afterwards.
pub fn connect(netns: &Path, port: u16, timeout: Duration) -> Result<TcpStream> {
    connect_addr(
        netns,
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        timeout,
    )
}

/// Like [`connect`] for any loopback address (e.g. the pod's own IP).
pub fn connect_addr(netns: &Path, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    if !addr.ip().is_loopback() {
        return Err(Error::Netns {
            name: netns.display().to_string(),
            reason: format!("refusing to connect to non-loopback {addr}"),
        });
    }
    let ns = fs::File::open(netns).map_err(|e| Error::Netns {
        name: netns.display().to_string(),
        reason: format!("cannot open the namespace: {e}"),
    })?;
    let netns_name = netns.display().to_string();
    std::thread::Builder::new()
        .name("netns-connect".into())
        .spawn(move || -> Result<TcpStream> {
            sys::setns_net(&ns).map_err(|e| Error::Netns {
                name: netns_name.clone(),
                reason: format!("setns: {e}"),
            })?;
            TcpStream::connect_timeout(&addr, timeout)
                .ctx(|| format!("connecting to {addr} in {netns_name}"))
        })
        .ctx(|| "spawning the netns connect thread")?
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Netns {
                name: netns.display().to_string(),
                reason: "connect thread panicked".into(),
            })
        })
}

/// A UDP socket bound to `addr` (loopback only) inside the network namespace at `netns`:
/// the socket stays in that namespace whichever thread uses it.
pub fn bind_udp(netns: &Path, addr: SocketAddr) -> Result<std::net::UdpSocket> {
    bind_in(netns, addr, "UDP", std::net::UdpSocket::bind)
}

/// A listener bound to loopback `addr` inside the network namespace at `netns` (a
/// short-lived thread enters it and binds; the socket stays in that namespace).
pub fn listen_addr(netns: &Path, addr: SocketAddr) -> Result<std::net::TcpListener> {
    bind_in(netns, addr, "TCP", std::net::TcpListener::bind)
}

/// Binds a socket on loopback `addr` from a short-lived thread that entered `netns`
/// (setns changes only the calling thread, so the caller's thread stays where it is).
fn bind_in<T: Send + 'static>(
    netns: &Path,
    addr: SocketAddr,
    kind: &'static str,
    bind: fn(SocketAddr) -> std::io::Result<T>,
) -> Result<T> {
    let netns_name = netns.display().to_string();
    if !addr.ip().is_loopback() {
        return Err(Error::Netns {
            name: netns_name,
            reason: format!("refusing to bind non-loopback {addr}"),
        });
    }
    let ns = fs::File::open(netns).map_err(|e| Error::Netns {
        name: netns_name.clone(),
        reason: format!("cannot open the namespace: {e}"),
    })?;
    let name = netns_name.clone();
    std::thread::Builder::new()
        .name("netns-bind".into())
        .spawn(move || -> Result<T> {
            sys::setns_net(&ns).map_err(|e| Error::Netns {
                name: name.clone(),
                reason: format!("setns: {e}"),
            })?;
            // A namespace `ip netns add` has just made still has `lo` down and no local
            // routes: a bind succeeds there, but without a source address, so a UDP
            // socket's replies go out from 127.0.0.1 and a client connected to `addr`
            // drops them. Bind only once the namespace is set up.
            let not_ready = match sys::loopback_is_up() {
                Ok(true) => None,
                Ok(false) => Some("lo is not up yet".to_string()),
                Err(e) => Some(format!("cannot read lo's flags: {e}")),
            };
            if let Some(why) = not_ready {
                return Err(Error::Netns {
                    name: name.clone(),
                    reason: format!("cannot bind {kind} {addr}: {why}"),
                });
            }
            bind(addr).ctx(|| format!("binding {kind} {addr} in {name}"))
        })
        .ctx(|| "spawning the netns bind thread")?
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Netns {
                name: netns_name,
                reason: "bind thread panicked".into(),
            })
        })
}

/// Pod IPs from 127.64.0.0/10, persisted in a JSON file (pod id → IP) under a lock so
/// concurrent pods and restarts never hand out one address twice.
#[derive(Clone, Debug)]
pub struct IpAllocator {
    file: PathBuf,
}

impl IpAllocator {
    pub fn new(file: impl Into<PathBuf>) -> Self {
        Self { file: file.into() }
    }

    fn with_table<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Ipv4Addr>) -> Result<T>,
    ) -> Result<T> {
        if let Some(dir) = self.file.parent() {
            fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        let lock_path = self.file.with_extension("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx(|| format!("opening {}", lock_path.display()))?;
        sys::flock_exclusive(&lock).ctx(|| format!("locking {}", lock_path.display()))?;
        let mut table: BTreeMap<String, Ipv4Addr> = match fs::read(&self.file) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Netns {
                name: self.file.display().to_string(),
                reason: format!("corrupt IP allocation file ({e}); delete it to start over"),
            })?,
            // Only a missing file is an empty table: any other error (e.g. out of file
            // descriptors) must not make every address look free.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(Error::Io {
                    context: format!("reading {}", self.file.display()),
                    source: e,
                });
            }
        };
        let before = table.clone();
        let out = f(&mut table)?;
        if table != before {
            let tmp = self.file.with_extension("tmp");
            fs::write(
                &tmp,
                serde_json::to_vec_pretty(&table).expect("serialisable"),
            )
            .ctx(|| format!("writing {}", tmp.display()))?;
            fs::rename(&tmp, &self.file).ctx(|| format!("writing {}", self.file.display()))?;
        }
        Ok(out)
    }

    /// The pod's IP, allocating the lowest free one on first call.
    pub fn allocate(&self, pod_id: &str) -> Result<Ipv4Addr> {
        self.with_table(|t| {
            if let Some(ip) = t.get(pod_id) {
                return Ok(*ip);
            }
            let used: std::collections::HashSet<u32> =
                t.values().map(|ip| u32::from(*ip)).collect();
            let size = 1u32 << (32 - POOL_PREFIX);
            // Skip the network address (.0.0) and the last one of the pool.
            let found = (1..size - 1)
                .map(|i| POOL_BASE + i)
                .find(|ip| !used.contains(ip) && (ip & 0xff) != 0 && (ip & 0xff) != 255)
                .ok_or_else(|| Error::IpPoolExhausted {
                    pool: format!("{}/{POOL_PREFIX}", Ipv4Addr::from(POOL_BASE)),
                    used: t.len(),
                })?;
            let ip = Ipv4Addr::from(found);
            t.insert(pod_id.to_string(), ip);
            Ok(ip)
        })
    }

    pub fn release(&self, pod_id: &str) -> Result<()> {
        self.with_table(|t| {
            t.remove(pod_id);
            Ok(())
        })
    }

    pub fn allocations(&self) -> Result<BTreeMap<String, Ipv4Addr>> {
        self.with_table(|t| Ok(t.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_table_is_an_error_not_an_empty_pool() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ipam.json");
        // A directory where the file should be: reading fails with something else than
        // "not found", which must not hand out addresses as if none were taken.
        fs::create_dir(&file).unwrap();
        let a = IpAllocator::new(&file);
        assert!(a.allocations().is_err());
        assert!(a.allocate("pod-a").is_err());
    }

    #[test]
    fn allocator_persists_reuses_and_stays_in_the_loopback_pool() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ipam.json");
        let a = IpAllocator::new(&file);
        let ip1 = a.allocate("p1").unwrap();
        let ip2 = a.allocate("p2").unwrap();
        assert_eq!(ip1, Ipv4Addr::new(127, 64, 0, 1));
        assert_eq!(ip2, Ipv4Addr::new(127, 64, 0, 2));
        assert_eq!(a.allocate("p1").unwrap(), ip1, "stable per pod");
        // A second allocator (a restarted process) sees the same table.
        let b = IpAllocator::new(&file);
        assert_eq!(b.allocate("p3").unwrap(), Ipv4Addr::new(127, 64, 0, 3));
        b.release("p1").unwrap();
        assert_eq!(a.allocate("p4").unwrap(), ip1, "freed addresses are reused");
        for ip in a.allocations().unwrap().values() {
            assert!(ip.is_loopback());
        }
        std::fs::write(&file, "not json").unwrap();
        let err = a.allocate("p5").unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains("ipam.json"),
            "{err}"
        );
    }

    #[test]
    fn non_loopback_addresses_are_refused() {
        for ip in ["10.0.0.1", "192.168.1.1", "172.16.0.1"] {
            let err = PodNetwork::create("x", ip.parse().unwrap()).unwrap_err();
            assert!(err.to_string().contains("loopback"), "{err}");
            let err = connect_addr(
                Path::new("/proc/self/ns/net"),
                SocketAddr::new(ip.parse().unwrap(), 80),
                Duration::from_millis(10),
            )
            .unwrap_err();
            assert!(err.to_string().contains("non-loopback"), "{err}");
        }
    }
}
