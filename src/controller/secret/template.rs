//! Rendering `spec.secretTemplate`: the names of the standard keys, extra
//! keys rendered from MiniJinja templates, the Secret's type, and the
//! labels and annotations the template owns, checked the way the API
//! server would and turned into a [`Shape`].
//!
//! Pure functions only: [`render`] turns a template and the credentials into
//! a [`Shape`]; [`super::shape`] holds what a shape is, how it is recorded
//! on the Secret, and how the credentials are read back from any Secret the
//! operator wrote (whatever shape it had), so a template change re-renders
//! from what the Secret holds and never needs Collibra.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, context, syntax::SyntaxConfig};
use secrecy::{ExposeSecret, SecretString};

use super::shape::{
    CLIENT_ID_ANNOTATION, Credentials, DEFAULT_TYPE, Record, SHAPE_ANNOTATION, Shape, StandardKeys,
};
use crate::api::{MANAGED_BY_LABEL, RESERVED_ANNOTATION_PREFIX, SECRET_TYPES, SecretTemplate};

/// The basic-auth Secret type, which needs `username` or `password`.
pub const BASIC_AUTH_TYPE: &str = "kubernetes.io/basic-auth";
/// Kubernetes' limit on a Secret's data (keys and values together).
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;
/// Template engine budget per key: generous for a config file, small
/// enough that a runaway loop ends in milliseconds.
pub const TEMPLATE_FUEL: u64 = 100_000;
/// Longest Secret key name Kubernetes accepts.
const MAX_KEY_LEN: usize = 253;
/// Stands in for the client secret when a template is checked without it,
/// so the engine's error details never come from the real value.
const PLACEHOLDER_SECRET: &str = "placeholder-client-secret";
/// Stands in for the client id before one exists.
const PLACEHOLDER_ID: &str = "placeholder-client-id";

/// Why a template cannot be rendered. The messages quote the template
/// (the user's own spec) and never a credential value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A key name is not a valid Secret key.
    #[error("secretTemplate.{field}: {key:?} is not a valid Secret key: {why}")]
    BadKey {
        /// The spec field that names it.
        field: String,
        /// The key name.
        key: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Two values would be written to the same key.
    #[error("secretTemplate: key {key:?} is given to both {first} and {second}")]
    Collision {
        /// The key name.
        key: String,
        /// One spec field that names it.
        first: String,
        /// The other.
        second: String,
    },
    /// The Secret type is not one a template may choose.
    #[error(
        "secretTemplate.type: {0:?} is not allowed: use Opaque, kubernetes.io/basic-auth or a custom type outside kubernetes.io/"
    )]
    BadType(String),
    /// A basic-auth Secret without `username` or `password`.
    #[error(
        "secretTemplate.type kubernetes.io/basic-auth needs a key named username or password (rename a standard key in keys, or add it in data)"
    )]
    BasicAuthKeys,
    /// A label or annotation the API server would refuse.
    #[error("secretTemplate.{field}: {key:?} is not a valid {what}: {why}")]
    BadMetadata {
        /// `labels` or `annotations`.
        field: &'static str,
        /// The key.
        key: String,
        /// "key" or "label value".
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An annotation under the operator's own prefix.
    #[error(
        "secretTemplate.annotations: {0:?} is under {RESERVED_ANNOTATION_PREFIX}, which the operator keeps for itself"
    )]
    ReservedAnnotation(String),
    /// A template does not compile or fails with placeholder credentials;
    /// `detail` is the engine's message, which cannot contain a secret.
    #[error("secretTemplate.data[{key:?}]: {detail}")]
    Template {
        /// The data key whose template failed.
        key: String,
        /// What the engine said.
        detail: String,
    },
    /// A template that works with placeholder credentials fails with the
    /// real ones: only the kind and line are reported, since the engine's
    /// detail could quote the secret.
    #[error(
        "secretTemplate.data[{key:?}]: {kind} at line {line} with the real credentials (the detail is withheld, as it could quote the secret)"
    )]
    FailsOnCredentials {
        /// The data key whose template failed.
        key: String,
        /// The engine's error kind, e.g. "undefined value".
        kind: String,
        /// Line in the template.
        line: usize,
    },
    /// The rendered Secret is larger than Kubernetes allows.
    #[error(
        "the rendered Secret has {0} bytes of data; Kubernetes allows at most {MAX_SECRET_BYTES}"
    )]
    TooLarge(usize),
}

/// The non-secret facts a template can use besides the credentials.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// `spec.clientName`.
    pub client_name: &'a str,
    /// The token endpoint.
    pub token_url: &'a str,
    /// How clients authenticate there (RFC 7591 name, e.g. `client_secret_post`).
    pub token_endpoint_auth_method: &'a str,
    /// The Collibra base URL.
    pub collibra_url: &'a str,
    /// Grant types as Collibra spells them.
    pub grant_types: &'a [String],
    /// `spec.redirectUris` (empty for clients without them).
    pub redirect_uris: &'a [String],
}

/// Checks a template without credentials: key names, collisions, type,
/// reserved annotations, and every data template compiled and rendered with
/// placeholder credentials. What CEL checks at admission, again, for objects
/// admitted before these rules existed.
pub fn check(template: Option<&SecretTemplate>, facts: &Facts<'_>) -> Result<(), TemplateError> {
    let Some(t) = template else {
        return Ok(());
    };
    check_static(t)?;
    let env = environment();
    let placeholder = Credentials {
        client_id: PLACEHOLDER_ID.to_owned(),
        client_secret: SecretString::from(PLACEHOLDER_SECRET),
    };
    for (key, source) in &t.data {
        env.render_named_str(key, source, template_context(facts, &placeholder))
            .map_err(|e| TemplateError::Template {
                key: key.clone(),
                detail: e.to_string(),
            })?;
    }
    Ok(())
}

