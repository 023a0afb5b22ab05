//! Client records, their wire forms, and validation of the metadata a caller
//! sends (`RegisterClient` / `ClientWriteableInformation` in the OpenAPI).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::errors::ApiError;

/// Grant of "integration applications".
pub(crate) const CLIENT_CREDENTIALS: &str = "client_credentials";
/// Grant of "user applications".
pub(crate) const AUTHORIZATION_CODE: &str = "authorization_code";
/// API.md: no other grant types are documented.
const SUPPORTED_GRANT_TYPES: [&str; 2] = [CLIENT_CREDENTIALS, AUTHORIZATION_CODE];
/// The RFC 7591 name of the field; not in Collibra's published schema.
pub(crate) const REDIRECT_URIS: &str = "redirect_uris";

/// How an instance treats `redirect_uris` in a registration or update.
/// The field is assumed (RFC 7591's name; Collibra's product documentation
/// requires redirect URIs for user applications but the published schema
/// does not show the field), so the simulator can play each kind of
/// instance a caller may meet.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RedirectUris {
    /// Stored, validated, returned, and required for `authorization_code`.
    #[default]
    Supported,
    /// A body carrying the field is refused: 400 naming it.
    Rejected,
    /// The field is dropped without a word: the client is stored (and
    /// returned) without it.
    Ignored,
}

impl std::str::FromStr for RedirectUris {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "supported" => Ok(RedirectUris::Supported),
            "rejected" => Ok(RedirectUris::Rejected),
            "ignored" => Ok(RedirectUris::Ignored),
            other => Err(format!(
                "unknown redirect_uris mode '{other}'; use supported, rejected or ignored"
            )),
        }
    }
}

/// A registered client as the simulator stores it, secret included.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    /// Identifier assigned at registration, e.g. `urn:sys:env:…:i:1cnxtsn`.
    pub client_id: String,
    /// Unique, descriptive name.
    pub client_name: String,
    /// Grants the client may use.
    pub grant_types: Vec<String>,
    /// Software bundle identifier given at registration, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// Where the authorization endpoint may send a user back (exact match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// Seconds since the Unix epoch at registration.
    pub client_id_issued_at: i64,
    /// The secret; the real API shows it only in the 201 of the registration.
    pub client_secret: String,
}

/// Metadata a caller may write: what registration and update accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientMetadata {
    pub(crate) client_name: String,
    pub(crate) grant_types: Vec<String>,
    pub(crate) software_id: Option<String>,
    pub(crate) redirect_uris: Vec<String>,
}

/// `ClientInformationSummary`: an entry of `GET /clients`.
#[derive(Serialize)]
pub(crate) struct ClientSummary<'a> {
    client_id: &'a str,
    client_name: &'a str,
    client_id_issued_at: i64,
    grant_types: &'a [String],
}

impl<'a> From<&'a ClientRecord> for ClientSummary<'a> {
    fn from(c: &'a ClientRecord) -> Self {
        ClientSummary {
            client_id: &c.client_id,
            client_name: &c.client_name,
            client_id_issued_at: c.client_id_issued_at,
            grant_types: &c.grant_types,
        }
    }
}

/// `ClientInformation`: everything known about a client except its secret.
#[derive(Serialize)]
pub(crate) struct ClientInformation<'a> {
    client_id: &'a str,
    client_id_issued_at: i64,
    client_name: &'a str,
    grant_types: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    software_id: Option<&'a str>,
    #[serde(skip_serializing_if = "no_uris")]
    redirect_uris: &'a [String],
}

impl<'a> From<&'a ClientRecord> for ClientInformation<'a> {
    fn from(c: &'a ClientRecord) -> Self {
        ClientInformation {
            client_id: &c.client_id,
            client_id_issued_at: c.client_id_issued_at,
            client_name: &c.client_name,
            grant_types: &c.grant_types,
            software_id: c.software_id.as_deref(),
            redirect_uris: &c.redirect_uris,
        }
    }
}

/// Clients without redirect URIs are answered as before the field existed.
fn no_uris(uris: &&[String]) -> bool {
    uris.is_empty()
}

/// `ClientRegistration`: the 201 of a registration, the only place the secret shows.
#[derive(Serialize)]
pub(crate) struct ClientRegistration<'a> {
    #[serde(flatten)]
    info: ClientInformation<'a>,
    client_secret: &'a str,
}

impl<'a> From<&'a ClientRecord> for ClientRegistration<'a> {
    fn from(c: &'a ClientRecord) -> Self {
        ClientRegistration {
            info: ClientInformation::from(c),
            client_secret: &c.client_secret,
        }
    }
}

/// Validates the body of `POST /clients`.
pub(crate) fn parse_registration(
    body: &[u8],
    mode: RedirectUris,
) -> Result<ClientMetadata, ApiError> {
    metadata_from(&parse_object(body)?, mode)
}

