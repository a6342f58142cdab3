//! Stork's `SchedulePolicy` (cluster-scoped) and `VolumeSnapshotSchedule` (namespaced),
//! `stork.libopenstorage.org/v1alpha1`: snapshots on an interval, daily, weekly or monthly, with
//! retention per policy type.

// Several `printcolumn(type_ = "string", …)` in one `#[kube]` look like repeated attributes to
// clippy; they are separate columns.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use jiff::civil::Weekday;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default `retain` of an interval policy (Stork).
pub const DEFAULT_RETAIN_INTERVAL: u32 = 10;
/// Default `retain` of a daily policy (Stork).
pub const DEFAULT_RETAIN_DAILY: u32 = 30;
/// Default `retain` of a weekly policy (Stork).
pub const DEFAULT_RETAIN_WEEKLY: u32 = 7;
/// Default `retain` of a monthly policy (Stork).
pub const DEFAULT_RETAIN_MONTHLY: u32 = 12;

/// When to take snapshots. Several types may be set; each triggers and is retained on its own.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stork.libopenstorage.org",
    version = "v1alpha1",
    kind = "SchedulePolicy",
    plural = "schedulepolicies",
    no_spec,
    derive = "PartialEq",
    shortname = "schedpolicy",
    shortname = "sp"
)]
pub struct SchedulePolicyFields {
    /// The policy's schedules.
    #[serde(default)]
    pub policy: PolicyItem,
}

/// The schedules of a policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PolicyItem {
    /// Every `intervalMinutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<IntervalPolicy>,
    /// Every day at `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<DailyPolicy>,
    /// Every week on `day` at `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<WeeklyPolicy>,
    /// Every month on `date` at `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<MonthlyPolicy>,
}

/// A policy triggered every `intervalMinutes`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntervalPolicy {
    /// Minutes between snapshots (at least 1).
    #[serde(default)]
    pub interval_minutes: i64,
    /// Snapshots kept (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<u32>,
    /// Added to each snapshot's annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A policy triggered every day.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyPolicy {
    /// Time of day, Go's `time.Kitchen` form (`10:14PM`, case-insensitive).
    #[serde(default)]
    pub time: String,
    /// Snapshots kept (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<u32>,
    /// Added to each snapshot's annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A policy triggered every week.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeeklyPolicy {
    /// Day of the week (`Thursday`, `Thu`, `Thur`, `Thurs`, any case of Stork's list).
    #[serde(default)]
    pub day: String,
    /// Time of day, `time.Kitchen` form.
    #[serde(default)]
    pub time: String,
    /// Snapshots kept (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<u32>,
    /// Added to each snapshot's annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A policy triggered every month.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonthlyPolicy {
    /// Day of the month, 1..31; a date a month lacks rolls over into the next month (31 → 1 or
    /// 2 March, 3 in a leap year's February… as Go's `time.Date` normalises).
    #[serde(default)]
    pub date: i64,
    /// Time of day, `time.Kitchen` form.
    #[serde(default)]
    pub time: String,
    /// Snapshots kept (default 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<u32>,
    /// Added to each snapshot's annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// Snapshots of a claim on a policy's schedule.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stork.libopenstorage.org",
    version = "v1alpha1",
    kind = "VolumeSnapshotSchedule",
    plural = "volumesnapshotschedules",
    namespaced,
    status = "VolumeSnapshotScheduleStatus",
    derive = "PartialEq",
    shortname = "volumesnapshotschedule",
    shortname = "vss",
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.schedulePolicyName"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotScheduleSpec {
    /// The snapshot to take: `spec.persistentVolumeClaimName`.
    #[serde(default)]
    pub template: SnapshotTemplate,
    /// The cluster's `SchedulePolicy` to follow.
    #[serde(default)]
    pub schedule_policy_name: String,
    /// Stop triggering (snapshots taken stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// `Delete` (default): deleting the schedule deletes its snapshots; `Retain` keeps them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reclaim_policy: String,
    /// Rule run before each snapshot (the snapshot's pre-snapshot-rule annotation).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pre_exec_rule: String,
    /// Rule run after each snapshot.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub post_exec_rule: String,
}