/// Renders the Secret's shape. Without `creds` (a claim before the
/// registration) only the non-secret standard keys are written, plus an
/// empty `username`/`password` where the type requires one.
pub fn render(
    template: Option<&SecretTemplate>,
    facts: &Facts<'_>,
    creds: Option<&Credentials>,
) -> Result<Shape, TemplateError> {
    check(template, facts)?;
    let empty = SecretTemplate::default();
    build(template.unwrap_or(&empty), facts, creds, true)
}

/// [`render`], or when that fails, the shape that still keeps the
/// credentials: the template's key names, type and metadata without its
/// `data` templates (or today's Secret, if even those are invalid).
/// Credentials that exist only in memory must reach the Secret whatever the
/// template says; reconciles check the template on their own and report it.
pub fn render_lenient(
    template: Option<&SecretTemplate>,
    facts: &Facts<'_>,
    creds: Option<&Credentials>,
) -> Shape {
    if let Ok(shape) = render(template, facts, creds) {
        return shape;
    }
    let empty = SecretTemplate::default();
    let t = template
        .filter(|t| check_static(t).is_ok())
        .map(|t| SecretTemplate {
            data: BTreeMap::new(),
            ..t.clone()
        })
        .unwrap_or_default();
    match build(&t, facts, creds, false) {
        Ok(shape) => shape,
        // Only the size check can fail here, and the standard values alone
        // are far below it; the default shape is the last resort.
        Err(_) => build(&empty, facts, creds, false).unwrap_or_else(|_| Shape {
            type_: DEFAULT_TYPE.to_owned(),
            data: BTreeMap::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }),
    }
}

/// Builds the shape of a template already checked; `with_data` renders
/// the `data` templates too.
fn build(
    t: &SecretTemplate,
    facts: &Facts<'_>,
    creds: Option<&Credentials>,
    with_data: bool,
) -> Result<Shape, TemplateError> {
    let names = StandardKeys::of(t.keys.as_ref());
    let type_ = t.type_.clone().unwrap_or_else(|| DEFAULT_TYPE.to_owned());
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: &[u8]| {
        data.insert(k.to_owned(), ByteString(v.to_vec()));
    };
    if let Some(k) = names.client_name {
        put(k, facts.client_name.as_bytes());
    }
    if let Some(k) = names.token_url {
        put(k, facts.token_url.as_bytes());
    }
    if let Some(k) = names.token_endpoint_auth_method {
        put(k, facts.token_endpoint_auth_method.as_bytes());
    }
    let mut annotations = t.annotations.clone();
    match creds {
        Some(c) => {
            match names.client_id {
                Some(k) => put(k, c.client_id.as_bytes()),
                None => {
                    annotations.insert(CLIENT_ID_ANNOTATION.to_owned(), c.client_id.clone());
                }
            }
            put(
                names.client_secret,
                c.client_secret.expose_secret().as_bytes(),
            );
            let env = environment();
            for (key, source) in t.data.iter().filter(|_| with_data) {
                let text = env
                    .render_named_str(key, source, template_context(facts, c))
                    .map_err(|e| TemplateError::FailsOnCredentials {
                        key: key.clone(),
                        kind: e.kind().to_string(),
                        line: e.line().unwrap_or(0),
                    })?;
                put(key, text.as_bytes());
            }
        }
        None if type_ == BASIC_AUTH_TYPE => {
            // The API server refuses a basic-auth Secret without either key,
            // and the type cannot change later: claim it with an empty one
            // (empty reads as "no credentials yet").
            let final_keys: BTreeSet<&str> = names
                .named()
                .into_iter()
                .map(|(_, k)| k)
                .chain(t.data.keys().map(String::as_str))
                .collect();
            if let Some(k) = ["username", "password"]
                .into_iter()
                .find(|k| final_keys.contains(k))
            {
                data.entry(k.to_owned())
                    .or_insert_with(|| ByteString(Vec::new()));
            }
        }
        None => {}
    }
    let size: usize = data.iter().map(|(k, v)| k.len() + v.0.len()).sum();
    if size > MAX_SECRET_BYTES {
        return Err(TemplateError::TooLarge(size));
    }
    let labels: BTreeMap<String, String> = t
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != MANAGED_BY_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // The keys the template owns, written yet or not (a claim writes only
    // some): whatever of them a later template drops is removed.
    let record = Record {
        client_id_key: names.client_id.map(str::to_owned),
        client_secret_key: names.client_secret.to_owned(),
        keys: names
            .named()
            .into_iter()
            .map(|(_, k)| k.to_owned())
            .chain(t.data.keys().filter(|_| with_data).cloned())
            .chain(data.keys().cloned())
            .collect(),
        labels: labels.keys().cloned().collect(),
        annotations: t.annotations.keys().cloned().collect(),
    };
    // Today's Secret (no template, or one that changes nothing the record
    // tracks) carries no record, so an upgrade rewrites no Secret.
    if record != Record::legacy() {
        annotations.insert(
            SHAPE_ANNOTATION.to_owned(),
            serde_json::to_string(&record).unwrap_or_default(),
        );
    }
    Ok(Shape {
        type_,
        data,
        labels,
        annotations,
    })
}

