//! One thread per pod: image, sandbox, containers, restarts with back-off, status, and
//! graceful deletion ending in the final delete of the pod object.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use base64::Engine;
use hoist_runtime::{ContainerHandle, ContainerSpec, PodSandbox, SandboxConfig, UnpackedImage};
use serde_json::{Value, json};

use super::{Command, Shared, events, status::set_condition};

mod init_containers;
use crate::app::App;
use crate::clock::now_rfc3339;
use crate::objects;
use crate::storage::Write;

const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
const TICK: Duration = Duration::from_millis(100);

/// One container of the pod and what the kubelet knows about it.
struct Container {
    spec: Value,
    name: String,
    image_ref: String,
    image: Option<UnpackedImage>,
    image_id: String,
    handle: Option<ContainerHandle>,
    /// Starts so far (the next start's attempt number); restartCount is one less.
    starts: u32,
    /// Next start not before this instant (back-off after a crash).
    next_start: Option<Instant>,
    /// `state` and `lastState` as reported.
    state: Value,
    last_state: Value,
    /// Exited and will not be restarted (restartPolicy).
    done: Option<i32>,
    started_at: String,
    readiness: Option<super::probe::Probe>,
    liveness: Option<super::probe::Probe>,
    startup: Option<super::probe::Probe>,
}

impl Container {
    fn from_spec(c: Value, waiting_reason: &str) -> Self {
        Container {
            name: c["name"].as_str().unwrap_or("").to_string(),
            image_ref: c["image"].as_str().unwrap_or("").to_string(),
            spec: c,
            image: None,
            image_id: String::new(),
            handle: None,
            starts: 0,
            next_start: Some(Instant::now()),
            state: json!({"waiting": {"reason": waiting_reason}}),
            last_state: json!({}),
            done: None,
            started_at: String::new(),
            readiness: None,
            liveness: None,
            startup: None,
        }
    }

    fn running(&self) -> bool {
        self.state.get("running").is_some()
    }

    /// Running, and past its startup probe if it has one.
    fn started(&self) -> bool {
        self.running() && self.startup.as_ref().is_none_or(|p| p.ok)
    }

    fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(|p| p.ok)
    }
}

struct Pod {
    shared: Arc<Shared>,
    pod: Value,
    ns: String,
    name: String,
    uid: String,
    restart_policy: String,
    sandbox: Option<PodSandbox>,
    containers: Vec<Container>,
    /// `spec.initContainers`, run one after another to completion before `containers`.
    init: Vec<Container>,
    /// Whether `containers` currently holds the init containers (see `init_containers`).
    in_init: bool,
    start_time: String,
    /// What the last status write was made from: unchanged inputs skip the write.
    last_written: Value,
    /// The Service entries in the pod's /etc/hosts, and when they were last compared
    /// with the stored Services (refreshed every [`HOSTS_REFRESH`]).
    service_hosts: Vec<(std::net::Ipv4Addr, Vec<String>)>,
    hosts_checked: Instant,
    /// [`crate::storage::Store::resource_rv`] of Services when `service_hosts` was built.
    services_rv: u64,
    /// downwardAPI volume files follow label/annotation changes.
    downward: super::downward::LiveVolumes,
}

/// How often a running pod's /etc/hosts is brought up to date with the Services.
const HOSTS_REFRESH: Duration = Duration::from_secs(1);

