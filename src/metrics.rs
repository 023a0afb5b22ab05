//! Prometheus metrics served on `/metrics`. Labels never carry credentials:
//! only operations, HTTP statuses, error kinds and condition reasons. They
//! are written, never read back: no decision depends on them.

use std::{sync::Arc, time::Duration};

use collibra_client::{Observer, Operation};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{
    connection::metrics::ConnectionMetrics,
    controller::{capability::Support, reasons::Reason},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: String,
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
struct CapabilityLabels {
    operation: String,
    state: String,
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
    reconcile_errors: Family<ErrorLabel, Counter>,
    reconcile_not_ready: Family<ReasonLabel, Counter>,
    reconcile_duration: Histogram,
    objects: Family<ReadyLabels, Gauge>,
    leader: Gauge,
    kubernetes_requests: Family<MethodLabel, Counter>,
    collibra: Arc<CollibraMetrics>,
    /// Metrics labelled by connection.
    pub connections: ConnectionMetrics,
}

/// What the Collibra client reports: requests, latency, retries. Registered
/// under `collibra_oauth_collibra_`.
pub struct CollibraMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<OperationLabel, Histogram>,
    retries: Family<OperationLabel, Counter>,
    backoff: Family<OperationLabel, Counter<f64>>,
    capability: Family<CapabilityLabels, Gauge>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

impl CollibraMetrics {
    fn new() -> Self {
        CollibraMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            retries: Family::default(),
            backoff: Family::default(),
            capability: Family::default(),
        }
    }

    /// Records what is known of an optional Collibra operation: 1 on its
    /// state, 0 on the others.
    pub fn capability(&self, operation: &str, state: Support) {
        for s in Support::ALL {
            self.capability
                .get_or_create(&CapabilityLabels {
                    operation: operation.to_owned(),
                    state: s.as_str().to_owned(),
                })
                .set(i64::from(s == state));
        }
    }

    /// Registers the families in `r`, the `collibra` sub-registry.
    fn register(&self, r: &mut Registry) {
        r.register("requests", REQUESTS_HELP, self.requests.clone());
        r.register(
            "request_duration_seconds",
            DURATION_HELP,
            self.duration.clone(),
        );
        r.register("retries", RETRIES_HELP, self.retries.clone());
        r.register("backoff_seconds", BACKOFF_HELP, self.backoff.clone());
        r.register("capability", CAPABILITY_HELP, self.capability.clone());
    }
}

const REQUESTS_HELP: &str =
    "Collibra requests by operation and HTTP status (\"error\" when no answer came)";
const DURATION_HELP: &str = "Collibra request latency by operation";
const RETRIES_HELP: &str = "Collibra requests retried after a transient failure";
const BACKOFF_HELP: &str = "Time spent waiting before Collibra retries";
const CAPABILITY_HELP: &str = "What the operator knows now of an optional Collibra operation (delete, update): 1 on its state; an answer is forgotten after one resync interval";

impl Observer for CollibraMetrics {
    fn request_finished(&self, operation: Operation, outcome: &str, elapsed: Duration) {
        let op = operation.as_str().to_owned();
        self.requests
            .get_or_create(&RequestLabels {
                operation: op.clone(),
                status: outcome.to_owned(),
            })
            .inc();
        self.duration
            .get_or_create(&OperationLabel { operation: op })
            .observe(elapsed.as_secs_f64());
    }

