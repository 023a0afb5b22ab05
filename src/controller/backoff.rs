//! Per-object backoff and holds: how long an object waits after failures,
//! and why the operator's own Secret writes, which wake a reconcile at once,
//! do not cut that wait short.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::Rng;

/// The longest wait between two attempts on one object.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Failure counts and holds of every object, by uid.
#[derive(Default)]
pub struct Backoffs {
    /// Consecutive failures by object uid.
    failures: Mutex<HashMap<String, u32>>,
    /// After a Collibra failure, no new attempt for this object (at this
    /// generation) before the instant.
    holds: Mutex<HashMap<String, (Option<i64>, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each map is updated in one statement; a panic elsewhere cannot leave
    // it half-written, so a poisoned lock is safe to use.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The wait after the `n`th consecutive failure, before jitter: 1 s, 2 s,
/// 4 s, ... up to [`MAX_BACKOFF`].
fn exponential(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.clamp(1, 9).saturating_sub(1)).min(MAX_BACKOFF)
}

impl Backoffs {
    /// Counts a failure of `uid` and returns how long to wait before the
    /// next try: capped exponential backoff with ±20% jitter (so objects
    /// that failed together do not retry together), at least `floor`.
    pub fn next_delay(&self, uid: &str, floor: Option<Duration>) -> Duration {
        let n = {
            let mut f = lock(&self.failures);
            let n = f.entry(uid.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let jittered = exponential(n).mul_f64(rand::rng().random_range(0.8..1.2));
        floor.map_or(jittered, |f| jittered.max(f))
    }

    /// Forgets failures and the hold of `uid` after a success.
    pub fn reset(&self, uid: &str) {
        lock(&self.failures).remove(uid);
        lock(&self.holds).remove(uid);
    }

    /// The uids with failures or a hold kept.
    pub fn uids(&self) -> Vec<String> {
        let mut uids: Vec<String> = lock(&self.failures).keys().cloned().collect();
        uids.extend(lock(&self.holds).keys().cloned());
        uids
    }

    /// Holds further attempts on `uid` at `generation` for `delay`.
    pub fn hold(&self, uid: &str, generation: Option<i64>, delay: Duration) {
        self.hold_from(uid, generation, delay, Instant::now());
    }

    /// The time left on a hold of `uid`, if it still applies to `generation`
    /// (a spec change ends it: the user may have fixed the cause).
    pub fn held(&self, uid: &str, generation: Option<i64>) -> Option<Duration> {
        self.held_at(uid, generation, Instant::now())
    }

    fn hold_from(&self, uid: &str, generation: Option<i64>, delay: Duration, now: Instant) {
        lock(&self.holds).insert(uid.to_owned(), (generation, now + delay));
    }

    fn held_at(&self, uid: &str, generation: Option<i64>, now: Instant) -> Option<Duration> {
        let holds = lock(&self.holds);
        let (g, until) = holds.get(uid)?;
        (*g == generation)
            .then(|| until.checked_duration_since(now))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_one_second_up_to_the_cap() {
        let b = Backoffs::default();
        let mut previous = Duration::ZERO;
        for n in 1..=12u32 {
            let d = b.next_delay("u", None);
            let base = exponential(n);
            assert!(
                d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                "failure {n}: {d:?} not within 20% of {base:?}"
            );
            assert!(base >= previous, "failure {n}: {base:?} < {previous:?}");
            previous = base;
        }
        assert_eq!(exponential(1), Duration::from_secs(1));
        assert_eq!(exponential(2), Duration::from_secs(2));
        assert_eq!(exponential(9), Duration::from_secs(256));
        assert_eq!(exponential(10), Duration::from_secs(256));
        assert_eq!(exponential(u32::MAX), Duration::from_secs(256));
    }

    #[test]
    fn objects_back_off_independently_and_reset_starts_over() {
        let b = Backoffs::default();
        for _ in 0..6 {
            b.next_delay("busy", None);
        }
        assert!(b.next_delay("other", None) <= Duration::from_millis(1200));
        assert!(b.next_delay("busy", None) >= Duration::from_millis(51_200));
        b.reset("busy");
        assert!(b.next_delay("busy", None) <= Duration::from_millis(1200));
    }

    #[test]
    fn a_floor_lengthens_the_wait_but_never_shortens_it() {
        let b = Backoffs::default();
        let floor = Duration::from_secs(30);
        assert_eq!(b.next_delay("u", Some(floor)), floor);
        for _ in 0..10 {
            b.next_delay("v", None);
        }
        assert!(b.next_delay("v", Some(Duration::from_secs(1))) >= Duration::from_secs(200));
    }

    #[test]
    fn a_hold_applies_to_its_generation_until_it_expires() {
        let b = Backoffs::default();
        let t0 = Instant::now();
        b.hold_from("u", Some(2), Duration::from_secs(10), t0);
        assert_eq!(b.held_at("u", Some(2), t0), Some(Duration::from_secs(10)));
        assert_eq!(
            b.held_at("u", Some(2), t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(b.held_at("u", Some(2), t0 + Duration::from_secs(11)), None);
        // A new generation (the spec changed) is not held.
        assert_eq!(b.held_at("u", Some(3), t0), None);
        assert_eq!(b.held_at("u", None, t0), None);
        // Other objects are not held.
        assert_eq!(b.held_at("v", Some(2), t0), None);
    }

    #[test]
    fn reset_ends_a_hold_and_a_new_hold_replaces_the_old() {
        let b = Backoffs::default();
        let t0 = Instant::now();
        b.hold_from("u", Some(1), Duration::from_secs(60), t0);
        b.hold_from("u", Some(1), Duration::from_secs(5), t0);
        assert_eq!(b.held_at("u", Some(1), t0), Some(Duration::from_secs(5)));
        b.reset("u");
        assert_eq!(b.held_at("u", Some(1), t0), None);
        b.hold("u", Some(1), Duration::from_secs(60));
        assert!(b.held("u", Some(1)).is_some());
    }
}
