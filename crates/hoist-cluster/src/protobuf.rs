//! A small decoder for Kubernetes protobuf request bodies.
//!
//! client-go's typed clients (e.g. `kubectl create namespace|configmap|secret`) send
//! `application/vnd.kubernetes.protobuf` and do not fall back to JSON. The server answers
//! in JSON; only these request bodies are decoded: Namespace, ConfigMap, Secret,
//! ServiceAccount, Service, and the parts of Deployment, Job, CronJob and the rbac/v1
//! kinds (Role, ClusterRole, RoleBinding, ClusterRoleBinding) that `kubectl create ...`
//! sends (field numbers from k8s.io/api generated.proto). Anything else is a 415.
//!
//! ClusterRole's `aggregationRule` (field 3) is not decoded: `kubectl create clusterrole
//! --aggregation-rule` bodies are refused rather than stored without it.

use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\x00";
const RBAC: &str = "rbac.authorization.k8s.io/v1";
const UNDERSTOOD: &str = "Namespace, ConfigMap, Secret, ServiceAccount, Service, Deployment, Job, CronJob, Role, ClusterRole, RoleBinding and ClusterRoleBinding";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(m.into()))
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return err("truncated varint");
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        err("varint too long")
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (num, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(self.varint()?),
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| DecodeError("length overflow".into()))?;
                let end = self.pos.checked_add(len).filter(|e| *e <= self.buf.len());
                let Some(end) = end else {
                    return err("truncated length-delimited field");
                };
                let b = &self.buf[self.pos..end];
                self.pos = end;
                Field::Bytes(b)
            }
            1 => {
                self.pos += 8;
                Field::Varint(0)
            }
            5 => {
                self.pos += 4;
                Field::Varint(0)
            }
            w => return err(format!("unsupported wire type {w}")),
        };
        if self.pos > self.buf.len() {
            return err("truncated fixed-width field");
        }
        Ok(Some((num, field)))
    }
}

fn string(b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError("invalid UTF-8 in a string field".into()))
}

/// A `map<string, string|bytes>` entry (key = 1, value = 2).
fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), DecodeError> {
    let mut r = Reader::new(b);
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => k = string(b)?,
            (2, Field::Bytes(b)) if bytes_value => {
                v = Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (2, Field::Bytes(b)) => v = Value::String(string(b)?),
            _ => {}
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    let mut owner_refs = Vec::new();
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b @ [_, ..])) => {
                m.insert("name".into(), Value::String(string(b)?));
            }
            (2, Field::Bytes(b @ [_, ..])) => {
                m.insert("generateName".into(), Value::String(string(b)?));
            }
            (3, Field::Bytes(b @ [_, ..])) => {
                m.insert("namespace".into(), Value::String(string(b)?));
            }
            (6, Field::Bytes(b @ [_, ..])) => {
                m.insert("resourceVersion".into(), Value::String(string(b)?));
            }
            (11, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                labels.insert(k, v);
            }
            (12, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                annotations.insert(k, v);
            }
            (13, Field::Bytes(b)) => owner_refs.push(owner_reference(b)?),
            (14, Field::Bytes(b)) => finalizers.push(Value::String(string(b)?)),
            _ => {}
        }
    }
    if !owner_refs.is_empty() {
        m.insert("ownerReferences".into(), Value::Array(owner_refs));
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

/// OwnerReference: kind 1, name 3, uid 4, apiVersion 5, controller 6,
/// blockOwnerDeletion 7 (`kubectl create job --from=cronjob/x` sets one).
fn owner_reference(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut m = Map::new();
    while let Some((n, f)) = r.next()? {
        let key = match n {
            1 => "kind",
            3 => "name",
            4 => "uid",
            5 => "apiVersion",
            6 => "controller",
            7 => "blockOwnerDeletion",
            _ => continue,
        };
        match f {
            Field::Bytes(b) => {
                m.insert(key.into(), Value::String(string(b)?));
            }
            Field::Varint(v) => {
                m.insert(key.into(), Value::Bool(v != 0));
            }
        }
    }
    Ok(Value::Object(m))
}

fn strings(b: &[u8], into: &mut Vec<Value>) -> Result<(), DecodeError> {
    into.push(Value::String(string(b)?));
    Ok(())
}

fn container(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut c = Map::new();
    let (mut command, mut args, mut ports, mut env) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => {
                c.insert("name".into(), Value::String(string(b)?));
            }
            (2, Field::Bytes(b)) => {
                c.insert("image".into(), Value::String(string(b)?));
            }
            (3, Field::Bytes(b)) => strings(b, &mut command)?,
            (4, Field::Bytes(b)) => strings(b, &mut args)?,
            (5, Field::Bytes(b @ [_, ..])) => {
                c.insert("workingDir".into(), Value::String(string(b)?));
            }
            (6, Field::Bytes(b)) => {
                let mut p = Reader::new(b);
                let mut port = Map::new();
                while let Some((n, f)) = p.next()? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => {
                            port.insert("name".into(), Value::String(string(b)?));
                        }
                        (3, Field::Varint(v)) => {
                            port.insert("containerPort".into(), json!(v));
                        }
                        (4, Field::Bytes(b)) => {
                            port.insert("protocol".into(), Value::String(string(b)?));
                        }
                        _ => {}
                    }
                }
                ports.push(Value::Object(port));
            }
            (7, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                env.push(json!({"name": k, "value": v}));
            }
            (8, Field::Bytes(_)) => {
                c.insert("resources".into(), json!({}));
            }
            (14, Field::Bytes(b @ [_, ..])) => {
                c.insert("imagePullPolicy".into(), Value::String(string(b)?));
            }
            _ => {}
        }
    }
    for (k, v) in [
        ("command", command),
        ("args", args),
        ("ports", ports),
        ("env", env),
    ] {
        if !v.is_empty() {
            c.insert(k.into(), Value::Array(v));
        }
    }
    Ok(Value::Object(c))
}