    fn retry_scheduled(&self, operation: Operation, delay: Duration) {
        let label = OperationLabel {
            operation: operation.as_str().to_owned(),
        };
        self.retries.get_or_create(&label).inc();
        self.backoff
            .get_or_create(&label)
            .inc_by(delay.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("collibra_oauth");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let reconcile_errors = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended with an error (and are retried with backoff), by kind of error",
            reconcile_errors.clone(),
        );
        let reconcile_not_ready = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "reconcile_not_ready",
            "Reconciles that ended short of Ready, by the Ready condition's reason",
            reconcile_not_ready.clone(),
        );
        let reconcile_duration = Histogram::new(latency_buckets());
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let objects = Family::<ReadyLabels, Gauge>::default();
        registry.register(
            "objects",
            "OAuthClients by Ready status and reason",
            objects.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads and reconciles (always, without leader election), 0 while it stands by",
            leader.clone(),
        );
        let kubernetes_requests = Family::<MethodLabel, Counter>::default();
        registry.register(
            "kubernetes_requests",
            "Requests the operator sent to the Kubernetes API server, by HTTP method (a watch counts once)",
            kubernetes_requests.clone(),
        );
        let collibra = Arc::new(CollibraMetrics::new());
        collibra.register(registry.sub_registry_with_prefix("collibra"));
        let connections = ConnectionMetrics::register(&mut registry);
        Metrics {
            registry,
            leader,
            connections,
            reconciles,
            reconcile_errors,
            reconcile_not_ready,
            reconcile_duration,
            objects,
            kubernetes_requests,
            collibra,
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

    /// The Collibra client's metrics, to hand to the client as its observer.
    pub fn collibra(&self) -> Arc<CollibraMetrics> {
        self.collibra.clone()
    }

    /// Counts one reconcile and its duration.
    pub fn reconciled(&self, elapsed: Duration) {
        self.reconciles.inc();
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a reconcile that ended with an error of kind `error`.
    pub fn reconcile_error(&self, error: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabel {
                error: error.to_owned(),
            })
            .inc();
    }

    /// Counts a reconcile that ended short of Ready with `reason`.
    pub fn not_ready(&self, reason: Reason) {
        self.reconcile_not_ready
            .get_or_create(&ReasonLabel {
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    /// Records whether this replica leads (and reconciles).
    pub fn leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Moves one object in the objects gauge from `from` (`None`: new) to `to`.
    pub fn object_moved(&self, from: Option<Reason>, to: Reason) {
        if let Some(p) = from {
            self.objects.get_or_create(&ready_labels(p)).dec();
        }
        self.objects.get_or_create(&ready_labels(to)).inc();
    }

    /// Removes an object last reported with `last` from the objects gauge.
    pub fn object_gone(&self, last: Reason) {
        self.objects.get_or_create(&ready_labels(last)).dec();
    }

    /// Counts a request to the Kubernetes API server.
    pub fn kubernetes_request(&self, method: &str) {
        self.kubernetes_requests
            .get_or_create(&MethodLabel {
                method: method.to_owned(),
            })
            .inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_states_and_backoff() {
        let m = Metrics::default();
        let obs = m.collibra();
        obs.request_finished(Operation::Register, "201", Duration::from_millis(20));
        obs.retry_scheduled(Operation::List, Duration::from_millis(500));
        m.object_moved(None, Reason::Registering);
        m.object_moved(Some(Reason::Registering), Reason::Registered);
        m.object_moved(None, Reason::NameConflict);
        m.object_gone(Reason::NameConflict);
        m.reconciled(Duration::from_millis(3));
        m.reconcile_error("KubernetesApi");
        m.not_ready(Reason::CollibraUnavailable);
        m.kubernetes_request("PATCH");
        let text = m.render();
        for needle in [
            r#"collibra_oauth_collibra_requests_total{operation="register",status="201"} 1"#,
            r#"collibra_oauth_collibra_request_duration_seconds_count{operation="register"} 1"#,
            r#"collibra_oauth_collibra_retries_total{operation="list"} 1"#,
            r#"collibra_oauth_collibra_backoff_seconds_total{operation="list"} 0.5"#,
            r#"collibra_oauth_objects{ready="True",reason="Registered"} 1"#,
            r#"collibra_oauth_objects{ready="False",reason="Registering"} 0"#,
            r#"collibra_oauth_objects{ready="False",reason="NameConflict"} 0"#,
            "collibra_oauth_reconciles_total 1",
            r#"collibra_oauth_reconcile_errors_total{error="KubernetesApi"} 1"#,
            r#"collibra_oauth_reconcile_not_ready_total{reason="CollibraUnavailable"} 1"#,
            r#"collibra_oauth_kubernetes_requests_total{method="PATCH"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
