//! Port-forward with reconnect: `127.0.0.1:LOCAL` → a port of a ready pod behind a
//! Service (or a label selector), through kube-rs `Api::portforward`.
//!
//! A watch on the selected pods keeps the current choice: the pod in use while it stays
//! ready, else the newest ready pod (during a rollout, the new one). Every local
//! connection opens its own forward to the current pod, so when a pod is replaced or a
//! forward drops, the next connection reaches a ready pod; a connection arriving while
//! no pod is ready waits for one (up to [`PortForwardSpec::wait_for_pod`]). Changes are
//! published as [`ForwardState`] on a `tokio::sync::watch` channel.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which pods to forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTarget {
    /// The pods of a Service (its selector); `port` is one of the Service's ports and is
    /// mapped to its `targetPort` (numbers and container port names).
    Service { name: String, port: u16 },
    /// Pods matching a label selector (`app=web,tier=front`); `port` is the pod's port.
    Selector { selector: String, port: u16 },
}

impl std::fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardTarget::Service { name, port } => write!(f, "service/{name}:{port}"),
            ForwardTarget::Selector { selector, port } => write!(f, "pods {selector}:{port}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PortForwardSpec {
    pub namespace: String,
    pub target: ForwardTarget,
    /// Local port on 127.0.0.1; 0 picks a free one (see [`PortForward::local_addr`]).
    pub local_port: u16,
    /// How long a new connection waits for a ready pod before it is closed.
    pub wait_for_pod: Duration,
}

impl PortForwardSpec {
    pub fn new(namespace: &str, target: ForwardTarget, local_port: u16) -> Self {
        Self {
            namespace: namespace.into(),
            target,
            local_port,
            wait_for_pod: Duration::from_secs(30),
        }
    }
}

/// What a port-forward is doing, for the session's state model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardState {
    /// Looking up the Service / pods.
    Starting,
    /// Connections go to `pod`'s port `port`.
    Connected { pod: String, port: u16 },
    /// No ready pod (yet); connections wait.
    Waiting { reason: String },
    /// The last attempt failed (the next connection tries again).
    Error { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    #[error(
        "cannot forward 127.0.0.1:{port}: the port is already in use (by another program or another forward); choose another local port"
    )]
    PortTaken { port: u16 },
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

/// A running port-forward; dropping it (or [`PortForward::stop`]) stops listening and
/// ends every forwarded connection.
pub struct PortForward {
    local: SocketAddr,
    state: watch::Receiver<ForwardState>,
    tasks: Vec<JoinHandle<()>>,
}

/// The current choice: pod name and the pod-side port.
type Choice = Option<(String, u16)>;