/// PodTemplateSpec: metadata = 1, spec = 2 (containers = 2, restartPolicy = 3).
fn pod_template(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut t = json!({});
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => t["metadata"] = object_meta(b)?,
            (2, Field::Bytes(b)) => {
                let mut s = Reader::new(b);
                let mut spec = json!({"containers": []});
                while let Some((n, f)) = s.next()? {
                    match (n, f) {
                        (2, Field::Bytes(b)) => {
                            if let Some(a) = spec["containers"].as_array_mut() {
                                a.push(container(b)?);
                            }
                        }
                        (3, Field::Bytes(b)) => spec["restartPolicy"] = Value::String(string(b)?),
                        _ => {}
                    }
                }
                t["spec"] = spec;
            }
            _ => {}
        }
    }
    Ok(t)
}

/// LabelSelector: matchLabels = 1.
fn label_selector(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut labels = Map::new();
    while let Some((n, f)) = r.next()? {
        if let (1, Field::Bytes(b)) = (n, f) {
            let (k, v) = map_entry(b, false)?;
            labels.insert(k, v);
        }
    }
    Ok(json!({"matchLabels": labels}))
}

/// DeploymentSpec (replicas 1, selector 2, template 3) or JobSpec (template 6).
fn workload_spec(kind: &str, b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut spec = json!({});
    while let Some((n, f)) = r.next()? {
        match (kind, n, f) {
            ("Deployment", 1, Field::Varint(v)) => spec["replicas"] = json!(v as i32),
            ("Deployment", 2, Field::Bytes(b)) => spec["selector"] = label_selector(b)?,
            ("Deployment", 3, Field::Bytes(b)) | ("Job", 6, Field::Bytes(b)) => {
                spec["template"] = pod_template(b)?
            }
            _ => {}
        }
    }
    Ok(spec)
}

/// Reads every string of a `repeated string` field `num` into `out[name]`.
fn push_string(obj: &mut Value, name: &str, b: &[u8]) -> Result<(), DecodeError> {
    if !obj.get(name).is_some_and(Value::is_array) {
        obj[name] = json!([]);
    }
    if let Some(a) = obj[name].as_array_mut() {
        a.push(Value::String(string(b)?));
    }
    Ok(())
}

