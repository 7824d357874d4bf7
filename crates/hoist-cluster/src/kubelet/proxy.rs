//! The userspace service proxy. Inside every pod network namespace each ClusterIP is
//! added to `lo` and a listener on ClusterIP:port forwards connections into a ready
//! endpoint pod's namespace (round-robin); NodePort/LoadBalancer ports also get a
//! listener on the host's 127.0.0.1:nodePort (UDP ports: [`super::proxy_udp`]). One
//! reconcile thread keeps the set of listeners equal to (pods × service ports) + node
//! ports; each listener is one accept thread that stops when its entry goes away. The same reconcile keeps the pods' DNS
//! responder sockets ([`super::dns`]) in step.
//!
//! Limitation (no iptables here): a pod does not get a ClusterIP listener on a port its
//! own containers declare (`containerPort`), since it would block the pod's wildcard bind;
//! an undeclared server port equal to a Service port can still collide.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hoist_runtime::PodNetwork;
use serde_json::Value;

use super::Shared;
use crate::service_alloc::cluster_ip;

const RECONCILE: Duration = Duration::from_millis(300);
const ACCEPT_POLL: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Open connections per listener (two threads each); more are refused, keeping a
/// runaway client from exhausting threads.
const MAX_CONNS: usize = 256;

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

struct Listener {
    stop: Arc<AtomicBool>,
    targets: Targets,
}

/// Runs the proxy until `stop` is set.
pub(crate) fn spawn(shared: Arc<Shared>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("svc-proxy".into())
        .spawn(move || {
            let mut live: HashMap<Key, Listener> = HashMap::new();
            // ClusterIPs added to each pod namespace's lo.
            let mut addrs: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                reconcile(&shared, &mut live, &mut addrs, &shared.dns);
                std::thread::sleep(RECONCILE);
            }
            for l in live.values() {
                l.stop.store(true, Ordering::Relaxed);
            }
            shared.dns.stop();
        })
        .expect("spawning the service proxy thread")
}

fn reconcile(
    shared: &Shared,
    live: &mut HashMap<Key, Listener>,
    addrs: &mut HashMap<String, Vec<Ipv4Addr>>,
    dns: &super::dns::DnsServer,
) {
    let store = &shared.app.store;
    let (Ok((services, _)), Ok((endpoints, _)), Ok(pods), Ok((pod_objs, _))) = (
        store.list("/services", None),
        store.list("/endpoints", None),
        shared.ips.allocations(),
        store.list("/pods", None),
    ) else {
        return;
    };
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
    // Pod IP → its namespace.
    let nets: BTreeMap<String, PodNetwork> = pods
        .iter()
        .filter_map(|(id, ip)| PodNetwork::existing(id, *ip).map(|n| (id.clone(), n)))
        .collect();
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
    let eps: HashMap<(String, String), &Value> = endpoints
        .iter()
        .filter_map(|e| {
            Some((
                (
                    e.pointer("/metadata/namespace")?.as_str()?.to_string(),
                    e.pointer("/metadata/name")?.as_str()?.to_string(),
                ),
                e,
            ))
        })
        .collect();
    let mut want: HashMap<Key, Vec<(PathBuf, Ipv4Addr, u16)>> = HashMap::new();
    let mut want_addrs: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
    for svc in &services {
        let Some(cip) = cluster_ip(svc) else { continue };
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or("");
        let name = svc["metadata"]["name"].as_str().unwrap_or("");
        let ep = eps.get(&(ns.to_string(), name.to_string()));
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
            let targets = ep
                .map(|e| endpoint_targets(e, p, &by_ip))
                .unwrap_or_default();
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
    // ClusterIPs on each pod's lo: add new ones, drop those of deleted Services.
    for (id, ips) in &mut want_addrs {
        ips.sort();
        ips.dedup();
        let have = addrs.get(id).cloned().unwrap_or_default();
        let Some(net) = nets.get(id) else { continue };
        for ip in ips.iter().filter(|ip| !have.contains(ip)) {
            if let Err(e) = net.set_lo_address(*ip, true) {
                tracing::warn!(pod = %id, error = %e, "cannot add a ClusterIP to the pod's lo");
            }
        }
        for ip in have.iter().filter(|ip| !ips.contains(ip)) {
            let _ = net.set_lo_address(*ip, false);
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
            l.stop.store(true, Ordering::Relaxed);
        }
        keep
    });
    for (key, targets) in want {
        if let Some(l) = live.get(&key) {
            *l.targets.lock().unwrap_or_else(|e| e.into_inner()) = targets;
            continue;
        }
        let l = Listener {
            stop: Arc::new(AtomicBool::new(false)),
            targets: Arc::new(Mutex::new(targets)),
        };
        let started = if key.udp {
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
                super::proxy_udp::serve(s, l.stop.clone(), l.targets.clone())
                    .map_err(|e| e.to_string())
            })
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
                serve(s, l.stop.clone(), l.targets.clone()).map_err(|e| e.to_string())
            })
        };
        if let Err(e) = started {
            tracing::debug!(addr = %key.addr, place = ?key.place, udp = key.udp, error = %e, "service listener not started (retrying)");
            continue;
        }
        live.insert(key, l);
    }
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

/// Accepts until `stop`, forwarding each connection to the next target (round-robin).
fn serve(listener: TcpListener, stop: Arc<AtomicBool>, targets: Targets) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let next = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("svc-listener".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let list = targets.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        if list.is_empty() {
                            // No ready endpoint: refuse, as kube-proxy's REJECT does.
                            continue;
                        }
                        if open.load(Ordering::Relaxed) >= MAX_CONNS {
                            tracing::warn!("service listener at {MAX_CONNS} connections: refusing");
                            continue;
                        }
                        let t = list[next.fetch_add(1, Ordering::Relaxed) % list.len()].clone();
                        open.fetch_add(1, Ordering::Relaxed);
                        let held = open.clone();
                        let spawned =
                            std::thread::Builder::new()
                                .name("svc-conn".into())
                                .spawn(move || {
                                    forward(client, t);
                                    held.fetch_sub(1, Ordering::Relaxed);
                                });
                        if spawned.is_err() {
                            open.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(ACCEPT_POLL)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "service accept failed");
                        std::thread::sleep(ACCEPT_POLL)
                    }
                }
            }
        })?;
    Ok(())
}

fn forward(client: TcpStream, (netns, ip, port): (PathBuf, Ipv4Addr, u16)) {
    let _ = client.set_nonblocking(false);
    let upstream = match hoist_runtime::netns::connect_addr(
        &netns,
        SocketAddr::from((ip, port)),
        CONNECT_TIMEOUT,
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "service backend connect failed");
            return;
        }
    };
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let (mut c1, mut u1) = (client, upstream);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c1, &mut u1);
        let _ = u1.shutdown(std::net::Shutdown::Write);
    });
    let _ = io::copy(&mut u2, &mut c2);
    let _ = c2.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}
