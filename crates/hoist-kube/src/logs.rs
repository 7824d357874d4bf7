//! Log streaming: follow every container of every pod matching a selector, including
//! pods (and container restarts) that appear later, as structured [`LogLine`]s.
//!
//! A watch on the pods starts one follower per container *instance* (pod uid, container,
//! container id), so a restarted container is followed afresh and an instance is never
//! followed twice. A follower asks for timestamps and, when its stream drops while the
//! container still runs, reconnects with `sinceTime` = the last timestamp seen and skips
//! the lines it already yielded at or before it: no duplicates after a reconnect.
//! Dropping the [`LogStream`] (or [`LogStream::stop`]) ends everything.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, LogParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// One line of container output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub pod: String,
    pub container: String,
    /// When the container wrote it (the runtime's timestamp); `None` if the cluster sent
    /// a line without one.
    pub time: Option<Timestamp>,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct LogStreamSpec {
    pub namespace: String,
    /// Label selector (`app=web`); empty: every pod of the namespace.
    pub selector: String,
    /// Only lines written at or after this instant (e.g. "now" when attaching to pods that
    /// already ran for a while); `None`: each container's whole log.
    pub since: Option<Timestamp>,
}

impl LogStreamSpec {
    pub fn new(namespace: &str, selector: &str) -> Self {
        Self {
            namespace: namespace.into(),
            selector: selector.into(),
            since: None,
        }
    }
}

/// Lines from all matching containers, in arrival order (per container in log order).
pub struct LogStream {
    rx: mpsc::Receiver<LogLine>,
    supervisor: JoinHandle<()>,
}

impl LogStream {
    pub fn start(client: Client, spec: LogStreamSpec) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let supervisor = tokio::spawn(supervise(client, spec, tx));
        Self { rx, supervisor }
    }

    /// The next line; `None` once stopped.
    pub async fn next(&mut self) -> Option<LogLine> {
        self.rx.recv().await
    }

    /// Stops following (every follower ends with the supervisor).
    pub fn stop(mut self) {
        self.supervisor.abort();
        self.rx.close();
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

/// A container instance: pod uid, container name, container id.
type Instance = (String, String, String);

async fn supervise(client: Client, spec: LogStreamSpec, tx: mpsc::Sender<LogLine>) {
    let pods: Api<Pod> = Api::namespaced(client, &spec.namespace);
    let mut cfg = watcher::Config::default();
    if !spec.selector.is_empty() {
        cfg = cfg.labels(&spec.selector);
    }
    let mut events = watcher(pods.clone(), cfg).default_backoff().boxed();
    let mut followed: HashSet<Instance> = HashSet::new();
    // Aborted with the supervisor: dropping a JoinSet aborts its tasks.
    let mut followers = JoinSet::new();
    loop {
        let ev = tokio::select! {
            ev = events.next() => match ev {
                Some(ev) => ev,
                None => return,
            },
            Some(_) = followers.join_next(), if !followers.is_empty() => continue,
        };
        let pod = match ev {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "log stream: pod watch error (retrying)");
                continue;
            }
        };
        let (Some(name), Some(uid)) = (pod.metadata.name.clone(), pod.metadata.uid.clone()) else {
            continue;
        };
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        for cs in statuses {
            let started = cs
                .state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some());
            let Some(id) = cs.container_id.clone().filter(|_| started) else {
                continue;
            };
            let key = (uid.clone(), cs.name.clone(), id.clone());
            if followed.insert(key) {
                followers.spawn(follow(
                    pods.clone(),
                    name.clone(),
                    uid.clone(),
                    cs.name.clone(),
                    id,
                    spec.since,
                    tx.clone(),
                ));
            }
        }
    }
}

