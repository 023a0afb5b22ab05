//! The JSON shapes of the client management API, and their parsing.
//!
//! Parsing is lenient where Collibra's documentation is vague (unknown fields,
//! `null` lists, timestamps as strings) and strict where a wrong guess would
//! mislead the operator (a list without `registrations` is an error, not "no
//! clients").

use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{self, Error};
use crate::observer::Operation;
use crate::transport::Response;

/// A registered client as Collibra describes it (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClientInfo {
    /// Identifier assigned by Collibra, e.g. `urn:sys:env:...:i:1cnxtsn`.
    pub client_id: String,
    /// The unique, human-chosen name.
    pub client_name: String,
    /// Seconds since the Unix epoch.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub client_id_issued_at: Option<i64>,
    /// Grants the client may use; empty when Collibra does not say.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub grant_types: Vec<String>,
    /// Redirect URIs of a user application; `None` when the answer does
    /// not carry the field (the published list shape never does).
    #[serde(default)]
    pub redirect_uris: Option<Vec<String>>,
}

/// The wire name of the redirect URIs (RFC 7591); assumed, not in the
/// published schema.
pub const REDIRECT_URIS: &str = "redirect_uris";

/// Whether an answer about a client shows the redirect URIs that were
/// sent; an [`Error::Ignored`] when it does not. Nothing sent, nothing to
/// check: clients without redirect URIs never depend on the field.
/// Compared as sets, since the order carries no meaning.
pub fn check_redirect_uris(
    operation: Operation,
    status: u16,
    sent: &[String],
    answer: &ClientInfo,
) -> Result<(), Error> {
    if sent.is_empty() {
        return Ok(());
    }
    let how = match &answer.redirect_uris {
        None => "does not carry it",
        Some(got) if !same_set(got, sent) => "shows other values",
        Some(_) => return Ok(()),
    };
    Err(Error::Ignored {
        operation,
        status,
        field: REDIRECT_URIS,
        how,
    })
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    a == b
}

/// The body of `POST /clients`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewClient {
    /// Unique name of the new client.
    pub client_name: String,
    /// Grants it may use, e.g. `client_credentials`.
    pub grant_types: Vec<String>,
    /// Passed through as `software_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// Where a user application may send users back after sign-in (RFC
    /// 7591 `redirect_uris`). Left out of the body when empty, so a server
    /// that does not know the field never sees it for other clients.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
}

/// The writeable fields for `PUT /clients/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientUpdate {
    /// The client's name (unchanged in practice: it is the natural key).
    pub client_name: String,
    /// The grants it may use from now on.
    pub grant_types: Vec<String>,
    /// Passed through as `software_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// The redirect URIs from now on; left out when empty (RFC 7592
    /// replaces the metadata, so that removes them where they were set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
}

/// A newly registered client with the secret Collibra shows exactly once.
#[derive(Debug, Clone)]
pub struct IssuedClient {
    /// What Collibra returned about the client.
    pub info: ClientInfo,
    /// The client secret; store it at once, it cannot be read again.
    pub client_secret: SecretString,
    /// Set when the answer shows that Collibra ignored a field that was
    /// sent ([`Error::Ignored`]). The client exists all the same and this
    /// is its only secret: store it first, then report this.
    pub ignored: Option<Error>,
}

/// The PUT body: RFC 7592 wants the id repeated in the body.
#[derive(Serialize)]
pub(crate) struct UpdateBody<'a> {
    pub client_id: &'a str,
    #[serde(flatten)]
    pub update: &'a ClientUpdate,
}

/// The documented shape of `GET /clients`.
#[derive(Deserialize)]
struct ListBody {
    registrations: Vec<ClientInfo>,
}

