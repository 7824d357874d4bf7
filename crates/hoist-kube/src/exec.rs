//! Running a command in a container through `pods/exec` and collecting everything it
//! says: exit code, stdout, stderr. The building block of live updates on any cluster.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How an exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The process's exit code; `None` when the cluster did not report one (the process
    /// could not be started at all: see `message`).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The cluster's message when it reported a failure other than an exit code.
    pub message: Option<String>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout then stderr, as text.
    pub fn output(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.stdout).into_owned();
        if !self.stderr.is_empty() {
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str(&String::from_utf8_lossy(&self.stderr));
        }
        if let Some(m) = &self.message
            && !s.contains(m.as_str())
        {
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str(m);
        }
        s
    }

    /// The program could not be found in the container (runc, containerd and shells say
    /// it in different words; 127 is the shell's "command not found").
    pub fn program_missing(&self) -> bool {
        if self.code == Some(0) {
            return false;
        }
        let text = self.output().to_ascii_lowercase();
        self.code == Some(127)
            || text.contains("executable file not found")
            || text.contains("no such file or directory") && text.contains("exec")
            || text.contains("not found") && text.contains("exec:")
    }
}

/// Errors of [`exec`]: the exec itself could not run (not a non-zero exit).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec {command:?} in pod {pod} container {container}: {source}")]
    Api {
        command: String,
        pod: String,
        container: String,
        #[source]
        source: kube::Error,
    },
    #[error("exec {command:?} in pod {pod} container {container} did not finish within {}s", .timeout.as_secs_f64())]
    Timeout {
        command: String,
        pod: String,
        container: String,
        timeout: Duration,
    },
}

/// Run `argv` in `container` of `pod`, feeding it `stdin` (then closing it), bounded by
/// `timeout`.
pub async fn exec(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    argv: &[String],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    let command = argv.join(" ");
    let run = async {
        let params = AttachParams::default()
            .container(container)
            .stdin(stdin.is_some())
            .stdout(true)
            .stderr(true);
        let mut p = pods
            .exec(pod, argv.to_vec(), &params)
            .await
            .map_err(|source| ExecError::Api {
                command: command.clone(),
                pod: pod.into(),
                container: container.into(),
                source,
            })?;
        let status = p.take_status();
        let writer = p.stdin().map(|mut w| {
            let data = stdin.unwrap_or_default();
            async move {
                // A process that exits without reading all of stdin is not our error.
                let _ = w.write_all(&data).await;
                let _ = w.shutdown().await;
            }
        });
        let mut out = p.stdout();
        let mut err = p.stderr();
        let read_out = async {
            let mut b = vec![];
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut b).await;
            }
            b
        };
        let read_err = async {
            let mut b = vec![];
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut b).await;
            }
            b
        };
        let write = async {
            if let Some(w) = writer {
                w.await
            }
        };
        let ((), stdout, stderr) = tokio::join!(write, read_out, read_err);
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        let _ = p.join().await;
        let (code, message) = match status {
            None => (
                None,
                Some("the cluster reported no exit status".to_string()),
            ),
            Some(s) if s.status.as_deref() == Some("Success") => (Some(0), None),
            Some(s) => {
                let code = s
                    .details
                    .as_ref()
                    .and_then(|d| d.causes.as_ref())
                    .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
                    .and_then(|c| c.message.as_deref())
                    .and_then(|m| m.parse().ok());
                let message = (code.is_none()).then_some(s.message).flatten();
                (code, message)
            }
        };
        Ok(ExecOutput {
            code,
            stdout,
            stderr,
            message,
        })
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(ExecError::Timeout {
            command,
            pod: pod.into(),
            container: container.into(),
            timeout,
        }),
    }
}
