//! What a ready service gets: port-forwards for its declared `ports:` with `local:`
//! (hoist-kube's reconnecting forward) and its pods' logs streamed into the session.

use hoist_config::Service;
use hoist_kube::Applied;
use hoist_kube::logs::{LogStream, LogStreamSpec};
use hoist_kube::portforward::{ForwardState, ForwardTarget, PortForward, PortForwardSpec};
use hoist_kube::readiness::pod_selector;
use tokio::task::JoinHandle;

use crate::state::{Event, LogLine, PortForward as ForwardInfo, Session, now_ms};

/// A service's forwards and log streams; dropping it stops them.
#[derive(Default)]
pub struct Attachment {
    /// The `ports:` it was made for (a change makes new forwards).
    pub ports: Vec<(u16, Option<u16>)>,
    forwards: Vec<PortForward>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Where connections to container port `port` of `service` go: its Service of the
/// same name when that exposes the port (mapped to the targetPort), else its pods.
pub fn forward_target(applied: &[Applied], service: &str, port: u16) -> Option<ForwardTarget> {
    let svc = applied.iter().find(|a| {
        a.key.kind == "Service"
            && a.key.name == service
            && a.object["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["port"].as_u64() == Some(port as u64))
    });
    if let Some(s) = svc {
        return Some(ForwardTarget::Service {
            name: s.key.name.clone(),
            port,
        });
    }
    applied
        .iter()
        .find_map(|a| pod_selector(&a.object))
        .map(|selector| ForwardTarget::Selector { selector, port })
}

/// What forwards a service asks for.
pub fn port_key(svc: &Service) -> Vec<(u16, Option<u16>)> {
    svc.spec.ports.iter().map(|p| (p.port, p.local)).collect()
}

/// Starts forwards and/or log streams for a ready service.
pub async fn attach(
    client: &kube::Client,
    session: &Session,
    namespace: &str,
    svc: &Service,
    applied: &[Applied],
    forwards: bool,
    logs: bool,
) -> Attachment {
    let mut att = Attachment {
        ports: port_key(svc),
        forwards: Vec::new(),
        tasks: Vec::new(),
    };
    let name = svc.name.clone();
    if forwards {
        for p in svc.spec.ports.iter() {
            let Some(local) = p.local else { continue };
            let Some(target) = forward_target(applied, &name, p.port) else {
                session.emit(Event::Error {
                    service: Some(name.clone()),
                    error: format!(
                        "cannot forward port {} ({}): the service has no Service or workload to reach",
                        p.port, p.name
                    ),
                });
                continue;
            };
            match PortForward::start(
                client.clone(),
                PortForwardSpec::new(namespace, target, local),
            )
            .await
            {
                Ok(pf) => {
                    let info = ForwardInfo {
                        name: p.name.clone(),
                        remote: p.port,
                        local: pf.local_addr().to_string(),
                        connected: false,
                    };
                    let mut state = pf.state();
                    let session = session.clone();
                    let service = name.clone();
                    att.tasks.push(tokio::spawn(async move {
                        let mut last = None;
                        loop {
                            let connected = matches!(
                                *state.borrow_and_update(),
                                ForwardState::Connected { .. }
                            );
                            // Reported once open, then on every change: a forward that
                            // has not connected yet is not "reconnecting".
                            if last != Some(connected) && (last.is_some() || connected) {
                                last = Some(connected);
                                session.emit(Event::PortForward {
                                    service: service.clone(),
                                    forward: ForwardInfo {
                                        connected,
                                        ..info.clone()
                                    },
                                });
                            }
                            if state.changed().await.is_err() {
                                break;
                            }
                        }
                    }));
                    att.forwards.push(pf);
                }
                Err(e) => session.emit(Event::Error {
                    service: Some(name.clone()),
                    error: e.to_string(),
                }),
            }
        }
    }
    if logs {
        let mut selectors: Vec<String> = applied
            .iter()
            .filter_map(|a| pod_selector(&a.object))
            .collect();
        selectors.dedup();
        for sel in selectors {
            let mut stream = LogStream::start(client.clone(), LogStreamSpec::new(namespace, &sel));
            let session = session.clone();
            let service = name.clone();
            att.tasks.push(tokio::spawn(async move {
                while let Some(l) = stream.next().await {
                    session.emit(Event::Log {
                        service: service.clone(),
                        line: LogLine {
                            at_ms: now_ms(),
                            pod: l.pod,
                            container: l.container,
                            line: l.text,
                        },
                    });
                }
            }));
        }
    }
    att
}