/// The checks that need no template engine.
fn check_static(t: &SecretTemplate) -> Result<(), TemplateError> {
    if t.keys
        .as_ref()
        .and_then(|k| k.client_secret.as_ref())
        .is_some_and(String::is_empty)
    {
        return Err(TemplateError::BadKey {
            field: "keys.clientSecret".to_owned(),
            key: String::new(),
            why: "the client secret cannot be left out",
        });
    }
    let names = StandardKeys::of(t.keys.as_ref());
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    let named = names
        .named()
        .into_iter()
        .map(|(field, k)| (field.to_owned(), k))
        .chain(t.data.keys().map(|k| (format!("data[{k:?}]"), k.as_str())));
    for (field, key) in named {
        if let Err(why) = key_syntax(key) {
            return Err(TemplateError::BadKey {
                field,
                key: key.to_owned(),
                why,
            });
        }
        if let Some(first) = seen.insert(key, field.clone()) {
            return Err(TemplateError::Collision {
                key: key.to_owned(),
                first,
                second: field,
            });
        }
    }
    if let Some(type_) = &t.type_ {
        let builtin =
            type_.starts_with("kubernetes.io/") || type_.starts_with("bootstrap.kubernetes.io/");
        if type_.is_empty() || (builtin && !SECRET_TYPES.contains(&type_.as_str())) {
            return Err(TemplateError::BadType(type_.clone()));
        }
        if type_ == BASIC_AUTH_TYPE
            && !seen.contains_key("username")
            && !seen.contains_key("password")
        {
            return Err(TemplateError::BasicAuthKeys);
        }
    }
    for (field, map) in [("labels", &t.labels), ("annotations", &t.annotations)] {
        for key in map.keys() {
            if let Err(why) = qualified_name(key) {
                return Err(TemplateError::BadMetadata {
                    field,
                    key: key.clone(),
                    what: "key",
                    why,
                });
            }
        }
    }
    for (key, value) in &t.labels {
        if !value.is_empty() && name_part(value).is_err() {
            return Err(TemplateError::BadMetadata {
                field: "labels",
                key: key.clone(),
                what: "label value",
                why: "at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            });
        }
    }
    if let Some(k) = t
        .annotations
        .keys()
        .find(|k| k.starts_with(RESERVED_ANNOTATION_PREFIX))
    {
        return Err(TemplateError::ReservedAnnotation(k.clone()));
    }
    Ok(())
}

/// Kubernetes' rule for label and annotation keys: an optional DNS
/// subdomain prefix and `/`, then a name part.
fn qualified_name(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if p.is_empty() || p.len() > 253 || !p.split('.').all(label) {
            return Err("the prefix before '/' must be a DNS subdomain (lowercase, at most 253)");
        }
    }
    name_part(name)
}

/// The name part of a qualified name (and a label value's rule).
fn name_part(name: &str) -> Result<(), &'static str> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || !edge(name.chars().next())
        || !edge(name.chars().last())
    {
        return Err(
            "the name must be at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        );
    }
    Ok(())
}

/// Kubernetes' rule for Secret keys, with the reason a key breaks it.
fn key_syntax(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("it is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return Err("it is longer than 253 characters");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("only letters, digits, '-', '_' and '.' are allowed");
    }
    if key == "." || key.starts_with("..") {
        return Err("it cannot be '.' or start with '..'");
    }
    Ok(())
}

/// The template engine: no loader (no files), no environment access (the
/// engine has none), strict about undefined names, no auto-escaping (the
/// output is a file, not HTML), a fuel budget against runaway loops.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(TEMPLATE_FUEL));
    // A block scalar in YAML ends in a newline, and so should the file; tag
    // lines should not leave blank lines behind.
    if let Ok(syntax) = SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.add_filter("b64encode", |v: String| -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(v)
    });
    env
}

