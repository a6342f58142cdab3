//! Schedules driven by a fake clock: policies parsed as Stork parses them, triggers through days,
//! month ends and leap years, catch-up after downtime, retention per type, suspension.

use std::{cell::Cell, collections::BTreeMap, time::Duration};

use jiff::{Timestamp, tz::TimeZone};
use kube::ResourceExt;

use super::{
    Clock,
    decide::{Observed, POLICY_TYPE_ANNOTATION, SCHEDULE_LABEL, SCHEDULE_NAME_ANNOTATION, decide},
    plan::*,
};
use crate::model::{crd::VolumeSnapshotSpec, schedule::*};

/// A clock tests move by hand.
struct FakeClock(Cell<Timestamp>);

impl FakeClock {
    fn at(text: &str) -> Self {
        Self(Cell::new(text.parse().unwrap()))
    }
    fn advance(&self, d: Duration) {
        self.0.set(self.0.get().checked_add(d).unwrap());
    }
}

// `Clock` needs Sync for the controller; the fake is only used on one thread.
unsafe impl Sync for FakeClock {}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        self.0.get()
    }
}

fn policy(item: PolicyItem) -> SchedulePolicy {
    SchedulePolicy::new("p", SchedulePolicyFields { policy: item })
}

fn schedule(created: &str) -> VolumeSnapshotSchedule {
    let spec = VolumeSnapshotScheduleSpec {
        template: SnapshotTemplate {
            spec: VolumeSnapshotSpec { persistent_volume_claim_name: "mysql-data".into(), ..Default::default() },
        },
        schedule_policy_name: "p".into(),
        ..Default::default()
    };
    let mut s = VolumeSnapshotSchedule::new("nightly", spec);
    s.metadata.namespace = Some("shop".into());
    s.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created.parse().unwrap()));
    s
}

/// The controller loop without an API server: every created snapshot is Ready at the next look.
struct Sim {
    schedule: VolumeSnapshotSchedule,
    policy: Option<SchedulePolicy>,
    snapshots: BTreeMap<String, Observed>,
    clock: FakeClock,
    timing: Timing,
    taken: Vec<(Timestamp, String)>,
}

impl Sim {
    fn new(created: &str, item: PolicyItem) -> Self {
        Self {
            schedule: schedule(created),
            policy: Some(policy(item)),
            snapshots: BTreeMap::new(),
            clock: FakeClock::at(created),
            timing: Timing::default(),
            taken: Vec::new(),
        }
    }

    fn look(&mut self) {
        let plan = decide(&self.schedule, self.policy.as_ref(), &self.snapshots, self.clock.now(), &self.timing);
        self.schedule.status = Some(plan.status);
        if let Some(s) = plan.create {
            self.taken.push((self.clock.now(), s.annotations()[POLICY_TYPE_ANNOTATION].clone()));
            self.snapshots.insert(s.name_any(), Observed::Ready);
        }
        for d in plan.delete {
            self.snapshots.remove(&d);
        }
    }

    /// Looks every `step` for `total`.
    fn run(&mut self, total: Duration, step: Duration) {
        let end = self.clock.now().checked_add(total).unwrap();
        while self.clock.now() < end {
            self.look();
            self.clock.advance(step);
        }
    }

