//! Init containers: they run one at a time, in order, each to a successful exit, before
//! any of the pod's containers start. A failed one is restarted with back-off (init
//! containers follow `OnFailure` when the pod says `Always`), unless the pod's
//! restartPolicy is `Never`: then the pod fails.

use super::Pod;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Some init container has yet to succeed.
    Running,
    /// All succeeded (or there are none).
    Done,
    /// One failed and will not be restarted.
    Failed,
}

impl Pod {
    pub(super) fn init_progress(&self) -> Progress {
        if self.init.iter().all(|c| c.done == Some(0)) {
            Progress::Done
        } else if self
            .init
            .iter()
            .any(|c| c.done.is_some_and(|code| code != 0))
        {
            Progress::Failed
        } else {
            Progress::Running
        }
    }

    /// Advances the first unfinished init container; true once all of them succeeded
    /// (the pod's containers may start).
    pub(super) fn step_init_containers(&mut self) -> bool {
        match self.init_progress() {
            Progress::Done => return true,
            Progress::Failed => return false,
            Progress::Running => {}
        }
        let Some(i) = self.init.iter().position(|c| c.done != Some(0)) else {
            return true;
        };
        // The container machinery (pull, start, exit, back-off, events) works on
        // `containers`: lend it the init containers, under the init restart rule.
        let rule = if self.restart_policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        let policy = std::mem::replace(&mut self.restart_policy, rule.to_string());
        std::mem::swap(&mut self.containers, &mut self.init);
        self.in_init = true;
        self.step(i);
        self.in_init = false;
        std::mem::swap(&mut self.containers, &mut self.init);
        self.restart_policy = policy;
        self.init_progress() == Progress::Done
    }
}
