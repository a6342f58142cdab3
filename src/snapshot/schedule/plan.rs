//! The pure half of the snapshot schedule controller: parsing and validating policies, when a
//! policy type is due, which snapshots retention removes, and the whole [`Plan`] for one
//! schedule at one instant. Time is an argument everywhere, so tests drive a fake clock.

use std::{collections::BTreeMap, time::Duration};

use jiff::{
    SignedDuration, Timestamp, ToSpan,
    civil::{Date, DateTime},
    tz::TimeZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::model::schedule::*;
pub use crate::model::schedule::{parse_day, parse_kitchen, validate};

/// A policy type, in Stork's order (the first due one is taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyType {
    /// Every N minutes.
    Interval,
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
    /// Every month.
    Monthly,
}

impl PolicyType {
    /// Every type, in trigger order.
    pub const ALL: [PolicyType; 4] = [Self::Interval, Self::Daily, Self::Weekly, Self::Monthly];

    /// `Interval`, `Daily`, …: the status key and the snapshot annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interval => "Interval",
            Self::Daily => "Daily",
            Self::Weekly => "Weekly",
            Self::Monthly => "Monthly",
        }
    }
}

/// How wall-clock policies read time, and how long a policy minute is.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The zone daily, weekly and monthly times are in (default UTC).
    pub zone: TimeZone,
    /// Length of one `intervalMinutes` minute: 60 s, except in tests (`--schedule-test-minute`).
    pub minute: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self { zone: TimeZone::UTC, minute: Duration::from_secs(60) }
    }
}

/// Which types a policy sets, in trigger order.
pub fn types(p: &PolicyItem) -> Vec<PolicyType> {
    PolicyType::ALL
        .into_iter()
        .filter(|t| match t {
            PolicyType::Interval => p.interval.is_some(),
            PolicyType::Daily => p.daily.is_some(),
            PolicyType::Weekly => p.weekly.is_some(),
            PolicyType::Monthly => p.monthly.is_some(),
        })
        .collect()
}

/// How many snapshots of a type are kept (Stork's defaults 10/30/7/12; at least 1).
pub fn retain(p: &PolicyItem, t: PolicyType) -> usize {
    let (set, default) = match t {
        PolicyType::Interval => (p.interval.as_ref().and_then(|i| i.retain), DEFAULT_RETAIN_INTERVAL),
        PolicyType::Daily => (p.daily.as_ref().and_then(|i| i.retain), DEFAULT_RETAIN_DAILY),
        PolicyType::Weekly => (p.weekly.as_ref().and_then(|i| i.retain), DEFAULT_RETAIN_WEEKLY),
        PolicyType::Monthly => (p.monthly.as_ref().and_then(|i| i.retain), DEFAULT_RETAIN_MONTHLY),
    };
    set.filter(|r| *r > 0).unwrap_or(default) as usize
}

/// The options a type passes on (as snapshot annotations).
pub fn options(p: &PolicyItem, t: PolicyType) -> BTreeMap<String, String> {
    let o = match t {
        PolicyType::Interval => p.interval.as_ref().map(|i| &i.options),
        PolicyType::Daily => p.daily.as_ref().map(|i| &i.options),
        PolicyType::Weekly => p.weekly.as_ref().map(|i| &i.options),
        PolicyType::Monthly => p.monthly.as_ref().map(|i| &i.options),
    };
    o.cloned().unwrap_or_default()
}

fn at(date: Date, (h, m): (i8, i8), zone: &TimeZone) -> Option<Timestamp> {
    let dt = DateTime::from_parts(date, jiff::civil::time(h, m, 0, 0));
    zone.to_ambiguous_zoned(dt).compatible().ok().map(|z| z.timestamp())
}

/// The date `date` days into the month of `first` (day 1), rolling over as Go's `time.Date` does.
fn month_day(first: Date, date: i64) -> Option<Date> {
    first.checked_add((date - 1).days()).ok()
}

/// The latest scheduled instant of a wall-clock type at or before `now` (`None` for Interval or
/// an invalid policy).
pub fn previous_instant(p: &PolicyItem, t: PolicyType, now: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
    let today = now.to_zoned(zone.clone()).date();
    match t {
        PolicyType::Interval => None,
        PolicyType::Daily => {
            let hm = parse_kitchen(&p.daily.as_ref()?.time).ok()?;
            let c = at(today, hm, zone)?;
            if c <= now { Some(c) } else { at(today.yesterday().ok()?, hm, zone) }
        }
        PolicyType::Weekly => {
            let w = p.weekly.as_ref()?;
            let (hm, day) = (parse_kitchen(&w.time).ok()?, parse_day(&w.day).ok()?);
            let back = (today.weekday().to_sunday_zero_offset() - day.to_sunday_zero_offset()).rem_euclid(7);
            let date = today.checked_sub(i64::from(back).days()).ok()?;
            let c = at(date, hm, zone)?;
            if c <= now { Some(c) } else { at(date.checked_sub(7.days()).ok()?, hm, zone) }
        }
        PolicyType::Monthly => {
            let m = p.monthly.as_ref()?;
            let hm = parse_kitchen(&m.time).ok()?;
            let mut first = today.first_of_month();
            // A rolled-over date of last month can still lie ahead of `now`: look back until one
            // does not (at most three months).
            for _ in 0..3 {
                let c = at(month_day(first, m.date)?, hm, zone)?;
                if c <= now {
                    return Some(c);
                }
                first = first.checked_sub(1.month()).ok()?;
            }
            None
        }
    }
}

