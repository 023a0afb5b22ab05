//! Kubeconfig files for the admin user and for impersonated users.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// Who a kubeconfig acts as on top of the admin client certificate.
pub(crate) struct Impersonation<'a> {
    pub(crate) user: &'a str,
    pub(crate) groups: &'a [&'a str],
}

/// Renders a self-contained kubeconfig (certificates embedded, so it stays
/// valid wherever it is copied while the control plane runs).
///
/// It is written as JSON, which every kubeconfig reader accepts as YAML, so
/// user names like `system:serviceaccount:ns:name` need no YAML quoting.
pub(crate) fn render(
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    impersonation: Option<&Impersonation<'_>>,
) -> String {
    let mut user = json!({
        "client-certificate-data": STANDARD.encode(cert_pem),
        "client-key-data": STANDARD.encode(key_pem),
    });
    if let (Some(imp), Value::Object(fields)) = (impersonation, &mut user) {
        fields.insert("as".into(), json!(imp.user));
        if !imp.groups.is_empty() {
            fields.insert("as-groups".into(), json!(imp.groups));
        }
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "test-control-plane",
            "cluster": {
                "server": server,
                "certificate-authority-data": STANDARD.encode(ca_pem),
            },
        }],
        "users": [{ "name": "test-control-plane-user", "user": user }],
        "contexts": [{
            "name": "test-control-plane",
            "context": {
                "cluster": "test-control-plane",
                "user": "test-control-plane-user",
                "namespace": "default",
            },
        }],
        "current-context": "test-control-plane",
        "preferences": {},
    });
    // Pretty-printing a Value cannot fail; the fallback keeps clippy happy
    // without an unwrap.
    serde_json::to_string_pretty(&config).unwrap_or_else(|_| config.to_string())
}
