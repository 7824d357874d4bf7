//! The downward API: pod fields (`fieldRef`) and container resources (`resourceFieldRef`)
//! as environment variables and as files of `downwardAPI` volumes, with the values and
//! formats the kubelet gives them (label/annotation maps as sorted `key="value"` lines,
//! resources rounded up to a whole number of `divisor`s, unset limits = node allocatable).

use std::path::Path;

use serde_json::Value;

/// A `fieldRef` value for an environment variable.
pub(super) fn env_field(pod: &Value, path: &str, pod_ip: &str) -> Result<String, String> {
    if let Some(v) = meta_field(pod, path, false)? {
        return Ok(v);
    }
    Ok(match path {
        "spec.nodeName" => pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or(super::NODE_NAME)
            .to_string(),
        "spec.serviceAccountName" => pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => "127.0.0.1".to_string(),
        other => {
            return Err(format!(
                "fieldRef {other:?} is not supported: use metadata.name, metadata.namespace, \
                 metadata.uid, metadata.labels['KEY'], metadata.annotations['KEY'], \
                 spec.nodeName, spec.serviceAccountName, status.podIP(s) or status.hostIP(s)"
            ));
        }
    })
}

/// metadata.* fields; whole label/annotation maps only where `maps` (volumes) allows them.
fn meta_field(pod: &Value, path: &str, maps: bool) -> Result<Option<String>, String> {
    let meta = &pod["metadata"];
    let s = |k: &str| meta[k].as_str().unwrap_or("").to_string();
    Ok(Some(match path {
        "metadata.name" => s("name"),
        "metadata.namespace" => s("namespace"),
        "metadata.uid" => s("uid"),
        "metadata.labels" | "metadata.annotations" if maps => {
            format_map(&meta[path.trim_start_matches("metadata.")])
        }
        _ => {
            for map in ["labels", "annotations"] {
                if let Some(key) = path
                    .strip_prefix("metadata.")
                    .and_then(|p| p.strip_prefix(map))
                    .and_then(|p| p.strip_prefix("['"))
                    .and_then(|p| p.strip_suffix("']"))
                {
                    return Ok(Some(meta[map][key].as_str().unwrap_or("").to_string()));
                }
            }
            return Ok(None);
        }
    }))
}

/// A label or annotation map as the kubelet writes it: `key="value"` lines sorted by key,
/// values quoted as Go's %q does, no newline after the last.
fn format_map(map: &Value) -> String {
    let mut entries: Vec<(&String, &str)> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .collect();
    entries.sort();
    entries
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `resourceFieldRef` value: `resource` of container `container` in units of `divisor`,
/// rounded up. Unset limits are the node's allocatable; unset requests follow the limits
/// set in the spec (API defaulting), else 0.
pub(super) fn resource(pod: &Value, container: &str, r: &Value) -> Result<String, String> {
    let resource = r["resource"].as_str().unwrap_or("");
    let c = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .ok_or_else(|| format!("resourceFieldRef: no container {container:?} in the pod"))?;
    let (kind, name) = resource
        .split_once('.')
        .filter(|(k, n)| {
            matches!(*k, "limits" | "requests")
                && matches!(*n, "cpu" | "memory" | "ephemeral-storage")
        })
        .ok_or_else(|| {
            format!(
                "resourceFieldRef: resource {resource:?} is not supported: use limits.cpu, \
                 limits.memory, limits.ephemeral-storage or requests.* of the same"
            )
        })?;
    let res = &c["resources"];
    let quantity = |v: &Value| -> Result<Option<i128>, String> {
        match v
            .as_str()
            .map(String::from)
            .or_else(|| v.as_i64().map(|n| n.to_string()))
        {
            Some(q) => parse_quantity(&q)
                .map(Some)
                .ok_or_else(|| format!("resources of {container:?}: {q:?} is not a quantity")),
            None => Ok(None),
        }
    };
    let limit = quantity(&res["limits"][name])?;
    let value = match kind {
        "limits" => match limit {
            Some(l) => l,
            None => {
                parse_quantity(super::node::capacity()[name].as_str().unwrap_or("0")).unwrap_or(0)
            }
        },
        _ => quantity(&res["requests"][name])?.or(limit).unwrap_or(0),
    };
    let divisor_text = match &r["divisor"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "1".to_string(),
    };
    let divisor = parse_quantity(&divisor_text)
        .filter(|d| *d > 0)
        .ok_or_else(|| {
            format!("resourceFieldRef: divisor {divisor_text:?} is not a positive quantity")
        })?;
    let allowed: &[&str] = if name == "cpu" {
        &["1m", "1"]
    } else {
        &[
            "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
        ]
    };
    if !allowed.iter().any(|a| parse_quantity(a) == Some(divisor)) {
        return Err(format!(
            "resourceFieldRef: divisor {divisor_text:?} for {name} must be one of {}",
            allowed.join(", ")
        ));
    }
    Ok(((value + divisor - 1).div_euclid(divisor)).to_string())
}

/// A Kubernetes quantity ("250m", "1.5Gi", "2", "1e3", "64Mi") in billionths.
pub(super) fn parse_quantity(s: &str) -> Option<i128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let (neg, num) = match num.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
    {
        return None;
    }
    let mut nanos: i128 = int
        .parse::<i128>()
        .unwrap_or(0)
        .checked_mul(1_000_000_000)?;
    if !frac.is_empty() {
        nanos += frac.parse::<i128>().ok()? * 10i128.pow(9 - frac.len() as u32);
    }
    let bin = |e: u32| Some(1i128 << (10 * e));
    let dec = |e: u32| Some(10i128.pow(e));
    let (mul, div): (Option<i128>, i128) = match suffix {
        "" => (Some(1), 1),
        "n" => (Some(1), 1_000_000_000),
        "u" => (Some(1), 1_000_000),
        "m" => (Some(1), 1_000),
        "k" => (dec(3), 1),
        "M" => (dec(6), 1),
        "G" => (dec(9), 1),
        "T" => (dec(12), 1),
        "P" => (dec(15), 1),
        "E" => (dec(18), 1),
        "Ki" => (bin(1), 1),
        "Mi" => (bin(2), 1),
        "Gi" => (bin(3), 1),
        "Ti" => (bin(4), 1),
        "Pi" => (bin(5), 1),
        "Ei" => (bin(6), 1),
        e if e.starts_with(['e', 'E']) => {
            let exp: u32 = e[1..].parse().ok().filter(|x| *x <= 18)?;
            (dec(exp), 1)
        }
        _ => return None,
    };
    let v = nanos.checked_mul(mul?)? / div;
    Some(if neg { -v } else { v })
}