pub fn run(shared: Arc<Shared>, pod: Value, rx: Receiver<Command>) {
    let ns = objects::meta_str(&pod, "namespace")
        .unwrap_or("")
        .to_string();
    let name = objects::name_of(&pod).to_string();
    let uid = objects::meta_str(&pod, "uid").unwrap_or("").to_string();
    let restart_policy = pod
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always")
        .to_string();
    let specs = |field: &str| {
        pod.pointer(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let init: Vec<Container> = specs("/spec/initContainers")
        .into_iter()
        .map(|c| Container::from_spec(c, "PodInitializing"))
        .collect();
    let waiting = if init.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let containers = specs("/spec/containers")
        .into_iter()
        .map(|c| Container::from_spec(c, waiting))
        .collect();
    let mut p = Pod {
        downward: super::downward::LiveVolumes::new(&pod),
        shared,
        pod,
        ns,
        name,
        uid,
        restart_policy,
        sandbox: None,
        containers,
        init,
        in_init: false,
        start_time: now_rfc3339(),
        last_written: Value::Null,
        service_hosts: Vec::new(),
        hosts_checked: Instant::now(),
        services_rv: 0,
    };
    let cmd = p.run_until_command(&rx);
    p.teardown(cmd);
}

impl Pod {
    fn app(&self) -> &App {
        &self.shared.app
    }

    fn event(&self, container: Option<&str>, type_: &str, reason: &str, message: &str) {
        let list = if self.in_init {
            "initContainers"
        } else {
            "containers"
        };
        let field = container.map(|c| format!("spec.{list}{{{c}}}"));
        events::record(
            self.app(),
            &self.pod,
            field.as_deref(),
            type_,
            reason,
            message,
            "kubelet",
        );
    }

    /// Runs the pod until the dispatcher says to stop (or the channel closes).
    fn run_until_command(&mut self, rx: &Receiver<Command>) -> Command {
        self.write_status();
        self.services_rv = self.app().store.resource_rv("/services");
        self.service_hosts = self.current_service_hosts();
        self.hosts_checked = Instant::now();
        let sandbox = PodSandbox::create(
            &self.shared.cfg.pods_dir,
            &self.shared.ips,
            &self.uid,
            &self.etc_config(),
        );
        match sandbox {
            Ok(s) => {
                self.shared.dns.add_pod(&s.pod_id, &s.net.path, &self.ns);
                self.sandbox = Some(s)
            }
            Err(e) => {
                self.event(None, "Warning", "FailedCreatePodSandBox", &e.to_string());
                for c in &mut self.containers {
                    c.state = json!({"waiting": {"reason": "CreateContainerError", "message": e.to_string()}});
                    c.next_start = None;
                }
                self.write_status();
            }
        }
        loop {
            if self.sandbox.is_some() {
                if self.step_init_containers() {
                    for i in 0..self.containers.len() {
                        self.step(i);
                    }
                    self.stop_sidecars_when_done();
                }
                self.write_status();
                self.refresh_hosts();
                if let Some(dir) = self.sandbox.as_ref().map(|s| s.dir.clone()) {
                    let app = self.shared.app.clone();
                    self.downward
                        .refresh(&app, &self.ns, &self.name, &self.uid, &dir);
                }
            }
            match rx.recv_timeout(TICK) {
                Ok(cmd) => return cmd,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Command::Shutdown,
            }
        }
    }

    fn etc_config(&self) -> SandboxConfig {
        SandboxConfig {
            hostname: self
                .pod
                .pointer("/spec/hostname")
                .and_then(Value::as_str)
                .unwrap_or(&self.name)
                .to_string(),
            hosts: self.service_hosts.clone(),
            resolv_conf: super::dns::resolv_conf_for(&self.pod, &self.ns),
        }
    }

    fn services(&self) -> Vec<std::sync::Arc<Value>> {
        self.app().store.list_shared("/services", None).0
    }

    fn current_service_hosts(&self) -> Vec<(std::net::Ipv4Addr, Vec<String>)> {
        crate::service_links::hosts_entries(&self.services(), &self.ns)
    }

    /// Rewrites /etc/hosts (in place: containers see it) when the Services changed.
    fn refresh_hosts(&mut self) {
        if self.hosts_checked.elapsed() < HOSTS_REFRESH {
            return;
        }
        self.hosts_checked = Instant::now();
        // Unchanged Services: nothing to rebuild (150 pods × 150 Services otherwise
        // format 90,000 host names a second).
        let services_rv = self.app().store.resource_rv("/services");
        if services_rv == self.services_rv {
            return;
        }
        self.services_rv = services_rv;
        let hosts = self.current_service_hosts();
        if hosts == self.service_hosts {
            return;
        }
        self.service_hosts = hosts;
        if let Some(sb) = &self.sandbox
            && let Err(e) = sb.write_etc(&self.etc_config())
        {
            tracing::warn!(pod = %self.name, error = %e, "cannot refresh /etc/hosts");
        }
    }

    /// Advances one container: start when due, notice its exit, schedule a restart.
    fn step(&mut self, i: usize) {
        let now = Instant::now();
        let c = &self.containers[i];
        if let Some(h) = &c.handle {
            let exited = match self.shared.runtime.wait(&h.id, Duration::ZERO) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(container = %h.id, error = %e, "cannot wait for container");
                    None
                }
            };
            if let Some(exited) = exited {
                self.on_exit(i, exited.code);
            } else {
                self.probe(i);
            }
            return;
        }
        if c.done.is_some() || c.next_start.is_none_or(|t| t > now) {
            return;
        }
        self.start(i);
    }

    /// Runs the container's due probes; a failed liveness probe restarts it.
    fn probe(&mut self, i: usize) {
        use super::probe::Outcome;
        let Some(netns) = self.sandbox.as_ref().map(|s| s.net.path.clone()) else {
            return;
        };
        let c = &mut self.containers[i];
        let Some(id) = c.handle.as_ref().map(|h| h.id.clone()) else {
            return;
        };
        let name = c.name.clone();
        let runtime = &self.shared.runtime;
        // A startup probe holds back liveness and readiness until it first passes.
        if let Some(startup) = c.startup.as_mut().filter(|p| !p.ok) {
            if let Outcome::Failure {
                message,
                now_failing,
            } = startup.tick(runtime, &id, &netns)
            {
                self.event(
                    Some(&name),
                    "Warning",
                    "Unhealthy",
                    &format!("Startup probe failed: {message}"),
                );
                if now_failing {
                    self.kill_unhealthy(i, &id, "startup");
                }
            }
            return;
        }
        let readiness = c.readiness.as_mut().map(|p| p.tick(runtime, &id, &netns));
        let liveness = c.liveness.as_mut().map(|p| p.tick(runtime, &id, &netns));
        if let Some(Outcome::Failure { message, .. }) = &readiness {
            self.event(
                Some(&name),
                "Warning",
                "Unhealthy",
                &format!("Readiness probe failed: {message}"),
            );
        }
        if let Some(Outcome::Failure {
            message,
            now_failing,
        }) = &liveness
        {
            self.event(
                Some(&name),
                "Warning",
                "Unhealthy",
                &format!("Liveness probe failed: {message}"),
            );
            if *now_failing {
                self.kill_unhealthy(i, &id, "liveness");
            }
        }
    }

    /// Kills a container whose liveness or startup probe failed; it is restarted.
    fn kill_unhealthy(&mut self, i: usize, id: &str, probe: &str) {
        let name = self.containers[i].name.clone();
        self.event(
            Some(&name),
            "Normal",
            "Killing",
            &format!("Container {name} failed {probe} probe, will be restarted"),
        );
        let grace = self
            .pod
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30)
            .min(10);
        let code = match self.shared.runtime.kill(id, Duration::from_secs(grace)) {
            Ok(e) => e.code,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot kill an unhealthy container");
                None
            }
        };
        // A probe restart always restarts, whatever the exit code.
        self.on_exit(i, Some(code.unwrap_or(137).max(1)));
    }

    fn on_exit(&mut self, i: usize, code: Option<i32>) {
        let policy = self.restart_policy.clone();
        let pod_name = self.name.clone();
        let c = &mut self.containers[i];
        let Some(h) = c.handle.take() else { return };
        let code_v = code.unwrap_or(-1);
        if let Err(e) = PodSandbox::remove_container(&self.shared.runtime, &h, Duration::ZERO) {
            tracing::warn!(container = %h.id, error = %e, "cannot remove an exited container");
        }
        let terminated = json!({"terminated": {
            "exitCode": code_v,
            "reason": if code_v == 0 { "Completed" } else { "Error" },
            "startedAt": c.started_at, "finishedAt": now_rfc3339(),
            "containerID": format!("runc://{}", h.id),
        }});
        let restart = match policy.as_str() {
            "Never" => false,
            "OnFailure" => code_v != 0,
            _ => true,
        };
        if restart {
            let delay = backoff(c.starts);
            c.next_start = Some(Instant::now() + delay);
            c.last_state = terminated;
            if delay.is_zero() {
                // The first restart is immediate, as the kubelet does; back-off starts after.
                c.state = json!({"waiting": {"reason": "ContainerCreating"}});
            } else {
                c.state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                    "back-off {}s restarting failed container={} pod={pod_name}",
                    delay.as_secs(), c.name)}});
                let name = c.name.clone();
                self.event(
                    Some(&name),
                    "Warning",
                    "BackOff",
                    "Back-off restarting failed container",
                );
            }
        } else {
            c.done = Some(code_v);
            c.state = terminated;
        }
    }

    fn start(&mut self, i: usize) {
        if self.containers[i].image.is_none() {
            match self.pull(i) {
                Ok(()) => {}
                Err((reason, message)) => {
                    let c = &mut self.containers[i];
                    c.state = json!({"waiting": {"reason": reason, "message": message}});
                    c.next_start = Some(Instant::now() + BACKOFF_START);
                    let name = c.name.clone();
                    self.event(Some(&name), "Warning", "Failed", &message);
                    return;
                }
            }
        }
        let spec = match self.container_spec(i) {
            Ok(s) => s,
            Err(message) => {
                let c = &mut self.containers[i];
                c.state = json!({"waiting": {"reason": "CreateContainerConfigError", "message": message}});
                c.next_start = Some(Instant::now() + BACKOFF_START);
                return;
            }
        };
        let sandbox = self.sandbox.as_ref().expect("started only with a sandbox");
        let c = &self.containers[i];
        let image = c.image.as_ref().expect("pulled above");
        let attempt = c.starts;
        let result = sandbox.start_container(
            &self.shared.runtime,
            &self.shared.unpacker,
            image,
            &spec,
            attempt,
        );
        let name = c.name.clone();
        match result {
            Ok(h) => {
                self.event(
                    Some(&name),
                    "Normal",
                    "Created",
                    &format!("Created container {name}"),
                );
                self.event(
                    Some(&name),
                    "Normal",
                    "Started",
                    &format!("Started container {name}"),
                );
                let c = &mut self.containers[i];
                c.readiness = c
                    .spec
                    .get("readinessProbe")
                    .map(|p| super::probe::Probe::new(p, &c.spec, false));
                c.liveness = c
                    .spec
                    .get("livenessProbe")
                    .map(|p| super::probe::Probe::new(p, &c.spec, true));
                c.startup = c
                    .spec
                    .get("startupProbe")
                    .map(|p| super::probe::Probe::startup(p, &c.spec));
                c.started_at = now_rfc3339();
                c.state = json!({"running": {"startedAt": c.started_at}});
                c.handle = Some(h);
                c.next_start = None;
            }
            Err(e) => {
                let message = e.to_string();
                self.event(Some(&name), "Warning", "Failed", &message);
                let c = &mut self.containers[i];
                c.last_state = json!({"terminated": {
                    "exitCode": 128, "reason": "StartError", "message": message,
                    "startedAt": null, "finishedAt": now_rfc3339(),
                }});
                let delay = backoff(c.starts + 2);
                c.state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}});
                c.next_start = Some(Instant::now() + delay);
            }
        }
        self.containers[i].starts = attempt + 1;
    }

    /// Finds the image in the local store or pulls it from its registry, as
    /// imagePullPolicy says (unset: Always for `:latest` or no tag, else IfNotPresent).
    fn pull(&mut self, i: usize) -> Result<(), (&'static str, String)> {
        let c = &self.containers[i];
        let image_ref = c.image_ref.clone();
        let policy = c.spec["imagePullPolicy"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| default_pull_policy(&image_ref).to_string());
        let reference = hoist_oci::Reference::parse(&image_ref).map_err(|e| {
            (
                "InvalidImageName",
                format!("invalid image name {image_ref:?}: {e}"),
            )
        })?;
        let store = hoist_oci::LocalStore::open(&self.shared.cfg.image_store).map_err(|e| {
            (
                "ErrImagePull",
                format!("cannot open the local image store: {e}"),
            )
        })?;
        let present = store.resolve(&reference).is_ok();
        let name = c.name.clone();
        let failed_before =
            c.state.pointer("/waiting/reason").and_then(Value::as_str) == Some("ErrImagePull");
        if policy == "Never" && !present {
            return Err((
                "ErrImageNeverPull",
                format!(
                    "Container image {image_ref:?} is not present in the local store {} with pull policy of Never (build it with `hoist image build` or pull it)",
                    self.shared.cfg.image_store.display()
                ),
            ));
        }
        if policy == "Always" || !present {
            self.event(
                Some(&name),
                "Normal",
                "Pulling",
                &format!("Pulling image {image_ref:?}"),
            );
            let t = Instant::now();
            if let Err(e) = pull_from_registry(&store, &reference) {
                let reason = if failed_before {
                    "ImagePullBackOff"
                } else {
                    "ErrImagePull"
                };
                return Err((reason, format!("Failed to pull image {image_ref:?}: {e}")));
            }
            self.event(
                Some(&name),
                "Normal",
                "Pulled",
                &format!(
                    "Successfully pulled image {image_ref:?} in {:.3}s",
                    t.elapsed().as_secs_f64()
                ),
            );
        } else {
            self.event(
                Some(&name),
                "Normal",
                "Pulled",
                &format!("Container image {image_ref:?} already present on machine"),
            );
        }
        let unpacked = self
            .shared
            .unpacker
            .unpack(&store, &reference)
            .map_err(|e| ("ErrImagePull", e.to_string()))?;
        let c = &mut self.containers[i];
        c.image_id = format!("{}@{}", reference.name(), unpacked.manifest_digest);
        c.image = Some(unpacked);
        Ok(())
    }

    fn container_spec(&self, i: usize) -> Result<ContainerSpec, String> {
        let c = &self.containers[i];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        // Service links first: the container's own env overrides them.
        let mut env = crate::service_links::env_vars(&self.services(), &self.pod);
        for from in c.spec["envFrom"].as_array().into_iter().flatten() {
            let prefix = from["prefix"].as_str().unwrap_or("");
            let (r, key, secret) = match (from.get("configMapRef"), from.get("secretRef")) {
                (Some(r), _) => (r, "/configmaps", false),
                (None, Some(r)) => (r, "/secrets", true),
                _ => continue,
            };
            let name = r["name"].as_str().unwrap_or("");
            let obj = self
                .app()
                .store
                .get(key, &self.ns, name)
                .map_err(|e| e.to_string())?;
            let Some(obj) = obj else {
                if r["optional"].as_bool() == Some(true) {
                    continue;
                }
                return Err(format!(
                    "{} {name:?} not found",
                    if secret { "secret" } else { "configmap" }
                ));
            };
            for (k, v) in obj["data"].as_object().into_iter().flatten() {
                let v = v.as_str().unwrap_or("");
                let v = if secret {
                    base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                } else {
                    v.to_string()
                };
                env.push((format!("{prefix}{k}"), v));
            }
        }
        for e in c.spec["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or("").to_string();
            if let Some(v) = e["value"].as_str() {
                env.push((name, v.to_string()));
            } else if let Some(from) = e.get("valueFrom") {
                if let Some(v) = self.value_from(from, &c.name)? {
                    env.push((name, v));
                }
            } else {
                env.push((name, String::new()));
            }
        }
        // A later definition wins (envFrom < env, service links < both).
        let mut seen = std::collections::HashSet::new();
        env.reverse();
        env.retain(|(k, _)| seen.insert(k.clone()));
        env.reverse();
        let sandbox_dir = self
            .sandbox
            .as_ref()
            .map(|s| s.dir.clone())
            .ok_or("the pod has no sandbox")?;
        let volumes =
            super::volumes::prepare(&self.pod, &sandbox_dir, &self.app().store, &self.ns)?;
        let mounts = super::volumes::mounts(&c.spec, &volumes)?;
        let sc = &c.spec["securityContext"];
        let pod_sc = self
            .pod
            .pointer("/spec/securityContext")
            .cloned()
            .unwrap_or(Value::Null);
        let run_as = sc["runAsUser"].as_u64().or(pod_sc["runAsUser"].as_u64());
        let run_group = sc["runAsGroup"].as_u64().or(pod_sc["runAsGroup"].as_u64());
        Ok(ContainerSpec {
            name: c.name.clone(),
            command: strings(&c.spec["command"]),
            args: strings(&c.spec["args"]),
            env,
            working_dir: c.spec["workingDir"].as_str().map(String::from),
            user: run_as.map(|u| (u as u32, run_group.unwrap_or(u) as u32)),
            readonly_rootfs: sc["readOnlyRootFilesystem"].as_bool() == Some(true),
            no_new_privileges: sc["allowPrivilegeEscalation"].as_bool() == Some(false),
            mounts,
            stdin: c.spec["stdin"].as_bool() == Some(true),
            tty: c.spec["tty"].as_bool() == Some(true),
            ..Default::default()
        })
    }

    /// `valueFrom`: configMapKeyRef, secretKeyRef, fieldRef and resourceFieldRef (the
    /// downward API; `container` is the one whose env this is).
    fn value_from(&self, from: &Value, container: &str) -> Result<Option<String>, String> {
        let store = &self.app().store;
        for (field, key, is_secret) in [
            ("configMapKeyRef", "/configmaps", false),
            ("secretKeyRef", "/secrets", true),
        ] {
            let Some(r) = from.get(field) else { continue };
            let name = r["name"].as_str().unwrap_or("");
            let k = r["key"].as_str().unwrap_or("");
            let optional = r["optional"].as_bool() == Some(true);
            let obj = store.get(key, &self.ns, name).map_err(|e| e.to_string())?;
            let value = obj.as_ref().and_then(|o| o["data"][k].as_str()).map(|v| {
                if is_secret {
                    base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                } else {
                    v.to_string()
                }
            });
            return match value {
                Some(v) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(format!(
                    "{} {name:?} or its key {k:?} not found",
                    if is_secret { "secret" } else { "configmap" }
                )),
            };
        }
        if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
            let ip = self
                .sandbox
                .as_ref()
                .map(|s| s.net.ip.to_string())
                .unwrap_or_default();
            return super::downward::env_field(&self.pod, path, &ip).map(Some);
        }
        if let Some(r) = from.get("resourceFieldRef") {
            let c = r["containerName"]
                .as_str()
                .filter(|c| !c.is_empty())
                .unwrap_or(container);
            return super::downward::resource(&self.pod, c, r).map(Some);
        }
        Err(
            "valueFrom: only configMapKeyRef, secretKeyRef, fieldRef and resourceFieldRef are supported"
                .into(),
        )
    }

    fn write_status(&mut self) {
        let now = now_rfc3339();
        let all_ready = self.containers.iter().all(Container::ready) && self.sidecars_ready();
        let all_done = self.containers.iter().all(|c| c.done.is_some());
        let any_started = self
            .containers
            .iter()
            .any(|c| c.handle.is_some() || c.starts > 0 || c.done.is_some());
        let init = self.init_progress();
        let phase = if init == init_containers::Progress::Failed {
            "Failed"
        } else if init == init_containers::Progress::Running {
            "Pending"
        } else if all_done && !self.containers.is_empty() {
            if self.containers.iter().all(|c| c.done == Some(0)) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if any_started {
            "Running"
        } else {
            "Pending"
        };
        let statuses: Vec<Value> = self.containers.iter().map(container_status).collect();
        let init_statuses: Vec<Value> = self.init.iter().map(container_status).collect();
        let ip = self.sandbox.as_ref().map(|s| s.net.ip.to_string());
        let inputs = json!([phase, statuses, init_statuses, ip, all_ready]);
        if inputs == self.last_written {
            return;
        }
        self.last_written = inputs;
        let uid = self.uid.clone();
        let result = self
            .app()
            .store
            .write("/pods", &self.ns, &self.name, |cur| {
                let Some(cur) = cur else {
                    return Ok(Write::Unchanged(Value::Null));
                };
                if objects::meta_str(cur, "uid") != Some(uid.as_str()) {
                    return Ok(Write::Unchanged(Value::Null));
                }
                let mut new = cur.clone();
                let st = &mut new["status"];
                if !st.is_object() {
                    *st = json!({});
                }
                st["phase"] = json!(phase);
                st["hostIP"] = json!("127.0.0.1");
                st["hostIPs"] = json!([{"ip": "127.0.0.1"}]);
                if let Some(ip) = &ip {
                    st["podIP"] = json!(ip);
                    st["podIPs"] = json!([{"ip": ip}]);
                }
                st["startTime"] = json!(self.start_time);
                st["qosClass"] = json!("BestEffort");
                st["containerStatuses"] = json!(statuses);
                if !init_statuses.is_empty() {
                    st["initContainerStatuses"] = json!(init_statuses);
                }
                set_condition(st, "PodScheduled", true, None, &now);
                let initialized = init == init_containers::Progress::Done;
                let reason = (!initialized).then_some("ContainersNotInitialized");
                set_condition(st, "Initialized", initialized, reason, &now);
                let ready = all_ready && phase == "Running";
                let reason = (!ready).then_some(if phase == "Succeeded" || phase == "Failed" {
                    "PodCompleted"
                } else {
                    "ContainersNotReady"
                });
                set_condition(st, "ContainersReady", ready, reason, &now);
                set_condition(st, "Ready", ready, reason, &now);
                Ok(Write::Put(new))
            });
        match result {
            Ok(w) => {
                if let Some(kind) = self.app().registry.lookup("", "v1", "pods") {
                    self.app().after_write(&kind, &w);
                }
            }
            Err(e) => tracing::warn!(pod = %self.name, error = %e, "cannot write pod status"),
        }
    }

    fn teardown(mut self, cmd: Command) {
        let grace = match cmd {
            Command::Delete { grace_secs } => Duration::from_secs(grace_secs),
            Command::Shutdown => Duration::ZERO,
        };
        let handles: Vec<(String, ContainerHandle)> = self
            .containers
            .iter_mut()
            .chain(self.init.iter_mut())
            .filter_map(|c| c.handle.take().map(|h| (c.name.clone(), h)))
            .collect();
        let threads: Vec<_> = handles
            .into_iter()
            .map(|(name, h)| {
                if matches!(cmd, Command::Delete { .. }) {
                    self.event(
                        Some(&name),
                        "Normal",
                        "Killing",
                        &format!("Stopping container {name}"),
                    );
                }
                let shared = self.shared.clone();
                std::thread::spawn(move || {
                    if let Err(e) = PodSandbox::remove_container(&shared.runtime, &h, grace) {
                        tracing::warn!(container = %h.id, error = %e, "cannot remove container");
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
        if let Some(s) = self.sandbox.take()
            && let Err(e) = s.destroy(&self.shared.runtime, &self.shared.ips)
        {
            tracing::warn!(pod = %self.name, error = %e, "cannot remove the pod sandbox");
        }
        if matches!(cmd, Command::Delete { .. }) {
            final_delete(self.app(), &self.ns, &self.name, &self.uid);
        }
    }
}

/// A container's entry in `containerStatuses` / `initContainerStatuses`.
fn container_status(c: &Container) -> Value {
    let mut s = json!({
        "name": c.name,
        "state": c.state,
        "lastState": c.last_state,
        "ready": c.ready(),
        "started": c.started(),
        "restartCount": c.starts.saturating_sub(1),
        "image": c.image_ref,
        "imageID": c.image_id,
    });
    if let Some(h) = &c.handle {
        s["containerID"] = json!(format!("runc://{}", h.id));
    } else if let Some(id) = c
        .state
        .pointer("/terminated/containerID")
        .or_else(|| c.last_state.pointer("/terminated/containerID"))
    {
        // Like the kubelet: the last container's id while the next one waits.
        s["containerID"] = id.clone();
    }
    s
}

fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

/// Pulls into the local store with the images client (credentials and insecure
/// registries as `hoist image` uses them); at most 10 minutes.
fn pull_from_registry(
    store: &hoist_oci::LocalStore,
    reference: &hoist_oci::Reference,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = hoist_oci::RegistryClient::new(hoist_oci::ClientOptions::default())
        .map_err(|e| e.to_string())?;
    let platform = hoist_oci::Platform::linux_amd64();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(600),
            store.pull(&client, reference, &platform),
        )
        .await
    })
    .map_err(|_| "timed out after 600s".to_string())?
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Back-off before the next start after `starts` starts: none after the first run
/// (Kubernetes restarts a container that exits once at once), then 10s, 20s, 40s...
/// capped at 5m.
fn backoff(starts: u32) -> Duration {
    if starts <= 1 {
        return Duration::ZERO;
    }
    BACKOFF_START
        .saturating_mul(1u32 << (starts - 2).min(8))
        .min(BACKOFF_CAP)
}

/// Removes the pod object once its containers are gone (finalizers still block it).
pub fn final_delete(app: &App, ns: &str, name: &str, uid: &str) {
    let result = app.store.write("/pods", ns, name, |cur| match cur {
        Some(c)
            if objects::meta_str(c, "uid") == Some(uid) && objects::finalizers(c).is_empty() =>
        {
            Ok(Write::Delete)
        }
        _ => Ok(Write::Unchanged(Value::Null)),
    });
    match result {
        Ok(w) => {
            if let Some(kind) = app.registry.lookup("", "v1", "pods") {
                app.after_write(&kind, &w);
            }
        }
        Err(e) => tracing::warn!(pod = %name, error = %e, "final delete failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_restart_is_immediate_then_back_off_doubles_to_the_cap() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(20));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(30), BACKOFF_CAP);
    }
}
