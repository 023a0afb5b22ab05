//! Metrics labelled by connection: readiness, managed and unmanaged client
//! counts, and the Collibra requests of each connection.

use std::{sync::Arc, time::Duration};

use collibra_client::{Observer, Operation};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::metrics::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabel {
    connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionRequestLabels {
    connection: String,
    operation: String,
    status: String,
}

/// The connection families, registered with the process's other metrics.
#[derive(Default)]
pub struct ConnectionMetrics {
    ready: Family<ConnectionLabel, Gauge>,
    managed: Family<ConnectionLabel, Gauge>,
    unmanaged: Family<ConnectionLabel, Gauge>,
    requests: Family<ConnectionRequestLabels, Counter>,
}

impl ConnectionMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> ConnectionMetrics {
        let m = ConnectionMetrics::default();
        registry.register(
            "connection_ready",
            "1 when the connection's last check succeeded, else 0",
            m.ready.clone(),
        );
        registry.register(
            "managed_clients",
            "Clients in the connection's instance that an OAuthClient accounts for",
            m.managed.clone(),
        );
        registry.register(
            "unmanaged_clients",
            "Clients in the connection's instance that no OAuthClient accounts for",
            m.unmanaged.clone(),
        );
        registry.register(
            "connection_requests",
            "Collibra requests by connection, operation and HTTP status",
            m.requests.clone(),
        );
        m
    }

    /// Records a check of `connection`.
    pub fn checked(&self, connection: &str, ready: bool, counts: Option<(u64, u64)>) {
        let label = ConnectionLabel {
            connection: connection.to_owned(),
        };
        self.ready.get_or_create(&label).set(i64::from(ready));
        if let Some((managed, unmanaged)) = counts {
            let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.managed.get_or_create(&label).set(to_i64(managed));
            self.unmanaged.get_or_create(&label).set(to_i64(unmanaged));
        }
    }

    /// Drops every series of a connection that is gone.
    pub fn forget(&self, connection: &str) {
        let label = ConnectionLabel {
            connection: connection.to_owned(),
        };
        self.ready.remove(&label);
        self.managed.remove(&label);
        self.unmanaged.remove(&label);
    }
}

/// Reports a connection's requests both in the process-wide Collibra
/// families and in the per-connection one.
pub struct ConnectionObserver {
    metrics: Arc<Metrics>,
    connection: String,
}

impl ConnectionObserver {
    /// An observer for `connection`'s client.
    pub fn new(metrics: Arc<Metrics>, connection: String) -> ConnectionObserver {
        ConnectionObserver {
            metrics,
            connection,
        }
    }
}

impl Observer for ConnectionObserver {
    fn request_finished(&self, operation: Operation, outcome: &str, elapsed: Duration) {
        self.metrics
            .collibra()
            .request_finished(operation, outcome, elapsed);
        self.metrics
            .connections
            .requests
            .get_or_create(&ConnectionRequestLabels {
                connection: self.connection.clone(),
                operation: operation.as_str().to_owned(),
                status: outcome.to_owned(),
            })
            .inc();
    }

    fn retry_scheduled(&self, operation: Operation, delay: Duration) {
        self.metrics.collibra().retry_scheduled(operation, delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_labelled_by_connection_and_forgotten() {
        let m = Arc::new(Metrics::default());
        m.connections
            .checked("CollibraConnection/a/prod", true, Some((3, 2)));
        ConnectionObserver::new(m.clone(), "CollibraConnection/a/prod".into()).request_finished(
            Operation::List,
            "200",
            Duration::from_millis(5),
        );
        let text = m.render();
        for needle in [
            r#"collibra_oauth_connection_ready{connection="CollibraConnection/a/prod"} 1"#,
            r#"collibra_oauth_managed_clients{connection="CollibraConnection/a/prod"} 3"#,
            r#"collibra_oauth_unmanaged_clients{connection="CollibraConnection/a/prod"} 2"#,
            r#"collibra_oauth_connection_requests_total{connection="CollibraConnection/a/prod",operation="list",status="200"} 1"#,
            r#"collibra_oauth_collibra_requests_total{operation="list",status="200"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        m.connections.forget("CollibraConnection/a/prod");
        assert!(!m.render().contains("unmanaged_clients{"));
    }
}
