//! The signals that ask hoist to stop: SIGINT (Ctrl-C) and SIGTERM (`kill`, `timeout`,
//! systemd, CI runners cancelling a job). Both are handled the same way, cancelling the
//! work so that its temp files go; only the exit status says which one it was.

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Which stop signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl StopSignal {
    /// The shell's status for a process ended by this signal (128 + its number): 130 or
    /// 143, what a caller of hoist expects from an interrupted or terminated command.
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }
}

/// Listens for SIGINT and SIGTERM. Once created (inside a tokio runtime), neither signal
/// ends the process by default any more: the owner decides what they do.
pub struct StopSignals {
    int: Signal,
    term: Signal,
}

impl StopSignals {
    /// Must be called within a tokio runtime.
    pub fn install() -> io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// The next stop signal. Waits forever if the streams have closed (the runtime is
    /// shutting down), as a signal that never comes.
    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            Some(()) = self.int.recv() => StopSignal::Interrupt,
            Some(()) = self.term.recv() => StopSignal::Terminate,
            else => std::future::pending().await,
        }
    }
}
