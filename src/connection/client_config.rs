//! From a connection's spec and the objects it names (credentials Secret,
//! CA bundle) to a Collibra client configuration. Pure: the controller
//! fetches the objects, this decides what they mean, and every problem comes
//! back as a [`Health`] naming the field, the object or the key.

use std::collections::BTreeMap;

use collibra_client::{Auth, Credential, RetryPolicy, SecretString};
use k8s_openapi::ByteString;

use super::{
    hosts::AllowedHosts,
    status::{ConnectionReason, Health},
};
use crate::api::connection::{AuthType, ConnectionSettings};

/// The objects a connection's configuration reads, as fetched.
pub struct Material<'a> {
    /// Namespace of the credentials Secret and the CA bundle.
    pub namespace: &'a str,
    /// The credentials Secret's data; `None` when it does not exist.
    pub credentials: Option<&'a BTreeMap<String, ByteString>>,
    /// The CA bundle's text; `None` when none is configured.
    pub ca_bundle: Option<Vec<u8>>,
}

/// The URL's host, or a problem naming `spec.url`.
pub fn url(settings: &ConnectionSettings) -> Result<url::Url, Health> {
    let invalid = |why: String| Health::new(ConnectionReason::InvalidSpec, why);
    let url = url::Url::parse(&settings.url)
        .map_err(|e| invalid(format!("spec.url {:?} is not a URL: {e}", settings.url)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!(
            "spec.url {:?} must be an http(s) URL with a host",
            settings.url
        )));
    }
    Ok(url)
}

/// Refuses a namespaced connection whose host the admin has not allowed.
pub fn check_host(url: &url::Url, allowed: &AllowedHosts) -> Result<(), Health> {
    let host = url.host_str().unwrap_or_default();
    if allowed.allows(host) {
        return Ok(());
    }
    let hint = if allowed.is_empty() {
        "namespaced connections are off: the operator's --namespaced-connection-hosts is empty"
            .to_owned()
    } else {
        format!("--namespaced-connection-hosts allows only {allowed}")
    };
    Err(Health::new(
        ConnectionReason::HostNotAllowed,
        format!(
            "spec.url: host {host:?} is not allowed for a CollibraConnection ({hint}); ask the cluster admin, or use a ClusterCollibraConnection"
        ),
    ))
}

