//! Ory Hydra as a process: in-memory database, admin API on a free port,
//! requests counted from its request log.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A running `hydra serve all`; killed when dropped.
pub struct Hydra {
    child: Child,
    admin_port: u16,
    log: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Hydra {
    /// Starts Hydra from `bin` with `DSN=memory`, logging JSON to `log`, and
    /// waits until its admin API answers `/health/ready`.
    pub async fn start(bin: &Path, log: PathBuf, http: &reqwest::Client) -> anyhow::Result<Hydra> {
        let admin_port = free_port()?;
        let public_port = free_port()?;
        let file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .args(["serve", "all", "--dev", "--sqa-opt-out"])
            .env("DSN", "memory")
            // Without a system secret every client POST answers 500.
            .env("SECRETS_SYSTEM", "collibra-oauth-bench-peer-system-secret")
            .env("SERVE_ADMIN_HOST", "127.0.0.1")
            .env("SERVE_ADMIN_PORT", admin_port.to_string())
            .env("SERVE_PUBLIC_HOST", "127.0.0.1")
            .env("SERVE_PUBLIC_PORT", public_port.to_string())
            // The request log at info level is how requests are counted.
            .env("LOG_LEVEL", "info")
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut hydra = Hydra {
            child,
            admin_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = hydra.child.try_wait()? {
                bail!("Hydra exited: {status}; log: {}", hydra.log.display());
            }
            let ok = http
                .get(format!("{}/health/ready", hydra.admin_url()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(hydra);
            }
            if Instant::now() > deadline {
                bail!(
                    "Hydra's admin API was not ready within 60 s; log: {}",
                    hydra.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT` of the admin API.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// The admin API's port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Median latency of `samples` sequential client registrations (a POST
    /// like hydra-maester's), in milliseconds; the clients are deleted again.
    pub async fn register_latency_ms(
        &self,
        http: &reqwest::Client,
        samples: usize,
    ) -> anyhow::Result<f64> {
        let mut took = Vec::with_capacity(samples);
        let mut ids = Vec::with_capacity(samples);
        for i in 0..samples {
            let body = json!({
                "client_name": format!("latency-probe-{i}"),
                "grant_types": ["client_credentials"],
                "scope": "read",
            });
            let t = Instant::now();
            let resp = http
                .post(format!("{}/admin/clients", self.admin_url()))
                .json(&body)
                .send()
                .await?;
            let status = resp.status();
            let created: Value = resp.json().await.unwrap_or(Value::Null);
            took.push(t.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                bail!("Hydra answered {status} to a client registration: {created}");
            }
            if let Some(id) = created["client_id"].as_str() {
                ids.push(id.to_owned());
            }
        }
        for id in ids {
            http.delete(format!("{}/admin/clients/{id}", self.admin_url()))
                .send()
                .await?
                .error_for_status()?;
        }
        took.sort_by(f64::total_cmp);
        Ok(took.get(took.len() / 2).copied().unwrap_or(0.0))
    }

    /// Requests answered so far, by operation in the simulator's vocabulary
    /// (`list`, `register`, `get`, `update`, `delete`; anything else as
    /// `METHOD path`), counted from the request log.
    pub fn requests(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let text = std::fs::read_to_string(&self.log)
            .with_context(|| format!("reading {}", self.log.display()))?;
        Ok(count_requests(&text))
    }

    /// Stops Hydra (SIGKILL: its state is in memory and no longer needed).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Hydra's `POST /admin/clients`, as hydra-maester sends it, for the
/// latency floor.
pub struct HydraPost {
    /// Keep-alive client.
    pub http: reqwest::Client,
    /// The admin API's base URL.
    pub admin_url: String,
    /// Prefix of the registered names.
    pub prefix: String,
}

impl collibra_oauth_bench::latency::Backend for HydraPost {
    fn post(&self, i: usize) -> futures::future::BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.http
                .post(format!("{}/admin/clients", self.admin_url))
                .json(&json!({
                    "client_name": format!("{}-{i}", self.prefix),
                    "grant_types": ["client_credentials"],
                    "scope": "read",
                }))
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            Ok(())
        })
    }
}

/// Counts the `completed handling request` lines of Hydra's JSON log by
/// operation.
pub fn count_requests(log: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        if !line.contains("completed handling request") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        // ory/x's request log nests the request; older loggers put the
        // fields at the top level.
        let field = |nested: &str, flat: &str| {
            v["http_request"][nested]
                .as_str()
                .or_else(|| v[flat].as_str())
                .unwrap_or("?")
                .to_owned()
        };
        let method = field("method", "method");
        let path = field("path", "request");
        if path.starts_with("/health") {
            continue;
        }
        *out.entry(operation(&method, &path)).or_insert(0) += 1;
    }
    out
}

/// The simulator's operation name for a request to Hydra's admin API.
fn operation(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    let one = path
        .strip_prefix("/admin/clients/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    match (method, path) {
        ("GET", "/admin/clients") => "list".to_owned(),
        ("POST", "/admin/clients") => "register".to_owned(),
        ("GET", _) if one => "get".to_owned(),
        ("PUT", _) if one => "update".to_owned(),
        ("DELETE", _) if one => "delete".to_owned(),
        _ => format!("{method} {path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_completed_requests_by_operation() {
        let log = [
            r#"{"http_request":{"method":"GET","path":"/admin/clients"},"msg":"started handling request"}"#,
            r#"{"http_request":{"method":"GET","path":"/admin/clients"},"msg":"completed handling request"}"#,
            r#"{"http_request":{"method":"POST","path":"/admin/clients"},"msg":"completed handling request"}"#,
            r#"{"http_request":{"method":"GET","path":"/admin/clients/abc"},"msg":"completed handling request"}"#,
            r#"{"http_request":{"method":"PUT","path":"/admin/clients/abc"},"msg":"completed handling request"}"#,
            r#"{"http_request":{"method":"GET","path":"/health/ready"},"msg":"completed handling request"}"#,
            r#"{"http_request":{"method":"GET","path":"/admin/keys/x"},"msg":"completed handling request"}"#,
            "not json",
        ]
        .join("\n");
        let got = count_requests(&log);
        let want: BTreeMap<String, u64> = [
            ("list", 1),
            ("register", 1),
            ("get", 1),
            ("update", 1),
            ("GET /admin/keys/x", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(got, want);
    }
}
