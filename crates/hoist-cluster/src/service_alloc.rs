//! ClusterIP and nodePort allocation for Services, done in the API server's write path.
//!
//! ClusterIPs come from a loopback range (never 10.x / 172.16–31.x / 192.168.x), so
//! they can be added to each pod network namespace's `lo`. The allocation is the
//! stored objects themselves: what is in use is read from the Services in the store, so
//! deleting a Service releases its IP and nodePorts, and a restart loses nothing.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::status::{ApiError, ApiResult};
use crate::storage::Store;

/// The ClusterIP range: 127.96.0.0/12 (127.96.0.1 – 127.111.255.254).
pub const CLUSTER_IP_BASE: Ipv4Addr = Ipv4Addr::new(127, 96, 0, 0);
pub const CLUSTER_IP_PREFIX: u32 = 12;
/// The nodePort range Kubernetes uses by default.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Serialises allocations, so two concurrent creates never pick the same IP or port
/// between reading what is in use and storing their object.
static ALLOC: Mutex<()> = Mutex::new(());

pub fn lock() -> MutexGuard<'static, ()> {
    ALLOC.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn range_string() -> String {
    format!("{CLUSTER_IP_BASE}/{CLUSTER_IP_PREFIX}")
}

pub fn in_range(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - CLUSTER_IP_PREFIX);
    u32::from(ip) & mask == u32::from(CLUSTER_IP_BASE)
}

/// ClusterIPs and nodePorts held by stored Services, except the one named `skip`
/// (`(namespace, name)`: the Service being updated).
#[derive(Default, Debug)]
pub struct InUse {
    ips: HashSet<Ipv4Addr>,
    node_ports: HashSet<u16>,
}

impl InUse {
    pub fn read(store: &Store, skip: Option<(&str, &str)>) -> ApiResult<Self> {
        let (items, _) = store.list("/services", None)?;
        let mut used = InUse::default();
        for s in &items {
            let ns = s.pointer("/metadata/namespace").and_then(Value::as_str);
            let name = s.pointer("/metadata/name").and_then(Value::as_str);
            if let (Some((sns, sname)), Some(ns), Some(name)) = (skip, ns, name)
                && sns == ns
                && sname == name
            {
                continue;
            }
            if let Some(ip) = cluster_ip(s) {
                used.ips.insert(ip);
            }
            for p in ports(s) {
                if let Some(np) = p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()) {
                    used.node_ports.insert(np);
                }
            }
        }
        Ok(used)
    }

    fn next_ip(&self) -> Option<Ipv4Addr> {
        let base = u32::from(CLUSTER_IP_BASE);
        let size = 1u32 << (32 - CLUSTER_IP_PREFIX);
        // Skip the network and broadcast addresses of the range.
        (1..size - 1)
            .map(|i| Ipv4Addr::from(base + i))
            .find(|ip| !self.ips.contains(ip))
    }

    fn next_node_port(&self) -> Option<u16> {
        NODE_PORTS.clone().find(|p| !self.node_ports.contains(p))
    }
}

