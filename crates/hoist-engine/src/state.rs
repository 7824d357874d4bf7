//! The one state model of a session: every service's build, deploy, readiness,
//! port-forwards, live updates, errors and recent logs, plus test results.
//!
//! Nothing mutates [`State`] except [`State::apply`] of an [`Event`], and the
//! [`Session`] broadcasts every event it applies. So a terminal view, `-o json`,
//! a future web dashboard and a snapshot all read the same truth: replaying the
//! events from an empty state gives the state.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Log lines kept per service (the oldest are dropped).
pub const LOG_LINES_KEPT: usize = 200;
/// Events buffered per subscriber before a slow one starts missing some.
const EVENT_BUFFER: usize = 4096;

/// Progress of one step (build, deploy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Pending,
    Running,
    Done,
    Failed,
    /// Nothing to do (e.g. a service without an image has no build).
    Skipped,
}

/// Whether a service's objects are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ready {
    #[default]
    Unknown,
    Waiting,
    Ready,
    /// Waiting longer would not help (crash loop, failed Job, dependency failed).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    pub name: String,
    /// Port in the pod.
    pub remote: u16,
    /// Address on this machine, e.g. `127.0.0.1:18080`.
    pub local: String,
    pub connected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub at_ms: u64,
    pub pod: String,
    pub container: String,
    pub line: String,
}

/// Everything known about one service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    pub build: Phase,
    pub build_ms: Option<u64>,
    /// The image reference delivered last.
    pub image: Option<String>,
    pub deploy: Phase,
    pub objects: usize,
    pub ready: Ready,
    /// Why it is not ready (the report's words), or empty.
    pub ready_reason: String,
    pub ports: Vec<PortForward>,
    /// What happened last and when (ms since the epoch).
    pub last_change: Option<(u64, String)>,
    pub live_updates: u64,
    pub live_update_ms: Option<u64>,
    /// The current error (build, deploy, live update, config); cleared on success.
    pub error: Option<String>,
    #[serde(skip_serializing_if = "VecDeque::is_empty", default)]
    pub logs: VecDeque<LogLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    pub name: String,
    pub ok: bool,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    /// The last lines of its output.
    pub output_tail: Vec<String>,
}

/// The whole session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub project: String,
    pub context: String,
    pub namespace: String,
    pub services: BTreeMap<String, ServiceState>,
    pub tests: Vec<TestResult>,
    /// Problems not tied to one service (e.g. an unreadable hoist.yaml).
    pub errors: Vec<String>,
}

/// A change. `service` names the service it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    SessionStarted {
        project: String,
        context: String,
        namespace: String,
    },
    ServiceAdded {
        service: String,
    },
    ServiceRemoved {
        service: String,
    },
    BuildStarted {
        service: String,
    },
    BuildSkipped {
        service: String,
    },
    BuildFinished {
        service: String,
        image: String,
        duration_ms: u64,
        /// Its content-tagged image was there already (registry or store): not built.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        already_there: bool,
    },
    BuildFailed {
        service: String,
        error: String,
    },
    /// Waiting for dependencies before deploying.
    Blocked {
        service: String,
        on: Vec<String>,
    },
    DeployStarted {
        service: String,
    },
    Deployed {
        service: String,
        objects: usize,
        pruned: usize,
    },
    DeployFailed {
        service: String,
        error: String,
    },
    Ready {
        service: String,
    },
    NotReady {
        service: String,
        failed: bool,
        reason: String,
    },
    PortForward {
        service: String,
        forward: PortForward,
    },
    Log {
        service: String,
        #[serde(flatten)]
        line: LogLine,
    },
    FilesChanged {
        service: String,
        paths: Vec<String>,
        action: String,
    },
    LiveUpdated {
        service: String,
        files: usize,
        duration_ms: u64,
    },
    LiveUpdateFailed {
        service: String,
        error: String,
    },
    /// A problem with a service's configuration (it is left as it was).
    ConfigError {
        service: Option<String>,
        error: String,
    },
    /// Any other problem (a port-forward that cannot listen, a watch error).
    Error {
        service: Option<String>,
        error: String,
    },
    TestStarted {
        name: String,
    },
    TestFinished {
        result: TestResult,
    },
}

