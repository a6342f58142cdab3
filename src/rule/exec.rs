//! Running one command in one pod through the `exec` subresource (a websocket through the API
//! server), and holding a background command open until it is released.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{AttachParams, AttachedProcess},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader},
    sync::oneshot,
    task::JoinHandle,
};

use super::plan::{self, TaskPod};

/// Bytes of a command's stderr kept for messages.
const STDERR_KEEP: usize = 4096;
/// Characters of stderr shown in a message.
pub const STDERR_SHOWN: usize = 512;

/// How one command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exit code 0.
    Success,
    /// Another exit code.
    Exit(i32),
    /// The exec failed without an exit code (the API server or kubelet said why).
    Error(String),
}

impl Ended {
    /// "exited with code 3" and the like, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Success => "succeeded".into(),
            Self::Exit(code) => format!("exited with code {code}"),
            Self::Error(m) => format!("failed: {m}"),
        }
    }
}

/// A finished command: how it ended and the end of its stderr.
#[derive(Debug, Clone)]
pub struct Finished {
    /// How it ended.
    pub ended: Ended,
    /// The last bytes of stderr, as text.
    pub stderr: String,
}

fn params(container: &str) -> AttachParams {
    let ap = AttachParams::default().stdin(false).stdout(true).stderr(true);
    if container.is_empty() { ap } else { ap.container(container) }
}

/// How an exec's status reads: success, an exit code, or the message.
pub(super) fn ended(status: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) -> Ended {
    let Some(s) = status else { return Ended::Error("the exec stream closed without a status".into()) };
    if s.status.as_deref() == Some("Success") {
        return Ended::Success;
    }
    let code = s
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.trim().parse().ok());
    // A kubelet sends the code as an `ExitCode` cause; some runtimes (KWOK's local exec) only
    // end the message with `exit status N`.
    let code = code.or_else(|| {
        let (_, tail) = s.message.as_deref()?.rsplit_once("exit status ")?;
        tail.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
    });
    match code {
        Some(code) => Ended::Exit(code),
        None => Ended::Error(s.message.unwrap_or_else(|| "unknown exec failure".into())),
    }
}

/// Reads a stream to its end, keeping its last `keep` bytes.
async fn tail(mut r: impl AsyncRead + Unpin, keep: usize) -> String {
    let (mut kept, mut buf) = (Vec::new(), [0u8; 4096]);
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > keep * 2 {
            kept.drain(..kept.len() - keep);
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Runs `sh -c command` once in a pod and waits for it (at most `timeout`). An exec that cannot
/// start is an `Err` (worth retrying); a command that ran is a [`Finished`].
pub async fn run_once(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    command: &str,
    timeout: Duration,
) -> Result<Finished, String> {
    let mut proc = pods.exec(pod, ["sh", "-c", command], &params(container)).await.map_err(|e| e.to_string())?;
    let (stdout, stderr, status) = (proc.stdout(), proc.stderr(), proc.take_status());
    let drain = async {
        if let Some(out) = stdout {
            tail(out, 0).await;
        }
    };
    let err = async {
        match stderr {
            Some(e) => tail(e, STDERR_KEEP).await,
            None => String::new(),
        }
    };
    let status = async {
        match status {
            Some(s) => s.await,
            None => None,
        }
    };
    let work = async { tokio::join!(drain, err, status) };
    match tokio::time::timeout(timeout, work).await {
        Ok(((), stderr, status)) => Ok(Finished { ended: ended(status), stderr }),
        Err(_) => {
            proc.abort();
            Ok(Finished {
                ended: Ended::Error(format!("did not finish within {}s", timeout.as_secs())),
                stderr: String::new(),
            })
        }
    }
}

/// A background command running in a pod, held open by this process.
pub struct Background {
    /// The task, as recorded on the owner.
    pub task: String,
    /// Where it runs.
    pub pod: TaskPod,
    /// Container.
    pub container: String,
    proc: AttachedProcess,
    reached: Option<oneshot::Receiver<()>>,
    stdout: JoinHandle<()>,
    stderr: JoinHandle<String>,
    status: Option<JoinHandle<Ended>>,
}

impl Background {
    /// Starts `sh -c command` in the pod; it counts as reached once it prints its marker.
    pub async fn start(
        pods: &Api<Pod>,
        pod: TaskPod,
        container: &str,
        task: &str,
        command: &str,
    ) -> Result<Self, String> {
        let mut proc =
            pods.exec(&pod.name, ["sh", "-c", command], &params(container)).await.map_err(|e| e.to_string())?;
        let (tx, rx) = oneshot::channel();
        let stdout = proc.stdout();
        let task_id = task.to_string();
        let stdout = tokio::spawn(async move {
            let mut tx = Some(tx);
            let Some(out) = stdout else { return };
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if plan::reached(&line, &task_id) {
                    let _ = tx.take().map(|t| t.send(()));
                }
            }
        });
        let stderr = proc.stderr();
        let stderr = tokio::spawn(async move {
            match stderr {
                Some(e) => tail(e, STDERR_KEEP).await,
                None => String::new(),
            }
        });
        let status = proc.take_status().map(|s| tokio::spawn(async move { ended(s.await) }));
        Ok(Self {
            task: task.to_string(),
            pod,
            container: container.to_string(),
            proc,
            reached: Some(rx),
            stdout,
            stderr,
            status,
        })
    }

    /// Waits until the command reached its placeholder. If it ends first, or `timeout` passes,
    /// says how.
    pub async fn wait_reached(&mut self, timeout: Duration) -> Result<(), Finished> {
        let Some(rx) = self.reached.take() else { return Ok(()) };
        let ended = async {
            match self.status.as_mut() {
                Some(h) => h.await.unwrap_or_else(|e| Ended::Error(e.to_string())),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = rx => match r {
                Ok(()) => Ok(()),
                // The reader ended without the marker: the command ended; its status says how.
                Err(_) => {
                    let ended = match self.status.take() {
                        Some(h) => h.await.unwrap_or_else(|e| Ended::Error(e.to_string())),
                        None => Ended::Error("ended before reaching the placeholder".into()),
                    };
                    Err(self.finished(ended).await)
                }
            },
            e = ended => {
                self.status = None;
                Err(self.finished(e).await)
            }
            _ = tokio::time::sleep(timeout) => Err(Finished {
                ended: Ended::Error(format!("did not reach {} within {}s", crate::model::rule::WAIT_PLACEHOLDER, timeout.as_secs())),
                stderr: String::new(),
            }),
        }
    }

    async fn finished(&mut self, ended: Ended) -> Finished {
        let stderr = tokio::time::timeout(Duration::from_secs(2), &mut self.stderr).await;
        let stderr = stderr.ok().and_then(Result::ok).unwrap_or_default();
        let ended = if ended == Ended::Success {
            Ended::Error("ended before reaching the placeholder (exit code 0)".into())
        } else {
            ended
        };
        Finished { ended, stderr }
    }

    /// Waits up to `timeout` for the command to end (after its release), then closes the stream.
    /// Returns how it ended, or `None` when it did not end in time.
    pub async fn finish(mut self, timeout: Duration) -> Option<Ended> {
        let out = match self.status.take() {
            Some(h) => tokio::time::timeout(timeout, h).await.ok().and_then(Result::ok),
            None => None,
        };
        self.close();
        out
    }

    /// Closes the exec stream without waiting.
    pub fn close(&self) {
        self.proc.abort();
        self.stdout.abort();
        self.stderr.abort();
    }
}