/// Validates the body of `PUT /clients/{id}`. As in RFC 7592 the body
/// replaces the client's metadata: omitted fields fall back to their
/// defaults. `client_id` and `client_secret` may be echoed but must match.
pub(crate) fn parse_update(
    body: &[u8],
    current: &ClientRecord,
    mode: RedirectUris,
) -> Result<ClientMetadata, ApiError> {
    let object = parse_object(body)?;
    match object.get("client_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) if *id == current.client_id => {}
        Some(Value::String(id)) => {
            return Err(ApiError::invalid_request(format!(
                "client_id '{id}' in the body does not match the client_id in the path"
            )));
        }
        Some(_) => return Err(ApiError::invalid_request("client_id must be a string")),
    }
    match object.get("client_secret") {
        None | Some(Value::Null) => {}
        Some(Value::String(secret)) if *secret == current.client_secret => {}
        Some(_) => {
            return Err(ApiError::invalid_request(
                "client_secret in the body does not match the client's secret",
            ));
        }
    }
    metadata_from(&object, mode)
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_request("a JSON request body is required"));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_request(format!("the request body is not valid JSON: {e}"))
    })?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::invalid_request(
            "the request body must be a JSON object",
        )),
    }
}

fn metadata_from(
    object: &Map<String, Value>,
    mode: RedirectUris,
) -> Result<ClientMetadata, ApiError> {
    let client_name = match object.get("client_name") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_metadata("client_name is required"));
        }
        Some(Value::String(name)) if name.trim().is_empty() => {
            return Err(ApiError::invalid_metadata("client_name must not be empty"));
        }
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err(ApiError::invalid_metadata("client_name must be a string")),
    };
    let grant_types = match object.get("grant_types") {
        None | Some(Value::Null) => vec![CLIENT_CREDENTIALS.to_owned()],
        Some(Value::Array(items)) => grant_types_from(items)?,
        Some(_) => {
            return Err(ApiError::invalid_metadata(
                "grant_types must be an array of strings",
            ));
        }
    };
    let software_id = match object.get("software_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err(ApiError::invalid_metadata("software_id must be a string")),
    };
    let given = object.get(REDIRECT_URIS).filter(|v| !v.is_null());
    let redirect_uris = match (mode, given) {
        (RedirectUris::Rejected, Some(_)) => {
            // What an instance that predates the field might say.
            return Err(ApiError::invalid_metadata(format!(
                "unrecognized field '{REDIRECT_URIS}': this server does not accept it"
            )));
        }
        (RedirectUris::Ignored, _) | (_, None) => Vec::new(),
        (RedirectUris::Supported, Some(value)) => redirect_uris_from(value)?,
    };
    // Collibra's product documentation: a user application needs one or
    // more redirect URIs. An instance without the field cannot ask for them.
    if mode == RedirectUris::Supported
        && grant_types.iter().any(|g| g == AUTHORIZATION_CODE)
        && redirect_uris.is_empty()
    {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            format!(
                "{REDIRECT_URIS} is required for a client with the {AUTHORIZATION_CODE} grant \
                 (a user application): give one or more http or https URLs"
            ),
        ));
    }
    Ok(ClientMetadata {
        client_name,
        grant_types,
        software_id,
        redirect_uris,
    })
}

/// RFC 7591 2 and RFC 6749 3.1.2: absolute URIs without a fragment; as
/// Collibra's documentation says, http or https ones.
fn redirect_uris_from(value: &Value) -> Result<Vec<String>, ApiError> {
    let invalid = |description: String| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            description,
        )
    };
    let Value::Array(items) = value else {
        return Err(invalid(format!(
            "{REDIRECT_URIS} must be an array of strings"
        )));
    };
    let mut uris: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(uri) = item else {
            return Err(invalid(format!(
                "{REDIRECT_URIS} must be an array of strings"
            )));
        };
        let parsed = url::Url::parse(uri)
            .map_err(|e| invalid(format!("redirect URI '{uri}' is not an absolute URI: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(invalid(format!(
                "redirect URI '{uri}' must be an http or https URL"
            )));
        }
        if parsed.fragment().is_some() {
            return Err(invalid(format!(
                "redirect URI '{uri}' must not contain a fragment"
            )));
        }
        if uris.contains(uri) {
            return Err(invalid(format!(
                "redirect URI '{uri}' is listed more than once"
            )));
        }
        uris.push(uri.clone());
    }
    Ok(uris)
}

