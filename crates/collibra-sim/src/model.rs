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
}

impl<'a> From<&'a ClientRecord> for ClientInformation<'a> {
    fn from(c: &'a ClientRecord) -> Self {
        ClientInformation {
            client_id: &c.client_id,
            client_id_issued_at: c.client_id_issued_at,
            client_name: &c.client_name,
            grant_types: &c.grant_types,
            software_id: c.software_id.as_deref(),
        }
    }
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
pub(crate) fn parse_registration(body: &[u8]) -> Result<ClientMetadata, ApiError> {
    metadata_from(&parse_object(body)?)
}

/// Validates the body of `PUT /clients/{id}`. As in RFC 7592 the body
/// replaces the client's metadata: omitted fields fall back to their
/// defaults. `client_id` and `client_secret` may be echoed but must match.
pub(crate) fn parse_update(
    body: &[u8],
    current: &ClientRecord,
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
    metadata_from(&object)
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

fn metadata_from(object: &Map<String, Value>) -> Result<ClientMetadata, ApiError> {
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
    Ok(ClientMetadata {
        client_name,
        grant_types,
        software_id,
    })
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

    fn code(r: Result<ClientMetadata, ApiError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.error(),
        }
    }

    #[test]
    fn defaults_grant_types_to_client_credentials() {
        let m = parse_registration(br#"{"client_name":"a"}"#).expect("valid");
        assert_eq!(m.grant_types, vec!["client_credentials"]);
        assert_eq!(m.software_id, None);
    }

    #[test]
    fn rejects_bad_metadata() {
        assert_eq!(code(parse_registration(b"")), "invalid_request");
        assert_eq!(code(parse_registration(b"{")), "invalid_request");
        assert_eq!(code(parse_registration(b"[]")), "invalid_request");
        assert_eq!(code(parse_registration(b"{}")), "invalid_client_metadata");
        assert_eq!(
            code(parse_registration(br#"{"client_name":" "}"#)),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse_registration(br#"{"client_name":3}"#)),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse_registration(
                br#"{"client_name":"a","grant_types":["implicit"]}"#
            )),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse_registration(
                br#"{"client_name":"a","grant_types":["client_credentials","client_credentials"]}"#
            )),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse_registration(
                br#"{"client_name":"a","grant_types":[]}"#
            )),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(parse_registration(
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
            client_id_issued_at: 1,
            client_secret: "sec".into(),
        };
        let m =
            parse_update(br#"{"client_id":"id-1","client_name":"b"}"#, &current).expect("valid");
        assert_eq!(m.client_name, "b");
        // Replacement semantics: an omitted software_id is removed.
        assert_eq!(m.software_id, None);
        assert_eq!(
            code(parse_update(
                br#"{"client_id":"id-2","client_name":"b"}"#,
                &current
            )),
            "invalid_request"
        );
        assert_eq!(
            code(parse_update(
                br#"{"client_secret":"nope","client_name":"b"}"#,
                &current
            )),
            "invalid_request"
        );
    }
}
