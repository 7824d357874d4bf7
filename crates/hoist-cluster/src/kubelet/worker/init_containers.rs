//! Init containers: they run one at a time, in order, each to a successful exit, before
//! any of the pod's containers start. A failed one is restarted with back-off (init
//! containers follow `OnFailure` when the pod says `Always`), unless the pod's
//! restartPolicy is `Never`: then the pod fails.
//!
//! An init container with `restartPolicy: Always` is a sidecar (Kubernetes' native
//! sidecars): once it has started (its startup probe passed, if any) the next one runs,
//! and it keeps running — restarted whenever it exits — next to the pod's containers.

use super::{Container, Pod};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Some init container has yet to succeed (or a sidecar to start).
    Running,
    /// All succeeded and every sidecar started (or there are none).
    Done,
    /// One failed and will not be restarted.
    Failed,
}

pub(super) fn is_sidecar(c: &Container) -> bool {
    c.spec["restartPolicy"] == "Always"
}

impl Pod {
    pub(super) fn init_progress(&self) -> Progress {
        for c in &self.init {
            if is_sidecar(c) {
                // A sidecar stopped because the pod's containers finished counts as through.
                if c.done.is_none() && !c.started() {
                    return Progress::Running;
                }
                continue;
            }
            match c.done {
                Some(0) => {}
                Some(_) => return Progress::Failed,
                None => return Progress::Running,
            }
        }
        Progress::Done
    }

    /// Advances the init containers: every sidecar reached so far and the first
    /// unfinished one. True once all of them are through (the pod's containers may run).
    pub(super) fn step_init_containers(&mut self) -> bool {
        if self.init_progress() == Progress::Failed {
            return false;
        }
        for i in 0..self.init.len() {
            let c = &self.init[i];
            if is_sidecar(c) {
                self.step_init(i, "Always");
                if !self.init[i].started() {
                    break;
                }
            } else if c.done != Some(0) {
                let rule = if self.restart_policy == "Never" {
                    "Never"
                } else {
                    "OnFailure"
                };
                self.step_init(i, rule);
                break;
            }
        }
        self.init_progress() == Progress::Done
    }

    /// Steps init container `i` with the container machinery (pull, start, probes, exit,
    /// back-off, events), which works on `containers`: lend it the init containers and
    /// the restart rule that applies to them.
    fn step_init(&mut self, i: usize, rule: &str) {
        let policy = std::mem::replace(&mut self.restart_policy, rule.to_string());
        std::mem::swap(&mut self.containers, &mut self.init);
        self.in_init = true;
        self.step(i);
        self.in_init = false;
        std::mem::swap(&mut self.containers, &mut self.init);
        self.restart_policy = policy;
    }

    /// Once every container of the pod has finished for good (a Job's pod), its sidecars
    /// are stopped (SIGTERM, then SIGKILL after the grace period, at most 5 s here) and not
    /// restarted, as the kubelet does.
    pub(super) fn stop_sidecars_when_done(&mut self) {
        if self.containers.is_empty() || self.containers.iter().any(|c| c.done.is_none()) {
            return;
        }
        let grace = self
            .pod
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(30)
            .min(5);
        for i in 0..self.init.len() {
            let Some(id) = self.init[i]
                .handle
                .as_ref()
                .filter(|_| is_sidecar(&self.init[i]))
                .map(|h| h.id.clone())
            else {
                continue;
            };
            let name = self.init[i].name.clone();
            self.in_init = true;
            self.event(
                Some(&name),
                "Normal",
                "Killing",
                &format!("Stopping container {name}"),
            );
            self.in_init = false;
            let code = match self
                .shared
                .runtime
                .kill(&id, std::time::Duration::from_secs(grace))
            {
                Ok(e) => e.code,
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "cannot stop a sidecar");
                    None
                }
            };
            // Recorded like any exit, under a rule that does not restart it.
            let policy = std::mem::replace(&mut self.restart_policy, "Never".to_string());
            std::mem::swap(&mut self.containers, &mut self.init);
            self.in_init = true;
            self.on_exit(i, Some(code.unwrap_or(137)));
            self.in_init = false;
            std::mem::swap(&mut self.containers, &mut self.init);
            self.restart_policy = policy;
        }
    }

    /// Sidecars count toward the pod's readiness, as in Kubernetes.
    pub(super) fn sidecars_ready(&self) -> bool {
        self.init
            .iter()
            .filter(|c| is_sidecar(c))
            .all(Container::ready)
    }
}
