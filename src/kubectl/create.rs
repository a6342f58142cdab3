//! `kubectl stork create snapshot|schedule|policy` and `suspend|resume schedule`.

use std::io::Write;

use clap::{Args, Subcommand};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use super::{Error, api_error, output::Format, output::write_data};
use crate::model::{
    crd::VolumeSnapshot,
    schedule::{SchedulePolicy, VolumeSnapshotSchedule},
};

/// `create …`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// What to create.
    #[command(subcommand)]
    pub what: What,
}

/// The kinds `create` makes.
#[derive(Debug, Subcommand)]
pub enum What {
    /// A VolumeSnapshot of a claim, optionally application-consistent.
    Snapshot {
        /// Snapshot name.
        name: String,
        /// The claim to snapshot.
        #[arg(long)]
        pvc: String,
        /// Rule run before the snapshot.
        #[arg(long)]
        pre_rule: Option<String>,
        /// Rule run after the snapshot.
        #[arg(long)]
        post_rule: Option<String>,
    },
    /// A VolumeSnapshotSchedule of a claim on a policy.
    Schedule {
        /// Schedule name.
        name: String,
        /// The claim to snapshot.
        #[arg(long)]
        pvc: String,
        /// The SchedulePolicy to follow.
        #[arg(long)]
        policy: String,
        /// Rule run before each snapshot.
        #[arg(long)]
        pre_rule: Option<String>,
        /// Rule run after each snapshot.
        #[arg(long)]
        post_rule: Option<String>,
        /// Keep the snapshots when the schedule is deleted.
        #[arg(long)]
        retain_snapshots: bool,
    },
    /// A SchedulePolicy (cluster-scoped); set at least one of the schedules.
    Policy {
        /// Policy name.
        name: String,
        /// Every N minutes.
        #[arg(long)]
        interval: Option<i64>,
        /// Every day at this time (e.g. 10:14PM).
        #[arg(long)]
        daily: Option<String>,
        /// Every week on this day (e.g. Thursday); with --weekly-time.
        #[arg(long, requires = "weekly_time")]
        weekly_day: Option<String>,
        /// The weekly time (e.g. 10:13PM).
        #[arg(long, requires = "weekly_day")]
        weekly_time: Option<String>,
        /// Every month on this date (1..31); with --monthly-time.
        #[arg(long, requires = "monthly_time")]
        monthly_date: Option<i64>,
        /// The monthly time (e.g. 8:05PM).
        #[arg(long, requires = "monthly_date")]
        monthly_time: Option<String>,
        /// Snapshots kept per schedule type (default: Stork's 10/30/7/12).
        #[arg(long)]
        retain: Option<u32>,
    },
}

/// Creates `obj`, with the API's refusals (exists, /validate's reason, RBAC, missing CRD) explained.
pub(super) async fn create<K>(api: &Api<K>, obj: Value, what: &str, resource: &str) -> Result<K, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj).map_err(|e| Error::Usage(e.to_string()))?;
    api.create(&PostParams::default(), &obj).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 409 => Error::Failed(format!("{what} already exists")),
        // stork's /validate explains what is wrong; pass its words on.
        kube::Error::Api(s) if s.code == 400 || s.code == 422 => Error::Failed(s.message.clone()),
        e => api_error(e, &format!("create {what}"), resource),
    })
}

fn rules(pre: &Option<String>, post: &Option<String>) -> Value {
    let mut a = serde_json::Map::new();
    if let Some(r) = pre {
        a.insert("stork.libopenstorage.org/pre-snapshot-rule".into(), r.clone().into());
    }
    if let Some(r) = post {
        a.insert("stork.libopenstorage.org/post-snapshot-rule".into(), r.clone().into());
    }
    Value::Object(a)
}

