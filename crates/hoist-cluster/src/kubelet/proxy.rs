//! The userspace service proxy. Inside every pod network namespace each ClusterIP is
//! added to `lo` and a listener on ClusterIP:port forwards connections into a ready
//! endpoint pod's namespace (round-robin); NodePort/LoadBalancer ports also get a
//! listener on the host's 127.0.0.1:nodePort (UDP ports: [`super::proxy_udp`]). One
//! reconcile thread keeps the set of listeners equal to (pods × service ports) + node
//! ports. A listener is created inside its namespace (setns on a short-lived thread) and is
//! then an ordinary fd: all TCP listeners are served by one small tokio runtime owned by the
//! proxy, one task per listener awaiting `accept` (aborted, closing the socket, when its
//! entry goes away) and one task per connection (150 pods × 150 Services is 22,500 idle
//! tasks, not 22,500 polling threads). The same reconcile keeps the pods' DNS responder
//! sockets ([`super::dns`]) in step.
//!
//! Limitation (no iptables here): a pod does not get a ClusterIP listener on a port its
//! own containers declare (`containerPort`), since it would block the pod's wildcard bind;
//! an undeclared server port equal to a Service port can still collide.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use hoist_runtime::PodNetwork;
use serde_json::Value;

use super::Shared;
use crate::service_alloc::cluster_ip;

const RECONCILE: Duration = Duration::from_millis(300);
/// Every this many ticks the reconcile runs even if the store did not change.
const RESYNC_TICKS: u32 = 10;
/// Pause after a failed `accept` (e.g. out of fds) so the task does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Open connections per listener; more are refused, keeping a runaway client from
/// exhausting fds.
const MAX_CONNS: usize = 256;
/// Threads of the proxy's runtime: the tasks only wait on fds and copy bytes.
const IO_WORKERS: usize = 2;
/// Bound on concurrent namespace connects (each one a short-lived thread).
const MAX_CONNECTING: usize = 64;

/// Where a listener lives: a pod's namespace (by pod id) or the host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Place {
    Pod(String),
    Host,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    place: Place,
    addr: SocketAddr,
    udp: bool,
}

/// A ready endpoint: its pod's namespace and the port to connect to there.
type Targets = Arc<Mutex<Vec<(PathBuf, Ipv4Addr, u16)>>>;

/// A live listener: TCP ones are a task on the proxy runtime, UDP ones a thread.
struct Listener {
    stop: Stop,
    targets: Targets,
}

enum Stop {
    Task(tokio::task::AbortHandle),
    Flag(Arc<AtomicBool>),
}

impl Stop {
    fn stop(&self) {
        match self {
            // Dropping the aborted task's future drops (closes) its listening socket.
            Stop::Task(t) => t.abort(),
            Stop::Flag(f) => f.store(true, Ordering::Relaxed),
        }
    }
}

/// Runs the proxy until `stop` is set.
pub(crate) fn spawn(shared: Arc<Shared>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("svc-proxy".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(IO_WORKERS)
                .max_blocking_threads(MAX_CONNECTING)
                .thread_name("svc-proxy-io")
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the service proxy's runtime: Services are not forwarded");
                    return;
                }
            };
            let mut state = State {
                max_listeners: listener_budget(),
                ..State::default()
            };
            let mut ticks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Services, Endpoints and pods unchanged and no failed listener due for a
                // retry: the listeners are as wanted. A full pass still runs every
                // RESYNC_TICKS, for namespaces or fds that changed outside the store.
                let seen = [
                    shared.app.store.resource_rv("/services"),
                    shared.app.store.resource_rv("/endpoints"),
                    shared.app.store.resource_rv("/pods"),
                ];
                let now = std::time::Instant::now();
                let retry_due = state.retry.values().any(|(at, _)| *at <= now);
                if seen != state.seen || retry_due || ticks.is_multiple_of(RESYNC_TICKS) {
                    state.seen = seen;
                    reconcile(&shared, &mut state, rt.handle());
                }
                ticks = ticks.wrapping_add(1);
                std::thread::sleep(RECONCILE);
            }
            for l in state.live.values() {
                l.stop.stop();
            }
            shared.dns.stop();
            // Open connections end with the proxy.
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .expect("spawning the service proxy thread")
}

