//! Client-side pacing of requests to Collibra, shared by all calls of one
//! client: an optional rate limit (GCRA: each request reserves the next
//! slot, first come first served, so a rate limit on the server is never
//! hit by the client's own burst) and a gate that holds every request after
//! the server answered 429 with `Retry-After` (one 429 pauses the whole
//! client, not just the call that saw it).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Shared pacing state.
#[derive(Debug)]
pub(crate) struct Limiter {
    /// Time between two requests; `None` without a rate limit.
    interval: Option<Duration>,
    /// Requests allowed back to back after an idle period.
    burst: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The theoretical arrival time of the next request (GCRA).
    next: Instant,
    /// No request starts before this (a server's Retry-After).
    paused_until: Instant,
}

impl Limiter {
    /// Paces to `rate` requests per second (none: only the 429 gate), with
    /// up to `burst` requests back to back.
    pub(crate) fn new(rate: Option<f64>, burst: u32) -> Limiter {
        let interval = rate
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        let now = Instant::now();
        Limiter {
            interval,
            burst: burst.max(1),
            state: Mutex::new(State {
                next: now,
                paused_until: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long the caller must wait before sending, having reserved its
    /// slot. Zero when it may send now.
    pub(crate) fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut s = self.lock();
        let mut start = now.max(s.paused_until);
        if let Some(interval) = self.interval {
            let tolerance = interval * (self.burst - 1);
            let tat = s.next.max(start);
            start = start.max(tat.checked_sub(tolerance).unwrap_or(tat));
            s.next = tat + interval;
        }
        start.saturating_duration_since(now)
    }

    /// Waits for the caller's slot.
    pub(crate) async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds every request for `wait` (the server asked to retry after it).
    pub(crate) fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut s = self.lock();
        if until > s.paused_until {
            s.paused_until = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate_after_the_burst() {
        let l = Limiter::new(Some(10.0), 2);
        let waits: Vec<u128> = (0..5).map(|_| l.reserve().as_millis()).collect();
        assert_eq!(waits, vec![0, 0, 100, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_only_the_burst() {
        let l = Limiter::new(Some(10.0), 1);
        assert_eq!(l.reserve(), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(l.reserve(), Duration::ZERO);
        assert_eq!(l.reserve().as_millis(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_rate_only_retry_after_holds() {
        let l = Limiter::new(None, 1);
        assert_eq!(l.reserve(), Duration::ZERO);
        assert_eq!(l.reserve(), Duration::ZERO);
        l.pause(Duration::from_secs(1));
        assert_eq!(l.reserve().as_millis(), 1000);
        // A shorter pause does not shorten a longer one.
        l.pause(Duration::from_millis(10));
        assert_eq!(l.reserve().as_millis(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_delays_the_paced_schedule() {
        let l = Limiter::new(Some(10.0), 1);
        l.pause(Duration::from_secs(1));
        assert_eq!(l.reserve().as_millis(), 1000);
        assert_eq!(l.reserve().as_millis(), 1100);
    }

    #[test]
    fn a_zero_or_invalid_rate_means_no_limit() {
        assert!(Limiter::new(Some(0.0), 1).interval.is_none());
        assert!(Limiter::new(Some(f64::NAN), 1).interval.is_none());
    }
}