    fn taken_at(&self) -> Vec<String> {
        self.taken.iter().map(|(t, _)| t.strftime("%Y-%m-%d %H:%M").to_string()).collect()
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn daily(time: &str) -> PolicyItem {
    PolicyItem { daily: Some(DailyPolicy { time: time.into(), ..Default::default() }), ..Default::default() }
}

fn interval(minutes: i64, retain: u32) -> PolicyItem {
    PolicyItem {
        interval: Some(IntervalPolicy { interval_minutes: minutes, retain: Some(retain), ..Default::default() }),
        ..Default::default()
    }
}

#[test]
fn kitchen_times_parse_as_go_parses_them() {
    assert_eq!(parse_kitchen("10:14PM"), Ok((22, 14)));
    assert_eq!(parse_kitchen("10:14pm"), Ok((22, 14)));
    assert_eq!(parse_kitchen("9:05AM"), Ok((9, 5)));
    assert_eq!(parse_kitchen("12:04AM"), Ok((0, 4)));
    assert_eq!(parse_kitchen("12:30PM"), Ok((12, 30)));
    for bad in ["13:00PM", "10:14", "22:14", "10:4PM", "0:30AM", "10:60PM", "10:14Pm", ""] {
        assert!(parse_kitchen(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn days_parse_from_storks_list_only() {
    use jiff::civil::Weekday::*;
    for (text, day) in
        [("Thursday", Thursday), ("thur", Thursday), ("Thurs", Thursday), ("sun", Sunday), ("Mon", Monday)]
    {
        assert_eq!(parse_day(text), Ok(day), "{text}");
    }
    for bad in ["Thursdays", "THU", "Tues", "7"] {
        assert!(parse_day(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn invalid_policies_are_refused_naming_the_field() {
    let cases = [
        (interval(0, 1), "intervalMinutes is 0"),
        (daily("25:00PM"), "daily.time"),
        (
            PolicyItem {
                weekly: Some(WeeklyPolicy { day: "Someday".into(), time: "1:00PM".into(), ..Default::default() }),
                ..Default::default()
            },
            "unknown day",
        ),
        (
            PolicyItem {
                monthly: Some(MonthlyPolicy { date: 32, time: "1:00PM".into(), ..Default::default() }),
                ..Default::default()
            },
            "monthly.date is 32",
        ),
        (PolicyItem::default(), "sets none"),
    ];
    for (p, want) in cases {
        let err = validate(&p).unwrap_err();
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
    assert_eq!(validate(&daily("10:14PM")), Ok(()));
}

#[test]
fn an_interval_policy_triggers_at_once_then_every_interval_and_keeps_its_retain() {
    let mut sim = Sim::new("2024-01-01T00:00:00Z", interval(60, 2));
    sim.run(5 * HOUR, MINUTE);
    assert_eq!(
        sim.taken_at(),
        ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 03:00", "2024-01-01 04:00"]
    );
    assert_eq!(sim.snapshots.len(), 2, "retain 2: {:?}", sim.snapshots.keys());
    assert_eq!(sim.schedule.status.as_ref().unwrap().items["Interval"].len(), 2);
}

#[test]
fn a_daily_policy_triggers_once_a_day_through_a_leap_day() {
    let mut sim = Sim::new("2024-02-27T12:00:00Z", daily("10:14PM"));
    sim.run(4 * DAY, MINUTE);
    assert_eq!(sim.taken_at(), ["2024-02-27 22:14", "2024-02-28 22:14", "2024-02-29 22:14", "2024-03-01 22:14"]);
}

#[test]
fn a_day_31_monthly_policy_rolls_over_as_go_does_in_common_and_leap_years() {
    let p = PolicyItem {
        monthly: Some(MonthlyPolicy { date: 31, time: "8:05PM".into(), ..Default::default() }),
        ..Default::default()
    };
    let mut sim = Sim::new("2023-01-01T00:00:00Z", p);
    sim.run(365 * DAY + 90 * DAY, HOUR / 4);
    let days: Vec<String> = sim.taken.iter().map(|(t, _)| t.strftime("%m-%d").to_string()).collect();
    assert_eq!(
        days,
        [
            "01-31", "03-03", "03-31", "05-01", "05-31", "07-01", "07-31", "08-31", "10-01", "10-31", "12-01", "12-31",
            "01-31", "03-02"
        ],
        "2023 rolls February 31 to March 3; leap 2024 to March 2"
    );
    // Looked at every 15 minutes: taken at the first look after 20:05.
    assert!(sim.taken.iter().all(|(t, _)| t.strftime("%H:%M").to_string() == "20:15"));
}

#[test]
fn a_weekly_policy_triggers_every_thursday() {
    let p = PolicyItem {
        weekly: Some(WeeklyPolicy { day: "Thur".into(), time: "10:13PM".into(), ..Default::default() }),
        ..Default::default()
    };
    let mut sim = Sim::new("2024-02-26T00:00:00Z", p);
    sim.run(21 * DAY, MINUTE);
    assert_eq!(sim.taken_at(), ["2024-02-29 22:13", "2024-03-07 22:13", "2024-03-14 22:13"]);
}

#[test]
fn wall_clock_times_are_read_in_the_configured_zone() {
    let mut sim = Sim::new("2024-01-10T00:00:00Z", daily("10:00AM"));
    sim.timing.zone = TimeZone::get("Europe/Berlin").unwrap();
    sim.run(DAY, MINUTE);
    assert_eq!(sim.taken_at(), ["2024-01-10 09:00"], "10:00 in Berlin is 09:00 UTC in winter");
}

#[test]
fn triggers_missed_while_stork_was_down_make_one_catch_up_snapshot_not_a_burst() {
    let mut sim = Sim::new("2024-03-01T00:00:00Z", daily("1:00AM"));
    sim.run(2 * HOUR, MINUTE);
    assert_eq!(sim.taken.len(), 1);
    sim.clock.advance(3 * DAY); // stork down over three 1:00 AMs
    sim.look();
    sim.look();
    assert_eq!(sim.taken.len(), 2, "one catch-up: {:?}", sim.taken_at());
}

#[test]
fn a_trigger_waits_while_the_previous_snapshot_is_in_progress() {
    let mut sim = Sim::new("2024-01-01T00:00:00Z", interval(1, 10));
    sim.look();
    let first = sim.snapshots.keys().next().unwrap().clone();
    sim.snapshots.insert(first.clone(), Observed::Pending);
    for _ in 0..5 {
        sim.clock.advance(MINUTE);
        let plan = decide(&sim.schedule, sim.policy.as_ref(), &sim.snapshots, sim.clock.now(), &sim.timing);
        assert!(plan.create.is_none(), "skipped while {first} is Pending");
        assert_eq!(plan.requeue, Duration::from_secs(5));
    }
    sim.snapshots.insert(first, Observed::Error("pool is full".into()));
    sim.look();
    assert_eq!(sim.taken.len(), 2, "the next trigger goes once the previous failed");
    let items = &sim.schedule.status.as_ref().unwrap().items["Interval"];
    assert_eq!((items[0].status.as_str(), items[0].message.as_str()), ("Error", "pool is full"));
}

#[test]
fn several_policy_types_keep_their_own_history_and_retention() {
    let p = PolicyItem {
        interval: Some(IntervalPolicy { interval_minutes: 60, retain: Some(3), ..Default::default() }),
        daily: Some(DailyPolicy { time: "11:00PM".into(), retain: Some(1), ..Default::default() }),
        ..Default::default()
    };
    let mut sim = Sim::new("2024-01-01T00:00:00Z", p);
    sim.run(3 * DAY, MINUTE);
    let items = &sim.schedule.status.as_ref().unwrap().items;
    assert_eq!((items["Interval"].len(), items["Daily"].len()), (3, 1));
    let daily: Vec<_> = sim.taken.iter().filter(|(_, t)| t == "Daily").collect();
    assert_eq!(daily.len(), 3, "one a day");
}

#[test]
fn a_suspended_schedule_takes_nothing_and_a_missing_policy_says_so() {
    let mut sim = Sim::new("2024-01-01T00:00:00Z", interval(1, 5));
    sim.schedule.spec.suspend = Some(true);
    sim.run(HOUR, MINUTE);
    assert!(sim.taken.is_empty());
    sim.schedule.spec.suspend = None;
    sim.policy = None;
    let plan = decide(&sim.schedule, None, &sim.snapshots, sim.clock.now(), &sim.timing);
    assert!(plan.create.is_none());
    assert!(
        plan.events.iter().any(|e| e.reason == "PolicyNotFound" && e.message.contains("SchedulePolicy p not found"))
    );
}

#[test]
fn retention_keeps_the_newest_ready_ones_and_drops_older_failures_but_never_pending() {
    let item =
        |name: &str, status: &str| ScheduledSnapshot { name: name.into(), status: status.into(), ..Default::default() };
    let items =
        [item("a", ERROR), item("b", READY), item("c", READY), item("d", ERROR), item("e", READY), item("f", PENDING)];
    assert_eq!(prune(&items, 2), ["a", "b"]);
    assert!(prune(&items, 3).is_empty());
    let pending_first = [item("p", PENDING), item("x", READY), item("y", READY)];
    assert_eq!(prune(&pending_first, 1), ["x"], "an older Pending item is never deleted");
}

#[test]
fn a_scheduled_snapshot_carries_storks_name_annotations_label_and_the_rules() {
    let mut s = schedule("2024-02-29T22:14:00Z");
    s.spec.pre_exec_rule = "freeze".into();
    let p = PolicyItem {
        daily: Some(DailyPolicy {
            time: "10:14PM".into(),
            options: [("portworx/snapshot-type".into(), "local".into())].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let snap = super::decide::snapshot(&s, &p, PolicyType::Daily, "2024-02-29T22:14:00Z".parse().unwrap());
    assert_eq!(snap.name_any(), "nightly-daily-2024-02-29-221400");
    assert_eq!(snap.spec.persistent_volume_claim_name, "mysql-data");
    let a = snap.annotations();
    assert_eq!(a[SCHEDULE_NAME_ANNOTATION], "nightly");
    assert_eq!(a[POLICY_TYPE_ANNOTATION], "Daily");
    assert_eq!(a["stork.libopenstorage.org/pre-snapshot-rule"], "freeze");
    assert!(!a.contains_key("stork.libopenstorage.org/post-snapshot-rule"));
    assert_eq!(a["portworx/snapshot-type"], "local");
    assert_eq!(snap.labels()[SCHEDULE_LABEL], "nightly");
}

#[test]
fn the_next_look_is_the_next_trigger() {
    let p = daily("10:14PM");
    let now: Timestamp = "2024-01-01T22:10:00Z".parse().unwrap();
    let next = next_instant(&p, PolicyType::Daily, None, now, &Timing::default()).unwrap();
    assert_eq!(next.to_string(), "2024-01-01T22:14:00Z");
    let s = schedule("2024-01-01T21:00:00Z");
    let plan = decide(&s, Some(&policy(p)), &BTreeMap::new(), now, &Timing::default());
    assert_eq!(plan.requeue, Duration::from_secs(4 * 60));
}

#[test]
fn a_test_minute_scales_interval_policies_only() {
    let mut sim = Sim::new("2024-01-01T00:00:00Z", interval(1, 2));
    sim.timing.minute = Duration::from_secs(5);
    sim.run(Duration::from_secs(20), Duration::from_secs(1));
    assert_eq!(sim.taken.len(), 4, "a 1-minute policy every 5 s: {:?}", sim.taken);
}