/// IntOrString: type = 1 (0 int, 1 string), intVal = 2, strVal = 3.
fn int_or_string(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let (mut is_str, mut int, mut s) = (false, 0i32, String::new());
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Varint(v)) => is_str = v == 1,
            (2, Field::Varint(v)) => int = v as i32,
            (3, Field::Bytes(b)) => s = string(b)?,
            _ => {}
        }
    }
    Ok(if is_str { Value::String(s) } else { json!(int) })
}

/// ServicePort: name 1, protocol 2, port 3, targetPort 4, nodePort 5, appProtocol 6.
fn service_port(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut p = Map::new();
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b @ [_, ..])) => {
                p.insert("name".into(), Value::String(string(b)?));
            }
            (2, Field::Bytes(b)) => {
                p.insert("protocol".into(), Value::String(string(b)?));
            }
            (3, Field::Varint(v)) => {
                p.insert("port".into(), json!(v as i32));
            }
            (4, Field::Bytes(b)) => {
                p.insert("targetPort".into(), int_or_string(b)?);
            }
            // 0 means unset (JSON omitempty): the server allocates nothing for it.
            (5, Field::Varint(v)) if v != 0 => {
                p.insert("nodePort".into(), json!(v as i32));
            }
            (6, Field::Bytes(b @ [_, ..])) => {
                p.insert("appProtocol".into(), Value::String(string(b)?));
            }
            _ => {}
        }
    }
    Ok(Value::Object(p))
}

/// ServiceSpec: ports 1, selector 2, clusterIP 3, type 4, externalIPs 5,
/// sessionAffinity 7, externalName 10, clusterIPs 18.
fn service_spec(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut spec = json!({});
    let mut ports = Vec::new();
    let mut selector = Map::new();
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => ports.push(service_port(b)?),
            (2, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                selector.insert(k, v);
            }
            (3, Field::Bytes(b @ [_, ..])) => spec["clusterIP"] = Value::String(string(b)?),
            (4, Field::Bytes(b)) => spec["type"] = Value::String(string(b)?),
            (5, Field::Bytes(b)) => push_string(&mut spec, "externalIPs", b)?,
            (7, Field::Bytes(b @ [_, ..])) => spec["sessionAffinity"] = Value::String(string(b)?),
            (10, Field::Bytes(b @ [_, ..])) => spec["externalName"] = Value::String(string(b)?),
            (18, Field::Bytes(b)) => push_string(&mut spec, "clusterIPs", b)?,
            _ => {}
        }
    }
    if !ports.is_empty() {
        spec["ports"] = Value::Array(ports);
    }
    if !selector.is_empty() {
        spec["selector"] = Value::Object(selector);
    }
    Ok(spec)
}

/// CronJobSpec: schedule 1, startingDeadlineSeconds 2, concurrencyPolicy 3, suspend 4,
/// jobTemplate 5 (JobTemplateSpec: metadata 1, spec 2), successfulJobsHistoryLimit 6,
/// failedJobsHistoryLimit 7, timeZone 8.
fn cronjob_spec(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut spec = json!({});
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => spec["schedule"] = Value::String(string(b)?),
            (2, Field::Varint(v)) => spec["startingDeadlineSeconds"] = json!(v as i64),
            (3, Field::Bytes(b @ [_, ..])) => spec["concurrencyPolicy"] = Value::String(string(b)?),
            (4, Field::Varint(v)) => spec["suspend"] = Value::Bool(v != 0),
            (5, Field::Bytes(b)) => {
                let mut t = Reader::new(b);
                let mut tmpl = json!({});
                while let Some((n, f)) = t.next()? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => tmpl["metadata"] = object_meta(b)?,
                        (2, Field::Bytes(b)) => tmpl["spec"] = workload_spec("Job", b)?,
                        _ => {}
                    }
                }
                spec["jobTemplate"] = tmpl;
            }
            (6, Field::Varint(v)) => spec["successfulJobsHistoryLimit"] = json!(v as i32),
            (7, Field::Varint(v)) => spec["failedJobsHistoryLimit"] = json!(v as i32),
            (8, Field::Bytes(b)) => spec["timeZone"] = Value::String(string(b)?),
            _ => {}
        }
    }
    Ok(spec)
}

