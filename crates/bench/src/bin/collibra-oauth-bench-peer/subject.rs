//! The operators compared and how each is set up: its process, the objects
//! it is given, the Secret keys that mean "has credentials", and the names
//! of its metrics.

use std::path::PathBuf;

use collibra_oauth_bench::latency;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

/// Which operator a configuration runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ory/hydra-maester against Ory Hydra.
    Maester,
    /// This operator against the Collibra simulator.
    Operator,
}

/// One column of the comparison.
#[derive(Clone, Debug)]
pub struct Config {
    /// Name in reports and of the namespace.
    pub name: &'static str,
    /// The operator.
    pub kind: Kind,
    /// With its best documented settings (else its defaults).
    pub tuned: bool,
}

/// Every configuration, in the order they run: the peer first, on the
/// emptiest API server.
pub fn all() -> Vec<Config> {
    vec![
        Config {
            name: "maester-default",
            kind: Kind::Maester,
            tuned: false,
        },
        Config {
            name: "maester-tuned",
            kind: Kind::Maester,
            tuned: true,
        },
        Config {
            name: "operator-default",
            kind: Kind::Operator,
            tuned: false,
        },
        Config {
            name: "operator-tuned",
            kind: Kind::Operator,
            tuned: true,
        },
    ]
}

/// Configurations named on the command line, in their order.
#[derive(Clone, Debug)]
pub struct ConfigList(pub Vec<Config>);

/// Parses a comma-separated list of configuration names.
pub fn parse_list(s: &str) -> Result<ConfigList, String> {
    let known = all();
    let list = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            known.iter().find(|c| c.name == n).cloned().ok_or_else(|| {
                let names: Vec<_> = known.iter().map(|c| c.name).collect();
                format!("unknown configuration {n:?}; known: {}", names.join(", "))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err("no configuration named".to_owned());
    }
    Ok(ConfigList(list))
}

/// The service account each operator runs as (impersonated).
pub fn service_account(kind: Kind) -> &'static str {
    match kind {
        Kind::Maester => "system:serviceaccount:hydra-maester:hydra-maester",
        Kind::Operator => "system:serviceaccount:collibra-oauth-operator:collibra-oauth-operator",
    }
}

/// Cluster-wide RBAC for hydra-maester: the verbs its controller's
/// kubebuilder markers ask for, plus Events.
pub fn maester_rbac() -> Value {
    let sa = "hydra-maester";
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            { "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": sa } },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": { "name": sa },
                "rules": [
                    { "apiGroups": [""], "resources": ["secrets"],
                      "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] },
                    { "apiGroups": ["hydra.ory.sh"], "resources": ["oauth2clients"],
                      "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] },
                    { "apiGroups": ["hydra.ory.sh"], "resources": ["oauth2clients/status"],
                      "verbs": ["get", "update", "patch"] },
                    { "apiGroups": ["", "events.k8s.io"], "resources": ["events"],
                      "verbs": ["create", "patch"] },
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": { "name": sa },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": sa },
                "subjects": [{ "kind": "ServiceAccount", "name": sa, "namespace": sa }],
            },
        ],
    })
}

/// The custom resource each operator watches.
pub fn resource(kind: Kind) -> ApiResource {
    let (group, version, kind_name, plural) = match kind {
        Kind::Maester => ("hydra.ory.sh", "v1alpha1", "OAuth2Client", "oauth2clients"),
        Kind::Operator => (
            "oauth.collibra.dev",
            "v1alpha1",
            "OAuthClient",
            "oauthclients",
        ),
    };
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: format!("{group}/{version}"),
        kind: kind_name.to_owned(),
        plural: plural.to_owned(),
    }
}

/// Object `i` of a rollout: a confidential client for the client
/// credentials grant, its Secret named like the object.
pub fn object(kind: Kind, i: usize) -> (String, Value) {
    let name = format!("bench-{i:05}");
    let res = resource(kind);
    let spec = match kind {
        Kind::Maester => json!({
            "grantTypes": ["client_credentials"],
            "scope": "read",
            "secretName": name,
        }),
        Kind::Operator => json!({ "clientName": format!("bench-client-{i:05}") }),
    };
    let obj = json!({
        "apiVersion": res.api_version,
        "kind": res.kind,
        "metadata": { "name": name },
        "spec": spec,
    });
    (name, obj)
}

/// The Secret keys that hold the client id and secret.
pub fn credential_keys(kind: Kind) -> [&'static str; 2] {
    match kind {
        Kind::Maester => ["CLIENT_ID", "CLIENT_SECRET"],
        Kind::Operator => ["client_id", "client_secret"],
    }
}

/// The latency mode's view of `kind`: objects as [`object`] makes them.
pub fn latency_subject(kind: Kind) -> latency::Subject {
    match kind {
        Kind::Operator => latency::Subject::oauth_client(),
        Kind::Maester => latency::Subject {
            resource: resource(Kind::Maester),
            object: |name| {
                json!({
                    "apiVersion": "hydra.ory.sh/v1alpha1",
                    "kind": "OAuth2Client",
                    "metadata": { "name": name },
                    "spec": {
                        "grantTypes": ["client_credentials"],
                        "scope": "read",
                        "secretName": name,
                    },
                })
            },
            credential_keys: credential_keys(Kind::Maester),
            // What its ensureEmptyStatusError writes (controller-runtime's
            // CreateOrPatch: a merge patch of the status).
            ready_status: || {
                json!({
                    "observedGeneration": 1,
                    "reconciliationError": {},
                    "conditions": [{ "type": "Ready", "status": "True" }],
                })
            },
            status_by_apply: false,
        },
    }
}