impl PortForward {
    /// Binds 127.0.0.1:`local_port` (loopback only) and starts forwarding.
    pub async fn start(client: Client, spec: PortForwardSpec) -> Result<Self, PortForwardError> {
        let listener = TcpListener::bind(("127.0.0.1", spec.local_port))
            .await
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AddrInUse {
                    PortForwardError::PortTaken {
                        port: spec.local_port,
                    }
                } else {
                    PortForwardError::Listen {
                        port: spec.local_port,
                        source,
                    }
                }
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| PortForwardError::Listen {
                port: spec.local_port,
                source,
            })?;
        let (state_tx, state) = watch::channel(ForwardState::Starting);
        let (choice_tx, choice_rx) = watch::channel::<Choice>(None);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &spec.namespace);
        let chooser = tokio::spawn(choose_pods(
            client,
            spec.clone(),
            state_tx.clone(),
            choice_tx,
        ));
        let acceptor = tokio::spawn(accept(listener, pods, spec, choice_rx, state_tx));
        Ok(Self {
            local,
            state,
            tasks: vec![chooser, acceptor],
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The current state; `.changed().await` on it to follow changes.
    pub fn state(&self) -> watch::Receiver<ForwardState> {
        self.state.clone()
    }

    /// Waits until connected to a pod (returns its name) or `timeout` passes.
    pub async fn wait_connected(&self, timeout: Duration) -> Option<String> {
        let mut rx = self.state.clone();
        let wait = async {
            loop {
                if let ForwardState::Connected { pod, .. } = &*rx.borrow_and_update() {
                    return Some(pod.clone());
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    pub fn stop(self) {}
}

impl Drop for PortForward {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Resolves the target to a selector and keeps the best ready pod in `choice`.
async fn choose_pods(
    client: Client,
    spec: PortForwardSpec,
    state: watch::Sender<ForwardState>,
    choice: watch::Sender<Choice>,
) {
    let (selector, port) = loop {
        match resolve_target(&client, &spec).await {
            Ok(x) => break x,
            Err(reason) => {
                state.send_replace(ForwardState::Waiting { reason });
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let pods: Api<Pod> = Api::namespaced(client, &spec.namespace);
    let mut stream = watcher(pods, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    let mut known: BTreeMap<String, Pod> = BTreeMap::new();
    let mut listing: BTreeMap<String, Pod> = BTreeMap::new();
    let mut current: Choice = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(p)) => {
                listing.insert(name_of(&p), p);
            }
            Ok(watcher::Event::InitDone) => known = std::mem::take(&mut listing),
            Ok(watcher::Event::Apply(p)) => {
                known.insert(name_of(&p), p);
            }
            Ok(watcher::Event::Delete(p)) => {
                known.remove(&name_of(&p));
            }
            Err(e) => {
                state.send_replace(ForwardState::Error {
                    message: format!("watching pods {selector}: {e}"),
                });
                continue;
            }
        }
        let next = pick(&known, current.as_ref().map(|c| c.0.as_str()), &port);
        if next != current {
            match &next {
                Some((pod, port)) => {
                    tracing::debug!(pod, port, target = %spec.target, "port-forward target");
                    state.send_replace(ForwardState::Connected {
                        pod: pod.clone(),
                        port: *port,
                    });
                }
                None => {
                    state.send_replace(ForwardState::Waiting {
                        reason: format!("no ready pod matches {selector}"),
                    });
                }
            }
            current = next.clone();
            choice.send_replace(next);
        } else if next.is_none() && matches!(*state.borrow(), ForwardState::Starting) {
            state.send_replace(ForwardState::Waiting {
                reason: format!("no ready pod matches {selector}"),
            });
        }
    }
}

/// The port a pod listens on: a number, or a container port name to look up per pod.
#[derive(Debug, Clone)]
enum PodPort {
    Number(u16),
    Named(String),
}

/// Label selector and pod port of the target.
async fn resolve_target(
    client: &Client,
    spec: &PortForwardSpec,
) -> Result<(String, PodPort), String> {
    match &spec.target {
        ForwardTarget::Selector { selector, port } => {
            Ok((selector.clone(), PodPort::Number(*port)))
        }
        ForwardTarget::Service { name, port } => {
            let services: Api<Service> = Api::namespaced(client.clone(), &spec.namespace);
            let svc = services
                .get_opt(name)
                .await
                .map_err(|e| format!("reading service {}/{name}: {e}", spec.namespace))?
                .ok_or_else(|| format!("service {}/{name} does not exist (yet)", spec.namespace))?;
            let s = svc.spec.unwrap_or_default();
            let selector = s
                .selector
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    format!("service {name} has no selector: it selects no pods to forward to")
                })?
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let ports = s.ports.unwrap_or_default();
            let sp = ports
                .iter()
                .find(|p| p.port == i32::from(*port))
                .ok_or_else(|| {
                    let have: Vec<String> = ports.iter().map(|p| p.port.to_string()).collect();
                    format!(
                        "service {name} has no port {port} (its ports: {})",
                        have.join(", ")
                    )
                })?;
            let pod_port = match &sp.target_port {
                Some(IntOrString::Int(n)) => PodPort::Number(*n as u16),
                Some(IntOrString::String(s)) => match s.parse::<u16>() {
                    Ok(n) => PodPort::Number(n),
                    Err(_) => PodPort::Named(s.clone()),
                },
                None => PodPort::Number(*port),
            };
            Ok((selector, pod_port))
        }
    }
}

fn name_of(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn is_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
}

fn port_of(p: &Pod, port: &PodPort) -> Option<u16> {
    match port {
        PodPort::Number(n) => Some(*n),
        PodPort::Named(name) => p.spec.as_ref()?.containers.iter().find_map(|c| {
            c.ports
                .as_ref()?
                .iter()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .map(|cp| cp.container_port as u16)
        }),
    }
}

/// Keep `current` while it is ready; else the newest ready pod (ties: by name).
fn pick(pods: &BTreeMap<String, Pod>, current: Option<&str>, port: &PodPort) -> Choice {
    if let Some(cur) = current
        && let Some(p) = pods.get(cur)
        && is_ready(p)
        && let Some(n) = port_of(p, port)
    {
        return Some((cur.to_string(), n));
    }
    pods.values()
        .filter(|p| is_ready(p))
        .filter_map(|p| port_of(p, port).map(|n| (p, n)))
        .max_by(|(a, _), (b, _)| {
            let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ta.cmp(&tb).then_with(|| name_of(b).cmp(&name_of(a)))
        })
        .map(|(p, n)| (name_of(p), n))
}

async fn accept(
    listener: TcpListener,
    pods: Api<Pod>,
    spec: PortForwardSpec,
    choice: watch::Receiver<Choice>,
    state: watch::Sender<ForwardState>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((sock, _)) => {
                        let _ = sock.set_nodelay(true);
                        conns.spawn(forward_one(sock, pods.clone(), spec.wait_for_pod, choice.clone(), state.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "port-forward accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One local connection: wait for a pod, open a forward, pump bytes. A failed open is
/// retried against the (possibly new) current pod a few times.
async fn forward_one(
    mut sock: TcpStream,
    pods: Api<Pod>,
    wait_for_pod: Duration,
    mut choice: watch::Receiver<Choice>,
    state: watch::Sender<ForwardState>,
) {
    const ATTEMPTS: usize = 4;
    for attempt in 0..ATTEMPTS {
        let target = tokio::time::timeout(wait_for_pod, async {
            loop {
                if let Some(c) = choice.borrow_and_update().clone() {
                    return Some(c);
                }
                if choice.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        let Ok(Some((pod, port))) = target else {
            return; // no ready pod in time: closing the connection tells the client
        };
        match pods.portforward(&pod, &[port]).await {
            Ok(mut pf) => {
                let Some(mut upstream) = pf.take_stream(port) else {
                    return;
                };
                if let Some(err) = pf.take_error(port) {
                    let state = state.clone();
                    let pod = pod.clone();
                    tokio::spawn(async move {
                        if let Some(message) = err.await {
                            state.send_replace(ForwardState::Error {
                                message: format!("pod {pod} port {port}: {message}"),
                            });
                        }
                    });
                }
                if matches!(*state.borrow(), ForwardState::Error { .. }) {
                    state.send_replace(ForwardState::Connected {
                        pod: pod.clone(),
                        port,
                    });
                }
                let _ = tokio::io::copy_bidirectional(&mut sock, &mut upstream).await;
                drop(upstream);
                pf.abort();
                return;
            }
            Err(e) => {
                tracing::debug!(pod, error = %e, attempt, "port-forward open failed");
                if attempt + 1 == ATTEMPTS {
                    state.send_replace(ForwardState::Error {
                        message: format!("forwarding to pod {pod} port {port}: {e}"),
                    });
                    return;
                }
                // The pod may be going away: give the watch a moment to move on.
                let _ = tokio::time::timeout(
                    Duration::from_millis(250 * (attempt as u64 + 1)),
                    choice.changed(),
                )
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, created: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .unwrap()
    }

    #[test]
    fn picks_newest_ready_and_sticks_with_current() {
        let mut pods = BTreeMap::new();
        pods.insert("a".into(), pod("a", "2026-01-01T00:00:00Z", true));
        pods.insert("b".into(), pod("b", "2026-01-01T00:01:00Z", true));
        pods.insert("c".into(), pod("c", "2026-01-01T00:02:00Z", false));
        let port = PodPort::Named("http".into());
        assert_eq!(pick(&pods, None, &port), Some(("b".into(), 8080)));
        assert_eq!(pick(&pods, Some("a"), &port), Some(("a".into(), 8080)));
        assert_eq!(
            pick(&pods, Some("c"), &PodPort::Number(80)),
            Some(("b".into(), 80))
        );
        pods.clear();
        assert_eq!(pick(&pods, Some("a"), &port), None);
    }
}