/// PolicyRule: verbs 1, apiGroups 2, resources 3, resourceNames 4, nonResourceURLs 5.
fn policy_rule(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut rule = json!({"verbs": []});
    while let Some((n, f)) = r.next()? {
        let name = match n {
            1 => "verbs",
            2 => "apiGroups",
            3 => "resources",
            4 => "resourceNames",
            5 => "nonResourceURLs",
            _ => continue,
        };
        if let Field::Bytes(b) = f {
            push_string(&mut rule, name, b)?;
        }
    }
    Ok(rule)
}

/// Subject: kind 1, apiGroup 2, name 3, namespace 4; RoleRef: apiGroup 1, kind 2, name 3.
fn string_fields(b: &[u8], names: &[(u64, &str)]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(b);
    let mut m = Map::new();
    while let Some((n, f)) = r.next()? {
        // gogo-protobuf writes unset strings as empty; JSON (omitempty) leaves them out.
        if let (Some((_, name)), Field::Bytes(b @ [_, ..])) =
            (names.iter().find(|(k, _)| *k == n), f)
        {
            m.insert((*name).into(), Value::String(string(b)?));
        }
    }
    Ok(Value::Object(m))
}

const SUBJECT: &[(u64, &str)] = &[(1, "kind"), (2, "apiGroup"), (3, "name"), (4, "namespace")];
const ROLE_REF: &[(u64, &str)] = &[(1, "apiGroup"), (2, "kind"), (3, "name")];

fn push_value(obj: &mut Value, name: &str, v: Value) {
    if !obj.get(name).is_some_and(Value::is_array) {
        obj[name] = json!([]);
    }
    if let Some(a) = obj[name].as_array_mut() {
        a.push(v);
    }
}

