//! `kubectl stork get snapshots|groupsnapshots|schedules|policies|rules [NAME]`.

use std::io::Write;

use clap::{Args, ValueEnum};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{Api, Client, ResourceExt, api::ListParams};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    Error, api_error, did_you_mean,
    output::{Format, Table, age, write_data},
};
use crate::model::{
    crd::VolumeSnapshot,
    group::GroupVolumeSnapshot,
    rule::Rule,
    schedule::{SchedulePolicy, VolumeSnapshotSchedule},
};

/// `get KIND [NAME]`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to list.
    pub kind: Kind,
    /// Only this one.
    pub name: Option<String>,
}

/// The kinds `get` lists.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// VolumeSnapshots.
    #[value(alias = "snapshot", alias = "svs")]
    Snapshots,
    /// GroupVolumeSnapshots.
    #[value(alias = "groupsnapshot", alias = "groupvolumesnapshots")]
    Groupsnapshots,
    /// VolumeSnapshotSchedules.
    #[value(alias = "schedule", alias = "volumesnapshotschedules")]
    Schedules,
    /// SchedulePolicies (cluster-scoped).
    #[value(alias = "policy", alias = "schedulepolicies")]
    Policies,
    /// Rules.
    #[value(alias = "rule")]
    Rules,
}

/// Lists `api`'s objects (one, when `name` is given), with RBAC, missing CRD and not-found
/// errors explained.
async fn list<K>(
    api: &Api<K>,
    name: Option<&str>,
    what: &str,
    resource: &str,
    ns: Option<&str>,
) -> Result<Vec<K>, Error>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let scope = ns.map_or(String::new(), |ns| format!(" in namespace {ns}"));
    let items = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(e, &format!("list {resource}{scope}"), resource))?
        .items;
    let Some(name) = name else { return Ok(items) };
    let found: Vec<K> = items.iter().filter(|o| o.meta().name.as_deref() == Some(name)).cloned().collect();
    if found.is_empty() {
        let hint = did_you_mean(name, items.iter().filter_map(|o| o.meta().name.as_deref()));
        return Err(Error::NotFound(format!("{what} {name} not found{scope}{hint}")));
    }
    Ok(found)
}

fn created<K: kube::Resource>(o: &K) -> Option<Timestamp> {
    o.meta().creation_timestamp.as_ref().map(|t| t.0)
}

fn print<K: Serialize>(
    items: &[K],
    format: Format,
    table: impl FnOnce() -> Table,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match format {
        Format::Table if items.is_empty() => writeln!(out, "No resources found.").map_err(super::output::io),
        Format::Table => table().write(out),
        f => write_data(&items, f, out),
    }
}