fn grant_types_from(items: &[Value]) -> Result<Vec<String>, ApiError> {
    if items.is_empty() {
        return Err(ApiError::invalid_metadata("grant_types must not be empty"));
    }
    let mut grant_types: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(grant) = item else {
            return Err(ApiError::invalid_metadata(
                "grant_types must be an array of strings",
            ));
        };
        if !SUPPORTED_GRANT_TYPES.contains(&grant.as_str()) {
            return Err(ApiError::invalid_metadata(format!(
                "unsupported grant type '{grant}'; supported: {}",
                SUPPORTED_GRANT_TYPES.join(", ")
            )));
        }
        if grant_types.contains(grant) {
            return Err(ApiError::invalid_metadata(format!(
                "grant type '{grant}' is listed more than once"
            )));
        }
        grant_types.push(grant.clone());
    }
    Ok(grant_types)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_registration_s(body: &[u8]) -> Result<ClientMetadata, ApiError> {
        parse_registration(body, RedirectUris::Supported)
    }

    fn code(r: Result<ClientMetadata, ApiError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.error(),
        }
    }

    #[test]
    fn defaults_grant_types_to_client_credentials() {
        let m = parse_registration_s(br#"{"client_name":"a"}"#).expect("valid");
        assert_eq!(m.grant_types, vec!["client_credentials"]);
        assert_eq!(m.software_id, None);
    }

    #[test]
    fn rejects_bad_metadata() {
        assert_eq!(code(parse_registration_s(b"")), "invalid_request");
        assert_eq!(code(parse_registration_s(b"{")), "invalid_request");
        assert_eq!(code(parse_registration_s(b"[]")), "invalid_request");
        assert_eq!(code(parse_registration_s(b"{}")), "invalid_client_metadata");
        assert_eq!(
            code(parse_registration_s(br#"{"client_name":" "}"#)),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse_registration_s(br#"{"client_name":3}"#)),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse_registration_s(
                br#"{"client_name":"a","grant_types":["implicit"]}"#
            )),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse_registration_s(
                br#"{"client_name":"a","grant_types":["client_credentials","client_credentials"]}"#
            )),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse_registration_s(
                br#"{"client_name":"a","grant_types":[]}"#
            )),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse_registration_s(
                br#"{"client_name":"a","software_id":1}"#
            )),
            "invalid_client_metadata"
        );
    }

    #[test]
    fn update_checks_echoed_identity() {
        let current = ClientRecord {
            client_id: "id-1".into(),
            client_name: "a".into(),
            grant_types: vec![CLIENT_CREDENTIALS.into()],
            software_id: Some("s".into()),
            redirect_uris: Vec::new(),
            client_id_issued_at: 1,
            client_secret: "sec".into(),
        };
        let m = parse_update(
            br#"{"client_id":"id-1","client_name":"b"}"#,
            &current,
            RedirectUris::Supported,
        )
        .expect("valid");
        assert_eq!(m.client_name, "b");
        // Replacement semantics: an omitted software_id is removed.
        assert_eq!(m.software_id, None);
        assert_eq!(
            code(parse_update(
                br#"{"client_id":"id-2","client_name":"b"}"#,
                &current,
                RedirectUris::Supported
            )),
            "invalid_request"
        );
        assert_eq!(
            code(parse_update(
                br#"{"client_secret":"nope","client_name":"b"}"#,
                &current,
                RedirectUris::Supported
            )),
            "invalid_request"
        );
    }

    #[test]
    fn redirect_uris_are_validated_and_required_for_user_applications() {
        let m = parse_registration_s(
            br#"{"client_name":"ui","grant_types":["authorization_code"],"redirect_uris":["https://app.example/cb","http://localhost:8080/cb"]}"#,
        )
        .expect("valid");
        assert_eq!(
            m.redirect_uris,
            ["https://app.example/cb", "http://localhost:8080/cb"]
        );
        for body in [
            br#"{"client_name":"ui","grant_types":["authorization_code"]}"#.as_slice(),
            br#"{"client_name":"ui","grant_types":["authorization_code"],"redirect_uris":[]}"#,
            br#"{"client_name":"ui","redirect_uris":["/relative"]}"#,
            br#"{"client_name":"ui","redirect_uris":["ftp://x.example/cb"]}"#,
            br#"{"client_name":"ui","redirect_uris":["https://x.example/cb#frag"]}"#,
            br#"{"client_name":"ui","redirect_uris":["https://x.example/cb","https://x.example/cb"]}"#,
            br#"{"client_name":"ui","redirect_uris":"https://x.example/cb"}"#,
        ] {
            assert_eq!(
                code(parse_registration_s(body)),
                "invalid_redirect_uri",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn instances_without_the_field_reject_or_drop_it() {
        let body = br#"{"client_name":"ui","grant_types":["authorization_code"],"redirect_uris":["https://app.example/cb"]}"#;
        let err = parse_registration(body, RedirectUris::Rejected).expect_err("rejected");
        assert_eq!(err.error(), "invalid_client_metadata");
        assert!(err.description().contains("redirect_uris"));
        let m = parse_registration(body, RedirectUris::Ignored).expect("ignored");
        assert!(m.redirect_uris.is_empty());
        // Such an instance cannot ask for a field it does not know.
        let without = br#"{"client_name":"ui","grant_types":["authorization_code"]}"#;
        assert!(parse_registration(without, RedirectUris::Rejected).is_ok());
        assert_eq!("ignored".parse::<RedirectUris>(), Ok(RedirectUris::Ignored));
        assert!("maybe".parse::<RedirectUris>().is_err());
    }
}