/// Decodes an enveloped protobuf body into the JSON object it stands for.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let Some(rest) = body.strip_prefix(MAGIC) else {
        return err("missing the k8s protobuf envelope prefix");
    };
    let mut r = Reader::new(rest);
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                let mut t = Reader::new(tm);
                while let Some((n, f)) = t.next()? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => api_version = string(b)?,
                        (2, Field::Bytes(b)) => kind = string(b)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    let mut r = Reader::new(raw);
    while let Some((n, f)) = r.next()? {
        match (api_version.as_str(), kind.as_str(), n, f) {
            ("v1", _, 1, Field::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            ("v1", "Namespace", 2, Field::Bytes(b)) => {
                let mut s = Reader::new(b);
                let mut fins = Vec::new();
                while let Some((n, f)) = s.next()? {
                    if let (1, Field::Bytes(b)) = (n, f) {
                        fins.push(Value::String(string(b)?));
                    }
                }
                obj["spec"] = json!({"finalizers": fins});
            }
            ("v1", "ConfigMap", 2 | 3, Field::Bytes(b)) => {
                let field = if n == 2 { "data" } else { "binaryData" };
                let (k, v) = map_entry(b, n == 3)?;
                if !obj.get(field).is_some_and(Value::is_object) {
                    obj[field] = json!({});
                }
                obj[field][k] = v;
            }
            ("v1", "Secret", 2 | 4, Field::Bytes(b)) => {
                let field = if n == 2 { "data" } else { "stringData" };
                let (k, v) = map_entry(b, n == 2)?;
                if !obj.get(field).is_some_and(Value::is_object) {
                    obj[field] = json!({});
                }
                obj[field][k] = v;
            }
            ("v1", "Secret", 3, Field::Bytes(b)) => obj["type"] = Value::String(string(b)?),
            ("v1", "ConfigMap", 4, Field::Varint(v)) | ("v1", "Secret", 5, Field::Varint(v)) => {
                obj["immutable"] = Value::Bool(v != 0)
            }
            ("v1", "Service", 2, Field::Bytes(b)) => obj["spec"] = service_spec(b)?,
            ("v1", "Namespace" | "ConfigMap" | "Secret" | "ServiceAccount" | "Service", _, _) => {}
            ("apps/v1", "Deployment", 1, Field::Bytes(b))
            | ("batch/v1", "Job", 1, Field::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            ("apps/v1", "Deployment", 2, Field::Bytes(b))
            | ("batch/v1", "Job", 2, Field::Bytes(b)) => obj["spec"] = workload_spec(&kind, b)?,
            ("batch/v1", "CronJob", 1, Field::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            ("batch/v1", "CronJob", 2, Field::Bytes(b)) => obj["spec"] = cronjob_spec(b)?,
            ("apps/v1", "Deployment", _, _) | ("batch/v1", "Job" | "CronJob", _, _) => {}
            (
                RBAC,
                "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
                1,
                Field::Bytes(b),
            ) => obj["metadata"] = object_meta(b)?,
            (RBAC, "Role" | "ClusterRole", 2, Field::Bytes(b)) => {
                push_value(&mut obj, "rules", policy_rule(b)?)
            }
            (RBAC, "ClusterRole", 3, Field::Bytes(_)) => {
                return err(
                    "protobuf ClusterRole bodies with an aggregationRule are not understood; send JSON (e.g. kubectl apply -f)",
                );
            }
            (RBAC, "RoleBinding" | "ClusterRoleBinding", 2, Field::Bytes(b)) => {
                push_value(&mut obj, "subjects", string_fields(b, SUBJECT)?)
            }
            (RBAC, "RoleBinding" | "ClusterRoleBinding", 3, Field::Bytes(b)) => {
                obj["roleRef"] = string_fields(b, ROLE_REF)?
            }
            (RBAC, "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding", _, _) => {}
            _ => {
                return err(format!(
                    "protobuf request bodies are only understood for {UNDERSTOOD} (got {api_version} {kind}); send JSON (e.g. kubectl apply -f)"
                ));
            }
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_configmap() {
        let meta = [
            field(1, b"cfg"),
            field(11, &[field(1, b"a"), field(2, b"b")].concat()),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"v")].concat()),
        ]
        .concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"a": "b"}}, "data": {"k": "v"}})
        );
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), field(1, &tm), field(2, raw)].concat()
    }

    #[test]
    fn decodes_a_service_port_with_a_named_target_port() {
        // IntOrString{type: 1 (string), strVal: "web"}; port 3 = 80 (varint).
        let target = [vec![0x08, 0x01], field(3, b"web")].concat();
        let port = [field(2, b"TCP"), vec![0x18, 80], field(4, &target)].concat();
        let spec = [field(1, &port), field(4, b"ClusterIP"), field(3, b"")].concat();
        let raw = [field(1, &field(1, b"s")), field(2, &spec)].concat();
        let v = decode(&envelope("v1", "Service", &raw)).unwrap();
        assert_eq!(
            v["spec"],
            json!({"ports": [{"protocol": "TCP", "port": 80, "targetPort": "web"}], "type": "ClusterIP"})
        );
    }

    #[test]
    fn keeps_owner_references() {
        // OwnerReference: kind 1, name 3, uid 4, apiVersion 5, controller 6 (varint 1).
        let owner = [
            field(1, b"CronJob"),
            field(3, b"tick"),
            field(4, b"u-1"),
            field(5, b"batch/v1"),
            vec![0x30, 0x01],
        ]
        .concat();
        let meta = [field(1, b"run1"), field(13, &owner)].concat();
        let v = decode(&envelope("v1", "ConfigMap", &field(1, &meta))).unwrap();
        assert_eq!(
            v["metadata"]["ownerReferences"],
            json!([{"kind": "CronJob", "name": "tick", "uid": "u-1", "apiVersion": "batch/v1", "controller": true}])
        );
    }

    #[test]
    fn unserved_kinds_are_refused_by_name() {
        let raw = field(1, &field(1, b"pdb"));
        let e = decode(&envelope("policy/v1", "PodDisruptionBudget", &raw)).unwrap_err();
        assert!(e.0.contains("policy/v1 PodDisruptionBudget"), "{e}");
        assert!(e.0.contains("CronJob, Role, ClusterRole"), "{e}");
        let agg = [field(1, &field(1, b"a")), field(3, b"")].concat();
        let e = decode(&envelope(RBAC, "ClusterRole", &agg)).unwrap_err();
        assert!(e.0.contains("aggregationRule"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for body in [
            &b"k8s\x00\xff\xff\xff"[..],
            b"k8s\x00\x0a\x7f",
            b"nope",
            b"k8s\x00\x12\x05ab",
        ] {
            assert!(decode(body).is_err());
        }
    }
}