/// The registrations in a `GET /clients` answer. The bare array is
/// tolerated in case a deployment returns one. Parsed straight into the
/// shape its first byte announces: an untagged enum would first buffer the
/// whole document as generic values (about 0.4 KiB per client, held while
/// a restart lists 10,000 of them; BENCHMARKS.md, round three).
pub(crate) fn parse_list(response: &Response) -> Result<Vec<ClientInfo>, Error> {
    let bare = response
        .body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[');
    let parsed = if bare {
        serde_json::from_slice::<Vec<ClientInfo>>(&response.body)
    } else {
        serde_json::from_slice::<ListBody>(&response.body).map(|b| b.registrations)
    };
    parsed.map_err(|e| invalid_body(Operation::List, response, &e.to_string()))
}

#[derive(Deserialize)]
struct RegisteredBody {
    #[serde(flatten)]
    info: ClientInfo,
    client_secret: SecretString,
}

/// A single client from `GET` or `PUT /clients/{id}`.
pub(crate) fn parse_client(operation: Operation, response: &Response) -> Result<ClientInfo, Error> {
    serde_json::from_slice(&response.body)
        .map_err(|e| invalid_body(operation, response, &e.to_string()))
}

/// The 201 of a registration. Its body holds the new secret, so error
/// messages describe the problem without quoting any of it.
pub(crate) fn parse_registered(response: &Response) -> Result<IssuedClient, Error> {
    let body: RegisteredBody = serde_json::from_slice(&response.body).map_err(|e| {
        let kind = response
            .content_type
            .as_deref()
            .and_then(|ct| ct.split(';').next())
            .unwrap_or("no content type");
        Error::InvalidResponse {
            operation: Operation::Register,
            message: format!(
                "Collibra answered HTTP {} ({kind}) but the body is not the registered client ({}); \
                 the client may exist without its secret",
                response.status,
                safe_json_error(&e)
            ),
        }
    })?;
    Ok(IssuedClient {
        info: body.info,
        client_secret: body.client_secret,
        ignored: None,
    })
}

/// An InvalidResponse for a body that holds no credentials, so an excerpt
/// may be shown when it is not JSON at all.
fn invalid_body(operation: Operation, response: &Response, detail: &str) -> Error {
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&response.body).is_ok();
    let message = if response.body.is_empty() {
        format!("HTTP {} with an empty body", response.status)
    } else if !is_json {
        error::non_json_summary(
            response.status,
            response.content_type.as_deref(),
            &response.body,
        )
        .unwrap_or_else(|| format!("HTTP {} with a blank body", response.status))
    } else {
        format!("HTTP {} with unexpected JSON: {detail}", response.status)
    };
    Error::InvalidResponse { operation, message }
}

/// A serde_json error described without any input text: its category and
/// position, plus the message when it only names a field.
pub(crate) fn safe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("missing field") {
        return text;
    }
    let kind = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "a field has the wrong type",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Seconds since the epoch as an integer, a float or a numeric string.