/// Writes the files of a `downwardAPI` volume source into `dir` (each replaced by a
/// rename, so a running container reads either the old or the new content).
pub(super) fn write_volume(pod: &Value, src: &Value, dir: &Path) -> Result<(), String> {
    let volume_mode = src["defaultMode"].as_u64().unwrap_or(0o644) as u32;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for item in src["items"].as_array().into_iter().flatten() {
        let rel = item["path"].as_str().unwrap_or("");
        if rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|s| s == "..") {
            return Err(format!("downwardAPI item path {rel:?} is invalid"));
        }
        let text = if let Some(path) = item.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
            meta_field(pod, path, true)?.ok_or_else(|| {
                format!(
                    "downwardAPI item {rel:?}: fieldRef {path:?} is not supported in volumes: use \
                     metadata.name, metadata.namespace, metadata.uid, metadata.labels, \
                     metadata.annotations or one key of them (metadata.labels['KEY'])"
                )
            })?
        } else if let Some(r) = item.get("resourceFieldRef") {
            let container = r["containerName"].as_str().ok_or_else(|| {
                format!(
                    "downwardAPI item {rel:?}: resourceFieldRef needs containerName in a volume"
                )
            })?;
            resource(pod, container, r)?
        } else {
            return Err(format!(
                "downwardAPI item {rel:?} needs a fieldRef or a resourceFieldRef"
            ));
        };
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mode = item["mode"].as_u64().map_or(volume_mode, |m| m as u32);
        write_replacing(&path, text.as_bytes(), mode)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn write_replacing(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("item")
    ));
    std::fs::write(&tmp, data)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)
}

/// Keeps a running pod's downwardAPI volume files in step with its labels and
/// annotations (checked every second, as cheaply as one read of the pod).
pub(super) struct LiveVolumes {
    volumes: Vec<(String, Value)>,
    seen: Value,
    checked: std::time::Instant,
}

