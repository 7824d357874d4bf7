//! How pods find Services: /etc/hosts entries (`web`, `web.ns`, `web.ns.svc`,
//! `web.ns.svc.cluster.local` → ClusterIP) and the kubelet's service-link environment
//! variables (`WEB_SERVICE_HOST`, `WEB_SERVICE_PORT`, `WEB_PORT_80_TCP`…).

use std::borrow::Borrow;
use std::net::Ipv4Addr;

use serde_json::Value;

use crate::service_alloc::cluster_ip;

/// The cluster's DNS domain, as in Kubernetes' default.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// /etc/hosts lines for a pod in `pod_ns`: every Service with a ClusterIP, by its short
/// name only when it is in the pod's namespace. Sorted, so equal inputs give equal files.
pub fn hosts_entries<S: Borrow<Value>>(
    services: &[S],
    pod_ns: &str,
) -> Vec<(Ipv4Addr, Vec<String>)> {
    let mut out: Vec<(Ipv4Addr, Vec<String>)> = services
        .iter()
        .map(Borrow::borrow)
        .filter_map(|s| {
            let ip = cluster_ip(s)?;
            let name = s.pointer("/metadata/name").and_then(Value::as_str)?;
            let ns = s.pointer("/metadata/namespace").and_then(Value::as_str)?;
            let mut names = Vec::with_capacity(4);
            if ns == pod_ns {
                names.push(name.to_string());
            }
            names.push(format!("{name}.{ns}"));
            names.push(format!("{name}.{ns}.svc"));
            names.push(format!("{name}.{ns}.svc.{CLUSTER_DOMAIN}"));
            Some((ip, names))
        })
        .collect();
    out.sort();
    out
}

/// The service-link variables for the Services of the pod's namespace, as the kubelet
/// sets them (`enableServiceLinks: false` turns them off).
pub fn env_vars<S: Borrow<Value>>(services: &[S], pod: &Value) -> Vec<(String, String)> {
    if pod
        .pointer("/spec/enableServiceLinks")
        .and_then(Value::as_bool)
        == Some(false)
    {
        return Vec::new();
    }
    let pod_ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut svcs: Vec<&Value> = services
        .iter()
        .map(Borrow::borrow)
        .filter(|s| s.pointer("/metadata/namespace").and_then(Value::as_str) == Some(pod_ns))
        .filter(|s| cluster_ip(s).is_some())
        .collect();
    svcs.sort_by_key(|s| s.pointer("/metadata/name").and_then(Value::as_str));
    let mut env = Vec::new();
    for s in svcs {
        let (Some(ip), Some(name)) = (
            cluster_ip(s),
            s.pointer("/metadata/name").and_then(Value::as_str),
        ) else {
            continue;
        };
        let prefix = name.to_uppercase().replace('-', "_");
        let ports: Vec<&Value> = s
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        let Some(first) = ports.first() else {
            continue;
        };
        env.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        env.push((format!("{prefix}_SERVICE_PORT"), first["port"].to_string()));
        for p in &ports {
            if let Some(pn) = p["name"].as_str().filter(|n| !n.is_empty()) {
                env.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p["port"].to_string(),
                ));
            }
        }
        let proto = |p: &Value| p["protocol"].as_str().unwrap_or("TCP").to_string();
        env.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first["port"]),
        ));
        for p in &ports {
            let pr = proto(p);
            let base = format!("{prefix}_PORT_{}_{pr}", p["port"]);
            env.push((
                base.clone(),
                format!("{}://{ip}:{}", pr.to_lowercase(), p["port"]),
            ));
            env.push((format!("{base}_PROTO"), pr.to_lowercase()));
            env.push((format!("{base}_PORT"), p["port"].to_string()));
            env.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ip: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": ns},
               "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    }

    #[test]
    fn hosts_short_name_only_in_own_namespace() {
        let s = vec![
            svc("a", "web", "127.96.0.1"),
            svc("b", "db", "127.96.0.2"),
            svc("a", "headless", "None"),
        ];
        let h = hosts_entries(&s, "a");
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].0, Ipv4Addr::new(127, 96, 0, 1));
        assert_eq!(
            h[0].1,
            ["web", "web.a", "web.a.svc", "web.a.svc.cluster.local"]
        );
        assert_eq!(h[1].1, ["db.b", "db.b.svc", "db.b.svc.cluster.local"]);
    }

    #[test]
    fn env_vars_like_the_kubelet() {
        let s = vec![
            svc("a", "my-web", "127.96.0.1"),
            svc("b", "db", "127.96.0.2"),
        ];
        let pod = json!({"metadata": {"namespace": "a"}, "spec": {}});
        let env: std::collections::HashMap<_, _> = env_vars(&s, &pod).into_iter().collect();
        assert_eq!(env["MY_WEB_SERVICE_HOST"], "127.96.0.1");
        assert_eq!(env["MY_WEB_SERVICE_PORT"], "80");
        assert_eq!(env["MY_WEB_SERVICE_PORT_HTTP"], "80");
        assert_eq!(env["MY_WEB_PORT"], "tcp://127.96.0.1:80");
        assert_eq!(env["MY_WEB_PORT_80_TCP_ADDR"], "127.96.0.1");
        assert!(!env.contains_key("DB_SERVICE_HOST"));
        let off = json!({"metadata": {"namespace": "a"}, "spec": {"enableServiceLinks": false}});
        assert!(env_vars(&s, &off).is_empty());
    }
}