impl Event {
    pub fn service(&self) -> Option<&str> {
        use Event::*;
        match self {
            SessionStarted { .. } | TestStarted { .. } | TestFinished { .. } => None,
            ConfigError { service, .. } | Error { service, .. } => service.as_deref(),
            ServiceAdded { service }
            | ServiceRemoved { service }
            | BuildStarted { service }
            | BuildSkipped { service }
            | BuildFinished { service, .. }
            | BuildFailed { service, .. }
            | Blocked { service, .. }
            | DeployStarted { service }
            | Deployed { service, .. }
            | DeployFailed { service, .. }
            | Ready { service }
            | NotReady { service, .. }
            | PortForward { service, .. }
            | Log { service, .. }
            | FilesChanged { service, .. }
            | LiveUpdated { service, .. }
            | LiveUpdateFailed { service, .. } => Some(service),
        }
    }
}

/// An event with the time it happened (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    pub at_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl State {
    /// The only way state changes.
    pub fn apply(&mut self, s: &Stamped) {
        use Event::*;
        let at = s.at_ms;
        match &s.event {
            SessionStarted {
                project,
                context,
                namespace,
            } => {
                self.project = project.clone();
                self.context = context.clone();
                self.namespace = namespace.clone();
            }
            ServiceRemoved { service } => {
                self.services.remove(service);
            }
            TestStarted { .. } => {}
            TestFinished { result } => {
                self.tests.retain(|t| t.name != result.name);
                self.tests.push(result.clone());
            }
            ConfigError {
                service: None,
                error,
            }
            | Error {
                service: None,
                error,
            } => self.errors.push(error.clone()),
            ev => {
                let name = ev.service().expect("service events name one").to_string();
                let svc = self.services.entry(name).or_default();
                match ev {
                    ServiceAdded { .. } => svc_note(svc, at, "discovered".into()),
                    BuildStarted { .. } => {
                        svc.build = Phase::Running;
                        svc_note(svc, at, "building".into());
                    }
                    BuildSkipped { .. } => svc.build = Phase::Skipped,
                    BuildFinished {
                        image,
                        duration_ms,
                        already_there,
                        ..
                    } => {
                        svc.build = Phase::Done;
                        svc.build_ms = Some(*duration_ms);
                        svc.image = Some(image.clone());
                        svc.error = None;
                        let note = if *already_there {
                            "image already there".to_string()
                        } else {
                            format!("built in {duration_ms} ms")
                        };
                        svc_note(svc, at, note);
                    }
                    BuildFailed { error, .. } => {
                        svc.build = Phase::Failed;
                        svc.error = Some(error.clone());
                        svc_note(svc, at, "build failed".into());
                    }
                    Blocked { on, .. } => {
                        svc_note(svc, at, format!("waiting for {}", on.join(", ")));
                    }
                    DeployStarted { .. } => {
                        svc.deploy = Phase::Running;
                        svc.ready = self::Ready::Waiting;
                    }
                    Deployed { objects, .. } => {
                        svc.deploy = Phase::Done;
                        svc.objects = *objects;
                        svc.error = None;
                        svc_note(svc, at, format!("applied {objects} object(s)"));
                    }
                    DeployFailed { error, .. } => {
                        svc.deploy = Phase::Failed;
                        svc.error = Some(error.clone());
                        svc_note(svc, at, "deploy failed".into());
                    }
                    Ready { .. } => {
                        svc.ready = self::Ready::Ready;
                        svc.ready_reason.clear();
                        svc_note(svc, at, "ready".into());
                    }
                    NotReady { failed, reason, .. } => {
                        svc.ready = if *failed {
                            self::Ready::Failed
                        } else {
                            self::Ready::Waiting
                        };
                        svc.ready_reason = reason.clone();
                        if *failed {
                            svc.error = Some(reason.clone());
                        }
                    }
                    PortForward { forward, .. } => {
                        match svc.ports.iter_mut().find(|p| p.remote == forward.remote) {
                            Some(p) => *p = forward.clone(),
                            None => svc.ports.push(forward.clone()),
                        }
                    }
                    Log { line, .. } => {
                        if svc.logs.len() >= LOG_LINES_KEPT {
                            svc.logs.pop_front();
                        }
                        svc.logs.push_back(line.clone());
                    }
                    FilesChanged { paths, action, .. } => svc_note(
                        svc,
                        at,
                        if paths.is_empty() {
                            action.clone()
                        } else {
                            format!("{} file(s) changed: {action}", paths.len())
                        },
                    ),
                    LiveUpdated {
                        files, duration_ms, ..
                    } => {
                        svc.live_updates += 1;
                        svc.live_update_ms = Some(*duration_ms);
                        svc.error = None;
                        svc_note(
                            svc,
                            at,
                            format!("synced {files} file(s) in {duration_ms} ms"),
                        );
                    }
                    LiveUpdateFailed { error, .. } => {
                        svc.error = Some(error.clone());
                        svc_note(svc, at, "live update failed".into());
                    }
                    ConfigError { error, .. } => {
                        svc.error = Some(error.clone());
                        svc_note(svc, at, "invalid configuration".into());
                    }
                    Error { error, .. } => svc.error = Some(error.clone()),
                    SessionStarted { .. }
                    | ServiceRemoved { .. }
                    | TestStarted { .. }
                    | TestFinished { .. } => unreachable!("handled above"),
                }
            }
        }
    }
}

