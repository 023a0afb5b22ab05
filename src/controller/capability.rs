//! What the operator learned about the Collibra server: whether it answers
//! the assumed operations (DELETE, PUT). An answer is trusted for a limited
//! time only, then forgotten and learned again from the next request, so a
//! server (or a proxy in front of it) that is fixed is noticed without a
//! restart, and one that stops supporting an operation is noticed too.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::metrics::CollibraMetrics;

/// What is known about one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// No answer yet, or the last one expired: the operation is tried.
    Unknown,
    /// The server answered it.
    Supported,
    /// The server answered 404/405/501.
    Unsupported,
}

impl Support {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Support::Unknown => "unknown",
            Support::Supported => "supported",
            Support::Unsupported => "unsupported",
        }
    }

    /// Every state, so the metric shows all three.
    pub const ALL: [Support; 3] = [Support::Unknown, Support::Supported, Support::Unsupported];
}

/// A capability of the Collibra server, learned from answers and forgotten
/// `ttl` after the last one.
pub struct Capability {
    operation: &'static str,
    ttl: Duration,
    learned: Mutex<Option<(bool, Instant)>>,
    metrics: Arc<CollibraMetrics>,
}

impl Capability {
    /// An unknown capability of `operation` (the metric's label) whose
    /// answers are trusted for `ttl`.
    pub fn new(operation: &'static str, ttl: Duration, metrics: Arc<CollibraMetrics>) -> Self {
        metrics.capability(operation, Support::Unknown);
        Capability {
            operation,
            ttl,
            learned: Mutex::new(None),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(bool, Instant)>> {
        // Two plain values: a panic elsewhere cannot leave them inconsistent.
        self.learned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `None` until an answer told, and again once that answer is older
    /// than the TTL.
    pub fn get(&self) -> Option<bool> {
        let mut learned = self.lock();
        match *learned {
            Some((supported, at)) if at.elapsed() < self.ttl => Some(supported),
            Some(_) => {
                *learned = None;
                self.metrics.capability(self.operation, Support::Unknown);
                None
            }
            None => None,
        }
    }

    /// Records what the server answered (and restarts the TTL); returns
    /// whether this changed what was known.
    pub fn set(&self, supported: bool) -> bool {
        let mut learned = self.lock();
        let before = learned
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(s, _)| s);
        *learned = Some((supported, Instant::now()));
        self.metrics.capability(
            self.operation,
            if supported {
                Support::Supported
            } else {
                Support::Unsupported
            },
        );
        before != Some(supported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn metric_line(m: &Metrics, state: &str) -> String {
        let text = m.render();
        let needle =
            format!("collibra_oauth_collibra_capability{{operation=\"delete\",state=\"{state}\"}}");
        text.lines()
            .find(|l| l.starts_with(&needle))
            .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
            .to_owned()
    }

    #[test]
    fn answers_are_learned_and_forgotten_after_the_ttl() {
        let metrics = Arc::new(Metrics::default());
        let c = Capability::new("delete", Duration::from_millis(50), metrics.collibra());
        assert_eq!(c.get(), None);
        assert!(metric_line(&metrics, "unknown").ends_with(" 1"));

        assert!(c.set(false), "first answer changes what is known");
        assert!(!c.set(false), "the same answer again does not");
        assert_eq!(c.get(), Some(false));
        assert!(metric_line(&metrics, "unsupported").ends_with(" 1"));
        assert!(metric_line(&metrics, "unknown").ends_with(" 0"));

        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.get(), None, "expired answers are forgotten");
        assert!(metric_line(&metrics, "unknown").ends_with(" 1"));
        assert!(metric_line(&metrics, "unsupported").ends_with(" 0"));

        assert!(c.set(true), "learned again, differently");
        assert_eq!(c.get(), Some(true));
        assert!(metric_line(&metrics, "supported").ends_with(" 1"));
    }

    #[test]
    fn an_expired_answer_counts_as_unknown_when_set_again() {
        let c = Capability::new(
            "delete",
            Duration::from_millis(20),
            Metrics::default().collibra(),
        );
        c.set(false);
        std::thread::sleep(Duration::from_millis(40));
        // Not read in between: set still reports a change, so a warning
        // about an unsupported operation is logged once per TTL at most.
        assert!(c.set(false));
    }
}