fn template_context(facts: &Facts<'_>, creds: &Credentials) -> minijinja::Value {
    context! {
        client_id => creds.client_id.as_str(),
        client_secret => creds.client_secret.expose_secret(),
        client_name => facts.client_name,
        token_url => facts.token_url,
        token_endpoint_auth_method => facts.token_endpoint_auth_method,
        collibra_url => facts.collibra_url,
        grant_types => minijinja::Value::from_iter(facts.grant_types.iter().cloned()),
        redirect_uris => minijinja::Value::from_iter(facts.redirect_uris.iter().cloned()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};

    use super::*;
    use crate::controller::secret::shape::{
        differs, shape_patch, stored_credentials, type_changes,
    };

    const SECRET: &str = "Sup3r-S3cret-Value-0042";

    fn grants() -> Vec<String> {
        vec!["client_credentials".to_owned()]
    }

    fn facts(grant_types: &[String]) -> Facts<'_> {
        Facts {
            client_name: "billing-etl",
            token_url: "https://collibra.example/rest/oauth/v2/token",
            token_endpoint_auth_method: "client_secret_post",
            collibra_url: "https://collibra.example",
            grant_types,
            redirect_uris: &[],
        }
    }

    fn creds() -> Credentials {
        Credentials {
            client_id: "urn:id:1".to_owned(),
            client_secret: SecretString::from(SECRET),
        }
    }

    fn template(json: serde_json::Value) -> SecretTemplate {
        serde_json::from_value(json).expect("template parses")
    }

    fn text(shape: &Shape, key: &str) -> Option<String> {
        shape
            .data
            .get(key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    }

    fn secret_of(shape: &Shape) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("billing".into()),
                labels: Some(shape.labels.clone()),
                annotations: Some(shape.annotations.clone()),
                ..ObjectMeta::default()
            },
            type_: Some(shape.type_.clone()),
            data: Some(shape.data.clone()),
            ..Secret::default()
        }
    }

    /// Applies a JSON merge patch the way the API server does, for the
    /// parts `merge_patch` writes.
    fn apply(current: &Secret, patch: &serde_json::Value) -> Secret {
        let mut doc = serde_json::to_value(current).expect("serializes");
        merge(&mut doc, patch);
        serde_json::from_value(doc).expect("a Secret again")
    }

    fn merge(doc: &mut serde_json::Value, patch: &serde_json::Value) {
        match patch {
            serde_json::Value::Object(p) => {
                if !doc.is_object() {
                    *doc = serde_json::json!({});
                }
                for (k, v) in p {
                    if v.is_null() {
                        if let Some(o) = doc.as_object_mut() {
                            o.remove(k);
                        }
                    } else if let Some(o) = doc.as_object_mut() {
                        merge(o.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
            other => *doc = other.clone(),
        }
    }

    #[test]
    fn no_template_gives_todays_secret() {
        let g = grants();
        let shape = render(None, &facts(&g), Some(&creds())).expect("renders");
        assert_eq!(shape.type_, "Opaque");
        assert_eq!(
            shape.data.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "client_id",
                "client_name",
                "client_secret",
                "token_endpoint_auth_method",
                "token_url"
            ]
        );
        assert_eq!(text(&shape, "client_id").as_deref(), Some("urn:id:1"));
        assert_eq!(text(&shape, "client_secret").as_deref(), Some(SECRET));
        assert_eq!(text(&shape, "client_name").as_deref(), Some("billing-etl"));
        assert_eq!(
            text(&shape, "token_url").as_deref(),
            Some("https://collibra.example/rest/oauth/v2/token")
        );
        assert!(shape.labels.is_empty());
        assert!(
            shape.annotations.is_empty(),
            "today's Secret carries no record: {:?}",
            shape.annotations
        );
        // Nor does its claim.
        let claim = render(None, &facts(&g), None).expect("claim");
        assert!(claim.annotations.is_empty());
        // An empty template is the same as none.
        let empty = render(Some(&SecretTemplate::default()), &facts(&g), Some(&creds()));
        assert_eq!(empty, Ok(shape));
    }

    #[test]
    fn env_style_key_names() {
        let g = grants();
        let t = template(serde_json::json!({"keys": {
            "clientId": "CLIENT_ID", "clientSecret": "CLIENT_SECRET",
            "clientName": "CLIENT_NAME", "tokenUrl": "TOKEN_URL",
            "tokenEndpointAuthMethod": "AUTH_METHOD"}}));
        let shape = render(Some(&t), &facts(&g), Some(&creds())).expect("renders");
        assert_eq!(
            shape.data.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "AUTH_METHOD",
                "CLIENT_ID",
                "CLIENT_NAME",
                "CLIENT_SECRET",
                "TOKEN_URL"
            ]
        );
        assert_eq!(text(&shape, "CLIENT_SECRET").as_deref(), Some(SECRET));
        let back = stored_credentials(&secret_of(&shape)).expect("credentials");
        assert_eq!(back.client_id, "urn:id:1");
        assert_eq!(back.client_secret.expose_secret(), SECRET);
    }

    #[test]
    fn non_secret_keys_can_be_left_out_and_the_id_is_kept_in_an_annotation() {
        let g = grants();
        let t = template(serde_json::json!({"keys": {
            "clientId": "", "clientName": "", "tokenUrl": "", "tokenEndpointAuthMethod": ""}}));
        let shape = render(Some(&t), &facts(&g), Some(&creds())).expect("renders");
        assert_eq!(
            shape.data.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["client_secret"]
        );
        assert_eq!(
            shape
                .annotations
                .get(CLIENT_ID_ANNOTATION)
                .map(String::as_str),
            Some("urn:id:1")
        );
        let back = stored_credentials(&secret_of(&shape)).expect("credentials");
        assert_eq!(back.client_id, "urn:id:1");
        assert_eq!(back.client_secret.expose_secret(), SECRET);
    }

    #[test]
    fn the_client_secret_cannot_be_left_out() {
        let g = grants();
        let t = template(serde_json::json!({"keys": {"clientSecret": ""}}));
        let err = check(Some(&t), &facts(&g)).expect_err("rejected");
        assert!(
            matches!(&err, TemplateError::BadKey { field, .. } if field == "keys.clientSecret"),
            "{err:?}"
        );
    }

    #[test]
    fn data_templates_render_every_fact() {
        let g = vec![
            "authorization_code".to_owned(),
            "client_credentials".to_owned(),
        ];
        let t = template(serde_json::json!({"data": {
            "all": "{{ client_id }}|{{ client_secret }}|{{ client_name }}|{{ token_url }}|{{ collibra_url }}|{{ grant_types | join(',') }}",
            "basic": "{{ (client_id ~ ':' ~ client_secret) | b64encode }}",
            "quoted": "{{ client_secret | tojson }}",
            "url": "{{ 'a b&c' | urlencode }}",
        }}));
        let shape = render(Some(&t), &facts(&g), Some(&creds())).expect("renders");
        assert_eq!(
            text(&shape, "all").as_deref(),
            Some(
                "urn:id:1|Sup3r-S3cret-Value-0042|billing-etl|https://collibra.example/rest/oauth/v2/token|https://collibra.example|authorization_code,client_credentials"
            )
        );
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("urn:id:1:{SECRET}"));
        assert_eq!(text(&shape, "basic"), Some(basic));
        assert_eq!(text(&shape, "quoted"), Some(format!("\"{SECRET}\"")));
        assert_eq!(text(&shape, "url").as_deref(), Some("a%20b%26c"));
        // The standard keys are still there, and the record names them all.
        let record: Record =
            serde_json::from_str(&shape.annotations[SHAPE_ANNOTATION]).expect("record");
        assert!(record.keys.contains("client_secret") && record.keys.contains("basic"));
    }

    #[test]
    fn files_keep_their_trailing_newline_and_tag_lines_leave_no_blank_lines() {
        let g = vec![
            "authorization_code".to_owned(),
            "client_credentials".to_owned(),
        ];
        let t = template(serde_json::json!({"data": {
            ".env": "CLIENT_ID={{ client_id }}\nCLIENT_SECRET={{ client_secret }}\n",
            "grants.txt": "{% for g in grant_types %}\n- {{ g }}\n{% endfor %}\n",
        }}));
        let shape = render(Some(&t), &facts(&g), Some(&creds())).expect("renders");
        assert_eq!(
            text(&shape, ".env"),
            Some(format!("CLIENT_ID=urn:id:1\nCLIENT_SECRET={SECRET}\n"))
        );
        assert_eq!(
            text(&shape, "grants.txt").as_deref(),
            Some("- authorization_code\n- client_credentials\n")
        );
    }

    #[test]
    fn redirect_uris_render_as_a_list() {
        let g = vec!["authorization_code".to_owned()];
        let uris = vec![
            "https://app.example/cb".to_owned(),
            "http://localhost:8080/cb".to_owned(),
        ];
        let f = Facts {
            redirect_uris: &uris,
            ..facts(&g)
        };
        let t = template(serde_json::json!({"data": {
            "app.json": "{{ {'client_id': client_id, 'redirect_uris': redirect_uris} | tojson }}",
            "first": "{{ redirect_uris | first }}",
        }}));
        let shape = render(Some(&t), &f, Some(&creds())).expect("renders");
        let json: serde_json::Value =
            serde_json::from_str(&text(&shape, "app.json").expect("app.json")).expect("json");
        assert_eq!(
            json["redirect_uris"],
            serde_json::json!(["https://app.example/cb", "http://localhost:8080/cb"])
        );
        assert_eq!(
            text(&shape, "first").as_deref(),
            Some("https://app.example/cb")
        );
        // Without any, the variable is an empty list, not undefined.
        let t = template(serde_json::json!({"data": {"n": "{{ redirect_uris | length }}"}}));
        let shape = render(Some(&t), &facts(&g), Some(&creds())).expect("renders");
        assert_eq!(text(&shape, "n").as_deref(), Some("0"));
    }

    #[test]
    fn no_file_or_environment_access() {
        let g = grants();
        for source in [
            "{% include '/etc/passwd' %}",
            "{% import '/etc/passwd' as x %}",
            "{% extends '/etc/passwd' %}",
            "{{ env.HOME }}",
            "{{ environ('HOME') }}",
            "{{ lookup('file', '/etc/passwd') }}",
        ] {
            let t = template(serde_json::json!({"data": {"x": source}}));
            let err = check(Some(&t), &facts(&g)).expect_err(source);
            assert!(
                matches!(&err, TemplateError::Template { key, .. } if key == "x"),
                "{source}: {err:?}"
            );
        }
    }

    #[test]
    fn undefined_names_and_syntax_errors_name_the_key() {
        let g = grants();
        let t = template(serde_json::json!({"data": {"app.yaml": "id: {{ client_idd }}"}}));
        let err = check(Some(&t), &facts(&g)).expect_err("undefined");
        let msg = err.to_string();
        assert!(
            msg.contains("data[\"app.yaml\"]") && msg.contains("undefined"),
            "{msg}"
        );

        let t = template(serde_json::json!({"data": {"k": "{% if %}"}}));
        let msg = check(Some(&t), &facts(&g)).expect_err("syntax").to_string();
        assert!(
            msg.contains("data[\"k\"]") && msg.contains("syntax error"),
            "{msg}"
        );
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let g = grants();
        let t = template(serde_json::json!({"data": {"k":
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"}}));
        let msg = check(Some(&t), &facts(&g)).expect_err("fuel").to_string();
        assert!(msg.contains("fuel"), "{msg}");
    }

    #[test]
    fn a_secret_larger_than_kubernetes_allows_is_an_error() {
        let g = grants();
        let big = "x".repeat(MAX_SECRET_BYTES);
        let t = template(serde_json::json!({"data": {"big": big}}));
        assert!(matches!(
            render(Some(&t), &facts(&g), Some(&creds())),
            Err(TemplateError::TooLarge(n)) if n > MAX_SECRET_BYTES
        ));
    }

    #[test]
    fn errors_never_quote_the_secret() {
        let g = grants();
        let probes = [
            // Fails only with the real value: the detail is withheld.
            format!(
                "{{% if client_secret == '{SECRET}' %}}{{{{ client_secret ~ missing }}}}{{% endif %}}"
            ),
            "{% if client_secret[:5] == 'Sup3r' %}{{ client_secret | int }}{% endif %}".to_owned(),
            format!(
                "{{% if client_secret|length == {} %}}{{{{ client_secret[99] }}}}{{% endif %}}",
                SECRET.len()
            ),
            // Fails either way.
            "{{ client_secret | int }}".to_owned(),
            "{{ client_secret + 1 }}".to_owned(),
            "{{ client_secret() }}".to_owned(),
            "{{ client_secret.foo.bar }}".to_owned(),
            "{{ client_secret | nosuchfilter }}".to_owned(),
            "{% for x in client_secret %}{{ x.y }}{% endfor %}".to_owned(),
            "{{ {client_secret: 1}[2] }}".to_owned(),
            "{% set x = client_secret %}{{ x is nosuchtest }}".to_owned(),
        ];
        for source in &probes {
            let t = template(serde_json::json!({"data": {"k": source}}));
            let err = render(Some(&t), &facts(&g), Some(&creds())).expect_err(source);
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains(SECRET), "{source} -> {shown}");
                assert!(!shown.contains("Sup3r-S3cret"), "{source} -> {shown}");
            }
        }
        let t = template(serde_json::json!({"data": {"k": &probes[0]}}));
        let err = render(Some(&t), &facts(&g), Some(&creds())).expect_err("real only");
        assert!(
            matches!(&err, TemplateError::FailsOnCredentials { key, line: 1, .. } if key == "k"),
            "{err:?}"
        );
        // Debug of the credentials themselves redacts the secret.
        assert!(!format!("{:?}", creds()).contains(SECRET));
    }

    #[test]
    fn key_names_follow_the_secret_key_rule() {
        let g = grants();
        for (key, ok) in [
            ("CLIENT_ID", true),
            ("application.yaml", true),
            (".env", true),
            ("a-b_c.d", true),
            ("a b", false),
            ("a/b", false),
            ("é", false),
            (".", false),
            ("..", false),
            ("..x", false),
        ] {
            let t = template(serde_json::json!({"keys": {"clientId": key}}));
            assert_eq!(
                check(Some(&t), &facts(&g)).is_ok(),
                ok,
                "keys.clientId {key:?}"
            );
            let t = template(serde_json::json!({"data": {key: "x"}}));
            let got = check(Some(&t), &facts(&g));
            assert_eq!(got.is_ok(), ok, "data {key:?}: {got:?}");
        }
        let long = "k".repeat(254);
        let t = template(serde_json::json!({"data": {long.clone(): "x"}}));
        assert!(matches!(
            check(Some(&t), &facts(&g)),
            Err(TemplateError::BadKey { why, .. }) if why.contains("253")
        ));
        let t = template(serde_json::json!({"data": {&long[..253]: "x"}}));
        assert_eq!(check(Some(&t), &facts(&g)), Ok(()));
    }

    #[test]
    fn collisions_are_errors() {
        let g = grants();
        for (json, key) in [
            (
                serde_json::json!({"keys": {"clientId": "client_secret"}}),
                "client_secret",
            ),
            (
                serde_json::json!({"keys": {"clientName": "x", "tokenUrl": "x"}}),
                "x",
            ),
            (
                serde_json::json!({"data": {"client_id": "{{ client_id }}"}}),
                "client_id",
            ),
            (
                serde_json::json!({"keys": {"clientSecret": "password"}, "data": {"password": "x"}}),
                "password",
            ),
        ] {
            let t = template(json.clone());
            match check(Some(&t), &facts(&g)) {
                Err(TemplateError::Collision { key: k, .. }) => assert_eq!(k, key, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        // A left-out key frees its default name for data.
        let t =
            template(serde_json::json!({"keys": {"clientName": ""}, "data": {"client_name": "n"}}));
        assert_eq!(check(Some(&t), &facts(&g)), Ok(()));
    }

    #[test]
    fn types_allowed_and_not() {
        let g = grants();
        let basic = serde_json::json!({"username": "u"});
        for (type_, ok) in [
            ("Opaque", true),
            ("kubernetes.io/basic-auth", true),
            ("example.com/oauth-client", true),
            ("kubernetes.io/tls", false),
            ("kubernetes.io/service-account-token", false),
            ("bootstrap.kubernetes.io/token", false),
            ("", false),
        ] {
            let t = template(serde_json::json!({"type": type_, "data": basic}));
            let got = check(Some(&t), &facts(&g));
            assert_eq!(got.is_ok(), ok, "{type_}: {got:?}");
        }
    }

    #[test]
    fn basic_auth_needs_username_or_password_and_claims_with_an_empty_one() {
        let g = grants();
        let t = template(serde_json::json!({"type": "kubernetes.io/basic-auth"}));
        assert_eq!(
            check(Some(&t), &facts(&g)),
            Err(TemplateError::BasicAuthKeys)
        );

        let t = template(serde_json::json!({"type": "kubernetes.io/basic-auth",
            "keys": {"clientId": "username", "clientSecret": "password"}}));
        let claim = render(Some(&t), &facts(&g), None).expect("claim");
        assert_eq!(claim.type_, BASIC_AUTH_TYPE);
        assert_eq!(text(&claim, "username").as_deref(), Some(""));
        assert!(!claim.data.contains_key("password"));
        assert!(
            stored_credentials(&secret_of(&claim)).is_none(),
            "a claim holds no credentials"
        );

        let full = render(Some(&t), &facts(&g), Some(&creds())).expect("renders");
        assert_eq!(text(&full, "username").as_deref(), Some("urn:id:1"));
        assert_eq!(text(&full, "password").as_deref(), Some(SECRET));
        let back = stored_credentials(&secret_of(&full)).expect("credentials");
        assert_eq!(back.client_secret.expose_secret(), SECRET);
    }

    #[test]
    fn a_claim_holds_no_credentials_and_no_rendered_data() {
        let g = grants();
        let t = template(serde_json::json!({"keys": {"clientId": "ID"},
            "data": {".env": "SECRET={{ client_secret }}"}}));
        let claim = render(Some(&t), &facts(&g), None).expect("claim");
        assert_eq!(
            claim.data.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["client_name", "token_endpoint_auth_method", "token_url"]
        );
        assert!(stored_credentials(&secret_of(&claim)).is_none());
        // A bad template is reported before anything is registered.
        let t = template(serde_json::json!({"data": {"k": "{{ nope }}"}}));
        assert!(render(Some(&t), &facts(&g), None).is_err());
    }

    #[test]
    fn reserved_annotations_and_the_managed_by_label() {
        let g = grants();
        let t = template(
            serde_json::json!({"annotations": {"oauth.collibra.dev/registering-since": "x"}}),
        );
        assert!(matches!(
            check(Some(&t), &facts(&g)),
            Err(TemplateError::ReservedAnnotation(k)) if k == "oauth.collibra.dev/registering-since"
        ));
        let t = template(serde_json::json!({"labels": {MANAGED_BY_LABEL: "someone", "team": "a"}}));
        let shape = render(Some(&t), &facts(&g), Some(&creds())).expect("renders");
        assert_eq!(
            shape.labels.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["team"]
        );
    }

    #[test]
    fn labels_and_annotations_the_api_server_would_refuse_are_errors() {
        let g = grants();
        for (json, ok) in [
            (
                serde_json::json!({"labels": {"team": "a", "example.com/tier": "gold"}}),
                true,
            ),
            (
                serde_json::json!({"labels": {"app.kubernetes.io/part-of": ""}}),
                true,
            ),
            (
                serde_json::json!({"annotations": {"example.com/note": "any text: at all"}}),
                true,
            ),
            (serde_json::json!({"labels": {"bad key": "a"}}), false),
            (serde_json::json!({"labels": {"Example.com/x": "a"}}), false),
            (serde_json::json!({"labels": {"/x": "a"}}), false),
            (serde_json::json!({"labels": {"team": "not ok"}}), false),
            (
                serde_json::json!({"labels": {"team": "x".repeat(64)}}),
                false,
            ),
            (serde_json::json!({"annotations": {"-x": "a"}}), false),
        ] {
            let t = template(json.clone());
            let got = check(Some(&t), &facts(&g));
            assert_eq!(got.is_ok(), ok, "{json}: {got:?}");
            if let Err(e) = got {
                assert!(matches!(e, TemplateError::BadMetadata { .. }), "{e:?}");
            }
        }
    }

    #[test]
    fn stored_credentials_of_legacy_and_broken_secrets() {
        let mut legacy = Secret {
            data: Some(BTreeMap::from([
                ("client_id".to_owned(), ByteString(b"id0".to_vec())),
                (
                    "client_secret".to_owned(),
                    ByteString(SECRET.as_bytes().to_vec()),
                ),
            ])),
            ..Secret::default()
        };
        let c = stored_credentials(&legacy).expect("legacy");
        assert_eq!(
            (c.client_id.as_str(), c.client_secret.expose_secret()),
            ("id0", SECRET)
        );
        // An edited record falls back to the default keys.
        legacy.metadata.annotations = Some(BTreeMap::from([(
            SHAPE_ANNOTATION.to_owned(),
            "{not json".to_owned(),
        )]));
        assert!(stored_credentials(&legacy).is_some());
        // Emptied values are no credentials.
        if let Some(d) = legacy.data.as_mut() {
            d.insert("client_secret".to_owned(), ByteString(Vec::new()));
        }
        assert!(stored_credentials(&legacy).is_none());
        assert!(stored_credentials(&Secret::default()).is_none());
    }

    #[test]
    fn edits_move_keys_labels_and_annotations_and_leave_others_alone() {
        let g = grants();
        let before = template(serde_json::json!({
            "labels": {"team": "a", "tier": "1"},
            "annotations": {"note": "x", "gone": "y"},
            "data": {".env": "S={{ client_secret }}\n"}}));
        let first = render(Some(&before), &facts(&g), Some(&creds())).expect("renders");
        let mut secret = secret_of(&first);
        // Someone else adds a label, an annotation and a key.
        secret
            .metadata
            .labels
            .get_or_insert_default()
            .insert("theirs".into(), "1".into());
        secret
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("theirs".into(), "1".into());
        secret
            .data
            .get_or_insert_default()
            .insert("theirs".into(), ByteString(b"1".to_vec()));
        assert!(!differs(&secret, &first));

        let after = template(serde_json::json!({
            "labels": {"team": "b"},
            "annotations": {"note": "x"},
            "keys": {"clientId": "CLIENT_ID", "clientSecret": "CLIENT_SECRET", "tokenUrl": ""},
            "data": {"application.yaml": "secret: {{ client_secret }}\n"}}));
        // Re-rendered from what the Secret holds, not from Collibra.
        let held = stored_credentials(&secret).expect("credentials");
        let second = render(Some(&after), &facts(&g), Some(&held)).expect("renders");
        assert!(differs(&secret, &second));
        assert!(!type_changes(&secret, &second));
        let patch = shape_patch(Some(&secret), &second);
        assert_eq!(patch["metadata"]["labels"]["tier"], serde_json::Value::Null);
        assert_eq!(
            patch["metadata"]["annotations"]["gone"],
            serde_json::Value::Null
        );
        assert_eq!(patch["data"]["client_id"], serde_json::Value::Null);
        assert!(patch["metadata"]["labels"].get("theirs").is_none());
        let patched = apply(&secret, &patch);
        assert!(!differs(&patched, &second), "one write is enough");
        let labels = patched.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("team").map(String::as_str), Some("b"));
        assert!(!labels.contains_key("tier"));
        assert!(labels.contains_key("theirs"));
        let ann = patched.metadata.annotations.clone().unwrap_or_default();
        assert!(
            !ann.contains_key("gone") && ann.contains_key("theirs") && ann.contains_key("note")
        );
        let data = patched.data.clone().unwrap_or_default();
        assert_eq!(
            data.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "CLIENT_ID",
                "CLIENT_SECRET",
                "application.yaml",
                "client_name",
                "theirs",
                "token_endpoint_auth_method"
            ]
        );
        let kept = stored_credentials(&patched).expect("credentials survive");
        assert_eq!(kept.client_secret.expose_secret(), SECRET);
        assert_eq!(kept.client_id, "urn:id:1");

        // Back to no template: today's Secret again, their additions kept.
        let third = render(None, &facts(&g), Some(&kept)).expect("renders");
        let back = apply(&patched, &shape_patch(Some(&patched), &third));
        let data = back.data.clone().unwrap_or_default();
        assert_eq!(
            data.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "client_id",
                "client_name",
                "client_secret",
                "theirs",
                "token_endpoint_auth_method",
                "token_url"
            ]
        );
        let labels = back.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["theirs"]
        );
    }

    #[test]
    fn a_legacy_secret_is_reshaped_in_one_patch() {
        let g = grants();
        let legacy_shape = render(None, &facts(&g), Some(&creds())).expect("renders");
        let mut legacy = secret_of(&legacy_shape);
        legacy.metadata.annotations = None; // written before the record existed
        let t = template(serde_json::json!({"keys": {"clientId": "", "clientSecret": "S"}}));
        let shape = render(Some(&t), &facts(&g), Some(&creds())).expect("renders");
        let patched = apply(&legacy, &shape_patch(Some(&legacy), &shape));
        let data = patched.data.clone().unwrap_or_default();
        assert_eq!(
            data.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "S",
                "client_name",
                "token_endpoint_auth_method",
                "token_url"
            ]
        );
        let c = stored_credentials(&patched).expect("credentials");
        assert_eq!(c.client_id, "urn:id:1");
        // The id annotation goes when the id has a key again.
        let again = render(None, &facts(&g), Some(&c)).expect("renders");
        let patch = shape_patch(Some(&patched), &again);
        assert_eq!(
            patch["metadata"]["annotations"][CLIENT_ID_ANNOTATION],
            serde_json::Value::Null
        );
        let restored = apply(&patched, &patch);
        assert!(!differs(&restored, &again));
        assert_eq!(
            stored_credentials(&restored)
                .map(|c| c.client_id)
                .as_deref(),
            Some("urn:id:1")
        );
    }

    #[test]
    fn a_type_change_is_detected() {
        let g = grants();
        let opaque = render(None, &facts(&g), Some(&creds())).expect("renders");
        let t = template(serde_json::json!({"type": "kubernetes.io/basic-auth",
            "keys": {"clientId": "username", "clientSecret": "password"}}));
        let basic = render(Some(&t), &facts(&g), Some(&creds())).expect("renders");
        assert!(type_changes(&secret_of(&opaque), &basic));
        assert!(!type_changes(&secret_of(&basic), &basic));
        let mut untyped = secret_of(&opaque);
        untyped.type_ = None;
        assert!(!type_changes(&untyped, &opaque), "no type reads as Opaque");
    }

    #[test]
    fn fresh_credentials_reach_the_secret_even_when_the_template_fails_on_them() {
        let g = grants();
        let t = template(serde_json::json!({
            "type": "kubernetes.io/basic-auth",
            "keys": {"clientId": "username", "clientSecret": "password"},
            "labels": {"team": "a"},
            "data": {"k": format!("{{% if client_secret == '{SECRET}' %}}{{{{ nope }}}}{{% endif %}}")}}));
        assert!(render(Some(&t), &facts(&g), Some(&creds())).is_err());
        let shape = render_lenient(Some(&t), &facts(&g), Some(&creds()));
        assert_eq!(
            shape.type_, BASIC_AUTH_TYPE,
            "the claim's type, which cannot change"
        );
        assert_eq!(text(&shape, "password").as_deref(), Some(SECRET));
        assert!(!shape.data.contains_key("k"));
        assert_eq!(shape.labels.get("team").map(String::as_str), Some("a"));
        let back = stored_credentials(&secret_of(&shape)).expect("credentials");
        assert_eq!(back.client_id, "urn:id:1");

        // A template invalid in itself falls back to today's Secret.
        let bad = template(serde_json::json!({"keys": {"clientId": "a b"}}));
        let shape = render_lenient(Some(&bad), &facts(&g), Some(&creds()));
        assert_eq!(
            shape,
            render(None, &facts(&g), Some(&creds())).expect("renders")
        );
    }

    #[test]
    fn the_examples_render() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        let g = grants();
        let mut with_templates = 0;
        for entry in std::fs::read_dir(dir).expect("examples/") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            let obj: crate::api::OAuthClient =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Some(t) = obj.spec.secret_template.as_ref() {
                with_templates += 1;
                let f = Facts {
                    redirect_uris: &obj.spec.redirect_uris,
                    ..facts(&g)
                };
                render(Some(t), &f, Some(&creds()))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
        assert!(with_templates >= 5, "examples/ lost its template examples");
    }
}