/// Runs `get`.
pub async fn run(client: &Client, ns: &str, a: &GetArgs, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    let now = Timestamp::now();
    let name = a.name.as_deref();
    match a.kind {
        Kind::Snapshots => {
            let api: Api<VolumeSnapshot> = Api::namespaced(client.clone(), ns);
            let items =
                list(&api, name, "snapshot", "volumesnapshots.volumesnapshot.external-storage.k8s.io", Some(ns))
                    .await?;
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
            let claims = pvcs.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
            let size = |claim: &str| {
                let c = claims.iter().find(|c| c.name_any() == claim);
                let cap =
                    c.and_then(|c| c.status.as_ref()).and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage"));
                cap.map_or("-".into(), |q| q.0.clone())
            };
            print(
                &items,
                format,
                || {
                    let mut t = Table::new(&["NAME", "PVC", "STATUS", "RESTORE SIZE", "AGE"]);
                    for s in &items {
                        let st = s.status.clone().unwrap_or_default();
                        let status = if st.is_ready() {
                            "Ready"
                        } else if st.error().is_some() {
                            "Error"
                        } else {
                            "Pending"
                        };
                        let claim = &s.spec.persistent_volume_claim_name;
                        t.row(vec![s.name_any(), claim.clone(), status.into(), size(claim), age(created(s), now)]);
                    }
                    t
                },
                out,
            )
        }
        Kind::Groupsnapshots => {
            let api: Api<GroupVolumeSnapshot> = Api::namespaced(client.clone(), ns);
            let items =
                list(&api, name, "group snapshot", "groupvolumesnapshots.stork.libopenstorage.org", Some(ns)).await?;
            print(
                &items,
                format,
                || {
                    let mut t = Table::new(&["NAME", "STAGE", "STATUS", "SNAPSHOTS", "AGE"]);
                    for g in &items {
                        let st = g.status.clone().unwrap_or_default();
                        t.row(vec![
                            g.name_any(),
                            st.stage,
                            st.status,
                            st.volume_snapshots.len().to_string(),
                            age(created(g), now),
                        ]);
                    }
                    t
                },
                out,
            )
        }
        Kind::Schedules => {
            let api: Api<VolumeSnapshotSchedule> = Api::namespaced(client.clone(), ns);
            let items =
                list(&api, name, "schedule", "volumesnapshotschedules.stork.libopenstorage.org", Some(ns)).await?;
            let policies: Api<SchedulePolicy> = Api::all(client.clone());
            let policies = policies.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
            print(
                &items,
                format,
                || {
                    let mut t =
                        Table::new(&["NAME", "POLICY", "SUSPENDED", "LAST TRIGGER", "NEXT TRIGGER", "RETAINED", "AGE"]);
                    for s in &items {
                        let st = s.status.clone().unwrap_or_default();
                        let last = st
                            .items
                            .values()
                            .flatten()
                            .filter_map(|i| i.creation_timestamp.as_ref().map(|t| t.0))
                            .max();
                        let policy = policies.iter().find(|p| p.name_any() == s.spec.schedule_policy_name);
                        let suspended = s.spec.suspend == Some(true);
                        let next = match (policy, suspended) {
                            (None, _) => "policy not found".into(),
                            (Some(_), true) => "-".into(),
                            (Some(p), false) => {
                                crate::snapshot::next_trigger(&p.spec.policy, &st, now, &Default::default())
                                    .map_or("-".into(), |n| format!("in {}", age(Some(now), n)))
                            }
                        };
                        let retained = st.items.values().flatten().filter(|i| i.status == "Ready").count();
                        t.row(vec![
                            s.name_any(),
                            s.spec.schedule_policy_name.clone(),
                            suspended.to_string(),
                            last.map_or("-".into(), |l| format!("{} ago", age(Some(l), now))),
                            next,
                            retained.to_string(),
                            age(created(s), now),
                        ]);
                    }
                    t
                },
                out,
            )
        }
        Kind::Policies => {
            let api: Api<SchedulePolicy> = Api::all(client.clone());
            let items = list(&api, name, "schedule policy", "schedulepolicies.stork.libopenstorage.org", None).await?;
            print(
                &items,
                format,
                || {
                    let mut t = Table::new(&["NAME", "INTERVAL", "DAILY", "WEEKLY", "MONTHLY", "AGE"]);
                    for p in &items {
                        let p2 = &p.spec.policy;
                        let retain = |r: Option<u32>| r.map_or(String::new(), |r| format!(" (keep {r})"));
                        t.row(vec![
                            p.name_any(),
                            p2.interval.as_ref().map_or("-".into(), |i| {
                                format!("every {} min{}", i.interval_minutes, retain(i.retain))
                            }),
                            p2.daily.as_ref().map_or("-".into(), |d| format!("{}{}", d.time, retain(d.retain))),
                            p2.weekly
                                .as_ref()
                                .map_or("-".into(), |w| format!("{} {}{}", w.day, w.time, retain(w.retain))),
                            p2.monthly
                                .as_ref()
                                .map_or("-".into(), |m| format!("day {} {}{}", m.date, m.time, retain(m.retain))),
                            age(created(p), now),
                        ]);
                    }
                    t
                },
                out,
            )
        }
        Kind::Rules => {
            let api: Api<Rule> = Api::namespaced(client.clone(), ns);
            let items = list(&api, name, "rule", "rules.stork.libopenstorage.org", Some(ns)).await?;
            print(
                &items,
                format,
                || {
                    let mut t = Table::new(&["NAME", "ITEMS", "ACTIONS", "BACKGROUND", "AGE"]);
                    for r in &items {
                        let actions: Vec<_> = r.items().iter().flat_map(|i| &i.actions).collect();
                        let bg = actions.iter().filter(|a| a.background).count();
                        t.row(vec![
                            r.name_any(),
                            r.items().len().to_string(),
                            actions.len().to_string(),
                            bg.to_string(),
                            age(created(r), now),
                        ]);
                    }
                    t
                },
                out,
            )
        }
    }
}
