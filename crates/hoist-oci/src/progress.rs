//! The transfer progress a command shows on a terminal: one bar for all of its blob
//! transfers. Streamed uploads and downloads count bytes as they go over the wire, not when
//! a blob is done, so a long layer moves the bar (blobs sent from memory, configs mostly,
//! and file copies between OCI layouts count when done). The total is what the command
//! plans to move, less the blobs the destination turns out to have (present or mounted),
//! so the bar ends full.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for a command's transfers (draw it only on a terminal): a spinner with a byte
/// count until a total is planned ([`plan`]), then a bar with the rate and time left.
pub fn bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {bytes} transferred ({binary_bytes_per_sec})")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Say what happens before any byte moves (e.g. layers being built).
pub(crate) fn working(bar: &ProgressBar, what: String) {
    if bar.length().is_none()
        && let Ok(style) = ProgressStyle::with_template("{spinner} {msg}")
    {
        bar.set_style(style);
        bar.set_message(what);
    }
}

/// Add `bytes` to what `bar` expects to move; the first plan turns the spinner into a bar.
/// Callers serialise their plans (the client holds its bar's lock).
pub(crate) fn plan(bar: &ProgressBar, bytes: u64) {
    if bar.length().is_some() {
        bar.inc_length(bytes);
        return;
    }
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{wide_bar}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_length(bytes);
}

/// Take `bytes` a plan counted back off: the blob was there already, or was mounted.
pub(crate) fn unplan(bar: &ProgressBar, bytes: u64) {
    bar.dec_length(bytes);
}

/// The bytes one transfer attempt has put on the bar. An attempt dropped before
/// [`Sent::keep`] (it failed, or was cancelled) takes them back off, so a blob sent again
/// after an interruption is counted once; they are added to `lost` (bytes re-sent), which
/// the summary reports, with or without a bar.
pub(crate) struct Sent {
    counter: Counter,
    kept: bool,
    lost: Arc<AtomicU64>,
}

/// Counts bytes for a [`Sent`] from where they go out (a request body). A body can outlive
/// its attempt (hyper may keep sending after the server has answered): once the attempt is
/// over, what it still sends is not counted.
#[derive(Clone)]
pub(crate) struct Counter {
    bar: Option<ProgressBar>,
    /// Bytes counted, and whether the attempt is over.
    state: Arc<Mutex<(u64, bool)>>,
}

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        let mut st = self.state.lock().expect("progress lock");
        if !st.1 {
            if let Some(b) = &self.bar {
                b.inc(n);
            }
            st.0 += n;
        }
    }
}

impl Sent {
    pub(crate) fn new(bar: Option<ProgressBar>, lost: Arc<AtomicU64>) -> Self {
        Self {
            counter: Counter {
                bar,
                state: Arc::default(),
            },
            kept: false,
            lost,
        }
    }

    /// The transfer starts over from its first byte (a download whose registry would not
    /// resume it): what was counted comes off the bar and counts as re-sent.
    pub(crate) fn restart(&self) {
        let mut st = (self.counter.state.lock()).unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(b) = &self.counter.bar {
            b.dec(st.0);
        }
        self.lost.fetch_add(st.0, Ordering::Relaxed);
        st.0 = 0;
    }

    pub(crate) fn add(&self, n: u64) {
        self.counter.add(n);
    }

    pub(crate) fn counter(&self) -> Counter {
        self.counter.clone()
    }

    /// The attempt got through: its bytes stay.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        // Never panic in a drop: a poisoned count is still a count.
        let mut st = (self.counter.state.lock()).unwrap_or_else(std::sync::PoisonError::into_inner);
        st.1 = true;
        if !self.kept {
            if let Some(b) = &self.counter.bar {
                b.dec(st.0);
            }
            self.lost.fetch_add(st.0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_that_fails_takes_its_bytes_back() {
        let bar = ProgressBar::hidden();
        let resent = Arc::new(AtomicU64::new(0));
        plan(&bar, 1000);
        let body = {
            let lost = Sent::new(Some(bar.clone()), resent.clone());
            let body = lost.counter();
            body.add(600);
            assert_eq!(bar.position(), 600, "counted while it goes");
            body
        };
        assert_eq!(bar.position(), 0);
        // The failed attempt's body is still being sent: not counted any more.
        body.add(400);
        assert_eq!(bar.position(), 0);
        let ok = Sent::new(Some(bar.clone()), resent.clone());
        ok.add(1000);
        ok.keep();
        assert_eq!((bar.position(), bar.length()), (1000, Some(1000)));
        assert_eq!(
            resent.load(Ordering::Relaxed),
            600,
            "the failed attempt's bytes, once"
        );
        // Without a bar, the bytes of a failed attempt are still counted as re-sent.
        let no_bar = Sent::new(None, resent.clone());
        no_bar.add(50);
        no_bar.restart();
        no_bar.add(70);
        drop(no_bar);
        assert_eq!(resent.load(Ordering::Relaxed), 720);
    }

    #[test]
    fn blobs_already_there_leave_the_plan() {
        let bar = ProgressBar::hidden();
        assert_eq!(bar.length(), None);
        plan(&bar, 3000);
        unplan(&bar, 1000);
        assert_eq!(bar.length(), Some(2000));
    }
}
