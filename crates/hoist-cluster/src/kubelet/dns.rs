//! A tiny authoritative DNS responder for Service names, so pods resolve them through
//! /etc/resolv.conf as in Kubernetes (the /etc/hosts entries stay as well). Every pod
//! network namespace gets a UDP socket on [`NAMESERVER`]:53 (on the namespace's own `lo`);
//! one thread answers them all. A records for `svc`, `svc.ns`, `svc.ns.svc` and
//! `svc.ns.svc.cluster.local` (ClusterIP, or the ready endpoints of a headless Service),
//! `pod.svc.ns.svc.cluster.local` for pods with hostname + subdomain of a headless Service;
//! other types of a known name get an empty answer, unknown names NXDOMAIN. Nothing is
//! ever forwarded: there is no upstream.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::service_alloc::cluster_ip;
use crate::service_links::CLUSTER_DOMAIN;

/// The resolver address inside every pod (its own loopback; no other namespace sees it).
pub(crate) const NAMESERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
const TTL: u32 = 5;

/// /etc/resolv.conf as the pod's `dnsPolicy` and `dnsConfig` ask (None: no file).
pub(crate) fn resolv_conf_for(pod: &Value, ns: &str) -> Option<String> {
    let cfg = &pod["spec"]["dnsConfig"];
    let strings = |k: &str| -> Vec<String> {
        cfg[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let (mut servers, mut searches, mut options) = match pod["spec"]["dnsPolicy"].as_str() {
        // "Default" is the node's resolver: this dev cluster has none to offer (no internet).
        Some("Default") => return None,
        Some("None") => (vec![], vec![], vec![]),
        _ => (
            vec![NAMESERVER.to_string()],
            vec![
                format!("{ns}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ],
            vec!["ndots:5".to_string()],
        ),
    };
    servers.extend(strings("nameservers"));
    searches.extend(strings("searches"));
    for o in cfg["options"].as_array().into_iter().flatten() {
        let Some(name) = o["name"].as_str() else {
            continue;
        };
        options.retain(|x| x.split(':').next() != Some(name));
        options.push(match o["value"].as_str() {
            Some(v) => format!("{name}:{v}"),
            None => name.to_string(),
        });
    }
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    Some(out)
}

/// Service records by full name (`svc.ns.svc.cluster.local`).
pub(crate) type Records = HashMap<String, Vec<Ipv4Addr>>;

/// The records of every Service: its ClusterIP, or (headless) its ready endpoint IPs; and
/// for a pod with `hostname` and `subdomain` naming a headless Service of its namespace
/// (a StatefulSet's pods), `hostname.subdomain.ns.svc.cluster.local` while it is one of
/// that Service's ready endpoints.
pub(crate) fn records<V: Borrow<Value>>(services: &[V], endpoints: &[V], pods: &[V]) -> Records {
    let mut eps: HashMap<(&str, &str), Vec<Ipv4Addr>> = HashMap::new();
    for e in endpoints.iter().map(Borrow::borrow) {
        let (Some(ns), Some(name)) = (
            e.pointer("/metadata/namespace").and_then(Value::as_str),
            e.pointer("/metadata/name").and_then(Value::as_str),
        ) else {
            continue;
        };
        let ips = e["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["addresses"].as_array().into_iter().flatten())
            .filter_map(|a| a["ip"].as_str()?.parse::<Ipv4Addr>().ok());
        eps.entry((ns, name)).or_default().extend(ips);
    }
    let mut out = Records::new();
    for s in services.iter().map(Borrow::borrow) {
        let (Some(ns), Some(name)) = (
            s.pointer("/metadata/namespace").and_then(Value::as_str),
            s.pointer("/metadata/name").and_then(Value::as_str),
        ) else {
            continue;
        };
        let mut ips = match cluster_ip(s) {
            Some(ip) => vec![ip],
            None if s["spec"]["clusterIP"] == "None" => {
                eps.get(&(ns, name)).cloned().unwrap_or_default()
            }
            None => continue,
        };
        ips.sort();
        ips.dedup();
        out.insert(format!("{name}.{ns}.svc.{CLUSTER_DOMAIN}"), ips);
    }
    for p in pods.iter().map(Borrow::borrow) {
        let s = |ptr: &str| p.pointer(ptr).and_then(Value::as_str);
        let (Some(ns), Some(host), Some(sub), Some(ip)) = (
            s("/metadata/namespace"),
            s("/spec/hostname"),
            s("/spec/subdomain"),
            s("/status/podIP").and_then(|ip| ip.parse::<Ipv4Addr>().ok()),
        ) else {
            continue;
        };
        let headless = services.iter().map(Borrow::borrow).any(|svc: &Value| {
            svc.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
                && svc.pointer("/metadata/name").and_then(Value::as_str) == Some(sub)
                && svc["spec"]["clusterIP"] == "None"
        });
        let ready = eps.get(&(ns, sub)).is_some_and(|e| e.contains(&ip));
        if headless && ready {
            out.insert(
                format!("{host}.{sub}.{ns}.svc.{CLUSTER_DOMAIN}").to_ascii_lowercase(),
                vec![ip],
            );
        }
    }
    out
}

/// The addresses for `qname` asked from a pod in `pod_ns`; `None`: no such name.
pub(crate) fn resolve(records: &Records, qname: &str, pod_ns: &str) -> Option<Vec<Ipv4Addr>> {
    let name = qname.trim_end_matches('.').to_ascii_lowercase();
    let suffix = format!(".svc.{CLUSTER_DOMAIN}");
    let full = if name.ends_with(&suffix) {
        name
    } else if name.ends_with(".svc") {
        format!("{name}.{CLUSTER_DOMAIN}")
    } else {
        match name.matches('.').count() {
            0 => format!("{name}.{pod_ns}{suffix}"),
            // `svc.ns`, else `pod.headless-svc` of the asking pod's namespace (what a
            // search list would find; some clients do not search names with a dot).
            1 => {
                return records
                    .get(&format!("{name}{suffix}"))
                    .or_else(|| records.get(&format!("{name}.{pod_ns}{suffix}")))
                    .cloned();
            }
            _ => return None,
        }
    };
    records.get(&full).cloned()
}

/// The reply to one DNS query (`None`: not worth answering, e.g. a response or garbage
/// too short to carry an id).
pub(crate) fn answer(
    query: &[u8],
    lookup: impl Fn(&str) -> Option<Vec<Ipv4Addr>>,
) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let id = [query[0], query[1]];
    let rd = query[2] & 0x01;
    let opcode = (query[2] >> 3) & 0x0f;
    let reply = |rcode: u8, question: &[u8], answers: &[Ipv4Addr]| {
        let mut r = Vec::with_capacity(12 + question.len() + answers.len() * 16);
        r.extend_from_slice(&id);
        r.push(0x80 | 0x04 | rd); // QR, AA, RD as asked
        r.push(rcode);
        r.extend_from_slice(&u16::from(!question.is_empty()).to_be_bytes());
        r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        r.extend_from_slice(question);
        for ip in answers {
            // Name: a pointer to the question's name at offset 12.
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            r.extend_from_slice(&TTL.to_be_bytes());
            r.extend_from_slice(&[0, 4]);
            r.extend_from_slice(&ip.octets());
        }
        r
    };
    const FORMERR: u8 = 1;
    const NXDOMAIN: u8 = 3;
    const NOTIMP: u8 = 4;
    if opcode != 0 {
        return Some(reply(NOTIMP, &[], &[]));
    }
    if u16::from_be_bytes([query[4], query[5]]) != 1 {
        return Some(reply(FORMERR, &[], &[]));
    }
    // QNAME as labels (queries carry no compression pointers).
    let mut pos = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *query.get(pos)? as usize;
        if len == 0 {
            pos += 1;
            break;
        }
        if len > 63 {
            return Some(reply(FORMERR, &[], &[]));
        }
        let label = query.get(pos + 1..pos + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += 1 + len;
    }
    let Some(q) = query.get(pos..pos + 4) else {
        return Some(reply(FORMERR, &[], &[]));
    };
    let qtype = u16::from_be_bytes([q[0], q[1]]);
    let question = &query[12..pos + 4];
    match lookup(&labels.join(".")) {
        None => Some(reply(NXDOMAIN, question, &[])),
        // A (1) or ANY (255) get the addresses; other types of a known name: no data.
        Some(ips) if qtype == 1 || qtype == 255 => {
            // A plain DNS reply fits in 512 bytes (no EDNS, no TCP here): a large headless
            // Service answers with as many of its endpoints as fit.
            let room = (512 - 12usize).saturating_sub(question.len()) / 16;
            Some(reply(0, question, &ips[..ips.len().min(room)]))
        }
        Some(_) => Some(reply(0, question, &[])),
    }
}

type Socket = (Arc<UdpSocket>, String, std::time::Instant);

/// A socket opened by [`DnsServer::add_pod`] may be newer than the view of a concurrent
/// sync; it is kept this long before a sync may drop it.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The responder: one socket per pod namespace, one thread for all of them.
pub(crate) struct DnsServer {
    /// pod id → (socket in its namespace, the pod's Kubernetes namespace, when opened).
    sockets: Mutex<HashMap<String, Socket>>,
    records: RwLock<Records>,
    stop: AtomicBool,
}

impl DnsServer {
    /// Starts the answering thread; [`DnsServer::stop`] ends it.
    pub(crate) fn start() -> Arc<Self> {
        let server = Arc::new(Self {
            sockets: Mutex::new(HashMap::new()),
            records: RwLock::new(Records::new()),
            stop: AtomicBool::new(false),
        });
        let s = server.clone();
        let spawned = std::thread::Builder::new()
            .name("pod-dns".into())
            .spawn(move || s.serve());
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the pod DNS responder");
        }
        server
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Opens the pod's resolver as soon as its namespace exists, before its containers
    /// start (the reconcile loop would otherwise add it within a few hundred ms).
    pub(crate) fn add_pod(&self, pod_id: &str, netns: &Path, ns: &str) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if !sockets.contains_key(pod_id) {
            Self::open(&mut sockets, pod_id, netns, ns);
        }
    }

    fn open(sockets: &mut HashMap<String, Socket>, id: &str, netns: &Path, ns: &str) {
        let sock = hoist_runtime::netns::bind_udp(netns, SocketAddr::from((NAMESERVER, 53)))
            .map_err(|e| e.to_string())
            .and_then(|s| {
                s.set_nonblocking(true)
                    .map(|()| s)
                    .map_err(|e| e.to_string())
            });
        match sock {
            Ok(sock) => {
                sockets.insert(
                    id.to_string(),
                    (Arc::new(sock), ns.to_string(), std::time::Instant::now()),
                );
            }
            Err(e) => tracing::debug!(pod = %id, error = %e, "pod DNS socket not bound (retrying)"),
        }
    }

    /// Brings the sockets in line with the pod namespaces (`pods`: pod id → (netns path,
    /// Kubernetes namespace)) and replaces the records.
    pub(crate) fn sync(&self, pods: &HashMap<String, (&Path, String)>, records: Records) {
        *self.records.write().unwrap_or_else(|e| e.into_inner()) = records;
        let mut sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        sockets.retain(|id, s| pods.contains_key(id) || s.2.elapsed() < GRACE);
        for (id, (netns, ns)) in pods {
            match sockets.get_mut(id) {
                Some(entry) => entry.1 = ns.clone(),
                None => Self::open(&mut sockets, id, netns, ns),
            }
        }
    }

    fn serve(&self) {
        let mut buf = [0u8; 1500];
        while !self.stop.load(Ordering::Relaxed) {
            let socks: Vec<(Arc<UdpSocket>, String)> = self
                .sockets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .map(|(s, ns, _)| (s.clone(), ns.clone()))
                .collect();
            let mut fds: Vec<libc::pollfd> = socks
                .iter()
                .map(|(s, _)| libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            if fds.is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            // SAFETY: `fds` is a valid array of pollfd for the sockets held in `socks`.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
            if n <= 0 {
                continue;
            }
            for (pfd, (sock, ns)) in fds.iter().zip(&socks) {
                if pfd.revents & libc::POLLIN == 0 {
                    continue;
                }
                while let Ok((len, from)) = sock.recv_from(&mut buf) {
                    let records = self.records.read().unwrap_or_else(|e| e.into_inner());
                    if let Some(reply) = answer(&buf[..len], |q| resolve(&records, q, ns)) {
                        let _ = sock.send_to(&reply, from);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    fn recs() -> Records {
        let services = [
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "127.96.0.10"}}),
            json!({"metadata": {"name": "db", "namespace": "data"}, "spec": {"clusterIP": "None"}}),
        ];
        let eps = [
            json!({"metadata": {"name": "db", "namespace": "data"}, "subsets": [
            {"addresses": [{"ip": "127.64.0.7"}, {"ip": "127.64.0.3"}]}]}),
        ];
        let pods = [
            json!({"metadata": {"namespace": "data"}, "spec": {"hostname": "db-0", "subdomain": "db"},
                   "status": {"podIP": "127.64.0.3"}}),
            // Not a ready endpoint: no name.
            json!({"metadata": {"namespace": "data"}, "spec": {"hostname": "db-1", "subdomain": "db"},
                   "status": {"podIP": "127.64.0.99"}}),
            // Its subdomain is not a headless Service.
            json!({"metadata": {"namespace": "default"}, "spec": {"hostname": "w", "subdomain": "web"},
                   "status": {"podIP": "127.64.0.5"}}),
        ];
        records(&services, &eps, &pods)
    }

    #[test]
    fn names_resolve_relative_to_the_pods_namespace() {
        let r = recs();
        let web = Some(vec![Ipv4Addr::new(127, 96, 0, 10)]);
        assert_eq!(resolve(&r, "web", "default"), web);
        assert_eq!(resolve(&r, "WEB.default.", "other"), web);
        assert_eq!(resolve(&r, "web.default.svc", "other"), web);
        assert_eq!(resolve(&r, "web.default.svc.cluster.local", "other"), web);
        assert_eq!(resolve(&r, "web", "other"), None);
        assert_eq!(
            resolve(&r, "db.data", "default"),
            Some(vec![
                Ipv4Addr::new(127, 64, 0, 3),
                Ipv4Addr::new(127, 64, 0, 7)
            ]),
            "headless: the endpoints"
        );
        assert_eq!(resolve(&r, "example.com", "default"), None);
        assert_eq!(
            resolve(&r, "db-0.db.data.svc.cluster.local", "default"),
            Some(vec![Ipv4Addr::new(127, 64, 0, 3)]),
            "a StatefulSet pod by name"
        );
        assert_eq!(resolve(&r, "db-1.db.data.svc.cluster.local", "data"), None);
        assert_eq!(
            resolve(&r, "db-0.db", "data"),
            Some(vec![Ipv4Addr::new(127, 64, 0, 3)]),
            "pod.subdomain from the same namespace"
        );
        assert_eq!(resolve(&r, "db-0.db", "default"), None);
        assert_eq!(
            resolve(&r, "w.web.default.svc.cluster.local", "default"),
            None
        );
    }

    #[test]
    fn answers_a_records_nodata_and_nxdomain() {
        let r = recs();
        let lookup = |q: &str| resolve(&r, q, "default");
        let a = answer(&query("web.default.svc.cluster.local", 1), lookup).unwrap();
        assert_eq!(&a[..2], &[0xab, 0xcd], "id echoed");
        assert_eq!(a[2] & 0x80, 0x80, "a response");
        assert_eq!(a[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &[127, 96, 0, 10]);
        let aaaa = answer(&query("web", 28), lookup).unwrap();
        assert_eq!(
            (aaaa[3] & 0x0f, aaaa[7]),
            (0, 0),
            "known name, no AAAA: NODATA"
        );
        let nx = answer(&query("nope.default.svc.cluster.local", 1), lookup).unwrap();
        assert_eq!(nx[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(u16::from_be_bytes([nx[4], nx[5]]), 1, "question echoed");
        assert!(answer(&[1, 2, 3], lookup).is_none(), "too short");
        let mut resp = query("web", 1);
        resp[2] |= 0x80;
        assert!(
            answer(&resp, lookup).is_none(),
            "responses are not answered"
        );
        let many: Vec<Ipv4Addr> = (0..100).map(|i| Ipv4Addr::new(127, 64, 1, i)).collect();
        let big = answer(&query("db.data", 1), |_| Some(many.clone())).unwrap();
        assert!(big.len() <= 512, "{} bytes", big.len());
        assert!(u16::from_be_bytes([big[6], big[7]]) >= 25, "as many as fit");
        let mut truncated = query("web", 1);
        truncated.truncate(15);
        let _ = answer(&truncated, lookup);
    }

    #[test]
    fn resolv_conf_follows_dns_policy_and_config() {
        let pod = json!({"spec": {}});
        assert_eq!(
            resolv_conf_for(&pod, "ns1").unwrap(),
            "nameserver 127.0.0.53\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        let none = json!({"spec": {"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["127.0.0.9"], "searches": ["a.local"], "options": [{"name": "ndots", "value": "2"}]}}});
        assert_eq!(
            resolv_conf_for(&none, "x").unwrap(),
            "nameserver 127.0.0.9\nsearch a.local\noptions ndots:2\n"
        );
        let extra = json!({"spec": {"dnsConfig": {"options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}}});
        assert!(
            resolv_conf_for(&extra, "x")
                .unwrap()
                .ends_with("options ndots:1 edns0\n")
        );
        assert!(resolv_conf_for(&json!({"spec": {"dnsPolicy": "Default"}}), "x").is_none());
    }
}
