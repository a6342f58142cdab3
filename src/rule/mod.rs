//! The rule executor: runs a Stork `Rule`'s commands in an application's pods before or after a
//! snapshot, through the pods' `exec` subresource.
//!
//! A foreground action runs `sh -c <value>` in each selected pod and must exit 0 (retried a
//! bounded number of times). A background action keeps running while the snapshot is taken: its
//! `${WAIT_PLACEHOLDER}` becomes a small waiting script ([`plan::wait_script`]) that prints a
//! marker once reached and then blocks until its release file exists. The rule is done when every
//! background command printed its marker; [`Held::release`] creates the release files after the
//! snapshot (and on every failure path), so the commands end and, e.g., MySQL's read lock is
//! dropped.
//!
//! Crash safety: before a background command starts, the owner object records it in
//! [`PODS_WITH_RUNNING_CMDS`]. The controllers call [`Executor::recover`] before they act on an
//! object that carries the record (after a restart or a change of leader no window is open in
//! this process), and it releases every recorded command.
//!
//! This module knows nothing of the webhook or the extender; the snapshot controllers use it.

mod exec;
mod held;
pub mod plan;

use std::{fmt, time::Duration};

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, Resource, ResourceExt, api::ListParams};
use serde::de::DeserializeOwned;

pub use exec::{Ended, STDERR_SHOWN};
pub use held::Held;
pub use plan::{Phase, RunningTask, TaskPod};

use held::{clear, record, task_pod};

use crate::{knobs::PODS_WITH_RUNNING_CMDS, model::rule::Rule};

/// Timings and retries of rule commands.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Further attempts of a foreground command that failed (Stork retries for about a minute).
    pub retries: u32,
    /// Wait between attempts (Stork: 5 s).
    pub retry_interval: Duration,
    /// How long one command may run in one pod, and how long a background command may take to
    /// reach its placeholder (Stork: 15 minutes).
    pub pod_timeout: Duration,
    /// How long a released background command may take to end before its stream is closed.
    pub release_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retries: 2,
            retry_interval: Duration::from_secs(5),
            pod_timeout: Duration::from_secs(900),
            release_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a rule failed: what to show in a condition and an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The named rule does not exist.
    #[error("rule {namespace}/{name} not found")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The rule cannot run in this phase; the text says why.
    #[error("{0}")]
    Invalid(String),
    /// A command failed in a pod.
    #[error("{0}")]
    Command(CommandFailure),
    /// The API refused a read or write the rule needs.
    #[error("rule {rule}: {message}")]
    Api {
        /// The rule.
        rule: String,
        /// What failed.
        message: String,
    },
}

/// A command that failed in a pod: which, where, how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailure {
    /// The rule.
    pub rule: String,
    /// `namespace/name` of the pod.
    pub pod: String,
    /// The command, shortened.
    pub command: String,
    /// How it ended.
    pub ended: Ended,
    /// The end of its stderr.
    pub stderr: String,
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}: command {:?} in pod {} {}", self.rule, self.command, self.pod, self.ended.describe())?;
        if !self.stderr.trim().is_empty() {
            write!(f, "; stderr: {}", plan::truncate(&self.stderr, STDERR_SHOWN))?;
        }
        Ok(())
    }
}

/// Runs rules for the snapshot controllers.
#[derive(Clone)]
pub struct Executor {
    client: Client,
    settings: Settings,
}

impl Executor {
    /// An executor using `client` for pods and exec.
    pub fn new(client: Client, settings: Settings) -> Self {
        Self { client, settings }
    }