/// Is this container instance still the pod's current, running one?
async fn still_running(pods: &Api<Pod>, pod: &str, uid: &str, container: &str, id: &str) -> bool {
    let Ok(Some(p)) = pods.get_opt(pod).await else {
        return false;
    };
    p.metadata.uid.as_deref() == Some(uid)
        && p.status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .iter()
            .any(|c| {
                c.name == container
                    && c.container_id.as_deref() == Some(id)
                    && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
}

/// What a follower has yielded so far: the last timestamp and how many lines carried it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Position {
    last: Option<Timestamp>,
    at_last: usize,
}

impl Position {
    /// Whether a line stamped `ts` is new (and if so, record it). On a reconnect with
    /// `sinceTime = last`, lines before `last` and the first `at_last` lines at `last`
    /// were yielded already.
    fn admit(&mut self, ts: Timestamp, seen_at_last: &mut usize) -> bool {
        match self.last {
            Some(last) if ts < last => false,
            Some(last) if ts == last => {
                if *seen_at_last < self.at_last {
                    *seen_at_last += 1;
                    false
                } else {
                    self.at_last += 1;
                    *seen_at_last += 1;
                    true
                }
            }
            _ => {
                self.last = Some(ts);
                self.at_last = 1;
                *seen_at_last = 1;
                true
            }
        }
    }
}

async fn follow(
    pods: Api<Pod>,
    pod: String,
    uid: String,
    container: String,
    id: String,
    since: Option<Timestamp>,
    tx: mpsc::Sender<LogLine>,
) {
    // Lines before `since` are dropped here too: the request can only ask by the second.
    let mut pos = Position {
        last: since,
        at_last: 0,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let params = LogParams {
            container: Some(container.clone()),
            follow: true,
            timestamps: true,
            // kube-rs rounds sinceTime to the *nearest* second: ask from the second
            // before, so nothing after `pos.last` is cut off; `admit` drops the overlap.
            since_time: pos.last.map(floor_second),
            ..Default::default()
        };
        match pods.log_stream(&pod, &params).await {
            Ok(stream) => {
                let mut lines = stream.lines();
                // Lines at `pos.last` seen in this connection (for the duplicate check).
                let mut seen_at_last = 0usize;
                while let Some(line) = lines.next().await {
                    let Ok(line) = line else { break };
                    let (time, text) = split_timestamp(&line);
                    if let Some(ts) = time
                        && !pos.admit(ts, &mut seen_at_last)
                    {
                        continue;
                    }
                    let l = LogLine {
                        pod: pod.clone(),
                        container: container.clone(),
                        time,
                        text: text.to_string(),
                    };
                    if tx.send(l).await.is_err() {
                        return; // nobody listens any more
                    }
                    backoff = Duration::from_millis(100);
                }
            }
            Err(e) => tracing::debug!(pod, container, error = %e, "log stream: cannot open"),
        }
        // The stream ended: the container stopped (a later instance gets its own
        // follower), the pod went away, or the connection dropped (reconnect).
        if !still_running(&pods, &pod, &uid, &container, &id).await {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn floor_second(t: Timestamp) -> Timestamp {
    let secs = t.as_second() - i64::from(t.subsec_nanosecond() < 0);
    Timestamp::from_second(secs).unwrap_or(t)
}

/// `2026-11-23T22:00:00.123456789Z text` → (time, text).
fn split_timestamp(line: &str) -> (Option<Timestamp>, &str) {
    if let Some((ts, rest)) = line.split_once(' ')
        && let Ok(t) = ts.parse::<Timestamp>()
    {
        return (Some(t), rest);
    }
    (None, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn splits_timestamps() {
        let (t, text) = split_timestamp("2026-11-23T22:00:00.123456789Z hello world");
        assert_eq!(t, Some(ts("2026-11-23T22:00:00.123456789Z")));
        assert_eq!(text, "hello world");
        assert_eq!(split_timestamp("no stamp here"), (None, "no stamp here"));
        assert_eq!(
            split_timestamp("2026-11-23T22:00:00Z "),
            (Some(ts("2026-11-23T22:00:00Z")), "")
        );
    }

    #[test]
    fn since_is_floored_to_the_second() {
        assert_eq!(
            floor_second(ts("2026-11-23T22:00:01.6Z")),
            ts("2026-11-23T22:00:01Z")
        );
        assert_eq!(
            floor_second(ts("2026-11-23T22:00:01Z")),
            ts("2026-11-23T22:00:01Z")
        );
    }

    #[test]
    fn reconnect_skips_what_was_yielded() {
        let a = ts("2026-11-23T22:00:00Z");
        let b = ts("2026-11-23T22:00:01Z");
        let mut pos = Position::default();
        let mut seen = 0;
        // First connection: a, b, b.
        assert!(pos.admit(a, &mut seen));
        assert!(pos.admit(b, &mut seen));
        assert!(pos.admit(b, &mut seen));
        // Reconnect with sinceTime=b (a server may also resend older lines): a, b, b, b, c.
        let mut seen = 0;
        assert!(!pos.admit(a, &mut seen));
        assert!(!pos.admit(b, &mut seen));
        assert!(!pos.admit(b, &mut seen));
        assert!(pos.admit(b, &mut seen), "a third line at b is new");
        let c = ts("2026-11-23T22:00:02Z");
        assert!(pos.admit(c, &mut seen));
        assert_eq!(pos.last, Some(c));
    }
}
