//! Readiness, liveness and startup probes: tcpSocket, httpGet (HTTP only) and exec, with
//! initialDelaySeconds, periodSeconds, timeoutSeconds and success/failure thresholds.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One probe of one container and its running tally.
pub struct Probe {
    spec: Value,
    container_ports: Vec<Value>,
    next: Instant,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    /// A startup probe: fails for good after failureThreshold failures before its first
    /// success, and is not run again once it passed.
    startup: bool,
    /// The probe's verdict so far (readiness and startup start false, liveness true).
    pub ok: bool,
}

/// What a due probe found.
pub enum Outcome {
    /// The verdict did not change.
    Same,
    /// Now passing.
    Passed,
    /// The probe failed; `now_failing` once failureThreshold failures in a row turned
    /// the verdict.
    Failure { message: String, now_failing: bool },
}

impl Probe {
    pub fn new(spec: &Value, container: &Value, initially_ok: bool) -> Self {
        let secs = |k: &str, d: u64| Duration::from_secs(spec[k].as_u64().unwrap_or(d));
        Self {
            spec: spec.clone(),
            container_ports: container["ports"].as_array().cloned().unwrap_or_default(),
            next: Instant::now() + secs("initialDelaySeconds", 0),
            period: secs("periodSeconds", 10).max(Duration::from_secs(1)),
            timeout: secs("timeoutSeconds", 1).max(Duration::from_secs(1)),
            success_threshold: spec["successThreshold"].as_u64().unwrap_or(1).max(1) as u32,
            failure_threshold: spec["failureThreshold"].as_u64().unwrap_or(3).max(1) as u32,
            successes: 0,
            failures: 0,
            startup: false,
            ok: initially_ok,
        }
    }

    /// A startup probe: it gates liveness and readiness until it first succeeds.
    pub fn startup(spec: &Value, container: &Value) -> Self {
        Self {
            startup: true,
            ..Self::new(spec, container, false)
        }
    }

    /// Runs the probe if it is due.
    pub fn tick(
        &mut self,
        runtime: &hoist_runtime::Runtime,
        container_id: &str,
        netns: &Path,
    ) -> Outcome {
        if Instant::now() < self.next {
            return Outcome::Same;
        }
        self.next = Instant::now() + self.period;
        match self.run(runtime, container_id, netns) {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                if !self.ok && self.successes >= self.success_threshold {
                    self.ok = true;
                    return Outcome::Passed;
                }
            }
            Err(message) => {
                self.successes = 0;
                self.failures += 1;
                let now_failing = if self.startup {
                    self.failures >= self.failure_threshold
                } else {
                    self.ok && self.failures >= self.failure_threshold
                };
                if now_failing {
                    self.ok = false;
                }
                return Outcome::Failure {
                    message,
                    now_failing,
                };
            }
        }
        Outcome::Same
    }

    fn port(&self, v: &Value) -> Result<u16, String> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("invalid probe port {n}")),
            Value::String(name) => self
                .container_ports
                .iter()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("probe port {name:?} is not a named container port")),
            _ => Err("the probe has no port".into()),
        }
    }

    fn run(
        &self,
        runtime: &hoist_runtime::Runtime,
        container_id: &str,
        netns: &Path,
    ) -> Result<(), String> {
        if let Some(tcp) = self.spec.get("tcpSocket") {
            let port = self.port(&tcp["port"])?;
            return hoist_runtime::connect(netns, port, self.timeout)
                .map(|_| ())
                .map_err(|e| format!("dial tcp 127.0.0.1:{port}: {e}"));
        }
        if let Some(http) = self.spec.get("httpGet") {
            let port = self.port(&http["port"])?;
            if http["scheme"].as_str().is_some_and(|s| s != "HTTP") {
                return Err("only HTTP httpGet probes are supported".into());
            }
            let path = http["path"].as_str().unwrap_or("/");
            let mut conn = hoist_runtime::connect(netns, port, self.timeout)
                .map_err(|e| format!("Get \"http://127.0.0.1:{port}{path}\": {e}"))?;
            let _ = conn.set_read_timeout(Some(self.timeout));
            let _ = conn.set_write_timeout(Some(self.timeout));
            let mut req = format!(
                "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kube-probe/1.33\r\n"
            );
            for h in http["httpHeaders"].as_array().into_iter().flatten() {
                req.push_str(&format!(
                    "{}: {}\r\n",
                    h["name"].as_str().unwrap_or(""),
                    h["value"].as_str().unwrap_or("")
                ));
            }
            req.push_str("\r\n");
            conn.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
            let mut head = [0u8; 64];
            let n = conn.read(&mut head).map_err(|e| e.to_string())?;
            let line = String::from_utf8_lossy(&head[..n]);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("malformed HTTP response: {line:?}"))?;
            return if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            };
        }
        if let Some(exec) = self.spec.get("exec") {
            let args: Vec<String> = exec["command"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            let out = runtime
                .exec_output(container_id, &args, &[], self.timeout)
                .map_err(|e| e.to_string())?;
            return if out.code == 0 {
                Ok(())
            } else {
                Err(format!(
                    "command {args:?} exited with {}: {}",
                    out.code,
                    String::from_utf8_lossy(&out.stdout).trim()
                ))
            };
        }
        Err(
            "the probe has no tcpSocket, httpGet or exec handler (gRPC probes are not supported)"
                .into(),
        )
    }
}
