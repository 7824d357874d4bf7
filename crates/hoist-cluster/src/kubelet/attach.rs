//! `pods/attach` over the same WebSocket channel protocol as exec (`kubectl attach`,
//! `kubectl run -i`, kube-rs `Api::attach`): the container's output from now on (channel 1
//! stdout, 2 stderr; a terminal's output is all stdout), the client's input into its stdin
//! (containers created with `stdin: true`), resizes into its terminal (`tty: true`), and a
//! Success status on channel 3 when the container's output ends. With `stdinOnce`, the
//! container's stdin is closed when the first attach that used it ends, as the kubelet does.

use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use super::exec::{Input, channel_session};

/// What the client asked to attach to.
pub(super) struct Attach {
    pub io: Arc<hoist_runtime::ContainerIo>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub stdin_once: bool,
}

pub(super) async fn session<S>(io: S, a: Attach)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    channel_session(io, move |out, input| {
        // Subscribed before anything is read from the client: what the input provokes is seen.
        let output = a.io.output.subscribe();
        let (gone_tx, gone_rx) = std::sync::mpsc::channel::<()>();
        {
            let (cio, want_stdin, stdin_once) = (a.io.clone(), a.stdin, a.stdin_once);
            std::thread::spawn(move || {
                while let Ok(msg) = input.recv() {
                    match msg {
                        Input::Stdin(data) if want_stdin => {
                            if let Err(e) = cio.write_stdin(&data) {
                                tracing::debug!(error = %e, "attach: stdin not written");
                            }
                        }
                        Input::CloseStdin if want_stdin && stdin_once => cio.close_stdin(),
                        Input::Resize { cols, rows } => {
                            if let Err(e) = cio.resize(cols, rows) {
                                tracing::debug!(error = %e, "attach: terminal resize");
                            }
                        }
                        _ => {}
                    }
                }
                let _ = gone_tx.send(());
            });
        }
        let tty = a.io.is_tty();
        loop {
            match output.recv_timeout(Duration::from_millis(200)) {
                Ok((stream, data)) => {
                    let (channel, wanted) = match stream {
                        hoist_runtime::Stream::Stdout => (1, a.stdout),
                        // A terminal has one output; kubectl asks for stdout only then.
                        hoist_runtime::Stream::Stderr if tty => (1, a.stdout),
                        hoist_runtime::Stream::Stderr => (2, a.stderr),
                    };
                    if wanted && !out.send(channel, &data) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if gone_rx.try_recv().is_ok() {
                        break;
                    }
                }
                // The container's output ended: it exited.
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if a.stdin && a.stdin_once {
            a.io.close_stdin();
        }
        out.finish(&json!({"metadata": {}, "status": "Success"}));
    })
    .await;
}