/// What the reconcile loop keeps between ticks.
#[derive(Default)]
struct State {
    live: HashMap<Key, Listener>,
    /// ClusterIPs added to each pod namespace's lo.
    addrs: HashMap<String, Vec<Ipv4Addr>>,
    /// Pod namespaces seen to exist (by pod id, with the pod's IP): not stat'ed again.
    nets: HashMap<String, PodNetwork>,
    /// Targets per Service port (by ClusterIP:port, protocol), shared by all its
    /// listeners, so a tick updates one list per Service port, not one per listener.
    targets: HashMap<(SocketAddr, bool), Targets>,
    /// Listeners that failed to start: when to try again and the next backoff.
    retry: HashMap<Key, (std::time::Instant, Duration)>,
    /// At most this many listeners (one fd each), so the rest of the process keeps fds.
    max_listeners: usize,
    /// Listeners left out for the fd budget at the last tick (to warn on change only).
    over_budget: usize,
    /// Store versions of Services, Endpoints and pods at the last reconcile.
    seen: [u64; 3],
}

/// Fds kept for everything else in the process (API server, containers' logs, runc).
const FD_RESERVE: u64 = 4096;
/// The open-file limit the proxy asks for, as kubelets and container runtimes run with.
const WANT_NOFILE: u64 = 1 << 20;

/// How many listeners fit: raises the soft open-file limit (and, as root, the hard one)
/// towards [`WANT_NOFILE`], since pods × Service ports listeners each hold an fd, and keeps
/// [`FD_RESERVE`] of it for the rest of the process: running out of fds would break far
/// more than the proxy.
fn listener_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return usize::MAX;
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(WANT_NOFILE);
    let want = WANT_NOFILE.min(nr_open);
    if lim.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        let hard_only = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        } else if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &hard_only) } == 0 {
            lim = hard_only;
        }
    }
    let cur = lim.rlim_cur;
    usize::try_from(cur.saturating_sub(FD_RESERVE).max(cur / 2)).unwrap_or(usize::MAX)
}

/// Failed listeners are retried after 300 ms, doubling up to this.
const RETRY_MAX: Duration = Duration::from_secs(5);