fn svc_note(svc: &mut ServiceState, at: u64, what: String) {
    svc.last_change = Some((at, what));
}

/// The state behind a lock plus the broadcast of its events. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Stamped>>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                events,
            }),
        }
    }

    /// Applies the event to the state, then broadcasts it.
    pub fn emit(&self, event: Event) {
        let stamped = Arc::new(Stamped {
            at_ms: now_ms(),
            event,
        });
        // Apply and send under the lock, so subscribers see events in state order.
        let mut st = self.inner.state.lock().expect("state lock");
        st.apply(&stamped);
        let _ = self.inner.events.send(stamped);
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped>> {
        self.inner.events.subscribe()
    }

    /// A copy of the state (for views and snapshots).
    pub fn snapshot(&self) -> State {
        self.inner.state.lock().expect("state lock").clone()
    }

    /// Reads the state without copying it.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.inner.state.lock().expect("state lock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(e: Event) -> Stamped {
        Stamped { at_ms: 7, event: e }
    }

    #[test]
    fn events_drive_the_state_and_replay_to_the_same_state() {
        let events = vec![
            Event::SessionStarted {
                project: "shop".into(),
                context: "hoist".into(),
                namespace: "shop-dev".into(),
            },
            Event::BuildStarted {
                service: "web".into(),
            },
            Event::BuildFinished {
                service: "web".into(),
                image: "r/web:h-1".into(),
                duration_ms: 12,
                already_there: false,
            },
            Event::DeployStarted {
                service: "web".into(),
            },
            Event::Deployed {
                service: "web".into(),
                objects: 2,
                pruned: 0,
            },
            Event::NotReady {
                service: "web".into(),
                failed: true,
                reason: "crash".into(),
            },
            Event::Ready {
                service: "api".into(),
            },
        ];
        let mut st = State::default();
        for e in &events {
            st.apply(&ev(e.clone()));
        }
        let web = &st.services["web"];
        assert_eq!(web.build, Phase::Done);
        assert_eq!(web.build_ms, Some(12));
        assert_eq!(web.deploy, Phase::Done);
        assert_eq!(web.ready, Ready::Failed);
        assert_eq!(web.error.as_deref(), Some("crash"));
        assert_eq!(st.services["api"].ready, Ready::Ready);

        // Events survive a JSON round trip, and replaying them gives the same state.
        let json: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_string(&ev(e.clone())).unwrap())
            .collect();
        assert!(
            json[2].contains(r#""type":"build_finished""#),
            "{}",
            json[2]
        );
        let mut replayed = State::default();
        for j in json {
            replayed.apply(&serde_json::from_str(&j).unwrap());
        }
        assert_eq!(replayed, st);
        let snap: State = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        assert_eq!(snap, st);
    }

    #[test]
    fn logs_are_a_bounded_ring() {
        let mut st = State::default();
        for i in 0..(LOG_LINES_KEPT + 5) {
            st.apply(&ev(Event::Log {
                service: "w".into(),
                line: LogLine {
                    at_ms: 0,
                    pod: "p".into(),
                    container: "c".into(),
                    line: format!("line {i}"),
                },
            }));
        }
        let logs = &st.services["w"].logs;
        assert_eq!(logs.len(), LOG_LINES_KEPT);
        assert_eq!(logs.front().unwrap().line, "line 5");
    }

    #[tokio::test]
    async fn subscribers_see_what_the_state_saw() {
        let s = Session::new();
        let mut rx = s.subscribe();
        s.emit(Event::ServiceAdded {
            service: "a".into(),
        });
        let got = rx.recv().await.unwrap();
        assert_eq!(
            got.event,
            Event::ServiceAdded {
                service: "a".into()
            }
        );
        assert!(s.snapshot().services.contains_key("a"));
    }
}