/// The client configuration, or why there is none.
pub fn build(
    settings: &ConnectionSettings,
    secret_name: &str,
    material: &Material<'_>,
) -> Result<collibra_client::Config, Health> {
    let base_url = url(settings)?;
    let invalid = |why: String| Health::new(ConnectionReason::InvalidSpec, why);
    let connect_timeout = settings.connect_timeout().map_err(invalid)?;
    let request_timeout = settings.timeout().map_err(invalid)?;
    if let Some(r) = settings.rate_limit
        && !(r.is_finite() && r > 0.0)
    {
        return Err(invalid(format!(
            "spec.rateLimit must be more than 0 requests per second, got {r}"
        )));
    }
    if !settings.api_path.starts_with('/') {
        return Err(invalid(format!(
            "spec.apiPath must start with '/', got {:?}",
            settings.api_path
        )));
    }
    let ns = material.namespace;
    let Some(data) = material.credentials else {
        return Err(Health::new(
            ConnectionReason::CredentialsNotFound,
            format!("spec.auth.secretName: Secret {ns}/{secret_name} does not exist"),
        ));
    };
    let value = |field: &str, key: &str| -> Result<Credential, Health> {
        let missing = |what: &str| {
            Health::new(
                ConnectionReason::CredentialsNotFound,
                format!("Secret {ns}/{secret_name} {what} (spec.auth.keys.{field})"),
            )
        };
        let bytes = data
            .get(key)
            .ok_or_else(|| missing(&format!("has no key {key:?}")))?;
        let text = std::str::from_utf8(&bytes.0)
            .map_err(|_| missing(&format!("key {key:?} is not UTF-8 text")))?;
        // `kubectl create secret --from-file` keeps the file's newline.
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return Err(missing(&format!("key {key:?} is empty")));
        }
        Ok(Credential::Value(SecretString::from(text)))
    };
    let keys = &settings.auth.keys;
    let auth = match settings.auth.type_ {
        AuthType::Oauth => Auth::OAuth {
            client_id: value("clientId", &keys.client_id)?,
            client_secret: value("clientSecret", &keys.client_secret)?,
        },
        AuthType::Basic => Auth::Basic {
            username: value("username", &keys.username)?,
            password: value("password", &keys.password)?,
        },
        AuthType::Bearer => Auth::Bearer {
            token: value("token", &keys.token)?,
        },
    };
    Ok(collibra_client::Config {
        base_url,
        api_path: settings.api_path.clone(),
        auth,
        ca_file: None,
        ca_pem: material.ca_bundle.clone(),
        connect_timeout,
        request_timeout,
        retry: RetryPolicy::default(),
        max_body_bytes: 32 * 1024 * 1024,
        rate_limit: settings.rate_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> ConnectionSettings {
        serde_json::from_str(json).expect("settings")
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    const OAUTH: &str = r#"{"url":"https://c.example","auth":{"secretName":"creds"}}"#;

    #[test]
    fn oauth_from_the_secret() {
        let d = data(&[("client_id", "op\n"), ("client_secret", "s3cret")]);
        let m = Material {
            namespace: "ns",
            credentials: Some(&d),
            ca_bundle: None,
        };
        let cfg = build(&settings(OAUTH), "creds", &m).expect("config");
        assert_eq!(cfg.base_url.as_str(), "https://c.example/");
        assert_eq!(cfg.api_path, "/rest/auth/v1");
        assert!(matches!(cfg.auth, Auth::OAuth { .. }));
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn missing_secret_key_or_value_names_it() {
        let m = Material {
            namespace: "ns",
            credentials: None,
            ca_bundle: None,
        };
        let err = build(&settings(OAUTH), "creds", &m).expect_err("no secret");
        assert_eq!(err.reason, ConnectionReason::CredentialsNotFound);
        assert!(err.message.contains("ns/creds does not exist"), "{err:?}");

        let d = data(&[("client_id", "op")]);
        let m = Material {
            credentials: Some(&d),
            ..m
        };
        let err = build(&settings(OAUTH), "creds", &m).expect_err("no key");
        assert!(
            err.message.contains(r#"no key "client_secret""#)
                && err.message.contains("spec.auth.keys.clientSecret"),
            "{err:?}"
        );

        let d = data(&[("tok", "")]);
        let m = Material {
            credentials: Some(&d),
            ..m
        };
        let bearer = settings(
            r#"{"url":"https://c.example","auth":{"type":"bearer","secretName":"creds","keys":{"token":"tok"}}}"#,
        );
        let err = build(&bearer, "creds", &m).expect_err("empty");
        assert!(err.message.contains(r#"key "tok" is empty"#), "{err:?}");
    }

    #[test]
    fn bad_fields_are_named() {
        let d = data(&[("username", "u"), ("password", "p")]);
        let m = Material {
            namespace: "ns",
            credentials: Some(&d),
            ca_bundle: None,
        };
        for (json, field) in [
            (
                r#"{"url":"ftp://c.example","auth":{"type":"basic","secretName":"c"}}"#,
                "spec.url",
            ),
            (
                r#"{"url":"https://c.example","auth":{"type":"basic","secretName":"c"},"timeout":"x"}"#,
                "spec.timeout",
            ),
            (
                r#"{"url":"https://c.example","auth":{"type":"basic","secretName":"c"},"apiPath":"rest"}"#,
                "spec.apiPath",
            ),
            (
                r#"{"url":"https://c.example","auth":{"type":"basic","secretName":"c"},"rateLimit":0}"#,
                "spec.rateLimit",
            ),
        ] {
            let err = build(&settings(json), "c", &m).expect_err(json);
            assert_eq!(err.reason, ConnectionReason::InvalidSpec);
            assert!(err.message.contains(field), "{field}: {err:?}");
        }
    }

    #[test]
    fn hosts_outside_the_allow_list_are_refused() {
        let u = url(&settings(OAUTH)).expect("url");
        let none = AllowedHosts::default();
        let err = check_host(&u, &none).expect_err("default refuses");
        assert_eq!(err.reason, ConnectionReason::HostNotAllowed);
        assert!(err.message.contains("is empty"), "{err:?}");
        let other = AllowedHosts::parse(&["*.collibra.com"]).expect("valid");
        let err = check_host(&u, &other).expect_err("other host");
        assert!(
            err.message.contains("allows only *.collibra.com"),
            "{err:?}"
        );
        let ok = AllowedHosts::parse(&["c.example"]).expect("valid");
        assert!(check_host(&u, &ok).is_ok());
    }
}