/// Runs `create`.
pub async fn run(client: &Client, ns: &str, a: &CreateArgs, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    let done = |out: &mut dyn Write, text: String| writeln!(out, "{text}").map_err(super::output::io);
    match &a.what {
        What::Snapshot { name, pvc, pre_rule, post_rule } => {
            let api: Api<VolumeSnapshot> = Api::namespaced(client.clone(), ns);
            let obj = json!({"apiVersion": "volumesnapshot.external-storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "metadata": {"name": name, "annotations": rules(pre_rule, post_rule)},
                "spec": {"persistentVolumeClaimName": pvc}});
            let made = create(
                &api,
                obj,
                &format!("snapshot {ns}/{name}"),
                "volumesnapshots.volumesnapshot.external-storage.k8s.io",
            )
            .await?;
            match format {
                Format::Table => done(
                    out,
                    format!("volumesnapshot {name} created (claim {pvc}); see: kubectl stork get snapshots {name}"),
                ),
                f => write_data(&made, f, out),
            }
        }
        What::Schedule { name, pvc, policy, pre_rule, post_rule, retain_snapshots } => {
            let api: Api<VolumeSnapshotSchedule> = Api::namespaced(client.clone(), ns);
            let obj = json!({"apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "VolumeSnapshotSchedule",
                "metadata": {"name": name},
                "spec": {"schedulePolicyName": policy, "reclaimPolicy": if *retain_snapshots { "Retain" } else { "Delete" },
                         "preExecRule": pre_rule.clone().unwrap_or_default(), "postExecRule": post_rule.clone().unwrap_or_default(),
                         "template": {"spec": {"persistentVolumeClaimName": pvc}}}});
            let made =
                create(&api, obj, &format!("schedule {ns}/{name}"), "volumesnapshotschedules.stork.libopenstorage.org")
                    .await?;
            match format {
                Format::Table => {
                    done(out, format!("volumesnapshotschedule {name} created (claim {pvc}, policy {policy})"))
                }
                f => write_data(&made, f, out),
            }
        }
        What::Policy { name, interval, daily, weekly_day, weekly_time, monthly_date, monthly_time, retain } => {
            let mut policy = serde_json::Map::new();
            if let Some(m) = interval {
                policy.insert("interval".into(), json!({"intervalMinutes": m, "retain": retain}));
            }
            if let Some(t) = daily {
                policy.insert("daily".into(), json!({"time": t, "retain": retain}));
            }
            if let (Some(d), Some(t)) = (weekly_day, weekly_time) {
                policy.insert("weekly".into(), json!({"day": d, "time": t, "retain": retain}));
            }
            if let (Some(d), Some(t)) = (monthly_date, monthly_time) {
                policy.insert("monthly".into(), json!({"date": d, "time": t, "retain": retain}));
            }
            if policy.is_empty() {
                return Err(Error::Usage("set at least one of --interval, --daily, --weekly-day/--weekly-time, --monthly-date/--monthly-time".into()));
            }
            strip_nulls(&mut policy);
            let api: Api<SchedulePolicy> = Api::all(client.clone());
            let obj = json!({"apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "SchedulePolicy",
                "metadata": {"name": name}, "policy": policy});
            let made =
                create(&api, obj, &format!("schedule policy {name}"), "schedulepolicies.stork.libopenstorage.org")
                    .await?;
            match format {
                Format::Table => done(out, format!("schedulepolicy {name} created")),
                f => write_data(&made, f, out),
            }
        }
    }
}

fn strip_nulls(m: &mut serde_json::Map<String, Value>) {
    for v in m.values_mut() {
        if let Value::Object(inner) = v {
            inner.retain(|_, x| !x.is_null());
        }
    }
}

/// `suspend schedule NAME` / `resume schedule NAME`.
pub async fn suspend(client: &Client, ns: &str, name: &str, suspend: bool, out: &mut dyn Write) -> Result<(), Error> {
    let api: Api<VolumeSnapshotSchedule> = Api::namespaced(client.clone(), ns);
    let verb = if suspend { "suspend" } else { "resume" };
    let patch = json!({"spec": {"suspend": suspend}});
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => writeln!(out, "volumesnapshotschedule {name} {}", if suspend { "suspended" } else { "resumed" })
            .map_err(super::output::io),
        Err(kube::Error::Api(s)) if s.code == 404 && !s.message.contains("could not find the requested resource") => {
            let names = api.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
            let hint = super::did_you_mean(name, names.iter().filter_map(|s| s.metadata.name.as_deref()));
            Err(Error::NotFound(format!("schedule {name} not found in namespace {ns}{hint}")))
        }
        Err(e) => Err(api_error(
            e,
            &format!("{verb} (patch) volumesnapshotschedules in namespace {ns}"),
            "volumesnapshotschedules.stork.libopenstorage.org",
        )),
    }
}