/// The Service's allocated IPv4 ClusterIP (`None` for headless or ExternalName).
pub fn cluster_ip(svc: &Value) -> Option<Ipv4Addr> {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn ports(svc: &Value) -> impl Iterator<Item = &Value> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn svc_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

fn invalid(svc: &Value, field: &str, msg: String) -> ApiError {
    let name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    ApiError::invalid("Service", name, vec![(field.to_string(), msg)])
}

/// Fills in defaults and allocations of a Service being created: `type`, ports'
/// `protocol`/`targetPort`, `clusterIP`/`clusterIPs`/`ipFamilies`, and `nodePort`s.
pub fn on_create(used: &InUse, svc: &mut Value) -> ApiResult<()> {
    default_spec(svc)?;
    let ty = svc_type(svc).to_string();
    if ty == "ExternalName" {
        return Ok(());
    }
    let requested = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ip = match requested.as_str() {
        "None" => None,
        "" => Some(used.next_ip().ok_or_else(|| {
            invalid(
                svc,
                "spec.clusterIP",
                format!(
                    "failed to allocate a serviceIP: range {} is full",
                    range_string()
                ),
            )
        })?),
        s => {
            let ip: Ipv4Addr = s.parse().map_err(|_| {
                invalid(
                    svc,
                    "spec.clusterIP",
                    format!("Invalid value: {s:?}: must be a valid IPv4 address or \"None\""),
                )
            })?;
            if !in_range(ip) {
                return Err(invalid(
                    svc,
                    "spec.clusterIP",
                    format!(
                        "Invalid value: {s:?}: provided IP is not in the valid range. The range of valid IPs is {} (hoist's loopback service range)",
                        range_string()
                    ),
                ));
            }
            if used.ips.contains(&ip) {
                return Err(invalid(
                    svc,
                    "spec.clusterIP",
                    format!("Invalid value: {s:?}: provided IP is already allocated"),
                ));
            }
            Some(ip)
        }
    };
    let spec = &mut svc["spec"];
    match ip {
        Some(ip) => {
            spec["clusterIP"] = json!(ip.to_string());
            spec["clusterIPs"] = json!([ip.to_string()]);
        }
        None => {
            spec["clusterIP"] = json!("None");
            spec["clusterIPs"] = json!(["None"]);
        }
    }
    spec["ipFamilies"] = json!(["IPv4"]);
    spec["ipFamilyPolicy"] = json!("SingleStack");
    allocate_node_ports(used, svc, &HashSet::new())
}

/// Keeps the allocation of an updated Service: `clusterIP` is immutable (an update
/// that omits it keeps the current one); new NodePort ports get a nodePort.
pub fn on_update(used: &InUse, cur: &Value, svc: &mut Value) -> ApiResult<()> {
    default_spec(svc)?;
    let old = cur.pointer("/spec/clusterIP").and_then(Value::as_str);
    let new = svc.pointer("/spec/clusterIP").and_then(Value::as_str);
    match (old, new) {
        (Some(o), None | Some("")) if svc_type(svc) != "ExternalName" => {
            svc["spec"]["clusterIP"] = json!(o);
            svc["spec"]["clusterIPs"] = cur
                .pointer("/spec/clusterIPs")
                .cloned()
                .unwrap_or_else(|| json!([o]));
            for k in ["ipFamilies", "ipFamilyPolicy"] {
                if let Some(v) = cur.pointer(&format!("/spec/{k}")) {
                    svc["spec"][k] = v.clone();
                }
            }
        }
        (Some(o), Some(n)) if o != n && svc_type(svc) != "ExternalName" => {
            return Err(invalid(
                svc,
                "spec.clusterIP",
                format!("Invalid value: {n:?}: field is immutable"),
            ));
        }
        (None, _) if svc_type(svc) != "ExternalName" => {
            // Was ExternalName (or stored before allocation existed): allocate now.
            return on_create(used, svc);
        }
        _ => {}
    }
    // A port keeps its nodePort when the update leaves it out.
    let old_ports: Vec<&Value> = ports(cur).collect();
    if wants_node_ports(svc)
        && let Some(ps) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut)
    {
        for p in ps.iter_mut() {
            if p.get("nodePort").is_none_or(Value::is_null)
                && let Some(o) = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                && let Some(np) = o.get("nodePort")
            {
                p["nodePort"] = np.clone();
            }
        }
    }
    let own: HashSet<u16> = ports(cur)
        .filter_map(|p| p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()))
        .collect();
    allocate_node_ports(used, svc, &own)
}

/// Defaults Kubernetes applies: `type: ClusterIP`, `protocol: TCP`, `targetPort = port`,
/// `sessionAffinity: None`; rejects ports that are not 1–65535.
fn default_spec(svc: &mut Value) -> ApiResult<()> {
    if !svc["spec"].is_object() {
        svc["spec"] = json!({});
    }
    if svc.pointer("/spec/type").is_none_or(Value::is_null) {
        svc["spec"]["type"] = json!("ClusterIP");
    }
    if svc
        .pointer("/spec/sessionAffinity")
        .is_none_or(Value::is_null)
    {
        svc["spec"]["sessionAffinity"] = json!("None");
    }
    let name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(ps) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for (i, p) in ps.iter_mut().enumerate() {
            let port = p["port"].as_u64().unwrap_or(0);
            if !(1..=65535).contains(&port) {
                return Err(ApiError::invalid(
                    "Service",
                    &name,
                    vec![(
                        format!("spec.ports[{i}].port"),
                        format!(
                            "Invalid value: {}: must be between 1 and 65535, inclusive",
                            p["port"]
                        ),
                    )],
                ));
            }
            if p.get("protocol").is_none_or(Value::is_null) {
                p["protocol"] = json!("TCP");
            }
            if p.get("targetPort").is_none_or(Value::is_null) {
                p["targetPort"] = json!(port);
            }
        }
    }
    Ok(())
}

