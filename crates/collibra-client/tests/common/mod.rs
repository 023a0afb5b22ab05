//! Shared helpers for the integration tests (included with `mod common;`).

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::{Arc, Mutex};
use std::time::Duration;

use collibra_client::{
    Auth, CollibraClient, Config, Credential, Observer, Operation, SecretString,
};
use collibra_sim::{SimConfig, Simulator};

/// The simulator's default admin OAuth client.
pub const ADMIN_ID: &str = "operator";
pub const ADMIN_SECRET: &str = "operator-secret";

pub fn value(s: &str) -> Credential {
    Credential::Value(SecretString::from(s))
}

pub fn oauth() -> Auth {
    Auth::OAuth {
        client_id: value(ADMIN_ID),
        client_secret: value(ADMIN_SECRET),
    }
}

/// A configuration for `url` with short retry delays so tests run fast.
pub fn config_for(url: &str, auth: Auth) -> Config {
    let mut config = Config::new(url::Url::parse(url).expect("url"), auth);
    config.retry.base_delay = Duration::from_millis(10);
    config.retry.max_delay = Duration::from_millis(40);
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(5);
    config
}

pub async fn sim() -> Simulator {
    sim_with(SimConfig::default()).await
}

pub async fn sim_with(config: SimConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator starts")
}

/// A client for `sim` that records what the observer is told.
pub fn client(sim: &Simulator, auth: Auth) -> (CollibraClient, Arc<Recorder>) {
    client_with(config_for(&sim.url(), auth))
}

pub fn client_with(config: Config) -> (CollibraClient, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let client = CollibraClient::new(config)
        .expect("client")
        .with_observer(recorder.clone());
    (client, recorder)
}

/// An [`Observer`] that remembers every call.
#[derive(Default)]
pub struct Recorder {
    pub finished: Mutex<Vec<(Operation, String)>>,
    pub retries: Mutex<Vec<(Operation, Duration)>>,
}

impl Recorder {
    /// Outcomes reported for `operation`, in order.
    pub fn outcomes(&self, operation: Operation) -> Vec<String> {
        self.finished
            .lock()
            .expect("lock")
            .iter()
            .filter(|(op, _)| *op == operation)
            .map(|(_, outcome)| outcome.clone())
            .collect()
    }

    pub fn retries(&self, operation: Operation) -> usize {
        self.retries
            .lock()
            .expect("lock")
            .iter()
            .filter(|(op, _)| *op == operation)
            .count()
    }
}

impl Observer for Recorder {
    fn request_finished(&self, operation: Operation, outcome: &str, _elapsed: Duration) {
        self.finished
            .lock()
            .expect("lock")
            .push((operation, outcome.to_owned()));
    }

    fn retry_scheduled(&self, operation: Operation, delay: Duration) {
        self.retries.lock().expect("lock").push((operation, delay));
    }
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