fn reconcile(shared: &Shared, state: &mut State, rt: &tokio::runtime::Handle) {
    let dns = &shared.dns;
    let store = &shared.app.store;
    let Ok(pods) = shared.ips.allocations() else {
        return;
    };
    let (services, _) = store.list_shared("/services", None);
    let (endpoints, _) = store.list_shared("/endpoints", None);
    let (pod_objs, _) = store.list_shared("/pods", None);
    // Ports each pod's containers declare: a listener on ClusterIP:port in that pod
    // would make the pod's own bind of 0.0.0.0:port fail, so those are left out.
    let declared: HashMap<&str, Vec<u64>> = pod_objs
        .iter()
        .filter_map(|p| {
            let uid = p.pointer("/metadata/uid")?.as_str()?;
            let ports = p["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .filter_map(|cp| cp["containerPort"].as_u64())
                .collect();
            Some((uid, ports))
        })
        .collect();
    // Pod IP → its namespace (a namespace already seen for the same pod and IP is not
    // looked up again: it lives as long as the pod's IP allocation).
    let nets: BTreeMap<String, PodNetwork> = pods
        .iter()
        .filter_map(|(id, ip)| {
            let net = match state.nets.get(id) {
                Some(n) if n.ip == *ip => n.clone(),
                _ => PodNetwork::existing(id, *ip)?,
            };
            Some((id.clone(), net))
        })
        .collect();
    state.nets = nets.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let by_ip: HashMap<Ipv4Addr, PathBuf> = nets.values().map(|n| (n.ip, n.path.clone())).collect();
    // The DNS responder: a socket in every pod namespace, answering in the pod's namespace.
    let pod_ns: HashMap<&str, &str> = pod_objs
        .iter()
        .filter_map(|p| {
            Some((
                p.pointer("/metadata/uid")?.as_str()?,
                p.pointer("/metadata/namespace")?.as_str()?,
            ))
        })
        .collect();
    let dns_pods = nets
        .iter()
        .filter_map(|(id, n)| {
            Some((
                id.clone(),
                (n.path.as_path(), pod_ns.get(id.as_str())?.to_string()),
            ))
        })
        .collect();
    dns.sync(
        &dns_pods,
        super::dns::records(&services, &endpoints, &pod_objs),
    );
    let eps: HashMap<(&str, &str), &Value> = endpoints
        .iter()
        .filter_map(|e| {
            Some((
                (
                    e.pointer("/metadata/namespace")?.as_str()?,
                    e.pointer("/metadata/name")?.as_str()?,
                ),
                &**e,
            ))
        })
        .collect();
    let mut want: HashMap<Key, Targets> = HashMap::new();
    let mut want_targets: HashMap<(SocketAddr, bool), Targets> = HashMap::new();
    let mut want_addrs: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
    for svc in &services {
        let Some(cip) = cluster_ip(svc) else { continue };
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or("");
        let name = svc["metadata"]["name"].as_str().unwrap_or("");
        let ep = eps.get(&(ns, name));
        for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
            let udp = match p["protocol"].as_str().unwrap_or("TCP") {
                "TCP" => false,
                "UDP" => true,
                // SCTP: not forwarded.
                _ => continue,
            };
            let Some(port) = p["port"].as_u64().and_then(|n| u16::try_from(n).ok()) else {
                continue;
            };
            let list = ep
                .map(|e| endpoint_targets(e, p, &by_ip))
                .unwrap_or_default();
            let targets = state
                .targets
                .get(&(SocketAddr::from((cip, port)), udp))
                .cloned()
                .unwrap_or_default();
            {
                let mut t = targets.lock().unwrap_or_else(|e| e.into_inner());
                if *t != list {
                    *t = list;
                }
            }
            want_targets.insert((SocketAddr::from((cip, port)), udp), targets.clone());
            for id in nets.keys() {
                if declared
                    .get(id.as_str())
                    .is_some_and(|ps| ps.contains(&u64::from(port)))
                {
                    continue;
                }
                want.insert(
                    Key {
                        place: Place::Pod(id.clone()),
                        addr: SocketAddr::from((cip, port)),
                        udp,
                    },
                    targets.clone(),
                );
                want_addrs.entry(id.clone()).or_default().push(cip);
            }
            if let Some(np) = p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()) {
                want.insert(
                    Key {
                        place: Place::Host,
                        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, np)),
                        udp,
                    },
                    targets,
                );
            }
        }
    }
    state.targets = want_targets;
    let (live, addrs) = (&mut state.live, &mut state.addrs);
    // ClusterIPs on each pod's lo: add new ones, drop those of deleted Services.
    for (id, ips) in &mut want_addrs {
        ips.sort();
        ips.dedup();
        let have = addrs.get(id).cloned().unwrap_or_default();
        let Some(net) = nets.get(id) else { continue };
        let add: Vec<Ipv4Addr> = ips
            .iter()
            .filter(|ip| !have.contains(ip))
            .copied()
            .collect();
        let del: Vec<Ipv4Addr> = have
            .iter()
            .filter(|ip| !ips.contains(ip))
            .copied()
            .collect();
        if let Err(e) = set_lo_addresses(net, &add, &del) {
            tracing::warn!(pod = %id, error = %e, "cannot update the ClusterIPs on the pod's lo");
        }
    }
    addrs.retain(|id, _| nets.contains_key(id));
    for (id, ips) in want_addrs {
        addrs.insert(id, ips);
    }
    // Stop listeners no longer wanted; update targets; start new ones.
    live.retain(|k, l| {
        let keep = want.contains_key(k);
        if !keep {
            l.stop.stop();
        }
        keep
    });
    state.retry.retain(|k, _| want.contains_key(k));
    let now = std::time::Instant::now();
    let mut over_budget = 0;
    for (key, targets) in want {
        if let Some(l) = live.get(&key) {
            // Listeners hold their Service port's shared list; it is only a new one if the
            // port was re-created between ticks: restart the listener with it.
            if Arc::ptr_eq(&l.targets, &targets) {
                continue;
            }
            l.stop.stop();
            live.remove(&key);
        }
        if state.retry.get(&key).is_some_and(|(at, _)| now < *at) {
            continue;
        }
        if live.len() >= state.max_listeners {
            over_budget += 1;
            continue;
        }
        let started = if key.udp {
            let flag = Arc::new(AtomicBool::new(false));
            let sock = match &key.place {
                Place::Host => std::net::UdpSocket::bind(key.addr).map_err(|e| e.to_string()),
                Place::Pod(id) => match nets.get(id) {
                    Some(n) => {
                        hoist_runtime::netns::bind_udp(&n.path, key.addr).map_err(|e| e.to_string())
                    }
                    None => continue,
                },
            };
            sock.and_then(|s| {
                super::proxy_udp::serve(s, flag.clone(), targets.clone()).map_err(|e| e.to_string())
            })
            .map(|()| Stop::Flag(flag))
        } else {
            let listener = match &key.place {
                Place::Host => TcpListener::bind(key.addr).map_err(|e| e.to_string()),
                Place::Pod(id) => match nets.get(id) {
                    Some(n) => hoist_runtime::netns::listen_addr(&n.path, key.addr)
                        .map_err(|e| e.to_string()),
                    None => continue,
                },
            };
            listener.and_then(|s| {
                serve(rt, s, targets.clone())
                    .map(Stop::Task)
                    .map_err(|e| e.to_string())
            })
        };
        match started {
            Ok(stop) => {
                state.retry.remove(&key);
                live.insert(key, Listener { stop, targets });
            }
            Err(e) => {
                let backoff = state
                    .retry
                    .get(&key)
                    .map_or(RECONCILE, |(_, b)| (*b * 2).min(RETRY_MAX));
                tracing::debug!(addr = %key.addr, place = ?key.place, udp = key.udp, error = %e, retry_in = ?backoff, "service listener not started");
                state.retry.insert(key, (now + backoff, backoff));
            }
        }
    }
    if over_budget != state.over_budget {
        if over_budget > 0 {
            tracing::warn!(
                open = live.len(),
                left_out = over_budget,
                "service listeners left out: the process's open-file limit is too low for pods × Service ports (raise `ulimit -n`)"
            );
        }
        state.over_budget = over_budget;
    }
}

