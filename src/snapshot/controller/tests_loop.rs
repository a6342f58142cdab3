//! The reconciler loop, in memory: [`Sim`] carries out steps as `apply` does, against the
//! counting fake driver, so crashes and lost replies can be replayed.

use super::*;

/// The API server and the driver, in memory: one snapshot, its data object, the fake driver.
struct Sim {
    snap: VolumeSnapshot,
    data: Option<VolumeSnapshotData>,
    driver: FakeDriver,
    events: Vec<PodEvent>,
}

impl Sim {
    fn new() -> Self {
        Self { snap: snap(), data: None, driver: fake_driver(), events: Vec::new() }
    }

    /// The same lookups as `gather`.
    async fn facts(&self) -> Facts {
        let data = data_to_read(&self.snap).map(|n| self.data.clone().filter(|d| d.name_any() == n));
        let read = driver_snapshot_to_read(&self.snap, "fake", data.as_ref().and_then(Option::as_ref));
        let driver_snapshot = match read {
            Some(id) => Some(self.driver.snapshot(&id).await.unwrap()),
            None => None,
        };
        Facts { driver_snapshot, data, ..facts() }
    }

    fn merge(&mut self, patch: &Value) {
        let mut v = serde_json::to_value(&self.snap).unwrap();
        json_patch::merge(&mut v, patch);
        self.snap = serde_json::from_value(v).unwrap();
    }

    /// Carries out one step as `apply` does; `Some` when the reconcile ends.
    async fn act(&mut self, step: Step) -> Option<Result<Requeue, SnapshotError>> {
        match step {
            Step::Wait(r) => return Some(Ok(r)),
            Step::Status { status, event, then } => {
                self.merge(&status_patch(&status));
                self.events.extend(event);
                return Some(Ok(then));
            }
            Step::RecordIntent { id, labels, status } => {
                self.merge(&intent_patch(&self.snap.clone(), &id, &labels));
                self.merge(&status_patch(&status));
            }
            Step::TakeSnapshot { id, volume_id, labels } => {
                match self.driver.create_snapshot(&id, &volume_id, &labels).await {
                    Ok(_) => {}
                    Err(e) if e.is_retryable() => return Some(Err(e)),
                    Err(e) => {
                        let step = refused(&self.snap, &e, now());
                        return Box::pin(self.act(step)).await;
                    }
                }
            }
            Step::CreateData(d) => {
                self.data.get_or_insert(*d);
            }
            Step::MarkDataReady { status, .. } => self.data.as_mut().unwrap().status = Some(status),
            Step::Bind { data_name, status, event } => {
                self.merge(&bind_patch(&self.snap.clone(), &data_name));
                self.merge(&status_patch(&status));
                self.events.extend(event);
                return Some(Ok(Requeue::Resync));
            }
        }
        None
    }

    async fn reconcile(&mut self) -> Result<Requeue, SnapshotError> {
        for _ in 0..MAX_STEPS {
            let step = decide(&self.snap, &self.facts().await);
            if let Some(done) = self.act(step).await {
                return done;
            }
        }
        Ok(Requeue::Soon)
    }
}

#[tokio::test]
async fn a_new_snapshot_becomes_ready_in_one_reconcile_and_then_settles() {
    let mut sim = Sim::new();
    assert_eq!(sim.reconcile().await, Ok(Requeue::Resync));
    let status = sim.snap.status.clone().unwrap();
    assert_eq!(state(&status), (CONDITION_READY, READY_MESSAGE));
    assert_eq!(sim.snap.spec.snapshot_data_name, id());
    assert!(points_at(sim.data.as_ref().unwrap(), &sim.snap));
    assert!(sim.data.as_ref().unwrap().status.as_ref().unwrap().is_ready());
    assert_eq!(sim.events.iter().map(|e| e.reason).collect::<Vec<_>>(), ["SnapshotReady"]);

    assert_eq!(sim.reconcile().await, Ok(Requeue::Resync));
    assert_eq!(sim.driver.creates.load(Ordering::SeqCst), 1);
    assert_eq!(sim.events.len(), 1, "a settled snapshot is not announced again");
}

#[tokio::test]
async fn a_reply_lost_after_the_driver_took_the_snapshot_does_not_take_a_second_one() {
    let mut sim = Sim::new();
    sim.driver.lose_reply.store(true, Ordering::SeqCst);
    assert!(sim.reconcile().await.is_err());
    assert_eq!(stork_id(&sim.snap), Some(id()), "the intent survives the failure");

    assert_eq!(sim.reconcile().await, Ok(Requeue::Resync));
    assert_eq!(sim.driver.creates.load(Ordering::SeqCst), 1, "found by id, not taken again");
    assert_eq!(sim.driver.taken.lock().unwrap().len(), 1);
    assert!(sim.snap.status.unwrap().is_ready());
}

#[tokio::test]
async fn a_crash_after_recording_intent_repeats_the_same_call_with_the_recorded_labels() {
    let mut sim = Sim::new();
    let step = decide(&sim.snap, &sim.facts().await);
    assert!(matches!(step, Step::RecordIntent { .. }));
    assert!(sim.act(step).await.is_none());
    // crash: a new leader starts from the object as stored
    let recorded = sim.snap.metadata.labels.clone().unwrap();
    assert_eq!(sim.reconcile().await, Ok(Requeue::Resync));
    let taken = sim.driver.taken.lock().unwrap();
    let (ds, labels) = &taken[&id()];
    assert_eq!((ds.volume_id.as_str(), labels), ("vol-db", &recorded));
    assert_eq!(sim.driver.creates.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_driver_snapshot_deleted_behind_storks_back_turns_a_ready_snapshot_into_an_error() {
    let mut sim = Sim::new();
    sim.reconcile().await.unwrap();
    sim.driver.delete_snapshot(&id()).await.unwrap();
    assert_eq!(sim.reconcile().await, Ok(Requeue::Resync));
    let status = sim.snap.status.clone().unwrap();
    assert!(!status.is_ready() && status.error().is_some_and(|m| m.contains("no longer exists")));
    assert_eq!(sim.driver.creates.load(Ordering::SeqCst), 1, "a vanished snapshot is not silently retaken");
}