/// The snapshot a schedule takes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SnapshotTemplate {
    /// A `VolumeSnapshot` spec.
    #[serde(default)]
    pub spec: super::crd::VolumeSnapshotSpec,
}

/// What a schedule took, per policy type (`Interval`, `Daily`, `Weekly`, `Monthly`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct VolumeSnapshotScheduleStatus {
    /// Snapshots by policy type, oldest first.
    #[serde(default)]
    pub items: BTreeMap<String, Vec<ScheduledSnapshot>>,
}

/// One snapshot a schedule took.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledSnapshot {
    /// The `VolumeSnapshot`'s name.
    pub name: String,
    /// When it was triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Time>,
    /// When it became Ready or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_timestamp: Option<Time>,
    /// `Pending`, `Ready` or `Error`.
    #[serde(default)]
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Whether it was deleted (retention).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// Parses Go's `time.Kitchen` (`3:04PM`, also lower case): hour 1..12, two-digit minute.
pub fn parse_kitchen(text: &str) -> Result<(i8, i8), String> {
    let bad = || format!("time {text:?} is not like 10:14PM (Go's time.Kitchen)");
    let t = text.trim();
    let (clock, half) = t.split_at(t.len().checked_sub(2).ok_or_else(bad)?);
    let pm = match half {
        "PM" | "pm" => true,
        "AM" | "am" => false,
        _ => return Err(bad()),
    };
    let (h, m) = clock.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 || !h.chars().chain(m.chars()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(1..=12).contains(&h) || m > 59 {
        return Err(bad());
    }
    Ok(((h % 12) + if pm { 12 } else { 0 }, m))
}

/// Parses a day of the week as Stork lists them (full, three-letter, `Thur`/`Thurs`; capitalised
/// or lower case).
pub fn parse_day(text: &str) -> Result<Weekday, String> {
    let lower = text.trim();
    let known = |names: &[&str]| names.iter().any(|n| lower == *n || lower == capitalise(n));
    let day = [
        (Weekday::Sunday, &["sunday", "sun"][..]),
        (Weekday::Monday, &["monday", "mon"]),
        (Weekday::Tuesday, &["tuesday", "tue"]),
        (Weekday::Wednesday, &["wednesday", "wed"]),
        (Weekday::Thursday, &["thursday", "thu", "thur", "thurs"]),
        (Weekday::Friday, &["friday", "fri"]),
        (Weekday::Saturday, &["saturday", "sat"]),
    ]
    .into_iter()
    .find(|(_, names)| known(names));
    day.map(|(d, _)| d).ok_or_else(|| format!("unknown day {text:?}: use Sunday, Mon, Thur, … as Stork does"))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

/// Why a policy cannot be used, naming the type and field; `Ok` when it can.
pub fn validate(p: &PolicyItem) -> Result<(), String> {
    if p.interval.is_none() && p.daily.is_none() && p.weekly.is_none() && p.monthly.is_none() {
        return Err("the policy sets none of interval, daily, weekly, monthly".into());
    }
    if let Some(i) = &p.interval
        && i.interval_minutes < 1
    {
        return Err(format!("interval.intervalMinutes is {}; it must be at least 1", i.interval_minutes));
    }
    if let Some(d) = &p.daily {
        parse_kitchen(&d.time).map_err(|e| format!("daily.{e}"))?;
    }
    if let Some(w) = &p.weekly {
        parse_kitchen(&w.time).map_err(|e| format!("weekly.{e}"))?;
        parse_day(&w.day).map_err(|e| format!("weekly.{e}"))?;
    }
    if let Some(m) = &p.monthly {
        parse_kitchen(&m.time).map_err(|e| format!("monthly.{e}"))?;
        if !(1..=31).contains(&m.date) {
            return Err(format!("monthly.date is {}; it must be 1..31", m.date));
        }
    }
    Ok(())
}