/// The steps of `kind`'s critical path (see `latency::measure_floor`), to
/// the Secret with credentials and to Ready. hydra-maester adds its
/// finalizer (an update of the object), POSTs, creates the Secret with the
/// credentials and then writes the status; its list of Hydra's clients
/// before each POST is its own choice, not a floor.
pub fn critical_path(kind: Kind) -> (Vec<&'static str>, Vec<&'static str>) {
    match kind {
        Kind::Operator => (
            latency::OPERATOR_SECRET_PATH.to_vec(),
            latency::OPERATOR_READY_PATH.to_vec(),
        ),
        Kind::Maester => (
            vec!["object_metadata_patch", "backend_post", "secret_create"],
            vec![
                "object_metadata_patch",
                "backend_post",
                "secret_create",
                "status_write",
            ],
        ),
    }
}

/// Reconciles the operator of `kind` runs at once: hydra-maester has one
/// worker and no flag for more; this operator takes `--concurrency`.
pub fn concurrency(kind: Kind, launch: &Launch) -> usize {
    match kind {
        Kind::Maester => 1,
        Kind::Operator => latency::operator_concurrency(&launch.args),
    }
}

/// Metric names: (API-server requests by `method`, reconciles).
pub fn metric_names(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        // controller-runtime registers client-go's request counter.
        Kind::Maester => (
            "rest_client_requests_total",
            "controller_runtime_reconcile_total",
        ),
        Kind::Operator => (
            "collibra_oauth_kubernetes_requests_total",
            "collibra_oauth_reconciles_total",
        ),
    }
}

/// How to start one configuration's operator process.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The binary.
    pub bin: PathBuf,
    /// Its arguments, `--metrics-addr` excepted (added per start).
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// The flag that sets the metrics address.
    pub metrics_flag: &'static str,
    /// Its readiness URL path, if it serves one.
    pub ready_path: Option<&'static str>,
}

/// The launch of `config`: defaults are only what each operator needs to
/// reach its backend; "tuned" adds the settings each one documents for
/// running at scale in one namespace.
pub fn launch(
    config: &Config,
    operator_bin: &std::path::Path,
    maester_bin: &std::path::Path,
    backend_url: &str,
    backend_port: u16,
    ns: &str,
) -> Launch {
    let s = |v: &str| v.to_owned();
    match config.kind {
        Kind::Maester => {
            // Hydra v2 serves clients under /admin/clients (the default
            // /clients is Hydra v1's path), so --endpoint is required.
            let mut args = vec![
                s("--hydra-url"),
                s("http://127.0.0.1"),
                s("--hydra-port"),
                backend_port.to_string(),
                s("--endpoint"),
                s("/admin/clients"),
            ];
            let mut env = Vec::new();
            if config.tuned {
                // --namespace filters reconciles; NAMESPACE scopes the
                // manager's cache (its informers) to that namespace.
                args.extend([s("--namespace"), s(ns)]);
                env.push((s("NAMESPACE"), s(ns)));
            }
            Launch {
                bin: maester_bin.to_path_buf(),
                args,
                env,
                metrics_flag: "--metrics-addr",
                ready_path: None,
            }
        }
        Kind::Operator => {
            let mut args = vec![s("run"), s("--collibra-url"), s(backend_url)];
            if config.tuned {
                // README: --watch-namespaces scopes the watches; a larger
                // --concurrency keeps more registrations in flight
                // (BENCHMARKS.md). No --collibra-rate-limit: the backend
                // has no limit here, as Hydra has none.
                args.extend([s("--watch-namespaces"), s(ns), s("--concurrency"), s("64")]);
            }
            Launch {
                bin: operator_bin.to_path_buf(),
                args,
                env: vec![
                    (s("COLLIBRA_CLIENT_ID"), s("operator")),
                    (s("COLLIBRA_CLIENT_SECRET"), s("operator-secret")),
                ],
                metrics_flag: "--metrics-addr",
                ready_path: Some("/readyz"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_configuration_lists() {
        let got = parse_list("operator-tuned, maester-default").expect("known names");
        let names: Vec<_> = got.0.iter().map(|c| c.name).collect();
        assert_eq!(names, ["operator-tuned", "maester-default"]);
        let err = parse_list("operator,maester-default").expect_err("unknown name");
        assert!(err.contains("\"operator\""), "{err}");
        assert!(err.contains("maester-tuned"), "{err}");
    }

    #[test]
    fn objects_name_their_secret_like_themselves() {
        let (name, obj) = object(Kind::Maester, 7);
        assert_eq!(name, "bench-00007");
        assert_eq!(obj["spec"]["secretName"], "bench-00007");
        assert_eq!(obj["apiVersion"], "hydra.ory.sh/v1alpha1");
        let (name, obj) = object(Kind::Operator, 7);
        assert_eq!(name, "bench-00007");
        assert_eq!(obj["kind"], "OAuthClient");
        assert_eq!(obj["spec"]["clientName"], "bench-client-00007");
    }
}
