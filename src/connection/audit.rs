//! `collibra-oauth-operator audit`: per connection, the clients Collibra
//! lists that no OAuthClient accounts for (name, id, issued at; never a
//! secret), as a table or JSON. It reads what the operator reads (the
//! connections, their credentials Secrets, the OAuthClients), so run it
//! with the operator's rights, e.g.
//! `kubectl exec deploy/collibra-oauth-operator -- collibra-oauth-operator audit`,
//! or with a kubeconfig allowed the same. The instance configured by flags
//! is audited too when `COLLIBRA_URL` is set (as it is in the operator's pod).

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Parser, ValueEnum};
use collibra_client::CollibraClient;
use kube::{Api, Client, api::ListParams};
use serde::Serialize;

use super::{
    ConnectionArgs,
    accounting::{self, Claim, ListedClient},
    client_config, cluster_namespace, connection_of,
    controller::{load, secret_namespace},
    hosts::AllowedHosts,
};
use crate::{
    api::{
        OAuthClient,
        connection::{
            ClusterCollibraConnection, CollibraConnection, ConnectionKey, ConnectionResource,
        },
    },
    config::RunArgs,
    controller::status::rfc3339,
};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

/// Flags of `audit`.
#[derive(Args, Debug, Clone)]
pub struct AuditArgs {
    /// Only the CollibraConnections of this namespace (cluster connections
    /// and the default instance serve other namespaces too, so they are
    /// left out).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Output,

    /// Leave out the instance configured by flags even when COLLIBRA_URL is set.
    #[arg(long)]
    pub no_default: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub connections: ConnectionArgs,
}

/// The audit of one connection.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionAudit {
    /// `default`, `CollibraConnection/ns/name` or `ClusterCollibraConnection/name`.
    pub connection: String,
    /// The instance URL.
    pub url: String,
    /// Clients no OAuthClient accounts for.
    pub unmanaged: Vec<ListedClient>,
    /// How many clients the instance listed in all.
    pub listed: usize,
    /// Why the instance could not be audited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs the audit and prints it; fails when some connection could not be
/// audited (after printing the others).
pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default()
        .await
        .context("finding a kubeconfig or in-cluster config")?;
    let audits = audit(&client, &args).await?;
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => serde_json::to_writer_pretty(&mut out, &audits)?,
        Output::Table => out.write_all(table(&audits).as_bytes())?,
    }
    writeln!(out)?;
    let failed: Vec<&str> = audits
        .iter()
        .filter(|a| a.error.is_some())
        .map(|a| a.connection.as_str())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("could not audit {}", failed.join(", "));
    }
    Ok(())
}

/// Audits every connection `args` selects.
pub async fn audit(client: &Client, args: &AuditArgs) -> anyhow::Result<Vec<ConnectionAudit>> {
    let allowed = AllowedHosts::parse(&args.connections.namespaced_connection_hosts)
        .map_err(anyhow::Error::msg)?;
    let oauth: Api<OAuthClient> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let objects = oauth
        .list(&ListParams::default())
        .await
        .context("listing OAuthClients")?
        .items;
    let claims = |key: &ConnectionKey| -> Vec<Claim> {
        objects
            .iter()
            .filter(|o| connection_of(o) == *key)
            .map(|o| Claim {
                client_name: o.spec.client_name.clone(),
                client_id: o.status.as_ref().and_then(|s| s.client_id.clone()),
            })
            .collect()
    };

    let mut audits = Vec::new();
    if args.namespace.is_none() && !args.no_default && std::env::var_os("COLLIBRA_URL").is_some() {
        audits.push(default_instance(&claims(&ConnectionKey::Default)).await);
    }
    let namespaced: Api<CollibraConnection> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let cluster_ns = cluster_namespace(&args.connections, client);
    let mut conns: Vec<(ConnectionKey, String, Result<CollibraClient, String>)> = Vec::new();
    for c in namespaced
        .list(&ListParams::default())
        .await
        .context("listing CollibraConnections")?
        .items
    {
        let built = connect(client, &c, &cluster_ns, Some(&allowed)).await;
        conns.push((c.key(), c.spec.settings.url.clone(), built));
    }
    if args.namespace.is_none() && args.connections.cluster_connections(true) {
        let cluster: Api<ClusterCollibraConnection> = Api::all(client.clone());
        for c in cluster
            .list(&ListParams::default())
            .await
            .context("listing ClusterCollibraConnections")?
            .items
        {
            let built = connect(client, &c, &cluster_ns, None).await;
            conns.push((c.key(), c.spec.settings.url.clone(), built));
        }
    }
    for (key, url, built) in conns {
        let audit = match built {
            Ok(collibra) => audit_one(key.to_string(), url, &collibra, &claims(&key)).await,
            Err(error) => ConnectionAudit {
                connection: key.to_string(),
                url,
                unmanaged: Vec::new(),
                listed: 0,
                error: Some(error),
            },
        };
        audits.push(audit);
    }
    Ok(audits)
}