/// Adds `add` to and removes `del` from the pod namespace's `lo`: one `ip -batch` for all
/// (a pod joining 150 Services is one process, not 150); a single change uses the
/// runtime's checked helper.
fn set_lo_addresses(net: &PodNetwork, add: &[Ipv4Addr], del: &[Ipv4Addr]) -> io::Result<()> {
    use std::io::Write;
    match (add, del) {
        ([], []) => return Ok(()),
        ([ip], []) | ([], [ip]) => {
            return net
                .set_lo_address(*ip, del.is_empty())
                .map_err(io::Error::other);
        }
        _ => {}
    }
    let mut batch = String::new();
    // Loopback only, as PodNetwork::set_lo_address checks (ClusterIPs are 127.x).
    for ip in add.iter().filter(|ip| ip.is_loopback()) {
        batch.push_str(&format!("address replace {ip}/32 dev lo\n"));
    }
    for ip in del.iter().filter(|ip| ip.is_loopback()) {
        batch.push_str(&format!("address del {ip}/32 dev lo\n"));
    }
    let mut child = std::process::Command::new("ip")
        .args(["-n", &net.name, "-force", "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut w) = child.stdin.take() {
        w.write_all(batch.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`ip -n {} -batch` failed: {}",
            net.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The ready addresses of an Endpoints object for one service port, as
/// (namespace path, pod IP, target port).
fn endpoint_targets(
    ep: &Value,
    svc_port: &Value,
    by_ip: &HashMap<Ipv4Addr, PathBuf>,
) -> Vec<(PathBuf, Ipv4Addr, u16)> {
    let want_name = svc_port["name"].as_str().unwrap_or("");
    let mut out = Vec::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        let port = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == want_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|n| u16::try_from(n).ok());
        let Some(port) = port else { continue };
        for a in subset["addresses"].as_array().into_iter().flatten() {
            let Some(ip) = a["ip"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            if let Some(path) = by_ip.get(&ip) {
                out.push((path.clone(), ip, port));
            }
        }
    }
    out.sort();
    out
}

/// Serves `listener` on `rt` until the returned task is aborted: each connection goes to
/// the next target (round-robin).
fn serve(
    rt: &tokio::runtime::Handle,
    listener: TcpListener,
    targets: Targets,
) -> io::Result<tokio::task::AbortHandle> {
    listener.set_nonblocking(true)?;
    let listener = {
        let _in_rt = rt.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let task = rt.spawn(async move {
        let next = AtomicUsize::new(0);
        let open = Arc::new(Semaphore::new(MAX_CONNS));
        loop {
            let client = match listener.accept().await {
                Ok((client, _)) => client,
                Err(e) => {
                    tracing::debug!(error = %e, "service accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let list = targets.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if list.is_empty() {
                // No ready endpoint: refuse, as kube-proxy's REJECT does.
                continue;
            }
            let Ok(permit) = open.clone().try_acquire_owned() else {
                tracing::warn!("service listener at {MAX_CONNS} connections: refusing");
                continue;
            };
            let t = list[next.fetch_add(1, Ordering::Relaxed) % list.len()].clone();
            tokio::spawn(async move {
                forward(client, t).await;
                drop(permit);
            });
        }
    });
    Ok(task.abort_handle())
}

/// Connects inside the endpoint pod's namespace (a short-lived thread there, so this
/// runtime's threads never change namespace) and copies both ways until both sides close.
async fn forward(mut client: tokio::net::TcpStream, (netns, ip, port): (PathBuf, Ipv4Addr, u16)) {
    let connect = tokio::task::spawn_blocking(move || {
        let s = hoist_runtime::netns::connect_addr(
            &netns,
            SocketAddr::from((ip, port)),
            CONNECT_TIMEOUT,
        )
        .map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok::<_, String>(s)
    });
    let upstream = match connect.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "service backend connect failed");
            return;
        }
        Err(_) => return,
    };
    let Ok(mut upstream) = tokio::net::TcpStream::from_std(upstream) else {
        return;
    };
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::trace!(error = %e, "service connection ended");
    }
}