/// Gives each port of a NodePort/LoadBalancer Service a nodePort (checking requested
/// ones: in range, not held by another Service); other types must not set any.
fn allocate_node_ports(used: &InUse, svc: &mut Value, own: &HashSet<u16>) -> ApiResult<()> {
    let wants = wants_node_ports(svc);
    let snapshot = svc.clone();
    let Some(ps) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    let mut taken: HashSet<u16> = HashSet::new();
    for (i, p) in ps.iter_mut().enumerate() {
        let field = format!("spec.ports[{i}].nodePort");
        match p.get("nodePort").filter(|v| !v.is_null()) {
            Some(v) if !wants => {
                if v.as_u64() != Some(0) {
                    return Err(invalid(
                        &snapshot,
                        &field,
                        format!(
                            "Forbidden: may not be used when `type` is '{}'",
                            svc_type(&snapshot)
                        ),
                    ));
                }
                p.as_object_mut().map(|o| o.remove("nodePort"));
            }
            Some(v) => {
                let np = v.as_u64().unwrap_or(0);
                let Some(np) = u16::try_from(np).ok().filter(|n| NODE_PORTS.contains(n)) else {
                    return Err(invalid(
                        &snapshot,
                        &field,
                        format!(
                            "Invalid value: {v}: provided port is not in the valid range. The range of valid ports is {}-{}",
                            NODE_PORTS.start(),
                            NODE_PORTS.end()
                        ),
                    ));
                };
                if (used.node_ports.contains(&np) && !own.contains(&np)) || !taken.insert(np) {
                    return Err(invalid(
                        &snapshot,
                        &field,
                        format!("Invalid value: {np}: provided port is already allocated"),
                    ));
                }
            }
            None if wants => {}
            None => {}
        }
    }
    if wants {
        let mut all = InUse {
            ips: HashSet::new(),
            node_ports: used.node_ports.union(&taken).copied().collect(),
        };
        for p in ps.iter_mut() {
            if p.get("nodePort").is_none_or(Value::is_null) {
                let np = all.next_node_port().ok_or_else(|| {
                    invalid(
                        &snapshot,
                        "spec.ports.nodePort",
                        "failed to allocate a nodePort: the range 30000-32767 is full".into(),
                    )
                })?;
                all.node_ports.insert(np);
                p["nodePort"] = json!(np);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn allocates_first_free_loopback_ip_and_defaults() {
        let mut used = InUse::default();
        used.ips.insert(Ipv4Addr::new(127, 96, 0, 1));
        let mut s = svc(json!({"ports": [{"port": 80}]}));
        on_create(&used, &mut s).unwrap();
        assert_eq!(s["spec"]["clusterIP"], "127.96.0.2");
        assert_eq!(s["spec"]["clusterIPs"], json!(["127.96.0.2"]));
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert!(s["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn rejects_requested_ip_outside_range_or_taken() {
        let mut used = InUse::default();
        let e = on_create(&used, &mut svc(json!({"clusterIP": "10.0.0.5"}))).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("127.96.0.0/12"), "{}", e.message);
        used.ips.insert(Ipv4Addr::new(127, 96, 0, 9));
        let e = on_create(&used, &mut svc(json!({"clusterIP": "127.96.0.9"}))).unwrap_err();
        assert!(e.message.contains("already allocated"), "{}", e.message);
        let mut ok = svc(json!({"clusterIP": "127.96.1.1"}));
        on_create(&used, &mut ok).unwrap();
        assert_eq!(ok["spec"]["clusterIP"], "127.96.1.1");
    }

    #[test]
    fn headless_and_external_name_get_no_ip() {
        let used = InUse::default();
        let mut h = svc(json!({"clusterIP": "None"}));
        on_create(&used, &mut h).unwrap();
        assert_eq!(h["spec"]["clusterIP"], "None");
        let mut x = svc(json!({"type": "ExternalName", "externalName": "example.test"}));
        on_create(&used, &mut x).unwrap();
        assert!(x["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn node_ports_allocated_validated_and_kept_on_update() {
        let mut used = InUse::default();
        used.node_ports.insert(30000);
        let mut s = svc(json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}));
        on_create(&used, &mut s).unwrap();
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(s["spec"]["ports"][1]["nodePort"], 30002);
        let e = on_create(
            &used,
            &mut svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]})),
        )
        .unwrap_err();
        assert!(e.message.contains("30000-32767"), "{}", e.message);
        let e = on_create(
            &used,
            &mut svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30000}]})),
        )
        .unwrap_err();
        assert!(e.message.contains("already allocated"), "{}", e.message);
        // An update that omits clusterIP and nodePort keeps both.
        let mut upd = svc(json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}));
        on_update(&used, &s, &mut upd).unwrap();
        assert_eq!(upd["spec"]["clusterIP"], s["spec"]["clusterIP"]);
        assert_eq!(upd["spec"]["ports"][1]["nodePort"], 30002);
        let mut moved = svc(json!({"clusterIP": "127.96.5.5"}));
        let e = on_update(&used, &s, &mut moved).unwrap_err();
        assert!(e.message.contains("immutable"), "{}", e.message);
    }
}
