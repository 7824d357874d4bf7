//! What `kubectl attach` connects to: a running container's output as it is produced
//! (fanned out from the log pumps, so attaching never steals output from the log), its
//! stdin (a pipe hoist keeps the write end of, for containers created with `stdin: true`)
//! and its terminal (the pty master, for `tty: true`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use crate::logs::Stream;

/// How many output chunks may wait for a slow attached client before it is cut off
/// (the container's output, and its log, never wait for a client).
const SUBSCRIBER_BACKLOG: usize = 1024;

/// One chunk of a container's output.
pub type Chunk = (Stream, Vec<u8>);

/// Fans a container's output out to the attached clients.
#[derive(Default)]
pub struct OutputHub {
    inner: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    subscribers: Vec<SyncSender<Chunk>>,
    /// Output streams still open; at 0 the container's output has ended.
    open: usize,
    ended: bool,
}

impl OutputHub {
    fn opened(&self) {
        self.inner.lock().expect("hub poisoned").open += 1;
    }

    fn closed(&self) {
        let mut s = self.inner.lock().expect("hub poisoned");
        s.open = s.open.saturating_sub(1);
        if s.open == 0 {
            s.ended = true;
            // Dropping the senders ends every subscriber's stream.
            s.subscribers.clear();
        }
    }

    fn publish(&self, stream: Stream, data: &[u8]) {
        let mut s = self.inner.lock().expect("hub poisoned");
        s.subscribers
            .retain(|tx| match tx.try_send((stream, data.to_vec())) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    tracing::debug!("an attached client fell too far behind; detaching it");
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
    }

    /// Output from now on; the receiver disconnects when the container's output ends.
    pub fn subscribe(&self) -> Receiver<Chunk> {
        let (tx, rx) = sync_channel(SUBSCRIBER_BACKLOG);
        let mut s = self.inner.lock().expect("hub poisoned");
        if !s.ended {
            s.subscribers.push(tx);
        }
        rx
    }
}

/// A reader that also publishes what it reads to a hub (and tells it when it ends).
pub(crate) struct Tee<R> {
    inner: R,
    hub: Arc<OutputHub>,
    stream: Stream,
}

impl<R> Tee<R> {
    pub(crate) fn new(inner: R, hub: Arc<OutputHub>, stream: Stream) -> Self {
        hub.opened();
        Self { inner, hub, stream }
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hub.publish(self.stream, &buf[..n]);
        }
        Ok(n)
    }
}

impl<R> Drop for Tee<R> {
    fn drop(&mut self) {
        self.hub.closed();
    }
}

/// A running container's attachable I/O.
pub struct ContainerIo {
    pub output: Arc<OutputHub>,
    /// Where stdin goes: the pipe's write end or the terminal; `None` once closed or
    /// when the container has no stdin.
    stdin: Mutex<Option<File>>,
    /// The pty master of a `tty: true` container (for resizes).
    terminal: Option<File>,
}

impl ContainerIo {
    pub(crate) fn new(stdin: Option<File>, terminal: Option<File>) -> Self {
        Self {
            output: Arc::new(OutputHub::default()),
            stdin: Mutex::new(stdin),
            terminal,
        }
    }

    pub fn is_tty(&self) -> bool {
        self.terminal.is_some()
    }

    /// Whether stdin is (still) open for writing.
    pub fn has_stdin(&self) -> bool {
        self.stdin.lock().expect("stdin poisoned").is_some()
    }

    pub fn write_stdin(&self, data: &[u8]) -> io::Result<()> {
        match self.stdin.lock().expect("stdin poisoned").as_mut() {
            Some(f) => f.write_all(data),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the container's stdin is closed",
            )),
        }
    }

    /// Ends the container's stdin (`stdinOnce` after the first attach): it reads EOF.
    /// A terminal's stdin is the terminal itself, which stays; EOF there is Ctrl-D.
    pub fn close_stdin(&self) {
        if self.terminal.is_none() {
            self.stdin.lock().expect("stdin poisoned").take();
        }
    }

    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        match &self.terminal {
            Some(t) => {
                crate::sys::set_winsize(&std::os::fd::OwnedFd::from(t.try_clone()?), cols, rows)
            }
            None => Ok(()),
        }
    }
}

/// The attachable I/O of every container a runtime started, by container id.
#[derive(Default)]
pub struct IoTable {
    map: Mutex<HashMap<String, Arc<ContainerIo>>>,
}

impl IoTable {
    pub fn get(&self, id: &str) -> Option<Arc<ContainerIo>> {
        self.map.lock().expect("io table poisoned").get(id).cloned()
    }

    pub(crate) fn insert(&self, id: &str, io: Arc<ContainerIo>) {
        self.map
            .lock()
            .expect("io table poisoned")
            .insert(id.to_string(), io);
    }

    pub(crate) fn remove(&self, id: &str) {
        self.map.lock().expect("io table poisoned").remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_get_output_from_now_on_and_end_with_it() {
        let hub = Arc::new(OutputHub::default());
        let mut out = Tee::new(&b"early"[..], hub.clone(), Stream::Stdout);
        let mut buf = [0u8; 16];
        assert_eq!(out.read(&mut buf).unwrap(), 5);
        let rx = hub.subscribe();
        let mut err = Tee::new(&b"late"[..], hub.clone(), Stream::Stderr);
        assert_eq!(err.read(&mut buf).unwrap(), 4);
        assert_eq!(rx.try_recv().unwrap(), (Stream::Stderr, b"late".to_vec()));
        drop(out);
        assert!(rx.try_recv().is_err(), "nothing more yet");
        drop(err);
        assert!(
            matches!(rx.recv(), Err(std::sync::mpsc::RecvError)),
            "ended with the last stream"
        );
        assert!(
            hub.subscribe().recv().is_err(),
            "late subscribers end at once"
        );
    }

    #[test]
    fn a_client_that_falls_behind_is_cut_off_without_blocking_output() {
        let hub = Arc::new(OutputHub::default());
        let _open = Tee::new(&b""[..], hub.clone(), Stream::Stdout);
        let rx = hub.subscribe();
        for _ in 0..SUBSCRIBER_BACKLOG + 10 {
            hub.publish(Stream::Stdout, b"x");
        }
        let got = rx.try_iter().count();
        assert_eq!(got, SUBSCRIBER_BACKLOG);
        assert!(rx.recv().is_err(), "cut off");
    }

    #[test]
    fn stdin_closes_once_for_pipes_but_not_for_terminals() {
        let (r, w) = std::io::pipe().unwrap();
        let io = ContainerIo::new(Some(File::from(std::os::fd::OwnedFd::from(w))), None);
        io.write_stdin(b"hi").unwrap();
        io.close_stdin();
        assert!(!io.has_stdin());
        assert!(io.write_stdin(b"more").is_err());
        let mut got = String::new();
        let mut r = r;
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi", "EOF after close");
    }
}
