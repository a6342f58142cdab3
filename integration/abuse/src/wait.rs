//! Waiting on state, never for a fixed time: an attack's threads wait for its [`Stop`] (up to a
//! pacing gap, so they end the moment the attack does) or [`until`] a condition holds (up to a
//! deadline, reporting whether it did).

use std::{
    sync::{Condvar, Mutex, PoisonError},
    time::{Duration, Instant},
};

/// The end of an attack, which every thread of it waits on between its steps.
#[derive(Debug, Default)]
pub struct Stop {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl Stop {
    /// A stop not yet given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends the attack: every waiting thread wakes at once.
    pub fn set(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    /// Whether the attack has ended.
    pub fn is_set(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the end of the attack, at most `gap` (a pacing interval); whether it ended.
    pub fn wait(&self, gap: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (stopped, _) = self.changed.wait_timeout_while(guard, gap, |s| !*s).unwrap_or_else(PoisonError::into_inner);
        *stopped
    }
}

/// Checks `holds` every `every` until it is true or `limit` has passed; whether it held.
pub fn until(limit: Duration, every: Duration, mut holds: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if holds() {
            return true;
        }
        std::thread::sleep(every.min(deadline.saturating_duration_since(Instant::now()))); // poll until the deadline
    }
    holds()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_as_soon_as_the_stop_is_set_not_after_its_gap() {
        let stop = Stop::new();
        let began = Instant::now();
        let ended = std::thread::scope(|s| {
            let waiter = s.spawn(|| stop.wait(Duration::from_secs(60)));
            assert!(until(Duration::from_secs(10), Duration::from_millis(1), || {
                stop.set();
                true
            }));
            waiter.join().unwrap()
        });
        assert!(ended && stop.is_set());
        assert!(began.elapsed() < Duration::from_secs(30), "woke only after {:?}", began.elapsed());
    }

    #[test]
    fn a_wait_without_a_stop_returns_false_after_its_gap() {
        assert!(!Stop::new().wait(Duration::from_millis(5)));
    }

    #[test]
    fn until_reports_a_condition_that_never_held() {
        assert!(!until(Duration::from_millis(20), Duration::from_millis(5), || false));
    }
}
