//! Background commands held open while the snapshot is taken, their release, and the record of
//! them on the owner object.

use std::fmt;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Ended, RunningTask, Settings, TaskPod, exec, plan};
use crate::knobs::PODS_WITH_RUNNING_CMDS;

/// Background commands held open while the snapshot is taken. Release them with
/// [`Held::release`]; dropped unreleased (leadership lost mid-window), they are released from a
/// spawned task.
pub struct Held {
    pub(super) tasks: Vec<exec::Background>,
    pub(super) client: Client,
    pub(super) settings: Settings,
}

impl Held {
    /// Whether any background command is held.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Releases every held command, waits for each to end, and clears the owner's record.
    pub async fn release<K>(&mut self, owner_api: &Api<K>, owner: &K)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
    {
        let tasks = std::mem::take(&mut self.tasks);
        release_all(self.client.clone(), self.settings.clone(), tasks).await;
        if let Err(e) = clear(owner_api, owner).await {
            tracing::warn!(error = %e, "could not clear the record of running commands; the next reconcile releases them again");
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.tasks.is_empty() {
            return;
        }
        let tasks = std::mem::take(&mut self.tasks);
        let (client, settings) = (self.client.clone(), self.settings.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            tracing::warn!(tasks = tasks.len(), "releasing background commands of an interrupted rule");
            rt.spawn(release_all(client, settings, tasks));
        }
    }
}

pub(super) async fn release_all(client: Client, settings: Settings, tasks: Vec<exec::Background>) {
    let releases = tasks.into_iter().map(|bg| {
        let pods = Api::<Pod>::namespaced(client.clone(), &bg.pod.namespace);
        let timeout = settings.release_timeout;
        async move {
            let cmd = plan::release_command(&bg.task);
            match exec::run_once(&pods, &bg.pod.name, &bg.container, &cmd, timeout).await {
                Ok(f) if f.ended == Ended::Success => {}
                Ok(f) => {
                    tracing::warn!(task = %bg.task, pod = %bg.pod.name, ended = %f.ended.describe(), "release failed")
                }
                Err(e) => tracing::warn!(task = %bg.task, pod = %bg.pod.name, error = %e, "release failed"),
            }
            let (task, pod) = (bg.task.clone(), bg.pod.name.clone());
            match bg.finish(timeout).await {
                Some(ended) => tracing::info!(%task, %pod, ended = %ended.describe(), "background command ended"),
                None => tracing::warn!(%task, %pod, "background command did not end after its release; stream closed"),
            }
        }
    });
    join_all(releases).await;
}

pub(super) fn task_pod(p: &Pod) -> TaskPod {
    TaskPod {
        uid: p.metadata.uid.clone().unwrap_or_default(),
        namespace: p.namespace().unwrap_or_default(),
        name: p.name_any(),
    }
}

pub(super) async fn record<K>(api: &Api<K>, owner: &K, tasks: &[RunningTask]) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {PODS_WITH_RUNNING_CMDS: plan::render_running(tasks)}}});
    api.patch(&owner.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ())
}

pub(super) async fn clear<K>(api: &Api<K>, owner: &K) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {PODS_WITH_RUNNING_CMDS: null}}});
    match api.patch(&owner.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