/// A client for `c`, built the way the controller builds it.
async fn connect<K: ConnectionResource>(
    client: &Client,
    c: &K,
    cluster_ns: &str,
    allowed: Option<&AllowedHosts>,
) -> Result<CollibraClient, String> {
    let settings = c.settings();
    let url = client_config::url(settings).map_err(|h| h.message)?;
    if let Some(allowed) = allowed {
        client_config::check_host(&url, allowed).map_err(|h| h.message)?;
    }
    let ns = secret_namespace(c, cluster_ns);
    let loaded = load(client, settings, &ns).await.map_err(|h| h.message)?;
    loaded.client(settings, &ns).map_err(|h| h.message)
}

async fn default_instance(claims: &[Claim]) -> ConnectionAudit {
    #[derive(Parser)]
    struct FromEnv {
        #[command(flatten)]
        run: RunArgs,
    }
    let built = FromEnv::try_parse_from(["audit"])
        .map_err(|e| format!("the COLLIBRA_* environment is incomplete: {e}"))
        .and_then(|f| {
            let url = f.run.collibra_url.to_string();
            let config = f.run.collibra_config().map_err(|e| format!("{e:#}"))?;
            let client = CollibraClient::new(config).map_err(|e| e.to_string())?;
            Ok((url, client))
        });
    match built {
        Ok((url, collibra)) => {
            audit_one(ConnectionKey::Default.to_string(), url, &collibra, claims).await
        }
        Err(error) => ConnectionAudit {
            connection: ConnectionKey::Default.to_string(),
            url: std::env::var("COLLIBRA_URL").unwrap_or_default(),
            unmanaged: Vec::new(),
            listed: 0,
            error: Some(error),
        },
    }
}

async fn audit_one(
    connection: String,
    url: String,
    collibra: &CollibraClient,
    claims: &[Claim],
) -> ConnectionAudit {
    match collibra.list_clients().await {
        Ok(clients) => {
            let listed: Vec<ListedClient> = clients
                .into_iter()
                .map(|c| ListedClient {
                    name: c.client_name,
                    id: c.client_id,
                    issued_at: c.client_id_issued_at.and_then(rfc3339),
                })
                .collect();
            let mut unmanaged: Vec<ListedClient> = accounting::unmanaged(&listed, claims)
                .into_iter()
                .cloned()
                .collect();
            unmanaged.sort_by(|a, b| a.name.cmp(&b.name));
            ConnectionAudit {
                connection,
                url,
                listed: listed.len(),
                unmanaged,
                error: None,
            }
        }
        Err(e) => ConnectionAudit {
            connection,
            url,
            unmanaged: Vec::new(),
            listed: 0,
            error: Some(e.to_string()),
        },
    }
}

/// The audits as aligned columns: CONNECTION, NAME, ID, ISSUED AT; the
/// connections that could not be audited follow, each with its error.
pub fn table(audits: &[ConnectionAudit]) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "CONNECTION".into(),
        "NAME".into(),
        "ID".into(),
        "ISSUED AT".into(),
    ]];
    for a in audits {
        for c in &a.unmanaged {
            rows.push([
                a.connection.clone(),
                c.name.clone(),
                c.id.clone(),
                c.issued_at.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    let total: usize = audits.iter().map(|a| a.unmanaged.len()).sum();
    out.push_str(&format!(
        "{total} unmanaged client(s) in {} connection(s)",
        audits.len()
    ));
    for a in audits {
        if let Some(e) = &a.error {
            out.push_str(&format!("\n{}: not audited: {e}", a.connection));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_clients_and_errors_aligned() {
        let audits = vec![
            ConnectionAudit {
                connection: "ClusterCollibraConnection/prod".into(),
                url: "https://p".into(),
                unmanaged: vec![ListedClient {
                    name: "legacy-etl".into(),
                    id: "urn:1".into(),
                    issued_at: Some("2026-01-01T00:00:00Z".into()),
                }],
                listed: 3,
                error: None,
            },
            ConnectionAudit {
                connection: "default".into(),
                url: "https://d".into(),
                unmanaged: vec![],
                listed: 0,
                error: Some("Collibra is unavailable".into()),
            },
        ];
        let t = table(&audits);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("CONNECTION"), "{t}");
        assert!(
            lines[1].contains("legacy-etl") && lines[1].contains("urn:1"),
            "{t}"
        );
        assert_eq!(lines[0].find("NAME"), lines[1].find("legacy-etl"), "{t}");
        assert_eq!(lines[2], "1 unmanaged client(s) in 2 connection(s)");
        assert_eq!(lines[3], "default: not audited: Collibra is unavailable");
    }

    #[test]
    fn json_carries_no_secret_field() {
        let a = ConnectionAudit {
            connection: "default".into(),
            url: "https://d".into(),
            unmanaged: vec![ListedClient {
                name: "n".into(),
                id: "i".into(),
                issued_at: None,
            }],
            listed: 1,
            error: None,
        };
        let json = serde_json::to_string(&a).expect("json");
        assert_eq!(
            json,
            r#"{"connection":"default","url":"https://d","unmanaged":[{"name":"n","id":"i"}],"listed":1}"#
        );
        assert!(!json.contains("secret"));
    }
}