fn lenient_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error as _;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| D::Error::custom("client_id_issued_at is out of range")),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom("client_id_issued_at is not a number")),
        Some(_) => Err(D::Error::custom("client_id_issued_at is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use secrecy::ExposeSecret;

    fn response(status: u16, content_type: &str, body: &str) -> Response {
        Response {
            status,
            content_type: Some(content_type.to_owned()),
            retry_after: None,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn list_parses_documented_shape_and_ignores_unknown_fields() {
        let r = response(
            200,
            "application/json",
            r#"{"registrations":[{"client_id":"urn:a:i:1","client_name":"a","client_id_issued_at":1700000000,"grant_types":["client_credentials"],"extra":1},
                                  {"client_id":"urn:a:i:2","client_name":"b","grant_types":null}]}"#,
        );
        let list = parse_list(&r).expect("list");
        assert_eq!(
            list,
            vec![
                ClientInfo {
                    client_id: "urn:a:i:1".into(),
                    client_name: "a".into(),
                    client_id_issued_at: Some(1_700_000_000),
                    grant_types: vec!["client_credentials".into()],
                    redirect_uris: None,
                },
                ClientInfo {
                    client_id: "urn:a:i:2".into(),
                    client_name: "b".into(),
                    client_id_issued_at: None,
                    grant_types: vec![],
                    redirect_uris: None,
                },
            ]
        );
    }

    #[test]
    fn list_as_a_bare_array_is_tolerated() {
        let r = response(
            200,
            "application/json",
            "\n [{\"client_id\":\"urn:a:i:1\",\"client_name\":\"a\"}]",
        );
        let list = parse_list(&r).expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].client_name, "a");
    }

    #[test]
    fn list_without_registrations_is_an_error_not_an_empty_list() {
        let err =
            parse_list(&response(200, "application/json", r#"{"items":[]}"#)).expect_err("err");
        let Error::InvalidResponse { message, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains("registrations"), "{message}");
    }

    #[test]
    fn html_list_body_is_described() {
        let err = parse_list(&response(
            200,
            "text/html",
            "<html><body>Login</body></html>",
        ))
        .expect_err("err");
        assert!(
            err.to_string()
                .contains("HTTP 200 with a non-JSON body (text/html): Login"),
            "{err}"
        );
    }

    #[test]
    fn timestamps_as_strings_are_accepted() {
        let info: ClientInfo = serde_json::from_str(
            r#"{"client_id":"x","client_name":"y","client_id_issued_at":"42"}"#,
        )
        .expect("parse");
        assert_eq!(info.client_id_issued_at, Some(42));
    }

    #[test]
    fn registration_is_parsed_with_its_secret() {
        let r = response(
            201,
            "application/json",
            r#"{"client_id":"urn:x:i:1","client_name":"n","client_id_issued_at":5,"grant_types":["client_credentials"],"client_secret":"s3cr3t"}"#,
        );
        let issued = parse_registered(&r).expect("issued");
        assert_eq!(issued.info.client_id, "urn:x:i:1");
        assert_eq!(issued.client_secret.expose_secret(), "s3cr3t");
        let debug = format!("{issued:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("urn:x:i:1"), "{debug}");
    }

    #[test]
    fn broken_registration_body_never_quotes_the_secret() {
        let bodies = [
            // Truncated.
            r#"{"client_id":"urn:x:i:1","client_name":"n","client_secret":"s3cr3t"#,
            // Wrong type next to the secret.
            r#"{"client_id":"urn:x:i:1","client_name":["s3cr3t"],"client_secret":"s3cr3t"}"#,
            // Secret where something else belongs.
            r#"{"client_id":"urn:x:i:1","client_name":"n","client_id_issued_at":"s3cr3t","client_secret":"s3cr3t"}"#,
        ];
        for body in bodies {
            let err = parse_registered(&response(201, "application/json", body)).expect_err("err");
            let text = format!("{err} {err:?}");
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(matches!(
                err,
                Error::InvalidResponse {
                    operation: Operation::Register,
                    ..
                }
            ));
        }
        let err = parse_registered(&response(
            201,
            "application/json",
            r#"{"client_id":"urn:x:i:1","client_name":"n"}"#,
        ))
        .expect_err("err");
        assert!(
            err.to_string().contains("missing field `client_secret`"),
            "{err}"
        );
    }

    #[test]
    fn request_bodies_serialize_as_documented() {
        let new = NewClient {
            client_name: "etl".into(),
            grant_types: vec!["client_credentials".into()],
            software_id: None,
            redirect_uris: vec![],
        };
        assert_eq!(
            serde_json::to_value(&new).expect("json"),
            serde_json::json!({"client_name":"etl","grant_types":["client_credentials"]})
        );
        let update = ClientUpdate {
            client_name: "etl".into(),
            grant_types: vec!["authorization_code".into()],
            software_id: Some("suite".into()),
            redirect_uris: vec!["https://app.example/cb".into()],
        };
        let body = UpdateBody {
            client_id: "urn:x:i:1",
            update: &update,
        };
        assert_eq!(
            serde_json::to_value(&body).expect("json"),
            serde_json::json!({"client_id":"urn:x:i:1","client_name":"etl","grant_types":["authorization_code"],"software_id":"suite","redirect_uris":["https://app.example/cb"]})
        );
    }

    #[test]
    fn an_answer_without_the_redirect_uris_sent_is_an_ignored_field() {
        let sent = vec![
            "https://a.example/cb".to_owned(),
            "http://localhost/cb".to_owned(),
        ];
        let info = |uris: Option<Vec<&str>>| ClientInfo {
            client_id: "urn:x:i:1".into(),
            client_name: "ui".into(),
            client_id_issued_at: None,
            grant_types: vec!["authorization_code".into()],
            redirect_uris: uris.map(|u| u.into_iter().map(str::to_owned).collect()),
        };
        let reordered = info(Some(vec!["http://localhost/cb", "https://a.example/cb"]));
        assert_eq!(
            check_redirect_uris(Operation::Register, 201, &sent, &reordered),
            Ok(())
        );
        let err =
            check_redirect_uris(Operation::Register, 201, &sent, &info(None)).expect_err("ignored");
        assert_eq!(err.metric_label(), "ignored");
        let text = err.to_string();
        assert!(
            text.contains("ignored redirect_uris") && text.contains("does not carry it"),
            "{text}"
        );
        let err = check_redirect_uris(
            Operation::Update,
            200,
            &sent,
            &info(Some(vec!["https://a.example/cb"])),
        )
        .expect_err("other values");
        assert!(err.to_string().contains("shows other values"), "{err}");
        assert!(!err.is_retryable());
        // Nothing sent: whatever the answer, nothing was ignored.
        assert_eq!(
            check_redirect_uris(Operation::Update, 200, &[], &info(None)),
            Ok(())
        );
        // Parsed from a body: absent and present.
        let parsed: ClientInfo = serde_json::from_str(
            r#"{"client_id":"x","client_name":"y","redirect_uris":["https://a.example/cb"]}"#,
        )
        .expect("parse");
        assert_eq!(
            parsed.redirect_uris,
            Some(vec!["https://a.example/cb".to_owned()])
        );
    }
}