/// The next scheduled instant of a type after `now`, given its last trigger (for requeueing).
pub fn next_instant(
    p: &PolicyItem,
    t: PolicyType,
    last: Option<Timestamp>,
    now: Timestamp,
    timing: &Timing,
) -> Option<Timestamp> {
    match t {
        PolicyType::Interval => {
            let every = interval(p, timing)?;
            Some(last.map_or(now, |l| l.checked_add(every).unwrap_or(now)).max(now))
        }
        _ => {
            // The first instant after now: step a day at a time from the previous one (a month
            // at most), which keeps one rule for all three types.
            let mut probe = now;
            for _ in 0..40 {
                probe = probe.checked_add(SignedDuration::from_hours(24)).ok()?;
                if let Some(c) = previous_instant(p, t, probe, &timing.zone)
                    && c > now
                {
                    return Some(c);
                }
            }
            None
        }
    }
}

fn interval(p: &PolicyItem, timing: &Timing) -> Option<SignedDuration> {
    let minutes = p.interval.as_ref()?.interval_minutes;
    (minutes >= 1)
        .then(|| SignedDuration::try_from(timing.minute).unwrap_or(SignedDuration::from_secs(60)) * minutes as i32)
}

/// Whether type `t` is due at `now`: an interval has passed since its last snapshot (or it has
/// none), or a wall-clock instant passed since its last snapshot (or since the schedule was
/// created). Missed instants while stork was down make one snapshot, not one each.
pub fn due(
    p: &PolicyItem,
    t: PolicyType,
    last: Option<Timestamp>,
    created: Timestamp,
    now: Timestamp,
    timing: &Timing,
) -> bool {
    match t {
        PolicyType::Interval => match (interval(p, timing), last) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(every), Some(l)) => now.duration_since(l) >= every,
        },
        _ => previous_instant(p, t, now, &timing.zone).is_some_and(|c| c > last.unwrap_or(created)),
    }
}

/// Snapshot condition states, as the schedule records them.
pub const PENDING: &str = "Pending";
/// Ready.
pub const READY: &str = "Ready";
/// Failed (or vanished).
pub const ERROR: &str = "Error";

/// Which snapshots of one type retention deletes: every one older than the `retain`-th newest
/// Ready snapshot (failed ones included). Pending snapshots, and anything while fewer than
/// `retain` are Ready, stay.
pub fn prune(items: &[ScheduledSnapshot], retain: usize) -> Vec<String> {
    let ready: Vec<usize> = items.iter().enumerate().filter(|(_, s)| s.status == READY).map(|(i, _)| i).collect();
    if ready.len() <= retain {
        return Vec::new();
    }
    let oldest_kept = ready[ready.len() - retain];
    items[..oldest_kept].iter().filter(|s| s.status != PENDING).map(|s| s.name.clone()).collect()
}

/// Name of a scheduled snapshot, Stork's form: `<schedule>-<type>-<YYYY-MM-DD-HHMMSS>` (UTC).
pub fn snapshot_name(schedule: &str, t: PolicyType, now: Timestamp) -> String {
    let suffix = now.strftime("%Y-%m-%d-%H%M%S").to_string();
    let base = format!("{schedule}-{}", t.as_str().to_lowercase());
    let keep = 253usize.saturating_sub(suffix.len() + 1);
    format!("{}-{suffix}", &base[..base.len().min(keep)])
}

/// The last trigger of each type in a status.
pub fn last_triggers(status: &VolumeSnapshotScheduleStatus) -> BTreeMap<String, Timestamp> {
    status
        .items
        .iter()
        .filter_map(|(t, list)| {
            list.iter().filter_map(|s| s.creation_timestamp.as_ref().map(|c| c.0)).max().map(|m| (t.clone(), m))
        })
        .collect()
}

/// A `Time` for status fields.
pub fn time(t: Timestamp) -> Time {
    Time(t)
}

/// The next trigger of any of a policy's types after `now`, given a schedule's status (what
/// `kubectl stork get schedules` shows).
pub fn next_trigger(
    p: &PolicyItem,
    status: &VolumeSnapshotScheduleStatus,
    now: Timestamp,
    timing: &Timing,
) -> Option<Timestamp> {
    let last = last_triggers(status);
    types(p).into_iter().filter_map(|t| next_instant(p, t, last.get(t.as_str()).copied(), now, timing)).min()
}