    /// Looks the rule up in `namespace`.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Rule, RuleError> {
        match Api::<Rule>::namespaced(self.client.clone(), namespace).get_opt(name).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(RuleError::NotFound { namespace: namespace.into(), name: name.into() }),
            Err(e) => Err(RuleError::Api { rule: name.into(), message: e.to_string() }),
        }
    }

    /// Runs `rule` for `owner` (whose namespace the pods are in). A pre rule's background commands
    /// are recorded on the owner first and come back held; on any failure everything started is
    /// released before the error returns.
    pub async fn run<K>(&self, owner_api: &Api<K>, owner: &K, rule: &Rule, phase: Phase) -> Result<Held, RuleError>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
    {
        let name = rule.name_any();
        plan::validate(rule, phase).map_err(RuleError::Invalid)?;
        let ns = owner.namespace().unwrap_or_default();
        let owner_uid = owner.meta().uid.clone().unwrap_or_default();
        let pods = Api::<Pod>::namespaced(self.client.clone(), &ns);
        let mut held = Held { tasks: Vec::new(), client: self.client.clone(), settings: self.settings.clone() };
        let mut recorded: Vec<RunningTask> = Vec::new();
        for (i, item) in rule.items().iter().enumerate() {
            let listed = pods
                .list(&ListParams::default().labels(&plan::label_selector(item)))
                .await
                .map_err(|e| RuleError::Api { rule: name.clone(), message: format!("listing pods: {e}") })?;
            let selected = plan::select_pods(&listed.items, item);
            if selected.is_empty() {
                tracing::info!(rule = %name, item = i + 1, "no Running pod matches the rule item's podSelector; skipped");
                continue;
            }
            for (j, action) in item.actions.iter().enumerate() {
                let targets = if action.run_in_single_pod { &selected[..1] } else { &selected[..] };
                let result = if action.background {
                    let tasks: Vec<RunningTask> = targets
                        .iter()
                        .map(|p| RunningTask {
                            task_id: plan::task_id(&owner_uid, i, j, p.metadata.uid.as_deref().unwrap_or_default()),
                            pods: vec![task_pod(p)],
                            container: item.container.clone(),
                        })
                        .collect();
                    recorded.extend(tasks.iter().cloned());
                    if let Err(e) = record(owner_api, owner, &recorded).await {
                        held.release(owner_api, owner).await;
                        return Err(RuleError::Api {
                            rule: name,
                            message: format!("recording background commands: {e}"),
                        });
                    }
                    self.start_background(&pods, &name, &tasks, &action.value, &mut held).await
                } else {
                    let runs = targets.iter().map(|p| self.foreground(&pods, &name, p, &item.container, &action.value));
                    join_all(runs).await.into_iter().collect::<Result<Vec<()>, _>>().map(|_| ())
                };
                if let Err(e) = result {
                    held.release(owner_api, owner).await;
                    return Err(e);
                }
            }
        }
        Ok(held)
    }

    /// Runs a foreground command in one pod until it exits 0, retrying as the settings allow.
    async fn foreground(
        &self,
        pods: &Api<Pod>,
        rule: &str,
        pod: &Pod,
        container: &str,
        command: &str,
    ) -> Result<(), RuleError> {
        let name = pod.name_any();
        let mut attempt = 0;
        loop {
            let finished = exec::run_once(pods, &name, container, command, self.settings.pod_timeout).await;
            let failure = match finished {
                Ok(f) if f.ended == Ended::Success => return Ok(()),
                Ok(f) => f,
                Err(e) => exec::Finished { ended: Ended::Error(e), stderr: String::new() },
            };
            if attempt >= self.settings.retries {
                return Err(RuleError::Command(CommandFailure {
                    rule: rule.into(),
                    pod: format!("{}/{name}", pod.namespace().unwrap_or_default()),
                    command: plan::truncate(command, 200),
                    ended: failure.ended,
                    stderr: failure.stderr,
                }));
            }
            attempt += 1;
            tracing::info!(rule, pod = %name, attempt, ended = %failure.ended.describe(), "rule command failed; retrying");
            tokio::time::sleep(self.settings.retry_interval).await;
        }
    }

    /// Installs the waiting script and starts each task's command, then waits until every one
    /// reached its placeholder.
    async fn start_background(
        &self,
        pods: &Api<Pod>,
        rule: &str,
        tasks: &[RunningTask],
        value: &str,
        held: &mut Held,
    ) -> Result<(), RuleError> {
        let failure = |pod: &TaskPod, command: &str, f: exec::Finished| {
            RuleError::Command(CommandFailure {
                rule: rule.into(),
                pod: format!("{}/{}", pod.namespace, pod.name),
                command: plan::truncate(command, 200),
                ended: f.ended,
                stderr: f.stderr,
            })
        };
        let started = held.tasks.len();
        for t in tasks {
            let pod = &t.pods[0];
            let install = plan::install_command();
            match exec::run_once(pods, &pod.name, &t.container, &install, self.settings.pod_timeout).await {
                Ok(f) if f.ended == Ended::Success => {}
                Ok(f) => return Err(failure(pod, "install the waiting script", f)),
                Err(e) => {
                    return Err(failure(
                        pod,
                        "install the waiting script",
                        exec::Finished { ended: Ended::Error(e), stderr: String::new() },
                    ));
                }
            }
            let command = plan::substitute(value, &t.task_id);
            let bg = exec::Background::start(pods, pod.clone(), &t.container, &t.task_id, &command)
                .await
                .map_err(|e| failure(pod, value, exec::Finished { ended: Ended::Error(e), stderr: String::new() }))?;
            tracing::info!(rule, pod = %pod.name, task = %t.task_id, "background command started");
            held.tasks.push(bg);
        }
        let timeout = self.settings.pod_timeout;
        let waits = held.tasks[started..].iter_mut().map(|bg| async move {
            let pod = bg.pod.clone();
            bg.wait_reached(timeout).await.map_err(|f| (pod, f))
        });
        for r in join_all(waits).await {
            if let Err((pod, f)) = r {
                return Err(failure(&pod, value, f));
            }
        }
        Ok(())
    }

    /// Releases every background command recorded on `owner` (left by a process that stopped
    /// mid-window) and clears the record. A pod that is gone or was replaced has nothing to release.
    pub async fn recover<K>(&self, owner_api: &Api<K>, owner: &K) -> Result<usize, String>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
    {
        let value = owner.annotations().get(PODS_WITH_RUNNING_CMDS).map(String::as_str);
        let tasks = plan::parse_running(value).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "clearing an unreadable record of running commands");
            Vec::new()
        });
        let mut released = 0;
        for t in &tasks {
            for p in &t.pods {
                let pods = Api::<Pod>::namespaced(self.client.clone(), &p.namespace);
                match pods.get_opt(&p.name).await {
                    Ok(Some(live)) if live.metadata.uid.as_deref() == Some(p.uid.as_str()) => {}
                    Ok(_) => continue,
                    Err(e) => return Err(format!("looking up pod {}/{}: {e}", p.namespace, p.name)),
                }
                let cmd = plan::release_command(&t.task_id);
                match exec::run_once(&pods, &p.name, &t.container, &cmd, self.settings.release_timeout).await {
                    Ok(f) if f.ended == Ended::Success => released += 1,
                    Ok(f) => {
                        return Err(format!("releasing task {} in pod {}: {}", t.task_id, p.name, f.ended.describe()));
                    }
                    Err(e) => return Err(format!("releasing task {} in pod {}: {e}", t.task_id, p.name)),
                }
            }
        }
        clear(owner_api, owner).await.map_err(|e| format!("clearing the record of running commands: {e}"))?;
        tracing::info!(released, "background commands left by an earlier leader released");
        Ok(released)
    }
}

#[cfg(test)]
mod tests;
