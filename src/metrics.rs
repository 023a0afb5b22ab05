//! Prometheus metrics served on `/metrics`. Labels never carry credentials:
//! only operations, HTTP statuses and condition reasons.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use collibra_client::{Observer, Operation};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{connection::metrics::ConnectionMetrics, controller::status::Reason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    ready: String,
    reason: String,
}

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    reconcile_errors: Family<ReasonLabel, Counter>,
    reconcile_duration: Histogram,
    collibra_requests: Family<RequestLabels, Counter>,
    collibra_duration: Family<OperationLabel, Histogram>,
    collibra_retries: Family<OperationLabel, Counter>,
    collibra_backoff: Family<OperationLabel, Counter<f64>>,
    objects: Family<ReadyLabels, Gauge>,
    kubernetes_requests: Family<MethodLabel, Counter>,
    states: Mutex<HashMap<String, Reason>>,
    /// Metrics labelled by connection.
    pub connections: ConnectionMetrics,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("collibra_oauth");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let reconcile_errors = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended short of Ready, by condition reason",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(latency_buckets());
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let collibra_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "collibra_requests",
            "Collibra requests by operation and HTTP status (\"error\" when no answer came)",
            collibra_requests.clone(),
        );
        let collibra_duration = Family::<OperationLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "collibra_request_duration_seconds",
            "Collibra request latency by operation",
            collibra_duration.clone(),
        );
        let collibra_retries = Family::<OperationLabel, Counter>::default();
        registry.register(
            "collibra_retries",
            "Collibra requests retried after a transient failure",
            collibra_retries.clone(),
        );
        let collibra_backoff = Family::<OperationLabel, Counter<f64>>::default();
        registry.register(
            "collibra_backoff_seconds",
            "Time spent waiting before Collibra retries",
            collibra_backoff.clone(),
        );
        let objects = Family::<ReadyLabels, Gauge>::default();
        registry.register(
            "objects",
            "OAuthClients by Ready status and reason",
            objects.clone(),
        );
        let kubernetes_requests = Family::<MethodLabel, Counter>::default();
        registry.register(
            "kubernetes_requests",
            "Requests the operator sent to the Kubernetes API server, by HTTP method (a watch counts once)",
            kubernetes_requests.clone(),
        );
        let connections = ConnectionMetrics::register(&mut registry);
        Metrics {
            registry,
            connections,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            collibra_requests,
            collibra_duration,
            collibra_retries,
            collibra_backoff,
            objects,
            kubernetes_requests,
            states: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts one reconcile and its duration.
    pub fn reconciled(&self, elapsed: Duration) {
        self.reconciles.inc();
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a reconcile that ended short of Ready.
    pub fn reconcile_error(&self, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records an object's Ready reason (for the objects gauge); returns the
    /// reason recorded before.
    pub fn set_state(&self, uid: &str, reason: Reason) -> Option<Reason> {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = states.insert(uid.to_owned(), reason);
        if previous == Some(reason) {
            return previous;
        }
        if let Some(p) = previous {
            self.objects.get_or_create(&ready_labels(p)).dec();
        }
        self.objects.get_or_create(&ready_labels(reason)).inc();
        previous
    }

    /// Counts a request to the Kubernetes API server.
    pub fn kubernetes_request(&self, method: &str) {
        self.kubernetes_requests
            .get_or_create(&MethodLabel {
                method: method.to_owned(),
            })
            .inc();
    }

    /// Forgets an object that is gone.
    pub fn forget(&self, uid: &str) {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = states.remove(uid) {
            self.objects.get_or_create(&ready_labels(p)).dec();
        }
    }
}

fn ready_labels(r: Reason) -> ReadyLabels {
    ReadyLabels {
        ready: if r == Reason::Registered {
            "True"
        } else {
            "False"
        }
        .to_owned(),
        reason: r.as_str().to_owned(),
    }
}

/// Lets the Collibra client report into these metrics.
pub struct CollibraObserver(pub Arc<Metrics>);

impl Observer for CollibraObserver {
    fn request_finished(&self, operation: Operation, outcome: &str, elapsed: Duration) {
        let op = operation.as_str().to_owned();
        self.0
            .collibra_requests
            .get_or_create(&RequestLabels {
                operation: op.clone(),
                status: outcome.to_owned(),
            })
            .inc();
        self.0
            .collibra_duration
            .get_or_create(&OperationLabel { operation: op })
            .observe(elapsed.as_secs_f64());
    }

    fn retry_scheduled(&self, operation: Operation, delay: Duration) {
        let label = OperationLabel {
            operation: operation.as_str().to_owned(),
        };
        self.0.collibra_retries.get_or_create(&label).inc();
        self.0
            .collibra_backoff
            .get_or_create(&label)
            .inc_by(delay.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_states_and_backoff() {
        let m = Arc::new(Metrics::default());
        let obs = CollibraObserver(m.clone());
        obs.request_finished(Operation::Register, "201", Duration::from_millis(20));
        obs.retry_scheduled(Operation::List, Duration::from_millis(500));
        m.set_state("u1", Reason::Registering);
        m.set_state("u1", Reason::Registered);
        m.set_state("u2", Reason::NameConflict);
        m.forget("u2");
        m.reconciled(Duration::from_millis(3));
        m.reconcile_error("CollibraUnavailable");
        m.kubernetes_request("PATCH");
        let text = m.render();
        for needle in [
            r#"collibra_oauth_collibra_requests_total{operation="register",status="201"} 1"#,
            r#"collibra_oauth_collibra_retries_total{operation="list"} 1"#,
            r#"collibra_oauth_collibra_backoff_seconds_total{operation="list"} 0.5"#,
            r#"collibra_oauth_objects{ready="True",reason="Registered"} 1"#,
            r#"collibra_oauth_objects{ready="False",reason="Registering"} 0"#,
            r#"collibra_oauth_objects{ready="False",reason="NameConflict"} 0"#,
            "collibra_oauth_reconciles_total 1",
            r#"collibra_oauth_reconcile_errors_total{reason="CollibraUnavailable"} 1"#,
            r#"collibra_oauth_kubernetes_requests_total{method="PATCH"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