impl LiveVolumes {
    pub(super) fn new(pod: &Value) -> Self {
        let volumes = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| {
                Some((
                    v["name"].as_str()?.to_string(),
                    v.get("downwardAPI")?.clone(),
                ))
            })
            .collect();
        Self {
            volumes,
            seen: live_metadata(pod),
            checked: std::time::Instant::now(),
        }
    }

    pub(super) fn refresh(
        &mut self,
        app: &crate::app::App,
        ns: &str,
        name: &str,
        uid: &str,
        sandbox_dir: &Path,
    ) {
        if self.volumes.is_empty() || self.checked.elapsed() < std::time::Duration::from_secs(1) {
            return;
        }
        self.checked = std::time::Instant::now();
        let Ok(Some(pod)) = app.store.get("/pods", ns, name) else {
            return;
        };
        if crate::objects::meta_str(&pod, "uid") != Some(uid) {
            return;
        }
        let live = live_metadata(&pod);
        if live == self.seen {
            return;
        }
        for (volume, src) in &self.volumes {
            let dir = sandbox_dir.join("volumes").join(volume);
            if let Err(e) = write_volume(&pod, src, &dir) {
                tracing::warn!(pod = %name, volume = %volume, error = %e, "cannot update a downwardAPI volume");
            }
        }
        self.seen = live;
    }
}

fn live_metadata(pod: &Value) -> Value {
    serde_json::json!([pod["metadata"]["labels"], pod["metadata"]["annotations"]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_like_kubernetes() {
        let g = 1_000_000_000i128;
        assert_eq!(parse_quantity("250m"), Some(g / 4));
        assert_eq!(parse_quantity("2"), Some(2 * g));
        assert_eq!(parse_quantity("1.5"), Some(3 * g / 2));
        assert_eq!(parse_quantity("64Mi"), Some(64 * 1024 * 1024 * g));
        assert_eq!(parse_quantity("1k"), Some(1000 * g));
        assert_eq!(parse_quantity("1e3"), Some(1000 * g));
        assert_eq!(parse_quantity("100n"), Some(100));
        for bad in ["", "Mi", "1.2.3", "1Q", "abc", "1e99"] {
            assert_eq!(parse_quantity(bad), None, "{bad:?}");
        }
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"b": "2", "a": "x\"y"}, "annotations": {"note": "line1\nline2"}},
            "spec": {"serviceAccountName": "robot", "containers": [
                {"name": "main", "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"},
                                                "requests": {"cpu": "250m"}}},
                {"name": "bare"},
            ]},
        })
    }

    #[test]
    fn env_fields_cover_metadata_keys_spec_and_status() {
        let p = pod();
        let f = |path| env_field(&p, path, "127.64.0.9").unwrap();
        assert_eq!(f("metadata.name"), "p");
        assert_eq!(f("metadata.labels['a']"), "x\"y");
        assert_eq!(f("metadata.labels['missing']"), "");
        assert_eq!(f("metadata.annotations['note']"), "line1\nline2");
        assert_eq!(f("spec.serviceAccountName"), "robot");
        assert_eq!(f("spec.nodeName"), super::super::NODE_NAME);
        assert_eq!(f("status.podIP"), "127.64.0.9");
        assert_eq!(f("status.hostIP"), "127.0.0.1");
        let err = env_field(&p, "metadata.labels", "").unwrap_err();
        assert!(err.contains("metadata.labels['KEY']"), "{err}");
    }

    #[test]
    fn maps_are_sorted_go_quoted_lines() {
        assert_eq!(
            format_map(&pod()["metadata"]["labels"]),
            "a=\"x\\\"y\"\nb=\"2\""
        );
        assert_eq!(
            format_map(&pod()["metadata"]["annotations"]),
            "note=\"line1\\nline2\""
        );
    }

    #[test]
    fn resources_round_up_in_divisors_with_defaults() {
        let p = pod();
        let r =
            |c: &str, res: &str, d: Value| resource(&p, c, &json!({"resource": res, "divisor": d}));
        assert_eq!(r("main", "limits.cpu", json!("1")).unwrap(), "2");
        assert_eq!(r("main", "limits.cpu", json!("1m")).unwrap(), "1500");
        assert_eq!(r("main", "requests.cpu", json!("1m")).unwrap(), "250");
        assert_eq!(r("main", "limits.memory", json!("1Mi")).unwrap(), "64");
        assert_eq!(
            r("main", "requests.memory", json!("1Mi")).unwrap(),
            "64",
            "requests follow limits"
        );
        assert_eq!(
            r("main", "limits.memory", Value::Null).unwrap(),
            (64 * 1024 * 1024).to_string()
        );
        assert_eq!(r("bare", "requests.cpu", json!("1m")).unwrap(), "0");
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(
            r("bare", "limits.cpu", json!("1")).unwrap(),
            cpus.to_string(),
            "node allocatable"
        );
        assert!(
            r("main", "limits.cpu", json!("1Mi"))
                .unwrap_err()
                .contains("must be one of")
        );
        assert!(
            r("main", "limits.gpu", json!("1"))
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            r("nope", "limits.cpu", json!("1"))
                .unwrap_err()
                .contains("no container")
        );
    }
}
